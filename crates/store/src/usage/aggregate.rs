//! Usage aggregated per key, team, model, version, provider or day: sums, error counts and
//! latency percentiles for the admin API, the dashboard and the canary analysis.
//!
//! Percentiles are exact and match PostgreSQL's `percentile_cont` (linear interpolation between
//! the two nearest ranks). PostgreSQL computes them itself; SQLite ranks the latencies of each
//! group with window functions and returns only the rows at the needed ranks, which Rust then
//! interpolates. That sorts every latency in the range: fine for a single-replica store, and
//! the reason large deployments use PostgreSQL.

use std::collections::HashMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{explain, Usage, ERROR};
use crate::sql::{from_db, Arg, Where};
use crate::{Error, Pool, Result};

/// What [`Usage::aggregate`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Key,
    Team,
    Model,
    /// Labelled `model@version`, since version names repeat across models.
    Version,
    Provider,
    /// The UTC date, `YYYY-MM-DD`.
    Day,
}

impl FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "key" => Ok(GroupBy::Key),
            "team" => Ok(GroupBy::Team),
            "model" => Ok(GroupBy::Model),
            "version" => Ok(GroupBy::Version),
            "provider" => Ok(GroupBy::Provider),
            "day" => Ok(GroupBy::Day),
            other => Err(Error::Invalid(format!(
                "group_by {other:?}: expected key, team, model, version, provider or day"
            ))),
        }
    }
}

impl GroupBy {
    /// The SQL expression of the group label: a constant per variant, never user input.
    ///
    /// On SQLite the column is wrapped in the no-op unary `+`, so the planner does not walk the
    /// whole `(model, ts)` index to get groups in order: it searches the `ts` index for the time
    /// range instead (100k rows, last 24 h: a `SEARCH` of 3% of the rows instead of a `SCAN`).
    fn expr(self, pool: &Pool) -> &'static str {
        match (self, pool) {
            (GroupBy::Key, Pool::Sqlite(_)) => "+key_id",
            (GroupBy::Team, Pool::Sqlite(_)) => "+team_id",
            (GroupBy::Model, Pool::Sqlite(_)) => "+model",
            (GroupBy::Provider, Pool::Sqlite(_)) => "+provider",
            (GroupBy::Key, Pool::Postgres(_)) => "key_id",
            (GroupBy::Team, Pool::Postgres(_)) => "team_id",
            (GroupBy::Model, Pool::Postgres(_)) => "model",
            (GroupBy::Provider, Pool::Postgres(_)) => "provider",
            (GroupBy::Version, _) => "model || '@' || version",
            (GroupBy::Day, Pool::Sqlite(_)) => "strftime('%Y-%m-%d', ts / 1000, 'unixepoch')",
            (GroupBy::Day, Pool::Postgres(_)) => {
                "to_char(to_timestamp(ts / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
        }
    }
}

/// Which records to aggregate, and how.
#[derive(Debug, Clone)]
pub struct Query {
    pub group_by: GroupBy,
    /// Inclusive lower bound on `ts` (unix ms).
    pub since: Option<i64>,
    /// Exclusive upper bound on `ts` (unix ms).
    pub until: Option<i64>,
    pub model: Option<String>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
}

impl Query {
    pub fn new(group_by: GroupBy) -> Query {
        Query {
            group_by,
            since: None,
            until: None,
            model: None,
            key_id: None,
            team_id: None,
        }
    }
}

/// One row of an aggregate. `group` is `None` for records without a key or team.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub group: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_usd: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile latency, milliseconds.
    pub p95_ms: f64,
}

impl Usage<'_> {
    /// Aggregates the records matching `q`, one row per group, ordered by group label
    /// (records without a key or team last).
    pub async fn aggregate(&self, q: &Query) -> Result<Vec<Group>> {
        let (sql, w) = sums_sql(q, &self.store.pool);
        let mut groups = with_pool!(self.store, pool => {
            let rows = bind_args!(sqlx::query_as::<_, SumRow>(&sql), &w.args)
                .fetch_all(pool)
                .await?;
            rows.into_iter().map(SumRow::into_group).collect::<Vec<_>>()
        });
        if let Pool::Sqlite(pool) = &self.store.pool {
            let (sql, w) = ranks_sql(q, &self.store.pool);
            let ranks = bind_args!(sqlx::query_as::<_, RankRow>(&sql), &w.args)
                .fetch_all(pool)
                .await?;
            fill_percentiles(&mut groups, &ranks);
        }
        groups.sort_by(|a, b| {
            (a.group.is_none().cmp(&b.group.is_none())).then_with(|| a.group.cmp(&b.group))
        });
        Ok(groups)
    }

    /// The database's plan for [`Usage::aggregate`], one line per plan node (SQLite: the sums
    /// query, then the percentile query). For notes and benchmarks.
    pub async fn explain_aggregate(&self, q: &Query) -> Result<Vec<String>> {
        let (sums, w) = sums_sql(q, &self.store.pool);
        let mut lines = explain(self.store, &sums, &w).await?;
        if let Pool::Sqlite(_) = &self.store.pool {
            let (ranks, w) = ranks_sql(q, &self.store.pool);
            lines.extend(explain(self.store, &ranks, &w).await?);
        }
        Ok(lines)
    }
}

fn filters(q: &Query) -> Where {
    let mut w = Where::default();
    if let Some(s) = q.since {
        w.and("ts >=", Arg::Int(s));
    }
    if let Some(u) = q.until {
        w.and("ts <", Arg::Int(u));
    }
    if let Some(m) = &q.model {
        w.and("model =", Arg::Text(m.clone()));
    }
    if let Some(k) = &q.key_id {
        w.and("key_id =", Arg::Text(k.clone()));
    }
    if let Some(t) = &q.team_id {
        w.and("team_id =", Arg::Text(t.clone()));
    }
    w
}

