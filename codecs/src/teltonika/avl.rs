//! AVL data (docs/protocols/teltonika.md §2–§4): the data field of Codec 8, 8 Extended and 16 packets, read
//! as zero-copy views. [`AvlData::parse`] walks every record once to validate it; after that
//! [`AvlData::records`] and [`RecordView::io`] iterate without allocating or failing.
//!
//! ```text
//!  data field:  codec | N1 | record × N1 | N2
//!  record:      timestamp u64 ms | priority u8 | GPS element (15) | IO element
//!  GPS element: lon i32 ×1e7 | lat i32 ×1e7 | altitude i16 | angle u16 | satellites u8 | speed u16
//!  IO, codec 8:   event u8  | total u8  | N1 u8 {id u8, v u8} | N2 {id, u16} | N4 {id, u32} | N8 {id, u64}
//!  IO, codec 8E:  event u16 | total u16 | same groups with u16 counts and ids | NX u16 {id u16, len u16, bytes}
//!  IO, codec 16:  event u16 | generation u8 | total u8 | groups with u8 counts and u16 ids
//! ```

pub const CODEC_8: u8 = 0x08;
pub const CODEC_8E: u8 = 0x8E;
pub const CODEC_16: u8 = 0x10;

/// How the IO element of a codec is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoLayout {
    /// Width of IO ids and of the event id: 1 or 2 bytes.
    id_width: u8,
    /// Width of the group counts (and the total): 1 or 2 bytes.
    count_width: u8,
    /// Codec 16's generation-type byte after the event id.
    generation_type: bool,
    /// Codec 8E's variable-length NX group.
    variable_group: bool,
    /// A 16-byte group after N8 (Traccar's "extended" devices; not in the published codecs).
    sixteen_byte_group: bool,
}

impl IoLayout {
    pub fn for_codec(codec: u8) -> Option<Self> {
        let base = IoLayout {
            id_width: 1,
            count_width: 1,
            generation_type: false,
            variable_group: false,
            sixteen_byte_group: false,
        };
        match codec {
            CODEC_8 => Some(base),
            CODEC_8E => Some(IoLayout { id_width: 2, count_width: 2, variable_group: true, ..base }),
            CODEC_16 => Some(IoLayout { id_width: 2, generation_type: true, ..base }),
            _ => None,
        }
    }
}

/// The GPS element of a record, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpsElement {
    /// Degrees × 10^7, two's complement.
    pub longitude_e7: i32,
    pub latitude_e7: i32,
    pub altitude_m: i16,
    /// Degrees from north, clockwise.
    pub angle_deg: u16,
    pub satellites: u8,
    pub speed_kmh: u16,
}

impl GpsElement {
    pub fn latitude(&self) -> f64 {
        f64::from(self.latitude_e7) / 1e7
    }
    pub fn longitude(&self) -> f64 {
        f64::from(self.longitude_e7) / 1e7
    }
    /// An all-zero element with no satellites: the device had no fix (docs/protocols/teltonika.md §8).
    pub fn is_no_fix_placeholder(&self) -> bool {
        self.satellites == 0 && self.longitude_e7 == 0 && self.latitude_e7 == 0
    }

    /// The element's 15 bytes, as sent.
    #[inline(always)]
    fn read(g: &[u8; 15]) -> Self {
        GpsElement {
            longitude_e7: i32::from_be_bytes([g[0], g[1], g[2], g[3]]),
            latitude_e7: i32::from_be_bytes([g[4], g[5], g[6], g[7]]),
            altitude_m: i16::from_be_bytes([g[8], g[9]]),
            angle_deg: u16::from_be_bytes([g[10], g[11]]),
            satellites: g[12],
            speed_kmh: u16::from_be_bytes([g[13], g[14]]),
        }
    }

    /// What [`GpsElement::read`] reads.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.longitude_e7.to_be_bytes());
        out.extend_from_slice(&self.latitude_e7.to_be_bytes());
        out.extend_from_slice(&self.altitude_m.to_be_bytes());
        out.extend_from_slice(&self.angle_deg.to_be_bytes());
        out.push(self.satellites);
        out.extend_from_slice(&self.speed_kmh.to_be_bytes());
    }
}

