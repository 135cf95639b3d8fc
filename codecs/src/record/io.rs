//! Teltonika's raw IO elements, the record's `attributes.io`: kept as ids and values, not as
//! a JSON object. As a `serde_json` map every element cost a `String` for its key and the
//! map its nodes, most of a Teltonika record's allocations; here they are a run of one
//! block that all the records of a packet share, and the JSON text is written from it. A
//! record kept keeps its packet's whole block alive (16 bytes an element: a few kilobytes
//! at most for the packets devices send).

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// One IO element's value as the contract writes it: an unsigned integer, or, for the
/// variable-length elements, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoAttributeValue {
    Unsigned(u64),
    Hex(String),
}

impl IoAttributeValue {
    /// The value as [`IoElements`] reads it back.
    pub fn as_ref(&self) -> IoAttributeRef<'_> {
        match self {
            IoAttributeValue::Unsigned(n) => IoAttributeRef::Unsigned(*n),
            IoAttributeValue::Hex(h) => IoAttributeRef::Hex(h),
        }
    }
}

/// As the value it holds (the JSON text of `attributes.io`'s values).
impl Serialize for IoAttributeValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_ref().serialize(s)
    }
}

/// An IO element's value as read from [`IoElements`]: the integer, or the hex text borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAttributeRef<'a> {
    Unsigned(u64),
    Hex(&'a str),
}

impl IoAttributeRef<'_> {
    fn to_value(self) -> Value {
        match self {
            IoAttributeRef::Unsigned(n) => Value::from(n),
            IoAttributeRef::Hex(h) => Value::from(h),
        }
    }
}

impl Serialize for IoAttributeRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            IoAttributeRef::Unsigned(n) => s.serialize_u64(n),
            IoAttributeRef::Hex(h) => s.serialize_str(h),
        }
    }
}

/// The IO elements by id, one value per id, read in the order the JSON object's keys take
/// (the ids' decimal text sorted as text: "1" < "10" < "2"). Kept as given (the wire's
/// order, a repeated id included) and put in key order when read, as [`Attributes`] keeps
/// its entries: sorting a record's elements when it was built was a fifth of the cost of a
/// Teltonika record, and readers that want only a named attribute never need the order.
/// Held as plain integers (16 bytes an element, nothing to drop) with the rare hex values
/// beside them, where an enum holding a `String` made each element 32 bytes and a check
/// when dropped. The records of one Teltonika packet share one block of elements, each
/// its own range of it (the decoder's `IoBlock`).
///
/// [`Attributes`]: super::Attributes
#[derive(Clone, Default)]
pub struct IoElements {
    /// `None` for no elements (nothing allocated), or until `IoBlock::share` hands the
    /// packet's block to the records made from it.
    block: Option<Arc<[Held]>>,
    start: u32,
    end: u32,
    /// Rare, so boxed: one word where the record holds it (each record is copied whole
    /// from `Record::EMPTY` when made, so every word of it costs every record).
    #[allow(clippy::box_collection)] // one word, not three
    hex: Option<Box<Vec<String>>>,
}

/// One element as held: the id, and the value or, for a hex value, its index in `hex`.
#[derive(Debug, Clone, Copy)]
struct Held {
    id: u16,
    is_hex: bool,
    value: u64,
}

impl Held {
    #[inline]
    fn unsigned(id: u16, value: u64) -> Held {
        Held { id, is_hex: false, value }
    }

    /// A hex value: its text is kept in `texts`, the element holds its index there.
    fn hex(id: u16, text: String, texts: &mut Vec<String>) -> Held {
        texts.push(text);
        Held { id, is_hex: true, value: texts.len() as u64 - 1 }
    }
}

/// The hex texts as an element list keeps them: nothing for none. Inline, so that the
/// common case (no texts) is one test where a record's elements are finished, not a call.
#[allow(clippy::box_collection)] // one word in the record, not three (`IoElements::hex`)
#[inline]
fn boxed_texts(texts: Vec<String>) -> Option<Box<Vec<String>>> {
    (!texts.is_empty()).then(|| Box::new(texts))
}

/// Builds [`IoElements`] one element at a time, as they come off the wire.
#[derive(Debug, Default)]
pub struct IoBuilder {
    held: Vec<Held>,
    hex: Vec<String>,
}

impl IoBuilder {
    /// Room for `n` elements: with the right count, `build` does not reallocate.
    pub fn with_capacity(n: usize) -> Self {
        IoBuilder { held: Vec::with_capacity(n), hex: Vec::new() }
    }

    #[inline]
    pub fn push(&mut self, id: u16, value: u64) {
        self.held.push(Held::unsigned(id, value));
    }

