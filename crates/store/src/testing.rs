//! Fresh, private databases for tests (feature `test-util`): a SQLite file in a temporary
//! directory, or a PostgreSQL database (or schema) made for one test and dropped when the
//! [`TestDb`] is dropped — panicking tests included. It never touches any other database.
//!
//! PostgreSQL: with `SWITCHYARD_TEST_PG_URL` set (a test runner that made a fresh database for
//! the run), each test gets its own schema in that database; otherwise each test gets its own
//! database `store_test_<random>` made through the admin connection
//! `postgres://postgres@127.0.0.1:5432/postgres`. This is test support, so reading the
//! environment here is allowed; nothing else in the crate does.

use sqlx::{Connection, Executor, PgConnection};

use crate::{Error, Result, Store};

/// Names the database of a test runner's run; see the module documentation.
pub const PG_URL_ENV: &str = "SWITCHYARD_TEST_PG_URL";
/// Used to create and drop per-test databases when [`PG_URL_ENV`] is not set.
pub const DEFAULT_PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A store on a database of its own. `url` can be handed to other processes (gateway replicas)
/// while the value lives.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code, reason = "kept for its Drop")] tempfile::TempDir),
    Database { admin_url: String, name: String },
    Schema { url: String, name: String },
}

impl TestDb {
    /// A new SQLite file in a new temporary directory.
    pub async fn sqlite() -> Result<TestDb> {
        let dir = tempfile::tempdir().map_err(|e| Error::Invalid(format!("tempdir: {e}")))?;
        let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
        let store = Store::connect(&url).await?;
        Ok(TestDb {
            url,
            store,
            cleanup: Cleanup::Dir(dir),
        })
    }

    /// A new PostgreSQL database (or schema, under a test runner); see the module docs.
    pub async fn postgres() -> Result<TestDb> {
        let name = format!("store_test_{:016x}", fastrand::u64(..));
        let runner_url = std::env::var(PG_URL_ENV).ok().filter(|u| !u.is_empty());
        let (url, cleanup) = match runner_url {
            Some(base) => {
                let mut admin = PgConnection::connect(&base).await?;
                admin
                    .execute(format!("CREATE SCHEMA \"{name}\"").as_str())
                    .await?;
                admin.close().await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options[search_path]={name}");
                (url, Cleanup::Schema { url: base, name })
            }
            None => {
                let admin_url = DEFAULT_PG_ADMIN_URL.to_owned();
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await?;
                admin.close().await?;
                let url = with_database(&admin_url, &name);
                (url, Cleanup::Database { admin_url, name })
            }
        };
        // From here on, dropping `db` removes the database even if connecting fails.
        let mut db = TestDb {
            url,
            store: Store::connect("sqlite::memory:").await?,
            cleanup,
        };
        db.store = Store::connect(&db.url).await?;
        Ok(db)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The names are generated above (`store_test_` + hex), so formatting them into DDL,
        // which cannot take bound identifiers, is safe.
        let (url, sql, schema) = match &self.cleanup {
            Cleanup::Dir(_) => return,
            Cleanup::Database { admin_url, name } => (
                admin_url.clone(),
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                None,
            ),
            Cleanup::Schema { url, name } => (
                url.clone(),
                format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"),
                Some(name.clone()),
            ),
        };
        // Drop cannot await, and may run inside a runtime: do the work on a thread of its own.
        // The store's own connections are not closed gracefully (that needs the runtime this
        // thread may be blocking). A database is dropped `WITH (FORCE)`. A schema's tables may
        // still be locked by one of them: a transaction dropped on an error path is rolled
        // back only when its connection is next used, and an idle pooled connection never is,
        // so `DROP SCHEMA` would wait forever. Those sessions are ended first.
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(mut admin) = PgConnection::connect(&url).await else {
                    return;
                };
                let _ = admin.execute("SET lock_timeout = '2s'").await;
                for _ in 0..5 {
                    if let Some(schema) = &schema {
                        let _ = sqlx::query(
                            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                             JOIN pg_class c ON c.oid = l.relation \
                             JOIN pg_namespace n ON n.oid = c.relnamespace \
                             WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                        )
                        .bind(schema)
                        .execute(&mut admin)
                        .await;
                    }
                    if admin.execute(sql.as_str()).await.is_ok() {
                        break;
                    }
                }
                let _ = admin.close().await;
            });
        });
        let _ = done.join();
    }
}

/// `url` with its database path replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, query) = match rest.split_once('/') {
        Some((a, tail)) => (a, tail.split_once('?').map(|(_, q)| q)),
        None => (
            rest.split('?').next().unwrap_or(rest),
            rest.split_once('?').map(|(_, q)| q),
        ),
    };
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_path_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t"),
            "postgres://u:p@h/t?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t"), "postgres://h/t");
    }
}
