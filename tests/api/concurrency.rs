//! Concurrent writers: If-Match lets exactly one win; without it no version is lost.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{care_plan, spawn_app};

#[tokio::test]
async fn racing_updates_with_the_same_if_match_have_exactly_one_winner() {
    let app = spawn_app().await;
    let created = app.create(&care_plan()).await;
    let id = created["id"].as_str().expect("id").to_owned();

    let attempts = (0..12).map(|n| {
        let mut body = created.clone();
        body["title"] = json!(format!("edit {n}"));
        app.request(Method::PUT, &format!("CarePlan/{id}"))
            .header("content-type", "application/fhir+json")
            .header("if-match", "W/\"1\"")
            .body(body.to_string())
            .send()
    });
    let statuses: Vec<u16> = join_all(attempts).await.into_iter().map(|r| r.expect("sent").status().as_u16()).collect();

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 11, "{statuses:?}");
    let current: Value = app.get(&format!("CarePlan/{id}")).await.json().await.expect("JSON");
    assert_eq!(current["meta"]["versionId"], "2");
}

#[tokio::test]
async fn racing_updates_without_if_match_lose_no_version() {
    let app = spawn_app().await;
    let created = app.create(&care_plan()).await;
    let id = created["id"].as_str().expect("id").to_owned();

    let writes = (0..20).map(|n| {
        let mut body = created.clone();
        body["title"] = json!(format!("edit {n}"));
        app.request(Method::PUT, &format!("CarePlan/{id}"))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
    });
    let statuses: Vec<u16> = join_all(writes).await.into_iter().map(|r| r.expect("sent").status().as_u16()).collect();

    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let current: Value = app.get(&format!("CarePlan/{id}")).await.json().await.expect("JSON");
    assert_eq!(current["meta"]["versionId"], "21");
    assert_eq!(app.history_len(&format!("CarePlan/{id}/_history?_count=100")).await, 21);
}

#[tokio::test]
async fn racing_update_as_create_of_one_new_id_makes_one_resource() {
    let app = spawn_app().await;
    let mut body = care_plan();
    body["id"] = json!("contested");

    let writes = (0..10).map(|_| app.put("CarePlan/contested", &body));
    let statuses: Vec<u16> = join_all(writes).await.into_iter().map(|r| r.status().as_u16()).collect();

    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 9, "{statuses:?}");
    assert_eq!(app.history_len("CarePlan/contested/_history").await, 10);
}
