//! The only crate with SQL: keys, teams, usage records, settings and rollout state, on SQLite
//! (the embedded default) or PostgreSQL (shared by replicas).
//!
//! It owns the schema (migrations per backend under `migrations/`, applied at [`Store::connect`])
//! and every query. It must not know about HTTP, configuration files or the environment: callers
//! pass plain structs in and get plain structs out.
//!
//! Conventions every module follows:
//! - Times are `i64` **unix milliseconds** (UTC). Durations (`latency_ms`, …) are `f64`
//!   milliseconds.
//! - Values are always bound parameters. Where SQL text is assembled at run time it is assembled
//!   from fixed fragments only (a filter present or absent, a column chosen from an enum).
//! - Ids are generated here: a prefix (`key_`, `team_`) and 20 random base62 characters.
//! - Keys and teams are never hard-deleted (revoked / deleted rows keep their id and carry a
//!   `revoked_at`), and every write bumps a per-table change counter (`rev`), so replicas can poll
//!   `changed_since(rev)` cheaply and see revocations too.

mod error;
#[macro_use]
mod sql;

#[macro_use]
pub mod limits;
pub mod keys;
pub mod rollout;
pub mod settings;
pub mod teams;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod usage;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::{Error, Result};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Pool settings; [`Options::default`] suits one gateway process.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections kept at most (SQLite in memory always uses one).
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing with [`Error::Unavailable`].
    pub acquire_timeout: Duration,
    /// SQLite only: how long a writer waits for the write lock held by another connection.
    pub busy_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle to the database. Cheap to clone: it wraps a connection pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// The thread that inserts usage records into a SQLite file; `None` on PostgreSQL and
    /// SQLite in memory.
    usage_writer: Option<std::sync::Arc<usage::SqliteWriter>>,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens `sqlite://FILE` (created if missing; WAL, busy timeout), `sqlite::memory:`, or
    /// `postgres://…` / `postgresql://…`, and applies the pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, &Options::default()).await
    }

    /// [`Store::connect`] with explicit pool settings.
    pub async fn connect_with(url: &str, options: &Options) -> Result<Store> {
        let pool = match backend_of(url)? {
            Backend::Sqlite => Pool::Sqlite(open_sqlite(url, options).await?),
            Backend::Postgres => Pool::Postgres(open_postgres(url, options).await?),
        };
        let mut store = Store {
            pool,
            usage_writer: None,
        };
        store.migrate().await?;
        if let Pool::Sqlite(p) = &store.pool {
            let file = p.connect_options().get_filename().to_owned();
            if !sqlite_in_memory(url) {
                let writer = usage::SqliteWriter::start(file, options.busy_timeout).await?;
                store.usage_writer = Some(std::sync::Arc::new(writer));
            }
        }
        Ok(store)
    }

    /// Applies pending migrations. Idempotent; on PostgreSQL concurrent callers (several replicas
    /// starting together) are serialised by an advisory lock.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => {
                SQLITE_MIGRATIONS.run(p).await?;
                sqlx::query("PRAGMA optimize=0x10002").execute(p).await?;
            }
            Pool::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// One round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every connection; later calls fail with [`Error::Unavailable`].
    pub async fn close(&self) {
        if let Some(w) = &self.usage_writer {
            w.close();
        }
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    pub fn keys(&self) -> keys::Keys<'_> {
        keys::Keys { store: self }
    }

    pub fn teams(&self) -> teams::Teams<'_> {
        teams::Teams { store: self }
    }

    pub fn usage(&self) -> usage::Usage<'_> {
        usage::Usage { store: self }
    }

    pub fn settings(&self) -> settings::Settings<'_> {
        settings::Settings { store: self }
    }

    pub fn rollouts(&self) -> rollout::Rollouts<'_> {
        rollout::Rollouts { store: self }
    }
}

/// The current time as unix milliseconds, the unit of every timestamp in the store.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn backend_of(url: &str) -> Result<Backend> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Ok(Backend::Sqlite),
        "postgres" | "postgresql" => Ok(Backend::Postgres),
        // Only the scheme is echoed: the rest of a URL may hold a password.
        other => Err(Error::UnsupportedUrl(other.to_owned())),
    }
}

fn sqlite_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn open_sqlite(url: &str, options: &Options) -> Result<SqlitePool> {
    let in_memory = sqlite_in_memory(url);
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|_| Error::UnsupportedUrl("sqlite".into()))?
        .create_if_missing(true)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true);
    let connect = if in_memory {
        connect
    } else {
        connect
            // For a new file only (an existing one keeps its page size). The usage writer
            // rewrites the last leaf of each index at every commit; with 16 KiB pages it
            // writes fewer WAL frames per record: ~10% less CPU on its thread at 30,000
            // records/s, with the usage queries as fast (`usage_scale`, 300,000 records;
            // README.md, Performance).
            .page_size(16384)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            // Keep the planner's statistics fresh, as the SQLite manual advises for
            // long-lived databases (bounded work: at most 400 rows looked at per index).
            .analysis_limit(400)
            .optimize_on_close(true, None)
    };
    // Every connection to `:memory:` is a different database: keep exactly one, forever.
    let pool = if in_memory {
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(options.max_connections.max(1))
    };
    Ok(pool
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await?)
}

async fn open_postgres(url: &str, options: &Options) -> Result<PgPool> {
    let connect = PgConnectOptions::from_str(url)
        .map_err(|_| Error::UnsupportedUrl("postgres".into()))?
        .application_name("switchyard");
    Ok(PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend_and_never_echo_secrets() {
        assert_eq!(backend_of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(backend_of("sqlite::memory:").ok(), Some(Backend::Sqlite));
        assert_eq!(
            backend_of("postgres://u:p@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            backend_of("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = backend_of("mysql://user:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
