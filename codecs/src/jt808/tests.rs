use std::sync::Arc;

use proptest::prelude::*;

use super::message::{
    write_item, Auth, Batch, DriverIdentity, GeneralResponse, Location, MediaData, MediaEvent, Parameters, Register,
    RegisterLayout, TerminalAttributes,
};
use super::*;
use crate::framing::{Framer, Framing, RejectKind};
use crate::record::Kind;
use crate::stream::{decode_in_reads, AllowList, RecordDecoder, StreamEvent, Transport};
use crate::test_support::{hex, records, rejects, replies};

fn decode_with(decoder: &mut Jt808Decoder, input: &[u8]) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let used = decoder.decode(input, true, &mut out);
    assert_eq!(used, input.len());
    out
}

fn decode(input: &[u8]) -> Vec<StreamEvent> {
    decode_with(&mut Jt808Decoder::default(), input)
}

// Frames from the standard's own examples and from real terminals.
const HEARTBEAT: &str = "7E 0002 0000 043048325465 00B7 CA 7E";
const REGISTER: &str = "7E0100002D0141305678720024002C012F373031313142534A2D41362D424400000000000000000000003035363738373201D4C14238383838386D7E";
const AUTH: &str = "7E01020008014130567872002541555448313233340E7E";
const LOCATION: &str = "7E0200002C00160128561400020000000000040001005DE1F7065C6CEF00000000000017011710044201040000A9002A02000030011B3101030C7E";
const BATCH_2019: &str = "7E0704402D0100000866496077582164881D0001000028000000000000000701A00192091F2A4700160000000226050916422701040000258230010031010E507E";

fn terminal_2013(number: &str) -> Terminal {
    Terminal { edition: Edition::V2013, number: TerminalNumber::from_bytes(&hex(number)).unwrap() }
}

#[test]
fn heartbeat_is_acked_byte_exact() {
    let ev = decode(&hex(HEARTBEAT));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.device_id.as_deref(), r.seq), (Kind::Heartbeat, Some("43048325465"), Some(0xB7)));
    assert_eq!(replies(&ev), vec![hex("7E 8001 0005 043048325465 0001 00B7 0002 00 4F 7E")]);
    // The reply comes after the record, so the gateway sends it once the sink has the record.
    assert!(matches!(ev.last(), Some(StreamEvent::Reply(_))));
}

#[test]
fn register_then_authenticate_byte_exact() {
    let mut d = Jt808Decoder::default();
    let ev = decode_with(&mut d, &hex(REGISTER));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Register);
    assert_eq!(r.device_id.as_deref(), Some("14130567872"));
    assert_eq!(r.attributes.get("plate").unwrap(), "粤B88888");
    assert_eq!(r.attributes.get("terminal_model").unwrap(), "BSJ-A6-BD");
    assert_eq!(r.attributes.get("register_layout").unwrap(), "2013");
    // The auth code is the device id; the platform serial starts at 1.
    let code = b"14130567872";
    let mut expected = Vec::new();
    let mut body = vec![0x00, 0x24, 0x00];
    body.extend_from_slice(code);
    encode_frame(&mut expected, 0x8100, &terminal_2013("014130567872"), 1, None, &body).unwrap();
    assert_eq!(replies(&ev), vec![expected]);
    // A register response from the standard's examples, with its auth code.
    assert_eq!(
        register_response(&terminal_2013("014130567872"), 1, 0x24, 0, "AUTH1234").unwrap(),
        hex("7E8100000B014130567872000100240041555448313233348F7E")
    );

    let ev = decode_with(&mut d, &hex(AUTH));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Auth);
    assert_eq!(r.attributes.get("auth_code").unwrap(), "AUTH1234");
    assert_eq!(replies(&ev), vec![hex("7E80010005014130567872000200250102008C7E")]);
}

#[test]
fn a_refused_terminal_gets_result_4_and_a_failed_auth() {
    let options = Jt808Options { allow: Some(AllowList::ids(["1"])), ..Jt808Options::default() };
    let mut d = Jt808Decoder::new(options);
    let ev = decode_with(&mut d, &hex(REGISTER));
    assert_eq!(records(&ev)[0].attributes.get("accepted").unwrap(), false);
    assert_eq!(replies(&ev), vec![register_response(&terminal_2013("014130567872"), 1, 0x24, 4, "").unwrap()]);
    let ev = decode_with(&mut d, &hex(AUTH));
    assert_eq!(replies(&ev), vec![platform_response(&terminal_2013("014130567872"), 2, 0x25, 0x0102, 1)]);
}

#[test]
fn location_worked_example() {
    let ev = decode(&hex(LOCATION));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Position);
    assert_eq!(r.message_type, "0x0200");
    assert_eq!(r.valid, Some(false));
    assert_eq!(r.latitude, Some(6.152695));
    assert_eq!(r.longitude, Some(106.720495));
    // 10:04:42 at GMT+8.
    assert_eq!(r.fix_time.unwrap().to_string(), "2017-01-17T02:04:42Z");
    assert_eq!(r.satellites, Some(3));
    assert_eq!(r.attributes.get("odometer_m").unwrap(), 4_326_400);
    assert_eq!(r.attributes.get("gsm_signal").unwrap(), 27);
    assert_eq!(r.attributes.get("ignition").unwrap(), true);
    assert_eq!(replies(&ev), vec![hex("7E8001000500160128561400010002020000F87E")]);
}

#[test]
fn time_zone_is_configurable() {
    let mut d = Jt808Decoder::new(Jt808Options { utc_offset_minutes: 0, ..Jt808Options::default() });
    let ev = decode_with(&mut d, &hex(LOCATION));
    assert_eq!(records(&ev)[0].fix_time.unwrap().to_string(), "2017-01-17T10:04:42Z");
}

#[test]
fn batch_2019_gives_a_record_per_item_and_one_ack() {
    let ev = decode(&hex(BATCH_2019));
    let rs = records(&ev);
    assert_eq!(rs.len(), 1);
    let r = rs[0];
    assert_eq!(r.device_id.as_deref(), Some("866496077582164"));
    assert_eq!(r.latitude, Some(-27.263378));
    assert_eq!(r.longitude, Some(153.037383));
    assert_eq!(r.altitude_m, Some(22.0));
    assert_eq!(r.satellites, Some(14));
    assert_eq!(r.attributes.get("protocol_version").unwrap(), 1);
    assert_eq!(replies(&ev), vec![hex("7E8001400501000008664960775821640001881D0704007F7E")]);
}

#[test]
fn escaping_both_ways() {
    // A 0x8001 with platform serial 0x007D acking terminal serial 0x007E: both need escaping.
    let t = terminal_2013("013912345678");
    assert_eq!(
        platform_response(&t, 0x7D, 0x7E, 0x0200, 0),
        hex("7E 8001 0005 013912345678 007D01 007D02 0200 00 B5 7E")
    );
    // Traccar's frame-encoder vector.
    let mut out = Vec::new();
    escape_into(&hex("307e087d55"), &mut out);
    assert_eq!(out, hex("307d02087d0155"));
    assert_eq!(unescape(&out).unwrap().as_ref(), hex("307e087d55").as_slice());
    assert!(matches!(unescape(&hex("30")).unwrap(), std::borrow::Cow::Borrowed(_)));
    assert_eq!(unescape(&hex("307d03")).unwrap_err().kind, RejectKind::Malformed);
    assert_eq!(unescape(&hex("307d")).unwrap_err().kind, RejectKind::Malformed);
}

#[test]
fn an_escaped_frame_decodes() {
    // A location whose serial is 0x7E7D: both escapes inside.
    let t = terminal_2013("001601285614");
    let body = &hex(LOCATION)[13..57];
    let frame = encode(id::LOCATION, &t, 0x7E7D, body).unwrap();
    assert!(frame.windows(2).any(|w| w == [0x7D, 0x02]) && frame.windows(2).any(|w| w == [0x7D, 0x01]));
    let ev = decode(&frame);
    assert_eq!(records(&ev)[0].seq, Some(0x7E7D));
    assert_eq!(records(&ev)[0].latitude, Some(6.152695));
}

