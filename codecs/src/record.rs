//! The normalized record every decoded uplink becomes (`"schema": 1`; the README's "The record").
//!
//! One JSON object per record; fields a message does not carry are omitted, never `null`.
//! Protocol modules fill records; sinks and the command line serialize them. Changing what a
//! field means is a schema change and needs a new `schema` number.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use crate::time::Timestamp;

mod attributes;
mod entries;
mod io;
mod json;
mod value;

pub use attributes::Attributes;
pub(crate) use attributes::Entry;
pub use io::{IoAttributeRef, IoAttributeValue, IoBuilder, IoElements};
pub(crate) use io::{IoBlock, IoRecord};
pub use value::{AttributeValue, Text};

/// The schema version this crate writes.
pub const SCHEMA_VERSION: u8 = 1;

/// The four protocols trackgate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Gt06,
    Jt808,
    Teltonika,
    Nmea,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [Protocol::Gt06, Protocol::Jt808, Protocol::Teltonika, Protocol::Nmea];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Gt06 => "gt06",
            Protocol::Jt808 => "jt808",
            Protocol::Teltonika => "teltonika",
            Protocol::Nmea => "nmea",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown protocol {s:?} (expected gt06, jt808, teltonika or nmea)"))
    }
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Login,
    Heartbeat,
    Position,
    Status,
    Register,
    Auth,
    CommandResponse,
    TimeRequest,
    Info,
    Unknown,
}

/// One normalized record (`"schema": 1`). Build one with [`Record::new`] and fill the fields
/// the message carries; everything else stays `None` and is left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`SCHEMA_VERSION`] for records this crate makes.
    pub schema: u8,
    pub protocol: Protocol,
    /// Shared, not copied: a decoder hands every record of its device the same id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Arc<str>>,
    pub kind: Kind,
    /// The protocol's own id for the message: GT06 `0x12`, JT808 `0x0200`, Teltonika
    /// `0x8e`, NMEA the sentence formatter (`RMC`).
    pub message_type: Cow<'static, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// Server time of reception; set by the gateway, never by `decode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub course_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellites: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdop: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<Cow<'static, str>>,
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

impl Record {
    pub fn new(protocol: Protocol, kind: Kind, message_type: impl Into<Cow<'static, str>>) -> Self {
        Record { protocol, kind, message_type: message_type.into(), ..Record::EMPTY }
    }

    /// A record with nothing set, as a constant: what `Record::new` starts from, and what
    /// the decoders push into their output to fill there (`push_record` says why).
    pub(crate) const EMPTY: Record = Record {
        schema: SCHEMA_VERSION,
        protocol: Protocol::Gt06,
        device_id: None,
        kind: Kind::Unknown,
        message_type: Cow::Borrowed(""),
        seq: None,
        received_at: None,
        fix_time: None,
        valid: None,
        latitude: None,
        longitude: None,
        altitude_m: None,
        speed_kmh: None,
        course_deg: None,
        satellites: None,
        hdop: None,
        alarms: Vec::new(),
        attributes: Attributes::EMPTY,
    };

    /// Adds an alarm name once (a message may report the same alarm two ways).
    pub fn add_alarm(&mut self, name: &'static str) {
        if !self.alarms.iter().any(|a| a == name) {
            self.alarms.push(name.into());
        }
    }

    /// The record as one line of JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        // Only whole UTF-8 strings and ASCII were written.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Converts knots to km/h (1 kn = 1.852 km/h exactly).
pub fn knots_to_kmh(knots: f64) -> f64 {
    knots * 1.852
}

#[cfg(test)]
mod tests {
    use super::attributes::IO;
    use super::*;
    use crate::time::Date;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        /// Key number, value, and whether the key is given as a `String` (else `&'static`).
        Set(u8, Value, bool),
        SetIo(Vec<(u16, u64)>),
        Remove(u8),
    }

