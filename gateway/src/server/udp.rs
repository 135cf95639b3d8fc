//! One UDP socket's loop: each datagram to its peer's session, a batch of them delivered to
//! the sink at once, then the acks and the commands waiting for those peers' devices.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{debug, warn};
use trackgate_codecs::detect::detect_datagram;
use trackgate_codecs::framing::RejectKind;
use trackgate_codecs::{AnswerMatch, Protocol, Reply};

use super::{deliver, log_payload, queue_commands, stopped, Shard};
use crate::ops::metrics;
use crate::protocol::{serves, Listens, Transport};
use crate::registry::{ConnId, Control, QueuedCommand, Registry};
use crate::session::{CloseReason, Output, Session, SessionSettings, Step};

pub(super) struct UdpPeer {
    pub(super) session: Session,
    /// Where commands for the peer's device wait: UDP has no connection to wake, so they
    /// go out with the replies to the device's next datagram (a device behind NAT can only
    /// be reached just after it sends).
    pub(super) claim: Option<UdpClaim>,
}

/// A UDP peer's hold on its device in the registry, given back when the peer is forgotten
/// (idle, evicted, shutdown), whichever way that happens.
pub(super) struct UdpClaim {
    registry: Arc<Registry>,
    protocol: Protocol,
    device_id: Box<str>,
    conn: ConnId,
    control: Arc<Control>,
}

impl Drop for UdpClaim {
    fn drop(&mut self) {
        self.registry.release(self.protocol, &self.device_id, self.conn, &self.control);
    }
}

impl UdpPeer {
    pub(super) fn new(session: Session) -> Self {
        UdpPeer { session, claim: None }
    }

    /// Decodes one datagram. A peer whose device was taken over by another connection since
    /// it last spoke claims it again now, as the session decides.
    pub(super) fn receive(&mut self, datagram: &[u8], now: Instant, out: &mut Output) -> Step {
        if self.claim.as_ref().is_some_and(|c| c.control.kicked()) {
            self.claim = None;
            self.session.claim_lost();
        }
        // A datagram is complete in itself: nothing after it can finish a frame it started.
        self.session.receive(datagram, true, now, SystemTime::now(), out)
    }

    /// Holds the device the session now claims, giving back what the peer held (a UDP peer
    /// holds one device at a time, so whatever the step released is this); a refusal (a TCP
    /// connection holds the device) goes back to the session, which tries again later.
    pub(super) fn claim(&mut self, registry: &Arc<Registry>, shard: usize, protocol: Protocol, now: Instant) {
        self.claim = None;
        let Some(device_id) = self.session.claimed() else { return };
        let control = Arc::new(Control::default());
        let conn = registry.next_conn();
        if registry.claim_udp(protocol, device_id, conn, shard, control.clone()) {
            let (registry, device_id) = (registry.clone(), device_id.into());
            self.claim = Some(UdpClaim { registry, protocol, device_id, conn, control });
        } else {
            self.session.claim_refused(now);
        }
    }

    /// Frames the commands queued for the peer's device into `out.commands`; returns who to
    /// tell once they are sent, in the same order.
    fn commands(
        &mut self,
        out: &mut Output,
        counters: &metrics::Listener,
    ) -> Vec<(QueuedCommand, Option<AnswerMatch>)> {
        let Some(claim) = &self.claim else { return Vec::new() };
        queue_commands(&claim.control, &mut self.session, out, counters)
    }
}

/// Datagrams taken from the socket per sink hand-over.
const UDP_BATCH: usize = 64;

/// The most datagrams a UDP socket reads once shutdown has begun: those sent before are
/// read, but devices that keep sending cannot hold the shutdown.
const SHUTDOWN_DATAGRAM_CAP: usize = 1 << 16;

/// A peer: its address and the protocol it speaks (on an `auto` listener, one address
/// could speak two, each its own peer).
type PeerKey = (SocketAddr, Protocol);

/// What a batch gave, one output per protocol: the sink and the counters take each
/// protocol's apart (a one-protocol listener uses one of them).
struct Outputs([Output; 4]);

