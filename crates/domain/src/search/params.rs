//! The search parameters of each hosted type (FHIR R4 4.0.1), the common ones, and
//! the few this server defines itself (`Origin::Server`, served as SearchParameter resources).

use serde_json::{json, Value};

use crate::resource::ResourceType;

/// Where the SearchParameter resources of `Origin::Server` parameters live (their canonical URLs
/// are `{DEFINITION_BASE}/{Type}-{name}`, and `GET [base]/SearchParameter/{Type}-{name}` serves them).
pub const DEFINITION_BASE: &str = "http://careplan.example/fhir/SearchParameter";

/// A FHIR search parameter type (http://hl7.org/fhir/R4/search.html#ptypes) this server indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Token,
    Reference,
    Date,
    String,
    Uri,
}

impl ParamType {
    /// The `SearchParamType` code, as in the CapabilityStatement.
    pub fn code(self) -> &'static str {
        match self {
            ParamType::Token => "token",
            ParamType::Reference => "reference",
            ParamType::Date => "date",
            ParamType::String => "string",
            ParamType::Uri => "uri",
        }
    }
}

/// The FHIR datatype found at the end of a parameter's path, which decides the index values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A `code` primitive (e.g. `status`): token with no system.
    Code,
    /// `Coding`: token system|code, display as text.
    Coding,
    /// `CodeableConcept`: a token per coding, `text` and displays as text.
    CodeableConcept,
    /// `Identifier`: token system|value, with `type` for `:of-type`.
    Identifier,
    /// `Reference`: reference (literal `reference`, or `identifier` for `:identifier`).
    Reference,
    /// `canonical`: reference by URL.
    Canonical,
    /// `uri`.
    Uri,
    /// `date` or `dateTime`: a date range.
    DateTime,
    /// `Period`: a date range from start to end (open ends are unbounded).
    Period,
    /// `Timing`, `Period` or `string` (CarePlan.activity.detail.scheduled[x]): date ranges.
    Scheduled,
    /// `string`.
    String,
    /// No value is read from the resource: the parameter is evaluated when a search runs.
    Computed(Computed),
}

/// A parameter whose value depends on more than the stored resource (the current time), so it
/// is not indexed; the query compiles it from the index values of other parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Computed {
    /// `overdue` (token `true`/`false`): whether an open Task is past its due date. `due` names
    /// the date parameter whose range ends at the due date, `status` the status parameter.
    Overdue { due: &'static str, status: &'static str },
}

/// Who defines a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The FHIR specification: http://hl7.org/fhir/SearchParameter/{Type}-{name}.
    Spec,
    /// This server (see `DEFINITION_BASE`).
    Server,
}

/// Which end of a date range `_sort` orders by when ascending (descending always orders by the
/// latest end). Resources without a value come last either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrder {
    /// By the earliest start: when something began.
    Start,
    /// By the earliest end: when something is due (an open end sorts after every date).
    End,
}

/// One search parameter, declared once: everything the index, the query parser, the
/// CapabilityStatement and the OpenAPI description need.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    /// The parameter name, e.g. `care-team`.
    pub name: &'static str,
    pub kind: ParamType,
    /// The FHIRPath expression as the specification gives it.
    pub expression: &'static str,
    /// JSON member names from the resource root; a trailing `[x]` marks a choice element.
    pub path: &'static [&'static str],
    pub shape: Shape,
    /// For references: the target types the spec lists (empty: any). When `restrict` is set,
    /// only references to these types are indexed (`where(resolve() is Patient)`).
    pub targets: &'static [&'static str],
    pub restrict: bool,
    /// The spec's description, for the CapabilityStatement.
    pub description: &'static str,
    pub origin: Origin,
    /// For date parameters: what an ascending `_sort` orders by.
    pub order: DateOrder,
}

impl SearchParam {
    /// The canonical URL of this parameter's SearchParameter resource, as `ty` declares it.
    pub fn definition(&self, ty: ResourceType) -> String {
        match (self.origin, self.name.strip_prefix('_')) {
            (Origin::Server, _) => format!("{DEFINITION_BASE}/{ty}-{}", self.name),
            (Origin::Spec, Some(common)) => format!("http://hl7.org/fhir/SearchParameter/Resource-{common}"),
            (Origin::Spec, None) => format!("http://hl7.org/fhir/SearchParameter/{ty}-{}", self.name),
        }
    }

