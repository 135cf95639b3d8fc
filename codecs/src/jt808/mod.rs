//! JT/T 808 (2011, 2013 and 2019 editions): `7E`-delimited frames with `7D` escaping and an
//! XOR check code, a header that names the terminal in BCD, sub-packages for long bodies.
//!
//! * [`frame`]: cutting escaped frames (and the ASCII `( … )` frames some terminals send on
//!   the same port) off a byte stream.
//! * This module: escaping, the check code, the header, and every downlink message the
//!   platform sends (replies and commands), each written with the terminal's own header form.
//! * [`message`]: the uplink messages, as zero-copy views with encoders for round trips and
//!   simulators.
//! * [`stream`]: the per-connection decoder: records, replies, sub-package reassembly,
//!   commands and their confirmations.
//!
//! Reference: docs/protocols/jt808.md, whose section numbers the comments cite.

use std::borrow::Cow;

use crate::framing::{Limits, Reject, RejectKind};
use crate::time::Timestamp;
use crate::wire::bcd;
use crate::wire::out::ByteBuf;
use crate::wire::swar;

pub mod frame;
pub mod message;
mod record;
pub mod stream;
#[cfg(test)]
mod tests;

pub use frame::Jt808Framer;
pub use message::Message;
pub use stream::{AuthCodes, Issued, Jt808Decoder, Jt808Options};

/// The frame delimiter.
pub const FLAG: u8 = 0x7E;
/// The escape byte: `7D 01` is `7D`, `7D 02` is `7E`.
pub const ESCAPE: u8 = 0x7D;

/// The longest body a header can declare (10-bit length, docs/protocols/jt808.md §1).
pub const MAX_BODY_LEN: usize = 1023;

/// The default frame limit, in wire bytes between two flags. The largest legal frame is
/// 1045 bytes before escaping, so 2090 after the worst case; the margin is for vendors that
/// send a body longer than the length field can say.
pub const DEFAULT_LIMITS: Limits = Limits { max_frame_len: 4096 };

/// Uplink (terminal) message ids.
pub mod id {
    pub const TERMINAL_RESPONSE: u16 = 0x0001;
    pub const HEARTBEAT: u16 = 0x0002;
    pub const DEREGISTER: u16 = 0x0003;
    pub const TIME_QUERY: u16 = 0x0004;
    pub const RESEND_REQUEST_UP: u16 = 0x0005;
    pub const REGISTER: u16 = 0x0100;
    pub const AUTHENTICATE: u16 = 0x0102;
    pub const PARAMETERS: u16 = 0x0104;
    pub const ATTRIBUTES: u16 = 0x0107;
    pub const UPGRADE_RESULT: u16 = 0x0108;
    pub const LOCATION: u16 = 0x0200;
    pub const LOCATION_REPLY: u16 = 0x0201;
    pub const VEHICLE_CONTROL_REPLY: u16 = 0x0500;
    pub const WAYBILL: u16 = 0x0701;
    pub const DRIVER_IDENTITY: u16 = 0x0702;
    pub const BATCH: u16 = 0x0704;
    pub const MEDIA_EVENT: u16 = 0x0800;
    pub const MEDIA_DATA: u16 = 0x0801;
    pub const PASSTHROUGH_UP: u16 = 0x0900;
    /// 0x0210: a batch of 0x0200 bodies, each after a one-byte length (or, 7 bytes long, a
    /// battery level and a time).
    pub const BATCH_2: u16 = 0x0210;
    /// 0x5501 / 0x5502: vendor location reports, live and from the blind area, in a header
    /// with a one-byte serial (docs/protocols/jt808.md §9).
    pub const VENDOR_LOCATION: u16 = 0x5501;
    pub const VENDOR_LOCATION_BLIND: u16 = 0x5502;

    /// Downlink (platform) message ids.
    pub const PLATFORM_RESPONSE: u16 = 0x8001;
    pub const RESEND_REQUEST: u16 = 0x8003;
    pub const SERVER_TIME: u16 = 0x8004;
    pub const REGISTER_RESPONSE: u16 = 0x8100;
    pub const SET_PARAMETERS: u16 = 0x8103;
    pub const QUERY_PARAMETERS: u16 = 0x8104;
    pub const TERMINAL_CONTROL: u16 = 0x8105;
    pub const QUERY_GIVEN_PARAMETERS: u16 = 0x8106;
    /// Query terminal attributes (answered by 0x0107).
    pub const QUERY_ATTRIBUTES: u16 = 0x8107;
    pub const QUERY_LOCATION: u16 = 0x8201;
    pub const TRACKING: u16 = 0x8202;
    pub const TEXT: u16 = 0x8300;
    pub const VEHICLE_CONTROL: u16 = 0x8500;
    pub const MEDIA_UPLOAD_RESPONSE: u16 = 0x8800;
    pub const PASSTHROUGH_DOWN: u16 = 0x8900;
    /// The answer to a 0x5501 / 0x5502 whose properties ask for one (bit 15), in the same
    /// short-serial header.
    pub const VENDOR_RESPONSE: u16 = 0x4401;
}

/// Whether messages with this id carry a one-byte serial and no encryption, version or
/// sub-package fields: the vendor location reports and their answer (§9).
pub fn short_serial(message_id: u16) -> bool {
    matches!(message_id, id::VENDOR_LOCATION | id::VENDOR_LOCATION_BLIND | id::VENDOR_RESPONSE)
}

/// The property bit with which a vendor location report asks for a 0x4401 answer.
pub const VENDOR_WANTS_RESPONSE: u16 = 0x8000;

