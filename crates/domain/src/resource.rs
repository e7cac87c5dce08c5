//! The resource types this service holds and the `Resource` trait that the generic pipeline is
//! written against: adding a type means one `Resource` impl and one line in the route table.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::issue::Issue;

/// The closed set of resource types this service stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    CarePlan,
    CareTeam,
    Task,
    Provenance,
    Subscription,
}

impl ResourceType {
    /// Every type, in CapabilityStatement order.
    pub const ALL: [ResourceType; 5] = [
        ResourceType::CarePlan,
        ResourceType::CareTeam,
        ResourceType::Task,
        ResourceType::Provenance,
        ResourceType::Subscription,
    ];

    /// The FHIR name, as in URLs and `resourceType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::CarePlan => "CarePlan",
            ResourceType::CareTeam => "CareTeam",
            ResourceType::Task => "Task",
            ResourceType::Provenance => "Provenance",
            ResourceType::Subscription => "Subscription",
        }
    }

    /// The type named exactly `name`, if this service holds it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The base StructureDefinition canonical URL of the type.
    pub fn profile(self) -> String {
        format!("http://hl7.org/fhir/StructureDefinition/{}", self.as_str())
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A FHIR resource type held by this service, with its fhir-sdk model and the rules beyond
/// structure that a resource of the type must pass before it is stored.
pub trait Resource: 'static {
    /// The type this impl describes.
    const TYPE: ResourceType;

    /// The fhir-sdk (R4B; identical to R4 for these types) model used to check structure.
    type Model: DeserializeOwned + Serialize;

    /// Rules beyond what the model's structure enforces; findings are pushed onto `issues`.
    fn check(model: &Self::Model, issues: &mut Vec<Issue>) {
        let _ = (model, issues);
    }
}
