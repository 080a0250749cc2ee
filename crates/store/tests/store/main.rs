//! The store against both backends: every test runs on a fresh SQLite file and on a fresh
//! PostgreSQL database (see `store::testing`).

mod keys;
mod rollout;
mod settings;
mod teams;
mod usage;

use std::future::Future;

use store::testing::TestDb;
use store::Store;

/// Runs `test` on SQLite, then on PostgreSQL, each on a database of its own.
#[expect(
    clippy::expect_used,
    reason = "a test helper: failing to get a database fails the test"
)]
pub async fn on_both<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let sqlite = TestDb::sqlite().await.expect("sqlite test database");
    eprintln!("--- on sqlite");
    test(sqlite.store.clone()).await;
    let pg = TestDb::postgres().await.expect("postgres test database");
    eprintln!("--- on postgres");
    test(pg.store.clone()).await;
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for db in [
        TestDb::sqlite().await.unwrap(),
        TestDb::postgres().await.unwrap(),
    ] {
        db.store.settings().set("marker", "kept").await.unwrap();
        // A second process connecting to the same database, and a third migrate call.
        let again = Store::connect(&db.url).await.unwrap();
        again.migrate().await.unwrap();
        assert_eq!(
            again.settings().get("marker").await.unwrap().as_deref(),
            Some("kept")
        );
        assert_eq!(again.keys().version().await.unwrap(), 0);
        again.ping().await.unwrap();
        again.close().await;
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let err = Store::connect("mysql://root:hunter2@localhost/x")
        .await
        .unwrap_err();
    assert!(matches!(err, store::Error::UnsupportedUrl(_)));
    assert!(!err.to_string().contains("hunter2"));
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_transient_error() {
    let opts = store::Options {
        acquire_timeout: std::time::Duration::from_millis(500),
        ..store::Options::default()
    };
    // Port 1 on loopback: nothing listens there.
    let err = Store::connect_with("postgres://postgres@127.0.0.1:1/x", &opts)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn sqlite_creates_the_file_and_memory_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    store.close().await;
    // A new file is in WAL mode with 16 KiB pages (the usage writer's commits write fewer
    // frames); a file made with other pages keeps them and opens as before.
    let pragma = |path: &std::path::Path, name: &str| -> String {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
            .map(|v| match v {
                rusqlite::types::Value::Integer(n) => n.to_string(),
                rusqlite::types::Value::Text(t) => t,
                other => format!("{other:?}"),
            })
            .unwrap()
    };
    assert_eq!(pragma(&path, "page_size"), "16384");
    assert_eq!(pragma(&path, "journal_mode"), "wal");
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("PRAGMA page_size = 4096; CREATE TABLE t (x INTEGER);")
        .unwrap();
    let store = Store::connect(&format!("sqlite://{}", old.display()))
        .await
        .unwrap();
    store.settings().set("a", "b").await.unwrap();
    assert_eq!(
        store.settings().get("a").await.unwrap().as_deref(),
        Some("b")
    );
    store.close().await;
    assert_eq!(pragma(&old, "page_size"), "4096");
    let mem = Store::connect("sqlite::memory:").await.unwrap();
    mem.settings().set("a", "b").await.unwrap();
    assert_eq!(mem.settings().get("a").await.unwrap().as_deref(), Some("b"));
}
