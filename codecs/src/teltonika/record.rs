//! What Teltonika traffic becomes (docs/protocols/teltonika.md §3–§6): a record per AVL
//! record or command packet, a function of the packet and the device's IMEI, and what the
//! device is sent back, one table ([`answer`]). The handshake and the IMEI are the
//! session's (`stream.rs`).

use std::sync::Arc;

use super::avl::{IoElement, IoValue, RecordView};
use super::gh3000::Gh3000Record;
use super::{
    tcp_ack, udp_ack, Command, UdpPacket, CODEC_12, CODEC_13, CODEC_14, CODEC_15, CODEC_8, CODEC_8E, IMEI_ACCEPT,
    IMEI_REJECT,
};
use crate::record::{IoBlock, IoBuilder, IoRecord, Kind, Protocol, Record, Timestamp};
use crate::stream::{push_record, Reply, StreamEvent};
use crate::wire::hex::to_hex;

/// What every record takes from the session.
pub(super) struct Context<'s> {
    /// From the handshake (TCP) or the channel header (UDP).
    pub device_id: Option<&'s Arc<str>>,
}

impl Context<'_> {
    pub(super) fn record(&self, kind: Kind, message_type: &'static str) -> Record {
        let mut r = Record::new(Protocol::Teltonika, kind, message_type);
        r.device_id = self.device_id.cloned();
        r
    }

    /// A new record pushed to `out` and filled there (`push_record` says why).
    pub(super) fn push<'o>(
        &self,
        kind: Kind,
        message_type: &'static str,
        out: &'o mut Vec<StreamEvent>,
    ) -> &'o mut Record {
        push_record(out, Protocol::Teltonika, kind, message_type, self.device_id.cloned())
    }
}

/// What the device is sent (docs/protocols/teltonika.md §2, §5, §6), in one place: the
/// handshake's `01` or `00`; for a data field, the count of records taken, as TCP's 4-byte
/// ack or as UDP's echo of the channel's packet ids; nothing for a command response (Codec
/// 12–15), which the device does not wait on.
pub(super) enum Answered<'p> {
    Handshake { accepted: bool },
    Data { codec: u8, count: u8, udp: Option<&'p UdpPacket<'p>> },
}

pub(super) fn answer(event: Answered<'_>) -> Option<Reply> {
    match event {
        Answered::Handshake { accepted } => Some([if accepted { IMEI_ACCEPT } else { IMEI_REJECT }].into()),
        Answered::Data { codec: CODEC_12 | CODEC_13 | CODEC_14 | CODEC_15, .. } => None,
        Answered::Data { count, udp: Some(u), .. } => Some(udp_ack(u.packet_id, u.avl_packet_id, count).into()),
        Answered::Data { count, udp: None, .. } => Some(tcp_ack(u32::from(count)).into()),
    }
}

/// The record's `message_type` for an AVL codec.
pub(super) fn avl_message_type(codec: u8) -> &'static str {
    match codec {
        CODEC_8 => "0x08",
        CODEC_8E => "0x8e",
        _ => "0x10",
    }
}

/// What one AVL record sets on the record made for it (docs/protocols/teltonika.md §3);
/// its IO elements are written into its packet's `block`, which the caller then shares
/// with the packet's records ([`IoBlock::share`]).
pub(super) fn fill_avl_record(r: &mut Record, v: &RecordView<'_>, block: &mut IoBlock) {
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
    r.attributes.set("event_io_id", v.event_io_id);
    r.attributes.set_opt("generation_type", v.generation_type);
    r.attributes.set("priority", v.priority);
    // Collected, then kept typed (`IoElements`): a run of the packet's block, where a JSON
    // map cost a string per id and its nodes.
    let mut io = block.record();
    let mut iccid = Iccid::default();
    v.for_each_io(
        #[inline(always)]
        |e| {
            match e.value {
                IoValue::Bytes(b) => push_hex(&mut io, e.id, b),
                other => io.push(e.id, other.as_u64().unwrap_or(0)),
            }
            // A bit test, and a call only for the ids named: the match inline made this
            // closure a call of its own per element, through two jump tables.
            if is_well_known(e.id) {
                name_well_known(r, e, &mut iccid);
            }
        },
    );
    // The ICCID comes in two 8-byte halves, each a decimal number.
    match iccid {
        Iccid { first: Some(a), second: Some(b) } => r.attributes.set("iccid", format!("{a}{b}")),
        Iccid { first: Some(a), second: None } => r.attributes.set("iccid", a.to_string()),
        _ => {}
    }
    // A repeated id keeps its last value, as inserting one by one into a map did.
    r.attributes.set_io(io.finish());
}

