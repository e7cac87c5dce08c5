//! SMART on FHIR authorization, decided without IO: scopes read from a token's `scope` claim
//! (http://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html, v2 and v1 forms) and
//! the answers to "may this principal do X on type T for patient P".
//!
//! Token handling (signatures, keys, claims) is the service's; this module only sees the scope
//! text and the `patient` launch context, and resources as their search-index entries.
//!
//! Rules this module fixes:
//! - v2 `context/Type.cruds` (letters in that order, at least one) with optional
//!   `?param=value&…` constraints; v1 `context/Type.read` (= `rs`), `.write` (= `cud`), `.*`.
//! - Constraints are supported on **token** search parameters of the type only (`category`,
//!   `status`, `code`, `intent`, …), matching as a token search would (`code`, `system|code`,
//!   `|code`, `system|`). A scope constrained on any other parameter grants nothing and is listed
//!   in `Grants::ignored`: refusing it is safe, widening it would not be.
//! - `patient/` scopes apply only inside the compartment of the token's `patient`: resources
//!   whose `patient` search parameter (CarePlan.subject, CareTeam.subject, Task.for) is that
//!   Patient. Without a `patient` claim they grant nothing.
//! - `AuditEvent` is only granted by a scope naming it, in `user/` or `system/` context:
//!   the `*` wildcard does not reach the audit trail.

use std::collections::BTreeSet;

use crate::interaction::Interaction;
use crate::resource::ResourceType;
use crate::search::index::{self, IndexEntry, IndexValue};
use crate::search::params::{self, ParamType};
use crate::search::query::SystemMatch;

/// Whose data a scope opens: one patient's (with the `patient` launch context), what the user
/// may see, or what the client system may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Patient,
    User,
    System,
}

/// A SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Letter {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Letter {
    /// In the order SMART v2 requires them to be written.
    pub const ALL: [Letter; 5] = [Letter::Create, Letter::Read, Letter::Update, Letter::Delete, Letter::Search];

    pub fn code(self) -> char {
        match self {
            Letter::Create => 'c',
            Letter::Read => 'r',
            Letter::Update => 'u',
            Letter::Delete => 'd',
            Letter::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Letter::Create => 1,
            Letter::Read => 2,
            Letter::Update => 4,
            Letter::Delete => 8,
            Letter::Search => 16,
        }
    }

    /// The letter an interaction needs: read, vread and history r; search s; create c;
    /// update and patch u; delete d.
    pub fn of(interaction: Interaction) -> Letter {
        match interaction {
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance | Interaction::HistoryType => {
                Letter::Read
            }
            Interaction::SearchType => Letter::Search,
            Interaction::Create => Letter::Create,
            Interaction::Update | Interaction::Patch => Letter::Update,
            Interaction::Delete => Letter::Delete,
        }
    }
}

/// What a scope names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `*`: every type this server holds (not the audit trail).
    Any,
    Type(ResourceType),
    /// The audit trail, served as `AuditEvent`.
    AuditEvent,
}

/// One `param=value` of a v2 scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Constraint {
    pub param: String,
    pub value: String,
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    pub subject: Subject,
    letters: u8,
    pub constraints: Vec<Constraint>,
}

impl Scope {
    pub fn grants(&self, letter: Letter) -> bool {
        self.letters & letter.bit() != 0
    }

    fn covers(&self, ty: ResourceType) -> bool {
        match self.subject {
            Subject::Any => true,
            Subject::Type(t) => t == ty,
            Subject::AuditEvent => false,
        }
    }
}

/// Every resource scope of a token, and what was set aside with the reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub scopes: Vec<Scope>,
    /// Resource scopes that grant nothing here, as `(scope, why)`.
    pub ignored: Vec<(String, String)>,
}

impl Grants {
    /// Read a space-separated `scope` claim. Scopes that are not resource scopes (`openid`,
    /// `fhirUser`, `launch/patient`, `offline_access`) are skipped silently.
    pub fn parse(text: &str) -> Grants {
        let mut grants = Grants::default();
        for item in text.split_ascii_whitespace() {
            match parse_scope(item) {
                Ok(Some(scope)) => grants.scopes.push(scope),
                Ok(None) => {}
                Err(why) => grants.ignored.push((item.to_owned(), why)),
            }
        }
        grants
    }
}

