//! The short scans of a frame (tens of bytes), where `memchr`'s set-up and dispatch cost
//! more than the search: sixteen bytes a step in an SSE2 register on x86-64 (part of its
//! baseline, so no run-time check), and eight at a time in a `u64` ("SIMD within a
//! register") elsewhere and for the leftovers. On x86-64 the SSE2 steps took the JT808
//! views from 351 to 277 µs per 10,000 frames against the `u64` words (BENCHMARKS.md).

const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of every byte of `word` that equals `byte`, and no other bit. (The exact
/// form of the zero-byte test: the shorter `(x - 0x01…) & !x` can also mark the byte after
/// a match.)
#[inline(always)]
pub fn byte_mask(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Index of the first `needle` in `hay`. Sixteen bytes a step over the first 64 bytes,
/// where a frame's delimiter or escape usually is; `memchr` beyond, where its wide loop
/// pays off.
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const SHORT: usize = 64;
    let head = &hay[..hay.len().min(SHORT)];
    let (chunks, rest) = head.as_chunks::<16>();
    for (i, chunk) in chunks.iter().enumerate() {
        let m = eq_mask16(chunk, needle);
        if m != 0 {
            return Some(i * 16 + m.trailing_zeros() as usize);
        }
    }
    let done = chunks.len() * 16;
    if !rest.is_empty() {
        if let Some(last) = head.last_chunk::<16>() {
            // The last 16 bytes again, overlapping what was searched: one step instead of
            // a word and a byte loop. Only the bits of the bytes not yet searched count.
            let m = eq_mask16(last, needle) >> (16 - rest.len());
            if m != 0 {
                return Some(done + m.trailing_zeros() as usize);
            }
        } else if let Some(j) = find_in_words(rest, needle) {
            return Some(done + j);
        }
    }
    memchr::memchr(needle, &hay[head.len()..]).map(|j| head.len() + j)
}

/// `find_byte` for fewer than 16 bytes: a word, then bytes.
#[inline(always)]
fn find_in_words(bytes: &[u8], needle: u8) -> Option<usize> {
    let (words, tail) = bytes.as_chunks::<8>();
    if let Some(word) = words.first() {
        let m = byte_mask(u64::from_le_bytes(*word), needle);
        if m != 0 {
            return Some((m.trailing_zeros() / 8) as usize);
        }
    }
    let done = words.len() * 8;
    tail.iter().position(|&b| b == needle).map(|j| done + j)
}

/// The XOR of every byte of `bytes`, and whether any of them is `byte`, in one pass.
#[inline]
pub fn xor_and_find(bytes: &[u8], byte: u8) -> (u8, bool) {
    wide::xor_and_find(bytes, byte)
}

/// The low byte of the XOR of `x`'s eight bytes.
#[inline(always)]
fn fold_xor(mut x: u64) -> u8 {
    x ^= x >> 32;
    x ^= x >> 16;
    x ^= x >> 8;
    x as u8
}

// SSE2 is part of x86-64 itself, so these need no run-time check. `safe_arch` wraps the
// intrinsics in safe functions, as this crate forbids `unsafe`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod wide {
    use safe_arch::{
        bitand_m128i, bitor_m128i, bitxor_m128i, cmp_eq_mask_i8_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };

    /// Bit `i` set when `chunk[i] == byte`.
    #[inline(always)]
    pub fn eq_mask16(chunk: &[u8; 16], byte: u8) -> u32 {
        let eq = cmp_eq_mask_i8_m128i(m128i::from(*chunk), set_splat_i8_m128i(byte as i8));
        move_mask_i8_m128i(eq) as u32
    }

    /// As [`super::xor_and_find`]: sixteen bytes a step, and the last step, when `bytes`
    /// is not a whole number of steps, on the last 16 bytes with the lanes already counted
    /// masked off (instead of a word and a byte loop).
    #[inline(always)]
    pub fn xor_and_find(bytes: &[u8], byte: u8) -> (u8, bool) {
        /// `TAIL_MASK[r..r + 16]` keeps the last `r` lanes of 16.
        static TAIL_MASK: [u8; 32] = {
            let mut m = [0u8; 32];
            let mut i = 16;
            while i < 32 {
                m[i] = 0xFF;
                i += 1;
            }
            m
        };
        let (chunks, rest) = bytes.as_chunks::<16>();
        if chunks.is_empty() {
            return super::words::xor_and_find(bytes, byte);
        }
        let needle = set_splat_i8_m128i(byte as i8);
        let (mut x, mut found) = (m128i::default(), m128i::default());
        for chunk in chunks {
            let v = m128i::from(*chunk);
            x = bitxor_m128i(x, v);
            found = bitor_m128i(found, cmp_eq_mask_i8_m128i(v, needle));
        }
        if let (false, Some(last)) = (rest.is_empty(), bytes.last_chunk::<16>()) {
            let keep = m128i::from(*TAIL_MASK[rest.len()..].first_chunk::<16>().expect("16 of 32"));
            let v = m128i::from(*last);
            x = bitxor_m128i(x, bitand_m128i(v, keep));
            found = bitor_m128i(found, bitand_m128i(cmp_eq_mask_i8_m128i(v, needle), keep));
        }
        let x: [u64; 2] = x.into();
        (super::fold_xor(x[0] ^ x[1]), move_mask_i8_m128i(found) != 0)
    }
}

