//! Turns one JT808 connection's (or UDP peer's) bytes into records and replies (docs/protocols/jt808.md §5):
//! 0x8100 for registrations, 0x8001 for everything the terminal expects one for (after the
//! records, so the gateway sends it only once the sink has them), 0x8004 for time queries,
//! sub-packages reassembled with 0x8003 for the missing ones and 0x8800 for finished media,
//! and the platform's commands with their answers matched by serial.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::frame::{inner, is_text, Jt808Framer};
use super::message::LayoutError;
use super::message::{
    Batch, Batch2, DriverIdentity, GeneralResponse, Location, MediaData, MediaEvent, Message, PassthroughReport,
    Register, TerminalAttributes, VehicleData, VendorLocation,
};
use super::*;
use crate::framing::{Limits, Reject, RejectKind};
use crate::record::{Kind, Protocol, Record, Timestamp};
use crate::stream::{
    drive, push_record, AllowList, AnswerMatch, Downlink, DownlinkError, Driver, FrameHandler, FramedCommand,
    RecordDecoder, Reply, StreamEvent, Transport,
};
use crate::wire::bits::ones;
use crate::wire::hex::to_hex;

/// Where a terminal's auth codes come from and are checked (docs/protocols/jt808.md §5):
/// the gateway's durable store. With one, registration hands out the code [`AuthCodes::issue`]
/// gives, a terminal must authenticate (0x0102) with its code before anything else it sends
/// is taken, and a wrong code gets 0x8001 result 1 and ends the stream.
pub trait AuthCodes: Send + Sync {
    /// A new code for a terminal that registers, kept (durably) before this returns.
    fn issue(&self, device_id: &str) -> Issued;
    /// Whether `code` is the terminal's.
    fn check(&self, device_id: &str, code: &[u8]) -> bool;
    /// The terminal deregistered (0x0003, once authenticated): its code is void, and it may
    /// register again.
    fn revoke(&self, device_id: &str);
}

/// What a registration gets from [`AuthCodes::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// This code, kept: 0x8100 result 0 carries it.
    Code(String),
    /// The terminal already has a code (it registered before, or the operator enrolled it):
    /// 0x8100 result 3, and no new code, so nobody who knows a terminal's number can void
    /// the real terminal's code by registering in its name.
    AlreadyRegistered,
    /// The code could not be kept: no answer, and the terminal tries again.
    Unavailable,
}

/// Messages a terminal may send before it has authenticated: registration, authentication
/// and deregistration.
const BEFORE_AUTH: [u16; 3] = [id::REGISTER, id::AUTHENTICATE, id::DEREGISTER];

/// Per-connection settings.
#[derive(Clone)]
pub struct Jt808Options {
    /// The terminals' clock offset from UTC in minutes: BCD times are local (docs/protocols/jt808.md §4; GMT+8
    /// by the standard, so 480 unless configured).
    pub utc_offset_minutes: i32,
    pub limits: Limits,
    /// Bytes of unfinished sub-packaged messages held at once; the oldest is dropped (and
    /// reported) to make room.
    pub max_reassembly_bytes: usize,
    /// Unfinished sub-packaged messages held at once.
    pub max_reassemblies: usize,
    /// How long an unfinished sub-packaged message waits for its missing packages, by the
    /// clock the caller gives [`RecordDecoder::set_now`]. Without a clock, only the limits
    /// and the end of the stream end it.
    pub reassembly_timeout_ms: i64,
    /// Over UDP the end of a datagram is not the end of the session, so unfinished
    /// sub-packaged messages wait for the next datagrams.
    pub transport: Transport,
    /// The terminals that may register and authenticate. Refused terminals get 0x8100
    /// result 4 ("terminal not in the database") and a failed 0x8001 for authentication;
    /// their records still come out, marked `accepted: false`. `None` lets every terminal in.
    pub allow: Option<AllowList>,
    /// Authentication enforced with these codes; `None` keeps the older behaviour (the code
    /// handed out is the terminal's number, and every message is taken).
    pub auth: Option<Arc<dyn AuthCodes>>,
}

impl Default for Jt808Options {
    fn default() -> Self {
        Jt808Options {
            utc_offset_minutes: 8 * 60,
            limits: DEFAULT_LIMITS,
            max_reassembly_bytes: 1 << 20,
            max_reassemblies: 4,
            reassembly_timeout_ms: 60_000,
            transport: Transport::Tcp,
            allow: None,
            auth: None,
        }
    }
}

