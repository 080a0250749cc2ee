//! The usage store at scale: fills a fresh store with synthetic usage records spread over 30
//! days, then times every `group_by` of `GET /admin/v1/usage` and the listing behind
//! `GET /admin/v1/requests`, and prints the query plans. Results go to stdout as markdown
//! (see `crates/store/SCALE.md`); progress goes to stderr.
//!
//! ```text
//! cargo run --release -p store --example usage_scale -- --records 1000000 \
//!     [--postgres postgres://postgres@127.0.0.1:5432/postgres | --sqlite NEW_FILE] \
//!     [--no-analyze]
//! ```
//!
//! SQLite: a new file in a temporary directory. PostgreSQL: the URL is an admin connection; the
//! benchmark creates a database `sy_scale_<random>` on that server, works there and drops it at
//! the end (also after an error or Ctrl-C). `--sqlite NEW_FILE` keeps the SQLite database for
//! a closer look with the `sqlite3` shell.
//!
//! After the inserts the planner's statistics are brought up to date the way a running
//! deployment gets them: on SQLite by reopening the store (`Store::connect` runs
//! `PRAGMA optimize`), on PostgreSQL with `VACUUM ANALYZE` (what autovacuum does after a bulk
//! insert). `--no-analyze` skips that, to check the plans do not depend on statistics.

use std::error::Error;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection};
use store::testing::TestDb;
use store::usage::{Attempt, Filter, GroupBy, Query, Record, Status};
use store::{Backend, Store};

type Res<T> = Result<T, Box<dyn Error>>;

const BATCH: usize = 1_000;
const RUNS: usize = 3;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const SPAN_DAYS: i64 = 30;

const KEYS: usize = 200;
const TEAMS: usize = 20;
/// Public model name, provider serving it, USD per million input / output tokens.
const MODELS: [(&str, &str, f64, f64); 10] = [
    ("gpt-4o-mini", "openai", 0.15, 0.6),
    ("claude-sonnet", "anthropic", 3.0, 15.0),
    ("gpt-4o", "openai", 2.5, 10.0),
    ("gemini-flash", "gemini", 0.1, 0.4),
    ("claude-haiku", "anthropic", 0.8, 4.0),
    ("llama-70b", "bedrock", 0.72, 0.72),
    ("o3-mini", "openai", 1.1, 4.4),
    ("gemini-pro", "gemini", 1.25, 10.0),
    ("mistral-large", "bedrock", 2.0, 6.0),
    ("claude-opus", "anthropic", 15.0, 75.0),
];
const PROVIDERS: [&str; 4] = ["openai", "anthropic", "gemini", "bedrock"];

