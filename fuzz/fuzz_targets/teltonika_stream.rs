//! Any bytes, cut into reads of any size, through the Teltonika TCP decoder: no panic, every
//! byte accounted for, the same events for every read size, an ack only after records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::{TeltonikaDecoder, TeltonikaOptions};
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent, Transport};

fn run(input: &[u8], chunk: usize) -> (Vec<StreamEvent>, u64) {
    let replay = decode_in_reads(&mut TeltonikaDecoder::default(), input, chunk);
    assert_eq!(replay.used, input.len());
    // Nothing unbounded is held: at most one frame's worth waits for the rest of it.
    assert!(replay.max_held <= trackgate_codecs::teltonika::DEFAULT_LIMITS.max_frame_len + chunk);
    (replay.events, replay.frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    let (whole, frames) = run(input, input.len().max(1));
    // The same events and the same frame count for every read size.
    let chunked = run(input, usize::from(chunk));
    assert_eq!((&whole, frames), (&chunked.0, chunked.1));
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
    // And each datagram-sized input through the UDP decoder: first as a device's first
    // datagram, then after one that named the device (a bare TCP packet is read only then).
    let mut udp = TeltonikaDecoder::new(TeltonikaOptions { transport: Transport::Udp, ..TeltonikaOptions::default() });
    let mut out = Vec::new();
    assert_eq!(udp.decode(input, true, &mut out), input.len());
    let mut named = TeltonikaDecoder::new(TeltonikaOptions { transport: Transport::Udp, ..TeltonikaOptions::default() });
    named.decode(&NAMING_DATAGRAM, true, &mut out);
    assert_eq!(named.imei(), Some("352093086403655"));
    assert_eq!(named.decode(input, true, &mut out), input.len());
});

/// The wiki's UDP example: one Codec 8 record from 352093086403655 in the UDP channel header.
const NAMING_DATAGRAM: [u8; 63] = [
    0x00, 0x3D, 0xCA, 0xFE, 0x01, 0x05, 0x00, 0x0F, 0x33, 0x35, 0x32, 0x30, 0x39, 0x33, 0x30, 0x38, 0x36, 0x34, 0x30,
    0x33, 0x36, 0x35, 0x35, 0x08, 0x01, 0x00, 0x00, 0x01, 0x6B, 0x4F, 0x81, 0x5B, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x02, 0x15, 0x03, 0x01, 0x01, 0x01,
    0x42, 0x5D, 0xBC, 0x00, 0x00, 0x01,
];
