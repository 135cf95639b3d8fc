//! Any bytes, cut into reads of any size, through the Teltonika TCP decoder: no panic, every
//! byte accounted for, the same events for every read size, an ack only after records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::TeltonikaDecoder;
use trackgate_codecs::{RecordDecoder, StreamEvent};

fn run(input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let mut d = TeltonikaDecoder::tcp();
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let mut used_total = 0;
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        let used = d.decode(&buf, false, &mut out);
        used_total += used;
        buf.drain(..used);
    }
    used_total += d.decode(&buf, true, &mut out);
    assert_eq!(used_total, input.len());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let whole = run(input, input.len().max(1));
    assert_eq!(whole, run(input, usize::from(chunk)));
    // A count ack (4 bytes) always follows the records it counts.
    let mut records_since_ack = 0u32;
    for e in &whole {
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
