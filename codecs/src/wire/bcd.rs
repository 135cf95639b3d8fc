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
