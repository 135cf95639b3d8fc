//! `trackgate serve` over real loopback sockets: the binary is started as a user starts it,
//! devices connect, and the sink file is read back after a SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/jt808.rs"]
mod jt808;
use jt808::jt808_frame;

struct Gateway {
    child: Child,
    tcp: SocketAddr,
    udp: SocketAddr,
    sink: PathBuf,
}

impl Gateway {
    fn start(extra: &[&str]) -> Gateway {
        Gateway::start_for("nmea", extra)
    }

    fn start_for(protocol: &str, extra: &[&str]) -> Gateway {
        let sink = std::env::temp_dir().join(format!("trackgate-serve-{}-{}.jsonl", std::process::id(), rand_suffix()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_trackgate"))
            .args([
                "serve",
                "--listen",
                &format!("{protocol}=127.0.0.1:0"),
                "--sink",
                &format!("jsonl:{}", sink.display()),
            ])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("trackgate serve starts");
        // The listening lines come first, one per socket (contract §2).
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (mut tcp, mut udp) = (None, None);
        let mut line = String::new();
        // GT06 is served on TCP only (contract §2).
        let wants_udp = protocol != "gt06";
        while tcp.is_none() || (wants_udp && udp.is_none()) {
            line.clear();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "serve exited before listening");
            let addr = |l: &str| l.trim().rsplit(' ').next().unwrap().parse::<SocketAddr>().unwrap();
            if line.starts_with(&format!("listening {protocol} tcp ")) {
                tcp = Some(addr(&line));
            } else if line.starts_with(&format!("listening {protocol} udp ")) {
                udp = Some(addr(&line));
            }
        }
        // Keep draining stderr so the gateway never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Gateway { child, tcp: tcp.unwrap(), udp: udp.unwrap_or_else(|| ([127, 0, 0, 1], 9).into()), sink }
    }

    /// Sends SIGTERM and returns the exit code and the sink's records.
    fn stop(mut self) -> (Option<i32>, Vec<serde_json::Value>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        let text = std::fs::read_to_string(&self.sink).unwrap_or_default();
        let _ = std::fs::remove_file(&self.sink);
        (status.code(), text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    /// Waits (bounded) until the sink holds `n` records: the gateway commits asynchronously.
    fn wait_for_records(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let count = std::fs::read_to_string(&self.sink).map(|t| t.lines().count()).unwrap_or(0);
            if count >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the sink did not reach {n} records");
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

fn with_checksum(body: &str) -> String {
    let cs = body.bytes().fold(0u8, |a, b| a ^ b);
    format!("${body}*{cs:02X}\r\n")
}

fn rmc(second: u32) -> String {
    with_checksum(&format!("GPRMC,1015{second:02}.000,A,5130.1234,N,00007.6543,W,12.5,87.3,151125,,,A"))
}

#[test]
fn tcp_records_split_at_every_point_reach_the_sink_and_shutdown_flushes() {
    let gw = Gateway::start(&[]);
    // One device whose stream arrives in pieces of every size from 1 to 9 bytes, with junk
    // between sentences: every sentence must arrive, the junk must cost only itself.
    let mut stream = String::from("$PGID,359853000144328*0F\r\n");
    for s in 0..20 {
        stream.push_str(&rmc(s));
        if s % 5 == 0 {
            stream.push_str("\u{1}GET / HTTP/1.1\r\n");
        }
    }
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    conn.set_nodelay(true).unwrap();
    let bytes = stream.as_bytes();
    let mut pos = 0;
    let mut size = 1;
    while pos < bytes.len() {
        let end = (pos + size).min(bytes.len());
        conn.write_all(&bytes[pos..end]).unwrap();
        pos = end;
        size = size % 9 + 1;
    }
    gw.wait_for_records(21);
    drop(conn);
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    assert_eq!(records.len(), 21);
    assert_eq!(records[0]["kind"], "login");
    for (i, r) in records[1..].iter().enumerate() {
        assert_eq!(r["device_id"], "359853000144328");
        assert_eq!(r["fix_time"], format!("2025-11-15T10:15:{i:02}.000Z"));
        assert!(r["received_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn many_devices_at_once_over_tcp_and_udp() {
    let gw = Gateway::start(&[]);
    let mut threads = Vec::new();
    for d in 0..40u32 {
        let (tcp, udp) = (gw.tcp, gw.udp);
        threads.push(std::thread::spawn(move || {
            if d % 2 == 0 {
                let mut c = TcpStream::connect(tcp).unwrap();
                c.write_all(format!("IMEI 3598530001{d:05}\r\n").as_bytes()).unwrap();
                for s in 0..5 {
                    c.write_all(rmc(s).as_bytes()).unwrap();
                }
            } else {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.send_to(format!("$IMEI=3598530001{d:05}").as_bytes(), udp).unwrap();
                for s in 0..5 {
                    // Pace datagrams a little: UDP on loopback may drop under a burst.
                    std::thread::sleep(Duration::from_millis(5));
                    sock.send_to(rmc(s).as_bytes(), udp).unwrap();
                }
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    gw.wait_for_records(240);
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    // Every device's positions carry its own id: no session state leaks between devices.
    for d in 0..40u32 {
        let id = format!("3598530001{d:05}");
        let mine = records.iter().filter(|r| r["device_id"] == id.as_str()).count();
        assert_eq!(mine, 6, "device {id}");
    }
}

#[test]
fn idle_connections_are_closed() {
    let gw = Gateway::start(&["--idle-timeout", "1"]);
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    conn.write_all(rmc(1).as_bytes()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The gateway sends nothing to NMEA devices, so the first read returns at the close.
    let mut byte = [0u8; 1];
    assert_eq!(conn.read(&mut byte).unwrap(), 0, "the gateway closed the idle connection");
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    assert_eq!(records.len(), 1);
}

#[test]
fn a_partial_sentence_at_shutdown_is_judged_not_lost() {
    let gw = Gateway::start(&[]);
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    // A whole sentence without its terminator: at shutdown it is the last line of the stream.
    conn.write_all(rmc(7).trim_end().as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["fix_time"], "2025-11-15T10:15:07.000Z");
}

#[test]
fn an_unknown_sink_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_trackgate")).args(["serve", "--sink", "kafka:x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown sink kind"));
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const TELTONIKA_IMEI: &str = "000f333536333037303432343431303133";
const TELTONIKA_C8: &str = "000000000000004C08010000016818D500580009C28D9F1CB3757A00BE00C60F0053000F06F0011503C80001011D00FC0007423799180053CDF80DCE426F430F88190BB8560BB802F100005AA110002887E000010000EE8D";

#[test]
fn teltonika_tcp_handshake_and_acks_are_byte_exact_and_follow_the_sink() {
    let gw = Gateway::start_for("teltonika", &[]);
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(&unhex(TELTONIKA_IMEI)).unwrap();
    let mut answer = [0u8; 1];
    conn.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [0x01]);
    // The packet split at an awkward point: the ack comes only once the record is committed.
    let packet = unhex(TELTONIKA_C8);
    conn.write_all(&packet[..13]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.write_all(&packet[13..]).unwrap();
    let mut ack = [0u8; 4];
    conn.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0, 0, 0, 1]);
    // Acknowledged means in the sink: read it before any shutdown.
    let text = std::fs::read_to_string(&gw.sink).unwrap();
    assert!(text.lines().any(|l| l.contains("\"latitude\":48.1523066")), "{text}");
    // A damaged packet is not acked; the next good one is.
    let mut bad = packet.clone();
    bad[30] ^= 1;
    conn.write_all(&bad).unwrap();
    conn.write_all(&packet).unwrap();
    conn.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0, 0, 0, 1]);
    drop(conn);
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    assert_eq!(records.len(), 3, "login and two positions");
    assert!(records.iter().all(|r| r["device_id"] == "356307042441013"));
}

#[test]
fn teltonika_udp_ack_echoes_the_device_ids() {
    let gw = Gateway::start_for("teltonika", &[]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let datagram = unhex("003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001");
    sock.send_to(&datagram, gw.udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(from, gw.udp);
    assert_eq!(&buf[..n], unhex("0005CAFE010501"));
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["device_id"], "352093086403655");
}

const GT06_LOGIN: &str = "78780D01012345678901234500018CDD0D0A";
const GT06_LOCATION: &str = "78781F120B081D112E10CF027AC7EB0C46584900148F01CC00287D001FB80003 80810D0A";
const GT06_HEARTBEAT: &str = "78780A13440104000100050845 0D0A";
const GT06_TIME_REQUEST: &str = "7878058A0006 88290D0A";

fn unhex_spaced(s: &str) -> Vec<u8> {
    unhex(&s.replace(' ', ""))
}

fn read_frame(conn: &mut TcpStream) -> Vec<u8> {
    let mut head = [0u8; 3];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head[..2], &[0x78, 0x78]);
    let mut rest = vec![0u8; usize::from(head[2]) + 2];
    conn.read_exact(&mut rest).unwrap();
    [head.to_vec(), rest].concat()
}

#[test]
fn gt06_acks_are_byte_exact_and_follow_the_sink() {
    let gw = Gateway::start_for("gt06", &[]);
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(&unhex_spaced(GT06_LOGIN)).unwrap();
    assert_eq!(read_frame(&mut conn), unhex("787805010001D9DC0D0A"));
    // A position split mid-frame: its ack comes once the record is in the sink.
    let location = unhex_spaced(GT06_LOCATION);
    conn.write_all(&location[..9]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.write_all(&location[9..]).unwrap();
    assert_eq!(read_frame(&mut conn), unhex("787805120003903F0D0A"));
    let text = std::fs::read_to_string(&gw.sink).unwrap();
    assert!(text.lines().any(|l| l.contains("\"message_type\":\"0x12\"") && l.contains("123456789012345")), "{text}");
    // A damaged frame costs itself: no ack for it, the heartbeat after it is acked.
    let mut bad = location.clone();
    bad[12] ^= 1;
    conn.write_all(&bad).unwrap();
    conn.write_all(&unhex_spaced(GT06_HEARTBEAT)).unwrap();
    assert_eq!(read_frame(&mut conn), unhex("787805130005AFD50D0A"));
    // The time request is answered with the server's UTC time and the request's serial.
    conn.write_all(&unhex_spaced(GT06_TIME_REQUEST)).unwrap();
    let reply = read_frame(&mut conn);
    assert_eq!(&reply[..4], &[0x78, 0x78, 0x0B, 0x8A]);
    assert!(reply[4] >= 24, "year {} after 2024", reply[4]);
    assert_eq!(&reply[10..12], &[0x00, 0x06]);
    drop(conn);
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["login", "position", "heartbeat", "time_request"]);
    assert!(records.iter().all(|r| r["device_id"] == "123456789012345"));
}

/// Reads one JT808 frame (flag to flag) off the connection.
fn read_jt808(conn: &mut TcpStream) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut byte = [0u8];
    loop {
        conn.read_exact(&mut byte).unwrap();
        frame.push(byte[0]);
        if byte[0] == 0x7e && frame.len() > 1 {
            return frame;
        }
    }
}

/// Header and body (hex, spaces allowed) as a JT808 frame.
fn jt808_wire(header_and_body: &str) -> Vec<u8> {
    jt808_frame(&unhex(&header_and_body.replace(' ', "")))
}

#[test]
fn jt808_register_auth_and_location_acks_are_byte_exact() {
    // jt808.md §8.2 and §8.3; the gateway's own serial counts 1, 2, 3 … per connection.
    let gw = Gateway::start_for("jt808", &[]);
    let mut conn = TcpStream::connect(gw.tcp).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(&unhex("7E0100002D0141305678720024002C012F373031313142534A2D41362D424400000000000000000000003035363738373201D4C14238383838386D7E")).unwrap();
    // 0x8100: serial 1, answering 0x0024, result 0, auth code = the device id "14130567872".
    assert_eq!(read_jt808(&mut conn), jt808_wire("8100 000E 014130567872 0001 0024 00 3134313330353637383732"));
    conn.write_all(&unhex("7E01020008014130567872002541555448313233340E7E")).unwrap();
    assert_eq!(read_jt808(&mut conn), unhex("7E80010005014130567872000200250102008C7E"));
    // A location split mid-frame: acked once it is in the sink.
    let location = jt808_wire("0200 002C 014130567872 0026 00000000 00040001 005DE1F7 065C6CEF 0000 0000 0000 170117100442 01040000A900 2A020000 30011B 310103");
    conn.write_all(&location[..20]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    conn.write_all(&location[20..]).unwrap();
    assert_eq!(read_jt808(&mut conn), jt808_wire("8001 0005 014130567872 0003 0026 0200 00"));
    let text = std::fs::read_to_string(&gw.sink).unwrap();
    assert!(text.lines().any(|l| l.contains("\"message_type\":\"0x0200\"")), "acked only once in the sink: {text}");
    // A damaged frame costs itself; the heartbeat after it is acked.
    let mut bad = location.clone();
    bad[30] ^= 1;
    conn.write_all(&bad).unwrap();
    conn.write_all(&jt808_wire("0002 0000 014130567872 0027")).unwrap();
    assert_eq!(read_jt808(&mut conn), jt808_wire("8001 0005 014130567872 0004 0027 0002 00"));
    drop(conn);
    // The same terminal over UDP: the datagram is answered to its sender.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    udp.send_to(&jt808_wire("0002 0000 014130567872 0028"), gw.udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(buf[..n], jt808_wire("8001 0005 014130567872 0001 0028 0002 00"));
    let (code, records) = gw.stop();
    assert_eq!(code, Some(0));
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["register", "auth", "position", "heartbeat", "heartbeat"]);
    assert!(records.iter().all(|r| r["device_id"] == "14130567872"));
}