/// One scope: `Ok(None)` when it is not a resource scope, `Err` when it is one this server
/// does not honour.
fn parse_scope(text: &str) -> Result<Option<Scope>, String> {
    let Some((context, rest)) = text.split_once('/') else { return Ok(None) };
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return Ok(None),
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let Some((name, permissions)) = body.rsplit_once('.') else {
        return Err("a resource scope is context/Type.permissions".into());
    };
    let subject = match name {
        "*" => Subject::Any,
        "AuditEvent" => Subject::AuditEvent,
        _ => match ResourceType::parse(name) {
            Some(ty) => Subject::Type(ty),
            None => return Err(format!("this server holds no {name}")),
        },
    };
    let (letters, v1) = match permissions {
        "read" => (Letter::Read.bit() | Letter::Search.bit(), true),
        "write" => (Letter::Create.bit() | Letter::Update.bit() | Letter::Delete.bit(), true),
        "*" => (0x1f, true),
        _ => (
            v2_letters(permissions).ok_or_else(|| format!("'{permissions}' is not c, r, u, d, s in that order"))?,
            false,
        ),
    };
    if subject == Subject::AuditEvent && context == Context::Patient {
        return Err("the audit trail is not open to patient/ scopes".into());
    }
    let constraints = match query {
        None => Vec::new(),
        Some(_) if v1 => return Err("SMART v1 scopes take no constraints".into()),
        Some(query) => constraints(subject, query)?,
    };
    Ok(Some(Scope { context, subject, letters, constraints }))
}

fn v2_letters(text: &str) -> Option<u8> {
    let mut letters = 0u8;
    let mut next = 0;
    for c in text.chars() {
        let at = Letter::ALL.iter().skip(next).position(|l| l.code() == c)? + next;
        letters |= Letter::ALL[at].bit();
        next = at + 1;
    }
    (letters != 0).then_some(letters)
}

fn constraints(subject: Subject, query: &str) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((param, value)) = pair.split_once('=') else {
            return Err(format!("the constraint '{pair}' is not param=value"));
        };
        let (param, value) = (percent_decode(param), percent_decode(value));
        if value.is_empty() {
            return Err(format!("the constraint on '{param}' has no value"));
        }
        let token_on = |ty: ResourceType| params::find(ty, &param).is_some_and(|p| p.kind == ParamType::Token);
        let supported = match subject {
            Subject::Type(ty) => token_on(ty),
            // Checked per type when used: a type without the parameter is simply not granted.
            Subject::Any => ResourceType::ALL.into_iter().any(token_on),
            Subject::AuditEvent => false,
        };
        if !supported {
            return Err(format!("constraints are supported on token search parameters only, not '{param}'"));
        }
        out.push(Constraint { param, value });
    }
    out.sort();
    Ok(out)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is known about one resource for an access decision: its patient (compartment) and,
/// when a scope constrains its type, its search-index entries.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub patient: Option<String>,
    pub index: Option<Vec<IndexEntry>>,
}

impl Facts {
    /// From index entries (a `Prepared` resource carries them).
    pub fn of_index(index: &[IndexEntry]) -> Facts {
        Facts { patient: patient_in(index), index: Some(index.to_vec()) }
    }

    /// From stored resource text; the full index only when `with_index` (it costs a parse).
    pub fn of_text(ty: ResourceType, text: &str, with_index: bool) -> Facts {
        if with_index {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => Facts::of_index(&index::extract(ty, &value)),
                Err(_) => Facts::default(),
            }
        } else {
            Facts { patient: patient_of(ty, text), index: None }
        }
    }
}

/// The Patient id in a resource's `patient` index entries.
pub fn patient_in(index: &[IndexEntry]) -> Option<String> {
    index.iter().find_map(|entry| match &entry.value {
        IndexValue::Reference { target_type: Some(t), target_id: Some(id), .. }
            if entry.param == "patient" && t == "Patient" =>
        {
            Some(id.clone())
        }
        _ => None,
    })
}

