//! Plan templates (issue 15): PlanDefinition and ActivityDefinition hosted through their
//! descriptors, `PlanDefinition/[id]/$apply` storing a CarePlan, a CareTeam and Tasks in one
//! transaction, and the seed templates that `careplan templates load` stores.

use reqwest::Method;
use serde_json::{json, Value};
use time::{Date, Duration, Month, OffsetDateTime};

use crate::helpers::{assert_outcome, header, spawn_app, TestApp};
use crate::lifecycle::{careplan, own_database, serve};

const ENROLLMENT: &str = "http://careplan.example/fhir/PlanDefinition/complex-care-enrollment";
const TRANSITION: &str = "http://careplan.example/fhir/PlanDefinition/transition-to-adult-care";
const ACTIVITY: &str = "http://careplan.example/fhir/CodeSystem/care-coordination-activity";

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn text(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// `date` plus whole months, keeping the day (or the month's last).
fn plus_months(date: Date, months: i32) -> Date {
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).expect("month")).expect("month");
    let year = index.div_euclid(12);
    Date::from_calendar_date(year, month, date.day().min(month.length(year))).expect("date")
}

/// Store the seed templates as a client would: POST each seed Bundle (a transaction).
async fn load_seeds(app: &TestApp) {
    for (name, text) in service::templates::SEEDS {
        let response = app.send(Method::POST, "", text.to_owned()).await;
        assert_eq!(response.status(), 200, "{name}: {}", response.text().await.unwrap_or_default());
    }
}

async fn search(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app.get(query).await;
    assert_eq!(response.status(), 200, "{query}");
    let bundle: Value = response.json().await.expect("Bundle");
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries.iter().filter(|e| e["search"]["mode"] != "include").map(|e| e["resource"].clone()).collect()
        })
        .unwrap_or_default()
}

async fn id_of(app: &TestApp, url: &str) -> String {
    let found = search(app, &format!("PlanDefinition?url={url}")).await;
    assert_eq!(found.len(), 1, "one PlanDefinition {url}");
    found[0]["id"].as_str().expect("id").to_owned()
}

/// How many CarePlans, CareTeams, Tasks and Provenances are stored.
async fn counts(app: &TestApp) -> Vec<usize> {
    let mut out = Vec::new();
    for ty in ["CarePlan", "CareTeam", "Task", "Provenance"] {
        out.push(search(app, &format!("{ty}?_count=1000")).await.len());
    }
    out
}

fn code_of(task: &Value) -> &str {
    task["code"]["coding"][0]["code"].as_str().unwrap_or_default()
}

fn due(task: &Value) -> (Option<&str>, Option<&str>) {
    let period = &task["restriction"]["period"];
    (period["start"].as_str(), period["end"].as_str())
}

