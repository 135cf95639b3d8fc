//! Zero-copy, sans-IO codecs for GPS tracker protocols.
//!
//! * [`detect`]: which protocol a connection or datagram speaks, from its first bytes.
//! * [`framing`]: the decode outcomes every protocol shares (frame / incomplete / rejected /
//!   fatal) and the limits framers enforce.
//! * [`record`]: the normalized record (`"schema": 1`) every decoded uplink becomes.
//! * [`stream`]: the stream-decoder trait the command line and the gateway drive.
//! * [`wire`]: checksums (on the `crc` crate), BCD and a bounds-checked byte reader.
//! * One module per protocol: [`gt06`], [`jt808`], [`nmea`], [`teltonika`].
//! * [`codec`]: a `tokio_util::codec::Decoder` over any framer (feature `tokio-codec`).
//!
//! No I/O and no runtime here; nothing in this crate reads a clock.
#![forbid(unsafe_code)]

#[cfg(feature = "tokio-codec")]
pub mod codec;
pub mod detect;
pub mod framing;
pub mod gt06;
pub mod jt808;
pub mod nmea;
pub mod record;
pub mod stream;
pub mod teltonika;
#[cfg(test)]
mod test_support;
pub mod time;
pub mod wire;

pub use framing::{Framer, Framing, Limits, Reject, RejectKind};
pub use record::{Kind, Protocol, Record};
pub use stream::{
    decode_in_reads, AllowList, AnswerMatch, Downlink, DownlinkError, FramedCommand, RecordDecoder, Replay, Reply,
    StreamEvent, Transport,
};
