//! What is allowed: the FHIR resource types this service holds, the rules a resource must pass
//! before it is stored, and the exact-text handling that keeps what a client sent.
//!
//! Pure by design: no IO, no async, no HTTP and no SQL live here (see ARCHITECTURE.md).

pub mod careplan;
pub mod careteam;
pub mod id;
pub mod ingest;
pub mod instant;
pub mod interaction;
pub mod issue;
pub mod json_text;
pub mod resource;
pub mod search;
pub mod stored;
pub mod summary;
pub mod task;

pub use careplan::CarePlan;
pub use careteam::CareTeam;
pub use ingest::{ingest, IngestMode};
pub use interaction::Interaction;
pub use issue::{Issue, IssueCode, Severity};
pub use resource::{Resource, ResourceType};
pub use stored::{subset, Prepared, VersionMeta};
pub use task::Task;
