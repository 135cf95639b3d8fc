//! Any bytes, cut into reads of any size, through the Teltonika TCP decoder: no panic, every
//! byte accounted for, the same events for every read size, an ack only after records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::TeltonikaDecoder;
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent};

fn run(input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let replay = decode_in_reads(&mut TeltonikaDecoder::tcp(), input, chunk);
    assert_eq!(replay.used, input.len());
    // Nothing unbounded is held: at most one frame's worth waits for the rest of it.
    assert!(replay.max_held <= trackgate_codecs::teltonika::DEFAULT_LIMITS.max_frame_len + chunk);
    replay.events
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    assert_eq!(whole, run(input, usize::from(chunk)));
    // A count ack (4 bytes) always follows the records it counts.
    let mut records_since_ack = 0u32;
    for e in &whole {
        if let StreamEvent::Record(r) = e {
            // The hand-written JSON (`Record::write_json`) is serde_json's, on real records.
            assert_eq!(r.to_json(), serde_json::to_string(r).unwrap());
        }
        match e {
            StreamEvent::Record(r) if r.kind == trackgate_codecs::Kind::Position => records_since_ack += 1,
            StreamEvent::Reply(b) if b.len() == 4 => {
                assert_eq!(u32::from_be_bytes([b[0], b[1], b[2], b[3]]), records_since_ack);
                records_since_ack = 0;
            }
            _ => {}
        }
    }
    // And each datagram-sized input through the UDP decoder.
    let mut udp = TeltonikaDecoder::udp();
    let mut out = Vec::new();
    assert_eq!(udp.decode(input, true, &mut out), input.len());
});
