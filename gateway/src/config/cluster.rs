//! `--cluster nats://…` and `--node NAME` (or the config file's `[cluster]`): the NATS
//! servers this node shares presence, commands and held commands through, and its name
//! there. The plane itself is `crate::cluster`; the manual is docs/cluster.md.

use super::nats::NatsServers;

/// The cluster plane's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub servers: NatsServers,
    /// This node's name in the presence bucket: unique in the cluster.
    pub node: String,
    /// Replicas of the buckets this node creates (`replicas=N`; 3 on a cluster of three NATS
    /// servers keeps held commands through the loss of one).
    pub replicas: usize,
}

impl ClusterConfig {
    /// Parses `nats://[USER@]HOST[:PORT][,…][?replicas=N&ca=PATH&creds=PATH]` (or `tls://…`).
    pub fn parse(url: &str, node: Option<&str>) -> Result<ClusterConfig, String> {
        let usage =
            "--cluster is nats://[USER@]HOST[:PORT][,HOST[:PORT]…][?replicas=N&ca=PATH&creds=PATH] (or tls://…)";
        let (scheme, rest) = url.split_once("://").ok_or_else(|| usage.to_owned())?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let mut servers = NatsServers::parse_authority(scheme, authority).map_err(|e| format!("{usage}: {e}"))?;
        let mut replicas = 1;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == "replicas" {
                replicas = value.parse().ok().filter(|n| (1..=5).contains(n)).ok_or("replicas: 1 to 5")?;
            } else if !servers.option(key, value)? {
                return Err(format!("{usage}: unknown option {key:?}"));
            }
        }
        let node = match node {
            Some(n) => checked_node(n)?,
            None => default_node(),
        };
        Ok(ClusterConfig { servers, node, replicas })
    }
}

/// A node name as given, if it is one: one NATS subject token and one KV key part.
pub fn checked_node(name: &str) -> Result<String, String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    fine.then(|| name.to_owned()).ok_or_else(|| format!("node name {name:?}: 1 to 64 letters, digits, '-' or '_'"))
}

/// The host name and the process id: unique on one machine and across machines.
fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(40).collect();
    let host = if host.is_empty() { "node".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_and_node_names() {
        let c = ClusterConfig::parse("nats://a:4223,b?creds=/etc/gw.creds&replicas=3", Some("gw-1")).unwrap();
        assert_eq!(c.replicas, 3);
        assert_eq!((c.servers.servers.clone(), c.node.as_str()), (vec!["a:4223".into(), "b:4222".into()], "gw-1"));
        assert_eq!(c.servers.creds, Some("/etc/gw.creds".into()));
        let c = ClusterConfig::parse("tls://a/", None).unwrap();
        assert!(c.servers.tls && c.node.ends_with(&format!("-{}", std::process::id())), "{}", c.node);
        for (url, node) in [
            ("a:4222", None),
            ("nats://a?x=1", None),
            ("nats://a?replicas=9", None),
            ("nats://a", Some("gw.1")),
            ("nats://a", Some("")),
        ] {
            assert!(ClusterConfig::parse(url, node).is_err(), "{url} {node:?}");
        }
    }
}
