//! Which protocol a connection or a datagram speaks, from its first bytes: for one port
//! that serves every protocol (the gateway's `auto` listener, `trackgate decode --protocol
//! auto`).
//!
//! Every protocol's devices open the same way each time, and no two open alike:
//!
//! | first bytes | protocol |
//! |---|---|
//! | `78 78`, `79 79` (start of a frame) | GT06 |
//! | `7E` (the flag of a frame), `(` (the text frames of JT808 e-locks) | JT808 |
//! | `00 0F` and ASCII digits (the IMEI handshake), `00 00 00 00` (a packet), `FF` (the ping FMB devices send first) | Teltonika over TCP |
//! | a channel header whose IMEI field (bytes 6–7) is `00 0F` and digits | Teltonika over UDP |
//! | `$` or `!` (a sentence), or a first line that is a device id (`IMEI:…`, a bare id, an id before the `$`) | NMEA |
//!
//! One more: devices of many vendors wrap NMEA sentences in an envelope of their own (a
//! binary header, an HTTP request, `#id#model#…` lines) that the NMEA decoder reads past on
//! its own port. Bytes that open with none of the above but hold a sentence's start (`$`
//! and five capitals or digits, `$GPRMC`) within their first [`MAX_ENVELOPE`] bytes are
//! NMEA too.
//!
//! Otherwise only the start is judged, never a signature found further in: a device's
//! connection opens with its own first frame, and bytes that open with none of these are
//! junk (a scanner, a device of another kind). Leading blanks and line ends are passed over
//! (NMEA devices send empty lines). The detector only names the protocol; the bytes
//! themselves go, all of them, to that protocol's decoder, as they would on its own port.

use crate::nmea::{split_line, LinePiece};
use crate::Protocol;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// The connection speaks this protocol.
    Found(Protocol),
    /// The bytes so far begin more than one thing, or too little of any: read more.
    Undecided,
    /// No protocol begins so.
    Junk,
}

/// The longest first line an NMEA device writes before it can be told from junk: an id line
/// (`$IMEI=` and 32 characters) or an id path before the first `$`.
pub const MAX_ID_LINE: usize = 64;

/// How far into bytes that open as no protocol an NMEA sentence is looked for: vendors'
/// envelopes put their first sentence within a hundred bytes or so.
pub const MAX_ENVELOPE: usize = 512;

/// The protocol of a TCP stream from its first bytes; `at_end` when no more will come (the
/// peer closed), which completes an unterminated first line. More bytes never change a
/// verdict once given.
pub fn detect_stream(bytes: &[u8], at_end: bool) -> Detection {
    match by_opening(bytes, at_end) {
        Detection::Junk => nmea_in_envelope(bytes, at_end),
        verdict => verdict,
    }
}

/// The verdict of the opening alone.
fn by_opening(bytes: &[u8], at_end: bool) -> Detection {
    let start = bytes.iter().take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).count();
    let b = &bytes[start..];
    let found = |p| Detection::Found(p);
    match b {
        [] => undecided_unless(at_end),
        [0x78, 0x78, ..] | [0x79, 0x79, ..] => found(Protocol::Gt06),
        [0x78 | 0x79] => undecided_unless(at_end),
        [0x7E | b'(', ..] => found(Protocol::Jt808),
        [0x00, rest @ ..] => teltonika_tcp(rest, at_end),
        [0xFF, ..] => found(Protocol::Teltonika),
        [b'$' | b'!', ..] => found(Protocol::Nmea),
        _ => nmea_first_line(b, at_end),
    }
}

/// The protocol of one datagram, which is whole: `None` when it is junk. GT06 is named too;
/// whether a transport serves it is the caller's business.
pub fn detect_datagram(datagram: &[u8]) -> Option<Protocol> {
    if teltonika_channel_header(datagram) {
        return Some(Protocol::Teltonika);
    }
    match detect_stream(datagram, true) {
        Detection::Found(p) => Some(p),
        Detection::Undecided | Detection::Junk => None,
    }
}

