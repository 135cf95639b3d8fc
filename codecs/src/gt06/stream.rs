//! Turns one GT06 connection's bytes into records and replies: the IMEI and time zone from
//! the login, one record per message, the acks the protocol requires (docs/protocols/gt06.md §4) (after the records, so the
//! gateway sends them only once the sink has them), the 0x8A time reply, and 0x80 commands
//! with their replies matched by server flag.

use std::sync::Arc;

use super::frame::{FrameShape, Gt06Framer, Integrity};
use super::message::Message;
use super::record::{answer, record, Context};
use super::*;
use crate::framing::{Limits, Reject, RejectKind};
use crate::record::{Protocol, Timestamp};
use crate::stream::{
    drive, push_reply, AnswerMatch, Downlink, DownlinkError, Driver, FrameHandler, FramedCommand, RecordDecoder,
    StreamEvent,
};

/// What to do with a frame whose CRC is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrcPolicy {
    /// Reject it (the default, and what the Concox documents ask for).
    #[default]
    Strict,
    /// Decode it and say so (`crc_ok: false`), for devices known to be sloppy.
    Lenient,
}

impl std::str::FromStr for CrcPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(CrcPolicy::Strict),
            "lenient" => Ok(CrcPolicy::Lenient),
            _ => Err(format!("unknown CRC policy {s:?} (expected strict or lenient)")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gt06Options {
    pub crc: CrcPolicy,
    pub limits: Limits,
}

impl Default for Gt06Options {
    fn default() -> Self {
        Gt06Options { crc: CrcPolicy::Strict, limits: DEFAULT_LIMITS }
    }
}

/// Commands awaiting a reply, per connection: enough for an operator's burst, bounded so a
/// device that never answers cannot grow it.
const MAX_PENDING_COMMANDS: usize = 32;

/// One decoder per TCP connection.
#[derive(Debug)]
pub struct Gt06Decoder {
    driver: Driver<Gt06Framer>,
    imei: Option<Arc<str>>,
    /// From the login's time-zone extension; applies to the v1 types' local times.
    utc_offset_minutes: i32,
    now: Option<Timestamp>,
    next_server_flag: u32,
    next_serial: u16,
    commands: Vec<(u32, String)>,
}

impl Default for Gt06Decoder {
    fn default() -> Self {
        Gt06Decoder::new(Gt06Options::default())
    }
}

impl Gt06Decoder {
    pub fn new(options: Gt06Options) -> Self {
        Gt06Decoder {
            driver: Driver::new(Gt06Framer::new(options.limits, options.crc == CrcPolicy::Lenient)),
            imei: None,
            utc_offset_minutes: 0,
            now: None,
            next_server_flag: 1,
            next_serial: 1,
            commands: Vec::new(),
        }
    }

    pub fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    /// The 0x80 online command for this device: a fresh server flag (echoed by the device's
    /// 0x15/0x21 reply, which then names the command) and serial. `None` if the text is not
    /// ASCII or too long for a frame.
    pub fn command_frame(&mut self, text: &str, language: Option<u16>) -> Option<Vec<u8>> {
        let flag = self.next_server_flag;
        let bytes = encode_command(flag, text, language, self.next_serial)?;
        self.next_server_flag = self.next_server_flag.wrapping_add(1).max(1);
        self.next_serial = self.next_serial.wrapping_add(1);
        if self.commands.len() == MAX_PENDING_COMMANDS {
            self.commands.remove(0);
        }
        self.commands.push((flag, text.to_owned()));
        Some(bytes)
    }

    /// What a message changes in the session, before it is recorded: a login names the
    /// device and its zone, a command reply takes its command off the pending list (the
    /// command's text, for the record).
    fn settle(&mut self, message: &Message<'_>) -> Option<String> {
        match message {
            Message::Login(login, _) => {
                self.imei = Some(login.imei().into());
                // A new login starts over: UTC unless this one states a zone.
                self.utc_offset_minutes = login.utc_offset_minutes().unwrap_or(0);
                None
            }
            Message::CommandReply(reply) => {
                let i = self.commands.iter().position(|(flag, _)| *flag == reply.server_flag)?;
                Some(self.commands.remove(i).1)
            }
            _ => None,
        }
    }

    /// The records and replies for one frame; pushes nothing when it fails.
    fn decode_frame(&mut self, bytes: &[u8], shape: FrameShape, out: &mut Vec<StreamEvent>) -> Result<(), Reject> {
        let frame =
            Frame::split(bytes, shape).ok_or_else(|| Reject::new(RejectKind::Malformed, "frame too short to split"))?;
        // A frame whose CRC proves it is what the device sent, in a layout this codec does not
        // know for its protocol number (a vendor's reuse of the number), is kept as an unknown
        // message, never an error.
        let (message, layout_error) = match Message::parse(&frame) {
            Ok(m) => (m, None),
            Err(e) if frame.integrity == Integrity::Verified => (Message::Unknown(frame.content), Some(e)),
            Err(e) => return Err(Reject::new(RejectKind::Malformed, e.to_string())),
        };
        let command = self.settle(&message);
        let answer = answer(&message, &frame, self.now);
        let ctx = Context { frame: &frame, device_id: self.imei.as_ref(), utc_offset_minutes: self.utc_offset_minutes };
        let record = record(&ctx, &message, layout_error.as_ref(), command, out);
        if !shape.length_field_ok && frame.integrity != Integrity::Absent {
            record.attributes.set("length_field_ok", false);
        }
        if let Some(reply) = answer {
            push_reply(out, reply);
        }
        Ok(())
    }
}

impl RecordDecoder for Gt06Decoder {
    fn protocol(&self) -> Protocol {
        Protocol::Gt06
    }

    fn command(&mut self, command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        match command {
            Downlink::Text(text) if text.is_empty() => Err(DownlinkError::Invalid("an empty command".into())),
            Downlink::Text(text) => {
                let flag = self.next_server_flag;
                let bytes = self
                    .command_frame(text, None)
                    .ok_or_else(|| DownlinkError::Invalid("GT06 commands are ASCII text that fits one frame".into()))?;
                Ok(FramedCommand { bytes, answer: Some(AnswerMatch { attribute: "server_flag", value: flag }) })
            }
            Downlink::Jt808(_) => Err(DownlinkError::Unsupported("a JT808 command for a GT06 device")),
        }
    }

    fn set_now(&mut self, now: Timestamp) {
        self.now = Some(now);
    }

    fn take_frame_count(&mut self) -> u32 {
        self.driver.take_frames()
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        drive(self, buf, at_end, out)
    }
}

impl FrameHandler for Gt06Decoder {
    type Framer = Gt06Framer;
    const PROTOCOL: &'static str = "GT06";

    fn driver(&mut self) -> &mut Driver<Gt06Framer> {
        &mut self.driver
    }

    #[inline]
    fn frame(&mut self, frame: &[u8], _at: u64, _consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
        let shape = self.driver.framer.last_shape();
        self.decode_frame(frame, shape, out).map(|()| 1)
    }

    /// The framer skips junk a piece at a time.
    fn merges(reason: &Reject, _len: usize) -> bool {
        reason.kind == RejectKind::Garbage
    }
}
