//! FHIR Bulk Data export (http://hl7.org/fhir/uv/bulkdata/STU2/export.html): the jobs, their
//! lease, and their NDJSON output.
//!
//! The output is kept in the database on both backends, as chunks of lines (one store page
//! each) under `(job, file, chunk)`: one approach for SQLite and PostgreSQL, written in the
//! same transaction that renews the job's lease and counts the lines (so a cancelled or
//! reclaimed job writes nothing more), read back one chunk at a time (so neither writing nor
//! serving a file ever holds more than one page in memory), and deleted with its job.

use domain::search::query::SearchRequest;
use domain::ResourceType;
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult};

use crate::error::StoreError;
use crate::search::{filter, version};
use crate::sql::Sql;
use crate::store::{Store, StoredVersion};
use crate::tx::Tx;

/// Where an export job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStatus {
    /// Waiting for a replica, or being written by the one holding its lease.
    Running,
    /// Every file is written; the manifest can be served.
    Done,
    /// Stopped by an internal failure.
    Failed,
}

impl ExportStatus {
    pub fn code(self) -> &'static str {
        match self {
            ExportStatus::Running => "running",
            ExportStatus::Done => "done",
            ExportStatus::Failed => "failed",
        }
    }

    fn parse(code: &str) -> ExportStatus {
        match code {
            "done" => ExportStatus::Done,
            "failed" => ExportStatus::Failed,
            _ => ExportStatus::Running,
        }
    }
}

/// An export job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    pub id: String,
    /// Who kicked it off (the token's client, else its subject; empty without authorization).
    pub owner: String,
    pub status: ExportStatus,
    /// The kick-off request's URL, for the manifest.
    pub request: String,
    /// Epoch ms: the manifest's `transactionTime`.
    pub transaction_ms: i64,
    /// What to export, as the service wrote it (opaque here).
    pub plan: String,
    pub created_ms: i64,
    /// Epoch ms after which a finished job and its files are deleted.
    pub expires_ms: Option<i64>,
    /// Resources written so far.
    pub progress: i64,
    /// Why a failed job failed (no PHI: the service writes it).
    pub error: Option<String>,
}

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub file_no: i64,
    pub resource_type: String,
    pub count: i64,
}

/// One page of output to append to a job, under the lease of `lease_owner`.
#[derive(Debug, Clone)]
pub struct ExportChunk {
    pub job_id: String,
    pub lease_owner: String,
    pub lease_until_ms: i64,
    pub file_no: i64,
    pub resource_type: ResourceType,
    /// The lines, each ending with `\n`.
    pub lines: String,
    pub count: i64,
}

const JOB_COLUMNS: &str = "id, owner, status, request, transaction_time, plan, created, expires, progress, error";

fn job(row: &QueryResult) -> Result<ExportJob, StoreError> {
    let status: String = row.try_get("", "status")?;
    Ok(ExportJob {
        id: row.try_get("", "id")?,
        owner: row.try_get("", "owner")?,
        status: ExportStatus::parse(&status),
        request: row.try_get("", "request")?,
        transaction_ms: row.try_get("", "transaction_time")?,
        plan: row.try_get("", "plan")?,
        created_ms: row.try_get("", "created")?,
        expires_ms: row.try_get("", "expires")?,
        progress: row.try_get("", "progress")?,
        error: row.try_get("", "error")?,
    })
}

