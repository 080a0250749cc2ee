//! The store's one error type. It says what a caller can act on (not found, conflict, store
//! unreachable) and never carries a connection URL or a bound value.

use sqlx::error::ErrorKind;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The row to change does not exist (reads return `Option` instead).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule was broken (a live team name, a key hash) or an expected revision did
    /// not match.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A reference to a row that does not exist (a key's `team_id`).
    #[error("unknown reference: {0}")]
    MissingReference(String),
    /// A value the schema cannot hold (a malformed hash, a number out of range).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Only the URL's scheme is kept: the rest may hold a password.
    #[error("unsupported store url scheme {0:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    /// The database could not be reached or is busy; retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// From the SQLite connection that inserts usage records (`usage::sqlite_writer`).
    #[error("database error: {0}")]
    Embedded(#[source] rusqlite::Error),
}

impl Error {
    /// Whether the same call may succeed later (store down, pool exhausted, lock contention,
    /// serialization failure). A usage writer spools and retries these; it drops nothing else
    /// silently either, but retrying a constraint violation is pointless.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Database(sqlx::Error::Database(db)) => {
                let code = db.code().unwrap_or_default();
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // 5 SQLITE_BUSY, 6 SQLITE_LOCKED, and the extended codes built on them.
                    code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                } else {
                    // Serialization failure, deadlock, connection, shutdown, resources.
                    matches!(&*code, "40001" | "40P01")
                        || code.starts_with("08")
                        || code.starts_with("57P")
                        || code.starts_with("53")
                }
            }
            Error::Embedded(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Database(ref db) => match db.kind() {
                ErrorKind::UniqueViolation => Error::Conflict(db.message().to_owned()),
                ErrorKind::ForeignKeyViolation => Error::MissingReference(db.message().to_owned()),
                ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                    Error::Invalid(db.message().to_owned())
                }
                _ => Error::Database(e),
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Unavailable(e),
            other => Error::Database(other),
        }
    }
}
