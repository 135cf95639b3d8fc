//! The encoder for the sentences [`super::sentence`] parses: typed sentence in, `$…*HH\r\n`
//! out, checksum computed over what was written. Mirrors the parser field by field so that
//! decode → encode → decode gives back the same sentence (checked by property tests).

use bytes::BufMut;

use super::decimal::Decimal;
use super::fields::{Coordinate, NmeaDate, NmeaTime};
use super::layout;
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
    let mut buffers = Buffers::new();
    let body = write_body(sentence, &mut buffers)?;
    // Two folds without early exits, which vectorise (as the parser's `scan_body`); the
    // offending byte is looked for only when there is one. (One pass doing both, 16 lanes
    // of each, was a fifth slower.)
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

/// The body of `sentence` (between `$` and `*`), in `buffers`. Not generic over the output,
/// so the field writers are compiled once.
fn write_body<'b>(sentence: &Sentence<'_>, buffers: &'b mut Buffers) -> Result<&'b [u8], EncodeError> {
    let mut body = Body::new(buffers);
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
    Ok(body.into_bytes())
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

/// Where a body is built: on the stack up to `STACK` bytes, which every standard sentence
/// fits (the standard's limit is 82 characters), and on the heap past that (long
/// proprietary sentences). A `String` per sentence, and one per zero-padded field through
/// `format!`, had made encoding slower than parsing.
struct Buffers {
    stack: [u8; Buffers::STACK],
    heap: Vec<u8>,
}

impl Buffers {
    const STACK: usize = 200;

    fn new() -> Self {
        Buffers { stack: [0; Buffers::STACK], heap: Vec::new() }
    }
}

/// A body while it is built. Its length lives here, apart from the bytes: the writers are
/// all inlined into one function where this struct is a local, so the length stays in a
/// register. (Kept beside the bytes, behind the same `&mut`, it went through memory on
/// every push: a store of the bytes, then a load of the length the compiler could not
/// prove untouched by that store, a store-to-load round trip on the one chain every field
/// is written along.) The out-of-line paths take the buffers and the length as values and
/// hand the length back, so the struct's address never leaves the function.
struct Body<'b> {
    buf: &'b mut Buffers,
    len: usize,
    /// The body outgrew the stack: everything is in `buf.heap` from then on.
    spilled: bool,
}

impl<'b> Body<'b> {
    #[inline(always)]
    fn new(buf: &'b mut Buffers) -> Self {
        Body { buf, len: 0, spilled: false }
    }

    #[inline(always)]
    fn push_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        // Fields are short: up to 16 bytes go in as two overlapping fixed-size copies, where
        // a copy of a length known only at run time is a `memcpy` call each.
        if n <= 16 && !self.spilled {
            if let Some(room) = self.buf.stack.get_mut(self.len..self.len + 16) {
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
        (self.len, self.spilled) = push_slow(self.buf, self.len, self.spilled, bytes);
    }

    #[inline(always)]
    fn push(&mut self, b: u8) {
        match self.buf.stack.get_mut(self.len) {
            Some(slot) if !self.spilled => {
                *slot = b;
                self.len += 1;
            }
            _ => self.push_slice(&[b]),
        }
    }

    #[inline(always)]
    fn push_str(&mut self, s: &str) {
        self.push_slice(s.as_bytes());
    }

    #[inline(always)]
    fn into_bytes(self) -> &'b [u8] {
        if self.spilled {
            &self.buf.heap
        } else {
            &self.buf.stack[..self.len]
        }
    }

    /// `v` in decimal, zero-padded to `width` digits. Most fields are below 100 with at most
    /// two digits' padding (times, dates, satellite ids, counts): those take one table read
    /// here, inlined; the rest go to `uint_any`.
    #[inline(always)]
    pub(super) fn uint(&mut self, v: u64, width: usize) {
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
        (self.len, self.spilled) = uint_slow(self.buf, self.len, self.spilled, v, width);
    }

