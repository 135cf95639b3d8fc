//! What a GT06 message becomes (docs/protocols/gt06.md §4–§5): its record, a function of the
//! message and of the session's login, and what the device is answered, one table
//! ([`answer`]). Neither changes the session: the login's IMEI and zone and the matching of
//! command replies are settled before (`stream.rs`).

use std::sync::Arc;

use bitvec::order::Lsb0;
use bitvec::view::BitView;
use serde_json::{json, Value};

use super::frame::Integrity;
use super::message::{
    info_alarm, Az735Report, Cell, CommandReply, CurrentPosition, Gps8Report, Heartbeat, LayoutError, LbsReport,
    Lw4gReport, Message, Module, Sr411Report, StatusBlock, StatusFixReport, WifiAp, WifiLbs, X1Report,
};
use super::*;
use crate::record::{Kind, Protocol, Record, Timestamp};
use crate::stream::{push_record, Reply, StreamEvent};
use crate::wire::hex::to_hex;

/// What the record of one frame takes from the session.
pub(super) struct Context<'f> {
    pub frame: &'f Frame<'f>,
    /// The login's IMEI.
    pub device_id: Option<&'f Arc<str>>,
    /// The login's zone: the v1 types' times are in it.
    pub utc_offset_minutes: i32,
}

impl Context<'_> {
    /// A new record for the frame, pushed to `out` and filled there (`push_record` says why).
    fn record<'o>(&self, kind: Kind, out: &'o mut Vec<StreamEvent>) -> &'o mut Record {
        let frame = self.frame;
        let message_type = crate::wire::hex::byte_label(frame.protocol);
        let r = push_record(out, Protocol::Gt06, kind, message_type, self.device_id.cloned());
        r.seq = frame.serial.map(u32::from);
        match frame.integrity {
            Integrity::Verified => {}
            Integrity::Bad => r.attributes.set("crc_ok", false),
            Integrity::Absent => r.attributes.set("checksum_missing", true),
            Integrity::Unchecked => r.attributes.set("crc_ok", false),
        }
        r
    }
}

/// The record of one frame's message, pushed to `out`. `command` is the text of the command
/// a reply answers, when one was pending.
pub(super) fn record<'o>(
    ctx: &Context<'_>,
    message: &Message<'_>,
    layout_error: Option<&LayoutError>,
    command: Option<String>,
    out: &'o mut Vec<StreamEvent>,
) -> &'o mut Record {
    let p = ctx.frame.protocol;
    let tz = if local_time(p) { ctx.utc_offset_minutes } else { 0 };
    let r = ctx.record(kind(message), out);
    match message {
        Message::Login(login, extra) => set_login(r, login, extra),
        Message::Location { fix, cell, acc, upload_mode, reupload, mileage, extra } => {
            set_fix(r, fix, tz);
            if let Some(cell) = cell {
                set_cell(r, cell);
            }
            if let Some(acc) = acc {
                r.attributes.set("ignition", *acc != 0);
            }
            r.attributes.set_opt("upload_mode", *upload_mode);
            r.attributes.set_opt("buffered", reupload.map(|v| v != 0));
            r.attributes.set_opt("odometer_m", *mileage);
            if p == STATUS_2 {
                set_vl103_card(r, extra);
            }
            set_extra(r, extra);
        }
        Message::Alarm { fix, lbs, status, fence, extra } => {
            set_alarm(r, Some((fix, tz)), Message::alarm_cell(lbs, p), status, *fence, extra)
        }
        Message::AlarmJc { time, position, code, extra } => set_alarm_jc(r, *time, *position, *code, extra, tz),
        Message::Heartbeat(h) => set_heartbeat(r, h),
        Message::LbsStatus { cell, status, extra } => set_alarm(r, None, Some(*cell), status, None, extra),
        Message::Lbs(report) | Message::LbsCounted { report, .. } => set_lbs(r, report, tz),
        Message::Sr411(x) => set_sr411(r, x, tz),
        Message::Lw4g(x) => set_lw4g(r, x, tz),
        Message::Modular { modules, extra } => {
            set_modules(r, modules);
            set_extra(r, extra);
        }
        Message::Az735(x) => set_az735(r, x, p, tz),
        Message::StatusFix(x) => set_status_fix(r, x, tz),
        Message::Gps8(x) => set_gps8(r, x, tz),
        Message::Wifi(w) => set_wifi(r, w),
        Message::AddressRequest { fix, phone, extra } => set_address_request(r, Where::Fix(fix, tz), phone, extra),
        Message::LbsAddressRequest { cell, phone, extra } => set_address_request(r, Where::Cell(cell), phone, extra),
        Message::Serial { kind, data } => set_serial(r, *kind, data),
        Message::TimeRequest => {}
        Message::Info(info) => set_info(r, info.subtype, info.data),
        Message::X1(x) => set_x1(r, x, tz),
        Message::CommandReply(reply) => set_command_reply(r, reply, command, ctx.utc_offset_minutes),
        Message::Unknown(content) => {
            r.attributes.set_opt("layout_error", layout_error.map(ToString::to_string));
            r.attributes.set_opt("data", (!content.is_empty()).then(|| to_hex(content)));
        }
    }
    r
}