/// Where the header's fields sit (docs/protocols/jt808.md §3.1), named once (as smoltcp's
/// `mod field`). The 2019 header puts a version byte before a 10-byte terminal number; after
/// the number come the serial and, in a sub-package, its count and index.
mod field {
    use std::ops::Range;

    pub const MESSAGE_ID: Range<usize> = 0..2;
    pub const PROPERTIES: Range<usize> = 2..4;
    /// 2019 only.
    pub const VERSION: usize = 4;
    pub const NUMBER_2013: Range<usize> = 4..10;
    pub const NUMBER_2019: Range<usize> = 5..15;
    /// The serial after the number: two bytes, one in the vendors' short-serial messages (§9).
    pub const SERIAL_LEN: usize = 2;
    pub const SHORT_SERIAL_LEN: usize = 1;
    /// Package count and index (2 each).
    pub const PACKAGE_LEN: usize = 4;

    /// A big-endian `u16` at `at`, in a slice the caller has checked holds it.
    #[inline]
    pub fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

/// The header of a short-serial message: id, properties, terminal number, a one-byte serial.
const SHORT_HEADER_LEN: usize = field::NUMBER_2013.end + field::SHORT_SERIAL_LEN;

/// Header property bits (docs/protocols/jt808.md §3.1).
const BODY_LEN_MASK: u16 = 0x03FF;
const ENCRYPTION_MASK: u16 = 0x1C00;
const SUBPACKAGE: u16 = 0x2000;
const VERSION_2019: u16 = 0x4000;

/// Result codes of 0x8001 and 0x0001.
pub mod result {
    use std::borrow::Cow;

    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const MESSAGE_ERROR: u8 = 2;
    pub const NOT_SUPPORTED: u8 = 3;
    pub const ALARM_CONFIRMED: u8 = 4;

    /// A result code's name, for records.
    pub fn name(code: u8) -> Cow<'static, str> {
        Cow::Borrowed(match code {
            OK => "ok",
            FAILURE => "failure",
            MESSAGE_ERROR => "message_error",
            NOT_SUPPORTED => "not_supported",
            ALARM_CONFIRMED => "alarm_confirmed",
            other => return Cow::Owned(format!("result_{other}")),
        })
    }
}

/// Which header layout a frame uses (docs/protocols/jt808.md §3.4). 2011 and 2013 share a header; they differ in a
/// few bodies (0x0100), told apart by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edition {
    /// 2011 or 2013: 6-byte terminal number.
    V2013,
    /// 2019: version byte and 10-byte terminal number.
    V2019 { version: u8 },
}

/// The terminal number exactly as the terminal sent it (6 or 10 bytes), kept to echo it
/// back verbatim in every reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalNumber {
    bytes: [u8; 10],
    len: u8,
}

impl TerminalNumber {
    /// From the raw header bytes: 6 (2011/2013) or 10 (2019). `None` for any other length.
    // Inline: every frame's header is read through here, and called, its result went back
    // through memory (7 % of a JT808 view).
    #[inline]
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        if raw.len() != 6 && raw.len() != 10 {
            return None;
        }
        let mut bytes = [0u8; 10];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(TerminalNumber { bytes, len: raw.len() as u8 })
    }

    /// The number for a device id, in the width `edition` uses: BCD digits left-padded with
    /// zeros; for a 15-digit IMEI that does not fit the 6 bytes of a 2013 header, the
    /// 48-bit binary form some terminals use (the IMEI without its check digit, docs/protocols/jt808.md §3.2).
    pub fn for_device_id(device_id: &str, edition: Edition) -> Option<Self> {
        let width = match edition {
            Edition::V2013 => 6,
            Edition::V2019 { .. } => 10,
        };
        let mut bytes = [0u8; 10];
        if bcd::encode_digits(device_id, &mut bytes[..width]).is_some() {
            return Some(TerminalNumber { bytes, len: width as u8 });
        }
        // The check digit is dropped, not checked: Traccar addresses its test id this way.
        if width == 6 && device_id.len() == 15 && device_id.bytes().all(|b| b.is_ascii_digit()) {
            let value: u64 = device_id[..14].parse().ok()?;
            bytes[..6].copy_from_slice(&value.to_be_bytes()[2..]);
            return Some(TerminalNumber { bytes, len: 6 });
        }
        None
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether every nibble is a decimal digit (the standard form).
    pub fn is_bcd(&self) -> bool {
        self.as_bytes().iter().all(|&b| bcd::byte_value(b).is_some())
    }

    /// The device id of the contract: the BCD digits without leading zeros (`0` for an
    /// all-zero number). A 6-byte number that is not BCD is the 48-bit binary form of an
    /// IMEI without its check digit (docs/protocols/jt808.md §3.2): the id is that IMEI with the digit restored. A
    /// 10-byte number that is not BCD has no known reading and is given in hex.
    pub fn device_id(&self) -> String {
        let mut digits = String::with_capacity(20);
        if bcd::decode_digits(self.as_bytes(), &mut digits).is_some() {
            let trimmed = digits.trim_start_matches('0');
            return if trimmed.is_empty() { "0".to_owned() } else { trimmed.to_owned() };
        }
        if self.len == 6 {
            let mut be = [0u8; 8];
            be[2..].copy_from_slice(self.as_bytes());
            let body = format!("{:014}", u64::from_be_bytes(be));
            if body.len() == 14 {
                if let Some(check) = luhn_digit(&body) {
                    return format!("{body}{}", char::from(check));
                }
            }
            return body;
        }
        crate::wire::hex::to_hex(self.as_bytes())
    }
}