impl std::fmt::Debug for Jt808Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jt808Options")
            .field("utc_offset_minutes", &self.utc_offset_minutes)
            .field("limits", &self.limits)
            .field("max_reassembly_bytes", &self.max_reassembly_bytes)
            .field("max_reassemblies", &self.max_reassemblies)
            .field("reassembly_timeout_ms", &self.reassembly_timeout_ms)
            .field("transport", &self.transport)
            .field("allow", &self.allow)
            .field("auth", &self.auth.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Commands awaiting an answer, per connection: enough for an operator's burst, bounded so
/// a terminal that never answers cannot grow it.
const MAX_PENDING_COMMANDS: usize = 32;

/// A sub-packaged message being put together.
#[derive(Debug)]
struct Assembly {
    header: Header,
    first_serial: u16,
    total: u16,
    /// By package index. Sparse, so a header that announces 65535 packages costs nothing
    /// until they come.
    parts: std::collections::BTreeMap<u16, Vec<u8>>,
    bytes: usize,
    started_at: Option<Timestamp>,
    /// Stream offset of the first package seen, and wire bytes of all packages held.
    offset: u64,
    wire_len: usize,
}

impl Assembly {
    /// The first `limit` missing package indexes.
    fn missing(&self, limit: usize) -> Vec<u16> {
        (1..=self.total).filter(|i| !self.parts.contains_key(i)).take(limit).collect()
    }

    fn describe(&self) -> String {
        let count = usize::from(self.total) - self.parts.len();
        let shown: Vec<String> = self.missing(8).iter().map(u16::to_string).collect();
        format!(
            "sub-packaged message 0x{:04X} (first serial {}): {} of {} packages missing ({}{})",
            self.header.message_id,
            self.first_serial,
            count,
            self.total,
            shown.join(", "),
            if count > 8 { ", …" } else { "" }
        )
    }
}

/// What a sub-package did to its message.
#[derive(Debug)]
enum Package {
    /// Still incomplete; after the last-numbered package, `(first serial, missing indexes)`
    /// to ask for again.
    Waiting { resend: Option<(u16, Vec<u16>)> },
    /// This package completed it: the message as if it had come in one frame.
    Whole { header: Header, body: Vec<u8>, packages: u16 },
}

/// One decoder per TCP connection or UDP peer.
#[derive(Debug)]
pub struct Jt808Decoder {
    driver: Driver<Jt808Framer>,
    options: Jt808Options,
    now: Option<Timestamp>,
    /// The terminal of the last frame, and its device id.
    terminal: Option<(Terminal, Arc<str>)>,
    next_serial: u16,
    commands: Vec<(u16, u16)>,
    assemblies: Vec<Assembly>,
    assembly_bytes: usize,
    /// The terminal has authenticated with its code (only asked with [`Jt808Options::auth`]).
    authenticated: bool,
    /// A wrong auth code: the stream ends after the replies.
    refused: bool,
}

impl Default for Jt808Decoder {
    fn default() -> Self {
        Jt808Decoder::new(Jt808Options::default())
    }
}

/// Alarm bit names (docs/protocols/jt808.md §6.2). Bits 15–17 are reserved in 2013 and remapped by vendors, so they
/// are left to `alarm_raw`. Bit 20 (area) and 21 (route) are refined by item 0x12.
const ALARMS: [Option<&str>; 32] = [
    Some("sos"),
    Some("overspeed"),
    Some("fatigue"),
    Some("danger_warning"),
    Some("gnss_fault"),
    Some("gnss_antenna_open"),
    Some("gnss_antenna_short"),
    Some("power_low"),
    Some("power_cut"),
    Some("lcd_fault"),
    Some("tts_fault"),
    Some("camera_fault"),
    Some("ic_card_fault"),
    Some("overspeed_warning"),
    Some("fatigue_warning"),
    None,
    None,
    None,
    Some("driving_time_exceeded"),
    Some("parking_overtime"),
    Some("geofence"),
    Some("route"),
    Some("route_time"),
    Some("route_deviation"),
    Some("vss_fault"),
    Some("fuel_abnormal"),
    Some("theft"),
    Some("illegal_ignition"),
    Some("illegal_movement"),
    Some("collision"),
    Some("rollover"),
    Some("illegal_door_open"),
];

/// Status bits that are flags set to `true` when on, by bit (docs/protocols/jt808.md §6.2);
/// bit 0 (ignition) is always given, bits 8–9 are the load and 18–21 the GNSS systems.
const STATUS_FLAGS: [Option<&str>; 18] = [
    None,
    None,
    None,
    None,
    Some("out_of_service"),
    Some("coordinates_encrypted"),
    None,
    None,
    None,
    None,
    Some("fuel_cut"),
    Some("circuit_cut"),
    Some("doors_locked"),
    Some("door1_open"),
    Some("door2_open"),
    Some("door3_open"),
    Some("door4_open"),
    Some("door5_open"),
];

/// Status bits 18–21: the satellite systems in use.
const GNSS_SYSTEMS: [&str; 4] = ["gps", "beidou", "glonass", "galileo"];
const GNSS_BITS: u32 = 0xF << 18;

/// `0x0200`: the ids terminals send every few seconds come from a table, the rest are
/// formatted.
pub(super) fn hex_id(id: u16) -> Cow<'static, str> {
    match id {
        id::TERMINAL_RESPONSE => "0x0001".into(),
        id::HEARTBEAT => "0x0002".into(),
        id::LOCATION => "0x0200".into(),
        id::LOCATION_REPLY => "0x0201".into(),
        id::BATCH => "0x0704".into(),
        id::PLATFORM_RESPONSE => "0x8001".into(),
        _ => format!("0x{id:04x}").into(),
    }
}

/// Big-endian values of slices whose length the caller's match has already checked.
fn be16(v: &[u8]) -> u16 {
    u16::from_be_bytes([v[0], v[1]])
}

