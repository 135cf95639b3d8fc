//! Every setting of `trackgate serve`: the config file (`--config`, TOML), the flags that
//! override it, and the spec types they are made of (listeners, limits, sinks, the commands
//! token). Plain data and its parsing: nothing here opens a socket or a file other than the
//! ones the config names to read (token, allow-list). The manual is docs/configuration.md.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use trackgate_codecs::gt06::CrcPolicy;
use trackgate_codecs::{AllowList, Protocol};

use crate::protocol::{default_port, parse_utc_offset, Listens, StreamOptions};

pub mod cluster;
pub mod listen;
pub mod mqtt;
pub mod nats;
pub mod sink;
pub mod tls;
pub mod token;
pub mod topic;

pub use self::cluster::ClusterConfig;
pub use self::listen::{ListenSpec, ServeLimits, UDP_RECEIVE_BUFFER};
pub use self::mqtt::MqttTarget;
pub use self::nats::{NatsServers, NatsTarget};
pub use self::sink::{FsyncPolicy, SinkSpec};
pub use self::tls::TlsConfig;
pub use self::token::CommandsToken;

/// One listener: a protocol (or `auto`, every protocol) on an address (TCP, and UDP where a
/// protocol it serves has it), with its own decode options and idle timeout. The options of
/// a protocol apply to that protocol's devices.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub protocol: Listens,
    pub addr: SocketAddr,
    pub stream: StreamOptions,
    /// Overrides the server's idle timeout for this listener.
    pub idle_timeout: Option<Duration>,
    /// Log every read's bytes (each TCP read, each datagram) as hex, at info level: for an
    /// operator debugging a device. Off by default: payloads hold IMEIs and positions.
    pub log_payloads: bool,
    /// JT808: where auth codes are kept (and operators enroll terminals); in memory without.
    pub jt808_auth_file: Option<PathBuf>,
    /// JT808: take terminals' messages without authentication, as before it was enforced.
    pub jt808_accept_unauthenticated: bool,
    /// TLS on this listener's TCP connections (and no UDP socket); plain TCP without.
    pub tls: Option<TlsConfig>,
}

impl ListenerConfig {
    pub fn new(protocol: impl Into<Listens>, addr: SocketAddr) -> Self {
        let protocol = protocol.into();
        ListenerConfig {
            protocol,
            addr,
            stream: StreamOptions::default(),
            idle_timeout: None,
            log_payloads: false,
            jt808_auth_file: None,
            jt808_accept_unauthenticated: false,
            tls: None,
        }
    }
}

/// Everything `serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    pub shards: usize,
    pub listeners: Vec<ListenerConfig>,
    pub sinks: Vec<SinkSpec>,
    pub fsync: FsyncPolicy,
    pub metrics: Option<SocketAddr>,
    /// Enables commands on the metrics endpoint ([`crate::ops::http`]); off without one.
    pub commands_token: Option<CommandsToken>,
    /// Where commands sent with a hold are kept across restarts (docs/http-api.md); in
    /// memory only without one.
    pub commands_hold_file: Option<PathBuf>,
    /// Several nodes on one NATS (docs/cluster.md); a node on its own without.
    pub cluster: Option<ClusterConfig>,
    pub limits: ServeLimits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            shards: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            // Every protocol on its field port.
            listeners: Protocol::ALL
                .into_iter()
                .map(|p| ListenerConfig::new(p, ([0, 0, 0, 0], default_port(p)).into()))
                .collect(),
            sinks: vec![SinkSpec::JsonlStdout],
            fsync: FsyncPolicy::EveryCommit,
            metrics: None,
            commands_token: None,
            commands_hold_file: None,
            cluster: None,
            limits: ServeLimits::default(),
        }
    }
}

/// What the command line set; `None` and empty lists leave the file's value (or the default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<ListenSpec>,
    pub sinks: Vec<SinkSpec>,
    pub idle_timeout: Option<Duration>,
    pub fsync: Option<FsyncPolicy>,
    pub shards: Option<usize>,
    pub metrics: Option<SocketAddr>,
    /// `--cluster URL`, with `--node NAME`.
    pub cluster: Option<String>,
    pub node: Option<String>,
}

/// A duration written as seconds (`600`) or with a unit (`"90s"`, `"10m"`, `"1h"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

