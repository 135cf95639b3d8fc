//! Round-trip oracle: any frame the framer accepts and the catalogue reads re-encodes; the
//! encoding reads back as the same message and re-encodes to the same bytes, in a frame with
//! the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::jt808::{encode_frame, frame, Frame, Jt808Framer, Message, DEFAULT_LIMITS};
use trackgate_codecs::{Framer, Framing};

fuzz_target!(|data: &[u8]| {
    // The first byte is skipped so the stream target's seeds (read size first) serve here too.
    let Some((_, data)) = data.split_first() else { return };
    let mut framer = Jt808Framer::new(DEFAULT_LIMITS);
    let Framing::Frame { len, .. } = framer.next_frame_at_end(data) else { return };
    let escaped = frame::inner(&data[..len]);
    let Ok(parsed) = Frame::parse(escaped) else { return };
    let h = parsed.header;
    let Ok(first) = Message::parse(&h, &parsed.body) else { return };
    let mut body = Vec::new();
    first.write_body(h.terminal.edition, &mut body);
    let second = Message::parse(&h, &body).expect("an encoded message parses");
    assert_eq!(first, second);
    let mut body2 = Vec::new();
    second.write_body(h.terminal.edition, &mut body2);
    assert_eq!(body, body2);
    // The frame around it: same header fields, a right check code, escapes undone.
    let mut wire = Vec::new();
    if encode_frame(&mut wire, h.message_id, &h.terminal, h.serial, h.package, &body).is_some() {
        let again = Frame::parse(&wire[1..wire.len() - 1]).expect("an encoded frame parses");
        assert_eq!((again.header.message_id, again.header.serial, again.header.terminal), (h.message_id, h.serial, h.terminal));
        assert_eq!(again.body.as_ref(), body.as_slice());
    }
});
