//! Usage records (SPEC §3.4): one per request, written in batches, idempotent by request id;
//! read back one at a time, as a recent list, as aggregates and as spend for budgets.
//!
//! A record is an error when `status >= 400` or `error` is set (a stream that failed after its
//! first byte keeps status 200 and carries the error). Durations are `f64` milliseconds. A cost
//! is `None` when no price is known for the target: stored as NULL, never as a made-up 0 (sums
//! and budgets add up the known costs).

mod aggregate;
mod sqlite_writer;

pub(crate) use sqlite_writer::SqliteWriter;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::sql::{from_db, Arg, Where};
use crate::{Error, Result, Store};

pub use aggregate::{Group, GroupBy, Query};

/// A name a record repeats from the gateway's configuration (endpoint, model, version,
/// provider, upstream model): borrowed from the configuration, which keeps each name once for
/// the life of the process, so a record costs no allocation for it; owned when read back from
/// the store or when the name came with the request (a provider's model named directly).
pub type Name = Cow<'static, str>;

/// One request, as SPEC §3.4 lists it. `ts` is the request's start, unix milliseconds.
///
/// Fields added after the first release carry `#[serde(default)]`, so spool lines written by an
/// older gateway still replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub request_id: String,
    pub ts: i64,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    /// The API the request came in on (`chat.completions`, `messages`, …); empty when unknown
    /// (records written before it was kept).
    #[serde(default)]
    pub endpoint: Name,
    /// The public model name; empty if the request never named a known one.
    pub model: Name,
    /// Empty when no version was chosen (the request failed before routing).
    pub version: Name,
    pub provider: Name,
    pub upstream_model: Name,
    pub status: u16,
    pub streamed: bool,
    /// The answer was produced in full (a stream reached its end). `None`: not recorded.
    #[serde(default)]
    pub completed: Option<bool>,
    /// The client went away before the answer was complete. `None`: not recorded.
    #[serde(default)]
    pub client_gone: Option<bool>,
    pub input_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
    pub output_tokens: u64,
    /// USD; `None` when no price is known for the target.
    pub cost_usd: Option<f64>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub overhead_ms: f64,
    pub attempts: Vec<Attempt>,
    pub error: Option<String>,
    /// The request body as the client sent it (`server.usage_log_bodies`), capped by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    /// The generated text (`server.usage_log_bodies`), capped by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<String>,
}

/// One target tried while serving a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub provider: Name,
    pub upstream_model: Name,
    /// The upstream's HTTP status; `None` when it never answered (connect error, timeout).
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub latency_ms: f64,
    #[serde(default)]
    pub error: Option<String>,
}

/// Which records [`Usage::recent`] returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    pub model: Option<String>,
    pub status: Option<Status>,
    /// Inclusive lower bound on `ts`.
    pub since: Option<i64>,
    /// Exclusive upper bound on `ts`.
    pub until: Option<i64>,
    /// Paging: only records strictly older than this one (`(ts, request_id)` of the last record
    /// of the previous page).
    pub before: Option<(i64, String)>,
    /// At most this many (capped at [`MAX_LIMIT`]; 0 means [`DEFAULT_LIMIT`]).
    pub limit: u32,
}

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;

/// A status filter: `"429"`, `"5xx"`, `"ok"` or `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Code(u16),
    /// `4` for 4xx, `5` for 5xx.
    Class(u8),
    Ok,
    Error,
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Invalid(format!(
                "status {s:?}: expected a code, 4xx, 5xx, ok or error"
            ))
        };
        match s {
            "ok" | "success" => Ok(Status::Ok),
            "error" | "errors" => Ok(Status::Error),
            _ if s.len() == 3 && s.ends_with("xx") => {
                let c = s.as_bytes()[0];
                if (b'1'..=b'5').contains(&c) {
                    Ok(Status::Class(c - b'0'))
                } else {
                    Err(bad())
                }
            }
            _ => s.parse().map(Status::Code).map_err(|_| bad()),
        }
    }
}

/// Whose spend [`Usage::spend`] adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    Key(&'a str),
    Team(&'a str),
}

/// Usage operations; get one with [`Store::usage`].
pub struct Usage<'a> {
    pub(crate) store: &'a Store,
}

