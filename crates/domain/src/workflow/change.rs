//! `check_task_change`: every rule about one Task write, given the stored version (if any), the
//! version sent and who sends it. The update, PATCH, conditional update and transaction paths all
//! call it with the same three values, so the rules hold on every path that changes a Task.

use serde_json::Value;

use crate::issue::{Issue, IssueCode};

use super::machine::{decide, Role, WorkflowPolicy};
use super::{previous_of, reference, status_of, TaskStatus};

/// Who makes a change: the `fhirUser` of the token, or a development header, as a reference
/// such as `Practitioner/123`. Compared as text with `Task.requester` and `Task.owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub reference: String,
}

impl Actor {
    pub fn new(reference: impl Into<String>) -> Self {
        Self { reference: reference.into() }
    }
}

/// Elements fixed when the Task is created (issue 5, item 2): whom it is for, who asked, the plan
/// it serves and the Task it is part of.
pub const IMMUTABLE_ELEMENTS: [&str; 4] = ["for", "requester", "basedOn", "partOf"];

/// The elements an owner who is not the requester may change (reference §1.7, from the Shared
/// Care Planning authorization table); everything else is the requester's.
pub const OWNER_ELEMENTS: [&str; 10] = [
    "status",
    "statusReason",
    "businessStatus",
    "executionPeriod",
    "lastModified",
    "owner",
    "location",
    "note",
    "relevantHistory",
    "output",
];

/// Elements no client rule applies to: `resourceType` and `id` are fixed by the URL, `meta` is
/// the server's, and `text` (the narrative) follows the other elements, so it changes whenever
/// they do.
pub const SERVER_ELEMENTS: [&str; 4] = ["resourceType", "id", "meta", "text"];

/// Check a Task write: `previous` is the stored version (`None` for a create), `next` the version
/// sent, `actor` who sends it (`None`: no identity, so no role checks).
///
/// - the status change passes `decide` (http://hl7.org/fhir/R4/task.html#statemachine, §1.7),
///   a held Task resuming to the status remembered in `previous` (see `hold`);
/// - `statusReason.text` is present when the status is rejected, cancelled, on-hold or failed;
/// - `IMMUTABLE_ELEMENTS` are as stored;
/// - with an actor: the requester is `Task.requester`, the owner the stored `Task.owner`, or,
///   for a Task without one, an actor who makes itself owner while moving it to received,
///   accepted or in-progress (claiming); an actor who is neither may change nothing; an owner who
///   is not the requester may change only `OWNER_ELEMENTS`, and not `executionPeriod` while
///   receiving or accepting an order.
///
/// Empty when the write is allowed. Refusals are `business-rule`, or `forbidden` for the actor.
pub fn check_task_change(
    previous: Option<&Value>,
    next: &Value,
    actor: Option<&Actor>,
    policy: WorkflowPolicy,
) -> Vec<Issue> {
    let to = match status_of(next) {
        Ok(to) => to,
        Err(issue) => return vec![issue],
    };
    let before = match previous.map(previous_of).transpose() {
        Ok(before) => before,
        Err(issue) => return vec![issue],
    };
    let role = actor.map_or(Role::Unknown, |actor| role_of(previous, next, actor, to));
    let mut issues = Vec::new();
    let decided = if before.is_none() && !policy.strict_create {
        match role {
            Role::Owner | Role::Neither => {
                Err(Issue::general(IssueCode::Forbidden, "only the requester may create a Task"))
            }
            _ => Ok(()),
        }
    } else {
        decide(before, to, role, policy).map_err(|refusal| refusal.to_issue())
    };
    match decided {
        Err(issue) => issues.push(issue),
        Ok(()) if role == Role::Neither => {
            issues.push(Issue::general(IssueCode::Forbidden, "only the requester or the owner of a Task may change it"))
        }
        Ok(()) => {}
    }
    require_reason(next, to, &mut issues);
    if let Some(previous) = previous {
        keep_immutable(previous, next, &mut issues);
        if role == Role::Owner {
            owner_elements_only(previous, next, to, &mut issues);
        }
    }
    issues
}

