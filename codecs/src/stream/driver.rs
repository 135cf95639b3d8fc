//! The one loop every stream decoder runs (in the manner of tokio-util's `FramedImpl` over a
//! `Decoder`): cut frames off the buffer with the protocol's framer, hand each whole frame
//! to the protocol, and keep the stream's bookkeeping here, once: the stream offset, the
//! count of frames taken, and runs of skipped bytes merged into one rejection each.
//!
//! A protocol supplies only what to do with one whole frame ([`FrameHandler::frame`]) and
//! which of its rejections are pieces of a run ([`FrameHandler::merges`]).

use crate::framing::{Framer, Framing, Reject, RejectKind};
use crate::stream::StreamEvent;

/// A stream's framer and bookkeeping, held by the protocol's decoder.
#[derive(Debug, Clone)]
pub(crate) struct Driver<F> {
    pub(crate) framer: F,
    /// Stream offset of the first byte of the buffer passed to the next `decode` call.
    offset: u64,
    /// Frames taken whole since the last [`Driver::take_frames`].
    frames: u32,
    /// Skipped bytes not yet reported, waiting to see whether more adjacent ones follow.
    /// Boxed: it is only ever set on the error path, and an idle decoder stays small.
    run: Option<Box<(u64, usize, Reject)>>,
}

/// What a protocol's stream decoder does with one whole frame.
pub(crate) trait FrameHandler {
    type Framer: Framer;

    /// Names the protocol in a merged rejection ("12 bytes that start no GT06 frame").
    const PROTOCOL: &'static str;

    fn driver(&mut self) -> &mut Driver<Self::Framer>;

    /// Decodes one whole frame that starts at stream offset `at` (`consumed` bytes of the
    /// stream with what the framer dropped after it, a terminator or a closing flag): pushes
    /// its events and answers how many frames it took (a line of several NMEA sentences is
    /// several), or answers why the frame is bad, having pushed nothing.
    ///
    /// The four protocols mark theirs `#[inline]`, so the loop and the frame's decoding stay
    /// one function as they were before the loop was shared: split in two, GT06's record
    /// rows measured 6–7% slower.
    fn frame(&mut self, frame: &[u8], at: u64, consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject>;

    /// Whether a rejection of `len` bytes is a piece of a run of skipped bytes, reported
    /// with its neighbours as one event. A framer skipping junk rejects it in pieces whose
    /// size depends on how much had been read; merging them makes the events the same for
    /// every read size.
    fn merges(reason: &Reject, len: usize) -> bool;

    /// The bytes a bad frame's rejection covers: the whole frame, unless the protocol
    /// reports only part of it (JT808 leaves out the opening flags).
    fn rejected_span(frame: &[u8], at: u64) -> (u64, usize) {
        (at, frame.len())
    }
}

impl<F> Driver<F> {
    pub(crate) fn new(framer: F) -> Self {
        Driver { framer, offset: 0, frames: 0, run: None }
    }

    /// Frames taken since the last call ([`crate::stream::RecordDecoder::take_frame_count`]).
    pub(crate) fn take_frames(&mut self) -> u32 {
        std::mem::take(&mut self.frames)
    }

    /// Stream offset of the next byte to decode.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// For a protocol that takes a datagram whole, without its framer: `len` bytes used,
    /// `frames` of them taken.
    pub(crate) fn took_whole(&mut self, len: usize, frames: u32) {
        self.offset += len as u64;
        self.frames = self.frames.wrapping_add(frames);
    }

    /// Reports a rejection: a piece of a run extends it, anything else ends the run first.
    fn reject<H: FrameHandler>(&mut self, offset: u64, len: usize, reason: Reject, out: &mut Vec<StreamEvent>) {
        if !H::merges(&reason, len) {
            self.flush::<H>(out);
            out.push(StreamEvent::Rejected { offset, len, reason });
            return;
        }
        if let Some(run) = &mut self.run {
            if run.0 + run.1 as u64 == offset {
                run.1 += len;
                return;
            }
        }
        self.flush::<H>(out);
        self.run = Some(Box::new((offset, len, reason)));
    }

    /// Ends the run of skipped bytes (a frame follows, or the stream ended) and reports it.
    /// Inline, with the report apart: it runs before every frame, and there is mostly no run.
    #[inline(always)]
    pub(crate) fn flush<H: FrameHandler>(&mut self, out: &mut Vec<StreamEvent>) {
        if self.run.is_some() {
            self.report_run::<H>(out);
        }
    }

