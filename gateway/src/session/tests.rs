//! The session's decisions on a simulated clock, without sockets.

use super::*;
use trackgate_codecs::framing::RejectKind;
use trackgate_codecs::gt06;
use trackgate_codecs::teltonika;

fn settings() -> SessionSettings {
    SessionSettings { junk_bytes: 64, ..SessionSettings::new(StreamOptions::default()) }
}

fn gt06_login(imei: &str, serial: u16) -> Vec<u8> {
    let mut content = gt06::imei_to_bcd(imei).unwrap().to_vec();
    content.extend_from_slice(&[0x36, 0x08, 0x32, 0x00]);
    let mut out = Vec::new();
    gt06::encode_frame(&mut out, false, 0x01, &content, serial).unwrap();
    out
}

fn gt06_heartbeat(serial: u16) -> Vec<u8> {
    let mut out = Vec::new();
    gt06::encode_frame(&mut out, false, 0x13, &[0x44, 0x01, 0x04, 0x00, 0x01], serial).unwrap();
    out
}

fn jt808_heartbeat(serial: u16) -> Vec<u8> {
    use trackgate_codecs::jt808::{self, Edition, Terminal};
    let terminal = Terminal::for_device_id("14130567872", Edition::V2013).unwrap();
    jt808::encode(jt808::id::HEARTBEAT, &terminal, serial, &[]).unwrap()
}

/// The claim a step asked for, with the device it is for.
fn claim(s: &Session, step: &Step) -> Option<(String, Option<String>)> {
    let claim = step.claim.as_ref()?;
    Some((s.claimed()?.to_owned(), claim.release.as_deref().map(str::to_owned)))
}

fn wants(id: &str, release: Option<&str>) -> Option<(String, Option<String>)> {
    Some((id.to_owned(), release.map(str::to_owned)))
}

#[test]
fn a_login_claims_the_device_once_and_stamps_records() {
    let t0 = Instant::now();
    let mut s = Session::new(Protocol::Gt06, &settings(), t0);
    let mut out = Output::default();
    let login = gt06_login("123456789012345", 1);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let step = s.receive(&login, false, t0, wall, &mut out);
    assert_eq!((step.used, step.close), (login.len(), None));
    assert_eq!(claim(&s, &step), wants("123456789012345", None));
    assert_eq!((s.device_id(), s.claimed()), (Some("123456789012345"), Some("123456789012345")));
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.frames, 1);
    assert_eq!(out.records[0].received_at, Some(Timestamp::from_system_time(wall)));
    assert_eq!(out.replies, [gt06::ack(false, 0x01, 1)]);
    // The same device again is not a new claim.
    out.clear();
    let step = s.receive(&gt06_login("123456789012345", 2), false, t0, wall, &mut out);
    assert_eq!(step.claim, None);
    // Another IMEI on the same connection is, giving up the first.
    out.clear();
    let step = s.receive(&gt06_login("999999999999999", 3), false, t0, wall, &mut out);
    assert_eq!(claim(&s, &step), wants("999999999999999", Some("123456789012345")));
    assert_eq!(s.claimed(), Some("999999999999999"));
    // Away and back within one read: the device held is still the one held.
    out.clear();
    let mut there_and_back = gt06_login("123456789012345", 4);
    there_and_back.extend(gt06_login("999999999999999", 5));
    let step = s.receive(&there_and_back, false, t0, wall, &mut out);
    assert_eq!(claim(&s, &step), None);
    assert_eq!(s.claimed(), Some("999999999999999"));
    // Two identities in one read: the first was never held, the one held before is given up.
    out.clear();
    let mut both = gt06_login("111111111111111", 4);
    both.extend(gt06_login("222222222222222", 5));
    let step = s.receive(&both, false, t0, wall, &mut out);
    assert_eq!(claim(&s, &step), wants("222222222222222", Some("999999999999999")));
}

/// A JT808 terminal heard over UDP while a TCP connection holds it: the claim is refused,
/// tried again no sooner than a second later (on the session's clock, not the wall's),
/// and made again at once after the device was taken over elsewhere.
#[test]
fn a_refused_udp_claim_is_tried_again_after_a_second() {
    let t0 = Instant::now();
    let mut st = settings();
    st.stream.transport = Transport::Udp;
    let mut s = Session::new(Protocol::Jt808, &st, t0);
    let heartbeat = jt808_heartbeat(1);
    let mut out = Output::default();
    let step = s.receive(&heartbeat, true, t0, SystemTime::now(), &mut out);
    assert_eq!(claim(&s, &step), wants("14130567872", None));
    s.claim_refused(t0);
    assert_eq!(s.claimed(), None);
    for (after, again) in [(0, false), (999, false), (1000, true)] {
        let now = t0 + Duration::from_millis(after);
        let step = s.receive(&jt808_heartbeat(2), true, now, SystemTime::now(), &mut out);
        assert_eq!(step.claim.is_some(), again, "{after} ms after the refusal");
    }
    assert_eq!(s.claimed(), Some("14130567872"));
    s.claim_lost();
    let step = s.receive(&jt808_heartbeat(3), true, t0, SystemTime::now(), &mut out);
    assert_eq!(claim(&s, &step), wants("14130567872", None), "taken back when it speaks again");
}

