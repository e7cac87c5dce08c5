//! The audit trail: append batches of audit records and read them back as AuditEvents, newest
//! first, by date, patient, agent and entity. Append-only: nothing here updates or deletes a row.
//!
//! A row holds the searchable columns and `facts`, the rest of the record as tens of bytes of
//! JSON (`domain::audit::AuditRecord::facts`); the AuditEvent is rendered when the trail is read,
//! not on every request. Rows written before migration 6 hold the rendered text in `body`.
//!
//! Look-ups by patient, entity and agent go through `audit_key`, filled behind the appends in
//! sorted steps (`Store::index_audit`) rather than by indexes on `audit_event`, which took
//! each appended row at a random place; `audit_indexed.upto` says how far it reaches, and a
//! search checks the rows after that directly.

use domain::audit::{AuditRecord, Columns};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, QueryResult, Statement};

use crate::error::StoreError;
use crate::sql::Sql;
use crate::store::Store;
use crate::writer::Work;

/// One audit record as stored: the searchable columns and the compact rest.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub columns: Columns,
    /// `fhirUser` or subject (searched by `agent=`).
    pub agent: Option<String>,
    pub outcome: u8,
    /// `AuditRecord::facts`.
    pub facts: String,
}

impl AuditRow {
    /// The stored form of `record`.
    pub fn of(record: &AuditRecord) -> Self {
        Self {
            columns: record.columns(),
            agent: record.agent.who().map(str::to_owned),
            outcome: domain::audit::outcome(record.status),
            facts: record.facts(),
        }
    }
}

/// Which audit records to read: every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Recorded at or after / at or before (epoch ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub patient: Option<String>,
    /// Matches the agent (`fhirUser` or subject) or the client id.
    pub agent: Option<String>,
    pub entity: Option<String>,
    /// Only records older than this position (the paging cursor).
    pub before_seq: Option<i64>,
    pub count: u64,
}

/// A stored audit record with its position.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub seq: i64,
    pub body: String,
}

/// Rows per INSERT statement (9 values each: far below both backends' parameter limits).
const CHUNK: usize = 500;

/// Rows whose keys one indexing step moves into `audit_key` (one write transaction each, so
/// resource writes queued behind it wait tens of milliseconds at most).
const INDEX_STEP: i64 = 10_000;

/// The PostgreSQL advisory lock appends share and indexing takes alone: indexing must not pass
/// over a `seq` whose row another replica has not committed yet.
const AUDIT_LOCK: i64 = 0x6175_6469_745f_6b65;

/// The columns a read needs to render a record (of `audit_event e`).
const SELECTED: &str = "e.seq, e.id, e.recorded, e.patient, e.client, e.entity, e.action, e.facts, e.body";

/// Which look-up key drives a trail search: `audit_key.kind` and the value.
fn driver(query: &AuditQuery) -> Option<(&'static str, String)> {
    None.or_else(|| query.patient.clone().map(|v| ("p", v)))
        .or_else(|| query.entity.clone().map(|v| ("e", v)))
        .or_else(|| query.agent.clone().map(|v| ("a", v)))
}

impl Store {
    /// Append `rows` in one transaction (through the writer on SQLite, so audit batches share
    /// the group commit with resource writes). Their look-up keys follow in `index_audit`.
    #[tracing::instrument(name = "db.audit_append", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_append"))]
    pub async fn append_audit(&self, rows: Vec<AuditRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.writer.write(Box::new(move |txn| Box::pin(async move { insert(txn, &rows).await }))).await
    }

