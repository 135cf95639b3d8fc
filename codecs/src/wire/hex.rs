//! Lowercase hex text of bytes, as records carry binary values (contract §1: variable-length
//! IO values are "lowercase hex string").

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lowercase hex, two digits a byte.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowercase_two_digits_a_byte() {
        assert_eq!(super::to_hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::to_hex(&[]), "");
    }
}
