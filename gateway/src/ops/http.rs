//! The operator's HTTP endpoint (`--metrics ADDR`): `/metrics`, `/healthz`, and device
//! status and commands when a commands token is configured. What it answers is documented
//! once, in docs/http-api.md; this module owns the routes and the answers, and must not
//! decide anything about devices (that is the registry's).
//!
//! HTTP/1.1 by hyper, one request per connection, within bounds: a request head of 16 KiB
//! (larger: `431`), a command body of 4 KiB (`413`), 5 s to send the head, a whole request
//! bounded, and at most [`MAX_CONNECTIONS`] at once (or `limits.http_connections`) (more wait in the kernel's backlog, never
//! taking the descriptors device ports need). Conflicting `Content-Length`s and other broken
//! framing get hyper's `400`; chunked bodies are taken as what they carry. The token is
//! compared in constant time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info};
use trackgate_codecs::Protocol;

use super::command;
use super::metrics::{Metrics, RegistryGauges};
use crate::cluster::{Cluster, Reply};
use crate::config::CommandsToken;
use crate::registry::Registry;

pub use super::command::COMMAND_WAIT;

/// The longest command body taken.
const MAX_COMMAND_BODY: usize = 4096;

/// The longest request head read (hyper's buffer; its floor is 8 KiB).
const MAX_HEAD: usize = 16 * 1024;

/// Connections served at once unless the limits say (`limits.http_connections`): the
/// endpoint's whole descriptor budget.
pub const MAX_CONNECTIONS: usize = crate::config::listen::HTTP_CONNECTIONS;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What the metrics show of the registry.
pub fn gauges(registry: &Registry) -> RegistryGauges {
    RegistryGauges { devices: registry.devices(), holding: registry.holding(), partial_bytes: registry.partial.held() }
}

/// Resolves once shutdown has been signalled.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// What the endpoint serves.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    /// Commands are served only with a token.
    pub commands: Option<CommandsToken>,
    /// In cluster mode: the way to devices on other nodes.
    pub cluster: Option<Arc<Cluster>>,
    /// Connections served at once.
    pub connections: usize,
}

/// Serves requests on `listener` until shutdown.
pub(crate) async fn serve(listener: TcpListener, endpoint: Endpoint, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(endpoint.connections.max(1)));
    loop {
        // A slot before the accept: past the cap, clients wait in the backlog.
        let slot = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let (stream, _) = tokio::select! {
            _ = stopped(&mut shutdown) => return,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let endpoint = Arc::new(endpoint.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(respond(&endpoint, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // The command wait is inside this bound, so a slow client is cut off, not a command.
            match tokio::time::timeout(COMMAND_WAIT + HEAD_TIMEOUT, connection).await {
                Ok(Err(e)) => debug!(error = %e, "HTTP connection ended with an error"),
                Err(_) => debug!("HTTP connection cut off at its time limit"),
                Ok(Ok(())) => {}
            }
        });
    }
}

/// One request's answer.
async fn respond(endpoint: &Endpoint, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (status, content_type, body) = route(endpoint, request).await;
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn route(endpoint: &Endpoint, request: hyper::Request<Incoming>) -> Response {
    let (parts, body) = request.into_parts();
    let head = Request {
        path: parts.uri.path().as_bytes(),
        query: parts.uri.query().unwrap_or("").as_bytes(),
        authorization: parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes),
    };
    let devices = head.path.starts_with(b"/devices/");
    match (&parts.method, head.path) {
        (&Method::GET, b"/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            endpoint.metrics.render(gauges(&endpoint.registry)),
        ),
        (&Method::GET, b"/healthz") => text(StatusCode::OK, "ok"),
        (&Method::POST, _) if devices => {
            let framed = parts.headers.contains_key(CONTENT_LENGTH) || parts.headers.contains_key(TRANSFER_ENCODING);
            match command_body(framed, body).await {
                Ok(body) => command(endpoint, &head, &body).await,
                Err(response) => response,
            }
        }
        (&Method::GET, _) if devices => device_status(endpoint, &head).await,
        (&Method::GET, _) => text(StatusCode::NOT_FOUND, "try /metrics"),
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics, /healthz, /devices/<protocol>/<id>; POST /devices/<protocol>/<id>/commands",
        ),
    }
}

