//! `trackgate serve`: the sharded server (contract §2).
//!
//! N shards (one per core by default), each a single-threaded tokio runtime on its own
//! thread with its own `SO_REUSEPORT` socket per listener: the kernel spreads connections
//! (and UDP peers, by their address) over the shards, and each shard owns its connections
//! and sessions outright, so nothing is locked per frame. What must cross shards (which
//! connection holds a device, connections per source address) is in the [`Registry`],
//! touched only when a connection opens, identifies itself or closes.
//!
//! Every frame is acknowledged only after the sink has accepted its records; a connection
//! waiting for the sink does not read, so a slow sink slows devices instead of filling
//! memory. Read buffers exist only while bytes are pending.
//!
//! At shutdown nothing a device had already sent is dropped unread: each connection and UDP
//! socket reads what the kernel holds for it (bounded, see `SHUTDOWN_READ_CAP` and
//! `SHUTDOWN_DATAGRAM_CAP`), delivers and acknowledges it, then closes. A device that does
//! not read its acks cannot hold a connection past the idle timeout, nor the shutdown.
//!
//! Commands to devices (downlink) go through the registry to the connection holding the
//! device ([`Registry::send_command`]): the connection wakes, has its session write the
//! protocol's frame and writes it between reads, never in the middle of a read's acks.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BytesMut};
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use trackgate_codecs::{AnswerMatch, Protocol};

use crate::config::{ListenerConfig, ServeConfig};
use crate::holds::HoldFile;
use crate::http;
use crate::metrics::{self, Metrics, Refusal, ShardMetrics};
use crate::protocols::{StreamOptions, Transport};
use crate::registry::{ConnId, Control, IpSlot, QueuedCommand, Registry, SendError};
use crate::session::{CloseReason, Output, Session, SessionSettings};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// A connection (or UDP peer) that sends nothing for this long is closed (forgotten),
    /// unless its listener sets its own.
    pub idle_timeout: Duration,
    /// Most UDP peers remembered per socket; the least recently heard are forgotten first.
    pub max_udp_peers: usize,
    /// Receive buffer asked for on each UDP socket, in bytes (the kernel caps it at
    /// `net.core.rmem_max`; less than asked is logged as a warning when the listener binds).
    pub udp_receive_buffer: usize,
    /// Bytes reserved per read.
    pub read_buffer: usize,
    /// Connections one shard holds at most; more are closed at accept.
    pub max_connections_per_shard: usize,
    /// Connections one source address holds at most, over all shards (0 = no cap).
    pub max_connections_per_ip: u32,
    /// See [`SessionSettings::junk_bytes`].
    pub junk_bytes: u64,
    /// Messages waiting for the sink at most (back-pressure beyond): each is the batches a
    /// shard's connections submitted in one turn of its runtime.
    pub sink_queue: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            idle_timeout: Duration::from_secs(600),
            max_udp_peers: 100_000,
            udp_receive_buffer: UDP_RECEIVE_BUFFER,
            read_buffer: 4096,
            max_connections_per_shard: 100_000,
            max_connections_per_ip: 4096,
            junk_bytes: 2048,
            sink_queue: 1024,
        }
    }
}

/// One listener's sockets, one per shard, bound to the same address.
#[derive(Debug)]
pub struct Bound {
    pub protocol: Protocol,
    pub transport: Transport,
    /// The address bound (a `:0` port resolved).
    pub addr: SocketAddr,
    settings: Arc<SessionSettings>,
    sockets: Vec<Socket>,
}

impl Bound {
    /// The `listening <proto> <tcp|udp> <addr>` line (contract §2).
    pub fn listening_line(&self) -> String {
        format!("listening {} {} {}", self.protocol, self.transport.as_str(), self.addr)
    }
}

/// The receive buffer asked for on each UDP socket (one per shard and protocol) unless the
/// configuration says otherwise.
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

fn reuseport_socket(addr: SocketAddr, transport: Transport, udp_receive_buffer: usize) -> io::Result<Socket> {
    let ty = match transport {
        Transport::Tcp => Type::STREAM,
        Transport::Udp => Type::DGRAM,
    };
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if transport == Transport::Tcp {
        socket.set_reuse_address(true)?;
        // Acks go out as soon as they are written. Linux hands the listener's option to
        // every accepted socket, which saves a setsockopt per connection (see accept_loop).
        socket.set_tcp_nodelay(true)?;
    }
    if transport == Transport::Udp {
        // Devices that report on the same schedule (or come back together after an outage)
        // send in bursts. The default buffer (208 KiB here) held about 250 datagrams, and the
        // kernel dropped the rest of a burst of 1,000 before the shard could read them (the
        // load run with `HOLD`, counted in UdpRcvbufErrors). The kernel caps the size at
        // net.core.rmem_max; memory is only taken while datagrams wait.
        if let Err(e) = socket.set_recv_buffer_size(udp_receive_buffer) {
            warn!(%addr, error = %e, "cannot set a UDP socket's receive buffer");
        }
    }
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    if transport == Transport::Tcp {
        socket.listen(4096)?;
    }
    Ok(socket)
}

