//! The JetStream sink against real `nats-server` processes (support/nats.rs): records read
//! back from the stream with a consumer of the tests' own, NATS stopped and killed under
//! load, a cluster of three losing a node.

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use trackgate::codecs::{gt06, Protocol};
use trackgate::protocol::Transport;
use trackgate::tools::sim::{SimConfig, SimReport};

mod support;
use support::certs::{Ca, Use};
use support::frames::{gt06_heartbeat, gt06_login};
use support::gateway::{free_port, read_ack, temp_path, Gateway};
use support::nats::{authority, read_stream, NatsServer, Stored};

/// Simulated devices of `protocol` against `gw`, in a thread.
fn simulate(
    gw: &Gateway,
    protocol: Protocol,
    transport: Transport,
    first_id: u64,
    duration: Duration,
) -> std::thread::JoinHandle<SimReport> {
    let target = gw.addrs[&format!("{protocol} {}", transport.as_str())];
    let config = SimConfig {
        protocol,
        transport,
        target,
        devices: 8,
        interval: Duration::from_millis(100),
        duration,
        ramp: Duration::from_millis(100),
        batch: 2,
        ack_timeout: Duration::from_secs(40),
        first_id,
        ..SimConfig::default()
    };
    std::thread::spawn(move || trackgate::tools::sim::run(config).unwrap())
}

/// The three acknowledging protocols, over the transports devices use most.
const ACKED: [(Protocol, Transport); 3] =
    [(Protocol::Gt06, Transport::Tcp), (Protocol::Jt808, Transport::Tcp), (Protocol::Teltonika, Transport::Udp)];

/// Every device acked everything; returns the records the runs expect stored.
fn all_acked(runs: Vec<std::thread::JoinHandle<SimReport>>) -> usize {
    runs.into_iter()
        .map(|run| {
            let report = run.join().unwrap();
            assert!(report.all_acked(), "{report:#?}");
            report.records_expected as usize
        })
        .sum()
}

/// No message id twice, and every message has one.
fn assert_once_each(stored: &[Stored]) {
    let ids: HashSet<&str> = stored.iter().map(|m| m.msg_id.as_deref().expect("every message has an id")).collect();
    assert_eq!(ids.len(), stored.len(), "a record stored twice");
}

/// Waits (bounded) for the stream to hold `n` messages, and returns them.
fn wait_for_stream(url: &str, stream: &str, n: usize) -> Vec<Stored> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored = read_stream(url, stream);
        if stored.len() >= n || Instant::now() > deadline {
            return stored;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Devices of all four protocols through a gateway with a JSONL file and a JetStream sink:
/// every record is in the stream once, on its protocol's and device's subject, byte for byte
/// what the file sink wrote; the damaged frames reach neither.
#[test]
fn every_acked_record_is_in_the_stream_once_as_the_file_sink_wrote_it() {
    let nats = NatsServer::start();
    let file = temp_path("nats-both.jsonl");
    let sink = format!("nats://{}", nats.url());
    let gw = Gateway::start(&["gt06", "jt808", "teltonika", "nmea"], &[sink, format!("jsonl:{}", file.display())])
        .expect("the gateway starts");
    let mut runs: Vec<_> = ACKED
        .iter()
        .enumerate()
        .map(|(i, &(p, t))| simulate(&gw, p, t, 7000 + 100 * i as u64, Duration::from_millis(800)))
        .collect();
    runs.push(simulate(&gw, Protocol::Nmea, Transport::Tcp, 7900, Duration::from_millis(800)));
    let expected = all_acked(runs);
    let stored = wait_for_stream(&nats.url(), "TRACKGATE", expected);
    assert_eq!(gw.stop(), Some(0));
    assert_eq!(stored.len(), expected, "one message per record");
    assert_once_each(&stored);
    let written = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let mut from_file: Vec<&str> = written.lines().collect();
    let mut from_stream = Vec::new();
    for m in &stored {
        let record: serde_json::Value = serde_json::from_str(&m.payload).unwrap();
        let device = record["device_id"].as_str().expect("every simulated record names its device");
        assert_eq!(m.subject, format!("trackgate.records.{}.{device}", record["protocol"].as_str().unwrap()));
        from_stream.push(m.payload.as_str());
    }
    from_file.sort_unstable();
    from_stream.sort_unstable();
    assert_eq!(from_stream, from_file, "the same records, byte for byte, in both sinks");
}

/// NATS goes away: a frame that arrives meanwhile is not acknowledged, while simulated
/// devices keep sending and wait; NATS comes back with its store and the sink sends
/// everything again: every device is acked, every record is in the stream once.
#[test]
fn while_nats_is_away_nothing_is_acked_and_everything_goes_in_when_it_returns() {
    let mut nats = NatsServer::start();
    let sink = format!("nats://{}?reconnect=60", nats.url());
    let gw = Gateway::start(&["gt06", "jt808", "teltonika"], &[sink]).expect("the gateway starts");
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000001", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    let runs: Vec<_> = ACKED
        .iter()
        .enumerate()
        .map(|(i, &(p, t))| simulate(&gw, p, t, 8000 + 100 * i as u64, Duration::from_secs(3)))
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    nats.kill();
    device.write_all(&gt06_heartbeat(2)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(2)), None, "acked with no NATS to hold the record");
    nats.restart();
    assert_eq!(read_ack(&mut device, Duration::from_secs(40)), Some(gt06::ack(false, 0x13, 2)));
    let expected = all_acked(runs) + 2;
    assert!(gw.said("NATS connection lost", Duration::from_secs(1)), "the outage is logged");
    let stored = wait_for_stream(&nats.url(), "TRACKGATE", expected);
    assert_eq!(gw.stop(), Some(0));
    assert_eq!(stored.len(), expected);
    assert_once_each(&stored);
}