    /// `d` as sent: its digits zero-padded to its width, and to at least `whole_digits`
    /// before the point, with the point before the last `scale` of them. Up to eight digits
    /// (every field receivers send but long coordinates) the text is made in registers:
    /// the digits in one word, split at the point's place, stored as one 16-byte write.
    #[inline(always)]
    fn decimal(&mut self, d: Decimal, whole_digits: usize) {
        if d.is_negative() {
            self.push(b'-');
        }
        let scale = usize::from(d.scale());
        let width = usize::from(d.width()).max(scale + whole_digits);
        if width <= 8 && !self.spilled {
            if let Some(room) = self.buf.stack.get_mut(self.len..self.len + 16) {
                // The digits are below 10^width (`Decimal`'s invariant), so below 10^8: the
                // last `width` of the eight digits are all of them, padded.
                let text = eight_digits(d.digits() as u32) >> (8 * (8 - width));
                let text = if scale == 0 {
                    u128::from(text)
                } else {
                    // The whole part is at most 7 digits here (the fraction has one).
                    let whole = width - scale;
                    let low = text & ((1u64 << (8 * whole)) - 1);
                    let high = text >> (8 * whole);
                    u128::from(low) | u128::from(b'.') << (8 * whole) | u128::from(high) << (8 * (whole + 1))
                };
                room.copy_from_slice(&text.to_le_bytes());
                self.len += width + usize::from(scale > 0);
                return;
            }
        }
        (self.len, self.spilled) = decimal_slow(self.buf, self.len, self.spilled, d, whole_digits);
    }
}

// The out-of-line paths: each takes the body's parts as values and returns its new length,
// so that `Body` itself stays in registers where it is inlined (see `Body`).

/// `Body::push_slice` past 16 bytes, near the end of the stack buffer, or on the heap.
#[cold]
#[inline(never)]
fn push_slow(buf: &mut Buffers, len: usize, spilled: bool, bytes: &[u8]) -> (usize, bool) {
    if !spilled {
        if let Some(room) = buf.stack.get_mut(len..len + bytes.len()) {
            room.copy_from_slice(bytes);
            return (len + bytes.len(), false);
        }
        buf.heap.extend_from_slice(&buf.stack[..len]);
    }
    buf.heap.extend_from_slice(bytes);
    (len + bytes.len(), true)
}

/// `Body::uint` past its inlined cases: two digits a step from the last into a buffer of
/// zeros, whose last `width` (or more) bytes then go in as one short copy.
#[inline(never)]
fn uint_slow(buf: &mut Buffers, len: usize, spilled: bool, v: u64, width: usize) -> (usize, bool) {
    const MAX: usize = 20; // u64::MAX has 20 digits
    let mut body = Body { buf, len, spilled };
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
            body.push(b'0');
        }
    }
    body.push_slice(&digits[start.min(MAX.saturating_sub(width))..]);
    (body.len, body.spilled)
}

/// `Body::decimal` past eight digits (or near the end of the stack buffer): `Decimal`'s own
/// text (as `Display` writes it), padded to `whole_digits` first. Padding past 19 digits
/// (only a hand-built coordinate's minutes can ask for it) writes them unpadded.
#[inline(never)]
fn decimal_slow(buf: &mut Buffers, len: usize, spilled: bool, d: Decimal, whole_digits: usize) -> (usize, bool) {
    let mut body = Body { buf, len, spilled };
    let padded = u8::try_from(whole_digits).ok().and_then(|w| d.with_whole_digits(w)).unwrap_or(d);
    body.push_slice(padded.unsigned_text().as_bytes());
    (body.len, body.spilled)
}

/// The eight decimal digits of `v` (below 10^8) as ASCII in one word, the most significant
/// in the lowest byte: each step splits every lane in two by a multiplication that divides
/// exactly in range (10,000 into 100s, then 100 into 10s).
#[inline(always)]
fn eight_digits(v: u32) -> u64 {
    let v = u64::from(v);
    // Little-endian lanes, the most significant digits in the lowest bytes: 4 + 4 digits in
    // 32-bit lanes, then 2 + 2 in 16-bit lanes, then 1 + 1 in bytes.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    let hundreds = ((x * 5243) >> 19) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    (tens | ((x - tens * 10) << 8)) | 0x3030_3030_3030_3030
}

/// "00" to "99", two bytes each.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Builds the comma-separated field list after the address.
pub(super) struct Out<'s, 'b> {
    s: &'s mut Body<'b>,
}

