//! Each standard sentence's layout, read and written side by side: the reader a nom tuple
//! of field parsers over the split fields (`grammar.rs`), in the standard's order
//! (docs/protocols/nmea.md §4); the writer the same fields in the same order through the
//! encoder's field writers (`encode.rs`), so that decode, encode, decode gives back the
//! same sentence.
//!
//! The writers are always inlined into the encoder's one function, where the body's
//! length stays in a register (`encode.rs`, `Body`).

use nom::combinator::cond;
use nom::Parser;

use super::decimal::Decimal;
use super::encode::{EncodeError, Out};
use super::fields::{self, NmeaTime};
use super::grammar::{coordinate, letter, literal, malformed, opt, read, repeat, skip, Bad, Cursor, Fields};
use super::sentence::{
    ascii, one_hex_digit, Gga, Gll, Gns, Gsa, Gst, Gsv, Hdt, Message, Rmc, SatelliteInView, Txt, Vtg, Zda, MODES,
    NAV_STATUS, STATUS,
};
use crate::framing::Reject;

#[inline(always)]
fn time<'t, 'a: 't>() -> impl Parser<Cursor<'t, 'a>, Output = Option<NmeaTime>, Error = Bad> {
    opt("UTC time", fields::time)
}

#[inline(always)]
fn decimal<'t, 'a: 't>(what: &'static str) -> impl Parser<Cursor<'t, 'a>, Output = Option<Decimal>, Error = Bad> {
    opt(what, fields::decimal)
}

#[inline(always)]
fn unsigned<'t, 'a: 't, T: TryFrom<u32>>(
    what: &'static str,
) -> impl Parser<Cursor<'t, 'a>, Output = Option<T>, Error = Bad> {
    opt(what, fields::unsigned::<T>)
}

// Inline, as `Fields::split` (which says why).
#[inline]
pub(super) fn read_rmc<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        time(),
        letter("status", STATUS),
        coordinate(90),
        coordinate(180),
        decimal("speed over ground, knots"),
        decimal("course over ground"),
        opt("date", fields::date),
        decimal("magnetic variation"),
        letter("magnetic variation direction", b"EW"),
        letter("mode indicator", MODES),
        letter("navigational status", NAV_STATUS),
    );
    let (time, status, latitude, longitude, speed_knots, course_deg, date, variation, variation_dir, mode, nav_status) =
        read(layout, f)?;
    Ok(Message::Rmc(Rmc {
        time,
        status,
        latitude,
        longitude,
        speed_knots,
        course_deg,
        date,
        magnetic_variation_deg: variation,
        magnetic_variation_dir: variation_dir,
        mode,
        nav_status,
    }))
}

#[inline(always)]
pub(super) fn write_rmc(m: &Rmc, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.time(m.time);
    o.letter(m.status);
    o.coordinate(m.latitude, 2);
    o.coordinate(m.longitude, 3);
    o.dec(m.speed_knots);
    o.dec(m.course_deg);
    o.date(m.date);
    o.dec(m.magnetic_variation_deg);
    o.letter(m.magnetic_variation_dir);
    // Optional trailing fields are written only up to the last one present.
    if m.mode.is_some() || m.nav_status.is_some() {
        o.letter(m.mode);
    }
    if m.nav_status.is_some() {
        o.letter(m.nav_status);
    }
    Ok(())
}

// Inline, as `Fields::split` (which says why).
#[inline]
pub(super) fn read_gga<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        time(),
        coordinate(90),
        coordinate(180),
        unsigned("fix quality"),
        unsigned("satellites used"),
        decimal("HDOP"),
        decimal("altitude"),
        literal("altitude unit", b"M"),
        decimal("geoid separation"),
        literal("geoid separation unit", b"M"),
        decimal("DGPS age"),
        unsigned("DGPS station"),
    );
    let (time, latitude, longitude, quality, satellites, hdop, altitude_m, (), geoid, (), age, station) =
        read(layout, f)?;
    Ok(Message::Gga(Gga {
        time,
        latitude,
        longitude,
        quality,
        satellites,
        hdop,
        altitude_m,
        geoid_separation_m: geoid,
        dgps_age_s: age,
        dgps_station: station,
    }))
}