/// NATS that stays away longer than `reconnect` stops the gateway, as a full disk does: the
/// frame is never acknowledged and the exit names NATS.
#[test]
fn nats_that_stays_away_stops_the_gateway_without_acking() {
    let mut nats = NatsServer::start();
    let mut gw = Gateway::start(&["gt06"], &[format!("nats://{}?reconnect=2", nats.url())]).unwrap();
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000001", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    nats.kill();
    device.write_all(&gt06_heartbeat(2)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(30)), None, "no ack without NATS");
    assert_eq!(gw.child.wait().unwrap().code(), Some(1));
    assert!(gw.said("trackgate: sink failed", Duration::from_secs(10)));
    assert!(gw.said("stream TRACKGATE", Duration::from_secs(1)), "{:?}", gw.last_words.lock().unwrap());
}

/// NATS that cannot be reached, a stream that must exist and does not, and a subject with a
/// wildcard fail `serve` at start with the reason, before any device is taken on.
#[test]
fn unreachable_nats_or_a_missing_stream_fails_at_start() {
    let nowhere = format!("nats://127.0.0.1:{}", free_port());
    let (code, said) = Gateway::start(&["gt06"], &[nowhere]).err().expect("no gateway without NATS");
    assert_eq!(code, Some(2));
    assert!(said.contains("cannot connect to NATS at nats://127.0.0.1:"), "{said}");

    let nats = NatsServer::start();
    let must_exist = format!("nats://{}?stream=ELSEWHERE&create=false", nats.url());
    let (code, said) = Gateway::start(&["gt06"], &[must_exist]).err().expect("no gateway without its stream");
    assert_eq!(code, Some(2));
    assert!(said.contains("JetStream stream ELSEWHERE") && said.contains("create=false"), "{said}");

    let (code, said) = Gateway::start(&["gt06"], &[format!("nats://{}/records.>", nats.url())]).err().unwrap();
    assert_eq!(code, Some(2));
    assert!(said.contains("wildcard"), "{said}");
}

