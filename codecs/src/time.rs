//! UTC instants as the record carries them: RFC 3339 with a `Z`, milliseconds only when the
//! protocol carried sub-second precision. Civil-date arithmetic is the days-from-civil
//! algorithm (proleptic Gregorian), which is all the protocols here need; no time zone data.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MS_PER_DAY: i64 = 86_400_000;

/// Days from 1970-01-01 to 1 January of 2000 + index: the years trackers report (two-digit
/// years from 2000, or a byte), so their dates skip the general civil-date divisions.
/// One entry past 2255, so a year's length (and so whether it is a leap year) is the
/// difference of two neighbours.
static YEAR_STARTS_FROM_2000: [i32; 257] = {
    let mut starts = [0i32; 257];
    let mut days = 10_957; // 1970-01-01 to 2000-01-01
    let mut i = 0;
    while i < 257 {
        starts[i] = days;
        days += if is_leap(2000 + i as i32) { 366 } else { 365 };
        i += 1;
    }
    starts
};

/// Days of a common year before each month.
const DAYS_BEFORE_MONTH: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// Year 2000 + `i` of the table (`i` below 256): the days from 1970-01-01 to its 1 January,
/// and whether it is a leap year (its length, from the next entry).
#[inline(always)]
fn table_year(i: usize) -> (i64, bool) {
    let (start, next) = (YEAR_STARTS_FROM_2000[i], YEAR_STARTS_FROM_2000[i + 1]);
    (i64::from(start), next - start == 366)
}

/// Days since 1970-01-01 of an existing date of a table year: `month` 1-12, `day` from 1.
#[inline(always)]
fn table_days(year_start: i64, leap: bool, month: u8, day: u8) -> i64 {
    year_start
        + i64::from(DAYS_BEFORE_MONTH[usize::from(month - 1)])
        + i64::from((month > 2) & leap)
        + i64::from(day - 1)
}

/// An instant in UTC, to the millisecond, and whether the source carried milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp {
    unix_ms: i64,
    has_millis: bool,
}

/// A calendar date (proleptic Gregorian), validated on construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// `None` unless the day exists in that month of that year (years 0–9999).
    #[inline]
    pub fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        ((0..=9999).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
            .then_some(Date { year, month, day })
    }

    pub fn year(self) -> i32 {
        self.year
    }
    pub fn month(self) -> u8 {
        self.month
    }
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01.
    #[inline]
    pub fn days_since_epoch(self) -> i64 {
        // Every binary fix converts a date, so this is on the decoders' hot path: the general
        // arithmetic's divisions were a tenth of a GT06 view decode.
        match usize::try_from(self.year - 2000) {
            Ok(i) if i + 1 < YEAR_STARTS_FROM_2000.len() => {
                let (start, leap) = table_year(i);
                table_days(start, leap, self.month, self.day)
            }
            _ => days_from_civil(self.year, self.month, self.day),
        }
    }

    pub fn from_days_since_epoch(days: i64) -> Option<Self> {
        let (y, m, d) = civil_from_days(days);
        Date::new(y, m, d)
    }

    /// The date `delta` days later (or earlier).
    pub fn add_days(self, delta: i64) -> Option<Self> {
        Date::from_days_since_epoch(self.days_since_epoch().checked_add(delta)?)
    }
}

const fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in each month of a common year; index 0 (no month) has none.
const DAYS_IN_MONTH: [u8; 13] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// A table and non-short-circuit logic, not a match: a stream from many devices carries
/// many months, and the match's branches on the month were mispredicted (5 % of a JT808
/// location view on the bench's random dates, when those went through here).
#[inline]
fn days_in_month(y: i32, m: u8) -> u8 {
    if usize::from(m) < DAYS_IN_MONTH.len() {
        month_len(m, is_leap(y))
    } else {
        0
    }
}

/// Days in `month` (0-12; 0 has none) of a year that is or is not a leap year.
#[inline(always)]
fn month_len(month: u8, leap: bool) -> u8 {
    DAYS_IN_MONTH[usize::from(month)] + u8::from((month == 2) & leap)
}

// Howard Hinnant's days_from_civil / civil_from_days, in i64 so no input can overflow.
fn days_from_civil(y: i32, m: u8, d: u8) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (i32::try_from(y).unwrap_or(i32::MAX), m, d)
}

