//! The OpenAPI description: the checked-in `openapi/openapi.yaml` is what the code generates,
//! `/openapi.json` serves it, its examples are accepted, and `/docs` serves Swagger UI.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{assert_outcome, header, spawn_app, spawn_with};

const CHECKED_IN: &str = include_str!("../../openapi/openapi.yaml");

#[test]
fn the_checked_in_openapi_yaml_is_what_the_code_generates() {
    let generated = service::openapi::to_yaml().expect("the document renders as YAML");

    // Compared as text: any difference, even in order or wording, means the file is stale.
    assert!(
        generated == CHECKED_IN,
        "openapi/openapi.yaml differs from what the code generates; run `make openapi` and commit it. \
         First differing line: {:?}",
        generated.lines().zip(CHECKED_IN.lines()).find(|(a, b)| a != b)
    );
}

#[tokio::test]
async fn the_server_serves_the_generated_document_as_json() {
    let app = spawn_app().await;
    let root = app.base.trim_end_matches("/fhir").to_owned();

    let response = app.client.get(format!("{root}/openapi.json")).send().await.expect("sent");

    assert_eq!(response.status(), 200);
    assert!(header(&response, "content-type").starts_with("application/json"));
    let served: Value = response.json().await.expect("JSON");
    assert_eq!(served, service::openapi::document());
    assert_eq!(served["openapi"], "3.0.3");
    assert!(served["paths"]["/fhir/Task/{id}"]["put"].is_object());
}

