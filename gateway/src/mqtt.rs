//! The MQTT sink: every record published, QoS 1, to an MQTT 3.1.1 broker.
//!
//! `--sink mqtt://[USER@]HOST[:PORT]/TOPIC[?client_id=ID&reconnect=SECONDS]`
//!
//! The promise is the one the file sink keeps: `commit` returns only when the broker has
//! acknowledged (PUBACK) every record written since the last commit, so a device is acked only
//! for records the broker holds. Publishes are pipelined: a commit of a thousand records is a
//! thousand packets in a few writes, then the acks read back, not a round trip each.
//!
//! The topic may name parts of the record, filled per record: `{protocol}`, `{device_id}`
//! (`unknown` before the device has identified itself) and `{kind}`, so
//! `trackgate/{protocol}/{device_id}` gives each device its own topic. A filled-in value never
//! adds a level or a wildcard: `/`, `+`, `#` and control characters in it become `_` (device
//! ids come from the wire). The payload is the record's JSON, as the JSONL sink writes it.
//!
//! A lost connection (the broker restarted, a NAT forgot an idle flow) is not an error by
//! itself: the next commit connects again and sends every record the broker had not
//! acknowledged, marked as a duplicate. That is at-least-once: a consumer may see a record
//! twice, never zero times. Only when the broker stays away for `reconnect` seconds (30 unless
//! given) does the commit fail, and the gateway stop as it does for a full disk.
//!
//! The password is not taken on the command line (where `ps` would show it): with a user in the
//! URL it comes from the `TRACKGATE_MQTT_PASSWORD` environment variable. Plain TCP only; a
//! broker across an untrusted network wants a local bridge (Mosquitto bridges with TLS).
//!
//! The session is clean and the keep-alive off: the sink thread sleeps while no records come,
//! and a connection found dead is simply made again.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tracing::{info, warn};
use trackgate_codecs::Record;

use crate::sink::RecordSink;

/// The broker's usual port for MQTT over plain TCP.
pub const DEFAULT_PORT: u16 = 1883;
/// How long the broker may stay away before a commit fails, unless the URL says.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(30);
/// How long one connection attempt, or one wait for the broker's answer, may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Publishes written and not yet acknowledged before the sink waits for the broker: bounds the
/// memory kept for re-sending and keeps packet ids far from wrapping onto a waiting one.
const MAX_IN_FLIGHT: usize = 4096;
/// Bytes gathered before they are written to the socket.
const WRITE_CHUNK: usize = 64 * 1024;
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
    /// The topic with its `{…}` placeholders, as given ([`MqttTarget::topic`]).
    topic: String,
    /// `topic` taken apart once, at parse time, for filling per record.
    parts: Vec<TopicPart>,
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
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}/{}", self.host, self.port, self.topic)
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
        let parts = parse_topic(topic)?;
        let mut target = MqttTarget {
            host,
            port,
            user,
            password: None,
            topic: topic.to_owned(),
            parts,
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

    /// The topic as given, placeholders and all.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic for `record`: the placeholders filled, each value made one safe level.
    fn topic_for(&self, record: &Record, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                TopicPart::Text(text) => out.push_str(text),
                TopicPart::Field(Field::Protocol) => push_level(out, record.protocol.as_str()),
                TopicPart::Field(Field::DeviceId) => push_level(out, record.device_id.as_deref().unwrap_or("unknown")),
                TopicPart::Field(Field::Kind) => push_level(out, record.kind.as_str()),
            }
        }
    }
}

/// A record field a topic can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Protocol,
    DeviceId,
    Kind,
}

const PLACEHOLDERS: [(&str, Field); 3] =
    [("{protocol}", Field::Protocol), ("{device_id}", Field::DeviceId), ("{kind}", Field::Kind)];

/// A piece of a topic: text as given, or a field filled per record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicPart {
    Text(String),
    Field(Field),
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

