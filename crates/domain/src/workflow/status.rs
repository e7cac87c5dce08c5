//! `TaskStatus`: the twelve codes of http://hl7.org/fhir/R4/valueset-task-status.html, parsed
//! once at the boundary so the workflow rules match on an enum, never on strings.

/// The status of a Task (system `http://hl7.org/fhir/task-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskStatus {
    Draft,
    Requested,
    Received,
    Accepted,
    Rejected,
    Ready,
    Cancelled,
    InProgress,
    OnHold,
    Failed,
    Completed,
    EnteredInError,
}

impl TaskStatus {
    /// The code system of the status codes.
    pub const SYSTEM: &'static str = "http://hl7.org/fhir/task-status";

    /// Every status, in the order of the R4 value set.
    pub const ALL: [TaskStatus; 12] = [
        TaskStatus::Draft,
        TaskStatus::Requested,
        TaskStatus::Received,
        TaskStatus::Accepted,
        TaskStatus::Rejected,
        TaskStatus::Ready,
        TaskStatus::Cancelled,
        TaskStatus::InProgress,
        TaskStatus::OnHold,
        TaskStatus::Failed,
        TaskStatus::Completed,
        TaskStatus::EnteredInError,
    ];

    /// The FHIR code, as in `Task.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Draft => "draft",
            TaskStatus::Requested => "requested",
            TaskStatus::Received => "received",
            TaskStatus::Accepted => "accepted",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Ready => "ready",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::InProgress => "in-progress",
            TaskStatus::OnHold => "on-hold",
            TaskStatus::Failed => "failed",
            TaskStatus::Completed => "completed",
            TaskStatus::EnteredInError => "entered-in-error",
        }
    }

    /// The status whose code is exactly `code`.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == code)
    }

    /// Open work: asked of someone and not finished. A draft is not yet asked of anyone, and the
    /// terminal statuses are done; only open Tasks can be overdue or sit on a worklist.
    pub const OPEN: [TaskStatus; 6] = [
        TaskStatus::Requested,
        TaskStatus::Received,
        TaskStatus::Accepted,
        TaskStatus::Ready,
        TaskStatus::InProgress,
        TaskStatus::OnHold,
    ];

    /// Whether work in this status is open (`OPEN`).
    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    /// Unfinished: every status but the terminal ones, so `OPEN` and `draft`. A plan or team that
    /// unfinished Tasks depend on is not deleted without a cascade, and an owner stays on a care
    /// team while they have unfinished Tasks on its plan.
    pub fn unfinished() -> impl Iterator<Item = TaskStatus> {
        Self::ALL.into_iter().filter(|s| !s.is_terminal())
    }

    /// Terminal states end the workflow: rejected, cancelled, failed, completed and
    /// entered-in-error (reference §1.7). They are final unless `WorkflowPolicy` allows reopening.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Rejected
                | TaskStatus::Cancelled
                | TaskStatus::Failed
                | TaskStatus::Completed
                | TaskStatus::EnteredInError
        )
    }

    /// Whether a Task in this status must explain itself in `statusReason.text` (reference §1.7,
    /// from the Gravity SDOH referral profile).
    pub fn needs_reason(self) -> bool {
        matches!(self, TaskStatus::Rejected | TaskStatus::Cancelled | TaskStatus::OnHold | TaskStatus::Failed)
    }

    /// Whether the owner of a Task in this status belongs on the plan's CareTeam: the owner has
    /// agreed to do the work and has not finished it (reference §5.1).
    pub fn keeps_owner_on_team(self) -> bool {
        matches!(self, TaskStatus::Accepted | TaskStatus::InProgress | TaskStatus::OnHold)
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_to_itself() {
        for status in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(TaskStatus::parse("In-Progress"), None);
        assert_eq!(TaskStatus::parse(""), None);
    }
}
