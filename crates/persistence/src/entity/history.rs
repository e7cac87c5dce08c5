//! `resource_history`: every version of every resource, in write order (`seq`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "resource_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub seq: i64,
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// Milliseconds since the Unix epoch.
    pub last_updated: i64,
    /// The HTTP method that made the version: POST, PUT or DELETE.
    pub method: String,
    pub deleted: bool,
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
