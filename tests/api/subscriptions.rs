//! Topic-based Subscriptions (Subscriptions Backport IG 1.1.0): subscribing, the handshake,
//! notifications delivered to a receiving HTTP server run here, filters, payloads, retries,
//! `$status` and `$events`, and what is refused.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use service::subscriptions::dispatch::Pass;

use crate::helpers::{assert_outcome, eventually, spawn_with, task, TestApp};

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
const TOPICS: &str = "http://careplan.example/fhir/SubscriptionTopic";

/// One notification as the receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Which hook of the receiver it reached (`/hook/{name}`).
    pub(crate) hook: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Value,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A parameter of the status Parameters that heads the Bundle.
    pub(crate) fn param(&self, name: &str) -> Value {
        status_param(&self.body, name)
    }

    pub(crate) fn kind(&self) -> String {
        self.param("type")["valueCode"].as_str().unwrap_or_default().to_owned()
    }

    /// (event number, focus reference) of each notification event.
    pub(crate) fn events(&self) -> Vec<(i64, String)> {
        events_of(&self.body)
    }
}

pub(crate) fn status_param(bundle: &Value, name: &str) -> Value {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn events_of(bundle: &Value) -> Vec<(i64, String)> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| {
            let part = |name: &str| p["part"].as_array().into_iter().flatten().find(|q| q["name"] == name).cloned();
            let number = part("event-number").and_then(|n| n["valueString"].as_str()?.parse().ok()).unwrap_or(-1);
            let focus = part("focus")
                .and_then(|f| f["valueReference"]["reference"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (number, focus)
        })
        .collect()
}

/// A receiving endpoint: records every POST to `/hook/{name}` and answers with the status set.
pub(crate) struct Receiver {
    /// `http://127.0.0.1:{port}/hook`: allow-list this prefix.
    pub(crate) base: String,
    got: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    /// Milliseconds to wait before answering.
    delay: Arc<AtomicU64>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let delay = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (recorded, answer, wait) = (got.clone(), status.clone(), delay.clone());
        let server = actix_web::HttpServer::new(move || {
            let (recorded, answer, wait) = (recorded.clone(), answer.clone(), wait.clone());
            actix_web::App::new().route(
                "/hook/{name}",
                actix_web::web::post().to(
                    move |req: actix_web::HttpRequest,
                          path: actix_web::web::Path<String>,
                          body: actix_web::web::Bytes| {
                        let (recorded, answer, wait) = (recorded.clone(), answer.clone(), wait.clone());
                        async move {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                                .collect();
                            let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let status = answer.load(Ordering::SeqCst);
                            recorded.lock().expect("lock").push(Received { hook: path.into_inner(), headers, body });
                            tokio::time::sleep(Duration::from_millis(wait.load(Ordering::SeqCst))).await;
                            actix_web::HttpResponse::build(
                                actix_web::http::StatusCode::from_u16(status).expect("status"),
                            )
                            .finish()
                        }
                    },
                ),
            )
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);
        Self { base: format!("http://127.0.0.1:{port}/hook"), got, status, delay }
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }

    /// Answer every notification from now on with `status`.
    pub(crate) fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Wait `ms` before answering each notification from now on.
    pub(crate) fn delay(&self, ms: u64) {
        self.delay.store(ms, Ordering::SeqCst);
    }

    /// What reached `hook` so far.
    pub(crate) fn at(&self, hook: &str) -> Vec<Received> {
        self.got.lock().expect("lock").iter().filter(|r| r.hook == hook).cloned().collect()
    }

    /// The event notifications that reached `hook`.
    pub(crate) fn notifications(&self, hook: &str) -> Vec<Received> {
        self.at(hook).into_iter().filter(|r| r.kind() == "event-notification").collect()
    }

    /// Wait (up to 15 s) until what reached `hook` satisfies `done`.
    pub(crate) async fn wait(&self, hook: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        eventually(Duration::from_secs(15), Duration::from_millis(10), async || {
            let got = self.at(hook);
            done(&got).then_some(got)
        })
        .await
        .unwrap_or_else(|| panic!("{hook}: never got what was expected; got {:#?}", self.at(hook)))
    }
}

/// A topic-based Subscription to `topic` delivering to `endpoint`.
pub(crate) fn subscription(topic: &str, endpoint: &str, filters: &[&str], content: &str) -> Value {
    let mut s = json!({
        "resourceType": "Subscription",
        "meta": { "profile": [format!("{BACKPORT}/backport-subscription")] },
        "status": "requested",
        "reason": "Tell the EHR",
        "criteria": format!("{TOPICS}/{topic}"),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": { "extension": [{ "url": format!("{BACKPORT}/backport-payload-content"), "valueCode": content }] },
            "header": ["X-Hook-Secret: s3cret"],
        },
    });
    if !filters.is_empty() {
        s["_criteria"] = json!({ "extension": filters.iter().map(|f| json!({
            "url": format!("{BACKPORT}/backport-filter-criteria"), "valueString": f })).collect::<Vec<_>>() });
    }
    s
}

