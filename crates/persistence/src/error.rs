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
    /// A statement ran past the statement timeout and the database stopped it (PostgreSQL
    /// 57014, SQLite's progress handler: SQLITE_INTERRUPT).
    #[error("the statement took too long")]
    TimedOut(#[source] DbErr),
    /// The statement exceeds what the database can compile (SQLite "Expression tree is too
    /// large", "too many SQL variables"; PostgreSQL class 54, program limit exceeded). The
    /// search limits keep requests from getting here; this is the last line.
    #[error("the statement is too complex")]
    TooComplex(#[source] DbErr),
    /// The database failed.
    #[error("database error")]
    Database(#[source] DbErr),
    /// Work a caller ran inside `Store::transaction` found what it read unusable and gave up:
    /// the transaction rolls back. (Callers above persistence never name the database's errors.)
    #[error("the transaction's work failed: {0}")]
    Aborted(String),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if unreachable(&err) {
            StoreError::Unavailable(err)
        } else if code_is(&err, |code, _| code == "57014" || code == "9") {
            StoreError::TimedOut(err)
        } else if code_is(&err, |code, message| {
            code.starts_with("54")
                || (code == "1" && (message.contains("too large") || message.contains("too many SQL variables")))
        }) {
            StoreError::TooComplex(err)
        } else {
            StoreError::Database(err)
        }
    }
}

/// Whether `err` is a database error whose code (and message) `test` accepts.
fn code_is(err: &DbErr, test: impl Fn(&str, &str) -> bool) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(db)))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(db))) => {
            db.code().is_some_and(|code| test(&code, db.message()))
        }
        _ => false,
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
