//! The uplink messages (docs/protocols/jt808.md §6), as views over the frame body that borrow rather than copy, and
//! the encoders that write them back (for round-trip tests, fuzzing and the simulator).

use std::fmt;

use super::{id, time_from_bcd, Edition, Header};
use crate::time::Timestamp;
use crate::wire::bcd;
use crate::wire::parse::{array, be_i16, be_i32, be_u16, be_u32, be_u8, read, take, u8_prefixed, Res, Short};
use nom::combinator::{map, verify};
use nom::multi::{length_count, length_data};
use nom::sequence::preceded;
use nom::Parser;

/// A body that does not have the layout of its message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError(pub String);

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LayoutError {}

fn short(what: &str, need: usize, have: usize) -> LayoutError {
    LayoutError(format!("{what} needs at least {need} bytes, the body has {have}"))
}

/// The 28-byte basic location block and its additional items (docs/protocols/jt808.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    pub alarm: u32,
    pub status: u32,
    pub latitude_raw: u32,
    pub longitude_raw: u32,
    /// Metres; a WORD in the standard, sent as two's complement below sea level (docs/protocols/jt808.md §8).
    pub altitude_raw: u16,
    /// 1/10 km/h.
    pub speed_raw: u16,
    pub course: u16,
    /// `YYMMDDhhmmss` BCD, device-local.
    pub time: [u8; 6],
    /// The additional items, `id, len, value` repeated.
    pub items: &'a [u8],
}

/// Status bits (docs/protocols/jt808.md §6.2).
pub mod status {
    pub const ACC: u32 = 1 << 0;
    pub const POSITIONED: u32 = 1 << 1;
    pub const SOUTH: u32 = 1 << 2;
    pub const WEST: u32 = 1 << 3;
}

/// One additional item of a location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    pub id: u8,
    pub value: &'a [u8],
}

/// The additional items in order. A last item whose length runs past the body ends the
/// iteration; [`Items::truncated`] then says so (docs/protocols/jt808.md §6.2: stop, don't fail).
#[derive(Debug, Clone)]
pub struct Items<'a> {
    rest: &'a [u8],
    truncated: bool,
}

impl<'a> Items<'a> {
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for Items<'a> {
    type Item = Item<'a>;
    fn next(&mut self) -> Option<Item<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match read((be_u8, u8_prefixed), self.rest) {
            Ok(((id, value), rest)) => {
                self.rest = rest;
                Some(Item { id, value })
            }
            Err(Short) => {
                self.truncated = true;
                self.rest = &[];
                None
            }
        }
    }
}

impl<'a> Location<'a> {
    pub const BASIC_LEN: usize = 28;

    pub fn parse(body: &'a [u8]) -> Result<Self, LayoutError> {
        let basic = (be_u32, be_u32, be_u32, be_u32, be_u16, be_u16, be_u16, array::<6>);
        let ((alarm, status, latitude_raw, longitude_raw, altitude_raw, speed_raw, course, time), items) =
            read(basic, body).map_err(|Short| short("a location", Self::BASIC_LEN, body.len()))?;
        Ok(Location { alarm, status, latitude_raw, longitude_raw, altitude_raw, speed_raw, course, time, items })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.alarm.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.latitude_raw.to_be_bytes());
        out.extend_from_slice(&self.longitude_raw.to_be_bytes());
        out.extend_from_slice(&self.altitude_raw.to_be_bytes());
        out.extend_from_slice(&self.speed_raw.to_be_bytes());
        out.extend_from_slice(&self.course.to_be_bytes());
        out.extend_from_slice(&self.time);
        out.extend_from_slice(self.items);
    }

    pub fn items(&self) -> Items<'a> {
        Items { rest: self.items, truncated: false }
    }

    pub fn positioned(&self) -> bool {
        self.status & status::POSITIONED != 0
    }

    /// Degrees, south negative. With the hemisphere bit set the value is unsigned and
    /// negated; without it, terminals that send signed values are read as signed (docs/protocols/jt808.md §8).
    pub fn latitude(&self) -> f64 {
        signed_degrees(self.latitude_raw, self.status & status::SOUTH != 0)
    }

    pub fn longitude(&self) -> f64 {
        signed_degrees(self.longitude_raw, self.status & status::WEST != 0)
    }

    pub fn altitude_m(&self) -> i16 {
        self.altitude_raw as i16
    }

    pub fn speed_kmh(&self) -> f64 {
        f64::from(self.speed_raw) / 10.0
    }

    /// The fix time in UTC, for a terminal whose clock is `utc_offset_minutes` ahead.
    #[inline]
    pub fn timestamp(&self, utc_offset_minutes: i32) -> Option<Timestamp> {
        time_from_bcd(self.time, utc_offset_minutes)
    }
}

fn signed_degrees(raw: u32, negative: bool) -> f64 {
    let v = if negative { -f64::from(raw) } else { f64::from(raw as i32) };
    v / 1_000_000.0
}

