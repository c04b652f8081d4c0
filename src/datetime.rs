//! Wall-clock times as text: epoch milliseconds, ISO 8601 / RFC 3339 in UTC (what a
//! JavaScript `Date` becomes in JSON, a CloudEvent's `time`) and `Date.prototype.toString()`
//! in UTC, for the Admin UI and the backend hooks. Pure functions of a `SystemTime` or a
//! number; depends on nothing else.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (0 before it).
pub fn epoch_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    weekday: usize,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

fn parts(millis: u64) -> Parts {
    let seconds = millis / 1000;
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let (year, month, day) = civil(days);
    let of_day = seconds % 86_400;
    Parts {
        year,
        month,
        day,
        // 1970-01-01 was a Thursday.
        weekday: usize::try_from((days + 4).rem_euclid(7)).unwrap_or(0),
        hour: of_day / 3600,
        minute: of_day / 60 % 60,
        second: of_day % 60,
        millis: millis % 1000,
    }
}

/// `2026-11-24T14:56:20.219Z`.
pub fn iso(at: SystemTime) -> String {
    iso_millis(epoch_millis(at))
}

/// [`iso`] of a time in milliseconds since the epoch.
pub fn iso_millis(millis: u64) -> String {
    let p = parts(millis);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.millis
    )
}

/// `Tue Nov 24 2026 14:56:20 GMT+0000 (Coordinated Universal Time)`.
pub fn js_date_string(millis: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let p = parts(millis);
    let month = MONTHS[(p.month as usize).saturating_sub(1) % 12];
    format!(
        "{} {month} {:02} {:04} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[p.weekday % 7],
        p.day,
        p.year,
        p.hour,
        p.minute,
        p.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_javascript() {
        // 1795532180219 ms is the capture's "2026-11-24T14:56:20.219Z" (spec C.4).
        let at = UNIX_EPOCH + Duration::from_millis(1_795_532_180_219);
        assert_eq!(iso(at), "2026-11-24T14:56:20.219Z");
        assert_eq!(
            js_date_string(1_795_532_180_219),
            "Tue Nov 24 2026 14:56:20 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(iso(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
