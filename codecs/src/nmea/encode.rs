//! The encoder for the sentences [`super::sentence`] parses: typed sentence in, `$…*HH\r\n`
//! out, checksum computed over what was written. Mirrors the parser field by field so that
//! decode → encode → decode gives back the same sentence (checked by property tests).

use std::fmt::Write as _;

use bytes::BufMut;

use super::fields::{Coordinate, NmeaDate, NmeaTime, EXACT_POWERS_OF_TEN, EXACT_POWERS_OF_TEN_U64};
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
    let mut body = Body::new();
    match sentence {
        Sentence::Standard { talker, message } => standard(&mut body, *talker, message)?,
        Sentence::Proprietary { address, fields } | Sentence::Unrecognised { address, fields } => {
            body.push_str(address);
            if let Some(f) = fields {
                body.push(b',');
                body.push_str(f);
            }
        }
    }
    let body = body.as_bytes();
    // Two folds without early exits, which vectorise (as the parser's `scan_body`); the
    // offending byte is looked for only when there is one.
    let not_allowed = |b: u8| !(0x20..=0x7e).contains(&b) || b == b'$' || b == b'*';
    if body.iter().fold(false, |any, &b| any | not_allowed(b)) {
        let bad = body.iter().find(|&&b| not_allowed(b)).copied().unwrap_or_default();
        return Err(EncodeError(format!("byte 0x{bad:02X} cannot appear in a sentence")));
    }
    out.put_u8(b'$');
    out.put_slice(body);
    let cs = xor8(body);
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

/// The body while it is built: on the stack up to `STACK` bytes, which every standard
/// sentence fits (the standard's limit is 82 characters), and on the heap past that (long
/// proprietary sentences). A `String` per sentence, and one per zero-padded field through
/// `format!`, had made encoding slower than parsing.
struct Body {
    stack: [u8; Body::STACK],
    len: usize,
    heap: Vec<u8>,
}

impl Body {
    const STACK: usize = 200;

    fn new() -> Self {
        Body { stack: [0; Body::STACK], len: 0, heap: Vec::new() }
    }

