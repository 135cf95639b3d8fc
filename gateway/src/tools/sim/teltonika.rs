//! A simulated Teltonika device: the IMEI handshake (TCP), one-record Codec 8 packets (with
//! the UDP channel header over UDP), and Codec 12/14 answers to commands.

use std::time::SystemTime;

use trackgate_codecs::teltonika::{self, AvlRecord, GpsElement, UdpPacket};

use super::device::{Common, Exchange, Firmware, Fix, FromGateway};
use crate::protocol::Transport;

#[derive(Debug, Default)]
pub(super) struct TeltonikaFirmware {
    /// The UDP channel's packet id and AVL packet id, counted per datagram.
    packet_id: u16,
    avl_packet_id: u8,
}

impl TeltonikaFirmware {
    /// The next datagram's channel header around `data`.
    fn datagram(&mut self, id: &str, data: &[u8], out: &mut Vec<u8>) {
        self.packet_id = self.packet_id.wrapping_add(1);
        self.avl_packet_id = self.avl_packet_id.wrapping_add(1);
        UdpPacket::encode(self.packet_id, 0x01, self.avl_packet_id, id, data, out);
    }
}

impl Firmware for TeltonikaFirmware {
    /// The IMEI handshake over TCP; over UDP every datagram names the device.
    fn login(&mut self, dev: &mut Common) -> Vec<Exchange> {
        if dev.transport == Transport::Udp {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        teltonika::encode_imei(&dev.id, &mut bytes);
        vec![Exchange::one(bytes, Some(vec![0x01]))]
    }

    fn frame(&mut self, dev: &mut Common, fix: Fix, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64) {
        let record = AvlRecord {
            timestamp_ms: fix.unix_ms.max(0) as u64,
            priority: 0,
            gps: GpsElement {
                longitude_e7: (dev.lon * 1e7) as i32,
                latitude_e7: (dev.lat * 1e7) as i32,
                altitude_m: 42,
                angle_deg: fix.course as u16,
                satellites: 9,
                speed_kmh: fix.speed_kmh as u16,
            },
            event_io_id: 0,
            generation_type: None,
            declared_io_count: None,
            io_u8: vec![(239, 1), (240, 1)],
            io_u16: vec![(66, 12_600)],
            io_u32: vec![(16, dev.reports as u32 * 100)],
            io_u64: Vec::new(),
            io_var: Vec::new(),
        };
        let mut data = Vec::new();
        teltonika::encode_data(0x08, &[record], &mut data).expect("one record encodes");
        match dev.transport {
            Transport::Tcp => {
                teltonika::encode_packet(&data, out);
                (Some(teltonika::tcp_ack(1).to_vec()), 1)
            }
            Transport::Udp => {
                self.datagram(&dev.id, &data, out);
                (Some(teltonika::udp_ack(self.packet_id, self.avl_packet_id, 1).to_vec()), 1)
            }
        }
    }

    /// TCP: inside the records, before the CRC. UDP has no CRC: the closing record count.
    fn damage_at(&self, dev: &mut Common, len: usize) -> usize {
        match dev.transport {
            Transport::Udp => len - 1,
            Transport::Tcp => 10 + dev.rng.below((len - 16) as u64) as usize,
        }
    }

    /// A Codec 12/14 command packet.
    fn command_at(&self, buf: &[u8]) -> FromGateway {
        match buf {
            [0, 0, 0, 0, l0, l1, l2, l3, ..] => {
                let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
                FromGateway::need(buf.len(), len.saturating_add(12))
            }
            _ if buf.len() < 8 && buf.iter().all(|&b| b == 0) => FromGateway::PartialCommand,
            _ => FromGateway::Other,
        }
    }

    /// A Codec 12 (or 14) response; over UDP inside the channel header, as the device's data
    /// comes (the gateway reads a bare TCP packet too).
    fn answer(&mut self, dev: &mut Common, command: &[u8], _now: SystemTime) -> Option<Vec<u8>> {
        // 00000000, length, codec, quantity, type, size, [IMEI for Codec 14], text.
        let codec = *command.get(8)?;
        let imei = match codec {
            teltonika::CODEC_14 => Some(command.get(15..23)?.try_into().ok()?),
            _ => None,
        };
        let mut out = Vec::new();
        teltonika::encode_command(codec, teltonika::TYPE_RESPONSE, imei, b"OK", &mut out);
        if dev.transport == Transport::Udp {
            let data = out.get(teltonika::HEADER_LEN..out.len() - 4)?.to_vec();
            out.clear();
            self.datagram(&dev.id, &data, &mut out);
        }
        Some(out)
    }
}
