//! NMEA decode throughput on 10,000 random valid RMC (and GGA) sentences back to back, with
//! the peer crates on the same bytes in the same run. Every contender reads the same position
//! fields of every sentence (RMC: time, date, lat, lon, speed, course; GGA: time, lat, lon,
//! altitude, HDOP, satellites), so none is credited for laziness.
//!
//! * `trackgate_typed`: line framer + `nmea::parse` into typed sentences (checksum verified),
//!   each number then converted from the `Decimal` it is kept as to the `f64` the peers give.
//! * `trackgate_records`: the stream decoder, producing the normalized records.
//! * `trackgate_records_per_read`: the same, fed 4 KiB at a time with the events taken after
//!   each read, as the gateway's sessions do (the records stay in cache).
//! * `nmea_0.8`: `nmea::parse_bytes` per line (eager, typed).
//! * `nmeasis_26.4`: `NmeaParser<256>` streaming, typed getters.
//!
//! cargo bench -p trackgate-benches --bench nmea

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use trackgate_benches::{nmea_gga, nmea_rmc, records_per_read, GATEWAY_READ};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::nmea::{self as tg, Message, NmeaDecoder, NmeaFramer, Sentence};
use trackgate_codecs::{RecordDecoder, StreamEvent};

/// Sums the fields read so the optimiser cannot drop any of the work.
#[derive(Default)]
struct Acc(f64, u64);

impl Acc {
    fn f(&mut self, v: Option<f64>) {
        self.0 += v.unwrap_or(0.0);
        self.1 += 1;
    }
}

fn trackgate_typed(buf: &[u8]) -> (u64, f64) {
    let mut framer = NmeaFramer::default();
    let mut acc = Acc::default();
    let mut pos = 0;
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(p) = tg::parse(&buf[pos..pos + len]) {
            if let Sentence::Standard { message, .. } = p.sentence {
                match message {
                    Message::Rmc(m) => {
                        acc.f(m.time.map(|t| t.ms_of_day() as f64));
                        acc.f(m.date.map(|d| f64::from(d.day)));
                        acc.f(m.latitude.map(|c| c.degrees()));
                        acc.f(m.longitude.map(|c| c.degrees()));
                        acc.f(m.speed_knots.map(f64::from));
                        acc.f(m.course_deg.map(f64::from));
                    }
                    Message::Gga(m) => {
                        acc.f(m.time.map(|t| t.ms_of_day() as f64));
                        acc.f(m.latitude.map(|c| c.degrees()));
                        acc.f(m.longitude.map(|c| c.degrees()));
                        acc.f(m.altitude_m.map(f64::from));
                        acc.f(m.hdop.map(f64::from));
                        acc.f(m.satellites.map(f64::from));
                    }
                    _ => {}
                }
            }
        }
        pos += consumed;
    }
    (acc.1, acc.0)
}

/// `out` is cleared and reused, as the gateway reuses a session's: the rows measure the
/// records, not a fresh output vector per pass.
fn trackgate_records(buf: &[u8], out: &mut Vec<StreamEvent>) -> (u64, f64) {
    let mut d = NmeaDecoder::default();
    out.clear();
    d.decode(buf, true, out);
    let mut acc = Acc::default();
    for e in out.iter() {
        if let StreamEvent::Record(r) = e {
            acc.f(r.latitude);
            acc.f(r.longitude);
        }
    }
    (acc.1, acc.0)
}

fn peer_nmea(buf: &[u8]) -> (u64, f64) {
    let mut acc = Acc::default();
    for line in buf.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match nmea::parse_bytes(line) {
            Ok(nmea::ParseResult::RMC(m)) => {
                acc.f(m.fix_time.map(|t| f64::from(chrono::Timelike::second(&t))));
                acc.f(m.fix_date.map(|d| f64::from(chrono::Datelike::day(&d))));
                acc.f(m.lat);
                acc.f(m.lon);
                acc.f(m.speed_over_ground.map(f64::from));
                acc.f(m.true_course.map(f64::from));
            }
            Ok(nmea::ParseResult::GGA(m)) => {
                acc.f(m.fix_time.map(|t| f64::from(chrono::Timelike::second(&t))));
                acc.f(m.latitude);
                acc.f(m.longitude);
                acc.f(m.altitude.map(f64::from));
                acc.f(m.hdop.map(f64::from));
                acc.f(m.fix_satellites.map(f64::from));
            }
            _ => {}
        }
    }
    (acc.1, acc.0)
}

fn peer_nmeasis(buf: &[u8]) -> (u64, f64) {
    use nmeasis::message::Message as M;
    let mut acc = Acc::default();
    let mut p = nmeasis::parser::NmeaParser::<256>::default();
    let mut rest = buf;
    while !rest.is_empty() {
        let space = p.buffer();
        let n = space.len().min(rest.len());
        space[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        p.commit(n, |r| {
            let Ok(s) = r else { return };
            match s.message {
                M::Rmc(m) => {
                    acc.f(m.time().map(|t| f64::from(t.seconds)));
                    acc.f(m.date().map(|d| f64::from(d.day)));
                    let c = m.coordinates();
                    acc.f(c.map(|c| f64::from(c.latitude)));
                    acc.f(c.map(|c| f64::from(c.longitude)));
                    acc.f(m.speed().map(f64::from));
                    acc.f(m.track_made().map(f64::from));
                }
                M::Gga(m) => {
                    acc.f(m.time().map(|t| f64::from(t.seconds)));
                    let c = m.coordinates();
                    acc.f(c.map(|c| f64::from(c.latitude)));
                    acc.f(c.map(|c| f64::from(c.longitude)));
                    acc.f(m.altitude().map(f64::from));
                    acc.f(m.hdop().map(f64::from));
                    acc.f(m.satellites().map(f64::from));
                }
                _ => {}
            }
        });
    }
    (acc.1, acc.0)
}

fn bench(c: &mut Criterion) {
    for (name, buf) in [("rmc", nmea_rmc(10_000, 1)), ("gga", nmea_gga(10_000, 2))] {
        // Every contender must have read every field of every sentence, and agree on them.
        let reference = trackgate_typed(&buf);
        assert_eq!(reference.0, 60_000, "{name}");
        for (peer, got) in [("nmea", peer_nmea(&buf)), ("nmeasis", peer_nmeasis(&buf))] {
            assert_eq!(got.0, reference.0, "{peer} on {name}");
        }
        let mut events = Vec::new();
        assert_eq!(trackgate_records(&buf, &mut events).0, 20_000);
        let mut g = c.benchmark_group(format!("nmea_{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("trackgate_typed", |b| b.iter(|| trackgate_typed(black_box(&buf))));
        g.bench_function("trackgate_records", |b| b.iter(|| trackgate_records(black_box(&buf), &mut events)));
        let per_read = |buf: &[u8], events: &mut Vec<StreamEvent>| {
            records_per_read(&mut NmeaDecoder::default(), buf, GATEWAY_READ, events)
        };
        assert_eq!(per_read(&buf, &mut events), 10_000);
        g.bench_function("trackgate_records_per_read", |b| b.iter(|| per_read(black_box(&buf), &mut events)));
        g.bench_function("nmea_0.8", |b| b.iter(|| peer_nmea(black_box(&buf))));
        g.bench_function("nmeasis_26.4", |b| b.iter(|| peer_nmeasis(black_box(&buf))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