/// A server that may deliver to `receiver`.
async fn app_for(receiver: &Receiver) -> TestApp {
    let allowed = receiver.base.clone();
    spawn_with(move |s| s.subscriptions.endpoints = vec![allowed].into()).await
}

/// Subscribe and wait until the handshake made the subscription active; returns its id.
async fn subscribe(app: &TestApp, receiver: &Receiver, hook: &str, body: Value) -> String {
    let created = app.create(&body).await;
    let id = created["id"].as_str().expect("id").to_owned();
    receiver.wait(hook, |got| got.iter().any(|r| r.kind() == "handshake")).await;
    wait_status(app, &id, "active").await;
    id
}

async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    eventually(Duration::from_secs(15), Duration::from_millis(20), async || {
        let current: Value = app.get(&format!("Subscription/{id}")).await.json().await.expect("JSON");
        (current["status"] == status).then_some(current)
    })
    .await
    .unwrap_or_else(|| panic!("Subscription/{id} never became {status}"))
}

/// How many events subscription `id` has numbered (`$status`). Each is numbered in the
/// transaction of the write that caused it, so once those writes are answered this is every
/// event there will be: tests compare it rather than wait a while to see that nothing more comes.
async fn numbered(app: &TestApp, id: &str) -> usize {
    let status: Value = app.get(&format!("Subscription/{id}/$status")).await.json().await.expect("Bundle");
    let since = &status_param(&status, "events-since-subscription-start")["valueString"];
    since.as_str().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("events-since-subscription-start: {status}"))
}

/// (number, focus) of every event subscription `id` numbered, once all of them reached `hook`.
async fn heard_all(app: &TestApp, receiver: &Receiver, hook: &str, id: &str) -> Vec<(i64, String)> {
    let numbered = numbered(app, id).await;
    receiver.wait(hook, |got| got.iter().flat_map(Received::events).count() >= numbered).await;
    receiver.notifications(hook).iter().flat_map(Received::events).collect()
}

