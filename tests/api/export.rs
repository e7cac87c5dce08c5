//! FHIR Bulk Data export (issue 15): kick-off, status, manifest and NDJSON files over HTTP, on
//! the same store the interactions write.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use service::export::Ran;

use crate::helpers::{assert_outcome, care_plan, eventually, header, spawn_with, task, TestApp};

/// A kick-off request to `path` (relative to the FHIR base) with `Prefer: respond-async`.
pub(crate) fn kick_off(app: &TestApp, method: Method, path: &str) -> RequestBuilder {
    app.request(method, path).header("prefer", "respond-async")
}

/// The status URL of an accepted kick-off.
pub(crate) fn status_url(response: &Response) -> String {
    assert_eq!(response.status(), 202, "kick-off accepted: {:?}", response.headers());
    let url = header(response, "content-location");
    assert!(url.contains("/$export-status/"), "{url}");
    url
}

/// Poll `status` until the manifest is served (within a minute), with `token` if any.
pub(crate) async fn manifest(client: &reqwest::Client, status: &str, token: Option<&str>) -> Value {
    let done = eventually(Duration::from_secs(60), Duration::from_millis(50), async || {
        let mut request = client.get(status);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("status");
        match response.status().as_u16() {
            202 => {
                assert!(header(&response, "x-progress").ends_with("resources exported"));
                assert_eq!(header(&response, "retry-after"), "1");
                None
            }
            200 => Some(response.json::<Value>().await.expect("the manifest")),
            other => panic!("status answered {other}: {}", response.text().await.unwrap_or_default()),
        }
    })
    .await;
    done.expect("the export finished within a minute")
}

/// The lines of each file of `manifest`, by type, in manifest order.
pub(crate) async fn files(
    client: &reqwest::Client,
    manifest: &Value,
    token: Option<&str>,
) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for output in manifest["output"].as_array().expect("output") {
        let mut request = client.get(output["url"].as_str().expect("url"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("file");
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "application/fhir+ndjson");
        let text = response.text().await.expect("NDJSON");
        assert!(text.ends_with('\n') && !text.contains("\n\n"), "one resource per line");
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(output["count"], json!(lines.len()), "the manifest counts the file's lines");
        out.push((output["type"].as_str().expect("type").to_owned(), lines));
    }
    out
}

/// `resourceType/id` of each line.
fn keys(files: &[(String, Vec<String>)]) -> Vec<String> {
    let mut keys: Vec<String> = files
        .iter()
        .flat_map(|(_, lines)| lines.iter())
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a line is JSON");
            format!("{}/{}", value["resourceType"].as_str().expect("type"), value["id"].as_str().expect("id"))
        })
        .collect();
    keys.sort();
    keys
}

fn goal(patient: &str) -> Value {
    json!({
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": { "text": "Walk 30 minutes a day" },
        "subject": { "reference": format!("Patient/{patient}") },
        "target": [{ "detailQuantity": { "value": 30.0, "unit": "min" } }]
    })
}

fn team(patient: &str) -> Value {
    json!({ "resourceType": "CareTeam", "status": "active", "subject": { "reference": format!("Patient/{patient}") } })
}

/// Create `resources` through transaction Bundles of 500 entries.
async fn load(app: &TestApp, resources: impl Iterator<Item = Value>) {
    let resources: Vec<Value> = resources.collect();
    for chunk in resources.chunks(500) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|r| json!({ "resource": r, "request": { "method": "POST", "url": r["resourceType"] } }))
            .collect();
        let bundle = json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries });
        let response = app.post("", &bundle).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    }
}

/// Each member of a JSON object as the server wrote it.
type Raw = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;

/// The resources of a searchset Bundle, each as its text in the Bundle, and the next page.
fn page(text: &str) -> (Vec<String>, Option<String>) {
    let bundle: Raw = serde_json::from_str(text).expect("a searchset Bundle");
    let entries: Vec<Raw> =
        bundle.get("entry").map_or_else(Vec::new, |e| serde_json::from_str(e.get()).expect("entries"));
    let resources = entries.iter().map(|e| e["resource"].get().to_owned()).collect();
    let links: Value = bundle.get("link").map_or(Value::Null, |l| serde_json::from_str(l.get()).expect("links"));
    let next = links
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned);
    (resources, next)
}

