//! Every official HL7 FHIR R4 example of CarePlan, CareTeam and Task round-trips unchanged,
//! apart from `meta`: the same elements, and every number exactly as written.

use std::path::PathBuf;

use serde_json::Value;

use crate::helpers::spawn_app;

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hl7");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture");
            (p.file_name().expect("name").to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

/// The resource without `meta`'s server-owned parts.
fn comparable(mut value: Value) -> Value {
    if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            value.as_object_mut().expect("object").remove("meta");
        }
    }
    value
}

/// Every number literal in a JSON text, as written.
fn number_literals(text: &str) -> Vec<String> {
    let mut numbers = Vec::new();
    let (mut in_string, mut escaped, mut current) = (false, false, String::new());
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') && !current.is_empty() || c == '-' {
            current.push(c);
        } else {
            if !current.is_empty() {
                numbers.push(std::mem::take(&mut current));
            }
            in_string = c == '"';
        }
    }
    numbers
}

#[tokio::test]
async fn every_hl7_example_round_trips_unchanged_apart_from_meta() {
    let app = spawn_app().await;
    let examples = fixtures();
    assert_eq!(
        examples.len(),
        35,
        "11 CarePlan, 1 CareTeam, 2 Goal, 12 Task, 5 Provenance, 2 PlanDefinition and 2 ActivityDefinition examples"
    );

    for (name, text) in examples {
        let sent: Value = serde_json::from_str(&text).expect("example JSON");
        let ty = sent["resourceType"].as_str().expect("resourceType");
        let id = sent["id"].as_str().expect("id");
        let path = format!("{ty}/{id}");

        let response = app.send(reqwest::Method::PUT, &path, text.clone()).await;
        assert_eq!(response.status(), 201, "{name}: {}", response.text().await.unwrap_or_default());
        let read_text = app.get(&path).await.text().await.expect("body");
        let read: Value = serde_json::from_str(&read_text).expect("JSON");

        assert_eq!(comparable(read), comparable(sent.clone()), "{name} changed");
        let meta_numbers = sent.get("meta").map_or(0, |m| number_literals(&m.to_string()).len());
        let mut sent_numbers = number_literals(&text);
        let mut read_numbers = number_literals(&read_text);
        sent_numbers.sort();
        read_numbers.sort();
        read_numbers.retain(|n| !sent_numbers.is_empty() || n.is_empty());
        assert!(meta_numbers == 0 || sent_numbers.len() >= meta_numbers);
        for n in &sent_numbers {
            assert!(read_numbers.contains(n), "{name}: number {n} was rewritten");
        }
    }
}

#[tokio::test]
async fn examples_posted_without_their_ids_keep_their_content() {
    let app = spawn_app().await;

    for (name, text) in fixtures() {
        let mut sent: Value = serde_json::from_str(&text).expect("example JSON");
        let ty = sent["resourceType"].as_str().expect("resourceType").to_owned();
        sent.as_object_mut().expect("object").remove("id");

        let created = app.create(&sent).await;

        let mut read: Value =
            app.get(&format!("{ty}/{}", created["id"].as_str().expect("id"))).await.json().await.expect("JSON");
        read.as_object_mut().expect("object").remove("id");
        assert_eq!(comparable(read), comparable(sent), "{name} changed");
    }
}

#[test]
fn number_literals_are_found_outside_strings_only() {
    assert_eq!(number_literals(r#"{"a":1.50,"b":"2.0","c":[-3,4e10]}"#), vec!["1.50", "-3", "4e10"]);
}
