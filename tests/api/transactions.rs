//! Transaction and batch Bundles, conditional create, update and delete.

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, care_plan, spawn_app, spawn_with, task, TestApp};

/// A CareTeam, a CarePlan and five Tasks, linked by urn:uuid fullUrls.
fn shared_plan_bundle() -> Value {
    let mut entries = vec![
        json!({"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000001",
               "resource": {"resourceType": "CareTeam", "status": "active", "name": "Complex care team",
                            "subject": {"reference": "Patient/child-1"},
                            "identifier": [{"system": "http://clinic.example/team", "value": "T-1"}]},
               "request": {"method": "POST", "url": "CareTeam"}}),
        json!({"fullUrl": "urn:uuid:11111111-0000-4000-8000-000000000002",
               "resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                            "subject": {"reference": "Patient/child-1"},
                            "careTeam": [{"reference": "urn:uuid:11111111-0000-4000-8000-000000000001"}],
                            "activity": [{"reference": {"reference": "urn:uuid:11111111-0000-4000-8000-000000000003"}}],
                            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">See <a href=\"urn:uuid:11111111-0000-4000-8000-000000000001\">the team</a></div>"}},
               "request": {"method": "POST", "url": "CarePlan"}}),
    ];
    for n in 0..5 {
        entries.push(json!({"fullUrl": format!("urn:uuid:11111111-0000-4000-8000-00000000000{}", n + 3),
            "resource": {"resourceType": "Task", "status": "requested", "intent": "order",
                         "for": {"reference": "Patient/child-1"},
                         "basedOn": [{"reference": "urn:uuid:11111111-0000-4000-8000-000000000002"}],
                         "input": [{"type": {"text": "weight"}, "valueDecimal": 12.50}],
                         "description": format!("follow-up {n}")},
            "request": {"method": "POST", "url": "Task"}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

async fn post_bundle(app: &TestApp, bundle: &Value) -> (u16, Value) {
    post_text(app, bundle.to_string()).await
}

async fn post_text(app: &TestApp, text: String) -> (u16, Value) {
    let response = app.send(Method::POST, "", text).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

async fn total(app: &TestApp, query: &str) -> u64 {
    let bundle: Value = app.get(&format!("{query}&_total=accurate&_count=0")).await.json().await.expect("Bundle");
    bundle["total"].as_u64().expect("total")
}

#[tokio::test]
async fn a_transaction_creates_a_whole_shared_plan_and_rewrites_every_reference() {
    let app = spawn_app().await;
    // serde_json would write 12.50 as 12.5: send the decimal as a client would.
    let text = shared_plan_bundle().to_string().replace("\"valueDecimal\":12.5", "\"valueDecimal\":12.50");

    let (status, response) = post_text(&app, text).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 7);
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
        assert!(entry["response"]["location"].as_str().expect("location").contains("/_history/1"));
        assert!(entry["response"]["lastModified"].is_string());
    }
    let id_of = |i: usize| entries[i]["resource"]["id"].as_str().expect("id").to_owned();
    let (team, plan) = (id_of(0), id_of(1));
    let stored_plan: Value = app.get(&format!("CarePlan/{plan}")).await.json().await.expect("CarePlan");
    assert_eq!(stored_plan["careTeam"][0]["reference"], format!("CareTeam/{team}"));
    assert_eq!(stored_plan["activity"][0]["reference"]["reference"], format!("Task/{}", id_of(2)));
    assert!(stored_plan["text"]["div"].as_str().expect("div").contains(&format!("href=\"CareTeam/{team}\"")));
    for i in 2..7 {
        let text = app.get(&format!("Task/{}", id_of(i))).await.text().await.expect("text");
        assert!(text.contains(&format!("\"basedOn\":[{{\"reference\":\"CarePlan/{plan}\"}}]")), "{text}");
        assert!(text.contains("\"valueDecimal\":12.50"), "decimals are kept as sent: {text}");
        assert!(!text.contains("urn:uuid"), "{text}");
    }
    assert_eq!(total(&app, &format!("Task?based-on=CarePlan/{plan}")).await, 5);
}

#[tokio::test]
async fn a_failing_last_entry_leaves_nothing_behind() {
    let app = spawn_app().await;
    let mut bundle = shared_plan_bundle();
    bundle["entry"][6]["resource"]["status"] = json!("not-a-status");

    let (status, outcome) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 400, "{outcome}");
    assert_outcome(&outcome, "code-invalid", Some("Bundle.entry[6].resource.status"));
    assert!(outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics").contains("Bundle.entry[6]"));
    assert_eq!(total(&app, "Task?patient=child-1").await, 0);
    assert_eq!(total(&app, "CarePlan?patient=child-1").await, 0);
    assert_eq!(total(&app, "CareTeam?patient=child-1").await, 0);
}

#[tokio::test]
async fn a_failing_write_inside_the_transaction_rolls_back_the_writes_before_it() {
    let app = spawn_app().await;
    let existing = app.create(&care_plan()).await;
    let id = existing["id"].as_str().expect("id");
    let mut bundle = shared_plan_bundle();
    // The PUT is written after every POST and fails its If-Match.
    let mut update = existing.clone();
    update["title"] = json!("changed");
    bundle["entry"].as_array_mut().expect("entries").push(json!({
        "resource": update, "request": {"method": "PUT", "url": format!("CarePlan/{id}"), "ifMatch": "W/\"9\""}}));

    let (status, outcome) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 412, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics").contains("Bundle.entry[7]"));
    assert_eq!(total(&app, "Task?patient=child-1").await, 0);
    let current: Value = app.get(&format!("CarePlan/{id}")).await.json().await.expect("CarePlan");
    assert_eq!(current["meta"]["versionId"], "1");
}

#[tokio::test]
async fn conditional_references_and_if_none_exist_resolve_inside_the_transaction() {
    let app = spawn_app().await;
    let mut team = json!({"resourceType": "CareTeam", "status": "active", "subject": {"reference": "Patient/child-2"},
                          "identifier": [{"system": "http://clinic.example/team", "value": "T-2"}]});
    let existing_team = app.create(&team).await;
    team["name"] = json!("not written: the team exists");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:22222222-0000-4000-8000-000000000001", "resource": team,
         "request": {"method": "POST", "url": "CareTeam", "ifNoneExist": "identifier=http://clinic.example/team|T-2"}},
        {"resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                      "subject": {"reference": "Patient/child-2"},
                      "careTeam": [{"reference": "CareTeam?identifier=http://clinic.example/team|T-2"}],
                      "supportingInfo": [{"reference": "urn:uuid:22222222-0000-4000-8000-000000000001"}]},
         "request": {"method": "POST", "url": "CarePlan"}}
    ]});

    let (status, response) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK", "the conditional create found the team");
    let team_ref = format!("CareTeam/{}", existing_team["id"].as_str().expect("id"));
    assert_eq!(response["entry"][1]["resource"]["careTeam"][0]["reference"], team_ref);
    assert_eq!(response["entry"][1]["resource"]["supportingInfo"][0]["reference"], team_ref);
    assert_eq!(total(&app, "CareTeam?patient=child-2").await, 1);
}

