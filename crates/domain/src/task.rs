//! The Task resource (http://hl7.org/fhir/R4/task.html): its model and rules.

use crate::resource::{Descriptor, Docs, Link, Resource, ResourceType};

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
    &[(Link::Element("basedOn"), ResourceType::CarePlan), (Link::Element("partOf"), ResourceType::Task)],
    Docs {
        description: "A task to be performed",
        example: r#"{
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
        search_example: &[
            ("owner", "Practitioner/example"),
            ("status", "requested,accepted,in-progress"),
            ("_sort", "-_lastUpdated"),
        ],
        json_patch: r#"[
            {
                "op": "replace",
                "path": "/status",
                "value": "accepted"
            },
            {
                "op": "add",
                "path": "/note",
                "value": [
                    {
                        "text": "The family prefers afternoon calls"
                    }
                ]
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
                            "valueString": "Task.status"
                        },
                        {
                            "name": "value",
                            "valueCode": "accepted"
                        }
                    ]
                },
                {
                    "name": "operation",
                    "part": [
                        {
                            "name": "type",
                            "valueCode": "add"
                        },
                        {
                            "name": "path",
                            "valueString": "Task"
                        },
                        {
                            "name": "name",
                            "valueString": "note"
                        },
                        {
                            "name": "value",
                            "valueAnnotation": {
                                "text": "The family prefers afternoon calls"
                            }
                        }
                    ]
                }
            ]
        }"#,
    },
);