/// One IO value: its width comes from the group it sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoValue<'a> {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// A 16-byte value or a variable-length (NX) value.
    Bytes(&'a [u8]),
}

impl IoValue<'_> {
    /// The value as an unsigned integer, for the fixed-width groups.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            IoValue::U8(v) => Some(v.into()),
            IoValue::U16(v) => Some(v.into()),
            IoValue::U32(v) => Some(v.into()),
            IoValue::U64(v) => Some(v),
            IoValue::Bytes(_) => None,
        }
    }
}

/// One IO element: id and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoElement<'a> {
    pub id: u16,
    pub value: IoValue<'a>,
}

/// One AVL record, borrowing its IO bytes from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Milliseconds since the Unix epoch, UTC.
    pub timestamp_ms: u64,
    /// 0 low, 1 high, 2 panic.
    pub priority: u8,
    pub gps: GpsElement,
    /// The IO that triggered the record; 0 for a periodic record.
    pub event_io_id: u16,
    /// Codec 16 only.
    pub generation_type: Option<u8>,
    /// The total IO count the device declared.
    pub declared_io_count: u16,
    layout: IoLayout,
    /// The IO groups, from the first group count to the end of the record.
    io: &'a [u8],
    /// The IO elements actually sent (the groups' counts added up).
    io_elements: u32,
}

impl<'a> RecordView<'a> {
    /// Every IO element, in wire order. Never fails: the packet was validated.
    pub fn io(&self) -> IoIter<'a> {
        let fixed_groups = if self.layout.sixteen_byte_group { 5 } else { 4 };
        IoIter {
            rest: self.io,
            id_width: self.layout.id_width,
            count_width: self.layout.count_width,
            fixed_groups,
            groups: fixed_groups + u8::from(self.layout.variable_group),
            next_group: 0,
            group: 0,
            left: 0,
        }
    }
}

/// The value widths of the fixed groups, in wire order.
const FIXED_WIDTHS: [usize; 5] = [1, 2, 4, 8, 16];

impl<'a> RecordView<'a> {
    /// The IO elements the record holds (the groups' counts added up, not the declared total).
    pub fn io_elements(&self) -> u32 {
        self.io_elements
    }

    /// Calls `f` with every IO element, in wire order: the same elements as [`RecordView::io`],
    /// faster, because each group is walked as a run of fixed-size elements.
    #[inline]
    pub fn for_each_io(&self, mut f: impl FnMut(IoElement<'a>)) {
        let l = self.layout;
        let fixed = if l.sixteen_byte_group { 5 } else { 4 };
        // Validated by `AvlData::parse`, so the walks below always complete.
        let _ = match (l.id_width, l.count_width) {
            (1, 1) => walk_io::<1, 1>(self.io, fixed, l.variable_group, &mut f),
            (2, 1) => walk_io::<2, 1>(self.io, fixed, l.variable_group, &mut f),
            _ => walk_io::<2, 2>(self.io, fixed, l.variable_group, &mut f),
        };
    }
}

#[inline]
fn be_small<const W: usize>(b: &[u8]) -> u16 {
    match b {
        [x] if W == 1 => u16::from(*x),
        [x, y, ..] => u16::from_be_bytes([*x, *y]),
        [x] => u16::from(*x),
        [] => 0,
    }
}

/// Walks IO groups whose ids are `ID` bytes and counts `CNT` bytes; returns what follows them.
#[inline]
fn walk_io<'a, const ID: usize, const CNT: usize>(
    mut b: &'a [u8],
    fixed_groups: usize,
    variable: bool,
    f: &mut impl FnMut(IoElement<'a>),
) -> Option<&'a [u8]> {
    walk_group::<ID, CNT, 1>(&mut b, f)?;
    walk_group::<ID, CNT, 2>(&mut b, f)?;
    walk_group::<ID, CNT, 4>(&mut b, f)?;
    walk_group::<ID, CNT, 8>(&mut b, f)?;
    if fixed_groups == 5 {
        walk_group::<ID, CNT, 16>(&mut b, f)?;
    }
    if variable {
        let n = be_small::<CNT>(b.get(..CNT)?);
        b = &b[CNT..];
        for _ in 0..n {
            let id = be_small::<ID>(b.get(..ID)?);
            let len = usize::from(be_small::<2>(b.get(ID..ID + 2)?));
            let value = b.get(ID + 2..ID + 2 + len)?;
            b = &b[ID + 2 + len..];
            f(IoElement { id, value: IoValue::Bytes(value) });
        }
    }
    Some(b)
}

