//! `Tx`: the writes of one database transaction. Every write of the service goes through it, a
//! single create as much as a 1,000-entry transaction Bundle: it locks the current row, checks
//! `If-Match`, writes the current row, the history row and the search index together, and can
//! search and take criteria locks inside the same transaction, so conditional interactions are
//! decided and carried out without a gap another writer could slip through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use domain::search::query::SearchRequest;
use domain::{Prepared, ResourceType, VersionMeta};
use futures_util::future::BoxFuture;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait, QueryResult, QuerySelect, Value,
};

use crate::entity::resource;
use crate::error::StoreError;
use crate::index;
use crate::search;
use crate::sql::Sql;
use crate::store::{DeleteOutcome, Method, StoredVersion, WriteOutcome};
use crate::writer::{Guard, SAVEPOINT};

/// Work to run in one transaction: it commits when the work returns `Ok`, and nothing of it
/// stands when it returns `Err`.
pub type TxWork<T, E> = Box<dyn for<'a> FnOnce(&'a Tx<'a>) -> BoxFuture<'a, Result<T, E>> + Send>;

/// The current row of a resource, locked until the transaction ends.
#[derive(Debug, Clone)]
pub struct Current {
    pub version_id: i64,
    pub last_updated_ms: i64,
    /// The text of the current version; `None` when it is a deletion.
    pub body: Option<String>,
}

/// What a committed transaction changed, for the caches.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    Version(StoredVersion),
    Deleted { ty: ResourceType, id: String, version_id: i64, last_updated_ms: i64 },
}

/// One version a transaction wrote, with the text it replaced: what the `Announcer` sees.
#[derive(Debug, Clone)]
pub struct Change {
    /// The text of the version replaced; `None` for a create (or a recreation after a delete).
    pub previous: Option<String>,
    /// The version written; its `body` is `None` for a deletion.
    pub version: StoredVersion,
}

/// Called inside every write transaction, after its work and before the commit, with the
/// versions it wrote: what it writes (the subscription outbox) commits or rolls back with them.
pub trait Announcer: Send + Sync {
    fn announce<'a>(&'a self, tx: &'a Tx<'a>, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// After a transaction that made a subscription due (events in the outbox) committed.
    fn committed(&self) {}
}

/// A transaction in progress.
pub struct Tx<'a> {
    txn: &'a DatabaseTransaction,
    written: Mutex<Writes>,
    changes: Mutex<Vec<Change>>,
    /// Whether a subscription became due (an event in the outbox, a new subscription).
    due: std::sync::atomic::AtomicBool,
    /// `Store::no_subscribers`.
    pub(crate) no_subscribers: Arc<std::sync::atomic::AtomicBool>,
    /// Writes that need no answer from the database, not sent yet: they go in one round trip
    /// with whatever the transaction sends next (`flush`), so a write and its Provenance cost
    /// one round trip, not two.
    pending: Mutex<Pending>,
}

/// What a transaction wrote, in order, and where each resource's last write is in that list.
#[derive(Default)]
struct Writes {
    list: Vec<Written>,
    last: HashMap<(ResourceType, String), usize>,
}

