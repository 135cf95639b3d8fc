//! CRC-16 on frame-sized and packet-sized inputs: the codecs' `SlicedCrc16` (32-byte steps,
//! then 16, 8, 4 and 1 on the same tables) against the `crc` crate's slice-by-16
//! `checksum`, on the same bytes. 30 bytes is what a GT06 location frame covers; the longer
//! sizes are Teltonika packets.
//!
//! cargo bench -p trackgate-benches --bench crc

use crc::{Crc, Table, CRC_16_IBM_SDLC};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use trackgate_codecs::wire::checksum::CRC16_X25;

const CRATE_X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc16_x25");
    for len in [30usize, 60, 200, 1000] {
        // 1,000 inputs of `len` bytes back to back, each checked on its own as a framer does.
        let data: Vec<u8> = (0..len * 1000).map(|i| (i.wrapping_mul(131) >> 3) as u8).collect();
        let ours = |d: &[u8]| d.chunks(len).fold(0u16, |acc, c| acc ^ CRC16_X25.checksum(c));
        let theirs = |d: &[u8]| d.chunks(len).fold(0u16, |acc, c| acc ^ CRATE_X25.checksum(c));
        assert_eq!(ours(&data), theirs(&data), "{len}");
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("trackgate", len), &data, |b, d| b.iter(|| ours(black_box(d))));
        g.bench_with_input(BenchmarkId::new("crc_crate_slice16", len), &data, |b, d| b.iter(|| theirs(black_box(d))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
