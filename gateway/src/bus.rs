//! The connection to NATS that the JetStream sink and the cluster plane make: servers,
//! TLS and credentials from a [`NatsServers`], secrets from the environment.
//!
//! Both run their NATS client on a runtime of their own ([`runtime`]): the client keeps
//! its connection alive (pings, reconnects) in a background task, which must go on running
//! while the sink thread waits or the shards are busy.

use std::io;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tracing::{info, warn};

use crate::config::nats::{CREDS_VAR, PASSWORD_VAR, TOKEN_VAR};
use crate::config::NatsServers;

/// How long one attempt to reach a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A one-worker runtime for a NATS client, on a thread named `name`.
pub(crate) fn runtime(name: &str) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build()
}

/// Connects to one of `servers` now: an unreachable server or a refused login is an error
/// here, at start, not a silent retry. Once connected, the client reconnects by itself for
/// as long as it lives (its users decide how long they wait for it).
pub(crate) async fn connect(servers: &NatsServers, name: &str) -> io::Result<Client> {
    let role = name.to_owned();
    let options = options(servers)
        .await?
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .event_callback(move |event| log_event(role.clone(), event));
    options.connect(servers.urls()).await.map_err(|e| {
        io::Error::new(io::ErrorKind::ConnectionRefused, format!("cannot connect to NATS at {servers}: {e}"))
    })
}

/// The client's view of its connection, for the operator: losing NATS is worth a warning
/// (nothing is acknowledged meanwhile), its return an info line.
async fn log_event(role: String, event: Event) {
    match event {
        Event::Disconnected => warn!(client = %role, "NATS connection lost; reconnecting"),
        Event::Connected => info!(client = %role, "NATS connection (re)established"),
        Event::Closed => info!(client = %role, "NATS connection closed"),
        other => warn!(client = %role, event = %other, "NATS"),
    }
}

/// Credentials and TLS: a `.creds` file, else a user with [`PASSWORD_VAR`], else a token
/// from [`TOKEN_VAR`], else none.
async fn options(servers: &NatsServers) -> io::Result<ConnectOptions> {
    let secret = servers.secret.clone();
    let creds = servers.creds.clone().or_else(|| std::env::var_os(CREDS_VAR).map(Into::into));
    let mut options = match (&creds, &servers.user) {
        (Some(path), _) => ConnectOptions::with_credentials_file(path).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read the NATS credentials {}: {e}", path.display()))
        })?,
        (None, Some(user)) => {
            let password = secret.or_else(|| std::env::var(PASSWORD_VAR).ok()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("a NATS user needs {PASSWORD_VAR} set"))
            })?;
            ConnectOptions::with_user_and_password(user.clone(), password)
        }
        (None, None) => match secret.or_else(|| std::env::var(TOKEN_VAR).ok()) {
            Some(token) => ConnectOptions::with_token(token),
            None => ConnectOptions::new(),
        },
    };
    if servers.tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &servers.ca {
        options = options.add_root_certificates(ca.clone());
    }
    Ok(options)
}
