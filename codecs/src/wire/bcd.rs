//! Packed binary-coded decimal, two digits a byte, high nibble first (JT808 terminal numbers
//! and times, GT06 IMEIs).

/// Appends the digits of `bytes` to `out`. Returns `None` (and leaves `out` partly written)
/// if a nibble is not a decimal digit.
pub fn decode_digits(bytes: &[u8], out: &mut String) -> Option<()> {
    for &b in bytes {
        let (hi, lo) = (b >> 4, b & 0x0f);
        if hi > 9 || lo > 9 {
            return None;
        }
        out.push(char::from(b'0' + hi));
        out.push(char::from(b'0' + lo));
    }
    Some(())
}

/// The digits of BCD bytes with any padding nibbles (`F`) left out: IMSIs and ICCIDs, whose
/// odd digit counts are padded.
pub fn digits_unpadded(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for nibble in bytes.iter().flat_map(|&b| [b >> 4, b & 0x0f]) {
        if nibble <= 9 {
            out.push(char::from(b'0' + nibble));
        }
    }
    out
}

/// The values of `N` BCD bytes (a `YYMMDDhhmmss` time), or `None` if a nibble is not a digit.
#[inline]
pub fn values<const N: usize>(bytes: [u8; N]) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    if N <= 8 {
        // Every byte at once in a u64 (times are 6 bytes; a byte at a time was a third of
        // a JT808 fix's time). Adding 6 to a nibble carries into the next one exactly when
        // the nibble is above 9; `hi * 10 + lo` stays below 100 in each byte.
        const NIBBLES: u64 = 0x0F0F_0F0F_0F0F_0F0F;
        let mut word = [0u8; 8];
        word[..N].copy_from_slice(&bytes);
        let x = u64::from_le_bytes(word);
        let (lo, hi) = (x & NIBBLES, (x >> 4) & NIBBLES);
        if ((lo + 0x0606_0606_0606_0606) | (hi + 0x0606_0606_0606_0606)) & !NIBBLES != 0 {
            return None;
        }
        out.copy_from_slice(&(hi * 10 + lo).to_le_bytes()[..N]);
        return Some(out);
    }
    for (v, b) in out.iter_mut().zip(bytes) {
        *v = byte_value(b)?;
    }
    Some(out)
}

/// The value of one BCD byte (0–99), or `None` if a nibble is not a digit.
#[inline]
pub fn byte_value(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0f);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

/// Packs ASCII digits into `out.len()` bytes, right-aligned and left-padded with zeros.
/// Returns `None` if `digits` has a non-digit or does not fit.
pub fn encode_digits(digits: &str, out: &mut [u8]) -> Option<()> {
    let d = digits.as_bytes();
    if d.len() > out.len() * 2 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    out.fill(0);
    // Walk from the least significant digit so short numbers come out zero-padded.
    for (i, &c) in d.iter().rev().enumerate() {
        let byte = out.len() - 1 - i / 2;
        let v = c - b'0';
        out[byte] |= if i % 2 == 0 { v } else { v << 4 };
    }
    Some(())
}

/// Packs a value 0–99 into one BCD byte.
pub fn byte_from_value(v: u8) -> Option<u8> {
    (v <= 99).then_some(((v / 10) << 4) | (v % 10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The word-at-a-time `values` against `byte_value` byte by byte: every byte value in
    /// every position of a 6-byte time, and random arrays of the other widths.
    #[test]
    fn values_agree_with_byte_value_in_every_position() {
        let bytewise = |bytes: &[u8]| bytes.iter().map(|&b| byte_value(b)).collect::<Option<Vec<u8>>>();
        for position in 0..6 {
            for b in 0..=255u8 {
                for other in [0x00, 0x99, 0x59, 0x0A] {
                    let mut t = [other; 6];
                    t[position] = b;
                    assert_eq!(values(t).map(|v| v.to_vec()), bytewise(&t), "{t:02X?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn values_of_any_width_agree_with_byte_value(a in any::<[u8; 3]>(), b in any::<[u8; 8]>(), c in any::<[u8; 10]>()) {
            let bytewise = |bytes: &[u8]| bytes.iter().map(|&b| byte_value(b)).collect::<Option<Vec<u8>>>();
            prop_assert_eq!(values(a).map(|v| v.to_vec()), bytewise(&a));
            prop_assert_eq!(values(b).map(|v| v.to_vec()), bytewise(&b));
            prop_assert_eq!(values(c).map(|v| v.to_vec()), bytewise(&c));
        }
    }

    #[test]
    fn decodes_and_rejects() {
        let mut s = String::new();
        assert_eq!(decode_digits(&[0x01, 0x23, 0x45], &mut s), Some(()));
        assert_eq!(s, "012345");
        assert_eq!(decode_digits(&[0x1a], &mut String::new()), None);
        assert_eq!(byte_value(0x59), Some(59));
        assert_eq!(byte_value(0xf0), None);
    }

    #[test]
    fn encodes_with_left_padding() {
        let mut b = [0u8; 3];
        assert_eq!(encode_digits("12345", &mut b), Some(()));
        assert_eq!(b, [0x01, 0x23, 0x45]);
        assert_eq!(encode_digits("1234567", &mut b), None);
        assert_eq!(encode_digits("12a", &mut b), None);
        assert_eq!(byte_from_value(99), Some(0x99));
        assert_eq!(byte_from_value(100), None);
    }

    proptest! {
        #[test]
        fn round_trip(digits in "[0-9]{0,12}") {
            let mut b = [0u8; 6];
            encode_digits(&digits, &mut b).unwrap();
            let mut s = String::new();
            decode_digits(&b, &mut s).unwrap();
            prop_assert_eq!(s.trim_start_matches('0'), digits.trim_start_matches('0'));
        }
    }
}
