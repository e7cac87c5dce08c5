//! The Task resource (http://hl7.org/fhir/R4/task.html): its model and rules.

use crate::resource::{Descriptor, Resource, ResourceType};

/// Marker for the FHIR Task resource type.
#[derive(Debug, Clone, Copy)]
pub struct Task;

impl Resource for Task {
    const TYPE: ResourceType = ResourceType::Task;
    type Model = fhir_sdk::r4b::resources::Task;
}

/// What the service knows of Task.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<Task>(
    "Task",
    crate::search::params::TASK,
    &crate::elements::TASK,
    "A task to be performed",
    r#"{
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "description": "Follow-up call after the clinic visit",
        "for": {
            "reference": "Patient/example"
        },
        "basedOn": [
            {
                "reference": "CarePlan/example"
            }
        ],
        "owner": {
            "reference": "Practitioner/example"
        }
    }"#,
    &[("owner", "Practitioner/example"), ("status", "requested,accepted,in-progress"), ("_sort", "-_lastUpdated")],
);
