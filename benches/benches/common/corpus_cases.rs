//! The corpus as the benches read it: the `.hex` cases of one protocol (as `trackgate
//! corpus verify` reads them), their frames as each framer cuts them, and the views and
//! records every corpus bench times or counts. Shared by the `corpus` (speed) and
//! `allocations` benches, each of which uses part of it.
#![allow(dead_code)]

use std::hint::black_box;
use std::path::Path;

use trackgate::protocol::{stream_decoder, StreamOptions, Transport};
use trackgate::tools::corpus::{case_protocol, find_cases};
use trackgate::tools::decode::{parse_hex, parse_hex_header};
use trackgate_codecs::framing::Framer;
use trackgate_codecs::{self as tg, Protocol, StreamEvent};

/// One `.hex` case: its bytes (one stream, or one datagram each) and its options.
pub struct Case {
    pub options: StreamOptions,
    pub chunks: Vec<Vec<u8>>,
}

impl Case {
    pub fn is_tcp(&self) -> bool {
        self.options.transport == Transport::Tcp
    }
}

pub fn load(protocol: Protocol) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let mut cases = Vec::new();
    for path in find_cases(&root).expect("the corpus directory is readable") {
        if case_protocol(&path) != Some(protocol) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a readable case");
        let options = parse_hex_header(&text).expect("a valid case header").options_over(&StreamOptions::default());
        let chunks = parse_hex(&text, options.transport == Transport::Udp).expect("valid case hex");
        cases.push(Case { options, chunks });
    }
    assert!(!cases.is_empty(), "no {protocol:?} cases under {}", root.display());
    cases
}

/// Every frame the framer cuts from `stream`, rejected stretches skipped as in service,
/// each as `keep` takes it from the framer (just after the cut) and the frame.
pub fn frames_with<'a, F: Framer, T>(
    framer: &mut F,
    stream: &'a [u8],
    mut keep: impl FnMut(&F, &'a [u8]) -> T,
) -> Vec<T> {
    let mut cut = tg::framing::frames(framer, stream);
    let mut out = Vec::new();
    while let Some(item) = cut.next() {
        if let Ok(frame) = item {
            out.push(keep(cut.framer(), frame));
        }
    }
    out
}

/// Every frame the framer cuts from `stream`.
pub fn frames<'a>(framer: &mut impl Framer, stream: &'a [u8]) -> Vec<&'a [u8]> {
    tg::framing::frames(framer, stream).flatten().collect()
}

/// The streams of the TCP cases (the views and encode rows read these; UDP cases only go
/// through the records row).
fn tcp_chunks(cases: &[Case]) -> impl Iterator<Item = &[u8]> {
    cases.iter().filter(|c| c.is_tcp()).flat_map(|c| &c.chunks).map(Vec::as_slice)
}

/// The records row: a fresh stream decoder per case, as a new connection gets.
pub fn records(protocol: Protocol, cases: &[Case], events: &mut Vec<StreamEvent>) -> u64 {
    let mut n = 0;
    for case in cases {
        let mut d = stream_decoder(protocol, &case.options);
        for chunk in &case.chunks {
            events.clear();
            d.decode(chunk, true, events);
            n += events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64;
        }
        events.clear();
        d.finish(events);
        n += events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count() as u64;
    }
    n
}

pub fn tcp_bytes(cases: &[Case]) -> u64 {
    tcp_chunks(cases).map(|c| c.len() as u64).sum()
}

pub fn all_bytes(cases: &[Case]) -> u64 {
    cases.iter().flat_map(|c| &c.chunks).map(|c| c.len() as u64).sum()
}

pub fn sum<'a>(frames: impl IntoIterator<Item = &'a &'a [u8]>) -> u64 {
    frames.into_iter().map(|f| f.len() as u64).sum()
}

