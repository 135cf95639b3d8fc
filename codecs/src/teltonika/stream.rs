//! Turns one Teltonika device's traffic into records and acks: the IMEI from the handshake
//! (TCP) or from each datagram (UDP), one record per AVL record, command responses, and the
//! count acks. Adjacent rejections are merged, so what comes out does not depend on how the
//! bytes were cut into reads.

use std::sync::Arc;

use super::avl::{AvlData, RecordView};
use super::frame::{frame_kind, TcpFrameKind, TeltonikaFramer, DEFAULT_LIMITS, HEADER_LEN};
use super::gh3000::{Gh3000Data, Gh3000Record};
use super::record::{answer, avl_message_type, command_record, fill_avl_record, gh3000_record, Answered, Context};
use super::{Command, UdpPacket, CODEC_12, CODEC_13, CODEC_14, CODEC_15, CODEC_16, CODEC_7, CODEC_8, CODEC_8E};
use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};
use crate::record::{IoBlock, IoElements, Kind, Protocol, Record};
use crate::stream::{
    drive, push_reply, AllowList, Downlink, DownlinkError, Driver, FrameHandler, FramedCommand, RecordDecoder,
    StreamEvent, Transport,
};

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
        let ctx = Context { device_id: self.imei.as_ref() };
        let seq = udp.map(|u| u32::from(u.avl_packet_id));
        let count = match codec {
            CODEC_8 | CODEC_8E | CODEC_16 => {
                let avl = AvlData::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                let (first, mut block) = (out.len(), IoBlock::new(avl.io_elements() as usize));
                for view in avl.records() {
                    // Filled where it lies in `out`, not built and then copied there.
                    let r = ctx.push(Kind::Position, avl_message_type(codec), out);
                    fill_avl_record(r, &view, &mut block);
                    r.seq = seq;
                }
                block.share(records_io(&mut out[first..]));
                avl.count
            }
            CODEC_12 | CODEC_13 | CODEC_14 | CODEC_15 => {
                let cmd = Command::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                out.push(StreamEvent::Record(command_record(&ctx, &cmd)));
                0
            }
            CODEC_7 => {
                let gh = Gh3000Data::parse(data).map_err(|e| Reject::new(RejectKind::Malformed, e.to_string()))?;
                for record in &gh.records {
                    let mut r = gh3000_record(&ctx, record);
                    r.seq = seq;
                    out.push(StreamEvent::Record(r));
                }
                gh.records.len() as u8
            }
            other => return Err(Reject::new(RejectKind::Unsupported, format!("unknown codec 0x{other:02x}"))),
        };
        if let Some(reply) = answer(Answered::Data { codec, count, udp }) {
            push_reply(out, reply);
        }
        Ok(())
    }

    /// One normalized record for one AVL record (docs/protocols/teltonika.md §3).
    pub fn avl_record(&self, v: &RecordView<'_>, codec: u8) -> Record {
        let mut r = Context { device_id: self.imei.as_ref() }.record(Kind::Position, avl_message_type(codec));
        let mut block = IoBlock::new(v.io_elements() as usize);
        fill_avl_record(&mut r, v, &mut block);
        block.share(r.attributes.io_mut().into_iter());
        r
    }

    /// One normalized record for one Codec 7 record (docs/protocols/teltonika.md §4.1).
    pub fn gh3000_record(&self, g: &Gh3000Record) -> Record {
        gh3000_record(&Context { device_id: self.imei.as_ref() }, g)
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
                    let mut r = Context { device_id: self.imei.as_ref() }.record(Kind::Login, "imei");
                    r.attributes.set("accepted", true);
                    out.push(StreamEvent::Record(r));
                }
                if let Some(reply) = answer(Answered::Handshake { accepted }) {
                    push_reply(out, reply);
                }
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

/// The IO elements of the records among `events`, for [`IoBlock::share`].
fn records_io(events: &mut [StreamEvent]) -> impl Iterator<Item = &mut IoElements> {
    events.iter_mut().filter_map(|e| match e {
        StreamEvent::Record(r) => r.attributes.io_mut(),
        _ => None,
    })
}
