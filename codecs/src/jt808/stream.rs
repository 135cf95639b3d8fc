//! Turns one JT808 connection's (or UDP peer's) bytes into records and replies (docs/protocols/jt808.md §5):
//! 0x8100 for registrations, 0x8001 for everything the terminal expects one for (after the
//! records, so the gateway sends it only once the sink has them), 0x8004 for time queries,
//! sub-packages reassembled with 0x8003 for the missing ones and 0x8800 for finished media,
//! and the platform's commands with their answers matched by serial.

use std::sync::Arc;

use super::frame::{inner, is_text, Jt808Framer};
use super::message::Message;
use super::record::{answer, records, Answer, Context, Settled};
use super::*;
use crate::framing::{Limits, Reject, RejectKind};
use crate::record::{Kind, Protocol, Record, Timestamp};
use crate::stream::{
    drive, push_reply, AllowList, AnswerMatch, Downlink, DownlinkError, Driver, FrameHandler, FramedCommand,
    RecordDecoder, Reply, StreamEvent, Transport,
};

/// Where a terminal's auth codes come from and are checked (docs/protocols/jt808.md §5):
/// the gateway's durable store. With one, registration hands out the code [`AuthCodes::issue`]
/// gives, a terminal must authenticate (0x0102) with its code before anything else it sends
/// is taken, and a wrong code gets 0x8001 result 1 and ends the stream.
pub trait AuthCodes: Send + Sync {
    /// A new code for a terminal that registers, kept (durably) before this returns.
    fn issue(&self, device_id: &str) -> Issued;
    /// Whether `code` is the terminal's.
    fn check(&self, device_id: &str, code: &[u8]) -> bool;
    /// The terminal deregistered (0x0003, once authenticated): its code is void, and it may
    /// register again.
    fn revoke(&self, device_id: &str);
}

/// What a registration gets from [`AuthCodes::issue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// This code, kept: 0x8100 result 0 carries it.
    Code(String),
    /// The terminal already has a code (it registered before, or the operator enrolled it):
    /// 0x8100 result 3, and no new code, so nobody who knows a terminal's number can void
    /// the real terminal's code by registering in its name.
    AlreadyRegistered,
    /// The code could not be kept: no answer, and the terminal tries again.
    Unavailable,
}

/// Messages a terminal may send before it has authenticated: registration, authentication
/// and deregistration.
const BEFORE_AUTH: [u16; 3] = [id::REGISTER, id::AUTHENTICATE, id::DEREGISTER];

/// Per-connection settings.
#[derive(Clone)]
pub struct Jt808Options {
    /// The terminals' clock offset from UTC in minutes: BCD times are local (docs/protocols/jt808.md §4; GMT+8
    /// by the standard, so 480 unless configured).
    pub utc_offset_minutes: i32,
    pub limits: Limits,
    /// Bytes of unfinished sub-packaged messages held at once; the oldest is dropped (and
    /// reported) to make room.
    pub max_reassembly_bytes: usize,
    /// Unfinished sub-packaged messages held at once.
    pub max_reassemblies: usize,
    /// How long an unfinished sub-packaged message waits for its missing packages, by the
    /// clock the caller gives [`RecordDecoder::set_now`]. Without a clock, only the limits
    /// and the end of the stream end it.
    pub reassembly_timeout_ms: i64,
    /// Over UDP the end of a datagram is not the end of the session, so unfinished
    /// sub-packaged messages wait for the next datagrams.
    pub transport: Transport,
    /// The terminals that may register and authenticate. Refused terminals get 0x8100
    /// result 4 ("terminal not in the database") and a failed 0x8001 for authentication;
    /// their records still come out, marked `accepted: false`. `None` lets every terminal in.
    pub allow: Option<AllowList>,
    /// Authentication enforced with these codes; `None` keeps the older behaviour (the code
    /// handed out is the terminal's number, and every message is taken).
    pub auth: Option<Arc<dyn AuthCodes>>,
}

