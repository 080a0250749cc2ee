//! The usage writer against real stores, SQLite (a file in a temporary directory) and
//! PostgreSQL (`SWITCHYARD_TEST_PG_URL` if set, each test in a schema of its own; else a fresh
//! database `usage_test_<random>` on the local server, dropped at the end): records land
//! exactly once, shutdown flushes, outages spool and replay, a full queue spills to the spool
//! with bounded memory, and a crashed writer's spool is replayed by the next one.
//!
//! Waits are bounded polls of the store or of the writer's counters, never timed sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection, Executor};
use store::usage::{Filter, GroupBy, Query, Record};
use store::Store;
use switchyard::usage::{self, Options, Writer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database, possibly not created yet, and its spool directory.
struct Target {
    backend: Backend,
    url: String,
    kind: Kind,
    dir: tempfile::TempDir,
}

enum Kind {
    Sqlite { db_dir: PathBuf },
    PgDatabase { admin: String, name: String },
    PgSchema { base: String, name: String },
}

impl Target {
    /// A database that does not exist yet: connecting to it fails until [`Target::create`].
    fn pending(backend: Backend) -> Target {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("usage_test_{:016x}", fastrand::u64(..));
        let (url, kind) = match backend {
            Backend::Sqlite => {
                // SQLite creates a missing file, not a missing directory.
                let db_dir = dir.path().join("db");
                let url = format!("sqlite://{}", db_dir.join("switchyard.db").display());
                (url, Kind::Sqlite { db_dir })
            }
            Backend::Postgres => match std::env::var("SWITCHYARD_TEST_PG_URL")
                .ok()
                .filter(|u| !u.is_empty())
            {
                Some(base) => {
                    let sep = if base.contains('?') { '&' } else { '?' };
                    let url = format!("{base}{sep}options[search_path]={name}");
                    (url, Kind::PgSchema { base, name })
                }
                None => {
                    let admin = DEFAULT_PG_ADMIN_URL.to_owned();
                    let url = with_database(&admin, &name);
                    (url, Kind::PgDatabase { admin, name })
                }
            },
        };
        Target {
            backend,
            url,
            kind,
            dir,
        }
    }

    async fn ready(backend: Backend) -> Target {
        let t = Target::pending(backend);
        t.create().await;
        t
    }

    async fn create(&self) {
        match &self.kind {
            Kind::Sqlite { db_dir } => std::fs::create_dir_all(db_dir).unwrap(),
            Kind::PgDatabase { admin, name } => {
                pg_exec(admin, &format!("CREATE DATABASE \"{name}\"")).await
            }
            Kind::PgSchema { base, name } => {
                pg_exec(base, &format!("CREATE SCHEMA \"{name}\"")).await
            }
        }
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    async fn store(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let (url, sql) = match &self.kind {
            Kind::Sqlite { .. } => return,
            Kind::PgDatabase { admin, name } => (
                admin.clone(),
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            ),
            Kind::PgSchema { base, name } => (
                base.clone(),
                format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"),
            ),
        };
        // Drop cannot await and may run inside a runtime: clean up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                    let _ = c.execute(sql.as_str()).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}

async fn pg_exec(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    c.execute(sql).await.unwrap();
    c.close().await.unwrap();
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let authority = rest.split(['/', '?']).next().unwrap();
    let query = rest.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// The `host:port` of a PostgreSQL URL, and the URL with it replaced by `via`.
fn reroute(url: &str, via: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    (hostport, format!("{scheme}://{user}{via}{tail}"))
}

/// A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones closed at
/// once) and restored: a network outage.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (up2, conns2) = (up.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(SeqCst) {
                    continue;
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().unwrap().push(h.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    fn cut(&self) {
        self.up.store(false, SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A store the test can make unavailable: SQLite by holding its write lock from another
/// connection (writers fail with SQLITE_BUSY), PostgreSQL by cutting a proxy.
enum Outage {
    Sqlite {
        url: String,
        holder: Option<sqlx::SqliteConnection>,
    },
    Pg(Proxy),
}

impl Outage {
    /// A store on `target` that this outage can cut, with short timeouts.
    async fn store(target: &Target) -> (Store, Outage) {
        let options = store::Options {
            max_connections: 4,
            acquire_timeout: Duration::from_millis(500),
            busy_timeout: Duration::from_millis(100),
        };
        match target.backend {
            Backend::Sqlite => {
                let store = Store::connect_with(&target.url, &options).await.unwrap();
                let url = target.url.clone();
                (store, Outage::Sqlite { url, holder: None })
            }
            Backend::Postgres => {
                let (hostport, _) = reroute(&target.url, "127.0.0.1:1".parse().unwrap());
                let proxy = Proxy::start(hostport).await;
                let (_, url) = reroute(&target.url, proxy.addr);
                let store = Store::connect_with(&url, &options).await.unwrap();
                (store, Outage::Pg(proxy))
            }
        }
    }

    async fn cut(&mut self) {
        match self {
            Outage::Sqlite { url, holder } => {
                let mut c = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap();
                c.execute("BEGIN EXCLUSIVE").await.unwrap();
                *holder = Some(c);
            }
            Outage::Pg(p) => p.cut(),
        }
    }

    async fn restore(&mut self) {
        match self {
            Outage::Sqlite { holder, .. } => {
                if let Some(mut c) = holder.take() {
                    c.execute("ROLLBACK").await.unwrap();
                    c.close().await.unwrap();
                }
            }
            Outage::Pg(p) => p.restore(),
        }
    }
}

/// Fast retries, so recoveries are seen quickly; the writer's logs go to the test's output.
fn options(target: &Target) -> Options {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("switchyard=debug")
        .try_init();
    Options {
        spool_dir: target.spool(),
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ..Options::default()
    }
}

fn record(tag: &str, i: u64) -> Record {
    Record {
        request_id: format!("{tag}-{i:06}"),
        ts: store::now_ms(),
        key_id: Some(format!("key_{}", i % 7)),
        team_id: Some("team_t".into()),
        model: "m".into(),
        version: "v1".into(),
        provider: "mock".into(),
        upstream_model: "mock-1".into(),
        status: 200,
        streamed: i.is_multiple_of(2),
        input_tokens: 10,
        output_tokens: i,
        cost_usd: Some(0.001),
        latency_ms: 12.5,
        ttft_ms: Some(3.0),
        overhead_ms: 0.4,
        attempts: vec![store::usage::Attempt {
            provider: "mock".into(),
            upstream_model: "mock-1".into(),
            status: Some(200),
            latency_ms: 12.1,
            error: None,
        }],
        ..Record::default()
    }
}

fn ids(tag: &str, range: std::ops::Range<u64>) -> BTreeSet<String> {
    range.map(|i| record(tag, i).request_id).collect()
}

/// Every request id in the store (which cannot hold one twice: it is the primary key).
async fn stored_ids(store: &Store) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut filter = Filter {
        limit: store::usage::MAX_LIMIT,
        ..Filter::default()
    };
    loop {
        let page = store.usage().recent(&filter).await.unwrap();
        let Some(last) = page.last() else {
            return out;
        };
        filter.before = Some((last.ts, last.request_id.clone()));
        out.extend(page.into_iter().map(|r| r.request_id));
    }
}

async fn count(store: &Store) -> u64 {
    match store.usage().aggregate(&Query::new(GroupBy::Model)).await {
        Ok(groups) => groups.iter().map(|g| g.requests).sum(),
        Err(_) => 0,
    }
}

/// Polls `check` until it holds, for at most a minute.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn segments(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("usage-")
                && std::fs::metadata(e.as_ref().unwrap().path()).unwrap().len() > 0
        })
        .count()
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    )*};
}

on_both!(
    sixteen_senders_land_exactly_once,
    shutdown_flushes_everything,
    whole_batches_are_written_without_waiting_for_the_tick,
    unreachable_store_spools_then_replays,
    outage_mid_run_spools_then_replays,
    full_queue_spills_to_the_spool_with_bounded_memory,
    crashed_writer_spool_is_replayed_by_the_next,
);

async fn sixteen_senders_land_exactly_once(backend: Backend) {
    let target = Target::ready(backend).await;
    let store = target.store().await;
    let writer = Arc::new(Writer::start(store.clone(), options(&target)).unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..625 {
                w.send(record("r", t * 625 + i));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    until("10,000 records in the store", || async {
        writer.stats().stored == 10_000
    })
    .await;
    let elapsed = started.elapsed();
    let stats = writer.shutdown().await;
    eprintln!(
        "{backend:?}: 10,000 records from 16 tasks stored in {elapsed:?} ({:.0} records/s); {stats:?}",
        10_000.0 / elapsed.as_secs_f64()
    );
    assert_eq!(stored_ids(&store).await, ids("r", 0..10_000));
    assert_eq!(stats.sent, 10_000);
    assert_eq!(stats.stored, 10_000);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.queued, 0);
    assert_eq!(stats.spool_bytes, 0);
}

async fn shutdown_flushes_everything(backend: Backend) {
    let target = Target::ready(backend).await;
    let store = target.store().await;
    // Nothing would be written before an hour passes or 1,000 records gather.
    let writer = Writer::start(
        store.clone(),
        Options {
            batch_size: 1_000,
            flush_interval: Duration::from_secs(3_600),
            ..options(&target)
        },
    )
    .unwrap();
    for i in 0..2_500 {
        writer.send(record("s", i));
    }
    let stats = writer.shutdown().await;
    // No waiting: everything is in the store when shutdown returns.
    assert_eq!(stored_ids(&store).await, ids("s", 0..2_500));
    assert_eq!(stats.stored, 2_500);
    assert_eq!((stats.dropped, stats.queued, stats.spool_bytes), (0, 0, 0));
    // A record sent after shutdown is not lost either: it waits in the spool.
    writer.send(record("late", 0));
    assert_eq!(writer.stats().spooled, stats.spooled + 1);
    assert_eq!(writer.stats().dropped, 0);
}

async fn whole_batches_are_written_without_waiting_for_the_tick(backend: Backend) {
    let target = Target::ready(backend).await;
    let store = target.store().await;
    // The tick is an hour away: only whole batches of 100 may be written before shutdown.
    let writer = Writer::start(
        store.clone(),
        Options {
            batch_size: 100,
            flush_interval: Duration::from_secs(3_600),
            ..options(&target)
        },
    )
    .unwrap();
    for i in 0..250 {
        writer.send(record("b", i));
    }
    until("two whole batches in the store", || async {
        writer.stats().stored == 200
    })
    .await;
    // The last 50 wait for the tick (or shutdown), not written one by one.
    assert_eq!(writer.stats().queued, 50);
    let stats = writer.shutdown().await;
    assert_eq!(stats.stored, 250);
    assert_eq!(stored_ids(&store).await, ids("b", 0..250));
}

async fn unreachable_store_spools_then_replays(backend: Backend) {
    let target = Target::pending(backend);
    let connect = store::Options {
        acquire_timeout: Duration::from_millis(500),
        ..store::Options::default()
    };
    let writer = Writer::connect(&target.url, connect, options(&target)).unwrap();
    for i in 0..3_000 {
        writer.send(record("u", i));
    }
    until("3,000 records spooled", || async {
        writer.stats().spooled == 3_000
    })
    .await;
    assert_eq!(writer.stats().stored, 0);
    assert!(writer.stats().spool_bytes > 0);

    // The database appears; the writer connects and replays the spool.
    target.create().await;
    until("3,000 records replayed", || async {
        writer.stats().stored == 3_000
    })
    .await;
    for i in 3_000..3_100 {
        writer.send(record("u", i));
    }
    let stats = writer.shutdown().await;
    let store = target.store().await;
    assert_eq!(stored_ids(&store).await, ids("u", 0..3_100));
    assert_eq!(stats.stored, 3_100);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.spool_bytes, 0);
    assert_eq!(segments(&target.spool()), 0);
}

async fn outage_mid_run_spools_then_replays(backend: Backend) {
    let target = Target::ready(backend).await;
    let (store, mut outage) = Outage::store(&target).await;
    let writer = Writer::start(store, options(&target)).unwrap();
    for i in 0..500 {
        writer.send(record("o", i));
    }
    until("the first 500 stored", || async {
        writer.stats().stored == 500
    })
    .await;

    outage.cut().await;
    for i in 500..2_000 {
        writer.send(record("o", i));
    }
    until("the rest spooled or stored", || async {
        let s = writer.stats();
        s.queued == 0 && s.stored + s.spooled == 2_000 && s.spooled > 0
    })
    .await;
    outage.restore().await;

    until("all 2,000 stored", || async {
        writer.stats().stored == 2_000
    })
    .await;
    let stats = writer.shutdown().await;
    let direct = target.store().await;
    assert_eq!(stored_ids(&direct).await, ids("o", 0..2_000));
    assert_eq!(count(&direct).await, 2_000);
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.spool_bytes, 0);
}

async fn full_queue_spills_to_the_spool_with_bounded_memory(backend: Backend) {
    const CAPACITY: usize = 64;
    let target = Target::ready(backend).await;
    let (store, mut outage) = Outage::store(&target).await;
    let writer = Arc::new(
        Writer::start(
            store,
            Options {
                queue_capacity: CAPACITY,
                batch_size: 16,
                flush_interval: Duration::from_millis(10),
                ..options(&target)
            },
        )
        .unwrap(),
    );
    // The store stays down while 4 tasks send as fast as they can.
    outage.cut().await;
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let w = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut deepest = 0;
            for i in 0..5_000 {
                w.send(record("q", t * 5_000 + i));
                deepest = deepest.max(w.queue_depth());
            }
            deepest
        }));
    }
    let mut deepest = 0;
    for t in tasks {
        deepest = deepest.max(t.await.unwrap());
    }
    until("the queue drained into the spool", || async {
        let s = writer.stats();
        s.queued == 0 && s.spooled == 20_000
    })
    .await;
    let stats = writer.stats();
    eprintln!("{backend:?}: deepest queue {deepest} of {CAPACITY}; {stats:?}");
    assert!(deepest <= CAPACITY, "queue depth {deepest} > {CAPACITY}");
    assert!(stats.overflowed > 0, "the queue never filled: {stats:?}");
    assert_eq!(stats.stored, 0);
    assert_eq!(stats.dropped, 0);

    outage.restore().await;
    until("all 20,000 stored", || async {
        writer.stats().stored == 20_000
    })
    .await;
    let stats = writer.shutdown().await;
    assert_eq!(stored_ids(&target.store().await).await, ids("q", 0..20_000));
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.spool_bytes, 0);
}

