//! `trackgate sim`: simulated devices for all four protocols. Each device logs in the way
//! its protocol does, reports positions (and heartbeats) at an interval, optionally sends
//! damaged frames, and checks every reply it gets against the one it must get, byte for
//! byte, and answers the commands the gateway sends. The report says what was sent, what
//! was acknowledged and how fast.
//!
//! The device side ([`Device`]) is plain code: frames out, the exact replies they call for.
//! The tokio driver around it only connects, writes, reads and times.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use trackgate_codecs::jt808::message::{Location, Register};
use trackgate_codecs::jt808::{self, Edition, Terminal};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::teltonika::{self, AvlRecord, GpsElement, UdpPacket};
use trackgate_codecs::{gt06, Protocol};

use crate::protocol::Transport;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub protocol: Protocol,
    pub transport: Transport,
    pub target: SocketAddr,
    pub devices: usize,
    /// Time between a device's reports.
    pub interval: Duration,
    /// How long devices keep reporting.
    pub duration: Duration,
    /// Device starts are spread evenly over this time.
    pub ramp: Duration,
    /// After logging in, devices stay connected and send nothing until this long after the
    /// run's start; then they report for `duration`. A login storm's cost can then be read
    /// apart from the reports' and the hang-ups' (`scripts/load.sh` with `HOLD`).
    pub hold: Duration,
    /// Frames per report, written together (devices that buffer send several at once).
    pub batch: usize,
    /// Probability that a frame is sent damaged (the gateway must not acknowledge it).
    pub damage: f64,
    /// How long a device waits for a reply before counting it missing.
    pub ack_timeout: Duration,
    /// Seeds positions and damage, so a run can be repeated.
    pub seed: u64,
    /// Device ids are numbered from here.
    pub first_id: u64,
    /// Local address the devices connect from (any port). Loopback connections to one
    /// gateway address run out of ephemeral ports near 28,000; sims on 127.0.0.2, 127.0.0.3,
    /// ... each get a port range of their own.
    pub source: Option<IpAddr>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            protocol: Protocol::Gt06,
            transport: Transport::Tcp,
            target: ([127, 0, 0, 1], 5023).into(),
            devices: 1,
            interval: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            ramp: Duration::from_secs(1),
            hold: Duration::ZERO,
            batch: 1,
            damage: 0.0,
            ack_timeout: Duration::from_secs(10),
            seed: 1,
            first_id: 0,
            source: None,
        }
    }
}

/// Frames a device sends in one write, and the replies they call for, in order.
#[derive(Debug, Default)]
pub struct Exchange {
    pub bytes: Vec<u8>,
    /// Each reply the gateway must send (one per datagram over UDP).
    pub expect: Vec<Vec<u8>>,
    pub frames: u64,
    pub damaged: u64,
    /// Records the gateway should store for the undamaged frames.
    pub records: u64,
}

/// What the bytes from the gateway start with, as far as commands go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromGateway {
    /// A whole command frame of this many bytes.
    Command(usize),
    /// The start of one: more bytes are needed.
    PartialCommand,
    /// No command (a reply, or nothing).
    Other,
}

/// A small deterministic generator (xorshift64*); the sim needs repeatable, not secure.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One simulated device: its identity, position and counters.
#[derive(Debug)]
pub struct Device {
    protocol: Protocol,
    transport: Transport,
    id: String,
    rng: Rng,
    serial: u16,
    /// JT808: the platform's serial for its next reply to us, counting replies only.
    platform_serial: u16,
    /// JT808: commands received, each of which took one of the platform's serials, so the
    /// replies built with `platform_serial` come this much later.
    serial_shift: u16,
    terminal: Option<Terminal>,
    /// Teltonika UDP ids.
    packet_id: u16,
    avl_packet_id: u8,
    reports: u64,
    lat: f64,
    lon: f64,
    damage: f64,
}