impl Timestamp {
    /// From a date and a time of day. `second` may be 60 (a leap second), which lands on the
    /// next second as Unix time has no leap seconds. `None` for an impossible time.
    #[inline]
    pub fn from_date_time(date: Date, hour: u8, minute: u8, second: u8, millis: Option<u16>) -> Option<Self> {
        if hour > 23 || minute > 59 || second > 60 || millis.is_some_and(|ms| ms > 999) {
            return None;
        }
        let ms_of_day = ((i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second)) * 1000
            + i64::from(millis.unwrap_or(0));
        Some(Timestamp { unix_ms: date.days_since_epoch() * MS_PER_DAY + ms_of_day, has_millis: millis.is_some() })
    }

    /// From the `[YY, MM, DD, hh, mm, ss]` values binary trackers send (years from 2000), in
    /// a device clock `utc_offset_minutes` ahead of UTC. `None` for an impossible date or
    /// time (such as the all-zero time of a tracker without one).
    // Inline: every binary fix comes through here, and without LTO a caller in another
    // crate paid a call and a stall reloading the result (BENCHMARKS.md, GT06 and JT808).
    #[inline]
    pub fn from_local_fields(fields: [u8; 6], utc_offset_minutes: i32) -> Option<Self> {
        let [yy, month, day, hour, minute, second] = fields;
        // Years 2000-2255, all in the year table: the date is checked and counted from the
        // tables in one go, with no branch per field (`Date::new` then `days_since_epoch`
        // was half of a JT808 fix's time; the tests hold the two ways to each other).
        let (start, leap) = table_year(usize::from(yy));
        let bad = !(1..=12).contains(&month) | (day == 0) | (hour > 23) | (minute > 59) | (second > 60);
        if bad || day > month_len(month, leap) {
            return None;
        }
        let days = table_days(start, leap, month, day);
        let seconds = (i64::from(hour) * 60 + i64::from(minute)) * 60 + i64::from(second);
        let local = Timestamp { unix_ms: days * MS_PER_DAY + seconds * 1000, has_millis: false };
        Some(local.shifted_minutes(-utc_offset_minutes))
    }

    pub fn from_unix_ms(unix_ms: i64, has_millis: bool) -> Self {
        Timestamp { unix_ms, has_millis }
    }

    /// Now, from the system clock, to the millisecond.
    pub fn from_system_time(t: SystemTime) -> Self {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        Timestamp { unix_ms: ms, has_millis: true }
    }

    #[inline]
    pub fn unix_ms(self) -> i64 {
        self.unix_ms
    }

    /// The UTC calendar date and time of day (hour, minute, second) of this instant.
    pub fn date_time(self) -> (Date, u8, u8, u8) {
        let days = self.unix_ms.div_euclid(MS_PER_DAY);
        let secs = self.unix_ms.rem_euclid(MS_PER_DAY) / 1000;
        let date = Date::from_days_since_epoch(days).unwrap_or(Date { year: 1970, month: 1, day: 1 });
        (date, (secs / 3600) as u8, (secs / 60 % 60) as u8, (secs % 60) as u8)
    }

    pub fn has_millis(self) -> bool {
        self.has_millis
    }

    /// This instant shifted by `offset_minutes` (used to turn device-local times into UTC).
    #[inline]
    pub fn shifted_minutes(self, offset_minutes: i32) -> Self {
        Timestamp { unix_ms: self.unix_ms + i64::from(offset_minutes) * 60_000, ..self }
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.unix_ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(self.unix_ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(self.unix_ms.unsigned_abs())
        }
    }

    /// Parses RFC 3339 (`2017-01-10T00:10:31Z`, `…31.250Z`, `…31+08:00`). Sub-millisecond
    /// digits are truncated.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = b.get(r)?;
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(part).ok()?.parse().ok()
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let date = Date::new(
            i32::try_from(num(0..4)?).ok()?,
            u8::try_from(num(5..7)?).ok()?,
            u8::try_from(num(8..10)?).ok()?,
        )?;
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let (millis, zone) = rfc3339_fraction(&s[19..])?;
        let offset_minutes = rfc3339_offset(zone)?;
        let t = Timestamp::from_date_time(
            date,
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(sec).ok()?,
            millis,
        )?;
        Some(t.shifted_minutes(-offset_minutes))
    }
}

