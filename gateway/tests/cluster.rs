//! Several gateway nodes on one NATS (`--cluster`), against a real `nats-server`: commands
//! through any node's HTTP endpoint and straight over NATS, held commands across nodes, a
//! device moving between nodes, a node killed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use trackgate::codecs::gt06;

mod support;
use support::frames::{gt06_heartbeat, gt06_login, read_command};
use support::gateway::{closed_within, connect_from, http, read_ack, temp_path, Gateway};
use support::nats::{authority, NatsServer};

const TOKEN: &str = "cluster-0123456789abcdef";

/// One node: GT06 on a free port, its endpoint taking commands, records to a file of its own.
struct Node {
    gw: Gateway,
    records: PathBuf,
    dir: PathBuf,
}

impl Node {
    /// A node on a NATS cluster that may still be electing its JetStream leader: tried again
    /// until it starts (bounded).
    fn start_when_ready(nats: &str, name: &str) -> Node {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Node::try_start(nats, name) {
                Ok(node) => return node,
                Err(said) => assert!(Instant::now() < deadline, "{said}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn start(nats: &str, name: &str) -> Node {
        Node::try_start(nats, name).expect("the node starts")
    }

    fn try_start(nats: &str, name: &str) -> Result<Node, String> {
        let dir = temp_path(&format!("cluster-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        // A short takeover window, so that a device falling silent is seen in the tests.
        let config = "commands_token_file = \"token\"\n[limits]\ntakeover_window = 2\n";
        std::fs::write(dir.join("trackgate.toml"), config).unwrap();
        let records = dir.join("records.jsonl");
        let args: Vec<String> = [
            "--config",
            dir.join("trackgate.toml").to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
            "--cluster",
            &format!("nats://{nats}"),
            "--node",
            name,
        ]
        .map(str::to_owned)
        .to_vec();
        let gw = Gateway::start_with(&["gt06"], &[format!("jsonl:{}", records.display())], &args, &[])
            .map_err(|(code, said)| format!("{code:?}: {said}"))?;
        Ok(Node { gw, records, dir })
    }

    fn device(&self) -> TcpStream {
        TcpStream::connect(self.gw.addrs["gt06 tcp"]).unwrap()
    }

    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(self.gw.addrs["metrics http"], method, path, Some(TOKEN), body)
    }

    /// The device's status as this node sees it, once `wanted` is in it (within 10 s, or
    /// the test fails).
    fn status_with(&self, imei: &str, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, body) = self.http("GET", &format!("/devices/gt06/{imei}"), "");
            assert_eq!(code, 200, "{body}");
            if body.contains(wanted) {
                return body;
            }
            assert!(Instant::now() < deadline, "{wanted} never in {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Posts until the answer is `want` (within 30 s, or the test fails): while a device
    /// moves, or JetStream elects a leader, the cluster's answer changes.
    fn post_until(&self, path: &str, body: &str, want: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, answer) = self.http("POST", path, body);
            if code == want {
                return;
            }
            assert!(Instant::now() < deadline, "{code} {answer}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The records this node wrote so far.
    fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.records).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A GT06 device that logs in and is acked.
fn logged_in(node: &Node, imei: &str) -> TcpStream {
    let mut device = node.device();
    device.write_all(&gt06_login(imei, 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    device
}

/// The device's 0x21 answer to `command`, echoing its server flag.
fn answer(command: &[u8], serial: u16) -> Vec<u8> {
    let at = if command.starts_with(&gt06::LONG_START) { 5 } else { 4 };
    let server_flag = u32::from_be_bytes(command[at + 1..at + 5].try_into().unwrap());
    let reply = gt06::Message::CommandReply(gt06::CommandReply {
        server_flag,
        text: "Relay on".into(),
        encoding: Some(1),
        irregular_length: None,
        extra: &[],
    });
    let mut content = Vec::new();
    reply.write_content(0x21, &mut content).unwrap();
    let mut out = Vec::new();
    gt06::encode_frame(&mut out, true, 0x21, &content, serial).unwrap();
    out
}

fn contains(frame: &[u8], text: &str) -> bool {
    frame.windows(text.len()).any(|w| w == text.as_bytes())
}

/// A plain NATS request, as a platform would make it without HTTP: the status header and
/// the body of the reply, or the error.
fn nats_request(url: &str, subject: &str, body: &str, hold: Option<u64>) -> Result<(String, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let mut headers = async_nats::HeaderMap::new();
        if let Some(h) = hold {
            headers.insert("Trackgate-Hold", h.to_string().as_str());
        }
        let request = async_nats::Request::new().headers(headers).payload(body.to_owned().into());
        let reply = client.send_request(subject.to_owned(), request).await.map_err(|e| e.kind().to_string())?;
        let status = reply.headers.as_ref().and_then(|h| h.get("Trackgate-Status")).unwrap().as_str().to_owned();
        Ok((status, String::from_utf8(reply.payload.to_vec()).unwrap()))
    })
}

/// A device on node B gets a command sent to node A's HTTP endpoint, and one sent as a plain
/// NATS request; each answer reaches B's records as a `command_response` naming the command.
/// A device no node holds: `404` over HTTP, "no responders" over NATS, at once.
#[test]
fn a_command_reaches_a_device_on_another_node_over_http_and_over_nats() {
    let nats = NatsServer::start();
    let (a, mut b) = (Node::start(&nats.url(), "a"), Node::start(&nats.url(), "b"));
    let imei = "358000000000101";
    let path = format!("/devices/gt06/{imei}/commands");
    assert_eq!(a.http("POST", &path, "RELAY,1#").0, 404, "no node holds it yet");
    let subject = format!("trackgate.commands.gt06.{imei}");
    assert_eq!(nats_request(&nats.url(), &subject, "RELAY,1#", None), Err("no responders".into()));

    let mut device = logged_in(&b, imei);
    assert!(a.status_with(imei, "\"node\":\"b\"").contains("\"connected\":true"));
    let (code, body) = a.http("POST", &path, "RELAY,1#");
    assert_eq!(code, 200, "{body}");
    let flag: serde_json::Value = serde_json::from_str(&body).unwrap();
    let command = read_command(&mut device, Duration::from_secs(10)).expect("the command reaches the device");
    assert!(contains(&command, "RELAY,1#"));
    device.write_all(&answer(&command, 2)).unwrap();

    let (status, body) = nats_request(&nats.url(), &subject, "DYD,000000#", None).unwrap();
    assert_eq!(status, "200", "{body}");
    let command = read_command(&mut device, Duration::from_secs(10)).expect("the NATS command reaches the device");
    assert!(contains(&command, "DYD,000000#"));
    device.write_all(&answer(&command, 3)).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let answers = loop {
        let answers: Vec<_> = b.records().into_iter().filter(|r| r["kind"] == "command_response").collect();
        if answers.len() >= 2 || Instant::now() > deadline {
            break answers;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(answers.len(), 2, "{answers:#?}");
    assert_eq!(answers[0]["attributes"]["server_flag"], flag["answer"]["server_flag"]);

    // A node that stops takes its devices out of the cluster's view.
    assert_eq!(b.gw.terminate(), Some(0));
    a.status_with(imei, "\"connected\":false");
}

/// A command held through node A while the device is offline is written when the device
/// connects to node B, once: not again when it reconnects. One that expired is never written.
#[test]
fn a_command_held_through_one_node_is_written_once_where_the_device_connects() {
    let nats = NatsServer::start();
    let (a, b) = (Node::start(&nats.url(), "a"), Node::start(&nats.url(), "b"));
    let imei = "358000000000202";
    let (code, body) = a.http("POST", &format!("/devices/gt06/{imei}/commands?hold=60"), "RELAY,1#");
    assert_eq!((code, body.as_str()), (202, "{\"result\":\"held\"}\n"));
    // Every node sees it held.
    b.status_with(imei, "\"held_commands\":1");

    let mut device = logged_in(&b, imei);
    let command = read_command(&mut device, Duration::from_secs(10)).expect("the held command is written");
    assert!(contains(&command, "RELAY,1#"));
    drop(device);
    for node in [&b, &a] {
        let mut again = logged_in(node, imei);
        assert_eq!(read_command(&mut again, Duration::from_millis(1500)), None, "written twice");
    }
    a.status_with(imei, "\"held_commands\":0");

    let late = "358000000000203";
    assert_eq!(a.http("POST", &format!("/devices/gt06/{late}/commands?hold=1"), "RELAY,1#").0, 202);
    std::thread::sleep(Duration::from_millis(2500));
    let mut device = logged_in(&b, late);
    assert_eq!(read_command(&mut device, Duration::from_millis(1500)), None, "written after its expiry");
    assert!(b.gw.said("a held command expired before its device connected", Duration::from_secs(5)));
}

/// The same device id connects to node A, then to node B: A closes its connection within a
/// second, and the cluster's view follows the device.
#[test]
fn a_device_that_connects_to_another_node_is_closed_on_the_first() {
    let nats = NatsServer::start();
    let (a, b) = (Node::start(&nats.url(), "a"), Node::start(&nats.url(), "b"));
    let imei = "358000000000303";
    let mut first = logged_in(&a, imei);
    b.status_with(imei, "\"node\":\"a\"");
    let _second = logged_in(&b, imei);
    assert!(closed_within(&mut first, Duration::from_secs(1)), "A's connection is still open a second later");
    a.status_with(imei, "\"node\":\"b\"");
}

/// The takeover policy across nodes: a login on B from another address, while the device
/// reports on A, is refused (its records kept on B, marked), A keeps the device and its
/// commands; once the device falls silent on A for the window, the login on B takes over.
#[test]
fn an_impostor_on_another_node_does_not_take_a_live_device() {
    let nats = NatsServer::start();
    let (a, b) = (Node::start(&nats.url(), "a"), Node::start(&nats.url(), "b"));
    let imei = "358000000000404";
    let mut device = logged_in(&a, imei);
    b.status_with(imei, "\"node\":\"a\"");
    let mut impostor = connect_from([127, 0, 0, 2], b.gw.addrs["gt06 tcp"]);
    impostor.write_all(&gt06_login(imei, 1)).unwrap();
    assert_eq!(read_ack(&mut impostor, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)), "acked, kept");
    // The device goes on reporting on A and gets the commands sent through B.
    for serial in 2..5 {
        device.write_all(&gt06_heartbeat(serial)).unwrap();
        assert_eq!(read_ack(&mut device, Duration::from_secs(5)), Some(gt06::ack(false, 0x13, serial)), "A closed it");
        std::thread::sleep(Duration::from_millis(300));
    }
    b.post_until(&format!("/devices/gt06/{imei}/commands"), "RELAY,1#", 200);
    assert!(read_command(&mut device, Duration::from_secs(5)).is_some(), "the command went to the device on A");
    let (_, metrics) = http(b.gw.addrs["metrics http"], "GET", "/metrics", None, "");
    assert!(metrics.contains("trackgate_takeovers_refused_total{protocol=\"gt06\",transport=\"tcp\"}"), "{metrics}");
    assert!(!metrics.contains("trackgate_takeovers_refused_total{protocol=\"gt06\",transport=\"tcp\"} 0"), "{metrics}");
    let login = b.records().into_iter().find(|r| r["kind"] == "login").expect("B stored the impostor's login");
    assert_eq!(login["attributes"]["takeover_refused"], true, "{login}");

    // Silent on A past the window: the next login attempt on B takes the device.
    std::thread::sleep(Duration::from_secs(3));
    impostor.write_all(&gt06_heartbeat(9)).unwrap();
    assert_eq!(read_ack(&mut impostor, Duration::from_secs(5)), Some(gt06::ack(false, 0x13, 9)));
    a.status_with(imei, "\"node\":\"b\"");
    assert!(closed_within(&mut device, Duration::from_secs(10)), "A's silent connection is still open");
}

/// A node killed (SIGKILL): its devices reconnect through the other node and take commands
/// there; until they do, a command for them is `404`, never sent into the void.
#[test]
fn a_killed_node_s_devices_take_commands_on_the_other() {
    let nats = NatsServer::start();
    let (mut a, b) = (Node::start(&nats.url(), "a"), Node::start(&nats.url(), "b"));
    let imei = "358000000000404";
    let path = format!("/devices/gt06/{imei}/commands");
    let mut device = logged_in(&a, imei);
    b.status_with(imei, "\"node\":\"a\"");
    a.gw.child.kill().unwrap();
    a.gw.child.wait().unwrap();
    device.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(matches!(device.read(&mut [0u8; 16]), Ok(0) | Err(_)), "the device sees its node go");
    // The dead node's entry is stale once its beat has aged out.
    b.status_with(imei, "\"connected\":false");
    b.post_until(&path, "RELAY,1#", 404);
    let mut device = logged_in(&b, imei);
    let (code, body) = b.http("POST", &path, "RELAY,1#");
    assert_eq!(code, 200, "{body}");
    assert!(contains(&read_command(&mut device, Duration::from_secs(10)).unwrap(), "RELAY,1#"));
}

/// Two nodes on a cluster of three NATS servers, buckets replicated three times: one NATS
/// server killed, and a command through node A still reaches the device on node B, and a
/// command held through A is written when a device connects to B.
#[test]
fn the_plane_goes_on_when_one_of_three_nats_servers_dies() {
    let mut servers = NatsServer::cluster();
    let url = format!("{}?replicas=3", authority(&servers));
    let a = Node::start_when_ready(&url, "a");
    let b = Node::start(&url, "b");
    let imei = "358000000000505";
    let mut device = logged_in(&b, imei);
    a.status_with(imei, "\"node\":\"b\"");
    servers[0].kill();
    let path = format!("/devices/gt06/{imei}/commands");
    a.post_until(&path, "RELAY,1#", 200);
    assert!(contains(&read_command(&mut device, Duration::from_secs(10)).unwrap(), "RELAY,1#"));

    // A platform tries again on 503 while JetStream moves the bucket's leader.
    let away = "358000000000506";
    a.post_until(&format!("/devices/gt06/{away}/commands?hold=60"), "RELAY,0#", 202);
    let mut late = logged_in(&b, away);
    assert!(contains(&read_command(&mut late, Duration::from_secs(10)).unwrap(), "RELAY,0#"));
}
