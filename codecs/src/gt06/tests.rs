use proptest::prelude::*;

use super::message::info_alarm;
use super::*;
use crate::framing::{Framer, Framing, RejectKind};
use crate::record::Kind;
use crate::stream::{decode_in_reads, RecordDecoder, StreamEvent};
use crate::test_support::{hex, records, rejects, replies};
use crate::time::Timestamp;

fn decode_with(decoder: &mut Gt06Decoder, input: &[u8]) -> Vec<StreamEvent> {
    let mut out = Vec::new();
    let used = decoder.decode(input, true, &mut out);
    assert_eq!(used, input.len());
    out
}

fn decode(input: &[u8]) -> Vec<StreamEvent> {
    decode_with(&mut Gt06Decoder::default(), input)
}

const LOGIN_V1: &str = "78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A";
const LOGIN_V2: &str = "78 78 11 01 07 52 53 36 78 90 02 42 70 00 32 01 00 05 12 79 0D 0A";
const LOCATION_12: &str =
    "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03 80 81 0D 0A";
const HEARTBEAT_13: &str = "78 78 0A 13 44 01 04 00 01 00 05 08 45 0D 0A";
const ALARM_16: &str = "78 78 25 16 0B 0B 0F 0E 24 1D CF 02 7A C8 87 0C 46 57 E6 00 14 02 09 01 CC 00 28 7D 00 1F 72 65 06 04 01 01 00 36 56 A4 0D 0A";
const LOCATION_22: &str = "78 78 22 22 0F 0C 1D 02 33 05 C9 02 7A C8 18 0C 46 58 60 00 14 00 01 CC 00 28 7D 00 1F 71 00 00 01 00 08 20 86 0D 0A";
const LOCATION_12_ACC: &str = "78781F12110616091835D0024BB93007D3FB783DD4C501940500F2006C8504A6E0370D0A";
const TIME_REQUEST_8A: &str = "78 78 05 8A 00 06 88 29 0D 0A";
const REPLY_15: &str = "78 78 18 15 10 00 01 A9 58 44 59 44 3D 53 75 63 63 65 73 73 21 00 02 00 18 91 77 0D 0A";
const REPLY_21: &str = "79 79 00 26 21 00 00 00 00 02 00 43 00 6F 00 6D 00 6D 00 61 00 6E 00 64 00 20 00 65 00 72 00 72 00 6F 00 72 00 21 00 23 6E 85 0D 0A";
const WIFI_69: &str =
    "787800691709261259400700cc0400d376714600d37a3d5000d37a3c5000d393505a00d3765d5a00d376735a00d32e6b640d0a";

#[test]
fn v1_login_gives_the_imei_and_is_acked_byte_exact() {
    let ev = decode(&hex(LOGIN_V1));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Login);
    assert_eq!(r.device_id.as_deref(), Some("123456789012345"));
    assert_eq!(r.seq, Some(1));
    assert_eq!(replies(&ev), vec![hex("78 78 05 01 00 01 D9 DC 0D 0A")]);
    // The real device of the same document.
    let ev = decode(&hex("78780D01035341353215036200022D060D0A"));
    assert_eq!(records(&ev)[0].device_id.as_deref(), Some("353413532150362"));
    assert_eq!(replies(&ev), vec![hex("78 78 05 01 00 02 EB 47 0D 0A")]);
}

#[test]
fn v2_login_time_zone_applies_to_v1_times_only() {
    let mut input = hex(LOGIN_V2);
    input.extend(hex(LOCATION_12));
    input.extend(hex(LOCATION_22));
    let ev = decode(&input);
    let r = records(&ev);
    assert_eq!(r[0].device_id.as_deref(), Some("752533678900242"));
    assert_eq!(r[0].attributes.get("utc_offset").unwrap(), "+08:00");
    assert_eq!(r[0].attributes.get("type_id").unwrap(), 0x7000);
    assert_eq!(replies(&ev)[0], hex("78 78 05 01 00 05 9F F8 0D 0A"));
    // 0x12 is local time on such a device: 17:46:16 at +08:00 is 09:46:16 UTC.
    assert_eq!(r[1].fix_time.unwrap().to_string(), "2011-08-29T09:46:16Z");
    // 0x22 is UTC by definition.
    assert_eq!(r[2].fix_time.unwrap().to_string(), "2015-12-29T02:51:05Z");
    assert!(r[1..].iter().all(|r| r.device_id.as_deref() == Some("752533678900242")));
}

#[test]
fn location_0x12_worked_example() {
    let ev = decode(&hex(LOCATION_12));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.message_type.as_ref(), r.seq), (Kind::Position, "0x12", Some(3)));
    assert_eq!(r.fix_time.unwrap().to_string(), "2011-08-29T17:46:16Z");
    assert_eq!(r.satellites, Some(15));
    assert!((r.latitude.unwrap() - 23.111_668_3).abs() < 1e-6);
    assert!((r.longitude.unwrap() - 114.409_285).abs() < 1e-6);
    assert_eq!((r.speed_kmh, r.course_deg, r.valid), (Some(0.0), Some(143.0), Some(true)));
    assert_eq!(r.attributes.get("mcc").unwrap(), 460);
    assert_eq!(r.attributes.get("lac").unwrap(), 0x287D);
    assert_eq!(r.attributes.get("cell_id").unwrap(), 0x1FB8);
    assert_eq!(replies(&ev), vec![hex("78 78 05 12 00 03 90 3F 0D 0A")]);
}

#[test]
fn location_with_acc_bits_and_an_indian_cell() {
    let r = decode(&hex(LOCATION_12_ACC));
    let r = records(&r)[0];
    assert_eq!(r.fix_time.unwrap().to_string(), "2017-06-22T09:24:53Z");
    assert!((r.latitude.unwrap() - 21.398_355_6).abs() < 1e-6);
    assert!((r.longitude.unwrap() - 72.962_768_9).abs() < 1e-6);
    assert_eq!((r.speed_kmh, r.course_deg), (Some(61.0), Some(197.0)));
    assert_eq!(r.attributes.get("ignition").unwrap(), true);
    assert_eq!(r.attributes.get("mcc").unwrap(), 404);
    assert_eq!(r.attributes.get("mnc").unwrap(), 5);
    assert_eq!(r.seq, Some(0x04A6));
}

#[test]
fn location_0x22_tail() {
    let r = decode(&hex(LOCATION_22));
    let r = records(&r)[0];
    assert_eq!(r.satellites, Some(9));
    assert!((r.latitude.unwrap() - 23.111_693_3).abs() < 1e-6);
    assert_eq!(r.attributes.get("ignition").unwrap(), false);
    assert_eq!(r.attributes.get("upload_mode").unwrap(), 0);
    assert_eq!(r.attributes.get("buffered").unwrap(), true);
    assert!(r.attributes.get("odometer_m").is_none());
}

#[test]
fn heartbeat_and_its_ack() {
    let ev = decode(&hex(HEARTBEAT_13));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Heartbeat);
    assert_eq!(r.attributes.get("gps_tracking").unwrap(), true);
    assert_eq!(r.attributes.get("charging").unwrap(), true);
    assert_eq!(r.attributes.get("ignition").unwrap(), false);
    assert_eq!(r.attributes.get("armed").unwrap(), false);
    assert_eq!(r.attributes.get("battery_level").unwrap(), 1);
    assert_eq!(r.attributes.get("gsm_signal").unwrap(), 4);
    assert!(r.alarms.is_empty());
    assert_eq!(replies(&ev), vec![hex("78 78 05 13 00 05 AF D5 0D 0A")]);
}

