//! What a JT808 message becomes (docs/protocols/jt808.md §5–§6): its records, a function of
//! the message and of what the session settled about it, and what the platform answers it,
//! one table. Neither changes the session: registration, authentication and the matching of
//! answers to commands are settled before (`stream.rs`), and the answers are numbered and
//! framed after.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::message::LayoutError;
use super::message::{
    Auth, Batch, Batch2, DriverIdentity, GeneralResponse, Location, MediaData, MediaEvent, Message, Parameters,
    PassthroughReport, Register, TerminalAttributes, VehicleData, VendorLocation,
};
use super::*;
use crate::record::{Attributes, Kind, Protocol, Record, Timestamp};
use crate::stream::{push_record, StreamEvent};
use crate::wire::bits::ones;
use crate::wire::hex::to_hex;

/// What every record of one message shares.
pub(super) struct Context<'h> {
    pub header: &'h Header,
    pub device_id: Option<&'h Arc<str>>,
    /// The terminal's zone, for its BCD times.
    pub utc_offset_minutes: i32,
    /// Whether the header's terminal number is BCD digits (the session knows it already).
    pub number_is_bcd: bool,
}

impl Context<'_> {
    fn record(&self, kind: Kind) -> Record {
        let mut r = Record::new(Protocol::Jt808, kind, hex_id(self.header.message_id));
        r.device_id = self.device_id.cloned();
        self.fill(&mut r);
        r
    }

    /// A new record pushed to `out` and filled there (`push_record` says why).
    fn push<'o>(&self, kind: Kind, out: &'o mut Vec<StreamEvent>) -> &'o mut Record {
        let r = push_record(out, Protocol::Jt808, kind, hex_id(self.header.message_id), self.device_id.cloned());
        self.fill(r);
        r
    }

    /// What every record of the message carries from its header, beside the device.
    fn fill(&self, r: &mut Record) {
        let header = self.header;
        r.seq = Some(u32::from(header.serial));
        if let Edition::V2019 { version } = header.terminal.edition {
            r.attributes.set("protocol_version", version);
        }
        if !self.number_is_bcd {
            r.attributes.set("terminal_number", to_hex(header.terminal.number.as_bytes()));
        }
    }
}

/// What the session decided about a message before it is recorded and answered.
#[derive(Debug, Default)]
pub(super) struct Settled {
    /// 0x0100: the 0x8100 result and the code it carries; `None` when the code store cannot
    /// answer now (the terminal asks again).
    pub registration: Option<(u8, String)>,
    /// 0x0102: the code (and the allow-list) let the terminal in.
    pub authenticated: bool,
    /// The platform command this message answers, by id.
    pub command: Option<u16>,
}

/// An answer other than 0x8001, to be numbered and framed by the decoder.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer<'s> {
    /// 0x8004 with this time.
    ServerTime(Timestamp),
    /// 0x8100 with this result and code.
    Registration(u8, &'s str),
    /// 0x4401 (the vendor locations' answer).
    Vendor,
    /// 0x8800: this media upload is finished.
    MediaDone(u32),
}

/// What the platform sends for one whole message (docs/protocols/jt808.md §5), in one place:
/// `answer` first, then the 0x8001 with `ack`'s result. `packages` is set for a message that
/// came in sub-packages (their 0x8001s and the 0x8800 are the decoder's, per package).
pub(super) fn answer<'s>(
    message: &Message<'_>,
    header: &Header,
    settled: &'s Settled,
    now: Option<Timestamp>,
    packages: Option<u16>,
) -> (Option<Answer<'s>>, Option<u8>) {
    match message {
        // Answers to the platform are not answered.
        Message::GeneralResponse(_) | Message::Parameters(_) | Message::Attributes(_) => (None, None),
        Message::LocationReply { .. } => (None, None),
        // The codec reads no clock: without the caller's time there is no honest answer.
        Message::TimeQuery => (now.map(Answer::ServerTime), None),
        Message::Register(_) => {
            let registration = settled.registration.as_ref();
            (registration.map(|(result, code)| Answer::Registration(*result, code)), None)
        }
        Message::Auth(_) => (None, Some(if settled.authenticated { result::OK } else { result::FAILURE })),
        // These devices take no 0x8001: a 0x4401, and only when the report asks (§9).
        Message::VendorLocation { .. } => {
            ((header.properties & VENDOR_WANTS_RESPONSE != 0).then_some(Answer::Vendor), None)
        }
        // A single-frame upload is finished now.
        Message::MediaData(d) if packages.is_none() => (Some(Answer::MediaDone(d.event.media_id)), Some(result::OK)),
        _ => (None, Some(result::OK)),
    }
}