    #[inline]
    fn push_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        // Fields are short: up to 16 bytes go in as two overlapping fixed-size copies, where
        // a copy of a length known only at run time is a `memcpy` call each.
        if n <= 16 && self.heap.is_empty() {
            if let Some(room) = self.stack.get_mut(self.len..self.len + 16) {
                if n >= 8 {
                    room[..8].copy_from_slice(&bytes[..8]);
                    room[n - 8..n].copy_from_slice(&bytes[n - 8..]);
                } else if n >= 4 {
                    room[..4].copy_from_slice(&bytes[..4]);
                    room[n - 4..n].copy_from_slice(&bytes[n - 4..]);
                } else {
                    for (d, s) in room.iter_mut().zip(bytes) {
                        *d = *s;
                    }
                }
                self.len += n;
                return;
            }
        }
        self.push_slice_slow(bytes);
    }

    #[cold]
    fn push_slice_slow(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() {
            if let Some(room) = self.stack.get_mut(self.len..self.len + bytes.len()) {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.heap.extend_from_slice(&self.stack[..self.len]);
        }
        self.heap.extend_from_slice(bytes);
    }

    #[inline]
    fn push(&mut self, b: u8) {
        match self.stack.get_mut(self.len) {
            Some(slot) if self.heap.is_empty() => {
                *slot = b;
                self.len += 1;
            }
            _ => self.push_slice(&[b]),
        }
    }

    fn push_str(&mut self, s: &str) {
        self.push_slice(s.as_bytes());
    }

    fn as_bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    /// `v` in decimal, zero-padded to `width` digits. Most fields are below 100 with at most
    /// two digits' padding (times, dates, satellite ids, counts): those take one table read
    /// here, inlined; the rest go to `uint_any`.
    #[inline(always)]
    fn uint(&mut self, v: u64, width: usize) {
        if v < 100 && width <= 2 {
            let pair = 2 * v as usize;
            let digits = &DIGIT_PAIRS[pair..pair + 2];
            if v >= 10 || width == 2 {
                self.push_slice(digits);
            } else {
                self.push(digits[1]);
            }
            return;
        }
        // Three digits exactly (longitude degrees, whole parts of 100–999, millisecond
        // fractions): a digit and a pair.
        if v < 1000 && width <= 3 && (v >= 100 || width == 3) {
            let pair = 2 * (v % 100) as usize;
            self.push_slice(&[b'0' + (v / 100) as u8, DIGIT_PAIRS[pair], DIGIT_PAIRS[pair + 1]]);
            return;
        }
        self.uint_any(v, width);
    }

    /// `v` in decimal, zero-padded to `width` digits: two digits a step from the last into
    /// a buffer of zeros, whose last `width` (or more) bytes then go in as one short copy.
    fn uint_any(&mut self, v: u64, width: usize) {
        const MAX: usize = 20; // u64::MAX has 20 digits
        let mut digits = [b'0'; MAX];
        let mut rest = v;
        let mut start = MAX;
        while rest >= 100 {
            let pair = (rest % 100) as usize;
            rest /= 100;
            digits[start - 2..start].copy_from_slice(&DIGIT_PAIRS[2 * pair..2 * pair + 2]);
            start -= 2;
        }
        let pair = rest as usize;
        digits[start - 2..start].copy_from_slice(&DIGIT_PAIRS[2 * pair..2 * pair + 2]);
        start -= if rest >= 10 { 2 } else { 1 };
        if width > MAX {
            for _ in MAX..width {
                self.push(b'0');
            }
        }
        self.push_slice(&digits[start.min(MAX.saturating_sub(width))..]);
    }

    /// `v` as plain decimal text that parses back to the same `f64`: the fewest fraction
    /// digits (up to 9) for which the digits, divided by that power of ten, give `v` again.
    /// That division is how [`super::fields::decimal`] reads the text (and is correctly
    /// rounded, as `f64::from_str` is), so the check is the round trip itself. Anything else
    /// (more digits, from 2^52 up, not finite) goes through `Display`.
    fn decimal(&mut self, v: f64) {
        // `Display` gives no sign to a NaN, whatever its sign bit.
        if v.is_sign_negative() && !v.is_nan() {
            self.push(b'-');
        }
        let a = v.abs();
        // Below 2^50 / 10^9 (about 1.1 million: every NMEA value but large altitudes), the
        // nine-digit candidate settles it in one step. If any candidate of k ≤ 9 digits reads
        // back, it lies within 0.25 of `a` × 10^9 after scaling (half an ulp of `a` times
        // 10^9, plus the product's rounding), so the nine-digit rounding *is* that candidate
        // followed by 9 − k zeros: it reads back too (the same rational, one correctly
        // rounded division), and dropping its trailing zeros gives the fewest digits. When
        // it does not read back, no candidate does: the search below is skipped.
        let scaled = a * 1e9;
        // Not finite: no digits to find (`Display` writes `inf` or `NaN`).
        let mut candidates = if a.is_finite() { 10 } else { 0 };
        if scaled < 1_125_899_906_842_624.0 {
            let m = (scaled + 0.5) as i64;
            if (m as f64 / 1e9).to_bits() == a.to_bits() {
                // The whole part is `a`'s, as in the search below.
                let whole = a as i64;
                self.uint(whole as u64, 1);
                self.fraction_of_nine((m - whole * 1_000_000_000) as u32);
                return;
            }
            candidates = 0;
        }
        for (k, &scale) in EXACT_POWERS_OF_TEN.iter().enumerate().take(candidates) {
            let scaled = a * scale;
            // Below 2^52 adding a half is exact, so the truncation rounds half up (`round`
            // is a library call on baseline x86-64).
            if scaled >= 4_503_599_627_370_496.0 {
                break;
            }
            // Below 2^52 the conversions can go through `i64`, one instruction each way
            // (`u64`'s take several on baseline x86-64).
            let m = (scaled + 0.5) as i64;
            // A candidate that reads back lies within 1.5 units in the last place of
            // `scaled` of `m` (half an ulp of `a`, times 10^k, is at most an ulp of
            // `scaled`; the multiplication adds half of one), and an ulp of `scaled` is at most
            // `scaled` × 2^-52: so one farther than `scaled` × 2^-50 cannot read back, and is
            // passed over without the division (most candidates: their fraction is plainly
            // not zero).
            if (scaled - m as f64).abs() > scaled * (1.0 / 1_125_899_906_842_624.0) {
                continue;
            }
            if (m as f64 / scale).to_bits() == a.to_bits() {
                // The whole part is `a`'s: the quotient rounds to `a`, and rounding never
                // crosses the integer below it. That spares a division by a run-time 10^k.
                let whole = a as i64;
                self.uint(whole as u64, 1);
                if k > 0 {
                    self.push(b'.');
                    self.uint((m - whole * EXACT_POWERS_OF_TEN_U64[k] as i64) as u64, k);
                }
                return;
            }
        }
        let _ = write!(self, "{a}");
    }
}

