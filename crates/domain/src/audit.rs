//! The audit record of one RESTful interaction and its rendering as an R4 `AuditEvent` in the
//! style of IHE Basic Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/): type `rest`,
//! subtype the interaction, action C/R/U/D/E, outcome from the HTTP status, the requesting
//! user and client, this server as observer, the resource (never the query text: only the
//! names of the parameters, since values can be PHI) and the patient.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::instant;

/// `AuditEvent.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl Action {
    /// The action of a stored code (`C`, `R`, `U`, `D`, `E`).
    pub fn parse(code: &str) -> Option<Action> {
        Some(match code {
            "C" => Action::Create,
            "R" => Action::Read,
            "U" => Action::Update,
            "D" => Action::Delete,
            "E" => Action::Execute,
            _ => return None,
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Action::Create => "C",
            Action::Read => "R",
            Action::Update => "U",
            Action::Delete => "D",
            Action::Execute => "E",
        }
    }
}

/// `AuditEvent.outcome`, from the HTTP status: 0 success, 4 minor failure (the client's
/// request was refused), 8 serious failure (the server failed).
pub fn outcome(status: u16) -> u8 {
    match status {
        0..=399 => 0,
        400..=499 => 4,
        _ => 8,
    }
}

/// Who asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    /// The token's `fhirUser` (a reference such as `Practitioner/123`), if any.
    pub fhir_user: Option<String>,
    /// The token's `sub` and `iss`.
    pub subject: Option<String>,
    pub issuer: Option<String>,
    /// The OAuth client (`client_id` or `azp`).
    pub client_id: Option<String>,
    /// The client's network address.
    pub address: Option<String>,
}

impl Agent {
    /// The value `agent=` searches match: the FHIR user, else the subject.
    pub fn who(&self) -> Option<&str> {
        self.fhir_user.as_deref().or(self.subject.as_deref())
    }
}

/// One audited interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: String,
    pub recorded_ms: i64,
    pub action: Action,
    /// The `restful-interaction` code: `read`, `search-type`, `transaction`, …
    pub subtype: &'static str,
    pub status: u16,
    pub agent: Agent,
    /// `Type/id` of the resource acted on, or `Type` for type-level interactions.
    pub entity: Option<String>,
    /// Names of the query parameters (never their values).
    pub parameters: Vec<String>,
    /// The Patient id the interaction concerned, when known.
    pub patient: Option<String>,
    /// The `X-Request-Id`, correlating this record with the logs.
    pub request_id: Option<String>,
}

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// The `restful-interaction` codes a record's subtype may take.
pub const SUBTYPES: [&str; 13] = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "history-system",
    "create",
    "search-type",
    "transaction",
    "batch",
    "operation",
];

/// What a stored record keeps in its columns: the values its searches use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub id: String,
    pub recorded_ms: i64,
    /// `Action::code`.
    pub action: String,
    pub patient: Option<String>,
    pub client: Option<String>,
    pub entity: Option<String>,
}

/// The rest of a record, stored beside its columns as compact JSON (tens of bytes): what
/// `render` needs that the columns do not hold. Keys are short on purpose; a record of an
/// anonymous read is about 40 bytes, against 1.7 KB for the rendered AuditEvent.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Facts {
    /// Subtype.
    s: String,
    /// HTTP status.
    h: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
    /// Parameter names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    q: Vec<String>,
    /// The request id, when it is not the record's own id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
}

impl AuditRecord {
    /// The searchable columns of the stored form.
    pub fn columns(&self) -> Columns {
        Columns {
            id: self.id.clone(),
            recorded_ms: self.recorded_ms,
            action: self.action.code().to_owned(),
            patient: self.patient.clone(),
            client: self.agent.client_id.clone(),
            entity: self.entity.clone(),
        }
    }

    /// The rest of the stored form (see `Facts`); `restore` turns both back into the record.
    pub fn facts(&self) -> String {
        let facts = Facts {
            s: self.subtype.to_owned(),
            h: self.status,
            u: self.agent.fhir_user.clone(),
            b: self.agent.subject.clone(),
            i: self.agent.issuer.clone(),
            a: self.agent.address.clone(),
            q: self.parameters.clone(),
            r: self.request_id.clone().filter(|r| *r != self.id),
        };
        serde_json::to_string(&facts).unwrap_or_default()
    }

    /// The record stored as `columns` and `facts`; `None` when they are not a stored record's.
    pub fn restore(columns: Columns, facts: &str) -> Option<AuditRecord> {
        let facts: Facts = serde_json::from_str(facts).ok()?;
        let subtype = SUBTYPES.into_iter().find(|s| *s == facts.s)?;
        let request_id = facts.r.or_else(|| Some(columns.id.clone()));
        Some(AuditRecord {
            recorded_ms: columns.recorded_ms,
            action: Action::parse(&columns.action)?,
            subtype,
            status: facts.h,
            agent: Agent {
                fhir_user: facts.u,
                subject: facts.b,
                issuer: facts.i,
                client_id: columns.client,
                address: facts.a,
            },
            entity: columns.entity,
            parameters: facts.q,
            patient: columns.patient,
            request_id,
            id: columns.id,
        })
    }

