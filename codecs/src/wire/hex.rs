//! Lowercase hex text of bytes, as records carry binary values (records carry variable-length
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

/// `0x00` to `0xff`, built at compile time, so a record's message type costs no formatting.
static BYTE_LABELS: [[u8; 4]; 256] = {
    let mut labels = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        labels[i] = [b'0', b'x', DIGITS[i >> 4], DIGITS[i & 0x0f]];
        i += 1;
    }
    labels
};

static BYTE_LABEL_STRS: [&str; 256] = {
    let mut strs = [""; 256];
    let mut i = 0;
    while i < 256 {
        strs[i] = match std::str::from_utf8(&BYTE_LABELS[i]) {
            Ok(s) => s,
            Err(_) => panic!("hex labels are ASCII"),
        };
        i += 1;
    }
    strs
};

/// `b` as `0x` and two lowercase hex digits (`0x12`).
pub fn byte_label(b: u8) -> &'static str {
    BYTE_LABEL_STRS[usize::from(b)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_byte_label_is_the_formatted_byte() {
        for b in 0..=255u8 {
            assert_eq!(super::byte_label(b), format!("0x{b:02x}"));
        }
    }

    #[test]
    fn lowercase_two_digits_a_byte() {
        assert_eq!(super::to_hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::to_hex(&[]), "");
    }
}
