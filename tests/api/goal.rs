//! Goal: hosted through its descriptor and one route line (issue 14). What the family and the
//! care team work toward, referenced from `CarePlan.goal`.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use service::coordination::RuleMode;

use crate::helpers::{assert_outcome, spawn_app, spawn_with, TestApp};

fn goal(patient: &str, lifecycle: &str, due: &str) -> Value {
    json!({
        "resourceType": "Goal",
        "lifecycleStatus": lifecycle,
        "achievementStatus": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": "in-progress" }] },
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/goal-category", "code": "behavioral" }] }],
        "description": { "text": "No more than one ED visit in the next six months" },
        "subject": { "reference": format!("Patient/{patient}") },
        "startDate": "2026-11-24",
        "target": [{ "dueDate": due, "detailQuantity": { "value": 1.0, "unit": "visit" } }],
        "note": [{ "text": "Family asked for evening calls" }]
    })
}

async fn ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let response = app.get(query).await;
    assert_eq!(response.status(), 200, "{query}: {}", response.text().await.unwrap_or_default());
    let bundle: Value = response.json().await.expect("Bundle");
    bundle["entry"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn without_meta(mut resource: Value) -> Value {
    if let Some(object) = resource.as_object_mut() {
        object.remove("meta");
        object.remove("id");
    }
    resource
}

#[tokio::test]
async fn a_goal_is_created_read_updated_versioned_and_deleted_exactly_as_sent() {
    let app = spawn_app().await;
    let sent = goal("p1", "active", "2027-05-24");

    let created = app.create(&sent).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let read: Value = app.get(&format!("Goal/{id}")).await.json().await.expect("JSON");
    assert_eq!(without_meta(read.clone()), sent, "read back as sent, decimal 1.0 included");
    assert_eq!(read["meta"]["versionId"], "1");

    let mut changed = sent.clone();
    changed["id"] = json!(id);
    changed["lifecycleStatus"] = json!("completed");
    let updated = app.put(&format!("Goal/{id}"), &changed).await;
    assert_eq!(updated.status(), 200);
    let first: Value = app.get(&format!("Goal/{id}/_history/1")).await.json().await.expect("JSON");
    assert_eq!(first["lifecycleStatus"], "active");
    assert_eq!(app.history_len(&format!("Goal/{id}/_history")).await, 2);

    assert_eq!(app.delete(&format!("Goal/{id}")).await.status(), 204);
    assert_eq!(app.get(&format!("Goal/{id}")).await.status(), 410);
}

#[tokio::test]
async fn goals_are_found_by_their_r4_search_parameters_and_from_the_plan() {
    let app = spawn_app().await;
    let near = app.create(&goal("p1", "active", "2027-01-31")).await["id"].as_str().expect("id").to_owned();
    let far = app.create(&goal("p1", "proposed", "2028-06-30")).await["id"].as_str().expect("id").to_owned();
    let other = app.create(&goal("p2", "active", "2027-01-31")).await["id"].as_str().expect("id").to_owned();
    let plan = json!({
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": { "reference": "Patient/p1" }, "goal": [{ "reference": format!("Goal/{near}") }],
    });
    let plan = app.create(&plan).await["id"].as_str().expect("id").to_owned();
    let set = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<String>>();

    assert_eq!(ids(&app, "Goal?patient=Patient/p1").await, set(&[&near, &far]));
    assert_eq!(ids(&app, "Goal?subject=Patient/p2").await, set(&[&other]));
    assert_eq!(ids(&app, "Goal?patient=p1&lifecycle-status=active").await, set(&[&near]));
    assert_eq!(ids(&app, "Goal?target-date=le2027-12-31").await, set(&[&near, &other]));
    assert_eq!(ids(&app, "Goal?start-date=2026-11-24&patient=p2").await, set(&[&other]));
    assert_eq!(
        ids(
            &app,
            "Goal?achievement-status=http://terminology.hl7.org/CodeSystem/goal-achievement|in-progress&patient=p2"
        )
        .await,
        set(&[&other])
    );
    assert_eq!(ids(&app, "Goal?category=behavioral&lifecycle-status=proposed").await, set(&[&far]));
    assert_eq!(ids(&app, &format!("CarePlan?goal=Goal/{near}")).await, set(&[&plan]));
    assert_eq!(ids(&app, "CarePlan?goal:Goal.lifecycle-status=active").await, set(&[&plan]));
    let with_goals = app.get(&format!("CarePlan?_id={plan}&_include=CarePlan:goal")).await;
    let bundle: Value = with_goals.json().await.expect("Bundle");
    let included: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .filter_map(|e| e["resource"]["id"].as_str())
        .collect();
    assert_eq!(included, [near.as_str()]);
}

#[tokio::test]
async fn a_goal_summary_keeps_the_summary_elements_of_the_r4_structure_definition() {
    let app = spawn_app().await;
    let id = app.create(&goal("p1", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();

    let bundle: Value = app.get(&format!("Goal?_id={id}&_summary=true")).await.json().await.expect("JSON");
    let summary = &bundle["entry"][0]["resource"];

    for kept in ["lifecycleStatus", "achievementStatus", "category", "description", "subject", "startDate"] {
        assert!(summary.get(kept).is_some(), "{kept} is a summary element: {summary}");
    }
    for dropped in ["target", "note"] {
        assert!(summary.get(dropped).is_none(), "{dropped} is not a summary element: {summary}");
    }
}

#[tokio::test]
async fn a_goal_that_is_not_one_is_refused_with_where() {
    let app = spawn_app().await;
    let mut missing = goal("p1", "active", "2027-05-24");
    missing.as_object_mut().expect("object").remove("description");
    let mut unknown = goal("p1", "active", "2027-05-24");
    unknown["reachedOn"] = json!("2027-01-01");

    let refused = app.post("Goal", &missing).await;
    assert_eq!(refused.status(), 400);
    assert_outcome(&refused.json().await.expect("JSON"), "required", None);
    let refused = app.post("Goal", &unknown).await;
    assert_eq!(refused.status(), 400);
    assert_outcome(&refused.json().await.expect("JSON"), "structure", Some("Goal.reachedOn"));
    assert!(ids(&app, "Goal").await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn a_plans_goals_must_exist_here_and_be_the_same_patients_when_rules_are_enforced() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Enforce).await;
    let own = app.create(&goal("p1", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();
    let other = app.create(&goal("p2", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();
    let plan = |goal: &str| {
        json!({ "resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": { "reference": "Patient/p1" }, "goal": [{ "reference": goal }] })
    };

    let missing = app.post("CarePlan", &plan("Goal/missing")).await;
    assert_eq!(missing.status(), 422);
    assert_outcome(&missing.json().await.expect("JSON"), "business-rule", Some("CarePlan.goal[0]"));
    let theirs = app.post("CarePlan", &plan(&format!("Goal/{other}"))).await;
    assert_eq!(theirs.status(), 422);
    assert!(theirs.text().await.unwrap_or_default().contains("another patient"));
    assert_eq!(app.post("CarePlan", &plan(&format!("Goal/{own}"))).await.status(), 201);
}

#[tokio::test]
async fn the_plan_summary_lists_the_plans_goals_and_carries_them() {
    let app = spawn_app().await;
    let id = app.create(&goal("p1", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();
    let plan = json!({ "resourceType": "CarePlan", "status": "active", "intent": "plan",
                       "subject": { "reference": "Patient/p1" }, "goal": [{ "reference": format!("Goal/{id}") }] });
    let plan = app.create(&plan).await["id"].as_str().expect("id").to_owned();

    let bundle: Value = app.get(&format!("CarePlan/{plan}/$summary")).await.json().await.expect("Bundle");

    let composition = &bundle["entry"][0]["resource"];
    let goals = composition["section"]
        .as_array()
        .expect("sections")
        .iter()
        .find(|s| s["title"] == "Goals")
        .expect("a Goals section");
    assert_eq!(goals["entry"][0]["reference"], app.url(&format!("Goal/{id}")));
    assert!(goals["text"]["div"].as_str().is_some_and(|d| d.contains("No more than one ED visit")), "{goals}");
    let carried = bundle["entry"].as_array().expect("entries").iter().any(|e| e["resource"]["id"] == id.as_str());
    assert!(carried, "the Goal is in the Bundle");
}

#[tokio::test]
async fn a_teams_goals_must_exist_here_and_be_the_same_patients_when_rules_are_enforced() {
    let app = spawn_with(|s| s.rules.references = RuleMode::Enforce).await;
    let own = app.create(&goal("p1", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();
    let other = app.create(&goal("p2", "active", "2027-05-24")).await["id"].as_str().expect("id").to_owned();
    let team = |goal: &str| {
        json!({ "resourceType": "CareTeam", "status": "active", "subject": { "reference": "Patient/p1" },
                "extension": [{ "url": "http://hl7.org/fhir/StructureDefinition/resource-pertainsToGoal",
                                "valueReference": { "reference": goal } }] })
    };

    let missing = app.post("CareTeam", &team("Goal/missing")).await;
    assert_eq!(missing.status(), 422);
    assert_outcome(&missing.json().await.expect("JSON"), "business-rule", Some("CareTeam.extension[0].valueReference"));
    assert_eq!(app.post("CareTeam", &team(&format!("Goal/{other}"))).await.status(), 422);
    assert_eq!(app.post("CareTeam", &team(&format!("Goal/{own}"))).await.status(), 201);
}