impl Device {
    pub fn new(protocol: Protocol, transport: Transport, number: u64, seed: u64, damage: f64) -> Self {
        let mut rng = Rng::new(seed ^ number.wrapping_mul(0x1000_0001));
        // 15-digit IMEIs for GT06 and Teltonika, 11-digit phone numbers for JT808.
        let id = match protocol {
            Protocol::Jt808 => format!("1{:010}", number % 10_000_000_000),
            _ => format!("35{:013}", number % 10_000_000_000_000),
        };
        let terminal = (protocol == Protocol::Jt808).then(|| Terminal::for_device_id(&id, Edition::V2013)).flatten();
        let (lat, lon) = (-60.0 + rng.unit() * 120.0, -179.0 + rng.unit() * 358.0);
        Device {
            protocol,
            transport,
            id,
            rng,
            serial: 0,
            platform_serial: 1,
            serial_shift: 0,
            terminal,
            packet_id: 0,
            avl_packet_id: 0,
            reports: 0,
            lat,
            lon,
            damage,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }

    fn jt808_reply(&mut self, serial: u16, id: u16) -> Vec<u8> {
        let terminal = self.terminal.expect("a JT808 device has a terminal");
        let ps = self.platform_serial;
        self.platform_serial = ps.wrapping_add(1);
        jt808::platform_response(&terminal, ps, serial, id, 0)
    }

    /// What a device sends first: the login, handshake or registration, one step at a time
    /// (each step waits for its replies before the next).
    pub fn login(&mut self) -> Vec<Exchange> {
        match (self.protocol, self.transport) {
            (Protocol::Gt06, _) => {
                let serial = self.next_serial();
                let mut content = gt06::imei_to_bcd(&self.id).expect("a 15-digit IMEI").to_vec();
                content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
                let mut bytes = Vec::new();
                gt06::encode_frame(&mut bytes, false, 0x01, &content, serial).expect("a login fits");
                vec![Exchange {
                    bytes,
                    expect: vec![gt06::ack(false, 0x01, serial)],
                    frames: 1,
                    damaged: 0,
                    records: 1,
                }]
            }
            (Protocol::Teltonika, Transport::Tcp) => {
                let mut bytes = Vec::new();
                teltonika::encode_imei(&self.id, &mut bytes);
                vec![Exchange { bytes, expect: vec![vec![0x01]], frames: 1, damaged: 0, records: 1 }]
            }
            (Protocol::Jt808, _) => {
                let terminal = self.terminal.expect("a JT808 device has a terminal");
                let serial = self.next_serial();
                let mut body = Vec::new();
                Register {
                    layout: jt808::message::RegisterLayout::V2013,
                    province: 44,
                    city: 300,
                    manufacturer: b"TRKGT",
                    model: b"SIM-808",
                    terminal_id: b"SIM0001",
                    plate_color: 1,
                    plate: &jt808::gbk("粤B12345"),
                }
                .write(&mut body);
                let register = jt808::encode(jt808::id::REGISTER, &terminal, serial, &body).expect("fits");
                let ps = self.platform_serial;
                self.platform_serial += 1;
                let registered =
                    jt808::register_response(&terminal, ps, serial, 0, &self.id).expect("a register response fits");
                // The auth code the gateway hands out is the device id.
                let serial = self.next_serial();
                let auth = jt808::encode(jt808::id::AUTHENTICATE, &terminal, serial, self.id.as_bytes()).expect("fits");
                let authenticated = self.jt808_reply(serial, jt808::id::AUTHENTICATE);
                vec![
                    Exchange { bytes: register, expect: vec![registered], frames: 1, damaged: 0, records: 1 },
                    Exchange { bytes: auth, expect: vec![authenticated], frames: 1, damaged: 0, records: 1 },
                ]
            }
            (Protocol::Nmea, _) => {
                // An identification line: a login record, no reply (NMEA has none).
                let bytes = format!("$IMEI={}\r\n", self.id).into_bytes();
                vec![Exchange { bytes, expect: Vec::new(), frames: 1, damaged: 0, records: 1 }]
            }
            (Protocol::Teltonika, Transport::Udp) => Vec::new(),
        }
    }

    /// One report: `batch` frames, every tenth a heartbeat where the protocol has one.
    pub fn report(&mut self, batch: usize, now: SystemTime) -> Exchange {
        let mut x = Exchange::default();
        for _ in 0..batch.max(1) {
            self.reports += 1;
            self.lat = (self.lat + (self.rng.unit() - 0.5) * 0.001).clamp(-89.0, 89.0);
            self.lon = (self.lon + (self.rng.unit() - 0.5) * 0.001).clamp(-179.0, 179.0);
            let damaged = self.damage > 0.0 && self.rng.unit() < self.damage;
            let heartbeat = self.reports.is_multiple_of(10);
            let start = x.bytes.len();
            let (reply, records) = self.frame(heartbeat, now, &mut x.bytes);
            if damaged {
                self.damage_frame(start, &mut x.bytes);
                x.damaged += 1;
                // A damaged frame gets no reply, so the platform serial does not move.
                if self.protocol == Protocol::Jt808 {
                    self.platform_serial = self.platform_serial.wrapping_sub(1);
                }
            } else {
                x.expect.extend(reply);
                x.records += records;
            }
            x.frames += 1;
            if self.transport == Transport::Udp && batch > 1 {
                // One frame per datagram: the driver splits at these marks.
                break;
            }
        }
        x
    }

    /// A JT808 location block (0x0200's body) at the device's position.
    fn jt808_location(&self, unix_ms: i64, speed: u64, course: u64, out: &mut Vec<u8>) {
        let mut status = jt808::message::status::POSITIONED | jt808::message::status::ACC;
        if self.lat < 0.0 {
            status |= jt808::message::status::SOUTH;
        }
        if self.lon < 0.0 {
            status |= jt808::message::status::WEST;
        }
        let mut items = Vec::new();
        jt808::message::write_item(&mut items, 0x01, &(self.reports as u32 * 100).to_be_bytes());
        Location {
            alarm: 0,
            status,
            latitude_raw: (self.lat.abs() * 1e6) as u32,
            longitude_raw: (self.lon.abs() * 1e6) as u32,
            altitude_raw: 42,
            speed_raw: (speed * 10) as u16,
            course: course as u16,
            // Device-local time at GMT+8, the standard's default.
            time: jt808::bcd_time(Timestamp::from_unix_ms(unix_ms + 8 * 3_600_000, false)).unwrap_or_default(),
            items: &items,
        }
        .write(out);
    }

    /// How long the command frame at the start of `buf` (bytes from the gateway) is, if
    /// one starts there: the protocol's online command (GT06 0x80), any platform message of
    /// the command range (JT808 0x8103 and up, answered below), a Codec 12/14 command
    /// packet (Teltonika).
    fn command_at(&self, buf: &[u8]) -> FromGateway {
        let need =
            |total: usize| if buf.len() >= total { FromGateway::Command(total) } else { FromGateway::PartialCommand };
        match self.protocol {
            Protocol::Gt06 => match buf {
                [0x78, 0x78, len, 0x80, ..] => need(usize::from(*len) + 5),
                [0x79, 0x79, hi, lo, 0x80, ..] => need(usize::from(u16::from_be_bytes([*hi, *lo])) + 6),
                [0x78]
                | [0x78, 0x78]
                | [0x78, 0x78, _]
                | [0x79]
                | [0x79, 0x79]
                | [0x79, 0x79, _]
                | [0x79, 0x79, _, _] => FromGateway::PartialCommand,
                _ => FromGateway::Other,
            },
            Protocol::Jt808 => {
                let [0x7E, rest @ ..] = buf else { return FromGateway::Other };
                let Some(end) = rest.iter().position(|&b| b == 0x7E) else { return FromGateway::PartialCommand };
                let id = jt808::Frame::parse(&rest[..end]).map(|f| f.header.message_id);
                match id {
                    Ok(id) if id >= jt808::id::SET_PARAMETERS && id != jt808::id::MEDIA_UPLOAD_RESPONSE => {
                        FromGateway::Command(end + 2)
                    }
                    _ => FromGateway::Other,
                }
            }
            Protocol::Teltonika => match buf {
                [0, 0, 0, 0, l0, l1, l2, l3, ..] => {
                    let len = u32::from_be_bytes([*l0, *l1, *l2, *l3]) as usize;
                    need(len.saturating_add(12))
                }
                _ if buf.len() < 8 && buf.iter().all(|&b| b == 0) => FromGateway::PartialCommand,
                _ => FromGateway::Other,
            },
            Protocol::Nmea => FromGateway::Other,
        }
    }

    /// The reply `want` as the gateway sends it now: JT808 replies carry the platform's
    /// serial, and every command the gateway sent took one.
    fn expected_now<'w>(&self, want: &'w [u8]) -> std::borrow::Cow<'w, [u8]> {
        use std::borrow::Cow;
        if self.protocol != Protocol::Jt808 || self.serial_shift == 0 {
            return Cow::Borrowed(want);
        }
        let Some(Ok(frame)) = between_flags(want).map(jt808::Frame::parse) else { return Cow::Borrowed(want) };
        let h = frame.header;
        let mut out = Vec::with_capacity(want.len() + 4);
        let serial = h.serial.wrapping_add(self.serial_shift);
        match jt808::encode_frame(&mut out, h.message_id, &h.terminal, serial, h.package, &frame.body) {
            Some(_) => Cow::Owned(out),
            None => Cow::Borrowed(want),
        }
    }

    /// The device's answer to a whole command frame, as its protocol's firmware answers:
    /// GT06 0x21 echoing the server flag; JT808 0x0201 / 0x0500 with a location for 0x8201 /
    /// 0x8500, 0x0104 (no parameters) for the parameter queries and the terminal's general
    /// response 0x0001 for the others; Teltonika a Codec 12 (or 14) response. The gateway
    /// stores one record for it and replies nothing.
    fn answer(&mut self, command: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match self.protocol {
            Protocol::Gt06 => {
                // The command-length byte, then the server flag.
                let at = if command.starts_with(&gt06::LONG_START) { 5 } else { 4 };
                let flag = command.get(at + 1..at + 5)?;
                let server_flag = u32::from_be_bytes(flag.try_into().ok()?);
                let reply = gt06::Message::CommandReply(gt06::CommandReply {
                    server_flag,
                    text: "OK".into(),
                    encoding: Some(1),
                    irregular_length: None,
                    extra: &[],
                });
                let mut content = Vec::new();
                reply.write_content(0x21, &mut content)?;
                let serial = self.next_serial();
                // 0x21 in the long form, as Concox firmware sends it.
                gt06::encode_frame(&mut out, true, 0x21, &content, serial)?;
            }
            Protocol::Jt808 => {
                let header = jt808::Frame::parse(between_flags(command)?).ok()?.header;
                self.serial_shift = self.serial_shift.wrapping_add(1);
                let terminal = self.terminal?;
                let serial = self.next_serial();
                let mut body = header.serial.to_be_bytes().to_vec();
                let id = match header.message_id {
                    jt808::id::QUERY_LOCATION | jt808::id::VEHICLE_CONTROL => {
                        let unix = Timestamp::from_system_time(now).unix_ms();
                        self.jt808_location(unix, 0, 0, &mut body);
                        match header.message_id {
                            jt808::id::QUERY_LOCATION => jt808::id::LOCATION_REPLY,
                            _ => jt808::id::VEHICLE_CONTROL_REPLY,
                        }
                    }
                    jt808::id::QUERY_PARAMETERS | jt808::id::QUERY_GIVEN_PARAMETERS => {
                        body.push(0); // no parameters kept here
                        jt808::id::PARAMETERS
                    }
                    _ => {
                        body.extend_from_slice(&header.message_id.to_be_bytes());
                        body.push(0); // success
                        jt808::id::TERMINAL_RESPONSE
                    }
                };
                jt808::encode_frame(&mut out, id, &terminal, serial, None, &body)?;
            }
            Protocol::Teltonika => {
                // 00000000, length, codec, quantity, type, size, [IMEI for Codec 14], text.
                let codec = *command.get(8)?;
                let imei = match codec {
                    teltonika::CODEC_14 => Some(command.get(15..23)?.try_into().ok()?),
                    _ => None,
                };
                teltonika::encode_command(codec, teltonika::TYPE_RESPONSE, imei, b"OK", &mut out);
                if self.transport == Transport::Udp {
                    // A datagram from the device carries the channel header, as its data does
                    // (the gateway reads a bare TCP packet too).
                    let data = out.get(teltonika::HEADER_LEN..out.len() - 4)?.to_vec();
                    out.clear();
                    self.packet_id = self.packet_id.wrapping_add(1);
                    self.avl_packet_id = self.avl_packet_id.wrapping_add(1);
                    UdpPacket::encode(self.packet_id, 0x01, self.avl_packet_id, &self.id, &data, &mut out);
                }
            }
            Protocol::Nmea => return None,
        }
        Some(out)
    }

    /// Appends one frame; returns the reply it calls for and how many records it gives.
    fn frame(&mut self, heartbeat: bool, now: SystemTime, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64) {
        let t = Timestamp::from_system_time(now);
        let unix = t.unix_ms();
        let speed = self.rng.below(120);
        let course = self.rng.below(360);
        match self.protocol {
            Protocol::Gt06 => {
                let serial = self.next_serial();
                if heartbeat {
                    gt06::encode_frame(out, false, 0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial).expect("fits");
                    return (Some(gt06::ack(false, 0x13, serial)), 1);
                }
                let fields = utc_fields(unix);
                let mut c = fields.to_vec();
                c.push(0xC9); // 12-byte GPS block, 9 satellites
                c.extend_from_slice(&((self.lat.abs() * 1_800_000.0) as u32).to_be_bytes());
                c.extend_from_slice(&((self.lon.abs() * 1_800_000.0) as u32).to_be_bytes());
                c.push(speed as u8);
                let mut cs = course as u16 | 1 << 12; // positioned
                if self.lat >= 0.0 {
                    cs |= 1 << 10;
                }
                if self.lon < 0.0 {
                    cs |= 1 << 11;
                }
                c.extend_from_slice(&cs.to_be_bytes());
                c.extend_from_slice(&[0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0xB8]);
                gt06::encode_frame(out, false, 0x12, &c, serial).expect("fits");
                (Some(gt06::ack(false, 0x12, serial)), 1)
            }
            Protocol::Jt808 => {
                let terminal = self.terminal.expect("a JT808 device has a terminal");
                let serial = self.next_serial();
                if heartbeat {
                    jt808::encode_frame(out, jt808::id::HEARTBEAT, &terminal, serial, None, &[]).expect("fits");
                    return (Some(self.jt808_reply(serial, jt808::id::HEARTBEAT)), 1);
                }
                let mut body = Vec::new();
                self.jt808_location(unix, speed, course, &mut body);
                jt808::encode_frame(out, jt808::id::LOCATION, &terminal, serial, None, &body).expect("fits");
                (Some(self.jt808_reply(serial, jt808::id::LOCATION)), 1)
            }
            Protocol::Teltonika => {
                let record = AvlRecord {
                    timestamp_ms: unix.max(0) as u64,
                    priority: 0,
                    gps: GpsElement {
                        longitude_e7: (self.lon * 1e7) as i32,
                        latitude_e7: (self.lat * 1e7) as i32,
                        altitude_m: 42,
                        angle_deg: course as u16,
                        satellites: 9,
                        speed_kmh: speed as u16,
                    },
                    event_io_id: 0,
                    generation_type: None,
                    declared_io_count: None,
                    io_u8: vec![(239, 1), (240, 1)],
                    io_u16: vec![(66, 12_600)],
                    io_u32: vec![(16, self.reports as u32 * 100)],
                    io_u64: Vec::new(),
                    io_var: Vec::new(),
                };
                let mut data = Vec::new();
                teltonika::encode_data(0x08, &[record], &mut data).expect("one record encodes");
                match self.transport {
                    Transport::Tcp => {
                        teltonika::encode_packet(&data, out);
                        (Some(teltonika::tcp_ack(1).to_vec()), 1)
                    }
                    Transport::Udp => {
                        self.packet_id = self.packet_id.wrapping_add(1);
                        self.avl_packet_id = self.avl_packet_id.wrapping_add(1);
                        UdpPacket::encode(self.packet_id, 0x01, self.avl_packet_id, &self.id, &data, out);
                        (Some(teltonika::udp_ack(self.packet_id, self.avl_packet_id, 1).to_vec()), 1)
                    }
                }
            }
            Protocol::Nmea => {
                let f = utc_fields(unix);
                let (lat, ns) = (self.lat.abs(), if self.lat < 0.0 { 'S' } else { 'N' });
                let (lon, ew) = (self.lon.abs(), if self.lon < 0.0 { 'W' } else { 'E' });
                let body = format!(
                    "GPRMC,{:02}{:02}{:02}.00,A,{},{ns},{},{ew},{:.1},{course:.1},{:02}{:02}{:02},,,A",
                    f[3],
                    f[4],
                    f[5],
                    nmea_degrees_minutes(lat, 2),
                    nmea_degrees_minutes(lon, 3),
                    speed as f64 / 1.852,
                    f[2],
                    f[1],
                    f[0],
                );
                let sum = body.bytes().fold(0u8, |a, b| a ^ b);
                out.extend_from_slice(format!("${body}*{sum:02X}\r\n").as_bytes());
                (None, 1)
            }
        }
    }

    /// Damages the frame at `start..` so its checksum (or, for Teltonika UDP, which has
    /// none, its record count check) fails, without touching the framing bytes.
    fn damage_frame(&mut self, start: usize, bytes: &mut [u8]) {
        let frame = &mut bytes[start..];
        let n = frame.len();
        let i = match (self.protocol, self.transport) {
            // N2, the closing record count.
            (Protocol::Teltonika, Transport::Udp) => n - 1,
            // Inside the records, before the CRC.
            (Protocol::Teltonika, Transport::Tcp) => 10 + self.rng.below((n - 16) as u64) as usize,
            // Between the header and the checksum; never creating a flag or escape byte.
            (Protocol::Jt808, _) => 2 + self.rng.below((n - 4) as u64) as usize,
            // Content, before serial and CRC.
            (Protocol::Gt06, _) => 4 + self.rng.below((n - 10) as u64) as usize,
            // Inside the sentence, before the checksum.
            (Protocol::Nmea, _) => 7 + self.rng.below((n - 12) as u64) as usize,
        };
        let mut b = frame[i] ^ 0x01;
        if self.protocol == Protocol::Jt808 && matches!(b, 0x7D | 0x7E) || frame[i] == 0x7D {
            b = frame[i] ^ 0x10;
            if frame[i] == 0x7D {
                // An escape's first byte: damage the byte it escapes into something else.
                frame[i + 1] = if frame[i + 1] == 0x01 { 0x02 } else { 0x01 };
                return;
            }
        }
        if self.protocol == Protocol::Nmea && !(b.is_ascii_graphic()) || matches!(b, b'*' | b'$' | b',') {
            b = frame[i].wrapping_add(1);
        }
        frame[i] = b;
    }
}

