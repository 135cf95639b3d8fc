//! A record's JSON written straight into bytes: the same text `serde_json` writes for the
//! derived `Serialize` (a property test holds the two equal, byte for byte), without its
//! generic machinery. Through `serde_json` a GT06 position's JSON cost twice its decode: a
//! write call per token, and every key escaped a byte at a time through a table. Here the
//! fixed keys are literals, strings with nothing to escape are copied whole, and numbers go
//! through the same formatters `serde_json` uses (`itoa`, `zmij`), so they print the same.

use serde_json::Value;

use super::{AttributeValue, Attributes, Entry, IoAttributeRef, IoElements, Kind, Record};
use crate::time::Timestamp;

impl Kind {
    /// The name the record's `kind` field carries (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Heartbeat => "heartbeat",
            Kind::Position => "position",
            Kind::Status => "status",
            Kind::Register => "register",
            Kind::Auth => "auth",
            Kind::CommandResponse => "command_response",
            Kind::TimeRequest => "time_request",
            Kind::Info => "info",
            Kind::Unknown => "unknown",
        }
    }
}

impl Record {
    /// Appends the record as one line of JSON (no newline) to `out`: the text
    /// [`Record::to_json`] returns and `serde_json` writes, without allocating when `out`
    /// has room.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Every field named, so a field added to `Record` fails to compile here instead of
        // going missing from the JSON (each is written by one of the three parts below).
        let Record {
            schema: _,
            protocol: _,
            device_id: _,
            kind: _,
            message_type: _,
            seq: _,
            received_at: _,
            fix_time: _,
            valid: _,
            latitude: _,
            longitude: _,
            altitude_m: _,
            speed_kmh: _,
            course_deg: _,
            satellites: _,
            hdop: _,
            alarms: _,
            attributes: _,
        } = self;
        self.write_identity(out);
        self.write_fix(out);
        if !self.alarms.is_empty() {
            out.extend_from_slice(b",\"alarms\":");
            write_list(out, *b"[]", &self.alarms, |out, alarm| write_str(out, alarm));
        }
        if !self.attributes.is_empty() {
            out.extend_from_slice(b",\"attributes\":");
            write_attributes(out, &self.attributes);
        }
        out.push(b'}');
    }

    /// From the opening brace to `seq`: what the record is and whose.
    #[inline(always)]
    fn write_identity(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"schema\":");
        write_int(out, self.schema);
        out.extend_from_slice(b",\"protocol\":\"");
        out.extend_from_slice(self.protocol.as_str().as_bytes());
        out.push(b'"');
        if let Some(id) = &self.device_id {
            out.extend_from_slice(b",\"device_id\":");
            write_str(out, id);
        }
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message_type\":");
        write_str(out, &self.message_type);
        if let Some(seq) = self.seq {
            out.extend_from_slice(b",\"seq\":");
            write_int(out, seq);
        }
    }

    /// The times and the fix, `received_at` to `hdop`.
    #[inline(always)]
    fn write_fix(&self, out: &mut Vec<u8>) {
        if let Some(t) = self.received_at {
            out.extend_from_slice(b",\"received_at\":");
            write_time(out, t);
        }
        if let Some(t) = self.fix_time {
            out.extend_from_slice(b",\"fix_time\":");
            write_time(out, t);
        }
        if let Some(valid) = self.valid {
            out.extend_from_slice(if valid { b",\"valid\":true" } else { b",\"valid\":false" });
        }
        put_f64(out, b",\"latitude\":", self.latitude);
        put_f64(out, b",\"longitude\":", self.longitude);
        put_f64(out, b",\"altitude_m\":", self.altitude_m);
        put_f64(out, b",\"speed_kmh\":", self.speed_kmh);
        put_f64(out, b",\"course_deg\":", self.course_deg);
        if let Some(n) = self.satellites {
            out.extend_from_slice(b",\"satellites\":");
            write_int(out, n);
        }
        if let Some(v) = self.hdop {
            out.extend_from_slice(b",\"hdop\":");
            write_f64(out, v);
        }
    }
}

/// `items` between the two brackets, comma-separated, each written by `write`.
#[inline(always)]
fn write_list<T>(
    out: &mut Vec<u8>,
    [open, close]: [u8; 2],
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(close);
}

/// `"key":` for a string key. A key with nothing to escape (every key the decoders set)
/// is written in one step, its quotes and colon around it.
fn write_key(out: &mut Vec<u8>, key: &str) {
    let key = key.as_bytes();
    if key.len() <= MAX_PUT_KEY && clean_prefix(key) == key.len() {
        return put_key(out, key);
    }
    write_str_bytes(out, key);
    out.push(b':');
}

