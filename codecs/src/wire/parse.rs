//! The grammar under the binary message bodies: nom 8 parsers over a body that is already
//! whole (the framer cut it and checked it), so they run in nom's complete mode and
//! "incomplete" never leaves a body parser: a field that does not fit is an error there.
//!
//! The error type carries nothing ([`Short`]): a failed parse costs a branch, and the caller,
//! which knows what it was reading and how long the body was, writes the message a person
//! reads. The leaves (fixed-width numbers, a fixed-size array, a length-prefixed field) are
//! written here with nom's parser signature, so they compose with nom's combinators
//! (tuples, `map`, `verify`, `length_count`, ...); each says why it is not nom's own.

use nom::error::{ErrorKind, ParseError};
use nom::{IResult, Parser};

pub use nom::bytes::complete::take;

/// The fixed-width big-endian numbers, written here with nom's signature rather than taken
/// from `nom::number::complete`: in nom 8.0.0 the slice's `take_from`, which those call for
/// every field, is not `#[inline]`, so without cross-crate LTO each field read was a
/// function call (a JT808 location's 8 fields cost 130 instructions more, measured with
/// `scripts/instructions.sh`). These are the same parsers, inlined.
macro_rules! be_numbers {
    ($($name:ident: $t:ty),*) => {$(
        #[doc = concat!("A big-endian `", stringify!($t), "`.")]
        #[inline]
        pub fn $name(input: &[u8]) -> Res<'_, $t> {
            match input.split_first_chunk() {
                Some((bytes, rest)) => Ok((rest, <$t>::from_be_bytes(*bytes))),
                None => Err(nom::Err::Error(Short)),
            }
        }
    )*};
}

be_numbers!(be_u8: u8, be_u16: u16, be_u32: u32, be_u64: u64, be_i16: i16, be_i32: i32);

/// A body parser failed: the body ended before the field, or a field did not fit its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Short;

impl<I> ParseError<I> for Short {
    fn from_error_kind(_: I, _: ErrorKind) -> Self {
        Short
    }

    fn append(_: I, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// What a body parser returns: the bytes after what it read, and the value.
pub type Res<'a, T> = IResult<&'a [u8], T, Short>;

/// `N` bytes, as an array.
#[inline]
pub fn array<const N: usize>(input: &[u8]) -> Res<'_, [u8; N]> {
    match input.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((rest, *head)),
        None => Err(nom::Err::Error(Short)),
    }
}

/// A length byte, then that many bytes. Written out rather than `length_data(be_u8)`: it is
/// the inner loop of every item list, and nom's form checked the length twice.
#[inline]
pub fn u8_prefixed(input: &[u8]) -> Res<'_, &[u8]> {
    match input.split_first() {
        Some((&len, rest)) if rest.len() >= usize::from(len) => {
            let (value, after) = rest.split_at(usize::from(len));
            Ok((after, value))
        }
        _ => Err(nom::Err::Error(Short)),
    }
}

/// Runs `parser` on `input` in complete mode: the value and the bytes after it, or
/// [`Short`].
#[inline]
pub fn read<'a, P>(mut parser: P, input: &'a [u8]) -> Result<(P::Output, &'a [u8]), Short>
where
    P: Parser<&'a [u8], Error = Short>,
{
    match parser.parse_complete(input) {
        Ok((rest, value)) => Ok((value, rest)),
        Err(_) => Err(Short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_fields_in_order_and_the_rest() {
        let body = [0x01, 0x02, 0x03, 0xff, 0xff, 0xff, 0xfe, 9, 8, 7, 2, b'h', b'i', 0xaa];
        let ((a, b, c, d, text), rest) = read((be_u8, be_u16, be_i32, array::<3>, u8_prefixed), &body).unwrap();
        assert_eq!((a, b, c, d, text, rest), (1, 0x0203, -2, [9, 8, 7], &b"hi"[..], &[0xaa][..]));
    }

    /// A field that runs past the end is an error, never "incomplete", and at any cut.
    #[test]
    fn a_short_body_is_short_at_every_cut() {
        let body = [0x01, 0x02, 0x03, 0x04, 3, b'a', b'b', b'c'];
        for cut in 0..body.len() {
            assert_eq!(read((be_u32, u8_prefixed), &body[..cut]), Err(Short), "cut at {cut}");
        }
        assert!(read((be_u32, u8_prefixed), &body).is_ok());
        assert_eq!(read(array::<2>, &[1]), Err(Short));
        assert_eq!(read(take(2usize), &[1]), Err(Short));
    }
}