/// The actor's role. The requester is read from the stored version when there is one (it cannot
/// change); the owner is the stored owner, so that handing a Task to someone else is the
/// owner's move, not the new owner's.
fn role_of(previous: Option<&Value>, next: &Value, actor: &Actor, to: TaskStatus) -> Role {
    let me = Some(actor.reference.as_str());
    let record = previous.unwrap_or(next);
    // A Task that names neither requester nor owner gives no one a role to check.
    if reference(record, "requester").is_none()
        && reference(record, "owner").is_none()
        && reference(next, "owner").is_none()
    {
        return Role::Unknown;
    }
    // Whoever creates a Task that names no requester is its requester.
    let is_requester = match reference(record, "requester") {
        Some(requester) => Some(requester) == me,
        None => previous.is_none(),
    };
    let is_owner = match previous {
        None => reference(next, "owner") == me,
        Some(previous) => match reference(previous, "owner") {
            Some(owner) => Some(owner) == me,
            None => claims(previous, next, me, to),
        },
    };
    Role::of(is_requester, is_owner)
}

/// A Task without an owner may be claimed: the actor makes itself owner while moving the Task
/// to received, accepted or in-progress (the "open Task" of reference §1.8).
fn claims(previous: &Value, next: &Value, me: Option<&str>, to: TaskStatus) -> bool {
    let moving = status_of(previous).is_ok_and(|from| from != to);
    let claiming = matches!(to, TaskStatus::Received | TaskStatus::Accepted | TaskStatus::InProgress);
    moving && claiming && reference(next, "owner") == me
}

/// `statusReason.text` is required for rejected, cancelled, on-hold and failed (reference §1.7).
fn require_reason(next: &Value, to: TaskStatus, issues: &mut Vec<Issue>) {
    let text = next.get("statusReason").and_then(|r| r.get("text")).and_then(Value::as_str);
    if to.needs_reason() && text.is_none_or(|t| t.trim().is_empty()) {
        issues.push(Issue::error(
            IssueCode::BusinessRule,
            "Task.statusReason.text",
            format!("a Task that is {to} must say why in statusReason.text"),
        ));
    }
}

fn keep_immutable(previous: &Value, next: &Value, issues: &mut Vec<Issue>) {
    for element in IMMUTABLE_ELEMENTS {
        if previous.get(element) != next.get(element) {
            issues.push(Issue::error(
                IssueCode::BusinessRule,
                format!("Task.{element}"),
                format!("Task.{element} cannot change after the Task is created"),
            ));
        }
    }
}

/// An owner who is not the requester may change only `OWNER_ELEMENTS` (reference §1.7).
fn owner_elements_only(previous: &Value, next: &Value, to: TaskStatus, issues: &mut Vec<Issue>) {
    let mut changed: Vec<&str> = changed_elements(previous, next);
    changed.retain(|e| !OWNER_ELEMENTS.contains(e) && !SERVER_ELEMENTS.contains(e) && !IMMUTABLE_ELEMENTS.contains(e));
    for element in changed {
        issues.push(Issue::error(
            IssueCode::Forbidden,
            format!("Task.{element}"),
            format!(
                "the owner may not change Task.{element}; an owner who is not the requester may change only {}",
                OWNER_ELEMENTS.join(", ")
            ),
        ));
    }
    let receiving = matches!(to, TaskStatus::Received | TaskStatus::Accepted);
    let moving = status_of(previous).is_ok_and(|from| from != to);
    let order = next.get("intent").and_then(Value::as_str) == Some("order");
    if order && receiving && moving && previous.get("executionPeriod") != next.get("executionPeriod") {
        issues.push(Issue::error(
            IssueCode::Forbidden,
            "Task.executionPeriod",
            format!("the owner may not change Task.executionPeriod while moving an order to {to}"),
        ));
    }
}

