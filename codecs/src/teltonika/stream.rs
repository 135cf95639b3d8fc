//! Turns one Teltonika device's traffic into records and acks: the IMEI from the handshake
//! (TCP) or from each datagram (UDP), one record per AVL record, command responses, and the
//! count acks. Adjacent rejections are merged, so what comes out does not depend on how the
//! bytes were cut into reads.

use std::sync::Arc;

use super::avl::{AvlData, IoValue, RecordView};
use super::frame::{frame_kind, TcpFrameKind, TeltonikaFramer, DEFAULT_LIMITS, HEADER_LEN};
use super::gh3000::{Gh3000Data, Gh3000Record};
use super::{
    tcp_ack, udp_ack, Command, UdpPacket, CODEC_12, CODEC_13, CODEC_14, CODEC_15, CODEC_16, CODEC_7, CODEC_8, CODEC_8E,
    IMEI_ACCEPT, IMEI_REJECT,
};
use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};
use crate::record::{IoAttributeValue, IoElements, Kind, Protocol, Record, Timestamp};
use crate::stream::{
    drive, push_record, AllowList, Downlink, DownlinkError, Driver, FrameHandler, FramedCommand, RecordDecoder,
    StreamEvent, Transport,
};
use crate::wire::hex::to_hex;

/// How a [`TeltonikaDecoder`] reads its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeltonikaOptions {
    pub transport: Transport,
    pub limits: Limits,
    /// The IMEIs answered `01` at the handshake (and taken from UDP channel headers); the
    /// others get `00` and the stream ends. `None` lets every device in.
    pub allow: Option<AllowList>,
}

impl Default for TeltonikaOptions {
    fn default() -> Self {
        TeltonikaOptions { transport: Transport::Tcp, limits: DEFAULT_LIMITS, allow: None }
    }
}

/// One decoder per TCP connection or UDP peer.
pub struct TeltonikaDecoder {
    transport: Transport,
    driver: Driver<TeltonikaFramer>,
    imei: Option<Arc<str>>,
    /// The handshake was refused: nothing after it is decoded.
    refused: bool,
    allow: Option<AllowList>,
}

impl Default for TeltonikaDecoder {
    fn default() -> Self {
        TeltonikaDecoder::new(TeltonikaOptions::default())
    }
}

impl std::fmt::Debug for TeltonikaDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeltonikaDecoder").field("transport", &self.transport).finish_non_exhaustive()
    }
}

/// The record's `message_type` for an AVL codec.
fn avl_message_type(codec: u8) -> &'static str {
    match codec {
        CODEC_8 => "0x08",
        CODEC_8E => "0x8e",
        _ => "0x10",
    }
}

impl TeltonikaDecoder {
    pub fn new(options: TeltonikaOptions) -> Self {
        TeltonikaDecoder {
            transport: options.transport,
            driver: Driver::new(TeltonikaFramer::new(options.limits)),
            imei: None,
            refused: false,
            allow: options.allow,
        }
    }

    pub fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    fn record(&self, kind: Kind, message_type: &'static str) -> Record {
        let mut r = Record::new(Protocol::Teltonika, kind, message_type);
        r.device_id.clone_from(&self.imei);
        r
    }

    /// Records (and the ack) for one data field; `Err` when it is not valid. Like every
    /// frame handler here, it pushes nothing before it can no longer fail, so a bad frame
    /// leaves no partial events behind.
    fn data_field(
        &mut self,
        data: &[u8],
        udp: Option<&UdpPacket<'_>>,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Reject> {
        let codec = *data.first().ok_or_else(|| Reject::new(RejectKind::Malformed, "empty data field"))?;
        match codec {
            CODEC_8 | CODEC_8E | CODEC_16 => {
                let avl = AvlData::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                for view in avl.records() {
                    // Filled where it lies in `out`, not built and then copied there.
                    let r = push_record(out, self.record(Kind::Position, avl_message_type(codec)));
                    self.fill_avl_record(r, &view);
                    if let Some(u) = udp {
                        r.seq = Some(u32::from(u.avl_packet_id));
                    }
                }
                out.push(StreamEvent::Reply(match udp {
                    Some(u) => udp_ack(u.packet_id, u.avl_packet_id, avl.count).into(),
                    None => tcp_ack(u32::from(avl.count)).into(),
                }));
                Ok(())
            }
            CODEC_12 | CODEC_13 | CODEC_14 | CODEC_15 => {
                let cmd = Command::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                // Command responses are never acked (docs/protocols/teltonika.md §6).
                out.push(StreamEvent::Record(self.command_record(&cmd)));
                Ok(())
            }
            CODEC_7 => {
                let gh = Gh3000Data::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                for record in &gh.records {
                    let mut r = self.gh3000_record(record);
                    if let Some(u) = udp {
                        r.seq = Some(u32::from(u.avl_packet_id));
                    }
                    out.push(StreamEvent::Record(r));
                }
                let count = gh.records.len() as u8;
                out.push(StreamEvent::Reply(match udp {
                    Some(u) => udp_ack(u.packet_id, u.avl_packet_id, count).into(),
                    None => tcp_ack(u32::from(count)).into(),
                }));
                Ok(())
            }
            other => Err(Reject::new(RejectKind::Unsupported, format!("unknown codec 0x{other:02x}"))),
        }
    }