#[test]
fn alarm_0x16_sos_and_its_ack() {
    let ev = decode(&hex(ALARM_16));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Position);
    assert_eq!(r.fix_time.unwrap().to_string(), "2011-11-15T14:36:29Z");
    assert!((r.latitude.unwrap() - 23.111_755).abs() < 1e-6);
    assert_eq!(r.course_deg, Some(2.0));
    assert_eq!(r.alarms, vec!["sos"]);
    assert_eq!(r.attributes.get("alarm_raw").unwrap(), 1);
    assert_eq!(r.attributes.get("armed").unwrap(), true);
    assert_eq!(r.attributes.get("battery_level").unwrap(), 6);
    assert_eq!(r.attributes.get("cell_id").unwrap(), 0x1F72);
    assert_eq!(replies(&ev), vec![hex("78 78 05 16 00 36 95 70 0D 0A")]);
}

#[test]
fn time_request_is_answered_with_the_callers_clock_only() {
    // Without a clock there is no honest answer.
    let ev = decode(&hex(TIME_REQUEST_8A));
    assert_eq!(records(&ev)[0].kind, Kind::TimeRequest);
    assert!(replies(&ev).is_empty());
    let mut d = Gt06Decoder::default();
    let now = Timestamp::parse_rfc3339("2024-05-01T12:34:56Z").unwrap();
    d.set_now(now);
    let ev = decode_with(&mut d, &hex(TIME_REQUEST_8A));
    assert_eq!(replies(&ev), vec![hex("78 78 0B 8A 18 05 01 0C 22 38 00 06 38 DC 0D 0A")]);
}

#[test]
fn commands_encode_byte_exact_and_replies_name_them() {
    assert_eq!(
        encode_command(0x0001_A958, "DYD,000000#", None, 0x00A0).unwrap(),
        hex("78 78 15 80 0F 00 01 A9 58 44 59 44 2C 30 30 30 30 30 30 23 00 A0 DC F1 0D 0A")
    );
    assert_eq!(
        encode_command(0, "Relay,1#", None, 0).unwrap(),
        hex("78 78 12 80 0C 00 00 00 00 52 65 6C 61 79 2C 31 23 00 00 9D EE 0D 0A")
    );
    assert_eq!(
        encode_command(0, "Relay,1#", Some(LANGUAGE_ENGLISH), 1).unwrap(),
        hex("78781480 0C 00000000 52656C61792C3123 0002 0001 E416 0D0A")
    );
    assert!(encode_command(0, "Relé#", None, 0).is_none());

    let mut d = Gt06Decoder::default();
    let first = d.command_frame("WHERE#", None).unwrap();
    let second = d.command_frame("DYD,000000#", None).unwrap();
    assert_eq!(&first[5..9], &1u32.to_be_bytes());
    assert_eq!(&second[5..9], &2u32.to_be_bytes());
    // The document's reply carries flag 0x0001A958; make one for flag 2 the same way.
    let mut reply = Vec::new();
    let mut content = vec![16u8];
    content.extend_from_slice(&2u32.to_be_bytes());
    content.extend_from_slice(b"DYD=Success!\x00\x02");
    encode_frame(&mut reply, false, COMMAND_REPLY, &content, 0x18).unwrap();
    let ev = decode_with(&mut d, &reply);
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::CommandResponse);
    assert_eq!(r.attributes.get("text").unwrap(), "DYD=Success!");
    assert_eq!(r.attributes.get("command").unwrap(), "DYD,000000#");
    assert!(replies(&ev).is_empty(), "command replies are never acked");

    let ev = decode(&hex(REPLY_15));
    let r = records(&ev)[0];
    assert_eq!(r.attributes.get("server_flag").unwrap(), 0x0001_A958);
    assert_eq!(r.attributes.get("text").unwrap(), "DYD=Success!");
    assert!(r.attributes.get("command").is_none());
    let ev = decode(&hex(REPLY_21));
    assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), "Command error!");
    assert_eq!(records(&ev)[0].seq, Some(0x23));
    assert!(replies(&ev).is_empty());
}

/// The gateway's way in: `RecordDecoder::command` numbers the command like the inherent
/// method, so the device's reply names it; what cannot be sent is said, not sent.
#[test]
fn downlink_text_goes_out_as_0x80_and_its_reply_names_it() {
    use crate::stream::{Downlink, DownlinkError};
    let mut d = Gt06Decoder::default();
    let sent = RecordDecoder::command(&mut d, &Downlink::Text("RELAY,1#".into())).unwrap();
    assert_eq!(sent.bytes, encode_command(1, "RELAY,1#", None, 1).unwrap());
    let answer = sent.answer.unwrap();
    assert_eq!((answer.attribute, answer.value), ("server_flag", 1));
    let mut content = vec![12u8]; // the server flag and the text
    content.extend_from_slice(&1u32.to_be_bytes());
    content.extend_from_slice(b"RELAY=OK\x00\x02");
    let mut reply = Vec::new();
    encode_frame(&mut reply, false, COMMAND_REPLY, &content, 7).unwrap();
    let ev = decode_with(&mut d, &reply);
    assert_eq!(records(&ev)[0].attributes.get("command").unwrap(), "RELAY,1#");
    assert_eq!(records(&ev)[0].attributes.get(answer.attribute).unwrap(), answer.value, "the answer matches");
    assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), "RELAY=OK");
    for (command, why) in [
        (Downlink::Text(String::new()), "empty"),
        (Downlink::Text("Relé#".into()), "not ASCII"),
        (Downlink::Text("X".repeat(300)), "longer than a short frame holds"),
    ] {
        assert!(matches!(RecordDecoder::command(&mut d, &command), Err(DownlinkError::Invalid(_))), "{why}");
    }
    let jt808 = Downlink::Jt808(crate::jt808::Command::QueryLocation);
    assert!(matches!(RecordDecoder::command(&mut d, &jt808), Err(DownlinkError::Unsupported(_))));
}

#[test]
fn wifi_count_frame_is_measured_by_its_counts_and_answered() {
    let ev = decode(&hex(WIFI_69));
    let r = records(&ev)[0];
    assert_eq!(r.fix_time.unwrap().to_string(), "2017-09-26T12:59:40Z");
    assert_eq!(r.attributes.get("checksum_missing").unwrap(), true);
    assert_eq!(r.attributes.get("cells").unwrap().as_array().unwrap().len(), 7);
    assert_eq!(replies(&ev), vec![hex("7878 00 69 170926125940 0d0a")]);
}

/// A position is acked in a short frame and not in a long one; so is an unknown type.
#[test]
fn long_frames_of_positions_and_unknown_types_are_not_acked() {
    let fix = hex("110314083839 CF 027AC818 0C465860 00 1400");
    for (protocol, content) in [(GPS, &fix[..]), (0x5B, &[1, 2, 3][..])] {
        for long in [false, true] {
            let mut frame = Vec::new();
            encode_frame(&mut frame, long, protocol, content, 9).unwrap();
            let ev = decode(&frame);
            assert_eq!(records(&ev).len(), 1, "0x{protocol:02X} long {long}");
            let expected = if long { vec![] } else { vec![ack(false, protocol, 9)] };
            assert_eq!(replies(&ev), expected, "0x{protocol:02X} long {long}");
        }
    }
}

#[test]
fn other_acks_and_silences() {
    // 0x94 information is never acked; an unknown short type is, a command-range one is not.
    let mut info = Vec::new();
    encode_frame(&mut info, true, INFO, &[0x00, 0x04, 0xEA], 7).unwrap();
    let ev = decode(&info);
    assert_eq!(records(&ev)[0].attributes.get("power_v").unwrap(), 12.58);
    assert!(replies(&ev).is_empty());
    let mut unknown = Vec::new();
    encode_frame(&mut unknown, false, 0x5B, &[1, 2, 3], 9).unwrap();
    let ev = decode(&unknown);
    assert_eq!(records(&ev)[0].kind, Kind::Unknown);
    assert_eq!(records(&ev)[0].attributes.get("data").unwrap(), "010203");
    assert_eq!(replies(&ev), vec![ack(false, 0x5B, 9)]);
    let mut command = Vec::new();
    encode_frame(&mut command, false, 0x81, &[1], 9).unwrap();
    assert!(replies(&decode(&command)).is_empty());
    // No geocoder: an address request gets the "no address" answer.
    assert_eq!(no_address_reply()[..5], [0x79, 0x79, 0x00, 0x15, ADDRESS_REPLY_EN]);
}

