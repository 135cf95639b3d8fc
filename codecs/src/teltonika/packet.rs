//! An owned AVL packet: the records and IO elements of a validated data field, copied out of
//! the wire bytes so they outlive the read buffer.
//!
//! Owning a packet costs one allocation however many records and IO elements it has: one
//! vector of 16-byte words holds every record's head ([`HEAD_WORDS`] each, in record order)
//! and then the IO elements of all records together (one word each, in wire order), sized from
//! the counts validation already added up. A second vector, of bytes, holds the
//! variable-length and 16-byte values; only packets that carry such values allocate it.
//! Records and IO elements are read back through the same [`IoElement`] and [`GpsElement`]
//! types the zero-copy views use.
//!
//! Why words and not a vector of heads beside a vector of IO elements: the second malloc and
//! free cost 5–10 % of the owned copy (measured), and safe Rust (the crate forbids `unsafe`)
//! can only put one type in one block, so heads are packed into words.

use super::avl::{AvlData, AvlRecord, GpsElement, IoElement, IoValue, RecordView};

/// One slot of the packet's store: an IO element, or a third of a record head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Word(u64, u64);

/// Words per record head.
const HEAD_WORDS: usize = 3;

// What an owned IO value is, in the top byte of an IO word's second half.
const U8: u64 = 0;
const U16: u64 = 1;
const U32: u64 = 2;
const U64: u64 = 3;
/// The first half holds the start in the byte store (high 32 bits) and the length (low 32).
const BYTES: u64 = 4;

/// A record head, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    timestamp_ms: u64,
    priority: u8,
    gps: GpsElement,
    event_io_id: u16,
    generation_type: Option<u8>,
    declared_io_count: u16,
    /// Where this record's IO elements end, counted from the first IO word.
    io_end: u32,
}

impl Head {
    fn of(r: &RecordView<'_>, io_end: u32) -> Head {
        Head {
            timestamp_ms: r.timestamp_ms,
            priority: r.priority,
            gps: r.gps,
            event_io_id: r.event_io_id,
            generation_type: r.generation_type,
            declared_io_count: r.declared_io_count,
            io_end,
        }
    }

    fn pack(&self) -> [Word; HEAD_WORDS] {
        let g = &self.gps;
        let position = u64::from(g.longitude_e7 as u32) | u64::from(g.latitude_e7 as u32) << 32;
        let motion = u64::from(g.altitude_m as u16)
            | u64::from(g.angle_deg) << 16
            | u64::from(g.speed_kmh) << 32
            | u64::from(g.satellites) << 48
            | u64::from(self.priority) << 56;
        let generation = self.generation_type.map_or(0, |t| 0x100 | u64::from(t));
        let ids = u64::from(self.event_io_id) | u64::from(self.declared_io_count) << 16 | generation << 32;
        [Word(self.timestamp_ms, position), Word(motion, ids), Word(u64::from(self.io_end), 0)]
    }

    fn unpack(w: &[Word]) -> Head {
        let (motion, ids) = (w[1].0, w[1].1);
        Head {
            timestamp_ms: w[0].0,
            gps: GpsElement {
                longitude_e7: w[0].1 as u32 as i32,
                latitude_e7: (w[0].1 >> 32) as u32 as i32,
                altitude_m: motion as u16 as i16,
                angle_deg: (motion >> 16) as u16,
                speed_kmh: (motion >> 32) as u16,
                satellites: (motion >> 48) as u8,
            },
            priority: (motion >> 56) as u8,
            event_io_id: ids as u16,
            declared_io_count: (ids >> 16) as u16,
            generation_type: ((ids >> 32) & 0x100 != 0).then_some((ids >> 32) as u8),
            io_end: w[2].0 as u32,
        }
    }
}

/// What `from_data` fills: the packet's two vectors and where the next record's head goes.
struct Store {
    words: Vec<Word>,
    bytes: Vec<u8>,
    next_head: usize,
}

/// An owned, validated AVL packet's data: records and IO elements, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlPacket {
    codec: u8,
    count: usize,
    words: Vec<Word>,
    bytes: Vec<u8>,
}

