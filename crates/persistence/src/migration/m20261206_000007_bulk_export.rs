//! FHIR Bulk Data export: the jobs (what was asked, by whom, its state and lease) and their
//! NDJSON output, kept in the database as chunks of lines on both backends (`export.rs`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum ExportJob {
    Table,
    Id,
    Owner,
    Status,
    Request,
    TransactionTime,
    Plan,
    Created,
    Expires,
    Progress,
    Error,
    LeaseUntil,
    LeaseOwner,
}

#[derive(Iden)]
enum ExportOutput {
    Table,
    JobId,
    FileNo,
    ResourceType,
    Count,
}

#[derive(Iden)]
enum ExportChunk {
    Table,
    JobId,
    FileNo,
    ChunkNo,
    Body,
}

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ExportJob as J;
        manager
            .create_table(
                Table::create()
                    .table(J::Table)
                    .col(ColumnDef::new(J::Id).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(J::Owner).text().not_null())
                    .col(ColumnDef::new(J::Status).string_len(16).not_null())
                    .col(ColumnDef::new(J::Request).text().not_null())
                    .col(ColumnDef::new(J::TransactionTime).big_integer().not_null())
                    .col(ColumnDef::new(J::Plan).text().not_null())
                    .col(ColumnDef::new(J::Created).big_integer().not_null())
                    .col(ColumnDef::new(J::Expires).big_integer().null())
                    .col(ColumnDef::new(J::Progress).big_integer().not_null().default(0))
                    .col(ColumnDef::new(J::Error).text().null())
                    .col(ColumnDef::new(J::LeaseUntil).big_integer().null())
                    .col(ColumnDef::new(J::LeaseOwner).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("export_job_owner").table(J::Table).col(J::Owner).col(J::Status).to_owned(),
            )
            .await?;
        use ExportOutput as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .col(ColumnDef::new(O::JobId).string_len(64).not_null())
                    .col(ColumnDef::new(O::FileNo).big_integer().not_null())
                    .col(ColumnDef::new(O::ResourceType).string_len(32).not_null())
                    .col(ColumnDef::new(O::Count).big_integer().not_null())
                    .primary_key(Index::create().col(O::JobId).col(O::FileNo))
                    .to_owned(),
            )
            .await?;
        use ExportChunk as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(ColumnDef::new(C::JobId).string_len(64).not_null())
                    .col(ColumnDef::new(C::FileNo).big_integer().not_null())
                    .col(ColumnDef::new(C::ChunkNo).big_integer().not_null())
                    .col(ColumnDef::new(C::Body).text().not_null())
                    .primary_key(Index::create().col(C::JobId).col(C::FileNo).col(C::ChunkNo))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ExportChunk::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ExportOutput::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ExportJob::Table).to_owned()).await
    }
}
