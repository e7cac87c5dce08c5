//! Due and overdue work and the plan summary (issue 5 items 5 and 6): `Task?overdue=`, the
//! coordinator's worklist sorted by due date, the job that marks overdue Tasks once, and
//! `CarePlan/[id]/$summary`.
//!
//! Tasks reach their status through the transitions the workflow allows (created requested,
//! ready or draft, then moved on), with a `statusReason` where one is required.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, eventually, spawn_app, spawn_with, TestApp};

const OVERDUE_SYSTEM: &str = "http://careplan.example/fhir/CodeSystem/task-business-status";

/// How a Task gets to `status`: the status it is created in, then the moves.
fn route(status: &str) -> (&'static str, &'static [&'static str]) {
    match status {
        "draft" => ("draft", &[]),
        "ready" => ("ready", &[]),
        "received" => ("requested", &["received"]),
        "accepted" => ("requested", &["accepted"]),
        "rejected" => ("requested", &["rejected"]),
        "cancelled" => ("requested", &["cancelled"]),
        "in-progress" => ("requested", &["accepted", "in-progress"]),
        "on-hold" => ("requested", &["accepted", "in-progress", "on-hold"]),
        "completed" => ("requested", &["accepted", "in-progress", "completed"]),
        "failed" => ("requested", &["accepted", "in-progress", "failed"]),
        _ => ("requested", &[]),
    }
}

/// Put Task `id` with the elements of `extra`, owned by `Practitioner/lee` unless `extra` says
/// otherwise, and move it to `status`. Returns the Task as stored.
async fn put_task(app: &TestApp, id: &str, status: &str, extra: Value) -> Value {
    let mut body = json!({
        "resourceType": "Task", "id": id, "intent": "order",
        "for": {"reference": "Patient/p1"}, "owner": {"reference": "Practitioner/lee"},
        "description": format!("Task {id}"),
    });
    for (key, value) in extra.as_object().expect("an object") {
        body[key] = value.clone();
    }
    let (first, moves) = route(status);
    let mut current = Value::Null;
    for next in std::iter::once(&first).chain(moves) {
        body["status"] = json!(next);
        if matches!(*next, "rejected" | "cancelled" | "on-hold" | "failed") {
            body["statusReason"] = json!({"text": format!("{next} for the test")});
        }
        let response = app.put(&format!("Task/{id}"), &body).await;
        let code = response.status();
        current = response.json().await.expect("JSON");
        assert!(code.is_success(), "Task/{id} to {next}: {current}");
    }
    current
}

/// `restriction.period.end` = `end`.
fn due(end: &str) -> Value {
    json!({"restriction": {"period": {"end": end}}})
}

/// The ids a search matches, in order.
async fn ids(app: &TestApp, query: &str) -> Vec<String> {
    let response = app.get(query).await;
    let status = response.status();
    let bundle: Value = response.json().await.expect("Bundle");
    assert_eq!(status, 200, "{query}: {bundle}");
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn id_set(app: &TestApp, query: &str) -> BTreeSet<String> {
    ids(app, query).await.into_iter().collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

async fn version_of(app: &TestApp, path: &str) -> String {
    let body: Value = app.get(path).await.json().await.expect("JSON");
    body["meta"]["versionId"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn overdue_finds_open_tasks_past_due_and_not_overdue_the_open_ones_still_in_time() {
    let app = spawn_app().await;
    put_task(&app, "late-requested", "requested", due("2020-01-01")).await;
    put_task(&app, "late-on-hold", "on-hold", due("2020-06-01T10:00:00Z")).await;
    put_task(&app, "late-completed", "completed", due("2020-01-01")).await;
    put_task(&app, "late-cancelled", "cancelled", due("2020")).await;
    put_task(&app, "late-rejected", "rejected", due("2020")).await;
    put_task(&app, "late-draft", "draft", due("2020")).await;
    put_task(&app, "in-time", "accepted", due("2099-12-31")).await;
    put_task(&app, "undated", "in-progress", json!({})).await;
    put_task(&app, "start-only", "ready", json!({"restriction": {"period": {"start": "2020-01-01"}}})).await;

    let cases: &[(&str, &[&str])] = &[
        ("Task?overdue=true", &["late-requested", "late-on-hold"]),
        ("Task?overdue=false", &["in-time", "undated", "start-only"]),
        ("Task?overdue=true,false", &["late-requested", "late-on-hold", "in-time", "undated", "start-only"]),
        ("Task?overdue=true&status=on-hold", &["late-on-hold"]),
        ("Task?overdue=false&owner=Practitioner/lee&period:missing=true", &["undated"]),
        // `period` is restriction.period: "ends before" 2021 is "due before" 2021.
        (
            "Task?period=eb2021-01-01",
            &["late-requested", "late-on-hold", "late-completed", "late-cancelled", "late-rejected", "late-draft"],
        ),
        ("Task?period=sa2020-12-31", &[]),
        ("Task?period=ge2099-12-31", &["in-time", "start-only"]),
        ("Task?execution-period:missing=false", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(id_set(&app, query).await, set(expected), "{query}");
    }
    let total: Value = app.get("Task?overdue=true&_summary=count").await.json().await.expect("JSON");
    assert_eq!(total["total"], 2);
}

#[tokio::test]
async fn overdue_takes_only_true_or_false_and_cannot_be_sorted() {
    let app = spawn_app().await;

    for query in ["Task?overdue=maybe", "Task?overdue:missing=true", "Task?overdue:not=true", "Task?_sort=overdue"] {
        let response = app.request(Method::GET, query).header("prefer", "handling=strict").send().await.expect("sent");
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.expect("JSON");
        assert_outcome(&body, "value", None);
    }
}

#[tokio::test]
async fn the_coordinators_worklist_is_sorted_by_due_date_with_open_ends_last() {
    let app = spawn_app().await;
    put_task(&app, "w1", "requested", due("2030-05-01")).await;
    put_task(&app, "w2", "accepted", due("2030-01-15T09:00:00Z")).await;
    put_task(&app, "w3", "in-progress", json!({})).await;
    put_task(&app, "w4", "on-hold", json!({"restriction": {"period": {"start": "2030-01-01"}}})).await;
    put_task(&app, "w5", "received", due("2029-12-31")).await;
    put_task(&app, "w6", "completed", due("2029-01-01")).await;
    put_task(
        &app,
        "w7",
        "requested",
        json!({"owner": {"reference": "Practitioner/diaz"}, "restriction": {"period": {"end": "2029-01-01"}}}),
    )
    .await;
    let worklist = "Task?owner=Practitioner/lee&status=requested,received,accepted,in-progress,on-hold";

    let ascending = ids(&app, &format!("{worklist}&_sort=period")).await;
    let descending = ids(&app, &format!("{worklist}&_sort=-period")).await;

    assert_eq!(ascending, ["w5", "w2", "w1", "w3", "w4"]);
    assert_eq!(descending, ["w4", "w1", "w2", "w5", "w3"]);
    // Paging keeps the order.
    let mut paged = Vec::new();
    let mut next = Some(app.url(&format!("{worklist}&_sort=period&_count=2")));
    while let Some(url) = next {
        let bundle: Value = app.client.get(&url).send().await.expect("sent").json().await.expect("JSON");
        paged.extend(bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"]["id"].clone()));
        next = bundle["link"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_owned);
    }
    assert_eq!(paged, ["w5", "w2", "w1", "w3", "w4"]);
}

/// Everything of a stored text but its `meta` (the server's), as text.
fn without_meta(text: &str) -> String {
    let start = text.find(",\"meta\":{").expect("meta");
    let end = start + text[start..].find('}').expect("end of meta") + 1;
    format!("{}{}", &text[..start], &text[end..])
}

#[tokio::test]
async fn the_job_marks_an_overdue_task_once_keeping_the_clients_text() {
    let app = spawn_app().await;
    let body = r#"{"resourceType":"Task","id":"late","status":"requested","intent":"order",
        "for":{"reference":"Patient/p1"},"restriction":{"period":{"end":"2020-01-01"}},
        "input":[{"type":{"text":"dose"},"valueDecimal":1.50}],"description":"Call \u00e9 back"}"#;
    let created = app.send(Method::PUT, "Task/late", body.to_owned()).await;
    assert_eq!(created.status(), 201);
    let before = app.get("Task/late").await.text().await.expect("text");
    put_task(&app, "in-time", "requested", due("2099-01-01")).await;
    put_task(&app, "done", "completed", due("2020-01-01")).await;

    let first = app.jobs.mark_overdue_once().await.expect("the job runs");
    let second = app.jobs.mark_overdue_once().await.expect("the job runs again");

    assert_eq!((first.candidates, first.marked, first.failed), (1, 1, 0));
    assert_eq!((second.candidates, second.marked), (0, 0));
    let after = app.get("Task/late").await.text().await.expect("text");
    let marked: Value = serde_json::from_str(&after).expect("JSON");
    assert_eq!(marked["meta"]["versionId"], "2");
    assert_eq!(
        marked["businessStatus"],
        json!({"coding": [{"system": OVERDUE_SYSTEM, "code": "overdue", "display": "Overdue"}], "text": "Overdue"})
    );
    assert!(after.contains(r#""valueDecimal":1.50"#), "{after}");
    let appended = format!(",\"businessStatus\":{}}}", marked["businessStatus"]);
    let unchanged = without_meta(&before);
    assert_eq!(without_meta(&after), format!("{}{appended}", &unchanged[..unchanged.len() - 1]));
    assert_eq!(app.history_len("Task/late/_history").await, 2);
    assert_eq!(version_of(&app, "Task/in-time").await, "1");
    assert_eq!(version_of(&app, "Task/done").await, "4");
    let found = id_set(&app, &format!("Task?business-status={OVERDUE_SYSTEM}|overdue")).await;
    assert_eq!(found, set(&["late"]));
    // The mark has its Provenance, naming the job as the agent.
    let provenance: Value = app.get("Provenance?target=Task/late").await.json().await.expect("JSON");
    let entries = provenance["entry"].as_array().expect("Provenance of Task/late");
    let marks: Vec<&Value> = entries
        .iter()
        .map(|e| &e["resource"])
        .filter(|p| p["target"][0]["reference"] == "Task/late/_history/2")
        .collect();
    assert_eq!(marks.len(), 1, "{provenance}");
    let record = marks[0];
    assert_eq!(record["activity"]["coding"][0]["code"], "UPDATE");
    assert_eq!(record["agent"][0]["who"]["display"], "careplan service: overdue job");
    assert_eq!(record["recorded"], marked["meta"]["lastUpdated"]);
}

#[tokio::test]
async fn concurrent_job_runs_mark_each_overdue_task_exactly_once() {
    let app = spawn_app().await;
    let late: Vec<String> = (0..15).map(|n| format!("late-{n:02}")).collect();
    for (n, id) in late.iter().enumerate() {
        let status = ["requested", "accepted", "in-progress"][n % 3];
        put_task(&app, id, status, due("2021-03-04")).await;
    }
    put_task(&app, "in-time", "accepted", due("2099-01-01")).await;
    let mut versions_before = Vec::new();
    for id in &late {
        versions_before.push(version_of(&app, &format!("Task/{id}")).await);
    }

    let runs = join_all((0..4).map(|_| app.jobs.mark_overdue_once())).await;

    let marked: u64 = runs.iter().map(|r| r.as_ref().expect("the job runs").marked).sum();
    assert_eq!(marked, 15, "{runs:?}");
    assert!(runs.iter().all(|r| r.as_ref().is_ok_and(|r| r.failed == 0)), "{runs:?}");
    for (id, before) in late.iter().zip(versions_before) {
        let now: u64 = version_of(&app, &format!("Task/{id}")).await.parse().expect("a number");
        assert_eq!(now, before.parse::<u64>().expect("a number") + 1, "Task/{id} gained one version");
    }
    assert_eq!(version_of(&app, "Task/in-time").await, "2");
    assert_eq!(app.jobs.mark_overdue_once().await.expect("runs").candidates, 0);
}

#[tokio::test]
async fn the_job_runs_on_its_timer_when_configured() {
    let app = spawn_with(|settings| settings.overdue_interval = Duration::from_millis(100)).await;
    put_task(&app, "late", "requested", due("2020-01-01")).await;

    // The timer is what this test is about: look until it has run.
    let marked = eventually(Duration::from_secs(5), Duration::from_millis(20), async || {
        (version_of(&app, "Task/late").await == "2").then_some(())
    })
    .await;
    assert!(marked.is_some(), "the timer marked the Task");

    // Once more, on demand, beside the timer: nothing left to mark.
    let again = app.jobs.mark_overdue_once().await.expect("the overdue job runs");
    assert_eq!((again.candidates, again.marked), (0, 0), "{again:?}");
    assert_eq!(app.history_len("Task/late/_history").await, 2, "marked once, however often the job runs");
}

#[tokio::test]
async fn the_overdue_search_parameter_is_declared_and_served() {
    let app = spawn_app().await;

    let statement: Value = app.get("metadata").await.json().await.expect("JSON");
    let task = statement["rest"][0]["resource"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "Task"))
        .cloned()
        .expect("Task");
    let declared = task["searchParam"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "overdue")).cloned();
    let definition = app.get("SearchParameter/Task-overdue").await;
    let unknown = app.get("SearchParameter/Task-owner").await;

    let declared = declared.expect("overdue is declared");
    assert_eq!(declared["type"], "token");
    assert_eq!(definition.status(), 200);
    let definition: Value = definition.json().await.expect("JSON");
    assert_eq!(definition["resourceType"], "SearchParameter");
    assert_eq!(definition["url"], declared["definition"]);
    assert_eq!(definition["url"], "http://careplan.example/fhir/SearchParameter/Task-overdue");
    assert_eq!(definition["code"], "overdue");
    assert_eq!(unknown.status(), 404);
}

/// A plan with a team, Tasks based on it (one overdue, one with sub-tasks two levels deep, one
/// done) and a Task of another plan.
async fn seed_plan(app: &TestApp) {
    let team = json!({"resourceType": "CareTeam", "id": "team-amy", "status": "active", "name": "Amy's <complex> care team",
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"role": [{"text": "Care coordinator"}], "member": {"reference": "Practitioner/lee", "display": "Nurse Lee"},
             "period": {"start": "2026-01-02"}},
            {"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "133932002", "display": "Caregiver (person)"}]}],
             "member": {"reference": "RelatedPerson/mother", "display": "Amy's mother"}}]});
    let plan = json!({"resourceType": "CarePlan", "id": "plan-amy", "status": "active", "intent": "plan",
        "title": "Amy & family's plan", "subject": {"reference": "Patient/p1"},
        "careTeam": [{"reference": "CareTeam/team-amy"}]});
    let other = json!({"resourceType": "CarePlan", "id": "plan-other", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/p1"}});
    for resource in [team, plan, other] {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        let response = app.put(&path, &resource).await;
        assert_eq!(response.status(), 201, "{path}");
    }
    let on_plan = |plan: &str, extra: Value| {
        let mut body = json!({"basedOn": [{"reference": format!("CarePlan/{plan}")}]});
        for (key, value) in extra.as_object().into_iter().flatten() {
            body[key] = value.clone();
        }
        body
    };
    put_task(
        app,
        "call",
        "requested",
        on_plan(
            "plan-amy",
            json!({"description": "Follow-up call <urgent>",
        "restriction": {"period": {"end": "2020-01-01"}}}),
        ),
    )
    .await;
    put_task(
        app,
        "ride",
        "accepted",
        on_plan(
            "plan-amy",
            json!({"description": "Arrange transportation",
        "restriction": {"period": {"end": "2099-01-01"}}}),
        ),
    )
    .await;
    put_task(app, "intake", "completed", on_plan("plan-amy", json!({"description": "Intake"}))).await;
    put_task(app, "taxi", "requested", json!({"partOf": [{"reference": "Task/ride"}], "description": "Book the taxi"}))
        .await;
    put_task(
        app,
        "receipt",
        "requested",
        json!({"partOf": [{"reference": "Task/taxi"}], "description": "Keep the receipt"}),
    )
    .await;
    put_task(app, "elsewhere", "requested", on_plan("plan-other", json!({"description": "Unrelated"}))).await;
}

#[tokio::test]
async fn the_plan_summary_holds_the_plan_its_team_its_tasks_and_their_sub_tasks_with_a_narrative() {
    let app = spawn_app().await;
    seed_plan(&app).await;
    let stored_plan = app.get("CarePlan/plan-amy").await.text().await.expect("text");

    let response = app.get("CarePlan/plan-amy/$summary").await;

    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("text");
    let bundle: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    let entries = bundle["entry"].as_array().expect("entries");
    let composition = &entries[0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert!(entries[0]["fullUrl"].as_str().is_some_and(|u| u.starts_with("urn:uuid:")));
    assert_eq!(entries[1]["resource"]["id"], "plan-amy");
    let (provenance, resources): (Vec<&Value>, Vec<&Value>) =
        entries[1..].iter().partition(|e| e["resource"]["resourceType"] == "Provenance");
    let members: BTreeSet<String> = resources
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or_default(),
                e["resource"]["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let expected = [
        "CarePlan/plan-amy",
        "CareTeam/team-amy",
        "Task/call",
        "Task/ride",
        "Task/intake",
        "Task/taxi",
        "Task/receipt",
    ];
    assert_eq!(members, set(&expected));
    // Every write left a Provenance: one per version of each member, and none of anything else.
    let targets: BTreeSet<String> = provenance
        .iter()
        .map(|p| {
            let target = p["resource"]["target"][0]["reference"].as_str().unwrap_or_default();
            target.split("/_history/").next().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(targets, set(&expected));
    assert!(entries[1..].iter().all(|e| e["fullUrl"].as_str().is_some_and(|u| u.starts_with(&app.base))));
    // The stored text, not a re-serialisation: the plan is in the Bundle byte for byte.
    assert!(text.contains(&stored_plan), "the plan's stored text");

    let div = composition["text"]["div"].as_str().expect("a narrative");
    for expected in [
        "<div xmlns=\"http://www.w3.org/1999/xhtml\">",
        "Amy &amp; family&#39;s plan",
        "Amy&#39;s &lt;complex&gt; care team",
        "Nurse Lee — Care coordinator (since 2026-01-02)",
        "Amy&#39;s mother — Caregiver (person)",
        "Follow-up call &lt;urgent&gt; — owner Practitioner/lee; due 2020-01-01 <b>(overdue)</b>",
        "Arrange transportation — owner Practitioner/lee; due 2099-01-01",
        "Book the taxi — owner Practitioner/lee; no due date; part of Task/ride",
        "Keep the receipt",
        "Not open: 1 completed.",
        "<h3>Overdue</h3><p>1 overdue:</p>",
        &format!("<h3>Recent changes</h3><p>{} recorded changes; the latest 10:</p>", provenance.len()),
    ] {
        assert!(div.contains(expected), "{expected:?} in {div}");
    }
    assert!(!div.contains("Unrelated") && !div.contains("<urgent>"), "{div}");
    let sections = composition["section"].as_array().expect("sections");
    let overdue = sections.iter().find(|s| s["title"] == "Overdue").expect("an overdue section");
    assert_eq!(overdue["entry"], json!([{"reference": app.url("Task/call")}]));
}

#[tokio::test]
async fn the_summary_of_an_unknown_plan_is_404_and_of_a_deleted_one_410() {
    let app = spawn_app().await;
    let plan = json!({"resourceType": "CarePlan", "id": "gone", "status": "active", "intent": "plan",
        "subject": {"reference": "Patient/p1"}});
    assert_eq!(app.put("CarePlan/gone", &plan).await.status(), 201);
    assert_eq!(app.delete("CarePlan/gone").await.status(), 204);

    let unknown = app.get("CarePlan/nothing/$summary").await;
    let deleted = app.get("CarePlan/gone/$summary").await;
    let posted = app.send(Method::POST, "CarePlan/gone/$summary", "{}".to_owned()).await;
    let on_task = app.get("Task/x/$summary").await;

    assert_eq!(unknown.status(), 404);
    assert_outcome(&unknown.json().await.expect("JSON"), "not-found", None);
    assert_eq!(deleted.status(), 410);
    assert_outcome(&deleted.json().await.expect("JSON"), "deleted", None);
    assert_eq!(posted.status(), 405);
    assert_eq!(on_task.status(), 404);
}
