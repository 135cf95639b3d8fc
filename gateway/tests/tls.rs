//! TLS on device ports over real loopback sockets, with a device built on rustls: a TLS
//! listener beside a plain one for the same protocol (records, acks and commands through
//! TLS), devices' certificates checked against the listener's client CA (none, another CA's,
//! expired: refused), a gateway certificate a device will not take, a handshake that never
//! comes, and certificate files that are not what they should be.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use trackgate::codecs::gt06;

mod support;
use support::certs::{Ca, Issued, Use};
use support::frames::{gt06_heartbeat, gt06_login, read_command_from};
use support::gateway::{closed_within, http, read_ack, temp_path, Gateway};

const TOKEN: &str = "tls-test-0123456789abcdef";

type TlsDevice = StreamOwned<ClientConnection, TcpStream>;

/// A device's TLS settings: the CA it trusts, and its own certificate if it has one.
fn device_config(trusts: &Ca, identity: Option<&Issued>) -> Arc<ClientConfig> {
    #[allow(deprecated)] // ring, as the gateway uses (see server/tls.rs).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(trusts.pem.as_bytes()).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some(id) => {
            let chain = vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()];
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// A TLS connection to `addr` with its handshake done as far as the device can tell (with
/// TLS 1.3 the gateway's verdict on a device's certificate comes with its first read).
fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<TlsDevice, std::io::Error> {
    let mut tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut conn = ClientConnection::new(config, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// The 10-byte GT06 ack a frame gets, or `None` when the connection ends or stays silent.
fn exchange(device: &mut TlsDevice, frame: &[u8]) -> Option<Vec<u8>> {
    device.write_all(frame).ok()?;
    let mut ack = vec![0u8; 10];
    device.read_exact(&mut ack).ok().map(|()| ack)
}

/// A directory with the gateway's certificate (from `ca`) and token, and `listeners` as the
/// config's `[[listen]]` tables.
fn setup(name: &str, ca: &Ca, listeners: &str) -> PathBuf {
    let dir = temp_path(name);
    std::fs::create_dir_all(&dir).unwrap();
    ca.issue("gateway", Use::Server).write(&dir, "gateway");
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = format!("commands_token_file = \"token\"\nmetrics = \"127.0.0.1:0\"\n{listeners}");
    std::fs::write(dir.join("trackgate.toml"), config).unwrap();
    dir
}

fn start(dir: &Path, lines: usize) -> Gateway {
    let sink = format!("jsonl:{}", dir.join("records.jsonl").display());
    Gateway::start_config(&dir.join("trackgate.toml"), &["--sink", &sink], lines).expect("the gateway starts")
}

/// The devices a metric line names the closes of, for one close reason.
fn closes(endpoint: SocketAddr, reason: &str) -> String {
    let (_, metrics) = http(endpoint, "GET", "/metrics", None, "");
    let wanted =
        format!("trackgate_connections_closed_total{{protocol=\"gt06\",transport=\"tcp\",reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&wanted)).unwrap_or("0").to_owned()
}

fn partial_bytes(endpoint: SocketAddr) -> u64 {
    let (_, metrics) = http(endpoint, "GET", "/metrics", None, "");
    metrics.lines().find_map(|l| l.strip_prefix("trackgate_partial_frame_bytes ")).unwrap().parse().unwrap()
}

/// Records of `protocol` the sink has accepted, over every transport.
fn records_stored(endpoint: SocketAddr, protocol: &str) -> u64 {
    let (_, metrics) = http(endpoint, "GET", "/metrics", None, "");
    let wanted = format!("trackgate_records_total{{protocol=\"{protocol}\",");
    let values = metrics.lines().filter(|l| l.starts_with(&wanted)).filter_map(|l| l.rsplit(' ').next());
    values.filter_map(|v| v.parse::<u64>().ok()).sum()
}

/// Waits up to 10 s for `done`.
fn wait_for(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

const PLAIN_AND_TLS: &str = r#"
[[listen]]
protocol = "gt06"
addr = "127.0.0.1:0"
[[listen]]
protocol = "gt06"
addr = "127.0.0.1:0"
tls_cert = "gateway.pem"
tls_key = "gateway.key"
"#;

/// An NMEA sentence with its checksum.
fn nmea(body: &str) -> String {
    let sum = body.bytes().fold(0u8, |x, b| x ^ b);
    format!("${body}*{sum:02X}\r\n")
}

/// A device over TLS beside one over plain TCP: both acked, both stored, a command reaches
/// the TLS device through TLS; plain bytes sent to the TLS port get nothing. An NMEA
/// listener with TLS binds no UDP socket (there is no DTLS) and reads its sentences.
#[test]
fn a_tls_listener_beside_a_plain_one() {
    let ca = Ca::new("fleet-ca");
    let nmea_tls = "[[listen]]\nprotocol = \"nmea\"\naddr = \"127.0.0.1:0\"\ntls_cert = \"gateway.pem\"\ntls_key = \"gateway.key\"\n";
    let dir = setup("tls-beside-plain", &ca, &format!("{PLAIN_AND_TLS}{nmea_tls}"));
    // A UDP socket for the NMEA listener would print its line before the endpoint's.
    let gw = start(&dir, 4);
    let (plain, tls, endpoint) = (gw.addrs["gt06 tcp"], gw.addrs["gt06 tls"], gw.addrs["metrics http"]);

    let mut device = connect(tls, device_config(&ca, None)).unwrap();
    assert_eq!(exchange(&mut device, &gt06_login("358000000000101", 1)), Some(gt06::ack(false, 0x01, 1)));
    assert_eq!(exchange(&mut device, &gt06_heartbeat(2)), Some(gt06::ack(false, 0x13, 2)));
    let path = "/devices/gt06/358000000000101/commands";
    let (code, body) = http(endpoint, "POST", path, Some(TOKEN), "RELAY,1#");
    assert_eq!(code, 200, "{body}");
    let command = read_command_from(&mut device).expect("the command came through TLS");
    assert!(command.windows(8).any(|w| w == b"RELAY,1#"), "{command:02x?}");
    // A frame sent in two parts: the first holds one read buffer, not more, until the rest.
    let heartbeat = gt06_heartbeat(3);
    device.write_all(&heartbeat[..4]).unwrap();
    device.flush().unwrap();
    wait_for(|| partial_bytes(endpoint) != 0);
    assert_eq!(partial_bytes(endpoint), 4096);
    assert_eq!(exchange(&mut device, &heartbeat[4..]), Some(gt06::ack(false, 0x13, 3)));
    assert_eq!(partial_bytes(endpoint), 0);

    let mut plain_device = TcpStream::connect(plain).unwrap();
    plain_device.write_all(&gt06_login("358000000000102", 1)).unwrap();
    assert_eq!(read_ack(&mut plain_device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));

    let mut wrong_port = TcpStream::connect(tls).unwrap();
    wrong_port.write_all(&gt06_login("358000000000103", 1)).unwrap();
    assert!(closed_within(&mut wrong_port, Duration::from_secs(20)), "plain bytes on the TLS port end the connection");
    assert_eq!(closes(endpoint, "tls_handshake"), "1");

    let mut receiver = connect(gw.addrs["nmea tls"], device_config(&ca, None)).unwrap();
    let sentence = nmea("GPRMC,120000.00,A,5000.0000,N,01400.0000,E,0.0,0.0,061226,,,A");
    receiver.write_all(sentence.as_bytes()).unwrap();
    receiver.flush().unwrap();
    // NMEA is not acknowledged: wait until the sentence is stored, or a stop right after
    // the write may come before the gateway has read it (seen on a loaded machine).
    wait_for(|| records_stored(endpoint, "nmea") == 1);

    assert_eq!(gw.stop(), Some(0));
    let records = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    for (imei, count) in [("358000000000101", 3), ("358000000000102", 1), ("358000000000103", 0)] {
        assert_eq!(records.matches(&format!("\"device_id\":\"{imei}\"")).count(), count, "{imei}: {records}");
    }
    assert!(records.contains("\"protocol\":\"nmea\"") && records.contains("\"latitude\":50.0"), "{records}");
}

/// With a client CA, a device must show a certificate it issued and that is in date:
/// none, another CA's and an expired one are all refused, before any frame is read.
#[test]
fn devices_must_show_a_certificate_from_the_client_ca() {
    let (ca, devices_ca, other_ca) = (Ca::new("fleet-ca"), Ca::new("devices-ca"), Ca::new("someone-else"));
    let listener = "[[listen]]\nprotocol = \"gt06\"\naddr = \"127.0.0.1:0\"\ntls_cert = \"gateway.pem\"\n\
                    tls_key = \"gateway.key\"\ntls_client_ca = \"devices-ca.pem\"\n";
    let dir = setup("tls-client-ca", &ca, listener);
    std::fs::write(dir.join("devices-ca.pem"), &devices_ca.pem).unwrap();
    let gw = start(&dir, 2);
    let (tls, endpoint) = (gw.addrs["gt06 tls"], gw.addrs["metrics http"]);

    let good = devices_ca.issue("tracker-201", Use::Device);
    let mut device = connect(tls, device_config(&ca, Some(&good))).unwrap();
    assert_eq!(exchange(&mut device, &gt06_login("358000000000201", 1)), Some(gt06::ack(false, 0x01, 1)));

    let others = other_ca.issue("tracker-202", Use::Device);
    let expired = devices_ca.issue_until("tracker-203", Use::Device, (2021, 1, 1));
    for (imei, identity) in
        [("358000000000202", Some(&others)), ("358000000000203", Some(&expired)), ("358000000000204", None)]
    {
        let refused = match connect(tls, device_config(&ca, identity)) {
            Ok(mut d) => exchange(&mut d, &gt06_login(imei, 1)).is_none(),
            Err(_) => true,
        };
        assert!(refused, "{imei} was taken");
    }
    wait_for(|| closes(endpoint, "tls_handshake") == "3");
    assert_eq!(closes(endpoint, "tls_handshake"), "3");
    assert_eq!(gw.stop(), Some(0));
    let records = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 1, "{records}");
}

/// A gateway whose certificate has expired is refused by a device that checks it.
#[test]
fn a_device_refuses_an_expired_gateway_certificate() {
    let ca = Ca::new("fleet-ca");
    let dir = setup("tls-expired", &ca, PLAIN_AND_TLS);
    ca.issue_until("gateway", Use::Server, (2021, 1, 1)).write(&dir, "gateway");
    let gw = start(&dir, 3);
    let e = connect(gw.addrs["gt06 tls"], device_config(&ca, None)).expect_err("an expired certificate is refused");
    assert!(e.to_string().contains("expired"), "{e}");
}

/// A connection that opens and never says hello is closed at the handshake timeout.
#[test]
fn a_connection_with_no_handshake_is_closed_in_time() {
    let ca = Ca::new("fleet-ca");
    let listener = "[[listen]]\nprotocol = \"gt06\"\naddr = \"127.0.0.1:0\"\ntls_cert = \"gateway.pem\"\n\
                    tls_key = \"gateway.key\"\ntls_handshake_timeout = \"1s\"\n";
    let dir = setup("tls-silent", &ca, listener);
    let gw = start(&dir, 2);
    let mut silent = TcpStream::connect(gw.addrs["gt06 tls"]).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(30)), "the silent connection was left open");
    assert_eq!(closes(gw.addrs["metrics http"], "tls_handshake"), "1");
}

/// Certificate files that cannot be used stop the start, naming the file.
#[test]
fn unusable_certificate_files_stop_the_start() {
    let ca = Ca::new("fleet-ca");
    let dir = setup("tls-bad-files", &ca, PLAIN_AND_TLS);
    std::fs::write(dir.join("gateway.pem"), "not a certificate\n").unwrap();
    let (code, said) = start_failing(&dir);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("gateway.pem") && said.contains("no certificate"), "{said}");

    // A key that is not the certificate's.
    ca.issue("gateway", Use::Server).write(&dir, "gateway");
    std::fs::write(dir.join("gateway.key"), ca.issue("another", Use::Server).key).unwrap();
    let (code, said) = start_failing(&dir);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("gateway.pem"), "{said}");
}

