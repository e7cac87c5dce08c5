//! `StoreError`: what can go wrong in the store, with database errors kept only as a source.

use sea_orm::{DbErr, RuntimeErr};

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No resource (or version) with that id was ever stored.
    #[error("not found")]
    NotFound,
    /// The resource exists but its current version is a deletion.
    #[error("deleted at version {version_id}")]
    Deleted { version_id: i64, last_updated_ms: i64 },
    /// An `If-Match` precondition failed; `current` is the version stored, if any.
    #[error("version conflict: expected {expected}, current {current:?}")]
    VersionConflict { expected: i64, current: Option<i64> },
    /// A paging cursor that this server did not issue (or for another sort).
    #[error("malformed paging cursor")]
    BadCursor,
    /// The configuration does not name a usable database.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// The database cannot be reached or is shutting down: no connection could be had in
    /// time, or the one in use broke. Worth retrying; the pool reconnects by itself.
    #[error("the database is unreachable")]
    Unavailable(#[source] DbErr),
    /// The database failed.
    #[error("database error")]
    Database(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if unreachable(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Database(err)
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::from(DbErr::Conn(RuntimeErr::SqlxError(err)))
    }
}

/// Whether an error means "no database right now" rather than "this statement failed".
fn unreachable(err: &DbErr) -> bool {
    match err {
        // sea-orm reports failures to get or open a connection as these two.
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // PostgreSQL: class 08 (connection exception), 57P01-57P03 (admin shutdown, crash
            // shutdown, cannot connect now), 53300 (too many connections); SQLite: 14 (cannot open).
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08") || code.starts_with("57P") || code == "53300" || code == "14"
            }),
            _ => false,
        },
        _ => false,
    }
}
