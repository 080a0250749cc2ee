//! Small parsers shared by the tools: durations, loopback-only targets, headers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper::Uri;

/// The longest run any tool accepts, so a typo cannot keep a load generator busy for days.
pub const MAX_RUN: Duration = Duration::from_secs(3600);

/// Parses `250ms`, `10s`, `2m`, `1h` or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    if num.is_empty() {
        bail!("invalid duration {s:?}: expected a number followed by ms, s, m or h");
    }
    let value: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid duration {s:?}: {num:?} is not a number"))?;
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => bail!("invalid duration {s:?}: unknown unit {other:?} (use ms, s, m or h)"),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs < 0.0 {
        bail!("invalid duration {s:?}");
    }
    let d = Duration::from_secs_f64(secs);
    if d > MAX_RUN {
        bail!(
            "duration {s:?} is longer than the limit of {}s",
            MAX_RUN.as_secs()
        );
    }
    Ok(d)
}

/// clap value parser wrapper around [`parse_duration`].
pub fn duration_arg(s: &str) -> std::result::Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Where a load generator may send traffic: only plain HTTP on a loopback address.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Value for the `Host` header (`127.0.0.1:8080`).
    pub authority: String,
    /// Path and query (`/v1/chat/completions`).
    pub path_and_query: String,
}

/// Parses `url` and refuses anything that is not `http://` to a loopback host
/// (`localhost`, `127.0.0.0/8`, `[::1]`). No DNS lookups are made.
pub fn loopback_target(url: &str) -> Result<Target> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("unsupported scheme {other:?} in {url:?}: only http:// is supported"),
        None => bail!("URL {url:?} has no scheme; use http://127.0.0.1:PORT/..."),
    }
    let host = uri
        .host()
        .ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if bare.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bare.parse().map_err(|_| {
            anyhow!("refusing host {host:?}: only loopback targets (127.0.0.0/8, [::1], localhost) are allowed")
        })?
    };
    if !ip.is_loopback() {
        bail!("refusing host {host:?}: only loopback targets (127.0.0.0/8, [::1], localhost) are allowed");
    }
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_else(|| host.to_string());
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        authority,
        path_and_query,
    })
}

/// Parses a `name: value` header given on the command line.
pub fn parse_header(s: &str) -> Result<(http::HeaderName, http::HeaderValue)> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| anyhow!("invalid header {s:?}: expected 'name: value'"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| anyhow!("invalid header name in {s:?}"))?;
    let value = http::HeaderValue::from_str(value.trim())
        .map_err(|_| anyhow!("invalid header value in {s:?}"))?;
    Ok((name, value))
}

/// Parses `name=pid` (used by `sy-loadgen --watch`).
pub fn parse_watch(s: &str) -> Result<(String, u32)> {
    let (name, pid) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid --watch {s:?}: expected NAME=PID"))?;
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| anyhow!("invalid --watch {s:?}: {pid:?} is not a process id"))?;
    if name.is_empty() || pid == 0 {
        bail!("invalid --watch {s:?}: expected NAME=PID");
    }
    Ok((name.to_string(), pid))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_duration("1.5").ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
        for bad in ["", "s", "10x", "-1s", "1e99h", "2h", "abc", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn loopback_only() {
        let t = loopback_target("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/v1/chat/completions");
        assert!(loopback_target("http://localhost:1/").is_ok());
        assert!(loopback_target("http://[::1]:1/x").is_ok());
        assert!(loopback_target("http://127.9.9.9:1/x").is_ok());
        for bad in [
            "http://10.0.0.1:80/",
            "http://192.168.1.1/",
            "http://example.com/",
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://",
            "not a url",
            "http://0.0.0.0:80/",
        ] {
            assert!(loopback_target(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn headers_and_watch() {
        let (n, v) = parse_header("Accept-Encoding: gzip, deflate").unwrap();
        assert_eq!(n.as_str(), "accept-encoding");
        assert_eq!(v.to_str().ok(), Some("gzip, deflate"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: v").is_err());
        assert_eq!(parse_watch("target=42").ok(), Some(("target".into(), 42)));
        assert!(parse_watch("target").is_err());
        assert!(parse_watch("=1").is_err());
        assert!(parse_watch("t=x").is_err());
    }
}
