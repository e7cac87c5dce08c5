//! Search: a data-driven table of queries and the ids they must find, on a small shared care
//! plan, plus includes, paging, result controls and bad parameters.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, spawn_app, TestApp};

/// Two children's plans, teams and tasks, with ids the table can name.
async fn seed(app: &TestApp) {
    let resources = [
        json!({"resourceType": "CareTeam", "id": "team-1", "status": "active", "subject": {"reference": "Patient/p1"},
               "category": [{"coding": [{"system": "http://loinc.org", "code": "LA27976-2", "display": "Encounter-focused care team"}]}],
               "participant": [{"member": {"reference": "Practitioner/nurse"}}, {"member": {"reference": "RelatedPerson/mother"}}]}),
        json!({"resourceType": "CareTeam", "id": "team-2", "status": "inactive", "subject": {"reference": "Patient/p2"}}),
        json!({"resourceType": "CarePlan", "id": "plan-1", "status": "active", "intent": "plan",
               "meta": {"tag": [{"system": "http://example.org/tags", "code": "pilot"}],
                        "profile": ["http://example.org/StructureDefinition/shared-plan"],
                        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                        "source": "http://ehr.example.org"},
               "subject": {"reference": "Patient/p1"}, "careTeam": [{"reference": "CareTeam/team-1"}],
               "identifier": [{"system": "http://example.org/plans", "value": "A1"}],
               "instantiatesUri": ["http://example.org/protocols/complex-care"],
               "category": [{"coding": [{"system": "http://example.org/cat", "code": "assess-plan", "display": "Assessment and Plan"}]}],
               "period": {"start": "2026-01-01", "end": "2026-06-30"}}),
        json!({"resourceType": "CarePlan", "id": "plan-2", "status": "completed", "intent": "plan",
               "subject": {"reference": "Patient/p2"}, "period": {"start": "2025-01-01", "end": "2025-12-31"}}),
        json!({"resourceType": "CarePlan", "id": "plan-3", "status": "draft", "intent": "proposal",
               "subject": {"reference": "http://ehr.example.org/fhir/Patient/p1"}, "basedOn": [{"reference": "CarePlan/plan-1"}],
               "activity": [{"detail": {"status": "scheduled", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183524004"}]},
                                        "scheduledPeriod": {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T10:00:00Z"}}}]}),
        json!({"resourceType": "Task", "id": "task-1", "status": "requested", "intent": "order", "priority": "routine",
               "for": {"reference": "Patient/p1"}, "owner": {"reference": "Practitioner/nurse"},
               "basedOn": [{"reference": "CarePlan/plan-1"}], "code": {"coding": [{"system": "http://example.org/task", "code": "follow-up"}]},
               "identifier": [{"system": "http://example.org/tasks", "value": "T-100",
                               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}]}}],
               "authoredOn": "2026-02-01T10:00:00+01:00"}),
        json!({"resourceType": "Task", "id": "task-2", "status": "in-progress", "intent": "order", "priority": "urgent",
               "for": {"reference": "Patient/p1"}, "owner": {"reference": "Practitioner/sw"},
               "basedOn": [{"reference": "CarePlan/plan-1"}], "code": {"coding": [{"system": "http://example.org/task", "code": "transport"}]},
               "requester": {"identifier": {"system": "http://example.org/npi", "value": "123"}},
               "authoredOn": "2026-02-03T08:00:00Z"}),
        json!({"resourceType": "Task", "id": "task-3", "status": "completed", "intent": "order",
               "for": {"reference": "Patient/p2"}, "owner": {"reference": "Practitioner/nurse"},
               "basedOn": [{"reference": "CarePlan/plan-2"}], "partOf": [{"reference": "Task/task-2"}],
               "code": {"coding": [{"system": "http://example.org/task", "code": "follow-up"}]},
               "authoredOn": "2025-05-05"}),
    ];
    for resource in resources {
        let path =
            format!("{}/{}", resource["resourceType"].as_str().expect("type"), resource["id"].as_str().expect("id"));
        let response = app.put(&path, &resource).await;
        assert_eq!(response.status(), 201, "{path}: {}", response.text().await.unwrap_or_default());
    }
}

async fn ids(app: &TestApp, query: &str) -> BTreeSet<String> {
    let response = app.get(query).await;
    assert_eq!(response.status(), 200, "{query}: {}", response.text().await.unwrap_or_default());
    let bundle: Value = response.json().await.expect("Bundle");
    assert_eq!(bundle["type"], "searchset", "{query}");
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

const CASES: &[(&str, &[&str])] = &[
    ("CarePlan", &["plan-1", "plan-2", "plan-3"]),
    ("CarePlan?patient=p1", &["plan-1", "plan-3"]),
    ("CarePlan?patient=Patient/p1&status=active", &["plan-1"]),
    ("CarePlan?subject=Patient/p2", &["plan-2"]),
    ("CarePlan?subject:Patient=p2", &["plan-2"]),
    ("CarePlan?status=active,completed", &["plan-1", "plan-2"]),
    ("CarePlan?status=active&status=completed", &[]),
    ("CarePlan?status:not=active", &["plan-2", "plan-3"]),
    ("CarePlan?intent=proposal", &["plan-3"]),
    ("CarePlan?care-team=CareTeam/team-1", &["plan-1"]),
    ("CarePlan?care-team=team-1", &["plan-1"]),
    ("CarePlan?based-on=plan-1", &["plan-3"]),
    ("CarePlan?identifier=http://example.org/plans|A1", &["plan-1"]),
    ("CarePlan?identifier=A1", &["plan-1"]),
    ("CarePlan?identifier=http://other.org|A1", &[]),
    ("CarePlan?category=http://example.org/cat|assess-plan", &["plan-1"]),
    ("CarePlan?category=http://example.org/cat|", &["plan-1"]),
    ("CarePlan?category=|assess-plan", &[]),
    ("CarePlan?category:text=assessment", &["plan-1"]),
    ("CarePlan?activity-code=http://snomed.info/sct|183524004", &["plan-3"]),
    ("CarePlan?activity-date=2026-03-01", &["plan-3"]),
    ("CarePlan?date=2026", &["plan-1"]),
    ("CarePlan?date=ge2026-03-01", &["plan-1"]),
    ("CarePlan?date=lt2026-01-01", &["plan-2"]),
    ("CarePlan?date=sa2025-12-31", &["plan-1"]),
    ("CarePlan?date=eb2026-01-01", &["plan-2"]),
    ("CarePlan?date=ne2026", &["plan-2"]),
    ("CarePlan?date:missing=true", &["plan-3"]),
    ("CarePlan?date:missing=false", &["plan-1", "plan-2"]),
    ("CarePlan?instantiates-uri=http://example.org/protocols/complex-care", &["plan-1"]),
    ("CarePlan?instantiates-uri:below=http://example.org/protocols", &["plan-1"]),
    ("CarePlan?instantiates-uri:above=http://example.org/protocols/complex-care/v2", &["plan-1"]),
    ("CarePlan?care-team.participant=Practitioner/nurse", &["plan-1"]),
    ("CarePlan?_has:Task:based-on:status=in-progress", &["plan-1"]),
    ("CarePlan?_has:Task:based-on:owner=Practitioner/nurse", &["plan-1", "plan-2"]),
    ("CarePlan?_id=plan-1,plan-2", &["plan-1", "plan-2"]),
    ("CareTeam?participant=RelatedPerson/mother", &["team-1"]),
    ("CareTeam?status=inactive", &["team-2"]),
    ("CareTeam?category=LA27976-2", &["team-1"]),
    ("CareTeam?patient=p2", &["team-2"]),
    ("Task?owner=Practitioner/nurse", &["task-1", "task-3"]),
    ("Task?owner=Practitioner/nurse&status=requested,accepted,in-progress", &["task-1"]),
    ("Task?patient=p1&code=follow-up", &["task-1"]),
    ("Task?code=http://example.org/task|transport", &["task-2"]),
    ("Task?based-on:CarePlan.status=active", &["task-1", "task-2"]),
    ("Task?based-on:CarePlan.patient=p2", &["task-3"]),
    ("Task?part-of=task-2", &["task-3"]),
    ("Task?priority=routine", &["task-1"]),
    ("Task?authored-on=2026-02-01", &["task-1"]),
    ("Task?authored-on=gt2026-02-01", &["task-2"]),
    ("Task?authored-on=le2025-12-31", &["task-3"]),
    ("Task?_lastUpdated=gt2000-01-01&_id=task-1", &["task-1"]),
    ("Task?_lastUpdated=lt2000-01-01", &[]),
    ("CarePlan?_tag=http://example.org/tags|pilot", &["plan-1"]),
    ("CarePlan?_profile=http://example.org/StructureDefinition/shared-plan", &["plan-1"]),
    ("CarePlan?_security=http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", &["plan-1"]),
    ("CarePlan?_source=http://ehr.example.org", &["plan-1"]),
    ("Task?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|PLAC|T-100", &["task-1"]),
    ("Task?identifier=http://example.org/tasks|T-100", &["task-1"]),
    ("Task?requester:identifier=http://example.org/npi|123", &["task-2"]),
    ("Task?authored-on=ap2026-02-02", &["task-1", "task-2"]),
    ("Task?owner:missing=true", &[]),
    ("Task?requester:missing=true", &["task-1", "task-3"]),
];

#[tokio::test]
async fn every_case_in_the_table_finds_exactly_its_ids() {
    let app = spawn_app().await;
    seed(&app).await;

    let mut failures = Vec::new();
    for (query, expected) in CASES {
        let found = ids(&app, query).await;
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        if found != expected {
            failures.push(format!("{query}: expected {expected:?}, found {found:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_care_plan_view_includes_the_team_and_the_tasks() {
    let app = spawn_app().await;
    seed(&app).await;

    let bundle: Value = app
        .get("CarePlan?patient=p1&status=active&_include=CarePlan:care-team&_revinclude=Task:based-on")
        .await
        .json()
        .await
        .expect("Bundle");

    let entries = bundle["entry"].as_array().expect("entries");
    let by_mode = |mode: &str| -> BTreeSet<String> {
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == mode)
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap_or(""),
                    e["resource"]["id"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(by_mode("match"), BTreeSet::from(["CarePlan/plan-1".to_owned()]));
    assert_eq!(
        by_mode("include"),
        BTreeSet::from(["CareTeam/team-1".to_owned(), "Task/task-1".to_owned(), "Task/task-2".to_owned()])
    );
    assert_eq!(bundle["total"], 1);
}

#[tokio::test]
async fn iterate_follows_includes_of_included_resources() {
    let app = spawn_app().await;
    seed(&app).await;

    let bundle: Value = app
        .get("Task?_id=task-1&_include=Task:based-on&_include:iterate=CarePlan:care-team")
        .await
        .json()
        .await
        .expect("Bundle");

    let included: BTreeSet<String> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(included, BTreeSet::from(["plan-1".to_owned(), "team-1".to_owned()]));
}

#[tokio::test]
async fn a_wildcard_include_follows_every_reference_to_a_held_type() {
    let app = spawn_app().await;
    seed(&app).await;

    let bundle: Value = app.get("CarePlan?_id=plan-3&_include=*").await.json().await.expect("Bundle");

    let included: BTreeSet<String> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .map(|e| e["resource"]["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(included, BTreeSet::from(["plan-1".to_owned()]));
}

#[tokio::test]
async fn paging_visits_every_match_exactly_once_while_others_insert() {
    let app = spawn_app().await;
    for n in 0..7 {
        let body = json!({"resourceType": "Task", "status": "requested", "intent": "order", "description": format!("task {n}"),
                          "code": {"text": "paging"}, "for": {"reference": "Patient/paged"}});
        app.create(&body).await;
    }

    // Every match on one page: the total is that page's, with no count query behind it.
    let whole: Value = app.get("Task?patient=paged").await.json().await.expect("Bundle");
    assert_eq!((whole["total"].as_u64(), whole["entry"].as_array().map(Vec::len)), (Some(7), Some(7)));

    let mut seen = Vec::new();
    let mut page: Value = app.get("Task?patient=paged&_count=3").await.json().await.expect("Bundle");
    loop {
        // The first, middle and last pages all count every match.
        assert_eq!(page["total"], 7, "{page}");
        for entry in page["entry"].as_array().into_iter().flatten() {
            seen.push(entry["resource"]["id"].as_str().expect("id").to_owned());
        }
        app.create(&json!({"resourceType": "Task", "status": "draft", "intent": "order", "for": {"reference": "Patient/other"}})).await;
        let Some(next) = page["link"].as_array().and_then(|l| l.iter().find(|l| l["relation"] == "next")) else {
            break;
        };
        page = app
            .client
            .get(next["url"].as_str().expect("url"))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("Bundle");
    }

    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);
}

/// The ids of a page's matches, in order.
fn page_ids(page: &Value) -> Vec<String> {
    page["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"]["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn follow(app: &TestApp, page: &Value, relation: &str) -> Option<Value> {
    let link = page["link"].as_array()?.iter().find(|l| l["relation"] == relation)?;
    let response = app.client.get(link["url"].as_str()?).send().await.expect("sent");
    assert_eq!(response.status(), 200, "{relation} link answers");
    Some(response.json().await.expect("Bundle"))
}

#[tokio::test]
async fn previous_links_walk_back_through_the_same_pages() {
    let app = spawn_app().await;
    for n in 0..8 {
        let body = json!({"resourceType": "Task", "status": if n % 2 == 0 { "requested" } else { "accepted" },
                          "intent": "order", "for": {"reference": "Patient/walk"}});
        app.create(&body).await;
    }

    let mut forward = Vec::new();
    let mut page: Value =
        app.get("Task?patient=walk&_sort=status,-_lastUpdated&_count=3").await.json().await.expect("Bundle");
    assert!(follow(&app, &page, "previous").await.is_none(), "the first page has no previous link");
    loop {
        forward.push(page_ids(&page));
        match follow(&app, &page, "next").await {
            Some(next) => page = next,
            None => break,
        }
    }
    let mut backward = vec![page_ids(&page)];
    while let Some(previous) = follow(&app, &page, "previous").await {
        page = previous;
        backward.push(page_ids(&page));
    }
    backward.reverse();

    assert_eq!(forward.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
    assert_eq!(backward, forward, "walking back visits the same pages in the same order");
    assert_eq!(forward.concat().iter().collect::<BTreeSet<_>>().len(), 8);
}

#[tokio::test]
async fn sorting_by_a_date_and_by_last_updated_pages_in_order() {
    let app = spawn_app().await;
    seed(&app).await;

    let bundle: Value = app.get("Task?_sort=-authored-on&_count=2").await.json().await.expect("Bundle");
    let first: Vec<&str> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(first, ["task-2", "task-1"]);
    let next = bundle["link"].as_array().and_then(|l| l.iter().find(|l| l["relation"] == "next")).expect("next link");
    let rest: Value =
        app.client.get(next["url"].as_str().expect("url")).send().await.expect("sent").json().await.expect("Bundle");
    assert_eq!(rest["entry"][0]["resource"]["id"], "task-3");

    let by_update: Value = app.get("Task?_sort=-_lastUpdated").await.json().await.expect("Bundle");
    assert_eq!(by_update["entry"][0]["resource"]["id"], "task-3");
    let by_status: Value = app.get("Task?_sort=status").await.json().await.expect("Bundle");
    assert_eq!(by_status["entry"][0]["resource"]["status"], "completed");
}

#[tokio::test]
async fn summary_elements_and_total_shape_the_result() {
    let app = spawn_app().await;
    seed(&app).await;

    let count: Value = app.get("Task?_summary=count").await.json().await.expect("Bundle");
    assert_eq!(count["total"], 3);
    assert!(count.get("entry").is_none());

    let elements: Value = app.get("Task?_id=task-1&_elements=status").await.json().await.expect("Bundle");
    let task = &elements["entry"][0]["resource"];
    assert_eq!(task["status"], "requested");
    assert!(task.get("owner").is_none());
    assert_eq!(task["meta"]["tag"][0]["code"], "SUBSETTED");

    let summary: Value = app.get("CarePlan?_id=plan-3&_summary=true").await.json().await.expect("Bundle");
    let plan = &summary["entry"][0]["resource"];
    assert_eq!(plan["status"], "draft");
    assert!(plan.get("activity").is_none());

    let no_total: Value = app.get("Task?_total=none").await.json().await.expect("Bundle");
    assert!(no_total.get("total").is_none());
}

#[tokio::test]
async fn post_search_takes_form_parameters() {
    let app = spawn_app().await;
    seed(&app).await;

    let response = app
        .request(Method::POST, "Task/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("owner=Practitioner%2Fnurse&status=completed")
        .send()
        .await
        .expect("sent");

    assert_eq!(response.status(), 200);
    let bundle: Value = response.json().await.expect("Bundle");
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"]["id"], "task-3");
}

#[tokio::test]
async fn unknown_parameters_are_ignored_with_a_warning_unless_strict() {
    let app = spawn_app().await;
    seed(&app).await;

    let lenient: Value = app.get("Task?colour=red&status=completed").await.json().await.expect("Bundle");
    assert_eq!(lenient["total"], 1);
    let self_link = lenient["link"][0]["url"].as_str().expect("self");
    assert!(!self_link.contains("colour"), "{self_link}");
    let outcome = lenient["entry"].as_array().expect("entries").iter().find(|e| e["search"]["mode"] == "outcome");
    assert_eq!(outcome.expect("warning entry")["resource"]["issue"][0]["severity"], "warning");

    let strict =
        app.request(Method::GET, "Task?colour=red").header("prefer", "handling=strict").send().await.expect("sent");
    assert_eq!(strict.status(), 400);
    assert_outcome(&strict.json().await.expect("OperationOutcome"), "not-supported", Some("colour"));
}

#[tokio::test]
async fn malformed_values_are_always_refused() {
    let app = spawn_app().await;

    for query in [
        "Task?authored-on=2026-13-01",
        "Task?authored-on=xx2026",
        "Task?_count=many",
        "Task?status:missing=maybe",
        "Task?_sort=owner",
        "Task?_include=Task:status",
        "Task?_cursor=not-a-cursor",
        "CarePlan?_has:Task:status:status=done",
    ] {
        let response = app.get(query).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_outcome(&response.json().await.expect("OperationOutcome"), "value", None);
    }
}
