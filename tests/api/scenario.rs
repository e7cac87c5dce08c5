//! One child through a complex-care program, end to end: a referral arrives as a transaction,
//! the team takes up the work, a task is declined and reassigned, one goes overdue, and the
//! plan reads back coherent (team membership, history, provenance).

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const COORDINATOR: &str = "Practitioner/coordinator-ana";
const NURSE: &str = "Practitioner/nurse-ben";
const SOCIAL_WORKER: &str = "Practitioner/social-worker-cleo";
const CHW: &str = "Practitioner/chw-dan";
const PARENT: &str = "RelatedPerson/parent-eve";
const CHILD: &str = "Patient/child-frank";

fn task(full_url: &str, code: &str, owner: &str, due: &str) -> Value {
    json!({"fullUrl": full_url, "request": {"method": "POST", "url": "Task"}, "resource": {
        "resourceType": "Task", "status": "requested", "intent": "order", "priority": "routine",
        "code": {"coding": [{"system": "http://careplan.example/task-code", "code": code}], "text": code},
        "for": {"reference": CHILD}, "requester": {"reference": COORDINATOR},
        "owner": {"reference": owner}, "authoredOn": "2026-11-02",
        "basedOn": [{"reference": "urn:uuid:6c1c0c1e-0000-4000-8000-00000000plan"}],
        "restriction": {"period": {"end": due}}
    }})
}

fn referral() -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:6c1c0c1e-0000-4000-8000-00000000team", "request": {"method": "POST", "url": "CareTeam"},
         "resource": {"resourceType": "CareTeam", "status": "active", "name": "Complex care team for Frank",
                      "subject": {"reference": CHILD},
                      "participant": [
                          {"role": [{"text": "care coordinator"}], "member": {"reference": COORDINATOR}, "period": {"start": "2026-11-02"}},
                          {"role": [{"text": "social worker"}], "member": {"reference": SOCIAL_WORKER}, "period": {"start": "2026-11-02"}},
                          {"role": [{"text": "parent"}], "member": {"reference": PARENT}, "period": {"start": "2026-11-02"}}]}},
        {"fullUrl": "urn:uuid:6c1c0c1e-0000-4000-8000-00000000plan", "request": {"method": "POST", "url": "CarePlan"},
         "resource": {"resourceType": "CarePlan", "status": "active", "intent": "plan", "title": "Shared care plan",
                      "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "734163000"}]}],
                      "subject": {"reference": CHILD},
                      "careTeam": [{"reference": "urn:uuid:6c1c0c1e-0000-4000-8000-00000000team"}]}},
        task("urn:uuid:6c1c0c1e-0000-4000-8000-00000000call", "follow-up-call", NURSE, "2026-11-05"),
        task("urn:uuid:6c1c0c1e-0000-4000-8000-00000000ride", "transportation", SOCIAL_WORKER, "2099-01-01"),
        task("urn:uuid:6c1c0c1e-0000-4000-8000-0000000insur", "insurance-question", CHW, "2099-01-01"),
    ]})
}

/// Change a Task as `actor`: apply `edit` to its current version and PUT it with If-Match.
async fn act(app: &TestApp, actor: &str, id: &str, edit: impl FnOnce(&mut Value)) -> (u16, Value) {
    let response = app.get(&format!("Task/{id}")).await;
    let etag = response.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut task: Value = response.json().await.expect("Task");
    task.as_object_mut().expect("object").remove("meta");
    edit(&mut task);
    let response = app
        .request(Method::PUT, &format!("Task/{id}"))
        .header("content-type", "application/fhir+json")
        .header("if-match", etag)
        .header("x-careplan-actor", actor)
        .body(task.to_string())
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn member_period<'a>(team: &'a Value, member: &str) -> Option<&'a Value> {
    team["participant"].as_array()?.iter().find(|p| p["member"]["reference"] == member).map(|p| &p["period"])
}

