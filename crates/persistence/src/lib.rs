//! The versioned resource store: current versions and full history of every resource, on
//! SQLite (embedded default) or PostgreSQL, through sea-orm.
//!
//! This is the only crate that knows SQL or which backend is in use. Entities stay private:
//! callers see `StoredVersion` and `HistoryEntry`, never a row.

mod audit;
mod cache;
mod connect;
mod entity;
mod error;
mod export;
mod index;
mod loader;
pub mod migration;
mod readers;
mod search;
mod sql;
mod statistics;
mod store;
mod subscriptions;
mod tx;
mod writer;

pub use audit::{AuditEntry, AuditQuery, AuditRow};
pub use connect::{Backend, PoolUsage, StoreConfig};
pub use error::StoreError;
pub use export::{ExportChunk, ExportFile, ExportJob, ExportStatus};
pub use search::SearchPage;
pub use store::{DeleteOutcome, HistoryEntry, HistoryQuery, Method, Store, StoredVersion, WriteOutcome};
pub use subscriptions::{Settlement, SubscriberConfig, SubscriberState, SubscriptionEvent, NEVER};
pub use tx::{Announcer, Change, Current, Tx, TxWork};