/// An alarm (0x16/0x26/0x27/0xA4: a fix, the cell its LBS block holds, the status block, a
/// fence) or a cell's status (0x19/0xA5: the cell and the status block).
fn set_alarm(
    r: &mut Record,
    fix: Option<(&GpsFix, i32)>,
    cell: Option<Cell>,
    status: &StatusBlock,
    fence: Option<u8>,
    extra: &[u8],
) {
    if let Some((fix, tz)) = fix {
        set_fix(r, fix, tz);
    }
    if let Some(cell) = cell {
        set_cell(r, &cell);
    }
    set_status(r, status);
    r.attributes.set_opt("geofence_id", fence);
    set_extra(r, extra);
}

/// The SR411 mini's 0x24: a fix, a cell, ignition and the two voltages.
fn set_sr411(r: &mut Record, x: &Sr411Report<'_>, tz: i32) {
    set_fix(r, &x.fix, tz);
    set_cell(r, &x.cell);
    r.attributes.set("battery_v", f64::from(x.battery_centivolts) / 100.0);
    r.attributes.set("ignition", x.ignition != 0);
    r.attributes.set("power_v", f64::from(x.power_centivolts) / 100.0);
    set_extra(r, x.extra);
}

/// 0x2C: the cells and access points seen; the first cell is the serving one.
fn set_wifi(r: &mut Record, w: &WifiLbs) {
    r.fix_time = w.timestamp();
    if let Some(serving) = w.cells.first() {
        set_cell(r, serving);
    }
    r.attributes.set("cells", Value::Array(w.cells.iter().map(cell_json).collect()));
    r.attributes.set("wifi", wifi_json(&w.wifi));
}