#[tokio::test]
async fn a_child_goes_through_the_complex_care_program() {
    let app = spawn_app().await;

    // Referral: the clinic's EHR posts the whole plan in one transaction.
    let response = app.post("", &referral()).await;
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.expect("Bundle");
    let id = |i: usize| created["entry"][i]["resource"]["id"].as_str().expect("id").to_owned();
    let (team, plan, call, ride, insurance) = (id(0), id(1), id(2), id(3), id(4));
    let tasks: Value =
        app.get(&format!("Task?based-on=CarePlan/{plan}&_total=accurate")).await.json().await.expect("Bundle");
    assert_eq!(tasks["total"], 3);

    // The nurse accepts the follow-up call and joins the care team.
    let (status, _) = act(&app, NURSE, &call, |t| t["status"] = json!("accepted")).await;
    assert_eq!(status, 200);
    let current_team: Value = app.get(&format!("CareTeam/{team}")).await.json().await.expect("CareTeam");
    assert!(member_period(&current_team, NURSE).is_some_and(|p| p["start"].is_string()), "{current_team}");

    // The community health worker declines the insurance question; a reason is required.
    let (status, _) = act(&app, CHW, &insurance, |t| t["status"] = json!("rejected")).await;
    assert_eq!(status, 422, "no reason given");
    let (status, _) = act(&app, CHW, &insurance, |t| {
        t["status"] = json!("rejected");
        t["statusReason"] = json!({"text": "outside my caseload; needs a benefits specialist"});
    })
    .await;
    assert_eq!(status, 200);
    // A rejected Task is final: the coordinator reassigns the work as a new Task.
    let (status, _) = act(&app, COORDINATOR, &insurance, |t| t["status"] = json!("requested")).await;
    assert_eq!(status, 422);
    let mut reassigned: Value = app.get(&format!("Task/{insurance}")).await.json().await.expect("Task");
    for key in ["id", "meta", "statusReason"] {
        reassigned.as_object_mut().expect("object").remove(key);
    }
    reassigned["status"] = json!("requested");
    reassigned["owner"] = json!({"reference": SOCIAL_WORKER});
    let response = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("x-careplan-actor", COORDINATOR)
        .body(reassigned.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 201);

    // The social worker arranges transportation: accepted, started, completed with an output.
    for status in ["accepted", "in-progress"] {
        assert_eq!(act(&app, SOCIAL_WORKER, &ride, |t| t["status"] = json!(status)).await.0, 200);
    }
    let (status, done) = act(&app, SOCIAL_WORKER, &ride, |t| {
        t["status"] = json!("completed");
        t["output"] = json!([{"type": {"text": "ride booked"}, "valueString": "Van pickup 8:15, clinic entrance B"}]);
    })
    .await;
    assert_eq!(status, 200, "{done}");
    // The social worker was already on the team: their participation is untouched.
    let current_team: Value = app.get(&format!("CareTeam/{team}")).await.json().await.expect("CareTeam");
    assert!(member_period(&current_team, SOCIAL_WORKER).is_some_and(|p| p.get("end").is_none()), "{current_team}");

    // The follow-up call was due on 2026-11-05 and is still open: it is overdue work.
    let open: Value = app
        .get(&format!("Task?owner={NURSE}&status=requested,received,accepted,in-progress,on-hold&_total=accurate"))
        .await
        .json()
        .await
        .expect("Bundle");
    assert_eq!(open["total"], 1);
    assert_eq!(open["entry"][0]["resource"]["restriction"]["period"]["end"], "2026-11-05");

    // The nurse finishes the call: their last open Task on the plan, so their participation ends.
    assert_eq!(act(&app, NURSE, &call, |t| t["status"] = json!("in-progress")).await.0, 200);
    assert_eq!(act(&app, NURSE, &call, |t| t["status"] = json!("completed")).await.0, 200);
    let final_team: Value = app.get(&format!("CareTeam/{team}")).await.json().await.expect("CareTeam");
    assert!(member_period(&final_team, NURSE).is_some_and(|p| p["end"].is_string()), "{final_team}");
    assert_eq!(final_team["participant"].as_array().map(Vec::len), Some(4), "nobody is ever removed");

    // Every change left a trail: the plan view and the provenance of the call.
    let view: Value = app
        .get(&format!("CarePlan?_id={plan}&_include=CarePlan:care-team&_revinclude=Task:based-on"))
        .await
        .json()
        .await
        .expect("Bundle");
    assert_eq!(view["entry"].as_array().map(Vec::len), Some(1 + 1 + 4), "plan, team and four Tasks");
    let trail: Value =
        app.get(&format!("Provenance?target=Task/{call}&_total=accurate")).await.json().await.expect("Bundle");
    assert_eq!(trail["total"], 4, "created, accepted, started, completed");
}
