//! Device frames for the tests. The JT808 writer follows the standard, not the codec, so
//! the tests check the codec against an independent writer; the GT06 ones use the codec's
//! encoder where the test is about the gateway, not the codec.

use trackgate::codecs::gt06;

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

/// Header and body (hex, spaces allowed) as a JT808 frame.
pub fn jt808_wire(header_and_body: &str) -> Vec<u8> {
    jt808_frame(&super::unhex(header_and_body))
}

/// A GT06 frame (`78 78`, CRC) of `protocol_number` with `content`.
pub fn gt06_frame(protocol_number: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let mut out = Vec::new();
    gt06::encode_frame(&mut out, false, protocol_number, content, serial).unwrap();
    out
}

/// A GT06 login (0x01) of `imei`.
pub fn gt06_login(imei: &str, serial: u16) -> Vec<u8> {
    let mut content = gt06::imei_to_bcd(imei).unwrap().to_vec();
    content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
    gt06_frame(0x01, &content, serial)
}

/// A GT06 heartbeat (0x13).
pub fn gt06_heartbeat(serial: u16) -> Vec<u8> {
    gt06_frame(0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial)
}
