//! What is allowed: the FHIR resource types this service holds, the rules a resource must pass
//! before it is stored, and the exact-text handling that keeps what a client sent.
//!
//! Pure by design: no IO, no async, no HTTP and no SQL live here (see ARCHITECTURE.md).

pub mod activitydefinition;
pub mod audit;
pub mod careplan;
pub mod careteam;
pub mod elements;
pub mod goal;
pub mod id;
pub mod ingest;
pub mod instant;
pub mod interaction;
pub mod issue;
pub mod json_text;
pub mod patch;
pub mod plan_apply;
pub mod plan_summary;
pub mod plandefinition;
pub mod provenance;
pub mod references;
pub mod resource;
pub mod search;
pub mod smart;
pub mod stored;
pub mod subscriptions;
pub mod summary;
pub mod task;
pub mod text;
pub mod workflow;
pub mod worklist;

#[cfg(test)]
mod fuzz;

pub use activitydefinition::ActivityDefinition;
pub use careplan::CarePlan;
pub use careteam::CareTeam;
pub use goal::Goal;
pub use ingest::{ingest, ingest_as, IngestMode};
pub use interaction::Interaction;
pub use issue::{Issue, IssueCode, Severity};
pub use patch::{fhirpath_patch, json_patch};
pub use plandefinition::PlanDefinition;
pub use provenance::Provenance;
pub use resource::{Change, Descriptor, Docs, Link, Resource, ResourceType, Rules};
pub use stored::{subset, with_member, Prepared, VersionMeta};
pub use subscriptions::Subscription;
pub use task::Task;
pub use workflow::{
    cascade, check_task_change, decide, follow_work, task_to_store, Actor, HoldMemory, MembershipEvent, ParentChange,
    ParentMove, Previous, Refusal, Role, TaskStatus, Work, WorkflowPolicy,
};