/// A JT808 frame without its two flags, which `Frame::parse` takes.
fn between_flags(frame: &[u8]) -> Option<&[u8]> {
    frame.strip_prefix(&[0x7E])?.strip_suffix(&[0x7E])
}

/// `degrees` (not negative) as NMEA writes it: whole degrees in `degree_digits` digits, then
/// minutes to four decimals. Rounded once, on the whole value: rounding the minutes alone
/// turns 59.99996 into "60.0000", which no receiver accepts.
fn nmea_degrees_minutes(degrees: f64, degree_digits: usize) -> String {
    let ten_thousandths = (degrees * 600_000.0).round() as u64;
    let (whole, minutes) = (ten_thousandths / 600_000, ten_thousandths % 600_000);
    format!("{whole:0degree_digits$}{:02}.{:04}", minutes / 10_000, minutes % 10_000)
}

/// `[yy, mo, dd, hh, mi, ss]` of a UTC time.
fn utc_fields(unix_ms: i64) -> [u8; 6] {
    let (date, h, m, sec) = Timestamp::from_unix_ms(unix_ms, false).date_time();
    [(date.year() - 2000) as u8, date.month(), date.day(), h, m, sec]
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SimReport {
    pub protocol: String,
    pub transport: String,
    pub devices: usize,
    pub connected: u64,
    pub connect_failures: u64,
    pub logged_in: u64,
    pub frames_sent: u64,
    pub damaged_sent: u64,
    pub acks_expected: u64,
    pub acks_ok: u64,
    pub acks_wrong: u64,
    pub acks_missing: u64,
    /// Connections the gateway closed while a device waited for a reply (a cap reached,
    /// junk detection, a takeover).
    pub closed_by_gateway: u64,
    /// Records the gateway should have stored for what was sent undamaged.
    pub records_expected: u64,
    /// Of those, the ones the logins gave (one per login frame: a JT808 device's registration
    /// and authentication are two; Teltonika over UDP has no login).
    pub login_records: u64,
    pub elapsed_s: f64,
    pub frames_per_s: f64,
    /// From the start until the last device had logged in (the ramp included).
    pub login_phase_s: f64,
    /// Devices logged in per second of the login phase.
    pub logins_per_s: f64,
    /// Commands from the gateway the devices answered (each answer is one more record in
    /// `records_expected`).
    pub commands_answered: u64,
    /// Commands that arrived after a device had finished (TCP: read at its hang-up).
    pub commands_unanswered: u64,
    pub ack_latency_ms: Latency,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl SimReport {
    /// Every expected reply arrived, exactly.
    pub fn all_acked(&self) -> bool {
        self.connect_failures == 0
            && self.acks_wrong == 0
            && self.acks_missing == 0
            && self.acks_ok == self.acks_expected
    }

    fn add(&mut self, d: &DeviceResult) {
        self.connected += u64::from(d.connected);
        self.connect_failures += u64::from(!d.connected);
        self.logged_in += u64::from(d.logged_in_after.is_some());
        self.frames_sent += d.frames;
        self.damaged_sent += d.damaged;
        self.acks_expected += d.expected;
        self.acks_ok += d.ok;
        self.acks_wrong += d.wrong;
        self.acks_missing += d.missing;
        self.closed_by_gateway += d.closed;
        self.records_expected += d.records;
        self.login_records += d.login_records;
        self.commands_answered += d.commands_answered;
        self.commands_unanswered += d.commands_unanswered;
        if let Some(t) = d.logged_in_after {
            self.login_phase_s = self.login_phase_s.max(t.as_secs_f64());
        }
    }
}

#[derive(Debug, Default)]
struct DeviceResult {
    connected: bool,
    frames: u64,
    damaged: u64,
    expected: u64,
    ok: u64,
    wrong: u64,
    missing: u64,
    closed: u64,
    records: u64,
    latencies_us: Vec<u32>,
    /// When the login finished, from the start of the run (`None`: it did not).
    logged_in_after: Option<Duration>,
    login_records: u64,
    commands_answered: u64,
    commands_unanswered: u64,
}

impl DeviceResult {
    fn sent(&mut self, x: &Exchange) {
        self.frames += x.frames;
        self.damaged += x.damaged;
        self.expected += x.expect.len() as u64;
    }
}

/// Runs the simulation on the calling thread and reports.
pub fn run(config: SimConfig) -> std::io::Result<SimReport> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(config))
}

