//! The sentence grammar in nom 8. A standard sentence's fields text (what follows the
//! address's comma) is split at its commas once, eight bytes at a time ([`Fields`]); the
//! grammar's input is a place among those fields ([`Cursor`]), each field read by a leaf
//! from [`fields`] wrapped as a nom parser, and a sentence's layout is a tuple of those
//! parsers in the standard's order (`sentence.rs`).
//!
//! Why fields and not bytes: the same grammar over the bytes, each parser finding the next
//! comma itself, made every field wait for the scan of the one before, and typed RMC and
//! GGA reads took 10-12% longer than over the split fields (BENCHMARKS.md, NMEA).
//!
//! An empty field is "no data", and so is a field past the last one sent: trailing fields
//! left off a sentence whose checksum vouches for it read as empty (a sentence without one
//! is held to its whole layout before its fields are read, `sentence.rs`). The error
//! ([`Bad`]) names the field that did not fit and what it holds; the message a person reads
//! is written from it on the error path only.

use nom::error::{ErrorKind, ParseError};
use nom::{Mode, OutputMode, PResult, Parser};

use super::fields::{self, Coordinate};
use crate::framing::{Reject, RejectKind};
use crate::wire::swar::byte_mask;

/// More fields than any sentence here has (GSV with 9 blocks has 40).
pub(super) const MAX_FIELDS: usize = 64;

/// The comma-separated fields after the address. Kept as end offsets rather than slices
/// so the table is 128 bytes, not 1 KiB, to fill.
pub(super) struct Fields<'a> {
    text: &'a [u8],
    /// Where each field ends in `text`; the next one starts one byte (the comma) later.
    ends: [u16; MAX_FIELDS],
    /// How many fields were sent.
    pub len: usize,
    pub formatter: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(formatter: &'static str) -> Self {
        Fields { text: &[], ends: [0; MAX_FIELDS], len: 0, formatter }
    }

    /// Splits `text` into this table, in place: the table is written two bytes an entry,
    /// and a table returned by value was moved in 16-byte pieces across those stores,
    /// loads the CPU cannot forward from them and waits on. Inline: left to the compiler,
    /// whether it was inlined followed how the crate fell into codegen units, and a change
    /// elsewhere in the crate once made it a call (7% more instructions a sentence).
    #[inline]
    pub fn split(&mut self, text: Option<&'a [u8]>) -> Result<(), Reject> {
        let Some(text) = text else { return Ok(()) };
        let formatter = self.formatter;
        if text.len() > usize::from(u16::MAX) {
            return Err(malformed(format!("{formatter} is over 64 KiB long")));
        }
        self.text = text;
        // The count lives in a local until the end: kept in `self.len` and bumped through
        // it, each comma's store waited on the one before through memory (a store-to-load
        // forwarding round trip a field, on the loop's one dependency chain).
        let mut len = 0;
        let ends = &mut self.ends;
        let mut push = |end: usize, len: &mut usize| -> Result<(), Reject> {
            let slot = ends
                .get_mut(*len)
                .ok_or_else(|| malformed(format!("{formatter} has more than {MAX_FIELDS} fields")))?;
            *slot = end as u16; // within the 64 KiB checked above
            *len += 1;
            Ok(())
        };
        // Eight bytes at a time: fields are a few bytes long, too short for `memchr` to
        // pay off, and a byte loop was a third of a GGA parse.
        let (words, tail) = text.as_chunks::<8>();
        for (i, word) in words.iter().enumerate() {
            let mut commas = byte_mask(u64::from_le_bytes(*word), b',');
            while commas != 0 {
                push(i * 8 + (commas.trailing_zeros() / 8) as usize, &mut len)?;
                commas &= commas - 1;
            }
        }
        for (j, &b) in tail.iter().enumerate() {
            if b == b',' {
                push(words.len() * 8 + j, &mut len)?;
            }
        }
        push(text.len(), &mut len)?;
        self.len = len;
        Ok(())
    }

    /// Field `n`, counting from 1 after the address as the standard does; empty past the
    /// last field sent.
    #[inline(always)]
    pub fn get(&self, n: usize) -> &'a [u8] {
        if n == 0 || n > self.len {
            return &[];
        }
        let start = if n == 1 { 0 } else { usize::from(self.ends[n - 2]) + 1 };
        self.text.get(start..usize::from(self.ends[n - 1])).unwrap_or_default()
    }

    /// The grammar's input: the first field.
    pub fn cursor(&self) -> Cursor<'_, 'a> {
        Cursor { fields: self, next: 1 }
    }

    /// What a person reads about the field that did not fit.
    #[cold]
    #[inline(never)]
    pub fn describe(&self, bad: Bad) -> Reject {
        let (n, name, what) = (bad.field, self.formatter, bad.what);
        let value = String::from_utf8_lossy(self.get(n));
        if bad.pair {
            let hemisphere = String::from_utf8_lossy(self.get(n + 1));
            return malformed(format!("{name} fields {n}-{} ({what}): {value:?},{hemisphere:?} is not valid", n + 1));
        }
        malformed(format!("{name} field {n} ({what}): {value:?} is not valid"))
    }
}