    /// The record as AuditEvent JSON text.
    pub fn render(&self) -> String {
        let recorded = instant::to_fhir(self.recorded_ms);
        let mut agents = Vec::new();
        let user_who = match (&self.agent.fhir_user, &self.agent.subject) {
            (Some(user), _) => Some(json!({ "reference": user })),
            (None, Some(subject)) => Some(identifier(self.agent.issuer.as_deref(), subject)),
            (None, None) => None,
        };
        if let Some(who) = user_who {
            agents.push(json!({
                "type": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "IRCP", "display": "information recipient" }] },
                "who": who,
                "requestor": true,
            }));
        }
        let mut client = json!({
            "type": { "coding": [{ "system": DCM, "code": "110153", "display": "Source Role ID" }] },
            "requestor": agents.is_empty(),
        });
        match &self.agent.client_id {
            Some(client_id) => client["who"] = identifier(None, client_id),
            None if agents.is_empty() => client["who"] = json!({ "display": "anonymous" }),
            None => {}
        }
        if let Some(address) = &self.agent.address {
            client["network"] = json!({ "address": address, "type": "2" });
        }
        agents.push(client);
        agents.push(json!({
            "type": { "coding": [{ "system": DCM, "code": "110152", "display": "Destination Role ID" }] },
            "who": { "display": "careplan" },
            "requestor": false,
        }));
        let mut entities = Vec::new();
        if let Some(request_id) = &self.request_id {
            entities.push(json!({
                "what": { "identifier": { "value": request_id } },
                "type": { "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
                          "code": "XrequestId" },
            }));
        }
        if let Some(entity) = &self.entity {
            let query = self.action == Action::Execute && !entity.contains('/');
            let mut data = json!({
                "what": if query { json!({ "type": entity }) } else { json!({ "reference": entity }) },
                "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                          "code": "2", "display": "System Object" },
                "role": if query {
                    json!({ "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query" })
                } else {
                    json!({ "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource" })
                },
            });
            if !self.parameters.is_empty() {
                data["detail"] = json!([{ "type": "query-parameters", "valueString": self.parameters.join(",") }]);
            }
            entities.push(data);
        }
        if let Some(patient) = &self.patient {
            entities.push(json!({
                "what": { "reference": format!("Patient/{patient}") },
                "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                          "code": "1", "display": "Person" },
                "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" },
            }));
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": self.id,
            "meta": { "versionId": "1", "lastUpdated": recorded },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                      "code": "rest", "display": "Restful Operation" },
            "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": self.subtype }],
            "action": self.action.code(),
            "recorded": recorded,
            "outcome": outcome(self.status).to_string(),
            "outcomeDesc": format!("HTTP {}", self.status),
            "agent": agents,
            "source": {
                "observer": { "display": "careplan" },
                "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                           "code": "4", "display": "Application Server" }],
            },
        });
        if !entities.is_empty() {
            event["entity"] = Value::Array(entities);
        }
        event.to_string()
    }
}

fn identifier(system: Option<&str>, value: &str) -> Value {
    match system {
        Some(system) => json!({ "identifier": { "system": system, "value": value } }),
        None => json!({ "identifier": { "value": value } }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: Action, subtype: &'static str, status: u16, entity: Option<&str>) -> AuditRecord {
        AuditRecord {
            id: "a1".into(),
            recorded_ms: 1_795_000_000_000,
            action,
            subtype,
            status,
            agent: Agent {
                fhir_user: Some("Practitioner/nurse-lee".into()),
                subject: Some("u-1".into()),
                issuer: Some("https://idp.example".into()),
                client_id: Some("ehr-app".into()),
                address: Some("10.0.0.7".into()),
            },
            entity: entity.map(str::to_owned),
            parameters: vec!["patient".into(), "status".into()],
            patient: Some("amy".into()),
            request_id: Some("req-9".into()),
        }
    }

    #[test]
    fn a_record_is_restored_from_its_columns_and_facts_as_it_was() {
        let check = |record: AuditRecord| {
            let facts = record.facts();
            assert!(facts.len() < 200, "compact: {facts}");
            let restored = AuditRecord::restore(record.columns(), &facts).expect("restores");
            assert_eq!(restored, record);
            assert_eq!(restored.render(), record.render());
        };
        for subtype in SUBTYPES {
            check(record(Action::Read, subtype, 200, Some("Task/t1")));
        }
        check(AuditRecord {
            agent: Agent::default(),
            parameters: Vec::new(),
            patient: None,
            request_id: Some("a1".into()),
            ..record(Action::Execute, "transaction", 500, None)
        });
        let anonymous = AuditRecord {
            agent: Agent { address: Some("127.0.0.1".into()), ..Agent::default() },
            request_id: Some("a1".into()),
            ..record(Action::Read, "read", 200, Some("CarePlan/bench-1"))
        };
        assert_eq!(anonymous.facts(), r#"{"s":"read","h":200,"a":"127.0.0.1","q":["patient","status"]}"#);
        check(anonymous);
        assert!(AuditRecord::restore(record(Action::Read, "read", 200, None).columns(), "{}").is_none());
    }

    #[test]
    fn outcomes_follow_the_http_status() {
        for (status, expected) in [(200, 0), (201, 0), (304, 0), (401, 4), (403, 4), (404, 4), (500, 8), (503, 8)] {
            assert_eq!(outcome(status), expected, "{status}");
        }
    }

    #[test]
    fn the_record_renders_as_an_audit_event_the_model_accepts() {
        for (action, subtype, status, entity) in [
            (Action::Read, "read", 200, Some("Task/t1")),
            (Action::Execute, "search-type", 200, Some("Task")),
            (Action::Create, "create", 403, Some("CarePlan")),
            (Action::Execute, "transaction", 500, None),
        ] {
            let text = record(action, subtype, status, entity).render();
            let parsed: Result<fhir_sdk::r4b::resources::AuditEvent, _> = serde_json::from_str(&text);
            assert!(parsed.is_ok(), "{text}: {:?}", parsed.err());
            let value: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(value["action"], action.code());
            assert_eq!(value["outcome"], outcome(status).to_string());
            assert!(!text.contains("status="), "no query values: {text}");
        }
    }
}
