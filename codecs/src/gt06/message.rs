//! The GT06 message catalogue (docs/protocols/gt06.md §3–§6): typed views of a frame's content, and their
//! encoders. Vendor bytes after a known layout are kept (`extra`), never dropped.
//!
//! ```text
//!  GPS block (18)   YY MM DD hh mm ss | len/sats | lat u32 | lon u32 | speed | course/status u16
//!  LBS (2G, 8|9)    MCC u16 (bit 15: MNC is 2 bytes) | MNC u8|u16 | LAC u16 | CI u24
//!  LBS (4G, 15|16)  MCC u16 | MNC u8|u16 | LAC u32 | CI u64
//!  status (5)       terminal info | voltage level | GSM level | alarm | language
//! ```

use super::frame::Integrity;
use super::*;
use crate::time::Timestamp;
use crate::wire::parse::{array, be_i16, be_u16, be_u32, be_u64, be_u8, read, take, u8_prefixed, Res, Short};
use bitvec::field::BitField;
use bitvec::order::Lsb0;
use bitvec::view::BitView;
use nom::combinator::{cond, map, opt};
use nom::multi::{count, length_count, length_data};
use nom::Parser;

/// Course/status word bits (docs/protocols/gt06.md §3).
const COURSE_MASK: u16 = 0x03FF;
const NORTH: u16 = 1 << 10;
const WEST: u16 = 1 << 11;
const POSITIONED: u16 = 1 << 12;
const DIFFERENTIAL: u16 = 1 << 13;
const ACC_PRESENT: u16 = 1 << 14;
const ACC_ON: u16 = 1 << 15;
/// MCC bit 15: the MNC that follows is two bytes.
const MNC_WIDE: u16 = 0x8000;
/// 1/30000 minute: latitude and longitude units.
const UNITS_PER_DEGREE: f64 = 1_800_000.0;
/// Cells in a multi-cell LBS report (serving + 6 neighbours).
const LBS_MULTI_CELLS: usize = 7;
const PHONE_LEN: usize = 21;

/// The 18-byte GPS block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpsFix {
    /// Year − 2000, month, day, hour, minute, second, as sent (binary, not BCD).
    pub time: [u8; 6],
    /// High nibble: GPS block length; low nibble: satellites.
    pub length_satellites: u8,
    pub latitude_raw: u32,
    pub longitude_raw: u32,
    pub speed_kmh: u8,
    pub course_status: u16,
}

impl GpsFix {
    pub const LEN: usize = 18;

    // One length check, then the fields from a fixed array. Read field by field, each read
    // checked, the fix was stored piecewise into an `Option` that was then reloaded whole
    // to move it into the message: a store-forwarding stall on every location frame.
    #[inline(always)]
    fn read(input: &[u8]) -> Res<'_, Self> {
        map(array::<{ Self::LEN }>, Self::from_bytes).parse_complete(input)
    }

    #[inline]
    fn from_bytes(b: [u8; Self::LEN]) -> Self {
        GpsFix {
            time: [b[0], b[1], b[2], b[3], b[4], b[5]],
            length_satellites: b[6],
            latitude_raw: u32::from_be_bytes([b[7], b[8], b[9], b[10]]),
            longitude_raw: u32::from_be_bytes([b[11], b[12], b[13], b[14]]),
            speed_kmh: b[15],
            course_status: u16::from_be_bytes([b[16], b[17]]),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time);
        out.push(self.length_satellites);
        out.extend_from_slice(&self.latitude_raw.to_be_bytes());
        out.extend_from_slice(&self.longitude_raw.to_be_bytes());
        out.push(self.speed_kmh);
        out.extend_from_slice(&self.course_status.to_be_bytes());
    }

    /// The fix time, in UTC, for a device whose clock runs `offset_minutes` ahead of UTC.
    #[inline]
    pub fn timestamp(&self, offset_minutes: i32) -> Option<Timestamp> {
        Timestamp::from_local_fields(self.time, offset_minutes)
    }
    pub fn satellites(&self) -> u8 {
        self.length_satellites & 0x0F
    }
    pub fn latitude(&self) -> f64 {
        let v = f64::from(self.latitude_raw) / UNITS_PER_DEGREE;
        if self.course_status & NORTH != 0 {
            v
        } else {
            -v
        }
    }
    pub fn longitude(&self) -> f64 {
        let v = f64::from(self.longitude_raw) / UNITS_PER_DEGREE;
        if self.course_status & WEST != 0 {
            -v
        } else {
            v
        }
    }
    pub fn course(&self) -> u16 {
        self.course_status & COURSE_MASK
    }
    pub fn positioned(&self) -> bool {
        self.course_status & POSITIONED != 0
    }
    /// A fix: the positioned bit set, and the GPS information byte not empty
    /// (docs/protocols/gt06.md §5.2: no GPS information and no satellites is no fix, whatever
    /// the bit says; either nibble alone is 0 on real fixes).
    pub fn valid(&self) -> bool {
        self.positioned() && self.length_satellites != 0
    }
    pub fn differential(&self) -> bool {
        self.course_status & DIFFERENTIAL != 0
    }
    /// ACC from bits 14–15, on the models that use them (bit 14 says bit 15 is meaningful).
    pub fn acc(&self) -> Option<bool> {
        (self.course_status & ACC_PRESENT != 0).then_some(self.course_status & ACC_ON != 0)
    }
}

/// One cell tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Without the wide-MNC flag.
    pub mcc: u16,
    pub mnc: u16,
    pub mnc_wide: bool,
    pub lac: u32,
    pub cell_id: u64,
    pub rssi: Option<u8>,
}

/// How a cell's LAC and CI are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellWidth {
    /// LAC u16, CI u24 (2G/3G).
    Classic,
    /// LAC u32, CI u64 (the 0xA0/0xA1/0xA4 4G types).
    Lte,
    /// MNC always u16, LAC u16, CI u32 (0x11).
    Wide,
}

/// MCC and MNC, and whether the MNC is two bytes (the MCC's top bit says so, or the type does).
fn operator(input: &[u8], always_wide: bool) -> Res<'_, (u16, u16, bool)> {
    let (input, mcc) = be_u16(input)?;
    let wide = always_wide || mcc & MNC_WIDE != 0;
    let (input, mnc) = if wide { be_u16(input)? } else { map(be_u8, u16::from).parse_complete(input)? };
    Ok((input, (mcc & !MNC_WIDE, mnc, wide)))
}

fn write_operator(out: &mut Vec<u8>, mcc: u16, mnc: u16, wide: bool) {
    out.extend_from_slice(&(if wide { mcc | MNC_WIDE } else { mcc }).to_be_bytes());
    if wide {
        out.extend_from_slice(&mnc.to_be_bytes());
    } else {
        out.push(mnc as u8);
    }
}

/// One cell of a multi-cell block: its LAC and CI in `width`, then its signal, under the
/// block's one operator (MCC, MNC, wide MNC).
fn rssi_cell(input: &[u8], (mcc, mnc, mnc_wide): (u16, u16, bool), width: CellWidth) -> Res<'_, Cell> {
    let (input, ((lac, cell_id), rssi)) = (|input| lac_ci(input, width), be_u8).parse_complete(input)?;
    Ok((input, Cell { mcc, mnc, mnc_wide, lac, cell_id, rssi: Some(rssi) }))
}

