//! Care-coordination rules on every write path: the Task workflow, who may change what, the
//! on-hold memory and cascade, care-team membership, plan and team consistency, dependants.

use reqwest::Method;
use serde_json::{json, Value};
use service::coordination::RuleMode;

use crate::helpers::{assert_outcome, spawn_app, spawn_with, TestApp};

const COORDINATOR: &str = "Practitioner/coordinator";
const NURSE: &str = "Practitioner/nurse";
const SOCIAL_WORKER: &str = "Practitioner/social-worker";

fn follow_up(status: &str, owner: Option<&str>, plan: Option<&str>) -> Value {
    let mut task = json!({
        "resourceType": "Task", "status": status, "intent": "order",
        "for": {"reference": "Patient/child"},
        "requester": {"reference": COORDINATOR},
        "description": "Follow-up call after discharge"
    });
    if let Some(owner) = owner {
        task["owner"] = json!({"reference": owner});
    }
    if let Some(plan) = plan {
        task["basedOn"] = json!([{"reference": format!("CarePlan/{plan}")}]);
    }
    task
}

/// PUT `body` as `actor`; the status code and the answer.
async fn put_as(app: &TestApp, actor: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
    let mut request =
        app.request(Method::PUT, path).header("content-type", "application/fhir+json").body(body.to_string());
    if let Some(actor) = actor {
        request = request.header("x-careplan-actor", actor);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn put_task(app: &TestApp, id: &str, mut body: Value, actor: Option<&str>) -> (u16, Value) {
    body["id"] = json!(id);
    put_as(app, actor, &format!("Task/{id}"), &body).await
}

async fn read(app: &TestApp, path: &str) -> Value {
    app.get(path).await.json().await.expect("JSON")
}

#[tokio::test]
async fn a_transition_outside_the_matrix_is_refused_naming_it_and_the_allowed_ones() {
    let app = spawn_app().await;
    assert_eq!(put_task(&app, "t1", follow_up("completed", None, None), None).await.0, 201);

    let (status, outcome) = put_task(&app, "t1", follow_up("in-progress", None, None), None).await;

    assert_eq!(status, 422, "{outcome}");
    assert_outcome(&outcome, "business-rule", Some("Task.status"));
    let text = outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics");
    assert!(text.contains("completed → in-progress"), "{text}");
    assert_eq!(read(&app, "Task/t1").await["meta"]["versionId"], "1");

    let (status, _) = put_task(&app, "t2", follow_up("requested", None, None), None).await;
    assert_eq!(status, 201);
    let (status, outcome) = put_task(&app, "t2", follow_up("ready", None, None), None).await;
    assert_eq!(status, 422, "requested → ready is not in the matrix: {outcome}");
    let allowed = outcome["issue"][0]["diagnostics"].as_str().expect("diagnostics");
    assert!(allowed.contains("accepted") && allowed.contains("cancelled"), "{allowed}");
}

#[tokio::test]
async fn the_workflow_holds_on_patch_and_in_transactions_too() {
    let app = spawn_app().await;
    put_task(&app, "t1", follow_up("completed", None, None), None).await;

    let patched = app
        .request(Method::PATCH, "Task/t1")
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/status","value":"requested"}]"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(patched.status(), 422);

    let mut reopened = follow_up("requested", None, None);
    reopened["id"] = json!("t1");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": reopened, "request": {"method": "PUT", "url": "Task/t1"}}]});
    let response = app.post("", &bundle).await;
    assert_eq!(response.status(), 422);
    let outcome: Value = response.json().await.expect("outcome");
    assert_outcome(&outcome, "business-rule", Some("Bundle.entry[0].resource.status"));
}

#[tokio::test]
async fn terminal_tasks_reopen_only_when_configured() {
    let app = spawn_with(|s| s.rules.policy.allow_reopen_terminal = true).await;
    put_task(&app, "t1", follow_up("completed", None, None), None).await;

    let (status, _) = put_task(&app, "t1", follow_up("requested", None, None), Some(COORDINATOR)).await;

    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_reason_is_required_to_cancel_reject_hold_or_fail() {
    let app = spawn_app().await;
    put_task(&app, "t1", follow_up("requested", None, None), None).await;

    let (status, outcome) = put_task(&app, "t1", follow_up("cancelled", None, None), None).await;
    assert_eq!(status, 422);
    assert_outcome(&outcome, "business-rule", Some("Task.statusReason.text"));

    let mut cancelled = follow_up("cancelled", None, None);
    cancelled["statusReason"] = json!({"text": "family moved out of state"});
    assert_eq!(put_task(&app, "t1", cancelled, None).await.0, 200);
}

#[tokio::test]
async fn only_the_owner_moves_a_task_forward_and_only_within_its_elements() {
    let app = spawn_app().await;
    put_task(&app, "t1", follow_up("requested", Some(NURSE), None), Some(COORDINATOR)).await;

    let (status, outcome) = put_task(&app, "t1", follow_up("accepted", Some(NURSE), None), Some(COORDINATOR)).await;
    assert_eq!(status, 403, "the requester may not accept: {outcome}");
    assert_outcome(&outcome, "forbidden", None);

    let mut edited = follow_up("accepted", Some(NURSE), None);
    edited["description"] = json!("rewritten by the nurse");
    let (status, outcome) = put_task(&app, "t1", edited, Some(NURSE)).await;
    assert_eq!(status, 403, "{outcome}");
    assert_outcome(&outcome, "forbidden", Some("Task.description"));

    let (status, _) = put_task(&app, "t1", follow_up("accepted", Some(NURSE), None), Some(NURSE)).await;
    assert_eq!(status, 200);
    let (status, _) = put_task(&app, "t1", follow_up("in-progress", Some(NURSE), None), Some(SOCIAL_WORKER)).await;
    assert_eq!(status, 403, "someone else may change nothing");

    let mut moved = follow_up("accepted", Some(NURSE), None);
    moved["for"] = json!({"reference": "Patient/other"});
    let (status, outcome) = put_task(&app, "t1", moved, Some(COORDINATOR)).await;
    assert_eq!(status, 422, "{outcome}");
    assert_outcome(&outcome, "business-rule", Some("Task.for"));
}

#[tokio::test]
async fn holding_a_task_holds_its_sub_tasks_and_resuming_restores_each_state() {
    let app = spawn_app().await;
    put_task(&app, "parent", follow_up("in-progress", None, None), None).await;
    for (id, status) in [("child-a", "accepted"), ("child-b", "in-progress"), ("child-c", "completed")] {
        let mut child = follow_up(status, None, None);
        child["partOf"] = json!([{"reference": "Task/parent"}]);
        put_task(&app, id, child, None).await;
    }

    let mut held = follow_up("on-hold", None, None);
    held["statusReason"] = json!({"text": "child admitted to hospital"});
    assert_eq!(put_task(&app, "parent", held, None).await.0, 200);

    assert_eq!(read(&app, "Task/child-a").await["status"], "on-hold");
    assert_eq!(read(&app, "Task/child-b").await["status"], "on-hold");
    assert_eq!(read(&app, "Task/child-c").await["status"], "completed", "finished work stays finished");
    let (status, outcome) = put_task(&app, "parent", follow_up("ready", None, None), None).await;
    assert_eq!(status, 422, "a held Task resumes only to the status it was in: {outcome}");

    assert_eq!(put_task(&app, "parent", follow_up("in-progress", None, None), None).await.0, 200);
    assert_eq!(read(&app, "Task/child-a").await["status"], "accepted");
    assert_eq!(read(&app, "Task/child-b").await["status"], "in-progress");
    assert_eq!(read(&app, "Task/child-a").await["meta"]["versionId"], "3");
}

#[tokio::test]
async fn the_owner_joins_the_care_team_on_accepting_and_leaves_when_their_last_task_ends() {
    let app = spawn_app().await;
    let team = json!({"resourceType": "CareTeam", "id": "team", "status": "active", "subject": {"reference": "Patient/child"},
                      "participant": [{"member": {"reference": COORDINATOR}}]});
    assert_eq!(put_as(&app, None, "CareTeam/team", &team).await.0, 201);
    let plan = json!({"resourceType": "CarePlan", "id": "plan", "status": "active", "intent": "plan",
                      "subject": {"reference": "Patient/child"}, "careTeam": [{"reference": "CareTeam/team"}]});
    assert_eq!(put_as(&app, None, "CarePlan/plan", &plan).await.0, 201);
    for id in ["call", "ride"] {
        put_task(&app, id, follow_up("requested", Some(NURSE), Some("plan")), Some(COORDINATOR)).await;
    }

    put_task(&app, "call", follow_up("accepted", Some(NURSE), Some("plan")), Some(NURSE)).await;
    let joined = read(&app, "CareTeam/team").await;
    let nurse = joined["participant"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["member"]["reference"] == NURSE)
        .cloned();
    let nurse = nurse.expect("the nurse joined the team");
    assert!(nurse["period"]["start"].is_string() && nurse["period"].get("end").is_none(), "{nurse}");
    assert_eq!(joined["meta"]["versionId"], "2");

    put_task(&app, "ride", follow_up("accepted", Some(NURSE), Some("plan")), Some(NURSE)).await;
    put_task(&app, "call", follow_up("completed", Some(NURSE), Some("plan")), Some(NURSE)).await;
    let still = read(&app, "CareTeam/team").await;
    let nurse = still["participant"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["member"]["reference"] == NURSE)
        .cloned();
    assert!(
        nurse.expect("still there")["period"].get("end").is_none(),
        "another open Task keeps the nurse on the team"
    );

    put_task(&app, "ride", follow_up("completed", Some(NURSE), Some("plan")), Some(NURSE)).await;
    let left = read(&app, "CareTeam/team").await;
    let participants = left["participant"].as_array().expect("participants");
    assert_eq!(participants.len(), 2, "participants are never removed: {left}");
    let nurse = participants.iter().find(|p| p["member"]["reference"] == NURSE).expect("nurse");
    assert!(nurse["period"]["end"].is_string(), "{left}");
}

async fn plan_for(app: &TestApp, id: &str, patient: &str) {
    let plan = json!({"resourceType": "CarePlan", "id": id, "status": "active", "intent": "plan",
                      "subject": {"reference": patient}});
    assert_eq!(put_as(app, None, &format!("CarePlan/{id}"), &plan).await.0, 201);
}

#[tokio::test]
async fn enforced_references_must_exist_here_and_concern_the_same_patient() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Enforce).await;
    plan_for(&app, "mine", "Patient/child").await;
    plan_for(&app, "theirs", "Patient/someone-else").await;

    let (status, outcome) = put_task(&app, "t1", follow_up("requested", None, Some("missing")), None).await;
    assert_eq!(status, 422);
    assert_outcome(&outcome, "business-rule", Some("Task.basedOn[0]"));
    let (status, outcome) = put_task(&app, "t1", follow_up("requested", None, Some("theirs")), None).await;
    assert_eq!(status, 422);
    assert!(outcome.to_string().contains("another patient"), "{outcome}");
    let (status, _) = put_task(&app, "t1", follow_up("requested", None, Some("mine")), None).await;
    assert_eq!(status, 201);

    let mut external = follow_up("requested", None, None);
    external["basedOn"] = json!([{"reference": "https://ehr.example/fhir/CarePlan/9"}]);
    external["focus"] = json!({"reference": "ServiceRequest/never-required"});
    assert_eq!(put_task(&app, "t2", external, None).await.0, 201, "references to other servers are stored as given");
}

/// A Bundle's references to resources it writes itself are checked against what it wrote: a
/// plan it deletes (DELETE runs before POST) is gone, a plan it creates for another patient is
/// another patient's, and one it creates for this patient may be named.
#[tokio::test]
async fn enforced_references_see_what_the_same_transaction_wrote() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Enforce).await;
    plan_for(&app, "doomed", "Patient/child").await;
    let send = |bundle: Value| {
        let request = app.request(Method::POST, "").header("content-type", "application/fhir+json");
        async move {
            let response = request.body(bundle.to_string()).send().await.expect("sent");
            (response.status().as_u16(), response.json::<Value>().await.expect("JSON"))
        }
    };

    let deleted = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": follow_up("requested", None, Some("doomed")), "request": {"method": "POST", "url": "Task"}},
        {"request": {"method": "DELETE", "url": "CarePlan/doomed"}}]});
    let (status, outcome) = send(deleted).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("CarePlan/doomed does not exist"), "{outcome}");
    assert_eq!(app.get("CarePlan/doomed").await.status(), 200, "nothing of the failed Bundle stands");

    let plan_and_task = |patient: &str| {
        let mut task = follow_up("requested", None, None);
        task["basedOn"] = json!([{"reference": "urn:uuid:22222222-0000-4000-8000-000000000001"}]);
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:22222222-0000-4000-8000-000000000001",
             "resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                          "subject": {"reference": patient}},
             "request": {"method": "POST", "url": "CarePlan"}},
            {"resource": task, "request": {"method": "POST", "url": "Task"}}]})
    };
    let (status, outcome) = send(plan_and_task("Patient/someone-else")).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome.to_string().contains("another patient"), "{outcome}");
    let (status, response) = send(plan_and_task("Patient/child")).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["entry"][1]["response"]["status"], "201 Created", "{response}");
}

