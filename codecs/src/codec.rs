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
            // No room is reserved for the rest: a frame's declared length is the sender's
            // word, and reserving it would let a peer that sends the start of a 64 KiB frame
            // (and nothing more) hold 64 KiB. The reader grows the buffer as bytes arrive.
            Framing::Incomplete { .. } => Ok(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teltonika::TeltonikaFramer;

    /// The start of a frame that declares 65,000 bytes holds what arrived, not what it declares.
    #[test]
    fn a_declared_length_reserves_nothing_ahead_of_the_bytes() {
        let mut codec = FrameDecoder::new(TeltonikaFramer::default());
        let mut buf = BytesMut::with_capacity(64);
        // A Teltonika AVL packet: preamble, data length 65,000, codec 8, one record.
        buf.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x00, 0xFD, 0xE8, 0x08, 0x01, 0x00]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 11);
        assert!(buf.capacity() < 1024, "{} bytes reserved", buf.capacity());
    }
}
