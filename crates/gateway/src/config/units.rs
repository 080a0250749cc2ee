//! Durations (`250ms`, `30s`, `5m`, `1h`, `1d`) and sizes (`512KiB`, `10MiB`, `1GB`) as written
//! in the configuration file and request headers.

use std::time::Duration;

/// Parses `250ms`, `30s`, `1.5s`, `5m`, `1h`, `1d`; a bare number is seconds.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (like 250ms, 30s, 5m, 1h, 1d)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit '{other}' in '{s}' (use ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1024`, `64KiB`, `10MiB`, `1GiB`, `10MB`, `1KB`.
pub fn size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (like 512KiB or 10MiB)"))?;
    let mult = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let bytes = value * mult;
    if !bytes.is_finite() || !(1.0..=1e12).contains(&bytes) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok(bytes as usize)
}

/// A point in time as unix milliseconds: `2027-01-31`, `2027-01-31T12:00:00Z`, or unix seconds.
pub fn timestamp_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs.saturating_mul(1000));
    }
    let bad = || format!("'{s}' is not a date (2027-01-31, 2027-01-31T12:00:00Z or unix seconds)");
    let (date, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let time = time.trim_end_matches('Z');
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [y, m, day] = <[i64; 3]>::try_from(d).map_err(|_| bad())?;
    let [hh, mm, ss] = <[i64; 3]>::try_from(t).map_err(|_| bad())?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_timestamps() {
        assert_eq!(super::timestamp_ms("1970-01-02"), Ok(86_400_000));
        assert_eq!(
            super::timestamp_ms("2000-03-01T00:00:01Z"),
            Ok(951_868_801_000)
        );
        assert_eq!(super::timestamp_ms("1700000000"), Ok(1_700_000_000_000));
        assert!(super::timestamp_ms("next tuesday").is_err());
    }

    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(duration("2"), Ok(Duration::from_secs(2)));
        assert!(duration("5 parsecs").is_err());
        assert!(duration("fast").is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(size("64KiB"), Ok(65536));
        assert_eq!(size("1MB"), Ok(1_000_000));
        assert_eq!(size("100"), Ok(100));
        assert!(size("10 furlongs").is_err());
    }
}
