//! What crosses shards: which connection holds which device, how many connections each
//! source address has open, and the way to a device's connection for commands (downlink).
//! Touched when a connection opens, identifies itself and closes, and per command, never
//! per frame, so one mutex is enough and keeps it obviously correct.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use trackgate_codecs::{AnswerMatch, Downlink, DownlinkError, Protocol};

use crate::holds::{HoldFile, Restored};

/// A connection's identity in the registry: unique for the life of the process.
pub type ConnId = u64;

/// Commands one connection holds before writing them: a device that is not reading holds
/// its commands, not the caller's memory.
pub const MAX_QUEUED_COMMANDS: usize = 16;

/// The longest a command may be held for a device that is not connected.
pub const MAX_HOLD: Duration = Duration::from_secs(7 * 24 * 3600);

/// Devices with commands held for them, at most: what callers can make the gateway keep.
pub const MAX_HOLDING_DEVICES: usize = 65_536;

/// What others can ask of the connection holding a device. Made when the device
/// identifies itself; an anonymous connection has none.
///
/// One `Notify` for both kinds of request: a connection's task waits on one future for
/// them, not two (each waiter is part of every connection's future, for its whole life).
#[derive(Debug, Default)]
pub struct Control {
    /// Notified when the device has logged in on another connection, or a command is queued.
    wake: Notify,
    /// The device has logged in on another connection: close.
    kicked: AtomicBool,
    commands: Mutex<Commands>,
}

/// A connection's queue of commands. Closed when the registry releases the connection
/// (under the registry's lock, in the same step that forgets it), after which nothing more
/// is queued there: a command left in a queue nobody reads would be lost.
#[derive(Debug, Default)]
struct Commands {
    queued: VecDeque<QueuedCommand>,
    closed: bool,
}

/// Why a connection's queue did not take a command (which comes back with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRefusal {
    Full,
    Closed,
}

impl From<QueueRefusal> for SendError {
    fn from(why: QueueRefusal) -> Self {
        match why {
            QueueRefusal::Full => SendError::QueueFull,
            QueueRefusal::Closed => SendError::Closed,
        }
    }
}

/// A command waiting for its connection, and who to tell how it went.
#[derive(Debug)]
pub struct QueuedCommand {
    pub command: Downlink,
    pub done: CommandDone,
    /// Sent with a hold ([`Registry::send_command_or_hold`]): held while its device is not
    /// connected, and held again if its connection closes before taking it.
    hold: Option<Hold>,
}

/// How long a command may wait for its device, and which one it is (for its caller to take
/// back when the time is up).
#[derive(Debug, Clone, Copy)]
struct Hold {
    id: u64,
    until: Instant,
}

/// What a command's caller hears: written (with how its answer will be recognised), or why
/// not.
pub type Sent = Result<Option<AnswerMatch>, SendError>;

/// Who to tell once a command is written or cannot be. For a command kept in the hold
/// file, telling also notes there that it is done; so does dropping it untold (its caller
/// hears `Closed`), unless the file has been detached at shutdown.
pub struct CommandDone {
    tx: Option<oneshot::Sender<Sent>>,
    kept: Option<(Arc<HoldFile>, u64)>,
}

impl CommandDone {
    fn new(tx: oneshot::Sender<Sent>, kept: Option<(Arc<HoldFile>, u64)>) -> Self {
        CommandDone { tx: Some(tx), kept }
    }

    /// Tells the caller; gives `result` back if it has stopped listening.
    pub fn send(mut self, result: Sent) -> Result<(), Sent> {
        self.note_done();
        match self.tx.take() {
            Some(tx) => tx.send(result),
            None => Err(result),
        }
    }

    fn note_done(&mut self) {
        if let Some((file, id)) = self.kept.take() {
            file.done(id);
        }
    }
}

impl Drop for CommandDone {
    fn drop(&mut self) {
        self.note_done();
    }
}

impl std::fmt::Debug for CommandDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandDone").field("kept", &self.kept.as_ref().map(|(_, id)| id)).finish_non_exhaustive()
    }
}