#[tokio::test]
async fn a_conditional_reference_matching_several_resources_fails_with_412() {
    let app = spawn_app().await;
    for _ in 0..2 {
        app.create(&json!({"resourceType": "CareTeam", "subject": {"reference": "Patient/p9"},
                           "identifier": [{"system": "s", "value": "dup"}]}))
            .await;
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/p9"},
                      "careTeam": [{"reference": "CareTeam?identifier=s|dup"}]},
         "request": {"method": "POST", "url": "CarePlan"}}]});

    let (status, outcome) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 412, "{outcome}");
    assert_eq!(total(&app, "CarePlan?patient=p9").await, 0);
}

#[tokio::test]
async fn transaction_entries_are_processed_delete_post_put_get() {
    let app = spawn_app().await;
    let doomed = app.create(&task("requested")).await;
    let doomed_id = doomed["id"].as_str().expect("id");
    let mut put = task("accepted");
    put["id"] = json!("fixed-id");
    // Listed GET first and DELETE last: the GET still sees the PUT, the DELETE happens first.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Task/fixed-id"}},
        {"resource": put, "request": {"method": "PUT", "url": "Task/fixed-id"}},
        {"request": {"method": "DELETE", "url": format!("Task/{doomed_id}")}}
    ]});

    let (status, response) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(response["entry"][0]["resource"]["status"], "accepted");
    assert_eq!(response["entry"][1]["response"]["status"], "201 Created");
    assert_eq!(response["entry"][2]["response"]["status"], "204 No Content");
    assert_eq!(app.get(&format!("Task/{doomed_id}")).await.status(), 410);
}

