//! Cascade: "Suspending a task suspends all of its children … Resuming a task resumes all of its
//! children" (http://hl7.org/fhir/R4/task.html#statemachine; reference §1.7). Children are the
//! Tasks whose `partOf` points at the parent.
//!
//! The cascade is the server's own move, not a client's, so it is not subject to the matrix:
//! a child may go on hold from any open status (draft, requested, received, accepted, ready,
//! in-progress), and it remembers that status as any held Task does (`hold`).

use serde_json::{json, Value};

use super::hold::{resume_status, HoldMemory};
use super::machine::Previous;
use super::TaskStatus;

/// A parent Task's move that cascades to its children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentMove {
    /// The parent went on hold.
    Hold,
    /// The parent left hold for an open status.
    Resume,
}

impl ParentMove {
    /// The move a parent makes from `previous` to `next`, if it cascades. A held parent that is
    /// cancelled or completed does not resume its children: whether they end too is the
    /// requester's decision, not a rule.
    pub fn between(previous: TaskStatus, next: TaskStatus) -> Option<Self> {
        match (previous, next) {
            (TaskStatus::OnHold, TaskStatus::OnHold) => None,
            (_, TaskStatus::OnHold) => Some(ParentMove::Hold),
            (TaskStatus::OnHold, to) if !to.is_terminal() => Some(ParentMove::Resume),
            _ => None,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            ParentMove::Hold => "put on hold",
            ParentMove::Resume => "resumed",
        }
    }
}

/// A parent's move: which parent (its logical id), what move, and when (a FHIR dateTime, written
/// to the children's `lastModified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentChange<'a> {
    pub parent_id: &'a str,
    pub movement: ParentMove,
    pub at: &'a str,
}

/// The children to write, changed, for `change`; children the move does not affect are left out.
/// On hold: each open child not yet on hold goes on hold, remembering its status. On resume:
/// each child on hold goes back to its remembered status (R4: "resuming a task resumes all of
/// its children"). Each gets `statusReason.text` "Parent Task/{id} put on hold" or "… resumed"
/// and `lastModified`.
///
/// One level: each child written is itself a parent that moved, so the caller applies
/// `cascade` again to its children, within the same transaction.
pub fn cascade(change: &ParentChange<'_>, children: &[Value]) -> Vec<Value> {
    children.iter().filter_map(|child| cascade_one(change, child)).collect()
}

fn cascade_one(change: &ParentChange<'_>, child: &Value) -> Option<Value> {
    let status = child.get("status")?.as_str().and_then(TaskStatus::parse)?;
    let (to, memory) = match change.movement {
        ParentMove::Hold if !status.is_terminal() && status != TaskStatus::OnHold => {
            (TaskStatus::OnHold, HoldMemory::Remember(status))
        }
        ParentMove::Resume if status == TaskStatus::OnHold => {
            let held = Previous { status, resume_to: resume_status(child) };
            (held.resume_target(), HoldMemory::Forget)
        }
        _ => return None,
    };
    let mut next = child.clone();
    let task = next.as_object_mut()?;
    task.insert("status".into(), json!(to.as_str()));
    let reason = format!("Parent Task/{} {}", change.parent_id, change.movement.verb());
    task.insert("statusReason".into(), json!({ "text": reason }));
    task.insert("lastModified".into(), json!(change.at));
    memory.apply(&mut next);
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "2026-03-04T10:00:00Z";

    fn child(id: &str, status: &str, remembered: Option<TaskStatus>) -> Value {
        let mut task = json!({"resourceType": "Task", "id": id, "status": status, "intent": "order",
            "partOf": [{"reference": "Task/parent"}], "statusReason": {"text": "earlier"}});
        if let Some(was) = remembered {
            HoldMemory::Remember(was).apply(&mut task);
        }
        task
    }

    /// `expect`: per child written, "id: status (remembered) — reason".
    fn check(movement: ParentMove, children: &[Value], expect: &[&str]) {
        let change = ParentChange { parent_id: "parent", movement, at: AT };
        let got: Vec<String> = cascade(&change, children)
            .iter()
            .map(|c| {
                assert_eq!(c["lastModified"], AT);
                let memory = resume_status(c).map_or("-".into(), |s| s.to_string());
                format!(
                    "{}: {} ({memory}) — {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["status"].as_str().unwrap_or("?"),
                    c["statusReason"]["text"].as_str().unwrap_or("?")
                )
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn holding_a_parent_holds_its_open_children() {
        check(
            ParentMove::Hold,
            &[
                child("a", "in-progress", None),
                child("b", "requested", None),
                child("c", "completed", None),
                child("d", "on-hold", Some(TaskStatus::Ready)),
                child("e", "cancelled", None),
            ],
            &[
                "a: on-hold (in-progress) — Parent Task/parent put on hold",
                "b: on-hold (requested) — Parent Task/parent put on hold",
            ],
        );
    }

    #[test]
    fn resuming_a_parent_resumes_its_held_children_to_their_states() {
        check(
            ParentMove::Resume,
            &[
                child("a", "on-hold", Some(TaskStatus::InProgress)),
                child("b", "on-hold", Some(TaskStatus::Requested)),
                child("c", "on-hold", None),
                child("d", "ready", None),
                child("e", "failed", None),
            ],
            &[
                "a: in-progress (-) — Parent Task/parent resumed",
                "b: requested (-) — Parent Task/parent resumed",
                "c: in-progress (-) — Parent Task/parent resumed",
            ],
        );
    }

    #[test]
    fn only_hold_and_resume_cascade() {
        use TaskStatus::*;
        assert_eq!(ParentMove::between(InProgress, OnHold), Some(ParentMove::Hold));
        assert_eq!(ParentMove::between(OnHold, Ready), Some(ParentMove::Resume));
        assert_eq!(ParentMove::between(OnHold, OnHold), None);
        assert_eq!(ParentMove::between(OnHold, Cancelled), None);
        assert_eq!(ParentMove::between(InProgress, Completed), None);
    }
}