impl Outputs {
    fn of(&mut self, p: Protocol) -> &mut Output {
        let i = Protocol::ALL.iter().position(|&q| q == p).unwrap_or(0);
        &mut self.0[i]
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(Output::clear);
    }

    /// Each protocol with its output, where there is anything to deliver.
    fn pending(&mut self) -> impl Iterator<Item = (Protocol, &mut Output)> {
        Protocol::ALL.into_iter().zip(self.0.iter_mut()).filter(|(_, o)| !o.is_empty())
    }
}

/// One UDP socket's state: its peers and the batch being decoded.
struct UdpListener {
    shard: Arc<Shard>,
    listens: Listens,
    settings: Arc<SessionSettings>,
    socket: UdpSocket,
    peers: HashMap<PeerKey, UdpPeer>,
    datagram: Vec<u8>,
    outs: Outputs,
    /// Replies wait here, addressed, until the sink has accepted the batch's records.
    replies: Vec<(PeerKey, Reply)>,
    /// The identified peers heard from in the batch: their devices' commands go out after
    /// the replies.
    heard: Vec<PeerKey>,
    /// Once shutdown begins, the datagrams the socket already holds are still read (NMEA
    /// devices never resend): through this second handle to the socket, which reads without
    /// waiting for tokio to learn of them, and with the count read so far.
    stopping: Option<(std::net::UdpSocket, usize)>,
}

/// What the socket gave.
enum Next {
    Datagram(io::Result<(usize, SocketAddr)>),
    /// Something else was done (shutdown begun, a sweep); wait again.
    Again,
    /// Nothing more will be read.
    Done,
}