struct Args {
    records: usize,
    postgres: Option<String>,
    /// A SQLite file to create and keep, instead of a temporary one.
    sqlite: Option<String>,
    analyze: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        records: 1_000_000,
        postgres: None,
        sqlite: None,
        analyze: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--records" => {
                let n = it.next().ok_or("--records needs a number")?;
                args.records = n.replace('_', "").parse()?;
            }
            "--postgres" => args.postgres = Some(it.next().ok_or("--postgres needs a URL")?),
            "--sqlite" => args.sqlite = Some(it.next().ok_or("--sqlite needs a file name")?),
            "--no-analyze" => args.analyze = false,
            "-h" | "--help" => {
                println!(
                    "usage_scale [--records N] [--postgres postgres://USER@HOST:PORT/DB | \
                     --sqlite NEW_FILE] [--no-analyze]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Res<()> {
    let args = parse_args()?;
    match (&args.postgres, &args.sqlite) {
        (Some(_), Some(_)) => Err("--postgres and --sqlite exclude each other".into()),
        (None, Some(path)) => {
            if std::path::Path::new(path).exists() {
                return Err(format!("{path} exists; --sqlite wants a new file").into());
            }
            let url = format!("sqlite://{path}");
            let store = Store::connect(&url).await?;
            print!("{}", run(store, &url, &args).await?);
            Ok(())
        }
        (None, None) => {
            let db = TestDb::sqlite().await?;
            // Ctrl-C still removes the temporary directory.
            let report = tokio::select! {
                r = run(db.store.clone(), &db.url, &args) => r,
                _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            };
            db.store.close().await;
            drop(db);
            print!("{}", report?);
            Ok(())
        }
        (Some(admin_url), None) => {
            let name = format!("sy_scale_{:016x}", fastrand::u64(..));
            let mut admin = PgConnection::connect(admin_url).await?;
            // `name` is generated above, so formatting it into DDL is safe.
            admin
                .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                .await?;
            admin.close().await?;
            eprintln!("created database {name}");
            let url = with_database(admin_url, &name);
            // Ctrl-C still drops the database.
            let report = tokio::select! {
                r = async {
                    let store = Store::connect(&url).await?;
                    run(store, &url, &args).await
                } => r,
                _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
            };
            let mut admin = PgConnection::connect(admin_url).await?;
            admin
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await?;
            admin.close().await?;
            eprintln!("dropped database {name}");
            print!("{}", report?);
            Ok(())
        }
    }
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.split('/').next().unwrap_or(authority);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// The synthetic population: who calls, how often, and a seeded generator.
struct Gen {
    rng: fastrand::Rng,
    keys: Vec<(String, Option<String>)>,
    key_cdf: Vec<f64>,
    model_cdf: Vec<f64>,
}

/// Cumulative Zipf-like weights `1 / (i + 1)^s`, normalised to end at 1.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (0..n)
        .map(|i| {
            acc += 1.0 / ((i + 1) as f64).powf(s);
            acc
        })
        .collect();
    for c in &mut cdf {
        *c /= acc;
    }
    cdf
}

fn pick(cdf: &[f64], u: f64) -> usize {
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1)
}

fn base62(rng: &mut fastrand::Rng, prefix: &str) -> String {
    let mut id = prefix.to_owned();
    id.extend(std::iter::repeat_with(|| rng.alphanumeric()).take(20));
    id
}

impl Gen {
    fn new() -> Gen {
        let mut rng = fastrand::Rng::with_seed(7);
        let teams: Vec<String> = (0..TEAMS).map(|_| base62(&mut rng, "team_")).collect();
        // Every tenth key has no team.
        let keys = (0..KEYS)
            .map(|i| {
                let team = (i % 10 != 9).then(|| teams[i % TEAMS].clone());
                (base62(&mut rng, "key_"), team)
            })
            .collect();
        Gen {
            rng,
            keys,
            key_cdf: zipf_cdf(KEYS, 0.9),
            model_cdf: zipf_cdf(MODELS.len(), 1.0),
        }
    }

    /// A standard normal variate (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1 = self.rng.f64().max(f64::MIN_POSITIVE);
        let u2 = self.rng.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    fn request_id(&mut self) -> String {
        format!("req_{:032x}", self.rng.u128(..))
    }

