//! Due and overdue work (reference §5.2, §5.3; issue 5 item 5): a Task's due date is
//! `Task.restriction.period.end`; an *open* Task past it is overdue. The background job marks
//! such a Task once, with a `businessStatus` of our own code system, as a new version that keeps
//! the rest of the client's text to the byte (`mark_overdue`).
//!
//! Pure: the caller supplies the current time and the stored text.

use serde_json::{json, Value};

use crate::json_text;
use crate::resource::ResourceType;
use crate::search::dates;
use crate::search::params;
use crate::search::query::{Clause, Criterion, Overdue, SearchRequest, SystemMatch, Target, TokenMatch, TokenMode};
use crate::stored::with_member;
use crate::workflow::TaskStatus;

/// Our code system for `Task.businessStatus` (documented in the README).
pub const BUSINESS_STATUS_SYSTEM: &str = "http://careplan.example/fhir/CodeSystem/task-business-status";
/// The code the overdue job sets.
pub const OVERDUE_CODE: &str = "overdue";
pub const OVERDUE_DISPLAY: &str = "Overdue";

/// What the worklist reads of a Task: its status, the range of its due date, and whether it
/// already carries the overdue business status. Reads a plain or a number-preserving `Value`
/// (`json_text::to_value_preserving`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub status: Option<TaskStatus>,
    /// The inclusive range of `restriction.period.end` in epoch ms (`2026-03-04` is the day).
    pub due: Option<(i64, i64)>,
    pub marked: bool,
}

impl Due {
    pub fn of(task: &Value) -> Self {
        fn text(value: Option<&Value>) -> Option<&str> {
            value.and_then(json_text::string_text)
        }
        let status = text(task.get("status")).and_then(TaskStatus::parse);
        let end = task.get("restriction").and_then(|r| r.get("period")).and_then(|p| p.get("end"));
        let due = text(end).and_then(dates::range);
        let codings = task.get("businessStatus").and_then(|b| b.get("coding")).and_then(Value::as_array);
        let marked = codings.is_some_and(|codings| {
            codings.iter().any(|c| {
                text(c.get("system")) == Some(BUSINESS_STATUS_SYSTEM) && text(c.get("code")) == Some(OVERDUE_CODE)
            })
        });
        Self { status, due, marked }
    }

    /// Open, and the due date ended before `now` (epoch ms): a Task due `2026-03-04` is overdue
    /// from `2026-03-05T00:00:00Z`. The search index judges the same way (`Overdue`).
    pub fn is_overdue(&self, now: i64) -> bool {
        self.status.is_some_and(TaskStatus::is_open) && self.due.is_some_and(|(_, high)| high < now)
    }
}

/// The text of the next version of a stored Task that the overdue job should mark, or `None`
/// when there is nothing to do: the Task is not overdue at `now`, or is marked already.
///
/// The new text is the stored text with `businessStatus` replaced in place by (or, if absent,
/// added last as) the overdue coding; every other element is kept as the client's raw text, so
/// number literals (`1.50`), escapes and member order survive to the byte. The previous business
/// status stays in the history. `meta` is left as stored: the store sets `versionId` and
/// `lastUpdated` when it writes.
pub fn mark_overdue(stored: &str, now: i64) -> Result<Option<String>, serde_json::Error> {
    let task: Value = serde_json::from_str(stored)?;
    let due = Due::of(&task);
    if !due.is_overdue(now) || due.marked {
        return Ok(None);
    }
    with_member(stored, "businessStatus", &overdue_business_status()).map(Some)
}

/// `{coding: [{system, code, display}], text}` of the overdue business status.
pub fn overdue_business_status() -> Value {
    json!({
        "coding": [{ "system": BUSINESS_STATUS_SYSTEM, "code": OVERDUE_CODE, "display": OVERDUE_DISPLAY }],
        "text": OVERDUE_DISPLAY,
    })
}

