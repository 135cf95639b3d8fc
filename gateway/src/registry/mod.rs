//! What crosses shards: which connection holds which device, how many connections each
//! source address has open, and the way to a device's connection for commands (downlink).
//! Touched when a connection opens, identifies itself and closes, and per command, never
//! per frame, so one mutex is enough and keeps it obviously correct.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use trackgate_codecs::{AnswerMatch, Downlink, Protocol};

use self::commands::{Hold, QueueRefusal};
use self::holds::{HoldFile, Restored};
use self::partial::PartialBudget;
use self::remote::{Asker, Remote};

pub mod auth;
mod commands;
pub(crate) mod holds;
pub mod partial;
pub(crate) mod remote;
#[cfg(test)]
mod tests;

pub(crate) use self::commands::{CommandDone, Control, QueuedCommand};
pub use self::commands::{SendError, Sent, MAX_HOLD, MAX_HOLDING_DEVICES, MAX_QUEUED_COMMANDS};

/// A connection's identity in the registry: unique for the life of the process.
pub(crate) type ConnId = u64;

struct Holder {
    conn: ConnId,
    shard: usize,
    control: Arc<Control>,
    /// A TCP connection's source address (the takeover policy compares them).
    ip: Option<IpAddr>,
    /// A UDP peer, which never takes a device from a TCP connection (see `claim_udp`).
    udp: bool,
    /// When the claim was made (wall clock, Unix milliseconds): across nodes of a cluster,
    /// the older of two connections of one device is the one closed.
    since_ms: u64,
}

impl Holder {
    /// Whether this holder keeps the device against a login from `ip` on connection `conn`:
    /// a TCP connection from another address, heard from within the takeover `window`.
    fn keeps_against(&self, ip: IpAddr, conn: ConnId, window: Duration, now: Instant) -> bool {
        self.conn != conn
            && !window.is_zero()
            && self.ip.is_some_and(|old| old != ip)
            && self.control.heard_within(window, now)
    }
}

/// What the registry tells the cluster plane (`crate::cluster`) of its devices, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Presence {
    /// A connection of this node now holds the device (again, if it was a newer one).
    Claimed { protocol: Protocol, device_id: Box<str>, udp: bool, since_ms: u64, ip: Option<IpAddr> },
    /// No connection of this node holds the device any more.
    Released { protocol: Protocol, device_id: Box<str> },
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What [`Registry::status`] tells of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStatus {
    /// `"tcp"` or `"udp"` while a connection or a UDP peer holds the device.
    pub connected: Option<&'static str>,
    /// Commands held for the device until it connects.
    pub held: usize,
}

#[derive(Default)]
struct Inner {
    devices: HashMap<(Protocol, Box<str>), Holder>,
    per_ip: HashMap<IpAddr, u32>,
    /// Commands for devices that are not connected, handed to the device's connection when
    /// it identifies itself. In memory, and in the hold file when there is one.
    /// Every command in here has a `hold`.
    held: HashMap<(Protocol, Box<str>), Vec<QueuedCommand>>,
}

impl Inner {
    /// Holds `queued` (which has a hold) for the device `key`, within the bounds; gives it
    /// back with the reason when they are reached.
    fn hold(
        &mut self,
        key: &(Protocol, Box<str>),
        queued: QueuedCommand,
        now: Instant,
    ) -> Result<(), (QueuedCommand, SendError)> {
        if !self.held.contains_key(key) && self.held.len() >= MAX_HOLDING_DEVICES {
            self.expire_held(now);
            if self.held.len() >= MAX_HOLDING_DEVICES {
                return Err((queued, SendError::TooManyHeld));
            }
        }
        let list = self.held.entry(key.clone()).or_default();
        expire(list, now);
        if list.len() >= MAX_QUEUED_COMMANDS {
            return Err((queued, SendError::QueueFull));
        }
        list.push(queued);
        Ok(())
    }

    /// Drops the held commands whose time has passed, telling their callers.
    fn expire_held(&mut self, now: Instant) {
        self.held.retain(|_, list| {
            expire(list, now);
            !list.is_empty()
        });
    }
}

