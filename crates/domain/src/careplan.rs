//! The CarePlan resource (http://hl7.org/fhir/R4/careplan.html): its model and rules.

use crate::resource::{Resource, ResourceType};

/// Marker for the FHIR CarePlan resource type.
#[derive(Debug, Clone, Copy)]
pub struct CarePlan;

impl Resource for CarePlan {
    const TYPE: ResourceType = ResourceType::CarePlan;
    type Model = fhir_sdk::r4b::resources::CarePlan;
}
