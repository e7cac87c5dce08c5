//! On-hold memory: a Task on hold resumes to the status it was in (reference §1.7, R4
//! task.html#statemachine: "typically resumed in the state it was in"), so that status must be
//! stored with the held Task.
//!
//! **Where it is stored: `meta.extension`**, as `{"url": RESUME_STATUS_URL, "valueCode": <status>}`.
//! `Meta` is an `Element`, so it may carry extensions (http://hl7.org/fhir/R4/resource.html#Meta).
//! Meta rather than `Task.extension`, because:
//! - the service promises to return what the client sent *apart from meta*; meta is already
//!   partly the server's (`versionId`, `lastUpdated`), so the promise needs no new exception;
//! - the memory is the server's to keep: a client that PUTs a Task without echoing it does not
//!   erase it, and one that sends its own copy cannot forge it, because the server always
//!   derives it from the stored version and replaces any client copy (`hold_memory`);
//! - the extension lives in history with each version, so the record of why a Task resumed to
//!   a status is kept.
//!
//! The price: clients that look only at the Task's own elements will not see it, and it is not
//! searchable. Neither matters: only the server reads it.

use serde_json::{json, Map, Value};

use crate::issue::Issue;

use super::machine::{decide, Role, WorkflowPolicy};
use super::{previous_of, status_of, TaskStatus};

/// The extension holding the status a held Task resumes to. `careplan.example` is a placeholder
/// base for this service's own definitions; a deployment publishing a StructureDefinition would
/// replace it with its canonical base (then migrate stored meta, or read both URLs).
pub const RESUME_STATUS_URL: &str = "http://careplan.example/fhir/StructureDefinition/task-resume-status";

/// The status remembered in `task`'s `meta.extension`, if any.
pub fn resume_status(task: &Value) -> Option<TaskStatus> {
    let extensions = task.get("meta")?.get("extension")?.as_array()?;
    let memory = extensions.iter().find(|e| is_memory(e))?;
    memory.get("valueCode")?.as_str().and_then(TaskStatus::parse)
}

/// What the stored Task must say about resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMemory {
    /// On hold: remember this status to resume to.
    Remember(TaskStatus),
    /// Not on hold (or nothing to remember): carry no memory.
    Forget,
}

impl HoldMemory {
    /// The `meta.extension` entry to store, if any.
    pub fn extension(self) -> Option<Value> {
        match self {
            HoldMemory::Remember(status) => Some(json!({"url": RESUME_STATUS_URL, "valueCode": status.as_str()})),
            HoldMemory::Forget => None,
        }
    }

    /// Write the memory into `task`'s `meta.extension`, replacing any copy there, leaving every
    /// other meta element and extension as it was and no empty `extension` or `meta` behind.
    pub fn apply(self, task: &mut Value) {
        let Some(resource) = task.as_object_mut() else { return };
        let mut meta = match resource.remove("meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        let mut extensions = match meta.remove("extension") {
            Some(Value::Array(extensions)) => extensions,
            _ => Vec::new(),
        };
        extensions.retain(|e| !is_memory(e));
        extensions.extend(self.extension());
        if !extensions.is_empty() {
            meta.insert("extension".into(), Value::Array(extensions));
        }
        if !meta.is_empty() {
            resource.insert("meta".into(), Value::Object(meta));
        }
    }
}

/// The memory the Task to store must carry, from the stored version (`None` for a create) and
/// the version sent: going on hold remembers the status left; staying on hold keeps what was
/// remembered; leaving hold forgets it, and is refused (`business-rule`, as `decide` words it)
/// unless it resumes to the remembered status or ends the Task (cancelled, entered-in-error).
/// Any copy the client sent is ignored.
pub fn hold_memory(previous: Option<&Value>, next: &Value) -> Result<HoldMemory, Issue> {
    let to = status_of(next)?;
    let Some(previous) = previous else { return Ok(HoldMemory::Forget) };
    let before = previous_of(previous)?;
    match (before.status, to) {
        (TaskStatus::OnHold, TaskStatus::OnHold) => {
            Ok(before.resume_to.map_or(HoldMemory::Forget, HoldMemory::Remember))
        }
        (from, TaskStatus::OnHold) if !from.is_terminal() => Ok(HoldMemory::Remember(from)),
        (TaskStatus::OnHold, _) => {
            decide(Some(before), to, Role::Unknown, WorkflowPolicy::default()).map_err(|r| r.to_issue())?;
            Ok(HoldMemory::Forget)
        }
        _ => Ok(HoldMemory::Forget),
    }
}