pub fn nmea_lines(cases: &[Case]) -> Vec<&[u8]> {
    // The framer gives the empty line between `\r\n` pairs as a line; the stream decoder
    // skips those, and so do the views.
    tcp_chunks(cases)
        .flat_map(|chunk| frames(&mut tg::nmea::NmeaFramer::default(), chunk))
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn nmea_views(lines: &[&[u8]]) -> u64 {
    let mut ok = 0;
    for line in lines {
        if let Ok(p) = tg::nmea::parse(line) {
            ok += 1;
            black_box(&p);
        }
    }
    ok
}

/// The frames of the TCP cases, each with the shape its framer judged (strict CRC, as the
/// gateway runs by default: the corpus's bad-CRC cases are rejected).
pub fn gt06_frames(cases: &[Case]) -> Vec<(&[u8], tg::gt06::FrameShape)> {
    tcp_chunks(cases)
        .flat_map(|chunk| frames_with(&mut tg::gt06::Gt06Framer::default(), chunk, |f, frame| (frame, f.last_shape())))
        .collect()
}

pub fn gt06_views(frames: &[(&[u8], tg::gt06::FrameShape)]) -> u64 {
    let mut ok = 0;
    for &(bytes, shape) in frames {
        if let Some(frame) = tg::gt06::Frame::split(bytes, shape) {
            if let Ok(m) = tg::gt06::Message::parse(&frame) {
                ok += 1;
                black_box(&m);
            }
        }
    }
    ok
}

/// The escaped bytes of the binary frames of the TCP cases (the `( … )` text frames some
/// terminals send are left out).
pub fn jt808_frames(cases: &[Case]) -> Vec<&[u8]> {
    tcp_chunks(cases)
        .flat_map(|chunk| frames(&mut tg::jt808::Jt808Framer::new(tg::jt808::DEFAULT_LIMITS), chunk))
        .filter(|f| !tg::jt808::frame::is_text(f))
        .map(tg::jt808::frame::inner)
        .filter(|f| !f.is_empty())
        .collect()
}

pub fn jt808_views(frames: &[&[u8]], scratch: &mut Vec<u8>) -> u64 {
    let mut ok = 0;
    for f in frames {
        if let Ok(frame) = tg::jt808::Frame::parse_with(f, scratch) {
            if let Ok(m) = tg::jt808::Message::parse(&frame.header, &frame.body) {
                ok += 1;
                black_box(&m);
            }
        }
    }
    ok
}

pub fn teltonika_frames(cases: &[Case]) -> Vec<&[u8]> {
    tcp_chunks(cases).flat_map(|chunk| frames(&mut tg::teltonika::TeltonikaFramer::default(), chunk)).collect()
}

/// The data field of a packet frame (codec … N2 or the command quantity), or `None` for an
/// IMEI or keep-alive frame.
pub fn packet_data(frame: &[u8]) -> Option<&[u8]> {
    (tg::teltonika::frame_kind(frame) == tg::teltonika::TcpFrameKind::Packet)
        .then(|| frame.get(tg::teltonika::HEADER_LEN..frame.len().checked_sub(4)?))
        .flatten()
}

/// Every frame: IMEI and keep-alive frames are accepted as they are, AVL packets parsed and
/// every record and IO value read, command packets (codec 12/13/14) parsed.
pub fn teltonika_views(frames: &[&[u8]]) -> u64 {
    let mut ok = 0;
    for f in frames {
        let Some(data) = packet_data(f) else {
            ok += 1;
            continue;
        };
        match data.first() {
            Some(&(tg::teltonika::CODEC_8 | tg::teltonika::CODEC_8E | tg::teltonika::CODEC_16)) => {
                if let Ok(avl) = tg::teltonika::AvlData::parse(data) {
                    ok += 1;
                    for r in avl.records() {
                        black_box(r.timestamp_ms);
                        r.for_each_io(|io| {
                            black_box(io.value);
                        });
                    }
                }
            }
            _ => {
                if let Ok(cmd) = tg::teltonika::Command::parse(data) {
                    ok += 1;
                    black_box(&cmd);
                }
            }
        }
    }
    ok
}