/// The Patient a stored resource belongs to (CarePlan.subject, CareTeam.subject, Task.for),
/// read without building the whole index: only the one element is deserialized.
pub fn patient_of(ty: ResourceType, text: &str) -> Option<String> {
    /// The top-level elements a `patient` parameter starts from.
    #[derive(serde::Deserialize)]
    struct Links<'a> {
        #[serde(borrow)]
        subject: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow, rename = "for")]
        for_: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        meta: Option<&'a serde_json::value::RawValue>,
    }
    let member = ty.descriptor().patient_element()?;
    let param = params::find(ty, "patient")?;
    let links: Links<'_> = serde_json::from_str(text).ok()?;
    let raw = match member {
        "subject" => links.subject?,
        "for" => links.for_?,
        "meta" => links.meta?,
        _ => return None,
    };
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    let mut resource = serde_json::Map::new();
    resource.insert(member.to_owned(), value);
    let values = index::extract_param(param, &serde_json::Value::Object(resource));
    patient_in(&values.into_iter().map(|value| IndexEntry { param: "patient", value }).collect::<Vec<_>>())
}

/// How a search must be narrowed to return only what the scopes allow.
#[derive(Debug, Clone)]
pub enum Narrowing {
    /// Nothing to add: some scope allows every resource of the type.
    None,
    /// AND these search parameters (`name`, comma-separated values) to the search: parse them
    /// with `search::query::parse` like any others.
    Filter(Vec<(String, String)>),
    /// No scope allows the interaction on the type.
    Denied,
    /// The scopes allow it, but their constraints cannot be expressed as one search (an OR
    /// across different parameters); the client should search under one of them.
    Inexpressible,
}

/// A principal's access: its scopes and launch context.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    grants: Grants,
    /// The `patient` launch context (a Patient id).
    patient: Option<String>,
}

