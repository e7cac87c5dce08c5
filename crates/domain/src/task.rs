//! The Task resource (http://hl7.org/fhir/R4/task.html): its model and rules.

use crate::resource::{Resource, ResourceType};

/// Marker for the FHIR Task resource type.
#[derive(Debug, Clone, Copy)]
pub struct Task;

impl Resource for Task {
    const TYPE: ResourceType = ResourceType::Task;
    type Model = fhir_sdk::r4b::resources::Task;
}
