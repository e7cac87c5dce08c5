//! The CareTeam resource (http://hl7.org/fhir/R4/careteam.html): its model and rules.

use crate::resource::{Descriptor, Docs, Link, ResourceType, Rules};

crate::resource::hosted!(CareTeam);

/// The extension by which a CareTeam names the Goals it works toward.
pub const PERTAINS_TO_GOAL: &str = "http://hl7.org/fhir/StructureDefinition/resource-pertainsToGoal";

/// What the service knows of CareTeam.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<CareTeam>(
    "CareTeam",
    crate::search::params::CARE_TEAM,
    &crate::elements::CARETEAM,
    &[(Link::Extension(PERTAINS_TO_GOAL), ResourceType::Goal)],
    Docs {
        description: "Planned participants in the coordination and delivery of care for a patient or group",
        example: r#"{
            "resourceType": "CareTeam",
            "status": "active",
            "name": "Complex care team",
            "subject": {
                "reference": "Patient/example"
            },
            "participant": [
                {
                    "role": [
                        {
                            "text": "Care coordinator"
                        }
                    ],
                    "member": {
                        "reference": "Practitioner/example"
                    }
                }
            ]
        }"#,
        search_example: &[("patient", "Patient/example"), ("status", "active")],
        json_patch: r#"[
            {
                "op": "add",
                "path": "/participant/-",
                "value": {
                    "role": [
                        {
                            "text": "Social worker"
                        }
                    ],
                    "member": {
                        "reference": "Practitioner/example-2"
                    }
                }
            }
        ]"#,
        fhirpath_patch: r#"{
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {
                            "name": "type",
                            "valueCode": "replace"
                        },
                        {
                            "name": "path",
                            "valueString": "CareTeam.name"
                        },
                        {
                            "name": "value",
                            "valueString": "Complex care team (north)"
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "When the deployment enforces consistency (`CAREPLAN_REFERENCE_RULES=enforce`), a new \
             `resource-pertainsToGoal` extension naming a Goal that is not held here or concerns \
             another patient is refused with 422; by default it is stored.",
        delete_rules: "Open Tasks owned by this CareTeam, or based on a CarePlan of this team, block the delete \
             (409, listing them) unless `_cascade=delete` deletes them too, in the same transaction \
             (not checked with `CAREPLAN_REFERENCE_RULES=off`).",
    },
)
.with_rules(Rules { dependants: &["owner", "based-on:CarePlan.care-team"], ..Rules::RECORD });