fn start_failing(dir: &Path) -> (Option<i32>, String) {
    match Gateway::start_config(&dir.join("trackgate.toml"), &[], 3) {
        Ok(_) => panic!("the gateway started"),
        Err(e) => e,
    }
}

/// An `auto` listener with TLS: the protocol is told from the first bytes inside TLS, a GT06
/// device and an NMEA device are each served on the one port, frames split included, and
/// the listener binds no UDP socket.
#[test]
fn an_auto_listener_with_tls() {
    let ca = Ca::new("fleet-ca");
    let auto_tls =
        "[[listen]]\nprotocol = \"auto\"\naddr = \"127.0.0.1:0\"\ntls_cert = \"gateway.pem\"\ntls_key = \"gateway.key\"\n";
    let dir = setup("tls-auto", &ca, auto_tls);
    let gw = start(&dir, 2);
    let (port, endpoint) = (gw.addrs["auto tls"], gw.addrs["metrics http"]);
    assert!(!gw.addrs.contains_key("auto udp"));

    let mut gt06_device = connect(port, device_config(&ca, None)).unwrap();
    let login = gt06_login("358000000000201", 1);
    gt06_device.write_all(&login[..1]).unwrap();
    gt06_device.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(exchange(&mut gt06_device, &login[1..]), Some(gt06::ack(false, 0x01, 1)));
    assert_eq!(exchange(&mut gt06_device, &gt06_heartbeat(2)), Some(gt06::ack(false, 0x13, 2)));

    let mut nmea_device = connect(port, device_config(&ca, None)).unwrap();
    nmea_device.write_all(b"IMEI:359853000144328\r\n").unwrap();
    nmea_device.write_all(nmea("GPHDT,274.07,T").as_bytes()).unwrap();
    nmea_device.flush().unwrap();
    let nmea_records = "trackgate_records_total{protocol=\"nmea\",transport=\"tcp\"} ";
    wait_for(|| {
        let (_, m) = http(endpoint, "GET", "/metrics", None, "");
        m.lines().any(|l| l == format!("{nmea_records}2"))
    });
    drop(nmea_device);
    assert_eq!(gw.stop(), Some(0));
    let records = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    let protocols: Vec<String> = records
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["protocol"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(protocols, ["gt06", "gt06", "nmea", "nmea"]);
}