/// Why a command did not reach the device's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No connection holds this device (never connected, gone, or an NMEA device over UDP:
    /// JT808 and Teltonika UDP peers hold their devices, GT06 is served on TCP only).
    NotConnected,
    /// The connection already holds [`MAX_QUEUED_COMMANDS`] commands it has not written.
    QueueFull,
    /// The protocol cannot carry this command to this device.
    Refused(DownlinkError),
    /// The connection closed (or the gateway stopped) before the command was written.
    Closed,
    /// The command could not be noted in the hold file, so it is not held.
    NotKept(String),
    /// Held for a device that did not connect in time ([`Registry::send_command_or_hold`]).
    Expired,
    /// Commands are already held for [`MAX_HOLDING_DEVICES`] other devices.
    TooManyHeld,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotConnected => f.write_str("the device is not connected"),
            SendError::QueueFull => write!(f, "the connection already holds {MAX_QUEUED_COMMANDS} unsent commands"),
            SendError::Refused(e) => write!(f, "refused: {e}"),
            SendError::Closed => f.write_str("the connection closed before the command was written"),
            SendError::NotKept(e) => write!(f, "the command could not be kept in the hold file: {e}"),
            SendError::Expired => f.write_str("the device did not connect while the command was held"),
            SendError::TooManyHeld => write!(f, "commands are already held for {MAX_HOLDING_DEVICES} other devices"),
        }
    }
}

impl std::error::Error for SendError {}

impl Control {
    /// Resolves when there may be something to do: see [`Control::kicked`], then
    /// [`Control::take_commands`].
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Whether the device has logged in on another connection.
    pub fn kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        // notify_one keeps the permit if the task is not waiting right now.
        self.wake.notify_one();
    }

    fn commands(&self) -> MutexGuard<'_, Commands> {
        self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every command queued so far, oldest first.
    pub fn take_commands(&self) -> Vec<QueuedCommand> {
        self.commands().queued.drain(..).collect()
    }

    /// Puts commands taken for writing back at the front of the queue, in their order: the
    /// write failed, and the connection's release hands them on. A closed queue drops them
    /// (their callers hear `Closed`).
    pub fn put_back(&self, commands: Vec<QueuedCommand>) {
        let mut queue = self.commands();
        if queue.closed {
            return;
        }
        for q in commands.into_iter().rev() {
            queue.queued.push_front(q);
        }
    }

    /// Closes the queue and takes what it holds: called by the registry only, under its
    /// lock, as it forgets the connection.
    fn close(&self) -> Vec<QueuedCommand> {
        let mut commands = self.commands();
        commands.closed = true;
        commands.queued.drain(..).collect()
    }

    /// Callers hold the registry's lock, so that the queue cannot be closed between their
    /// finding this connection in the registry and the command going in.
    fn queue(&self, command: QueuedCommand) -> Result<(), (QueuedCommand, QueueRefusal)> {
        let mut commands = self.commands();
        if commands.closed {
            return Err((command, QueueRefusal::Closed));
        }
        if commands.queued.len() >= MAX_QUEUED_COMMANDS {
            return Err((command, QueueRefusal::Full));
        }
        commands.queued.push_back(command);
        drop(commands);
        self.wake.notify_one();
        Ok(())
    }
}

struct Holder {
    conn: ConnId,
    shard: usize,
    control: Arc<Control>,
    /// A UDP peer, which never takes a device from a TCP connection (see `claim_udp`).
    udp: bool,
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

