//! Teltonika (teltonika.md): the TCP framer, AVL data views for Codec 8 / 8 Extended / 16,
//! Codec 12/13/14/15 command packets, the UDP channel, the acks, and the stream decoder that
//! turns a device's traffic into records.
//!
//! * [`TeltonikaFramer`] cuts a TCP stream into handshakes, keep-alives and packets, verifying the
//!   CRC-16/ARC and resynchronising on the next plausible packet after damage.
//! * [`Gh3000Data`] reads and writes Codec 7, the GH3000 family's masked records.
//! * [`AvlData`] validates a data field once and then iterates records ([`RecordView`]) and
//!   IO elements ([`IoElement`]) without allocating; [`AvlPacket`] is its owned copy.
//! * [`Command`] reads command packets; [`encode_command`] writes them.
//! * [`UdpPacket`] reads a datagram; [`udp_ack`] answers it.
//! * [`TeltonikaDecoder`] keeps the per-connection state (IMEI) and emits records and acks.
//!
//! No I/O and no clock here.

mod avl;
mod frame;
mod gh3000;
mod packet;
mod stream;

pub use avl::{
    encode_data, AvlData, AvlError, AvlRecord, EncodeError, GpsElement, IoElement, IoIter, IoValue, RecordView,
    CODEC_16, CODEC_8, CODEC_8E,
};
pub use frame::{frame_kind, TcpFrameKind, TeltonikaFramer, DEFAULT_LIMITS, HEADER_LEN, KNOWN_CODECS, MAX_IMEI_LEN};
pub use gh3000::{Gh3000Data, Gh3000Location, Gh3000Record, EPOCH_2007};
pub use packet::{AvlPacket, PacketRecord};
pub use stream::{TeltonikaDecoder, TeltonikaOptions};

use crate::wire::checksum::CRC16_ARC;
use crate::wire::cursor::Cursor;

pub const CODEC_12: u8 = 0x0C;
pub const CODEC_13: u8 = 0x0D;
pub const CODEC_14: u8 = 0x0E;
pub const CODEC_15: u8 = 0x0F;
/// GH3000's bit-masked codec ([`Gh3000Data`]).
pub const CODEC_7: u8 = gh3000::CODEC_7;

/// Command packet types (docs/protocols/teltonika.md §6).
pub const TYPE_COMMAND: u8 = 0x05;
pub const TYPE_RESPONSE: u8 = 0x06;
/// Codec 14: the device's IMEI did not match the command's.
pub const TYPE_IMEI_MISMATCH: u8 = 0x11;
/// Codec 15 text.
pub const TYPE_CODEC15: u8 = 0x0B;

/// The handshake answers.
pub const IMEI_ACCEPT: u8 = 0x01;
pub const IMEI_REJECT: u8 = 0x00;

/// Wraps a data field (codec id … N2) into a TCP packet: preamble, length, data, CRC.
pub fn encode_packet(data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&u32::from(CRC16_ARC.checksum(data)).to_be_bytes());
}

/// The TCP ack of an AVL packet: the number of records accepted, u32 BE.
pub fn tcp_ack(accepted: u32) -> [u8; 4] {
    accepted.to_be_bytes()
}

/// The IMEI handshake a device sends: u16 length + ASCII digits.
pub fn encode_imei(imei: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
}

/// A Codec 12/13/14/15 packet's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command<'a> {
    pub codec: u8,
    /// 0x05 command, 0x06 response, 0x11 IMEI mismatch (codec 14), 0x0B codec 15 text; others kept.
    pub kind: u8,
    /// Codec 13/15 message time, milliseconds since the epoch.
    pub timestamp_ms: Option<u64>,
    /// Codec 14/15: the IMEI the packet is addressed to or comes from, 8 bytes (BCD-like hex).
    pub imei: Option<[u8; 8]>,
    /// The command or response bytes (ASCII text in practice).
    pub payload: &'a [u8],
}

/// The IMEI of a Codec 14/15 field as digits: hex of the 8 bytes without the leading `0`.
pub fn imei_digits(imei: &[u8; 8]) -> String {
    let hex = crate::wire::hex::to_hex(imei);
    hex.strip_prefix('0').map(str::to_owned).unwrap_or(hex)
}

/// Packs 15 IMEI digits (or 16) into the 8-byte Codec 14 form.
pub fn imei_bytes(imei: &str) -> Option<[u8; 8]> {
    let padded = format!("{imei:0>16}");
    if padded.len() != 16 || !padded.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, chunk) in padded.as_bytes().chunks(2).enumerate() {
        out[i] = (chunk[0] - b'0') << 4 | (chunk[1] - b'0');
    }
    Some(out)
}

/// Whether a timestamp is one a device could send (2000-01-01 to 2100-01-01).
fn plausible_ms(ms: u64) -> bool {
    (946_684_800_000..4_102_444_800_000).contains(&ms)
}

