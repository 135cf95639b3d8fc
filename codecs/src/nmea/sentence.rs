//! Typed NMEA 0183 sentences and the parser from one sentence's text to them.
//!
//! ```text
//!  $ G N R M C , 0 0 1 0 3 1 . 0 0 , A , … , A * 7 B
//!  ^ └talker┘└fmt┘ └──────────── fields ──────────┘ └cs┘
//!  start        address                             XOR of everything between $ and *
//! ```
//!
//! Standard sentences are parsed by position, tolerating missing trailing fields when the
//! checksum vouches for the text. A sentence with no checksum is accepted (many trackers
//! omit it) but must then carry every field of its standard layout, so that a line cut
//! short in transit is rejected instead of read as a sentence with absent values.

use std::fmt;

use super::decimal::Decimal;
use super::fields::{Coordinate, NmeaDate, NmeaTime};
use super::grammar::{malformed, Fields};
use super::layout;
use crate::framing::{Reject, RejectKind};

/// The two-character talker id (`GP`, `GN`, …). Unknown talkers are kept, not rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Talker(pub [u8; 2]);

impl Talker {
    pub const GP: Talker = Talker(*b"GP");
    pub const GL: Talker = Talker(*b"GL");
    pub const GA: Talker = Talker(*b"GA");
    pub const GB: Talker = Talker(*b"GB");
    pub const BD: Talker = Talker(*b"BD");
    pub const GQ: Talker = Talker(*b"GQ");
    pub const GI: Talker = Talker(*b"GI");
    pub const GN: Talker = Talker(*b"GN");

    pub fn as_str(&self) -> &str {
        // Only ever built from two ASCII alphanumerics (see `parse`).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The satellite system the talker stands for, where it is a GNSS talker.
    pub fn system(self) -> Option<&'static str> {
        Some(match &self.0 {
            b"GP" => "gps",
            b"GL" => "glonass",
            b"GA" => "galileo",
            b"GB" | b"BD" => "beidou",
            b"GQ" | b"QZ" => "qzss",
            b"GI" => "navic",
            b"GN" => "multi",
            _ => return None,
        })
    }
}

impl fmt::Display for Talker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parsed sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sentence<'a> {
    /// Talker + three-letter formatter (`GNRMC`).
    Standard { talker: Talker, message: Message<'a> },
    /// `$P…`: a manufacturer's sentence, kept as sent.
    Proprietary { address: &'a str, fields: Option<&'a str> },
    /// An address that is neither (`$IOTDATA,…`), kept as sent.
    Unrecognised { address: &'a str, fields: Option<&'a str> },
}

/// The standard sentences this codec understands, and the rest kept raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    Rmc(Rmc),
    Gga(Gga),
    Gll(Gll),
    Vtg(Vtg),
    Gsa(Gsa),
    Gsv(Gsv),
    Zda(Zda),
    Gns(Gns<'a>),
    Gst(Gst),
    Hdt(Hdt),
    Txt(Txt<'a>),
    /// A standard-shaped sentence with a formatter not listed above.
    Other {
        formatter: &'a str,
        fields: Option<&'a str>,
    },
}

impl Message<'_> {
    /// The three-letter formatter, as in the record's `message_type`.
    pub fn formatter(&self) -> &str {
        match self {
            Message::Rmc(_) => "RMC",
            Message::Gga(_) => "GGA",
            Message::Gll(_) => "GLL",
            Message::Vtg(_) => "VTG",
            Message::Gsa(_) => "GSA",
            Message::Gsv(_) => "GSV",
            Message::Zda(_) => "ZDA",
            Message::Gns(_) => "GNS",
            Message::Gst(_) => "GST",
            Message::Hdt(_) => "HDT",
            Message::Txt(_) => "TXT",
            Message::Other { formatter, .. } => formatter,
        }
    }
}

/// RMC, recommended minimum data (docs/protocols/nmea.md §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rmc {
    pub time: Option<NmeaTime>,
    /// `A` valid, `V` void.
    pub status: Option<u8>,
    pub latitude: Option<Coordinate>,
    pub longitude: Option<Coordinate>,
    pub speed_knots: Option<Decimal>,
    pub course_deg: Option<Decimal>,
    pub date: Option<NmeaDate>,
    pub magnetic_variation_deg: Option<Decimal>,
    /// `E` or `W`.
    pub magnetic_variation_dir: Option<u8>,
    /// FAA mode indicator (NMEA 2.3+).
    pub mode: Option<u8>,
    /// Navigational status (NMEA 4.10+).
    pub nav_status: Option<u8>,
}

