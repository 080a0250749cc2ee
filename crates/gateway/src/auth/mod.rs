//! Who is calling: virtual keys from `Authorization: Bearer` or `x-api-key`, and the admin key.
//!
//! Keys are compared by their SHA-256 hash; the secret is never stored or logged.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use crate::config::{Auth, Config};
use crate::error::{Error, Kind};

pub mod directory;

pub use directory::{Directory, Principal};

/// The caller of a data-plane request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// `auth: none`.
    Anonymous,
    Key(Arc<Principal>),
}

pub fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The presented secret: `Authorization: Bearer X` or `x-api-key: X`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?;
        return Some(token.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Step 1 of the pipeline: identify the caller. The secret is hashed and looked up; it is never
/// logged or echoed.
pub fn authenticate(
    config: &Config,
    directory: &Directory,
    headers: &HeaderMap,
) -> Result<Caller, Error> {
    if config.auth == Auth::None {
        return Ok(Caller::Anonymous);
    }
    let Some(secret) = presented(headers).filter(|s| !s.is_empty()) else {
        return Err(Error::new(
            Kind::Unauthorized,
            "Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'.",
        ));
    };
    let h = hash(secret);
    let Some(p) = directory.lookup(&h) else {
        return Err(Error::new(Kind::Unauthorized, "Invalid API key."));
    };
    if p.expires_at.is_some_and(|t| store::now_ms() >= t) {
        return Err(Error::new(Kind::Unauthorized, "This API key has expired."));
    }
    Ok(Caller::Key(p))
}

/// Whether the caller may use the public model `model`.
pub fn allow(caller: &Caller, model: &str) -> Result<(), Error> {
    match caller {
        Caller::Anonymous => Ok(()),
        Caller::Key(k) if k.allows(model) => Ok(()),
        Caller::Key(k) => Err(Error::new(
            Kind::Forbidden,
            format!(
                "The key '{}' is not allowed to use model '{model}'.",
                k.name
            ),
        )),
    }
}

/// The admin API's check: `Authorization: Bearer <admin_key>` and nothing else.
pub fn admin(config: &Config, headers: &HeaderMap) -> Result<(), Error> {
    let Some(expected) = &config.admin_key else {
        return Err(Error::new(
            Kind::Forbidden,
            "The admin API is disabled: no admin_key is configured.",
        ));
    };
    match presented(headers) {
        Some(p) if bool::from(hash(p).ct_eq(&hash(expected.expose()))) => Ok(()),
        Some(_) => Err(Error::new(Kind::Unauthorized, "Invalid admin key.")),
        None => Err(Error::new(
            Kind::Unauthorized,
            "Missing admin key: send 'Authorization: Bearer <admin_key>'.",
        )),
    }
}

/// `*` any run of bytes, `?` one byte; everything else literal. Checked for every request of
/// a key with a model list: an exact match is a comparison, and `*` is matched by
/// going back to the last one (linear in practice, O(pattern × name) at worst) rather than by
/// recursion, which took time exponential in the number of `*`s.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    if p == n {
        return true;
    }
    let (mut i, mut j) = (0, 0);
    // The last `*` seen, and where in `name` its run ends for now.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some(b'*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == b'?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                // The last `*` takes one byte more, and matching goes on after it.
                Some((s, end)) => {
                    star = Some((s, end + 1));
                    i = s + 1;
                    j = end + 1;
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("gpt-*", "gpt-4o"));
        assert!(glob("*", "x"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("gpt-*", "claude"));
        assert!(glob("openai/*", "openai/gpt-4o"));
        assert!(glob("gpt-4o", "gpt-4o"));
        assert!(!glob("gpt-4o", "gpt-4o-mini"));
        assert!(!glob("", "x"));
        assert!(glob("", ""));
        assert!(glob("**", ""));
    }

    /// The matcher agrees with the recursive definition of `*` and `?` on random patterns and
    /// names over a small alphabet, and a pattern of many `*`s against a long name that it
    /// does not match answers at once (the recursive matcher tries every way of splitting the
    /// name among the 41 stars: more ways than it could try before the test runner gives up).
    #[test]
    fn globs_match_the_definition_without_backtracking_blowup() {
        fn reference(p: &[u8], n: &[u8]) -> bool {
            match (p.first(), n.first()) {
                (None, None) => true,
                (Some(b'*'), _) => {
                    reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..]))
                }
                (Some(b'?'), Some(_)) => reference(&p[1..], &n[1..]),
                (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
                _ => false,
            }
        }
        let mut rng = fastrand::Rng::with_seed(5);
        let word = |rng: &mut fastrand::Rng, alphabet: &[u8], max: usize| -> String {
            (0..rng.usize(0..max))
                .map(|_| char::from(alphabet[rng.usize(..alphabet.len())]))
                .collect()
        };
        for _ in 0..20_000 {
            let p = word(&mut rng, b"ab*?", 7);
            let n = word(&mut rng, b"ab", 8);
            assert_eq!(
                glob(&p, &n),
                reference(p.as_bytes(), n.as_bytes()),
                "{p:?} {n:?}"
            );
        }
        let many = "*a".repeat(40) + "*b";
        assert!(!glob(&many, &"a".repeat(200)));
        assert!(glob(&many, &("a".repeat(200) + "b")));
    }
}