pub async fn run_async(config: SimConfig) -> std::io::Result<SimReport> {
    let config = Arc::new(config);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.devices {
        let config = config.clone();
        let delay = config.ramp.mul_f64(i as f64 / config.devices.max(1) as f64);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut device =
                Device::new(config.protocol, config.transport, config.first_id + i as u64, config.seed, config.damage);
            let mut result = DeviceResult::default();
            match config.transport {
                Transport::Tcp => tcp_device(&config, &mut device, &mut result, started).await,
                Transport::Udp => udp_device(&config, &mut device, &mut result, started).await,
            }
            result
        });
    }
    let mut report = SimReport {
        protocol: config.protocol.to_string(),
        transport: config.transport.as_str().into(),
        devices: config.devices,
        ..SimReport::default()
    };
    let mut latencies = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let r = r.map_err(std::io::Error::other)?;
        report.add(&r);
        latencies.extend_from_slice(&r.latencies_us);
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.frames_per_s = report.frames_sent as f64 / report.elapsed_s.max(1e-9);
    report.logins_per_s = report.logged_in as f64 / report.login_phase_s.max(1e-9);
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    report.ack_latency_ms =
        Latency { p50: pick(0.5), p99: pick(0.99), max: latencies.last().copied().unwrap_or(0) as f64 / 1000.0 };
    Ok(report)
}

