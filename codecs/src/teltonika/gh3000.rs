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
use crate::wire::cursor::Cursor;

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

    fn read(c: &mut Cursor<'_>) -> Option<Self> {
        let mask = c.u8()?;
        let has = |bit: u8| mask & (1 << bit) != 0;
        let float = |c: &mut Cursor<'_>| c.u32().map(f32::from_bits);
        Some(Gh3000Location {
            coordinates: if has(0) { Some((float(c)?, float(c)?)) } else { None },
            altitude_m: if has(1) { Some(c.u16()?) } else { None },
            angle: if has(2) { Some(c.u8()?) } else { None },
            speed_kmh: if has(3) { Some(c.u8()?) } else { None },
            satellites: if has(4) { Some(c.u8()?) } else { None },
            cell: if has(5) { Some((c.u16()?, c.u16()?)) } else { None },
            signal: if has(6) { Some(c.u8()?) } else { None },
            operator: if has(7) { Some(c.u32()?) } else { None },
        })
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

    fn read(c: &mut Cursor<'_>) -> Option<Self> {
        let time_word = c.u32()?;
        let global = c.u8()?;
        let location = if global & 1 != 0 { Some(Gh3000Location::read(c)?) } else { None };
        let mut io: [Option<Vec<(u8, u32)>>; 3] = Default::default();
        for (i, width) in GROUP_WIDTHS.into_iter().enumerate() {
            if global & (2 << i) == 0 {
                continue;
            }
            let n = c.u8()?;
            let group = (0..n)
                .map(|_| {
                    let id = c.u8()?;
                    let v = c.take(width)?.iter().fold(0u32, |v, &b| v << 8 | u32::from(b));
                    Some((id, v))
                })
                .collect::<Option<Vec<_>>>()?;
            io[i] = Some(group);
        }
        Some(Gh3000Record { time_word, location, io })
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
        let mut c = Cursor::new(data);
        if c.u8() != Some(CODEC_7) {
            return Err(AvlError::UnknownCodec(data.first().copied().unwrap_or(0)));
        }
        let n1 = c.u8().ok_or(AvlError::Layout)?;
        let records =
            (0..n1).map(|_| Gh3000Record::read(&mut c)).collect::<Option<Vec<_>>>().ok_or(AvlError::Layout)?;
        let n2 = c.u8().ok_or(AvlError::Layout)?;
        if n1 != n2 {
            return Err(AvlError::CountMismatch { n1, n2 });
        }
        if c.remaining() != 0 {
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
