//! JSON Patch (RFC 6902, `application/json-patch+json`) on the stored resource text.
//!
//! The `json-patch` crate parses the document (operations, JSON Pointers) and applies `add`,
//! `replace` and `copy`. Three operations are done here instead: `test`, because RFC 6902
//! section 4.6 compares numbers by value and the preserving form holds them as text; `remove` and
//! `move`, because the crate removes object members with `Map::remove`, which under serde_json's
//! `preserve_order` swaps the last member into the gap and so reorders the client's members.

use json_patch::jsonptr::Pointer;
use json_patch::{AddOperation, PatchErrorKind, PatchOperation};
use serde_json::Value;

use super::{
    check_document_depth, is_protected, member_overhead, parse_current, Budget, Failure, PatchLimits, PROTECTED,
};
use crate::issue::{Issue, IssueCode};
use crate::json_text;

/// Apply the JSON Patch document `patch` to the resource text `current` and return the new text.
///
/// Operations apply in order; the first that fails fails the whole patch (RFC 6902 section 5).
/// Issue expressions are JSON Pointers into the patch document (`/2` is its third operation).
/// The document and the result are bounded by `limits` (see the module `patch`).
pub fn json_patch(current: &str, patch: &[u8], limits: PatchLimits) -> Result<String, Vec<Issue>> {
    let mut budget = Budget::new(limits, current);
    let operations = parse_patch(patch, &budget)?;
    let mut doc = parse_current(current)?;
    for (i, op) in operations.iter().enumerate() {
        charge(&doc, op, &mut budget).and_then(|()| apply(&mut doc, op)).map_err(|(code, message)| {
            vec![Issue::error(code, format!("/{i}"), format!("operation {i} ({}): {message}", describe(op)))]
        })?;
    }
    Ok(json_text::from_value_preserving(&doc))
}

/// The operations of the document, or every reason it is not a JSON Patch this server accepts.
fn parse_patch(patch: &[u8], budget: &Budget) -> Result<Vec<PatchOperation>, Vec<Issue>> {
    let invalid = |message: String| vec![Issue::general(IssueCode::Invalid, message)];
    let text = std::str::from_utf8(patch).map_err(|_| invalid("the JSON Patch document is not UTF-8".into()))?;
    check_document_depth(patch, "the JSON Patch document")?;
    let document = json_text::to_value_preserving(text)
        .map_err(|err| invalid(format!("the JSON Patch document is not valid JSON: {err}")))?;
    let Value::Array(items) = document else {
        return Err(invalid("a JSON Patch document must be an array of operations (RFC 6902 section 3)".into()));
    };
    budget.check_count(items.len())?;
    let mut operations = Vec::with_capacity(items.len());
    let mut issues = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<PatchOperation>(item.clone()).map_err(|_| plain_error(&item)) {
            Ok(op) if changes_protected(&op) => issues.push(Issue::error(
                IssueCode::Invalid,
                format!("/{i}"),
                format!("operation {i} ({}): {PROTECTED}", describe(&op)),
            )),
            Ok(op) => operations.push(op),
            Err(err) => issues.push(Issue::error(IssueCode::Invalid, format!("/{i}"), format!("operation {i}: {err}"))),
        }
    }
    if issues.is_empty() {
        Ok(operations)
    } else {
        Err(issues)
    }
}

/// Why `item` is not an operation, in terms of the client's JSON: the error of deserializing its
/// plain text, which shows numbers as numbers rather than in their preserving form.
fn plain_error(item: &Value) -> String {
    let text = json_text::from_value_preserving(item);
    let message = match serde_json::from_str::<PatchOperation>(&text) {
        Err(err) => err.to_string(),
        Ok(_) => "not a valid operation".to_string(),
    };
    message.split(" at line ").next().unwrap_or(&message).to_string()
}

/// Whether `op` writes to the whole resource, its identity or the server's version data.
fn changes_protected(op: &PatchOperation) -> bool {
    match op {
        PatchOperation::Test(_) => false,
        PatchOperation::Move(m) => pointer_protected(&m.from) || pointer_protected(&m.path),
        op => pointer_protected(op.path()),
    }
}

fn pointer_protected(pointer: &Pointer) -> bool {
    let keys: Vec<String> = pointer.tokens().map(|token| token.decoded().into_owned()).collect();
    is_protected(keys.iter().map(String::as_str))
}

/// `replace /status`, for diagnostics.
fn describe(op: &PatchOperation) -> String {
    let name = match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    };
    format!("{name} {}", op.path())
}

