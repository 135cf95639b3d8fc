//! Structure-aware: `arbitrary` builds a device's Teltonika traffic (the IMEI handshake,
//! then AVL packets of Codec 8, 8 Extended and 16 with any records and IO elements), written
//! with right CRCs and counts so every packet reaches the record parser, some then damaged;
//! over TCP, and the same packets as UDP datagrams. The decoder must not panic, must give
//! the same events for every read size, must give every record of every undamaged packet and
//! ack each with its count (UDP: echoing the device's ids), and nothing more.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::{
    encode_data, encode_imei, encode_packet, tcp_ack, udp_ack, AvlRecord, GpsElement, TeltonikaDecoder, TeltonikaOptions,
    UdpPacket,
};
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent, Transport};

#[derive(Debug, Arbitrary)]
struct Rec {
    timestamp_ms: u64,
    priority: u8,
    lon: i32,
    lat: i32,
    altitude_m: i16,
    angle_deg: u16,
    satellites: u8,
    speed_kmh: u16,
    event_io_id: u16,
    generation_type: u8,
    io_u8: Vec<(u16, u8)>,
    io_u16: Vec<(u16, u16)>,
    io_u32: Vec<(u16, u32)>,
    io_u64: Vec<(u16, u64)>,
    io_var: Vec<(u16, Vec<u8>)>,
}

#[derive(Debug, Arbitrary)]
struct Packet {
    codec: u8,
    records: Vec<Rec>,
    packet_id: u16,
    avl_packet_id: u8,
    damage: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
struct Traffic {
    chunk: u8,
    imei: u64,
    packets: Vec<Packet>,
}

fn record(r: &Rec, codec: u8) -> AvlRecord {
    // Codec 8 and 16 ids are one byte (16: two-byte ids, one-byte counts); 8E two.
    let id = |i: u16| if codec == 0x8E || codec == 0x10 { i } else { i & 0xFF };
    AvlRecord {
        timestamp_ms: r.timestamp_ms,
        priority: r.priority,
        gps: GpsElement {
            longitude_e7: r.lon,
            latitude_e7: r.lat,
            altitude_m: r.altitude_m,
            angle_deg: r.angle_deg,
            satellites: r.satellites,
            speed_kmh: r.speed_kmh,
        },
        event_io_id: id(r.event_io_id),
        generation_type: (codec == 0x10).then_some(r.generation_type),
        declared_io_count: None,
        io_u8: r.io_u8.iter().map(|&(i, v)| (id(i), v)).collect(),
        io_u16: r.io_u16.iter().map(|&(i, v)| (id(i), v)).collect(),
        io_u32: r.io_u32.iter().map(|&(i, v)| (id(i), v)).collect(),
        io_u64: r.io_u64.iter().map(|&(i, v)| (id(i), v)).collect(),
        io_var: if codec == 0x8E { r.io_var.clone() } else { Vec::new() },
    }
}

fn run(mut d: TeltonikaDecoder, input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let replay = decode_in_reads(&mut d, input, chunk);
    assert_eq!(replay.used, input.len());
    replay.events
}

fn count(events: &[StreamEvent]) -> (usize, Vec<Vec<u8>>) {
    let records = events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count();
    let replies = events.iter().filter_map(|e| if let StreamEvent::Reply(b) = e { Some(b.to_vec()) } else { None }).collect();
    (records, replies)
}

fuzz_target!(|t: Traffic| {
    let imei = format!("{:015}", t.imei % 1_000_000_000_000_000);
    let mut tcp = Vec::new();
    encode_imei(&imei, &mut tcp);
    let mut datagrams = Vec::new();
    let (mut records, mut tcp_acks, mut udp_acks) = (1, vec![vec![0x01]], Vec::new());
    let mut damaged = false;
    for p in &t.packets {
        let codec = [0x08, 0x8E, 0x10][usize::from(p.codec) % 3];
        let recs: Vec<AvlRecord> = p.records.iter().map(|r| record(r, codec)).collect();
        let mut data = Vec::new();
        if recs.is_empty() || encode_data(codec, &recs, &mut data).is_err() {
            continue;
        }
        let mut packet = Vec::new();
        encode_packet(&data, &mut packet);
        let mut datagram = Vec::new();
        UdpPacket::encode(p.packet_id, 0x01, p.avl_packet_id, &imei, &data, &mut datagram);
        match p.damage {
            Some((at, mask)) if mask != 0 => {
                let at = usize::from(at) % packet.len();
                packet[at] ^= mask;
                damaged = true;
            }
            _ => {
                records += recs.len();
                tcp_acks.push(tcp_ack(recs.len() as u32).to_vec());
                udp_acks.push(udp_ack(p.packet_id, p.avl_packet_id, recs.len() as u8).to_vec());
                datagrams.push(datagram);
            }
        }
        tcp.extend_from_slice(&packet);
    }
    let whole = run(TeltonikaDecoder::default(), &tcp, tcp.len().max(1));
    assert_eq!(whole, run(TeltonikaDecoder::default(), &tcp, usize::from(t.chunk).max(1)));
    if !damaged {
        assert_eq!(count(&whole), (records, tcp_acks), "{whole:?}");
    }
    // UDP: every undamaged packet as a datagram of its own.
    let mut d = TeltonikaDecoder::new(TeltonikaOptions { transport: Transport::Udp, ..TeltonikaOptions::default() });
    let mut events = Vec::new();
    for g in &datagrams {
        assert_eq!(d.decode(g, true, &mut events), g.len());
    }
    assert_eq!(count(&events), (records - 1, udp_acks), "{events:?}");
});
