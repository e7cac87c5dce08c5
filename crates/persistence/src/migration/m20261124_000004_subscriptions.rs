//! Topic-based subscriptions: the delivery state of each Subscription and the outbox of its
//! numbered events, written in the same transaction as the change that caused them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(Iden)]
enum SubscriptionState {
    Table,
    Id,
    Topic,
    Filters,
    Status,
    Endpoint,
    Content,
    Headers,
    HeartbeatMs,
    TimeoutMs,
    MaxCount,
    Patient,
    Scopes,
    EventsSinceStart,
    DeliveredThrough,
    Failures,
    NextAttempt,
    LastSent,
    LeaseUntil,
    LeaseOwner,
}

#[derive(Iden)]
enum SubscriptionEvent {
    Table,
    SubscriptionId,
    EventNumber,
    Recorded,
    FocusType,
    FocusId,
    FocusVersion,
}

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use SubscriptionState as S;
        manager
            .create_table(
                Table::create()
                    .table(S::Table)
                    .col(ColumnDef::new(S::Id).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(S::Topic).text().not_null())
                    .col(ColumnDef::new(S::Filters).text().not_null())
                    .col(ColumnDef::new(S::Status).string_len(16).not_null())
                    .col(ColumnDef::new(S::Endpoint).text().not_null())
                    .col(ColumnDef::new(S::Content).string_len(16).not_null())
                    .col(ColumnDef::new(S::Headers).text().not_null())
                    .col(ColumnDef::new(S::HeartbeatMs).big_integer().null())
                    .col(ColumnDef::new(S::TimeoutMs).big_integer().null())
                    .col(ColumnDef::new(S::MaxCount).big_integer().not_null())
                    .col(ColumnDef::new(S::Patient).string_len(64).null())
                    .col(ColumnDef::new(S::Scopes).text().null())
                    .col(ColumnDef::new(S::EventsSinceStart).big_integer().not_null().default(0))
                    .col(ColumnDef::new(S::DeliveredThrough).big_integer().not_null().default(0))
                    .col(ColumnDef::new(S::Failures).big_integer().not_null().default(0))
                    .col(ColumnDef::new(S::NextAttempt).big_integer().not_null())
                    .col(ColumnDef::new(S::LastSent).big_integer().null())
                    .col(ColumnDef::new(S::LeaseUntil).big_integer().null())
                    .col(ColumnDef::new(S::LeaseOwner).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("subscription_state_due").table(S::Table).col(S::NextAttempt).to_owned())
            .await?;
        manager
            .create_index(Index::create().name("subscription_state_topic").table(S::Table).col(S::Topic).to_owned())
            .await?;
        use SubscriptionEvent as E;
        manager
            .create_table(
                Table::create()
                    .table(E::Table)
                    .col(ColumnDef::new(E::SubscriptionId).string_len(64).not_null())
                    .col(ColumnDef::new(E::EventNumber).big_integer().not_null())
                    .col(ColumnDef::new(E::Recorded).big_integer().not_null())
                    .col(ColumnDef::new(E::FocusType).string_len(32).not_null())
                    .col(ColumnDef::new(E::FocusId).string_len(64).not_null())
                    .col(ColumnDef::new(E::FocusVersion).big_integer().not_null())
                    .primary_key(Index::create().col(E::SubscriptionId).col(E::EventNumber))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SubscriptionEvent::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(SubscriptionState::Table).to_owned()).await
    }
}
