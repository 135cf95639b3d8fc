//! Turns one GT06 connection's bytes into records and replies: the IMEI and time zone from
//! the login, one record per message, the acks the protocol requires (docs/protocols/gt06.md §4) (after the records, so the
//! gateway sends them only once the sink has them), the 0x8A time reply, and 0x80 commands
//! with their replies matched by server flag.

use serde_json::{json, Value};

use super::frame::{FrameShape, Gt06Framer, Integrity};
use super::message::{info_alarm, Cell, CurrentPosition, Heartbeat, Message, StatusBlock, WifiAp, X1Report};
use super::*;
use crate::framing::{Framer, Framing, Limits, Reject, RejectKind};
use crate::record::{Kind, Protocol, Record, Timestamp};
use crate::stream::{AnswerMatch, Downlink, DownlinkError, FramedCommand, RecordDecoder, SkippedRun, StreamEvent};
use crate::wire::hex::to_hex;

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
    framer: Gt06Framer,
    imei: Option<String>,
    /// From the login's time-zone extension; applies to the v1 types' local times.
    utc_offset_minutes: i32,
    now: Option<Timestamp>,
    offset: u64,
    skipped: SkippedRun,
    next_server_flag: u32,
    next_serial: u16,
    /// Frames taken whole since the last [`RecordDecoder::take_frame_count`].
    frames: u32,
    commands: Vec<(u32, String)>,
}

impl Default for Gt06Decoder {
    fn default() -> Self {
        Gt06Decoder::new(Gt06Options::default())
    }
}

/// The v1 types whose times are the device's local time on some firmware (docs/protocols/gt06.md §3); the
/// v2 types are UTC by definition.
fn local_time(protocol: u8) -> bool {
    matches!(protocol, GPS | GPS_LBS_6 | GPS_LBS | ALARM | GPS_PHONE | LBS_EXTEND)
}

fn cell_json(cell: &Cell) -> Value {
    let mut v = json!({"mcc": cell.mcc, "mnc": cell.mnc, "lac": cell.lac, "cell_id": cell.cell_id});
    if let Some(rssi) = cell.rssi {
        v["rssi"] = rssi.into();
    }
    v
}

fn wifi_json(aps: &[WifiAp]) -> Value {
    Value::Array(aps.iter().map(|ap| json!({"mac": ap.mac_text(), "rssi": ap.rssi})).collect())
}

fn set_cell(r: &mut Record, cell: &Cell) {
    // In key order: the attributes are kept sorted, and a key after the last is appended
    // where one before it is searched for and shifted in.
    r.attributes.set("cell_id", cell.cell_id);
    r.attributes.set("lac", cell.lac);
    r.attributes.set("mcc", cell.mcc);
    r.attributes.set("mnc", cell.mnc);
}

fn set_fix(r: &mut Record, fix: &GpsFix, offset_minutes: i32) {
    r.fix_time = fix.timestamp(offset_minutes);
    r.valid = Some(fix.valid());
    // A device without a fix yet sends zeros, which are not a place (and would read as a
    // point in the Gulf of Guinea).
    if fix.latitude_raw != 0 || fix.longitude_raw != 0 {
        r.latitude = Some(fix.latitude());
        r.longitude = Some(fix.longitude());
    }
    r.speed_kmh = Some(f64::from(fix.speed_kmh));
    r.course_deg = Some(f64::from(fix.course()));
    r.satellites = Some(u32::from(fix.satellites()));
    if fix.differential() {
        r.attributes.set("differential", true);
    }
    r.attributes.set_opt("ignition", fix.acc());
}

/// Terminal information byte, voltage and GSM levels (docs/protocols/gt06.md §3).
fn set_terminal_info(r: &mut Record, info: u8) {
    r.attributes.set("status_raw", info);
    r.attributes.set("output_cut", info & 0x80 != 0);
    r.attributes.set("gps_tracking", info & 0x40 != 0);
    r.attributes.set("charging", info & 0x04 != 0);
    r.attributes.set("ignition", info & 0x02 != 0);
    r.attributes.set("armed", info & 0x01 != 0);
    if let Some(name) = info_alarm(info) {
        r.add_alarm(name);
    }
}