async fn crashed_writer_spool_is_replayed_by_the_next(backend: Backend) {
    let target = Target::pending(backend);
    let connect = store::Options {
        acquire_timeout: Duration::from_millis(500),
        ..store::Options::default()
    };
    let writer = Writer::connect(&target.url, connect, options(&target)).unwrap();
    for i in 0..1_000 {
        writer.send(record("c", i));
    }
    until("1,000 records spooled", || async {
        let s = writer.stats();
        s.spooled == 1_000 && s.queued == 0
    })
    .await;
    // The crash: no shutdown, the tasks just stop.
    drop(writer);

    // The store comes back, already holding some of the records (as if a batch had been
    // inserted but not acknowledged): replaying them again is harmless.
    target.create().await;
    let store = target.store().await;
    let some: Vec<Record> = (0..300).map(|i| record("c", i)).collect();
    store.usage().insert_batch(&some).await.unwrap();

    let writer = Writer::start(store.clone(), options(&target)).unwrap();
    until("the spool replayed", || async {
        writer.stats().replayed == 1_000
    })
    .await;
    let stats = writer.shutdown().await;
    assert_eq!(stored_ids(&store).await, ids("c", 0..1_000));
    assert_eq!(stats.stored, 700, "the 300 already stored are skipped");
    assert_eq!(stats.dropped, 0);
    assert_eq!(stats.spool_bytes, 0);
    assert_eq!(segments(&target.spool()), 0);
}

