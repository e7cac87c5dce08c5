//! SQLite: the audit trail moves to a file of its own, attached to every connection as the
//! schema `audit` (`connect.rs`). Its table, its indexes and its rows are copied as they are
//! (the same `seq`, so paging cursors stay valid), then dropped from the main file; statements
//! that name `audit_event` find it in `audit` from then on. Each step can be run again, so a
//! crash part-way (the two files commit one after the other) is finished by the next start.
//! PostgreSQL keeps the table where it is.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

const TABLE: &str = "audit_event";

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        move_table(manager, "main", "audit").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        move_table(manager, "audit", "main").await
    }
}

/// Move the audit table, its indexes and rows from schema `from` to schema `to` (SQLite only).
async fn move_table(manager: &SchemaManager<'_>, from: &str, to: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let attached = db
        .query_one(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM pragma_database_list WHERE name = 'audit'",
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    if attached == 0 {
        return Err(DbErr::Migration("the audit database is not attached to this connection".into()));
    }
    // The schema names are this file's own constants, never input.
    let definitions = db
        .query_all(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "SELECT type, sql FROM {from}.sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL ORDER BY type DESC"
            ),
            [TABLE.into()],
        ))
        .await?;
    if definitions.is_empty() {
        // Already moved.
        return Ok(());
    }
    let mut table = None;
    let mut indexes = Vec::new();
    for row in &definitions {
        let kind: String = row.try_get("", "type")?;
        let sql: String = row.try_get("", "sql")?;
        let moved = in_schema(&sql, to)
            .ok_or_else(|| DbErr::Migration(format!("an unexpected definition in the audit table: {kind}")))?;
        if kind == "table" {
            table = Some(moved);
        } else {
            indexes.push(moved);
        }
    }
    let table = table.ok_or_else(|| DbErr::Migration("the audit table has no definition".into()))?;
    db.execute_unprepared(&table).await?;
    db.execute_unprepared(&format!("INSERT OR IGNORE INTO {to}.{TABLE} SELECT * FROM {from}.{TABLE}")).await?;
    for index in indexes {
        db.execute_unprepared(&index).await?;
    }
    db.execute_unprepared(&format!("DROP TABLE IF EXISTS {from}.{TABLE}")).await?;
    Ok(())
}

/// `CREATE TABLE "t" …` or `CREATE [UNIQUE] INDEX "i" ON "t" …`, made to create in `schema` if it
/// is not there yet.
fn in_schema(sql: &str, schema: &str) -> Option<String> {
    ["CREATE TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX "]
        .iter()
        .find_map(|head| sql.strip_prefix(head).map(|rest| format!("{head}IF NOT EXISTS {schema}.{rest}")))
}

#[cfg(test)]
mod tests {
    use super::in_schema;

    #[test]
    fn definitions_are_moved_into_the_schema_named() {
        assert_eq!(
            in_schema(r#"CREATE TABLE "audit_event" ( "seq" integer )"#, "audit").as_deref(),
            Some(r#"CREATE TABLE IF NOT EXISTS audit."audit_event" ( "seq" integer )"#)
        );
        assert_eq!(
            in_schema(r#"CREATE INDEX "audit_event_patient" ON "audit_event" ("patient")"#, "main").as_deref(),
            Some(r#"CREATE INDEX IF NOT EXISTS main."audit_event_patient" ON "audit_event" ("patient")"#)
        );
        assert_eq!(in_schema("CREATE VIEW v AS SELECT 1", "audit"), None);
    }
}