impl Default for Jt808Options {
    fn default() -> Self {
        Jt808Options {
            utc_offset_minutes: 8 * 60,
            limits: DEFAULT_LIMITS,
            max_reassembly_bytes: 1 << 20,
            max_reassemblies: 4,
            reassembly_timeout_ms: 60_000,
            transport: Transport::Tcp,
            allow: None,
            auth: None,
        }
    }
}

impl std::fmt::Debug for Jt808Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jt808Options")
            .field("utc_offset_minutes", &self.utc_offset_minutes)
            .field("limits", &self.limits)
            .field("max_reassembly_bytes", &self.max_reassembly_bytes)
            .field("max_reassemblies", &self.max_reassemblies)
            .field("reassembly_timeout_ms", &self.reassembly_timeout_ms)
            .field("transport", &self.transport)
            .field("allow", &self.allow)
            .field("auth", &self.auth.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Commands awaiting an answer, per connection: enough for an operator's burst, bounded so
/// a terminal that never answers cannot grow it.
const MAX_PENDING_COMMANDS: usize = 32;

/// A sub-packaged message being put together.
#[derive(Debug)]
struct Assembly {
    header: Header,
    first_serial: u16,
    total: u16,
    /// By package index. Sparse, so a header that announces 65535 packages costs nothing
    /// until they come.
    parts: std::collections::BTreeMap<u16, Vec<u8>>,
    bytes: usize,
    started_at: Option<Timestamp>,
    /// Stream offset of the first package seen, and wire bytes of all packages held.
    offset: u64,
    wire_len: usize,
}

impl Assembly {
    /// The first `limit` missing package indexes.
    fn missing(&self, limit: usize) -> Vec<u16> {
        (1..=self.total).filter(|i| !self.parts.contains_key(i)).take(limit).collect()
    }

    /// The message its packages make, as if it had come in one frame.
    fn whole(self) -> Package {
        let mut body = Vec::with_capacity(self.bytes);
        for part in self.parts.into_values() {
            body.extend_from_slice(&part);
        }
        let mut header = self.header;
        header.serial = self.first_serial;
        header.package = None;
        Package::Whole { header, body, packages: self.total }
    }

    fn describe(&self) -> String {
        let count = usize::from(self.total) - self.parts.len();
        let shown: Vec<String> = self.missing(8).iter().map(u16::to_string).collect();
        format!(
            "sub-packaged message 0x{:04X} (first serial {}): {} of {} packages missing ({}{})",
            self.header.message_id,
            self.first_serial,
            count,
            self.total,
            shown.join(", "),
            if count > 8 { ", …" } else { "" }
        )
    }
}

/// What a sub-package did to its message.
#[derive(Debug)]
enum Package {
    /// Still incomplete; after the last-numbered package, `(first serial, missing indexes)`
    /// to ask for again.
    Waiting { resend: Option<(u16, Vec<u16>)> },
    /// This package completed it: the message as if it had come in one frame.
    Whole { header: Header, body: Vec<u8>, packages: u16 },
}

/// The terminal a stream's frames come from, with what its number gives every record:
/// worked out when the terminal changes, not for each frame.
#[derive(Debug)]
struct Speaker {
    terminal: Terminal,
    device_id: Arc<str>,
    /// Whether the number is BCD digits (else its records carry it in hex).
    number_is_bcd: bool,
}

/// One decoder per TCP connection or UDP peer.
#[derive(Debug)]
pub struct Jt808Decoder {
    driver: Driver<Jt808Framer>,
    options: Jt808Options,
    now: Option<Timestamp>,
    /// The terminal of the last frame.
    terminal: Option<Speaker>,
    next_serial: u16,
    commands: Vec<(u16, u16)>,
    assemblies: Vec<Assembly>,
    assembly_bytes: usize,
    /// The terminal has authenticated with its code (only asked with [`Jt808Options::auth`]).
    authenticated: bool,
    /// A wrong auth code: the stream ends after the replies.
    refused: bool,
}

impl Default for Jt808Decoder {
    fn default() -> Self {
        Jt808Decoder::new(Jt808Options::default())
    }
}

/// 0x8107 query terminal attributes (answered by 0x0107): [`id::QUERY_ATTRIBUTES`].
pub use super::id::QUERY_ATTRIBUTES;

impl Jt808Decoder {
    pub fn new(options: Jt808Options) -> Self {
        Jt808Decoder {
            driver: Driver::new(Jt808Framer::new(options.limits)),
            options,
            now: None,
            terminal: None,
            next_serial: 1,
            commands: Vec::new(),
            assemblies: Vec::new(),
            assembly_bytes: 0,
            authenticated: false,
            refused: false,
        }
    }

    /// Whether a message with this id is taken now: everything, unless authentication is
    /// enforced and the terminal has not authenticated yet.
    fn admits(&self, message_id: u16) -> bool {
        self.options.auth.is_none() || self.authenticated || BEFORE_AUTH.contains(&message_id)
    }

    /// The terminal of the last frame: where commands go.
    pub fn terminal(&self) -> Option<&Terminal> {
        self.terminal.as_ref().map(|s| &s.terminal)
    }

    pub fn device_id(&self) -> Option<&str> {
        self.terminal.as_ref().map(|s| &*s.device_id)
    }

    /// Unfinished sub-packaged messages held, and their bytes (for memory accounting).
    pub fn held(&self) -> (usize, usize) {
        (self.assemblies.len(), self.assembly_bytes)
    }

    fn serial(&mut self) -> u16 {
        let s = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        s
    }

    /// The frame for `command` to this connection's terminal, with the next platform serial;
    /// the terminal's answer will name it. `None` before the terminal has sent a frame, or if
    /// the command cannot be written.
    pub fn command_frame(&mut self, command: &Command) -> Option<Vec<u8>> {
        let terminal = *self.terminal()?;
        let serial = self.next_serial;
        let bytes = command.encode(&terminal, serial)?;
        self.next_serial = self.next_serial.wrapping_add(1);
        self.remember(serial, command.message_id());
        Some(bytes)
    }

    /// 0x8107: ask the terminal for its attributes.
    pub fn query_attributes(&mut self) -> Option<Vec<u8>> {
        let terminal = *self.terminal()?;
        let serial = self.serial();
        self.remember(serial, QUERY_ATTRIBUTES);
        encode(QUERY_ATTRIBUTES, &terminal, serial, &[])
    }

    fn remember(&mut self, serial: u16, message_id: u16) {
        if self.commands.len() == MAX_PENDING_COMMANDS {
            self.commands.remove(0);
        }
        self.commands.push((serial, message_id));
    }

    /// Takes the oldest pending command an answer matches off the list: by the platform
    /// serial it echoes and the message id it names, as far as the answer carries them
    /// (0x0107 carries neither serial nor id, only its own meaning).
    fn answered(&mut self, serial: Option<u16>, id: Option<u16>) -> Option<u16> {
        let i = self
            .commands
            .iter()
            .position(|&(s, m)| serial.is_none_or(|serial| serial == s) && id.is_none_or(|id| id == m))?;
        Some(self.commands.remove(i).1)
    }

    fn allowed(&self) -> bool {
        match (&self.options.allow, &self.terminal) {
            (Some(allow), Some(speaker)) => allow.allows(&speaker.device_id),
            _ => true,
        }
    }

    /// The 0x8001 answer to `header`'s message ([`platform_response`], held inline).
    fn ack(&mut self, header: &Header, result: u8) -> Reply {
        let serial = self.serial();
        platform_response_reply(&header.terminal, serial, header.serial, header.message_id, result)
    }

    /// Drops unfinished sub-packaged messages older than the timeout.
    fn expire(&mut self, out: &mut Vec<StreamEvent>) {
        let Some(now) = self.now else { return };
        let timeout = self.options.reassembly_timeout_ms;
        while let Some(i) =
            self.assemblies.iter().position(|a| a.started_at.is_some_and(|t| now.unix_ms() - t.unix_ms() > timeout))
        {
            self.drop_assembly(i, RejectKind::Truncated, &format!(", after waiting {} s", timeout / 1000), out);
        }
    }

    /// The session is over: every unfinished sub-packaged message is reported as lost.
    fn abandon_assemblies(&mut self, out: &mut Vec<StreamEvent>) {
        while !self.assemblies.is_empty() {
            self.drop_assembly(0, RejectKind::Truncated, " when the stream ended", out);
        }
    }

    /// Removes unfinished message `i` and reports it lost, with `why`.
    fn drop_assembly(&mut self, i: usize, kind: RejectKind, why: &str, out: &mut Vec<StreamEvent>) {
        let a = self.assemblies.remove(i);
        self.assembly_bytes -= a.bytes;
        let reason = Reject::new(kind, format!("{}{why}", a.describe()));
        out.push(StreamEvent::Rejected { offset: a.offset, len: a.wire_len, reason });
    }

    /// One sub-package: kept until its message is whole.
    fn package(
        &mut self,
        header: Header,
        body: &[u8],
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<Package, Reject> {
        let (total, index) = header.package.unwrap_or((1, 1));
        if index == 0 || index > total {
            return Err(Reject::new(RejectKind::Malformed, format!("sub-package {index} of {total}")));
        }
        if body.len() > self.options.max_reassembly_bytes {
            return Err(Reject::new(RejectKind::TooLong, "sub-package larger than the reassembly limit"));
        }
        let i = self.assembly_for(header, at, out);
        let i = self.make_room(i, body.len(), out)?;
        let a = &mut self.assemblies[i];
        a.wire_len += wire_len;
        if let std::collections::btree_map::Entry::Vacant(slot) = a.parts.entry(index) {
            slot.insert(body.to_vec());
            a.bytes += body.len();
            self.assembly_bytes += body.len();
        }
        if index == 1 {
            a.header = header;
        }
        if a.parts.len() < usize::from(total) {
            // After the last package the platform asks for the missing ones (docs/protocols/jt808.md §3.3): one
            // request's worth (a 2013 count is a BYTE); a message missing more than that ends
            // by the timeout.
            let resend = (index == total).then(|| (a.first_serial, a.missing(255)));
            return Ok(Package::Waiting { resend });
        }
        let a = self.assemblies.remove(i);
        self.assembly_bytes -= a.bytes;
        Ok(a.whole())
    }

    /// The index of the unfinished message `header`'s package belongs to, started if it is
    /// the first seen (the oldest unfinished one dropped when as many as allowed are held).
    fn assembly_for(&mut self, header: Header, at: u64, out: &mut Vec<StreamEvent>) -> usize {
        let (total, index) = header.package.unwrap_or((1, 1));
        let first_serial = header.serial.wrapping_sub(index - 1);
        let key = |a: &Assembly| {
            a.header.message_id == header.message_id
                && a.first_serial == first_serial
                && a.total == total
                && a.header.terminal == header.terminal
        };
        if let Some(i) = self.assemblies.iter().position(key) {
            return i;
        }
        if self.assemblies.len() >= self.options.max_reassemblies.max(1) {
            self.drop_assembly(0, RejectKind::TooLong, ", dropped to make room for a newer one", out);
        }
        self.assemblies.push(Assembly {
            header,
            first_serial,
            total,
            parts: std::collections::BTreeMap::new(),
            bytes: 0,
            started_at: self.now,
            offset: at,
            wire_len: 0,
        });
        self.assemblies.len() - 1
    }

    /// Room for `bytes` more in unfinished message `i`: the oldest other unfinished messages
    /// are dropped first; when that is not enough, message `i` itself. Returns `i`'s index
    /// once the others are gone.
    fn make_room(&mut self, mut i: usize, bytes: usize, out: &mut Vec<StreamEvent>) -> Result<usize, Reject> {
        while self.assembly_bytes + bytes > self.options.max_reassembly_bytes {
            let Some(victim) = (0..self.assemblies.len()).find(|&j| j != i && self.assemblies[j].bytes > 0) else {
                let why = format!(" exceeds the reassembly limit of {} bytes", self.options.max_reassembly_bytes);
                let a = self.assemblies.remove(i);
                self.assembly_bytes -= a.bytes;
                return Err(Reject::new(RejectKind::TooLong, format!("{}{why}", a.describe())));
            };
            self.drop_assembly(victim, RejectKind::TooLong, ", dropped to make room for a newer one", out);
            if victim < i {
                i -= 1;
            }
        }
        Ok(i)
    }

    /// The records and replies for one binary frame (escaped bytes, flags removed). A frame
    /// with escapes is un-escaped into the thread's scratch buffer: a buffer of its own was
    /// an allocation per such frame (about one frame in three carries a 0x7d or 0x7e), and
    /// one kept per decoder would add its longest frame to every idle session. The others
    /// are read where they lie, without fetching the buffer (a few dozen instructions).
    fn binary_frame(
        &mut self,
        escaped: &[u8],
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Reject> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let xor_all = match Frame::parse_in_place(escaped) {
            Ok(frame) => return self.frame_in(frame?, at, wire_len, out),
            Err(NeedsScratch(xor_all)) => xor_all,
        };
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.frame_in(Frame::parse_escaped(escaped, xor_all, &mut scratch)?, at, wire_len, out),
            // Not reached (nothing here decodes inside a decode), but never a panic.
            Err(_) => self.frame_in(Frame::parse_escaped(escaped, xor_all, &mut Vec::new())?, at, wire_len, out),
        })
    }

    fn frame_in(
        &mut self,
        frame: Frame<'_>,
        at: u64,
        wire_len: usize,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Reject> {
        let header = frame.header;
        if self.terminal.as_ref().is_none_or(|s| s.terminal != header.terminal) {
            // Another terminal number on this stream has proved nothing yet.
            self.authenticated = false;
            let number = &header.terminal.number;
            self.terminal = Some(Speaker {
                terminal: header.terminal,
                device_id: number.device_id().into(),
                number_is_bcd: number.is_bcd(),
            });
        }
        if !self.admits(header.message_id) {
            return Err(Reject::new(
                RejectKind::Unauthenticated,
                format!("0x{:04X} before the terminal authenticated", header.message_id),
            ));
        }
        if header.package.is_some_and(|(total, _)| total > 1) {
            match self.package(header, &frame.body, at, wire_len, out)? {
                Package::Whole { header: whole, body, packages } => {
                    self.message(&whole, &body, true, Some(packages), out);
                    let ack = self.ack(&header, result::OK);
                    push_reply(out, ack);
                    if whole.message_id == id::MEDIA_DATA && body.len() >= 4 {
                        let serial = self.serial();
                        let media_id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                        if let Some(r) = media_upload_response(&header.terminal, serial, media_id, &[]) {
                            push_reply(out, r.into());
                        }
                    }
                }
                Package::Waiting { resend } => {
                    let ack = self.ack(&header, result::OK);
                    push_reply(out, ack);
                    if let Some((first_serial, missing)) = resend {
                        let serial = self.serial();
                        if let Some(r) = resend_request(&header.terminal, serial, first_serial, &missing) {
                            push_reply(out, r.into());
                        }
                    }
                }
            }
            return Ok(());
        }
        let reply_needed = self.message(&header, &frame.body, frame.length_field_ok, None, out);
        if let Some(result) = reply_needed {
            let ack = self.ack(&header, result);
            push_reply(out, ack);
        }
        Ok(())
    }

    /// One whole message: what the session settles about it, its records, then its answers
    /// other than 0x8001; returns the 0x8001 result to send after them, if it gets one.
    fn message(
        &mut self,
        header: &Header,
        body: &[u8],
        length_field_ok: bool,
        packages: Option<u16>,
        out: &mut Vec<StreamEvent>,
    ) -> Option<u8> {
        let (message, layout_error) = match Message::parse(header, body) {
            Ok(m) => (m, None),
            // The check code proves these are the terminal's bytes: a body in a layout this
            // codec does not know for its id is kept as an unknown message, never dropped.
            Err(e) => (Message::Unknown(body), Some(e)),
        };
        let settled = self.settle(&message);
        let start = out.len();
        let ctx = Context {
            header,
            // `frame_in` has made the header's terminal the speaker (a reassembled message's
            // too: assemblies are kept per terminal), so what it knows of the number holds.
            device_id: self.terminal.as_ref().map(|s| &s.device_id),
            number_is_bcd: self.terminal.as_ref().map_or_else(|| header.terminal.number.is_bcd(), |s| s.number_is_bcd),
            utc_offset_minutes: self.options.utc_offset_minutes,
        };
        records(&ctx, &message, &settled, layout_error.as_ref(), out);
        for event in &mut out[start..] {
            let StreamEvent::Record(r) = event else { continue };
            if !length_field_ok {
                r.attributes.set("length_field_ok", false);
            }
            if let Some(n) = packages {
                r.attributes.set("packages", n);
            }
        }
        let (reply, ack) = answer(&message, header, &settled, self.now, packages);
        if let Some(reply) = reply {
            self.send(header, reply, out);
        }
        ack
    }

    /// What a message changes in the session, before it is recorded: registration and
    /// authentication against the code store, a deregistration giving the code up, and the
    /// pending command an answer answers.
    fn settle(&mut self, message: &Message<'_>) -> Settled {
        let mut settled = Settled::default();
        match message {
            Message::GeneralResponse(g) => settled.command = self.answered(Some(g.reply_serial), Some(g.reply_id)),
            Message::Parameters(p) => settled.command = self.answered(Some(p.reply_serial), None),
            Message::Attributes(_) => settled.command = self.answered(None, Some(QUERY_ATTRIBUTES)),
            Message::LocationReply { reply_serial, .. } => settled.command = self.answered(Some(*reply_serial), None),
            Message::Deregister => {
                // Only the terminal itself (authenticated) can give its code up.
                if let (Some(auth), true) = (&self.options.auth, self.authenticated) {
                    auth.revoke(self.device_id().unwrap_or_default());
                    self.authenticated = false;
                }
            }
            Message::Register(_) => settled.registration = self.register(),
            Message::Auth(auth) => settled.authenticated = self.authenticate(auth.code),
            _ => {}
        }
        settled
    }

    /// 0x0100's result and code: with enforced authentication the code is the store's (kept
    /// before it is sent), without it the terminal's number (docs/protocols/jt808.md §5).
    /// `None` when the store cannot issue one now.
    fn register(&self) -> Option<(u8, String)> {
        let id = self.device_id().unwrap_or_default();
        match (&self.options.auth, self.allowed()) {
            (_, false) => Some((4, String::new())),
            (None, true) => Some((result::OK, id.to_owned())),
            (Some(auth), true) => match auth.issue(id) {
                Issued::Code(code) => Some((result::OK, code)),
                Issued::AlreadyRegistered => Some((3, String::new())),
                Issued::Unavailable => None,
            },
        }
    }

    /// 0x0102: whether the terminal is let in. With a code store a wrong code also ends the
    /// stream once its 0x8001 is out.
    fn authenticate(&mut self, code: &[u8]) -> bool {
        let Some(codes) = &self.options.auth else { return self.allowed() };
        let ok = self.allowed() && codes.check(self.device_id().unwrap_or_default(), code);
        self.authenticated = ok;
        self.refused = !ok;
        ok
    }

    /// Numbers and frames an answer of the table ([`answer`]).
    fn send(&mut self, header: &Header, answer: Answer<'_>, out: &mut Vec<StreamEvent>) {
        let terminal = &header.terminal;
        let bytes = match answer {
            Answer::ServerTime(now) => server_time(terminal, self.serial(), now),
            Answer::Registration(result, code) => {
                register_response(terminal, self.serial(), header.serial, result, code)
            }
            Answer::Vendor => Some(vendor_response(terminal, header.message_id, result::OK)),
            Answer::MediaDone(media_id) => media_upload_response(terminal, self.serial(), media_id, &[]),
        };
        if let Some(b) = bytes {
            push_reply(out, b.into());
        }
    }

    fn text_frame(&mut self, frame: &[u8], out: &mut Vec<StreamEvent>) {
        let mut r = Record::new(Protocol::Jt808, Kind::Info, "text");
        r.device_id = self.terminal.as_ref().map(|s| s.device_id.clone());
        r.attributes.set("text", String::from_utf8_lossy(frame).into_owned());
        out.push(StreamEvent::Record(r));
    }

    fn finish_stream(&mut self, out: &mut Vec<StreamEvent>) {
        self.driver.flush::<Self>(out);
        self.abandon_assemblies(out);
    }
}

impl RecordDecoder for Jt808Decoder {
    fn protocol(&self) -> Protocol {
        Protocol::Jt808
    }

    fn command(&mut self, command: &Downlink) -> Result<FramedCommand, DownlinkError> {
        let Downlink::Jt808(command) = command else {
            // Text has no one JT808 meaning (0x8300 shows it to the driver, 0x8900 tunnels
            // it to a vendor's module): the caller says which.
            return Err(DownlinkError::Unsupported("JT808 commands are typed (0x8300 text, 0x8900 pass-through, ...)"));
        };
        if self.terminal().is_none() {
            return Err(DownlinkError::NotReady);
        }
        if self.options.auth.is_some() && !self.authenticated {
            return Err(DownlinkError::NotAuthenticated);
        }
        let serial = self.next_serial;
        let bytes = self
            .command_frame(command)
            .ok_or_else(|| DownlinkError::Invalid(format!("0x{:04X} does not fit a frame", command.message_id())))?;
        Ok(FramedCommand { bytes, answer: Some(AnswerMatch { attribute: "reply_serial", value: u32::from(serial) }) })
    }

    fn set_now(&mut self, now: Timestamp) {
        self.now = Some(now);
    }

    fn take_frame_count(&mut self) -> u32 {
        self.driver.take_frames()
    }

    fn refused(&self) -> bool {
        self.refused
    }

    fn proven(&self) -> bool {
        self.options.auth.is_none() || self.authenticated
    }

    fn decode(&mut self, buf: &[u8], at_end: bool, out: &mut Vec<StreamEvent>) -> usize {
        self.expire(out);
        let used = drive(self, buf, at_end, out);
        if at_end && self.options.transport == Transport::Tcp {
            self.abandon_assemblies(out);
        }
        used
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        self.finish_stream(out);
    }
}

impl FrameHandler for Jt808Decoder {
    type Framer = Jt808Framer;
    const PROTOCOL: &'static str = "JT808";

    fn driver(&mut self) -> &mut Driver<Jt808Framer> {
        &mut self.driver
    }

    #[inline]
    fn frame(&mut self, frame: &[u8], at: u64, consumed: usize, out: &mut Vec<StreamEvent>) -> Result<u32, Reject> {
        if is_text(frame) {
            self.text_frame(frame, out);
            return Ok(1);
        }
        let escaped = inner(frame);
        // Flags alone (close-and-open) are not a frame and not an error.
        if escaped.is_empty() {
            return Ok(0);
        }
        let (start, _) = Self::rejected_span(frame, at);
        self.binary_frame(escaped, start, consumed, out).map(|()| 1)
    }

    /// The framer skips junk a piece at a time.
    fn merges(reason: &Reject, _len: usize) -> bool {
        reason.kind == RejectKind::Garbage
    }

    /// A bad frame is reported from its first byte after the opening flags.
    fn rejected_span(frame: &[u8], at: u64) -> (u64, usize) {
        let escaped = inner(frame);
        (at + (frame.len() - escaped.len()) as u64, escaped.len())
    }
}
