//! The record's `attributes` object: typed values under snake_case keys, read in key order.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::entries::{StaticEntries, INLINE as INLINE_ATTRIBUTES};
use super::{AttributeValue, IoElements};

/// The `attributes` object: everything a record carries beyond its fixed fields, with
/// snake_case keys. Read and printed in key order, so the same record always prints the
/// same way.
///
/// Decoders name their attributes with static keys: those are (key, typed value) pairs,
/// four words an entry, the first eight held in the record itself (most records have no
/// more), so a record allocates nothing for them. They are kept in the order they were set
/// and put in key order when read (`Order`): setting one is an append, after a look along
/// the few before it for the same key (and at the other kinds of key) only when `marks`
/// says the key may be there; keeping them sorted made each key set out of order a search
/// and a shift of the entries after it (a GT06 0x22 position sets two of its seven so:
/// with the compares, a third of its record). Keys made at run time (a record read back
/// from JSON, an embedder's own) are kept apart and sorted, and Teltonika's raw IO elements
/// (`io`) are held typed ([`Attributes::io`]); both are merged into key order when read.
#[derive(Clone)]
pub struct Attributes {
    /// Released by `Drop for Attributes`, only when something in it holds memory.
    fixed: StaticEntries,
    /// What is known of `fixed` without reading it: [`HOLDS_HEAP`] once an entry holding
    /// memory was stored, and each stored key's [`key_bit`]; every key's bit once `io` or
    /// `owned` holds anything, so that each key set after that looks there too. Marks only
    /// ever gain bits: a bit set for a key no longer there costs a look, never a wrong
    /// answer.
    marks: u64,
    io: Option<IoElements>,
    owned: Option<Box<OwnedEntries>>,
}

/// Dropping the static-key entries was a call per entry (the value's drop glue, out of
/// line), 5% of a GT06 0x22 record's instructions, and checking each entry in a loop still
/// a dozen instructions an entry, for values that almost never hold memory: they are
/// dropped only when `HOLDS_HEAP` says one may (entries on the heap are dropped with it).
/// Otherwise there is nothing to free (the allocations bench checks that records free all
/// they hold).
impl Drop for Attributes {
    #[inline]
    fn drop(&mut self) {
        if self.marks & HOLDS_HEAP != 0 {
            self.fixed.release();
        }
    }
}

/// The bit of [`Attributes::marks`] set once a static-key entry holding memory is stored.
/// Values are typed where the decoders set them, so whether one holds memory is mostly
/// known when the code is compiled, and setting the bit costs nothing.
const HOLDS_HEAP: u64 = 1 << 63;

/// Every key's bit of [`Attributes::marks`].
const ALL_KEYS: u64 = !HOLDS_HEAP;

/// The bit of [`Attributes::marks`] (one of the other 63) standing for `key`, from its
/// length and its first, middle and last bytes. Decoders set literal keys in inlined code,
/// so this is worked out when the code is compiled. Two keys sharing a bit only cost a
/// look along the entries; the multipliers were picked so that no two keys set together
/// in the benches' records share one, and in the corpus's records one key in thirty-odd
/// records does (`mcc` and `mnc` shared a bit with a mix of first and last bytes only).
#[inline(always)]
fn key_bit(key: &str) -> u64 {
    let b = key.as_bytes();
    let byte = |i: usize| u32::from(b.get(i).copied().unwrap_or(0));
    let mix = (b.len() as u32).wrapping_mul(22)
        ^ byte(0).wrapping_mul(14)
        ^ byte(b.len() / 2).wrapping_mul(62)
        ^ byte(b.len().wrapping_sub(1)).wrapping_mul(3);
    1 << (mix % 63)
}

/// Attributes whose keys were made at run time, sorted by key.
type OwnedEntries = Vec<(Box<str>, AttributeValue)>;

/// `a.cmp(b)` (byte order, as `str` orders), as a loop: keys are short snake_case words
/// that mostly differ in their first byte or two, and `str`'s comparison is a `memcmp`
/// call each time.
#[inline]
fn key_order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// `a == b` for keys: most keys differ in length, and the rest in their first byte or two
/// (a slice comparison is a `memcmp` call).
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

