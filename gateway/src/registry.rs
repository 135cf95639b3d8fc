//! What crosses shards: which connection holds which device, and how many connections each
//! source address has open. Touched when a connection opens, identifies itself and closes,
//! never per frame, so one mutex is enough and keeps it obviously correct.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use trackgate_codecs::Protocol;

/// A connection's identity in the registry: unique for the life of the process.
pub type ConnId = u64;

struct Holder {
    conn: ConnId,
    shard: usize,
    /// Notified to close the connection when the device logs in somewhere else.
    kick: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<(Protocol, Box<str>), Holder>,
    per_ip: HashMap<IpAddr, u32>,
}

/// Shared by every shard.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Registry").field("devices", &inner.devices.len()).field("ips", &inner.per_ip.len()).finish()
    }
}

/// A source address's slot; dropping it gives the slot back.
#[derive(Debug)]
pub struct IpSlot {
    registry: Arc<Registry>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        if let Some(n) = inner.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Registry::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in here can be left half-updated by a panic: keep going with what is there.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh connection id.
    pub fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes a slot for a connection from `ip`, or `None` when it already has `cap` open
    /// (0 = no cap).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Option<IpSlot> {
        let mut inner = self.lock();
        let n = inner.per_ip.entry(ip).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot { registry: self.clone(), ip })
    }

    /// Connections open from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Records that connection `conn` on `shard` now holds the device. An older connection
    /// holding it is told to close (a device that reconnects must not leave its old session
    /// behind); returns the shard it was on.
    pub fn claim(
        &self,
        protocol: Protocol,
        device_id: &str,
        conn: ConnId,
        shard: usize,
        kick: Arc<Notify>,
    ) -> Option<usize> {
        let old = self.lock().devices.insert((protocol, device_id.into()), Holder { conn, shard, kick });
        match old {
            Some(old) if old.conn != conn => {
                // notify_one keeps the permit if the old task is not waiting right now.
                old.kick.notify_one();
                Some(old.shard)
            }
            _ => None,
        }
    }

    /// The connection is gone: forget the device unless a newer connection holds it.
    pub fn release(&self, protocol: Protocol, device_id: &str, conn: ConnId) {
        let mut inner = self.lock();
        let key = (protocol, Box::<str>::from(device_id));
        if inner.devices.get(&key).is_some_and(|h| h.conn == conn) {
            inner.devices.remove(&key);
        }
    }

    /// The shard holding the device, if it is connected.
    pub fn shard_of(&self, protocol: Protocol, device_id: &str) -> Option<usize> {
        self.lock().devices.get(&(protocol, Box::<str>::from(device_id))).map(|h| h.shard)
    }

    /// Devices connected now.
    pub fn devices(&self) -> usize {
        self.lock().devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_login_kicks_the_first_and_the_first_cannot_release_the_second() {
        let r = Registry::new();
        let (a, b) = (r.next_conn(), r.next_conn());
        let (kick_a, kick_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        assert_eq!(r.claim(Protocol::Gt06, "123", a, 0, kick_a.clone()), None);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(0));
        assert_eq!(r.claim(Protocol::Gt06, "123", b, 1, kick_b.clone()), Some(0));
        // The permit waits for the old connection's task.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), kick_a.notified()).await.unwrap();
        });
        // The old connection closing does not forget the new one.
        r.release(Protocol::Gt06, "123", a);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(1));
        // The same id under another protocol is another device.
        assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, kick_a), None);
        assert_eq!(r.devices(), 2);
        r.release(Protocol::Gt06, "123", b);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), None);
        // Claiming again from the same connection kicks no one.
        assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, kick_b), None);
    }

    #[test]
    fn ip_slots_are_capped_and_given_back() {
        let r = Registry::new();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let s1 = r.admit(ip, 2).unwrap();
        let s2 = r.admit(ip, 2).unwrap();
        assert!(r.admit(ip, 2).is_none());
        assert!(r.admit([10, 0, 0, 2].into(), 2).is_some());
        drop(s1);
        assert_eq!(r.open_from(ip), 1);
        let _s3 = r.admit(ip, 2).unwrap();
        drop(s2);
        assert_eq!(r.open_from(ip), 1);
        // 0 means no cap.
        let many: Vec<_> = (0..100).map(|_| r.admit(ip, 0).unwrap()).collect();
        assert_eq!(r.open_from(ip), 101);
        drop(many);
        assert_eq!(r.open_from(ip), 1);
    }
}
