//! Small wire-format helpers shared by the protocol modules: checksums, BCD, hex text and a
//! bounds-checked byte reader. Nothing here knows about any one protocol.

pub mod bcd;
pub mod checksum;
pub mod cursor;
pub mod hex;
