//! The per-protocol facts the gateway needs (transports, default port, what identifies a
//! device, who takes commands over UDP) in one table, and which stream decoder serves which
//! protocol with the options the command line and listeners pass.
//!
//! A leaf: it depends on the codecs only, so every other module may ask it.

use std::sync::Arc;

use trackgate_codecs::gt06::{CrcPolicy, Gt06Decoder, Gt06Options};
use trackgate_codecs::jt808::{AuthCodes, Jt808Decoder, Jt808Options};
use trackgate_codecs::nmea::NmeaDecoder;
use trackgate_codecs::teltonika::{TeltonikaDecoder, TeltonikaOptions};
use trackgate_codecs::{AllowList, Protocol, RecordDecoder};
// The transport is the codecs' (their decoders' options name it); the gateway's listeners,
// metrics and peers use the same type.
pub use trackgate_codecs::Transport;

/// What the gateway knows of one protocol.
#[derive(Debug)]
pub struct ProtocolFacts {
    /// The port devices in the field are already configured for.
    pub default_port: u16,
    /// The transports the protocol is served on.
    pub transports: &'static [Transport],
    /// Whether devices heard over UDP can be sent commands (after their next datagram).
    pub udp_commands: bool,
    /// What the device id in its records is.
    pub device_id: &'static str,
}

const BOTH: &[Transport] = &[Transport::Tcp, Transport::Udp];

/// The table. GT06 is served on TCP only: its devices have no UDP mode. JT808 and Teltonika
/// take commands over UDP "the same way as over TCP"; NMEA has no commands at all.
pub fn facts(protocol: Protocol) -> &'static ProtocolFacts {
    const GT06: ProtocolFacts =
        ProtocolFacts { default_port: 5023, transports: &[Transport::Tcp], udp_commands: false, device_id: "IMEI" };
    const JT808: ProtocolFacts =
        ProtocolFacts { default_port: 5015, transports: BOTH, udp_commands: true, device_id: "terminal phone number" };
    const TELTONIKA: ProtocolFacts =
        ProtocolFacts { default_port: 5027, transports: BOTH, udp_commands: true, device_id: "IMEI" };
    const NMEA: ProtocolFacts = ProtocolFacts {
        default_port: 5005,
        transports: BOTH,
        udp_commands: false,
        device_id: "the id the device writes on a line of its own or before a sentence (`IMEI:…`, `359…,$GPRMC`)",
    };
    match protocol {
        Protocol::Gt06 => &GT06,
        Protocol::Jt808 => &JT808,
        Protocol::Teltonika => &TELTONIKA,
        Protocol::Nmea => &NMEA,
    }
}

/// The port devices in the field are already configured for.
pub fn default_port(protocol: Protocol) -> u16 {
    facts(protocol).default_port
}

/// The transports a protocol is served on.
pub fn transports(protocol: Protocol) -> &'static [Transport] {
    facts(protocol).transports
}

/// Whether `protocol` is served on `transport`.
pub fn serves(protocol: Protocol, transport: Transport) -> bool {
    transports(protocol).contains(&transport)
}

/// What one listener serves: one protocol, or every protocol on one port (`auto`), each
/// connection's and datagram's protocol told from its first bytes
/// ([`trackgate_codecs::detect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listens {
    One(Protocol),
    Auto,
}

impl Listens {
    pub fn as_str(self) -> &'static str {
        match self {
            Listens::One(p) => p.as_str(),
            Listens::Auto => "auto",
        }
    }

    /// The protocols it serves.
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            Listens::One(p) => {
                let all: &'static [Protocol; 4] = &Protocol::ALL;
                let i = all.iter().position(|&q| q == p).unwrap_or(0);
                std::slice::from_ref(&all[i])
            }
            Listens::Auto => &Protocol::ALL,
        }
    }

    /// Whether it serves `protocol`.
    pub fn serves(self, protocol: Protocol) -> bool {
        self.protocols().contains(&protocol)
    }

    /// The transports it binds: every transport one of its protocols is served on.
    pub fn transports(self) -> &'static [Transport] {
        match self {
            Listens::One(p) => transports(p),
            Listens::Auto => BOTH,
        }
    }

    /// Whether it serves `protocol` on `transport`.
    pub fn serves_on(self, protocol: Protocol, transport: Transport) -> bool {
        self.serves(protocol) && serves(protocol, transport)
    }

    /// Its port when the configuration names none; `auto` has no port of its own.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Listens::One(p) => Some(default_port(p)),
            Listens::Auto => None,
        }
    }
}

