//! `--listen PROTO=ADDR` and the server's limits (`[limits]`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::Listens;

/// `--listen PROTO=ADDR` (`PROTO` may be `auto`: every protocol on one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    pub protocol: Listens,
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

/// Connections the operator's HTTP endpoint serves at once, unless the limits say.
pub const HTTP_CONNECTIONS: usize = 64;

/// Limits and timeouts of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// A connection (or UDP peer) that sends nothing for this long is closed (forgotten),
    /// unless its listener sets its own.
    pub idle_timeout: Duration,
    /// See [`crate::session::SessionSettings::frame_timeout`].
    pub frame_timeout: Duration,
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
    /// See [`crate::session::SessionSettings::junk_bytes`].
    pub junk_bytes: u64,
    /// Messages waiting for the sink at most (back-pressure beyond): each is the batches a
    /// shard's connections submitted in one turn of its runtime.
    pub sink_queue: usize,
    /// A login from another address does not close a device's connection heard from within
    /// this long (`crate::registry::Registry::set_takeover_window`); zero: it always does.
    pub takeover_window: Duration,
    /// Connections the operator's HTTP endpoint serves at once (more wait in the backlog).
    pub http_connections: usize,
    /// Memory (read buffers' capacity) that partial frames may hold across all connections;
    /// past it the connections holding one the longest are closed
    /// (`crate::registry::partial`).
    pub partial_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_udp_peers: 100_000,
            udp_receive_buffer: UDP_RECEIVE_BUFFER,
            read_buffer: 4096,
            max_connections_per_shard: 100_000,
            max_connections_per_ip: 4096,
            takeover_window: Duration::from_secs(30),
            http_connections: HTTP_CONNECTIONS,
            partial_bytes: PARTIAL_BYTES,
            junk_bytes: 2048,
            sink_queue: 1024,
        }
    }
}

/// The memory partial frames may hold, over all connections, unless the limits say: room for
/// 64k connections each holding one 4 KiB read buffer.
pub const PARTIAL_BYTES: usize = 256 << 20;

/// The receive buffer asked for on each UDP socket (one per shard and protocol) unless the
/// configuration says otherwise.
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;
