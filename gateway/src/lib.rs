//! trackgate: the gateway library and the `trackgate` command line.
//!
//! * [`protocols`]: which stream decoder serves which protocol, and the stream options.
//! * [`decode`]: the `decode` command (capture in, JSON Lines out).
//! * [`corpus`]: the corpus runner behind `corpus verify|bless` and `cargo test`.
//! * [`serve`]: the listeners behind `trackgate serve`; [`sink`]: where records go, and the
//!   group-committing sink thread whose answer gates every acknowledgement.
//!
//! Protocol logic lives in `trackgate-codecs`; this crate moves bytes and records around.
#![forbid(unsafe_code)]

pub mod corpus;
pub mod decode;
pub mod protocols;
pub mod serve;
pub mod sink;

pub use trackgate_codecs as codecs;