impl DurationText {
    fn get(&self, what: &str) -> Result<Duration, String> {
        let secs = match self {
            DurationText::Seconds(s) => *s,
            DurationText::Text(t) => parse_duration(t).map_err(|e| format!("{what}: {e}"))?.as_secs(),
        };
        if secs == 0 {
            return Err(format!("{what} must be at least one second"));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// `250ms`, `90s`, `10m`, `1h`, or plain seconds.
pub fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits.parse().map_err(|_| format!("bad duration {t:?} (expected e.g. 600, 90s, 10m, 1h)"))?;
    let millis = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("bad duration unit in {t:?} (ms, s, m or h)")),
    };
    n.checked_mul(millis).map(Duration::from_millis).ok_or_else(|| format!("duration {t:?} is too long"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    shards: Option<usize>,
    metrics: Option<SocketAddr>,
    commands_token_file: Option<PathBuf>,
    commands_hold_file: Option<PathBuf>,
    sinks: Option<Vec<String>>,
    fsync: Option<String>,
    limits: Option<FileLimits>,
    listen: Option<Vec<FileListener>>,
    cluster: Option<FileCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    servers: String,
    node: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    idle_timeout: Option<DurationText>,
    frame_timeout: Option<DurationText>,
    max_connections_per_shard: Option<usize>,
    max_connections_per_ip: Option<u32>,
    junk_bytes: Option<u64>,
    max_udp_peers: Option<usize>,
    udp_receive_buffer: Option<usize>,
    read_buffer: Option<usize>,
    sink_queue: Option<usize>,
    takeover_window: Option<DurationText>,
    http_connections: Option<usize>,
    partial_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    protocol: String,
    addr: Option<SocketAddr>,
    idle_timeout: Option<DurationText>,
    jt808_tz: Option<String>,
    gt06_crc: Option<String>,
    allow: Option<Vec<String>>,
    allow_file: Option<PathBuf>,
    log_payloads: Option<bool>,
    jt808_auth_file: Option<PathBuf>,
    jt808_accept_unauthenticated: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_handshake_timeout: Option<DurationText>,
}

pub fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "every-commit" => Ok(FsyncPolicy::EveryCommit),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err(format!("unknown fsync policy {s:?} (expected every-commit or never)")),
    }
}

impl FileLimits {
    /// The limits the file sets, over `limits`.
    fn apply_to(self, limits: &mut ServeLimits) -> Result<(), String> {
        if let Some(d) = self.idle_timeout {
            limits.idle_timeout = d.get("limits.idle_timeout")?;
        }
        if let Some(d) = self.frame_timeout {
            limits.frame_timeout = d.get("limits.frame_timeout")?;
        }
        limits.max_connections_per_shard = self.max_connections_per_shard.unwrap_or(limits.max_connections_per_shard);
        limits.max_connections_per_ip = self.max_connections_per_ip.unwrap_or(limits.max_connections_per_ip);
        limits.junk_bytes = self.junk_bytes.unwrap_or(limits.junk_bytes);
        limits.max_udp_peers = self.max_udp_peers.unwrap_or(limits.max_udp_peers).max(1);
        if let Some(bytes) = self.udp_receive_buffer {
            // The kernel's own floor is about 2 KiB; past 1 GiB is a typo, not a plan.
            if !(4096..=1 << 30).contains(&bytes) {
                return Err(format!("limits.udp_receive_buffer must be 4096 to 1073741824 bytes, not {bytes}"));
            }
            limits.udp_receive_buffer = bytes;
        }
        limits.read_buffer = self.read_buffer.unwrap_or(limits.read_buffer).clamp(256, 1 << 20);
        limits.sink_queue = self.sink_queue.unwrap_or(limits.sink_queue).max(1);
        limits.http_connections = self.http_connections.unwrap_or(limits.http_connections).clamp(1, 4096);
        if let Some(bytes) = self.partial_bytes {
            // Below one read buffer, one connection's partial frame would shed itself.
            if bytes < limits.read_buffer.max(64 << 10) {
                return Err(format!("limits.partial_bytes must be at least 65536 and one read_buffer, not {bytes}"));
            }
            limits.partial_bytes = bytes;
        }
        limits.takeover_window = match self.takeover_window {
            Some(DurationText::Seconds(0)) => Duration::ZERO,
            Some(d) => d.get("limits.takeover_window")?,
            None => limits.takeover_window,
        };
        Ok(())
    }
}

/// The token that opens the commands endpoint, from a file of its own, so the configuration
/// can be shared (or committed) without it.
fn read_commands_token(path: &Path) -> Result<CommandsToken, String> {
    let token = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read commands_token_file {}: {e}", path.display()))?;
    CommandsToken::new(&token).map_err(|e| format!("commands_token_file {}: {e}", path.display()))
}

