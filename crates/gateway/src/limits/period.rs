//! Budget periods: which calendar period (UTC) an instant falls in. Pure arithmetic, no clock.
//!
//! Periods are calendar periods, not rolling ones, so every replica agrees on them from the
//! time alone and a period's spend can be seeded from the store with one `since` query:
//! - `1d`: the UTC day, from 00:00 UTC.
//! - `7d`: the ISO week, from Monday 00:00 UTC.
//! - `30d`: consecutive 30-day blocks counted from 1970-01-01 00:00 UTC (use `1mo` for months).
//! - `1mo`: the calendar month, from the 1st 00:00 UTC.
//! - lifetime: one period that never ends (start 0).

use std::fmt;
use std::str::FromStr;

const DAY_MS: u64 = 86_400_000;

/// The period a budget applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    /// `1d`: the UTC calendar day.
    Day,
    /// `7d`: the ISO week (Monday 00:00 UTC to the next Monday).
    Week,
    /// `30d`: 30-day blocks counted from the Unix epoch.
    ThirtyDays,
    /// `1mo`: the UTC calendar month.
    Month,
    /// No `budget_period`: the budget is for the key's whole life.
    Lifetime,
}

/// The bounds of one period, in Unix milliseconds; `end` is `None` for a lifetime budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub start_ms: u64,
    pub end_ms: Option<u64>,
}

impl Period {
    /// The period containing `now_ms`.
    pub fn bounds(self, now_ms: u64) -> Bounds {
        let day = now_ms / DAY_MS;
        let (start_day, end_day) = match self {
            Period::Day => (day, day + 1),
            Period::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday index is (day + 3) % 7.
                let start = day - (day + 3) % 7;
                (start, start + 7)
            }
            Period::ThirtyDays => {
                let start = day - day % 30;
                (start, start + 30)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
            Period::Lifetime => {
                return Bounds {
                    start_ms: 0,
                    end_ms: None,
                }
            }
        };
        Bounds {
            start_ms: start_day * DAY_MS,
            end_ms: Some(end_day * DAY_MS),
        }
    }

    /// The short name used in configuration and in Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "1d",
            Period::Week => "7d",
            Period::ThirtyDays => "30d",
            Period::Month => "1mo",
            Period::Lifetime => "lifetime",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `budget_period` that is not one of `1d`, `7d`, `30d`, `1mo`, `lifetime`.
#[derive(Debug, thiserror::Error)]
#[error("unknown budget period {0:?}: expected 1d, 7d, 30d, 1mo or lifetime")]
pub struct UnknownPeriod(pub String);

impl FromStr for Period {
    type Err = UnknownPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1d" => Ok(Period::Day),
            "7d" => Ok(Period::Week),
            "30d" => Ok(Period::ThirtyDays),
            "1mo" => Ok(Period::Month),
            "lifetime" => Ok(Period::Lifetime),
            other => Err(UnknownPeriod(other.to_owned())),
        }
    }
}

/// Days since the epoch → (year, month 1..=12, day 1..=31), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (i64, u64, u64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since the epoch, after Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe as i64 - 719_468).max(0) as u64
}
