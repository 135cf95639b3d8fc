//! The outcomes of cutting one frame off the front of a byte stream, shared by every protocol.
//!
//! A framer looks at the bytes it has and answers with exactly one [`Framing`]:
//! a whole frame, "need more bytes" (and how many at least), "this frame is bad, skip these
//! bytes and carry on", or "framing is lost for good". Keeping "need more" apart from "bad"
//! is what lets a gateway wait for the rest of a frame without ever mistaking a slow device
//! for a broken one, and drop one bad frame without dropping the connection.
//!
//! This module owns no protocol knowledge and does no I/O.

use std::borrow::Cow;
use std::fmt;

/// What a [`Framer`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A whole frame is `buf[..len]`. The caller must drop `consumed` bytes (the frame plus
    /// any terminator that is not part of it); `consumed >= len`, and `consumed > 0`.
    Frame { len: usize, consumed: usize },
    /// The bytes seen so far are the start of a frame; at least `needed` more bytes must
    /// arrive before the framer can say more. Nothing is consumed.
    Incomplete { needed: usize },
    /// The first `consumed` bytes (never 0) are not a valid frame. Drop them and call again:
    /// the framer has already skipped to the next plausible frame start.
    Rejected { consumed: usize, reason: Reject },
    /// Framing cannot be recovered (for example a length-prefixed protocol whose length
    /// field is nonsense). The connection should be closed.
    Fatal(Reject),
}

/// Cuts frames off the front of a byte stream. Implementations are sans-IO and may keep
/// state between calls (a handshake phase, a detected protocol version).
pub trait Framer {
    /// Look at `buf`, which starts where the previous frame ended.
    fn next_frame(&mut self, buf: &[u8]) -> Framing;

    /// Called when the stream has ended (or a datagram is complete) and `buf` still holds
    /// bytes that [`Framer::next_frame`] called incomplete. The default rejects them as a
    /// truncated frame; line protocols override it to accept an unterminated last line.
    fn next_frame_at_end(&mut self, buf: &[u8]) -> Framing {
        match self.next_frame(buf) {
            Framing::Incomplete { needed } => Framing::Rejected {
                consumed: buf.len(),
                reason: Reject::new(
                    RejectKind::Truncated,
                    format!("stream ended inside a frame ({} bytes held, at least {needed} more expected)", buf.len()),
                ),
            },
            other => other,
        }
    }
}

/// Why a frame was rejected. `kind` is a stable, low-cardinality code (for metrics and
/// matching); `detail` is the human explanation with the numbers that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub kind: RejectKind,
    pub detail: Cow<'static, str>,
}

impl Reject {
    pub fn new(kind: RejectKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Reject { kind, detail: detail.into() }
    }

    /// A checksum mismatch, with both values in the protocol's usual notation.
    pub fn checksum(computed: u32, received: u32, width_hex_digits: usize) -> Self {
        Reject::new(
            RejectKind::Checksum,
            format!("computed 0x{computed:0w$X}, frame carries 0x{received:0w$X}", w = width_hex_digits),
        )
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

impl std::error::Error for Reject {}

/// The stable codes behind [`Reject`]. New codes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectKind {
    /// The frame's checksum or CRC does not match its contents.
    Checksum,
    /// A declared length is impossible or disagrees with the frame.
    Length,
    /// The frame is longer than the configured limit.
    TooLong,
    /// Bytes that are not the start of any frame of this protocol.
    Garbage,
    /// The frame ended (or a new frame started) before it was complete.
    Truncated,
    /// The frame is whole but a field in it is not valid.
    Malformed,
    /// A valid frame this implementation cannot interpret (for example an encrypted body).
    Unsupported,
}

impl RejectKind {
    /// The code as used in error records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Checksum => "bad checksum",
            RejectKind::Length => "bad length",
            RejectKind::TooLong => "frame too long",
            RejectKind::Garbage => "garbage",
            RejectKind::Truncated => "truncated frame",
            RejectKind::Malformed => "malformed frame",
            RejectKind::Unsupported => "unsupported frame",
        }
    }

    /// The code as a metric label (snake_case).
    pub fn label(self) -> &'static str {
        match self {
            RejectKind::Checksum => "checksum",
            RejectKind::Length => "length",
            RejectKind::TooLong => "too_long",
            RejectKind::Garbage => "garbage",
            RejectKind::Truncated => "truncated",
            RejectKind::Malformed => "malformed",
            RejectKind::Unsupported => "unsupported",
        }
    }
}

/// Limits a framer enforces before it allocates or waits for anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest frame accepted, in bytes as they are on the wire.
    pub max_frame_len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Framer for Fixed {
        fn next_frame(&mut self, buf: &[u8]) -> Framing {
            if buf.len() < 4 {
                Framing::Incomplete { needed: 4 - buf.len() }
            } else {
                Framing::Frame { len: 4, consumed: 4 }
            }
        }
    }

    #[test]
    fn default_end_of_stream_rejects_a_partial_frame() {
        let got = Fixed.next_frame_at_end(b"ab");
        match got {
            Framing::Rejected { consumed, reason } => {
                assert_eq!(consumed, 2);
                assert_eq!(reason.kind, RejectKind::Truncated);
                assert!(reason.to_string().contains("at least 2 more"), "{reason}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(Fixed.next_frame_at_end(b"abcd"), Framing::Frame { len: 4, consumed: 4 });
    }

    #[test]
    fn checksum_reason_prints_both_values() {
        let r = Reject::checksum(0x7b, 0x7c, 2);
        assert_eq!(r.to_string(), "bad checksum: computed 0x7B, frame carries 0x7C");
        assert_eq!(r.kind.label(), "checksum");
    }
}
