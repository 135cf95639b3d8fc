//! The integrity checks the four protocols use. The CRC parameters come from the `crc`
//! crate's catalogue, so they are the published ones rather than hand-copied polynomials;
//! the tables are built here (see [`SlicedCrc16`] for why).

use crc::{Algorithm, CRC_16_ARC, CRC_16_IBM_SDLC};

/// CRC-16/X-25 (a.k.a. CRC-ITU, CRC-16/IBM-SDLC): GT06 frames, over length…serial.
/// Check value 0x906E.
pub static CRC16_X25: SlicedCrc16 = SlicedCrc16::new(&CRC_16_IBM_SDLC);

/// CRC-16/ARC (a.k.a. CRC-16/IBM): Teltonika AVL packets, over codec id…N2.
/// Check value 0xBB3D.
pub static CRC16_ARC: SlicedCrc16 = SlicedCrc16::new(&CRC_16_ARC);

/// A reflected 16-bit CRC computed with sixteen tables: 16 bytes a step, then 8, then 4,
/// then one at a time. The `crc` crate's slice-by-16 takes whatever is left after the
/// 16-byte steps one byte at a time; on a 30-byte GT06 frame that is 14 single steps and
/// the CRC was a fifth of a validated decode. Bulk data (Teltonika) runs the same 16-byte
/// step as before. A property test holds both CRCs to the `crc` crate's for any input.
#[derive(Debug)]
pub struct SlicedCrc16 {
    /// `tables[k][b]`: the CRC contribution of byte `b` followed by `k` zero bytes.
    tables: [[u16; 256]; 16],
    init: u16,
    xorout: u16,
}

impl SlicedCrc16 {
    /// The tables of a catalogue entry. Only reflected CRCs (the two the protocols use).
    pub const fn new(algorithm: &Algorithm<u16>) -> Self {
        assert!(algorithm.refin && algorithm.refout, "only reflected CRCs are sliced here");
        let poly = algorithm.poly.reverse_bits();
        let mut tables = [[0u16; 256]; 16];
        let mut b = 0;
        while b < 256 {
            let mut c = b as u16;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 1 == 1 { (c >> 1) ^ poly } else { c >> 1 };
                bit += 1;
            }
            tables[0][b] = c;
            b += 1;
        }
        let mut k = 1;
        while k < 16 {
            let mut b = 0;
            while b < 256 {
                let prev = tables[k - 1][b];
                tables[k][b] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
                b += 1;
            }
            k += 1;
        }
        // The catalogue gives `init` unreflected; for these CRCs (0x0000, 0xFFFF) it reads
        // the same both ways, and reflecting keeps any other reflected entry right too.
        SlicedCrc16 { tables, init: algorithm.init.reverse_bits(), xorout: algorithm.xorout }
    }

    pub fn checksum(&self, bytes: &[u8]) -> u16 {
        self.update(self.init, bytes) ^ self.xorout
    }

    fn update(&self, mut crc: u16, mut bytes: &[u8]) -> u16 {
        while let Some((block, rest)) = bytes.split_first_chunk::<16>() {
            crc = self.block(crc, block);
            bytes = rest;
        }
        if let Some((block, rest)) = bytes.split_first_chunk::<8>() {
            crc = self.block(crc, block);
            bytes = rest;
        }
        if let Some((block, rest)) = bytes.split_first_chunk::<4>() {
            crc = self.block(crc, block);
            bytes = rest;
        }
        for &b in bytes {
            crc = (crc >> 8) ^ self.tables[0][usize::from(b ^ crc as u8)];
        }
        crc
    }

    /// `N` bytes at once (N ≥ 2): the CRC only overlaps the first two.
    #[inline(always)]
    fn block<const N: usize>(&self, crc: u16, block: &[u8; N]) -> u16 {
        let t = &self.tables;
        let mut x = t[N - 1][usize::from(block[0] ^ crc as u8)] ^ t[N - 2][usize::from(block[1] ^ (crc >> 8) as u8)];
        let mut i = 2;
        while i < N {
            x ^= t[N - 1 - i][usize::from(block[i])];
            i += 1;
        }
        x
    }
}

/// 8-bit XOR of every byte: the NMEA checksum and the JT808 check code (BCC).
pub fn xor8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc::{Crc, NoTable};
    use proptest::prelude::*;

    proptest! {
        /// Every length hits a different mix of 16-, 8-, 4- and 1-byte steps.
        #[test]
        fn sliced_crcs_equal_the_crc_crate(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(CRC16_X25.checksum(&bytes), Crc::<u16, NoTable>::new(&CRC_16_IBM_SDLC).checksum(&bytes));
            prop_assert_eq!(CRC16_ARC.checksum(&bytes), Crc::<u16, NoTable>::new(&CRC_16_ARC).checksum(&bytes));
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
        // $GPHDT,274.07,T*03 (nmea.md §5.5)
        assert_eq!(xor8(b"GPHDT,274.07,T"), 0x03);
        assert_eq!(xor8(b""), 0);
    }
}
