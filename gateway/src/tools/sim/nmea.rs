//! A simulated NMEA device: an `$IMEI=` line, then RMC sentences. NMEA has no replies and
//! no commands.

use std::time::SystemTime;

use super::device::{Common, Exchange, Firmware, Fix, FromGateway};
use super::utc_fields;

#[derive(Debug)]
pub(super) struct NmeaFirmware;

impl Firmware for NmeaFirmware {
    /// An identification line: a login record, no reply.
    fn login(&mut self, dev: &mut Common) -> Vec<Exchange> {
        vec![Exchange::one(format!("$IMEI={}\r\n", dev.id).into_bytes(), None)]
    }

    fn frame(&mut self, dev: &mut Common, fix: Fix, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64) {
        let f = utc_fields(fix.unix_ms);
        let (lat, ns) = (dev.lat.abs(), if dev.lat < 0.0 { 'S' } else { 'N' });
        let (lon, ew) = (dev.lon.abs(), if dev.lon < 0.0 { 'W' } else { 'E' });
        let body = format!(
            "GPRMC,{:02}{:02}{:02}.00,A,{},{ns},{},{ew},{:.1},{:.1},{:02}{:02}{:02},,,A",
            f[3],
            f[4],
            f[5],
            degrees_minutes(lat, 2),
            degrees_minutes(lon, 3),
            fix.speed_kmh as f64 / 1.852,
            fix.course,
            f[2],
            f[1],
            f[0],
        );
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        out.extend_from_slice(format!("${body}*{sum:02X}\r\n").as_bytes());
        (None, 1)
    }

    /// Inside the sentence, before the checksum.
    fn damage_at(&self, dev: &mut Common, len: usize) -> usize {
        7 + dev.rng.below((len - 12) as u64) as usize
    }

    fn command_at(&self, _buf: &[u8]) -> FromGateway {
        FromGateway::Other
    }

    fn answer(&mut self, _dev: &mut Common, _command: &[u8], _now: SystemTime) -> Option<Vec<u8>> {
        None
    }
}

/// `degrees` (not negative) as NMEA writes it: whole degrees in `degree_digits` digits, then
/// minutes to four decimals. Rounded once, on the whole value: rounding the minutes alone
/// turns 59.99996 into "60.0000", which no receiver accepts.
pub(super) fn degrees_minutes(degrees: f64, degree_digits: usize) -> String {
    let ten_thousandths = (degrees * 600_000.0).round() as u64;
    let (whole, minutes) = (ten_thousandths / 600_000, ten_thousandths % 600_000);
    format!("{whole:0degree_digits$}{:02}.{:04}", minutes / 10_000, minutes % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{stream_decoder, StreamOptions};
    use std::time::Duration;
    use trackgate_codecs::record::Timestamp;
    use trackgate_codecs::{Protocol, StreamEvent};

    /// A position a hair below a whole degree is written as the next degree, never as 60
    /// minutes, and every simulated NMEA sentence near one decodes (a CI run once lost an
    /// undamaged sentence to "4560.0000").
    #[test]
    fn nmea_positions_near_a_whole_degree_are_valid() {
        assert_eq!(degrees_minutes(45.999_999_9, 2), "4600.0000");
        assert_eq!(degrees_minutes(45.999_99, 2), "4559.9994");
        assert_eq!(degrees_minutes(0.0, 2), "0000.0000");
        assert_eq!(degrees_minutes(7.5, 3), "00730.0000");
        assert_eq!(degrees_minutes(179.0, 3), "17900.0000");
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut decoder = stream_decoder(Protocol::Nmea, &StreamOptions::default());
        let mut dev = Common::for_tests();
        for (i, whole) in [-89.0, -45.0, -1.0, 0.0, 1.0, 12.0, 45.0, 89.0].into_iter().enumerate() {
            for offset in [-1e-7, -1e-9, 0.0, 1e-9] {
                let (lat, lon) = (whole + offset, (whole * 2.0) + offset);
                (dev.lat, dev.lon) = (lat, lon);
                let mut bytes = Vec::new();
                let unix_ms = Timestamp::from_system_time(start + Duration::from_secs(i as u64)).unix_ms();
                let fix = Fix { unix_ms, speed_kmh: 30, course: 90, heartbeat: false };
                NmeaFirmware.frame(&mut dev, fix, &mut bytes);
                let mut events = Vec::new();
                decoder.decode(&bytes, false, &mut events);
                let [StreamEvent::Record(r)] = &events[..] else {
                    panic!("{}: {events:?}", String::from_utf8_lossy(&bytes))
                };
                assert!((r.latitude.unwrap() - lat).abs() < 1e-5, "{}", String::from_utf8_lossy(&bytes));
                assert!((r.longitude.unwrap() - lon).abs() < 1e-5, "{}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