/// The search for Tasks the job should mark at `now`: `overdue=true` judged at `now`, and
/// `business-status:not={BUSINESS_STATUS_SYSTEM}|overdue`. Sorted by id (the default), so a
/// keyset cursor walks it while the job marks what it has seen.
pub fn candidates(now: i64) -> Option<SearchRequest> {
    let overdue = Overdue::task(Some(now))?;
    let business_status = params::find(ResourceType::Task, "business-status")?;
    let not_marked = TokenMatch {
        system: SystemMatch::Is(BUSINESS_STATUS_SYSTEM.to_owned()),
        code: Some(OVERDUE_CODE.to_owned()),
        mode: TokenMode::Not,
    };
    Some(SearchRequest {
        clauses: vec![
            Clause { target: Target::Overdue(overdue), values: vec![Criterion::Flag(true)] },
            Clause { target: Target::Param(business_status), values: vec![Criterion::Token(not_marked)] },
        ],
        ..SearchRequest::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-05T00:00:00Z.
    const NOW: i64 = 1_772_668_800_000;

    /// Checks what `mark_overdue` makes of `stored` at `NOW`: `expect` is the new text, or `-`
    /// for nothing to do.
    fn check(stored: &str, expect: &str) {
        let marked = mark_overdue(stored, NOW).expect("valid JSON");
        assert_eq!(marked.as_deref().unwrap_or("-"), expect, "{stored}");
    }

    const MARK: &str = r#""businessStatus":{"coding":[{"system":"http://careplan.example/fhir/CodeSystem/task-business-status","code":"overdue","display":"Overdue"}],"text":"Overdue"}"#;

    #[test]
    fn an_open_task_past_due_is_marked_keeping_everything_else() {
        check(
            r#"{"resourceType":"Task","id":"t","meta":{"versionId":"3"},"status":"in-progress","restriction":{"period":{"end":"2026-03-04"}},"input":[{"type":{"text":"dose"},"valueDecimal":1.50}]}"#,
            &format!(
                r#"{{"resourceType":"Task","id":"t","meta":{{"versionId":"3"}},"status":"in-progress","restriction":{{"period":{{"end":"2026-03-04"}}}},"input":[{{"type":{{"text":"dose"}},"valueDecimal":1.50}}],{MARK}}}"#
            ),
        );
    }

    #[test]
    fn escapes_the_client_chose_are_kept() {
        check(
            r#"{"resourceType":"Task","description":"caf\u00e9 \/ done","status":"ready","restriction":{"period":{"end":"2026-01-01"}}}"#,
            &format!(
                r#"{{"resourceType":"Task","description":"caf\u00e9 \/ done","status":"ready","restriction":{{"period":{{"end":"2026-01-01"}}}},{MARK}}}"#
            ),
        );
    }

    #[test]
    fn a_previous_business_status_is_replaced_in_place() {
        check(
            r#"{"resourceType":"Task","status":"requested","businessStatus":{"text":"waiting"},"restriction":{"period":{"end":"2026-03-04T23:59:59Z"}},"priority":"urgent"}"#,
            &format!(
                r#"{{"resourceType":"Task","status":"requested",{MARK},"restriction":{{"period":{{"end":"2026-03-04T23:59:59Z"}}}},"priority":"urgent"}}"#
            ),
        );
    }

    #[test]
    fn nothing_to_do_unless_open_past_due_and_unmarked() {
        let task = |status: &str, end: &str| {
            format!(r#"{{"resourceType":"Task","status":"{status}","restriction":{{"period":{{"end":"{end}"}}}}}}"#)
        };
        // Due today (the whole day counts), due later, or no due date.
        check(&task("requested", "2026-03-05"), "-");
        check(&task("requested", "2026-03-05T00:00:00Z"), "-");
        check(&task("accepted", "2027"), "-");
        check(r#"{"resourceType":"Task","status":"requested","restriction":{"period":{"start":"2020"}}}"#, "-");
        check(r#"{"resourceType":"Task","status":"requested"}"#, "-");
        // Closed work, and drafts, are never overdue.
        for status in ["draft", "completed", "cancelled", "failed", "rejected", "entered-in-error"] {
            check(&task(status, "2020-01-01"), "-");
        }
        // Marked already (whatever else the business status says).
        check(
            r#"{"resourceType":"Task","status":"on-hold","restriction":{"period":{"end":"2020"}},"businessStatus":{"coding":[{"code":"x"},{"system":"http://careplan.example/fhir/CodeSystem/task-business-status","code":"overdue"}]}}"#,
            "-",
        );
    }

    #[test]
    fn every_open_status_can_be_overdue() {
        for status in TaskStatus::ALL {
            let due = Due { status: Some(status), due: Some((0, NOW - 1)), marked: false };
            let open = !status.is_terminal() && status != TaskStatus::Draft;
            assert_eq!(due.is_overdue(NOW), open, "{status}");
            assert_eq!(status.is_open(), open, "{status}");
        }
        let unknown = Due { status: None, due: Some((0, 1)), marked: false };
        assert!(!unknown.is_overdue(NOW));
    }

    #[test]
    fn the_candidate_search_is_overdue_and_not_yet_marked() {
        let request = candidates(NOW).expect("declared");
        assert!(matches!(request.clauses[0].target, Target::Overdue(Overdue { at: Some(NOW), .. })));
        assert!(matches!(&request.clauses[1].target, Target::Param(p) if p.name == "business-status"));
    }
}
