//! CRC-16 per input, the codecs' `SlicedCrc16` against `crc-fast`'s generic CRC-16 (run-time
//! PCLMULQDQ dispatch), on 1,000 pseudo-random inputs of each size, both checked equal on
//! every input first. Best of five passes of 2,000 rounds each, nanoseconds per input.
//!
//! taskset -c 1 cargo run --release --manifest-path benches/crc-fast/Cargo.toml

use std::hint::black_box;
use std::time::Instant;

use crc_fast::{checksum, CrcAlgorithm};
use trackgate_codecs::wire::checksum::{CRC16_ARC, CRC16_X25};

fn main() {
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as u8
    };
    println!(
        "{:>6}  {:>10}  {:>12}  {:>10}  {:>12}",
        "bytes", "X-25 ours", "X-25 crc-fast", "ARC ours", "ARC crc-fast"
    );
    for size in [12usize, 30, 60, 100, 200, 400, 1000] {
        let inputs: Vec<Vec<u8>> = (0..1000).map(|_| (0..size).map(|_| next()).collect()).collect();
        for input in &inputs {
            assert_eq!(u64::from(CRC16_X25.checksum(input)), checksum(CrcAlgorithm::Crc16IbmSdlc, input));
            assert_eq!(u64::from(CRC16_ARC.checksum(input)), checksum(CrcAlgorithm::Crc16Arc, input));
        }
        // Each static named where it is used, as the framers use them: through a reference
        // the compiler does not see its tables, and ours ran a third slower.
        let row = [
            time(&inputs, |i| u64::from(CRC16_X25.checksum(i))),
            time(&inputs, |i| checksum(CrcAlgorithm::Crc16IbmSdlc, i)),
            time(&inputs, |i| u64::from(CRC16_ARC.checksum(i))),
            time(&inputs, |i| checksum(CrcAlgorithm::Crc16Arc, i)),
        ];
        println!("{size:>6}  {:>10.1}  {:>12.1}  {:>10.1}  {:>12.1}", row[0], row[1], row[2], row[3]);
    }
}

/// Nanoseconds per input, best of five passes.
fn time(inputs: &[Vec<u8>], crc: impl Fn(&[u8]) -> u64) -> f64 {
    const ROUNDS: usize = 2000;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut acc = 0u64;
        for _ in 0..ROUNDS {
            for input in inputs {
                acc ^= crc(black_box(input));
            }
        }
        black_box(acc);
        best = best.min(start.elapsed().as_secs_f64());
    }
    best / (ROUNDS * inputs.len()) as f64 * 1e9
}
