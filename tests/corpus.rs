//! The decode corpus as part of `cargo test`: every case under corpus/ must decode exactly to
//! its expectation, as `trackgate corpus verify corpus` checks.

use std::path::Path;

use trackgate::corpus::{find_cases, verify_dir};

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
        seen.push_str(&std::fs::read_to_string(trackgate::corpus::expectation_path(&case)).unwrap());
    }
    for t in ["RMC", "GGA", "GLL", "VTG", "GSA", "GSV", "ZDA", "GNS", "GST", "HDT", "TXT", "PGID", "IMEI"] {
        assert!(seen.contains(&format!("\"message_type\":\"{t}\"")), "no corpus case decodes {t}");
    }
    assert!(seen.contains("\"kind\":\"error\""), "no corpus case rejects a frame");
}
