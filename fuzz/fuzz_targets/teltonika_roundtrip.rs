//! Round-trip oracle: any data field `AvlData::parse` accepts re-encodes to the same bytes
//! (the format has one encoding per content), and the copy parses to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trackgate_codecs::teltonika::{encode_data, AvlData, AvlRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(avl) = AvlData::parse(data) else { return };
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