/// The records of one whole message, pushed to `out` in order.
pub(super) fn records(
    ctx: &Context<'_>,
    message: &Message<'_>,
    settled: &Settled,
    layout_error: Option<&LayoutError>,
    out: &mut Vec<StreamEvent>,
) {
    match message {
        // Filled where it lies in `out`: the most frequent record, copied once.
        Message::Location(l) => {
            let r = ctx.push(Kind::Position, out);
            set_location(r, l, ctx.utc_offset_minutes, ctx.header.terminal.edition);
        }
        Message::Batch(b) => batch_records(ctx, b, out),
        Message::Batch2(b) => batch2_records(ctx, b, out),
        Message::Register(reg) => {
            let accepted = settled.registration.as_ref().is_some_and(|(result, _)| *result == result::OK);
            out.push(StreamEvent::Record(register_record(ctx, reg, accepted)));
        }
        Message::Passthrough { kind, data } => out.push(StreamEvent::Record(passthrough(ctx, *kind, data))),
        _ => {
            let mut r = ctx.record(kind(message));
            fill(&mut r, ctx, message, settled, layout_error);
            out.push(StreamEvent::Record(r));
        }
    }
}

/// The kind of record each message makes.
fn kind(message: &Message<'_>) -> Kind {
    match message {
        Message::GeneralResponse(_) | Message::Parameters(_) | Message::UpgradeResult { .. } => Kind::CommandResponse,
        Message::Heartbeat(_) => Kind::Heartbeat,
        Message::Register(_) | Message::Deregister => Kind::Register,
        Message::TimeQuery => Kind::TimeRequest,
        Message::Auth(_) => Kind::Auth,
        Message::Location(_)
        | Message::LocationReply { .. }
        | Message::Batch(_)
        | Message::Batch2(_)
        | Message::VendorLocation { .. } => Kind::Position,
        Message::ResendRequest { .. }
        | Message::Attributes(_)
        | Message::MediaEvent(_)
        | Message::MediaData(_)
        | Message::Waybill(_)
        | Message::DriverIdentity(_)
        // A vehicle report in one makes a position (`passthrough`).
        | Message::Passthrough { .. } => Kind::Info,
        Message::Unknown(_) => Kind::Unknown,
    }
}

/// What a message that makes one record of its own writes into it.
fn fill(r: &mut Record, ctx: &Context<'_>, message: &Message<'_>, settled: &Settled, error: Option<&LayoutError>) {
    let (tz, edition) = (ctx.utc_offset_minutes, ctx.header.terminal.edition);
    match message {
        Message::GeneralResponse(g) => set_general_response(r, g),
        Message::Heartbeat(extra) => set_hex(r, "extra", extra),
        Message::Deregister => r.attributes.set("deregister", true),
        Message::TimeQuery => {}
        Message::ResendRequest { first_serial, indexes } => {
            r.attributes.set("resend_first_serial", *first_serial);
            r.attributes.set("resend_packages", indexes.clone());
        }
        Message::Auth(auth) => set_auth(r, auth, settled.authenticated),
        Message::Parameters(p) => set_parameters(r, p),
        Message::Attributes(a) => set_terminal_attributes(r, a),
        Message::UpgradeResult { kind, result } => {
            r.attributes.set("upgrade_type", *kind);
            r.attributes.set("upgrade_result", upgrade_outcome(*result));
        }
        Message::LocationReply { reply_serial, location } => {
            set_location(r, location, tz, edition);
            r.attributes.set("reply_serial", *reply_serial);
        }
        Message::VendorLocation { blind, location } => {
            set_vendor_location(r, location);
            if *blind {
                r.attributes.set("blind_area", true);
            }
        }
        Message::MediaEvent(e) => set_media(r, e),
        Message::MediaData(d) => set_media_data(r, d, tz, edition),
        Message::Waybill(b) => r.attributes.set("waybill", text(b.get(4..).unwrap_or(b))),
        Message::DriverIdentity(d) => set_driver(r, d, tz),
        Message::Unknown(b) => {
            if let Some(e) = error {
                r.attributes.set("layout_error", e.to_string());
            }
            set_hex(r, "data", b);
        }
        // Made by `records` itself.
        Message::Location(_)
        | Message::Batch(_)
        | Message::Batch2(_)
        | Message::Register(_)
        | Message::Passthrough { .. } => {}
    }
    let answers_command = matches!(
        message,
        Message::GeneralResponse(_) | Message::Parameters(_) | Message::Attributes(_) | Message::LocationReply { .. }
    );
    if let Some(id) = settled.command.filter(|_| answers_command) {
        r.attributes.set("command", command_name(id));
    }
}