impl Body {
    /// `.` and the nine digits of `frac` (below 10^9), its trailing zeros left off; nothing
    /// when it is zero. The last eight digits are made at once in one word (each step
    /// splits every lane in two by a multiplication that divides exactly in range: 10,000
    /// into 100s, then 100 into 10s), and the zeros are counted off that word.
    #[inline]
    fn fraction_of_nine(&mut self, frac: u32) {
        if frac == 0 {
            return;
        }
        let first = frac / 100_000_000;
        let last8 = u64::from(frac % 100_000_000);
        // Little-endian lanes, the most significant digits in the lowest bytes: 4 + 4 digits
        // in 32-bit lanes, then 2 + 2 in 16-bit lanes, then 1 + 1 in bytes.
        let x = (last8 / 10_000) | ((last8 % 10_000) << 32);
        let hundreds = ((x * 5243) >> 19) & 0x0000_007f_0000_007f;
        let x = hundreds | ((x - hundreds * 100) << 16);
        let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
        let digits = (tens | ((x - tens * 10) << 8)) | 0x3030_3030_3030_3030;
        // '0' bytes become zero; the high ones are the trailing zeros (frac is not zero, so
        // when all eight are, `first` is not).
        let trailing_zeros = ((digits ^ 0x3030_3030_3030_3030).leading_zeros() / 8) as usize;
        // The ten bytes `.`, first digit, eight digits as two words made in registers and
        // stored whole: gathered in a byte array first, they were read back across the
        // smaller stores that wrote it, a load the CPU cannot forward and waits on.
        let head = u64::from(b'.') | u64::from(b'0' + first as u8) << 8 | digits << 16;
        let tail = (digits >> 48) as u16;
        let len = 10 - trailing_zeros;
        if self.heap.is_empty() {
            if let Some(room) = self.stack.get_mut(self.len..self.len + 10) {
                room[..8].copy_from_slice(&head.to_le_bytes());
                room[8..].copy_from_slice(&tail.to_le_bytes());
                self.len += len;
                return;
            }
        }
        let mut text = [0; 10];
        text[..8].copy_from_slice(&head.to_le_bytes());
        text[8..].copy_from_slice(&tail.to_le_bytes());
        self.push_slice_slow(&text[..len]);
    }
}

/// "00" to "99", two bytes each.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

impl std::fmt::Write for Body {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push_str(s);
        Ok(())
    }
}

/// Builds the comma-separated field list after the address.
struct Out<'s> {
    s: &'s mut Body,
}

// Every helper is inlined into `standard` (out of line, each call read and wrote the body's
// length through memory): ~2.5% of an encode.
impl Out<'_> {
    #[inline(always)]
    fn sep(&mut self) -> &mut Body {
        self.s.push(b',');
        self.s
    }
    #[inline(always)]
    fn text(&mut self, t: &str) {
        self.sep().push_str(t);
    }
    /// A number field, empty when absent.
    #[inline(always)]
    fn dec(&mut self, v: Option<f64>) {
        let s = self.sep();
        if let Some(v) = v {
            s.decimal(v);
        }
    }
    /// An unsigned field, zero-padded to `width` digits, empty when absent.
    #[inline(always)]
    fn uint(&mut self, v: Option<impl Into<u64>>, width: usize) {
        let s = self.sep();
        if let Some(v) = v {
            s.uint(v.into(), width);
        }
    }
    /// A signed field: `-` then the digits, zero-padded to `width` characters with the
    /// sign (as `{:02}` pads), empty when absent.
    #[inline(always)]
    fn int(&mut self, v: Option<impl Into<i64>>, width: usize) {
        let s = self.sep();
        if let Some(v) = v {
            let v: i64 = v.into();
            if v < 0 {
                s.push(b'-');
                s.uint(v.unsigned_abs(), width.saturating_sub(1));
            } else {
                s.uint(v as u64, width);
            }
        }
    }
    #[inline(always)]
    fn opt_text(&mut self, t: Option<&str>) {
        let s = self.sep();
        if let Some(t) = t {
            s.push_str(t);
        }
    }
    /// A one-digit hexadecimal id (GSA's system id, GSV's signal id), left out when absent.
    #[inline(always)]
    fn hex_id(&mut self, v: Option<u8>) {
        if let Some(v) = v {
            let _ = write!(self.sep(), "{v:X}");
        }
    }
    #[inline(always)]
    fn letter(&mut self, v: Option<u8>) {
        let s = self.sep();
        if let Some(c) = v {
            s.push(c);
        }
    }
    #[inline(always)]
    fn time(&mut self, t: Option<NmeaTime>) {
        let s = self.sep();
        if let Some(t) = t {
            s.uint(t.hour.into(), 2);
            s.uint(t.minute.into(), 2);
            s.uint(t.second.into(), 2);
            if t.fraction_digits > 0 {
                s.push(b'.');
                s.uint(t.fraction.into(), usize::from(t.fraction_digits));
            }
        }
    }
    #[inline(always)]
    fn date(&mut self, d: Option<NmeaDate>) {
        let s = self.sep();
        if let Some(d) = d {
            s.uint(d.day.into(), 2);
            s.uint(d.month.into(), 2);
            s.uint(d.year2.into(), 2);
        }
    }
    /// Value and hemisphere fields: `ddmm.mmmm,N` / `dddmm.mmmm,E`.
    #[inline(always)]
    fn coordinate(&mut self, c: Option<Coordinate>, degree_digits: usize) {
        let s = self.sep();
        if let Some(c) = c {
            s.uint(c.whole_degrees.into(), degree_digits);
            if c.minutes < 10.0 {
                s.push(b'0');
            }
            s.decimal(c.minutes);
        }
        self.letter(c.map(|c| c.hemisphere));
    }
}

