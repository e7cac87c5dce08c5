//! The Task resource (http://hl7.org/fhir/R4/task.html): its model and rules.

use crate::issue::Issue;
use crate::resource::{Change, Descriptor, Docs, Link, ResourceType, Rules};
use crate::workflow::{check_task_change, hold_memory, RESUME_STATUS_URL};

crate::resource::hosted!(Task);

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
        write_rules: "The Task workflow applies: a status change outside the R4 Task state machine, a change \
             to rejected, cancelled, on-hold or failed without `statusReason`, or a change of `for`, \
             `requester`, `basedOn` or `partOf` is refused with 422 (business-rule). When the \
             deployment names the acting practitioner (`X-Careplan-Actor`), a change that \
             practitioner's role may not make (only the requester creates or cancels; only the owner \
             moves the Task forward) is refused with 403. When the deployment enforces consistency \
             (`CAREPLAN_REFERENCE_RULES=enforce`), a new `basedOn` CarePlan or `partOf` Task that is \
             not held here or concerns another patient is refused with 422; by default it is stored.",
        delete_rules: "",
    },
)
.with_rules(Rules { change: Some(change), work: true, ..Rules::RECORD });

/// Task's rule over changes: the workflow's state machine and who may change what
/// (`workflow::check_task_change`), then the on-hold memory the server keeps in `meta`.
fn change(change: &Change<'_>) -> Result<Vec<(&'static str, Option<serde_json::Value>)>, Vec<Issue>> {
    let issues = check_task_change(change.previous, change.next, change.actor, change.policy);
    if !issues.is_empty() {
        return Err(issues);
    }
    let memory = hold_memory(change.previous, change.next).map_err(|issue| vec![issue])?;
    Ok(vec![(RESUME_STATUS_URL, memory.extension())])
}