/// Takes a topic to publish to apart: not empty, no wildcards, every brace a known
/// placeholder's.
fn parse_topic(topic: &str) -> Result<Vec<TopicPart>, String> {
    if topic.is_empty() || topic.len() > 1024 {
        return Err(format!("the MQTT topic {topic:?} is empty or over 1024 bytes"));
    }
    if topic.contains(['+', '#', '\0']) {
        return Err(format!("the MQTT topic {topic:?} has a wildcard; records are published to one topic each"));
    }
    let mut parts = Vec::new();
    let mut rest = topic;
    while let Some(brace) = rest.find(['{', '}']) {
        let after = &rest[brace..];
        let Some((name, field)) = PLACEHOLDERS.iter().find(|(name, _)| after.starts_with(name)) else {
            return Err(format!("the MQTT topic {topic:?}: placeholders are {{protocol}}, {{device_id}} and {{kind}}"));
        };
        if brace > 0 {
            parts.push(TopicPart::Text(rest[..brace].to_owned()));
        }
        parts.push(TopicPart::Field(*field));
        rest = &after[name.len()..];
    }
    if !rest.is_empty() {
        parts.push(TopicPart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// Appends `value` as (part of) one topic level.
fn push_level(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
    }
    for c in value.chars() {
        out.push(if matches!(c, '/' | '+' | '#') || c.is_control() { '_' } else { c });
    }
}

/// MQTT control packet types (the high nibble of the first byte).
mod packet {
    pub const CONNECT: u8 = 0x10;
    pub const CONNACK: u8 = 0x20;
    pub const PUBLISH_QOS1: u8 = 0x32;
    pub const PUBACK: u8 = 0x40;
    pub const DISCONNECT: u8 = 0xE0;
    /// The DUP flag of a PUBLISH: this packet may have reached the broker before.
    pub const DUP: u8 = 0x08;
}

/// Writes the fixed header's remaining length (1 to 4 bytes).
fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A QoS 1 PUBLISH of `payload` to `topic`. None past the protocol's limits (a topic over
/// 65,535 bytes or a packet over 256 MiB), which no record reaches.
fn publish(topic: &str, id: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let len = 2 + topic.len() + 2 + payload.len();
    if topic.len() > usize::from(u16::MAX) || len > 268_435_455 {
        return None;
    }
    let mut out = Vec::with_capacity(len + 5);
    out.push(packet::PUBLISH_QOS1);
    put_remaining_length(&mut out, len);
    put_str(&mut out, topic.as_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

fn connect_packet(target: &MqttTarget) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level: 3.1.1
    let mut flags = 0x02; // clean session
    if target.user.is_some() {
        flags |= 0x80;
        if target.password.is_some() {
            flags |= 0x40;
        }
    }
    body.push(flags);
    body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive off (see the module's notes)
    put_str(&mut body, target.client_id.as_bytes());
    if let Some(user) = &target.user {
        put_str(&mut body, user.as_bytes());
        if let Some(password) = &target.password {
            put_str(&mut body, password.as_bytes());
        }
    }
    let mut out = vec![packet::CONNECT];
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// One connection to the broker.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Connection {
    fn open(target: &MqttTarget) -> io::Result<Connection> {
        let mut last =
            io::Error::new(io::ErrorKind::NotFound, format!("{}:{} resolves to nothing", target.host, target.port));
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
                Ok(stream) => return Connection::handshake(stream, target),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn handshake(stream: TcpStream, target: &MqttTarget) -> io::Result<Connection> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut c = Connection {
            reader: BufReader::with_capacity(16 * 1024, stream.try_clone()?),
            writer: BufWriter::with_capacity(WRITE_CHUNK, stream),
        };
        c.writer.write_all(&connect_packet(target))?;
        c.writer.flush()?;
        let (kind, body) = c.read_packet()?;
        if kind != packet::CONNACK || body.len() != 2 {
            return Err(broken(format!("the broker answered CONNECT with packet type {:#04x}", kind)));
        }
        match body[1] {
            0 => Ok(c),
            code => {
                let why = match code {
                    1 => "it does not speak MQTT 3.1.1",
                    2 => "it refused the client id",
                    3 => "it is unavailable",
                    4 => "bad user name or password",
                    5 => "not authorized",
                    _ => "an unknown reason",
                };
                Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the broker refused the connection: {why}"),
                ))
            }
        }
    }

    /// Reads one control packet: its first byte and its body.
    fn read_packet(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut first = [0u8; 1];
        self.reader.read_exact(&mut first)?;
        let mut len = 0usize;
        for shift in 0..4 {
            let mut b = [0u8; 1];
            self.reader.read_exact(&mut b)?;
            len |= usize::from(b[0] & 0x7F) << (7 * shift);
            if b[0] & 0x80 == 0 {
                // Nothing the broker sends this client is large; a huge length is a broken stream.
                if len > 64 * 1024 {
                    return Err(broken(format!("a {len}-byte packet from the broker")));
                }
                let mut body = vec![0u8; len];
                self.reader.read_exact(&mut body)?;
                return Ok((first[0], body));
            }
        }
        Err(broken("a remaining length of more than 4 bytes"))
    }
}

/// A publish written and not yet acknowledged.
struct InFlight {
    /// Order of writing, for sending again in the same order.
    seq: u64,
    packet: Vec<u8>,
}

/// Publishes records to an MQTT broker; see the module's notes.
pub struct MqttSink {
    target: MqttTarget,
    connection: Option<Connection>,
    in_flight: HashMap<u16, InFlight>,
    next_id: u16,
    next_seq: u64,
    topic: String,
    payload: Vec<u8>,
}

impl fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSink").field("target", &self.target).field("in_flight", &self.in_flight.len()).finish()
    }
}