impl Tx<'_> {
    /// Store a new running job, unless its owner already has `max_running` running jobs;
    /// returns whether it was stored. Two kick-offs of one owner are decided one after the
    /// other (SQLite has one writer; PostgreSQL takes a transaction lock on the owner).
    #[tracing::instrument(name = "db.export_create", skip_all, fields(otel.kind = "client", db.operation.name = "export_create"))]
    pub async fn create_export(&self, job: &ExportJob, max_running: i64) -> Result<bool, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        if backend == DatabaseBackend::Postgres {
            let mut sql = Sql::new(backend);
            sql.push("SELECT pg_advisory_xact_lock(hashtext(").bind(format!("export:{}", job.owner)).push(")::bigint)");
            txn.execute(sql.statement()).await?;
        }
        let mut sql = Sql::new(backend);
        sql.push("SELECT COUNT(*) AS n FROM export_job WHERE owner = ")
            .bind(job.owner.clone())
            .push(" AND status = ")
            .bind(ExportStatus::Running.code());
        let running: i64 = txn.query_one(sql.statement()).await?.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
        if running >= max_running {
            return Ok(false);
        }
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO export_job (id, owner, status, request, transaction_time, plan, created, progress) VALUES (",
        )
        .bind(job.id.clone())
        .push(", ")
        .bind(job.owner.clone())
        .push(", ")
        .bind(ExportStatus::Running.code())
        .push(", ")
        .bind(job.request.clone())
        .push(", ")
        .bind(job.transaction_ms)
        .push(", ")
        .bind(job.plan.clone())
        .push(", ")
        .bind(job.created_ms)
        .push(", 0)");
        txn.execute(sql.statement()).await?;
        Ok(true)
    }

    /// Lease the oldest running job no replica holds (never leased, or its lease expired: the
    /// replica that held it stopped) to `owner` until `lease_until_ms`. What an earlier holder
    /// wrote is deleted: the job starts again from its first page.
    #[tracing::instrument(name = "db.export_claim", skip_all, fields(otel.kind = "client", db.operation.name = "export_claim"))]
    pub async fn claim_export(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        owner: &str,
    ) -> Result<Option<ExportJob>, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut sql = Sql::new(backend);
        sql.push("UPDATE export_job SET progress = 0, lease_until = ")
            .bind(lease_until_ms)
            .push(", lease_owner = ")
            .bind(owner.to_owned())
            .push(" WHERE id IN (SELECT id FROM export_job WHERE status = ")
            .bind(ExportStatus::Running.code())
            .push(" AND (lease_until IS NULL OR lease_until <= ")
            .bind(now_ms)
            .push(") ORDER BY created LIMIT 1");
        if backend == DatabaseBackend::Postgres {
            sql.push(" FOR UPDATE SKIP LOCKED");
        }
        sql.push(") RETURNING ").push(JOB_COLUMNS);
        let Some(claimed) = txn.query_one(sql.statement()).await?.as_ref().map(job).transpose()? else {
            return Ok(None);
        };
        delete_output(txn, &claimed.id).await?;
        Ok(Some(claimed))
    }

    /// Append one chunk of lines to a job's file, count them and renew the lease, if `owner`
    /// still holds the lease of a running job; returns whether it did (the job was cancelled,
    /// or another replica took it over, when not).
    #[tracing::instrument(name = "db.export_append", skip_all, fields(otel.kind = "client", db.operation.name = "export_append"))]
    pub async fn append_export(&self, chunk: &ExportChunk) -> Result<bool, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut sql = Sql::new(backend);
        sql.push("UPDATE export_job SET progress = progress + ")
            .bind(chunk.count)
            .push(", lease_until = ")
            .bind(chunk.lease_until_ms)
            .push(" WHERE id = ")
            .bind(chunk.job_id.clone())
            .push(" AND lease_owner = ")
            .bind(chunk.lease_owner.clone())
            .push(" AND status = ")
            .bind(ExportStatus::Running.code());
        if txn.execute(sql.statement()).await?.rows_affected() != 1 {
            return Ok(false);
        }
        let mut sql = Sql::new(backend);
        sql.push("INSERT INTO export_output (job_id, file_no, resource_type, count) VALUES (")
            .bind(chunk.job_id.clone())
            .push(", ")
            .bind(chunk.file_no)
            .push(", ")
            .bind(chunk.resource_type.as_str())
            .push(", ")
            .bind(chunk.count)
            .push(") ON CONFLICT (job_id, file_no) DO UPDATE SET count = export_output.count + excluded.count");
        txn.execute(sql.statement()).await?;
        let mut sql = Sql::new(backend);
        sql.push("INSERT INTO export_chunk (job_id, file_no, chunk_no, body) SELECT ")
            .bind(chunk.job_id.clone())
            .push(", ")
            .bind(chunk.file_no)
            .push(", COALESCE(MAX(chunk_no), 0) + 1, ")
            .bind(chunk.lines.clone())
            .push(" FROM export_chunk WHERE job_id = ")
            .bind(chunk.job_id.clone())
            .push(" AND file_no = ")
            .bind(chunk.file_no);
        txn.execute(sql.statement()).await?;
        Ok(true)
    }

    /// Settle a job `owner` holds: done (kept until `expires_ms`) or failed (with `error`).
    /// Returns whether it did (not when cancelled or taken over meanwhile).
    #[tracing::instrument(name = "db.export_finish", skip_all, fields(otel.kind = "client", db.operation.name = "export_finish"))]
    pub async fn finish_export(
        &self,
        id: &str,
        owner: &str,
        status: ExportStatus,
        expires_ms: i64,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        let txn = self.conn().await?;
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("UPDATE export_job SET status = ")
            .bind(status.code())
            .push(", expires = ")
            .bind(expires_ms)
            .push(", error = ")
            .bind(error)
            .push(", lease_until = NULL, lease_owner = NULL WHERE id = ")
            .bind(id.to_owned())
            .push(" AND lease_owner = ")
            .bind(owner.to_owned())
            .push(" AND status = ")
            .bind(ExportStatus::Running.code());
        Ok(txn.execute(sql.statement()).await?.rows_affected() == 1)
    }

    /// Delete a job and everything it wrote; returns whether there was one.
    #[tracing::instrument(name = "db.export_delete", skip_all, fields(otel.kind = "client", db.operation.name = "export_delete"))]
    pub async fn delete_export(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.conn().await?;
        delete_output(txn, id).await?;
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("DELETE FROM export_job WHERE id = ").bind(id.to_owned());
        Ok(txn.execute(sql.statement()).await?.rows_affected() == 1)
    }

    /// Delete the jobs (and their files) that expired before `now_ms`; returns how many.
    #[tracing::instrument(name = "db.export_expire", skip_all, fields(otel.kind = "client", db.operation.name = "export_expire"))]
    pub async fn expire_exports(&self, now_ms: i64) -> Result<u64, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut deleted = 0;
        for table in ["export_chunk", "export_output"] {
            let mut sql = Sql::new(backend);
            sql.push("DELETE FROM ")
                .push(table)
                .push(" WHERE job_id IN (SELECT id FROM export_job WHERE expires IS NOT NULL AND expires < ")
                .bind(now_ms)
                .push(")");
            txn.execute(sql.statement()).await?;
        }
        let mut sql = Sql::new(backend);
        sql.push("DELETE FROM export_job WHERE expires IS NOT NULL AND expires < ").bind(now_ms);
        deleted += txn.execute(sql.statement()).await?.rows_affected();
        Ok(deleted)
    }
}

