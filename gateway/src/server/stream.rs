//! A device connection's byte stream: plain TCP or TLS over it. Plain TCP is read by
//! readiness, so an idle connection holds no read buffer; TLS is read by an asynchronous
//! read (rustls may hold decrypted bytes the socket no longer signals), so a TLS connection
//! keeps its read buffer while it waits.

use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A device's stream.
pub(super) enum DeviceStream {
    Plain(TcpStream),
    /// Boxed: rustls's state is a kilobyte, which would otherwise make every plain
    /// connection that large too.
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for DeviceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceStream::Plain(_) => "DeviceStream::Plain",
            DeviceStream::Tls(_) => "DeviceStream::Tls",
        })
    }
}

impl DeviceStream {
    /// Waits for the device. Plain: until the socket is readable, reading nothing (`None`:
    /// [`DeviceStream::read_drained`] reads). TLS: reads what arrived into `buf`
    /// (`Some(n)`, 0 at the end of the stream). Cancel-safe: a wait given up reads nothing.
    pub(super) async fn arrived(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>> {
        match self {
            DeviceStream::Plain(tcp) => tcp.readable().await.map(|()| None),
            DeviceStream::Tls(tls) => {
                // Room for a read, but not a new reservation per wait: a partial frame held
                // across waits would double its buffer each time before any byte came.
                if buf.capacity() - buf.len() < reserve / 4 {
                    buf.reserve(reserve);
                }
                match tls.read_buf(buf).await {
                    Ok(n) => Ok(Some(n)),
                    // Most devices close the socket without a close_notify; their bytes
                    // were all read, so that is the stream's end, not an error.
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Plain: reads what the socket holds into `buf`'s spare capacity (see `read_drained`).
    /// TLS reads in [`DeviceStream::arrived`]; here it finds nothing (`WouldBlock`).
    pub(super) fn read_drained(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            DeviceStream::Plain(tcp) => read_drained(tcp, buf),
            DeviceStream::Tls(_) => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// At shutdown: what the device had already sent, read without waiting (see
    /// `read_held`). `WouldBlock` when there is nothing.
    pub(super) fn read_held(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            DeviceStream::Plain(tcp) => read_held(tcp, buf),
            DeviceStream::Tls(tls) => read_held_tls(tls, buf),
        }
    }

    /// Writes all of `bytes`, through TLS's buffer to the socket.
    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            DeviceStream::Plain(tcp) => tcp.write_all(bytes).await,
            DeviceStream::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
        }
    }

    /// Ends the stream from our side (for TLS, a close_notify first).
    pub(super) async fn shutdown(&mut self) {
        let _ = match self {
            DeviceStream::Plain(tcp) => tcp.shutdown().await,
            DeviceStream::Tls(tls) => tls.shutdown().await,
        };
    }
}

/// Reads what the socket holds into `buf`'s spare capacity. A read that leaves room
/// unfilled has drained the socket (epoll(7): for stream sockets, a short read means the
/// input is exhausted), so the stream's readiness is cleared then and there. Otherwise the
/// next wait would return at once and cost a read that finds nothing: a system call per
/// frame for devices that send one frame at a time. Readiness that arrives after the read
/// is not lost: tokio clears only the readiness this read observed.
pub(super) fn read_drained(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read_buf(buf)?;
        got = Some(n);
        if n > 0 && n < room {
            // Not an error: the way to tell tokio the socket is drained.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match (result, got) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// One read of what the socket already holds, straight from the socket and never waiting:
/// for the shutdown, when tokio may not yet have seen the socket become readable (its
/// readiness arrives with the next poll of the driver), so `read_drained` could find
/// nothing where there are bytes. `WouldBlock` when the socket holds nothing.
fn read_held(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let socket = socket2::SockRef::from(stream);
    read_into(buf, |room| read_retrying(&mut &*socket, room))
}

/// `read_held` through TLS: what rustls has already decrypted, else the socket's bytes
/// handed to rustls and decrypted, straight from the socket as `read_held` reads.
fn read_held_tls(tls: &mut TlsStream<TcpStream>, buf: &mut BytesMut) -> io::Result<usize> {
    let (tcp, conn) = tls.get_mut();
    match read_into(buf, |room| read_retrying(&mut conn.reader(), room)) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        read => return read,
    }
    let socket = socket2::SockRef::from(&*tcp);
    if conn.read_tls(&mut &*socket)? == 0 {
        return Ok(0);
    }
    conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    read_into(buf, |room| read_retrying(&mut conn.reader(), room))
}

fn read_retrying(from: &mut impl io::Read, room: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(room) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Runs `read` on `buf`'s spare capacity and keeps what it read.
fn read_into(buf: &mut BytesMut, read: impl FnOnce(&mut [u8]) -> io::Result<usize>) -> io::Result<usize> {
    let len = buf.len();
    buf.resize(buf.capacity(), 0);
    let result = read(&mut buf[len..]);
    buf.truncate(len + *result.as_ref().unwrap_or(&0));
    result
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::net::TcpListener;

    use super::*;

    /// A TLS pair over loopback: the gateway's side and the device's.
    async fn tls_pair() -> (TlsStream<TcpStream>, tokio_rustls::client::TlsStream<TcpStream>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
        #[allow(deprecated)] // ring, as the gateway uses (see server/tls.rs).
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let connecting = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp);
        let accepting = async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(tcp).await.unwrap()
        };
        let (device, gateway) = tokio::join!(connecting, accepting);
        (gateway, device.unwrap())
    }

    /// At shutdown a TLS connection reads what its device had sent, decrypted, without
    /// waiting for the runtime to see the socket readable; then the device's end.
    #[test]
    fn a_held_tls_read_takes_what_arrived_without_waiting() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (gateway, mut device) = tls_pair().await;
            let mut stream = DeviceStream::Tls(Box::new(gateway));
            let mut buf = BytesMut::with_capacity(4096);
            assert_eq!(stream.read_held(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
            let sentence = b"$GPRMC,120000,A,5000.0000,N,01400.0000,E,0.0,0.0,061226,,*00\r\n";
            device.write_all(sentence).await.unwrap();
            device.flush().await.unwrap();
            // The bytes are in the gateway's socket once the kernel has them; no poll since.
            std::thread::sleep(Duration::from_millis(100));
            let n = stream.read_held(&mut buf).unwrap();
            assert_eq!(&buf[..n], sentence);
            device.shutdown().await.unwrap();
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(stream.read_held(&mut buf).unwrap(), 0, "the device's close_notify is the end");
        });
    }
}