fn lac_ci(input: &[u8], width: CellWidth) -> Res<'_, (u32, u64)> {
    match width {
        CellWidth::Classic => {
            map((be_u16, array::<3>), |(lac, [a, b, c])| (u32::from(lac), u64::from(u32::from_be_bytes([0, a, b, c]))))
                .parse_complete(input)
        }
        CellWidth::Lte => (be_u32, be_u64).parse_complete(input),
        CellWidth::Wide => map((be_u16, be_u32), |(lac, ci)| (u32::from(lac), u64::from(ci))).parse_complete(input),
    }
}

fn write_lac_ci(out: &mut Vec<u8>, lac: u32, ci: u64, width: CellWidth) {
    match width {
        CellWidth::Classic => {
            out.extend_from_slice(&(lac as u16).to_be_bytes());
            out.extend_from_slice(&(ci as u32).to_be_bytes()[1..]);
        }
        CellWidth::Lte => {
            out.extend_from_slice(&lac.to_be_bytes());
            out.extend_from_slice(&ci.to_be_bytes());
        }
        CellWidth::Wide => {
            out.extend_from_slice(&(lac as u16).to_be_bytes());
            out.extend_from_slice(&(ci as u32).to_be_bytes());
        }
    }
}

impl Cell {
    fn read(input: &[u8], width: CellWidth) -> Res<'_, Self> {
        let (input, (mcc, mnc, mnc_wide)) = operator(input, width == CellWidth::Wide)?;
        let (input, (lac, cell_id)) = lac_ci(input, width)?;
        Ok((input, Cell { mcc, mnc, mnc_wide, lac, cell_id, rssi: None }))
    }

    fn write(&self, out: &mut Vec<u8>, width: CellWidth) {
        if width != CellWidth::Wide {
            write_operator(out, self.mcc, self.mnc, self.mnc_wide);
        } else {
            out.extend_from_slice(&self.mcc.to_be_bytes());
            out.extend_from_slice(&self.mnc.to_be_bytes());
        }
        write_lac_ci(out, self.lac, self.cell_id, width);
    }
}

/// The 5-byte status block of heartbeats and alarms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBlock {
    /// Terminal information: bit 7 output cut, 6 GPS on, 5–3 alarm, 2 charging, 1 ACC, 0 armed.
    pub info: u8,
    /// 0 (no power) … 6 (very high).
    pub voltage_level: u8,
    /// 0 (none) … 4 (strong).
    pub gsm_signal: u8,
    pub alarm: u8,
    pub language: u8,
}

impl StatusBlock {
    pub const LEN: usize = 5;

    fn read(input: &[u8]) -> Res<'_, Self> {
        map(array::<{ Self::LEN }>, |[info, voltage_level, gsm_signal, alarm, language]| StatusBlock {
            info,
            voltage_level,
            gsm_signal,
            alarm,
            language,
        })
        .parse_complete(input)
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.info, self.voltage_level, self.gsm_signal, self.alarm, self.language]);
    }
}

/// A Wi-Fi access point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WifiAp {
    pub mac: [u8; 6],
    pub rssi: u8,
}

impl WifiAp {
    fn read(input: &[u8]) -> Res<'_, Self> {
        map((array::<6>, be_u8), |(mac, rssi)| WifiAp { mac, rssi }).parse_complete(input)
    }
    pub fn mac_text(&self) -> String {
        let m = self.mac;
        format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// 0x01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub terminal_id: [u8; 8],
    /// v2: the model.
    pub type_id: Option<u16>,
    /// v2: bits 15–4 zone × 100, bit 3 west, bits 1–0 language.
    pub zone_language: Option<u16>,
}

impl Login {
    pub fn imei(&self) -> String {
        imei_from_bcd(&self.terminal_id)
    }

    /// The device's UTC offset in minutes from the time-zone extension (e.g. 800 → +480).
    pub fn utc_offset_minutes(&self) -> Option<i32> {
        let word = self.zone_language?;
        let hhmm = i32::from(word >> 4);
        let (hours, minutes) = (hhmm / 100, hhmm % 100);
        if hours > 14 || minutes > 59 {
            return None;
        }
        let offset = hours * 60 + minutes;
        Some(if word & 0x08 != 0 { -offset } else { offset })
    }
}

/// 0x13 / 0x23 / 0x36.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heartbeat<'a> {
    /// 0x13: the status block (alarm and language absent on short variants).
    Status { info: u8, voltage_level: u8, gsm_signal: u8, alarm_language: Option<[u8; 2]>, extra: &'a [u8] },
    /// 0x23 (GK310): info, battery voltage in 0.01 V, GSM level, language.
    Voltage { info: u8, centivolts: u16, gsm_signal: u8, extra: &'a [u8] },
    /// 0x36 of Jimi's 4G devices: the status block, then modules that fill the rest (type 2,
    /// length 1, value).
    Modules { status: StatusBlock, modules: Vec<Module<'a>> },
    /// A model-specific status layout kept as bytes (a 0x36 in neither known layout).
    Opaque(&'a [u8]),
}

/// 0x18 / 0x28 / 0x2C / 0xA1: several cells (and access points) without a GPS fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbsReport<'a> {
    pub time: [u8; 6],
    pub cells: Vec<Cell>,
    pub timing_advance: u8,
    pub wifi: Vec<WifiAp>,
    pub extra: &'a [u8],
}

/// 0x17 / 0x69 count frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiLbs {
    /// BCD YY MM DD hh mm ss, echoed in the reply.
    pub bcd_time: [u8; 6],
    pub wifi: Vec<WifiAp>,
    pub cells: Vec<Cell>,
}

impl WifiLbs {
    pub fn timestamp(&self) -> Option<Timestamp> {
        Timestamp::from_local_fields(crate::wire::bcd::values(self.bcd_time)?, 0)
    }
}

/// 0x94 information transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info<'a> {
    pub subtype: u8,
    pub data: &'a [u8],
}

/// 0x15 / 0x21 command replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReply<'a> {
    pub server_flag: u32,
    /// The reply text, decoded (ASCII, or UTF-16BE for 0x21 encoding 2).
    pub text: String,
    /// 0x21 encoding byte (1 ASCII, 2 UTF-16BE).
    pub encoding: Option<u8>,
    /// 0x15 whose command-length byte does not measure the text (some firmware sends 0 and
    /// pads the text with NULs): the byte as sent. The text then runs to the first NUL or
    /// to the language field.
    pub irregular_length: Option<u8>,
    /// 0x15: the language field and anything after the text.
    pub extra: &'a [u8],
}

/// An alarm code (byte 1 of the alarm/language word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmCode(pub u8);

impl AlarmCode {
    /// The contract's alarm name for the default (VL03) code table; `None` for "normal", the
    /// ACC changes (reported as ignition instead) and codes without a name.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "sos",
            0x02 => "power_cut",
            0x03 => "vibration",
            0x04 => "geofence_enter",
            0x05 => "geofence_exit",
            0x06 => "overspeed",
            0x09 => "tow",
            0x0A => "gps_blind_spot_enter",
            0x0B => "gps_blind_spot_exit",
            0x0C => "power_on",
            0x0D => "first_fix",
            0x0E => "low_external_battery",
            0x0F => "low_external_battery_protection",
            0x10 => "sim_changed",
            0x11 => "power_off",
            0x12 => "airplane_mode",
            0x13 => "tamper",
            0x14 => "door",
            0x15 => "low_battery_shutdown",
            0x16 => "sound",
            0x17 => "fake_base_station",
            0x18 => "cover_open",
            0x19 => "low_battery",
            0x20 => "deep_sleep",
            0x23 => "fall",
            0x29 => "harsh_acceleration",
            0x2A => "harsh_cornering_left",
            0x2B => "harsh_cornering_right",
            0x2C => "collision",
            0x30 => "harsh_braking",
            0x32 => "unplugged",
            _ => return None,
        })
    }

    /// FE / FF report ACC changes rather than alarms.
    pub fn ignition(self) -> Option<bool> {
        match self.0 {
            0xFE => Some(true),
            0xFF => Some(false),
            _ => None,
        }
    }

    /// The JC100/JC400 0x95 alarm table.
    pub fn jc_name(self, with_position: bool) -> &'static str {
        match self.0 {
            0x01 if with_position => "sos",
            0x80 => "vibration",
            0x87 => "overspeed",
            0x90 => "harsh_acceleration",
            0x91 => "harsh_braking",
            0x92 => "harsh_cornering",
            0x93 => "collision",
            _ => "general",
        }
    }
}