/// Binds every listener the configuration names, `shards` sockets each. Fails as a whole if
/// one cannot be bound. The first socket resolves a `:0` port; the others join it.
pub fn bind_all(config: &ServeConfig) -> io::Result<Vec<Bound>> {
    let mut bound = Vec::new();
    for l in &config.listeners {
        for &transport in transports(l.protocol) {
            let with_addr =
                |e: io::Error| io::Error::new(e.kind(), format!("cannot listen for {} on {}: {e}", l.protocol, l.addr));
            let asked = config.limits.udp_receive_buffer;
            let first = reuseport_socket(l.addr, transport, asked).map_err(with_addr)?;
            let addr = first.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
            if let Some(granted) = (transport == Transport::Udp).then(|| capped_receive_buffer(&first, asked)).flatten()
            {
                warn!(
                    %addr,
                    asked,
                    granted,
                    "the kernel granted a smaller UDP receive buffer than limits.udp_receive_buffer asks \
                     (raise net.core.rmem_max); a burst of datagrams past it is dropped by the kernel"
                );
            }
            let mut sockets = vec![first];
            for _ in 1..config.shards.max(1) {
                sockets.push(reuseport_socket(addr, transport, asked).map_err(with_addr)?);
            }
            bound.push(Bound {
                protocol: l.protocol,
                transport,
                addr,
                settings: Arc::new(session_settings(l, transport, config)),
                sockets,
            });
        }
    }
    Ok(bound)
}

/// The receive buffer the kernel granted `socket`, when that is less than `asked`. Bursts of
/// datagrams past it are dropped by the kernel (counted in its `UdpRcvbufErrors`, never seen
/// by the gateway), so `bind_all` warns the operator at start, once per listener.
fn capped_receive_buffer(socket: &Socket, asked: usize) -> Option<usize> {
    let reported = socket.recv_buffer_size().ok()?;
    // Linux reports twice the size it granted (the other half is its bookkeeping).
    let granted = if cfg!(target_os = "linux") { reported / 2 } else { reported };
    (granted < asked).then_some(granted)
}

fn session_settings(l: &ListenerConfig, transport: Transport, config: &ServeConfig) -> SessionSettings {
    SessionSettings {
        stream: StreamOptions { transport, ..l.stream.clone() },
        idle_timeout: l.idle_timeout.unwrap_or(config.limits.idle_timeout),
        junk_bytes: config.limits.junk_bytes,
        log_payloads: l.log_payloads,
    }
}

/// The bytes of one read (or datagram) as hex, when the listener's operator asked for them
/// (`log_payloads`): one line each, which `trackgate decode --hex` reads back (with
/// `--transport udp`, a line per datagram, as these are).
fn log_payload(protocol: Protocol, transport: Transport, peer: SocketAddr, bytes: &[u8]) {
    let hex = trackgate_codecs::wire::hex::to_hex(bytes);
    info!(target: "trackgate::payload", %protocol, transport = %transport.as_str(), %peer, "payload {hex}");
}

/// One listener's socket in one shard.
type ShardSocket = (Protocol, Transport, Arc<SessionSettings>, Socket);

/// What every task of one shard shares.
struct Shard {
    index: usize,
    sink: SinkHandle,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    limits: ServeLimits,
    stop: watch::Receiver<bool>,
}

impl Shard {
    fn metrics(&self) -> &ShardMetrics {
        self.metrics.shard(self.index)
    }
}

/// The running shards.
#[derive(Debug)]
pub struct Gateway {
    threads: Vec<thread::JoinHandle<()>>,
    /// Shared with the task that stops the shards when the sink fails.
    stop: Arc<watch::Sender<bool>>,
}

