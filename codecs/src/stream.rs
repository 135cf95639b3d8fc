//! The sans-IO face every protocol's stream decoder shows: bytes in, records, rejections and
//! replies out in stream order, with stream offsets. The `decode` command, the corpus runner and the
//! gateway's sessions all drive decoders through this one trait.

use std::borrow::Cow;
use std::sync::Arc;

use crate::framing::Reject;
use crate::record::{Kind, Protocol, Record};
use crate::time::Timestamp;

mod driver;
mod options;
pub(crate) use driver::{drive, Driver, FrameHandler};
pub use options::{AllowList, Transport};

/// Something decoding produced, in stream order.
// Records are most of the events: boxing them would cost each an allocation.
#[allow(clippy::large_enum_variant)]
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
    Reply(Reply),
}

/// Pushes a new record to `out` and lends it back to be filled in place. Pushed as a copy
/// of [`Record::EMPTY`] and set there: built as a value first, the record was copied whole
/// two or three times on its way in. Through `extend` of one element made where it lies
/// (here and in [`push_reply`]): `resize_with` did the same through a call to its general
/// grow-or-shrink loop, about 80 instructions an event.
#[inline]
pub(crate) fn push_record(
    out: &mut Vec<StreamEvent>,
    protocol: Protocol,
    kind: Kind,
    message_type: impl Into<Cow<'static, str>>,
    device_id: Option<Arc<str>>,
) -> &mut Record {
    out.extend(std::iter::once_with(|| StreamEvent::Record(Record::EMPTY)));
    let Some(StreamEvent::Record(r)) = out.last_mut() else { unreachable!("a record was just pushed") };
    r.protocol = protocol;
    r.kind = kind;
    // Written over without being dropped: the copy's values own nothing, and dropping one
    // reads it back from the copy just made, which waits for the copy to land (read back,
    // `message_type` alone made a JT808 record 30% slower).
    std::mem::forget(std::mem::replace(&mut r.message_type, message_type.into()));
    std::mem::forget(std::mem::replace(&mut r.device_id, device_id));
    r
}

/// Pushes `reply` to `out`, written where it lies: pushed as a value, the whole event
/// (the size of a record) was copied for the few bytes of an ack.
pub(crate) fn push_reply(out: &mut Vec<StreamEvent>, reply: Reply) {
    out.extend(std::iter::once_with(|| StreamEvent::Reply(reply)));
}

/// Bytes for the device. Held inline up to [`Reply::INLINE`] bytes, which every ack fits, so
/// answering a frame allocates nothing (an allocation per ack was a tenth of a GT06
/// record's cost); longer replies (commands, photo requests) are on the heap.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Reply(smallvec::SmallVec<[u8; Reply::INLINE]>);

impl Reply {
    /// The longest reply held inline.
    pub const INLINE: usize = 48;

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.0.into_vec()
    }

    /// The first `len` bytes of `buf` (at most [`Reply::INLINE`]), moved as one block.
    pub(crate) fn from_inline(buf: [u8; Reply::INLINE], len: usize) -> Reply {
        Reply(smallvec::SmallVec::from_buf_and_len(buf, len.min(Reply::INLINE)))
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }
}

impl std::ops::Deref for Reply {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Reply {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl From<Vec<u8>> for Reply {
    /// Short bytes move inline (the vector is freed), long ones keep the vector.
    fn from(v: Vec<u8>) -> Reply {
        if v.len() <= Reply::INLINE {
            Reply::from(v.as_slice())
        } else {
            Reply(smallvec::SmallVec::from_vec(v))
        }
    }
}

impl From<&[u8]> for Reply {
    fn from(bytes: &[u8]) -> Reply {
        Reply(smallvec::SmallVec::from_slice(bytes))
    }
}

impl<const N: usize> From<[u8; N]> for Reply {
    /// Copied as a block of constant size (a copy of variable length is a `memcpy` call).
    fn from(bytes: [u8; N]) -> Reply {
        let mut buf = [0u8; Reply::INLINE];
        match buf.get_mut(..N) {
            Some(head) => {
                head.copy_from_slice(&bytes);
                Reply::from_inline(buf, N)
            }
            None => Reply::from(&bytes[..]),
        }
    }
}

impl From<Reply> for Vec<u8> {
    fn from(r: Reply) -> Vec<u8> {
        r.into_vec()
    }
}

impl PartialEq<Vec<u8>> for Reply {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<[u8]> for Reply {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Reply> for Vec<u8> {
    fn eq(&self, other: &Reply) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// A command for a connected device, in the form its protocol takes (see
/// [`RecordDecoder::command`]). In JSON (as the gateway keeps held commands):
/// `{"text": "RELAY,1#"}`, `{"jt808": "query_location"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Downlink {
    /// Text in the device's own command syntax (the one its SMS commands use): sent as the
    /// GT06 0x80 online command, or as a Teltonika Codec 12 command.
    Text(String),
    /// A JT808 platform message (parameters, terminal control, text to the driver, ...).
    Jt808(crate::jt808::Command),
}

/// A command framed for one device: the bytes to write, and how to recognise the device's
/// answer among its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramedCommand {
    pub bytes: Vec<u8>,
    /// Where the protocol's answer refers to the command (GT06 server flag, JT808 platform
    /// serial); `None` where it does not (Teltonika).
    pub answer: Option<AnswerMatch>,
}

/// The answer to a command is the record whose `attributes[attribute]` is `value` (GT06:
/// `server_flag`; JT808: `reply_serial`), on the same device's stream. Numbers restart per
/// connection, so match on a record from the connection the command was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerMatch {
    pub attribute: &'static str,
    pub value: u32,
}

/// Why a decoder wrote no bytes for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownlinkError {
    /// The protocol, or this transport of it, has no such command.
    Unsupported(&'static str),
    /// The device has not yet said enough for the command to be addressed (a JT808
    /// terminal before its first frame, a Teltonika device before its handshake).
    NotReady,
    /// The command cannot be written (text a frame cannot carry, a value too long).
    Invalid(String),
    /// The device has not proved who it is (a JT808 terminal before its authentication):
    /// nothing is sent to a connection that may not be the device.
    NotAuthenticated,
}

impl std::fmt::Display for DownlinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownlinkError::Unsupported(why) => write!(f, "unsupported: {why}"),
            DownlinkError::NotReady => f.write_str("the device has not identified itself on this stream yet"),
            DownlinkError::Invalid(why) => write!(f, "cannot be written: {why}"),
            DownlinkError::NotAuthenticated => f.write_str("the device has not authenticated on this stream"),
        }
    }
}