#[inline(always)]
pub(super) fn write_gga(m: &Gga, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.time(m.time);
    o.coordinate(m.latitude, 2);
    o.coordinate(m.longitude, 3);
    o.uint(m.quality, 1);
    // The standard's `xx` (00–12), as receivers write it.
    o.uint(m.satellites, 2);
    o.dec(m.hdop);
    o.dec(m.altitude_m);
    o.text("M");
    o.dec(m.geoid_separation_m);
    o.text("M");
    o.dec(m.dgps_age_s);
    o.uint(m.dgps_station, 4);
    Ok(())
}

pub(super) fn read_gll<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (coordinate(90), coordinate(180), time(), letter("status", STATUS), letter("mode indicator", MODES));
    let (latitude, longitude, time, status, mode) = read(layout, f)?;
    Ok(Message::Gll(Gll { latitude, longitude, time, status, mode }))
}

#[inline(always)]
pub(super) fn write_gll(m: &Gll, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.coordinate(m.latitude, 2);
    o.coordinate(m.longitude, 3);
    o.time(m.time);
    o.letter(m.status);
    if m.mode.is_some() {
        o.letter(m.mode);
    }
    Ok(())
}

pub(super) fn read_vtg<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        decimal("course, true"),
        skip(),
        decimal("course, magnetic"),
        literal("magnetic course unit", b"M"),
        decimal("speed, knots"),
        literal("knots unit", b"N"),
        decimal("speed, km/h"),
        literal("km/h unit", b"K"),
        letter("mode indicator", MODES),
    );
    let (course_true_deg, (), course_magnetic_deg, (), speed_knots, (), speed_kmh, (), mode) = read(layout, f)?;
    Ok(Message::Vtg(Vtg { course_true_deg, course_magnetic_deg, speed_knots, speed_kmh, mode, legacy: false }))
}

pub(super) fn read_legacy_vtg<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout =
        (decimal("course, true"), decimal("course, magnetic"), decimal("speed, knots"), decimal("speed, km/h"));
    let (course_true_deg, course_magnetic_deg, speed_knots, speed_kmh) = read(layout, f)?;
    Ok(Message::Vtg(Vtg { course_true_deg, course_magnetic_deg, speed_knots, speed_kmh, mode: None, legacy: true }))
}

#[inline(always)]
pub(super) fn write_vtg(m: &Vtg, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    if m.legacy {
        if m.mode.is_some() {
            return Err(EncodeError("the legacy VTG form has no mode field".into()));
        }
        o.dec(m.course_true_deg);
        o.dec(m.course_magnetic_deg);
        o.dec(m.speed_knots);
        o.dec(m.speed_kmh);
        return Ok(());
    }
    o.dec(m.course_true_deg);
    o.text("T");
    o.dec(m.course_magnetic_deg);
    o.text("M");
    o.dec(m.speed_knots);
    o.text("N");
    o.dec(m.speed_kmh);
    o.text("K");
    if m.mode.is_some() {
        o.letter(m.mode);
    }
    Ok(())
}

pub(super) fn read_gsa<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    // 12 id slots between the fix type and the DOPs, the empty ones left out.
    let ids = repeat(12, unsigned::<u16>("satellite id"), Vec::new, |mut ids: Vec<u16>, id| {
        ids.extend(id);
        ids
    });
    let layout = (
        letter("selection mode", b"MA"),
        unsigned("fix type"),
        ids,
        decimal("PDOP"),
        decimal("HDOP"),
        decimal("VDOP"),
        opt("system id", one_hex_digit),
    );
    let (selection_mode, fix_type, satellite_ids, pdop, hdop, vdop, system_id) = read(layout, f)?;
    Ok(Message::Gsa(Gsa { selection_mode, fix_type, satellite_ids, pdop, hdop, vdop, system_id }))
}

