//! A simulated JT808 terminal (2013): register, authenticate with the code it was given,
//! 0x0200 locations and 0x0002 heartbeats, and the firmware's answers to commands.

use std::borrow::Cow;
use std::time::SystemTime;

use trackgate_codecs::jt808::message::{Location, Register};
use trackgate_codecs::jt808::{self, Edition, Terminal};
use trackgate_codecs::record::Timestamp;

use super::device::{Accepted, Common, Exchange, Firmware, Fix, FromGateway};

#[derive(Debug)]
pub(super) struct Jt808Firmware {
    terminal: Terminal,
    /// The platform's serial for its next reply to us, counting replies only.
    platform_serial: u16,
    /// Commands received, each of which took one of the platform's serials, so the replies
    /// built with `platform_serial` come this much later.
    serial_shift: u16,
    /// The auth code the registration's 0x8100 brought, until the terminal authenticates.
    code: Option<String>,
    /// The authentication is sent (once).
    authenticated: bool,
}

impl Jt808Firmware {
    pub(super) fn new(id: &str) -> Self {
        let terminal = Terminal::for_device_id(id, Edition::V2013).expect("an 11-digit terminal number");
        Jt808Firmware { terminal, platform_serial: 1, serial_shift: 0, code: None, authenticated: false }
    }

    /// The 0x8001 the platform owes for our message `id` with `serial`.
    fn platform_response(&mut self, serial: u16, id: u16) -> Vec<u8> {
        let ps = self.platform_serial;
        self.platform_serial = ps.wrapping_add(1);
        jt808::platform_response(&self.terminal, ps, serial, id, 0)
    }
}

impl Firmware for Jt808Firmware {
    fn login(&mut self, dev: &mut Common) -> Vec<Exchange> {
        let serial = dev.next_serial();
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
        let register = jt808::encode(jt808::id::REGISTER, &self.terminal, serial, &body).expect("fits");
        let ps = self.platform_serial;
        self.platform_serial += 1;
        // Any code will do: `accept` takes the one the gateway hands out.
        let registered =
            jt808::register_response(&self.terminal, ps, serial, 0, &dev.id).expect("a register response fits");
        vec![Exchange::one(register, Some(registered))]
    }

    /// The authentication, with the code the registration brought (the terminal's number
    /// where none came: a gateway that does not enforce authentication takes any).
    fn login_more(&mut self, dev: &mut Common) -> Vec<Exchange> {
        if self.authenticated {
            return Vec::new();
        }
        self.authenticated = true;
        let code = self.code.take().unwrap_or_else(|| dev.id.clone());
        let serial = dev.next_serial();
        let auth = jt808::encode(jt808::id::AUTHENTICATE, &self.terminal, serial, code.as_bytes()).expect("fits");
        let authenticated = self.platform_response(serial, jt808::id::AUTHENTICATE);
        vec![Exchange::one(auth, Some(authenticated))]
    }

    /// A 0x8100 is taken with whatever code it carries (random, at a gateway that enforces
    /// authentication), and the code is kept for `login_more`; other replies must match.
    fn accept(&mut self, want: &[u8], got: &[u8]) -> Accepted {
        let Some(Ok(wanted)) = between_flags(want).map(jt808::Frame::parse) else { return Accepted::Wrong };
        if wanted.header.message_id != jt808::id::REGISTER_RESPONSE {
            let want = self.expected_now(want);
            return match got.get(..want.len()) {
                None => Accepted::Need,
                Some(head) if head == &want[..] => Accepted::Took(want.len()),
                Some(_) => Accepted::Wrong,
            };
        }
        let Some(end) = got.iter().skip(1).position(|&b| b == 0x7E).map(|i| i + 2) else { return Accepted::Need };
        let Some(Ok(frame)) = between_flags(&got[..end]).map(jt808::Frame::parse) else {
            eprintln!("DEBUG unparsable: got {:02x?}", &got[..end]);
            return Accepted::Wrong;
        };
        let (body, want_body) = (&frame.body[..], &wanted.body[..]);
        if frame.header.message_id != jt808::id::REGISTER_RESPONSE || body.len() < 3 || body[..3] != want_body[..3] {
            eprintln!("DEBUG wrong 8100: got {:02x?} want {:02x?}", &got[..end], want);
            return Accepted::Wrong;
        }
        self.code = Some(String::from_utf8_lossy(&body[3..]).into_owned());
        Accepted::Took(end)
    }