impl MqttSink {
    /// Connects now, so a wrong address or refused login fails at start rather than at the
    /// first record. The password, if the URL names a user, comes from [`PASSWORD_VAR`].
    pub fn connect(target: &MqttTarget) -> io::Result<MqttSink> {
        let mut target = target.clone();
        if target.user.is_some() && target.password.is_none() {
            target.password = std::env::var(PASSWORD_VAR).ok();
        }
        let connection = Connection::open(&target)?;
        info!(broker = %format_args!("{}:{}", target.host, target.port), "MQTT sink connected");
        Ok(MqttSink {
            target,
            connection: Some(connection),
            in_flight: HashMap::new(),
            next_id: 1,
            next_seq: 0,
            topic: String::new(),
            payload: Vec::with_capacity(1024),
        })
    }

    /// A packet id no waiting publish has.
    fn take_id(&mut self) -> u16 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains_key(&id) {
                return id;
            }
        }
    }

    /// Reads acks until nothing waits.
    fn read_acks(&mut self) -> io::Result<()> {
        let Some(c) = self.connection.as_mut() else { return Err(broken("not connected")) };
        c.writer.flush()?;
        loop {
            if self.in_flight.is_empty() {
                return Ok(());
            }
            let (kind, body) = c.read_packet()?;
            match kind & 0xF0 {
                packet::PUBACK if body.len() == 2 => {
                    // An ack for an id not waiting (a late one from before a re-send) is harmless.
                    self.in_flight.remove(&u16::from_be_bytes([body[0], body[1]]));
                }
                _ => return Err(broken(format!("unexpected packet type {kind:#04x} from the broker"))),
            }
        }
    }

    /// Connects again and writes every waiting publish, in its first order, marked DUP.
    fn reconnect_and_resend(&mut self) -> io::Result<()> {
        self.connection = None;
        let mut c = Connection::open(&self.target)?;
        let mut waiting: Vec<&mut InFlight> = self.in_flight.values_mut().collect();
        waiting.sort_by_key(|w| w.seq);
        for w in waiting {
            w.packet[0] |= packet::DUP;
            c.writer.write_all(&w.packet)?;
        }
        self.connection = Some(c);
        Ok(())
    }
}

