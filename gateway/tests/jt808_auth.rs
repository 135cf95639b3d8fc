//! JT808 authentication as the standard intends, over real sockets: random codes kept in the
//! auth file before they are sent, nothing taken before authentication, a wrong code refused
//! and the connection closed, a second registration in a terminal's name voiding nothing,
//! the codes surviving a restart, and an operator's enrollment.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use trackgate::codecs::jt808;

mod support;
use support::frames::jt808_wire;
use support::gateway::{http, temp_path, Gateway};
use support::nats::NatsServer;
use support::unhex;

const TOKEN: &str = "jt808-auth-0123456789abcdef";
/// A 2013 terminal 014130567872 registering (from the standard's examples).
const REGISTER: &str = "7E0100002D0141305678720024002C012F373031313142534A2D41362D424400000000000000000000003035363738373201D4C14238383838386D7E";

fn start(dir: &Path) -> Gateway {
    let args: Vec<String> = ["--config", dir.join("trackgate.toml").to_str().unwrap(), "--metrics", "127.0.0.1:0"]
        .map(str::to_owned)
        .to_vec();
    let sink = format!("jsonl:{}", dir.join("records.jsonl").display());
    Gateway::start_with(&["jt808"], &[sink], &args, &[]).expect("the gateway starts")
}

fn config() -> PathBuf {
    let dir = temp_path("jt808-auth");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(
        dir.join("trackgate.toml"),
        "commands_token_file = \"token\"\n[[listen]]\nprotocol = \"jt808\"\njt808_auth_file = \"codes.tsv\"\n",
    )
    .unwrap();
    dir
}

/// One frame from the gateway, flag to flag, or `None` (closed, or nothing within `wait`).
fn read_frame(conn: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    conn.set_read_timeout(Some(wait)).unwrap();
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    while frame.len() < 2 || frame.last() != Some(&0x7E) {
        match conn.read(&mut byte) {
            Ok(1) => frame.push(byte[0]),
            _ => return None,
        }
    }
    Some(frame)
}

/// The message id and body of a frame from the gateway.
fn parsed(frame: &[u8]) -> (u16, Vec<u8>) {
    let f = jt808::Frame::parse(&frame[1..frame.len() - 1]).unwrap();
    (f.header.message_id, f.body.to_vec())
}

fn auth(code: &str, serial: u16) -> Vec<u8> {
    let hex: String = code.bytes().map(|b| format!("{b:02X}")).collect();
    jt808_wire(&format!("0102 {:04X} 014130567872 {serial:04X} {hex}", code.len()))
}

fn location(serial: u16) -> Vec<u8> {
    jt808_wire(&format!(
        "0200 001C 014130567872 {serial:04X} 00000000 00040001 005DE1F7 065C6CEF 0000 0000 0000 170117100442"
    ))
}

