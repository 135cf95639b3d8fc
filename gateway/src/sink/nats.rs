//! The JetStream sink: every record's JSON (the bytes of its JSONL line, without the newline)
//! published to a JetStream stream, on a subject made from the record.
//!
//! The promise is the file sink's: `commit` returns only when JetStream has acknowledged
//! (PubAck: stored, and replicated as the stream asks) every record written since the last
//! commit, so a device is acked only for records the stream holds. Publishes are pipelined:
//! `write` sends them all, `commit` then collects the acks.
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

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use tracing::{info, warn};
use trackgate_codecs::Record;

use super::group::RecordSink;
use crate::bus;
use crate::config::NatsTarget;

/// Publishes sent and not yet acknowledged before the sink waits for JetStream: bounds the
/// memory kept for sending again.
const MAX_IN_FLIGHT: usize = 4096;
/// How long one publish, or one wait for its ack, may take before it is sent again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A publish not yet acknowledged.
struct Pending {
    subject: String,
    id: String,
    payload: Bytes,
    /// `None` until sent, and again once a send or its ack failed.
    ack: Option<PublishAckFuture>,
}

/// Publishes records to a JetStream stream; see the module's notes.
pub struct JetStreamSink {
    target: NatsTarget,
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    pending: Vec<Pending>,
    /// Identical records of one read, counted so each gets its own id.
    seen: HashMap<[u8; 16], u32>,
    payload: Vec<u8>,
}

impl fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink").field("target", &self.target).field("pending", &self.pending.len()).finish()
    }
}

impl JetStreamSink {
    /// Connects now and makes sure the stream is there (created if missing, unless
    /// `create=false`), so a wrong address, a refused login or a missing stream fails at
    /// start rather than at the first record.
    pub fn connect(target: &NatsTarget) -> io::Result<JetStreamSink> {
        let runtime = bus::runtime("trackgate-nats-sink")?;
        let js = runtime.block_on(async {
            let client = bus::connect(&target.servers, &format!("trackgate-sink-{}", std::process::id())).await?;
            let mut js = jetstream::new(client);
            js.set_timeout(ACK_TIMEOUT);
            ensure_stream(&js, target).await?;
            Ok::<_, io::Error>(js)
        })?;
        info!(nats = %target.servers, stream = %target.stream, "JetStream sink connected");
        Ok(JetStreamSink {
            target: target.clone(),
            runtime,
            js,
            pending: Vec::new(),
            seen: HashMap::new(),
            payload: Vec::with_capacity(1024),
        })
    }

    /// Sends every pending publish not yet sent; one that cannot be sent now waits for the
    /// next round of `commit`.
    fn send_unsent(&mut self) {
        let js = &self.js;
        let pending = &mut self.pending;
        self.runtime.block_on(async {
            for p in pending.iter_mut().filter(|p| p.ack.is_none()) {
                let publish = PublishMessage::build().payload(p.payload.clone()).message_id(&p.id);
                match js.send_publish(p.subject.clone(), publish).await {
                    Ok(ack) => p.ack = Some(ack),
                    // Sent again by the commit that waits for it.
                    Err(e) => {
                        warn!(error = %e, "JetStream publish not sent");
                        break;
                    }
                }
            }
        });
    }

    /// Waits for every sent publish's ack; keeps (to send again) those that failed and
    /// returns the last failure.
    fn collect_acks(&mut self) -> Option<String> {
        let pending = std::mem::take(&mut self.pending);
        let (kept, failure) = self.runtime.block_on(async {
            let mut kept = Vec::new();
            let mut failure = None;
            for mut p in pending {
                match p.ack.take() {
                    Some(ack) => match ack.await {
                        Ok(_) => continue,
                        Err(e) => failure = Some(e.to_string()),
                    },
                    None => failure = failure.or_else(|| Some("not sent".to_owned())),
                }
                kept.push(p);
            }
            (kept, failure)
        });
        self.pending = kept;
        failure
    }
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
    let id = format!("tg1-{}-{n}", trackgate_codecs::wire::hex::to_hex(&key));
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
            if self.pending.len() >= MAX_IN_FLIGHT {
                // JetStream catches up before more is taken: an early commit is harmless.
                self.commit()?;
            }
            let mut subject = String::new();
            self.target.subject.fill(r, &mut subject);
            self.payload.clear();
            r.write_json(&mut self.payload);
            let id = message_id(r, &self.payload, &mut self.seen);
            self.pending.push(Pending { subject, id, payload: Bytes::copy_from_slice(&self.payload), ack: None });
        }
        self.send_unsent();
        Ok(())
    }

    /// Returns once JetStream has acknowledged everything written; sends again (same ids)
    /// what was not, for as long as `reconnect` allows.
    fn commit(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.target.reconnect;
        let mut pause = Duration::from_millis(100);
        loop {
            self.send_unsent();
            let Some(failure) = self.collect_acks() else { return Ok(()) };
            if Instant::now() + pause > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "NATS {} stream {}: {failure} ({} records unacknowledged)",
                        self.target.servers,
                        self.target.stream,
                        self.pending.len()
                    ),
                ));
            }
            warn!(error = %failure, waiting = self.pending.len(), "JetStream did not acknowledge; sending again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
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
