//! What a key or a team may do — allowed models, rates, concurrency, budget — and how a PATCH
//! changes it. Stored here; enforced by the gateway, never by the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use sqlx::types::Json;

use crate::sql::{from_db_opt, to_db_opt};
use crate::{Error, Result};

/// The window a budget applies to. No period (`None` where it is used) means the budget covers
/// the whole life of the key or team. How a window is aligned (rolling, calendar) is the
/// caller's choice: the store answers `spend(since)` for any `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetPeriod {
    #[serde(rename = "1d")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    ThirtyDays,
    #[serde(rename = "1mo")]
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "1d",
            BudgetPeriod::Week => "7d",
            BudgetPeriod::ThirtyDays => "30d",
            BudgetPeriod::Month => "1mo",
        }
    }
}

impl fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BudgetPeriod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "1d" => Ok(BudgetPeriod::Day),
            "7d" => Ok(BudgetPeriod::Week),
            "30d" => Ok(BudgetPeriod::ThirtyDays),
            "1mo" => Ok(BudgetPeriod::Month),
            other => Err(Error::Invalid(format!(
                "budget_period {other:?}: expected 1d, 7d, 30d or 1mo"
            ))),
        }
    }
}

/// The limits shared by keys and teams. `None` everywhere means "no limit at this level".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Allowed public model names, glob patterns allowed. `None` allows every model; an empty
    /// list allows none.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    pub budget_usd: Option<f64>,
    #[serde(default)]
    pub budget_period: Option<BudgetPeriod>,
}

/// A partial change to [`Limits`] with PATCH semantics: a field absent from the JSON is left as
/// it is (`None`), `null` clears it (`Some(None)`), a value sets it (`Some(Some(v))`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patch {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub models: Option<Option<Vec<String>>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub rpm: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub tpm: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_concurrency: Option<Option<u64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_usd: Option<Option<f64>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub budget_period: Option<Option<BudgetPeriod>>,
}

impl Patch {
    pub fn apply(&self, limits: &mut Limits) {
        set(&mut limits.models, &self.models);
        set(&mut limits.rpm, &self.rpm);
        set(&mut limits.tpm, &self.tpm);
        set(&mut limits.max_concurrency, &self.max_concurrency);
        set(&mut limits.budget_usd, &self.budget_usd);
        set(&mut limits.budget_period, &self.budget_period);
    }
}

/// Deserializes a field that is present in the input, `null` included, as `Some(..)`.
pub(crate) fn present<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) fn set<T: Clone>(field: &mut T, change: &Option<T>) {
    if let Some(v) = change {
        *field = v.clone();
    }
}

/// The limit columns as they are stored; `#[sqlx(flatten)]` into each table's row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Columns {
    models: Option<Json<Vec<String>>>,
    rpm: Option<i64>,
    tpm: Option<i64>,
    max_concurrency: Option<i64>,
    budget_usd: Option<f64>,
    budget_period: Option<String>,
}

impl Columns {
    pub fn into_limits(self) -> Result<Limits> {
        Ok(Limits {
            models: self.models.map(|j| j.0),
            rpm: from_db_opt(self.rpm),
            tpm: from_db_opt(self.tpm),
            max_concurrency: from_db_opt(self.max_concurrency),
            budget_usd: self.budget_usd,
            budget_period: self.budget_period.as_deref().map(str::parse).transpose()?,
        })
    }
}

/// The limit values in bind order: models, rpm, tpm, max_concurrency, budget_usd, budget_period.
pub(crate) struct Bound<'a> {
    pub models: Option<Json<&'a Vec<String>>>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub max_concurrency: Option<i64>,
    pub budget_usd: Option<f64>,
    pub budget_period: Option<&'static str>,
}

impl Limits {
    pub(crate) fn bound(&self) -> Result<Bound<'_>> {
        if let Some(b) = self.budget_usd {
            if !b.is_finite() || b < 0.0 {
                return Err(Error::Invalid(format!(
                    "budget_usd {b}: expected a non-negative number"
                )));
            }
        }
        Ok(Bound {
            models: self.models.as_ref().map(Json),
            rpm: to_db_opt(self.rpm)?,
            tpm: to_db_opt(self.tpm)?,
            max_concurrency: to_db_opt(self.max_concurrency)?,
            budget_usd: self.budget_usd,
            budget_period: self.budget_period.map(BudgetPeriod::as_str),
        })
    }
}

/// Binds a [`Bound`] to a query: models, rpm, tpm, max_concurrency, budget_usd, budget_period.
macro_rules! bind_limits {
    ($query:expr, $b:expr) => {
        $query
            .bind($b.models)
            .bind($b.rpm)
            .bind($b.tpm)
            .bind($b.max_concurrency)
            .bind($b.budget_usd)
            .bind($b.budget_period)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tells_absent_from_null() {
        let p: Patch =
            serde_json::from_str(r#"{"rpm": null, "tpm": 5, "budget_period": "1mo"}"#).unwrap();
        assert_eq!(p.rpm, Some(None));
        assert_eq!(p.tpm, Some(Some(5)));
        assert_eq!(p.models, None);
        assert_eq!(p.budget_period, Some(Some(BudgetPeriod::Month)));
        let mut l = Limits {
            rpm: Some(1),
            models: Some(vec!["a*".into()]),
            ..Limits::default()
        };
        p.apply(&mut l);
        assert_eq!(l.rpm, None);
        assert_eq!(l.tpm, Some(5));
        assert_eq!(l.models, Some(vec!["a*".into()]));
    }

    #[test]
    fn budget_periods_round_trip() {
        for p in ["1d", "7d", "30d", "1mo"] {
            assert_eq!(p.parse::<BudgetPeriod>().unwrap().as_str(), p);
        }
        assert!("2w".parse::<BudgetPeriod>().is_err());
    }
}