#[test]
fn bad_crc_is_rejected_strictly_and_marked_leniently() {
    let mut bad = hex(LOCATION_12);
    bad[10] ^= 0x01;
    let mut input = bad.clone();
    input.extend(hex(HEARTBEAT_13));
    let ev = decode(&input);
    assert_eq!(rejects(&ev), vec![RejectKind::Checksum]);
    assert!(matches!(&ev[0], StreamEvent::Rejected { offset: 0, len, .. } if *len == bad.len()));
    assert_eq!(records(&ev).len(), 1, "the heartbeat after it decodes");
    assert_eq!(replies(&ev).len(), 1, "a rejected frame is not acked");

    let mut lenient = Gt06Decoder::new(Gt06Options { crc: CrcPolicy::Lenient, ..Gt06Options::default() });
    let ev = decode_with(&mut lenient, &input);
    assert!(rejects(&ev).is_empty());
    assert_eq!(records(&ev)[0].attributes.get("crc_ok").unwrap(), false);
    assert!(records(&ev)[1].attributes.get("crc_ok").is_none());
}

#[test]
fn a_wrong_length_byte_with_a_right_crc_decodes() {
    let ev = decode(&hex("787808134606020002044dc5050d0a"));
    assert!(rejects(&ev).is_empty());
    assert_eq!(records(&ev)[0].attributes.get("length_field_ok").unwrap(), false);
}

#[test]
fn garbage_between_frames_costs_only_itself() {
    let mut input = b"\x00\x01hello\x78".to_vec();
    input.extend(hex(LOGIN_V1));
    input.extend(b"\x79\x79junk");
    input.extend(hex(HEARTBEAT_13));
    let ev = decode(&input);
    assert_eq!(records(&ev).len(), 2);
    assert_eq!(rejects(&ev).len(), 2);
    assert!(
        matches!(&ev[0], StreamEvent::Rejected { offset: 0, len: 8, reason } if reason.kind == RejectKind::Garbage)
    );
}

#[test]
fn every_truncation_point_is_incomplete_with_the_bytes_needed() {
    for frame in [LOGIN_V1, LOGIN_V2, LOCATION_12, ALARM_16, REPLY_21, HEARTBEAT_13] {
        let bytes = hex(frame);
        let mut framer = Gt06Framer::default();
        for cut in 1..bytes.len() {
            match framer.next_frame(&bytes[..cut]) {
                Framing::Incomplete { needed } => {
                    let header = if bytes[0] == 0x79 { 5 } else { 4 };
                    if cut >= header {
                        assert_eq!(needed, bytes.len() - cut, "{frame} cut at {cut}");
                    } else {
                        assert!(needed >= 1 && cut + needed <= bytes.len());
                    }
                }
                other => panic!("{frame} cut at {cut}: {other:?}"),
            }
        }
        assert_eq!(framer.next_frame(&bytes), Framing::Frame { len: bytes.len(), consumed: bytes.len() });
        // At the end of the stream a cut frame is one truncated-frame error.
        let ev = decode(&bytes[..bytes.len() - 3]);
        assert_eq!(rejects(&ev), vec![RejectKind::Truncated], "{frame}");
    }
}

fn sample_stream() -> Vec<u8> {
    let mut input = Vec::new();
    for f in [LOGIN_V2, LOCATION_12, WIFI_69, HEARTBEAT_13, ALARM_16, TIME_REQUEST_8A, REPLY_21, LOCATION_22] {
        input.extend(hex(f));
    }
    input
}

#[test]
fn every_read_size_decodes_the_same() {
    let mut input = sample_stream();
    // Damage mixed in: a bad CRC, garbage, a cut frame.
    let mut bad = hex(LOCATION_12_ACC);
    bad[12] ^= 0xFF;
    input.extend(&bad);
    input.extend(b"garbage\x78");
    input.extend(&hex(HEARTBEAT_13)[..9]);
    input.extend(hex(LOCATION_12_ACC));
    let whole = decode_in_reads(&mut Gt06Decoder::default(), &input, input.len());
    assert_eq!(whole.used, input.len());
    assert_eq!(records(&whole.events).len(), 9);
    // The nine frames that gave them, counted once each; the damaged ones are rejects.
    assert_eq!(whole.frames, 9);
    for chunk in [1, 2, 3, 5, 7, 16, 64, 100] {
        let replay = decode_in_reads(&mut Gt06Decoder::default(), &input, chunk);
        assert_eq!(replay.events, whole.events, "read size {chunk}");
        assert_eq!(replay.frames, whole.frames, "read size {chunk}");
        assert!(replay.max_held <= 260, "read size {chunk} held {}", replay.max_held);
    }
}

#[test]
fn terminal_information_alarm_bits() {
    assert_eq!(info_alarm(0b0010_0000), Some("sos"));
    assert_eq!(info_alarm(0b0001_1000), Some("low_battery"));
    assert_eq!(info_alarm(0b0100_0110), None);
    assert_eq!(AlarmCode(0x30).name(), Some("harsh_braking"));
    assert_eq!(AlarmCode(0xFE).ignition(), Some(true));
    assert_eq!(AlarmCode(0x91).jc_name(false), "harsh_braking");
}

#[test]
fn imei_bcd_both_ways() {
    assert_eq!(imei_from_bcd(&imei_to_bcd("123456789012345").unwrap()), "123456789012345");
    // Clones with hex nibbles keep every digit.
    assert_eq!(imei_from_bcd(&[0xAB, 0, 0, 0, 0, 0, 0, 1]), "ab00000000000001");
}

/// A heartbeat whose protocol byte lost a bit (0x13 → 0x17) reads like a CRC-less Wi-Fi
/// count frame whose count runs through the frames after it: it is rejected alone, and the
/// login, position and time request it would have swallowed are read.
#[test]
fn a_damaged_frame_read_as_a_crc_less_dialect_swallows_nothing() {
    let mut damaged = hex(HEARTBEAT_13);
    damaged[3] = 0x17;
    let mut input = damaged.clone();
    // Ten "access points" and the cell count read from the time request's serial: the
    // Wi-Fi frame would end exactly where the time request does.
    for f in [LOGIN_V2, LOCATION_22, TIME_REQUEST_8A, HEARTBEAT_13] {
        input.extend(hex(f));
    }
    let events = decode(&input);
    let kinds: Vec<Kind> = records(&events).iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Login, Kind::Position, Kind::TimeRequest, Kind::Heartbeat], "{events:#?}");
    assert_eq!(rejects(&events).len(), 1);
}

/// A positioned GPS block whose information byte is 0 (no GPS information, no satellite
/// used) is no fix; either nibble alone being 0 is one (real devices send both).
#[test]
fn a_gps_block_with_no_information_is_no_fix() {
    let fix = |length_satellites| GpsFix {
        time: [17, 6, 22, 9, 24, 53],
        length_satellites,
        latitude_raw: 38_517_040,
        longitude_raw: 131_333_000,
        speed_kmh: 61,
        course_status: 0x14C5,
    };
    for (byte, valid) in [(0x00, false), (0xD0, true), (0x05, true), (0xCF, true)] {
        let message = Message::Location {
            fix: fix(byte),
            cell: None,
            acc: None,
            upload_mode: None,
            reupload: None,
            mileage: None,
            extra: &[],
        };
        let events = decode(&frame_of(GPS, &message, 1));
        assert_eq!(records(&events)[0].valid, Some(valid), "{byte:02X}");
    }
}

// ---- round trips of every type the codec encodes ----