async fn put_status(app: &TestApp, task: &mut Value, status: &str) {
    task["status"] = json!(status);
    let id = task["id"].as_str().expect("id").to_owned();
    let response = app.put(&format!("Task/{id}"), task).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_subscription_starts_requested_and_a_successful_handshake_makes_it_active() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;

    let created = app.create(&subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    let id = created["id"].as_str().expect("id");

    assert_eq!(created["status"], "requested");
    let handshakes = receiver.wait("a", |got| !got.is_empty()).await;
    let handshake = &handshakes[0];
    assert_eq!(handshake.kind(), "handshake");
    assert_eq!(handshake.body["type"], "history");
    assert_eq!(handshake.header("x-hook-secret"), Some("s3cret"), "channel.header is sent");
    assert_eq!(handshake.header("content-type"), Some("application/fhir+json"));
    assert_eq!(handshake.param("topic")["valueCanonical"], format!("{TOPICS}/task-change"));
    assert!(handshake.param("subscription")["valueReference"]["reference"].as_str().is_some_and(|r| r.ends_with(id)));
    let active = wait_status(&app, id, "active").await;
    assert_eq!(active["meta"]["versionId"], "2", "the server's status change is a new version");
    let found: Value = app.get("Subscription?status=active").await.json().await.expect("Bundle");
    assert_eq!(found["total"], 1);
}

#[tokio::test]
async fn a_failed_handshake_puts_the_subscription_in_error_until_the_receiver_answers() {
    let receiver = Receiver::start().await;
    receiver.answer(503);
    let app = app_for(&receiver).await;

    let created = app.create(&subscription("task-change", &receiver.url("a"), &[], "empty")).await;
    let id = created["id"].as_str().expect("id");

    wait_status(&app, id, "error").await;
    receiver.answer(200);
    wait_status(&app, id, "active").await;
    assert!(receiver.at("a").iter().all(|r| r.kind() == "handshake"));
}

#[tokio::test]
async fn a_task_create_and_status_changes_are_notified_in_order_with_topic_focus_and_numbers() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let change =
        subscribe(&app, &receiver, "change", subscription("task-change", &receiver.url("change"), &[], "id-only"))
            .await;
    let outcome =
        subscribe(&app, &receiver, "outcome", subscription("task-outcome", &receiver.url("outcome"), &[], "id-only"))
            .await;

    let mut created = app.create(&task("requested")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    put_status(&app, &mut created, "accepted").await;
    put_status(&app, &mut created, "in-progress").await;

    let got = receiver.wait("change", |got| got.iter().filter(|r| r.kind() == "event-notification").count() >= 3).await;
    let events: Vec<(i64, String)> =
        got.iter().filter(|r| r.kind() == "event-notification").flat_map(Received::events).collect();
    let focus = format!("{}/Task/{id}", app.base);
    assert_eq!(events, [(1, focus.clone()), (2, focus.clone()), (3, focus.clone())]);
    let last = got.last().expect("a notification");
    assert_eq!(last.param("events-since-subscription-start")["valueString"], "3");
    assert_eq!(last.param("topic")["valueCanonical"], format!("{TOPICS}/task-change"));
    assert!(last.param("subscription")["valueReference"]["reference"].as_str().is_some_and(|r| r.ends_with(&change)));
    // The outcome topic hears only the move to accepted.
    assert_eq!(heard_all(&app, &receiver, "outcome", &outcome).await, [(1, focus)]);
}

#[tokio::test]
async fn filters_by_patient_owner_and_status_select_what_each_subscription_hears() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let hook = |name: &str| receiver.url(name);
    let to_p2 = subscribe(
        &app,
        &receiver,
        "p2",
        subscription("task-change", &hook("p2"), &["Task?patient=Patient/p2"], "id-only"),
    )
    .await;
    let to_owner = subscribe(
        &app,
        &receiver,
        "owner",
        subscription("task-change", &hook("owner"), &["Task?owner=Practitioner/lee"], "id-only"),
    )
    .await;
    let to_done = subscribe(
        &app,
        &receiver,
        "done",
        subscription("task-change", &hook("done"), &["Task?status=completed,failed", "Task?patient=p1"], "id-only"),
    )
    .await;

    let mut for_p2 = task("requested");
    for_p2["for"] = json!({ "reference": "Patient/p2" });
    let p2 = app.create(&for_p2).await;
    let mut owned = task("requested");
    owned["owner"] = json!({ "reference": "Practitioner/lee" });
    let owned = app.create(&owned).await;
    let completed = app.create(&task("completed")).await;
    let mut completed_p2 = task("completed");
    completed_p2["for"] = json!({ "reference": "Patient/p2" });
    let completed_p2 = app.create(&completed_p2).await;

    let focus = |t: &Value| format!("{}/Task/{}", app.base, t["id"].as_str().unwrap_or_default());
    let heard = async |hook: &str, id: &str| -> Vec<String> {
        heard_all(&app, &receiver, hook, id).await.into_iter().map(|(_, focus)| focus).collect()
    };
    assert_eq!(heard("p2", &to_p2).await, [focus(&p2), focus(&completed_p2)]);
    assert_eq!(heard("owner", &to_owner).await, [focus(&owned)]);
    assert_eq!(heard("done", &to_done).await, [focus(&completed)]);
}

#[tokio::test]
async fn payloads_are_empty_id_only_or_the_full_resource_as_stored() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    for content in ["empty", "id-only", "full-resource"] {
        subscribe(&app, &receiver, content, subscription("task-change", &receiver.url(content), &[], content)).await;
    }
    let mut body = task("requested");
    body["input"] = json!([{ "type": { "text": "dose" }, "valueDecimal": 1.50 }]);
    let raw = body.to_string().replace("1.5", "1.50");

    let response = app.send(Method::POST, "Task", raw).await;
    assert_eq!(response.status(), 201);
    let stored = response.text().await.expect("text");

    let first = |hook: &'static str| {
        let receiver = &receiver;
        async move { receiver.wait(hook, |got| got.iter().any(|r| r.kind() == "event-notification")).await }
    };
    let empty = first("empty").await.into_iter().find(|r| r.kind() == "event-notification").expect("event");
    assert_eq!(empty.body["entry"].as_array().map(Vec::len), Some(1), "only the status");
    assert_eq!(empty.events()[0].1, "", "no focus in an empty notification");

    let id_only = first("id-only").await.into_iter().find(|r| r.kind() == "event-notification").expect("event");
    let entry = &id_only.body["entry"][1];
    assert!(entry["fullUrl"].as_str().is_some_and(|u| u.contains("/Task/")));
    assert!(entry.get("resource").is_none(), "id-only carries no resource");

    let full = first("full-resource").await.into_iter().find(|r| r.kind() == "event-notification").expect("event");
    let sent: Value = serde_json::from_str(&stored).expect("JSON");
    assert_eq!(full.body["entry"][1]["resource"], sent, "the resource as the server stores and serves it");
    assert_eq!(full.body["entry"][1]["request"]["method"], "POST");
}

