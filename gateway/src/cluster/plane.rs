//! The plane's one task per node: it turns the registry's claims and releases into presence
//! entries and command subscriptions, closes this node's older connections when another node
//! takes their device, takes held commands for the devices that arrive, and beats.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use async_nats::{Client, HeaderMap, Message};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{debug, warn};
use trackgate_codecs::Protocol;

use super::{held, names, Buckets, Handler, Reply, BEAT};
use crate::registry::remote::Elsewhere;
use crate::registry::{Presence, Registry, MAX_HOLD};

/// A presence entry's value: who holds the device, over what, since when, from where.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Seen {
    pub node: String,
    pub transport: String,
    pub since_ms: u64,
    /// A TCP connection's source address, for the takeover policy across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

/// A login on another node for a device this node holds, asking whether it may take it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TakeoverAsk {
    pub protocol: Protocol,
    pub device: String,
    pub ip: IpAddr,
}

/// The answers to a [`TakeoverAsk`].
pub(super) const KEEP: &str = "keep";
pub(super) const YIELD: &str = "yield";

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The reply a command request got (status header and body).
pub(super) fn reply_of(message: &Message) -> Reply {
    let code = message
        .headers
        .as_ref()
        .and_then(|h| h.get(names::STATUS_HEADER))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(500);
    Reply { code, body: String::from_utf8_lossy(&message.payload).into_owned() }
}

type DeviceKey = (Protocol, Box<str>);

pub(super) struct Plane {
    node: String,
    client: Client,
    buckets: Buckets,
    registry: Arc<Registry>,
    handler: Handler,
    /// The command subscription of each device this node holds.
    responders: HashMap<DeviceKey, AbortHandle>,
}

impl Plane {
    pub(super) fn new(
        node: String,
        client: Client,
        buckets: Buckets,
        registry: Arc<Registry>,
        handler: Handler,
    ) -> Plane {
        Plane { node, client, buckets, registry, handler, responders: HashMap::new() }
    }

    /// Until `stop`: then the releases of the connections that closed in the shutdown, and
    /// the node's beat, are taken away.
    pub(super) async fn run(mut self, mut events: mpsc::UnboundedReceiver<Presence>, mut stop: watch::Receiver<bool>) {
        self.forget_previous_life().await;
        let takeovers = tokio::spawn(answer_takeovers(self.client.clone(), self.node.clone(), self.registry.clone()));
        // With history: the devices other nodes hold now, for the takeover policy.
        let mut devices = self.watch_devices().await;
        let mut held = self.watch(&self.buckets.held).await;
        let mut beat = tokio::time::interval(BEAT);
        loop {
            tokio::select! {
                Some(event) = events.recv() => self.on_presence(event).await,
                entry = devices.next() => match entry {
                    Some(Ok(entry)) => self.on_device_entry(&entry),
                    _ => devices = self.watch_devices().await,
                },
                entry = held.next() => match entry {
                    Some(Ok(entry)) => self.on_held_entry(&entry),
                    _ => held = self.watch(&self.buckets.held).await,
                },
                _ = beat.tick() => self.beat().await,
                _ = stopped(&mut stop) => break,
            }
        }
        takeovers.abort();
        while let Ok(event) = events.try_recv() {
            self.on_presence(event).await;
        }
        let _ = self.buckets.nodes.delete(self.node.as_str()).await;
        let _ = self.client.flush().await;
    }