#[test]
fn downlink_vectors_of_the_notes() {
    let t = terminal_2013("001601285614");
    let set = Command::SetParameters(vec![(0x0001, ParamValue::Dword(60)), (0x0029, ParamValue::Dword(30))]);
    assert_eq!(set.encode(&t, 2).unwrap(), hex("7E8103001300160128561400020200000001040000003C00000029040000001EE67E"));
    assert_eq!(Command::QueryParameters.encode(&t, 3).unwrap(), hex("7E810400000016012856140003FB7E"));
    let reset = Command::TerminalControl { command: 4, parameters: String::new() };
    assert_eq!(reset.encode(&t, 4).unwrap(), hex("7E81050001001601285614000404F87E"));
    assert_eq!(Command::QueryLocation.encode(&t, 5).unwrap(), hex("7E820100000016012856140005FB7E"));
    let track = Command::Tracking { interval_s: 10, validity_s: 3600 };
    assert_eq!(track.encode(&t, 6).unwrap(), hex("7E820200060016012856140006000A00000E10E97E"));
    let tts = Command::Text { flags: 0x08, kind: None, text: "Hello".into() };
    assert_eq!(tts.encode(&t, 7).unwrap(), hex("7E8300000600160128561400070848656C6C6FB57E"));
    let t2019 = Terminal {
        edition: Edition::V2019 { version: 1 },
        number: TerminalNumber::from_bytes(&hex("00000866496077582164")).unwrap(),
    };
    let now = Timestamp::parse_rfc3339("2026-05-09T08:42:30Z").unwrap();
    assert_eq!(server_time(&t2019, 2, now).unwrap(), hex("7E8004400601000008664960775821640002260509084230BC7E"));
    let sub = encode_packages(0x0801, &terminal_2013("001601285614"), 0x10, &[0, 0, 0, 1, 0, 0, 0, 1, 9], 8).unwrap();
    assert_eq!(sub[0], hex("7E0801200800160128561400100002000100000001000000014F7E"));
}

#[test]
fn traccar_command_vectors() {
    // commands.tsv: the device 123456789012345 is addressed by its IMEI as a 48-bit number.
    let t = Terminal::for_device_id("123456789012345", Edition::V2013).unwrap();
    assert_eq!(t.number.as_bytes(), hex("0b3a73ce2ff2").as_slice());
    // That test id's last digit is not its Luhn digit; a real IMEI's is, and comes back.
    assert_eq!(t.number.device_id(), "123456789012347");
    let stop = Command::TerminalControl { command: 0xF0, parameters: String::new() };
    assert_eq!(stop.encode(&t, 0).unwrap(), hex("7e810500010b3a73ce2ff20000f0247e"));
    let text = Command::Text { flags: 0x01, kind: None, text: "Test, Command, 123#".into() };
    assert_eq!(
        text.encode(&t, 0).unwrap(),
        hex("7e830000140b3a73ce2ff2000001546573742c20436f6d6d616e642c2031323323a57e")
    );
    let jimi = Command::Passthrough { kind: 0xF0, data: b"TEST".to_vec() };
    assert_eq!(jimi.encode(&t, 0).unwrap(), hex("7e890000050b3a73ce2ff20000f0544553543b7e"));
}

