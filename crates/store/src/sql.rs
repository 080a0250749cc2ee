//! What every query module shares: the switch between the two backends, run-time filters built
//! from fixed fragments with bound values, the change counters, ids and integer conversions.
//!
//! Most statements are written once: SQLite accepts PostgreSQL's `$1` placeholders, and the
//! schemas use compatible types (`BIGINT`/`INTEGER`, `DOUBLE PRECISION`/`REAL`,
//! `BOOLEAN`/`INTEGER`, `JSONB`/`TEXT`). Where the dialects differ a module matches on the pool.

/// Runs `$body` once per backend with `$pool` bound to the concrete pool, so one piece of code
/// type-checks against both drivers.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}

/// Binds the values of a [`Where`] to a query, in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                $crate::sql::Arg::Text(s) => q.bind(s.as_str()),
                $crate::sql::Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

/// Increments the change counter `$name` inside the transaction `$tx` and yields its new value.
/// The counter row is locked until the transaction ends, so revisions become visible in the
/// order they were taken: a poller reading `rev > last` never skips a write that commits late.
macro_rules! bump {
    ($tx:expr, $name:expr) => {
        sqlx::query_scalar::<_, i64>(
            "UPDATE change_counters SET value = value + 1 WHERE name = $1 RETURNING value",
        )
        .bind($name)
        .fetch_one(&mut *$tx)
    };
}

/// Reads the change counter `$name` (the revision of the latest write to that table).
macro_rules! counter {
    ($pool:expr, $name:expr) => {
        sqlx::query_scalar::<_, i64>("SELECT value FROM change_counters WHERE name = $1")
            .bind($name)
            .fetch_one($pool)
    };
}

/// A bound value of a run-time filter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// A `WHERE` clause assembled from fixed fragments; values are only ever bound.
#[derive(Debug, Default)]
pub(crate) struct Where {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Where {
    /// Adds ` AND <fragment> $n`, `fragment` being a constant such as `"key_id ="`.
    pub fn and(&mut self, fragment: &'static str, arg: Arg) -> &mut Self {
        self.args.push(arg);
        let keyword = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql.push_str(keyword);
        self.sql.push_str(fragment);
        self.sql.push_str(" $");
        self.sql.push_str(&self.args.len().to_string());
        self
    }

    /// Adds ` AND <fragment> ($n, $n+1)`, for row-value comparisons.
    pub fn and_pair(&mut self, fragment: &'static str, a: Arg, b: Arg) -> &mut Self {
        self.args.push(a);
        self.args.push(b);
        let n = self.args.len();
        let keyword = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql.push_str(keyword);
        self.sql.push_str(fragment);
        self.sql.push_str(&format!(" (${}, ${n})", n - 1));
        self
    }

    /// Adds a fragment with no value, such as `"status >= 400"`.
    pub fn and_raw(&mut self, fragment: &'static str) -> &mut Self {
        let keyword = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql.push_str(keyword);
        self.sql.push_str(fragment);
        self
    }
}

/// `prefix` + 20 random base62 characters, e.g. `key_3fZ0aQ…`. Ids are names, not secrets.
pub(crate) fn new_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 20);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(20));
    id
}

/// Counts are `u64` in the API and `BIGINT` in the schema.
pub(crate) fn to_db(n: u64) -> crate::Result<i64> {
    i64::try_from(n).map_err(|_| crate::Error::Invalid(format!("{n} is larger than 2^63-1")))
}

pub(crate) fn to_db_opt(n: Option<u64>) -> crate::Result<Option<i64>> {
    n.map(to_db).transpose()
}

/// A negative count can only come from a hand-edited row; it reads as zero.
pub(crate) fn from_db(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn from_db_opt(n: Option<i64>) -> Option<u64> {
    n.map(from_db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_numbers_placeholders_in_order() {
        let mut w = Where::default();
        w.and("key_id =", Arg::Text("k".into()))
            .and_raw("status >= 400")
            .and("ts >=", Arg::Int(5))
            .and_pair("(ts, id) <", Arg::Int(1), Arg::Text("x".into()));
        assert_eq!(
            w.sql,
            " WHERE key_id = $1 AND status >= 400 AND ts >= $2 AND (ts, id) < ($3, $4)"
        );
        assert_eq!(w.args.len(), 4);
    }

    #[test]
    fn ids_have_the_prefix_and_twenty_base62_characters() {
        let id = new_id("key_");
        assert_eq!(id.len(), 24);
        assert!(id.starts_with("key_"));
        assert!(id[4..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(new_id("key_"), new_id("key_"));
    }
}
