//! Bad input gets a 4xx OperationOutcome naming what and where, and nothing is stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, spawn_app, spawn_with};

/// One bad request: what is sent and the answer expected.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    body: String,
    status: u16,
    code: &'static str,
    expression: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Value,
    status: u16,
    code: &'static str,
    expression: Option<&'static str>,
) -> Case {
    Case { name, method, path, body: body.to_string(), status, code, expression }
}

fn cases() -> Vec<Case> {
    let task = json!({"resourceType": "Task", "id": "t1", "status": "requested", "intent": "order"});
    let with = |extra: Value| {
        let mut body = task.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    vec![
        Case {
            name: "malformed JSON",
            method: Method::POST,
            path: "Task",
            body: "{\"resourceType\": \"Task\",".into(),
            status: 400,
            code: "structure",
            expression: None,
        },
        Case {
            name: "empty body",
            method: Method::POST,
            path: "Task",
            body: String::new(),
            status: 400,
            code: "required",
            expression: None,
        },
        case("an array, not a resource", Method::POST, "Task", json!([task.clone()]), 400, "structure", None),
        case(
            "resourceType of another endpoint",
            Method::POST,
            "Task",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"}}),
            400,
            "invalid",
            Some("resourceType"),
        ),
        case(
            "resourceType missing",
            Method::POST,
            "Task",
            json!({"status": "requested", "intent": "order"}),
            400,
            "required",
            Some("resourceType"),
        ),
        case("id in body differs from URL", Method::PUT, "Task/t2", task.clone(), 400, "invalid", Some("Task.id")),
        case(
            "id missing from an update",
            Method::PUT,
            "Task/t1",
            json!({"resourceType": "Task", "status": "requested", "intent": "order"}),
            400,
            "required",
            Some("Task.id"),
        ),
        case(
            "invalid id in URL",
            Method::PUT,
            "Task/bad_id",
            with(json!({"id": "bad_id"})),
            400,
            "value",
            Some("Task.id"),
        ),
        case(
            "invalid code",
            Method::POST,
            "Task",
            with(json!({"status": "bogus"})),
            400,
            "code-invalid",
            Some("Task.status"),
        ),
        case(
            "invalid nested code",
            Method::POST,
            "CarePlan",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"}, "activity": [{"detail": {"status": "sleeping"}}]}),
            400,
            "code-invalid",
            Some("CarePlan.activity[0].detail.status"),
        ),
        case(
            "missing required element",
            Method::POST,
            "Task",
            json!({"resourceType": "Task", "intent": "order"}),
            400,
            "required",
            Some("Task.status"),
        ),
        case(
            "missing required subject",
            Method::POST,
            "CarePlan",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan"}),
            400,
            "required",
            Some("CarePlan.subject"),
        ),
        case(
            "unknown top-level element",
            Method::POST,
            "Task",
            with(json!({"priority": "routine", "urgency": "high"})),
            400,
            "structure",
            Some("Task.urgency"),
        ),
        case(
            "unknown nested element",
            Method::POST,
            "Task",
            with(json!({"note": [{"text": "call", "mood": "calm"}]})),
            400,
            "structure",
            Some("Task.note[0].mood"),
        ),
        case("empty array", Method::POST, "Task", with(json!({"note": []})), 400, "structure", Some("Task.note")),
        case(
            "null value",
            Method::POST,
            "Task",
            with(json!({"description": null})),
            400,
            "structure",
            Some("Task.description"),
        ),
        case(
            "wrong JSON type",
            Method::POST,
            "Task",
            with(json!({"description": 7})),
            400,
            "value",
            Some("Task.description"),
        ),
        case(
            "invalid date",
            Method::POST,
            "Task",
            with(json!({"authoredOn": "2026-13-45"})),
            400,
            "value",
            Some("Task.authoredOn"),
        ),
        case(
            "unknown resource type",
            Method::POST,
            "Patient",
            json!({"resourceType": "Patient"}),
            404,
            "not-found",
            None,
        ),
        case("unknown resource type read", Method::GET, "Observation/1", json!({}), 404, "not-found", None),
        case("method not allowed", Method::POST, "Task/t1", json!({}), 405, "not-supported", None),
        case("_count not a number", Method::GET, "Task/_history?_count=ten", json!({}), 400, "value", Some("_count")),
        case(
            "_since not an instant",
            Method::GET,
            "_history?_since=last-tuesday",
            json!({}),
            400,
            "value",
            Some("_since"),
        ),
        // Control characters: FHIR strings may not hold them, and PostgreSQL's text refuses NUL.
        case(
            "NUL in a string",
            Method::POST,
            "Task",
            with(json!({"description": "a\u{0}b"})),
            400,
            "value",
            Some("Task.description"),
        ),
        case(
            "escape in a nested string",
            Method::POST,
            "Task",
            with(json!({"identifier": [{"system": "urn:x", "value": "\u{1b}[31m"}]})),
            400,
            "value",
            Some("Task.identifier[0].value"),
        ),
        case("NUL in an id", Method::GET, "Task/a%00b", json!({}), 400, "value", Some("path")),
        case("NUL in a search value", Method::GET, "Task?identifier=%00", json!({}), 400, "value", Some("identifier")),
        case("NUL in an _id", Method::GET, "Task?_id=x%00", json!({}), 400, "value", Some("_id")),
        case("NUL in an audit search", Method::GET, "AuditEvent?patient=%00", json!({}), 400, "value", Some("patient")),
        case(
            "NUL in a transaction entry's criteria",
            Method::POST,
            "",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
                "request": {"method": "DELETE", "url": "Task?identifier=urn:x|\u{0}"}}]}),
            400,
            "value",
            None,
        ),
    ]
}

