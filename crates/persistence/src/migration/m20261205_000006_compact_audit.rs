//! The audit trail stores records compactly: `facts` (tens of bytes of JSON beside the
//! searchable columns) instead of the rendered AuditEvent, which is rendered when the trail is
//! read (`domain::audit::AuditRecord::restore`). Rows written before keep their `body`; new
//! rows leave it empty.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum AuditEvent {
    Table,
    Facts,
}

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AuditEvent::Table)
                    .add_column(ColumnDef::new(AuditEvent::Facts).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(AuditEvent::Table).drop_column(AuditEvent::Facts).to_owned()).await
    }
}