/// The query string an operation's documented parameter examples make (the criteria of a
/// conditional interaction), or nothing.
fn example_query(operation: &Value) -> String {
    let pairs: Vec<String> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| Some(format!("{}={}", p["name"].as_str()?, p.get("example")?.as_str()?)))
        .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Every request body example of a create or update (conditional ones with their example
/// criteria), sent as the document says, is accepted.
#[tokio::test]
async fn every_request_example_is_accepted_by_the_server() {
    // The Subscription example delivers to https://ehr.example/: allowed here, and never tried
    // (the dispatcher is off: this test sends nothing off the machine).
    let app = spawn_with(|s| {
        s.subscriptions.endpoints = vec!["https://ehr.example/".to_owned()].into();
        s.subscriptions.poll = std::time::Duration::ZERO;
        s.export.max_jobs_per_client = 100;
    })
    .await;
    let root = app.base.trim_end_matches("/fhir").to_owned();
    let document = service::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    let mut sent = 0;

    for (path, item) in paths {
        // An operation's body (the `Parameters` of `$apply`) needs a stored template: its example
        // is sent by the tests of the operation (`templates.rs`).
        if path.ends_with("/$apply") {
            continue;
        }
        for (method, expected) in [("post", [201, 201]), ("put", [200, 201])] {
            let Some(example) = item[method]["requestBody"]["content"]["application/fhir+json"].get("example") else {
                continue;
            };
            let id = example["id"].as_str().unwrap_or_default();
            let url = format!("{root}{}{}", path.replace("{id}", id), example_query(&item[method]));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            // A bulk export kick-off answers 202, asked to respond asynchronously.
            let export = path.ends_with("/$export");
            let expected = if export { [202, 202] } else { expected };
            let response = app
                .client
                .request(method.clone(), &url)
                .header("content-type", "application/fhir+json")
                .header("prefer", if export { "respond-async" } else { "return=representation" })
                .body(example.to_string())
                .send()
                .await
                .expect("sent");
            let status = response.status().as_u16();
            assert!(
                expected.contains(&status),
                "{method} {path}: {status} {}",
                response.text().await.unwrap_or_default()
            );
            sent += 1;
        }
    }
    assert_eq!(
        sent, 30,
        "a create, an update and a conditional update example for each of the eight types, and the six export kick-offs"
    );
}

/// The statuses of a transaction-response or batch-response Bundle's entries.
fn entry_statuses(bundle: &Value) -> Vec<String> {
    let entries = bundle["entry"].as_array().into_iter().flatten();
    entries.map(|e| e["response"]["status"].as_str().unwrap_or_default().to_owned()).collect()
}

/// The transaction and batch examples, sent to a server in the state their answers describe,
/// are answered as those answers show, and the transaction example can be run again.
#[tokio::test]
async fn the_bundle_examples_are_answered_as_their_response_examples() {
    let app = spawn_app().await;
    let document = service::openapi::document();
    let operation = &document["paths"]["/fhir"]["post"];
    let requests = &operation["requestBody"]["content"]["application/fhir+json"]["examples"];
    let answers = &operation["responses"]["200"]["content"]["application/fhir+json"]["examples"];
    assert_eq!(document["paths"]["/fhir/"]["post"]["requestBody"], operation["requestBody"]);
    let plan = document["paths"]["/fhir/CarePlan/{id}"]["put"]["requestBody"]["content"]["application/fhir+json"]
        ["example"]
        .clone();
    assert_eq!(app.put("CarePlan/example", &plan).await.status(), 201);

    for name in ["transaction", "batch"] {
        let response = app.post("", &requests[name]["value"]).await;
        assert_eq!(response.status(), 200, "{name}");
        let bundle: Value = response.json().await.expect("Bundle");
        let expected = &answers[name]["value"];
        assert_eq!(bundle["type"], expected["type"], "{name}");
        assert_eq!(entry_statuses(&bundle), entry_statuses(expected), "{name}: {bundle}");
        for (got, documented) in
            bundle["entry"].as_array().into_iter().flatten().zip(expected["entry"].as_array().into_iter().flatten())
        {
            let keys = |v: &Value| v["response"].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
            assert_eq!(keys(got), keys(documented), "{name}: {got}");
        }
    }

    let again = app.post("", &requests["transaction"]["value"]).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.expect("Bundle");
    assert_eq!(entry_statuses(&again), ["200 OK", "201 Created", "201 Created"], "the team is found, not made twice");
    let teams: Value =
        app.get("CareTeam?identifier=http://clinic.example/careteam|CT-1").await.json().await.expect("Bundle");
    assert_eq!(teams["entry"].as_array().map(Vec::len), Some(1));
}

/// The PATCH examples apply, by id and by the example criteria, in both formats, each to the
/// resource as its update example makes it; the conditional delete example deletes what the
/// conditional update example made.
#[tokio::test]
async fn the_patch_and_conditional_examples_apply() {
    let document = service::openapi::document();
    let paths = &document["paths"];
    let mut patched = 0;

    for media in ["application/json-patch+json", "application/fhir+json"] {
        // The Subscription examples deliver to https://ehr.example/: allowed, never tried.
        let app = spawn_with(|s| {
            s.subscriptions.endpoints = vec!["https://ehr.example/".to_owned()].into();
            s.subscriptions.poll = std::time::Duration::ZERO;
        })
        .await;
        for ty in ["CarePlan", "CareTeam", "Task", "Provenance", "Subscription"] {
            let instance = &paths[format!("/fhir/{ty}/{{id}}")];
            let by_type = &paths[format!("/fhir/{ty}")];
            let body = &instance["put"]["requestBody"]["content"]["application/fhir+json"]["example"];
            let conditional = &by_type["put"]["requestBody"]["content"]["application/fhir+json"]["example"];
            let criteria = example_query(&by_type["put"]);
            assert!(!criteria.is_empty(), "{ty}");

            for (operation, path, update) in [
                (&instance["patch"], format!("{ty}/example"), body),
                (&by_type["patch"], format!("{ty}{criteria}"), conditional),
            ] {
                assert_eq!(example_query(operation), if path.contains('?') { criteria.clone() } else { String::new() });
                let made = app.put(&path, update).await.status().as_u16();
                assert!([200, 201].contains(&made), "PUT {path}: {made}");
                let example = &operation["requestBody"]["content"][media]["example"];
                let response = app
                    .request(Method::PATCH, &path)
                    .header("content-type", media)
                    .body(example.to_string())
                    .send()
                    .await
                    .expect("sent");
                let status = response.status().as_u16();
                let answer = response.text().await.unwrap_or_default();
                assert_eq!(status, 200, "PATCH {path} ({media}): {answer}");
                patched += 1;
            }

            let deleted = app.delete(&format!("{ty}{}", example_query(&by_type["delete"]))).await;
            assert_eq!(deleted.status(), 204, "{ty}");
        }
    }
    assert_eq!(patched, 20);
}

/// A conditional update, patch or delete needs criteria: none, or only `_format`/`_pretty`
/// (which say how to answer), is 405 as documented, and nothing is touched.
#[tokio::test]
async fn conditional_interactions_without_criteria_are_refused_as_documented() {
    let app = spawn_app().await;
    let document = service::openapi::document();
    let only = app.create(&crate::helpers::task("requested")).await;
    let mut body = only.clone();
    body.as_object_mut().map(|o| o.remove("id"));

    for query in ["", "?_format=json", "?_pretty=true&_format=application/fhir+json"] {
        for method in [Method::PUT, Method::PATCH, Method::DELETE] {
            let key = method.as_str().to_lowercase();
            let documented = document["paths"]["/fhir/Task"][&key]["responses"].get("405").is_some();
            let content_type =
                if method == Method::PATCH { "application/json-patch+json" } else { "application/fhir+json" };
            let text = if method == Method::PATCH {
                r#"[{"op":"replace","path":"/status","value":"accepted"}]"#.to_owned()
            } else {
                body.to_string()
            };
            let response = app
                .request(method.clone(), &format!("Task{query}"))
                .header("content-type", content_type)
                .body(text)
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status(), 405, "{method} Task{query}");
            assert!(documented, "{method} /fhir/Task documents 405");
        }
    }
    let current: Value =
        app.get(&format!("Task/{}", only["id"].as_str().expect("id"))).await.json().await.expect("Task");
    assert_eq!(current["meta"]["versionId"], "1", "{current}");
}

