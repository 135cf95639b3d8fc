//! Cutting a GT06 TCP stream into frames (docs/protocols/gt06.md §1–§2, §8).
//!
//! A frame is found by its length field and proven by its stop bytes and CRC. What devices
//! in the field send besides that, in the order tried:
//!
//! 1. the standard frame: stop bytes where the length says, CRC-16/X-25 correct;
//! 2. a Wi-Fi/LBS count frame (0x17/0x69, length byte = access-point count), measured from
//!    its own counts, no CRC;
//! 3. a GT02/GT03-era 0x10/0x11 fix whose length counts the content only, no CRC;
//! 4. a frame whose length byte is wrong but whose CRC is right at an earlier or later stop
//!    (some firmware sends heartbeats with length 8 for 10 bytes): the CRC vouches for it;
//! 5. a frame whose CRC is wrong: rejected in strict mode (the whole frame, as its stop bytes
//!    stand where its length says), accepted and marked in lenient mode;
//! 6. bytes that end nowhere: rejected up to the next start marker (strict), or accepted up
//!    to the first stop before it and marked (lenient).
//!
//! Every decision looks only at bytes up to the point it is made (the frame's end, or the
//! next start marker), so the same stream gives the same frames whatever the read sizes.

use super::field::{self, SHORT_HEADER};
use super::{frame_crc, GPS, GPS_LBS_6, LENGTH_OVERHEAD, LONG_START, SHORT_START, STOP, WIFI, WIFI_2};
use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};

/// Long frames can declare up to 65 541 bytes; nothing fielded sends more than a few
/// hundred, so the default holds a connection's buffer to 4 KiB. Raise it for photo uploads.
pub const DEFAULT_LIMITS: Limits = Limits { max_frame_len: 4096 };

/// The longest a short frame can be (length byte 255).
const SHORT_MAX: usize = 255 + 5;
/// Protocol + serial + CRC + stop: the least a CRC-carrying frame has after its length.
const MIN_TAIL: usize = 1 + 2 + 2 + 2;
/// A Wi-Fi count frame: BCD time, then per access point MAC + RSSI, per cell LAC + CI + RSSI.
const WIFI_TIME: usize = 6;
const WIFI_AP: usize = 7;
const WIFI_CELL_HEAD: usize = 3;
const WIFI_CELL: usize = 5;
/// The GPS block a legacy 0x10/0x11 fix carries at least.
const LEGACY_MIN_CONTENT: usize = 18;

/// How much a frame's integrity was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integrity {
    /// The CRC matched.
    Verified,
    /// The CRC did not match (or could not be found) and the frame was accepted anyway
    /// because the framer is lenient.
    Bad,
    /// The frame belongs to a dialect that carries no serial and no CRC.
    Absent,
    /// Lenient mode accepted bytes up to a stop whose length field is wrong and where no CRC
    /// fits: whether a serial and CRC are in there cannot be known, so everything between
    /// the protocol number and the stop is content.
    Unchecked,
}

/// What the framer learned about the last frame it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameShape {
    pub integrity: Integrity,
    /// The length field agreed with where the frame ended.
    pub length_field_ok: bool,
}

/// Cuts GT06 frames; strict (bad CRC → rejected) unless made lenient.
#[derive(Debug, Clone)]
pub struct Gt06Framer {
    lenient: bool,
    max_frame_len: usize,
    shape: FrameShape,
}

impl Default for Gt06Framer {
    fn default() -> Self {
        Gt06Framer::new(DEFAULT_LIMITS, false)
    }
}

fn is_start(b: &[u8]) -> bool {
    b.starts_with(&SHORT_START) || b.starts_with(&LONG_START)
}

/// The first start marker at or after `from`; a lone last byte that could begin one counts
/// (its partner has not arrived yet).
fn next_start(b: &[u8], from: usize) -> Option<usize> {
    (from..b.len()).find(|&i| matches!(b[i], 0x78 | 0x79) && (i + 1 == b.len() || b[i + 1] == b[i]))
}

impl Gt06Framer {
    pub fn new(limits: Limits, lenient: bool) -> Self {
        Gt06Framer {
            lenient,
            max_frame_len: limits.max_frame_len,
            shape: FrameShape { integrity: Integrity::Verified, length_field_ok: true },
        }
    }

