//! What an NMEA sentence becomes (docs/protocols/nmea.md): its record, a function of the
//! sentence and of what the stream said before it (the device id, the last date). NMEA is
//! one-way: nothing a device sends is answered, so there is no answer table. The stream's
//! state (the id, the date, the checksum habit) is `stream.rs`'s, settled before a sentence
//! is recorded.

use std::sync::Arc;

use serde_json::{json, Value};

use super::decimal::Decimal;
use super::fields::{Coordinate, NmeaTime};
use super::sentence::{Gga, Gll, Gns, Gsa, Gst, Gsv, Hdt, Message, ParsedSentence, Rmc, Sentence, Txt, Vtg, Zda};
use crate::record::{knots_to_kmh, Kind, Protocol, Record, Text};
use crate::time::{Date, Timestamp};

/// What a sentence's record takes from the stream.
pub(super) struct Context {
    /// The last calendar date the stream gave (RMC or ZDA), this sentence's included.
    pub last_date: Option<Date>,
}

impl Context {
    /// Names `r`, a record of the stream's device from `push_record` or [`blank`], as one
    /// of `kind` and `message_type`.
    pub(super) fn start(&self, r: &mut Record, kind: Kind, message_type: impl Into<std::borrow::Cow<'static, str>>) {
        r.kind = kind;
        // Its empty type owns nothing: not dropped, so not read back from the copy just
        // made (`push_record` says why).
        debug_assert!(matches!(r.message_type, std::borrow::Cow::Borrowed("")), "a record named twice");
        std::mem::forget(std::mem::replace(&mut r.message_type, message_type.into()));
    }

    /// The instant of `time` on the stream's last known date, as the contract defines it:
    /// the date is taken as it is, even when the time of day has passed midnight since
    /// (a GGA just after midnight, before that epoch's RMC, keeps the previous date).
    fn on_last_date(&self, time: NmeaTime) -> Option<Timestamp> {
        Timestamp::from_date_time(self.last_date?, time.hour, time.minute, time.second, time.millis())
    }

    /// A position's fix time on the last date; with no date yet, its time of day as an
    /// attribute, so nothing the device said is lost.
    fn set_time(&self, r: &mut Record, time: Option<NmeaTime>) {
        r.fix_time = time.and_then(|t| self.on_last_date(t));
        if r.fix_time.is_none() {
            r.attributes.set_opt("utc_time", time.map(time_of_day));
        }
    }
}

/// Makes `r`, a fresh record ([`blank`]), the record of one parsed sentence.
pub(super) fn fill_sentence_record(ctx: &Context, parsed: &ParsedSentence<'_>, text: &[u8], r: &mut Record) {
    match (&parsed.sentence, identification_sentence(&parsed.sentence)) {
        (_, Some((message_type, _))) => ctx.start(r, Kind::Login, message_type),
        (Sentence::Standard { message: Message::Other { formatter, .. }, .. }, None) => {
            raw_record(ctx, r, Kind::Unknown, formatter, text);
        }
        (Sentence::Standard { message, .. }, None) => standard_record(ctx, message, r),
        (Sentence::Proprietary { address, .. }, None) => raw_record(ctx, r, Kind::Info, address, text),
        (Sentence::Unrecognised { address, .. }, None) => raw_record(ctx, r, Kind::Unknown, address, text),
    }
    if let Sentence::Standard { talker, .. } = &parsed.sentence {
        r.attributes.set("talker", talker.as_str());
    }
    if !parsed.checksum_present {
        r.attributes.set("checksum_missing", true);
    }
}

/// The calendar date a sentence carries (RMC and ZDA do), if it is a date.
pub(super) fn sentence_date(message: &Message<'_>) -> Option<Date> {
    match message {
        Message::Rmc(m) => m.date.and_then(|d| d.date()),
        Message::Zda(m) => zda_date(m),
        _ => None,
    }
}

/// The date a ZDA gives, if its fields are a date.
fn zda_date(m: &Zda) -> Option<Date> {
    match (m.year, m.month, m.day) {
        (Some(y), Some(mo), Some(d)) => Date::new(i32::from(y), mo, d),
        _ => None,
    }
}

/// A sentence this codec does not read field by field, kept as sent.
fn raw_record(ctx: &Context, r: &mut Record, kind: Kind, name: &str, text: &[u8]) {
    ctx.start(r, kind, name.to_owned());
    r.attributes.set("sentence", String::from_utf8_lossy(text).into_owned());
}

