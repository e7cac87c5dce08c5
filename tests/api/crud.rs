//! Create, read, vread, update (and update-as-create) and logical delete.

use serde_json::{json, Value};

use crate::helpers::{care_plan, header, spawn_app, task};

#[tokio::test]
async fn a_created_resource_reads_back_with_server_meta_and_version_headers() {
    let app = spawn_app().await;

    let response = app.post("Task", &task("requested")).await;

    assert_eq!(response.status(), 201);
    let location = header(&response, "location");
    let etag = header(&response, "etag");
    assert!(!header(&response, "last-modified").is_empty());
    assert_eq!(etag, "W/\"1\"");
    let created: Value = response.json().await.expect("JSON");
    let id = created["id"].as_str().expect("server-assigned id");
    assert_eq!(location, app.url(&format!("Task/{id}/_history/1")));
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"].as_str().is_some_and(|t| t.ends_with('Z')));

    let read = app.get(&format!("Task/{id}")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "etag"), "W/\"1\"");
    assert!(header(&read, "content-type").starts_with("application/fhir+json"));
    let body: Value = read.json().await.expect("JSON");
    assert_eq!(body, created);
}

#[tokio::test]
async fn an_id_in_a_create_body_is_replaced_by_the_servers() {
    let app = spawn_app().await;
    let mut body = task("draft");
    body["id"] = json!("client-chosen");

    let created = app.create(&body).await;

    assert_ne!(created["id"], "client-chosen");
    assert_eq!(app.get("Task/client-chosen").await.status(), 404);
}

#[tokio::test]
async fn client_meta_is_kept_but_version_and_last_updated_belong_to_the_server() {
    let app = spawn_app().await;
    let mut body = care_plan();
    body["meta"] = json!({"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"system": "http://example.org/tags", "code": "pilot"}]});

    let created = app.create(&body).await;

    assert_eq!(created["meta"]["versionId"], "1");
    assert_ne!(created["meta"]["lastUpdated"], "2001-01-01T00:00:00Z");
    assert_eq!(created["meta"]["tag"][0]["code"], "pilot");
}

#[tokio::test]
async fn updates_make_new_versions_and_vread_returns_each() {
    let app = spawn_app().await;
    let created = app.create(&care_plan()).await;
    let id = created["id"].as_str().expect("id");
    let mut next = created.clone();
    next["title"] = json!("Revised plan");

    let response = app.put(&format!("CarePlan/{id}"), &next).await;

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "etag"), "W/\"2\"");
    assert_eq!(header(&response, "location"), app.url(&format!("CarePlan/{id}/_history/2")));
    let v1: Value = app.get(&format!("CarePlan/{id}/_history/1")).await.json().await.expect("JSON");
    let v2: Value = app.get(&format!("CarePlan/{id}/_history/2")).await.json().await.expect("JSON");
    assert_eq!(v1["title"], "Shared care plan");
    assert_eq!(v2["title"], "Revised plan");
    assert_eq!(v2["meta"]["versionId"], "2");
    assert_eq!(app.get(&format!("CarePlan/{id}/_history/3")).await.status(), 404);
    assert_eq!(app.get(&format!("CarePlan/{id}/_history/x")).await.status(), 404);
}

#[tokio::test]
async fn update_as_create_uses_the_clients_id() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["id"] = json!("follow-up-call");

    let response = app.put("Task/follow-up-call", &body).await;

    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "etag"), "W/\"1\"");
    let read: Value = app.get("Task/follow-up-call").await.json().await.expect("JSON");
    assert_eq!(read["id"], "follow-up-call");
    assert_eq!(read["description"], body["description"]);
}

#[tokio::test]
async fn a_deleted_resource_is_gone_but_its_history_remains() {
    let app = spawn_app().await;
    let created = app.create(&task("requested")).await;
    let id = created["id"].as_str().expect("id");

    let deleted = app.delete(&format!("Task/{id}")).await;

    assert_eq!(deleted.status(), 204);
    assert_eq!(header(&deleted, "etag"), "W/\"2\"");
    let gone = app.get(&format!("Task/{id}")).await;
    assert_eq!(gone.status(), 410);
    let outcome: Value = gone.json().await.expect("OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "deleted");
    assert_eq!(app.get(&format!("Task/{id}/_history/1")).await.status(), 200);
    assert_eq!(app.get(&format!("Task/{id}/_history/2")).await.status(), 410);
    let history: Value = app.get(&format!("Task/{id}/_history")).await.json().await.expect("Bundle");
    let entries = history["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    assert_eq!(entries[1]["request"]["method"], "POST");
    // Deleting again changes nothing.
    let again = app.delete(&format!("Task/{id}")).await;
    assert_eq!(again.status(), 204);
    assert_eq!(app.history_len(&format!("Task/{id}/_history")).await, 2);
}

#[tokio::test]
async fn a_deleted_resource_can_be_brought_back_by_update() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["id"] = json!("revived");
    app.put("Task/revived", &body).await;
    app.delete("Task/revived").await;

    let response = app.put("Task/revived", &body).await;

    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "etag"), "W/\"3\"");
    assert_eq!(app.get("Task/revived").await.status(), 200);
}

#[tokio::test]
async fn deleting_or_reading_what_never_existed_is_not_found() {
    let app = spawn_app().await;

    assert_eq!(app.delete("CareTeam/nobody").await.status(), 404);
    assert_eq!(app.get("CareTeam/nobody").await.status(), 404);
    assert_eq!(app.get("CareTeam/nobody/_history").await.status(), 404);
    assert_eq!(app.get("CareTeam/nobody/_history/1").await.status(), 404);
}