    /// The shape of the frame the last [`Framing::Frame`] returned.
    pub fn last_shape(&self) -> FrameShape {
        self.shape
    }

    fn frame(&mut self, buf: &[u8], at_end: bool) -> Framing {
        match spare_sound_frames(buf, self.judge(buf, at_end)) {
            Judged::Frame(total, shape) => {
                self.shape = shape;
                Framing::Frame { len: total, consumed: total }
            }
            Judged::Other(framing) => framing,
        }
    }

    fn judge(&self, b: &[u8], at_end: bool) -> Judged {
        // No bytes are no frame yet, not garbage: there is nothing to skip.
        if b.is_empty() {
            return incomplete(1);
        }
        if !is_start(b) {
            return not_a_start(b, at_end);
        }
        let long = b[0] == LONG_START[0];
        let header = field::header(long);
        // The length field, and the protocol number after it.
        let Some(length) = field::length(b, long).filter(|_| b.len() > header) else {
            return self.ran_out(b, at_end, header + 1 - b.len());
        };
        let nominal = length + header + STOP.len();
        let window = if long { self.max_frame_len } else { self.max_frame_len.min(SHORT_MAX) };
        let standard = length >= LENGTH_OVERHEAD && nominal <= window;
        let head = Head { long, header, length, protocol: b[header], nominal, window, standard };
        // 1. The standard frame.
        let stop_at_nominal = match stop_at(b, nominal, at_end) {
            _ if !standard => false,
            Err(needed) => return incomplete(needed),
            Ok(stop) => stop,
        };
        if stop_at_nominal && crc_ok(&b[..nominal]) {
            return Judged::Frame(nominal, verified(true));
        }
        self.judge_other_layouts(b, at_end, &head, stop_at_nominal)
    }

    /// A start whose standard frame does not check out: the CRC-less layouts (steps 2–3),
    /// then a search of the stop bytes (4–6).
    fn judge_other_layouts(&self, b: &[u8], at_end: bool, head: &Head, stop_at_nominal: bool) -> Judged {
        // An empty CRC-less message: `78 78 01 proto 0D 0A`.
        if !head.long && head.length == 1 && stop_at(b, head.nominal, true) == Ok(true) {
            return Judged::Frame(head.nominal, ABSENT);
        }
        if let Some(judged) = self.count_frame(b, at_end, head) {
            return judged;
        }
        if let Some(judged) = legacy_fix(b, at_end, head) {
            return judged;
        }
        self.search_stops(b, at_end, head, stop_at_nominal)
    }

    /// 2. Wi-Fi/LBS count frames, whose length field counts access points.
    fn count_frame(&self, b: &[u8], at_end: bool, head: &Head) -> Option<Judged> {
        if head.long || !matches!(head.protocol, WIFI | WIFI_2) {
            return None;
        }
        let cells_at = head.header + 1 + WIFI_TIME + WIFI_AP * head.length;
        if b.len() <= cells_at {
            return (!at_end).then(|| incomplete(cells_at + 1 - b.len()));
        }
        let total = cells_at + 1 + WIFI_CELL_HEAD + WIFI_CELL * usize::from(b[cells_at]) + STOP.len();
        match stop_at(b, total, at_end) {
            _ if total > self.max_frame_len => None,
            Err(needed) => Some(incomplete(needed)),
            Ok(true) => Some(Judged::Frame(total, ABSENT)),
            Ok(false) => None,
        }
    }