/// NMEA has no commands and GT06 no UDP: their UDP peers never hold a device, so the
/// registry is never asked; over TCP every protocol's connection does.
#[test]
fn only_peers_that_can_take_commands_claim() {
    let t0 = Instant::now();
    let line = b"$PGID,359853000144328*0F\r\n";
    for (transport, claims) in [(Transport::Udp, false), (Transport::Tcp, true)] {
        let mut st = settings();
        st.stream.transport = transport;
        let mut s = Session::new(Protocol::Nmea, &st, t0);
        let step = s.receive(line, true, t0, SystemTime::now(), &mut Output::default());
        assert_eq!(s.device_id(), Some("359853000144328"));
        assert_eq!(step.claim.is_some(), claims, "{transport:?}");
    }
}

/// The acks of a read go out before any command framed with them, whatever the order
/// they were made in: a device reads its acks first.
#[test]
fn acks_go_out_before_commands() {
    let t0 = Instant::now();
    let mut s = Session::new(Protocol::Gt06, &settings(), t0);
    let mut out = Output::default();
    s.receive(&gt06_login("123456789012345", 1), false, t0, SystemTime::now(), &mut out);
    out.clear();
    let answer = s.command(&Downlink::Text("WHERE#".into()), &mut out).unwrap();
    assert!(answer.is_some(), "GT06 answers name the command's server flag");
    s.receive(&gt06_heartbeat(2), false, t0, SystemTime::now(), &mut out);
    let sent: Vec<&[u8]> = out.transmit().collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], gt06::ack(false, 0x13, 2));
    assert_eq!(sent[1], gt06::encode_command(1, "WHERE#", None, 1).unwrap());
    // A protocol that cannot carry a command frames nothing.
    let mut nmea = Session::new(Protocol::Nmea, &settings(), t0);
    out.clear();
    assert!(nmea.command(&Downlink::Text("x".into()), &mut out).is_err());
    assert_eq!(out.transmit().count(), 0);
}

#[test]
fn a_scanner_is_junk_but_a_device_with_a_bad_frame_is_not() {
    let t0 = Instant::now();
    let http = b"GET / HTTP/1.1\r\nHost: example\r\nUser-Agent: scanner/1.0\r\nAccept: */*\r\n\r\n";
    for protocol in Protocol::ALL {
        let mut s = Session::new(protocol, &settings(), t0);
        let mut out = Output::default();
        let mut buf = http.to_vec();
        let mut verdict = None;
        // However the decoder splits it, the scanner's bytes end up rejected.
        for _ in 0..4 {
            let step = s.receive(&buf, false, t0, SystemTime::now(), &mut out);
            buf.drain(..step.used);
            buf.extend_from_slice(http);
            if let Some(c) = step.close {
                verdict = Some(c);
                break;
            }
        }
        assert_eq!(verdict, Some(CloseReason::Junk), "{protocol}");
        assert!(out.records.is_empty() && out.replies.is_empty(), "{protocol}");
    }
    // A GT06 device that logged in and then sends garbage keeps its connection.
    let mut s = Session::new(Protocol::Gt06, &settings(), t0);
    let mut out = Output::default();
    s.receive(&gt06_login("123456789012345", 1), false, t0, SystemTime::now(), &mut out);
    let junk = [0x55u8; 200];
    let step = s.receive(&junk, true, t0, SystemTime::now(), &mut out);
    assert_eq!(step.close, None);
    assert!(!out.rejects.is_empty() && out.rejects.iter().all(|r| r.kind == RejectKind::Garbage));
    assert_eq!(out.rejected_bytes, 200);
    assert_eq!(out.frames, 1, "the login's frame only: garbage is no frame");
}

#[test]
fn the_deadline_moves_with_what_is_heard() {
    let t0 = Instant::now();
    let mut st = settings();
    st.idle_timeout = Duration::from_secs(30);
    let mut s = Session::new(Protocol::Teltonika, &st, t0);
    assert_eq!(s.deadline(), t0 + Duration::from_secs(30));
    assert!(!s.expired(t0 + Duration::from_secs(29)));
    assert!(s.expired(t0 + Duration::from_secs(30)));
    let mut hello = Vec::new();
    teltonika::encode_imei("356307042441013", &mut hello);
    let t1 = t0 + Duration::from_secs(20);
    let mut out = Output::default();
    let step = s.receive(&hello, false, t1, SystemTime::now(), &mut out);
    assert!(step.claim.is_some());
    assert_eq!(out.replies, [vec![0x01]]);
    assert!(!s.expired(t0 + Duration::from_secs(30)));
    assert_eq!(s.deadline(), t1 + Duration::from_secs(30));
}