pub(super) async fn udp_loop(shard: Arc<Shard>, listens: Listens, settings: Arc<SessionSettings>, socket: UdpSocket) {
    let sweep_every = (settings.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = shard.stop.clone();
    let mut l = UdpListener {
        shard,
        listens,
        settings,
        socket,
        peers: HashMap::new(),
        datagram: vec![0u8; 65_536],
        outs: Outputs(std::array::from_fn(|_| Output::default())),
        replies: Vec::new(),
        heard: Vec::new(),
        stopping: None,
    };
    loop {
        match l.next(&mut stop, &mut sweep).await {
            Next::Datagram(first) => {
                if let Some(peer) = l.decode_batch(first) {
                    l.answer(peer).await;
                }
            }
            Next::Again => {}
            Next::Done => break,
        }
    }
    l.close().await;
}

impl UdpListener {
    fn counters(&self, protocol: Protocol) -> &metrics::Listener {
        self.shard.metrics().listener(protocol, Transport::Udp)
    }

    /// Waits for a datagram; on the way, begins the shutdown or sweeps idle peers.
    async fn next(&mut self, stop: &mut watch::Receiver<bool>, sweep: &mut tokio::time::Interval) -> Next {
        if let Some((held, taken)) = &self.stopping {
            if *taken >= SHUTDOWN_DATAGRAM_CAP {
                return Next::Done;
            }
            return match held.recv_from(&mut self.datagram) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Done,
                r => Next::Datagram(r),
            };
        }
        tokio::select! {
            // Shutdown first, as in `tcp_connection`: what the socket holds is read after.
            biased;
            _ = stopped(stop) => match socket2::SockRef::from(&self.socket).try_clone() {
                Ok(held) => {
                    self.stopping = Some((held.into(), 0));
                    Next::Again
                }
                Err(e) => {
                    warn!(protocol = %self.listens, error = %e, "cannot read the UDP datagrams held at shutdown");
                    Next::Done
                }
            },
            _ = sweep.tick() => {
                self.sweep().await;
                Next::Again
            }
            r = self.socket.recv_from(&mut self.datagram) => Next::Datagram(r),
        }
    }

    /// Forgets peers silent past the idle timeout; what they held is reported.
    async fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerKey> =
            self.peers.iter().filter(|(_, p)| p.session.expired(now)).map(|(k, _)| *k).collect();
        self.outs.clear();
        for key in &expired {
            if let Some(p) = self.peers.remove(key) {
                forget(p, key.1, self.outs.of(key.1), self.shard.metrics(), CloseReason::Idle);
            }
        }
        let any = expired.first().map_or(([0, 0, 0, 0], 0).into(), |k| k.0);
        self.deliver_all(any).await;
    }

    /// Decodes `first` and the datagrams already waiting behind it (up to a batch) into one
    /// sink hand-over. Returns the last peer heard, if any datagram came through.
    fn decode_batch(&mut self, first: io::Result<(usize, SocketAddr)>) -> Option<SocketAddr> {
        self.outs.clear();
        self.replies.clear();
        self.heard.clear();
        let mut next = Some(first);
        let (mut taken, mut last_peer) = (0, None);
        while let Some(received) = next.take() {
            taken += 1;
            match received {
                Ok((n, peer)) => {
                    self.decode(n, peer);
                    last_peer = Some(peer);
                }
                Err(e) => debug!(protocol = %self.listens, error = %e, "UDP receive failed"),
            }
            if taken < UDP_BATCH {
                next = self.waiting();
            }
        }
        if let Some((_, held)) = &mut self.stopping {
            *held += taken;
        }
        last_peer
    }

    /// A datagram that is already waiting, if any.
    fn waiting(&mut self) -> Option<io::Result<(usize, SocketAddr)>> {
        let more = match &self.stopping {
            Some((held, _)) => held.recv_from(&mut self.datagram),
            None => self.socket.try_recv_from(&mut self.datagram),
        };
        match more {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            r => Some(r),
        }
    }

    /// The protocol of a datagram of `n` bytes: the listener's, or on an `auto` listener
    /// what the datagram's own first bytes say. `None` (counted) when it names none that is
    /// served over UDP.
    fn protocol_of(&self, n: usize, peer: SocketAddr) -> Option<Protocol> {
        let found = match self.listens {
            Listens::One(p) => return Some(p),
            Listens::Auto => detect_datagram(&self.datagram[..n]).filter(|&p| serves(p, Transport::Udp)),
        };
        if found.is_none() {
            let counters = self.shard.metrics().undetected(Transport::Udp);
            counters.bytes_in(n);
            counters.rejected(RejectKind::Garbage);
            counters.rejected_bytes(n as u64);
            debug!(%peer, bytes = n, "a datagram to an auto listener named no protocol");
        }
        found
    }

    /// One datagram of `n` bytes from `peer`, to its session.
    fn decode(&mut self, n: usize, peer: SocketAddr) {
        let Some(protocol) = self.protocol_of(n, peer) else { return };
        let counters = self.shard.metrics().listener(protocol, Transport::Udp);
        counters.bytes_in(n);
        if self.settings.log_payloads {
            log_payload(protocol, Transport::Udp, peer, &self.datagram[..n]);
        }
        let now = Instant::now();
        let key = (peer, protocol);
        make_room(&mut self.peers, key, self.shard.limits.max_udp_peers, now, &mut self.outs, self.shard.metrics());
        let (settings, out) = (&self.settings, self.outs.of(protocol));
        let p = self.peers.entry(key).or_insert_with(|| {
            counters.opened();
            UdpPeer::new(Session::new(protocol, settings, now))
        });
        if p.session.expired(now) {
            // A peer silent past the idle timeout starts over, as a new TCP connection would.
            p.session.finish(SystemTime::now(), out);
            p.session = Session::new(protocol, settings, now);
        }
        let before = out.replies.len();
        if p.receive(&self.datagram[..n], now, out).claim.is_some() {
            p.claim(&self.shard.registry, self.shard.index, protocol, now);
        }
        self.replies.extend(out.replies.drain(before..).map(|r| (key, r)));
        if p.claim.is_some() && !self.heard.contains(&key) {
            self.heard.push(key);
        }
    }

    /// Hands each protocol's records to the sink; false when the sink refused (nothing may
    /// be acknowledged). `peer` names the hand-over in logs.
    async fn deliver_all(&mut self, peer: SocketAddr) -> bool {
        for (protocol, out) in self.outs.pending() {
            if !deliver(&self.shard, protocol, Transport::Udp, peer, out).await {
                return false;
            }
        }
        true
    }

    /// Delivers the batch's records; once the sink has them, the acks they earned go out,
    /// then the commands waiting for the devices heard. `peer` names the batch in logs.
    async fn answer(&mut self, peer: SocketAddr) {
        if !self.deliver_all(peer).await {
            return;
        }
        for ((to, protocol), reply) in &self.replies {
            match self.socket.send_to(reply, to).await {
                Ok(_) => self.counters(*protocol).delivered(0, 1),
                Err(e) => debug!(%protocol, peer = %to, error = %e, "UDP reply failed"),
            }
        }
        let out = self.outs.of(Protocol::ALL[0]);
        for key in &self.heard {
            if let Some(p) = self.peers.get_mut(key) {
                let counters = self.shard.metrics().listener(key.1, Transport::Udp);
                send_commands(&self.socket, key.0, p, out, counters).await;
            }
        }
    }

    /// Shutdown: every peer's session ends; what it held is reported.
    async fn close(&mut self) {
        self.outs.clear();
        for ((_, protocol), p) in self.peers.drain() {
            forget(p, protocol, self.outs.of(protocol), self.shard.metrics(), CloseReason::Shutdown);
        }
        self.deliver_all(([0, 0, 0, 0], 0).into()).await;
    }
}

