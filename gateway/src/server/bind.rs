//! Opening the listeners: one `SO_REUSEPORT` socket per shard and listener, so the kernel
//! spreads connections and UDP peers over the shards.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Socket, Type};
use tracing::{info, warn};
use trackgate_codecs::Protocol;

use super::session_settings;
use super::tls::DeviceTls;
use crate::config::{ListenerConfig, ServeConfig};
use crate::protocol::{Jt808Auth, Listens, Transport};
use crate::registry::auth::AuthStore;
use crate::session::SessionSettings;

/// One listener's sockets, one per shard, bound to the same address.
#[derive(Debug)]
pub struct Bound {
    /// One protocol, or `auto`: each connection's and datagram's told from its first bytes.
    pub protocol: Listens,
    pub transport: Transport,
    /// The address bound (a `:0` port resolved).
    pub addr: SocketAddr,
    pub(super) settings: Arc<SessionSettings>,
    /// A TLS listener's acceptor (its connections are TCP underneath).
    pub(super) tls: Option<DeviceTls>,
    /// A JT808 listener's auth codes (shared by its TCP and UDP sockets).
    pub(super) jt808_codes: Option<Arc<AuthStore>>,
    pub(super) sockets: Vec<Socket>,
}

impl Bound {
    /// The `listening <proto> <tcp|udp|tls> <addr>` line (docs/operations.md).
    pub fn listening_line(&self) -> String {
        let transport = if self.tls.is_some() { "tls" } else { self.transport.as_str() };
        format!("listening {} {transport} {}", self.protocol, self.addr)
    }

    /// Whether its connections speak TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

pub(super) fn reuseport_socket(
    addr: SocketAddr,
    transport: Transport,
    udp_receive_buffer: usize,
) -> io::Result<Socket> {
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
        let codes = jt808_codes(l)?;
        let auth = codes.clone().map(|store| Jt808Auth(store));
        let tls = l.tls.as_ref().map(DeviceTls::load).transpose()?;
        // There is no DTLS: a TLS listener binds no UDP socket.
        let served = l.protocol.transports().iter().filter(|&&t| tls.is_none() || t == Transport::Tcp);
        for &transport in served {
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
                settings: Arc::new(session_settings(l, transport, config, auth.clone())),
                tls: tls.clone(),
                jt808_codes: codes.clone(),
                sockets,
            });
        }
    }
    Ok(bound)
}

/// The auth codes of a JT808 listener, shared by its TCP and UDP sockets in every shard:
/// from its file, or in memory; none where the operator turned authentication off.
fn jt808_codes(l: &ListenerConfig) -> io::Result<Option<Arc<AuthStore>>> {
    if !l.protocol.serves(Protocol::Jt808) || l.jt808_accept_unauthenticated {
        if l.protocol.serves(Protocol::Jt808) {
            warn!(addr = %l.addr, "JT808 authentication is off (jt808_accept_unauthenticated): any terminal's messages are taken");
        }
        return Ok(None);
    }
    let store = match &l.jt808_auth_file {
        Some(path) => AuthStore::open(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot open the JT808 auth file {}: {e}", path.display()))
        })?,
        None => {
            info!(addr = %l.addr, "JT808 auth codes are kept in memory (no jt808_auth_file): terminals register again after a restart");
            AuthStore::in_memory()
        }
    };
    Ok(Some(store))
}

/// The receive buffer the kernel granted `socket`, when that is less than `asked`. Bursts of
/// datagrams past it are dropped by the kernel (counted in its `UdpRcvbufErrors`, never seen
/// by the gateway), so `bind_all` warns the operator at start, once per listener.
pub(super) fn capped_receive_buffer(socket: &Socket, asked: usize) -> Option<usize> {
    let reported = socket.recv_buffer_size().ok()?;
    // Linux reports twice the size it granted (the other half is its bookkeeping).
    let granted = if cfg!(target_os = "linux") { reported / 2 } else { reported };
    (granted < asked).then_some(granted)
}
