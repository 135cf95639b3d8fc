//! Frame sets for the benches: deterministic, generated with the codecs' own encoders so
//! every frame is valid, shaped like the field's traffic.
#![forbid(unsafe_code)]

use trackgate_codecs::gt06;
use trackgate_codecs::jt808::message::{write_item, Location};
use trackgate_codecs::jt808::{self, Edition, Terminal};
use trackgate_codecs::nmea::{self, Coordinate, Decimal, Gga, Message, NmeaDate, NmeaTime, Rmc, Sentence, Talker};
use trackgate_codecs::teltonika::{self, AvlRecord, GpsElement};

/// A small deterministic generator (xorshift64*), so every run benches the same bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `digits` / 10^`scale` in its shortest text (`12.5`, not `12.50`): the streams' bytes are
/// those the benches have always timed, from when the sentences held `f64`s.
fn short(digits: i64, scale: u32) -> Decimal {
    let v = digits as f64 / 10f64.powi(scale as i32);
    Decimal::from_f64(v).expect("a short value")
}

fn coordinate(rng: &mut Rng, max_deg: u64, hemis: [u8; 2]) -> Coordinate {
    Coordinate {
        whole_degrees: rng.below(max_deg) as u16,
        minutes: short(rng.below(60_000_000) as i64, 6).with_whole_digits(2).expect("two whole digits fit"),
        hemisphere: hemis[rng.below(2) as usize],
    }
}

fn time(rng: &mut Rng) -> NmeaTime {
    NmeaTime {
        hour: rng.below(24) as u8,
        minute: rng.below(60) as u8,
        second: rng.below(60) as u8,
        fraction: rng.below(100) as u32,
        fraction_digits: 2,
    }
}

/// `n` random valid RMC sentences back to back, CR LF terminated.
pub fn nmea_rmc(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..n {
        let m = Rmc {
            time: Some(time(&mut rng)),
            status: Some(b'A'),
            latitude: Some(coordinate(&mut rng, 90, [b'N', b'S'])),
            longitude: Some(coordinate(&mut rng, 180, [b'E', b'W'])),
            speed_knots: Some(short(rng.below(10_000) as i64, 2)),
            course_deg: Some(short(rng.below(36_000) as i64, 2)),
            date: Some(NmeaDate {
                day: 1 + rng.below(28) as u8,
                month: 1 + rng.below(12) as u8,
                year2: rng.below(40) as u8,
            }),
            mode: Some(b'A'),
            ..Rmc::default()
        };
        let s = Sentence::Standard { talker: Talker::GP, message: Message::Rmc(m) };
        nmea::encode(&s, &mut out).expect("generated RMC encodes");
    }
    out
}

/// `n` random valid GGA sentences back to back, CR LF terminated.
pub fn nmea_gga(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..n {
        let m = Gga {
            time: Some(time(&mut rng)),
            latitude: Some(coordinate(&mut rng, 90, [b'N', b'S'])),
            longitude: Some(coordinate(&mut rng, 180, [b'E', b'W'])),
            quality: Some(1),
            satellites: Some(rng.below(20) as u16),
            hdop: Some(short(rng.below(500) as i64, 2)),
            altitude_m: Some(short(rng.below(400_000) as i64 - 50_000, 2)),
            geoid_separation_m: Some(short(rng.below(2000) as i64 - 1000, 1)),
            ..Gga::default()
        };
        let s = Sentence::Standard { talker: Talker::GN, message: Message::Gga(m) };
        nmea::encode(&s, &mut out).expect("generated GGA encodes");
    }
    out
}

/// `n` random valid Teltonika TCP packets back to back in `codec` (0x08 or 0x8E), each with
/// 1–4 records of 0–3 IO elements per width, the mix the peers' own benches use. Returns the bytes and
/// the number of records.
pub fn teltonika_packets(codec: u8, n: usize, seed: u64) -> (Vec<u8>, usize) {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut total = 0;
    for _ in 0..n {
        let records: Vec<AvlRecord> = (0..1 + rng.below(4))
            .map(|_| {
                let ids = |rng: &mut Rng| (0..rng.below(4)).map(|_| rng.below(250) as u16 + 1).collect::<Vec<u16>>();
                let (a, b, c, d) = (ids(&mut rng), ids(&mut rng), ids(&mut rng), ids(&mut rng));
                AvlRecord {
                    timestamp_ms: 1_500_000_000_000 + rng.below(300_000_000_000),
                    priority: rng.below(3) as u8,
                    gps: GpsElement {
                        longitude_e7: (rng.below(3_600_000_001) as i64 - 1_800_000_000) as i32,
                        latitude_e7: (rng.below(1_800_000_001) as i64 - 900_000_000) as i32,
                        altitude_m: rng.below(3000) as i16,
                        angle_deg: rng.below(360) as u16,
                        satellites: rng.below(20) as u8,
                        speed_kmh: rng.below(200) as u16,
                    },
                    event_io_id: rng.below(250) as u16,
                    generation_type: None,
                    declared_io_count: None,
                    io_u8: a.into_iter().map(|id| (id, rng.below(256) as u8)).collect(),
                    io_u16: b.into_iter().map(|id| (id, rng.below(65_536) as u16)).collect(),
                    io_u32: c.into_iter().map(|id| (id, rng.next_u64() as u32)).collect(),
                    io_u64: d.into_iter().map(|id| (id, rng.next_u64())).collect(),
                    io_var: Vec::new(),
                }
            })
            .collect();
        total += records.len();
        let mut data = Vec::new();
        teltonika::encode_data(codec, &records, &mut data).expect("generated records encode");
        teltonika::encode_packet(&data, &mut out);
    }
    (out, total)
}

