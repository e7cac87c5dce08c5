//! Ingest: turn the bytes a client sent into a resource fit to store, or into the full list of
//! what is wrong with them.
//!
//! fhir-sdk's serde models check structure, required elements and codes, but they silently drop
//! elements they do not know and rewrite some values on output. So the model is used only to
//! *check*: the parsed model is serialized again and compared with what was sent, and any element
//! the model did not keep is reported. What is stored is the client's own text (minified), so a
//! client reads back exactly what it sent, apart from `meta` (http://hl7.org/fhir/R4/resource.html#Meta).

use serde_json::Value;

use crate::issue::{Issue, IssueCode};
use crate::json_text;
use crate::resource::{Resource, ResourceType};
use crate::search;
use crate::stored::Prepared;

/// What the body is for: it decides how the body's `id` is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode<'a> {
    /// `POST [type]`: the server assigns the id; an id in the body is ignored, as R4 requires.
    Create,
    /// `PUT [type]/[id]`: the body SHALL carry an id equal to the one in the URL.
    Update { id: &'a str },
    /// `PUT [type]?criteria`: the id is not known yet; the caller compares `Prepared::body_id`
    /// with the resource the criteria select.
    Conditional,
}

/// `ingest` for a resource type known only at run time (Bundle entries).
pub fn ingest_as(ty: ResourceType, body: &[u8], mode: IngestMode<'_>) -> Result<Prepared, Vec<Issue>> {
    (ty.descriptor().ingest)(body, mode)
}

/// Check `body` as a resource of type `R` and prepare it for storage.
pub fn ingest<R: Resource>(body: &[u8], mode: IngestMode<'_>) -> Result<Prepared, Vec<Issue>> {
    let ty = R::TYPE;
    let sent = parse_envelope(ty, body, mode)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let model: R::Model = match serde_path_to_error::deserialize(&mut de) {
        Ok(model) => model,
        Err(err) => return Err(vec![model_error(ty, &err)]),
    };
    let mut issues = Vec::new();
    match serde_json::to_value(&model) {
        Ok(echo) => dropped_elements(&sent, &echo, ty.as_str(), &mut issues),
        Err(err) => issues.push(Issue::general(IssueCode::Structure, format!("resource cannot be represented: {err}"))),
    }
    R::check(&model, &mut issues);
    if !issues.is_empty() {
        return Err(issues);
    }
    // The body parsed as JSON above, so it is UTF-8.
    let text =
        std::str::from_utf8(body).map_err(|_| vec![Issue::general(IssueCode::Structure, "body is not UTF-8")])?;
    let prepared = Prepared::from_minified(ty, &json_text::minify(text))
        .map_err(|err| vec![Issue::general(IssueCode::Structure, format!("resource cannot be stored: {err}"))])?;
    Ok(prepared.with_index(search::extract(ty, &sent)))
}

/// Syntax, `resourceType` and `id`: the checks that do not need the model.
fn parse_envelope(ty: ResourceType, body: &[u8], mode: IngestMode<'_>) -> Result<Value, Vec<Issue>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(vec![Issue::general(IssueCode::Required, "the request body is empty; a resource is required")]);
    }
    // Before any parser (and any recursive walk over what it builds) sees the text.
    json_text::check_depth(body).map_err(|why| vec![Issue::general(IssueCode::TooCostly, why)])?;
    let sent: Value = serde_json::from_slice(body)
        .map_err(|err| vec![Issue::general(IssueCode::Structure, format!("the body is not valid JSON: {err}"))])?;
    let Some(object) = sent.as_object() else {
        return Err(vec![Issue::general(IssueCode::Structure, "the body must be a JSON object holding one resource")]);
    };
    let mut issues = Vec::new();
    match object.get("resourceType") {
        Some(Value::String(name)) if name == ty.as_str() => {}
        Some(Value::String(name)) => issues.push(Issue::error(
            IssueCode::Invalid,
            "resourceType",
            format!("resourceType '{name}' does not match the endpoint, which takes {ty}"),
        )),
        Some(_) => issues.push(Issue::error(IssueCode::Structure, "resourceType", "resourceType must be a string")),
        None => issues.push(Issue::error(IssueCode::Required, "resourceType", "resourceType is missing")),
    }
    let body_id = object.get("id");
    let id_path = format!("{ty}.id");
    match (mode, body_id) {
        (IngestMode::Create | IngestMode::Conditional, _) => {}
        (IngestMode::Update { id }, Some(Value::String(body_id))) if body_id == id => {}
        (IngestMode::Update { id }, Some(Value::String(body_id))) => issues.push(Issue::error(
            IssueCode::Invalid,
            id_path,
            format!("the id in the body ('{body_id}') differs from the id in the URL ('{id}')"),
        )),
        (IngestMode::Update { .. }, Some(_)) => {
            issues.push(Issue::error(IssueCode::Structure, id_path, "id must be a string"))
        }
        (IngestMode::Update { .. }, None) => {
            issues.push(Issue::error(IssueCode::Required, id_path, "an update must carry the resource id in the body"))
        }
    }
    if issues.is_empty() {
        Ok(sent)
    } else {
        Err(issues)
    }
}