fn arb_fix() -> impl Strategy<Value = GpsFix> {
    (
        (0u8..100, 1u8..=12, 1u8..=28, 0u8..24, 0u8..60, 0u8..60),
        any::<u8>(),
        0u32..=162_000_000,
        0u32..=324_000_000,
        any::<u8>(),
        any::<u16>(),
    )
        .prop_map(|((y, mo, d, h, mi, s), ls, lat, lon, speed, cs)| GpsFix {
            time: [y, mo, d, h, mi, s],
            length_satellites: ls,
            latitude_raw: lat,
            longitude_raw: lon,
            speed_kmh: speed,
            course_status: cs,
        })
}

fn arb_cell(lte: bool) -> impl Strategy<Value = Cell> {
    (0u16..0x8000, any::<u16>(), any::<bool>(), any::<u32>(), any::<u64>()).prop_map(
        move |(mcc, mnc, wide, lac, ci)| {
            let (lac, cell_id) = if lte { (lac, ci) } else { (lac & 0xFFFF, ci & 0xFF_FFFF) };
            Cell { mcc, mnc: if wide { mnc } else { mnc & 0xFF }, mnc_wide: wide, lac, cell_id, rssi: None }
        },
    )
}

/// A frame for a generated message, through the encoder.
fn frame_of(protocol: u8, message: &Message<'_>, serial: u16) -> Vec<u8> {
    let mut content = Vec::new();
    message.write_content(protocol, &mut content).unwrap();
    let mut out = Vec::new();
    encode_frame(&mut out, matches!(protocol, INFO | COMMAND_REPLY_LONG), protocol, &content, serial).unwrap();
    out
}

fn parse_back(bytes: &[u8]) -> (u8, Vec<u8>) {
    let mut framer = Gt06Framer::default();
    let Framing::Frame { len, .. } = framer.next_frame(bytes) else { panic!("no frame") };
    assert_eq!(len, bytes.len());
    let frame = Frame::split(bytes, framer.last_shape()).unwrap();
    let message = Message::parse(&frame).unwrap();
    let mut again = Vec::new();
    message.write_content(frame.protocol, &mut again).unwrap();
    (frame.protocol, again)
}

proptest! {

    /// The ack built from its values is the empty frame `encode_frame` writes.
    #[test]
    fn acks_are_empty_frames(long in any::<bool>(), protocol in any::<u8>(), serial in any::<u16>()) {
        let mut framed = Vec::new();
        encode_frame(&mut framed, long, protocol, &[], serial).unwrap();
        let mut out = vec![0xAA];
        ack_into(&mut out, long, protocol, serial);
        prop_assert_eq!(&out[1..], &framed[..]);
        prop_assert_eq!(ack(long, protocol, serial), framed);
    }
    #[test]
    fn login_round_trip(id in "[0-9]{15}", type_id in proptest::option::of(any::<u16>()), zone in any::<u16>(), serial in any::<u16>()) {
        let login = Login { terminal_id: imei_to_bcd(&id).unwrap(), type_id, zone_language: type_id.map(|_| zone) };
        let bytes = frame_of(LOGIN, &Message::Login(login, &[]), serial);
        let ev = decode(&bytes);
        let r = records(&ev);
        prop_assert_eq!(r[0].device_id.as_deref(), Some(id.as_str()));
        prop_assert_eq!(replies(&ev), vec![ack(false, LOGIN, serial)]);
        let (_, content) = parse_back(&bytes);
        prop_assert_eq!(&bytes[4..bytes.len() - 6], &content[..]);
    }

    #[test]
    fn location_round_trip(
        protocol in prop::sample::select(vec![GPS_LBS, GPS_LBS_2, GPS_4G, GPS_LBS_3]),
        fix in arb_fix(), cell2 in arb_cell(false), cell4 in arb_cell(true),
        tail in proptest::option::of((any::<u8>(), any::<u8>(), any::<u8>(), proptest::option::of(any::<u32>()))),
        serial in any::<u16>(),
    ) {
        let cell = if protocol == GPS_4G { cell4 } else { cell2 };
        let (acc, upload_mode, reupload, mileage) = match (protocol, tail) {
            (GPS_LBS, _) | (_, None) => (None, None, None, None),
            (_, Some((a, m, r, km))) => (Some(a), Some(m), Some(r), km),
        };
        let message = Message::Location { fix, cell: Some(cell), acc, upload_mode, reupload, mileage, extra: &[] };
        let bytes = frame_of(protocol, &message, serial);
        let (p, content) = parse_back(&bytes);
        prop_assert_eq!(p, protocol);
        prop_assert_eq!(&bytes[4..bytes.len() - 6], &content[..]);
        let ev = decode(&bytes);
        let r = records(&ev)[0];
        prop_assert_eq!(r.seq, Some(u32::from(serial)));
        prop_assert_eq!(r.attributes.get("mcc").unwrap(), cell.mcc);
        prop_assert_eq!(r.speed_kmh, Some(f64::from(fix.speed_kmh)));
    }

    #[test]
    fn alarm_and_status_round_trip(
        protocol in prop::sample::select(vec![ALARM, ALARM_2, ALARM_MULTI_FENCE, ALARM_4G_MULTI_FENCE]),
        fix in arb_fix(), cell2 in arb_cell(false), cell4 in arb_cell(true),
        status in any::<[u8; 5]>(), fence in any::<u8>(), serial in any::<u16>(),
    ) {
        let cell = if protocol == ALARM_4G_MULTI_FENCE { cell4 } else { cell2 };
        let lbs = Message::alarm_lbs(&cell, protocol);
        let status = StatusBlock { info: status[0], voltage_level: status[1], gsm_signal: status[2], alarm: status[3], language: status[4] };
        let fence = matches!(protocol, ALARM_MULTI_FENCE | ALARM_4G_MULTI_FENCE).then_some(fence);
        let bytes = frame_of(protocol, &Message::Alarm { fix, lbs: &lbs, status, fence, extra: &[] }, serial);
        let (_, content) = parse_back(&bytes);
        prop_assert_eq!(&bytes[4..bytes.len() - 6], &content[..]);
        prop_assert_eq!(replies(&decode(&bytes)), vec![ack(false, protocol, serial)]);
    }

    #[test]
    fn heartbeat_reply_info_round_trip(
        info in any::<[u8; 5]>(), text in "[ -~]{0,60}", wide in "\\PC{0,20}", flag in any::<u32>(),
        subtype in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..40), serial in any::<u16>(),
    ) {
        let heartbeat = Message::Heartbeat(Heartbeat::Status {
            info: info[0], voltage_level: info[1], gsm_signal: info[2], alarm_language: Some([info[3], info[4]]), extra: &[],
        });
        let reply15 = Message::CommandReply(CommandReply { server_flag: flag, text: text.clone(), encoding: None, irregular_length: None, extra: &[0, 2] });
        let reply21 = Message::CommandReply(CommandReply { server_flag: flag, text: wide.clone(), encoding: Some(2), irregular_length: None, extra: &[] });
        let info94 = Message::Info(Info { subtype, data: &data });
        for (protocol, message) in [(HEARTBEAT, &heartbeat), (COMMAND_REPLY, &reply15), (COMMAND_REPLY_LONG, &reply21), (INFO, &info94), (TIME_REQUEST, &Message::TimeRequest)] {
            let bytes = frame_of(protocol, message, serial);
            let (_, content) = parse_back(&bytes);
            let header = if bytes[0] == 0x79 { 5 } else { 4 };
            prop_assert_eq!(&bytes[header..bytes.len() - 6], &content[..]);
        }
        let ev = decode(&frame_of(COMMAND_REPLY_LONG, &reply21, serial));
        prop_assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), wide.as_str());
        let ev = decode(&frame_of(COMMAND_REPLY, &reply15, serial));
        prop_assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), text.as_str());
    }

    /// Random valid traffic with damaged frames mixed in: each damaged frame costs itself
    /// and nothing else, whatever the read size.
    #[test]
    fn random_traffic_with_damage(
        picks in proptest::collection::vec((0usize..8, any::<bool>(), any::<u16>()), 1..20),
        chunk in 1usize..80,
    ) {
        let pool = [LOGIN_V1, LOGIN_V2, LOCATION_12, HEARTBEAT_13, ALARM_16, LOCATION_22, LOCATION_12_ACC, REPLY_21];
        let mut input = Vec::new();
        let mut good = 0;
        let mut damaged = 0;
        for (i, damage, at) in &picks {
            let mut f = hex(pool[*i]);
            if *damage {
                // Flip a content byte: the CRC catches it.
                let header = if f[0] == 0x79 { 5 } else { 4 };
                let k = header + usize::from(*at) % (f.len() - header - 4);
                f[k] ^= 0x5A;
                damaged += 1;
            } else {
                good += 1;
            }
            input.extend(f);
        }
        let replay = decode_in_reads(&mut Gt06Decoder::default(), &input, chunk);
        prop_assert_eq!(records(&replay.events).len(), good);
        prop_assert_eq!(rejects(&replay.events).len(), damaged);
        prop_assert!(rejects(&replay.events).iter().all(|k| *k == RejectKind::Checksum));
        let whole = decode_in_reads(&mut Gt06Decoder::default(), &input, input.len());
        prop_assert_eq!(replay.events, whole.events);
    }

    /// Any one bit flipped anywhere in one frame of a stream costs at most that frame: every
    /// other frame's record comes out, in order, and nothing is made up from their bytes
    /// (a damaged protocol byte that reads as a CRC-less dialect must not swallow them).
    #[test]
    fn one_flipped_bit_costs_at_most_its_frame(
        picks in proptest::collection::vec(0usize..9, 2..12),
        damaged in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let pool = [LOGIN_V1, LOGIN_V2, LOCATION_12, HEARTBEAT_13, ALARM_16, LOCATION_22, LOCATION_12_ACC, REPLY_21, TIME_REQUEST_8A];
        let frames: Vec<Vec<u8>> = picks.iter().map(|&i| hex(pool[i])).collect();
        let k = damaged.index(frames.len());
        let json = |input: &[u8]| -> Vec<String> {
            records(&decode(input)).iter().map(|r| r.to_json()).collect()
        };
        // What the stream gives without the frame, and with it undamaged (a flip the frame
        // survives, such as one in a CRC-verified frame's stop bytes... costs nothing).
        let without: Vec<u8> = frames.iter().enumerate().filter(|&(i, _)| i != k).flat_map(|(_, f)| f.clone()).collect();
        let (others, whole) = (json(&without), json(&frames.concat()));
        let mut input: Vec<u8> = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut f = f.clone();
            if i == k {
                let b = bit.index(f.len() * 8);
                f[b / 8] ^= 1 << (b % 8);
            }
            input.extend(f);
        }
        let got = json(&input);
        if got == whole {
            return Ok(());
        }
        let mut rest = got.iter();
        for want in &others {
            prop_assert!(rest.any(|g| g == want), "lost {} of frame {}'s neighbours; got {:#?}", want, k, got);
        }
        prop_assert!(got.len() <= others.len() + 1, "made up records: {:#?}", got);
    }
}