async fn delete_output(txn: &impl ConnectionTrait, id: &str) -> Result<(), StoreError> {
    for table in ["export_chunk", "export_output"] {
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("DELETE FROM ").push(table).push(" WHERE job_id = ").bind(id.to_owned());
        txn.execute(sql.statement()).await?;
    }
    Ok(())
}

impl Store {
    /// A job, if it exists.
    #[tracing::instrument(name = "db.export_job", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "export_job"))]
    pub async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT ").push(JOB_COLUMNS).push(" FROM export_job WHERE id = ").bind(id.to_owned());
        self.reader.query_one(sql.statement()).await?.as_ref().map(job).transpose()
    }

    /// A job's files, in order.
    #[tracing::instrument(name = "db.export_files", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "export_files"))]
    pub async fn export_files(&self, id: &str) -> Result<Vec<ExportFile>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT file_no, resource_type, count FROM export_output WHERE job_id = ")
            .bind(id.to_owned())
            .push(" ORDER BY file_no");
        let rows = self.reader.query_all(sql.statement()).await?;
        rows.iter()
            .map(|row| {
                Ok(ExportFile {
                    file_no: row.try_get("", "file_no")?,
                    resource_type: row.try_get("", "resource_type")?,
                    count: row.try_get("", "count")?,
                })
            })
            .collect()
    }

    /// The first chunk of a job's file numbered above `after`, with its number; `None` past
    /// the last one.
    #[tracing::instrument(name = "db.export_chunk", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "export_chunk"))]
    pub async fn export_chunk(&self, id: &str, file_no: i64, after: i64) -> Result<Option<(i64, String)>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT chunk_no, body FROM export_chunk WHERE job_id = ")
            .bind(id.to_owned())
            .push(" AND file_no = ")
            .bind(file_no)
            .push(" AND chunk_no > ")
            .bind(after)
            .push(" ORDER BY chunk_no LIMIT 1");
        let Some(row) = self.reader.query_one(sql.statement()).await? else { return Ok(None) };
        Ok(Some((row.try_get("", "chunk_no")?, row.try_get("", "body")?)))
    }

    /// Whether a running job waits for a replica at `now_ms` (a cheap read before a claim).
    #[tracing::instrument(name = "db.export_due", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "export_due"))]
    pub async fn export_due(&self, now_ms: i64) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT id FROM export_job WHERE (status = ")
            .bind(ExportStatus::Running.code())
            .push(" AND (lease_until IS NULL OR lease_until <= ")
            .bind(now_ms)
            .push(")) OR (expires IS NOT NULL AND expires < ")
            .bind(now_ms)
            .push(") LIMIT 1");
        Ok(self.reader.query_one(sql.statement()).await?.is_some())
    }

    /// The next page of an export of `ty`: current resources matching `request` (its clauses
    /// only) with an id after `after`, in id order, at most `count`. A keyset walk over the
    /// primary key, so each page costs the same however far the export has got.
    #[tracing::instrument(name = "db.export_page", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "export_page", fhir.resource_type = %ty))]
    pub async fn export_page(
        &self,
        ty: ResourceType,
        request: &SearchRequest,
        after: Option<&str>,
        count: u64,
    ) -> Result<Vec<StoredVersion>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT r.id, r.version_id, r.last_updated, r.body FROM resources r WHERE ");
        filter(&mut sql, ty, request, "r", &mut 0);
        if let Some(after) = after {
            sql.push(" AND r.id > ").bind(after.to_owned());
        }
        sql.push(" ORDER BY r.id LIMIT ").bind(i64::try_from(count).unwrap_or(i64::MAX));
        let rows = self.reader.query_all(sql.statement()).await?;
        rows.iter().map(|row| version(ty, row)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn job(id: &str) -> ExportJob {
        ExportJob {
            id: id.into(),
            owner: "app".into(),
            status: ExportStatus::Running,
            request: "http://x/fhir/$export".into(),
            transaction_ms: 1,
            plan: "{}".into(),
            created_ms: 1,
            expires_ms: None,
            progress: 0,
            error: None,
        }
    }

    fn chunk(id: &str, owner: &str, lines: &str) -> ExportChunk {
        ExportChunk {
            job_id: id.into(),
            lease_owner: owner.into(),
            lease_until_ms: 1_000,
            file_no: 1,
            resource_type: ResourceType::Task,
            lines: lines.into(),
            count: 1,
        }
    }

    async fn run<T: Send + 'static>(store: &Store, work: crate::tx::TxWork<T, StoreError>) -> T {
        store.transaction(work).await.expect("transaction")
    }

    #[tokio::test]
    async fn a_job_is_written_under_its_lease_taken_over_from_its_start_after_it_and_stops_when_cancelled() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "export_lease").await;
        let created = run(&store, Box::new(|tx| Box::pin(async move { tx.create_export(&job("j1"), 1).await }))).await;
        assert!(created);
        let refused = run(&store, Box::new(|tx| Box::pin(async move { tx.create_export(&job("j2"), 1).await }))).await;
        assert!(!refused, "one running job per owner at most here");

        // Replica a claims it (lease until 1,000) and writes a chunk.
        let claimed = run(&store, Box::new(|tx| Box::pin(async move { tx.claim_export(10, 1_000, "a").await }))).await;
        assert_eq!(claimed.map(|j| j.id), Some("j1".to_owned()));
        let none = run(&store, Box::new(|tx| Box::pin(async move { tx.claim_export(500, 1_500, "b").await }))).await;
        assert_eq!(none, None, "under a live lease");
        assert!(
            run(
                &store,
                Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "a", "{\"n\":1}\n")).await }))
            )
            .await
        );

        // The lease expires: b takes the job over, and a's pages are gone; a may write no more.
        let taken = run(&store, Box::new(|tx| Box::pin(async move { tx.claim_export(2_000, 3_000, "b").await }))).await;
        assert_eq!(taken.map(|j| j.progress), Some(0));
        assert_eq!(store.export_chunk("j1", 1, 0).await.expect("chunk"), None, "written again from its start");
        assert!(
            !run(
                &store,
                Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "a", "{\"n\":2}\n")).await }))
            )
            .await
        );
        assert!(
            run(
                &store,
                Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "b", "{\"n\":3}\n")).await }))
            )
            .await
        );
        assert!(
            run(
                &store,
                Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "b", "{\"n\":4}\n")).await }))
            )
            .await
        );
        let first = store.export_chunk("j1", 1, 0).await.expect("chunk").expect("one");
        assert_eq!(first.1, "{\"n\":3}\n");
        let second = store.export_chunk("j1", 1, first.0).await.expect("chunk").expect("two");
        assert_eq!(second.1, "{\"n\":4}\n");
        assert_eq!(store.export_files("j1").await.expect("files")[0].count, 2);

        // Cancelled: deleted with its files, and its replica writes nothing more.
        assert!(run(&store, Box::new(|tx| Box::pin(async move { tx.delete_export("j1").await }))).await);
        assert!(
            !run(
                &store,
                Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "b", "{\"n\":5}\n")).await }))
            )
            .await
        );
        assert_eq!(store.export_chunk("j1", 1, 0).await.expect("chunk"), None);
        assert_eq!(store.export_job("j1").await.expect("job"), None);
    }

    #[tokio::test]
    async fn a_finished_job_is_kept_until_it_expires() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = test_store(&dir, "export_expiry").await;
        run(&store, Box::new(|tx| Box::pin(async move { tx.create_export(&job("j1"), 5).await }))).await;
        run(&store, Box::new(|tx| Box::pin(async move { tx.claim_export(10, 1_000, "a").await }))).await;
        run(&store, Box::new(|tx| Box::pin(async move { tx.append_export(&chunk("j1", "a", "{}\n")).await }))).await;
        let done = run(
            &store,
            Box::new(|tx| Box::pin(async move { tx.finish_export("j1", "a", ExportStatus::Done, 5_000, None).await })),
        )
        .await;
        assert!(done);
        assert!(!store.export_due(4_000).await.expect("due"), "nothing to run or delete yet");
        assert_eq!(run(&store, Box::new(|tx| Box::pin(async move { tx.expire_exports(4_000).await }))).await, 0);
        assert!(store.export_due(6_000).await.expect("due"), "expired");
        assert_eq!(run(&store, Box::new(|tx| Box::pin(async move { tx.expire_exports(6_000).await }))).await, 1);
        assert_eq!(store.export_job("j1").await.expect("job"), None);
        assert_eq!(store.export_chunk("j1", 1, 0).await.expect("chunk"), None);
    }
}