    /// Move the look-up keys (patient, entity, agent) of every appended row not yet indexed
    /// into `audit_key`, in sorted steps of `INDEX_STEP` rows, each its own transaction;
    /// returns how many rows were indexed. Searches find rows not yet indexed all the same.
    #[tracing::instrument(name = "db.audit_index", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_index"))]
    pub async fn index_audit(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let step: Work<i64, StoreError> = Box::new(|txn| Box::pin(async move { index_step(txn).await }));
            let indexed = self.writer.write(step).await?;
            total += u64::try_from(indexed).unwrap_or(0);
            if indexed < INDEX_STEP {
                return Ok(total);
            }
        }
    }

    /// The AuditEvent text with this id.
    #[tracing::instrument(name = "db.audit_read", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_read"))]
    pub async fn read_audit(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT ").push(SELECTED).push(" FROM audit_event e WHERE e.id = ").bind(id);
        let row = self.reader.query_one(sql.statement()).await?;
        row.map(|r| rendered(&r)).transpose()
    }

    /// Matching records newest first, at most `query.count + 1` (the extra one tells the
    /// caller that a next page exists). A patient, entity or agent is looked up in
    /// `audit_key` for the rows indexed and checked directly on the rows after them.
    #[tracing::instrument(name = "db.audit_search", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_search"))]
    pub async fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(query.count.saturating_add(1)).unwrap_or(i64::MAX);
        let mut sql = Sql::new(self.reader.get_database_backend());
        match driver(query) {
            None => {
                sql.push("SELECT ").push(SELECTED).push(" FROM audit_event e WHERE 1 = 1");
                push_filters(&mut sql, query);
            }
            Some((kind, term)) => {
                sql.push("SELECT * FROM (SELECT ")
                    .push(SELECTED)
                    .push(" FROM audit_event e WHERE e.seq > (SELECT upto FROM audit_indexed WHERE id = 1)");
                push_filters(&mut sql, query);
                sql.push(" ORDER BY e.seq DESC LIMIT ").bind(limit);
                sql.push(") AS tail UNION ALL SELECT * FROM (SELECT ")
                    .push(SELECTED)
                    .push(" FROM audit_key k JOIN audit_event e ON e.seq = k.seq WHERE k.kind = ");
                sql.bind(kind).push(" AND k.term = ").bind(term);
                if let Some(before) = query.before_seq {
                    sql.push(" AND k.seq < ").bind(before);
                }
                push_filters(&mut sql, query);
                sql.push(" ORDER BY k.seq DESC LIMIT ").bind(limit).push(") AS indexed");
            }
        }
        sql.push(" ORDER BY seq DESC LIMIT ").bind(limit);
        let rows = self.reader.query_all(sql.statement()).await?;
        rows.iter().map(|row| Ok(AuditEntry { seq: row.try_get("", "seq")?, body: rendered(row)? })).collect()
    }
}

/// `AND` a condition per filter of `query` on `audit_event e`.
fn push_filters(sql: &mut Sql, query: &AuditQuery) {
    if let Some(from) = query.from_ms {
        sql.push(" AND e.recorded >= ").bind(from);
    }
    if let Some(to) = query.to_ms {
        sql.push(" AND e.recorded <= ").bind(to);
    }
    if let Some(patient) = &query.patient {
        sql.push(" AND e.patient = ").bind(patient.clone());
    }
    if let Some(agent) = &query.agent {
        sql.push(" AND (e.agent = ").bind(agent.clone()).push(" OR e.client = ").bind(agent.clone()).push(")");
    }
    if let Some(entity) = &query.entity {
        sql.push(" AND e.entity = ").bind(entity.clone());
    }
    if let Some(before) = query.before_seq {
        sql.push(" AND e.seq < ").bind(before);
    }
}

/// `SELECT kind, term, seq` of the look-up keys of the rows with `after < seq <= upto` (every
/// row when `None`), each once, sorted as `audit_key` is so that they go in as one ordered run
/// (patient `p`, entity `e`; agent and client both `a`, as `agent=` matches either).
pub(crate) fn push_keys(sql: &mut Sql, range: Option<(i64, i64)>) {
    sql.push("SELECT kind, term, seq FROM (");
    for (i, (kind, column)) in
        [("p", "patient"), ("e", "entity"), ("a", "agent"), ("a", "client")].into_iter().enumerate()
    {
        if i > 0 {
            sql.push(" UNION ");
        }
        sql.push("SELECT '").push(kind).push("' AS kind, ").push(column).push(" AS term, seq FROM audit_event WHERE ");
        sql.push(column).push(" IS NOT NULL");
        if let Some((after, upto)) = range {
            sql.push(" AND seq > ").bind(after).push(" AND seq <= ").bind(upto);
        }
    }
    sql.push(") AS keys ORDER BY kind, term, seq");
}

