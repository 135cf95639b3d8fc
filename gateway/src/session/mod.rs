//! One device's session, without sockets: bytes in; records, replies, rejections and the
//! session's own verdicts out. The server's tasks only move bytes and wait; everything a
//! session decides is decided here, with the clock passed in, so it is tested without a
//! network or a wall clock:
//!
//! * who the device is, and when the connection must claim it in the registry or give up a
//!   claim ([`Step::claim`]; a UDP peer refused a claim tries again a second later);
//! * whether the peer speaks the protocol at all (junk) and when it has been idle too long;
//! * what goes out and in which order: the acks of a read, once the sink has its records,
//!   then the commands framed for the device ([`Output::transmit`]).
//!
//! The protocol state proper (the Teltonika IMEI handshake, GT06 login, JT808
//! registration and authentication, serial counters, sub-package reassembly, commands
//! awaiting an answer) lives in the codec's stream decoder, which is itself a plain struct
//! per protocol; the session adds what a server needs on top of it.

use std::time::{Duration, Instant, SystemTime};

use trackgate_codecs::framing::Reject;
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{AnswerMatch, Downlink, DownlinkError, Protocol, Record, RecordDecoder, Reply, StreamEvent};

pub use crate::close::CloseReason;
use crate::protocol::{self, stream_decoder, StreamOptions, Transport};

/// How long a UDP peer whose claim was refused (a TCP connection holds the device) waits
/// before it tries again: each try costs the registry's lock, and a device that also keeps a
/// TCP connection would otherwise pay it on every datagram.
pub const CLAIM_RETRY: Duration = Duration::from_secs(1);

/// Settings every session of one listener shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub stream: StreamOptions,
    /// A session that hears no whole frame for this long is over.
    pub idle_timeout: Duration,
    /// A frame begun (bytes held that complete no frame yet) must be finished within this
    /// long, or the session is over: a sender trickling a frame cannot hold its buffer for
    /// the whole idle timeout.
    pub frame_timeout: Duration,
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
        SessionSettings {
            stream,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            junk_bytes: 2048,
            log_payloads: false,
        }
    }
}

/// What one call gave: records to hand to the sink (stamped with the server time), then
/// the replies that may be sent once the sink has accepted them, the commands framed for
/// the device, and the rejections.
#[derive(Debug, Default)]
pub struct Output {
    pub records: Vec<Record>,
    /// Acks and answers to the device's frames: sent only once the sink has the records.
    pub replies: Vec<Reply>,
    /// Commands framed by [`Session::command`], in the order they were asked for.
    pub commands: Vec<Vec<u8>>,
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
        self.records.is_empty()
            && self.replies.is_empty()
            && self.commands.is_empty()
            && self.rejects.is_empty()
            && self.frames == 0
    }

    /// What goes to the device, in the order it must: the replies to its frames first (the
    /// caller has had the sink accept their records), then the commands. A device answers a
    /// command only once it has its acks; a command written in the middle of them would be
    /// read as a stray frame by firmware that waits for an ack.
    pub fn transmit(&self) -> impl Iterator<Item = &[u8]> {
        self.replies.iter().map(Reply::as_slice).chain(self.commands.iter().map(Vec::as_slice))
    }

    /// Empties the output for the next call, keeping its allocations.
    pub fn clear(&mut self) {
        self.records.clear();
        self.replies.clear();
        self.commands.clear();
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the input the decoder used; drop them from the read buffer.
    pub used: usize,
    /// The connection must now hold this device in the registry (giving up the one it held).
    pub claim: Option<Claim>,
    /// Close the session after delivering this output.
    pub close: Option<CloseReason>,
}

/// A change of the device a connection holds in the registry: made when the device first
/// identifies itself, when the connection starts speaking for another device, and, for a
/// UDP peer, when it tries again after a refusal or after losing the device to another
/// connection. The device to hold now is [`Session::claimed`]; its older connection, if
/// any, is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The device held so far, to give up first, or a later login of that device would
    /// close this connection by mistake.
    pub release: Option<Box<str>>,
}

