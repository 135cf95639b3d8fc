//! Structure-aware: `arbitrary` builds a terminal's traffic (message ids from the catalogue,
//! 2013 and 2019 headers, sub-packages, clock steps), written with valid check codes and
//! escapes so every frame reaches the message parsers, some then damaged. The decoder must
//! not panic, must give the same events for every read size, must decode every undamaged
//! whole message, and must answer only with valid frames.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use trackgate_codecs::jt808::{encode_frame, Edition, Frame, Jt808Decoder, Jt808Options, Terminal, TerminalNumber};
use trackgate_codecs::record::Timestamp;
use trackgate_codecs::{RecordDecoder, StreamEvent, Transport};

const IDS: [u16; 23] = [
    0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0100, 0x0102, 0x0104, 0x0107, 0x0108, 0x0200, 0x0201, 0x0500,
    0x0701, 0x0702, 0x0704, 0x0800, 0x0801, 0x0900, 0x0F00, 0x0210, 0x5501, 0x5502,
];

#[derive(Debug, Arbitrary)]
struct Msg {
    id: u8,
    serial: u16,
    /// `(total, index)`, kept small so messages can complete.
    package: Option<(u8, u8)>,
    body: Vec<u8>,
    /// Flip a byte of the frame (index, xor mask).
    damage: Option<(u16, u8)>,
    /// Advance the clock by this many seconds before the frame.
    wait_s: u8,
}

#[derive(Debug, Arbitrary)]
struct Traffic {
    chunk: u8,
    v2019: Option<u8>,
    number: [u8; 10],
    datagram: bool,
    messages: Vec<Msg>,
}

fn run(t: &Traffic, frames: &[(Vec<u8>, u8)], chunk: usize) -> Vec<StreamEvent> {
    let transport = if t.datagram { Transport::Udp } else { Transport::Tcp };
    let mut d = Jt808Decoder::new(Jt808Options { transport, ..Jt808Options::default() });
    let mut now = 1_700_000_000_000i64;
    let mut events = Vec::new();
    let mut buf = Vec::new();
    for (frame, wait) in frames {
        now += i64::from(*wait) * 1000;
        for piece in frame.chunks(chunk) {
            buf.extend_from_slice(piece);
            d.set_now(Timestamp::from_unix_ms(now, false));
            let used = d.decode(&buf, false, &mut events);
            buf.drain(..used);
        }
    }
    d.decode(&buf, true, &mut events);
    d.finish(&mut events);
    events
}

fuzz_target!(|t: Traffic| {
    let edition = match t.v2019 {
        Some(version) => Edition::V2019 { version },
        None => Edition::V2013,
    };
    let width = if t.v2019.is_some() { 10 } else { 6 };
    let terminal = Terminal { edition, number: TerminalNumber::from_bytes(&t.number[..width]).unwrap() };
    let mut frames = Vec::new();
    let mut whole_undamaged = 0;
    let mut damaged = false;
    for m in &t.messages {
        let id = IDS[usize::from(m.id) % IDS.len()];
        let package = m.package.map(|(total, index)| (u16::from(total % 4), u16::from(index % 5)));
        let mut wire = Vec::new();
        if encode_frame(&mut wire, id, &terminal, m.serial, package, &m.body).is_none() {
            continue;
        }
        if let Some((at, mask)) = m.damage {
            let at = 1 + usize::from(at) % (wire.len() - 2);
            let b = wire[at] ^ mask;
            // Damage that makes or removes a flag or an escape changes the framing itself;
            // keep to damage the check code must catch.
            if mask != 0 && ![0x7E, 0x7D].contains(&b) && ![0x7E, 0x7D].contains(&wire[at]) && (at == 1 || wire[at - 1] != 0x7D) {
                wire[at] = b;
                damaged = true;
            }
        } else if package.is_none_or(|p| p == (1, 1)) {
            whole_undamaged += 1;
        }
        frames.push((wire, m.wait_s));
    }
    let whole = run(&t, &frames, usize::MAX);
    let chunked = run(&t, &frames, usize::from(t.chunk).max(1));
    assert_eq!(whole, chunked);
    let records = whole.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count();
    if !damaged {
        assert!(records >= whole_undamaged, "{records} records for {whole_undamaged} whole messages");
    }
    for e in &whole {
        if let StreamEvent::Reply(b) = e {
            assert!(b[0] == 0x7E && b[b.len() - 1] == 0x7E);
            let reply = Frame::parse(&b[1..b.len() - 1]).expect("a reply is a valid frame");
            assert_eq!(reply.header.terminal, terminal);
        }
    }
});