/// The alarm carried in bits 5–3 of a terminal-information byte.
pub fn info_alarm(info: u8) -> Option<&'static str> {
    match info.view_bits::<Lsb0>()[3..6].load_le::<u8>() {
        0b001 => Some("vibration"),
        0b010 => Some("power_cut"),
        0b011 => Some("low_battery"),
        0b100 => Some("sos"),
        0b110 => Some("geofence"),
        0b111 => Some("tamper"),
        _ => None,
    }
}

/// 0x34, the X1's report (docs/protocols/gt06.md §5.8): a fix (its first byte the
/// satellites, no length), the terminal information, an odometer, one cell with a 4-byte
/// CI and a 1-byte MNC, a driver id, two voltages, the port information (bits 20–23: the
/// number of ADCs), inputs, outputs and the ADCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X1Report<'a> {
    /// "Data and alarm": not read by any source this codec follows; kept.
    pub data_alarm: u32,
    pub fix: GpsFix,
    pub terminal_info: u16,
    pub odometer_m: u32,
    pub cell: Cell,
    /// 0: no driver.
    pub driver_id: u32,
    pub battery_centivolts: u16,
    pub power_centivolts: u16,
    pub port_info: u32,
    pub inputs: u8,
    pub outputs: u8,
    /// The ADC readings, two bytes each, in centivolts.
    pub adc: &'a [u8],
    pub extra: &'a [u8],
}

impl<'a> X1Report<'a> {
    /// How many ADC readings the port information announces.
    pub fn adc_count(port_info: u32) -> usize {
        ((port_info >> 20) & 0x0F) as usize
    }

    fn read(input: &'a [u8]) -> Res<'a, Self> {
        let (input, (data_alarm, fix, terminal_info, odometer_m)) =
            (be_u32, GpsFix::read, be_u16, be_u32).parse_complete(input)?;
        let (input, (mcc, mnc, lac, cell_id)) = (be_u16, be_u8, be_u16, be_u32).parse_complete(input)?;
        let cell = Cell {
            mcc,
            mnc: u16::from(mnc),
            mnc_wide: false,
            lac: u32::from(lac),
            cell_id: u64::from(cell_id),
            rssi: None,
        };
        let (input, (driver_id, battery_centivolts, power_centivolts, port_info, inputs, outputs)) =
            (be_u32, be_u16, be_u16, be_u32, be_u8, be_u8).parse_complete(input)?;
        let (extra, adc) = take(2 * Self::adc_count(port_info)).parse_complete(input)?;
        let report = X1Report {
            data_alarm,
            fix,
            terminal_info,
            odometer_m,
            cell,
            driver_id,
            battery_centivolts,
            power_centivolts,
            port_info,
            inputs,
            outputs,
            adc,
            extra,
        };
        Ok((extra, report))
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        if self.adc.len() != 2 * Self::adc_count(self.port_info) || self.cell.mnc > 0xFF || self.cell.lac > 0xFFFF {
            return None;
        }
        out.extend_from_slice(&self.data_alarm.to_be_bytes());
        self.fix.write(out);
        out.extend_from_slice(&self.terminal_info.to_be_bytes());
        out.extend_from_slice(&self.odometer_m.to_be_bytes());
        out.extend_from_slice(&self.cell.mcc.to_be_bytes());
        out.push(self.cell.mnc as u8);
        out.extend_from_slice(&(self.cell.lac as u16).to_be_bytes());
        out.extend_from_slice(&u32::try_from(self.cell.cell_id).ok()?.to_be_bytes());
        out.extend_from_slice(&self.driver_id.to_be_bytes());
        out.extend_from_slice(&self.battery_centivolts.to_be_bytes());
        out.extend_from_slice(&self.power_centivolts.to_be_bytes());
        out.extend_from_slice(&self.port_info.to_be_bytes());
        out.extend_from_slice(&[self.inputs, self.outputs]);
        out.extend_from_slice(self.adc);
        out.extend_from_slice(self.extra);
        Some(())
    }
}

/// The position some devices write into a command answer (0x21) when asked where they are:
/// `Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26  10:27:47`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentPosition {
    pub latitude: f64,
    pub longitude: f64,
    pub course_deg: f64,
    pub speed_kmh: f64,
    /// Year, month, day, hour, minute, second as written (the device's clock).
    pub time: [u16; 6],
}

impl CurrentPosition {
    /// Reads the answer's text; `None` when it is not such a position.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("Current position!")?;
        let mut fields = rest.split(',');
        let mut field = |name: &str| fields.next()?.strip_prefix(name).map(str::trim);
        let hemisphere = |v: &str, plus: char, minus: char| -> Option<f64> {
            let (sign, digits) = match v.chars().next()? {
                c if c == plus => (1.0, &v[1..]),
                c if c == minus => (-1.0, &v[1..]),
                _ => return None,
            };
            Some(sign * digits.parse::<f64>().ok().filter(|d| d.is_finite())?)
        };
        let latitude = hemisphere(field("Lat:")?, 'N', 'S').filter(|l| l.abs() <= 90.0)?;
        let longitude = hemisphere(field("Lon:")?, 'E', 'W').filter(|l| l.abs() <= 180.0)?;
        let course_deg = field("Course:")?.parse::<f64>().ok().filter(|c| (0.0..=360.0).contains(c))?;
        let speed_kmh = field("Speed:")?.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)?;
        let datetime = field("DateTime:")?;
        let numbers: Vec<u16> = datetime
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let time: [u16; 6] = numbers.try_into().ok()?;
        Some(CurrentPosition { latitude, longitude, course_deg, speed_kmh, time })
    }
}

/// 0x24 in the SR411 mini's frame (41 bytes of content, §5.9): a fix, a cell, ignition and
/// two voltages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sr411Report<'a> {
    pub fix: GpsFix,
    pub cell: Cell,
    pub ignition: u8,
    pub power_centivolts: u16,
    pub battery_centivolts: u16,
    pub extra: &'a [u8],
}

/// The content length that marks the SR411 mini's 0x24, and the Wanway S20's.
const SR411_LEN: usize = 41;
const WANWAY_S20_LEN: usize = 44;

/// 0xA2 in the LW4G's frame (59 bytes of content, §5.10): a fix, a 4G cell, a status and
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lw4gReport {
    pub fix: GpsFix,
    pub cell: Cell,
    pub network: u8,
    /// Terminal information (as in the status block).
    pub info: u8,
    pub power_centivolts: u16,
    /// 0–6 a level, up to 100 a percentage.
    pub battery: u8,
    pub gsm_signal: u8,
    pub alarm: u8,
    pub language: u8,
    pub odometer_m: u32,
    /// Engine hours, in seconds.
    pub engine_seconds: u32,
    pub terminal_id: [u8; 8],
    pub inputs: u16,
}

const LW4G_LEN: usize = 59;

