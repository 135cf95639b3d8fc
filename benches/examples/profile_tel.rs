use trackgate_codecs::framing::{Framer, Framing};
use trackgate_codecs::teltonika::{AvlData, IoValue, TcpFramer, HEADER_LEN};
fn main() {
    let (buf, _) = trackgate_benches::teltonika_packets(0x08, 10_000, 7);
    let mut acc = 0u64;
    for _ in 0..3 {
        let mut framer = TcpFramer::default();
        let mut pos = 0;
        while let Framing::Frame { len, consumed } = framer.next_frame(&buf[pos..]) {
            if let Ok(avl) = AvlData::parse(&buf[pos + HEADER_LEN..pos + len - 4]) {
                for r in avl.records() {
                    acc = acc.wrapping_add(r.timestamp_ms + r.gps.latitude().to_bits());
                    for io in r.io() {
                        acc = acc.wrapping_add(
                            u64::from(io.id)
                                + match io.value {
                                    IoValue::U8(v) => v.into(),
                                    IoValue::U16(v) => v.into(),
                                    IoValue::U32(v) => v.into(),
                                    IoValue::U64(v) => v,
                                    IoValue::Bytes(b) => b.len() as u64,
                                },
                        );
                    }
                }
            }
            pos += consumed;
        }
    }
    println!("{acc}");
}