/// Appends one additional item.
pub fn write_item(out: &mut Vec<u8>, id: u8, value: &[u8]) {
    out.push(id);
    out.push(value.len().min(255) as u8);
    out.extend_from_slice(&value[..value.len().min(255)]);
}

/// Which 0x0100 layout a register body has (docs/protocols/jt808.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterLayout {
    V2011,
    V2013,
    V2019,
}

impl RegisterLayout {
    /// Manufacturer, model and terminal id widths.
    fn widths(self) -> (usize, usize, usize) {
        match self {
            RegisterLayout::V2011 => (5, 8, 7),
            RegisterLayout::V2013 => (5, 20, 7),
            RegisterLayout::V2019 => (11, 30, 30),
        }
    }

    /// Bytes before the plate.
    pub fn fixed_len(self) -> usize {
        let (m, t, i) = self.widths();
        4 + m + t + i + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RegisterLayout::V2011 => "2011",
            RegisterLayout::V2013 => "2013",
            RegisterLayout::V2019 => "2019",
        }
    }
}

/// 0x0100 terminal registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Register<'a> {
    pub layout: RegisterLayout,
    pub province: u16,
    pub city: u16,
    pub manufacturer: &'a [u8],
    pub model: &'a [u8],
    pub terminal_id: &'a [u8],
    /// 0 = no plate (the text is a VIN), 1 blue, 2 yellow, 3 black, 4 white, 9 other.
    pub plate_color: u8,
    pub plate: &'a [u8],
}

impl<'a> Register<'a> {
    /// The layout follows the header edition and the body length (docs/protocols/jt808.md §6.1: a body shorter
    /// than the 2013 fixed part is 2011).
    pub fn parse(body: &'a [u8], edition: Edition) -> Result<Self, LayoutError> {
        let layout = if matches!(edition, Edition::V2019 { .. }) && body.len() >= RegisterLayout::V2019.fixed_len() {
            RegisterLayout::V2019
        } else if body.len() >= RegisterLayout::V2013.fixed_len() {
            RegisterLayout::V2013
        } else {
            RegisterLayout::V2011
        };
        if body.len() < layout.fixed_len() {
            return Err(short("a 0x0100 registration", layout.fixed_len(), body.len()));
        }
        let (m, t, i) = layout.widths();
        let fixed = (be_u16, be_u16, take(m), take(t), take(i), be_u8);
        let ((province, city, manufacturer, model, terminal_id, plate_color), plate) =
            read(fixed, body).map_err(|Short| short("a 0x0100 registration", layout.fixed_len(), body.len()))?;
        Ok(Register { layout, province, city, manufacturer, model, terminal_id, plate_color, plate })
    }

    /// Writes the body; fixed-width fields are padded with NULs or cut to their width.
    pub fn write(&self, out: &mut Vec<u8>) {
        let (m, t, i) = self.layout.widths();
        out.extend_from_slice(&self.province.to_be_bytes());
        out.extend_from_slice(&self.city.to_be_bytes());
        for (field, width) in [(self.manufacturer, m), (self.model, t), (self.terminal_id, i)] {
            let n = field.len().min(width);
            out.extend_from_slice(&field[..n]);
            out.resize(out.len() + width - n, 0);
        }
        out.push(self.plate_color);
        out.extend_from_slice(self.plate);
    }
}

/// 0x0102 authentication: the code, and in 2019 the IMEI and software version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    pub code: &'a [u8],
    pub imei: Option<&'a [u8]>,
    pub software_version: Option<&'a [u8]>,
}

impl<'a> Auth<'a> {
    /// The 2019 layout when the header is 2019 and the body has exactly its shape; else the
    /// whole body is the code (2011/2013, and 2019 terminals that kept the old body).
    pub fn parse(body: &'a [u8], edition: Edition) -> Self {
        if let Edition::V2019 { .. } = edition {
            // Exactly the 2019 shape: nothing after the 20-byte version.
            if let Ok(((code, imei, software_version), [])) = read((u8_prefixed, take(15usize), take(20usize)), body) {
                return Auth { code, imei: Some(imei), software_version: Some(software_version) };
            }
        }
        Auth { code: body, imei: None, software_version: None }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match (self.imei, self.software_version) {
            (Some(imei), Some(version)) => {
                out.push(self.code.len().min(255) as u8);
                out.extend_from_slice(&self.code[..self.code.len().min(255)]);
                for (field, width) in [(imei, 15), (version, 20)] {
                    let n = field.len().min(width);
                    out.extend_from_slice(&field[..n]);
                    out.resize(out.len() + width - n, 0);
                }
            }
            _ => out.extend_from_slice(self.code),
        }
    }
}

/// 0x0001 terminal general response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralResponse {
    pub reply_serial: u16,
    pub reply_id: u16,
    pub result: u8,
}