impl Gateway {
    /// Starts one thread per shard serving `bound`. Records go to `sink`.
    ///
    /// A failed sink can acknowledge nothing more, so rather than go on taking devices'
    /// data it cannot store (while `/healthz` answers as if all were well), the gateway
    /// then begins its shutdown by itself: [`Gateway::stopping`] turns true, and the owner
    /// calls [`Gateway::shutdown`] to wait for the shards, then joins the sink thread for
    /// the sink's error.
    pub fn start(
        bound: Vec<Bound>,
        shards: usize,
        sink: SinkHandle,
        limits: ServeLimits,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> io::Result<Gateway> {
        let shards = shards.max(1);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        // Deal each listener's sockets out to the shards.
        let mut per_shard: Vec<Vec<ShardSocket>> = (0..shards).map(|_| Vec::new()).collect();
        for b in bound {
            for (i, s) in b.sockets.into_iter().enumerate() {
                per_shard[i % shards].push((b.protocol, b.transport, b.settings.clone(), s));
            }
        }
        let mut threads = Vec::with_capacity(shards);
        for (index, sockets) in per_shard.into_iter().enumerate() {
            let (sink, metrics, registry, limits, stop) =
                (sink.clone(), metrics.clone(), registry.clone(), limits.clone(), stop_rx.clone());
            // The first shard also watches the sink.
            let watch = (index == 0).then(|| (sink.clone(), stop_tx.clone(), stop_rx.clone()));
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            threads.push(thread::Builder::new().name(format!("trackgate-shard-{index}")).spawn(move || {
                runtime.block_on(async move {
                    if let Some((sink, stop_tx, mut stop)) = watch {
                        // Ends with the shutdown too: its handle must not outlive the
                        // shards, or the sink thread would wait for it.
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = sink.closed() => {
                                    error!("the sink failed: nothing more can be acknowledged; shutting down");
                                    stop_tx.send_replace(true);
                                }
                                _ = stopped(&mut stop) => {}
                            }
                        });
                    }
                    // The sink's answers for this shard arrive as one wake-up per commit.
                    let sink = sink.answered_on_this_runtime();
                    let shard = Shard { index, sink, metrics, registry, limits, stop };
                    run_shard(Arc::new(shard), sockets).await
                })
            })?);
        }
        Ok(Gateway { threads, stop: stop_tx })
    }

    /// A receiver that turns true when shutdown begins: asked for, or because the sink
    /// failed.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops accepting, lets every connection hand its last records to the sink and close,
    /// and waits for the shards to end.
    pub fn shutdown(self) {
        self.stop.send_replace(true);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Serves a whole configuration on the calling thread until `stop` resolves, or until the
/// sink fails (see [`Gateway::start`]; the sink thread's join then gives the sink's error):
/// binds, prints the listening lines to stderr, starts the shards and the metrics endpoint.
/// The sink handle is dropped before returning, so the caller can join the sink thread.
pub fn run(config: &ServeConfig, sink: SinkHandle, stop: impl std::future::Future<Output = ()>) -> io::Result<()> {
    // This thread's runtime, and the signal handling `stop` registers when first polled, are
    // set up before any shard runs: at the descriptor limit the shards' accepts take every
    // free descriptor, and a runtime or signal pipe made after that fails (a failed signal
    // registration used to end `stop` at once, so the gateway quietly shut down).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut stop = Box::pin(stop);
    let stopped_already = runtime.block_on(async {
        tokio::select! {
            biased;
            _ = &mut stop => true,
            _ = std::future::ready(()) => false,
        }
    });
    if stopped_already {
        return Ok(());
    }
    let bound = bind_all(config)?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}")))?,
        ),
        None => None,
    };
    for b in &bound {
        eprintln!("{}", b.listening_line());
    }
    if let Some(l) = &metrics_listener {
        eprintln!("listening metrics http {}", l.local_addr()?);
    }
    let metrics = Metrics::new(config.shards);
    let registry = match &config.commands_hold_file {
        Some(path) => {
            let (file, restored) = HoldFile::open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot open the hold file {}: {e}", path.display())))?;
            // A count only: the commands and their devices are personal data.
            info!(commands = restored.len(), "held commands read back from the hold file");
            Registry::with_hold_file(file, restored)
        }
        None => Registry::new(),
    };
    // However `run` ends (an error included), the commands still held when it does stay in
    // the hold file for the next start.
    let _detach = DetachHoldFile(registry.clone());
    info!(listeners = bound.len(), shards = config.shards, "trackgate serving");
    let gateway = Gateway::start(bound, config.shards, sink, config.limits.clone(), metrics.clone(), registry.clone())?;
    let stopping = gateway.stopping();
    let mut stopped_by_itself = gateway.stopping();
    let endpoint_registry = registry.clone();
    runtime.block_on(async move {
        if let Some(l) = metrics_listener {
            l.set_nonblocking(true)?;
            let l = TcpListener::from_std(l)?;
            let endpoint =
                http::Endpoint { metrics, registry: endpoint_registry, commands: config.commands_token.clone() };
            tokio::spawn(http::serve(l, endpoint, stopping));
        }
        tokio::select! {
            _ = &mut stop => {}
            _ = stopped(&mut stopped_by_itself) => {}
        }
        Ok::<(), io::Error>(())
    })?;
    info!("shutting down: no new connections, flushing the sink");
    // Every connection closes and hands its unwritten commands back to the registry before
    // this returns; `_detach` then keeps what is held in the hold file.
    gateway.shutdown();
    Ok(())
}

/// Detaches the registry's hold file when dropped (see [`Registry::detach_hold_file`]).
struct DetachHoldFile(Arc<Registry>);

impl Drop for DetachHoldFile {
    fn drop(&mut self) {
        self.0.detach_hold_file();
    }
}