/// Reads an allow-list file: one id per line, blank lines and `#` comments ignored.
fn read_allow_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read allow_file {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

impl ServeConfig {
    /// The configuration from an optional file (relative `allow_file` paths are relative to
    /// it) with the command line's overrides applied.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, String> {
        let mut config = ServeConfig::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let base = path.parent().unwrap_or(Path::new("."));
            config = Self::from_toml(&text, base).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        config.apply(overrides)?;
        if config.commands_token.is_some() && config.metrics.is_none() {
            return Err("commands_token_file is set, but not metrics (the endpoint that serves commands)".into());
        }
        Ok(config)
    }

    /// The configuration a TOML text describes, on top of the defaults.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut config = ServeConfig::default();
        if let Some(n) = file.shards {
            if n == 0 {
                return Err("shards must be at least 1".into());
            }
            config.shards = n;
        }
        config.metrics = file.metrics;
        if let Some(path) = file.commands_token_file {
            config.commands_token = Some(read_commands_token(&base.join(path))?);
        }
        if let Some(path) = file.commands_hold_file {
            if config.commands_token.is_none() {
                return Err("commands_hold_file is set, but not commands_token_file (commands are off)".into());
            }
            config.commands_hold_file = Some(base.join(path));
        }
        if let Some(sinks) = file.sinks {
            config.sinks = sinks.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
        }
        if let Some(f) = file.fsync {
            config.fsync = parse_fsync(&f)?;
        }
        if let Some(l) = file.limits {
            l.apply_to(&mut config.limits)?;
        }
        if let Some(c) = file.cluster {
            config.cluster = Some(ClusterConfig::parse(&c.servers, c.node.as_deref())?);
        }
        if let Some(listeners) = file.listen {
            config.listeners = listeners.into_iter().map(|l| l.resolve(base)).collect::<Result<_, _>>()?;
        }
        Ok(config)
    }

    fn apply(&mut self, o: Overrides) -> Result<(), String> {
        if !o.listen.is_empty() {
            // A --listen for a protocol the file configures keeps the file's options for
            // that protocol at the new address; other listeners of the file are dropped.
            let from_file = std::mem::take(&mut self.listeners);
            self.listeners = o
                .listen
                .iter()
                .map(|spec| {
                    let mut l = from_file
                        .iter()
                        .find(|l| l.protocol == spec.protocol)
                        .cloned()
                        .unwrap_or_else(|| ListenerConfig::new(spec.protocol, spec.addr));
                    l.addr = spec.addr;
                    l
                })
                .collect();
        }
        if !o.sinks.is_empty() {
            self.sinks = o.sinks;
        }
        if let Some(t) = o.idle_timeout {
            self.limits.idle_timeout = t;
        }
        if let Some(f) = o.fsync {
            self.fsync = f;
        }
        if let Some(n) = o.shards {
            self.shards = n.max(1);
        }
        if o.metrics.is_some() {
            self.metrics = o.metrics;
        }
        match (o.cluster, o.node) {
            (Some(url), node) => self.cluster = Some(ClusterConfig::parse(&url, node.as_deref())?),
            (None, Some(node)) => match &mut self.cluster {
                Some(c) => c.node = cluster::checked_node(&node)?,
                None => return Err("--node names this node in a cluster, but no --cluster is given".into()),
            },
            (None, None) => {}
        }
        Ok(())
    }
}

