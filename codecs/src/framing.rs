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
            // No bytes are not a truncated frame: there is nothing to reject.
            Framing::Incomplete { needed } if buf.is_empty() => Framing::Incomplete { needed },
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
    /// A sound frame from a device that has not proved who it is where its protocol asks it
    /// to (a JT808 terminal before its authentication): no record, no acknowledgement.
    Unauthenticated,
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
            RejectKind::Unauthenticated => "unauthenticated",
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
            RejectKind::Unauthenticated => "unauthenticated",
        }
    }
}

/// Every frame `framer` cuts from `stream`, a whole stream (a capture, a file, a finished
/// connection's bytes), in order: `Ok` with each frame's bytes (without a terminator that
/// is not part of it), `Err` for each run of bytes the framer rejects. Bytes left waiting
/// for more at the end are judged with [`Framer::next_frame_at_end`]; a fatal framing error
/// is the last item. For a live connection, whose frames arrive in pieces, use the
/// protocol's stream decoder instead.
///
/// ```
/// use trackgate_codecs::framing::frames;
/// use trackgate_codecs::nmea::NmeaFramer;
///
/// // A sentence, and one cut short: framing only finds the lines' ends.
/// let capture = b"$GPGLL,4916.45,N,12311.12,W,225444,A*31\n$GPGLL,4916.4";
/// let mut framer = NmeaFramer::default();
/// let cut: Vec<_> = frames(&mut framer, capture).collect();
/// assert_eq!(cut, [Ok(&b"$GPGLL,4916.45,N,12311.12,W,225444,A*31"[..]), Ok(&b"$GPGLL,4916.4"[..])]);
/// ```
pub fn frames<'a, 'f, F: Framer>(framer: &'f mut F, stream: &'a [u8]) -> Frames<'a, 'f, F> {
    Frames { framer, stream, offset: 0, done: false }
}

/// The iterator [`frames`] returns.
#[derive(Debug)]
pub struct Frames<'a, 'f, F> {
    framer: &'f mut F,
    stream: &'a [u8],
    offset: usize,
    done: bool,
}

impl<F> Frames<'_, '_, F> {
    /// Where the next item starts in the stream (after the last one: its length).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The framer, for what it has learned on the way (a detected dialect, a handshake).
    pub fn framer(&self) -> &F {
        self.framer
    }
}

impl<'a, F: Framer> Iterator for Frames<'a, '_, F> {
    type Item = Result<&'a [u8], Reject>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.stream.get(self.offset..).filter(|r| !r.is_empty() && !self.done)?;
        let framing = match self.framer.next_frame(rest) {
            Framing::Incomplete { .. } => self.framer.next_frame_at_end(rest),
            other => other,
        };
        // A framer that breaks its contract (nothing consumed, more than there is, a frame
        // longer than what it consumes) ends the iteration rather than looping or panicking.
        let item = match framing {
            Framing::Frame { len, consumed } if len <= consumed && consumed > 0 && consumed <= rest.len() => {
                self.offset += consumed;
                Ok(&rest[..len])
            }
            Framing::Rejected { consumed, reason } if consumed > 0 && consumed <= rest.len() => {
                self.offset += consumed;
                Err(reason)
            }
            Framing::Fatal(reason) => {
                self.done = true;
                Err(reason)
            }
            Framing::Frame { .. } | Framing::Rejected { .. } | Framing::Incomplete { .. } => {
                self.done = true;
                Err(Reject::new(RejectKind::Truncated, "the framer made no progress at the end of the stream"))
            }
        };
        Some(item)
    }
}

