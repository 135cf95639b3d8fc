//! NMEA 0183 (nmea.md): the line framer, the sentence parser and encoder, and the stream
//! decoder that turns a device's lines into records.
//!
//! Layers, each usable alone:
//! * [`NmeaFramer`] cuts lines (CR, LF or CR LF; a bare last line at end of stream) with a
//!   length cap and resynchronises on `$` after an over-long run of garbage.
//! * [`split_line`] finds what one line holds: identification forms trackers send
//!   (`$IMEI=…`, `IMEI …`, a bare id, an id before the `$`), sentences (several may be
//!   spliced into one line), and bytes that are neither.
//! * [`parse`] checks and parses one sentence into a typed [`Sentence`]; [`encode`] writes one.
//! * [`NmeaDecoder`] keeps the per-stream state (device id, last date) and emits records.
//!
//! This module does no I/O and keeps no clock.

mod decimal;
mod encode;
pub mod fields;
mod grammar;
mod layout;
mod record;
mod sentence;
mod stream;

pub use decimal::{Decimal, ParseDecimalError};
pub use encode::{encode, to_line, EncodeError};
pub use fields::{Coordinate, NmeaDate, NmeaTime};
pub use sentence::{
    parse, Gga, Gll, Gns, Gsa, Gst, Gsv, Hdt, Message, ParsedSentence, Rmc, SatelliteInView, Sentence, Talker, Txt,
    Vtg, Zda,
};
pub use stream::{NmeaDecoder, NmeaOptions};

use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};

/// The default longest line. The standard says 82 characters, but real receivers exceed it
/// (long GSV, PUBX, 7-decimal coordinates) and trackers prepend ids, so the cap is generous.
pub const DEFAULT_MAX_LINE: usize = 512;

/// The NMEA defaults as [`Limits`].
pub const DEFAULT_LIMITS: Limits = Limits { max_frame_len: DEFAULT_MAX_LINE };

/// Cuts a byte stream into lines. A line ends at LF or CR (so CR LF gives an empty second
/// line, which holds nothing); the terminator is not part of the frame.
#[derive(Debug, Clone)]
pub struct NmeaFramer {
    /// Four bytes: an idle NMEA session keeps a decoder, and with this framer in it, on the
    /// heap, and at 8 bytes it no longer fit the allocator's 64-byte chunk (15 bytes more a
    /// session, measured with `trackgate bench sessions`). Lines past 4 GiB are not a concern.
    max_line_len: u32,
}

impl NmeaFramer {
    pub fn new(limits: Limits) -> Self {
        NmeaFramer { max_line_len: u32::try_from(limits.max_frame_len).unwrap_or(u32::MAX) }
    }

    /// The longest line taken, without its terminator.
    pub fn max_line_len(&self) -> usize {
        self.max_line_len as usize
    }
}

impl Default for NmeaFramer {
    fn default() -> Self {
        NmeaFramer::new(DEFAULT_LIMITS)
    }
}

impl Framer for NmeaFramer {
    fn next_frame(&mut self, buf: &[u8]) -> Framing {
        let max = self.max_line_len();
        let window = &buf[..buf.len().min(max.saturating_add(1))];
        if let Some(i) = memchr::memchr2(b'\n', b'\r', window) {
            return Framing::Frame { len: i, consumed: i + 1 };
        }
        if buf.len() > max {
            // Skip to the next sentence start so one runaway line (binary traffic, a device
            // that never sends a terminator) costs only itself. The decision looks at the
            // window only, never at how much more happens to be buffered, so the outcome is
            // the same for every read size.
            let consumed = memchr::memchr(b'$', &window[1..]).map_or(window.len(), |p| p + 1);
            return Framing::Rejected {
                consumed,
                reason: Reject::new(RejectKind::TooLong, format!("no line terminator within {max} bytes")),
            };
        }
        Framing::Incomplete { needed: 1 }
    }

    /// At the end of a stream (or datagram) an unterminated last line is still a line.
    fn next_frame_at_end(&mut self, buf: &[u8]) -> Framing {
        match self.next_frame(buf) {
            Framing::Incomplete { .. } if !buf.is_empty() => Framing::Frame { len: buf.len(), consumed: buf.len() },
            other => other,
        }
    }
}

/// How a device identified itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// `$IMEI=<id>`, `IMEI <id>` and similar whole lines.
    ImeiLine,
    /// A line that is nothing but an id.
    BareId,
    /// An id written before the `$` of a sentence on the same line.
    Prefix,
}

/// One thing found on a line. Offsets are from the start of the line.
#[derive(Debug, Clone, PartialEq)]
pub enum LinePiece<'a> {
    /// `$…` up to the end of its checksum, or to the end of the line when it has none.
    Sentence {
        offset: usize,
        text: &'a [u8],
    },
    Identification {
        offset: usize,
        id: &'a str,
        form: IdForm,
    },
    /// Bytes that are not NMEA.
    Rejected {
        offset: usize,
        len: usize,
        reason: Reject,
    },
}

fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// A plausible device id: 3–32 letters and digits, at least one digit.
fn valid_id(s: &[u8]) -> Option<&str> {
    let ok = (3..=32).contains(&s.len()) && s.iter().all(u8::is_ascii_alphanumeric) && s.iter().any(u8::is_ascii_digit);
    ok.then(|| std::str::from_utf8(s).ok()).flatten()
}