impl FileListener {
    fn resolve(self, base: &Path) -> Result<ListenerConfig, String> {
        let listens: Listens = self.protocol.parse()?;
        let name = listens.as_str();
        let addr = match (self.addr, listens.default_port()) {
            (Some(addr), _) => addr,
            (None, Some(port)) => ([0, 0, 0, 0], port).into(),
            (None, None) => return Err(format!("an {name} listener needs an addr (it has no usual port)")),
        };
        let mut l = ListenerConfig::new(listens, addr);
        // An option for a protocol the listener does not serve is a mistake in the file.
        let only_for = |what: &str, protocols: &[Protocol]| match protocols.iter().any(|&p| listens.serves(p)) {
            true => Ok(()),
            false => Err(format!("{what}, not {name}")),
        };
        let handshake_timeout =
            self.tls_handshake_timeout.map(|d| d.get(&format!("{name} tls_handshake_timeout"))).transpose()?;
        let files = tls::TlsFiles { cert: self.tls_cert, key: self.tls_key, client_ca: self.tls_client_ca };
        l.tls = files.resolve(name, handshake_timeout, base)?;
        if let Some(d) = self.idle_timeout {
            l.idle_timeout = Some(d.get(&format!("{name} idle_timeout"))?);
        }
        if let Some(tz) = self.jt808_tz {
            only_for("jt808_tz is a jt808 option", &[Protocol::Jt808])?;
            l.stream.jt808_tz_minutes = parse_utc_offset(&tz)?;
        }
        if let Some(crc) = self.gt06_crc {
            only_for("gt06_crc is a gt06 option", &[Protocol::Gt06])?;
            l.stream.gt06_crc = crc.parse::<CrcPolicy>()?;
        }
        if self.allow.is_some() || self.allow_file.is_some() {
            only_for("allow lists are for teltonika and jt808", &[Protocol::Teltonika, Protocol::Jt808])?;
            let mut ids: HashSet<String> = self.allow.unwrap_or_default().into_iter().collect();
            if let Some(file) = self.allow_file {
                ids.extend(read_allow_file(&base.join(file))?);
            }
            l.stream.allow = Some(AllowList::ids(ids));
        }
        l.log_payloads = self.log_payloads.unwrap_or(false);
        if self.jt808_auth_file.is_some() || self.jt808_accept_unauthenticated.is_some() {
            only_for("jt808_auth_file and jt808_accept_unauthenticated are jt808 options", &[Protocol::Jt808])?;
            l.jt808_auth_file = self.jt808_auth_file.map(|f| base.join(f));
            l.jt808_accept_unauthenticated = self.jt808_accept_unauthenticated.unwrap_or(false);
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "10d", "-5", "1.5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_file() {
        let dir = std::env::temp_dir().join(format!("trackgate-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("imeis.txt"), "# fleet A\n356307042441013\n\n356307042441014 # spare\n").unwrap();
        std::fs::write(dir.join("token"), "0123456789abcdef-token\n").unwrap();
        let text = r#"
            shards = 3
            metrics = "127.0.0.1:9100"
            commands_token_file = "token"
            commands_hold_file = "held.jsonl"
            sinks = ["jsonl:records.jsonl", "mqtt://broker:1884/fleet/{device_id}?reconnect=5"]
            fsync = "never"
            [limits]
            idle_timeout = "5m"
            max_connections_per_ip = 10
            junk_bytes = 0
            udp_receive_buffer = 1048576
            [[listen]]
            protocol = "jt808"
            addr = "127.0.0.1:6015"
            jt808_tz = "-03:00"
            idle_timeout = 90
            allow = ["13800138000"]
            [[listen]]
            protocol = "gt06"
            gt06_crc = "lenient"
            log_payloads = true
            [[listen]]
            protocol = "teltonika"
            addr = "127.0.0.1:6027"
            allow_file = "imeis.txt"
        "#;
        let c = ServeConfig::from_toml(text, &dir).unwrap();
        assert_eq!(c.shards, 3);
        assert_eq!(c.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(c.commands_token, Some(CommandsToken::new("0123456789abcdef-token").unwrap()));
        assert_eq!(c.commands_hold_file, Some(dir.join("held.jsonl")));
        assert_eq!(c.sinks[0], SinkSpec::JsonlFile("records.jsonl".into()));
        let SinkSpec::Mqtt(mqtt) = &c.sinks[1] else { panic!("{:?}", c.sinks) };
        assert_eq!((mqtt.host.as_str(), mqtt.port, mqtt.topic.as_str()), ("broker", 1884, "fleet/{device_id}"));
        assert_eq!((c.sinks.len(), mqtt.reconnect), (2, Duration::from_secs(5)));
        assert_eq!(c.fsync, FsyncPolicy::Never);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.limits.max_connections_per_ip, 10);
        assert_eq!(c.limits.junk_bytes, 0);
        assert_eq!(c.limits.udp_receive_buffer, 1 << 20);
        assert_eq!(c.listeners.len(), 3);
        let jt = &c.listeners[0];
        assert_eq!(
            (jt.protocol, jt.addr.port(), jt.stream.jt808_tz_minutes),
            (Listens::One(Protocol::Jt808), 6015, -180)
        );
        assert_eq!(jt.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(jt.stream.allow, Some(AllowList::ids(["13800138000"])));
        let gt = &c.listeners[1];
        assert_eq!((gt.addr.port(), gt.stream.gt06_crc), (5023, CrcPolicy::Lenient));
        assert!(gt.log_payloads && !jt.log_payloads, "only where the file sets it");
        let fleet = AllowList::ids(["356307042441013", "356307042441014"]);
        assert_eq!(c.listeners[2].stream.allow, Some(fleet), "comments and blank lines are not ids");

        // The command line wins: a --listen keeps the file's options for its protocol.
        let mut c2 = c.clone();
        c2.apply(Overrides {
            listen: vec!["jt808=127.0.0.1:0".parse().unwrap(), "nmea=127.0.0.1:0".parse().unwrap()],
            shards: Some(1),
            idle_timeout: Some(Duration::from_secs(7)),
            ..Overrides::default()
        })
        .unwrap();
        assert_eq!(c2.listeners.len(), 2);
        assert_eq!((c2.listeners[0].addr.port(), c2.listeners[0].stream.jt808_tz_minutes), (0, -180));
        assert_eq!(c2.listeners[1].stream, StreamOptions::default());
        assert_eq!((c2.shards, c2.limits.idle_timeout), (1, Duration::from_secs(7)));

        // Commands need the endpoint that serves them, and a token worth the name.
        let config = dir.join("commands.toml");
        std::fs::write(&config, "commands_token_file = \"token\"\n").unwrap();
        let e = ServeConfig::load(Some(&config), Overrides::default()).unwrap_err();
        assert!(e.contains("not metrics"), "{e}");
        let metrics = Some("127.0.0.1:0".parse().unwrap());
        assert!(ServeConfig::load(Some(&config), Overrides { metrics, ..Overrides::default() }).is_ok());
        std::fs::write(dir.join("token"), "password\n").unwrap();
        let e = ServeConfig::load(Some(&config), Overrides { metrics, ..Overrides::default() }).unwrap_err();
        assert!(e.contains("at least 16 characters"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The cluster from the file, the command line's `--cluster` and `--node` over it, and
    /// `--node` alone refused (it would name a node of no cluster).
    #[test]
    fn cluster_from_the_file_and_the_command_line() {
        let base = Path::new(".");
        let mut c =
            ServeConfig::from_toml("[cluster]\nservers = \"nats://n1,n2:4223\"\nnode = \"gw-1\"", base).unwrap();
        let cluster = c.cluster.clone().unwrap();
        assert_eq!((cluster.servers.servers.len(), cluster.node.as_str()), (2, "gw-1"));
        c.apply(Overrides { node: Some("gw-2".into()), ..Overrides::default() }).unwrap();
        assert_eq!(c.cluster.as_ref().unwrap().node, "gw-2");
        c.apply(Overrides { cluster: Some("nats://n3".into()), ..Overrides::default() }).unwrap();
        assert_eq!(c.cluster.as_ref().unwrap().servers.servers, ["n3:4222"]);
        let mut alone = ServeConfig::default();
        let e = alone.apply(Overrides { node: Some("gw-1".into()), ..Overrides::default() }).unwrap_err();
        assert!(e.contains("no --cluster"), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let base = Path::new(".");
        for (text, says) in [
            ("shard = 2", "unknown field"),
            ("shards = 0", "at least 1"),
            ("[[listen]]\nprotocol = \"gt06\"\njt808_tz = \"+08:00\"", "jt808_tz is a jt808 option"),
            ("[[listen]]\nprotocol = \"nmea\"\nallow = [\"1\"]", "allow lists are for"),
            ("[[listen]]\nprotocol = \"gt07\"", "gt07"),
            ("[[listen]]\nprotocol = \"auto\"", "an auto listener needs an addr"),
            ("[[listen]]\nprotocol = \"gt06\"\ngt06_crc = \"sloppy\"", "sloppy"),
            ("[[listen]]\nprotocol = \"gt06\"\ntls_cert = \"a.pem\"", "tls_cert and tls_key go together"),
            ("[[listen]]\nprotocol = \"gt06\"\ntls_client_ca = \"ca.pem\"", "need tls_cert and tls_key"),
            ("[limits]\nidle_timeout = \"10 days\"", "idle_timeout"),
            ("[limits]\nidle_timeout = 0", "at least one second"),
            ("[limits]\nudp_receive_buffer = 100", "udp_receive_buffer must be"),
            ("[limits]\npartial_bytes = 4096", "partial_bytes must be at least"),
            ("sinks = [\"kafka:x\"]", "unknown sink kind"),
            ("commands_hold_file = \"held.jsonl\"", "not commands_token_file"),
            ("[cluster]\nservers = \"nats://a\"\nnode = \"a.b\"", "node name"),
            ("[cluster]\nnode = \"a\"", "missing field `servers`"),
            ("[[listen]]\nprotocol = \"teltonika\"\nallow_file = \"/nonexistent/imeis\"", "cannot read allow_file"),
        ] {
            let e = ServeConfig::from_toml(text, base).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