// ---- vendor types: JI09 (0x1E), X1 (0x34), a position in a command answer (0x21) ----

fn arb_x1() -> impl Strategy<Value = (X1Report<'static>, Vec<u8>)> {
    (
        any::<u32>(),
        arb_fix(),
        (any::<u16>(), any::<u32>()),
        (any::<u16>(), any::<u8>(), any::<u16>(), any::<u32>()),
        (any::<u32>(), any::<u16>(), any::<u16>()),
        (any::<u32>(), any::<u8>(), any::<u8>()),
        proptest::collection::vec(any::<u8>(), 30),
    )
        .prop_map(
            |(
                data_alarm,
                fix,
                (terminal_info, odometer_m),
                (mcc, mnc, lac, ci),
                (driver_id, battery, power),
                (port_info, inputs, outputs),
                adc_pool,
            )| {
                let adc = adc_pool[..2 * X1Report::adc_count(port_info)].to_vec();
                let cell = Cell {
                    mcc,
                    mnc: u16::from(mnc),
                    mnc_wide: false,
                    lac: u32::from(lac),
                    cell_id: u64::from(ci),
                    rssi: None,
                };
                let report = X1Report {
                    data_alarm,
                    fix,
                    terminal_info,
                    odometer_m,
                    cell,
                    driver_id,
                    battery_centivolts: battery,
                    power_centivolts: power,
                    port_info,
                    inputs,
                    outputs,
                    adc: &[],
                    extra: &[],
                };
                (report, adc)
            },
        )
}

proptest! {
    /// Any X1 report is written and read back as it was, and its record carries its values.
    #[test]
    fn x1_report_round_trip((report, adc) in arb_x1(), serial in any::<u16>()) {
        let report = X1Report { adc: &adc, ..report };
        let bytes = frame_of(X1_GPS, &Message::X1(report.clone()), serial);
        let (p, content) = parse_back(&bytes);
        prop_assert_eq!(p, X1_GPS);
        prop_assert_eq!(&bytes[4..bytes.len() - 6], &content[..]);
        let ev = decode(&bytes);
        let r = records(&ev)[0];
        prop_assert_eq!(r.kind, Kind::Position);
        prop_assert_eq!(r.attributes.get("odometer_m").unwrap(), report.odometer_m);
        prop_assert_eq!(r.attributes.get("cell_id").unwrap(), report.cell.cell_id);
        let adcs = (1..=15).filter(|i| r.attributes.get(&format!("adc{i}_v")).is_some()).count();
        prop_assert_eq!(adcs, X1Report::adc_count(report.port_info));
        prop_assert_eq!(replies(&ev), vec![ack(false, X1_GPS, serial)]);
    }

    /// A JI09 fix is a position whatever follows it, and is written back as read.
    #[test]
    fn ji09_fix_round_trip(fix in arb_fix(), extra in proptest::collection::vec(any::<u8>(), 0..60), serial in any::<u16>()) {
        let message = Message::Location { fix, cell: None, acc: None, upload_mode: None, reupload: None, mileage: None, extra: &extra };
        let bytes = frame_of(GPS_LBS_EXTEND, &message, serial);
        let (_, content) = parse_back(&bytes);
        prop_assert_eq!(&bytes[4..bytes.len() - 6], &content[..]);
        let ev = decode(&bytes);
        prop_assert_eq!(records(&ev)[0].kind, Kind::Position);
        prop_assert_eq!(records(&ev)[0].speed_kmh, Some(f64::from(fix.speed_kmh)));
    }
}