/// The longest key [`put_key`] takes.
const MAX_PUT_KEY: usize = 29;

/// `"key":` for a key with nothing to escape, of up to [`MAX_PUT_KEY`] bytes: room made
/// with one constant-size append, the key copied in and the quotes and colon set around it.
#[inline(always)]
fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    let (at, n) = (out.len(), key.len());
    out.extend_from_slice(&[b'"'; MAX_PUT_KEY + 3]);
    copy_short(&mut out[at + 1..at + 1 + n], key);
    out[at + 2 + n] = b':';
    out.truncate(at + 3 + n);
}

fn write_attributes(out: &mut Vec<u8>, attributes: &Attributes) {
    out.push(b'{');
    let mut first = true;
    attributes.for_each_entry(|key, entry| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_key(out, key);
        match entry {
            Entry::Value(value) => write_attribute(out, value),
            Entry::Io(io) => write_io(out, io),
        }
    });
    out.push(b'}');
}

fn write_attribute(out: &mut Vec<u8>, value: &AttributeValue) {
    match value {
        AttributeValue::Null => out.extend_from_slice(b"null"),
        AttributeValue::Bool(true) => out.extend_from_slice(b"true"),
        AttributeValue::Bool(false) => out.extend_from_slice(b"false"),
        AttributeValue::Unsigned(n) => write_int(out, *n),
        AttributeValue::Signed(n) => write_int(out, *n),
        AttributeValue::Float(f) => write_f64(out, *f),
        AttributeValue::Text(t) => write_str_bytes(out, t.as_bytes()),
        AttributeValue::Json(v) => write_value(out, v),
    }
}

fn write_io(out: &mut Vec<u8>, io: &IoElements) {
    write_list(out, *b"{}", io.iter(), |out, (id, element)| {
        // The id as a key, in one step: its digits need no escaping.
        put_key(out, itoa::Buffer::new().format(id).as_bytes());
        match element {
            IoAttributeRef::Unsigned(n) => write_int(out, n),
            IoAttributeRef::Hex(h) => write_str(out, h),
        }
    });
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // In serde_json's own order: a number is a u64, else an i64, else a float.
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => write_int(out, u),
            (None, Some(i), _) => write_int(out, i),
            (None, None, Some(f)) => write_f64(out, f),
            // Not reachable without serde_json's arbitrary_precision, which is off; its
            // text is what serde_json would print.
            (None, None, None) => out.extend_from_slice(n.to_string().as_bytes()),
        },
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_list(out, *b"[]", items, write_value),
        Value::Object(map) => write_list(out, *b"{}", map, |out, (key, item)| {
            write_key(out, key);
            write_value(out, item);
        }),
    }
}

/// `key` and the value, when there is one. Generic over the key's length so the key is
/// copied as a constant-size block, not through a `memcpy` call.
#[inline(always)]
fn put_f64<const N: usize>(out: &mut Vec<u8>, key: &[u8; N], value: Option<f64>) {
    if let Some(v) = value {
        out.extend_from_slice(key);
        write_f64(out, v);
    }
}

fn write_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    put_short(out, itoa::Buffer::new().format(n).as_bytes());
}

/// `out.extend_from_slice(src)` for the short pieces a record is made of (numbers, keys,
/// ids). A copy of variable length is a `memcpy` call, which was a fifth of a record's
/// JSON; up to 32 bytes here it is two overlapping copies of constant size instead (the
/// way `memcpy` itself does small sizes), after room is made with one constant-size
/// append.
#[inline(always)]
fn put_short(out: &mut Vec<u8>, src: &[u8]) {
    let n = src.len();
    if n > 32 {
        out.extend_from_slice(src);
        return;
    }
    let at = out.len();
    out.extend_from_slice(&[0u8; 32]);
    copy_short(&mut out[at..at + n], src);
    out.truncate(at + n);
}

