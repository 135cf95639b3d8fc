//! The `trackgate` binary as a user runs it: arguments, input forms, output and exit codes
//! (docs/operations.md, docs/tools.md).

use std::io::Write;
use std::process::{Command, Output, Stdio};

mod support;
use support::frames::jt808_frame;
use support::hex;

fn trackgate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trackgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trackgate runs");
    // Feed stdin from another thread: the child's stdout must be drained while it reads, or
    // both sides block on full pipes.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        // The child may exit before reading everything (usage errors); that is not ours to fail.
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

const GOOD: &[u8] = b"$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B\r\n";

#[test]
fn raw_input_decodes_to_json_lines_and_exits_0() {
    let o = trackgate(&["decode", "--protocol", "nmea"], GOOD);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["schema"], 1);
    assert_eq!(out[0]["protocol"], "nmea");
    assert_eq!(out[0]["kind"], "position");
    assert_eq!(out[0]["fix_time"], "2017-01-10T00:10:31.000Z");
    assert!(out[0].get("received_at").is_none(), "decode never sets server time");
    assert!(out[0].get("course_deg").is_none(), "absent, not null");
}

#[test]
fn hex_input_with_comments_gives_the_same_records() {
    let text = format!("# a capture\n{}  # the RMC\n", hex(GOOD));
    let o = trackgate(&["decode", "--protocol", "nmea", "--hex", "-"], text.as_bytes());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(lines(&o), lines(&trackgate(&["decode", "--protocol", "nmea"], GOOD)));
}

#[test]
fn a_rejected_frame_prints_an_error_record_in_place_and_exits_1() {
    let mut input = GOOD.to_vec();
    input.extend_from_slice(b"$GPHDT,274.07,T*04\r\n");
    input.extend_from_slice(GOOD);
    let o = trackgate(&["decode", "--protocol", "nmea"], &input);
    assert_eq!(o.status.code(), Some(1));
    let out = lines(&o);
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[1],
        serde_json::json!({"kind": "error", "offset": GOOD.len(), "error": "bad checksum: computed 0x03, frame carries 0x04"})
    );
    assert_eq!(out[2]["kind"], "position");
}

