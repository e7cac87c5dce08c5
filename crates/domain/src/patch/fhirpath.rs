//! FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): a `Parameters` resource whose
//! `operation` parameters add, insert, delete, replace and move elements named by FHIRPath.
//!
//! Values are copied as JSON: a `value[x]` part as it is, a `value` part made of `part`s as an
//! anonymous element built from them. Whether a member is a list (for `add`, and inside anonymous
//! values) comes from the generated element table (`elements.rs`), since the JSON alone cannot
//! tell a repeating element that holds one item from a single one. Types are not checked here:
//! the caller validates the patched resource like any update.

use serde_json::{Map, Value};

use super::path::{self, Node, Seg, Step};
use super::{
    check_document_depth, is_protected, member_overhead, parse_current, Budget, Failure, PatchLimits, PROTECTED,
};
use crate::issue::{Issue, IssueCode};
use crate::json_text;
use crate::resource::ResourceType;

/// Apply the FHIRPath Patch `parameters` to the resource text `current` (a resource of type
/// `resource_type`) and return the new text.
///
/// Operations apply in order; the first that fails fails the whole patch. Issue expressions
/// point into the Parameters body (`Parameters.parameter[2]` is the third operation). The body
/// and the result are bounded by `limits` (see the module `patch`).
pub fn fhirpath_patch(
    current: &str,
    parameters: &[u8],
    resource_type: ResourceType,
    limits: PatchLimits,
) -> Result<String, Vec<Issue>> {
    let mut budget = Budget::new(limits, current);
    let operations = parse_parameters(parameters, resource_type.as_str(), &budget)?;
    let mut doc = parse_current(current)?;
    for (i, op) in operations.iter().enumerate() {
        apply(&mut doc, resource_type.as_str(), op, &mut budget).map_err(|(code, message)| {
            let diagnostics = format!("operation {i} ({} {}): {message}", op.kind.code(), op.path);
            vec![Issue::error(code, format!("Parameters.parameter[{i}]"), diagnostics)]
        })?;
    }
    Ok(json_text::from_value_preserving(&doc))
}

/// The operation types of the FHIRPath Patch table: add | insert | delete | replace | move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    const ALL: [Kind; 5] = [Kind::Add, Kind::Insert, Kind::Delete, Kind::Replace, Kind::Move];

    fn code(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Insert => "insert",
            Kind::Delete => "delete",
            Kind::Replace => "replace",
            Kind::Move => "move",
        }
    }

    /// The parts the operation needs besides `type` and `path` (the table of the spec page).
    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Add => &["name", "value"],
            Kind::Insert => &["value", "index"],
            Kind::Delete => &[],
            Kind::Replace => &["value"],
            Kind::Move => &["source", "destination"],
        }
    }
}

/// A value an operation brings.
#[derive(Debug, Clone)]
enum PartValue {
    /// A `value[x]` (its type, as in `valueCodeableConcept`) or a `resource`.
    Typed { ty: Option<String>, value: Value },
    /// A `value` part made of named parts: an anonymous element (e.g. `CareTeam.participant`).
    Parts(Vec<(String, PartValue)>),
}

#[derive(Debug)]
struct Operation {
    kind: Kind,
    path: String,
    steps: Vec<Step>,
    name: Option<String>,
    value: Option<PartValue>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

fn failure(message: impl Into<String>) -> Failure {
    (IssueCode::Processing, message.into())
}

/// The operations of the body, or every reason it is not a FHIRPath Patch.
fn parse_parameters(body: &[u8], resource_type: &str, budget: &Budget) -> Result<Vec<Operation>, Vec<Issue>> {
    let invalid = |message: &str| vec![Issue::general(IssueCode::Invalid, message)];
    let text = std::str::from_utf8(body).map_err(|_| invalid("the Parameters body is not UTF-8"))?;
    check_document_depth(body, "the Parameters body")?;
    let parameters = json_text::to_value_preserving(text)
        .map_err(|err| invalid(&format!("the Parameters body is not valid JSON: {err}")))?;
    if parameters.get("resourceType").and_then(json_text::string_text) != Some("Parameters") {
        return Err(invalid("a FHIRPath Patch body must be a Parameters resource"));
    }
    let list = match parameters.get("parameter") {
        None => &Vec::new(),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("Parameters.parameter must be a list")),
    };
    budget.check_count(list.len())?;
    let mut operations = Vec::with_capacity(list.len());
    let mut issues = Vec::new();
    for (i, parameter) in list.iter().enumerate() {
        match parse_operation(parameter, resource_type) {
            Ok(op) => operations.push(op),
            Err((at, message)) => issues.push(Issue::error(
                IssueCode::Invalid,
                format!("Parameters.parameter[{i}]{at}"),
                format!("operation {i}: {message}"),
            )),
        }
    }
    if issues.is_empty() {
        Ok(operations)
    } else {
        Err(issues)
    }
}

/// A parse error: where under the parameter (`.part[1]`, or empty) and what.
type ParseError = (String, String);