    /// The SearchParameter resource (http://hl7.org/fhir/R4/searchparameter.html) of a
    /// parameter this server defines, `None` for the specification's own.
    pub fn resource(&self, ty: ResourceType) -> Option<Value> {
        if self.origin != Origin::Server {
            return None;
        }
        let id = format!("{ty}-{}", self.name);
        Some(json!({
            "resourceType": "SearchParameter",
            "id": id,
            "url": self.definition(ty),
            "name": id,
            "status": "active",
            "publisher": "careplan",
            "description": self.description,
            "code": self.name,
            "base": [ty.as_str()],
            "type": self.kind.code(),
            "expression": self.expression,
            "xpathUsage": "normal",
        }))
    }
}

/// The parameter this server defines under the SearchParameter id `{Type}-{name}`.
pub fn defined_here(id: &str) -> Option<(ResourceType, &'static SearchParam)> {
    let (ty, name) = id.split_once('-')?;
    let ty = ResourceType::parse(ty)?;
    find(ty, name).filter(|p| p.origin == Origin::Server).map(|p| (ty, p))
}

/// Every search parameter of `ty`, including the common ones (`_id`, `_lastUpdated`, `_tag`,
/// `_profile`, `_security`, `_source`), in a stable order: the common ones first, then the
/// type's own in alphabetical order.
pub fn for_type(ty: ResourceType) -> &'static [SearchParam] {
    ty.descriptor().params
}

/// The search parameter `name` of `ty`, if it exists.
pub fn find(ty: ResourceType, name: &str) -> Option<&'static SearchParam> {
    for_type(ty).iter().find(|p| p.name == name)
}

/// A table of the common parameters (http://hl7.org/fhir/R4/resource.html#search) followed by
/// the given ones.
macro_rules! with_common {
    ($($param:expr,)*) => {
        &[
            token("_id", "Resource.id", &["id"], Shape::Code, "Logical id of this artifact"),
            date(
                "_lastUpdated",
                "Resource.meta.lastUpdated",
                &["meta", "lastUpdated"],
                Shape::DateTime,
                "When the resource version last changed",
            ),
            token("_tag", "Resource.meta.tag", &["meta", "tag"], Shape::Coding, "Tags applied to this resource"),
            // `meta.profile` is a canonical, but the parameter is of type uri: matched as a URI.
            uri(
                "_profile",
                "Resource.meta.profile",
                &["meta", "profile"],
                "Profiles this resource claims to conform to",
            ),
            token(
                "_security",
                "Resource.meta.security",
                &["meta", "security"],
                Shape::Coding,
                "Security Labels applied to this resource",
            ),
            uri("_source", "Resource.meta.source", &["meta", "source"], "Identifies where the resource comes from"),
            $($param,)*
        ]
    };
}

