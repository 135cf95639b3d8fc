//! A JT808 frame written in the tests from the standard, not with the codec, so the tests
//! check the codec against an independent writer.

/// Header and body as a frame: XOR check code appended, `7E`/`7D` escaped, between flags.
pub fn jt808_frame(header_and_body: &[u8]) -> Vec<u8> {
    let check = header_and_body.iter().fold(0, |a, b| a ^ b);
    let mut out = vec![0x7e];
    for &b in header_and_body.iter().chain([&check]) {
        match b {
            0x7e => out.extend_from_slice(&[0x7d, 0x02]),
            0x7d => out.extend_from_slice(&[0x7d, 0x01]),
            _ => out.push(b),
        }
    }
    out.push(0x7e);
    out
}