#[test]
fn x1_report_from_the_field() {
    // Traccar's X1 frame: Kuwait, odometer 1,450,313 m, driver 4892715, two ADCs.
    let ev = decode(&hex("78783c3439000000120a0902093a07031f9e690529be2e00155500000016214901a30308b70000b3fb004aa82b059401a3422100000001000000007d9370b90d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.latitude, r.longitude), (Some(29.113231666666668), Some(48.12319)));
    assert_eq!(r.fix_time, Timestamp::from_local_fields([18, 10, 9, 2, 9, 58], 0));
    for (key, want) in
        [("mcc", 419u64), ("mnc", 3), ("lac", 2231), ("cell_id", 46075), ("odometer_m", 1_450_313), ("outputs", 1)]
    {
        assert_eq!(r.attributes.get(key).unwrap(), want, "{key}");
    }
    assert_eq!(r.attributes.get("driver_id").unwrap(), "4892715");
    assert_eq!(r.attributes.get("battery_v").unwrap(), 14.28);
    assert_eq!(r.attributes.get("power_v").unwrap(), 4.19);
    assert_eq!(r.attributes.get("adc2_v").unwrap(), 0.0);
    assert!(r.attributes.get("adc3_v").is_none());
}

#[test]
fn a_position_in_a_command_answer() {
    let at = CurrentPosition::parse(
        "Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26  10:27:47",
    )
    .unwrap();
    assert_eq!((at.latitude, at.longitude, at.course_deg, at.speed_kmh), (54.739332, 25.27327, 126.53, 0.0));
    assert_eq!(at.time, [2017, 5, 26, 10, 27, 47]);
    let south_west =
        CurrentPosition::parse("Current position!Lat:S33.9,Lon:W70.6,Course:0,Speed:12.5,DateTime:2020-01-02 03:04:05")
            .unwrap();
    assert_eq!((south_west.latitude, south_west.longitude, south_west.speed_kmh), (-33.9, -70.6, 12.5));
    for not_one in [
        "RELAY=1 OK",
        "Current position!Lat:X54.7,Lon:E25.2,Course:1,Speed:0,DateTime:2017-05-26 10:27:47",
        "Current position!Lat:N94.7,Lon:E25.2,Course:1,Speed:0,DateTime:2017-05-26 10:27:47",
        "Current position!Lat:N54.7,Lon:E25.2,Course:1,Speed:0",
        "Current position!Lat:N54.7,Lon:E25.2,Course:1,Speed:NaN,DateTime:2017-05-26 10:27:47",
    ] {
        assert_eq!(CurrentPosition::parse(not_one), None, "{not_one}");
    }
    // Through the decoder: the answer keeps its text and gains the position, in the
    // login's time zone (none here: UTC).
    let text =
        "Current position!Lat:N54.739332,Lon:E25.273270,Course:126.53,Speed:0.0000,DateTime:2017-05-26  10:27:47";
    let reply =
        CommandReply { server_flag: 7, text: text.into(), encoding: Some(1), irregular_length: None, extra: &[] };
    let ev = decode(&frame_of(COMMAND_REPLY_LONG, &Message::CommandReply(reply), 3));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::CommandResponse);
    assert_eq!((r.latitude, r.longitude, r.course_deg), (Some(54.739332), Some(25.27327), Some(126.53)));
    assert_eq!(r.fix_time, Timestamp::from_local_fields([17, 5, 26, 10, 27, 47], 0));
    assert_eq!(r.attributes.get("text").unwrap(), text);
}

// ---- layouts told apart by length, modules, the AZ735 (docs/protocols/gt06.md §5.9–§5.12) ----

/// Writes `message` for `protocol`, reads it back the same, and decodes it; the events.
fn round_trip_events(protocol: u8, long: bool, message: &Message<'_>, serial: u16) -> Vec<StreamEvent> {
    let mut content = Vec::new();
    message.write_content(protocol, &mut content).unwrap();
    let mut bytes = Vec::new();
    encode_frame(&mut bytes, long, protocol, &content, serial).unwrap();
    let (p, again) = parse_back(&bytes);
    assert_eq!((p, &again), (protocol, &content));
    decode(&bytes)
}

proptest! {
    #[test]
    fn sr411_and_wanway_cells_round_trip(
        fix in arb_fix(), cell in arb_cell(false), ignition in any::<u8>(), volts in any::<(u16, u16)>(),
        extra in proptest::collection::vec(any::<u8>(), 8..=8), time in any::<[u8; 6]>(), ta in any::<u8>(),
        cells in proptest::collection::vec(arb_cell(false), 0..4), serial in any::<u16>(),
    ) {
        let cell = Cell { mnc_wide: false, mnc: cell.mnc & 0xFF, ..cell };
        // 18 + 8 + 5 + 10 bytes: the SR411's length.
        let sr411 = Sr411Report { fix, cell, ignition, power_centivolts: volts.0, battery_centivolts: volts.1, extra: &[extra.clone(), vec![0, 0]].concat() };
        let ev = round_trip_events(LBS_MULTIPLE_3, false, &Message::Sr411(sr411.clone()), serial);
        prop_assert_eq!(records(&ev)[0].attributes.get("ignition").unwrap(), ignition != 0);
        prop_assert_eq!(replies(&ev), vec![ack(false, LBS_MULTIPLE_3, serial)]);
        // The S20's: a count of cells, padded to its 44 bytes.
        let first = cells.first().copied().unwrap_or(cell);
        let cells: Vec<Cell> = cells.iter().map(|c| Cell { mcc: first.mcc, mnc: first.mnc, mnc_wide: first.mnc_wide, rssi: Some(7), ..*c }).collect();
        let used = 6 + 1 + if first.mnc_wide { 4 } else { 3 } + 1 + 6 * cells.len();
        let pad = vec![0u8; 44 - used];
        let report = LbsReport { time, cells: cells.clone(), timing_advance: ta, wifi: Vec::new(), extra: &pad };
        let operator = (first.mcc, first.mnc, first.mnc_wide);
        let ev = round_trip_events(LBS_MULTIPLE_3, false, &Message::LbsCounted { operator, report }, serial);
        let nonzero = cells.iter().filter(|c| c.lac != 0).count();
        prop_assert_eq!(records(&ev)[0].attributes.get("cells").unwrap().as_array().unwrap().len(), nonzero);
    }

    #[test]
    fn lw4g_and_4g_wifi_cells_round_trip(
        fix in arb_fix(), cell in arb_cell(true), bytes in any::<[u8; 7]>(), counters in any::<(u16, u32, u32, u16)>(),
        terminal_id in any::<[u8; 8]>(), time in any::<[u8; 6]>(), cells in proptest::collection::vec(arb_cell(true), 7..=7),
        aps in proptest::collection::vec(any::<([u8; 6], u8)>(), 0..4), serial in any::<u16>(),
    ) {
        let [network, info, battery, gsm_signal, alarm, language, _] = bytes;
        let (power, odometer, seconds, inputs) = counters;
        let lw4g = Lw4gReport { fix, cell, network, info, power_centivolts: power, battery, gsm_signal, alarm, language, odometer_m: odometer, engine_seconds: seconds, terminal_id, inputs };
        let mut content = Vec::new();
        Message::Lw4g(lw4g).write_content(WIFI_LBS_4G, &mut content).unwrap();
        // A wide MNC makes it 60 bytes, which is not the LW4G's report.
        prop_assume!(content.len() == 59);
        let ev = round_trip_events(WIFI_LBS_4G, false, &Message::Lw4g(lw4g), serial);
        prop_assert_eq!(records(&ev)[0].attributes.get("odometer_m").unwrap(), odometer);
        let first = cells[0];
        let cells: Vec<Cell> = cells.iter().map(|c| Cell { mcc: first.mcc, mnc: first.mnc, mnc_wide: first.mnc_wide, rssi: Some(3), ..*c }).collect();
        let wifi: Vec<WifiAp> = aps.iter().map(|&(mac, rssi)| WifiAp { mac, rssi }).collect();
        let report = LbsReport { time, cells, timing_advance: 0xFF, wifi: wifi.clone(), extra: &[] };
        let ev = round_trip_events(WIFI_LBS_4G, false, &Message::Lbs(report), serial);
        let got = records(&ev)[0].attributes.get("wifi").map_or(0, |w| w.as_array().unwrap().len());
        prop_assert_eq!(got, wifi.len());
    }

    #[test]
    fn modules_round_trip(modules in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..24)), 0..8), serial in any::<u16>()) {
        let modules: Vec<Module<'_>> = modules.iter().map(|(kind, value)| Module { kind: *kind, value }).collect();
        let ev = round_trip_events(GPS_MODULAR, true, &Message::Modular { modules, extra: &[] }, serial);
        prop_assert_eq!(records(&ev).len(), 1);
        prop_assert_eq!(replies(&ev), vec![ack(false, GPS_MODULAR, serial)]);
    }

    #[test]
    fn az735_round_trip(
        fix in proptest::option::of(arb_fix()), time in any::<[u8; 6]>(), cell in proptest::option::of((arb_cell(false), any::<u8>())),
        towers in proptest::collection::vec(any::<u8>(), 0..30), wifi in proptest::collection::vec(any::<u8>(), 0..30),
        status in any::<u8>(), reserved in proptest::collection::vec(any::<u8>(), 0..10), alarm in any::<bool>(), serial in any::<u16>(),
    ) {
        let fix = fix.map(|f| GpsFix { time, ..f });
        let block = cell.map(|(c, _)| Message::alarm_lbs(&c, AZ735_GPS));
        let lbs = block.as_deref().zip(cell.map(|(_, rssi)| rssi));
        let report = Az735Report {
            time,
            gps_len: if fix.is_some() { 12 } else { 0 },
            fix,
            lbs_len: block.as_ref().map_or(0, |b| b.len() as u8 + 1),
            lbs,
            towers: &towers,
            wifi: &wifi,
            status,
            reserved: &reserved,
            extra: &[],
        };
        let protocol = if alarm { AZ735_ALARM } else { AZ735_GPS };
        let ev = round_trip_events(protocol, true, &Message::Az735(report.clone()), serial);
        let r = records(&ev)[0];
        prop_assert_eq!(r.kind, if fix.is_some() { Kind::Position } else { Kind::Status });
        prop_assert_eq!(r.attributes.get("gsm_signal").is_some(), cell.is_some());
        prop_assert_eq!(replies(&ev), vec![ack(true, protocol, serial)]);
    }
}