fn be32(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

/// An item kept as it came, under `items` (`0xNN` keys); the same id twice keeps both.
fn raw_item(raw: &mut Map<String, Value>, id: u8, v: &[u8]) {
    let key = format!("0x{id:02x}");
    let value = Value::String(to_hex(v));
    match raw.get_mut(&key) {
        Some(Value::Array(list)) => list.push(value),
        Some(first) => *first = Value::Array(vec![first.take(), value]),
        None => {
            raw.insert(key, value);
        }
    }
}

/// Sign-magnitude tenths (top bit negative), as the 0x06 and vendor 0x51 temperatures are.
fn sign_magnitude_tenths(v: u16) -> f64 {
    let magnitude = f64::from(v & 0x7FFF) / 10.0;
    if v & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// The additional items the standard defines, as attributes; everything else, and any standard
/// item whose length is not the standard's, goes to `items` raw (keyed `0xNN`).
/// The 0x51 temperature sensors' keys, by their number.
const TEMP_KEYS: [&str; 8] = ["temp1_c", "temp2_c", "temp3_c", "temp4_c", "temp5_c", "temp6_c", "temp7_c", "temp8_c"];

fn set_items(r: &mut Record, location: &Location<'_>) {
    let mut raw = Map::new();
    let mut items = location.items();
    let mut area: Option<(u8, u8)> = None;
    for item in items.by_ref() {
        let v = item.value;
        let a = &mut r.attributes;
        match (item.id, v.len()) {
            (0x01, 4) => a.set("odometer_m", u64::from(be32(v)) * 100),
            (0x02, 2) if be16(v) & 0x8000 != 0 => a.set("fuel_percent", be16(v) & 0x7FFF),
            (0x02, 2) => a.set("fuel_l", f64::from(be16(v)) / 10.0),
            (0x03, 2) => a.set("tachograph_speed_kmh", f64::from(be16(v)) / 10.0),
            (0x04, 2) => a.set("alarm_event_id", be16(v)),
            (0x05, _) => a.set("tire_pressure_raw", to_hex(v)),
            (0x06, 2) => a.set("carriage_temp_c", sign_magnitude_tenths(be16(v))),
            (0x11, 1) => a.set("overspeed_area_type", v[0]),
            (0x11, 5) => {
                a.set("overspeed_area_type", v[0]);
                a.set("overspeed_area_id", be32(&v[1..]));
            }
            (0x12, 6) => {
                a.set("area_type", v[0]);
                a.set("area_id", be32(&v[1..5]));
                a.set("area_direction", if v[5] == 0 { "in" } else { "out" });
                area = Some((v[0], v[5]));
            }
            (0x13, 7) => {
                a.set("route_segment_id", be32(&v[..4]));
                a.set("route_segment_time_s", be16(&v[4..6]));
                a.set("route_segment_result", if v[6] == 0 { "too_short" } else { "too_long" });
            }
            (0x14, 4) => a.set("video_alarm_raw", be32(v)),
            (0x15, 4) => a.set("video_signal_loss_raw", be32(v)),
            (0x16, 4) => a.set("video_signal_blocked_raw", be32(v)),
            (0x17, 2) => a.set("storage_fault_raw", be16(v)),
            (0x18, 2) => a.set("abnormal_driving_raw", be16(v)),
            (0x25, 4) => a.set("vehicle_signals_raw", be32(v)),
            (0x2A, 2) => {
                let x = be16(v);
                a.set("io_status_raw", x);
                if x & 1 != 0 {
                    a.set("deep_sleep", true);
                }
                if x & 2 != 0 {
                    a.set("sleep", true);
                }
            }
            (0x2B, 4) => {
                a.set("adc0", be16(&v[2..]));
                a.set("adc1", be16(&v[..2]));
            }
            (0x30, 1) => a.set("gsm_signal", v[0]),
            (0x31, 1) => r.satellites = Some(u32::from(v[0])),
            // Common vendor items (docs/protocols/jt808.md §6.2, "seen in the wild").
            (0x51, n) if n >= 2 && n % 2 == 0 => {
                for (i, pair) in v.chunks_exact(2).enumerate() {
                    let t = be16(pair);
                    if t != 0xFFFF {
                        // Static keys for the usual few sensors (no key to build per record).
                        match TEMP_KEYS.get(i) {
                            Some(key) => a.set(*key, sign_magnitude_tenths(t)),
                            None => a.set(format!("temp{}_c", i + 1), sign_magnitude_tenths(t)),
                        }
                    }
                }
            }
            (0x56, 1..=2) => a.set("battery_level", u32::from(v[0]) * 10),
            (0x61, 2) => a.set("power_v", f64::from(be16(v)) / 100.0),
            (0x69, 2) => a.set("battery_v", f64::from(be16(v)) / 100.0),
            _ => raw_item(&mut raw, item.id, v),
        }
    }
    if items.truncated() {
        r.attributes.set("items_truncated", true);
    }
    if !raw.is_empty() {
        r.attributes.set("items", Value::Object(raw));
    }
    // Item 0x12 says which way the area or route alarm went.
    if let Some((kind, direction)) = area {
        let (bit, refined) = match (kind == 4, direction == 0) {
            (true, true) => ("route", "route_enter"),
            (true, false) => ("route", "route_exit"),
            (false, true) => ("geofence", "geofence_enter"),
            (false, false) => ("geofence", "geofence_exit"),
        };
        if let Some(i) = r.alarms.iter().position(|a| a == bit) {
            r.alarms[i] = refined.into();
        }
    }
}

fn set_location(r: &mut Record, l: &Location<'_>, utc_offset_minutes: i32, edition: Edition) {
    r.fix_time = l.timestamp(utc_offset_minutes);
    r.valid = Some(l.positioned());
    // A terminal without a fix yet sends zeros, which are not a place.
    if l.latitude_raw != 0 || l.longitude_raw != 0 {
        r.latitude = Some(l.latitude());
        r.longitude = Some(l.longitude());
    }
    r.altitude_m = Some(f64::from(l.altitude_m()));
    r.speed_kmh = Some(l.speed_kmh());
    r.course_deg = Some(f64::from(l.course));
    // The words are read as sets of bits, the set ones only (an alarm word is mostly 0).
    for bit in ones(l.alarm) {
        if let Some(name) = ALARMS[bit] {
            r.add_alarm(name);
        }
    }
    let a = &mut r.attributes;
    if l.alarm != 0 {
        a.set("alarm_raw", l.alarm);
    }
    a.set("status_raw", l.status);
    let s = l.status;
    a.set("ignition", s & 1 != 0);
    for bit in ones(s) {
        if let Some(&Some(name)) = STATUS_FLAGS.get(bit) {
            a.set(name, true);
        }
    }
    match (s >> 8) & 3 {
        1 => a.set("load", "half"),
        3 => a.set("load", "full"),
        _ => {}
    }
    if s & GNSS_BITS != 0 {
        let systems = ones(s & GNSS_BITS).map(|bit| GNSS_SYSTEMS[bit - 18].into());
        a.set("gnss_systems", Value::Array(systems.collect()));
    }
    if matches!(edition, Edition::V2019 { .. }) && s & (1 << 22) != 0 {
        a.set("moving", true);
    }
    set_items(r, l);
}

/// A fixed-width text field (GBK, NUL or space padded). Bytes that are not text (control
/// characters: some terminals put BCD or binary ids here) are kept as hex instead.
fn set_text(r: &mut Record, key: &'static str, bytes: &[u8]) {
    let end = bytes.iter().rposition(|&b| b != 0 && b != b' ').map_or(0, |i| i + 1);
    let start = bytes[..end].iter().position(|&b| b != 0 && b != b' ').unwrap_or(end);
    let field = &bytes[start..end];
    if field.is_empty() {
        return;
    }
    if field.iter().any(|&b| b < 0x20 || b == 0x7F) {
        r.attributes.set(key, to_hex(field));
    } else {
        r.attributes.set(key, text(field));
    }
}

fn command_name(id: u16) -> &'static str {
    match id {
        id::SET_PARAMETERS => "set_parameters",
        id::QUERY_PARAMETERS => "query_parameters",
        id::TERMINAL_CONTROL => "terminal_control",
        id::QUERY_GIVEN_PARAMETERS => "query_given_parameters",
        QUERY_ATTRIBUTES => "query_attributes",
        id::QUERY_LOCATION => "query_location",
        id::TRACKING => "tracking",
        id::TEXT => "text",
        id::VEHICLE_CONTROL => "vehicle_control",
        id::PASSTHROUGH_DOWN => "passthrough",
        _ => "other",
    }
}

/// 0x8107 query terminal attributes (answered by 0x0107).
pub const QUERY_ATTRIBUTES: u16 = 0x8107;

impl Jt808Decoder {
    pub fn new(options: Jt808Options) -> Self {
        Jt808Decoder {
            driver: Driver::new(Jt808Framer::new(options.limits)),
            options,
            now: None,
            terminal: None,
            next_serial: 1,
            commands: Vec::new(),
            assemblies: Vec::new(),
            assembly_bytes: 0,
            authenticated: false,
            refused: false,
        }
    }

    /// Whether a message with this id is taken now: everything, unless authentication is
    /// enforced and the terminal has not authenticated yet.
    fn admits(&self, message_id: u16) -> bool {
        self.options.auth.is_none() || self.authenticated || BEFORE_AUTH.contains(&message_id)
    }

    /// The terminal of the last frame: where commands go.
    pub fn terminal(&self) -> Option<&Terminal> {
        self.terminal.as_ref().map(|(t, _)| t)
    }

    pub fn device_id(&self) -> Option<&str> {
        self.terminal.as_ref().map(|(_, id)| &**id)
    }

    /// Unfinished sub-packaged messages held, and their bytes (for memory accounting).
    pub fn held(&self) -> (usize, usize) {
        (self.assemblies.len(), self.assembly_bytes)
    }

    fn serial(&mut self) -> u16 {
        let s = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        s
    }

    /// The frame for `command` to this connection's terminal, with the next platform serial;
    /// the terminal's answer will name it. `None` before the terminal has sent a frame, or if
    /// the command cannot be written.
    pub fn command_frame(&mut self, command: &Command) -> Option<Vec<u8>> {
        let terminal = *self.terminal()?;
        let serial = self.next_serial;
        let bytes = command.encode(&terminal, serial)?;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.remember(serial, command.message_id());
        Some(bytes)
    }

    /// 0x8107: ask the terminal for its attributes.
    pub fn query_attributes(&mut self) -> Option<Vec<u8>> {
        let terminal = *self.terminal()?;
        let serial = self.serial();
        self.remember(serial, QUERY_ATTRIBUTES);
        encode(QUERY_ATTRIBUTES, &terminal, serial, &[])
    }

    fn remember(&mut self, serial: u16, message_id: u16) {
        if self.commands.len() == MAX_PENDING_COMMANDS {
            self.commands.remove(0);
        }
        self.commands.push((serial, message_id));
    }

    /// Takes the oldest pending command an answer matches off the list: by the platform
    /// serial it echoes and the message id it names, as far as the answer carries them
    /// (0x0107 carries neither serial nor id, only its own meaning).
    fn answered(&mut self, serial: Option<u16>, id: Option<u16>) -> Option<u16> {
        let i = self
            .commands
            .iter()
            .position(|&(s, m)| serial.is_none_or(|serial| serial == s) && id.is_none_or(|id| id == m))?;
        Some(self.commands.remove(i).1)
    }

    fn record(&self, kind: Kind, header: &Header) -> Record {
        let mut r = Record::new(Protocol::Jt808, kind, hex_id(header.message_id));
        r.device_id = self.terminal.as_ref().map(|(_, id)| id.clone());
        r.seq = Some(u32::from(header.serial));
        if let Edition::V2019 { version } = header.terminal.edition {
            r.attributes.set("protocol_version", version);
        }
        if !header.terminal.number.is_bcd() {
            r.attributes.set("terminal_number", to_hex(header.terminal.number.as_bytes()));
        }
        r
    }

    fn allowed(&self) -> bool {
        match (&self.options.allow, &self.terminal) {
            (Some(allow), Some((_, id))) => allow.allows(id),
            _ => true,
        }
    }

    /// The 0x8001 answer to `header`'s message ([`platform_response`], held inline).
    fn ack(&mut self, header: &Header, result: u8) -> Reply {
        let serial = self.serial();
        platform_response_reply(&header.terminal, serial, header.serial, header.message_id, result)
    }

    /// Drops unfinished sub-packaged messages older than the timeout.
    fn expire(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(now) = self.now else { return };
        let timeout = self.options.reassembly_timeout_ms;
        while let Some(i) =
            self.assemblies.iter().position(|a| a.started_at.is_some_and(|t| now.unix_ms() - t.unix_ms() > timeout))
        {
            self.drop_assembly(i, RejectKind::Truncated, &format!(", after waiting {} s", timeout / 1000), out);
        }
    }

    /// The session is over: every unfinished sub-packaged message is reported as lost.
    fn abandon_assemblies(&mut self, out: &mut Vec<StreamEvent>) {
        while !self.assemblies.is_empty() {
            self.drop_assembly(0, RejectKind::Truncated, " when the stream ended", out);
        }
    }

    /// Removes unfinished message `i` and reports it lost, with `why`.
    fn drop_assembly(&mut self, i: usize, kind: RejectKind, why: &str, out: &mut Vec<StreamEvent>) {
        let a = self.assemblies.remove(i);
        self.assembly_bytes -= a.bytes;
        let reason = Reject::new(kind, format!("{}{why}", a.describe()));
        out.push(StreamEvent::Rejected { offset: a.offset, len: a.wire_len, reason });
    }

    /// One sub-package: kept until its message is whole.
    fn package(
        &mut self,
        header: Header,
        body: &[u8],
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Package, Reject> {
        let (total, index) = header.package.unwrap_or((1, 1));
        if index == 0 || index > total {
            return Err(Reject::new(RejectKind::Malformed, format!("sub-package {index} of {total}")));
        }
        if body.len() > self.options.max_reassembly_bytes {
            return Err(Reject::new(RejectKind::TooLong, "sub-package larger than the reassembly limit"));
        }
        let first_serial = header.serial.wrapping_sub(index - 1);
        let key = |a: &Assembly| {
            a.header.message_id == header.message_id
                && a.first_serial == first_serial
                && a.total == total
                && a.header.terminal == header.terminal
        };
        let mut i = match self.assemblies.iter().position(key) {
            Some(i) => i,
            None => {
                if self.assemblies.len() >= self.options.max_reassemblies.max(1) {
                    self.drop_assembly(0, RejectKind::TooLong, ", dropped to make room for a newer one", out);
                }
                self.assemblies.push(Assembly {
                    header,
                    first_serial,
                    total,
                    parts: std::collections::BTreeMap::new(),
                    bytes: 0,
                    started_at: self.now,
                    offset: at,
                    wire_len: 0,
                });
                self.assemblies.len() - 1
            }
        };
        // Room for this package: drop the oldest other unfinished messages first.
        while self.assembly_bytes + body.len() > self.options.max_reassembly_bytes {
            let Some(victim) = (0..self.assemblies.len()).find(|&j| j != i && self.assemblies[j].bytes > 0) else {
                let why = format!(" exceeds the reassembly limit of {} bytes", self.options.max_reassembly_bytes);
                let a = self.assemblies.remove(i);
                self.assembly_bytes -= a.bytes;
                return Err(Reject::new(RejectKind::TooLong, format!("{}{why}", a.describe())));
            };
            self.drop_assembly(victim, RejectKind::TooLong, ", dropped to make room for a newer one", out);
            if victim < i {
                i -= 1;
            }
        }
        let a = &mut self.assemblies[i];
        a.wire_len += wire_len;
        if let std::collections::btree_map::Entry::Vacant(slot) = a.parts.entry(index) {
            slot.insert(body.to_vec());
            a.bytes += body.len();
            self.assembly_bytes += body.len();
        }
        if index == 1 {
            a.header = header;
        }
        if a.parts.len() < usize::from(total) {
            // After the last package the platform asks for the missing ones (docs/protocols/jt808.md §3.3): one
            // request's worth (a 2013 count is a BYTE); a message missing more than that ends
            // by the timeout.
            let resend = (index == total).then(|| (first_serial, a.missing(255)));
            return Ok(Package::Waiting { resend });
        }
        let a = self.assemblies.remove(i);
        self.assembly_bytes -= a.bytes;
        let mut body = Vec::with_capacity(a.bytes);
        for part in a.parts.into_values() {
            body.extend_from_slice(&part);
        }
        let mut header = a.header;
        header.serial = a.first_serial;
        header.package = None;
        Ok(Package::Whole { header, body, packages: a.total })
    }

    /// The records and replies for one binary frame (escaped bytes, flags removed). A frame
    /// with escapes is un-escaped into the thread's scratch buffer: a buffer of its own was
    /// an allocation per such frame (about one frame in three carries a 0x7d or 0x7e), and
    /// one kept per decoder would add its longest frame to every idle session.
    fn binary_frame(
        &mut self,
        escaped: &[u8],
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Reject> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.frame_in(escaped, &mut scratch, at, wire_len, out),
            // Not reached (nothing here decodes inside a decode), but never a panic.
            Err(_) => self.frame_in(escaped, &mut Vec::new(), at, wire_len, out),
        })
    }

    fn frame_in<'a>(
        &mut self,
        escaped: &'a [u8],
        scratch: &'a mut Vec<u8>,
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Reject> {
        let frame = Frame::parse_with(escaped, scratch)?;
        let header = frame.header;
        if self.terminal.as_ref().is_none_or(|(t, _)| *t != header.terminal) {
            // Another terminal number on this stream has proved nothing yet.
            self.authenticated = false;
            self.terminal = Some((header.terminal, header.terminal.number.device_id().into()));
        }
        if !self.admits(header.message_id) {
            return Err(Reject::new(
                RejectKind::Unauthenticated,
                format!("0x{:04X} before the terminal authenticated", header.message_id),
            ));
        }
        if header.package.is_some_and(|(total, _)| total > 1) {
            match self.package(header, &frame.body, at, wire_len, out)? {
                Package::Whole { header: whole, body, packages } => {
                    self.message(&whole, &body, true, Some(packages), out);
                    let ack = self.ack(&header, result::OK);
                    out.push(StreamEvent::Reply(ack));
                    if whole.message_id == id::MEDIA_DATA && body.len() >= 4 {
                        let serial = self.serial();
                        let media_id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                        out.extend(
                            media_upload_response(&header.terminal, serial, media_id, &[])
                                .map(|r| StreamEvent::Reply(r.into())),
                        );
                    }
                }
                Package::Waiting { resend } => {
                    let ack = self.ack(&header, result::OK);
                    out.push(StreamEvent::Reply(ack));
                    if let Some((first_serial, missing)) = resend {
                        let serial = self.serial();
                        out.extend(
                            resend_request(&header.terminal, serial, first_serial, &missing)
                                .map(|r| StreamEvent::Reply(r.into())),
                        );
                    }
                }
            }
            return Ok(());
        }
        let reply_needed = self.message(&header, &frame.body, frame.length_field_ok, None, out);
        if let Some(result) = reply_needed {
            let ack = self.ack(&header, result);
            out.push(StreamEvent::Reply(ack));
        }
        Ok(())
    }

    /// Records for one whole message, then the replies other than 0x8001; returns the
    /// 0x8001 result to send after them, if the message gets one.
    fn message(
        &mut self,
        header: &Header,
        body: &[u8],
        length_field_ok: bool,
        packages: Option<u16>,
        out: &mut Vec<StreamEvent>,
    ) -> Option<u8> {
        let tz = self.options.utc_offset_minutes;
        let edition = header.terminal.edition;
        let (message, layout_error) = match Message::parse(header, body) {
            Ok(m) => (m, None),
            // The check code proves these are the terminal's bytes: a body in a layout this
            // codec does not know for its id is kept as an unknown message, never dropped.
            Err(e) => (Message::Unknown(body), Some(e)),
        };
        // Records go straight into `out` (a vector per message was an allocation per
        // record); the replies, rarer, after them.
        let start = out.len();
        let mut replies = Vec::new();
        let mut ack = Some(result::OK);
        match &message {
            Message::GeneralResponse(GeneralResponse { reply_serial, reply_id, result }) => {
                let mut r = self.record(Kind::CommandResponse, header);
                r.attributes.set("reply_serial", *reply_serial);
                r.attributes.set("reply_id", hex_id(*reply_id));
                r.attributes.set("result", result::name(*result).into_owned());
                if let Some(id) = self.answered(Some(*reply_serial), Some(*reply_id)) {
                    r.attributes.set("command", command_name(id));
                }
                out.push(StreamEvent::Record(r));
                ack = None;
            }
            Message::Heartbeat(extra) => {
                let mut r = self.record(Kind::Heartbeat, header);
                if !extra.is_empty() {
                    r.attributes.set("extra", to_hex(extra));
                }
                out.push(StreamEvent::Record(r));
            }
            Message::Deregister => {
                let mut r = self.record(Kind::Register, header);
                r.attributes.set("deregister", true);
                out.push(StreamEvent::Record(r));
                // Only the terminal itself (authenticated) can give its code up.
                if let (Some(auth), true) = (&self.options.auth, self.authenticated) {
                    auth.revoke(self.device_id().unwrap_or_default());
                    self.authenticated = false;
                }
            }
            Message::TimeQuery => {
                out.push(StreamEvent::Record(self.record(Kind::TimeRequest, header)));
                // The codec reads no clock: without the caller's time there is no honest answer.
                if let Some(now) = self.now {
                    let serial = self.serial();
                    replies.extend(server_time(&header.terminal, serial, now));
                }
                ack = None;
            }
            Message::ResendRequest { first_serial, indexes } => {
                let mut r = self.record(Kind::Info, header);
                r.attributes.set("resend_first_serial", *first_serial);
                r.attributes.set("resend_packages", indexes.clone());
                out.push(StreamEvent::Record(r));
            }
            Message::Register(reg) => {
                let id = self.device_id().unwrap_or_default().to_owned();
                // With enforced authentication the code is the store's (kept before it is
                // sent); without, the terminal's number. Results: docs/protocols/jt808.md §5.
                let (result, code) = match (&self.options.auth, self.allowed()) {
                    (_, false) => (Some(4), String::new()),
                    (None, true) => (Some(0), id),
                    (Some(auth), true) => match auth.issue(&id) {
                        Issued::Code(code) => (Some(0), code),
                        Issued::AlreadyRegistered => (Some(3), String::new()),
                        Issued::Unavailable => (None, String::new()),
                    },
                };
                out.push(StreamEvent::Record(self.register_record(header, reg, result == Some(0))));
                if let Some(result) = result {
                    let serial = self.serial();
                    replies.extend(register_response(&header.terminal, serial, header.serial, result, &code));
                }
                ack = None;
            }
            Message::Auth(auth) => {
                let accepted = match &self.options.auth {
                    Some(codes) => {
                        let ok = self.allowed() && codes.check(self.device_id().unwrap_or_default(), auth.code);
                        self.authenticated = ok;
                        // A wrong code ends the stream once its 0x8001 is out.
                        self.refused = !ok;
                        ok
                    }
                    None => self.allowed(),
                };
                let mut r = self.record(Kind::Auth, header);
                r.attributes.set("auth_code", text(auth.code));
                if let Some(imei) = auth.imei {
                    set_text(&mut r, "imei", imei);
                }
                if let Some(v) = auth.software_version {
                    set_text(&mut r, "software_version", v);
                }
                r.attributes.set("accepted", accepted);
                out.push(StreamEvent::Record(r));
                ack = Some(if accepted { result::OK } else { result::FAILURE });
            }
            Message::Parameters(p) => {
                let mut r = self.record(Kind::CommandResponse, header);
                r.attributes.set("reply_serial", p.reply_serial);
                let mut params = Map::new();
                for item in p.iter() {
                    match item {
                        Ok((param, value)) => {
                            params.insert(format!("0x{param:04x}"), ParamValue::read(param, value).to_json());
                        }
                        Err(tail) => r.attributes.set("parameters_truncated", to_hex(tail)),
                    }
                }
                r.attributes.set("parameters", Value::Object(params));
                if let Some(id) = self.answered(Some(p.reply_serial), None) {
                    r.attributes.set("command", command_name(id));
                }
                out.push(StreamEvent::Record(r));
                ack = None;
            }
            Message::Attributes(a) => {
                let mut r = self.record(Kind::Info, header);
                self.attributes_record(&mut r, a);
                if let Some(id) = self.answered(None, Some(QUERY_ATTRIBUTES)) {
                    r.attributes.set("command", command_name(id));
                }
                out.push(StreamEvent::Record(r));
                ack = None;
            }
            Message::UpgradeResult { kind, result } => {
                let mut r = self.record(Kind::CommandResponse, header);
                r.attributes.set("upgrade_type", *kind);
                r.attributes.set(
                    "upgrade_result",
                    match result {
                        0 => "ok",
                        1 => "failed",
                        2 => "cancelled",
                        _ => "other",
                    },
                );
                out.push(StreamEvent::Record(r));
            }
            Message::Location(l) => {
                // Filled where it lies in `out`: the most frequent record, copied once.
                let r = push_record(out, self.record(Kind::Position, header));
                set_location(r, l, tz, edition);
            }
            Message::LocationReply { reply_serial, location } => {
                let mut r = self.record(Kind::Position, header);
                set_location(&mut r, location, tz, edition);
                r.attributes.set("reply_serial", *reply_serial);
                if let Some(id) = self.answered(Some(*reply_serial), None) {
                    r.attributes.set("command", command_name(id));
                }
                out.push(StreamEvent::Record(r));
                ack = None;
            }
            Message::Batch(b) => out.extend(self.batch_records(header, b).into_iter().map(StreamEvent::Record)),
            Message::Batch2(b) => out.extend(self.batch2_records(header, b).into_iter().map(StreamEvent::Record)),
            Message::VendorLocation { blind, location } => {
                let mut r = self.record(Kind::Position, header);
                set_vendor_location(&mut r, location);
                if *blind {
                    r.attributes.set("blind_area", true);
                }
                out.push(StreamEvent::Record(r));
                // These devices take no 0x8001: a 0x4401, and only when the report asks (§9).
                ack = None;
                if header.properties & VENDOR_WANTS_RESPONSE != 0 {
                    replies.push(vendor_response(&header.terminal, header.message_id, result::OK));
                }
            }
            Message::MediaEvent(e) => {
                let mut r = self.record(Kind::Info, header);
                set_media(&mut r, e);
                out.push(StreamEvent::Record(r));
            }
            Message::MediaData(d) => {
                let mut r = self.record(Kind::Info, header);
                set_media_data(&mut r, d, tz, edition);
                out.push(StreamEvent::Record(r));
                // A single-frame upload is finished now; a sub-packaged one gets its 0x8800
                // from the caller after the last package's 0x8001.
                if packages.is_none() {
                    let serial = self.serial();
                    replies.extend(media_upload_response(&header.terminal, serial, d.event.media_id, &[]));
                }
            }
            Message::Waybill(b) => {
                let mut r = self.record(Kind::Info, header);
                let content = if b.len() >= 4 { &b[4..] } else { &b[..] };
                r.attributes.set("waybill", text(content));
                out.push(StreamEvent::Record(r));
            }
            Message::DriverIdentity(d) => {
                let mut r = self.record(Kind::Info, header);
                set_driver(&mut r, d, tz);
                out.push(StreamEvent::Record(r));
            }
            Message::Passthrough { kind, data } => {
                let record = match PassthroughReport::parse(*kind, data) {
                    Some(report) => self.passthrough_record(header, &report),
                    None => {
                        let mut r = self.record(Kind::Info, header);
                        r.attributes.set_text_or_data(data);
                        r
                    }
                };
                let mut r = record;
                r.attributes.set("passthrough_type", *kind);
                out.push(StreamEvent::Record(r));
            }
            Message::Unknown(b) => {
                let mut r = self.record(Kind::Unknown, header);
                if let Some(e) = &layout_error {
                    r.attributes.set("layout_error", e.to_string());
                }
                if !b.is_empty() {
                    r.attributes.set("data", to_hex(b));
                }
                out.push(StreamEvent::Record(r));
            }
        }
        for event in &mut out[start..] {
            let StreamEvent::Record(r) = event else { continue };
            if !length_field_ok {
                r.attributes.set("length_field_ok", false);
            }
            if let Some(n) = packages {
                r.attributes.set("packages", n);
            }
        }
        out.extend(replies.into_iter().map(|r| StreamEvent::Reply(r.into())));
        ack
    }

    fn register_record(&self, header: &Header, reg: &Register<'_>, accepted: bool) -> Record {
        let mut r = self.record(Kind::Register, header);
        let a = &mut r.attributes;
        a.set("register_layout", reg.layout.as_str());
        a.set("province_id", reg.province);
        a.set("city_id", reg.city);
        set_text(&mut r, "manufacturer_id", reg.manufacturer);
        set_text(&mut r, "terminal_model", reg.model);
        set_text(&mut r, "terminal_id", reg.terminal_id);
        r.attributes.set("plate_color", reg.plate_color);
        // Colour 0 means the vehicle has no plate and the text is its VIN (docs/protocols/jt808.md §6.1).
        set_text(&mut r, if reg.plate_color == 0 { "vin" } else { "plate" }, reg.plate);
        r.attributes.set("accepted", accepted);
        r
    }

    fn attributes_record(&self, r: &mut Record, a: &TerminalAttributes<'_>) {
        r.attributes.set("terminal_type", a.terminal_type);
        set_text(r, "manufacturer_id", a.manufacturer);
        set_text(r, "terminal_model", a.model);
        set_text(r, "terminal_id", a.terminal_id);
        let iccid = crate::wire::bcd::digits_unpadded(a.iccid);
        if !iccid.is_empty() {
            r.attributes.set("iccid", iccid);
        }
        set_text(r, "hardware_version", a.hardware_version);
        set_text(r, "firmware_version", a.firmware_version);
        r.attributes.set("gnss_raw", a.gnss);
        r.attributes.set("comm_raw", a.comm);
    }

    /// A 0x0704 batch: a record per location, marked when it is the blind-area back-fill.
    fn batch_records(&self, header: &Header, b: &Batch<'_>) -> Vec<Record> {
        self.location_records(header, b.locations(), b.items, b.kind == 1)
    }

    /// A record per location of a batch, in order. At an item that is not one, the rest of
    /// the items is kept with the reason (the items before stand); a batch without items is
    /// one unknown record.
    fn location_records<'a>(
        &self,
        header: &Header,
        locations: impl Iterator<Item = Result<Location<'a>, LayoutError>>,
        items: &[u8],
        blind_area: bool,
    ) -> Vec<Record> {
        let tz = self.options.utc_offset_minutes;
        let mut records = Vec::new();
        for item in locations {
            let r = match item {
                Ok(l) => {
                    let mut r = self.record(Kind::Position, header);
                    set_location(&mut r, &l, tz, header.terminal.edition);
                    if blind_area {
                        r.attributes.set("blind_area", true);
                    }
                    r
                }
                Err(e) => {
                    let mut r = self.record(Kind::Unknown, header);
                    r.attributes.set("layout_error", e.to_string());
                    r.attributes.set("data", to_hex(items));
                    r
                }
            };
            records.push(r);
        }
        if records.is_empty() {
            let mut r = self.record(Kind::Unknown, header);
            r.attributes.set("layout_error", "a batch without items");
            records.push(r);
        }
        records
    }

    /// A pass-through that reports (0x0900 `F0`, `FF`): a position where it has one.
    fn passthrough_record(&self, header: &Header, report: &PassthroughReport<'_>) -> Record {
        let tz = self.options.utc_offset_minutes;
        match report {
            PassthroughReport::Vehicle { time, archive, vehicle_type, subtype, data, coordinates, extra } => {
                let mut r = self.record(Kind::Position, header);
                r.fix_time = time_from_bcd(*time, tz);
                let c = coordinates;
                r.valid = Some(c.fixed());
                if c.latitude != 0 || c.longitude != 0 {
                    r.latitude = Some(c.latitude_deg());
                    r.longitude = Some(c.longitude_deg());
                }
                r.attributes.set("ignition", c.status & 1 != 0);
                r.attributes.set("status_raw", c.status);
                set_vehicle_data(&mut r, data);
                if *archive {
                    r.attributes.set("blind_area", true);
                }
                r.attributes.set("vehicle_type", *vehicle_type);
                r.attributes.set("report_subtype", *subtype);
                if !extra.is_empty() {
                    r.attributes.set("extra", to_hex(extra));
                }
                r
            }
            PassthroughReport::Fix { time, latitude, longitude, altitude_m, speed_raw, course, extra } => {
                let mut r = self.record(Kind::Position, header);
                r.fix_time = time_from_bcd(*time, tz);
                r.latitude = Some(f64::from(*latitude) / 1e6);
                r.longitude = Some(f64::from(*longitude) / 1e6);
                r.altitude_m = Some(f64::from(*altitude_m));
                r.speed_kmh = Some(f64::from(*speed_raw) / 10.0);
                r.course_deg = Some(f64::from(*course));
                if !extra.is_empty() {
                    r.attributes.set("extra", to_hex(extra));
                }
                r
            }
        }
    }

    /// 0x0210: a record per location, or the battery form's status.
    fn batch2_records(&self, header: &Header, b: &Batch2<'_>) -> Vec<Record> {
        if let Batch2::Battery { level, time } = b {
            let mut r = self.record(Kind::Status, header);
            r.fix_time = time_from_bcd(*time, self.options.utc_offset_minutes);
            r.attributes.set("battery_level", *level);
            return vec![r];
        }
        self.location_records(header, b.locations(), b.items(), false)
    }

    fn text_frame(&mut self, frame: &[u8], out: &mut Vec<StreamEvent>) {
        let mut r = Record::new(Protocol::Jt808, Kind::Info, "text");
        r.device_id = self.terminal.as_ref().map(|(_, id)| id.clone());
        r.attributes.set("text", String::from_utf8_lossy(frame).into_owned());
        out.push(StreamEvent::Record(r));
    }

    fn finish_stream(&mut self, out: &mut Vec<StreamEvent>) {
        self.driver.flush::<Self>(out);
        self.abandon_assemblies(out);
    }
}