impl Lw4gReport {
    fn read(input: &[u8]) -> Res<'_, Self> {
        let cell = |input| Cell::read(input, CellWidth::Lte);
        let mut fields = (GpsFix::read, cell, array::<2>, be_u16, array::<4>, be_u32, be_u32, array::<8>, be_u16);
        let (
            input,
            (fix, cell, [network, info], power_centivolts, state, odometer_m, engine_seconds, terminal_id, inputs),
        ) = fields.parse_complete(input)?;
        let [battery, gsm_signal, alarm, language] = state;
        let report = Lw4gReport {
            fix,
            cell,
            network,
            info,
            power_centivolts,
            battery,
            gsm_signal,
            alarm,
            language,
            odometer_m,
            engine_seconds,
            terminal_id,
            inputs,
        };
        Ok((input, report))
    }

    fn write(&self, out: &mut Vec<u8>) {
        self.fix.write(out);
        self.cell.write(out, CellWidth::Lte);
        out.extend_from_slice(&[self.network, self.info]);
        out.extend_from_slice(&self.power_centivolts.to_be_bytes());
        out.extend_from_slice(&[self.battery, self.gsm_signal, self.alarm, self.language]);
        out.extend_from_slice(&self.odometer_m.to_be_bytes());
        out.extend_from_slice(&self.engine_seconds.to_be_bytes());
        out.extend_from_slice(&self.terminal_id);
        out.extend_from_slice(&self.inputs.to_be_bytes());
    }
}

/// One module of a 0x70 frame (§5.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Module<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

/// 0x32 / 0x33 in long frames, the AZ735's (§5.12): a time, a fix after its length byte (none
/// when that byte is 0), a cell after its length byte and its signal (none when 0), then
/// counted blocks of more cells and access points, a status, and a counted reserved block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Az735Report<'a> {
    pub time: [u8; 6],
    pub gps_len: u8,
    /// The fix, its satellites byte where a [`GpsFix`] has its length-and-satellites byte.
    pub fix: Option<GpsFix>,
    pub lbs_len: u8,
    /// The cell block as sent (after its length byte) and the signal after it.
    pub lbs: Option<(&'a [u8], u8)>,
    pub towers: &'a [u8],
    pub wifi: &'a [u8],
    pub status: u8,
    pub reserved: &'a [u8],
    pub extra: &'a [u8],
}

impl<'a> Az735Report<'a> {
    fn read(input: &'a [u8]) -> Res<'a, Self> {
        let (input, (time, gps_len)) = (array::<6>, be_u8).parse_complete(input)?;
        let fix = map(
            (be_u8, be_u32, be_u32, be_u8, be_u16),
            |(length_satellites, latitude_raw, longitude_raw, speed_kmh, course_status)| GpsFix {
                time,
                length_satellites,
                latitude_raw,
                longitude_raw,
                speed_kmh,
                course_status,
            },
        );
        let (input, (fix, lbs_len)) = (cond(gps_len != 0, fix), be_u8).parse_complete(input)?;
        // The length counts itself (as the alarms' cell blocks do).
        let lbs = (take(usize::from(lbs_len).saturating_sub(1)), be_u8);
        let counted = (u8_prefixed, u8_prefixed, be_u8, u8_prefixed);
        let (extra, (lbs, (towers, wifi, status, reserved))) =
            (cond(lbs_len != 0, lbs), counted).parse_complete(input)?;
        Ok((extra, Az735Report { time, gps_len, fix, lbs_len, lbs, towers, wifi, status, reserved, extra }))
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        out.extend_from_slice(&self.time);
        out.push(self.gps_len);
        match (&self.fix, self.gps_len) {
            (None, 0) => {}
            (Some(f), 1..) => {
                out.push(f.length_satellites);
                out.extend_from_slice(&f.latitude_raw.to_be_bytes());
                out.extend_from_slice(&f.longitude_raw.to_be_bytes());
                out.push(f.speed_kmh);
                out.extend_from_slice(&f.course_status.to_be_bytes());
            }
            _ => return None,
        }
        out.push(self.lbs_len);
        match (self.lbs, self.lbs_len) {
            (None, 0) => {}
            (Some((block, rssi)), n) if usize::from(n) == block.len() + 1 => {
                out.extend_from_slice(block);
                out.push(rssi);
            }
            _ => return None,
        }
        for counted in [self.towers, self.wifi] {
            out.push(u8::try_from(counted.len()).ok()?);
            out.extend_from_slice(counted);
        }
        out.push(self.status);
        out.push(u8::try_from(self.reserved.len()).ok()?);
        out.extend_from_slice(self.reserved);
        out.extend_from_slice(self.extra);
        Some(())
    }

    /// The cell its block holds.
    pub fn cell(&self) -> Option<Cell> {
        let (block, rssi) = self.lbs?;
        let (_, cell) = Cell::read(block, CellWidth::Classic).ok()?;
        Some(Cell { rssi: Some(rssi), ..cell })
    }
}

/// 0x38: a fix, the upload mode, the re-upload flag, and one cell after its type byte; from
/// type 3 (4G) on, the cell's LAC is 4 bytes, its CI 8 and its signal 2, before it 2, 3 and 1
/// (docs/protocols/gt06.md §5.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gps8Report<'a> {
    pub fix: GpsFix,
    pub upload_mode: u8,
    pub reupload: u8,
    pub cell_type: u8,
    /// The cell without its signal, which is `signal` (two bytes from a 4G cell).
    pub cell: Cell,
    pub signal: u16,
    pub extra: &'a [u8],
}

impl<'a> Gps8Report<'a> {
    /// The first cell type sized as 4G.
    const LTE_FROM: u8 = 3;

    fn width(cell_type: u8) -> CellWidth {
        if cell_type >= Self::LTE_FROM {
            CellWidth::Lte
        } else {
            CellWidth::Classic
        }
    }

    fn read(input: &'a [u8]) -> Res<'a, Self> {
        let (input, (fix, upload_mode, reupload, cell_type)) =
            (GpsFix::read, be_u8, be_u8, be_u8).parse_complete(input)?;
        let width = Self::width(cell_type);
        let signal = |input| match width {
            CellWidth::Lte => be_u16(input),
            _ => map(be_u8, u16::from).parse_complete(input),
        };
        let (extra, ((mcc, mnc, mnc_wide), (lac, cell_id), signal)) =
            (|input| operator(input, false), |input| lac_ci(input, width), signal).parse_complete(input)?;
        let cell = Cell { mcc, mnc, mnc_wide, lac, cell_id, rssi: None };
        Ok((extra, Gps8Report { fix, upload_mode, reupload, cell_type, cell, signal, extra }))
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        self.fix.write(out);
        out.extend_from_slice(&[self.upload_mode, self.reupload, self.cell_type]);
        let width = Self::width(self.cell_type);
        self.cell.write(out, width);
        match width {
            CellWidth::Lte => out.extend_from_slice(&self.signal.to_be_bytes()),
            _ => out.push(u8::try_from(self.signal).ok()?),
        }
        out.extend_from_slice(self.extra);
        Some(())
    }
}

/// 0x32 in a short frame (the SL4X's): a fix, a cell block after its length byte (which does
/// not count itself, unlike the alarms'), the status block, and an altitude when exactly two
/// bytes are left (docs/protocols/gt06.md §5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFixReport<'a> {
    pub fix: GpsFix,
    /// The cell block as sent, after its length byte; [`StatusFixReport::cell`] reads it.
    pub lbs: &'a [u8],
    pub status: StatusBlock,
    pub altitude_m: Option<i16>,
    pub extra: &'a [u8],
}

impl<'a> StatusFixReport<'a> {
    /// A block this long has room for a two-byte MNC beside a four-byte CI (the SL4X's).
    const WIDE_BLOCK: usize = 10;

