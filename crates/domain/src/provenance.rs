//! The Provenance resource (http://hl7.org/fhir/R4/provenance.html): who changed what in the
//! shared plan, and when. The server writes one with every change of a CarePlan, CareTeam or
//! Task; clients may also send their own (US Core asks EHRs to).

use serde_json::{json, Value};

use crate::resource::{Resource, ResourceType};

/// Marker for the FHIR Provenance resource type.
#[derive(Debug, Clone, Copy)]
pub struct Provenance;

impl Resource for Provenance {
    const TYPE: ResourceType = ResourceType::Provenance;
    type Model = fhir_sdk::r4b::resources::Provenance;
}

/// What a write did, as the v3 DataOperation code Provenance.activity uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create,
    Update,
    Delete,
}

impl Activity {
    fn code(self) -> &'static str {
        match self {
            Activity::Create => "CREATE",
            Activity::Update => "UPDATE",
            Activity::Delete => "DELETE",
        }
    }

    fn display(self) -> &'static str {
        match self {
            Activity::Create => "create",
            Activity::Update => "revise",
            Activity::Delete => "delete",
        }
    }
}

/// The Provenance of one written version: `target` is `Type/id/_history/n`, `recorded` a FHIR
/// instant, `who` the acting reference when the request carried one.
pub fn for_write(target: &str, recorded: &str, activity: Activity, who: Option<&str>) -> Value {
    let agent = match who {
        Some(who) => json!({ "reference": who }),
        None => json!({ "display": "unidentified client" }),
    };
    json!({
        "resourceType": "Provenance",
        "target": [{ "reference": target }],
        "recorded": recorded,
        "activity": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": activity.code(),
            "display": activity.display()
        }]},
        "agent": [{
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author",
                "display": "Author"
            }]},
            "who": agent
        }]
    })
}
