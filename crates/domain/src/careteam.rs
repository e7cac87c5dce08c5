//! The CareTeam resource (http://hl7.org/fhir/R4/careteam.html): its model and rules.

use crate::resource::{Resource, ResourceType};

/// Marker for the FHIR CareTeam resource type.
#[derive(Debug, Clone, Copy)]
pub struct CareTeam;

impl Resource for CareTeam {
    const TYPE: ResourceType = ResourceType::CareTeam;
    type Model = fhir_sdk::r4b::resources::CareTeam;
}