#[tokio::test]
async fn plan_and_activity_definitions_are_stored_as_sent_and_searched_by_url_name_status_and_definition() {
    let app = spawn_app().await;
    let activity = json!({
        "resourceType": "ActivityDefinition",
        "url": "http://example.org/ActivityDefinition/call",
        "version": "3",
        "name": "Call",
        "title": "Call the family",
        "status": "draft",
        "kind": "Task",
        "topic": [{ "coding": [{ "system": "http://example.org/topics", "code": "outreach" }] }]
    });
    let created = app.create(&activity).await;
    let activity_id = created["id"].as_str().expect("id").to_owned();
    let plan = json!({
        "resourceType": "PlanDefinition",
        "url": "http://example.org/PlanDefinition/outreach",
        "version": "1.0.0",
        "name": "Outreach",
        "title": "Outreach plan",
        "status": "active",
        "date": "2026-11-24",
        "action": [{ "title": "Call", "definitionCanonical": "http://example.org/ActivityDefinition/call" }]
    });
    let created = app.create(&plan).await;
    let plan_id = created["id"].as_str().expect("id").to_owned();

    let mut read: Value = app.get(&format!("PlanDefinition/{plan_id}")).await.json().await.expect("JSON");
    read.as_object_mut().expect("object").retain(|k, _| k != "meta" && k != "id");
    assert_eq!(read, plan, "read back as sent");

    for (query, expected) in [
        ("PlanDefinition?url=http://example.org/PlanDefinition/outreach", &plan_id),
        ("PlanDefinition?name=outr", &plan_id),
        ("PlanDefinition?status=active&version=1.0.0", &plan_id),
        ("PlanDefinition?definition=http://example.org/ActivityDefinition/call", &plan_id),
        ("PlanDefinition?date=2026-11-24", &plan_id),
        ("ActivityDefinition?url=http://example.org/ActivityDefinition/call&version=3", &activity_id),
        ("ActivityDefinition?title=call&status=draft", &activity_id),
        ("ActivityDefinition?topic=http://example.org/topics|outreach", &activity_id),
    ] {
        let found = search(&app, query).await;
        let ids: Vec<&str> = found.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, [expected.as_str()], "{query}");
    }
    assert!(search(&app, "PlanDefinition?status=retired").await.is_empty());

    let bad = app
        .post("PlanDefinition", &json!({ "resourceType": "PlanDefinition", "status": "active", "colour": "red" }))
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(app.delete(&format!("ActivityDefinition/{activity_id}")).await.status(), 204);
    assert_eq!(app.get(&format!("ActivityDefinition/{activity_id}")).await.status(), 410);
}

