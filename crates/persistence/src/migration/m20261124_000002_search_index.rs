//! The search index: one table per parameter type, rows keyed by the resource they index.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// (table, value columns as (name, is_big_integer)), and extra indexes as column lists.
struct IndexTable {
    name: &'static str,
    columns: &'static [(&'static str, bool)],
    lookups: &'static [&'static [&'static str]],
}

const TABLES: [IndexTable; 5] = [
    IndexTable {
        name: "search_token",
        columns: &[("system", false), ("code", false), ("text", false), ("type_system", false), ("type_code", false)],
        lookups: &[&["resource_type", "param", "code"]],
    },
    IndexTable {
        name: "search_reference",
        columns: &[
            ("target_type", false),
            ("target_id", false),
            ("url", false),
            ("identifier_system", false),
            ("identifier_value", false),
        ],
        lookups: &[&["resource_type", "param", "target_id"], &["target_id", "target_type"]],
    },
    IndexTable {
        name: "search_date",
        columns: &[("low", true), ("high", true)],
        lookups: &[&["resource_type", "param", "low"], &["resource_type", "param", "high"]],
    },
    IndexTable {
        name: "search_string",
        columns: &[("value", false)],
        lookups: &[&["resource_type", "param", "value"]],
    },
    IndexTable { name: "search_uri", columns: &[("value", false)], lookups: &[&["resource_type", "param", "value"]] },
];

// sea-orm-migration's trait is declared with an elided SchemaManager lifetime; the impl must match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in &TABLES {
            let mut create = Table::create();
            create
                .table(Alias::new(table.name))
                .col(ColumnDef::new(Alias::new("resource_type")).string_len(32).not_null())
                .col(ColumnDef::new(Alias::new("resource_id")).string_len(64).not_null())
                .col(ColumnDef::new(Alias::new("param")).string_len(64).not_null());
            for (column, big) in table.columns {
                let mut def = ColumnDef::new(Alias::new(*column));
                if *big {
                    def.big_integer().not_null();
                } else {
                    def.text().null();
                }
                create.col(&mut def);
            }
            manager.create_table(create.to_owned()).await?;
            let mut by_resource = Index::create();
            by_resource
                .name(format!("{}_resource", table.name))
                .table(Alias::new(table.name))
                .col(Alias::new("resource_type"))
                .col(Alias::new("resource_id"));
            manager.create_index(by_resource.to_owned()).await?;
            for (n, columns) in table.lookups.iter().enumerate() {
                let mut index = Index::create();
                index.name(format!("{}_lookup_{n}", table.name)).table(Alias::new(table.name));
                for column in *columns {
                    index.col(Alias::new(*column));
                }
                manager.create_index(index.to_owned()).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in &TABLES {
            manager.drop_table(Table::drop().table(Alias::new(table.name)).to_owned()).await?;
        }
        Ok(())
    }
}