    pub fn push_hex(&mut self, id: u16, hex: String) {
        self.held.push(Held::hex(id, hex, &mut self.hex));
    }

    #[inline]
    pub fn build(self) -> IoElements {
        let hex = boxed_texts(self.hex);
        let end = self.held.len() as u32;
        let block = (end > 0).then(|| Arc::from(self.held));
        IoElements { block, start: 0, end, hex }
    }
}

/// The IO elements of every record of one packet, written into one block that the
/// records then share: an allocation a packet, where a vector each was an allocation a
/// record (and with glibc's allocator, about a third of what a Teltonika record cost
/// beyond reading it). The elements are gathered in a buffer kept per thread (a buffer per
/// decoder would add its largest packet to every idle session) and copied into the block
/// once their number is known.
#[derive(Debug)]
pub(crate) struct IoBlock {
    held: Vec<Held>,
}

thread_local! {
    static GATHERED: std::cell::Cell<Vec<Held>> = const { std::cell::Cell::new(Vec::new()) };
}

impl IoBlock {
    /// Room for `elements` in all (more only costs a reallocation).
    pub(crate) fn new(elements: usize) -> IoBlock {
        let mut held = GATHERED.with(|g| g.take());
        held.clear();
        held.reserve(elements);
        IoBlock { held }
    }

    /// Writes the next record's elements: `push` them, then `finish` gives the record's
    /// [`IoElements`], which read as empty until [`IoBlock::share`].
    pub(crate) fn record(&mut self) -> IoRecord<'_> {
        let start = self.held.len();
        IoRecord { held: &mut self.held, start, hex: Vec::new() }
    }

    /// Hands the block to the records whose elements it holds: each gets its range of it.
    /// The last of them takes the block itself: each clone and each drop of a reference is
    /// an atomic update, and a packet has only two or three records to share it.
    pub(crate) fn share<'r>(self, records: impl Iterator<Item = &'r mut IoElements>) {
        if self.held.is_empty() {
            return;
        }
        let block: Arc<[Held]> = Arc::from(&self.held[..]);
        let mut holders = records.filter(|io| io.start < io.end);
        let Some(mut last) = holders.next() else { return };
        for io in holders {
            last.block = Some(block.clone());
            last = io;
        }
        last.block = Some(block);
    }
}

impl Drop for IoBlock {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        GATHERED.with(|g| g.set(held));
    }
}

/// One record's elements, written into its packet's [`IoBlock`].
#[derive(Debug)]
pub(crate) struct IoRecord<'b> {
    held: &'b mut Vec<Held>,
    start: usize,
    hex: Vec<String>,
}

impl IoRecord<'_> {
    #[inline]
    pub(crate) fn push(&mut self, id: u16, value: u64) {
        self.held.push(Held::unsigned(id, value));
    }

    pub(crate) fn push_hex(&mut self, id: u16, hex: String) {
        self.held.push(Held::hex(id, hex, &mut self.hex));
    }

    #[inline]
    pub(crate) fn finish(self) -> IoElements {
        IoElements { block: None, start: self.start as u32, end: self.held.len() as u32, hex: boxed_texts(self.hex) }
    }
}

impl IoElements {
    /// From elements in any order; an id given twice keeps its last value.
    pub fn new(elements: Vec<(u16, IoAttributeValue)>) -> Self {
        let mut io = IoBuilder::with_capacity(elements.len());
        for (id, value) in elements {
            match value {
                IoAttributeValue::Unsigned(n) => io.push(id, n),
                IoAttributeValue::Hex(h) => io.push_hex(id, h),
            }
        }
        io.build()
    }

    /// This record's elements, as given.
    #[inline]
    fn held(&self) -> &[Held] {
        let range = self.start as usize..self.end as usize;
        self.block.as_deref().and_then(|b| b.get(range)).unwrap_or(&[])
    }