const COLUMNS: &str = "request_id, ts, key_id, team_id, endpoint, model, version, provider, \
    upstream_model, status, streamed, completed, client_gone, input_tokens, cache_read_tokens, \
    cache_write_tokens, reasoning_tokens, output_tokens, cost_usd, latency_ms, ttft_ms, \
    overhead_ms, attempts, error, request_body, completion";

/// Whether a record is an error. Also the condition of the partial index
/// `usage_records_errors_ts` (migrations 0002): change both together.
const ERROR: &str = "(status >= 400 OR error IS NOT NULL)";

impl Usage<'_> {
    /// Inserts `records`: in one statement on PostgreSQL (`INSERT … SELECT FROM UNNEST`); on a
    /// SQLite file in one transaction on the usage writer thread (`sqlite_writer`: one prepared
    /// single-row `INSERT`); on SQLite in memory in one transaction of multi-row `INSERT`s
    /// through the pool. A record whose `request_id` is already stored is skipped, so a batch
    /// can be replayed safely. Returns how many were new.
    ///
    /// Never refuses a record for its values: counts above `i64::MAX` are clamped, non-finite
    /// durations or costs are stored as 0, and on PostgreSQL (whose text cannot hold it) a NUL
    /// character becomes U+FFFD, so one bad record cannot lose a batch.
    pub async fn insert_batch(&self, records: &[Record]) -> Result<u64> {
        match &self.store.usage_writer {
            Some(_) => self.insert_shared(Arc::new(records.to_vec())).await,
            None => self.insert_through_pool(records).await,
        }
    }

    /// [`Usage::insert_batch`] for a batch the caller keeps a handle on (to spool it if the
    /// insert fails or times out): on a SQLite file the records are not copied.
    pub async fn insert_shared(&self, records: Arc<Vec<Record>>) -> Result<u64> {
        match &self.store.usage_writer {
            Some(_) if records.is_empty() => Ok(0),
            Some(writer) => writer.insert(records).await,
            None => self.insert_through_pool(&records).await,
        }
    }

    /// PostgreSQL, and SQLite in memory (no writer thread: another connection would see
    /// another database).
    async fn insert_through_pool(&self, records: &[Record]) -> Result<u64> {
        if records.is_empty() {
            return Ok(0);
        }
        match &self.store.pool {
            crate::Pool::Postgres(pool) => insert_postgres(pool, records).await,
            crate::Pool::Sqlite(pool) => insert_sqlite(pool, records).await,
        }
    }

    pub async fn get(&self, request_id: &str) -> Result<Option<Record>> {
        let sql = format!("SELECT {COLUMNS} FROM usage_records WHERE request_id = $1");
        with_pool!(self.store, pool => {
            let row = sqlx::query_as::<_, Row>(&sql).bind(request_id).fetch_optional(pool).await?;
            Ok(row.map(Row::into_record))
        })
    }

    /// Records matching `filter`, newest first (ties by request id, descending).
    pub async fn recent(&self, filter: &Filter) -> Result<Vec<Record>> {
        let (sql, w) = recent_sql(filter);
        with_pool!(self.store, pool => {
            let rows = bind_args!(sqlx::query_as::<_, Row>(&sql), &w.args)
                .fetch_all(pool)
                .await?;
            Ok(rows.into_iter().map(Row::into_record).collect())
        })
    }

    /// The database's plan for [`Usage::recent`], one line per plan node. For notes and
    /// benchmarks.
    pub async fn explain_recent(&self, filter: &Filter) -> Result<Vec<String>> {
        let (sql, w) = recent_sql(filter);
        explain(self.store, &sql, &w).await
    }

    /// USD spent by a key or a team since `since` (inclusive; `None`: ever). Budgets use it.
    pub async fn spend(&self, scope: Scope<'_>, since: Option<i64>) -> Result<f64> {
        let (column, id) = match scope {
            Scope::Key(id) => ("key_id", id),
            Scope::Team(id) => ("team_id", id),
        };
        let sql = format!(
            "SELECT COALESCE(SUM(cost_usd), 0.0) FROM usage_records WHERE {column} = $1 AND ts >= $2"
        );
        let since = since.unwrap_or(i64::MIN);
        with_pool!(self.store, pool => Ok(
            sqlx::query_scalar::<_, f64>(&sql).bind(id).bind(since).fetch_one(pool).await?
        ))
    }

    /// Deletes records older than `before` (retention); returns how many.
    pub async fn prune(&self, before: i64) -> Result<u64> {
        with_pool!(self.store, pool => {
            let done = sqlx::query("DELETE FROM usage_records WHERE ts < $1")
                .bind(before)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}

/// The `SELECT` of [`Usage::recent`]: newest first, so the `(…, ts)` indexes give the order
/// and the `LIMIT` stops the scan early.
fn recent_sql(filter: &Filter) -> (String, Where) {
    let mut w = Where::default();
    if let Some(k) = &filter.key_id {
        w.and("key_id =", Arg::Text(k.clone()));
    }
    if let Some(t) = &filter.team_id {
        w.and("team_id =", Arg::Text(t.clone()));
    }
    if let Some(m) = &filter.model {
        w.and("model =", Arg::Text(m.clone()));
    }
    // Error codes and classes also carry the (redundant) `ERROR` condition: the planner then
    // walks the partial index `usage_records_errors_ts (ts, status)`, newest first, through the
    // few failed requests only, testing `status` in the index (SQLite uses a partial index only
    // when the query repeats its condition).
    match filter.status {
        None => {}
        Some(Status::Code(c)) => {
            w.and("status =", Arg::Int(i64::from(c)));
            if c >= 400 {
                w.and_raw(ERROR);
            }
        }
        Some(Status::Class(c)) => {
            w.and("status >=", Arg::Int(i64::from(c) * 100));
            w.and("status <", Arg::Int(i64::from(c) * 100 + 100));
            if c >= 4 {
                w.and_raw(ERROR);
            }
        }
        Some(Status::Ok) => {
            w.and_raw("status < 400 AND error IS NULL");
        }
        Some(Status::Error) => {
            w.and_raw(ERROR);
        }
    }
    if let Some(s) = filter.since {
        w.and("ts >=", Arg::Int(s));
    }
    if let Some(u) = filter.until {
        w.and("ts <", Arg::Int(u));
    }
    if let Some((ts, id)) = &filter.before {
        // Row-value comparison: older than the cursor in (ts, request_id) order.
        w.and_pair("(ts, request_id) <", Arg::Int(*ts), Arg::Text(id.clone()));
    }
    let limit = match filter.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM usage_records{} ORDER BY ts DESC, request_id DESC LIMIT {limit}",
        w.sql
    );
    (sql, w)
}

/// `EXPLAIN` (PostgreSQL) or `EXPLAIN QUERY PLAN` (SQLite) of `sql`, one line per plan node.
async fn explain(store: &Store, sql: &str, w: &Where) -> Result<Vec<String>> {
    match &store.pool {
        crate::Pool::Postgres(pool) => {
            let sql = format!("EXPLAIN {sql}");
            Ok(bind_args!(sqlx::query_scalar::<_, String>(&sql), &w.args)
                .fetch_all(pool)
                .await?)
        }
        crate::Pool::Sqlite(pool) => {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let rows: Vec<(i64, i64, i64, String)> = bind_args!(sqlx::query_as(&sql), &w.args)
                .fetch_all(pool)
                .await?;
            // Indent each node under its parent, as the `sqlite3` shell does.
            let mut depth: std::collections::HashMap<i64, usize> = Default::default();
            Ok(rows
                .into_iter()
                .map(|(id, parent, _, detail)| {
                    let d = depth.get(&parent).map_or(0, |d| d + 1);
                    depth.insert(id, d);
                    format!("{}{detail}", "  ".repeat(d))
                })
                .collect())
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// The latency of the one attempt a record implies when its `attempts` column is stored empty
/// (see [`Record::attempts_implied`]): the request's latency less the gateway's overhead, rounded to
/// whole nanoseconds (the gateway measures both in nanoseconds).
fn implied_latency_ms(latency_ms: f64, overhead_ms: f64) -> f64 {
    ((latency_ms - overhead_ms) * 1e6).round() / 1e6
}

impl Record {
    /// Whether the record implies its attempts, which the SQLite usage writer then stores as
    /// the empty text: one attempt, on the record's own provider and upstream model, answered
    /// with the record's status, no error, and a latency [`implied_latency_ms`] gives back
    /// exactly (bit for bit, so reading it back rebuilds the same record). That is most
    /// records: the attempts' JSON was a quarter of a record's bytes in the table, and the
    /// writer's CPU per record fell by ~0.3 µs without it.
    pub fn attempts_implied(&self) -> bool {
        match self.attempts.as_slice() {
            [a] => {
                a.error.is_none()
                    && a.status == Some(self.status)
                    && a.provider == self.provider
                    && a.upstream_model == self.upstream_model
                    && a.latency_ms.to_bits()
                        == implied_latency_ms(finite(self.latency_ms), finite(self.overhead_ms))
                            .to_bits()
            }
            _ => false,
        }
    }
}

/// The `attempts` column as read: `None` for the empty text of [`Record::attempts_implied`] (SQLite
/// only; PostgreSQL's `jsonb` column always holds the list).
struct StoredAttempts(Option<Vec<Attempt>>);

impl sqlx::Type<sqlx::Sqlite> for StoredAttempts {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <&str as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for StoredAttempts {
    fn decode(
        value: sqlx::sqlite::SqliteValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Sqlite>>::decode(value)?;
        if text.is_empty() {
            return Ok(StoredAttempts(None));
        }
        Ok(StoredAttempts(Some(serde_json::from_str(text)?)))
    }
}

impl sqlx::Type<sqlx::Postgres> for StoredAttempts {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Json<Vec<Attempt>> as sqlx::Type<sqlx::Postgres>>::type_info()
    }

    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <Json<Vec<Attempt>> as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for StoredAttempts {
    fn decode(
        value: sqlx::postgres::PgValueRef<'r>,
    ) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        let list = <Json<Vec<Attempt>> as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(StoredAttempts(Some(list.0)))
    }
}

fn attempts_json(r: &Record) -> String {
    let mut out = Vec::with_capacity(128);
    write_attempts(&mut out, &r.attempts);
    String::from_utf8(out).unwrap_or_else(|_| "[]".to_owned())
}

/// The `attempts` column: the JSON `serde_json` writes for `Vec<Attempt>` (and reads back),
/// byte for byte, written directly. Through serde it was ~5% of the SQLite usage writer's
/// time, for a record of one attempt.
pub(crate) fn write_attempts(out: &mut Vec<u8>, attempts: &[Attempt]) {
    out.push(b'[');
    for (i, a) in attempts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"provider\":");
        json_str(out, &a.provider);
        out.extend_from_slice(b",\"upstream_model\":");
        json_str(out, &a.upstream_model);
        out.extend_from_slice(b",\"status\":");
        match a.status {
            Some(s) => out.extend_from_slice(itoa::Buffer::new().format(s).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"latency_ms\":");
        // serde_json's own float format (shortest round-trip; `null` if not finite).
        let _ = serde_json::to_writer(&mut *out, &a.latency_ms);
        out.extend_from_slice(b",\"error\":");
        match &a.error {
            Some(e) => json_str(out, e),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// `s` as a JSON string. Names and error words rarely need escaping; those that do are
/// escaped by `serde_json` itself (writing into a `Vec` cannot fail).
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Text PostgreSQL accepts: `\0` (which it refuses in any text value) becomes U+FFFD.
fn pg_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_owned()
    }
}

async fn insert_postgres(pool: &sqlx::PgPool, records: &[Record]) -> Result<u64> {
    let sql = format!(
        "INSERT INTO usage_records ({COLUMNS}) \
         SELECT request_id, ts, key_id, team_id, endpoint, model, version, provider, \
                upstream_model, status, streamed, completed, client_gone, input_tokens, \
                cache_read_tokens, cache_write_tokens, reasoning_tokens, output_tokens, cost_usd, \
                latency_ms, ttft_ms, overhead_ms, attempts::jsonb, error, request_body, completion \
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::text[], $9::text[], $10::int8[], $11::bool[], $12::bool[], \
                     $13::bool[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], \
                     $18::int8[], $19::float8[], $20::float8[], $21::float8[], $22::float8[], \
                     $23::text[], $24::text[], $25::text[], $26::text[]) \
              AS u({COLUMNS}) \
         ON CONFLICT (request_id) DO NOTHING"
    );
    let col = |f: &dyn Fn(&Record) -> i64| records.iter().map(f).collect::<Vec<i64>>();
    let text = |f: &dyn Fn(&Record) -> &str| {
        records
            .iter()
            .map(|r| pg_text(f(r)))
            .collect::<Vec<String>>()
    };
    let opt_text = |f: &dyn Fn(&Record) -> Option<&String>| {
        records
            .iter()
            .map(|r| f(r).map(|s| pg_text(s)))
            .collect::<Vec<Option<String>>>()
    };
    let opt_bool =
        |f: &dyn Fn(&Record) -> Option<bool>| records.iter().map(f).collect::<Vec<Option<bool>>>();
    let float =
        |f: &dyn Fn(&Record) -> f64| records.iter().map(|r| finite(f(r))).collect::<Vec<f64>>();
    let opt_float = |f: &dyn Fn(&Record) -> Option<f64>| {
        records
            .iter()
            .map(|r| f(r).map(finite))
            .collect::<Vec<Option<f64>>>()
    };
    let done = sqlx::query(&sql)
        .bind(text(&|r| &r.request_id))
        .bind(col(&|r| r.ts))
        .bind(opt_text(&|r| r.key_id.as_ref()))
        .bind(opt_text(&|r| r.team_id.as_ref()))
        .bind(text(&|r| &r.endpoint))
        .bind(text(&|r| &r.model))
        .bind(text(&|r| &r.version))
        .bind(text(&|r| &r.provider))
        .bind(text(&|r| &r.upstream_model))
        .bind(col(&|r| i64::from(r.status)))
        .bind(records.iter().map(|r| r.streamed).collect::<Vec<bool>>())
        .bind(opt_bool(&|r| r.completed))
        .bind(opt_bool(&|r| r.client_gone))
        .bind(col(&|r| clamp(r.input_tokens)))
        .bind(col(&|r| clamp(r.cache_read_tokens)))
        .bind(col(&|r| clamp(r.cache_write_tokens)))
        .bind(col(&|r| clamp(r.reasoning_tokens)))
        .bind(col(&|r| clamp(r.output_tokens)))
        .bind(opt_float(&|r| r.cost_usd))
        .bind(float(&|r| r.latency_ms))
        .bind(opt_float(&|r| r.ttft_ms))
        .bind(float(&|r| r.overhead_ms))
        .bind(
            records
                .iter()
                .map(|r| pg_text(&attempts_json(r)))
                .collect::<Vec<String>>(),
        )
        .bind(opt_text(&|r| r.error.as_ref()))
        .bind(opt_text(&|r| r.request_body.as_ref()))
        .bind(opt_text(&|r| r.completion.as_ref()))
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Rows per SQLite statement, largest first. Only these three statement shapes exist, so the
/// connection's statement cache holds three prepared statements rather than one per batch
/// size (each a program of thousands of instructions: caching one per size grew the process
/// by tens of MiB).
const SQLITE_ROWS_PER_STATEMENT: [usize; 3] = [100, 10, 1];
/// Values per row in SQLite's multi-row `INSERT`.
const SQLITE_VALUES_PER_ROW: usize = 26;
const _: () = assert!(SQLITE_VALUES_PER_ROW * SQLITE_ROWS_PER_STATEMENT[0] <= 32_766);

/// `INSERT … VALUES (…), (…) ON CONFLICT DO NOTHING` for `rows` rows.
fn sqlite_insert_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage_records ({COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        // Anonymous `?` placeholders: SQLite looks named ones (`$n`) up by a linear search,
        // which makes binding thousands of them quadratic.
        sql.push_str("(?");
        sql.push_str(&", ?".repeat(SQLITE_VALUES_PER_ROW - 1));
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
    sql
}

async fn insert_sqlite(pool: &sqlx::SqlitePool, records: &[Record]) -> Result<u64> {
    static SQL: std::sync::LazyLock<[String; 3]> =
        std::sync::LazyLock::new(|| SQLITE_ROWS_PER_STATEMENT.map(sqlite_insert_sql));
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    let mut rest = records;
    while !rest.is_empty() {
        let Some(shape) = SQLITE_ROWS_PER_STATEMENT
            .iter()
            .position(|&n| n <= rest.len())
        else {
            break;
        };
        let (chunk, tail) = rest.split_at(SQLITE_ROWS_PER_STATEMENT[shape]);
        rest = tail;
        let mut q = sqlx::query(&SQL[shape]);
        for r in chunk {
            q = q
                .bind(&r.request_id)
                .bind(r.ts)
                .bind(&r.key_id)
                .bind(&r.team_id)
                .bind(&r.endpoint)
                .bind(&r.model)
                .bind(&r.version)
                .bind(&r.provider)
                .bind(&r.upstream_model)
                .bind(i64::from(r.status))
                .bind(r.streamed)
                .bind(r.completed)
                .bind(r.client_gone)
                .bind(clamp(r.input_tokens))
                .bind(clamp(r.cache_read_tokens))
                .bind(clamp(r.cache_write_tokens))
                .bind(clamp(r.reasoning_tokens))
                .bind(clamp(r.output_tokens))
                .bind(r.cost_usd.map(finite))
                .bind(finite(r.latency_ms))
                .bind(r.ttft_ms.map(finite))
                .bind(finite(r.overhead_ms))
                .bind(attempts_json(r))
                .bind(&r.error)
                .bind(&r.request_body)
                .bind(&r.completion);
        }
        inserted += q.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

#[derive(sqlx::FromRow)]
struct Row {
    request_id: String,
    ts: i64,
    key_id: Option<String>,
    team_id: Option<String>,
    endpoint: String,
    model: String,
    version: String,
    provider: String,
    upstream_model: String,
    status: i64,
    streamed: bool,
    completed: Option<bool>,
    client_gone: Option<bool>,
    input_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    reasoning_tokens: i64,
    output_tokens: i64,
    cost_usd: Option<f64>,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    overhead_ms: f64,
    attempts: StoredAttempts,
    error: Option<String>,
    request_body: Option<String>,
    completion: Option<String>,
}

impl Row {
    fn into_record(self) -> Record {
        let attempts = self.attempts.0.unwrap_or_else(|| {
            vec![Attempt {
                provider: self.provider.clone().into(),
                upstream_model: self.upstream_model.clone().into(),
                status: u16::try_from(self.status).ok(),
                latency_ms: implied_latency_ms(self.latency_ms, self.overhead_ms),
                error: None,
            }]
        });
        Record {
            request_id: self.request_id,
            ts: self.ts,
            key_id: self.key_id,
            team_id: self.team_id,
            endpoint: self.endpoint.into(),
            model: self.model.into(),
            version: self.version.into(),
            provider: self.provider.into(),
            upstream_model: self.upstream_model.into(),
            status: u16::try_from(self.status).unwrap_or(0),
            streamed: self.streamed,
            completed: self.completed,
            client_gone: self.client_gone,
            input_tokens: from_db(self.input_tokens),
            cache_read_tokens: from_db(self.cache_read_tokens),
            cache_write_tokens: from_db(self.cache_write_tokens),
            reasoning_tokens: from_db(self.reasoning_tokens),
            output_tokens: from_db(self.output_tokens),
            cost_usd: self.cost_usd,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            overhead_ms: self.overhead_ms,
            attempts,
            error: self.error,
            request_body: self.request_body,
            completion: self.completion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse() {
        assert_eq!("429".parse::<Status>().unwrap(), Status::Code(429));
        assert_eq!("5xx".parse::<Status>().unwrap(), Status::Class(5));
        assert_eq!("ok".parse::<Status>().unwrap(), Status::Ok);
        assert_eq!("error".parse::<Status>().unwrap(), Status::Error);
        assert!("9xx".parse::<Status>().is_err());
        assert!("teapot".parse::<Status>().is_err());
    }

    #[test]
    fn attempts_are_written_as_serde_writes_them() {
        let a = |provider: &'static str,
                 model: &'static str,
                 status,
                 latency_ms,
                 error: Option<&str>| Attempt {
            provider: provider.into(),
            upstream_model: model.into(),
            status,
            latency_ms,
            error: error.map(str::to_owned),
        };
        let cases = [
            vec![],
            vec![a("up", "bench-model", Some(200), 2.308173, None)],
            vec![
                a("anthropic", "claude", Some(429), 30.0, Some("status")),
                a("gemini", "flash", None, 0.1 + 0.2, Some("timeout")),
                a(
                    "o\"dd\\",
                    "line\nbreak\u{1}",
                    Some(0),
                    1e-7,
                    Some("tab\there"),
                ),
                a("ünï", "模型/x", Some(65535), 1e21, None),
                a("nan", "inf", Some(500), f64::NAN, None),
                a("inf", "", None, f64::INFINITY, Some("")),
                a("neg", "zero", None, -0.0, None),
            ],
        ];
        for attempts in cases {
            let mut out = Vec::new();
            write_attempts(&mut out, &attempts);
            let ours = String::from_utf8(out).unwrap();
            assert_eq!(ours, serde_json::to_string(&attempts).unwrap());
            if attempts.iter().all(|a| a.latency_ms.is_finite()) {
                let back: Vec<Attempt> = serde_json::from_str(&ours).unwrap();
                assert_eq!(back, attempts);
            }
        }
    }
}