impl From<Protocol> for Listens {
    fn from(p: Protocol) -> Self {
        Listens::One(p)
    }
}

impl std::fmt::Display for Listens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Listens {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(Listens::Auto);
        }
        s.parse()
            .map(Listens::One)
            .map_err(|_| format!("unknown protocol {s:?} (expected gt06, jt808, teltonika, nmea or auto)"))
    }
}

/// Options that change how a stream is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamOptions {
    pub transport: Transport,
    /// JT808 device-local time offset from UTC, in minutes (GMT+8 unless configured).
    pub jt808_tz_minutes: i32,
    /// GT06 frames with a wrong CRC: rejected (strict, the default) or decoded and marked.
    pub gt06_crc: CrcPolicy,
    /// Teltonika and JT808: only these devices are accepted. `None` accepts every device.
    pub allow: Option<AllowList>,
    /// JT808: authentication enforced with these codes; `None` takes every terminal's
    /// messages, as before (`trackgate decode`, and `jt808_accept_unauthenticated`).
    pub jt808_auth: Option<Jt808Auth>,
}

/// A listener's JT808 auth codes (the gateway's `registry::auth::AuthStore`), shared by its
/// sockets; equal when they are the same store.
#[derive(Clone)]
pub struct Jt808Auth(pub Arc<dyn AuthCodes>);

impl std::fmt::Debug for Jt808Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jt808Auth(..)")
    }
}

impl PartialEq for Jt808Auth {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Jt808Auth {}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            transport: Transport::Tcp,
            jt808_tz_minutes: 8 * 60,
            gt06_crc: CrcPolicy::Strict,
            allow: None,
            jt808_auth: None,
        }
    }
}

/// Parses a UTC offset written `+08:00`, `-03:30`, `+0800` or `Z`.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let bad = || format!("bad UTC offset {s:?} (expected e.g. +08:00, -03:30 or Z)");
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|&c| c != ':').collect();
    if digits.len() != 4
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() == 5 && rest.as_bytes()[2] != b':')
    {
        return Err(bad());
    }
    let (h, m): (i32, i32) = (digits[..2].parse().map_err(|_| bad())?, digits[2..].parse().map_err(|_| bad())?);
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// A fresh decoder for one connection (TCP) or one peer (UDP).
pub fn stream_decoder(protocol: Protocol, options: &StreamOptions) -> Box<dyn RecordDecoder + Send> {
    match protocol {
        Protocol::Nmea => Box::new(NmeaDecoder::default()),
        Protocol::Gt06 => Box::new(Gt06Decoder::new(Gt06Options { crc: options.gt06_crc, ..Gt06Options::default() })),
        Protocol::Jt808 => Box::new(Jt808Decoder::new(Jt808Options {
            utc_offset_minutes: options.jt808_tz_minutes,
            transport: options.transport,
            allow: options.allow.clone(),
            auth: options.jt808_auth.as_ref().map(|a| a.0.clone()),
            ..Jt808Options::default()
        })),
        Protocol::Teltonika => Box::new(TeltonikaDecoder::new(TeltonikaOptions {
            transport: options.transport,
            allow: options.allow.clone(),
            ..TeltonikaOptions::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_offsets() {
        assert_eq!(parse_utc_offset("+08:00"), Ok(480));
        assert_eq!(parse_utc_offset("-03:30"), Ok(-210));
        assert_eq!(parse_utc_offset("+0545"), Ok(345));
        assert_eq!(parse_utc_offset("Z"), Ok(0));
        for bad in ["08:00", "+8:00", "+08:0", "+15:00", "+08:60", "+08-00", ""] {
            assert!(parse_utc_offset(bad).is_err(), "{bad}");
        }
    }
}
