//! Planner statistics on PostgreSQL when autovacuum is off. The search SQL relies on them: with
//! none (`reltuples` = -1) the planner takes every index look-up for one row and joins 250,000
//! status rows by hash to check 500 candidates (a worklist query: 2/s among 620,000 resources).
//! Where autovacuum runs, it keeps them and this does nothing.

use std::sync::Weak;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::error::StoreError;
use crate::index::TABLES;
use crate::store::Store;

/// How often the tables are looked at.
const EVERY: Duration = Duration::from_secs(10);

/// The tables searches plan over: the current resources and the index tables.
fn searched_tables() -> impl Iterator<Item = &'static str> {
    std::iter::once("resources").chain(TABLES)
}

/// ANALYZE every table searches plan over (`careplan reindex` after rebuilding the index): on
/// PostgreSQL this schema's tables only (a database may hold several), on SQLite the database.
pub(crate) async fn analyze_all(db: &DatabaseConnection) -> Result<(), StoreError> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => format!("ANALYZE {}", searched_tables().collect::<Vec<_>>().join(", ")),
        _ => "ANALYZE".to_owned(),
    };
    db.execute_unprepared(&sql).await?;
    Ok(())
}

impl Store {
    /// ANALYZE each of this schema's resource and index tables that autovacuum's default rule
    /// would analyze now (more than 50 + 10 % of its rows changed since its last analysis, or
    /// never analyzed); returns their names. PostgreSQL only (nothing on SQLite).
    #[tracing::instrument(name = "db.statistics", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "statistics"))]
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, StoreError> {
        if self.backend != crate::connect::Backend::Postgres {
            return Ok(Vec::new());
        }
        refresh(&self.schema).await
    }
}

async fn refresh(db: &DatabaseConnection) -> Result<Vec<String>, StoreError> {
    let names = searched_tables().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT s.relname AS name FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
         WHERE s.schemaname = current_schema() AND s.relname IN ({names}) \
         AND (c.reltuples < 0 OR s.n_mod_since_analyze > 50 + 0.1 * c.reltuples) ORDER BY s.relname"
    );
    let stale: Vec<String> = db
        .query_all(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "name"))
        .collect::<Result<_, _>>()?;
    // Only names of our own tables (the list above) reach the statement.
    let stale: Vec<String> = stale.into_iter().filter(|name| searched_tables().any(|t| t == name)).collect();
    if !stale.is_empty() {
        db.execute_unprepared(&format!("ANALYZE {}", stale.join(", "))).await?;
    }
    Ok(stale)
}

/// Whether PostgreSQL's autovacuum is off.
async fn autovacuum_off(db: &DatabaseConnection) -> bool {
    let row = db.query_one(Statement::from_string(DbBackend::Postgres, "SHOW autovacuum")).await;
    matches!(row, Ok(Some(row)) if row.try_get::<String>("", "autovacuum").is_ok_and(|v| v == "off"))
}

/// Where autovacuum is off, `refresh` every `EVERY` until `alive` can no longer be upgraded
/// (the store is gone).
pub(crate) async fn maintain<T: Send + Sync + 'static>(db: DatabaseConnection, alive: Weak<T>) {
    if !autovacuum_off(&db).await {
        return;
    }
    tracing::info!("PostgreSQL's autovacuum is off: the service keeps its tables' planner statistics");
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() {
            return;
        }
        if let Err(err) = refresh(&db).await {
            tracing::warn!(error = %err, "planner statistics could not be refreshed; retrying");
        }
    }
}