/// Top-level elements added, removed or changed, in the order of `next` then `previous`.
fn changed_elements<'a>(previous: &'a Value, next: &'a Value) -> Vec<&'a str> {
    let (Some(old), Some(new)) = (previous.as_object(), next.as_object()) else {
        return Vec::new();
    };
    let added_or_changed = new.iter().filter(|(k, v)| old.get(k.as_str()) != Some(v)).map(|(k, _)| k.as_str());
    let removed = old.keys().filter(|k| !new.contains_key(k.as_str())).map(String::as_str);
    added_or_changed.chain(removed).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::workflow::RESUME_STATUS_URL;

    const REQUESTER: &str = "Practitioner/coordinator";
    const OWNER: &str = "Practitioner/social-worker";

    /// A Task with `status`, its requester and owner, and `extra` elements merged over it
    /// (`null` removes an element).
    fn task(status: &str, extra: Value) -> Value {
        let mut task = json!({
            "resourceType": "Task", "id": "t1", "status": status, "intent": "order",
            "for": {"reference": "Patient/p1"}, "basedOn": [{"reference": "CarePlan/cp1"}],
            "requester": {"reference": REQUESTER}, "owner": {"reference": OWNER},
        });
        if let (Some(task), Some(extra)) = (task.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    task.remove(key);
                } else {
                    task.insert(key.clone(), value.clone());
                }
            }
        }
        task
    }

    fn reason(text: &str) -> Value {
        json!({ "text": text })
    }

    fn check(previous: Option<Value>, next: Value, actor: Option<&str>, expect: &[(&str, IssueCode)]) {
        check_with(previous, next, actor, WorkflowPolicy { strict_create: true, ..WorkflowPolicy::default() }, expect);
    }

    fn check_with(
        previous: Option<Value>,
        next: Value,
        actor: Option<&str>,
        policy: WorkflowPolicy,
        expect: &[(&str, IssueCode)],
    ) {
        let actor = actor.map(Actor::new);
        let issues = check_task_change(previous.as_ref(), &next, actor.as_ref(), policy);
        // Issues follow the order of the elements, which is the client's: compare as sets.
        let mut got: Vec<(String, String)> =
            issues.iter().map(|i| (i.expression.clone().unwrap_or_default(), format!("{:?}", i.code))).collect();
        let mut expect: Vec<(String, String)> = expect.iter().map(|(e, c)| (e.to_string(), format!("{c:?}"))).collect();
        got.sort();
        expect.sort();
        assert_eq!(got, expect, "{issues:#?}");
    }

    #[test]
    fn by_default_a_task_may_enter_the_plan_in_any_status_but_only_from_its_requester() {
        let lenient = WorkflowPolicy::default();
        check_with(None, task("completed", json!({})), None, lenient, &[]);
        check_with(None, task("in-progress", json!({})), Some(REQUESTER), lenient, &[]);
        check_with(None, task("requested", json!({})), Some(OWNER), lenient, &[("", IssueCode::Forbidden)]);
    }

    #[test]
    fn allowed_changes_pass() {
        check(None, task("requested", json!({})), Some(REQUESTER), &[]);
        check(None, task("draft", json!({"owner": null})), Some(REQUESTER), &[]);
        check(Some(task("requested", json!({}))), task("accepted", json!({})), Some(OWNER), &[]);
        check(
            Some(task("in-progress", json!({}))),
            task("completed", json!({"output": [{"type": {"text": "call"}, "valueString": "done"}]})),
            Some(OWNER),
            &[],
        );
        check(
            Some(task("accepted", json!({}))),
            task("cancelled", json!({"statusReason": reason("no longer needed")})),
            Some(REQUESTER),
            &[],
        );
        // No identity: the state machine still applies, the roles do not.
        check(Some(task("requested", json!({}))), task("in-progress", json!({"priority": "urgent"})), None, &[]);
    }

    #[test]
    fn refused_transitions_name_the_status() {
        check(
            Some(task("in-progress", json!({}))),
            task("requested", json!({})),
            None,
            &[("Task.status", IssueCode::BusinessRule)],
        );
        check(None, task("completed", json!({})), None, &[("Task.status", IssueCode::BusinessRule)]);
        check(
            Some(task("completed", json!({}))),
            task("ready", json!({})),
            Some(REQUESTER),
            &[("Task.status", IssueCode::BusinessRule)],
        );
        check_with(
            Some(task("completed", json!({}))),
            task("ready", json!({})),
            Some(REQUESTER),
            WorkflowPolicy { allow_reopen_terminal: true, strict_create: true },
            &[],
        );
    }

    #[test]
    fn a_missing_or_unknown_status_is_reported_alone() {
        check(None, task("requested", json!({"status": null})), None, &[("Task.status", IssueCode::Required)]);
        check(None, task("bogus", json!({})), None, &[("Task.status", IssueCode::CodeInvalid)]);
    }

    #[test]
    fn some_statuses_need_a_reason() {
        let ready = || Some(task("in-progress", json!({})));
        check(ready(), task("on-hold", json!({})), Some(OWNER), &[("Task.statusReason.text", IssueCode::BusinessRule)]);
        check(
            ready(),
            task("failed", json!({"statusReason": reason(" ")})),
            Some(OWNER),
            &[("Task.statusReason.text", IssueCode::BusinessRule)],
        );
        check(ready(), task("failed", json!({"statusReason": reason("no transport")})), Some(OWNER), &[]);
        check(
            Some(task("requested", json!({}))),
            task("rejected", json!({"statusReason": {"coding": [{"code": "busy"}]}})),
            Some(OWNER),
            &[("Task.statusReason.text", IssueCode::BusinessRule)],
        );
        // Editing a cancelled Task does not get around it either.
        check(
            Some(task("cancelled", json!({}))),
            task("cancelled", json!({"note": [{"text": "x"}]})),
            None,
            &[("Task.statusReason.text", IssueCode::BusinessRule)],
        );
    }

    #[test]
    fn subject_requester_plan_and_parent_are_immutable() {
        let before = || Some(task("requested", json!({})));
        check(
            before(),
            task("requested", json!({"for": {"reference": "Patient/p2"}, "partOf": [{"reference": "Task/t0"}]})),
            None,
            &[("Task.for", IssueCode::BusinessRule), ("Task.partOf", IssueCode::BusinessRule)],
        );
        check(
            before(),
            task("requested", json!({"requester": null, "basedOn": [{"reference": "CarePlan/cp2"}]})),
            Some(REQUESTER),
            &[("Task.requester", IssueCode::BusinessRule), ("Task.basedOn", IssueCode::BusinessRule)],
        );
    }

    #[test]
    fn only_the_requester_creates_and_only_the_owner_moves_forward() {
        check(None, task("requested", json!({})), Some(OWNER), &[("Task.status", IssueCode::Forbidden)]);
        check(None, task("requested", json!({})), Some("Practitioner/other"), &[("Task.status", IssueCode::Forbidden)]);
        check(
            Some(task("requested", json!({}))),
            task("accepted", json!({})),
            Some(REQUESTER),
            &[("Task.status", IssueCode::Forbidden)],
        );
        check(
            Some(task("draft", json!({}))),
            task("ready", json!({})),
            Some(OWNER),
            &[("Task.status", IssueCode::Forbidden)],
        );
        check(
            Some(task("in-progress", json!({}))),
            task("completed", json!({})),
            Some("Practitioner/other"),
            &[("Task.status", IssueCode::Forbidden)],
        );
        // An actor who is neither may not even edit a note.
        check(
            Some(task("in-progress", json!({}))),
            task("in-progress", json!({"note": [{"text": "x"}]})),
            Some("Practitioner/other"),
            &[("", IssueCode::Forbidden)],
        );
    }

    #[test]
    fn a_task_without_an_owner_may_be_claimed() {
        let open = || Some(task("requested", json!({"owner": null})));
        let me = "Practitioner/nurse";
        check(open(), task("accepted", json!({"owner": {"reference": me}})), Some(me), &[]);
        check(open(), task("received", json!({"owner": {"reference": me}})), Some(me), &[]);
        // Claiming needs a move to received, accepted or in-progress, and the actor as owner.
        check(open(), task("requested", json!({"owner": {"reference": me}})), Some(me), &[("", IssueCode::Forbidden)]);
        check(
            open(),
            task("accepted", json!({"owner": {"reference": "Practitioner/x"}})),
            Some(me),
            &[("Task.status", IssueCode::Forbidden)],
        );
        // Once owned, the Task is the owner's: another actor cannot take it over.
        check(
            Some(task("requested", json!({}))),
            task("accepted", json!({"owner": {"reference": me}})),
            Some(me),
            &[("Task.status", IssueCode::Forbidden)],
        );
    }

    #[test]
    fn an_owner_changes_only_the_owner_elements() {
        let before = || Some(task("in-progress", json!({"description": "call the family"})));
        check(
            before(),
            task(
                "in-progress",
                json!({
                    "note": [{"text": "left a message"}], "businessStatus": {"text": "waiting"},
                    "lastModified": "2026-03-04T10:00:00Z", "owner": {"reference": "Practitioner/colleague"},
                    "meta": {"versionId": "7"}, "text": {"status": "generated", "div": "<div>x</div>"},
                    "description": "call the family"
                }),
            ),
            Some(OWNER),
            &[],
        );
        check(
            before(),
            task("in-progress", json!({"description": "call later", "priority": "urgent", "intent": "plan"})),
            Some(OWNER),
            &[
                ("Task.description", IssueCode::Forbidden),
                ("Task.intent", IssueCode::Forbidden),
                ("Task.priority", IssueCode::Forbidden),
            ],
        );
        // Removing an element is a change too; the requester may do it.
        check(
            before(),
            task("in-progress", json!({"description": null})),
            Some(OWNER),
            &[("Task.description", IssueCode::Forbidden)],
        );
        check(before(), task("in-progress", json!({"description": null})), Some(REQUESTER), &[]);
        // The requester who is also the owner is not restricted.
        let mine = json!({"owner": {"reference": REQUESTER}});
        check(
            Some(task("in-progress", mine.clone())),
            task("completed", json!({"owner": {"reference": REQUESTER}, "priority": "asap"})),
            Some(REQUESTER),
            &[],
        );
    }

    #[test]
    fn an_owner_does_not_set_the_execution_period_when_accepting_an_order() {
        let period = json!({"executionPeriod": {"start": "2026-03-04"}});
        check(
            Some(task("requested", json!({}))),
            task("accepted", period.clone()),
            Some(OWNER),
            &[("Task.executionPeriod", IssueCode::Forbidden)],
        );
        check(Some(task("accepted", json!({}))), task("in-progress", period.clone()), Some(OWNER), &[]);
        let plan = json!({"intent": "plan", "executionPeriod": {"start": "2026-03-04"}});
        check(Some(task("requested", json!({"intent": "plan"}))), task("accepted", plan), Some(OWNER), &[]);
    }

    #[test]
    fn a_held_task_resumes_to_the_state_it_was_in() {
        let held = |was: &str| {
            task(
                "on-hold",
                json!({
                    "statusReason": reason("waiting for insurance"),
                    "meta": {"extension": [{"url": RESUME_STATUS_URL, "valueCode": was}]}
                }),
            )
        };
        check(Some(held("ready")), task("ready", json!({})), Some(OWNER), &[]);
        check(
            Some(held("ready")),
            task("in-progress", json!({})),
            Some(OWNER),
            &[("Task.status", IssueCode::BusinessRule)],
        );
        check(Some(held("in-progress")), task("in-progress", json!({})), Some(REQUESTER), &[]);
        // The client cannot forge the memory: it is read from the stored version only.
        let forged = json!({"meta": {"extension": [{"url": RESUME_STATUS_URL, "valueCode": "in-progress"}]}});
        check(
            Some(held("ready")),
            task("in-progress", forged),
            Some(OWNER),
            &[("Task.status", IssueCode::BusinessRule)],
        );
    }
}
