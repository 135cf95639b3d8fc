//! `trackgate serve`: listeners for the protocols whose codecs exist, one decoder per TCP
//! connection or UDP peer, records to the sink, and acknowledgement only after the sink has
//! accepted them (contract §2).
//!
//! This first gateway runs on one tokio runtime; sharding, sessions with acks and downlink,
//! the config file and metrics come with the gateway issue. What is here already holds the
//! promises that matter: nothing acknowledged that is not in the sink, one bad frame costs
//! only that frame, idle connections hold no read buffer and time out, and shutdown flushes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{Protocol, RecordDecoder, StreamEvent};

use crate::protocols::{stream_decoder, StreamOptions, Transport};
use crate::sink::SinkHandle;

/// The ports devices in the field are already configured for (contract §2).
pub fn default_port(p: Protocol) -> u16 {
    match p {
        Protocol::Gt06 => 5023,
        Protocol::Jt808 => 5015,
        Protocol::Teltonika => 5027,
        Protocol::Nmea => 5005,
    }
}

/// The transports a protocol is served on. GT06 is TCP only.
pub fn transports(p: Protocol) -> &'static [Transport] {
    match p {
        Protocol::Gt06 => &[Transport::Tcp],
        _ => &[Transport::Tcp, Transport::Udp],
    }
}

/// `--listen PROTO=ADDR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, a) =
            s.split_once('=').ok_or_else(|| format!("{s:?} is not PROTO=ADDR (for example nmea=0.0.0.0:5005)"))?;
        Ok(ListenSpec { protocol: p.parse()?, addr: a.parse().map_err(|e| format!("bad listen address {a:?}: {e}"))? })
    }
}

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// A connection (or UDP peer) that sends nothing for this long is closed (forgotten).
    pub idle_timeout: Duration,
    /// Most UDP peers remembered per socket; the least recently heard are forgotten first.
    pub max_udp_peers: usize,
    /// Read size per TCP read.
    pub read_chunk: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits { idle_timeout: Duration::from_secs(600), max_udp_peers: 100_000, read_chunk: 4096 }
    }
}

/// A bound socket, ready to serve.
#[derive(Debug)]
pub enum Bound {
    Tcp(Protocol, TcpListener),
    Udp(Protocol, UdpSocket),
}

impl Bound {
    /// The `listening <proto> <tcp|udp> <addr>` line (contract §2).
    pub fn listening_line(&self) -> io::Result<String> {
        Ok(match self {
            Bound::Tcp(p, l) => format!("listening {p} tcp {}", l.local_addr()?),
            Bound::Udp(p, u) => format!("listening {p} udp {}", u.local_addr()?),
        })
    }
}

/// Binds every socket the specs call for. Fails as a whole if one cannot be bound.
pub async fn bind_all(specs: &[ListenSpec]) -> io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for spec in specs {
        for t in transports(spec.protocol) {
            let b = match t {
                Transport::Tcp => {
                    Bound::Tcp(spec.protocol, TcpListener::bind(spec.addr).await.map_err(|e| with_addr(e, spec))?)
                }
                Transport::Udp => {
                    Bound::Udp(spec.protocol, UdpSocket::bind(spec.addr).await.map_err(|e| with_addr(e, spec))?)
                }
            };
            bound.push(b);
        }
    }
    Ok(bound)
}

fn with_addr(e: io::Error, spec: &ListenSpec) -> io::Error {
    io::Error::new(e.kind(), format!("cannot listen for {} on {}: {e}", spec.protocol, spec.addr))
}

/// Resolves once shutdown has been asked for (or the sender is gone). The guard `wait_for`
/// returns is dropped here: it is not `Send` and must not live across an await.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves the bound sockets until `shutdown` turns true, then stops accepting, lets every
/// connection hand its last records to the sink, and returns.
pub async fn serve(bound: Vec<Bound>, sink: SinkHandle, limits: ServeLimits, mut shutdown: watch::Receiver<bool>) {
    let limits = Arc::new(limits);
    let mut tasks = JoinSet::new();
    for b in bound {
        let (sink, limits, shutdown) = (sink.clone(), limits.clone(), shutdown.clone());
        match b {
            Bound::Tcp(p, l) => tasks.spawn(accept_loop(p, l, sink, limits, shutdown)),
            Bound::Udp(p, u) => tasks.spawn(udp_loop(p, u, sink, limits, shutdown)),
        };
    }
    drop(sink);
    stopped(&mut shutdown).await;
    while tasks.join_next().await.is_some() {}
}

