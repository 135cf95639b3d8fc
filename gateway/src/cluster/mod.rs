//! The cluster plane (`--cluster nats://…`): several gateway nodes on one NATS, sharing what
//! used to stop at the process boundary. The manual, with every subject, bucket and payload,
//! is docs/cluster.md.
//!
//! * **Presence.** The registry tells the plane of every claim and release
//!   (`registry::Presence`); the plane keeps `TRACKGATE_DEVICES` (`{protocol}.{device}` → node,
//!   transport, since) and watches it: a node that sees another node take a device it holds
//!   on an older connection closes that connection, the rule one node keeps inside itself.
//!   Nodes beat in `TRACKGATE_NODES`, whose keys age out, so a dead node's entries are known
//!   stale ([`names`]).
//! * **Commands from anywhere.** The node holding a device answers requests on
//!   `trackgate.commands.{protocol}.{device}` (a subscription per device it holds, so a
//!   request for a device no node holds gets NATS's "no responders" at once, never a wait
//!   for nobody). Any node's HTTP endpoint routes a command for a device it does not hold
//!   there (`Cluster::route`).
//! * **Held commands** for devices no node holds live in `TRACKGATE_HELD`; the node a device
//!   connects to takes them, deleting them on a compare-and-set before writing, so exactly one
//!   node writes each, and none after its expiry (`held.rs`).
//!
//! * **JT808 auth codes** live in `TRACKGATE_JT808_CODES`, so a terminal registered on one
//!   node authenticates on any (`codes.rs`).
//!
//! The plane runs on a runtime of its own; records never pass through it (they go to the
//! sinks, the JetStream sink among them).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{Client, RequestErrorKind};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use trackgate_codecs::{Downlink, Protocol};

use crate::bus;
use crate::config::ClusterConfig;
use crate::registry::auth::AuthStore;
use crate::registry::Registry;

mod codes;
mod held;
pub mod names;
mod plane;

/// How long a routed command may take: the holder's own wait for the write, and some.
const ROUTE_WAIT: Duration = Duration::from_secs(6);
/// How long a login waits for another node's answer on a takeover.
const ASK_WAIT: Duration = Duration::from_secs(2);
/// How often a node beats, and how long its beat stays (three beats missed: dead).
const BEAT: Duration = Duration::from_secs(2);
const BEAT_AGE: Duration = Duration::from_secs(6);

/// The answer to a command request: an HTTP status code and its body (JSON for `200` and
/// `202`, text otherwise), the same over HTTP and over NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub body: String,
}

impl Reply {
    pub fn text(code: u16, body: impl Into<String>) -> Reply {
        let mut body = body.into();
        body.push('\n');
        Reply { code, body }
    }

    pub fn json(code: u16, body: &serde_json::Value) -> Reply {
        Reply { code, body: format!("{body}\n") }
    }

    pub fn is_json(&self) -> bool {
        matches!(self.code, 200 | 202)
    }

    /// The answer for a device no connection holds.
    pub fn not_connected() -> Reply {
        Reply::text(404, "the device is not connected (NMEA devices over UDP never are)")
    }
}

/// Answers a command request for a device of this node: protocol, device id, the request's
/// body, the hold asked for.
pub(crate) type Handler = Arc<
    dyn Fn(Protocol, String, Bytes, Option<Duration>) -> futures_util::future::BoxFuture<'static, Reply> + Send + Sync,
>;

/// This node's part of the cluster.
pub struct Cluster {
    node: String,
    client: Client,
    buckets: Buckets,
    /// The plane's runtime and its task, until [`Cluster::stop`].
    running: Mutex<Option<(tokio::runtime::Runtime, tokio::task::JoinHandle<()>)>>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

/// The plane's buckets.
#[derive(Clone)]
struct Buckets {
    devices: kv::Store,
    nodes: kv::Store,
    held: kv::Store,
    jt808_codes: kv::Store,
}

impl Cluster {
    /// Connects, makes sure the buckets exist, and starts the plane: from now on `registry`
    /// tells it every claim and release, and `handler` answers commands for this node's
    /// devices. NATS unreachable is an error here, at start.
    pub(crate) fn start(config: &ClusterConfig, registry: Arc<Registry>, handler: Handler) -> io::Result<Arc<Cluster>> {
        let runtime = bus::runtime("trackgate-cluster")?;
        let (client, buckets) = runtime.block_on(async {
            let client = bus::connect(&config.servers, &format!("trackgate-{}", config.node)).await?;
            let buckets = Buckets::open(&jetstream::new(client.clone()), config.replicas).await?;
            Ok::<_, io::Error>((client, buckets))
        })?;
        let (events_tx, events) = mpsc::unbounded_channel();
        registry.tell_presence(events_tx);
        registry.set_asker(takeover_asker(client.clone()));
        let (stop, stopping) = watch::channel(false);
        let plane = plane::Plane::new(config.node.clone(), client.clone(), buckets.clone(), registry, handler);
        let task = runtime.spawn(plane.run(events, stopping));
        info!(node = %config.node, nats = %config.servers, "cluster plane started");
        Ok(Arc::new(Cluster {
            node: config.node.clone(),
            client,
            buckets,
            running: Mutex::new(Some((runtime, task))),
            stop,
        }))
    }

