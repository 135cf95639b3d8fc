//! The normalized record every decoded uplink becomes (contract §1, `"schema": 1`).
//!
//! One JSON object per record; fields a message does not carry are omitted, never `null`.
//! Protocol modules fill records; sinks and the command line serialize them. Changing what a
//! field means is a schema change and needs a new `schema` number.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::time::Timestamp;

mod json;

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

/// The `attributes` object: everything a record carries beyond its fixed fields, with
/// snake_case keys. Ordered by key so the same record always prints the same way.
///
/// Kept as one vector sorted by key rather than a `BTreeMap`: records carry a handful to a
/// few dozen attributes, built once and printed once, and a flat vector is one allocation
/// with no node bookkeeping on the records path (the gateway builds one per frame).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Vec<(Cow<'static, str>, Value)>);

/// Room the first insert makes, so a typical record's attributes fit without regrowing.
const ATTRIBUTES_FIRST_CAPACITY: usize = 12;

/// `a.cmp(b)`, deciding on the first byte where it can: keys are short snake_case words
/// that mostly differ there, and a full string comparison is a `memcmp` call each time
/// (GT06 0x22 records, which insert keys out of order, took a fifth less time with this).
#[inline]
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

impl Attributes {
    pub fn new() -> Self {
        Attributes::default()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        // Decoders mostly set keys in order: check the end before searching.
        match self.0.last() {
            None => Err(0),
            Some((last, _)) if key_order(last, key).is_lt() => Err(self.0.len()),
            Some(_) => self.0.binary_search_by(|(k, _)| key_order(k, key)),
        }
    }

    /// Sets `key`, replacing any earlier value.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Value>) {
        let key = key.into();
        match self.position(&key) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => {
                if self.0.capacity() == 0 {
                    self.0.reserve(ATTRIBUTES_FIRST_CAPACITY);
                }
                self.0.insert(i, (key, value.into()));
            }
        }
    }

    /// Sets `key` only when there is a value: absent stays absent.
    pub fn set_opt<V: Into<Value>>(&mut self, key: &'static str, value: Option<V>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    /// Vendor bytes: printable ASCII (with CR, LF, tab) as `text`, anything else as `data` in
    /// hex; nothing for no bytes.
    pub fn set_text_or_data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.iter().all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t')) {
            self.set("text", String::from_utf8_lossy(bytes).into_owned());
        } else {
            self.set("data", crate::wire::hex::to_hex(bytes));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.position(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a map: sorted, and a key given twice keeps its last value, as before.
        let map = BTreeMap::<Cow<'static, str>, Value>::deserialize(deserializer)?;
        Ok(Attributes(map.into_iter().collect()))
    }
}

/// One normalized record (contract §1). Build one with [`Record::new`] and fill the fields
/// the message carries; everything else stays `None` and is left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Always [`SCHEMA_VERSION`] for records this crate makes.
    pub schema: u8,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
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
        Record {
            schema: SCHEMA_VERSION,
            protocol,
            device_id: None,
            kind,
            message_type: message_type.into(),
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
            attributes: Attributes::new(),
        }
    }

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
    use super::*;
    use crate::time::Date;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Set(u8, i64),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so replacing and removing present keys happens often.
        prop_oneof![(0u8..24, any::<i64>()).prop_map(|(k, v)| Op::Set(k, v)), (0u8..24).prop_map(Op::Remove)]
    }

    proptest! {
        /// The flat attribute store behaves as the ordered map it replaced: same lookups,
        /// same removals, same order, same JSON.
        #[test]
        fn attributes_behave_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..80)) {
            let mut flat = Attributes::new();
            let mut model = BTreeMap::<String, Value>::new();
            for op in ops {
                match op {
                    Op::Set(k, v) => {
                        flat.set(format!("key_{k}"), v);
                        model.insert(format!("key_{k}"), v.into());
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(flat.remove(&format!("key_{k}")), model.remove(&format!("key_{k}")));
                    }
                }
                prop_assert_eq!(flat.len(), model.len());
            }
            for k in 0..24u8 {
                let key = format!("key_{k}");
                prop_assert_eq!(flat.get(&key), model.get(&key));
            }
            let flat_pairs: Vec<(&str, &Value)> = flat.iter().collect();
            let model_pairs: Vec<(&str, &Value)> = model.iter().map(|(k, v)| (k.as_str(), v)).collect();
            prop_assert_eq!(flat_pairs, model_pairs);
            let json = serde_json::to_string(&flat).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&model).unwrap());
            prop_assert_eq!(serde_json::from_str::<Attributes>(&json).unwrap(), flat);
        }
    }

    #[test]
    fn attributes_read_back_from_json_sorted_with_the_last_of_a_repeated_key() {
        let a: Attributes = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", &Value::from(2)), ("b", &Value::from(3))]);
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
        let rest =
            (proptest::collection::vec(text(), 0..4), proptest::collection::vec((text(), value()), 0..8), any::<u8>());
        (head, fix, rest).prop_map(
            |(
                (protocol, kind, message_type, device_id, seq, received_at, fix_time, valid),
                (latitude, longitude, altitude_m, speed_kmh, course_deg, satellites, hdop),
                (alarms, attributes, schema),
            )| {
                let mut r = Record::new(protocol, kind, message_type);
                r.schema = schema;
                r.device_id = device_id;
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
        }
    }

    #[test]
    fn protocol_names_parse() {
        assert_eq!("JT808".parse::<Protocol>(), Ok(Protocol::Jt808));
        assert!("traccar".parse::<Protocol>().unwrap_err().contains("unknown protocol"));
    }
}
