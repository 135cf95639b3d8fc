//! Cutting Teltonika TCP streams into frames (docs/protocols/teltonika.md §1–§2).
//!
//! ```text
//!  IMEI handshake   00 0F  33 35 36 …            u16 length + ASCII digits
//!  keep-alive       FF                           one byte, ignored
//!  packet           00 00 00 00 | L (u32) | codec … N2 (L bytes) | 00 00 CRC (u32)
//!                   preamble      length    data field              CRC-16/ARC of the data
//! ```
//!
//! There is no delimiter to resynchronise on, so a bad frame consumes only up to the next
//! *plausible* frame start (a preamble with a sane length and a known codec, or a handshake)
//! inside it. A damaged length field therefore cannot swallow the good packets after it.

use super::avl::{CODEC_16, CODEC_8, CODEC_8E};
use super::{CODEC_12, CODEC_13, CODEC_14, CODEC_15, CODEC_7};
use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};
use crate::wire::checksum::CRC16_ARC;

/// Preamble (4) + data field length (4).
pub const HEADER_LEN: usize = 8;
/// The CRC field after the data (u32, upper half zero).
pub const CRC_LEN: usize = 4;
/// The smallest data field: codec id, N1 and N2.
pub const MIN_DATA_LEN: usize = 3;
/// Longest IMEI handshake accepted (15 digits in practice).
pub const MAX_IMEI_LEN: usize = 32;
/// The default cap on the data field. Devices send at most 1280 bytes; 64 KiB leaves room
/// for photo transfers (codec 12 camera packets) without letting a damaged length run away.
pub const DEFAULT_LIMITS: Limits = Limits { max_frame_len: 65_536 + HEADER_LEN + CRC_LEN };

/// Codec ids a packet may carry (the data codecs, the command codecs and GH3000's 0x07).
pub const KNOWN_CODECS: [u8; 8] = [CODEC_7, CODEC_8, CODEC_8E, CODEC_16, CODEC_12, CODEC_13, CODEC_14, CODEC_15];

/// What a TCP frame is, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFrameKind {
    Imei,
    KeepAlive,
    Packet,
}

/// The kind of a frame the framer returned (`frame` is exactly what it returned).
pub fn frame_kind(frame: &[u8]) -> TcpFrameKind {
    match frame {
        [0xFF] => TcpFrameKind::KeepAlive,
        [0, n, ..] if *n != 0 => TcpFrameKind::Imei,
        _ => TcpFrameKind::Packet,
    }
}

/// Cuts a Teltonika TCP stream. The kind of each frame shows in its first bytes; the only
/// state is whether bytes were just rejected (then starts are judged more strictly).
#[derive(Debug, Clone)]
pub struct TeltonikaFramer {
    max_data_len: usize,
    /// Bytes have just been rejected: until a frame is found, starts are judged by the
    /// stricter resynchronisation rules, as the bytes around are not trustworthy.
    resyncing: bool,
}

impl TeltonikaFramer {
    pub fn new(limits: Limits) -> Self {
        TeltonikaFramer { max_data_len: limits.max_frame_len.saturating_sub(HEADER_LEN + CRC_LEN), resyncing: false }
    }
}

impl Default for TeltonikaFramer {
    fn default() -> Self {
        TeltonikaFramer::new(DEFAULT_LIMITS)
    }
}

/// What the bytes at the front of a buffer are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Start {
    KeepAlive,
    /// A handshake or a packet of `total` bytes on the wire.
    Frame(usize),
    /// Not a frame start: reject this byte.
    No(RejectKind, String),
    /// More bytes are needed to tell.
    Undecided(usize),
}

impl TeltonikaFramer {
    /// Classifies `b[0..]`. With `resync`, a packet must also show a known codec byte and a
    /// handshake must be a 15-digit IMEI: more evidence, because a resync candidate sits among
    /// arbitrary bytes (a timestamp's `00 01 30` would otherwise pass for a handshake).
    fn classify(&self, b: &[u8], resync: bool) -> Start {
        match b {
            [] => Start::Undecided(1),
            [0xFF, ..] if !resync => Start::KeepAlive,
            [0] => Start::Undecided(1),
            [0, 0, rest @ ..] => {
                let need = if resync { HEADER_LEN + 1 } else { HEADER_LEN };
                if rest.iter().take(2).any(|&x| x != 0) {
                    return Start::No(RejectKind::Garbage, String::new());
                }
                if b.len() < need {
                    return Start::Undecided(need - b.len());
                }
                let len = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
                if !(MIN_DATA_LEN..=self.max_data_len).contains(&len) {
                    return Start::No(
                        RejectKind::Length,
                        format!("data length {len} outside {MIN_DATA_LEN}..={}", self.max_data_len),
                    );
                }
                if resync && !KNOWN_CODECS.contains(&b[HEADER_LEN]) {
                    return Start::No(RejectKind::Garbage, String::new());
                }
                Start::Frame(HEADER_LEN + len + CRC_LEN)
            }
            [0, n, rest @ ..] if (resync && *n == 15) || (!resync && usize::from(*n) <= MAX_IMEI_LEN) => {
                let n = usize::from(*n);
                if !rest.iter().take(n).all(u8::is_ascii_digit) {
                    return Start::No(RejectKind::Garbage, String::new());
                }
                Start::Frame(2 + n)
            }
            _ => Start::No(RejectKind::Garbage, String::new()),
        }
    }