/// The only test in this binary that installs the process-wide writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_hands_records_to_the_installed_writer() {
    let target = Target::ready(Backend::Sqlite).await;
    let store = target.store().await;
    let writer = Writer::start(store.clone(), options(&target)).unwrap();
    assert!(usage::install(writer).is_ok());
    let again = Writer::start(
        store.clone(),
        Options {
            spool_dir: target.dir.path().join("spool-2"),
            ..options(&target)
        },
    )
    .unwrap();
    assert!(usage::install(again).is_err(), "one writer per process");

    let mut r = usage::Record::new("emitted-1".into(), "chat", Instant::now());
    r.key = Some("ci".into());
    r.model = "m".into();
    r.version = "v1".into();
    r.provider = "mock".into();
    r.upstream_model = "mock-1".into();
    r.status = 200;
    r.completed = true;
    usage::emit(Box::new(r));

    let stats = usage::installed().unwrap().shutdown().await;
    assert_eq!((stats.sent, stats.stored, stats.dropped), (1, 1, 0));
    let got = store.usage().get("emitted-1").await.unwrap().unwrap();
    assert_eq!(got.key_id.as_deref(), Some("ci"));
    assert_eq!(got.model, "m");
    assert_eq!(got.status, 200);
    assert!(got.error.is_none());
}