/// http://hl7.org/fhir/R4/careplan.html#search
pub static CARE_PLAN: &[SearchParam] = with_common![
    token(
        "activity-code",
        "CarePlan.activity.detail.code",
        &["activity", "detail", "code"],
        Shape::CodeableConcept,
        "Detail type of activity",
    ),
    date(
        "activity-date",
        "CarePlan.activity.detail.scheduled",
        &["activity", "detail", "scheduled[x]"],
        Shape::Scheduled,
        "Specified date occurs within period specified by CarePlan.activity.detail.scheduled[x]",
    ),
    reference(
        "activity-reference",
        "CarePlan.activity.reference",
        &["activity", "reference"],
        &[
            "Appointment",
            "MedicationRequest",
            "Task",
            "NutritionOrder",
            "RequestGroup",
            "VisionPrescription",
            "DeviceRequest",
            "ServiceRequest",
            "CommunicationRequest",
        ],
        "Activity details defined in specific resource",
    ),
    reference("based-on", "CarePlan.basedOn", &["basedOn"], &["CarePlan"], "Fulfills CarePlan"),
    reference("care-team", "CarePlan.careTeam", &["careTeam"], &["CareTeam"], "Who's involved in plan?"),
    token("category", "CarePlan.category", &["category"], Shape::CodeableConcept, "Type of plan"),
    reference("condition", "CarePlan.addresses", &["addresses"], &["Condition"], "Health issues this plan addresses",),
    date("date", "CarePlan.period", &["period"], Shape::Period, "Time period plan covers"),
    reference("encounter", "CarePlan.encounter", &["encounter"], &["Encounter"], "Encounter created as part of"),
    reference("goal", "CarePlan.goal", &["goal"], &["Goal"], "Desired outcome of plan"),
    token("identifier", "CarePlan.identifier", &["identifier"], Shape::Identifier, "External Ids for this plan"),
    SearchParam {
        shape: Shape::Canonical,
        ..reference(
            "instantiates-canonical",
            "CarePlan.instantiatesCanonical",
            &["instantiatesCanonical"],
            &["Questionnaire", "Measure", "PlanDefinition", "OperationDefinition", "ActivityDefinition"],
            "Instantiates FHIR protocol or definition",
        )
    },
    uri(
        "instantiates-uri",
        "CarePlan.instantiatesUri",
        &["instantiatesUri"],
        "Instantiates external protocol or definition",
    ),
    token("intent", "CarePlan.intent", &["intent"], Shape::Code, "proposal | plan | order | option"),
    reference("part-of", "CarePlan.partOf", &["partOf"], &["CarePlan"], "Part of referenced CarePlan"),
    patient("CarePlan.subject.where(resolve() is Patient)", &["subject"], "Who the care plan is for"),
    reference(
        "performer",
        "CarePlan.activity.detail.performer",
        &["activity", "detail", "performer"],
        &[
            "Practitioner",
            "Organization",
            "CareTeam",
            "Device",
            "Patient",
            "HealthcareService",
            "PractitionerRole",
            "RelatedPerson",
        ],
        "Matches if the practitioner is listed as a performer in any of the \"simple\" activities.  (For \
         performers of the detailed activities, chain through the activitydetail search parameter.)",
    ),
    reference("replaces", "CarePlan.replaces", &["replaces"], &["CarePlan"], "CarePlan replaced by this CarePlan"),
    token(
        "status",
        "CarePlan.status",
        &["status"],
        Shape::Code,
        "draft | active | on-hold | revoked | completed | entered-in-error | unknown",
    ),
    reference("subject", "CarePlan.subject", &["subject"], &["Group", "Patient"], "Who the care plan is for"),
];

/// http://hl7.org/fhir/R4/careteam.html#search
pub static CARE_TEAM: &[SearchParam] = with_common![
    token("category", "CareTeam.category", &["category"], Shape::CodeableConcept, "Type of team"),
    date("date", "CareTeam.period", &["period"], Shape::Period, "Time period team covers"),
    reference("encounter", "CareTeam.encounter", &["encounter"], &["Encounter"], "Encounter created as part of"),
    token("identifier", "CareTeam.identifier", &["identifier"], Shape::Identifier, "External Ids for this team"),
    reference(
        "participant",
        "CareTeam.participant.member",
        &["participant", "member"],
        &["Practitioner", "Organization", "CareTeam", "Patient", "PractitionerRole", "RelatedPerson"],
        "Who is involved",
    ),
    patient("CareTeam.subject.where(resolve() is Patient)", &["subject"], "Who care team is for"),
    token(
        "status",
        "CareTeam.status",
        &["status"],
        Shape::Code,
        "proposed | active | suspended | inactive | entered-in-error",
    ),
    reference("subject", "CareTeam.subject", &["subject"], &["Group", "Patient"], "Who care team is for"),
];

/// http://hl7.org/fhir/R4/goal.html#search (with `identifier` and `patient` from the clinical
/// parameters shared by many types)
pub static GOAL: &[SearchParam] = with_common![
    token(
        "achievement-status",
        "Goal.achievementStatus",
        &["achievementStatus"],
        Shape::CodeableConcept,
        "in-progress | improving | worsening | no-change | achieved | sustaining | not-achieved | no-progress | not-attainable",
    ),
    token("category", "Goal.category", &["category"], Shape::CodeableConcept, "E.g. Treatment, dietary, behavioral, etc."),
    token("identifier", "Goal.identifier", &["identifier"], Shape::Identifier, "External Ids for this goal"),
    token(
        "lifecycle-status",
        "Goal.lifecycleStatus",
        &["lifecycleStatus"],
        Shape::Code,
        "proposed | planned | accepted | active | on-hold | completed | cancelled | entered-in-error | rejected",
    ),
    patient("Goal.subject.where(resolve() is Patient)", &["subject"], "Who this goal is intended for"),
    date("start-date", "(Goal.start as date)", &["startDate"], Shape::DateTime, "When goal pursuit begins"),
    reference("subject", "Goal.subject", &["subject"], &["Patient", "Group", "Organization"], "Who this goal is intended for"),
    date("target-date", "(Goal.target.due as date)", &["target", "dueDate"], Shape::DateTime, "Reach goal on or before"),
];

