//! The takeover policy across the nodes of a cluster.
//!
//! A node learns from the cluster plane which devices other nodes hold, and from which
//! address ([`Registry::seen_elsewhere`]). A connection that logs in with such a device's id
//! from another address asks the holding node first ([`Registry::asks_first`],
//! [`Registry::may_take_from`]); that node answers as it would for a login of its own
//! ([`Registry::keeps_against`]): it keeps the device while its connection has been heard
//! from within the takeover window. Refused, the newcomer is treated as one refused on the
//! same node. A node that does not answer in time (dead, cut off) does not keep the device.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use futures_util::future::BoxFuture;
use trackgate_codecs::Protocol;

use super::Registry;

/// Asks `node` whether a login for the device from `ip` may take it (true) or the node's
/// live connection keeps it (false). Set by the cluster plane.
pub(crate) type Asker = Box<dyn Fn(String, Protocol, String, IpAddr) -> BoxFuture<'static, bool> + Send + Sync>;

/// A device another node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Elsewhere {
    pub node: String,
    /// The holding connection's address; none for a UDP peer, which never keeps a device.
    pub ip: Option<IpAddr>,
}

/// Devices held by other nodes, as the plane last heard.
pub(super) type Remote = HashMap<(Protocol, Box<str>), Elsewhere>;

impl Registry {
    fn remote(&self) -> std::sync::MutexGuard<'_, Remote> {
        self.remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the plane heard: another node holds the device (`Some`), or nobody else does.
    pub(crate) fn seen_elsewhere(&self, protocol: Protocol, device_id: &str, holder: Option<Elsewhere>) {
        let key = (protocol, Box::<str>::from(device_id));
        match holder {
            Some(h) => self.remote().insert(key, h),
            None => self.remote().remove(&key),
        };
    }

    /// The node to ask before a login from `ip` takes the device: one that holds it from
    /// another address, while the policy keeps live connections.
    pub(crate) fn asks_first(&self, protocol: Protocol, device_id: &str, ip: IpAddr) -> Option<String> {
        if self.takeover_window().is_zero() || self.asker.get().is_none() {
            return None;
        }
        let remote = self.remote();
        let holder = remote.get(&(protocol, Box::<str>::from(device_id)))?;
        holder.ip.is_some_and(|held| held != ip).then(|| holder.node.clone())
    }

    /// Asks `node` (see [`Asker`]); true when no asker is set.
    pub(crate) async fn may_take_from(&self, node: String, protocol: Protocol, device_id: &str, ip: IpAddr) -> bool {
        match self.asker.get() {
            Some(ask) => ask(node, protocol, device_id.to_owned(), ip).await,
            None => true,
        }
    }

    /// How the plane asks other nodes. Set once.
    pub(crate) fn set_asker(&self, asker: Asker) {
        let _ = self.asker.set(asker);
    }

    /// Another node asks: does a connection here keep the device against a login from `ip`?
    /// The same rule as for a login on this node ([`Registry::claim_from`]).
    pub(crate) fn keeps_against(&self, protocol: Protocol, device_id: &str, ip: IpAddr) -> bool {
        let window = self.takeover_window();
        let inner = self.lock();
        inner
            .devices
            .get(&(protocol, Box::<str>::from(device_id)))
            .is_some_and(|h| h.keeps_against(ip, u64::MAX, window, Instant::now()))
    }
}