/// 0x0104 parameter query response: the serial of the query and the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameters<'a> {
    pub reply_serial: u16,
    pub count: u8,
    /// `id DWORD, len BYTE, value` repeated.
    pub items: &'a [u8],
}

impl<'a> Parameters<'a> {
    /// The parameters; `Err` with the undecodable tail if an item runs past the body.
    pub fn iter(&self) -> impl Iterator<Item = Result<(u32, &'a [u8]), &'a [u8]>> + 'a {
        let mut rest = self.items;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            match read((be_u32, u8_prefixed), rest) {
                Ok(((param, value), after)) => {
                    rest = after;
                    Some(Ok((param, value)))
                }
                Err(Short) => {
                    let tail = rest;
                    rest = &[];
                    Some(Err(tail))
                }
            }
        })
    }
}

/// 0x0107 terminal attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalAttributes<'a> {
    pub terminal_type: u16,
    pub manufacturer: &'a [u8],
    pub model: &'a [u8],
    pub terminal_id: &'a [u8],
    /// BCD\[10\].
    pub iccid: &'a [u8],
    pub hardware_version: &'a [u8],
    pub firmware_version: &'a [u8],
    pub gnss: u8,
    pub comm: u8,
}

impl<'a> TerminalAttributes<'a> {
    pub fn parse(body: &'a [u8], edition: Edition) -> Result<Self, LayoutError> {
        let (model, tid): (usize, usize) = match edition {
            Edition::V2013 => (20, 7),
            Edition::V2019 { .. } => (30, 30),
        };
        let fields =
            (be_u16, take(5usize), take(model), take(tid), take(10usize), u8_prefixed, u8_prefixed, be_u8, be_u8);
        let (
            (terminal_type, manufacturer, model, terminal_id, iccid, hardware_version, firmware_version, gnss, comm),
            _,
        ) = read(fields, body).map_err(|Short| {
            LayoutError(format!("a {}-byte body does not hold 0x0107 terminal attributes", body.len()))
        })?;
        Ok(TerminalAttributes {
            terminal_type,
            manufacturer,
            model,
            terminal_id,
            iccid,
            hardware_version,
            firmware_version,
            gnss,
            comm,
        })
    }
}

/// 0x5501 / 0x5502 (docs/protocols/jt808.md §9): a JT600-style binary location and the
/// device's state, then vendor items (`id`, `length`, value). Kept as sent; the methods read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VendorLocation<'a> {
    /// BCD `DD MM YY hh mm ss`, UTC.
    pub time: [u8; 6],
    /// BCD `DDMMmmmm`: degrees and minutes to 1/10000.
    pub latitude: [u8; 4],
    /// BCD `DDDMMmmmm`, then the flags in the low nibble of the fifth byte: bit 0 fixed, bit
    /// 1 north, bit 2 east.
    pub longitude_flags: [u8; 5],
    /// BCD, knots.
    pub speed: u8,
    /// Degrees / 2.
    pub course: u8,
    pub gsm_signal: u8,
    pub satellites: u8,
    pub odometer_km: u32,
    /// 0–100 a level; `AA`/`AB` charging.
    pub battery: u8,
    pub cell_id: u32,
    pub lac: u16,
    /// The product family, which says how `alarm` is read.
    pub product: u8,
    pub status: u16,
    pub alarm: u16,
    /// The vendor items, as sent.
    pub items: &'a [u8],
}

/// The fixed part of a vendor location: 17 bytes of position, 18 of state.
const VENDOR_FIXED_LEN: usize = 35;

