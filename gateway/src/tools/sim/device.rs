//! One simulated device: what every protocol's device has (an id, a serial counter, a
//! position that drifts, a seeded generator), and the protocol's own behaviour behind the
//! [`Firmware`] trait, one file per protocol. Plain code: frames out, and the exact replies
//! they call for; the driver in `mod.rs` does the I/O.

use std::borrow::Cow;
use std::time::SystemTime;

use trackgate_codecs::Protocol;

use super::{gt06, jt808, nmea, teltonika};
use crate::protocol::Transport;

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

impl Exchange {
    /// One frame that calls for `expect` (nothing, for a protocol without replies) and gives
    /// one record.
    pub(super) fn one(bytes: Vec<u8>, expect: Option<Vec<u8>>) -> Self {
        Exchange { bytes, expect: expect.into_iter().collect(), frames: 1, damaged: 0, records: 1 }
    }
}

/// How bytes from the gateway compare with an expected reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Accepted {
    /// The reply, this many bytes of it.
    Took(usize),
    /// Not enough bytes yet to tell.
    Need,
    /// Another reply.
    Wrong,
}

/// What the bytes from the gateway start with, as far as commands go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FromGateway {
    /// A whole command frame of this many bytes.
    Command(usize),
    /// The start of one: more bytes are needed.
    PartialCommand,
    /// No command (a reply, or nothing).
    Other,
}

impl FromGateway {
    /// `Command(total)` when `have` bytes hold it, else `PartialCommand`.
    pub(super) fn need(have: usize, total: usize) -> Self {
        if have >= total {
            FromGateway::Command(total)
        } else {
            FromGateway::PartialCommand
        }
    }
}

/// A small deterministic generator (xorshift64*); the sim needs repeatable, not secure.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

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
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What every simulated device has, whatever its protocol.
#[derive(Debug)]
pub(super) struct Common {
    pub(super) transport: Transport,
    pub(super) id: String,
    pub(super) rng: Rng,
    serial: u16,
    /// Reports sent so far (the odometer and the heartbeat rhythm follow it).
    pub(super) reports: u64,
    pub(super) lat: f64,
    pub(super) lon: f64,
}

impl Common {
    /// A device at 0°, 0° for the firmware's own tests.
    #[cfg(test)]
    pub(super) fn for_tests() -> Self {
        Common {
            transport: Transport::Tcp,
            id: "350000000000042".into(),
            rng: Rng::new(7),
            serial: 0,
            reports: 0,
            lat: 0.0,
            lon: 0.0,
        }
    }

    pub(super) fn next_serial(&mut self) -> u16 {
        self.serial = self.serial.wrapping_add(1);
        self.serial
    }
}

/// One report's frame: what the device's protocol makes of its position now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fix {
    pub(super) unix_ms: i64,
    pub(super) speed_kmh: u64,
    pub(super) course: u64,
    /// Every tenth report, where the protocol has heartbeats.
    pub(super) heartbeat: bool,
}

/// A protocol's device behaviour.
pub(super) trait Firmware: std::fmt::Debug + Send {
    /// The login, handshake or registration, one step at a time (each step waits for its
    /// replies before the next).
    fn login(&mut self, dev: &mut Common) -> Vec<Exchange>;
    /// Appends one report's frame; returns the reply it calls for and its records.
    fn frame(&mut self, dev: &mut Common, fix: Fix, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64);
    /// Where in a frame of `len` bytes one byte may be damaged so that its checksum fails
    /// and no framing byte is touched.
    fn damage_at(&self, dev: &mut Common, len: usize) -> usize;
    /// The frame was damaged after all: it will get no reply.
    fn damaged(&mut self) {}
    /// How long the command frame at the start of `buf` (from the gateway) is, if one starts
    /// there.
    fn command_at(&self, buf: &[u8]) -> FromGateway;
    /// The reply `want` as the gateway sends it now (commands may have moved its serial).
    fn expected_now<'w>(&self, want: &'w [u8]) -> Cow<'w, [u8]> {
        Cow::Borrowed(want)
    }
    /// Whether `got` starts with the reply `want` stands for: the length it takes, or what
    /// is missing. Exactly `want` unless the firmware learns something from the reply (a
    /// JT808 auth code).
    fn accept(&mut self, want: &[u8], got: &[u8]) -> Accepted {
        let want = self.expected_now(want);
        match got.get(..want.len()) {
            None => Accepted::Need,
            Some(head) if head == &want[..] => Accepted::Took(want.len()),
            Some(_) => Accepted::Wrong,
        }
    }
    /// The next login steps, once the earlier ones' replies are in (a JT808 terminal
    /// authenticates with the code its registration brought). None by default.
    fn login_more(&mut self, _dev: &mut Common) -> Vec<Exchange> {
        Vec::new()
    }
    /// The device's answer to a whole command frame, as its firmware answers.
    fn answer(&mut self, dev: &mut Common, command: &[u8], now: SystemTime) -> Option<Vec<u8>>;
}