/// Where an address request says the device is.
enum Where<'a> {
    Fix(&'a GpsFix, i32),
    Cell(&'a Cell),
}

/// 0x1A/0x2A (at a fix) and 0xA7 (at a cell): the device asks for its address, to be sent
/// to `phone`.
fn set_address_request(r: &mut Record, at: Where<'_>, phone: &[u8], extra: &[u8]) {
    match at {
        Where::Fix(fix, tz) => set_fix(r, fix, tz),
        Where::Cell(cell) => set_cell(r, cell),
    }
    r.attributes.set("address_request", true);
    set_phone(r, phone);
    set_extra(r, extra);
}

/// A reply to a command (`command`, its text, when one was pending); a position reply's
/// place read from its text, in the login's zone.
fn set_command_reply(r: &mut Record, reply: &CommandReply<'_>, command: Option<String>, utc_offset_minutes: i32) {
    if let Some(at) = CurrentPosition::parse(&reply.text) {
        set_current_position(r, &at, utc_offset_minutes);
    }
    r.attributes.set("server_flag", reply.server_flag);
    r.attributes.set("text", reply.text.clone());
    r.attributes.set_opt("command", command);
    set_extra(r, reply.extra);
}

/// What kind of record each message makes.
fn kind(message: &Message<'_>) -> Kind {
    match message {
        Message::Login(..) => Kind::Login,
        Message::Heartbeat(_) => Kind::Heartbeat,
        Message::LbsStatus { .. } | Message::LbsAddressRequest { .. } => Kind::Status,
        Message::Serial { .. } | Message::Info(_) => Kind::Info,
        Message::TimeRequest => Kind::TimeRequest,
        Message::CommandReply(_) => Kind::CommandResponse,
        Message::Unknown(_) => Kind::Unknown,
        // A fix module of zeros (a device without a fix yet) is no position.
        Message::Modular { modules, .. } => {
            let fixed = modules
                .iter()
                .any(|m| m.kind == module::FIX && m.value.len() >= FIX_MODULE_LEN && m.value[..4] != [0, 0, 0, 0]);
            if fixed {
                Kind::Position
            } else {
                Kind::Status
            }
        }
        Message::Az735(x) if x.fix.is_none() => Kind::Status,
        Message::Location { .. }
        | Message::Alarm { .. }
        | Message::AlarmJc { .. }
        | Message::Lbs(_)
        | Message::LbsCounted { .. }
        | Message::Sr411(_)
        | Message::Lw4g(_)
        | Message::Az735(_)
        | Message::StatusFix(_)
        | Message::Gps8(_)
        | Message::Wifi(_)
        | Message::AddressRequest { .. }
        | Message::X1(_) => Kind::Position,
    }
}

/// 0x01: the device's type and, in the extended login, its time zone.
fn set_login(r: &mut Record, login: &Login, extra: &[u8]) {
    r.attributes.set_opt("type_id", login.type_id);
    if let Some(minutes) = login.utc_offset_minutes() {
        let sign = if minutes < 0 { '-' } else { '+' };
        let m = minutes.unsigned_abs();
        r.attributes.set("utc_offset", format!("{sign}{:02}:{:02}", m / 60, m % 60));
    }
    set_extra(r, extra);
}

/// JC's alarm (0x95): a time, maybe a position without a GPS information byte, and a code.
fn set_alarm_jc(
    r: &mut Record,
    time: [u8; 6],
    position: Option<(u32, u32, u16)>,
    code: AlarmCode,
    extra: &[u8],
    tz: i32,
) {
    r.fix_time = Timestamp::from_local_fields(time, tz);
    if let Some((lat, lon, course_status)) = position {
        let fix =
            GpsFix { time, length_satellites: 0, latitude_raw: lat, longitude_raw: lon, speed_kmh: 0, course_status };
        // This position carries no GPS information byte: the bit alone says.
        r.valid = Some(fix.positioned());
        r.latitude = Some(fix.latitude());
        r.longitude = Some(fix.longitude());
        r.course_deg = Some(f64::from(fix.course()));
    }
    r.alarms.push(code.jc_name(position.is_some()).into());
    r.attributes.set("alarm_raw", code.0);
    set_extra(r, extra);
}

/// The heartbeats: 0x13 and 0x23 with terminal information, 0x36 as status and modules (or
/// its bytes, from a model not known here).
fn set_heartbeat(r: &mut Record, h: &Heartbeat<'_>) {
    match h {
        Heartbeat::Status { info, voltage_level, gsm_signal, alarm_language, extra } => {
            set_terminal_info(r, *info);
            r.attributes.set("battery_level", *voltage_level);
            r.attributes.set("gsm_signal", *gsm_signal);
            if let Some([alarm, _language]) = alarm_language {
                set_alarm_code(r, AlarmCode(*alarm));
            }
            set_extra(r, extra);
        }
        Heartbeat::Voltage { info, centivolts, gsm_signal, extra } => {
            set_terminal_info(r, *info);
            r.attributes.set("battery_v", f64::from(*centivolts) / 100.0);
            r.attributes.set("gsm_signal", *gsm_signal);
            set_extra(r, extra);
        }
        Heartbeat::Modules { status, modules } => {
            set_status(r, status);
            set_heartbeat_modules(r, modules);
        }
        Heartbeat::Opaque(bytes) => set_extra(r, bytes),
    }
}

/// Serial data passed through (0x9B): text when it reads as a line, else hex.
fn set_serial(r: &mut Record, kind: u8, data: &[u8]) {
    r.attributes.set("serial_type", kind);
    // Text lines come with their CR LF; the text is kept without it.
    let line = data.strip_suffix(b"\r\n").unwrap_or(data);
    if !line.is_empty() && line.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        r.attributes.set("text", String::from_utf8_lossy(line).into_owned());
    } else {
        r.attributes.set_text_or_data(data);
    }
}