/// http://hl7.org/fhir/R4/task.html#search
///
/// `based-on`, `focus` and `subject` are `Reference(Any)`: the spec spells out every resource
/// type as their target, which is what an empty `targets` means here.
pub static TASK: &[SearchParam] = with_common![
    date("authored-on", "Task.authoredOn", &["authoredOn"], Shape::DateTime, "Search by creation date"),
    reference("based-on", "Task.basedOn", &["basedOn"], &[], "Search by requests this task is based on"),
    token(
        "business-status",
        "Task.businessStatus",
        &["businessStatus"],
        Shape::CodeableConcept,
        "Search by business status",
    ),
    token("code", "Task.code", &["code"], Shape::CodeableConcept, "Search by task code"),
    reference("encounter", "Task.encounter", &["encounter"], &["Encounter"], "Search by encounter"),
    SearchParam {
        origin: Origin::Server,
        ..date(
            "execution-period",
            "Task.executionPeriod",
            &["executionPeriod"],
            Shape::Period,
            "Search by period Task is/was underway (R4's Task period)",
        )
    },
    reference("focus", "Task.focus", &["focus"], &[], "Search by task focus"),
    token(
        "group-identifier",
        "Task.groupIdentifier",
        &["groupIdentifier"],
        Shape::Identifier,
        "Search by group identifier",
    ),
    token(
        "identifier",
        "Task.identifier",
        &["identifier"],
        Shape::Identifier,
        "Search for a task instance by its business identifier",
    ),
    token("intent", "Task.intent", &["intent"], Shape::Code, "Search by task intent"),
    date("modified", "Task.lastModified", &["lastModified"], Shape::DateTime, "Search by last modification date"),
    overdue(),
    reference(
        "owner",
        "Task.owner",
        &["owner"],
        &[
            "Practitioner",
            "Organization",
            "CareTeam",
            "Device",
            "Patient",
            "HealthcareService",
            "PractitionerRole",
            "RelatedPerson",
        ],
        "Search by task owner",
    ),
    reference("part-of", "Task.partOf", &["partOf"], &["Task"], "Search by task this task is part of"),
    patient("Task.for.where(resolve() is Patient)", &["for"], "Search by patient"),
    token(
        "performer",
        "Task.performerType",
        &["performerType"],
        Shape::CodeableConcept,
        "Search by recommended type of performer (e.g., Requester, Performer, Scheduler).",
    ),
    // R4's `period` is `Task.executionPeriod`; here it is the period over which fulfilment is
    // sought, whose end is the due date (reference §5.2), so the coordinator's worklist can
    // `_sort=period` by due date. `execution-period` keeps R4's meaning under another name.
    SearchParam {
        origin: Origin::Server,
        order: DateOrder::End,
        ..date(
            "period",
            "Task.restriction.period",
            &["restriction", "period"],
            Shape::Period,
            "Search by the period over which fulfilment is sought; its end is the due date, and an \
             ascending _sort=period orders by due date, Tasks without one last (R4's period is \
             execution-period here)",
        )
    },
    token("priority", "Task.priority", &["priority"], Shape::Code, "Search by task priority"),
    reference(
        "requester",
        "Task.requester",
        &["requester"],
        &["Practitioner", "Organization", "Device", "Patient", "PractitionerRole", "RelatedPerson"],
        "Search by task requester",
    ),
    token("status", "Task.status", &["status"], Shape::Code, "Search by task status"),
    reference("subject", "Task.for", &["for"], &[], "Search by subject"),
];

/// http://hl7.org/fhir/R4/provenance.html#search
pub static PROVENANCE: &[SearchParam] = with_common![
    reference(
        "agent",
        "Provenance.agent.who",
        &["agent", "who"],
        &["Practitioner", "Organization", "Device", "Patient", "PractitionerRole", "RelatedPerson"],
        "Who participated",
    ),
    token(
        "agent-role",
        "Provenance.agent.role",
        &["agent", "role"],
        Shape::CodeableConcept,
        "What the agents role was"
    ),
    token(
        "agent-type",
        "Provenance.agent.type",
        &["agent", "type"],
        Shape::CodeableConcept,
        "How the agent participated"
    ),
    reference("entity", "Provenance.entity.what", &["entity", "what"], &[], "Identity of entity"),
    reference(
        "location",
        "Provenance.location",
        &["location"],
        &["Location"],
        "Where the activity occurred, if relevant"
    ),
    patient(
        "Provenance.target.where(resolve() is Patient)",
        &["target"],
        "Target Reference(s) (usually version specific)"
    ),
    date("recorded", "Provenance.recorded", &["recorded"], Shape::DateTime, "When the activity was recorded / updated"),
    token(
        "signature-type",
        "Provenance.signature.type",
        &["signature", "type"],
        Shape::Coding,
        "Indication of the reason the entity signed the object(s)",
    ),
    reference("target", "Provenance.target", &["target"], &[], "Target Reference(s) (usually version specific)"),
    date(
        "when",
        "(Provenance.occurred as dateTime)",
        &["occurredDateTime"],
        Shape::DateTime,
        "When the activity occurred"
    ),
];