impl Policy {
    pub fn new(grants: Grants, patient: Option<String>) -> Policy {
        Policy { grants, patient }
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The patient launch context.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// Scopes that can grant `letter` on `ty` for some resource (a `patient/` scope only when
    /// there is a patient context).
    fn granting(&self, ty: ResourceType, letter: Letter) -> impl Iterator<Item = &Scope> {
        self.grants.scopes.iter().filter(move |s| {
            s.covers(ty)
                && s.grants(letter)
                && (s.context != Context::Patient || self.patient.is_some())
                && s.constraints.iter().all(|c| params::find(ty, &c.param).is_some_and(|p| p.kind == ParamType::Token))
        })
    }

    /// Whether some scope may allow `letter` on `ty`: the gate before the store is touched.
    pub fn may(&self, ty: ResourceType, letter: Letter) -> bool {
        self.granting(ty, letter).next().is_some()
    }

    /// Whether every resource of `ty` is open to `letter` (no compartment, no constraint):
    /// then no per-resource check is needed.
    pub fn unrestricted(&self, ty: ResourceType, letter: Letter) -> bool {
        self.granting(ty, letter).any(|s| s.context != Context::Patient && s.constraints.is_empty())
    }

    /// Whether deciding on a resource of `ty` needs its index (some scope constrains it).
    pub fn needs_index(&self, ty: ResourceType) -> bool {
        self.grants.scopes.iter().any(|s| s.covers(ty) && !s.constraints.is_empty())
    }

    /// Whether `letter` is allowed on one resource of `ty`.
    pub fn allows(&self, ty: ResourceType, letter: Letter, facts: &Facts) -> bool {
        self.granting(ty, letter).any(|scope| {
            let in_compartment = match scope.context {
                Context::Patient => self.patient.is_some() && facts.patient.as_deref() == self.patient.as_deref(),
                Context::User | Context::System => true,
            };
            in_compartment && scope.constraints.iter().all(|c| facts.index.as_deref().is_some_and(|i| matches(c, i)))
        })
    }

    /// What to add to a search of `ty` (for `letter`, normally search) so that it returns only
    /// resources the scopes allow.
    pub fn narrowing(&self, ty: ResourceType, letter: Letter) -> Narrowing {
        let patient_param = "patient";
        let mut filters: Vec<BTreeSet<(String, String)>> = Vec::new();
        for scope in self.granting(ty, letter) {
            let mut filter: BTreeSet<(String, String)> =
                scope.constraints.iter().map(|c| (c.param.clone(), c.value.clone())).collect();
            if scope.context == Context::Patient {
                if let Some(patient) = &self.patient {
                    filter.insert((patient_param.to_owned(), format!("Patient/{patient}")));
                }
            }
            if filter.is_empty() {
                return Narrowing::None;
            }
            filters.push(filter);
        }
        let Some(first) = filters.first() else { return Narrowing::Denied };
        let common: BTreeSet<(String, String)> =
            first.iter().filter(|pair| filters.iter().all(|f| f.contains(*pair))).cloned().collect();
        let rests: Vec<Vec<&(String, String)>> =
            filters.iter().map(|f| f.iter().filter(|pair| !common.contains(*pair)).collect()).collect();
        let mut pairs: Vec<(String, Vec<String>)> =
            common.iter().map(|(param, value)| (param.clone(), vec![value.clone()])).collect();
        // A scope with nothing beyond the common part allows all the others do: the common
        // part alone is the answer. Otherwise an OR is expressible only as the values of one
        // parameter.
        if rests.iter().all(|rest| !rest.is_empty()) {
            let param = rests[0][0].0.clone();
            if rests.iter().any(|rest| rest.len() != 1 || rest[0].0 != param) {
                return Narrowing::Inexpressible;
            }
            pairs.push((param, rests.iter().map(|rest| rest[0].1.clone()).collect()));
        }
        Narrowing::Filter(
            pairs
                .into_iter()
                .map(|(param, values)| {
                    let values: Vec<String> =
                        values.iter().map(|v| v.replace('\\', "\\\\").replace(',', "\\,")).collect();
                    (param, values.join(","))
                })
                .collect(),
        )
    }

    /// Whether the audit trail is open to `letter` (read or search).
    pub fn may_audit(&self, letter: Letter) -> bool {
        self.grants.scopes.iter().any(|s| {
            s.subject == Subject::AuditEvent
                && s.context != Context::Patient
                && s.grants(letter)
                && s.constraints.is_empty()
        })
    }
}

/// Whether a resource's index entries satisfy one constraint, as a token search would.
fn matches(constraint: &Constraint, index: &[IndexEntry]) -> bool {
    let (system, code) = token_parts(&constraint.value);
    index.iter().any(|entry| {
        entry.param == constraint.param
            && match &entry.value {
                IndexValue::Token { system: s, code: c, .. } => {
                    let system_ok = match &system {
                        SystemMatch::Any => true,
                        SystemMatch::None => s.is_none(),
                        SystemMatch::Is(wanted) => s.as_deref() == Some(wanted.as_str()),
                    };
                    system_ok && code.as_ref().is_none_or(|wanted| c.as_deref() == Some(wanted.as_str()))
                }
                _ => false,
            }
    })
}

fn token_parts(value: &str) -> (SystemMatch, Option<String>) {
    match value.split_once('|') {
        None => (SystemMatch::Any, Some(value.to_owned())),
        Some(("", code)) => (SystemMatch::None, Some(code.to_owned())),
        Some((system, "")) => (SystemMatch::Is(system.to_owned()), None),
        Some((system, code)) => (SystemMatch::Is(system.to_owned()), Some(code.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(scope: &Scope) -> String {
        Letter::ALL.iter().filter(|l| scope.grants(**l)).map(|l| l.code()).collect()
    }

    /// What a scope should parse to: context, subject, letters, constraints.
    type Parsed<'a> = (Context, Subject, &'a str, &'a [(&'a str, &'a str)]);

    /// `scope` parses to `expected`, or is ignored (`None`).
    fn check(text: &str, expected: Option<Parsed<'_>>) {
        let grants = Grants::parse(text);
        match expected {
            None => assert!(grants.scopes.is_empty(), "{text} should grant nothing: {grants:?}"),
            Some((context, subject, expected_letters, constraints)) => {
                assert_eq!(grants.scopes.len(), 1, "{text}: {grants:?}");
                let scope = &grants.scopes[0];
                assert_eq!((scope.context, scope.subject), (context, subject), "{text}");
                assert_eq!(letters(scope), expected_letters, "{text}");
                let got: Vec<(&str, &str)> =
                    scope.constraints.iter().map(|c| (c.param.as_str(), c.value.as_str())).collect();
                assert_eq!(got, constraints, "{text}");
            }
        }
    }

    #[test]
    fn scopes_are_read_in_v2_and_v1_forms() {
        use Context::*;
        use ResourceType::*;
        check("patient/CarePlan.rs", Some((Patient, Subject::Type(CarePlan), "rs", &[])));
        check("user/Task.cruds", Some((User, Subject::Type(Task), "cruds", &[])));
        check("system/*.rs", Some((System, Subject::Any, "rs", &[])));
        check("user/CareTeam.u", Some((User, Subject::Type(CareTeam), "u", &[])));
        check("patient/Task.read", Some((Patient, Subject::Type(Task), "rs", &[])));
        check("user/Task.write", Some((User, Subject::Type(Task), "cud", &[])));
        check("system/*.*", Some((System, Subject::Any, "cruds", &[])));
        check("system/AuditEvent.rs", Some((System, Subject::AuditEvent, "rs", &[])));
        check("user/AuditEvent.read", Some((User, Subject::AuditEvent, "rs", &[])));
        check(
            "patient/Task.rs?status=requested",
            Some((Patient, Subject::Type(Task), "rs", &[("status", "requested")])),
        );
        check(
            "user/CarePlan.rs?category=http://snomed.info/sct%7C734163000&status=active",
            Some((
                User,
                Subject::Type(CarePlan),
                "rs",
                &[("category", "http://snomed.info/sct|734163000"), ("status", "active")],
            )),
        );
        check("patient/*.rs?status=active", Some((Patient, Subject::Any, "rs", &[("status", "active")])));
    }

    #[test]
    fn malformed_unknown_and_unsupported_scopes_grant_nothing() {
        for text in [
            "openid",
            "fhirUser",
            "launch/patient",
            "offline_access",
            "patient/Observation.rs",
            "patient/CarePlan.sr",
            "patient/CarePlan.rr",
            "patient/CarePlan.",
            "patient/CarePlan.x",
            "patient/CarePlan",
            "admin/CarePlan.rs",
            "patient/AuditEvent.rs",
            "patient/Task.read?status=requested",
            "patient/Task.rs?owner=Practitioner/1",
            "patient/Task.rs?description=call",
            "patient/Task.rs?status=",
            "patient/Task.rs?status",
        ] {
            check(text, None);
        }
        let grants = Grants::parse("openid patient/Task.rs?owner=x patient/Observation.rs");
        assert_eq!(grants.ignored.len(), 2, "resource scopes set aside are listed: {grants:?}");
    }

    #[test]
    fn interactions_map_to_letters() {
        for (interaction, letter) in [
            (Interaction::Read, 'r'),
            (Interaction::Vread, 'r'),
            (Interaction::HistoryInstance, 'r'),
            (Interaction::HistoryType, 'r'),
            (Interaction::SearchType, 's'),
            (Interaction::Create, 'c'),
            (Interaction::Update, 'u'),
            (Interaction::Patch, 'u'),
            (Interaction::Delete, 'd'),
        ] {
            assert_eq!(Letter::of(interaction).code(), letter, "{interaction:?}");
        }
    }

    fn policy(scopes: &str, patient: Option<&str>) -> Policy {
        Policy::new(Grants::parse(scopes), patient.map(str::to_owned))
    }

    fn task(patient: &str, status: &str) -> Facts {
        let text = format!(
            r#"{{"resourceType":"Task","status":"{status}","intent":"order","for":{{"reference":"Patient/{patient}"}}}}"#
        );
        Facts::of_text(ResourceType::Task, &text, true)
    }

    #[test]
    fn decisions_follow_context_compartment_and_constraints() {
        use Letter::*;
        use ResourceType::Task as T;
        /// (scopes, patient claim, letter, resource patient, resource status, allowed)
        type Case<'a> = (&'a str, Option<&'a str>, Letter, &'a str, &'a str, bool);
        let cases: &[Case<'_>] = &[
            ("patient/Task.rs", Some("p1"), Read, "p1", "requested", true),
            ("patient/Task.rs", Some("p1"), Read, "p2", "requested", false),
            ("patient/Task.rs", None, Read, "p1", "requested", false),
            ("patient/Task.rs", Some("p1"), Update, "p1", "requested", false),
            ("patient/Task.cruds", Some("p1"), Delete, "p1", "requested", true),
            ("user/Task.rs", None, Read, "p2", "requested", true),
            ("user/Task.rs", Some("p1"), Read, "p2", "requested", true),
            ("system/*.rs", None, Read, "p9", "requested", true),
            ("system/*.rs", None, Create, "p9", "requested", false),
            ("user/Task.write", None, Create, "p9", "requested", true),
            ("user/Task.write", None, Read, "p9", "requested", false),
            ("patient/Task.rs?status=requested", Some("p1"), Read, "p1", "requested", true),
            ("patient/Task.rs?status=requested", Some("p1"), Read, "p1", "accepted", false),
            (
                "patient/Task.rs?status=requested patient/Task.rs?status=accepted",
                Some("p1"),
                Read,
                "p1",
                "accepted",
                true,
            ),
            ("user/CarePlan.rs", None, Read, "p1", "requested", false),
            ("user/AuditEvent.rs", None, Read, "p1", "requested", false),
        ];
        for (scopes, claim, letter, patient, status, allowed) in cases {
            let decided = policy(scopes, *claim).allows(T, *letter, &task(patient, status));
            assert_eq!(decided, *allowed, "{scopes} (patient {claim:?}) {letter:?} on {patient}'s {status} Task");
        }
    }

    #[test]
    fn the_patient_of_a_resource_comes_from_its_compartment_element() {
        let check = |ty, text: &str, expected: Option<&str>| {
            assert_eq!(patient_of(ty, text).as_deref(), expected, "{text}");
            let full = Facts::of_text(ty, text, true);
            assert_eq!(full.patient.as_deref(), expected, "index agrees: {text}");
        };
        check(ResourceType::CarePlan, r#"{"resourceType":"CarePlan","subject":{"reference":"Patient/a"}}"#, Some("a"));
        check(ResourceType::CareTeam, r#"{"resourceType":"CareTeam","subject":{"reference":"Patient/b"}}"#, Some("b"));
        check(ResourceType::Task, r#"{"resourceType":"Task","for":{"reference":"Patient/c"}}"#, Some("c"));
        check(
            ResourceType::Task,
            r#"{"resourceType":"Task","for":{"reference":"http://ehr.example/fhir/Patient/d"}}"#,
            Some("d"),
        );
        check(ResourceType::CarePlan, r#"{"resourceType":"CarePlan","subject":{"reference":"Group/g"}}"#, None);
        check(ResourceType::Task, r#"{"resourceType":"Task","subject":{"reference":"Patient/x"}}"#, None);
        check(ResourceType::Task, r#"{"resourceType":"Task"}"#, None);
    }

    fn described(narrowing: &Narrowing) -> String {
        match narrowing {
            Narrowing::None => "none".into(),
            Narrowing::Denied => "denied".into(),
            Narrowing::Inexpressible => "inexpressible".into(),
            Narrowing::Filter(pairs) => pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"),
        }
    }

    #[test]
    fn searches_are_narrowed_to_what_the_scopes_allow() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("user/Task.rs", None, "none"),
            ("patient/Task.rs", Some("p1"), "patient=Patient/p1"),
            ("patient/Task.rs user/Task.s", Some("p1"), "none"),
            ("patient/Task.r", Some("p1"), "denied"),
            ("patient/CarePlan.rs", Some("p1"), "denied"),
            ("patient/Task.rs", None, "denied"),
            ("patient/Task.rs?status=requested", Some("p1"), "patient=Patient/p1&status=requested"),
            (
                "patient/Task.rs?status=requested patient/Task.rs?status=accepted",
                Some("p1"),
                "patient=Patient/p1&status=requested,accepted",
            ),
            ("user/Task.rs?status=requested user/Task.rs?intent=order", None, "inexpressible"),
            ("user/Task.rs?status=requested patient/Task.rs", Some("p1"), "inexpressible"),
            ("patient/Task.rs patient/Task.rs?status=requested", Some("p1"), "patient=Patient/p1"),
        ];
        for (scopes, claim, expected) in cases {
            let narrowing = policy(scopes, *claim).narrowing(ResourceType::Task, Letter::Search);
            assert_eq!(described(&narrowing), *expected, "{scopes} (patient {claim:?})");
            if let Narrowing::Filter(pairs) = &narrowing {
                let parsed = crate::search::query::parse(ResourceType::Task, pairs, true);
                assert!(parsed.is_ok_and(|r| r.clauses.len() == pairs.len()), "{scopes}: the filter is a valid search");
            }
        }
    }

    #[test]
    fn the_audit_trail_needs_a_scope_naming_it() {
        for (scopes, letter, allowed) in [
            ("system/AuditEvent.rs", Letter::Search, true),
            ("user/AuditEvent.read", Letter::Read, true),
            ("user/AuditEvent.r", Letter::Search, false),
            ("system/*.rs", Letter::Read, false),
            ("system/*.*", Letter::Search, false),
            ("patient/AuditEvent.rs", Letter::Read, false),
        ] {
            assert_eq!(policy(scopes, Some("p1")).may_audit(letter), allowed, "{scopes} {letter:?}");
        }
    }
}