/// The Luhn check digit (as an ASCII digit) for a string of ASCII digits.
fn luhn_digit(digits: &str) -> Option<u8> {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    Some(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// Where a message is addressed: the edition and terminal number of the terminal's own
/// frames, so every reply has the header form the terminal used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Terminal {
    pub edition: Edition,
    pub number: TerminalNumber,
}

impl Terminal {
    /// The address a 2013 terminal with this device id has (BCD or 48-bit IMEI form).
    pub fn for_device_id(device_id: &str, edition: Edition) -> Option<Self> {
        Some(Terminal { edition, number: TerminalNumber::for_device_id(device_id, edition)? })
    }
}

/// One frame's header (docs/protocols/jt808.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_id: u16,
    /// The raw body-properties word.
    pub properties: u16,
    pub terminal: Terminal,
    pub serial: u16,
    /// `(total, index)` for a sub-package; the index starts at 1.
    pub package: Option<(u16, u16)>,
}

impl Header {
    /// The body length the properties declare.
    pub fn declared_body_len(&self) -> usize {
        usize::from(self.properties & BODY_LEN_MASK)
    }

    /// The encryption bits (10–12): 0 for none, 1 for RSA.
    pub fn encryption(&self) -> u8 {
        ((self.properties & ENCRYPTION_MASK) >> 10) as u8
    }

    /// The header's size in bytes (12, 16, 17 or 21; 11 for a short-serial message).
    pub fn byte_len(&self) -> usize {
        if short_serial(self.message_id) {
            return SHORT_HEADER_LEN;
        }
        header_len(self.terminal.edition, self.package.is_some())
    }

    fn write(&self, out: &mut impl ByteBuf) {
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.properties.to_be_bytes());
        if short_serial(self.message_id) {
            out.extend_from_slice(self.terminal.number.as_bytes());
            out.push(self.serial as u8);
            return;
        }
        if let Edition::V2019 { version } = self.terminal.edition {
            out.push(version);
        }
        out.extend_from_slice(self.terminal.number.as_bytes());
        out.extend_from_slice(&self.serial.to_be_bytes());
        if let Some((total, index)) = self.package {
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&index.to_be_bytes());
        }
    }
}

/// The terminal number's place in the header.
fn number_field(edition: Edition) -> std::ops::Range<usize> {
    match edition {
        Edition::V2013 => field::NUMBER_2013,
        Edition::V2019 { .. } => field::NUMBER_2019,
    }
}

fn header_len(edition: Edition, package: bool) -> usize {
    number_field(edition).end + field::SERIAL_LEN + if package { field::PACKAGE_LEN } else { 0 }
}

/// A frame after un-escaping and checking: its header, its body, and whether the length
/// field agreed with the body the frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: Header,
    pub body: Cow<'a, [u8]>,
    /// False when the properties declare another body length than the frame has. The body
    /// the frame carries is what is parsed (docs/protocols/jt808.md §8: devices get this wrong; the check code
    /// vouches for the bytes).
    pub length_field_ok: bool,
}

/// Un-escapes the bytes between two flags: borrowed when there is nothing to un-escape
/// (most frames), one copy otherwise.
pub fn unescape(escaped: &[u8]) -> Result<Cow<'_, [u8]>, Reject> {
    if swar::find_byte(escaped, ESCAPE).is_none() {
        return Ok(Cow::Borrowed(escaped));
    }
    let mut out = Vec::with_capacity(escaped.len());
    unescape_into(escaped, &mut out)?;
    Ok(Cow::Owned(out))
}

/// Appends the un-escaped `escaped` to `out`: the runs between escapes are copied whole.
/// Returns how many escape pairs there were.
pub fn unescape_into(escaped: &[u8], out: &mut Vec<u8>) -> Result<usize, Reject> {
    out.reserve(escaped.len());
    let mut rest = escaped;
    let mut pairs = 0;
    while let Some(i) = swar::find_byte(rest, ESCAPE) {
        out.extend_from_slice(&rest[..i]);
        match rest.get(i + 1) {
            Some(0x01) => out.push(ESCAPE),
            Some(0x02) => out.push(FLAG),
            Some(other) => {
                let at = escaped.len() - rest.len() + i;
                return Err(Reject::new(
                    RejectKind::Malformed,
                    format!("escape byte 7D followed by {other:02X} at byte {at} (only 7D 01 and 7D 02 exist)"),
                ));
            }
            None => return Err(Reject::new(RejectKind::Malformed, "frame ends with a lone escape byte 7D")),
        }
        rest = &rest[i + 2..];
        pairs += 1;
    }
    out.extend_from_slice(rest);
    Ok(pairs)
}

/// The XOR of the un-escaped bytes from the XOR of the escaped ones: each pair (`7D 01` for
/// `7D`, `7D 02` for `7E`) differs from its byte by bit 0 alone, so only the parity of the
/// pair count matters, and the un-escaped copy need not be read again.
fn unescaped_xor(escaped_xor: u8, pairs: usize) -> u8 {
    escaped_xor ^ (pairs & 1) as u8
}

/// Appends `raw` escaped (docs/protocols/jt808.md §1): `7E` → `7D 02`, `7D` → `7D 01`.
pub fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(raw);
    escape_from(out, start);
}

