//! Usage inserts on a SQLite file: one thread with its own connection and prepared multi-row
//! `INSERT`s, fed whole batches through a bounded channel.
//!
//! Through sqlx, a batch of 1,000 records cost about as much CPU again as SQLite's own work:
//! every value was copied into sqlx's argument list on the async side, the multi-row statement
//! was handed to sqlx's connection thread through channels, and its results walked back. Here
//! the batch is shared (`Arc`), each value is bound straight from the record, and the thread
//! answers once per batch. SQLite still does the same B-tree work; nothing else is left.
//!
//! The thread ends when the last [`Store`](crate::Store) clone is dropped or the store is
//! closed, after the batches already queued. A `:memory:` store has no such thread (another
//! connection would see another database): it inserts through the pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::{clamp, finite, write_attempts, Record, COLUMNS};
use crate::{Error, Result};

/// Batches waiting for the thread at most; a caller past that waits for room.
const QUEUE: usize = 4;

#[derive(Debug)]
pub(crate) struct SqliteWriter {
    /// `None` once the store is closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

struct Job {
    records: Arc<Vec<Record>>,
    done: oneshot::Sender<Result<u64>>,
}

impl SqliteWriter {
    /// Starts the thread, which opens its connection to `path` (the schema must exist:
    /// migrations ran first). The file is opened there, not on the caller's runtime.
    pub(crate) async fn start(path: PathBuf, busy_timeout: Duration) -> Result<SqliteWriter> {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let (opened, open_result) = oneshot::channel::<Result<()>>();
        std::thread::Builder::new()
            .name("switchyard-usage-sqlite".into())
            .spawn(move || {
                let conn = match open(&path, busy_timeout) {
                    Ok(c) => {
                        let _ = opened.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                let mut json = Vec::with_capacity(256);
                let mut order = Vec::new();
                while let Some(Job { records, done }) = rx.blocking_recv() {
                    let result = insert(&conn, &records, &mut order, &mut json);
                    // The caller's handle is then the last one: the records are freed on the
                    // runtime's threads, where they were allocated, not here.
                    drop(records);
                    // The caller may have given up (timeout): the batch is written anyway,
                    // and inserts are idempotent by request id.
                    let _ = done.send(result);
                }
            })
            .map_err(|e| Error::Invalid(format!("cannot start the usage writer thread: {e}")))?;
        open_result
            .await
            .map_err(|_| Error::Invalid("the usage writer thread ended at start".into()))??;
        Ok(SqliteWriter {
            jobs: Mutex::new(Some(tx)),
        })
    }

    pub(crate) async fn insert(&self, records: Arc<Vec<Record>>) -> Result<u64> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let closed = || Error::Unavailable(sqlx::Error::PoolClosed);
        let jobs = jobs.ok_or_else(closed)?;
        let (done, answer) = oneshot::channel();
        jobs.send(Job { records, done })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// No new batches; the thread finishes the queued ones and closes its connection.
    pub(crate) fn close(&self) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

fn open(path: &Path, busy_timeout: Duration) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(Error::Embedded)?;
    conn.busy_timeout(busy_timeout).map_err(Error::Embedded)?;
    // WAL is a property of the file (set by the pool); `synchronous` is per connection.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(Error::Embedded)?;
    // A statement that could fail halfway keeps a statement journal (the pages it changed, to
    // undo it alone): `insert_sql` avoids that, and should one be needed it stays in memory,
    // not in a temporary file, whose writes doubled this thread's system time.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(Error::Embedded)?;
    Ok(conn)
}

/// Rows per multi-row `INSERT`. A statement keeps its cursors open from one row to the next,
/// so each row's index entries are placed from where the previous row's were (the gateway's
/// keys mostly append: time-ordered request ids, `ts`, one key or model after another),
/// where a one-row statement opens fresh cursors and searches every index from its root for
/// every row. Measured on the usage table with its five indexes, 2,000 records per
/// transaction: one row per statement ~33,000 instructions per record, 16 rows ~20,300
/// (8: 21,100, 50: 21,400). 16 rows bind 416 values, far below SQLite's limit.
const ROWS: usize = 16;

/// `OR IGNORE` rather than `ON CONFLICT (request_id) DO NOTHING`: both skip a request id that
/// is already stored, but with the latter any other constraint (`NOT NULL`) still aborts, so
/// SQLite keeps a statement journal for every multi-row statement in case it must undo it (a
/// few percent of this thread's time in perf: page copies into the journal, its allocations).
/// No value bound here can break another constraint: every `NOT NULL` column gets a value that
/// is not `Option`.
fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; BOUND].join(", "));
    format!(
        "INSERT OR IGNORE INTO usage_records ({COLUMNS}) VALUES {}",
        vec![one.as_str(); rows].join(", ")
    )
}

