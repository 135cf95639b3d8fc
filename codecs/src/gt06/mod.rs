//! GT06 / Concox (Jimi IoT) binary protocol (gt06.md): framing with strict CRC checks, the
//! message catalogue, acks, the 0x8A time reply and the 0x80 online command.
//!
//! ```text
//!  short frame  78 78 | L (u8)  | proto | content … | serial (u16) | CRC (u16) | 0D 0A
//!  long frame   79 79 | L (u16) | proto | content … | serial (u16) | CRC (u16) | 0D 0A
//!               start   L = 1 + content + 2 + 2      CRC-16/X-25 over L … serial
//! ```
//!
//! Two dialects carry no serial and no CRC and are accepted as devices send them (docs/protocols/gt06.md
//! §8; Traccar's frame tests):
//! * the Wi-Fi/LBS "count" frames 0x17 and 0x69, whose length byte is the number of access
//!   points: `78 78 n proto | BCD time 6 | n × (MAC 6, RSSI 1) | m | MCC 2 | MNC 1 |
//!   m × (LAC 2, CI 2, RSSI 1) | 0D 0A`;
//! * the GT02/GT03-era 0x10/0x11 fixes whose length byte counts the content only:
//!   `78 78 L proto | content (L bytes) | 0D 0A`.
//!
//! This module owns the wire format; what a message means for a record is in `record`.

mod frame;
mod message;
mod record;
mod stream;

#[cfg(test)]
mod tests;

pub use frame::{FrameShape, Gt06Framer, Integrity, DEFAULT_LIMITS};
pub use message::{
    AlarmCode, Az735Report, Cell, CommandReply, CurrentPosition, Gps8Report, GpsFix, Heartbeat, Info, LbsReport, Login,
    Lw4gReport, Message, Module, Sr411Report, StatusBlock, StatusFixReport, WifiAp, WifiLbs, X1Report,
};
pub use stream::{CrcPolicy, Gt06Decoder, Gt06Options};

use crate::wire::checksum::{TrailingCrc16, CRC16_X25};

/// Where a frame's header fields sit (§1), named once (as smoltcp's `mod field`): the length
/// after the start marker, one byte in a short frame and two in a long one, and the protocol
/// number after it.
pub(crate) mod field {
    /// The first byte of the length field.
    pub const LENGTH: usize = 2;
    /// Start (2) + length (1): where a short frame's protocol number is.
    pub const SHORT_HEADER: usize = 3;
    /// Start (2) + length (2): where a long frame's protocol number is.
    pub const LONG_HEADER: usize = 4;

    /// Where the protocol number is.
    #[inline]
    pub fn header(long: bool) -> usize {
        if long {
            LONG_HEADER
        } else {
            SHORT_HEADER
        }
    }

    /// The length field of a frame that starts `b`; `None` when `b` ends inside it.
    #[inline]
    pub fn length(b: &[u8], long: bool) -> Option<usize> {
        if b.len() < header(long) {
            return None;
        }
        Some(if long { usize::from(u16::from_be_bytes([b[LENGTH], b[LENGTH + 1]])) } else { usize::from(b[LENGTH]) })
    }
}

/// `78 78`: a frame with a one-byte length.
pub const SHORT_START: [u8; 2] = [0x78, 0x78];
/// `79 79`: a frame with a two-byte length (command replies, information, long vendor data).
pub const LONG_START: [u8; 2] = [0x79, 0x79];
/// Every frame ends with CR LF.
pub const STOP: [u8; 2] = [0x0D, 0x0A];
/// Protocol number + serial + CRC: what a length field counts besides the content.
pub const LENGTH_OVERHEAD: usize = 5;

