//! [`Decimal`]: a number field as the receiver wrote it.
//!
//! NMEA's numbers are decimal text (`022.4`, `4404.13993`, `-21.30`). Parsed into an `f64`,
//! a value loses what was sent: `0.1` has no exact binary form, `022.40` and `22.4` become
//! the same number, and writing the sentence again means searching for the shortest digits
//! that read back. A `Decimal` keeps the digits, the point's place and the leading zeros,
//! so a parsed sentence re-encodes to the bytes it came from, and the conversion to `f64`
//! (one correctly rounded division) happens only where a value is wanted.

use std::fmt;

use super::fields::EXACT_POWERS_OF_TEN;

/// A decimal number as sent: its digits read as one integer, how many of them follow the
/// point, how many were written in all (leading zeros included) and its sign.
///
/// Equality compares the text, not the value: `22.4`, `022.4` and `22.40` are three
/// different `Decimal`s with one value. Compare [`Decimal::to_f64`] for values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    digits: u64,
    scale: u8,
    width: u8,
    negative: bool,
}

impl Decimal {
    /// The most digits a field may have: every 19-digit integer fits a `u64`.
    pub const MAX_DIGITS: usize = 19;

    /// `digits` / 10^`scale`, written with the fewest digits that show it (a zero before the
    /// point when there is no whole part: `Decimal::new(5, 1)` is `0.5`). `None` when the
    /// text would need more than [`Decimal::MAX_DIGITS`] digits.
    pub fn new(digits: i64, scale: u8) -> Option<Decimal> {
        let magnitude = digits.unsigned_abs();
        let width = digit_count(magnitude).max(u32::from(scale) + 1);
        (width as usize <= Decimal::MAX_DIGITS).then_some(Decimal {
            digits: magnitude,
            scale,
            width: width as u8,
            negative: digits < 0,
        })
    }

    /// The same value written with at least `whole_digits` digits before the point, zeros in
    /// front (`Decimal::new(224, 1)?.with_whole_digits(3)` is `022.4`), as receivers pad
    /// speeds and courses. `None` past [`Decimal::MAX_DIGITS`] digits.
    pub fn with_whole_digits(self, whole_digits: u8) -> Option<Decimal> {
        let width = u32::from(self.scale) + u32::from(whole_digits);
        if width as usize > Decimal::MAX_DIGITS {
            return None;
        }
        Some(Decimal { width: self.width.max(width as u8), ..self })
    }

    /// Plain decimal text: optional sign, digits, at most one point (`5`, `-21.30`, `000.`,
    /// `.5`); nothing else (no exponent, no `inf`). `None` for any other text, no digit at
    /// all, or more than [`Decimal::MAX_DIGITS`] digits.
    #[inline]
    pub fn parse(text: &[u8]) -> Option<Decimal> {
        let (negative, rest) = match text.first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let mut digits = 0u64;
        let mut width = 0usize;
        let mut scale = 0usize;
        let mut point = false;
        for &b in rest {
            let digit = b.wrapping_sub(b'0');
            if digit < 10 {
                // Wrapping: the digit count is checked below, and 19 digits cannot wrap.
                digits = digits.wrapping_mul(10).wrapping_add(u64::from(digit));
                width += 1;
                scale += usize::from(point);
            } else if b == b'.' && !point {
                point = true;
            } else {
                return None;
            }
        }
        (width > 0 && width <= Decimal::MAX_DIGITS).then_some(Decimal {
            digits,
            scale: scale as u8,
            width: width as u8,
            negative,
        })
    }

    /// Built from parts the caller has checked: `digits` below 10^`width`, `scale` at most
    /// `width`, `width` at most [`Decimal::MAX_DIGITS`].
    pub(crate) fn from_parts(digits: u64, scale: u8, width: u8) -> Decimal {
        debug_assert!(usize::from(width) <= Decimal::MAX_DIGITS && scale <= width);
        debug_assert!(digits < 10u64.pow(u32::from(width)));
        Decimal { digits, scale, width, negative: false }
    }

    /// The digits as one integer, without the sign (`-21.30` → 2130).
    pub fn digits(self) -> u64 {
        self.digits
    }

    /// How many digits follow the point (`-21.30` → 2).
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// How many digits were written, leading zeros included (`022.4` → 4).
    pub fn width(self) -> u8 {
        self.width
    }

    /// Whether the text had a `-` (`-0.0` has one and is zero).
    pub fn is_negative(self) -> bool {
        self.negative
    }

