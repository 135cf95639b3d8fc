//! The takeover policy over real sockets: an impostor logging in with a device's IMEI from
//! another address while the device reports is refused (its records kept, marked), the device
//! keeps its connection and its commands; the same device's silence lets a newcomer take over.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use trackgate::codecs::gt06;

mod support;
use support::frames::{gt06_heartbeat, gt06_login, read_command};
use support::gateway::{connect_from, http, read_ack, temp_path, Gateway};

const TOKEN: &str = "takeover-0123456789abcdef";
const IMEI: &str = "358000000000777";

fn logged_in(mut device: TcpStream, serial: u16) -> TcpStream {
    device.write_all(&gt06_login(IMEI, serial)).unwrap();
    assert_eq!(read_ack(&mut device, Duration::from_secs(20)), Some(gt06::ack(false, 0x01, serial)));
    device
}

fn heartbeat(device: &mut TcpStream, serial: u16) -> Option<Vec<u8>> {
    device.write_all(&gt06_heartbeat(serial)).unwrap();
    read_ack(device, Duration::from_secs(5))
}

#[test]
fn an_impostor_from_another_address_does_not_take_a_live_device_over() {
    let dir = temp_path("takeover");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = dir.join("trackgate.toml");
    std::fs::write(&config, "commands_token_file = \"token\"\n[limits]\ntakeover_window = 2\n").unwrap();
    let records = dir.join("records.jsonl");
    let args: Vec<String> =
        ["--config", config.to_str().unwrap(), "--metrics", "127.0.0.1:0"].map(str::to_owned).to_vec();
    let gw = Gateway::start_with(&["gt06"], &[format!("jsonl:{}", records.display())], &args, &[]).unwrap();
    let (port, endpoint) = (gw.addrs["gt06 tcp"], gw.addrs["metrics http"]);

    let mut device = logged_in(connect_from([127, 0, 0, 1], port), 1);
    let mut impostor = logged_in(connect_from([127, 0, 0, 2], port), 1);
    // The device keeps its connection and its commands.
    assert_eq!(heartbeat(&mut device, 2), Some(gt06::ack(false, 0x13, 2)));
    let (code, body) = http(endpoint, "POST", &format!("/devices/gt06/{IMEI}/commands"), Some(TOKEN), "RELAY,1#");
    assert_eq!(code, 200, "{body}");
    assert!(read_command(&mut device, Duration::from_secs(5)).is_some(), "the command went to the device");
    let (_, metrics) = http(endpoint, "GET", "/metrics", None, "");
    assert!(metrics.contains("trackgate_takeovers_refused_total{protocol=\"gt06\",transport=\"tcp\"} 1"), "{metrics}");
    assert!(gw.said("refused; this connection's records are marked takeover_refused", Duration::from_secs(5)));
    assert!(!gw.last_words.lock().unwrap().iter().any(|l| l.contains(IMEI)), "the id in the log");

    // Silent past the window, the device is taken over from anywhere.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(heartbeat(&mut impostor, 2), Some(gt06::ack(false, 0x13, 2)));
    device.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while !matches!(std::io::Read::read(&mut device, &mut buf), Ok(0) | Err(_)) {
        assert!(Instant::now() < deadline, "the silent device's connection stays open");
    }
    // And a reconnect from the address holding it is the device itself.
    let _back = logged_in(connect_from([127, 0, 0, 2], port), 3);
    assert!(matches!(std::io::Read::read(&mut impostor, &mut buf), Ok(0) | Err(_)));
    drop(gw);

    let text = std::fs::read_to_string(&records).unwrap();
    let logins: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "login")
        .collect();
    let marked: Vec<bool> = logins.iter().map(|r| r["attributes"]["takeover_refused"] == true).collect();
    assert_eq!(marked, [false, true, false], "only the refused login is marked, and every login is kept");
    let _ = std::fs::remove_dir_all(&dir);
}