    fn frame(&mut self, dev: &mut Common, fix: Fix, out: &mut Vec<u8>) -> (Option<Vec<u8>>, u64) {
        let serial = dev.next_serial();
        if fix.heartbeat {
            jt808::encode_frame(out, jt808::id::HEARTBEAT, &self.terminal, serial, None, &[]).expect("fits");
            return (Some(self.platform_response(serial, jt808::id::HEARTBEAT)), 1);
        }
        let mut body = Vec::new();
        location(dev, fix.unix_ms, fix.speed_kmh, fix.course, &mut body);
        jt808::encode_frame(out, jt808::id::LOCATION, &self.terminal, serial, None, &body).expect("fits");
        (Some(self.platform_response(serial, jt808::id::LOCATION)), 1)
    }

    /// Between the header and the check code (the caller never makes a flag or an escape).
    fn damage_at(&self, dev: &mut Common, len: usize) -> usize {
        2 + dev.rng.below((len - 4) as u64) as usize
    }

    /// A damaged frame gets no reply, so the platform serial does not move.
    fn damaged(&mut self) {
        self.platform_serial = self.platform_serial.wrapping_sub(1);
    }

    /// Any platform message of the command range (0x8103 and up) but the media upload's
    /// answer.
    fn command_at(&self, buf: &[u8]) -> FromGateway {
        let [0x7E, rest @ ..] = buf else { return FromGateway::Other };
        let Some(end) = rest.iter().position(|&b| b == 0x7E) else { return FromGateway::PartialCommand };
        match jt808::Frame::parse(&rest[..end]).map(|f| f.header.message_id) {
            Ok(id) if id >= jt808::id::SET_PARAMETERS && id != jt808::id::MEDIA_UPLOAD_RESPONSE => {
                FromGateway::Command(end + 2)
            }
            _ => FromGateway::Other,
        }
    }

    /// Replies carry the platform's serial, and every command the gateway sent took one.
    fn expected_now<'w>(&self, want: &'w [u8]) -> Cow<'w, [u8]> {
        if self.serial_shift == 0 {
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

    /// 0x0201 / 0x0500 with a location for 0x8201 / 0x8500, 0x0104 (no parameters) for the
    /// parameter queries, and the general response 0x0001 for the others.
    fn answer(&mut self, dev: &mut Common, command: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        let header = jt808::Frame::parse(between_flags(command)?).ok()?.header;
        self.serial_shift = self.serial_shift.wrapping_add(1);
        let serial = dev.next_serial();
        let mut body = header.serial.to_be_bytes().to_vec();
        let id = match header.message_id {
            jt808::id::QUERY_LOCATION | jt808::id::VEHICLE_CONTROL => {
                location(dev, Timestamp::from_system_time(now).unix_ms(), 0, 0, &mut body);
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
        let mut out = Vec::new();
        jt808::encode_frame(&mut out, id, &self.terminal, serial, None, &body)?;
        Some(out)
    }
}

/// A location block (0x0200's body) at the device's position.
fn location(dev: &Common, unix_ms: i64, speed: u64, course: u64, out: &mut Vec<u8>) {
    use jt808::message::status;
    let mut flags = status::POSITIONED | status::ACC;
    if dev.lat < 0.0 {
        flags |= status::SOUTH;
    }
    if dev.lon < 0.0 {
        flags |= status::WEST;
    }
    let mut items = Vec::new();
    jt808::message::write_item(&mut items, 0x01, &(dev.reports as u32 * 100).to_be_bytes());
    Location {
        alarm: 0,
        status: flags,
        latitude_raw: (dev.lat.abs() * 1e6) as u32,
        longitude_raw: (dev.lon.abs() * 1e6) as u32,
        altitude_raw: 42,
        speed_raw: (speed * 10) as u16,
        course: course as u16,
        // Device-local time at GMT+8, the standard's default.
        time: jt808::bcd_time(Timestamp::from_unix_ms(unix_ms + 8 * 3_600_000, false)).unwrap_or_default(),
        items: &items,
    }
    .write(out);
}

/// A JT808 frame without its two flags, which `Frame::parse` takes.
fn between_flags(frame: &[u8]) -> Option<&[u8]> {
    frame.strip_prefix(&[0x7E])?.strip_suffix(&[0x7E])
}
