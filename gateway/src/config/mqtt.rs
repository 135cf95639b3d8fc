//! `--sink mqtt://[USER@]HOST[:PORT]/TOPIC[?client_id=ID&reconnect=SECONDS]`: where the MQTT
//! sink publishes (the sink itself is `crate::sink::mqtt`; the manual is docs/configuration.md).

use std::fmt;
use std::time::Duration;

use super::topic::{TopicTemplate, MQTT};

/// The broker's usual port for MQTT over plain TCP.
pub const DEFAULT_PORT: u16 = 1883;
/// How long the broker may stay away before a commit fails, unless the URL says.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(30);
/// The variable that holds the password for a URL with a user.
pub const PASSWORD_VAR: &str = "TRACKGATE_MQTT_PASSWORD";

/// Where an MQTT sink publishes, parsed from `mqtt://…`.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttTarget {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    /// From [`PASSWORD_VAR`] when the sink is opened, never from the URL.
    pub password: Option<String>,
    pub topic: TopicTemplate,
    pub client_id: String,
    pub reconnect: Duration,
}

impl fmt::Debug for MqttTarget {
    /// The password is left out: sink specs are printed in errors and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("topic", &self.topic.as_str())
            .field("client_id", &self.client_id)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}/{}", self.host, self.port, self.topic.as_str())
    }
}

impl MqttTarget {
    /// Parses what follows `mqtt:` in a sink spec: `//[USER@]HOST[:PORT]/TOPIC[?QUERY]`.
    pub fn parse(rest: &str) -> Result<MqttTarget, String> {
        let usage = "an MQTT sink is mqtt://[USER@]HOST[:PORT]/TOPIC[?client_id=ID&reconnect=SECONDS]";
        let rest = rest.strip_prefix("//").ok_or_else(|| usage.to_owned())?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, topic) = rest.split_once('/').ok_or_else(|| format!("{usage}: the topic is missing"))?;
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, _)) if user.contains(':') => {
                return Err(format!("{usage}: no password in the URL; set {PASSWORD_VAR} instead"));
            }
            Some((user, host_port)) if !user.is_empty() => (Some(user.to_owned()), host_port),
            Some(_) => return Err(format!("{usage}: the user before '@' is empty")),
            None => (None, authority),
        };
        let (host, port) = split_host_port(host_port).ok_or_else(|| format!("{usage}: bad host or port"))?;
        let topic = TopicTemplate::parse(topic, MQTT)?;
        let mut target = MqttTarget {
            host,
            port,
            user,
            password: None,
            topic,
            client_id: format!("trackgate-{}", std::process::id()),
            reconnect: DEFAULT_RECONNECT,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("client_id", id)) if !id.is_empty() && id.len() <= 23 && id.is_ascii() => {
                    target.client_id = id.to_owned();
                }
                Some(("client_id", _)) => {
                    return Err("client_id: 1 to 23 ASCII characters (what every MQTT 3.1.1 broker takes)".into());
                }
                Some(("reconnect", s)) => {
                    let secs: u64 = s.parse().map_err(|_| format!("reconnect={s}: whole seconds"))?;
                    target.reconnect = Duration::from_secs(secs);
                }
                _ => return Err(format!("{usage}: unknown option {pair:?}")),
            }
        }
        Ok(target)
    }
}

fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => DEFAULT_PORT,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (s, DEFAULT_PORT),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_options() {
        let t = MqttTarget::parse("//broker.local/trackgate/{protocol}/{device_id}").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_deref()), ("broker.local", 1883, None));
        assert_eq!(t.topic.as_str(), "trackgate/{protocol}/{device_id}");
        assert_eq!(t.reconnect, DEFAULT_RECONNECT);
        let t = MqttTarget::parse("//fleet@10.0.0.5:8883/t?client_id=gw1&reconnect=5").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_deref()), ("10.0.0.5", 8883, Some("fleet")));
        assert_eq!((t.client_id.as_str(), t.reconnect), ("gw1", Duration::from_secs(5)));
        let t = MqttTarget::parse("//[::1]:1884/t").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1884));
        for bad in [
            "broker/t",
            "//broker",
            "//broker/",
            "//broker:x/t",
            "//user:secret@broker/t",
            "//broker/t/#",
            "//broker/t/+/x",
            "//broker/{imei}",
            "//broker/t}",
            "//broker/a}/{kind}",
            "//broker/{kind",
            "//broker/t?qos=2",
            "//broker/t?client_id=",
            "//broker/t?reconnect=soon",
        ] {
            assert!(MqttTarget::parse(bad).is_err(), "{bad}");
        }
        let with_password = MqttTarget { password: Some("hunter2".into()), ..t };
        assert!(!format!("{with_password:?}").contains("hunter2"));
    }
}
