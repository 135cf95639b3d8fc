//! Decodes one of the benches' generated streams into records `rounds` times, with the
//! stream decoder a fresh connection would get (or, for the Teltonika `_validate` and
//! `_views`, the GT06 and JT808 `_views` and the NMEA `_typed` streams, as the benches' rows of
//! those names do), for
//! counting instructions under cachegrind
//! (`scripts/instructions.sh`). Timings on a shared machine move ±5–10% between runs of the
//! same binary, and with the code's layout; instruction counts do not, so they tell whether
//! a change added work to a record row.
//!
//! A record stream's name followed by `+json` (`teltonika_8+json`) also writes each record's
//! JSON line, as `trackgate decode` does: what a record costs its first reader.
//!
//! `cargo run --release -p trackgate-benches --example instructions -- gt06_12 5`
//!
//! `instructions write STREAM COPIES > FILE` writes the stream COPIES times over instead: a
//! capture for timing `trackgate decode` on the same frames.

use trackgate_benches::{gt06_locations, jt808_locations, nmea_gga, nmea_rmc, teltonika_packets};
use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::gt06::{Frame as Gt06Frame, Gt06Decoder, Gt06Framer, Message as Gt06Message};
use trackgate_codecs::jt808::frame::inner;
use trackgate_codecs::jt808::message::Location;
use trackgate_codecs::jt808::{Frame, Jt808Decoder, Jt808Framer, DEFAULT_LIMITS as JT808_LIMITS};
use trackgate_codecs::nmea::{parse, Message, NmeaDecoder, NmeaFramer, ParsedSentence, Sentence};
use trackgate_codecs::teltonika::{AvlData, IoElement, RecordView, TeltonikaDecoder, TeltonikaFramer, HEADER_LEN};
use trackgate_codecs::{RecordDecoder, StreamEvent};

/// The streams, named as `scripts/instructions.sh` names them; 10,000 frames each.
const STREAMS: [&str; 16] = [
    "gt06_12",
    "gt06_22",
    "gt06_12_views",
    "gt06_22_views",
    "jt808",
    "jt808_views",
    "teltonika_8",
    "teltonika_8e",
    "teltonika_8_validate",
    "teltonika_8e_validate",
    "teltonika_8_views",
    "teltonika_8e_views",
    "nmea_rmc",
    "nmea_gga",
    "nmea_rmc_typed",
    "nmea_gga_typed",
];

fn stream(name: &str) -> Option<Vec<u8>> {
    Some(match name {
        "gt06_12" | "gt06_12_views" => gt06_locations(0x12, 10_000, 11),
        "gt06_22" | "gt06_22_views" => gt06_locations(0x22, 10_000, 11),
        "jt808" | "jt808_views" => jt808_locations(10_000, 13, true),
        "teltonika_8" | "teltonika_8_validate" | "teltonika_8_views" => teltonika_packets(0x08, 10_000, 7).0,
        "teltonika_8e" | "teltonika_8e_validate" | "teltonika_8e_views" => teltonika_packets(0x8E, 10_000, 7).0,
        "nmea_rmc" | "nmea_rmc_typed" => nmea_rmc(10_000, 5),
        "nmea_gga" | "nmea_gga_typed" => nmea_gga(10_000, 5),
        _ => return None,
    })
}

