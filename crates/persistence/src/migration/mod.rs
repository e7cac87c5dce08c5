//! Schema as code: one set of migrations serves SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m20261124_000001_resources;
mod m20261124_000002_search_index;
mod m20261124_000003_audit;
mod m20261124_000004_subscriptions;
mod m20261124_000005_index_by_resource_param;
mod m20261205_000006_compact_audit;
mod m20261206_000007_bulk_export;
mod m20261207_000008_audit_file;
mod m20261207_000009_covering_lookups;

/// Every migration, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_resources::Migration),
            Box::new(m20261124_000002_search_index::Migration),
            Box::new(m20261124_000003_audit::Migration),
            Box::new(m20261124_000004_subscriptions::Migration),
            Box::new(m20261124_000005_index_by_resource_param::Migration),
            Box::new(m20261205_000006_compact_audit::Migration),
            Box::new(m20261206_000007_bulk_export::Migration),
            Box::new(m20261207_000008_audit_file::Migration),
            Box::new(m20261207_000009_covering_lookups::Migration),
        ]
    }
}