/// Values bound per record: one per column of [`COLUMNS`].
const BOUND: usize = 26;

/// One transaction: full groups of [`ROWS`] records per statement, the rest one by one, in
/// the order of `ts` and request id. A record whose request id is already stored (or comes
/// earlier in that order) is skipped.
///
/// Records arrive in the order requests finished, not the order they started (`ts`, and the
/// time the request id begins with): a slow request's record comes after those of many that
/// started later. In start order every index (`request_id`, `ts`, `key_id, ts`,
/// `model, ts`) receives its entries in ascending order, and SQLite places an entry that
/// sorts after the last one on the leaf its cursor is already on with one comparison,
/// instead of a binary search of that leaf (or a descent from the root).
fn insert(
    conn: &Connection,
    records: &[Record],
    order: &mut Vec<usize>,
    json: &mut Vec<u8>,
) -> Result<u64> {
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(ROWS));
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(Error::Embedded)?;
    order.clear();
    order.extend(0..records.len());
    // The position last: equal keys keep their batch order (the first one is stored).
    order.sort_unstable_by(|&a, &b| {
        let (x, y) = (&records[a], &records[b]);
        (x.ts, &x.request_id, a).cmp(&(y.ts, &y.request_id, b))
    });
    let mut inserted = 0u64;
    {
        // The record whose values each row of a statement holds: a statement keeps its
        // bindings from one execution to the next, so only what differs is bound again.
        let mut held: [Option<&Record>; ROWS] = [None; ROWS];
        let mut groups = order.chunks_exact(ROWS);
        if groups.len() > 0 {
            let mut many = tx.prepare_cached(&MANY).map_err(Error::Embedded)?;
            for group in &mut groups {
                for (i, &r) in group.iter().enumerate() {
                    bind(&mut many, i * BOUND, &records[r], held[i], json)?;
                    held[i] = Some(&records[r]);
                }
                inserted += many.raw_execute().map_err(Error::Embedded)? as u64;
            }
        }
        let rest = groups.remainder();
        if !rest.is_empty() {
            let mut one = tx.prepare_cached(&ONE).map_err(Error::Embedded)?;
            let mut held = None;
            for &r in rest {
                bind(&mut one, 0, &records[r], held, json)?;
                held = Some(&records[r]);
                inserted += one.raw_execute().map_err(Error::Embedded)? as u64;
            }
        }
    }
    tx.commit().map_err(Error::Embedded)?;
    Ok(inserted)
}

