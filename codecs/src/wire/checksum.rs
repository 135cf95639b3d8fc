//! The integrity checks the four protocols use, built on the `crc` crate's catalogue so the
//! parameters are the published ones rather than hand-copied polynomials.

use crc::{Algorithm, Crc, CRC_16_ARC, CRC_16_IBM_SDLC};

/// CRC-16/X-25 (a.k.a. CRC-ITU, CRC-16/IBM-SDLC): GT06 frames, over length…serial.
/// Check value 0x906E.
pub static CRC16_X25: SlicedCrc16 = SlicedCrc16::new(&CRC_16_IBM_SDLC);

/// CRC-16/ARC (a.k.a. CRC-16/IBM): Teltonika AVL packets, over codec id…N2.
/// Check value 0xBB3D.
pub static CRC16_ARC: SlicedCrc16 = SlicedCrc16::new(&CRC_16_ARC);

/// A reflected 16-bit CRC, sliced by 32: `tables[k][b]` is the CRC of byte `b` followed by
/// `k` zero bytes, so 32 input bytes fold into the register with 32 independent lookups
/// and only the first two wait for the register. Long inputs take 32-byte steps, the rest
/// 16, 8, 4 and then 1 byte at a time on the same tables. At 16 bytes a step (the `crc`
/// crate's loop) each step waited on the register's own two lookups; at 32 there are half
/// as many waits and the loads (each byte and its table entry) set the pace: the CRC over
/// the Teltonika bench's packets took 72% of the time it took (64 bytes a step ran twice as
/// slow: 32 KiB of tables no longer stay in the first-level cache). A property test holds
/// both CRCs to the crate's for any input.
pub struct SlicedCrc16 {
    algorithm: &'static Algorithm<u16>,
    tables: [[u16; 256]; SLICES],
}

/// Bytes folded into the register per step, and so tables (16 KiB for one CRC).
const SLICES: usize = 32;

impl std::fmt::Debug for SlicedCrc16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlicedCrc16").field("algorithm", self.algorithm).finish()
    }
}

impl SlicedCrc16 {
    /// Only reflected CRCs (the two the protocols use): the steps assume it.
    pub const fn new(algorithm: &'static Algorithm<u16>) -> Self {
        assert!(algorithm.refin && algorithm.refout, "only reflected CRCs are sliced here");
        let poly = algorithm.poly.reverse_bits();
        let mut tables = [[0u16; 256]; SLICES];
        let mut byte = 0;
        while byte < 256 {
            let mut register = byte as u16;
            let mut bit = 0;
            while bit < 8 {
                register = if register & 1 == 1 { (register >> 1) ^ poly } else { register >> 1 };
                bit += 1;
            }
            tables[0][byte] = register;
            byte += 1;
        }
        let mut k = 1;
        while k < SLICES {
            let mut byte = 0;
            while byte < 256 {
                let before = tables[k - 1][byte];
                tables[k][byte] = (before >> 8) ^ tables[0][(before & 0xff) as usize];
                byte += 1;
            }
            k += 1;
        }
        SlicedCrc16 { algorithm, tables }
    }

    pub fn checksum(&self, bytes: &[u8]) -> u16 {
        let mut register = self.algorithm.init.reverse_bits();
        let mut rest = bytes;
        while let Some((block, after)) = rest.split_first_chunk::<SLICES>() {
            register = self.block(register, block);
            rest = after;
        }
        if let Some((block, after)) = rest.split_first_chunk::<16>() {
            register = self.block(register, block);
            rest = after;
        }
        if let Some((block, after)) = rest.split_first_chunk::<8>() {
            register = self.block(register, block);
            rest = after;
        }
        if let Some((block, after)) = rest.split_first_chunk::<4>() {
            register = self.block(register, block);
            rest = after;
        }
        let t0 = &self.tables[0];
        for &b in rest {
            register = (register >> 8) ^ t0[usize::from(b ^ register as u8)];
        }
        // For a reflected CRC the finished value is the register with `xorout` applied.
        register ^ self.algorithm.xorout
    }

    /// `N` bytes at once (4 to 32, a power of two). The register only overlaps the first
    /// two bytes, looked up last so the other lookups need not wait for it.
    #[inline(always)]
    fn block<const N: usize>(&self, register: u16, block: &[u8; N]) -> u16 {
        let t = &self.tables;
        let mut lookups: [u16; N] =
            std::array::from_fn(|i| if i < 2 { 0 } else { t[N - 1 - i][usize::from(block[i])] });
        // XORed as a tree (unrolled, N being a constant): in a chain, a short input's CRC
        // waited on N dependent XORs before its first step was done.
        let mut width = N;
        while width > 1 {
            width /= 2;
            for i in 0..width {
                lookups[i] ^= lookups[i + width];
            }
        }
        lookups[0]
            ^ t[N - 2][usize::from(block[1] ^ (register >> 8) as u8)]
            ^ t[N - 1][usize::from(block[0] ^ register as u8)]
    }
}