/// The events of a vehicle report (subtype 03) that have a name (§9).
fn vehicle_event(id: u8) -> Option<&'static str> {
    Some(match id {
        0x01 => "power_restored",
        0x02 => "power_cut",
        0x0E => "idle",
        0x1A => "hard_acceleration",
        0x1B => "hard_braking",
        0x1C => "hard_cornering",
        0x1D..=0x1F => "lane_change",
        0x23 => "fatigue",
        0x25 => "overspeed",
        0x26..=0x28 => "collision",
        0x31 | 0x32 => "door",
        _ => return None,
    })
}

/// A vehicle report's data: OBD values by id (numbers as sent, big-endian, for 1, 2 and 4
/// bytes; hex otherwise), trouble codes, events.
fn set_vehicle_data(r: &mut Record, data: &VehicleData<'_>) {
    match data {
        VehicleData::Values(values) => {
            let mut obd = Map::new();
            for (id, v) in values {
                let value: Value = match **v {
                    [a] => a.into(),
                    [a, b] => u16::from_be_bytes([a, b]).into(),
                    [a, b, c, d] => u32::from_be_bytes([a, b, c, d]).into(),
                    _ => to_hex(v).into(),
                };
                obd.insert(format!("0x{id:04x}"), value);
            }
            r.attributes.set("obd", Value::Object(obd));
        }
        VehicleData::TroubleCodes(codes) => {
            let codes: Vec<Value> = codes.iter().map(|c| text(c).trim().to_owned().into()).collect();
            r.attributes.set("dtcs", Value::Array(codes));
        }
        VehicleData::Events(ids) => {
            for name in ids.iter().filter_map(|&id| vehicle_event(id)) {
                r.add_alarm(name);
            }
            r.attributes.set("event_ids", ids.iter().map(|&i| Value::from(i)).collect::<Vec<_>>());
        }
    }
}