    /// The JT808 listeners' auth codes go to the cluster's bucket: what their files held is
    /// enrolled there, and they learn every code any node keeps. Call once, before the
    /// listeners serve, from outside any runtime.
    pub(crate) fn share_jt808_codes(&self, stores: Vec<Arc<AuthStore>>) -> io::Result<()> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let Some((runtime, _)) = running.as_ref() else { return Ok(()) };
        let handle = runtime.handle().clone();
        drop(running);
        codes::share(self.buckets.jt808_codes.clone(), stores, &handle, self.stop.subscribe())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stops the plane once the gateway has stopped (every release told): this node's
    /// presence entries and beat are removed. Call from outside any runtime.
    pub(crate) fn stop(&self) {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((runtime, task)) = running {
            self.stop.send_replace(true);
            if runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await }).is_err() {
                warn!("the cluster plane did not finish its goodbyes in time");
            }
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Sends a command for a device this node does not hold to the node that does, and
    /// brings back its answer. A device no node holds: `404`, or with a hold, the command
    /// is held for the whole cluster (`202`, `{"result":"held"}`).
    pub(crate) async fn route(
        &self,
        protocol: Protocol,
        device_id: &str,
        body: &[u8],
        command: &Downlink,
        hold: Option<Duration>,
    ) -> Reply {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(hold) = hold {
            headers.insert(names::HOLD_HEADER, hold.as_secs().to_string().as_str());
        }
        let request =
            async_nats::Request::new().headers(headers).payload(Bytes::copy_from_slice(body)).timeout(Some(ROUTE_WAIT));
        match self.client.send_request(names::command_subject(protocol, device_id), request).await {
            Ok(message) => plane::reply_of(&message),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => match hold {
                Some(hold) => held::hold(&self.buckets.held, &self.node, protocol, device_id, command, hold).await,
                None => Reply::not_connected(),
            },
            Err(e) => Reply::text(503, format!("the cluster could not reach the device's node: {e}")),
        }
    }

    /// Where the device is connected in the cluster, if anywhere: the node and the
    /// transport. An entry of a node that no longer beats is stale and not an answer.
    pub(crate) async fn whereabouts(&self, protocol: Protocol, device_id: &str) -> Option<(String, String)> {
        let entry = self.buckets.devices.get(names::key(protocol, device_id)).await.ok()??;
        let seen: plane::Seen = serde_json::from_slice(&entry).ok()?;
        self.buckets.nodes.get(seen.node.as_str()).await.ok()??;
        Some((seen.node, seen.transport))
    }

    /// Commands held for the device across the cluster, not yet expired.
    pub(crate) async fn held(&self, protocol: Protocol, device_id: &str) -> usize {
        held::count(&self.buckets.held, protocol, device_id).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Not stopped (an error path): let the runtime go without waiting on it here, which
        // may be inside another runtime.
        if let Some((runtime, _)) = self.running.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            runtime.shutdown_background();
        }
    }
}

impl Buckets {
    async fn open(js: &jetstream::Context, replicas: usize) -> io::Result<Buckets> {
        let bucket = |name: &str, max_age: Duration| kv::Config {
            bucket: name.to_owned(),
            history: 1,
            max_age,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        Ok(Buckets {
            devices: open_bucket(js, bucket(names::DEVICES_BUCKET, Duration::ZERO)).await?,
            nodes: open_bucket(js, bucket(names::NODES_BUCKET, BEAT_AGE)).await?,
            // A held command lives a week at most; the bucket forgets what nobody took.
            held: open_bucket(js, bucket(names::HELD_BUCKET, crate::registry::MAX_HOLD + BEAT_AGE)).await?,
            jt808_codes: open_bucket(js, bucket(names::JT808_CODES_BUCKET, Duration::ZERO)).await?,
        })
    }
}

/// How a login here asks the node holding its device from another address whether it may
/// take it (`registry::remote`): no answer within [`ASK_WAIT`] (the node is gone or cut
/// off) lets it.
fn takeover_asker(client: Client) -> crate::registry::remote::Asker {
    Box::new(move |node, protocol, device, ip| {
        let client = client.clone();
        Box::pin(async move {
            let ask = plane::TakeoverAsk { protocol, device, ip };
            let Ok(payload) = serde_json::to_vec(&ask) else { return true };
            let subject = format!("{}.{node}", names::TAKEOVER_PREFIX);
            let request = async_nats::Request::new().payload(payload.into()).timeout(Some(ASK_WAIT));
            match client.send_request(subject, request).await {
                Ok(answer) => answer.payload.as_ref() != plane::KEEP.as_bytes(),
                Err(_) => true,
            }
        })
    })
}

/// The bucket, created if missing (by whichever node comes first).
async fn open_bucket(js: &jetstream::Context, config: kv::Config) -> io::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(config.bucket.as_str()).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Another node made it in between.
        Err(first) => js.get_key_value(name.as_str()).await.map_err(|_| {
            io::Error::new(io::ErrorKind::NotFound, format!("cannot create the JetStream bucket {name}: {first}"))
        }),
    }
}

/// Starts the plane's side of a node's shutdown once the gateway is done, whatever the
/// outcome of serving.
#[derive(Debug)]
pub(crate) struct StopCluster(pub Option<Arc<Cluster>>);

impl Drop for StopCluster {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.stop();
        }
    }
}
