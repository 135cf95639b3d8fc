//! Any bytes, cut into reads of any size, through the NMEA stream decoder: it must not panic,
//! must account for every byte, and must decode the same whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::nmea::NmeaDecoder;
use trackgate_codecs::{decode_in_reads, StreamEvent};

fn run(input: &[u8], chunk: usize) -> (Vec<StreamEvent>, u64) {
    let replay = decode_in_reads(&mut NmeaDecoder::default(), input, chunk);
    assert_eq!(replay.used, input.len());
    // Nothing unbounded is held: at most one frame's worth waits for the rest of it.
    assert!(replay.max_held <= trackgate_codecs::nmea::DEFAULT_MAX_LINE + chunk);
    (replay.events, replay.frames)
}

fn has_null(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Array(items) => items.iter().any(has_null),
        serde_json::Value::Object(map) => map.values().any(has_null),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let (whole, frames) = run(input, input.len().max(1));
    let chunked = run(input, usize::from(chunk));
    assert_eq!((&whole, frames), (&chunked.0, chunked.1));
    // Every sentence or identification line taken gives one record, and nothing else does.
    assert_eq!(frames, whole.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64);
    for e in &whole {
        if let StreamEvent::Record(r) = e {
            // The hand-written JSON (`Record::write_json`) is serde_json's, on real records.
            assert_eq!(r.to_json(), serde_json::to_string(r).unwrap());
            // Absent fields are omitted, never null. (Checked on the parsed JSON: a device id
            // may well contain the letters "null", which a text search once took for one.)
            let json = r.to_json();
            let value: serde_json::Value = serde_json::from_str(&json).expect("records are JSON");
            assert!(!has_null(&value), "{json}");
        }
    }
});
