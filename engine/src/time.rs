//! Time as the engine stores it: microseconds since the Unix epoch, UTC, and civil dates.
//!
//! A reading's timestamp is the **end** of its interval.

use std::fmt;
use std::str::FromStr;

use crate::Error;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// The reading and event times the engine stores: from 2000-01-01 to the end of 9999, UTC.
/// A time outside is a gateway's clock fault, and neither its day partition nor its
/// rollups could be named or read back; appends holding one are refused.
pub const STORABLE_TIMES_US: std::ops::RangeInclusive<i64> =
    946_684_800_000_000..=253_402_300_799_999_999;

/// Now, in microseconds since the Unix epoch (UTC).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A calendar date (proleptic Gregorian), stored as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    days_since_epoch: i32,
}

impl CivilDate {
    /// The date for a year, month (1–12) and day (1–31), or `None` if it does not exist.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Self {
            days_since_epoch: days_from_civil(year, month, day),
        })
    }

    pub fn from_days_since_epoch(days_since_epoch: i32) -> Self {
        Self { days_since_epoch }
    }

    /// The UTC date that contains `micros`.
    pub fn of_timestamp(micros: i64) -> Self {
        Self {
            days_since_epoch: micros.div_euclid(MICROS_PER_DAY) as i32,
        }
    }

    pub fn days_since_epoch(self) -> i32 {
        self.days_since_epoch
    }

    /// Midnight UTC at the start of this date, in microseconds.
    pub fn start_micros(self) -> i64 {
        i64::from(self.days_since_epoch) * MICROS_PER_DAY
    }

    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.days_since_epoch)
    }

    /// Day of the year, 1 for January 1st.
    pub fn ordinal(self) -> u32 {
        let (year, _, _) = self.ymd();
        (self.days_since_epoch - days_from_civil(year, 1, 1) + 1) as u32
    }

    pub fn add_days(self, days: i32) -> Self {
        Self {
            days_since_epoch: self.days_since_epoch + days,
        }
    }
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for CivilDate {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidDate {
            text: text.to_owned(),
        };
        let mut parts = text.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(invalid);
        let (y, m, d) = (next()?, next()?, next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(invalid());
        }
        let year = y.parse().map_err(|_| invalid())?;
        let month = m.parse().map_err(|_| invalid())?;
        let day = d.parse().map_err(|_| invalid())?;
        Self::from_ymd(year, month, day).ok_or_else(invalid)
    }
}

pub fn is_leap_year(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

// Howard Hinnant's `days_from_civil` / `civil_from_days`: exact for the whole i32 range we use.
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        for days in -800_000..800_000 {
            let date = CivilDate::from_days_since_epoch(days);
            let (y, m, d) = date.ymd();
            assert_eq!(CivilDate::from_ymd(y, m, d), Some(date));
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(
            CivilDate::from_ymd(1970, 1, 1).unwrap().days_since_epoch(),
            0
        );
        let date: CivilDate = "2024-02-29".parse().unwrap();
        assert_eq!(date.start_micros(), 1_709_164_800 * MICROS_PER_SECOND);
        assert_eq!(date.ordinal(), 60);
        assert!("2023-02-29".parse::<CivilDate>().is_err());
        assert!("2024-2-01".parse::<CivilDate>().is_err());
        assert_eq!(CivilDate::of_timestamp(-1).to_string(), "1969-12-31");
    }
}