/// The optional fraction after an RFC 3339 time's seconds (`.250`), as milliseconds
/// (sub-millisecond digits truncated), and what follows it.
fn rfc3339_fraction(rest: &str) -> Option<(Option<u16>, &[u8])> {
    let Some(fraction) = rest.strip_prefix('.') else { return Some((None, rest.as_bytes())) };
    let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let kept = &fraction[..digits.min(3)];
    let scale = 10u16.pow(3 - kept.len() as u32);
    Some((Some(kept.parse::<u16>().ok()? * scale), &fraction.as_bytes()[digits..]))
}

/// An RFC 3339 zone (`Z`, `+08:00`, `-03:30`) as minutes east of UTC.
fn rfc3339_offset(zone: &[u8]) -> Option<i32> {
    match zone {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = i32::from(h1 - b'0') * 600
                + i32::from(h2 - b'0') * 60
                + i32::from(m1 - b'0') * 10
                + i32::from(m2 - b'0');
            Some(if *sign == b'-' { -v } else { v })
        }
        _ => None,
    }
}

/// The days from 0000-01-01 to 9999-12-31, as days since 1970-01-01.
const FOUR_DIGIT_DAYS: std::ops::RangeInclusive<i64> = -719_528..=2_932_896;

/// [`civil_from_days`] for the four-digit years, in 32-bit arithmetic (Neri and
/// Schneider's calendar algorithm: every division by a constant the compiler turns into a
/// multiplication, no signed corrections): a third of what writing a time cost went into
/// the general one. `None` outside 0000-01-01..=9999-12-31.
#[inline]
fn four_digit_civil_from_days(days: i64) -> Option<(u32, u8, u8)> {
    if !FOUR_DIGIT_DAYS.contains(&days) {
        return None;
    }
    // Counted from 0000-03-01 less one 400-year cycle, so that every day in range is
    // positive: a year then starts in March, and February's leap day comes last.
    let n = (days + 719_468 + 146_097) as u32;
    let n1 = 4 * n + 3;
    let (century, of_century) = (n1 / 146_097, n1 % 146_097 / 4);
    let n2 = 4 * of_century + 3;
    let p2 = 2_939_745u64 * u64::from(n2);
    let (year_of_century, day_of_year) = ((p2 >> 32) as u32, (p2 as u32) / 2_939_745 / 4);
    let n3 = 2_141 * day_of_year + 197_913;
    let (month, day) = (n3 / 65_536, n3 % 65_536 / 2_141);
    // January and February belong to the next year.
    let january_or_later = u32::from(day_of_year >= 306);
    let year = 100 * century + year_of_century + january_or_later - 400;
    Some((year, (month - 12 * january_or_later) as u8, day as u8 + 1))
}

/// A timestamp's RFC 3339 text, built in place: `YYYY-MM-DDTHH:MM:SS[.mmm]Z`.
struct Rfc3339 {
    bytes: [u8; 24],
    len: usize,
}