#[tokio::test]
async fn a_batch_carries_out_each_entry_on_its_own() {
    let app = spawn_app().await;
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": task("requested"), "request": {"method": "POST", "url": "Task"}},
        {"resource": {"resourceType": "Task", "status": "bogus", "intent": "order"}, "request": {"method": "POST", "url": "Task"}},
        {"request": {"method": "GET", "url": "Task/missing"}},
        {"resource": care_plan(), "request": {"method": "POST", "url": "CarePlan"}}
    ]});

    let (status, response) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 200, "{response}");
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["201 Created", "400 Bad Request", "404 Not Found", "201 Created"]);
    assert_outcome(
        &response["entry"][1]["response"]["outcome"],
        "code-invalid",
        Some("Bundle.entry[1].resource.status"),
    );
    assert_eq!(total(&app, "Task?patient=p1").await, 1);
}

#[tokio::test]
async fn malformed_bundles_are_refused_with_an_outcome_naming_the_problem() {
    let app = spawn_with(|s| s.max_bundle_entries = 3).await;
    let entry = json!({"resource": task("requested"), "request": {"method": "POST", "url": "Task"}});
    let cases = [
        (json!({"resourceType": "Task", "type": "transaction"}), 400, "invalid", "resourceType"),
        (json!({"resourceType": "Bundle", "type": "searchset"}), 400, "value", "Bundle.type"),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry, entry, entry]}),
            400,
            "too-costly",
            "Bundle.entry",
        ),
        (json!({"resourceType": "Bundle", "type": "transaction", "bogus": 1}), 400, "structure", "Bundle"),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": task("requested")}]}),
            400,
            "required",
            "Bundle.entry[0].request",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "FETCH", "url": "Task"}}]}),
            400,
            "value",
            "Bundle.entry[0].request.method",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "GET", "url": "Patient/1"}}]}),
            400,
            "value",
            "Bundle.entry[0].request.url",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Task"}}]}),
            400,
            "required",
            "Bundle.entry[0].resource",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "DELETE", "url": "Task/x", "ifMatch": "soon"}}]}),
            400,
            "value",
            "Bundle.entry[0].request.ifMatch",
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "PUT", "url": "Task?nonsense=1"}, "resource": task("requested")}]}),
            400,
            "not-supported",
            "nonsense",
        ),
    ];
    for (bundle, expected, code, expression) in cases {
        let (status, outcome) = post_bundle(&app, &bundle).await;
        assert_eq!(status, expected, "{bundle}: {outcome}");
        assert_outcome(&outcome, code, None);
        let expressions = outcome.to_string();
        assert!(expressions.contains(expression), "{bundle}: expected {expression} in {outcome}");
    }
    assert_eq!(total(&app, "Task?patient=p1").await, 0);
}