/// Walks one fixed-width group (values of `W` bytes) at the front of `b` and moves `b` past
/// it. With the widths constant, each element is a fixed-size load: no per-element dispatch.
#[inline(always)]
fn walk_group<'a, const ID: usize, const CNT: usize, const W: usize>(
    b: &mut &'a [u8],
    f: &mut impl FnMut(IoElement<'a>),
) -> Option<()> {
    let n = usize::from(be_small::<CNT>(b.get(..CNT)?));
    let end = CNT + n * (ID + W);
    let run = b.get(CNT..end)?;
    *b = &b[end..];
    for e in run.chunks_exact(ID + W) {
        let (id, v) = e.split_at(ID);
        let id = be_small::<ID>(id);
        let value = if W > 8 {
            IoValue::Bytes(v)
        } else {
            let x = v.iter().fold(0u64, |x, &byte| (x << 8) | u64::from(byte));
            match W {
                1 => IoValue::U8(x as u8),
                2 => IoValue::U16(x as u16),
                4 => IoValue::U32(x as u32),
                _ => IoValue::U64(x),
            }
        };
        f(IoElement { id, value });
    }
    Some(())
}

/// Iterates the IO elements of a validated record.
#[derive(Debug, Clone)]
pub struct IoIter<'a> {
    rest: &'a [u8],
    id_width: u8,
    count_width: u8,
    /// 4, or 5 with the 16-byte group.
    fixed_groups: u8,
    /// All groups, the variable one included.
    groups: u8,
    /// The group whose count is read next.
    next_group: u8,
    /// The group being read (index into the fixed widths; past them, the variable group).
    group: u8,
    /// Elements left in that group.
    left: u16,
}

impl<'a> IoIter<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            self.rest = &[];
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    /// A 1- or 2-byte big-endian id or count.
    #[inline]
    fn small(&mut self, width: u8) -> Option<u16> {
        match (width, self.rest) {
            (1, [a, tail @ ..]) => {
                self.rest = tail;
                Some(u16::from(*a))
            }
            (2, [a, b, tail @ ..]) => {
                self.rest = tail;
                Some(u16::from_be_bytes([*a, *b]))
            }
            _ => None,
        }
    }
}

impl<'a> Iterator for IoIter<'a> {
    type Item = IoElement<'a>;