#[tokio::test]
async fn a_transaction_that_fails_announces_nothing() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let id = subscribe(&app, &receiver, "a", subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    let existing = app.create(&task("requested")).await;
    let existing_id = existing["id"].as_str().expect("id");
    receiver.wait("a", |got| got.iter().any(|r| r.kind() == "event-notification")).await;

    // The POST is written (and matched) before the PUT fails its If-Match: all of it rolls back.
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "fullUrl": "urn:uuid:0b6b3b56-3b1a-4c8e-9a51-6d0c6f1f2a01", "resource": task("requested"),
          "request": { "method": "POST", "url": "Task" } },
        { "resource": existing.clone(), "request": { "method": "PUT", "url": format!("Task/{existing_id}"), "ifMatch": "W/\"9\"" } },
    ]});
    let failed = app.post("", &bundle).await;
    assert_eq!(failed.status(), 412);
    let mut later = task("requested");
    later["description"] = json!("after the failed transaction");
    let later = app.create(&later).await;

    assert_eq!(numbered(&app, &id).await, 2, "the rolled-back POST numbered nothing");
    let events = heard_all(&app, &receiver, "a", &id).await;
    let focus = |t: &Value| format!("{}/Task/{}", app.base, t["id"].as_str().unwrap_or_default());
    assert_eq!(events, [(1, focus(&existing)), (2, focus(&later))], "no gap: event 2 is the later create");
}

#[tokio::test]
async fn a_receiver_that_is_down_is_retried_the_subscription_goes_to_error_and_recovers() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let id = subscribe(&app, &receiver, "a", subscription("task-change", &receiver.url("a"), &[], "id-only")).await;

    receiver.answer(500);
    let created = app.create(&task("requested")).await;
    // Three failed attempts in a row (the test settings' limit) make it error.
    let errored = wait_status(&app, &id, "error").await;
    let attempts = receiver.notifications("a").len();
    assert!(attempts >= 3, "retried: {attempts} attempts");
    assert_eq!(errored["status"], "error");

    receiver.answer(200);
    wait_status(&app, &id, "active").await;
    let delivered: Vec<(i64, String)> = receiver.notifications("a").iter().flat_map(Received::events).collect();
    let focus = format!("{}/Task/{}", app.base, created["id"].as_str().unwrap_or_default());
    assert!(delivered.iter().all(|e| *e == (1, focus.clone())), "the same event each time: {delivered:?}");
    assert!(delivered.len() > attempts, "delivered once the receiver recovered");
}

