//! Where records go, and the promise the gateway keeps with devices: a frame is acknowledged
//! only after its records have been accepted here.
//!
//! A [`RecordSink`] is a plain blocking writer that runs on a thread of its own. Connections
//! hand batches to a [`SinkHandle`]; the sink thread takes every batch waiting, writes them
//! all, commits once (flush, and fsync when asked), and only then answers each batch. Under
//! load many connections share one commit (group commit), so throughput does not pay one
//! syscall per record; and the channel is bounded, so a slow sink slows reads instead of
//! letting memory grow.
//!
//! * [`group`]: the sink thread, its group commit, and the [`RecordSink`] trait that every
//!   destination implements (implement it to send records to your own store);
//! * [`jsonl`]: JSON Lines to a file or standard output;
//! * [`mqtt`]: QoS 1 publishes to an MQTT broker;
//! * [`nats`]: publishes to a NATS JetStream stream, each acknowledged by JetStream.

use std::io;

use crate::config::{FsyncPolicy, SinkSpec};

pub mod group;
pub mod jsonl;
pub mod mqtt;
pub mod nats;

pub use self::group::{start, RecordSink, SinkClosed, SinkHandle, SinkThread};
pub use self::jsonl::JsonlSink;
pub use self::mqtt::MqttSink;
pub use self::nats::JetStreamSink;

/// Opens the sink `spec` names (an MQTT or NATS sink connects now). `fsync` applies to JSONL files.
pub fn open(spec: &SinkSpec, fsync: FsyncPolicy) -> io::Result<Box<dyn RecordSink>> {
    Ok(match spec {
        SinkSpec::JsonlStdout => Box::new(JsonlSink::stdout()),
        SinkSpec::JsonlFile(path) => Box::new(JsonlSink::file(path, fsync)?),
        SinkSpec::Mqtt(target) => Box::new(MqttSink::connect(target)?),
        SinkSpec::Nats(target) => Box::new(JetStreamSink::connect(target)?),
    })
}
