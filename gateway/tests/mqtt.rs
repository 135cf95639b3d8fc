//! The MQTT sink against a real broker: Mosquitto from Debian's packages (`apt-get install
//! mosquitto mosquitto-clients`; `.ci/run` installs both), started by each test on a free
//! loopback port, with Mosquitto's own `mosquitto_sub` as the independent reader.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trackgate::codecs::{gt06, Protocol};
use trackgate::protocol::Transport;
use trackgate::tools::sim::SimConfig;

mod support;
use support::frames::{gt06_heartbeat, gt06_login};
use support::gateway::{free_port, read_ack, temp_path, Gateway};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A Mosquitto broker of this test's own, stopped when dropped.
struct Broker {
    child: Child,
    port: u16,
    config: std::path::PathBuf,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_on(free_port(), true)
    }

    /// A broker on `port`; `anonymous` false refuses every client (no password file).
    fn start_on(port: u16, anonymous: bool) -> Broker {
        assert!(
            std::path::Path::new(MOSQUITTO).exists(),
            "these tests need Mosquitto: apt-get install mosquitto mosquitto-clients"
        );
        let config = std::env::temp_dir().join(format!("trackgate-mosquitto-{}-{port}.conf", std::process::id()));
        std::fs::write(
            &config,
            // No cap on what waits for a slow subscriber (Mosquitto drops past 1,000 by
            // default, which the bulk test's reader would see as loss).
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous {anonymous}\npersistence false\n\
                 max_queued_messages 0\nlog_dest stderr\n"
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        let broker = Broker { child, port, config };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(broker.addr()).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `mosquitto_sub` on `filter`, its `topic payload` lines gathered as they come.
struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// Subscribes, and returns once a probe published to `probe_topic` (which `filter` must
    /// match) has come through: from then on nothing published is missed.
    fn start(broker: &Broker, filter: &str, probe_topic: &str) -> Subscriber {
        let port = broker.port.to_string();
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-v", "-t", filter])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs (package mosquitto-clients)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        let s = Subscriber { child, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = format!("{probe_topic} ready");
        while !s.lines.lock().unwrap().contains(&probe) {
            assert!(Instant::now() < deadline, "mosquitto_sub never got the probe");
            let published = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-t", probe_topic, "-m", "ready"])
                .status()
                .unwrap();
            assert!(published.success());
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// Waits (bounded) for `n` lines besides the probes, and returns them.
    fn wait_for(&self, n: usize, probe_topic: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines: Vec<String> =
                self.lines.lock().unwrap().iter().filter(|l| !l.starts_with(probe_topic)).cloned().collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Simulated GT06, JT808 and Teltonika devices, some frames damaged, through a gateway with
/// two sinks: every acked record is on the broker, on the topic its protocol and device name,
/// with the same JSON the file sink wrote; damaged frames reach neither.
#[test]
fn records_reach_the_broker_on_their_devices_topics_before_their_acks() {
    let broker = Broker::start();
    let subscriber = Subscriber::start(&broker, "fleet/#", "fleet/probe");
    let file = temp_path("mqtt-both.jsonl");
    let mqtt = format!("mqtt://127.0.0.1:{}/fleet/{{protocol}}/{{device_id}}", broker.port);
    let gw = Gateway::start(&["gt06", "jt808", "teltonika"], &[mqtt, format!("jsonl:{}", file.display())])
        .expect("the gateway starts");
    let runs: Vec<_> =
        [(Protocol::Gt06, Transport::Tcp), (Protocol::Jt808, Transport::Tcp), (Protocol::Teltonika, Transport::Udp)]
            .into_iter()
            .map(|(protocol, transport)| {
                let target = gw.addrs[&format!("{protocol} {}", transport.as_str())];
                let config = SimConfig {
                    protocol,
                    transport,
                    target,
                    devices: 10,
                    interval: Duration::from_millis(100),
                    duration: Duration::from_millis(800),
                    ramp: Duration::from_millis(100),
                    batch: 2,
                    damage: 0.1,
                    ack_timeout: Duration::from_secs(20),
                    first_id: 7000,
                    ..SimConfig::default()
                };
                std::thread::spawn(move || trackgate::tools::sim::run(config).unwrap())
            })
            .collect();
    let mut expected = 0;
    for run in runs {
        let report = run.join().unwrap();
        assert!(report.all_acked(), "{report:#?}");
        assert!(report.damaged_sent > 0);
        expected += report.records_expected as usize;
    }
    // Every ack came after the broker's PUBACK, so the records are there; the subscriber
    // may still be reading them.
    let published = subscriber.wait_for(expected, "fleet/probe");
    assert_eq!(gw.stop(), Some(0));
    assert_eq!(published.len(), expected, "one message per acked record, no more");
    let written = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let mut from_file: Vec<&str> = written.lines().collect();
    let mut from_broker = Vec::new();
    for line in &published {
        let (topic, payload) = line.split_once(' ').unwrap();
        let record: serde_json::Value = serde_json::from_str(payload).unwrap();
        let device = record["device_id"].as_str().expect("every simulated record names its device");
        assert_eq!(topic, format!("fleet/{}/{device}", record["protocol"].as_str().unwrap()));
        from_broker.push(payload);
    }
    from_file.sort_unstable();
    from_broker.sort_unstable();
    assert_eq!(from_broker, from_file, "the same records, byte for byte, in both sinks");
}

/// The broker goes away: a frame that arrives meanwhile is not acknowledged; the broker comes
/// back on the same port and the sink connects again, sends the record again, and only then
/// does the ack go out. Nothing is lost, and the gateway never stopped.
#[test]
fn while_the_broker_is_away_nothing_is_acked_and_it_all_goes_out_when_it_returns() {
    let broker = Broker::start();
    let file = temp_path("mqtt-outage.jsonl");
    let mqtt = format!("mqtt://127.0.0.1:{}/fleet/{{device_id}}?reconnect=60", broker.port);
    let gw = Gateway::start(&["gt06"], &[mqtt, format!("jsonl:{}", file.display())]).expect("the gateway starts");
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000001", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));

    let port = broker.stop();
    device.write_all(&gt06_heartbeat(2)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(1)), None, "acked with no broker to hold the record");
    let _back = Broker::start_on(port, true);
    assert_eq!(read_ack(&mut device, Duration::from_secs(30)), Some(gt06::ack(false, 0x13, 2)));
    assert!(gw.last_words.lock().unwrap().iter().any(|l| l.contains("MQTT broker lost")), "the outage is logged");
    assert_eq!(gw.stop(), Some(0));
    let written = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(written.lines().count(), 2, "{written}");
}

/// A broker that stays away longer than `reconnect` stops the gateway, as a full disk does:
/// the frame is never acknowledged and the exit names the broker.
#[test]
fn a_broker_that_stays_away_stops_the_gateway_without_acking() {
    let broker = Broker::start();
    let mqtt = format!("mqtt://127.0.0.1:{}/fleet/{{device_id}}?reconnect=1", broker.port);
    let mut gw = Gateway::start(&["gt06"], &[mqtt]).expect("the gateway starts");
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000001", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    broker.stop();
    device.write_all(&gt06_heartbeat(2)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(30)), None, "no ack without the broker");
    let status = gw.child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    // The last words come through the drain thread; give it a moment to read them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = loop {
        let words = gw.last_words.lock().unwrap().join("\n");
        if words.contains("trackgate: sink failed") || Instant::now() > deadline {
            break words;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(said.contains("trackgate: sink failed") && said.contains("MQTT broker 127.0.0.1:"), "{said}");
}

/// A broker that cannot be reached, or refuses the gateway, fails `serve` at start with the
/// reason, before any device is taken on.
#[test]
fn an_unreachable_or_refusing_broker_fails_at_start() {
    let nowhere = format!("mqtt://127.0.0.1:{}/fleet", free_port());
    let (code, said) = Gateway::start(&["gt06"], &[nowhere]).err().expect("no gateway without its broker");
    assert_eq!(code, Some(2));
    assert!(said.contains("cannot open sink mqtt://127.0.0.1:") && said.contains("refused"), "{said}");

    let closed = Broker::start_on(free_port(), false);
    let refusing = format!("mqtt://127.0.0.1:{}/fleet", closed.port);
    let (code, said) = Gateway::start(&["gt06"], &[refusing]).err().expect("no gateway the broker refuses");
    assert_eq!(code, Some(2));
    assert!(said.contains("the broker refused the connection: not authorized"), "{said}");

    let (code, said) = Gateway::start(&["gt06"], &["mqtt://127.0.0.1/fleet/#".into()]).err().unwrap();
    assert_eq!(code, Some(2));
    assert!(said.contains("wildcard"), "{said}");
}

/// The sink as a library: one commit of more records than it keeps in flight (it waits for the
/// broker part way, and packet ids go round) arrives whole and in order.
#[test]
fn a_commit_larger_than_the_in_flight_bound_arrives_whole_and_in_order() {
    use trackgate::codecs::{Kind, Record};
    use trackgate::config::MqttTarget;
    use trackgate::sink::MqttSink;
    use trackgate::sink::RecordSink;
    let broker = Broker::start();
    let subscriber = Subscriber::start(&broker, "bulk/#", "bulk/probe");
    let target = MqttTarget::parse(&format!("//127.0.0.1:{}/bulk/{{kind}}", broker.port)).unwrap();
    let mut sink = MqttSink::connect(&target).unwrap();
    let n = 70_000;
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut r = Record::new(Protocol::Nmea, Kind::Info, "TXT");
            r.seq = Some(i);
            r
        })
        .collect();
    sink.write(&records).unwrap();
    sink.commit().unwrap();
    let got = subscriber.wait_for(n as usize, "bulk/probe");
    assert_eq!(got.len(), n as usize);
    for (i, line) in got.iter().enumerate() {
        let (topic, payload) = line.split_once(' ').unwrap();
        assert_eq!(topic, "bulk/info");
        let record: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(record["seq"], i as u64, "in the order written");
    }
}
