//! trackgate: the gateway library and the `trackgate` command line.
//!
//! * [`protocols`]: which stream decoder serves which protocol, and the stream options.
//! * [`decode`]: the `decode` command (capture in, JSON Lines out).
//! * [`corpus`]: the corpus runner behind `corpus verify|bless` and `cargo test`.
//! * [`serve`]: the sharded server behind `trackgate serve`, configured by [`config`];
//!   [`session`]: one device's session without sockets; [`registry`]: what crosses shards
//!   (which connection holds a device, and commands to it); [`metrics`]: counters;
//!   [`http`]: the operator's endpoint (`/metrics`, `/healthz`, commands when enabled).
//! * [`sink`]: where records go, and the group-committing sink thread whose answer gates
//!   every acknowledgement; [`mqtt`]: the sink that publishes to an MQTT broker.
//!
//! Protocol logic lives in `trackgate-codecs`; this crate moves bytes and records around.
#![forbid(unsafe_code)]

pub mod bench;
pub mod config;
pub mod corpus;
pub mod decode;
pub mod holds;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod protocols;
pub mod registry;
pub mod serve;
pub mod session;
pub mod sim;
pub mod sink;

pub use trackgate_codecs as codecs;