impl<'a> VendorLocation<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, LayoutError> {
        let err = |Short| short("a vendor location", VENDOR_FIXED_LEN, body.len());
        let position = (array::<6>, array::<4>, array::<5>, be_u8, be_u8);
        let ((time, latitude, longitude_flags, speed, course), state) = read(position, body).map_err(err)?;
        let fields = (be_u8, be_u8, be_u32, be_u8, be_u32, be_u16, be_u8, be_u16, be_u16);
        let ((gsm_signal, satellites, odometer_km, battery, cell_id, lac, product, status, alarm), items) =
            read(fields, state).map_err(err)?;
        Ok(VendorLocation {
            time,
            latitude,
            longitude_flags,
            speed,
            course,
            gsm_signal,
            satellites,
            odometer_km,
            battery,
            cell_id,
            lac,
            product,
            status,
            alarm,
            items,
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time);
        out.extend_from_slice(&self.latitude);
        out.extend_from_slice(&self.longitude_flags);
        out.extend_from_slice(&[self.speed, self.course, self.gsm_signal, self.satellites]);
        out.extend_from_slice(&self.odometer_km.to_be_bytes());
        out.push(self.battery);
        out.extend_from_slice(&self.cell_id.to_be_bytes());
        out.extend_from_slice(&self.lac.to_be_bytes());
        out.push(self.product);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.alarm.to_be_bytes());
        out.extend_from_slice(self.items);
    }

    /// The fix time (UTC); `None` for a time that is not one.
    pub fn timestamp(&self) -> Option<Timestamp> {
        let [d, mo, y, h, mi, s] = bcd::values(self.time)?;
        Timestamp::from_local_fields([y, mo, d, h, mi, s], 0)
    }

    fn flags(&self) -> u8 {
        self.longitude_flags[4] & 0x0F
    }

    /// Whether the device had a fix.
    pub fn fixed(&self) -> bool {
        self.flags() & 0x01 != 0
    }

    /// Degrees, south negative; `None` when the digits are not BCD.
    pub fn latitude_deg(&self) -> Option<f64> {
        let digits = bcd_number(&self.latitude, 8)?;
        let deg = degrees_minutes(digits);
        Some(if self.flags() & 0x02 != 0 { deg } else { -deg })
    }

    /// Degrees, west negative; `None` when the digits are not BCD.
    pub fn longitude_deg(&self) -> Option<f64> {
        let digits = bcd_number(&self.longitude_flags, 9)?;
        let deg = degrees_minutes(digits);
        Some(if self.flags() & 0x04 != 0 { deg } else { -deg })
    }

    pub fn speed_kmh(&self) -> Option<f64> {
        Some(f64::from(bcd::byte_value(self.speed)?) * 1.852)
    }

    pub fn course_deg(&self) -> f64 {
        f64::from(self.course) * 2.0
    }

    /// The vendor items in order; a last item that runs past the body ends them (its bytes
    /// are returned as the `Err`).
    pub fn items(&self) -> impl Iterator<Item = Result<(u8, &'a [u8]), &'a [u8]>> + 'a {
        let mut rest = self.items;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            match read((be_u8, u8_prefixed), rest) {
                Ok((item, after)) => {
                    rest = after;
                    Some(Ok(item))
                }
                Err(Short) => Some(Err(std::mem::take(&mut rest))),
            }
        })
    }
}

/// The first `digits` BCD digits of `bytes` as a number.
fn bcd_number(bytes: &[u8], digits: usize) -> Option<u64> {
    let mut n = 0u64;
    for i in 0..digits {
        let b = bytes[i / 2];
        let d = if i % 2 == 0 { b >> 4 } else { b & 0x0F };
        if d > 9 {
            return None;
        }
        n = n * 10 + u64::from(d);
    }
    Some(n)
}

/// `DDDMMmmmm` (minutes to 1/10000) as degrees.
fn degrees_minutes(digits: u64) -> f64 {
    let degrees = (digits / 1_000_000) as f64;
    let minutes = (digits % 1_000_000) as f64 / 10_000.0;
    degrees + minutes / 60.0
}

/// 0x0210: locations, each a 0x0200 body after a one-byte length; or, in the 7-byte form, a
/// battery level and a BCD time (YY MM DD hh mm ss, the terminal's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch2<'a> {
    Locations(&'a [u8]),
    Battery { level: u8, time: [u8; 6] },
}

impl<'a> Batch2<'a> {
    pub fn parse(body: &'a [u8]) -> Self {
        match *body {
            [level, t0, t1, t2, t3, t4, t5] => Batch2::Battery { level, time: [t0, t1, t2, t3, t4, t5] },
            _ => Batch2::Locations(body),
        }
    }

    /// The locations of the first form in order; stops with an error at an item that does
    /// not fit the body or is not a location (the items before it stand).
    pub fn locations(&self) -> impl Iterator<Item = Result<Location<'a>, LayoutError>> + 'a {
        let items = match self {
            Batch2::Locations(items) => items,
            Batch2::Battery { .. } => &[][..],
        };
        length_prefixed_locations(items, 1, "0x0210 item", 0)
    }

    /// The bytes the locations are read from (none in the battery form).
    pub fn items(&self) -> &'a [u8] {
        match self {
            Batch2::Locations(items) => items,
            Batch2::Battery { .. } => &[],
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Batch2::Locations(items) => out.extend_from_slice(items),
            Batch2::Battery { level, time } => {
                out.push(*level);
                out.extend_from_slice(time);
            }
        }
    }
}

/// What some terminals' pass-through messages (0x0900, docs/protocols/jt808.md §9) report,
/// read from the pass-through type and data. `None` from [`PassthroughReport::parse`] for the
/// other types, which stay text or data.
#[derive(Debug, Clone, PartialEq)]
pub enum PassthroughReport<'a> {
    /// Type `F0`: a BCD time (the terminal's clock), an archive flag, the vehicle type, a
    /// subtype and its data, then the coordinates: subtypes 01 (OBD values), 02 (trouble
    /// codes) and 03 (events), the ones that carry a position.
    Vehicle {
        time: [u8; 6],
        archive: bool,
        vehicle_type: u8,
        subtype: u8,
        data: VehicleData<'a>,
        coordinates: Coordinates,
        extra: &'a [u8],
    },
    /// Type `FF`: a fix (BCD time, signed micro-degrees, altitude, speed in 0.1 km/h, course).
    Fix { time: [u8; 6], latitude: i32, longitude: i32, altitude_m: i16, speed_raw: u16, course: u16, extra: &'a [u8] },
}

