//! Content negotiation, conditional reads, If-Match and Prefer.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, care_plan, header, spawn_app, task};

#[tokio::test]
async fn json_is_spoken_and_everything_else_is_refused_with_406() {
    let app = spawn_app().await;
    let id = app.create(&task("draft")).await["id"].as_str().expect("id").to_owned();

    for (format, status) in [
        ("json", 200),
        ("application/fhir+json", 200),
        ("application/fhir%2Bjson", 200),
        ("application/json", 200),
        ("xml", 406),
        ("application/fhir%2Bxml", 406),
        ("turtle", 406),
    ] {
        let response = app.get(&format!("Task/{id}?_format={format}")).await;
        assert_eq!(response.status(), status, "_format={format}");
    }
    for (accept, status) in [
        ("application/fhir+json", 200),
        ("application/json", 200),
        ("*/*", 200),
        ("text/html, application/xhtml+xml, */*;q=0.8", 200),
        ("application/fhir+xml", 406),
        ("text/html", 406),
    ] {
        let response =
            app.client.get(app.url(&format!("Task/{id}"))).header("accept", accept).send().await.expect("sent");
        assert_eq!(response.status(), status, "Accept: {accept}");
        if status == 406 {
            assert_outcome(&response.json().await.expect("OperationOutcome"), "not-supported", None);
        }
    }
}

#[tokio::test]
async fn pretty_output_is_the_same_resource_indented() {
    let app = spawn_app().await;
    let id = app.create(&task("draft")).await["id"].as_str().expect("id").to_owned();

    let compact = app.get(&format!("Task/{id}")).await.text().await.expect("text");
    let pretty = app.get(&format!("Task/{id}?_pretty=true")).await.text().await.expect("text");

    assert!(!compact.contains('\n'));
    assert!(pretty.contains("\n  \"resourceType\": \"Task\""), "{pretty}");
    let a: Value = serde_json::from_str(&compact).expect("JSON");
    let b: Value = serde_json::from_str(&pretty).expect("JSON");
    assert_eq!(a, b);
}

#[tokio::test]
async fn bodies_that_are_not_fhir_json_get_415() {
    let app = spawn_app().await;

    for content_type in ["application/xml", "application/fhir+xml", "text/plain", "application/x-www-form-urlencoded"] {
        let response = app
            .client
            .post(app.url("Task"))
            .header("content-type", content_type)
            .body(task("draft").to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 415, "{content_type}");
        assert_outcome(&response.json().await.expect("OperationOutcome"), "not-supported", None);
    }
    for content_type in ["application/json", "application/fhir+json; charset=utf-8", "application/json+fhir"] {
        let response = app
            .client
            .post(app.url("Task"))
            .header("content-type", content_type)
            .body(task("draft").to_string())
            .send()
            .await;
        assert_eq!(response.expect("sent").status(), 201, "{content_type}");
    }
}

#[tokio::test]
async fn if_match_guards_update_and_delete() {
    let app = spawn_app().await;
    let created = app.create(&care_plan()).await;
    let id = created["id"].as_str().expect("id");
    let path = format!("CarePlan/{id}");

    let stale = app
        .request(Method::PUT, &path)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"7\"")
        .body(created.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(stale.status(), 412);
    assert_outcome(&stale.json().await.expect("OperationOutcome"), "conflict", None);

    let fresh = app
        .request(Method::PUT, &path)
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(created.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(fresh.status(), 200);

    let stale_delete = app.request(Method::DELETE, &path).header("if-match", "W/\"1\"").send().await.expect("sent");
    assert_eq!(stale_delete.status(), 412);
    let delete = app.request(Method::DELETE, &path).header("if-match", "W/\"2\"").send().await.expect("sent");
    assert_eq!(delete.status(), 204);

    let malformed = app.request(Method::DELETE, &path).header("if-match", "yesterday").send().await.expect("sent");
    assert_eq!(malformed.status(), 400);
}

#[tokio::test]
async fn conditional_reads_answer_304_when_nothing_changed() {
    let app = spawn_app().await;
    let created = app.create(&task("draft")).await;
    let path = format!("Task/{}", created["id"].as_str().expect("id"));
    let first = app.get(&path).await;
    let last_modified = header(&first, "last-modified");

    let same = app.request(Method::GET, &path).header("if-none-match", "W/\"1\"").send().await.expect("sent");
    assert_eq!(same.status(), 304);
    assert_eq!(header(&same, "etag"), "W/\"1\"");
    let other = app.request(Method::GET, &path).header("if-none-match", "W/\"2\"").send().await.expect("sent");
    assert_eq!(other.status(), 200);
    let unchanged =
        app.request(Method::GET, &path).header("if-modified-since", &last_modified).send().await.expect("sent");
    assert_eq!(unchanged.status(), 304);
    let old = app
        .request(Method::GET, &path)
        .header("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")
        .send()
        .await
        .expect("sent");
    assert_eq!(old.status(), 200);
}

#[tokio::test]
async fn prefer_return_chooses_the_body_of_a_write() {
    let app = spawn_app().await;

    let minimal = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(task("draft").to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(minimal.status(), 201);
    assert!(!header(&minimal, "location").is_empty());
    assert!(minimal.text().await.expect("text").is_empty());

    let outcome = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(task("draft").to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(outcome.status(), 201);
    let body: Value = outcome.json().await.expect("JSON");
    assert_outcome(&body, "informational", None);

    let representation = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=representation")
        .body(task("draft").to_string())
        .send()
        .await
        .expect("sent");
    let body: Value = representation.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "Task");
    assert_eq!(body["status"], json!("draft"));
}
