//! Allocations per message, counted through the global allocator: the zero-copy views
//! (which must allocate nothing per frame) and the normalized records (the gateway's path),
//! for every protocol, on the same frame sets as the speed benches. Counts, not times: the
//! result is the same on every machine, so this runs (and its view checks hold) in CI too.
//!
//! cargo bench -p trackgate-benches --bench allocations

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use trackgate_benches::{gt06_locations, jt808_locations, nmea_rmc, teltonika_packets};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::gt06::{Frame as Gt06Frame, Gt06Decoder, Gt06Framer, Gt06Options, Message};
use trackgate_codecs::jt808::frame::inner;
use trackgate_codecs::jt808::message::Location;
use trackgate_codecs::jt808::{Frame as Jt808Frame, Jt808Decoder, Jt808Framer, Jt808Options, DEFAULT_LIMITS};
use trackgate_codecs::nmea::NmeaDecoder;
use trackgate_codecs::teltonika::{AvlData, AvlPacket, TeltonikaDecoder, TeltonikaFramer, HEADER_LEN};
use trackgate_codecs::{RecordDecoder, StreamEvent};

#[path = "common/corpus_cases.rs"]
mod corpus_cases;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations and bytes allocated while `f` runs.
fn count<T>(f: impl FnOnce() -> T) -> (usize, usize, T) {
    let region = Region::new(GLOBAL);
    let out = f();
    let s = region.change();
    (s.allocations + s.reallocations, s.bytes_allocated, out)
}

fn gt06_views(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut n) = (Gt06Framer::default(), 0, 0);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Some(frame) = Gt06Frame::split(&buf[pos..pos + len], framer.last_shape()) {
            if let Ok(Message::Location { fix, .. }) = Message::parse(&frame) {
                n += u64::from(fix.latitude() != 0.0);
            }
        }
        pos += consumed;
    }
    n
}

fn jt808_views(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut n) = (Jt808Framer::new(DEFAULT_LIMITS), 0, 0);
    // One un-escaping buffer for the run, as a views user keeps per connection.
    let mut scratch = Vec::new();
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(frame) = Jt808Frame::parse_with(inner(&buf[pos..pos + len]), &mut scratch) {
            if let Ok(l) = Location::parse(&frame.body) {
                n += u64::from(l.items().count() > 0);
            }
        }
        pos += consumed;
    }
    n
}

fn teltonika_views(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut n) = (TeltonikaFramer::default(), 0, 0);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(avl) = AvlData::parse(&buf[pos + HEADER_LEN..pos + len - 4]) {
            for r in avl.records() {
                r.for_each_io(|_| n += 1);
            }
        }
        pos += consumed;
    }
    n
}

/// Owned copies of every packet; returns the packets copied.
fn teltonika_owned(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut n) = (TeltonikaFramer::default(), 0, 0);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(avl) = AvlData::parse(&buf[pos + HEADER_LEN..pos + len - 4]) {
            std::hint::black_box(AvlPacket::from_data(&avl));
            n += 1;
        }
        pos += consumed;
    }
    n
}

/// nom-teltonika's owned frames, for comparison; returns the packets copied.
fn nom_teltonika_owned(buf: &[u8]) -> u64 {
    let (mut input, mut n) = (buf, 0);
    while let Ok(frame) = nom_teltonika::decoder::take_frame(&mut input) {
        std::hint::black_box(frame.evaluate());
        n += 1;
    }
    n
}

fn records(mut d: impl RecordDecoder, buf: &[u8]) -> usize {
    let mut events = Vec::new();
    d.decode(buf, true, &mut events);
    events.iter().filter(|e| matches!(e, StreamEvent::Record(_))).count()
}

/// The generated sets every row reads.
struct Sets {
    gt06: Vec<u8>,
    jt808: Vec<u8>,
    teltonika: Vec<u8>,
    teltonika_records: usize,
    nmea: Vec<u8>,
}

