//! Writing the search index: the rows of a resource's index values, replaced in the same
//! transaction as the version they describe.

use domain::search::{IndexEntry, IndexValue};
use domain::ResourceType;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Value};

use crate::sql::Sql;

/// Index tables, as the search SQL names them.
pub(crate) const TABLES: [&str; 5] = ["search_token", "search_reference", "search_date", "search_string", "search_uri"];

/// Index entries per script (`push_insert`): 64 rows of at most 8 values.
pub(crate) const CHUNK: usize = 64;

/// Parameters whose values come from server columns, not the index.
fn from_columns(param: &str) -> bool {
    matches!(param, "_id" | "_lastUpdated")
}

/// Remove the index rows of a resource.
pub(crate) async fn clear(txn: &DatabaseTransaction, ty: ResourceType, id: &str) -> Result<(), DbErr> {
    let mut sql = Sql::new(txn.get_database_backend());
    push_clear(&mut sql, ty, id);
    txn.execute(sql.statement()).await?;
    Ok(())
}

/// Append the statements that remove the index rows of a resource to a script (`Sql::then`).
pub(crate) fn push_clear(sql: &mut Sql, ty: ResourceType, id: &str) {
    for table in TABLES {
        sql.then()
            .push("DELETE FROM ")
            .push(table)
            .push(" WHERE resource_type = ")
            .bind(ty.as_str())
            .push(" AND resource_id = ")
            .bind(id);
    }
}

/// Insert the index rows of a resource.
pub(crate) async fn insert(
    txn: &DatabaseTransaction,
    ty: ResourceType,
    id: &str,
    entries: &[IndexEntry],
) -> Result<(), DbErr> {
    for chunk in entries.chunks(CHUNK) {
        let mut sql = Sql::new(txn.get_database_backend());
        push_insert(&mut sql, ty, id, chunk);
        if !sql.is_empty() {
            txn.execute(sql.statement()).await?;
        }
    }
    Ok(())
}

/// Append the statements that insert the index rows of a resource to a script: one multi-row
/// INSERT per table that gets rows. At most `CHUNK` entries belong in one script (the bound
/// values stay far below both backends' limits); `insert` splits larger sets.
pub(crate) fn push_insert(sql: &mut Sql, ty: ResourceType, id: &str, entries: &[IndexEntry]) {
    let mut by_table: [Vec<(&str, Vec<Value>)>; 5] = Default::default();
    for entry in entries.iter().filter(|e| !from_columns(e.param)) {
        let (table, values) = columns(&entry.value);
        by_table[table].push((entry.param, values));
    }
    for (table, chunk) in by_table.iter().enumerate() {
        if chunk.is_empty() {
            continue;
        }
        sql.then()
            .push("INSERT INTO ")
            .push(TABLES[table])
            .push(" (resource_type, resource_id, param, ")
            .push(column_names(table))
            .push(") VALUES ");
        for (i, (param, values)) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" });
            sql.bind(ty.as_str()).push(", ").bind(id).push(", ").bind(*param);
            for value in values {
                sql.push(", ").bind(value.clone());
            }
            sql.push(")");
        }
    }
}

fn column_names(table: usize) -> &'static str {
    match table {
        0 => "system, code, text, type_system, type_code",
        1 => "target_type, target_id, url, identifier_system, identifier_value",
        2 => "low, high",
        _ => "value",
    }
}

/// The table index and the value columns of one index value.
fn columns(value: &IndexValue) -> (usize, Vec<Value>) {
    let text = |v: &Option<String>| Value::String(v.clone().map(Box::new));
    match value {
        IndexValue::Token { system, code, text: label, type_system, type_code } => {
            let lowered = label.as_ref().map(|l| l.to_lowercase());
            (0, vec![text(system), text(code), text(&lowered), text(type_system), text(type_code)])
        }
        IndexValue::Reference { target_type, target_id, url, identifier_system, identifier_value } => {
            (1, vec![text(target_type), text(target_id), text(url), text(identifier_system), text(identifier_value)])
        }
        IndexValue::Date { low, high } => (2, vec![Value::BigInt(Some(*low)), Value::BigInt(Some(*high))]),
        IndexValue::String { value } => (3, vec![Value::String(Some(Box::new(normalize(value))))]),
        IndexValue::Uri { value } => (4, vec![Value::String(Some(Box::new(value.clone())))]),
    }
}

/// Strings are searched case-insensitively (http://hl7.org/fhir/R4/search.html#string).
pub(crate) fn normalize(value: &str) -> String {
    value.to_lowercase()
}