/// `n` random valid GT06 location frames of `protocol` 0x12 (with LBS) or 0x22 (with LBS,
/// ACC, upload mode and re-upload flag), back to back, serials counting up.
pub fn gt06_locations(protocol: u8, n: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = vec![
            rng.below(30) as u8 + 10,
            1 + rng.below(12) as u8,
            1 + rng.below(28) as u8,
            rng.below(24) as u8,
            rng.below(60) as u8,
            rng.below(60) as u8,
        ];
        c.push(0xC0 | rng.below(16) as u8);
        c.extend_from_slice(&((rng.below(90 * 1_800_000)) as u32).to_be_bytes());
        c.extend_from_slice(&((rng.below(180 * 1_800_000)) as u32).to_be_bytes());
        c.push(rng.below(200) as u8);
        // Course, positioned, and the hemisphere bits at random.
        let course_status = rng.below(360) as u16 | 1 << 12 | (rng.below(4) as u16) << 10;
        c.extend_from_slice(&course_status.to_be_bytes());
        c.extend_from_slice(&(rng.below(1000) as u16).to_be_bytes());
        c.push(rng.below(100) as u8);
        c.extend_from_slice(&(rng.below(65_536) as u16).to_be_bytes());
        c.extend_from_slice(&(rng.below(1 << 24) as u32).to_be_bytes()[1..]);
        if protocol == 0x22 {
            c.extend_from_slice(&[rng.below(2) as u8, rng.below(3) as u8, rng.below(2) as u8]);
        }
        gt06::encode_frame(&mut out, false, protocol, &c, i as u16).expect("a location fits a short frame");
    }
    out
}

/// `n` random valid JT808 0x0200 location frames (2013 header, items 0x01 mileage and 0x31
/// satellites), back to back.
///
/// `peer_safe` keeps to what the jt808 0.1.1 crate survives: times whose BCD
/// bytes read the same as binary (every field 0–9), and at most two escapes per frame. The
/// other set uses any time and any escapes.
pub fn jt808_locations(n: usize, seed: u64, peer_safe: bool) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let terminal = Terminal::for_device_id("13912345678", Edition::V2013).expect("a phone number");
    let bcd = |v: u64| (((v / 10) << 4) | (v % 10)) as u8;
    let mut out = Vec::new();
    let mut made = 0;
    while made < n {
        let time = if peer_safe {
            [
                bcd(rng.below(10)),
                bcd(1 + rng.below(9)),
                bcd(1 + rng.below(9)),
                bcd(rng.below(10)),
                bcd(rng.below(10)),
                bcd(rng.below(10)),
            ]
        } else {
            [
                bcd(10 + rng.below(30)),
                bcd(1 + rng.below(12)),
                bcd(1 + rng.below(28)),
                bcd(rng.below(24)),
                bcd(rng.below(60)),
                bcd(rng.below(60)),
            ]
        };
        let mut items = Vec::new();
        write_item(&mut items, 0x01, &(rng.below(10_000_000) as u32).to_be_bytes());
        write_item(&mut items, 0x31, &[rng.below(30) as u8]);
        let location = Location {
            alarm: 0,
            status: 0x02 | (rng.below(4) as u32) << 2 | rng.below(2) as u32,
            latitude_raw: rng.below(90_000_000) as u32,
            longitude_raw: rng.below(180_000_000) as u32,
            altitude_raw: rng.below(3000) as u16,
            speed_raw: rng.below(2000) as u16,
            course: rng.below(360) as u16,
            time,
            items: &items,
        };
        let mut body = Vec::new();
        location.write(&mut body);
        let frame = jt808::encode(0x0200, &terminal, made as u16, &body).expect("a location fits a frame");
        if peer_safe && frame.iter().filter(|&&b| b == 0x7D).count() > 2 {
            continue;
        }
        out.extend_from_slice(&frame);
        made += 1;
    }
    out
}

/// The gateway's default read buffer (`read_buffer`, 4 KiB).
pub const GATEWAY_READ: usize = 4096;

/// Decodes `buf` as the gateway's sessions do: at most `read` new bytes at a time, with what
/// the decoder left of the previous read in front, and the events taken (here: counted and
/// cleared) after each read, so the records stay in the cache they were written in. Returns
/// the records.
pub fn records_per_read(
    decoder: &mut dyn trackgate_codecs::RecordDecoder,
    buf: &[u8],
    read: usize,
    events: &mut Vec<trackgate_codecs::StreamEvent>,
) -> u64 {
    let (mut start, mut end, mut records) = (0, 0, 0);
    while end < buf.len() {
        end = (end + read).min(buf.len());
        events.clear();
        start += decoder.decode(&buf[start..end], end == buf.len(), events);
        records += events.iter().filter(|e| matches!(e, trackgate_codecs::StreamEvent::Record(_))).count() as u64;
    }
    events.clear();
    records
}