fn main() {
    let (teltonika, teltonika_records) = teltonika_packets(0x08, 10_000, 7);
    let sets = Sets {
        gt06: gt06_locations(0x12, 10_000, 11),
        jt808: jt808_locations(10_000, 17, false),
        teltonika,
        teltonika_records,
        nmea: nmea_rmc(10_000, 3),
    };
    println!("{:<36} {:>10} {:>14} {:>16}", "path", "messages", "allocs/msg", "bytes/msg");
    views(&sets);
    owned(&sets);
    stream_records(&sets);
    records_free_what_they_hold();
    corpus_mix();
}

/// Prints one row; returns the allocations, for the row's bound.
fn report(name: &str, messages: usize, (allocs, bytes): (usize, usize)) -> usize {
    println!(
        "{name:<36} {messages:>10} {:>14.2} {:>16.1}",
        allocs as f64 / messages as f64,
        bytes as f64 / messages as f64
    );
    allocs
}

/// Views: nothing allocated per frame, whatever the set.
fn views(sets: &Sets) {
    let (a, b, n) = count(|| gt06_views(&sets.gt06));
    assert!(n > 0);
    assert_eq!(report("gt06 0x12 views", 10_000, (a, b)), 0, "GT06 views allocate");
    let (a, b, n) = count(|| jt808_views(&sets.jt808));
    assert!(n > 0);
    // Frames with escapes are un-escaped into one buffer for the run (`Frame::parse_with`),
    // which grows a few times to the longest frame; the rest are borrowed.
    let escaped = sets.jt808.split(|&b| b == 0x7E).filter(|f| f.contains(&0x7D)).count();
    assert!(escaped > 100, "the set has escaped frames to un-escape");
    assert!(a <= 4, "JT808 views: {a} allocations for {escaped} escaped frames");
    report("jt808 0x0200 views", 10_000, (a, b));
    let (a, b, n) = count(|| teltonika_views(&sets.teltonika));
    assert!(n > 0);
    assert_eq!(report("teltonika codec8 views", sets.teltonika_records, (a, b)), 0, "Teltonika views allocate");
}

/// Owned packets: a fixed number of vectors per packet (record heads, IO elements), not
/// one or more per record as the peer's owned frames.
fn owned(sets: &Sets) {
    let (a, b, n) = count(|| teltonika_owned(&sets.teltonika));
    assert_eq!(n, 10_000);
    assert!(a <= 2 * 10_000, "Teltonika owned packets: {a} allocations for 10,000 packets");
    report("teltonika codec8 owned", 10_000, (a, b));
    let (a, b, n) = count(|| nom_teltonika_owned(&sets.teltonika));
    assert_eq!(n, 10_000);
    report("nom-teltonika codec8 owned", 10_000, (a, b));
}

/// Records: the normalized owned records, with replies (the gateway's path). A record's
/// attributes, up to eight, are held in the record and acks inline, so what allocates is
/// the output vector growing and the session's device id, not each record; Teltonika's
/// IO elements are one block a packet (10,000 here), shared by its records, and the
/// random ids name an iButton or an ICCID (text) in a few records in a hundred.
fn stream_records(sets: &Sets) {
    const GROWTH: usize = 32;
    let (a, b, n) = count(|| records(Gt06Decoder::new(Gt06Options::default()), &sets.gt06));
    assert_eq!(n, 10_000);
    assert!(report("gt06 0x12 records", n, (a, b)) <= GROWTH, "GT06 records: {a} allocations");
    let (a, b, n) = count(|| records(Jt808Decoder::new(Jt808Options::default()), &sets.jt808));
    assert_eq!(n, 10_000);
    assert!(report("jt808 0x0200 records", n, (a, b)) <= GROWTH, "JT808 records: {a} allocations");
    let (a, b, n) = count(|| records(TeltonikaDecoder::default(), &sets.teltonika));
    assert_eq!(n, sets.teltonika_records);
    assert!(
        report("teltonika codec8 records", n, (a, b)) <= 10_000 + n / 20 + GROWTH,
        "Teltonika records: {a} allocations"
    );
    let (a, b, n) = count(|| records(NmeaDecoder::default(), &sets.nmea));
    assert_eq!(n, 10_000);
    assert!(report("nmea rmc records", n, (a, b)) <= GROWTH, "NMEA records: {a} allocations");
}

