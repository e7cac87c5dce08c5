//! The built-in SubscriptionTopics: what can be subscribed to, which change of which resource
//! fires each topic, and by which search parameters a subscription may filter it
//! (http://hl7.org/fhir/uv/subscriptions-backport/, topics in the R4B `SubscriptionTopic` shape).

use serde_json::{json, Value};

use crate::resource::ResourceType;
use crate::search::params;
use crate::worklist;

/// Where the canonical URLs of the built-in topics live: `{TOPIC_BASE}/{id}`.
pub const TOPIC_BASE: &str = "http://careplan.example/fhir/SubscriptionTopic";

/// What change of the resource fires a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Any create, update or delete.
    AnyChange,
    /// A Task gains an owner, or its owner changes.
    TaskAssigned,
    /// A Task's status moves to accepted, rejected, completed or failed.
    TaskOutcome,
    /// A Task gains the overdue `businessStatus` (the overdue job sets it).
    TaskOverdue,
    /// A CareTeam's participants change (someone joins, leaves or their period changes).
    Membership,
}

/// One built-in topic.
#[derive(Debug, Clone, Copy)]
pub struct Topic {
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub resource: ResourceType,
    pub trigger: Trigger,
    /// The search parameters of `resource` a subscription may filter by (canFilterBy).
    pub filters: &'static [&'static str],
}

const TASK_FILTERS: &[&str] = &["patient", "owner", "requester", "status", "code", "business-status", "based-on"];
const CAREPLAN_FILTERS: &[&str] = &["patient", "status", "category", "intent", "care-team"];
const CARETEAM_FILTERS: &[&str] = &["patient", "status", "category", "participant"];

/// Statuses that end or settle a Task's assignment, for `Trigger::TaskOutcome`.
pub const OUTCOME_STATUSES: [&str; 4] = ["accepted", "rejected", "completed", "failed"];

/// Every topic this server offers.
pub static TOPICS: &[Topic] = &[
    Topic {
        id: "careplan-change",
        title: "CarePlan created, updated or deleted",
        description: "Any create, update or delete of a CarePlan.",
        resource: ResourceType::CarePlan,
        trigger: Trigger::AnyChange,
        filters: CAREPLAN_FILTERS,
    },
    Topic {
        id: "careteam-change",
        title: "CareTeam created, updated or deleted",
        description: "Any create, update or delete of a CareTeam.",
        resource: ResourceType::CareTeam,
        trigger: Trigger::AnyChange,
        filters: CARETEAM_FILTERS,
    },
    Topic {
        id: "task-change",
        title: "Task created, updated or deleted",
        description: "Any create, update or delete of a Task.",
        resource: ResourceType::Task,
        trigger: Trigger::AnyChange,
        filters: TASK_FILTERS,
    },
    Topic {
        id: "task-assigned",
        title: "Task assigned to an owner",
        description: "A Task is created with an owner, or its owner changes.",
        resource: ResourceType::Task,
        trigger: Trigger::TaskAssigned,
        filters: TASK_FILTERS,
    },
    Topic {
        id: "task-outcome",
        title: "Task accepted, rejected, completed or failed",
        description: "A Task's status becomes accepted, rejected, completed or failed.",
        resource: ResourceType::Task,
        trigger: Trigger::TaskOutcome,
        filters: TASK_FILTERS,
    },
    Topic {
        id: "task-overdue",
        title: "Task gone overdue",
        description: "An open Task passed its due date: the overdue job set its businessStatus to overdue.",
        resource: ResourceType::Task,
        trigger: Trigger::TaskOverdue,
        filters: TASK_FILTERS,
    },
    Topic {
        id: "careteam-membership",
        title: "CareTeam membership changed",
        description: "A CareTeam's participants change: a member joins or leaves, or a participation period changes.",
        resource: ResourceType::CareTeam,
        trigger: Trigger::Membership,
        filters: CARETEAM_FILTERS,
    },
];

impl Topic {
    /// The canonical URL subscriptions name in `Subscription.criteria`.
    pub fn url(&self) -> String {
        format!("{TOPIC_BASE}/{}", self.id)
    }

