//! An owned AVL packet: the records and IO elements of a validated data field, copied out of
//! the wire bytes so they outlive the read buffer.
//!
//! Owning a packet costs a fixed number of allocations however many records and IO elements
//! it has: one vector of record heads, one of IO elements for all records together (sized
//! from the counts validation already added up), and one of bytes for the variable-length and
//! 16-byte values, which only packets that carry such values need. Records and IO elements are
//! read back through the same [`IoElement`] and [`GpsElement`] types the zero-copy views use.

use super::avl::{AvlData, AvlRecord, GpsElement, IoElement, IoValue};

/// What an owned IO value is: a fixed width, or a byte range in the packet's byte store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stored {
    U8,
    U16,
    U32,
    U64,
    /// `value` holds the start in the byte store (high 32 bits) and the length (low 32).
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredIo {
    value: u64,
    id: u16,
    kind: Stored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    timestamp_ms: u64,
    priority: u8,
    gps: GpsElement,
    event_io_id: u16,
    generation_type: Option<u8>,
    declared_io_count: u16,
    /// Where this record's IO elements end in the packet's IO vector.
    io_end: u32,
}

/// An owned, validated AVL packet's data: records and IO elements, in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvlPacket {
    codec: u8,
    heads: Vec<Head>,
    io: Vec<StoredIo>,
    bytes: Vec<u8>,
}

impl AvlPacket {
    /// Copies a validated data field.
    pub fn from_data(avl: &AvlData<'_>) -> Self {
        let mut packet = AvlPacket {
            codec: avl.codec,
            heads: Vec::with_capacity(usize::from(avl.count)),
            io: Vec::with_capacity(avl.io_elements() as usize),
            bytes: Vec::new(),
        };
        let (heads, io, bytes) = (&mut packet.heads, &mut packet.io, &mut packet.bytes);
        let mut io_end = 0;
        avl.for_each_record(
            |r| {
                io_end += r.io_elements();
                heads.push(Head {
                    timestamp_ms: r.timestamp_ms,
                    priority: r.priority,
                    gps: r.gps,
                    event_io_id: r.event_io_id,
                    generation_type: r.generation_type,
                    declared_io_count: r.declared_io_count,
                    io_end,
                })
            },
            |e| {
                let (kind, value) = match e.value {
                    IoValue::U8(v) => (Stored::U8, u64::from(v)),
                    IoValue::U16(v) => (Stored::U16, u64::from(v)),
                    IoValue::U32(v) => (Stored::U32, u64::from(v)),
                    IoValue::U64(v) => (Stored::U64, v),
                    IoValue::Bytes(b) => {
                        // Validated data fields are far below 4 GiB, so both halves fit.
                        let at = ((bytes.len() as u64) << 32) | b.len() as u64;
                        bytes.extend_from_slice(b);
                        (Stored::Bytes, at)
                    }
                };
                io.push(StoredIo { value, id: e.id, kind });
            },
        );
        packet
    }

    /// The codec the packet came in (8, 8E or 16).
    pub fn codec(&self) -> u8 {
        self.codec
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// The records, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = PacketRecord<'_>> + '_ {
        self.heads.iter().enumerate().map(move |(i, head)| {
            let start = if i == 0 { 0 } else { self.heads[i - 1].io_end as usize };
            PacketRecord { head, io: &self.io[start..head.io_end as usize], bytes: &self.bytes }
        })
    }
}

/// One record of an [`AvlPacket`].
#[derive(Debug, Clone, Copy)]
pub struct PacketRecord<'a> {
    head: &'a Head,
    io: &'a [StoredIo],
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
        self.io.iter().map(move |s| {
            let value = match s.kind {
                Stored::U8 => IoValue::U8(s.value as u8),
                Stored::U16 => IoValue::U16(s.value as u16),
                Stored::U32 => IoValue::U32(s.value as u32),
                Stored::U64 => IoValue::U64(s.value),
                Stored::Bytes => {
                    let (at, len) = ((s.value >> 32) as usize, (s.value & 0xFFFF_FFFF) as usize);
                    IoValue::Bytes(&bytes[at..at + len])
                }
            };
            IoElement { id: s.id, value }
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
