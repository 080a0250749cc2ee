//! Rollout state per model (which version is stable, canary, shadow, with what share) and the
//! history of every change. The rollout logic lives in the gateway; this module only keeps
//! state durable, versioned for compare-and-set, and visible to polling replicas.

use serde::{Deserialize, Serialize};

use crate::{now_ms, Error, Result, Store};

/// Inserts one history row inside transaction `$tx`; yields its id.
macro_rules! insert_history {
    ($tx:expr, $model:expr, $now:expr, $change:expr) => {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO rollout_history (model, ts, actor, action, from_value, to_value, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind($model)
        .bind($now)
        .bind(&$change.actor)
        .bind(&$change.action)
        .bind(&$change.from)
        .bind(&$change.to)
        .bind(&$change.reason)
        .fetch_one(&mut *$tx)
        .await?
    };
}

/// The stored split of one model. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub model: String,
    #[serde(flatten)]
    pub split: Split,
    pub updated_at: i64,
    /// The change counter value of this model's latest write: pass it back to
    /// [`Rollouts::set`] to change the state only if nobody else did in between.
    pub rev: i64,
}

/// What [`Rollouts::set`] writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Split {
    pub stable: String,
    #[serde(default)]
    pub canary: Option<String>,
    /// 0 to 100.
    #[serde(default)]
    pub canary_percent: f64,
    #[serde(default)]
    pub shadow: Option<String>,
    /// 0 to 100.
    #[serde(default)]
    pub shadow_percent: f64,
}

/// Who changed what and why; one row of the history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `admin`, `cli`, `analysis`, `config`, …
    pub actor: String,
    /// `promote`, `rollback`, `set`, `hold`, …
    pub action: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A recorded [`Change`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Increases with every entry: newer entries have larger ids.
    pub id: i64,
    pub model: String,
    pub ts: i64,
    #[serde(flatten)]
    pub change: Change,
}

/// What [`Rollouts::set`] requires of the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is stored.
    Any,
    /// Write only if the model has no state yet.
    Absent,
    /// Write only if the stored state has this revision.
    Rev(i64),
}

/// Rollout operations; get one with [`Store::rollouts`].
pub struct Rollouts<'a> {
    pub(crate) store: &'a Store,
}

const COLUMNS: &str =
    "model, stable, canary, canary_percent, shadow, shadow_percent, updated_at, rev";

impl Rollouts<'_> {
    pub async fn get(&self, model: &str) -> Result<Option<State>> {
        let sql = format!("SELECT {COLUMNS} FROM rollout_state WHERE model = $1");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(model).fetch_optional(pool).await?;
            Ok(row.map(Row::into_state))
        })
    }

    /// Every model's state, by model name.
    pub async fn list(&self) -> Result<Vec<State>> {
        let sql = format!("SELECT {COLUMNS} FROM rollout_state ORDER BY model");
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, Row>(&sql).fetch_all(pool).await?;
            Ok(rows.into_iter().map(Row::into_state).collect())
        })
    }

    /// Writes `split` for `model` and appends `change` to its history, in one transaction.
    /// [`Error::Conflict`] when `expect` does not hold (someone else changed the state);
    /// [`Error::Invalid`] for a percent outside 0..=100.
    pub async fn set(
        &self,
        model: &str,
        split: &Split,
        expect: Expect,
        change: &Change,
    ) -> Result<State> {
        for p in [split.canary_percent, split.shadow_percent] {
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::Invalid(format!("percent {p}: expected 0 to 100")));
            }
        }
        let current = "SELECT rev FROM rollout_state WHERE model = $1";
        let upsert = format!(
            "INSERT INTO rollout_state ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (model) DO UPDATE SET stable = excluded.stable, \
             canary = excluded.canary, canary_percent = excluded.canary_percent, \
             shadow = excluded.shadow, shadow_percent = excluded.shadow_percent, \
             updated_at = excluded.updated_at, rev = excluded.rev RETURNING {COLUMNS}"
        );
        let now = now_ms();
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let rev = bump!(tx, "rollouts").await?;
            let stored = sqlx::query_scalar::<_, i64>(current)
                .bind(model)
                .fetch_optional(&mut *tx)
                .await?;
            let ok = match expect {
                Expect::Any => true,
                Expect::Absent => stored.is_none(),
                Expect::Rev(r) => stored == Some(r),
            };
            if !ok {
                return Err(Error::Conflict(format!(
                    "rollout of {model} changed meanwhile (now at revision {})",
                    stored.map_or_else(|| "none".to_owned(), |r| r.to_string())
                )));
            }
            let row = sqlx::query_as::<_, Row>(&upsert)
                .bind(model)
                .bind(&split.stable)
                .bind(&split.canary)
                .bind(split.canary_percent)
                .bind(&split.shadow)
                .bind(split.shadow_percent)
                .bind(now)
                .bind(rev)
                .fetch_one(&mut *tx)
                .await?;
            insert_history!(tx, model, now, change);
            tx.commit().await?;
            Ok(row.into_state())
        })
    }

    /// Appends `change` to the history without touching the state (an analysis that decided
    /// to hold, a note).
    pub async fn record(&self, model: &str, change: &Change) -> Result<Entry> {
        let now = now_ms();
        with_pool!(self.store, pool => {
            let mut tx = pool.begin().await?;
            let id = insert_history!(tx, model, now, change);
            tx.commit().await?;
            Ok(Entry { id, model: model.to_owned(), ts: now, change: change.clone() })
        })
    }

    /// The history of `model`, newest first, at most `limit` entries.
    pub async fn history(&self, model: &str, limit: u32) -> Result<Vec<Entry>> {
        let sql = "SELECT id, model, ts, actor, action, from_value, to_value, reason \
                   FROM rollout_history WHERE model = $1 ORDER BY id DESC LIMIT $2";
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, HistoryRow>(sql)
                .bind(model)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            Ok(rows.into_iter().map(HistoryRow::into_entry).collect())
        })
    }

    /// Every state written after revision `rev`, in revision order.
    pub async fn changed_since(&self, rev: i64) -> Result<Vec<State>> {
        let sql = format!("SELECT {COLUMNS} FROM rollout_state WHERE rev > $1 ORDER BY rev");
        with_pool!(self.store, pool => {
            let rows = sqlx::query_as::<_, Row>(&sql).bind(rev).fetch_all(pool).await?;
            Ok(rows.into_iter().map(Row::into_state).collect())
        })
    }

    /// The revision of the latest rollout write.
    pub async fn version(&self) -> Result<i64> {
        with_pool!(self.store, pool => Ok(counter!(pool, "rollouts").await?))
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    model: String,
    #[sqlx(flatten)]
    split: Split,
    updated_at: i64,
    rev: i64,
}

impl Row {
    fn into_state(self) -> State {
        State {
            model: self.model,
            split: self.split,
            updated_at: self.updated_at,
            rev: self.rev,
        }
    }
}

#[derive(sqlx::FromRow)]
struct HistoryRow {
    id: i64,
    model: String,
    ts: i64,
    actor: String,
    action: String,
    from_value: Option<String>,
    to_value: Option<String>,
    reason: Option<String>,
}

impl HistoryRow {
    fn into_entry(self) -> Entry {
        Entry {
            id: self.id,
            model: self.model,
            ts: self.ts,
            change: Change {
                actor: self.actor,
                action: self.action,
                from: self.from_value,
                to: self.to_value,
                reason: self.reason,
            },
        }
    }
}
