//! Index values: what a stored resource yields for each of its type's search parameters.

use std::collections::HashSet;

use serde_json::Value;

use super::dates;
use super::params::{self, SearchParam, Shape};
use crate::resource::ResourceType;

/// One value of one search parameter, ready to store in the index of its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IndexValue {
    Token {
        system: Option<String>,
        code: Option<String>,
        /// `CodeableConcept.text`, `Coding.display` or `Identifier.type.text`, for `:text`.
        text: Option<String>,
        /// For identifiers: the first coding of `Identifier.type`, for `:of-type`.
        type_system: Option<String>,
        type_code: Option<String>,
    },
    Reference {
        /// `Patient` of `Patient/123` (also of absolute URLs ending in `Patient/123`).
        target_type: Option<String>,
        /// `123` of `Patient/123`.
        target_id: Option<String>,
        /// The reference (or canonical URL) exactly as written.
        url: Option<String>,
        /// `Reference.identifier`, for `:identifier`.
        identifier_system: Option<String>,
        identifier_value: Option<String>,
    },
    /// Inclusive range in epoch milliseconds; open period ends are `i64::MIN` / `i64::MAX`.
    Date {
        low: i64,
        high: i64,
    },
    String {
        value: String,
    },
    Uri {
        value: String,
    },
}

/// A value with the parameter it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub param: &'static str,
    pub value: IndexValue,
}

/// Every index entry `resource` (a valid resource of type `ty`) yields: for each search
/// parameter of `ty`, in table order, the values found along its path (without repeats).
///
/// Values of an unexpected JSON type are skipped: the resource has been validated already, and
/// indexing is no place to reject it.
pub fn extract(ty: ResourceType, resource: &Value) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    for param in params::for_type(ty) {
        if matches!(param.shape, Shape::Computed(_)) {
            continue;
        }
        let values = extract_param(param, resource);
        // Repeats are dropped with a set: comparing each value with those kept before was
        // quadratic (100k identifiers took 34 s).
        let mut seen = HashSet::with_capacity(values.len());
        let first: Vec<bool> = values.iter().map(|value| seen.insert(value)).collect();
        drop(seen);
        let kept = values.into_iter().zip(first).filter_map(|(value, first)| first.then_some(value));
        entries.extend(kept.map(|value| IndexEntry { param: param.name, value }));
    }
    entries
}

/// The index values `resource` yields for one parameter (with repeats).
pub fn extract_param(param: &SearchParam, resource: &Value) -> Vec<IndexValue> {
    let mut nodes = Vec::new();
    walk(resource, param.path, None, &mut nodes);
    let mut values = Vec::new();
    for node in nodes {
        values_of(param, node, &mut values);
    }
    values
}

/// A value found at the end of a path, with the type suffix of the last choice element on the
/// way (`Timing` of `scheduledTiming`), which tells what it is.
#[derive(Clone, Copy)]
struct Node<'a> {
    value: &'a Value,
    choice: Option<&'a str>,
}

/// Collects the values along `path` below `value`, flattening arrays at every step.
fn walk<'a>(value: &'a Value, path: &[&str], choice: Option<&'a str>, out: &mut Vec<Node<'a>>) {
    if let Value::Array(items) = value {
        for item in items {
            walk(item, path, choice, out);
        }
        return;
    }
    let Some((segment, rest)) = path.split_first() else {
        out.push(Node { value, choice });
        return;
    };
    let Value::Object(members) = value else {
        return;
    };
    if let Some((name, url)) = extension_step(segment) {
        // `extension('url')`: only the extensions with this URL.
        let items = members.get(name).map(|m| m.as_array().map_or(std::slice::from_ref(m), Vec::as_slice));
        for item in items.unwrap_or_default() {
            if item.get("url").and_then(Value::as_str) == Some(url) {
                walk(item, rest, choice, out);
            }
        }
        return;
    }
    match segment.strip_suffix("[x]") {
        // A choice element: `scheduled[x]` is `scheduledTiming`, `scheduledPeriod`, ...
        Some(prefix) => {
            for (name, member) in members {
                let suffix = name.strip_prefix(prefix).filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()));
                if let Some(suffix) = suffix {
                    walk(member, rest, Some(suffix), out);
                }
            }
        }
        None => {
            if let Some(member) = members.get(*segment) {
                walk(member, rest, choice, out);
            }
        }
    }
}

/// A path step `extension('url')` (FHIRPath's `extension(url)`): the member and the URL.
pub(crate) fn extension_step(segment: &str) -> Option<(&str, &str)> {
    let url = segment.strip_prefix("extension('")?.strip_suffix("')")?;
    Some(("extension", url))
}