/// GGA, fix data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gga {
    pub time: Option<NmeaTime>,
    pub latitude: Option<Coordinate>,
    pub longitude: Option<Coordinate>,
    /// 0 no fix, 1 GPS, 2 DGPS, 3 PPS, 4 RTK fixed, 5 RTK float, 6 estimated, 7 manual, 8 simulation.
    pub quality: Option<u8>,
    pub satellites: Option<u16>,
    pub hdop: Option<Decimal>,
    pub altitude_m: Option<Decimal>,
    pub geoid_separation_m: Option<Decimal>,
    pub dgps_age_s: Option<Decimal>,
    pub dgps_station: Option<u16>,
}

/// GLL, latitude and longitude.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gll {
    pub latitude: Option<Coordinate>,
    pub longitude: Option<Coordinate>,
    pub time: Option<NmeaTime>,
    pub status: Option<u8>,
    pub mode: Option<u8>,
}

/// VTG, course and speed over ground.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vtg {
    pub course_true_deg: Option<Decimal>,
    pub course_magnetic_deg: Option<Decimal>,
    pub speed_knots: Option<Decimal>,
    pub speed_kmh: Option<Decimal>,
    pub mode: Option<u8>,
    /// The pre-3.01 form `$--VTG,true,mag,kn,kmh` without unit letters.
    pub legacy: bool,
}

/// GSA, DOP and active satellites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gsa {
    /// `M` manual, `A` automatic.
    pub selection_mode: Option<u8>,
    /// 1 no fix, 2 2D, 3 3D.
    pub fix_type: Option<u8>,
    /// Ids of the satellites used, in slot order (at most 12).
    pub satellite_ids: Vec<u16>,
    pub pdop: Option<Decimal>,
    pub hdop: Option<Decimal>,
    pub vdop: Option<Decimal>,
    /// NMEA 4.10+ GNSS system id (1 GPS … 6 NavIC).
    pub system_id: Option<u8>,
}

/// One satellite block of a GSV sentence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SatelliteInView {
    pub id: Option<u16>,
    pub elevation_deg: Option<i16>,
    pub azimuth_deg: Option<u16>,
    pub snr_db: Option<u8>,
}

/// GSV, satellites in view (one sentence of a group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gsv {
    pub sentences: Option<u8>,
    pub sentence: Option<u8>,
    pub in_view: Option<u16>,
    pub satellites: Vec<SatelliteInView>,
    /// NMEA 4.10+ signal id (one hex digit).
    pub signal_id: Option<u8>,
}

/// ZDA, time and date.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zda {
    pub time: Option<NmeaTime>,
    pub day: Option<u8>,
    pub month: Option<u8>,
    pub year: Option<u16>,
    pub zone_hours: Option<i8>,
    pub zone_minutes: Option<i8>,
}

/// GNS, multi-GNSS fix data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gns<'a> {
    pub time: Option<NmeaTime>,
    pub latitude: Option<Coordinate>,
    pub longitude: Option<Coordinate>,
    /// One mode letter per constellation (GPS, GLONASS, Galileo, BeiDou, …).
    pub mode: Option<&'a str>,
    pub satellites: Option<u16>,
    pub hdop: Option<Decimal>,
    pub altitude_m: Option<Decimal>,
    pub geoid_separation_m: Option<Decimal>,
    pub dgps_age_s: Option<Decimal>,
    pub dgps_station: Option<u16>,
    pub nav_status: Option<u8>,
}

/// GST, pseudorange noise statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gst {
    pub time: Option<NmeaTime>,
    pub rms_range_residual: Option<Decimal>,
    pub sigma_semi_major_m: Option<Decimal>,
    pub sigma_semi_minor_m: Option<Decimal>,
    pub semi_major_orientation_deg: Option<Decimal>,
    pub sigma_latitude_m: Option<Decimal>,
    pub sigma_longitude_m: Option<Decimal>,
    pub sigma_altitude_m: Option<Decimal>,
}

