//! NATS addresses: `nats://[USER@]HOST[:PORT][,HOST[:PORT]…]` (or `tls://…`), the servers a
//! node connects to for the JetStream sink (`--sink nats://…/SUBJECT?…`) and for the cluster
//! plane (`--cluster nats://…`). The connection itself is made by `crate::bus`; the manual
//! is docs/configuration.md.
//!
//! Secrets never come from the URL (it is a command-line argument, visible to every user of
//! the machine): the password, a token and the path of a `.creds` file come from the
//! environment ([`PASSWORD_VAR`], [`TOKEN_VAR`], [`CREDS_VAR`]) or from the URL's `creds=`
//! option (a path, not a secret).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::topic::{TopicTemplate, NATS};

/// NATS's usual client port.
pub const DEFAULT_PORT: u16 = 4222;
/// The variable that holds the password for a URL with a user.
pub const PASSWORD_VAR: &str = "TRACKGATE_NATS_PASSWORD";
/// The variable that holds a token (a URL without a user).
pub const TOKEN_VAR: &str = "TRACKGATE_NATS_TOKEN";
/// The variable that names a `.creds` file (NATS decentralised auth), if `creds=` does not.
pub const CREDS_VAR: &str = "TRACKGATE_NATS_CREDS";
/// The subject records are published to unless the URL says.
pub const DEFAULT_SUBJECT: &str = "trackgate.records.{protocol}.{device_id}";
/// The stream unless the URL says.
pub const DEFAULT_STREAM: &str = "TRACKGATE";
/// How long NATS may stay away before a commit fails, unless the URL says.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(30);
/// JetStream's own default duplicate window, for a stream this node creates.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The servers to connect to and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsServers {
    /// `host:port` each; the client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// `tls://`: TLS required (rustls), checked against the system's roots or `ca`.
    pub tls: bool,
    /// A PEM file of the CA that signed the servers' certificates (`ca=PATH`).
    pub ca: Option<PathBuf>,
    pub user: Option<String>,
    /// A `.creds` file (`creds=PATH` or [`CREDS_VAR`]).
    pub creds: Option<PathBuf>,
    /// From [`PASSWORD_VAR`] or [`TOKEN_VAR`] when the connection is made, never from the URL.
    pub secret: Option<String>,
}

impl fmt::Debug for NatsServers {
    /// The secret is left out: specs are printed in errors and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServers")
            .field("servers", &self.servers)
            .field("tls", &self.tls)
            .field("ca", &self.ca)
            .field("user", &self.user)
            .field("creds", &self.creds)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl fmt::Display for NatsServers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", if self.tls { "tls" } else { "nats" }, self.servers.join(","))
    }
}

impl NatsServers {
    /// Parses `nats://AUTHORITY` or `tls://AUTHORITY` (what comes before the path); the
    /// options `ca=` and `creds=` are taken by [`NatsServers::option`].
    pub fn parse_authority(scheme: &str, authority: &str) -> Result<NatsServers, String> {
        let tls = match scheme {
            "nats" => false,
            "tls" => true,
            _ => return Err(format!("a NATS URL starts nats:// or tls://, not {scheme}://")),
        };
        let (user, hosts) = match authority.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => {
                return Err(format!("no password in the URL; set {PASSWORD_VAR} instead"));
            }
            Some((user, hosts)) if !user.is_empty() => (Some(user.to_owned()), hosts),
            Some(_) => return Err("the user before '@' is empty".into()),
            None => (None, authority),
        };
        let servers = hosts.split(',').map(host_port).collect::<Result<Vec<_>, _>>()?;
        Ok(NatsServers { servers, tls, ca: None, user, creds: None, secret: None })
    }

    /// Takes a connection option of the URL's query; false if `key` is not one.
    pub fn option(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "ca" if !value.is_empty() => self.ca = Some(value.into()),
            "creds" if !value.is_empty() => self.creds = Some(value.into()),
            "ca" | "creds" => return Err(format!("{key}= needs a file path")),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The URL's servers, for the client (`nats://h:p` or `tls://h:p` each).
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.tls { "tls" } else { "nats" };
        self.servers.iter().map(|s| format!("{scheme}://{s}")).collect()
    }
}

fn host_port(s: &str) -> Result<String, String> {
    let bad = || format!("{s:?} is not HOST[:PORT]");
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return Err(bad()),
        };
        return Ok(format!("[{host}]:{port}"));
    }
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
        None => (s, DEFAULT_PORT),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(format!("{host}:{port}"))
}

/// Splits `//AUTHORITY[/PATH][?QUERY]` (what follows the scheme's colon).
fn split_url(rest: &str) -> Option<(&str, &str, &str)> {
    let rest = rest.strip_prefix("//")?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((authority, path, query))
}

/// Where the JetStream sink publishes: `nats://SERVERS/SUBJECT?stream=NAME&…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTarget {
    pub servers: NatsServers,
    pub subject: TopicTemplate,
    pub stream: String,
    /// Replicas of a stream this node creates.
    pub replicas: usize,
    /// Create the stream if it is missing (`create=false`: it must exist).
    pub create: bool,
    pub duplicate_window: Duration,
    pub reconnect: Duration,
}