/// Information transfer (0x94) by subtype.
fn set_info(r: &mut Record, subtype: u8, d: &[u8]) {
    r.attributes.set("info_type", subtype);
    match (subtype, d.len()) {
        (0x00, 2..) => r.attributes.set("power_v", f64::from(u16::from_be_bytes([d[0], d[1]])) / 100.0),
        (0x04, _) => r.attributes.set("status_sync", String::from_utf8_lossy(d).into_owned()),
        (0x05, 1..) => {
            r.attributes.set("door", d[0] & 0x01 != 0);
            r.attributes.set("door_trigger_high", d[0] & 0x02 != 0);
            r.attributes.set("io", d[0] & 0x04 != 0);
        }
        (0x0A, 26..) => {
            r.attributes.set("imei", crate::wire::bcd::digits_unpadded(&d[..8]).trim_start_matches('0').to_owned());
            r.attributes.set("imsi", crate::wire::bcd::digits_unpadded(&d[8..16]));
            r.attributes.set("iccid", crate::wire::bcd::digits_unpadded(&d[16..26]));
        }
        _ => r.attributes.set_text_or_data(d),
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
    let bits = info.view_bits::<Lsb0>();
    r.attributes.set("output_cut", bits[7]);
    r.attributes.set("gps_tracking", bits[6]);
    r.attributes.set("charging", bits[2]);
    r.attributes.set("ignition", bits[1]);
    r.attributes.set("armed", bits[0]);
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

/// A cells report (0x18, 0x28, 0x24, 0x2C, 0xA1, 0xA2): the time, the serving cell, every
/// cell, access points.
fn set_lbs(r: &mut Record, report: &LbsReport<'_>, tz: i32) {
    r.fix_time = Timestamp::from_local_fields(report.time, tz);
    // Empty neighbour slots are sent as LAC 0.
    let cells: Vec<&Cell> = report.cells.iter().filter(|c| c.lac != 0).collect();
    if let Some(serving) = cells.first() {
        set_cell(r, serving);
    }
    r.attributes.set("cells", Value::Array(cells.iter().map(|c| cell_json(c)).collect()));
    r.attributes.set("timing_advance", report.timing_advance);
    if !report.wifi.is_empty() {
        r.attributes.set("wifi", wifi_json(&report.wifi));
    }
    set_extra(r, report.extra);
}

/// The LW4G's 0xA2 (§5.10).
fn set_lw4g(r: &mut Record, x: &Lw4gReport, tz: i32) {
    set_fix(r, &x.fix, tz);
    set_cell(r, &x.cell);
    set_terminal_info(r, x.info);
    set_alarm_code(r, AlarmCode(x.alarm));
    let a = &mut r.attributes;
    // A level 0–6 as the status blocks send it, or a percentage.
    match x.battery {
        level @ 0..=6 => a.set("battery_level", level),
        percent => a.set("battery_percent", percent),
    }
    a.set("engine_seconds", x.engine_seconds);
    a.set("gsm_signal", x.gsm_signal);
    a.set("inputs", x.inputs);
    a.set("network", x.network);
    a.set("odometer_m", x.odometer_m);
    a.set("power_v", f64::from(x.power_centivolts) / 100.0);
}

/// The module types this codec reads: of 0x70 (§5.11), and of the 0x36 heartbeat (§5.14),
/// which numbers them the same way.
mod module {
    pub const ICCID: u16 = 0x03;
    pub const SATELLITES: u16 = 0x09;
    pub const SATELLITES_VISIBLE: u16 = 0x0A;
    pub const CELL: u16 = 0x11;
    pub const BATTERY: u16 = 0x18;
    pub const HDOP: u16 = 0x28;
    pub const INDEX: u16 = 0x29;
    pub const INPUTS: u16 = 0x2A;
    pub const EVENT: u16 = 0x2B;
    pub const ODOMETER: u16 = 0x2E;
    pub const FIX: u16 = 0x33;
    pub const STARTUP: u16 = 0x32;
    pub const BATTERY_PERCENT: u16 = 0x6A;
}

/// A 0x36 heartbeat's modules: battery voltage, start-up status and battery percentage by
/// name, any other as hex under its type (as 0x70 keeps them).
fn set_heartbeat_modules(r: &mut Record, modules: &[Module<'_>]) {
    let mut others = serde_json::Map::new();
    for m in modules {
        let v = m.value;
        match (m.kind, v.len()) {
            (module::BATTERY, 2) => r.attributes.set("battery_v", f64::from(u16::from_be_bytes([v[0], v[1]])) / 100.0),
            (module::STARTUP, 1) => r.attributes.set("startup_status", v[0]),
            (module::BATTERY_PERCENT, 1) => r.attributes.set("battery_percent", v[0]),
            _ => {
                others.insert(format!("0x{:04x}", m.kind), to_hex(v).into());
            }
        }
    }
    if !others.is_empty() {
        r.attributes.set("modules", Value::Object(others));
    }
}

/// The VL103's 0x36 position ends with 22 bytes: 14 whose layout is not published, then the
/// RFID card read (8, zeros for none), as Traccar reads it (§5.14). The whole tail stays in
/// `extra`; the card is also its own attribute.
fn set_vl103_card(r: &mut Record, tail: &[u8]) {
    const TAIL_LEN: usize = 22;
    const CARD_AT: usize = 14;
    if tail.len() == TAIL_LEN && tail[CARD_AT..].iter().any(|&b| b != 0) {
        r.attributes.set("driver_id", to_hex(&tail[CARD_AT..]));
    }
}

/// 0x32 in a short frame: the fix, its cell, the status block and the altitude.
fn set_status_fix(r: &mut Record, x: &StatusFixReport<'_>, tz: i32) {
    set_fix(r, &x.fix, tz);
    if let Some(cell) = x.cell() {
        set_cell(r, &cell);
    }
    set_status(r, &x.status);
    r.altitude_m = x.altitude_m.map(f64::from);
    set_extra(r, x.extra);
}

/// 0x38: the fix, the cell with its type and signal, and the upload flags.
fn set_gps8(r: &mut Record, x: &Gps8Report<'_>, tz: i32) {
    set_fix(r, &x.fix, tz);
    r.attributes.set("buffered", x.reupload != 0);
    set_cell(r, &x.cell);
    r.attributes.set("cell_type", x.cell_type);
    r.attributes.set("gsm_signal", x.signal);
    r.attributes.set("upload_mode", x.upload_mode);
    set_extra(r, x.extra);
}

/// A fix module: UTC seconds (4), satellites (1), altitude (2), latitude and longitude (4
/// each, as a GPS block has them), speed (1), course and status (2).
const FIX_MODULE_LEN: usize = 18;

/// A 0x70 frame's modules: the ones this codec reads by name, the others as hex under their
/// type.
fn set_modules(r: &mut Record, modules: &[Module<'_>]) {
    let mut others = serde_json::Map::new();
    for m in modules {
        let v = m.value;
        match (m.kind, v.len()) {
            (module::FIX, FIX_MODULE_LEN..) if v[..4] != [0, 0, 0, 0] => set_fix_module(r, v),
            (module::ICCID, 10) => r.attributes.set("iccid", to_hex(v)),
            (module::SATELLITES, 1) => r.satellites = Some(u32::from(v[0])),
            (module::SATELLITES_VISIBLE, 1) => r.attributes.set("satellites_visible", v[0]),
            (module::CELL, 10) => {
                let cell = Cell {
                    mcc: u16::from_be_bytes([v[0], v[1]]),
                    mnc: u16::from_be_bytes([v[2], v[3]]),
                    mnc_wide: true,
                    lac: u32::from(u16::from_be_bytes([v[4], v[5]])),
                    cell_id: u64::from(u32::from_be_bytes([0, v[6], v[7], v[8]])),
                    rssi: Some(v[9]),
                };
                if cell.cell_id != 0 {
                    set_cell(r, &cell);
                }
            }
            (module::BATTERY, 2) => r.attributes.set("battery_v", f64::from(u16::from_be_bytes([v[0], v[1]])) / 100.0),
            (module::HDOP, 1) => r.hdop = Some(f64::from(v[0]) / 10.0),
            (module::INDEX, 4) => r.attributes.set("index", u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            (module::INPUTS, 1) => {
                r.attributes.set("door", v[0] & 0x0F != 0);
                r.attributes.set("tamper", v[0] >> 4 != 0);
            }
            (module::EVENT, 1) => {
                r.attributes.set("event", v[0]);
                let alarm = match v[0] {
                    0x11 => Some("low_battery"),
                    0x12 => Some("low_power"),
                    0x13 => Some("power_cut"),
                    0x14 => Some("removing"),
                    _ => None,
                };
                if let Some(name) = alarm {
                    r.add_alarm(name);
                }
            }
            // Big-endian as everything else: read so, two reports of one device a few weeks
            // apart give 61,633 and 62,045 m (little-endian, 1.5 million km).
            (module::ODOMETER, 4) => r.attributes.set("odometer_m", u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => {
                others.insert(format!("0x{:04x}", m.kind), to_hex(v).into());
            }
        }
    }
    if !others.is_empty() {
        r.attributes.set("modules", Value::Object(others));
    }
}

/// The fix module of 0x70.
fn set_fix_module(r: &mut Record, v: &[u8]) {
    let seconds = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
    r.fix_time = Some(Timestamp::from_unix_ms(i64::from(seconds) * 1000, false));
    let altitude = i16::from_be_bytes([v[5], v[6]]);
    let fix = GpsFix {
        time: [0; 6],
        length_satellites: v[4],
        latitude_raw: u32::from_be_bytes([v[7], v[8], v[9], v[10]]),
        longitude_raw: u32::from_be_bytes([v[11], v[12], v[13], v[14]]),
        speed_kmh: v[15],
        course_status: u16::from_be_bytes([v[16], v[17]]),
    };
    r.valid = Some(fix.positioned());
    if fix.latitude_raw != 0 || fix.longitude_raw != 0 {
        r.latitude = Some(fix.latitude());
        r.longitude = Some(fix.longitude());
    }
    r.altitude_m = Some(f64::from(altitude));
    r.speed_kmh = Some(f64::from(fix.speed_kmh));
    r.course_deg = Some(f64::from(fix.course()));
    r.satellites = Some(u32::from(v[4]));
}

/// The AZ735's long 0x32 / 0x33 (§5.12).
fn set_az735(r: &mut Record, x: &Az735Report<'_>, protocol: u8, tz: i32) {
    match &x.fix {
        Some(fix) => set_fix(r, fix, tz),
        None => r.fix_time = Timestamp::from_local_fields(x.time, tz),
    }
    if let Some(cell) = x.cell() {
        set_cell(r, &cell);
        r.attributes.set_opt("gsm_signal", cell.rssi);
    }
    r.attributes.set("status_raw", x.status);
    if protocol == AZ735_ALARM {
        match x.status {
            0xA0 => r.attributes.set("armed", true),
            0xA1 => r.attributes.set("armed", false),
            0xA2 | 0xA3 => r.add_alarm("low_battery"),
            0xA4 => r.add_alarm("general"),
            0xA5 => r.add_alarm("door"),
            _ => {}
        }
    }
    set_extra(r, x.extra);
}

/// The number an address request names (padded with zeros).
fn set_phone(r: &mut Record, phone: &[u8]) {
    let number: String = phone.iter().filter(|b| b.is_ascii_graphic()).map(|&b| char::from(b)).collect();
    if !number.is_empty() {
        r.attributes.set("phone", number);
    }
}

fn set_extra(r: &mut Record, extra: &[u8]) {
    if !extra.is_empty() {
        r.attributes.set("extra", to_hex(extra));
    }
}

/// What the device is answered for each message (docs/protocols/gt06.md §4), in one place.
/// Acks echo the frame's serial, so frames of the CRC-less dialects, which have none, get none.
pub(super) fn answer(message: &Message<'_>, frame: &Frame<'_>, now: Option<Timestamp>) -> Option<Reply> {
    let p = frame.protocol;
    let ack = |long: bool| frame.serial.map(|serial| ack_reply(long, p, serial));
    match message {
        // v1 rule 7: every login is answered, known IMEI or not.
        Message::Login(..)
        | Message::Alarm { .. }
        | Message::AlarmJc { .. }
        | Message::Heartbeat(_)
        | Message::LbsStatus { .. }
        | Message::Lbs(_)
        | Message::LbsCounted { .. }
        | Message::Sr411(_)
        | Message::Lw4g(_)
        | Message::Az735(_)
        | Message::StatusFix(_) => ack(frame.long),
        // Positions in long frames are not acked.
        Message::Location { .. } | Message::X1(_) | Message::Gps8(_) if frame.long => None,
        Message::Location { .. } | Message::X1(_) | Message::Gps8(_) => ack(false),
        // Answered in a short frame, although the report comes in a long one.
        Message::Modular { .. } => ack(false),
        Message::Wifi(w) => Some(wifi_count_reply(p, w.bcd_time).into()),
        // No geocoder here: "no address", so the device does not wait for one.
        Message::AddressRequest { .. } | Message::LbsAddressRequest { .. } => Some(no_address_reply().into()),
        // The codec reads no clock: without the caller's time there is no honest answer.
        Message::TimeRequest => {
            now.zip(frame.serial).and_then(|(now, serial)| time_reply(now, serial)).map(Reply::from)
        }
        Message::Info(_) | Message::CommandReply(_) | Message::Serial { .. } => None,
        // Fielded servers ack every unknown short-frame type except the command range, and
        // devices expect it.
        Message::Unknown(_) if frame.long || (0x80..=0x82).contains(&p) => None,
        Message::Unknown(_) => ack(false),
    }
}
