//! Field grammars of NMEA 0183 (docs/protocols/nmea.md §3), over one already-split field.
//!
//! These are the leaves of the sentence grammar (`grammar.rs`, nom), written by hand: the
//! fields are 1–12 ASCII bytes, and in callgrind nom's per-field combinator chains plus
//! `f64::from_str` were over half of a sentence's parse. Each is a few lines of byte checks,
//! and decimals convert exactly without the general float parser.
//!
//! Every parser here takes a whole field and either accepts all of it or fails: a field
//! with a stray character is damage, not a shorter value. Empty fields are "no data" and
//! are handled by the grammar before these run.

use super::decimal::Decimal;
use crate::time::Date;

/// A time of day in UTC, `hhmmss[.f…]`, with the fraction kept exactly as sent (value and
/// digit count) so it re-encodes to the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmeaTime {
    pub hour: u8,
    pub minute: u8,
    /// 0–60 (60 is a leap second).
    pub second: u8,
    /// The fraction's digits as an integer (`.25` → 25 with 2 digits).
    pub fraction: u32,
    /// How many fraction digits were sent (0–9).
    pub fraction_digits: u8,
}

impl NmeaTime {
    /// Milliseconds of the fraction (truncated), or `None` when the time had no fraction.
    pub fn millis(self) -> Option<u16> {
        if self.fraction_digits == 0 {
            return None;
        }
        let d = u32::from(self.fraction_digits);
        let ms = if d >= 3 { self.fraction / 10u32.pow(d - 3) } else { self.fraction * 10u32.pow(3 - d) };
        u16::try_from(ms).ok()
    }

    /// Milliseconds since midnight.
    pub fn ms_of_day(self) -> i64 {
        ((i64::from(self.hour) * 60 + i64::from(self.minute)) * 60 + i64::from(self.second)) * 1000
            + i64::from(self.millis().unwrap_or(0))
    }
}

/// An RMC date, `ddmmyy`. The two-digit year is kept as sent; [`NmeaDate::date`] places it
/// in 1980–2079, the window GPS receivers can report (the GPS epoch is 1980).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmeaDate {
    pub day: u8,
    pub month: u8,
    pub year2: u8,
}

impl NmeaDate {
    pub fn date(self) -> Option<Date> {
        let year = if self.year2 >= 80 { 1900 } else { 2000 } + i32::from(self.year2);
        Date::new(year, self.month, self.day)
    }
}

/// One coordinate as sent: whole degrees, decimal minutes and the hemisphere letter.
/// Kept in wire form so it re-encodes exactly; [`Coordinate::degrees`] gives WGS-84 decimal
/// degrees with south and west negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Coordinate {
    pub whole_degrees: u16,
    /// Below 60, not negative; written with at least two digits before the point.
    pub minutes: Decimal,
    /// `N`, `S`, `E` or `W`.
    pub hemisphere: u8,
}

impl Coordinate {
    /// Decimal degrees, negative to the south and west: the `f64` nearest the exact value.
    // Inlined into callers in other crates too: called, it was ~6% of a typed RMC read.
    #[inline]
    pub fn degrees(self) -> f64 {
        let m = self.minutes;
        // degrees + digits / 10^s / 60 is (degrees × 60 × 10^s + digits) / (60 × 10^s). With
        // both integers exact in an `f64`, that is one correctly rounded division, where
        // the minutes' division, then a division by 60, then the addition rounded three
        // times and were off by an ulp now and then. (Measured no faster: the typed reads'
        // time did not move.) 60 × 10^s is exact as an `f64` (and below 2^63) wherever it
        // fits a `u64`: its odd part, 3 × 5^(s+1), stays below 2^53.
        let exact = EXACT_POWERS_OF_TEN_U64
            .get(usize::from(m.scale()))
            .and_then(|power| power.checked_mul(60))
            .filter(|_| !m.is_negative())
            .and_then(|den| Some((u64::from(self.whole_degrees).checked_mul(den)?.checked_add(m.digits())?, den)))
            .filter(|&(num, _)| num < 1 << 53);
        let v = match exact {
            Some((num, den)) => num as i64 as f64 / den as i64 as f64,
            // Past 2^53 (more than 11 digits after the point at 180 degrees; no receiver
            // sends that many), or minutes built by hand with a sign.
            None => f64::from(self.whole_degrees) + m.to_f64() / 60.0,
        };
        if matches!(self.hemisphere, b'S' | b'W') {
            -v
        } else {
            v
        }
    }
}

