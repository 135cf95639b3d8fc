//! Small wire-format helpers shared by the protocol modules: checksums, BCD, hex text, a
//! bounds-checked byte reader, the body grammar's nom leaves, word-at-a-time byte scans and the buffers encoders write to. Nothing here knows about any one protocol.

pub mod bcd;
pub mod bits;
pub mod checksum;
pub mod cursor;
pub mod hex;
pub mod out;
pub mod parse;
pub mod swar;
