//! The Goal resource (http://hl7.org/fhir/R4/goal.html): what the family and the care team are
//! working toward, referenced from `CarePlan.goal` (the MCC eCare Plan states each as a Goal).

use crate::resource::{Descriptor, Docs};

crate::resource::hosted!(Goal);

/// What the service knows of Goal.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<Goal>(
    "Goal",
    crate::search::params::GOAL,
    &crate::elements::GOAL,
    &[],
    Docs {
        description: "Describes the intended objective(s) for a patient, group or organization",
        example: r#"{
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "achievementStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                        "code": "in-progress"
                    }
                ]
            },
            "description": {
                "text": "Fewer emergency visits: no more than one ED visit in the next six months"
            },
            "subject": {
                "reference": "Patient/example"
            },
            "startDate": "2026-11-24",
            "target": [
                {
                    "dueDate": "2027-05-24"
                }
            ],
            "expressedBy": {
                "reference": "RelatedPerson/example"
            }
        }"#,
        search_example: &[("patient", "Patient/example"), ("lifecycle-status", "active")],
        json_patch: r#"[
            {
                "op": "replace",
                "path": "/lifecycleStatus",
                "value": "completed"
            },
            {
                "op": "add",
                "path": "/achievementStatus",
                "value": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/goal-achievement",
                            "code": "achieved"
                        }
                    ]
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
                            "valueCode": "add"
                        },
                        {
                            "name": "path",
                            "valueString": "Goal"
                        },
                        {
                            "name": "name",
                            "valueString": "note"
                        },
                        {
                            "name": "value",
                            "valueAnnotation": {
                                "text": "Two ED visits fewer than last half-year"
                            }
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "",
        delete_rules: "",
    },
);