/// A vendor location (0x5501 / 0x5502, docs/protocols/jt808.md §9).
fn set_vendor_location(r: &mut Record, v: &VendorLocation<'_>) {
    r.fix_time = v.timestamp();
    r.valid = Some(v.fixed());
    if let (Some(lat), Some(lon)) = (v.latitude_deg(), v.longitude_deg()) {
        if lat != 0.0 || lon != 0.0 {
            r.latitude = Some(lat);
            r.longitude = Some(lon);
        }
    }
    r.speed_kmh = v.speed_kmh();
    r.course_deg = Some(v.course_deg());
    r.satellites = Some(u32::from(v.satellites));
    for (bit, name) in vendor_alarms(v.product) {
        if v.alarm & (1 << bit) != 0 {
            r.add_alarm(name);
        }
    }
    let a = &mut r.attributes;
    if v.alarm != 0 {
        a.set("alarm_raw", v.alarm);
    }
    match v.battery {
        level @ 0..=100 => a.set("battery_level", level),
        0xAA | 0xAB => a.set("charging", true),
        other => a.set("battery_raw", other),
    }
    if v.product == 3 && v.status & (1 << 5) != 0 {
        a.set("blocked", true);
    }
    if v.cell_id != 0 && v.lac != 0 {
        a.set("cell_id", v.cell_id);
        a.set("lac", v.lac);
    }
    a.set("gsm_signal", v.gsm_signal);
    a.set("odometer_m", u64::from(v.odometer_km) * 1000);
    a.set("product", v.product);
    a.set("status_raw", v.status);
    set_vendor_items(r, v);
}