#[tokio::test]
async fn control_characters_in_bundle_entries_get_an_answer_not_a_server_error() {
    let app = spawn_app().await;
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Task/a\u{0}b"}},
        {"request": {"method": "GET", "url": "Task?identifier=\u{0}"}},
        {"request": {"method": "GET", "url": "Task/ok"}},
    ]});

    let response = app.send(Method::POST, "", bundle.to_string()).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    let statuses: Vec<&str> =
        body["entry"].as_array().expect("entries").iter().filter_map(|e| e["response"]["status"].as_str()).collect();
    assert_eq!(statuses.len(), 3, "{body}");
    assert!(statuses[0].starts_with("400") || statuses[0].starts_with("404"), "{body}");
    assert!(statuses[1].starts_with("400"), "{body}");
    assert!(statuses[2].starts_with("404"), "{body}");
}

#[tokio::test]
async fn every_bad_request_gets_an_operation_outcome_and_stores_nothing() {
    let app = spawn_app().await;

    for case in cases() {
        let response = app
            .request(case.method.clone(), case.path)
            .header("content-type", "application/fhir+json")
            .body(case.body.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        assert!(
            response.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/fhir+json")),
            "{}",
            case.name
        );
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{}: no JSON body: {e}", case.name));
        assert_outcome(&body, case.code, case.expression);
    }

    assert_eq!(app.history_len("_history").await, 0, "nothing was stored");
}

#[tokio::test]
async fn every_problem_in_a_body_is_reported_at_once() {
    let app = spawn_app().await;
    let body = json!({"resourceType": "Task", "status": "requested", "intent": "order", "colour": "red", "note": [{"text": "x", "size": 1}]});

    let response = app.post("Task", &body).await;

    assert_eq!(response.status(), 400);
    let outcome: Value = response.json().await.expect("JSON");
    assert_outcome(&outcome, "structure", Some("Task.colour"));
    assert_outcome(&outcome, "structure", Some("Task.note[0].size"));
    // serde_json's preserve_order keeps the server's member order; the snapshot has maps sorted.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(outcome);
    });
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_is_not_stored() {
    let app = spawn_with(|s| s.max_body_bytes = 2048).await;
    let mut body = json!({"resourceType": "Task", "status": "requested", "intent": "order"});
    body["description"] = json!("x".repeat(4096));

    let response = app.post("Task", &body).await;

    assert_eq!(response.status(), 413);
    assert_outcome(&response.json().await.expect("OperationOutcome"), "too-long", None);
    body["description"] = json!("short enough");
    assert_eq!(app.post("Task", &body).await.status(), 201);
    assert_eq!(app.history_len("Task/_history").await, 1);
}

#[tokio::test]
async fn the_default_body_limit_is_ten_mebibytes() {
    let app = spawn_app().await;
    let mut body = json!({"resourceType": "Task", "status": "requested", "intent": "order"});
    body["description"] = json!("x".repeat(10 * 1024 * 1024));

    let response = app.post("Task", &body).await;

    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn error_bodies_keep_one_shape() {
    let app = spawn_app().await;

    let not_found: Value = app.get("Task/missing").await.json().await.expect("JSON");
    let unknown_type: Value = app.get("Patient/1").await.json().await.expect("JSON");
    let bad_code: Value = app
        .post("Task", &json!({"resourceType": "Task", "status": "bogus", "intent": "order"}))
        .await
        .json()
        .await
        .expect("JSON");

    // serde_json's preserve_order keeps the server's member order; the snapshots have maps sorted.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("not_found", not_found);
        insta::assert_json_snapshot!("unknown_type", unknown_type);
        insta::assert_json_snapshot!("bad_code", bad_code);
    });
}