// Elsewhere, two words a step. Compiled everywhere, so the tests hold it to the same
// answers on x86-64 too.
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
mod words {
    use super::byte_mask;

    #[inline(always)]
    pub fn eq_mask16(chunk: &[u8; 16], byte: u8) -> u32 {
        let (a, b) = chunk.split_at(8);
        let ma = byte_mask(u64::from_le_bytes(a.try_into().expect("8 bytes")), byte);
        let mb = byte_mask(u64::from_le_bytes(b.try_into().expect("8 bytes")), byte);
        // One bit per byte: the high bits of each word's bytes, gathered.
        let gather = |m: u64| ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
        gather(ma) | gather(mb) << 8
    }

    #[inline(always)]
    pub fn xor_and_find(bytes: &[u8], byte: u8) -> (u8, bool) {
        let (words, tail) = bytes.as_chunks::<8>();
        let (mut x, mut found) = (0u64, 0u64);
        for word in words {
            let w = u64::from_le_bytes(*word);
            x ^= w;
            found |= byte_mask(w, byte);
        }
        let (mut x, mut found) = (super::fold_xor(x), found != 0);
        for &b in tail {
            x ^= b;
            found |= b == byte;
        }
        (x, found)
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
use wide::eq_mask16;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
use words as wide;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
use words::eq_mask16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against the byte-at-a-time answers, on lengths across the 64-byte switch and
        /// bytes drawn near the needle (0x7D, 0x7E, 0x7F and the rest) to catch borrows.
        #[test]
        fn swar_scans_agree_with_byte_loops(
            bytes in proptest::collection::vec(prop_oneof![Just(0x7Du8), Just(0x7E), Just(0xFD), Just(0x00), any::<u8>()], 0..200),
            needle in prop_oneof![Just(0x7Du8), Just(0x7E), Just(b','), Just(0), any::<u8>()],
        ) {
            prop_assert_eq!(find_byte(&bytes, needle), bytes.iter().position(|&b| b == needle));
            let xor = bytes.iter().fold(0u8, |a, b| a ^ b);
            prop_assert_eq!(xor_and_find(&bytes, needle), (xor, bytes.contains(&needle)));
            // Both 16-byte steps (SSE2 and words) against the bytes, whichever is in use.
            let (chunks, _) = bytes.as_chunks::<16>();
            for (i, chunk) in chunks.iter().enumerate() {
                let want = chunk.iter().enumerate().fold(0u32, |m, (k, &b)| m | u32::from(b == needle) << k);
                prop_assert_eq!(eq_mask16(chunk, needle), want, "chunk {}", i);
                prop_assert_eq!(words::eq_mask16(chunk, needle), want, "chunk {}", i);
            }
            prop_assert_eq!(words::xor_and_find(&bytes, needle), (xor, bytes.contains(&needle)));
            for (i, word) in bytes.as_chunks::<8>().0.iter().enumerate() {
                let m = byte_mask(u64::from_le_bytes(*word), needle);
                for (k, &b) in word.iter().enumerate() {
                    prop_assert_eq!(m >> (k * 8) & 0xFF, if b == needle { 0x80 } else { 0 }, "word {} byte {}", i, k);
                }
            }
        }
    }

    #[test]
    fn every_byte_value_in_every_lane() {
        for needle in 0..=255u8 {
            for other in [0u8, 0x7F, 0x80, 0xFF, needle ^ 1, needle.wrapping_add(1), needle.wrapping_sub(1)] {
                for lane in 0..8 {
                    let mut word = [other; 8];
                    word[lane] = needle;
                    let m = byte_mask(u64::from_le_bytes(word), needle);
                    let want = if other == needle { 0x8080_8080_8080_8080 } else { 0x80u64 << (lane * 8) };
                    assert_eq!(m, want, "needle {needle:02X} other {other:02X} lane {lane}");
                }
            }
        }
    }
}