    fn next(&mut self) -> Option<IoElement<'a>> {
        while self.left == 0 {
            if self.next_group == self.groups {
                return None;
            }
            self.left = self.small(self.count_width)?;
            self.group = self.next_group;
            self.next_group += 1;
        }
        self.left -= 1;
        let id = self.small(self.id_width)?;
        let value = match FIXED_WIDTHS.get(usize::from(self.group)).filter(|_| self.group < self.fixed_groups) {
            Some(1) => IoValue::U8(self.take(1)?[0]),
            Some(2) => {
                let b = self.take(2)?;
                IoValue::U16(u16::from_be_bytes([b[0], b[1]]))
            }
            Some(4) => {
                let b = self.take(4)?;
                IoValue::U32(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            Some(8) => {
                let b = self.take(8)?;
                IoValue::U64(u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            Some(_) => IoValue::Bytes(self.take(16)?),
            None => {
                let len = self.small(2)?;
                IoValue::Bytes(self.take(usize::from(len))?)
            }
        };
        Some(IoElement { id, value })
    }
}

/// Reads the record at the front of `b`, checking every length against what is there;
/// returns it and the bytes it takes.
#[inline]
fn read_record(b: &[u8], layout: IoLayout) -> Option<(RecordView<'_>, usize)> {
    // One copy of the walk per id and count width: the widths become constants, and the walk
    // is offset arithmetic with one bounds check per read (it runs for every record twice,
    // once to validate and once to view).
    match (layout.id_width, layout.count_width) {
        (1, 1) => read_record_as::<1, 1>(b, layout),
        (2, 1) => read_record_as::<2, 1>(b, layout),
        _ => read_record_as::<2, 2>(b, layout),
    }
}

#[inline(always)]
fn read_record_as<const ID: usize, const CNT: usize>(b: &[u8], layout: IoLayout) -> Option<(RecordView<'_>, usize)> {
    let (mut view, io_start) = read_head::<ID, CNT>(b, layout)?;
    let (end, io_elements) = io_end::<ID, CNT>(b, io_start, layout)?;
    view.io = b.get(io_start..end)?;
    view.io_elements = io_elements;
    Some((view, end))
}

/// Reads a record's fields up to its IO groups; returns the record with no IO yet and where
/// its IO groups start.
#[inline(always)]
fn read_head<const ID: usize, const CNT: usize>(b: &[u8], layout: IoLayout) -> Option<(RecordView<'_>, usize)> {
    // Timestamp (8), priority (1) and the GPS element (15), read as one array.
    let h: &[u8; 24] = b.get(..24)?.try_into().ok()?;
    let timestamp_ms = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let priority = h[8];
    let gps = GpsElement::read(h[9..].try_into().ok()?);
    let mut p = 24;
    let event_io_id = be_small::<ID>(b.get(p..p + ID)?);
    p += ID;
    let generation_type = if layout.generation_type {
        let g = *b.get(p)?;
        p += 1;
        Some(g)
    } else {
        None
    };
    let declared_io_count = be_small::<CNT>(b.get(p..p + CNT)?);
    p += CNT;
    let view = RecordView {
        timestamp_ms,
        priority,
        gps,
        event_io_id,
        generation_type,
        declared_io_count,
        layout,
        io: &[],
        io_elements: 0,
    };
    Some((view, p))
}

/// Writes what [`read_head`] reads: a record's fields up to its IO groups (checked to fit
/// by [`AvlRecord::check`]).
fn write_head(r: &AvlRecord, layout: IoLayout, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.timestamp_ms.to_be_bytes());
    out.push(r.priority);
    r.gps.write(out);
    put_small(out, r.event_io_id, layout.id_width);
    if let Some(g) = r.generation_type {
        out.push(g);
    }
    let total = r.declared_io_count.unwrap_or(r.io_count() as u16);
    put_small(out, total, layout.count_width);
}

/// A count or id of `width` bytes (1 or 2), as [`be_small`] reads it.
fn put_small(out: &mut Vec<u8>, v: u16, width: u8) {
    if width == 2 {
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(v as u8);
    }
}

/// Where the IO groups that start at `b[p..]` end, and how many elements they hold.
#[inline(always)]
fn io_end<const ID: usize, const CNT: usize>(b: &[u8], mut p: usize, layout: IoLayout) -> Option<(usize, u32)> {
    let mut io_elements = 0u32;
    let fixed_groups = if layout.sixteen_byte_group { 5 } else { 4 };
    for &width in &FIXED_WIDTHS[..fixed_groups] {
        // A count is at most 65,535 elements of at most 18 bytes: no overflow, and a count
        // past the end fails the next read or the caller's final check.
        let n = usize::from(be_small::<CNT>(b.get(p..p + CNT)?));
        p += CNT + n * (ID + width);
        io_elements += n as u32;
    }
    if layout.variable_group {
        let n = be_small::<CNT>(b.get(p..p + CNT)?);
        p += CNT;
        for _ in 0..n {
            let len = usize::from(be_small::<2>(b.get(p + ID..p + ID + 2)?));
            p += ID + 2 + len;
        }
        io_elements += u32::from(n);
    }
    Some((p, io_elements))
}

/// Writes the IO groups [`io_end`] walks (counts and ids checked by [`AvlRecord::check`]).
fn write_io(r: &AvlRecord, layout: IoLayout, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_group(out, r.io_u8.iter().map(|&(id, v)| (id, [v])), layout);
    write_group(out, r.io_u16.iter().map(|&(id, v)| (id, v.to_be_bytes())), layout);
    write_group(out, r.io_u32.iter().map(|&(id, v)| (id, v.to_be_bytes())), layout);
    write_group(out, r.io_u64.iter().map(|&(id, v)| (id, v.to_be_bytes())), layout);
    if layout.variable_group {
        put_small(out, r.io_var.len() as u16, layout.count_width);
        for (id, v) in &r.io_var {
            let len = u16::try_from(v.len()).map_err(|_| EncodeError("an NX value over 65535 bytes".into()))?;
            put_small(out, *id, layout.id_width);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(v);
        }
    }
    Ok(())
}

/// One fixed-width group: its count, then each id and its `W`-byte value.
fn write_group<const W: usize>(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = (u16, [u8; W])>,
    layout: IoLayout,
) {
    put_small(out, items.len() as u16, layout.count_width);
    for (id, value) in items {
        put_small(out, id, layout.id_width);
        out.extend_from_slice(&value);
    }
}

/// The IO elements of `n` records if they fill `body` exactly: validation, which only needs
/// where each record ends, so it decodes nothing else.
fn records_fit<const ID: usize, const CNT: usize>(body: &[u8], n: u8, layout: IoLayout) -> Option<u32> {
    let head = 24 + ID + usize::from(layout.generation_type) + CNT;
    let (mut p, mut io_elements) = (0, 0);
    for _ in 0..n {
        let (end, count) = io_end::<ID, CNT>(body, p + head, layout)?;
        p = end;
        io_elements += count;
    }
    (p == body.len()).then_some(io_elements)
}

/// Why a data field is not valid AVL data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AvlError {
    UnknownCodec(u8),
    CountMismatch {
        n1: u8,
        n2: u8,
    },
    /// The records do not end exactly at N2.
    Layout,
}

impl std::fmt::Display for AvlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AvlError::UnknownCodec(c) => write!(f, "codec 0x{c:02x} is not an AVL data codec"),
            AvlError::CountMismatch { n1, n2 } => write!(f, "record counts disagree: N1 = {n1}, N2 = {n2}"),
            AvlError::Layout => f.write_str("the records do not fill the data field exactly"),
        }
    }
}