    /// The value of `id`: the last given.
    pub fn get(&self, id: u16) -> Option<IoAttributeRef<'_>> {
        self.held().iter().rev().find(|e| e.id == id).map(|e| self.value(e))
    }

    /// In the JSON object's key order, each id once.
    pub fn iter(&self) -> impl Iterator<Item = (u16, IoAttributeRef<'_>)> {
        self.key_order().map(|i| {
            let e = &self.held()[i];
            (e.id, self.value(e))
        })
    }

    /// The number of distinct ids.
    pub fn len(&self) -> usize {
        self.key_order().len()
    }

    pub fn is_empty(&self) -> bool {
        self.held().is_empty()
    }

    #[inline]
    fn value(&self, e: &Held) -> IoAttributeRef<'_> {
        if e.is_hex {
            IoAttributeRef::Hex(self.hex.as_ref().map_or("", |hex| &hex[e.value as usize]))
        } else {
            IoAttributeRef::Unsigned(e.value)
        }
    }

    /// The JSON object `attributes.io` is.
    pub fn to_value(&self) -> Value {
        Value::Object(self.iter().map(|(id, v)| (id.to_string(), v.to_value())).collect::<Map<String, Value>>())
    }

    /// The elements a JSON object holds, if it is one this type writes: keys the decimal
    /// text of a `u16` (no sign, no leading zero), values unsigned integers or strings.
    pub fn from_value(value: &Value) -> Option<Self> {
        let Value::Object(map) = value else { return None };
        let mut elements = Vec::with_capacity(map.len());
        for (key, v) in map {
            let id: u16 = key.parse().ok()?;
            if id.to_string() != *key {
                return None;
            }
            let v = match v {
                Value::Number(n) => IoAttributeValue::Unsigned(n.as_u64()?),
                Value::String(s) => IoAttributeValue::Hex(s.clone()),
                _ => return None,
            };
            elements.push((id, v));
        }
        Some(IoElements::new(elements))
    }
}

impl Serialize for IoElements {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let order = self.key_order();
        let mut map = s.serialize_map(Some(order.len()))?;
        let held = self.held();
        for e in order.map(|i| &held[i]) {
            // As text: JSON object keys are strings (serde_json would quote a number too,
            // other formats might not).
            map.serialize_entry(itoa::Buffer::new().format(e.id), &self.value(e))?;
        }
        map.end()
    }
}

impl IoElements {
    /// The indices of the elements in key order, leaving out each id's earlier values (an
    /// id's rank paired with the element's index, so an id's values sort in the order given).
    fn key_order(&self) -> KeyOrder {
        let held = self.held();
        if held.len() <= FEW {
            return self.few_in_key_order();
        }
        let mut keys: Vec<(u32, usize)> = held.iter().enumerate().map(|(i, e)| (decimal_rank(e.id), i)).collect();
        keys.sort_unstable();
        let last_of_run = |n: usize| keys.get(n + 1).is_none_or(|next| next.0 != keys[n].0);
        let order: Vec<usize> = (0..keys.len()).filter(|&n| last_of_run(n)).map(|n| keys[n].1).collect();
        KeyOrder::Many(order.into_iter())
    }

    /// `key_order` for up to `FEW` elements, on the stack: a sort of one word per element,
    /// the id's rank above its index (so no two are equal, and an id's values come in the
    /// order given; std's sort of a short slice of integers does not branch on the data).
    fn few_in_key_order(&self) -> KeyOrder {
        let held = self.held();
        let n = held.len();
        let mut keys = [0u32; FEW];
        for (i, (key, e)) in keys.iter_mut().zip(held.iter()).enumerate() {
            *key = decimal_rank(e.id) << 5 | i as u32;
        }
        let keys = &mut keys[..n];
        keys.sort_unstable();
        let mut order = [0u8; FEW];
        let mut len = 0;
        for (k, &key) in keys.iter().enumerate() {
            // An id's last value is the last of its run.
            let last = keys.get(k + 1).is_none_or(|next| next >> 5 != key >> 5);
            order[len] = (key & 31) as u8;
            len += usize::from(last);
        }
        KeyOrder::Few { order, at: 0, len: len as u8 }
    }
}

/// Elements ordered on the stack; more take a vector.
const FEW: usize = 32;

/// Indices of an [`IoElements`] in key order.
enum KeyOrder {
    Few { order: [u8; FEW], at: u8, len: u8 },
    Many(std::vec::IntoIter<usize>),
}