/// Resolves once shutdown has been asked for (or the sender is gone). The guard `wait_for`
/// returns is dropped here: it is not `Send` and must not live across an await.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_shard(shard: Arc<Shard>, sockets: Vec<ShardSocket>) {
    let mut tasks = JoinSet::new();
    for (protocol, transport, settings, socket) in sockets {
        match transport {
            Transport::Tcp => match TcpListener::from_std(socket.into()) {
                Ok(l) => {
                    tasks.spawn(accept_loop(shard.clone(), protocol, settings, l));
                }
                Err(e) => warn!(%protocol, error = %e, "cannot register a listener with the runtime"),
            },
            Transport::Udp => match UdpSocket::from_std(socket.into()) {
                Ok(u) => {
                    tasks.spawn(udp_loop(shard.clone(), protocol, settings, u));
                }
                Err(e) => warn!(%protocol, error = %e, "cannot register a UDP socket with the runtime"),
            },
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Accept errors that concern one queued connection only; anything else (out of
/// descriptors above all) pauses accepting so the loop never spins.
fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
}

async fn accept_loop(shard: Arc<Shard>, protocol: Protocol, settings: Arc<SessionSettings>, listener: TcpListener) {
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

/// Hands the output's records to the sink and waits until it has accepted them; then the
/// replies may be sent. False when the sink refused: nothing may be acknowledged.
async fn deliver(shard: &Shard, protocol: Protocol, transport: Transport, peer: SocketAddr, out: &mut Output) -> bool {
    let counters = shard.metrics().listener(protocol, transport);
    for reject in &out.rejects {
        counters.rejected(reject.kind);
        debug!(%protocol, %peer, reason = %reject, "rejected frame");
    }
    counters.rejected_bytes(out.rejected_bytes);
    counters.decoded(out.frames);
    let records = out.records.len();
    if records > 0 {
        let started = Instant::now();
        let result = shard.sink.submit(std::mem::take(&mut out.records)).await;
        shard.metrics().sink_latency(started.elapsed(), result.is_ok());
        if let Err(e) = result {
            warn!(%protocol, error = %e, "sink refused records; closing without acknowledging");
            return false;
        }
    }
    counters.delivered(records, out.replies.len());
    true
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
    let mut frames = Vec::new();
    let written = frame_commands(control, session, counters, |bytes| frames.extend_from_slice(&bytes));
    if frames.is_empty() {
        return Ok(());
    }
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

/// Frames the commands queued at `control` through the device's session, handing each
/// one's bytes to `out` in order; a refused command's caller hears why at once. Returns,
/// in the same order, the commands framed, to tell once the bytes are out.
fn frame_commands(
    control: &Control,
    session: &mut Session,
    counters: &metrics::Listener,
    mut out: impl FnMut(Vec<u8>),
) -> Vec<(QueuedCommand, Option<AnswerMatch>)> {
    let mut written = Vec::new();
    for queued in control.take_commands() {
        match session.command(&queued.command) {
            Ok(framed) => {
                out(framed.bytes);
                written.push((queued, framed.answer));
            }
            Err(e) => {
                counters.command(false);
                let _ = queued.done.send(Err(SendError::Refused(e)));
            }
        }
    }
    written
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
fn read_drained(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
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

async fn tcp_connection(
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
    // The device id this connection holds in the registry.
    let mut claimed: Option<Box<str>> = None;
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
        if step.identified {
            if let Some(id) = session.device_id().filter(|id| claimed.as_deref() != Some(*id)) {
                // A connection that logs in as another device gives up the first one, or a
                // later login of the first would close this connection by mistake.
                if let (Some(previous), Some(c)) = (claimed.take(), control.take()) {
                    // Releasing closes the control's queue: the new device gets a new one.
                    shard.registry.release(protocol, &previous, conn, &c);
                }
                let c = control.get_or_insert_with(|| Arc::new(Control::default())).clone();
                if shard.registry.claim(protocol, id, conn, shard.index, c).is_some() {
                    debug!(%protocol, %peer, conn, "device logged in again; its older connection is closed");
                }
                claimed = Some(id.into());
            }
        }
        if !deliver(&shard, protocol, Transport::Tcp, peer, &mut out).await {
            break CloseReason::SinkFailed;
        }
        // One write for every reply of this read.
        replies.clear();
        for r in &out.replies {
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
    if let (Some(id), Some(c)) = (claimed, &control) {
        shard.registry.release(protocol, &id, conn, c);
    }
    counters.closed(reason);
    drop(slot);
    debug!(%protocol, %peer, conn, reason = reason.label(), "connection closed");
}

struct UdpPeer {
    session: Session,
    /// Where commands for the peer's device wait: UDP has no connection to wake, so they
    /// go out with the replies to the device's next datagram (a device behind NAT can only
    /// be reached just after it sends).
    claim: Option<UdpClaim>,
    /// A TCP connection held the device at the last try: no new try before this (each costs
    /// a `Control` and the registry's lock, and a device that also keeps a TCP connection
    /// would otherwise pay them on every datagram).
    retry_claim_at: Option<Instant>,
}

/// How long a UDP peer waits to try again for a device a TCP connection holds.
const UDP_CLAIM_RETRY: Duration = Duration::from_secs(1);

/// A UDP peer's hold on its device in the registry, given back when the peer is forgotten
/// (idle, evicted, shutdown), whichever way that happens.
struct UdpClaim {
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

/// The protocols whose devices take commands over UDP: JT808 and Teltonika (whose wiki has
/// UDP commands sent "the same exact way as TCP commands"). GT06 is served on TCP only and
/// NMEA has no commands: their UDP devices are not reachable (`NotConnected`) rather than
/// refused on their next datagram.
fn udp_commands(protocol: Protocol) -> bool {
    matches!(protocol, Protocol::Jt808 | Protocol::Teltonika)
}

impl UdpPeer {
    fn new(session: Session) -> Self {
        UdpPeer { session, claim: None, retry_claim_at: None }
    }

    /// After each datagram: holds the device in the registry once the session knows it.
    fn claim(&mut self, registry: &Arc<Registry>, shard: usize, protocol: Protocol, now: Instant) {
        let Some(id) = self.session.device_id() else { return };
        // Claimed already, unless another connection has taken the device over since and it
        // now speaks here again.
        if !udp_commands(protocol) || self.claim.as_ref().is_some_and(|c| *c.device_id == *id && !c.control.kicked()) {
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

async fn udp_loop(shard: Arc<Shard>, protocol: Protocol, settings: Arc<SessionSettings>, socket: UdpSocket) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ListenerConfig;
    use crate::sink::{self, RecordSink};
    use std::io::{Read, Write};
    use std::sync::{Condvar, Mutex};
    use trackgate_codecs::Record;

    /// Whether the gate is open, the records written, and the writes begun.
    type Gate = (Mutex<(bool, Vec<Record>, usize)>, Condvar);

    /// A sink whose writes wait until the test opens the gate.
    #[derive(Clone, Default)]
    struct GatedSink {
        state: Arc<Gate>,
    }

    impl GatedSink {
        fn open(&self) {
            self.state.0.lock().unwrap().0 = true;
            self.state.1.notify_all();
        }
        fn opened() -> Self {
            let gate = GatedSink::default();
            gate.open();
            gate
        }
        /// The message types of the records written.
        fn committed(&self) -> Vec<String> {
            self.state.0.lock().unwrap().1.iter().map(|r| r.message_type.to_string()).collect()
        }
        /// Waits for a record of `kind` to be written, and returns it.
        fn wait_for(&self, kind: trackgate_codecs::Kind) -> Record {
            let (lock, cv) = &*self.state;
            let (state, timeout) = cv
                .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |s| {
                    !s.1.iter().any(|r| r.kind == kind)
                })
                .unwrap();
            assert!(!timeout.timed_out(), "no {kind:?} record reached the sink");
            state.1.iter().find(|r| r.kind == kind).cloned().unwrap()
        }
        /// Waits until a write has begun (and is held at the gate, if it is closed).
        fn wait_for_a_write(&self) {
            let (lock, cv) = &*self.state;
            let (_guard, timeout) =
                cv.wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |s| s.2 == 0).unwrap();
            assert!(!timeout.timed_out(), "nothing reached the sink");
        }
    }

    impl RecordSink for GatedSink {
        fn write(&mut self, records: &[Record]) -> io::Result<()> {
            let (lock, cv) = &*self.state;
            let mut s = lock.lock().unwrap();
            s.2 += 1;
            cv.notify_all();
            let mut s = cv.wait_while(s, |s| !s.0).unwrap();
            s.1.extend_from_slice(records);
            cv.notify_all();
            Ok(())
        }
        fn commit(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every open connection is one of these futures: its size is the gateway's memory per
    /// connection before any heap (1048 bytes when this test was written, 1128 after the
    /// bounded ack write, 1160 with commands; `-- --nocapture` prints it).
    #[test]
    fn a_connection_task_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (sink, sink_thread) = sink::start(vec![], 1).unwrap();
            let (_stop, stop_rx) = watch::channel(false);
            let registry = Registry::new();
            let slot = registry.admit([127, 0, 0, 1].into(), 0).unwrap();
            let shard = Arc::new(Shard {
                index: 0,
                sink,
                metrics: Metrics::new(1),
                registry,
                limits: ServeLimits::default(),
                stop: stop_rx,
            });
            let settings = Arc::new(SessionSettings::new(StreamOptions::default()));
            let peer = stream.local_addr().unwrap();
            let task = tcp_connection(shard, Protocol::Gt06, settings, stream, peer, slot);
            let size = std::mem::size_of_val(&task);
            eprintln!("a connection's future: {size} bytes");
            // And on the heap once the device identifies itself: the registry's way to it.
            eprintln!("an identified device's control: {} bytes in an Arc", std::mem::size_of::<Control>());
            assert!(size <= 1536, "a connection's future grew to {size} bytes");
            drop(task);
            drop(sink_thread);
        });
    }

    /// The gateway sets no TCP_NODELAY per connection on Linux, counting on accepted
    /// sockets inheriting the listener's; this holds the kernel to that. (Elsewhere the
    /// gateway sets it on each connection, so there is nothing to hold.)
    #[cfg(target_os = "linux")]
    #[test]
    fn accepted_connections_inherit_nodelay_from_the_listener() {
        let socket = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Tcp, UDP_RECEIVE_BUFFER).unwrap();
        let listener: std::net::TcpListener = socket.into();
        let _device = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert!(accepted.nodelay().unwrap(), "an accepted socket did not inherit TCP_NODELAY");
    }

    /// A UDP peer whose device a TCP connection holds tries again for it once a second, not
    /// on every datagram, and takes it once the TCP connection has gone.
    #[test]
    fn a_udp_peer_refused_its_device_tries_again_after_a_pause() {
        let registry = Registry::new();
        let tcp = Arc::new(Control::default());
        let tcp_conn = registry.next_conn();
        registry.claim(Protocol::Jt808, "14130567872", tcp_conn, 0, tcp.clone());
        let settings = SessionSettings::new(StreamOptions { transport: Transport::Udp, ..StreamOptions::default() });
        let start = Instant::now();
        let mut peer = UdpPeer::new(Session::new(Protocol::Jt808, &settings, start));
        // A heartbeat names the terminal.
        use trackgate_codecs::jt808;
        let terminal = jt808::Terminal::for_device_id("14130567872", jt808::Edition::V2013).unwrap();
        let heartbeat = jt808::encode(jt808::id::HEARTBEAT, &terminal, 1, &[]).unwrap();
        let mut out = Output::default();
        peer.session.receive(&heartbeat, true, start, SystemTime::now(), &mut out);
        assert_eq!(peer.session.device_id(), Some("14130567872"));
        // Each try takes a connection id: the ids taken between two of our own count them.
        let before = registry.next_conn();
        peer.claim(&registry, 0, Protocol::Jt808, start);
        peer.claim(&registry, 0, Protocol::Jt808, start + Duration::from_millis(500));
        assert!(peer.claim.is_none());
        assert_eq!(registry.next_conn() - before, 2, "one try in the first second");
        registry.release(Protocol::Jt808, "14130567872", tcp_conn, &tcp);
        peer.claim(&registry, 0, Protocol::Jt808, start + UDP_CLAIM_RETRY);
        assert!(peer.claim.is_some(), "taken once the TCP connection has gone");
        assert_eq!(registry.status(Protocol::Jt808, "14130567872").connected, Some("udp"));
    }

    /// UDP sockets ask for a receive buffer that holds a burst of datagrams, as much of it
    /// as the kernel allows (Linux reports twice what it granted, up to `rmem_max`).
    #[cfg(target_os = "linux")]
    #[test]
    fn udp_sockets_get_a_large_receive_buffer() {
        let socket = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, UDP_RECEIVE_BUFFER).unwrap();
        let granted = socket.recv_buffer_size().unwrap();
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        assert!(granted >= 2 * UDP_RECEIVE_BUFFER.min(max), "{granted} bytes (rmem_max {max})");
        // Asked for more than the kernel allows: the size granted is what is told (where
        // twice rmem_max still fits the kernel's `int`).
        if max > 1 << 29 {
            return;
        }
        let capped = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, 2 * max).unwrap();
        assert_eq!(capped_receive_buffer(&capped, 2 * max), Some(max));
        let modest = reuseport_socket(([127, 0, 0, 1], 0).into(), Transport::Udp, 64 << 10).unwrap();
        assert_eq!(capped_receive_buffer(&modest, 64 << 10), None);
    }

    /// A short read clears the stream's readiness (no read that finds nothing), and neither
    /// bytes that arrive afterwards nor the peer's hang-up are missed for it.
    #[test]
    fn a_drained_read_loses_neither_later_bytes_nor_the_end() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut device = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::with_capacity(4096);
            device.write_all(b"first").await.unwrap();
            stream.readable().await.unwrap();
            assert_eq!(read_drained(&stream, &mut buf).unwrap(), 5);
            // Drained: waiting again does not return at once.
            let again = tokio::time::timeout(Duration::from_millis(50), stream.readable()).await;
            assert!(again.is_err(), "readiness was not cleared by a short read");
            device.write_all(b"second").await.unwrap();
            stream.readable().await.unwrap();
            assert_eq!(read_drained(&stream, &mut buf).unwrap(), 6);
            assert_eq!(&buf[..], b"firstsecond");
            // Bytes and the hang-up together: the bytes, then the end.
            device.write_all(b"last").await.unwrap();
            device.shutdown().await.unwrap();
            drop(device);
            stream.readable().await.unwrap();
            let n = read_drained(&stream, &mut buf).unwrap();
            assert!(n == 4 || n == 0, "read {n}");
            if n == 4 {
                stream.readable().await.unwrap();
                assert_eq!(read_drained(&stream, &mut buf).unwrap(), 0);
            }
            assert_eq!(&buf[..], b"firstsecondlast");
            // A read that fills the room is not taken as drained: the rest follows.
            let mut small = BytesMut::with_capacity(4);
            let mut device = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            device.write_all(b"0123456789").await.unwrap();
            let mut got = Vec::new();
            while got.len() < 10 {
                stream.readable().await.unwrap();
                small.clear();
                small.reserve(4);
                match read_drained(&stream, &mut small) {
                    Ok(n) => got.extend_from_slice(&small[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, b"0123456789");
        });
    }

    #[test]
    fn the_ack_waits_for_the_sink() {
        let gate = GatedSink::default();
        let (gateway, sink_thread, addrs, ..) =
            serve_one(Protocol::Gt06, Box::new(gate.clone()), ServeLimits::default());
        let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
        device.write_all(&gt06_login()).unwrap();
        // The sink has not accepted the login: no ack may come.
        device.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut ack = [0u8; 10];
        let early = device.read(&mut ack);
        assert!(early.is_err(), "acked before the sink accepted: {early:?}");
        assert!(gate.committed().is_empty());
        gate.open();
        device.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        device.read_exact(&mut ack).unwrap();
        assert_eq!(ack.to_vec(), trackgate_codecs::gt06::ack(false, 0x01, 1));
        assert_eq!(gate.committed(), ["0x01"]);
        gateway.shutdown();
        sink_thread.join().unwrap();
    }

    /// A gateway serving `protocol` alone on loopback (every transport it has), with its
    /// records going to `sink`. Returns the gateway, the sink's thread, the bound addresses
    /// by transport, the metrics and the registry.
    fn serve_one(
        protocol: Protocol,
        sink: Box<dyn RecordSink>,
        limits: ServeLimits,
    ) -> (Gateway, sink::SinkThread, HashMap<Transport, SocketAddr>, Arc<Metrics>, Arc<Registry>) {
        let (handle, sink_thread) = sink::start(vec![sink], 4).unwrap();
        let config = ServeConfig {
            shards: 1,
            listeners: vec![ListenerConfig::new(protocol, ([127, 0, 0, 1], 0).into())],
            limits,
            ..ServeConfig::default()
        };
        let bound = bind_all(&config).unwrap();
        let addrs = bound.iter().map(|b| (b.transport, b.addr)).collect();
        let (metrics, registry) = (Metrics::new(1), Registry::new());
        let gateway =
            Gateway::start(bound, 1, handle, config.limits.clone(), metrics.clone(), registry.clone()).unwrap();
        (gateway, sink_thread, addrs, metrics, registry)
    }

    /// A command goes through the registry to the connection holding the device and out
    /// as the protocol's frame; the device's answer reaches the sink naming the command.
    /// A command the protocol cannot carry is refused with the reason, and the connection
    /// carries on.
    #[test]
    fn a_command_reaches_the_device_and_its_answer_names_it() {
        use trackgate_codecs::gt06;
        use trackgate_codecs::{Downlink, DownlinkError, Kind};
        let gate = GatedSink::opened();
        let (gateway, sink_thread, addrs, metrics, registry) =
            serve_one(Protocol::Gt06, Box::new(gate.clone()), ServeLimits::default());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let send = |text: &str| {
            rt.block_on(registry.send_command(Protocol::Gt06, "123456789012345", Downlink::Text(text.into())))
        };
        assert_eq!(send("WHERE#"), Err(SendError::NotConnected));
        let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
        device.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        device.write_all(&gt06_login()).unwrap();
        let mut ack = [0u8; 10];
        device.read_exact(&mut ack).unwrap();

        // The session's first command: server flag 1, serial 1; its answer will carry the flag.
        let sent = send("WHERE#").unwrap().unwrap();
        assert_eq!((sent.attribute, sent.value), ("server_flag", 1));
        let expected = gt06::encode_command(1, "WHERE#", None, 1).unwrap();
        let mut frame = vec![0u8; expected.len()];
        device.read_exact(&mut frame).unwrap();
        assert_eq!(frame, expected);
        assert!(matches!(send("Relé#"), Err(SendError::Refused(DownlinkError::Invalid(_)))));

        // The device answers (0x15: the command's length, its server flag, the text).
        let mut content = vec![4 + 12];
        content.extend_from_slice(&1u32.to_be_bytes());
        content.extend_from_slice(b"Lat:N22.5,E1\x00\x02");
        let mut answer = Vec::new();
        gt06::encode_frame(&mut answer, false, gt06::COMMAND_REPLY, &content, 2).unwrap();
        device.write_all(&answer).unwrap();
        let record = gate.wait_for(Kind::CommandResponse);
        assert_eq!(record.attributes.get("command").unwrap(), "WHERE#");
        assert_eq!(record.attributes.get(sent.attribute).unwrap(), sent.value);
        assert_eq!(record.attributes.get("text").unwrap(), "Lat:N22.5,E1");
        let text = metrics.render(&registry);
        for line in [
            "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"written\"} 1",
            "trackgate_commands_total{protocol=\"gt06\",transport=\"tcp\",result=\"refused\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        gateway.shutdown();
        sink_thread.join().unwrap();
        // Once the connection is gone, so is the way to the device.
        assert_eq!(send("WHERE#"), Err(SendError::NotConnected));
    }

    /// A GT06 login (serial 1) of device 123456789012345.
    fn gt06_login() -> Vec<u8> {
        let mut login = Vec::new();
        let mut content = trackgate_codecs::gt06::imei_to_bcd("123456789012345").unwrap().to_vec();
        content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
        trackgate_codecs::gt06::encode_frame(&mut login, false, 0x01, &content, 1).unwrap();
        login
    }

    /// A valid RMC sentence, its checksum computed.
    fn rmc(second: u32) -> Vec<u8> {
        let body = format!("GPRMC,1200{second:02}.00,A,4807.0380,N,01131.0000,E,0.0,0.0,230394,,,A");
        let sum = body.bytes().fold(0u8, |a, b| a ^ b);
        format!("${body}*{sum:02X}\r\n").into_bytes()
    }

    /// Shuts `gateway` down on another thread, runs `once_begun` when the shutdown has
    /// begun, and waits for the end, then for the sink's thread: a hang fails after a
    /// minute instead of holding the suite.
    fn shut_down(gateway: Gateway, sink_thread: sink::SinkThread, once_begun: impl FnOnce()) {
        let stopping = gateway.stopping();
        let (done_tx, done) = std::sync::mpsc::channel();
        thread::spawn(move || {
            gateway.shutdown();
            let _ = done_tx.send(());
        });
        while !*stopping.borrow() {
            thread::sleep(Duration::from_millis(5));
        }
        once_begun();
        done.recv_timeout(Duration::from_secs(60)).expect("the shutdown did not end");
        sink_thread.join().unwrap();
    }

    /// Bytes a device sent before the shutdown but the gateway had not yet read (it was
    /// waiting for the sink) are read, decoded and delivered, not dropped with the socket:
    /// the kernel had acknowledged them, and an NMEA device never sends them again.
    #[test]
    fn bytes_held_by_a_tcp_socket_at_shutdown_are_delivered() {
        let gate = GatedSink::default();
        let (gateway, sink_thread, addrs, ..) =
            serve_one(Protocol::Nmea, Box::new(gate.clone()), ServeLimits::default());
        let mut device = std::net::TcpStream::connect(addrs[&Transport::Tcp]).unwrap();
        device.write_all(b"$IMEI=123456789012345\r\n").unwrap();
        device.write_all(&rmc(1)).unwrap();
        // The gateway has read what came so far and waits for the sink: the rest stays in
        // the kernel's buffer until shutdown.
        gate.wait_for_a_write();
        for second in 2..=4 {
            device.write_all(&rmc(second)).unwrap();
        }
        // Half a sentence: judged at the close, as before.
        device.write_all(b"$GPRMC,1200").unwrap();
        shut_down(gateway, sink_thread, || gate.open());
        let committed = gate.committed();
        let positions = committed.iter().filter(|t| *t == "RMC").count();
        assert_eq!(positions, 4, "{committed:?}");
    }

    /// The same for datagrams held by a UDP socket at shutdown.
    #[test]
    fn datagrams_held_by_a_udp_socket_at_shutdown_are_delivered() {
        let gate = GatedSink::default();
        let (gateway, sink_thread, addrs, ..) =
            serve_one(Protocol::Nmea, Box::new(gate.clone()), ServeLimits::default());
        let device = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = addrs[&Transport::Udp];
        let mut first = b"$IMEI=123456789012345\r\n".to_vec();
        first.extend_from_slice(&rmc(1));
        device.send_to(&first, to).unwrap();
        gate.wait_for_a_write();
        for second in 2..=40 {
            let mut datagram = b"$IMEI=123456789012345\r\n".to_vec();
            datagram.extend_from_slice(&rmc(second));
            device.send_to(&datagram, to).unwrap();
        }
        shut_down(gateway, sink_thread, || gate.open());
        let committed = gate.committed();
        let positions = committed.iter().filter(|t| *t == "RMC").count();
        assert_eq!(positions, 40, "{committed:?}");
    }

    /// A GT06 device that logs in and then sends heartbeats without ever reading its acks,
    /// until its writes would block: the gateway's writes of acks to it are stuck too.
    fn device_that_never_reads(addr: SocketAddr) -> std::net::TcpStream {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        // A small window, so the acks back up quickly.
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut device: std::net::TcpStream = socket.into();
        device.write_all(&gt06_login()).unwrap();
        let mut frames = Vec::new();
        for serial in 0..256u16 {
            trackgate_codecs::gt06::encode_frame(&mut frames, false, 0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial)
                .unwrap();
        }
        device.set_nonblocking(true).unwrap();
        let mut at = 0;
        let mut idle_rounds = 0;
        // Writes stop being taken once the gateway has stopped reading (its ack write
        // waits) and both sockets' buffers between are full. Wait for a few seconds of
        // nothing taken to be sure it is not just slow.
        while idle_rounds < 200 {
            match device.write(&frames[at..]) {
                Ok(n) => {
                    at = (at + n) % frames.len();
                    idle_rounds = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    idle_rounds += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                // The gateway closed it already (a short idle timeout).
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) => break,
                Err(e) => panic!("{e}"),
            }
        }
        device
    }

    /// A device that does not read its acks cannot hold the gateway's shutdown.
    #[test]
    fn a_device_that_never_reads_its_acks_does_not_hold_the_shutdown() {
        let (gateway, sink_thread, addrs, metrics, _) =
            serve_one(Protocol::Gt06, Box::new(GatedSink::opened()), ServeLimits::default());
        let _device = device_that_never_reads(addrs[&Transport::Tcp]);
        shut_down(gateway, sink_thread, || {});
        assert_eq!(metrics.closed(CloseReason::Shutdown), 1);
    }

    /// Nor can it hold its connection past the idle timeout: not reading is not talking.
    #[test]
    fn a_device_that_never_reads_its_acks_is_closed_at_the_idle_timeout() {
        let limits = ServeLimits { idle_timeout: Duration::from_secs(2), ..ServeLimits::default() };
        let (gateway, sink_thread, addrs, metrics, _) =
            serve_one(Protocol::Gt06, Box::new(GatedSink::opened()), limits);
        let _device = device_that_never_reads(addrs[&Transport::Tcp]);
        let mut waited = 0;
        while metrics.closed(CloseReason::Idle) == 0 {
            assert!(waited < 6000, "the stuck connection was never closed");
            thread::sleep(Duration::from_millis(10));
            waited += 1;
        }
        gateway.shutdown();
        sink_thread.join().unwrap();
        assert_eq!(metrics.closed(CloseReason::Shutdown), 0);
    }
}