/// A validated AVL data field (codec id … N2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvlData<'a> {
    pub codec: u8,
    pub count: u8,
    layout: IoLayout,
    records: &'a [u8],
    /// IO elements in all records together.
    io_elements: u32,
}

impl<'a> AvlData<'a> {
    /// Validates `data` (codec id … N2): known codec, N1 = N2, and N1 records that end
    /// exactly at N2. Codec 8 data that only fits with Traccar's 16-byte IO group is read
    /// with it.
    // Inline (the record walks stay out of line): returned through memory, the layout's
    // one-byte fields were written one by one and read back two or four at a time, loads
    // the CPU cannot forward from those stores and waits on.
    #[inline(always)]
    pub fn parse(data: &'a [u8]) -> Result<Self, AvlError> {
        let [codec, n1, ref body @ .., n2] = *data else { return Err(AvlError::Layout) };
        let layout = IoLayout::for_codec(codec).ok_or(AvlError::UnknownCodec(codec))?;
        if n1 != n2 {
            return Err(AvlError::CountMismatch { n1, n2 });
        }
        // The IO elements of all records if they fill `body` exactly in `layout`.
        let fits = |layout: IoLayout| match (layout.id_width, layout.count_width) {
            (1, 1) => records_fit::<1, 1>(body, n1, layout),
            (2, 1) => records_fit::<2, 1>(body, n1, layout),
            _ => records_fit::<2, 2>(body, n1, layout),
        };
        let sixteen = IoLayout { sixteen_byte_group: true, ..layout };
        let (layout, io_elements) = match fits(layout) {
            Some(n) => (layout, n),
            None => (sixteen, fits(sixteen).ok_or(AvlError::Layout)?),
        };
        Ok(AvlData { codec, count: n1, layout, records: body, io_elements })
    }
}