/// The index values of one node, by the parameter's shape.
fn values_of(param: &SearchParam, node: Node<'_>, out: &mut Vec<IndexValue>) {
    let value = node.value;
    match param.shape {
        Shape::Code => {
            if let Some(code) = value.as_str() {
                out.push(token(None, Some(code.to_owned()), None));
            }
        }
        Shape::Coding => out.extend(coding(value, None)),
        Shape::CodeableConcept => codeable_concept(value, out),
        Shape::Identifier => out.extend(identifier(value)),
        Shape::Reference => {
            let keep = |r: &IndexValue| match r {
                IndexValue::Reference { target_type: Some(ty), .. } => param.targets.contains(&ty.as_str()),
                _ => false,
            };
            out.extend(reference(value).filter(|r| !param.restrict || keep(r)));
        }
        Shape::Canonical => out.extend(value.as_str().map(canonical)),
        Shape::Uri => {
            if let Some(uri) = value.as_str() {
                out.push(IndexValue::Uri { value: uri.to_owned() });
            }
        }
        Shape::String => {
            if let Some(string) = value.as_str() {
                out.push(IndexValue::String { value: string.to_owned() });
            }
        }
        Shape::DateTime => out.extend(date_time(value)),
        Shape::Period => out.extend(period(value)),
        Shape::Scheduled => match node.choice {
            Some("Period") => out.extend(period(value)),
            Some("Timing") => timing(value, out),
            // `scheduledString` is free text ("daily"): nothing to index.
            _ => {}
        },
        // Evaluated when a search runs, from other parameters' values.
        Shape::Computed(_) => {}
    }
}

/// A member of `object` that is a string.
fn string_member(object: &Value, name: &str) -> Option<String> {
    object.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn token(system: Option<String>, code: Option<String>, text: Option<String>) -> IndexValue {
    IndexValue::Token { system, code, text, type_system: None, type_code: None }
}

/// A `Coding` as a token, with `fallback_text` as its text when it has no display; `None` if
/// it holds nothing to search by.
fn coding(value: &Value, fallback_text: Option<&str>) -> Option<IndexValue> {
    let system = string_member(value, "system");
    let code = string_member(value, "code");
    let display = string_member(value, "display");
    if system.is_none() && code.is_none() && display.is_none() {
        return None;
    }
    Some(token(system, code, display.or_else(|| fallback_text.map(str::to_owned))))
}

/// A `CodeableConcept`: a token per coding, or one token with only the text when no coding
/// holds anything.
fn codeable_concept(value: &Value, out: &mut Vec<IndexValue>) {
    let text = value.get("text").and_then(Value::as_str);
    let codings = value.get("coding").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let before = out.len();
    out.extend(codings.iter().filter_map(|c| coding(c, text)));
    if out.len() == before {
        if let Some(text) = text {
            out.push(token(None, None, Some(text.to_owned())));
        }
    }
}

/// An `Identifier` as a token `system|value`, with its type for `:of-type` and `:text`.
fn identifier(value: &Value) -> Option<IndexValue> {
    let system = string_member(value, "system");
    let code = string_member(value, "value");
    let ty = value.get("type");
    let text = ty.and_then(|t| string_member(t, "text"));
    let first = ty.and_then(|t| t.get("coding")).and_then(|c| c.get(0));
    let type_system = first.and_then(|c| string_member(c, "system"));
    let type_code = first.and_then(|c| string_member(c, "code"));
    if system.is_none() && code.is_none() && text.is_none() && type_code.is_none() {
        return None;
    }
    Some(IndexValue::Token { system, code, text, type_system, type_code })
}

/// A `Reference`; `None` when it has neither a literal reference nor an identifier (a
/// display-only reference).
fn reference(value: &Value) -> Option<IndexValue> {
    let url = string_member(value, "reference");
    let ident = value.get("identifier");
    let identifier_system = ident.and_then(|i| string_member(i, "system"));
    let identifier_value = ident.and_then(|i| string_member(i, "value"));
    if url.is_none() && identifier_system.is_none() && identifier_value.is_none() {
        return None;
    }
    let (target_type, target_id) = url.as_deref().and_then(literal_target).unzip();
    Some(IndexValue::Reference { target_type, target_id, url, identifier_system, identifier_value })
}

/// `Type` and `id` of a literal reference (http://hl7.org/fhir/R4/references.html#literal):
/// `Type/id`, `Type/id/_history/version`, or an absolute URL ending in one of those. Contained
/// (`#id`) and `urn:` references name no type.
fn literal_target(reference: &str) -> Option<(String, String)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let segments: Vec<&str> = reference.split('/').collect();
    let end = match segments.as_slice() {
        [.., "_history", _] => segments.len() - 2,
        _ => segments.len(),
    };
    type_and_id(segments.get(..end)?)
}