#[test]
fn udp_hex_lines_are_datagrams() {
    // Without a terminator each datagram's sentence still ends with the datagram.
    let text = format!("{}\n{}\n", hex(b"$GPHDT,274.07,T*03"), hex(b"$GPHDT,,T*1B"));
    let o = trackgate(&["decode", "--protocol", "nmea", "--transport", "udp", "--hex"], text.as_bytes());
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(lines(&o).len(), 2);
    // As one TCP stream the same bytes are one line holding two spliced sentences.
    let o = trackgate(&["decode", "--protocol", "nmea", "--hex"], text.replace('\n', "").as_bytes());
    assert_eq!(lines(&o).len(), 2);
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for (args, input, needle) in [
        (&["decode", "--protocol", "traccar"][..], &b""[..], "unknown protocol"),
        (&["decode", "--protocol", "nmea", "--hex"][..], &b"24 4"[..], "odd number of hex digits"),
        (&["decode", "--protocol", "nmea", "--transport", "sctp"][..], &b""[..], "unknown transport"),
        (&["decode", "--protocol", "nmea", "/nonexistent/capture"][..], &b""[..], "cannot open"),
        (&["decode", "--protocol", "jt808", "--jt808-tz", "8"][..], &b""[..], "bad UTC offset"),
        (&["frobnicate"][..], &b""[..], "unrecognized subcommand"),
    ] {
        let o = trackgate(args, input);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A 2013-header JT808 frame for terminal `phone`.
fn jt808_message(id: u16, phone: &[u8; 6], serial: u16, body: &[u8]) -> Vec<u8> {
    let mut raw = id.to_be_bytes().to_vec();
    raw.extend_from_slice(&(body.len() as u16).to_be_bytes());
    raw.extend_from_slice(phone);
    raw.extend_from_slice(&serial.to_be_bytes());
    raw.extend_from_slice(body);
    jt808_frame(&raw)
}

#[test]
fn jt808_random_traffic_with_and_without_damage() {
    let phone = [0x01, 0x38, 0x12, 0x34, 0x56, 0x78];
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for serial in 0..300u16 {
        let r = next();
        if r % 4 == 0 {
            stream.extend(jt808_message(0x0002, &phone, serial, &[]));
            expected.push(("heartbeat", 0.0, serial));
            continue;
        }
        // 0x0200: alarm, status (positioned, south/west by the draw), lat, lon, altitude,
        // speed, course, time, then mileage, signal and satellites items. Values chosen so
        // 7E and 7D bytes turn up and get escaped.
        let lat = 0x7e7d00 + (r % 90_000_000);
        let lon = next() % 180_000_000;
        let south = r & 0x100 != 0;
        let mut body = Vec::new();
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&(0x2u32 | if south { 0x4 } else { 0 }).to_be_bytes());
        body.extend_from_slice(&lat.to_be_bytes());
        body.extend_from_slice(&lon.to_be_bytes());
        body.extend_from_slice(&[0x00, 0x7e, 0x01, 0xf4, 0x00, 0x5a]);
        body.extend_from_slice(&[0x25, 0x11, 0x23, 0x10, 0x20, 0x30]);
        body.extend_from_slice(&[0x01, 0x04, 0x00, 0x00, 0x7d, 0x7e, 0x30, 0x01, 0x1b, 0x31, 0x01, 0x09]);
        let mut frame = jt808_message(0x0200, &phone, serial, &body);
        if r % 7 == 0 {
            // Damage a byte inside (never a flag): the check code must catch it.
            let at = 3 + (next() as usize % (frame.len() - 5));
            frame[at] = if frame[at] == 0x33 { 0x34 } else { 0x33 };
            expected.push(("error", 0.0, serial));
        } else {
            expected.push(("position", if south { -1.0 } else { 1.0 } * f64::from(lat) / 1e6, serial));
        }
        stream.extend(frame);
    }
    let o = trackgate(&["decode", "--protocol", "jt808"], &stream);
    assert_eq!(o.status.code(), Some(1), "damaged frames make the exit code 1");
    let out = lines(&o);
    assert_eq!(out.len(), expected.len());
    for (line, (kind, lat, serial)) in out.iter().zip(&expected) {
        assert_eq!(line["kind"], *kind, "{line}");
        if *kind == "error" {
            continue;
        }
        assert_eq!(line["device_id"], "13812345678");
        assert_eq!(line["seq"], *serial);
        if *kind == "position" {
            assert!((line["latitude"].as_f64().unwrap() - lat).abs() < 1e-9, "{line}");
            assert_eq!(line["altitude_m"], 126.0);
            assert_eq!(line["speed_kmh"], 50.0);
            assert_eq!(line["fix_time"], "2025-11-23T02:20:30Z", "GMT+8 by default");
            assert_eq!(line["attributes"]["odometer_m"], 0x7d7e * 100);
            assert_eq!(line["satellites"], 9);
        }
    }
    // The time zone option.
    let one = jt808_message(0x0200, &phone, 1, &{
        let mut b = vec![0u8; 22];
        b.extend_from_slice(&[0x25, 0x11, 0x23, 0x10, 0x20, 0x30]);
        b
    });
    let o = trackgate(&["decode", "--protocol", "jt808", "--jt808-tz", "+00:00"], &one);
    assert_eq!(lines(&o)[0]["fix_time"], "2025-11-23T10:20:30Z");
}

/// `len` bytes drawn from `alphabet` by a fixed xorshift, so a test is the same on every run.
fn pseudo_random(alphabet: &[u8], len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect()
}

#[test]
fn random_bytes_never_crash_the_decoder() {
    // Biased towards NMEA's alphabet so the decoder gets past its first checks.
    let input = pseudo_random(b"$GPRMC,0123456789.*ANSEW\r\n\x00\xff", 200_000);
    let o = trackgate(&["decode", "--protocol", "nmea"], &input);
    assert!(matches!(o.status.code(), Some(0 | 1)), "{:?}", o.status);
    for l in lines(&o) {
        assert!(l["kind"].is_string());
    }
    // The same for GT06, biased towards its start and stop markers and type numbers.
    let input = pseudo_random(b"\x78\x79\x0d\x0a\x01\x12\x13\x16\x17\x22\x69\x8a\x94\x00\xff", 200_000);
    for mode in ["strict", "lenient"] {
        let o = trackgate(&["decode", "--protocol", "gt06", "--gt06-crc", mode], &input);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{mode}: {:?}", o.status);
        assert!(lines(&o).iter().all(|l| l["kind"].is_string()));
    }
}

#[test]
fn teltonika_capture_decodes_with_the_imei_from_the_handshake() {
    let capture = "000f333536333037303432343431303133\n\
000000000000004C08010000016818D500580009C28D9F1CB3757A00BE00C60F0053000F06F0011503C80001011D00FC0007423799180053CDF80DCE426F430F88190BB8560BB802F100005AA110002887E000010000EE8D\n";
    let o = trackgate(&["decode", "--protocol", "teltonika", "--hex"], capture.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = lines(&o);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1]["device_id"], "356307042441013");
    assert_eq!(out[1]["latitude"], 48.1523066);
    assert_eq!(out[1]["attributes"]["io"]["16"], 2_656_224);
}

