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

use super::{deliver, frame_commands, log_payload, stopped, Shard};
use crate::ops::metrics;
use crate::protocol::{self, Transport};
use crate::registry::{ConnId, Control, QueuedCommand, Registry, SendError};
use crate::session::{CloseReason, Output, Session, SessionSettings};

pub(super) struct UdpPeer {
    pub(super) session: Session,
    /// Where commands for the peer's device wait: UDP has no connection to wake, so they
    /// go out with the replies to the device's next datagram (a device behind NAT can only
    /// be reached just after it sends).
    pub(super) claim: Option<UdpClaim>,
    /// A TCP connection held the device at the last try: no new try before this (each costs
    /// a `Control` and the registry's lock, and a device that also keeps a TCP connection
    /// would otherwise pay them on every datagram).
    retry_claim_at: Option<Instant>,
}

/// How long a UDP peer waits to try again for a device a TCP connection holds.
pub(super) const UDP_CLAIM_RETRY: Duration = Duration::from_secs(1);

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
        UdpPeer { session, claim: None, retry_claim_at: None }
    }

    /// After each datagram: holds the device in the registry once the session knows it.
    pub(super) fn claim(&mut self, registry: &Arc<Registry>, shard: usize, protocol: Protocol, now: Instant) {
        let Some(id) = self.session.device_id() else { return };
        // Claimed already, unless another connection has taken the device over since and it
        // now speaks here again.
        if !protocol::facts(protocol).udp_commands
            || self.claim.as_ref().is_some_and(|c| *c.device_id == *id && !c.control.kicked())
        {
            return;
        }
        if self.claim.is_none() && self.retry_claim_at.is_some_and(|at| now < at) {
            return;
        }
        // The previous claim, if the peer now speaks for another device or lost this one,
        // is given back first.
        self.claim = None;
        let control = Arc::new(Control::default());
        let conn = registry.next_conn();
        if registry.claim_udp(protocol, id, conn, shard, control.clone()) {
            self.claim = Some(UdpClaim { registry: registry.clone(), protocol, device_id: id.into(), conn, control });
            self.retry_claim_at = None;
        } else {
            self.retry_claim_at = Some(now + UDP_CLAIM_RETRY);
        }
    }

    /// Frames the commands queued for the peer's device into `replies`, after what is
    /// there; returns who to tell once they are sent.
    fn commands(
        &mut self,
        to: SocketAddr,
        replies: &mut Vec<(SocketAddr, Vec<u8>)>,
        counters: &metrics::Listener,
    ) -> Vec<(QueuedCommand, Option<AnswerMatch>)> {
        let Some(claim) = &self.claim else { return Vec::new() };
        frame_commands(&claim.control, &mut self.session, counters, |bytes| replies.push((to, bytes)))
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
                    // A datagram is complete in itself: nothing after it can finish a
                    // frame it started.
                    p.session.receive(&datagram[..n], true, now, SystemTime::now(), &mut out);
                    p.claim(&shard.registry, shard.index, protocol, now);
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
        // The commands go after the acks, one datagram each: `replies[acks + i]` is
        // `written[i]`. Nothing is allocated for them in a batch without commands.
        let acks = replies.len();
        let mut written = Vec::new();
        for addr in &heard {
            if let Some(p) = peers.get_mut(addr) {
                written.extend(p.commands(*addr, &mut replies, counters));
            }
        }
        let mut commands_sent = Vec::new();
        for (i, (to, reply)) in replies.iter().enumerate() {
            let sent = socket.send_to(reply, to).await;
            if let Err(e) = &sent {
                debug!(%protocol, peer = %to, error = %e, "UDP reply failed");
            }
            if i >= acks {
                commands_sent.push(sent.is_ok());
            }
        }
        counters.delivered(0, acks);
        // Commands not sent at all go back in their peer's queue, for after its next datagram
        // (or held again when the peer is forgotten, if sent with a hold). A peer's commands
        // are consecutive in `written`; they go back together so they keep their order.
        let mut unsent: Vec<(SocketAddr, Vec<QueuedCommand>)> = Vec::new();
        for (i, ((queued, answer), sent)) in written.into_iter().zip(commands_sent).enumerate() {
            if sent {
                counters.command(true);
                let _ = queued.done.send(Ok(answer));
                continue;
            }
            let to = replies[acks + i].0;
            match unsent.last_mut() {
                Some((addr, commands)) if *addr == to => commands.push(queued),
                _ => unsent.push((to, vec![queued])),
            }
        }
        for (to, commands) in unsent {
            match peers.get(&to).and_then(|p| p.claim.as_ref()) {
                Some(claim) => claim.control.put_back(commands),
                None => {
                    for queued in commands {
                        let _ = queued.done.send(Err(SendError::Closed));
                    }
                }
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
