//! Telling a connection's protocol from its first bytes (`trackgate_codecs::detect`), on any
//! bytes: no panic, a verdict once given is never changed by more bytes (a TCP stream arrives
//! in reads of any size), the end always gives one, and a datagram's verdict is the stream's
//! at its end unless it is a Teltonika channel header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::detect::{detect_datagram, detect_stream, Detection};
use trackgate_codecs::Protocol;

fuzz_target!(|data: &[u8]| {
    let mut verdict = Detection::Undecided;
    for n in 0..=data.len() {
        let now = detect_stream(&data[..n], false);
        if verdict != Detection::Undecided {
            assert_eq!(now, verdict, "at {n}");
        }
        verdict = now;
    }
    let end = detect_stream(data, true);
    assert_ne!(end, Detection::Undecided);
    if verdict != Detection::Undecided {
        assert_eq!(end, verdict);
    }
    match (detect_datagram(data), end) {
        (Some(Protocol::Teltonika), _) => {}
        (Some(p), Detection::Found(q)) => assert_eq!(p, q),
        (None, Detection::Junk) => {}
        (datagram, stream) => panic!("datagram {datagram:?}, stream {stream:?}"),
    }
});
