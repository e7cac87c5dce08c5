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
    assert_eq!(
        types,
        [
            "CarePlan",
            "CareTeam",
            "Goal",
            "Task",
            "Provenance",
            "Subscription",
            "PlanDefinition",
            "ActivityDefinition",
            "AuditEvent"
        ]
    );
    // serde_json's preserve_order keeps the server's member order; the snapshot has maps sorted.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!(statement, { ".implementation.url" => "[base]" });
    });
}

#[tokio::test]
async fn the_audit_trail_is_declared_read_and_search_only_with_the_parameters_it_answers() {
    let app = spawn_app().await;
    let statement: Value = app.get("metadata").await.json().await.expect("JSON");
    let audit = statement["rest"][0]["resource"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["type"] == "AuditEvent"))
        .expect("AuditEvent in the CapabilityStatement")
        .clone();
    let interactions: Vec<&str> =
        audit["interaction"].as_array().expect("interactions").iter().filter_map(|i| i["code"].as_str()).collect();
    assert_eq!(interactions, ["read", "search-type"]);

    // Every declared parameter is one the trail answers (an unknown one would be 400).
    let example = |kind: &str| if kind == "date" { "ge2020-01-01" } else { "Patient/p1" };
    let mut answered = Vec::new();
    for param in audit["searchParam"].as_array().expect("parameters") {
        let name = param["name"].as_str().expect("name");
        let query = format!("AuditEvent?{name}={}", example(param["type"].as_str().expect("type")));
        answered.push((name.to_owned(), app.get(&query).await.status().as_u16()));
    }
    assert_eq!(answered.len(), 4);
    assert!(answered.iter().all(|(_, status)| *status == 200), "{answered:?}");
    assert_eq!(app.get("AuditEvent?no-such-parameter=1").await.status(), 400);
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