/// A command request's body, whole, or why not: no length given (`411`), more than
/// [`MAX_COMMAND_BODY`] (`413`), cut short (`400`).
async fn command_body(framed: bool, body: Incoming) -> Result<Vec<u8>, Response> {
    if !framed {
        return Err(text(StatusCode::LENGTH_REQUIRED, "a command needs a Content-Length"));
    }
    match Limited::new(body, MAX_COMMAND_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, format!("a command is at most {MAX_COMMAND_BODY} bytes")))
        }
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "the body ended before its length")),
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, "application/json", format!("{body}\n"))
}

/// A response: status, content type, body.
type Response = (StatusCode, &'static str, String);

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (status, "text/plain; charset=utf-8", body)
}

/// The parts of a request the routes read.
struct Request<'a> {
    path: &'a [u8],
    /// What follows `?` in the target, if anything.
    query: &'a [u8],
    authorization: Option<&'a [u8]>,
}

/// The token check of the `/devices/` endpoints: `None` when the request may go on.
fn refused(endpoint: &Endpoint, request: &Request<'_>) -> Option<Response> {
    let Some(token) = &endpoint.commands else {
        return Some(text(StatusCode::NOT_FOUND, "commands are off (no commands token is configured)"));
    };
    let presented = request.authorization.and_then(|a| a.strip_prefix(b"Bearer ")).unwrap_or_default();
    if !token.matches(presented.trim_ascii()) {
        return Some(text(StatusCode::UNAUTHORIZED, "this needs 'Authorization: Bearer <the commands token>'"));
    }
    None
}

/// The protocol and device id of `/devices/<protocol>/<device id><suffix>`, or the answer
/// for a path that is not one (`usage` says what is).
fn device_path<'a>(path: &'a [u8], suffix: &str, usage: &'static str) -> Result<(Protocol, &'a str), Response> {
    let not_found = || text(StatusCode::NOT_FOUND, usage);
    let path = std::str::from_utf8(path).map_err(|_| not_found())?;
    let target = path.strip_prefix("/devices/").and_then(|t| t.strip_suffix(suffix)).ok_or_else(not_found)?;
    let (protocol, device_id) =
        target.split_once('/').filter(|(_, id)| !id.is_empty() && !id.contains('/')).ok_or_else(not_found)?;
    let protocol = protocol.parse().map_err(|e: String| text(StatusCode::BAD_REQUEST, e))?;
    Ok((protocol, device_id))
}

/// `GET /devices/<protocol>/<device id>`: whether the device is connected (and how), and
/// the commands held for it. Behind the commands token: which devices are online is
/// personal data.
async fn device_status(endpoint: &Endpoint, request: &Request<'_>) -> Response {
    if let Some(response) = refused(endpoint, request) {
        return response;
    }
    let (protocol, device_id) = match device_path(request.path, "", "GET /devices/<protocol>/<device id>") {
        Ok(target) => target,
        Err(response) => return response,
    };
    let status = endpoint.registry.status(protocol, device_id);
    let Some(cluster) = &endpoint.cluster else {
        let body = match status.connected {
            Some(transport) => {
                serde_json::json!({"connected": true, "transport": transport, "held_commands": status.held})
            }
            None => serde_json::json!({"connected": false, "held_commands": status.held}),
        };
        return json(StatusCode::OK, &body);
    };
    // In a cluster: where in the cluster, and what the cluster holds for it besides.
    let held = status.held + cluster.held(protocol, device_id).await;
    let here = status.connected.map(|t| (cluster.node().to_owned(), t.to_owned()));
    let body = match here.or(cluster.whereabouts(protocol, device_id).await) {
        Some((node, transport)) => {
            serde_json::json!({"connected": true, "transport": transport, "node": node, "held_commands": held})
        }
        None => serde_json::json!({"connected": false, "held_commands": held}),
    };
    json(StatusCode::OK, &body)
}

