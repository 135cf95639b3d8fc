//! Any bytes, cut into reads of any size, through the NMEA stream decoder: it must not panic,
//! must account for every byte, and must decode the same whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::nmea::NmeaDecoder;
use trackgate_codecs::{RecordDecoder, StreamEvent};

fn run(input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let mut d = NmeaDecoder::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut used_total = 0;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let used = d.decode(&buf, false, &mut out);
        used_total += used;
        buf.drain(..used);
        // Nothing unbounded is held: at most one line's worth waits for its terminator.
        assert!(buf.len() <= trackgate_codecs::nmea::DEFAULT_MAX_LINE + chunk);
    }
    used_total += d.decode(&buf, true, &mut out);
    assert_eq!(used_total, input.len());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    let chunked = run(input, usize::from(chunk));
    assert_eq!(whole, chunked);
    for e in &whole {
        if let StreamEvent::Record(r) = e {
            let json = r.to_json();
            assert!(!json.contains("null"), "{json}");
        }
    }
});
