//! A `tokio_util::codec::Decoder` over any [`Framer`], for embedders who read with
//! `FramedRead`. Frames come out as `Bytes` split off the read buffer (no copy); bad frames
//! come out as items too, so one bad frame never ends the stream. Only [`Framing::Fatal`]
//! becomes an error.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::framing::{Framer, Framing, Reject};

/// One item read from the stream, with its stream offset.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameItem {
    /// A whole frame, without any terminator the framer strips.
    Frame { offset: u64, bytes: Bytes },
    /// `len` bytes that were not a valid frame and were skipped.
    Rejected { offset: u64, len: usize, reason: Reject },
}

/// Adapts a [`Framer`] to `tokio_util::codec::Decoder`.
#[derive(Debug, Clone)]
pub struct FrameDecoder<F> {
    framer: F,
    offset: u64,
}

impl<F: Framer> FrameDecoder<F> {
    pub fn new(framer: F) -> Self {
        FrameDecoder { framer, offset: 0 }
    }

    pub fn framer_mut(&mut self) -> &mut F {
        &mut self.framer
    }

    fn take(&mut self, buf: &mut BytesMut, framing: Framing) -> io::Result<Option<FrameItem>> {
        let offset = self.offset;
        match framing {
            Framing::Frame { len, consumed } => {
                let frame = buf.split_to(consumed).freeze();
                self.offset += consumed as u64;
                Ok(Some(FrameItem::Frame { offset, bytes: frame.slice(..len) }))
            }
            Framing::Incomplete { needed } => {
                buf.reserve(needed);
                Ok(None)
            }
            Framing::Rejected { consumed, reason } => {
                buf.advance(consumed);
                self.offset += consumed as u64;
                Ok(Some(FrameItem::Rejected { offset, len: consumed, reason }))
            }
            Framing::Fatal(reason) => Err(io::Error::new(io::ErrorKind::InvalidData, reason)),
        }
    }
}

impl<F: Framer> Decoder for FrameDecoder<F> {
    type Item = FrameItem;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<FrameItem>> {
        if buf.is_empty() {
            return Ok(None);
        }
        let framing = self.framer.next_frame(buf);
        self.take(buf, framing)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<FrameItem>> {
        if buf.is_empty() {
            return Ok(None);
        }
        let framing = self.framer.next_frame_at_end(buf);
        self.take(buf, framing)
    }
}
