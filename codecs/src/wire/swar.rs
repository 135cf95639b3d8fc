//! Eight bytes at a time in a `u64` ("SIMD within a register"): for the short scans of a
//! frame (tens of bytes), where `memchr`'s set-up and dispatch cost more than the search.

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

/// Index of the first `needle` in `hay`. Words first over the first 64 bytes, where a
/// frame's delimiter or escape usually is; `memchr` beyond, where its wide loop pays off.
#[inline]
pub fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const SHORT: usize = 64;
    let head = &hay[..hay.len().min(SHORT)];
    // Two words a step: one branch per 16 bytes (a frame's search is mostly that branch).
    let (pairs, rest) = head.as_chunks::<16>();
    for (i, pair) in pairs.iter().enumerate() {
        let (a, b) = pair.split_at(8);
        let ma = byte_mask(u64::from_le_bytes(a.try_into().expect("8 bytes")), needle);
        let mb = byte_mask(u64::from_le_bytes(b.try_into().expect("8 bytes")), needle);
        if ma | mb != 0 {
            let at = if ma != 0 { ma.trailing_zeros() } else { 64 + mb.trailing_zeros() };
            return Some(i * 16 + (at / 8) as usize);
        }
    }
    let done = pairs.len() * 16;
    let (words, tail) = rest.as_chunks::<8>();
    if let Some(word) = words.first() {
        let m = byte_mask(u64::from_le_bytes(*word), needle);
        if m != 0 {
            return Some(done + (m.trailing_zeros() / 8) as usize);
        }
    }
    let done = done + words.len() * 8;
    if let Some(j) = tail.iter().position(|&b| b == needle) {
        return Some(done + j);
    }
    memchr::memchr(needle, &hay[head.len()..]).map(|j| head.len() + j)
}

/// The XOR of every byte of `bytes`, and whether any of them is `byte`, in one pass.
#[inline]
pub fn xor_and_find(bytes: &[u8], byte: u8) -> (u8, bool) {
    let (words, tail) = bytes.as_chunks::<8>();
    let (mut x, mut found) = (0u64, 0u64);
    for word in words {
        let w = u64::from_le_bytes(*word);
        x ^= w;
        found |= byte_mask(w, byte);
    }
    x ^= x >> 32;
    x ^= x >> 16;
    x ^= x >> 8;
    let (mut x, mut found) = (x as u8, found != 0);
    for &b in tail {
        x ^= b;
        found |= b == byte;
    }
    (x, found)
}

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