    fn command_record(&self, cmd: &Command<'_>) -> Record {
        let message_type = match cmd.codec {
            CODEC_12 => "0x0c",
            CODEC_13 => "0x0d",
            CODEC_14 => "0x0e",
            _ => "0x0f",
        };
        let mut r = self.record(Kind::CommandResponse, message_type);
        r.attributes.set("command_type", cmd.kind);
        if let Some(ms) = cmd.timestamp_ms {
            r.attributes.set("message_time", Timestamp::from_unix_ms(ms as i64, cmd.codec == CODEC_13).to_string());
        }
        if let Some(imei) = &cmd.imei {
            r.attributes.set("imei", super::imei_digits(imei));
        }
        // Responses are text (SMS-command syntax); anything else is kept as hex.
        match std::str::from_utf8(cmd.payload) {
            Ok("") => {}
            Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t')) => {
                r.attributes.set("text", text.to_owned());
            }
            _ => r.attributes.set("data", to_hex(cmd.payload)),
        }
        r
    }

    /// One normalized record for one AVL record (docs/protocols/teltonika.md §3).
    pub fn avl_record(&self, v: &RecordView<'_>, codec: u8) -> Record {
        let mut r = self.record(Kind::Position, avl_message_type(codec));
        self.fill_avl_record(&mut r, v);
        r
    }

    /// What [`TeltonikaDecoder::avl_record`] sets, on a record made for it.
    fn fill_avl_record(&self, r: &mut Record, v: &RecordView<'_>) {
        r.fix_time = i64::try_from(v.timestamp_ms).ok().map(|ms| Timestamp::from_unix_ms(ms, true));
        // No validity flag on the wire: satellites in use is the device's own statement.
        r.valid = Some(v.gps.satellites > 0);
        if !v.gps.is_no_fix_placeholder() {
            r.latitude = Some(v.gps.latitude());
            r.longitude = Some(v.gps.longitude());
            r.altitude_m = Some(f64::from(v.gps.altitude_m));
            r.course_deg = Some(f64::from(v.gps.angle_deg));
            r.speed_kmh = Some(f64::from(v.gps.speed_kmh));
        }
        r.satellites = Some(u32::from(v.gps.satellites));
        r.attributes.set("priority", v.priority);
        r.attributes.set("event_io_id", v.event_io_id);
        r.attributes.set_opt("generation_type", v.generation_type);
        // Collected, then kept typed (`IoElements`): one vector, where a JSON map cost a
        // string per id and its nodes.
        let mut io: Vec<(u16, IoAttributeValue)> = Vec::with_capacity(v.io_elements() as usize);
        let (mut iccid1, mut iccid2) = (None, None);
        v.for_each_io(|e| {
            let value = match e.value {
                IoValue::Bytes(b) => IoAttributeValue::Hex(to_hex(b)),
                other => IoAttributeValue::Unsigned(other.as_u64().unwrap_or(0)),
            };
            io.push((e.id, value));
            // The well-known ids of the FMB/FMC/FMM families (docs/protocols/teltonika.md §3.2), named only
            // when the value has the width the AVL table gives them: other families reuse
            // ids. The raw map above stays complete whatever is named here.
            match (e.id, e.value) {
                (239, IoValue::U8(n)) => r.attributes.set("ignition", n != 0),
                (240, IoValue::U8(n)) => r.attributes.set("movement", n != 0),
                (66, IoValue::U16(n)) => r.attributes.set("power_v", f64::from(n) / 1000.0),
                (67, IoValue::U16(n)) => r.attributes.set("battery_v", f64::from(n) / 1000.0),
                (16, IoValue::U32(n)) => r.attributes.set("odometer_m", n),
                (199, IoValue::U32(n)) => r.attributes.set("trip_odometer_m", n),
                (21, IoValue::U8(n)) => r.attributes.set("gsm_signal", n),
                (182, IoValue::U16(n)) => r.hdop = Some(f64::from(n) / 10.0),
                (181, IoValue::U16(n)) => r.attributes.set("pdop", f64::from(n) / 10.0),
                (11, IoValue::U64(n)) => iccid1 = Some(n),
                (14, IoValue::U64(n)) => iccid2 = Some(n),
                // 0 means no key is present.
                (78, IoValue::U64(n)) if n != 0 => r.attributes.set("ibutton", format!("{n:016x}")),
                _ => {}
            }
        });
        // The ICCID comes in two 8-byte halves, each a decimal number.
        match (iccid1, iccid2) {
            (Some(a), Some(b)) => r.attributes.set("iccid", format!("{a}{b}")),
            (Some(a), None) => r.attributes.set("iccid", a.to_string()),
            _ => {}
        }
        // A repeated id keeps its last value, as inserting one by one into a map did.
        r.attributes.set_io(IoElements::new(io));
    }

    /// One normalized record for one Codec 7 record (docs/protocols/teltonika.md §4.1): a
    /// position when it carries coordinates, a status otherwise.
    pub fn gh3000_record(&self, g: &Gh3000Record) -> Record {
        let location = g.location.unwrap_or_default();
        let kind = if location.coordinates.is_some() { Kind::Position } else { Kind::Status };
        let mut r = self.record(kind, "0x07");
        r.fix_time = i64::try_from(g.timestamp_ms()).ok().map(|ms| Timestamp::from_unix_ms(ms, false));
        if let Some((lat, lon)) = location.coordinates {
            r.latitude = Some(f64::from(lat));
            r.longitude = Some(f64::from(lon));
        }
        if let Some(sats) = location.satellites {
            // No validity flag: the GH3000 counts a fix from three satellites.
            r.valid = Some(sats >= 3);
            r.satellites = Some(u32::from(sats));
        }
        r.altitude_m = location.altitude_m.map(f64::from);
        r.course_deg = location.angle_deg();
        r.speed_kmh = location.speed_kmh.map(f64::from);
        if let Some((lac, ci)) = location.cell {
            r.attributes.set("cell_id", ci);
            r.attributes.set("lac", lac);
        }
        r.attributes.set_opt("gsm_signal", location.signal);
        r.attributes.set_opt("operator", location.operator);
        r.attributes.set("priority", g.priority());
        let io: Vec<(u16, IoAttributeValue)> =
            g.io.iter()
                .flatten()
                .flatten()
                .map(|&(id, v)| (u16::from(id), IoAttributeValue::Unsigned(u64::from(v))))
                .collect();
        r.attributes.set_io(IoElements::new(io));
        r
    }

    fn tcp_frame(&mut self, frame: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Reject> {
        match frame_kind(frame) {
            TcpFrameKind::KeepAlive => Ok(()),
            TcpFrameKind::Imei => {
                // Digits only (the framer checked), so this is valid UTF-8.
                let imei = std::str::from_utf8(&frame[2..]).unwrap_or_default();
                let accepted = self.allow.as_ref().is_none_or(|allow| allow.allows(imei));
                self.imei = Some(imei.into());
                self.refused = !accepted;
                if accepted {
                    let mut r = self.record(Kind::Login, "imei");
                    r.attributes.set("accepted", true);
                    out.push(StreamEvent::Record(r));
                }
                out.push(StreamEvent::Reply([if accepted { IMEI_ACCEPT } else { IMEI_REJECT }].into()));
                Ok(())
            }
            TcpFrameKind::Packet if self.refused => {
                Err(Reject::new(RejectKind::Unsupported, "packet from a device whose handshake was refused"))
            }
            TcpFrameKind::Packet => {
                let data = &frame[HEADER_LEN..frame.len() - 4];
                self.data_field(data, None, out)
            }
        }
    }

    fn datagram(&mut self, datagram: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Reject> {
        if datagram.starts_with(&[0, 0, 0, 0]) {
            // No UDP channel header starts so: its length field is never zero.
            return self.packet_datagram(datagram, out);
        }
        let packet = UdpPacket::parse(datagram).map_err(|e| Reject::new(RejectKind::Malformed, e))?;
        if self.allow.as_ref().is_some_and(|allow| !allow.allows(packet.imei)) {
            return Err(Reject::new(RejectKind::Unsupported, "datagram from a device that is not allowed"));
        }
        if self.imei.as_deref() != Some(packet.imei) {
            self.imei = Some(packet.imei.into());
        }
        self.data_field(packet.data, Some(&packet), out)
    }
}

impl TeltonikaDecoder {
    /// A whole TCP packet (preamble, length, data, CRC) sent as one datagram. Teltonika's
    /// wiki has UDP commands sent "the same exact way as TCP commands", which is how this
    /// decoder writes them, so a device may answer in that form too; the channel-header form
    /// (`UdpPacket`) is read as well. Only command packets are taken so: AVL data in this form
    /// has no channel packet id to acknowledge, and records need the IMEI that a channel
    /// header carries and this form does not.
    fn packet_datagram(&mut self, datagram: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Reject> {
        // The TCP framer's own rules (length bounds, CRC), on a framer of its own: a datagram
        // is complete, so nothing carries over from one to the next.
        match TeltonikaFramer::default().next_frame_at_end(datagram) {
            Framing::Frame { len, .. } if len == datagram.len() && frame_kind(datagram) == TcpFrameKind::Packet => {}
            Framing::Frame { len, .. } => {
                return Err(Reject::new(
                    RejectKind::Length,
                    format!("a {}-byte datagram holding a {len}-byte packet", datagram.len()),
                ))
            }
            Framing::Rejected { reason, .. } | Framing::Fatal(reason) => return Err(reason),
            Framing::Incomplete { .. } => {
                return Err(Reject::new(RejectKind::Truncated, "datagram ends inside a packet"))
            }
        }
        let data = &datagram[HEADER_LEN..datagram.len() - 4];
        if !matches!(data.first(), Some(&(CODEC_12 | CODEC_13 | CODEC_14 | CODEC_15))) {
            return Err(Reject::new(
                RejectKind::Unsupported,
                "AVL data over UDP comes in the UDP channel header, not in TCP framing",
            ));
        }
        if self.imei.is_none() {
            return Err(Reject::new(
                RejectKind::Unsupported,
                "a command packet from a UDP peer that has not sent its IMEI in a channel header",
            ));
        }
        self.data_field(data, None, out)
    }
}

impl RecordDecoder for TeltonikaDecoder {
    fn refused(&self) -> bool {
        self.refused
    }

    /// A Codec 12 command. Its response (Codec 12, type 0x06) carries no reference to the
    /// command, so the response record does not name it. Over UDP the packet is the same
    /// (Teltonika's wiki: "UDP commands are sent the same exact way as TCP commands"); the
    /// gateway sends it to the address the device last wrote from.
    fn command(&mut self, command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        let Downlink::Text(text) = command else {
            return Err(DownlinkError::Unsupported("a JT808 command for a Teltonika device"));
        };
        if self.imei.is_none() || self.refused {
            return Err(DownlinkError::NotReady);
        }
        if text.is_empty() || u32::try_from(text.len()).is_err() {
            return Err(DownlinkError::Invalid("a command is 1 to 2^32-1 bytes of text".into()));
        }
        let mut out = Vec::with_capacity(text.len() + 20);
        super::encode_command(CODEC_12, super::TYPE_COMMAND, None, text.as_bytes(), &mut out);
        Ok(FramedCommand { bytes: out, answer: None })
    }

    fn protocol(&self) -> Protocol {
        Protocol::Teltonika
    }

    fn take_frame_count(&mut self) -> u32 {
        self.driver.take_frames()
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        if self.transport == Transport::Tcp {
            return drive(self, buf, at_end, out);
        }
        // Each call is one datagram (UDP has no stream to resynchronise).
        if buf.is_empty() {
            return 0;
        }
        let at = self.driver.offset();
        let taken = match self.datagram(buf, out) {
            Ok(()) => 1,
            Err(reason) => {
                out.push(StreamEvent::Rejected { offset: at, len: buf.len(), reason });
                0
            }
        };
        self.driver.took_whole(buf.len(), taken);
        buf.len()
    }
}

impl FrameHandler for TeltonikaDecoder {
    type Framer = TeltonikaFramer;
    const PROTOCOL: &'static str = "Teltonika";

    fn driver(&mut self) -> &mut Driver<TeltonikaFramer> {
        &mut self.driver
    }

    #[inline]
    fn frame(&mut self, frame: &[u8], _at: u64, _consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
        self.tcp_frame(frame, out).map(|()| 1)
    }

    /// The framer rejects junk, and a header with an impossible length and what follows
    /// it, one byte at a time.
    fn merges(reason: &Reject, len: usize) -> bool {
        len == 1 && matches!(reason.kind, RejectKind::Garbage | RejectKind::Length)
    }
}