/// Index the next `INDEX_STEP` rows at most; returns how many.
async fn index_step(txn: &DatabaseTransaction) -> Result<i64, StoreError> {
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        lock(txn, "pg_advisory_xact_lock").await?;
    }
    let position = txn
        .query_one(Statement::from_string(
            backend,
            "SELECT i.upto AS upto, (SELECT MAX(seq) FROM audit_event) AS last FROM audit_indexed i WHERE i.id = 1",
        ))
        .await?
        .ok_or_else(|| StoreError::Database(DbErr::Custom("audit_indexed has no row".into())))?;
    let after: i64 = position.try_get("", "upto")?;
    let last: Option<i64> = position.try_get("", "last")?;
    let upto = last.unwrap_or(after).min(after.saturating_add(INDEX_STEP));
    if upto <= after {
        return Ok(0);
    }
    let mut sql = Sql::new(backend);
    sql.push("INSERT INTO audit_key (kind, term, seq) ");
    push_keys(&mut sql, Some((after, upto)));
    txn.execute(sql.statement()).await?;
    let mut sql = Sql::new(backend);
    sql.push("UPDATE audit_indexed SET upto = ").bind(upto).push(" WHERE id = 1");
    txn.execute(sql.statement()).await?;
    Ok(upto - after)
}

/// Take the audit advisory lock with `function` (PostgreSQL only).
async fn lock(txn: &DatabaseTransaction, function: &str) -> Result<(), StoreError> {
    let mut sql = Sql::new(DbBackend::Postgres);
    sql.push("SELECT ").push(function).push("(").bind(AUDIT_LOCK).push(")");
    txn.execute(sql.statement()).await?;
    Ok(())
}

/// The AuditEvent text of a stored row: rendered from its columns and facts, or as stored by a
/// version before migration 6.
fn rendered(row: &QueryResult) -> Result<String, StoreError> {
    let Some(facts) = row.try_get::<Option<String>>("", "facts")? else {
        return Ok(row.try_get("", "body")?);
    };
    let columns = Columns {
        id: row.try_get("", "id")?,
        recorded_ms: row.try_get("", "recorded")?,
        action: row.try_get("", "action")?,
        patient: row.try_get("", "patient")?,
        client: row.try_get("", "client")?,
        entity: row.try_get("", "entity")?,
    };
    let record = AuditRecord::restore(columns, &facts)
        .ok_or_else(|| StoreError::Database(DbErr::Custom("an audit record's facts could not be read".into())))?;
    Ok(record.render())
}

async fn insert(txn: &DatabaseTransaction, rows: &[AuditRow]) -> Result<(), StoreError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        lock(txn, "pg_advisory_xact_lock_shared").await?;
    }
    for chunk in rows.chunks(CHUNK) {
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push(
            "INSERT INTO audit_event (id, recorded, patient, agent, client, entity, action, outcome, facts, body) VALUES ",
        );
        for (i, row) in chunk.iter().enumerate() {
            let columns = &row.columns;
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(columns.id.clone())
                .push(", ")
                .bind(columns.recorded_ms)
                .push(", ")
                .bind(columns.patient.clone())
                .push(", ")
                .bind(row.agent.clone())
                .push(", ")
                .bind(columns.client.clone())
                .push(", ")
                .bind(columns.entity.clone())
                .push(", ")
                .bind(columns.action.clone())
                .push(", ")
                .bind(i32::from(row.outcome))
                .push(", ")
                .bind(row.facts.clone())
                .push(", '')");
        }
        txn.execute(sql.statement()).await?;
    }
    Ok(())
}
