//! Round-trip oracle: any sentence the parser accepts re-encodes, and the encoding parses
//! back to the same sentence, and re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::nmea::{parse, to_line};

fuzz_target!(|data: &[u8]| {
    let Ok(first) = parse(data) else { return };
    let line = to_line(&first.sentence).expect("a parsed sentence re-encodes");
    let second = parse(line.trim_end().as_bytes()).expect("an encoded sentence parses");
    assert_eq!(first.sentence, second.sentence, "{line}");
    assert_eq!(to_line(&second.sentence).unwrap(), line);
});
