//! The encoder for the sentences [`super::sentence`] parses: typed sentence in, `$…*HH\r\n`
//! out, checksum computed over what was written. Mirrors the parser field by field so that
//! decode → encode → decode gives back the same sentence (checked by property tests).

use std::fmt::Write as _;

use bytes::BufMut;

use super::fields::{Coordinate, NmeaDate, NmeaTime};
use super::sentence::{Message, Sentence, Talker};
use crate::wire::checksum::xor8;

/// Why a sentence could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot encode NMEA sentence: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}

/// Writes `sentence` as one line, `$`, body, `*HH`, CR LF.
pub fn encode(sentence: &Sentence<'_>, out: &mut impl BufMut) -> Result<(), EncodeError> {
    let mut body = String::with_capacity(96);
    match sentence {
        Sentence::Standard { talker, message } => standard(&mut body, *talker, message)?,
        Sentence::Proprietary { address, fields } | Sentence::Unrecognised { address, fields } => {
            body.push_str(address);
            if let Some(f) = fields {
                body.push(',');
                body.push_str(f);
            }
        }
    }
    if let Some(bad) = body.bytes().find(|&b| !(0x20..=0x7e).contains(&b) || b == b'$' || b == b'*') {
        return Err(EncodeError(format!("byte 0x{bad:02X} cannot appear in a sentence")));
    }
    out.put_u8(b'$');
    out.put_slice(body.as_bytes());
    let cs = xor8(body.as_bytes());
    out.put_slice(&[b'*', hex_upper(cs >> 4), hex_upper(cs & 0x0f), b'\r', b'\n']);
    Ok(())
}

/// Encodes into a fresh `String` (convenient for simulators and tests).
pub fn to_line(sentence: &Sentence<'_>) -> Result<String, EncodeError> {
    let mut out = Vec::with_capacity(96);
    encode(sentence, &mut out)?;
    // Everything written above is ASCII.
    Ok(String::from_utf8(out).unwrap_or_default())
}

fn hex_upper(n: u8) -> u8 {
    b"0123456789ABCDEF"[usize::from(n & 0x0f)]
}

/// Builds the comma-separated field list after the address.
struct Out<'s> {
    s: &'s mut String,
}

impl Out<'_> {
    fn sep(&mut self) -> &mut String {
        self.s.push(',');
        self.s
    }
    fn text(&mut self, t: &str) {
        self.sep().push_str(t);
    }
    fn num<T: std::fmt::Display>(&mut self, v: Option<T>) {
        let s = self.sep();
        if let Some(v) = v {
            let _ = write!(s, "{v}");
        }
    }
    fn letter(&mut self, v: Option<u8>) {
        let s = self.sep();
        if let Some(c) = v {
            s.push(char::from(c));
        }
    }
    fn time(&mut self, t: Option<NmeaTime>) {
        let s = self.sep();
        if let Some(t) = t {
            let _ = write!(s, "{:02}{:02}{:02}", t.hour, t.minute, t.second);
            if t.fraction_digits > 0 {
                let _ = write!(s, ".{:0w$}", t.fraction, w = usize::from(t.fraction_digits));
            }
        }
    }
    fn date(&mut self, d: Option<NmeaDate>) {
        let s = self.sep();
        if let Some(d) = d {
            let _ = write!(s, "{:02}{:02}{:02}", d.day, d.month, d.year2);
        }
    }
    /// Value and hemisphere fields: `ddmm.mmmm,N` / `dddmm.mmmm,E`.
    fn coordinate(&mut self, c: Option<Coordinate>, degree_digits: usize) {
        let s = self.sep();
        if let Some(c) = c {
            let _ = write!(s, "{:0w$}", c.whole_degrees, w = degree_digits);
            if c.minutes < 10.0 {
                s.push('0');
            }
            let _ = write!(s, "{}", c.minutes);
        }
        self.letter(c.map(|c| c.hemisphere));
    }
}