#[tokio::test]
async fn in_warn_mode_broken_references_are_stored_with_a_warning() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Warn).await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": follow_up("requested", None, Some("missing")), "request": {"method": "POST", "url": "Task"}}]});

    let response: Value = app.post("", &bundle).await.json().await.expect("Bundle");

    assert_eq!(response["entry"][0]["response"]["status"], "201 Created", "{response}");
    let outcome = &response["entry"][0]["response"]["outcome"];
    assert_eq!(outcome["issue"][0]["severity"], "warning", "{response}");
    assert_eq!(outcome["issue"][0]["expression"][0], "Task.basedOn[0]");
}

#[tokio::test]
async fn a_plain_write_reports_the_same_warnings_in_its_operation_outcome() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Warn).await;

    let response = app
        .request(reqwest::Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(follow_up("requested", None, Some("missing")).to_string())
        .send()
        .await
        .expect("sent");

    assert_eq!(response.status(), 201);
    let outcome: Value = response.json().await.expect("OperationOutcome");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "information", "{outcome}");
    assert_eq!(outcome["issue"][1]["severity"], "warning", "{outcome}");
    assert_eq!(outcome["issue"][1]["expression"][0], "Task.basedOn[0]");
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": follow_up("requested", None, Some("missing")), "request": {"method": "POST", "url": "Task"}}]});
    let entry = app
        .request(reqwest::Method::POST, "")
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=OperationOutcome")
        .body(bundle.to_string())
        .send()
        .await
        .expect("sent")
        .json::<Value>()
        .await
        .expect("Bundle");
    let mut from_bundle = entry["entry"][0]["response"]["outcome"].clone();
    let mut plain = outcome.clone();
    for outcome in [&mut from_bundle, &mut plain] {
        outcome["issue"][0]["diagnostics"] = json!("(ids differ)");
    }
    assert_eq!(from_bundle, plain, "one renderer for plain writes and Bundle entries");
}

