//! Unit tests of the pure parts: periods and windows. The backends are tested in
//! `crates/gateway/tests/limits.rs`.

use std::time::Duration;

use super::period::{Bounds, Period};
use super::window::{self, Window};

const DAY: u64 = 86_400_000;

/// Unix ms of a UTC date at midnight.
fn date(y: i64, m: u64, d: u64) -> u64 {
    // Count days naively; good enough for the years tested here.
    let mut days: u64 = 0;
    for year in 1970..y {
        days += if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) {
            366
        } else {
            365
        };
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let months = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    for len in months.iter().take((m - 1) as usize) {
        days += len;
    }
    (days + d - 1) * DAY
}

#[test]
fn day_starts_at_utc_midnight() {
    let t = date(2026, 11, 21) + 15 * 3_600_000;
    assert_eq!(
        Period::Day.bounds(t),
        Bounds {
            start_ms: date(2026, 11, 21),
            end_ms: Some(date(2026, 11, 22))
        }
    );
}

#[test]
fn week_starts_on_monday() {
    // 2026-11-21 is a Saturday; its ISO week began Monday 2026-11-16.
    let t = date(2026, 11, 21) + 1;
    assert_eq!(
        Period::Week.bounds(t),
        Bounds {
            start_ms: date(2026, 11, 16),
            end_ms: Some(date(2026, 11, 23))
        }
    );
    // A Monday at midnight starts its own week.
    let monday = date(2026, 11, 16);
    assert_eq!(Period::Week.bounds(monday).start_ms, monday);
    assert_eq!(Period::Week.bounds(monday - 1).start_ms, date(2026, 11, 9));
}

#[test]
fn month_follows_the_calendar() {
    let t = date(2024, 2, 29) + 5;
    assert_eq!(
        Period::Month.bounds(t),
        Bounds {
            start_ms: date(2024, 2, 1),
            end_ms: Some(date(2024, 3, 1))
        }
    );
    let dec = date(2025, 12, 31) + DAY - 1;
    assert_eq!(
        Period::Month.bounds(dec),
        Bounds {
            start_ms: date(2025, 12, 1),
            end_ms: Some(date(2026, 1, 1))
        }
    );
    assert_eq!(Period::Month.bounds(0).start_ms, 0);
}

#[test]
fn thirty_days_are_epoch_aligned_blocks() {
    let b = Period::ThirtyDays.bounds(date(2026, 11, 21));
    assert_eq!(b.start_ms % (30 * DAY), 0);
    assert_eq!(b.end_ms, Some(b.start_ms + 30 * DAY));
    assert!(b.start_ms <= date(2026, 11, 21));
}

#[test]
fn lifetime_never_ends() {
    assert_eq!(
        Period::Lifetime.bounds(12_345),
        Bounds {
            start_ms: 0,
            end_ms: None
        }
    );
}

#[test]
fn periods_parse_from_config_names() {
    for p in [
        Period::Day,
        Period::Week,
        Period::ThirtyDays,
        Period::Month,
        Period::Lifetime,
    ] {
        assert_eq!(p.as_str().parse::<Period>().ok(), Some(p));
    }
    assert!("2d".parse::<Period>().is_err());
}

#[test]
fn an_admission_counts_for_more_than_sixty_seconds() {
    let mut w = Window::default();
    let t0 = 1_000_000_500;
    w.add(window::bucket(t0), 1);
    assert_eq!(w.used(t0 + 60_000), 1);
    assert_eq!(w.used(t0 + 60_499), 1);
    assert_eq!(w.used(t0 + 60_500), 0);
}

#[test]
fn retry_after_frees_the_oldest_buckets_first() {
    let mut w = Window::default();
    let t0 = 2_000_000_000;
    w.add(window::bucket(t0), 5);
    w.add(window::bucket(t0 + 10_000), 5);
    let now = t0 + 20_000;
    assert_eq!(w.used(now), 10);
    // One more needs the first bucket gone: 61 s after it began.
    assert_eq!(
        w.retry_after(10, 1, now),
        Some(Duration::from_millis(41_000))
    );
    // Six more need both gone.
    assert_eq!(
        w.retry_after(10, 6, now),
        Some(Duration::from_millis(51_000))
    );
    assert_eq!(w.retry_after(10, 11, now), None);
    assert_eq!(w.reset(now), Duration::from_millis(51_000));
}

#[test]
fn replace_swaps_an_estimate_for_the_actual() {
    let mut w = Window::default();
    let t0 = 3_000_000_000;
    w.add(window::bucket(t0), 100);
    w.add(window::bucket(t0), 40);
    w.replace(window::bucket(t0), 100, 7);
    assert_eq!(w.used(t0), 47);
    w.replace(window::bucket(t0), 40, 400);
    assert_eq!(w.used(t0), 407);
}