fn trim(mut s: &[u8], strip: impl Fn(&u8) -> bool) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !strip(first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !strip(last) {
            break;
        }
        s = rest;
    }
    s
}

/// Whole-line identification forms.
fn identification_line(line: &[u8]) -> Option<(&str, IdForm)> {
    for head in [&b"$IMEI="[..], b"$IMEI,", b"IMEI ", b"IMEI:", b"IMEI,", b"IMEI="] {
        if let Some(rest) = line.strip_prefix(head) {
            return valid_id(trim(rest, is_blank)).map(|id| (id, IdForm::ImeiLine));
        }
    }
    valid_id(line).map(|id| (id, IdForm::BareId))
}

/// An id written before a sentence: `359…,$GPRMC`, `4711/022789000688081/$GPRMC`,
/// `123456789$GPGGA`. Separators around the id are dropped and, where the prefix is a path
/// of several parts, the last part is the id.
fn prefix_id(prefix: &[u8]) -> Option<&str> {
    let p = trim(prefix, |b| matches!(b, b',' | b'/' | b' ' | b'\t' | b':' | b';'));
    let last = p.rsplit(|&b| b == b'/' || b == b',').next()?;
    // A leading marker (`%356939010012099`) is dropped; anything else around the id means
    // the prefix is some other envelope, not an id.
    let start = last.iter().position(u8::is_ascii_alphanumeric)?;
    valid_id(&last[start..])
}

/// `\…\` with at least one character inside and no other backslash.
fn is_tag_block(prefix: &[u8]) -> bool {
    matches!(prefix, [b'\\', inner @ .., b'\\'] if !inner.is_empty() && !inner.contains(&b'\\'))
}

/// Calls `each` with what the line holds, in order. `line` excludes its terminator.
pub fn split_line<'a>(line: &'a [u8], mut each: impl FnMut(LinePiece<'a>)) {
    let lead = line.iter().take_while(|b| is_blank(b)).count();
    let body = trim(line, is_blank);
    if body.is_empty() {
        return;
    }
    if let Some((id, form)) = identification_line(body) {
        each(LinePiece::Identification { offset: lead, id, form });
        return;
    }
    let Some(first) = memchr::memchr2(b'$', b'!', body) else {
        each(LinePiece::Rejected {
            offset: lead,
            len: body.len(),
            reason: Reject::new(RejectKind::Garbage, "line holds no sentence ('$') and no device id"),
        });
        return;
    };
    if first > 0 {
        prefix_piece(&body[..first], lead, &mut each);
    }
    let mut start = first;
    loop {
        // `$` is reserved (docs/protocols/nmea.md §1): one inside a sentence starts a new one, and whatever
        // came before it was cut short.
        let next = memchr::memchr(b'$', &body[start + 1..]).map(|p| start + 1 + p);
        let seg = &body[start..next.unwrap_or(body.len())];
        segment_pieces(seg, lead + start, next.is_some(), &mut each);
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
}

/// What comes before a line's first `$`, at `offset`: a device id, an NMEA 4.x tag block
/// (`\s:r003,c:1577836800*5B\`: source and time metadata of marine networks, not the
/// device's data; nothing to report), or garbage.
fn prefix_piece<'a>(prefix: &'a [u8], offset: usize, each: &mut impl FnMut(LinePiece<'a>)) {
    match prefix_id(prefix) {
        _ if is_tag_block(prefix) => {}
        Some(id) => each(LinePiece::Identification { offset, id, form: IdForm::Prefix }),
        None => each(LinePiece::Rejected {
            offset,
            len: prefix.len(),
            reason: Reject::new(
                RejectKind::Garbage,
                format!("{} bytes before '$' that are not a device id", prefix.len()),
            ),
        }),
    }
}

/// One `$`-started segment of a line, at `offset`: a sentence, with what follows its
/// checksum refused; a sentence cut short when `cut` (another `$` follows it) and it has no
/// checksum.
#[inline(always)]
fn segment_pieces<'a>(seg: &'a [u8], offset: usize, cut: bool, each: &mut impl FnMut(LinePiece<'a>)) {
    match memchr::memchr(b'*', seg) {
        Some(star) if seg.len() >= star + 3 && seg[star + 1..star + 3].iter().all(u8::is_ascii_hexdigit) => {
            each(LinePiece::Sentence { offset, text: &seg[..star + 3] });
            let tail = trim(&seg[star + 3..], is_blank);
            if !tail.is_empty() {
                each(LinePiece::Rejected {
                    offset: offset + star + 3,
                    len: seg.len() - star - 3,
                    reason: Reject::new(RejectKind::Garbage, format!("{} bytes after the checksum", tail.len())),
                });
            }
        }
        None if cut => each(LinePiece::Rejected {
            offset,
            len: seg.len(),
            reason: Reject::new(RejectKind::Truncated, "sentence cut short by a new '$'"),
        }),
        // No checksum at the end of the line, or a malformed one: the parser judges.
        _ => each(LinePiece::Sentence { offset, text: seg }),
    }
}

#[cfg(test)]
mod tests;
