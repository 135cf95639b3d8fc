//! NMEA decode throughput on random valid RMC and GGA streams: the framer plus sentence
//! parser alone (typed sentences, no allocation per sentence), and the full stream decoder
//! that produces records. Reported as bytes/s; sentences/s = records/s here.
//!
//! cargo bench -p trackgate-benches --bench nmea

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use trackgate_benches::{nmea_gga, nmea_rmc};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::nmea::{self, LineFramer, NmeaDecoder};
use trackgate_codecs::{RecordDecoder, StreamEvent};

fn parse_all(buf: &[u8]) -> usize {
    let mut framer = LineFramer::default();
    let mut pos = 0;
    let mut sentences = 0;
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if len > 0 {
            if let Ok(s) = nmea::parse(&buf[pos..pos + len]) {
                black_box(&s);
                sentences += 1;
            }
        }
        pos += consumed;
    }
    sentences
}

fn records_all(buf: &[u8]) -> usize {
    let mut d = NmeaDecoder::default();
    let mut out = Vec::with_capacity(16_384);
    d.decode(buf, true, &mut out);
    out.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count()
}

fn bench(c: &mut Criterion) {
    for (name, buf) in [("rmc", nmea_rmc(10_000, 1)), ("gga", nmea_gga(10_000, 2))] {
        assert_eq!(parse_all(&buf), 10_000);
        assert_eq!(records_all(&buf), 10_000);
        let mut g = c.benchmark_group(format!("nmea_{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        g.bench_function("trackgate_parse_typed", |b| b.iter(|| parse_all(black_box(&buf))));
        g.bench_function("trackgate_records", |b| b.iter(|| records_all(black_box(&buf))));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