/// The alarm bits of a vendor location, by product family (§9).
fn vendor_alarms(product: u8) -> &'static [(u16, &'static str)] {
    match product {
        1 | 2 => &[(0, "power_low")],
        3 => &[
            (0, "overspeed"),
            (1, "power_low"),
            (2, "vibration"),
            (3, "low_battery"),
            (5, "geofence_enter"),
            (6, "geofence_exit"),
        ],
        _ => &[],
    }
}

/// A vendor location's items: the known ones by name, the others as hex under their id.
fn set_vendor_items(r: &mut Record, v: &VendorLocation<'_>) {
    let mut others = Map::new();
    for item in v.items() {
        let (id, value) = match item {
            Ok(item) => item,
            Err(tail) => {
                r.attributes.set("items_truncated", to_hex(tail));
                break;
            }
        };
        match (id, value) {
            (0x02, &[hi, lo]) => r.altitude_m = Some(f64::from(i16::from_be_bytes([hi, lo]))),
            (0x0A, &[m0, m1, mnc]) => {
                r.attributes.set("mcc", u16::from_be_bytes([m0, m1]));
                r.attributes.set("mnc", mnc);
            }
            (0x0B, [command, rest @ ..]) => set_lock(r, *command, rest),
            (0x0C, &[x0, x1, y0, y1, z0, z1]) => {
                let tilt = [[x0, x1], [y0, y1], [z0, z1]].map(|w| Value::from(i16::from_be_bytes(w)));
                r.attributes.set("tilt", Value::Array(tilt.to_vec()));
            }
            (0x10, &[source]) => r.attributes.set("wake_source", source),
            (0xFC, &[fence]) => r.attributes.set("geofence_id", fence),
            _ => {
                others.insert(format!("0x{id:02x}"), to_hex(value).into());
            }
        }
    }
    if !others.is_empty() {
        r.attributes.set("vendor_items", Value::Object(others));
    }
}

