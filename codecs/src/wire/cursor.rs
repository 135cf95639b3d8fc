//! A bounds-checked reader over a byte slice for the binary protocols. Every read returns
//! `None` instead of panicking when the slice is too short, so frame bodies can be walked
//! without indexing before a length check.

/// Reads big-endian values from the front of a slice, advancing as it goes.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
    start_len: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes, start_len: bytes.len() }
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// How many bytes have been read since the cursor was made.
    pub fn position(&self) -> usize {
        self.start_len - self.rest.len()
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_stops_at_the_end() {
        let mut c = Cursor::new(&[0x01, 0x02, 0x03, 0x04, 0x05, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.u16(), Some(0x0203));
        assert_eq!(c.position(), 3);
        assert_eq!(c.take(2), Some(&[0x04, 0x05][..]));
        assert_eq!(c.i32(), Some(-2));
        assert_eq!(c.remaining(), 0);
        assert_eq!(c.u8(), None);
        assert_eq!(c.u64(), None);
    }

    #[test]
    fn a_short_read_consumes_nothing() {
        let mut c = Cursor::new(&[1, 2, 3]);
        assert_eq!(c.u32(), None);
        assert_eq!(c.remaining(), 3);
        assert_eq!(c.take(4), None);
        assert_eq!(c.take(3), Some(&[1, 2, 3][..]));
    }
}