/// Reads the expected replies in order, exactly; false when the stream is out of step.
/// Commands from the gateway may come before or between them (a command is written after
/// the acks of a read, or whenever it arrives while the device is quiet): each is answered
/// at once, as firmware does. `inbox` keeps what was read and not used yet (the start of a
/// command split over reads) for the next call.
async fn read_replies(
    stream: &mut TcpStream,
    device: &mut Device,
    x: &Exchange,
    timeout: Duration,
    r: &mut DeviceResult,
    sent_at: Instant,
    inbox: &mut Vec<u8>,
) -> bool {
    let mut expected = x.expect.iter().peekable();
    loop {
        // Use what is there: the whole commands at the front, then the reply expected next.
        loop {
            let front = match answer_commands(stream, device, inbox, r).await {
                Ok(front) => front,
                Err(Unanswered::Wrong) => return false,
                Err(Unanswered::NotWritten) => {
                    r.missing += expected.len() as u64;
                    return false;
                }
            };
            match front {
                FromGateway::Command(_) | FromGateway::PartialCommand => break,
                FromGateway::Other => {
                    let Some(want) = expected.peek() else { break };
                    let want = device.expected_now(want);
                    if inbox.len() < want.len() {
                        break;
                    }
                    if inbox[..want.len()] != want[..] {
                        r.wrong += 1;
                        return false;
                    }
                    inbox.drain(..want.len());
                    expected.next();
                    r.ok += 1;
                    r.latencies_us.push(sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
        }
        if expected.peek().is_none() {
            // Whatever else is there (the start of a command) waits for the next exchange.
            return true;
        }
        // Room for a batch's acks in one read (a `Vec` grows by 64 bytes a read otherwise).
        inbox.reserve(expected.clone().map(|w| w.len()).sum::<usize>().max(256));
        match tokio::time::timeout(timeout, stream.read_buf(inbox)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_)) => {
                r.missing += expected.len() as u64;
                r.closed += 1;
                return false;
            }
            Ok(Err(e)) => {
                r.missing += expected.len() as u64;
                if matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) {
                    r.closed += 1;
                }
                return false;
            }
            Err(_) => {
                r.missing += expected.len() as u64;
                return false;
            }
        }
    }
}

