//! AWS Signature Version 4 for Bedrock runtime requests, computed from the request and a time
//! the caller passes in.
//!
//! Follows the AWS SigV4 specification ("Create a signed AWS API request"): canonical request,
//! string to sign, derived signing key, `Authorization` header. Non-S3 rules apply: the path as
//! sent is URI-encoded once more (so a model id's `%3A` is signed as `%253A`), query parameters
//! are decoded, re-encoded and sorted. Proven against the published `aws-sig-v4-test-suite`
//! vectors (`get-vanilla`, `post-vanilla`, `get-vanilla-query-order-key-case`,
//! `post-sts-header-before`). Pure: no clock, no environment, no IO.

use std::fmt;

use sha2::{Digest, Sha256};

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers the AWS SDKs leave unsigned because proxies rewrite them.
const UNSIGNED: &[&str] = &["authorization", "user-agent", "expect", "x-amzn-trace-id"];

/// Long-term or temporary (STS) credentials.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    pub session_token: Option<&'a str>,
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// A URL that cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Signs a request: returns the headers to add, `authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, with a session token, `x-amz-security-token`.
///
/// `headers` are the other headers the request will carry (`content-type`, ...); they are all
/// signed except `authorization`, `user-agent`, `expect` and `x-amzn-trace-id`. `host` is taken
/// from the URL unless given. `unix_seconds` is the signing time.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    region: &str,
    service: &str,
    credentials: &Credentials<'_>,
    unix_seconds: u64,
) -> Result<Vec<(String, String)>, Error> {
    let amz_date = amz_date(unix_seconds);
    let payload_hash = hex(&Sha256::digest(body));
    let mut signed: Vec<(&str, &str)> = headers
        .iter()
        .copied()
        .filter(|(name, _)| {
            let lower = name.to_ascii_lowercase();
            !UNSIGNED.contains(&lower.as_str())
                && !matches!(
                    lower.as_str(),
                    "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
                )
        })
        .collect();
    signed.push(("x-amz-date", &amz_date));
    signed.push(("x-amz-content-sha256", &payload_hash));
    if let Some(token) = credentials.session_token {
        signed.push(("x-amz-security-token", token));
    }
    let authorization = authorization(
        method,
        url,
        &signed,
        &payload_hash,
        region,
        service,
        credentials,
        &amz_date,
    )?;
    let mut out = vec![
        ("authorization".to_string(), authorization),
        ("x-amz-date".to_string(), amz_date.clone()),
        ("x-amz-content-sha256".to_string(), payload_hash.clone()),
    ];
    if let Some(token) = credentials.session_token {
        out.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    Ok(out)
}

/// The `Authorization` value for a request carrying exactly `headers` (plus `host` from the URL
/// when absent), whose body hashes to `payload_hash` (hex SHA-256), signed at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`, which `headers` should carry as `x-amz-date`).
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload_hash: &str,
    region: &str,
    service: &str,
    credentials: &Credentials<'_>,
    amz_date: &str,
) -> Result<String, Error> {
    let parts = Url::parse(url)?;
    let mut canonical: Vec<(String, String)> = Vec::with_capacity(headers.len() + 1);
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match canonical.iter_mut().find(|(n, _)| *n == name) {
            Some((_, existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => canonical.push((name, value)),
        }
    }
    if !canonical.iter().any(|(n, _)| n == "host") {
        canonical.push(("host".to_string(), parts.host.to_string()));
    }
    canonical.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_headers = canonical
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut creq = String::with_capacity(256);
    creq.push_str(&method.to_ascii_uppercase());
    creq.push('\n');
    creq.push_str(&canonical_uri(parts.path));
    creq.push('\n');
    creq.push_str(&canonical_query(parts.query));
    creq.push('\n');
    for (name, value) in &canonical {
        creq.push_str(name);
        creq.push(':');
        creq.push_str(value);
        creq.push('\n');
    }
    creq.push('\n');
    creq.push_str(&signed_headers);
    creq.push('\n');
    creq.push_str(payload_hash);

    let date = amz_date.get(..8).unwrap_or(amz_date);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    Ok(format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    ))
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (UTC).
pub fn amz_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: the proleptic Gregorian date of a day count since
/// 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
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

/// The parts of an absolute URL SigV4 needs.
struct Url<'a> {
    host: &'a str,
    path: &'a str,
    query: &'a str,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Url<'a>, Error> {
        let rest = url
            .split_once("://")
            .map(|(_, rest)| rest)
            .ok_or_else(|| Error(format!("cannot sign `{url}`: not an absolute URL")))?;
        let rest = rest.split('#').next().unwrap_or(rest);
        let (authority, path_query) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let host = authority.rsplit('@').next().unwrap_or(authority);
        if host.is_empty() {
            return Err(Error(format!("cannot sign `{url}`: no host")));
        }
        let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
        Ok(Url { host, path, query })
    }
}

/// The path as sent, URI-encoded once more (slashes kept); `/` when empty.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    uri_encode(path.as_bytes(), false)
}

/// Query parameters decoded, re-encoded, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), true),
                uri_encode(&percent_decode(v), true),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding: unreserved characters stay, everything else is `%XX` (upper case).
pub fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (b == b'/' && !encode_slash)
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            out.push(char::from(HEX_UPPER[usize::from(b & 0xf)]));
        }
    }
    out
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = (bytes[i + 1] as char).to_digit(16);
            let lo = (bytes[i + 2] as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
    }

    #[test]
    fn encoding_and_query() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-v2%3A1/converse"),
            "/model/anthropic.claude-v2%253A1/converse"
        );
        assert_eq!(canonical_query("b=2&a=%7E x&a=1"), "a=1&a=~%20x&b=2");
        assert_eq!(percent_decode("%4"), b"%4".to_vec());
    }
}
