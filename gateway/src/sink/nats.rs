//! The JetStream sink: every record's JSON (the bytes of its JSONL line, without the newline)
//! published to a JetStream stream, on a subject made from the record.
//!
//! The promise is the file sink's: `commit` returns only when JetStream has acknowledged
//! (PubAck: stored, and replicated as the stream asks) every record written since the last
//! commit, so a device is acked only for records the stream holds. Publishes are pipelined:
//! `commit` sends everything written, then collects the acks: one round trip per commit.
//!
//! Each message carries a `Nats-Msg-Id` made from the record's identity, so a record sent
//! twice within the stream's duplicate window is stored once: the sink re-sending after a
//! lost connection, or a device re-sending a frame whose ack it never got (through this node
//! or another). The identity is what the frame said: a digest of the protocol, the device,
//! the record's JSON without the server's `received_at`, and its place among identical
//! records of the same read. At least once becomes exactly once within the window.
//!
//! A lost connection is not an error by itself: the client reconnects, and `commit` sends
//! again whatever was not acknowledged (same ids) with a growing pause. Only when NATS stays
//! away for `reconnect` seconds does the commit fail, and the gateway stop as it does for a
//! full disk. Settings: docs/configuration.md; subjects and the stream: docs/cluster.md.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tracing::{info, warn};
use trackgate_codecs::Record;

use super::group::RecordSink;
use crate::bus;
use crate::config::NatsTarget;

/// Publishes sent and not yet acknowledged before the sink waits for JetStream: bounds the
/// memory kept for sending again.
const MAX_IN_FLIGHT: usize = 4096;
/// How long one round (sending, then waiting for every ack) may take before what is not
/// acknowledged is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A publish not yet acknowledged.
struct Pending {
    /// Shares its bytes: sent again without a copy.
    subject: async_nats::Subject,
    id: String,
    payload: Bytes,
}

/// What a round works with, handed to the NATS runtime's thread and back.
struct Wire {
    client: async_nats::Client,
    /// `{inbox}.{token}` is where JetStream answers the publish numbered `token`.
    inbox: String,
    acks: async_nats::Subscriber,
    /// By token: the tokens of one round are new, so an ack from an earlier round (late,
    /// after the record was sent again) finds nothing and is ignored.
    pending: BTreeMap<u64, Pending>,
    /// Refused or unanswered: sent again, under new tokens, in the next round.
    retry: Vec<Pending>,
    next_token: u64,
}

/// Publishes records to a JetStream stream; see the module's notes.
pub struct JetStreamSink {
    target: NatsTarget,
    runtime: tokio::runtime::Runtime,
    /// `None` only while a round has it.
    wire: Option<Wire>,
    /// Written since the last round, not yet sent.
    unsent: Vec<Pending>,
    /// Identical records of one read, counted so each gets its own id.
    seen: HashMap<[u8; 16], u32>,
    payload: Vec<u8>,
}

impl fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink").field("target", &self.target).field("waiting", &self.waiting()).finish()
    }
}

impl JetStreamSink {
    /// Connects now and makes sure the stream is there (created if missing, unless
    /// `create=false`), so a wrong address, a refused login or a missing stream fails at
    /// start rather than at the first record.
    pub fn connect(target: &NatsTarget) -> io::Result<JetStreamSink> {
        let runtime = bus::runtime("trackgate-nats-sink")?;
        let wire = runtime.block_on(async {
            let client = bus::connect(&target.servers, &format!("trackgate-sink-{}", std::process::id())).await?;
            let mut js = jetstream::new(client.clone());
            js.set_timeout(ACK_TIMEOUT);
            ensure_stream(&js, target).await?;
            let inbox = client.new_inbox();
            let acks = client.subscribe(format!("{inbox}.*")).await.map_err(io::Error::other)?;
            Ok::<_, io::Error>(Wire { client, inbox, acks, pending: BTreeMap::new(), retry: Vec::new(), next_token: 0 })
        })?;
        info!(nats = %target.servers, stream = %target.stream, "JetStream sink connected");
        Ok(JetStreamSink {
            target: target.clone(),
            runtime,
            wire: Some(wire),
            unsent: Vec::new(),
            seen: HashMap::new(),
            payload: Vec::with_capacity(1024),
        })
    }

