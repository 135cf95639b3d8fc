//! Commands on their way to a device: the queue at the connection holding it ([`Control`]),
//! what a caller waits on ([`CommandDone`]) and why a command did not go ([`SendError`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use trackgate_codecs::{AnswerMatch, Downlink, DownlinkError};

use super::holds::HoldFile;

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
pub(crate) struct Control {
    /// Notified when the device has logged in on another connection, or a command is queued.
    wake: Notify,
    /// The device has logged in on another connection: close.
    kicked: AtomicBool,
    commands: Mutex<Commands>,
    /// When the connection last took a whole frame (milliseconds on [`clock_ms`]): the
    /// takeover policy leaves a connection heard from recently alone.
    heard_ms: AtomicU64,
}

/// Milliseconds since the first call: a monotonic clock the registry's rules can compare.
pub(crate) fn clock_ms(now: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(|| now);
    now.saturating_duration_since(start).as_millis() as u64
}

/// A connection's queue of commands. Closed when the registry releases the connection
/// (under the registry's lock, in the same step that forgets it), after which nothing more
/// is queued there: a command left in a queue nobody reads would be lost.
#[derive(Debug, Default)]
pub(super) struct Commands {
    pub(super) queued: VecDeque<QueuedCommand>,
    pub(super) closed: bool,
}

/// Why a connection's queue did not take a command (which comes back with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueRefusal {
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
pub(crate) struct QueuedCommand {
    pub command: Downlink,
    pub done: CommandDone,
    /// Sent with a hold ([`super::Registry::send_command_or_hold`]): held while its device is not
    /// connected, and held again if its connection closes before taking it.
    pub(super) hold: Option<Hold>,
}

/// How long a command may wait for its device, and which one it is (for its caller to take
/// back when the time is up).
#[derive(Debug, Clone, Copy)]
pub(super) struct Hold {
    pub(super) id: u64,
    pub(super) until: Instant,
}

/// What a command's caller hears: written (with how its answer will be recognised), or why
/// not.
pub type Sent = Result<Option<AnswerMatch>, SendError>;

/// Who to tell once a command is written or cannot be. For a command kept in the hold
/// file, telling also notes there that it is done; so does dropping it untold (its caller
/// hears `Closed`), unless the file has been detached at shutdown.
pub(crate) struct CommandDone {
    tx: Option<oneshot::Sender<Sent>>,
    kept: Option<(Arc<HoldFile>, u64)>,
}

impl CommandDone {
    pub(super) fn new(tx: oneshot::Sender<Sent>, kept: Option<(Arc<HoldFile>, u64)>) -> Self {
        CommandDone { tx: Some(tx), kept }
    }

    /// Tells the caller; gives `result` back if it has stopped listening.
    pub(crate) fn send(mut self, result: Sent) -> Result<(), Sent> {
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
    /// Held for a device that did not connect in time ([`super::Registry::send_command_or_hold`]).
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

    /// The connection took a whole frame at `now`.
    pub(crate) fn heard(&self, now: Instant) {
        self.heard_ms.store(clock_ms(now), Ordering::Relaxed);
    }

    /// Whether the connection took a whole frame within `window` before `now`.
    pub(crate) fn heard_within(&self, window: Duration, now: Instant) -> bool {
        clock_ms(now).saturating_sub(self.heard_ms.load(Ordering::Relaxed)) < window.as_millis() as u64
    }

    /// Whether the device has logged in on another connection.
    pub(crate) fn kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    pub(super) fn kick(&self) {
        self.kicked.store(true, Ordering::Release);
        // notify_one keeps the permit if the task is not waiting right now.
        self.wake.notify_one();
    }

    pub(super) fn commands(&self) -> MutexGuard<'_, Commands> {
        self.commands.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every command queued so far, oldest first.
    pub(crate) fn take_commands(&self) -> Vec<QueuedCommand> {
        self.commands().queued.drain(..).collect()
    }

    /// Puts commands taken for writing back at the front of the queue, in their order: the
    /// write failed, and the connection's release hands them on. A closed queue drops them
    /// (their callers hear `Closed`).
    pub(crate) fn put_back(&self, commands: Vec<QueuedCommand>) {
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
    pub(super) fn close(&self) -> Vec<QueuedCommand> {
        let mut commands = self.commands();
        commands.closed = true;
        commands.queued.drain(..).collect()
    }

    /// Callers hold the registry's lock, so that the queue cannot be closed between their
    /// finding this connection in the registry and the command going in.
    pub(super) fn queue(&self, command: QueuedCommand) -> Result<(), (QueuedCommand, QueueRefusal)> {
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