    /// A watch over every key of `bucket`, from now on; retried until NATS answers.
    async fn watch(&self, bucket: &kv::Store) -> kv::Watch {
        loop {
            match bucket.watch_all().await {
                Ok(w) => return w,
                Err(e) => {
                    warn!(error = %e, "cannot watch a cluster bucket; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Every presence entry there is, then every change; retried until NATS answers.
    async fn watch_devices(&self) -> kv::Watch {
        loop {
            match self.buckets.devices.watch_with_history(">").await {
                Ok(w) => return w,
                Err(e) => {
                    warn!(error = %e, "cannot watch the cluster's presence; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// A node restarted under the same name finds its old presence entries, of connections
    /// long gone: they are removed before it claims anything.
    async fn forget_previous_life(&self) {
        let Ok(keys) = self.buckets.devices.keys().await else { return };
        let keys: Vec<String> = keys.filter_map(|k| async move { k.ok() }).collect().await;
        for key in keys {
            if let Ok(Some(entry)) = self.buckets.devices.entry(key.as_str()).await {
                let seen: Option<Seen> = serde_json::from_slice(&entry.value).ok();
                if seen.is_some_and(|s| s.node == self.node) {
                    let _ = self.buckets.devices.delete_expect_revision(key.as_str(), Some(entry.revision)).await;
                }
            }
        }
    }

    async fn beat(&self) {
        let value = serde_json::json!({"beat_ms": now_ms()}).to_string();
        if let Err(e) = self.buckets.nodes.put(self.node.as_str(), value.into()).await {
            warn!(error = %e, "cluster heartbeat not written");
        }
    }

    async fn on_presence(&mut self, event: Presence) {
        match event {
            Presence::Claimed { protocol, device_id, udp, since_ms, ip } => {
                // Subscribed first: once the entry says "here", commands find their way.
                self.respond(protocol, &device_id).await;
                let key = names::key(protocol, &device_id);
                let transport = if udp { "udp" } else { "tcp" }.into();
                let seen = Seen { node: self.node.clone(), transport, since_ms, ip };
                let value = serde_json::to_vec(&seen).unwrap_or_default();
                if let Err(e) = self.buckets.devices.put(key.as_str(), value.into()).await {
                    warn!(error = %e, "presence not written");
                }
                tokio::spawn(held::take(
                    self.buckets.held.clone(),
                    self.node.clone(),
                    self.registry.clone(),
                    protocol,
                    device_id.into(),
                ));
            }
            Presence::Released { protocol, device_id } => {
                if let Some(task) = self.responders.remove(&(protocol, device_id.clone())) {
                    task.abort();
                }
                self.forget(protocol, &device_id).await;
            }
        }
    }

    /// Removes the device's presence entry if it is still this node's.
    async fn forget(&self, protocol: Protocol, device_id: &str) {
        let key = names::key(protocol, device_id);
        let Ok(Some(entry)) = self.buckets.devices.entry(key.as_str()).await else { return };
        let seen: Option<Seen> = serde_json::from_slice(&entry.value).ok();
        if entry.operation == kv::Operation::Put && seen.is_some_and(|s| s.node == self.node) {
            // Another node's newer entry written in between is left alone.
            let _ = self.buckets.devices.delete_expect_revision(key.as_str(), Some(entry.revision)).await;
        }
    }

    /// Subscribes to the device's command subject (once) and answers what comes.
    async fn respond(&mut self, protocol: Protocol, device_id: &str) {
        let key: DeviceKey = (protocol, device_id.into());
        if self.responders.contains_key(&key) {
            return;
        }
        // A queue group: while a device moves between nodes both may be subscribed for a
        // moment, and a request must still be written by one of them only.
        let subject = names::command_subject(protocol, device_id);
        let mut subscription = match self.client.queue_subscribe(subject, names::COMMANDS_QUEUE.into()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot take commands for a device from the cluster");
                return;
            }
        };
        let (client, handler, device_id) = (self.client.clone(), self.handler.clone(), device_id.to_owned());
        let task = tokio::spawn(async move {
            while let Some(request) = subscription.next().await {
                let (client, handler, device_id) = (client.clone(), handler.clone(), device_id.clone());
                tokio::spawn(answer(client, handler, protocol, device_id, request));
            }
        });
        self.responders.insert(key, task.abort_handle());
    }

    /// Another node (or this one) wrote or removed a presence entry: this node's older
    /// connection of the device is closed if another node took it, and the registry learns
    /// who holds it elsewhere (for the takeover policy across nodes).
    fn on_device_entry(&self, entry: &kv::Entry) {
        let Some((protocol, device_id)) = names::parse_key(&entry.key) else { return };
        let seen = (entry.operation == kv::Operation::Put)
            .then(|| serde_json::from_slice::<Seen>(&entry.value).ok())
            .flatten()
            .filter(|seen| seen.node != self.node);
        let Some(seen) = seen else {
            self.registry.seen_elsewhere(protocol, &device_id, None);
            return;
        };
        let udp = seen.transport == "udp";
        let elsewhere = Elsewhere { node: seen.node.clone(), ip: seen.ip.filter(|_| !udp) };
        self.registry.seen_elsewhere(protocol, &device_id, Some(elsewhere));
        if self.registry.evict(protocol, &device_id, seen.since_ms, udp) {
            debug!(%protocol, "a device moved to another node; its connection here is closed");
        }
    }

    /// A command was held for a device: if this node holds it (it connected while the
    /// command was being held), take it now.
    fn on_held_entry(&self, entry: &kv::Entry) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        if let Some((protocol, device_id)) = names::parse_key(&entry.key) {
            if self.registry.holds(protocol, &device_id) {
                let registry = self.registry.clone();
                tokio::spawn(held::take(self.buckets.held.clone(), self.node.clone(), registry, protocol, device_id));
            }
        }
    }
}

/// Answers other nodes' [`TakeoverAsk`]s on `trackgate.takeover.{node}` as this node's
/// registry would decide a login of its own.
async fn answer_takeovers(client: Client, node: String, registry: Arc<Registry>) {
    let subject = format!("{}.{node}", names::TAKEOVER_PREFIX);
    let mut asks = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot answer other nodes on takeovers; their logins will take this node's devices");
            return;
        }
    };
    while let Some(ask) = asks.next().await {
        let Some(reply) = ask.reply else { continue };
        let keep = serde_json::from_slice::<TakeoverAsk>(&ask.payload)
            .is_ok_and(|a| registry.keeps_against(a.protocol, &a.device, a.ip));
        if keep {
            debug!("a login on another node for a device live here was refused");
        }
        let _ = client.publish(reply, if keep { KEEP } else { YIELD }.into()).await;
    }
}

/// Resolves once the stop is asked for; the guard `wait_for` gives is not `Send`.
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Answers one command request for a device of this node.
async fn answer(client: Client, handler: Handler, protocol: Protocol, device_id: String, request: Message) {
    let Some(reply_to) = request.reply.clone() else { return };
    let hold = request.headers.as_ref().and_then(|h| h.get(names::HOLD_HEADER)).map(|v| v.as_str().parse::<u64>());
    let reply = match hold {
        Some(Ok(s)) if (1..=MAX_HOLD.as_secs()).contains(&s) => {
            handler(protocol, device_id, request.payload, Some(Duration::from_secs(s))).await
        }
        Some(_) => Reply::text(400, format!("{} is a whole number of seconds up to a week", names::HOLD_HEADER)),
        None => handler(protocol, device_id, request.payload, None).await,
    };
    let mut headers = HeaderMap::new();
    headers.insert(names::STATUS_HEADER, reply.code.to_string().as_str());
    if let Err(e) = client.publish_with_headers(reply_to, headers, reply.body.into()).await {
        warn!(error = %e, "a command's answer could not be sent back");
    }
}