    /// One round on the NATS runtime's own thread (where the client's connection task runs,
    /// so no ack wakes another thread; the sink thread wakes once, when the round is over):
    /// sends what was written and what is waiting to be sent again, then waits for every
    /// ack. Returns a failure if any publish was not acknowledged.
    fn round(&mut self) -> Option<String> {
        let Some(mut wire) = self.wire.take() else { return Some("the sink lost its connection".to_owned()) };
        let unsent = std::mem::take(&mut self.unsent);
        let round = self.runtime.spawn(async move {
            let failure = wire.round(unsent).await;
            (wire, failure)
        });
        match self.runtime.block_on(round) {
            Ok((wire, failure)) => {
                self.wire = Some(wire);
                failure
            }
            // Not reached (the round does not panic); the sink cannot go on without its wire.
            Err(e) => Some(format!("the publishing task failed: {e}")),
        }
    }

    /// Records written and not yet acknowledged.
    fn waiting(&self) -> usize {
        self.wire.as_ref().map_or(0, |w| w.pending.len() + w.retry.len()) + self.unsent.len()
    }
}

impl Wire {
    /// Every publish not yet acknowledged (those of earlier rounds again, under new
    /// tokens, then `unsent`), then their acks, for [`ACK_TIMEOUT`] at most. Returns why
    /// not all were acknowledged, if they were not.
    async fn round(&mut self, unsent: Vec<Pending>) -> Option<String> {
        self.retry.extend(unsent);
        let failure = match tokio::time::timeout(ACK_TIMEOUT, self.send_and_collect()).await {
            Ok(failure) => failure,
            Err(_) => Some(format!("{} publishes not acknowledged within {ACK_TIMEOUT:?}", self.pending.len())),
        };
        // Unanswered ones are sent again next round; their late acks find nothing.
        let unanswered = std::mem::take(&mut self.pending).into_values();
        self.retry.extend(unanswered);
        failure.or_else(|| (!self.retry.is_empty()).then(|| "not every publish was acknowledged".to_owned()))
    }

    /// Sends everything in `retry`, then reads acks until none is awaited. Cancellable at any
    /// await (the round's timeout) without losing a record: each is in `retry` or `pending`.
    async fn send_and_collect(&mut self) -> Option<String> {
        let to_send = std::mem::take(&mut self.retry);
        let first = self.next_token;
        self.next_token += to_send.len() as u64;
        self.pending.extend((first..).zip(to_send));
        for token in first..self.next_token {
            let Some(p) = self.pending.get(&token) else { continue };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, p.id.as_str());
            let reply = format!("{}.{token}", self.inbox);
            let (subject, payload) = (p.subject.clone(), p.payload.clone());
            if let Err(e) = self.client.publish_with_reply_and_headers(subject, reply, headers, payload).await {
                return Some(format!("not sent: {e}"));
            }
        }
        let mut failure = None;
        while !self.pending.is_empty() {
            let Some(ack) = self.acks.next().await else {
                return Some("the subscription for acks has ended".to_owned());
            };
            let Some(token) = ack.subject.rsplit_once('.').and_then(|(_, t)| t.parse::<u64>().ok()) else { continue };
            let Some(p) = self.pending.remove(&token) else { continue };
            if let Err(e) = stored(&ack) {
                failure = Some(e);
                self.retry.push(p);
            }
        }
        failure
    }
}

/// Whether JetStream's answer to a publish says it stored the message (a duplicate it had
/// already stored counts), or why not.
fn stored(ack: &async_nats::Message) -> Result<(), String> {
    if let Some(status) = ack.status {
        return Err(format!("NATS answered {status} (no stream takes the subject?)"));
    }
    let body = &ack.payload[..];
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if has(b"\"error\"") || !has(b"\"seq\"") {
        return Err(format!("JetStream refused a publish: {}", String::from_utf8_lossy(body)));
    }
    Ok(())
}

/// The stream the sink publishes to: found, or created with the target's subjects.
async fn ensure_stream(js: &jetstream::Context, target: &NatsTarget) -> io::Result<()> {
    let failed = |e: &dyn fmt::Display| {
        io::Error::new(io::ErrorKind::NotFound, format!("JetStream stream {}: {e}", target.stream))
    };
    if !target.create {
        js.get_stream(&target.stream).await.map_err(|e| failed(&format!("{e} (create=false: it must exist)")))?;
        return Ok(());
    }
    let config = stream::Config {
        name: target.stream.clone(),
        subjects: vec![target.stream_subjects()],
        num_replicas: target.replicas,
        duplicate_window: target.duplicate_window,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map_err(|e| failed(&e))?;
    Ok(())
}

/// The record's id for JetStream's duplicate window: see the module's notes. `json` is the
/// record's JSON; `seen` counts identical records of this read.
fn message_id(record: &Record, json: &[u8], seen: &mut HashMap<[u8; 16], u32>) -> String {
    let (before, after) = without_received_at(json);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(record.protocol.as_str().as_bytes());
    digest.update(&[0]);
    digest.update(record.device_id.as_deref().unwrap_or("").as_bytes());
    digest.update(&[0]);
    digest.update(before);
    digest.update(after);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.finish().as_ref()[..16]);
    let n = seen.entry(key).or_insert(0);
    let mut id = String::with_capacity(48);
    id.push_str("tg1-");
    for b in key {
        let _ = write!(id, "{b:02x}");
    }
    let _ = write!(id, "-{n}");
    *n += 1;
    id
}