/// The corpus's mix (the `corpus` bench's sets): every message type, typed views and
/// records. Typed messages that hold lists (NMEA GSV satellites and GSA ids, JT808
/// batches and parameter lists) own them, so these views may allocate.
fn corpus_mix() {
    use corpus_cases as cc;
    use trackgate_codecs::Protocol;
    let mut events = Vec::new();
    for protocol in [Protocol::Nmea, Protocol::Gt06, Protocol::Jt808, Protocol::Teltonika] {
        let cases = cc::load(protocol);
        // The frame lists are made first, outside the count: only the views are counted.
        let (frames, (a, b, parsed)) = match protocol {
            Protocol::Nmea => {
                let lines = cc::nmea_lines(&cases);
                (lines.len(), count(|| cc::nmea_views(&lines)))
            }
            Protocol::Gt06 => {
                let frames = cc::gt06_frames(&cases);
                (frames.len(), count(|| cc::gt06_views(&frames)))
            }
            Protocol::Jt808 => {
                let frames = cc::jt808_frames(&cases);
                (frames.len(), count(|| cc::jt808_views(&frames, &mut Vec::new())))
            }
            Protocol::Teltonika => {
                let frames = cc::teltonika_frames(&cases);
                (frames.len(), count(|| cc::teltonika_views(&frames)))
            }
        };
        assert!(parsed > 0);
        let name = format!("corpus {protocol:?} views ({frames} frames)").to_lowercase();
        report(&name, parsed as usize, (a, b));
        let (a, b, n) = count(|| cc::records(protocol, &cases, &mut events));
        report(&format!("corpus {protocol:?} records").to_lowercase(), n as usize, (a, b));
    }
}

/// A record frees everything it allocated when dropped: `Attributes` drops its static-key
/// entries only when one holds memory or they spilled to the heap, so both are made here
/// (long text, a JSON array, more than eight keys), beside the corpus's records.
fn records_free_what_they_hold() {
    use trackgate_codecs::record::{Kind, Protocol, Record};
    let cases: Vec<_> = Protocol::ALL.iter().map(|&p| (p, corpus_cases::load(p))).collect();
    let decode_all = || {
        let mut events = Vec::new();
        cases.iter().map(|(p, c)| corpus_cases::records(*p, c, &mut events)).sum::<u64>()
    };
    // Once first: what the decoders keep per thread (JT808's un-escaping buffer) grows here.
    decode_all();
    const KEYS: [&str; 10] = ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8", "k9"];
    let region = Region::new(GLOBAL);
    let n = decode_all();
    for spill in [false, true] {
        let mut r = Record::new(Protocol::Gt06, Kind::Status, "0x13");
        r.attributes.set("text", "longer than fourteen bytes, so boxed");
        r.attributes.set("list", serde_json::json!([1, 2, 3]));
        let mut plain = Record::new(Protocol::Gt06, Kind::Status, "0x13");
        for key in if spill { &KEYS[..] } else { &KEYS[..3] } {
            plain.attributes.set(*key, 1u8);
        }
        drop((r, plain));
    }
    let s = region.change();
    // A reallocation counts its growth as allocated and its shrinking as deallocated.
    let held = s.bytes_allocated as isize - s.bytes_deallocated as isize;
    assert!(n > 0 && s.allocations > 0);
    assert_eq!(held, 0, "{held} bytes not freed after dropping {n} corpus records and the made ones");
}
