//! Round-trip oracle: any frame the framer accepts and the catalogue reads re-encodes, the
//! encoding reads back as the same message, and re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::gt06::{Frame, Gt06Framer, Message, DEFAULT_LIMITS};
use trackgate_codecs::{Framer, Framing};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let mut framer = Gt06Framer::new(DEFAULT_LIMITS, mode & 1 == 1);
    let Framing::Frame { len, .. } = framer.next_frame_at_end(input) else { return };
    let Some(frame) = Frame::split(&input[..len], framer.last_shape()) else { return };
    let Ok(first) = Message::parse(&frame) else { return };
    let mut bytes = Vec::new();
    if first.write_content(frame.protocol, &mut bytes).is_none() {
        return;
    }
    let again = Frame { content: &bytes, ..frame };
    let second = Message::parse(&again).expect("an encoded message parses");
    assert_eq!(first, second);
    let mut bytes2 = Vec::new();
    second.write_content(frame.protocol, &mut bytes2).expect("re-encodes");
    assert_eq!(bytes, bytes2);
});