#[tokio::test]
async fn status_and_events_operations_report_what_was_numbered() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let id = subscribe(&app, &receiver, "a", subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    let mut first = app.create(&task("requested")).await;
    put_status(&app, &mut first, "accepted").await;
    let second = app.create(&task("requested")).await;
    receiver.wait("a", |got| got.iter().filter(|r| r.kind() == "event-notification").count() >= 3).await;

    let status: Value = app.get(&format!("Subscription/{id}/$status")).await.json().await.expect("Bundle");
    let events: Value = app
        .get(&format!("Subscription/{id}/$events?eventsSinceNumber=2&content=full-resource"))
        .await
        .json()
        .await
        .expect("Bundle");
    let all: Value = app.get(&format!("Subscription/{id}/$events")).await.json().await.expect("Bundle");
    let unknown = app.get("Subscription/nope/$status").await;

    assert_eq!(status["type"], "searchset");
    assert_eq!(status_param(&status, "type")["valueCode"], "query-status");
    assert_eq!(status_param(&status, "status")["valueCode"], "active");
    assert_eq!(status_param(&status, "events-since-subscription-start")["valueString"], "3");
    assert_eq!(status_param(&events, "type")["valueCode"], "query-event");
    let numbers: Vec<i64> = events_of(&events).into_iter().map(|(n, _)| n).collect();
    assert_eq!(numbers, [2, 3]);
    assert_eq!(events["entry"][2]["resource"]["id"], second["id"], "full resources on request");
    assert_eq!(events["entry"][1]["resource"]["status"], "accepted", "the version that caused the event");
    assert_eq!(events_of(&all).len(), 3);
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn subscriptions_outside_the_allow_list_or_to_unknown_topics_or_filters_are_refused() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let closed = spawn_with(|_| {}).await;

    let elsewhere =
        app.post("Subscription", &subscription("task-change", "https://evil.example/hook", &[], "id-only")).await;
    let by_default =
        closed.post("Subscription", &subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    let no_topic = app.post("Subscription", &subscription("no-such-topic", &receiver.url("a"), &[], "id-only")).await;
    let bad_filter = app
        .post("Subscription", &subscription("task-change", &receiver.url("a"), &["Task?colour=red"], "id-only"))
        .await;
    let mut email = subscription("task-change", &receiver.url("a"), &[], "id-only");
    email["channel"]["type"] = json!("email");
    let email = app.post("Subscription", &email).await;
    let mut unknown_element = subscription("task-change", &receiver.url("a"), &[], "id-only");
    unknown_element["channel"]["colour"] = json!("red");
    let unknown_element = app.post("Subscription", &unknown_element).await;

    for (response, expression) in [
        (elsewhere, "Subscription.channel.endpoint"),
        (by_default, "Subscription.channel.endpoint"),
        (no_topic, "Subscription.criteria"),
        (bad_filter, "Subscription.criteria.extension[0]"),
        (email, "Subscription.channel.type"),
    ] {
        assert_eq!(response.status(), 422, "{expression}");
        let outcome: Value = response.json().await.expect("OperationOutcome");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert!(outcome.to_string().contains(expression), "{outcome}");
    }
    assert_eq!(unknown_element.status(), 400);
    assert_outcome(&unknown_element.json().await.expect("JSON"), "structure", Some("Subscription.channel.colour"));
    // Nothing was stored, so there is nothing to deliver: a dispatcher pass on either server finds nothing due.
    for server in [&app, &closed] {
        let stored: Value = server.get("Subscription?_summary=count").await.json().await.expect("Bundle");
        assert_eq!(stored["total"], 0, "{stored}");
        assert_eq!(server.dispatcher.run_once().await.expect("a pass"), Pass::default());
    }
    assert!(receiver.at("a").is_empty(), "nothing was delivered");
}

#[tokio::test]
async fn a_subscription_is_stored_as_sent_and_can_be_switched_off_and_deleted() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let body = subscription("task-change", &receiver.url("a"), &["Task?patient=Patient/p1"], "id-only");
    let id = subscribe(&app, &receiver, "a", body.clone()).await;

    let read: Value = app.get(&format!("Subscription/{id}")).await.json().await.expect("JSON");
    assert_eq!(read["_criteria"], body["_criteria"]);
    assert_eq!(read["channel"], body["channel"]);
    let mut off = read.clone();
    off["status"] = json!("off");
    assert_eq!(app.put(&format!("Subscription/{id}"), &off).await.status(), 200);
    app.create(&task("requested")).await;
    // An off subscription is matched to nothing and never claimed: the create numbered no event
    // for it, and a dispatcher pass finds nothing due.
    assert_eq!(numbered(&app, &id).await, 0);
    assert_eq!(app.dispatcher.run_once().await.expect("a pass"), Pass::default());
    assert!(receiver.notifications("a").is_empty(), "an off subscription hears nothing");
    let still_off: Value = app.get(&format!("Subscription/{id}")).await.json().await.expect("JSON");
    assert_eq!(still_off["status"], "off");

    assert_eq!(app.delete(&format!("Subscription/{id}")).await.status(), 204);
    assert_eq!(app.get(&format!("Subscription/{id}/$status")).await.status(), 410);
}