    fn read(input: &'a [u8]) -> Res<'a, Self> {
        let (rest, (fix, lbs, status)) = (GpsFix::read, u8_prefixed, StatusBlock::read).parse_complete(input)?;
        let (extra, altitude_m) = match rest.len() {
            2 => map(be_i16, Some).parse_complete(rest)?,
            _ => (rest, None),
        };
        Ok((extra, StatusFixReport { fix, lbs, status, altitude_m, extra }))
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        self.fix.write(out);
        out.push(u8::try_from(self.lbs.len()).ok()?);
        out.extend_from_slice(self.lbs);
        self.status.write(out);
        if let Some(altitude) = self.altitude_m {
            // Read back, bytes after it would make it part of `extra`.
            if !self.extra.is_empty() {
                return None;
            }
            out.extend_from_slice(&altitude.to_be_bytes());
        }
        out.extend_from_slice(self.extra);
        Some(())
    }

    /// The cell the block holds: the operator (a two-byte MNC when MCC bit 15 says so or the
    /// block is 10 bytes), a two-byte LAC, and a CI of the 3 or 4 bytes left.
    pub fn cell(&self) -> Option<Cell> {
        let (rest, (mcc, mnc, mnc_wide)) = operator(self.lbs, self.lbs.len() >= Self::WIDE_BLOCK).ok()?;
        let (ci, lac) = be_u16(rest).ok()?;
        if !(3..=4).contains(&ci.len()) {
            return None;
        }
        let cell_id = ci.iter().fold(0u64, |v, &b| v << 8 | u64::from(b));
        Some(Cell { mcc, mnc, mnc_wide, lac: u32::from(lac), cell_id, rssi: None })
    }
}

/// A GT06 message, borrowed from its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// The login and any bytes after its known fields.
    Login(Login, &'a [u8]),
    /// 0x10/0x11/0x12/0x22/0x2D/0x31/0x37/0xA0: a fix, maybe a cell, and the v2 tail.
    Location {
        fix: GpsFix,
        cell: Option<Cell>,
        /// v2 tail: ACC, data upload mode, re-upload flag.
        acc: Option<u8>,
        upload_mode: Option<u8>,
        reupload: Option<u8>,
        mileage: Option<u32>,
        extra: &'a [u8],
    },
    /// 0x16/0x26/0x27/0xA4. `lbs` is the LBS block as sent (its length byte not included);
    /// [`Message::alarm_cell`] reads it.
    Alarm {
        fix: GpsFix,
        lbs: &'a [u8],
        status: StatusBlock,
        fence: Option<u8>,
        extra: &'a [u8],
    },
    /// 0x95: an alarm with a time and, in the long form, a position without satellites or speed.
    AlarmJc {
        time: [u8; 6],
        position: Option<(u32, u32, u16)>,
        code: AlarmCode,
        extra: &'a [u8],
    },
    Heartbeat(Heartbeat<'a>),
    /// 0x19 (a 2G cell) and 0xA5 (a 4G cell): one cell and a status block.
    LbsStatus {
        cell: Cell,
        status: StatusBlock,
        extra: &'a [u8],
    },
    Lbs(LbsReport<'a>),
    Wifi(WifiLbs),
    /// 0x1A/0x2A: a fix and the phone number the address should go to.
    AddressRequest {
        fix: GpsFix,
        phone: &'a [u8],
        extra: &'a [u8],
    },
    /// 0xA7: a 4G cell and the phone number the address should go to.
    LbsAddressRequest {
        cell: Cell,
        phone: &'a [u8],
        extra: &'a [u8],
    },
    /// 0x9B: a type byte and what the device passes on from its serial port.
    Serial {
        kind: u8,
        data: &'a [u8],
    },
    TimeRequest,
    Info(Info<'a>),
    CommandReply(CommandReply<'a>),
    X1(X1Report<'a>),
    Sr411(Sr411Report<'a>),
    /// 0x24 of the Wanway S20: time, timing advance, operator, a count and that many cells
    /// (the operator kept apart: there may be no cell to carry it).
    LbsCounted {
        operator: (u16, u16, bool),
        report: LbsReport<'a>,
    },
    Lw4g(Lw4gReport),
    /// 0x70: the modules, and bytes after the last whole one.
    Modular {
        modules: Vec<Module<'a>>,
        extra: &'a [u8],
    },
    Az735(Az735Report<'a>),
    /// 0x32 in a short frame.
    StatusFix(StatusFixReport<'a>),
    /// 0x38.
    Gps8(Gps8Report<'a>),
    /// Any other protocol number: its content as sent.
    Unknown(&'a [u8]),
}

/// Why a frame's content does not fit its protocol number's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    pub protocol: u8,
    pub content_len: usize,
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol 0x{:02x} content of {} bytes is too short for its layout", self.protocol, self.content_len)
    }
}

/// Whether a cells report (the LBS arm of [`Message::parse`]) ends with access points.
fn has_wifi(protocol: u8) -> bool {
    matches!(protocol, LBS_WIFI | WIFI_LBS_4G)
}

fn cell_width(protocol: u8) -> CellWidth {
    match protocol {
        GPS_4G | LBS_4G | ALARM_4G_MULTI_FENCE | WIFI_LBS_4G | LBS_ALARM_4G | LBS_ADDRESS_4G => CellWidth::Lte,
        GPS_LBS_6 => CellWidth::Wide,
        _ => CellWidth::Classic,
    }
}

impl<'a> Message<'a> {
    /// Reads the content of `frame` by its protocol number: the dispatch to the message
    /// types' readers below, each beside its writer.
    pub fn parse(frame: &Frame<'a>) -> Result<Self, LayoutError> {
        let (p, content) = (frame.protocol, frame.content);
        let err = |Short| LayoutError { protocol: p, content_len: content.len() };
        let message = match p {
            LOGIN => Self::read_login(content),
            WIFI | WIFI_2 if frame.integrity == Integrity::Absent => Self::read_wifi(content, frame.length_field),
            // Returned from here: through the shared `map_err` below, the location was moved
            // between the two results' layouts, and a view read it back from the smaller
            // stores that moved it (a store-forwarding stall: +7-10% on the views rows).
            GPS | GPS_LBS_6 | GPS_LBS | GPS_LBS_2 | GPS_LBS_4 | GPS_LBS_5 | GPS_LBS_3 | GPS_4G | GPS_LBS_EXTEND => {
                return Self::read_location(p, content).map_err(err);
            }
            ALARM | ALARM_2 | ALARM_MULTI_FENCE | ALARM_4G_MULTI_FENCE => Self::read_alarm(p, content),
            ALARM_JC => Self::read_alarm_jc(content),
            HEARTBEAT => Self::read_heartbeat(content),
            HEARTBEAT_2 => Self::read_heartbeat_voltage(content),
            STATUS_2 => Ok(Self::status_2(content)),
            LBS_STATUS | LBS_ALARM_4G => Self::read_lbs_status(p, content),
            LBS_ADDRESS_4G => Self::read_lbs_address_request(content),
            SERIAL => Self::read_serial(content),
            LBS_MULTIPLE_3 if content.len() == SR411_LEN => Self::read_sr411(content),
            LBS_MULTIPLE_3 if content.len() == WANWAY_S20_LEN => Self::read_lbs_counted(content),
            WIFI_LBS_4G if content.len() == LW4G_LEN => whole(Lw4gReport::read, content).map(Message::Lw4g),
            GPS_MODULAR => Ok(Self::read_modular(content)),
            AZ735_GPS | AZ735_ALARM if frame.long => whole(Az735Report::read, content).map(Message::Az735),
            AZ735_GPS => whole(StatusFixReport::read, content).map(Message::StatusFix),
            GPS_LBS_8 => whole(Gps8Report::read, content).map(Message::Gps8),
            LBS_EXTEND | LBS_MULTIPLE | LBS_MULTIPLE_3 | LBS_WIFI | LBS_4G | WIFI_LBS_4G => Self::read_lbs(p, content),
            GPS_PHONE | ADDRESS_REQUEST => Self::read_address_request(content),
            TIME_REQUEST => Ok(Message::TimeRequest),
            X1_GPS => whole(X1Report::read, content).map(Message::X1),
            INFO => Self::read_info(content),
            COMMAND_REPLY => Self::read_command_reply(content),
            COMMAND_REPLY_LONG => Self::read_command_reply_long(content),
            _ => Ok(Message::Unknown(content)),
        };
        message.map_err(err)
    }

    /// Writes this message's content for `protocol` (the inverse of [`Message::parse`]).
    /// `None` for values no frame can carry.
    pub fn write_content(&self, protocol: u8, out: &mut Vec<u8>) -> Option<()> {
        match self {
            Message::Login(..) => self.write_login(out),
            Message::Location { .. } => self.write_location(protocol, out),
            Message::Alarm { .. } => self.write_alarm(out),
            Message::AlarmJc { .. } => self.write_alarm_jc(out),
            Message::Heartbeat(Heartbeat::Status { .. }) => self.write_heartbeat(out),
            Message::Heartbeat(Heartbeat::Voltage { .. }) => self.write_heartbeat_voltage(out),
            Message::Heartbeat(Heartbeat::Modules { .. }) => self.write_heartbeat_modules(out),
            Message::Heartbeat(Heartbeat::Opaque(bytes)) | Message::Unknown(bytes) => {
                out.extend_from_slice(bytes);
                Some(())
            }
            Message::LbsStatus { .. } => self.write_lbs_status(protocol, out),
            Message::Lbs(_) => self.write_lbs(protocol, out),
            Message::Wifi(_) => self.write_wifi(out),
            Message::AddressRequest { .. } => self.write_address_request(out),
            Message::LbsAddressRequest { .. } => self.write_lbs_address_request(out),
            Message::Serial { .. } => self.write_serial(out),
            Message::TimeRequest => Some(()),
            Message::X1(x) => x.write(out),
            Message::Sr411(_) => self.write_sr411(out),
            Message::LbsCounted { .. } => self.write_lbs_counted(out),
            Message::Lw4g(r) => {
                r.write(out);
                Some(())
            }
            Message::Modular { .. } => self.write_modular(out),
            Message::Az735(r) => r.write(out),
            Message::StatusFix(r) => r.write(out),
            Message::Gps8(r) => r.write(out),
            Message::Info(_) => self.write_info(out),
            Message::CommandReply(_) => self.write_command_reply(out),
        }
    }

    // Each message type's reader and writer, side by side. A writer is called with its own
    // variant only (by `write_content`), and answers `None` for any other.

    /// 0x01: the terminal id, then (v2) the type and then the zone, each only if the content
    /// holds it.
    fn read_login(content: &'a [u8]) -> Result<Self, Short> {
        let ((terminal_id, type_id), rest) = read((array::<8>, opt(be_u16)), content)?;
        let (zone_language, rest) = read(cond(type_id.is_some(), opt(be_u16)), rest)?;
        Ok(Message::Login(Login { terminal_id, type_id, zone_language: zone_language.flatten() }, rest))
    }

    fn write_login(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Login(l, extra) = self else { return None };
        out.extend_from_slice(&l.terminal_id);
        if let Some(t) = l.type_id {
            out.extend_from_slice(&t.to_be_bytes());
            if let Some(z) = l.zone_language {
                out.extend_from_slice(&z.to_be_bytes());
            }
        }
        out.extend_from_slice(extra);
        Some(())
    }

    /// A fix, the cell (not in 0x10 and 0x31), and in the v2 layouts the ACC, upload mode and
    /// re-upload bytes, then the mileage when it is all that is left (docs/protocols/gt06.md §5.2).
    // Always inline: the position every tracker sends, built in the place `parse` returns it.
    #[inline(always)]
    fn read_location(p: u8, content: &'a [u8]) -> Result<Self, Short> {
        let (fix, rest) = read(GpsFix::read, content)?;
        let width = cell_width(p);
        let has_cell = !matches!(p, GPS | GPS_LBS_EXTEND);
        let (cell, mut rest) = read(cond(has_cell, opt(|input| Cell::read(input, width))), rest)?;
        let cell = cell.flatten();
        let v2 = matches!(p, GPS_LBS_2 | GPS_LBS_4 | GPS_LBS_5 | GPS_LBS_3 | GPS_4G);
        let (mut acc, mut upload_mode, mut reupload, mut mileage) = (None, None, None, None);
        if v2 && cell.is_some() && rest.len() >= 3 {
            let ((a, u, r), after) = read((be_u8, be_u8, be_u8), rest)?;
            (acc, upload_mode, reupload, rest) = (Some(a), Some(u), Some(r), after);
            if rest.len() == 4 {
                let (m, after) = read(be_u32, rest)?;
                (mileage, rest) = (Some(m), after);
            }
        }
        Ok(Message::Location { fix, cell, acc, upload_mode, reupload, mileage, extra: rest })
    }

    fn write_location(&self, protocol: u8, out: &mut Vec<u8>) -> Option<()> {
        let Message::Location { fix, cell, acc, upload_mode, reupload, mileage, extra } = self else { return None };
        fix.write(out);
        if let Some(cell) = cell {
            cell.write(out, cell_width(protocol));
        }
        for b in [acc, upload_mode, reupload].into_iter().flatten() {
            out.push(*b);
        }
        if let Some(m) = mileage {
            out.extend_from_slice(&m.to_be_bytes());
        }
        out.extend_from_slice(extra);
        Some(())
    }

    /// A fix, the LBS block (its length counts itself), the status block, and in the
    /// multi-fence layouts the fence.
    fn read_alarm(p: u8, content: &'a [u8]) -> Result<Self, Short> {
        let ((fix, lbs_len), rest) = read((GpsFix::read, be_u8), content)?;
        let ((lbs, status), rest) = read((take(usize::from(lbs_len).saturating_sub(1)), StatusBlock::read), rest)?;
        let multi_fence = matches!(p, ALARM_MULTI_FENCE | ALARM_4G_MULTI_FENCE);
        let (fence, extra) = read(cond(multi_fence, opt(be_u8)), rest)?;
        Ok(Message::Alarm { fix, lbs, status, fence: fence.flatten(), extra })
    }

    fn write_alarm(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Alarm { fix, lbs, status, fence, extra } = self else { return None };
        fix.write(out);
        out.push(u8::try_from(lbs.len() + 1).ok()?);
        out.extend_from_slice(lbs);
        status.write(out);
        out.extend(fence);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x95: a time, in the long form a position, and the code.
    fn read_alarm_jc(content: &'a [u8]) -> Result<Self, Short> {
        let long = content.len() > 7;
        let ((time, position, code), extra) = read((array::<6>, cond(long, (be_u32, be_u32, be_u16)), be_u8), content)?;
        Ok(Message::AlarmJc { time, position, code: AlarmCode(code), extra })
    }

    fn write_alarm_jc(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::AlarmJc { time, position, code, extra } = self else { return None };
        out.extend_from_slice(time);
        if let Some((lat, lon, course)) = position {
            out.extend_from_slice(&lat.to_be_bytes());
            out.extend_from_slice(&lon.to_be_bytes());
            out.extend_from_slice(&course.to_be_bytes());
        }
        out.push(code.0);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x13: info, voltage level, GSM level, then the alarm and language where sent.
    fn read_heartbeat(content: &'a [u8]) -> Result<Self, Short> {
        let (([info, voltage_level, gsm_signal], alarm_language), extra) =
            read((array::<3>, opt(array::<2>)), content)?;
        Ok(Message::Heartbeat(Heartbeat::Status { info, voltage_level, gsm_signal, alarm_language, extra }))
    }

    fn write_heartbeat(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Heartbeat(Heartbeat::Status { info, voltage_level, gsm_signal, alarm_language, extra }) = self
        else {
            return None;
        };
        out.extend_from_slice(&[*info, *voltage_level, *gsm_signal]);
        out.extend(alarm_language.iter().flatten());
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x23: info, the battery voltage in 0.01 V, the GSM level.
    fn read_heartbeat_voltage(content: &'a [u8]) -> Result<Self, Short> {
        let ((info, centivolts, gsm_signal), extra) = read((be_u8, be_u16, be_u8), content)?;
        Ok(Message::Heartbeat(Heartbeat::Voltage { info, centivolts, gsm_signal, extra }))
    }

    fn write_heartbeat_voltage(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Heartbeat(Heartbeat::Voltage { info, centivolts, gsm_signal, extra }) = self else { return None };
        out.push(*info);
        out.extend_from_slice(&centivolts.to_be_bytes());
        out.push(*gsm_signal);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x36 (§5.14): Jimi's heartbeat when its modules fill the content exactly; else the
    /// VL103's fix (with a date that is one) and cell; else the bytes of a model not known here.
    fn status_2(content: &'a [u8]) -> Self {
        if let Ok((status, mut rest)) = read(StatusBlock::read, content) {
            let mut modules = Vec::new();
            while let Ok(((kind, value), after)) = read((be_u16, length_data(be_u8)), rest) {
                modules.push(Module { kind, value });
                rest = after;
            }
            if rest.is_empty() {
                return Message::Heartbeat(Heartbeat::Modules { status, modules });
            }
        }
        match read((GpsFix::read, |input| Cell::read(input, CellWidth::Classic)), content) {
            Ok(((fix, cell), extra)) if fix.timestamp(0).is_some() => Message::Location {
                fix,
                cell: Some(cell),
                acc: None,
                upload_mode: None,
                reupload: None,
                mileage: None,
                extra,
            },
            _ => Message::Heartbeat(Heartbeat::Opaque(content)),
        }
    }

    fn write_heartbeat_modules(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Heartbeat(Heartbeat::Modules { status, modules }) = self else { return None };
        status.write(out);
        for m in modules {
            out.extend_from_slice(&m.kind.to_be_bytes());
            out.push(u8::try_from(m.value.len()).ok()?);
            out.extend_from_slice(m.value);
        }
        Some(())
    }

    /// 0x19 and 0xA5: one cell and a status block.
    fn read_lbs_status(p: u8, content: &'a [u8]) -> Result<Self, Short> {
        let ((cell, status), extra) = read((|input| Cell::read(input, cell_width(p)), StatusBlock::read), content)?;
        Ok(Message::LbsStatus { cell, status, extra })
    }

    fn write_lbs_status(&self, protocol: u8, out: &mut Vec<u8>) -> Option<()> {
        let Message::LbsStatus { cell, status, extra } = self else { return None };
        cell.write(out, cell_width(protocol));
        status.write(out);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x1A and 0x2A: a fix and the phone number the address should go to.
    fn read_address_request(content: &'a [u8]) -> Result<Self, Short> {
        let ((fix, phone), extra) = read((GpsFix::read, take(PHONE_LEN)), content)?;
        Ok(Message::AddressRequest { fix, phone, extra })
    }

    fn write_address_request(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::AddressRequest { fix, phone, extra } = self else { return None };
        fix.write(out);
        out.extend_from_slice(phone);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0xA7: a 4G cell and the phone number the address should go to.
    fn read_lbs_address_request(content: &'a [u8]) -> Result<Self, Short> {
        let ((cell, phone), extra) = read((|input| Cell::read(input, CellWidth::Lte), take(PHONE_LEN)), content)?;
        Ok(Message::LbsAddressRequest { cell, phone, extra })
    }

    fn write_lbs_address_request(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::LbsAddressRequest { cell, phone, extra } = self else { return None };
        cell.write(out, CellWidth::Lte);
        out.extend_from_slice(phone);
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x9B: a type byte and the serial port's bytes.
    fn read_serial(content: &'a [u8]) -> Result<Self, Short> {
        let (kind, data) = read(be_u8, content)?;
        Ok(Message::Serial { kind, data })
    }

    fn write_serial(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Serial { kind, data } = self else { return None };
        out.push(*kind);
        out.extend_from_slice(data);
        Some(())
    }

    /// 0x24 of the SR411 (its length tells it apart): a fix, a cell, ignition and two voltages.
    fn read_sr411(content: &'a [u8]) -> Result<Self, Short> {
        let cell = |input| Cell::read(input, CellWidth::Classic);
        let ((fix, cell, ignition, power_centivolts, battery_centivolts), extra) =
            read((GpsFix::read, cell, be_u8, be_u16, be_u16), content)?;
        Ok(Message::Sr411(Sr411Report { fix, cell, ignition, power_centivolts, battery_centivolts, extra }))
    }

    fn write_sr411(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Sr411(r) = self else { return None };
        r.fix.write(out);
        r.cell.write(out, CellWidth::Classic);
        out.push(r.ignition);
        out.extend_from_slice(&r.power_centivolts.to_be_bytes());
        out.extend_from_slice(&r.battery_centivolts.to_be_bytes());
        out.extend_from_slice(r.extra);
        Some(())
    }

    /// 0x24 of the Wanway S20: time, timing advance, operator, a count and that many cells.
    fn read_lbs_counted(content: &'a [u8]) -> Result<Self, Short> {
        let ((time, timing_advance, op), rest) = read((array::<6>, be_u8, |input| operator(input, false)), content)?;
        let (cells, extra) = read(length_count(be_u8, |input| rssi_cell(input, op, CellWidth::Classic)), rest)?;
        let report = LbsReport { time, cells, timing_advance, wifi: Vec::new(), extra };
        Ok(Message::LbsCounted { operator: op, report })
    }

    fn write_lbs_counted(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::LbsCounted { operator: (mcc, mnc, wide), report: r } = self else { return None };
        out.extend_from_slice(&r.time);
        out.push(r.timing_advance);
        write_operator(out, *mcc, *mnc, *wide);
        out.push(u8::try_from(r.cells.len()).ok()?);
        for cell in &r.cells {
            write_lac_ci(out, cell.lac, cell.cell_id, CellWidth::Classic);
            out.push(cell.rssi.unwrap_or(0));
        }
        out.extend_from_slice(r.extra);
        Some(())
    }

    /// 0x70: modules while a whole one fits; what is left is kept as extra.
    fn read_modular(content: &'a [u8]) -> Self {
        let (mut modules, mut rest) = (Vec::new(), content);
        while let Ok(((kind, value), after)) = read((be_u16, length_data(be_u16)), rest) {
            modules.push(Module { kind, value });
            rest = after;
        }
        Message::Modular { modules, extra: rest }
    }

    fn write_modular(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Modular { modules, extra } = self else { return None };
        for m in modules {
            out.extend_from_slice(&m.kind.to_be_bytes());
            out.extend_from_slice(&u16::try_from(m.value.len()).ok()?.to_be_bytes());
            out.extend_from_slice(m.value);
        }
        out.extend_from_slice(extra);
        Some(())
    }

    /// 0x18, 0x28, 0x2C, 0xA1 and kin: a time, the operator, seven cells, the timing advance,
    /// and in the Wi-Fi layouts the access points.
    fn read_lbs(p: u8, content: &'a [u8]) -> Result<Self, Short> {
        let width = cell_width(p);
        let ((time, op), rest) = read((array::<6>, |input| operator(input, false)), content)?;
        let cell = |input| rssi_cell(input, op, width);
        let ((cells, timing_advance), rest) = read((count(cell, LBS_MULTI_CELLS), be_u8), rest)?;
        let (wifi, extra) = read(cond(has_wifi(p), length_count(be_u8, WifiAp::read)), rest)?;
        Ok(Message::Lbs(LbsReport { time, cells, timing_advance, wifi: wifi.unwrap_or_default(), extra }))
    }

    fn write_lbs(&self, protocol: u8, out: &mut Vec<u8>) -> Option<()> {
        let Message::Lbs(r) = self else { return None };
        out.extend_from_slice(&r.time);
        let first = r.cells.first()?;
        if r.cells.len() != LBS_MULTI_CELLS {
            return None;
        }
        write_operator(out, first.mcc, first.mnc, first.mnc_wide);
        for cell in &r.cells {
            write_lac_ci(out, cell.lac, cell.cell_id, cell_width(protocol));
            out.push(cell.rssi.unwrap_or(0));
        }
        out.push(r.timing_advance);
        if has_wifi(protocol) {
            out.push(u8::try_from(r.wifi.len()).ok()?);
            for ap in &r.wifi {
                out.extend_from_slice(&ap.mac);
                out.push(ap.rssi);
            }
        }
        out.extend_from_slice(r.extra);
        Some(())
    }

    /// The CRC-less Wi-Fi frame: a time, `access_points` access points (the length field
    /// counts them), then counted cells of one operator, and nothing after them.
    fn read_wifi(content: &[u8], access_points: usize) -> Result<Self, Short> {
        let ((bcd_time, wifi, cell_count, (mcc, mnc, mnc_wide)), rest) =
            read((array::<6>, count(WifiAp::read, access_points), be_u8, |input| operator(input, false)), content)?;
        let cell = map((be_u16, be_u16, be_u8), |(lac, cell_id, rssi)| Cell {
            mcc,
            mnc,
            mnc_wide,
            lac: u32::from(lac),
            cell_id: u64::from(cell_id),
            rssi: Some(rssi),
        });
        match read(count(cell, usize::from(cell_count)), rest)? {
            (cells, []) => Ok(Message::Wifi(WifiLbs { bcd_time, wifi, cells })),
            _ => Err(Short),
        }
    }

    fn write_wifi(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Wifi(w) = self else { return None };
        out.extend_from_slice(&w.bcd_time);
        for ap in &w.wifi {
            out.extend_from_slice(&ap.mac);
            out.push(ap.rssi);
        }
        out.push(u8::try_from(w.cells.len()).ok()?);
        let (mcc, mnc, wide) = w.cells.first().map_or((0, 0, false), |c| (c.mcc, c.mnc, c.mnc_wide));
        write_operator(out, mcc, mnc, wide);
        for cell in &w.cells {
            out.extend_from_slice(&(cell.lac as u16).to_be_bytes());
            out.extend_from_slice(&(cell.cell_id as u16).to_be_bytes());
            out.push(cell.rssi.unwrap_or(0));
        }
        Some(())
    }

    /// 0x94: a subtype and its bytes.
    fn read_info(content: &'a [u8]) -> Result<Self, Short> {
        let (subtype, data) = read(be_u8, content)?;
        Ok(Message::Info(Info { subtype, data }))
    }

    fn write_info(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::Info(i) = self else { return None };
        out.push(i.subtype);
        out.extend_from_slice(i.data);
        Some(())
    }

    /// 0x15: the length byte (the server flag and text), the server flag, the text; a length
    /// that does not fit is kept and the text runs to a NUL or the language word.
    fn read_command_reply(content: &'a [u8]) -> Result<Self, Short> {
        let ((length_byte, server_flag), rest) = read((be_u8, be_u32), content)?;
        let command_len = usize::from(length_byte);
        let regular = command_len >= 4 && command_len - 4 <= rest.len();
        let text_len = if regular {
            command_len - 4
        } else {
            let body = &rest[..rest.len().saturating_sub(2)];
            body.iter().position(|&b| b == 0).unwrap_or(body.len())
        };
        let (text, extra) = read(take(text_len), rest)?;
        let text = text.iter().map(|&b| char::from(b)).collect();
        let irregular_length = (!regular).then_some(length_byte);
        Ok(Message::CommandReply(CommandReply { server_flag, text, encoding: None, irregular_length, extra }))
    }

    /// 0x21: the server flag, the encoding (2: UTF-16), the text to the end.
    fn read_command_reply_long(content: &'a [u8]) -> Result<Self, Short> {
        let ((server_flag, encoding), rest) = read((be_u32, be_u8), content)?;
        let text = if encoding == 2 {
            let units = rest.chunks(2).map(|u| u16::from_be_bytes([u[0], *u.get(1).unwrap_or(&0)]));
            char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
        } else {
            rest.iter().map(|&b| char::from(b)).collect()
        };
        Ok(Message::CommandReply(CommandReply {
            server_flag,
            text,
            encoding: Some(encoding),
            irregular_length: None,
            extra: &[],
        }))
    }

    /// The short form (no encoding: each char one byte, the length byte in front) or the long
    /// form (the encoding after the server flag).
    fn write_command_reply(&self, out: &mut Vec<u8>) -> Option<()> {
        let Message::CommandReply(r) = self else { return None };
        let one_byte_each = || r.text.chars().all(|ch| u32::from(ch) <= 0xFF);
        match r.encoding {
            None => {
                if !one_byte_each() {
                    return None;
                }
                match r.irregular_length {
                    Some(b) => out.push(b),
                    None => out.push(u8::try_from(4 + r.text.chars().count()).ok()?),
                }
                out.extend_from_slice(&r.server_flag.to_be_bytes());
                out.extend(r.text.chars().map(|ch| ch as u8));
            }
            Some(encoding) => {
                out.extend_from_slice(&r.server_flag.to_be_bytes());
                out.push(encoding);
                if encoding == 2 {
                    for unit in r.text.encode_utf16() {
                        out.extend_from_slice(&unit.to_be_bytes());
                    }
                } else {
                    if !one_byte_each() {
                        return None;
                    }
                    out.extend(r.text.chars().map(|ch| ch as u8));
                }
            }
        }
        out.extend_from_slice(r.extra);
        Some(())
    }

    /// The cell of an alarm's LBS block, if it holds one.
    pub fn alarm_cell(lbs: &[u8], protocol: u8) -> Option<Cell> {
        Cell::read(lbs, cell_width(protocol)).ok().map(|(_, cell)| cell)
    }

    /// Writes one cell as an alarm's LBS block (for building frames).
    pub fn alarm_lbs(cell: &Cell, protocol: u8) -> Vec<u8> {
        let mut out = Vec::new();
        cell.write(&mut out, cell_width(protocol));
        out
    }
}

/// A report type's reader over the whole content (the rest it does not read is its own
/// `extra`).
fn whole<'a, T>(reader: impl Parser<&'a [u8], Output = T, Error = Short>, content: &'a [u8]) -> Result<T, Short> {
    read(reader, content).map(|(report, _)| report)
}