    /// The topic named by `canonical` (a `|version` suffix is ignored).
    pub fn by_url(canonical: &str) -> Option<&'static Topic> {
        let url = canonical.split('|').next().unwrap_or(canonical);
        let id = url.strip_prefix(TOPIC_BASE)?.strip_prefix('/')?;
        Self::by_id(id)
    }

    pub fn by_id(id: &str) -> Option<&'static Topic> {
        TOPICS.iter().find(|t| t.id == id)
    }

    /// Whether the change from `before` to `after` (`None`: did not exist / was deleted) of a
    /// resource of this topic's type fires it.
    pub fn fires(&self, before: Option<&Value>, after: Option<&Value>) -> bool {
        match self.trigger {
            Trigger::AnyChange => before.is_some() || after.is_some(),
            Trigger::TaskAssigned => {
                let owner =
                    |v: Option<&Value>| v.and_then(|v| v.get("owner")).and_then(|o| o.get("reference")).cloned();
                let now = owner(after);
                now.is_some() && now != owner(before)
            }
            Trigger::TaskOutcome => {
                fn status(v: Option<&Value>) -> Option<&str> {
                    v?.get("status")?.as_str()
                }
                let now = status(after);
                now.is_some_and(|s| OUTCOME_STATUSES.contains(&s)) && now != status(before)
            }
            Trigger::TaskOverdue => {
                let overdue = |v: Option<&Value>| v.is_some_and(|v| worklist::Due::of(v).marked);
                overdue(after) && !overdue(before)
            }
            Trigger::Membership => {
                let members = |v: Option<&Value>| v.and_then(|v| v.get("participant")).cloned();
                after.is_some() && members(after) != members(before) && (before.is_some() || members(after).is_some())
            }
        }
    }

    /// The topic as an R4B SubscriptionTopic (http://hl7.org/fhir/R4B/subscriptiontopic.html),
    /// which the Backport IG lets an R4 server publish as is for clients to read.
    pub fn resource(&self) -> Value {
        let ty = self.resource.as_str();
        let interactions: &[&str] = match self.trigger {
            Trigger::AnyChange => &["create", "update", "delete"],
            Trigger::TaskAssigned => &["create", "update"],
            Trigger::TaskOutcome | Trigger::TaskOverdue | Trigger::Membership => &["update", "create"],
        };
        let can_filter_by: Vec<Value> = self
            .filters
            .iter()
            .filter_map(|name| params::find(self.resource, name))
            .map(|p| {
                json!({
                    "description": p.description,
                    "resource": ty,
                    "filterParameter": p.name,
                    "filterDefinition": p.definition(self.resource),
                })
            })
            .collect();
        json!({
            "resourceType": "SubscriptionTopic",
            "id": self.id,
            "url": self.url(),
            "version": env!("CARGO_PKG_VERSION"),
            "title": self.title,
            "status": "active",
            "description": self.description,
            "resourceTrigger": [{
                "description": self.description,
                "resource": ty,
                "supportedInteraction": interactions,
                "fhirPathCriteria": self.fhirpath(),
            }],
            "canFilterBy": can_filter_by,
            "notificationShape": [{
                "resource": ty,
            }],
        })
    }

    /// The trigger as FHIRPath over `%previous` and `%current`.
    fn fhirpath(&self) -> &'static str {
        match self.trigger {
            Trigger::AnyChange => "true",
            Trigger::TaskAssigned => {
                "%current.owner.exists() and (%previous.empty() or %previous.owner.reference != %current.owner.reference)"
            }
            Trigger::TaskOutcome => {
                "%current.status in ('accepted' | 'rejected' | 'completed' | 'failed') and \
                 (%previous.empty() or %previous.status != %current.status)"
            }
            Trigger::TaskOverdue => {
                "%current.businessStatus.coding.where(system = \
                 'http://careplan.example/fhir/CodeSystem/task-business-status' and code = 'overdue').exists() and \
                 (%previous.empty() or %previous.businessStatus.coding.where(code = 'overdue').empty())"
            }
            Trigger::Membership => "%previous.participant != %current.participant",
        }
    }
}

/// The topics a change of a `ty` resource fires.
pub fn fired(ty: ResourceType, before: Option<&Value>, after: Option<&Value>) -> Vec<&'static Topic> {
    TOPICS.iter().filter(|t| t.resource == ty && t.fires(before, after)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ty: ResourceType, before: Option<Value>, after: Option<Value>) -> Vec<&'static str> {
        fired(ty, before.as_ref(), after.as_ref()).iter().map(|t| t.id).collect()
    }

    #[test]
    fn changes_fire_their_topics() {
        let task = |status: &str, owner: Option<&str>| {
            let mut t = json!({"resourceType": "Task", "status": status, "intent": "order"});
            if let Some(owner) = owner {
                t["owner"] = json!({"reference": owner});
            }
            t
        };
        assert_eq!(ids(ResourceType::Task, None, Some(task("requested", None))), ["task-change"]);
        assert_eq!(
            ids(ResourceType::Task, None, Some(task("requested", Some("Practitioner/a")))),
            ["task-change", "task-assigned"]
        );
        assert_eq!(
            ids(
                ResourceType::Task,
                Some(task("requested", Some("Practitioner/a"))),
                Some(task("accepted", Some("Practitioner/a")))
            ),
            ["task-change", "task-outcome"]
        );
        assert_eq!(ids(ResourceType::Task, Some(task("requested", None)), None), ["task-change"]);
        let overdue = json!({"resourceType": "Task", "status": "requested", "intent": "order", "businessStatus":
            {"coding": [{"system": "http://careplan.example/fhir/CodeSystem/task-business-status", "code": "overdue"}]}});
        assert_eq!(
            ids(ResourceType::Task, Some(task("requested", None)), Some(overdue.clone())),
            ["task-change", "task-overdue"]
        );
        assert_eq!(ids(ResourceType::Task, Some(overdue.clone()), Some(overdue)), ["task-change"]);
        let team = |members: &[&str]| {
            json!({"resourceType": "CareTeam", "participant":
                members.iter().map(|m| json!({"member": {"reference": m}})).collect::<Vec<_>>()})
        };
        assert_eq!(
            ids(
                ResourceType::CareTeam,
                Some(team(&["Practitioner/a"])),
                Some(team(&["Practitioner/a", "Practitioner/b"]))
            ),
            ["careteam-change", "careteam-membership"]
        );
        assert_eq!(
            ids(ResourceType::CareTeam, Some(team(&["Practitioner/a"])), Some(team(&["Practitioner/a"]))),
            ["careteam-change"]
        );
    }

    #[test]
    fn every_filter_is_a_search_parameter_of_the_topic_type() {
        for topic in TOPICS {
            for name in topic.filters {
                assert!(params::find(topic.resource, name).is_some(), "{}: {name}", topic.id);
            }
            assert_eq!(Topic::by_url(&topic.url()).map(|t| t.id), Some(topic.id));
        }
    }
}