/// A frame trickled a byte at a time, and junk, do not move the idle deadline: only a
/// whole frame does.
#[test]
fn only_whole_frames_keep_a_session_alive() {
    let t0 = Instant::now();
    let mut st = settings();
    st.idle_timeout = Duration::from_secs(15);
    let mut s = Session::new(Protocol::Gt06, &st, t0);
    let mut out = Output::default();
    s.receive(&gt06_login("123456789012345", 1), false, t0, SystemTime::now(), &mut out);
    assert_eq!(s.deadline(), t0 + Duration::from_secs(15));
    // A heartbeat a byte every 3 s: none of it is a frame until the last byte.
    let heartbeat = gt06_heartbeat(2);
    let mut buf = Vec::new();
    for (i, &b) in heartbeat[..heartbeat.len() - 1].iter().enumerate() {
        buf.push(b);
        let now = t0 + Duration::from_secs(3 * (i as u64 + 1));
        let step = s.receive(&buf, false, now, SystemTime::now(), &mut out);
        buf.drain(..step.used);
    }
    assert_eq!(s.deadline(), t0 + Duration::from_secs(15), "partial bytes moved the deadline");
    assert!(s.expired(t0 + Duration::from_secs(15)));
    // Junk is not hearing from the device either.
    s.receive(&[0x55; 40], false, t0 + Duration::from_secs(14), SystemTime::now(), &mut out);
    assert_eq!(s.deadline(), t0 + Duration::from_secs(15));
    // The frame's last byte completes it: heard.
    buf.extend_from_slice(&heartbeat[heartbeat.len() - 1..]);
    let t1 = t0 + Duration::from_secs(14);
    out.clear();
    s.receive(&buf, false, t1, SystemTime::now(), &mut out);
    assert_eq!(out.frames, 1);
    assert_eq!(s.deadline(), t1 + Duration::from_secs(15));
}

/// A frame begun must be finished within the frame timeout, however long the idle
/// timeout; finishing it (or holding nothing) gives the idle timeout back.
#[test]
fn a_frame_begun_must_finish_within_the_frame_timeout() {
    let t0 = Instant::now();
    let mut st = settings();
    st.idle_timeout = Duration::from_secs(60);
    st.frame_timeout = Duration::from_secs(5);
    let mut s = Session::new(Protocol::Gt06, &st, t0);
    let mut out = Output::default();
    s.receive(&gt06_login("123456789012345", 1), false, t0, SystemTime::now(), &mut out);
    assert_eq!((s.deadline(), s.timeout_reason()), (t0 + Duration::from_secs(60), CloseReason::Idle));
    let heartbeat = gt06_heartbeat(2);
    let (half, rest) = heartbeat.split_at(6);
    let t1 = t0 + Duration::from_secs(1);
    let step = s.receive(half, false, t1, SystemTime::now(), &mut out);
    assert_eq!(step.used, 0);
    assert_eq!((s.deadline(), s.timeout_reason()), (t1 + Duration::from_secs(5), CloseReason::FrameTimeout));
    // More bytes of the same frame do not restart its clock.
    let mut held = half.to_vec();
    held.push(rest[0]);
    s.receive(&held, false, t0 + Duration::from_secs(3), SystemTime::now(), &mut out);
    assert_eq!(s.deadline(), t1 + Duration::from_secs(5));
    // Finished, with the next frame begun in the same read: that one's clock starts now.
    let t2 = t0 + Duration::from_secs(4);
    let mut whole = heartbeat.clone();
    whole.extend_from_slice(&gt06_heartbeat(3)[..4]);
    let step = s.receive(&whole, false, t2, SystemTime::now(), &mut out);
    assert_eq!(step.used, heartbeat.len());
    assert_eq!(s.deadline(), t2 + Duration::from_secs(5));
    // Nothing held: the idle timeout again.
    s.receive(&gt06_heartbeat(4), false, t2, SystemTime::now(), &mut out);
    assert_eq!((s.deadline(), s.timeout_reason()), (t2 + Duration::from_secs(60), CloseReason::Idle));
}

#[test]
fn finish_reports_what_the_decoder_still_held() {
    use trackgate_codecs::jt808::{self, Edition, Terminal};
    let t0 = Instant::now();
    let mut st = settings();
    st.stream.transport = Transport::Udp;
    let mut s = Session::new(Protocol::Jt808, &st, t0);
    let terminal = Terminal::for_device_id("13800138000", Edition::V2013).unwrap();
    let body = vec![0u8; 3000];
    let packages = jt808::encode_packages(0x0801, &terminal, 7, &body, 1000).unwrap();
    let mut out = Output::default();
    // Two of three packages arrive; then the peer goes away.
    for p in &packages[..2] {
        s.receive(p, true, t0, SystemTime::now(), &mut out);
    }
    assert!(out.records.is_empty());
    out.clear();
    s.finish(SystemTime::now(), &mut out);
    assert_eq!(out.rejects.len(), 1, "{:?}", out.rejects);
}
