//! The names the cluster plane uses on NATS, one place for each (docs/cluster.md lists them
//! for platforms that talk to NATS directly).
//!
//! A device id comes off the wire and may hold anything; in a subject token or a KV key it
//! is written with every byte outside `A-Z a-z 0-9 - _` as `=XX` (hex), so that each id is
//! one token, two ids never share a name, and the usual ids (IMEIs, phone numbers) read as
//! themselves.

use trackgate_codecs::Protocol;

/// The presence bucket: `{protocol}.{device}` → the node holding the device.
pub const DEVICES_BUCKET: &str = "TRACKGATE_DEVICES";
/// The nodes' heartbeats: `{node}` → its last beat; a key that has aged out is a dead node.
pub const NODES_BUCKET: &str = "TRACKGATE_NODES";
/// Commands held for devices no node holds: `{protocol}.{device}` → a list.
pub const HELD_BUCKET: &str = "TRACKGATE_HELD";
/// JT808 auth codes: `{device}` → the terminal's code (`codes.rs`).
pub const JT808_CODES_BUCKET: &str = "TRACKGATE_JT808_CODES";
/// Requests to the node holding a device: `trackgate.commands.{protocol}.{device}`.
pub const COMMANDS_PREFIX: &str = "trackgate.commands";
/// A node's answers on whether a login elsewhere may take one of its devices:
/// `trackgate.takeover.{node}` (`registry::remote`).
pub const TAKEOVER_PREFIX: &str = "trackgate.takeover";
/// The queue group of the command subscriptions: each request reaches one node.
pub const COMMANDS_QUEUE: &str = "trackgate";
/// Request header: hold the command this many seconds if the device is not connected.
pub const HOLD_HEADER: &str = "Trackgate-Hold";
/// Reply header: the HTTP status code of the answer (`200`, `202`, `404`, …).
pub const STATUS_HEADER: &str = "Trackgate-Status";

/// The device id as one subject token or key part.
pub fn token(device_id: &str) -> String {
    let mut out = String::with_capacity(device_id.len());
    for b in device_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// The device id a [`token`] was made from.
pub fn from_token(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The KV key of a device: `{protocol}.{token}`.
pub fn key(protocol: Protocol, device_id: &str) -> String {
    format!("{protocol}.{}", token(device_id))
}

/// The device a KV key names.
pub fn parse_key(key: &str) -> Option<(Protocol, String)> {
    let (protocol, token) = key.split_once('.')?;
    Some((protocol.parse().ok()?, from_token(token)?))
}

/// The subject the node holding the device answers commands on.
pub fn command_subject(protocol: Protocol, device_id: &str) -> String {
    format!("{COMMANDS_PREFIX}.{}", key(protocol, device_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_one_token_each_and_come_back() {
        assert_eq!(command_subject(Protocol::Gt06, "358000000000001"), "trackgate.commands.gt06.358000000000001");
        for id in ["358000000000001", "a.b*c >d", "=41", "", "停车", "x=y"] {
            let t = token(id);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)), "{t}");
            assert_eq!(from_token(&t).as_deref(), Some(id), "{t}");
            assert_eq!(parse_key(&key(Protocol::Jt808, id)), Some((Protocol::Jt808, id.to_owned())));
        }
        assert_ne!(token("=41"), token("A"));
        assert_eq!(from_token("=4"), None);
    }
}
