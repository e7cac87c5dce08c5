//! Lifecycle: readiness follows the database through an outage (requests meanwhile get 503, not
//! 500, and the pool reconnects without a restart), and SIGTERM lets a transaction in flight
//! finish. The SIGTERM test runs the real command line as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::postgres::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{assert_outcome, eventually, spawn_with, task, TestApp};

/// A name no exported span or metric may hold.
const NAME: &str = "Quokka-Zebrafinch-7319";

/// Poll `path` until it answers `status` (within `limit`).
async fn wait_for_status(app: &TestApp, path: &str, status: u16, limit: Duration) {
    let mut answer = None;
    let reached = eventually(limit, Duration::from_millis(50), async || {
        let now = app.client.get(app.root(path)).send().await.map(|r| r.status().as_u16());
        let done = now.as_ref().is_ok_and(|s| *s == status);
        answer = Some(now);
        done.then_some(())
    })
    .await;
    assert!(reached.is_some(), "{path} still answers {answer:?}, not {status}");
}

#[tokio::test]
async fn readiness_follows_the_database_through_an_outage_and_requests_meanwhile_get_503() {
    // SQLite is a file this process opens: it has no outage to recover from. PostgreSQL only.
    let Ok(url) = std::env::var("TEST_DATABASE_URL") else { return };
    if url.is_empty() {
        return;
    }
    // Arrange: a database of its own, since connections are refused per database.
    let admin = PgPool::connect(&url).await.expect("the test database");
    let name = format!("careplan_outage_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await.expect("created");
    let (server, _) = url.rsplit_once('/').expect("a database URL");
    let database_url = format!("{server}/{name}");
    let app = spawn_with(|s| {
        s.database.url = database_url;
        s.database.schema = None;
        s.database.acquire_timeout = Duration::from_secs(2);
    })
    .await;
    wait_for_status(&app, "/readyz", 200, Duration::from_secs(5)).await;

    // Act: the database refuses connections and drops the open ones.
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).execute(&admin).await.expect("closed");
    sqlx::query(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        .execute(&admin)
        .await
        .expect("terminated");

    // Assert: not ready; reads and writes answer 503 with an OperationOutcome.
    wait_for_status(&app, "/readyz", 503, Duration::from_secs(10)).await;
    let read = app.get("Task?status=requested").await;
    assert_eq!(read.status(), 503);
    assert_outcome(&read.json::<Value>().await.expect("OperationOutcome"), "timeout", None);
    let write = app.post("Task", &task("requested")).await;
    assert_eq!(write.status(), 503);
    assert_outcome(&write.json::<Value>().await.expect("OperationOutcome"), "timeout", None);

    // Back: ready again without a restart, and writes succeed.
    sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).execute(&admin).await.expect("opened");
    wait_for_status(&app, "/readyz", 200, Duration::from_secs(15)).await;
    assert_eq!(app.post("Task", &task("requested")).await.status(), 201);
    assert_eq!(app.get("Task?status=requested").await.status(), 200);

    drop(app);
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&admin).await;
}