/// Item 0x0B of a lock: the command, a card (4 bytes) or a password (6 characters), and, when
/// the item's length is even, the unlock result last.
fn set_lock(r: &mut Record, command: u8, rest: &[u8]) {
    let a = &mut r.attributes;
    a.set("lock_command", command);
    let len = rest.len() + 1;
    let credential = match len {
        5 | 6 => rest.get(..4).map(|card| {
            a.set("lock_card", u32::from_be_bytes([card[0], card[1], card[2], card[3]]));
            4
        }),
        7.. => rest.get(..6).map(|password| {
            a.set("lock_password", String::from_utf8_lossy(password).into_owned());
            6
        }),
        _ => Some(0),
    };
    if let (Some(used), true) = (credential, len.is_multiple_of(2)) {
        if let Some(result) = rest.get(used) {
            a.set("unlock_result", *result);
        }
    }
}

fn set_media(r: &mut Record, e: &MediaEvent) {
    let a = &mut r.attributes;
    a.set("media_id", e.media_id);
    a.set_opt("media_type", e.type_name());
    a.set_opt("media_format", e.format_name());
    a.set("media_event", e.event);
    a.set("media_channel", e.channel);
}

fn set_media_data(r: &mut Record, d: &MediaData<'_>, tz: i32, edition: Edition) {
    if let Some(l) = &d.location {
        set_location(r, l, tz, edition);
    }
    set_media(r, &d.event);
    r.attributes.set("media_size", d.data.len());
    r.attributes.set("media", to_hex(d.data));
}

