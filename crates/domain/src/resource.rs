//! The resource types this service holds, the `Resource` trait that the generic pipeline is
//! written against, and the `Descriptor` that holds everything the service knows of a type.
//! Adding a type means a variant here, its module (model, rules and descriptor), its search
//! parameter table, `scripts/gen_elements.py` run again, and one line in the route table.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::elements::Elements;
use crate::ingest::IngestMode;
use crate::issue::Issue;
use crate::search::params::SearchParam;
use crate::stored::Prepared;

/// The closed set of resource types this service stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    CarePlan,
    CareTeam,
    Goal,
    Task,
    Provenance,
    Subscription,
    PlanDefinition,
    ActivityDefinition,
}

impl ResourceType {
    /// Every type, in CapabilityStatement order.
    pub const ALL: [ResourceType; 8] = [
        ResourceType::CarePlan,
        ResourceType::CareTeam,
        ResourceType::Goal,
        ResourceType::Task,
        ResourceType::Provenance,
        ResourceType::Subscription,
        ResourceType::PlanDefinition,
        ResourceType::ActivityDefinition,
    ];

    /// Everything this service knows of the type, declared once beside its `Resource` impl.
    pub fn descriptor(self) -> &'static Descriptor {
        match self {
            ResourceType::CarePlan => &crate::careplan::DESCRIPTOR,
            ResourceType::CareTeam => &crate::careteam::DESCRIPTOR,
            ResourceType::Goal => &crate::goal::DESCRIPTOR,
            ResourceType::Task => &crate::task::DESCRIPTOR,
            ResourceType::Provenance => &crate::provenance::DESCRIPTOR,
            ResourceType::Subscription => &crate::subscriptions::DESCRIPTOR,
            ResourceType::PlanDefinition => &crate::plandefinition::DESCRIPTOR,
            ResourceType::ActivityDefinition => &crate::activitydefinition::DESCRIPTOR,
        }
    }

    /// The FHIR name, as in URLs and `resourceType`.
    pub fn as_str(self) -> &'static str {
        self.descriptor().name
    }

    /// The type named exactly `name`, if this service holds it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether bulk export (`$export`) serves the type: the clinical types, those the R4
    /// patient compartment holds (the specification's own `patient` search parameter). A
    /// Subscription is the server's configuration (an endpoint, and headers that may hold its
    /// receiver's secret), not clinical data: its `patient` parameter is this server's own, and
    /// it is not exported.
    pub fn exportable(self) -> bool {
        self.descriptor().params.iter().any(|p| p.name == "patient" && p.origin == crate::search::params::Origin::Spec)
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

/// The marker type of a hosted resource type: `hosted!(Goal)` declares the unit struct `Goal`,
/// whose `Resource` impl names `ResourceType::Goal` and fhir-sdk's model of the same name. A
/// type's module is then its `Descriptor` and what is particular to it.
macro_rules! hosted {
    ($ty:ident) => {
        #[doc = concat!("Marker for the FHIR ", stringify!($ty), " resource type.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $ty;

        impl $crate::resource::Resource for $ty {
            const TYPE: $crate::resource::ResourceType = $crate::resource::ResourceType::$ty;
            type Model = fhir_sdk::r4b::resources::$ty;
        }
    };
}
pub(crate) use hosted;

/// Everything the service knows of one hosted type, declared once (in the type's module) and
/// read by the generic pipeline, the CapabilityStatement and the OpenAPI document.
pub struct Descriptor {
    /// The FHIR name, as in URLs and `resourceType`.
    pub name: &'static str,
    /// Check a body as this type (its fhir-sdk model and `Resource::check`) and prepare it.
    pub ingest: fn(&[u8], IngestMode<'_>) -> Result<Prepared, Vec<Issue>>,
    /// Its search parameters, the common ones first (`search::params`).
    pub params: &'static [SearchParam],
    /// Its top-level elements from the R4 StructureDefinition (generated, `elements.rs`).
    pub elements: &'static Elements,
    /// The plan-consistency rule's references (`CAREPLAN_REFERENCE_RULES`): where local
    /// references must name a resource of the given type that exists here and concerns the same
    /// patient.
    pub references: &'static [(Link, ResourceType)],
    /// How the OpenAPI document describes and exemplifies the type.
    pub docs: Docs,
    /// Its care-coordination rules on the write path, beyond structure.
    pub rules: Rules,
}

/// A type's rules on the write path: the domain decides, the service's write engine finds what
/// the decisions need inside the transaction and writes what they derive.
#[derive(Clone, Copy)]
pub struct Rules {
    /// What a new version must satisfy against the previous one, and the server-owned meta
    /// extensions the change sets (Task's state machine and its on-hold memory).
    pub change: Option<ChangeRule>,
    /// Its versions are steps of work: holds and resumes cascade to the sub-Tasks (`partOf`),
    /// and the plan's care team follows who works on them.
    pub work: bool,
    /// Task search parameters through which open Tasks depend on a resource of this type
    /// (`based-on` for a CarePlan): deleting one is refused while any does, unless the delete
    /// cascades (`_cascade=delete`).
    pub dependants: &'static [&'static str],
    /// Every change is recorded by a Provenance (not Provenance itself, nor Subscription).
    pub provenance: bool,
    /// Its versions are subscriptions: checked against the topics, the endpoint allow-list and
    /// the subscriber's scopes, their status kept by the server, and registered for delivery.
    pub subscription: bool,
}

impl Rules {
    /// A clinical record: its changes are recorded by a Provenance, and nothing else applies.
    pub const RECORD: Rules =
        Rules { change: None, work: false, dependants: &[], provenance: true, subscription: false };
}

/// A change of one resource, as the rules see it.
pub struct Change<'a> {
    /// The current version, if there is one.
    pub previous: Option<&'a serde_json::Value>,
    /// The version to store.
    pub next: &'a serde_json::Value,
    /// Who is writing (none when authorization is off).
    pub actor: Option<&'a crate::workflow::Actor>,
    /// How strictly the Task workflow is enforced (`CAREPLAN_TASK_POLICY`).
    pub policy: crate::workflow::WorkflowPolicy,
}

