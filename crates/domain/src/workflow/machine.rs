//! The Task state machine (http://hl7.org/fhir/R4/task.html#statemachine) as one pure decision,
//! `decide`: may a Task go from one status to another, for this role, under this policy?
//!
//! The matrix is the one of reference §1.7 (the union of R4, the Shared Care Planning
//! authorization table and Gravity's "Set By" column); the snapshot test in this module prints
//! it whole, so a change to the rules shows up as a change to the table.

use crate::issue::{Issue, IssueCode};

use super::TaskStatus;

/// Who the actor is with respect to the Task: the "R" and "O" of the matrix (reference §1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `Task.requester`: the placer or care coordinator.
    Requester,
    /// `Task.owner` (the performer), or a prospective owner claiming a Task that has none.
    Owner,
    /// Requester and owner at once: either's moves are allowed.
    Both,
    /// An identified actor who is neither requester nor owner: no move is allowed.
    Neither,
    /// No identity is known (no token, no header): the role is not checked.
    Unknown,
}

impl Role {
    /// The role of an identified actor, from whether it is the requester and the owner.
    pub fn of(is_requester: bool, is_owner: bool) -> Self {
        match (is_requester, is_owner) {
            (true, true) => Role::Both,
            (true, false) => Role::Requester,
            (false, true) => Role::Owner,
            (false, false) => Role::Neither,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Role::Requester => "the requester",
            Role::Owner => "the owner",
            Role::Both => "the requester and owner",
            Role::Neither => "an actor who is neither requester nor owner",
            Role::Unknown => "anyone",
        }
    }
}

/// What a deployment configures about the workflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkflowPolicy {
    /// Let the requester reopen a rejected, cancelled, failed or completed Task (to requested or
    /// ready). Off by default: "terminal states are final" (reference §1.7); R4 allows workflows
    /// to add "transitions from terminal states". entered-in-error stays final even so: such a
    /// Task "should never have existed".
    pub allow_reopen_terminal: bool,
    /// Hold creation to the matrix's first row (requested, ready or draft). Off by default: a
    /// shared plan takes in work that EHRs already track, in whatever status it has reached
    /// (the official R4 examples create Tasks in progress and completed); transitions after
    /// creation always follow the matrix.
    pub strict_create: bool,
}

/// The Task as stored before the change: its status and, when it is on hold, the status it
/// resumes to (see `hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    pub status: TaskStatus,
    pub resume_to: Option<TaskStatus>,
}

impl Previous {
    /// A Task on hold that remembers the status to resume to.
    pub fn on_hold(resume_to: TaskStatus) -> Self {
        Self { status: TaskStatus::OnHold, resume_to: Some(resume_to) }
    }

    /// The status a Task on hold resumes to: the remembered one, or in-progress (the matrix's
    /// own on-hold row) when nothing usable is remembered, as for a Task held before this
    /// service remembered it.
    pub fn resume_target(self) -> TaskStatus {
        match self.resume_to {
            Some(status) if !status.is_terminal() && status != TaskStatus::OnHold => status,
            _ => TaskStatus::InProgress,
        }
    }
}

impl From<TaskStatus> for Previous {
    fn from(status: TaskStatus) -> Self {
        Self { status, resume_to: None }
    }
}

/// Decide a status change: `previous` is the stored Task (`None` for a create), `to` the status
/// sent. Keeping the same status is not a transition and is always allowed here (an edit of
/// notes, say); who may edit which element is `check_task_change`'s concern.
///
/// Implements the matrix of reference §1.7 and http://hl7.org/fhir/R4/task.html#statemachine:
/// create in draft, requested or ready (by the requester); terminal states are final unless
/// `policy` allows reopening; a Task on hold resumes only to the status it was in.
pub fn decide(previous: Option<Previous>, to: TaskStatus, role: Role, policy: WorkflowPolicy) -> Result<(), Refusal> {
    if previous.is_some_and(|p| p.status == to) {
        return Ok(());
    }
    let setters = setters(previous, to, policy);
    if setters.admit(role) {
        return Ok(());
    }
    Err(Refusal {
        previous,
        to,
        role,
        kind: if setters == NOBODY {
            RefusalKind::NotATransition
        } else {
            RefusalKind::NotForRole { only: Role::of(setters.requester, setters.owner) }
        },
        allowed: allowed_targets(previous, role, policy),
    })
}

/// The statuses in workflow order, as the columns of the matrix in reference §1.7 (with draft
/// first): the order in which allowed targets are listed.
pub const WORKFLOW_ORDER: [TaskStatus; 12] = {
    use TaskStatus::*;
    [
        Draft,
        Requested,
        Received,
        Accepted,
        Rejected,
        Ready,
        InProgress,
        OnHold,
        Completed,
        Failed,
        Cancelled,
        EnteredInError,
    ]
};

