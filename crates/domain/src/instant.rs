//! Server timestamps: stored as milliseconds since the Unix epoch, rendered as FHIR `instant`s
//! (UTC, millisecond precision) and as HTTP dates (second precision, RFC 9110).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Render epoch milliseconds as a FHIR instant such as `2026-11-24T04:32:27.123Z`.
pub fn to_fhir(ms: i64) -> String {
    let t = from_ms(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parse a FHIR instant or dateTime with a time zone (as used by `_since`) into epoch milliseconds.
/// A date without time (`2026-11-24`) means its first instant in UTC.
pub fn parse(value: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Some(to_ms(t));
    }
    let date = time::Date::parse(value, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some(to_ms(date.midnight().assume_utc()))
}

/// Epoch milliseconds as a `SystemTime`, for HTTP date headers.
pub fn to_system_time(ms: i64) -> std::time::SystemTime {
    from_ms(ms).into()
}

/// A `SystemTime` as epoch milliseconds.
pub fn from_system_time(t: std::time::SystemTime) -> i64 {
    to_ms(OffsetDateTime::from(t))
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_at_millisecond_precision() {
        let ms = 1_795_493_547_123;
        let text = to_fhir(ms);
        assert_eq!(text, "2026-11-24T04:12:27.123Z");
        assert_eq!(parse(&text), Some(ms));
    }

    #[test]
    fn since_accepts_offsets_and_plain_dates() {
        assert_eq!(parse("2026-11-24T05:12:27.123+01:00"), Some(1_795_493_547_123));
        assert_eq!(parse("1970-01-02"), Some(86_400_000));
        assert_eq!(parse("yesterday"), None);
    }
}