/// The JSON around the top-level `received_at` member (the server's clock, not the
/// frame's). A `"` inside a JSON string is always escaped, so the first `,"received_at":"`
/// is the member itself.
fn without_received_at(json: &[u8]) -> (&[u8], &[u8]) {
    const KEY: &[u8] = b",\"received_at\":\"";
    let Some(start) = json.windows(KEY.len()).position(|w| w == KEY) else { return (json, &[]) };
    let value = start + KEY.len();
    match json[value..].iter().position(|&b| b == b'"') {
        Some(end) => (&json[..start], &json[value + end + 1..]),
        None => (json, &[]),
    }
}

impl RecordSink for JetStreamSink {
    fn write(&mut self, records: &[Record]) -> io::Result<()> {
        self.seen.clear();
        for r in records {
            if self.waiting() >= MAX_IN_FLIGHT {
                // JetStream catches up before more is taken: an early commit is harmless.
                self.commit()?;
            }
            let mut subject = String::new();
            self.target.subject.fill(r, &mut subject);
            self.payload.clear();
            r.write_json(&mut self.payload);
            let id = message_id(r, &self.payload, &mut self.seen);
            let (subject, payload) = (subject.into(), Bytes::copy_from_slice(&self.payload));
            self.unsent.push(Pending { subject, id, payload });
        }
        // Sent by the commit, all together.
        Ok(())
    }

    /// Returns once JetStream has acknowledged everything written; sends again (same ids)
    /// what was not, for as long as `reconnect` allows.
    fn commit(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.target.reconnect;
        let mut pause = Duration::from_millis(100);
        loop {
            let Some(failure) = self.round() else { return Ok(()) };
            if Instant::now() + pause > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "NATS {} stream {}: {failure} ({} records unacknowledged)",
                        self.target.servers,
                        self.target.stream,
                        self.waiting()
                    ),
                ));
            }
            warn!(error = %failure, waiting = self.waiting(), "JetStream did not acknowledge; sending again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

impl Drop for JetStreamSink {
    fn drop(&mut self) {
        // The subscription says goodbye through a task of the client's runtime.
        let _inside = self.runtime.enter();
        self.wire = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackgate_codecs::record::Timestamp;
    use trackgate_codecs::{Kind, Protocol};

    fn json(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        r.write_json(&mut out);
        out
    }

    /// The id is the record's content, not the time the server received it: the same frame
    /// received again (another read, another node) gets the same id; another record, or
    /// an identical one later in the same read, another.
    #[test]
    fn message_ids_follow_what_the_frame_said_not_when_it_came() {
        let mut r = Record::new(Protocol::Gt06, Kind::Position, "0x22");
        r.device_id = Some("123456789012345".into());
        r.seq = Some(7);
        r.received_at = Some(Timestamp::from_unix_ms(1_700_000_000_000, true));
        let mut seen = HashMap::new();
        let first = message_id(&r, &json(&r), &mut seen);
        let twin = message_id(&r, &json(&r), &mut seen);
        assert_ne!(first, twin, "a second identical record in one read is another record");
        let mut later = r.clone();
        later.received_at = Some(Timestamp::from_unix_ms(1_700_000_600_000, true));
        let mut seen_again = HashMap::new();
        assert_eq!(message_id(&later, &json(&later), &mut seen_again), first);
        let mut other = r.clone();
        other.seq = Some(8);
        assert_ne!(message_id(&other, &json(&other), &mut HashMap::new()), first);
        let mut elsewhere = r.clone();
        elsewhere.device_id = Some("123456789012346".into());
        assert_ne!(message_id(&elsewhere, &json(&elsewhere), &mut HashMap::new()), first);
    }

    #[test]
    fn received_at_is_cut_out_whole() {
        let (a, b) = without_received_at(br#"{"schema":1,"seq":3,"received_at":"2026-12-06T07:00:00Z","kind":"x"}"#);
        assert_eq!((a, b), (&br#"{"schema":1,"seq":3"#[..], &br#","kind":"x"}"#[..]));
        let plain = br#"{"schema":1,"device_id":"a\",\"received_at\":\"x"}"#;
        assert_eq!(without_received_at(plain), (&plain[..], &b""[..]), "an escaped look-alike inside a value");
    }
}