#[cold]
pub(super) fn malformed(detail: String) -> Reject {
    Reject::new(RejectKind::Malformed, detail)
}

/// A place among a sentence's fields: the number of the next field to read.
#[derive(Clone, Copy)]
pub(super) struct Cursor<'t, 'a> {
    fields: &'t Fields<'a>,
    next: usize,
}

impl<'t, 'a: 't> Cursor<'t, 'a> {
    /// The next field, and the place after it.
    #[inline(always)]
    fn take(self) -> (&'a [u8], Self) {
        (self.fields.get(self.next), Cursor { next: self.next + 1, ..self })
    }
}

/// Where a sentence's fields did not fit their grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bad {
    /// The field's number, from 1 after the address.
    pub field: usize,
    /// What the field holds ("UTC time", "latitude").
    pub what: &'static str,
    /// A value and its hemisphere letter, this field and the next read together.
    pub pair: bool,
}

impl ParseError<Cursor<'_, '_>> for Bad {
    fn from_error_kind(input: Cursor<'_, '_>, _: ErrorKind) -> Self {
        Bad { field: input.next, what: "field", pair: false }
    }

    fn append(_: Cursor<'_, '_>, _: ErrorKind, other: Self) -> Self {
        other
    }
}

/// What a field parser returns: the place after the field and the value, or where it
/// stopped. A plain two-way result, so taking it apart is one test: nom's four-way `Err`,
/// with a value's `None` folded into the same tag, was a jump table at every field, and two
/// of them mispredicted on each sentence (cachegrind's branch simulation).
type Step<'t, 'a, T> = Result<(Cursor<'t, 'a>, T), Bad>;

/// A field parser as a nom [`Parser`] whose `process` is always inlined (nom's own for
/// functions is not marked `#[inline]`, and each field was then a call returning its value
/// through memory). A field that does not fit is a failure: nothing else is tried there.
pub(super) struct Inline<F>(F);

impl<'t, 'a: 't, O, F: FnMut(Cursor<'t, 'a>) -> Step<'t, 'a, O>> Parser<Cursor<'t, 'a>> for Inline<F> {
    type Output = O;
    type Error = Bad;

    #[inline(always)]
    fn process<OM: OutputMode>(&mut self, input: Cursor<'t, 'a>) -> PResult<OM, Cursor<'t, 'a>, O, Bad> {
        match (self.0)(input) {
            Ok((rest, value)) => Ok((rest, OM::Output::bind(|| value))),
            Err(bad) => Err(nom::Err::Failure(bad)),
        }
    }
}