pub const LOGIN: u8 = 0x01;
pub const GPS: u8 = 0x10;
pub const GPS_LBS_6: u8 = 0x11;
pub const GPS_LBS: u8 = 0x12;
pub const HEARTBEAT: u8 = 0x13;
pub const COMMAND_REPLY: u8 = 0x15;
pub const ALARM: u8 = 0x16;
pub const WIFI: u8 = 0x17;
pub const LBS_EXTEND: u8 = 0x18;
pub const LBS_STATUS: u8 = 0x19;
pub const GPS_PHONE: u8 = 0x1A;
/// JI09's fix followed by a block this codec keeps as sent (`extra`).
pub const GPS_LBS_EXTEND: u8 = 0x1E;
pub const COMMAND_REPLY_LONG: u8 = 0x21;
pub const GPS_LBS_2: u8 = 0x22;
pub const HEARTBEAT_2: u8 = 0x23;
pub const ALARM_2: u8 = 0x26;
pub const ALARM_MULTI_FENCE: u8 = 0x27;
pub const LBS_MULTIPLE: u8 = 0x28;
pub const ADDRESS_REQUEST: u8 = 0x2A;
pub const LBS_WIFI: u8 = 0x2C;
/// Cells in one of three layouts, told apart by length (docs/protocols/gt06.md §5.9).
pub const LBS_MULTIPLE_3: u8 = 0x24;
pub const GPS_LBS_4: u8 = 0x2D;
pub const GPS_LBS_5: u8 = 0x31;
/// Modules (type, length, value) of Jimi's 4G devices, fix among them (§5.11).
pub const GPS_MODULAR: u8 = 0x70;
/// AZ735 (long frames): a fix and a cell with their length bytes, then a status (§5.12).
/// In short frames (the SL4X's): a fix, a counted cell, the status block, an altitude (§5.13).
pub const AZ735_GPS: u8 = 0x32;
pub const AZ735_ALARM: u8 = 0x33;
/// The X1's report: a fix, odometer, a cell, driver, voltages, ports and ADCs.
pub const X1_GPS: u8 = 0x34;
/// Jimi's 4G heartbeat: the status block, a language, then modules; or, from the VL103, a
/// fix and a cell (§5.14).
pub const STATUS_2: u8 = 0x36;
pub const GPS_LBS_3: u8 = 0x37;
/// A fix, the upload mode and re-upload flag, and a cell whose type byte sets its widths (§5.15).
pub const GPS_LBS_8: u8 = 0x38;
pub const WIFI_2: u8 = 0x69;
pub const ONLINE_COMMAND: u8 = 0x80;
pub const TIME_REQUEST: u8 = 0x8A;
pub const INFO: u8 = 0x94;
pub const ALARM_JC: u8 = 0x95;
pub const ADDRESS_REPLY_EN: u8 = 0x97;
pub const GPS_4G: u8 = 0xA0;
pub const LBS_4G: u8 = 0xA1;
/// 4G cells and Wi-Fi; or, 59 bytes long, the LW4G's fix, cell and status (§5.10).
pub const WIFI_LBS_4G: u8 = 0xA2;
pub const ALARM_4G_MULTI_FENCE: u8 = 0xA4;
/// The GK310's alarm without a fix: a 4G cell and the status block (§5.16).
pub const LBS_ALARM_4G: u8 = 0xA5;
/// The GK310's address request without a fix: a 4G cell and the number to answer (§5.16).
pub const LBS_ADDRESS_4G: u8 = 0xA7;
/// What a device passes on from its serial port: a type byte, then the bytes (§5.16).
pub const SERIAL: u8 = 0x9B;

/// The CRC a frame carries: CRC-16/X-25 over everything from the length field to the serial.
pub fn frame_crc(length_to_serial: &[u8]) -> u16 {
    CRC16_X25.checksum(length_to_serial)
}

/// A frame with integrity checks done, its parts borrowed from the wire bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// `79 79` framing.
    pub long: bool,
    pub protocol: u8,
    /// The length field as sent (a count, in the Wi-Fi count frames).
    pub length_field: usize,
    pub content: &'a [u8],
    /// Absent in the CRC-less dialects.
    pub serial: Option<u16>,
    pub integrity: Integrity,
}

