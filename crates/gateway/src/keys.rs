//! Virtual keys: minting secrets and turning the admin API's and the CLI's key and team bodies
//! into store records. The secret exists only in the answer to its creation.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{Error, Kind};

/// `sk-sy-` and 40 random base62 characters from the operating system's generator.
pub fn mint() -> Result<String, Error> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(46);
    out.push_str("sk-sy-");
    let mut buf = [0u8; 64];
    while out.len() < 46 {
        getrandom::fill(&mut buf)
            .map_err(|_| Error::new(Kind::Internal, "no randomness available to mint a key"))?;
        for b in buf {
            // Rejection sampling: 248 = 4 × 62 keeps the characters uniform.
            if b < 248 && out.len() < 46 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// The body of `POST /admin/v1/keys` and `/admin/v1/teams` (and the CLI's flags).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    pub budget: Option<f64>,
    #[serde(default)]
    pub budget_period: Option<String>,
    /// Unix seconds, a date (`2027-01-31`, RFC 3339), or a duration from now (`30d`).
    #[serde(default)]
    pub expires_at: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

impl Body {
    pub fn limits(&self) -> Result<store::limits::Limits, Error> {
        let period = match self.budget_period.as_deref() {
            None => None,
            Some(p) => Some(
                serde_json::from_value::<store::limits::BudgetPeriod>(json!(p)).map_err(|_| {
                    Error::invalid(
                        format!("'{p}' is not a budget period (1d, 7d, 30d, 1mo)."),
                        Some("budget_period"),
                    )
                })?,
            ),
        };
        if self.budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
            return Err(Error::invalid(
                "budget must be a non-negative number of USD.",
                Some("budget"),
            ));
        }
        Ok(store::limits::Limits {
            models: self.models.clone(),
            rpm: self.rpm,
            tpm: self.tpm,
            max_concurrency: self.max_concurrency,
            budget_usd: self.budget,
            budget_period: period,
        })
    }

    pub fn expires_at_ms(&self) -> Result<Option<i64>, Error> {
        let bad = || {
            Error::invalid(
                "expires_at must be unix seconds, a date like 2027-01-31, or a duration like 30d.",
                Some("expires_at"),
            )
        };
        match &self.expires_at {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(|s| Some(s.saturating_mul(1000)))
                .ok_or_else(bad),
            Some(Value::String(s)) => {
                if let Ok(d) = crate::config::units::duration(s) {
                    if s.trim().ends_with(|c: char| c.is_ascii_alphabetic()) {
                        return Ok(Some(store::now_ms() + d.as_millis() as i64));
                    }
                }
                crate::config::units::timestamp_ms(s)
                    .map(Some)
                    .map_err(|_| bad())
            }
            Some(_) => Err(bad()),
        }
    }
}

/// A key as the admin API shows it: never the secret nor its hash.
pub fn view(k: &store::keys::Key) -> Value {
    json!({
        "id": k.id,
        "object": "key",
        "name": k.name,
        "prefix": k.prefix,
        "team": k.team_id,
        "models": k.limits.models,
        "rpm": k.limits.rpm,
        "tpm": k.limits.tpm,
        "max_concurrency": k.limits.max_concurrency,
        "budget": k.limits.budget_usd,
        "budget_period": k.limits.budget_period,
        "expires_at": k.expires_at.map(|t| t / 1000),
        "metadata": k.metadata,
        "source": k.source,
        "created_at": k.created_at / 1000,
        "revoked_at": k.revoked_at.map(|t| t / 1000),
    })
}

pub fn team_view(t: &store::teams::Team) -> Value {
    json!({
        "id": t.id,
        "object": "team",
        "name": t.name,
        "models": t.limits.models,
        "rpm": t.limits.rpm,
        "tpm": t.limits.tpm,
        "max_concurrency": t.limits.max_concurrency,
        "budget": t.limits.budget_usd,
        "budget_period": t.limits.budget_period,
        "metadata": t.metadata,
        "created_at": t.created_at / 1000,
    })
}

/// Creates a key in the store; returns the stored key and its secret (shown once).
pub async fn create(
    store: &store::Store,
    body: &Body,
) -> Result<(store::keys::Key, String), Error> {
    let name = body
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| Error::invalid("A key needs a name.", Some("name")))?;
    let team_id = match &body.team {
        None => None,
        Some(t) => Some(find_team(store, t).await?.id),
    };
    let secret = mint()?;
    let new = store::keys::New {
        name,
        hash: hex::encode(crate::auth::hash(&secret)),
        prefix: secret.chars().take(10).collect(),
        team_id,
        limits: body.limits()?,
        expires_at: body.expires_at_ms()?,
        metadata: body.metadata.clone().unwrap_or_default(),
        source: store::keys::Source::Api,
    };
    let key = store.keys().create(&new).await.map_err(store_error)?;
    Ok((key, secret))
}

/// A team by id or by name.
pub async fn find_team(
    store: &store::Store,
    id_or_name: &str,
) -> Result<store::teams::Team, Error> {
    if let Some(t) = store.teams().get(id_or_name).await.map_err(store_error)? {
        return Ok(t);
    }
    store
        .teams()
        .get_by_name(id_or_name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| Error::new(Kind::NotFound, format!("No team '{id_or_name}'.")))
}

/// A store failure as the client's error: conflicts and bad values are the client's, the rest
/// is ours (its text is logged, not returned).
pub fn store_error(e: store::Error) -> Error {
    match e {
        store::Error::Conflict(m) => {
            let mut err = Error::invalid(m, None);
            err.status = Some(http::StatusCode::CONFLICT);
            err
        }
        store::Error::Invalid(m) => Error::invalid(m, None),
        store::Error::NotFound => Error::new(Kind::NotFound, "No such key or team."),
        store::Error::MissingReference(m) => {
            Error::invalid(format!("Unknown reference: {m}"), None)
        }
        other => {
            tracing::error!(error = %other, "store operation failed");
            Error::new(Kind::Internal, "The gateway's store failed; try again.")
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn minted_keys_have_the_documented_shape() {
        let a = super::mint().unwrap();
        let b = super::mint().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 46);
        assert!(a.starts_with("sk-sy-"));
        assert!(a[6..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
