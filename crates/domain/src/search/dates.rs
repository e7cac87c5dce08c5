//! FHIR dates, dateTimes and instants as ranges of epoch milliseconds: `2026` is the whole
//! year, `2026-03` the month, `2026-03-04` the day, a dateTime with seconds that second.
//!
//! The grammar is the one of http://hl7.org/fhir/R4/datatypes.html#dateTime, plus the
//! minute precision (`2026-03-04T10:30`) that only search values may use
//! (http://hl7.org/fhir/R4/search.html#date).

use time::{Date, Month};

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_DAY: i64 = 24 * 60 * MS_PER_MINUTE;
/// The Julian day number of 1970-01-01, the Unix epoch.
const EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// The range `[low, high]` (both inclusive, in epoch milliseconds) a FHIR date, dateTime or
/// instant covers, or `None` if `value` is not one. Values without a time zone are read as UTC.
///
/// A fraction of a second narrows the range to its own precision (`.5` is 100 ms wide, `.500`
/// one millisecond); digits past the millisecond are dropped. A leap second (`:60`) is read as
/// the first second of the next minute, as Unix time does.
pub fn range(value: &str) -> Option<(i64, i64)> {
    let mut cursor = Cursor { rest: value.as_bytes() };

    let year = cursor.digits(4)?;
    if year == 0 {
        return None; // FHIR years start at 0001.
    }
    let year = i32::try_from(year).ok()?;
    if cursor.is_empty() {
        let low = day_start(year, Month::January, 1)?;
        let high = day_start(year, Month::December, 31)? + MS_PER_DAY - 1;
        return Some((low, high));
    }

    cursor.expect(b'-')?;
    let month = Month::try_from(u8::try_from(cursor.digits(2)?).ok()?).ok()?;
    if cursor.is_empty() {
        let low = day_start(year, month, 1)?;
        let high = day_start(year, month, month.length(year))? + MS_PER_DAY - 1;
        return Some((low, high));
    }

    cursor.expect(b'-')?;
    let day = day_start(year, month, u8::try_from(cursor.digits(2)?).ok()?)?;
    if cursor.is_empty() {
        return Some((day, day + MS_PER_DAY - 1));
    }

    cursor.expect(b'T')?;
    let hour = cursor.digits(2)?;
    cursor.expect(b':')?;
    let minute = cursor.digits(2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut low = day + i64::from(hour * 60 + minute) * MS_PER_MINUTE;
    let mut width = MS_PER_MINUTE;

    if cursor.eat(b':') {
        let second = cursor.digits(2)?;
        if second > 60 {
            return None;
        }
        low += i64::from(second) * MS_PER_SECOND;
        width = MS_PER_SECOND;

        if cursor.eat(b'.') {
            let digits = cursor.take_digits();
            if digits.is_empty() {
                return None;
            }
            // Only the first three digits count; a shorter fraction covers its whole tenth or
            // hundredth of a second.
            for &digit in digits.iter().take(3) {
                width /= 10;
                low += i64::from(digit - b'0') * width;
            }
        }
    }

    let offset = cursor.zone()?;
    if !cursor.is_empty() {
        return None;
    }
    low -= offset;
    Some((low, low + width - 1))
}

/// Epoch milliseconds of midnight UTC starting the given day, if that day exists.
fn day_start(year: i32, month: Month, day: u8) -> Option<i64> {
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some((i64::from(date.to_julian_day()) - EPOCH_JULIAN_DAY) * MS_PER_DAY)
}

/// A position in the text being parsed.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl Cursor<'_> {
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        match self.rest.split_first() {
            Some((&first, rest)) if first == byte => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// Exactly `count` ASCII digits, as a number.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let digits = self.rest.get(..count)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.rest = &self.rest[count..];
        Some(digits.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
    }

    /// All ASCII digits that come next (possibly none).
    fn take_digits(&mut self) -> &[u8] {
        let end = self.rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(self.rest.len());
        let (digits, rest) = self.rest.split_at(end);
        self.rest = rest;
        digits
    }

    /// The zone's offset from UTC in milliseconds: `Z`, `+hh:mm` or `-hh:mm` (at most 14:00,
    /// as FHIR allows), or 0 when there is none.
    fn zone(&mut self) -> Option<i64> {
        if self.is_empty() || self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else {
            self.expect(b'-')?;
            -1
        };
        let hours = self.digits(2)?;
        self.expect(b':')?;
        let minutes = self.digits(2)?;
        if minutes > 59 || hours > 14 || (hours == 14 && minutes > 0) {
            return None;
        }
        Some(sign * i64::from(hours * 60 + minutes) * MS_PER_MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::range;

    /// Checks `range(value)` against `expect`, given as RFC 3339 instants so that tests read as
    /// dates rather than numbers.
    fn check(value: &str, expect: Option<(&str, &str)>) {
        let parse = |s: &str| {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|e| panic!("bad expectation {s}: {e}"));
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("in range")
        };
        let expect = expect.map(|(low, high)| (parse(low), parse(high)));
        assert_eq!(range(value), expect, "range({value:?})");
    }

    #[test]
    fn precisions() {
        let cases = [
            ("2026", ("2026-01-01T00:00:00Z", "2026-12-31T23:59:59.999Z")),
            ("2024-02", ("2024-02-01T00:00:00Z", "2024-02-29T23:59:59.999Z")),
            ("2023-02", ("2023-02-01T00:00:00Z", "2023-02-28T23:59:59.999Z")),
            ("2026-04", ("2026-04-01T00:00:00Z", "2026-04-30T23:59:59.999Z")),
            ("2026-12", ("2026-12-01T00:00:00Z", "2026-12-31T23:59:59.999Z")),
            ("2026-03-04", ("2026-03-04T00:00:00Z", "2026-03-04T23:59:59.999Z")),
            ("2024-02-29", ("2024-02-29T00:00:00Z", "2024-02-29T23:59:59.999Z")),
            ("2026-03-04T10:30", ("2026-03-04T10:30:00Z", "2026-03-04T10:30:59.999Z")),
            ("2026-03-04T10:30Z", ("2026-03-04T10:30:00Z", "2026-03-04T10:30:59.999Z")),
            ("2026-03-04T10:30:15Z", ("2026-03-04T10:30:15Z", "2026-03-04T10:30:15.999Z")),
            ("2026-03-04T10:30:15", ("2026-03-04T10:30:15Z", "2026-03-04T10:30:15.999Z")),
            ("2026-03-04T10:30:15.5Z", ("2026-03-04T10:30:15.5Z", "2026-03-04T10:30:15.599Z")),
            ("2026-03-04T10:30:15.25Z", ("2026-03-04T10:30:15.25Z", "2026-03-04T10:30:15.259Z")),
            ("2026-03-04T10:30:15.123Z", ("2026-03-04T10:30:15.123Z", "2026-03-04T10:30:15.123Z")),
            ("2026-03-04T10:30:15.123456789Z", ("2026-03-04T10:30:15.123Z", "2026-03-04T10:30:15.123Z")),
            ("2026-03-04T10:30:15.000Z", ("2026-03-04T10:30:15Z", "2026-03-04T10:30:15Z")),
            ("0001", ("0001-01-01T00:00:00Z", "0001-12-31T23:59:59.999Z")),
            ("9999-12-31", ("9999-12-31T00:00:00Z", "9999-12-31T23:59:59.999Z")),
            ("1969-12-31T23:59:59.999Z", ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z")),
            ("1970-01-01T00:00:00Z", ("1970-01-01T00:00:00Z", "1970-01-01T00:00:00.999Z")),
        ];
        for (value, expect) in cases {
            check(value, Some(expect));
        }
    }

    #[test]
    fn zones() {
        let cases = [
            ("2026-03-04T10:30:15+02:00", ("2026-03-04T08:30:15Z", "2026-03-04T08:30:15.999Z")),
            ("2026-03-04T10:30:15-05:30", ("2026-03-04T16:00:15Z", "2026-03-04T16:00:15.999Z")),
            ("2026-03-04T01:00:00+14:00", ("2026-03-03T11:00:00Z", "2026-03-03T11:00:00.999Z")),
            ("2026-03-04T23:00:00-12:00", ("2026-03-05T11:00:00Z", "2026-03-05T11:00:00.999Z")),
            ("2026-03-04T10:30:15+00:00", ("2026-03-04T10:30:15Z", "2026-03-04T10:30:15.999Z")),
            ("2026-03-04T10:30:15-00:00", ("2026-03-04T10:30:15Z", "2026-03-04T10:30:15.999Z")),
            ("2026-03-04T10:30+01:00", ("2026-03-04T09:30:00Z", "2026-03-04T09:30:59.999Z")),
            ("2026-03-04T10:30:15.5+01:00", ("2026-03-04T09:30:15.5Z", "2026-03-04T09:30:15.599Z")),
            // A leap second is the first second of the next minute.
            ("2016-12-31T23:59:60Z", ("2017-01-01T00:00:00Z", "2017-01-01T00:00:00.999Z")),
        ];
        for (value, expect) in cases {
            check(value, Some(expect));
        }
    }

    #[test]
    fn rejects() {
        let cases = [
            "",
            "garbage",
            "0000",
            "202",
            "20260",
            "2026-",
            "2026-1",
            "2026-00",
            "2026-13",
            "2026-1-01",
            "2026-02-30",
            "2023-02-29",
            "2026-04-31",
            "2026-03-00",
            "2026-03-32",
            "2026/03/04",
            "2026-03-04T",
            "2026-03-04T10",
            "2026-03-04T10:3",
            "2026-03-04T24:00",
            "2026-03-04T24:00:00Z",
            "2026-03-04T10:60",
            "2026-03-04T10:30:61Z",
            "2026-03-04T10:30:1Z",
            "2026-03-04T10:30:15.Z",
            "2026-03-04T10:30:15.",
            "2026-03-04T10:30:15.12a",
            "2026-03-04 10:30:15Z",
            "2026-03-04t10:30:15Z",
            "2026-03-04T10:30:15z",
            "2026-03-04T10:30:15+0200",
            "2026-03-04T10:30:15+02",
            "2026-03-04T10:30:15+2:00",
            "2026-03-04T10:30:15+15:00",
            "2026-03-04T10:30:15+14:30",
            "2026-03-04T10:30:15+01:60",
            "2026-03-04T10:30:15Z ",
            "2026-03-04T10:30:15ZZ",
            "2026-03-04T10:30:15+02:00x",
            "2026-03-04Z",
            "2026Z",
            " 2026",
            "2026-03-04x",
            "+2026",
            "١٢٣٤",
        ];
        for value in cases {
            check(value, None);
        }
    }
}
