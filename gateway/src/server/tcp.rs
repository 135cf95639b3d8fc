//! One TCP listener's accept loop and each connection's task: read, hand to the session,
//! deliver to the sink, write the acks, then the commands; nothing else is decided here.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};
use trackgate_codecs::Protocol;

use super::{deliver, log_payload, queue_commands, stopped, Shard};
use crate::ops::metrics::{self, Refusal};
use crate::protocol::Transport;
use crate::registry::ConnId;
use crate::registry::{Control, IpSlot};
use crate::session::{Claim, CloseReason, Output, Session, SessionSettings};

/// Accept errors that concern one queued connection only; anything else (out of
/// descriptors above all) pauses accepting so the loop never spins.
fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

pub(super) async fn accept_loop(
    shard: Arc<Shard>,
    protocol: Protocol,
    settings: Arc<SessionSettings>,
    listener: TcpListener,
) {
    let mut conns = JoinSet::new();
    let mut stop = shard.stop.clone();
    let counters = || shard.metrics().listener(protocol, Transport::Tcp);
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
                    conns.spawn(tcp_connection(shard.clone(), protocol, settings.clone(), stream, peer, slot));
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
    stream: &mut TcpStream,
    idle: std::pin::Pin<&mut tokio::time::Sleep>,
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
    stream: &mut TcpStream,
    bytes: &[u8],
    mut idle: std::pin::Pin<&mut tokio::time::Sleep>,
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

/// Reads what the socket holds into `buf`'s spare capacity. A read that leaves room
/// unfilled has drained the socket (epoll(7): for stream sockets, a short read means the
/// input is exhausted), so the stream's readiness is cleared then and there. Otherwise the
/// next wait would return at once and cost a read that finds nothing: a system call per
/// frame for devices that send one frame at a time. Readiness that arrives after the read
/// is not lost: tokio clears only the readiness this read observed.
pub(super) fn read_drained(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        got = Some(n);
        if n > 0 && n < room {
            // Not an error: the way to tell tokio the socket is drained.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (result, got) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// The most a connection reads once shutdown has begun: what its device had sent before
/// (the kernel has acknowledged those bytes to it, and an NMEA device never resends) is
/// read, decoded and delivered, but a device that keeps sending cannot hold the shutdown.
const SHUTDOWN_READ_CAP: usize = 1 << 20;

/// One read of what the socket already holds, straight from the socket and never waiting:
/// for the shutdown, when tokio may not yet have seen the socket become readable (its
/// readiness arrives with the next poll of the driver), so `read_drained` could find
/// nothing where there are bytes. `WouldBlock` when the socket holds nothing.
fn read_held(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    use std::io::Read;
    let socket = socket2::SockRef::from(stream);
    let len = buf.len();
    buf.resize(buf.capacity(), 0);
    let read = loop {
        match (&*socket).read(&mut buf[len..]) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r,
        }
    };
    buf.truncate(len + *read.as_ref().unwrap_or(&0));
    read
}

pub(super) async fn tcp_connection(
    shard: Arc<Shard>,
    protocol: Protocol,
    settings: Arc<SessionSettings>,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: IpSlot,
) {
    let conn = shard.registry.next_conn();
    let counters = shard.metrics().listener(protocol, Transport::Tcp);
    counters.opened();
    debug!(%protocol, %peer, conn, "connection opened");
    let mut session = Session::new(protocol, &settings, Instant::now());
    let mut stop = shard.stop.clone();
    // Made when the device identifies itself: the registry's way to it.
    let mut control: Option<Arc<Control>> = None;
    // Allocated when bytes arrive and released when nothing is pending, so an idle
    // connection holds no buffer.
    let mut buf = BytesMut::new();
    let mut out = Output::default();
    let mut replies = Vec::new();
    // One timer for the connection's life, moved as the session's deadline moves: moving a
    // registered timer later touches no timer wheel, where a new timer per read would.
    let idle = tokio::time::sleep_until(session.deadline().into());
    tokio::pin!(idle);
    // Once shutdown begins: the bytes read since (see `read_held`).
    let mut stopping: Option<usize> = None;
    let reason = loop {
        let deadline = tokio::time::Instant::from_std(session.deadline());
        if idle.deadline() != deadline {
            idle.as_mut().reset(deadline);
        }
        if stopping.is_none() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => stopping = Some(0),
                _ = woken(&control) => {
                    if let Some(c) = &control {
                        if c.kicked() {
                            break CloseReason::Takeover;
                        }
                        // Boxed: commands are rare, and their state would otherwise make every
                        // connection's future larger for its whole life.
                        let sent = Box::pin(send_commands(c, &mut session, &mut stream, idle.as_mut(), &mut stop, counters));
                        if let Err(reason) = sent.await {
                            debug!(%protocol, %peer, conn, reason = reason.label(), "writing commands ended the connection");
                            break reason;
                        }
                    }
                    continue;
                }
                _ = &mut idle => break CloseReason::Idle,
                r = stream.readable() => if r.is_err() { break CloseReason::Error },
            }
        }
        buf.reserve(shard.limits.read_buffer);
        let read = match stopping {
            Some(_) => read_held(&stream, &mut buf),
            None => read_drained(&stream, &mut buf),
        };
        let at_end = match read {
            Ok(0) => true,
            Ok(n) => {
                counters.bytes_in(n);
                if settings.log_payloads {
                    log_payload(protocol, Transport::Tcp, peer, &buf[buf.len() - n..]);
                }
                if let Some(held) = &mut stopping {
                    *held += n;
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && stopping.is_some() => {
                // Everything the device had sent before the shutdown has been read.
                break CloseReason::Shutdown;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // A spurious wake-up: keep no buffer for it.
                if buf.is_empty() {
                    buf = BytesMut::new();
                }
                continue;
            }
            Err(e) => {
                debug!(%protocol, %peer, error = %e, "read failed");
                break CloseReason::Error;
            }
        };
        out.clear();
        let step = session.receive(&buf, at_end, Instant::now(), SystemTime::now(), &mut out);
        buf.advance(step.used);
        if buf.is_empty() {
            // Nothing pending: the read buffer goes before the wait for the sink, so
            // thousands of connections waiting on one commit hold no read buffers.
            buf = BytesMut::new();
        }
        if let (Some(claim), Some(device_id)) = (&step.claim, session.claimed()) {
            if claim_device(&shard, protocol, conn, &mut control, claim, device_id) {
                debug!(%protocol, %peer, conn, "device logged in again; its older connection is closed");
            }
        }
        if !deliver(&shard, protocol, Transport::Tcp, peer, &mut out).await {
            break CloseReason::SinkFailed;
        }
        // One write for every reply of this read.
        replies.clear();
        for r in out.transmit() {
            replies.extend_from_slice(r);
        }
        if !replies.is_empty() {
            if let Err(reason) =
                write_bounded(&mut stream, &replies, idle.as_mut(), session.deadline(), &mut stop).await
            {
                // Idle or shutdown here: the device is not reading its acks.
                debug!(%protocol, %peer, conn, reason = reason.label(), "writing acks ended the connection");
                break reason;
            }
        }
        if let Some(c) = step.close {
            break c;
        }
        if at_end {
            break CloseReason::Eof;
        }
        if stopping.is_some_and(|held| held >= SHUTDOWN_READ_CAP) {
            break CloseReason::Shutdown;
        }
        if buf.is_empty() {
            // Nothing pending: give back the output's vectors too, so an idle connection
            // holds none of them (a vector of records alone is a kilobyte).
            replies = Vec::new();
            out.shrink();
        }
    };
    // A partial frame held at shutdown or timeout is not a frame: judge it, then let the
    // decoder report anything else it held. Nothing here is acknowledged: the peer is gone
    // or going.
    out.clear();
    if !buf.is_empty() && reason != CloseReason::Eof {
        session.receive(&buf, true, Instant::now(), SystemTime::now(), &mut out);
    }
    session.finish(SystemTime::now(), &mut out);
    if !out.is_empty() {
        deliver(&shard, protocol, Transport::Tcp, peer, &mut out).await;
    }
    if reason == CloseReason::Shutdown {
        // Tell the device we are going rather than leave it to find out.
        let _ = stream.shutdown().await;
    }
    if let (Some(id), Some(c)) = (session.claimed(), &control) {
        shard.registry.release(protocol, id, conn, c);
    }
    counters.closed(reason);
    drop(slot);
    debug!(%protocol, %peer, conn, reason = reason.label(), "connection closed");
}

/// Holds `device_id` for this connection, giving up the device `claim` releases (releasing
/// closes that device's command queue: the new device gets a new one). True when an older
/// connection of the device was closed for it.
fn claim_device(
    shard: &Shard,
    protocol: Protocol,
    conn: ConnId,
    control: &mut Option<Arc<Control>>,
    claim: &Claim,
    device_id: &str,
) -> bool {
    if let (Some(previous), Some(c)) = (&claim.release, control.take()) {
        shard.registry.release(protocol, previous, conn, &c);
    }
    let c = control.get_or_insert_with(|| Arc::new(Control::default())).clone();
    shard.registry.claim(protocol, device_id, conn, shard.index, c).is_some()
}