/// Escapes `out[start..]` where it lies: nothing moves when there is nothing to escape, and
/// otherwise the bytes move back from the end, one place further per escape still ahead of
/// them, so no second buffer is needed.
fn escape_from(out: &mut impl ByteBuf, start: usize) {
    let raw_end = out.len();
    let escapes = out[start..].iter().filter(|&&b| b == FLAG || b == ESCAPE).count();
    if escapes == 0 {
        return;
    }
    out.resize(raw_end + escapes, 0);
    let mut at = out.len();
    for i in (start..raw_end).rev() {
        let b = out[i];
        if b == FLAG || b == ESCAPE {
            out[at - 2..at].copy_from_slice(&[ESCAPE, if b == FLAG { 0x02 } else { 0x01 }]);
            at -= 2;
        } else {
            out[at - 1] = b;
            at -= 1;
        }
    }
}

impl<'a> Frame<'a> {
    /// Un-escapes, checks and splits the bytes between two flags (flags not included). A
    /// frame with escapes gets a body of its own; [`Frame::parse_with`] reuses a buffer.
    // Inline, with `parse_header` inlined into it: the header then goes from the bytes to
    // the caller's variables in registers. Returned through memory, it was written field by
    // field and read back whole, a store-forwarding stall that was a third of a view.
    #[inline]
    pub fn parse(escaped: &'a [u8]) -> Result<Self, Reject> {
        // Most frames have nothing to un-escape: one pass finds that out and computes the
        // XOR the check code is tested with.
        let (xor_all, escapes) = swar::xor_and_find(escaped, ESCAPE);
        if !escapes {
            return Self::split(escaped, xor_all);
        }
        let mut raw = Vec::with_capacity(escaped.len());
        let pairs = unescape_into(escaped, &mut raw)?;
        let (header, body_range, length_field_ok) = parse_header(&raw, unescaped_xor(xor_all, pairs))?;
        raw.truncate(body_range.end);
        raw.drain(..body_range.start);
        Ok(Frame { header, body: Cow::Owned(raw), length_field_ok })
    }