    #[cold]
    #[inline(never)]
    fn report_run<H: FrameHandler>(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(run) = self.run.take() {
            let (offset, len, mut reason) = *run;
            if len > 1 {
                reason.detail = match reason.kind {
                    RejectKind::Garbage => format!("{len} bytes that start no {} frame", H::PROTOCOL).into(),
                    _ => format!("{}; {len} bytes skipped", reason.detail).into(),
                };
            }
            out.push(StreamEvent::Rejected { offset, len, reason });
        }
    }
}

/// Decodes every whole frame at the front of `buf` ([`crate::stream::RecordDecoder::decode`]'s
/// contract) and answers how many bytes it used.
pub(crate) fn drive<H: FrameHandler>(h: &mut H, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let d = h.driver();
        let at = d.offset + pos as u64;
        let framing = if at_end { d.framer.next_frame_at_end(rest) } else { d.framer.next_frame(rest) };
        match framing {
            Framing::Frame { len, consumed } => {
                take(h, &rest[..len], at, consumed, out);
                pos += consumed;
            }
            Framing::Incomplete { .. } => break,
            Framing::Rejected { consumed, reason } => {
                h.driver().reject::<H>(at, consumed, reason, out);
                pos += consumed;
            }
            Framing::Fatal(reason) => {
                h.driver().reject::<H>(at, rest.len(), reason, out);
                pos = buf.len();
            }
        }
    }
    let d = h.driver();
    if at_end {
        d.flush::<H>(out);
    }
    d.offset += pos as u64;
    pos
}

/// One whole frame: the run of skipped bytes before it is reported first, so events stay
/// in stream order.
fn take<H: FrameHandler>(h: &mut H, frame: &[u8], at: u64, consumed: usize, out: &mut Vec<StreamEvent>) {
    h.driver().flush::<H>(out);
    match h.frame(frame, at, consumed, out) {
        Ok(frames) => {
            let d = h.driver();
            d.frames = d.frames.wrapping_add(frames);
        }
        Err(reason) => {
            let (at, len) = H::rejected_span(frame, at);
            h.driver().reject::<H>(at, len, reason, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up protocol: frames are `[` … `]`, `!` inside one makes it bad, and anything
    /// outside brackets is junk rejected a byte at a time.
    struct Brackets {
        driver: Driver<BracketFramer>,
        /// Each frame taken, with how many events were out when it was.
        seen: Vec<(Vec<u8>, usize)>,
    }

    struct BracketFramer;

    impl Framer for BracketFramer {
        fn next_frame(&mut self, buf: &[u8]) -> Framing {
            match buf.first() {
                None => Framing::Incomplete { needed: 1 },
                Some(b'[') => match buf.iter().position(|&b| b == b']') {
                    Some(end) => Framing::Frame { len: end + 1, consumed: end + 1 },
                    None => Framing::Incomplete { needed: 1 },
                },
                Some(_) => Framing::Rejected { consumed: 1, reason: Reject::new(RejectKind::Garbage, "junk") },
            }
        }
    }

    impl FrameHandler for Brackets {
        type Framer = BracketFramer;
        const PROTOCOL: &'static str = "bracket";

        fn driver(&mut self) -> &mut Driver<BracketFramer> {
            &mut self.driver
        }

        fn frame(&mut self, frame: &[u8], _: u64, _: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
            if frame.contains(&b'!') {
                return Err(Reject::new(RejectKind::Malformed, "a bang"));
            }
            self.seen.push((frame.to_vec(), out.len()));
            Ok(1)
        }

        fn merges(reason: &Reject, _: usize) -> bool {
            reason.kind == RejectKind::Garbage
        }
    }

    fn rejections(events: &[StreamEvent]) -> Vec<(u64, usize, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Rejected { offset, len, reason } => Some((*offset, *len, reason.detail.to_string())),
                _ => None,
            })
            .collect()
    }

    /// Junk split across reads is one rejection; a bad frame is its own; offsets and the
    /// frame count carry over from read to read; the end of the stream judges what waits.
    #[test]
    fn one_loop_keeps_offsets_counts_and_runs() {
        let stream = b"xyz[ab][!]qq[cd";
        let mut h = Brackets { driver: Driver::new(BracketFramer), seen: vec![] };
        let mut out = Vec::new();
        let mut used = 0;
        for end in [2, 8, stream.len()] {
            used += drive(&mut h, &stream[used..end], false, &mut out);
        }
        assert_eq!(used, 12, "the unfinished frame waits");
        used += drive(&mut h, &stream[used..], true, &mut out);
        assert_eq!(used, stream.len());
        assert_eq!(h.seen, vec![(b"[ab]".to_vec(), 1)], "the junk before the frame is reported before it");
        assert_eq!(h.driver.take_frames(), 1);
        assert_eq!(h.driver.take_frames(), 0);
        assert_eq!(h.driver.offset(), stream.len() as u64);
        assert_eq!(
            rejections(&out),
            vec![
                (0, 3, "3 bytes that start no bracket frame".to_string()),
                (7, 3, "a bang".to_string()),
                (10, 2, "2 bytes that start no bracket frame".to_string()),
                (12, 3, "stream ended inside a frame (3 bytes held, at least 1 more expected)".to_string()),
            ]
        );
    }
}