/// `--summary` adds one line on stderr (a packet of several records is one frame) and
/// changes nothing on stdout or in the exit code.
#[test]
fn decode_summary_counts_frames_records_and_rejections_by_reason() {
    let handshake = "000f333536333037303432343431303133\n";
    // A Codec 8 packet of two records, then the same packet with a byte changed (its CRC
    // no longer matches).
    let packet = "000000000000003F080200000174876E8000000F0DC39B209CCA800064005A09001E00000000000000000174876EA710\
                  000F0DC39B209CCA800064005A09001E0000000000000200008064";
    let damaged = packet.replacen("0F0DC39B", "0F0DC39C", 1);
    let capture = format!("{handshake}{packet}\n{damaged}\n");
    let plain = trackgate(&["decode", "--protocol", "teltonika", "--hex"], capture.as_bytes());
    let counted = trackgate(&["decode", "--protocol", "teltonika", "--hex", "--summary"], capture.as_bytes());
    assert_eq!(counted.stdout, plain.stdout);
    assert_eq!((counted.status.code(), plain.status.code()), (Some(1), Some(1)));
    assert!(plain.stderr.is_empty());
    let records = lines(&counted);
    assert_eq!(records.iter().filter(|r| r["kind"] == "position").count(), 2, "{records:?}");
    assert_eq!(
        String::from_utf8_lossy(&counted.stderr),
        "trackgate: 2 frames, 3 records, 1 rejected (bad checksum 1)\n"
    );
}

#[test]
fn corpus_verify_reports_each_case_and_a_summary() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus");
    let o = trackgate(&["corpus", "verify", dir], b"");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

#[test]
fn corpus_verify_fails_on_a_wrong_expectation_and_bless_repairs_it() {
    let dir = std::env::temp_dir().join(format!("trackgate-corpus-{}", std::process::id()));
    let case_dir = dir.join("nmea").join("test");
    std::fs::create_dir_all(&case_dir).unwrap();
    let case = case_dir.join("one.hex");
    std::fs::write(&case, format!("# one RMC\n{}\n", hex(GOOD))).unwrap();
    std::fs::write(case_dir.join("one.expected.jsonl"), "{\"kind\":\"position\"}\n").unwrap();

    let o = trackgate(&["corpus", "verify", dir.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("FAILED") && stdout.contains("not expected"), "{stdout}");
    assert!(stdout.trim_end().ends_with("0 passed, 1 failed"), "{stdout}");

    let o = trackgate(&["corpus", "bless", case.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0));
    let o = trackgate(&["corpus", "verify", dir.to_str().unwrap()], b"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gt06_capture_strict_and_lenient() {
    // A v1 login, a location with one flipped byte, a heartbeat (Concox's document's examples).
    let login = "78780D01012345678901234500018CDD0D0A";
    let mut location = "78781F120B081D112E10CF027AC7EB0C46584900148F01CC00287D001FB8000380810D0A".to_string();
    location.replace_range(20..22, "CE");
    let heartbeat = "78780A134401040001000508450D0A";
    let input = format!("{login}\n# damaged\n{location}\n{heartbeat}\n");
    let o = trackgate(&["decode", "--protocol", "gt06", "--hex"], input.as_bytes());
    assert_eq!(o.status.code(), Some(1));
    let l = lines(&o);
    assert_eq!(l.len(), 3);
    assert_eq!(l[0]["device_id"], "123456789012345");
    assert_eq!(l[1]["kind"], "error");
    assert_eq!(l[1]["offset"], 18);
    assert!(l[1]["error"].as_str().unwrap().starts_with("bad checksum"));
    assert_eq!(l[2]["kind"], "heartbeat");

    let o = trackgate(&["decode", "--protocol", "gt06", "--hex", "--gt06-crc", "lenient"], input.as_bytes());
    assert_eq!(o.status.code(), Some(0));
    let l = lines(&o);
    assert_eq!(l[1]["kind"], "position");
    assert_eq!(l[1]["attributes"]["crc_ok"], false);

    let o = trackgate(&["decode", "--protocol", "gt06", "--gt06-crc", "sloppy"], b"");
    assert_eq!(o.status.code(), Some(2));
}

/// `--protocol auto`: the capture's first bytes name its protocol (each datagram's with
/// `--transport udp`), as the gateway's auto listener does; a capture that opens as no
/// protocol is one error line and exit 1.
#[test]
fn decode_tells_the_protocol_with_auto() {
    let o = trackgate(&["decode", "--protocol", "auto"], GOOD);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lines(&o), lines(&trackgate(&["decode", "--protocol", "nmea"], GOOD)));
    // A JT808 heartbeat and an NMEA sentence, each a datagram of its own.
    let heartbeat = jt808_frame(&[0x00, 0x02, 0x00, 0x00, 0x01, 0x39, 0x12, 0x34, 0x56, 0x78, 0x00, 0x07]);
    let text = format!("{}\n{}\n", hex(&heartbeat), hex(b"$GPHDT,274.07,T*03"));
    let o = trackgate(&["decode", "--protocol", "auto", "--transport", "udp", "--hex"], text.as_bytes());
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let protocols: Vec<String> = lines(&o).iter().map(|r| r["protocol"].as_str().unwrap().to_owned()).collect();
    assert_eq!(protocols, ["jt808", "nmea"]);
    // Junk: one line for all of it.
    let o = trackgate(&["decode", "--protocol", "auto", "--summary"], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(o.status.code(), Some(1));
    let out = lines(&o);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["kind"], "error");
    assert!(out[0]["error"].as_str().unwrap().contains("no protocol begins as"), "{out:?}");
}