    /// As [`Frame::parse`], but a frame with escapes is un-escaped into `scratch` (cleared
    /// first) and its body borrowed from there: once `scratch` has grown to the longest
    /// frame, parsing allocates nothing.
    #[inline]
    pub fn parse_with(escaped: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<Self, Reject> {
        // Not through `parse_in_place`: its nested result, inlined here, made the views
        // that call this 20% more instructions a frame.
        let (xor_all, escapes) = swar::xor_and_find(escaped, ESCAPE);
        if !escapes {
            return Self::split(escaped, xor_all);
        }
        Self::parse_escaped(escaped, xor_all, scratch)
    }

    /// [`Frame::parse_with`]'s first step, for a caller that fetches its scratch buffer
    /// only for a frame that needs one: the frame read where it lies, or
    /// `Err(NeedsScratch)` when it has escapes (then [`Frame::parse_escaped`]).
    #[inline(always)]
    pub(crate) fn parse_in_place(escaped: &'a [u8]) -> Result<Result<Self, Reject>, NeedsScratch> {
        let (xor_all, escapes) = swar::xor_and_find(escaped, ESCAPE);
        if escapes {
            return Err(NeedsScratch(xor_all));
        }
        Ok(Self::split(escaped, xor_all))
    }

    /// [`Frame::parse_with`]'s second step, for a frame with escapes.
    #[inline]
    pub(crate) fn parse_escaped(escaped: &'a [u8], xor_all: u8, scratch: &'a mut Vec<u8>) -> Result<Self, Reject> {
        scratch.clear();
        let pairs = unescape_into(escaped, scratch)?;
        let raw: &'a [u8] = scratch;
        Self::split(raw, unescaped_xor(xor_all, pairs))
    }

    #[inline(always)]
    fn split(raw: &'a [u8], xor_all: u8) -> Result<Self, Reject> {
        let (header, body_range, length_field_ok) = parse_header(raw, xor_all)?;
        Ok(Frame { header, body: Cow::Borrowed(&raw[body_range]), length_field_ok })
    }
}

/// A frame with escapes, and the XOR of its escaped bytes: [`Frame::parse_in_place`].
pub(crate) struct NeedsScratch(u8);

/// Checks the check code and reads the header of an un-escaped frame (header, body, BCC).
/// `xor_all` is the XOR of all of `raw`, check code included: 0 when the code is right.
#[inline(always)]
fn parse_header(raw: &[u8], xor_all: u8) -> Result<(Header, std::ops::Range<usize>, bool), Reject> {
    // A header and a check code: 13 bytes, 12 for the short-serial vendor messages (§9).
    let shortest = match raw {
        [a, b, ..] if short_serial(u16::from_be_bytes([*a, *b])) => SHORT_HEADER_LEN + 1,
        _ => 13,
    };
    if raw.len() < shortest {
        return Err(frame_too_short(raw.len(), shortest));
    }
    let (content, check) = raw.split_at(raw.len() - 1);
    if xor_all != 0 {
        let computed = xor_all ^ check[0];
        return Err(Reject::checksum(u32::from(computed), u32::from(check[0]), 2));
    }
    let message_id = field::be16(raw, field::MESSAGE_ID.start);
    let properties = field::be16(raw, field::PROPERTIES.start);
    let declared = usize::from(properties & BODY_LEN_MASK);
    if short_serial(message_id) {
        return Ok(short_header(content, message_id, properties));
    }
    let package = properties & SUBPACKAGE != 0;
    let fits = |hl: usize| content.len().checked_sub(hl) == Some(declared);
    let edition = edition(raw, properties, fits);
    let hl = header_len(edition, package);
    if content.len() < hl {
        return Err(header_cut_short(content.len(), properties));
    }
    refuse_encryption(message_id, properties)?;
    // The terminal number, then the serial and the package fields.
    let number_at = number_field(edition);
    let after = number_at.end;
    let number = TerminalNumber::from_bytes(&content[number_at]).expect("a width of 6 or 10 bytes");
    let be16 = |i: usize| field::be16(content, i);
    let header = Header {
        message_id,
        properties,
        terminal: Terminal { edition, number },
        serial: be16(after),
        package: package.then(|| (be16(after + 2), be16(after + 4))),
    };
    Ok((header, hl..content.len(), fits(hl)))
}

/// The layout the properties announce. The layout is decided from the lengths alone and
/// the header read once: building one per candidate layout and then choosing copied the
/// struct through memory right after writing it field by field (a store-forwarding stall).
/// With this, `parse_header` and `Frame::parse` inlined, the header reaches the caller in
/// registers; either change alone was slower (BENCHMARKS.md, JT808).
#[inline(always)]
fn edition(raw: &[u8], properties: u16, fits: impl Fn(usize) -> bool) -> Edition {
    if properties & VERSION_2019 == 0 {
        return Edition::V2013;
    }
    let package = properties & SUBPACKAGE != 0;
    // Some 2013 terminals set the version bit anyway (docs/protocols/jt808.md §3.4): when
    // only the 2013 reading makes the declared length come out right, it is the 2013 layout.
    if !fits(header_len(Edition::V2019 { version: 0 }, package)) && fits(header_len(Edition::V2013, package)) {
        Edition::V2013
    } else {
        Edition::V2019 { version: raw[field::VERSION] }
    }
}

/// A body that is not plain: RSA (no key is ever configured) or the reserved encryption
/// values, which mean a vendor header this codec does not read.
#[inline(always)]
fn refuse_encryption(message_id: u16, properties: u16) -> Result<(), Reject> {
    match (properties & ENCRYPTION_MASK) >> 10 {
        0 => Ok(()),
        bits => Err(encrypted(message_id, bits)),
    }
}

#[cold]
fn encrypted(message_id: u16, bits: u16) -> Reject {
    let what = if bits == 1 {
        format!("message 0x{message_id:04X} has an RSA-encrypted body; no key is configured")
    } else {
        format!(
            "message 0x{message_id:04X} sets the reserved encryption bits {bits:03b} (a vendor header this codec does not read)"
        )
    };
    Reject::new(RejectKind::Unsupported, what)
}

#[cold]
fn frame_too_short(len: usize, shortest: usize) -> Reject {
    Reject::new(
        RejectKind::Truncated,
        format!("a frame of {len} bytes; the shortest has {shortest} (header and check code)"),
    )
}

#[cold]
fn header_cut_short(len: usize, properties: u16) -> Reject {
    let what = format!("{len} bytes are too few for the header the properties 0x{properties:04X} announce");
    Reject::new(RejectKind::Truncated, what)
}

/// The header of a short-serial message (§9): the property bits above the length are the
/// vendor's (bit 15 asks for an answer), so nothing else is read from them.
#[cold]
fn short_header(content: &[u8], message_id: u16, properties: u16) -> (Header, std::ops::Range<usize>, bool) {
    let number = TerminalNumber::from_bytes(&content[field::NUMBER_2013]).expect("a width of 6 bytes");
    let header = Header {
        message_id,
        properties,
        terminal: Terminal { edition: Edition::V2013, number },
        serial: u16::from(content[field::NUMBER_2013.end]),
        package: None,
    };
    let body = SHORT_HEADER_LEN..content.len();
    let fits = body.len() == usize::from(properties & BODY_LEN_MASK);
    (header, body, fits)
}

/// Writes one frame: header (with the body length in its properties), body, check code,
/// escaped and between flags. `None` if the body is longer than a frame can declare (use
/// [`encode_packages`] for that).
pub fn encode_frame(
    out: &mut impl ByteBuf,
    message_id: u16,
    terminal: &Terminal,
    serial: u16,
    package: Option<(u16, u16)>,
    body: &[u8],
) -> Option<()> {
    // A short-serial header has room for a 2013 terminal number and a one-byte serial only.
    let short_misfit = serial > 0xFF || package.is_some() || terminal.edition != Edition::V2013;
    if body.len() > MAX_BODY_LEN || (short_serial(message_id) && short_misfit) {
        return None;
    }
    let mut properties = body.len() as u16;
    if package.is_some() {
        properties |= SUBPACKAGE;
    }
    if let Edition::V2019 { .. } = terminal.edition {
        properties |= VERSION_2019;
    }
    let header = Header { message_id, properties, terminal: *terminal, serial, package };
    // Written un-escaped after the opening flag, then escaped where it lies (a reply used to
    // cost two allocations, one of them an un-escaped copy).
    let raw_len = header.byte_len() + body.len() + 1;
    out.reserve(raw_len + raw_len / 8 + 2);
    out.push(FLAG);
    let start = out.len();
    header.write(out);
    out.extend_from_slice(body);
    let (check, flag_inside) = swar::xor_and_find(&out[start..], FLAG);
    out.push(check);
    // Most frames need no escaping, which two word-wide scans tell (a count of the bytes
    // to escape, a byte at a time, was a fifth of an 0x8001's cost).
    if flag_inside || check == FLAG || swar::find_byte(&out[start..], ESCAPE).is_some() {
        escape_from(out, start);
    }
    out.push(FLAG);
    Some(())
}

/// One message as a new frame.
pub fn encode(message_id: u16, terminal: &Terminal, serial: u16, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_frame(&mut out, message_id, terminal, serial, None, body)?;
    Some(out)
}

/// A body of any length as frames, split into sub-packages of at most `package_len` bytes
/// (1..=1023) with consecutive serials from `first_serial` (docs/protocols/jt808.md §3.3). A body that fits one
/// frame is sent as one frame without sub-package fields.
pub fn encode_packages(
    message_id: u16,
    terminal: &Terminal,
    first_serial: u16,
    body: &[u8],
    package_len: usize,
) -> Option<Vec<Vec<u8>>> {
    let package_len = package_len.clamp(1, MAX_BODY_LEN);
    if body.len() <= package_len {
        return Some(vec![encode(message_id, terminal, first_serial, body)?]);
    }
    let total = u16::try_from(body.len().div_ceil(package_len)).ok()?;
    body.chunks(package_len)
        .enumerate()
        .map(|(i, chunk)| {
            let mut out = Vec::new();
            let index = i as u16 + 1;
            encode_frame(
                &mut out,
                message_id,
                terminal,
                first_serial.wrapping_add(i as u16),
                Some((total, index)),
                chunk,
            )?;
            Some(out)
        })
        .collect()
}

/// 0x8001 / 0x0001: the general response to message `reply_id` with serial `reply_serial`.
pub fn general_response_body(reply_serial: u16, reply_id: u16, result: u8) -> [u8; 5] {
    let [s0, s1] = reply_serial.to_be_bytes();
    let [i0, i1] = reply_id.to_be_bytes();
    [s0, s1, i0, i1, result]
}

/// 0x8001 platform general response (docs/protocols/jt808.md §5).
pub fn platform_response(terminal: &Terminal, serial: u16, reply_serial: u16, reply_id: u16, result: u8) -> Vec<u8> {
    platform_response_reply(terminal, serial, reply_serial, reply_id, result).into_vec()
}

/// [`platform_response`] as a [`Reply`](crate::Reply), written on the stack and held inline:
/// the decoder sends one for most frames. At most 23 bytes before escaping (a 2019 header,
/// the body, the check code), twice that after, and the two flags.
pub(crate) fn platform_response_reply(
    terminal: &Terminal,
    serial: u16,
    reply_serial: u16,
    reply_id: u16,
    result: u8,
) -> crate::Reply {
    let body = general_response_body(reply_serial, reply_id, result);
    if let Some(reply) = platform_response_unescaped(terminal, serial, body) {
        return reply;
    }
    let mut frame = crate::wire::out::ArrayBuf::<64>::default();
    encode_frame(&mut frame, id::PLATFORM_RESPONSE, terminal, serial, None, &body).expect("a 5-byte body fits a frame");
    crate::Reply::from(&frame[..])
}

/// The 0x8001 written at its fixed places in a reply's inline bytes, or `None` when a byte
/// of it needs escaping (then [`encode_frame`] writes it). Most do not, and this way the
/// frame is a few stores, one XOR and one test over a block of constant size: through
/// `encode_frame` an ack was a ninth of a JT808 location's record.
#[inline]
fn platform_response_unescaped(terminal: &Terminal, serial: u16, body: [u8; 5]) -> Option<crate::Reply> {
    let mut b = [0u8; crate::Reply::INLINE];
    b[1..3].copy_from_slice(&id::PLATFORM_RESPONSE.to_be_bytes());
    let mut properties = body.len() as u16;
    let number_at = match terminal.edition {
        Edition::V2013 => field::NUMBER_2013.start,
        Edition::V2019 { version } => {
            properties |= VERSION_2019;
            b[1 + field::VERSION] = version;
            field::NUMBER_2019.start
        }
    } + 1;
    b[3..5].copy_from_slice(&properties.to_be_bytes());
    // All ten bytes (a copy of constant size); a 6-byte number's unused four are zeros
    // and are overwritten next.
    b[number_at..number_at + 10].copy_from_slice(&terminal.number.bytes);
    let serial_at = number_at + usize::from(terminal.number.len).min(10);
    b[serial_at..serial_at + 2].copy_from_slice(&serial.to_be_bytes());
    b[serial_at + 2..serial_at + 7].copy_from_slice(&body);
    let check_at = serial_at + 7;
    // The check code and the escape test, eight bytes at a time over the first 32: the
    // longest 0x8001 (2019) ends at byte 24, the opening flag is not written yet, and the
    // zeros around the frame change neither.
    let words = |b: &[u8; crate::Reply::INLINE]| {
        let (words, _) = b.as_chunks::<8>();
        let mut w = [0u64; 4];
        for (w, bytes) in w.iter_mut().zip(words) {
            *w = u64::from_le_bytes(*bytes);
        }
        w
    };
    let xor = words(&b).iter().fold(0, |x, w| x ^ w);
    let xor = xor ^ (xor >> 32);
    let xor = xor ^ (xor >> 16);
    b[check_at] = (xor ^ (xor >> 8)) as u8;
    let to_escape = words(&b).iter().fold(0, |m, &w| m | swar::byte_mask(w, FLAG) | swar::byte_mask(w, ESCAPE));
    if to_escape != 0 {
        return None;
    }
    b[0] = FLAG;
    b[check_at + 1] = FLAG;
    Some(crate::Reply::from_inline(b, check_at + 2))
}

/// 0x4401, the answer to a vendor location report that asks for one (§9): the report's id
/// and a result, under serial 1 as the devices expect.
pub fn vendor_response(terminal: &Terminal, reply_id: u16, result: u8) -> Vec<u8> {
    let [i0, i1] = reply_id.to_be_bytes();
    encode(id::VENDOR_RESPONSE, terminal, 1, &[i0, i1, result]).expect("a 3-byte body fits a frame")
}

/// 0x8100 register response (docs/protocols/jt808.md §6.1): the auth code only with result 0.
pub fn register_response(
    terminal: &Terminal,
    serial: u16,
    reply_serial: u16,
    result: u8,
    auth_code: &str,
) -> Option<Vec<u8>> {
    let mut body = reply_serial.to_be_bytes().to_vec();
    body.push(result);
    if result == 0 {
        body.extend_from_slice(&gbk(auth_code));
    }
    encode(id::REGISTER_RESPONSE, terminal, serial, &body)
}

/// 0x8003 re-send request (docs/protocols/jt808.md §3.3): the first sub-package's serial and the missing package
/// indexes (count is a BYTE in 2013, a WORD in 2019).
pub fn resend_request(terminal: &Terminal, serial: u16, first_serial: u16, missing: &[u16]) -> Option<Vec<u8>> {
    let mut body = first_serial.to_be_bytes().to_vec();
    match terminal.edition {
        Edition::V2013 => body.push(u8::try_from(missing.len()).ok()?),
        Edition::V2019 { .. } => body.extend_from_slice(&u16::try_from(missing.len()).ok()?.to_be_bytes()),
    }
    for m in missing {
        body.extend_from_slice(&m.to_be_bytes());
    }
    encode(id::RESEND_REQUEST, terminal, serial, &body)
}

/// 0x8004 server time (2019), UTC, for a 0x0004 query.
pub fn server_time(terminal: &Terminal, serial: u16, now: Timestamp) -> Option<Vec<u8>> {
    encode(id::SERVER_TIME, terminal, serial, &bcd_time(now)?)
}

/// 0x8800 multimedia upload response: the media id and the packages to send again (none
/// when the upload is complete).
pub fn media_upload_response(terminal: &Terminal, serial: u16, media_id: u32, resend: &[u16]) -> Option<Vec<u8>> {
    let mut body = media_id.to_be_bytes().to_vec();
    if !resend.is_empty() {
        body.push(u8::try_from(resend.len()).ok()?);
        for r in resend {
            body.extend_from_slice(&r.to_be_bytes());
        }
    }
    encode(id::MEDIA_UPLOAD_RESPONSE, terminal, serial, &body)
}

/// `YY MM DD hh mm ss` in BCD for an instant, as UTC. `None` outside 2000–2099.
pub fn bcd_time(t: Timestamp) -> Option<[u8; 6]> {
    let (date, h, m, s) = t.date_time();
    let year = u8::try_from(date.year() - 2000).ok()?;
    let mut out = [0u8; 6];
    for (o, v) in out.iter_mut().zip([year, date.month(), date.day(), h, m, s]) {
        *o = bcd::byte_from_value(v)?;
    }
    Some(out)
}

/// A device-local BCD time as UTC, given the device's offset from UTC in minutes. `None`
/// for digits that are not BCD or a date that does not exist (an all-zero time, sent by
/// terminals that have no time yet).
#[inline]
pub fn time_from_bcd(t: [u8; 6], utc_offset_minutes: i32) -> Option<Timestamp> {
    Timestamp::from_local_fields(bcd::values(t)?, utc_offset_minutes)
}

/// GBK text (docs/protocols/jt808.md §4) as UTF-8; trailing NUL padding dropped. Undecodable bytes become U+FFFD.
pub fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let (s, _, _) = encoding_rs::GBK.decode(&bytes[..end]);
    s.into_owned()
}

