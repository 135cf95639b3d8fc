//! The corpus runner (corpus/README.md): every `<case>.hex` under a directory is decoded exactly
//! as `trackgate decode --hex` would, and compared field by field with its
//! `<case>.expected.jsonl` (numbers within 1e-9 relative). `bless` writes the expectation
//! once a human has read the decode.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use trackgate_codecs::Protocol;

use crate::protocol::StreamOptions;
use crate::tools::decode::decode_hex_case;

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub path: PathBuf,
    /// `None` when the case passed; otherwise what differs.
    pub failure: Option<String>,
}

/// Every `.hex` file under `dir`, sorted, so runs print in a stable order.
pub fn find_cases(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "hex") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The protocol of a case: the nearest directory above it named after one
/// (`corpus/<protocol>/<source>/<case>.hex`).
pub fn case_protocol(path: &Path) -> Option<Protocol> {
    path.ancestors().skip(1).find_map(|a| a.file_name()?.to_str()?.parse().ok())
}

pub fn expectation_path(case: &Path) -> PathBuf {
    let stem = case.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    case.with_file_name(format!("{stem}.expected.jsonl"))
}

fn decode_case(case: &Path) -> Result<Vec<u8>, String> {
    let protocol = case_protocol(case)
        .ok_or_else(|| "no protocol directory (gt06, jt808, teltonika, nmea) above the case".to_string())?;
    let text = fs::read_to_string(case).map_err(|e| format!("cannot read: {e}"))?;
    decode_hex_case(protocol, &StreamOptions::default(), &text).map(|(out, _)| out)
}

/// Decodes one case and compares it with its expectation.
pub fn verify_case(case: &Path) -> CaseResult {
    let failure = (|| {
        let got = decode_case(case)?;
        let exp_path = expectation_path(case);
        let expected = fs::read_to_string(&exp_path).map_err(|e| {
            format!("no expectation {} ({e}): read the decode, then run `trackgate corpus bless`", exp_path.display())
        })?;
        let got = String::from_utf8(got).map_err(|_| "decode printed non-UTF-8".to_string())?;
        compare_jsonl(&expected, &got)
    })()
    .err();
    CaseResult { path: case.to_path_buf(), failure }
}

/// Decodes `case` and writes its expectation file. Returns the number of lines written.
pub fn bless_case(case: &Path) -> Result<usize, String> {
    let got = decode_case(case)?;
    let path = expectation_path(case);
    fs::write(&path, &got).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(got.iter().filter(|&&b| b == b'\n').count())
}

/// Compares two JSON Lines texts line by line, field by field.
pub fn compare_jsonl(expected: &str, got: &str) -> Result<(), String> {
    let exp: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
    let act: Vec<&str> = got.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, (e, a)) in exp.iter().zip(&act).enumerate() {
        let ev: Value =
            serde_json::from_str(e).map_err(|err| format!("expectation line {}: not JSON: {err}", i + 1))?;
        let av: Value = serde_json::from_str(a).map_err(|err| format!("decode line {}: not JSON: {err}", i + 1))?;
        compare_values(&ev, &av, "").map_err(|d| format!("line {}: {d}", i + 1))?;
    }
    if exp.len() != act.len() {
        return Err(format!("expected {} lines, decode printed {}", exp.len(), act.len()));
    }
    Ok(())
}

fn numbers_match(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn compare_values(exp: &Value, got: &Value, path: &str) -> Result<(), String> {
    let here = |p: &str| if p.is_empty() { "record".to_string() } else { p.to_string() };
    match (exp, got) {
        (Value::Number(e), Value::Number(g)) => {
            // Integers compare exactly (ids, counters); anything else within 1e-9 relative.
            let same = match (e.as_u64(), g.as_u64(), e.as_i64(), g.as_i64()) {
                (Some(a), Some(b), _, _) => a == b,
                (_, _, Some(a), Some(b)) => a == b,
                _ => e.as_f64().zip(g.as_f64()).is_some_and(|(a, b)| numbers_match(a, b)),
            };
            if same {
                Ok(())
            } else {
                Err(format!("{}: expected {e}, got {g}", here(path)))
            }
        }
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match g.get(k) {
                    Some(gv) => compare_values(ev, gv, &p)?,
                    None => return Err(format!("{p}: expected {ev}, missing")),
                }
            }
            if let Some((k, gv)) = g.iter().find(|(k, _)| !e.contains_key(*k)) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                return Err(format!("{p}: not expected, got {gv}"));
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(g)) => {
            if e.len() != g.len() {
                return Err(format!("{}: expected {} items, got {}", here(path), e.len(), g.len()));
            }
            for (i, (ev, gv)) in e.iter().zip(g).enumerate() {
                compare_values(ev, gv, &format!("{}[{i}]", here(path)))?;
            }
            Ok(())
        }
        (e, g) if e == g => Ok(()),
        (e, g) => Err(format!("{}: expected {e}, got {g}", here(path))),
    }
}

/// Verifies every case under `dir`.
pub fn verify_dir(dir: &Path) -> std::io::Result<Vec<CaseResult>> {
    Ok(find_cases(dir)?.iter().map(|c| verify_case(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_within_tolerance() {
        assert!(compare_jsonl(r#"{"a":1.0000000000001}"#, r#"{"a":1.0}"#).is_ok());
        assert!(compare_jsonl(r#"{"a":1.00001}"#, r#"{"a":1.0}"#)
            .unwrap_err()
            .contains("a: expected 1.00001, got 1.0"));
        assert!(compare_jsonl(r#"{"a":1}"#, r#"{"a":1.0}"#).is_ok());
    }

    #[test]
    fn every_field_counts() {
        let e = r#"{"kind":"position","attributes":{"mode":"A"}}"#;
        assert!(compare_jsonl(e, r#"{"kind":"position","attributes":{"mode":"A"}}"#).is_ok());
        assert_eq!(
            compare_jsonl(e, r#"{"kind":"position","attributes":{"mode":"D"}}"#).unwrap_err(),
            r#"line 1: attributes.mode: expected "A", got "D""#
        );
        assert!(compare_jsonl(e, r#"{"kind":"position","attributes":{"mode":"A","x":1}}"#)
            .unwrap_err()
            .contains("attributes.x: not expected"));
        assert!(compare_jsonl(e, r#"{"kind":"position"}"#).unwrap_err().contains("attributes: expected"));
        assert!(compare_jsonl(&format!("{e}\n{e}"), e).unwrap_err().contains("expected 2 lines, decode printed 1"));
        assert!(compare_jsonl(r#"{"a":[1,2]}"#, r#"{"a":[1]}"#).unwrap_err().contains("a: expected 2 items"));
    }

    #[test]
    fn protocol_comes_from_the_directory() {
        assert_eq!(case_protocol(Path::new("corpus/nmea/gpsd/rmc.hex")), Some(Protocol::Nmea));
        assert_eq!(case_protocol(Path::new("x/jt808/a/b/c.hex")), Some(Protocol::Jt808));
        assert_eq!(case_protocol(Path::new("x/y.hex")), None);
        assert_eq!(expectation_path(Path::new("a/b/c.hex")), Path::new("a/b/c.expected.jsonl"));
    }
}
