//! Device frames for the tests. The JT808 writer follows the standard, not the codec, so
//! the tests check the codec against an independent writer; the GT06 ones use the codec's
//! encoder where the test is about the gateway, not the codec.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

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

/// Reads one GT06 0x80 online command (short or long form), or `None` within `wait`.
pub fn read_command(device: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    device.set_read_timeout(Some(wait)).unwrap();
    read_command_from(device)
}

/// As [`read_command`], from any stream (its read timeout already set).
pub fn read_command_from(device: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    device.read_exact(&mut head).ok()?;
    let rest = match head {
        [0x78, 0x78, len, 0x80] => usize::from(len) + 1,
        [0x79, 0x79, hi, lo] => usize::from(u16::from_be_bytes([hi, lo])) + 2,
        other => panic!("not a command: {other:02x?}"),
    };
    let mut frame = head.to_vec();
    frame.resize(4 + rest, 0);
    device.read_exact(&mut frame[4..]).ok()?;
    Some(frame)
}