/// A peer is forgotten: its session ends (what it held goes into `out`) and is counted.
fn forget(mut p: UdpPeer, protocol: Protocol, out: &mut Output, metrics: &metrics::ShardMetrics, why: CloseReason) {
    p.session.finish(SystemTime::now(), out);
    metrics.listener(protocol, Transport::Udp).closed(why);
}

/// Writes the commands waiting for the peer's device, one datagram each. A command whose
/// datagram could not be sent goes back in the queue, in order with the others not sent, for
/// after the device's next datagram (or held again when the peer is forgotten, if it was
/// sent with a hold).
async fn send_commands(
    socket: &UdpSocket,
    to: SocketAddr,
    peer: &mut UdpPeer,
    out: &mut Output,
    counters: &metrics::Listener,
) {
    out.clear();
    let framed = peer.commands(out, counters);
    let mut unsent = Vec::new();
    for ((queued, answer), bytes) in framed.into_iter().zip(&out.commands) {
        match socket.send_to(bytes, to).await {
            Ok(_) => {
                counters.command(true);
                let _ = queued.done.send(Ok(answer));
            }
            Err(e) => {
                debug!(peer = %to, error = %e, "UDP command failed");
                unsent.push(queued);
            }
        }
    }
    if let (false, Some(claim)) = (unsent.is_empty(), &peer.claim) {
        claim.control.put_back(unsent);
    }
}

/// Keeps the peer table within its cap before `peer` is added: expired peers go first, then
/// the one heard from least recently. Their sessions are finished into `outs`.
fn make_room(
    peers: &mut HashMap<PeerKey, UdpPeer>,
    peer: PeerKey,
    cap: usize,
    now: Instant,
    outs: &mut Outputs,
    metrics: &metrics::ShardMetrics,
) {
    if peers.contains_key(&peer) || peers.len() < cap {
        return;
    }
    let expired: Vec<PeerKey> = peers.iter().filter(|(_, p)| p.session.expired(now)).map(|(k, _)| *k).collect();
    for key in expired {
        if let Some(p) = peers.remove(&key) {
            forget(p, key.1, outs.of(key.1), metrics, CloseReason::Idle);
        }
    }
    if peers.len() >= cap {
        if let Some(oldest) = peers.iter().min_by_key(|(_, p)| p.session.deadline()).map(|(k, _)| *k) {
            if let Some(p) = peers.remove(&oldest) {
                forget(p, oldest.1, outs.of(oldest.1), metrics, CloseReason::Idle);
            }
        }
    }
}
