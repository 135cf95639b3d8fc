//! A connection to an `auto` listener, before its protocol is known: its first bytes are
//! read until they name one ([`trackgate_codecs::detect`]), then the connection is that
//! protocol's, with those bytes, exactly as on the protocol's own port.

use std::io;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::watch;
use tracing::debug;
use trackgate_codecs::detect::{detect_stream, Detection};
use trackgate_codecs::Protocol;

use super::stopped;
use super::stream::DeviceStream;
use crate::registry::partial::{Holding, PartialBudget, Shed};
use crate::registry::ConnId;
use crate::session::{CloseReason, SessionSettings};

/// The first bytes of a connection, and the protocol they named.
pub(super) struct Detected {
    pub(super) protocol: Protocol,
    /// Every byte read so far: the protocol's decoder takes them all.
    pub(super) buf: BytesMut,
    /// The device closed after them.
    pub(super) at_end: bool,
    /// Shutdown had begun: the bytes read since (see `SHUTDOWN_READ_CAP`).
    pub(super) stopping: Option<usize>,
    /// The connection's id and its share of the partial-frame budget, once bytes were held
    /// while it was told (they are a partial frame like any other).
    pub(super) conn: Option<ConnId>,
    pub(super) holding: Holding,
}

impl Detected {
    /// A connection to a one-protocol listener: nothing read yet.
    pub(super) fn told(protocol: Protocol) -> Self {
        Detected {
            protocol,
            buf: BytesMut::new(),
            at_end: false,
            stopping: None,
            conn: None,
            holding: Holding::default(),
        }
    }
}

/// The gateway's budget for partial frames, and this connection's id in it.
pub(super) struct Budget<'a> {
    pub(super) partial: &'a PartialBudget,
    pub(super) conn: ConnId,
}

/// Most bytes read without a verdict when the junk check is off (`junk_bytes = 0`); with it
/// on, a peer is judged junk after `junk_bytes`, as on a protocol's own port. Only blanks
/// and line ends can run this long undecided (the detector decides any other opening
/// within `detect::MAX_ID_LINE` bytes).
const UNDECIDED_CAP: usize = 64 << 10;

/// Reads the connection's first bytes until they name its protocol. `Err` is why the
/// connection ended first: junk, the device gone or silent, the gateway stopping, the
/// partial-frame budget shedding it (the bytes held meanwhile count in it).
///
/// Silence is bounded as in a session: the idle timeout before any byte, the frame timeout
/// once bytes are held.
pub(super) async fn detect(
    stream: &mut DeviceStream,
    settings: &SessionSettings,
    read_buffer: usize,
    stop: watch::Receiver<bool>,
    budget: Budget<'_>,
) -> Result<Detected, CloseReason> {
    let mut d = Detected::told(Protocol::Gt06);
    d.conn = Some(budget.conn);
    match read_until_told(stream, settings, read_buffer, stop, &budget, &mut d).await {
        Ok(protocol) => Ok(Detected { protocol, ..d }),
        Err(reason) => {
            budget.partial.release(&mut d.holding);
            Err(reason)
        }
    }
}

async fn read_until_told(
    stream: &mut DeviceStream,
    settings: &SessionSettings,
    read_buffer: usize,
    mut stop: watch::Receiver<bool>,
    budget: &Budget<'_>,
    d: &mut Detected,
) -> Result<Protocol, CloseReason> {
    let cap = if settings.junk_bytes > 0 { settings.junk_bytes as usize } else { UNDECIDED_CAP };
    let timer = tokio::time::sleep(settings.idle_timeout);
    tokio::pin!(timer);
    loop {
        let mut arrived = None;
        if d.stopping.is_none() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => d.stopping = Some(0),
                _ = &mut timer => return Err(silent(&d.buf)),
                _ = d.holding.shed_wait() => return Err(CloseReason::PartialBudget),
                r = stream.arrived(&mut d.buf, read_buffer) => arrived = r.map_err(|e| failed(&e))?,
            }
        }
        let was_empty = d.buf.is_empty();
        // Everything the device had sent before the shutdown is read: judge it as whole.
        let mut drained = false;
        match read(stream, d, arrived, read_buffer) {
            Ok(0) => d.at_end = true,
            Ok(_) if was_empty => {
                // Bytes held: the frame timeout now, if it comes sooner.
                let frame = tokio::time::Instant::now() + settings.frame_timeout;
                if frame < timer.deadline() {
                    timer.as_mut().reset(frame);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                drained = d.stopping.is_some();
                if was_empty {
                    // A spurious wake-up: keep no buffer for it.
                    d.buf = BytesMut::new();
                }
            }
            Err(e) => return Err(failed(&e)),
        }
        let held = if d.buf.is_empty() { 0 } else { d.buf.capacity() };
        budget.partial.hold(&mut d.holding, budget.conn, held, Instant::now()).map_err(|Shed| {
            debug!("closing a connection still to name its protocol: partial frames are past their budget");
            CloseReason::PartialBudget
        })?;
        if d.buf.is_empty() && (d.at_end || drained) {
            return Err(if d.at_end { CloseReason::Eof } else { CloseReason::Shutdown });
        }
        match detect_stream(&d.buf, d.at_end || drained) {
            Detection::Found(protocol) => return Ok(protocol),
            Detection::Junk => return Err(CloseReason::Junk),
            Detection::Undecided if d.buf.len() >= cap => return Err(CloseReason::Junk),
            Detection::Undecided => {}
        }
    }
}

/// One read into `d.buf`: what a TLS wait already took, else what the socket holds.
fn read(stream: &mut DeviceStream, d: &mut Detected, arrived: Option<usize>, reserve: usize) -> io::Result<usize> {
    if let Some(n) = arrived {
        return Ok(n);
    }
    d.buf.reserve(reserve);
    let n = match d.stopping {
        Some(_) => stream.read_held(&mut d.buf)?,
        None => stream.read_drained(&mut d.buf)?,
    };
    if let Some(held) = &mut d.stopping {
        *held += n;
    }
    Ok(n)
}

fn silent(buf: &BytesMut) -> CloseReason {
    if buf.is_empty() {
        CloseReason::Idle
    } else {
        CloseReason::FrameTimeout
    }
}

fn failed(e: &io::Error) -> CloseReason {
    debug!(error = %e, "read failed before the protocol was told");
    CloseReason::Error
}
