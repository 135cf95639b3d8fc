//! The decode corpus as part of `cargo test`: every case under corpus/ must decode exactly to
//! its expectation, as `trackgate corpus verify corpus` checks.

use std::path::Path;

use trackgate::tools::corpus::{find_cases, verify_dir};

fn corpus_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus"))
}

#[test]
fn every_corpus_case_matches_its_expectation() {
    let results = verify_dir(corpus_dir()).expect("corpus directory is readable");
    let failures: Vec<String> =
        results.iter().filter_map(|r| r.failure.as_ref().map(|why| format!("{}: {why}", r.path.display()))).collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        results.len(),
        failures.join("\n")
    );
}

#[test]
fn the_corpus_covers_every_nmea_sentence_type() {
    // Guards against cases silently disappearing: each sentence type the codec decodes
    // appears in at least one expectation.
    let mut seen = String::new();
    for case in find_cases(&corpus_dir().join("nmea")).unwrap() {
        seen.push_str(&std::fs::read_to_string(trackgate::tools::corpus::expectation_path(&case)).unwrap());
    }
    for t in ["RMC", "GGA", "GLL", "VTG", "GSA", "GSV", "ZDA", "GNS", "GST", "HDT", "TXT", "PGID", "IMEI"] {
        assert!(seen.contains(&format!("\"message_type\":\"{t}\"")), "no corpus case decodes {t}");
    }
    assert!(seen.contains("\"kind\":\"error\""), "no corpus case rejects a frame");
}

/// Every sentence with a checksum in the corpus, parsed and encoded again, is the line it
/// came from (less the checksum's case): numbers keep their digits as sent. The exceptions
/// are sentences off the standard's layout, which the encoder writes in it.
#[test]
fn every_corpus_sentence_is_written_back_as_sent() {
    use trackgate::protocol::{StreamOptions, Transport};
    use trackgate::tools::decode::{parse_hex, parse_hex_header};
    use trackgate_codecs::framing::frames;
    use trackgate_codecs::nmea::{parse, to_line, NmeaFramer};
    // The standard's form of each: longitude degrees in three digits, GGA's last two fields
    // (DGPS age and station) present even when empty.
    let off_standard = [
        ("$GPRMC,012006,A,4828.10,N,1353.52,E,0.00,0.00,180915,020.3,E*42", "01353.52"),
        ("$GNGGA,001043.00,4404.14036,N,12118.85961,W,1,12,0.98,1113.0,M,-21.3,M*47", "-21.3,M,,*"),
    ];
    let mut checked = 0;
    let mut off_standard_seen = vec![false; off_standard.len()];
    let mut differ = Vec::new();
    for case in find_cases(&corpus_dir().join("nmea")).unwrap() {
        let text = std::fs::read_to_string(&case).unwrap();
        let options = parse_hex_header(&text).unwrap().options_over(&StreamOptions::default());
        for chunk in parse_hex(&text, options.transport == Transport::Udp).unwrap() {
            // Over-long lines (rejected by the framer), lines that are not one whole
            // sentence (ids, spliced sentences) and sentences without a checksum (the
            // encoder always writes one) are left out.
            for line in frames(&mut NmeaFramer::default(), &chunk).flatten() {
                let Ok(p) = parse(line) else { continue };
                if !p.checksum_present {
                    continue;
                }
                checked += 1;
                let written = to_line(&p.sentence).unwrap();
                let written = written.trim_end();
                // The checksum's hex digits may be lower case on the wire.
                let sent = String::from_utf8_lossy(line);
                let sent = match sent.rsplit_once('*') {
                    Some((body, sum)) => format!("{body}*{}", sum.to_ascii_uppercase()),
                    None => sent.into_owned(),
                };
                match off_standard.iter().position(|(line, _)| *line == sent) {
                    Some(i) => {
                        assert!(written.contains(off_standard[i].1), "{written}");
                        off_standard_seen[i] = true;
                    }
                    None if written != sent => differ.push(format!("sent    {sent}\nwritten {written}")),
                    None => {}
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} sentences with a checksum in the NMEA corpus");
    // Each exception listed is in the corpus, so its check above ran.
    assert!(off_standard_seen.iter().all(|&seen| seen), "an off-standard sentence listed here left the corpus");
    assert!(differ.is_empty(), "{} of {checked} differ:\n{}", differ.len(), differ.join("\n"));
}

/// `decode --protocol auto` on every corpus case gives what the case's own protocol gives:
/// the first bytes of every device's capture (each datagram's, over UDP) name its protocol,
/// keep-alive pings and e-lock text frames included.
#[test]
fn every_corpus_case_decodes_the_same_with_auto() {
    use trackgate::protocol::{Listens, StreamOptions, Transport};
    use trackgate::tools::decode::{decode_to, parse_hex, parse_hex_header};
    let cases = find_cases(corpus_dir()).unwrap();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for case in cases {
        let protocol = trackgate::tools::corpus::case_protocol(&case).unwrap();
        let text = std::fs::read_to_string(&case).unwrap();
        let options = parse_hex_header(&text).unwrap().options_over(&StreamOptions::default());
        let chunks = parse_hex(&text, options.transport == Transport::Udp).unwrap();
        let (mut own, mut auto) = (Vec::new(), Vec::new());
        decode_to(protocol, &options, chunks.clone(), &mut own).unwrap();
        decode_to(Listens::Auto, &options, chunks, &mut auto).unwrap();
        assert!(own == auto, "{}: auto decodes differently:\n{}", case.display(), String::from_utf8_lossy(&auto));
    }
}
