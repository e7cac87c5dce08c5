//! The current-version table and the history table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum Resources {
    Table,
    ResourceType,
    Id,
    VersionId,
    LastUpdated,
    Deleted,
    Body,
}

#[derive(Iden)]
enum ResourceHistory {
    Table,
    Seq,
    ResourceType,
    Id,
    VersionId,
    LastUpdated,
    Method,
    Deleted,
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
                    .table(Resources::Table)
                    .col(ColumnDef::new(Resources::ResourceType).string_len(32).not_null())
                    .col(ColumnDef::new(Resources::Id).string_len(64).not_null())
                    .col(ColumnDef::new(Resources::VersionId).big_integer().not_null())
                    .col(ColumnDef::new(Resources::LastUpdated).big_integer().not_null())
                    .col(ColumnDef::new(Resources::Deleted).boolean().not_null())
                    .col(ColumnDef::new(Resources::Body).text().null())
                    .primary_key(Index::create().col(Resources::ResourceType).col(Resources::Id))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ResourceHistory::Table)
                    .col(ColumnDef::new(ResourceHistory::Seq).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(ResourceHistory::ResourceType).string_len(32).not_null())
                    .col(ColumnDef::new(ResourceHistory::Id).string_len(64).not_null())
                    .col(ColumnDef::new(ResourceHistory::VersionId).big_integer().not_null())
                    .col(ColumnDef::new(ResourceHistory::LastUpdated).big_integer().not_null())
                    .col(ColumnDef::new(ResourceHistory::Method).string_len(8).not_null())
                    .col(ColumnDef::new(ResourceHistory::Deleted).boolean().not_null())
                    .col(ColumnDef::new(ResourceHistory::Body).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("resource_history_version")
                    .table(ResourceHistory::Table)
                    .col(ResourceHistory::ResourceType)
                    .col(ResourceHistory::Id)
                    .col(ResourceHistory::VersionId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("resource_history_type_seq")
                    .table(ResourceHistory::Table)
                    .col(ResourceHistory::ResourceType)
                    .col(ResourceHistory::Seq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ResourceHistory::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Resources::Table).to_owned()).await
    }
}
