//! The audit trail: one row per audited request, append-only, with the columns AuditEvent
//! searches use and the rendered AuditEvent text.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum AuditEvent {
    Table,
    Seq,
    Id,
    Recorded,
    Patient,
    Agent,
    Client,
    Entity,
    Action,
    Outcome,
    Body,
}

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvent::Table)
                    .col(ColumnDef::new(AuditEvent::Seq).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(AuditEvent::Id).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(AuditEvent::Recorded).big_integer().not_null())
                    .col(ColumnDef::new(AuditEvent::Patient).string_len(64).null())
                    .col(ColumnDef::new(AuditEvent::Agent).text().null())
                    .col(ColumnDef::new(AuditEvent::Client).text().null())
                    .col(ColumnDef::new(AuditEvent::Entity).text().null())
                    .col(ColumnDef::new(AuditEvent::Action).string_len(1).not_null())
                    .col(ColumnDef::new(AuditEvent::Outcome).integer().not_null())
                    .col(ColumnDef::new(AuditEvent::Body).text().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("audit_event_recorded", AuditEvent::Recorded),
            ("audit_event_patient", AuditEvent::Patient),
            ("audit_event_agent", AuditEvent::Agent),
            ("audit_event_entity", AuditEvent::Entity),
        ] {
            manager.create_index(Index::create().name(name).table(AuditEvent::Table).col(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditEvent::Table).to_owned()).await
    }
}