#[cold]
fn bad<'t, 'a: 't, T>(at: Cursor<'t, 'a>, what: &'static str, pair: bool) -> Step<'t, 'a, T> {
    Err(Bad { field: at.next, what, pair })
}

/// A field read by `leaf` (which takes the whole field or refuses it); `None` when empty.
#[inline(always)]
pub(super) fn opt<'t, 'a: 't, T>(
    what: &'static str,
    leaf: impl Fn(&'a [u8]) -> Option<T>,
) -> impl Parser<Cursor<'t, 'a>, Output = Option<T>, Error = Bad> {
    Inline(move |at: Cursor<'t, 'a>| -> Step<'t, 'a, Option<T>> {
        let (field, rest) = at.take();
        if field.is_empty() {
            return Ok((rest, None));
        }
        match leaf(field) {
            Some(value) => Ok((rest, Some(value))),
            None => bad(at, what, false),
        }
    })
}

/// A one-letter indicator drawn from `allowed`.
#[inline(always)]
pub(super) fn letter<'t, 'a: 't>(
    what: &'static str,
    allowed: &'static [u8],
) -> impl Parser<Cursor<'t, 'a>, Output = Option<u8>, Error = Bad> {
    opt(what, move |field: &[u8]| match field {
        [c] if allowed.contains(c) => Some(*c),
        _ => None,
    })
}

/// A literal unit or flag letter that carries nothing (`M` after an altitude): `expected` or
/// empty.
#[inline(always)]
pub(super) fn literal<'t, 'a: 't>(
    what: &'static str,
    expected: &'static [u8],
) -> impl Parser<Cursor<'t, 'a>, Output = (), Error = Bad> {
    Inline(move |at: Cursor<'t, 'a>| -> Step<'t, 'a, ()> {
        let (field, rest) = at.take();
        if field.is_empty() || field == expected {
            Ok((rest, ()))
        } else {
            bad(at, what, false)
        }
    })
}

/// A field that carries nothing this codec keeps (VTG's `T` after the true course).
#[inline(always)]
pub(super) fn skip<'t, 'a: 't>() -> impl Parser<Cursor<'t, 'a>, Output = (), Error = Bad> {
    Inline(move |at: Cursor<'t, 'a>| -> Step<'t, 'a, ()> { Ok((at.take().1, ())) })
}

/// A coordinate and its hemisphere letter, two fields: latitude (`max_degrees` 90) or
/// longitude (180). `None` when both are empty.
#[inline(always)]
pub(super) fn coordinate<'t, 'a: 't>(
    max_degrees: u16,
) -> impl Parser<Cursor<'t, 'a>, Output = Option<Coordinate>, Error = Bad> {
    Inline(move |at: Cursor<'t, 'a>| -> Step<'t, 'a, Option<Coordinate>> {
        let (value, rest) = at.take();
        let (hemisphere, rest) = rest.take();
        if value.is_empty() && hemisphere.is_empty() {
            return Ok((rest, None));
        }
        match fields::coordinate(value, hemisphere, max_degrees) {
            Some(c) => Ok((rest, Some(c))),
            None => bad(at, if max_degrees == 90 { "latitude" } else { "longitude" }, true),
        }
    })
}

/// `parser` exactly `times` times, its values folded into `init()` by `f`. Not nom's `fold`,
/// which stops at a parser that consumes nothing, and wants an input it can measure.
#[inline(always)]
pub(super) fn repeat<'t, 'a: 't, P, R>(
    times: usize,
    mut parser: P,
    init: impl Fn() -> R,
    mut f: impl FnMut(R, P::Output) -> R,
) -> impl Parser<Cursor<'t, 'a>, Output = R, Error = Bad>
where
    P: Parser<Cursor<'t, 'a>, Error = Bad>,
{
    Inline(move |mut at: Cursor<'t, 'a>| -> Step<'t, 'a, R> {
        let mut acc = init();
        for _ in 0..times {
            let (rest, value) = match parser.parse(at) {
                Ok(step) => step,
                Err(nom::Err::Error(bad) | nom::Err::Failure(bad)) => return Err(bad),
                Err(nom::Err::Incomplete(_)) => return bad(at, "field", false),
            };
            acc = f(acc, value);
            at = rest;
        }
        Ok((at, acc))
    })
}

