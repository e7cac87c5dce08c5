//! The CarePlan resource (http://hl7.org/fhir/R4/careplan.html): its model and rules.

use crate::resource::{Descriptor, Docs, Link, ResourceType, Rules};

crate::resource::hosted!(CarePlan);

/// What the service knows of CarePlan.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<CarePlan>(
    "CarePlan",
    crate::search::params::CARE_PLAN,
    &crate::elements::CAREPLAN,
    &[
        (Link::Element("careTeam"), ResourceType::CareTeam),
        (Link::Element("partOf"), ResourceType::CarePlan),
        (Link::Element("basedOn"), ResourceType::CarePlan),
        (Link::Element("replaces"), ResourceType::CarePlan),
        (Link::Element("goal"), ResourceType::Goal),
    ],
    Docs {
        description: "Healthcare plan for patient or group",
        example: r#"{
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "title": "Shared care plan",
            "subject": {
                "reference": "Patient/example"
            },
            "careTeam": [
                {
                    "reference": "CareTeam/example"
                }
            ]
        }"#,
        search_example: &[("patient", "Patient/example"), ("status", "active"), ("_include", "CarePlan:care-team")],
        json_patch: r#"[
            {
                "op": "replace",
                "path": "/title",
                "value": "Shared care plan (revised)"
            },
            {
                "op": "add",
                "path": "/description",
                "value": "Reviewed with the family"
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
                            "valueString": "CarePlan.title"
                        },
                        {
                            "name": "value",
                            "valueString": "Shared care plan (revised)"
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "When the deployment enforces consistency (`CAREPLAN_REFERENCE_RULES=enforce`), a new \
             `careTeam`, `partOf`, `basedOn`, `replaces` or `goal` reference to a team, plan or Goal \
             that is not held here or concerns another patient is refused with 422; by default it is \
             stored.",
        delete_rules: "Open Tasks based on this CarePlan block the delete (409, listing them) unless \
             `_cascade=delete` deletes them too, in the same transaction (not checked with \
             `CAREPLAN_REFERENCE_RULES=off`).",
    },
)
.with_rules(Rules { dependants: &["based-on"], ..Rules::RECORD });