impl<'a> Frame<'a> {
    /// Splits a frame exactly as [`Gt06Framer`] returned it (start to stop bytes inclusive)
    /// with the shape the framer reported. `None` if `bytes` cannot have that shape.
    #[inline]
    pub fn split(bytes: &'a [u8], shape: FrameShape) -> Option<Self> {
        let long = bytes.starts_with(&LONG_START);
        let header = field::header(long);
        let protocol = *bytes.get(header)?;
        let length_field = field::length(bytes, long)?;
        let body_end = bytes.len().checked_sub(STOP.len())?;
        if body_end < header + 1 {
            return None;
        }
        match shape.integrity {
            Integrity::Absent | Integrity::Unchecked => Some(Frame {
                long,
                protocol,
                length_field,
                content: &bytes[header + 1..body_end],
                serial: None,
                integrity: shape.integrity,
            }),
            integrity => {
                let serial_at = body_end.checked_sub(4).filter(|&s| s > header)?;
                Some(Frame {
                    long,
                    protocol,
                    length_field,
                    content: &bytes[header + 1..serial_at],
                    serial: Some(u16::from_be_bytes([bytes[serial_at], bytes[serial_at + 1]])),
                    integrity,
                })
            }
        }
    }
}

/// Appends one frame: start, length, protocol, content, serial, CRC, stop. A short frame is
/// written when the length fits one byte and `long` is not asked for. `None` if the content
/// is too long for any frame.
pub fn encode_frame(out: &mut Vec<u8>, long: bool, protocol: u8, content: &[u8], serial: u16) -> Option<()> {
    let length = content.len().checked_add(LENGTH_OVERHEAD)?;
    // Room for the whole frame at once (start, length, protocol, serial, CRC, stop: at most
    // 11 bytes besides the content), so the pieces below never reallocate one by one.
    out.reserve(content.len() + 11);
    let start = out.len();
    if long || length > usize::from(u8::MAX) {
        let length = u16::try_from(length).ok()?;
        out.extend_from_slice(&LONG_START);
        out.extend_from_slice(&length.to_be_bytes());
    } else {
        out.extend_from_slice(&SHORT_START);
        out.push(length as u8);
    }
    out.push(protocol);
    out.extend_from_slice(content);
    out.extend_from_slice(&serial.to_be_bytes());
    let crc = frame_crc(&out[start + 2..]);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&STOP);
    Some(())
}

/// The generic server ack: the received protocol number and serial echoed in an empty frame
/// (`78 78 05 proto SN CRC 0D 0A`; a long frame answers a long frame).
pub fn ack(long: bool, protocol: u8, serial: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    ack_into(&mut out, long, protocol, serial);
    out
}

/// The CRC of a short-form ack: the length, then protocol and serial.
const SHORT_ACK_CRC: TrailingCrc16<3> = TrailingCrc16::new(&crc::CRC_16_IBM_SDLC, &[LENGTH_OVERHEAD as u8]);
/// The CRC of a long-form ack: the two-byte length, then protocol and serial.
const LONG_ACK_CRC: TrailingCrc16<3> = TrailingCrc16::new(&crc::CRC_16_IBM_SDLC, &[0, LENGTH_OVERHEAD as u8]);

/// Appends the generic ack (as [`ack`]) to `out`: the bytes [`encode_frame`] writes for an
/// empty frame, built from the values rather than written and read back for the CRC.
#[inline]
pub fn ack_into(out: &mut Vec<u8>, long: bool, protocol: u8, serial: u16) {
    let (bytes, len) = ack_bytes(long, protocol, serial);
    out.extend_from_slice(&bytes[..len]);
}

/// The generic ack as a [`Reply`](crate::Reply), held inline.
#[inline]
pub(crate) fn ack_reply(long: bool, protocol: u8, serial: u16) -> crate::Reply {
    let (bytes, len) = ack_bytes(long, protocol, serial);
    let mut reply = crate::Reply::from(bytes);
    reply.truncate(len);
    reply
}

/// The generic ack's bytes and how many of them there are (11 long, 10 short).
#[inline]
fn ack_bytes(long: bool, protocol: u8, serial: u16) -> ([u8; 11], usize) {
    let [s0, s1] = serial.to_be_bytes();
    let length = LENGTH_OVERHEAD as u8;
    if long {
        let [c0, c1] = LONG_ACK_CRC.checksum([protocol, s0, s1]).to_be_bytes();
        let [a, b] = LONG_START;
        ([a, b, 0, length, protocol, s0, s1, c0, c1, STOP[0], STOP[1]], 11)
    } else {
        let [c0, c1] = SHORT_ACK_CRC.checksum([protocol, s0, s1]).to_be_bytes();
        let [a, b] = SHORT_START;
        ([a, b, length, protocol, s0, s1, c0, c1, STOP[0], STOP[1], 0], 10)
    }
}