impl fmt::Display for NatsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}?stream={}", self.servers, self.subject.as_str(), self.stream)
    }
}

impl NatsTarget {
    /// Parses a sink spec's `scheme` (`nats` or `tls`) and what follows its colon.
    pub fn parse(scheme: &str, rest: &str) -> Result<NatsTarget, String> {
        let usage = "a NATS sink is nats://[USER@]HOST[:PORT][,HOST[:PORT]…][/SUBJECT][?stream=NAME&replicas=N\
                     &create=false&duplicate_window=SECONDS&reconnect=SECONDS&ca=PATH&creds=PATH]";
        let (authority, path, query) = split_url(rest).ok_or_else(|| usage.to_owned())?;
        let servers = NatsServers::parse_authority(scheme, authority).map_err(|e| format!("{usage}: {e}"))?;
        let subject = if path.is_empty() { DEFAULT_SUBJECT } else { path };
        let mut target = NatsTarget {
            servers,
            subject: TopicTemplate::parse(subject, NATS)?,
            stream: DEFAULT_STREAM.into(),
            replicas: 1,
            create: true,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            reconnect: DEFAULT_RECONNECT,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| format!("{usage}: {pair:?} is not KEY=VALUE"))?;
            if target.servers.option(key, value)? {
                continue;
            }
            let seconds =
                || value.parse::<u64>().map(Duration::from_secs).map_err(|_| format!("{key}={value}: whole seconds"));
            match key {
                "stream" if is_stream_name(value) => target.stream = value.into(),
                "stream" => return Err(format!("stream={value}: letters, digits, '-' and '_' only")),
                "replicas" => {
                    target.replicas = match value.parse() {
                        Ok(n @ 1..=5) => n,
                        _ => return Err(format!("replicas={value}: 1 to 5 (JetStream's limit)")),
                    }
                }
                "create" => {
                    target.create = value.parse().map_err(|_| format!("create={value}: true or false"))?;
                }
                "duplicate_window" => target.duplicate_window = seconds()?,
                "reconnect" => target.reconnect = seconds()?,
                _ => return Err(format!("{usage}: unknown option {key:?}")),
            }
        }
        Ok(target)
    }

    /// The subjects the stream must take: the template with each level that holds a
    /// placeholder as `*` (a filled-in value is always one level).
    pub fn stream_subjects(&self) -> String {
        let levels: Vec<&str> =
            self.subject.as_str().split('.').map(|level| if level.contains('{') { "*" } else { level }).collect();
        levels.join(".")
    }
}

fn is_stream_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_options() {
        let t = NatsTarget::parse("nats", "//127.0.0.1").unwrap();
        assert_eq!(t.servers.servers, ["127.0.0.1:4222"]);
        assert_eq!(
            (t.subject.as_str(), t.stream.as_str(), t.replicas, t.create),
            (DEFAULT_SUBJECT, "TRACKGATE", 1, true)
        );
        assert_eq!(t.stream_subjects(), "trackgate.records.*.*");
        let t = NatsTarget::parse(
            "tls",
            "//fleet@a:4223,b,[::1]:4224/fleet.{kind}-{protocol}.v1?stream=FLEET&replicas=3&create=false\
             &duplicate_window=600&reconnect=5&ca=/etc/ca.pem&creds=/etc/gw.creds",
        )
        .unwrap();
        assert_eq!(t.servers.servers, ["a:4223", "b:4222", "[::1]:4224"]);
        assert_eq!(t.servers.urls()[0], "tls://a:4223");
        assert_eq!((t.servers.tls, t.servers.user.as_deref()), (true, Some("fleet")));
        assert_eq!((t.stream.as_str(), t.replicas, t.create), ("FLEET", 3, false));
        assert_eq!((t.duplicate_window, t.reconnect), (Duration::from_secs(600), Duration::from_secs(5)));
        assert_eq!(
            (t.servers.ca.clone(), t.servers.creds.clone()),
            (Some("/etc/ca.pem".into()), Some("/etc/gw.creds".into()))
        );
        assert_eq!(t.stream_subjects(), "fleet.*.v1");
        for bad in [
            "//",
            "//a,/x",
            "//a:x/s",
            "//user:secret@a/s",
            "//a/s.*",
            "//a/s.>",
            "//a/s x",
            "//a/s..t",
            "//a/.s",
            "//a/s?stream=a.b",
            "//a/s?replicas=7",
            "//a/s?create=maybe",
            "//a/s?reconnect=soon",
            "//a/s?qos=1",
            "//a/s?ca=",
        ] {
            assert!(NatsTarget::parse("nats", bad).is_err(), "{bad}");
        }
        assert!(NatsTarget::parse("http", "//a/s").is_err());
        let with_secret = NatsServers { secret: Some("hunter2".into()), ..t.servers };
        assert!(!format!("{with_secret:?}").contains("hunter2"));
    }
}
