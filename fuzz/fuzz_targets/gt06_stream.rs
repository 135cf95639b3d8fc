//! Any bytes, cut into reads of any size, through the GT06 decoder in both CRC modes: no
//! panic, every byte accounted for, the same events for every read size, nothing unbounded
//! held, and every reply a well-formed frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::gt06::{CrcPolicy, Gt06Decoder, Gt06Options, DEFAULT_LIMITS};
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent};

fn run(input: &[u8], chunk: usize, crc: CrcPolicy) -> (Vec<StreamEvent>, u64) {
    let mut decoder = Gt06Decoder::new(Gt06Options { crc, ..Gt06Options::default() });
    decoder.set_now(trackgate_codecs::record::Timestamp::from_unix_ms(1_700_000_000_000, false));
    let replay = decode_in_reads(&mut decoder, input, chunk);
    assert_eq!(replay.used, input.len());
    assert!(replay.max_held <= DEFAULT_LIMITS.max_frame_len + chunk);
    (replay.events, replay.frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    for crc in [CrcPolicy::Strict, CrcPolicy::Lenient] {
        let (whole, frames) = run(input, input.len().max(1), crc);
        let chunked = run(input, usize::from(chunk), crc);
        assert_eq!((&whole, frames), (&chunked.0, chunked.1));
        // Every GT06 frame taken gives exactly one record, and nothing else gives one.
        assert_eq!(frames, whole.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64);
        for e in &whole {
            if let StreamEvent::Record(r) = e {
                // The hand-written JSON (`Record::write_json`) is serde_json's, on real records.
                assert_eq!(r.to_json(), serde_json::to_string(r).unwrap());
            }
            if let StreamEvent::Reply(b) = e {
                assert!(b.len() >= 6 && (b.starts_with(&[0x78, 0x78]) || b.starts_with(&[0x79, 0x79])));
                assert!(b.ends_with(&[0x0D, 0x0A]));
            }
        }
    }
});