/// The JSON an operator writes for a command (the gateway's HTTP endpoint) reads as the
/// typed command.
#[test]
fn commands_read_from_json() {
    let read = |json: &str| serde_json::from_str::<Command>(json).unwrap();
    assert_eq!(read(r#""query_location""#), Command::QueryLocation);
    assert_eq!(
        read(r#"{"terminal_control": {"command": 4, "parameters": ""}}"#),
        Command::TerminalControl { command: 4, parameters: String::new() }
    );
    assert_eq!(
        read(r#"{"text": {"flags": 8, "text": "Hello"}}"#),
        Command::Text { flags: 8, kind: None, text: "Hello".into() }
    );
    assert_eq!(
        read(r#"{"set_parameters": [[1, {"dword": 30}], [19, {"text": "a.b.c:80"}]]}"#),
        Command::SetParameters(vec![(1, ParamValue::Dword(30)), (0x13, ParamValue::Text("a.b.c:80".into()))])
    );
    assert_eq!(
        read(r#"{"passthrough": {"kind": 240, "data": [84, 69]}}"#),
        Command::Passthrough { kind: 0xF0, data: b"TE".to_vec() }
    );
    assert!(serde_json::from_str::<Command>(r#"{"reboot": {}}"#).is_err());
    assert!(serde_json::from_str::<Command>(r#"{"tracking": {"interval_s": 70000, "validity_s": 1}}"#).is_err());
}

#[test]
fn downlink_commands_wait_for_the_terminal_and_are_typed() {
    use crate::stream::{Downlink, DownlinkError};
    let mut d = Jt808Decoder::default();
    let query = Downlink::Jt808(Command::QueryLocation);
    assert_eq!(RecordDecoder::command(&mut d, &query), Err(DownlinkError::NotReady));
    decode_with(&mut d, &hex(HEARTBEAT));
    let t = *d.terminal().unwrap();
    let sent = RecordDecoder::command(&mut d, &query).unwrap();
    assert_eq!(sent.bytes, Command::QueryLocation.encode(&t, 2).unwrap());
    let matching = sent.answer.unwrap();
    assert_eq!((matching.attribute, matching.value), ("reply_serial", 2));
    let answer = encode(id::TERMINAL_RESPONSE, &t, 0xB8, &general_response_body(2, 0x8201, 0)).unwrap();
    let events = decode_with(&mut d, &answer);
    let answered = records(&events);
    assert_eq!(answered[0].attributes.get("command").unwrap(), "query_location");
    assert_eq!(answered[0].attributes.get(matching.attribute).unwrap(), matching.value, "the answer matches");
    assert!(matches!(
        RecordDecoder::command(&mut d, &Downlink::Text("RESET".into())),
        Err(DownlinkError::Unsupported(_))
    ));
}

#[test]
fn commands_use_the_connection_serial_and_answers_name_them() {
    let mut d = Jt808Decoder::default();
    assert!(d.command_frame(&Command::QueryLocation).is_none(), "no terminal yet");
    decode_with(&mut d, &hex(HEARTBEAT)); // platform serial 1 acked it
    let t = *d.terminal().unwrap();
    let cmd = d.command_frame(&Command::TerminalControl { command: 4, parameters: String::new() }).unwrap();
    assert_eq!(cmd, Command::TerminalControl { command: 4, parameters: String::new() }.encode(&t, 2).unwrap());
    // The terminal's 0x0001 for platform serial 2, message 0x8105.
    let answer = encode(id::TERMINAL_RESPONSE, &t, 0xB8, &general_response_body(2, 0x8105, 0)).unwrap();
    let ev = decode_with(&mut d, &answer);
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::CommandResponse);
    assert_eq!(r.attributes.get("command").unwrap(), "terminal_control");
    assert_eq!(r.attributes.get("result").unwrap(), "ok");
    assert!(replies(&ev).is_empty(), "terminal replies are not acked");
    // Answered once: the same answer again names no command.
    let ev = decode_with(&mut d, &answer);
    assert!(records(&ev)[0].attributes.get("command").is_none());
    // A parameter query answered by 0x0104.
    let query = d.command_frame(&Command::QueryGivenParameters(vec![0x0001, 0x0013])).unwrap();
    assert_eq!(&query[1..3], &[0x81, 0x06]);
    let mut body = vec![0x00, 0x03, 2];
    body.extend_from_slice(&[0, 0, 0, 1, 4, 0, 0, 0, 60]);
    body.extend_from_slice(&[0, 0, 0, 0x13, 9]);
    body.extend_from_slice(b"a.b.c:80\0");
    let ev = decode_with(&mut d, &encode(id::PARAMETERS, &t, 0xB9, &body).unwrap());
    let r = records(&ev)[0];
    assert_eq!(r.attributes.get("command").unwrap(), "query_given_parameters");
    assert_eq!(r.attributes.get("parameters").unwrap(), &serde_json::json!({"0x0001": 60, "0x0013": "a.b.c:80"}));
    // 0x8107 is answered by 0x0107, which echoes no serial: matched by what it is.
    assert_eq!(&d.query_attributes().unwrap()[1..3], &[0x81, 0x07]);
    let (m, model, tid, iccid) = (*b"MAKER", [b'X'; 20], *b"1234567", [0x89, 0x86, 0, 0, 0, 0, 0, 0, 0, 0x1F]);
    let attributes = TerminalAttributes {
        terminal_type: 1,
        manufacturer: &m,
        model: &model,
        terminal_id: &tid,
        iccid: &iccid,
        hardware_version: b"HW1",
        firmware_version: b"FW2",
        gnss: 3,
        comm: 1,
    };
    let mut body = Vec::new();
    Message::Attributes(attributes).write_body(Edition::V2013, &mut body);
    let ev = decode_with(&mut d, &encode(id::ATTRIBUTES, &t, 0xBA, &body).unwrap());
    let r = records(&ev)[0];
    assert_eq!(r.attributes.get("command").unwrap(), "query_attributes");
    assert_eq!(r.attributes.get("iccid").unwrap(), "8986000000000000001", "the F padding is left out");
    let ev = decode_with(&mut d, &encode(id::ATTRIBUTES, &t, 0xBB, &body).unwrap());
    assert!(records(&ev)[0].attributes.get("command").is_none(), "answered once");
}

fn media_body(len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    MediaEvent { media_id: 7, media_type: 0, format: 0, event: 1, channel: 1 }.write(&mut body);
    body.extend_from_slice(&hex(LOCATION)[13..41]);
    body.extend((0..len).map(|i| (i * 7) as u8));
    body
}

#[test]
fn sub_packages_reassemble_in_any_order_with_acks_and_0x8800() {
    let t = terminal_2013("001601285614");
    let body = media_body(2500);
    let frames = encode_packages(id::MEDIA_DATA, &t, 100, &body, 1000).unwrap();
    assert_eq!(frames.len(), 3);
    let mut d = Jt808Decoder::default();
    let mut all = Vec::new();
    for i in [2, 0, 1] {
        assert_eq!(d.decode(&frames[i], false, &mut all), frames[i].len());
    }
    let rs = records(&all);
    assert_eq!(rs.len(), 1, "one record, when the last package arrives");
    let r = rs[0];
    assert_eq!(r.seq, Some(100), "the message's serial is its first package's");
    assert_eq!(r.attributes.get("packages").unwrap(), 3);
    assert_eq!(r.attributes.get("media_size").unwrap(), 2500);
    assert_eq!(r.attributes.get("media_format").unwrap(), "jpeg");
    assert_eq!(r.latitude, Some(6.152695));
    let media = r.attributes.get("media").unwrap().as_str().unwrap();
    assert_eq!(hex(media), body[36..].to_vec());
    let rp = replies(&all);
    // An 0x8001 per package; the last-numbered came first, so the two missing were asked for.
    assert_eq!(rp[0], platform_response(&t, 1, 102, id::MEDIA_DATA, 0));
    assert_eq!(rp[1], resend_request(&t, 2, 100, &[1, 2]).unwrap());
    assert_eq!(rp[2], platform_response(&t, 3, 100, id::MEDIA_DATA, 0));
    assert_eq!(rp[3], platform_response(&t, 4, 101, id::MEDIA_DATA, 0));
    assert_eq!(rp[4], media_upload_response(&t, 5, 7, &[]).unwrap());
    assert_eq!(rp.len(), 5);
}

#[test]
fn unfinished_sub_packages_are_reported_at_the_end_and_bounded() {
    let t = terminal_2013("001601285614");
    let frames = encode_packages(id::LOCATION, &t, 1, &media_body(3000), 1000).unwrap();
    let ev = decode(&frames[0]);
    assert!(records(&ev).is_empty());
    assert_eq!(rejects(&ev), vec![RejectKind::Truncated], "the stream ended with packages missing");
    // Over the byte limit: the package is refused with a reason, nothing grows.
    let options = Jt808Options { max_reassembly_bytes: 1500, ..Jt808Options::default() };
    let mut d = Jt808Decoder::new(options);
    let mut out = Vec::new();
    for f in &frames {
        d.decode(f, false, &mut out);
    }
    assert!(rejects(&out).contains(&RejectKind::TooLong));
    assert!(d.held().1 <= 1500);
    // A timeout by the caller's clock.
    let mut d = Jt808Decoder::default();
    d.set_now(Timestamp::from_unix_ms(0, false));
    let mut out = Vec::new();
    d.decode(&frames[0], false, &mut out);
    d.set_now(Timestamp::from_unix_ms(61_000, false));
    d.decode(&[], false, &mut out);
    assert_eq!(rejects(&out), vec![RejectKind::Truncated]);
    assert_eq!(d.held(), (0, 0));
}

#[test]
fn udp_reassembles_across_datagrams() {
    let t = terminal_2013("001601285614");
    let frames = encode_packages(id::MEDIA_DATA, &t, 1, &media_body(1500), 1000).unwrap();
    let mut d = Jt808Decoder::new(Jt808Options { transport: Transport::Udp, ..Jt808Options::default() });
    let first = decode_with(&mut d, &frames[0]);
    assert!(rejects(&first).is_empty());
    let second = decode_with(&mut d, &frames[1]);
    assert_eq!(records(&second).len(), 1);
}

#[test]
fn time_query_is_answered_with_the_callers_clock_only() {
    let t = Terminal {
        edition: Edition::V2019 { version: 1 },
        number: TerminalNumber::from_bytes(&hex("00000866496077582164")).unwrap(),
    };
    let query = encode(id::TIME_QUERY, &t, 9, &[]).unwrap();
    let ev = decode(&query);
    assert_eq!(records(&ev)[0].kind, Kind::TimeRequest);
    assert!(replies(&ev).is_empty());
    let mut d = Jt808Decoder::default();
    let now = Timestamp::parse_rfc3339("2026-05-09T08:42:30Z").unwrap();
    d.set_now(now);
    assert_eq!(replies(&decode_with(&mut d, &query)), vec![server_time(&t, 1, now).unwrap()]);
}

#[test]
fn bad_check_code_costs_one_frame() {
    let mut bad = hex(LOCATION);
    let n = bad.len();
    bad[n - 2] ^= 1;
    let mut stream = hex(HEARTBEAT);
    stream.extend_from_slice(&bad);
    stream.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    stream.extend_from_slice(&hex(LOCATION));
    let ev = decode(&stream);
    let kinds: Vec<Kind> = records(&ev).iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![Kind::Heartbeat, Kind::Position]);
    let rj = rejects(&ev);
    assert_eq!(rj[0], RejectKind::Checksum);
    assert_eq!(rj.len(), 2, "{ev:?}");
    assert_eq!(replies(&ev).len(), 2, "no ack for the bad frame");
}

#[test]
fn encrypted_and_impossible_frames_are_rejected_with_a_reason() {
    // The heartbeat with the RSA bit set.
    let ev = decode(&wire(&hex("0002 0400 043048325465 00B7")));
    match &ev[0] {
        StreamEvent::Rejected { reason, .. } => {
            assert_eq!(reason.kind, RejectKind::Unsupported);
            assert!(reason.detail.contains("RSA"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let ev = decode(&hex("7E 0002 0000 7E"));
    assert_eq!(rejects(&ev), vec![RejectKind::Truncated]);
}

#[test]
fn a_2013_terminal_that_sets_the_version_bit_is_read_as_2013() {
    // The heartbeat with bit 14 set: as 2019 the header would not fit the declared length.
    let t = terminal_2013("043048325465");
    let ev = decode(&wire(&hex("0002 4000 043048325465 00B7")));
    let r = records(&ev)[0];
    assert_eq!(r.device_id.as_deref(), Some("43048325465"));
    assert!(r.attributes.get("protocol_version").is_none());
    assert_eq!(replies(&ev), vec![platform_response(&t, 1, 0xB7, 0x0002, 0)]);
}

#[test]
fn a_length_field_that_disagrees_is_marked_not_fatal() {
    // A heartbeat that declares a 5-byte body and carries none.
    let ev = decode(&wire(&hex("0002 0005 001601285614 0001")));
    assert_eq!(records(&ev).first().map(|r| r.attributes.get("length_field_ok")), Some(Some(&false.into())), "{ev:?}");
}

/// Header and body as a frame: check code appended, escaped, between flags.
fn wire(raw: &[u8]) -> Vec<u8> {
    let mut raw = raw.to_vec();
    raw.push(crate::wire::checksum::xor8(&raw));
    let mut frame = vec![FLAG];
    escape_into(&raw, &mut frame);
    frame.push(FLAG);
    frame
}

#[test]
fn text_frames_and_flags_between_frames() {
    let mut stream = b"(740190311185,1,001,ELOCK,3,529439)".to_vec();
    stream.extend_from_slice(&hex("7E7E7E"));
    stream.extend_from_slice(&hex(HEARTBEAT));
    // One flag shared between two frames.
    let hb = hex(HEARTBEAT);
    stream.extend_from_slice(&hb[1..]);
    let ev = decode(&stream);
    let rs = records(&ev);
    assert_eq!(rs.len(), 3, "{ev:?}");
    assert_eq!(rs[0].kind, Kind::Info);
    assert_eq!(rs[0].attributes.get("text").unwrap(), "(740190311185,1,001,ELOCK,3,529439)");
    assert!(rejects(&ev).is_empty());
}

#[test]
fn non_bcd_terminal_numbers_are_imeis() {
    let n = TerminalNumber::from_bytes(&hex("4eb6fb4afd9e")).unwrap();
    assert!(!n.is_bcd());
    assert_eq!(n.device_id(), "865478070102068");
    assert_eq!(TerminalNumber::from_bytes(&hex("000000000000")).unwrap().device_id(), "0");
    assert_eq!(TerminalNumber::for_device_id("13812345678", Edition::V2013).unwrap().as_bytes(), hex("013812345678"));
    assert!(
        TerminalNumber::for_device_id("1234567890123456", Edition::V2013).is_none(),
        "16 digits fit no 2013 header"
    );
}

/// A stream whose terminal number changes between a binary form and BCD digits: each
/// record carries the number in hex only when its own terminal's is not BCD (the session
/// works that out once a terminal, not once a frame).
#[test]
fn the_number_in_hex_follows_the_terminal_of_each_frame() {
    let mut stream = Vec::new();
    for (serial, number) in [(1, "4eb6fb4afd9e"), (2, "013812345678"), (3, "4eb6fb4afd9e"), (4, "4eb6fb4afd9e")] {
        stream.extend(encode(id::HEARTBEAT, &terminal_2013(number), serial, &[]).unwrap());
    }
    let ev = decode(&stream);
    let numbers: Vec<_> =
        records(&ev).iter().map(|r| r.attributes.get("terminal_number").and_then(|v| v.as_str())).collect();
    let binary = Some("4eb6fb4afd9e");
    assert_eq!(numbers, [binary, None, binary, binary]);
}

#[test]
fn alarms_status_and_items() {
    let mut items = Vec::new();
    write_item(&mut items, 0x12, &[1, 0, 0, 0, 9, 1]);
    write_item(&mut items, 0x51, &[0x80, 0x17, 0xFF, 0xFF, 0x01, 0x23]);
    write_item(&mut items, 0x61, &[0x04, 0xB0]);
    write_item(&mut items, 0xEB, &[1, 2]);
    write_item(&mut items, 0xEB, &[3]);
    write_item(&mut items, 0x01, &[0, 0, 1]); // wrong length: kept raw
    items.extend_from_slice(&[0x30, 5, 1]); // truncated last item
    let l = Location {
        alarm: 1 | (1 << 20) | (1 << 16),
        status: 0b1111 | (3 << 8) | (1 << 13) | (1 << 19),
        latitude_raw: 22_500_000,
        longitude_raw: 114_000_000,
        altitude_raw: (-5i16) as u16,
        speed_raw: 605,
        course: 359,
        time: [0x26, 0x01, 0x02, 0x03, 0x04, 0x05],
        items: &items,
    };
    let mut body = Vec::new();
    l.write(&mut body);
    let ev = decode(&encode(id::LOCATION, &terminal_2013("001601285614"), 1, &body).unwrap());
    let r = records(&ev)[0];
    assert_eq!(r.alarms, vec!["sos", "geofence_exit"]);
    assert_eq!((r.latitude, r.longitude), (Some(-22.5), Some(-114.0)));
    assert_eq!((r.altitude_m, r.speed_kmh, r.course_deg), (Some(-5.0), Some(60.5), Some(359.0)));
    let a = &r.attributes;
    assert_eq!(a.get("load").unwrap(), "full");
    assert_eq!(a.get("door1_open").unwrap(), true);
    assert_eq!(a.get("gnss_systems").unwrap(), &serde_json::json!(["beidou"]));
    assert_eq!(a.get("area_id").unwrap(), 9);
    assert_eq!(a.get("temp1_c").unwrap(), -2.3);
    assert!(a.get("temp2_c").is_none(), "0xFFFF is no sensor");
    assert_eq!(a.get("temp3_c").unwrap(), 29.1);
    assert_eq!(a.get("power_v").unwrap(), 12.0);
    assert_eq!(a.get("items").unwrap(), &serde_json::json!({"0xeb": ["0102", "03"], "0x01": "000001"}));
    assert_eq!(a.get("items_truncated").unwrap(), true);
    assert_eq!(a.get("alarm_raw").unwrap(), 1 | (1 << 20) | (1 << 16));
    // Signed coordinates without the hemisphere bits (docs/protocols/jt808.md §8).
    let signed = Location { status: 0, latitude_raw: (-1_000_000i32) as u32, items: &[], ..l };
    assert_eq!(signed.latitude(), -1.0);
}

#[test]
fn framer_limits_and_garbage() {
    let mut f = Jt808Framer::new(Limits { max_frame_len: 16 });
    assert!(matches!(f.next_frame(b"xy"), Framing::Rejected { consumed: 2, .. }));
    assert_eq!(f.next_frame(&[0x7E; 3]), Framing::Incomplete { needed: 1 });
    let long = [&[0x7E][..], &[0x11; 20]].concat();
    match f.next_frame(&long) {
        Framing::Rejected { consumed: 17, reason } => assert_eq!(reason.kind, RejectKind::TooLong),
        other => panic!("{other:?}"),
    }
    assert_eq!(f.next_frame_at_end(&[0x7E]), Framing::Frame { len: 1, consumed: 1 });
}

#[test]
fn every_truncation_point_waits_then_rejects_at_the_end() {
    let frame = hex(LOCATION);
    // A lone opening flag at the end is no frame at all; from two bytes on it is a truncated one.
    assert!(decode(&frame[..1]).is_empty());
    for cut in 2..frame.len() {
        let mut d = Jt808Decoder::default();
        let mut out = Vec::new();
        let used = d.decode(&frame[..cut], false, &mut out);
        assert_eq!(used, 0, "cut at {cut}: nothing is decided before the closing flag");
        assert!(out.is_empty());
        let used = d.decode(&frame[..cut], true, &mut out);
        assert_eq!(used, cut);
        assert_eq!(rejects(&out), vec![RejectKind::Truncated], "cut at {cut}");
    }
    let mut f = Jt808Framer::new(DEFAULT_LIMITS);
    assert_eq!(f.next_frame(&frame[..10]), Framing::Incomplete { needed: 1 });
}

fn sample_stream() -> Vec<u8> {
    let t = terminal_2013("001601285614");
    let mut s = hex(HEARTBEAT);
    s.extend_from_slice(b"junk");
    s.extend_from_slice(&hex(REGISTER));
    s.extend_from_slice(b"(text,1)");
    s.extend_from_slice(&hex(LOCATION));
    for f in encode_packages(id::MEDIA_DATA, &t, 5, &media_body(900), 400).unwrap() {
        s.extend_from_slice(&f);
    }
    s.extend_from_slice(&hex(BATCH_2019));
    s.extend_from_slice(&hex("7E 0002 0000 7E"));
    s.extend_from_slice(&hex(HEARTBEAT)[1..]);
    s
}

#[test]
fn every_read_size_decodes_the_same() {
    let stream = sample_stream();
    let whole = decode_in_reads(&mut Jt808Decoder::default(), &stream, stream.len());
    assert_eq!(whole.used, stream.len());
    assert_eq!(records(&whole.events).len(), 7);
    // Nine frames: the heartbeat, registration, text line, location, the three packages of
    // the media upload (one record once they are all in), the batch and the last
    // heartbeat, which the damaged frame's closing flag opens.
    assert_eq!(whole.frames, 9);
    for chunk in 1..64 {
        let got = decode_in_reads(&mut Jt808Decoder::default(), &stream, chunk);
        assert_eq!(got.events, whole.events, "read size {chunk}");
        assert_eq!(got.frames, whole.frames, "read size {chunk}");
        assert!(got.max_held <= 4096);
    }
}

fn arb_location(items: Vec<u8>) -> impl Strategy<Value = (u32, u32, u32, u32, u16, u16, u16, [u8; 6], Vec<u8>)> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        0u16..360,
        (0u8..100, 1u8..13, 1u8..29, 0u8..24, 0u8..60, 0u8..60),
        Just(items),
    )
        .prop_map(|(a, s, la, lo, al, sp, c, (y, mo, d, h, mi, se), items)| {
            let bcd = |v: u8| crate::wire::bcd::byte_from_value(v).unwrap();
            (a, s, la, lo, al, sp, c, [bcd(y), bcd(mo), bcd(d), bcd(h), bcd(mi), bcd(se)], items)
        })
}

fn arb_items() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..12)), 0..6).prop_map(|items| {
        let mut out = Vec::new();
        for (id, v) in items {
            write_item(&mut out, id, &v);
        }
        out
    })
}

fn arb_edition() -> impl Strategy<Value = Edition> {
    prop_oneof![Just(Edition::V2013), any::<u8>().prop_map(|version| Edition::V2019 { version })]
}

fn arb_terminal() -> impl Strategy<Value = Terminal> {
    arb_edition().prop_flat_map(|edition| {
        let width = if edition == Edition::V2013 { 6 } else { 10 };
        proptest::collection::vec(any::<u8>(), width)
            .prop_map(move |bytes| Terminal { edition, number: TerminalNumber::from_bytes(&bytes).unwrap() })
    })
}

/// Encodes `message` for `terminal`, decodes the frame and parses the body back.
fn round_trip(message_id: u16, terminal: &Terminal, serial: u16, message: &Message<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    message.write_body(terminal.edition, &mut body);
    let frame = encode(message_id, terminal, serial, &body).unwrap();
    let mut framer = Jt808Framer::new(DEFAULT_LIMITS);
    let Framing::Frame { len, consumed } = framer.next_frame(&frame) else { panic!("no frame") };
    assert_eq!(consumed, frame.len());
    let parsed = Frame::parse(frame::inner(&frame[..len])).unwrap();
    assert_eq!(parsed.header.message_id, message_id);
    assert_eq!(parsed.header.serial, serial);
    assert_eq!(parsed.header.terminal, *terminal);
    assert!(parsed.length_field_ok);
    let again = Message::parse(&parsed.header, &parsed.body).unwrap();
    assert_eq!(&again, message);
    // Writing it again gives the same bytes: the encoding is canonical.
    let mut body2 = Vec::new();
    again.write_body(terminal.edition, &mut body2);
    assert_eq!(body2, body);
    frame
}

proptest! {
    #[test]
    fn location_round_trip(t in arb_terminal(), serial in any::<u16>(), fields in arb_items().prop_flat_map(arb_location)) {
        let (alarm, status, la, lo, al, sp, c, time, items) = fields;
        let l = Location { alarm, status, latitude_raw: la, longitude_raw: lo, altitude_raw: al, speed_raw: sp, course: c, time, items: &items };
        round_trip(id::LOCATION, &t, serial, &Message::Location(l));
        round_trip(id::LOCATION_REPLY, &t, serial, &Message::LocationReply { reply_serial: serial ^ 1, location: l });
        let mut batch = Vec::new();
        Batch::write(1, &[l, l], &mut batch);
        let b = Batch::parse(&batch).unwrap();
        let frame = round_trip(id::BATCH, &t, serial, &Message::Batch(b));
        let ev = decode(&frame);
        prop_assert_eq!(records(&ev).len(), 2);
        prop_assert_eq!(replies(&ev).len(), 1);
    }

    /// The 0x8001 written at fixed places is the frame the general encoder writes, escaped
    /// or not (a serial or terminal byte of 0x7E or 0x7D, or such a check code, takes the
    /// general path).
    #[test]
    fn acks_are_the_frames_the_encoder_writes(t in arb_terminal(), serial in any::<u16>(), reply_serial in any::<u16>(), reply_id in any::<u16>(), result in any::<u8>()) {
        let body = general_response_body(reply_serial, reply_id, result);
        let general = encode(id::PLATFORM_RESPONSE, &t, serial, &body).unwrap();
        prop_assert_eq!(platform_response(&t, serial, reply_serial, reply_id, result), general);
    }

    #[test]
    fn small_messages_round_trip(t in arb_terminal(), serial in any::<u16>(), a in any::<u16>(), b in any::<u16>(), c in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..40)) {
        round_trip(id::TERMINAL_RESPONSE, &t, serial, &Message::GeneralResponse(GeneralResponse { reply_serial: a, reply_id: b, result: c }));
        round_trip(id::HEARTBEAT, &t, serial, &Message::Heartbeat(&data));
        round_trip(id::DEREGISTER, &t, serial, &Message::Deregister);
        round_trip(id::UPGRADE_RESULT, &t, serial, &Message::UpgradeResult { kind: c, result: c ^ 1 });
        round_trip(id::PASSTHROUGH_UP, &t, serial, &Message::Passthrough { kind: c, data: &data });
        round_trip(id::MEDIA_EVENT, &t, serial, &Message::MediaEvent(MediaEvent { media_id: u32::from(a) << 16 | u32::from(b), media_type: c, format: 1, event: 2, channel: 3 }));
        round_trip(id::RESEND_REQUEST_UP, &t, serial, &Message::ResendRequest { first_serial: a, indexes: data.iter().map(|&x| u16::from(x)).collect() });
        round_trip(0x0F0F, &t, serial, &Message::Unknown(&data));
        round_trip(id::TIME_QUERY, &t, serial, &Message::TimeQuery);
        round_trip(id::WAYBILL, &t, serial, &Message::Waybill(&data));
        round_trip(id::PARAMETERS, &t, serial, &Message::Parameters(Parameters { reply_serial: a, count: c, items: &data }));
        let (model, tid) = if t.edition == Edition::V2013 { (20, 7) } else { (30, 30) };
        let (m, mo, ti, iccid) = (vec![b'M'; 5], vec![b'X'; model], vec![b'7'; tid], vec![0x89; 10]);
        let n = data.len().min(20);
        let attributes = TerminalAttributes { terminal_type: a, manufacturer: &m, model: &mo, terminal_id: &ti, iccid: &iccid, hardware_version: &data[..n], firmware_version: &data[n..], gnss: c, comm: c ^ 7 };
        round_trip(id::ATTRIBUTES, &t, serial, &Message::Attributes(attributes));
    }

    #[test]
    fn register_and_auth_round_trip(
        t in arb_terminal(),
        serial in any::<u16>(),
        province in any::<u16>(),
        plate in proptest::collection::vec(any::<u8>(), 0..16),
        code in proptest::collection::vec(any::<u8>(), 0..30),
        imei in "[0-9]{15}",
    ) {
        let layout = if t.edition == Edition::V2013 { RegisterLayout::V2013 } else { RegisterLayout::V2019 };
        let (m, mo, i) = match layout { RegisterLayout::V2019 => (11, 30, 30), _ => (5, 20, 7) };
        let (manufacturer, model, terminal_id) = (vec![b'M'; m], vec![b'X'; mo], vec![b'7'; i]);
        let reg = Register { layout, province, city: province ^ 3, manufacturer: &manufacturer, model: &model, terminal_id: &terminal_id, plate_color: 1, plate: &plate };
        round_trip(id::REGISTER, &t, serial, &Message::Register(reg));
        let version = [b'V'; 20];
        let auth = if t.edition == Edition::V2013 {
            Auth { code: &code, imei: None, software_version: None }
        } else {
            Auth { code: &code, imei: Some(imei.as_bytes()), software_version: Some(&version) }
        };
        round_trip(id::AUTHENTICATE, &t, serial, &Message::Auth(auth));
    }

    #[test]
    fn media_and_driver_round_trip(t in arb_terminal(), serial in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..60), name in proptest::collection::vec(1u8..255, 0..10)) {
        let block = &hex(LOCATION)[13..41];
        let location = Location::parse(block).unwrap();
        let d = MediaData { event: MediaEvent { media_id: 1, media_type: 0, format: 0, event: 0, channel: 1 }, location: Some(location), data: &data };
        round_trip(id::MEDIA_DATA, &t, serial, &Message::MediaData(d));
        let cert = [b'C'; 20];
        let driver = DriverIdentity { state: 1, time: [0x25, 0x10, 0x09, 0x15, 0x07, 0x51], read_result: Some(0), name: &name, certificate: &cert, organization: &name, valid_until: Some([0x20, 0x30, 0x01, 0x01]), id_number: None };
        round_trip(id::DRIVER_IDENTITY, &t, serial, &Message::DriverIdentity(driver));
    }

    #[test]
    fn sub_packaging_round_trip(body in proptest::collection::vec(any::<u8>(), 1..3000), size in 1usize..1100, order in any::<u64>()) {
        let t = terminal_2013("001601285614");
        let mut frames = encode_packages(id::PASSTHROUGH_UP, &t, 40, &body, size).unwrap();
        // Deliver in a shuffled order.
        let mut x = order | 1;
        for i in (1..frames.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            frames.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let options = Jt808Options { max_reassembly_bytes: 1 << 22, ..Jt808Options::default() };
        let mut d = Jt808Decoder::new(options);
        let mut out = Vec::new();
        for f in &frames {
            d.decode(f, false, &mut out);
        }
        let rs = records(&out);
        prop_assert_eq!(rejects(&out).len(), 0);
        prop_assert_eq!(rs.len(), 1);
        {
            let mut back = vec![rs[0].attributes.get("passthrough_type").unwrap().as_u64().unwrap() as u8];
            let rest = rs[0].attributes.get("data").or(rs[0].attributes.get("text")).map(|v| v.as_str().unwrap().to_owned()).unwrap_or_default();
            if rs[0].attributes.get("data").is_some() { back.extend(hex(&rest)); } else { back.extend(rest.as_bytes()); }
            prop_assert_eq!(back, body);
        }
    }

    #[test]
    fn random_traffic_with_damage(picks in proptest::collection::vec((0usize..4, any::<u16>(), proptest::option::of(any::<usize>())), 1..20), chunk in 1usize..50) {
        let frames = [hex(HEARTBEAT), hex(LOCATION), hex(BATCH_2019), hex(REGISTER)];
        let mut stream = Vec::new();
        let mut good = 0;
        for (i, _, damage) in &picks {
            let mut f = frames[*i].clone();
            match damage {
                Some(at) => {
                    let at = 1 + at % (f.len() - 2);
                    // Flip a byte inside the frame into something that is not a flag.
                    f[at] = if f[at] == 0x5A { 0x5B } else { 0x5A };
                }
                None => good += 1,
            }
            stream.extend_from_slice(&f);
        }
        let got = decode_in_reads(&mut Jt808Decoder::default(), &stream, chunk);
        prop_assert_eq!(got.used, stream.len());
        let whole = decode_in_reads(&mut Jt808Decoder::default(), &stream, stream.len());
        prop_assert_eq!(&got.events, &whole.events);
        // Every undamaged frame gives its record; a damaged one never gives more than one.
        let n = records(&got.events).len();
        prop_assert!(n >= good && n <= picks.len(), "{} records for {} good of {}", n, good, picks.len());
    }
}

#[test]
fn a_huge_package_count_holds_only_what_came() {
    // Fuzzing finding: one sub-package header announcing 65535 packages used to allocate a
    // slot for each (1.5 MB for a 25-byte frame). Now only arrived packages are held, and the
    // 0x8003 for the last package lists one request's worth of the missing ones.
    let t = terminal_2013("001601285614");
    let mut d = Jt808Decoder::default();
    let mut out = Vec::new();
    let mut last = Vec::new();
    encode_frame(&mut last, id::PASSTHROUGH_UP, &t, 9, Some((0xFFFF, 0xFFFF)), b"xyz").unwrap();
    d.decode(&last, false, &mut out);
    assert_eq!(d.held(), (1, 3));
    let rp = replies(&out);
    assert_eq!(rp.len(), 2, "0x8001 and one 0x8003");
    let request = Frame::parse(frame::inner(&rp[1][..rp[1].len() - 1])).unwrap();
    assert_eq!(request.header.message_id, id::RESEND_REQUEST);
    assert_eq!(request.body[2], 255);
    assert_eq!(request.body.len(), 3 + 2 * 255);
}

#[test]
fn message_type_labels_from_the_table_are_the_formatted_ids() {
    for id in 0..=u16::MAX {
        assert_eq!(record::hex_id(id), format!("0x{id:04x}"));
    }
}

proptest! {

    /// Escaping in place gives what escaping the raw frame byte by byte gives, with and
    /// without bytes to escape, after whatever the buffer already held.
    #[test]
    fn frames_escaped_in_place_equal_the_byte_by_byte_escaping(
        terminal in arb_terminal(),
        id in any::<u16>(),
        serial in any::<u16>(),
        body in proptest::collection::vec(prop_oneof![Just(0x7Eu8), Just(0x7D), any::<u8>()], 0..80),
        before in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut out = before.clone();
        if short_serial(id) && (serial > 0xFF || terminal.edition != Edition::V2013) {
            // No short-serial header holds a wider serial or a 2019 terminal number.
            prop_assert!(encode_frame(&mut out, id, &terminal, serial, None, &body).is_none());
            return Ok(());
        }
        encode_frame(&mut out, id, &terminal, serial, None, &body).unwrap();
        let mut properties = body.len() as u16;
        if let Edition::V2019 { .. } = terminal.edition {
            properties |= 0x4000;
        }
        let mut raw = Vec::new();
        Header { message_id: id, properties, terminal, serial, package: None }.write(&mut raw);
        raw.extend_from_slice(&body);
        raw.push(raw.iter().fold(0, |a, b| a ^ b));
        // The escaping spelt out byte by byte (docs/protocols/jt808.md §1), not through the code under test.
        let mut expected = before;
        expected.push(0x7E);
        for b in raw {
            match b {
                0x7E => expected.extend_from_slice(&[0x7D, 0x02]),
                0x7D => expected.extend_from_slice(&[0x7D, 0x01]),
                _ => expected.push(b),
            }
        }
        expected.push(0x7E);
        prop_assert_eq!(out, expected);
    }
    /// `parse_with` (un-escaping into a reused buffer) gives what `parse` gives, frame or
    /// error, for real frames with and without escapes and for byte soup rich in escapes.
    #[test]
    fn parse_with_a_scratch_buffer_agrees_with_parse(
        t in arb_terminal(),
        serial in any::<u16>(),
        body in proptest::collection::vec(prop_oneof![Just(0x7Du8), Just(0x7E), any::<u8>()], 0..80),
        soup in proptest::collection::vec(prop_oneof![Just(0x7Du8), Just(0x01), Just(0x02), any::<u8>()], 0..80),
        junk in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let wire = encode(id::PASSTHROUGH_UP, &t, serial, &body).unwrap();
        let escaped = frame::inner(&wire[..wire.len() - 1]);
        // The scratch buffer starts with leftovers, as it would after an earlier frame.
        let mut scratch = junk.clone();
        let with = Frame::parse_with(escaped, &mut scratch).unwrap();
        prop_assert_eq!(&with, &Frame::parse(escaped).unwrap());
        prop_assert_eq!(with.body.as_ref(), body.as_slice());
        // The check code is tested on the un-escaped bytes (escapes or not): a changed
        // message id byte (0x09 -> 0x19, never an escape) fails it.
        let mut bad = escaped.to_vec();
        bad[0] ^= 0x10;
        let mut scratch = Vec::new();
        prop_assert_eq!(Frame::parse_with(&bad, &mut scratch).unwrap_err().kind, RejectKind::Checksum);
        prop_assert_eq!(Frame::parse(&bad).unwrap_err().kind, RejectKind::Checksum);
        let mut scratch = junk;
        prop_assert_eq!(Frame::parse_with(&soup, &mut scratch), Frame::parse(&soup));
    }
}

#[test]
fn a_bad_escape_is_named_at_its_byte() {
    let e = unescape(&hex("30 31 7D 01 32 7D 03")).unwrap_err();
    assert_eq!(e.kind, RejectKind::Malformed);
    assert!(e.detail.contains("7D followed by 03 at byte 5"), "{}", e.detail);
    let mut out = vec![9];
    assert_eq!(unescape_into(&hex("7D 02 7D 01 41"), &mut out).unwrap(), 2, "two pairs");
    assert_eq!(out, hex("09 7E 7D 41"), "appended, both escapes undone");
}

/// A store of auth codes for the tests: hands out `code-N`, knows what it handed out.
#[derive(Default)]
struct Codes(std::sync::Mutex<std::collections::HashMap<String, String>>);

impl AuthCodes for Codes {
    fn issue(&self, device_id: &str) -> Issued {
        let mut codes = self.0.lock().unwrap();
        if codes.contains_key(device_id) {
            return Issued::AlreadyRegistered;
        }
        let code = format!("code-{}", codes.len());
        codes.insert(device_id.to_owned(), code.clone());
        Issued::Code(code)
    }
    fn check(&self, device_id: &str, code: &[u8]) -> bool {
        self.0.lock().unwrap().get(device_id).is_some_and(|c| c.as_bytes() == code)
    }
    fn revoke(&self, device_id: &str) {
        self.0.lock().unwrap().remove(device_id);
    }
}

fn enforcing(codes: &Arc<Codes>) -> Jt808Decoder {
    Jt808Decoder::new(Jt808Options { auth: Some(codes.clone() as Arc<dyn AuthCodes>), ..Jt808Options::default() })
}

/// The terminal's own frame with `code` as its 0x0102 auth code.
fn auth_with(code: &str, serial: u16) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, id::AUTHENTICATE, &terminal_2013("014130567872"), serial, None, code.as_bytes()).unwrap();
    out
}

/// Authentication as the standard intends: registration hands out the store's code; nothing
/// else is taken (no record, no 0x8001) and no command goes out before the terminal
/// authenticates with it; a wrong code gets result 1 and ends the stream.
#[test]
fn authentication_is_enforced_with_the_stores_codes() {
    use crate::stream::{Downlink, DownlinkError};
    let codes = Arc::new(Codes::default());
    let mut d = enforcing(&codes);
    let heartbeat = {
        let mut out = Vec::new();
        encode_frame(&mut out, id::HEARTBEAT, &terminal_2013("014130567872"), 0x30, None, &[]).unwrap();
        out
    };
    let ev = decode_with(&mut d, &heartbeat);
    assert!(records(&ev).is_empty() && replies(&ev).is_empty(), "{ev:?}");
    assert_eq!(rejects(&ev), vec![RejectKind::Unauthenticated]);
    let query = Downlink::Jt808(Command::QueryLocation);
    assert_eq!(RecordDecoder::command(&mut d, &query).unwrap_err(), DownlinkError::NotAuthenticated);

    let ev = decode_with(&mut d, &hex(REGISTER));
    let mut body = vec![0x00, 0x24, 0x00];
    body.extend_from_slice(b"code-0");
    let mut expected = Vec::new();
    encode_frame(&mut expected, 0x8100, &terminal_2013("014130567872"), 1, None, &body).unwrap();
    assert_eq!(replies(&ev), vec![expected]);

    // The code the terminal had before (its number, or another platform's) is not it.
    let ev = decode_with(&mut d, &hex(AUTH));
    assert_eq!(records(&ev)[0].attributes.get("accepted").unwrap(), false);
    assert_eq!(replies(&ev), vec![platform_response(&terminal_2013("014130567872"), 2, 0x25, 0x0102, 1)]);
    assert!(d.refused(), "a wrong code ends the stream");

    let mut d = enforcing(&codes);
    let ev = decode_with(&mut d, &auth_with("code-0", 0x26));
    assert_eq!(records(&ev)[0].attributes.get("accepted").unwrap(), true);
    assert_eq!(replies(&ev), vec![platform_response(&terminal_2013("014130567872"), 1, 0x26, 0x0102, 0)]);
    assert!(!d.refused());
    let ev = decode_with(&mut d, &heartbeat);
    assert_eq!((records(&ev).len(), replies(&ev).len()), (1, 1));
    assert!(RecordDecoder::command(&mut d, &query).is_ok());

    // Registering again in the terminal's name gets result 3 and voids nothing.
    let ev = decode_with(&mut enforcing(&codes), &hex(REGISTER));
    assert_eq!(replies(&ev), vec![register_response(&terminal_2013("014130567872"), 1, 0x24, 3, "").unwrap()]);
    assert!(codes.check("14130567872", b"code-0"));
    // The terminal itself deregisters: its code is void, and it may register again.
    let mut dereg = Vec::new();
    encode_frame(&mut dereg, id::DEREGISTER, &terminal_2013("014130567872"), 0x31, None, &[]).unwrap();
    decode_with(&mut d, &dereg);
    assert!(!codes.check("14130567872", b"code-0"));
    let ev = decode_with(&mut enforcing(&codes), &hex(REGISTER));
    assert!(replies(&ev)[0].windows(6).any(|w| w == b"code-0"), "a new code after deregistering");
}

// ---- vendor messages (docs/protocols/jt808.md §9) ----

use super::message::{Batch2, PassthroughReport, VendorLocation};

/// BCD digits of `v`, `width` digits, into bytes (a last odd digit in the high nibble).
fn bcd_digits(v: u64, width: usize) -> Vec<u8> {
    let digits: Vec<u8> = format!("{v:0width$}").bytes().map(|b| b - b'0').collect();
    digits.chunks(2).map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0)).collect()
}

/// A vendor location's fields from plain values, and the degrees they stand for.
#[allow(clippy::type_complexity)]
fn arb_vendor() -> impl Strategy<Value = (VendorLocation<'static>, f64, f64, Vec<u8>)> {
    (
        (1u8..29, 1u8..13, 0u8..100, 0u8..24, 0u8..60, 0u8..60),
        (0u64..90, 0u64..600_000, 0u64..180, 0u64..600_000, 0u8..16),
        (0u8..100, any::<u8>(), any::<[u8; 2]>(), any::<u32>(), any::<u8>()),
        (any::<u32>(), any::<u16>(), any::<u8>(), any::<u16>(), any::<u16>()),
        arb_items(),
    )
        .prop_map(
            |(
                t,
                (lat_d, lat_m, lon_d, lon_m, flags),
                (speed, course, [rssi, sats], odo, battery),
                (cid, lac, product, status, alarm),
                items,
            )| {
                let bcd = |v: u8| crate::wire::bcd::byte_from_value(v).unwrap();
                let latitude: [u8; 4] = bcd_digits(lat_d * 1_000_000 + lat_m, 8).try_into().unwrap();
                let mut longitude_flags: [u8; 5] = bcd_digits(lon_d * 1_000_000 + lon_m, 9).try_into().unwrap();
                longitude_flags[4] |= flags;
                let lat = (lat_d as f64 + lat_m as f64 / 10_000.0 / 60.0) * if flags & 2 != 0 { 1.0 } else { -1.0 };
                let lon = (lon_d as f64 + lon_m as f64 / 10_000.0 / 60.0) * if flags & 4 != 0 { 1.0 } else { -1.0 };
                let v = VendorLocation {
                    time: [bcd(t.0), bcd(t.1), bcd(t.2), bcd(t.3), bcd(t.4), bcd(t.5)],
                    latitude,
                    longitude_flags,
                    speed: bcd(speed),
                    course,
                    gsm_signal: rssi,
                    satellites: sats,
                    odometer_km: odo,
                    battery,
                    cell_id: cid,
                    lac,
                    product,
                    status,
                    alarm,
                    items: &[],
                };
                (v, lat, lon, items)
            },
        )
}

/// A vendor location report as a terminal sends it, asking for an answer or not.
fn vendor_frame(message_id: u16, terminal: &Terminal, serial: u8, body: &[u8], ask: bool) -> Vec<u8> {
    let properties = body.len() as u16 | if ask { VENDOR_WANTS_RESPONSE } else { 0 };
    let mut raw = message_id.to_be_bytes().to_vec();
    raw.extend_from_slice(&properties.to_be_bytes());
    raw.extend_from_slice(terminal.number.as_bytes());
    raw.push(serial);
    raw.extend_from_slice(body);
    raw.push(crate::wire::checksum::xor8(&raw));
    let mut out = vec![FLAG];
    escape_into(&raw, &mut out);
    out.push(FLAG);
    out
}

proptest! {
    /// Any vendor location is written and read back as it was (a one-byte serial in the
    /// short header), its record holds the position the BCD digits say, and the terminal
    /// gets a 0x4401 exactly when the report asks for one.
    #[test]
    fn vendor_location_round_trip((v, lat, lon, items) in arb_vendor(), serial in any::<u8>(), blind in any::<bool>(), ask in any::<bool>()) {
        let v = VendorLocation { items: &items, ..v };
        let t = terminal_2013("013912345678");
        let id = if blind { id::VENDOR_LOCATION_BLIND } else { id::VENDOR_LOCATION };
        let message = Message::VendorLocation { blind, location: v };
        round_trip(id, &t, u16::from(serial), &message);
        prop_assert!(encode(id, &t, 256, &[]).is_none(), "a serial past a byte has no short header");
        let mut body = Vec::new();
        message.write_body(Edition::V2013, &mut body);
        let ev = decode_with(&mut Jt808Decoder::new(Jt808Options::default()), &vendor_frame(id, &t, serial, &body, ask));
        let r = records(&ev)[0];
        prop_assert_eq!(r.kind, Kind::Position);
        prop_assert_eq!(r.seq, Some(u32::from(serial)));
        prop_assert_eq!(r.valid, Some(v.longitude_flags[4] & 1 != 0));
        if lat != 0.0 || lon != 0.0 {
            prop_assert!((r.latitude.unwrap() - lat).abs() < 1e-9 && (r.longitude.unwrap() - lon).abs() < 1e-9);
        }
        prop_assert_eq!(r.attributes.get("blind_area").is_some(), blind);
        let want: Vec<Vec<u8>> = if ask { vec![vendor_response(&t, id, result::OK)] } else { vec![] };
        prop_assert_eq!(replies(&ev), want);
    }

    /// A 0x0210 batch of locations gives a record each, in order, and one 0x8001.
    #[test]
    fn batch_2_round_trip(fields in arb_items().prop_flat_map(arb_location), count in 1usize..5, serial in any::<u16>()) {
        let (alarm, status, la, lo, al, sp, c, time, items) = fields;
        let l = Location { alarm, status, latitude_raw: la, longitude_raw: lo, altitude_raw: al, speed_raw: sp, course: c, time, items: &items };
        let mut one = Vec::new();
        l.write(&mut one);
        prop_assume!(one.len() <= 255);
        let mut body = Vec::new();
        for _ in 0..count {
            body.push(one.len() as u8);
            body.extend_from_slice(&one);
        }
        prop_assume!(body.len() != 7 && body.len() <= MAX_BODY_LEN);
        let t = terminal_2013("013912345678");
        let frame = round_trip(id::BATCH_2, &t, serial, &Message::Batch2(Batch2::parse(&body)));
        let ev = decode(&frame);
        prop_assert_eq!(records(&ev).len(), count);
        prop_assert!(records(&ev).iter().all(|r| r.kind == Kind::Position && r.latitude == records(&ev)[0].latitude));
        // The decoder's first reply carries platform serial 1.
        prop_assert_eq!(replies(&ev), vec![platform_response(&t, 1, serial, id::BATCH_2, result::OK)]);
    }
}

#[test]
fn vendor_location_from_the_field() {
    // Traccar's #71: no answer asked for, not fixed, 5 knots, product 1 with alarm bit 0.
    let ev = decode(&hex(
        "7e550100287001608180000127061008045322332880113555602e050031010000000608000010931435010002000300030100051b7e",
    ));
    let r = records(&ev)[0];
    assert_eq!((r.seq, r.valid), (Some(1), Some(false)));
    assert_eq!(r.fix_time, Timestamp::from_local_fields([10, 6, 27, 8, 4, 53], 0));
    assert!((r.latitude.unwrap() - (22.0 + 33.288 / 60.0)).abs() < 1e-9);
    assert!((r.longitude.unwrap() - (113.0 + 55.5602 / 60.0)).abs() < 1e-9);
    assert!((r.speed_kmh.unwrap() - 9.26).abs() < 1e-9);
    assert_eq!(r.alarms, vec!["power_low"]);
    assert_eq!(r.attributes.get("odometer_m").unwrap(), 6000);
    assert!(replies(&ev).is_empty());
    // A lock's item: command 3, password, unlock result 101.
    let lock = VendorLocation {
        items: &hex("0b0803363839363037650c06ff98ffa8007e"),
        ..VendorLocation::parse(&hex("2706100804532233288011355560 2e050031010000000608000010931435010002000300"))
            .unwrap()
    };
    let mut body = Vec::new();
    lock.write(&mut body);
    let ev = decode(&vendor_frame(id::VENDOR_LOCATION, &terminal_2013("700160818000"), 7, &body, true));
    let r = records(&ev)[0];
    assert_eq!(r.attributes.get("lock_password").unwrap(), "689607");
    assert_eq!(r.attributes.get("unlock_result").unwrap(), 101);
    assert_eq!(r.attributes.get("tilt").unwrap(), &serde_json::json!([-104, -88, 126]));
    // 0x4401, 3 bytes, the terminal, serial 1: the report's id and result 0.
    assert_eq!(replies(&ev), vec![hex("7e 4401 0003 700160818000 01 5501 00 03 7e")]);
}

#[test]
fn the_battery_form_of_0210() {
    let ev = decode(&hex("7e0210000704546000231900884f2606180229579c7e"));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Status);
    assert_eq!(r.attributes.get("battery_level").unwrap(), 79);
    // The terminal's clock, GMT+8 unless configured.
    assert_eq!(r.fix_time, Timestamp::from_local_fields([26, 6, 18, 2, 29, 57], 8 * 60));
    assert_eq!(
        Batch2::parse(&hex("4f260618022957")),
        Batch2::Battery { level: 0x4f, time: hex("260618022957").try_into().unwrap() }
    );
}

