//! Cutting JT808 frames off a byte stream (docs/protocols/jt808.md §1, §8).
//!
//! A frame is the escaped bytes between two `7E` flags. Terminals send frames back to back
//! (`… 7E 7E …`), and some let one flag close a frame and open the next, so after a frame
//! the framer treats what follows as the next frame whether or not another flag comes first.
//! The same rule is the resynchronisation: bytes that are not a frame end at the next flag,
//! cost one rejected frame, and the frame after them is read normally.
//!
//! ASCII frames in parentheses (`(…,ELOCK,…)`), which some terminals send on the JT808 port,
//! are frames too.
//!
//! Every decision is made from the bytes up to the point where it is made, so a stream gives
//! the same frames however it is cut into reads.

use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};
use crate::wire::swar;

use super::FLAG;

const TEXT_OPEN: u8 = b'(';
const TEXT_CLOSE: u8 = b')';

/// The framer for one connection. Its frames are `buf[..len]`: any leading flags, then the
/// escaped header, body and check code (the closing flag is consumed, not included); or an
/// ASCII frame from `(` to `)`. [`inner`] gives the escaped part.
#[derive(Debug, Clone)]
pub struct Jt808Framer {
    limits: Limits,
    /// The last frame's closing flag was consumed and opens whatever comes next.
    open: bool,
    /// How far the buffer (which the caller presents again, longer, until a frame is cut)
    /// is already known to hold no closing flag, so a frame arriving a byte at a time is
    /// scanned once, not once per byte.
    scanned: usize,
}

/// The escaped bytes of a binary frame (leading flags removed); empty for flags alone.
pub fn inner(frame: &[u8]) -> &[u8] {
    let start = frame.iter().position(|&b| b != FLAG).unwrap_or(frame.len());
    &frame[start..]
}

/// Whether a frame from [`Jt808Framer`] is an ASCII `( … )` frame.
pub fn is_text(frame: &[u8]) -> bool {
    frame.first() == Some(&TEXT_OPEN)
}

impl Jt808Framer {
    pub fn new(limits: Limits) -> Self {
        Jt808Framer { limits, open: false, scanned: 0 }
    }

    fn text(&mut self, buf: &[u8]) -> Framing {
        self.open = false;
        let window = &buf[..buf.len().min(self.limits.max_frame_len)];
        match window.iter().position(|&b| b == TEXT_CLOSE || b == FLAG) {
            Some(i) if window[i] == TEXT_CLOSE => Framing::Frame { len: i + 1, consumed: i + 1 },
            Some(i) => Framing::Rejected {
                consumed: i,
                reason: Reject::new(RejectKind::Garbage, "a '(' text frame interrupted by a 7E flag"),
            },
            None if buf.len() >= self.limits.max_frame_len => Framing::Rejected {
                consumed: window.len(),
                reason: Reject::new(
                    RejectKind::TooLong,
                    format!("no ')' within {} bytes of a '(' text frame", self.limits.max_frame_len),
                ),
            },
            None => Framing::Incomplete { needed: 1 },
        }
    }
}

impl Framer for Jt808Framer {
    fn next_frame(&mut self, buf: &[u8]) -> Framing {
        let Some(&first) = buf.first() else {
            return Framing::Incomplete { needed: 1 };
        };
        if first == TEXT_OPEN {
            return self.text(buf);
        }
        if !self.open && first != FLAG {
            let end = buf.iter().position(|&b| b == FLAG || b == TEXT_OPEN).unwrap_or(buf.len());
            return Framing::Rejected {
                consumed: end,
                reason: Reject::new(RejectKind::Garbage, "bytes before a 7E flag"),
            };
        }
        let flags = buf.iter().position(|&b| b != FLAG).unwrap_or(buf.len());
        if flags == buf.len() {
            // Only flags so far: an opening flag, or close-and-open pairs. Nothing to decide.
            return Framing::Incomplete { needed: 1 };
        }
        let limit = self.limits.max_frame_len;
        let end = buf.len().min(flags + limit + 1);
        let from = self.scanned.clamp(flags, end);
        // Words first: a frame is usually tens of bytes, too short for memchr's set-up.
        match swar::find_byte(&buf[from..end], FLAG) {
            Some(j) => {
                self.open = true;
                self.scanned = 0;
                Framing::Frame { len: from + j, consumed: from + j + 1 }
            }
            None if end - flags > limit => {
                self.open = false;
                self.scanned = 0;
                Framing::Rejected {
                    consumed: flags + limit,
                    reason: Reject::new(RejectKind::TooLong, format!("no closing 7E flag within {limit} bytes")),
                }
            }
            None => {
                self.scanned = end;
                Framing::Incomplete { needed: 1 }
            }
        }
    }

    fn next_frame_at_end(&mut self, buf: &[u8]) -> Framing {
        match self.next_frame(buf) {
            // Nothing at all: nothing to cut (a frame of no bytes would be consumed forever).
            Framing::Incomplete { needed } if buf.is_empty() => Framing::Incomplete { needed },
            // Flags alone at the end are the close of the last frame, not a truncated one.
            Framing::Incomplete { .. } if buf.iter().all(|&b| b == FLAG) => {
                self.scanned = 0;
                Framing::Frame { len: buf.len(), consumed: buf.len() }
            }
            Framing::Incomplete { .. } => {
                self.open = false;
                self.scanned = 0;
                Framing::Rejected {
                    consumed: buf.len(),
                    reason: Reject::new(
                        RejectKind::Truncated,
                        format!("stream ended inside a frame ({} bytes without a closing flag)", buf.len()),
                    ),
                }
            }
            other => other,
        }
    }
}