    /// A registry that keeps commands sent with a hold in `file` until they are done, and
    /// holds again those `restored` from it (read back by [`HoldFile::open`] at start; their
    /// callers are gone, so their outcomes are noted in the file only).
    pub fn with_hold_file(file: HoldFile, restored: Vec<Restored>) -> Arc<Self> {
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
    pub fn detach_hold_file(&self) {
        if let Some(f) = &self.hold_file {
            f.detach();
        }
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

    /// Records that connection `conn` on `shard` now holds the device, reachable through
    /// `control`. An older connection holding it is told to close (a device that reconnects
    /// must not leave its old session behind); returns the shard it was on.
    pub fn claim(
        &self,
        protocol: Protocol,
        device_id: &str,
        conn: ConnId,
        shard: usize,
        control: Arc<Control>,
    ) -> Option<usize> {
        let key: (Protocol, Box<str>) = (protocol, device_id.into());
        self.take_over(self.lock(), key, Holder { conn, shard, control, udp: false })
    }

    /// As [`Registry::claim`] for a UDP peer, which holds the device only if no TCP
    /// connection does: a datagram is easily sent with another's id and source address, and
    /// must not close a device's connection. Returns whether the peer now holds it.
    pub fn claim_udp(
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
        self.take_over(inner, key, Holder { conn, shard, control, udp: true });
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
    /// in memory, and in the hold file when the registry has one
    /// ([`Registry::with_hold_file`]).
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
    pub fn release(&self, protocol: Protocol, device_id: &str, conn: ConnId, control: &Control) {
        let mut inner = self.lock();
        // Closed and emptied in the same step that forgets the connection (under the lock
        // senders queue under), so no command can go in after the queue was taken.
        let unwritten = control.close();
        let key = (protocol, Box::<str>::from(device_id));
        if inner.devices.get(&key).is_some_and(|h| h.conn == conn) {
            inner.devices.remove(&key);
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
        let (control_a, control_b) = (Arc::new(Control::default()), Arc::new(Control::default()));
        assert_eq!(r.claim(Protocol::Gt06, "123", a, 0, control_a.clone()), None);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(0));
        assert_eq!(r.claim(Protocol::Gt06, "123", b, 1, control_b.clone()), Some(0));
        // The permit waits for the old connection's task.
        block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), control_a.woken()).await.unwrap();
        });
        assert!(control_a.kicked() && !control_b.kicked());
        // The old connection closing does not forget the new one.
        r.release(Protocol::Gt06, "123", a, &control_a);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), Some(1));
        // The same id under another protocol is another device.
        assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, control_a), None);
        assert_eq!(r.devices(), 2);
        r.release(Protocol::Gt06, "123", b, &control_b);
        assert_eq!(r.shard_of(Protocol::Gt06, "123"), None);
        // Claiming again from the same connection kicks no one.
        assert_eq!(r.claim(Protocol::Teltonika, "123", a, 0, control_b), None);
    }

    #[test]
    fn commands_queue_up_to_a_bound_and_hear_closed_when_their_connection_goes() {
        let r = Registry::new();
        let control = Arc::new(Control::default());
        r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
        block_on(async {
            let unknown = r.send_command(Protocol::Gt06, "999", text(0)).await;
            assert_eq!(unknown, Err(SendError::NotConnected));
            let waiting: Vec<_> = (0..MAX_QUEUED_COMMANDS)
                .map(|i| {
                    let r = r.clone();
                    tokio::spawn(async move { r.send_command(Protocol::Gt06, "123", text(i)).await })
                })
                .collect();
            while control.commands().queued.len() < MAX_QUEUED_COMMANDS {
                tokio::task::yield_now().await;
            }
            assert_eq!(r.send_command(Protocol::Gt06, "123", text(99)).await, Err(SendError::QueueFull));
            // The connection wakes, takes them in order, writes the first, and closes.
            tokio::time::timeout(std::time::Duration::from_secs(60), control.woken()).await.unwrap();
            assert!(!control.kicked());
            let mut taken = control.take_commands().into_iter();
            let first = taken.next().unwrap();
            assert_eq!(first.command, text(0));
            let answer = AnswerMatch { attribute: "server_flag", value: 1 };
            first.done.send(Ok(Some(answer))).unwrap();
            drop(taken);
            let results: Vec<_> = join_all(waiting).await;
            assert_eq!(results[0], Ok(Some(answer)));
            assert!(results[1..].iter().all(|r| *r == Err(SendError::Closed)), "{results:?}");
        });
    }

    /// Commands taken for writing and not written go back in front of the ones queued since,
    /// in their own order; once the queue is closed they are dropped and their callers hear
    /// `Closed`.
    #[test]
    fn unwritten_commands_are_put_back_in_front_in_order() {
        let r = Registry::new();
        let (conn, control) = (r.next_conn(), Arc::new(Control::default()));
        r.claim(Protocol::Gt06, "123", conn, 0, control.clone());
        block_on(async {
            let send = |i: usize| {
                let r = r.clone();
                tokio::spawn(async move { r.send_command(Protocol::Gt06, "123", text(i)).await })
            };
            let queued_up_to = |n: usize| {
                let control = control.clone();
                async move {
                    while control.commands().queued.len() < n {
                        tokio::task::yield_now().await;
                    }
                }
            };
            let mut waiting = Vec::new();
            for i in 0..3 {
                waiting.push(send(i));
                queued_up_to(i + 1).await;
            }
            let taken = control.take_commands();
            waiting.push(send(3));
            queued_up_to(1).await;
            control.put_back(taken);
            let order = |q: &[QueuedCommand]| q.iter().map(|q| q.command.clone()).collect::<Vec<_>>();
            let again = control.take_commands();
            assert_eq!(order(&again), [text(0), text(1), text(2), text(3)]);
            r.release(Protocol::Gt06, "123", conn, &control);
            control.put_back(again);
            assert!(control.commands().queued.is_empty(), "a closed queue takes nothing back");
            let results = join_all(waiting).await;
            assert!(results.iter().all(|r| *r == Err(SendError::Closed)), "{results:?}");
        });
    }

    /// A UDP peer never takes a device from a TCP connection (a datagram is easily forged);
    /// a TCP login takes it from a UDP peer, and a newer UDP peer from an older one.
    #[test]
    fn udp_peers_hold_a_device_only_when_no_tcp_connection_does() {
        let r = Registry::new();
        let controls: Vec<Arc<Control>> = (0..4).map(|_| Arc::new(Control::default())).collect();
        let (tcp, udp_a, udp_b) = (r.next_conn(), r.next_conn(), r.next_conn());
        r.claim(Protocol::Jt808, "1", tcp, 0, controls[0].clone());
        assert!(!r.claim_udp(Protocol::Jt808, "1", udp_a, 1, controls[1].clone()));
        assert!(!controls[0].kicked());
        r.release(Protocol::Jt808, "1", tcp, &controls[0]);
        assert!(r.claim_udp(Protocol::Jt808, "1", udp_a, 1, controls[1].clone()));
        assert!(r.claim_udp(Protocol::Jt808, "1", udp_b, 1, controls[2].clone()));
        assert!(controls[1].kicked(), "a newer UDP peer (NAT rebinding) takes over");
        assert_eq!(r.claim(Protocol::Jt808, "1", r.next_conn(), 0, controls[3].clone()), Some(1));
        assert!(controls[2].kicked(), "a TCP login takes over from UDP");
    }

    /// A command for a device that is not connected waits for it: handed to its connection
    /// when it claims the device, answered once written; one whose time passes first
    /// expires, at the caller and at the claim.
    #[test]
    fn held_commands_reach_the_device_when_it_connects_or_expire() {
        block_on(async {
            let r = Registry::new();
            // Held, then the device connects.
            let waiting = {
                let r = r.clone();
                tokio::spawn(async move { r.send_command_or_hold(Protocol::Gt06, "123", text(0), LONG).await })
            };
            tokio::task::yield_now().await;
            assert_eq!(r.holding(), 1);
            let control = Arc::new(Control::default());
            r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
            assert_eq!(r.holding(), 0);
            tokio::time::timeout(Duration::from_secs(60), control.woken()).await.unwrap();
            let taken = control.take_commands();
            assert_eq!(taken.len(), 1);
            assert_eq!(taken[0].command, text(0));
            let answer = AnswerMatch { attribute: "server_flag", value: 7 };
            taken.into_iter().next().unwrap().done.send(Ok(Some(answer))).unwrap();
            assert_eq!(waiting.await.unwrap(), Ok(Some(answer)));
            // Connected now: no holding, straight to the connection.
            let direct = {
                let r = r.clone();
                tokio::spawn(async move { r.send_command_or_hold(Protocol::Gt06, "123", text(1), LONG).await })
            };
            tokio::time::timeout(Duration::from_secs(60), control.woken()).await.unwrap();
            assert_eq!(r.holding(), 0);
            control.take_commands().into_iter().next().unwrap().done.send(Ok(None)).unwrap();
            assert_eq!(direct.await.unwrap(), Ok(None));

            // Nobody connects: the caller hears it expired, and nothing stays held.
            let short = Duration::from_millis(50);
            assert_eq!(r.send_command_or_hold(Protocol::Gt06, "456", text(2), short).await, Err(SendError::Expired));
            assert_eq!(r.holding(), 0);
            // A caller that stopped waiting leaves its command held; past its time, the
            // device connecting does not get it.
            let gave_up = tokio::time::timeout(
                Duration::from_millis(1),
                r.send_command_or_hold(Protocol::Gt06, "456", text(3), Duration::from_millis(20)),
            )
            .await;
            assert!(gave_up.is_err());
            assert_eq!(r.holding(), 1);
            tokio::time::sleep(Duration::from_millis(40)).await;
            let late = Arc::new(Control::default());
            r.claim(Protocol::Gt06, "456", r.next_conn(), 0, late.clone());
            assert!(late.take_commands().is_empty());
            assert_eq!(r.holding(), 0);

            // At most MAX_QUEUED_COMMANDS held per device.
            let held: Vec<_> = (0..MAX_QUEUED_COMMANDS)
                .map(|i| {
                    let r = r.clone();
                    tokio::spawn(async move { r.send_command_or_hold(Protocol::Jt808, "789", text(i), LONG).await })
                })
                .collect();
            tokio::task::yield_now().await;
            let over = r.send_command_or_hold(Protocol::Jt808, "789", text(99), LONG).await;
            assert_eq!(over, Err(SendError::QueueFull));
            for h in held {
                h.abort();
            }
        });
    }

    /// Commands still queued when their connection goes are not lost with it: they follow
    /// the device to its newer connection, or, sent with a hold, are held again for the rest
    /// of their time; without a hold and with no newer connection they hear `Closed`.
    #[test]
    fn unwritten_commands_follow_the_device_or_are_held_again() {
        block_on(async {
            let r = Registry::new();
            let send = |i: usize, hold: Option<Duration>| {
                let r = r.clone();
                tokio::spawn(async move {
                    match hold {
                        Some(hold) => r.send_command_or_hold(Protocol::Gt06, "123", text(i), hold).await,
                        None => r.send_command(Protocol::Gt06, "123", text(i)).await,
                    }
                })
            };
            let queued_at = |control: &Arc<Control>, n: usize| {
                let control = control.clone();
                async move {
                    while control.commands().queued.len() < n {
                        tokio::task::yield_now().await;
                    }
                }
            };
            let (a, b, c) = (r.next_conn(), r.next_conn(), r.next_conn());
            let controls: Vec<Arc<Control>> = (0..3).map(|_| Arc::new(Control::default())).collect();

            // Queued at the first connection; the device reconnects before it writes them.
            r.claim(Protocol::Gt06, "123", a, 0, controls[0].clone());
            let plain = send(0, None);
            queued_at(&controls[0], 1).await;
            let held = send(1, Some(LONG));
            queued_at(&controls[0], 2).await;
            r.claim(Protocol::Gt06, "123", b, 0, controls[1].clone());
            r.release(Protocol::Gt06, "123", a, &controls[0]);
            let moved = controls[1].take_commands();
            assert_eq!(moved.iter().map(|q| q.command.clone()).collect::<Vec<_>>(), [text(0), text(1)]);
            for q in moved {
                q.done.send(Ok(None)).unwrap();
            }
            assert_eq!((plain.await.unwrap(), held.await.unwrap()), (Ok(None), Ok(None)));

            // The device goes with nothing newer: the held one waits for it, the other is closed.
            let plain = send(2, None);
            queued_at(&controls[1], 1).await;
            let held = send(3, Some(LONG));
            queued_at(&controls[1], 2).await;
            r.release(Protocol::Gt06, "123", b, &controls[1]);
            assert_eq!(plain.await.unwrap(), Err(SendError::Closed));
            assert_eq!(r.status(Protocol::Gt06, "123"), DeviceStatus { connected: None, held: 1 });
            r.claim(Protocol::Gt06, "123", c, 0, controls[2].clone());
            let handed = controls[2].take_commands();
            assert_eq!(handed.len(), 1);
            assert_eq!(handed[0].command, text(3));
            handed.into_iter().next().unwrap().done.send(Ok(None)).unwrap();
            assert_eq!(held.await.unwrap(), Ok(None));

            // A hold that ran out while queued at the connection is not held again.
            let short = send(4, Some(Duration::from_millis(20)));
            queued_at(&controls[2], 1).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
            r.release(Protocol::Gt06, "123", c, &controls[2]);
            assert_eq!(short.await.unwrap(), Err(SendError::Expired));
            assert_eq!(r.holding(), 0);
        });
    }

    /// Commands sent with a hold while connections for their device come and go (each
    /// takes the device, writes what it finds, and is released) are all written in the end:
    /// none is lost to a connection released between a sender finding it and queueing
    /// there.
    #[test]
    fn commands_sent_while_connections_come_and_go_are_never_lost() {
        let r = Registry::new();
        let key: (Protocol, Box<str>) = (Protocol::Gt06, "1".into());
        let stop = Arc::new(AtomicBool::new(false));
        let write_all = |control: &Control| {
            for q in control.take_commands() {
                let _ = q.done.send(Ok(None));
            }
        };
        let connections = {
            let (r, stop) = (r.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let control = Arc::new(Control::default());
                    let conn = r.next_conn();
                    r.claim(Protocol::Gt06, "1", conn, 0, control.clone());
                    write_all(&control);
                    r.release(Protocol::Gt06, "1", conn, &control);
                }
            })
        };
        let senders: Vec<_> = (0..2)
            .map(|t| {
                let (r, key) = (r.clone(), key.clone());
                std::thread::spawn(move || {
                    // One at a time: the device's queue and held list stay within bounds.
                    let mut outcomes = Vec::new();
                    for i in 0..3000 {
                        let (tx, answer) = oneshot::channel();
                        r.queue_or_hold(&key, text(t * 10_000 + i), tx, LONG).unwrap();
                        outcomes.push(answer.blocking_recv());
                    }
                    outcomes
                })
            })
            .collect();
        let outcomes: Vec<_> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
        stop.store(true, Ordering::Release);
        connections.join().unwrap();
        let lost = outcomes.iter().filter(|o| **o != Ok(Ok(None))).count();
        assert_eq!(lost, 0, "{:?}", outcomes.iter().find(|o| **o != Ok(Ok(None))));
    }

    /// With a hold file, a command held for a device that is not connected survives a
    /// restart (a new registry from the file) and reaches the device when it connects; once
    /// written it is done, and the next start holds nothing. One dropped from memory while
    /// the gateway stops (the file detached) is still held.
    #[test]
    fn held_commands_outlive_a_restart_with_a_hold_file() {
        let dir = std::env::temp_dir().join(format!("trackgate-registry-holds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("held.jsonl");
        let key: (Protocol, Box<str>) = (Protocol::Gt06, "123".into());
        let (file, restored) = HoldFile::open(&path).unwrap();
        let r = Registry::with_hold_file(file, restored);
        let (tx, _caller_gone) = oneshot::channel();
        let id = r.queue_or_hold(&key, text(1), tx, LONG).unwrap();
        assert_eq!(r.status(Protocol::Gt06, "123").held, 1);
        // The gateway stops: the file is detached, then the registry goes.
        r.detach_hold_file();
        drop(r);

        let (file, restored) = HoldFile::open(&path).unwrap();
        assert_eq!(restored.iter().map(|c| (c.id, &c.command)).collect::<Vec<_>>(), [(id, &text(1))]);
        let r = Registry::with_hold_file(file, restored);
        // New ids go on after the ones read back.
        let (tx, _) = oneshot::channel();
        assert!(r.queue_or_hold(&(Protocol::Gt06, "456".into()), text(2), tx, LONG).unwrap() > id);
        let control = Arc::new(Control::default());
        r.claim(Protocol::Gt06, "123", r.next_conn(), 0, control.clone());
        let taken = control.take_commands();
        assert_eq!(taken.iter().map(|q| &q.command).collect::<Vec<_>>(), [&text(1)]);
        for q in taken {
            let _ = q.done.send(Ok(None));
        }
        r.detach_hold_file();
        drop(r);
        let (_, restored) = HoldFile::open(&path).unwrap();
        assert_eq!(restored.iter().map(|c| &c.command).collect::<Vec<_>>(), [&text(2)], "123's is done");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The tests' commands: distinct texts.
    fn text(i: usize) -> Downlink {
        Downlink::Text(format!("C{i}"))
    }

    /// Long enough never to run out during a test.
    const LONG: Duration = Duration::from_secs(600);

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }

    type Sent = Result<Option<AnswerMatch>, SendError>;

    async fn join_all(tasks: Vec<tokio::task::JoinHandle<Sent>>) -> Vec<Sent> {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
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