/// Writes the data field (codec id … N2) of `records` in `codec`: what [`AvlData::parse`]
/// reads.
pub fn encode_data(codec: u8, records: &[AvlRecord], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let layout = IoLayout::for_codec(codec).ok_or_else(|| EncodeError(format!("codec 0x{codec:02x}")))?;
    let n = u8::try_from(records.len()).map_err(|_| EncodeError("more than 255 records".into()))?;
    out.push(codec);
    out.push(n);
    for r in records {
        r.check(codec, layout)?;
        write_head(r, layout, out);
        write_io(r, layout, out)?;
    }
    out.push(n);
    Ok(())
}

impl<'a> AvlData<'a> {
    /// IO elements in all records together.
    pub fn io_elements(&self) -> u32 {
        self.io_elements
    }

    /// Calls `io` with each IO element of a record and then `record` with the record, for
    /// every record in order: one walk, for copies that want everything (the IO walk is
    /// what finds where a record ends, so nothing is walked twice). Both callbacks get
    /// `state`, so both can write to the same store.
    #[inline]
    pub fn for_each_record<S>(
        &self,
        state: &mut S,
        mut record: impl FnMut(&mut S, RecordView<'a>),
        mut io: impl FnMut(&mut S, IoElement<'a>),
    ) {
        // Validated by `parse`, so the walk always completes.
        let _ = match (self.layout.id_width, self.layout.count_width) {
            (1, 1) => self.walk_records::<1, 1, S>(state, &mut record, &mut io),
            (2, 1) => self.walk_records::<2, 1, S>(state, &mut record, &mut io),
            _ => self.walk_records::<2, 2, S>(state, &mut record, &mut io),
        };
    }

    #[inline(always)]
    fn walk_records<const ID: usize, const CNT: usize, S>(
        &self,
        state: &mut S,
        record: &mut impl FnMut(&mut S, RecordView<'a>),
        io: &mut impl FnMut(&mut S, IoElement<'a>),
    ) -> Option<()> {
        let l = self.layout;
        let fixed = if l.sixteen_byte_group { 5 } else { 4 };
        let mut b = self.records;
        for _ in 0..self.count {
            let (mut view, io_start) = read_head::<ID, CNT>(b, l)?;
            let mut elements = 0u32;
            let rest = walk_io::<ID, CNT>(b.get(io_start..)?, fixed, l.variable_group, &mut |e| {
                elements += 1;
                io(state, e)
            })?;
            let end = b.len() - rest.len();
            view.io = &b[io_start..end];
            view.io_elements = elements;
            record(state, view);
            b = &b[end..];
        }
        Some(())
    }

    /// The records, in order. Never fails: `parse` validated them. To read every record's
    /// IO as well, [`AvlData::for_each_record`] is faster: this iterator walks each record's
    /// IO groups to find where the next record starts, and [`RecordView::for_each_io`]
    /// walks them again.
    pub fn records(&self) -> impl Iterator<Item = RecordView<'a>> + 'a {
        let layout = self.layout;
        let mut rest = self.records;
        (0..self.count).map_while(move |_| {
            let (record, used) = read_record(rest, layout)?;
            rest = &rest[used..];
            Some(record)
        })
    }

    /// Whether the records carry Traccar's 16-byte IO group.
    pub fn has_sixteen_byte_group(&self) -> bool {
        self.layout.sixteen_byte_group
    }
}

/// An owned AVL record for encoding (and for tests that build packets).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AvlRecord {
    pub timestamp_ms: u64,
    pub priority: u8,
    pub gps: GpsElement,
    pub event_io_id: u16,
    pub generation_type: Option<u8>,
    /// The total IO count to write; `None` writes the number of elements. Devices are seen
    /// declaring a total that disagrees with what they send, and a copy keeps what was sent.
    pub declared_io_count: Option<u16>,
    /// Fixed-width values by group: (id, value) with widths 1, 2, 4, 8.
    pub io_u8: Vec<(u16, u8)>,
    pub io_u16: Vec<(u16, u16)>,
    pub io_u32: Vec<(u16, u32)>,
    pub io_u64: Vec<(u16, u64)>,
    /// Codec 8E variable-length values.
    pub io_var: Vec<(u16, Vec<u8>)>,
}

impl AvlRecord {
    /// The owned copy of a view.
    pub fn from_view(v: &RecordView<'_>) -> Self {
        let mut r = AvlRecord {
            timestamp_ms: v.timestamp_ms,
            priority: v.priority,
            gps: v.gps,
            event_io_id: v.event_io_id,
            generation_type: v.generation_type,
            declared_io_count: Some(v.declared_io_count),
            ..AvlRecord::default()
        };
        v.for_each_io(|e| r.push_io(e));
        r
    }

    /// Adds an IO element to the group of its width.
    pub fn push_io(&mut self, e: IoElement<'_>) {
        match e.value {
            IoValue::U8(x) => self.io_u8.push((e.id, x)),
            IoValue::U16(x) => self.io_u16.push((e.id, x)),
            IoValue::U32(x) => self.io_u32.push((e.id, x)),
            IoValue::U64(x) => self.io_u64.push((e.id, x)),
            IoValue::Bytes(b) => self.io_var.push((e.id, b.to_vec())),
        }
    }

    fn io_count(&self) -> usize {
        self.io_u8.len() + self.io_u16.len() + self.io_u32.len() + self.io_u64.len() + self.io_var.len()
    }

    /// Whether the record can be written in `codec` (`layout`): its ids, counts and total
    /// fit the codec's widths, and it has only the parts the codec has.
    fn check(&self, codec: u8, layout: IoLayout) -> Result<(), EncodeError> {
        let fits = |v: usize, width: u8| if width == 1 { v <= 0xFF } else { v <= 0xFFFF };
        let ids = self.io_u8.iter().map(|x| x.0).chain(self.io_u16.iter().map(|x| x.0));
        let ids = ids.chain(self.io_u32.iter().map(|x| x.0)).chain(self.io_u64.iter().map(|x| x.0));
        let mut ids = ids.chain(self.io_var.iter().map(|x| x.0)).chain(std::iter::once(self.event_io_id));
        if !ids.all(|id| fits(id.into(), layout.id_width)) {
            return Err(EncodeError(format!(
                "an IO id does not fit codec 0x{codec:02x}'s {}-byte ids",
                layout.id_width
            )));
        }
        if !self.io_var.is_empty() && !layout.variable_group {
            return Err(EncodeError(format!("codec 0x{codec:02x} has no variable-length IO")));
        }
        if self.generation_type.is_some() != layout.generation_type {
            return Err(EncodeError("a generation type is Codec 16's, and Codec 16 needs one".into()));
        }
        let groups = [self.io_u8.len(), self.io_u16.len(), self.io_u32.len(), self.io_u64.len(), self.io_var.len()];
        if !groups.iter().all(|&g| fits(g, layout.count_width)) {
            return Err(EncodeError("too many IO elements for the codec's counts".into()));
        }
        let total = self.declared_io_count.map_or(self.io_count(), usize::from);
        if !fits(total, layout.count_width) {
            return Err(EncodeError("the declared IO count does not fit the codec".into()));
        }
        Ok(())
    }
}

/// Why records could not be encoded in a codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot encode AVL data: {}", self.0)
    }
}

impl std::error::Error for EncodeError {}
