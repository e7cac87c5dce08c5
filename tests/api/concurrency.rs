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

/// Writes committed together share one transaction, each in a savepoint opened with its first
/// write. A transaction Bundle that fails after it wrote (its PUT's If-Match fails after its
/// POST was written) and a write that fails before it writes (If-Match on a missing id) must
/// leave nothing behind, and the writes beside them must all stand.
#[tokio::test]
async fn failed_writes_among_concurrent_ones_leave_nothing_and_take_nothing_with_them() {
    let app = spawn_app().await;
    let writes = (0..48).map(|n| {
        let mut plan = care_plan();
        plan["identifier"] = json!([{ "system": "urn:test:batch", "value": format!("w{n}") }]);
        let (path, body) = match n % 3 {
            // Succeeds.
            0 => ("CarePlan".to_owned(), plan),
            // Fails after writing: the POST entry is processed before the PUT.
            1 => {
                let mut missing = care_plan();
                missing["id"] = json!(format!("missing-{n}"));
                let bundle = json!({
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        { "resource": plan, "request": { "method": "POST", "url": "CarePlan" } },
                        {
                            "resource": missing,
                            "request": { "method": "PUT", "url": format!("CarePlan/missing-{n}"), "ifMatch": "W/\"3\"" }
                        }
                    ]
                });
                (String::new(), bundle)
            }
            // Fails before writing.
            _ => {
                plan["id"] = json!(format!("absent-{n}"));
                (format!("CarePlan/absent-{n}"), plan)
            }
        };
        let method = if n % 3 == 2 { Method::PUT } else { Method::POST };
        let mut request = app.request(method, &path).header("content-type", "application/fhir+json");
        if n % 3 == 2 {
            request = request.header("if-match", "W/\"2\"");
        }
        async move { (n, request.body(body.to_string()).send().await.expect("sent").status().as_u16()) }
    });
    let statuses = join_all(writes).await;
    for (n, status) in &statuses {
        let expected = match n % 3 {
            0 => 201,
            _ => 412,
        };
        assert_eq!(*status, expected, "write {n}: {statuses:?}");
    }
    for n in 0..48 {
        let found: Value =
            app.get(&format!("CarePlan?identifier=urn:test:batch|w{n}")).await.json().await.expect("JSON");
        let expected = if n % 3 == 0 { 1 } else { 0 };
        assert_eq!(found["total"], expected, "write {n}: {found}");
    }
    for n in (1..48).step_by(3) {
        assert_eq!(app.get(&format!("CarePlan/missing-{n}")).await.status(), 404);
    }
    let all: Value = app.get("CarePlan?_summary=count").await.json().await.expect("JSON");
    assert_eq!(all["total"], 16, "{all}");
}