#[tokio::test]
async fn docs_serve_swagger_ui_from_the_binary() {
    let app = spawn_app().await;
    let root = app.base.trim_end_matches("/fhir").to_owned();

    let page = app.client.get(format!("{root}/docs")).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/docs/", "/docs redirects to /docs/");
    assert!(header(&page, "content-type").starts_with("text/html"));
    assert_eq!(header(&page, "cache-control"), "no-cache");
    // The page's own scripts, styles and the document must be allowed to load (the strict
    // policy of the API would block them all); nothing from elsewhere.
    let policy = header(&page, "content-security-policy");
    assert!(policy.starts_with("default-src 'self';") && !policy.contains('*') && !policy.contains("http"), "{policy}");
    let api = app.client.get(app.url("metadata")).send().await.expect("sent");
    assert!(header(&api, "content-security-policy").starts_with("default-src 'none'"));
    let html = page.text().await.expect("HTML");
    assert!(html.contains("swagger-ui-bundle.js") && html.contains("swagger-initializer.js"), "{html}");

    let script = app.client.get(format!("{root}/docs/swagger-ui-bundle.js")).send().await.expect("sent");
    assert_eq!(script.status(), 200);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    assert!(header(&script, "cache-control").contains("max-age"));
    let etag = header(&script, "etag");
    assert!(script.text().await.expect("JS").contains("SwaggerUIBundle"));

    let initializer = app.client.get(format!("{root}/docs/swagger-initializer.js")).send().await.expect("sent");
    assert!(initializer.text().await.expect("JS").contains("../openapi.json"));
    let css = app.client.get(format!("{root}/docs/swagger-ui.css")).send().await.expect("sent");
    assert!(header(&css, "content-type").starts_with("text/css"));
    let again = app
        .client
        .get(format!("{root}/docs/swagger-ui-bundle.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status(), 304);
    let missing = app.client.get(format!("{root}/docs/nothing.js")).send().await.expect("sent");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn a_search_form_is_refused_as_the_document_says_when_it_is_not_a_form_or_too_large() {
    let app = spawn_with(|settings| settings.max_body_bytes = 1024).await;

    let json = app
        .request(Method::POST, "Task/_search")
        .header("content-type", "application/json")
        .body(r#"{"status":"requested"}"#)
        .send()
        .await
        .expect("sent");
    let large = app
        .request(Method::POST, "Task/_search")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("description={}", "a".repeat(2048)))
        .send()
        .await
        .expect("sent");
    let bare = app.request(Method::POST, "Task/_search").body("status=requested").send().await.expect("sent");

    assert_eq!(json.status(), 415);
    assert_outcome(&json.json().await.expect("OperationOutcome"), "not-supported", None);
    assert_eq!(large.status(), 413);
    assert_outcome(&large.json().await.expect("OperationOutcome"), "too-long", None);
    assert_eq!(bare.status(), 200, "a form without Content-Type is still a form");
}

/// Every operation the document lists is served: its method on its path reaches a handler,
/// never the router's 405 (method not served) or 404 (path not served). (That every route the
/// server registers is documented is a unit test of the route table: `openapi.rs` describes
/// exactly the table's routes, and the registration is made from the same table.)
#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let root = app.base.trim_end_matches("/fhir").to_owned();
    let document = service::openapi::document();
    let paths = document["paths"].as_object().expect("paths");
    let mut tried = 0;

    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            let concrete = path
                .replace("{id}/{file}", "route-check/1")
                .replace("{id}", "route-check")
                .replace("{vid}", "1")
                .replace("{file}", "");
            // Conditional interactions with their documented criteria (without, they are 405).
            let url = format!("{root}{concrete}{}", example_query(operation));
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let (content_type, body) = match method {
                Method::PATCH => ("application/json-patch+json", "[]"),
                _ => ("application/fhir+json", "{}"),
            };
            let mut request = app.client.request(method.clone(), &url).header("accept", "application/fhir+json");
            if matches!(method, Method::POST | Method::PUT | Method::PATCH) {
                request = request.header("content-type", content_type).body(body);
            }
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but its method is not served: {text}");
            if status == 404 {
                let outcome: Value = serde_json::from_str(&text).unwrap_or_default();
                let said = outcome["issue"][0]["diagnostics"].as_str().unwrap_or_default();
                assert!(
                    !said.starts_with("The path") && !said.starts_with("Resource type"),
                    "{method} {path} is documented but not routed: {said}"
                );
            }
            tried += 1;
        }
    }
    assert!(tried > 90, "every operation was tried ({tried})");
}
