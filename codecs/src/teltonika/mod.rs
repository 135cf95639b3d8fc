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
mod record;
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
use crate::wire::parse::{array, be_u16, be_u32, be_u64, be_u8, read, take, Short};
use nom::branch::alt;
use nom::combinator::{map, verify};

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
        // Field by field, so the error names the field that is missing.
        let missing = |what| move |Short| CommandError(what);
        let (codec, rest) = read(be_u8, data).map_err(missing("empty"))?;
        let (q1, rest) = read(be_u8, rest).map_err(missing("no quantity"))?;
        let (kind, rest) = read(be_u8, rest).map_err(missing("no type"))?;
        let (size, rest) = read(be_u32, rest).map_err(missing("no command size"))?;
        let (content, rest) = read(take(size), rest).map_err(missing("command size runs past the packet"))?;
        match read(be_u8, rest).map_err(missing("no closing quantity"))? {
            (_, [_, ..]) => return Err(CommandError("bytes after the closing quantity")),
            (q2, []) if q2 != q1 => return Err(CommandError("command quantities disagree")),
            _ => {}
        }
        let mut cmd = Command { codec, kind, timestamp_ms: None, imei: None, payload: content };
        match codec {
            CODEC_12 => {}
            CODEC_13 => {
                // The timestamp's width is not fixed in the field (docs/protocols/teltonika.md
                // §6): 8-byte milliseconds in some captures, 4-byte seconds in others. Take
                // the one that gives a plausible time; with neither, it is all payload.
                let ms = verify(be_u64, |ms: &u64| plausible_ms(*ms));
                let s = verify(map(be_u32, |s| u64::from(s) * 1000), |ms: &u64| plausible_ms(*ms));
                if let Ok((ms, payload)) = read(alt((ms, s)), content) {
                    (cmd.timestamp_ms, cmd.payload) = (Some(ms), payload);
                }
            }
            CODEC_14 => {
                let (imei, payload) = read(array::<8>, content).map_err(missing("codec 14 without an IMEI"))?;
                (cmd.imei, cmd.payload) = (Some(imei), payload);
            }
            CODEC_15 => {
                let (seconds, rest) = read(be_u32, content).map_err(missing("codec 15 without a time"))?;
                let (imei, payload) = read(array::<8>, rest).map_err(missing("codec 15 without an IMEI"))?;
                (cmd.timestamp_ms, cmd.imei, cmd.payload) = (Some(u64::from(seconds) * 1000), Some(imei), payload);
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
        let (len, rest) = read(be_u16, datagram).map_err(|Short| "datagram shorter than its header")?;
        if usize::from(len) != rest.len() {
            return Err("the length field does not match the datagram");
        }
        let ((packet_id, packet_type, avl_packet_id), rest) =
            read((be_u16, be_u8, be_u8), rest).map_err(|Short| "no packet id, type or AVL packet id")?;
        let (imei_len, rest) = read(be_u16, rest).map_err(|Short| "no IMEI length")?;
        let (imei, data) = read(take(imei_len), rest).map_err(|Short| "IMEI runs past the datagram")?;
        if imei.is_empty() || imei.len() > MAX_IMEI_LEN || !imei.iter().all(u8::is_ascii_digit) {
            return Err("the IMEI is not 1-32 digits");
        }
        let imei = std::str::from_utf8(imei).map_err(|_| "IMEI not ASCII")?;
        Ok(UdpPacket { packet_id, packet_type, avl_packet_id, imei, data })
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
