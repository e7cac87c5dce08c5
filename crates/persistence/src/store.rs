//! `Store`: versioned create, read, vread, update, delete and history. Every write is one
//! database transaction that updates the current row and appends to history together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use domain::{Prepared, ResourceType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};
use sea_orm_migration::MigratorTrait;

use crate::cache::{Body, Caches, Pointer};
use crate::connect::{self, Backend, PoolUsage, Pools, StoreConfig};
use crate::entity::{history, resource};
use crate::error::StoreError;
use crate::loader::{Loaded, Loader, Row};
use crate::migration::Migrator;
use crate::tx::{Announcer, Tx, TxWork, Written};
use crate::writer::Writer;

/// The resource store. Cheap to clone: connections are pooled.
#[derive(Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    pub(crate) reader: DatabaseConnection,
    /// The write connection, used directly only for migrations.
    pub(crate) schema: DatabaseConnection,
    pub(crate) writer: Writer,
    /// Where audit batches go: on SQLite a writer of its own, on the audit file.
    pub(crate) audit: Writer,
    caches: Arc<Caches>,
    announcer: Option<Arc<dyn Announcer>>,
    pools: Pools,
    /// PostgreSQL: reads by id gathered into shared statements (`loader.rs`).
    loader: Option<Loader>,
    /// SQLite only: set once the store is known to hold no subscription (after `migrate`), so
    /// a write need not ask for subscribers; cleared by the first subscription written. The
    /// writer is this process's alone there; on PostgreSQL another replica may add one.
    no_subscribers: Arc<AtomicBool>,
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
    #[tracing::instrument(name = "db.connect", skip_all, fields(otel.kind = "client", db.operation.name = "connect"))]
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let connect::Connections { backend, reader, writer, audit, schema, pools } = connect::connect(config).await?;
        let (queue, cache_current) = match backend {
            Backend::Sqlite => (Writer::queue(writer.clone(), "careplan-writer")?, true),
            Backend::Postgres => (Writer::Direct(writer.clone()), false),
        };
        let audit = match audit {
            Some(audit) => Writer::queue(audit, "careplan-audit")?,
            None => queue.clone(),
        };
        let caches = Arc::new(Caches::new(config.cache_bytes, cache_current));
        if backend == Backend::Postgres {
            tokio::spawn(crate::statistics::maintain(schema.clone(), Arc::downgrade(&caches)));
        }
        let loader = match &pools {
            Pools::Postgres { main, .. } => Some(Loader::start(main.clone())),
            Pools::Sqlite { .. } => None,
        };
        let no_subscribers = Arc::new(AtomicBool::new(false));
        Ok(Self {
            backend,
            reader,
            schema,
            writer: queue,
            audit,
            caches,
            announcer: None,
            pools,
            loader,
            no_subscribers,
        })
    }

    /// This store, telling `announcer` of every version each write transaction writes, inside
    /// that transaction.
    pub fn with_announcer(mut self, announcer: Arc<dyn Announcer>) -> Self {
        self.announcer = Some(announcer);
        self
    }

    /// How busy each connection pool is right now.
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        self.pools.usage()
    }

    /// Which engine backs this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Apply every pending migration.
    #[tracing::instrument(name = "db.migrate", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "migrate"))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.schema, None).await?;
        if self.backend == Backend::Sqlite {
            let count = Statement::from_string(DbBackend::Sqlite, "SELECT COUNT(*) AS n FROM subscription_state");
            let row = self.schema.query_one(count).await?;
            let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
            self.no_subscribers.store(n == 0, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Whether the database answers.
    #[tracing::instrument(name = "db.ping", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "ping"))]
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.reader.ping().await?;
        Ok(())
    }

    /// How many migrations are not yet applied.
    #[tracing::instrument(name = "db.pending_migrations", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "pending_migrations"))]
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(Migrator::get_pending_migrations(&self.schema).await?.len())
    }

    /// The current version of a resource. A deleted resource is `StoreError::Deleted`.
    #[tracing::instrument(name = "db.read", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "read", fhir.resource_type = %ty))]
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
        let loaded = match &self.loader {
            Some(loader) => loader.load(ty, id).await,
            None => Loaded::Retry,
        };
        let row = match loaded {
            Loaded::Found(row) => row,
            Loaded::Retry => self.current_row(ty, id).await?,
        };
        let row = row.ok_or(StoreError::NotFound)?;
        let pointer = Pointer { version_id: row.version_id, last_updated_ms: row.last_updated, deleted: row.deleted };
        self.caches.fill_current(ty, id, generation, pointer);
        self.found(ty, id, row.version_id, row.last_updated, row.body)
    }

    /// The current row of a resource, in a statement of its own.
    async fn current_row(&self, ty: ResourceType, id: &str) -> Result<Option<Row>, StoreError> {
        let row = resource::Entity::find_by_id((ty.as_str().to_owned(), id.to_owned())).one(&self.reader).await?;
        Ok(row.map(|r| Row {
            version_id: r.version_id,
            last_updated: r.last_updated,
            deleted: r.deleted,
            body: r.body,
        }))
    }

    /// One version of a resource. A version that is a deletion is `StoreError::Deleted`.
    #[tracing::instrument(name = "db.vread", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "vread", fhir.resource_type = %ty))]
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

    /// Run `work` in one database transaction: everything it writes commits together, or
    /// nothing does (when it returns `Err` or the commit fails).
    #[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "transaction"))]
    pub async fn transaction<T, E>(&self, work: TxWork<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let announcer = self.announcer.clone();
        let no_subscribers = self.no_subscribers.clone();
        let (value, written, announced) = self
            .writer
            .write_guarded(Box::new(move |txn, guard| {
                Box::pin(async move {
                    let tx = Tx::new(txn, no_subscribers, guard);
                    let done = async {
                        let value = work(&tx).await?;
                        if let Some(announcer) = &announcer {
                            let changes = tx.take_changes();
                            if !changes.is_empty() {
                                announcer.announce(&tx, &changes).await.map_err(E::from)?;
                            }
                        }
                        // The deferred writes, before the commit.
                        tx.finish().await.map_err(E::from)?;
                        Ok::<_, E>(value)
                    }
                    .await;
                    match done {
                        Ok(value) => {
                            let announced = tx.has_due();
                            (Ok((value, tx.into_written(), announced)), true)
                        }
                        Err(err) => {
                            let sound = tx.abandon().await;
                            (Err(err), sound)
                        }
                    }
                })
            }))
            .await?;
        if announced {
            if let Some(announcer) = &self.announcer {
                announcer.committed();
            }
        }
        for change in written {
            match change {
                Written::Version(version) => self.publish(&version),
                Written::Deleted { ty, id, version_id, last_updated_ms } => {
                    self.caches.publish(ty, &id, Pointer { version_id, last_updated_ms, deleted: true }, None)
                }
            }
        }
        Ok(value)
    }

    /// Store a new resource under a fresh server-assigned `id` as version 1.
    pub async fn create(&self, prepared: Prepared, id: String) -> Result<StoredVersion, StoreError> {
        self.transaction(Box::new(move |tx| Box::pin(async move { tx.create(&prepared, &id).await }))).await
    }

    /// Store a new version of `id`, creating the resource if it does not exist. With
    /// `if_match`, the write happens only if the current version is exactly that one.
    pub async fn update(
        &self,
        prepared: Prepared,
        id: String,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, StoreError> {
        self.transaction(Box::new(move |tx| Box::pin(async move { tx.update(&prepared, &id, if_match).await }))).await
    }

    /// Delete `id` logically: a deletion version is written and history keeps every version.
    pub async fn delete(&self, ty: ResourceType, id: &str, if_match: Option<i64>) -> Result<DeleteOutcome, StoreError> {
        let id = id.to_owned();
        self.transaction(Box::new(move |tx| Box::pin(async move { tx.delete(ty, &id, if_match).await }))).await
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
    #[tracing::instrument(name = "db.reindex", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "reindex"))]
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
            self.transaction(Box::new(move |tx| {
                Box::pin(async move {
                    for (ty, id, entries) in &batch {
                        tx.reindex(*ty, id, entries).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            }))
            .await?;
            done += n;
        }
        // The index tables were rewritten in bulk: fresh planner statistics, so the searches'
        // plans fit the data now rather than whatever the tables held before (PostgreSQL's
        // autovacuum would get there, later; SQLite keeps none until asked).
        crate::statistics::analyze_all(&self.schema).await?;
        Ok(done)
    }

    /// Versions newest first, at most `query.count + 1` of them (the extra one tells the caller
    /// that a next page exists).
    #[tracing::instrument(name = "db.history", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "history", fhir.resource_type = %query.resource_type.map(|t| t.as_str()).unwrap_or("*")))]
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

fn history_version(ty: ResourceType, row: history::Model) -> StoredVersion {
    StoredVersion {
        resource_type: ty,
        id: row.id,
        version_id: row.version_id,
        last_updated_ms: row.last_updated,
        body: row.body,
    }
}

/// A migrated store on SQLite in `dir`, or on PostgreSQL in a fresh schema named after the test
/// when the suite runs there (`TEST_DATABASE_URL`).
#[cfg(test)]
pub(crate) async fn test_store(dir: &tempfile::TempDir, name: &str) -> Store {
    use sea_orm::ConnectionTrait;
    let config = test_config(dir, name);
    let store = Store::connect(&config).await.expect("store");
    if let Some(schema) = &config.schema {
        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}");
        store.schema.execute_unprepared(&drop).await.expect("a fresh schema");
    }
    store.migrate().await.expect("migrations");
    store
}

/// How `test_store` connects: `t.db` in `dir` on SQLite, a schema named after the test on
/// PostgreSQL.
#[cfg(test)]
fn test_config(dir: &tempfile::TempDir, name: &str) -> StoreConfig {
    let (url, schema) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => (url, Some(format!("{name}_{}", std::process::id()))),
        Err(_) => (format!("sqlite://{}", dir.path().join("t.db").display()), None),
    };
    StoreConfig {
        url,
        schema,
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
        cache_bytes: 0,
        statement_timeout: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use domain::search::query;
    use domain::{ingest, IngestMode, Task};
    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::store::test_store;

    /// Whether the planner has statistics of `search_reference`.
    async fn analyzed(store: &Store) -> bool {
        let sql = match store.backend {
            Backend::Sqlite => "SELECT COUNT(*) AS n FROM sqlite_stat1 WHERE tbl = 'search_reference'",
            // ANALYZE sets reltuples (-1 on a table never analyzed) in its own transaction.
            Backend::Postgres => {
                "SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'search_reference' AND reltuples >= 0 \
                 AND relnamespace = current_schema()::text::regnamespace"
            }
        };
        let row = store.schema.query_one(Statement::from_string(store.schema.get_database_backend(), sql)).await;
        match row {
            Ok(Some(row)) => row.try_get::<i64>("", "n").expect("n") > 0,
            // SQLite has no sqlite_stat1 before its first ANALYZE.
            _ => false,
        }
    }

    /// On PostgreSQL, reads are planned for their values (a generic plan made for an average
    /// patient took 58 ms for a patient with 6,000 plans), writes and the read loader keep the
    /// generic plans that spare them planning; the two pools share the connection budget.
    #[tokio::test]
    async fn on_postgresql_reads_are_planned_for_their_values_and_the_pools_share_the_budget() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "plan_modes").await;
        let names: Vec<&str> = store.pool_usage().iter().map(|p| p.name).collect();
        let Pools::Postgres { main, .. } = &store.pools else {
            assert_eq!(names, ["reader", "writer", "audit"]);
            return;
        };
        assert_eq!(names, ["main", "reader"]);
        // `test_config` allows two connections: one each.
        assert!(store.pool_usage().iter().all(|p| p.max == 1), "{:?}", store.pool_usage());
        let sql = "SELECT current_setting('plan_cache_mode') AS v";
        let row = store.reader.query_one(Statement::from_string(DbBackend::Postgres, sql)).await.expect("a setting");
        let reads: String = row.expect("a row").try_get("", "v").expect("v");
        assert_eq!(reads, "force_custom_plan");
        let writes: String = sqlx::query_scalar(sql).fetch_one(main).await.expect("a setting");
        assert_eq!(writes, "auto");
    }

    #[tokio::test]
    async fn reads_by_id_at_once_each_get_their_own_row_and_on_postgresql_share_statements() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "shared_reads").await;
        let task = |n: usize, status: &str| {
            let body = format!(
                r#"{{"resourceType":"Task","status":"{status}","intent":"order","for":{{"reference":"Patient/p{n}"}}}}"#
            );
            ingest::<Task>(body.as_bytes(), IngestMode::Conditional).expect("valid task")
        };
        for n in 0..40 {
            store.update(task(n, "requested"), format!("t{n}"), None).await.expect("created");
        }
        // A CarePlan with a Task's id: rows are told apart by type as well as id.
        let plan =
            r#"{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/plan"}}"#;
        let plan = ingest::<domain::CarePlan>(plan.as_bytes(), IngestMode::Conditional).expect("valid plan");
        store.update(plan, "t5".into(), None).await.expect("plan created");
        store.delete(ResourceType::Task, "t7", None).await.expect("deleted");
        store.update(task(3, "accepted"), "t3".into(), None).await.expect("updated");
        let before = store.loader.as_ref().map(Loader::statements);

        // Each Task three times, the plan, and ids that were never stored, all at once.
        let mut wants: Vec<(ResourceType, String)> = Vec::new();
        for round in 0..3 {
            for n in 0..40 {
                wants.push((ResourceType::Task, format!("t{}", (n * 7 + round) % 40)));
            }
            wants.push((ResourceType::CarePlan, "t5".into()));
            wants.push((ResourceType::Task, format!("missing{round}")));
            wants.push((ResourceType::CarePlan, "t6".into()));
        }
        let reads = wants.iter().map(|(ty, id)| store.read(*ty, id));
        let results = futures_util::future::join_all(reads).await;

        for ((ty, id), result) in wants.iter().zip(results) {
            match (ty, id.as_str()) {
                (ResourceType::Task, "t7") => {
                    assert!(matches!(result, Err(StoreError::Deleted { version_id: 2, .. })), "{id}: {result:?}")
                }
                (ResourceType::CarePlan, "t5") => {
                    let version = result.expect("the plan");
                    assert_eq!(version.resource_type, ResourceType::CarePlan);
                    assert!(version.body.expect("a body").contains("Patient/plan"));
                }
                (ResourceType::CarePlan, "t6") | (_, "missing0" | "missing1" | "missing2") => {
                    assert!(matches!(result, Err(StoreError::NotFound)), "{ty} {id}: {result:?}")
                }
                (ResourceType::Task, _) => {
                    let n: usize = id[1..].parse().expect("a number");
                    let version = result.expect("a task");
                    assert_eq!((version.resource_type, version.id.as_str()), (ResourceType::Task, id.as_str()));
                    let body = version.body.expect("a body");
                    assert!(body.contains(&format!(r#""Patient/p{n}""#)), "{id}: {body}");
                    if n == 3 {
                        assert_eq!(version.version_id, 2, "the update is read");
                        assert!(body.contains(r#""accepted""#));
                    } else {
                        assert_eq!(version.version_id, 1);
                    }
                }
                _ => unreachable!("only Tasks and the plan are read"),
            }
        }
        // A write then a read: the read's statement starts after the write committed.
        store.update(task(9, "in-progress"), "t9".into(), None).await.expect("updated");
        let read = store.read(ResourceType::Task, "t9").await.expect("read");
        assert_eq!(read.version_id, 2);

        if let (Some(loader), Some(before)) = (&store.loader, before) {
            // 129 reads went out at once; the loader answered them in a few statements.
            let statements = loader.statements() - before;
            assert!((1..=10).contains(&statements), "{statements} statements for {} reads", wants.len() + 1);
        } else {
            assert_eq!(store.backend, Backend::Sqlite, "PostgreSQL reads go through the loader");
        }
    }

    #[tokio::test]
    async fn statistics_are_refreshed_once_enough_rows_changed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "statistics").await;
        if store.backend == Backend::Sqlite {
            assert_eq!(store.refresh_statistics().await.expect("nothing to do"), Vec::<String>::new());
            return;
        }
        // Tables never analyzed are analyzed at once (this machine's PostgreSQL runs without
        // autovacuum, as the CI's does).
        let first = store.refresh_statistics().await.expect("refreshed");
        assert!(first.contains(&"search_reference".to_owned()), "{first:?}");
        assert!(analyzed(&store).await);
        assert_eq!(store.refresh_statistics().await.expect("refreshed"), Vec::<String>::new());
        // 200 Tasks later (each with a reference row) search_reference is stale again; the
        // counters reach pg_stat within seconds of the writes.
        for i in 0..200 {
            let body = format!(
                r#"{{"resourceType":"Task","status":"requested","intent":"order","for":{{"reference":"Patient/p{i}"}}}}"#
            );
            let prepared = ingest::<Task>(body.as_bytes(), IngestMode::Create).expect("valid task");
            store.create(prepared, format!("t{i}")).await.expect("created");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let refreshed = store.refresh_statistics().await.expect("refreshed");
            if refreshed.contains(&"search_reference".to_owned()) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "search_reference never became stale");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    #[tokio::test]
    async fn reindex_rebuilds_a_lost_index_and_refreshes_the_statistics() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "reindex").await;
        assert!(!analyzed(&store).await);
        let body = br#"{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/p1"}}"#;
        let prepared = ingest::<Task>(body, IngestMode::Create).expect("valid task");
        store.create(prepared, "t1".into()).await.expect("created");
        let request = query::parse(ResourceType::Task, &[("patient".into(), "p1".into())], true).expect("query");
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 1);

        store.schema.execute_unprepared("DELETE FROM search_reference").await.expect("index wiped");
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 0);

        assert_eq!(store.reindex().await.expect("reindexed"), 1);
        assert_eq!(store.count(ResourceType::Task, &request).await.expect("count"), 1);
        assert!(analyzed(&store).await);
    }
    /// An update rewrites the index rows of the parameters it changed and no others; a delete
    /// leaves none. A row the update must not touch carries a mark it would lose if rewritten.
    #[tokio::test]
    async fn an_update_rewrites_only_the_index_rows_of_the_parameters_it_changed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "index_delta").await;
        let task = |status: &str, patient: &str, code: Option<&str>| {
            let code =
                code.map_or(String::new(), |c| format!(r#","code":{{"coding":[{{"system":"urn:s","code":"{c}"}}]}}"#));
            let body = format!(
                r#"{{"resourceType":"Task","status":"{status}","intent":"order","for":{{"reference":"Patient/{patient}"}}{code}}}"#
            );
            ingest::<Task>(body.as_bytes(), IngestMode::Conditional).expect("valid task")
        };
        let found = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let request = query::parse(ResourceType::Task, &pairs, true).expect("query");
            let store = store.clone();
            async move { store.count(ResourceType::Task, &request).await.expect("count") }
        };
        let mark =
            "UPDATE search_reference SET identifier_value = 'mark' WHERE resource_id = 't1' AND param = 'patient'";
        let marked = || async {
            let row = store
                .reader
                .query_one(sea_orm::Statement::from_string(
                    store.reader.get_database_backend(),
                    "SELECT COUNT(*) AS n FROM search_reference WHERE resource_id = 't1' AND identifier_value = 'mark'",
                ))
                .await
                .expect("query")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("count")
        };

        store.update(task("requested", "p1", Some("a")), "t1".into(), None).await.expect("created");
        store.schema.execute_unprepared(mark).await.expect("marked");
        assert_eq!(marked().await, 1);

        // The status changes: its rows are rewritten, the patient's are not.
        store.update(task("in-progress", "p1", Some("a")), "t1".into(), None).await.expect("updated");
        assert_eq!(marked().await, 1, "the patient's row was rewritten though the patient did not change");
        assert_eq!(found(&[("status", "in-progress"), ("patient", "p1"), ("code", "urn:s|a")]).await, 1);
        assert_eq!(found(&[("status", "requested")]).await, 0);

        // The patient changes, and the code goes: both parameters' rows are replaced or removed.
        store.update(task("in-progress", "p2", None), "t1".into(), None).await.expect("updated");
        assert_eq!(marked().await, 0);
        assert_eq!(found(&[("patient", "p2"), ("status", "in-progress")]).await, 1);
        assert_eq!(found(&[("patient", "p1")]).await, 0);
        assert_eq!(found(&[("code", "urn:s|a")]).await, 0);

        // A delete leaves no index row at all; a recreation indexes afresh.
        store.delete(ResourceType::Task, "t1", None).await.expect("deleted");
        for table in crate::index::TABLES {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE resource_id = 't1'");
            let row = store
                .reader
                .query_one(sea_orm::Statement::from_string(store.reader.get_database_backend(), sql))
                .await
                .expect("query")
                .expect("a row");
            assert_eq!(row.try_get::<i64>("", "n").expect("count"), 0, "{table} kept rows of a deleted resource");
        }
        store.update(task("requested", "p3", Some("b")), "t1".into(), None).await.expect("recreated");
        assert_eq!(found(&[("patient", "p3"), ("status", "requested"), ("code", "urn:s|b")]).await, 1);
    }

    fn audit_row(n: usize) -> crate::AuditRow {
        use domain::audit::{Action, Agent, AuditRecord};
        let record = AuditRecord {
            id: format!("a{n:05}"),
            recorded_ms: 1_795_000_000_000 + i64::try_from(n).expect("small"),
            action: Action::Read,
            subtype: "read",
            status: 200,
            agent: Agent {
                fhir_user: Some(format!("Practitioner/p{}", n % 2)),
                client_id: Some(format!("app-{}", n % 5)),
                ..Agent::default()
            },
            entity: Some(format!("CarePlan/c{}", n % 7)),
            parameters: vec![],
            patient: Some(format!("pat{}", n % 3)),
            request_id: None,
        };
        crate::AuditRow::of(&record)
    }

    #[tokio::test]
    async fn the_audit_trail_is_searched_by_patient_entity_agent_and_date_and_paged() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "audit_trail").await;
        // Two batches.
        store.append_audit((0..60).map(audit_row).collect::<Vec<_>>()).await.expect("appended");
        store.append_audit((60..100).map(audit_row).collect::<Vec<_>>()).await.expect("appended");

        // Expected: the record numbers matching `matches`, newest first.
        let expect = |matches: &dyn Fn(usize) -> bool| (0..100).rev().filter(|&n| matches(n)).collect::<Vec<_>>();
        let found = |query: crate::AuditQuery| {
            let store = store.clone();
            async move {
                let entries = store.search_audit(&query).await.expect("searched");
                entries.iter().map(|e| usize::try_from(e.seq - 1).expect("seq from 1")).collect::<Vec<_>>()
            }
        };
        let all = crate::AuditQuery { count: 1000, ..Default::default() };
        let q = |change: &dyn Fn(&mut crate::AuditQuery)| {
            let mut query = all.clone();
            change(&mut query);
            query
        };
        assert_eq!(found(q(&|q| q.patient = Some("pat1".into()))).await, expect(&|n| n % 3 == 1));
        assert_eq!(found(q(&|q| q.entity = Some("CarePlan/c4".into()))).await, expect(&|n| n % 7 == 4));
        // agent= matches the FHIR user or the client.
        assert_eq!(found(q(&|q| q.agent = Some("Practitioner/p0".into()))).await, expect(&|n| n % 2 == 0));
        assert_eq!(found(q(&|q| q.agent = Some("app-3".into()))).await, expect(&|n| n % 5 == 3));
        let both = q(&|q| {
            q.patient = Some("pat2".into());
            q.entity = Some("CarePlan/c1".into());
        });
        assert_eq!(found(both).await, expect(&|n| n % 3 == 2 && n % 7 == 1));
        // Pages of four walk back through every match without a gap or a repeat.
        let mut paged = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .search_audit(&q(&|q| {
                    q.patient = Some("pat0".into());
                    q.before_seq = before;
                    q.count = 4;
                }))
                .await
                .expect("a page");
            let more = page.len() > 4;
            paged.extend(page.iter().take(4).map(|e| usize::try_from(e.seq - 1).expect("seq")));
            before = page.get(3).map(|e| e.seq);
            if !more {
                break;
            }
        }
        assert_eq!(paged, expect(&|n| n % 3 == 0));
        // A date range with a key, and without one.
        let dated = |q: &mut crate::AuditQuery| {
            q.from_ms = Some(1_795_000_000_050);
            q.to_ms = Some(1_795_000_000_070);
        };
        assert_eq!(found(q(&dated)).await, expect(&|n| (50..=70).contains(&n)));
        let dated_patient = q(&|q| {
            dated(q);
            q.patient = Some("pat1".into());
        });
        assert_eq!(found(dated_patient).await, expect(&|n| (50..=70).contains(&n) && n % 3 == 1));
    }

    /// SQLite: `PRAGMA data_version` of `path` as one connection sees it (it changes when
    /// another connection commits to that file).
    fn data_version(conn: &rusqlite::Connection) -> i64 {
        conn.query_row("PRAGMA data_version", [], |row| row.get(0)).expect("data_version")
    }

    fn count_in(path: &std::path::Path, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.query_row(sql, [], |row| row.get(0)).expect("count")
    }

    #[tokio::test]
    async fn on_sqlite_the_audit_trail_is_kept_in_its_own_file_and_leaves_the_main_file_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "audit_file").await;
        store.append_audit((0..10).map(audit_row).collect::<Vec<_>>()).await.expect("appended");
        let all = crate::AuditQuery { count: 100, ..Default::default() };
        assert_eq!(store.search_audit(&all).await.expect("read back").len(), 10);
        if store.backend != Backend::Sqlite {
            return;
        }
        let main = dir.path().join("t.db");
        let audit = dir.path().join("t-audit.db");
        assert_eq!(count_in(&audit, "SELECT COUNT(*) FROM audit_event"), 10);
        assert_eq!(count_in(&main, "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'audit_event'"), 0);
        // Appending to the trail commits nothing to the main file, so readers keep its pages.
        let watcher = rusqlite::Connection::open(&main).expect("open");
        let before = data_version(&watcher);
        store.append_audit((10..200).map(audit_row).collect::<Vec<_>>()).await.expect("appended");
        assert_eq!(data_version(&watcher), before, "an audit batch changed the main file");
        assert_eq!(count_in(&audit, "SELECT COUNT(*) FROM audit_event"), 200);
        // A resource write does change it (the check above can fail).
        let body = br#"{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/p1"}}"#;
        store
            .create(ingest::<Task>(body, IngestMode::Create).expect("valid task"), "t1".into())
            .await
            .expect("created");
        assert_ne!(data_version(&watcher), before, "a resource write left the main file unchanged");
    }

    #[tokio::test]
    async fn on_sqlite_an_existing_trail_moves_to_its_own_file_with_its_positions() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = crate::store::test_config(&dir, "audit_move");
        if config.schema.is_some() {
            return;
        }
        let main = dir.path().join("t.db");
        let audit = dir.path().join("t-audit.db");
        let in_main = "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'audit_event'";
        // A store as the version before this one left it: the trail in the main file.
        let store = Store::connect(&config).await.expect("store");
        crate::migration::Migrator::up(&store.schema, Some(7)).await.expect("migrations 1 to 7");
        let txn = sea_orm::TransactionTrait::begin(&store.schema).await.expect("a transaction");
        crate::audit::insert(&txn, &(0..30).map(audit_row).collect::<Vec<_>>()).await.expect("appended");
        txn.commit().await.expect("committed");
        assert_eq!(count_in(&main, "SELECT COUNT(*) FROM audit_event"), 30);
        let all = crate::AuditQuery { count: 100, ..Default::default() };
        let listed = |entries: Vec<crate::AuditEntry>| entries.into_iter().map(|e| (e.seq, e.body)).collect::<Vec<_>>();
        let before = listed(store.search_audit(&all).await.expect("read"));
        assert_eq!(before.len(), 30);

        store.migrate().await.expect("migration 8");
        assert_eq!(count_in(&main, in_main), 0, "the main file still holds the trail");
        assert_eq!(count_in(&audit, "SELECT COUNT(*) FROM audit_event"), 30);
        assert_eq!(count_in(&audit, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'"), 5, "indexes moved");
        assert_eq!(listed(store.search_audit(&all).await.expect("read")), before, "the same records, positions, text");
        // New records follow the moved ones.
        store.append_audit(vec![audit_row(30)]).await.expect("appended");
        let newest = store.search_audit(&crate::AuditQuery { count: 1, ..Default::default() }).await.expect("read");
        assert_eq!(newest[0].seq, before[0].0 + 1);

        // Down and up again: back into the main file, then out, with nothing lost.
        // Undo migration 8 and every later one.
        let later = u32::try_from(crate::migration::Migrator::migrations().len() - 7).expect("a few");
        crate::migration::Migrator::down(&store.schema, Some(later)).await.expect("migration 8 undone");
        assert_eq!(count_in(&main, "SELECT COUNT(*) FROM audit_event"), 31);
        store.migrate().await.expect("migration 8 again");
        assert_eq!(count_in(&main, in_main), 0);
        assert_eq!(store.search_audit(&all).await.expect("read").len(), 31);
    }
}