/// Why a command at the front of the input was not answered.
enum Unanswered {
    /// It could not be read as the command it looked like (counted as a wrong reply).
    Wrong,
    /// The answer could not be written: the connection is gone.
    NotWritten,
}

/// Answers the whole commands at the front of `inbox`, taking them out, as firmware
/// answers: at once. Returns what the front holds then: the start of a command, or no
/// command.
async fn answer_commands(
    stream: &mut TcpStream,
    device: &mut Device,
    inbox: &mut Vec<u8>,
    r: &mut DeviceResult,
) -> Result<FromGateway, Unanswered> {
    loop {
        let n = match device.command_at(inbox) {
            FromGateway::Command(n) => n,
            front => return Ok(front),
        };
        let command: Vec<u8> = inbox.drain(..n).collect();
        let Some(answer) = device.answer(&command, SystemTime::now()) else {
            r.wrong += 1;
            return Err(Unanswered::Wrong);
        };
        stream.write_all(&answer).await.map_err(|_| Unanswered::NotWritten)?;
        r.commands_answered += 1;
        r.records += 1;
    }
}

/// Waits until `deadline` as a device does between reports: reading, and answering the
/// commands that come meanwhile. Anything else read stays in `inbox` for the next exchange
/// to judge; a connection that ends (or a command that cannot be read) is left for it to
/// find too, so a quiet device counts a lost connection as it always has.
async fn idle_until(
    stream: &mut TcpStream,
    device: &mut Device,
    inbox: &mut Vec<u8>,
    r: &mut DeviceResult,
    deadline: tokio::time::Instant,
) {
    loop {
        inbox.reserve(256);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            // Cancel-safe: when the sleep wins, nothing was read.
            read = stream.read_buf(inbox) => {
                let answered = match read {
                    Ok(n) if n > 0 => answer_commands(stream, device, inbox, r).await.is_ok(),
                    _ => false,
                };
                if !answered {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
        }
    }
}

async fn connect(config: &SimConfig) -> std::io::Result<TcpStream> {
    let Some(source) = config.source else { return TcpStream::connect(config.target).await };
    let socket = if config.target.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(config.target).await
}

async fn tcp_device(config: &SimConfig, device: &mut Device, r: &mut DeviceResult, started: Instant) {
    let Ok(Ok(mut stream)) = tokio::time::timeout(config.ack_timeout, connect(config)).await else {
        return;
    };
    r.connected = true;
    let _ = stream.set_nodelay(true);
    let mut inbox = Vec::new();
    for x in device.login() {
        r.sent(&x);
        let at = Instant::now();
        if stream.write_all(&x.bytes).await.is_err()
            || !read_replies(&mut stream, device, &x, config.ack_timeout, r, at, &mut inbox).await
        {
            return;
        }
        r.records += x.records;
    }
    r.logged_in_after = Some(started.elapsed());
    r.login_records = r.records;
    idle_until(&mut stream, device, &mut inbox, r, (started + config.hold).into()).await;
    let end = Instant::now() + config.duration;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < end {
        let x = device.report(config.batch, SystemTime::now());
        r.sent(&x);
        r.records += x.records;
        let at = Instant::now();
        if stream.write_all(&x.bytes).await.is_err()
            || !read_replies(&mut stream, device, &x, config.ack_timeout, r, at, &mut inbox).await
        {
            return;
        }
        next += config.interval;
        idle_until(&mut stream, device, &mut inbox, r, next).await;
    }
    // Nothing more must come but commands, which the device, done, leaves unanswered: an
    // ack for a damaged frame would show up here.
    let _ = stream.shutdown().await;
    if let Ok(Ok(_)) = tokio::time::timeout(config.ack_timeout, stream.read_to_end(&mut inbox)).await {
        while let FromGateway::Command(n) = device.command_at(&inbox) {
            inbox.drain(..n);
            r.commands_unanswered += 1;
        }
        if !inbox.is_empty() {
            r.wrong += 1;
        }
    }
}

async fn udp_device(config: &SimConfig, device: &mut Device, r: &mut DeviceResult, started: Instant) {
    let local: SocketAddr = match config.source {
        Some(ip) => SocketAddr::new(ip, 0),
        None if config.target.is_ipv4() => ([0, 0, 0, 0], 0).into(),
        None => "[::]:0".parse().expect("an address"),
    };
    let Ok(socket) = UdpSocket::bind(local).await else { return };
    if socket.connect(config.target).await.is_err() {
        return;
    }
    r.connected = true;
    let mut buf = vec![0u8; 2048];
    for x in device.login() {
        r.sent(&x);
        if !udp_exchange(&socket, device, &x, config.ack_timeout, r, &mut buf).await {
            return;
        }
        r.records += x.records;
    }
    r.logged_in_after = Some(started.elapsed());
    r.login_records = r.records;
    udp_idle_until(&socket, device, r, &mut buf, (started + config.hold).into()).await;
    let end = Instant::now() + config.duration;
    let mut next = tokio::time::Instant::now();
    while Instant::now() < end {
        // One frame per datagram; a batch is several datagrams sent back to back.
        let xs: Vec<Exchange> = (0..config.batch.max(1)).map(|_| device.report(1, SystemTime::now())).collect();
        for x in xs {
            r.sent(&x);
            r.records += x.records;
            if !udp_exchange(&socket, device, &x, config.ack_timeout, r, &mut buf).await {
                return;
            }
        }
        next += config.interval;
        udp_idle_until(&socket, device, r, &mut buf, next).await;
    }
}

/// As `idle_until` for a UDP device: a command (which comes after the acks of the device's
/// last datagram) is answered at once; any other datagram now is one the gateway should
/// not have sent.
async fn udp_idle_until(
    socket: &UdpSocket,
    device: &mut Device,
    r: &mut DeviceResult,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            // Cancel-safe: when the sleep wins, no datagram was taken.
            received = socket.recv(buf) => match received {
                Ok(n) => answer_datagram(socket, device, r, &buf[..n]).await,
                Err(_) => {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            },
        }
    }
}