#[tokio::test]
async fn racing_conditional_creates_with_one_identifier_make_exactly_one_resource() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "http://ehr.example/task", "value": "race-1"}]);

    let attempts = (0..10).map(|n| {
        let request = if n % 2 == 0 {
            app.request(Method::POST, "Task")
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=http://ehr.example/task|race-1")
                .body(body.to_string())
        } else {
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": body, "request": {"method": "POST", "url": "Task",
                 "ifNoneExist": "identifier=http://ehr.example/task|race-1"}}]});
            app.request(Method::POST, "").header("content-type", "application/fhir+json").body(bundle.to_string())
        };
        request.send()
    });
    let statuses: Vec<u16> = join_all(attempts).await.into_iter().map(|r| r.expect("sent").status().as_u16()).collect();

    assert!(statuses.iter().all(|s| *s == 200 || *s == 201), "{statuses:?}");
    assert_eq!(total(&app, "Task?identifier=http://ehr.example/task|race-1").await, 1, "{statuses:?}");
}

#[tokio::test]
async fn conditional_update_creates_updates_or_refuses_by_the_number_of_matches() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "s", "value": "cu-1"}]);

    let created = app.put("Task?identifier=s|cu-1", &body).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.expect("Task")["id"].as_str().expect("id").to_owned();

    body["status"] = json!("accepted");
    let updated = app.put("Task?identifier=s|cu-1", &body).await;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.expect("Task");
    assert_eq!((updated["id"].as_str(), updated["meta"]["versionId"].as_str()), (Some(id.as_str()), Some("2")));

    body["id"] = json!("someone-else");
    let mismatch = app.put("Task?identifier=s|cu-1", &body).await;
    assert_eq!(mismatch.status(), 400);

    let mut twin = task("requested");
    twin["identifier"] = json!([{"system": "s", "value": "cu-1"}]);
    app.create(&twin).await;
    body.as_object_mut().expect("object").remove("id");
    let many = app.put("Task?identifier=s|cu-1", &body).await;
    assert_eq!(many.status(), 412);
    assert_outcome(&many.json().await.expect("outcome"), "conflict", None);

    let no_criteria = app.put("Task", &body).await;
    assert_eq!(no_criteria.status(), 405);
}

#[tokio::test]
async fn conditional_delete_deletes_one_match_and_refuses_several() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "s", "value": "cd-1"}]);
    let one = app.create(&body).await;

    let nothing = app.delete("Task?identifier=s|nothing").await;
    assert_eq!(nothing.status(), 204);
    let deleted = app.delete("Task?identifier=s|cd-1").await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(app.get(&format!("Task/{}", one["id"].as_str().expect("id"))).await.status(), 410);

    body["identifier"] = json!([{"system": "s", "value": "cd-2"}]);
    app.create(&body).await;
    app.create(&body).await;
    assert_eq!(app.delete("Task?identifier=s|cd-2").await.status(), 412);
    assert_eq!(total(&app, "Task?identifier=s|cd-2").await, 2);
}

#[tokio::test]
async fn conditional_delete_of_several_matches_when_configured() {
    let app = spawn_with(|s| s.multiple_delete = true).await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "s", "value": "cd-3"}]);
    for _ in 0..3 {
        app.create(&body).await;
    }

    assert_eq!(app.delete("Task?identifier=s|cd-3").await.status(), 204);
    assert_eq!(total(&app, "Task?identifier=s|cd-3").await, 0);
}

#[tokio::test]
async fn if_none_exist_returns_the_existing_resource_without_writing() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "s", "value": "ine-1"}]);
    let first = app.create(&body).await;

    let again = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "identifier=s|ine-1")
        .body(body.to_string())
        .send()
        .await
        .expect("sent");

    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("Task");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["meta"]["versionId"], "1");
}