/// Ask `budget` for what `op` would add to `doc` and remove from it, before it applies: the
/// value it brings (`add`, `replace`) or copies (`copy`), at the depth of its target, less what
/// it replaces or removes. An operation whose paths do not resolve is let through: `apply`
/// reports it.
fn charge(doc: &Value, op: &PatchOperation, budget: &mut Budget) -> Result<(), Failure> {
    let size = |value: &Value| json_text::preserving_len(value, usize::MAX);
    match op {
        PatchOperation::Test(_) => Ok(()),
        PatchOperation::Remove(r) => {
            if let Some((old, overhead)) = existing(doc, &r.path) {
                budget.release(size(old) + overhead);
            }
            Ok(())
        }
        PatchOperation::Move(m) if m.from == m.path => Ok(()),
        PatchOperation::Move(m) => {
            let Some((value, old_overhead)) = existing(doc, &m.from) else { return Ok(()) };
            // The value keeps its size; its depth and the member name around it may change.
            budget.check_depth(value, m.path.count())?;
            let (replaced, overhead) = placement(doc, &m.path);
            budget.grow(overhead, old_overhead + replaced.map_or(0, |old| size(old) + overhead))
        }
        PatchOperation::Add(a) => {
            let (replaced, overhead) = placement(doc, &a.path);
            let removed = replaced.map_or(0, |old| size(old) + overhead);
            budget.admit(&a.value, a.path.count(), overhead, removed)
        }
        PatchOperation::Replace(r) => match doc.pointer(r.path.as_str()) {
            Some(old) => budget.admit(&r.value, r.path.count(), 0, size(old)),
            None => Ok(()),
        },
        PatchOperation::Copy(c) => {
            let Some(value) = doc.pointer(c.from.as_str()) else { return Ok(()) };
            let (replaced, overhead) = placement(doc, &c.path);
            let removed = replaced.map_or(0, |old| size(old) + overhead);
            budget.admit(value, c.path.count(), overhead, removed)
        }
    }
}

/// The value at `path` and the bytes its place in the parent surely takes (member name, colon).
fn existing<'a>(doc: &'a Value, path: &Pointer) -> Option<(&'a Value, usize)> {
    let value = doc.pointer(path.as_str())?;
    let (_, overhead) = placement(doc, path);
    // Without the comma: the value may have been the only one.
    Some((value, overhead.saturating_sub(1)))
}

/// Where `add` would put a value at `path`: the member value it would replace (objects only;
/// an array insert replaces nothing) and the bytes of the member name and separators.
fn placement<'a>(doc: &'a Value, path: &Pointer) -> (Option<&'a Value>, usize) {
    let Some((parent, last)) = path.split_back() else { return (None, 0) };
    match doc.pointer(parent.as_str()) {
        Some(Value::Object(members)) => {
            let key = last.decoded();
            (members.get(key.as_ref()), member_overhead(&key))
        }
        _ => (None, 1),
    }
}

fn apply(doc: &mut Value, op: &PatchOperation) -> Result<(), Failure> {
    match op {
        PatchOperation::Test(t) => test(doc, &t.path, &t.value),
        PatchOperation::Remove(r) => take(doc, &r.path).map(drop).ok_or_else(|| missing("the path")),
        PatchOperation::Move(m) => move_value(doc, &m.from, &m.path),
        op => json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|err| match err.kind {
            PatchErrorKind::InvalidPointer => missing("the path (or the object or array it adds to)"),
            PatchErrorKind::InvalidFromPointer => missing("'from'"),
            kind => (IssueCode::Processing, kind.to_string()),
        }),
    }
}

fn missing(what: &str) -> Failure {
    (IssueCode::Processing, format!("{what} does not exist in the resource"))
}

/// RFC 6902 section 4.6: the value at `path` must equal `expected` as JSON values.
fn test(doc: &Value, path: &Pointer, expected: &Value) -> Result<(), Failure> {
    let actual = doc.pointer(path.as_str()).ok_or_else(|| missing("the path"))?;
    if json_text::same_value(actual, expected) {
        Ok(())
    } else {
        Err((IssueCode::Processing, "test failed: the resource holds a different value at the path".into()))
    }
}