/// Bytes in hex under `key`; nothing for none.
fn set_hex(r: &mut Record, key: &'static str, bytes: &[u8]) {
    if !bytes.is_empty() {
        r.attributes.set(key, to_hex(bytes));
    }
}

/// 0x0001: the command answered, its result.
fn set_general_response(r: &mut Record, g: &GeneralResponse) {
    r.attributes.set("reply_serial", g.reply_serial);
    r.attributes.set("reply_id", hex_id(g.reply_id));
    r.attributes.set("result", result::name(g.result).into_owned());
}

/// 0x0102: the code sent (and the 2019 edition's IMEI and software version), and whether
/// the session let the terminal in.
fn set_auth(r: &mut Record, auth: &Auth<'_>, accepted: bool) {
    r.attributes.set("auth_code", text(auth.code));
    if let Some(imei) = auth.imei {
        set_text(r, "imei", imei);
    }
    if let Some(v) = auth.software_version {
        set_text(r, "software_version", v);
    }
    r.attributes.set("accepted", accepted);
}

/// 0x0104: every parameter by its id, read by its type; a tail that is no whole item is
/// kept as hex.
fn set_parameters(r: &mut Record, p: &Parameters<'_>) {
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
}

/// 0x0108's result byte.
fn upgrade_outcome(result: u8) -> &'static str {
    match result {
        0 => "ok",
        1 => "failed",
        2 => "cancelled",
        _ => "other",
    }
}

/// 0x0900: a report this codec reads (its own record), else the data as text or hex.
fn passthrough(ctx: &Context<'_>, kind: u8, data: &[u8]) -> Record {
    let mut r = match PassthroughReport::parse(kind, data) {
        Some(report) => passthrough_record(ctx, &report),
        None => {
            let mut r = ctx.record(Kind::Info);
            r.attributes.set_text_or_data(data);
            r
        }
    };
    r.attributes.set("passthrough_type", kind);
    r
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
    // Made at the first unnamed item: dropping even an empty map walks it (3% of a record).
    let mut raw: Option<Map<String, Value>> = None;
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
            (0x12, 6) => area = Some(set_area(a, v)),
            (0x13, 7) => set_route_segment(a, v),
            (0x14, 4) => a.set("video_alarm_raw", be32(v)),
            (0x15, 4) => a.set("video_signal_loss_raw", be32(v)),
            (0x16, 4) => a.set("video_signal_blocked_raw", be32(v)),
            (0x17, 2) => a.set("storage_fault_raw", be16(v)),
            (0x18, 2) => a.set("abnormal_driving_raw", be16(v)),
            (0x25, 4) => a.set("vehicle_signals_raw", be32(v)),
            (0x2A, 2) => set_io_status(a, be16(v)),
            (0x2B, 4) => {
                a.set("adc0", be16(&v[2..]));
                a.set("adc1", be16(&v[..2]));
            }
            (0x30, 1) => a.set("gsm_signal", v[0]),
            (0x31, 1) => r.satellites = Some(u32::from(v[0])),
            // Common vendor items (docs/protocols/jt808.md §6.2, "seen in the wild").
            (0x51, n) if n >= 2 && n % 2 == 0 => set_temperatures(a, v),
            (0x56, 1..=2) => a.set("battery_level", u32::from(v[0]) * 10),
            (0x61, 2) => a.set("power_v", f64::from(be16(v)) / 100.0),
            (0x69, 2) => a.set("battery_v", f64::from(be16(v)) / 100.0),
            _ => raw_item(raw.get_or_insert_with(Map::new), item.id, v),
        }
    }
    if items.truncated() {
        r.attributes.set("items_truncated", true);
    }
    if let Some(raw) = raw.filter(|raw| !raw.is_empty()) {
        r.attributes.set("items", Value::Object(raw));
    }
    if let Some((kind, direction)) = area {
        refine_area_alarm(r, kind, direction);
    }
}

// The items from here to `set_temperatures` are rarer than the ones `set_items` reads in
// place, and out of line: inlined, they made its loop 10 instructions a frame dearer on
// the common items (mileage, satellites).

