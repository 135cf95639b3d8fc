//! Small wire-format helpers shared by the protocol modules: checksums, BCD, hex text, a
//! bounds-checked byte reader and word-at-a-time byte scans. Nothing here knows about any one protocol.

pub mod bcd;
pub mod checksum;
pub mod cursor;
pub mod hex;
pub mod swar;
