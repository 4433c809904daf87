//! UTC calendar arithmetic for report ranges, labels and periods. The algorithms are Howard
//! Hinnant's `days_from_civil`/`civil_from_days`
//! (<https://howardhinnant.github.io/date_algorithms.html>), exact for the proleptic Gregorian
//! calendar and in need of no time-zone database: kaipo only ever works in UTC.

pub const MS_PER_DAY: i64 = 86_400_000;

pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date (month 1 to 12).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month, day, hour, minute, second and millisecond of a Unix time in milliseconds, UTC.
pub fn civil(ms: i64) -> [i64; 7] {
    let days = ms.div_euclid(MS_PER_DAY);
    let in_day = ms.rem_euclid(MS_PER_DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = in_day / 1000;
    [
        year,
        month,
        day,
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        in_day % 1000,
    ]
}

/// Midnight UTC of the first day of the month `ms` falls in.
pub fn month_start(ms: i64) -> i64 {
    let [year, month, ..] = civil(ms);
    days_from_civil(year, month, 1) * MS_PER_DAY
}

/// Midnight UTC of the first day of the month after the one `ms` falls in.
pub fn next_month_start(ms: i64) -> i64 {
    let [year, month, ..] = civil(ms);
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_and_end_on_the_right_midnight() {
        // 2024-02-15T12:00:00Z: a leap February.
        let mid_feb = 1_707_998_400_000;
        assert_eq!(month_start(mid_feb), 1_706_745_600_000); // 2024-02-01
        assert_eq!(next_month_start(mid_feb), 1_709_251_200_000); // 2024-03-01
                                                                  // December rolls over into the next year.
        let dec = 1_796_083_200_000; // 2026-12-01T00:00:00Z
        assert_eq!(month_start(dec), dec);
        assert_eq!(next_month_start(dec), 1_798_761_600_000); // 2027-01-01
        assert_eq!(civil(1_798_761_600_000)[..3], [2027, 1, 1]);
    }
}