/// http://hl7.org/fhir/R4/subscription.html#search, and `patient`: the Patient a patient-scoped
/// subscriber is limited to (a server-owned meta extension; see `subscriptions`).
pub static SUBSCRIPTION: &[SearchParam] = with_common![
    token("contact", "Subscription.contact", &["contact"], Shape::Identifier, "Contact details for the subscription"),
    SearchParam {
        kind: ParamType::String,
        ..token(
            "criteria",
            "Subscription.criteria",
            &["criteria"],
            Shape::String,
            "The search rules used to determine when to send a notification"
        )
    },
    SearchParam {
        origin: Origin::Server,
        ..patient(
            "Subscription.meta.extension('http://careplan.example/fhir/StructureDefinition/subscriber-patient').valueReference",
            &["meta", "extension('http://careplan.example/fhir/StructureDefinition/subscriber-patient')", "valueReference"],
            "The Patient a patient-scoped subscriber is limited to (only the server's own meta extension counts)"
        )
    },
    token(
        "payload",
        "Subscription.channel.payload",
        &["channel", "payload"],
        Shape::Code,
        "The mime-type of the notification payload"
    ),
    token("status", "Subscription.status", &["status"], Shape::Code, "The current state of the subscription"),
    token(
        "type",
        "Subscription.channel.type",
        &["channel", "type"],
        Shape::Code,
        "The type of channel for the sent notifications"
    ),
    uri(
        "url",
        "Subscription.channel.endpoint",
        &["channel", "endpoint"],
        "The uri that will receive the notifications"
    ),
];

/// The search parameters PlanDefinition and ActivityDefinition share, as the R4 tables of each
/// declare them (without the composite, quantity and `relatedArtifact.where(type=...)`
/// parameters, which this server does not index), with the type's own ones in their alphabetical
/// place after `date`: `$ty` is the type's name, `$noun` how its descriptions name it.
macro_rules! definitional {
    ($ty:literal, $noun:literal, [$($param:expr,)*]) => {
        with_common![
            token(
                "context",
                concat!("(", $ty, ".useContext.value as CodeableConcept)"),
                &["useContext", "valueCodeableConcept"],
                Shape::CodeableConcept,
                concat!("A use context assigned to the ", $noun),
            ),
            token(
                "context-type",
                concat!($ty, ".useContext.code"),
                &["useContext", "code"],
                Shape::Coding,
                concat!("A type of use context assigned to the ", $noun),
            ),
            date("date", concat!($ty, ".date"), &["date"], Shape::DateTime, concat!("The ", $noun, " publication date")),
            $($param,)*
            string("description", concat!($ty, ".description"), &["description"], concat!("The description of the ", $noun)),
            date(
                "effective",
                concat!($ty, ".effectivePeriod"),
                &["effectivePeriod"],
                Shape::Period,
                concat!("The time during which the ", $noun, " is intended to be in use"),
            ),
            token(
                "identifier",
                concat!($ty, ".identifier"),
                &["identifier"],
                Shape::Identifier,
                concat!("External identifier for the ", $noun),
            ),
            token(
                "jurisdiction",
                concat!($ty, ".jurisdiction"),
                &["jurisdiction"],
                Shape::CodeableConcept,
                concat!("Intended jurisdiction for the ", $noun),
            ),
            string("name", concat!($ty, ".name"), &["name"], concat!("Computationally friendly name of the ", $noun)),
            string("publisher", concat!($ty, ".publisher"), &["publisher"], concat!("Name of the publisher of the ", $noun)),
            token("status", concat!($ty, ".status"), &["status"], Shape::Code, concat!("The current status of the ", $noun)),
            string("title", concat!($ty, ".title"), &["title"], concat!("The human-friendly name of the ", $noun)),
            token("topic", concat!($ty, ".topic"), &["topic"], Shape::CodeableConcept, "Topics associated with the module"),
            uri("url", concat!($ty, ".url"), &["url"], concat!("The uri that identifies the ", $noun)),
            token("version", concat!($ty, ".version"), &["version"], Shape::Code, concat!("The business version of the ", $noun)),
        ]
    };
}