async fn accept_loop(
    protocol: Protocol,
    listener: TcpListener,
    sink: SinkHandle,
    limits: Arc<ServeLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // Each connection watches its own copy; this one only tells the loop to stop.
    let conn_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(tcp_connection(protocol, stream, peer, sink.clone(), limits.clone(), conn_shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors or a connection reset while queued: back off instead of
                    // spinning on an error that will repeat until something closes.
                    warn!(%protocol, error = %e, "accept failed; pausing accepts for 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Stamps records with the server time and hands them to the sink, then returns the replies
/// the device may now be sent. `None` means the sink did not accept the records, so nothing
/// may be acknowledged for them.
async fn deliver(
    events: &mut Vec<StreamEvent>,
    protocol: Protocol,
    peer: SocketAddr,
    sink: &SinkHandle,
) -> Option<Vec<Vec<u8>>> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let mut records = Vec::with_capacity(events.len());
    let mut replies = Vec::new();
    for e in events.drain(..) {
        match e {
            StreamEvent::Record(mut r) => {
                r.received_at = Some(now);
                records.push(r);
            }
            StreamEvent::Rejected { offset, len, reason } => {
                debug!(%protocol, %peer, offset, len, reason = %reason, "rejected frame");
            }
            StreamEvent::Reply(bytes) => replies.push(bytes),
        }
    }
    match sink.submit(records).await {
        // Every reply in this batch follows records that are now committed.
        Ok(()) => Some(replies),
        Err(e) => {
            warn!(%protocol, error = %e, "sink refused records; closing the connection without acknowledging");
            None
        }
    }
}

async fn tcp_connection(
    protocol: Protocol,
    mut stream: TcpStream,
    peer: SocketAddr,
    sink: SinkHandle,
    limits: Arc<ServeLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut decoder = stream_decoder(protocol, &StreamOptions::default());
    debug!(%protocol, %peer, "connection opened");
    // Allocated when bytes arrive and released when a read leaves nothing pending, so an idle
    // connection holds no buffer.
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    loop {
        let read = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = tokio::time::timeout(limits.idle_timeout, stream.readable()) => r,
        };
        match read {
            Err(_) => {
                debug!(%protocol, %peer, "idle timeout");
                break;
            }
            Ok(Err(_)) => break,
            Ok(Ok(())) => {}
        }
        buf.reserve(limits.read_chunk);
        let n = match stream.read_buf(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                debug!(%protocol, %peer, error = %e, "read failed");
                0
            }
        };
        let at_end = n == 0;
        decoder.set_now(Timestamp::from_system_time(SystemTime::now()));
        let used = decoder.decode(&buf, at_end, &mut events);
        buf.advance(used);
        let Some(replies) = deliver(&mut events, protocol, peer, &sink).await else { break };
        for reply in replies {
            if let Err(e) = stream.write_all(&reply).await {
                debug!(%protocol, %peer, error = %e, "write failed");
                return;
            }
        }
        if at_end {
            break;
        }
        if buf.is_empty() {
            buf = BytesMut::new();
        }
    }
    // Whatever a partial frame held at shutdown or timeout is not a frame: judge it now.
    if !buf.is_empty() {
        decoder.set_now(Timestamp::from_system_time(SystemTime::now()));
        decoder.decode(&buf, true, &mut events);
    }
    decoder.finish(&mut events);
    if !events.is_empty() {
        deliver(&mut events, protocol, peer, &sink).await;
    }
    debug!(%protocol, %peer, "connection closed");
}

struct UdpPeer {
    decoder: Box<dyn RecordDecoder + Send>,
    last_heard: Instant,
}

async fn udp_loop(
    protocol: Protocol,
    socket: UdpSocket,
    sink: SinkHandle,
    limits: Arc<ServeLimits>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut peers: HashMap<SocketAddr, UdpPeer> = HashMap::new();
    let mut datagram = vec![0u8; 65_536];
    let mut events = Vec::new();
    loop {
        let (n, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            r = socket.recv_from(&mut datagram) => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!(%protocol, error = %e, "UDP receive failed");
                    continue;
                }
            },
        };
        let now = Instant::now();
        if !peers.contains_key(&peer) && peers.len() >= limits.max_udp_peers {
            let ttl = limits.idle_timeout;
            peers.retain(|_, p| now.duration_since(p.last_heard) < ttl);
            if peers.len() >= limits.max_udp_peers {
                // Still full of live peers: forget the one heard from least recently.
                if let Some(oldest) = peers.iter().min_by_key(|(_, p)| p.last_heard).map(|(a, _)| *a) {
                    peers.remove(&oldest);
                }
            }
        }
        let entry = match peers.entry(peer) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let decoder =
                    stream_decoder(protocol, &StreamOptions { transport: Transport::Udp, ..Default::default() });
                v.insert(UdpPeer { decoder, last_heard: now })
            }
        };
        if now.duration_since(entry.last_heard) >= limits.idle_timeout {
            // A peer silent past the idle timeout starts over, as a new TCP connection would.
            entry.decoder.finish(&mut events);
            entry.decoder =
                stream_decoder(protocol, &StreamOptions { transport: Transport::Udp, ..Default::default() });
        }
        entry.last_heard = now;
        // A datagram is complete in itself: nothing after it can finish a frame it started.
        entry.decoder.set_now(Timestamp::from_system_time(SystemTime::now()));
        entry.decoder.decode(&datagram[..n], true, &mut events);
        if let Some(replies) = deliver(&mut events, protocol, peer, &sink).await {
            for reply in replies {
                if let Err(e) = socket.send_to(&reply, peer).await {
                    debug!(%protocol, %peer, error = %e, "UDP reply failed");
                }
            }
        }
    }
    info!(%protocol, peers = peers.len(), "UDP listener stopped");
}
