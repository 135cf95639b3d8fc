//! One device's session, without sockets: bytes in; records, replies, rejections and the
//! session's own verdicts out. The server's tasks only move bytes and wait; everything a
//! session decides (who the device is, whether the peer is speaking the protocol at all,
//! when it has been idle too long) is decided here, so it can be tested without a network.
//!
//! The protocol state proper (the Teltonika IMEI handshake, GT06 login, JT808
//! registration and authentication, serial counters, sub-package reassembly, commands
//! awaiting an answer) lives in the codec's stream decoder, which is itself a plain struct
//! per protocol; the session adds what a server needs on top of it.

use std::time::{Duration, Instant, SystemTime};

use trackgate_codecs::framing::Reject;
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{Downlink, DownlinkError, FramedCommand, Protocol, Record, RecordDecoder, StreamEvent};

pub use crate::close::CloseReason;
use crate::protocol::{stream_decoder, StreamOptions};

/// Settings every session of one listener shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub stream: StreamOptions,
    /// A session that hears nothing for this long is over.
    pub idle_timeout: Duration,
    /// A peer whose first this-many bytes were all skipped as no frame, with no record or
    /// reply ever, is not a device of this protocol (an HTTP scanner, a device on the wrong
    /// port): the session says so and the connection is closed. 0 turns the check off.
    ///
    /// Counted as bytes the decoder used up without a record or reply, not as rejection
    /// events: decoders merge a run of junk into one rejection reported only when the run
    /// ends, and a scanner's run may never end.
    pub junk_bytes: u64,
    /// See [`crate::config::ListenerConfig::log_payloads`].
    pub log_payloads: bool,
}

impl SessionSettings {
    pub fn new(stream: StreamOptions) -> Self {
        SessionSettings { stream, idle_timeout: Duration::from_secs(600), junk_bytes: 2048, log_payloads: false }
    }
}

/// What one call gave: records to hand to the sink (stamped with the server time), then
/// the replies that may be sent once the sink has accepted them, and the rejections.
#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<Record>,
    pub replies: Vec<Vec<u8>>,
    pub rejects: Vec<Reject>,
    /// Bytes the rejections skipped.
    pub rejected_bytes: u64,
    /// Frames taken whole and sound (a frame of several records counts once).
    pub frames: u64,
    /// The decoder's raw events; kept to reuse the allocation.
    events: Vec<StreamEvent>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.replies.is_empty() && self.rejects.is_empty() && self.frames == 0
    }

    /// Empties the output for the next call, keeping its allocations.
    pub fn clear(&mut self) {
        self.records.clear();
        self.replies.clear();
        self.rejects.clear();
        self.rejected_bytes = 0;
        self.frames = 0;
    }

    /// Gives back the allocations (an idle connection holds none).
    pub fn shrink(&mut self) {
        *self = Output::default();
    }
}

/// What the caller should do after [`Session::receive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input the decoder used; drop them from the read buffer.
    pub used: usize,
    /// The device identified itself (first login, or a new identity): register it.
    pub identified: bool,
    /// Close the session after delivering this output.
    pub close: Option<CloseReason>,
}