impl std::error::Error for DownlinkError {}

/// A per-connection (or per-peer) decoder that keeps stream state between calls.
pub trait RecordDecoder {
    fn protocol(&self) -> Protocol;

    /// Decodes every whole frame at the front of `buf` and returns how many bytes it used;
    /// the caller drops those and calls again with the rest plus new bytes. With `at_end`
    /// (end of stream, or end of a datagram) a trailing partial frame is decoded or rejected
    /// instead of kept.
    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize;

    /// Frames taken since the last call, and the count starts again: each frame that was
    /// not rejected (its framing and integrity check passed, and the decoder took it, if
    /// need be as a message of unknown layout) counts once, however many records it gave
    /// (a Teltonika packet of 20 records is one frame; a JT808 sub-package is one, the whole
    /// message only a record once all are in). Rejected frames are not counted; their
    /// [`StreamEvent::Rejected`] events are the count of those. The gateway adds this to
    /// its `frames` counter after each `decode`. Decoders that do not count return 0.
    fn take_frame_count(&mut self) -> u32 {
        0
    }

    /// The server's time, for replies that carry it (the GT06 0x8A time reply). Decoders
    /// read no clock themselves; the gateway calls this before each `decode`. Without it such
    /// replies are not sent.
    fn set_now(&mut self, _now: Timestamp) {}

    /// The stream is over (the connection closed, a UDP peer's session expired): report
    /// anything still held, such as a message whose sub-packages never all arrived. For a
    /// TCP stream, `decode` with `at_end` already does this.
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) {}

    /// The protocol says this stream is over (a Teltonika handshake was refused): the
    /// server sends the replies it has and closes.
    fn refused(&self) -> bool {
        false
    }

    /// Whether the stream's device has proved who it is as far as its protocol lets it (a
    /// JT808 terminal with authentication enforced: once its 0x0102 passed). Until then a
    /// server must not let the stream speak for the device (take it over, send it commands).
    fn proven(&self) -> bool {
        true
    }

    /// The bytes that send `command` to this stream's device. The decoder numbers the
    /// command from its own counters and remembers it where the protocol's answer can be
    /// matched to it (GT06 server flag, JT808 serial), so the answer's record names it; the
    /// number comes back as [`FramedCommand::answer`].
    fn command(&mut self, _command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        Err(DownlinkError::Unsupported("this protocol has no commands"))
    }
}

/// What [`decode_in_reads`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub events: Vec<StreamEvent>,
    /// Bytes used in all: every byte, for a decoder that keeps its contract.
    pub used: usize,
    /// The most bytes ever held waiting for the rest of a frame after a read was decoded.
    pub max_held: usize,
    /// Frames taken whole and sound ([`RecordDecoder::take_frame_count`] over every read).
    pub frames: u64,
}

/// Decodes `input` as a stream that arrives in reads of `chunk` bytes (at least 1), then
/// ends. For replaying captures, and for checking that a decoder gives the same events
/// whatever the read size and never holds more than a frame's worth.
pub fn decode_in_reads(decoder: &mut dyn RecordDecoder, input: &[u8], chunk: usize) -> Replay {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    let (mut used, mut max_held, mut frames) = (0, 0, 0);
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let n = decoder.decode(&buf, false, &mut events);
        frames += u64::from(decoder.take_frame_count());
        used += n;
        buf.drain(..n);
        max_held = max_held.max(buf.len());
    }
    used += decoder.decode(&buf, true, &mut events);
    decoder.finish(&mut events);
    frames += u64::from(decoder.take_frame_count());
    Replay { events, used, max_held, frames }
}

#[cfg(test)]
mod tests {
    use super::Reply;

    /// Every way into a `Reply` keeps the bytes, inline up to `INLINE` and on the heap past it.
    #[test]
    fn replies_hold_their_bytes_inline_or_not() {
        for len in [0, 1, 10, Reply::INLINE, Reply::INLINE + 1, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let from_vec = Reply::from(bytes.clone());
            let from_slice = Reply::from(bytes.as_slice());
            assert_eq!(from_vec, bytes);
            assert_eq!(from_slice, from_vec);
            assert_eq!(from_vec.as_slice(), &bytes[..]);
            assert_eq!(from_vec.clone().into_vec(), bytes);
            assert_eq!(from_vec.0.spilled(), len > Reply::INLINE, "{len} bytes");
        }
        let short = Reply::from([1u8, 2, 3]);
        assert_eq!(short, vec![1, 2, 3]);
        assert!(!short.0.spilled());
        let long = Reply::from([7u8; Reply::INLINE + 2]);
        assert_eq!(long.len(), Reply::INLINE + 2);
        assert!(long.iter().all(|&b| b == 7));
        let mut cut = Reply::from([1u8, 2, 3, 4]);
        cut.truncate(2);
        assert_eq!(cut, vec![1, 2]);
    }
}
