//! Care team membership follows the work (reference §5.1, issue 5 item 4, after the Shared Care
//! Planning guide): an owner who agrees to a Task on a plan joins the plan's CareTeam from that
//! date; when the owner's last open Task on the plan ends, the participation's `period.end` is
//! set. Participants are never removed (reference §1.6, §1.9): history is a period, not a delete.

use serde_json::{json, Map, Value};

use crate::search::dates;

use super::{reference, TaskStatus};

/// What happened to an owner's work on a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipEvent {
    /// The owner accepted or started a Task on the plan (`starts_work`).
    OwnerStartedWork,
    /// The owner's last open Task on the plan ended (`ends_work`, and no other Task on the plan
    /// owned by the same actor `keeps_owner_on_team`: the caller's query).
    OwnerFinishedLastTask,
}

/// The owner's side of the work: who, since or until when (a FHIR dateTime), and the role to
/// give a new participant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work<'a> {
    /// The owner's reference, as in `Task.owner.reference`.
    pub owner: &'a str,
    /// When the work started or ended: the new `period.start` or `period.end`.
    pub at: &'a str,
    /// `CareTeam.participant.role` for a new participant. The owner's function on the team is not
    /// one of the fixed roles of reference §2.1, so it is the Task's `performerType` (bound to the
    /// same care-team roles), or none: the role is 0..* in R4 (US Core's 1..1 then needs the
    /// requester to set `performerType`).
    pub role: Option<&'a Value>,
}

impl<'a> Work<'a> {
    /// The work of `task`'s owner, with its first `performerType` as role; `None` without owner.
    pub fn of_task(task: &'a Value, at: &'a str) -> Option<Self> {
        let owner = reference(task, "owner")?;
        let role = task.get("performerType").and_then(|types| types.get(0));
        Some(Self { owner, at, role })
    }
}

/// Whether a status change makes the owner start work on the plan: the Task reaches accepted,
/// in-progress or on-hold from elsewhere (reference §5.1; a Task only ever ready does not).
/// A change of owner while the Task stays in such a status is the old owner ending and the new
/// owner starting: the caller compares owners.
pub fn starts_work(previous: Option<TaskStatus>, next: TaskStatus) -> bool {
    next.keeps_owner_on_team() && !previous.is_some_and(TaskStatus::keeps_owner_on_team)
}

/// Whether a status change ends the owner's work on this Task: it leaves accepted, in-progress
/// or on-hold (completed, failed, cancelled, or back to ready for reassignment).
pub fn ends_work(previous: Option<TaskStatus>, next: TaskStatus) -> bool {
    previous.is_some_and(TaskStatus::keeps_owner_on_team) && !next.keeps_owner_on_team()
}

/// The CareTeam to write after `event`, or `None` when it does not change.
///
/// - `OwnerStartedWork`: unless the owner is a current participant (no `period.end`, or one not
///   before `work.at`), add `{role, member: {reference}, period: {start}}`. An ended
///   participation is history: the owner gets a new one rather than a reopened one.
/// - `OwnerFinishedLastTask`: set `period.end` to `work.at` on the owner's open participations.
pub fn follow_work(care_team: &Value, work: &Work<'_>, event: MembershipEvent) -> Option<Value> {
    let mut team = care_team.clone();
    let participants = team.as_object_mut()?.entry("participant").or_insert_with(|| json!([])).as_array_mut()?;
    let mine = |p: &Value| p.get("member").and_then(|m| m.get("reference")).and_then(Value::as_str) == Some(work.owner);
    match event {
        MembershipEvent::OwnerStartedWork => {
            if participants.iter().any(|p| mine(p) && is_current(p, work.at)) {
                return None;
            }
            participants.push(participant(work));
        }
        MembershipEvent::OwnerFinishedLastTask => {
            let open: Vec<&mut Value> = participants.iter_mut().filter(|p| mine(p) && end(p).is_none()).collect();
            if open.is_empty() {
                return None;
            }
            for participation in open {
                end_participation(participation, work.at);
            }
        }
    }
    Some(team)
}

fn participant(work: &Work<'_>) -> Value {
    let mut participant = Map::new();
    if let Some(role) = work.role {
        participant.insert("role".into(), json!([role]));
    }
    participant.insert("member".into(), json!({ "reference": work.owner }));
    participant.insert("period".into(), json!({ "start": work.at }));
    Value::Object(participant)
}

fn end(participant: &Value) -> Option<&str> {
    participant.get("period")?.get("end")?.as_str()
}

/// Current at `at`: no end, or an end not before `at` (compared as ranges, so `2026-03-04` is
/// current all that day). An end that is not a dateTime counts as past.
fn is_current(participant: &Value, at: &str) -> bool {
    match end(participant) {
        None => true,
        Some(end) => dates::range(end).zip(dates::range(at)).is_some_and(|((_, end), (at, _))| end >= at),
    }
}