#[test]
fn terminals_prove_who_they_are_with_their_codes() {
    let dir = config();
    let gw = start(&dir);
    let port = gw.addrs["jt808 tcp"];
    let mut conn = TcpStream::connect(port).unwrap();
    // Before authentication: no ack, no record.
    conn.write_all(&location(0x20)).unwrap();
    assert_eq!(read_frame(&mut conn, Duration::from_secs(1)), None, "acked before authentication");
    // Registration: a random code, kept in the file before it was sent.
    conn.write_all(&unhex(REGISTER)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, &body[..3]), (0x8100, &[0x00, 0x24, 0x00][..]));
    let code = String::from_utf8(body[3..].to_vec()).unwrap();
    assert!(code.len() == 32 && code.bytes().all(|b| b.is_ascii_hexdigit()), "{code}");
    let kept = std::fs::read_to_string(dir.join("codes.tsv")).unwrap();
    assert!(kept.contains(&format!("14130567872\t{code}\n")), "{kept}");
    // The terminal's number is not its code: result 1, and the connection closes.
    conn.write_all(&auth("14130567872", 0x25)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, body[4]), (0x8001, 1));
    assert_eq!(read_frame(&mut conn, Duration::from_secs(10)), None, "still open after a wrong code");

    // With its code: taken, acked, and commands reach it.
    let mut conn = TcpStream::connect(port).unwrap();
    conn.write_all(&auth(&code, 0x26)).unwrap();
    assert_eq!(parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap()).1[4], 0);
    conn.write_all(&location(0x27)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, &body[..2]), (0x8001, &[0x00, 0x27][..]));
    let endpoint = gw.addrs["metrics http"];
    let (status, body) =
        http(endpoint, "POST", "/devices/jt808/14130567872/commands", Some(TOKEN), r#""query_location""#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parsed(&read_frame(&mut conn, Duration::from_secs(10)).unwrap()).0, 0x8201);
    // Someone registering in its name gets result 3, and the code stays the terminal's.
    let mut other = TcpStream::connect(port).unwrap();
    other.write_all(&unhex(REGISTER)).unwrap();
    let (id, body) = parsed(&read_frame(&mut other, Duration::from_secs(20)).unwrap());
    assert_eq!((id, body[2]), (0x8100, 3));
    // Unauthenticated, it took nothing over: the terminal's connection is still its own.
    conn.write_all(&location(0x29)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, &body[..2]), (0x8001, &[0x00, 0x29][..]));
    let (_, metrics) = http(endpoint, "GET", "/metrics", None, "");
    assert!(metrics.contains("reason=\"unauthenticated\"} 1"), "{metrics}");
    drop((conn, other));
    assert_eq!(gw.stop(), Some(0));

    // An operator enrolls a terminal with the code another platform gave it; after a
    // restart both terminals authenticate with their codes.
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.join("codes.tsv")).unwrap();
    file.write_all(b"13800138000\tAUTH1234\n").unwrap();
    drop(file);
    let gw = start(&dir);
    let port = gw.addrs["jt808 tcp"];
    let mut conn = TcpStream::connect(port).unwrap();
    conn.write_all(&auth(&code, 0x28)).unwrap();
    assert_eq!(parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap()).1[4], 0, "the code outlived a restart");
    let mut enrolled = TcpStream::connect(port).unwrap();
    enrolled.write_all(&jt808_wire("0102 0008 013800138000 0001 4155544831323334")).unwrap();
    assert_eq!(parsed(&read_frame(&mut enrolled, Duration::from_secs(20)).unwrap()).1[4], 0, "enrolled");
    drop((conn, enrolled));
    assert_eq!(gw.stop(), Some(0));
    let records = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    assert!(!records.contains("\"0x0200\",\"seq\":32"), "the unauthenticated location was stored");
    assert!(records.contains("\"message_type\":\"0x0200\",\"seq\":39"), "{records}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `jt808_accept_unauthenticated` serves terminals as before authentication was enforced.
#[test]
fn the_opt_out_takes_terminals_as_before() {
    let dir = config();
    std::fs::write(
        dir.join("trackgate.toml"),
        "[[listen]]\nprotocol = \"jt808\"\njt808_accept_unauthenticated = true\n",
    )
    .unwrap();
    let args: Vec<String> = ["--config", dir.join("trackgate.toml").to_str().unwrap()].map(str::to_owned).to_vec();
    let gw = Gateway::start_with(&["jt808"], &["jsonl:-".to_owned()], &args, &[]).unwrap();
    let mut conn = TcpStream::connect(gw.addrs["jt808 tcp"]).unwrap();
    conn.write_all(&location(0x20)).unwrap();
    let (id, _) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!(id, 0x8001, "acked without authentication");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node of a cluster on `nats`, its JT808 listener enforcing authentication, with `enrolled`
/// as its auth file (enrollment only, in a cluster).
fn cluster_node(nats: &NatsServer, name: &str, enrolled: &str) -> (Gateway, PathBuf) {
    let dir = temp_path(&format!("jt808-cluster-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("codes.tsv"), enrolled).unwrap();
    std::fs::write(dir.join("trackgate.toml"), "[[listen]]\nprotocol = \"jt808\"\njt808_auth_file = \"codes.tsv\"\n")
        .unwrap();
    let args: Vec<String> = [
        "--config",
        dir.join("trackgate.toml").to_str().unwrap(),
        "--cluster",
        &format!("nats://{}", nats.url()),
        "--node",
        name,
    ]
    .map(str::to_owned)
    .to_vec();
    let sink = format!("jsonl:{}", dir.join("records.jsonl").display());
    (Gateway::start_with(&["jt808"], &[sink], &args, &[]).expect("the node starts"), dir)
}

/// The result of authenticating with `code` on a new connection to `gw`.
fn authenticated(gw: &Gateway, code: &str) -> u8 {
    let mut conn = TcpStream::connect(gw.addrs["jt808 tcp"]).unwrap();
    conn.write_all(&auth(code, 0x30)).unwrap();
    parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap()).1[4]
}

/// In a cluster the codes are the cluster's: a terminal registered on one node authenticates
/// on another, registering again anywhere gets result 3, a code enrolled in one node's file
/// works on every node, and a deregistration on one node voids the code on all.
#[test]
fn a_terminal_registered_on_one_node_authenticates_on_another() {
    let nats = NatsServer::start();
    let (a, dir_a) = cluster_node(&nats, "a", "13800138000\tAUTH1234\n");
    let (b, dir_b) = cluster_node(&nats, "b", "");
    let mut conn = TcpStream::connect(a.addrs["jt808 tcp"]).unwrap();
    conn.write_all(&unhex(REGISTER)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, body[2]), (0x8100, 0));
    let code = String::from_utf8(body[3..].to_vec()).unwrap();
    drop(conn);
    assert!(
        !std::fs::read_to_string(dir_a.join("codes.tsv")).unwrap().contains(&code),
        "kept in the cluster, not the file"
    );

    // On B: the code is taken, a wrong one is not, and a position is acked and stored there.
    let mut conn = TcpStream::connect(b.addrs["jt808 tcp"]).unwrap();
    conn.write_all(&auth(&code, 0x31)).unwrap();
    assert_eq!(parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap()).1[4], 0, "B knows A's code");
    conn.write_all(&location(0x32)).unwrap();
    let (id, body) = parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap());
    assert_eq!((id, &body[..2]), (0x8001, &[0x00, 0x32][..]));
    assert_eq!(authenticated(&b, "0123456789abcdef0123456789abcdef"), 1);
    let mut again = TcpStream::connect(b.addrs["jt808 tcp"]).unwrap();
    again.write_all(&unhex(REGISTER)).unwrap();
    assert_eq!(parsed(&read_frame(&mut again, Duration::from_secs(20)).unwrap()).1[2], 3, "registered already, on A");

    // A's file enrolled a terminal for the whole cluster.
    let mut enrolled = TcpStream::connect(b.addrs["jt808 tcp"]).unwrap();
    enrolled.write_all(&jt808_wire("0102 0008 013800138000 0001 4155544831323334")).unwrap();
    assert_eq!(parsed(&read_frame(&mut enrolled, Duration::from_secs(20)).unwrap()).1[4], 0, "enrolled on A");

    // Deregistered on B: void on A too.
    conn.write_all(&jt808_wire("0003 0000 014130567872 0033")).unwrap();
    assert_eq!(parsed(&read_frame(&mut conn, Duration::from_secs(20)).unwrap()).0, 0x8001);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while authenticated(&a, &code) == 0 {
        assert!(std::time::Instant::now() < deadline, "A still takes the deregistered code");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop((conn, again, enrolled));
    assert_eq!(b.stop(), Some(0));
    let records = std::fs::read_to_string(dir_b.join("records.jsonl")).unwrap();
    assert!(records.contains("\"message_type\":\"0x0200\",\"seq\":50"), "{records}");
    drop(a);
    let _ = (std::fs::remove_dir_all(&dir_a), std::fs::remove_dir_all(&dir_b));
}
