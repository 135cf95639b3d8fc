//! Round-trip oracle: any data field `AvlData::parse` accepts re-encodes to the same bytes
//! (the format has one encoding per content), and the copy parses to the same records. The
//! owned packet holds exactly what the views show.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::{encode_data, AvlData, AvlPacket, AvlRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(avl) = AvlData::parse(data) else { return };
    let owned = AvlPacket::from_data(&avl);
    assert_eq!(owned.len(), usize::from(avl.count));
    for (o, v) in owned.records().zip(avl.records()) {
        assert_eq!(o.gps(), v.gps);
        assert_eq!(o.timestamp_ms(), v.timestamp_ms);
        assert!(o.io().eq(v.io()), "the owned packet's IO differs from the view's");
    }
    if avl.has_sixteen_byte_group() {
        // Traccar's non-standard group is read, never written.
        return;
    }
    let records: Vec<AvlRecord> = avl.records().map(|v| AvlRecord::from_view(&v)).collect();
    assert_eq!(records.len(), usize::from(avl.count));
    let mut again = Vec::new();
    encode_data(avl.codec, &records, &mut again).expect("parsed records re-encode");
    assert_eq!(again, data);
});
