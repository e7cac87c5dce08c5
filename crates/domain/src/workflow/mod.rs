//! The care-coordination rules of the Task workflow (issue 5; reference §1.7, §1.9 and §5.1),
//! as pure functions over stored and sent Task JSON:
//!
//! - `status`: `TaskStatus`, the twelve R4 codes;
//! - `machine`: `decide`, the state machine of http://hl7.org/fhir/R4/task.html#statemachine;
//! - `change`: `check_task_change`, every rule about one Task write (transition, reason,
//!   immutable elements, who may change what);
//! - `hold`: the status an on-hold Task resumes to, remembered by the server in `meta.extension`;
//! - `cascade`: holding or resuming a Task holds or resumes the Tasks that are `partOf` it;
//! - `membership`: the plan's CareTeam follows the work of Task owners.
//!
//! JSON comes in because stored resources are the client's text, not models (ARCHITECTURE.md);
//! each function reads the few elements it needs into typed values at once.

mod cascade;
mod change;
mod hold;
mod machine;
mod membership;
mod status;

use serde_json::Value;

use crate::issue::{Issue, IssueCode};

pub use cascade::{cascade, ParentChange, ParentMove};
pub use change::{check_task_change, Actor, IMMUTABLE_ELEMENTS, OWNER_ELEMENTS, SERVER_ELEMENTS};
pub use hold::{hold_memory, resume_status, task_to_store, HoldMemory, RESUME_STATUS_URL};
pub use machine::{allowed_targets, decide, Previous, Refusal, RefusalKind, Role, WorkflowPolicy, WORKFLOW_ORDER};
pub use membership::{ends_work, follow_work, starts_work, MembershipEvent, Work};
pub use status::TaskStatus;

/// `Task.status`, typed; an issue if it is missing or not a status code.
fn status_of(task: &Value) -> Result<TaskStatus, Issue> {
    match task.get("status") {
        None => Err(Issue::error(IssueCode::Required, "Task.status", "Task.status is missing")),
        Some(code) => code.as_str().and_then(TaskStatus::parse).ok_or_else(|| {
            Issue::error(IssueCode::CodeInvalid, "Task.status", format!("Task.status {code} is not a task-status code"))
        }),
    }
}

/// The stored Task as the state machine sees it: status and, when on hold, the status to resume to.
fn previous_of(task: &Value) -> Result<Previous, Issue> {
    let status = status_of(task)?;
    let resume_to = if status == TaskStatus::OnHold { resume_status(task) } else { None };
    Ok(Previous { status, resume_to })
}

/// `element.reference` of a Reference element such as `Task.owner`.
fn reference<'a>(resource: &'a Value, element: &str) -> Option<&'a str> {
    resource.get(element)?.get("reference")?.as_str()
}
