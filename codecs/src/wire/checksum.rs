//! The integrity checks the four protocols use, built on the `crc` crate's catalogue so the
//! parameters are the published ones rather than hand-copied polynomials.

use crc::{Crc, Table, CRC_16_ARC, CRC_16_IBM_SDLC};

/// CRC-16/X-25 (a.k.a. CRC-ITU, CRC-16/IBM-SDLC): GT06 frames, over length…serial.
/// Check value 0x906E. Slice-by-16 tables too: even on 30-byte frames they took GT06
/// validated views from 181 to 235 MiB/s (BENCHMARKS.md).
pub const CRC16_X25: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_SDLC);

/// CRC-16/ARC (a.k.a. CRC-16/IBM): Teltonika AVL packets, over codec id…N2.
/// Check value 0xBB3D. Slice-by-16 tables: the CRC covers every byte of every packet, and
/// the one-byte-per-step default was most of the Teltonika validation time (BENCHMARKS.md).
pub const CRC16_ARC: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_ARC);

/// 8-bit XOR of every byte: the NMEA checksum and the JT808 check code (BCC).
pub fn xor8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc ^ b)
}

#[cfg(test)]
mod tests {
    use super::*;

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