/// Answers a datagram that should be a command; counts it wrong if it is not one.
async fn answer_datagram(socket: &UdpSocket, device: &mut Device, r: &mut DeviceResult, datagram: &[u8]) {
    let answer = match device.command_at(datagram) {
        FromGateway::Command(n) if n == datagram.len() => device.answer(datagram, SystemTime::now()),
        _ => None,
    };
    match answer {
        Some(answer) if socket.send(&answer).await.is_ok() => {
            r.commands_answered += 1;
            r.records += 1;
        }
        _ => r.wrong += 1,
    }
}

async fn udp_exchange(
    socket: &UdpSocket,
    device: &mut Device,
    x: &Exchange,
    timeout: Duration,
    r: &mut DeviceResult,
    buf: &mut [u8],
) -> bool {
    let at = Instant::now();
    if socket.send(&x.bytes).await.is_err() {
        r.missing += x.expect.len() as u64;
        return false;
    }
    let mut expected = x.expect.iter();
    let mut want = expected.next();
    while let Some(w) = want {
        match tokio::time::timeout(timeout, socket.recv(buf)).await {
            Ok(Ok(n)) if buf[..n] == device.expected_now(w)[..] => {
                r.ok += 1;
                r.latencies_us.push(at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                want = expected.next();
            }
            // A command (sent after the acks of an earlier datagram): answered, and the
            // reply is still awaited.
            Ok(Ok(n)) if device.command_at(&buf[..n]) == FromGateway::Command(n) => {
                answer_datagram(socket, device, r, &buf[..n]).await;
            }
            Ok(Ok(_)) => {
                r.wrong += 1;
                want = expected.next();
            }
            _ => {
                r.missing += 1;
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{stream_decoder, StreamOptions};
    use trackgate_codecs::StreamEvent;

    /// The sim's frames, fed straight to the codec, give exactly the replies the sim expects
    /// and one record per frame; damaged frames are rejected and give nothing.
    #[test]
    fn simulated_devices_agree_with_the_codecs() {
        for protocol in Protocol::ALL {
            for transport in [Transport::Tcp, Transport::Udp] {
                if protocol == Protocol::Gt06 && transport == Transport::Udp {
                    continue;
                }
                let mut device = Device::new(protocol, transport, 42, 7, 0.3);
                let options = StreamOptions { transport, ..StreamOptions::default() };
                let mut decoder = stream_decoder(protocol, &options);
                let (mut expected, mut replies, mut records, mut wanted_records, mut damaged) =
                    (Vec::new(), Vec::new(), 0, 0, 0);
                // TCP is a stream: a damaged frame's last bytes may be held until more come
                // (they could start the next frame), so what is not used yet goes before the
                // next write. A datagram is whole: all of it is used.
                let mut pending = Vec::new();
                let mut feed = |x: Exchange, decoder: &mut Box<dyn trackgate_codecs::RecordDecoder + Send>| {
                    let mut events = Vec::new();
                    pending.extend_from_slice(&x.bytes);
                    let used = decoder.decode(&pending, transport == Transport::Udp, &mut events);
                    pending.drain(..used);
                    if transport == Transport::Udp {
                        assert!(pending.is_empty(), "{protocol}: a datagram is used whole");
                    }
                    for e in events {
                        match e {
                            StreamEvent::Record(_) => records += 1,
                            StreamEvent::Reply(b) => replies.push(b),
                            StreamEvent::Rejected { .. } => {}
                        }
                    }
                    expected.extend(x.expect);
                    wanted_records += x.records;
                    damaged += x.damaged;
                };
                for x in device.login() {
                    feed(x, &mut decoder);
                }
                // A fixed clock: the frames, and so the test, are the same on every run.
                let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
                for i in 0..60 {
                    let batch = if transport == Transport::Udp { 1 } else { 3 };
                    let now = start + std::time::Duration::from_secs(30 * i);
                    feed(device.report(batch, now), &mut decoder);
                }
                assert!(damaged > 5, "{protocol} {transport:?}: damage happens");
                assert_eq!(replies, expected, "{protocol} {transport:?}");
                assert_eq!(records, wanted_records, "{protocol} {transport:?}");
            }
        }
    }

    /// A command the codec frames is found whole in the device's input however it is split,
    /// the device's answer is the one record its `AnswerMatch` names (and gets no reply),
    /// and the JT808 acks after it come with the serials the device now expects.
    #[test]
    fn simulated_devices_answer_the_codecs_commands() {
        use trackgate_codecs::jt808::Command as Jt808Command;
        use trackgate_codecs::Downlink;
        let (tcp, udp) = (Transport::Tcp, Transport::Udp);
        let cases = [
            (Protocol::Gt06, tcp, Downlink::Text("WHERE#".into())),
            (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::QueryLocation)),
            (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::QueryParameters)),
            (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::VehicleControl { flags: 1 })),
            (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::Tracking { interval_s: 5, validity_s: 60 })),
            (Protocol::Jt808, udp, Downlink::Jt808(Jt808Command::QueryLocation)),
            (Protocol::Teltonika, tcp, Downlink::Text("getinfo".into())),
            (Protocol::Teltonika, udp, Downlink::Text("getinfo".into())),
        ];
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for (protocol, transport, command) in cases {
            let mut device = Device::new(protocol, transport, 42, 7, 0.0);
            let mut decoder = stream_decoder(protocol, &StreamOptions { transport, ..StreamOptions::default() });
            let whole = transport == Transport::Udp;
            let mut events = Vec::new();
            for x in device.login() {
                decoder.decode(&x.bytes, whole, &mut events);
            }
            if protocol == Protocol::Teltonika && transport == Transport::Udp {
                // No login over UDP: the device is named by its first datagram.
                decoder.decode(&device.report(1, start).bytes, whole, &mut events);
            }
            let framed = decoder.command(&command).unwrap();
            let n = framed.bytes.len();
            for cut in 1..n {
                assert_eq!(
                    device.command_at(&framed.bytes[..cut]),
                    FromGateway::PartialCommand,
                    "{protocol}: {cut} of {n}"
                );
            }
            let mut input = framed.bytes.clone();
            let next = device.report(1, start);
            input.extend_from_slice(&next.expect[0]);
            assert_eq!(device.command_at(&input), FromGateway::Command(n), "{protocol}");
            assert_eq!(device.command_at(&next.expect[0]), FromGateway::Other, "{protocol}: an ack is no command");
            let answer = device.answer(&framed.bytes, start).unwrap();
            events.clear();
            decoder.decode(&answer, whole, &mut events);
            let records: Vec<_> = events
                .iter()
                .map(|e| match e {
                    StreamEvent::Record(r) => r,
                    other => panic!("{protocol} {transport:?}: the answer gets no {other:?}"),
                })
                .collect();
            assert_eq!(records.len(), 1, "{protocol}: {command:?}");
            if let Some(m) = framed.answer {
                assert_eq!(records[0].attributes.get(m.attribute), Some(&m.value.into()), "{protocol}: {command:?}");
            }
            assert!(records[0].attributes.get("command").is_some() || protocol == Protocol::Teltonika);
            // The report built before the command: its ack as the decoder sends it now.
            events.clear();
            decoder.decode(&next.bytes, whole, &mut events);
            let Some(StreamEvent::Reply(ack)) = events.iter().find(|e| matches!(e, StreamEvent::Reply(_))) else {
                panic!("{protocol}: the report is acked")
            };
            assert_eq!(*ack, *device.expected_now(&next.expect[0]), "{protocol}: {command:?}");
        }
    }

    /// A position a hair below a whole degree is written as the next degree, never as 60
    /// minutes, and every simulated NMEA sentence near one decodes (a CI run once lost an
    /// undamaged sentence to "4560.0000").
    #[test]
    fn nmea_positions_near_a_whole_degree_are_valid() {
        assert_eq!(nmea_degrees_minutes(45.999_999_9, 2), "4600.0000");
        assert_eq!(nmea_degrees_minutes(45.999_99, 2), "4559.9994");
        assert_eq!(nmea_degrees_minutes(0.0, 2), "0000.0000");
        assert_eq!(nmea_degrees_minutes(7.5, 3), "00730.0000");
        assert_eq!(nmea_degrees_minutes(179.0, 3), "17900.0000");
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let mut decoder = stream_decoder(Protocol::Nmea, &StreamOptions::default());
        let mut device = Device::new(Protocol::Nmea, Transport::Tcp, 42, 7, 0.0);
        for (i, whole) in [-89.0, -45.0, -1.0, 0.0, 1.0, 12.0, 45.0, 89.0].into_iter().enumerate() {
            for offset in [-1e-7, -1e-9, 0.0, 1e-9] {
                let (lat, lon) = (whole + offset, (whole * 2.0) + offset);
                device.lat = lat;
                device.lon = lon;
                let mut bytes = Vec::new();
                device.frame(false, start + std::time::Duration::from_secs(i as u64), &mut bytes);
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

    #[test]
    fn utc_fields_of_known_times() {
        assert_eq!(utc_fields(1_700_000_000_000), [23, 11, 14, 22, 13, 20]);
        assert_eq!(utc_fields(1_709_164_800_000), [24, 2, 29, 0, 0, 0]);
    }
}