#[test]
fn vendor_layouts_from_the_field() {
    // The LW4G's 0xA2: Cali, Colombia; battery 42 %, odometer 19,249 m.
    let content = hex("180b0f0f3407cf00602cd208354064001c6a02dc650000698100000000095674c9114100002a04000100004b310000000008638290792867930200");
    let mut frame = Vec::new();
    encode_frame(&mut frame, false, WIFI_LBS_4G, &content, 418).unwrap();
    let ev = decode(&frame);
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid), (Kind::Position, Some(true)));
    assert!((r.latitude.unwrap() - 3.501628).abs() < 1e-5 && (r.longitude.unwrap() + 76.504233).abs() < 1e-5);
    assert_eq!(r.attributes.get("battery_percent").unwrap(), 42);
    assert_eq!(r.attributes.get("odometer_m").unwrap(), 19249);
    assert_eq!(r.attributes.get("mcc").unwrap(), 732);
    // A 0x70 report: the fix module, a removal event, the odometer.
    let modules = hex("00330012 5d7e3a18 06 00d5 04b598f7 08814b3a 00 1d15 002b0001 14 002e0004 0000f25d"
        .replace(' ', "")
        .as_str());
    let mut frame = Vec::new();
    encode_frame(&mut frame, true, GPS_MODULAR, &modules, 5).unwrap();
    let ev = decode(&frame);
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid, r.satellites, r.altitude_m), (Kind::Position, Some(true), Some(6), Some(213.0)));
    assert!((r.latitude.unwrap() - 43.894466).abs() < 1e-5 && (r.longitude.unwrap() + 79.27285).abs() < 1e-5);
    assert_eq!(r.fix_time.unwrap().to_string(), "2019-09-15T13:18:16Z");
    assert_eq!(r.alarms, vec!["removing"]);
    assert_eq!(r.attributes.get("odometer_m").unwrap(), 62_045);
    assert_eq!(replies(&ev), vec![ack(false, GPS_MODULAR, 5)]);
}

/// Found by `gt06_roundtrip`: a Wanway S20 0x24 with a wide operator and no cells was written
/// back with the operator of its (absent) first cell, a byte shorter, which is no longer the
/// S20's layout.
#[test]
fn regression_fuzz_wanway_cells_without_a_cell_keep_their_operator() {
    let content = hex("1603860c231e 00 ac00 0000 00 0000006a3413ee0060692e000007787800697878006909200400cc080c4e2fa5");
    assert_eq!(content.len(), 44);
    let mut frame = Vec::new();
    encode_frame(&mut frame, false, LBS_MULTIPLE_3, &content, 1).unwrap();
    let (_, again) = parse_back(&frame);
    assert_eq!(again, content);
}

/// The message a frame built by the encoder reads back as.
fn read_back(protocol: u8, long: bool, content: &[u8]) -> Message<'_> {
    Message::parse(&Frame { long, protocol, length_field: 0, content, serial: Some(1), integrity: Integrity::Verified })
        .unwrap()
}

proptest! {
    #[test]
    fn gps8_round_trip(
        fix in arb_fix(), modes in any::<(u8, u8)>(), cell_type in any::<u8>(), cells in (arb_cell(false), arb_cell(true)),
        signal in any::<u16>(), extra in proptest::collection::vec(any::<u8>(), 0..24), serial in any::<u16>(),
    ) {
        let lte = cell_type >= 3;
        let report = Gps8Report {
            fix,
            upload_mode: modes.0,
            reupload: modes.1,
            cell_type,
            cell: if lte { cells.1 } else { cells.0 },
            signal: if lte { signal } else { signal & 0xFF },
            extra: &extra,
        };
        let cell_id = report.cell.cell_id;
        let message = Message::Gps8(report);
        let mut content = Vec::new();
        message.write_content(GPS_LBS_8, &mut content).unwrap();
        prop_assert_eq!(read_back(GPS_LBS_8, true, &content), message.clone());
        let ev = round_trip_events(GPS_LBS_8, false, &message, serial);
        let r = records(&ev)[0];
        prop_assert_eq!(r.kind, Kind::Position);
        prop_assert_eq!(r.attributes.get("cell_id").unwrap(), cell_id);
        prop_assert_eq!(replies(&ev), vec![ack(false, GPS_LBS_8, serial)]);
    }

    #[test]
    fn short_status_fix_round_trip(
        fix in arb_fix(), lbs in proptest::collection::vec(any::<u8>(), 0..20), status in any::<[u8; 5]>(),
        altitude in proptest::option::of(any::<i16>()), extra in proptest::collection::vec(any::<u8>(), 0..10), serial in any::<u16>(),
    ) {
        // Two bytes after the status block are the altitude: extra of that length is not one.
        prop_assume!(extra.len() != 2);
        let [info, voltage_level, gsm_signal, alarm, language] = status;
        let report = StatusFixReport {
            fix,
            lbs: &lbs,
            status: StatusBlock { info, voltage_level, gsm_signal, alarm, language },
            altitude_m: altitude,
            extra: if altitude.is_some() { &[] } else { &extra },
        };
        let message = Message::StatusFix(report);
        let mut content = Vec::new();
        message.write_content(AZ735_GPS, &mut content).unwrap();
        prop_assert_eq!(read_back(AZ735_GPS, false, &content), message.clone());
        let ev = round_trip_events(AZ735_GPS, false, &message, serial);
        let r = records(&ev)[0];
        prop_assert_eq!((r.kind, r.altitude_m), (Kind::Position, altitude.map(f64::from)));
        prop_assert_eq!(replies(&ev), vec![ack(false, AZ735_GPS, serial)]);
    }

    #[test]
    fn module_heartbeat_round_trip(
        status in any::<[u8; 5]>(), modules in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
        serial in any::<u16>(),
    ) {
        let [info, voltage_level, gsm_signal, alarm, language] = status;
        let modules: Vec<Module<'_>> = modules.iter().map(|(kind, value)| Module { kind: *kind, value }).collect();
        let status = StatusBlock { info, voltage_level, gsm_signal, alarm, language };
        let message = Message::Heartbeat(Heartbeat::Modules { status, modules });
        let mut content = Vec::new();
        message.write_content(STATUS_2, &mut content).unwrap();
        prop_assert_eq!(read_back(STATUS_2, false, &content), message.clone());
        let ev = round_trip_events(STATUS_2, false, &message, serial);
        prop_assert_eq!(records(&ev)[0].kind, Kind::Heartbeat);
        prop_assert_eq!(replies(&ev), vec![ack(false, STATUS_2, serial)]);
    }
}