/// The data of an `F0` report.
#[derive(Debug, Clone, PartialEq)]
pub enum VehicleData<'a> {
    /// Subtype 01: `(id, value)` pairs.
    Values(Vec<(u16, &'a [u8])>),
    /// Subtype 02: the trouble codes' texts.
    TroubleCodes(Vec<&'a [u8]>),
    /// Subtype 03: the event ids.
    Events(Vec<u8>),
}

/// The position block of an `F0` report: a status word (bit 0 ignition, 1 fixed, 2 south,
/// 3 west) and the coordinates in micro-degrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordinates {
    pub status: u32,
    pub latitude: u32,
    pub longitude: u32,
}

impl Coordinates {
    fn read(input: &[u8]) -> Res<'_, Self> {
        map((be_u32, be_u32, be_u32), |(status, latitude, longitude)| Coordinates { status, latitude, longitude })
            .parse_complete(input)
    }

    pub fn fixed(&self) -> bool {
        self.status & 0x02 != 0
    }

    pub fn latitude_deg(&self) -> f64 {
        let deg = f64::from(self.latitude) / 1e6;
        if self.status & 0x04 != 0 {
            -deg
        } else {
            deg
        }
    }

    pub fn longitude_deg(&self) -> f64 {
        let deg = f64::from(self.longitude) / 1e6;
        if self.status & 0x08 != 0 {
            -deg
        } else {
            deg
        }
    }
}

impl<'a> PassthroughReport<'a> {
    /// The report a pass-through of `kind` carries, when it is one of those above and its
    /// data fits (the time BCD, the subtype one of those with a position); other data stays
    /// what it was (some terminals send text under `F0`).
    pub fn parse(kind: u8, data: &'a [u8]) -> Option<Self> {
        match kind {
            0xF0 => {
                let ((time, archive, vehicle_type, subtype), rest) =
                    read((bcd_time, be_u8, be_u8, be_u8), data).ok()?;
                let (data, rest) = vehicle_data(subtype, rest)?;
                let (coordinates, extra) = read(Coordinates::read, rest).ok()?;
                Some(PassthroughReport::Vehicle {
                    time,
                    archive: archive != 0,
                    vehicle_type,
                    subtype,
                    data,
                    coordinates,
                    extra,
                })
            }
            0xFF => {
                let fix = (bcd_time, be_i32, be_i32, be_i16, be_u16, be_u16);
                let ((time, latitude, longitude, altitude_m, speed_raw, course), extra) = read(fix, data).ok()?;
                Some(PassthroughReport::Fix { time, latitude, longitude, altitude_m, speed_raw, course, extra })
            }
            _ => None,
        }
    }
}

/// Six BCD bytes, a time (which may still not be a valid date).
fn bcd_time(input: &[u8]) -> Res<'_, [u8; 6]> {
    verify(array::<6>, |t: &[u8; 6]| bcd::values(*t).is_some()).parse_complete(input)
}

/// The data of an `F0` report of `subtype`, and the bytes after it; `None` for a subtype
/// without a position, or data that does not fit.
fn vehicle_data(subtype: u8, input: &[u8]) -> Option<(VehicleData<'_>, &[u8])> {
    let parsed = match subtype {
        0x01 => read(length_count(be_u8, (be_u16, u8_prefixed)), input).map(|(v, rest)| (VehicleData::Values(v), rest)),
        0x02 => {
            // Per system (its id first), per trouble code (its code and status first), the text.
            let code = preceded((be_u32, be_u32), length_data(be_u16));
            let system = preceded(be_u32, length_count(be_u16, code));
            read(length_count(be_u16, system), input)
                .map(|(systems, rest)| (VehicleData::TroubleCodes(systems.into_iter().flatten().collect()), rest))
        }
        0x03 => {
            let event = map((be_u8, u8_prefixed), |(id, _)| id);
            read(length_count(be_u8, event), input).map(|(ids, rest)| (VehicleData::Events(ids), rest))
        }
        _ => return None,
    };
    parsed.ok()
}

/// The locations of a batch's items, each a 0x0200 body after its length (`width` bytes);
/// stops with an error at an item that does not fit or is not a location. `what` and
/// `offset` (of the items in the body) name the item in the error.
fn length_prefixed_locations<'a>(
    items: &'a [u8],
    width: usize,
    what: &'static str,
    offset: usize,
) -> impl Iterator<Item = Result<Location<'a>, LayoutError>> + 'a {
    let mut rest = items;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || rest.is_empty() {
            return None;
        }
        let at = items.len() - rest.len();
        let item = if width == 1 { read(u8_prefixed, rest) } else { read(length_data(be_u16), rest) };
        let item = match item {
            Ok((location, after)) => {
                rest = after;
                Location::parse(location)
            }
            Err(Short) => Err(LayoutError(format!("{what} at byte {} runs past the body", at + offset))),
        };
        failed = item.is_err();
        Some(item)
    })
}

