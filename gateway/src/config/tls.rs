//! A device listener's TLS settings (`tls_cert`, `tls_key`, `tls_client_ca`,
//! `tls_handshake_timeout`): paths and a timeout only. The files are read when the listener
//! binds (`crate::server`), so a bad certificate stops the start with its path named.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a device has to finish its TLS handshake unless the listener says.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS on one listener: its TCP connections are TLS only (there is no DTLS for UDP, so a
/// TLS listener binds no UDP socket). A plain listener beside it takes devices without TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, every device must present a certificate issued by one of these CAs (PEM).
    pub client_ca: Option<PathBuf>,
    /// A connection that has not finished its handshake by then is closed.
    pub handshake_timeout: Duration,
}

/// The TLS paths of a listener in the config file.
pub(super) struct TlsFiles {
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// `tls_cert` and `tls_key` come together; the other TLS options need them. Relative
    /// paths are relative to `base` (the config file's folder).
    pub(super) fn resolve(
        self,
        listener: &str,
        handshake_timeout: Option<Duration>,
        base: &Path,
    ) -> Result<Option<TlsConfig>, String> {
        let (cert, key) = match (self.cert, self.key) {
            (Some(cert), Some(key)) => (base.join(cert), base.join(key)),
            (None, None) if self.client_ca.is_none() && handshake_timeout.is_none() => return Ok(None),
            (None, None) => {
                return Err(format!("{listener}: tls_client_ca and tls_handshake_timeout need tls_cert and tls_key"))
            }
            _ => return Err(format!("{listener}: tls_cert and tls_key go together")),
        };
        let handshake_timeout = handshake_timeout.unwrap_or(TLS_HANDSHAKE_TIMEOUT);
        Ok(Some(TlsConfig { cert, key, client_ca: self.client_ca.map(|p| base.join(p)), handshake_timeout }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;

    /// A plain and a TLS listener for one protocol side by side; TLS paths relative to the file.
    #[test]
    fn tls_listeners() {
        let text = r#"
            [[listen]]
            protocol = "gt06"
            addr = "127.0.0.1:5023"
            [[listen]]
            protocol = "gt06"
            addr = "127.0.0.1:5024"
            tls_cert = "tls/gateway.pem"
            tls_key = "/etc/trackgate/gateway.key"
            [[listen]]
            protocol = "teltonika"
            tls_cert = "c.pem"
            tls_key = "k.pem"
            tls_client_ca = "devices-ca.pem"
            tls_handshake_timeout = "3s"
        "#;
        let c = ServeConfig::from_toml(text, Path::new("/srv")).unwrap();
        assert_eq!(c.listeners[0].tls, None);
        let tls = c.listeners[1].tls.clone().unwrap();
        assert_eq!((tls.cert, tls.key), ("/srv/tls/gateway.pem".into(), "/etc/trackgate/gateway.key".into()));
        assert_eq!((tls.client_ca, tls.handshake_timeout), (None, TLS_HANDSHAKE_TIMEOUT));
        let tls = c.listeners[2].tls.clone().unwrap();
        assert_eq!(tls.client_ca, Some("/srv/devices-ca.pem".into()));
        assert_eq!(tls.handshake_timeout, Duration::from_secs(3));
    }
}