/// Where `key` is among the static-key entries (in the order they were set).
#[inline]
fn position(entries: &[(&'static str, AttributeValue)], key: &str) -> Option<usize> {
    entries.iter().position(|(k, _)| same_key(k, key))
}

/// Where `key` is among the run-time keys (sorted), or where it would go.
fn find(entries: &[(Box<str>, AttributeValue)], key: &str) -> Result<usize, usize> {
    entries.binary_search_by(|(k, _)| key_order(k, key))
}

/// The order of the static-key entries by key, worked out when they are read.
enum Order {
    /// They were set in key order (most records).
    AsSet,
    /// The indices of up to [`INLINE_ATTRIBUTES`] entries, in key order.
    Few([u8; INLINE_ATTRIBUTES]),
    Many(Vec<usize>),
}

impl Order {
    fn of(entries: &[(&'static str, AttributeValue)]) -> Order {
        if entries.len() <= INLINE_ATTRIBUTES {
            return Order::of_few(entries);
        }
        if entries.is_sorted_by(|(a, _), (b, _)| key_order(a, b).is_lt()) {
            return Order::AsSet;
        }
        let mut many: Vec<usize> = (0..entries.len()).collect();
        many.sort_by(|&a, &b| key_order(entries[a].0, entries[b].0));
        Order::Many(many)
    }

    /// [`Order::of`] up to [`INLINE_ATTRIBUTES`] entries: each key's first eight bytes read
    /// once as a number ([`prefix`]), the keys compared by those (and byte by byte only
    /// where they tie). A record's keys were otherwise compared a byte at a time in every
    /// step of the sort, most of the cost of putting them in order.
    fn of_few(entries: &[(&'static str, AttributeValue)]) -> Order {
        let mut prefixes = [0u64; INLINE_ATTRIBUTES];
        for (p, (key, _)) in prefixes.iter_mut().zip(entries) {
            *p = prefix(key.as_bytes());
        }
        let before = |a: u8, b: u8| {
            let (a, b) = (usize::from(a), usize::from(b));
            match prefixes[a].cmp(&prefixes[b]) {
                Ordering::Equal => key_order(entries[a].0, entries[b].0).is_lt(),
                unequal => unequal.is_lt(),
            }
        };
        let n = entries.len() as u8;
        if (1..n).all(|i| before(i - 1, i)) {
            return Order::AsSet;
        }
        let mut few = [0u8; INLINE_ATTRIBUTES];
        for (i, slot) in few.iter_mut().enumerate() {
            *slot = i as u8;
        }
        // Insertion: mostly in order already, a compare each.
        for n in 1..entries.len() {
            let mut at = n;
            while at > 0 && before(few[at], few[at - 1]) {
                few.swap(at - 1, at);
                at -= 1;
            }
        }
        Order::Few(few)
    }

    /// The index of the entry ranked `rank`.
    fn index(&self, rank: usize) -> usize {
        match self {
            Order::AsSet => rank,
            Order::Few(few) => usize::from(few[rank]),
            Order::Many(many) => many[rank],
        }
    }
}

/// The first eight bytes of `key` as a big-endian number, zeros past its end: ordered as
/// the keys are wherever they differ in those bytes (a zero for a missing byte puts a key
/// before the longer keys it begins, as byte order does; keys that hold zero bytes may
/// tie, and are then compared byte by byte).
#[inline(always)]
fn prefix(key: &[u8]) -> u64 {
    let n = key.len();
    if let Some(word) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*word);
    }
    let half = |at: usize| key[at..].first_chunk::<4>().map_or(0, |h| u64::from(u32::from_be_bytes(*h)));
    if n >= 4 {
        // Bytes 4.. are the last four's, moved to their places (with four bytes, none).
        return half(0) << 32 | (half(n - 4) << (8 * (8 - n)) & 0xFFFF_FFFF);
    }
    let byte = |i: usize| key.get(i).copied().unwrap_or(0);
    u64::from_be_bytes([byte(0), byte(1), byte(2), 0, 0, 0, 0, 0])
}

/// One entry of the attributes object, in key order: a value, or the typed IO elements.
pub(crate) enum Entry<'a> {
    Value(&'a AttributeValue),
    Io(&'a IoElements),
}

impl Serialize for Entry<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Entry::Value(v) => v.serialize(s),
            Entry::Io(io) => io.serialize(s),
        }
    }
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes::EMPTY
    }
}

impl Attributes {
    /// No attributes, as a constant (a new record is copied from one).
    pub(crate) const EMPTY: Attributes = Attributes { fixed: StaticEntries::EMPTY, marks: 0, io: None, owned: None };

    pub fn new() -> Self {
        Attributes::EMPTY
    }

    /// Sets `key`, replacing any earlier value (for `io`, typed IO elements too).
    // Always inline: with `#[inline]` the compiler kept a call per key in the larger record
    // functions (JT808's location, GT06's), a prologue and an epilogue around a few stores;
    // inline, every protocol's record row took 1-5% fewer instructions.
    #[inline(always)]
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttributeValue>) {
        match key.into() {
            Cow::Borrowed(key) => self.set_static(key, value.into()),
            Cow::Owned(key) => self.set_owned(key, value.into()),
        }
    }

    /// Inline in the caller, so the value is written straight into its place. Passed to a
    /// function instead, it went through memory the caller had just written in smaller
    /// pieces, and reading it back stalled: setting attributes was a third of a GT06
    /// record's time, mostly that stall, and inline a 0x22 record took 15% less.
    #[inline(always)]
    fn set_static(&mut self, key: &'static str, value: AttributeValue) {
        let bit = key_bit(key);
        if value.holds_heap() {
            self.marks |= HOLDS_HEAP;
        }
        if self.marks & bit != 0 {
            return self.set_again(key, value);
        }
        self.marks |= bit;
        self.fixed.push((key, value));
    }

    /// Sets a static key that may be set already, here or among the other kinds of key.
    #[inline(never)]
    fn set_again(&mut self, key: &'static str, value: AttributeValue) {
        if self.owned.is_some() || self.io.is_some() {
            self.forget_elsewhere(key);
        }
        match position(&self.fixed, key) {
            Some(i) => self.fixed[i].1 = value,
            None => self.fixed.push((key, value)),
        }
    }

    fn set_owned(&mut self, key: String, value: AttributeValue) {
        self.marks |= ALL_KEYS;
        self.forget_elsewhere(&key);
        if let Some(i) = position(&self.fixed, &key) {
            self.fixed.remove(i);
        }
        let owned = self.owned.get_or_insert_with(Default::default);
        match find(owned, &key) {
            Ok(i) => owned[i].1 = value,
            Err(i) => owned.insert(i, (key.into_boxed_str(), value)),
        }
    }

    /// Drops `key` from the run-time keys and the typed IO elements, before a new value
    /// for it is stored.
    #[inline(never)]
    fn forget_elsewhere(&mut self, key: &str) {
        if key == IO {
            self.io = None;
        }
        if let Some(owned) = &mut self.owned {
            if let Ok(i) = find(owned, key) {
                owned.remove(i);
            }
        }
    }

    /// Sets `io` to typed IO elements, replacing any earlier value.
    #[inline]
    pub fn set_io(&mut self, io: IoElements) {
        // The earlier typed value is dropped by the assignment below.
        if self.owned.is_some() {
            self.forget_elsewhere(IO);
        }
        if self.marks & key_bit(IO) != 0 {
            if let Some(i) = position(&self.fixed, IO) {
                self.fixed.remove(i);
            }
        }
        self.marks |= ALL_KEYS;
        self.io = Some(io);
    }

    /// The typed IO elements (Teltonika's `io`); [`Attributes::get`] does not see them.
    pub fn io(&self) -> Option<&IoElements> {
        self.io.as_ref()
    }

    /// For [`IoBlock::share`](super::IoBlock::share), once a packet's records are made.
    pub(crate) fn io_mut(&mut self) -> Option<&mut IoElements> {
        self.io.as_mut()
    }

    /// Sets `key` only when there is a value: absent stays absent.
    #[inline]
    pub fn set_opt<V: Into<AttributeValue>>(&mut self, key: &'static str, value: Option<V>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    /// Vendor bytes: printable ASCII (with CR, LF, tab) as `text`, anything else as `data` in
    /// hex; nothing for no bytes.
    pub fn set_text_or_data(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if bytes.iter().all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t')) {
            self.set("text", String::from_utf8_lossy(bytes));
        } else {
            self.set("data", crate::wire::hex::to_hex(bytes));
        }
    }

    /// The value of `key`. Typed IO elements are read with [`Attributes::io`].
    pub fn get(&self, key: &str) -> Option<&AttributeValue> {
        if let Some(i) = position(&self.fixed, key) {
            return Some(&self.fixed[i].1);
        }
        let owned = self.owned.as_deref()?;
        find(owned, key).ok().map(|i| &owned[i].1)
    }

    /// Removes `key` and returns its value (typed IO elements as their JSON object).
    pub fn remove(&mut self, key: &str) -> Option<AttributeValue> {
        if key == IO {
            if let Some(io) = self.io.take() {
                return Some(io.to_value().into());
            }
        }
        if let Some(i) = position(&self.fixed, key) {
            return Some(self.fixed.remove(i).1);
        }
        let owned = self.owned.as_deref_mut()?;
        find(owned, key).ok().map(|i| owned.remove(i).1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys, typed IO elements included.
    pub fn len(&self) -> usize {
        self.fixed.len() + usize::from(self.io.is_some()) + self.owned.as_ref().map_or(0, |o| o.len())
    }

    /// The values in key order; typed IO elements are not among them (see
    /// [`Attributes::io`]).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.entries().filter_map(|(k, e)| match e {
            Entry::Value(v) => Some((k, v)),
            Entry::Io(_) => None,
        })
    }

    /// [`Attributes::entries`] as a loop, for the JSON writer: records have no run-time
    /// keys, and their static keys (and IO elements) are walked without the general merge.
    #[inline]
    pub(crate) fn for_each_entry<'a>(&'a self, mut f: impl FnMut(&'a str, Entry<'a>)) {
        if self.owned.is_some() {
            return self.entries().for_each(|(k, e)| f(k, e));
        }
        let entries = &*self.fixed;
        let order = Order::of(entries);
        let mut io = self.io.as_ref();
        for rank in 0..entries.len() {
            let (k, v) = &entries[order.index(rank)];
            if let Some(elements) = io.filter(|_| key_order(IO, k).is_lt()) {
                f(IO, Entry::Io(elements));
                io = None;
            }
            f(k, Entry::Value(v));
        }
        if let Some(elements) = io {
            f(IO, Entry::Io(elements));
        }
    }

    /// Every key in order with what the JSON object holds for it.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Entry<'_>)> {
        let order = Order::of(&self.fixed);
        let fixed = (0..self.fixed.len()).map(move |rank| {
            let (k, v) = &self.fixed[order.index(rank)];
            (*k, Entry::Value(v))
        });
        let owned = self.owned.iter().flat_map(|o| o.iter()).map(|(k, v)| (k.as_ref(), Entry::Value(v)));
        let io = self.io.iter().map(|io| (IO, Entry::Io(io)));
        merge(merge(fixed, owned), io)
    }

    /// The JSON object these attributes stand for.
    pub fn to_value(&self) -> Value {
        let value = |e: Entry<'_>| match e {
            Entry::Value(v) => v.to_value(),
            Entry::Io(io) => io.to_value(),
        };
        Value::Object(self.entries().map(|(k, e)| (k.to_owned(), value(e))).collect())
    }
}

