//! JT808 decode throughput against jt808 0.1.1 on the same bytes in the same run: 10,000
//! random valid 0x0200 location frames (2013 header, items 0x01 mileage and 0x31
//! satellites, about 52 bytes a frame) back to back in one buffer.
//!
//! The peer panics on most real frames (it reads BCD times as binary and escapes past the
//! second wrongly: BENCHMARKS.md, JT808), so the side-by-side set keeps to frames it survives: every
//! time field 0–9 and at most two escapes per frame. `any_frames` benches ours alone on
//! unrestricted frames.
//!
//! * `trackgate_views`: flags, un-escaping (borrowed when there is nothing to un-escape,
//!   into one reused buffer otherwise: `Frame::parse_with`), XOR check, header, the
//!   location block's integers and its BCD time as UTC (the peer's `chrono::Local` is UTC on
//!   the bench machine), and every additional item split off (id and value), as the peer's
//!   `JtGpsExtend` splits them into its map.
//! * `jt808_header`: the peer's `Jt808Codec::decode` loop: flags, un-escaping and header
//!   only; it does not verify the check code and does not read the body.
//! * `jt808_location`: the same plus `Jt0x0200::fill_new` for the body: the same integers,
//!   the BCD time as a `chrono` local time, every item split into a `HashMap<u8, Bytes>`.
//! * `trackgate_records`: the stream decoder producing the normalized records and 0x8001s.
//! * `trackgate_records_per_read`: the same, fed 4 KiB at a time with the events taken after
//!   each read, as the gateway's sessions do (the records stay in cache).
//!
//! cargo bench -p trackgate-benches --bench jt808

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use jt808::models::jt0x0200::Jt0x0200;
use jt808::models::{Jt808BodySerialize, Jt808BodyTrans, Ver808};
use tokio_util::codec::Decoder;
use trackgate_benches::{jt808_locations, records_per_read, GATEWAY_READ};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::jt808::frame::inner;
use trackgate_codecs::jt808::message::Location;
use trackgate_codecs::jt808::{Frame, Jt808Decoder, Jt808Framer, Jt808Options, DEFAULT_LIMITS};
use trackgate_codecs::{RecordDecoder, StreamEvent};

/// (sum of what was read, locations, sum of the additional items' sizes). Equal between
/// ours and the peer's except the items: the peer reads each item's id as its length
/// (`JtGpsExtend::fill_new` looks at `get(1)`, the first byte), so it splits them wrongly,
/// though it does the same kind of work (a split and a map insert per item it finds).
#[derive(Default, Debug)]
struct Acc(u64, u64, u64);

impl PartialEq for Acc {
    fn eq(&self, other: &Acc) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}

impl Acc {
    fn add(&mut self, v: u64) {
        self.0 = self.0.wrapping_add(v);
    }
}

fn trackgate_views(buf: &[u8]) -> Acc {
    let mut acc = Acc::default();
    let mut framer = Jt808Framer::new(DEFAULT_LIMITS);
    let mut pos = 0;
    let mut scratch = Vec::new();
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(frame) = Frame::parse_with(inner(&buf[pos..pos + len]), &mut scratch) {
            if let Ok(l) = Location::parse(&frame.body) {
                acc.1 += 1;
                acc.add(u64::from(frame.header.serial) + u64::from(l.latitude_raw) + u64::from(l.longitude_raw));
                acc.add(u64::from(l.status) + u64::from(l.speed_raw) + u64::from(l.course) + u64::from(l.altitude_raw));
                acc.add(l.timestamp(0).map_or(0, |t| (t.unix_ms() / 1000) as u64));
                // What the peer's item map holds: each item's id and value (its length counted).
                for item in l.items() {
                    acc.2 += 2 + item.value.len() as u64;
                }
            }
        }
        pos += consumed;
    }
    acc
}

fn jt808_header(buf: &[u8]) -> Acc {
    let mut acc = Acc::default();
    let mut codec = jt808::codec::Jt808Codec::new();
    let mut b = BytesMut::from(buf);
    while let Ok(Some(j)) = codec.decode(&mut b) {
        acc.1 += 1;
        acc.add(u64::from(j.sn) + u64::from(j.id) + u64::from(j.body_length));
    }
    acc
}

fn jt808_location(buf: &[u8]) -> Acc {
    let mut acc = Acc::default();
    let mut codec = jt808::codec::Jt808Codec::new();
    let mut b = BytesMut::from(buf);
    while let Ok(Some(j)) = codec.decode(&mut b) {
        let l = Jt0x0200::fill_new(&mut jt808::bytes::JtBytes::from(j.get_body()), &j);
        let g = &l.gps;
        acc.1 += 1;
        acc.add(u64::from(j.sn) + u64::from(g.lat) + u64::from(g.lng));
        acc.add(u64::from(g.state) + u64::from(g.speed) + u64::from(g.direction) + u64::from(g.altitude));
        acc.add(g.time.timestamp() as u64);
        acc.2 += l.extend.len(&Ver808::V2013) as u64;
    }
    acc
}

fn trackgate_records(buf: &[u8], events: &mut Vec<StreamEvent>) -> u64 {
    // A fresh decoder per pass, as a new connection would have.
    let mut d = Jt808Decoder::new(Jt808Options::default());
    events.clear();
    d.decode(buf, true, events);
    events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64
}

fn bench(c: &mut Criterion) {
    let safe = jt808_locations(10_000, 13, true);
    // Both read the same fields of every frame before anything is timed (the peer reads
    // the times as binary, which is why the set keeps every time field to 0–9).
    let ours = trackgate_views(&safe);
    assert_eq!(ours.1, 10_000);
    assert_eq!(ours, jt808_location(&safe));
    assert_eq!(jt808_header(&safe).1, 10_000);
    let mut events = Vec::new();
    assert_eq!(trackgate_records(&safe, &mut events), 10_000);
    let mut g = c.benchmark_group("jt808_0200");
    g.throughput(Throughput::Bytes(safe.len() as u64));
    g.bench_function("trackgate_views", |b| b.iter(|| trackgate_views(black_box(&safe))));
    g.bench_function("jt808_header", |b| b.iter(|| jt808_header(black_box(&safe))));
    g.bench_function("jt808_location", |b| b.iter(|| jt808_location(black_box(&safe))));
    g.bench_function("trackgate_records", |b| b.iter(|| trackgate_records(black_box(&safe), &mut events)));
    assert_eq!(records_per_read(&mut Jt808Decoder::default(), &safe, GATEWAY_READ, &mut events), 10_000);
    g.bench_function("trackgate_records_per_read", |b| {
        b.iter(|| records_per_read(&mut Jt808Decoder::default(), black_box(&safe), GATEWAY_READ, &mut events))
    });
    g.finish();
    eprintln!("jt808 peer-safe set: {} bytes, 10000 frames", safe.len());

    let any = jt808_locations(10_000, 17, false);
    assert_eq!(trackgate_views(&any).1, 10_000);
    let mut g = c.benchmark_group("jt808_0200_any_frames");
    g.throughput(Throughput::Bytes(any.len() as u64));
    g.bench_function("trackgate_views", |b| b.iter(|| trackgate_views(black_box(&any))));
    g.bench_function("trackgate_records", |b| b.iter(|| trackgate_records(black_box(&any), &mut events)));
    g.finish();
    eprintln!("jt808 unrestricted set: {} bytes, 10000 frames", any.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