/// Runs a sentence's layout over its fields.
#[inline(always)]
pub(super) fn read<'t, 'a: 't, P>(mut layout: P, fields: &'t Fields<'a>) -> Result<P::Output, Reject>
where
    P: Parser<Cursor<'t, 'a>, Error = Bad>,
{
    let start = fields.cursor();
    match layout.parse_complete(start) {
        Ok((_, value)) => Ok(value),
        Err(nom::Err::Error(bad) | nom::Err::Failure(bad)) => Err(fields.describe(bad)),
        Err(nom::Err::Incomplete(_)) => Err(fields.describe(Bad { field: 1, what: "field", pair: false })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Fields<'_> {
        let mut f = Fields::new("TST");
        f.split(Some(text.as_bytes())).unwrap();
        f
    }

    proptest::proptest! {
        /// The word-at-a-time split finds exactly the commas a byte loop finds (commas next
        /// to `-`, the byte the short zero-byte test confuses, included), at every length
        /// and alignment, and refuses too many fields as the byte loop did.
        #[test]
        fn the_field_split_is_the_plain_one(text in "[,\\-0-9A-Z.]{0,120}") {
            let plain: Vec<usize> =
                text.bytes().enumerate().filter(|&(_, b)| b == b',').map(|(i, _)| i).chain([text.len()]).collect();
            let mut f = Fields::new("TST");
            match f.split(Some(text.as_bytes())) {
                Ok(()) => {
                    let ends: Vec<usize> = f.ends[..f.len].iter().map(|&e| usize::from(e)).collect();
                    proptest::prop_assert_eq!(ends, plain);
                }
                Err(_) => proptest::prop_assert!(plain.len() > MAX_FIELDS),
            }
        }
    }

    #[test]
    fn fields_left_off_the_end_read_as_empty() {
        let f = split("7,A");
        let layout = (opt("a", fields::unsigned::<u8>), letter("b", b"AV"), coordinate(90), opt("c", fields::decimal));
        let (a, b, lat, c) = read(layout, &f).unwrap();
        assert_eq!((a, b, lat, c), (Some(7), Some(b'A'), None, None));
        let f = split("1,,3,4");
        let first_three = repeat(3, opt("n", fields::unsigned::<u8>), Vec::new, |mut v: Vec<_>, x| {
            v.push(x);
            v
        });
        assert_eq!(
            read((first_three, opt("n", fields::unsigned::<u8>)), &f).unwrap(),
            (vec![Some(1), None, Some(3)], Some(4))
        );
    }

    /// The error names the field that did not fit: the value of a coordinate pair even when
    /// its hemisphere is what is wrong.
    #[test]
    fn the_error_names_the_field_that_did_not_fit() {
        let f = split("1,2,x,4");
        let layout = (opt("a", fields::unsigned::<u8>), skip(), opt("c", fields::unsigned::<u8>), literal("d", b"M"));
        assert_eq!(read(layout, &f).unwrap_err().to_string(), r#"malformed frame: TST field 3 (c): "x" is not valid"#);
        let f = split("1,N");
        assert_eq!(
            read((skip(), literal("d", b"M")), &f).unwrap_err().to_string(),
            r#"malformed frame: TST field 2 (d): "N" is not valid"#
        );
        let f = split("1,4916.45,E");
        let err = read((skip(), coordinate(90)), &f).unwrap_err().to_string();
        assert_eq!(err, r#"malformed frame: TST fields 2-3 (latitude): "4916.45","E" is not valid"#);
    }
}