async fn patch(app: &TestApp, path: &str, content_type: &str, body: String, if_match: Option<&str>) -> (u16, Value) {
    let mut request = app.request(Method::PATCH, path).header("content-type", content_type).body(body);
    if let Some(version) = if_match {
        request = request.header("if-match", version);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn json_patch_changes_only_what_it_names_and_keeps_the_rest_as_sent() {
    let app = spawn_app().await;
    let text = r#"{"resourceType":"Task","status":"requested","intent":"order","for":{"reference":"Patient/p1"},"input":[{"type":{"text":"dose"},"valueDecimal":1.50}]}"#;
    let created: Value = app.send(Method::POST, "Task", text.into()).await.json().await.expect("Task");
    let id = created["id"].as_str().expect("id");

    let ops = r#"[{"op":"replace","path":"/status","value":"accepted"},{"op":"add","path":"/note","value":[{"text":"called the family"}]}]"#;
    let (status, patched) =
        patch(&app, &format!("Task/{id}"), "application/json-patch+json", ops.into(), Some("W/\"1\"")).await;

    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["meta"]["versionId"], "2");
    let stored = app.get(&format!("Task/{id}")).await.text().await.expect("text");
    assert!(stored.contains(r#""valueDecimal":1.50"#), "{stored}");
    assert!(stored.contains(r#""status":"accepted""#) && stored.contains("called the family"), "{stored}");
    let intent_before_for = stored.find("\"intent\"") < stored.find("\"for\"");
    assert!(intent_before_for, "member order is kept: {stored}");
}

#[tokio::test]
async fn fhirpath_patch_applies_parameters_operations() {
    let app = spawn_app().await;
    let created = app.create(&task("requested")).await;
    let id = created["id"].as_str().expect("id");
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Task.status"},
            {"name": "value", "valueCode": "in-progress"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Task"},
            {"name": "name", "valueString": "businessStatus"}, {"name": "value", "valueCodeableConcept": {"text": "visit booked"}}]}
    ]});

    let (status, patched) =
        patch(&app, &format!("Task/{id}"), "application/fhir+json", parameters.to_string(), None).await;

    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "in-progress");
    assert_eq!(patched["businessStatus"]["text"], "visit booked");
}

