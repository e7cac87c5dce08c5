//! `StoreError`: what can go wrong in the store, with database errors kept only as a source.

use sea_orm::DbErr;

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
    /// The database failed or could not be reached.
    #[error("database error")]
    Database(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        StoreError::Database(err)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError::Database(DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err)))
    }
}
