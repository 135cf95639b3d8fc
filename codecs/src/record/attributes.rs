//! The record's `attributes` object: typed values under snake_case keys, in key order.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smallvec::SmallVec;

use super::{AttributeValue, IoElements};

/// The `attributes` object: everything a record carries beyond its fixed fields, with
/// snake_case keys. Ordered by key so the same record always prints the same way.
///
/// Decoders name their attributes with static keys: those are (key, typed value) pairs kept
/// sorted, four words an entry, the first eight held in the record itself (most records
/// have no more), so a record allocates nothing for them. Keys made at run
/// time (a record read back from JSON, an embedder's own) are kept apart, and Teltonika's
/// raw IO elements (`io`) are held typed ([`Attributes::io`]); both are merged into key
/// order when read.
#[derive(Clone, Default)]
pub struct Attributes {
    fixed: SmallVec<[(&'static str, AttributeValue); INLINE_ATTRIBUTES]>,
    io: Option<IoElements>,
    owned: Option<Box<OwnedEntries>>,
}

/// Attributes whose keys were made at run time, sorted by key.
type OwnedEntries = Vec<(Box<str>, AttributeValue)>;

/// Attributes with static keys held in the record itself, before any allocation: a GT06
/// 0x22 position has seven, and eight hold all of more than eight in ten of the corpus's
/// records. Each is 32 bytes of every record (504 bytes in all), and fewer would move the
/// common records to the heap again.
const INLINE_ATTRIBUTES: usize = 8;

/// `a.cmp(b)`, deciding on the first byte where it can: keys are short snake_case words
/// that mostly differ there, and a full string comparison is a `memcmp` call each time
/// (GT06 0x22 records, which insert keys out of order, took a fifth less time with this).
#[inline]
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// Where `key` is in `entries` sorted by key, or where it would go.
#[inline]
fn find<K: AsRef<str>>(entries: &[(K, AttributeValue)], key: &str) -> Result<usize, usize> {
    if entries.len() > 16 {
        return entries.binary_search_by(|(k, _)| key_order(k.as_ref(), key));
    }
    // Backwards from the end: a record has a handful of keys, and one set out of order
    // mostly lands a place or two from the end, so this makes a compare or two where a
    // binary search makes three or four.
    for (i, (k, _)) in entries.iter().enumerate().rev() {
        match key_order(k.as_ref(), key) {
            std::cmp::Ordering::Less => return Err(i + 1),
            std::cmp::Ordering::Equal => return Ok(i),
            std::cmp::Ordering::Greater => {}
        }
    }
    Err(0)
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

impl Attributes {
    pub fn new() -> Self {
        Attributes::default()
    }

    /// Sets `key`, replacing any earlier value (for `io`, typed IO elements too).
    #[inline]
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
        let append = self.fixed.last().is_none_or(|(last, _)| key_order(last, key).is_lt())
            && self.fixed.len() < self.fixed.capacity()
            && self.owned.is_none()
            && self.io.is_none();
        match if append { Err(self.fixed.len()) } else { self.slot(key) } {
            Ok(i) => self.fixed[i].1 = value,
            Err(i) => self.fixed.insert(i, (key, value)),
        }
    }

    /// Where `key` is among the static keys (`Ok`) or goes (`Err`), with room made for it and
    /// the key dropped from the run-time keys and the typed IO elements.
    #[inline(never)]
    fn slot(&mut self, key: &str) -> Result<usize, usize> {
        if self.owned.is_some() || self.io.is_some() {
            self.forget_elsewhere(key);
        }
        find(&self.fixed, key)
    }

    fn set_owned(&mut self, key: String, value: AttributeValue) {
        self.forget_elsewhere(&key);
        if let Ok(i) = find(&self.fixed, &key) {
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
    pub fn set_io(&mut self, io: IoElements) {
        self.forget_elsewhere(IO);
        if let Ok(i) = find(&self.fixed, IO) {
            self.fixed.remove(i);
        }
        self.io = Some(io);
    }

    /// The typed IO elements (Teltonika's `io`); [`Attributes::get`] does not see them.
    pub fn io(&self) -> Option<&IoElements> {
        self.io.as_ref()
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
        if let Ok(i) = find(&self.fixed, key) {
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
        if let Ok(i) = find(&self.fixed, key) {
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

    /// Every key in order with what the JSON object holds for it.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, Entry<'_>)> {
        let fixed = self.fixed.iter().map(|(k, v)| (*k, Entry::Value(v)));
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