    /// 4–6. The stop bytes searched: within the frame when its stop stands where the length
    /// says, else up to the next start marker (or the window). The first end with a good CRC
    /// is the frame; without one, lenient framing takes the first stop bytes, strict refuses.
    fn search_stops(&self, b: &[u8], at_end: bool, head: &Head, stop_at_nominal: bool) -> Judged {
        let nominal = head.nominal;
        let bound = if stop_at_nominal {
            nominal
        } else {
            match marker_bound(b, head.window, at_end) {
                Some(bound) => bound,
                None => return incomplete(1),
            }
        };
        let min_end = head.header + MIN_TAIL;
        let mut first_stop = None;
        for end in min_end..=bound {
            if b[end - 2..end] != STOP {
                continue;
            }
            if crc_ok(&b[..end]) {
                return Judged::Frame(end, verified(end == nominal));
            }
            first_stop.get_or_insert(end);
        }
        if stop_at_nominal {
            if self.lenient {
                return Judged::Frame(nominal, FrameShape { integrity: Integrity::Bad, length_field_ok: true });
            }
            let (computed, carried) = crc_pair(&b[..nominal]);
            return Judged::Other(Framing::Rejected {
                consumed: nominal,
                reason: Reject::checksum(computed, carried, 4),
            });
        }
        if self.lenient {
            // The frame's end by the first stop bytes before the next frame, if any are long
            // enough to hold a protocol number.
            let first_stop =
                first_stop.or_else(|| (head.header + 1 + STOP.len()..=bound).find(|&end| b[end - 2..end] == STOP));
            if let Some(end) = first_stop {
                return Judged::Frame(end, FrameShape { integrity: Integrity::Unchecked, length_field_ok: false });
            }
        }
        Judged::Other(Framing::Rejected { consumed: bound.max(1), reason: refusal(b, at_end, head, bound) })
    }

    fn ran_out(&self, b: &[u8], at_end: bool, needed: usize) -> Judged {
        if at_end {
            Judged::Other(Framing::Rejected {
                consumed: b.len(),
                reason: Reject::new(RejectKind::Truncated, "stream ended inside a frame header"),
            })
        } else {
            Judged::Other(Framing::Incomplete { needed })
        }
    }
}

/// What a frame's first bytes say, before its end is found.
struct Head {
    long: bool,
    /// The bytes before the protocol number.
    header: usize,
    /// The length field.
    length: usize,
    protocol: u8,
    /// Where the frame ends by its length field.
    nominal: usize,
    /// The longest frame this start may begin.
    window: usize,
    /// Whether the length field describes a standard frame that fits the window.
    standard: bool,
}

/// The frame shape of a frame whose CRC checks out.
fn verified(length_field_ok: bool) -> FrameShape {
    FrameShape { integrity: Integrity::Verified, length_field_ok }
}

/// The frame shape of the CRC-less layouts.
const ABSENT: FrameShape = FrameShape { integrity: Integrity::Absent, length_field_ok: false };

fn incomplete(needed: usize) -> Judged {
    Judged::Other(Framing::Incomplete { needed })
}

/// Bytes that do not open a frame: skipped up to the next start marker.
fn not_a_start(b: &[u8], at_end: bool) -> Judged {
    if b.len() == 1 && matches!(b[0], 0x78 | 0x79) && !at_end {
        return incomplete(1);
    }
    let skip = next_start(b, 1).filter(|&i| !at_end || i + 1 < b.len()).unwrap_or(b.len());
    Judged::Other(Framing::Rejected {
        consumed: skip.max(1),
        reason: Reject::new(RejectKind::Garbage, "bytes that start no GT06 frame"),
    })
}

/// 3. Legacy fixes whose length field counts the content only.
fn legacy_fix(b: &[u8], at_end: bool, head: &Head) -> Option<Judged> {
    if head.long || !matches!(head.protocol, GPS | GPS_LBS_6) || head.length < LEGACY_MIN_CONTENT {
        return None;
    }
    let total = head.header + 1 + head.length + STOP.len();
    match stop_at(b, total, at_end) {
        Err(needed) => Some(incomplete(needed)),
        Ok(true) => Some(Judged::Frame(total, ABSENT)),
        Ok(false) => None,
    }
}

/// Why a start with no frame found up to `bound` is refused.
fn refusal(b: &[u8], at_end: bool, head: &Head, bound: usize) -> Reject {
    let (nominal, window) = (head.nominal, head.window);
    if bound < head.header + MIN_TAIL {
        // Another start marker follows too closely for a frame to fit: these bytes only
        // looked like a start.
        Reject::new(RejectKind::Garbage, "bytes that start no GT06 frame")
    } else if !head.standard && nominal > window {
        Reject::new(RejectKind::TooLong, format!("length field says {nominal} bytes, more than the {window} allowed"))
    } else if at_end && bound == b.len() && !b.ends_with(&STOP) {
        Reject::new(RejectKind::Truncated, "stream ended inside a frame")
    } else {
        Reject::new(
            RejectKind::Length,
            format!(
                "length field says {nominal} bytes but no frame with a valid CRC ends there or before the next frame"
            ),
        )
    }
}