/// The value of a run of ASCII digits, or `None` when a byte is not a digit, the run is
/// empty, or the value overflows a `u32`.
fn digits_value(d: &[u8]) -> Option<u32> {
    if d.is_empty() {
        return None;
    }
    d.iter().try_fold(0u32, |v, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10).then_some(())?;
        v.checked_mul(10)?.checked_add(u32::from(digit))
    })
}

fn all_digits(d: &[u8]) -> bool {
    d.iter().all(u8::is_ascii_digit)
}

/// Two ASCII digits as a number.
fn two_digits(d: &[u8]) -> Option<u8> {
    match d {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// `hhmmss` with an optional `.f…` of up to 9 digits.
// `time`, `decimal` and `coordinate` are `#[inline]`: called, their results went back to the
// sentence parser through memory, written field by field and read back whole, and the
// parser stalled on those reads (a `perf` profile of GGA; BENCHMARKS.md, NMEA, 11-24).
#[inline]
pub fn time(field: &[u8]) -> Option<NmeaTime> {
    let b = field;
    let hour = two_digits(b.get(0..2)?)?;
    let minute = two_digits(b.get(2..4)?)?;
    let second = two_digits(b.get(4..6)?)?;
    let (fraction, fraction_digits) = match &b[6..] {
        [] => (0, 0),
        // A bare trailing dot ("123519.") is written by some receivers: no fraction.
        [b'.'] => (0, 0),
        [b'.', digits @ ..] if digits.len() <= 9 => (digits_value(digits)?, digits.len() as u8),
        _ => return None,
    };
    (hour <= 23 && minute <= 59 && second <= 60).then_some(NmeaTime { hour, minute, second, fraction, fraction_digits })
}

/// `ddmmyy`, validated as a real calendar date.
pub fn date(field: &[u8]) -> Option<NmeaDate> {
    let [d0, d1, m0, m1, y0, y1] = *field else { return None };
    let d = NmeaDate { day: two_digits(&[d0, d1])?, month: two_digits(&[m0, m1])?, year2: two_digits(&[y0, y1])? };
    d.date().map(|_| d)
}

/// Powers of ten that an `f64` holds exactly (10^22 is the largest).
pub(crate) const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// The same powers as integers, up to the 10^19 that a `u64` holds.
pub(crate) const EXACT_POWERS_OF_TEN_U64: [u64; 20] = {
    let mut p = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// A decimal number: optional sign, digits, optional fraction (`5`, `-21.3`, `000.`, `.5`),
/// kept as sent (see [`Decimal`]). No exponents, no `inf`/`NaN` (which `f64::from_str` would
/// accept), and no more than [`Decimal::MAX_DIGITS`] digits.
#[inline]
pub fn decimal(field: &[u8]) -> Option<Decimal> {
    Decimal::parse(field)
}

/// An unsigned integer of plain digits (leading zeros allowed), read as a `u32` first (plain digits only: no sign) and narrowed, rather than through
/// `FromStr`, whose sign and radix handling cost more than the two-digit fields here.
#[inline]
pub fn unsigned<T: TryFrom<u32>>(field: &[u8]) -> Option<T> {
    T::try_from(digits_value(field)?).ok()
}

/// A signed integer: optional sign then digits.
pub fn signed<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    let digits = field.strip_prefix(b"+").or_else(|| field.strip_prefix(b"-")).unwrap_or(field);
    (!digits.is_empty() && all_digits(digits)).then(|| std::str::from_utf8(field).ok()?.parse().ok())?
}

/// `ddmm.mmmm` (latitude, `max_degrees` 90) or `dddmm.mmmm` (longitude, 180) with its
/// hemisphere letter. The two digits left of the point are whole minutes; everything before
/// them is degrees, so a missing leading zero still reads right.
#[inline]
pub fn coordinate(value: &[u8], hemisphere: &[u8], max_degrees: u16) -> Option<Coordinate> {
    let hemi = match (max_degrees, hemisphere) {
        (90, [h @ (b'N' | b'S')]) | (180, [h @ (b'E' | b'W')]) => *h,
        _ => return None,
    };
    // One pass: digits with at most one point, at least one digit before it, and the digits'
    // value as an integer (wrapping: refused below past 19 digits, where it could wrap).
    let b = value;
    let (mut mantissa, mut digits, mut fraction_digits, mut point) = (0u64, 0usize, 0usize, None);
    for (i, &c) in b.iter().enumerate() {
        let digit = c.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(digit));
            digits += 1;
            fraction_digits += usize::from(point.is_some());
        } else if c == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    let int_len = point.unwrap_or(b.len());
    // At most 19 digits, as any decimal (so the integer above did not wrap), also as the
    // encoder writes them back: degrees in their standard width, two whole digits of minutes.
    let degree_digits = if max_degrees < 100 { 2 } else { 3 };
    if int_len == 0 || digits > Decimal::MAX_DIGITS || degree_digits + 2 + fraction_digits > Decimal::MAX_DIGITS {
        return None;
    }
    // The last two whole digits and the fraction are the minutes: one split of the integer.
    let fraction_scale = EXACT_POWERS_OF_TEN_U64[fraction_digits];
    let whole_degrees = u16::try_from(mantissa / (100 * fraction_scale)).ok()?;
    let minutes = mantissa % (100 * fraction_scale);
    // Under 60 minutes, and within the limit: at the limit itself in whole degrees, only
    // with no minutes at all.
    let in_range = minutes < 60 * fraction_scale
        && (whole_degrees < max_degrees || (whole_degrees == max_degrees && minutes == 0));
    // Two whole digits of minutes, as the encoder writes them, even when fewer were sent
    // (`5.5`): a sentence read back from its encoding is the same sentence.
    let minutes = Decimal::from_parts(minutes, fraction_digits as u8, 2 + fraction_digits as u8);
    in_range.then_some(Coordinate { whole_degrees, minutes, hemisphere: hemi })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The grammars take bytes; the cases here are written as text.
    fn time(field: &str) -> Option<NmeaTime> {
        super::time(field.as_bytes())
    }
    fn date(field: &str) -> Option<NmeaDate> {
        super::date(field.as_bytes())
    }
    /// The value, which is what most cases here are about (the text is `Decimal`'s tests').
    fn decimal(field: &str) -> Option<f64> {
        super::decimal(field.as_bytes()).map(Decimal::to_f64)
    }
    fn unsigned<T: TryFrom<u32>>(field: &str) -> Option<T> {
        super::unsigned(field.as_bytes())
    }
    fn signed<T: std::str::FromStr>(field: &str) -> Option<T> {
        super::signed(field.as_bytes())
    }
    fn coordinate(value: &str, hemisphere: &str, max_degrees: u16) -> Option<Coordinate> {
        super::coordinate(value.as_bytes(), hemisphere.as_bytes(), max_degrees)
    }

    #[test]
    fn fractions_running_to_the_end_of_the_field_are_kept_whole() {
        // Regression from the nom-based grammars: nom 8.0.0's digit0 under recognize cut these
        // to "0." and "4404.".
        assert_eq!(decimal("0.146"), Some(0.146));
        assert_eq!(coordinate("4404.13993", "N", 90).map(|c| c.minutes.to_f64()), Some(4.13993));
    }

    #[test]
    fn times() {
        let t = time("001031.00").unwrap();
        assert_eq!((t.hour, t.minute, t.second, t.fraction, t.fraction_digits), (0, 10, 31, 0, 2));
        assert_eq!(t.millis(), Some(0));
        assert_eq!(time("160012.71").unwrap().millis(), Some(710));
        assert_eq!(time("003832.000").unwrap().millis(), Some(0));
        assert_eq!(time("133343").unwrap().millis(), None);
        assert_eq!(time("120009.5901").unwrap().millis(), Some(590));
        assert!(time("240000").is_none());
        assert!(time("126000").is_none());
        assert!(time("12000").is_none());
        assert!(time(".000").is_none());
        assert!(time("1200x0").is_none());
        assert!(time("120000.1234567890").is_none());
    }

    #[test]
    fn dates_use_the_gps_century_window() {
        assert_eq!(date("100117").unwrap().date(), Date::new(2017, 1, 10));
        assert_eq!(date("010307").unwrap().date(), Date::new(2007, 3, 1));
        assert_eq!(date("011196").unwrap().date(), Date::new(1996, 11, 1));
        assert!(date("300222").is_none());
        assert!(date("1001170").is_none());
    }

    #[test]
    fn decimals_are_strict() {
        assert_eq!(decimal("0.146"), Some(0.146));
        assert_eq!(decimal("-21.3"), Some(-21.3));
        assert_eq!(decimal("+5"), Some(5.0));
        assert_eq!(decimal("000."), Some(0.0));
        assert_eq!(decimal(".5"), Some(0.5));
        for bad in ["", "1e5", "inf", "NaN", "1.2.3", "1,2", " 1", "-", "."] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
        assert_eq!(unsigned::<u8>("07"), Some(7));
        assert_eq!(unsigned::<u8>("256"), None);
        assert_eq!(unsigned::<u8>("+7"), None);
        assert_eq!(signed::<i8>("-1"), Some(-1));
    }

    proptest::proptest! {
        /// The fast conversion rounds exactly as the standard library's parser does, on
        /// both sides of 2^53, with and without a sign and a fraction; past 19 digits the
        /// field is refused.
        #[test]
        fn decimals_round_like_from_str(
            sign in proptest::sample::select(vec!["", "-", "+"]),
            int in "[0-9]{0,12}",
            frac in proptest::option::of("[0-9]{0,12}"),
        ) {
            let text = format!("{sign}{int}{}", frac.as_ref().map_or(String::new(), |f| format!(".{f}")));
            let digits = int.len() + frac.as_deref().map_or(0, str::len);
            let expected = if digits == 0 || digits > Decimal::MAX_DIGITS {
                None
            } else {
                Some(text.parse::<f64>().unwrap())
            };
            let got = decimal(&text);
            proptest::prop_assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "{:?}", text);
        }

        /// Any text at all: accepted exactly when it is an optional sign, then digits with at
        /// most one point and at least one digit, and then with `from_str`'s value.
        #[test]
        fn decimals_accept_only_their_grammar(text in "[-+0-9.e ]{0,10}") {
            let unsigned = text.strip_prefix(['-', '+']).unwrap_or(&text);
            let grammatical = unsigned.bytes().any(|b| b.is_ascii_digit())
                && unsigned.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && unsigned.bytes().filter(|&b| b == b'.').count() <= 1;
            let expected = grammatical.then(|| text.parse::<f64>().unwrap());
            proptest::prop_assert_eq!(decimal(&text).map(f64::to_bits), expected.map(f64::to_bits), "{:?}", text);
        }

        /// Plain digits only (no sign, which `from_str` would take), with `from_str`'s range.
        #[test]
        fn unsigned_is_from_str_without_signs(text in "[-+0-9 ]{0,12}") {
            let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            proptest::prop_assert_eq!(unsigned::<u8>(&text), plain.then(|| text.parse().ok()).flatten());
            proptest::prop_assert_eq!(unsigned::<u16>(&text), plain.then(|| text.parse().ok()).flatten());
            proptest::prop_assert_eq!(unsigned::<u32>(&text), plain.then(|| text.parse().ok()).flatten());
        }

        #[test]
        fn coordinate_minutes_round_like_from_str(deg in 0u16..=89, min in 0u32..60, frac in "[0-9]{0,14}") {
            let value = format!("{deg:02}{min:02}.{frac}");
            let c = coordinate(&value, "N", 90).unwrap();
            let expected: f64 = format!("{min:02}.{frac}").parse().unwrap();
            proptest::prop_assert_eq!(c.whole_degrees, deg);
            proptest::prop_assert_eq!(c.minutes.to_f64().to_bits(), expected.to_bits());
            let sent = format!("{min:02}.{frac}");
            proptest::prop_assert_eq!(c.minutes.to_string(), sent.trim_end_matches('.'));
        }
    }

    #[test]
    fn long_and_odd_decimals() {
        // Past 2^53 the standard parser takes over, with the same result; past 19 digits
        // the field is refused (a `u64` holds 19).
        let long = "1234567890123456.789";
        assert_eq!(decimal(long), long.parse().ok());
        assert_eq!(decimal("12345678901234567.891"), None);
        assert_eq!(decimal("-0"), Some(-0.0));
        assert!(decimal("-0").unwrap().is_sign_negative());
        let huge = format!("8{}", "0".repeat(400));
        assert_eq!(decimal(&huge), None, "would overflow to infinity");
        assert_eq!(signed::<i16>("+90"), Some(90));
        assert_eq!(signed::<i16>("--9"), None);
        assert_eq!(signed::<i16>("-"), None);
        assert_eq!(unsigned::<u32>(""), None);
        assert!(time("1200").is_none());
        assert!(time("120000.").unwrap().millis().is_none());
        assert!(time("12000a").is_none());
        assert!(date("10011").is_none());
        assert!(date("1o0117").is_none());
        assert!(coordinate(".5", "N", 90).is_none(), "no whole minutes");
        assert!(coordinate("4404.1.2", "N", 90).is_none());
        assert!(coordinate("99999994404.1", "N", 90).is_none(), "degrees overflow");
        assert_eq!(
            coordinate("5.5", "N", 90).map(|c| (c.whole_degrees, c.minutes.to_string())),
            Some((0, "05.5".into()))
        );
        assert!(coordinate("4404.12345678901234567", "N", 90).is_none(), "past 19 digits");
        // 19 digits as written back with two digits of degrees, not as sent.
        assert!(coordinate("4404.123456789012345", "N", 90).is_some());
        assert!(coordinate("04.123456789012345", "N", 90).is_some());
        assert!(coordinate("04.1234567890123456", "N", 90).is_none());
        assert!(coordinate("00004.12345678901234", "E", 180).is_some());
        assert!(coordinate("00004.123456789012345", "E", 180).is_none());
    }

    /// Whether `x` is the `f64` nearest `num / den` (for 1 ≤ x < 2^11, so the comparison
    /// fits `u128`): x = m / 2^k is, when |m·den − num·2^k| is at most half of `den`.
    fn nearest(x: f64, num: u64, den: u64) -> bool {
        let bits = x.to_bits();
        let m = u128::from(bits & ((1 << 52) - 1) | 1 << 52);
        let k = 1075 - ((bits >> 52) & 0x7ff) as u32;
        let (a, b) = (m * u128::from(den), u128::from(num) << k);
        2 * a.abs_diff(b) <= u128::from(den)
    }

    proptest::proptest! {
        /// The degrees are the `f64` nearest the exact value of what was sent wherever the
        /// one-division path takes them (up to 17 digits after the point, the numerator
        /// below 2^53), and within a few ulps on the three-step path past it.
        #[test]
        fn degrees_are_the_nearest_f64(whole in 1u16..=180, minutes in proptest::num::u64::ANY, scale in 0u8..=17) {
            let den = 60 * 10u64.pow(u32::from(scale));
            let digits = minutes % den;
            let c = Coordinate { whole_degrees: whole, minutes: Decimal::new(digits as i64, scale).unwrap(), hemisphere: b'E' };
            let num = u128::from(whole) * u128::from(den) + u128::from(digits);
            match u64::try_from(num).ok().filter(|&n| n < 1 << 53) {
                Some(num) => proptest::prop_assert!(nearest(c.degrees(), num, den), "{}", c.degrees()),
                None => {
                    let approx = f64::from(whole) + digits as f64 / den as f64;
                    proptest::prop_assert!((c.degrees() - approx).abs() <= 4.0 * f64::EPSILON * approx, "{}", c.degrees());
                }
            }
            let west = Coordinate { hemisphere: b'W', ..c };
            proptest::prop_assert_eq!(west.degrees(), -c.degrees());
        }
    }

    #[test]
    fn degrees_are_exact_where_the_text_is() {
        // 48°07.038' is 48.1173° exactly: the nearest f64 is the literal's.
        assert_eq!(coordinate("4807.038", "N", 90).unwrap().degrees(), 48.1173);
        assert_eq!(coordinate("01131.000", "W", 180).unwrap().degrees(), -(11.0 + 31.0 / 60.0));
        // Past 2^53 the three-step path: still within an ulp or two.
        let c = coordinate("17959.123456789012", "E", 180).unwrap();
        assert!((c.degrees() - (179.0 + 59.123_456_789_012 / 60.0)).abs() < 1e-13);
    }

    #[test]
    fn coordinates() {
        let c = coordinate("4404.13993", "N", 90).unwrap();
        assert!((c.degrees() - 44.068_998_833).abs() < 1e-9);
        assert_eq!((c.whole_degrees, c.minutes.to_string()), (44, "04.13993".into()), "kept as sent");
        let c = coordinate("12118.86023", "W", 180).unwrap();
        assert!((c.degrees() + 121.314_337_166).abs() < 1e-9);
        // No leading zero: still degrees 13, minutes 53.52.
        let c = coordinate("1353.52", "E", 180).unwrap();
        assert_eq!(c.whole_degrees, 13);
        assert!((c.degrees() - 13.892).abs() < 1e-12);
        assert!(coordinate("4404.1", "E", 90).is_none(), "lat with E");
        assert!(coordinate("4404.1", "", 90).is_none(), "no hemisphere");
        assert!(coordinate("9100.0", "N", 90).is_none(), "beyond the pole");
        // At the limit the minutes decide; below it they cannot reach it.
        assert!(coordinate("9000.0000", "S", 90).is_some());
        assert!(coordinate("9000.0001", "N", 90).is_none());
        assert!(coordinate("8959.99999999", "N", 90).is_some());
        assert!(coordinate("18000.00", "W", 180).is_some());
        assert!(coordinate("18000.01", "E", 180).is_none());
        assert!(coordinate("17959.9999", "E", 180).is_some());
        assert!(coordinate("4460.0", "N", 90).is_none(), "60 minutes");
        assert!(coordinate("-4404.1", "N", 90).is_none(), "sign instead of hemisphere");
        assert!(coordinate("44x4.1", "N", 90).is_none());
    }
}