/// `POST /devices/<protocol>/<device id>/commands`.
async fn command(endpoint: &Endpoint, request: &Request<'_>, body: &[u8]) -> Response {
    if let Some(response) = refused(endpoint, request) {
        return response;
    }
    let usage = "POST /devices/<protocol>/<device id>/commands";
    let (protocol, device_id) = match device_path(request.path, "/commands", usage) {
        Ok(target) => target,
        Err(response) => return response,
    };
    let command = match command::parse(protocol, body) {
        Ok(command) => command,
        Err(reply) => return reply.into(),
    };
    let hold = match hold_of(request.query) {
        Ok(hold) => hold,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    // No device id or command text at info level: both are personal data or secrets
    // (commands carry device passwords).
    info!(%protocol, held = hold.is_some(), "command requested over HTTP");
    let reply = match &endpoint.cluster {
        // In a cluster, a device this node does not hold may be on another node.
        Some(cluster) if !endpoint.registry.holds(protocol, device_id) => {
            cluster.route(protocol, device_id, body, &command, hold).await
        }
        _ => command::send(&endpoint.registry, protocol, device_id, command, hold).await,
    };
    reply.into()
}

impl From<Reply> for Response {
    fn from(reply: Reply) -> Response {
        let status = StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = if reply.is_json() { "application/json" } else { "text/plain; charset=utf-8" };
        (status, content_type, reply.body)
    }
}

/// `hold=<seconds>` from the query: how long to hold the command for a device that is not
/// connected. Absent: not held (`404` when not connected).
fn hold_of(query: &[u8]) -> Result<Option<Duration>, String> {
    let query = std::str::from_utf8(query).map_err(|_| "the query is not UTF-8".to_owned())?;
    let mut hold = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("hold", seconds)) => {
                let max = crate::registry::MAX_HOLD.as_secs();
                match seconds.parse::<u64>() {
                    Ok(s) if (1..=max).contains(&s) => hold = Some(Duration::from_secs(s)),
                    _ => return Err(format!("hold is a whole number of seconds from 1 to {max}")),
                }
            }
            _ => return Err(format!("unknown query parameter {pair:?} (commands take hold=<seconds>)")),
        }
    }
    Ok(hold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths_name_a_protocol_and_one_device() {
        fn status(path: &'static str, suffix: &str) -> Result<(Protocol, &'static str), StatusCode> {
            device_path(path.as_bytes(), suffix, "usage").map_err(|r| r.0)
        }
        assert_eq!(status("/devices/gt06/123/commands", "/commands"), Ok((Protocol::Gt06, "123")));
        assert_eq!(status("/devices/jt808/14130567872", ""), Ok((Protocol::Jt808, "14130567872")));
        for (path, suffix) in [
            ("/devices/gt06/123/commands", ""),
            ("/devices/gt06/", ""),
            ("/devices/gt06/123", "/commands"),
            ("/devices/gt06//commands", "/commands"),
            ("/device/gt06/123", ""),
        ] {
            assert_eq!(status(path, suffix), Err(StatusCode::NOT_FOUND), "{path}");
        }
        assert_eq!(status("/devices/traccar/1", ""), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn tokens_are_compared_whole() {
        let token = CommandsToken::new("0123456789abcdef").unwrap();
        assert!(token.matches(b"0123456789abcdef"));
        for wrong in [&b""[..], b"0123456789abcde", b"0123456789abcdeF", b"0123456789abcdef0"] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(CommandsToken::new("short").is_err());
        assert!(CommandsToken::new("0123456789 abcdef").is_err());
        assert_eq!(format!("{token:?}"), "CommandsToken(..)");
    }
}