/// UTF-8 text as GBK for the wire; characters GBK lacks become `?`.
pub fn gbk(s: &str) -> Vec<u8> {
    if s.is_ascii() {
        return s.as_bytes().to_vec();
    }
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(s);
    if !unmappable {
        return bytes.into_owned();
    }
    // encoding_rs writes an HTML numeric reference for what GBK cannot hold; a terminal
    // would show that literally, so write `?` instead.
    let mut out = Vec::with_capacity(s.len());
    for ch in s.chars() {
        let mut buf = [0u8; 4];
        let (b, _, bad) = encoding_rs::GBK.encode(ch.encode_utf8(&mut buf));
        if bad {
            out.push(b'?');
        } else {
            out.extend_from_slice(&b);
        }
    }
    out
}

/// A parameter value for 0x8103 (and as read from 0x0104), typed as the standard types it.
/// In JSON (a command sent over the gateway's HTTP endpoint): `{"dword": 30}`,
/// `{"text": "a.b.c"}`, `{"bytes": [1, 2]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    Byte(u8),
    Word(u16),
    Dword(u32),
    Text(String),
    Bytes(Vec<u8>),
}

/// How the standard types a parameter id's value (docs/protocols/jt808.md §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Byte,
    Word,
    Dword,
    Text,
    Bytes,
}