    /// Few distinct keys, so replacing and removing present keys happens often; `io` among
    /// them, and keys that sort before and after it.
    const KEYS: [&str; 12] = ["a", "b_1", "cell_id", "i", "io", "io_x", "ioa", "lac", "mcc", "z", "zz", "é"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, value(), any::<bool>()).prop_map(|(k, v, owned)| Op::Set(k, v, owned)),
            1 => proptest::collection::vec((0u16..300, any::<u64>()), 0..4).prop_map(Op::SetIo),
            2 => (0u8..12).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// The typed attributes behave as the ordered map of JSON values they replaced: same
        /// lookups, same removals, same order, same JSON, whatever the values.
        #[test]
        fn attributes_behave_as_an_ordered_map_of_json_values(ops in proptest::collection::vec(op(), 0..80)) {
            let mut flat = Attributes::new();
            let mut model = BTreeMap::<String, Value>::new();
            for op in ops {
                match op {
                    Op::Set(k, v, owned) => {
                        let key = KEYS[usize::from(k)];
                        if owned {
                            flat.set(key.to_owned(), v.clone());
                        } else {
                            flat.set(key, v.clone());
                        }
                        model.insert(key.to_owned(), v);
                    }
                    Op::SetIo(elements) => {
                        let io = IoElements::new(elements.into_iter().map(|(id, v)| (id, IoAttributeValue::Unsigned(v))).collect());
                        model.insert(IO.to_owned(), io.to_value());
                        flat.set_io(io);
                    }
                    Op::Remove(k) => {
                        let key = KEYS[usize::from(k)];
                        prop_assert_eq!(flat.remove(key).map(|v| v.to_value()), model.remove(key));
                    }
                }
                prop_assert_eq!(flat.len(), model.len());
            }
            for key in KEYS {
                let ours = flat.get(key).map(AttributeValue::to_value).or_else(|| flat.io().map(|io| io.to_value()).filter(|_| key == IO));
                prop_assert_eq!(ours, model.get(key).cloned());
                if let (Some(ours), Some(theirs)) = (flat.get(key), model.get(key)) {
                    prop_assert!(*ours == *theirs);
                }
            }
            prop_assert_eq!(flat.to_value(), serde_json::to_value(&model).unwrap());
            let json = serde_json::to_string(&flat).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&model).unwrap());
            // Read back as the map of JSON values reads back (serde_json's float parsing is
            // not exact, so not necessarily `flat`).
            let back = serde_json::from_str::<Attributes>(&json).unwrap().to_value();
            prop_assert_eq!(back, serde_json::from_str::<Value>(&json).unwrap());
        }
    }

    #[test]
    fn attributes_read_back_from_json_sorted_with_the_last_of_a_repeated_key() {
        let a: Attributes = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", &2.into()), ("b", &3.into())]);
    }

    #[test]
    fn omitted_fields_are_absent_not_null() {
        let r = Record::new(Protocol::Nmea, Kind::Info, "TXT");
        assert_eq!(r.to_json(), r#"{"schema":1,"protocol":"nmea","kind":"info","message_type":"TXT"}"#);
    }

    #[test]
    fn full_record_in_contract_order_and_back() {
        let mut r = Record::new(Protocol::Gt06, Kind::Position, "0x12");
        r.device_id = Some("123456789012345".into());
        r.seq = Some(7);
        r.fix_time = Timestamp::from_date_time(Date::new(2024, 5, 6).unwrap(), 1, 2, 3, None);
        r.valid = Some(true);
        r.latitude = Some(-33.5);
        r.longitude = Some(151.25);
        r.speed_kmh = Some(knots_to_kmh(10.0));
        r.satellites = Some(9);
        r.alarms.push("sos".into());
        r.attributes.set("ignition", true);
        r.attributes.set_opt::<u32>("absent", None);
        let json = r.to_json();
        assert_eq!(
            json,
            r#"{"schema":1,"protocol":"gt06","device_id":"123456789012345","kind":"position","message_type":"0x12","seq":7,"fix_time":"2024-05-06T01:02:03Z","valid":true,"latitude":-33.5,"longitude":151.25,"speed_kmh":18.52,"satellites":9,"alarms":["sos"],"attributes":{"ignition":true}}"#
        );
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    /// Any text, control characters, quotes, backslashes and non-ASCII well represented.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_0-9]{0,12}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\u{7f}'),
                    Just('é'),
                    Just('😀'),
                    (0u8..0x20).prop_map(char::from),
                    any::<char>()
                ],
                0..12
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    /// Any float, the values that print specially (integers, tiny, huge, signed zero, NaN
    /// and the infinities) well represented.
    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            (-(1i64 << 53)..(1i64 << 53)).prop_map(|i| i as f64),
            Just(1e15 - 1.0),
            Just(1e15),
            Just(-1e15 + 1.0),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 1e6),
            Just(0.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(1e21),
            Just(1e-7),
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            float().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        // Years -300,000 to 300,000: the four-digit fast path and the general one.
        (-10_000_000_000_000_000i64..10_000_000_000_000_000, any::<bool>())
            .prop_map(|(ms, millis)| Timestamp::from_unix_ms(ms, millis))
    }

    fn record() -> impl Strategy<Value = Record> {
        let kinds = [
            Kind::Login,
            Kind::Heartbeat,
            Kind::Position,
            Kind::Status,
            Kind::Register,
            Kind::Auth,
            Kind::CommandResponse,
            Kind::TimeRequest,
            Kind::Info,
            Kind::Unknown,
        ];
        let head = (
            proptest::sample::select(Protocol::ALL.to_vec()),
            proptest::sample::select(kinds.to_vec()),
            text(),
            proptest::option::of(text()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
            proptest::option::of(any::<bool>()),
        );
        let fix = (
            proptest::option::of(float()),
            proptest::option::of(float()),
            proptest::option::of(float()),
            proptest::option::of(float()),
            proptest::option::of(float()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(float()),
        );
        let io_value =
            prop_oneof![any::<u64>().prop_map(IoAttributeValue::Unsigned), text().prop_map(IoAttributeValue::Hex),];
        // Static keys as decoders set them (in any order, past the eight held in place, `io`
        // among them), and run-time keys; a record has only static ones about one time in
        // five, so each way of writing the object is met often.
        let key = prop_oneof![
            3 => (0..KEYS.len()).prop_map(|i| Cow::Borrowed(KEYS[i])),
            // Long ones too: keys up to 29 bytes are written in one step, longer ones not.
            1 => prop_oneof![Just("io".to_owned()), text(), "[a-z_]{26,34}"].prop_map(Cow::Owned),
        ];
        let rest = (
            proptest::collection::vec(text(), 0..4),
            proptest::collection::vec((key, value()), 0..12),
            any::<u8>(),
            proptest::option::of(proptest::collection::vec((any::<u16>(), io_value), 0..10)),
        );
        (head, fix, rest).prop_map(
            |(
                (protocol, kind, message_type, device_id, seq, received_at, fix_time, valid),
                (latitude, longitude, altitude_m, speed_kmh, course_deg, satellites, hdop),
                (alarms, attributes, schema, io),
            )| {
                let mut r = Record::new(protocol, kind, message_type);
                r.schema = schema;
                r.device_id = device_id.map(Into::into);
                r.seq = seq;
                r.received_at = received_at;
                r.fix_time = fix_time;
                r.valid = valid;
                r.latitude = latitude;
                r.longitude = longitude;
                r.altitude_m = altitude_m;
                r.speed_kmh = speed_kmh;
                r.course_deg = course_deg;
                r.satellites = satellites;
                r.hdop = hdop;
                r.alarms = alarms.into_iter().map(Cow::Owned).collect();
                if let Some(io) = io {
                    r.attributes.set_io(IoElements::new(io));
                }
                // After the typed `io` as well as before: a JSON `io` set later replaces it.
                for (k, v) in attributes {
                    r.attributes.set(k, v);
                }
                r
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The hand-written JSON is serde_json's for the derived `Serialize`, byte for byte.
        #[test]
        fn record_json_is_serde_json_s(r in record()) {
            let mut ours = b"[kept]".to_vec();
            r.write_json(&mut ours);
            let theirs = serde_json::to_vec(&r).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&ours[6..]), String::from_utf8_lossy(&theirs));
            prop_assert_eq!(&ours[..6], b"[kept]", "appends, does not replace");
            let json = r.to_json();
            prop_assert_eq!(json.as_bytes(), &theirs[..]);
            // The attributes in key order, typed `io` in its place: as the map of JSON values
            // records held before typed attributes prints them.
            let as_json_values = serde_json::to_string(&r.attributes.to_value()).unwrap();
            prop_assert_eq!(&serde_json::to_string(&r.attributes).unwrap(), &as_json_values);
            if !r.attributes.is_empty() {
                let tail = format!(",\"attributes\":{as_json_values}}}");
                prop_assert!(json.ends_with(&tail), "{} does not end with {}", json, tail);
            }
        }
    }

    /// Typed IO elements take `io`'s place in the JSON, replace and are replaced by a JSON
    /// `io`, and come back typed from the JSON.
    #[test]
    fn typed_io_is_the_io_attribute() {
        let mut r = Record::new(Protocol::Teltonika, Kind::Position, "0x08");
        r.attributes.set("ignition", true);
        r.attributes.set("priority", 1);
        r.attributes.set("io", 5);
        let io = IoElements::new(vec![(239, IoAttributeValue::Unsigned(1)), (10, IoAttributeValue::Hex("ab".into()))]);
        r.attributes.set_io(io.clone());
        assert_eq!(r.attributes.get("io"), None, "the JSON io was replaced");
        assert_eq!(r.attributes.len(), 3);
        let json = r.to_json();
        assert!(json.ends_with(r#""attributes":{"ignition":true,"io":{"10":"ab","239":1},"priority":1}}"#), "{json}");
        assert_eq!(serde_json::to_string(&r).unwrap(), json);
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.attributes.io(), Some(&io));
        r.attributes.set("io", "text");
        assert_eq!(r.attributes.io(), None);
        assert!(r.to_json().contains(r#""io":"text""#));
        r.attributes.set_io(io.clone());
        assert_eq!(r.attributes.remove("io"), Some(io.to_value().into()));
        assert_eq!(r.attributes.len(), 2);
    }

    #[test]
    fn protocol_names_parse() {
        assert_eq!("JT808".parse::<Protocol>(), Ok(Protocol::Jt808));
        assert!("traccar".parse::<Protocol>().unwrap_err().contains("unknown protocol"));
    }
}