#[inline(always)]
pub(super) fn write_gsa(m: &Gsa, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    if m.satellite_ids.len() > 12 {
        return Err(EncodeError(format!("GSA has 12 id slots, not {}", m.satellite_ids.len())));
    }
    o.letter(m.selection_mode);
    o.uint(m.fix_type, 1);
    for slot in 0..12 {
        o.uint(m.satellite_ids.get(slot).copied(), 2);
    }
    o.dec(m.pdop);
    o.dec(m.hdop);
    o.dec(m.vdop);
    o.hex_id(m.system_id);
    Ok(())
}

/// 3 header fields, then blocks of 4, then an optional signal id: of the fields sent,
/// 3 + 4k (+ 1).
pub(super) fn read_gsv<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let after_header = f.len.saturating_sub(3);
    let has_signal = after_header % 4 == 1;
    let blocks = (after_header - usize::from(has_signal)).div_ceil(4);
    let block = (
        unsigned("satellite id"),
        opt("elevation", |s| fields::signed::<i16>(s).filter(|e| (-90..=90).contains(e))),
        opt("azimuth", |s| fields::unsigned::<u16>(s).filter(|a| *a <= 360)),
        unsigned("SNR"),
    );
    let satellites = repeat(
        blocks,
        block,
        || Vec::with_capacity(blocks),
        |mut all: Vec<_>, b| {
            let (id, elevation_deg, azimuth_deg, snr_db) = b;
            all.push(SatelliteInView { id, elevation_deg, azimuth_deg, snr_db });
            all
        },
    );
    let signal = cond(has_signal, opt("signal id", one_hex_digit));
    let layout = (unsigned("number of sentences"), unsigned("sentence number"), unsigned("satellites in view"));
    let ((sentences, sentence, in_view), satellites, signal_id) = read((layout, satellites, signal), f)?;
    Ok(Message::Gsv(Gsv { sentences, sentence, in_view, satellites, signal_id: signal_id.flatten() }))
}

#[inline(always)]
pub(super) fn write_gsv(m: &Gsv, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.uint(m.sentences, 1);
    o.uint(m.sentence, 1);
    o.uint(m.in_view, 2);
    for sat in &m.satellites {
        o.uint(sat.id, 2);
        o.int(sat.elevation_deg, 2);
        o.uint(sat.azimuth_deg, 3);
        o.uint(sat.snr_db, 2);
    }
    o.hex_id(m.signal_id);
    Ok(())
}

pub(super) fn read_zda<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        time(),
        unsigned("day"),
        unsigned("month"),
        unsigned("year"),
        opt("local zone hours", |s| fields::signed::<i8>(s).filter(|h| (-13..=13).contains(h))),
        opt("local zone minutes", |s| fields::signed::<i8>(s).filter(|m| (-59..=59).contains(m))),
    );
    let (time, day, month, year, zone_hours, zone_minutes) = read(layout, f)?;
    if let (Some(d), Some(m), Some(y)) = (day, month, year) {
        if crate::time::Date::new(i32::from(y), m, d).is_none() {
            return Err(malformed(format!("ZDA date {y:04}-{m:02}-{d:02} does not exist")));
        }
    }
    Ok(Message::Zda(Zda { time, day, month, year, zone_hours, zone_minutes }))
}

#[inline(always)]
pub(super) fn write_zda(m: &Zda, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.time(m.time);
    o.uint(m.day, 2);
    o.uint(m.month, 2);
    o.uint(m.year, 4);
    o.int(m.zone_hours, 2);
    o.int(m.zone_minutes, 2);
    Ok(())
}