/// HDT, true heading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hdt {
    pub heading_deg: Option<Decimal>,
}

/// TXT, a text transmission. The count and id fields are kept as sent: devices put labels
/// there as often as numbers. `text` is everything after the third field, commas included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txt<'a> {
    pub sentences: &'a str,
    pub sentence: &'a str,
    pub text_id: &'a str,
    pub text: &'a str,
}

/// A sentence as it came off the wire: the parsed content, and whether a checksum vouched
/// for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSentence<'a> {
    pub sentence: Sentence<'a>,
    pub checksum_present: bool,
}

/// FAA mode letters (docs/protocols/nmea.md §3.2), including the Quectel `C`/`U` quirks.
pub(super) const MODES: &[u8] = b"ADEFRPMSNCU";
pub(super) const STATUS: &[u8] = b"AV";
pub(super) const NAV_STATUS: &[u8] = b"SCUV";

/// Parses one sentence, `$` (or `!`) up to the end of its checksum, without the line
/// terminator. Verifies the checksum when there is one.
pub fn parse(text: &[u8]) -> Result<ParsedSentence<'_>, Reject> {
    let Some((&start, rest)) = text.split_first() else {
        return Err(Reject::new(RejectKind::Truncated, "empty sentence"));
    };
    if start != b'$' && start != b'!' {
        return Err(Reject::new(RejectKind::Garbage, "a sentence starts with '$' or '!'"));
    }
    let (body, received) = split_checksum(rest)?;
    let (computed, clean) = scan_body(body);
    if let Some(received) = received {
        if computed != received {
            return Err(Reject::checksum(computed.into(), received.into(), 2));
        }
    }
    let checksum_present = received.is_some();
    if !clean {
        return Err(unclean(body));
    }
    // The body stays bytes: the typed fields are read from bytes, and only what is kept as
    // text (the address, and the fields of sentences kept raw) is made a `str`, from bytes
    // checked printable ASCII above.
    let (address, fields_text) = match body.iter().position(|&b| b == b',') {
        Some(comma) => (&body[..comma], Some(&body[comma + 1..])),
        None => (body, None),
    };
    if address.is_empty() || !address.iter().all(|b| b.is_ascii_alphanumeric()) {
        let address = String::from_utf8_lossy(address);
        return Err(malformed(format!("address field {address:?} is not alphanumeric")));
    }
    let sentence = if address[0] == b'P' {
        Sentence::Proprietary { address: ascii(address), fields: fields_text.map(ascii) }
    } else if address.len() == 5 {
        let (talker, formatter) = (Talker([address[0], address[1]]), &address[2..]);
        // The message is built in the place it is returned in: returned to here and moved
        // into the sentence, it was read back in 16-byte pieces across the smaller stores
        // that wrote it, loads the CPU cannot forward and waits on (a fifth of this
        // function's time).
        return parse_message(talker, formatter, fields_text, checksum_present);
    } else {
        Sentence::Unrecognised { address: ascii(address), fields: fields_text.map(ascii) }
    };
    Ok(ParsedSentence { sentence, checksum_present })
}

/// The body before `*`, and the checksum after it as a number (`None` with no `*`).
#[inline(always)]
fn split_checksum(rest: &[u8]) -> Result<(&[u8], Option<u8>), Reject> {
    let Some(star) = memchr::memchr(b'*', rest) else { return Ok((rest, None)) };
    let (body, cs) = (&rest[..star], &rest[star + 1..]);
    match cs {
        [h, l] => match hex_digit(*h).zip(hex_digit(*l)) {
            Some((h, l)) => Ok((body, Some(h << 4 | l))),
            None => Err(bad_checksum_field(cs)),
        },
        _ => Err(bad_checksum_field(cs)),
    }
}

#[cold]
fn bad_checksum_field(cs: &[u8]) -> Reject {
    malformed(format!("checksum must be two hex digits after '*', found {:?}", String::from_utf8_lossy(cs)))
}

/// Why a body `scan_body` found unclean is refused: a byte that is not printable ASCII, or
/// a `$`, reserved as the start marker (docs/protocols/nmea.md §1): inside a body it means
/// two sentences ran together.
#[cold]
fn unclean(body: &[u8]) -> Reject {
    if let Some(i) = body.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
        return malformed(format!("byte 0x{:02X} at {} is not printable ASCII", body[i], i + 1));
    }
    let i = memchr::memchr(b'$', body).unwrap_or(0);
    Reject::new(RejectKind::Truncated, format!("a new '$' at {} inside the sentence", i + 1))
}