/// Why a command packet is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError(pub &'static str);

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl<'a> Command<'a> {
    /// Reads a command data field: codec, quantity 1, type, size (u32), content, quantity 2.
    pub fn parse(data: &'a [u8]) -> Result<Self, CommandError> {
        let mut c = Cursor::new(data);
        let codec = c.u8().ok_or(CommandError("empty"))?;
        let q1 = c.u8().ok_or(CommandError("no quantity"))?;
        let kind = c.u8().ok_or(CommandError("no type"))?;
        let size = c.u32().ok_or(CommandError("no command size"))? as usize;
        let content = c.take(size).ok_or(CommandError("command size runs past the packet"))?;
        let q2 = c.u8().ok_or(CommandError("no closing quantity"))?;
        if c.remaining() != 0 {
            return Err(CommandError("bytes after the closing quantity"));
        }
        if q1 != q2 {
            return Err(CommandError("command quantities disagree"));
        }
        let mut cmd = Command { codec, kind, timestamp_ms: None, imei: None, payload: content };
        let mut rest = Cursor::new(content);
        match codec {
            CODEC_12 => {}
            CODEC_13 => {
                // The timestamp's width is not fixed in the field (docs/protocols/teltonika.md §6): 8-byte
                // milliseconds in some captures, 4-byte seconds in others. Take the one
                // that gives a plausible time.
                let ms8 = content.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
                let s4 = content.get(..4).map(|b| u64::from(u32::from_be_bytes(b.try_into().unwrap_or([0; 4]))));
                if let Some(ms) = ms8.filter(|&ms| plausible_ms(ms)) {
                    cmd.timestamp_ms = Some(ms);
                    rest.take(8);
                } else if let Some(s) = s4.filter(|&s| plausible_ms(s * 1000)) {
                    cmd.timestamp_ms = Some(s * 1000);
                    rest.take(4);
                }
                cmd.payload = rest.rest();
            }
            CODEC_14 => {
                cmd.imei = Some(rest.array::<8>().ok_or(CommandError("codec 14 without an IMEI"))?);
                cmd.payload = rest.rest();
            }
            CODEC_15 => {
                cmd.timestamp_ms = Some(u64::from(rest.u32().ok_or(CommandError("codec 15 without a time"))?) * 1000);
                cmd.imei = Some(rest.array::<8>().ok_or(CommandError("codec 15 without an IMEI"))?);
                cmd.payload = rest.rest();
            }
            _ => return Err(CommandError("not a command codec")),
        }
        Ok(cmd)
    }
}

/// Writes a whole command packet (TCP framing included): Codec 12 with `imei: None`, Codec 14
/// with the IMEI the device must have. `kind` is [`TYPE_COMMAND`] for server commands.
pub fn encode_command(codec: u8, kind: u8, imei: Option<[u8; 8]>, payload: &[u8], out: &mut Vec<u8>) {
    let mut data = Vec::with_capacity(payload.len() + 16);
    data.extend_from_slice(&[codec, 1, kind]);
    let size = payload.len() + if imei.is_some() { 8 } else { 0 };
    data.extend_from_slice(&(size as u32).to_be_bytes());
    if let Some(imei) = imei {
        data.extend_from_slice(&imei);
    }
    data.extend_from_slice(payload);
    data.push(1);
    encode_packet(&data, out);
}

/// A UDP datagram (docs/protocols/teltonika.md §5): channel header, AVL packet id, IMEI, then a data field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<'a> {
    /// Echoed in the ack.
    pub packet_id: u16,
    /// The "not usable" byte; kept, ignored.
    pub packet_type: u8,
    /// Echoed in the ack.
    pub avl_packet_id: u8,
    pub imei: &'a str,
    /// Codec id … N2.
    pub data: &'a [u8],
}

impl<'a> UdpPacket<'a> {
    pub fn parse(datagram: &'a [u8]) -> Result<Self, &'static str> {
        let mut c = Cursor::new(datagram);
        let len = c.u16().ok_or("datagram shorter than its header")?;
        if usize::from(len) != c.remaining() {
            return Err("the length field does not match the datagram");
        }
        let packet_id = c.u16().ok_or("no packet id")?;
        let packet_type = c.u8().ok_or("no packet type")?;
        let avl_packet_id = c.u8().ok_or("no AVL packet id")?;
        let imei_len = c.u16().ok_or("no IMEI length")?;
        let imei = c.take(usize::from(imei_len)).ok_or("IMEI runs past the datagram")?;
        if imei.is_empty() || imei.len() > MAX_IMEI_LEN || !imei.iter().all(u8::is_ascii_digit) {
            return Err("the IMEI is not 1-32 digits");
        }
        let imei = std::str::from_utf8(imei).map_err(|_| "IMEI not ASCII")?;
        Ok(UdpPacket { packet_id, packet_type, avl_packet_id, imei, data: c.rest() })
    }

    /// Writes a datagram around `data` (for simulators and tests).
    pub fn encode(packet_id: u16, packet_type: u8, avl_packet_id: u8, imei: &str, data: &[u8], out: &mut Vec<u8>) {
        let len = 2 + 1 + 1 + 2 + imei.len() + data.len();
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&packet_id.to_be_bytes());
        out.push(packet_type);
        out.push(avl_packet_id);
        out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
        out.extend_from_slice(imei.as_bytes());
        out.extend_from_slice(data);
    }
}

/// The UDP ack: `00 05 | packet id | 01 | AVL packet id | accepted count`, echoing the
/// device's ids (Traccar sends packet id 0 instead; the wiki echoes it).
pub fn udp_ack(packet_id: u16, avl_packet_id: u8, accepted: u8) -> [u8; 7] {
    let [hi, lo] = packet_id.to_be_bytes();
    [0x00, 0x05, hi, lo, 0x01, avl_packet_id, accepted]
}

#[cfg(test)]
mod tests;
