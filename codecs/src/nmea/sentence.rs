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
use super::fields::{self, Coordinate, NmeaDate, NmeaTime};
use crate::framing::{Reject, RejectKind};
use crate::wire::swar::byte_mask;

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

/// More fields than any sentence here has (GSV with 9 blocks has 40).
const MAX_FIELDS: usize = 64;

/// The comma-separated fields after the address, with missing trailing fields read as empty.
/// Kept as end offsets rather than slices so the table is 128 bytes, not 1 KiB, to fill.
struct Fields<'a> {
    text: &'a [u8],
    /// Where each field ends in `text`; the next one starts one byte (the comma) later.
    ends: [u16; MAX_FIELDS],
    len: usize,
    formatter: &'static str,
}

impl<'a> Fields<'a> {
    fn new(formatter: &'static str) -> Self {
        Fields { text: &[], ends: [0; MAX_FIELDS], len: 0, formatter }
    }

    /// Splits `text` into this table, in place: the table is written two bytes an entry,
    /// and a table returned by value was moved in 16-byte pieces across those stores,
    /// loads the CPU cannot forward from them and waits on.
    fn split(&mut self, text: Option<&'a [u8]>) -> Result<(), Reject> {
        let Some(text) = text else { return Ok(()) };
        let formatter = self.formatter;
        if text.len() > usize::from(u16::MAX) {
            return Err(malformed(format!("{formatter} is over 64 KiB long")));
        }
        self.text = text;
        // The count lives in a local until the end: kept in `self.len` and bumped through
        // it, each comma's store waited on the one before through memory (a store-to-load
        // forwarding round trip a field, on the loop's one dependency chain).
        let mut len = 0;
        let ends = &mut self.ends;
        let mut push = |end: usize, len: &mut usize| -> Result<(), Reject> {
            let slot = ends
                .get_mut(*len)
                .ok_or_else(|| malformed(format!("{formatter} has more than {MAX_FIELDS} fields")))?;
            *slot = end as u16; // within the 64 KiB checked above
            *len += 1;
            Ok(())
        };
        // Eight bytes at a time: fields are a few bytes long, too short for `memchr` to
        // pay off, and a byte loop was a third of a GGA parse.
        let (words, tail) = text.as_chunks::<8>();
        for (i, word) in words.iter().enumerate() {
            let mut commas = byte_mask(u64::from_le_bytes(*word), b',');
            while commas != 0 {
                push(i * 8 + (commas.trailing_zeros() / 8) as usize, &mut len)?;
                commas &= commas - 1;
            }
        }
        for (j, &b) in tail.iter().enumerate() {
            if b == b',' {
                push(words.len() * 8 + j, &mut len)?;
            }
        }
        push(text.len(), &mut len)?;
        self.len = len;
        Ok(())
    }