fn parse_operation(parameter: &Value, resource_type: &str) -> Result<Operation, ParseError> {
    let here = |message: String| (String::new(), message);
    if parameter.get("name").and_then(json_text::string_text) != Some("operation") {
        return Err(here("a FHIRPath Patch parameter must be named 'operation'".into()));
    }
    let Some(Value::Array(parts)) = parameter.get("part") else {
        return Err(here("the operation has no parts".into()));
    };
    let mut found: Vec<(&str, usize, &Map<String, Value>)> = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let at = |message: String| (format!(".part[{j}]"), message);
        let Some(object) = part.as_object() else { return Err(at("a part must be an object".into())) };
        let Some(name) = object.get("name").and_then(json_text::string_text) else {
            return Err(at("a part needs a name".into()));
        };
        if !["type", "path", "name", "value", "index", "source", "destination"].contains(&name) {
            return Err(at(format!(
                "unknown part '{name}' (expected type, path, name, value, index, source, destination)"
            )));
        }
        if found.iter().any(|(n, _, _)| *n == name) {
            return Err(at(format!("the part '{name}' is given more than once")));
        }
        found.push((name, j, object));
    }
    let part = |name: &str| found.iter().find(|(n, _, _)| *n == name).map(|(_, j, object)| (*j, *object));
    let at = |j: usize, message: String| (format!(".part[{j}]"), message);

    let (j, object) = part("type").ok_or_else(|| here("the operation needs the part 'type'".into()))?;
    let code = object.get("valueCode").and_then(json_text::string_text);
    let kind = Kind::ALL.into_iter().find(|k| Some(k.code()) == code).ok_or_else(|| {
        at(j, format!("the type must be a valueCode, one of add, insert, delete, replace, move (got {})", shown(code)))
    })?;
    let (j, object) =
        part("path").ok_or_else(|| here(format!("the {} operation needs the part 'path'", kind.code())))?;
    let path_text = string_value(object).ok_or_else(|| at(j, "the path must be a valueString".into()))?;
    let steps = path::parse(path_text, resource_type).map_err(|err| at(j, format!("path '{path_text}': {err}")))?;
    for required in kind.required() {
        if part(required).is_none() {
            return Err(here(format!("the {} operation needs the part '{required}'", kind.code())));
        }
    }
    let name = match part("name") {
        Some((j, object)) => Some(string_value(object).ok_or_else(|| at(j, "the name must be a valueString".into()))?),
        None => None,
    };
    let value = match part("value") {
        Some((j, object)) => Some(part_value(object).map_err(|message| at(j, message))?),
        None => None,
    };
    let integer = |name: &str| match part(name) {
        Some((j, object)) => object
            .get("valueInteger")
            .and_then(json_text::number_literal)
            .and_then(|literal| literal.parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| at(j, format!("the {name} must be a valueInteger of 0 or more"))),
        None => Ok(None),
    };
    Ok(Operation {
        kind,
        path: path_text.to_string(),
        steps,
        name: name.map(str::to_string),
        value,
        index: integer("index")?,
        source: integer("source")?,
        destination: integer("destination")?,
    })
}

fn shown(code: Option<&str>) -> String {
    code.map_or_else(|| "none".to_string(), |c| format!("'{c}'"))
}

fn string_value(part: &Map<String, Value>) -> Option<&str> {
    part.get("valueString").and_then(json_text::string_text)
}

/// A `value` part: exactly one of a `value[x]`, a `resource`, or nested `part`s.
fn part_value(part: &Map<String, Value>) -> Result<PartValue, String> {
    if part.keys().any(|k| path::is_choice_key(k, "_value")) {
        return Err("extensions on primitive values (_value[x]) are not supported in patch values".into());
    }
    let mut typed = part.iter().filter(|(k, _)| path::is_choice_key(k, "value"));
    let first = typed.next();
    let given = usize::from(first.is_some()) + typed.count();
    match (first, part.get("resource"), part.get("part")) {
        (Some((key, value)), None, None) if given == 1 => {
            Ok(PartValue::Typed { ty: Some(key["value".len()..].to_string()), value: value.clone() })
        }
        (None, Some(resource), None) => Ok(PartValue::Typed { ty: None, value: resource.clone() }),
        (None, None, Some(Value::Array(parts))) if !parts.is_empty() => parts
            .iter()
            .enumerate()
            .map(|(k, sub)| named_part_value(sub).map_err(|e| format!("part[{k}]: {e}")))
            .collect::<Result<_, _>>()
            .map(PartValue::Parts),
        _ => Err("a value part needs exactly one of a value[x], a resource, or a non-empty list of parts".into()),
    }
}

fn named_part_value(part: &Value) -> Result<(String, PartValue), String> {
    let object = part.as_object().ok_or("a part must be an object")?;
    let name = object.get("name").and_then(json_text::string_text).ok_or("a part needs a name")?;
    Ok((name.to_string(), part_value(object)?))
}

/// The JSON of a value placed as element `key` of `ctx` (see `path::child_ctx`).
fn materialize(value: &PartValue, ctx: &str) -> Value {
    let parts = match value {
        PartValue::Typed { value, .. } => return value.clone(),
        PartValue::Parts(parts) => parts,
    };
    // Parts of the same name are the items of one member, at the place of the first: group them
    // in one pass (a filter per name would be quadratic in the number of names).
    let mut groups: Vec<(String, Vec<&PartValue>)> = Vec::new();
    let mut by_name: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (name, item) in parts {
        match by_name.get(name.as_str()) {
            Some(&at) => groups[at].1.push(item),
            None => {
                by_name.insert(name, groups.len());
                groups.push((member_key(ctx, name, item), vec![item]));
            }
        }
    }
    let mut object = Map::new();
    for (key, group) in groups {
        if object.contains_key(&key) {
            continue; // two names for one member (`value` and `valueString`): the first wins
        }
        let child = path::child_ctx(ctx, &key);
        let items: Vec<Value> = group.into_iter().map(|item| materialize(item, &child)).collect();
        let value = match <[Value; 1]>::try_from(items) {
            Ok([single]) if !path::is_repeating(ctx, &key) => single,
            Ok([single]) => Value::Array(vec![single]),
            Err(items) => Value::Array(items),
        };
        object.insert(key, value);
    }
    Value::Object(object)
}