#[tokio::test]
async fn bad_patches_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let created = app.create(&task("requested")).await;
    let id = created["id"].as_str().expect("id");
    let path = format!("Task/{id}");
    let json = "application/json-patch+json";
    let cases = [
        (json, r#"{"op":"replace"}"#.to_owned(), 400, "invalid"),
        (json, r#"[{"op":"replace","path":"/status","value":"not-a-status"}]"#.to_owned(), 400, "code-invalid"),
        (json, r#"[{"op":"remove","path":"/priority"}]"#.to_owned(), 422, "processing"),
        (json, r#"[{"op":"test","path":"/status","value":"completed"}]"#.to_owned(), 422, "processing"),
        (json, r#"[{"op":"replace","path":"/id","value":"other"}]"#.to_owned(), 400, "invalid"),
        (json, r#"[{"op":"add","path":"/bogus","value":1}]"#.to_owned(), 400, "structure"),
        ("text/plain", "[]".to_owned(), 415, "not-supported"),
    ];
    for (content_type, body, expected, code) in cases {
        let (status, outcome) = patch(&app, &path, content_type, body.clone(), None).await;
        assert_eq!(status, expected, "{body}: {outcome}");
        assert_outcome(&outcome, code, None);
    }
    let (status, _) = patch(&app, "Task/missing", json, "[]".into(), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        patch(&app, &path, json, r#"[{"op":"replace","path":"/status","value":"accepted"}]"#.into(), Some("W/\"7\""))
            .await;
    assert_eq!(status, 412);
    let current: Value = app.get(&path).await.json().await.expect("Task");
    assert_eq!((current["meta"]["versionId"].as_str(), current["status"].as_str()), (Some("1"), Some("requested")));
}

#[tokio::test]
async fn racing_patches_with_the_same_if_match_have_exactly_one_winner() {
    let app = spawn_app().await;
    let created = app.create(&task("requested")).await;
    let path = format!("Task/{}", created["id"].as_str().expect("id"));

    let attempts = (0..10).map(|n| {
        let ops = json!([{"op": "replace", "path": "/description", "value": format!("edit {n}")}]);
        patch(&app, &path, "application/json-patch+json", ops.to_string(), Some("W/\"1\""))
    });
    let statuses: Vec<u16> = join_all(attempts).await.into_iter().map(|(s, _)| s).collect();

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 412).count(), 9, "{statuses:?}");
}

#[tokio::test]
async fn racing_patches_without_if_match_are_all_applied_in_turn() {
    let app = spawn_app().await;
    let created = app.create(&task("requested")).await;
    let path = format!("Task/{}", created["id"].as_str().expect("id"));

    let attempts = (0..8).map(|n| {
        let ops = json!([{"op": "add", "path": "/note/-", "value": {"text": format!("note {n}")}}]);
        let ops = if n == 0 { json!([{"op": "add", "path": "/note", "value": [{"text": "note 0"}]}]) } else { ops };
        patch(&app, &path, "application/json-patch+json", ops.to_string(), None)
    });
    let statuses: Vec<u16> = join_all(attempts).await.into_iter().map(|(s, _)| s).collect();

    let current: Value = app.get(&path).await.json().await.expect("Task");
    let applied = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(current["meta"]["versionId"], (applied + 1).to_string(), "{statuses:?}");
    assert_eq!(current["note"].as_array().map_or(0, Vec::len), applied, "every applied patch is kept: {current}");
}

#[tokio::test]
async fn patch_entries_work_inside_a_transaction() {
    let app = spawn_app().await;
    let first = app.create(&task("requested")).await["id"].as_str().expect("id").to_owned();
    let second = app.create(&task("requested")).await["id"].as_str().expect("id").to_owned();
    let ops = base64_of(r#"[{"op":"replace","path":"/status","value":"accepted"}]"#);
    // One entry per resource: a transaction may write each resource once (http.html#trules).
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": ops},
         "request": {"method": "PATCH", "url": format!("Task/{first}"), "ifMatch": "W/\"1\""}},
        {"resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Task"},
            {"name": "name", "valueString": "priority"}, {"name": "value", "valueCode": "urgent"}]}]},
         "request": {"method": "PATCH", "url": format!("Task/{second}")}}
    ]});

    let (status, response) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 200, "{response}");
    let first: Value = app.get(&format!("Task/{first}")).await.json().await.expect("Task");
    let second: Value = app.get(&format!("Task/{second}")).await.json().await.expect("Task");
    assert_eq!((first["status"].as_str(), first["meta"]["versionId"].as_str()), (Some("accepted"), Some("2")));
    assert_eq!((second["priority"].as_str(), second["meta"]["versionId"].as_str()), (Some("urgent"), Some("2")));
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Criteria name identifier systems by URL; only the path of an entry's URL says where it goes.
#[tokio::test]
async fn entry_criteria_may_hold_urls_but_an_entry_may_not_point_at_another_server() {
    let app = spawn_app().await;
    let mut body = task("requested");
    body["identifier"] = json!([{"system": "http://ehr.example/task", "value": "U-1"}]);
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": body, "request": {"method": "PUT", "url": "Task?identifier=http://ehr.example/task|U-1"}},
        {"request": {"method": "GET", "url": "Task?identifier=http://ehr.example/task|U-1"}},
        {"request": {"method": "DELETE", "url": "http://elsewhere.example/fhir/Task?identifier=http://ehr.example/task|U-1"}}
    ]});

    let (status, response) = post_bundle(&app, &bundle).await;

    assert_eq!(status, 200, "{response}");
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["response"]["status"].as_str())
        .collect();
    assert_eq!(statuses, ["201 Created", "200 OK", "400 Bad Request"], "{response}");
    assert_eq!(response["entry"][1]["resource"]["total"], 1, "{response}");
    assert_eq!(total(&app, "Task?identifier=http://ehr.example/task|U-1").await, 1);
}

#[tokio::test]
async fn criteria_of_result_parameters_alone_select_nothing() {
    let app = spawn_app().await;
    let only = app.create(&task("requested")).await;

    let response = app.delete("Task?_count=1").await;

    assert_eq!(response.status(), 400);
    assert_eq!(app.get(&format!("Task/{}", only["id"].as_str().expect("id"))).await.status(), 200, "nothing deleted");
}
