//! `spawn_app()` and the small HTTP vocabulary the tests speak.

use std::time::{Duration, Instant};

use reqwest::{Method, Response};
use serde_json::{json, Value};
use service::{Application, Settings};

/// A running server on a database of its own.
pub(crate) struct TestApp {
    /// The FHIR base, e.g. `http://127.0.0.1:41234/fhir`.
    pub(crate) base: String,
    pub(crate) client: reqwest::Client,
    /// The server's background jobs, to run on demand.
    pub(crate) jobs: service::jobs::Jobs,
    /// The server's notification dispatcher, to run passes on demand or as another replica.
    pub(crate) dispatcher: service::subscriptions::dispatch::Dispatcher,
    /// The server's bulk exporter, to run a job on demand (or as another replica).
    pub(crate) exporter: service::export::Exporter,
    _dir: Option<tempfile::TempDir>,
}

/// Start the real server on a random port and a fresh database.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Like `spawn_app`, with settings adjusted first.
pub(crate) async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let (mut settings, dir) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            (Settings::for_tests(&url, Some(schema)), None)
        }
        _ => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            (Settings::for_tests(&url, None), Some(dir))
        }
    };
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("the server builds");
    let base = format!("http://127.0.0.1:{}/fhir", app.port());
    let jobs = app.jobs();
    let dispatcher = app.dispatcher();
    let exporter = app.exporter();
    tokio::spawn(app.run_until_stopped());
    TestApp { base, client: reqwest::Client::new(), jobs, dispatcher, exporter, _dir: dir }
}

impl TestApp {
    /// A URL outside the FHIR base (`/metrics`, `/readyz`).
    pub(crate) fn root(&self, path: &str) -> String {
        format!("{}{path}", self.base.trim_end_matches("/fhir"))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// A request with FHIR JSON headers, ready for more headers.
    pub(crate) fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).header("accept", "application/fhir+json")
    }

    pub(crate) async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET reaches the server")
    }

    pub(crate) async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.expect("DELETE reaches the server")
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(Method::POST, path, body.to_string()).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(Method::PUT, path, body.to_string()).await
    }

    /// Send a raw body as FHIR JSON.
    pub(crate) async fn send(&self, method: Method, path: &str, body: String) -> Response {
        self.request(method, path)
            .header("content-type", "application/fhir+json")
            .body(body)
            .send()
            .await
            .expect("the request reaches the server")
    }

    /// Create a resource and return its JSON as the server answered.
    pub(crate) async fn create(&self, body: &Value) -> Value {
        let ty = body["resourceType"].as_str().expect("resourceType");
        let response = self.post(ty, body).await;
        assert_eq!(response.status(), 201, "create {ty}");
        response.json().await.expect("JSON body")
    }

    /// Every resource of `ty` the type history knows about, as the count of its entries.
    pub(crate) async fn history_len(&self, path: &str) -> usize {
        let bundle: Value = self.get(path).await.json().await.expect("history Bundle");
        bundle["entry"].as_array().map_or(0, Vec::len)
    }
}

/// Ask `ready` every `every` until it answers, for at most `within`; `None` if it never did.
/// For what the server does in the background (the audit writer, span export, delivery to a
/// receiver) and has no hook to run on demand.
pub(crate) async fn eventually<T>(
    within: Duration,
    every: Duration,
    mut ready: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(done) = ready().await {
            return Some(done);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// A minimal valid Task.
pub(crate) fn task(status: &str) -> Value {
    json!({
        "resourceType": "Task",
        "status": status,
        "intent": "order",
        "for": { "reference": "Patient/p1" },
        "description": "Call the family to follow up on the clinic visit"
    })
}

/// A minimal valid CarePlan.
pub(crate) fn care_plan() -> Value {
    json!({
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": { "reference": "Patient/p1" },
        "title": "Shared care plan"
    })
}

/// The `header` of a response as text.
pub(crate) fn header(response: &Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Assert an OperationOutcome whose first issue has `code` and names `expression`.
pub(crate) fn assert_outcome(body: &Value, code: &str, expression: Option<&str>) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issues = body["issue"].as_array().expect("issues");
    assert!(
        issues.iter().any(|i| i["code"] == code
            && expression.is_none_or(|e| i["expression"].as_array().is_some_and(|x| x.iter().any(|x| x == e)))),
        "expected an issue {code} at {expression:?}: {body}"
    );
}