/// Two sequences sorted by key, as one (their keys are distinct).
fn merge<'a, T>(
    a: impl Iterator<Item = (&'a str, T)>,
    b: impl Iterator<Item = (&'a str, T)>,
) -> impl Iterator<Item = (&'a str, T)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((x, _)), Some((y, _))) if key_order(y, x).is_lt() => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// Equal when they print the same object, however the keys are held.
impl PartialEq for Attributes {
    fn eq(&self, other: &Attributes) -> bool {
        let same = |(k1, e1): (&str, Entry<'_>), (k2, e2): (&str, Entry<'_>)| {
            k1 == k2
                && match (e1, e2) {
                    (Entry::Value(a), Entry::Value(b)) => a == b,
                    (Entry::Io(a), Entry::Io(b)) => a == b,
                    _ => false,
                }
        };
        self.len() == other.len() && self.entries().zip(other.entries()).all(|(a, b)| same(a, b))
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, e) in self.entries() {
            match e {
                Entry::Value(v) => map.entry(&k, v),
                Entry::Io(io) => map.entry(&k, io),
            };
        }
        map.finish()
    }
}

/// The key typed IO elements are written under.
pub(crate) const IO: &str = "io";

impl Serialize for Attributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries())
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Through a map: sorted, and a key given twice keeps its last value, as before.
        let map = BTreeMap::<String, Value>::deserialize(deserializer)?;
        let mut attributes = Attributes::new();
        for (k, v) in map {
            // An `io` this crate writes comes back typed, so a record read back equals the
            // one written; any other `io` stays a JSON value.
            match IoElements::from_value(&v) {
                Some(io) if k == IO => attributes.set_io(io),
                _ => attributes.set(k, v),
            }
        }
        Ok(attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys with the same mark bit: each set replaces its own key's value, never the
    /// other's, and never adds a second entry.
    #[test]
    fn keys_sharing_a_mark_bit_stay_apart() {
        assert_eq!(key_bit("mnc"), key_bit("fuel"), "the test needs two keys sharing a bit");
        let mut a = Attributes::new();
        for (key, value) in [("mnc", 1u8), ("fuel", 2), ("mnc", 3), ("fuel", 4), ("mnc", 5)] {
            a.set(key, value);
        }
        assert_eq!(a.iter().collect::<Vec<_>>(), [("fuel", &4.into()), ("mnc", &5.into())]);
    }

    /// A static key set first in a record replaces the same key held as a run-time key or
    /// as typed IO elements, instead of standing beside it.
    #[test]
    fn a_static_key_replaces_the_same_key_held_elsewhere() {
        let mut a = Attributes::new();
        a.set(String::from("lac"), 1u8);
        a.set("lac", 2u8);
        assert_eq!(a.iter().collect::<Vec<_>>(), [("lac", &2.into())]);
        let mut b = Attributes::new();
        b.set_io(IoElements::new(vec![(239, crate::record::IoAttributeValue::Unsigned(1))]));
        b.set("io", 3u8);
        assert_eq!((b.io(), b.len()), (None, 1));
        assert_eq!(b.get("io"), Some(&3.into()));
    }

    /// A key set again after values that hold memory: the old value is replaced in place.
    #[test]
    fn a_key_set_again_replaces_its_value() {
        let mut a = Attributes::new();
        a.set("text", "longer than fourteen bytes, so boxed");
        a.set("lac", 7u16);
        a.set("text", "short");
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("text").and_then(AttributeValue::as_str), Some("short"));
    }

    /// A key of up to eleven bytes from three (a zero among them): so that two keys often
    /// share their first bytes, and differ anywhere in or past the first word.
    fn key_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(vec![0u8, b'a', 0xff]), 0..11)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(5000))]

        /// Where two keys' prefixes differ, they order the keys as their bytes do.
        #[test]
        fn prefixes_order_keys_as_their_bytes_do(a in key_bytes(), b in key_bytes()) {
            let by_prefix = prefix(&a).cmp(&prefix(&b));
            proptest::prop_assert!(by_prefix == Ordering::Equal || by_prefix == a.cmp(&b), "{:?} {:?}", a, b);
            // Keys that differ within their first eight bytes never tie.
            let differ_early = a.iter().zip(&b).take(8).any(|(x, y)| x != y);
            proptest::prop_assert!(!differ_early || by_prefix != Ordering::Equal);
        }
    }
}