/// The JSON member name for element `name` of `ctx` holding `value`: a choice element named by
/// its base name takes the value's type (`value` + `valueQuantity` → `valueQuantity`).
fn member_key(ctx: &str, name: &str, value: &PartValue) -> String {
    match value {
        PartValue::Typed { ty: Some(ty), .. } if path::is_choice(ctx, name) => format!("{name}{ty}"),
        _ => name.to_string(),
    }
}

fn apply(doc: &mut Value, resource_type: &str, op: &Operation, budget: &mut Budget) -> Result<(), Failure> {
    let select = |doc: &Value| path::evaluate(doc, path::root(resource_type), &op.steps);
    match op.kind {
        Kind::Add => add(doc, single(select(doc))?, op, budget),
        Kind::Insert => insert(doc, resource_type, op, budget),
        Kind::Delete => delete(doc, select(doc), budget),
        Kind::Replace => replace(doc, single(select(doc))?, op, budget),
        Kind::Move => move_item(doc, resource_type, op),
    }
}

/// Every operation but delete needs its path to match exactly one element (spec: base rules).
fn single(found: Vec<Node>) -> Result<Node, Failure> {
    match <[Node; 1]>::try_from(found) {
        Ok([node]) => Ok(node),
        Err(found) if found.is_empty() => Err(failure("the path matched no element")),
        Err(found) => Err(failure(format!("the path matched {} elements; it must match exactly one", found.len()))),
    }
}

fn refuse_protected(loc: &[Seg]) -> Result<(), Failure> {
    let keys = loc.iter().filter_map(|seg| match seg {
        Seg::Key(key) => Some(key.as_str()),
        Seg::Index(_) => None,
    });
    if is_protected(keys) {
        Err((IssueCode::Invalid, PROTECTED.to_string()))
    } else {
        Ok(())
    }
}

fn object_at<'a>(doc: &'a mut Value, node: &Node) -> Result<&'a mut Map<String, Value>, Failure> {
    match path::get_mut(doc, &node.loc) {
        Some(Value::Object(members)) => Ok(members),
        _ => Err(failure("the path selects a primitive value, which has no elements")),
    }
}

/// add: append `name: value` to the element the path selects. A repeating element is a list
/// (created if absent); a single element must not exist yet (spec: "Add can be used for
/// non-repeating elements as long as they do not already exist").
fn add(doc: &mut Value, node: Node, op: &Operation, budget: &mut Budget) -> Result<(), Failure> {
    let (Some(name), Some(value)) = (&op.name, &op.value) else { return Err(failure("missing name or value")) };
    let key = member_key(&node.ctx, name, value);
    let mut loc = node.loc.clone();
    loc.push(Seg::Key(key.clone()));
    refuse_protected(&loc)?;
    let repeating = path::is_repeating(&node.ctx, &key);
    let new = materialize(value, &path::child_ctx(&node.ctx, &key));
    // The node is at level `loc.len() + 1`; a list item sits one level further down.
    budget.admit(&new, node.loc.len() + 1 + usize::from(repeating), member_overhead(&key) + 2, 0)?;
    let members = object_at(doc, &node)?;
    match members.get_mut(&key) {
        Some(Value::Array(items)) => items.push(new),
        Some(_) => return Err(failure(format!("{} already has a value; use replace", path::display(&loc)))),
        None if repeating => drop(members.insert(key, Value::Array(vec![new]))),
        None => drop(members.insert(key, new)),
    }
    Ok(())
}

/// The list a path of insert or move names: the one element its prefix selects, and the name.
fn collection(doc: &Value, resource_type: &str, op: &Operation) -> Result<(Node, String), Failure> {
    let Some((Step::Member(name), prefix)) = op.steps.split_last() else {
        return Err((IssueCode::Invalid, "the path must name a list: end with an element name".into()));
    };
    let parent = single(path::evaluate(doc, path::root(resource_type), prefix))?;
    let mut loc = parent.loc.clone();
    loc.push(Seg::Key(name.clone()));
    refuse_protected(&loc)?;
    Ok((parent, name.clone()))
}

/// insert: put the value at `index` of the list (0 based; at most the list's length).
fn insert(doc: &mut Value, resource_type: &str, op: &Operation, budget: &mut Budget) -> Result<(), Failure> {
    let (Some(value), Some(index)) = (&op.value, op.index) else { return Err(failure("missing value or index")) };
    let (parent, name) = collection(doc, resource_type, op)?;
    let repeating = path::is_repeating(&parent.ctx, &name);
    let new = materialize(value, &path::child_ctx(&parent.ctx, &name));
    budget.admit(&new, parent.loc.len() + 2, member_overhead(&name) + 2, 0)?;
    let members = object_at(doc, &parent)?;
    match members.get_mut(&name) {
        Some(Value::Array(items)) if index <= items.len() => items.insert(index, new),
        Some(Value::Array(items)) => return Err(out_of_range("index", index, items.len())),
        None if repeating && index == 0 => drop(members.insert(name, Value::Array(vec![new]))),
        None if repeating => return Err(out_of_range("index", index, 0)),
        _ => return Err(failure(format!("{name} is not a list"))),
    }
    Ok(())
}