/// Out of the IO walk's loop: only the 16-byte and variable-length elements are hex.
#[cold]
fn push_hex(io: &mut IoRecord<'_>, id: u16, bytes: &[u8]) {
    io.push_hex(id, to_hex(bytes));
}

/// The two halves of an ICCID, as IO elements 11 and 14.
#[derive(Default)]
struct Iccid {
    first: Option<u64>,
    second: Option<u64>,
}

/// The ids [`name_well_known`] names, a bit each (all are below 256).
const WELL_KNOWN: [u64; 4] = id_bits(&[11, 14, 16, 21, 66, 67, 78, 181, 182, 199, 239, 240]);

const fn id_bits(ids: &[u8]) -> [u64; 4] {
    let mut bits = [0u64; 4];
    let mut i = 0;
    while i < ids.len() {
        bits[(ids[i] >> 6) as usize] |= 1 << (ids[i] & 63);
        i += 1;
    }
    bits
}

#[inline(always)]
fn is_well_known(id: u16) -> bool {
    id < 256 && WELL_KNOWN[usize::from(id >> 6)] >> (id & 63) & 1 == 1
}

/// The well-known ids of the FMB/FMC/FMM families (docs/protocols/teltonika.md §3.2), named
/// only when the value has the width the AVL table gives them: other families reuse ids.
/// The raw `io` stays complete whatever is named here.
#[inline(never)]
fn name_well_known(r: &mut Record, e: IoElement<'_>, iccid: &mut Iccid) {
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
        (11, IoValue::U64(n)) => iccid.first = Some(n),
        (14, IoValue::U64(n)) => iccid.second = Some(n),
        // 0 means no key is present.
        (78, IoValue::U64(n)) if n != 0 => r.attributes.set("ibutton", format!("{n:016x}")),
        _ => {}
    }
}

/// One normalized record for one Codec 7 record (docs/protocols/teltonika.md §4.1): a
/// position when it carries coordinates, a status otherwise.
pub(super) fn gh3000_record(ctx: &Context<'_>, g: &Gh3000Record) -> Record {
    let location = g.location.unwrap_or_default();
    let kind = if location.coordinates.is_some() { Kind::Position } else { Kind::Status };
    let mut r = ctx.record(kind, "0x07");
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
    let mut io = IoBuilder::default();
    for &(id, v) in g.io.iter().flatten().flatten() {
        io.push(u16::from(id), u64::from(v));
    }
    r.attributes.set_io(io.build());
    r
}

/// The record of a Codec 12–15 packet: a command response (or a command, from a peer).
pub(super) fn command_record(ctx: &Context<'_>, cmd: &Command<'_>) -> Record {
    let message_type = match cmd.codec {
        CODEC_12 => "0x0c",
        CODEC_13 => "0x0d",
        CODEC_14 => "0x0e",
        _ => "0x0f",
    };
    let mut r = ctx.record(Kind::CommandResponse, message_type);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `WELL_KNOWN` is exactly the ids `name_well_known` names: any other id, at any width,
    /// leaves the record as it was, and each of them is named at some width.
    #[test]
    fn the_well_known_bits_are_the_ids_named() {
        for id in 0..=u16::MAX {
            let mut named_at_some_width = false;
            for value in [IoValue::U8(1), IoValue::U16(1), IoValue::U32(1), IoValue::U64(1), IoValue::Bytes(&[1])] {
                let (mut r, mut iccid) = (Record::EMPTY, Iccid::default());
                name_well_known(&mut r, IoElement { id, value }, &mut iccid);
                let named = r != Record::EMPTY || iccid.first.is_some() || iccid.second.is_some();
                assert!(!named || is_well_known(id), "id {id} is named but not in WELL_KNOWN");
                named_at_some_width |= named;
            }
            assert_eq!(named_at_some_width, is_well_known(id), "id {id}");
        }
    }
}