fn standard(body: &mut String, talker: Talker, message: &Message<'_>) -> Result<(), EncodeError> {
    body.push_str(talker.as_str());
    body.push_str(message.formatter());
    let mut o = Out { s: body };
    match message {
        Message::Rmc(m) => {
            o.time(m.time);
            o.letter(m.status);
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.num(m.speed_knots);
            o.num(m.course_deg);
            o.date(m.date);
            o.num(m.magnetic_variation_deg);
            o.letter(m.magnetic_variation_dir);
            // Optional trailing fields are written only up to the last one present.
            if m.mode.is_some() || m.nav_status.is_some() {
                o.letter(m.mode);
            }
            if m.nav_status.is_some() {
                o.letter(m.nav_status);
            }
        }
        Message::Gga(m) => {
            o.time(m.time);
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.num(m.quality);
            o.num(m.satellites);
            o.num(m.hdop);
            o.num(m.altitude_m);
            o.text("M");
            o.num(m.geoid_separation_m);
            o.text("M");
            o.num(m.dgps_age_s);
            o.num(m.dgps_station.map(|s| format!("{s:04}")));
        }
        Message::Gll(m) => {
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.time(m.time);
            o.letter(m.status);
            if m.mode.is_some() {
                o.letter(m.mode);
            }
        }
        Message::Vtg(m) if m.legacy => {
            if m.mode.is_some() {
                return Err(EncodeError("the legacy VTG form has no mode field".into()));
            }
            o.num(m.course_true_deg);
            o.num(m.course_magnetic_deg);
            o.num(m.speed_knots);
            o.num(m.speed_kmh);
        }
        Message::Vtg(m) => {
            o.num(m.course_true_deg);
            o.text("T");
            o.num(m.course_magnetic_deg);
            o.text("M");
            o.num(m.speed_knots);
            o.text("N");
            o.num(m.speed_kmh);
            o.text("K");
            if m.mode.is_some() {
                o.letter(m.mode);
            }
        }
        Message::Gsa(m) => {
            if m.satellite_ids.len() > 12 {
                return Err(EncodeError(format!("GSA has 12 id slots, not {}", m.satellite_ids.len())));
            }
            o.letter(m.selection_mode);
            o.num(m.fix_type);
            for slot in 0..12 {
                o.num(m.satellite_ids.get(slot).map(|id| format!("{id:02}")));
            }
            o.num(m.pdop);
            o.num(m.hdop);
            o.num(m.vdop);
            if let Some(id) = m.system_id {
                o.text(&format!("{id:X}"));
            }
        }
        Message::Gsv(m) => {
            o.num(m.sentences);
            o.num(m.sentence);
            o.num(m.in_view.map(|n| format!("{n:02}")));
            for sat in &m.satellites {
                o.num(sat.id.map(|id| format!("{id:02}")));
                o.num(sat.elevation_deg.map(|e| format!("{e:02}")));
                o.num(sat.azimuth_deg.map(|a| format!("{a:03}")));
                o.num(sat.snr_db.map(|s| format!("{s:02}")));
            }
            if let Some(sig) = m.signal_id {
                o.text(&format!("{sig:X}"));
            }
        }
        Message::Zda(m) => {
            o.time(m.time);
            o.num(m.day.map(|d| format!("{d:02}")));
            o.num(m.month.map(|d| format!("{d:02}")));
            o.num(m.year.map(|y| format!("{y:04}")));
            o.num(m.zone_hours.map(|h| format!("{h:02}")));
            o.num(m.zone_minutes.map(|mi| format!("{mi:02}")));
        }
        Message::Gns(m) => {
            o.time(m.time);
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.num(m.mode);
            o.num(m.satellites.map(|n| format!("{n:02}")));
            o.num(m.hdop);
            o.num(m.altitude_m);
            o.num(m.geoid_separation_m);
            o.num(m.dgps_age_s);
            o.num(m.dgps_station.map(|s| format!("{s:04}")));
            if m.nav_status.is_some() {
                o.letter(m.nav_status);
            }
        }
        Message::Gst(m) => {
            o.time(m.time);
            for v in [
                m.rms_range_residual,
                m.sigma_semi_major_m,
                m.sigma_semi_minor_m,
                m.semi_major_orientation_deg,
                m.sigma_latitude_m,
                m.sigma_longitude_m,
                m.sigma_altitude_m,
            ] {
                o.num(v);
            }
        }
        Message::Hdt(m) => {
            o.num(m.heading_deg);
            o.text("T");
        }
        Message::Txt(m) => {
            for f in [m.sentences, m.sentence, m.text_id] {
                if f.contains(',') {
                    return Err(EncodeError("TXT count and id fields cannot contain ','".into()));
                }
                o.text(f);
            }
            o.text(m.text);
        }
        Message::Other { fields, .. } => {
            if let Some(f) = fields {
                o.text(f);
            }
        }
    }
    Ok(())
}