impl Iterator for KeyOrder {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            KeyOrder::Few { order, at, len } => (*at < *len).then(|| {
                *at += 1;
                usize::from(order[usize::from(*at - 1)])
            }),
            KeyOrder::Many(rest) => rest.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match self {
            KeyOrder::Few { at, len, .. } => usize::from(len - at),
            KeyOrder::Many(rest) => rest.len(),
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for KeyOrder {}

impl PartialEq for IoElements {
    /// Equal when they read the same: the order given is not part of the value.
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for IoElements {}

impl std::fmt::Debug for IoElements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The number of decimal digits of `n`.
fn digits(n: u16) -> u32 {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

/// A number that orders as `n`'s decimal text orders: the digits scaled to five places,
/// then the digit count ("1" before "10" before "100" before "2"). A multiply and a table
/// lookup, cheap enough to compute at each comparison of a sort.
#[inline]
pub(crate) fn decimal_rank(n: u16) -> u32 {
    const SCALE: [u32; 6] = [0, 10_000, 1_000, 100, 10, 1];
    let d = digits(n);
    (u32::from(n) * SCALE[d as usize]) << 3 | d
}

/// How the decimal texts of `a` and `b` order as text.
#[cfg(test)]
pub(crate) fn decimal_order(a: u16, b: u16) -> std::cmp::Ordering {
    decimal_rank(a).cmp(&decimal_rank(b))
}

/// The tests' model of the order: `n`'s decimal digits left-aligned in an integer, the bytes
/// after them zero, ordered as the text orders ("1" < "10" < "100" < "2").
#[cfg(test)]
fn decimal_key(n: u16) -> u64 {
    let mut digits = [0u8; 5];
    let mut len = 0;
    let mut rest = n;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    digits[..len].reverse();
    let [a, b, c, d, e] = digits;
    u64::from_be_bytes([0, 0, 0, a, b, c, d, e])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn element() -> impl Strategy<Value = IoAttributeValue> {
        prop_oneof![any::<u64>().prop_map(IoAttributeValue::Unsigned), "[0-9a-f]{0,8}".prop_map(IoAttributeValue::Hex)]
    }

    proptest! {
        /// Records whose elements share one packet's block each read their own, as if
        /// each had been built alone; records without elements included.
        #[test]
        fn a_packets_records_read_their_own_part_of_the_block(
            records in proptest::collection::vec(proptest::collection::vec((0u16..300, element()), 0..6), 1..5)
        ) {
            let total = records.iter().map(Vec::len).sum();
            let mut block = IoBlock::new(total);
            let mut shared: Vec<IoElements> = records
                .iter()
                .map(|elements| {
                    let mut io = block.record();
                    for (id, v) in elements.clone() {
                        match v {
                            IoAttributeValue::Unsigned(n) => io.push(id, n),
                            IoAttributeValue::Hex(h) => io.push_hex(id, h),
                        }
                    }
                    io.finish()
                })
                .collect();
            block.share(shared.iter_mut());
            for (io, elements) in shared.iter().zip(&records) {
                prop_assert_eq!(io, &IoElements::new(elements.clone()));
                prop_assert_eq!(io.is_empty(), elements.is_empty());
            }
        }

        /// The key's order is the text's order.
        #[test]
        fn decimal_keys_order_as_their_text(a: u16, b: u16) {
            prop_assert_eq!(decimal_key(a).cmp(&decimal_key(b)), a.to_string().cmp(&b.to_string()));
            prop_assert_eq!(decimal_order(a, b), a.to_string().cmp(&b.to_string()));
        }

        /// The elements behave as the JSON map they replace, inserted one by one (a repeated
        /// id keeps its last value), and come back from it; short and long lists (the two
        /// sorts) alike.
        #[test]
        fn io_elements_are_the_json_object(
            elements in proptest::collection::vec((prop_oneof![0u16..20, any::<u16>()], element()), 0..48)
        ) {
            let mut model = Map::new();
            for (id, v) in &elements {
                model.insert(id.to_string(), v.as_ref().to_value());
            }
            let io = IoElements::new(elements.clone());
            prop_assert_eq!(io.to_value(), Value::Object(model.clone()));
            for (_, v) in &elements {
                prop_assert_eq!(serde_json::to_value(v).unwrap(), v.as_ref().to_value());
            }
            prop_assert_eq!(serde_json::to_string(&io).unwrap(), serde_json::to_string(&model).unwrap());
            prop_assert_eq!(IoElements::from_value(&io.to_value()), Some(io.clone()));
            for (id, _) in &elements {
                let got = io.get(*id).map(IoAttributeRef::to_value);
                prop_assert_eq!(got.as_ref(), model.get(&id.to_string()));
            }
        }
    }

    #[test]
    fn edges_of_the_order_and_what_is_not_io() {
        let mut ids = [2u16, 100, 1, 10, 0, 65535, 9, 99, 6553];
        ids.sort_by_key(|&n| decimal_key(n));
        assert_eq!(ids, [0, 1, 10, 100, 2, 6553, 65535, 9, 99]);
        ids.reverse();
        ids.sort_by(|&a, &b| decimal_order(a, b));
        assert_eq!(ids, [0, 1, 10, 100, 2, 6553, 65535, 9, 99]);
        for other in [
            serde_json::json!({"01": 1}),
            serde_json::json!({"65536": 1}),
            serde_json::json!({"-1": 1}),
            serde_json::json!({"1": -1}),
            serde_json::json!({"1": 1.5}),
            serde_json::json!({"1": true}),
            serde_json::json!([1]),
        ] {
            assert_eq!(IoElements::from_value(&other), None, "{other}");
        }
    }
}
