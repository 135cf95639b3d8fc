use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder as _;

use super::*;
use crate::codec::{FrameDecoder, FrameItem};
use crate::record::{Kind, Record};
use crate::stream::{decode_in_reads, RecordDecoder, Replay, StreamEvent};

/// Decodes a whole stream in one call.
fn decode_all(input: &[u8]) -> Vec<StreamEvent> {
    let mut d = NmeaDecoder::default();
    let mut out = Vec::new();
    let used = d.decode(input, true, &mut out);
    assert_eq!(used, input.len());
    out
}

fn records(input: &str) -> Vec<Record> {
    decode_all(input.as_bytes())
        .into_iter()
        .map(|e| match e {
            StreamEvent::Record(r) => r,
            StreamEvent::Rejected { reason, .. } => panic!("unexpected rejection: {reason}"),
            StreamEvent::Reply(_) => panic!("NMEA devices are never answered"),
        })
        .collect()
}

fn one(input: &str) -> Record {
    let mut r = records(input);
    assert_eq!(r.len(), 1, "{r:?}");
    r.remove(0)
}

fn rejections(input: &[u8]) -> Vec<(u64, RejectKind)> {
    decode_all(input)
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Rejected { offset, reason, .. } => Some((offset, reason.kind)),
            StreamEvent::Record(_) | StreamEvent::Reply(_) => None,
        })
        .collect()
}

/// `$body*HH\r\n` with the checksum computed.
fn with_checksum(body: &str) -> String {
    format!("${body}*{:02X}\r\n", crate::wire::checksum::xor8(body.as_bytes()))
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-7)
}

#[test]
fn rmc_worked_example() {
    // A u-blox receiver's RMC from gpsd's logs.
    let r = one("$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B\r\n");
    assert_eq!(r.kind, Kind::Position);
    assert_eq!(r.message_type, "RMC");
    assert_eq!(r.fix_time.unwrap().to_string(), "2017-01-10T00:10:31.000Z");
    assert_eq!(r.valid, Some(true));
    assert!(close(r.latitude, 44.068_998_8));
    assert!(close(r.longitude, -121.314_337_2));
    assert!(close(r.speed_kmh, 0.146 * 1.852));
    assert_eq!(r.course_deg, None, "empty course is absent, not 0");
    assert_eq!(r.attributes.get("mode"), Some(&"A".into()));
    assert_eq!(r.attributes.get("talker"), Some(&"GN".into()));
    assert_eq!(r.attributes.get("magnetic_variation_deg"), None);
}

#[test]
fn gga_without_a_date_keeps_its_time_of_day() {
    // The same receiver's GGA: fields 13-14 absent entirely.
    let r = one("$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M*47\n");
    assert_eq!(r.fix_time, None);
    assert_eq!(r.attributes.get("utc_time"), Some(&"00:10:43.000".into()));
    assert_eq!(r.valid, Some(true));
    assert_eq!(r.satellites, Some(12));
    assert_eq!(r.hdop, Some(0.98));
    assert_eq!(r.altitude_m, Some(1113.0));
    assert_eq!(r.attributes.get("geoid_separation_m"), Some(&(-21.3).into()));
    assert_eq!(r.attributes.get("dgps_age_s"), None);
}

#[test]
fn an_epoch_takes_its_date_from_rmc_and_zda() {
    // A SkyTraq RTK float epoch from gpsd's logs: GGA and GLL before RMC get no date; ZDA's
    // date then applies to what follows.
    let epoch = "$GPGGA,003832.000,4404.1271062,N,12118.8438377,W,5,14,0.8,1127.630,M,-20.300,M,1.000,0000*74\r\n\
$GNGSA,A,3,05,12,25,29,,,,,,,,,1.7,0.8,1.6,1*32\r\n\
$GNGSA,A,3,74,,,,,,,,,,,,1.7,0.8,1.6,2*38\r\n\
$GNGSA,A,3,02,11,25,36,,,,,,,,,1.7,0.8,1.6,3*3A\r\n\
$GNGSA,A,3,20,29,30,32,35,,,,,,,,1.7,0.8,1.6,4*30\r\n\
$GNGLL,4404.1271062,N,12118.8438377,W,003832.000,A,D*50\r\n\
$GNRMC,003832.000,A,4404.1271062,N,12118.8438377,W,000.0,171.0,290322,,,F,V*10\r\n\
$GNVTG,171.0,T,,M,000.0,N,000.0,K,D*11\r\n\
$GNZDA,003832.000,29,03,2022,00,00*48\r\n\
$GPGGA,003833.000,4404.1271062,N,12118.8438377,W,5,14,0.8,1127.630,M,-20.300,M,1.000,0000*75\r\n";
    let rs = records(epoch);
    let kinds: Vec<_> = rs.iter().map(|r| r.message_type.as_ref()).collect();
    assert_eq!(kinds, ["GGA", "GSA", "GSA", "GSA", "GSA", "GLL", "RMC", "VTG", "ZDA", "GGA"]);
    assert_eq!(rs[0].fix_time, None);
    assert_eq!(rs[0].attributes.get("fix_quality"), Some(&5.into()));
    assert_eq!(rs[0].attributes.get("dgps_station"), Some(&0.into()));
    assert_eq!(rs[2].attributes.get("satellite_ids"), Some(&serde_json::json!([74]).into()));
    assert_eq!(rs[2].attributes.get("system_id"), Some(&2.into()));
    assert_eq!(rs[2].hdop, Some(0.8));
    assert_eq!(rs[5].attributes.get("mode"), Some(&"D".into()));
    assert_eq!(rs[6].fix_time.unwrap().to_string(), "2022-03-29T00:38:32.000Z");
    assert_eq!(rs[6].attributes.get("nav_status"), Some(&"V".into()));
    assert_eq!(rs[6].attributes.get("mode"), Some(&"F".into()));
    assert_eq!(rs[7].course_deg, Some(171.0));
    assert_eq!(rs[7].speed_kmh, Some(0.0));
    assert_eq!(rs[8].attributes.get("utc"), Some(&"2022-03-29T00:38:32.000Z".into()));
    assert_eq!(rs[9].fix_time.unwrap().to_string(), "2022-03-29T00:38:33.000Z");
    assert!(close(rs[9].latitude, 44.068_785_103_3));
}