fn expire(list: &mut Vec<QueuedCommand>, now: Instant) {
    for q in list.extract_if(.., |q| q.hold.is_none_or(|h| h.until <= now)) {
        let _ = q.done.send(Err(SendError::Expired));
    }
}

/// Shared by every shard.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_conn: AtomicU64,
    /// Ids of commands sent with a hold (the hold file's ids too).
    next_held: AtomicU64,
    /// Where commands sent with a hold are kept across restarts, if anywhere.
    hold_file: Option<Arc<HoldFile>>,
    /// The cluster plane's ear, in cluster mode.
    presence: OnceLock<mpsc::UnboundedSender<Presence>>,
    /// See [`Registry::set_takeover_window`]; 0 (the default) takes over always.
    takeover_window_ms: AtomicU64,
    /// The memory partial frames may hold across every connection.
    pub partial: PartialBudget,
    /// Devices other nodes of the cluster hold (`remote.rs`).
    remote: Mutex<Remote>,
    /// How to ask another node before taking one of its devices (`remote.rs`).
    asker: OnceLock<Asker>,
}

/// A login for a device that a live connection from another address holds: refused by the
/// takeover policy ([`Registry::set_takeover_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakeoverRefused;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Registry").field("devices", &inner.devices.len()).field("ips", &inner.per_ip.len()).finish()
    }
}