impl Rfc3339 {
    /// `None` for years outside 0–9999 (which do not fit four digits): the years a `Date`
    /// holds.
    fn new(t: Timestamp) -> Option<Self> {
        let (year, m, d) = four_digit_civil_from_days(t.unix_ms.div_euclid(MS_PER_DAY))?;
        let ms_of_day = t.unix_ms.rem_euclid(MS_PER_DAY);
        let secs = (ms_of_day / 1000) as u32;
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let two = |b: &mut [u8; 24], at: usize, v: u32| {
            b[at] = b'0' + (v / 10) as u8;
            b[at + 1] = b'0' + (v % 10) as u8;
        };
        two(&mut b, 0, year / 100);
        two(&mut b, 2, year % 100);
        two(&mut b, 5, u32::from(m));
        two(&mut b, 8, u32::from(d));
        two(&mut b, 11, secs / 3600);
        two(&mut b, 14, secs / 60 % 60);
        two(&mut b, 17, secs % 60);
        let len = if t.has_millis {
            let ms = (ms_of_day % 1000) as u32;
            b[20] = b'0' + (ms / 100) as u8;
            two(&mut b, 21, ms % 100);
            24
        } else {
            b[19] = b'Z';
            20
        };
        Some(Rfc3339 { bytes: b, len })
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl Timestamp {
    /// Appends the RFC 3339 text (as `Display` writes it) to `out`, the JSON writer's way.
    pub(crate) fn write_rfc3339(&self, out: &mut Vec<u8>) {
        match Rfc3339::new(*self) {
            // All 24 bytes, then the 4 of a time without milliseconds taken off: a copy of
            // constant size, where one of 20 or 24 bytes was a `memcpy` call.
            Some(text) => {
                out.extend_from_slice(&text.bytes);
                out.truncate(out.len() - (text.bytes.len() - text.len));
            }
            None => out.extend_from_slice(self.to_string().as_bytes()),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Rfc3339::new(*self) {
            Some(text) => f.write_str(text.as_str()),
            // Years beyond four digits (no tracker sends them, but an i64 can hold them).
            None => self.write_general(f),
        }
    }
}

impl Timestamp {
    /// RFC 3339 for any year, through the formatter (the slow path, and the reference the
    /// fast one is tested against).
    fn write_general(&self, f: &mut impl fmt::Write) -> fmt::Result {
        let days = self.unix_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = self.unix_ms.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let secs = ms_of_day / 1000;
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)?;
        if self.has_millis {
            write!(f, ".{:03}", ms_of_day % 1000)?;
        }
        f.write_str("Z")
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // As one string, not through `Display`: the formatter and the serializer's escaping
        // of each formatted piece were a fifth of a record's JSON (the gt06 bench's
        // `trackgate_records_jsonl`).
        match Rfc3339::new(*self) {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.collect_str(self),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom(format!("not an RFC 3339 time: {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The table path of `from_local_fields` against `Date::new`, `from_date_time` and
    /// `shifted_minutes`: every year and day, months and times in and out of range.
    #[test]
    fn local_fields_agree_with_the_general_path() {
        let general = |[yy, month, day, hour, minute, second]: [u8; 6], offset: i32| {
            let date = Date::new(2000 + i32::from(yy), month, day)?;
            Some(Timestamp::from_date_time(date, hour, minute, second, None)?.shifted_minutes(-offset))
        };
        for yy in 0..=255u8 {
            for month in 0..=13u8 {
                for day in 0..=32u8 {
                    for (hour, minute, second, offset) in
                        [(0, 0, 0, 0), (23, 59, 60, 480), (24, 0, 0, 0), (0, 60, 0, -300), (12, 30, 61, 0)]
                    {
                        let fields = [yy, month, day, hour, minute, second];
                        assert_eq!(Timestamp::from_local_fields(fields, offset), general(fields, offset), "{fields:?}");
                    }
                }
            }
        }
    }

    /// The table path of `days_since_epoch` against the general civil-date arithmetic, for
    /// every valid date of the years it covers and the years on either side.
    #[test]
    fn days_since_epoch_agrees_with_the_general_arithmetic_for_every_tracker_date() {
        for year in 1999..=2256 {
            for month in 1..=12 {
                for day in 1..=days_in_month(year, month) {
                    let date = Date::new(year, month, day).unwrap();
                    assert_eq!(date.days_since_epoch(), days_from_civil(year, month, day), "{year}-{month}-{day}");
                }
            }
        }
    }

    #[test]
    fn formats_with_and_without_millis() {
        let d = Date::new(2017, 1, 10).unwrap();
        let t = Timestamp::from_date_time(d, 0, 10, 31, None).unwrap();
        assert_eq!(t.to_string(), "2017-01-10T00:10:31Z");
        assert_eq!(t.unix_ms(), 1_484_007_031_000);
        let t = Timestamp::from_date_time(d, 23, 59, 59, Some(7)).unwrap();
        assert_eq!(t.to_string(), "2017-01-10T23:59:59.007Z");
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(2024, 13, 1).is_none());
        assert!(Date::new(2024, 4, 31).is_none());
        let d = Date::new(2024, 1, 1).unwrap();
        assert!(Timestamp::from_date_time(d, 24, 0, 0, None).is_none());
        assert!(Timestamp::from_date_time(d, 0, 60, 0, None).is_none());
        assert!(Timestamp::from_date_time(d, 0, 0, 61, None).is_none());
    }

    #[test]
    fn leap_second_lands_on_the_next_second() {
        let d = Date::new(2016, 12, 31).unwrap();
        let t = Timestamp::from_date_time(d, 23, 59, 60, None).unwrap();
        assert_eq!(t.to_string(), "2017-01-01T00:00:00Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let t = Timestamp::parse_rfc3339("2019-03-03T10:03:30+08:00").unwrap();
        assert_eq!(t.to_string(), "2019-03-03T02:03:30Z");
        let t = Timestamp::parse_rfc3339("2019-03-03T10:03:30.1234Z").unwrap();
        assert_eq!(t.to_string(), "2019-03-03T10:03:30.123Z");
        assert!(Timestamp::parse_rfc3339("2019-03-03 10:03:30").is_none());
        assert!(Timestamp::parse_rfc3339("2019-02-30T10:03:30Z").is_none());
        assert!(Timestamp::parse_rfc3339("2019-03-03T10:03:30.Z").is_none());
    }

    #[test]
    fn before_the_epoch() {
        let t = Timestamp::from_date_time(Date::new(1969, 12, 31).unwrap(), 23, 0, 0, None).unwrap();
        assert_eq!(t.unix_ms(), -3_600_000);
        assert_eq!(t.to_string(), "1969-12-31T23:00:00Z");
    }

    #[test]
    fn text_at_the_edges_of_four_digit_years() {
        let text = |ms, millis| Timestamp::from_unix_ms(ms, millis).to_string();
        assert_eq!(text(-62_167_219_200_000, false), "0000-01-01T00:00:00Z");
        assert_eq!(text(-62_167_219_200_001, true), "-001-12-31T23:59:59.999Z");
        assert_eq!(text(253_402_300_799_999, true), "9999-12-31T23:59:59.999Z");
        assert_eq!(text(253_402_300_800_000, false), "10000-01-01T00:00:00Z");
        assert_eq!(text(1_484_007_031_007, true), "2017-01-10T00:10:31.007Z");
    }

    /// The 32-bit calendar against the general one on every day of the four-digit years,
    /// and nothing either side of them.
    #[test]
    fn four_digit_days_are_the_general_calendar_s() {
        for days in FOUR_DIGIT_DAYS {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(four_digit_civil_from_days(days), Some((y as u32, m, d)), "day {days}");
        }
        assert_eq!(four_digit_civil_from_days(FOUR_DIGIT_DAYS.start() - 1), None);
        assert_eq!(four_digit_civil_from_days(FOUR_DIGIT_DAYS.end() + 1), None);
        assert_eq!(civil_from_days(*FOUR_DIGIT_DAYS.start()), (0, 1, 1));
        assert_eq!(civil_from_days(*FOUR_DIGIT_DAYS.end()), (9999, 12, 31));
    }

    proptest! {
        #[test]
        fn civil_round_trip(days in -719_468i64..2_932_896) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
            prop_assert!(Date::new(y, m, d).is_some());
        }

        /// The built-in-place text against the formatter's, around and beyond the years
        /// it covers (0–9999), with and without milliseconds; and the JSON is that text.
        #[test]
        fn fast_text_matches_the_formatter(ms in -62_300_000_000_000i64..253_500_000_000_000, has_millis: bool) {
            let t = Timestamp::from_unix_ms(ms, has_millis);
            let mut general = String::new();
            t.write_general(&mut general).unwrap();
            match Rfc3339::new(t) {
                Some(fast) => prop_assert_eq!(fast.as_str(), general.as_str()),
                None => prop_assert!(!(-62_167_219_200_000..253_402_300_800_000).contains(&ms), "{}", general),
            }
            prop_assert_eq!(t.to_string(), general.clone());
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{general}\""));
        }

        #[test]
        fn display_parse_round_trip(ms in 0i64..253_402_300_799_000, has_millis: bool) {
            let ms = if has_millis { ms } else { ms - ms.rem_euclid(1000) };
            let t = Timestamp::from_unix_ms(ms, has_millis);
            prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        }
    }
}