/// The type docs/protocols/jt808.md §7.1 gives a parameter id; ids it does not list are typed by their length.
pub fn param_type(param: u32) -> Option<ParamType> {
    Some(match param {
        0x0010..=0x0017 | 0x0040..=0x0049 | 0x0083 => ParamType::Text,
        0x0031 | 0x005B..=0x005E | 0x0081 | 0x0082 | 0x0101 | 0x0103 => ParamType::Word,
        0x0084 | 0x0090..=0x0092 | 0x0094 => ParamType::Byte,
        0x0110..=0x01FF => ParamType::Bytes,
        0x0001..=0x0007 | 0x0018..=0x0030 | 0x0050..=0x005A | 0x0064..=0x0080 | 0x0093 | 0x0095 | 0x0100 | 0x0102 => {
            ParamType::Dword
        }
        _ => return None,
    })
}

impl ParamValue {
    /// Reads a value of parameter `param` from its bytes: by the standard's type when the
    /// length agrees with it, else by the length (1, 2 or 4 bytes a number, other lengths raw).
    pub fn read(param: u32, bytes: &[u8]) -> ParamValue {
        let by_len = || match bytes.len() {
            1 => ParamValue::Byte(bytes[0]),
            2 => ParamValue::Word(u16::from_be_bytes([bytes[0], bytes[1]])),
            4 => ParamValue::Dword(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            _ => ParamValue::Bytes(bytes.to_vec()),
        };
        match param_type(param) {
            Some(ParamType::Text) => ParamValue::Text(text(bytes)),
            Some(ParamType::Bytes) => ParamValue::Bytes(bytes.to_vec()),
            _ => by_len(),
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            ParamValue::Byte(v) => out.push(*v),
            ParamValue::Word(v) => out.extend_from_slice(&v.to_be_bytes()),
            ParamValue::Dword(v) => out.extend_from_slice(&v.to_be_bytes()),
            ParamValue::Text(s) => out.extend_from_slice(&gbk(s)),
            ParamValue::Bytes(b) => out.extend_from_slice(b),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ParamValue::Byte(v) => (*v).into(),
            ParamValue::Word(v) => (*v).into(),
            ParamValue::Dword(v) => (*v).into(),
            ParamValue::Text(s) => s.clone().into(),
            ParamValue::Bytes(b) => crate::wire::hex::to_hex(b).into(),
        }
    }
}

/// A command the platform sends a terminal (docs/protocols/jt808.md §7). Each is answered by a 0x0001 general
/// response, or by 0x0104 (parameter queries) or 0x0201 (location query).
///
/// In JSON, each is its name in snake case, with its fields where it has them:
/// `"query_location"`, `{"terminal_control": {"command": 4, "parameters": ""}}`,
/// `{"text": {"flags": 8, "text": "Hello"}}`, `{"set_parameters": [[1, {"dword": 30}]]}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// 0x8103: parameter id and value, in order.
    SetParameters(Vec<(u32, ParamValue)>),
    /// 0x8104: every parameter.
    QueryParameters,
    /// 0x8106: the listed parameters.
    QueryGivenParameters(Vec<u32>),
    /// 0x8105: command word (docs/protocols/jt808.md §7.2) and its `;`-separated parameters.
    TerminalControl { command: u8, parameters: String },
    /// 0x8201.
    QueryLocation,
    /// 0x8202: report every `interval_s` seconds (0 stops) for `validity_s` seconds.
    Tracking { interval_s: u16, validity_s: u32 },
    /// 0x8300: flag bits (docs/protocols/jt808.md §7.3) and text; 2019 terminals also get the text type (1 notice,
    /// 2 service; 1 when not given).
    Text { flags: u8, kind: Option<u8>, text: String },
    /// 0x8500 (2013 layout): control flag, bit 0 = lock doors.
    VehicleControl { flags: u8 },
    /// 0x8900: pass-through type and data (vendors tunnel their text commands here).
    Passthrough { kind: u8, data: Vec<u8> },
}