/// A source address's slot; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct IpSlot {
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

    /// A registry that keeps commands sent with a hold in `file` until they are done, and
    /// holds again those `restored` from it (read back by [`HoldFile::open`] at start; their
    /// callers are gone, so their outcomes are noted in the file only).
    pub(crate) fn with_hold_file(file: HoldFile, restored: Vec<Restored>) -> Arc<Self> {
        let file = Arc::new(file);
        let next = restored.iter().map(|r| r.id + 1).max().unwrap_or(0);
        let registry =
            Registry { next_held: AtomicU64::new(next), hold_file: Some(file.clone()), ..Registry::default() };
        {
            let mut inner = registry.lock();
            let now = Instant::now();
            for r in restored {
                let key: (Protocol, Box<str>) = (r.protocol, r.device_id.into());
                let (tx, _) = oneshot::channel();
                let done = CommandDone::new(tx, Some((file.clone(), r.id)));
                let queued =
                    QueuedCommand { command: r.command, done, hold: Some(Hold { id: r.id, until: now + r.remaining }) };
                // Past the bounds (a file edited by hand): refused, and noted done.
                if let Err((q, e)) = inner.hold(&key, queued, now) {
                    let _ = q.done.send(Err(e));
                }
            }
        }
        Arc::new(registry)
    }

    /// Stops writing to the hold file: called once the gateway has stopped, so that the
    /// commands still held (dropped from memory on exit) stay in the file for the next start.
    pub(crate) fn detach_hold_file(&self) {
        if let Some(f) = &self.hold_file {
            f.detach();
        }
    }

    /// From now on, every claim and release is told to `tx` (the cluster plane), in the
    /// order they happen. Set once.
    pub(crate) fn tell_presence(&self, tx: mpsc::UnboundedSender<Presence>) {
        let _ = self.presence.set(tx);
    }

    /// Tells the cluster plane, if there is one. Called under the registry's lock, so the
    /// order of the messages is the order of the changes.
    fn told(&self, event: Presence) {
        if let Some(tx) = self.presence.get() {
            let _ = tx.send(event);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing in here can be left half-updated by a panic: keep going with what is there.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh connection id.
    pub(crate) fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Takes a slot for a connection from `ip`, or `None` when it already has `cap` open
    /// (0 = no cap).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Option<IpSlot> {
        let mut inner = self.lock();
        let n = inner.per_ip.entry(ip).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot { registry: self.clone(), ip })
    }

    /// Connections open from `ip` (what the per-address cap counts; the tests read it).
    #[cfg(test)]
    pub(crate) fn open_from(&self, ip: IpAddr) -> u32 {
        self.lock().per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// The tests' claim: [`Registry::claim_from`] from one address, which no takeover
    /// policy refuses.
    #[cfg(test)]
    pub(crate) fn claim(
        &self,
        protocol: Protocol,
        device_id: &str,
        conn: ConnId,
        shard: usize,
        control: Arc<Control>,
    ) -> Option<usize> {
        self.claim_from(protocol, device_id, conn, shard, control, [127, 0, 0, 1].into())
            .expect("one address is never refused")
    }

    /// Devices that cannot prove who they are (GT06, Teltonika, NMEA) are taken over by
    /// whoever sends their id. With a `window`, a login from another address than the one
    /// holding the device does not close that connection while it has been heard from within
    /// the window (`Registry::claim_from` refuses it; across the nodes of a cluster, the
    /// holding node is asked first: `remote.rs`); a silent one, or one from the same address
    /// (a device reconnecting through the same NAT), is taken over as before.
    pub fn set_takeover_window(&self, window: Duration) {
        self.takeover_window_ms.store(window.as_millis() as u64, Ordering::Relaxed);
    }

    /// The takeover window, zero when logins always take over.
    fn takeover_window(&self) -> Duration {
        Duration::from_millis(self.takeover_window_ms.load(Ordering::Relaxed))
    }

    /// Records that TCP connection `conn` (from `ip`, on `shard`) now holds the device,
    /// reachable through `control`. An older connection holding it is told to close (a device
    /// that reconnects must not leave its old session behind) and the shard it was on is
    /// returned, unless the takeover policy keeps it: a connection from another address heard
    /// from within the window keeps the device, and this claim is refused.
    pub(crate) fn claim_from(
        &self,
        protocol: Protocol,
        device_id: &str,
        conn: ConnId,
        shard: usize,
        control: Arc<Control>,
        ip: IpAddr,
    ) -> Result<Option<usize>, TakeoverRefused> {
        let key: (Protocol, Box<str>) = (protocol, device_id.into());
        let inner = self.lock();
        let window = self.takeover_window();
        let now = Instant::now();
        if inner.devices.get(&key).is_some_and(|h| h.keeps_against(ip, conn, window, now)) {
            return Err(TakeoverRefused);
        }
        control.heard(now);
        Ok(self.take_over(inner, key, Holder { conn, shard, control, ip: Some(ip), udp: false, since_ms: now_ms() }))
    }

    /// As [`Registry::claim_from`] for a UDP peer, which holds the device only if no TCP
    /// connection does: a datagram is easily sent with another's id and source address, and
    /// must not close a device's connection. Returns whether the peer now holds it.
    pub(crate) fn claim_udp(
        &self,
        protocol: Protocol,
        device_id: &str,
        conn: ConnId,
        shard: usize,
        control: Arc<Control>,
    ) -> bool {
        let key: (Protocol, Box<str>) = (protocol, device_id.into());
        let inner = self.lock();
        if inner.devices.get(&key).is_some_and(|h| !h.udp && h.conn != conn) {
            return false;
        }
        self.take_over(inner, key, Holder { conn, shard, control, ip: None, udp: true, since_ms: now_ms() });
        true
    }

    fn take_over(&self, mut inner: MutexGuard<'_, Inner>, key: (Protocol, Box<str>), holder: Holder) -> Option<usize> {
        // A control released before (its connection spoke for another device) takes
        // commands again once it holds a device.
        holder.control.commands().closed = false;
        if let Some(mut held) = inner.held.remove(&key) {
            // Its held commands go to the connection, which writes them after the replies
            // to the frame that identified the device.
            expire(&mut held, Instant::now());
            for q in held {
                if let Err((refused, why)) = holder.control.queue(q) {
                    let _ = refused.done.send(Err(why.into()));
                }
            }
        }
        let conn = holder.conn;
        self.told(Presence::Claimed {
            protocol: key.0,
            device_id: key.1.clone(),
            udp: holder.udp,
            since_ms: holder.since_ms,
            ip: holder.ip,
        });
        let old = inner.devices.insert(key, holder);
        drop(inner);
        match old {
            Some(old) if old.conn != conn => {
                old.control.kick();
                Some(old.shard)
            }
            _ => None,
        }
    }

    /// Sends `command` to the device over the connection that holds it, and resolves once
    /// the connection has written it to the socket. The device's answer, where the
    /// protocol has one, arrives later as a `command_response` record through the sink;
    /// the [`AnswerMatch`] returned says which record that is, where the protocol's answer
    /// refers to its command.
    /// Written is not delivered: a connection that closes right after may have lost it,
    /// and nothing is resent.
    pub async fn send_command(
        &self,
        protocol: Protocol,
        device_id: &str,
        command: Downlink,
    ) -> Result<Option<AnswerMatch>, SendError> {
        let (tx, answer) = oneshot::channel();
        let done = CommandDone::new(tx, None);
        {
            let inner = self.lock();
            let holder = inner.devices.get(&(protocol, Box::<str>::from(device_id))).ok_or(SendError::NotConnected)?;
            // Queued under the registry's lock: the connection cannot be released in between
            // (so never closed here: a released connection is no longer in `devices`).
            holder.control.queue(QueuedCommand { command, done, hold: None }).map_err(|(_, why)| why)?;
        }
        // A dropped sender is a connection that ended with the command still queued.
        answer.await.unwrap_or(Err(SendError::Closed))
    }

    /// As [`Registry::send_command`], but when the device is not connected the command is
    /// held for it, for `hold` at most ([`MAX_HOLD`]), and written once it connects and
    /// identifies itself (after the replies to that frame); [`SendError::Expired`] if it
    /// does not connect in time. A command queued at a connection that closes before
    /// writing it is held again for the rest of its time (or goes to the device's newer
    /// connection). A caller that stops waiting leaves the command held. Held commands live
    /// in memory, and in the hold file when the gateway was given one (`commands_hold_file`).
    pub async fn send_command_or_hold(
        &self,
        protocol: Protocol,
        device_id: &str,
        command: Downlink,
        hold: Duration,
    ) -> Result<Option<AnswerMatch>, SendError> {
        let hold = hold.min(MAX_HOLD);
        let key: (Protocol, Box<str>) = (protocol, device_id.into());
        let (tx, mut answer) = oneshot::channel();
        let id = self.queue_or_hold(&key, command, tx, hold)?;
        if let Ok(sent) = tokio::time::timeout(hold, &mut answer).await {
            return sent.unwrap_or(Err(SendError::Closed));
        }
        // Time is up. Still held: take it back, it expired. At a connection: that
        // connection answers (and if it closes first, the command is not held again).
        let still_held = {
            let mut inner = self.lock();
            let taken = inner.held.get_mut(&key).and_then(|list| {
                let at = list.iter().position(|q| q.hold.is_some_and(|h| h.id == id))?;
                Some(list.remove(at))
            });
            if inner.held.get(&key).is_some_and(Vec::is_empty) {
                inner.held.remove(&key);
            }
            // Told (to no one: this is the caller) so that the hold file notes it done.
            taken.map(|q| q.done.send(Err(SendError::Expired))).is_some()
        };
        if still_held {
            return Err(SendError::Expired);
        }
        answer.await.unwrap_or(Err(SendError::Closed))
    }

    /// Queues the command at the device's connection, or holds it for the device; returns
    /// its id either way.
    fn queue_or_hold(
        &self,
        key: &(Protocol, Box<str>),
        command: Downlink,
        tx: oneshot::Sender<Sent>,
        hold: Duration,
    ) -> Result<u64, SendError> {
        let id = self.next_held.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + hold;
        // Noted in the file (and synced) before anyone can take the command, and outside
        // the registry's lock, which every shard takes.
        let kept = match &self.hold_file {
            Some(file) => {
                file.held(id, key.0, &key.1, &command, until).map_err(|e| SendError::NotKept(e.to_string()))?;
                Some((file.clone(), id))
            }
            None => None,
        };
        let done = CommandDone::new(tx, kept);
        let mut inner = self.lock();
        let now = Instant::now();
        let mut queued = QueuedCommand { command, done, hold: Some(Hold { id, until }) };
        if let Some(h) = inner.devices.get(key) {
            // Queued under the registry's lock, as in `send_command`.
            match h.control.queue(queued) {
                Ok(()) => return Ok(id),
                Err((_, QueueRefusal::Full)) => return Err(SendError::QueueFull),
                // Not reached (see `send_command`); held, as for a device not connected.
                Err((back, QueueRefusal::Closed)) => queued = back,
            }
        }
        inner.hold(key, queued, now).map_err(|(_, e)| e)?;
        Ok(id)
    }

    /// Where the device is: whether a connection (or a UDP peer) holds it, and how many
    /// commands are held for it while it is not connected.
    pub fn status(&self, protocol: Protocol, device_id: &str) -> DeviceStatus {
        let key = (protocol, Box::<str>::from(device_id));
        let mut inner = self.lock();
        let connected = inner.devices.get(&key).map(|h| if h.udp { "udp" } else { "tcp" });
        let now = Instant::now();
        let held = match inner.held.get_mut(&key) {
            Some(list) => {
                expire(list, now);
                list.len()
            }
            None => 0,
        };
        if held == 0 {
            inner.held.remove(&key);
        }
        DeviceStatus { connected, held }
    }

    /// Devices with commands held for them (some may have expired, not yet swept).
    pub fn holding(&self) -> usize {
        self.lock().held.len()
    }

    /// The connection is gone, or now speaks for another device: forget the device unless
    /// a newer connection holds it. The commands still queued at its `control`, not yet
    /// taken for writing, are not lost with it: they go to the device's newer connection if
    /// there is one (a device that reconnected), else those sent with a hold are held again
    /// for the rest of their time; the others hear [`SendError::Closed`].
    ///
    /// `control`'s queue is closed until it claims a device again.
    pub(crate) fn release(&self, protocol: Protocol, device_id: &str, conn: ConnId, control: &Control) {
        let mut inner = self.lock();
        // Closed and emptied in the same step that forgets the connection (under the lock
        // senders queue under), so no command can go in after the queue was taken.
        let unwritten = control.close();
        let key = (protocol, Box::<str>::from(device_id));
        if inner.devices.get(&key).is_some_and(|h| h.conn == conn) {
            inner.devices.remove(&key);
            self.told(Presence::Released { protocol, device_id: key.1.clone() });
        }
        if unwritten.is_empty() {
            return;
        }
        if let Some(newer) = inner.devices.get(&key) {
            for q in unwritten {
                // Never closed: `newer` is still in `devices`, so not released.
                if let Err((refused, why)) = newer.control.queue(q) {
                    let _ = refused.done.send(Err(why.into()));
                }
            }
            return;
        }
        let now = Instant::now();
        for q in unwritten {
            match q.hold {
                Some(h) if h.until > now => {
                    if let Err((q, e)) = inner.hold(&key, q, now) {
                        let _ = q.done.send(Err(e));
                    }
                }
                Some(_) => {
                    let _ = q.done.send(Err(SendError::Expired));
                }
                None => {
                    let _ = q.done.send(Err(SendError::Closed));
                }
            }
        }
    }

    /// Another node of the cluster took the device on a connection made at `since_ms` (a UDP
    /// peer's if `udp`): the connection here is closed if it is the older one, as a newer
    /// connection on this node would close it, and a UDP peer elsewhere never closes a TCP
    /// connection here (see `claim_udp`). Returns whether it was closed.
    pub(crate) fn evict(&self, protocol: Protocol, device_id: &str, since_ms: u64, udp: bool) -> bool {
        let key = (protocol, Box::<str>::from(device_id));
        let mut inner = self.lock();
        if inner.devices.get(&key).is_none_or(|h| h.since_ms > since_ms || (udp && !h.udp)) {
            return false;
        }
        let Some(old) = inner.devices.remove(&key) else { return false };
        self.told(Presence::Released { protocol, device_id: key.1 });
        drop(inner);
        old.control.kick();
        true
    }

    /// Whether a connection of this node holds the device.
    pub(crate) fn holds(&self, protocol: Protocol, device_id: &str) -> bool {
        self.lock().devices.contains_key(&(protocol, Box::<str>::from(device_id)))
    }

    /// The shard holding the device, if it is connected (the tests read it).
    #[cfg(test)]
    pub(crate) fn shard_of(&self, protocol: Protocol, device_id: &str) -> Option<usize> {
        self.lock().devices.get(&(protocol, Box::<str>::from(device_id))).map(|h| h.shard)
    }

    /// Devices connected now.
    pub fn devices(&self) -> usize {
        self.lock().devices.len()
    }
}