/// Bytes whose opening is no protocol's: NMEA when a sentence starts within their first
/// [`MAX_ENVELOPE`] bytes, junk when none can any more.
fn nmea_in_envelope(bytes: &[u8], at_end: bool) -> Detection {
    let window = &bytes[..bytes.len().min(MAX_ENVELOPE)];
    let sentence = |at: usize| {
        window.get(at + 1..at + 6).is_some_and(|w| w.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
    };
    if memchr::memchr_iter(b'$', window).any(sentence) {
        return Detection::Found(Protocol::Nmea);
    }
    if at_end || bytes.len() >= MAX_ENVELOPE {
        Detection::Junk
    } else {
        Detection::Undecided
    }
}

fn undecided_unless(at_end: bool) -> Detection {
    if at_end {
        Detection::Junk
    } else {
        Detection::Undecided
    }
}

/// After a leading `00`: a packet's preamble (`00 00 00`) or an IMEI handshake's length
/// (at most [`crate::teltonika::MAX_IMEI_LEN`]) and its first digit.
fn teltonika_tcp(rest: &[u8], at_end: bool) -> Detection {
    use crate::teltonika::MAX_IMEI_LEN;
    match rest {
        [] | [0] | [0, 0] => undecided_unless(at_end),
        [0, 0, 0, ..] => Detection::Found(Protocol::Teltonika),
        [n, ..] if *n == 0 || usize::from(*n) > MAX_IMEI_LEN => Detection::Junk,
        [_] => undecided_unless(at_end),
        [_, digit, ..] if digit.is_ascii_digit() => Detection::Found(Protocol::Teltonika),
        _ => Detection::Junk,
    }
}

/// A Teltonika UDP channel header: length, packet id, packet type, AVL packet id, then the
/// IMEI as a length and ASCII digits.
fn teltonika_channel_header(d: &[u8]) -> bool {
    use crate::teltonika::MAX_IMEI_LEN;
    match d.get(6..8) {
        Some(&[0, n]) if (1..=MAX_IMEI_LEN).contains(&usize::from(n)) => {
            d.get(8..8 + usize::from(n)).is_some_and(|imei| imei.iter().all(u8::is_ascii_digit))
        }
        _ => false,
    }
}

/// A first line that is not a sentence: NMEA when it names the device (a whole line, or an id
/// before the line's `$`), junk when it is something else. Judged on the bytes up to the
/// line's end or its first `$`, whichever comes first, so more bytes never change a verdict.
fn nmea_first_line(b: &[u8], at_end: bool) -> Detection {
    let decisive = b.iter().position(|c| matches!(c, b'\r' | b'\n' | b'$' | b'!'));
    let head = &b[..decisive.unwrap_or(b.len())];
    let printable = head.iter().all(|&c| c == b'\t' || (0x20..0x7F).contains(&c));
    if !printable || head.len() > MAX_ID_LINE {
        return Detection::Junk;
    }
    if decisive.is_none() && !at_end {
        return Detection::Undecided;
    }
    let line_end = memchr::memchr2(b'\r', b'\n', b).unwrap_or(b.len());
    let mut nmea = false;
    split_line(&b[..line_end], |piece| {
        nmea |= matches!(piece, LinePiece::Identification { .. } | LinePiece::Sentence { .. });
    });
    if nmea {
        Detection::Found(Protocol::Nmea)
    } else {
        Detection::Junk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Detection::{Found, Junk, Undecided};

    use crate::test_support::hex as unhex;

    #[test]
    fn every_protocol_by_its_opening() {
        let cases: &[(&[u8], Detection)] = &[
            (b"\x78\x78\x0d\x01", Found(Protocol::Gt06)),
            (b"\x79\x79\x00\x20", Found(Protocol::Gt06)),
            (b"\x7e\x01\x00", Found(Protocol::Jt808)),
            (b"(740190311185,1,001,ELOCK", Found(Protocol::Jt808)),
            (b"\xff\x00\x0f3", Found(Protocol::Teltonika)),
            (b"\x00\x0f359", Found(Protocol::Teltonika)),
            (b"\x00\x00\x00\x00\x00\x00\x00\x36\x08", Found(Protocol::Teltonika)),
            (b"$GPRMC,", Found(Protocol::Nmea)),
            (b"!AIVDM", Found(Protocol::Nmea)),
            (b"\r\n$GPGGA", Found(Protocol::Nmea)),
            (b"IMEI:359853000144328\r\n", Found(Protocol::Nmea)),
            (b"359853000144328\n", Found(Protocol::Nmea)),
            (b"359853000144328,$GPRMC", Found(Protocol::Nmea)),
        ];
        for (bytes, want) in cases {
            assert_eq!(detect_stream(bytes, false), *want, "{bytes:02x?}");
        }
    }

    #[test]
    fn too_few_bytes_wait_and_an_end_decides() {
        for bytes in [&b""[..], b"\x78", b"\x79", b"\x00", b"\x00\x0f", b"\x00\x00\x00", b"IMEI:3598", b"\r\n"] {
            assert_eq!(detect_stream(bytes, false), Undecided, "{bytes:02x?}");
        }
        assert_eq!(detect_stream(b"\x78", true), Junk);
        assert_eq!(detect_stream(b"IMEI:3598", true), Found(Protocol::Nmea), "an unterminated last line is a line");
    }

    #[test]
    fn junk_is_named_at_the_end_or_past_the_envelope() {
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00",
            b"\x78\x79",
            b"\x00\x0fabc",
            b"\x00\x40123",
            b"\xfe\xff",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"hello",
        ];
        for bytes in cases {
            assert_eq!(detect_stream(bytes, false), Undecided, "{bytes:02x?}");
            assert_eq!(detect_stream(bytes, true), Junk, "{bytes:02x?}");
            let mut long = bytes.to_vec();
            long.resize(MAX_ENVELOPE, b' ');
            assert_eq!(detect_stream(&long, false), Junk, "{bytes:02x?} and blanks");
        }
    }

    /// NMEA in vendors' envelopes (from Traccar's tests: Enfora, TLT-2H, OpenGTS).
    #[test]
    fn nmea_inside_an_envelope() {
        let mut enfora = unhex("0071000402002020202020202020203820202020202020313233343536373839303132333435");
        enfora.extend_from_slice(b" $GPRMC,223152.00,A,3509.86059,N,03322.74839,E,0.0,0.0,020612,,,A*6F\r\n");
        let cases: &[&[u8]] = &[
            &enfora,
            b"#862255061752835#MT710#0000#AUTO#1\r\n#4106#$GPRMC,151410.00,A",
            b"GET /?id=123456789012345&gprmc=$GPRMC,191555,A,5025.4662,N",
        ];
        for bytes in cases {
            assert_eq!(detect_stream(bytes, false), Found(Protocol::Nmea), "{bytes:02x?}");
            let before = bytes.iter().position(|&b| b == b'$').unwrap();
            assert_eq!(detect_stream(&bytes[..before], false), Undecided);
        }
    }

    proptest::proptest! {
        /// A TCP stream arrives in reads of any size: once a verdict is given, no further
        /// byte changes it.
        #[test]
        fn more_bytes_never_change_a_verdict(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80), lead in 0usize..4) {
            let mut bytes = bytes;
            // Openings of every protocol, so verdicts other than junk are common.
            let openings: [&[u8]; 6] = [b"\x78\x78", b"\x7e", b"\x00\x0f35", b"$GP", b"IMEI:35", b"\x00\x00\x00"];
            if let Some(o) = openings.get(lead) {
                bytes.splice(0..0, o.iter().copied());
            }
            let mut verdict = Undecided;
            for n in 0..=bytes.len() {
                let now = detect_stream(&bytes[..n], false);
                if verdict != Undecided {
                    proptest::prop_assert_eq!(now, verdict, "at {} of {:02x?}", n, bytes);
                }
                verdict = now;
            }
            let end = detect_stream(&bytes, true);
            proptest::prop_assert!(end != Undecided);
            if verdict != Undecided {
                proptest::prop_assert_eq!(end, verdict);
            }
        }
    }

    #[test]
    fn datagrams() {
        let teltonika = unhex("003DCAFE0105000F33353230393330383634303336353508010000016B4F815B30010000000000000000000000000000000103021503010101425DBC000001");
        assert_eq!(detect_datagram(&teltonika), Some(Protocol::Teltonika));
        assert_eq!(detect_datagram(b"\x7e\x02\x00\x00"), Some(Protocol::Jt808));
        assert_eq!(detect_datagram(b"$GPHDT,274.07,T*03\r\n"), Some(Protocol::Nmea));
        assert_eq!(detect_datagram(b"\x78\x78\x05\x13"), Some(Protocol::Gt06));
        assert_eq!(detect_datagram(b"GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(detect_datagram(b""), None);
    }
}
