//! Commands held for the whole cluster: `TRACKGATE_HELD`, one key per device, its value the
//! list of commands waiting for it, each with its expiry.
//!
//! Every change is a compare-and-set on the key's revision, so two nodes never lose each
//! other's changes: a node holding a command appends; the node a device connects to takes
//! the whole list by deleting the key at the revision it read, and only if that delete
//! succeeds does it write the commands. A command is therefore written by one node at most,
//! once; one that expired is never written, only counted. A node that dies between taking a
//! command and writing it loses it: at most once, the safer failure for an immobiliser.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use trackgate_codecs::{Downlink, Protocol};

use super::plane::now_ms;
use super::{names, Reply};
use crate::registry::{Registry, SendError, MAX_HOLD, MAX_QUEUED_COMMANDS};

/// Tries of a compare-and-set before giving up (another node kept changing the key).
const TRIES: usize = 8;
/// How long a read may keep failing (JetStream electing a new leader for the bucket after a
/// NATS server died takes a few seconds) before the request is answered `503`: within the
/// HTTP endpoint's own bound on a request.
const UNAVAILABLE_FOR: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldCommand {
    /// `{node}-{n}`: unique in the cluster, for the logs.
    id: String,
    command: Downlink,
    until_ms: u64,
}

/// The list under a key, and the revision to change it at (`None`: no key yet). A bucket
/// that does not answer is asked again for [`UNAVAILABLE_FOR`].
async fn read(bucket: &kv::Store, key: &str) -> Result<(Vec<HeldCommand>, Option<u64>), String> {
    let deadline = Instant::now() + UNAVAILABLE_FOR;
    loop {
        match bucket.entry(key).await {
            Ok(None) => return Ok((Vec::new(), None)),
            Ok(Some(e)) if e.operation != kv::Operation::Put => return Ok((Vec::new(), Some(e.revision))),
            Ok(Some(e)) => return Ok((serde_json::from_slice(&e.value).unwrap_or_default(), Some(e.revision))),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(e) => {
                debug!(error = %e, "the held commands' bucket does not answer; asking again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Holds `command` for the device, for `hold` (a week at most).
pub(super) async fn hold(
    bucket: &kv::Store,
    node: &str,
    protocol: Protocol,
    device_id: &str,
    command: &Downlink,
    hold: Duration,
) -> Reply {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let key = names::key(protocol, device_id);
    let item = HeldCommand {
        id: format!("{node}-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        command: command.clone(),
        until_ms: now_ms() + hold.min(MAX_HOLD).as_millis() as u64,
    };
    for _ in 0..TRIES {
        let (mut list, revision) = match read(bucket, &key).await {
            Ok(x) => x,
            Err(e) => return Reply::text(503, format!("the cluster could not hold the command: {e}")),
        };
        let now = now_ms();
        list.retain(|c| c.until_ms > now);
        if list.len() >= MAX_QUEUED_COMMANDS {
            return Reply::text(503, SendError::QueueFull.to_string());
        }
        list.push(item.clone());
        let value = serde_json::to_vec(&list).unwrap_or_default().into();
        let written = match revision {
            Some(r) => bucket.update(key.as_str(), value, r).await.is_ok(),
            None => bucket.create(key.as_str(), value).await.is_ok(),
        };
        if written {
            info!(%protocol, "command held for the cluster");
            return Reply::json(202, &serde_json::json!({"result": "held"}));
        }
    }
    Reply::text(503, "the cluster's held commands for this device kept changing; try again")
}

/// Takes the commands held for a device this node now holds and sends them to it; any that
/// cannot be written here (the device left again) are held again for the rest of their time.
pub(super) async fn take(
    bucket: kv::Store,
    node: String,
    registry: Arc<Registry>,
    protocol: Protocol,
    device_id: String,
) {
    let key = names::key(protocol, &device_id);
    let mut taken = None;
    for _ in 0..TRIES {
        let (list, revision) = match read(&bucket, &key).await {
            Ok((list, Some(r))) if !list.is_empty() => (list, r),
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, "cannot read the cluster's held commands");
                return;
            }
        };
        if bucket.delete_expect_revision(key.as_str(), Some(revision)).await.is_ok() {
            taken = Some(list);
            break;
        }
    }
    let Some(list) = taken else { return };
    let now = now_ms();
    for c in list {
        if c.until_ms <= now {
            // No device id: the count and the command's id say enough.
            info!(%protocol, id = %c.id, "a held command expired before its device connected; not written");
            continue;
        }
        let left = Duration::from_millis(c.until_ms - now);
        let sent = registry.send_command(protocol, &device_id, c.command.clone()).await;
        debug!(%protocol, id = %c.id, result = ?sent, "held command taken");
        if matches!(sent, Err(SendError::NotConnected | SendError::Closed)) {
            let _ = hold(&bucket, &node, protocol, &device_id, &c.command, left).await;
        }
    }
}

/// Commands held for the device, not yet expired.
pub(super) async fn count(bucket: &kv::Store, protocol: Protocol, device_id: &str) -> usize {
    let now = now_ms();
    match read(bucket, &names::key(protocol, device_id)).await {
        Ok((list, _)) => list.iter().filter(|c| c.until_ms > now).count(),
        Err(_) => 0,
    }
}
