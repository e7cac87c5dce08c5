//! The PlanDefinition resource (http://hl7.org/fhir/R4/plandefinition.html): a care-coordination
//! template, whose actions `PlanDefinition/[id]/$apply` turns into a CarePlan, a CareTeam and
//! Tasks (`plan_apply`). Definitional: not in the patient compartment.

use crate::resource::{Descriptor, Docs};

crate::resource::hosted!(PlanDefinition);

/// What the service knows of PlanDefinition.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<PlanDefinition>(
    "PlanDefinition",
    crate::search::params::PLAN_DEFINITION,
    &crate::elements::PLANDEFINITION,
    &[],
    Docs {
        description: "The definition of a plan for a series of actions, independent of any specific patient or context",
        example: r#"{
            "resourceType": "PlanDefinition",
            "url": "http://careplan.example/fhir/PlanDefinition/welcome-call",
            "version": "1.0.0",
            "name": "WelcomeCall",
            "title": "Welcome call",
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                        "code": "order-set"
                    }
                ]
            },
            "status": "active",
            "action": [
                {
                    "title": "Call the family within a week of enrollment",
                    "definitionCanonical": "http://careplan.example/fhir/ActivityDefinition/follow-up-call",
                    "timingDuration": {
                        "value": 7,
                        "unit": "days",
                        "system": "http://unitsofmeasure.org",
                        "code": "d"
                    }
                }
            ]
        }"#,
        search_example: &[("url", "http://careplan.example/fhir/PlanDefinition/welcome-call"), ("status", "active")],
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
                            "valueString": "PlanDefinition.title"
                        },
                        {
                            "name": "value",
                            "valueString": "Welcome call (revised)"
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "",
        delete_rules: "",
    },
);