impl<F: Framer> std::iter::FusedIterator for Frames<'_, '_, F> {}

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
    fn frames_cuts_a_whole_stream() {
        let mut framer = Fixed;
        let mut it = frames(&mut framer, b"abcdefghij");
        assert_eq!(it.next(), Some(Ok(&b"abcd"[..])));
        assert_eq!(it.offset(), 4);
        assert_eq!(it.next(), Some(Ok(&b"efgh"[..])));
        // The last two bytes are a frame cut short by the end of the stream.
        assert!(matches!(it.next(), Some(Err(Reject { kind: RejectKind::Truncated, .. }))));
        assert_eq!((it.offset(), it.next()), (10, None));
        assert_eq!(frames(&mut Fixed, b"").count(), 0);
    }

    /// Rejected bytes are skipped and iteration goes on; a fatal error is the last item; a
    /// framer that consumes nothing ends the iteration instead of looping.
    #[test]
    fn frames_skips_rejections_and_stops_at_fatal_or_no_progress() {
        struct Scripted(Vec<Framing>);
        impl Framer for Scripted {
            fn next_frame(&mut self, _: &[u8]) -> Framing {
                if self.0.is_empty() {
                    Framing::Incomplete { needed: 1 }
                } else {
                    self.0.remove(0)
                }
            }
        }
        let bad = || Reject::new(RejectKind::Garbage, "junk");
        let mut framer = Scripted(vec![
            Framing::Rejected { consumed: 2, reason: bad() },
            Framing::Frame { len: 2, consumed: 3 },
            Framing::Fatal(bad()),
        ]);
        let got: Vec<_> = frames(&mut framer, b"xxab\nrest").collect();
        assert_eq!(got, vec![Err(bad()), Ok(&b"ab"[..]), Err(bad())]);
        let mut framer = Scripted(vec![Framing::Frame { len: 1, consumed: 0 }]);
        let got: Vec<_> = frames(&mut framer, b"abc").collect();
        assert!(matches!(got[..], [Err(Reject { kind: RejectKind::Truncated, .. })]), "{got:?}");
    }

    #[test]
    fn checksum_reason_prints_both_values() {
        let r = Reject::checksum(0x7b, 0x7c, 2);
        assert_eq!(r.to_string(), "bad checksum: computed 0x7B, frame carries 0x7C");
        assert_eq!(r.kind.label(), "checksum");
    }
}

/// The outcome contract every protocol's framer keeps, on any bytes: too few bytes (the
/// empty buffer included) are `Incomplete`, never a rejection of bytes that are not there;
/// what a framer cuts or skips is within the buffer; at the end of a stream nothing is
/// left waiting for bytes that will not come.
#[cfg(test)]
mod contract {
    use super::*;
    use crate::{gt06, jt808, nmea, teltonika};
    use proptest::prelude::*;

    fn framers() -> Vec<(&'static str, Box<dyn Framer>)> {
        vec![
            ("gt06", Box::new(gt06::Gt06Framer::default())),
            ("jt808", Box::new(jt808::Jt808Framer::new(jt808::DEFAULT_LIMITS))),
            ("teltonika", Box::new(teltonika::TeltonikaFramer::default())),
            ("nmea", Box::new(nmea::NmeaFramer::default())),
        ]
    }

    fn check(name: &str, buf: &[u8], at_end: bool, got: &Framing) -> Result<(), TestCaseError> {
        match got {
            Framing::Frame { len, consumed } => {
                // An empty frame (a blank NMEA line) is a frame; consuming nothing is not.
                prop_assert!(
                    len <= consumed && 0 < *consumed && *consumed <= buf.len(),
                    "{name}: {got:?} of {}",
                    buf.len()
                );
            }
            Framing::Rejected { consumed, .. } => {
                prop_assert!(0 < *consumed && *consumed <= buf.len(), "{name}: {got:?} of {}", buf.len());
            }
            Framing::Incomplete { needed } => {
                prop_assert!(*needed > 0, "{name}: {got:?}");
                prop_assert!(!at_end || buf.is_empty(), "{name}: at the end, {got:?} of {}", buf.len());
            }
            Framing::Fatal(_) => prop_assert!(!buf.is_empty(), "{name}: fatal on nothing"),
        }
        Ok(())
    }

    #[test]
    fn the_empty_buffer_is_incomplete_for_every_framer() {
        for (name, mut framer) in framers() {
            assert!(matches!(framer.next_frame(&[]), Framing::Incomplete { .. }), "{name}");
            assert!(matches!(framer.next_frame_at_end(&[]), Framing::Incomplete { .. }), "{name}");
        }
    }

    proptest! {
        #[test]
        fn every_framer_keeps_the_outcome_contract(
            bytes in proptest::collection::vec(prop_oneof![
                4 => any::<u8>(),
                // The bytes that start frames, so more of them are tried than chance gives.
                1 => prop::sample::select(vec![0x78u8, 0x79, 0x7e, 0x24, 0x0d, 0x0a, 0x00, 0x0f]),
            ], 0..96),
            at_end in any::<bool>(),
        ) {
            for (name, mut framer) in framers() {
                for cut in 0..=bytes.len() {
                    let buf = &bytes[..cut];
                    let got = if at_end { framer.next_frame_at_end(buf) } else { framer.next_frame(buf) };
                    check(name, buf, at_end, &got)?;
                }
            }
        }
    }
}