/// Frames from Traccar's tests (corpus/gt06/traccar), read by the layouts of §5.13–§5.15.
#[test]
fn gps_lbs_8_sl4x_fix_and_jimi_heartbeats_from_the_field() {
    // 0x38 in a long frame, Costa Rica: a 4G cell (type 3: LAC 4, CI 8, signal 2).
    let ev = decode(&hex("7979003e3819050e0e0c26c5010fd98e0905f53000ccab0e000302c80100000c240000000000048b08001b002e04000015c4003b020000003c0401020001021f60220d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid, r.satellites), (Kind::Position, Some(false), Some(5)));
    assert!((r.latitude.unwrap() - 9.89775).abs() < 1e-5 && (r.longitude.unwrap() + 84.102995).abs() < 1e-5);
    let a = &r.attributes;
    assert_eq!(a.get("mcc").unwrap(), 712);
    assert_eq!(a.get("mnc").unwrap(), 1);
    assert_eq!(a.get("lac").unwrap(), 3108);
    assert_eq!(a.get("cell_id").unwrap(), 297_736);
    assert_eq!(a.get("gsm_signal").unwrap(), 27);
    assert_eq!(a.get("cell_type").unwrap(), 3);
    assert_eq!(a.get("upload_mode").unwrap(), 14);
    assert!(replies(&ev).is_empty(), "a position in a long frame is not acked");

    // The SL4X's short 0x32, Campinas: a 10-byte cell block (MNC 2, CI 4), the status
    // block, and 687 m, the town's altitude.
    let ev =
        decode(&hex("7878293218061301261ccd0274c4ad050d7c960018000a02d4000ac3c70dbdc40b46f004210202af001784290d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid, r.altitude_m), (Kind::Position, Some(true), Some(687.0)));
    assert!((r.latitude.unwrap() + 22.892754).abs() < 1e-5 && (r.longitude.unwrap() + 47.094412).abs() < 1e-5);
    let a = &r.attributes;
    assert_eq!(a.get("mcc").unwrap(), 724);
    assert_eq!(a.get("mnc").unwrap(), 10);
    assert_eq!(a.get("lac").unwrap(), 50_119);
    assert_eq!(a.get("cell_id").unwrap(), 230_540_299);
    assert_eq!(a.get("gsm_signal").unwrap(), 4);
    assert_eq!(a.get("alarm_raw").unwrap(), 0x21);
    assert_eq!(replies(&ev), vec![ack(false, AZ735_GPS, 23)]);
    // And one without the altitude: the status block ends the content.
    let ev = decode(&hex("78782732180214123324ca0162bdf0041f45d900190b0a02d4000bc5270000ec025206040202005e07e10d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.altitude_m), (Kind::Position, None));
    assert_eq!(r.alarms, vec!["power_cut"]);
    assert_eq!(r.attributes.get("extra"), None);

    // Jimi's 4G heartbeat: the status block, then modules (start-up, battery 4.02 V, 95 %).
    let ev = decode(&hex("787817360005040002003201010018020192006a015f0324aeaf0d0a"));
    let r = records(&ev)[0];
    assert_eq!(r.kind, Kind::Heartbeat);
    assert_eq!(r.attributes.get("battery_v").unwrap(), 4.02);
    assert_eq!(r.attributes.get("battery_percent").unwrap(), 95);
    assert_eq!(r.attributes.get("startup_status").unwrap(), 1);
    assert_eq!(r.attributes.get("gsm_signal").unwrap(), 4);
    assert_eq!(replies(&ev), vec![ack(false, STATUS_2, 804)]);

    // The VL103's 0x36, Shenzhen: a fix and a cell, then the tail whose last 8 bytes are the
    // card read (none in the second frame).
    let ev = decode(&hex("78783536190c1d0f1724cf026cc9140c367d4000940001cc0025ef0540e88c01000000000064051428000006c3000001453f9201003477560d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.valid, r.satellites), (Kind::Position, Some(true), Some(15)));
    assert!((r.latitude.unwrap() - 22.602109).abs() < 1e-5 && (r.longitude.unwrap() - 113.832).abs() < 1e-5);
    assert_eq!(r.fix_time.unwrap().to_string(), "2025-12-29T15:23:36Z");
    assert_eq!(r.attributes.get("mcc").unwrap(), 460);
    assert_eq!(r.attributes.get("driver_id").unwrap(), "c3000001453f9201");
    assert_eq!(replies(&ev), vec![ack(false, STATUS_2, 52)]);
    let ev = decode(&hex("78783536190c1d0f2806cf026cc9140c367d4000540001cc0025ef0540e88c00000000000064051e2800001600000000000000006e5bc2660d0a"));
    assert_eq!(records(&ev)[0].kind, Kind::Position);
    assert_eq!(records(&ev)[0].attributes.get("driver_id"), None);
}

proptest! {
    #[test]
    fn lbs_alarm_address_and_serial_round_trip(
        cell in arb_cell(true), status in any::<[u8; 5]>(), phone in any::<[u8; 21]>(),
        extra in proptest::collection::vec(any::<u8>(), 0..8), kind in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..40), serial in any::<u16>(),
    ) {
        let [info, voltage_level, gsm_signal, alarm, language] = status;
        let status = StatusBlock { info, voltage_level, gsm_signal, alarm, language };
        for (protocol, long, message, kind_of, answered) in [
            (LBS_ALARM_4G, false, Message::LbsStatus { cell, status, extra: &extra }, Kind::Status, true),
            (LBS_ADDRESS_4G, false, Message::LbsAddressRequest { cell, phone: &phone, extra: &extra }, Kind::Status, true),
            (SERIAL, true, Message::Serial { kind, data: &data }, Kind::Info, false),
        ] {
            let mut content = Vec::new();
            message.write_content(protocol, &mut content).unwrap();
            prop_assert_eq!(read_back(protocol, long, &content), message.clone());
            let ev = round_trip_events(protocol, long, &message, serial);
            prop_assert_eq!(records(&ev)[0].kind, kind_of);
            prop_assert_eq!(!replies(&ev).is_empty(), answered);
        }
    }
}

/// The GK310's cell-only alarm and address request, and serial pass-through, from Traccar's
/// tests (corpus/gt06/traccar rows #40, #93, #31, #58).
#[test]
fn gk310_cell_alarm_address_request_and_serial_data() {
    // 0xA5: a 4G cell (LAC 4, CI 8) and the status block; alarm 0x13 is tampering.
    let ev = decode(&hex("787819a5012ed0000075df000000000098661502050413000019a12b0d0a"));
    let r = records(&ev)[0];
    assert_eq!((r.kind, r.alarms.clone()), (Kind::Status, vec!["tamper".into()]));
    assert_eq!(r.attributes.get("lac").unwrap(), 30_175);
    assert_eq!(r.attributes.get("cell_id").unwrap(), 9_987_605);
    assert_eq!(replies(&ev), vec![ack(false, LBS_ALARM_4G, 0x19)]);
    // 0xA7: the cell and the number; answered "no address" as 0x1A/0x2A are.
    let ev = decode(&hex(
        "78782ba701cc000000919100000000090617032b3836313832323038343735363200000000000000000100049fb60d0a",
    ));
    let r = records(&ev)[0];
    assert_eq!(r.attributes.get("phone").unwrap(), "+8618220847562");
    assert_eq!(r.attributes.get("mcc").unwrap(), 460);
    assert_eq!(replies(&ev), vec![no_address_reply()]);
    // 0x9B: a text line without its CR LF; bytes that are not text as hex; never answered.
    let ev = decode(&hex("797900109b0344373532304136320d0a000f87f00d0a"));
    assert_eq!(records(&ev)[0].attributes.get("text").unwrap(), "D7520A62");
    assert!(replies(&ev).is_empty());
}