#[test]
fn pass_through_reports_with_positions() {
    let t = terminal_2013("013912345678");
    // F0, subtype 03 (events: hard braking, and an unnamed one), then the position block:
    // ignition, fixed, south and west.
    let f0 = hex("230223150215 01 02 03 02 1b00 3801aa 0000000f 029dc58c 04b99b60".replace(' ', "").as_str());
    let ev = decode(&encode(id::PASSTHROUGH_UP, &t, 3, &[&[0xF0][..], &f0].concat()).unwrap());
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid), (Kind::Position, Some(true)));
    assert_eq!((r.latitude, r.longitude), (Some(-43.894156), Some(-79.2728)));
    assert_eq!(r.alarms, vec!["hard_braking"]);
    assert_eq!(r.attributes.get("event_ids").unwrap(), &serde_json::json!([0x1b, 0x38]));
    assert_eq!(r.attributes.get("blind_area").unwrap(), true);
    // FF: a plain fix.
    let ff = hex("230223150215 fd6239e4 04b99b60 ffec 01f4 005a".replace(' ', "").as_str());
    let ev = decode(&encode(id::PASSTHROUGH_UP, &t, 4, &[&[0xFF][..], &ff].concat()).unwrap());
    let r = records(&ev)[0];
    assert_eq!(
        (r.latitude, r.altitude_m, r.speed_kmh, r.course_deg),
        (Some(-43.8943), Some(-20.0), Some(50.0), Some(90.0))
    );
    // Text under F0, or a subtype without a position, stays text or data.
    assert_eq!(PassthroughReport::parse(0xF0, b"STATUS,OK"), None);
    assert_eq!(PassthroughReport::parse(0xF0, &hex("23022315021501020b01")), None);
    let ev = decode(&encode(id::PASSTHROUGH_UP, &t, 5, b"\xf0STATUS,OK").unwrap());
    assert_eq!(records(&ev)[0].kind, Kind::Info);
    assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), "STATUS,OK");
}

/// Found by `jt808_structured`: a vendor location with an empty body is 12 bytes between the
/// flags (its header is a byte shorter), and was rejected as shorter than any frame; it is
/// a whole message, kept as an unknown one with its layout error.
#[test]
fn regression_fuzz_a_short_serial_frame_of_twelve_bytes_is_a_frame() {
    let t = terminal_2013("000200000139");
    let ev = decode(&encode(id::VENDOR_LOCATION, &t, 126, &[]).unwrap());
    let rs = records(&ev);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].kind, Kind::Unknown);
    assert!(rs[0].attributes.get("layout_error").is_some());
}