fn end_participation(participant: &mut Value, at: &str) {
    let Some(participant) = participant.as_object_mut() else { return };
    let period = participant.entry("period").or_insert_with(|| json!({}));
    if let Some(period) = period.as_object_mut() {
        period.insert("end".into(), json!(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NURSE: &str = "Practitioner/nurse";
    const AT: &str = "2026-03-04T10:00:00Z";

    fn team(participants: Value) -> Value {
        json!({"resourceType": "CareTeam", "id": "ct1", "subject": {"reference": "Patient/p1"}, "participant": participants})
    }

    fn check(before: Value, event: MembershipEvent, role: Option<Value>, expect: Option<Value>) {
        let work = Work { owner: NURSE, at: AT, role: role.as_ref() };
        assert_eq!(follow_work(&before, &work, event), expect);
    }

    #[test]
    fn an_owner_who_starts_work_joins_the_team() {
        let parent = json!({"member": {"reference": "RelatedPerson/mother"}});
        let nurse = json!({"member": {"reference": NURSE}, "period": {"start": AT}});
        check(team(json!([parent])), MembershipEvent::OwnerStartedWork, None, Some(team(json!([parent, nurse]))));
        let role = json!({"coding": [{"system": "http://snomed.info/sct", "code": "224535009"}]});
        let with_role = json!({"role": [role], "member": {"reference": NURSE}, "period": {"start": AT}});
        check(
            json!({"resourceType": "CareTeam"}),
            MembershipEvent::OwnerStartedWork,
            Some(role.clone()),
            Some(json!({"resourceType": "CareTeam", "participant": [with_role]})),
        );
    }

    #[test]
    fn a_current_participant_is_not_added_again() {
        let open = json!({"member": {"reference": NURSE}, "period": {"start": "2026-01-01"}});
        check(team(json!([open])), MembershipEvent::OwnerStartedWork, None, None);
        let until_later = json!({"member": {"reference": NURSE}, "period": {"end": "2026-03-04"}});
        check(team(json!([until_later])), MembershipEvent::OwnerStartedWork, None, None);
    }

    #[test]
    fn an_ended_participation_stays_and_a_new_one_starts() {
        let ended = json!({"member": {"reference": NURSE}, "period": {"start": "2025-01-01", "end": "2025-06-30"}});
        let new = json!({"member": {"reference": NURSE}, "period": {"start": AT}});
        check(team(json!([ended])), MembershipEvent::OwnerStartedWork, None, Some(team(json!([ended, new]))));
    }

    #[test]
    fn finishing_the_last_task_ends_the_open_participation() {
        let ended = json!({"member": {"reference": NURSE}, "period": {"start": "2025-01-01", "end": "2025-06-30"}});
        let open = json!({"member": {"reference": NURSE}, "period": {"start": "2026-01-01"}});
        let closed = json!({"member": {"reference": NURSE}, "period": {"start": "2026-01-01", "end": AT}});
        let other = json!({"member": {"reference": "Practitioner/other"}});
        check(
            team(json!([ended, open, other])),
            MembershipEvent::OwnerFinishedLastTask,
            None,
            Some(team(json!([ended, closed, other]))),
        );
        let no_period = json!({"member": {"reference": NURSE}});
        let closed = json!({"member": {"reference": NURSE}, "period": {"end": AT}});
        check(team(json!([no_period])), MembershipEvent::OwnerFinishedLastTask, None, Some(team(json!([closed]))));
    }

    #[test]
    fn finishing_without_an_open_participation_changes_nothing() {
        let ended = json!({"member": {"reference": NURSE}, "period": {"end": "2025-06-30"}});
        check(team(json!([ended])), MembershipEvent::OwnerFinishedLastTask, None, None);
        check(team(json!([])), MembershipEvent::OwnerFinishedLastTask, None, None);
    }

    #[test]
    fn work_starts_on_acceptance_and_ends_when_the_task_leaves_it() {
        use TaskStatus::*;
        assert!(starts_work(Some(Requested), Accepted));
        assert!(starts_work(Some(Ready), InProgress));
        assert!(starts_work(None, Accepted));
        assert!(!starts_work(Some(Accepted), InProgress));
        assert!(!starts_work(Some(Requested), Ready));
        assert!(ends_work(Some(InProgress), Completed));
        assert!(ends_work(Some(OnHold), Cancelled));
        assert!(ends_work(Some(InProgress), Ready));
        assert!(!ends_work(Some(Requested), Rejected));
        assert!(!ends_work(Some(InProgress), OnHold));
    }

    #[test]
    fn the_work_of_a_task_is_its_owner_and_performer_type() {
        let task = json!({"owner": {"reference": NURSE}, "performerType": [{"text": "nurse"}, {"text": "x"}]});
        let work = Work::of_task(&task, AT);
        assert_eq!(work.map(|w| (w.owner, w.role.cloned())), Some((NURSE, Some(json!({"text": "nurse"})))));
        assert_eq!(Work::of_task(&json!({}), AT), None);
    }
}
