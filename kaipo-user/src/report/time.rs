//! Instants for `--from`/`--to` and for the labels of every export: RFC 3339 in UTC or Unix
//! seconds in, RFC 3339 in UTC out (calendar arithmetic in `crate::model::calendar`).

use std::time::Duration;

pub use crate::model::calendar::civil;
use crate::model::calendar::{days_from_civil, days_in_month};

/// The latest instant history can hold: the end of year 9999 (as the store has it).
const LATEST_MS: i64 = 253_402_300_799_999;

/// The range a report covers: `--from`/`--to` when given, otherwise the `since` before `now_ms`.
/// A range that reaches before 1970 or past year 9999 is an error that says which flag did it:
/// the store could only clamp it, and a clamped range would be reported as asked.
///
/// A range that ends "now" is rounded up to a whole second, so that the same command run twice
/// within a second sends the same [`Query`](crate::model::Query): the store caches answers by
/// exact query until the data changes, and the daemon's store lives across invocations, so
/// the second run is a cache hit rather than a fresh scan. Rounding up rather than down keeps
/// the newest interval in the report.
pub fn resolve_range(
    since: Duration,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    now_ms: i64,
) -> Result<(i64, i64), String> {
    let now_ms = now_ms.div_euclid(1000) * 1000 + if now_ms % 1000 == 0 { 0 } else { 1000 };
    let (from, to) = match (from_ms, to_ms) {
        (Some(from), to) => {
            let to = to.unwrap_or(now_ms);
            if from >= to {
                return Err(format!(
                    "--from {} is not before --to {}",
                    rfc3339(from),
                    rfc3339(to)
                ));
            }
            (from, to)
        }
        (None, Some(_)) => return Err("--to needs --from".into()),
        (None, None) => {
            let since_ms = i64::try_from(since.as_millis())
                .ok()
                .filter(|&ms| ms <= now_ms)
                .ok_or_else(|| {
                    format!(
                        "--since {} reaches back before 1970-01-01, where history begins; \
                         ask for at most {}",
                        span(i64::try_from(since.as_millis()).unwrap_or(i64::MAX)),
                        span(now_ms)
                    )
                })?;
            (now_ms - since_ms.max(1), now_ms)
        }
    };
    if from < 0 {
        return Err(format!(
            "--from {} is before 1970-01-01, where history begins",
            rfc3339(from)
        ));
    }
    if to > LATEST_MS {
        return Err(format!(
            "--to {} is after the end of year 9999, the latest time history holds",
            to / 1000
        ));
    }
    Ok((from, to))
}

/// Parses `2026-11-25T10:00:00Z`, `2026-11-25T11:00:00.5+01:00` (any RFC 3339 date-time) or
/// Unix seconds (`1795600800`) into milliseconds since the Unix epoch.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let invalid =
        || format!("'{text}' is not a time; use RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1000))
            .ok_or_else(invalid);
    }
    parse_rfc3339(text.as_bytes()).ok_or_else(invalid)
}

fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    // Fixed layout up to the seconds: YYYY-MM-DDTHH:MM:SS
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[5..7])?;
    let day = digits(&s[8..10])?;
    let hour = digits(&s[11..13])?;
    let minute = digits(&s[14..16])?;
    // 60 is a leap second; it lands on the next minute's first second, which is what a clock
    // without leap seconds shows.
    let second = digits(&s[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let len = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        // Sub-millisecond digits are dropped: the store counts in milliseconds.
        for (i, b) in fraction[..len.min(3)].iter().enumerate() {
            millis += i64::from(b - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[len..];
    }
    let offset_minutes = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 60 + minutes;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(secs * 1000 + millis)
}

fn digits(s: &[u8]) -> Option<i64> {
    s.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

/// `2026-11-25T10:00:00Z`; milliseconds appear only when there are some.
pub fn rfc3339(ms: i64) -> String {
    let [y, mo, d, h, mi, s, milli] = civil(ms);
    if milli == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// A span as its two largest units: `1d`, `1d 6h`, `90m` reads as `1h 30m`, `45s`.
pub fn span(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];
    let mut secs = ms.max(0) / 1000;
    if secs == 0 {
        return format!("{}ms", ms.max(0));
    }
    let mut parts = Vec::with_capacity(2);
    for (unit, name) in UNITS {
        if secs >= unit && parts.len() < 2 {
            parts.push(format!("{}{name}", secs / unit));
            secs %= unit;
        } else if !parts.is_empty() {
            // Only adjacent units: `1d 0h 5m` would be noise, `1d` says enough.
            break;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_600_800_000; // 2026-11-25T10:00:00Z, from `date -u -d ... +%s`

    #[test]
    fn parses_rfc3339_and_unix_seconds() {
        assert_eq!(parse_instant("2026-11-25T10:00:00Z"), Ok(T));
        assert_eq!(parse_instant("1795600800"), Ok(T));
        assert_eq!(parse_instant("2026-11-25t11:30:00.25+01:30"), Ok(T + 250));
        assert_eq!(parse_instant("2026-11-25 05:00:00-05:00"), Ok(T));
        assert_eq!(parse_instant("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_instant("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        for bad in [
            "",
            "yesterday",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00+1:00",
            "-5",
        ] {
            let err = parse_instant(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn formats_round_trip_across_eras() {
        assert_eq!(rfc3339(T), "2026-11-25T10:00:00Z");
        assert_eq!(rfc3339(T + 7), "2026-11-25T10:00:00.007Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59Z");
        for ms in [T, 951_782_400_000, 4_107_542_400_000, -86_400_000 * 400] {
            assert_eq!(parse_instant(&rfc3339(ms)), Ok(ms));
        }
    }

    #[test]
    fn spans_read_as_two_units() {
        assert_eq!(span(86_400_000), "1d");
        assert_eq!(span(86_400_000 + 6 * 3_600_000), "1d 6h");
        assert_eq!(span(90 * 60_000), "1h 30m");
        assert_eq!(span(86_400_000 + 60_000), "1d");
        assert_eq!(span(45_000), "45s");
        assert_eq!(span(250), "250ms");
    }

    #[test]
    fn resolves_ranges() {
        let day = Duration::from_secs(86_400);
        // "now" mid-second rounds up to the next whole second.
        assert_eq!(
            resolve_range(day, None, None, T - 600),
            Ok((T - 86_400_000, T))
        );
        assert_eq!(resolve_range(day, None, None, T), Ok((T - 86_400_000, T)));
        assert_eq!(
            resolve_range(day, Some(T - 5000), None, T - 1),
            Ok((T - 5000, T))
        );
        assert_eq!(
            resolve_range(day, Some(T - 5000), Some(T - 1000), T),
            Ok((T - 5000, T - 1000))
        );
        assert!(resolve_range(day, Some(T), Some(T), T)
            .unwrap_err()
            .contains("is not before"));
        assert!(resolve_range(day, None, Some(T), T).is_err());
    }

    #[test]
    fn long_ranges_end_now_and_impossible_ones_are_errors() {
        let days = |n: u64| Duration::from_secs(n * 86_400);
        // 400 days back from mid-morning: ends now, to the second.
        assert_eq!(
            resolve_range(days(400), None, None, T + 1500),
            Ok((T + 2000 - 400 * 86_400_000, T + 2000))
        );
        assert_eq!(
            resolve_range(days(30_000), None, None, T).unwrap_err(),
            "--since 30000d reaches back before 1970-01-01, where history begins; \
             ask for at most 20782d 10h"
        );
        assert_eq!(
            resolve_range(Duration::MAX, None, None, T).unwrap_err(),
            format!(
                "--since {} reaches back before 1970-01-01, where history begins; \
                 ask for at most 20782d 10h",
                span(i64::MAX)
            )
        );
        assert_eq!(
            resolve_range(days(1), Some(-1000), None, T).unwrap_err(),
            "--from 1969-12-31T23:59:59Z is before 1970-01-01, where history begins"
        );
        assert_eq!(
            resolve_range(days(1), Some(T), Some(400_000_000_000_000), T).unwrap_err(),
            "--to 400000000000 is after the end of year 9999, the latest time history holds"
        );
    }
}
