//! The simulator against the codecs: what it sends is what they decode, and what it
//! expects is what they answer.

use super::*;
use crate::protocol::{stream_decoder, StreamOptions};
use trackgate_codecs::StreamEvent;

/// The sim's frames, fed straight to the codec, give exactly the replies the sim expects
/// and one record per frame; damaged frames are rejected and give nothing.
#[test]
fn simulated_devices_agree_with_the_codecs() {
    for protocol in Protocol::ALL {
        for transport in [Transport::Tcp, Transport::Udp] {
            if protocol == Protocol::Gt06 && transport == Transport::Udp {
                continue;
            }
            let mut device = Device::new(protocol, transport, 42, 7, 0.3);
            let options = StreamOptions { transport, ..StreamOptions::default() };
            let mut decoder = stream_decoder(protocol, &options);
            let (mut expected, mut replies, mut records, mut wanted_records, mut damaged) =
                (Vec::new(), Vec::new(), 0, 0, 0);
            // TCP is a stream: a damaged frame's last bytes may be held until more come
            // (they could start the next frame), so what is not used yet goes before the
            // next write. A datagram is whole: all of it is used.
            let mut pending = Vec::new();
            let mut feed = |x: Exchange, decoder: &mut Box<dyn trackgate_codecs::RecordDecoder + Send>| {
                let mut events = Vec::new();
                pending.extend_from_slice(&x.bytes);
                let used = decoder.decode(&pending, transport == Transport::Udp, &mut events);
                pending.drain(..used);
                if transport == Transport::Udp {
                    assert!(pending.is_empty(), "{protocol}: a datagram is used whole");
                }
                for e in events {
                    match e {
                        StreamEvent::Record(_) => records += 1,
                        StreamEvent::Reply(b) => replies.push(b),
                        StreamEvent::Rejected { .. } => {}
                    }
                }
                expected.extend(x.expect);
                wanted_records += x.records;
                damaged += x.damaged;
            };
            for x in device.login() {
                feed(x, &mut decoder);
            }
            // A fixed clock: the frames, and so the test, are the same on every run.
            let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
            for i in 0..60 {
                let batch = if transport == Transport::Udp { 1 } else { 3 };
                let now = start + std::time::Duration::from_secs(30 * i);
                feed(device.report(batch, now), &mut decoder);
            }
            assert!(damaged > 5, "{protocol} {transport:?}: damage happens");
            assert_eq!(replies, expected, "{protocol} {transport:?}");
            assert_eq!(records, wanted_records, "{protocol} {transport:?}");
        }
    }
}

/// A command the codec frames is found whole in the device's input however it is split,
/// the device's answer is the one record its `AnswerMatch` names (and gets no reply),
/// and the JT808 acks after it come with the serials the device now expects.
#[test]
fn simulated_devices_answer_the_codecs_commands() {
    use trackgate_codecs::jt808::Command as Jt808Command;
    use trackgate_codecs::Downlink;
    let (tcp, udp) = (Transport::Tcp, Transport::Udp);
    let cases = [
        (Protocol::Gt06, tcp, Downlink::Text("WHERE#".into())),
        (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::QueryLocation)),
        (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::QueryParameters)),
        (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::VehicleControl { flags: 1 })),
        (Protocol::Jt808, tcp, Downlink::Jt808(Jt808Command::Tracking { interval_s: 5, validity_s: 60 })),
        (Protocol::Jt808, udp, Downlink::Jt808(Jt808Command::QueryLocation)),
        (Protocol::Teltonika, tcp, Downlink::Text("getinfo".into())),
        (Protocol::Teltonika, udp, Downlink::Text("getinfo".into())),
    ];
    let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for (protocol, transport, command) in cases {
        let mut device = Device::new(protocol, transport, 42, 7, 0.0);
        let mut decoder = stream_decoder(protocol, &StreamOptions { transport, ..StreamOptions::default() });
        let whole = transport == Transport::Udp;
        let mut events = Vec::new();
        for x in device.login() {
            decoder.decode(&x.bytes, whole, &mut events);
        }
        if protocol == Protocol::Teltonika && transport == Transport::Udp {
            // No login over UDP: the device is named by its first datagram.
            decoder.decode(&device.report(1, start).bytes, whole, &mut events);
        }
        let framed = decoder.command(&command).unwrap();
        let n = framed.bytes.len();
        for cut in 1..n {
            assert_eq!(
                device.command_at(&framed.bytes[..cut]),
                FromGateway::PartialCommand,
                "{protocol}: {cut} of {n}"
            );
        }
        let mut input = framed.bytes.clone();
        let next = device.report(1, start);
        input.extend_from_slice(&next.expect[0]);
        assert_eq!(device.command_at(&input), FromGateway::Command(n), "{protocol}");
        assert_eq!(device.command_at(&next.expect[0]), FromGateway::Other, "{protocol}: an ack is no command");
        let answer = device.answer(&framed.bytes, start).unwrap();
        events.clear();
        decoder.decode(&answer, whole, &mut events);
        let records: Vec<_> = events
            .iter()
            .map(|e| match e {
                StreamEvent::Record(r) => r,
                other => panic!("{protocol} {transport:?}: the answer gets no {other:?}"),
            })
            .collect();
        assert_eq!(records.len(), 1, "{protocol}: {command:?}");
        if let Some(m) = framed.answer {
            assert_eq!(records[0].attributes.get(m.attribute), Some(&m.value.into()), "{protocol}: {command:?}");
        }
        assert!(records[0].attributes.get("command").is_some() || protocol == Protocol::Teltonika);
        // The report built before the command: its ack as the decoder sends it now.
        events.clear();
        decoder.decode(&next.bytes, whole, &mut events);
        let Some(StreamEvent::Reply(ack)) = events.iter().find(|e| matches!(e, StreamEvent::Reply(_))) else {
            panic!("{protocol}: the report is acked")
        };
        assert_eq!(device.accept(&next.expect[0], ack), Accepted::Took(ack.len()), "{protocol}: {command:?}");
    }
}

#[test]
fn utc_fields_of_known_times() {
    assert_eq!(utc_fields(1_700_000_000_000), [23, 11, 14, 22, 13, 20]);
    assert_eq!(utc_fields(1_709_164_800_000), [24, 2, 29, 0, 0, 0]);
}