    /// The value, rounded to the nearest `f64` as `f64::from_str` rounds the text. Digits
    /// below 2^53 over a power of ten an `f64` holds exactly (every value receivers send)
    /// are one IEEE division, which is correctly rounded (Clinger's fast path); the rest
    /// go through the standard library's parser.
    #[inline]
    pub fn to_f64(self) -> f64 {
        let magnitude = match EXACT_POWERS_OF_TEN.get(usize::from(self.scale)) {
            // Below 2^53 the conversion can go through `i64`: one instruction, where `u64`'s
            // takes several on baseline x86-64.
            Some(power) if self.digits < (1 << 53) => self.digits as i64 as f64 / power,
            _ => self.long_magnitude(),
        };
        if self.negative {
            -magnitude
        } else {
            magnitude
        }
    }

    /// `to_f64`'s magnitude past 2^53, out of line so that the inlined `to_f64` stays a
    /// division (no receiver sends such digits; keeping it out of line measured no faster
    /// on the typed RMC read, but nothing is gained by copying it into every caller).
    #[cold]
    #[inline(never)]
    fn long_magnitude(self) -> f64 {
        let text = self.unsigned_text();
        // Plain digits and a point always parse.
        std::str::from_utf8(text.as_bytes()).ok().and_then(|t| t.parse().ok()).unwrap_or(f64::NAN)
    }

    /// The text without its sign: the digits zero-padded to the width, the point before
    /// the last `scale` of them. `Display` and the encoder's long path both write this.
    pub(crate) fn unsigned_text(self) -> Text {
        let mut text = Text::default();
        text.write_unsigned(self);
        text
    }

    /// The shortest plain decimal that reads back as `v` (`0.1` → `0.1`, never
    /// `0.1000000000000000055…`), or `None` when `v` is not finite or needs more than
    /// [`Decimal::MAX_DIGITS`] digits (values past 10^19, or tiny ones).
    pub fn from_f64(v: f64) -> Option<Decimal> {
        if !v.is_finite() {
            return None;
        }
        let a = v.abs();
        let (digits, scale) = match shortest_up_to_nine(a) {
            Some(found) => found,
            // More than nine fraction digits, or past 2^52: the standard library's shortest
            // text, when it is plain digits short enough.
            None => {
                let text = a.to_string();
                let d = Decimal::parse(text.as_bytes())?;
                (d.digits, d.scale)
            }
        };
        let width = digit_count(digits).max(u32::from(scale) + 1);
        ((width as usize) <= Decimal::MAX_DIGITS).then_some(Decimal {
            digits,
            scale,
            width: width as u8,
            negative: v.is_sign_negative(),
        })
    }
}

impl From<Decimal> for f64 {
    #[inline]
    fn from(d: Decimal) -> f64 {
        d.to_f64()
    }
}

/// The text as it was sent (less a `+`).
impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Text::default();
        if self.negative {
            text.push(b'-');
        }
        text.write_unsigned(*self);
        // Digits, a point and a sign only.
        f.pad(std::str::from_utf8(text.as_bytes()).map_err(|_| fmt::Error)?)
    }
}

impl std::str::FromStr for Decimal {
    type Err = ParseDecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s.as_bytes()).ok_or(ParseDecimalError)
    }
}

/// Text that is not a plain decimal of at most [`Decimal::MAX_DIGITS`] digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseDecimalError;

impl fmt::Display for ParseDecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a plain decimal of at most {} digits", Decimal::MAX_DIGITS)
    }
}

impl std::error::Error for ParseDecimalError {}

/// How many decimal digits `n` has (1 for zero).
fn digit_count(n: u64) -> u32 {
    n.checked_ilog10().map_or(1, |l| l + 1)
}

/// A sign, 19 digits and a point.
#[derive(Default)]
pub(crate) struct Text {
    bytes: [u8; 21],
    len: usize,
}

impl Text {
    fn push(&mut self, b: u8) {
        self.bytes[self.len] = b;
        self.len += 1;
    }