#[tokio::test]
async fn an_export_of_ten_thousand_resources_holds_each_one_as_stored_in_files_the_manifest_counts() {
    // Arrange: 10,000 resources of four types (no Provenance, so the counts are exact), and
    // files of at most 1,500 lines.
    let app = spawn_with(|s| {
        s.provenance = false;
        s.export.max_lines_per_file = 1500;
    })
    .await;
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for (ty, n) in [("Task", 4000), ("CarePlan", 3000), ("Goal", 2000), ("CareTeam", 1000)] {
        expected.insert(ty, n);
    }
    let resources = (0..4000)
        .map(|i| {
            let mut t = task("requested");
            t["for"] = json!({ "reference": format!("Patient/p{}", i % 50) });
            t["note"] = json!([{ "text": format!("line {i}, with a \"quote\" and a\nnewline") }]);
            t
        })
        .chain((0..3000).map(|_| care_plan()))
        .chain((0..2000).map(|i| goal(&format!("p{i}"))))
        .chain((0..1000).map(|i| team(&format!("p{i}"))));
    let loading = std::time::Instant::now();
    load(&app, resources).await;
    eprintln!("loaded 10,000 resources in {:?}", loading.elapsed());

    // Act
    let started = std::time::Instant::now();
    let kicked = kick_off(&app, Method::GET, "$export").send().await.expect("kick-off");
    let status = status_url(&kicked);
    let manifest = manifest(&app.client, &status, None).await;
    let files = files(&app.client, &manifest, None).await;
    let took = started.elapsed();

    // Assert: the manifest, then every line as stored, per type counted, split at 1,500.
    assert_eq!(manifest["requiresAccessToken"], json!(true));
    assert_eq!(manifest["request"], json!(app.url("$export")));
    assert!(manifest["transactionTime"].as_str().is_some_and(|t| t.ends_with('Z')), "{manifest}");
    assert_eq!(manifest["error"], json!([]));
    let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
    for (ty, lines) in &files {
        assert!(lines.len() <= 1500, "{ty}: {} lines in one file", lines.len());
        *counted.entry(expected.keys().copied().find(|t| t == ty).expect("an expected type")).or_default() +=
            lines.len();
    }
    assert_eq!(counted, expected);
    assert_eq!(files.iter().filter(|(ty, _)| ty == "Task").count(), 3, "4,000 Tasks in files of 1,500");
    for (ty, n) in &expected {
        let bundle: Value = app.get(&format!("{ty}?_summary=count")).await.json().await.expect("count");
        assert_eq!(bundle["total"], json!(n), "{ty}");
    }
    // Every line is the stored text: byte for byte what a search serves of the resource (its
    // entries embed the stored text), and, for one line in fifty, what a read returns.
    let mut stored: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for ty in expected.keys() {
        let mut next = Some(app.url(&format!("{ty}?_count=1000")));
        while let Some(url) = next.take() {
            let text = app.client.get(&url).send().await.expect("search").text().await.expect("Bundle");
            let (resources, more) = page(&text);
            for resource in resources {
                let value: Value = serde_json::from_str(&resource).expect("JSON");
                stored.insert(format!("{ty}/{}", value["id"].as_str().expect("id")), resource);
            }
            next = more;
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (n, (ty, line)) in files.iter().flat_map(|(ty, lines)| lines.iter().map(move |l| (ty, l))).enumerate() {
        let value: Value = serde_json::from_str(line).expect("every line parses as JSON");
        assert_eq!(&value["resourceType"], &json!(ty));
        let key = format!("{ty}/{}", value["id"].as_str().expect("id"));
        assert_eq!(Some(line), stored.get(&key), "the line is the stored text of {key}");
        if n % 50 == 0 {
            let read = app.get(&key).await;
            assert_eq!(read.status(), 200);
            assert_eq!(line, &read.text().await.expect("read"), "the line is what a read of {key} returns");
        }
        assert!(seen.insert(key), "each resource once");
    }
    assert_eq!(seen.len(), 10_000);
    eprintln!("exported 10,000 resources in {took:?}");
}

#[tokio::test]
async fn type_since_and_type_filter_choose_what_is_exported_at_system_and_type_level() {
    let app = spawn_with(|s| s.provenance = false).await;
    let early = app.create(&task("requested")).await;
    let plan = app.create(&care_plan()).await;
    app.create(&goal("p1")).await;
    // Later than every write so far (last updated is at millisecond precision).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = app.create(&task("accepted")).await;
    let since = late["meta"]["lastUpdated"].as_str().expect("lastUpdated").to_owned();
    let id = |v: &Value| v["id"].as_str().expect("id").to_owned();

    let run = async |method: Method, path: &str, body: Option<Value>| {
        let mut request = kick_off(&app, method, path);
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let status = status_url(&request.send().await.expect("kick-off"));
        let manifest = manifest(&app.client, &status, None).await;
        keys(&files(&app.client, &manifest, None).await)
    };

    // _type
    assert_eq!(
        run(Method::GET, "$export?_type=Task,CarePlan", None).await,
        [format!("CarePlan/{}", id(&plan)), format!("Task/{}", id(&early)), format!("Task/{}", id(&late))]
    );
    // _since (percent-encoded: `+` would be a space)
    let path = format!("$export?_type=Task&_since={}", since.replace('+', "%2B"));
    assert_eq!(run(Method::GET, &path, None).await, [format!("Task/{}", id(&late))]);
    // _typeFilter at type level
    assert_eq!(
        run(Method::GET, "Task/$export?_typeFilter=Task%3Fstatus%3Drequested", None).await,
        [format!("Task/{}", id(&early))]
    );
    // POST with Parameters
    let parameters = json!({ "resourceType": "Parameters", "parameter": [
        { "name": "_type", "valueString": "Task,Goal" },
        { "name": "_typeFilter", "valueString": "Task?status=accepted" },
        { "name": "_outputFormat", "valueString": "application/fhir+ndjson" },
    ]});
    let exported = run(Method::POST, "$export", Some(parameters)).await;
    assert_eq!(exported.len(), 2, "{exported:?}");
    assert!(exported.contains(&format!("Task/{}", id(&late))) && exported[0].starts_with("Goal/"), "{exported:?}");
}

#[tokio::test]
async fn a_cancelled_export_is_gone_with_its_files_and_never_runs() {
    // The exporter runs only when the test says so.
    let app = spawn_with(|s| {
        s.export.poll = Duration::ZERO;
        s.provenance = false;
    })
    .await;
    app.create(&task("requested")).await;
    let status = status_url(&kick_off(&app, Method::GET, "$export").send().await.expect("kick-off"));
    let running = app.client.get(&status).send().await.expect("status");
    assert_eq!(running.status(), 202);
    assert_eq!(header(&running, "x-progress"), "0 resources exported");

    let cancelled = app.client.delete(&status).send().await.expect("DELETE");
    assert_eq!(cancelled.status(), 202);

    let gone = app.client.get(&status).send().await.expect("status");
    assert_eq!(gone.status(), 404);
    assert_outcome(&gone.json().await.expect("OperationOutcome"), "not-found", None);
    assert_eq!(app.client.delete(&status).send().await.expect("DELETE").status(), 404);
    assert_eq!(app.exporter.run_once().await.expect("ran"), None, "no job left to run");

    // A finished job, cancelled, loses its files too.
    let status = status_url(&kick_off(&app, Method::GET, "$export").send().await.expect("kick-off"));
    let ran: Ran = app.exporter.run_once().await.expect("ran").expect("a job");
    assert_eq!(ran.resources, 1);
    let manifest = manifest(&app.client, &status, None).await;
    let file = manifest["output"][0]["url"].as_str().expect("url").to_owned();
    assert_eq!(app.client.get(&file).send().await.expect("file").status(), 200);
    assert_eq!(app.client.delete(&status).send().await.expect("DELETE").status(), 202);
    assert_eq!(app.client.get(&file).send().await.expect("file").status(), 404);
    assert_eq!(app.client.get(&status).send().await.expect("status").status(), 404);
}

#[tokio::test]
async fn bad_kick_offs_are_refused_with_an_operation_outcome_and_create_no_job() {
    // One job per client at most, and none runs: any job a bad request created would block
    // the good kick-off below.
    let app = spawn_with(|s| {
        s.export.poll = Duration::ZERO;
        s.export.max_jobs_per_client = 1;
    })
    .await;
    for (path, prefer, code, expression) in [
        ("$export?_type=Patient", true, "not-supported", "_type"),
        ("$export?_type=Task,Subscription", true, "not-supported", "_type"),
        ("$export?_since=yesterday", true, "value", "_since"),
        ("$export?_since=2026-11-24", true, "value", "_since"),
        ("$export?_outputFormat=application/fhir%2Bjson", true, "not-supported", "_outputFormat"),
        ("$export?_typeFilter=Task%3Fbogus%3D1", true, "invalid", "_typeFilter"),
        ("$export?_typeFilter=Patient%3Fname%3Dx", true, "not-supported", "_typeFilter"),
        ("$export?_type=Task&_typeFilter=Goal%3Fpatient%3Dp1", true, "value", "_typeFilter"),
        ("$export?_typeFilter=Task%3F_count%3D10", true, "not-supported", "_typeFilter"),
        ("$export?patient=Patient/p1", true, "not-supported", "patient"),
        ("Task/$export?_type=Goal", true, "value", "_type"),
        ("$export", false, "required", "Prefer"),
    ] {
        let mut request = app.request(Method::GET, path);
        if prefer {
            request = request.header("prefer", "respond-async");
        }
        let response = request.send().await.expect("kick-off");
        assert_eq!(response.status(), 400, "{path}");
        assert_outcome(&response.json().await.expect("OperationOutcome"), code, Some(expression));
    }
    let bad_body =
        json!({ "resourceType": "Parameters", "parameter": [{ "name": "_type", "valueString": "Task", "extra": 1 }] });
    let response = kick_off(&app, Method::POST, "$export")
        .header("content-type", "application/fhir+json")
        .body(bad_body.to_string())
        .send()
        .await
        .expect("kick-off");
    assert_eq!(response.status(), 400);
    assert_outcome(
        &response.json().await.expect("OperationOutcome"),
        "structure",
        Some("Parameters.parameter[0].extra"),
    );
    assert_eq!(app.exporter.run_once().await.expect("ran"), None, "no job was created");

    // The one job allowed, then 429.
    status_url(&kick_off(&app, Method::GET, "$export").send().await.expect("kick-off"));
    let refused = kick_off(&app, Method::GET, "Task/$export").send().await.expect("kick-off");
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "retry-after"), "60");
    assert_outcome(&refused.json().await.expect("OperationOutcome"), "throttled", None);
    // Unknown job ids and files are 404.
    assert_eq!(app.get("$export-status/nope").await.status(), 404);
    assert_eq!(app.get("$export-file/nope/1").await.status(), 404);
}
