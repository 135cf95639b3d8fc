//! A command request's meaning, wherever it came from (the HTTP endpoint, or another node of
//! the cluster over NATS): the body read as the device's protocol takes commands, handed to
//! the registry, and the outcome as a status code and a body (docs/http-api.md lists them).

use std::time::Duration;

use tracing::debug;
use trackgate_codecs::{AnswerMatch, Downlink, Protocol};

use crate::cluster::Reply;
use crate::registry::{Registry, SendError};

/// How long a command request waits for the write before answering `202`.
pub const COMMAND_WAIT: Duration = Duration::from_secs(3);

/// The command a request's body carries: JT808 commands are JSON (`jt808::Command`), the
/// others the device's own command text.
pub(crate) fn parse(protocol: Protocol, body: &[u8]) -> Result<Downlink, Reply> {
    if protocol == Protocol::Jt808 {
        return serde_json::from_slice(body)
            .map(Downlink::Jt808)
            .map_err(|e| Reply::text(400, format!("a JT808 command is JSON, such as \"query_location\": {e}")));
    }
    match std::str::from_utf8(body) {
        Ok(t) if !t.trim().is_empty() => Ok(Downlink::Text(t.trim_end_matches(['\r', '\n']).to_owned())),
        _ => Err(Reply::text(400, "the body is the command, as UTF-8 text")),
    }
}

/// Sends the command a request's `body` carries to a device of this node (or holds it here
/// for `hold`), and answers as the endpoint does.
pub(crate) async fn answer(
    registry: &Registry,
    protocol: Protocol,
    device_id: &str,
    body: &[u8],
    hold: Option<Duration>,
) -> Reply {
    match parse(protocol, body) {
        Ok(command) => send(registry, protocol, device_id, command, hold).await,
        Err(reply) => reply,
    }
}

/// Sends `command` through this node's registry and answers as the endpoint does.
pub(crate) async fn send(
    registry: &Registry,
    protocol: Protocol,
    device_id: &str,
    command: Downlink,
    hold: Option<Duration>,
) -> Reply {
    let sent = match hold {
        Some(hold) => {
            tokio::time::timeout(COMMAND_WAIT, registry.send_command_or_hold(protocol, device_id, command, hold)).await
        }
        None => tokio::time::timeout(COMMAND_WAIT, registry.send_command(protocol, device_id, command)).await,
    };
    debug!(%protocol, result = ?sent, "command request answered");
    match sent {
        Ok(Ok(answer)) => Reply::json(200, &written_body(answer)),
        // Still queued at the connection, or held for the device to connect: which one, as
        // far as the registry knows now.
        Err(_) => {
            let result = if registry.status(protocol, device_id).connected.is_some() { "queued" } else { "held" };
            Reply::json(202, &serde_json::json!({"result": result}))
        }
        Ok(Err(SendError::NotConnected)) => Reply::not_connected(),
        Ok(Err(e @ SendError::Refused(_))) => Reply::text(422, e.to_string()),
        Ok(Err(e @ SendError::Expired)) => Reply::text(404, e.to_string()),
        Ok(Err(e @ (SendError::QueueFull | SendError::Closed | SendError::TooManyHeld | SendError::NotKept(_)))) => {
            Reply::text(503, e.to_string())
        }
    }
}

/// What a `200` says: written, and where the protocol's answer refers to the command, the
/// attribute and value its record will carry (`{"server_flag": 3}`).
fn written_body(answer: Option<AnswerMatch>) -> serde_json::Value {
    match answer {
        Some(a) => serde_json::json!({"result": "written", "answer": {a.attribute: a.value}}),
        None => serde_json::json!({"result": "written"}),
    }
}
