//! Codec 7, the GH3000 family's AVL data (docs/protocols/teltonika.md §4.1): records whose
//! parts are present as masks say, coordinates as floats, IO ids of one byte.
//!
//! ```text
//!  data field:  07 | N1 | record × N1 | N2
//!  record:      priority (2 bits) and seconds since 2007-01-01 UTC (30 bits) | global mask u8
//!               | [location mask u8 | lat f32 | lon f32 | altitude u16 | angle u8 (×360/256)
//!                  | speed u8 | satellites u8 | LAC u16, CI u16 | signal u8 | operator u32]
//!               | [N u8 {id u8, u8}] | [N u8 {id u8, u16}] | [N u8 {id u8, u32}]
//!  global mask: bit 0 location, 1–3 the IO groups of 1, 2 and 4 bytes
//!  location mask: one bit per location field above, in order (lat and lon share bit 0)
//! ```

use super::avl::AvlError;
use crate::wire::parse::{be_u16, be_u32, be_u8, read, take, Res, Short};
use nom::combinator::{cond, map};
use nom::multi::{count, length_count};
use nom::Parser;

pub const CODEC_7: u8 = 0x07;

/// Seconds from the Unix epoch to 2007-01-01 00:00 UTC, where GH3000 time starts.
pub const EPOCH_2007: u64 = 1_167_609_600;

/// A record's location element: each field present when its mask bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gh3000Location {
    /// Latitude and longitude in degrees.
    pub coordinates: Option<(f32, f32)>,
    pub altitude_m: Option<u16>,
    /// 256ths of a full turn.
    pub angle: Option<u8>,
    pub speed_kmh: Option<u8>,
    pub satellites: Option<u8>,
    /// LAC and cell id.
    pub cell: Option<(u16, u16)>,
    pub signal: Option<u8>,
    pub operator: Option<u32>,
}

impl Gh3000Location {
    fn mask(&self) -> u8 {
        let present = [
            self.coordinates.is_some(),
            self.altitude_m.is_some(),
            self.angle.is_some(),
            self.speed_kmh.is_some(),
            self.satellites.is_some(),
            self.cell.is_some(),
            self.signal.is_some(),
            self.operator.is_some(),
        ];
        present.iter().enumerate().fold(0, |m, (bit, &p)| m | (u8::from(p) << bit))
    }

    /// The mask, then each field its bit says is sent, in bit order.
    fn read(input: &[u8]) -> Res<'_, Self> {
        let (input, mask) = be_u8(input)?;
        let has = |bit: u8| mask & (1 << bit) != 0;
        let float = || map(be_u32, f32::from_bits);
        let mut fields = (
            cond(has(0), (float(), float())),
            cond(has(1), be_u16),
            cond(has(2), be_u8),
            cond(has(3), be_u8),
            cond(has(4), be_u8),
            cond(has(5), (be_u16, be_u16)),
            cond(has(6), be_u8),
            cond(has(7), be_u32),
        );
        let (input, (coordinates, altitude_m, angle, speed_kmh, satellites, cell, signal, operator)) =
            fields.parse_complete(input)?;
        let location = Gh3000Location { coordinates, altitude_m, angle, speed_kmh, satellites, cell, signal, operator };
        Ok((input, location))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.mask());
        if let Some((lat, lon)) = self.coordinates {
            out.extend_from_slice(&lat.to_bits().to_be_bytes());
            out.extend_from_slice(&lon.to_bits().to_be_bytes());
        }
        if let Some(a) = self.altitude_m {
            out.extend_from_slice(&a.to_be_bytes());
        }
        out.extend(self.angle);
        out.extend(self.speed_kmh);
        out.extend(self.satellites);
        if let Some((lac, ci)) = self.cell {
            out.extend_from_slice(&lac.to_be_bytes());
            out.extend_from_slice(&ci.to_be_bytes());
        }
        out.extend(self.signal);
        if let Some(o) = self.operator {
            out.extend_from_slice(&o.to_be_bytes());
        }
    }

    /// Degrees from north.
    pub fn angle_deg(&self) -> Option<f64> {
        self.angle.map(|a| f64::from(a) * 360.0 / 256.0)
    }
}