    /// Where a rejected frame of `len` bytes ends: at the first position inside it that
    /// could start a frame, or that its own bytes cannot judge (the bytes from there on are
    /// judged afresh), so a damaged length never swallows what follows. Depends only on the
    /// frame's bytes, never on how much else has been read.
    fn end_of_bad_frame(&self, frame: &[u8]) -> usize {
        (1..frame.len())
            .find(|&p| matches!(self.classify(&frame[p..], true), Start::Frame(_) | Start::Undecided(_)))
            .unwrap_or(frame.len())
    }

    fn frame(&mut self, buf: &[u8], at_end: bool) -> Framing {
        let framing = self.judge(buf, at_end);
        match framing {
            Framing::Frame { .. } => self.resyncing = false,
            Framing::Rejected { .. } | Framing::Fatal(_) => self.resyncing = true,
            Framing::Incomplete { .. } => {}
        }
        framing
    }

    fn judge(&self, buf: &[u8], at_end: bool) -> Framing {
        if let Some(total) = self.whole_packet(buf) {
            return self.check_crc(&buf[..total]);
        }
        // No bytes are no frame yet, not garbage: there is nothing to skip.
        if buf.is_empty() {
            return Framing::Incomplete { needed: 1 };
        }
        match self.classify(buf, self.resyncing) {
            Start::KeepAlive => Framing::Frame { len: 1, consumed: 1 },
            Start::No(kind, detail) => {
                let detail =
                    if detail.is_empty() { "1 byte that starts no Teltonika frame".to_string() } else { detail };
                Framing::Rejected { consumed: 1, reason: Reject::new(kind, detail) }
            }
            Start::Undecided(needed) if !at_end => Framing::Incomplete { needed },
            Start::Undecided(_) => Framing::Rejected {
                consumed: 1,
                reason: Reject::new(RejectKind::Garbage, "1 byte that starts no Teltonika frame"),
            },
            Start::Frame(total) if buf.len() < total => {
                if !at_end {
                    return Framing::Incomplete { needed: total - buf.len() };
                }
                Framing::Rejected {
                    consumed: self.end_of_bad_frame(buf),
                    reason: Reject::new(
                        RejectKind::Truncated,
                        format!("stream ended {} bytes before the end of the frame", total - buf.len()),
                    ),
                }
            }
            Start::Frame(total) if buf[0] != 0 || buf[1] != 0 => Framing::Frame { len: total, consumed: total },
            Start::Frame(total) => self.check_crc(&buf[..total]),
        }
    }

    /// The length of the AVL or command packet at the front of `buf` when all of it is
    /// there: the common case, judged here with one look at the header, where `classify`
    /// tells every kind of start apart. Anything else goes the long way.
    #[inline(always)]
    fn whole_packet(&self, buf: &[u8]) -> Option<usize> {
        let (header, rest) = buf.split_first_chunk::<HEADER_LEN>()?;
        let [0, 0, 0, 0, l0, l1, l2, l3] = *header else { return None };
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        let sane = (MIN_DATA_LEN..=self.max_data_len).contains(&len);
        let plausible = !self.resyncing || rest.first().is_some_and(|c| KNOWN_CODECS.contains(c));
        (sane && plausible && rest.len() >= len + CRC_LEN).then_some(HEADER_LEN + len + CRC_LEN)
    }

    /// A whole packet (`frame`, preamble to CRC) if its CRC matches its data.
    fn check_crc(&self, frame: &[u8]) -> Framing {
        let total = frame.len();
        let data = &frame[HEADER_LEN..total - CRC_LEN];
        let c = &frame[total - CRC_LEN..];
        let received = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        let computed = CRC16_ARC.checksum(data);
        if received == u32::from(computed) {
            Framing::Frame { len: total, consumed: total }
        } else {
            Framing::Rejected {
                consumed: self.end_of_bad_frame(frame),
                reason: Reject::checksum(u32::from(computed), received, 4),
            }
        }
    }
}

impl Framer for TeltonikaFramer {
    fn next_frame(&mut self, buf: &[u8]) -> Framing {
        self.frame(buf, false)
    }

    fn next_frame_at_end(&mut self, buf: &[u8]) -> Framing {
        self.frame(buf, true)
    }
}
