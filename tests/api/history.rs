//! History at instance, type and system level, `_since`, and stable keyset paging.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{care_plan, spawn_app, task};

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn paging_visits_every_version_exactly_once_while_others_write() {
    let app = spawn_app().await;
    for n in 0..7 {
        let mut body = task("requested");
        body["description"] = json!(format!("task {n}"));
        app.create(&body).await;
    }

    let mut seen = Vec::new();
    let mut page: Value = app.get("Task/_history?_count=3").await.json().await.expect("Bundle");
    assert_eq!(page["type"], "history");
    loop {
        for entry in entries(&page) {
            seen.push(entry["resource"]["description"].as_str().expect("description").to_owned());
        }
        // A write between pages must not shift what the next page holds.
        app.create(&task("draft")).await;
        let Some(next) = next_link(&page) else { break };
        page = app.client.get(next).send().await.expect("sent").json().await.expect("Bundle");
    }

    let expected: Vec<String> = (0..7).rev().map(|n| format!("task {n}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
}

#[tokio::test]
async fn since_keeps_only_later_versions() {
    let app = spawn_app().await;
    app.create(&task("requested")).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let later = app.create(&task("draft")).await;
    let since = later["meta"]["lastUpdated"].as_str().expect("lastUpdated");

    let bundle: Value = app.get(&format!("Task/_history?_since={since}")).await.json().await.expect("Bundle");

    let found = entries(&bundle);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["resource"]["id"], later["id"]);
}

#[tokio::test]
async fn system_history_spans_every_type_and_type_history_only_its_own() {
    let app = spawn_app().await;
    app.create(&task("requested")).await;
    app.create(&care_plan()).await;
    app.create(&json!({"resourceType": "CareTeam", "status": "active", "name": "Complex care team"})).await;

    let system: Value = app.get("_history").await.json().await.expect("Bundle");
    let types: HashSet<String> = entries(&system)
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected = ["Task", "CarePlan", "CareTeam", "Provenance"].map(str::to_owned);
    assert_eq!(types, HashSet::from(expected), "each write is recorded with its Provenance");

    let plans: Value = app.get("CarePlan/_history").await.json().await.expect("Bundle");
    let entries = entries(&plans);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["request"]["method"], "POST");
    assert_eq!(entries[0]["request"]["url"], "CarePlan");
    assert_eq!(entries[0]["response"]["etag"], "W/\"1\"");
    assert!(entries[0]["fullUrl"].as_str().is_some_and(|u| u.starts_with(&app.base)));
}

#[tokio::test]
async fn count_is_capped_by_configuration() {
    let app = crate::helpers::spawn_with(|s| s.max_count = 2).await;
    for _ in 0..3 {
        app.create(&task("requested")).await;
    }

    let bundle: Value = app.get("_history?_count=50").await.json().await.expect("Bundle");

    assert_eq!(entries(&bundle).len(), 2);
    assert!(next_link(&bundle).is_some());
}