/// http://hl7.org/fhir/R4/plandefinition.html#search
pub static PLAN_DEFINITION: &[SearchParam] = definitional![
    "PlanDefinition",
    "plan definition",
    [SearchParam {
        shape: Shape::Canonical,
        ..reference(
            "definition",
            "PlanDefinition.action.definition",
            &["action", "definition[x]"],
            &["Questionnaire", "PlanDefinition", "ActivityDefinition"],
            "Activity or plan definitions used by plan definition",
        )
    },]
];

/// http://hl7.org/fhir/R4/activitydefinition.html#search
pub static ACTIVITY_DEFINITION: &[SearchParam] = definitional!["ActivityDefinition", "activity definition", []];

const fn token(
    name: &'static str,
    expression: &'static str,
    path: &'static [&'static str],
    shape: Shape,
    description: &'static str,
) -> SearchParam {
    SearchParam {
        name,
        kind: ParamType::Token,
        expression,
        path,
        shape,
        targets: &[],
        restrict: false,
        description,
        origin: Origin::Spec,
        order: DateOrder::Start,
    }
}

const fn date(
    name: &'static str,
    expression: &'static str,
    path: &'static [&'static str],
    shape: Shape,
    description: &'static str,
) -> SearchParam {
    SearchParam { kind: ParamType::Date, ..token(name, expression, path, shape, description) }
}

const fn uri(
    name: &'static str,
    expression: &'static str,
    path: &'static [&'static str],
    description: &'static str,
) -> SearchParam {
    SearchParam { kind: ParamType::Uri, ..token(name, expression, path, Shape::Uri, description) }
}

const fn string(
    name: &'static str,
    expression: &'static str,
    path: &'static [&'static str],
    description: &'static str,
) -> SearchParam {
    SearchParam { kind: ParamType::String, ..token(name, expression, path, Shape::String, description) }
}

const fn reference(
    name: &'static str,
    expression: &'static str,
    path: &'static [&'static str],
    targets: &'static [&'static str],
    description: &'static str,
) -> SearchParam {
    SearchParam { kind: ParamType::Reference, targets, ..token(name, expression, path, Shape::Reference, description) }
}