impl RecordSink for MqttSink {
    fn write(&mut self, records: &[Record]) -> io::Result<()> {
        for r in records {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                // The broker catches up (connected again if need be) before more is taken: an
                // early commit is harmless, and it keeps packet ids from running out.
                self.commit()?;
            }
            self.target.topic_for(r, &mut self.topic);
            self.payload.clear();
            r.write_json(&mut self.payload);
            let id = self.take_id();
            let packet = publish(&self.topic, id, &self.payload)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record too large for MQTT"))?;
            if let Some(c) = self.connection.as_mut() {
                if c.writer.write_all(&packet).is_err() {
                    self.connection = None;
                }
            }
            self.in_flight.insert(id, InFlight { seq: self.next_seq, packet });
            self.next_seq += 1;
        }
        Ok(())
    }

    /// Returns once the broker has acknowledged everything written; connects again (and
    /// re-sends) as long as `reconnect` allows.
    fn commit(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.target.reconnect;
        let mut pause = Duration::from_millis(100);
        loop {
            let attempt = match self.connection {
                Some(_) => self.read_acks(),
                None => self.reconnect_and_resend().and_then(|()| self.read_acks()),
            };
            let e = match attempt {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            self.connection = None;
            if Instant::now() + pause > deadline {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "MQTT broker {}:{}: {e} ({} records unacknowledged)",
                        self.target.host,
                        self.target.port,
                        self.in_flight.len()
                    ),
                ));
            }
            warn!(error = %e, waiting = self.in_flight.len(), "MQTT broker lost; connecting again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        if let Some(c) = self.connection.as_mut() {
            // A polite goodbye; the broker copes without it.
            let _ = c.writer.write_all(&[packet::DISCONNECT, 0]);
            let _ = c.writer.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackgate_codecs::{Kind, Protocol};

    #[test]
    fn urls_parse_with_defaults_and_options() {
        let t = MqttTarget::parse("//broker.local/trackgate/{protocol}/{device_id}").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.user.as_deref()), ("broker.local", 1883, None));
        assert_eq!(t.topic(), "trackgate/{protocol}/{device_id}");
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

    #[test]
    fn topics_are_filled_one_safe_level_per_value() {
        let t = MqttTarget::parse("//b/fleet/{protocol}/{device_id}/{kind}").unwrap();
        let mut r = Record::new(Protocol::Gt06, Kind::Position, "0x22");
        let mut topic = String::new();
        t.topic_for(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/unknown/position");
        r.device_id = Some("a/b+#\n".into());
        t.topic_for(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/a_b___/position");
        r.device_id = Some(String::new());
        t.topic_for(&r, &mut topic);
        assert_eq!(topic, "fleet/gt06/_/position");
        let joined = MqttTarget::parse("//b/{kind}-{protocol}.v1").unwrap();
        joined.topic_for(&r, &mut topic);
        assert_eq!(topic, "position-gt06.v1");
    }

    #[test]
    fn packets_are_laid_out_as_mqtt_3_1_1_says() {
        let mut len = Vec::new();
        for (n, bytes) in [
            (0, &[0x00][..]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        ] {
            len.clear();
            put_remaining_length(&mut len, n);
            assert_eq!(len, bytes, "{n}");
        }
        assert_eq!(publish("a/b", 0x0102, b"{}").unwrap(), [0x32, 9, 0, 3, b'a', b'/', b'b', 1, 2, b'{', b'}']);
        let target = MqttTarget {
            user: Some("u".into()),
            password: Some("p".into()),
            client_id: "c".into(),
            ..MqttTarget::parse("//b/t").unwrap()
        };
        assert_eq!(
            connect_packet(&target),
            [0x10, 19, 0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 0, 0, 1, b'c', 0, 1, b'u', 0, 1, b'p']
        );
    }
}