fn standard(body: &mut Body, talker: Talker, message: &Message<'_>) -> Result<(), EncodeError> {
    body.push_str(talker.as_str());
    body.push_str(message.formatter());
    let mut o = Out { s: body };
    match message {
        Message::Rmc(m) => {
            o.time(m.time);
            o.letter(m.status);
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.dec(m.speed_knots);
            o.dec(m.course_deg);
            o.date(m.date);
            o.dec(m.magnetic_variation_deg);
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
            o.uint(m.quality, 1);
            o.uint(m.satellites, 1);
            o.dec(m.hdop);
            o.dec(m.altitude_m);
            o.text("M");
            o.dec(m.geoid_separation_m);
            o.text("M");
            o.dec(m.dgps_age_s);
            o.uint(m.dgps_station, 4);
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
            o.dec(m.course_true_deg);
            o.dec(m.course_magnetic_deg);
            o.dec(m.speed_knots);
            o.dec(m.speed_kmh);
        }
        Message::Vtg(m) => {
            o.dec(m.course_true_deg);
            o.text("T");
            o.dec(m.course_magnetic_deg);
            o.text("M");
            o.dec(m.speed_knots);
            o.text("N");
            o.dec(m.speed_kmh);
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
            o.uint(m.fix_type, 1);
            for slot in 0..12 {
                o.uint(m.satellite_ids.get(slot).copied(), 2);
            }
            o.dec(m.pdop);
            o.dec(m.hdop);
            o.dec(m.vdop);
            o.hex_id(m.system_id);
        }
        Message::Gsv(m) => {
            o.uint(m.sentences, 1);
            o.uint(m.sentence, 1);
            o.uint(m.in_view, 2);
            for sat in &m.satellites {
                o.uint(sat.id, 2);
                o.int(sat.elevation_deg, 2);
                o.uint(sat.azimuth_deg, 3);
                o.uint(sat.snr_db, 2);
            }
            o.hex_id(m.signal_id);
        }
        Message::Zda(m) => {
            o.time(m.time);
            o.uint(m.day, 2);
            o.uint(m.month, 2);
            o.uint(m.year, 4);
            o.int(m.zone_hours, 2);
            o.int(m.zone_minutes, 2);
        }
        Message::Gns(m) => {
            o.time(m.time);
            o.coordinate(m.latitude, 2);
            o.coordinate(m.longitude, 3);
            o.opt_text(m.mode);
            o.uint(m.satellites, 2);
            o.dec(m.hdop);
            o.dec(m.altitude_m);
            o.dec(m.geoid_separation_m);
            o.dec(m.dgps_age_s);
            o.uint(m.dgps_station, 4);
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
                o.dec(v);
            }
        }
        Message::Hdt(m) => {
            o.dec(m.heading_deg);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decimal_text(v: f64) -> String {
        let mut b = Body::new();
        b.decimal(v);
        String::from_utf8(b.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn decimals_are_written_short_and_plain() {
        for (v, text) in [
            (12.5, "12.5"),
            (0.146, "0.146"),
            (0.005, "0.005"),
            (5.0, "5"),
            (545.4, "545.4"),
            (-21.3, "-21.3"),
            (-0.0, "-0"),
            (4.13993, "4.13993"),
            (1e-12, "0.000000000001"),
            (1e-9, "0.000000001"),
            (0.1, "0.1"),
            (59.99999, "59.99999"),
            (999_999.999_999_999, "999999.999999999"),
            (1_125_899.5, "1125899.5"),
            (1_125_900.25, "1125900.25"),
            // No candidate of nine digits or fewer reads back: the shortest text that does.
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NEG_INFINITY, "-inf"),
            (-f64::NAN, "NaN"),
        ] {
            assert_eq!(decimal_text(v), text, "{v}");
        }
        // Past the nine-digit step's range, one ulp off a short value: the search finds no
        // candidate either, and `Display` writes it.
        let odd = f64::from_bits(2_000_000.3f64.to_bits() + 1);
        assert_eq!(decimal_text(odd), odd.to_string());
        assert!(decimal_text(odd).len() > "2000000.3".len());
        let mut b = Body::new();
        b.uint(7, 3);
        b.uint(1234, 2);
        b.uint(0, 1);
        assert_eq!(b.as_bytes(), b"00712340");
    }

    #[test]
    fn long_bodies_move_to_the_heap_whole() {
        let mut b = Body::new();
        let long = "A,".repeat(150);
        b.push_str(&long[..Body::STACK - 1]);
        b.push_str(&long[Body::STACK - 1..]);
        assert_eq!(b.as_bytes(), long.as_bytes());
    }

    proptest! {
        /// Integers as `format!` pads them, at any width (past the 20 digits of the buffer too).
        #[test]
        fn unsigned_integers_are_padded_as_format_pads(v in any::<u64>(), small in 0u64..1000, width in 0usize..24) {
            for v in [v, small] {
                let mut b = Body::new();
                b.uint(v, width);
                let expected = format!("{v:0width$}");
                prop_assert_eq!(b.as_bytes(), expected.as_bytes());
            }
        }

        /// The fraction's digits made in one word: `.` and nine digits as `format!` pads
        /// them, less their trailing zeros.
        #[test]
        fn nine_fraction_digits_are_written_as_format_writes_them(frac in 0u32..1_000_000_000, small in 0u32..1000) {
            for frac in [frac, small, small * 1_000_000, small * 1000] {
                let mut b = Body::new();
                b.fraction_of_nine(frac);
                let padded = format!(".{frac:09}");
                let expected = if frac == 0 { "" } else { padded.trim_end_matches('0') };
                prop_assert_eq!(b.as_bytes(), expected.as_bytes());
            }
        }

        /// Any finite value reads back to the same bits through the field parser.
        #[test]
        fn written_decimals_read_back(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            prop_assume!(v.is_finite());
            let text = decimal_text(v);
            prop_assert!(!text.contains(['e', 'E']), "{}", text);
            prop_assert_eq!(super::super::fields::decimal(text.as_bytes()).map(f64::to_bits), Some(v.to_bits()), "{}", text);
        }

        /// Neither the nine-digit step nor the filter in `decimal` passes over a candidate
        /// that reads back: the text is the one the plain search (every candidate divided
        /// back) finds, for values from text of up to 9 fraction digits and for any bits.
        #[test]
        fn the_candidate_filter_loses_no_candidate(int in 0u64..10_000_000, frac in "[0-9]{0,9}", bits in any::<u64>()) {
            let from_text = super::super::fields::decimal(format!("{int}.{frac}0").as_bytes()).unwrap();
            for v in [from_text, f64::from_bits(bits).abs()] {
                prop_assume!(v.is_finite());
                let plain = (0..10).find(|&k| {
                    let scale = EXACT_POWERS_OF_TEN[k];
                    let scaled = v * scale;
                    let m = (scaled + 0.5) as i64;
                    scaled < 4_503_599_627_370_496.0 && (m as f64 / scale).to_bits() == v.to_bits()
                });
                let text = decimal_text(v);
                if let Some(k) = plain {
                    let m = (v * EXACT_POWERS_OF_TEN[k] + 0.5) as u64;
                    let scale = EXACT_POWERS_OF_TEN_U64[k];
                    let expected =
                        if k == 0 { m.to_string() } else { format!("{}.{:0k$}", m / scale, m % scale) };
                    prop_assert_eq!(&text, &expected, "{}", v);
                }
            }
        }

        /// Values read from receiver-style text come back as short as they went in (or
        /// shorter: trailing zeros of the fraction are not kept).
        #[test]
        fn decimals_from_text_keep_their_digits(int in 0u32..100_000, frac in "[0-9]{0,7}") {
            let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            let v = super::super::fields::decimal(text.as_bytes()).unwrap();
            let written = decimal_text(v);
            prop_assert!(written.len() <= text.len().max(1), "{} -> {}", text, written);
            prop_assert_eq!(written.parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }
}