/// 0x0704 batch upload: `count` locations, each preceded by its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    pub count: u16,
    /// 0 normal batch, 1 blind-area back-fill.
    pub kind: u8,
    pub items: &'a [u8],
}

impl<'a> Batch<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, LayoutError> {
        let ((count, kind), items) =
            read((be_u16, be_u8), body).map_err(|Short| short("a 0x0704 batch", 3, body.len()))?;
        Ok(Batch { count, kind, items })
    }

    /// The locations in order. Stops with an error at an item that does not fit the body
    /// or is not a location; the items before it stand.
    pub fn locations(&self) -> impl Iterator<Item = Result<Location<'a>, LayoutError>> + 'a {
        // Offsets in the errors count from the body, which has 3 bytes before the items.
        length_prefixed_locations(self.items, 2, "batch item", 3)
    }

    pub fn write(kind: u8, locations: &[Location<'_>], out: &mut Vec<u8>) {
        out.extend_from_slice(&(locations.len() as u16).to_be_bytes());
        out.push(kind);
        for l in locations {
            let mut item = Vec::new();
            l.write(&mut item);
            out.extend_from_slice(&(item.len() as u16).to_be_bytes());
            out.extend_from_slice(&item);
        }
    }
}

/// 0x0800 multimedia event, and the prefix of 0x0801 data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaEvent {
    pub media_id: u32,
    /// 0 image, 1 audio, 2 video.
    pub media_type: u8,
    /// 0 JPEG, 1 TIF, 2 MP3, 3 WAV, 4 WMV.
    pub format: u8,
    pub event: u8,
    pub channel: u8,
}

impl MediaEvent {
    pub const LEN: usize = 8;

    fn read(input: &[u8]) -> Res<'_, Self> {
        let fields = (be_u32, be_u8, be_u8, be_u8, be_u8);
        map(fields, |(media_id, media_type, format, event, channel)| MediaEvent {
            media_id,
            media_type,
            format,
            event,
            channel,
        })
        .parse_complete(input)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.media_id.to_be_bytes());
        out.extend_from_slice(&[self.media_type, self.format, self.event, self.channel]);
    }

    pub fn type_name(&self) -> Option<&'static str> {
        ["image", "audio", "video"].get(usize::from(self.media_type)).copied()
    }

    pub fn format_name(&self) -> Option<&'static str> {
        ["jpeg", "tif", "mp3", "wav", "wmv"].get(usize::from(self.format)).copied()
    }
}

/// 0x0801 multimedia data (after reassembly): the event, the basic location block when the
/// terminal sends one, and the media bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaData<'a> {
    pub event: MediaEvent,
    pub location: Option<Location<'a>>,
    pub data: &'a [u8],
}

impl<'a> MediaData<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, LayoutError> {
        let (event, rest) =
            read(MediaEvent::read, body).map_err(|Short| short("0x0801 multimedia data", 8, body.len()))?;
        // 2013 and 2019 put a 28-byte location block before the data; some vendor firmware
        // does not (docs/protocols/jt808.md §6). A JPEG starts FF D8, which no location block can (its alarm word
        // would have all of bits 24–31 set and more), so that tells them apart for images.
        let jpeg_first = rest.starts_with(&[0xFF, 0xD8]);
        if rest.len() >= Location::BASIC_LEN && !jpeg_first {
            let (block, data) = rest.split_at(Location::BASIC_LEN);
            Ok(MediaData { event, location: Some(Location::parse(block)?), data })
        } else {
            Ok(MediaData { event, location: None, data: rest })
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        self.event.write(out);
        if let Some(l) = &self.location {
            l.write(out);
        }
        out.extend_from_slice(self.data);
    }
}

/// 0x0702 driver identity (2013/2019 layout: card state first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverIdentity<'a> {
    /// 1 card inserted, 2 card removed.
    pub state: u8,
    pub time: [u8; 6],
    /// Present when the card was inserted: 0 read fine, else why not.
    pub read_result: Option<u8>,
    pub name: &'a [u8],
    pub certificate: &'a [u8],
    pub organization: &'a [u8],
    /// `YYYYMMDD` BCD.
    pub valid_until: Option<[u8; 4]>,
    /// 2019: the driver's id-card number.
    pub id_number: Option<&'a [u8]>,
}