/// Bytes already checked to be printable ASCII, as text: ASCII is valid UTF-8, so the
/// empty fallback is never taken.
pub(super) fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The XOR checksum of a body, and whether every byte of it is printable ASCII other than
/// `$`. Two folds without early exits, which the compiler turns into vector instructions
/// (an `all` stops at the first bad byte and stays one byte at a time; measured, the folds
/// take a third of the instructions).
fn scan_body(body: &[u8]) -> (u8, bool) {
    fn bad(b: u8) -> u8 {
        u8::from(!(0x20..=0x7e).contains(&b) || b == b'$')
    }
    let xor = body.iter().fold(0u8, |a, &b| a ^ b);
    let flags = body.iter().fold(0u8, |a, &b| a | bad(b));
    (xor, flags == 0)
}

/// A one-digit hexadecimal field (GSA's system id, GSV's signal id).
pub(super) fn one_hex_digit(field: &[u8]) -> Option<u8> {
    match field {
        [b] => hex_digit(*b),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// A standard sentence's message, built straight into the sentence that is returned.
fn parse_message<'a>(
    talker: Talker,
    formatter: &'a [u8],
    text: Option<&'a [u8]>,
    verified: bool,
) -> Result<ParsedSentence<'a>, Reject> {
    let standard =
        |message| ParsedSentence { sentence: Sentence::Standard { talker, message }, checksum_present: verified };
    // The complete standard layout each sentence must have when no checksum vouches for it.
    let (name, complete): (&'static str, usize) = match formatter {
        b"RMC" => ("RMC", 11),
        b"GGA" => ("GGA", 14),
        b"GLL" => ("GLL", 6),
        b"VTG" => ("VTG", 8),
        b"GSA" => ("GSA", 17),
        b"GSV" => ("GSV", 7),
        b"ZDA" => ("ZDA", 6),
        b"GNS" => ("GNS", 12),
        b"GST" => ("GST", 8),
        b"HDT" => ("HDT", 2),
        b"TXT" => ("TXT", 4),
        _ => return Ok(standard(Message::Other { formatter: ascii(formatter), fields: text.map(ascii) })),
    };
    let mut f = Fields::new(name);
    f.split(text)?;
    // The pre-3.01 VTG is four bare numbers; every later form has the literal `T` in field 2.
    let legacy_vtg = name == "VTG" && f.len == 4 && f.get(2) != b"T";
    if !verified {
        let need = if legacy_vtg { 4 } else { complete };
        if f.len < need {
            return Err(malformed(format!("{name} without a checksum must carry all {need} fields, has {}", f.len)));
        }
    }
    let message = match name {
        "RMC" => layout::read_rmc(&f)?,
        "GGA" => layout::read_gga(&f)?,
        "GLL" => layout::read_gll(&f)?,
        "VTG" if legacy_vtg => layout::read_legacy_vtg(&f)?,
        "VTG" => layout::read_vtg(&f)?,
        "GSA" => layout::read_gsa(&f)?,
        "GSV" => layout::read_gsv(&f)?,
        "ZDA" => layout::read_zda(&f)?,
        "GNS" => layout::read_gns(&f)?,
        "GST" => layout::read_gst(&f)?,
        "HDT" => layout::read_hdt(&f)?,
        _ => layout::read_txt(text.unwrap_or_default()),
    };
    Ok(standard(message))
}

#[cfg(test)]
mod tests {
    use super::scan_body;
    use crate::wire::checksum::xor8;

    proptest::proptest! {
        /// The chunked scan agrees with the plain checksum and byte rules at every length.
        #[test]
        fn the_body_scan_is_the_plain_one(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let clean = body.iter().all(|&b| (0x20..=0x7e).contains(&b) && b != b'$');
            proptest::prop_assert_eq!(scan_body(&body), (xor8(&body), clean));
        }

        #[test]
        fn printable_bodies_scan_clean(body in "[ -#%-~]{0,120}") {
            proptest::prop_assert_eq!(scan_body(body.as_bytes()), (xor8(body.as_bytes()), true));
        }
    }
}