#[tokio::test]
async fn applying_the_enrollment_template_stores_a_plan_its_team_and_a_task_per_service_due_from_today() {
    let app = spawn_app().await;
    load_seeds(&app).await;
    let id = id_of(&app, ENROLLMENT).await;

    let response = app
        .get(&format!("PlanDefinition/{id}/$apply?subject=Patient/enrolled&practitioner=Practitioner/coordinator"))
        .await;
    assert_eq!(response.status(), 201, "applied");
    let location = header(&response, "location");
    let plan: Value = response.json().await.expect("CarePlan");
    let plan_id = plan["id"].as_str().expect("id").to_owned();
    assert!(location.ends_with(&format!("/CarePlan/{plan_id}/_history/1")), "{location}");
    assert_eq!(plan["resourceType"], "CarePlan");
    assert_eq!(plan["instantiatesCanonical"], json!([format!("{ENROLLMENT}|1.0.0")]));
    assert_eq!((plan["status"].as_str(), plan["intent"].as_str()), (Some("active"), Some("plan")));
    assert_eq!(plan["subject"], json!({ "reference": "Patient/enrolled" }));
    assert_eq!(plan["author"], json!({ "reference": "Practitioner/coordinator" }));

    // The CareTeam: the roles of the template's participants, no members yet.
    let team_ref = plan["careTeam"][0]["reference"].as_str().expect("careTeam").to_owned();
    assert!(team_ref.starts_with("CareTeam/"), "{team_ref}");
    let team: Value = app.get(&team_ref).await.json().await.expect("CareTeam");
    assert_eq!(team["subject"], json!({ "reference": "Patient/enrolled" }));
    let roles: Vec<&str> = team["participant"]
        .as_array()
        .expect("participants")
        .iter()
        .map(|p| {
            assert!(p.get("member").is_none(), "no members yet: {p}");
            p["role"][0]["text"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(roles, ["Care coordinator", "Social worker", "Community health worker", "Parent advocate"]);

    // A Task per service, found by the plan they are based on, each in the plan's activities.
    let tasks = search(&app, &format!("Task?based-on=CarePlan/{plan_id}&_count=100")).await;
    let activity: Vec<&str> = plan["activity"]
        .as_array()
        .expect("activity")
        .iter()
        .filter_map(|a| a["reference"]["reference"].as_str())
        .collect();
    assert_eq!(activity.len(), 6);
    let today = today();
    let expected = [
        ("intake", today + Duration::days(7)),
        ("insurance-benefits-assistance", today + Duration::days(14)),
        ("transportation-arrangement", today + Duration::days(14)),
        ("parent-coaching", today + Duration::days(30)),
        ("care-conference", plus_months(today, 1)),
        ("follow-up-call", today + Duration::days(14)),
    ];
    assert_eq!(tasks.len(), expected.len());
    for (code, due_date) in expected {
        let task = tasks.iter().find(|t| code_of(t) == code).unwrap_or_else(|| panic!("a Task {code}"));
        let task_ref = format!("Task/{}", task["id"].as_str().expect("id"));
        assert!(activity.contains(&task_ref.as_str()), "{task_ref} is an activity of the plan");
        assert_eq!(task["code"]["coding"][0]["system"], ACTIVITY, "{code}");
        assert_eq!(task["for"], json!({ "reference": "Patient/enrolled" }), "{code}");
        assert_eq!(task["basedOn"], json!([{ "reference": format!("CarePlan/{plan_id}") }]), "{code}");
        assert_eq!((task["status"].as_str(), task["intent"].as_str()), (Some("requested"), Some("order")), "{code}");
        assert_eq!(task["requester"], json!({ "reference": "Practitioner/coordinator" }), "{code}");
        assert!(task["performerType"][0]["text"].is_string(), "{code}: performer type");
        assert_eq!(due(task), (None, Some(text(due_date).as_str())), "{code}");
    }
    let intake = search(&app, &format!("Task?based-on=CarePlan/{plan_id}&code={ACTIVITY}|intake")).await;
    assert_eq!(intake.len(), 1, "searchable by code");

    // Every created resource has its Provenance.
    for reference in activity.iter().copied().chain([team_ref.as_str(), format!("CarePlan/{plan_id}").as_str()]) {
        let provenance = search(&app, &format!("Provenance?target={reference}")).await;
        assert_eq!(provenance.len(), 1, "the Provenance of {reference}");
    }
}

#[tokio::test]
async fn the_transition_track_dates_its_steps_by_the_patients_age() {
    let app = spawn_app().await;
    load_seeds(&app).await;
    let id = id_of(&app, TRANSITION).await;
    let today = today();
    let born = plus_months(today, -15 * 12);
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "subject", "valueReference": { "reference": "Patient/teen" } },
        { "name": "organization", "valueString": "Organization/clinic" },
        { "name": "birthDate", "valueDate": text(born) },
    ]});
    let response = app.post(&format!("PlanDefinition/{id}/$apply"), &parameters).await;
    assert_eq!(response.status(), 201);
    let plan: Value = response.json().await.expect("CarePlan");
    let plan_id = plan["id"].as_str().expect("id");
    let tasks = search(&app, &format!("Task?based-on=CarePlan/{plan_id}")).await;
    let at = |years: i32| text(plus_months(born, years * 12));
    let now = text(today);
    let expected = [
        // Ages 12 to 14 have passed: due now.
        ("transition-policy", (Some(now.clone()), Some(now.clone()))),
        ("transition-tracking", (Some(now.clone()), Some(at(18)))),
        ("transition-readiness", (None, Some(now.clone()))),
        ("transition-planning", (Some(now.clone()), Some(at(18)))),
        ("transition-transfer", (Some(at(18)), Some(at(21)))),
        // 3 to 6 months after the transfer's end.
        (
            "transition-completion",
            (Some(text(plus_months(born, 21 * 12 + 3))), Some(text(plus_months(born, 21 * 12 + 6)))),
        ),
    ];
    assert_eq!(tasks.len(), expected.len());
    for (code, (start, end)) in expected {
        let task = tasks.iter().find(|t| code_of(t) == code).unwrap_or_else(|| panic!("a Task {code}"));
        assert_eq!(due(task), (start.as_deref(), end.as_deref()), "{code}");
        assert_eq!(task["requester"], json!({ "reference": "Organization/clinic" }), "{code}");
    }

    // By age instead: a 13-year-old's policy step is due at 14, a year from now.
    let response = app.get(&format!("PlanDefinition/{id}/$apply?subject=Patient/younger&age=13")).await;
    assert_eq!(response.status(), 201);
    let plan: Value = response.json().await.expect("CarePlan");
    let tasks = search(&app, &format!("Task?based-on=CarePlan/{}", plan["id"].as_str().expect("id"))).await;
    let policy = tasks.iter().find(|t| code_of(t) == "transition-policy").expect("policy");
    assert_eq!(due(policy).1, Some(text(plus_months(today, 12)).as_str()));
}