    /// Field `n`, counting from 1 after the address as the standard does.
    #[inline(always)]
    fn get(&self, n: usize) -> &'a [u8] {
        if n == 0 || n > self.len {
            return &[];
        }
        let start = if n == 1 { 0 } else { usize::from(self.ends[n - 2]) + 1 };
        self.text.get(start..usize::from(self.ends[n - 1])).unwrap_or_default()
    }

    fn require(&self, count: usize) -> Result<(), Reject> {
        if self.len < count {
            return Err(malformed(format!(
                "{} without a checksum must carry all {count} fields, has {}",
                self.formatter, self.len
            )));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn bad_coordinate(&self, value: usize, hemi: usize, what: &str) -> Reject {
        let (v, h) = (self.get(value), self.get(hemi));
        let (v, h) = (String::from_utf8_lossy(v), String::from_utf8_lossy(h));
        malformed(format!("{} fields {value}-{hemi} ({what}): {v:?},{h:?} is not valid", self.formatter))
    }

    #[cold]
    #[inline(never)]
    fn bad(&self, n: usize, what: &str) -> Reject {
        let field = String::from_utf8_lossy(self.get(n));
        malformed(format!("{} field {n} ({what}): {field:?} is not valid", self.formatter))
    }

    #[inline(always)]
    fn opt<T>(&self, n: usize, what: &str, parse: impl Fn(&'a [u8]) -> Option<T>) -> Result<Option<T>, Reject> {
        let f = self.get(n);
        if f.is_empty() {
            return Ok(None);
        }
        parse(f).map(Some).ok_or_else(|| self.bad(n, what))
    }

    #[inline(always)]
    fn time(&self, n: usize) -> Result<Option<NmeaTime>, Reject> {
        self.opt(n, "UTC time", fields::time)
    }

    #[inline(always)]
    fn decimal(&self, n: usize, what: &str) -> Result<Option<Decimal>, Reject> {
        self.opt(n, what, fields::decimal)
    }

    #[inline(always)]
    fn unsigned<T: TryFrom<u32>>(&self, n: usize, what: &str) -> Result<Option<T>, Reject> {
        self.opt(n, what, fields::unsigned::<T>)
    }

    /// A one-letter indicator drawn from `allowed`.
    #[inline(always)]
    fn letter(&self, n: usize, what: &str, allowed: &[u8]) -> Result<Option<u8>, Reject> {
        self.opt(n, what, |f| match f {
            [c] if allowed.contains(c) => Some(*c),
            _ => None,
        })
    }

    /// A literal unit or flag letter that carries no information (`M` after altitudes).
    #[inline(always)]
    fn literal(&self, n: usize, what: &str, expected: &[u8]) -> Result<(), Reject> {
        let f = self.get(n);
        if f.is_empty() || f == expected {
            Ok(())
        } else {
            Err(self.bad(n, what))
        }
    }

    #[inline(always)]
    fn coordinate(&self, value: usize, hemi: usize, max: u16) -> Result<Option<Coordinate>, Reject> {
        let (v, h) = (self.get(value), self.get(hemi));
        if v.is_empty() && h.is_empty() {
            return Ok(None);
        }
        let what = if max == 90 { "latitude" } else { "longitude" };
        fields::coordinate(v, h, max).map(Some).ok_or_else(|| self.bad_coordinate(value, hemi, what))
    }
}

#[cold]
fn malformed(detail: String) -> Reject {
    Reject::new(RejectKind::Malformed, detail)
}

/// FAA mode letters (docs/protocols/nmea.md §3.2), including the Quectel `C`/`U` quirks.
const MODES: &[u8] = b"ADEFRPMSNCU";
const STATUS: &[u8] = b"AV";
const NAV_STATUS: &[u8] = b"SCUV";

/// Parses one sentence, `$` (or `!`) up to the end of its checksum, without the line
/// terminator. Verifies the checksum when there is one.
pub fn parse(text: &[u8]) -> Result<ParsedSentence<'_>, Reject> {
    let Some((&start, rest)) = text.split_first() else {
        return Err(Reject::new(RejectKind::Truncated, "empty sentence"));
    };
    if start != b'$' && start != b'!' {
        return Err(Reject::new(RejectKind::Garbage, "a sentence starts with '$' or '!'"));
    }
    let (body, received) = match memchr::memchr(b'*', rest) {
        Some(star) => {
            let (body, cs) = (&rest[..star], &rest[star + 1..]);
            let received = match cs {
                [h, l] => hex_digit(*h).zip(hex_digit(*l)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            let Some(received) = received else {
                return Err(malformed(format!(
                    "checksum must be two hex digits after '*', found {:?}",
                    String::from_utf8_lossy(cs)
                )));
            };
            (body, Some(received))
        }
        None => (rest, None),
    };
    let (computed, clean) = scan_body(body);
    if let Some(received) = received {
        if computed != received {
            return Err(Reject::checksum(computed.into(), received.into(), 2));
        }
    }
    let checksum_present = received.is_some();
    if !clean {
        if let Some(i) = body.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
            return Err(malformed(format!("byte 0x{:02X} at {} is not printable ASCII", body[i], i + 1)));
        }
        // `$` is reserved as the start marker (docs/protocols/nmea.md §1); inside a body it means two
        // sentences ran together.
        let i = memchr::memchr(b'$', body).unwrap_or(0);
        return Err(Reject::new(RejectKind::Truncated, format!("a new '$' at {} inside the sentence", i + 1)));
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

/// Bytes already checked to be printable ASCII, as text: ASCII is valid UTF-8, so the
/// empty fallback is never taken.
fn ascii(bytes: &[u8]) -> &str {
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
fn one_hex_digit(field: &[u8]) -> Option<u8> {
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
        f.require(if legacy_vtg { 4 } else { complete })?;
    }
    Ok(standard(match name {
        "RMC" => Message::Rmc(Rmc {
            time: f.time(1)?,
            status: f.letter(2, "status", STATUS)?,
            latitude: f.coordinate(3, 4, 90)?,
            longitude: f.coordinate(5, 6, 180)?,
            speed_knots: f.decimal(7, "speed over ground, knots")?,
            course_deg: f.decimal(8, "course over ground")?,
            date: f.opt(9, "date", fields::date)?,
            magnetic_variation_deg: f.decimal(10, "magnetic variation")?,
            magnetic_variation_dir: f.letter(11, "magnetic variation direction", b"EW")?,
            mode: f.letter(12, "mode indicator", MODES)?,
            nav_status: f.letter(13, "navigational status", NAV_STATUS)?,
        }),
        "GGA" => {
            f.literal(10, "altitude unit", b"M")?;
            f.literal(12, "geoid separation unit", b"M")?;
            Message::Gga(Gga {
                time: f.time(1)?,
                latitude: f.coordinate(2, 3, 90)?,
                longitude: f.coordinate(4, 5, 180)?,
                quality: f.unsigned(6, "fix quality")?,
                satellites: f.unsigned(7, "satellites used")?,
                hdop: f.decimal(8, "HDOP")?,
                altitude_m: f.decimal(9, "altitude")?,
                geoid_separation_m: f.decimal(11, "geoid separation")?,
                dgps_age_s: f.decimal(13, "DGPS age")?,
                dgps_station: f.unsigned(14, "DGPS station")?,
            })
        }
        "GLL" => Message::Gll(Gll {
            latitude: f.coordinate(1, 2, 90)?,
            longitude: f.coordinate(3, 4, 180)?,
            time: f.time(5)?,
            status: f.letter(6, "status", STATUS)?,
            mode: f.letter(7, "mode indicator", MODES)?,
        }),
        "VTG" if !legacy_vtg => {
            f.literal(4, "magnetic course unit", b"M")?;
            f.literal(6, "knots unit", b"N")?;
            f.literal(8, "km/h unit", b"K")?;
            Message::Vtg(Vtg {
                course_true_deg: f.decimal(1, "course, true")?,
                course_magnetic_deg: f.decimal(3, "course, magnetic")?,
                speed_knots: f.decimal(5, "speed, knots")?,
                speed_kmh: f.decimal(7, "speed, km/h")?,
                mode: f.letter(9, "mode indicator", MODES)?,
                legacy: false,
            })
        }
        "VTG" => Message::Vtg(Vtg {
            course_true_deg: f.decimal(1, "course, true")?,
            course_magnetic_deg: f.decimal(2, "course, magnetic")?,
            speed_knots: f.decimal(3, "speed, knots")?,
            speed_kmh: f.decimal(4, "speed, km/h")?,
            mode: None,
            legacy: true,
        }),
        "GSA" => {
            // 12 id slots between the fix type and the DOPs; fewer when the sentence is
            // cut short with a checksum.
            let id_end = f.len.min(14);
            let mut satellite_ids = Vec::new();
            for n in 3..=id_end {
                if let Some(id) = f.unsigned(n, "satellite id")? {
                    satellite_ids.push(id);
                }
            }
            Message::Gsa(Gsa {
                selection_mode: f.letter(1, "selection mode", b"MA")?,
                fix_type: f.unsigned(2, "fix type")?,
                satellite_ids,
                pdop: f.decimal(15, "PDOP")?,
                hdop: f.decimal(16, "HDOP")?,
                vdop: f.decimal(17, "VDOP")?,
                system_id: f.opt(18, "system id", one_hex_digit)?,
            })
        }
        "GSV" => {
            // 3 header fields, then blocks of 4, then an optional signal id: 3 + 4k (+ 1).
            let after_header = f.len.saturating_sub(3);
            let has_signal = after_header % 4 == 1;
            let block_fields = after_header - usize::from(has_signal);
            let mut satellites = Vec::with_capacity(block_fields.div_ceil(4));
            for b in 0..block_fields.div_ceil(4) {
                let n = 4 + b * 4;
                satellites.push(SatelliteInView {
                    id: f.unsigned(n, "satellite id")?,
                    elevation_deg: f
                        .opt(n + 1, "elevation", |s| fields::signed::<i16>(s).filter(|e| (-90..=90).contains(e)))?,
                    azimuth_deg: f.opt(n + 2, "azimuth", |s| fields::unsigned::<u16>(s).filter(|a| *a <= 360))?,
                    snr_db: f.unsigned(n + 3, "SNR")?,
                });
            }
            let signal_id = if has_signal { f.opt(f.len, "signal id", one_hex_digit)? } else { None };
            Message::Gsv(Gsv {
                sentences: f.unsigned(1, "number of sentences")?,
                sentence: f.unsigned(2, "sentence number")?,
                in_view: f.unsigned(3, "satellites in view")?,
                satellites,
                signal_id,
            })
        }
        "ZDA" => {
            let z = Zda {
                time: f.time(1)?,
                day: f.unsigned(2, "day")?,
                month: f.unsigned(3, "month")?,
                year: f.unsigned(4, "year")?,
                zone_hours: f
                    .opt(5, "local zone hours", |s| fields::signed::<i8>(s).filter(|h| (-13..=13).contains(h)))?,
                zone_minutes: f
                    .opt(6, "local zone minutes", |s| fields::signed::<i8>(s).filter(|m| (-59..=59).contains(m)))?,
            };
            if let (Some(d), Some(m), Some(y)) = (z.day, z.month, z.year) {
                if crate::time::Date::new(i32::from(y), m, d).is_none() {
                    return Err(malformed(format!("ZDA date {y:04}-{m:02}-{d:02} does not exist")));
                }
            }
            Message::Zda(z)
        }
        "GNS" => Message::Gns(Gns {
            time: f.time(1)?,
            latitude: f.coordinate(2, 3, 90)?,
            longitude: f.coordinate(4, 5, 180)?,
            mode: f.opt(6, "mode", |s| s.iter().all(|c| MODES.contains(c)).then(|| ascii(s)))?,
            satellites: f.unsigned(7, "satellites used")?,
            hdop: f.decimal(8, "HDOP")?,
            altitude_m: f.decimal(9, "altitude")?,
            geoid_separation_m: f.decimal(10, "geoid separation")?,
            dgps_age_s: f.decimal(11, "DGPS age")?,
            dgps_station: f.unsigned(12, "DGPS station")?,
            nav_status: f.letter(13, "navigational status", NAV_STATUS)?,
        }),
        "GST" => Message::Gst(Gst {
            time: f.time(1)?,
            rms_range_residual: f.decimal(2, "RMS of range residuals")?,
            sigma_semi_major_m: f.decimal(3, "semi-major sigma")?,
            sigma_semi_minor_m: f.decimal(4, "semi-minor sigma")?,
            semi_major_orientation_deg: f.decimal(5, "semi-major orientation")?,
            sigma_latitude_m: f.decimal(6, "latitude sigma")?,
            sigma_longitude_m: f.decimal(7, "longitude sigma")?,
            sigma_altitude_m: f.decimal(8, "altitude sigma")?,
        }),
        "HDT" => {
            f.literal(2, "true indicator", b"T")?;
            Message::Hdt(Hdt { heading_deg: f.decimal(1, "heading")? })
        }
        "TXT" => {
            // Rejoin fields 4..n: text may contain commas (docs/protocols/nmea.md §4, TXT).
            let text = text.map(ascii).unwrap_or("");
            let mut parts = text.splitn(4, ',');
            Message::Txt(Txt {
                sentences: parts.next().unwrap_or(""),
                sentence: parts.next().unwrap_or(""),
                text_id: parts.next().unwrap_or(""),
                text: parts.next().unwrap_or(""),
            })
        }
        _ => Message::Other { formatter: ascii(formatter), fields: text.map(ascii) },
    }))
}

#[cfg(test)]
mod tests {
    use super::{scan_body, Fields, MAX_FIELDS};
    use crate::wire::checksum::xor8;

    proptest::proptest! {
        /// The word-at-a-time split finds exactly the commas a byte loop finds (commas next
        /// to `-`, the byte the short zero-byte test confuses, included), at every length
        /// and alignment, and refuses too many fields as the byte loop did.
        #[test]
        fn the_field_split_is_the_plain_one(text in "[,\\-0-9A-Z.]{0,120}") {
            let plain: Vec<usize> =
                text.bytes().enumerate().filter(|&(_, b)| b == b',').map(|(i, _)| i).chain([text.len()]).collect();
            let mut f = Fields::new("TST");
            match f.split(Some(text.as_bytes())) {
                Ok(()) => {
                    let ends: Vec<usize> = f.ends[..f.len].iter().map(|&e| usize::from(e)).collect();
                    proptest::prop_assert_eq!(ends, plain);
                }
                Err(_) => proptest::prop_assert!(plain.len() > MAX_FIELDS),
            }
        }

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
