//! GT06 decode throughput against gt06 0.4.0 on the same bytes in the same run: 10,000
//! random valid 0x12 and 0x22 location frames back to back in one buffer (36 and 39 bytes a
//! frame, one record each).
//!
//! * `trackgate_views`: framing with CRC, then the message parsed in place and every field
//!   of the fix and cell read.
//! * `gt06_push`: `Decoder::push` over the buffer in 1460-byte reads (the peer's fastest
//!   stream mode), every location's fields read.
//! * `gt06_parse_packet`: `parse_packet` per frame, the frames cut out beforehand (no
//!   stream work at all, the peer's best case).
//! * `crc_only`: nothing but the CRC-16/X-25 every frame must pass, computed over each
//!   frame's covered bytes (the frames cut out beforehand) and compared with the one it
//!   carries. A floor, not a decoder: any decoder that checks the CRC with this code costs
//!   at least this much, so the peer's time over this row bounds the ratio any of ours
//!   could reach.
//! * `trackgate_records`: the stream decoder producing the normalized records and acks.
//! * `trackgate_records_per_read`: the same, fed 4 KiB at a time with the events taken after
//!   each read, as the gateway's sessions do (the records stay in cache).
//! * `trackgate_records_jsonl`: the same, then each record written as the gateway's JSON
//!   Lines sink writes it (into memory), which is the sink thread's work.
//!
//! cargo bench -p trackgate-benches --bench gt06

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use trackgate_benches::{gt06_locations, records_per_read, GATEWAY_READ};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::gt06::{self as tg, Frame, Gt06Decoder, Gt06Framer, Gt06Options, Message};
use trackgate_codecs::{RecordDecoder, StreamEvent};

/// Folds what was read into numbers nothing can optimise away: (fix sum, locations, cell
/// sum). The cell sum is not compared: the peer leaves the cell out of 0x22 frames.
#[derive(Default, Debug)]
struct Acc(u64, u64, u64);

impl PartialEq for Acc {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}

impl Acc {
    fn add(&mut self, v: u64) {
        self.0 = self.0.wrapping_add(v);
    }
    fn fix(&mut self, lat: f64, lon: f64, time: u64, speed: u64, course: u64) {
        self.1 += 1;
        // Both crates round differently (the peer to 6 places): compare at 1e-5 degrees.
        self.add(((lat * 1e5).round() as i64) as u64 ^ ((lon * 1e5).round() as i64 as u64) << 1);
        self.add(time + speed + course);
    }
}

fn trackgate_views(buf: &[u8]) -> Acc {
    let mut acc = Acc::default();
    let mut framer = Gt06Framer::default();
    let mut pos = 0;
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        let shape = framer.last_shape();
        if let Some(frame) = Frame::split(&buf[pos..pos + len], shape) {
            if let Ok(Message::Location { fix, cell, .. }) = Message::parse(&frame) {
                let time = fix.timestamp(0).map_or(0, |t| (t.unix_ms() / 1000) as u64);
                acc.fix(fix.latitude(), fix.longitude(), time, u64::from(fix.speed_kmh), u64::from(fix.course()));
                if let Some(c) = cell {
                    acc.2 = acc.2.wrapping_add(u64::from(c.mcc) + u64::from(c.lac) + c.cell_id);
                }
            }
        }
        pos += consumed;
    }
    acc
}

fn peer_fix(acc: &mut Acc, l: &gt06::Location) {
    let f = &l.fix;
    acc.fix(f.latitude, f.longitude, f.time as u64, u64::from(f.speed_kmh), u64::from(f.course));
    if let (Some(mcc), Some(lac), Some(cell)) = (f.mcc, f.lac, f.cell_id) {
        acc.2 = acc.2.wrapping_add(u64::from(mcc) + u64::from(lac) + u64::from(cell));
    }
}

fn gt06_push(buf: &[u8]) -> Acc {
    let mut acc = Acc::default();
    let mut d = gt06::Decoder::new();
    for chunk in buf.chunks(1460) {
        for r in d.push(chunk) {
            if let Ok(gt06::Message::Location(l)) = r {
                peer_fix(&mut acc, &l);
            }
        }
    }
    acc
}

