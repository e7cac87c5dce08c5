//! `GET /fhir/metadata`: the CapabilityStatement derived from the code.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_capability_statement_lists_every_type_and_interaction() {
    let app = spawn_app().await;

    let response = app.get("metadata").await;

    assert_eq!(response.status(), 200);
    let statement: Value = response.json().await.expect("JSON");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().expect("resources");
    let types: Vec<&str> = resources.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types, ["CarePlan", "CareTeam", "Task", "Provenance", "Subscription"]);
    // serde_json's preserve_order keeps the server's member order; the snapshot has maps sorted.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(statement, { ".implementation.url" => "[base]" });
    });
}

#[tokio::test]
async fn liveness_and_readiness_answer_once_the_database_is_migrated() {
    let app = spawn_app().await;
    let root = app.base.trim_end_matches("/fhir").to_owned();

    let live = app.client.get(format!("{root}/livez")).send().await.expect("sent");
    let ready = app.client.get(format!("{root}/readyz")).send().await.expect("sent");

    assert_eq!(live.status(), 200);
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("JSON");
    assert_eq!(body["pendingMigrations"], 0);
}
