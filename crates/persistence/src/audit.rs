//! The audit trail: append batches of audit records and read them back as AuditEvents, newest
//! first, by date, patient, agent and entity. Append-only: nothing here updates or deletes a row.
//!
//! A row holds the searchable columns and `facts`, the rest of the record as tens of bytes of
//! JSON (`domain::audit::AuditRecord::facts`); the AuditEvent is rendered when the trail is read,
//! not on every request. Rows written before migration 6 hold the rendered text in `body`.

use std::sync::Arc;

use domain::audit::{AuditRecord, Columns};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, QueryResult};

use crate::error::StoreError;
use crate::sql::Sql;
use crate::store::Store;

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

/// The columns a read needs to render a record.
const SELECTED: &str = "seq, id, recorded, patient, client, entity, action, facts, body";

impl Store {
    /// Append `rows` in one transaction (on SQLite through the audit file's own writer, so a
    /// batch never waits behind resource writes, nor they behind it).
    #[tracing::instrument(name = "db.audit_append", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_append"))]
    pub async fn append_audit(&self, rows: impl Into<Arc<[AuditRow]>>) -> Result<(), StoreError> {
        let rows = rows.into();
        if rows.is_empty() {
            return Ok(());
        }
        self.audit.write(Box::new(move |txn| Box::pin(async move { insert(txn, &rows).await }))).await
    }

    /// The AuditEvent text with this id.
    #[tracing::instrument(name = "db.audit_read", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_read"))]
    pub async fn read_audit(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT ").push(SELECTED).push(" FROM audit_event WHERE id = ").bind(id);
        let row = self.reader.query_one(sql.statement()).await?;
        row.map(|r| rendered(&r)).transpose()
    }

    /// Matching records newest first, at most `query.count + 1` (the extra one tells the
    /// caller that a next page exists).
    #[tracing::instrument(name = "db.audit_search", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "audit_search"))]
    pub async fn search_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT ").push(SELECTED).push(" FROM audit_event WHERE 1 = 1");
        if let Some(from) = query.from_ms {
            sql.push(" AND recorded >= ").bind(from);
        }
        if let Some(to) = query.to_ms {
            sql.push(" AND recorded <= ").bind(to);
        }
        if let Some(patient) = &query.patient {
            sql.push(" AND patient = ").bind(patient.clone());
        }
        if let Some(agent) = &query.agent {
            sql.push(" AND (agent = ").bind(agent.clone()).push(" OR client = ").bind(agent.clone()).push(")");
        }
        if let Some(entity) = &query.entity {
            sql.push(" AND entity = ").bind(entity.clone());
        }
        if let Some(before) = query.before_seq {
            sql.push(" AND seq < ").bind(before);
        }
        sql.push(" ORDER BY seq DESC LIMIT ").bind(i64::try_from(query.count.saturating_add(1)).unwrap_or(i64::MAX));
        let rows = self.reader.query_all(sql.statement()).await?;
        rows.iter().map(|row| Ok(AuditEntry { seq: row.try_get("", "seq")?, body: rendered(row)? })).collect()
    }
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

pub(crate) async fn insert(txn: &DatabaseTransaction, rows: &[AuditRow]) -> Result<(), StoreError> {
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