    /// Record number `i` of `n`, evenly spread over `[start, start + 30 days)`.
    fn record(&mut self, i: usize, n: usize, start: i64) -> Record {
        let span = SPAN_DAYS * DAY;
        let step = span as f64 / n as f64;
        let ts = start + (i as f64 * step + self.rng.f64() * step) as i64;
        let k = pick(&self.key_cdf, self.rng.f64());
        let m = pick(&self.model_cdf, self.rng.f64());
        let (model, home, price_in, price_out) = MODELS[m];
        let (mut key_id, mut team_id) = (Some(self.keys[k].0.clone()), self.keys[k].1.clone());
        let version = if self.rng.f64() < 0.1 {
            "canary"
        } else {
            "stable"
        };
        // ~3% errors: 429s, 5xx, client errors, a few unauthenticated requests and streams
        // that failed after their first byte (status 200 with an error).
        let e = self.rng.f64();
        let (status, error) = match e {
            e if e < 0.010 => (429, Some("rate limited upstream")),
            e if e < 0.015 => (500, Some("upstream error")),
            e if e < 0.020 => (502, Some("bad gateway")),
            e if e < 0.023 => (503, Some("overloaded")),
            e if e < 0.027 => (400, Some("invalid request")),
            e if e < 0.028 => (401, Some("invalid api key")),
            e if e < 0.030 => (200, Some("stream interrupted")),
            _ => (200, None),
        };
        if status == 401 {
            key_id = None;
            team_id = None;
        }
        // Failover: 5% of requests are served by another provider after a first attempt.
        let failover = self.rng.f64() < 0.05;
        let provider = if failover {
            PROVIDERS[self.rng.usize(..PROVIDERS.len())]
        } else {
            home
        };
        let latency_ms = self.lognormal(900.0, 0.8).min(300_000.0);
        let streamed = self.rng.f64() < 0.6;
        let ttft_ms = streamed.then(|| latency_ms * (0.05 + 0.3 * self.rng.f64()));
        let ok = status < 400;
        let input_tokens = if ok {
            self.lognormal(1200.0, 1.0) as u64
        } else {
            0
        };
        let output_tokens = if ok {
            self.lognormal(250.0, 0.9) as u64
        } else {
            0
        };
        let cache_read_tokens = if ok && self.rng.f64() < 0.3 {
            input_tokens / 2
        } else {
            0
        };
        let reasoning_tokens = if model == "o3-mini" {
            output_tokens * 2
        } else {
            0
        };
        let cost_usd = (input_tokens as f64 * price_in
            + (output_tokens + reasoning_tokens) as f64 * price_out)
            / 1e6;
        let mut attempts = Vec::with_capacity(2);
        if failover {
            attempts.push(Attempt {
                provider: home.into(),
                upstream_model: model.into(),
                status: Some(503),
                latency_ms: self.lognormal(200.0, 0.5),
                error: Some("overloaded".into()),
            });
        }
        attempts.push(Attempt {
            provider: provider.into(),
            upstream_model: model.into(),
            status: Some(status),
            latency_ms,
            error: error.map(Into::into),
        });
        Record {
            request_id: self.request_id(),
            ts,
            key_id,
            team_id,
            endpoint: "chat.completions".into(),
            model: model.into(),
            version: version.into(),
            provider: provider.into(),
            upstream_model: model.into(),
            status,
            streamed,
            completed: Some(error.is_none()),
            client_gone: Some(false),
            input_tokens,
            cache_read_tokens,
            cache_write_tokens: 0,
            reasoning_tokens,
            output_tokens,
            cost_usd: Some(cost_usd),
            latency_ms,
            ttft_ms,
            overhead_ms: 0.1 + self.rng.f64() * 0.4,
            attempts,
            error: error.map(Into::into),
            request_body: None,
            completion: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `f` [`RUNS`] times; the median time and the last result.
async fn timed<T, F, Fut>(mut f: F) -> Res<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = store::Result<T>>,
{
    let mut times = Vec::with_capacity(RUNS);
    let mut last = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        last = Some(f().await?);
        times.push(t.elapsed());
    }
    times.sort();
    let out = last.ok_or("no run")?;
    Ok((times[RUNS / 2], out))
}

fn label(g: GroupBy) -> &'static str {
    match g {
        GroupBy::Key => "key",
        GroupBy::Team => "team",
        GroupBy::Model => "model",
        GroupBy::Version => "version",
        GroupBy::Provider => "provider",
        GroupBy::Day => "day",
    }
}

fn plan(out: &mut String, title: &str, lines: &[String]) -> std::fmt::Result {
    writeln!(out, "{title}:\n\n```text")?;
    for l in lines {
        writeln!(out, "{l}")?;
    }
    writeln!(out, "```\n")
}

/// Fills the store and measures it; returns the report (markdown).
async fn run(mut store: Store, url: &str, args: &Args) -> Res<String> {
    let mut out = String::new();
    let backend = store.backend();
    let n = args.records;
    let now = store::now_ms();
    let start = now - SPAN_DAYS * DAY;

    // 1. Insert.
    let mut gen = Gen::new();
    let mut insert_time = Duration::ZERO;
    let mut inserted = 0u64;
    let mut i = 0;
    while i < n {
        // Shared, as the gateway's usage writer hands its batches over.
        let batch: Vec<_> = (i..(i + BATCH).min(n))
            .map(|j| gen.record(j, n, start))
            .collect();
        i += batch.len();
        let t = Instant::now();
        inserted += store
            .usage()
            .insert_shared(std::sync::Arc::new(batch))
            .await?;
        insert_time += t.elapsed();
        if (i / BATCH) % 100 == 0 {
            eprintln!(
                "  {i} records, {:.0} records/s",
                i as f64 / insert_time.as_secs_f64()
            );
        }
    }

    // 2. Statistics, as a running deployment has them.
    let analyze = if !args.analyze {
        "none (--no-analyze)"
    } else {
        match backend {
            Backend::Sqlite => {
                store.close().await;
                store = Store::connect(url).await?;
                "store reopened (PRAGMA optimize)"
            }
            Backend::Postgres => {
                let mut c = PgConnection::connect(url).await?;
                c.execute("VACUUM ANALYZE usage_records").await?;
                c.close().await?;
                "VACUUM ANALYZE usage_records"
            }
        }
    };
    let (version, size) = environment(backend, url).await?;

    writeln!(
        out,
        "## {}, {n} records\n\n\
         - server: {version}\n\
         - date: {}\n\
         - statistics: {analyze}\n\
         - insert: {inserted} records in {:.1} s, {:.0} records/s ({:.1} ms per batch of {BATCH})\n\
         - size on disk: {:.0} MB\n",
        match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        date(now),
        insert_time.as_secs_f64(),
        inserted as f64 / insert_time.as_secs_f64(),
        ms(insert_time) / n.div_ceil(BATCH).max(1) as f64,
        size as f64 / 1e6,
    )?;

    // 3. Aggregates.
    writeln!(out, "### `usage().aggregate` (median of {RUNS} runs)\n")?;
    writeln!(
        out,
        "| group_by | last 24 h | groups | records | 30 days | groups | records |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|")?;
    for g in [
        GroupBy::Key,
        GroupBy::Team,
        GroupBy::Model,
        GroupBy::Version,
        GroupBy::Provider,
        GroupBy::Day,
    ] {
        let mut cells = Vec::new();
        for since in [now - DAY, start] {
            let mut q = Query::new(g);
            q.since = Some(since);
            let usage = store.usage();
            let (t, groups) = timed(|| usage.aggregate(&q)).await?;
            let records: u64 = groups.iter().map(|g| g.requests).sum();
            cells.push(format!("{:.1} ms | {} | {records}", ms(t), groups.len()));
            eprintln!("  group_by={} since={since}: {:.1} ms", label(g), ms(t));
        }
        writeln!(out, "| {} | {} |", label(g), cells.join(" | "))?;
    }
    writeln!(out)?;

    // 4. Listing.
    let popular_key = gen.keys[0].0.clone();
    let rare_key = gen.keys[KEYS - 1].0.clone();
    let team = gen.keys[0].1.clone();
    let listings: Vec<(&str, Filter)> = vec![
        ("newest 50", Filter::default()),
        (
            "key (busiest key)",
            Filter {
                key_id: Some(popular_key.clone()),
                ..Filter::default()
            },
        ),
        (
            "key (quietest key)",
            Filter {
                key_id: Some(rare_key),
                ..Filter::default()
            },
        ),
        (
            "team",
            Filter {
                team_id: team,
                ..Filter::default()
            },
        ),
        (
            "model (claude-opus, 3%)",
            Filter {
                model: Some("claude-opus".into()),
                ..Filter::default()
            },
        ),
        (
            "status=error (3%)",
            Filter {
                status: Some(Status::Error),
                ..Filter::default()
            },
        ),
        (
            "status=5xx (1.3%)",
            Filter {
                status: Some(Status::Class(5)),
                ..Filter::default()
            },
        ),
        (
            "status=401 (0.1%)",
            Filter {
                status: Some(Status::Code(401)),
                ..Filter::default()
            },
        ),
        (
            "status=418 (none)",
            Filter {
                status: Some(Status::Code(418)),
                ..Filter::default()
            },
        ),
        (
            "status=ok",
            Filter {
                status: Some(Status::Ok),
                ..Filter::default()
            },
        ),
        (
            "key + status=error, last 24 h",
            Filter {
                key_id: Some(popular_key.clone()),
                status: Some(Status::Error),
                since: Some(now - DAY),
                ..Filter::default()
            },
        ),
    ];
    writeln!(
        out,
        "### `usage().recent`, 50 per page (median of {RUNS} runs)\n"
    )?;
    writeln!(out, "| filter | time | rows |")?;
    writeln!(out, "|---|---:|---:|")?;
    for (name, filter) in &listings {
        let filter = Filter {
            limit: 50,
            ..filter.clone()
        };
        let usage = store.usage();
        let (t, rows) = timed(|| usage.recent(&filter)).await?;
        writeln!(out, "| {name} | {:.1} ms | {} |", ms(t), rows.len())?;
        eprintln!("  recent {name}: {:.1} ms", ms(t));
    }
    writeln!(out)?;

    // 5. Plans.
    writeln!(out, "### Query plans\n")?;
    for (title, since) in [
        ("aggregate group_by=model, last 24 h", now - DAY),
        ("aggregate group_by=model, 30 days", start),
    ] {
        let mut q = Query::new(GroupBy::Model);
        q.since = Some(since);
        plan(&mut out, title, &store.usage().explain_aggregate(&q).await?)?;
    }
    let planned = [
        "newest 50",
        "key (busiest key)",
        "status=error (3%)",
        "status=401 (0.1%)",
        "status=418 (none)",
    ];
    for (name, filter) in listings.iter().filter(|(n, _)| planned.contains(n)) {
        let filter = Filter {
            limit: 50,
            ..filter.clone()
        };
        plan(
            &mut out,
            &format!("recent, {name}"),
            &store.usage().explain_recent(&filter).await?,
        )?;
    }
    store.close().await;
    Ok(out)
}

/// The server's version and the size of the usage data (SQLite: the database file and its
/// WAL; PostgreSQL: the table with its indexes and TOAST).
async fn environment(backend: Backend, url: &str) -> Res<(String, u64)> {
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await?;
            let v: String = sqlx::query_scalar("SELECT sqlite_version()")
                .fetch_one(&mut c)
                .await?;
            c.close().await?;
            let path = url.trim_start_matches("sqlite://");
            let size = [path.to_owned(), format!("{path}-wal")]
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum();
            Ok((format!("SQLite {v}"), size))
        }
        Backend::Postgres => {
            let mut c = PgConnection::connect(url).await?;
            let v: String = sqlx::query_scalar("SHOW server_version")
                .fetch_one(&mut c)
                .await?;
            let size: i64 =
                sqlx::query_scalar("SELECT pg_total_relation_size('usage_records')::BIGINT")
                    .fetch_one(&mut c)
                    .await?;
            c.close().await?;
            Ok((format!("PostgreSQL {v}"), u64::try_from(size).unwrap_or(0)))
        }
    }
}

/// `YYYY-MM-DD HH:MM UTC` of unix milliseconds (civil-from-days, Howard Hinnant).
fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}
