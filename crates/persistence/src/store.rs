//! `Store`: versioned create, read, vread, update, delete and history. Every write is one
//! database transaction that updates the current row and appends to history together.

use std::sync::Arc;
use std::time::SystemTime;

use domain::{Prepared, ResourceType, VersionMeta};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use sea_orm_migration::MigratorTrait;

use crate::cache::{Body, Caches, Pointer};
use crate::connect::{self, Backend, StoreConfig};
use crate::entity::{history, resource};
use crate::error::StoreError;
use crate::index;
use crate::migration::Migrator;
use crate::writer::Writer;

/// How many times a write is retried when a concurrent writer created the same id first.
const WRITE_RETRIES: usize = 3;

/// The resource store. Cheap to clone: connections are pooled.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    pub(crate) reader: DatabaseConnection,
    /// The write connection, used directly only for migrations.
    schema: DatabaseConnection,
    writer: Writer,
    caches: Arc<Caches>,
}

/// One stored version of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub resource_type: ResourceType,
    pub id: String,
    pub version_id: i64,
    pub last_updated_ms: i64,
    /// The resource text; `None` when this version is a deletion.
    pub body: Option<String>,
}

/// The HTTP method that produced a version, as history reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Post,
    Put,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Method {
        match s {
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            _ => Method::Put,
        }
    }
}

/// The result of an update: the new version and whether it brought the resource into being
/// (update-as-create, or recreation after a delete).
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub version: StoredVersion,
    pub created: bool,
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// A deletion version was written.
    Deleted { version_id: i64, last_updated_ms: i64 },
    /// The resource was already deleted; nothing was written.
    AlreadyDeleted { version_id: i64, last_updated_ms: i64 },
}

/// One entry of a history: a version with its position in write order.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub seq: i64,
    pub method: Method,
    pub version: StoredVersion,
}

/// Which history to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub resource_type: Option<ResourceType>,
    pub id: Option<String>,
    /// Only versions written at or after this instant (epoch ms).
    pub since_ms: Option<i64>,
    /// Only versions older than this position: the keyset cursor of the next page.
    pub before_seq: Option<i64>,
    pub count: u64,
}

