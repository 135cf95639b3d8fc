//! JT808 records against reading the same fields through the views, on the jt808 bench's
//! 10,000 peer-safe 0x0200 frames. In a binary of its own: beside the jt808 bench's
//! `trackgate_views`, a second caller of the same view functions changed what the
//! compiler inlined there and made that row a third slower.
//!
//! * `trackgate_fields`: the views reading everything the record carries, as the record
//!   reads it: position, speed and altitude as degrees, km/h and metres, the time as UTC,
//!   the alarm and status words bit by bit, the mileage and satellite items as numbers.
//! * `trackgate_records_per_read`: the stream decoder producing the records and 0x8001s,
//!   fed 4 KiB at a time with the events taken after each read (as in the jt808 bench).
//!
//! cargo bench -p trackgate-benches --bench jt808_fields

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use trackgate_benches::{jt808_locations, records_per_read, GATEWAY_READ};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::jt808::frame::inner;
use trackgate_codecs::jt808::message::Location;
use trackgate_codecs::jt808::{Frame, Jt808Decoder, Jt808Framer, DEFAULT_LIMITS};

/// Each set bit of a word, as the record reads the alarm and status words.
fn set_bits(word: u32) -> u64 {
    let (mut word, mut sum) = (word, 0u64);
    while word != 0 {
        sum += 1 + u64::from(word.trailing_zeros());
        word &= word - 1;
    }
    sum
}

/// (sum of what was read, locations read).
fn trackgate_fields(buf: &[u8]) -> (u64, u64) {
    let (mut framer, mut pos, mut scratch) = (Jt808Framer::new(DEFAULT_LIMITS), 0, Vec::new());
    let (mut sum, mut locations) = (0u64, 0);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(frame) = Frame::parse_with(inner(&buf[pos..pos + len]), &mut scratch) {
            if let Ok(l) = Location::parse(&frame.body) {
                let place = l.latitude().to_bits() ^ l.longitude().to_bits();
                let motion = l.speed_kmh().to_bits() ^ u64::from(l.course) ^ l.altitude_m() as u64;
                let time = l.timestamp(0).map_or(0, |t| t.unix_ms() as u64);
                let words = set_bits(l.alarm) ^ set_bits(l.status) << 8;
                let items = l.items().fold(0u64, |n, item| match (item.id, item.value) {
                    (0x01, &[a, b, c, d]) => n + u64::from(u32::from_be_bytes([a, b, c, d])),
                    (0x31, &[satellites]) => n + u64::from(satellites),
                    (_, value) => n + value.len() as u64,
                });
                let header = u64::from(frame.header.serial) ^ u64::from(frame.header.message_id);
                sum = sum.wrapping_add(place ^ motion ^ time ^ words ^ items ^ header);
                locations += 1;
            }
        }
        pos += consumed;
    }
    (sum, locations)
}

fn bench(c: &mut Criterion) {
    let safe = jt808_locations(10_000, 13, true);
    assert_eq!(trackgate_fields(&safe).1, 10_000);
    let mut events = Vec::new();
    assert_eq!(records_per_read(&mut Jt808Decoder::default(), &safe, GATEWAY_READ, &mut events), 10_000);
    let mut g = c.benchmark_group("jt808_0200_fields");
    g.throughput(Throughput::Bytes(safe.len() as u64));
    g.bench_function("trackgate_fields", |b| b.iter(|| trackgate_fields(black_box(&safe))));
    g.bench_function("trackgate_records_per_read", |b| {
        b.iter(|| records_per_read(&mut Jt808Decoder::default(), black_box(&safe), GATEWAY_READ, &mut events))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
