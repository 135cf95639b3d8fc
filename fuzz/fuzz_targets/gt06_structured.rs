//! Structure-aware: `arbitrary` builds a device's GT06 traffic (protocol numbers from the
//! catalogue, short and long frames, any content, serials), written with right CRCs so every
//! frame reaches the message parsers, some then damaged. The decoder, strict and lenient,
//! must not panic, must give the same events for every read size, must give a record for
//! every undamaged frame (a CRC-proven frame in an unknown layout is an unknown message,
//! never an error), and must answer only with whole frames (or the CRC-less Wi-Fi count
//! reply).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use trackgate_codecs::gt06::{encode_frame, CrcPolicy, Gt06Decoder, Gt06Options};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{decode_in_reads, RecordDecoder, StreamEvent};

const PROTOCOLS: [u8; 42] = [
    0x01, 0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x21, 0x22, 0x23, 0x26, 0x27, 0x28, 0x2A,
    0x2C, 0x2D, 0x31, 0x36, 0x37, 0x69, 0x8A, 0x94, 0x95, 0xA0, 0xA1, 0xA4, 0x80, 0x1E, 0x24, 0x32, 0x33, 0x34,
    0x70, 0xA2, 0x38, 0xA5, 0xA7, 0x9B,
];

#[derive(Debug, Arbitrary)]
struct Msg {
    protocol: u8,
    long: bool,
    content: Vec<u8>,
    serial: u16,
    /// Flip a byte of the frame (index, xor mask).
    damage: Option<(u16, u8)>,
}

#[derive(Debug, Arbitrary)]
struct Traffic {
    chunk: u8,
    lenient: bool,
    messages: Vec<Msg>,
}

fn run(lenient: bool, input: &[u8], chunk: usize) -> Vec<StreamEvent> {
    let crc = if lenient { CrcPolicy::Lenient } else { CrcPolicy::Strict };
    let mut d = Gt06Decoder::new(Gt06Options { crc, ..Gt06Options::default() });
    d.set_now(Timestamp::from_unix_ms(1_700_000_000_000, false));
    let replay = decode_in_reads(&mut d, input, chunk);
    assert_eq!(replay.used, input.len());
    replay.events
}

fuzz_target!(|t: Traffic| {
    let mut wire = Vec::new();
    let mut frames = 0;
    let mut damaged = false;
    for m in &t.messages {
        let protocol = PROTOCOLS[usize::from(m.protocol) % PROTOCOLS.len()];
        let start = wire.len();
        if encode_frame(&mut wire, m.long, protocol, &m.content, m.serial).is_none() {
            continue;
        }
        frames += 1;
        if let Some((at, mask)) = m.damage {
            let len = wire.len() - start;
            let at = start + usize::from(at) % len;
            if mask != 0 {
                wire[at] ^= mask;
                damaged = true;
            }
        }
    }
    let whole = run(t.lenient, &wire, wire.len().max(1));
    assert_eq!(whole, run(t.lenient, &wire, usize::from(t.chunk).max(1)));
    let records = whole.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count();
    if !damaged {
        assert_eq!(records, frames, "every undamaged frame is a record");
        assert!(!whole.iter().any(|e| matches!(e, StreamEvent::Rejected { .. })), "{whole:?}");
    }
    for e in &whole {
        if let StreamEvent::Reply(b) = e {
            let long = b.starts_with(&[0x79, 0x79]);
            assert!(long || b.starts_with(&[0x78, 0x78]), "{b:02x?}");
            assert!(b.ends_with(&[0x0D, 0x0A]), "{b:02x?}");
            if !long && b[2] == 0 {
                // The Wi-Fi count reply: the CRC-less form those devices use, length 0,
                // protocol and BCD time echoed.
                assert_eq!(b.len(), 12, "{b:02x?}");
                continue;
            }
            let declared = if long { usize::from(u16::from_be_bytes([b[2], b[3]])) + 6 } else { usize::from(b[2]) + 5 };
            assert_eq!(declared, b.len(), "{b:02x?}");
        }
    }
});
