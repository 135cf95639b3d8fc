//! Every codec on the repository's corpus (`corpus/<protocol>/**/*.hex`): real device
//! traffic from Traccar's test suite, worked frames from the protocol documents, gpsd's logs and
//! edge cases, in the mix of message types devices actually send (logins, heartbeats,
//! alarms, status, command replies, positions), not just the random position frames of
//! the per-protocol benches.
//!
//! For each protocol (TCP cases; UDP cases only in the records row):
//!
//! * `trackgate_views`: framing and the typed parse of every frame (checks, header, message
//!   fields), any message type; the frames the corpus marks as damaged are rejected on the
//!   way, as in service.
//! * `trackgate_records`: the stream decoder per case (one case is one connection), giving
//!   the normalized records and the replies.
//! * `trackgate_encode`: every message the views accepted written back to wire bytes
//!   (checksums, escaping, length fields) from its typed form.
//! * `<peer>` and `trackgate_views_on_<peer>_frames`: the peer's decode on the frames it
//!   accepts, and ours on exactly those frames, so the two rows compare the same bytes. Which
//!   frames a peer rejects is printed before the timing.
//!
//! Encoding against peers, where a peer has an encoder: `nmeasis` writes sentences, timed
//! decode then encode on the same lines as ours (its sentences only live inside its parser's
//! callback), both as it does by default (`nmeasis_26.4_decode_encode`: no field parsed, the
//! received text written back) and doing the same work as ours
//! (`nmeasis_26.4_getters_encode`: every getter called first); `nmeasis_26.4_lazy`, its parse
//! alone, is there so that its encode can be read off by difference; and `gt06` writes acks
//! (`gt06_0.4_acks` against `trackgate_acks`). The others' encoders are `serde`
//! serialisation (`nom-teltonika`, `nmea`) or absent (`jt808`'s is commented out).
//!
//! cargo bench -p trackgate-benches --bench corpus

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::codec::Decoder;
use trackgate_codecs::{self as tg, Protocol};

#[path = "common/corpus_cases.rs"]
mod corpus_cases;
use corpus_cases::*;

fn report(protocol: &str, peer: &str, ours: usize, theirs: usize) {
    eprintln!("{protocol}: {peer} accepts {theirs} of the {ours} frames ours accepts; the peer rows and ours beside them use those {theirs}");
}

// ---------------------------------------------------------------------------------------
// NMEA