fn sums_sql(q: &Query, pool: &Pool) -> (String, Where) {
    let w = filters(q);
    let group = q.group_by.expr(pool);
    let (cost, percentiles) = match pool {
        Pool::Postgres(_) => (
            "COALESCE(SUM(cost_usd), 0.0)",
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95_ms",
        ),
        Pool::Sqlite(_) => ("TOTAL(cost_usd)", "0.0 AS p50_ms, 0.0 AS p95_ms"),
    };
    let sql = format!(
        "SELECT {group} AS grp, COUNT(*) AS requests, \
         SUM(CASE WHEN {ERROR} THEN 1 ELSE 0 END) AS errors, \
         SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, \
         SUM(cache_read_tokens) AS cache_read_tokens, \
         SUM(cache_write_tokens) AS cache_write_tokens, \
         SUM(reasoning_tokens) AS reasoning_tokens, {cost} AS cost_usd, {percentiles} \
         FROM usage_records{} GROUP BY 1",
        w.sql
    );
    let sql = match pool {
        // PostgreSQL sums BIGINTs into NUMERIC: bring them back to BIGINT.
        Pool::Postgres(_) => format!(
            "SELECT grp, requests, errors::BIGINT AS errors, \
             input_tokens::BIGINT AS input_tokens, output_tokens::BIGINT AS output_tokens, \
             cache_read_tokens::BIGINT AS cache_read_tokens, \
             cache_write_tokens::BIGINT AS cache_write_tokens, \
             reasoning_tokens::BIGINT AS reasoning_tokens, cost_usd, p50_ms, p95_ms \
             FROM ({sql}) AS sums"
        ),
        Pool::Sqlite(_) => sql,
    };
    (sql, w)
}

/// SQLite: per group, the latencies at the ranks either side of the 50th and 95th percentile
/// positions `(n - 1) * p`, plus `n`. Both window functions share one window, so SQLite sorts
/// once.
fn ranks_sql(q: &Query, pool: &Pool) -> (String, Where) {
    let w = filters(q);
    let group = q.group_by.expr(pool);
    let sql = format!(
        "WITH ranked AS (\
           SELECT {group} AS grp, latency_ms, ROW_NUMBER() OVER w - 1 AS rn, \
             COUNT(*) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS n \
           FROM usage_records{} \
           WINDOW w AS (PARTITION BY {group} ORDER BY latency_ms)) \
         SELECT grp, n, rn, latency_ms FROM ranked \
         WHERE rn IN ((n - 1) * 50 / 100, (n - 1) * 50 / 100 + 1, \
                      (n - 1) * 95 / 100, (n - 1) * 95 / 100 + 1)",
        w.sql
    );
    (sql, w)
}

/// `percentile_cont(p)` from the rows around position `(n - 1) * p`; `pct` is `p` in percent.
fn percentile(n: i64, pct: i64, at: &HashMap<i64, f64>) -> f64 {
    let scaled = (n - 1) * pct;
    let lo = scaled / 100;
    let frac = (scaled % 100) as f64 / 100.0;
    let low = at.get(&lo).copied().unwrap_or(0.0);
    match at.get(&(lo + 1)) {
        Some(high) if frac > 0.0 => low + frac * (high - low),
        _ => low,
    }
}

fn fill_percentiles(groups: &mut [Group], ranks: &[RankRow]) {
    let mut by_group: HashMap<Option<&str>, (i64, HashMap<i64, f64>)> = HashMap::new();
    for r in ranks {
        let entry = by_group.entry(r.grp.as_deref()).or_default();
        entry.0 = r.n;
        entry.1.insert(r.rn, r.latency_ms);
    }
    for g in groups {
        if let Some((n, at)) = by_group.get(&g.group.as_deref()) {
            g.p50_ms = percentile(*n, 50, at);
            g.p95_ms = percentile(*n, 95, at);
        }
    }
}

#[derive(sqlx::FromRow)]
struct SumRow {
    grp: Option<String>,
    requests: i64,
    errors: i64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    cost_usd: f64,
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
}

impl SumRow {
    fn into_group(self) -> Group {
        Group {
            group: self.grp,
            requests: from_db(self.requests),
            errors: from_db(self.errors),
            input_tokens: from_db(self.input_tokens),
            output_tokens: from_db(self.output_tokens),
            cache_read_tokens: from_db(self.cache_read_tokens),
            cache_write_tokens: from_db(self.cache_write_tokens),
            reasoning_tokens: from_db(self.reasoning_tokens),
            cost_usd: self.cost_usd,
            p50_ms: self.p50_ms.unwrap_or(0.0),
            p95_ms: self.p95_ms.unwrap_or(0.0),
        }
    }
}

#[derive(sqlx::FromRow)]
struct RankRow {
    grp: Option<String>,
    n: i64,
    rn: i64,
    latency_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_percentile_cont() {
        // 1..=10: p50 at position 4.5 -> 5.5; p95 at position 8.55 -> 9.55.
        let at: HashMap<i64, f64> = (0..10).map(|i| (i, (i + 1) as f64)).collect();
        assert!((percentile(10, 50, &at) - 5.5).abs() < 1e-9);
        assert!((percentile(10, 95, &at) - 9.55).abs() < 1e-9);
        let one: HashMap<i64, f64> = [(0, 7.0)].into();
        assert_eq!(percentile(1, 50, &one), 7.0);
        assert_eq!(percentile(1, 95, &one), 7.0);
    }
}