/// The `careplan serve` child process and the port it listens on.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// Its stderr, line by line.
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `careplan` with the settings every test here shares: authorization off, JSON logs at info,
/// no OpenTelemetry unless the test sets it.
pub(crate) fn careplan(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_careplan-under-test"));
    command
        .args(args)
        .env("CAREPLAN_ADDR", "127.0.0.1:0")
        .env("CAREPLAN_AUTH_DISABLED", "true")
        .env("CAREPLAN_LOG", "info")
        .env("CAREPLAN_LOG_FORMAT", "json")
        .env("CAREPLAN_WORKERS", "1")
        .env("CAREPLAN_SHUTDOWN_GRACE_SECS", "30")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Start `careplan serve` with `settings` (the database, and more) and wait until it listens.
pub(crate) fn serve(settings: &[(&str, String)]) -> Served {
    let mut command = careplan(&["serve"]);
    for (name, value) in settings {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("careplan starts");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    // Owned at once, so a failure below still kills and reaps the child (`Drop`).
    let mut served = Served { child, port: 0, lines };
    let deadline = Instant::now() + Duration::from_secs(30);
    while served.port == 0 {
        let line =
            served.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("careplan listens");
        if line.contains("careplan listening") {
            let value: Value = serde_json::from_str(&line).expect("a JSON log line");
            served.port = value["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("the port");
        }
    }
    served
}

/// The settings of a database of its own: a schema of `TEST_DATABASE_URL`, else a SQLite file
/// in `dir`.
pub(crate) fn own_database(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => vec![
            ("CAREPLAN_DATABASE_URL", url),
            ("CAREPLAN_DATABASE_SCHEMA", format!("t_{}", uuid::Uuid::new_v4().simple())),
        ],
        _ => vec![("CAREPLAN_DATABASE_URL", format!("sqlite://{}", dir.join("careplan.db").display()))],
    }
}

/// A transaction Bundle creating `n` Tasks.
fn bundle_of_tasks(n: usize) -> String {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            let mut task = task("requested");
            task["identifier"] = json!([{ "system": "urn:oid:1.2.36.1.4", "value": format!("sigterm-{i}") }]);
            json!({ "resource": task, "request": { "method": "POST", "url": "Task" } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries }).to_string()
}

#[tokio::test]
async fn sigterm_during_a_transaction_lets_it_finish_and_loses_nothing() {
    // Arrange: the real binary on a database of its own.
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = own_database(dir.path());
    let mut served = serve(&database);
    const TASKS: usize = 500;
    let body = bundle_of_tasks(TASKS);
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);

    // One connection, surely accepted and served: it answers a first request.
    let mut connection = TcpStream::connect(("127.0.0.1", served.port)).await.expect("connected");
    connection.write_all(b"GET /livez HTTP/1.1\r\nhost: localhost\r\n\r\n").await.expect("sent");
    let mut buffer = [0u8; 1024];
    let n = connection.read(&mut buffer).await.expect("read");
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));

    // Act: the transaction is half sent when SIGTERM arrives; the rest follows.
    let head = format!(
        "POST /fhir HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/fhir+json\r\n\
         accept: application/fhir+json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes()).await.expect("head sent");
    connection.write_all(first).await.expect("first half sent");
    // Time for the worker to read the head and start on the body: nothing outside the process
    // tells when it has (the request is not answered, nor logged, before its body is complete).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(served.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    // The rest goes only once the server has begun its graceful stop (actix logs it).
    let stopping = eventually(Duration::from_secs(10), Duration::from_millis(10), async || {
        served.lines.try_iter().any(|line| line.contains("SIGTERM received")).then_some(())
    })
    .await;
    assert!(stopping.is_some(), "careplan never said it received SIGTERM");
    connection.write_all(rest).await.expect("second half sent");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), connection.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");

    // Assert: the client got its answer, and the process then stopped cleanly.
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{}", answer.chars().take(300).collect::<String>());
    assert_eq!(answer.matches(r#""status":"201 Created""#).count(), TASKS, "every entry created");
    let status =
        eventually(Duration::from_secs(35), Duration::from_millis(50), async || served.child.try_wait().expect("wait"))
            .await
            .expect("careplan did not stop after SIGTERM");
    assert!(status.success(), "careplan exited with {status}");
    let log: Vec<String> = served.lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("careplan stopping")), "{log:#?}");

    // After a restart every Task is there.
    let again = serve(&database);
    let client = reqwest::Client::new();
    let count: Value = client
        .request(Method::GET, format!("http://127.0.0.1:{}/fhir/Task?_summary=count", again.port))
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("Bundle");
    assert_eq!(count["total"], json!(TASKS), "{count}");
}

#[tokio::test]
async fn an_unreachable_database_fails_start_up_with_one_line_and_exit_code_1() {
    // Arrange: nothing listens on port 1; the URL carries a password.
    let mut command = careplan(&["serve"]);
    command.env("CAREPLAN_DATABASE_URL", "postgres://careplan:s3cret-pw@127.0.0.1:1/careplan");

    // Act
    let output = command.output().expect("careplan ran");

    // Assert
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stderr.lines().filter(|l| l.contains("careplan failed")).collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    let line: Value = serde_json::from_str(failures[0]).expect("a JSON line");
    let error = line["error"].as_str().expect("the error");
    assert!(error.starts_with("cannot connect to the database postgres://careplan@127.0.0.1:1/careplan"), "{error}");
    assert!(error.contains("Connection refused"), "{error}");
    assert!(!stderr.contains("s3cret-pw"), "the password is never printed: {stderr}");
}