#[test]
fn gsv_group_with_signal_id() {
    let rs = records(
        "$GPGSV,3,1,10,25,70,260,46,02,55,052,,12,53,162,46,20,52,107,,1*65\r\n\
$GPGSV,3,2,10,11,52,053,,29,46,296,43,05,40,146,47,31,18,304,,1*6B\r\n\
$GPGSV,3,3,10,18,11,233,,06,09,052,,1*66\r\n",
    );
    assert_eq!(rs.len(), 3);
    let sats = rs[0].attributes.get("satellites").unwrap();
    assert_eq!(sats[1], serde_json::json!({"id": 2, "elevation_deg": 55, "azimuth_deg": 52}));
    assert_eq!(rs[0].attributes.get("satellites_in_view"), Some(&10.into()));
    assert_eq!(rs[2].attributes.get("satellites").unwrap().as_array().unwrap().len(), 2);
    assert_eq!(rs[2].attributes.get("signal_id"), Some(&1.into()));
}

#[test]
fn other_worked_sentences() {
    let r = one("$GNGLL,4404.14012,N,12118.85993,W,001037.00,A,A*67");
    assert_eq!((r.kind, r.valid), (Kind::Position, Some(true)));
    let r = one("$GPVTG,220.86,T,,M,2.550,N,4.724,K,A*34");
    assert_eq!((r.course_deg, r.speed_kmh), (Some(220.86), Some(4.724)));
    let r = one("$GPZDA,160012.71,11,03,2004,-1,00*7D");
    assert_eq!(r.attributes.get("utc"), Some(&"2004-03-11T16:00:12.710Z".into()));
    assert_eq!(r.attributes.get("local_zone_hours"), Some(&(-1).into()));
    let r = one("$GNGNS,120213.000,5957.0062,N,01100.6429,E,NDD,11,1.3,168.9,39.5,,,V*57");
    assert_eq!((r.valid, r.satellites, r.altitude_m), (Some(true), Some(11), Some(168.9)));
    assert_eq!(r.attributes.get("mode"), Some(&"NDD".into()));
    assert_eq!(r.attributes.get("nav_status"), Some(&"V".into()));
    let r = one("$GNGNS,213712.000,4111.59903,N,11156.54809,W,AANN,13,0.93,01482.5,-016.5,,*52");
    assert_eq!(r.altitude_m, Some(1482.5));
    let r = one("$GPGST,182141.000,15.5,15.3,7.2,21.8,0.9,0.5,0.8*54");
    assert_eq!(r.attributes.get("sigma_altitude_m"), Some(&0.8.into()));
    let r = one("$GNGST,181141.00,46,,,,4.7,1.9,5.3*4A");
    assert_eq!(r.attributes.get("sigma_semi_major_m"), None);
    let r = one("$GPHDT,274.07,T*03");
    assert_eq!(r.attributes.get("heading_deg"), Some(&274.07.into()));
    let r = one("$GPHDT,,T*1B");
    assert_eq!(r.attributes.get("heading_deg"), None);
    let r = one("$GNTXT,01,01,02,u-blox AG - www.u-blox.com*4E");
    assert_eq!(r.attributes.get("text"), Some(&"u-blox AG - www.u-blox.com".into()));
    assert_eq!(r.attributes.get("text_id"), Some(&2.into()));
    let r = one("$PMTK220,1000*1F");
    assert_eq!((r.kind, r.message_type.as_ref()), (Kind::Info, "PMTK220"));
    assert_eq!(r.attributes.get("sentence"), Some(&"$PMTK220,1000*1F".into()));
}

#[test]
fn void_fix_with_zero_coordinates_has_no_position() {
    let r = one("$GPRMC,205150.00,V,,,,,,,,,,,V*4a");
    assert_eq!(r.valid, Some(false));
    assert_eq!((r.latitude, r.longitude, r.fix_time), (None, None, None));
    let r = one("$GPRMC,192350.000,V,0000.0000,N,00000.0000,E,,,110318,,*12");
    assert_eq!((r.latitude, r.longitude), (None, None));
    assert_eq!(r.fix_time.unwrap().to_string(), "2018-03-11T19:23:50.000Z");
}

