//! The budget of memory held by partial frames across every connection of the gateway.
//!
//! A frame that has begun but not ended sits in its connection's read buffer. One such
//! connection is cheap, but thousands that each send the start of a frame and then trickle
//! (or stop) hold memory until their frame timeout. The budget bounds the sum: when a
//! connection's partial frame takes it past the budget, the connections that have held
//! partial frames the longest are told to close until the sum is back within it (their
//! devices had nothing acknowledged for those bytes, and send them again).
//!
//! Only connections holding a partial frame are listed, and a connection touches the list
//! when it begins or ends holding one: a device whose reads end on whole frames never does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use super::ConnId;

/// The gateway's budget.
#[derive(Debug)]
pub struct PartialBudget {
    limit: AtomicUsize,
    /// The sum of every holder's `held`.
    total: AtomicUsize,
    /// The connections holding a partial frame, the longest-holding first.
    holders: Mutex<BTreeMap<(Instant, ConnId), Arc<Holder>>>,
}

/// One connection's share of the budget.
#[derive(Debug)]
struct Holder {
    held: AtomicUsize,
    /// Told to close by the budget.
    shed: AtomicBool,
    woken: Notify,
}

/// A connection's handle on the budget: what it holds now, and whether it has been shed.
#[derive(Debug, Default)]
pub struct Holding {
    holder: Option<(Instant, ConnId, Arc<Holder>)>,
}

/// The budget closed this connection's partial frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shed;

impl Default for PartialBudget {
    /// No limit until [`PartialBudget::set_limit`] (the server sets its limits' at start).
    fn default() -> Self {
        PartialBudget { limit: AtomicUsize::new(usize::MAX), total: AtomicUsize::new(0), holders: Mutex::default() }
    }
}

impl PartialBudget {
    /// See `crate::config::ServeLimits::partial_bytes`.
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Relaxed);
    }

    /// The bytes partial frames hold now, over every connection.
    pub fn held(&self) -> usize {
        self.total.load(Relaxed)
    }

    fn holders(&self) -> MutexGuard<'_, BTreeMap<(Instant, ConnId), Arc<Holder>>> {
        self.holders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `conn` now holds `bytes` of a partial frame (0: none), since `now` if it
    /// held none before. Past the budget, the longest holders are shed, perhaps this one.
    pub fn hold(&self, holding: &mut Holding, conn: ConnId, bytes: usize, now: Instant) -> Result<(), Shed> {
        if holding.shed() {
            return Err(Shed);
        }
        if bytes == 0 {
            self.release(holding);
            return Ok(());
        }
        let (_, _, holder) = holding.holder.get_or_insert_with(|| {
            let holder =
                Arc::new(Holder { held: AtomicUsize::new(0), shed: AtomicBool::new(false), woken: Notify::new() });
            self.holders().insert((now, conn), holder.clone());
            (now, conn, holder)
        });
        let before = holder.held.swap(bytes, Relaxed);
        let total = if bytes >= before {
            self.total.fetch_add(bytes - before, Relaxed) + (bytes - before)
        } else {
            self.total.fetch_sub(before - bytes, Relaxed) - (before - bytes)
        };
        if total > self.limit.load(Relaxed) {
            self.shed_longest();
        }
        if holding.shed() {
            return Err(Shed);
        }
        Ok(())
    }

    /// The connection holds no partial frame any more (or is closing).
    pub fn release(&self, holding: &mut Holding) {
        if let Some((since, conn, holder)) = holding.holder.take() {
            self.holders().remove(&(since, conn));
            self.total.fetch_sub(holder.held.swap(0, Relaxed), Relaxed);
        }
    }

    /// Sheds the longest holders until the total is within the limit. Their bytes leave the
    /// total now, so other connections do not shed more while these close.
    fn shed_longest(&self) {
        let limit = self.limit.load(Relaxed);
        let mut holders = self.holders();
        while self.total.load(Relaxed) > limit {
            let Some((_, holder)) = holders.pop_first() else { break };
            holder.shed.store(true, Relaxed);
            self.total.fetch_sub(holder.held.swap(0, Relaxed), Relaxed);
            holder.woken.notify_one();
        }
    }
}

impl Holding {
    fn shed(&self) -> bool {
        self.holder.as_ref().is_some_and(|(_, _, h)| h.shed.load(Relaxed))
    }

    /// Resolves when the budget sheds this connection; never while it holds nothing.
    pub async fn shed_wait(&self) {
        match &self.holder {
            Some((_, _, h)) if h.shed.load(Relaxed) => {}
            Some((_, _, h)) => h.woken.notified().await,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Past the budget the longest holders go first, the newest stay; bytes given back
    /// (a frame completed, a connection closed) leave the total.
    #[test]
    fn the_longest_holders_are_shed_first() {
        let budget = PartialBudget::default();
        budget.set_limit(10_000);
        let start = Instant::now();
        let mut holdings: Vec<Holding> = (0..5).map(|_| Holding::default()).collect();
        for (i, h) in holdings.iter_mut().enumerate() {
            let at = start + Duration::from_millis(i as u64);
            budget.hold(h, i as ConnId, 3_000, at).unwrap();
        }
        // 15,000 asked for: the first two (6,000) were shed when the 4th and 5th came.
        assert_eq!(budget.held(), 9_000);
        assert!(holdings[0].shed() && holdings[1].shed() && !holdings[2].shed());
        assert_eq!(budget.hold(&mut holdings[0], 0, 4_000, start), Err(Shed), "a shed connection stays shed");
        budget.release(&mut holdings[0]);
        budget.release(&mut holdings[1]);
        assert_eq!(budget.held(), 9_000);
        // A frame completed gives its bytes back; a connection growing past the budget by
        // itself, the longest holder, sheds itself.
        budget.hold(&mut holdings[3], 3, 0, start).unwrap();
        assert_eq!(budget.held(), 6_000);
        assert_eq!(budget.hold(&mut holdings[2], 2, 8_000, start), Err(Shed));
        assert_eq!(budget.held(), 3_000);
        budget.release(&mut holdings[2]);
        budget.release(&mut holdings[4]);
        assert_eq!(budget.held(), 0);
        assert!(budget.holders().is_empty());
    }
}