impl<'a> DriverIdentity<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, LayoutError> {
        let bad = |Short| LayoutError(format!("a {}-byte body does not hold a 0x0702 driver identity", body.len()));
        let ((state, time), rest) = read((be_u8, array::<6>), body).map_err(bad)?;
        let mut d = DriverIdentity {
            state,
            time,
            read_result: None,
            name: &[],
            certificate: &[],
            organization: &[],
            valid_until: None,
            id_number: None,
        };
        if state != 1 {
            return Ok(d);
        }
        let (result, rest) = read(be_u8, rest).map_err(bad)?;
        d.read_result = Some(result);
        if result != 0 {
            return Ok(d);
        }
        let card = (u8_prefixed, take(20usize), u8_prefixed, array::<4>);
        let ((name, certificate, organization, valid_until), rest) = read(card, rest).map_err(bad)?;
        (d.name, d.certificate, d.organization, d.valid_until) = (name, certificate, organization, Some(valid_until));
        // 2019 adds the id-card number; a shorter tail is vendor padding, not a number.
        d.id_number = read(take(20usize), rest).ok().map(|(number, _)| number);
        Ok(d)
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.state);
        out.extend_from_slice(&self.time);
        let Some(result) = self.read_result else { return };
        out.push(result);
        if result != 0 {
            return;
        }
        out.push(self.name.len().min(255) as u8);
        out.extend_from_slice(&self.name[..self.name.len().min(255)]);
        let n = self.certificate.len().min(20);
        out.extend_from_slice(&self.certificate[..n]);
        out.resize(out.len() + 20 - n, 0);
        out.push(self.organization.len().min(255) as u8);
        out.extend_from_slice(&self.organization[..self.organization.len().min(255)]);
        out.extend_from_slice(&self.valid_until.unwrap_or([0; 4]));
        if let Some(id) = self.id_number {
            let n = id.len().min(20);
            out.extend_from_slice(&id[..n]);
            out.resize(out.len() + 20 - n, 0);
        }
    }
}

