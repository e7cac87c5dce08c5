//! The ActivityDefinition resource (http://hl7.org/fhir/R4/activitydefinition.html): one kind
//! of work a PlanDefinition's action names by canonical URL (`definitionCanonical`); its code,
//! participants and timing become a Task's when the plan is applied. Definitional: not in the
//! patient compartment.

use crate::resource::{Descriptor, Docs};

crate::resource::hosted!(ActivityDefinition);

/// What the service knows of ActivityDefinition.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<ActivityDefinition>(
    "ActivityDefinition",
    crate::search::params::ACTIVITY_DEFINITION,
    &crate::elements::ACTIVITYDEFINITION,
    &[],
    Docs {
        description:
            "The definition of a specific activity to be taken, independent of any particular patient or context",
        example: r#"{
            "resourceType": "ActivityDefinition",
            "url": "http://careplan.example/fhir/ActivityDefinition/follow-up-call",
            "version": "1.0.0",
            "name": "FollowUpCall",
            "title": "Follow-up call",
            "status": "active",
            "kind": "Task",
            "code": {
                "coding": [
                    {
                        "system": "http://snomed.info/sct",
                        "code": "390906007",
                        "display": "Follow-up encounter"
                    }
                ]
            },
            "participant": [
                {
                    "type": "practitioner",
                    "role": {
                        "text": "Care coordinator"
                    }
                }
            ]
        }"#,
        search_example: &[("url", "http://careplan.example/fhir/ActivityDefinition/follow-up-call")],
        json_patch: r#"[
            {
                "op": "replace",
                "path": "/status",
                "value": "retired"
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
                            "valueString": "ActivityDefinition.title"
                        },
                        {
                            "name": "value",
                            "valueString": "Follow-up phone call"
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "",
        delete_rules: "",
    },
);
