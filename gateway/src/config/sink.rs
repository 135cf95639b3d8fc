//! `--sink KIND:TARGET` and `--fsync`: which sinks records go to (opened by
//! `crate::sink::open`).

use std::path::PathBuf;

use super::mqtt::MqttTarget;
use super::nats::NatsTarget;

/// A sink named on the command line: `jsonl:PATH`, `jsonl:-` (standard output),
/// `mqtt://HOST[:PORT]/TOPIC` ([`MqttTarget`]), `nats://HOST[:PORT]/SUBJECT?stream=NAME`
/// (JetStream, [`NatsTarget`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    JsonlStdout,
    JsonlFile(PathBuf),
    Mqtt(MqttTarget),
    Nats(NatsTarget),
}

impl std::fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkSpec::JsonlStdout => f.write_str("jsonl:-"),
            SinkSpec::JsonlFile(path) => write!(f, "jsonl:{}", path.display()),
            SinkSpec::Mqtt(target) => target.fmt(f),
            SinkSpec::Nats(target) => target.fmt(f),
        }
    }
}

impl std::str::FromStr for SinkSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("jsonl", "-")) => Ok(SinkSpec::JsonlStdout),
            Some(("jsonl", path)) if !path.is_empty() => Ok(SinkSpec::JsonlFile(path.into())),
            Some(("mqtt", rest)) => Ok(SinkSpec::Mqtt(MqttTarget::parse(rest)?)),
            Some((scheme @ ("nats" | "tls"), rest)) => Ok(SinkSpec::Nats(NatsTarget::parse(scheme, rest)?)),
            Some((kind, _)) => Err(format!(
                "unknown sink kind {kind:?} (this version has jsonl:PATH, jsonl:-, mqtt://HOST/TOPIC and \
                 nats://HOST/SUBJECT)"
            )),
            None => Err(format!("sink {s:?} is not KIND:TARGET (for example jsonl:records.jsonl)")),
        }
    }
}

/// When the JSONL file sink calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Flush to the operating system only (survives a gateway crash, not a power cut).
    Never,
    /// fsync on every commit (every group of batches).
    EveryCommit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_specs() {
        assert_eq!("jsonl:-".parse(), Ok(SinkSpec::JsonlStdout));
        assert_eq!("jsonl:/tmp/x.jsonl".parse(), Ok(SinkSpec::JsonlFile("/tmp/x.jsonl".into())));
        assert!("kafka:topic".parse::<SinkSpec>().unwrap_err().contains("unknown sink kind"));
        assert!(
            matches!("nats://127.0.0.1:4333".parse(), Ok(SinkSpec::Nats(t)) if t.servers.servers == ["127.0.0.1:4333"])
        );
        assert!("records.jsonl".parse::<SinkSpec>().is_err());
        let mqtt: SinkSpec = "mqtt://127.0.0.1:1884/fleet/{protocol}".parse().unwrap();
        assert!(matches!(&mqtt, SinkSpec::Mqtt(t) if t.port == 1884 && t.topic.as_str() == "fleet/{protocol}"));
        assert_eq!(mqtt.to_string(), "mqtt://127.0.0.1:1884/fleet/{protocol}");
        assert!("mqtt:broker/t".parse::<SinkSpec>().is_err());
    }
}
