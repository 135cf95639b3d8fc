//! trackgate: the gateway library and the `trackgate` command line.
//!
//! A frame's journey reads down this list: a [`server`] socket hands bytes to a [`session`]
//! (the codec's decoder plus identity, commands and deadlines, without I/O); its records go
//! to the [`sink`] and only once it has them do the acks go back. The [`registry`] is what
//! crosses shards (who holds a device, commands, held commands); [`config`] holds every
//! setting and spec type; [`protocol`] the per-protocol facts; [`cluster`] what several
//! nodes on one NATS share (presence, commands, held commands); [`ops`] the operator's HTTP
//! endpoint and the metrics; [`tools`] the `decode`, `corpus`, `sim` and `bench` commands.
//!
//! Protocol logic lives in `trackgate-codecs`; this crate moves bytes and records around.
//! The manuals are in the repository's `docs/`.
#![forbid(unsafe_code)]

pub(crate) mod bus;
pub mod close;
pub mod cluster;
pub mod config;
pub mod ops;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod session;
pub mod sink;
pub mod tools;

pub use trackgate_codecs as codecs;