fn standard_record(ctx: &Context, message: &Message<'_>, r: &mut Record) {
    match message {
        Message::Rmc(m) => rmc_record(ctx, m, r),
        Message::Gga(m) => gga_record(ctx, m, r),
        Message::Gll(m) => gll_record(ctx, m, r),
        Message::Gns(m) => gns_record(ctx, m, r),
        Message::Vtg(m) => vtg_record(ctx, m, r),
        Message::Gsa(m) => gsa_record(ctx, m, r),
        Message::Gsv(m) => gsv_record(ctx, m, r),
        Message::Zda(m) => zda_record(ctx, m, r),
        Message::Gst(m) => gst_record(ctx, m, r),
        Message::Hdt(m) => hdt_record(ctx, m, r),
        Message::Txt(m) => txt_record(ctx, m, r),
        // `sentence_record` keeps these raw and never sends them here.
        Message::Other { formatter, .. } => ctx.start(r, Kind::Unknown, (*formatter).to_owned()),
    }
}

fn rmc_record(ctx: &Context, m: &Rmc, r: &mut Record) {
    ctx.start(r, Kind::Position, "RMC");
    r.valid = m.status.map(|s| s == b'A' && m.mode != Some(b'N'));
    // The stream's last date is this sentence's own when it carries one (settled).
    ctx.set_time(r, m.time);
    set_position(r, m.latitude, m.longitude);
    r.speed_kmh = m.speed_knots.map(|v| knots_to_kmh(v.to_f64()));
    r.course_deg = m.course_deg.map(Decimal::to_f64);
    let variation =
        m.magnetic_variation_deg.map(|v| if m.magnetic_variation_dir == Some(b'W') { -v.to_f64() } else { v.to_f64() });
    r.attributes.set_opt("magnetic_variation_deg", variation);
    r.attributes.set_opt("mode", m.mode.map(letter));
    r.attributes.set_opt("nav_status", m.nav_status.map(letter));
}

fn gga_record(ctx: &Context, m: &Gga, r: &mut Record) {
    ctx.start(r, Kind::Position, "GGA");
    r.valid = m.quality.map(|q| q != 0);
    ctx.set_time(r, m.time);
    set_position(r, m.latitude, m.longitude);
    r.altitude_m = m.altitude_m.map(Decimal::to_f64);
    r.satellites = m.satellites.map(u32::from);
    r.hdop = m.hdop.map(Decimal::to_f64);
    r.attributes.set_opt("fix_quality", m.quality);
    set_geoid_and_dgps(r, m.geoid_separation_m, m.dgps_age_s, m.dgps_station);
}

fn gll_record(ctx: &Context, m: &Gll, r: &mut Record) {
    ctx.start(r, Kind::Position, "GLL");
    r.valid = m.status.map(|s| s == b'A' && m.mode != Some(b'N'));
    ctx.set_time(r, m.time);
    set_position(r, m.latitude, m.longitude);
    r.attributes.set_opt("mode", m.mode.map(letter));
}

fn gns_record(ctx: &Context, m: &Gns<'_>, r: &mut Record) {
    ctx.start(r, Kind::Position, "GNS");
    // One mode letter per constellation; `N` means that one is not used.
    r.valid = m.mode.map(|modes| modes.bytes().any(|c| c != b'N'));
    ctx.set_time(r, m.time);
    set_position(r, m.latitude, m.longitude);
    r.altitude_m = m.altitude_m.map(Decimal::to_f64);
    r.satellites = m.satellites.map(u32::from);
    r.hdop = m.hdop.map(Decimal::to_f64);
    r.attributes.set_opt("mode", m.mode);
    set_geoid_and_dgps(r, m.geoid_separation_m, m.dgps_age_s, m.dgps_station);
    r.attributes.set_opt("nav_status", m.nav_status.map(letter));
}

fn vtg_record(ctx: &Context, m: &Vtg, r: &mut Record) {
    ctx.start(r, Kind::Info, "VTG");
    r.course_deg = m.course_true_deg.map(Decimal::to_f64);
    r.speed_kmh = m.speed_kmh.map(Decimal::to_f64).or(m.speed_knots.map(|v| knots_to_kmh(v.to_f64())));
    r.attributes.set_opt("course_magnetic_deg", m.course_magnetic_deg.map(Decimal::to_f64));
    r.attributes.set_opt("mode", m.mode.map(letter));
}

