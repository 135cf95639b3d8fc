//! The operator's HTTP endpoint against broken and hostile requests, over real sockets:
//! conflicting lengths, chunked bodies, oversized heads and bodies, bare line feeds, slow
//! heads, and more connections than it serves at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use trackgate::codecs::gt06;

mod support;
use support::frames::{gt06_login, read_command};
use support::gateway::{read_ack, temp_path, Gateway};

const TOKEN: &str = "http-limits-0123456789abcdef";

/// A gateway with GT06 and its endpoint taking commands.
fn gateway() -> (Gateway, std::path::PathBuf) {
    let dir = temp_path("http");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(dir.join("trackgate.toml"), "commands_token_file = \"token\"\n").unwrap();
    let args: Vec<String> = ["--config", dir.join("trackgate.toml").to_str().unwrap(), "--metrics", "127.0.0.1:0"]
        .map(str::to_owned)
        .to_vec();
    let gw = Gateway::start_with(&["gt06"], &["jsonl:-".to_owned()], &args, &[]).unwrap();
    (gw, dir)
}

/// Sends `request` as it is and reads the answer to the end: its status code, or 0 for a
/// connection closed without one.
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = c.write_all(request);
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    (text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), text)
}

#[test]
fn broken_framing_is_answered_not_misread() {
    let (gw, dir) = gateway();
    let endpoint = gw.addrs["metrics http"];
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let post = |extra: &str, body: &str| {
        format!("POST /devices/gt06/358000000000888/commands HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n{body}")
            .into_bytes()
    };
    // Two lengths that disagree: 400, at once (it used to hang).
    let (code, _) = raw(endpoint, &post("Content-Length: 6\r\nContent-Length: 7\r\n", "WHERE#"));
    assert_eq!(code, 400);
    // A head over 16 KiB: 431.
    let big = format!("X-Padding: {}\r\n", "a".repeat(20 * 1024));
    assert_eq!(raw(endpoint, &post(&big, "")).0, 431);
    // A chunked body over 4 KiB: 413.
    let chunk = format!("1400\r\n{}\r\n0\r\n\r\n", "A".repeat(0x1400));
    assert_eq!(raw(endpoint, &post("Transfer-Encoding: chunked\r\n", &chunk)).0, 413);
    // Bare line feeds: answered, not left waiting.
    let (code, body) = raw(endpoint, b"GET /healthz HTTP/1.1\nHost: x\n\n");
    assert_eq!(code, 200, "{body}");

    // A chunked body with a Content-Length too: the command is what the chunks carry, not
    // the chunk framing.
    let mut device = TcpStream::connect(gw.addrs["gt06 tcp"]).unwrap();
    device.write_all(&gt06_login("358000000000888", 1)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, 1)));
    let (code, body) =
        raw(endpoint, &post("Transfer-Encoding: chunked\r\nContent-Length: 17\r\n", "6\r\nWHERE#\r\n0\r\n\r\n"));
    assert_eq!(code, 200, "{body}");
    let command = read_command(&mut device, Duration::from_secs(5)).unwrap();
    assert!(command.windows(6).any(|w| w == b"WHERE#"), "{command:02x?}");
    assert!(!command.windows(3).any(|w| w == b"6\r\n"), "the chunk framing reached the device");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that never finishes its head is cut off; and past the connection cap, clients
/// wait for a slot rather than take descriptors: the endpoint answers again once the idle
/// ones are gone.
#[test]
fn slow_heads_are_cut_off_and_connections_are_capped() {
    let (gw, dir) = gateway();
    let endpoint = gw.addrs["metrics http"];
    let mut slow = TcpStream::connect(endpoint).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(15), "a head never finished holds its connection");

    let idle: Vec<TcpStream> =
        (0..trackgate::ops::http::MAX_CONNECTIONS).map(|_| TcpStream::connect(endpoint).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting = TcpStream::connect(endpoint).unwrap();
    waiting.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    waiting.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(waiting.read(&mut [0u8; 64]).is_err(), "answered past the cap");
    // The idle ones time out on their heads; then the waiting one is served.
    waiting.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut answer = Vec::new();
    let _ = waiting.read_to_end(&mut answer);
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    drop(idle);
    let _ = std::fs::remove_dir_all(&dir);
}
