//! `trackgate serve`: the sharded server. `bind` opens the sockets, `tcp` and `udp`
//! move bytes between them and sessions; this file starts the shards and delivers records.
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

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use socket2::Socket;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use trackgate_codecs::{AnswerMatch, Protocol};

use crate::cluster::{Cluster, Handler, StopCluster};
use crate::config::{ListenerConfig, ServeConfig, ServeLimits};
use crate::ops::metrics::{self, Metrics, ShardMetrics};
use crate::ops::{self, http};
use crate::protocol::{Jt808Auth, Listens, StreamOptions, Transport};
use crate::registry::auth::AuthStore;
use crate::registry::holds::HoldFile;
use crate::registry::{Control, QueuedCommand, Registry, SendError};
use crate::session::{Output, Session, SessionSettings};
use crate::sink::SinkHandle;

mod bind;
mod detect;
mod open;
mod stream;
mod tcp;
#[cfg(test)]
mod tests;
mod tls;
mod udp;

pub use self::bind::{bind_all, Bound};
use self::tcp::accept_loop;
use self::tls::DeviceTls;
use self::udp::udp_loop;

fn session_settings(
    l: &ListenerConfig,
    transport: Transport,
    config: &ServeConfig,
    jt808_auth: Option<Jt808Auth>,
) -> SessionSettings {
    SessionSettings {
        stream: StreamOptions { transport, jt808_auth, ..l.stream.clone() },
        idle_timeout: l.idle_timeout.unwrap_or(config.limits.idle_timeout),
        frame_timeout: config.limits.frame_timeout,
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
struct ShardSocket {
    protocol: Listens,
    transport: Transport,
    settings: Arc<SessionSettings>,
    tls: Option<DeviceTls>,
    socket: Socket,
}

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
        registry.partial.set_limit(limits.partial_bytes);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        // Deal each listener's sockets out to the shards.
        let mut per_shard: Vec<Vec<ShardSocket>> = (0..shards).map(|_| Vec::new()).collect();
        for b in bound {
            for (i, socket) in b.sockets.into_iter().enumerate() {
                let (protocol, transport, settings, tls) = (b.protocol, b.transport, b.settings.clone(), b.tls.clone());
                per_shard[i % shards].push(ShardSocket { protocol, transport, settings, tls, socket });
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
    // free descriptor, and a runtime or signal pipe made after that fails (and a failed
    // signal registration would end `stop` at once: the gateway would quietly shut down).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut stop = Box::pin(stop);
    if runtime.block_on(already_stopped(&mut stop)) {
        return Ok(());
    }
    let bound = bind_all(config)?;
    let metrics_listener = bind_metrics(config)?;
    for b in &bound {
        eprintln!("{}", b.listening_line());
    }
    if let Some(l) = &metrics_listener {
        eprintln!("listening metrics http {}", l.local_addr()?);
    }
    let metrics = Metrics::new(config.shards);
    let registry = open_registry(config)?;
    // However `run` ends (an error included), the commands still held when it does stay in
    // the hold file for the next start.
    let _detach = DetachHoldFile(registry.clone());
    let cluster = start_cluster(config, &registry, &bound)?;
    // Stopped explicitly once the shards are done; on an early return (an error below), when
    // this guard drops.
    let mut stop_cluster = StopCluster(cluster.clone());
    info!(listeners = bound.len(), shards = config.shards, "trackgate serving");
    let gateway = Gateway::start(bound, config.shards, sink, config.limits.clone(), metrics.clone(), registry.clone())?;
    let endpoint = metrics_listener.map(|listener| {
        let endpoint = http::Endpoint {
            metrics,
            registry,
            commands: config.commands_token.clone(),
            cluster,
            connections: config.limits.http_connections,
        };
        (listener, endpoint)
    });
    runtime.block_on(serve_until_stopped(endpoint, &gateway, stop))?;
    info!("shutting down: no new connections, flushing the sink");
    // Every connection closes and hands its unwritten commands back to the registry before
    // this returns; `_detach` then keeps what is held in the hold file.
    gateway.shutdown();
    // Every release is told by now: the plane removes this node's presence and beat.
    if let Some(c) = stop_cluster.0.take() {
        c.stop();
    }
    Ok(())
}

/// Whether `stop` has resolved already (polled once, which also registers its signals).
async fn already_stopped(stop: &mut (impl std::future::Future<Output = ()> + Unpin)) -> bool {
    tokio::select! {
        biased;
        _ = stop => true,
        _ = std::future::ready(()) => false,
    }
}

/// The metrics endpoint's socket, when one is configured.
fn bind_metrics(config: &ServeConfig) -> io::Result<Option<std::net::TcpListener>> {
    let Some(addr) = config.metrics else { return Ok(None) };
    std::net::TcpListener::bind(addr)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot serve metrics on {addr}: {e}")))
}

/// The registry, with the commands held in the hold file (when configured) read back.
fn open_registry(config: &ServeConfig) -> io::Result<Arc<Registry>> {
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
    registry.set_takeover_window(config.limits.takeover_window);
    Ok(registry)
}

/// The cluster plane, in cluster mode, sharing the JT808 listeners' auth codes.
fn start_cluster(config: &ServeConfig, registry: &Arc<Registry>, bound: &[Bound]) -> io::Result<Option<Arc<Cluster>>> {
    let Some(c) = &config.cluster else { return Ok(None) };
    let cluster = Cluster::start(c, registry.clone(), command_handler(registry))?;
    cluster.share_jt808_codes(jt808_codes(bound))?;
    Ok(Some(cluster))
}

/// Serves the metrics endpoint (when there is one) until `stop` resolves or the gateway
/// stops by itself (its sink failed).
async fn serve_until_stopped(
    endpoint: Option<(std::net::TcpListener, http::Endpoint)>,
    gateway: &Gateway,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    if let Some((listener, endpoint)) = endpoint {
        listener.set_nonblocking(true)?;
        tokio::spawn(http::serve(TcpListener::from_std(listener)?, endpoint, gateway.stopping()));
    }
    let mut stopped_by_itself = gateway.stopping();
    tokio::select! {
        _ = stop => {}
        _ = stopped(&mut stopped_by_itself) => {}
    }
    Ok(())
}

/// The JT808 listeners' auth code stores, each once.
fn jt808_codes(bound: &[Bound]) -> Vec<Arc<AuthStore>> {
    let mut stores: Vec<Arc<AuthStore>> = Vec::new();
    for store in bound.iter().filter_map(|b| b.jt808_codes.as_ref()) {
        if !stores.iter().any(|s| Arc::ptr_eq(s, store)) {
            stores.push(store.clone());
        }
    }
    stores
}

/// How this node answers command requests that reach it through the cluster.
fn command_handler(registry: &Arc<Registry>) -> Handler {
    let registry = registry.clone();
    Arc::new(move |protocol, device_id, body, hold| {
        let registry = registry.clone();
        Box::pin(async move { ops::command::answer(&registry, protocol, &device_id, &body, hold).await })
    })
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
    for ShardSocket { protocol, transport, settings, tls, socket } in sockets {
        match transport {
            Transport::Tcp => match TcpListener::from_std(socket.into()) {
                Ok(l) => {
                    tasks.spawn(accept_loop(shard.clone(), protocol, settings, tls, l));
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

/// Frames the commands queued at `control` through the device's session into
/// `out.commands`; a refused command's caller hears why at once. Returns the commands framed,
/// in the order of `out.commands`, to tell each caller once its bytes are out.
fn queue_commands(
    control: &Control,
    session: &mut Session,
    out: &mut Output,
    counters: &metrics::Listener,
) -> Vec<(QueuedCommand, Option<AnswerMatch>)> {
    let mut framed = Vec::new();
    for queued in control.take_commands() {
        match session.command(&queued.command, out) {
            Ok(answer) => framed.push((queued, answer)),
            Err(e) => {
                counters.command(false);
                let _ = queued.done.send(Err(SendError::Refused(e)));
            }
        }
    }
    framed
}