/// Binds `r` to the statement's parameters `offset + 1 ..= offset + BOUND` (one per column of
/// [`COLUMNS`], in its order), where `held` is the record those parameters hold from the
/// statement's previous execution (`None`: nothing bound yet, as when the statement comes from
/// the cache, which clears bindings). A
/// value that would store what the held one stored stays bound: most of a record repeats the one
/// before it in the same row of the statement (endpoint, model, version, provider, upstream
/// model, key, flags, zero counts, NULLs), and a bind costs more than the comparison (SQLite
/// copies every text it is given and frees the one it held). Each column is compared field to
/// field: building both records' 26 values to compare them cost ~2,000 instructions per record
/// (callgrind). Attempts the record implies ([`Record::attempts_implied`]) are
/// stored as the empty text; other attempts are always bound again (their text is not kept).
fn bind(
    stmt: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    r: &Record,
    held: Option<&Record>,
    json: &mut Vec<u8>,
) -> Result<()> {
    fn text(s: &str) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
    }
    fn opt_text(s: &Option<String>) -> ToSqlOutput<'_> {
        s.as_deref().map_or(ToSqlOutput::from(Null), text)
    }
    fn opt<T: Into<ToSqlOutput<'static>>>(x: Option<T>) -> ToSqlOutput<'static> {
        x.map_or(ToSqlOutput::from(Null), Into::into)
    }
    // Floats are stored as `finite` makes them and compared by bits (`0.0` and `-0.0` are equal
    // as numbers, not as stored values).
    fn bits(x: f64) -> u64 {
        finite(x).to_bits()
    }
    let mut set = |column: usize, v: ToSqlOutput<'_>| {
        stmt.raw_bind_parameter(offset + column + 1, v)
            .map_err(Error::Embedded)
    };
    // Whether a column must be bound: nothing is held, or `same` finds the held record's field
    // different from `r`'s.
    let differs = |same: &dyn Fn(&Record) -> bool| held.is_none_or(|h| !same(h));

    set(0, text(&r.request_id))?; // unique: never the held one
    if differs(&|h| h.ts == r.ts) {
        set(1, ToSqlOutput::from(r.ts))?;
    }
    if differs(&|h| h.key_id == r.key_id) {
        set(2, opt_text(&r.key_id))?;
    }
    if differs(&|h| h.team_id == r.team_id) {
        set(3, opt_text(&r.team_id))?;
    }
    for (column, name, held_name) in [
        (4, &r.endpoint, held.map(|h| &h.endpoint)),
        (5, &r.model, held.map(|h| &h.model)),
        (6, &r.version, held.map(|h| &h.version)),
        (7, &r.provider, held.map(|h| &h.provider)),
        (8, &r.upstream_model, held.map(|h| &h.upstream_model)),
    ] {
        if held_name.is_none_or(|h| !same_name(h, name)) {
            set(column, text(name))?;
        }
    }
    if differs(&|h| h.status == r.status) {
        set(9, ToSqlOutput::from(i64::from(r.status)))?;
    }
    if differs(&|h| h.streamed == r.streamed) {
        set(10, ToSqlOutput::from(r.streamed))?;
    }
    if differs(&|h| h.completed == r.completed) {
        set(11, opt(r.completed))?;
    }
    if differs(&|h| h.client_gone == r.client_gone) {
        set(12, opt(r.client_gone))?;
    }
    for (column, n, held_n) in [
        (13, r.input_tokens, held.map(|h| h.input_tokens)),
        (14, r.cache_read_tokens, held.map(|h| h.cache_read_tokens)),
        (15, r.cache_write_tokens, held.map(|h| h.cache_write_tokens)),
        (16, r.reasoning_tokens, held.map(|h| h.reasoning_tokens)),
        (17, r.output_tokens, held.map(|h| h.output_tokens)),
    ] {
        if held_n != Some(n) {
            set(column, ToSqlOutput::from(clamp(n)))?;
        }
    }
    if differs(&|h| h.cost_usd.map(bits) == r.cost_usd.map(bits)) {
        set(18, opt(r.cost_usd.map(finite)))?;
    }
    if differs(&|h| bits(h.latency_ms) == bits(r.latency_ms)) {
        set(19, ToSqlOutput::from(finite(r.latency_ms)))?;
    }
    if differs(&|h| h.ttft_ms.map(bits) == r.ttft_ms.map(bits)) {
        set(20, opt(r.ttft_ms.map(finite)))?;
    }
    if differs(&|h| bits(h.overhead_ms) == bits(r.overhead_ms)) {
        set(21, ToSqlOutput::from(finite(r.overhead_ms)))?;
    }
    if r.attempts_implied() {
        if differs(&Record::attempts_implied) {
            set(22, text(""))?;
        }
    } else {
        json.clear();
        write_attempts(json, &r.attempts);
        set(22, text(std::str::from_utf8(json).unwrap_or("[]")))?;
    }
    if differs(&|h| h.error == r.error) {
        set(23, opt_text(&r.error))?;
    }
    if differs(&|h| h.request_body == r.request_body) {
        set(24, opt_text(&r.request_body))?;
    }
    if differs(&|h| h.completion == r.completion) {
        set(25, opt_text(&r.completion))?;
    }
    Ok(())
}

/// Names are mostly the gateway's interned ones: the same pointer when equal.
fn same_name(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}