/// Whether this session holds its device in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClaimState {
    Unclaimed,
    /// Held: the device id is [`Session::device_id`].
    Held,
    /// Refused (a TCP connection holds the device); no new try before then.
    RetryAt(Instant),
}

/// One TCP connection's or UDP peer's session.
pub struct Session {
    decoder: Box<dyn RecordDecoder + Send>,
    device_id: Option<Box<str>>,
    /// A record or reply has come out: the peer speaks this protocol.
    spoke: bool,
    /// Whether this session holds its device in the registry at all: every TCP connection
    /// does; a UDP peer only where its protocol takes commands over UDP.
    claims: bool,
    claim: ClaimState,
    /// Bytes used up before the peer spoke (saturating: only compared with `junk_bytes`).
    unspoken_bytes: u32,
    junk_bytes: u32,
    /// When the frame now held began, in milliseconds after `last_heard` (a frame that
    /// completes moves `last_heard` and starts any next one at 0, so it is never before);
    /// [`NO_PARTIAL`] when no bytes are held.
    partial_ms: u32,
    /// Both timeouts in milliseconds: [`SessionSettings`]'s, kept small.
    idle_ms: u32,
    frame_ms: u32,
    last_heard: Instant,
}

/// `partial_ms` when nothing is held.
const NO_PARTIAL: u32 = u32::MAX;

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
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
        let claims = settings.stream.transport == Transport::Tcp || protocol::facts(protocol).udp_commands;
        Session {
            decoder: stream_decoder(protocol, &settings.stream),
            device_id: None,
            spoke: false,
            claims,
            claim: ClaimState::Unclaimed,
            unspoken_bytes: 0,
            junk_bytes: u32::try_from(settings.junk_bytes).unwrap_or(u32::MAX),
            partial_ms: NO_PARTIAL,
            idle_ms: millis(settings.idle_timeout),
            frame_ms: millis(settings.frame_timeout),
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

    /// The device this session holds in the registry, to give up when it ends.
    pub fn claimed(&self) -> Option<&str> {
        self.device_id.as_deref().filter(|_| self.claim == ClaimState::Held)
    }

    /// The registry refused the claim the last step asked for (a TCP connection holds the
    /// device, and a UDP peer never takes it from one): try again after [`CLAIM_RETRY`].
    pub fn claim_refused(&mut self, now: Instant) {
        self.claim = ClaimState::RetryAt(now + CLAIM_RETRY);
    }

    /// Whether the last claim was refused (the device is held by a live connection elsewhere),
    /// until the session tries again and succeeds.
    pub fn claim_refused_now(&self) -> bool {
        matches!(self.claim, ClaimState::RetryAt(_))
    }

    /// Another connection has taken the device over. A TCP connection closes then; a UDP
    /// peer, which cannot be closed, claims the device again when it next speaks.
    pub fn claim_lost(&mut self) {
        self.claim = ClaimState::Unclaimed;
    }

    /// When the session is over unless something is heard before: the idle timeout after
    /// the last whole frame, or sooner, the frame timeout after a frame held began.
    pub fn deadline(&self) -> Instant {
        let idle = self.last_heard + Duration::from_millis(u64::from(self.idle_ms));
        match self.frame_began() {
            Some(began) => idle.min(began + Duration::from_millis(u64::from(self.frame_ms))),
            None => idle,
        }
    }

    /// Whether the session has been silent past its idle timeout at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline()
    }

    /// Why the session is over at its deadline: a frame left unfinished, or silence.
    pub fn timeout_reason(&self) -> CloseReason {
        let idle = self.last_heard + Duration::from_millis(u64::from(self.idle_ms));
        if self.deadline() < idle {
            CloseReason::FrameTimeout
        } else {
            CloseReason::Idle
        }
    }

    fn frame_began(&self) -> Option<Instant> {
        (self.partial_ms != NO_PARTIAL).then(|| self.last_heard + Duration::from_millis(u64::from(self.partial_ms)))
    }

    /// Notes whether bytes are held after a read, and since when.
    fn hold_partial(&mut self, held: bool, now: Instant) {
        if !held {
            self.partial_ms = NO_PARTIAL;
        } else if self.partial_ms == NO_PARTIAL {
            self.partial_ms = millis(now.saturating_duration_since(self.last_heard)).min(NO_PARTIAL - 1);
        }
    }

    /// Decodes what arrived: `buf` is everything not yet used, `at_end` says no more will
    /// come (end of stream, or a whole datagram). `now` is the monotonic clock for the idle
    /// deadline, which only a whole frame moves; `wall` the server time records are stamped
    /// with.
    pub fn receive(&mut self, buf: &[u8], at_end: bool, now: Instant, wall: SystemTime, out: &mut Output) -> Step {
        let stamp = Timestamp::from_system_time(wall);
        self.decoder.set_now(stamp);
        let used = self.decoder.decode(buf, at_end, &mut out.events);
        let frames = self.decoder.take_frame_count();
        out.frames += u64::from(frames);
        // Only a whole frame is hearing from the device: bytes that complete none (a frame
        // trickled a byte at a time, junk) would otherwise hold the connection open forever.
        if frames > 0 {
            self.last_heard = now;
            // What is held now began with this read, at the earliest.
            self.partial_ms = NO_PARTIAL;
        }
        self.hold_partial(used < buf.len() && !at_end, now);
        let previous = self.collect(stamp, out);
        if !self.spoke {
            let used = u32::try_from(used).unwrap_or(u32::MAX);
            self.unspoken_bytes = self.unspoken_bytes.saturating_add(used);
        }
        let claim = self.claim_step(previous, now);
        let close = if self.decoder.refused() { Some(CloseReason::Refused) } else { self.junk_verdict() };
        Step { used, claim, close }
    }

    /// Frames `command` for the device into `out.commands`, numbered by the session so the
    /// device's answer names it; returns how that answer will be recognised, or why the
    /// protocol cannot send it.
    pub fn command(&mut self, command: &Downlink, out: &mut Output) -> Result<Option<AnswerMatch>, DownlinkError> {
        let framed = self.decoder.command(command)?;
        out.commands.push(framed.bytes);
        Ok(framed.answer)
    }

    /// The session is over: anything the decoder still held (a message whose
    /// sub-packages never all arrived) comes out now.
    pub fn finish(&mut self, wall: SystemTime, out: &mut Output) {
        self.decoder.finish(&mut out.events);
        self.collect(Timestamp::from_system_time(wall), out);
    }

    /// Whether the connection must claim its device now: see [`Claim`]. `previous` is what
    /// [`Session::collect`] returned.
    fn claim_step(&mut self, previous: Option<Option<Box<str>>>, now: Instant) -> Option<Claim> {
        // A device that has not proved who it is (a JT808 terminal before its
        // authentication) holds nothing: its registration must not close the real device's
        // connection, nor receive its commands.
        if !self.claims || !self.decoder.proven() {
            return None;
        }
        self.device_id.as_ref()?;
        let release = match (self.claim, previous) {
            (ClaimState::Held, None) => return None,
            // Back to the device held, within one read: nothing changed.
            (ClaimState::Held, Some(previous)) if previous.as_deref() == self.device_id.as_deref() => return None,
            (ClaimState::Held, Some(previous)) => previous,
            (ClaimState::RetryAt(at), _) if now < at => return None,
            _ => None,
        };
        self.claim = ClaimState::Held;
        Some(Claim { release })
    }

    /// Sorts the decoder's events into the output. When the device id changed, returns the
    /// one before (`Some(None)` for a first identification).
    fn collect(&mut self, stamp: Timestamp, out: &mut Output) -> Option<Option<Box<str>>> {
        let mut previous = None;
        for event in out.events.drain(..) {
            match event {
                StreamEvent::Record(mut r) => {
                    if let Some(id) = r.device_id.as_deref() {
                        if self.device_id.as_deref() != Some(id) {
                            let before = self.device_id.replace(id.into());
                            // Two identities in one read: the first one held is what to give up.
                            previous.get_or_insert(before);
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
        previous
    }

    fn junk_verdict(&self) -> Option<CloseReason> {
        (self.junk_bytes > 0 && !self.spoke && self.unspoken_bytes >= self.junk_bytes).then_some(CloseReason::Junk)
    }
}

#[cfg(test)]
mod tests;