/// Three NATS servers, a stream with three replicas, two gateway nodes each with simulated
/// devices of all four protocols: one NATS server killed (SIGKILL) mid-stream. Every
/// acknowledged record (and every NMEA record, which nothing acknowledges) is in the stream,
/// none twice.
#[test]
fn losing_one_of_three_nats_servers_loses_no_acknowledged_record() {
    let mut cluster = NatsServer::cluster();
    let sink = format!("nats://{}?replicas=3&reconnect=60", authority(&cluster));
    // The cluster elects its JetStream leader first; until then the stream cannot be made.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        match Gateway::start(&["gt06", "jt808", "teltonika", "nmea"], std::slice::from_ref(&sink)) {
            Ok(gw) => break gw,
            Err((code, said)) => assert!(Instant::now() < deadline, "{code:?}: {said}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let second = Gateway::start(&["gt06", "jt808", "teltonika", "nmea"], &[sink]).expect("the second node starts");
    let mut runs = Vec::new();
    for (n, gw) in [&first, &second].into_iter().enumerate() {
        let all_four = ACKED.iter().copied().chain([(Protocol::Nmea, Transport::Tcp)]);
        for (i, (p, t)) in all_four.enumerate() {
            runs.push(simulate(gw, p, t, 10_000 * (n as u64 + 1) + 100 * i as u64, Duration::from_secs(4)));
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    cluster[1].kill();
    let expected = all_acked(runs);
    let stored = wait_for_stream(&cluster[0].url(), "TRACKGATE", expected);
    assert_eq!((first.stop(), second.stop()), (Some(0), Some(0)));
    assert_eq!(stored.len(), expected);
    assert_once_each(&stored);
}

/// The sink as a library. A device that never got its ack sends the frame again, received a
/// minute later (through this node or another): its records are stored once. A second
/// identical record of the same read is a record of its own, and stored.
#[test]
fn a_record_sent_again_is_stored_once() {
    use trackgate::codecs::record::Timestamp;
    use trackgate::codecs::{Kind, Record};
    use trackgate::config::NatsTarget;
    use trackgate::sink::{JetStreamSink, RecordSink};
    let nats = NatsServer::start();
    let target = NatsTarget::parse("nats", &format!("//{}/fleet.{{device_id}}?stream=AGAIN", nats.url())).unwrap();
    let read = |at_ms: i64| -> Vec<Record> {
        (0..3)
            .map(|i| {
                let mut r = Record::new(Protocol::Gt06, Kind::Position, "0x22");
                r.device_id = Some("358000000000001".into());
                r.seq = Some(if i == 2 { 1 } else { i });
                r.received_at = Some(Timestamp::from_unix_ms(at_ms, true));
                r
            })
            .collect()
    };
    let mut sink = JetStreamSink::connect(&target).unwrap();
    sink.write(&read(1_765_000_000_000)).unwrap();
    sink.commit().unwrap();
    let mut other_node = JetStreamSink::connect(&target).unwrap();
    other_node.write(&read(1_765_000_060_000)).unwrap();
    other_node.commit().unwrap();
    let stored = read_stream(&nats.url(), "AGAIN");
    assert_eq!(stored.len(), 3, "{stored:#?}");
    assert!(stored.iter().all(|m| m.payload.contains("\"received_at\":\"2025-12-06T05:46:40.000Z\"")), "{stored:#?}");
    assert_eq!(stored[0].subject, "fleet.358000000000001");
}

/// Makes a CA and a server certificate for 127.0.0.1 signed by it; returns the directory
/// holding ca.pem, server.pem and server.key.
fn certificates() -> std::path::PathBuf {
    let dir = temp_path("nats-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("test-ca");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    ca.issue("nats", Use::Server).write(&dir, "server");
    dir
}

/// TLS to NATS (`tls://…?ca=`): the sink checks the server against the CA it is given, and
/// refuses a server it cannot check; a user's password comes from the environment, never
/// the URL, and a wrong one fails the start.
#[test]
fn tls_and_a_password_from_the_environment() {
    let certs = certificates();
    let (cert, key) = (certs.join("server.pem"), certs.join("server.key"));
    let nats = NatsServer::start_with(&[
        "--tls",
        "--tlscert",
        cert.to_str().unwrap(),
        "--tlskey",
        key.to_str().unwrap(),
        "--user",
        "gateway",
        "--pass",
        "s3cret-pass",
    ]);
    let sink = format!("tls://gateway@{}?ca={}", nats.url(), certs.join("ca.pem").display());
    let password = [("TRACKGATE_NATS_PASSWORD", "s3cret-pass")];
    let gw = Gateway::start_with(&["gt06"], std::slice::from_ref(&sink), &[], &password)
        .expect("the gateway starts over TLS");
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000001", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    assert_eq!(gw.stop(), Some(0));

    let unchecked = format!("tls://gateway@{}", nats.url());
    let (code, said) = Gateway::start_with(&["gt06"], &[unchecked], &[], &password).err().expect("no unknown CA");
    assert_eq!(code, Some(2));
    assert!(said.contains("cannot connect to NATS"), "{said}");
    let wrong = [("TRACKGATE_NATS_PASSWORD", "guess")];
    let (code, said) = Gateway::start_with(&["gt06"], &[sink], &[], &wrong).err().expect("no wrong password");
    assert_eq!(code, Some(2));
    assert!(said.contains("authorization") && !said.contains("guess"), "{said}");
    let _ = std::fs::remove_dir_all(&certs);
}