fn gt06_parse_packet(frames: &[&[u8]]) -> Acc {
    let mut acc = Acc::default();
    for f in frames {
        if let Ok(gt06::Message::Location(l)) = gt06::parse_packet(f) {
            peer_fix(&mut acc, &l);
        }
    }
    acc
}

/// The floor: each frame's CRC (length byte to serial) against the one it carries.
fn crc_only(frames: &[&[u8]]) -> u64 {
    let mut good = 0;
    for f in frames {
        let covered = &f[2..f.len() - 4];
        let carried = u16::from_be_bytes([f[f.len() - 4], f[f.len() - 3]]);
        good += u64::from(tg::frame_crc(covered) == carried);
    }
    good
}

fn trackgate_records(decoder: &mut Gt06Decoder, buf: &[u8], events: &mut Vec<StreamEvent>) -> u64 {
    events.clear();
    decoder.decode(buf, true, events);
    events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64
}

/// The records as the gateway's JSON Lines sink writes them (to memory, not a file).
fn trackgate_records_jsonl(buf: &[u8], events: &mut Vec<StreamEvent>, out: &mut Vec<u8>) -> usize {
    let mut d = Gt06Decoder::new(Gt06Options::default());
    trackgate_records(&mut d, buf, events);
    out.clear();
    for e in events.iter() {
        if let StreamEvent::Record(r) = e {
            r.write_json(out);
            out.push(b'\n');
        }
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    for protocol in [0x12u8, 0x22] {
        let buf = gt06_locations(protocol, 10_000, 11);
        let frame_len = buf.len() / 10_000;
        let frames: Vec<&[u8]> = buf.chunks(frame_len).collect();
        // Every frame decodes to the same fix in both before anything is timed.
        let ours = trackgate_views(&buf);
        assert_eq!(ours.1, 10_000);
        assert_eq!(ours, gt06_push(&buf), "0x{protocol:02x}");
        assert_eq!(ours, gt06_parse_packet(&frames), "0x{protocol:02x}");
        assert_eq!(crc_only(&frames), 10_000);
        let mut events = Vec::new();
        assert_eq!(trackgate_records(&mut Gt06Decoder::new(Gt06Options::default()), &buf, &mut events), 10_000);
        let mut jsonl = Vec::new();
        trackgate_records_jsonl(&buf, &mut events, &mut jsonl);
        assert_eq!(jsonl.iter().filter(|&&b| b == b'\n').count(), 10_000);

        let mut g = c.benchmark_group(format!("gt06_0x{protocol:02x}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("trackgate_views", |b| b.iter(|| trackgate_views(black_box(&buf))));
        g.bench_function("gt06_push", |b| b.iter(|| gt06_push(black_box(&buf))));
        g.bench_function("gt06_parse_packet", |b| b.iter(|| gt06_parse_packet(black_box(&frames))));
        g.bench_function("crc_only", |b| b.iter(|| crc_only(black_box(&frames))));
        g.bench_function("trackgate_records", |b| {
            b.iter(|| {
                // A fresh decoder per pass, as a new connection would have.
                let mut d = Gt06Decoder::new(Gt06Options::default());
                trackgate_records(&mut d, black_box(&buf), &mut events)
            })
        });
        assert_eq!(records_per_read(&mut Gt06Decoder::default(), &buf, GATEWAY_READ, &mut events), 10_000);
        g.bench_function("trackgate_records_per_read", |b| {
            b.iter(|| records_per_read(&mut Gt06Decoder::default(), black_box(&buf), GATEWAY_READ, &mut events))
        });
        let mut jsonl = Vec::new();
        g.bench_function("trackgate_records_jsonl", |b| {
            b.iter(|| trackgate_records_jsonl(black_box(&buf), &mut events, &mut jsonl))
        });
        g.finish();
        eprintln!("gt06 0x{protocol:02x}: {} bytes, 10000 frames", buf.len());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