#[tokio::test]
async fn care_coordination_topics_hear_assignment_overdue_and_team_membership() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    for topic in ["task-assigned", "task-overdue", "careteam-membership"] {
        subscribe(&app, &receiver, topic, subscription(topic, &receiver.url(topic), &[], "id-only")).await;
    }
    let team = app
        .create(&json!({ "resourceType": "CareTeam", "status": "active", "subject": { "reference": "Patient/p1" },
                         "participant": [{ "member": { "reference": "Practitioner/lee" } }] }))
        .await;
    let plan = app
        .create(&json!({ "resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": { "reference": "Patient/p1" },
                         "careTeam": [{ "reference": format!("CareTeam/{}", team["id"].as_str().unwrap_or_default()) }] }))
        .await;
    let mut work = task("requested");
    work["owner"] = json!({ "reference": "Practitioner/diaz" });
    work["basedOn"] = json!([{ "reference": format!("CarePlan/{}", plan["id"].as_str().unwrap_or_default()) }]);
    work["restriction"] = json!({ "period": { "end": "2020-01-01" } });
    let mut work = app.create(&work).await;
    // Accepting puts the owner on the plan's team: a membership change derived in the same transaction.
    put_status(&app, &mut work, "accepted").await;
    let marked = app.jobs.mark_overdue_once().await.expect("the overdue job runs");
    assert_eq!(marked.marked, 1);

    let focus = |ty: &str, v: &Value| format!("{}/{ty}/{}", app.base, v["id"].as_str().unwrap_or_default());
    let first_event = |hook: &'static str| {
        let receiver = &receiver;
        async move {
            let got = receiver.wait(hook, |got| got.iter().any(|r| r.kind() == "event-notification")).await;
            got.into_iter().filter(|r| r.kind() == "event-notification").flat_map(|r| r.events()).collect::<Vec<_>>()
        }
    };
    assert_eq!(first_event("task-assigned").await, [(1, focus("Task", &work))]);
    assert_eq!(first_event("task-overdue").await, [(1, focus("Task", &work))]);
    let membership = first_event("careteam-membership").await;
    assert_eq!(membership.first(), Some(&(1, focus("CareTeam", &team))), "created with a member");
    receiver.wait("careteam-membership", |got| got.iter().flat_map(Received::events).count() >= 2).await;
}

#[tokio::test]
async fn heartbeats_arrive_when_nothing_happens() {
    let receiver = Receiver::start().await;
    let app = app_for(&receiver).await;
    let mut body = subscription("careplan-change", &receiver.url("a"), &[], "empty");
    body["channel"]["extension"] =
        json!([{ "url": format!("{BACKPORT}/backport-heartbeat-period"), "valueUnsignedInt": 1 }]);
    subscribe(&app, &receiver, "a", body).await;

    let got = receiver.wait("a", |got| got.iter().any(|r| r.kind() == "heartbeat")).await;
    let heartbeat = got.iter().find(|r| r.kind() == "heartbeat").expect("heartbeat");
    assert_eq!(heartbeat.param("events-since-subscription-start")["valueString"], "0");
}

