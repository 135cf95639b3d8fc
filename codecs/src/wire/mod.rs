//! Small wire-format helpers shared by the protocol modules: checksums, BCD, hex text, the
//! body grammar's nom leaves, words read as sets of bits, word-at-a-time byte scans and the
//! buffers encoders write to. Nothing here knows about any one protocol.

pub mod bcd;
pub mod bits;
pub mod checksum;
pub mod hex;
pub mod out;
pub mod parse;
pub mod swar;
