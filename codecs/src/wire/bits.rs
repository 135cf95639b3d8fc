//! Words read as sets of bits.
//!
//! `bitvec` reads these as well (`word.view_bits::<Lsb0>().iter_ones()`), but through its
//! general bit-slice machinery: on the JT808 location path its alarm and status words cost
//! about 190 instructions a location more than this loop, 6% of the record row
//! (`scripts/instructions.sh`), over the 5% a body may cost the benches. It is kept for bits
//! read off the per-position path (GT06's terminal information).

/// The indexes of the set bits of `word`, lowest first.
#[inline]
pub fn ones(mut word: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if word == 0 {
            return None;
        }
        let bit = word.trailing_zeros() as usize;
        word &= word - 1;
        Some(bit)
    })
}

#[cfg(test)]
mod tests {
    use bitvec::order::Lsb0;
    use bitvec::view::BitView;
    use proptest::prelude::*;

    proptest! {
        /// The same bits, in the same order, as bitvec finds.
        #[test]
        fn the_set_bits_lowest_first(word in any::<u32>()) {
            let ours: Vec<usize> = super::ones(word).collect();
            let theirs: Vec<usize> = word.view_bits::<Lsb0>().iter_ones().collect();
            prop_assert_eq!(ours, theirs);
        }
    }
}
