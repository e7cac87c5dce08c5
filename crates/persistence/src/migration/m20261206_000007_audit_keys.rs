//! The audit trail's look-ups by patient, agent and entity move from indexes on `audit_event`
//! (which took every appended row at a random place: at 30,000 audited reads a second the
//! index pages dirtied by each batch were most of the server's I/O) to `audit_key`, filled
//! behind the appends in large sorted batches (`Store::index_audit`). `audit_indexed.upto` is
//! the last `seq` whose keys are in `audit_key`; a trail search looks rows after it up directly.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum AuditKey {
    Table,
    Kind,
    Term,
    Seq,
}

#[derive(Iden)]
enum AuditIndexed {
    Table,
    Id,
    Upto,
}

/// The indexes `audit_key` replaces.
const REPLACED: [(&str, &str); 3] =
    [("audit_event_patient", "patient"), ("audit_event_agent", "agent"), ("audit_event_entity", "entity")];

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditKey::Table)
                    .col(ColumnDef::new(AuditKey::Kind).string_len(1).not_null())
                    .col(ColumnDef::new(AuditKey::Term).text().not_null())
                    .col(ColumnDef::new(AuditKey::Seq).big_integer().not_null())
                    .primary_key(Index::create().col(AuditKey::Kind).col(AuditKey::Term).col(AuditKey::Seq))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditIndexed::Table)
                    .col(ColumnDef::new(AuditIndexed::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(AuditIndexed::Upto).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // Every row already stored is indexed now (the same statement the batches use).
        let mut keys = crate::sql::Sql::new(db.get_database_backend());
        keys.push("INSERT INTO audit_key (kind, term, seq) ");
        crate::audit::push_keys(&mut keys, None);
        db.execute(keys.statement()).await?;
        db.execute_unprepared("INSERT INTO audit_indexed (id, upto) SELECT 1, COALESCE(MAX(seq), 0) FROM audit_event")
            .await?;
        for (name, _) in REPLACED {
            manager.drop_index(Index::drop().name(name).table(Alias::new("audit_event")).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in REPLACED {
            manager
                .create_index(
                    Index::create().name(name).table(Alias::new("audit_event")).col(Alias::new(column)).to_owned(),
                )
                .await?;
        }
        manager.drop_table(Table::drop().table(AuditIndexed::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AuditKey::Table).to_owned()).await
    }
}