/// The last two segments as `Type` and `id`, if they look like a resource type (a capitalised
/// name) and a FHIR id (http://hl7.org/fhir/R4/datatypes.html#id).
fn type_and_id(segments: &[&str]) -> Option<(String, String)> {
    let [.., ty, id] = segments else {
        return None;
    };
    let is_type = ty.starts_with(|c: char| c.is_ascii_uppercase()) && ty.chars().all(|c| c.is_ascii_alphanumeric());
    let is_id = (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (is_type && is_id).then(|| ((*ty).to_owned(), (*id).to_owned()))
}

/// A `canonical` (http://hl7.org/fhir/R4/references.html#canonical) as a reference by URL,
/// without its `|version`.
fn canonical(value: &str) -> IndexValue {
    let url = value.split_once('|').map_or(value, |(url, _version)| url);
    let segments: Vec<&str> = url.split('/').collect();
    let (target_type, target_id) = type_and_id(&segments).unzip();
    IndexValue::Reference {
        target_type,
        target_id,
        url: Some(url.to_owned()),
        identifier_system: None,
        identifier_value: None,
    }
}

/// A `date`, `dateTime` or `instant`.
fn date_time(value: &Value) -> Option<IndexValue> {
    let (low, high) = dates::range(value.as_str()?)?;
    Some(IndexValue::Date { low, high })
}

/// A `Period`, from the start of `start` to the end of `end`; a missing end is open.
fn period(value: &Value) -> Option<IndexValue> {
    let bound = |name: &str| value.get(name).and_then(Value::as_str).and_then(dates::range);
    let (start, end) = (bound("start"), bound("end"));
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(IndexValue::Date { low: start.map_or(i64::MIN, |(low, _)| low), high: end.map_or(i64::MAX, |(_, high)| high) })
}

/// A `Timing`: each `event`, and `repeat.boundsPeriod`.
fn timing(value: &Value, out: &mut Vec<IndexValue>) {
    let events = value.get("event").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    out.extend(events.iter().filter_map(date_time));
    out.extend(value.get("repeat").and_then(|r| r.get("boundsPeriod")).and_then(period));
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    use super::{extract, IndexValue};
    use crate::resource::ResourceType;

    /// Checks every entry `extract` yields for `resource` against `expect`, one line per
    /// entry (`param kind value`), ignoring indentation and blank lines.
    fn check(ty: ResourceType, resource: &str, expect: &str) {
        let resource: Value = serde_json::from_str(resource).expect("fixture is JSON");
        let actual: Vec<String> =
            extract(ty, &resource).iter().map(|e| format!("{} {}", e.param, render(&e.value))).collect();
        let expect: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(actual, expect, "\nactual:\n{}\n", actual.join("\n"));
    }

    fn render(value: &IndexValue) -> String {
        let opt = |s: &Option<String>| s.clone().unwrap_or_default();
        match value {
            IndexValue::Token { system, code, text, type_system, type_code } => {
                let mut out = format!("token {}|{}", opt(system), opt(code));
                if let Some(text) = text {
                    out += &format!(" text={text:?}");
                }
                if type_system.is_some() || type_code.is_some() {
                    out += &format!(" type={}|{}", opt(type_system), opt(type_code));
                }
                out
            }
            IndexValue::Reference { target_type, target_id, url, identifier_system, identifier_value } => {
                let mut out = "reference".to_owned();
                if let Some(url) = url {
                    out += &format!(" {url}");
                }
                if target_type.is_some() || target_id.is_some() {
                    out += &format!(" -> {}/{}", opt(target_type), opt(target_id));
                }
                if identifier_system.is_some() || identifier_value.is_some() {
                    out += &format!(" identifier={}|{}", opt(identifier_system), opt(identifier_value));
                }
                out
            }
            IndexValue::Date { low, high } => format!("date {}..{}", instant(*low), instant(*high)),
            IndexValue::String { value } => format!("string {value}"),
            IndexValue::Uri { value } => format!("uri {value}"),
        }
    }

    fn instant(ms: i64) -> String {
        match ms {
            i64::MIN => "-inf".to_owned(),
            i64::MAX => "+inf".to_owned(),
            _ => OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .expect("in range")
                .format(&Rfc3339)
                .expect("formats"),
        }
    }

    const CAREPLAN_EXAMPLE: &str = include_str!("../../../../tests/fixtures/hl7/CarePlan-example.json");
    const CAREPLAN_GPVISIT: &str = include_str!("../../../../tests/fixtures/hl7/CarePlan-gpvisit.json");
    const CAREPLAN_PREG: &str = include_str!("../../../../tests/fixtures/hl7/CarePlan-preg.json");
    const CARETEAM_EXAMPLE: &str = include_str!("../../../../tests/fixtures/hl7/CareTeam-example.json");
    const GOAL_EXAMPLE: &str = include_str!("../../../../tests/fixtures/hl7/Goal-example.json");
    const GOAL_STOP_SMOKING: &str = include_str!("../../../../tests/fixtures/hl7/Goal-stop-smoking.json");
    const PLANDEFINITION_SUICIDE_RISK: &str =
        include_str!("../../../../tests/fixtures/hl7/PlanDefinition-low-suicide-risk-order-set.json");
    const PLANDEFINITION_PROTOCOL: &str =
        include_str!("../../../../tests/fixtures/hl7/PlanDefinition-protocol-example.json");
    const ACTIVITYDEFINITION_CITALOPRAM: &str =
        include_str!("../../../../tests/fixtures/hl7/ActivityDefinition-citalopramPrescription.json");
    const ACTIVITYDEFINITION_REFERRAL: &str =
        include_str!("../../../../tests/fixtures/hl7/ActivityDefinition-referralPrimaryCareMentalHealth.json");
    const TASK_EXAMPLE1: &str = include_str!("../../../../tests/fixtures/hl7/Task-example1.json");
    const TASK_EXAMPLE2: &str = include_str!("../../../../tests/fixtures/hl7/Task-example2.json");

    /// What no official example has: meta, canonicals with versions, timings with events,
    /// absolute URLs, identifier-only and `urn:uuid:` references, a Group subject.
    const CAREPLAN_EDGES: &str = r##"{
        "resourceType": "CarePlan",
        "id": "edges",
        "meta": {
            "versionId": "2",
            "lastUpdated": "2026-03-04T10:30:15.123+01:00",
            "source": "http://example.org/source#a1",
            "profile": ["http://example.org/StructureDefinition/cp|1.0"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "restricted"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}, {"code": "t2"}]
        },
        "instantiatesCanonical": ["http://example.org/fhir/PlanDefinition/kdn5|2.1", "http://example.org/protocols/obesity"],
        "basedOn": [{"reference": "CarePlan/cp0"}],
        "replaces": [{"reference": "CarePlan/cp-old", "identifier": {"system": "http://example.org/plans", "value": "p-7"}}],
        "partOf": [{"reference": "http://example.org/fhir/CarePlan/cp-parent/_history/1"}],
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "https://fhir.example.org/r4/Group/g1/_history/3"},
        "period": {"start": "2026-01"},
        "activity": [
            {
                "reference": {"reference": "ServiceRequest/sr1"},
                "detail": {
                    "status": "scheduled",
                    "scheduledTiming": {
                        "event": ["2026-03-04T10:30:00Z", "2026-03-05"],
                        "repeat": {"boundsPeriod": {"end": "2026-06-30"}, "frequency": 1, "period": 1, "periodUnit": "d"}
                    },
                    "performer": [
                        {"reference": "urn:uuid:0c5e3f3a-52b4-4a41-9f0a-000000000001"},
                        {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567890"}, "display": "Dr Who"},
                        {"display": "no reference at all"}
                    ]
                }
            },
            {
                "detail": {
                    "status": "not-started",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "229065009"}], "text": "Exercise therapy"},
                    "scheduledPeriod": {"start": "2026-04-01T09:00:00+02:00", "end": "2026-04-01T10:00:00+02:00"}
                }
            },
            {"detail": {"status": "not-started", "code": {"text": "Walk"}, "scheduledString": "daily"}}
        ]
    }"##;

    /// A Patient subject by absolute URL, a versioned member, a closed period.
    const CARETEAM_EDGES: &str = r##"{
        "resourceType": "CareTeam",
        "id": "edges",
        "meta": {
            "lastUpdated": "2026-03-04T10:30:15-05:00",
            "source": "urn:uuid:6a3c0f5e-1f0c-4c1e-8a43-000000000003",
            "profile": ["http://example.org/StructureDefinition/team-a", "http://example.org/StructureDefinition/team-b"],
            "security": [{"code": "HTEST"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1", "display": "Tag one"}, {"display": "no code"}]
        },
        "status": "active",
        "subject": {"reference": "http://example.org/fhir/Patient/p-1"},
        "period": {"start": "2026-01-01T08:00:00Z", "end": "2026-12-31"},
        "participant": [
            {"member": {"reference": "Practitioner/pr1/_history/7"}},
            {"member": {"reference": "#contained1"}},
            {"member": {"reference": "RelatedPerson/rp1", "identifier": {"value": "rp-1"}}}
        ]
    }"##;

    /// The common parameters of a PlanDefinition.
    const PLANDEFINITION_EDGES: &str = r##"{
        "resourceType": "PlanDefinition",
        "id": "edges",
        "meta": {
            "lastUpdated": "2026-03-04T10:30:15Z",
            "source": "http://example.org/source",
            "profile": ["http://example.org/StructureDefinition/plan"],
            "security": [{"code": "HTEST"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}]
        },
        "status": "draft"
    }"##;

    /// The common parameters of an ActivityDefinition.
    const ACTIVITYDEFINITION_EDGES: &str = r##"{
        "resourceType": "ActivityDefinition",
        "id": "edges",
        "meta": {
            "lastUpdated": "2026-03-04T10:30:15Z",
            "source": "http://example.org/source",
            "profile": ["http://example.org/StructureDefinition/activity"],
            "security": [{"code": "HTEST"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}]
        },
        "status": "draft"
    }"##;

    /// The common parameters of a Goal.
    const GOAL_EDGES: &str = r##"{
        "resourceType": "Goal",
        "id": "edges",
        "meta": {
            "lastUpdated": "2026-03-04T10:30:15Z",
            "source": "http://example.org/source",
            "profile": ["http://example.org/StructureDefinition/goal"],
            "security": [{"code": "HTEST"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}]
        },
        "lifecycleStatus": "active",
        "description": {"text": "Sleeps through the night"},
        "subject": {"reference": "Patient/p-1"}
    }"##;

    /// A Group as `for`, versioned and contained references, identifier types, open periods.
    const TASK_EDGES: &str = r##"{
        "resourceType": "Task",
        "id": "edges",
        "meta": {
            "lastUpdated": "2026-03-04T10:30:15.5Z",
            "source": "http://example.org/source",
            "profile": ["http://example.org/StructureDefinition/task"],
            "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}],
            "tag": [{"system": "http://example.org/tags", "code": "t1"}]
        },
        "identifier": [
            {"system": "http://example.org/tasks", "value": "t-1", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PLAC"}], "text": "Placer"}},
            {"value": "t-2"}
        ],
        "basedOn": [{"reference": "CarePlan/cp1/_history/2"}, {"reference": "CarePlan/cp1/_history/2"}],
        "partOf": [{"reference": "https://other.example.org/fhir/Task/t0"}],
        "status": "ready",
        "businessStatus": {"coding": [{"system": "http://example.org/business", "code": "waiting"}], "text": "Waiting for a slot"},
        "intent": "order",
        "priority": "urgent",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill", "display": "Fulfill the focal request"}], "text": "Fulfill"},
        "focus": {"reference": "urn:uuid:0c5e3f3a-52b4-4a41-9f0a-000000000002"},
        "for": {"reference": "Group/g1"},
        "executionPeriod": {"end": "2026-05"},
        "authoredOn": "2026-03-04",
        "lastModified": "2026-03-04T10:30:15Z",
        "owner": {"reference": "#owner"},
        "performerType": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/task-performer-type", "code": "requester"}, {"code": "scheduler", "display": "Scheduler"}]}
        ]
    }"##;

    #[test]
    fn careplan_example() {
        check(
            ResourceType::CarePlan,
            CAREPLAN_EXAMPLE,
            r#"
                _id token |example
                activity-code token http://loinc.org|3141-9 text="Weight Measured"
                activity-code token http://snomed.info/sct|27113001 text="Body weight"
                care-team reference CareTeam/example -> CareTeam/example
                category token | text="Weight management plan"
                condition reference #p1
                date date -inf..2017-06-01T23:59:59.999Z
                encounter reference Encounter/home -> Encounter/home
                goal reference Goal/example -> Goal/example
                identifier token |12345
                instantiates-uri uri http://example.org/protocol-for-obesity
                intent token |plan
                patient reference Patient/example -> Patient/example
                performer reference Patient/example -> Patient/example
                status token |active
                subject reference Patient/example -> Patient/example
            "#,
        );
    }

    #[test]
    fn careplan_gpvisit() {
        check(
            ResourceType::CarePlan,
            CAREPLAN_GPVISIT,
            r#"
                _id token |gpvisit
                activity-code token http://example.org/local|nursecon text="Nurse Consultation"
                activity-code token http://example.org/local|doccon text="Doctor Consultation"
                activity-date date 2013-01-01T10:38:00Z..2013-01-01T10:50:00.999Z
                care-team reference #careteam
                condition reference #p1
                date date 2013-01-01T10:30:00Z..+inf
                goal reference #goal
                intent token |plan
                patient reference Patient/100 -> Patient/100
                performer reference Practitioner/13 -> Practitioner/13
                performer reference Practitioner/14 -> Practitioner/14
                status token |active
                subject reference Patient/100 -> Patient/100
            "#,
        );
    }

    #[test]
    fn careplan_preg() {
        check(
            ResourceType::CarePlan,
            CAREPLAN_PREG,
            r#"
                _id token |preg
                activity-code token http://example.org/mySystem|1an text="First Antenatal encounter"
                activity-code token http://example.org/mySystem|an text="Follow-up Antenatal encounter"
                activity-code token http://example.org/mySystem|del text="Delivery"
                activity-date date 2013-02-14T00:00:00Z..2013-02-28T23:59:59.999Z
                activity-date date 2013-03-01T00:00:00Z..2013-03-14T23:59:59.999Z
                activity-date date 2013-09-01T00:00:00Z..2013-09-14T23:59:59.999Z
                care-team reference #careteam
                condition reference #p1
                date date 2013-01-01T00:00:00Z..2013-10-01T23:59:59.999Z
                goal reference #goal
                intent token |plan
                patient reference Patient/1 -> Patient/1
                performer reference #pr1
                status token |active
                subject reference Patient/1 -> Patient/1
            "#,
        );
    }

    #[test]
    fn careplan_edges() {
        check(
            ResourceType::CarePlan,
            CAREPLAN_EDGES,
            r#"
                _id token |edges
                _lastUpdated date 2026-03-04T09:30:15.123Z..2026-03-04T09:30:15.123Z
                _tag token http://example.org/tags|t1
                _tag token |t2
                _profile uri http://example.org/StructureDefinition/cp|1.0
                _security token http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R text="restricted"
                _source uri http://example.org/source#a1
                activity-code token http://snomed.info/sct|229065009 text="Exercise therapy"
                activity-code token | text="Walk"
                activity-date date 2026-03-04T10:30:00Z..2026-03-04T10:30:00.999Z
                activity-date date 2026-03-05T00:00:00Z..2026-03-05T23:59:59.999Z
                activity-date date -inf..2026-06-30T23:59:59.999Z
                activity-date date 2026-04-01T07:00:00Z..2026-04-01T08:00:00.999Z
                activity-reference reference ServiceRequest/sr1 -> ServiceRequest/sr1
                based-on reference CarePlan/cp0 -> CarePlan/cp0
                date date 2026-01-01T00:00:00Z..+inf
                instantiates-canonical reference http://example.org/fhir/PlanDefinition/kdn5 -> PlanDefinition/kdn5
                instantiates-canonical reference http://example.org/protocols/obesity
                intent token |plan
                part-of reference http://example.org/fhir/CarePlan/cp-parent/_history/1 -> CarePlan/cp-parent
                performer reference urn:uuid:0c5e3f3a-52b4-4a41-9f0a-000000000001
                performer reference identifier=http://hl7.org/fhir/sid/us-npi|1234567890
                replaces reference CarePlan/cp-old -> CarePlan/cp-old identifier=http://example.org/plans|p-7
                status token |active
                subject reference https://fhir.example.org/r4/Group/g1/_history/3 -> Group/g1
            "#,
        );
    }

    #[test]
    fn careteam_example() {
        check(
            ResourceType::CareTeam,
            CARETEAM_EXAMPLE,
            r#"
                _id token |example
                category token http://loinc.org|LA27976-2 text="Encounter-focused care team"
                date date -inf..2013-01-01T23:59:59.999Z
                encounter reference Encounter/example -> Encounter/example
                identifier token |12345
                participant reference Patient/example -> Patient/example
                participant reference #pr1
                patient reference Patient/example -> Patient/example
                status token |active
                subject reference Patient/example -> Patient/example
            "#,
        );
    }

    #[test]
    fn careteam_edges() {
        check(
            ResourceType::CareTeam,
            CARETEAM_EDGES,
            r#"
                _id token |edges
                _lastUpdated date 2026-03-04T15:30:15Z..2026-03-04T15:30:15.999Z
                _tag token http://example.org/tags|t1 text="Tag one"
                _tag token | text="no code"
                _profile uri http://example.org/StructureDefinition/team-a
                _profile uri http://example.org/StructureDefinition/team-b
                _security token |HTEST
                _source uri urn:uuid:6a3c0f5e-1f0c-4c1e-8a43-000000000003
                date date 2026-01-01T08:00:00Z..2026-12-31T23:59:59.999Z
                participant reference Practitioner/pr1/_history/7 -> Practitioner/pr1
                participant reference #contained1
                participant reference RelatedPerson/rp1 -> RelatedPerson/rp1 identifier=|rp-1
                patient reference http://example.org/fhir/Patient/p-1 -> Patient/p-1
                status token |active
                subject reference http://example.org/fhir/Patient/p-1 -> Patient/p-1
            "#,
        );
    }

    #[test]
    fn task_example1() {
        check(
            ResourceType::Task,
            TASK_EXAMPLE1,
            r#"
                _id token |example1
                authored-on date 2016-10-30T22:25:05Z..2016-10-30T22:25:05.999Z
                business-status token | text="waiting for specimen"
                code token | text="Lipid Panel"
                encounter reference Encounter/example -> Encounter/example
                execution-period date 2016-10-30T22:25:05Z..+inf
                focus reference ServiceRequest/lipid -> ServiceRequest/lipid
                group-identifier token http:/goodhealth.org/accession/identifiers|G20170201-001
                identifier token http:/goodhealth.org/identifiers|20170201-001
                intent token |order
                modified date 2016-10-30T23:45:05Z..2016-10-30T23:45:05.999Z
                owner reference Organization/1832473e-2fe0-452d-abe9-3cdb9879522f -> Organization/1832473e-2fe0-452d-abe9-3cdb9879522f
                patient reference Patient/example -> Patient/example
                performer token http://terminology.hl7.org/CodeSystem/task-performer-type|performer text="Performer"
                period date -inf..2016-11-01T23:45:05.999Z
                priority token |routine
                requester reference Practitioner/example -> Practitioner/example
                status token |in-progress
                subject reference Patient/example -> Patient/example
            "#,
        );
    }

    #[test]
    fn task_example2() {
        check(
            ResourceType::Task,
            TASK_EXAMPLE2,
            r#"
                _id token |example2
                authored-on date 2016-10-30T22:45:05Z..2016-10-30T22:45:05.999Z
                business-status token | text="waiting for patient"
                code token | text="Specimen Collection"
                encounter reference Encounter/example -> Encounter/example
                execution-period date 2016-10-30T22:45:05Z..+inf
                group-identifier token http:/goodhealth.org/accession/identifiers|G20170201-001
                identifier token http:/goodhealth.org/identifiers|20170201-002
                intent token |filler-order
                modified date 2016-10-30T23:45:05Z..2016-10-30T23:45:05.999Z
                owner reference Organization/1832473e-2fe0-452d-abe9-3cdb9879522f -> Organization/1832473e-2fe0-452d-abe9-3cdb9879522f
                part-of reference Task/example1 -> Task/example1
                patient reference Patient/example -> Patient/example
                performer token http://terminology.hl7.org/CodeSystem/task-performer-type|performer text="Performer"
                period date -inf..2016-10-31T23:45:05.999Z
                priority token |routine
                requester reference Organization/1832473e-2fe0-452d-abe9-3cdb9879522f -> Organization/1832473e-2fe0-452d-abe9-3cdb9879522f
                status token |accepted
                subject reference Patient/example -> Patient/example
            "#,
        );
    }

    #[test]
    fn task_edges() {
        check(
            ResourceType::Task,
            TASK_EDGES,
            r#"
                _id token |edges
                _lastUpdated date 2026-03-04T10:30:15.5Z..2026-03-04T10:30:15.599Z
                _tag token http://example.org/tags|t1
                _profile uri http://example.org/StructureDefinition/task
                _security token http://terminology.hl7.org/CodeSystem/v3-ActReason|HTEST
                _source uri http://example.org/source
                authored-on date 2026-03-04T00:00:00Z..2026-03-04T23:59:59.999Z
                based-on reference CarePlan/cp1/_history/2 -> CarePlan/cp1
                business-status token http://example.org/business|waiting text="Waiting for a slot"
                code token http://hl7.org/fhir/CodeSystem/task-code|fulfill text="Fulfill the focal request"
                execution-period date -inf..2026-05-31T23:59:59.999Z
                focus reference urn:uuid:0c5e3f3a-52b4-4a41-9f0a-000000000002
                identifier token http://example.org/tasks|t-1 text="Placer" type=http://terminology.hl7.org/CodeSystem/v2-0203|PLAC
                identifier token |t-2
                intent token |order
                modified date 2026-03-04T10:30:15Z..2026-03-04T10:30:15.999Z
                owner reference #owner
                part-of reference https://other.example.org/fhir/Task/t0 -> Task/t0
                performer token http://terminology.hl7.org/CodeSystem/task-performer-type|requester
                performer token |scheduler text="Scheduler"
                priority token |urgent
                status token |ready
                subject reference Group/g1 -> Group/g1
            "#,
        );
    }

    #[test]
    fn references_that_name_no_type() {
        check(
            ResourceType::Task,
            r##"{"resourceType": "Task", "id": "x", "basedOn": [
                {"reference": "Patient"}, {"reference": "Patient/"}, {"reference": "http://example.org/"},
                {"reference": "patient/1"}, {"reference": "Patient?identifier=x"}, {"reference": "urn:oid:1.2.3"},
                {"reference": "#"}, {"reference": "Patient/1/_history/2/x"}, {"reference": "Patient/a_b"},
                {"reference": "Patient/1/_history"}, {"reference": "http://example.org/fhir/Patient/1/_history/2"}]}"##,
            r#"
                _id token |x
                based-on reference Patient
                based-on reference Patient/
                based-on reference http://example.org/
                based-on reference patient/1
                based-on reference Patient?identifier=x
                based-on reference urn:oid:1.2.3
                based-on reference #
                based-on reference Patient/1/_history/2/x
                based-on reference Patient/a_b
                based-on reference Patient/1/_history
                based-on reference http://example.org/fhir/Patient/1/_history/2 -> Patient/1
            "#,
        );
    }

    #[test]
    fn choice_elements_need_a_type_suffix() {
        check(
            ResourceType::CarePlan,
            r#"{"resourceType": "CarePlan", "id": "x", "activity": [{"detail": {
                "scheduled": {"start": "2026"}, "scheduledperiod": {"start": "2026"},
                "_scheduledString": {"extension": []}, "scheduledPeriod": {"end": "2027"}}}]}"#,
            r#"
                _id token |x
                activity-date date -inf..2027-12-31T23:59:59.999Z
            "#,
        );
    }

    #[test]
    fn values_of_the_wrong_type_are_skipped() {
        check(
            ResourceType::Task,
            r#"{"resourceType": "Task", "id": "x", "status": 5, "authoredOn": true, "identifier": "t-1",
                "for": ["Patient/1"], "executionPeriod": {"start": 2026}, "code": {"coding": {"code": "c"}}}"#,
            "_id token |x",
        );
    }

    /// A Provenance with every searchable element.
    const PROVENANCE_EDGES: &str = r#"{
        "resourceType": "Provenance",
        "id": "prov-1",
        "meta": {"lastUpdated": "2026-11-24T10:00:02Z", "source": "http://ehr.example/fhir", "profile": ["http://example.org/p"],
                 "tag": [{"system": "http://example.org/tags", "code": "t"}], "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}]},
        "target": [{"reference": "Task/t1/_history/2"}, {"reference": "Patient/p1"}],
        "occurredDateTime": "2026-11-24T10:00:00Z",
        "recorded": "2026-11-24T10:00:01.123Z",
        "location": {"reference": "Location/clinic"},
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                   "role": [{"text": "coordinator"}], "who": {"reference": "Practitioner/pr1"}}],
        "entity": [{"role": "source", "what": {"reference": "DocumentReference/d1"}}],
        "signature": [{"type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1"}],
                       "when": "2026-11-24T10:00:00Z", "who": {"reference": "Practitioner/pr1"}}]
    }"#;

    /// A Subscription with every searchable element, limited to a patient by the server.
    const SUBSCRIPTION_EDGES: &str = r#"{
        "resourceType": "Subscription",
        "id": "sub-1",
        "meta": {"lastUpdated": "2026-11-24T10:00:02Z", "source": "http://ehr.example/fhir", "profile": ["http://example.org/p"],
                 "tag": [{"system": "http://example.org/tags", "code": "t"}], "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}],
                 "extension": [{"url": "http://careplan.example/fhir/StructureDefinition/subscriber-patient", "valueReference": {"reference": "Patient/p1"}},
                               {"url": "http://example.org/other", "valueReference": {"reference": "Patient/p2"}}]},
        "status": "requested", "reason": "r", "contact": [{"system": "email", "value": "a@b.example"}],
        "criteria": "http://careplan.example/fhir/SubscriptionTopic/task-change",
        "channel": {"type": "rest-hook", "endpoint": "https://ehr.example/hook", "payload": "application/fhir+json"}
    }"#;

    #[test]
    fn only_the_server_extension_names_a_subscriber_patient() {
        let value: serde_json::Value = serde_json::from_str(SUBSCRIPTION_EDGES).expect("JSON");
        let patients: Vec<super::IndexEntry> =
            extract(ResourceType::Subscription, &value).into_iter().filter(|e| e.param == "patient").collect();
        assert_eq!(patients.len(), 1, "{patients:?}");
    }

    #[test]
    fn provenance_edges() {
        let value: serde_json::Value = serde_json::from_str(PROVENANCE_EDGES).expect("JSON");
        let entries = extract(ResourceType::Provenance, &value);
        let targets: Vec<&super::IndexEntry> = entries.iter().filter(|e| e.param == "target").collect();
        assert_eq!(targets.len(), 2, "{entries:?}");
        let patients: Vec<&super::IndexEntry> = entries.iter().filter(|e| e.param == "patient").collect();
        assert_eq!(patients.len(), 1, "only the Patient target is the patient: {entries:?}");
    }

    /// Every search parameter of every type yields a value for at least one fixture above.
    #[test]
    fn every_parameter_is_exercised() {
        let fixtures = [
            (ResourceType::CarePlan, CAREPLAN_EXAMPLE),
            (ResourceType::CarePlan, CAREPLAN_GPVISIT),
            (ResourceType::CarePlan, CAREPLAN_PREG),
            (ResourceType::CarePlan, CAREPLAN_EDGES),
            (ResourceType::CareTeam, CARETEAM_EXAMPLE),
            (ResourceType::CareTeam, CARETEAM_EDGES),
            (ResourceType::Goal, GOAL_EXAMPLE),
            (ResourceType::Goal, GOAL_STOP_SMOKING),
            (ResourceType::Goal, GOAL_EDGES),
            (ResourceType::Task, TASK_EXAMPLE1),
            (ResourceType::Task, TASK_EXAMPLE2),
            (ResourceType::Task, TASK_EDGES),
            (ResourceType::Provenance, PROVENANCE_EDGES),
            (ResourceType::Subscription, SUBSCRIPTION_EDGES),
            (ResourceType::PlanDefinition, PLANDEFINITION_SUICIDE_RISK),
            (ResourceType::PlanDefinition, PLANDEFINITION_PROTOCOL),
            (ResourceType::PlanDefinition, PLANDEFINITION_EDGES),
            (ResourceType::ActivityDefinition, ACTIVITYDEFINITION_CITALOPRAM),
            (ResourceType::ActivityDefinition, ACTIVITYDEFINITION_REFERRAL),
            (ResourceType::ActivityDefinition, ACTIVITYDEFINITION_EDGES),
        ];
        for ty in ResourceType::ALL {
            let seen: Vec<&str> = fixtures
                .iter()
                .filter(|(t, _)| *t == ty)
                .flat_map(|(_, json)| extract(ty, &serde_json::from_str(json).expect("fixture is JSON")))
                .map(|entry| entry.param)
                .collect();
            let missing: Vec<&str> = super::params::for_type(ty)
                .iter()
                .filter(|p| !matches!(p.shape, super::Shape::Computed(_)))
                .map(|p| p.name)
                .filter(|name| !seen.contains(name))
                .collect();
            assert!(missing.is_empty(), "{ty}: no fixture yields {missing:?}");
        }
    }
}