impl Command {
    pub fn message_id(&self) -> u16 {
        match self {
            Command::SetParameters(_) => id::SET_PARAMETERS,
            Command::QueryParameters => id::QUERY_PARAMETERS,
            Command::QueryGivenParameters(_) => id::QUERY_GIVEN_PARAMETERS,
            Command::TerminalControl { .. } => id::TERMINAL_CONTROL,
            Command::QueryLocation => id::QUERY_LOCATION,
            Command::Tracking { .. } => id::TRACKING,
            Command::Text { .. } => id::TEXT,
            Command::VehicleControl { .. } => id::VEHICLE_CONTROL,
            Command::Passthrough { .. } => id::PASSTHROUGH_DOWN,
        }
    }

    /// The message body for a terminal of `edition`. `None` if it cannot be written (more
    /// than 255 parameters, a value longer than 255 bytes).
    pub fn body(&self, edition: Edition) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        match self {
            Command::SetParameters(params) => {
                body.push(u8::try_from(params.len()).ok()?);
                for (param, value) in params {
                    body.extend_from_slice(&param.to_be_bytes());
                    let mut v = Vec::new();
                    value.write(&mut v);
                    body.push(u8::try_from(v.len()).ok()?);
                    body.extend_from_slice(&v);
                }
            }
            Command::QueryParameters | Command::QueryLocation => {}
            Command::QueryGivenParameters(ids) => {
                body.push(u8::try_from(ids.len()).ok()?);
                for param in ids {
                    body.extend_from_slice(&param.to_be_bytes());
                }
            }
            Command::TerminalControl { command, parameters } => {
                body.push(*command);
                body.extend_from_slice(&gbk(parameters));
            }
            Command::Tracking { interval_s, validity_s } => {
                body.extend_from_slice(&interval_s.to_be_bytes());
                body.extend_from_slice(&validity_s.to_be_bytes());
            }
            Command::Text { flags, kind, text } => {
                body.push(*flags);
                if let Edition::V2019 { .. } = edition {
                    body.push(kind.unwrap_or(1));
                }
                body.extend_from_slice(&gbk(text));
            }
            Command::VehicleControl { flags } => body.push(*flags),
            Command::Passthrough { kind, data } => {
                body.push(*kind);
                body.extend_from_slice(data);
            }
        }
        Some(body)
    }

    /// The whole frame for `terminal` with platform serial `serial`.
    pub fn encode(&self, terminal: &Terminal, serial: u16) -> Option<Vec<u8>> {
        encode(self.message_id(), terminal, serial, &self.body(terminal.edition)?)
    }
}