/// Item 0x12, the area or route an alarm is about: its kind and direction, returned.
#[inline(never)]
fn set_area(a: &mut Attributes, v: &[u8]) -> (u8, u8) {
    a.set("area_type", v[0]);
    a.set("area_id", be32(&v[1..5]));
    a.set("area_direction", if v[5] == 0 { "in" } else { "out" });
    (v[0], v[5])
}

/// Item 0x12 says which way the area or route alarm went.
#[inline(never)]
fn refine_area_alarm(r: &mut Record, kind: u8, direction: u8) {
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

/// Item 0x13, a route segment driven too short or too long.
#[inline(never)]
fn set_route_segment(a: &mut Attributes, v: &[u8]) {
    a.set("route_segment_id", be32(&v[..4]));
    a.set("route_segment_time_s", be16(&v[4..6]));
    a.set("route_segment_result", if v[6] == 0 { "too_short" } else { "too_long" });
}

/// Item 0x2A, the IO status word.
#[inline(never)]
fn set_io_status(a: &mut Attributes, x: u16) {
    a.set("io_status_raw", x);
    if x & 1 != 0 {
        a.set("deep_sleep", true);
    }
    if x & 2 != 0 {
        a.set("sleep", true);
    }
}

/// Item 0x51 (a vendor's): temperatures in tenths, 0xFFFF for a sensor not fitted.
#[inline(never)]
fn set_temperatures(a: &mut Attributes, v: &[u8]) {
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
        id::QUERY_ATTRIBUTES => "query_attributes",
        id::QUERY_LOCATION => "query_location",
        id::TRACKING => "tracking",
        id::TEXT => "text",
        id::VEHICLE_CONTROL => "vehicle_control",
        id::PASSTHROUGH_DOWN => "passthrough",
        _ => "other",
    }
}

fn register_record(ctx: &Context<'_>, reg: &Register<'_>, accepted: bool) -> Record {
    let mut r = ctx.record(Kind::Register);
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

fn set_terminal_attributes(r: &mut Record, a: &TerminalAttributes<'_>) {
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
fn batch_records(ctx: &Context<'_>, b: &Batch<'_>, out: &mut Vec<StreamEvent>) {
    location_records(ctx, b.locations(), b.items, b.kind == 1, out)
}

/// A record per location of a batch, in order. At an item that is not one, the rest of
/// the items is kept with the reason (the items before stand); a batch without items is
/// one unknown record.
fn location_records<'a>(
    ctx: &Context<'_>,
    locations: impl Iterator<Item = Result<Location<'a>, LayoutError>>,
    items: &[u8],
    blind_area: bool,
    out: &mut Vec<StreamEvent>,
) {
    let start = out.len();
    for item in locations {
        let r = match item {
            Ok(l) => {
                let mut r = ctx.record(Kind::Position);
                set_location(&mut r, &l, ctx.utc_offset_minutes, ctx.header.terminal.edition);
                if blind_area {
                    r.attributes.set("blind_area", true);
                }
                r
            }
            Err(e) => {
                let mut r = ctx.record(Kind::Unknown);
                r.attributes.set("layout_error", e.to_string());
                r.attributes.set("data", to_hex(items));
                r
            }
        };
        out.push(StreamEvent::Record(r));
    }
    if out.len() == start {
        let mut r = ctx.record(Kind::Unknown);
        r.attributes.set("layout_error", "a batch without items");
        out.push(StreamEvent::Record(r));
    }
}

/// A pass-through that reports (0x0900 `F0`, `FF`): a position where it has one.
fn passthrough_record(ctx: &Context<'_>, report: &PassthroughReport<'_>) -> Record {
    let tz = ctx.utc_offset_minutes;
    match report {
        PassthroughReport::Vehicle { time, archive, vehicle_type, subtype, data, coordinates, extra } => {
            let mut r = ctx.record(Kind::Position);
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
            let mut r = ctx.record(Kind::Position);
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
fn batch2_records(ctx: &Context<'_>, b: &Batch2<'_>, out: &mut Vec<StreamEvent>) {
    if let Batch2::Battery { level, time } = b {
        let mut r = ctx.record(Kind::Status);
        r.fix_time = time_from_bcd(*time, ctx.utc_offset_minutes);
        r.attributes.set("battery_level", *level);
        out.push(StreamEvent::Record(r));
        return;
    }
    location_records(ctx, b.locations(), b.items(), false, out)
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