fn gsa_record(ctx: &Context, m: &Gsa, r: &mut Record) {
    ctx.start(r, Kind::Info, "GSA");
    r.hdop = m.hdop.map(Decimal::to_f64);
    r.attributes.set_opt("selection_mode", m.selection_mode.map(letter));
    r.attributes.set_opt("fix_type", m.fix_type);
    if !m.satellite_ids.is_empty() {
        r.attributes.set("satellite_ids", m.satellite_ids.clone());
    }
    r.attributes.set_opt("pdop", m.pdop.map(Decimal::to_f64));
    r.attributes.set_opt("vdop", m.vdop.map(Decimal::to_f64));
    r.attributes.set_opt("system_id", m.system_id);
}

fn gsv_record(ctx: &Context, m: &Gsv, r: &mut Record) {
    ctx.start(r, Kind::Info, "GSV");
    r.attributes.set_opt("gsv_sentences", m.sentences);
    r.attributes.set_opt("gsv_sentence", m.sentence);
    r.attributes.set_opt("satellites_in_view", m.in_view);
    let sats: Vec<Value> = m
        .satellites
        .iter()
        .map(|s| {
            let mut o = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            };
            put("id", s.id.map(Value::from));
            put("elevation_deg", s.elevation_deg.map(Value::from));
            put("azimuth_deg", s.azimuth_deg.map(Value::from));
            put("snr_db", s.snr_db.map(Value::from));
            Value::Object(o)
        })
        .collect();
    if !sats.is_empty() {
        r.attributes.set("satellites", sats);
    }
    r.attributes.set_opt("signal_id", m.signal_id);
}

fn zda_record(ctx: &Context, m: &Zda, r: &mut Record) {
    ctx.start(r, Kind::Info, "ZDA");
    if let Some(date) = zda_date(m) {
        if let Some(t) = m.time {
            let utc = Timestamp::from_date_time(date, t.hour, t.minute, t.second, t.millis());
            r.attributes.set_opt("utc", utc.map(|u| u.to_string()));
        } else {
            r.attributes.set("utc_date", format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()));
        }
    } else {
        r.attributes.set_opt("utc_time", m.time.map(time_of_day));
    }
    r.attributes.set_opt("local_zone_hours", m.zone_hours);
    r.attributes.set_opt("local_zone_minutes", m.zone_minutes);
}

fn gst_record(ctx: &Context, m: &Gst, r: &mut Record) {
    ctx.start(r, Kind::Info, "GST");
    r.attributes.set_opt("utc_time", m.time.map(time_of_day));
    r.attributes.set_opt("rms_range_residual", m.rms_range_residual.map(Decimal::to_f64));
    r.attributes.set_opt("sigma_semi_major_m", m.sigma_semi_major_m.map(Decimal::to_f64));
    r.attributes.set_opt("sigma_semi_minor_m", m.sigma_semi_minor_m.map(Decimal::to_f64));
    r.attributes.set_opt("semi_major_orientation_deg", m.semi_major_orientation_deg.map(Decimal::to_f64));
    r.attributes.set_opt("sigma_latitude_m", m.sigma_latitude_m.map(Decimal::to_f64));
    r.attributes.set_opt("sigma_longitude_m", m.sigma_longitude_m.map(Decimal::to_f64));
    r.attributes.set_opt("sigma_altitude_m", m.sigma_altitude_m.map(Decimal::to_f64));
}

fn hdt_record(ctx: &Context, m: &Hdt, r: &mut Record) {
    ctx.start(r, Kind::Info, "HDT");
    r.attributes.set_opt("heading_deg", m.heading_deg.map(Decimal::to_f64));
}

fn txt_record(ctx: &Context, m: &Txt<'_>, r: &mut Record) {
    ctx.start(r, Kind::Info, "TXT");
    r.attributes.set("text", m.text.to_owned());
    for (key, v) in [("text_sentences", m.sentences), ("text_sentence", m.sentence), ("text_id", m.text_id)] {
        if !v.is_empty() {
            // Numbers where the device sent numbers, the label as sent otherwise.
            let value = v.parse::<u32>().map_or_else(|_| json!(v), |n| json!(n));
            r.attributes.set(key, value);
        }
    }
}