#[test]
fn checksums() {
    // Lowercase hex is accepted.
    assert_eq!(one("$GPRMC,205150.00,V,,,,,,,,,,,V*4a").valid, Some(false));
    // A wrong checksum is rejected with both values.
    let ev = decode_all(b"$GPHDT,274.07,T*04\r\n");
    match &ev[..] {
        [StreamEvent::Rejected { offset: 0, len: 18, reason }] => {
            assert_eq!(reason.to_string(), "bad checksum: computed 0x03, frame carries 0x04");
        }
        other => panic!("{other:?}"),
    }
    // A missing checksum is accepted and flagged.
    let r = one("$GPRMC,082350.000,A,5355.0314,N,01044.1271,E,26.20,184.27,080518,,");
    assert_eq!(r.attributes.get("checksum_missing"), Some(&true.into()));
    assert!(close(r.speed_kmh, 26.2 * 1.852));
    // But then every standard field must be there: a sentence cut short is not trusted.
    assert_eq!(rejections(b"$GPRMC,082350.000,A,5355.0314,N,01044.1271,E,26.20\n"), [(0, RejectKind::Malformed)]);
    // One hex digit is not a checksum.
    assert_eq!(rejections(b"$GPRMA,V,0000.00,S,00000.00,E,,,00.0,000.,11.,E*7\n"), [(0, RejectKind::Malformed)]);
}

#[test]
fn damaged_fields_are_rejected_not_read_as_absent() {
    for bad in [
        "$GPRMC,0010x1.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A",
        "$GPRMC,001031.00,A,4404.13993,Q,12118.86023,W,0.146,,100117,,,A",
        "$GPRMC,001031.00,A,4404.13993,N,12118.86023,W,0.1e6,,100117,,,A",
        "$GPRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,310217,,,A",
        "$GPGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,X,-21.3,M,,",
    ] {
        let line = with_checksum(&bad[1..]);
        assert_eq!(rejections(line.as_bytes()), [(0, RejectKind::Malformed)], "{bad}");
    }
}

