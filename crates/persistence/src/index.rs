//! Writing the search index: the rows of a resource's index values, replaced in the same
//! transaction as the version they describe. A new version rewrites only the parameters whose
//! values changed (`Delta`): an update that changes a Task's status touches its `status` rows
//! and no others.

use std::collections::BTreeMap;

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

/// Append the statements that remove every index row of a resource to a script (`Sql::then`).
fn push_clear(sql: &mut Sql, ty: ResourceType, id: &str) {
    for table in TABLES {
        push_delete(sql, table, ty, id, &[]);
    }
}

/// Append the DELETE of a resource's rows in one index table: those of `params`, or all of
/// them when `params` is empty (by `(resource_type, resource_id, param)` or its prefix).
fn push_delete(sql: &mut Sql, table: &str, ty: ResourceType, id: &str, params: &[&'static str]) {
    sql.then()
        .push("DELETE FROM ")
        .push(table)
        .push(" WHERE resource_type = ")
        .bind(ty.as_str())
        .push(" AND resource_id = ")
        .bind(id);
    if !params.is_empty() {
        sql.push(" AND param IN (").bind_list(params.iter().copied()).push(")");
    }
}

/// What a new version changes in a resource's index rows: the parameters whose rows go, by
/// table, and the entries that come in. Index rows are a function of the stored text
/// (`domain::search::extract`), so the rows of the version replaced are known from its text
/// without reading them; `careplan reindex` rebuilds them all after a change of that function.
#[derive(Debug, PartialEq)]
pub(crate) struct Delta<'a> {
    /// Per table (`TABLES`), the parameters whose rows are removed; `None` when every row of the
    /// resource goes (what the old version indexed is unknown).
    clear: Option<[Vec<&'static str>; 5]>,
    /// The entries inserted.
    pub(crate) insert: Vec<&'a IndexEntry>,
}

impl<'a> Delta<'a> {
    /// From the entries of the version replaced (`None`: unknown, so all rows are replaced) to
    /// `new`. A parameter is rewritten when its values differ in any way, order included;
    /// parameters whose values are the same keep their rows.
    pub(crate) fn between(old: Option<&[IndexEntry]>, new: &'a [IndexEntry]) -> Self {
        let new_rows = || new.iter().filter(|e| !from_columns(e.param));
        let Some(old) = old else {
            return Delta { clear: None, insert: new_rows().collect() };
        };
        // Per parameter: its values before, its values after, and its table.
        let mut params: BTreeMap<&'static str, (Vec<&IndexValue>, Vec<&IndexValue>, usize)> = BTreeMap::new();
        for entry in old.iter().filter(|e| !from_columns(e.param)) {
            params
                .entry(entry.param)
                .or_insert_with(|| (Vec::new(), Vec::new(), table_of(&entry.value)))
                .0
                .push(&entry.value);
        }
        for entry in new_rows() {
            params
                .entry(entry.param)
                .or_insert_with(|| (Vec::new(), Vec::new(), table_of(&entry.value)))
                .1
                .push(&entry.value);
        }
        let mut clear: [Vec<&'static str>; 5] = Default::default();
        for (param, (before, after, table)) in &params {
            if before != after && !before.is_empty() {
                clear[*table].push(param);
            }
        }
        let changed = |param: &str| params.get(param).is_some_and(|(before, after, _)| before != after);
        Delta { clear: Some(clear), insert: new_rows().filter(|e| changed(e.param)).collect() }
    }

    /// Append the statements that remove the rows going to a script (`Sql::then`): one DELETE
    /// per table that loses rows, by `(resource_type, resource_id, param)`.
    pub(crate) fn push_clear(&self, sql: &mut Sql, ty: ResourceType, id: &str) {
        let Some(tables) = &self.clear else {
            push_clear(sql, ty, id);
            return;
        };
        for (table, params) in TABLES.iter().zip(tables) {
            if !params.is_empty() {
                push_delete(sql, table, ty, id, params);
            }
        }
    }
}

/// Insert the index rows of a resource.
pub(crate) async fn insert(
    txn: &DatabaseTransaction,
    ty: ResourceType,
    id: &str,
    entries: &[&IndexEntry],
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
pub(crate) fn push_insert(sql: &mut Sql, ty: ResourceType, id: &str, entries: &[&IndexEntry]) {
    let mut by_table: [Vec<(&str, Vec<Value>)>; 5] = Default::default();
    for entry in entries.iter().filter(|e| !from_columns(e.param)) {
        by_table[table_of(&entry.value)].push((entry.param, columns(&entry.value)));
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

/// The table (in `TABLES`) of one index value.
fn table_of(value: &IndexValue) -> usize {
    match value {
        IndexValue::Token { .. } => 0,
        IndexValue::Reference { .. } => 1,
        IndexValue::Date { .. } => 2,
        IndexValue::String { .. } => 3,
        IndexValue::Uri { .. } => 4,
    }
}

/// The value columns of one index value, in the order of `column_names` for its table.
fn columns(value: &IndexValue) -> Vec<Value> {
    let text = |v: &Option<String>| Value::String(v.clone().map(Box::new));
    match value {
        IndexValue::Token { system, code, text: label, type_system, type_code } => {
            let lowered = label.as_ref().map(|l| l.to_lowercase());
            vec![text(system), text(code), text(&lowered), text(type_system), text(type_code)]
        }
        IndexValue::Reference { target_type, target_id, url, identifier_system, identifier_value } => {
            vec![text(target_type), text(target_id), text(url), text(identifier_system), text(identifier_value)]
        }
        IndexValue::Date { low, high } => vec![Value::BigInt(Some(*low)), Value::BigInt(Some(*high))],
        IndexValue::String { value } => vec![Value::String(Some(Box::new(normalize(value))))],
        IndexValue::Uri { value } => vec![Value::String(Some(Box::new(value.clone())))],
    }
}

/// Strings are searched case-insensitively (http://hl7.org/fhir/R4/search.html#string).
pub(crate) fn normalize(value: &str) -> String {
    value.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(param: &'static str, code: &str) -> IndexEntry {
        let value =
            IndexValue::Token { system: None, code: Some(code.into()), text: None, type_system: None, type_code: None };
        IndexEntry { param, value }
    }

    fn date(param: &'static str, at: i64) -> IndexEntry {
        IndexEntry { param, value: IndexValue::Date { low: at, high: at } }
    }

    fn params(delta: &Delta<'_>) -> Vec<(&'static str, String)> {
        delta.insert.iter().map(|e| (e.param, format!("{:?}", e.value))).collect()
    }

    #[test]
    fn only_changed_parameters_are_cleared_and_inserted() {
        let old = [token("status", "requested"), token("code", "a"), date("period", 1)];
        let new = [token("status", "in-progress"), token("code", "a"), date("period", 1)];
        let delta = Delta::between(Some(&old), &new);
        assert_eq!(delta.clear, Some([vec!["status"], vec![], vec![], vec![], vec![]]));
        assert_eq!(params(&delta), vec![("status", format!("{:?}", new[0].value))]);
    }

    #[test]
    fn the_same_values_change_nothing_and_server_columns_are_never_rows() {
        let old = [token("status", "requested"), date("_lastUpdated", 1)];
        let new = [token("status", "requested"), date("_lastUpdated", 2)];
        let delta = Delta::between(Some(&old), &new);
        assert_eq!(delta.clear, Some(Default::default()));
        assert!(delta.insert.is_empty());
    }

    #[test]
    fn a_parameter_gone_is_cleared_a_new_one_only_inserted_and_order_counts() {
        let old = [token("code", "a"), token("code", "b"), date("period", 1)];
        let new = [token("code", "b"), token("code", "a"), token("status", "ready")];
        let delta = Delta::between(Some(&old), &new);
        assert_eq!(delta.clear, Some([vec!["code"], vec![], vec!["period"], vec![], vec![]]));
        assert_eq!(delta.insert.len(), 3);
    }

    #[test]
    fn unknown_old_rows_replace_everything() {
        let new = [token("status", "ready"), date("_lastUpdated", 2)];
        let delta = Delta::between(None, &new);
        assert_eq!(delta.clear, None);
        assert_eq!(params(&delta).len(), 1);
        let mut sql = Sql::new(sea_orm::DatabaseBackend::Sqlite);
        delta.push_clear(&mut sql, ResourceType::Task, "t1");
        assert_eq!(sql.statement().to_string().matches("DELETE FROM").count(), TABLES.len());
    }
}