/// Whether stop bytes end `b` at `total`: `Err(needed)` while too few bytes have arrived to
/// tell, `Ok(false)` when they are not there (or the stream ended short of them).
fn stop_at(b: &[u8], total: usize, at_end: bool) -> Result<bool, usize> {
    match b.get(..total) {
        Some(frame) => Ok(frame.ends_with(&STOP)),
        None if at_end => Ok(false),
        None => Err(total - b.len()),
    }
}

/// Where the search for a frame's end stops: the next start marker inside the window (from the
/// second byte on: `78 78 78` may be a frame whose length byte is 0x78 or junk before one), else
/// the window's end (or the stream's). `None` while the bytes cannot tell yet.
fn marker_bound(b: &[u8], window: usize, at_end: bool) -> Option<usize> {
    let end = window.min(b.len());
    for i in 1..end {
        if matches!(b[i], 0x78 | 0x79) {
            match b.get(i + 1) {
                Some(&next) if next == b[i] => return Some(i),
                Some(_) => {}
                None if at_end => {}
                None => return None,
            }
        }
    }
    (b.len() >= window || at_end).then_some(end)
}

enum Judged {
    Frame(usize, FrameShape),
    Other(Framing),
}

/// A decision that would take a sound frame with it (one whose own stop bytes and CRC hold,
/// inside the bytes taken) is cut short before that frame: the bytes up to it are rejected,
/// and the frame is read next. Only a decision the CRC did not vouch for can do that: a
/// damaged length (or protocol byte read as a CRC-less dialect) whose count runs through
/// the frames after it. A frame whose CRC holds over all its bytes is left alone.
fn spare_sound_frames(b: &[u8], judged: Judged) -> Judged {
    let taken = match &judged {
        Judged::Frame(_, shape) if shape.integrity == Integrity::Verified => return judged,
        Judged::Frame(total, _) => *total,
        Judged::Other(Framing::Rejected { consumed, .. }) => *consumed,
        Judged::Other(_) => return judged,
    };
    match (1..taken.saturating_sub(MIN_FRAME - 1)).find(|&i| sound_frame_at(&b[i..taken])) {
        Some(at) => Judged::Other(Framing::Rejected {
            consumed: at,
            reason: Reject::new(
                RejectKind::Length,
                format!("a frame whose length runs through the sound frame {at} bytes after its start"),
            ),
        }),
        None => judged,
    }
}

/// The fewest bytes a CRC-carrying frame has: start, length, protocol, serial, CRC, stop.
const MIN_FRAME: usize = SHORT_HEADER + MIN_TAIL;

/// Whether `b` begins with a whole standard frame, stop bytes and CRC where its length says.
fn sound_frame_at(b: &[u8]) -> bool {
    if !is_start(b) || b.len() < MIN_FRAME {
        return false;
    }
    let long = b[0] == LONG_START[0];
    let (header, Some(length)) = (field::header(long), field::length(b, long)) else {
        return false;
    };
    let total = length + header + STOP.len();
    length >= LENGTH_OVERHEAD && b.get(..total).is_some_and(|f| f.ends_with(&STOP) && crc_ok(f))
}

/// CRC over length … serial of a frame that ends with serial, CRC and stop.
fn crc_pair(frame: &[u8]) -> (u32, u32) {
    let n = frame.len();
    let carried = u16::from_be_bytes([frame[n - 4], frame[n - 3]]);
    (u32::from(frame_crc(&frame[2..n - 4])), u32::from(carried))
}

fn crc_ok(frame: &[u8]) -> bool {
    let (computed, carried) = crc_pair(frame);
    computed == carried
}

impl Framer for Gt06Framer {
    fn next_frame(&mut self, buf: &[u8]) -> Framing {
        self.frame(buf, false)
    }

    fn next_frame_at_end(&mut self, buf: &[u8]) -> Framing {
        self.frame(buf, true)
    }
}