#[tokio::test]
async fn a_plan_with_open_tasks_is_deleted_only_with_a_cascade() {
    let app = spawn_app().await;
    plan_for(&app, "plan", "Patient/child").await;
    put_task(&app, "open", follow_up("requested", None, Some("plan")), None).await;
    put_task(&app, "done", follow_up("completed", None, Some("plan")), None).await;

    let refused = app.delete("CarePlan/plan").await;
    assert_eq!(refused.status(), 409);
    let outcome: Value = refused.json().await.expect("outcome");
    assert_outcome(&outcome, "conflict", None);
    assert!(outcome.to_string().contains("Task/open") && !outcome.to_string().contains("Task/done"), "{outcome}");
    assert_eq!(app.get("CarePlan/plan").await.status(), 200);

    assert_eq!(app.delete("CarePlan/plan?_cascade=delete").await.status(), 204);
    assert_eq!(app.get("CarePlan/plan").await.status(), 410);
    assert_eq!(app.get("Task/open").await.status(), 410);
    assert_eq!(app.get("Task/done").await.status(), 200, "finished work is kept");
}

#[tokio::test]
async fn a_team_whose_plans_have_open_tasks_is_not_deleted() {
    let app = spawn_app().await;
    let team = json!({"resourceType": "CareTeam", "id": "team", "subject": {"reference": "Patient/child"}});
    put_as(&app, None, "CareTeam/team", &team).await;
    let plan = json!({"resourceType": "CarePlan", "id": "plan", "status": "active", "intent": "plan",
                      "subject": {"reference": "Patient/child"}, "careTeam": [{"reference": "CareTeam/team"}]});
    put_as(&app, None, "CarePlan/plan", &plan).await;
    put_task(&app, "open", follow_up("in-progress", None, Some("plan")), None).await;

    assert_eq!(app.delete("CareTeam/team").await.status(), 409);
}