/// The Task JSON to store for `next`: `next` with the memory `hold_memory` decides in its
/// `meta.extension`. Call it on every Task write, so a client copy never survives.
///
/// Working on `Value` rewrites decimals (`1.50` becomes `1.5`); where exact text matters, apply
/// `hold_memory(..)?.extension()` with `Prepared::with_meta_extension` instead.
pub fn task_to_store(previous: Option<&Value>, mut next: Value) -> Result<Value, Issue> {
    hold_memory(previous, &next)?.apply(&mut next);
    Ok(next)
}

fn is_memory(extension: &Value) -> bool {
    extension.get("url").and_then(Value::as_str) == Some(RESUME_STATUS_URL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::IssueCode;

    fn task(status: &str, remembered: Option<&str>) -> Value {
        let mut task = json!({"resourceType": "Task", "status": status, "intent": "order",
            "meta": {"versionId": "3", "extension": [{"url": "http://example.org/other", "valueString": "x"}]}});
        if let Some(was) = remembered {
            HoldMemory::Remember(TaskStatus::parse(was).unwrap_or(TaskStatus::Draft)).apply(&mut task);
        }
        task
    }

    /// `expect`: the remembered status of the Task to store ("-" for none), or the issue code.
    fn check(previous: Option<Value>, next: Value, expect: &str) {
        let got = match task_to_store(previous.as_ref(), next) {
            Ok(stored) => {
                let other = stored["meta"]["extension"][0]["url"].as_str() == Some("http://example.org/other");
                assert!(other, "other extensions are kept: {stored}");
                resume_status(&stored).map_or("-".to_string(), |s| s.to_string())
            }
            Err(issue) => format!("{:?}: {}", issue.code, issue.diagnostics),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn going_on_hold_remembers_the_status_left() {
        check(Some(task("in-progress", None)), task("on-hold", None), "in-progress");
        check(Some(task("ready", None)), task("on-hold", None), "ready");
    }

    #[test]
    fn staying_on_hold_keeps_the_memory_and_ignores_the_clients() {
        check(Some(task("on-hold", Some("ready"))), task("on-hold", None), "ready");
        check(Some(task("on-hold", Some("ready"))), task("on-hold", Some("in-progress")), "ready");
    }

    #[test]
    fn resuming_forgets_and_only_to_the_remembered_status() {
        check(Some(task("on-hold", Some("ready"))), task("ready", None), "-");
        check(Some(task("on-hold", Some("ready"))), task("cancelled", None), "-");
        check(
            Some(task("on-hold", Some("ready"))),
            task("in-progress", Some("in-progress")),
            "BusinessRule: on-hold → in-progress is not allowed: a Task on hold resumes to the status it was in, \
             ready; from on-hold, anyone may move it to ready, cancelled, entered-in-error",
        );
        // Nothing remembered: resume to in-progress, the matrix's own row.
        check(Some(task("on-hold", None)), task("in-progress", None), "-");
    }

    #[test]
    fn a_client_copy_never_survives_outside_hold() {
        check(None, task("requested", Some("in-progress")), "-");
        check(Some(task("requested", None)), task("accepted", Some("ready")), "-");
    }

    #[test]
    fn forgetting_leaves_no_empty_meta() {
        let mut task =
            json!({"status": "ready", "meta": {"extension": [{"url": RESUME_STATUS_URL, "valueCode": "ready"}]}});
        HoldMemory::Forget.apply(&mut task);
        assert_eq!(task, json!({"status": "ready"}));
        assert_eq!(
            hold_memory(None, &json!({})).map_err(|i| i.code),
            Err(IssueCode::Required),
            "a Task without a status cannot be stored"
        );
    }
}