/// Turn a model deserialization error into an issue that names the element.
fn model_error(ty: ResourceType, err: &serde_path_to_error::Error<serde_json::Error>) -> Issue {
    let inner = err.inner().to_string();
    let message = inner.split(" at line ").next().unwrap_or(&inner).to_string();
    let mut path = ty.as_str().to_string();
    let at = err.path().to_string();
    if at != "." && !at.is_empty() {
        path.push('.');
        path.push_str(&at.replace(".?", "").replace('?', ""));
    }
    let (code, path) = if let Some(field) = missing_field(&message) {
        (IssueCode::Required, format!("{path}.{field}"))
    } else if message.starts_with("unknown variant") || message.starts_with("Unknown value") {
        (IssueCode::CodeInvalid, path)
    } else {
        (IssueCode::Value, path)
    };
    Issue::error(code, path.clone(), format!("{path}: {message}"))
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Report every element of `sent` that the model did not keep (`echo`), at its FHIRPath.
fn dropped_elements(sent: &Value, echo: &Value, path: &str, issues: &mut Vec<Issue>) {
    match (sent, echo) {
        (Value::Object(sent), Value::Object(echo)) => {
            for (key, value) in sent {
                let child = format!("{path}.{key}");
                match echo.get(key) {
                    Some(kept) => dropped_elements(value, kept, &child, issues),
                    None => issues.push(dropped(&child, value)),
                }
            }
        }
        (Value::Array(sent), Value::Array(echo)) => {
            if sent.len() != echo.len() {
                issues.push(Issue::error(
                    IssueCode::Structure,
                    path,
                    format!("{path}: array items are not all valid (null or empty items are not allowed)"),
                ));
                return;
            }
            for (i, (value, kept)) in sent.iter().zip(echo).enumerate() {
                dropped_elements(value, kept, &format!("{path}[{i}]"), issues);
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Null) => issues.push(dropped(path, sent)),
        (Value::String(text), _) => {
            if let Some(c) = crate::text::forbidden_char(text) {
                issues.push(Issue::error(
                    IssueCode::Value,
                    path,
                    format!(
                        "{path}: strings may not hold control characters ({}); only tab, carriage return and line feed",
                        crate::text::describe(c)
                    ),
                ));
            }
        }
        _ => {}
    }
}

fn dropped(path: &str, value: &Value) -> Issue {
    let empty = match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    let diagnostics = if empty {
        format!("{path}: empty or null values are not allowed in FHIR JSON")
    } else {
        format!("{path}: unknown element; it is not part of the resource definition")
    };
    Issue::error(IssueCode::Structure, path, diagnostics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CarePlan, Task};

    fn issues<R: Resource>(body: &str, mode: IngestMode<'_>) -> Vec<(String, IssueCode)> {
        match ingest::<R>(body.as_bytes(), mode) {
            Ok(_) => Vec::new(),
            Err(issues) => issues.into_iter().map(|i| (i.expression.unwrap_or_default(), i.code)).collect(),
        }
    }

    fn check<R: Resource>(body: &str, expected: &[(&str, IssueCode)]) {
        let got = issues::<R>(body, IngestMode::Update { id: "a" });
        let expected: Vec<(String, IssueCode)> = expected.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        assert_eq!(got, expected, "{body}");
    }

    const TASK: &str = r#""resourceType":"Task","id":"a","status":"requested","intent":"order""#;

    #[test]
    fn a_valid_task_passes() {
        check::<Task>(&format!("{{{TASK}}}"), &[]);
    }

    #[test]
    fn bad_bodies_name_the_element() {
        check::<Task>(&format!("{{{TASK},\"colour\":\"red\"}}"), &[("Task.colour", IssueCode::Structure)]);
        check::<Task>(
            &format!("{{{TASK},\"note\":[{{\"text\":\"x\",\"bogus\":1}}]}}"),
            &[("Task.note[0].bogus", IssueCode::Structure)],
        );
        check::<Task>(&format!("{{{TASK},\"note\":[]}}"), &[("Task.note", IssueCode::Structure)]);
        check::<Task>(
            &format!("{{{TASK},\"note\":[{{\"text\":\"ok\\ttab\"}},{{\"text\":\"nul\\u0000\"}}]}}"),
            &[("Task.note[1].text", IssueCode::Value)],
        );
        check::<Task>(
            r#"{"resourceType":"Task","id":"a","status":"bogus","intent":"order"}"#,
            &[("Task.status", IssueCode::CodeInvalid)],
        );
        check::<Task>(r#"{"resourceType":"Task","id":"a","intent":"order"}"#, &[("Task.status", IssueCode::Required)]);
        check::<Task>(r#"{"resourceType":"CarePlan","id":"a"}"#, &[("resourceType", IssueCode::Invalid)]);
        check::<Task>(&format!("{{{TASK}}}").replace("\"a\"", "\"b\""), &[("Task.id", IssueCode::Invalid)]);
        check::<Task>(
            r#"{"resourceType":"Task","status":"requested","intent":"order"}"#,
            &[("Task.id", IssueCode::Required)],
        );
        check::<CarePlan>(
            r#"{"resourceType":"CarePlan","id":"a","status":"active","intent":"plan"}"#,
            &[("CarePlan.subject", IssueCode::Required)],
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_structure_errors() {
        assert_eq!(issues::<Task>("{", IngestMode::Create), vec![(String::new(), IssueCode::Structure)]);
        assert_eq!(issues::<Task>("[1]", IngestMode::Create), vec![(String::new(), IssueCode::Structure)]);
        assert_eq!(issues::<Task>("  ", IngestMode::Create), vec![(String::new(), IssueCode::Required)]);
    }

    #[test]
    fn decimals_and_offsets_are_kept_as_sent() {
        let body = r#"{"resourceType":"Task","id":"a","status":"requested","intent":"order",
            "authoredOn":"2026-01-02T03:04:05+00:00","input":[{"type":{"text":"dose"},"valueDecimal":1.50}]}"#;
        let prepared = ingest::<Task>(body.as_bytes(), IngestMode::Update { id: "a" }).expect("valid task");
        let text = prepared.render("a", crate::VersionMeta { version_id: 1, last_updated_ms: 0 });
        assert!(text.contains(r#""valueDecimal":1.50"#), "{text}");
        assert!(text.contains("+00:00"), "{text}");
    }
}