#[tokio::test]
async fn every_write_is_recorded_with_a_provenance_naming_who_and_what() {
    let app = spawn_app().await;
    put_task(&app, "t1", follow_up("requested", Some(NURSE), None), Some(COORDINATOR)).await;
    put_task(&app, "t1", follow_up("accepted", Some(NURSE), None), Some(NURSE)).await;

    let found: Value = app.get("Provenance?target=Task/t1&_sort=recorded").await.json().await.expect("Bundle");
    let provenances: Vec<&Value> = found["entry"].as_array().expect("entries").iter().map(|e| &e["resource"]).collect();
    assert_eq!(provenances.len(), 2, "{found}");
    assert_eq!(provenances[0]["target"][0]["reference"], "Task/t1/_history/1");
    assert_eq!(provenances[0]["activity"]["coding"][0]["code"], "CREATE");
    assert_eq!(provenances[0]["agent"][0]["who"]["reference"], COORDINATOR);
    assert_eq!(provenances[1]["target"][0]["reference"], "Task/t1/_history/2");
    assert_eq!(provenances[1]["activity"]["coding"][0]["code"], "UPDATE");
    assert_eq!(provenances[1]["agent"][0]["who"]["reference"], NURSE);

    let with_provenance: Value =
        app.get("Task?_id=t1&_revinclude=Provenance:target").await.json().await.expect("Bundle");
    let included = with_provenance["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .count();
    assert_eq!(included, 2);

    assert_eq!(app.delete("Task/t1").await.status(), 204);
    let after: Value = app.get("Provenance?target=Task/t1&_total=accurate").await.json().await.expect("Bundle");
    assert_eq!(after["total"], 3, "the delete is recorded too");
}

#[tokio::test]
async fn provenance_recording_can_be_turned_off() {
    let app = spawn_with(|s| s.provenance = false).await;
    put_task(&app, "t1", follow_up("requested", None, None), None).await;

    let found: Value = app.get("Provenance?_total=accurate").await.json().await.expect("Bundle");
    assert_eq!(found["total"], 0);
}
