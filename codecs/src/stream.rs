//! The sans-IO face every protocol's stream decoder shows: bytes in, records, rejections and
//! replies out in stream order, with stream offsets. The `decode` command, the corpus runner and the
//! gateway's sessions all drive decoders through this one trait.

use crate::framing::Reject;
use crate::record::{Protocol, Record};

/// Something decoding produced, in stream order.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Record(Record),
    /// `len` bytes at stream offset `offset` were not a valid frame and were skipped.
    Rejected {
        offset: u64,
        len: usize,
        reason: Reject,
    },
    /// Bytes to send back to the device (an ack, a handshake answer). Send them only once
    /// every record before this event has been accepted by the sink.
    Reply(Vec<u8>),
}

/// A per-connection (or per-peer) decoder that keeps stream state between calls.
pub trait RecordDecoder {
    fn protocol(&self) -> Protocol;

    /// Decodes every whole frame at the front of `buf` and returns how many bytes it used;
    /// the caller drops those and calls again with the rest plus new bytes. With `at_end`
    /// (end of stream, or end of a datagram) a trailing partial frame is decoded or rejected
    /// instead of kept.
    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize;
}
