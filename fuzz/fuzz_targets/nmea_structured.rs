//! Structure-aware: `arbitrary` builds sentences (talkers and formatters from the catalogue,
//! any printable field text, the right checksum), so every line reaches the sentence
//! parsers instead of dying at the checksum; some lines then damaged. The stream decoder
//! must not panic, must decode the same for every read size, and must give exactly one
//! event (a record or a rejection) per undamaged line.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use trackgate_codecs::nmea::NmeaDecoder;
use trackgate_codecs::{decode_in_reads, StreamEvent};

const TALKERS: [&str; 9] = ["GP", "GL", "GA", "GB", "BD", "GQ", "GN", "GI", "P"];
const FORMATTERS: [&str; 14] =
    ["RMC", "GGA", "GLL", "VTG", "GSA", "GSV", "ZDA", "GNS", "GST", "HDT", "TXT", "GID", "XYZ", "GRME"];

#[derive(Debug, Arbitrary)]
struct Line {
    talker: u8,
    formatter: u8,
    fields: Vec<String>,
    checksum: bool,
    damage: Option<(u8, u8)>,
}

#[derive(Debug, Arbitrary)]
struct Traffic {
    chunk: u8,
    lines: Vec<Line>,
}

fn run(input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let replay = decode_in_reads(&mut NmeaDecoder::default(), input, chunk);
    assert_eq!(replay.used, input.len());
    replay.events
}

fuzz_target!(|t: Traffic| {
    let mut wire = Vec::new();
    let mut lines = 0;
    let mut damaged = false;
    for l in &t.lines {
        let mut body = format!(
            "{}{}",
            TALKERS[usize::from(l.talker) % TALKERS.len()],
            FORMATTERS[usize::from(l.formatter) % FORMATTERS.len()]
        );
        for f in &l.fields {
            body.push(',');
            // Field text: printable, without the characters that delimit sentences.
            body.extend(f.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '$' | '*' | ',' | '!' | '\\')));
        }
        if body.len() > 70 {
            continue;
        }
        let mut line = format!("${body}");
        if l.checksum {
            let sum = body.bytes().fold(0u8, |a, b| a ^ b);
            line.push_str(&format!("*{sum:02X}"));
        }
        line.push_str("\r\n");
        let mut bytes = line.into_bytes();
        if let Some((at, mask)) = l.damage {
            let at = usize::from(at) % bytes.len();
            if mask != 0 {
                bytes[at] ^= mask;
                damaged = true;
            }
        }
        wire.extend_from_slice(&bytes);
        lines += 1;
    }
    let whole = run(&wire, wire.len().max(1));
    assert_eq!(whole, run(&wire, usize::from(t.chunk).max(1)));
    if !damaged {
        assert_eq!(whole.len(), lines, "one event per line: {whole:?}");
    }
});
