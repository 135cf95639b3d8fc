//! JT808 auth codes shared by the cluster: `TRACKGATE_JT808_CODES`, one key per terminal (its
//! id as a [`names::token`]), its value the code.
//!
//! A registration's code is created in the bucket (which fails if the terminal has one,
//! whichever node gave it) before the 0x8100 carries it. Every node watches the bucket and
//! tells its listeners' stores, so a check never leaves the node: it reads the store's copy.
//! A terminal that authenticates on another node within milliseconds of registering may
//! find that node not yet told, and tries again as it would after any failure.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::names;
use super::plane::stopped;
use crate::registry::auth::{AuthStore, SharedCodes};

/// How long a registration waits for the bucket to keep its code before it goes unanswered.
const CREATE_WAIT: Duration = Duration::from_secs(5);
/// How long a node may take, at start, to read the codes the cluster holds.
const LOAD_WAIT: Duration = Duration::from_secs(30);

/// The bucket, as a [`SharedCodes`] for the stores on this node.
pub(super) struct KvCodes {
    bucket: kv::Store,
    runtime: Handle,
}

impl SharedCodes for KvCodes {
    /// Runs on the plane's runtime; the shard waits, as it waits for a file's sync. A create
    /// that answers after the wait is given up is undone, so that no terminal is left
    /// registered with a code it never received.
    fn create(&self, device_id: &str, code: &str) -> io::Result<bool> {
        let (tx, rx) = mpsc::channel();
        let (bucket, key, value) = (self.bucket.clone(), names::token(device_id), code.to_owned().into());
        self.runtime.spawn(async move {
            let created = bucket.create(&key, value).await;
            if let Err(mpsc::SendError(Ok(revision))) = tx.send(created) {
                let _ = bucket.delete_expect_revision(&key, Some(revision)).await;
            }
        });
        match rx.recv_timeout(CREATE_WAIT) {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the codes' bucket did not answer in time")),
        }
    }

    fn delete(&self, device_id: &str) {
        let (bucket, key) = (self.bucket.clone(), names::token(device_id));
        self.runtime.spawn(async move {
            if let Err(e) = bucket.delete(&key).await {
                warn!(error = %e, "a JT808 deregistration could not be noted in the cluster");
            }
        });
    }
}

/// Moves `stores` onto the bucket: the codes they held (their files') are enrolled where the
/// cluster has none for the terminal, the bucket's codes are read into each, and a task on
/// `runtime` keeps them told until `stop`.
pub(super) fn share(
    bucket: kv::Store,
    stores: Vec<Arc<AuthStore>>,
    runtime: &Handle,
    stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let shared = Arc::new(KvCodes { bucket: bucket.clone(), runtime: runtime.clone() });
    let enrolled: Vec<(String, String)> =
        stores.iter().flat_map(|s| s.share(shared.clone() as Arc<dyn SharedCodes>)).collect();
    runtime.block_on(async {
        for (device_id, code) in &enrolled {
            match bucket.create(names::token(device_id), code.clone().into()).await {
                Ok(_) => {}
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(io::Error::other(format!("cannot enroll JT808 codes in the cluster: {e}"))),
            }
        }
        let watch = tokio::time::timeout(LOAD_WAIT, load(&bucket, &stores))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the cluster's JT808 codes did not load in time"))??;
        info!(enrolled = enrolled.len(), "JT808 auth codes shared with the cluster");
        runtime.spawn(follow(bucket, stores, watch, stop));
        Ok(())
    })
}

/// Every code the bucket holds, told to `stores`; the watch goes on from there.
async fn load(bucket: &kv::Store, stores: &[Arc<AuthStore>]) -> io::Result<kv::Watch> {
    let mut watch = bucket.watch_with_history(">").await.map_err(io::Error::other)?;
    // An empty bucket sends nothing to wait for.
    if bucket.status().await.map_err(io::Error::other)?.values() == 0 {
        return Ok(watch);
    }
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(io::Error::other)?;
        tell(stores, &entry);
        if entry.delta == 0 {
            break;
        }
    }
    Ok(watch)
}

/// Tells `stores` of every change any node makes, until `stop`; a watch that ends is made
/// again with the bucket's whole state, so nothing missed in between stays missed.
async fn follow(bucket: kv::Store, stores: Vec<Arc<AuthStore>>, mut watch: kv::Watch, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => return,
            entry = watch.next() => match entry {
                Some(Ok(entry)) => tell(&stores, &entry),
                Some(Err(e)) => debug!(error = %e, "a JT808 codes watch entry could not be read"),
                None => loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    match bucket.watch_with_history(">").await {
                        Ok(w) => {
                            watch = w;
                            break;
                        }
                        Err(e) => warn!(error = %e, "cannot watch the cluster's JT808 codes; trying again"),
                    }
                },
            },
        }
    }
}

fn tell(stores: &[Arc<AuthStore>], entry: &kv::Entry) {
    let Some(device_id) = names::from_token(&entry.key) else { return };
    let code = match entry.operation {
        kv::Operation::Put => std::str::from_utf8(&entry.value).ok(),
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    for store in stores {
        store.learned(&device_id, code);
    }
}