/// The deferred writes, and where the write's savepoint stands (`Guard::Savepoint`).
struct Pending {
    sql: Option<Sql>,
    savepoint: Savepoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Savepoint {
    /// The write has its transaction to itself (`Guard::Alone`).
    NotNeeded,
    /// Nothing written yet: a failure now has nothing to undo.
    Closed,
    /// Opened by the first statement of the deferred writes, not sent yet.
    Queued,
    /// Sent: a failure rolls back to it.
    Open,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(
        txn: &'a DatabaseTransaction,
        no_subscribers: Arc<std::sync::atomic::AtomicBool>,
        guard: Guard,
    ) -> Self {
        let savepoint = match guard {
            Guard::Alone => Savepoint::NotNeeded,
            Guard::Savepoint => Savepoint::Closed,
        };
        Self {
            no_subscribers,
            txn,
            pending: Mutex::new(Pending { sql: None, savepoint }),
            written: Mutex::new(Writes::default()),
            changes: Mutex::new(Vec::new()),
            due: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn note_due(&self) {
        self.due.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn has_due(&self) -> bool {
        self.due.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The connection, once the deferred writes were sent and the write's savepoint opened:
    /// everything that writes through the transaction gets it here, so it sees every write made
    /// before and what it writes is undone with the rest if the write fails.
    pub(crate) async fn conn(&self) -> Result<&'a DatabaseTransaction, StoreError> {
        self.flush().await?;
        if self.pending().savepoint == Savepoint::Closed {
            self.send(self.script()).await?;
        }
        Ok(self.txn)
    }

    /// The connection for a read, once the deferred writes were sent: a read opens no
    /// savepoint, so a write that fails on what it read has nothing to undo.
    async fn read_conn(&self) -> Result<&'a DatabaseTransaction, StoreError> {
        self.flush().await?;
        Ok(self.txn)
    }

    /// Send the deferred writes.
    async fn flush(&self) -> Result<(), StoreError> {
        let pending = self.pending().sql.take();
        if let Some(sql) = pending {
            self.send(sql).await?;
        }
        Ok(())
    }

    /// The work succeeded: send the deferred writes with the savepoint's release.
    pub(crate) async fn finish(&self) -> Result<(), StoreError> {
        if matches!(self.pending().savepoint, Savepoint::Queued | Savepoint::Open) {
            let mut sql = self.script();
            sql.then().push("RELEASE SAVEPOINT ").push(SAVEPOINT);
            self.defer(sql);
        }
        self.flush().await
    }

    /// The work failed: drop the deferred writes and undo what was sent. Whether the
    /// transaction is still sound (`false` when the savepoint could not be rolled back to).
    pub(crate) async fn abandon(&self) -> bool {
        let open = {
            let mut pending = self.pending();
            pending.sql = None;
            match pending.savepoint {
                Savepoint::Open => true,
                Savepoint::Queued => {
                    pending.savepoint = Savepoint::Closed;
                    false
                }
                Savepoint::NotNeeded | Savepoint::Closed => false,
            }
        };
        if !open {
            return true;
        }
        let mut sql = Sql::new(self.txn.get_database_backend());
        sql.push("ROLLBACK TO SAVEPOINT ").push(SAVEPOINT).then().push("RELEASE SAVEPOINT ").push(SAVEPOINT);
        self.txn.execute(sql.statement()).await.is_ok()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The deferred writes so far, to append to, or a new script; either begins with the
    /// savepoint when the write needs one and has not opened it.
    fn script(&self) -> Sql {
        let mut pending = self.pending();
        if let Some(sql) = pending.sql.take() {
            return sql;
        }
        let mut sql = Sql::new(self.txn.get_database_backend());
        if pending.savepoint == Savepoint::Closed {
            sql.push("SAVEPOINT ").push(SAVEPOINT);
            pending.savepoint = Savepoint::Queued;
        }
        sql
    }

    /// Rows of a read, sent in the same round trip as the deferred writes (on PostgreSQL they
    /// become data-modifying CTEs of it): `build` appends one SELECT. The read runs on the
    /// snapshot before those writes, so it may only read rows they do not write.
    pub(crate) async fn query_after_writes(
        &self,
        build: impl FnOnce(&mut Sql),
    ) -> Result<Vec<QueryResult>, StoreError> {
        let pending = self.pending().sql.take();
        let mut sql = pending.unwrap_or_else(|| Sql::new(self.txn.get_database_backend()));
        self.mark_sent();
        build(sql.then());
        Ok(self.txn.query_all(sql.statement()).await?)
    }

    /// Send `sql` (built from `script`) now.
    async fn send(&self, sql: Sql) -> Result<sea_orm::ExecResult, StoreError> {
        self.mark_sent();
        Ok(self.txn.execute(sql.statement()).await?)
    }

    /// A script built by `script` is being sent: its savepoint counts as open from here, even if
    /// a later statement of the script fails (a failure then rolls back to it). Only a script
    /// (the deferred writes) can hold the queued savepoint.
    fn mark_sent(&self) {
        let mut pending = self.pending();
        if pending.savepoint == Savepoint::Queued {
            pending.savepoint = Savepoint::Open;
        }
    }

    fn defer(&self, sql: Sql) {
        self.pending().sql = Some(sql);
    }

    /// The versions written so far (and forgotten here): each is announced once.
    pub(crate) fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn note(&self, previous: Option<String>, version: &StoredVersion) {
        let change = Change { previous, version: version.clone() };
        self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(change);
    }

    pub(crate) fn into_written(self) -> Vec<Written> {
        self.written.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).list
    }

    fn record(&self, written: Written) {
        let mut writes = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = match &written {
            Written::Version(v) => (v.resource_type, v.id.clone()),
            Written::Deleted { ty, id, .. } => (*ty, id.clone()),
        };
        let at = writes.list.len();
        writes.last.insert(key, at);
        writes.list.push(written);
    }

    /// The version of `ty/id` this transaction wrote last, if it wrote one (a look-up, not a
    /// scan: a Bundle of 1,000 entries may check many references).
    fn written_current(&self, ty: ResourceType, id: &str) -> Option<Current> {
        let writes = self.written.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let at = *writes.last.get(&(ty, id.to_owned()))?;
        Some(match writes.list.get(at)? {
            Written::Version(v) => {
                Current { version_id: v.version_id, last_updated_ms: v.last_updated_ms, body: v.body.clone() }
            }
            Written::Deleted { version_id, last_updated_ms, .. } => {
                Current { version_id: *version_id, last_updated_ms: *last_updated_ms, body: None }
            }
        })
    }

    /// The current row of `ty/id`, locked against concurrent writers until the transaction
    /// ends (`FOR UPDATE` on PostgreSQL; SQLite has a single writer connection).
    #[tracing::instrument(name = "db.lock_current", skip_all, fields(otel.kind = "client", db.operation.name = "lock_current", fhir.resource_type = %ty))]
    pub async fn current(&self, ty: ResourceType, id: &str) -> Result<Option<Current>, StoreError> {
        // What this transaction wrote last is current: it holds that row until it ends (the
        // single writer on SQLite, the row lock of its own write on PostgreSQL). So a Bundle's
        // references to resources it creates cost no round trip.
        if let Some(current) = self.written_current(ty, id) {
            return Ok(Some(current));
        }
        Ok(lock_current(self.read_conn().await?, ty, id).await?.map(|row| Current {
            version_id: row.version_id,
            last_updated_ms: row.last_updated,
            body: row.body,
        }))
    }

    /// Serialise every transaction that takes the same `key` until this one ends: conditional
    /// creates, updates and deletes lock their criteria so that two racing with the same
    /// criteria cannot both find nothing and both create. (PostgreSQL advisory transaction
    /// lock; on SQLite every write transaction is already serial.)
    #[tracing::instrument(name = "db.lock_criteria", skip_all, fields(otel.kind = "client", db.operation.name = "lock_criteria"))]
    pub async fn lock(&self, key: &str) -> Result<(), StoreError> {
        if self.txn.get_database_backend() == DatabaseBackend::Postgres {
            let mut sql = Sql::new(DatabaseBackend::Postgres);
            sql.push("SELECT pg_advisory_xact_lock(").bind(fnv1a(key)).push(")");
            self.conn().await?.execute(sql.statement()).await?;
        }
        Ok(())
    }

    /// Current resources of `ty` matching `request`, as this transaction sees them, at most
    /// `limit` of them.
    #[tracing::instrument(name = "db.find", skip_all, fields(otel.kind = "client", db.operation.name = "find", fhir.resource_type = %ty))]
    pub async fn find(
        &self,
        ty: ResourceType,
        request: &SearchRequest,
        limit: u64,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        Ok(search::page(self.read_conn().await?, ty, request, limit).await?.matches)
    }

    /// Store a new resource under `id` as version 1.
    #[tracing::instrument(name = "db.create", skip_all, fields(otel.kind = "client", db.operation.name = "create", fhir.resource_type = %prepared.resource_type()))]
    pub async fn create(&self, prepared: &Prepared, id: &str) -> Result<StoredVersion, StoreError> {
        let version = self
            .write_version(prepared.resource_type(), id, Some(prepared), 1, Method::Post, None)
            .await?
            .ok_or(StoreError::Database(DbErr::RecordNotInserted))?;
        self.record(Written::Version(version.clone()));
        self.note(None, &version);
        Ok(version)
    }

    /// Store a new version of `id`, creating the resource if it does not exist. With
    /// `if_match`, the write happens only if the current version is exactly that one.
    #[tracing::instrument(name = "db.update", skip_all, fields(otel.kind = "client", db.operation.name = "update", fhir.resource_type = %prepared.resource_type()))]
    pub async fn update(
        &self,
        prepared: &Prepared,
        id: &str,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, StoreError> {
        let ty = prepared.resource_type();
        // Two attempts: when a concurrent transaction creates the same id between our lookup
        // and our insert, the insert does nothing and the second lookup finds its row.
        for _ in 0..2 {
            let current = lock_current(self.read_conn().await?, ty, id).await?;
            check_precondition(if_match, current.as_ref())?;
            let (next, created) = match &current {
                None => (1, true),
                Some(row) => (row.version_id + 1, row.deleted),
            };
            if let Some(version) =
                self.write_version(ty, id, Some(prepared), next, Method::Put, current.as_ref()).await?
            {
                self.record(Written::Version(version.clone()));
                self.note(current.and_then(|row| row.body), &version);
                return Ok(WriteOutcome { version, created });
            }
        }
        Err(StoreError::Database(DbErr::RecordNotInserted))
    }

    /// Delete `id` logically: a deletion version is written and history keeps every version.
    #[tracing::instrument(name = "db.delete", skip_all, fields(otel.kind = "client", db.operation.name = "delete", fhir.resource_type = %ty))]
    pub async fn delete(&self, ty: ResourceType, id: &str, if_match: Option<i64>) -> Result<DeleteOutcome, StoreError> {
        let Some(row) = lock_current(self.read_conn().await?, ty, id).await? else {
            return Err(StoreError::NotFound);
        };
        check_precondition(if_match, Some(&row))?;
        if row.deleted {
            return Ok(DeleteOutcome::AlreadyDeleted { version_id: row.version_id, last_updated_ms: row.last_updated });
        }
        let version = self
            .write_version(ty, id, None, row.version_id + 1, Method::Delete, Some(&row))
            .await?
            .ok_or(StoreError::Database(DbErr::RecordNotInserted))?;
        self.record(Written::Deleted {
            ty,
            id: id.to_owned(),
            version_id: version.version_id,
            last_updated_ms: version.last_updated_ms,
        });
        self.note(row.body, &version);
        Ok(DeleteOutcome::Deleted { version_id: version.version_id, last_updated_ms: version.last_updated_ms })
    }

    /// Replace the search index of `ty/id` (reindexing).
    pub(crate) async fn reindex(
        &self,
        ty: ResourceType,
        id: &str,
        entries: &[domain::search::IndexEntry],
    ) -> Result<(), StoreError> {
        let txn = self.conn().await?;
        index::clear(txn, ty, id).await?;
        index::insert(txn, ty, id, &entries.iter().collect::<Vec<_>>()).await?;
        Ok(())
    }
}

/// 64-bit FNV-1a, a stable hash for advisory-lock keys.
fn fnv1a(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

async fn lock_current(txn: &DatabaseTransaction, ty: ResourceType, id: &str) -> Result<Option<resource::Model>, DbErr> {
    let select = resource::Entity::find_by_id((ty.as_str().to_owned(), id.to_owned()));
    let select = if txn.get_database_backend() == DatabaseBackend::Postgres { select.lock_exclusive() } else { select };
    select.one(txn).await
}

fn check_precondition(if_match: Option<i64>, current: Option<&resource::Model>) -> Result<(), StoreError> {
    match (if_match, current) {
        (Some(expected), Some(row)) if row.version_id != expected => {
            Err(StoreError::VersionConflict { expected, current: Some(row.version_id) })
        }
        (Some(expected), None) => Err(StoreError::VersionConflict { expected, current: None }),
        _ => Ok(()),
    }
}

impl Tx<'_> {
    /// Write version `version_id` of a resource (a deletion when `prepared` is `None`) to the
    /// current table, the search index and history. `None` when the resource was to be
    /// inserted but a concurrent transaction inserted the same id first (nothing was written).
    /// A write that needs no answer (all but an insert that may clash) is deferred: it goes
    /// with the next round trip (`flush`).
    async fn write_version(
        &self,
        ty: ResourceType,
        id: &str,
        prepared: Option<&Prepared>,
        version_id: i64,
        method: Method,
        current: Option<&resource::Model>,
    ) -> Result<Option<StoredVersion>, StoreError> {
        // lastUpdated never goes backwards for one resource, even if the clock does.
        let now = now_ms().max(current.map_or(0, |row| row.last_updated));
        let meta = VersionMeta { version_id, last_updated_ms: now };
        let body = prepared.map(|p| p.render(id, meta));
        let backend = self.txn.get_database_backend();
        // A create (`Post`) writes under a new server-assigned id (UUID v7) that no row can
        // hold: a clash would fail the write whole. Any other insert goes first, alone: a
        // concurrent transaction may have inserted the same id, and then nothing is written.
        let insert_row = |sql: &mut Sql| {
            let row: [Value; 6] = [
                ty.as_str().into(),
                id.into(),
                version_id.into(),
                now.into(),
                body.is_none().into(),
                body.clone().into(),
            ];
            sql.then()
                .push("INSERT INTO resources (resource_type, id, version_id, last_updated, deleted, body) VALUES (")
                .bind_list(row)
                .push(")");
        };
        if current.is_none() && method != Method::Post {
            // Alone in its round trip: SQLite reports a statement that changes nothing (such as
            // SAVEPOINT) with the count of the last one that did, so the count of a script
            // would not be this insert's.
            let txn = self.conn().await?;
            let mut insert = Sql::new(backend);
            insert_row(&mut insert);
            insert.push(" ON CONFLICT DO NOTHING");
            if txn.execute(insert.statement()).await?.rows_affected() != 1 {
                return Ok(None);
            }
        }
        let mut sql = self.script();
        if current.is_some() {
            sql.then()
                .push("UPDATE resources SET version_id = ")
                .bind(version_id)
                .push(", last_updated = ")
                .bind(now)
                .push(", deleted = ")
                .bind(body.is_none())
                .push(", body = ")
                .bind(body.clone())
                .push(" WHERE resource_type = ")
                .bind(ty.as_str())
                .push(" AND id = ")
                .bind(id);
        } else if method == Method::Post {
            insert_row(&mut sql);
        }
        // The index rows of the parameters that changed out, their new rows in, the history row.
        let entries = prepared.map_or(&[][..], Prepared::index);
        // What the index holds now: nothing for a new resource, else the rows of the version
        // replaced.
        let old = match current {
            None => Some(Vec::new()),
            Some(row) => previous_index(ty, row),
        };
        let delta = index::Delta::between(old.as_deref(), entries);
        let inline = delta.insert.len() <= index::CHUNK;
        delta.push_clear(&mut sql, ty, id);
        if inline {
            index::push_insert(&mut sql, ty, id, &delta.insert);
        }
        let row: [Value; 7] = [
            ty.as_str().into(),
            id.into(),
            version_id.into(),
            now.into(),
            method.as_str().into(),
            body.is_none().into(),
            body.clone().into(),
        ];
        sql.then()
            .push("INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, deleted, body) VALUES (")
            .bind_list(row)
            .push(")");
        if inline {
            self.defer(sql);
        } else {
            self.send(sql).await?;
            index::insert(self.txn, ty, id, &delta.insert).await?;
        }
        Ok(Some(StoredVersion { resource_type: ty, id: id.to_owned(), version_id, last_updated_ms: now, body }))
    }
}

/// The index entries of the version `row` holds, from its text (a deletion has none); `None`
/// when its text cannot be read, and then every row of the resource is replaced.
fn previous_index(ty: ResourceType, row: &resource::Model) -> Option<Vec<domain::search::IndexEntry>> {
    match (row.deleted, row.body.as_deref()) {
        (true, _) | (false, None) => Some(Vec::new()),
        (false, Some(text)) => {
            let value: serde_json::Value = serde_json::from_str(text).ok()?;
            Some(domain::search::extract(ty, &value))
        }
    }
}

fn now_ms() -> i64 {
    domain::instant::from_system_time(SystemTime::now())
}
