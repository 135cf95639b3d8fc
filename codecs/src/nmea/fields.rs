//! Field grammars of NMEA 0183 (nmea.md §3), parsed with nom over one already-split field.
//!
//! Every parser here takes a whole field and either accepts all of it or fails: a field
//! with a stray character is damage, not a shorter value. Empty fields are "no data" and
//! are handled by the caller before these run.

use nom::branch::alt;
use nom::bytes::complete::{take_while, take_while_m_n};
use nom::character::complete::{char, digit1, one_of};
use nom::combinator::{all_consuming, map_res, opt, recognize};
use nom::{IResult, Parser};

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
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coordinate {
    pub whole_degrees: u16,
    pub minutes: f64,
    /// `N`, `S`, `E` or `W`.
    pub hemisphere: u8,
}

impl Coordinate {
    pub fn degrees(self) -> f64 {
        let v = f64::from(self.whole_degrees) + self.minutes / 60.0;
        if matches!(self.hemisphere, b'S' | b'W') {
            -v
        } else {
            v
        }
    }
}

type Res<'a, T> = IResult<&'a str, T>;

/// Zero or more ASCII digits. Not nom's `digit0`: in nom 8.0.0, when it runs to the end of
/// the input its remainder is not a sub-slice of the input, so an enclosing `recognize`
/// returns a slice cut short (`recognize((char('.'), digit0))` on ".146" gives ".").
fn digits0(i: &str) -> Res<'_, &str> {
    take_while(|c: char| c.is_ascii_digit()).parse(i)
}

fn two_digits(i: &str) -> Res<'_, u8> {
    map_res(take_while_m_n(2, 2, |c: char| c.is_ascii_digit()), str::parse::<u8>).parse(i)
}

/// `hhmmss` with an optional `.f…` of up to 9 digits.
pub fn time(field: &str) -> Option<NmeaTime> {
    let (_, (hour, minute, second, frac)) =
        all_consuming((two_digits, two_digits, two_digits, opt((char('.'), digits0)))).parse(field).ok()?;
    let (fraction, fraction_digits) = match frac {
        None => (0, 0),
        // A bare trailing dot ("123519.") is written by some receivers: no fraction.
        Some((_, "")) => (0, 0),
        Some((_, digits)) if digits.len() <= 9 => (digits.parse().ok()?, digits.len() as u8),
        Some(_) => return None,
    };
    (hour <= 23 && minute <= 59 && second <= 60).then_some(NmeaTime { hour, minute, second, fraction, fraction_digits })
}

/// `ddmmyy`, validated as a real calendar date.
pub fn date(field: &str) -> Option<NmeaDate> {
    let (_, (day, month, year2)) = all_consuming((two_digits, two_digits, two_digits)).parse(field).ok()?;
    let d = NmeaDate { day, month, year2 };
    d.date().map(|_| d)
}

fn decimal_text(i: &str) -> Res<'_, &str> {
    recognize((
        opt(one_of("+-")),
        alt((recognize((digit1, opt((char('.'), digits0)))), recognize((char('.'), digit1)))),
    ))
    .parse(i)
}

/// A decimal number: optional sign, digits, optional fraction. No exponents, no `inf`/`NaN`
/// (which `f64::from_str` would accept), and nothing so long that it overflows to infinity
/// (300 digits of zeros after an 8 is a finite-looking field that `f64` cannot hold).
pub fn decimal(field: &str) -> Option<f64> {
    let (_, text) = all_consuming(decimal_text).parse(field).ok()?;
    text.parse().ok().filter(|v: &f64| v.is_finite())
}

/// An unsigned integer of plain digits (leading zeros allowed).
pub fn unsigned<T: std::str::FromStr>(field: &str) -> Option<T> {
    let (_, digits) = all_consuming(digit1::<&str, nom::error::Error<&str>>).parse(field).ok()?;
    digits.parse().ok()
}

/// A signed integer: optional sign then digits.
pub fn signed<T: std::str::FromStr>(field: &str) -> Option<T> {
    let (_, text) =
        all_consuming(recognize((opt(one_of("+-")), digit1::<&str, nom::error::Error<&str>>))).parse(field).ok()?;
    text.parse().ok()
}

/// `ddmm.mmmm` (latitude, `max_degrees` 90) or `dddmm.mmmm` (longitude, 180) with its
/// hemisphere letter. The two digits left of the point are whole minutes; everything before
/// them is degrees, so a missing leading zero still reads right.
pub fn coordinate(value: &str, hemisphere: &str, max_degrees: u16) -> Option<Coordinate> {
    let hemi = match (max_degrees, hemisphere) {
        (90, "N" | "S") | (180, "E" | "W") => hemisphere.as_bytes()[0],
        _ => return None,
    };
    let (_, (int_part, frac)) =
        all_consuming((digit1::<&str, nom::error::Error<&str>>, opt(recognize((char('.'), digits0)))))
            .parse(value)
            .ok()?;
    let split = int_part.len().saturating_sub(2);
    let (deg_text, min_int) = int_part.split_at(split);
    let whole_degrees: u16 = if deg_text.is_empty() { 0 } else { deg_text.parse().ok()? };
    let minutes_text = &value[split..int_part.len() + frac.map_or(0, str::len)];
    let minutes: f64 = if min_int.is_empty() { 0.0 } else { minutes_text.parse().ok()? };
    let c = Coordinate { whole_degrees, minutes, hemisphere: hemi };
    (minutes < 60.0 && c.degrees().abs() <= f64::from(max_degrees)).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_running_to_the_end_of_the_field_are_kept_whole() {
        // Regression: nom 8.0.0's digit0 under recognize cut these to "0." and "4404.".
        assert_eq!(decimal("0.146"), Some(0.146));
        assert_eq!(coordinate("4404.13993", "N", 90).map(|c| c.minutes), Some(4.13993));
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

    #[test]
    fn coordinates() {
        let c = coordinate("4404.13993", "N", 90).unwrap();
        assert!((c.degrees() - 44.068_998_833).abs() < 1e-9);
        let c = coordinate("12118.86023", "W", 180).unwrap();
        assert!((c.degrees() + 121.314_337_166).abs() < 1e-9);
        // No leading zero: still degrees 13, minutes 53.52.
        let c = coordinate("1353.52", "E", 180).unwrap();
        assert_eq!(c.whole_degrees, 13);
        assert!((c.degrees() - 13.892).abs() < 1e-12);
        assert!(coordinate("4404.1", "E", 90).is_none(), "lat with E");
        assert!(coordinate("4404.1", "", 90).is_none(), "no hemisphere");
        assert!(coordinate("9100.0", "N", 90).is_none(), "beyond the pole");
        assert!(coordinate("4460.0", "N", 90).is_none(), "60 minutes");
        assert!(coordinate("-4404.1", "N", 90).is_none(), "sign instead of hemisphere");
        assert!(coordinate("44x4.1", "N", 90).is_none());
    }
}