fn set_status(r: &mut Record, s: &StatusBlock) {
    set_terminal_info(r, s.info);
    r.attributes.set("battery_level", s.voltage_level);
    r.attributes.set("gsm_signal", s.gsm_signal);
    set_alarm_code(r, AlarmCode(s.alarm));
}

fn set_alarm_code(r: &mut Record, code: AlarmCode) {
    if code.0 != 0 {
        r.attributes.set("alarm_raw", code.0);
    }
    if let Some(name) = code.name() {
        r.add_alarm(name);
    }
    if let Some(on) = code.ignition() {
        r.attributes.set("ignition", on);
    }
}

/// An X1's ADC readings, by their number (the port information announces at most 15).
const ADC_KEYS: [&str; 15] = [
    "adc1_v", "adc2_v", "adc3_v", "adc4_v", "adc5_v", "adc6_v", "adc7_v", "adc8_v", "adc9_v", "adc10_v", "adc11_v",
    "adc12_v", "adc13_v", "adc14_v", "adc15_v",
];

/// An X1 report (0x34): the fix, its cell, and the X1's own fields.
fn set_x1(r: &mut Record, x: &X1Report<'_>, offset_minutes: i32) {
    set_fix(r, &x.fix, offset_minutes);
    set_cell(r, &x.cell);
    let a = &mut r.attributes;
    for (key, adc) in ADC_KEYS.iter().zip(x.adc.chunks_exact(2)) {
        a.set(*key, f64::from(u16::from_be_bytes([adc[0], adc[1]])) / 100.0);
    }
    a.set("alarm_data", x.data_alarm);
    a.set("battery_v", f64::from(x.battery_centivolts) / 100.0);
    if x.driver_id != 0 {
        a.set("driver_id", x.driver_id.to_string());
    }
    a.set("inputs", x.inputs);
    a.set("odometer_m", x.odometer_m);
    a.set("outputs", x.outputs);
    a.set("port_info", x.port_info);
    a.set("power_v", f64::from(x.power_centivolts) / 100.0);
    a.set("terminal_info", x.terminal_info);
    set_extra(r, x.extra);
}

/// The position a command answer's text holds (`Current position!…`), in the device's clock.
fn set_current_position(r: &mut Record, at: &CurrentPosition, offset_minutes: i32) {
    r.latitude = Some(at.latitude);
    r.longitude = Some(at.longitude);
    r.course_deg = Some(at.course_deg);
    r.speed_kmh = Some(at.speed_kmh);
    let [year, month, day, hour, minute, second] = at.time;
    // Years before 2000 wrap past a byte and give no time.
    let fields = [year.wrapping_sub(2000), month, day, hour, minute, second].map(|v| u8::try_from(v).ok());
    if let [Some(yy), Some(mo), Some(d), Some(h), Some(mi), Some(s)] = fields {
        r.fix_time = Timestamp::from_local_fields([yy, mo, d, h, mi, s], offset_minutes);
    }
}

fn set_extra(r: &mut Record, extra: &[u8]) {
    if !extra.is_empty() {
        r.attributes.set("extra", to_hex(extra));
    }
}

impl Gt06Decoder {
    pub fn new(options: Gt06Options) -> Self {
        Gt06Decoder {
            framer: Gt06Framer::new(options.limits, options.crc == CrcPolicy::Lenient),
            imei: None,
            utc_offset_minutes: 0,
            now: None,
            offset: 0,
            skipped: SkippedRun::new("GT06", |r, _| r.kind == RejectKind::Garbage),
            next_server_flag: 1,
            next_serial: 1,
            frames: 0,
            commands: Vec::new(),
        }
    }

    pub fn imei(&self) -> Option<&str> {
        self.imei.as_deref()
    }