/// `dst.copy_from_slice(src)` for up to 32 bytes, as two overlapping copies of constant size.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// How many bytes at the front of `bytes` JSON takes as they are, a multiple of eight or
/// all of them: the eight-byte words before the first that holds a quote, a backslash or a
/// control character, or all when none does (the last word read overlapping the one
/// before it, and a string shorter than a word read as two overlapping halves or byte by
/// byte: copying a tail into a word was a `memcpy` call).
#[inline(always)]
fn clean_prefix(bytes: &[u8]) -> usize {
    let n = bytes.len();
    let word = |at: usize| bytes[at..].first_chunk::<8>().map_or(u64::MAX, |w| u64::from_le_bytes(*w));
    if n >= 8 {
        let mut at = 0;
        while at + 8 <= n {
            if needs_escape(word(at)) {
                return at;
            }
            at += 8;
        }
        return if at == n || !needs_escape(word(n - 8)) { n } else { at };
    }
    let short = if n >= 4 {
        let half = |at: usize| bytes[at..].first_chunk::<4>().map_or(0, |h| u64::from(u32::from_le_bytes(*h)));
        half(0) | half(n - 4) << 32
    } else {
        let byte = |i: usize| bytes.get(i).copied().unwrap_or(b'a');
        u64::from_le_bytes([byte(0), byte(1), byte(2), b'a', b'a', b'a', b'a', b'a'])
    };
    if needs_escape(short) {
        0
    } else {
        n
    }
}

/// Whether any of the eight bytes of `word` is a quote, a backslash or below 0x20 (bytes from 0x80 up,
/// parts of UTF-8 sequences, are not): the usual tests for a zero byte and for a byte below
/// a bound, exact for "any".
#[inline(always)]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control != 0
}

/// As serde_json: the shortest text that reads back the same value, `null` for NaN and
/// the infinities (which the parsers never produce).
fn write_f64(out: &mut Vec<u8>, v: f64) {
    // Whole numbers below 10^15 (speeds and courses often are) print as the integer and
    // `.0`, as the shortest form does; that is an integer's formatting instead of the
    // float's. Not -0.0, which keeps its sign. Whole is tested by a round trip through an
    // integer (exact below 10^15; NaN becomes 0 and fails): `fract` is a call to `trunc`
    // where the target has no rounding instruction, as x86-64's baseline has none.
    let whole = v as i64;
    if v.abs() < 1e15 && whole as f64 == v && v.to_bits() != (-0.0f64).to_bits() {
        write_int(out, whole);
        out.extend_from_slice(b".0");
    } else if v.is_finite() {
        put_short(out, zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_time(out: &mut Vec<u8>, t: Timestamp) {
    out.push(b'"');
    t.write_rfc3339(out);
    out.push(b'"');
}

/// `s` as a JSON string, escaped as serde_json escapes: `"` and `\` with a backslash, the
/// control characters below 0x20 as `\b \t \n \f \r` or `\u00xx`, everything else (DEL
/// and non-ASCII included) as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// [`write_str`] for bytes known to be UTF-8. Keys, ids and message types have nothing to
/// escape: they are checked eight bytes at a time and copied whole, where a test a byte
/// (three compares each) was a third of a GT06 record's attribute text.
fn write_str_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let clean = clean_prefix(bytes);
    put_short(out, &bytes[..clean]);
    let mut start = clean;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        put_short(out, &bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0A => out.extend_from_slice(b"\\n"),
            0x0C => out.extend_from_slice(b"\\f"),
            0x0D => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xF)]]);
            }
        }
        start = i + 1;
    }
    put_short(out, &bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The escaping rule a byte at a time.
    fn byte_needs_escape(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\'
    }

    /// Every byte value at every place of a word of letters: the word test agrees with the
    /// byte rule.
    #[test]
    fn a_word_needs_escaping_exactly_when_one_of_its_bytes_does() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut word = [b'a'; 8];
                word[at] = b;
                assert_eq!(needs_escape(u64::from_le_bytes(word)), byte_needs_escape(b), "byte {b:#04x} at {at}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Any word: escaping is needed when, and only when, some byte needs it (the bytes
        /// drawn mostly from those near the bounds, where borrows between bytes would show).
        #[test]
        fn any_word_needs_escaping_as_its_bytes_do(bytes in proptest::array::uniform8(prop_oneof![
            any::<u8>(),
            proptest::sample::select(vec![0u8, 0x1f, 0x20, 0x21, b'"', 0x23, b'\\', 0x5b, 0x5d, 0x7f, 0x80, 0xff]),
        ])) {
            prop_assert_eq!(needs_escape(u64::from_le_bytes(bytes)), bytes.iter().any(|&b| byte_needs_escape(b)));
        }

        /// Strings of every length around the eight-byte steps, with something to escape at
        /// any place or nowhere: the text is serde_json's.
        #[test]
        fn strings_are_written_as_serde_json_writes_them(
            s in proptest::collection::vec(prop_oneof![
                8 => proptest::char::range('a', 'z'),
                1 => proptest::sample::select(vec!['"', '\\', '\u{0}', '\n', '\u{1f}', '\u{7f}', 'é', '😀']),
            ], 0..40).prop_map(|c| c.into_iter().collect::<String>())
        ) {
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }
}