#[tokio::test]
async fn a_bad_apply_is_refused_with_an_outcome_and_creates_nothing() {
    let app = spawn_app().await;
    load_seeds(&app).await;
    let enrollment = id_of(&app, ENROLLMENT).await;
    let transition = id_of(&app, TRANSITION).await;
    let unresolvable = app
        .create(&json!({
            "resourceType": "PlanDefinition",
            "status": "active",
            "action": [
                { "title": "Known", "definitionCanonical": "http://careplan.example/fhir/ActivityDefinition/intake" },
                { "title": "Unknown", "definitionCanonical": "http://example.org/ActivityDefinition/nowhere" }
            ]
        }))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let many: Vec<Value> = (0..=100).map(|i| json!({ "title": format!("Step {i}") })).collect();
    let too_many = app.create(&json!({ "resourceType": "PlanDefinition", "status": "active", "action": many })).await
        ["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = counts(&app).await;

    for (path, status, code, expression) in [
        ("PlanDefinition/nothing-here/$apply?subject=Patient/p1".to_owned(), 404, "not-found", None),
        (format!("PlanDefinition/{enrollment}/$apply"), 400, "required", Some("subject")),
        (format!("PlanDefinition/{enrollment}/$apply?subject=Group/g1"), 400, "value", Some("subject")),
        (
            format!("PlanDefinition/{enrollment}/$apply?subject=Patient/p1&subject=Patient/p2"),
            400,
            "invalid",
            Some("subject"),
        ),
        (format!("PlanDefinition/{enrollment}/$apply?subject=Patient/p1&age=old"), 400, "value", Some("age")),
        (format!("PlanDefinition/{transition}/$apply?subject=Patient/p1"), 400, "required", Some("birthDate")),
        (
            format!("PlanDefinition/{unresolvable}/$apply?subject=Patient/p1"),
            422,
            "business-rule",
            Some("PlanDefinition.action[1].definitionCanonical"),
        ),
        (
            format!("PlanDefinition/{too_many}/$apply?subject=Patient/p1"),
            422,
            "too-costly",
            Some("PlanDefinition.action"),
        ),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.expect("OperationOutcome");
        assert_outcome(&body, code, expression);
    }
    let malformed =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "subject", "valueString": "Patient/" }] });
    let response = app.post(&format!("PlanDefinition/{enrollment}/$apply"), &malformed).await;
    assert_eq!(response.status(), 400);
    assert_outcome(
        &response.json().await.expect("OperationOutcome"),
        "value",
        Some("Parameters.parameter[0].valueString"),
    );

    assert_eq!(counts(&app).await, before, "nothing was created");
}

#[tokio::test]
async fn templates_load_twice_stores_each_template_once_updating_it_in_place() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = own_database(dir.path());
    for run in 1..=2 {
        let output = careplan(&["templates", "load"])
            .envs(database.iter().map(|(name, value)| (*name, value.as_str())))
            .output()
            .expect("careplan templates load runs");
        assert!(output.status.success(), "run {run}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let served = serve(&database);
    let client = reqwest::Client::new();
    let get = |query: String| {
        let request = client.get(format!("http://127.0.0.1:{}/fhir/{query}", served.port));
        async move { request.send().await.expect("reaches the server").json::<Value>().await.expect("JSON") }
    };
    for url in [ENROLLMENT, TRANSITION] {
        let bundle = get(format!("PlanDefinition?url={url}")).await;
        let entries = bundle["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "{url} is stored once");
        assert_eq!(entries[0]["resource"]["meta"]["versionId"], "2", "{url} was updated in place");
    }
    let activities = get("ActivityDefinition?_count=100".to_owned()).await;
    assert_eq!(activities["entry"].as_array().map(Vec::len), Some(12), "six steps in each template, stored once");
}
