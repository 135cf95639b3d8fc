//! One port for every protocol (`--listen auto=ADDR`): each connection's protocol is told
//! from its first bytes and each datagram's from its own, then served as on the protocol's
//! own port. Devices of all four protocols at once, frames split byte by byte, junk, and
//! the metrics by detected protocol.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use trackgate::codecs::{gt06, Protocol};
use trackgate::protocol::Transport;
use trackgate::tools::sim::{self, SimConfig};

mod support;
use support::frames::{gt06_frame, gt06_login, jt808_wire};
use support::gateway::{closed_within, http, read_ack, temp_path, Gateway};
use support::unhex;

fn metric(endpoint: SocketAddr, series: &str) -> u64 {
    let (_, text) = http(endpoint, "GET", "/metrics", None, "");
    text.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Waits (up to 20 s) until `series` reads at least `want`; its last value.
fn wait_metric(endpoint: SocketAddr, series: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(endpoint, series);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A gauge once it has settled at `want` (or its value at the deadline): a gauge may pass
/// through other values on the way, such as the held bytes over the budget between a new
/// opening being counted and the oldest being shed.
fn settled_metric(endpoint: SocketAddr, series: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = metric(endpoint, series);
        if v == want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn labels(protocol: &str, transport: &str) -> String {
    format!("{{protocol=\"{protocol}\",transport=\"{transport}\"}} ")
}

/// A gateway with one `auto` listener, its metrics and its records file.
fn launch(config: &str) -> (Gateway, std::path::PathBuf) {
    let dir = temp_path("auto");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("trackgate.toml");
    std::fs::write(&file, config).unwrap();
    let records = dir.join("records.jsonl");
    let args = ["--config", file.to_str().unwrap(), "--metrics", "127.0.0.1:0", "--fsync", "never"].map(str::to_owned);
    let gw = Gateway::start_with(&["auto"], &[format!("jsonl:{}", records.display())], &args, &[]).unwrap();
    (gw, records)
}

fn records_by_protocol(path: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        *by.entry(r["protocol"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    by
}

/// Writes `bytes` one byte at a time: every frame split at every point.
fn trickle(conn: &mut TcpStream, bytes: &[u8]) {
    for b in bytes {
        conn.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn read_exactly(conn: &mut TcpStream, n: usize) -> Vec<u8> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0u8; n];
    conn.read_exact(&mut got).unwrap();
    got
}

/// The simulator's devices of every protocol, over TCP and UDP, all on one port at once,
/// some frames damaged: every undamaged frame is acked byte for byte, the metrics name each
/// device's protocol, and the sink holds every acknowledged record under its protocol.
#[test]
fn every_protocol_on_one_port_with_simulated_devices() {
    let (gw, records) = launch("");
    let endpoint = gw.addrs["metrics http"];
    let mut runs = Vec::new();
    for protocol in Protocol::ALL {
        for transport in [Transport::Tcp, Transport::Udp] {
            if protocol == Protocol::Gt06 && transport == Transport::Udp {
                continue;
            }
            let config = SimConfig {
                protocol,
                transport,
                // One port (on `:0` each transport is given its own).
                target: gw.addrs[&format!("auto {}", transport.as_str())],
                devices: if transport == Transport::Tcp { 60 } else { 20 },
                interval: Duration::from_millis(100),
                duration: Duration::from_millis(1500),
                ramp: Duration::from_millis(300),
                batch: 2,
                damage: 0.05,
                ack_timeout: Duration::from_secs(20),
                seed: u64::from(std::process::id()),
                // Distinct terminals on each transport (a JT808 registration on both would
                // replace the other's auth code).
                first_id: if transport == Transport::Udp { 6000 } else { 1000 },
                ..SimConfig::default()
            };
            runs.push(std::thread::spawn(move || (protocol, transport, sim::run(config).unwrap())));
        }
    }
    let mut expected = std::collections::BTreeMap::<String, u64>::new();
    for run in runs {
        let (protocol, transport, report) = run.join().unwrap();
        assert!(report.all_acked(), "{protocol} {transport:?}: {report:#?}");
        assert_eq!(report.logged_in as usize, report.devices, "{protocol} {transport:?}");
        assert!(report.damaged_sent > 0, "{protocol} {transport:?}: damage was sent");
        let l = labels(protocol.as_str(), transport.as_str());
        let frames =
            wait_metric(endpoint, &format!("trackgate_frames_total{l}"), report.frames_sent - report.damaged_sent);
        match transport {
            Transport::Tcp => assert_eq!(frames, report.frames_sent - report.damaged_sent, "{l}"),
            // Loopback may drop datagrams under a burst: a ceiling there.
            Transport::Udp => assert!(frames > 0 && frames <= report.frames_sent - report.damaged_sent, "{l}"),
        }
        let opened = metric(endpoint, &format!("trackgate_connections_opened_total{l}"));
        assert!(opened >= report.devices as u64 * u64::from(transport == Transport::Tcp), "{l}: {opened}");
        *expected.entry(protocol.to_string()).or_default() += report.records_expected;
    }
    assert_eq!(
        metric(endpoint, "trackgate_connections_closed_total{protocol=\"auto\",transport=\"tcp\",reason=\"junk\"} "),
        0
    );
    assert_eq!(gw.stop(), Some(0));
    let stored = records_by_protocol(&records);
    for (protocol, want) in expected {
        assert_eq!(stored.get(&protocol).copied().unwrap_or(0) as u64, want, "{protocol}: every acked record, no more");
    }
}

/// Each protocol's device opening with its first frame cut into single bytes, all at once on
/// one port: the protocol is told as soon as the bytes allow, and every ack is exact.
#[test]
fn split_first_frames_of_every_protocol_on_one_port() {
    let (gw, records) =
        launch("[[listen]]\nprotocol = \"auto\"\naddr = \"127.0.0.1:0\"\njt808_accept_unauthenticated = true\n");
    let port = gw.addrs["auto tcp"];
    let devices: Vec<std::thread::JoinHandle<()>> = vec![
        std::thread::spawn(move || {
            let mut gt06_device = TcpStream::connect(port).unwrap();
            trickle(&mut gt06_device, &gt06_login("358000000001234", 1));
            assert_eq!(read_ack(&mut gt06_device, Duration::from_secs(10)), Some(gt06::ack(false, 0x01, 1)));
            trickle(&mut gt06_device, &gt06_frame(0x13, &[0x44, 0x06, 0x04, 0x00, 0x02], 2));
            assert_eq!(read_ack(&mut gt06_device, Duration::from_secs(10)), Some(gt06::ack(false, 0x13, 2)));
        }),
        std::thread::spawn(move || {
            let mut jt808_device = TcpStream::connect(port).unwrap();
            // A heartbeat (0x0002) from terminal 013912345678, serial 7: a general ack back.
            let heartbeat = jt808_wire("0002 0000 013912345678 0007");
            trickle(&mut jt808_device, &heartbeat);
            let ack = read_exactly(&mut jt808_device, 20);
            assert_eq!(&ack[1..3], &[0x80, 0x01], "a platform general response: {ack:02x?}");
        }),
        std::thread::spawn(move || {
            let mut teltonika_device = TcpStream::connect(port).unwrap();
            // The ping FMB devices send first, then the IMEI handshake.
            trickle(&mut teltonika_device, &unhex("ff 000f 333536333037303432343431303133"));
            assert_eq!(read_exactly(&mut teltonika_device, 1), [0x01]);
        }),
        std::thread::spawn(move || {
            let mut nmea_device = TcpStream::connect(port).unwrap();
            trickle(&mut nmea_device, b"IMEI:359853000144328\r\n$GPHDT,274.07,T*03\r\n");
        }),
    ];
    for d in devices {
        d.join().unwrap();
    }
    let endpoint = gw.addrs["metrics http"];
    wait_metric(endpoint, &format!("trackgate_records_total{}", labels("nmea", "tcp")), 2);
    for p in ["gt06", "jt808", "teltonika", "nmea"] {
        assert_eq!(metric(endpoint, &format!("trackgate_connections_opened_total{}", labels(p, "tcp"))), 1, "{p}");
    }
    assert_eq!(gw.stop(), Some(0));
    let stored = records_by_protocol(&records);
    assert_eq!(stored.get("gt06"), Some(&2));
    assert_eq!(stored.get("jt808"), Some(&1));
    assert_eq!(stored.get("teltonika"), Some(&1), "the handshake's record");
    assert_eq!(stored.get("nmea"), Some(&2));
}

/// What no protocol begins as is junk: a scanner's connection is closed and counted under
/// `protocol="auto"`, a junk datagram is counted as a rejected one, and devices are served
/// on the same port throughout.
#[test]
fn junk_on_an_auto_port_is_closed_and_counted() {
    let (gw, _records) = launch("");
    let (port, udp, endpoint) = (gw.addrs["auto tcp"], gw.addrs["auto udp"], gw.addrs["metrics http"]);
    let mut scanner = TcpStream::connect(port).unwrap();
    let _ = scanner.write_all(b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut tls_probe = TcpStream::connect(port).unwrap();
    let _ = tls_probe.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    // Closed once the envelope window (512 bytes) holds no sentence.
    let _ = scanner.write_all(&[b'x'; 600]);
    let _ = tls_probe.write_all(&[0u8; 600]);
    assert!(closed_within(&mut scanner, Duration::from_secs(10)), "a scanner is closed");
    assert!(closed_within(&mut tls_probe, Duration::from_secs(10)), "a TLS probe is closed");
    let junk = "trackgate_connections_closed_total{protocol=\"auto\",transport=\"tcp\",reason=\"junk\"} ";
    assert_eq!(wait_metric(endpoint, junk, 2), 2);

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(b"\x16\x03\x01 not a datagram of any protocol", udp).unwrap();
    let rejected = "trackgate_rejects_total{protocol=\"auto\",transport=\"udp\",reason=\"garbage\"} ";
    assert_eq!(wait_metric(endpoint, rejected, 1), 1);

    let mut device = TcpStream::connect(port).unwrap();
    device.write_all(&gt06_login("358000000005678", 3)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(10)), Some(gt06::ack(false, 0x01, 3)));
    assert_eq!(gw.stop(), Some(0));
}

/// Bytes held while a connection is still to name its protocol are a partial frame like any
/// other: they count in `limits.partial_bytes`, and past it the oldest such connections are
/// closed (counted as `protocol="auto"`), the newest kept.
#[test]
fn undecided_openings_count_in_the_partial_frame_budget() {
    let config = "[limits]\npartial_bytes = 65536\nread_buffer = 4096\n\n[[listen]]\nprotocol = \"auto\"\naddr = \"127.0.0.1:0\"\n";
    let (gw, _records) = launch(config);
    let (port, endpoint) = (gw.addrs["auto tcp"], gw.addrs["metrics http"]);
    let held = "trackgate_partial_frame_bytes ";
    let mut openings = Vec::new();
    for i in 0..20u64 {
        let mut conn = TcpStream::connect(port).unwrap();
        // The start of an NMEA id line: undecided until its end.
        conn.write_all(b"IMEI:35").unwrap();
        openings.push(conn);
        // One at a time, so that the gateway sees them begin in this order.
        let want = 4096 * (i + 1).min(16);
        assert_eq!(settled_metric(endpoint, held, want), want, "opening {i}");
    }
    let shed = "trackgate_connections_closed_total{protocol=\"auto\",transport=\"tcp\",reason=\"partial_budget\"} ";
    assert_eq!(wait_metric(endpoint, shed, 4), 4);
    for (i, conn) in openings.iter_mut().enumerate() {
        if i < 4 {
            assert!(closed_within(conn, Duration::from_secs(10)), "opening {i} was left open");
        }
    }
    // The newest finishes its line and is an NMEA device; the held bytes are given back.
    let last = openings.last_mut().unwrap();
    last.write_all(b"9853000144328\r\n").unwrap();
    assert_eq!(wait_metric(endpoint, &format!("trackgate_records_total{}", labels("nmea", "tcp")), 1), 1);
    assert!(!closed_within(&mut openings[19], Duration::from_millis(200)));
    drop(openings);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(endpoint, held) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric(endpoint, held), 0);
    assert_eq!(gw.stop(), Some(0));
}