/// The fields GGA and GNS share after the fix: the geoid and the differential correction.
fn set_geoid_and_dgps(r: &mut Record, geoid: Option<Decimal>, age: Option<Decimal>, station: Option<u16>) {
    r.attributes.set_opt("geoid_separation_m", geoid.map(Decimal::to_f64));
    r.attributes.set_opt("dgps_age_s", age.map(Decimal::to_f64));
    r.attributes.set_opt("dgps_station", station);
}

/// An identification sentence's record type and id: `$PGID,<id>` or `$GPFID,<id>`, the
/// identification lines of T55-family trackers.
pub(super) fn identification_sentence<'a>(sentence: &Sentence<'a>) -> Option<(&'static str, &'a str)> {
    let (name, fields) = match sentence {
        Sentence::Proprietary { address: "PGID", fields } => ("PGID", *fields),
        Sentence::Standard { message: Message::Other { formatter: "FID", fields }, .. } => ("FID", *fields),
        _ => return None,
    };
    let id = fields?.trim();
    super::valid_id(id.as_bytes()).map(|_| (name, id))
}

fn letter(c: u8) -> Text {
    Text::from(&*char::from(c).encode_utf8(&mut [0; 4]))
}

/// A record of the stream's device for [`Context::start`] to name.
pub(super) fn blank(device_id: Option<Arc<str>>) -> Record {
    let mut r = Record::new(Protocol::Nmea, Kind::Unknown, "");
    r.device_id = device_id;
    r
}

/// `hh:mm:ss[.mmm]`, as `format!("{:02}:{:02}:{:02}")` and `".{ms:03}"` write it. Digits
/// are pushed one by one: the two `format!` calls were an eighth of a GGA record's cost.
fn time_of_day(t: NmeaTime) -> Text {
    let ms = t.millis();
    // Out of range only for a time built by hand (the parser checks them): `format!` then.
    if t.hour >= 100 || t.minute >= 100 || t.second >= 100 || ms.is_some_and(|ms| ms >= 1000) {
        let mut s = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
        if let Some(ms) = ms {
            s.push_str(&format!(".{ms:03}"));
        }
        return s.into();
    }
    // On the stack, then held inline in the attribute: no allocation.
    let digit = |v: u16| b'0' + (v % 10) as u8;
    let mut s = [0u8; 12];
    let mut len = 0;
    for (i, v) in [t.hour, t.minute, t.second].into_iter().enumerate() {
        if i > 0 {
            s[len] = b':';
            len += 1;
        }
        s[len] = digit(u16::from(v) / 10);
        s[len + 1] = digit(u16::from(v));
        len += 2;
    }
    if let Some(ms) = ms {
        s[len..len + 4].copy_from_slice(&[b'.', digit(ms / 100), digit(ms / 10), digit(ms)]);
        len += 4;
    }
    Text::from(std::str::from_utf8(&s[..len]).unwrap_or_default())
}

/// Sets the coordinates, except the all-zero placeholder receivers send without a fix
/// (docs/protocols/nmea.md §6): that is "no position", not a point in the Gulf of Guinea.
fn set_position(r: &mut Record, lat: Option<Coordinate>, lon: Option<Coordinate>) {
    let (lat, lon) = (lat.map(Coordinate::degrees), lon.map(Coordinate::degrees));
    if lat == Some(0.0) && lon == Some(0.0) && r.valid != Some(true) {
        return;
    }
    r.latitude = lat;
    r.longitude = lon;
}

#[cfg(test)]
mod time_of_day_tests {
    use super::*;

    proptest::proptest! {
        /// The same text `format!` writes, for any time, valid or built by hand.
        #[test]
        fn time_of_day_is_what_format_writes(
            hour in 0u8..=255, minute in 0u8..=255, second in 0u8..=255,
            fraction in 0u32..2_000_000, fraction_digits in 0u8..=6, small in proptest::bool::ANY,
        ) {
            let t = if small {
                NmeaTime { hour: hour % 24, minute: minute % 60, second: second % 61, fraction: fraction % 1000, fraction_digits: 3 }
            } else {
                NmeaTime { hour, minute, second, fraction, fraction_digits }
            };
            let mut expected = format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second);
            if let Some(ms) = t.millis() {
                expected.push_str(&format!(".{ms:03}"));
            }
            let text = time_of_day(t);
            proptest::prop_assert_eq!(text.as_str(), expected);
        }
    }
}
