//! Teltonika decode throughput against nom-teltonika 0.3.0 on the same bytes in the same
//! run: 10,000 random valid TCP packets (Codec 8 and 8 Extended, 1–4 records, 0–3 IO
//! elements per width), back to back in one buffer.
//!
//! * `*_validate`: frame, CRC and structure checked, records counted from the header (ours
//!   `AvlData::count`, the peer's `records().len()`: its cheapest call for the number).
//! * `*_views`: the same, then every field of every record and every IO value read
//!   (trackgate in one walk through `AvlData::for_each_record`; `trackgate_views_iter` the
//!   same through the `AvlData::records` iterator and `RecordView::for_each_io`, which walks
//!   each record's IO groups twice: once to find where the record ends, once to read them).
//! * `trackgate_owned` / `nom_teltonika_owned`: owned copies of the records
//!   (`AvlPacket::from_data` / `take_frame(..).evaluate()`).
//! * `teltonika_rs_owned`: teltonika-rs 0.1.1's owned parse, Codec 8 only.
//! * `trackgate_records`: the stream decoder producing the normalized records (with acks).
//! * `trackgate_records_per_read`: the same, fed 4 KiB at a time with the events taken after
//!   each read, as the gateway's sessions do (the records stay in cache).
//!
//! cargo bench -p trackgate-benches --bench teltonika

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nom_teltonika::decoder::take_frame;
use nom_teltonika::protocol::{FrameView, IoValueView};
use trackgate_benches::{records_per_read, teltonika_packets, GATEWAY_READ};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::teltonika::{
    AvlData, AvlPacket, IoElement, IoValue, RecordView, TeltonikaDecoder, TeltonikaFramer, HEADER_LEN,
};
use trackgate_codecs::{RecordDecoder, StreamEvent};

/// Folds everything read into one number so nothing is optimised away.
#[derive(Default)]
struct Acc(u64, u64);

impl Acc {
    fn add(&mut self, v: u64) {
        self.0 = self.0.wrapping_add(v);
    }
}

/// Calls `each` with every validated AVL data field in `buf`.
fn ours<'a>(buf: &'a [u8], mut each: impl FnMut(AvlData<'a>)) {
    let mut framer = TeltonikaFramer::default();
    let mut pos = 0;
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        let data = &buf[pos + HEADER_LEN..pos + len - 4];
        if let Ok(avl) = AvlData::parse(data) {
            each(avl);
        }
        pos += consumed;
    }
}

fn trackgate_validate(buf: &[u8]) -> u64 {
    let mut n = 0;
    ours(buf, |avl| n += u64::from(avl.count));
    n
}

/// Every field of a record, read into `acc` (the IO elements are read by `read_io`).
fn read_record(acc: &mut Acc, r: &RecordView<'_>) {
    acc.1 += 1;
    acc.add(r.timestamp_ms);
    acc.add(u64::from(r.priority));
    acc.add(r.gps.latitude().to_bits() ^ r.gps.longitude().to_bits());
    acc.add(r.gps.altitude_m as u64 + u64::from(r.gps.angle_deg) + u64::from(r.gps.satellites));
    acc.add(u64::from(r.gps.speed_kmh) + u64::from(r.event_io_id));
}

fn read_io(acc: &mut Acc, io: IoElement<'_>) {
    acc.add(u64::from(io.id));
    acc.add(match io.value {
        IoValue::U8(v) => v.into(),
        IoValue::U16(v) => v.into(),
        IoValue::U32(v) => v.into(),
        IoValue::U64(v) => v,
        IoValue::Bytes(b) => b.len() as u64,
    });
}

/// Views through the iterator: `records()`, then each record's IO.
fn trackgate_views_iter(buf: &[u8]) -> (u64, u64) {
    let mut acc = Acc::default();
    ours(buf, |avl| {
        for r in avl.records() {
            read_record(&mut acc, &r);
            r.for_each_io(|io| read_io(&mut acc, io));
        }
    });
    (acc.1, acc.0)
}

/// Views in one walk over each record and its IO.
fn trackgate_views(buf: &[u8]) -> (u64, u64) {
    let mut acc = Acc::default();
    ours(buf, |avl| avl.for_each_record(&mut acc, |acc, r| read_record(acc, &r), read_io));
    (acc.1, acc.0)
}

fn trackgate_owned(buf: &[u8]) -> u64 {
    let mut n = 0;
    ours(buf, |avl| {
        let owned = AvlPacket::from_data(&avl);
        n += black_box(owned).len() as u64;
    });
    n
}

/// `out` is cleared and reused, as the gateway reuses a session's: the row measures the
/// records, not a fresh output vector per pass.
fn trackgate_records(buf: &[u8], out: &mut Vec<StreamEvent>) -> u64 {
    let mut d = TeltonikaDecoder::default();
    out.clear();
    d.decode(buf, true, out);
    out.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64
}