/// One simulated device: its identity, position and counters, and its protocol's firmware.
#[derive(Debug)]
pub struct Device {
    common: Common,
    firmware: Box<dyn Firmware>,
    protocol: Protocol,
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
        let firmware: Box<dyn Firmware> = match protocol {
            Protocol::Gt06 => Box::new(gt06::Gt06Firmware),
            Protocol::Jt808 => Box::new(jt808::Jt808Firmware::new(&id)),
            Protocol::Teltonika => Box::new(teltonika::TeltonikaFirmware::default()),
            Protocol::Nmea => Box::new(nmea::NmeaFirmware),
        };
        let (lat, lon) = (-60.0 + rng.unit() * 120.0, -179.0 + rng.unit() * 358.0);
        let common = Common { transport, id, rng, serial: 0, reports: 0, lat, lon };
        Device { common, firmware, protocol, damage }
    }

    pub fn id(&self) -> &str {
        &self.common.id
    }

    /// What a device sends first: the login, handshake or registration, one step at a time.
    pub fn login(&mut self) -> Vec<Exchange> {
        self.firmware.login(&mut self.common)
    }

    /// One report: `batch` frames, every tenth a heartbeat where the protocol has one.
    pub fn report(&mut self, batch: usize, now: SystemTime) -> Exchange {
        let mut x = Exchange::default();
        for _ in 0..batch.max(1) {
            let c = &mut self.common;
            c.reports += 1;
            c.lat = (c.lat + (c.rng.unit() - 0.5) * 0.001).clamp(-89.0, 89.0);
            c.lon = (c.lon + (c.rng.unit() - 0.5) * 0.001).clamp(-179.0, 179.0);
            let damaged = self.damage > 0.0 && c.rng.unit() < self.damage;
            let heartbeat = c.reports.is_multiple_of(10);
            let unix_ms = trackgate_codecs::record::Timestamp::from_system_time(now).unix_ms();
            let fix = Fix { unix_ms, speed_kmh: c.rng.below(120), course: c.rng.below(360), heartbeat };
            let start = x.bytes.len();
            let (reply, records) = self.firmware.frame(c, fix, &mut x.bytes);
            if damaged {
                self.damage_frame(start, &mut x.bytes);
                x.damaged += 1;
                self.firmware.damaged();
            } else {
                x.expect.extend(reply);
                x.records += records;
            }
            x.frames += 1;
            if self.common.transport == Transport::Udp && batch > 1 {
                // One frame per datagram: the driver splits at these marks.
                break;
            }
        }
        x
    }

    pub(super) fn command_at(&self, buf: &[u8]) -> FromGateway {
        self.firmware.command_at(buf)
    }

    /// See [`Firmware::accept`].
    pub(super) fn accept(&mut self, want: &[u8], got: &[u8]) -> Accepted {
        self.firmware.accept(want, got)
    }

    /// What a device sends after its login's first steps, given their replies (empty when
    /// the login is over).
    pub fn login_more(&mut self) -> Vec<Exchange> {
        self.firmware.login_more(&mut self.common)
    }

    pub(super) fn answer(&mut self, command: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        self.firmware.answer(&mut self.common, command, now)
    }

    /// Damages the frame at `start..` so its checksum (or, for Teltonika UDP, which has
    /// none, its record count check) fails, without touching the framing bytes.
    fn damage_frame(&mut self, start: usize, bytes: &mut [u8]) {
        let frame = &mut bytes[start..];
        let i = self.firmware.damage_at(&mut self.common, frame.len());
        let jt808 = self.protocol == Protocol::Jt808;
        let mut b = frame[i] ^ 0x01;
        if jt808 && matches!(b, 0x7D | 0x7E) || frame[i] == 0x7D {
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