/// A damaged field is named by its number (from 1 after the address) and what it holds, in
/// every layout, whatever the fields before it took: the grammar's stopping place is turned
/// back into the field.
#[test]
fn a_damaged_field_is_named_by_number() {
    for (sentence, message) in [
        (
            "GPGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,X,-21.3,M,,",
            r#"GGA field 10 (altitude unit): "X""#,
        ),
        (
            "GPGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,77777",
            r#"GGA field 14 (DGPS station): "77777""#,
        ),
        (
            "GPRMC,001031.00,A,4404.13993,N,12118.86023,Q,0.146,,100117,,,A",
            r#"RMC fields 5-6 (longitude): "12118.86023","Q""#,
        ),
        ("GPGSA,A,3,04,05,x9,,,,,,,,,,2.5,1.3,2.1", r#"GSA field 5 (satellite id): "x9""#),
        ("GPGSV,3,1,11,03,03,111,00,04,95,270,00", r#"GSV field 9 (elevation): "95""#),
        ("GPVTG,054.7,T,034.4,M,005.5,N,010.2,Q,A", r#"VTG field 8 (km/h unit): "Q""#),
        ("GPVTG,054.7,034.4,005.5,1x", r#"VTG field 4 (speed, km/h): "1x""#),
        ("GPZDA,201530.00,04,07,2002,00,99", r#"ZDA field 6 (local zone minutes): "99""#),
        ("GNGNS,014035.00,4332.69262,S,17235.48549,E,RRZ,13,0.9,25.63,11.24,,", r#"GNS field 6 (mode): "RRZ""#),
        ("GPHDT,274.07,X", r#"HDT field 2 (true indicator): "X""#),
        ("GPGLL,4916.45,N,12311.12,W,2254x4,A,A", r#"GLL field 5 (UTC time): "2254x4""#),
    ] {
        let err = parse(with_checksum(sentence).trim_end().as_bytes()).expect_err(sentence);
        assert!(err.to_string().ends_with(&format!("{message} is not valid")), "{sentence}: {err}");
    }
}

#[test]
fn identification_forms() {
    for (line, id, kind) in [
        ("$PGID,359853000144328*0F", "359853000144328", Some("PGID")),
        ("$IMEI=355797031609284", "355797031609284", Some("IMEI")),
        ("IMEI 351467108700000", "351467108700000", Some("IMEI")),
        ("358244017671308", "358244017671308", Some("ID")),
        ("086415031C20", "086415031C20", Some("ID")),
        ("$GPFID,ID123456ABC", "ID123456ABC", Some("FID")),
    ] {
        let r = one(line);
        assert_eq!(r.kind, Kind::Login, "{line}");
        assert_eq!(r.device_id.as_deref(), Some(id), "{line}");
        assert_eq!(Some(r.message_type.as_ref()), kind);
    }
    // The id then carries to every record after it.
    let rs = records("$PGID,359853000144328*0F\r\n$GPHDT,274.07,T*03\r\n");
    assert_eq!(rs[1].device_id.as_deref(), Some("359853000144328"));
}

#[test]
fn an_id_before_the_dollar_addresses_the_sentence() {
    for (line, id) in [
        ("660420156A0066AA$GPRMC,122806.0,A,0119.212178,N,10355.000942,E,0.0,,230119,0.0,E,A*27", "660420156A0066AA"),
        (
            "4711/022789000688081/$GPRMC,133343,A,5308.56325,N,1029.12850,E,0.000000,0.000000,290316,,*2A",
            "022789000688081",
        ),
        ("123456789$GPRMC,155708.252,V,4610.1676,N,00606.4586,E,000.0,000.0,060214,,,N*76", "123456789"),
    ] {
        let r = one(line);
        assert_eq!((r.kind, r.device_id.as_deref()), (Kind::Position, Some(id)), "{line}");
    }
    // A prefix that is not an id is garbage, and the sentence after it still decodes.
    let ev = decode_all(b">0002<$GPHDT,274.07,T*03\n");
    assert!(matches!(&ev[0], StreamEvent::Rejected { offset: 0, len: 6, .. }), "{ev:?}");
    assert!(matches!(&ev[1], StreamEvent::Record(r) if r.message_type == "HDT"));
}

#[test]
fn spliced_and_trailing_data() {
    // gpsd isync log: a GSV cut short by the next sentence on the same line.
    let line = b"$GPGSV,4,1,15,02,11,115,36,0$PTNTA,20160203131539,2,T4,000000066,+107,3,0,3*18\r\n";
    let ev = decode_all(line);
    assert!(
        matches!(&ev[0], StreamEvent::Rejected { offset: 0, len: 28, reason } if reason.kind == RejectKind::Truncated)
    );
    assert!(matches!(&ev[1], StreamEvent::Record(r) if r.message_type == "PTNTA"));
    // Two whole sentences with no line break between them both decode.
    assert_eq!(records("$GPHDT,274.07,T*03$GPHDT,,T*1B\n").len(), 2);
    // Bytes after a valid checksum are reported; the sentence stands.
    let ev = decode_all(b"$GPHDT,274.07,T*03,11,8657\n");
    assert!(matches!(&ev[0], StreamEvent::Record(_)));
    assert!(matches!(&ev[1], StreamEvent::Rejected { offset: 18, len: 8, .. }));
}

#[test]
fn garbage_costs_only_itself() {
    let mut input = b"$GPHDT,274.07,T*03\r\n".to_vec();
    input.extend_from_slice(&[0xb5, 0x62, 0x01, 0x07, 0x00, 0xff]);
    input.extend_from_slice(b"\r\n$GPHDT,,T*1B\r\n");
    let ev = decode_all(&input);
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert!(
        matches!(&ev[1], StreamEvent::Rejected { offset: 20, len: 6, reason } if reason.kind == RejectKind::Garbage)
    );
    assert!(matches!(&ev[2], StreamEvent::Record(r) if r.message_type == "HDT"));
}

/// Fuzz finding (nmea_roundtrip, crash-884010c3): `parse` took `$ID,3500$` as one sentence
/// with a `$` in a field, which no encoder can write back.
#[test]
fn regression_fuzz_dollar_inside_a_parsed_body() {
    let e = parse(b"$ID,3500$").unwrap_err();
    assert_eq!(e.kind, RejectKind::Truncated);
}

/// Fuzz finding (nmea_roundtrip, crash-4be09e32, found by the CI smoke run): a 300-digit
/// speed overflowed `f64` to infinity, which the encoder writes as `inf` and no parser reads.
/// Such a field is now not a number at all.
#[test]
fn regression_fuzz_number_too_large_for_f64_is_not_a_number() {
    let mut line = b"$GNVTG,0,0,8".to_vec();
    line.extend(std::iter::repeat_n(b'0', 320));
    line.push(b',');
    match parse(&line) {
        Err(e) => assert_eq!(e.kind, RejectKind::Malformed),
        Ok(first) => {
            let text = to_line(&first.sentence).unwrap();
            assert!(!text.contains("inf"), "{text}");
            assert_eq!(parse(text.trim_end().as_bytes()).unwrap().sentence, first.sentence);
        }
    }
}

/// Fuzz finding (nmea_roundtrip, crash-2d5216fb): a latitude of 19 digits as sent
/// (`53.21041040222222222`, no degrees) was accepted, and written back with the degrees'
/// two digits it had 21, which no parser reads. Coordinates are now held to 19 digits as
/// written.
#[test]
fn regression_fuzz_coordinate_longer_once_written_back() {
    let line = b"$GPGGA,121531.0001,53.21041040222222222,N,0000007.6500,W,1,08,1.2,3104,M,47.0,M,0000,";
    assert_eq!(parse(line).unwrap_err().kind, RejectKind::Malformed);
    let line = b"$GPGGA,121531.0001,53.210410402222222,N,0000007.6500,W,1,08,1.2,3104,M,47.0,M,0000,";
    let first = parse(line).unwrap();
    let written = to_line(&first.sentence).unwrap();
    assert!(written.contains(",0053.210410402222222,N,"), "{written}");
    assert_eq!(parse(written.trim_end().as_bytes()).unwrap().sentence, first.sentence);
}

/// Fuzz finding (nmea_stream, crash-4c091698): how much of an over-long line was skipped
/// depended on how much had been read, so the decode changed with the read size.
#[test]
fn regression_fuzz_over_long_line_decodes_the_same_for_every_read_size() {
    let mut input = b"66044,E,0\x00\x00\x00\x066AA$GPRMC".to_vec();
    input.extend(std::iter::repeat_n(0xac, 560));
    input.extend_from_slice(b"\r\n$GPHDT,274.07,T*03\r\n");
    let whole = decode_all(&input);
    for chunk in [1, 7, 64, 500, 513, 514, 1000] {
        let out = decode_in_reads(&mut NmeaDecoder::default(), &input, chunk).events;
        assert_eq!(out, whole, "read size {chunk}");
    }
    assert!(matches!(whole.last(), Some(StreamEvent::Record(r)) if r.message_type == "HDT"));
}

#[test]
fn an_over_long_line_is_skipped_to_the_next_sentence() {
    let mut input = vec![b'x'; 2000];
    input.extend_from_slice(b"$GPHDT,274.07,T*03\r\n");
    let ev = decode_all(&input);
    // The junk is rejected in pieces of at most one window, covering exactly its 2000 bytes
    // and nothing of the sentence after it.
    let (last, rejected) = ev.split_last().unwrap();
    assert!(matches!(last, StreamEvent::Record(r) if r.message_type == "HDT"));
    let mut next = 0;
    for e in rejected {
        let StreamEvent::Rejected { offset, len, .. } = e else { panic!("{e:?}") };
        assert_eq!(*offset, next);
        assert!(*len <= DEFAULT_MAX_LINE + 1);
        next += *len as u64;
    }
    assert_eq!(next, 2000);
    assert!(matches!(&rejected[0], StreamEvent::Rejected { reason, .. } if reason.kind == RejectKind::TooLong));
}

#[test]
fn gga_takes_the_last_date_as_it_is() {
    let rs = records(&format!(
        "{}{}{}",
        with_checksum("GPRMC,235959.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A"),
        with_checksum("GPGGA,000001.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,"),
        with_checksum("GPGGA,235958.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M,,"),
    ));
    assert_eq!(rs[0].fix_time.unwrap().to_string(), "2017-01-10T23:59:59.000Z");
    // Contract: the date comes from the last RMC or ZDA as it is, with no midnight guess.
    assert_eq!(rs[1].fix_time.unwrap().to_string(), "2017-01-10T00:00:01.000Z");
    assert_eq!(rs[2].fix_time.unwrap().to_string(), "2017-01-10T23:59:58.000Z");
}

const STREAM: &str = "$PGID,359853000144328*0F\r\n\
$GNRMC,001031.00,A,4404.13993,N,12118.86023,W,0.146,,100117,,,A*7B\r\n\
$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M*47\r\n\
$GPHDT,274.07,T*04\r\n\
$GPGSV,3,3,10,18,11,233,,06,09,052,,1*66\n\
junk\r\n\
$GNGLL,4404.14012,N,12118.85993,W,001037.00,A,A*67";

#[test]
fn every_truncation_point_waits_for_the_rest() {
    let whole = decode_all(STREAM.as_bytes());
    assert_eq!(whole.len(), 7);
    for cut in 0..STREAM.len() {
        let mut d = NmeaDecoder::default();
        let mut out = Vec::new();
        let used = d.decode(&STREAM.as_bytes()[..cut], false, &mut out);
        // Nothing past the last complete line is used, and what came out is a prefix of
        // what the whole stream gives.
        let last_line_end = STREAM[..cut].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        assert_eq!(used, last_line_end, "cut at {cut}");
        assert_eq!(out[..], whole[..out.len()], "cut at {cut}");
        // The framer says exactly one more byte could finish the line.
        assert_eq!(
            NmeaFramer::default().next_frame(&STREAM.as_bytes()[used..cut]),
            Framing::Incomplete { needed: 1 },
            "cut at {cut}"
        );
        // And the rest completes the stream identically.
        d.decode(&STREAM.as_bytes()[used..], true, &mut out);
        assert_eq!(out, whole, "cut at {cut}");
    }
}

#[test]
fn every_chunk_size_decodes_identically() {
    let whole = decode_all(STREAM.as_bytes());
    for chunk in 1..=STREAM.len() {
        let out = decode_in_reads(&mut NmeaDecoder::default(), STREAM.as_bytes(), chunk).events;
        assert_eq!(out, whole, "chunk size {chunk}");
    }
}

#[test]
fn tokio_decoder_gives_the_same_lines_for_every_chunk_size() {
    let frames = |chunk: usize| {
        let mut codec = FrameDecoder::new(NmeaFramer::default());
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for piece in STREAM.as_bytes().chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                items.push(item);
            }
        }
        while let Some(item) = codec.decode_eof(&mut buf).unwrap() {
            items.push(item);
        }
        items
    };
    let reference = frames(STREAM.len());
    let lines: Vec<_> = reference
        .iter()
        .filter_map(|i| match i {
            FrameItem::Frame { bytes, .. } if !bytes.is_empty() => Some(bytes.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(&lines[6][..], b"$GNGLL,4404.14012,N,12118.85993,W,001037.00,A,A*67");
    for chunk in 1..STREAM.len() {
        assert_eq!(frames(chunk), reference, "chunk size {chunk}");
    }
}

// ---- property tests: encode → decode gives back the sentence --------------------------

fn opt<T: std::fmt::Debug + Clone + 'static>(s: impl Strategy<Value = T> + 'static) -> BoxedStrategy<Option<T>> {
    prop::option::of(s).boxed()
}

/// Decimals as receivers write them: an integer scaled by 10^-k, sometimes with leading
/// zeros (`022.4`).
fn dec(max: i64, signed: bool) -> BoxedStrategy<Decimal> {
    let lo = if signed { -max } else { 0 };
    (lo..=max, 0u8..5, 0u8..4)
        .prop_map(|(v, k, whole)| Decimal::new(v, k).and_then(|d| d.with_whole_digits(whole)).unwrap())
        .boxed()
}

fn time() -> impl Strategy<Value = NmeaTime> {
    (0u8..24, 0u8..60, 0u8..61, 0u8..4).prop_flat_map(|(hour, minute, second, digits)| {
        (0..10u32.pow(u32::from(digits))).prop_map(move |fraction| NmeaTime {
            hour,
            minute,
            second,
            fraction,
            fraction_digits: digits,
        })
    })
}

fn date() -> impl Strategy<Value = NmeaDate> {
    (1u8..29, 1u8..13, 0u8..100).prop_map(|(day, month, year2)| NmeaDate { day, month, year2 })
}

fn coord(lat: bool) -> impl Strategy<Value = Coordinate> {
    let (max_deg, hemis) = if lat { (89u16, [b'N', b'S']) } else { (179, [b'E', b'W']) };
    // Minutes as receivers write them: two whole digits, 0–7 fraction digits.
    (0..=max_deg, 0u8..8, 0usize..2).prop_flat_map(move |(whole_degrees, scale, h)| {
        (0..60 * 10i64.pow(u32::from(scale))).prop_map(move |m| Coordinate {
            whole_degrees,
            minutes: Decimal::new(m, scale).and_then(|d| d.with_whole_digits(2)).unwrap(),
            hemisphere: hemis[h],
        })
    })
}

fn letter(set: &'static [u8]) -> BoxedStrategy<Option<u8>> {
    opt(prop::sample::select(set))
}

fn message() -> impl Strategy<Value = Message<'static>> {
    let rmc = (
        (opt(time()), letter(b"AV"), opt(coord(true)), opt(coord(false))),
        (opt(dec(9999, false)), opt(dec(3599, false)), opt(date()), opt(dec(1800, false)), letter(b"EW")),
        (letter(b"ADEFRN"), letter(b"SCUV")),
    )
        .prop_map(|((time, status, latitude, longitude), (s, c, date, mv, mvd), (mode, nav))| {
            Message::Rmc(Rmc {
                time,
                status,
                latitude,
                longitude,
                speed_knots: s,
                course_deg: c,
                date,
                magnetic_variation_deg: mv,
                magnetic_variation_dir: mvd,
                mode,
                nav_status: nav,
            })
        });
    let gga = (
        (opt(time()), opt(coord(true)), opt(coord(false)), opt(0u8..9), opt(0u16..64)),
        (opt(dec(999, false)), opt(dec(99999, true)), opt(dec(999, true)), opt(dec(999, false)), opt(0u16..1024)),
    )
        .prop_map(|((time, latitude, longitude, quality, satellites), (hdop, alt, geoid, age, station))| {
            Message::Gga(Gga {
                time,
                latitude,
                longitude,
                quality,
                satellites,
                hdop,
                altitude_m: alt,
                geoid_separation_m: geoid,
                dgps_age_s: age,
                dgps_station: station,
            })
        });
    let gll = (opt(coord(true)), opt(coord(false)), opt(time()), letter(b"AV"), letter(b"ADEN")).prop_map(
        |(latitude, longitude, time, status, mode)| Message::Gll(Gll { latitude, longitude, time, status, mode }),
    );
    let vtg = (
        opt(dec(3599, false)),
        opt(dec(3599, false)),
        opt(dec(999, false)),
        opt(dec(999, false)),
        letter(b"ADN"),
        any::<bool>(),
    )
        .prop_map(|(t, m, kn, kmh, mode, legacy)| {
            Message::Vtg(Vtg {
                course_true_deg: t,
                course_magnetic_deg: m,
                speed_knots: kn,
                speed_kmh: kmh,
                mode: if legacy { None } else { mode },
                legacy,
            })
        });
    let gsa = (
        letter(b"MA"),
        opt(1u8..4),
        prop::collection::vec(1u16..400, 0..=12),
        opt(dec(99, false)),
        opt(dec(99, false)),
        opt(dec(99, false)),
        opt(1u8..7),
    )
        .prop_map(|(selection_mode, fix_type, satellite_ids, pdop, hdop, vdop, system_id)| {
            Message::Gsa(Gsa { selection_mode, fix_type, satellite_ids, pdop, hdop, vdop, system_id })
        });
    let sat = (opt(1u16..400), opt(-90i16..=90), opt(0u16..360), opt(0u8..100)).prop_map(
        |(id, elevation_deg, azimuth_deg, snr_db)| SatelliteInView { id, elevation_deg, azimuth_deg, snr_db },
    );
    let gsv = (opt(1u8..10), opt(1u8..10), opt(0u16..100), prop::collection::vec(sat, 0..=4), opt(0u8..16)).prop_map(
        |(sentences, sentence, in_view, satellites, signal_id)| {
            Message::Gsv(Gsv { sentences, sentence, in_view, satellites, signal_id })
        },
    );
    let zda = (opt(time()), opt(1u8..29), opt(1u8..13), opt(1980u16..2100), opt(-13i8..=13), opt(0i8..60)).prop_map(
        |(time, day, month, year, zone_hours, zone_minutes)| {
            Message::Zda(Zda { time, day, month, year, zone_hours, zone_minutes })
        },
    );
    let gns = (
        (
            opt(time()),
            opt(coord(true)),
            opt(coord(false)),
            opt(prop::sample::select(vec!["A", "NDD", "AANN", "NNNNNN", "R"])),
        ),
        (
            opt(0u16..64),
            opt(dec(99, false)),
            opt(dec(99999, true)),
            opt(dec(999, true)),
            opt(dec(99, false)),
            opt(0u16..1024),
            letter(b"SCUV"),
        ),
    )
        .prop_map(|((time, latitude, longitude, mode), (satellites, hdop, alt, geoid, age, station, nav))| {
            Message::Gns(Gns {
                time,
                latitude,
                longitude,
                mode,
                satellites,
                hdop,
                altitude_m: alt,
                geoid_separation_m: geoid,
                dgps_age_s: age,
                dgps_station: station,
                nav_status: nav,
            })
        });
    let gst = (opt(time()), prop::collection::vec(opt(dec(9999, false)), 7)).prop_map(|(time, v)| {
        Message::Gst(Gst {
            time,
            rms_range_residual: v[0],
            sigma_semi_major_m: v[1],
            sigma_semi_minor_m: v[2],
            semi_major_orientation_deg: v[3],
            sigma_latitude_m: v[4],
            sigma_longitude_m: v[5],
            sigma_altitude_m: v[6],
        })
    });
    let hdt = opt(dec(3599, false)).prop_map(|heading_deg| Message::Hdt(Hdt { heading_deg }));
    let txt = (
        prop::sample::select(vec!["01", "02", "", "NET"]),
        prop::sample::select(vec!["01", "", "1003"]),
        prop::sample::select(vec!["00", "01", "02", "07", "A1"]),
        prop::sample::select(vec!["ANTENNA OK", "u-blox AG - www.u-blox.com", "", "a,b,,c", "-53,232 01"]),
    )
        .prop_map(|(sentences, sentence, text_id, text)| Message::Txt(Txt { sentences, sentence, text_id, text }));
    prop_oneof![rmc, gga, gll, vtg, gsa, gsv, zda, gns, gst, hdt, txt]
}

fn talker() -> impl Strategy<Value = Talker> {
    prop::sample::select(vec![
        Talker::GP,
        Talker::GL,
        Talker::GA,
        Talker::GB,
        Talker::BD,
        Talker::GQ,
        Talker::GN,
        Talker(*b"QZ"),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_sentence_round_trips(talker in talker(), message in message()) {
        let sentence = Sentence::Standard { talker, message };
        let line = to_line(&sentence).unwrap();
        prop_assert!(line.ends_with("\r\n"));
        let text = line.trim_end().as_bytes();
        let parsed = parse(text).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
        prop_assert!(parsed.checksum_present);
        prop_assert_eq!(&parsed.sentence, &sentence, "{}", line);
        // Canonical bytes: encoding the decoded sentence gives the same line.
        prop_assert_eq!(to_line(&parsed.sentence).unwrap(), line);
    }

    #[test]
    fn raw_sentences_round_trip(address in "P[A-Z]{3}[0-9]{0,3}|[A-Z]{2}(XDR|DTM|GBS)", fields in prop::option::of("[ -#%-)+-~]{0,60}")) {
        let sentence = if address.starts_with('P') {
            Sentence::Proprietary { address: &address, fields: fields.as_deref() }
        } else {
            Sentence::Standard {
                talker: Talker([address.as_bytes()[0], address.as_bytes()[1]]),
                message: Message::Other { formatter: &address[2..], fields: fields.as_deref() },
            }
        };
        let line = to_line(&sentence).unwrap();
        prop_assert_eq!(parse(line.trim_end().as_bytes()).unwrap().sentence, sentence);
    }

    #[test]
    fn any_bytes_never_panic_and_account_for_every_byte(input in prop::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
        let Replay { events: out, used: used_total, frames, .. } = decode_in_reads(&mut NmeaDecoder::default(), &input, chunk);
        prop_assert_eq!(used_total, input.len());
        // Every sentence or identification line taken gives one record, and nothing else does.
        prop_assert_eq!(frames, out.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64);
        for e in &out {
            if let StreamEvent::Rejected { offset, len, .. } = e {
                prop_assert!(*offset as usize + len <= input.len());
            }
        }
    }
}

#[test]
fn gsa_cut_before_vdop_reads_its_dops_as_dops() {
    let r = one(&with_checksum("GPGSA,A,3,05,12,25,29,,,,,,,,,1.7,0.8"));
    assert_eq!(r.attributes.get("satellite_ids"), Some(&serde_json::json!([5, 12, 25, 29]).into()));
    assert_eq!(r.attributes.get("pdop"), Some(&1.7.into()));
    assert_eq!(r.hdop, Some(0.8));
    assert_eq!(r.attributes.get("vdop"), None);
}

// ---- random traffic with damage mixed in ---------------------------------------------

/// A position sentence with every field present, as trackers send them.
fn full_position() -> impl Strategy<Value = Message<'static>> {
    let rmc = (time(), coord(true), coord(false), dec(9999, false), dec(3599, false), date()).prop_map(
        |(t, la, lo, s, c, d)| {
            Message::Rmc(Rmc {
                time: Some(t),
                status: Some(b'A'),
                latitude: Some(la),
                longitude: Some(lo),
                speed_knots: Some(s),
                course_deg: Some(c),
                date: Some(d),
                mode: Some(b'A'),
                ..Rmc::default()
            })
        },
    );
    let gga = (time(), coord(true), coord(false), 1u16..30, dec(99999, true)).prop_map(|(t, la, lo, n, alt)| {
        Message::Gga(Gga {
            time: Some(t),
            latitude: Some(la),
            longitude: Some(lo),
            quality: Some(1),
            satellites: Some(n),
            hdop: Decimal::new(9, 1),
            altitude_m: Some(alt),
            geoid_separation_m: Decimal::new(-213, 1),
            dgps_age_s: None,
            dgps_station: None,
        })
    });
    let gll = (time(), coord(true), coord(false)).prop_map(|(t, la, lo)| {
        Message::Gll(Gll {
            latitude: Some(la),
            longitude: Some(lo),
            time: Some(t),
            status: Some(b'A'),
            mode: Some(b'A'),
        })
    });
    prop_oneof![rmc, gga, gll]
}

#[derive(Debug, Clone)]
enum Damage {
    /// Replace a body byte with another printable one (not a reserved marker).
    Flip {
        at: usize,
        to: u8,
    },
    Delete {
        at: usize,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    /// Change the first checksum digit.
    Checksum,
    /// Cut the sentence short (before the end of its checksum), keeping the line end.
    Cut {
        at: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    let printable = (0x20u8..0x7f).prop_filter("not a marker", |b| !matches!(b, b'$' | b'*' | b'!'));
    prop_oneof![
        (any::<usize>(), printable.clone()).prop_map(|(at, to)| Damage::Flip { at, to }),
        any::<usize>().prop_map(|at| Damage::Delete { at }),
        (any::<usize>(), printable).prop_map(|(at, byte)| Damage::Insert { at, byte }),
        Just(Damage::Checksum),
        any::<usize>().prop_map(|at| Damage::Cut { at }),
    ]
}

/// Applies `d` to `line` (`$…*HH`, no terminator). The result differs from the original.
fn apply(line: &str, d: &Damage) -> Vec<u8> {
    let mut b = line.as_bytes().to_vec();
    let star = line.find('*').unwrap();
    let body = 1..star; // between '$' and '*'
    let pick = |at: usize| body.start + at % body.len();
    match *d {
        Damage::Flip { at, to } => {
            let i = pick(at);
            b[i] = if b[i] == to {
                if to == b'0' {
                    b'1'
                } else {
                    b'0'
                }
            } else {
                to
            };
        }
        Damage::Delete { at } => {
            b.remove(pick(at));
        }
        Damage::Insert { at, byte } => b.insert(pick(at), byte),
        Damage::Checksum => b[star + 1] = if b[star + 1] == b'0' { b'1' } else { b'0' },
        Damage::Cut { at } => b.truncate(1 + at % (b.len() - 1)),
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn damaged_sentences_become_errors_and_the_rest_still_decodes(
        sentences in prop::collection::vec((talker(), full_position(), prop::option::weighted(0.3, damage())), 1..25),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new(); // the clean decodes of the undamaged sentences, in order
        let mut damaged = 0;
        for (i, (talker, message, d)) in sentences.iter().enumerate() {
            let line = to_line(&Sentence::Standard { talker: *talker, message: message.clone() }).unwrap();
            let line = line.trim_end();
            // The first sentence of a stream cut exactly at its checksum cannot be told from a
            // device that sends none; every later one can.
            match d.as_ref().filter(|_| i > 0) {
                Some(d) => {
                    input.extend_from_slice(&apply(line, d));
                    damaged += 1;
                }
                None => {
                    input.extend_from_slice(line.as_bytes());
                    expected.push(one(line));
                }
            }
            input.extend_from_slice(b"\r\n");
        }
        let events = decode_all(&input);
        let got: Vec<&Record> = events.iter().filter_map(|e| match e { StreamEvent::Record(r) => Some(r), _ => None }).collect();
        let rejected = events.len() - got.len();
        prop_assert_eq!(got.len(), expected.len(), "{}", String::from_utf8_lossy(&input));
        prop_assert!(rejected >= damaged, "{} damaged, {} rejected", damaged, rejected);
        for (g, e) in got.iter().zip(&expected) {
            prop_assert_eq!(&g.message_type, &e.message_type);
            prop_assert_eq!(g.latitude, e.latitude);
            prop_assert_eq!(g.longitude, e.longitude);
            prop_assert_eq!(g.speed_kmh, e.speed_kmh);
            prop_assert_eq!(g.altitude_m, e.altitude_m);
            if g.message_type == "RMC" {
                prop_assert_eq!(g.fix_time, e.fix_time);
            }
        }
    }
}

#[test]
fn a_sentence_that_lost_its_checksum_is_rejected_once_the_device_uses_checksums() {
    let full = "$GPGGA,101530.000,5130.1234,N,00007.6543,W,1,08,1.2,35.0,M,47.0,M,,0000";
    // Alone (a device that never sends checksums) it is accepted and flagged...
    assert_eq!(one(full).attributes.get("checksum_missing"), Some(&true.into()));
    // ...but after a checksummed sentence it can only be one cut short.
    let ev = decode_all(format!("$GPHDT,274.07,T*03\r\n{full}\r\n").as_bytes());
    assert!(
        matches!(&ev[1], StreamEvent::Rejected { offset: 20, reason, .. } if reason.kind == RejectKind::Truncated),
        "{ev:?}"
    );
    // A device identifying itself starts over, and so does another device's id before a `$`.
    let rs = records(&format!("$GPHDT,274.07,T*03\r\nIMEI 351467108700000\r\n{full}\r\n"));
    assert_eq!(rs.len(), 3);
    let rs = records(&format!("123456789$GPHDT,274.07,T*03\r\n355096030432529{full}\r\n355096030432529{full}\r\n"));
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[2].device_id.as_deref(), Some("355096030432529"));
}

#[test]
fn a_tag_block_before_the_sentence_is_metadata_not_garbage() {
    let rs = records("\\s:r003,c:1577836800*5B\\$GPHDT,274.07,T*03\r\n");
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].device_id, None);
    // A lone backslash is not a tag block.
    assert_eq!(rejections(b"\\$GPHDT,274.07,T*03\r\n"), [(0, RejectKind::Garbage)]);
}