fn set_driver(r: &mut Record, d: &DriverIdentity<'_>, tz: i32) {
    r.attributes.set(
        "driver_card",
        match d.state {
            1 => "inserted",
            2 => "removed",
            _ => "other",
        },
    );
    if let Some(t) = time_from_bcd(d.time, tz) {
        r.attributes.set("event_time", t.to_string());
    }
    if let Some(result) = d.read_result {
        r.attributes.set("card_read_result", result);
    }
    set_text(r, "driver_name", d.name);
    set_text(r, "driver_certificate", d.certificate);
    set_text(r, "driver_organization", d.organization);
    if let Some(v) = d.valid_until {
        let digits = to_hex(&v);
        if digits.bytes().all(|b| b.is_ascii_digit()) && digits != "00000000" {
            r.attributes.set("certificate_valid_until", format!("{}-{}-{}", &digits[..4], &digits[4..6], &digits[6..]));
        }
    }
    if let Some(id) = d.id_number {
        set_text(r, "driver_id_number", id);
    }
}

impl RecordDecoder for Jt808Decoder {
    fn protocol(&self) -> Protocol {
        Protocol::Jt808
    }

    fn command(&mut self, command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        let Downlink::Jt808(command) = command else {
            // Text has no one JT808 meaning (0x8300 shows it to the driver, 0x8900 tunnels
            // it to a vendor's module): the caller says which.
            return Err(DownlinkError::Unsupported("JT808 commands are typed (0x8300 text, 0x8900 pass-through, ...)"));
        };
        if self.terminal().is_none() {
            return Err(DownlinkError::NotReady);
        }
        if self.options.auth.is_some() && !self.authenticated {
            return Err(DownlinkError::NotAuthenticated);
        }
        let serial = self.next_serial;
        let bytes = self
            .command_frame(command)
            .ok_or_else(|| DownlinkError::Invalid(format!("0x{:04X} does not fit a frame", command.message_id())))?;
        Ok(FramedCommand { bytes, answer: Some(AnswerMatch { attribute: "reply_serial", value: u32::from(serial) }) })
    }

    fn set_now(&mut self, now: Timestamp) {
        self.now = Some(now);
    }

    fn take_frame_count(&mut self) -> u32 {
        self.driver.take_frames()
    }

    fn refused(&self) -> bool {
        self.refused
    }

    fn proven(&self) -> bool {
        self.options.auth.is_none() || self.authenticated
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        self.expire(out);
        let used = drive(self, buf, at_end, out);
        if at_end && self.options.transport == Transport::Tcp {
            self.abandon_assemblies(out);
        }
        used
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.finish_stream(out);
    }
}

impl FrameHandler for Jt808Decoder {
    type Framer = Jt808Framer;
    const PROTOCOL: &'static str = "JT808";

    fn driver(&mut self) -> &mut Driver<Jt808Framer> {
        &mut self.driver
    }

    #[inline]
    fn frame(&mut self, frame: &[u8], at: u64, consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
        if is_text(frame) {
            self.text_frame(frame, out);
            return Ok(1);
        }
        let escaped = inner(frame);
        // Flags alone (close-and-open) are not a frame and not an error.
        if escaped.is_empty() {
            return Ok(0);
        }
        let (start, _) = Self::rejected_span(frame, at);
        self.binary_frame(escaped, start, consumed, out).map(|()| 1)
    }

    /// The framer skips junk a piece at a time.
    fn merges(reason: &Reject, _len: usize) -> bool {
        reason.kind == RejectKind::Garbage
    }

    /// A bad frame is reported from its first byte after the opening flags.
    fn rejected_span(frame: &[u8], at: u64) -> (u64, usize) {
        let escaped = inner(frame);
        (at + (frame.len() - escaped.len()) as u64, escaped.len())
    }
}
