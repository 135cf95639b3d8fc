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
use trackgate_codecs::{AnswerMatch, Protocol};

use super::{deliver, log_payload, queue_commands, stopped, Shard};
use crate::ops::metrics;
use crate::protocol::Transport;
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

/// One UDP socket's state: its peers and the batch being decoded.
struct UdpListener {
    shard: Arc<Shard>,
    protocol: Protocol,
    settings: Arc<SessionSettings>,
    socket: UdpSocket,
    peers: HashMap<SocketAddr, UdpPeer>,
    datagram: Vec<u8>,
    out: Output,
    /// Replies wait here, addressed, until the sink has accepted the batch's records.
    replies: Vec<(SocketAddr, Vec<u8>)>,
    /// The identified peers heard from in the batch: their devices' commands go out after
    /// the replies.
    heard: Vec<SocketAddr>,
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

pub(super) async fn udp_loop(shard: Arc<Shard>, protocol: Protocol, settings: Arc<SessionSettings>, socket: UdpSocket) {
    let sweep_every = (settings.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = shard.stop.clone();
    let mut l = UdpListener {
        shard,
        protocol,
        settings,
        socket,
        peers: HashMap::new(),
        datagram: vec![0u8; 65_536],
        out: Output::default(),
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
    fn counters(&self) -> &metrics::Listener {
        self.shard.metrics().listener(self.protocol, Transport::Udp)
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
                    warn!(protocol = %self.protocol, error = %e, "cannot read the UDP datagrams held at shutdown");
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
        let expired: Vec<SocketAddr> =
            self.peers.iter().filter(|(_, p)| p.session.expired(now)).map(|(a, _)| *a).collect();
        self.out.clear();
        for addr in &expired {
            if let Some(mut p) = self.peers.remove(addr) {
                p.session.finish(SystemTime::now(), &mut self.out);
                self.counters().closed(CloseReason::Idle);
            }
        }
        if !self.out.is_empty() {
            let any = expired.first().copied().unwrap_or(([0, 0, 0, 0], 0).into());
            deliver(&self.shard, self.protocol, Transport::Udp, any, &mut self.out).await;
        }
    }

    /// Decodes `first` and the datagrams already waiting behind it (up to a batch) into one
    /// sink hand-over. Returns the last peer heard, if any datagram came through.
    fn decode_batch(&mut self, first: io::Result<(usize, SocketAddr)>) -> Option<SocketAddr> {
        self.out.clear();
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
                Err(e) => debug!(protocol = %self.protocol, error = %e, "UDP receive failed"),
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

    /// One datagram of `n` bytes from `peer`, to its session.
    fn decode(&mut self, n: usize, peer: SocketAddr) {
        let counters = self.shard.metrics().listener(self.protocol, Transport::Udp);
        counters.bytes_in(n);
        if self.settings.log_payloads {
            log_payload(self.protocol, Transport::Udp, peer, &self.datagram[..n]);
        }
        let now = Instant::now();
        make_room(&mut self.peers, peer, self.shard.limits.max_udp_peers, now, &mut self.out, counters);
        let (protocol, settings) = (self.protocol, &self.settings);
        let p = self.peers.entry(peer).or_insert_with(|| {
            counters.opened();
            UdpPeer::new(Session::new(protocol, settings, now))
        });
        if p.session.expired(now) {
            // A peer silent past the idle timeout starts over, as a new TCP connection would.
            p.session.finish(SystemTime::now(), &mut self.out);
            p.session = Session::new(protocol, settings, now);
        }
        let before = self.out.replies.len();
        if p.receive(&self.datagram[..n], now, &mut self.out).claim.is_some() {
            p.claim(&self.shard.registry, self.shard.index, protocol, now);
        }
        self.replies.extend(self.out.replies.drain(before..).map(|r| (peer, r)));
        if p.claim.is_some() && !self.heard.contains(&peer) {
            self.heard.push(peer);
        }
    }

    /// Delivers the batch's records; once the sink has them, the acks they earned go out,
    /// then the commands waiting for the devices heard. `peer` names the batch in logs.
    async fn answer(&mut self, peer: SocketAddr) {
        if !deliver(&self.shard, self.protocol, Transport::Udp, peer, &mut self.out).await {
            return;
        }
        for (to, reply) in &self.replies {
            if let Err(e) = self.socket.send_to(reply, to).await {
                debug!(protocol = %self.protocol, peer = %to, error = %e, "UDP reply failed");
            }
        }
        let counters = self.shard.metrics().listener(self.protocol, Transport::Udp);
        counters.delivered(0, self.replies.len());
        for addr in &self.heard {
            if let Some(p) = self.peers.get_mut(addr) {
                send_commands(&self.socket, *addr, p, &mut self.out, counters).await;
            }
        }
    }

    /// Shutdown: every peer's session ends; what it held is reported.
    async fn close(&mut self) {
        self.out.clear();
        let counters = self.shard.metrics().listener(self.protocol, Transport::Udp);
        for (_, mut p) in self.peers.drain() {
            p.session.finish(SystemTime::now(), &mut self.out);
            counters.closed(CloseReason::Shutdown);
        }
        if !self.out.is_empty() {
            deliver(&self.shard, self.protocol, Transport::Udp, ([0, 0, 0, 0], 0).into(), &mut self.out).await;
        }
    }
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
/// the one heard from least recently. Their sessions are finished into `out`.
fn make_room(
    peers: &mut HashMap<SocketAddr, UdpPeer>,
    peer: SocketAddr,
    cap: usize,
    now: Instant,
    out: &mut Output,
    counters: &metrics::Listener,
) {
    if peers.contains_key(&peer) || peers.len() < cap {
        return;
    }
    let expired: Vec<SocketAddr> = peers.iter().filter(|(_, p)| p.session.expired(now)).map(|(a, _)| *a).collect();
    for addr in expired {
        if let Some(mut p) = peers.remove(&addr) {
            p.session.finish(SystemTime::now(), out);
            counters.closed(CloseReason::Idle);
        }
    }
    if peers.len() >= cap {
        if let Some(oldest) = peers.iter().min_by_key(|(_, p)| p.session.deadline()).map(|(a, _)| *a) {
            if let Some(mut p) = peers.remove(&oldest) {
                p.session.finish(SystemTime::now(), out);
                counters.closed(CloseReason::Idle);
            }
        }
    }
}