/// One record: its time word, its location if sent, its IO elements (id, value) by group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gh3000Record {
    /// Priority in the top 2 bits, seconds since 2007-01-01 in the other 30.
    pub time_word: u32,
    pub location: Option<Gh3000Location>,
    /// The groups of 1-, 2- and 4-byte values; `None` for a group the global mask leaves out
    /// (an empty group that is sent is `Some` of nothing).
    pub io: [Option<Vec<(u8, u32)>>; 3],
}

const GROUP_WIDTHS: [usize; 3] = [1, 2, 4];

impl Gh3000Record {
    /// Milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        (EPOCH_2007 + u64::from(self.time_word & 0x3FFF_FFFF)) * 1000
    }

    pub fn priority(&self) -> u8 {
        (self.time_word >> 30) as u8
    }

    /// The time word and the global mask, the location if bit 0 says so, then each IO group
    /// bits 1–3 say is sent: a count, then `(id, value)` pairs of the group's width.
    fn read(input: &[u8]) -> Res<'_, Self> {
        let (mut input, (time_word, global)) = (be_u32, be_u8).parse_complete(input)?;
        let location;
        (input, location) = cond(global & 1 != 0, Gh3000Location::read).parse_complete(input)?;
        let mut io: [Option<Vec<(u8, u32)>>; 3] = Default::default();
        for (i, width) in GROUP_WIDTHS.into_iter().enumerate() {
            let value = map(take(width), |v: &[u8]| v.iter().fold(0u32, |v, &b| v << 8 | u32::from(b)));
            (input, io[i]) = cond(global & (2 << i) != 0, length_count(be_u8, (be_u8, value))).parse_complete(input)?;
        }
        Ok((input, Gh3000Record { time_word, location, io }))
    }

    fn write(&self, out: &mut Vec<u8>) -> Option<()> {
        let global = self
            .io
            .iter()
            .enumerate()
            .fold(u8::from(self.location.is_some()), |m, (i, g)| m | if g.is_some() { 2 << i } else { 0 });
        out.extend_from_slice(&self.time_word.to_be_bytes());
        out.push(global);
        if let Some(l) = &self.location {
            l.write(out);
        }
        for (group, width) in self.io.iter().zip(GROUP_WIDTHS) {
            let Some(group) = group else { continue };
            out.push(u8::try_from(group.len()).ok()?);
            for &(id, v) in group {
                if width < 4 && v >> (8 * width) != 0 {
                    return None;
                }
                out.push(id);
                out.extend_from_slice(&v.to_be_bytes()[4 - width..]);
            }
        }
        Some(())
    }
}

/// A Codec 7 data field, read whole: `07 | N1 | records | N2`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gh3000Data {
    pub records: Vec<Gh3000Record>,
}

impl Gh3000Data {
    pub fn parse(data: &[u8]) -> Result<Self, AvlError> {
        if data.first() != Some(&CODEC_7) {
            return Err(AvlError::UnknownCodec(data.first().copied().unwrap_or(0)));
        }
        let (n1, rest) = read(be_u8, &data[1..]).map_err(|Short| AvlError::Layout)?;
        let ((records, n2), rest) =
            read((count(Gh3000Record::read, usize::from(n1)), be_u8), rest).map_err(|Short| AvlError::Layout)?;
        if n1 != n2 {
            return Err(AvlError::CountMismatch { n1, n2 });
        }
        if !rest.is_empty() {
            return Err(AvlError::Layout);
        }
        Ok(Gh3000Data { records })
    }

    /// The data field (`07` … N2); `None` for more than 255 records or a value wider than
    /// its group.
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<()> {
        let n = u8::try_from(self.records.len()).ok()?;
        out.extend_from_slice(&[CODEC_7, n]);
        for r in &self.records {
            r.write(out)?;
        }
        out.push(n);
        Some(())
    }
}
