//! Any bytes, cut into reads of any size, through the JT808 decoder (TCP and UDP modes, with
//! a clock so replies that need one are made): no panic, every byte accounted for, the same
//! events for every read size, nothing unbounded held, and every reply a well-formed frame
//! with a right check code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::jt808::{Frame, Jt808Decoder, Jt808Options, DEFAULT_LIMITS};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent, Transport};

fn run(input: &[u8], chunk: usize, transport: Transport) -> (Vec<StreamEvent>, u64) {
    let mut decoder = Jt808Decoder::new(Jt808Options { transport, ..Jt808Options::default() });
    decoder.set_now(Timestamp::from_unix_ms(1_700_000_000_000, false));
    let replay = decode_in_reads(&mut decoder, input, chunk);
    assert_eq!(replay.used, input.len());
    assert!(replay.max_held <= DEFAULT_LIMITS.max_frame_len + 1 + chunk);
    assert!(decoder.held().1 <= Jt808Options::default().max_reassembly_bytes);
    (replay.events, replay.frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else { return };
    for transport in [Transport::Tcp, Transport::Udp] {
        let (whole, frames) = run(input, input.len().max(1), transport);
        // The same events and the same frame count for every read size.
        let chunked = run(input, usize::from(chunk), transport);
        assert_eq!((&whole, frames), (&chunked.0, chunked.1));
        for e in &whole {
            if let StreamEvent::Record(r) = e {
                // The hand-written JSON (`Record::write_json`) is serde_json's, on real records.
                assert_eq!(r.to_json(), serde_json::to_string(r).unwrap());
            }
            if let StreamEvent::Reply(b) = e {
                assert!(b.len() >= 15 && b[0] == 0x7E && b[b.len() - 1] == 0x7E, "{b:02x?}");
                Frame::parse(&b[1..b.len() - 1]).expect("a reply is a valid frame");
            }
        }
    }
});
