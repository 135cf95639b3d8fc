//! One UDP socket's loop: each datagram to its peer's session, a batch of them delivered to
//! the sink at once, then the acks and the commands waiting for those peers' devices.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::UdpSocket;
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

pub(super) async fn udp_loop(shard: Arc<Shard>, protocol: Protocol, settings: Arc<SessionSettings>, socket: UdpSocket) {
    let counters = shard.metrics().listener(protocol, Transport::Udp);
    let mut peers: HashMap<SocketAddr, UdpPeer> = HashMap::new();
    let mut datagram = vec![0u8; 65_536];
    let mut stop = shard.stop.clone();
    let mut out = Output::default();
    // Replies wait here, addressed, until the sink has accepted the batch's records.
    let mut replies: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let sweep_every = (settings.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Once shutdown begins, the datagrams the socket already holds are still read (NMEA
    // devices never resend): through this second handle to the socket, which reads without
    // waiting for tokio to learn of them, and with the count read so far.
    let mut stopping: Option<(std::net::UdpSocket, usize)> = None;
    loop {
        let first = if let Some((held, taken)) = &stopping {
            if *taken >= SHUTDOWN_DATAGRAM_CAP {
                break;
            }
            match held.recv_from(&mut datagram) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                r => r,
            }
        } else {
            tokio::select! {
                // Shutdown first, as in `tcp_connection`: what the socket holds is read after.
                biased;
                _ = stopped(&mut stop) => {
                    match socket2::SockRef::from(&socket).try_clone() {
                        Ok(held) => stopping = Some((held.into(), 0)),
                        Err(e) => {
                            warn!(%protocol, error = %e, "cannot read the UDP datagrams held at shutdown");
                            break;
                        }
                    }
                    continue;
                }
                _ = sweep.tick() => {
                    // Forget peers silent past the idle timeout; what they held is reported.
                    let now = Instant::now();
                    let expired: Vec<SocketAddr> =
                        peers.iter().filter(|(_, p)| p.session.expired(now)).map(|(a, _)| *a).collect();
                    out.clear();
                    for addr in &expired {
                        if let Some(mut p) = peers.remove(addr) {
                            p.session.finish(SystemTime::now(), &mut out);
                            counters.closed(CloseReason::Idle);
                        }
                    }
                    if !out.is_empty() {
                        let any = expired.first().copied().unwrap_or(([0, 0, 0, 0], 0).into());
                        deliver(&shard, protocol, Transport::Udp, any, &mut out).await;
                    }
                    continue;
                }
                r = socket.recv_from(&mut datagram) => r,
            }
        };
        out.clear();
        replies.clear();
        // The identified peers heard from in this batch: their devices' commands go out
        // after the replies.
        let mut heard: Vec<SocketAddr> = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        let mut last_peer = None;
        while let Some(received) = next.take() {
            taken += 1;
            match received {
                Ok((n, peer)) => {
                    counters.bytes_in(n);
                    if settings.log_payloads {
                        log_payload(protocol, Transport::Udp, peer, &datagram[..n]);
                    }
                    let now = Instant::now();
                    make_room(&mut peers, peer, shard.limits.max_udp_peers, now, &mut out, counters);
                    let p = peers.entry(peer).or_insert_with(|| {
                        counters.opened();
                        UdpPeer::new(Session::new(protocol, &settings, now))
                    });
                    if p.session.expired(now) {
                        // A peer silent past the idle timeout starts over, as a new TCP
                        // connection would.
                        p.session.finish(SystemTime::now(), &mut out);
                        p.session = Session::new(protocol, &settings, now);
                    }
                    let before = out.replies.len();
                    if p.receive(&datagram[..n], now, &mut out).claim.is_some() {
                        p.claim(&shard.registry, shard.index, protocol, now);
                    }
                    replies.extend(out.replies.drain(before..).map(|r| (peer, r)));
                    if p.claim.is_some() && !heard.contains(&peer) {
                        heard.push(peer);
                    }
                    last_peer = Some(peer);
                }
                Err(e) => debug!(%protocol, error = %e, "UDP receive failed"),
            }
            if taken < UDP_BATCH {
                // More already waiting: decode it into the same sink hand-over.
                let more = match &stopping {
                    Some((held, _)) => held.recv_from(&mut datagram),
                    None => socket.try_recv_from(&mut datagram),
                };
                match more {
                    Ok(x) => next = Some(Ok(x)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => next = Some(Err(e)),
                }
            }
        }
        if let Some((_, held)) = &mut stopping {
            *held += taken;
        }
        let Some(peer) = last_peer else { continue };
        if !deliver(&shard, protocol, Transport::Udp, peer, &mut out).await {
            continue;
        }
        // The acks the sink commit earned, then the commands waiting for the devices heard.
        for (to, reply) in &replies {
            if let Err(e) = socket.send_to(reply, to).await {
                debug!(%protocol, peer = %to, error = %e, "UDP reply failed");
            }
        }
        counters.delivered(0, replies.len());
        for addr in &heard {
            if let Some(p) = peers.get_mut(addr) {
                send_commands(&socket, *addr, p, &mut out, counters).await;
            }
        }
    }
    // Shutdown: every peer's session ends; what it held is reported.
    out.clear();
    for (_, mut p) in peers.drain() {
        p.session.finish(SystemTime::now(), &mut out);
        counters.closed(CloseReason::Shutdown);
    }
    if !out.is_empty() {
        deliver(&shard, protocol, Transport::Udp, ([0, 0, 0, 0], 0).into(), &mut out).await;
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