/// A CRC over a fixed prefix and `K` bytes that vary, for replies built from a few values
/// (a GT06 ack: the length, then the protocol and serial). A CRC is affine in its input, so
/// for a given length the CRC is a constant (the prefix and `K` zero bytes) XOR one table
/// entry per varying byte, each looked up on its own: `K` loads, where a byte-wise CRC chains
/// `K` + prefix dependent steps. Built at compile time; kept in a `const` so that a caller in
/// another crate sees the constant as an immediate (read through a `static`, it was loaded,
/// and bit-reversed, once per ack).
#[derive(Debug, Clone, Copy)]
pub struct TrailingCrc16<const K: usize> {
    base: u16,
    /// `tables[i][b]`: what byte `b` at position `i` of the varying bytes changes.
    tables: [[u16; 256]; K],
}

impl<const K: usize> TrailingCrc16<K> {
    /// Panics (at compile time, in a `const`) for a prefix longer than 16 bytes or a `K`
    /// above 16.
    pub const fn new(algorithm: &'static Algorithm<u16>, prefix: &[u8]) -> Self {
        const MAX: usize = 16;
        assert!(prefix.len() <= MAX && K <= MAX, "prefix and varying bytes fit 16 each");
        let crc = Crc::<u16, crc::NoTable>::new(algorithm);
        let mut message = [0u8; 2 * MAX];
        let mut i = 0;
        while i < prefix.len() {
            message[i] = prefix[i];
            i += 1;
        }
        let length = prefix.len() + K;
        let base = crc.checksum(message.split_at(length).0);
        let mut tables = [[0u16; 256]; K];
        let mut position = 0;
        while position < K {
            let mut byte = 0;
            while byte < 256 {
                message[prefix.len() + position] = byte as u8;
                // crc(m) ^ crc(zeros there): the part that byte alone adds, whatever the rest.
                tables[position][byte] = crc.checksum(message.split_at(length).0) ^ base;
                byte += 1;
            }
            message[prefix.len() + position] = 0;
            position += 1;
        }
        TrailingCrc16 { base, tables }
    }

    /// The CRC of the prefix followed by `varying`.
    #[inline]
    pub fn checksum(&self, varying: [u8; K]) -> u16 {
        let mut crc = self.base;
        for (table, byte) in self.tables.iter().zip(varying) {
            crc ^= table[usize::from(byte)];
        }
        crc
    }
}

/// 8-bit XOR of every byte: the NMEA checksum and the JT808 check code (BCC).
pub fn xor8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc::NoTable;
    use proptest::prelude::*;

    proptest! {
        /// Every length hits a different mix of 32-, 16-, 8-, 4- and 1-byte steps.
        #[test]
        fn sliced_crcs_equal_the_crc_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(CRC16_X25.checksum(&bytes), Crc::<u16, NoTable>::new(&CRC_16_IBM_SDLC).checksum(&bytes));
            prop_assert_eq!(CRC16_ARC.checksum(&bytes), Crc::<u16, NoTable>::new(&CRC_16_ARC).checksum(&bytes));
        }

        #[test]
        fn trailing_crcs_equal_the_crc_crate(prefix in proptest::collection::vec(any::<u8>(), 0..=16), three in any::<[u8; 3]>()) {
            let whole = [&prefix[..], &three].concat();
            prop_assert_eq!(TrailingCrc16::<3>::new(&CRC_16_IBM_SDLC, &prefix).checksum(three), CRC16_X25.checksum(&whole));
            prop_assert_eq!(TrailingCrc16::<3>::new(&CRC_16_ARC, &prefix).checksum(three), CRC16_ARC.checksum(&whole));
            prop_assert_eq!(TrailingCrc16::<0>::new(&CRC_16_ARC, &prefix).checksum([]), CRC16_ARC.checksum(&prefix));
        }
    }

    #[test]
    fn catalogue_check_values() {
        // The standard check input for every CRC catalogue entry.
        assert_eq!(CRC16_X25.checksum(b"123456789"), 0x906E);
        assert_eq!(CRC16_ARC.checksum(b"123456789"), 0xBB3D);
    }

    #[test]
    fn xor_of_an_nmea_sentence_body() {
        // $GPHDT,274.07,T*03, a gyro heading from gpsd's logs
        assert_eq!(xor8(b"GPHDT,274.07,T"), 0x03);
        assert_eq!(xor8(b""), 0);
    }
}
