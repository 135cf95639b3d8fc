//! What the end-to-end tests share: hex text and frames built from the protocols' own
//! layouts. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod certs;
pub mod frames;
pub mod gateway;
pub mod nats;

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex text (spaces allowed between bytes) as bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.replace(' ', "");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}