    /// The 0x80 online command for this device: a fresh server flag (echoed by the device's
    /// 0x15/0x21 reply, which then names the command) and serial. `None` if the text is not
    /// ASCII or too long for a frame.
    pub fn command(&mut self, text: &str, language: Option<u16>) -> Option<Vec<u8>> {
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

    fn record(&self, kind: Kind, frame: &Frame<'_>) -> Record {
        let mut r = Record::new(Protocol::Gt06, kind, crate::wire::hex::byte_label(frame.protocol));
        r.device_id.clone_from(&self.imei);
        r.seq = frame.serial.map(u32::from);
        match frame.integrity {
            Integrity::Verified => {}
            Integrity::Bad => r.attributes.set("crc_ok", false),
            Integrity::Absent => r.attributes.set("checksum_missing", true),
            Integrity::Unchecked => r.attributes.set("crc_ok", false),
        }
        r
    }

    fn offset_for(&self, protocol: u8) -> i32 {
        if local_time(protocol) {
            self.utc_offset_minutes
        } else {
            0
        }
    }

    /// The records and replies for one frame; pushes nothing when it fails.
    fn frame(&mut self, bytes: &[u8], shape: FrameShape, out: &mut Vec<StreamEvent>) -> Result<(), Reject> {
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
        let p = frame.protocol;
        let tz = self.offset_for(p);
        // Acks echo the serial; frames of the CRC-less dialects have none and get none.
        let ack = frame.serial.map(|serial| ack(frame.long, p, serial));
        let mut reply = None;
        let record = match &message {
            Message::Login(login, extra) => {
                self.imei = Some(login.imei());
                // A new login starts over: UTC unless this one states a zone.
                self.utc_offset_minutes = login.utc_offset_minutes().unwrap_or(0);
                let mut r = self.record(Kind::Login, &frame);
                r.attributes.set_opt("type_id", login.type_id);
                if let Some(minutes) = login.utc_offset_minutes() {
                    let sign = if minutes < 0 { '-' } else { '+' };
                    let m = minutes.unsigned_abs();
                    r.attributes.set("utc_offset", format!("{sign}{:02}:{:02}", m / 60, m % 60));
                }
                set_extra(&mut r, extra);
                // v1 rule 7: answer every login, known IMEI or not.
                reply = ack;
                r
            }
            Message::Location { fix, cell, acc, upload_mode, reupload, mileage, extra } => {
                let mut r = self.record(Kind::Position, &frame);
                set_fix(&mut r, fix, tz);
                if let Some(cell) = cell {
                    set_cell(&mut r, cell);
                }
                if let Some(acc) = acc {
                    r.attributes.set("ignition", *acc != 0);
                }
                r.attributes.set_opt("upload_mode", *upload_mode);
                r.attributes.set_opt("buffered", reupload.map(|v| v != 0));
                r.attributes.set_opt("odometer_m", *mileage);
                set_extra(&mut r, extra);
                reply = ack.filter(|_| !frame.long);
                r
            }
            Message::Alarm { fix, lbs, status, fence, extra } => {
                let mut r = self.record(Kind::Position, &frame);
                set_fix(&mut r, fix, tz);
                if let Some(cell) = Message::alarm_cell(lbs, p) {
                    set_cell(&mut r, &cell);
                }
                set_status(&mut r, status);
                r.attributes.set_opt("geofence_id", *fence);
                set_extra(&mut r, extra);
                reply = ack;
                r
            }
            Message::AlarmJc { time, position, code, extra } => {
                let mut r = self.record(Kind::Position, &frame);
                r.fix_time = Timestamp::from_local_fields(*time, tz);
                if let Some((lat, lon, course_status)) = position {
                    let fix = GpsFix {
                        time: *time,
                        length_satellites: 0,
                        latitude_raw: *lat,
                        longitude_raw: *lon,
                        speed_kmh: 0,
                        course_status: *course_status,
                    };
                    // This position carries no GPS information byte: the bit alone says.
                    r.valid = Some(fix.positioned());
                    r.latitude = Some(fix.latitude());
                    r.longitude = Some(fix.longitude());
                    r.course_deg = Some(f64::from(fix.course()));
                }
                r.alarms.push(code.jc_name(position.is_some()).into());
                r.attributes.set("alarm_raw", code.0);
                set_extra(&mut r, extra);
                reply = ack;
                r
            }
            Message::Heartbeat(h) => {
                let mut r = self.record(Kind::Heartbeat, &frame);
                match h {
                    Heartbeat::Status { info, voltage_level, gsm_signal, alarm_language, extra } => {
                        set_terminal_info(&mut r, *info);
                        r.attributes.set("battery_level", *voltage_level);
                        r.attributes.set("gsm_signal", *gsm_signal);
                        if let Some([alarm, _language]) = alarm_language {
                            set_alarm_code(&mut r, AlarmCode(*alarm));
                        }
                        set_extra(&mut r, extra);
                    }
                    Heartbeat::Voltage { info, centivolts, gsm_signal, extra } => {
                        set_terminal_info(&mut r, *info);
                        r.attributes.set("battery_v", f64::from(*centivolts) / 100.0);
                        r.attributes.set("gsm_signal", *gsm_signal);
                        set_extra(&mut r, extra);
                    }
                    Heartbeat::Opaque(bytes) => set_extra(&mut r, bytes),
                }
                reply = ack;
                r
            }
            Message::LbsStatus { cell, status, extra } => {
                let mut r = self.record(Kind::Status, &frame);
                set_cell(&mut r, cell);
                set_status(&mut r, status);
                set_extra(&mut r, extra);
                reply = ack;
                r
            }
            Message::Lbs(report) => {
                let mut r = self.record(Kind::Position, &frame);
                r.fix_time = Timestamp::from_local_fields(report.time, tz);
                // Empty neighbour slots are sent as LAC 0.
                let cells: Vec<&Cell> = report.cells.iter().filter(|c| c.lac != 0).collect();
                if let Some(serving) = cells.first() {
                    set_cell(&mut r, serving);
                }
                r.attributes.set("cells", Value::Array(cells.iter().map(|c| cell_json(c)).collect()));
                r.attributes.set("timing_advance", report.timing_advance);
                if !report.wifi.is_empty() {
                    r.attributes.set("wifi", wifi_json(&report.wifi));
                }
                set_extra(&mut r, report.extra);
                reply = ack;
                r
            }
            Message::Wifi(w) => {
                let mut r = self.record(Kind::Position, &frame);
                r.fix_time = w.timestamp();
                if let Some(serving) = w.cells.first() {
                    set_cell(&mut r, serving);
                }
                r.attributes.set("cells", Value::Array(w.cells.iter().map(cell_json).collect()));
                r.attributes.set("wifi", wifi_json(&w.wifi));
                reply = Some(wifi_count_reply(p, w.bcd_time));
                r
            }
            Message::AddressRequest { fix, phone, extra } => {
                let mut r = self.record(Kind::Position, &frame);
                set_fix(&mut r, fix, tz);
                r.attributes.set("address_request", true);
                let number: String = phone.iter().filter(|b| b.is_ascii_graphic()).map(|&b| char::from(b)).collect();
                if !number.is_empty() {
                    r.attributes.set("phone", number);
                }
                set_extra(&mut r, extra);
                // No geocoder here: answer "no address" so the device does not wait for one.
                reply = Some(no_address_reply());
                r
            }
            Message::TimeRequest => {
                let r = self.record(Kind::TimeRequest, &frame);
                // The codec reads no clock: without the caller's time there is no honest answer.
                reply = self.now.zip(frame.serial).and_then(|(now, serial)| time_reply(now, serial));
                r
            }
            Message::Info(info) => {
                let mut r = self.record(Kind::Info, &frame);
                r.attributes.set("info_type", info.subtype);
                let d = info.data;
                match (info.subtype, d.len()) {
                    (0x00, 2..) => r.attributes.set("power_v", f64::from(u16::from_be_bytes([d[0], d[1]])) / 100.0),
                    (0x04, _) => r.attributes.set("status_sync", String::from_utf8_lossy(d).into_owned()),
                    (0x05, 1..) => {
                        r.attributes.set("door", d[0] & 0x01 != 0);
                        r.attributes.set("door_trigger_high", d[0] & 0x02 != 0);
                        r.attributes.set("io", d[0] & 0x04 != 0);
                    }
                    (0x0A, 26..) => {
                        r.attributes
                            .set("imei", crate::wire::bcd::digits_unpadded(&d[..8]).trim_start_matches('0').to_owned());
                        r.attributes.set("imsi", crate::wire::bcd::digits_unpadded(&d[8..16]));
                        r.attributes.set("iccid", crate::wire::bcd::digits_unpadded(&d[16..26]));
                    }
                    _ => r.attributes.set_text_or_data(d),
                }
                r
            }
            Message::X1(x) => {
                let mut r = self.record(Kind::Position, &frame);
                set_x1(&mut r, x, tz);
                reply = ack.filter(|_| !frame.long);
                r
            }
            Message::CommandReply(reply_msg) => {
                let mut r = self.record(Kind::CommandResponse, &frame);
                if let Some(at) = CurrentPosition::parse(&reply_msg.text) {
                    set_current_position(&mut r, &at, self.utc_offset_minutes);
                }
                r.attributes.set("server_flag", reply_msg.server_flag);
                r.attributes.set("text", reply_msg.text.clone());
                if let Some(i) = self.commands.iter().position(|(flag, _)| *flag == reply_msg.server_flag) {
                    r.attributes.set("command", self.commands.remove(i).1);
                }
                set_extra(&mut r, reply_msg.extra);
                // Command replies are never acked.
                r
            }
            Message::Unknown(content) => {
                let mut r = self.record(Kind::Unknown, &frame);
                r.attributes.set_opt("layout_error", layout_error.as_ref().map(ToString::to_string));
                if !content.is_empty() {
                    r.attributes.set("data", to_hex(content));
                }
                // Fielded servers ack every unknown short-frame type except the command range,
                // and devices expect it (docs/protocols/gt06.md §8).
                reply = ack.filter(|_| !frame.long && !(0x80..=0x82).contains(&p));
                r
            }
        };
        let mut record = record;
        if !shape.length_field_ok && frame.integrity != Integrity::Absent {
            record.attributes.set("length_field_ok", false);
        }
        out.push(StreamEvent::Record(record));
        if let Some(reply) = reply {
            out.push(StreamEvent::Reply(reply));
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
                let bytes = Gt06Decoder::command(self, text, None)
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
        std::mem::take(&mut self.frames)
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        let mut pos = 0;
        while pos < buf.len() {
            let rest = &buf[pos..];
            let at = self.offset + pos as u64;
            let framing = if at_end { self.framer.next_frame_at_end(rest) } else { self.framer.next_frame(rest) };
            match framing {
                Framing::Frame { len, consumed } => {
                    self.skipped.flush(out);
                    let shape = self.framer.last_shape();
                    match self.frame(&rest[..len], shape, out) {
                        Ok(()) => self.frames = self.frames.wrapping_add(1),
                        Err(reason) => self.skipped.reject(at, len, reason, out),
                    }
                    pos += consumed;
                }
                Framing::Incomplete { .. } => break,
                Framing::Rejected { consumed, reason } => {
                    self.skipped.reject(at, consumed, reason, out);
                    pos += consumed;
                }
                Framing::Fatal(reason) => {
                    self.skipped.reject(at, rest.len(), reason, out);
                    pos = buf.len();
                }
            }
        }
        if at_end {
            self.skipped.flush(out);
        }
        self.offset += pos as u64;
        pos
    }
}