fn nom_validate(buf: &[u8]) -> u64 {
    let mut input = buf;
    let mut n = 0;
    while !input.is_empty() {
        match take_frame(&mut input) {
            // The header's count, as `avl.count` is ours: `count()` would walk every record
            // again, which is not the peer's cheapest call for the number.
            Ok(FrameView::Avl(p)) => n += p.records().len() as u64,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    n
}

fn nom_views(buf: &[u8]) -> (u64, u64) {
    let mut acc = Acc::default();
    let mut input = buf;
    while !input.is_empty() {
        let Ok(FrameView::Avl(p)) = take_frame(&mut input) else { break };
        for r in p.records() {
            acc.1 += 1;
            acc.add(u64::from(r.timestamp()));
            acc.add(u64::from(u8::from(r.priority())));
            let g = r.gps();
            acc.add(g.latitude_degrees().to_bits() ^ g.longitude_degrees().to_bits());
            acc.add(u64::from(g.altitude_meters) + u64::from(g.angle_degrees) + u64::from(g.satellites));
            acc.add(u64::from(g.speed_kph) + r.event_io_id().map_or(0, |id| u64::from(u16::from(id))));
            for io in r.io_elements() {
                acc.add(u64::from(u16::from(io.id())));
                acc.add(match io.value() {
                    IoValueView::U8(v) => v.into(),
                    IoValueView::U16(v) => v.into(),
                    IoValueView::U32(v) => v.into(),
                    IoValueView::U64(v) => v,
                    IoValueView::Bytes(b) => b.len() as u64,
                });
            }
        }
    }
    (acc.1, acc.0)
}

fn nom_owned(buf: &[u8]) -> u64 {
    let mut input = buf;
    let mut n = 0;
    while !input.is_empty() {
        let Ok(frame) = take_frame(&mut input) else { break };
        black_box(frame.evaluate());
        n += 1;
    }
    n
}

/// teltonika-rs 0.1.1 (Codec 8 only, owned, nom 7): packets parsed and records read.
fn teltonika_rs_owned(buf: &[u8]) -> u64 {
    let mut input = buf;
    let mut n = 0;
    while let Ok((rest, packet)) = teltonika_rs::parser::parse_teltonika_codec_8(input) {
        n += black_box(packet).avl_data.len() as u64;
        input = rest;
    }
    n
}

fn bench(c: &mut Criterion) {
    for (name, codec) in [("codec8", 0x08u8), ("codec8e", 0x8E)] {
        let (buf, records) = teltonika_packets(codec, 10_000, 7);
        // Both read every record of every packet before anything is timed.
        assert_eq!(trackgate_validate(&buf), records as u64, "{name}");
        assert_eq!(nom_validate(&buf), records as u64, "{name}");
        assert_eq!(trackgate_views(&buf).0, nom_views(&buf).0);
        assert_eq!(trackgate_views(&buf), trackgate_views_iter(&buf), "{name}: the two ways to view differ");
        let mut events = Vec::new();
        assert_eq!(trackgate_records(&buf, &mut events), records as u64);
        let mut g = c.benchmark_group(format!("teltonika_{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("trackgate_validate", |b| b.iter(|| trackgate_validate(black_box(&buf))));
        g.bench_function("nom_teltonika_validate", |b| b.iter(|| nom_validate(black_box(&buf))));
        g.bench_function("trackgate_views", |b| b.iter(|| trackgate_views(black_box(&buf))));
        g.bench_function("trackgate_views_iter", |b| b.iter(|| trackgate_views_iter(black_box(&buf))));
        g.bench_function("nom_teltonika_views", |b| b.iter(|| nom_views(black_box(&buf))));
        g.bench_function("trackgate_owned", |b| b.iter(|| trackgate_owned(black_box(&buf))));
        g.bench_function("nom_teltonika_owned", |b| b.iter(|| nom_owned(black_box(&buf))));
        if codec == 0x08 {
            // It reads Codec 8 only (and no Codec 8 Extended packet gets past its parser).
            assert_eq!(teltonika_rs_owned(&buf), records as u64);
            g.bench_function("teltonika_rs_owned", |b| b.iter(|| teltonika_rs_owned(black_box(&buf))));
        }
        g.bench_function("trackgate_records", |b| b.iter(|| trackgate_records(black_box(&buf), &mut events)));
        let per_read = |buf: &[u8], events: &mut Vec<StreamEvent>| {
            records_per_read(&mut TeltonikaDecoder::default(), buf, GATEWAY_READ, events)
        };
        assert_eq!(per_read(&buf, &mut events), records as u64);
        g.bench_function("trackgate_records_per_read", |b| b.iter(|| per_read(black_box(&buf), &mut events)));
        g.finish();
        eprintln!("{name}: {} bytes, 10000 packets, {records} records", buf.len());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