fn out_of_range(what: &str, index: usize, len: usize) -> Failure {
    failure(format!("the {what} {index} is out of range for a list of {len}"))
}

/// delete: remove the one element the path selects; nothing matched is a success (spec: "Path
/// of the element to delete (if found)"). Elements left empty go too: FHIR JSON has no empty
/// objects or arrays (http://hl7.org/fhir/R4/json.html).
fn delete(doc: &mut Value, found: Vec<Node>, budget: &mut Budget) -> Result<(), Failure> {
    let node = match <[Node; 1]>::try_from(found) {
        Ok([node]) => node,
        Err(found) if found.is_empty() => return Ok(()),
        Err(found) => return Err(failure(format!("the path matched {} elements; delete removes one", found.len()))),
    };
    refuse_protected(&node.loc)?;
    if let Some(old) = path::get(doc, &node.loc) {
        budget.release(json_text::preserving_len(old, usize::MAX));
    }
    let mut loc = node.loc;
    remove_at(doc, &loc);
    while loc.len() > 1 {
        loc.pop();
        match path::get(doc, &loc) {
            Some(Value::Object(m)) if m.is_empty() => remove_at(doc, &loc),
            Some(Value::Array(items)) if items.is_empty() => remove_at(doc, &loc),
            _ => break,
        }
    }
    Ok(())
}

/// Remove the element at `loc`, keeping the order of what remains.
fn remove_at(doc: &mut Value, loc: &[Seg]) {
    let Some((last, parent)) = loc.split_last() else { return };
    match (path::get_mut(doc, parent), last) {
        (Some(Value::Object(members)), Seg::Key(key)) => drop(members.shift_remove(key)),
        (Some(Value::Array(items)), Seg::Index(i)) if *i < items.len() => drop(items.remove(*i)),
        _ => {}
    }
}

/// replace: the one element the path selects takes the new value. A choice element named by its
/// base name takes the new value's type: `value` from `valueString` to `valueInteger`.
fn replace(doc: &mut Value, node: Node, op: &Operation, budget: &mut Budget) -> Result<(), Failure> {
    let Some(value) = &op.value else { return Err(failure("missing value")) };
    refuse_protected(&node.loc)?;
    let new = materialize(value, &node.ctx);
    let old = path::get(doc, &node.loc).map_or(0, |old| json_text::preserving_len(old, usize::MAX));
    // A choice element may change its name (`valueString` to `valueCodeableConcept`).
    let renamed = match (&node.choice, value) {
        (Some(base), PartValue::Typed { ty: Some(ty), .. }) => base.len() + ty.len(),
        _ => 0,
    };
    budget.admit(&new, node.loc.len(), renamed, old)?;
    if let (Some(base), Some((Seg::Key(old), parent)), PartValue::Typed { ty: Some(ty), .. }) =
        (&node.choice, node.loc.split_last(), value)
    {
        if let Some(Value::Object(members)) = path::get_mut(doc, parent) {
            let position = members.keys().position(|k| k == old).unwrap_or(members.len());
            members.shift_remove(old);
            members.shift_insert(position, format!("{base}{ty}"), new);
            return Ok(());
        }
    }
    let slot = path::get_mut(doc, &node.loc).ok_or_else(|| failure("the path matched no element"))?;
    *slot = new;
    Ok(())
}

