//! Observability: `/metrics`, traces and log lines describe requests by route pattern, method,
//! resource type and status, and never carry PHI (names, identifiers, resource ids).

use std::time::Duration;

use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::SpanData;
use reqwest::Method;
use serde_json::{json, Value};
use service::telemetry::testing;

use crate::helpers::{eventually, header, spawn_app, task};

/// A name and an identifier no metric, span or log line may ever hold.
const NAME: &str = "Quokka-Zebrafinch-7319";
const MRN: &str = "MRN-5581-2207";
const PATIENT: &str = "Patient/QuokkaPatient-88";

/// A Task that carries PHI: a patient's name in the description and a record number.
fn marked_task() -> Value {
    let mut task = task("requested");
    task["description"] = json!(format!("Call {NAME} about the clinic visit"));
    task["identifier"] = json!([{ "system": "urn:oid:1.2.36.1.4", "value": MRN }]);
    task["for"] = json!({ "reference": PATIENT });
    task
}

#[tokio::test]
async fn metrics_count_requests_by_interaction_and_carry_no_phi() {
    // Arrange
    let capture = testing::capture();
    let app = spawn_app().await;
    let created = app.create(&marked_task()).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(app.get(&format!("Task/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("Task?identifier={MRN}")).await.status(), 200);
    assert_eq!(app.get("Task/no-such-task").await.status(), 404);

    // Act
    let response = app.client.get(app.root("/metrics")).send().await.expect("GET /metrics");

    // Assert
    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("text/plain"), "{}", header(&response, "content-type"));
    let text = response.text().await.expect("text");
    let labels = |method: &str, status: u16, route: &str| {
        format!(
            r#"{{fhir_resource_type="Task",http_request_method="{method}",http_response_status_code="{status}",http_route="{route}""#
        )
    };
    for expected in [
        format!("careplan_http_requests_total{}", labels("POST", 201, "/fhir/Task")),
        format!("careplan_http_requests_total{}", labels("GET", 200, "/fhir/Task/{id}")),
        format!("careplan_http_requests_total{}", labels("GET", 404, "/fhir/Task/{id}")),
        format!("careplan_http_requests_total{}", labels("GET", 200, "/fhir/Task")),
        format!("http_server_request_duration_seconds_bucket{}", labels("POST", 201, "/fhir/Task")),
        format!("http_server_request_duration_seconds_count{}", labels("GET", 200, "/fhir/Task/{id}")),
        r#"db_client_connection_count{db_client_connection_pool_name="#.to_owned(),
        r#"db_client_connection_max{db_client_connection_pool_name="#.to_owned(),
    ] {
        assert!(text.contains(&expected), "/metrics lacks {expected}:\n{text}");
    }
    let logs = capture.logs();
    assert!(logs.contains(r#""route":"/fhir/Task/{id}""#), "the request log lines are captured");
    for phi in [NAME, MRN, PATIENT, &id, "no-such-task"] {
        assert!(!text.contains(phi), "/metrics holds {phi}");
        assert!(!logs.contains(phi), "a log line holds {phi}");
    }
}

#[tokio::test]
async fn a_request_is_one_trace_with_domain_and_database_spans_and_no_phi() {
    // Arrange
    let capture = testing::capture();
    let app = spawn_app().await;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");

    // Act: a create that continues the caller's trace, then a read and a search.
    let response = app
        .request(Method::POST, "Task")
        .header("content-type", "application/fhir+json")
        .header("traceparent", &traceparent)
        .body(marked_task().to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 201);
    let id = response.json::<Value>().await.expect("JSON")["id"].as_str().expect("id").to_owned();
    assert_eq!(app.get(&format!("Task/{id}")).await.status(), 200);
    assert_eq!(app.get(&format!("Task?identifier={MRN}")).await.status(), 200);

    // Assert: the create's server span, a child of the caller's span, and its descendants.
    let spans = wait_for_spans(|spans| {
        spans.iter().any(|s| s.span_context.trace_id().to_string() == trace_id && s.span_kind == SpanKind::Server)
    })
    .await;
    let trace: Vec<&SpanData> = spans.iter().filter(|s| s.span_context.trace_id().to_string() == trace_id).collect();
    let server = trace.iter().find(|s| s.span_kind == SpanKind::Server).expect("a server span");
    assert_eq!(server.name, "POST /fhir/Task");
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7", "the caller's span is the parent");
    assert_eq!(attribute(server, "http.route").as_deref(), Some("/fhir/Task"));
    assert_eq!(attribute(server, "http.response.status_code").as_deref(), Some("201"));
    assert_eq!(attribute(server, "fhir.resource_type").as_deref(), Some("Task"));
    for name in ["domain.ingest", "domain.rules", "db.transaction", "db.create"] {
        let span = trace.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name} span in {trace:#?}"));
        assert!(descends_from(span, server, &trace), "{name} is not under the server span");
    }
    let create = trace.iter().find(|s| s.name == "db.create").expect("db.create");
    assert_eq!(create.span_kind, SpanKind::Client);
    assert_eq!(attribute(create, "db.operation.name").as_deref(), Some("create"));
    assert_eq!(attribute(create, "fhir.resource_type").as_deref(), Some("Task"));
    let spans = wait_for_spans(|spans| spans.iter().any(|s| s.name == "GET /fhir/Task")).await;
    let search = spans.iter().find(|s| s.name == "GET /fhir/Task").expect("the search's server span");
    let under_search =
        |name: &str| spans.iter().any(|s| s.name == name && s.parent_span_id == search.span_context.span_id());
    assert!(under_search("db.search"), "the search has a db.search span");
    // Its one page holds every match, so its total needs no count query.
    assert!(!under_search("db.count"), "a search whose page holds every match ran a count");

    // No span, attribute or event anywhere holds PHI.
    for span in capture.spans() {
        let text = format!("{span:?}");
        for phi in [NAME, MRN, PATIENT, &id] {
            assert!(!text.contains(phi), "span {} holds {phi}: {text}", span.name);
        }
    }
    let logs = capture.logs();
    assert!(logs.contains(&format!(r#""traceId":"{trace_id}""#)), "log lines carry the trace id:\n{logs}");
}

/// The spans finished so far, once `ready` holds (within a few seconds).
async fn wait_for_spans(ready: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    eventually(Duration::from_secs(5), Duration::from_millis(10), async || {
        let spans = testing::capture().spans();
        ready(&spans).then_some(spans)
    })
    .await
    .expect("the expected spans never finished")
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

/// Whether `span`'s parent chain within `trace` reaches `ancestor`.
fn descends_from(span: &SpanData, ancestor: &SpanData, trace: &[&SpanData]) -> bool {
    let mut parent = span.parent_span_id;
    for _ in 0..trace.len() {
        if parent == ancestor.span_context.span_id() {
            return true;
        }
        match trace.iter().find(|s| s.span_context.span_id() == parent) {
            Some(next) => parent = next.parent_span_id,
            None => return false,
        }
    }
    false
}

/// Audit log lines (`CAREPLAN_AUDIT_LOG`) name the patient only by a keyed hash and the entity by
/// its type: an id in the URL (`Task/MRN-…`) never reaches the log.
#[tokio::test]
async fn audit_log_lines_carry_a_keyed_patient_hash_and_no_ids() {
    let capture = testing::capture();
    let keyed = crate::helpers::spawn_with(|s| {
        s.audit.log = true;
        s.audit.log_key = Some("a secret of this deployment".into());
    })
    .await;
    let mut task = marked_task();
    task["id"] = json!(MRN);
    assert_eq!(keyed.put(&format!("Task/{MRN}"), &task).await.status(), 201);
    assert_eq!(keyed.get(&format!("Task/{MRN}")).await.status(), 200);

    let lines = wait_for_audit_lines(capture, 2).await;
    for line in &lines {
        for phi in [MRN, "5581-2207", "QuokkaPatient-88", NAME] {
            assert!(!line.contains(phi), "an audit log line holds {phi}: {line}");
        }
        let record: Value = serde_json::from_str(line).expect("a JSON log line");
        let fields = if record["fields"].is_object() { &record["fields"] } else { &record };
        assert_eq!(fields["entity"], "Task", "{line}");
        let hash = fields["patient_hash"].as_str().expect("a patient hash");
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "HMAC-SHA-256 in hex: {line}");
    }
}

/// The audit lines captured so far, once there are at least `n`.
async fn wait_for_audit_lines(capture: &testing::Capture, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(5), Duration::from_millis(10), async || {
        let lines: Vec<String> = capture
            .logs()
            .lines()
            .filter(|l| l.contains(r#""audit""#) && l.contains("audit_id"))
            .map(str::to_owned)
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
    .unwrap_or_else(|| panic!("fewer than {n} audit log lines:\n{}", capture.logs()))
}