impl AvlPacket {
    /// Copies a validated data field.
    pub fn from_data(avl: &AvlData<'_>) -> Self {
        let count = usize::from(avl.count);
        let heads = count * HEAD_WORDS;
        let mut store =
            Store { words: Vec::with_capacity(heads + avl.io_elements() as usize), bytes: Vec::new(), next_head: 0 };
        // The heads go first, in slots set aside now: the walk reports a record's IO elements
        // before the record, and they are pushed after the heads as they come.
        store.words.resize(heads, Word::default());
        avl.for_each_record(
            &mut store,
            |s, r| {
                let at = s.next_head;
                let io_end = (s.words.len() - heads) as u32;
                s.words[at..at + HEAD_WORDS].copy_from_slice(&Head::of(&r, io_end).pack());
                s.next_head = at + HEAD_WORDS;
            },
            |s, e| {
                let (kind, value) = match e.value {
                    IoValue::U8(v) => (U8, u64::from(v)),
                    IoValue::U16(v) => (U16, u64::from(v)),
                    IoValue::U32(v) => (U32, u64::from(v)),
                    IoValue::U64(v) => (U64, v),
                    IoValue::Bytes(b) => {
                        // Validated data fields are far below 4 GiB, so both halves fit.
                        let at = ((s.bytes.len() as u64) << 32) | b.len() as u64;
                        s.bytes.extend_from_slice(b);
                        (BYTES, at)
                    }
                };
                s.words.push(Word(value, u64::from(e.id) | kind << 56));
            },
        );
        let Store { words, bytes, .. } = store;
        AvlPacket { codec: avl.codec, count, words, bytes }
    }

    /// The codec the packet came in (8, 8E or 16).
    pub fn codec(&self) -> u8 {
        self.codec
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = PacketRecord<'_>> + '_ {
        let (heads, io) = self.words.split_at(self.count * HEAD_WORDS);
        let bytes = &self.bytes;
        let mut start = 0;
        heads.chunks_exact(HEAD_WORDS).map(move |w| {
            let head = Head::unpack(w);
            // `from_data` wrote ascending ends within the IO words.
            let io = io.get(start..head.io_end as usize).unwrap_or_default();
            start = head.io_end as usize;
            PacketRecord { head, io, bytes }
        })
    }
}

/// One record of an [`AvlPacket`].
#[derive(Debug, Clone, Copy)]
pub struct PacketRecord<'a> {
    head: Head,
    io: &'a [Word],
    bytes: &'a [u8],
}

impl<'a> PacketRecord<'a> {
    /// Milliseconds since the Unix epoch, UTC.
    pub fn timestamp_ms(&self) -> u64 {
        self.head.timestamp_ms
    }
    /// 0 low, 1 high, 2 panic.
    pub fn priority(&self) -> u8 {
        self.head.priority
    }
    pub fn gps(&self) -> GpsElement {
        self.head.gps
    }
    /// The IO that triggered the record; 0 for a periodic record.
    pub fn event_io_id(&self) -> u16 {
        self.head.event_io_id
    }
    /// Codec 16 only.
    pub fn generation_type(&self) -> Option<u8> {
        self.head.generation_type
    }
    /// The total IO count the device declared.
    pub fn declared_io_count(&self) -> u16 {
        self.head.declared_io_count
    }

    /// The IO elements, in wire order.
    pub fn io(&self) -> impl ExactSizeIterator<Item = IoElement<'a>> + 'a {
        let bytes = self.bytes;
        self.io.iter().map(move |&Word(value, tag)| {
            let value = match tag >> 56 {
                U8 => IoValue::U8(value as u8),
                U16 => IoValue::U16(value as u16),
                U32 => IoValue::U32(value as u32),
                U64 => IoValue::U64(value),
                // BYTES: the only other tag `from_data` writes.
                _ => {
                    let (at, len) = ((value >> 32) as usize, (value & 0xFFFF_FFFF) as usize);
                    IoValue::Bytes(&bytes[at..at + len])
                }
            };
            IoElement { id: tag as u16, value }
        })
    }

    /// The record in the encoder's form (IO grouped by width).
    pub fn to_record(&self) -> AvlRecord {
        let mut r = AvlRecord {
            timestamp_ms: self.timestamp_ms(),
            priority: self.priority(),
            gps: self.gps(),
            event_io_id: self.event_io_id(),
            generation_type: self.generation_type(),
            declared_io_count: Some(self.declared_io_count()),
            ..AvlRecord::default()
        };
        for e in self.io() {
            r.push_io(e);
        }
        r
    }
}
