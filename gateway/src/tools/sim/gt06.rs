//! A simulated GT06 device: a v2 login, 0x12 positions with a cell, 0x13 heartbeats, and
//! 0x21 answers to the gateway's 0x80 commands.

use std::time::SystemTime;

use trackgate_codecs::gt06;

use super::device::{Common, Exchange, Firmware, Fix, FromGateway};
use super::utc_fields;

#[derive(Debug)]
pub(super) struct Gt06Firmware;

impl Firmware for Gt06Firmware {
    fn login(&mut self, dev: &mut Common) -> Vec<Exchange> {
        let serial = dev.next_serial();
        let mut content = gt06::imei_to_bcd(&dev.id).expect("a 15-digit IMEI").to_vec();
        content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
        let mut bytes = Vec::new();
        gt06::encode_frame(&mut bytes, false, 0x01, &content, serial).expect("a login fits");
        vec![Exchange::one(bytes, Some(gt06::ack(false, 0x01, serial)))]
    }

    fn frame(&mut self, dev: &mut Common, fix: Fix, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64) {
        let serial = dev.next_serial();
        if fix.heartbeat {
            gt06::encode_frame(out, false, 0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial).expect("fits");
            return (Some(gt06::ack(false, 0x13, serial)), 1);
        }
        let mut c = utc_fields(fix.unix_ms).to_vec();
        c.push(0xC9); // 12-byte GPS block, 9 satellites
        c.extend_from_slice(&((dev.lat.abs() * 1_800_000.0) as u32).to_be_bytes());
        c.extend_from_slice(&((dev.lon.abs() * 1_800_000.0) as u32).to_be_bytes());
        c.push(fix.speed_kmh as u8);
        let mut course_status = fix.course as u16 | 1 << 12; // positioned
        if dev.lat >= 0.0 {
            course_status |= 1 << 10;
        }
        if dev.lon < 0.0 {
            course_status |= 1 << 11;
        }
        c.extend_from_slice(&course_status.to_be_bytes());
        c.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0xB8]);
        gt06::encode_frame(out, false, 0x12, &c, serial).expect("fits");
        (Some(gt06::ack(false, 0x12, serial)), 1)
    }

    /// Content, before serial and CRC.
    fn damage_at(&self, dev: &mut Common, len: usize) -> usize {
        4 + dev.rng.below((len - 10) as u64) as usize
    }

    /// The 0x80 online command, short or long.
    fn command_at(&self, buf: &[u8]) -> FromGateway {
        let need = |total| FromGateway::need(buf.len(), total);
        match buf {
            [0x78, 0x78, len, 0x80, ..] => need(usize::from(*len) + 5),
            [0x79, 0x79, hi, lo, 0x80, ..] => need(usize::from(u16::from_be_bytes([*hi, *lo])) + 6),
            [0x78] | [0x78, 0x78] | [0x78, 0x78, _] | [0x79] | [0x79, 0x79] | [0x79, 0x79, _] | [0x79, 0x79, _, _] => {
                FromGateway::PartialCommand
            }
            _ => FromGateway::Other,
        }
    }

    /// 0x21 in the long form, as Concox firmware sends it, echoing the server flag.
    fn answer(&mut self, dev: &mut Common, command: &[u8], _now: SystemTime) -> Option<Vec<u8>> {
        // The command-length byte, then the server flag.
        let at = if command.starts_with(&gt06::LONG_START) { 5 } else { 4 };
        let flag = command.get(at + 1..at + 5)?;
        let server_flag = u32::from_be_bytes(flag.try_into().ok()?);
        let reply = gt06::Message::CommandReply(gt06::CommandReply {
            server_flag,
            text: "OK".into(),
            encoding: Some(1),
            irregular_length: None,
            extra: &[],
        });
        let mut content = Vec::new();
        reply.write_content(0x21, &mut content)?;
        let serial = dev.next_serial();
        let mut out = Vec::new();
        gt06::encode_frame(&mut out, true, 0x21, &content, serial)?;
        Some(out)
    }
}