impl Store {
    /// Connect to the database named by `config`. Fails fast when it cannot be reached.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let connect::Connections { backend, reader, writer } = connect::connect(config).await?;
        let (queue, cache_current) = match backend {
            Backend::Sqlite => (Writer::queue(writer.clone()), true),
            Backend::Postgres => (Writer::Direct(writer.clone()), false),
        };
        let caches = Arc::new(Caches::new(config.cache_bytes, cache_current));
        Ok(Self { backend, reader, schema: writer, writer: queue, caches })
    }

    /// Which engine backs this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Apply every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.schema, None).await?;
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.reader.ping().await?;
        Ok(())
    }

    /// How many migrations are not yet applied.
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(Migrator::get_pending_migrations(&self.schema).await?.len())
    }

    /// The current version of a resource. A deleted resource is `StoreError::Deleted`.
    pub async fn read(&self, ty: ResourceType, id: &str) -> Result<StoredVersion, StoreError> {
        if let Some(pointer) = self.caches.current(ty, id) {
            if pointer.deleted {
                return Err(deleted(pointer.version_id, pointer.last_updated_ms));
            }
            if let Some(body) = self.caches.body(ty, id, pointer.version_id) {
                return Ok(stored(ty, id, pointer.version_id, &body));
            }
        }
        let generation = self.caches.generation(ty, id);
        let row = resource::Entity::find_by_id((ty.as_str().to_owned(), id.to_owned()))
            .one(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        let pointer = Pointer { version_id: row.version_id, last_updated_ms: row.last_updated, deleted: row.deleted };
        self.caches.fill_current(ty, id, generation, pointer);
        self.found(ty, id, row.version_id, row.last_updated, row.body)
    }

    /// One version of a resource. A version that is a deletion is `StoreError::Deleted`.
    pub async fn vread(&self, ty: ResourceType, id: &str, version_id: i64) -> Result<StoredVersion, StoreError> {
        if let Some(body) = self.caches.body(ty, id, version_id) {
            return Ok(stored(ty, id, version_id, &body));
        }
        let row = history::Entity::find()
            .filter(history::Column::ResourceType.eq(ty.as_str()))
            .filter(history::Column::Id.eq(id))
            .filter(history::Column::VersionId.eq(version_id))
            .one(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.found(ty, id, row.version_id, row.last_updated, row.body)
    }

    /// A version read from the database, cached; `None` text means a deletion.
    fn found(
        &self,
        ty: ResourceType,
        id: &str,
        version_id: i64,
        last_updated_ms: i64,
        text: Option<String>,
    ) -> Result<StoredVersion, StoreError> {
        let Some(text) = text else {
            return Err(deleted(version_id, last_updated_ms));
        };
        let body = Body { last_updated_ms, text: Arc::from(text) };
        self.caches.put_body(ty, id, version_id, body.clone());
        Ok(stored(ty, id, version_id, &body))
    }

    /// Store a new resource under a fresh server-assigned `id` as version 1.
    pub async fn create(&self, prepared: Prepared, id: String) -> Result<StoredVersion, StoreError> {
        let version = self
            .writer
            .write(Box::new(move |txn| {
                Box::pin(async move {
                    let ty = prepared.resource_type();
                    write_version(txn, ty, &id, Some(&prepared), 1, Method::Post, None).await
                })
            }))
            .await?;
        self.publish(&version);
        Ok(version)
    }

    /// Store a new version of `id`, creating the resource if it does not exist. With
    /// `if_match`, the write happens only if the current version is exactly that one.
    pub async fn update(
        &self,
        prepared: Prepared,
        id: String,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, StoreError> {
        let prepared = Arc::new(prepared);
        let id: Arc<str> = Arc::from(id);
        let mut attempt = 0;
        loop {
            let (prepared, id) = (prepared.clone(), id.clone());
            let result = self
                .writer
                .write(Box::new(move |txn| Box::pin(async move { update_in(txn, &prepared, &id, if_match).await })))
                .await;
            match result {
                Err(StoreError::Database(err)) if is_unique_violation(&err) && attempt < WRITE_RETRIES => attempt += 1,
                Ok(outcome) => {
                    self.publish(&outcome.version);
                    return Ok(outcome);
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Delete `id` logically: a deletion version is written and history keeps every version.
    pub async fn delete(&self, ty: ResourceType, id: &str, if_match: Option<i64>) -> Result<DeleteOutcome, StoreError> {
        let owned = id.to_owned();
        let outcome = self
            .writer
            .write(Box::new(move |txn| Box::pin(async move { delete_in(txn, ty, &owned, if_match).await })))
            .await?;
        if let DeleteOutcome::Deleted { version_id, last_updated_ms } = outcome {
            self.caches.publish(ty, id, Pointer { version_id, last_updated_ms, deleted: true }, None);
        }
        Ok(outcome)
    }

    fn publish(&self, version: &StoredVersion) {
        let pointer = Pointer {
            version_id: version.version_id,
            last_updated_ms: version.last_updated_ms,
            deleted: version.body.is_none(),
        };
        self.caches.publish(version.resource_type, &version.id, pointer, version.body.as_deref().map(Arc::from));
    }

    /// Rebuild the search index of every current resource from its stored text, in batches,
    /// each batch in one transaction. Returns how many resources were indexed.
    pub async fn reindex(&self) -> Result<u64, StoreError> {
        const BATCH: u64 = 200;
        let mut after: Option<(String, String)> = None;
        let mut done = 0u64;
        loop {
            let mut select = resource::Entity::find().filter(resource::Column::Deleted.eq(false));
            if let Some((ty, id)) = &after {
                select = select.filter(
                    sea_orm::Condition::any().add(resource::Column::ResourceType.gt(ty.as_str())).add(
                        sea_orm::Condition::all()
                            .add(resource::Column::ResourceType.eq(ty.as_str()))
                            .add(resource::Column::Id.gt(id.as_str())),
                    ),
                );
            }
            let rows = select
                .order_by_asc(resource::Column::ResourceType)
                .order_by_asc(resource::Column::Id)
                .limit(BATCH)
                .all(&self.reader)
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some((last.resource_type.clone(), last.id.clone()));
            let batch: Vec<(ResourceType, String, Vec<domain::search::IndexEntry>)> = rows
                .into_iter()
                .filter_map(|row| {
                    let ty = ResourceType::parse(&row.resource_type)?;
                    let value: serde_json::Value = serde_json::from_str(row.body.as_deref()?).ok()?;
                    Some((ty, row.id, domain::search::extract(ty, &value)))
                })
                .collect();
            let n = batch.len() as u64;
            self.writer
                .write(Box::new(move |txn| {
                    Box::pin(async move {
                        for (ty, id, entries) in &batch {
                            index::clear(txn, *ty, id).await?;
                            index::insert(txn, *ty, id, entries).await?;
                        }
                        Ok(())
                    })
                }))
                .await?;
            done += n;
        }
        Ok(done)
    }

    /// Versions newest first, at most `query.count + 1` of them (the extra one tells the caller
    /// that a next page exists).
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut select = history::Entity::find();
        if let Some(ty) = query.resource_type {
            select = select.filter(history::Column::ResourceType.eq(ty.as_str()));
        }
        if let Some(id) = &query.id {
            select = select.filter(history::Column::Id.eq(id.as_str()));
        }
        if let Some(since) = query.since_ms {
            select = select.filter(history::Column::LastUpdated.gte(since));
        }
        if let Some(before) = query.before_seq {
            select = select.filter(history::Column::Seq.lt(before));
        }
        let rows =
            select.order_by_desc(history::Column::Seq).limit(query.count.saturating_add(1)).all(&self.reader).await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let ty = ResourceType::parse(&row.resource_type)?;
                Some(HistoryEntry {
                    seq: row.seq,
                    method: Method::parse(&row.method),
                    version: history_version(ty, row),
                })
            })
            .collect())
    }
}

/// A version as the caller sees it.
fn stored(ty: ResourceType, id: &str, version_id: i64, body: &Body) -> StoredVersion {
    StoredVersion {
        resource_type: ty,
        id: id.to_owned(),
        version_id,
        last_updated_ms: body.last_updated_ms,
        body: Some(body.text.to_string()),
    }
}

fn deleted(version_id: i64, last_updated_ms: i64) -> StoreError {
    StoreError::Deleted { version_id, last_updated_ms }
}

async fn update_in(
    txn: &DatabaseTransaction,
    prepared: &Prepared,
    id: &str,
    if_match: Option<i64>,
) -> Result<WriteOutcome, StoreError> {
    let ty = prepared.resource_type();
    let current = lock_current(txn, ty, id).await?;
    check_precondition(if_match, current.as_ref())?;
    let (next, created) = match &current {
        None => (1, true),
        Some(row) => (row.version_id + 1, row.deleted),
    };
    let version = write_version(txn, ty, id, Some(prepared), next, Method::Put, current.as_ref()).await?;
    Ok(WriteOutcome { version, created })
}

async fn delete_in(
    txn: &DatabaseTransaction,
    ty: ResourceType,
    id: &str,
    if_match: Option<i64>,
) -> Result<DeleteOutcome, StoreError> {
    let Some(row) = lock_current(txn, ty, id).await? else {
        return Err(StoreError::NotFound);
    };
    check_precondition(if_match, Some(&row))?;
    if row.deleted {
        return Ok(DeleteOutcome::AlreadyDeleted { version_id: row.version_id, last_updated_ms: row.last_updated });
    }
    let version = write_version(txn, ty, id, None, row.version_id + 1, Method::Delete, Some(&row)).await?;
    Ok(DeleteOutcome::Deleted { version_id: version.version_id, last_updated_ms: version.last_updated_ms })
}

fn history_version(ty: ResourceType, row: history::Model) -> StoredVersion {
    StoredVersion {
        resource_type: ty,
        id: row.id,
        version_id: row.version_id,
        last_updated_ms: row.last_updated,
        body: row.body,
    }
}

/// The current row, locked against concurrent writers until the transaction ends
/// (`FOR UPDATE` on PostgreSQL; SQLite has a single writer connection).
async fn lock_current(txn: &DatabaseTransaction, ty: ResourceType, id: &str) -> Result<Option<resource::Model>, DbErr> {
    let select = resource::Entity::find_by_id((ty.as_str().to_owned(), id.to_owned()));
    let select =
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres { select.lock_exclusive() } else { select };
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

/// Write version `version_id` of a resource (a deletion when `prepared` is `None`) to the
/// current table and to history.
async fn write_version(
    txn: &DatabaseTransaction,
    ty: ResourceType,
    id: &str,
    prepared: Option<&Prepared>,
    version_id: i64,
    method: Method,
    current: Option<&resource::Model>,
) -> Result<StoredVersion, StoreError> {
    // lastUpdated never goes backwards for one resource, even if the clock does.
    let now = now_ms().max(current.map_or(0, |row| row.last_updated));
    let meta = VersionMeta { version_id, last_updated_ms: now };
    let body = prepared.map(|p| p.render(id, meta));
    let row = resource::ActiveModel {
        resource_type: Set(ty.as_str().to_owned()),
        id: Set(id.to_owned()),
        version_id: Set(version_id),
        last_updated: Set(now),
        deleted: Set(body.is_none()),
        body: Set(body.clone()),
    };
    if current.is_some() {
        resource::Entity::update_many()
            .col_expr(resource::Column::VersionId, Expr::value(version_id))
            .col_expr(resource::Column::LastUpdated, Expr::value(now))
            .col_expr(resource::Column::Deleted, Expr::value(body.is_none()))
            .col_expr(resource::Column::Body, Expr::value(body.clone()))
            .filter(resource::Column::ResourceType.eq(ty.as_str()))
            .filter(resource::Column::Id.eq(id))
            .exec(txn)
            .await?;
    } else {
        resource::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(txn)
            .await
            .and_then(|inserted| if inserted == 1 { Ok(()) } else { Err(DbErr::RecordNotInserted) })?;
    }
    if current.is_some() {
        index::clear(txn, ty, id).await?;
    }
    if let Some(prepared) = prepared {
        index::insert(txn, ty, id, prepared.index()).await?;
    }
    history::Entity::insert(history::ActiveModel {
        seq: sea_orm::ActiveValue::NotSet,
        resource_type: Set(ty.as_str().to_owned()),
        id: Set(id.to_owned()),
        version_id: Set(version_id),
        last_updated: Set(now),
        method: Set(method.as_str().to_owned()),
        deleted: Set(body.is_none()),
        body: Set(body.clone()),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(StoredVersion { resource_type: ty, id: id.to_owned(), version_id, last_updated_ms: now, body })
}

fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err, DbErr::RecordNotInserted) || matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn now_ms() -> i64 {
    domain::instant::from_system_time(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use domain::search::query;
    use domain::{ingest, IngestMode, Task};
    use sea_orm::ConnectionTrait;

    use super::*;

    #[tokio::test]
    async fn reindex_rebuilds_a_lost_index() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = StoreConfig {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            schema: None,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
            cache_bytes: 0,
        };
        let store = Store::connect(&config).await.expect("store");
        store.migrate().await.expect("migrations");
        let body = br#"{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/p1"}}"#;
        let prepared = ingest::<Task>(body, IngestMode::Create).expect("valid task");
        store.create(prepared, "t1".into()).await.expect("created");
        let request = query::parse(ResourceType::Task, &[("patient".into(), "p1".into())], true).expect("query");
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 1);

        store.schema.execute_unprepared("DELETE FROM search_reference").await.expect("index wiped");
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 0);

        assert_eq!(store.reindex().await.expect("reindexed"), 1);
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 1);
    }
}
