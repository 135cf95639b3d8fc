//! The gateway's session for every protocol, driven as a server drives it: reads of any size,
//! ends of stream, datagrams, the clock jumping past idle timeouts and sub-package timeouts,
//! sessions finished and started again. No panic, every byte of a finished stream used,
//! nothing unbounded held, and the session's verdicts consistent with what it produced.
//!
//! Input: one configuration byte (protocol, transport, junk limit), then operations:
//! `0x00..=0xEF n` the next n+1 bytes arrive (one read, or one datagram over UDP);
//! `0xF0` the stream ends; `0xF1..=0xFD` the clock moves on (k minutes); `0xFE n` a command
//! to the device: the next n bytes as text, or a JT808 location query when n is 0 (never a
//! panic, whatever the session's state; bytes only where the protocol has the command);
//! `0xFF` the session is finished and a new one starts.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use trackgate::protocol::{StreamOptions, Transport};
use trackgate::session::{CloseReason, Output, Session, SessionSettings};
use trackgate_codecs::{jt808, Downlink, Protocol};

/// More than any protocol's frame limit plus one read: what a TCP session may hold.
const MAX_HELD: usize = 70_000;

struct Driver {
    protocol: Protocol,
    udp: bool,
    settings: SessionSettings,
    session: Session,
    buf: Vec<u8>,
    out: Output,
    now: Instant,
    wall: SystemTime,
    /// Records or replies in this session so far.
    spoke: bool,
}

impl Driver {
    fn restart(&mut self) {
        self.session = Session::new(self.protocol, &self.settings, self.now);
        self.buf.clear();
        self.spoke = false;
    }

    fn check(&mut self, step: trackgate::session::Step, at_end: bool) {
        assert!(step.used <= self.buf.len());
        self.buf.drain(..step.used);
        if at_end {
            assert!(self.buf.is_empty(), "{:?}: {} bytes left at the end of a stream", self.protocol, self.buf.len());
        }
        assert!(self.buf.len() <= MAX_HELD, "{:?} holds {} bytes", self.protocol, self.buf.len());
        for r in &self.out.records {
            assert_eq!(r.protocol, self.protocol);
            assert!(r.received_at.is_some());
        }
        self.spoke |= !self.out.records.is_empty() || !self.out.replies.is_empty();
        if let Some(claim) = &step.claim {
            // A claim is for the device the session now is, and gives up a different one.
            let claimed = self.session.claimed();
            assert!(claimed.is_some() && claimed == self.session.device_id());
            assert_ne!(claim.release.as_deref(), claimed);
        }
        if step.close == Some(CloseReason::Junk) {
            assert!(!self.spoke, "a session that produced something is not junk");
        }
        self.out.clear();
        if step.close.is_some() {
            self.session.finish(self.wall, &mut self.out);
            self.out.clear();
            self.restart();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut ops)) = data.split_first() else { return };
    let protocol = Protocol::ALL[usize::from(config & 3)];
    let udp = config & 4 != 0 && protocol != Protocol::Gt06;
    let transport = if udp { Transport::Udp } else { Transport::Tcp };
    let settings = SessionSettings {
        stream: StreamOptions { transport, ..StreamOptions::default() },
        idle_timeout: Duration::from_secs(600),
        junk_bytes: u64::from(config >> 3) * 64,
        ..SessionSettings::new(StreamOptions::default())
    };
    let now = Instant::now();
    let mut d = Driver {
        protocol,
        udp,
        session: Session::new(protocol, &settings, now),
        settings,
        buf: Vec::new(),
        out: Output::default(),
        now,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        spoke: false,
    };
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op {
            0x00..=0xEF => {
                let n = (usize::from(op) + 1).min(ops.len());
                let (chunk, rest) = ops.split_at(n);
                ops = rest;
                if d.session.expired(d.now) {
                    d.session.finish(d.wall, &mut d.out);
                    d.out.clear();
                    d.restart();
                }
                d.buf.extend_from_slice(chunk);
                // A datagram is complete in itself.
                let step = d.session.receive(&d.buf, d.udp, d.now, d.wall, &mut d.out);
                let udp = d.udp;
                d.check(step, udp);
                if udp {
                    d.buf.clear();
                }
            }
            0xF0 => {
                let step = d.session.receive(&d.buf, true, d.now, d.wall, &mut d.out);
                d.check(step, true);
                d.session.finish(d.wall, &mut d.out);
                d.out.clear();
                d.restart();
            }
            0xFE => {
                let Some((&n, rest)) = ops.split_first() else { break };
                let (text, rest) = rest.split_at(usize::from(n).min(rest.len()));
                ops = rest;
                let command = match n {
                    0 => Downlink::Jt808(jt808::Command::QueryLocation),
                    _ => Downlink::Text(String::from_utf8_lossy(text).into_owned()),
                };
                let before = d.out.commands.len();
                match d.session.command(&command, &mut d.out) {
                    Ok(answer) => {
                        assert_eq!(d.out.commands.len(), before + 1);
                        assert!(!d.out.commands[before].is_empty());
                        // Where the protocol refers to its commands, they are numbered.
                        assert_eq!(answer.is_some(), protocol != Protocol::Teltonika);
                        assert!(protocol != Protocol::Nmea, "NMEA has no commands");
                    }
                    Err(_) => assert_eq!(d.out.commands.len(), before, "a refused command frames nothing"),
                }
                // Whatever is framed goes out after the replies of the reads before it.
                assert_eq!(d.out.transmit().count(), d.out.replies.len() + d.out.commands.len());
                d.out.clear();
            }
            0xF1..=0xFD => {
                let minutes = u64::from(op - 0xF0);
                d.now += Duration::from_secs(60 * minutes);
                d.wall += Duration::from_secs(60 * minutes);
            }
            0xFF => {
                d.session.finish(d.wall, &mut d.out);
                d.out.clear();
                d.restart();
            }
        }
    }
});
