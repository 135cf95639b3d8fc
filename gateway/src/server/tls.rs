//! TLS on a device listener: the server's certificate and key, and when the listener names
//! a client CA, the devices' certificates checked against it (rustls, ring provider). Loaded
//! once when the listener binds; the handshake runs in the connection's own task, bounded.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::warn;

use crate::config::TlsConfig;
use crate::session::CloseReason;

/// A TLS listener's acceptor and how long a handshake may take.
#[derive(Clone)]
pub(super) struct DeviceTls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for DeviceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTls").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

/// Why a handshake did not make a TLS connection.
#[derive(Debug)]
pub(super) enum HandshakeFailed {
    TimedOut,
    Refused(io::Error),
    /// The gateway began its shutdown first.
    Shutdown,
}

impl HandshakeFailed {
    pub(super) fn reason(&self) -> CloseReason {
        match self {
            HandshakeFailed::Shutdown => CloseReason::Shutdown,
            _ => CloseReason::TlsHandshake,
        }
    }
}

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailed::TimedOut => f.write_str("the handshake did not finish in time"),
            HandshakeFailed::Refused(e) => write!(f, "handshake failed: {e}"),
            HandshakeFailed::Shutdown => f.write_str("shutting down during the handshake"),
        }
    }
}

impl DeviceTls {
    /// Reads the listener's certificate, key and client CA; an error names the file.
    pub(super) fn load(config: &TlsConfig) -> io::Result<DeviceTls> {
        // ring, as everywhere else in the gateway (async-nats, the message ids): rustls
        // deprecates this provider only because it lacks post-quantum key exchange.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = match &config.client_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates(path)? {
                    roots.add(ca).map_err(|e| bad_file(path, e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| bad_file(path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        warn_if_readable_by_others(&config.key);
        let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| bad_file(&config.key, e))?;
        let server =
            builder.with_single_cert(certificates(&config.cert)?, key).map_err(|e| bad_file(&config.cert, e))?;
        Ok(DeviceTls { acceptor: TlsAcceptor::from(Arc::new(server)), handshake_timeout: config.handshake_timeout })
    }

    /// The device's handshake, within the listener's timeout.
    pub(super) async fn accept(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeFailed> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(HandshakeFailed::Refused(e)),
            Err(_) => Err(HandshakeFailed::TimedOut),
        }
    }
}

/// Every certificate of a PEM file; none is an error.
fn certificates(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad_file(path, e))?;
    if certs.is_empty() {
        return Err(bad_file(path, "no certificate in it"));
    }
    Ok(certs)
}

fn bad_file(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("TLS file {}: {e}", path.display()))
}

/// A private key others can read is a key others may have: said at start, not refused (the
/// operator may have reasons, such as a group that only the gateway's user is in).
fn warn_if_readable_by_others(key: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(key) {
            if meta.permissions().mode() & 0o007 != 0 {
                warn!(key = %key.display(), "the TLS key file can be read by every user of this machine");
            }
        }
    }
}