    /// `d`'s digits, zero-padded to its width, the point before the last `scale` of them.
    fn write_unsigned(&mut self, d: Decimal) {
        let width = usize::from(d.width);
        let whole = width - usize::from(d.scale).min(width);
        let mut rest = d.digits;
        let mut digits = [b'0'; Decimal::MAX_DIGITS];
        for slot in digits[..width].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        for (i, &b) in digits[..width].iter().enumerate() {
            if i == whole {
                self.push(b'.');
            }
            self.push(b);
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The fewest fraction digits `k` (0–9) for which `a`'s digits `m`, divided by 10^k, give
/// `a` again: `(m, k)`. That division is how [`Decimal::to_f64`] reads them back (and is
/// correctly rounded, as `f64::from_str` is), so the check is the round trip itself. `None`
/// when no such candidate exists or `a` is not below 2^52 (`a` is finite and not negative).
fn shortest_up_to_nine(a: f64) -> Option<(u64, u8)> {
    // Below 2^50 / 10^9 (about 1.1 million: every NMEA value but large altitudes), the
    // nine-digit candidate settles it in one step. If any candidate of k ≤ 9 digits reads
    // back, it lies within 0.25 of `a` × 10^9 after scaling (half an ulp of `a` times 10^9,
    // plus the product's rounding), so the nine-digit rounding *is* that candidate followed
    // by 9 − k zeros: it reads back too (the same rational, one correctly rounded division),
    // and dropping its trailing zeros gives the fewest digits. When it does not read back,
    // no candidate does: the search below is skipped.
    let scaled = a * 1e9;
    if scaled < 1_125_899_906_842_624.0 {
        let m = (scaled + 0.5) as i64;
        if (m as f64 / 1e9).to_bits() != a.to_bits() {
            return None;
        }
        let mut m = m as u64;
        let mut k = 9u8;
        while k > 0 && m.is_multiple_of(10) {
            m /= 10;
            k -= 1;
        }
        return Some((m, k));
    }
    for (k, &scale) in EXACT_POWERS_OF_TEN.iter().enumerate().take(10) {
        let scaled = a * scale;
        // Below 2^52 adding a half is exact, so the truncation rounds half up (`round` is a
        // library call on baseline x86-64).
        if scaled >= 4_503_599_627_370_496.0 {
            return None;
        }
        // Below 2^52 the conversions can go through `i64`, one instruction each way (`u64`'s
        // take several on baseline x86-64).
        let m = (scaled + 0.5) as i64;
        // A candidate that reads back lies within 1.5 units in the last place of `scaled` of
        // `m` (half an ulp of `a`, times 10^k, is at most an ulp of `scaled`; the
        // multiplication adds half of one), and an ulp of `scaled` is at most `scaled` ×
        // 2^-52: so one farther than `scaled` × 2^-50 cannot read back, and is passed over
        // without the division (most candidates: their fraction is plainly not zero).
        if (scaled - m as f64).abs() > scaled * (1.0 / 1_125_899_906_842_624.0) {
            continue;
        }
        if (m as f64 / scale).to_bits() == a.to_bits() {
            return Some((m as u64, k as u8));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(d: Option<Decimal>) -> String {
        d.expect("a decimal").to_string()
    }

    #[test]
    fn text_comes_back_as_sent() {
        for t in ["022.4", "22.40", "0.146", "-21.30", "-0.0", "5", "000", ".5", "0000000000000000001"] {
            let d = Decimal::parse(t.as_bytes()).unwrap();
            assert_eq!(d.to_string(), t);
            assert_eq!(d.to_f64(), t.parse::<f64>().unwrap(), "{t}");
        }
        // A bare trailing point and a plus sign are the only things not kept.
        assert_eq!(text(Decimal::parse(b"000.")), "000");
        assert_eq!(text(Decimal::parse(b"+5.5")), "5.5");
        assert_eq!(Decimal::parse(b"-0.0").unwrap().to_f64().to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn other_text_is_refused() {
        for t in ["", "-", ".", "1.2.3", "1e5", "inf", "NaN", "1,5", " 1", "12345678901234567890", "--1"] {
            assert_eq!(Decimal::parse(t.as_bytes()), None, "{t:?}");
        }
        assert!(Decimal::parse(b"1234567890123456789").is_some());
        assert_eq!("1.5x".parse::<Decimal>(), Err(ParseDecimalError));
    }

    #[test]
    fn values_are_equal_text_is_not() {
        let a = Decimal::parse(b"22.4").unwrap();
        let b = Decimal::parse(b"022.40").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_f64(), b.to_f64());
        assert_eq!((b.digits(), b.scale(), b.width(), b.is_negative()), (2240, 2, 5, false));
    }

    #[test]
    fn built_decimals_are_written_short() {
        assert_eq!(text(Decimal::new(5, 1)), "0.5");
        assert_eq!(text(Decimal::new(-16873, 2)), "-168.73");
        assert_eq!(text(Decimal::new(0, 0)), "0");
        assert_eq!(text(Decimal::new(7, 3)), "0.007");
        assert_eq!(text(Decimal::new(224, 1).unwrap().with_whole_digits(3)), "022.4");
        assert_eq!(text(Decimal::new(224, 1).unwrap().with_whole_digits(1)), "22.4");
        assert_eq!(Decimal::new(1, 19), None);
        assert_eq!(text(Decimal::new(i64::MIN, 0)), "-9223372036854775808");
        assert_eq!(Decimal::new(1, 2).unwrap().with_whole_digits(18), None);
    }

    #[test]
    fn floats_are_written_short_and_plain() {
        for (v, t) in [
            (12.5, "12.5"),
            (0.146, "0.146"),
            (0.005, "0.005"),
            (5.0, "5"),
            (545.4, "545.4"),
            (-21.3, "-21.3"),
            (-0.0, "-0"),
            (4.13993, "4.13993"),
            (1e-9, "0.000000001"),
            (1e-12, "0.000000000001"),
            (0.1, "0.1"),
            (59.99999, "59.99999"),
            (999_999.999_999_999, "999999.999999999"),
            (1_125_899.5, "1125899.5"),
            (1_125_900.25, "1125900.25"),
            // No candidate of nine digits or fewer reads back: the shortest text that does.
            (0.1 + 0.2, "0.30000000000000004"),
        ] {
            assert_eq!(text(Decimal::from_f64(v)), t, "{v}");
        }
        // Past the nine-digit step's range, one ulp off a short value: no short candidate,
        // the standard library's shortest text.
        let odd = f64::from_bits(2_000_000.3f64.to_bits() + 1);
        assert_eq!(text(Decimal::from_f64(odd)), odd.to_string());
        for v in [f64::NAN, f64::INFINITY, 1e20, 1e-20] {
            assert_eq!(Decimal::from_f64(v), None, "{v}");
        }
    }

    #[test]
    fn long_digits_convert_through_the_standard_parser() {
        for t in ["9007199254740993", "0.1234567890123456789", "1234567890123456789", "1.00000000000000000000"] {
            let Some(d) = Decimal::parse(t.as_bytes()) else { continue };
            assert_eq!(d.to_f64(), t.parse::<f64>().unwrap(), "{t}");
        }
    }

    proptest! {
        /// Any plain decimal text of up to 19 digits reads back as itself, and to the value
        /// `f64::from_str` gives; only text without a digit is refused.
        #[test]
        fn parsed_text_is_kept(sign in "[-+]?", whole in "[0-9]{0,10}", point in any::<bool>(), frac in "[0-9]{0,9}") {
            let t = if point { format!("{sign}{whole}.{frac}") } else { format!("{sign}{whole}") };
            let Some(d) = Decimal::parse(t.as_bytes()) else {
                // Only text without a digit is refused here.
                prop_assert!(whole.is_empty() && (frac.is_empty() || !point), "{}", t);
                return Ok(());
            };
            let expected = t.trim_start_matches('+').trim_end_matches('.');
            prop_assert_eq!(d.to_string(), expected);
            prop_assert_eq!(d.to_f64().to_bits(), t.parse::<f64>().unwrap().to_bits());
        }

        /// Any finite value with a plain text of up to 19 digits comes back through it; the
        /// others have none.
        #[test]
        fn floats_read_back(bits in any::<u64>(), small in -1_000_000i64..1_000_000, scale in 0u8..10) {
            let small = small as f64 / EXACT_POWERS_OF_TEN[usize::from(scale)];
            for v in [f64::from_bits(bits), small] {
                prop_assume!(v.is_finite());
                if let Some(d) = Decimal::from_f64(v) {
                    prop_assert_eq!(d.to_f64().to_bits(), v.to_bits(), "{}", d);
                    prop_assert!(d.to_string().len() <= format!("{v}").len() + 1, "{} {}", d, v);
                } else {
                    let shown = format!("{}", v.abs());
                    // The zero before the point counts: `0.000…` is written in full.
                    prop_assert!(shown.bytes().filter(u8::is_ascii_digit).count() > Decimal::MAX_DIGITS, "{}", shown);
                }
            }
        }

        /// Neither the nine-digit step nor the filter passes over a candidate that reads
        /// back: the digits are those the plain search (every candidate divided back) finds,
        /// for values from text of up to 9 fraction digits and for any bits.
        #[test]
        fn the_candidate_filter_loses_no_candidate(int in 0u64..10_000_000, frac in "[0-9]{0,9}", bits in any::<u64>()) {
            let from_text = Decimal::parse(format!("{int}.{frac}0").as_bytes()).unwrap().to_f64();
            for v in [from_text, f64::from_bits(bits).abs()] {
                prop_assume!(v.is_finite());
                let plain = (0..10).find(|&k| {
                    let scale = EXACT_POWERS_OF_TEN[k];
                    let scaled = v * scale;
                    let m = (scaled + 0.5) as i64;
                    scaled < 4_503_599_627_370_496.0 && (m as f64 / scale).to_bits() == v.to_bits()
                });
                let found = shortest_up_to_nine(v);
                match plain {
                    Some(k) => prop_assert_eq!(found, Some(((v * EXACT_POWERS_OF_TEN[k] + 0.5) as u64, k as u8)), "{}", v),
                    None => prop_assert_eq!(found, None, "{}", v),
                }
            }
        }
    }
}
