//! One TCP listener's accept loop and each connection's task: read, hand to the session,
//! deliver to the sink, write the acks, then the commands; nothing else is decided here.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tracing::{debug, warn};
use trackgate_codecs::Protocol;

use super::detect::Detected;
use super::open::{listener_counters, open};
use super::stream::DeviceStream;
use super::tls::DeviceTls;
use super::{deliver, log_payload, queue_commands, stopped, Shard};
use crate::ops::metrics::{self, Refusal};
use crate::protocol::{Listens, Transport};
use crate::registry::partial::{Holding, Shed};
use crate::registry::{ConnId, Control, IpSlot, TakeoverRefused};
use crate::session::{Claim, CloseReason, Output, Session, SessionSettings};

/// Accept errors that concern one queued connection only; anything else (out of
/// descriptors above all) pauses accepting so the loop never spins.
fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

pub(super) async fn accept_loop(
    shard: Arc<Shard>,
    protocol: Listens,
    settings: Arc<SessionSettings>,
    tls: Option<DeviceTls>,
    listener: TcpListener,
) {
    let mut conns = JoinSet::new();
    let mut stop = shard.stop.clone();
    let counters = || listener_counters(&shard, protocol);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if conns.len() >= shard.limits.max_connections_per_shard {
                        counters().refused(Refusal::ShardFull);
                        continue;
                    }
                    let Some(slot) = shard.registry.admit(peer.ip(), shard.limits.max_connections_per_ip) else {
                        counters().refused(Refusal::IpFull);
                        debug!(%protocol, %peer, "refused: too many connections from this address");
                        continue;
                    };
                    // Inherited from the listener on Linux (reuseport_socket).
                    if !cfg!(target_os = "linux") {
                        let _ = stream.set_nodelay(true);
                    }
                    let socket = Socket { tcp: stream, peer, slot, tls: tls.clone() };
                    conns.spawn(tcp_connection(shard.clone(), protocol, settings.clone(), socket));
                }
                Err(e) => {
                    shard.metrics().accept_error();
                    if !transient(&e) {
                        warn!(%protocol, error = %e, "accept failed; pausing accepts for 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Waits for a takeover or a command, or forever when the device has not identified itself.
async fn woken(control: &Option<Arc<Control>>) {
    match control {
        Some(c) => c.woken().await,
        None => std::future::pending().await,
    }
}

/// Writes the commands queued for the device, framed by its session, in one write; each
/// caller hears once its bytes are out, or why its command was refused. On an error the
/// callers of the written commands hear `Closed` (their senders are dropped).
async fn send_commands(
    control: &Control,
    session: &mut Session,
    stream: &mut DeviceStream,
    idle: Pin<&mut Sleep>,
    stop: &mut watch::Receiver<bool>,
    counters: &metrics::Listener,
) -> Result<(), CloseReason> {
    let mut out = Output::default();
    let written = queue_commands(control, session, &mut out, counters);
    if written.is_empty() {
        return Ok(());
    }
    let frames: Vec<u8> = out.transmit().flatten().copied().collect();
    debug!(protocol = %session.protocol(), commands = written.len(), "writing commands");
    if let Err(reason) = write_bounded(stream, &frames, idle, session.deadline(), stop).await {
        // Perhaps written in part: back in the queue, which the connection's release hands
        // on (held again, for commands sent with a hold). At least once, not at most.
        control.put_back(written.into_iter().map(|(queued, _)| queued).collect());
        return Err(reason);
    }
    for (queued, answer) in written {
        counters.command(true);
        let _ = queued.done.send(Ok(answer));
    }
    Ok(())
}

/// Writes to a device that may not be reading. Once the device's window and the socket's
/// send buffer are full the write waits: for the idle timeout at most, and not past a
/// shutdown, or one such device would hold its task (and the gateway's exit) forever.
async fn write_bounded(
    stream: &mut DeviceStream,
    bytes: &[u8],
    mut idle: Pin<&mut Sleep>,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), CloseReason> {
    let deadline = tokio::time::Instant::from_std(deadline);
    if idle.deadline() != deadline {
        idle.as_mut().reset(deadline);
    }
    tokio::select! {
        biased;
        r = stream.write_all(bytes) => r.map_err(|_| CloseReason::Error),
        _ = &mut idle => Err(CloseReason::Idle),
        _ = stopped(stop) => Err(CloseReason::Shutdown),
    }
}

/// The most a connection reads once shutdown has begun: what its device had sent before
/// (the kernel has acknowledged those bytes to it, and an NMEA device never resends) is
/// read, decoded and delivered, but a device that keeps sending cannot hold the shutdown.
const SHUTDOWN_READ_CAP: usize = 1 << 20;

/// A connection's turn: `Err` when the connection is over, and why.
type Turn = Result<(), CloseReason>;

/// One TCP connection's state between reads. Its task, [`tcp_connection`], goes round:
/// wait, read, hand the bytes to the session, deliver the records, write the answers.
struct Connection {
    shard: Arc<Shard>,
    protocol: Protocol,
    settings: Arc<SessionSettings>,
    stream: DeviceStream,
    peer: SocketAddr,
    conn: ConnId,
    session: Session,
    stop: watch::Receiver<bool>,
    /// Made when the device identifies itself: the registry's way to it.
    control: Option<Arc<Control>>,
    /// Allocated when bytes arrive and released when nothing is pending, so an idle plain
    /// connection holds no buffer (a TLS connection reads into it while it waits).
    buf: BytesMut,
    /// What a TLS read took while the connection waited, for [`Connection::read`].
    arrived: Option<usize>,
    /// Its share of the gateway's budget for partial frames.
    holding: Holding,
    out: Output,
    /// The answers of one read, written at once.
    replies: Vec<u8>,
    /// Once shutdown begins: the bytes read since (see `read_held`).
    stopping: Option<usize>,
}

/// An accepted connection, before its TLS handshake when its listener has TLS.
pub(super) struct Socket {
    pub(super) tcp: TcpStream,
    pub(super) peer: SocketAddr,
    /// Its place under the per-address cap, given back when the connection ends.
    pub(super) slot: IpSlot,
    pub(super) tls: Option<DeviceTls>,
}

pub(super) async fn tcp_connection(
    shard: Arc<Shard>,
    listens: Listens,
    settings: Arc<SessionSettings>,
    socket: Socket,
) {
    let Socket { tcp, peer, slot, tls } = socket;
    // In a block of its own, so that what the opening held is not kept in the connection's
    // future for its life.
    let (mut c, at_end) = {
        let opened = match (tls, listens) {
            (None, Listens::One(protocol)) => Some((DeviceStream::Plain(tcp), Detected::told(protocol))),
            // Boxed: a handshake's state (rustls's, a kilobyte and more) and the detection's
            // would otherwise make every connection's future that much larger for its life.
            (tls, listens) => Box::pin(open(&shard, listens, &settings, tls, tcp, peer)).await,
        };
        match opened {
            Some((stream, first)) => Connection::new(shard, settings, stream, peer, first),
            None => return,
        }
    };
    c.counters().opened();
    debug!(protocol = %c.protocol, %peer, conn = c.conn, "connection opened");
    let reason = c.run(at_end).await;
    c.close(reason).await;
    drop(slot);
}

impl Connection {
    /// A connection speaking `first.protocol`, with the bytes already read; and whether the
    /// device closed after them.
    fn new(
        shard: Arc<Shard>,
        settings: Arc<SessionSettings>,
        stream: DeviceStream,
        peer: SocketAddr,
        first: Detected,
    ) -> (Connection, bool) {
        let protocol = first.protocol;
        let c = Connection {
            conn: first.conn.unwrap_or_else(|| shard.registry.next_conn()),
            session: Session::new(protocol, &settings, Instant::now()),
            stop: shard.stop.clone(),
            shard,
            protocol,
            settings,
            stream,
            peer,
            control: None,
            buf: first.buf,
            arrived: None,
            holding: first.holding,
            out: Output::default(),
            replies: Vec::new(),
            stopping: first.stopping,
        };
        (c, first.at_end)
    }

    /// Goes round until the connection is over, and says why. Bytes already read (an `auto`
    /// listener's first bytes, which named the protocol) are taken first; `at_end` when the
    /// device closed after them.
    async fn run(&mut self, at_end: bool) -> CloseReason {
        // One timer for the connection's life, moved as the session's deadline moves: moving
        // a registered timer later touches no timer wheel, where a new timer per read would.
        let idle = tokio::time::sleep_until(self.session.deadline().into());
        tokio::pin!(idle);
        if !self.buf.is_empty() {
            self.took(self.buf.len());
            if let Err(reason) = self.receive(at_end, idle.as_mut()).await {
                return reason;
            }
        }
        loop {
            self.move_deadline(idle.as_mut());
            if self.stopping.is_none() {
                match self.wait(idle.as_mut()).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(reason) => return reason,
                }
            }
            let at_end = match self.read() {
                Ok(Some(at_end)) => at_end,
                Ok(None) => continue,
                Err(reason) => return reason,
            };
            if let Err(reason) = self.receive(at_end, idle.as_mut()).await {
                return reason;
            }
        }
    }

    /// Counts the last `n` bytes of the buffer as read, and logs them where asked.
    fn took(&mut self, n: usize) {
        self.counters().bytes_in(n);
        if self.settings.log_payloads {
            log_payload(self.protocol, Transport::Tcp, self.peer, &self.buf[self.buf.len() - n..]);
        }
    }

    fn counters(&self) -> &metrics::Listener {
        self.shard.metrics().listener(self.protocol, Transport::Tcp)
    }

    /// Moves the idle timer to the session's deadline.
    fn move_deadline(&self, idle: Pin<&mut Sleep>) {
        let deadline = tokio::time::Instant::from_std(self.session.deadline());
        if idle.deadline() != deadline {
            idle.reset(deadline);
        }
    }

    /// Waits until the socket is readable (true), or shutdown begins (true: what the socket
    /// holds is read next), or a command was written or refused (false).
    async fn wait(&mut self, mut idle: Pin<&mut Sleep>) -> Result<bool, CloseReason> {
        tokio::select! {
            biased;
            _ = stopped(&mut self.stop) => {
                self.stopping = Some(0);
                Ok(true)
            }
            _ = woken(&self.control) => self.commands(idle).await.map(|()| false),
            _ = &mut idle => Err(self.session.timeout_reason()),
            _ = self.holding.shed_wait() => Err(CloseReason::PartialBudget),
            r = self.stream.arrived(&mut self.buf, self.shard.limits.read_buffer) => match r {
                Ok(arrived) => {
                    self.arrived = arrived;
                    Ok(true)
                }
                Err(e) => {
                    debug!(protocol = %self.protocol, peer = %self.peer, error = %e, "read failed");
                    Err(CloseReason::Error)
                }
            },
        }
    }

    /// A takeover closes the connection; otherwise the commands queued for the device go out.
    async fn commands(&mut self, idle: Pin<&mut Sleep>) -> Turn {
        let Some(control) = &self.control else { return Ok(()) };
        if control.kicked() {
            return Err(CloseReason::Takeover);
        }
        let counters = self.shard.metrics().listener(self.protocol, Transport::Tcp);
        // Boxed: commands are rare, and their state would otherwise make every connection's
        // future larger for its whole life.
        let sent =
            Box::pin(send_commands(control, &mut self.session, &mut self.stream, idle, &mut self.stop, counters));
        sent.await.inspect_err(|reason| {
            debug!(protocol = %self.protocol, peer = %self.peer, conn = self.conn, reason = reason.label(), "writing commands ended the connection");
        })
    }

    /// Reads what the socket holds: whether the stream ended, or `None` after a wake-up that
    /// found nothing.
    fn read(&mut self) -> Result<Option<bool>, CloseReason> {
        let read = match (self.arrived.take(), self.stopping) {
            // Read while waiting (TLS), into room it made.
            (Some(n), _) => Ok(n),
            (None, stopping) => {
                self.buf.reserve(self.shard.limits.read_buffer);
                match stopping {
                    Some(_) => self.stream.read_held(&mut self.buf),
                    None => self.stream.read_drained(&mut self.buf),
                }
            }
        };
        match read {
            Ok(0) => Ok(Some(true)),
            Ok(n) => {
                self.took(n);
                if let Some(held) = &mut self.stopping {
                    *held += n;
                }
                Ok(Some(false))
            }
            // Everything the device had sent before the shutdown has been read.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.stopping.is_some() => Err(CloseReason::Shutdown),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A spurious wake-up: keep no buffer for it.
                if self.buf.is_empty() {
                    self.buf = BytesMut::new();
                }
                Ok(None)
            }
            Err(e) => {
                debug!(protocol = %self.protocol, peer = %self.peer, error = %e, "read failed");
                Err(CloseReason::Error)
            }
        }
    }

    /// Hands what was read to the session, claims the device when it says so, delivers the
    /// records and only then writes the answers, in one write.
    async fn receive(&mut self, at_end: bool, idle: Pin<&mut Sleep>) -> Turn {
        self.out.clear();
        let now = Instant::now();
        let step = self.session.receive(&self.buf, at_end, now, SystemTime::now(), &mut self.out);
        self.buf.advance(step.used);
        if self.buf.is_empty() {
            // Nothing pending: the read buffer goes before the wait for the sink, so
            // thousands of connections waiting on one commit hold no read buffers.
            self.buf = BytesMut::new();
        }
        let shed = self.hold_partial(now);
        if self.out.frames > 0 {
            if let Some(c) = &self.control {
                c.heard(now);
            }
        }
        if let Some(claim) = &step.claim {
            self.claim(claim, now).await;
        }
        self.mark_unclaimed();
        if !deliver(&self.shard, self.protocol, Transport::Tcp, self.peer, &mut self.out).await {
            return Err(CloseReason::SinkFailed);
        }
        self.write_replies(idle).await?;
        if let Some(reason) = step.close {
            return Err(reason);
        }
        // After the acks: the frames before the partial one are the device's, and stored.
        shed?;
        if at_end {
            return Err(CloseReason::Eof);
        }
        if self.stopping.is_some_and(|held| held >= SHUTDOWN_READ_CAP) {
            return Err(CloseReason::Shutdown);
        }
        if self.buf.is_empty() {
            // Nothing pending: give back the output's vectors too, so an idle connection
            // holds none of them (a vector of records alone is a kilobyte).
            self.replies = Vec::new();
            self.out.shrink();
        }
        Ok(())
    }

    /// Tells the budget what the partial frame now holds: the buffer's capacity, which is
    /// what it costs. `Err` when the budget sheds this connection.
    fn hold_partial(&mut self, now: Instant) -> Turn {
        let held = if self.buf.is_empty() { 0 } else { self.buf.capacity() };
        self.shard.registry.partial.hold(&mut self.holding, self.conn, held, now).map_err(|Shed| {
            debug!(protocol = %self.protocol, peer = %self.peer, conn = self.conn, "closing a partial sender: partial frames are past their budget");
            CloseReason::PartialBudget
        })
    }

    /// Holds the device the session now claims, or, refused by the takeover policy, leaves
    /// it to its live connection elsewhere (on this node or, asked first, another): this
    /// connection's records are then marked `takeover_refused`, and the session tries again
    /// a second later.
    async fn claim(&mut self, claim: &Claim, now: Instant) {
        let Some(device_id) = self.session.claimed() else { return };
        let (registry, ip) = (&self.shard.registry, self.peer.ip());
        let kept_elsewhere = match registry.asks_first(self.protocol, device_id, ip) {
            // Boxed: rare, and its state would otherwise grow every connection's future.
            Some(node) => !Box::pin(registry.may_take_from(node, self.protocol, device_id, ip)).await,
            None => false,
        };
        release_previous(&self.shard, self.protocol, self.conn, &mut self.control, claim);
        let claimed = match kept_elsewhere {
            true => Err(TakeoverRefused),
            false => claim_device(&self.shard, self.protocol, self.conn, &mut self.control, device_id, ip),
        };
        match claimed {
            Ok(true) => {
                debug!(protocol = %self.protocol, peer = %self.peer, conn = self.conn, "device logged in again; its older connection is closed");
            }
            Ok(false) => {}
            Err(TakeoverRefused) => {
                self.session.claim_refused(now);
                self.counters().takeover_refused();
                // No device id at warn level: the count and the protocol show the conflict.
                warn!(protocol = %self.protocol, "a login for a device held by a live connection from another address was refused; this connection's records are marked takeover_refused");
            }
        }
    }

    /// Marks the records of a connection that speaks for a device it could not claim.
    fn mark_unclaimed(&mut self) {
        if self.session.claim_refused_now() {
            for r in &mut self.out.records {
                r.attributes.set("takeover_refused", true);
            }
        }
    }

    /// Writes what the session has for the device, once its records are in the sink.
    async fn write_replies(&mut self, idle: Pin<&mut Sleep>) -> Turn {
        self.replies.clear();
        for r in self.out.transmit() {
            self.replies.extend_from_slice(r);
        }
        if self.replies.is_empty() {
            return Ok(());
        }
        let deadline = self.session.deadline();
        write_bounded(&mut self.stream, &self.replies, idle, deadline, &mut self.stop).await.inspect_err(|reason| {
            // Idle or shutdown here: the device is not reading its acks.
            debug!(protocol = %self.protocol, peer = %self.peer, conn = self.conn, reason = reason.label(), "writing acks ended the connection");
        })
    }

    /// The connection is over. A partial frame held at shutdown or timeout is not a frame:
    /// it is judged, then the decoder reports anything else it held. Nothing here is
    /// acknowledged: the peer is gone or going.
    async fn close(&mut self, reason: CloseReason) {
        self.out.clear();
        if !self.buf.is_empty() && reason != CloseReason::Eof {
            self.session.receive(&self.buf, true, Instant::now(), SystemTime::now(), &mut self.out);
        }
        self.session.finish(SystemTime::now(), &mut self.out);
        if !self.out.is_empty() {
            deliver(&self.shard, self.protocol, Transport::Tcp, self.peer, &mut self.out).await;
        }
        if reason == CloseReason::Shutdown {
            // Tell the device we are going rather than leave it to find out.
            self.stream.shutdown().await;
        }
        if let (Some(id), Some(c)) = (self.session.claimed(), &self.control) {
            self.shard.registry.release(self.protocol, id, self.conn, c);
        }
        self.shard.registry.partial.release(&mut self.holding);
        self.counters().closed(reason);
        debug!(protocol = %self.protocol, peer = %self.peer, conn = self.conn, reason = reason.label(), "connection closed");
    }
}

/// Gives up the device `claim` releases (releasing closes that device's command queue: the
/// new device gets a new one).
fn release_previous(
    shard: &Shard,
    protocol: Protocol,
    conn: ConnId,
    control: &mut Option<Arc<Control>>,
    claim: &Claim,
) {
    if let (Some(previous), Some(c)) = (&claim.release, control.take()) {
        shard.registry.release(protocol, previous, conn, &c);
    }
}

/// Holds `device_id` for this connection from `ip`. True when an older connection of the
/// device was closed for it; refused by the takeover policy.
fn claim_device(
    shard: &Shard,
    protocol: Protocol,
    conn: ConnId,
    control: &mut Option<Arc<Control>>,
    device_id: &str,
    ip: IpAddr,
) -> Result<bool, TakeoverRefused> {
    let c = control.get_or_insert_with(|| Arc::new(Control::default())).clone();
    Ok(shard.registry.claim_from(protocol, device_id, conn, shard.index, c, ip)?.is_some())
}
