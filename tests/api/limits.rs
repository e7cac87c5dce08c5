//! Search limits and work that ends with its request (issue 13: no single request may crash,
//! starve or exhaust the service): deep chains and `_has`, many parameters and values, long
//! queries are refused with 400 `too-costly` naming the limit, wherever a search arrives (GET,
//! `POST _search`, a batch entry, conditional criteria); a statement past the statement timeout
//! is stopped and answers 503; hostile searches do not starve normal reads.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_outcome, spawn_app, spawn_with, task, TestApp};

/// A chained parameter of `depth` links through Task.partOf.
fn deep_chain(depth: usize) -> String {
    "part-of.".repeat(depth) + "status"
}

/// A `_has` nested `depth` deep through Task.partOf.
fn deep_has(depth: usize) -> String {
    "_has:Task:part-of:".repeat(depth) + "status"
}

/// Assert a 400 `too-costly` whose diagnostics name `limit`.
async fn assert_too_costly(response: reqwest::Response, limit: &str) -> Value {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("an OperationOutcome");
    assert_eq!(status, 400, "{body}");
    assert_too_costly_outcome(&body, limit);
    body
}

fn assert_too_costly_outcome(body: &Value, limit: &str) {
    assert_outcome(body, "too-costly", None);
    assert!(body["issue"][0]["diagnostics"].as_str().is_some_and(|d| d.contains(limit)), "{limit}: {body}");
}

/// `POST [type]/_search` with `pairs` as the form body.
async fn search_post(app: &TestApp, ty: &str, pairs: &[(String, String)]) -> reqwest::Response {
    let form = form_urlencoded_body(pairs);
    app.request(Method::POST, &format!("{ty}/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("POST _search")
}

fn form_urlencoded_body(pairs: &[(String, String)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `n` Tasks (`{prefix}-0` …), each `partOf` every one of them: a chain over them visits `n`
/// Tasks per link, so its cost grows as `n` to the power of its depth.
async fn complete_graph(app: &TestApp, prefix: &str, n: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let entries: Vec<Value> = ids
        .iter()
        .map(|id| {
            let mut body = task("requested");
            body["id"] = json!(id);
            body["partOf"] = ids.iter().map(|other| json!({ "reference": format!("Task/{other}") })).collect();
            json!({ "resource": body, "request": { "method": "PUT", "url": format!("Task/{id}") } })
        })
        .collect();
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
    let response = app.send(Method::POST, "", bundle.to_string()).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_chain_deeper_than_the_limit_is_refused_with_400_naming_the_limit() {
    let app = spawn_app().await;

    let deep = deep_chain(5);
    let body = assert_too_costly(app.get(&format!("Task?{deep}=requested")).await, "max-chain-depth").await;
    assert_outcome(&body, "too-costly", Some(&deep));
    // The attack of issue 13 (2,200 links: a 500 before, 2,400 aborted the process).
    assert_too_costly(app.get(&format!("Task?{}=requested", deep_chain(2200))).await, "max-").await;

    assert_eq!(app.get(&format!("Task?{}=requested", deep_chain(4))).await.status(), 200);
}

#[tokio::test]
async fn a_deep_has_is_refused_by_get_by_post_search_and_inside_a_batch() {
    let app = spawn_app().await;
    let deep = deep_has(5);

    // GET
    assert_too_costly(app.get(&format!("Task?{deep}=requested")).await, "max-has-depth").await;
    // POST _search, 2,500 deep (what aborted the process before)
    let pairs = [(deep_has(2500), "requested".to_owned())];
    assert_too_costly(search_post(&app, "Task", &pairs).await, "max-").await;
    // A batch entry
    let bundle = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": format!("Task?{deep}=requested") } },
        { "request": { "method": "GET", "url": format!("Task?{}=requested", deep_has(2500)) } },
        { "request": { "method": "GET", "url": "Task?status=requested" } }
    ]});
    let response = app.send(Method::POST, "", bundle.to_string()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("batch-response");
    let entries = body["entry"].as_array().expect("entries");
    for entry in &entries[..2] {
        assert_eq!(entry["response"]["status"], "400 Bad Request", "{body}");
        assert_outcome(&entry["response"]["outcome"], "too-costly", None);
    }
    assert_eq!(entries[2]["response"]["status"], "200 OK", "{body}");

    assert_eq!(app.get(&format!("Task?{}=requested", deep_has(4))).await.status(), 200);
}

#[tokio::test]
async fn many_parameters_values_or_bytes_answer_400_not_500() {
    let app = spawn_app().await;

    // 1,000 repeated parameters (GET) and 5,000 ANDed ones (POST).
    let repeated = vec!["status=requested"; 1000].join("&");
    assert_too_costly(app.get(&format!("Task?{repeated}")).await, "max-params").await;
    let anded: Vec<(String, String)> = (0..5000).map(|i| ("identifier".to_owned(), format!("v{i}"))).collect();
    assert_too_costly(search_post(&app, "Task", &anded).await, "max-params").await;
    // 40,000 _id values, and 101 in one parameter.
    let ids: Vec<String> = (0..40_000).map(|i| format!("id{i}")).collect();
    let pairs = [("_id".to_owned(), ids.join(","))];
    assert_too_costly(search_post(&app, "Task", &pairs).await, "max-").await;
    let pairs = [("_id".to_owned(), ids[..101].join(","))];
    let body = assert_too_costly(search_post(&app, "Task", &pairs).await, "max-values-per-param").await;
    assert_outcome(&body, "too-costly", Some("_id"));
    // More values in all than allowed, each parameter within its own limit.
    let spread: Vec<(String, String)> = (0..11).map(|_| ("_id".to_owned(), ids[..100].join(","))).collect();
    assert_too_costly(search_post(&app, "Task", &spread).await, "max-values").await;
    // A 30 KB query string.
    let long = "x".repeat(30_000);
    assert_too_costly(app.get(&format!("Task?description={long}")).await, "max-query-bytes").await;

    // Within every limit: answered.
    assert_eq!(search_post(&app, "Task", &[("_id".to_owned(), ids[..100].join(","))]).await.status(), 200);
}

#[tokio::test]
async fn conditional_criteria_are_held_to_the_same_limits() {
    let app = spawn_app().await;
    let deep = deep_chain(5);

    let create = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", format!("{deep}=requested"))
        .body(task("requested").to_string())
        .send()
        .await
        .expect("POST");
    assert_too_costly(create, "max-chain-depth").await;
    assert_too_costly(app.put(&format!("Task?{}=requested", deep_has(5)), &task("requested")).await, "max-has-depth")
        .await;
    assert_too_costly(app.delete(&format!("Task?{}=requested", deep_chain(2400))).await, "max-").await;
    let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
        { "resource": task("requested"), "request": { "method": "PUT", "url": format!("Task?{deep}=requested") } }
    ]});
    let response = app.send(Method::POST, "", bundle.to_string()).await;
    assert_too_costly(response, "max-chain-depth").await;
}