// Every helper is inlined into `standard` (out of line, each call read and wrote the body's
// length through memory): ~2.5% of an encode.
impl<'b> Out<'_, 'b> {
    #[inline(always)]
    fn sep(&mut self) -> &mut Body<'b> {
        self.s.push(b',');
        self.s
    }
    #[inline(always)]
    pub(super) fn text(&mut self, t: &str) {
        self.sep().push_str(t);
    }
    /// A number field, empty when absent.
    #[inline(always)]
    pub(super) fn dec(&mut self, v: Option<Decimal>) {
        let s = self.sep();
        if let Some(v) = v {
            s.decimal(v, 0);
        }
    }
    /// An unsigned field, zero-padded to `width` digits, empty when absent.
    #[inline(always)]
    pub(super) fn uint(&mut self, v: Option<impl Into<u64>>, width: usize) {
        let s = self.sep();
        if let Some(v) = v {
            s.uint(v.into(), width);
        }
    }
    /// A signed field: `-` then the digits, zero-padded to `width` characters with the
    /// sign (as `{:02}` pads), empty when absent.
    #[inline(always)]
    pub(super) fn int(&mut self, v: Option<impl Into<i64>>, width: usize) {
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
    pub(super) fn opt_text(&mut self, t: Option<&str>) {
        let s = self.sep();
        if let Some(t) = t {
            s.push_str(t);
        }
    }
    /// A one-digit hexadecimal id (GSA's system id, GSV's signal id), left out when absent.
    #[inline(always)]
    pub(super) fn hex_id(&mut self, v: Option<u8>) {
        if let Some(v) = v {
            // As `{:X}` writes it: one digit, or two past 15.
            let s = self.sep();
            if v > 0x0f {
                s.push(hex_upper(v >> 4));
            }
            s.push(hex_upper(v));
        }
    }
    #[inline(always)]
    pub(super) fn letter(&mut self, v: Option<u8>) {
        let s = self.sep();
        if let Some(c) = v {
            s.push(c);
        }
    }
    #[inline(always)]
    pub(super) fn time(&mut self, t: Option<NmeaTime>) {
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
    pub(super) fn date(&mut self, d: Option<NmeaDate>) {
        let s = self.sep();
        if let Some(d) = d {
            s.uint(d.day.into(), 2);
            s.uint(d.month.into(), 2);
            s.uint(d.year2.into(), 2);
        }
    }
    /// Value and hemisphere fields: `ddmm.mmmm,N` / `dddmm.mmmm,E`.
    #[inline(always)]
    pub(super) fn coordinate(&mut self, c: Option<Coordinate>, degree_digits: usize) {
        let s = self.sep();
        if let Some(c) = c {
            s.uint(c.whole_degrees.into(), degree_digits);
            // Two whole digits of minutes, always: fewer would read back as other degrees.
            s.decimal(c.minutes, 2);
        }
        self.letter(c.map(|c| c.hemisphere));
    }
}

#[inline(always)]
fn standard(body: &mut Body<'_>, talker: Talker, message: &Message<'_>) -> Result<(), EncodeError> {
    body.push_str(talker.as_str());
    body.push_str(message.formatter());
    let mut o = Out { s: body };
    match message {
        Message::Rmc(m) => layout::write_rmc(m, &mut o),
        Message::Gga(m) => layout::write_gga(m, &mut o),
        Message::Gll(m) => layout::write_gll(m, &mut o),
        Message::Vtg(m) => layout::write_vtg(m, &mut o),
        Message::Gsa(m) => layout::write_gsa(m, &mut o),
        Message::Gsv(m) => layout::write_gsv(m, &mut o),
        Message::Zda(m) => layout::write_zda(m, &mut o),
        Message::Gns(m) => layout::write_gns(m, &mut o),
        Message::Gst(m) => layout::write_gst(m, &mut o),
        Message::Hdt(m) => layout::write_hdt(m, &mut o),
        Message::Txt(m) => layout::write_txt(m, &mut o),
        Message::Other { fields, .. } => {
            if let Some(f) = fields {
                o.text(f);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `write` puts in a fresh body.
    fn written(write: impl FnOnce(&mut Body<'_>)) -> Vec<u8> {
        let mut buffers = Buffers::new();
        let mut b = Body::new(&mut buffers);
        write(&mut b);
        b.into_bytes().to_vec()
    }

    fn decimal_text(d: Decimal, whole_digits: usize) -> String {
        String::from_utf8(written(|b| b.decimal(d, whole_digits))).unwrap()
    }

    fn parsed(text: &str) -> Decimal {
        Decimal::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn decimals_are_written_as_sent() {
        for text in ["12.5", "022.4", "0.146", "0.005", "5", "545.40", "-21.3", "-0", ".5", "00000000", "1234567.8"] {
            assert_eq!(decimal_text(parsed(text), 0), text);
        }
        // Past eight digits, out of line.
        for text in ["04.1234567", "123456789", "-1234567890123456789", "0.000000000000000001"] {
            assert_eq!(decimal_text(parsed(text), 0), text);
        }
        // Minutes get two whole digits whatever was sent.
        assert_eq!(decimal_text(parsed("4.13993"), 2), "04.13993");
        assert_eq!(decimal_text(parsed(".5"), 2), "00.5");
        assert_eq!(decimal_text(parsed("04.1234567"), 2), "04.1234567");
        assert_eq!(decimal_text(Decimal::new(413_993, 5).unwrap(), 2), "04.13993");
        // Two whole digits would make 20: written unpadded rather than not at all.
        assert_eq!(decimal_text(Decimal::new(1, 18).unwrap(), 2), "0.000000000000000001");
        let b = written(|b| {
            b.uint(7, 3);
            b.uint(1234, 2);
            b.uint(0, 1);
        });
        assert_eq!(b, b"00712340");
    }

    #[test]
    fn decimals_near_the_end_of_the_stack_buffer_are_whole() {
        let filler = "A".repeat(Buffers::STACK - 6);
        let b = written(|b| {
            b.push_str(&filler);
            b.decimal(parsed("123.4567"), 0);
            b.decimal(parsed("-0.5"), 0);
        });
        assert_eq!(b, format!("{filler}123.4567-0.5").as_bytes());
    }

    #[test]
    fn long_bodies_move_to_the_heap_whole() {
        let long = "A,".repeat(150);
        let b = written(|b| {
            b.push_str(&long[..Buffers::STACK - 1]);
            b.push_str(&long[Buffers::STACK - 1..]);
            // And on, one byte and a number at a time, once on the heap.
            b.push(b'x');
            b.uint(12345, 7);
            b.decimal(parsed("-1.25"), 2);
        });
        assert_eq!(b, format!("{long}x0012345-01.25").as_bytes());
    }

    proptest! {
        /// Integers as `format!` pads them, at any width (past the 20 digits of the buffer too).
        #[test]
        fn unsigned_integers_are_padded_as_format_pads(v in any::<u64>(), small in 0u64..1000, width in 0usize..24) {
            for v in [v, small] {
                let expected = format!("{v:0width$}");
                prop_assert_eq!(written(|b| b.uint(v, width)), expected.as_bytes());
            }
        }

        /// The digits made in one word are `format!`'s.
        #[test]
        fn eight_digits_are_formats(v in 0u32..100_000_000, small in 0u32..1000) {
            for v in [v, small, small * 100_000] {
                let expected = format!("{v:08}");
                prop_assert_eq!(&eight_digits(v).to_le_bytes(), expected.as_bytes());
            }
        }

        /// Any decimal the parser keeps is written back as its text (`Decimal`'s `Display`,
        /// itself held to the text by `Decimal`'s tests), padded to two whole digits when
        /// asked, in the register path and out of line alike.
        #[test]
        fn decimals_are_written_as_display_writes_them(
            sign in "-?",
            whole in "[0-9]{0,10}",
            frac in proptest::option::of("[0-9]{0,9}"),
            whole_digits in 0usize..3,
        ) {
            let text = match &frac {
                Some(f) => format!("{sign}{whole}.{f}"),
                None => format!("{sign}{whole}"),
            };
            let Some(d) = Decimal::parse(text.as_bytes()) else { return Ok(()) };
            let shown = d.to_string();
            let expected = match shown.split_once('.') {
                Some((w, f)) if !sign.is_empty() => format!("-{:0>whole_digits$}.{f}", &w[1..]),
                Some((w, f)) => format!("{w:0>whole_digits$}.{f}"),
                None if !sign.is_empty() => format!("-{:0>whole_digits$}", &shown[1..]),
                None => format!("{shown:0>whole_digits$}"),
            };
            prop_assert_eq!(decimal_text(d, whole_digits), expected);
        }
    }
}