pub(super) fn read_gns<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        time(),
        coordinate(90),
        coordinate(180),
        opt("mode", |s: &[u8]| s.iter().all(|c| MODES.contains(c)).then(|| ascii(s))),
        unsigned("satellites used"),
        decimal("HDOP"),
        decimal("altitude"),
        decimal("geoid separation"),
        decimal("DGPS age"),
        unsigned("DGPS station"),
        letter("navigational status", NAV_STATUS),
    );
    let (time, latitude, longitude, mode, satellites, hdop, altitude_m, geoid, age, station, nav_status) =
        read(layout, f)?;
    Ok(Message::Gns(Gns {
        time,
        latitude,
        longitude,
        mode,
        satellites,
        hdop,
        altitude_m,
        geoid_separation_m: geoid,
        dgps_age_s: age,
        dgps_station: station,
        nav_status,
    }))
}

#[inline(always)]
pub(super) fn write_gns(m: &Gns<'_>, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.time(m.time);
    o.coordinate(m.latitude, 2);
    o.coordinate(m.longitude, 3);
    o.opt_text(m.mode);
    o.uint(m.satellites, 2);
    o.dec(m.hdop);
    o.dec(m.altitude_m);
    o.dec(m.geoid_separation_m);
    o.dec(m.dgps_age_s);
    o.uint(m.dgps_station, 4);
    if m.nav_status.is_some() {
        o.letter(m.nav_status);
    }
    Ok(())
}

pub(super) fn read_gst<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let layout = (
        time(),
        decimal("RMS of range residuals"),
        decimal("semi-major sigma"),
        decimal("semi-minor sigma"),
        decimal("semi-major orientation"),
        decimal("latitude sigma"),
        decimal("longitude sigma"),
        decimal("altitude sigma"),
    );
    let (time, rms, major, minor, orientation, latitude, longitude, altitude) = read(layout, f)?;
    Ok(Message::Gst(Gst {
        time,
        rms_range_residual: rms,
        sigma_semi_major_m: major,
        sigma_semi_minor_m: minor,
        semi_major_orientation_deg: orientation,
        sigma_latitude_m: latitude,
        sigma_longitude_m: longitude,
        sigma_altitude_m: altitude,
    }))
}

#[inline(always)]
pub(super) fn write_gst(m: &Gst, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.time(m.time);
    for v in [
        m.rms_range_residual,
        m.sigma_semi_major_m,
        m.sigma_semi_minor_m,
        m.semi_major_orientation_deg,
        m.sigma_latitude_m,
        m.sigma_longitude_m,
        m.sigma_altitude_m,
    ] {
        o.dec(v);
    }
    Ok(())
}

pub(super) fn read_hdt<'a>(f: &Fields<'a>) -> Result<Message<'a>, Reject> {
    let (heading_deg, ()) = read((decimal("heading"), literal("true indicator", b"T")), f)?;
    Ok(Message::Hdt(Hdt { heading_deg }))
}

#[inline(always)]
pub(super) fn write_hdt(m: &Hdt, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    o.dec(m.heading_deg);
    o.text("T");
    Ok(())
}

/// Fields 1-3 as sent, and the text rejoined from field 4 on: text may contain commas
/// (docs/protocols/nmea.md §4, TXT).
pub(super) fn read_txt(text: &[u8]) -> Message<'_> {
    let mut parts = ascii(text).splitn(4, ',');
    let mut next = || parts.next().unwrap_or("");
    Message::Txt(Txt { sentences: next(), sentence: next(), text_id: next(), text: next() })
}

#[inline(always)]
pub(super) fn write_txt(m: &Txt<'_>, o: &mut Out<'_, '_>) -> Result<(), EncodeError> {
    for f in [m.sentences, m.sentence, m.text_id] {
        if f.contains(',') {
            return Err(EncodeError("TXT count and id fields cannot contain ','".into()));
        }
        o.text(f);
    }
    o.text(m.text);
    Ok(())
}