fn decoder(name: &str) -> Box<dyn RecordDecoder> {
    match name.split('_').next() {
        Some("gt06") => Box::new(Gt06Decoder::default()),
        Some("jt808") => Box::new(Jt808Decoder::default()),
        Some("teltonika") => Box::new(TeltonikaDecoder::default()),
        _ => Box::new(NmeaDecoder::default()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [write, name, copies] = &args[..] {
        if write == "write" {
            return write_capture(name, copies);
        }
    }
    let (Some(name), Some(Ok(rounds))) = (args.first(), args.get(1).map(|r| r.parse::<usize>())) else {
        eprintln!("usage: instructions STREAM ROUNDS (STREAM one of {})", STREAMS.join(", "));
        std::process::exit(2);
    };
    let (name, json) = match name.strip_suffix("+json") {
        Some(stream) => (stream, true),
        None => (name.as_str(), false),
    };
    let Some(buf) = stream(name) else {
        eprintln!("unknown stream {name:?} (one of {})", STREAMS.join(", "));
        std::process::exit(2);
    };
    if name.starts_with("gt06") && name.ends_with("_views") {
        let mut sum = 0u64;
        for _ in 0..rounds {
            sum = sum.wrapping_add(gt06_views(std::hint::black_box(&buf)));
        }
        println!("{sum}");
        return;
    }
    if name == "jt808_views" {
        let mut sum = 0u64;
        for _ in 0..rounds {
            sum = sum.wrapping_add(jt808_views(std::hint::black_box(&buf)));
        }
        println!("{sum}");
        return;
    }
    if name.ends_with("_typed") {
        let mut sum = 0u64;
        for _ in 0..rounds {
            sum = sum.wrapping_add(typed(std::hint::black_box(&buf)));
        }
        println!("{sum}");
        return;
    }
    if name.ends_with("_validate") || name.ends_with("_views") {
        let views = name.ends_with("_views");
        let mut sum = 0u64;
        for _ in 0..rounds {
            sum = sum.wrapping_add(avl(std::hint::black_box(&buf), views));
        }
        println!("{sum}");
        return;
    }
    let mut out: Vec<StreamEvent> = Vec::new();
    let (mut records, mut line, mut bytes) = (0, Vec::new(), 0);
    for _ in 0..rounds {
        out.clear();
        decoder(name).decode(std::hint::black_box(&buf), true, &mut out);
        for event in &out {
            if let StreamEvent::Record(r) = event {
                records += 1;
                if json {
                    line.clear();
                    r.write_json(&mut line);
                    bytes += line.len();
                }
            }
        }
    }
    println!("{records} records, {bytes} bytes of JSON");
}

/// The Teltonika validate and views rows: frame, CRC and structure; with `views`, every
/// field and IO value of every record read too, in one walk.
fn avl(buf: &[u8], views: bool) -> u64 {
    let (mut framer, mut pos, mut sum) = (TeltonikaFramer::default(), 0, 0u64);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(avl) = AvlData::parse(&buf[pos + HEADER_LEN..pos + len - 4]) {
            sum += u64::from(avl.count);
            if views {
                let record = |sum: &mut u64, r: RecordView<'_>| {
                    *sum = sum.wrapping_add(r.timestamp_ms ^ r.gps.latitude().to_bits() ^ u64::from(r.gps.speed_kmh));
                };
                let io = |sum: &mut u64, e: IoElement<'_>| {
                    *sum = sum.wrapping_add(u64::from(e.id) ^ e.value.as_u64().unwrap_or(0));
                };
                avl.for_each_record(&mut sum, record, io);
            }
        }
        pos += consumed;
    }
    sum
}

/// The GT06 views row: each frame cut and checked, its message parsed in place, the fix's
/// position, time, speed and course and the cell read.
fn gt06_views(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut sum) = (Gt06Framer::default(), 0, 0u64);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        let shape = framer.last_shape();
        if let Some(frame) = Gt06Frame::split(&buf[pos..pos + len], shape) {
            if let Ok(Gt06Message::Location { fix, cell, .. }) = Gt06Message::parse(&frame) {
                let time = fix.timestamp(0).map_or(0, |t| t.unix_ms() as u64);
                let cell = cell.map_or(0, |c| u64::from(c.mcc) + u64::from(c.lac) + c.cell_id);
                let place = fix.latitude().to_bits() ^ fix.longitude().to_bits();
                let motion = u64::from(fix.speed_kmh) ^ u64::from(fix.course());
                sum = sum.wrapping_add(place ^ motion ^ time ^ cell);
            }
        }
        pos += consumed;
    }
    sum
}

/// The JT808 views row: each frame cut, un-escaped and checked, its header and location
/// read, its time converted and its items split.
fn jt808_views(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut sum, mut scratch) = (Jt808Framer::new(JT808_LIMITS), 0, 0u64, Vec::new());
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(frame) = Frame::parse_with(inner(&buf[pos..pos + len]), &mut scratch) {
            if let Ok(l) = Location::parse(&frame.body) {
                let time = l.timestamp(0).map_or(0, |t| t.unix_ms() as u64);
                let items = l.items().fold(0, |n, item| n + item.value.len() as u64);
                sum = sum.wrapping_add(u64::from(frame.header.serial) ^ u64::from(l.latitude_raw) ^ time ^ items);
            }
        }
        pos += consumed;
    }
    sum
}

/// The NMEA `_typed` rows: each line framed and parsed into its typed sentence, the
/// position fields read.
fn typed(buf: &[u8]) -> u64 {
    let (mut framer, mut pos, mut sum) = (NmeaFramer::default(), 0, 0u64);
    while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
        if let Ok(ParsedSentence { sentence: Sentence::Standard { message, .. }, .. }) = parse(&buf[pos..pos + len]) {
            let (time, latitude) = match message {
                Message::Rmc(m) => (m.time, m.latitude),
                Message::Gga(m) => (m.time, m.latitude),
                _ => (None, None),
            };
            sum = sum
                .wrapping_add(time.map_or(0, |t| t.ms_of_day() as u64) ^ latitude.map_or(0, |c| c.degrees().to_bits()));
        }
        pos += consumed;
    }
    sum
}

fn write_capture(name: &str, copies: &str) {
    let (Some(buf), Ok(copies)) = (stream(name), copies.parse::<usize>()) else {
        eprintln!("usage: instructions write STREAM COPIES (STREAM one of {})", STREAMS.join(", "));
        std::process::exit(2);
    };
    let mut stdout = std::io::stdout().lock();
    for _ in 0..copies {
        if let Err(e) = std::io::Write::write_all(&mut stdout, &buf) {
            eprintln!("writing the capture: {e}");
            std::process::exit(1);
        }
    }
}
