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

#[cfg(test)]
mod tests {
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
