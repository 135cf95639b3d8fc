//! The budget for partial frames over real sockets: connections that each send the start of a
//! frame and nothing more hold read buffers; past `limits.partial_bytes` the ones holding the
//! longest are closed, the newest stay and can finish their frames, and whole frames from
//! other devices are served throughout.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use trackgate::codecs::gt06;

mod support;
use support::frames::gt06_login;
use support::gateway::{closed_within, http, read_ack, temp_path, Gateway};

/// A gauge or counter's value in the endpoint's text.
fn metric(endpoint: SocketAddr, line_start: &str) -> u64 {
    let (_, text) = http(endpoint, "GET", "/metrics", None, "");
    text.lines().find_map(|l| l.strip_prefix(line_start)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Waits (up to 10 s) for a metric to read `want`.
fn wait_metric(endpoint: SocketAddr, line_start: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(endpoint, line_start) != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(metric(endpoint, line_start), want, "{line_start}");
}

#[test]
fn the_longest_partial_senders_are_closed_past_the_budget() {
    let dir = temp_path("partial-budget");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("trackgate.toml");
    // Sixteen 4 KiB read buffers.
    std::fs::write(&config, "[limits]\npartial_bytes = 65536\nread_buffer = 4096\n").unwrap();
    let args = ["--config", config.to_str().unwrap(), "--metrics", "127.0.0.1:0", "--shards", "2"].map(str::to_owned);
    let sink = format!("jsonl:{}", dir.join("records.jsonl").display());
    let gw = Gateway::start_with(&["gt06"], &[sink], &args, &[]).unwrap();
    let (port, endpoint) = (gw.addrs["gt06 tcp"], gw.addrs["metrics http"]);
    let held = "trackgate_partial_frame_bytes ";
    let shed = "trackgate_connections_closed_total{protocol=\"gt06\",transport=\"tcp\",reason=\"partial_budget\"} ";

    let logins: Vec<Vec<u8>> = (0..24).map(|i| gt06_login(&format!("35800000000{i:04}"), 1)).collect();
    let mut senders = Vec::new();
    for (i, login) in logins.iter().enumerate() {
        let mut conn = TcpStream::connect(port).unwrap();
        conn.write_all(&login[..4]).unwrap();
        senders.push(conn);
        // One at a time, so that the gateway sees them begin in this order.
        wait_metric(endpoint, held, 4096 * (i as u64 + 1).min(16));
    }
    wait_metric(endpoint, shed, 8);
    for (i, conn) in senders.iter_mut().enumerate() {
        if i < 8 {
            assert!(closed_within(conn, Duration::from_secs(10)), "sender {i} was left open");
        } else {
            assert!(!closed_within(conn, Duration::from_millis(300)), "sender {i} was closed");
        }
    }

    // The newest finish their frames and are served; a device sending whole frames is too.
    let last = senders.last_mut().unwrap();
    last.write_all(&logins[23][4..]).unwrap();
    assert_eq!(read_ack(last, Duration::from_secs(10)), Some(gt06::ack(false, 0x01, 1)));
    let mut device = TcpStream::connect(port).unwrap();
    device.write_all(&gt06_login("358000000009999", 7)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(10)), Some(gt06::ack(false, 0x01, 7)));
    wait_metric(endpoint, held, 4096 * 15);
    drop(senders);
    wait_metric(endpoint, held, 0);
}