/// A type's rule over changes: the meta extensions (URL, value; `None` removes it) the server
/// sets on the new version, or why it is refused (`forbidden` for the actor, else a business
/// rule).
pub type ChangeRule = fn(&Change<'_>) -> Result<Vec<(&'static str, Option<serde_json::Value>)>, Vec<Issue>>;

/// Where a checked reference sits in a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// A top-level element holding a list of References (`CarePlan.goal`).
    Element(&'static str),
    /// The `valueReference` of the top-level extensions with this URL
    /// (`CareTeam`'s `resource-pertainsToGoal`).
    Extension(&'static str),
}

impl Link {
    /// The references at this link in `resource`, each with its FHIRPath.
    pub fn find(self, ty: ResourceType, resource: &serde_json::Value) -> Vec<(String, &serde_json::Value)> {
        let list = |name: &str| resource.get(name).and_then(serde_json::Value::as_array).map(Vec::as_slice);
        match self {
            Link::Element(name) => list(name)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, reference)| (format!("{ty}.{name}[{i}]"), reference))
                .collect(),
            Link::Extension(url) => list("extension")
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter(|(_, extension)| extension.get("url").and_then(serde_json::Value::as_str) == Some(url))
                .filter_map(|(i, extension)| {
                    extension.get("valueReference").map(|r| (format!("{ty}.extension[{i}].valueReference"), r))
                })
                .collect(),
        }
    }
}

/// The OpenAPI document's words and examples for one type (each example is checked by a test).
pub struct Docs {
    /// The FHIR short definition.
    pub description: &'static str,
    /// A minimal valid body, as a client sends it to create one.
    pub example: &'static str,
    /// A search a care-plan client makes of the type, as name and value pairs.
    pub search_example: &'static [(&'static str, &'static str)],
    /// A JSON Patch document that applies to `example`.
    pub json_patch: &'static str,
    /// A FHIRPath Patch (`Parameters`) that applies to `example`.
    pub fhirpath_patch: &'static str,
    /// The type's rules on a create, update or patch, in words (empty: none beyond structure).
    pub write_rules: &'static str,
    /// The type's rules on a delete, in words (empty: none).
    pub delete_rules: &'static str,
}

impl Descriptor {
    /// The descriptor of the `Resource` type `R`, with its model's ingest.
    pub const fn of<R: Resource>(
        name: &'static str,
        params: &'static [SearchParam],
        elements: &'static Elements,
        references: &'static [(Link, ResourceType)],
        docs: Docs,
    ) -> Self {
        Descriptor {
            name,
            ingest: crate::ingest::ingest::<R>,
            params,
            elements,
            references,
            docs,
            rules: Rules::RECORD,
        }
    }

    /// The descriptor with these rules instead of a clinical record's.
    pub const fn with_rules(self, rules: Rules) -> Self {
        Descriptor { rules, ..self }
    }

    /// The top-level element that names the patient a resource concerns (the first step of its
    /// `patient` search parameter: `subject`, or `for` on Task).
    pub fn patient_element(&self) -> Option<&'static str> {
        self.params.iter().find(|p| p.name == "patient").and_then(|p| p.path.first().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exported_types_are_those_of_the_patient_compartment() {
        let exported: Vec<ResourceType> = ResourceType::ALL.into_iter().filter(|t| t.exportable()).collect();
        assert_eq!(
            exported,
            [
                ResourceType::CarePlan,
                ResourceType::CareTeam,
                ResourceType::Goal,
                ResourceType::Task,
                ResourceType::Provenance
            ]
        );
    }

    #[test]
    fn every_hosted_type_has_its_own_generated_elements_and_a_valid_example() {
        for ty in ResourceType::ALL {
            let descriptor = ty.descriptor();
            assert_eq!(ResourceType::parse(descriptor.name), Some(ty));
            let generated = crate::elements::of(descriptor.name)
                .unwrap_or_else(|| panic!("{ty}: run scripts/gen_elements.py to generate its elements"));
            assert!(std::ptr::eq(descriptor.elements, generated), "{ty} points at another type's elements");
            assert!(!descriptor.elements.summary.is_empty(), "{ty}");
            assert!(descriptor.elements.summary.windows(2).all(|w| w[0] < w[1]), "{ty}: summary sorted");
            assert!(descriptor.elements.mandatory.windows(2).all(|w| w[0] < w[1]), "{ty}: mandatory sorted");
            let prepared = (descriptor.ingest)(descriptor.docs.example.as_bytes(), IngestMode::Create)
                .unwrap_or_else(|issues| panic!("{ty} example refused: {issues:?}"));
            assert_eq!(prepared.resource_type(), ty);
            let extension = format!("{}.extension", descriptor.name);
            assert!(
                crate::patch::is_repeating_element(&extension),
                "{ty}: run scripts/gen_patch_elements.py so that PATCH knows its elements"
            );
            for (name, _) in descriptor.docs.search_example {
                let known = name.starts_with('_') || descriptor.params.iter().any(|p| p.name == *name);
                assert!(known, "{ty}: search example names unknown parameter {name}");
            }
        }
    }
}
