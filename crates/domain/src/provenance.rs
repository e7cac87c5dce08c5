//! The Provenance resource (http://hl7.org/fhir/R4/provenance.html): who changed what in the
//! shared plan, and when. The server writes one with every change of a CarePlan, CareTeam or
//! Task; clients may also send their own (US Core asks EHRs to).

use serde_json::{json, Value};

use crate::resource::{Descriptor, Docs, ResourceType, Rules};

crate::resource::hosted!(Provenance);

/// What the service knows of Provenance.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<Provenance>(
    "Provenance",
    crate::search::params::PROVENANCE,
    &crate::elements::PROVENANCE,
    &[],
    Docs {
        description: "Who, What, When for a set of resources",
        example: r#"{
            "resourceType": "Provenance",
            "target": [
                {
                    "reference": "Task/example/_history/2"
                }
            ],
            "recorded": "2026-11-24T10:00:00.000Z",
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "UPDATE"
                    }
                ]
            },
            "agent": [
                {
                    "who": {
                        "reference": "Practitioner/example"
                    }
                }
            ]
        }"#,
        search_example: &[("target", "Task/example"), ("_sort", "-recorded")],
        json_patch: r#"[
            {
                "op": "add",
                "path": "/reason",
                "value": [
                    {
                        "text": "Correction of the record"
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
                            "valueCode": "add"
                        },
                        {
                            "name": "path",
                            "valueString": "Provenance"
                        },
                        {
                            "name": "name",
                            "valueString": "location"
                        },
                        {
                            "name": "value",
                            "valueReference": {
                                "reference": "Location/example"
                            }
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "",
        delete_rules: "",
    },
)
.with_rules(Rules { provenance: false, ..Rules::RECORD });

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

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent<'a> {
    /// The acting reference the request carried (`fhirUser`, or the development header).
    Reference(&'a str),
    /// A request that carried no identity.
    Unidentified,
    /// This service itself, doing what its name says (a background job).
    Service(&'a str),
}

impl<'a> From<Option<&'a str>> for Agent<'a> {
    fn from(who: Option<&'a str>) -> Self {
        who.map_or(Agent::Unidentified, Agent::Reference)
    }
}

/// The Provenance of one written version: `target` is `Type/id/_history/n`, `recorded` a FHIR
/// instant, `who` the acting reference when the request carried one.
pub fn for_write(target: &str, recorded: &str, activity: Activity, who: Option<&str>) -> Value {
    by(target, recorded, activity, Agent::from(who))
}

/// The Provenance of one written version, by any agent, ready to store: the server writes the
/// text itself, so it is split and indexed without the model check `ingest` gives client text
/// (a test holds the two to the same result).
pub fn prepared(
    target: &str,
    recorded: &str,
    activity: Activity,
    agent: Agent<'_>,
) -> Result<crate::Prepared, serde_json::Error> {
    let value = by(target, recorded, activity, agent);
    let index = crate::search::extract(ResourceType::Provenance, &value);
    // `json!` text is minified: `from_minified` reads it as it is.
    Ok(crate::Prepared::from_minified(ResourceType::Provenance, &value.to_string())?.with_index(index))
}

/// The Provenance of one written version, by any agent.
pub fn by(target: &str, recorded: &str, activity: Activity, agent: Agent<'_>) -> Value {
    let agent = match agent {
        Agent::Reference(who) => json!({ "reference": who }),
        Agent::Unidentified => json!({ "display": "unidentified client" }),
        Agent::Service(what) => json!({ "display": format!("careplan service: {what}") }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ingest_as, IngestMode, VersionMeta};

    #[test]
    fn a_prepared_provenance_is_what_ingesting_its_text_gives() {
        for agent in [Agent::Reference("Practitioner/p1"), Agent::Unidentified, Agent::Service("overdue")] {
            for activity in [Activity::Create, Activity::Update, Activity::Delete] {
                let target = "Task/t1/_history/3";
                let recorded = "2026-12-05T12:00:00.123Z";
                let fast = prepared(target, recorded, activity, agent).expect("prepared");
                let text = by(target, recorded, activity, agent).to_string();
                let checked = ingest_as(ResourceType::Provenance, text.as_bytes(), IngestMode::Create)
                    .expect("the server's Provenance is valid");
                let meta = VersionMeta { version_id: 1, last_updated_ms: 1 };
                assert_eq!(fast.render("x", meta), checked.render("x", meta));
                assert_eq!(fast.index(), checked.index());
            }
        }
    }
}
