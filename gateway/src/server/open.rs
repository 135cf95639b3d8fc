//! A connection's opening, before it is a protocol's: the TLS handshake when its listener
//! has TLS, then, on an `auto` listener, the first bytes that name its protocol.

use std::net::SocketAddr;

use tokio::net::TcpStream;
use tracing::debug;

use super::detect::{detect, Budget, Detected};
use super::stopped;
use super::stream::DeviceStream;
use super::tls::{DeviceTls, HandshakeFailed};
use super::Shard;
use crate::close::CloseReason;
use crate::ops::metrics;
use crate::protocol::{Listens, Transport};
use crate::session::SessionSettings;

/// The counters of a listener's connections before they name a protocol: the protocol's
/// own, or the `auto` row.
pub(super) fn listener_counters(shard: &Shard, listens: Listens) -> &metrics::Listener {
    match listens {
        Listens::One(p) => shard.metrics().listener(p, Transport::Tcp),
        Listens::Auto => shard.metrics().undetected(Transport::Tcp),
    }
}

/// The connection's stream once its TLS handshake is done (when its listener has TLS), and
/// its protocol once its first bytes name it (on an `auto` listener). `None` when either
/// failed: counted and logged here.
pub(super) async fn open(
    shard: &Shard,
    listens: Listens,
    settings: &SessionSettings,
    tls: Option<DeviceTls>,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(DeviceStream, Detected)> {
    let counters = listener_counters(shard, listens);
    let mut stream = match tls {
        None => DeviceStream::Plain(tcp),
        Some(tls) => match handshake(shard, &tls, tcp).await {
            Ok(stream) => stream,
            Err(failed) => {
                counters.opened();
                counters.closed(failed.reason());
                debug!(protocol = %listens, %peer, %failed, "no TLS connection");
                return None;
            }
        },
    };
    let protocol = match listens {
        Listens::One(protocol) => return Some((stream, Detected::told(protocol))),
        Listens::Auto => {
            let budget = Budget { partial: &shard.registry.partial, conn: shard.registry.next_conn() };
            detect(&mut stream, settings, shard.limits.read_buffer, shard.stop.clone(), budget).await
        }
    };
    match protocol {
        Ok(detected) => Some((stream, detected)),
        Err(reason) => {
            counters.opened();
            counters.closed(reason);
            debug!(%peer, reason = reason.label(), "a connection to an auto listener named no protocol");
            if reason == CloseReason::Shutdown {
                stream.shutdown().await;
            }
            None
        }
    }
}

/// The TLS handshake of a connection, given up at shutdown.
async fn handshake(shard: &Shard, tls: &DeviceTls, tcp: TcpStream) -> Result<DeviceStream, HandshakeFailed> {
    let mut stop = shard.stop.clone();
    tokio::select! {
        accepted = tls.accept(tcp) => accepted.map(|stream| DeviceStream::Tls(Box::new(stream))),
        _ = stopped(&mut stop) => Err(HandshakeFailed::Shutdown),
    }
}