/// move: within the list the path names, take the item at `source` and put it at `destination`
/// (an index into the list as it is after the removal).
fn move_item(doc: &mut Value, resource_type: &str, op: &Operation) -> Result<(), Failure> {
    let (Some(source), Some(destination)) = (op.source, op.destination) else {
        return Err(failure("missing source or destination"));
    };
    let (parent, name) = collection(doc, resource_type, op)?;
    let members = object_at(doc, &parent)?;
    let Some(Value::Array(items)) = members.get_mut(&name) else {
        return Err(failure(format!("{name} is not a list in the resource")));
    };
    if source >= items.len() {
        return Err(out_of_range("source", source, items.len()));
    }
    if destination >= items.len() {
        return Err(out_of_range("destination", destination, items.len()));
    }
    let item = items.remove(source);
    items.insert(destination, item);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::elements;
    use crate::patch::TEST_LIMITS as LIMITS;

    /// Patch `resource` with the `operation` parameters `ops` and compare the outcome: the new
    /// text, or one line per issue.
    fn check(resource: &str, ops: &[String], expect: &str) {
        let ty = resource.split('"').nth(3).and_then(ResourceType::parse).expect("test resource has a type first");
        let body = format!(r#"{{"resourceType":"Parameters","parameter":[{}]}}"#, ops.join(","));
        check_body(resource, ty, &body, expect);
    }

    fn check_body(resource: &str, ty: ResourceType, body: &str, expect: &str) {
        let got = match fhirpath_patch(resource, body.as_bytes(), ty, LIMITS) {
            Ok(text) => text,
            Err(issues) => issues
                .iter()
                .map(|i| format!("{:?} {}: {}", i.code, i.expression.as_deref().unwrap_or("-"), i.diagnostics))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        assert_eq!(got, expect, "{body}");
    }

    /// One `operation` parameter: its type, path and further parts as `(name, "valueX": json)`.
    fn op(kind: &str, path: &str, parts: &[(&str, &str)]) -> String {
        let mut all = vec![
            format!(r#"{{"name":"type","valueCode":"{kind}"}}"#),
            format!(r#"{{"name":"path","valueString":"{path}"}}"#),
        ];
        all.extend(parts.iter().map(|(name, body)| format!(r#"{{"name":"{name}",{body}}}"#)));
        format!(r#"{{"name":"operation","part":[{}]}}"#, all.join(","))
    }

    /// `text` with `from` replaced by `to` (which must occur), for expected results.
    fn with(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from}");
        text.replacen(from, to, 1)
    }

    const TASK: &str = r#"{"resourceType":"Task","id":"t1","meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05Z"},"identifier":[{"system":"http://x","value":"1"},{"system":"http://y","value":"2"}],"status":"requested","intent":"order","input":[{"type":{"text":"dose"},"valueDecimal":1.50}],"note":[{"text":"one"},{"text":"two"}],"restriction":{"period":{"start":"2026-01-01"}}}"#;

    const CAREPLAN: &str = r#"{"resourceType":"CarePlan","id":"p1","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"detail":{"kind":"Task","status":"scheduled","dailyAmount":{"value":2.50,"unit":"mg"}}},{"detail":{"status":"completed"}},{"reference":{"reference":"Task/9"}}]}"#;

    const CARETEAM: &str = r#"{"resourceType":"CareTeam","id":"c1","status":"active","participant":[{"member":{"reference":"Practitioner/1"}}]}"#;

    #[test]
    fn add_appends_to_lists_and_sets_absent_elements() {
        // The spec's first example (add Patient.birthDate), on a Task.
        check(
            TASK,
            &[op(
                "add",
                "Task",
                &[("name", r#""valueString":"authoredOn""#), ("value", r#""valueDateTime":"2026-02-03""#)],
            )],
            &with(TASK, r#""2026-01-01"}}}"#, r#""2026-01-01"}},"authoredOn":"2026-02-03"}"#),
        );
        check(
            TASK,
            &[op(
                "add",
                "Task",
                &[("name", r#""valueString":"note""#), ("value", r#""valueAnnotation":{"text":"three"}"#)],
            )],
            &with(TASK, r#"{"text":"two"}"#, r#"{"text":"two"},{"text":"three"}"#),
        );
        // Absent and repeating: created as a list.
        check(
            CARETEAM,
            &[op(
                "add",
                "CareTeam",
                &[("name", r#""valueString":"note""#), ("value", r#""valueAnnotation":{"text":"x"}"#)],
            )],
            &with(CARETEAM, "}]}", r#"}],"note":[{"text":"x"}]}"#),
        );
        // Into an element selected with where(), and into a nested datatype's list.
        check(
            TASK,
            &[op(
                "add",
                "Task.identifier.where(system='http://y')",
                &[("name", r#""valueString":"type""#), ("value", r#""valueCodeableConcept":{"text":"MRN"}"#)],
            )],
            &with(TASK, r#""value":"2"}"#, r#""value":"2","type":{"text":"MRN"}}"#),
        );
        check(
            CAREPLAN,
            &[op(
                "add",
                "CarePlan.activity[0].detail",
                &[("name", r#""valueString":"reasonCode""#), ("value", r#""valueCodeableConcept":{"text":"pain"}"#)],
            )],
            &with(CAREPLAN, r#""unit":"mg"}}"#, r#""unit":"mg"},"reasonCode":[{"text":"pain"}]}"#),
        );
        check(
            TASK,
            &[op("add", "Task", &[("name", r#""valueString":"status""#), ("value", r#""valueCode":"accepted""#)])],
            "Processing Parameters.parameter[0]: operation 0 (add Task): status already has a value; use replace",
        );
        check(
            TASK,
            &[op("add", "Task.note", &[("name", r#""valueString":"text""#), ("value", r#""valueString":"x""#)])],
            "Processing Parameters.parameter[0]: operation 0 (add Task.note): the path matched 2 elements; it must match exactly one",
        );
        check(
            TASK,
            &[op("add", "Task.owner", &[("name", r#""valueString":"display""#), ("value", r#""valueString":"x""#)])],
            "Processing Parameters.parameter[0]: operation 0 (add Task.owner): the path matched no element",
        );
        check(
            TASK,
            &[op("add", "Task.status", &[("name", r#""valueString":"x""#), ("value", r#""valueString":"x""#)])],
            "Processing Parameters.parameter[0]: operation 0 (add Task.status): the path selects a primitive value, which has no elements",
        );
    }

    #[test]
    fn anonymous_values_are_built_from_parts() {
        // The spec's second example (add Patient.contact from parts), on a CareTeam.
        let participant = r#""part":[
            {"name":"role","valueCodeableConcept":{"text":"nurse"}},
            {"name":"member","valueReference":{"reference":"Practitioner/2"}},
            {"name":"period","part":[{"name":"start","valueDateTime":"2026-01-01"},{"name":"end","valueDateTime":"2026-12-31"}]}]"#;
        check(
            CARETEAM,
            &[op("add", "CareTeam", &[("name", r#""valueString":"participant""#), ("value", participant)])],
            &with(
                CARETEAM,
                r#""Practitioner/1"}}"#,
                r#""Practitioner/1"}},{"role":[{"text":"nurse"}],"member":{"reference":"Practitioner/2"},"period":{"start":"2026-01-01","end":"2026-12-31"}}"#,
            ),
        );
        // A choice element named by its base name takes the type of its value; repeated parts
        // of one name make a list.
        let input =
            r#""part":[{"name":"type","valueCodeableConcept":{"text":"rate"}},{"name":"value","valueDecimal":0.250}]"#;
        check(
            TASK,
            &[op("insert", "Task.input", &[("value", input), ("index", r#""valueInteger":0"#)])],
            &with(TASK, r#""input":["#, r#""input":[{"type":{"text":"rate"},"valueDecimal":0.250},"#),
        );
        let activity = r#""part":[{"name":"detail","part":[
            {"name":"status","valueCode":"not-started"},
            {"name":"scheduled","valuePeriod":{"start":"2026-03-01"}},
            {"name":"performer","valueReference":{"reference":"Practitioner/1"}},
            {"name":"performer","valueReference":{"reference":"Practitioner/2"}}]}]"#;
        check(
            CAREPLAN,
            &[op("add", "CarePlan", &[("name", r#""valueString":"activity""#), ("value", activity)])],
            &with(
                CAREPLAN,
                r#""Task/9"}}]"#,
                r#""Task/9"}},{"detail":{"status":"not-started","scheduledPeriod":{"start":"2026-03-01"},"performer":[{"reference":"Practitioner/1"},{"reference":"Practitioner/2"}]}}]"#,
            ),
        );
    }

    #[test]
    fn insert_places_at_an_index() {
        let note = ("value", r#""valueAnnotation":{"text":"new"}"#);
        check(
            TASK,
            &[op("insert", "Task.note", &[note, ("index", r#""valueInteger":1"#)])],
            &with(TASK, r#"{"text":"one"},"#, r#"{"text":"one"},{"text":"new"},"#),
        );
        check(
            TASK,
            &[op("insert", "Task.note", &[note, ("index", r#""valueInteger":2"#)])],
            &with(TASK, r#"{"text":"two"}"#, r#"{"text":"two"},{"text":"new"}"#),
        );
        check(
            CARETEAM,
            &[op(
                "insert",
                "CareTeam.participant[0].role",
                &[("value", r#""valueCodeableConcept":{"text":"lead"}"#), ("index", r#""valueInteger":0"#)],
            )],
            &with(CARETEAM, r#""Practitioner/1"}}"#, r#""Practitioner/1"},"role":[{"text":"lead"}]}"#),
        );
        check(
            TASK,
            &[op("insert", "Task.note", &[note, ("index", r#""valueInteger":3"#)])],
            "Processing Parameters.parameter[0]: operation 0 (insert Task.note): the index 3 is out of range for a list of 2",
        );
        check(
            TASK,
            &[op("insert", "Task.status", &[("value", r#""valueCode":"x""#), ("index", r#""valueInteger":0"#)])],
            "Processing Parameters.parameter[0]: operation 0 (insert Task.status): status is not a list",
        );
        check(
            TASK,
            &[op("insert", "Task.note[0]", &[note, ("index", r#""valueInteger":0"#)])],
            "Invalid Parameters.parameter[0]: operation 0 (insert Task.note[0]): the path must name a list: end with an element name",
        );
    }

    #[test]
    fn delete_removes_one_element_if_found() {
        check(TASK, &[op("delete", "Task.note[0]", &[])], &with(TASK, r#"{"text":"one"},"#, ""));
        check(TASK, &[op("delete", "Task.note.where(text='zzz')", &[])], TASK);
        check(
            TASK,
            &[op("delete", "Task.identifier.where(system='http://x')", &[])],
            &with(TASK, r#"{"system":"http://x","value":"1"},"#, ""),
        );
        // The last item of a list takes the list with it; an element left empty goes too.
        check(
            CARETEAM,
            &[op("delete", "CareTeam.participant", &[])],
            &with(CARETEAM, r#","participant":[{"member":{"reference":"Practitioner/1"}}]"#, ""),
        );
        check(
            TASK,
            &[op("delete", "Task.restriction.period.start", &[])],
            &with(TASK, r#","restriction":{"period":{"start":"2026-01-01"}}"#, ""),
        );
        check(
            TASK,
            &[op("delete", "Task.note", &[])],
            "Processing Parameters.parameter[0]: operation 0 (delete Task.note): the path matched 2 elements; delete removes one",
        );
    }

    #[test]
    fn replace_swaps_the_selected_element() {
        check(
            TASK,
            &[op("replace", "Task.status", &[("value", r#""valueCode":"accepted""#)])],
            &with(TASK, "requested", "accepted"),
        );
        check(
            TASK,
            &[op(
                "replace",
                "Task.note.last()",
                &[("value", r#""valueAnnotation":{"text":"2","time":"2026-01-01T00:00:00Z"}"#)],
            )],
            &with(TASK, r#"{"text":"two"}"#, r#"{"text":"2","time":"2026-01-01T00:00:00Z"}"#),
        );
        // A choice element keeps its place and takes the new value's type.
        check(
            TASK,
            &[op(
                "replace",
                "Task.input.where(type.text='dose').value",
                &[("value", r#""valueQuantity":{"value":2.0,"unit":"mg"}"#)],
            )],
            &with(TASK, r#""valueDecimal":1.50"#, r#""valueQuantity":{"value":2.0,"unit":"mg"}"#),
        );
        check(
            TASK,
            &[op("replace", "Task.input[0].valueDecimal", &[("value", r#""valueDecimal":1.500"#)])],
            &with(TASK, "1.50", "1.500"),
        );
        check(
            TASK,
            &[op("replace", "Task.owner", &[("value", r#""valueReference":{"reference":"Practitioner/1"}"#)])],
            "Processing Parameters.parameter[0]: operation 0 (replace Task.owner): the path matched no element",
        );
    }

    #[test]
    fn move_reorders_a_list() {
        check(
            CAREPLAN,
            &[op(
                "move",
                "CarePlan.activity",
                &[("source", r#""valueInteger":0"#), ("destination", r#""valueInteger":2"#)],
            )],
            r#"{"resourceType":"CarePlan","id":"p1","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"detail":{"status":"completed"}},{"reference":{"reference":"Task/9"}},{"detail":{"kind":"Task","status":"scheduled","dailyAmount":{"value":2.50,"unit":"mg"}}}]}"#,
        );
        check(
            TASK,
            &[op("move", "Task.note", &[("source", r#""valueInteger":1"#), ("destination", r#""valueInteger":0"#)])],
            &with(TASK, r#"{"text":"one"},{"text":"two"}"#, r#"{"text":"two"},{"text":"one"}"#),
        );
        check(
            TASK,
            &[op("move", "Task.note", &[("source", r#""valueInteger":2"#), ("destination", r#""valueInteger":0"#)])],
            "Processing Parameters.parameter[0]: operation 0 (move Task.note): the source 2 is out of range for a list of 2",
        );
        check(
            TASK,
            &[op("move", "Task.note", &[("source", r#""valueInteger":0"#), ("destination", r#""valueInteger":5"#)])],
            "Processing Parameters.parameter[0]: operation 0 (move Task.note): the destination 5 is out of range for a list of 2",
        );
        check(
            TASK,
            &[op("move", "Task.basedOn", &[("source", r#""valueInteger":0"#), ("destination", r#""valueInteger":0"#)])],
            "Processing Parameters.parameter[0]: operation 0 (move Task.basedOn): basedOn is not a list in the resource",
        );
    }

    #[test]
    fn operations_apply_in_order_and_the_first_failure_fails_all() {
        let ops = [
            op(
                "replace",
                "CarePlan.activity.where(detail.status='scheduled').detail.status",
                &[("value", r#""valueCode":"in-progress""#)],
            ),
            op("delete", "CarePlan.activity.where(detail.status='completed')", &[]),
        ];
        check(
            CAREPLAN,
            &ops,
            r#"{"resourceType":"CarePlan","id":"p1","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"detail":{"kind":"Task","status":"in-progress","dailyAmount":{"value":2.50,"unit":"mg"}}},{"reference":{"reference":"Task/9"}}]}"#,
        );
        let ops = [
            op("delete", "Task.note[0]", &[]),
            op("replace", "Task.note[1]", &[("value", r#""valueAnnotation":{"text":"x"}"#)]),
        ];
        check(
            TASK,
            &ops,
            "Processing Parameters.parameter[1]: operation 1 (replace Task.note[1]): the path matched no element",
        );
        check(TASK, &[], TASK);
    }

    #[test]
    fn identity_and_version_are_refused() {
        let refused = "id, resourceType, meta.versionId and meta.lastUpdated cannot be changed by a patch";
        for (kind, path, parts) in [
            ("replace", "Task.id", vec![("value", r#""valueId":"t2""#)]),
            ("delete", "Task.id", vec![]),
            ("delete", "Task", vec![]),
            ("replace", "Task.meta.versionId", vec![("value", r#""valueId":"9""#)]),
            ("delete", "Task.meta.lastUpdated", vec![]),
            (
                "add",
                "Task",
                vec![("name", r#""valueString":"resourceType""#), ("value", r#""valueString":"CarePlan""#)],
            ),
        ] {
            check(
                TASK,
                &[op(kind, path, &parts)],
                &format!("Invalid Parameters.parameter[0]: operation 0 ({kind} {path}): {refused}"),
            );
        }
        check(
            TASK,
            &[op("delete", "Task.meta", &[])],
            &with(TASK, r#""meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05Z"},"#, ""),
        );
    }

    #[test]
    fn malformed_parameters_are_invalid() {
        let task = ResourceType::Task;
        check_body(
            TASK,
            task,
            "{",
            "Invalid -: the Parameters body is not valid JSON: EOF while parsing an object at line 1 column 1",
        );
        check_body(
            TASK,
            task,
            r#"{"resourceType":"Bundle"}"#,
            "Invalid -: a FHIRPath Patch body must be a Parameters resource",
        );
        check_body(
            TASK,
            task,
            r#"{"resourceType":"Parameters","parameter":{}}"#,
            "Invalid -: Parameters.parameter must be a list",
        );
        check_body(TASK, task, r#"{"resourceType":"Parameters"}"#, TASK);
        let value = ("value", r#""valueString":"x""#);
        let cases: [(String, &str); 16] = [
            (r#"{"name":"op","part":[]}"#.into(), ": operation 0: a FHIRPath Patch parameter must be named 'operation'"),
            (r#"{"name":"operation"}"#.into(), ": operation 0: the operation has no parts"),
            (r#"{"name":"operation","part":[{"name":"path","valueString":"Task"}]}"#.into(), ": operation 0: the operation needs the part 'type'"),
            (r#"{"name":"operation","part":[{"name":"type","valueCode":"add"}]}"#.into(), ": operation 0: the add operation needs the part 'path'"),
            (op("upsert", "Task", &[]), ".part[0]: operation 0: the type must be a valueCode, one of add, insert, delete, replace, move (got 'upsert')"),
            (op("add", "Task", &[value]), ": operation 0: the add operation needs the part 'name'"),
            (op("insert", "Task.note", &[value]), ": operation 0: the insert operation needs the part 'index'"),
            (op("move", "Task.note", &[("source", r#""valueInteger":0"#)]), ": operation 0: the move operation needs the part 'destination'"),
            (op("insert", "Task.note", &[value, ("index", r#""valueInteger":-1"#)]), ".part[3]: operation 0: the index must be a valueInteger of 0 or more"),
            (op("insert", "Task.note", &[value, ("index", r#""valueString":"1""#)]), ".part[3]: operation 0: the index must be a valueInteger of 0 or more"),
            (op("replace", "Task.status", &[value, value]), ".part[3]: operation 0: the part 'value' is given more than once"),
            (op("replace", "Task.status", &[("colour", r#""valueString":"red""#)]), ".part[2]: operation 0: unknown part 'colour' (expected type, path, name, value, index, source, destination)"),
            (op("replace", "Task.status", &[("value", r#""valueString":"x","part":[{"name":"a","valueString":"b"}]"#)]), ".part[2]: operation 0: a value part needs exactly one of a value[x], a resource, or a non-empty list of parts"),
            (op("replace", "Task.status", &[("value", r#""part":[{"valueString":"b"}]"#)]), ".part[2]: operation 0: part[0]: a part needs a name"),
            (op("replace", "Task.status.resolve()", &[value]), ".part[1]: operation 0: path 'Task.status.resolve()': unsupported FHIRPath function 'resolve()'"),
            (op("replace", "CarePlan.status", &[value]), ".part[1]: operation 0: path 'CarePlan.status': the path must start with 'Task', not 'CarePlan'"),
        ];
        for (parameter, expect) in cases {
            let (at, message) = expect.split_once(": ").expect("case has a location");
            check(TASK, &[parameter], &format!("Invalid Parameters.parameter[0]{at}: {message}"));
        }
        // Every malformed operation is reported, not only the first.
        check(
            TASK,
            &[op("upsert", "Task", &[]), op("replace", "Task.status", &[value]), op("delete", "Task..x", &[])],
            "Invalid Parameters.parameter[0].part[0]: operation 0: the type must be a valueCode, one of add, insert, delete, replace, move (got 'upsert')\n\
             Invalid Parameters.parameter[2].part[1]: operation 2: path 'Task..x': unsupported FHIRPath at '.x' (supported: element names, [n], first(), last(), where(a.b = literal))",
        );
    }

    #[test]
    fn decimals_and_member_order_are_kept() {
        let ops = [
            op("replace", "CarePlan.activity[0].detail.dailyAmount.value", &[("value", r#""valueDecimal":3.10"#)]),
            op(
                "add",
                "CarePlan.activity[0].detail",
                &[("name", r#""valueString":"quantity""#), ("value", r#""valueQuantity":{"value":1.0e1,"unit":"mg"}"#)],
            ),
        ];
        check(
            CAREPLAN,
            &ops,
            &with(
                CAREPLAN,
                r#""value":2.50,"unit":"mg"}}"#,
                r#""value":3.10,"unit":"mg"},"quantity":{"value":1.0e1,"unit":"mg"}}"#,
            ),
        );
    }

    #[test]
    fn growth_past_the_limits_is_refused_before_it_applies() {
        let limits = PatchLimits { max_bytes: 4096, max_operations: 3 };
        let note = |n: usize| {
            let text = "n".repeat(n);
            op(
                "add",
                "Task",
                &[
                    ("name", r#""valueString":"note""#),
                    ("value", &format!(r#""part":[{{"name":"text","valueString":"{text}"}}]"#)),
                ],
            )
        };
        let body = |ops: &[String]| format!(r#"{{"resourceType":"Parameters","parameter":[{}]}}"#, ops.join(","));
        let task = r#"{"resourceType":"Task","id":"t1","status":"requested","intent":"order"}"#;
        let issues = fhirpath_patch(task, body(&[note(3000), note(3000)]).as_bytes(), ResourceType::Task, limits)
            .expect_err("over 4 KiB");
        assert_eq!(
            (issues[0].code, issues[0].expression.as_deref()),
            (IssueCode::TooCostly, Some("Parameters.parameter[1]"))
        );
        assert!(fhirpath_patch(task, body(&[note(3000)]).as_bytes(), ResourceType::Task, limits).is_ok());
        let four = [note(1), note(1), note(1), note(1)];
        let issues = fhirpath_patch(task, body(&four).as_bytes(), ResourceType::Task, limits).expect_err("4 > 3");
        assert_eq!(issues[0].code, IssueCode::TooCostly);
    }

    #[test]
    fn many_distinct_part_names_materialize_in_linear_time() {
        let parts: Vec<String> = (0..20_000).map(|i| format!(r#"{{"name":"p{i}","valueString":"v"}}"#)).collect();
        let value = format!(r#""part":[{}]"#, parts.join(","));
        let body = format!(
            r#"{{"resourceType":"Parameters","parameter":[{}]}}"#,
            op("add", "Task", &[("name", r#""valueString":"extension""#), ("value", &value)])
        );
        let task = r#"{"resourceType":"Task","id":"t1","status":"requested","intent":"order"}"#;
        let started = std::time::Instant::now();
        let limits = PatchLimits { max_bytes: 1 << 20, max_operations: 10 };
        let text = fhirpath_patch(task, body.as_bytes(), ResourceType::Task, limits).expect("applies");
        assert!(text.contains(r#""p19999":"v""#));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn element_tables_are_sorted_for_binary_search() {
        assert!(elements::REPEATING.windows(2).all(|w| w[0] < w[1]));
        assert!(elements::TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(elements::CHOICES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            elements::is_repeating("CareTeam.participant.role")
                && !elements::is_repeating("CareTeam.participant.member")
        );
        assert_eq!(elements::element_type("Task.note"), Some("Annotation"));
    }
}