/// Every status `role` may move a Task to from `previous`, in `WORKFLOW_ORDER`.
pub fn allowed_targets(previous: Option<Previous>, role: Role, policy: WorkflowPolicy) -> Vec<TaskStatus> {
    WORKFLOW_ORDER
        .into_iter()
        .filter(|&to| previous.is_none_or(|p| p.status != to) && setters(previous, to, policy).admit(role))
        .collect()
}

/// A refused status change: which one, why, and what would have been allowed instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub previous: Option<Previous>,
    pub to: TaskStatus,
    pub role: Role,
    pub kind: RefusalKind,
    /// The statuses the same role may move to from the same place.
    pub allowed: Vec<TaskStatus>,
}

/// Why a status change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Nobody may make this move (a `business-rule` issue).
    NotATransition,
    /// The move exists, but `only` another role may make it (a `forbidden` issue); `Both` means
    /// either the requester or the owner.
    NotForRole { only: Role },
}

impl Refusal {
    /// "in-progress → requested", as the diagnostics name the transition.
    pub fn transition(&self) -> String {
        format!("{} → {}", from_label(self.previous), self.to)
    }

    /// The refusal as an issue at `Task.status`.
    pub fn to_issue(&self) -> Issue {
        let code = match self.kind {
            RefusalKind::NotATransition => IssueCode::BusinessRule,
            RefusalKind::NotForRole { .. } => IssueCode::Forbidden,
        };
        Issue::error(code, "Task.status", self.to_string())
    }

    fn why(&self) -> String {
        let Some(previous) = self.previous else {
            return match self.kind {
                RefusalKind::NotATransition => "a Task is created as draft, requested or ready".into(),
                RefusalKind::NotForRole { .. } => "only the requester may create a Task".into(),
            };
        };
        match self.kind {
            RefusalKind::NotForRole { only: Role::Requester } => "only the requester may make this change".into(),
            RefusalKind::NotForRole { only: Role::Owner } => "only the owner may make this change".into(),
            RefusalKind::NotForRole { .. } => "only the requester or the owner may make this change".into(),
            RefusalKind::NotATransition if previous.status.is_terminal() => {
                format!("{} is a final state", previous.status)
            }
            RefusalKind::NotATransition if previous.status == TaskStatus::OnHold => {
                format!("a Task on hold resumes to the status it was in, {}", previous.resume_target())
            }
            RefusalKind::NotATransition => "the Task workflow has no such transition".into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not allowed: {}; ", self.transition(), self.why())?;
        let from = from_label(self.previous);
        if self.allowed.is_empty() {
            return write!(f, "{} may not change the status of a Task that is {from}", self.role.describe());
        }
        let allowed: Vec<&str> = self.allowed.iter().map(|s| s.as_str()).collect();
        write!(f, "from {from}, {} may move it to {}", self.role.describe(), allowed.join(", "))
    }
}

impl std::error::Error for Refusal {}

fn from_label(previous: Option<Previous>) -> &'static str {
    previous.map_or("(new)", |p| p.status.as_str())
}

/// Who may make a move: a cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setters {
    requester: bool,
    owner: bool,
}

const NOBODY: Setters = Setters { requester: false, owner: false };
const REQUESTER: Setters = Setters { requester: true, owner: false };
const OWNER: Setters = Setters { requester: false, owner: true };
const EITHER: Setters = Setters { requester: true, owner: true };

impl Setters {
    fn admit(self, role: Role) -> bool {
        match role {
            Role::Requester => self.requester,
            Role::Owner => self.owner,
            Role::Both | Role::Unknown => self.requester || self.owner,
            Role::Neither => false,
        }
    }
}

/// The cell of the matrix for a move to another status.
fn setters(previous: Option<Previous>, to: TaskStatus, policy: WorkflowPolicy) -> Setters {
    match previous {
        None => created(to),
        Some(p) if p.status.is_terminal() => reopened(p.status, to, policy),
        Some(p) if p.status == TaskStatus::OnHold && to == p.resume_target() => EITHER,
        Some(p) => moved(p.status, to),
    }
}

/// Row "(new)", plus "creating a Task directly in draft is also allowed, by R only".
fn created(to: TaskStatus) -> Setters {
    match to {
        TaskStatus::Draft | TaskStatus::Requested | TaskStatus::Ready => REQUESTER,
        _ => NOBODY,
    }
}