#[tokio::test]
async fn the_capability_statement_lists_the_subscription_topics_and_clients_can_read_them() {
    let app = spawn_with(|_| {}).await;

    let statement: Value = app.get("metadata").await.json().await.expect("JSON");
    let topics: Value = app.get("SubscriptionTopic").await.json().await.expect("JSON");
    let one = app.get("SubscriptionTopic/task-outcome").await;
    let by_url: Value =
        app.get(&format!("SubscriptionTopic?url={TOPICS}/task-overdue")).await.json().await.expect("JSON");

    let subscription = statement["rest"][0]["resource"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "Subscription").cloned())
        .expect("Subscription is listed");
    let canonicals: Vec<&str> = subscription["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == format!("{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"))
        .filter_map(|e| e["valueCanonical"].as_str())
        .collect();
    assert!(canonicals.contains(&"http://careplan.example/fhir/SubscriptionTopic/task-change"), "{canonicals:?}");
    assert_eq!(canonicals.len(), 7);
    assert_eq!(topics["total"], 7);
    assert_eq!(one.status(), 200);
    let one: Value = one.json().await.expect("JSON");
    assert_eq!(one["resourceType"], "SubscriptionTopic");
    let filters: Vec<&str> =
        one["canFilterBy"].as_array().into_iter().flatten().filter_map(|f| f["filterParameter"].as_str()).collect();
    for name in ["patient", "owner", "requester", "status", "code"] {
        assert!(filters.contains(&name), "{name}: {filters:?}");
    }
    assert_eq!(by_url["total"], 1);
    assert_eq!(app.get("SubscriptionTopic/nope").await.status(), 404);
}

#[tokio::test]
async fn several_replicas_deliver_each_subscription_event_once() {
    let receiver = Receiver::start().await;
    let allowed = receiver.base.clone();
    // No dispatcher of the server's own: only the replicas below deliver, so once they have
    // stopped nothing more can arrive.
    let app = spawn_with(move |s| {
        s.subscriptions.endpoints = vec![allowed].into();
        s.subscriptions.poll = Duration::ZERO;
    })
    .await;
    let replicas: Vec<_> = (0..3).map(|_| app.dispatcher.replica()).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running: Vec<_> = replicas
        .into_iter()
        .map(|replica| {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    replica.run_once().await.expect("a pass");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    subscribe(&app, &receiver, "a", subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    subscribe(&app, &receiver, "b", subscription("task-change", &receiver.url("b"), &[], "id-only")).await;

    const TASKS: usize = 20;
    for _ in 0..TASKS {
        app.create(&task("requested")).await;
    }
    for hook in ["a", "b"] {
        receiver.wait(hook, |got| got.iter().flat_map(Received::events).count() >= TASKS).await;
    }
    stop.store(true, Ordering::SeqCst);
    for replica in running {
        replica.await.expect("the replica stops");
    }

    for hook in ["a", "b"] {
        let numbers: Vec<i64> =
            receiver.notifications(hook).iter().flat_map(Received::events).map(|(n, _)| n).collect();
        let expected: Vec<i64> = (1..=i64::try_from(TASKS).expect("count")).collect();
        assert_eq!(numbers, expected, "{hook}: every event once, in order");
    }
}

#[tokio::test]
async fn a_delivery_that_outlives_its_lease_is_sent_again_by_another_replica() {
    let receiver = Receiver::start().await;
    let allowed = receiver.base.clone();
    let app = spawn_with(move |s| {
        s.subscriptions.endpoints = vec![allowed].into();
        s.subscriptions.lease = Duration::from_millis(300);
    })
    .await;
    let id = subscribe(&app, &receiver, "a", subscription("task-change", &receiver.url("a"), &[], "id-only")).await;
    // The receiver takes longer than the lease: the first replica looks crashed to the others.
    receiver.delay(1200);
    let other = app.dispatcher.replica();
    let created = app.create(&task("requested")).await;
    receiver.wait("a", |got| got.iter().any(|r| r.kind() == "event-notification")).await;
    // Once the lease has run out, the other replica claims the subscription and sends again.
    let taken = eventually(Duration::from_secs(5), Duration::from_millis(20), async || {
        let pass = other.run_once().await.expect("a pass");
        (pass.claimed > 0).then_some(pass)
    })
    .await;
    assert!(taken.is_some(), "no other replica took the subscription after its lease ran out");
    receiver.delay(0);

    let focus = format!("{}/Task/{}", app.base, created["id"].as_str().unwrap_or_default());
    let got = receiver.wait("a", |got| got.iter().filter(|r| r.kind() == "event-notification").count() >= 2).await;
    let events: Vec<(i64, String)> =
        got.iter().filter(|r| r.kind() == "event-notification").flat_map(Received::events).collect();
    assert!(events.len() >= 2 && events.iter().all(|e| *e == (1, focus.clone())), "at least once: {events:?}");
    let status: Value = app.get(&format!("Subscription/{id}/$status")).await.json().await.expect("Bundle");
    assert_eq!(status_param(&status, "status")["valueCode"], "active");
}

#[tokio::test]
async fn a_write_wakes_the_dispatcher_without_waiting_for_its_poll() {
    let receiver = Receiver::start().await;
    let allowed = receiver.base.clone();
    let app = spawn_with(move |s| {
        s.subscriptions.endpoints = vec![allowed].into();
        s.subscriptions.poll = Duration::from_secs(3600);
    })
    .await;
    let started = std::time::Instant::now();
    subscribe(&app, &receiver, "a", subscription("careteam-change", &receiver.url("a"), &[], "id-only")).await;
    app.create(&json!({ "resourceType": "CareTeam", "status": "active", "subject": { "reference": "Patient/p1" } }))
        .await;

    receiver.wait("a", |got| got.iter().any(|r| r.kind() == "event-notification")).await;
    assert!(started.elapsed() < Duration::from_secs(10), "woken by the writes, not the hourly poll");
}
