//! The attributes set under static keys: a small vector of (key, value) entries, the first
//! [`INLINE`] held in the record itself.

use std::mem::{self, ManuallyDrop};
use std::ops::{Deref, DerefMut};

use super::AttributeValue;

/// One attribute under a static key.
pub(super) type Entry = (&'static str, AttributeValue);

/// Entries held in the record before any allocation: a GT06 0x22 position has seven, and
/// eight hold all of more than eight in ten of the corpus's records. Each is 32 bytes of
/// every record, and fewer would move the common records to the heap again.
pub(super) const INLINE: usize = 8;

/// What a slot past the last entry holds: nothing to drop.
const VACANT: Entry = ("", AttributeValue::Null);

/// The entries in the order they were set: the first [`INLINE`] in the record, all of them
/// on the heap once there are more.
///
/// Written for this one use rather than taken from `smallvec`: decoders append a few
/// entries to every record, and here an append inlined where the key is set is a bounds
/// check and two stores (`smallvec`'s push checked which storage is in use twice and was
/// often a call). Slots past `len` hold [`VACANT`], so an append overwrites one without
/// dropping it; entries are dropped by [`StaticEntries::release`], which the owner calls
/// only when one of them may hold memory.
#[derive(Clone)]
pub(super) struct StaticEntries {
    inline: ManuallyDrop<[Entry; INLINE]>,
    /// How many of `inline` are entries: [`INLINE`] once they moved to `spilled`, so that an
    /// append goes the slow way.
    len: u8,
    /// Boxed so that it takes one word of every record, not three: few records have more
    /// than [`INLINE`] entries.
    #[allow(clippy::box_collection)]
    spilled: Option<Box<Vec<Entry>>>,
}

impl StaticEntries {
    pub(super) const EMPTY: StaticEntries =
        StaticEntries { inline: ManuallyDrop::new([VACANT; INLINE]), len: 0, spilled: None };

    /// Appends an entry (the caller knows its key is not among them).
    #[inline(always)]
    pub(super) fn push(&mut self, entry: Entry) {
        let slot = match self.inline.get_mut(usize::from(self.len)) {
            Some(slot) => {
                self.len += 1;
                slot
            }
            None => self.spilled_slot(),
        };
        // The slot holds VACANT: there is nothing to drop. Both ways end in this one write,
        // so the entry goes from registers straight into its slot: handed to a function
        // by value, it was first built on the stack in pieces, and reading it back whole
        // stalled (a GT06 0x22 record took 50% longer).
        mem::forget(mem::replace(slot, entry));
    }

    /// A vacant slot past the inline ones, on the heap, the inline entries moved there the
    /// first time.
    #[inline(never)]
    fn spilled_slot(&mut self) -> &mut Entry {
        let spilled = self.spilled.get_or_insert_with(|| {
            let mut all = Vec::with_capacity(2 * INLINE);
            all.extend(self.inline.iter_mut().map(|slot| mem::replace(slot, VACANT)));
            Box::new(all)
        });
        spilled.push(VACANT);
        let last = spilled.len() - 1;
        &mut spilled[last]
    }

    /// Takes out the entry at `i`, the later ones moving up.
    pub(super) fn remove(&mut self, i: usize) -> Entry {
        if let Some(spilled) = &mut self.spilled {
            return spilled.remove(i);
        }
        let len = usize::from(self.len);
        let entry = mem::replace(&mut self.inline[i], VACANT);
        self.inline[i..len].rotate_left(1);
        self.len -= 1;
        entry
    }

    /// Drops the inline entries (what spilled drops with its box). Without this call they
    /// are not dropped at all: the owner calls it when one of them may hold memory.
    pub(super) fn release(&mut self) {
        let len = usize::from(self.len);
        for slot in &mut self.inline[..len] {
            *slot = VACANT;
        }
        self.len = 0;
    }
}

impl Deref for StaticEntries {
    type Target = [Entry];

    #[inline]
    fn deref(&self) -> &[Entry] {
        match &self.spilled {
            Some(spilled) => spilled,
            None => &self.inline[..usize::from(self.len)],
        }
    }
}

impl DerefMut for StaticEntries {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Entry] {
        match &mut self.spilled {
            Some(spilled) => spilled,
            None => &mut self.inline[..usize::from(self.len)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(e: &StaticEntries) -> Vec<&'static str> {
        e.iter().map(|(k, _)| *k).collect()
    }

    const KEYS: [&str; 11] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"];

    /// Past the inline slots the entries move to the heap in order, and removing from
    /// either storage keeps the rest in order.
    #[test]
    fn entries_keep_their_order_inline_and_spilled() {
        for n in [3, INLINE, INLINE + 3] {
            let mut e = StaticEntries::EMPTY;
            for (i, k) in KEYS[..n].iter().enumerate() {
                e.push((k, AttributeValue::Unsigned(i as u64)));
            }
            assert_eq!(keys(&e), KEYS[..n]);
            assert_eq!(e.remove(1), ("b", AttributeValue::Unsigned(1)));
            let mut expected = KEYS[..n].to_vec();
            expected.remove(1);
            assert_eq!(keys(&e), expected);
            e.push(("z", AttributeValue::Bool(true)));
            expected.push("z");
            assert_eq!(keys(&e), expected);
            e.release();
        }
    }
}