/// Terminal rows: empty unless the policy lets the requester reissue the Task.
fn reopened(from: TaskStatus, to: TaskStatus, policy: WorkflowPolicy) -> Setters {
    let reissue = matches!(to, TaskStatus::Requested | TaskStatus::Ready);
    if policy.allow_reopen_terminal && from != TaskStatus::EnteredInError && reissue {
        REQUESTER
    } else {
        NOBODY
    }
}

/// The non-terminal rows of the matrix of reference §1.7 (resuming from on-hold is `setters`').
fn moved(from: TaskStatus, to: TaskStatus) -> Setters {
    use TaskStatus::*;
    match (from, to) {
        (_, EnteredInError) => REQUESTER,
        (Draft, Requested | Ready | Cancelled) => REQUESTER,
        (Draft, _) => NOBODY,
        (_, Cancelled) => EITHER,
        (Requested, Received) => OWNER,
        (Requested | Received, Accepted | Rejected | InProgress | Completed) => OWNER,
        (Accepted, InProgress | Completed) => OWNER,
        (Ready, InProgress) => OWNER,
        (Ready | InProgress, OnHold) => EITHER,
        (InProgress, Ready | Completed | Failed) => OWNER,
        _ => NOBODY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    const FINAL: WorkflowPolicy = WorkflowPolicy { allow_reopen_terminal: false, strict_create: true };
    const REOPEN: WorkflowPolicy = WorkflowPolicy { allow_reopen_terminal: true, strict_create: true };

    /// `from` is a status code, "(new)", or "on-hold>X" for a Task on hold that resumes to X.
    fn check(from: &str, to: &str, role: Role, policy: WorkflowPolicy, expect: &str) {
        let previous = match from.split_once('>') {
            _ if from == "(new)" => None,
            Some((_, resume)) => Some(Previous::on_hold(status(resume))),
            None => Some(Previous::from(status(from))),
        };
        let got = match decide(previous, status(to), role, policy) {
            Ok(()) => "ok".to_string(),
            Err(refusal) => {
                let issue = refusal.to_issue();
                format!("{:?}: {}", issue.code, issue.diagnostics)
            }
        };
        assert_eq!(got, expect, "{from} → {to} as {role:?}");
    }

    fn status(code: &str) -> TaskStatus {
        TaskStatus::parse(code).unwrap_or_else(|| panic!("unknown status {code}"))
    }

    #[test]
    fn moves_in_the_matrix_are_allowed_for_their_role() {
        check("(new)", "requested", Role::Requester, FINAL, "ok");
        check("(new)", "draft", Role::Requester, FINAL, "ok");
        check("(new)", "ready", Role::Both, FINAL, "ok");
        check("draft", "ready", Role::Requester, FINAL, "ok");
        check("requested", "accepted", Role::Owner, FINAL, "ok");
        check("requested", "cancelled", Role::Owner, FINAL, "ok");
        check("requested", "cancelled", Role::Requester, FINAL, "ok");
        check("in-progress", "ready", Role::Owner, FINAL, "ok");
        check("in-progress", "on-hold", Role::Requester, FINAL, "ok");
        check("accepted", "entered-in-error", Role::Requester, FINAL, "ok");
        check("requested", "completed", Role::Unknown, FINAL, "ok");
    }

    #[test]
    fn keeping_the_status_is_not_a_transition() {
        check("completed", "completed", Role::Owner, FINAL, "ok");
        check("draft", "draft", Role::Neither, FINAL, "ok");
        check("on-hold>ready", "on-hold", Role::Owner, FINAL, "ok");
    }

    #[test]
    fn moves_outside_the_matrix_are_business_rule_refusals() {
        check(
            "in-progress",
            "requested",
            Role::Owner,
            FINAL,
            "BusinessRule: in-progress → requested is not allowed: the Task workflow has no such transition; \
             from in-progress, the owner may move it to ready, on-hold, completed, failed, cancelled",
        );
        check(
            "(new)",
            "in-progress",
            Role::Requester,
            FINAL,
            "BusinessRule: (new) → in-progress is not allowed: a Task is created as draft, requested or ready; \
             from (new), the requester may move it to draft, requested, ready",
        );
        check(
            "requested",
            "ready",
            Role::Unknown,
            FINAL,
            "BusinessRule: requested → ready is not allowed: the Task workflow has no such transition; \
             from requested, anyone may move it to received, accepted, rejected, in-progress, completed, \
             cancelled, entered-in-error",
        );
    }

    #[test]
    fn moves_for_the_other_role_are_forbidden() {
        check(
            "requested",
            "accepted",
            Role::Requester,
            FINAL,
            "Forbidden: requested → accepted is not allowed: only the owner may make this change; \
             from requested, the requester may move it to cancelled, entered-in-error",
        );
        check(
            "draft",
            "requested",
            Role::Owner,
            FINAL,
            "Forbidden: draft → requested is not allowed: only the requester may make this change; \
             the owner may not change the status of a Task that is draft",
        );
        check(
            "(new)",
            "requested",
            Role::Owner,
            FINAL,
            "Forbidden: (new) → requested is not allowed: only the requester may create a Task; \
             the owner may not change the status of a Task that is (new)",
        );
        check(
            "ready",
            "cancelled",
            Role::Neither,
            FINAL,
            "Forbidden: ready → cancelled is not allowed: only the requester or the owner may make this change; \
             an actor who is neither requester nor owner may not change the status of a Task that is ready",
        );
    }

    #[test]
    fn terminal_states_are_final_unless_the_policy_reopens_them() {
        check(
            "completed",
            "in-progress",
            Role::Both,
            FINAL,
            "BusinessRule: completed → in-progress is not allowed: completed is a final state; \
             the requester and owner may not change the status of a Task that is completed",
        );
        check("completed", "requested", Role::Requester, REOPEN, "ok");
        check("cancelled", "ready", Role::Requester, REOPEN, "ok");
        check(
            "failed",
            "requested",
            Role::Owner,
            REOPEN,
            "Forbidden: failed → requested is not allowed: only the requester may make this change; \
             the owner may not change the status of a Task that is failed",
        );
        check(
            "entered-in-error",
            "requested",
            Role::Requester,
            REOPEN,
            "BusinessRule: entered-in-error → requested is not allowed: entered-in-error is a final state; \
             the requester may not change the status of a Task that is entered-in-error",
        );
    }

    #[test]
    fn on_hold_resumes_only_to_the_previous_state() {
        check("on-hold>ready", "ready", Role::Requester, FINAL, "ok");
        check("on-hold>in-progress", "in-progress", Role::Owner, FINAL, "ok");
        check("on-hold>requested", "requested", Role::Owner, FINAL, "ok");
        check("on-hold>ready", "cancelled", Role::Owner, FINAL, "ok");
        check(
            "on-hold>ready",
            "in-progress",
            Role::Owner,
            FINAL,
            "BusinessRule: on-hold → in-progress is not allowed: a Task on hold resumes to the status it was in, \
             ready; from on-hold, the owner may move it to ready, cancelled",
        );
        // Nothing remembered: the matrix's own row, resume to in-progress.
        check("on-hold", "in-progress", Role::Owner, FINAL, "ok");
    }

    /// The whole matrix: rows are where a Task is, columns where it goes, cells who may move it.
    fn matrix(policy: WorkflowPolicy) -> String {
        let mut rows: Vec<(String, Option<Previous>)> = vec![("(new)".into(), None)];
        for from in WORKFLOW_ORDER {
            if from == OnHold {
                rows.push(("on-hold (nothing remembered)".into(), Some(from.into())));
                for resume in [Draft, Requested, Received, Accepted, Ready, InProgress] {
                    rows.push((format!("on-hold (was {resume})"), Some(Previous::on_hold(resume))));
                }
            } else {
                rows.push((from.to_string(), Some(from.into())));
            }
        }
        let width = |to: TaskStatus| to.as_str().len() + 2;
        let mut out = format!("{:<29}", "from \\ to");
        for to in WORKFLOW_ORDER {
            out.push_str(&format!("{:<w$}", to.as_str(), w = width(to)));
        }
        out.truncate(out.trim_end().len());
        for (label, previous) in rows {
            out.push_str(&format!("\n{label:<29}"));
            for to in WORKFLOW_ORDER {
                let cell = if previous.is_some_and(|p| p.status == to) {
                    "="
                } else {
                    let requester = decide(previous, to, Role::Requester, policy).is_ok();
                    let owner = decide(previous, to, Role::Owner, policy).is_ok();
                    match (requester, owner) {
                        (true, true) => "R,O",
                        (true, false) => "R",
                        (false, true) => "O",
                        (false, false) => "–",
                    }
                };
                out.push_str(&format!("{cell:<w$}", w = width(to)));
            }
            out.truncate(out.trim_end().len());
        }
        out
    }

    #[test]
    fn the_transition_matrix() {
        let legend = "R = requester, O = owner (current, or claiming a Task without one), \
                      = same status (not a transition), – = refused\n\
                      http://hl7.org/fhir/R4/task.html#statemachine; reference §1.7";
        let matrix = format!(
            "{legend}\n\nterminal states final (default):\n{}\n\nallow_reopen_terminal:\n{}\n",
            matrix(FINAL),
            matrix(REOPEN)
        );
        insta::assert_snapshot!(matrix);
    }
}