/// The 0x8A reply: the server's UTC time as YY MM DD hh mm ss (docs/protocols/gt06.md §5.5), echoing the
/// request's serial. `None` for a year outside 2000–2255.
pub fn time_reply(now: crate::time::Timestamp, serial: u16) -> Option<Vec<u8>> {
    let (date, h, m, s) = now.date_time();
    let year = u8::try_from(date.year().checked_sub(2000)?).ok()?;
    let mut out = Vec::with_capacity(16);
    encode_frame(&mut out, false, TIME_REQUEST, &[year, date.month(), date.day(), h, m, s], serial)?;
    Some(out)
}

/// The reply to a Wi-Fi/LBS count frame: its protocol number and BCD time echoed in a
/// CRC-less frame with length 0 (the form those devices send and expect).
pub fn wifi_count_reply(protocol: u8, bcd_time: [u8; 6]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&SHORT_START);
    out.push(0);
    out.push(protocol);
    out.extend_from_slice(&bcd_time);
    out.extend_from_slice(&STOP);
    out
}

/// The answer to an address request when there is no geocoder: a long 0x97 frame with the
/// text `NA&&NA&&0##`, server flag 0 and serial 0 (what fielded servers send; docs/protocols/gt06.md §8).
pub fn no_address_reply() -> Vec<u8> {
    const TEXT: &[u8] = b"NA&&NA&&0##";
    let mut content = Vec::with_capacity(5 + TEXT.len());
    content.push(TEXT.len() as u8);
    content.extend_from_slice(&0u32.to_be_bytes());
    content.extend_from_slice(TEXT);
    let mut out = Vec::with_capacity(content.len() + 10);
    encode_frame(&mut out, true, ADDRESS_REPLY_EN, &content, 0).expect("fits");
    out
}

/// Language field values of the 0x80 command.
pub const LANGUAGE_CHINESE: u16 = 0x0001;
pub const LANGUAGE_ENGLISH: u16 = 0x0002;

/// The 0x80 online command (docs/protocols/gt06.md §6): command length (server flag + text, the language
/// field not counted), server flag, ASCII text, optional language, server serial. `None` if
/// the text is not ASCII or too long for a short frame.
pub fn encode_command(server_flag: u32, command: &str, language: Option<u16>, serial: u16) -> Option<Vec<u8>> {
    if !command.is_ascii() {
        return None;
    }
    let command_len = u8::try_from(4 + command.len()).ok()?;
    let mut content = Vec::with_capacity(usize::from(command_len) + 3);
    content.push(command_len);
    content.extend_from_slice(&server_flag.to_be_bytes());
    content.extend_from_slice(command.as_bytes());
    if let Some(lang) = language {
        content.extend_from_slice(&lang.to_be_bytes());
    }
    if content.len() + LENGTH_OVERHEAD > usize::from(u8::MAX) {
        return None;
    }
    let mut out = Vec::with_capacity(content.len() + 10);
    encode_frame(&mut out, false, ONLINE_COMMAND, &content, serial)?;
    Some(out)
}

/// The IMEI of a login: 16 BCD nibbles with a leading `0` pad, so the last 15 digits. Clones
/// that send non-decimal nibbles keep all 16 hex digits as their id (docs/protocols/gt06.md §8).
pub fn imei_from_bcd(bytes: &[u8; 8]) -> String {
    let mut digits = String::with_capacity(16);
    if crate::wire::bcd::decode_digits(bytes, &mut digits).is_some() {
        digits.remove(0);
        digits
    } else {
        crate::wire::hex::to_hex(bytes)
    }
}

/// The 8-byte BCD terminal id for a 15- (or 16-) digit IMEI.
pub fn imei_to_bcd(imei: &str) -> Option<[u8; 8]> {
    let mut out = [0u8; 8];
    crate::wire::bcd::encode_digits(imei, &mut out)?;
    Some(out)
}