fn nmea_encode(sentences: &[tg::nmea::ParsedSentence<'_>], out: &mut Vec<u8>) -> usize {
    out.clear();
    for p in sentences {
        tg::nmea::encode(&p.sentence, out).expect("a parsed sentence encodes");
    }
    out.len()
}

fn nmea_peer_nmea(lines: &[&[u8]]) -> u64 {
    lines.iter().filter(|l| black_box(::nmea::parse_bytes(l)).is_ok()).count() as u64
}

/// What `nmea_peer_nmeasis` does with each sentence its stream parser hands out.
#[derive(Clone, Copy, PartialEq)]
enum Nmeasis {
    /// Every getter of the message called: every field parsed, as ours parses them.
    Getters,
    /// Nothing beyond the parser's own work: fields stay text (its floor).
    Lazy,
    /// Written back with `Sentence::encode`, fields left as text.
    Encode,
    /// Every getter called, then written back: the same work as ours decoding and encoding.
    GettersEncode,
}

/// `nmeasis` is a stream parser: the lines go through it as one stream. It parses most
/// fields only when their getter is called, so with getters every getter of every message
/// type it has is called (ours parses every field up front). With encoding, each sentence
/// is also written back with its `Sentence::encode`.
fn nmea_peer_nmeasis(stream: &[u8], mode: Nmeasis) -> u64 {
    let mut ok = 0;
    let mut written = 0;
    let mut p = nmeasis::parser::NmeaParser::<256>::default();
    let mut rest = stream;
    let mut buf = [0u8; 256];
    while !rest.is_empty() {
        let space = p.buffer();
        let n = space.len().min(rest.len());
        space[..n].copy_from_slice(&rest[..n]);
        rest = &rest[n..];
        p.commit(n, |r| {
            let Ok(s) = r else { return };
            ok += 1;
            if mode == Nmeasis::Lazy {
                black_box(&s);
                return;
            }
            if matches!(mode, Nmeasis::Encode | Nmeasis::GettersEncode) {
                written += s.encode(&mut buf).unwrap_or(0);
            }
            if mode == Nmeasis::Encode {
                return;
            }
            call_every_getter(&s.message);
        });
    }
    black_box(written);
    ok
}

/// Every getter `nmeasis` has for the message's type, each result kept.
#[inline(always)]
fn call_every_getter(message: &nmeasis::message::Message<'_>) {
    use nmeasis::message::Message as M;
    match message {
        M::Rmc(m) => {
            black_box((m.time(), m.is_valid(), m.coordinates(), m.speed(), m.track_made(), m.date()));
            black_box((m.magnetic_variation(), m.faa_mode(), m.nav_status()));
        }
        M::Gga(m) => {
            black_box((m.time(), m.coordinates(), m.fix_quality(), m.satellites(), m.hdop()));
            black_box((m.altitude(), m.geoid_separation(), m.dgps_age(), m.dgps_station_id()));
        }
        M::Gll(m) => {
            black_box((m.coordinates(), m.time(), m.is_valid(), m.faa_mode()));
        }
        M::Gns(m) => {
            black_box((m.time(), m.coordinates(), m.satellite_count(), m.hdop(), m.altitude()));
            black_box((m.geoidal_seperation(), m.dgps_age(), m.dgps_station_id(), m.nav_status()));
        }
        M::Gsa(m) => {
            black_box((m.mode(), m.fix(), m.pdop(), m.hdop(), m.vdop(), m.system_id()));
            for i in 0..12 {
                black_box(m.prn(i));
            }
        }
        M::Gsv(m) => {
            black_box((m.total_messages(), m.message_number(), m.satellites_in_view()));
            for i in 0..4 {
                if let Some(sat) = m.satellite(i) {
                    black_box((sat.prn(), sat.elevation(), sat.azimuth(), sat.snr()));
                }
            }
        }
        M::Gst(m) => {
            black_box((m.time(), m.rms(), m.latitude_error(), m.longitude_error()));
        }
        M::Txt(m) => {
            black_box((m.total_messages(), m.message_number(), m.message_type()));
        }
        M::Vtg(m) => {
            black_box((m.degrees_true(), m.speed_knots(), m.speed_kph(), m.faa_mode()));
        }
        M::Zda(m) => {
            black_box((m.time(), m.date()));
        }
        _ => {
            black_box(message);
        }
    }
}

/// Ours on the same lines: parse, and with `encode` each sentence written back.
fn nmea_decode_encode(lines: &[&[u8]], out: &mut Vec<u8>) -> u64 {
    out.clear();
    let mut ok = 0;
    for line in lines {
        if let Ok(p) = tg::nmea::parse(line) {
            ok += 1;
            tg::nmea::encode(&p.sentence, out).expect("a parsed sentence encodes");
        }
    }
    ok
}

fn bench_nmea(c: &mut Criterion) {
    let cases = load(Protocol::Nmea);
    let lines = nmea_lines(&cases);
    let accepted: Vec<&[u8]> = lines.iter().copied().filter(|l| tg::nmea::parse(l).is_ok()).collect();
    let sentences: Vec<tg::nmea::ParsedSentence<'_>> = accepted.iter().map(|l| tg::nmea::parse(l).unwrap()).collect();
    let for_nmea: Vec<&[u8]> = accepted.iter().copied().filter(|l| ::nmea::parse_bytes(l).is_ok()).collect();
    let for_nmeasis: Vec<&[u8]> =
        accepted.iter().copied().filter(|l| nmea_peer_nmeasis(&crlf(&[l]), Nmeasis::Getters) == 1).collect();
    let nmeasis_stream = crlf(&for_nmeasis);
    let sentences_for_nmeasis: Vec<tg::nmea::ParsedSentence<'_>> =
        for_nmeasis.iter().map(|l| tg::nmea::parse(l).unwrap()).collect();
    report("nmea", "nmea 0.8", accepted.len(), for_nmea.len());
    report("nmea", "nmeasis 26.4", accepted.len(), for_nmeasis.len());
    assert_eq!(nmea_peer_nmeasis(&nmeasis_stream, Nmeasis::Getters), for_nmeasis.len() as u64);
    let mut events = Vec::new();
    let mut out = Vec::new();
    eprintln!(
        "nmea: {} lines in {} TCP bytes, {} parsed; {} records from all cases",
        lines.len(),
        tcp_bytes(&cases),
        accepted.len(),
        records(Protocol::Nmea, &cases, &mut events)
    );

    let mut g = c.benchmark_group("corpus_nmea");
    g.throughput(Throughput::Bytes(sum(&lines)));
    g.bench_function("trackgate_views", |b| b.iter(|| nmea_views(black_box(&lines))));
    g.throughput(Throughput::Bytes(all_bytes(&cases)));
    g.bench_function("trackgate_records", |b| b.iter(|| records(Protocol::Nmea, black_box(&cases), &mut events)));
    g.throughput(Throughput::Bytes(sum(&accepted)));
    g.bench_function("trackgate_encode", |b| b.iter(|| nmea_encode(black_box(&sentences), &mut out)));
    g.throughput(Throughput::Bytes(sum(&for_nmea)));
    g.bench_function("nmea_0.8", |b| b.iter(|| nmea_peer_nmea(black_box(&for_nmea))));
    g.bench_function("trackgate_views_on_nmea_frames", |b| b.iter(|| nmea_views(black_box(&for_nmea))));
    g.throughput(Throughput::Bytes(nmeasis_stream.len() as u64));
    g.bench_function("nmeasis_26.4", |b| b.iter(|| nmea_peer_nmeasis(black_box(&nmeasis_stream), Nmeasis::Getters)));
    g.bench_function("trackgate_views_on_nmeasis_frames", |b| b.iter(|| nmea_views(black_box(&for_nmeasis))));
    g.bench_function("nmeasis_26.4_lazy", |b| b.iter(|| nmea_peer_nmeasis(black_box(&nmeasis_stream), Nmeasis::Lazy)));
    g.bench_function("nmeasis_26.4_decode_encode", |b| {
        b.iter(|| nmea_peer_nmeasis(black_box(&nmeasis_stream), Nmeasis::Encode))
    });
    g.bench_function("nmeasis_26.4_getters_encode", |b| {
        b.iter(|| nmea_peer_nmeasis(black_box(&nmeasis_stream), Nmeasis::GettersEncode))
    });
    g.bench_function("trackgate_encode_on_nmeasis_frames", |b| {
        b.iter(|| nmea_encode(black_box(&sentences_for_nmeasis), &mut out))
    });
    g.bench_function("trackgate_decode_encode_on_nmeasis_frames", |b| {
        b.iter(|| nmea_decode_encode(black_box(&for_nmeasis), &mut out))
    });
    g.finish();
}

fn crlf(lines: &[&[u8]]) -> Vec<u8> {
    let mut s = Vec::new();
    for l in lines {
        s.extend_from_slice(l);
        s.extend_from_slice(b"\r\n");
    }
    s
}

// ---------------------------------------------------------------------------------------
// GT06

fn gt06_encode(
    messages: &[(tg::gt06::Frame<'_>, tg::gt06::Message<'_>)],
    content: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    for (frame, message) in messages {
        content.clear();
        message.write_content(frame.protocol, content).expect("a parsed message writes back");
        tg::gt06::encode_frame(out, frame.long, frame.protocol, content, frame.serial.unwrap_or(0))
            .expect("a parsed message fits a frame");
    }
    out.len()
}

/// The acks of the frames (protocol number and serial): ours appended to one buffer
/// (`ack_into`), the peer's `build_ack` returning each as an array.
fn gt06_acks(acks: &[(u8, u16)], out: &mut Vec<u8>) -> usize {
    out.clear();
    for &(protocol, serial) in acks {
        tg::gt06::ack_into(out, false, protocol, serial);
    }
    out.len()
}

fn gt06_peer_acks(acks: &[(u8, u16)]) -> usize {
    acks.iter().map(|&(protocol, serial)| black_box(::gt06::build_ack(protocol, serial)).len()).sum()
}

fn gt06_peer(frames: &[(&[u8], tg::gt06::FrameShape)]) -> u64 {
    frames.iter().filter(|(f, _)| black_box(::gt06::parse_packet(f)).is_ok()).count() as u64
}

fn bench_gt06(c: &mut Criterion) {
    let cases = load(Protocol::Gt06);
    let all = gt06_frames(&cases);
    let accepted: Vec<_> = all.iter().copied().filter(|f| gt06_views(&[*f]) == 1).collect();
    let messages: Vec<_> = accepted
        .iter()
        .filter_map(|&(bytes, shape)| {
            let frame = tg::gt06::Frame::split(bytes, shape)?;
            let message = tg::gt06::Message::parse(&frame).ok()?;
            let mut content = Vec::new();
            // The messages `write_content` can write (all of the corpus's, as printed below);
            // one kept opaque (an unknown protocol number) is written back as it came.
            message.write_content(frame.protocol, &mut content)?;
            Some((frame, message))
        })
        .collect();
    let for_peer: Vec<_> = accepted.iter().copied().filter(|(f, _)| ::gt06::parse_packet(f).is_ok()).collect();
    report("gt06", "gt06 0.4", accepted.len(), for_peer.len());
    let mut events = Vec::new();
    eprintln!(
        "gt06: {} frames in {} TCP bytes, {} parsed, {} of them written back; {} records from all cases",
        all.len(),
        tcp_bytes(&cases),
        accepted.len(),
        messages.len(),
        records(Protocol::Gt06, &cases, &mut events)
    );
    let (mut content, mut out) = (Vec::new(), Vec::new());

    let mut g = c.benchmark_group("corpus_gt06");
    g.throughput(Throughput::Bytes(all.iter().map(|(f, _)| f.len() as u64).sum()));
    g.bench_function("trackgate_views", |b| b.iter(|| gt06_views(black_box(&all))));
    g.throughput(Throughput::Bytes(all_bytes(&cases)));
    g.bench_function("trackgate_records", |b| b.iter(|| records(Protocol::Gt06, black_box(&cases), &mut events)));
    g.throughput(Throughput::Bytes(gt06_encode(&messages, &mut content, &mut out) as u64));
    g.bench_function("trackgate_encode", |b| b.iter(|| gt06_encode(black_box(&messages), &mut content, &mut out)));
    g.throughput(Throughput::Bytes(for_peer.iter().map(|(f, _)| f.len() as u64).sum()));
    g.bench_function("gt06_0.4", |b| b.iter(|| gt06_peer(black_box(&for_peer))));
    g.bench_function("trackgate_views_on_gt06_frames", |b| b.iter(|| gt06_views(black_box(&for_peer))));
    let acks: Vec<(u8, u16)> = messages.iter().map(|(f, _)| (f.protocol, f.serial.unwrap_or(0))).collect();
    // The same bytes from both.
    gt06_acks(&acks, &mut out);
    assert_eq!(out, acks.iter().flat_map(|&(p, s)| ::gt06::build_ack(p, s)).collect::<Vec<u8>>());
    g.throughput(Throughput::Bytes(gt06_peer_acks(&acks) as u64));
    g.bench_function("trackgate_acks", |b| b.iter(|| gt06_acks(black_box(&acks), &mut out)));
    g.bench_function("gt06_0.4_acks", |b| b.iter(|| gt06_peer_acks(black_box(&acks))));
    g.finish();
}

// ---------------------------------------------------------------------------------------
// JT808

fn jt808_encode(
    messages: &[(tg::jt808::Header, tg::jt808::Message<'_>)],
    body: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    for (h, m) in messages {
        body.clear();
        m.write_body(h.terminal.edition, body);
        tg::jt808::encode_frame(out, h.message_id, &h.terminal, h.serial, h.package, body).expect("a parsed body fits");
    }
    out.len()
}

/// The `jt808` crate on one frame, flags put back: header (un-escaped, no check code) and,
/// for 0x0200, the location body, the only body the bench's other rows read from it.
fn jt808_peer_one(codec: &mut ::jt808::codec::Jt808Codec, wire: &[u8]) -> bool {
    let mut b = BytesMut::from(wire);
    match codec.decode(&mut b) {
        Ok(Some(j)) => {
            if j.id == 0x0200 {
                use ::jt808::models::Jt808BodyTrans;
                let l =
                    ::jt808::models::jt0x0200::Jt0x0200::fill_new(&mut ::jt808::bytes::JtBytes::from(j.get_body()), &j);
                black_box(&l.gps.lat);
            }
            black_box(j.sn);
            true
        }
        _ => false,
    }
}

fn jt808_peer(wires: &[Vec<u8>]) -> u64 {
    let mut codec = ::jt808::codec::Jt808Codec::new();
    wires.iter().filter(|w| jt808_peer_one(&mut codec, w)).count() as u64
}

fn bench_jt808(c: &mut Criterion) {
    let cases = load(Protocol::Jt808);
    let all = jt808_frames(&cases);
    let mut scratch = Vec::new();
    let accepted: Vec<&[u8]> = all.iter().copied().filter(|f| jt808_views(&[f], &mut scratch) == 1).collect();
    let parsed: Vec<tg::jt808::Frame<'_>> = accepted.iter().map(|f| tg::jt808::Frame::parse(f).unwrap()).collect();
    let messages: Vec<_> =
        parsed.iter().map(|f| (f.header, tg::jt808::Message::parse(&f.header, &f.body).unwrap())).collect();
    // The crate panics on many real frames (BENCHMARKS.md): each frame is tried alone
    // first, the panic caught and kept quiet, and only the frames it survives and decodes
    // go into its set.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let (for_peer, peer_wires): (Vec<&[u8]>, Vec<Vec<u8>>) = accepted
        .iter()
        .filter_map(|f| {
            let wire = [&[0x7E][..], f, &[0x7E]].concat();
            let survived = std::panic::catch_unwind(|| jt808_peer_one(&mut ::jt808::codec::Jt808Codec::new(), &wire));
            matches!(survived, Ok(true)).then_some((*f, wire))
        })
        .unzip();
    std::panic::set_hook(hook);
    report("jt808", "jt808 0.1.1", accepted.len(), for_peer.len());
    let mut events = Vec::new();
    eprintln!(
        "jt808: {} frames in {} TCP bytes, {} parsed; {} records from all cases",
        all.len(),
        tcp_bytes(&cases),
        accepted.len(),
        records(Protocol::Jt808, &cases, &mut events)
    );
    let (mut body, mut out) = (Vec::new(), Vec::new());

    let mut g = c.benchmark_group("corpus_jt808");
    g.throughput(Throughput::Bytes(sum(&all)));
    g.bench_function("trackgate_views", |b| b.iter(|| jt808_views(black_box(&all), &mut scratch)));
    g.throughput(Throughput::Bytes(all_bytes(&cases)));
    g.bench_function("trackgate_records", |b| b.iter(|| records(Protocol::Jt808, black_box(&cases), &mut events)));
    g.throughput(Throughput::Bytes(jt808_encode(&messages, &mut body, &mut out) as u64));
    g.bench_function("trackgate_encode", |b| b.iter(|| jt808_encode(black_box(&messages), &mut body, &mut out)));
    g.throughput(Throughput::Bytes(peer_wires.iter().map(|w| w.len() as u64).sum()));
    g.bench_function("jt808_0.1.1", |b| b.iter(|| jt808_peer(black_box(&peer_wires))));
    g.bench_function("trackgate_views_on_jt808_frames", |b| b.iter(|| jt808_views(black_box(&for_peer), &mut scratch)));
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Teltonika

/// Owned records of every AVL packet, written back as packets (data field, then the packet
/// with its length and CRC).
fn teltonika_encode(packets: &[(u8, Vec<tg::teltonika::AvlRecord>)], data: &mut Vec<u8>, out: &mut Vec<u8>) -> usize {
    out.clear();
    for (codec, records) in packets {
        data.clear();
        tg::teltonika::encode_data(*codec, records, data).expect("parsed records encode");
        tg::teltonika::encode_packet(data, out);
    }
    out.len()
}

fn teltonika_peer(packets: &[&[u8]]) -> u64 {
    let mut n = 0;
    for p in packets {
        let mut input = *p;
        if let Ok(nom_teltonika::protocol::FrameView::Avl(avl)) = nom_teltonika::decoder::take_frame(&mut input) {
            for r in avl.records() {
                black_box(r.timestamp());
                for io in r.io_elements() {
                    black_box(io.value());
                }
            }
            n += 1;
        }
    }
    n
}

fn bench_teltonika(c: &mut Criterion) {
    let cases = load(Protocol::Teltonika);
    let all = teltonika_frames(&cases);
    let accepted: Vec<&[u8]> = all.iter().copied().filter(|f| teltonika_views(&[f]) == 1).collect();
    let avl: Vec<&[u8]> = accepted
        .iter()
        .copied()
        .filter(|f| packet_data(f).and_then(|d| tg::teltonika::AvlData::parse(d).ok()).is_some())
        .collect();
    let packets: Vec<(u8, Vec<tg::teltonika::AvlRecord>)> = avl
        .iter()
        .map(|f| {
            let data = tg::teltonika::AvlData::parse(packet_data(f).unwrap()).unwrap();
            (data.codec, data.records().map(|r| tg::teltonika::AvlRecord::from_view(&r)).collect::<Vec<_>>())
        })
        // Codec 8 packets read with Traccar's 16-byte IO group (a vendor variant the decoder
        // accepts) have no standard Codec 8 encoding; the encoder refuses them.
        .filter(|(codec, records)| tg::teltonika::encode_data(*codec, records, &mut Vec::new()).is_ok())
        .collect();
    let for_peer: Vec<&[u8]> = avl
        .iter()
        .copied()
        .filter(|f| {
            let mut input = *f;
            matches!(nom_teltonika::decoder::take_frame(&mut input), Ok(nom_teltonika::protocol::FrameView::Avl(_)))
        })
        .collect();
    report("teltonika", "nom-teltonika 0.3 (AVL packets only)", avl.len(), for_peer.len());
    let mut events = Vec::new();
    eprintln!(
        "teltonika: {} frames in {} TCP bytes, {} parsed ({} AVL packets, {} of them written back); {} records from all cases",
        all.len(),
        tcp_bytes(&cases),
        accepted.len(),
        avl.len(),
        packets.len(),
        records(Protocol::Teltonika, &cases, &mut events)
    );
    let (mut data, mut out) = (Vec::new(), Vec::new());

    let mut g = c.benchmark_group("corpus_teltonika");
    g.throughput(Throughput::Bytes(sum(&all)));
    g.bench_function("trackgate_views", |b| b.iter(|| teltonika_views(black_box(&all))));
    g.throughput(Throughput::Bytes(all_bytes(&cases)));
    g.bench_function("trackgate_records", |b| b.iter(|| records(Protocol::Teltonika, black_box(&cases), &mut events)));
    g.throughput(Throughput::Bytes(teltonika_encode(&packets, &mut data, &mut out) as u64));
    g.bench_function("trackgate_encode", |b| b.iter(|| teltonika_encode(black_box(&packets), &mut data, &mut out)));
    g.throughput(Throughput::Bytes(sum(&for_peer)));
    g.bench_function("nom_teltonika_0.3", |b| b.iter(|| teltonika_peer(black_box(&for_peer))));
    g.bench_function("trackgate_views_on_nom_teltonika_frames", |b| b.iter(|| teltonika_views(black_box(&for_peer))));
    g.finish();
}

criterion_group!(benches, bench_nmea, bench_gt06, bench_jt808, bench_teltonika);
criterion_main!(benches);