#[tokio::test]
async fn include_iterate_ends_on_a_reference_cycle() {
    let app = spawn_app().await;
    complete_graph(&app, "cycle", 2).await;

    let response = app.get("Task?_id=cycle-0&_include:iterate=Task:part-of").await;

    assert_eq!(response.status(), 200);
    let bundle: Value = response.json().await.expect("Bundle");
    let mut ids: Vec<&str> =
        bundle["entry"].as_array().expect("entries").iter().filter_map(|e| e["resource"]["id"].as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["cycle-0", "cycle-1"]);
}

/// Settings under which a chain of 8 links over a complete graph of 12 Tasks (12^8 paths)
/// is within the limits but far too costly: the statement timeout has to stop it.
fn costly_but_allowed(settings: &mut service::Settings) {
    settings.search_limits.max_chain_depth = 8;
    settings.request_timeout = Duration::from_secs(10);
    settings.database.statement_timeout = Some(Duration::from_millis(500));
}

#[tokio::test]
async fn a_statement_past_the_statement_timeout_is_stopped_and_answers_503_and_its_connection_is_free() {
    let app = spawn_with(costly_but_allowed).await;
    complete_graph(&app, "graph", 12).await;

    let started = Instant::now();
    let response = app.get(&format!("Task?{}=completed", deep_chain(8))).await;
    let took = started.elapsed();

    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("an OperationOutcome");
    assert_eq!(status, 503, "{body}");
    assert_outcome(&body, "timeout", None);
    assert!(took < Duration::from_secs(5), "stopped by the statement timeout, not the request timeout: {took:?}");
    let read = app.get("Task?status=requested&_count=1").await;
    assert_eq!(read.status(), 200);
}

#[tokio::test]
async fn sixteen_hostile_searches_at_once_do_not_starve_normal_reads() {
    let app = std::sync::Arc::new(spawn_with(costly_but_allowed).await);
    complete_graph(&app, "load", 12).await;
    let created = app.create(&task("requested")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let until = Instant::now() + Duration::from_secs(4);

    // 16 clients: half send the chain of issue 13 (refused), half a costly allowed one.
    let hostile: Vec<_> = (0..16)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                let query = if i % 2 == 0 { deep_chain(25) } else { deep_chain(8) };
                let mut statuses = Vec::new();
                while Instant::now() < until {
                    statuses.push(app.get(&format!("Task?{query}=completed")).await.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut reads = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let read = app.get(&format!("Task/{id}")).await.status().as_u16();
        let search = app.get("Task?status=requested&_count=1").await.status().as_u16();
        reads.push((read, search, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut answers = Vec::new();
    for task in hostile {
        answers.extend(task.await.expect("a hostile client"));
    }
    assert!(answers.iter().all(|s| matches!(s, 400 | 503)), "hostile searches: {answers:?}");
    assert!(reads.len() >= 3, "{reads:?}");
    for (read, search, took) in &reads {
        assert_eq!((*read, *search), (200, 200), "{reads:?}");
        assert!(*took < Duration::from_secs(3), "{reads:?}");
    }
}