/// A stand-in OpenTelemetry collector: what each `/v1/{signal}` POST carried.
async fn collector() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let store = received.clone();
    let server = actix_web::HttpServer::new(move || {
        let store = store.clone();
        actix_web::App::new().route(
            "/v1/{signal}",
            actix_web::web::post().to(move |signal: actix_web::web::Path<String>, body: actix_web::web::Bytes| {
                let store = store.clone();
                async move {
                    store.lock().expect("lock").push((signal.into_inner(), body.to_vec()));
                    actix_web::HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (port, received)
}

#[tokio::test]
async fn with_an_otlp_endpoint_traces_and_metrics_reach_the_collector_without_phi() {
    // Arrange
    let (port, received) = collector().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut served = serve(&[
        ("CAREPLAN_DATABASE_URL", format!("sqlite://{}", dir.path().join("careplan.db").display())),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60000".into()),
    ]);
    let mut marked = task("requested");
    marked["description"] = json!(format!("Call {NAME}"));

    // Act: one write, then SIGTERM, which must flush the spans and the metrics.
    let created = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/fhir/Task", served.port))
        .header("content-type", "application/fhir+json")
        .body(marked.to_string())
        .send()
        .await
        .expect("POST");
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.expect("JSON")["id"].as_str().expect("id").to_owned();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(served.child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopped =
        eventually(Duration::from_secs(30), Duration::from_millis(50), async || served.child.try_wait().expect("wait"))
            .await;
    assert!(stopped.is_some(), "careplan did not stop");

    // Assert: both signals arrived (metrics only at shutdown: the interval is a minute), and
    // neither holds the name or the id.
    let received = received.lock().expect("lock").clone();
    let has = |signal: &str, text: &str| {
        received.iter().any(|(s, body)| s == signal && body.windows(text.len()).any(|w| w == text.as_bytes()))
    };
    assert!(has("traces", "POST /fhir/Task"), "the server span was exported");
    assert!(has("traces", "db.create"), "the database spans were exported");
    assert!(has("metrics", "http.server.request.duration"), "the request metrics were exported");
    for (signal, body) in &received {
        for phi in [NAME, id.as_str()] {
            assert!(!body.windows(phi.len()).any(|w| w == phi.as_bytes()), "{signal} holds {phi}");
        }
    }
}

#[tokio::test]
async fn the_searches_that_aborted_the_process_are_refused_and_it_still_answers() {
    // Arrange: the real binary (a stack overflow aborts a process, which no in-process server
    // could survive to report).
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut served = serve(&own_database(dir.path()));
    let base = format!("http://127.0.0.1:{}", served.port);
    let client = reqwest::Client::new();
    let chain = "part-of:Task.".repeat(2400) + "status";
    let has = "_has:Task:part-of:".repeat(2500) + "status";
    let batch = json!({ "resourceType": "Bundle", "type": "batch", "entry": [
        { "request": { "method": "GET", "url": format!("Task?{has}=requested") } }
    ]});

    // Act: a 2,400-link chain by GET, a 2,500-deep _has by POST _search and in a batch.
    let by_get = client.get(format!("{base}/fhir/Task?{chain}=requested")).send().await.expect("GET");
    let by_post = client
        .post(format!("{base}/fhir/Task/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{has}=requested"))
        .send()
        .await
        .expect("POST _search");
    let in_batch = client
        .post(format!("{base}/fhir"))
        .header("content-type", "application/fhir+json")
        .body(batch.to_string())
        .send()
        .await
        .expect("batch");

    // Assert: refused, and the process lives on.
    assert_eq!(by_get.status(), 400);
    assert_eq!(by_post.status(), 400);
    assert_eq!(in_batch.status(), 200);
    let entry = &in_batch.json::<Value>().await.expect("batch-response")["entry"][0]["response"];
    assert_eq!(entry["status"], "400 Bad Request", "{entry}");
    assert!(served.child.try_wait().expect("wait").is_none(), "careplan is still running");
    let livez = client.get(format!("{base}/livez")).send().await.expect("GET /livez");
    assert_eq!(livez.status(), 200);
}

#[tokio::test]
async fn an_export_kicked_off_before_a_restart_is_written_after_it() {
    use crate::export::{files, manifest, status_url};
    // Arrange: the real binary on a database of its own, running no export job.
    let dir = tempfile::tempdir().expect("temporary directory");
    let database = own_database(dir.path());
    let mut idle = database.clone();
    idle.push(("CAREPLAN_EXPORT_POLL_MS", "0".into()));
    let first = serve(&idle);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/fhir", first.port);
    let bundle = bundle_of_tasks(20);
    let created =
        client.post(&base).header("content-type", "application/fhir+json").body(bundle).send().await.expect("POST");
    assert_eq!(created.status(), 200);
    let kicked = client
        .get(format!("{base}/$export?_type=Task"))
        .header("prefer", "respond-async")
        .send()
        .await
        .expect("kick-off");
    let status = status_url(&kicked);
    assert_eq!(client.get(&status).send().await.expect("status").status(), 202);

    // Act: the process stops; another starts on the same database, exporting.
    drop(first);
    let second = serve(&database);
    let status = status.replace(&base, &format!("http://127.0.0.1:{}/fhir", second.port));

    // Assert: the job survived and is written in full (its URLs name the new process).
    let manifest = manifest(&client, &status, None).await;
    let files = files(&client, &manifest, None).await;
    assert_eq!(files.iter().map(|(_, lines)| lines.len()).sum::<usize>(), 20);
    assert!(files.iter().all(|(ty, _)| ty == "Task"));
}
