//! The commands beside `serve`: [`decode`] (a capture in, JSON Lines out), [`corpus`] (the
//! decode corpus runner), [`sim`] (simulated devices against a gateway) and [`bench`](mod@bench) (the
//! in-process session harness). They use the codecs and the session; the server uses none
//! of them.

pub mod bench;
pub mod corpus;
pub mod decode;
pub mod sim;
