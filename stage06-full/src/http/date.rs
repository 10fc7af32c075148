//! HTTP dates (IMF-fixdate, RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`,
//! and the `Date` value a worker keeps, formatted once a second.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), the
/// days-to-civil algorithm of Howard Hinnant.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `t` in whole seconds since the epoch, as days and seconds into the day.
fn days_and_secs(t: SystemTime) -> (i64, i64) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (secs.div_euclid(86_400), secs.rem_euclid(86_400))
}

/// Formats `t` as an IMF-fixdate (whole seconds).
pub fn format(t: SystemTime) -> String {
    let (days, secs) = days_and_secs(t);
    let (y, m, d) = civil_from_days(days);
    let wday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[(m - 1) as usize];
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{wday}, {d:02} {month} {y} {h:02}:{mi:02}:{s:02} GMT")
}

/// Formats `t` for the Common Log Format: `10/Oct/2000:13:55:36 +0000`.
pub fn format_clf(t: SystemTime) -> String {
    let (days, secs) = days_and_secs(t);
    let (y, m, d) = civil_from_days(days);
    let month = MONTHS[(m - 1) as usize];
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// Parses an IMF-fixdate. Other (obsolete) formats give `None`, and a
/// conditional request with a date we cannot read is answered in full,
/// which is always correct.
pub fn parse(s: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(s).ok()?;
    let mut parts = s.split(' ');
    let mut part = || parts.next();
    let (_wday, day, month) = (part()?, part()?, part()?);
    let (year, time, gmt) = (part()?, part()?, part()?);
    if parts.next().is_some() || gmt != "GMT" || day.len() != 2 || year.len() != 4 {
        return None;
    }
    let d: u32 = day.parse().ok()?;
    let m = MONTHS.iter().position(|&x| x == month)? as u32 + 1;
    let y: i64 = year.parse().ok()?;
    let mut hms = time.split(':');
    let mut number = || hms.next()?.parse::<i64>().ok();
    let (h, mi, se) = (number()?, number()?, number()?);
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// The `Date` field's value. It changes once a second, so it is formatted
/// once a second, not per response.
#[derive(Default)]
pub struct DateCache {
    value: String,
    secs: u64,
}

impl DateCache {
    /// The value for the current second, formatted if the second changed.
    pub fn refresh(&mut self) -> &str {
        let wall = SystemTime::now();
        let secs = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if secs != self.secs || self.value.is_empty() {
            self.secs = secs;
            self.value = format(wall);
        }
        &self.value
    }

    /// The value as last refreshed.
    pub fn current(&self) -> &str {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_the_rfc_example() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse(b"garbage"), None);
        assert_eq!(format_clf(t), "06/Nov/1994:08:49:37 +0000");
    }

    #[test]
    fn round_trips_over_many_days() {
        for secs in (0..4_000_000_000u64).step_by(86_400 * 37 + 3_601) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse(format(t).as_bytes()), Some(t), "{}", format(t));
        }
    }
}