/// `patient`: the subject, only where it is a Patient (`.where(resolve() is Patient)`). The
/// shared definition (`clinical-patient`) lists Group as a target too, but its expression only
/// ever yields Patients, so Patient is the only target here.
const fn patient(expression: &'static str, path: &'static [&'static str], description: &'static str) -> SearchParam {
    SearchParam { targets: &["Patient"], restrict: true, ..reference("patient", expression, path, &[], description) }
}

/// `overdue` (Task): open work past its due date, as of when the search runs (reference §5.2).
/// The expression is FHIRPath for what the server computes: a closed Task (and a draft) has no
/// value, so neither `true` nor `false` finds it.
const fn overdue() -> SearchParam {
    SearchParam {
        shape: Shape::Computed(Computed::Overdue { due: "period", status: "status" }),
        origin: Origin::Server,
        ..token(
            "overdue",
            "Task.where(status in ('requested' | 'received' | 'accepted' | 'ready' | 'in-progress' | 'on-hold'))\
             .select(restriction.period.end.exists() and restriction.period.end < now())",
            &[],
            Shape::Code,
            "Open Tasks (requested, received, accepted, ready, in-progress, on-hold) whose due date \
             (restriction.period.end) has passed: true; open Tasks not yet due or without a due date: false",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{defined_here, find, for_type, Computed, Origin, ParamType, Shape};
    use crate::resource::ResourceType;

    /// Checks the parameters of `ty`, one line each: `name type expression`, in table order.
    fn check(ty: ResourceType, expect: &str) {
        let actual: Vec<String> =
            for_type(ty).iter().map(|p| format!("{} {} {}", p.name, p.kind.code(), p.expression)).collect();
        let expect: Vec<&str> = expect.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert_eq!(actual, expect, "\nactual:\n{}\n", actual.join("\n"));
    }

    const COMMON: &str = "
        _id token Resource.id
        _lastUpdated date Resource.meta.lastUpdated
        _tag token Resource.meta.tag
        _profile uri Resource.meta.profile
        _security token Resource.meta.security
        _source uri Resource.meta.source
    ";

    #[test]
    fn careplan() {
        let own = "
            activity-code token CarePlan.activity.detail.code
            activity-date date CarePlan.activity.detail.scheduled
            activity-reference reference CarePlan.activity.reference
            based-on reference CarePlan.basedOn
            care-team reference CarePlan.careTeam
            category token CarePlan.category
            condition reference CarePlan.addresses
            date date CarePlan.period
            encounter reference CarePlan.encounter
            goal reference CarePlan.goal
            identifier token CarePlan.identifier
            instantiates-canonical reference CarePlan.instantiatesCanonical
            instantiates-uri uri CarePlan.instantiatesUri
            intent token CarePlan.intent
            part-of reference CarePlan.partOf
            patient reference CarePlan.subject.where(resolve() is Patient)
            performer reference CarePlan.activity.detail.performer
            replaces reference CarePlan.replaces
            status token CarePlan.status
            subject reference CarePlan.subject
        ";
        check(ResourceType::CarePlan, &format!("{COMMON}{own}"));
    }

    #[test]
    fn goal() {
        let own = "
            achievement-status token Goal.achievementStatus
            category token Goal.category
            identifier token Goal.identifier
            lifecycle-status token Goal.lifecycleStatus
            patient reference Goal.subject.where(resolve() is Patient)
            start-date date (Goal.start as date)
            subject reference Goal.subject
            target-date date (Goal.target.due as date)
        ";
        check(ResourceType::Goal, &format!("{COMMON}{own}"));
    }

    /// The parameters PlanDefinition and ActivityDefinition share (R4's definition pattern).
    fn definitional(ty: &str, definition: &str) -> String {
        format!(
            "
            context token ({ty}.useContext.value as CodeableConcept)
            context-type token {ty}.useContext.code
            date date {ty}.date
            {definition}
            description string {ty}.description
            effective date {ty}.effectivePeriod
            identifier token {ty}.identifier
            jurisdiction token {ty}.jurisdiction
            name string {ty}.name
            publisher string {ty}.publisher
            status token {ty}.status
            title string {ty}.title
            topic token {ty}.topic
            url uri {ty}.url
            version token {ty}.version
            "
        )
    }

    #[test]
    fn plandefinition() {
        let own = definitional("PlanDefinition", "definition reference PlanDefinition.action.definition");
        check(ResourceType::PlanDefinition, &format!("{COMMON}{own}"));
    }

    #[test]
    fn activitydefinition() {
        let own = definitional("ActivityDefinition", "");
        check(ResourceType::ActivityDefinition, &format!("{COMMON}{own}"));
    }

    #[test]
    fn careteam() {
        let own = "
            category token CareTeam.category
            date date CareTeam.period
            encounter reference CareTeam.encounter
            identifier token CareTeam.identifier
            participant reference CareTeam.participant.member
            patient reference CareTeam.subject.where(resolve() is Patient)
            status token CareTeam.status
            subject reference CareTeam.subject
        ";
        check(ResourceType::CareTeam, &format!("{COMMON}{own}"));
    }

    #[test]
    fn task() {
        let own = "
            authored-on date Task.authoredOn
            based-on reference Task.basedOn
            business-status token Task.businessStatus
            code token Task.code
            encounter reference Task.encounter
            execution-period date Task.executionPeriod
            focus reference Task.focus
            group-identifier token Task.groupIdentifier
            identifier token Task.identifier
            intent token Task.intent
            modified date Task.lastModified
            overdue token Task.where(status in ('requested' | 'received' | 'accepted' | 'ready' | 'in-progress' | 'on-hold')).select(restriction.period.end.exists() and restriction.period.end < now())
            owner reference Task.owner
            part-of reference Task.partOf
            patient reference Task.for.where(resolve() is Patient)
            performer token Task.performerType
            period date Task.restriction.period
            priority token Task.priority
            requester reference Task.requester
            status token Task.status
            subject reference Task.for
        ";
        check(ResourceType::Task, &format!("{COMMON}{own}"));
    }

    /// What the index relies on: each path is the expression's, each shape fits the type,
    /// only `patient` restricts (to Patient), and only references have targets.
    #[test]
    fn tables_are_consistent() {
        for ty in ResourceType::ALL {
            let params = for_type(ty);
            for (i, p) in params.iter().enumerate() {
                let what = format!("{ty}.{}", p.name);
                assert!(params[..i].iter().all(|q| q.name != p.name), "{what}: declared twice");
                assert!(std::ptr::eq(find(ty, p.name).expect("found"), p), "{what}: find");
                assert!(!p.description.is_empty(), "{what}: no description");

                if let Shape::Computed(Computed::Overdue { due, status }) = p.shape {
                    assert!(p.path.is_empty(), "{what}: a computed parameter reads no path");
                    assert_eq!(find(ty, due).map(|d| d.kind), Some(ParamType::Date), "{what}: due");
                    assert_eq!(find(ty, status).map(|s| s.kind), Some(ParamType::Token), "{what}: status");
                    assert_eq!(p.kind, ParamType::Token, "{what}: true/false is a token");
                    assert_eq!(p.origin, Origin::Server, "{what}: no specification defines it");
                    continue;
                }
                let expression = p.expression.strip_suffix(".where(resolve() is Patient)").unwrap_or(p.expression);
                // `(X.occurred as dateTime)` is the choice element `occurredDateTime`, and
                // `(Goal.start as date)` is `startDate`.
                let cast =
                    expression.strip_prefix('(').and_then(|e| e.strip_suffix(')')).and_then(|e| e.split_once(" as "));
                let expression = match cast {
                    Some((base, to)) => {
                        let mut chars = to.chars();
                        let first = chars.next().map(|c| c.to_ascii_uppercase()).into_iter();
                        format!("{base}{}", first.chain(chars).collect::<String>())
                    }
                    None => expression.to_owned(),
                };
                let path: Vec<&str> = p.path.iter().map(|s| s.strip_suffix("[x]").unwrap_or(s)).collect();
                let root = if p.name.starts_with('_') { "Resource" } else { ty.as_str() };
                assert_eq!(expression, format!("{root}.{}", path.join(".")), "{what}: path");

                let fits = match p.kind {
                    ParamType::Token => {
                        matches!(p.shape, Shape::Code | Shape::Coding | Shape::CodeableConcept | Shape::Identifier)
                    }
                    ParamType::Reference => matches!(p.shape, Shape::Reference | Shape::Canonical),
                    ParamType::Date => matches!(p.shape, Shape::DateTime | Shape::Period | Shape::Scheduled),
                    ParamType::String => p.shape == Shape::String,
                    ParamType::Uri => p.shape == Shape::Uri,
                };
                assert!(fits, "{what}: {:?} does not fit {:?}", p.shape, p.kind);
                assert_eq!(p.restrict, p.name == "patient", "{what}: restrict");
                if p.restrict {
                    assert_eq!(p.targets, ["Patient"], "{what}: targets");
                }
                if p.kind != ParamType::Reference {
                    assert!(p.targets.is_empty(), "{what}: targets on a {:?}", p.kind);
                }
            }
        }
        assert!(find(ResourceType::Task, "date").is_none());
        assert!(find(ResourceType::CarePlan, "_content").is_none());
    }

    /// Parameters of our own have our canonical URL and a SearchParameter resource; the
    /// specification's have neither.
    #[test]
    fn definitions_name_who_defines_the_parameter() {
        let check = |ty: ResourceType, name: &str, expect: &str| {
            let param = find(ty, name).expect("declared");
            assert_eq!(param.definition(ty), expect, "{ty}.{name}");
            assert_eq!(param.resource(ty).is_some(), param.origin == Origin::Server, "{ty}.{name}");
        };
        check(ResourceType::Task, "_lastUpdated", "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated");
        check(ResourceType::Task, "owner", "http://hl7.org/fhir/SearchParameter/Task-owner");
        check(ResourceType::Task, "overdue", "http://careplan.example/fhir/SearchParameter/Task-overdue");
        check(ResourceType::Task, "period", "http://careplan.example/fhir/SearchParameter/Task-period");

        let (ty, overdue) = defined_here("Task-overdue").expect("ours");
        let resource = overdue.resource(ty).expect("a resource");
        assert_eq!(resource["url"], overdue.definition(ty));
        assert_eq!(resource["id"], "Task-overdue");
        assert_eq!(resource["type"], "token");
        assert_eq!(resource["base"], serde_json::json!(["Task"]));
        assert!(defined_here("Task-owner").is_none(), "the specification's");
        assert!(defined_here("Task-nothing").is_none());
        assert!(defined_here("Patient-overdue").is_none());
    }
}