/// Remove and return the value at `path`, keeping the order of the remaining members.
fn take(doc: &mut Value, path: &Pointer) -> Option<Value> {
    let (parent, last) = path.split_back()?;
    match doc.pointer_mut(parent.as_str())? {
        Value::Object(members) => members.shift_remove(last.decoded().as_ref()),
        Value::Array(items) => {
            let index = last.to_index().ok()?.for_len(items.len()).ok()?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

/// RFC 6902 section 4.4: remove the value at `from` and add it at `path`.
fn move_value(doc: &mut Value, from: &Pointer, path: &Pointer) -> Result<(), Failure> {
    if from == path {
        return doc.pointer(from.as_str()).map(drop).ok_or_else(|| missing("'from'"));
    }
    if path.starts_with(from) {
        return Err((IssueCode::Processing, "a value cannot be moved into itself".into()));
    }
    let value = take(doc, from).ok_or_else(|| missing("'from'"))?;
    let add = PatchOperation::Add(AddOperation { path: path.to_buf(), value });
    json_patch::patch_unsafe(doc, std::slice::from_ref(&add)).map_err(|_| missing("the path's parent"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::TEST_LIMITS as LIMITS;

    const TASK: &str = r#"{"resourceType":"Task","id":"t1","meta":{"versionId":"3","lastUpdated":"2026-01-02T03:04:05Z"},"status":"requested","intent":"order","priority":"routine","input":[{"type":{"text":"dose"},"valueDecimal":1.50}],"note":[{"text":"one"},{"text":"two"}]}"#;

    /// Patch `current` and compare the outcome: the new text, or one line per issue.
    fn check(current: &str, patch: &str, expect: &str) {
        let got = match json_patch(current, patch.as_bytes(), LIMITS) {
            Ok(text) => text,
            Err(issues) => render(&issues),
        };
        assert_eq!(got, expect, "{patch}");
    }

    fn render(issues: &[Issue]) -> String {
        let line = |i: &Issue| format!("{:?} {}: {}", i.code, i.expression.as_deref().unwrap_or("-"), i.diagnostics);
        issues.iter().map(line).collect::<Vec<_>>().join("\n")
    }

    /// `TASK` with `from` replaced by `to`, for expected results.
    fn task_with(from: &str, to: &str) -> String {
        assert!(TASK.contains(from), "{from}");
        TASK.replacen(from, to, 1)
    }

    #[test]
    fn every_operation_applies_in_place() {
        check(TASK, r#"[{"op":"replace","path":"/status","value":"accepted"}]"#, &task_with("requested", "accepted"));
        check(
            TASK,
            r#"[{"op":"add","path":"/description","value":"Take the dose"}]"#,
            &task_with(r#""text":"two"}]}"#, r#""text":"two"}],"description":"Take the dose"}"#),
        );
        check(
            TASK,
            r#"[{"op":"add","path":"/note/1","value":{"text":"new"}}]"#,
            &task_with(r#"{"text":"two"}"#, r#"{"text":"new"},{"text":"two"}"#),
        );
        check(
            TASK,
            r#"[{"op":"add","path":"/note/-","value":{"text":"last"}}]"#,
            &task_with(r#"{"text":"two"}"#, r#"{"text":"two"},{"text":"last"}"#),
        );
        check(TASK, r#"[{"op":"remove","path":"/note/0"}]"#, &task_with(r#"{"text":"one"},"#, ""));
        check(TASK, r#"[{"op":"remove","path":"/intent"}]"#, &task_with(r#""intent":"order","#, ""));
        check(
            TASK,
            r#"[{"op":"move","from":"/note/0","path":"/note/1"}]"#,
            &task_with(r#"{"text":"one"},{"text":"two"}"#, r#"{"text":"two"},{"text":"one"}"#),
        );
        check(
            TASK,
            r#"[{"op":"copy","from":"/note/0","path":"/note/-"}]"#,
            &task_with(r#"{"text":"two"}"#, r#"{"text":"two"},{"text":"one"}"#),
        );
        check(TASK, r#"[{"op":"move","from":"/status","path":"/status"}]"#, TASK);
        check(TASK, "[]", TASK);
    }

    #[test]
    fn numbers_and_member_order_survive() {
        // Untouched decimals keep their text, and so do the decimals a patch brings.
        check(
            TASK,
            r#"[{"op":"add","path":"/input/-","value":{"type":{"text":"rate"},"valueDecimal":2.250}}]"#,
            &task_with(r#"1.50}]"#, r#"1.50},{"type":{"text":"rate"},"valueDecimal":2.250}]"#),
        );
        check(TASK, r#"[{"op":"replace","path":"/input/0/valueDecimal","value":3.10}]"#, &task_with("1.50", "3.10"));
        // Removing a member keeps the order of the others (no swap with the last member).
        check(TASK, r#"[{"op":"remove","path":"/status"}]"#, &task_with(r#""status":"requested","#, ""));
        check(
            TASK,
            r#"[{"op":"move","from":"/intent","path":"/intent2"}]"#,
            &task_with(r#""intent":"order","#, "").replace(r#""two"}]}"#, r#""two"}],"intent2":"order"}"#),
        );
    }

    #[test]
    fn test_operations_compare_json_values() {
        check(
            TASK,
            r#"[{"op":"test","path":"/input/0/valueDecimal","value":1.5},{"op":"replace","path":"/status","value":"accepted"}]"#,
            &task_with("requested", "accepted"),
        );
        check(TASK, r#"[{"op":"test","path":"/meta/versionId","value":"3"}]"#, TASK);
        check(TASK, r#"[{"op":"test","path":"/note/1","value":{"text":"two"}}]"#, TASK);
        check(
            TASK,
            r#"[{"op":"test","path":"/meta/versionId","value":"2"},{"op":"replace","path":"/status","value":"accepted"}]"#,
            "Processing /0: operation 0 (test /meta/versionId): test failed: the resource holds a different value at the path",
        );
        check(
            TASK,
            r#"[{"op":"test","path":"/input/0/valueDecimal","value":"1.50"}]"#,
            "Processing /0: operation 0 (test /input/0/valueDecimal): test failed: the resource holds a different value at the path",
        );
    }

    #[test]
    fn paths_that_do_not_exist_are_processing_errors() {
        check(
            TASK,
            r#"[{"op":"replace","path":"/status","value":"accepted"},{"op":"replace","path":"/owner","value":{}}]"#,
            "Processing /1: operation 1 (replace /owner): the path (or the object or array it adds to) does not exist in the resource",
        );
        check(
            TASK,
            r#"[{"op":"remove","path":"/note/5"}]"#,
            "Processing /0: operation 0 (remove /note/5): the path does not exist in the resource",
        );
        check(
            TASK,
            r#"[{"op":"add","path":"/owner/display","value":"x"}]"#,
            "Processing /0: operation 0 (add /owner/display): the path (or the object or array it adds to) does not exist in the resource",
        );
        check(
            TASK,
            r#"[{"op":"move","from":"/owner","path":"/focus"}]"#,
            "Processing /0: operation 0 (move /focus): 'from' does not exist in the resource",
        );
        check(
            TASK,
            r#"[{"op":"copy","from":"/owner","path":"/focus"}]"#,
            "Processing /0: operation 0 (copy /focus): 'from' does not exist in the resource",
        );
        check(
            TASK,
            r#"[{"op":"move","from":"/input/0","path":"/input/0/type"}]"#,
            "Processing /0: operation 0 (move /input/0/type): a value cannot be moved into itself",
        );
        check(
            TASK,
            r#"[{"op":"test","path":"/owner","value":"x"}]"#,
            "Processing /0: operation 0 (test /owner): the path does not exist in the resource",
        );
    }

    #[test]
    fn malformed_documents_are_invalid() {
        check(
            TASK,
            "{",
            "Invalid -: the JSON Patch document is not valid JSON: EOF while parsing an object at line 1 column 1",
        );
        check(
            TASK,
            r#"{"op":"remove","path":"/status"}"#,
            "Invalid -: a JSON Patch document must be an array of operations (RFC 6902 section 3)",
        );
        check(
            TASK,
            r#"[{"op":"frobnicate","path":"/a"},{"op":"remove"},{"path":"/a"},{"op":"add","path":"status","value":1},7,{"op":"test","path":1.5,"value":1}]"#,
            "Invalid /0: operation 0: unknown variant `frobnicate`, expected one of `add`, `remove`, `replace`, `move`, `copy`, `test`\n\
             Invalid /1: operation 1: missing field `path`\n\
             Invalid /2: operation 2: missing field `op`\n\
             Invalid /3: operation 3: json pointer failed to parse; does not start with a slash ('/') and is not empty\n\
             Invalid /4: operation 4: invalid type: integer `7`, expected internally tagged enum PatchOperation\n\
             Invalid /5: operation 5: invalid type: floating point `1.5`, expected a string",
        );
        check(TASK, r#"[{"op":"add","path":"/status"}]"#, "Invalid /0: operation 0: missing field `value`");
    }

    #[test]
    fn identity_and_version_are_refused() {
        let refused = "id, resourceType, meta.versionId and meta.lastUpdated cannot be changed by a patch";
        for (patch, op) in [
            (r#"{"op":"replace","path":"/id","value":"t2"}"#, "replace /id"),
            (r#"{"op":"remove","path":"/resourceType"}"#, "remove /resourceType"),
            (r#"{"op":"replace","path":"/meta/versionId","value":"9"}"#, "replace /meta/versionId"),
            (r#"{"op":"add","path":"/meta/lastUpdated","value":"2020-01-01T00:00:00Z"}"#, "add /meta/lastUpdated"),
            (r#"{"op":"move","from":"/id","path":"/description"}"#, "move /description"),
            (r#"{"op":"copy","from":"/status","path":"/id"}"#, "copy /id"),
            (r#"{"op":"replace","path":"","value":{}}"#, "replace "),
        ] {
            check(TASK, &format!("[{patch}]"), &format!("Invalid /0: operation 0 ({op}): {refused}"));
        }
    }

    #[test]
    fn a_patch_doubling_the_resource_stops_before_the_copy_that_would_pass_the_limit() {
        // Issue 13: one 1 KB element, then 25 copies of the list into itself (2^25 KB).
        let element = format!(r#"{{"type":{{"text":"pad"}},"valueString":"{}"}}"#, "x".repeat(1024));
        let mut operations = vec![format!(r#"{{"op":"add","path":"/input","value":[{element}]}}"#)];
        operations.extend((0..25).map(|_| r#"{"op":"copy","from":"/input","path":"/input/-"}"#.to_string()));
        let patch = format!("[{}]", operations.join(","));
        let limits = PatchLimits { max_bytes: 64 * 1024, max_operations: 100 };
        // 2^6 elements of ~1.1 KB fit in 64 KiB, 2^7 do not: operation 6 (the 6th copy) stops.
        let issues = json_patch(TASK, patch.as_bytes(), limits).expect_err("refused");
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].code, issues[0].expression.as_deref()), (IssueCode::TooCostly, Some("/6")));
        assert!(issues[0].diagnostics.contains("65536 bytes"), "{}", issues[0].diagnostics);
        // Under the limit the same copies apply.
        let text = json_patch(TASK, format!("[{}]", operations[..6].join(",")).as_bytes(), limits).expect("applies");
        assert!(text.len() <= limits.max_bytes && text.len() > 32 * 1024, "{}", text.len());
    }

    #[test]
    fn growth_is_measured_net_of_what_an_operation_replaces_or_removes() {
        let limits = PatchLimits { max_bytes: TASK.len() + 2048, max_operations: 100 };
        let big = |n: usize| format!(r#"{{"op":"add","path":"/description","value":"{}"}}"#, "d".repeat(n));
        // Replacing a 1.5 KB member by another of 1.5 KB, and removing it, never adds up.
        let patch = format!(r#"[{},{},{{"op":"remove","path":"/description"}},{}]"#, big(1500), big(1500), big(1500));
        assert!(json_patch(TASK, patch.as_bytes(), limits).is_ok());
        let patch = format!("[{}]", big(2100));
        let issues = json_patch(TASK, patch.as_bytes(), limits).expect_err("too large");
        assert_eq!(issues[0].code, IssueCode::TooCostly);
    }

    #[test]
    fn too_many_operations_or_too_deep_a_result_are_refused() {
        let limits = PatchLimits { max_bytes: 1 << 20, max_operations: 2 };
        let replace = r#"{"op":"replace","path":"/status","value":"accepted"}"#;
        let issues =
            json_patch(TASK, format!("[{replace},{replace},{replace}]").as_bytes(), limits).expect_err("3 > 2");
        assert_eq!((issues[0].code, issues[0].expression.as_deref()), (IssueCode::TooCostly, None));
        // Copying a subtree into itself deepens it each time; the depth limit stops it.
        let mut operations = vec![r#"{"op":"add","path":"/a","value":{"b":{}}}"#.to_string()];
        let mut path = "/a/b".to_string();
        for _ in 0..40 {
            operations.push(format!(r#"{{"op":"copy","from":"/a","path":"{path}/a"}}"#));
            path.push_str("/a/b");
        }
        let limits = PatchLimits { max_bytes: 1 << 20, max_operations: 100 };
        let issues = json_patch(TASK, format!("[{}]", operations.join(",")).as_bytes(), limits).expect_err("deep");
        assert_eq!(issues[0].code, IssueCode::TooCostly);
        assert!(issues[0].diagnostics.contains("at most 100"), "{}", issues[0].diagnostics);
        // A patch document nested too deep is refused before it is parsed.
        let deep = format!(r#"[{{"op":"add","path":"/a","value":{}1{}}}]"#, "[".repeat(150), "]".repeat(150));
        let issues = json_patch(TASK, deep.as_bytes(), limits).expect_err("deep document");
        assert!(issues[0].diagnostics.contains("at most 100"), "{}", issues[0].diagnostics);
    }

    #[test]
    fn a_broken_stored_resource_is_a_server_fault() {
        check(
            "{",
            "[]",
            "Exception -: the stored resource cannot be read: EOF while parsing an object at line 1 column 1",
        );
    }
}