/// One TCP connection's or UDP peer's session.
pub struct Session {
    decoder: Box<dyn RecordDecoder + Send>,
    device_id: Option<Box<str>>,
    /// A record or reply has come out: the peer speaks this protocol.
    spoke: bool,
    /// Bytes used up before the peer spoke.
    unspoken_bytes: u64,
    junk_bytes: u64,
    idle_timeout: Duration,
    last_heard: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No device id here: Debug output ends up in logs.
        f.debug_struct("Session")
            .field("protocol", &self.decoder.protocol())
            .field("identified", &self.device_id.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(protocol: Protocol, settings: &SessionSettings, now: Instant) -> Self {
        Session {
            decoder: stream_decoder(protocol, &settings.stream),
            device_id: None,
            spoke: false,
            unspoken_bytes: 0,
            junk_bytes: settings.junk_bytes,
            idle_timeout: settings.idle_timeout,
            last_heard: now,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.decoder.protocol()
    }

    /// The device's id once it has identified itself.
    pub fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }

    /// When the session is over unless something is heard before.
    pub fn deadline(&self) -> Instant {
        self.last_heard + self.idle_timeout
    }

    /// Whether the session has been silent past its idle timeout at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// Decodes what arrived: `buf` is everything not yet used, `at_end` says no more will
    /// come (end of stream, or a whole datagram). `now` is the monotonic clock for the idle
    /// deadline, `wall` the server time records are stamped with.
    pub fn receive(&mut self, buf: &[u8], at_end: bool, now: Instant, wall: SystemTime, out: &mut Output) -> Step {
        self.last_heard = now;
        let stamp = Timestamp::from_system_time(wall);
        self.decoder.set_now(stamp);
        let used = self.decoder.decode(buf, at_end, &mut out.events);
        out.frames += u64::from(self.decoder.take_frame_count());
        let identified = self.collect(stamp, out);
        if !self.spoke {
            self.unspoken_bytes += used as u64;
        }
        let close = if self.decoder.refused() { Some(CloseReason::Refused) } else { self.junk_verdict() };
        Step { used, identified, close }
    }

    /// The bytes that send `command` to the device (numbered by the session, so the
    /// device's answer names it), or why the protocol cannot send it.
    pub fn command(&mut self, command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        self.decoder.command(command)
    }

    /// The session is over: anything the decoder still held (a message whose
    /// sub-packages never all arrived) comes out now.
    pub fn finish(&mut self, wall: SystemTime, out: &mut Output) {
        self.decoder.finish(&mut out.events);
        self.collect(Timestamp::from_system_time(wall), out);
    }

    /// Sorts the decoder's events into the output; true when the device id changed.
    fn collect(&mut self, stamp: Timestamp, out: &mut Output) -> bool {
        let mut identified = false;
        for event in out.events.drain(..) {
            match event {
                StreamEvent::Record(mut r) => {
                    if let Some(id) = r.device_id.as_deref() {
                        if self.device_id.as_deref() != Some(id) {
                            self.device_id = Some(id.into());
                            identified = true;
                        }
                    }
                    r.received_at = Some(stamp);
                    out.records.push(r);
                    self.spoke = true;
                }
                StreamEvent::Reply(bytes) => {
                    out.replies.push(bytes);
                    self.spoke = true;
                }
                StreamEvent::Rejected { len, reason, .. } => {
                    out.rejected_bytes += len as u64;
                    out.rejects.push(reason);
                }
            }
        }
        identified
    }

    fn junk_verdict(&self) -> Option<CloseReason> {
        (self.junk_bytes > 0 && !self.spoke && self.unspoken_bytes >= self.junk_bytes).then_some(CloseReason::Junk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackgate_codecs::framing::RejectKind;
    use trackgate_codecs::gt06;
    use trackgate_codecs::teltonika;

    fn settings() -> SessionSettings {
        SessionSettings { junk_bytes: 64, ..SessionSettings::new(StreamOptions::default()) }
    }

    fn gt06_login(imei: &str, serial: u16) -> Vec<u8> {
        let mut content = gt06::imei_to_bcd(imei).unwrap().to_vec();
        content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
        let mut out = Vec::new();
        gt06::encode_frame(&mut out, false, 0x01, &content, serial).unwrap();
        out
    }

    #[test]
    fn a_login_identifies_the_device_once_and_stamps_records() {
        let t0 = Instant::now();
        let mut s = Session::new(Protocol::Gt06, &settings(), t0);
        let mut out = Output::default();
        let login = gt06_login("123456789012345", 1);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let step = s.receive(&login, false, t0, wall, &mut out);
        assert_eq!(step, Step { used: login.len(), identified: true, close: None });
        assert_eq!(s.device_id(), Some("123456789012345"));
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.frames, 1);
        assert_eq!(out.records[0].received_at, Some(Timestamp::from_system_time(wall)));
        assert_eq!(out.replies, [gt06::ack(false, 0x01, 1)]);
        // The same device again is not a new identity.
        out.clear();
        let step = s.receive(&gt06_login("123456789012345", 2), false, t0, wall, &mut out);
        assert!(!step.identified);
        // Another IMEI on the same connection is.
        out.clear();
        assert!(s.receive(&gt06_login("999999999999999", 3), false, t0, wall, &mut out).identified);
        assert_eq!(s.device_id(), Some("999999999999999"));
    }

    #[test]
    fn a_scanner_is_junk_but_a_device_with_a_bad_frame_is_not() {
        let t0 = Instant::now();
        let http = b"GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: scanner/1.0\r\nAccept: */*\r\n\r\n";
        for protocol in Protocol::ALL {
            let mut s = Session::new(protocol, &settings(), t0);
            let mut out = Output::default();
            let mut buf = http.to_vec();
            let mut verdict = None;
            // However the decoder splits it, the scanner's bytes end up rejected.
            for _ in 0..4 {
                let step = s.receive(&buf, false, t0, SystemTime::now(), &mut out);
                buf.drain(..step.used);
                buf.extend_from_slice(http);
                if let Some(c) = step.close {
                    verdict = Some(c);
                    break;
                }
            }
            assert_eq!(verdict, Some(CloseReason::Junk), "{protocol}");
            assert!(out.records.is_empty() && out.replies.is_empty(), "{protocol}");
        }
        // A GT06 device that logged in and then sends garbage keeps its connection.
        let mut s = Session::new(Protocol::Gt06, &settings(), t0);
        let mut out = Output::default();
        s.receive(&gt06_login("123456789012345", 1), false, t0, SystemTime::now(), &mut out);
        let junk = [0x55u8; 200];
        let step = s.receive(&junk, true, t0, SystemTime::now(), &mut out);
        assert_eq!(step.close, None);
        assert!(!out.rejects.is_empty() && out.rejects.iter().all(|r| r.kind == RejectKind::Garbage));
        assert_eq!(out.rejected_bytes, 200);
        assert_eq!(out.frames, 1, "the login's frame only: garbage is no frame");
    }

    #[test]
    fn the_deadline_moves_with_what_is_heard() {
        let t0 = Instant::now();
        let mut st = settings();
        st.idle_timeout = Duration::from_secs(30);
        let mut s = Session::new(Protocol::Teltonika, &st, t0);
        assert_eq!(s.deadline(), t0 + Duration::from_secs(30));
        assert!(!s.expired(t0 + Duration::from_secs(29)));
        assert!(s.expired(t0 + Duration::from_secs(30)));
        let mut hello = Vec::new();
        teltonika::encode_imei("356307042441013", &mut hello);
        let t1 = t0 + Duration::from_secs(20);
        let mut out = Output::default();
        let step = s.receive(&hello, false, t1, SystemTime::now(), &mut out);
        assert!(step.identified);
        assert_eq!(out.replies, [vec![0x01]]);
        assert!(!s.expired(t0 + Duration::from_secs(30)));
        assert_eq!(s.deadline(), t1 + Duration::from_secs(30));
    }

    #[test]
    fn finish_reports_what_the_decoder_still_held() {
        use trackgate_codecs::jt808::{self, Edition, Terminal};
        let t0 = Instant::now();
        let mut st = settings();
        st.stream.transport = crate::protocol::Transport::Udp;
        let mut s = Session::new(Protocol::Jt808, &st, t0);
        let terminal = Terminal::for_device_id("13800138000", Edition::V2013).unwrap();
        let body = vec![0u8; 3000];
        let packages = jt808::encode_packages(0x0801, &terminal, 7, &body, 1000).unwrap();
        let mut out = Output::default();
        // Two of three packages arrive; then the peer goes away.
        for p in &packages[..2] {
            s.receive(p, true, t0, SystemTime::now(), &mut out);
        }
        assert!(out.records.is_empty());
        out.clear();
        s.finish(SystemTime::now(), &mut out);
        assert_eq!(out.rejects.len(), 1, "{:?}", out.rejects);
    }
}