/// One uplink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// 0x0001.
    GeneralResponse(GeneralResponse),
    /// 0x0002; vendor bytes in the body are kept.
    Heartbeat(&'a [u8]),
    /// 0x0003.
    Deregister,
    /// 0x0004 (2019): the terminal asks for the time.
    TimeQuery,
    /// 0x0005 (2019): the terminal asks for packages again.
    ResendRequest {
        first_serial: u16,
        indexes: Vec<u16>,
    },
    Register(Register<'a>),
    Auth(Auth<'a>),
    Parameters(Parameters<'a>),
    Attributes(TerminalAttributes<'a>),
    /// 0x0108: upgrade type (0 terminal, 12 IC-card reader, 52 GNSS module) and result
    /// (0 ok, 1 failed, 2 cancelled).
    UpgradeResult {
        kind: u8,
        result: u8,
    },
    Location(Location<'a>),
    /// 0x0201 and 0x0500: a location answering the platform message with `reply_serial`.
    LocationReply {
        reply_serial: u16,
        location: Location<'a>,
    },
    Batch(Batch<'a>),
    MediaEvent(MediaEvent),
    MediaData(MediaData<'a>),
    /// 0x0701 electronic waybill.
    Waybill(&'a [u8]),
    DriverIdentity(DriverIdentity<'a>),
    /// 0x0210.
    Batch2(Batch2<'a>),
    /// 0x5501 (live) and 0x5502 (from the blind area).
    VendorLocation {
        blind: bool,
        location: VendorLocation<'a>,
    },
    /// 0x0900: pass-through type and data.
    Passthrough {
        kind: u8,
        data: &'a [u8],
    },
    /// Any other id: the body as sent.
    Unknown(&'a [u8]),
}

impl<'a> Message<'a> {
    /// Reads the body of a message with `header`.
    pub fn parse(header: &Header, body: &'a [u8]) -> Result<Self, LayoutError> {
        let edition = header.terminal.edition;
        Ok(match header.message_id {
            id::TERMINAL_RESPONSE => {
                let ((reply_serial, reply_id, result), _) =
                    read((be_u16, be_u16, be_u8), body).map_err(|Short| short("a 0x0001 response", 5, body.len()))?;
                Message::GeneralResponse(GeneralResponse { reply_serial, reply_id, result })
            }
            id::HEARTBEAT => Message::Heartbeat(body),
            id::DEREGISTER => Message::Deregister,
            id::TIME_QUERY => Message::TimeQuery,
            id::RESEND_REQUEST_UP => {
                let count_width = match edition {
                    Edition::V2019 { .. } => 2,
                    Edition::V2013 => 1,
                };
                let count = move |input| match count_width {
                    2 => be_u16(input),
                    _ => map(be_u8, u16::from).parse_complete(input),
                };
                let ((first_serial, count), rest) =
                    read((be_u16, count), body).map_err(|Short| short("a 0x0005 request", 3, body.len()))?;
                let (indexes, _) = read(nom::multi::count(be_u16, usize::from(count)), rest)
                    .map_err(|Short| LayoutError(format!("0x0005 lists {count} packages the body does not hold")))?;
                Message::ResendRequest { first_serial, indexes }
            }
            id::REGISTER => Message::Register(Register::parse(body, edition)?),
            id::AUTHENTICATE => Message::Auth(Auth::parse(body, edition)),
            id::PARAMETERS => {
                let ((reply_serial, count), items) =
                    read((be_u16, be_u8), body).map_err(|Short| short("a 0x0104 response", 3, body.len()))?;
                Message::Parameters(Parameters { reply_serial, count, items })
            }
            id::ATTRIBUTES => Message::Attributes(TerminalAttributes::parse(body, edition)?),
            id::UPGRADE_RESULT => match *body {
                [kind, result, ..] => Message::UpgradeResult { kind, result },
                _ => return Err(short("a 0x0108 result", 2, body.len())),
            },
            id::LOCATION => Message::Location(Location::parse(body)?),
            id::LOCATION_REPLY | id::VEHICLE_CONTROL_REPLY => {
                if body.len() < 2 {
                    return Err(short("a location reply", 30, body.len()));
                }
                Message::LocationReply {
                    reply_serial: u16::from_be_bytes([body[0], body[1]]),
                    location: Location::parse(&body[2..])?,
                }
            }
            id::BATCH => Message::Batch(Batch::parse(body)?),
            id::BATCH_2 => Message::Batch2(Batch2::parse(body)),
            id::VENDOR_LOCATION | id::VENDOR_LOCATION_BLIND => Message::VendorLocation {
                blind: header.message_id == id::VENDOR_LOCATION_BLIND,
                location: VendorLocation::parse(body)?,
            },
            id::MEDIA_EVENT => {
                let (event, _) =
                    read(MediaEvent::read, body).map_err(|Short| short("a 0x0800 event", 8, body.len()))?;
                Message::MediaEvent(event)
            }
            id::MEDIA_DATA => Message::MediaData(MediaData::parse(body)?),
            id::WAYBILL => Message::Waybill(body),
            id::DRIVER_IDENTITY => Message::DriverIdentity(DriverIdentity::parse(body)?),
            id::PASSTHROUGH_UP => match *body {
                [kind, ref data @ ..] => Message::Passthrough { kind, data },
                [] => return Err(short("a 0x0900 pass-through", 1, 0)),
            },
            _ => Message::Unknown(body),
        })
    }

    /// Writes the body back; parsing it with the same header gives the same message.
    pub fn write_body(&self, edition: Edition, out: &mut Vec<u8>) {
        match self {
            Message::GeneralResponse(r) => {
                out.extend_from_slice(&super::general_response_body(r.reply_serial, r.reply_id, r.result))
            }
            Message::Heartbeat(extra) => out.extend_from_slice(extra),
            Message::Deregister | Message::TimeQuery => {}
            Message::ResendRequest { first_serial, indexes } => {
                out.extend_from_slice(&first_serial.to_be_bytes());
                match edition {
                    Edition::V2019 { .. } => out.extend_from_slice(&(indexes.len() as u16).to_be_bytes()),
                    Edition::V2013 => out.push(indexes.len() as u8),
                }
                for i in indexes {
                    out.extend_from_slice(&i.to_be_bytes());
                }
            }
            Message::Register(r) => r.write(out),
            Message::Auth(a) => a.write(out),
            Message::Parameters(p) => {
                out.extend_from_slice(&p.reply_serial.to_be_bytes());
                out.push(p.count);
                out.extend_from_slice(p.items);
            }
            Message::Attributes(a) => {
                out.extend_from_slice(&a.terminal_type.to_be_bytes());
                for field in [a.manufacturer, a.model, a.terminal_id, a.iccid] {
                    out.extend_from_slice(field);
                }
                out.push(a.hardware_version.len() as u8);
                out.extend_from_slice(a.hardware_version);
                out.push(a.firmware_version.len() as u8);
                out.extend_from_slice(a.firmware_version);
                out.extend_from_slice(&[a.gnss, a.comm]);
            }
            Message::UpgradeResult { kind, result } => out.extend_from_slice(&[*kind, *result]),
            Message::Location(l) => l.write(out),
            Message::LocationReply { reply_serial, location } => {
                out.extend_from_slice(&reply_serial.to_be_bytes());
                location.write(out);
            }
            Message::Batch(b) => {
                out.extend_from_slice(&b.count.to_be_bytes());
                out.push(b.kind);
                out.extend_from_slice(b.items);
            }
            Message::Batch2(b) => b.write(out),
            Message::VendorLocation { location, .. } => location.write(out),
            Message::MediaEvent(e) => e.write(out),
            Message::MediaData(d) => d.write(out),
            Message::Waybill(b) | Message::Unknown(b) => out.extend_from_slice(b),
            Message::DriverIdentity(d) => d.write(out),
            Message::Passthrough { kind, data } => {
                out.push(*kind);
                out.extend_from_slice(data);
            }
        }
    }
}
