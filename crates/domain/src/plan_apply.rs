//! `PlanDefinition/[id]/$apply` (http://hl7.org/fhir/R4/plandefinition-operation-apply.html),
//! the pure part: the operation's parameters, and the expansion of a PlanDefinition (with the
//! ActivityDefinitions its actions name) for one patient on one date into the resources to
//! create: a CareTeam skeleton, a CarePlan and one Task per action. The service reads the
//! template, resolves the canonicals and runs the result through the write engine as one
//! transaction; nothing here does IO.
//!
//! Parameters (GET query or POST `Parameters`): `subject` (`Patient/[id]`, required, exactly
//! one), `practitioner` (`Practitioner/[id]` or `PractitionerRole/[id]`), `organization`
//! (`Organization/[id]`), and this server's own `birthDate` (a date) or `age` (whole years),
//! which the steps timed by the patient's age need (the transition-to-adult-care track).
//!
//! Due dates (`Task.restriction.period`), from the action's `timing[x]` (else the
//! ActivityDefinition's):
//! - `timingDuration`: due that long after the apply date;
//! - `timingTiming` with `repeat.period`/`periodUnit`: the first occurrence, one period after;
//! - `timingAge`: due when the patient reaches that age;
//! - `timingRange` (of ages): from the low age to the high age;
//! - `relatedAction` with `offsetDuration`/`offsetRange` overrides the timing: counted from the
//!   end (or start, for `*-start` relationships) of an EARLIER action of the plan.
//!
//! A date by age that has already passed is the apply date: the step is due now.
//!
//! Limits (`MAX_ACTIONS`, `MAX_ACTION_DEPTH`): the actions are walked with an explicit stack,
//! never recursively, and a template with more is refused (422, too-costly).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use time::{Date, Duration, Month};

use crate::issue::{Issue, IssueCode};

/// Most actions (at every level together) one PlanDefinition may hold to be applied.
pub const MAX_ACTIONS: usize = 100;
/// Most levels of actions (`action.action.action` is 3).
pub const MAX_ACTION_DEPTH: usize = 3;
/// The oldest age (years) the `age` parameter takes.
pub const MAX_AGE: u32 = 130;

/// The local code system of the CarePlan category that marks the service's shared plans.
pub const CATEGORY_SYSTEM: &str = "http://careplan.example/fhir/CodeSystem/careplan-category";

/// How the patient's age is known, for steps timed by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Born {
    On(Date),
    /// Whole years on the apply date.
    YearsAgo(u32),
}

/// The operation's parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyRequest {
    /// The patient's id (`subject` is `Patient/[id]`).
    pub patient: String,
    /// `Practitioner/[id]` or `PractitionerRole/[id]`: the requester and author.
    pub practitioner: Option<String>,
    /// `Organization/[id]`.
    pub organization: Option<String>,
    pub born: Option<Born>,
}

/// Why an apply is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The parameters are wrong (400).
    Input(Vec<Issue>),
    /// The template cannot be applied (422): an unresolvable definition, a limit, a bad timing.
    Template(Vec<Issue>),
}

/// One parameter as it arrived, with the FHIRPath of where.
enum Raw<'a> {
    Text(&'a str),
    Integer(i64),
}

/// The parameters of a GET: `name=value` pairs (`_format` and `_pretty` are no parameters).
pub fn from_query(pairs: &[(String, String)]) -> Result<ApplyRequest, Refusal> {
    let raw = pairs
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"))
        .map(|(name, value)| (name.as_str(), Raw::Text(value.as_str()), name.clone()));
    build(raw)
}

/// The parameters of a POST: a `Parameters` resource.
pub fn from_parameters(body: &Value) -> Result<ApplyRequest, Refusal> {
    let bad =
        |expression: String, why: String| Refusal::Input(vec![Issue::error(IssueCode::Structure, expression, why)]);
    let Some(object) = body.as_object() else {
        return Err(bad("Parameters".into(), "the body must be a Parameters resource".into()));
    };
    if object.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("resourceType".into(), "the body of $apply must be a Parameters resource".into()));
    }
    for key in object.keys() {
        if !matches!(key.as_str(), "resourceType" | "id" | "meta" | "implicitRules" | "language" | "parameter") {
            return Err(bad(format!("Parameters.{key}"), format!("Parameters has no element '{key}'")));
        }
    }
    let empty = Vec::new();
    let parameters = match object.get("parameter") {
        None => &empty,
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("Parameters.parameter".into(), "parameter must be a list".into())),
    };
    let mut raw = Vec::with_capacity(parameters.len());
    for (i, parameter) in parameters.iter().enumerate() {
        let at = format!("Parameters.parameter[{i}]");
        let Some(members) = parameter.as_object() else {
            return Err(bad(at, "each parameter must be an object".into()));
        };
        let Some(name) = members.get("name").and_then(Value::as_str) else {
            return Err(bad(format!("{at}.name"), "each parameter needs a name".into()));
        };
        let mut value = None;
        for (key, member) in members {
            let found = match (key.as_str(), member) {
                ("name" | "id" | "extension", _) => continue,
                ("valueString" | "valueDate", Value::String(text)) => Raw::Text(text),
                ("valueReference", Value::Object(reference)) => match reference.get("reference") {
                    Some(Value::String(text)) => Raw::Text(text),
                    _ => return Err(bad(format!("{at}.valueReference"), "the reference needs a literal `reference`".into())),
                },
                ("valueInteger", Value::Number(n)) => match n.as_i64() {
                    Some(n) => Raw::Integer(n),
                    None => return Err(bad(format!("{at}.valueInteger"), "not an integer".into())),
                },
                _ => {
                    return Err(bad(
                        format!("{at}.{key}"),
                        format!("parameter '{name}' cannot carry '{key}' here (valueString, valueReference, valueDate or valueInteger)"),
                    ))
                }
            };
            if value.replace((found, format!("{at}.{key}"))).is_some() {
                return Err(bad(at.clone(), "a parameter holds one value".into()));
            }
        }
        let Some((value, expression)) = value else {
            return Err(bad(format!("{at}.value[x]"), format!("parameter '{name}' has no value")));
        };
        raw.push((name, value, expression));
    }
    build(raw.into_iter())
}

fn build<'a>(raw: impl Iterator<Item = (&'a str, Raw<'a>, String)>) -> Result<ApplyRequest, Refusal> {
    let mut issues = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let (mut patient, mut practitioner, mut organization, mut born) = (None, None, None, None);
    for (name, value, at) in raw {
        let mut fail = |code, why: String| issues.push(Issue::error(code, at.clone(), why));
        if seen.contains(&name) {
            fail(IssueCode::Invalid, format!("'{name}' is given twice; this server applies a plan for one of each"));
            continue;
        }
        seen.push(name);
        let text = match &value {
            Raw::Text(text) => Some(*text),
            Raw::Integer(_) => None,
        };
        match name {
            "subject" => match text.and_then(|t| reference(t, &["Patient"])) {
                Some(id) => patient = Some(id.to_owned()),
                None => fail(IssueCode::Value, "subject must be a Patient reference such as Patient/123".into()),
            },
            "practitioner" => match text.filter(|t| reference(t, &["Practitioner", "PractitionerRole"]).is_some()) {
                Some(t) => practitioner = Some(t.to_owned()),
                None => {
                    fail(IssueCode::Value, "practitioner must be Practitioner/[id] or PractitionerRole/[id]".into())
                }
            },
            "organization" => match text.filter(|t| reference(t, &["Organization"]).is_some()) {
                Some(t) => organization = Some(t.to_owned()),
                None => fail(IssueCode::Value, "organization must be Organization/[id]".into()),
            },
            "birthDate" => match text.and_then(parse_date) {
                Some(date) => born = Some(Born::On(date)),
                None => fail(IssueCode::Value, "birthDate must be a date (YYYY-MM-DD)".into()),
            },
            "age" => {
                let years = match value {
                    Raw::Integer(n) => Some(n),
                    Raw::Text(t) => t.parse::<i64>().ok(),
                };
                match years.and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= MAX_AGE) {
                    Some(n) => born = Some(Born::YearsAgo(n)),
                    None => fail(IssueCode::Value, format!("age must be whole years from 0 to {MAX_AGE}")),
                }
            }
            "planDefinition" | "encounter" | "userType" | "userLanguage" | "userTaskContext" | "setting"
            | "settingContext" => {
                fail(IssueCode::NotSupported, format!("this server does not support the $apply parameter '{name}'"))
            }
            _ => fail(IssueCode::NotSupported, format!("'{name}' is not a parameter of $apply")),
        }
    }
    if seen.contains(&"birthDate") && seen.contains(&"age") {
        issues.push(Issue::error(IssueCode::Invalid, "age", "give birthDate or age, not both"));
    }
    match patient {
        Some(patient) if issues.is_empty() => Ok(ApplyRequest { patient, practitioner, organization, born }),
        None if issues.is_empty() => Err(Refusal::Input(vec![Issue::error(
            IssueCode::Required,
            "subject",
            "subject (the Patient the plan is for, e.g. Patient/123) is required",
        )])),
        _ => Err(Refusal::Input(issues)),
    }
}

/// The id of a relative reference `Type/id` of one of `types`.
fn reference<'a>(text: &'a str, types: &[&str]) -> Option<&'a str> {
    let (ty, id) = text.split_once('/')?;
    (types.contains(&ty) && crate::id::is_valid(id)).then_some(id)
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn format_date(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

// ---------------------------------------------------------------------------------------------
// The template.

/// One leaf action (an action without sub-actions): what becomes one Task.
struct Step<'a> {
    action: &'a Value,
    /// FHIRPath of the action (`PlanDefinition.action[1].action[0]`).
    path: String,
    definition: Option<&'a Value>,
}

/// The canonical URLs the template's actions name (`definitionCanonical`), each once, in order.
/// Also checks the limits, so that nothing is looked up for a template that cannot be applied.
pub fn canonicals(plan: &Value) -> Result<Vec<String>, Refusal> {
    let mut out: Vec<String> = Vec::new();
    for (action, path) in actions(plan)? {
        match (action.get("definitionCanonical"), action.get("definitionUri")) {
            (Some(Value::String(url)), _) => {
                if !out.contains(url) {
                    out.push(url.clone());
                }
            }
            (Some(_), _) => return Err(template(format!("{path}.definitionCanonical"), "not a canonical URL")),
            (None, Some(_)) => {
                return Err(template(
                    format!("{path}.definitionUri"),
                    "this server applies actions defined by an ActivityDefinition (definitionCanonical), not by URI",
                ))
            }
            (None, None) => {}
        }
    }
    Ok(out)
}

fn template(expression: String, why: impl Into<String>) -> Refusal {
    Refusal::Template(vec![Issue::error(IssueCode::BusinessRule, expression, why)])
}

/// Every action of the plan in document order, each with its path; at most `MAX_ACTIONS` in
/// at most `MAX_ACTION_DEPTH` levels (an explicit stack, no recursion).
fn actions(plan: &Value) -> Result<Vec<(&Value, String)>, Refusal> {
    let too_costly =
        |expression: String, why: String| Refusal::Template(vec![Issue::error(IssueCode::TooCostly, expression, why)]);
    let mut out = Vec::new();
    let mut stack: Vec<(&Value, String, usize)> = Vec::new();
    fn push<'v>(stack: &mut Vec<(&'v Value, String, usize)>, list: Option<&'v Value>, parent: &str, depth: usize) {
        if let Some(Value::Array(items)) = list {
            for (i, item) in items.iter().enumerate().rev() {
                stack.push((item, format!("{parent}.action[{i}]"), depth));
            }
        }
    }
    // The stack never holds more than MAX_ACTIONS + one list of siblings.
    push(&mut stack, plan.get("action"), "PlanDefinition", 1);
    while let Some((action, path, depth)) = stack.pop() {
        if depth > MAX_ACTION_DEPTH {
            return Err(too_costly(path, format!("actions may be nested at most {MAX_ACTION_DEPTH} levels deep")));
        }
        out.push((action, path.clone()));
        if out.len() + stack.len() > MAX_ACTIONS {
            return Err(too_costly(
                "PlanDefinition.action".into(),
                format!("a PlanDefinition applied here may hold at most {MAX_ACTIONS} actions"),
            ));
        }
        push(&mut stack, action.get("action"), &path, depth + 1);
    }
    Ok(out)
}

/// What to create, as JSON with `urn:uuid:` references between the new resources.
#[derive(Debug, Clone)]
pub struct Planned {
    pub full_url: String,
    pub resource: Value,
}

/// The resources an apply creates, in the order they are written (the CareTeam, the CarePlan
/// that names it, then the Tasks based on the plan).
#[derive(Debug, Clone)]
pub struct Expansion {
    pub care_team: Planned,
    pub care_plan: Planned,
    pub tasks: Vec<Planned>,
}

/// What the expansion needs beside the template.
pub struct Setting<'a> {
    /// The ActivityDefinitions found for `canonicals(plan)`, by the canonical as written.
    pub definitions: &'a HashMap<String, Value>,
    /// The template's canonical when it has no `url` (its URL on this server).
    pub fallback_canonical: &'a str,
    /// The apply date (UTC).
    pub today: Date,
    /// A new `urn:uuid:` URL on each call.
    pub new_url: &'a mut dyn FnMut() -> String,
}

/// Expand the PlanDefinition `plan` for `request`.
pub fn expand(plan: &Value, request: &ApplyRequest, setting: Setting<'_>) -> Result<Expansion, Refusal> {
    let Setting { definitions, fallback_canonical, today, new_url } = setting;
    let mut steps = Vec::new();
    for (action, path) in actions(plan)? {
        if action.get("action").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            continue; // a group: its sub-actions are the steps
        }
        let definition = match action.get("definitionCanonical").and_then(Value::as_str) {
            Some(url) => Some(definitions.get(url).ok_or_else(|| {
                template(
                    format!("{path}.definitionCanonical"),
                    format!("no ActivityDefinition with the canonical URL '{url}' is stored here"),
                )
            })?),
            None => None,
        };
        steps.push(Step { action, path, definition });
    }
    let born = match request.born {
        Some(Born::On(date)) => Some(date),
        Some(Born::YearsAgo(years)) => Some(add_months(today, -(i64::from(years) * 12)).ok_or_else(|| {
            Refusal::Input(vec![Issue::error(IssueCode::Value, "age", "the age gives no valid birth date")])
        })?),
        None => None,
    };
    if born.is_some_and(|b| b > today) {
        return Err(Refusal::Input(vec![Issue::error(IssueCode::Value, "birthDate", "birthDate is after today")]));
    }
    let patient = json!({ "reference": format!("Patient/{}", request.patient) });
    let requester = request.practitioner.as_ref().or(request.organization.as_ref()).map(|r| json!({ "reference": r }));
    let today_text = format_date(today);
    let plan_url = new_url();
    let team_url = new_url();
    let title = plan.get("title").or_else(|| plan.get("name")).and_then(Value::as_str).unwrap_or("Care plan");

    let mut roles: Vec<&Value> = Vec::new();
    let mut tasks = Vec::with_capacity(steps.len());
    let mut dates: HashMap<&str, (Option<Date>, Option<Date>)> = HashMap::new();
    for step in &steps {
        let get = |name: &str| step.action.get(name).or_else(|| step.definition.and_then(|d| d.get(name)));
        let performer_types = performer_types(step);
        for role in &performer_types {
            if !roles.contains(role) {
                roles.push(role);
            }
        }
        let (start, end) = due(step, &dates, today, born)?;
        if let Some(id) = step.action.get("id").and_then(Value::as_str) {
            dates.insert(id, (start, end));
        }
        let mut task = Map::new();
        task.insert("resourceType".into(), json!("Task"));
        if let Some(url) = step.action.get("definitionCanonical") {
            task.insert("instantiatesCanonical".into(), url.clone());
        }
        task.insert("basedOn".into(), json!([{ "reference": plan_url }]));
        task.insert("status".into(), json!("requested"));
        task.insert("intent".into(), json!("order"));
        if let Some(priority) = get("priority") {
            task.insert("priority".into(), priority.clone());
        }
        let code = step
            .definition
            .and_then(|d| d.get("code"))
            .or_else(|| step.action.get("code").and_then(Value::as_array).and_then(|codes| codes.first()));
        if let Some(code) = code {
            task.insert("code".into(), code.clone());
        }
        let description = step
            .action
            .get("title")
            .or_else(|| step.definition.and_then(|d| d.get("title")))
            .or_else(|| step.action.get("description"));
        if let Some(description) = description {
            task.insert("description".into(), description.clone());
        }
        task.insert("for".into(), patient.clone());
        task.insert("authoredOn".into(), json!(today_text));
        if let Some(requester) = &requester {
            task.insert("requester".into(), requester.clone());
        }
        if !performer_types.is_empty() {
            task.insert("performerType".into(), Value::Array(performer_types.into_iter().cloned().collect()));
        }
        if start.is_some() || end.is_some() {
            let mut period = Map::new();
            if let Some(start) = start {
                period.insert("start".into(), json!(format_date(start)));
            }
            if let Some(end) = end {
                period.insert("end".into(), json!(format_date(end)));
            }
            task.insert("restriction".into(), json!({ "period": period }));
        }
        tasks.push(Planned { full_url: new_url(), resource: Value::Object(task) });
    }

    let mut team = Map::new();
    team.insert("resourceType".into(), json!("CareTeam"));
    team.insert("status".into(), json!("active"));
    team.insert("name".into(), json!(format!("{title} team")));
    team.insert("subject".into(), patient.clone());
    team.insert("period".into(), json!({ "start": today_text }));
    if !roles.is_empty() {
        let participants: Vec<Value> = roles.iter().map(|role| json!({ "role": [role] })).collect();
        team.insert("participant".into(), Value::Array(participants));
    }
    if let Some(organization) = &request.organization {
        team.insert("managingOrganization".into(), json!([{ "reference": organization }]));
    }

    let canonical = match (plan.get("url").and_then(Value::as_str), plan.get("version").and_then(Value::as_str)) {
        (Some(url), Some(version)) => format!("{url}|{version}"),
        (Some(url), None) => url.to_owned(),
        (None, _) => fallback_canonical.to_owned(),
    };
    let mut care_plan = Map::new();
    care_plan.insert("resourceType".into(), json!("CarePlan"));
    care_plan.insert("instantiatesCanonical".into(), json!([canonical]));
    care_plan.insert("status".into(), json!("active"));
    care_plan.insert("intent".into(), json!("plan"));
    care_plan.insert(
        "category".into(),
        json!([
            { "coding": [{ "system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "code": "assess-plan" }] },
            { "coding": [{ "system": CATEGORY_SYSTEM, "code": "complex-care-shared-plan", "display": "Shared complex-care plan" }] },
        ]),
    );
    care_plan.insert("title".into(), json!(title));
    if let Some(description) = plan.get("description") {
        care_plan.insert("description".into(), description.clone());
    }
    care_plan.insert("subject".into(), patient);
    care_plan.insert("period".into(), json!({ "start": today_text }));
    care_plan.insert("created".into(), json!(today_text));
    if let Some(requester) = &requester {
        care_plan.insert("author".into(), requester.clone());
    }
    care_plan.insert("careTeam".into(), json!([{ "reference": team_url }]));
    if !tasks.is_empty() {
        let activity: Vec<Value> =
            tasks.iter().map(|t| json!({ "reference": { "reference": t.full_url, "type": "Task" } })).collect();
        care_plan.insert("activity".into(), Value::Array(activity));
    }
    Ok(Expansion {
        care_team: Planned { full_url: team_url, resource: Value::Object(team) },
        care_plan: Planned { full_url: plan_url, resource: Value::Object(care_plan) },
        tasks,
    })
}

/// The roles of the step's participants: the ActivityDefinition's, else the action's.
fn performer_types<'a>(step: &Step<'a>) -> Vec<&'a Value> {
    let roles = |holder: Option<&'a Value>| -> Vec<&'a Value> {
        holder
            .and_then(|h| h.get("participant"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|p| p.get("role")).collect())
            .unwrap_or_default()
    };
    let from_definition = roles(step.definition);
    if from_definition.is_empty() {
        roles(Some(step.action))
    } else {
        from_definition
    }
}

/// The step's period: from a related earlier action, else from its timing.
fn due(
    step: &Step<'_>,
    earlier: &HashMap<&str, (Option<Date>, Option<Date>)>,
    today: Date,
    born: Option<Date>,
) -> Result<(Option<Date>, Option<Date>), Refusal> {
    let path = &step.path;
    if let Some(related) = step.action.get("relatedAction").and_then(Value::as_array).and_then(|r| r.first()) {
        let at = format!("{path}.relatedAction[0]");
        let id = related.get("actionId").and_then(Value::as_str).unwrap_or_default();
        let Some(&(start, end)) = earlier.get(id) else {
            return Err(template(format!("{at}.actionId"), format!("'{id}' names no earlier action of this plan")));
        };
        let from_start = related.get("relationship").and_then(Value::as_str).is_some_and(|r| r.ends_with("-start"));
        let base = if from_start { start.or(end) } else { end.or(start) }.unwrap_or(today);
        if let Some(offset) = related.get("offsetDuration") {
            return Ok((None, Some(shift(base, offset, &format!("{at}.offsetDuration"))?)));
        }
        if let Some(range) = related.get("offsetRange") {
            let at = format!("{at}.offsetRange");
            let low = range.get("low").map(|q| shift(base, q, &format!("{at}.low"))).transpose()?;
            let high = range.get("high").map(|q| shift(base, q, &format!("{at}.high"))).transpose()?;
            return Ok((low, high));
        }
        return Ok((None, Some(base)));
    }
    let (holder, prefix) = if step.action.as_object().is_some_and(|a| a.keys().any(|k| k.starts_with("timing"))) {
        (step.action, path.clone())
    } else {
        match step.definition {
            Some(definition) => (definition, "ActivityDefinition".to_owned()),
            None => return Ok((None, None)),
        }
    };
    let by_age = |age: &Value, at: String| -> Result<Date, Refusal> {
        let Some(born) = born else {
            return Err(Refusal::Input(vec![Issue::error(
                IssueCode::Required,
                "birthDate",
                format!("{at} is timed by the patient's age: give birthDate or age"),
            )]));
        };
        Ok(shift(born, age, &at)?.max(today))
    };
    if let Some(duration) = holder.get("timingDuration") {
        return Ok((None, Some(shift(today, duration, &format!("{prefix}.timingDuration"))?)));
    }
    if let Some(age) = holder.get("timingAge") {
        return Ok((None, Some(by_age(age, format!("{prefix}.timingAge"))?)));
    }
    if let Some(range) = holder.get("timingRange") {
        let at = format!("{prefix}.timingRange");
        let low = range.get("low").map(|q| by_age(q, format!("{at}.low"))).transpose()?;
        let high = range.get("high").map(|q| by_age(q, format!("{at}.high"))).transpose()?;
        return Ok((low, high));
    }
    if let Some(repeat) = holder.get("timingTiming").and_then(|t| t.get("repeat")) {
        let at = format!("{prefix}.timingTiming.repeat");
        let period = repeat.get("period").and_then(Value::as_f64);
        let unit = repeat.get("periodUnit").and_then(Value::as_str);
        if let (Some(period), Some(unit)) = (period, unit) {
            let quantity = json!({ "value": period, "code": unit });
            return Ok((None, Some(shift(today, &quantity, &at)?)));
        }
    }
    Ok((None, None))
}

/// `date` moved by a Duration or Age (`value` with a UCUM `code`: min, h, d, wk, mo, a).
fn shift(date: Date, quantity: &Value, at: &str) -> Result<Date, Refusal> {
    let value = quantity.get("value").and_then(Value::as_f64).filter(|v| v.is_finite() && *v >= 0.0 && *v <= 1000.0);
    let Some(value) = value else {
        return Err(template(at.to_owned(), "a timing needs a value from 0 to 1000"));
    };
    let unit = quantity.get("code").or_else(|| quantity.get("unit")).and_then(Value::as_str).unwrap_or_default();
    #[allow(clippy::cast_possible_truncation)] // bounded to 0..=1000 above
    let whole = |v: f64| v.round() as i64;
    let moved = match unit {
        "min" | "h" => Some(date),
        "d" | "day" | "days" => date.checked_add(Duration::days(whole(value))),
        "wk" | "week" | "weeks" => date.checked_add(Duration::days(whole(value * 7.0))),
        "mo" | "month" | "months" => add_months(date, whole(value)),
        "a" | "year" | "years" => add_months(date, whole(value * 12.0)),
        _ => {
            return Err(template(
                at.to_owned(),
                format!("'{unit}' is not a unit this server counts (min, h, d, wk, mo, a)"),
            ))
        }
    };
    moved.ok_or_else(|| template(at.to_owned(), "the date falls outside the calendar"))
}

/// `date` plus `months` calendar months; the day is kept, or the month's last day.
fn add_months(date: Date, months: i64) -> Option<Date> {
    let index = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        parse_date(text).expect("a date")
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn input_issue(result: Result<ApplyRequest, Refusal>) -> (IssueCode, String) {
        match result {
            Err(Refusal::Input(issues)) => (issues[0].code, issues[0].expression.clone().unwrap_or_default()),
            other => panic!("expected a refusal of the input, got {other:?}"),
        }
    }

    #[test]
    fn query_parameters_are_checked_and_named() {
        let ok = from_query(&pairs(&[("subject", "Patient/p1"), ("practitioner", "Practitioner/d1"), ("age", "15")]));
        assert_eq!(
            ok,
            Ok(ApplyRequest {
                patient: "p1".into(),
                practitioner: Some("Practitioner/d1".into()),
                organization: None,
                born: Some(Born::YearsAgo(15)),
            })
        );
        for (query, code, expression) in [
            (vec![], IssueCode::Required, "subject"),
            (vec![("subject", "Group/g")], IssueCode::Value, "subject"),
            (vec![("subject", "Patient/")], IssueCode::Value, "subject"),
            (vec![("subject", "Patient/a"), ("subject", "Patient/b")], IssueCode::Invalid, "subject"),
            (vec![("subject", "Patient/a"), ("age", "-1")], IssueCode::Value, "age"),
            (vec![("subject", "Patient/a"), ("birthDate", "2010-02-30")], IssueCode::Value, "birthDate"),
            (vec![("subject", "Patient/a"), ("encounter", "Encounter/e")], IssueCode::NotSupported, "encounter"),
            (vec![("subject", "Patient/a"), ("colour", "red")], IssueCode::NotSupported, "colour"),
        ] {
            assert_eq!(input_issue(from_query(&pairs(&query))), (code, expression.to_owned()), "{query:?}");
        }
    }

    #[test]
    fn a_parameters_body_names_the_parameter_that_is_wrong() {
        let body = json!({ "resourceType": "Parameters", "parameter": [
            { "name": "subject", "valueReference": { "reference": "Patient/p1" } },
            { "name": "birthDate", "valueDate": "2012-03-04" },
        ]});
        let request = from_parameters(&body).expect("accepted");
        assert_eq!((request.patient.as_str(), request.born), ("p1", Some(Born::On(date("2012-03-04")))));
        for (body, expression) in [
            (json!({ "resourceType": "Bundle" }), "resourceType"),
            (json!({ "resourceType": "Parameters", "colour": 1 }), "Parameters.colour"),
            (
                json!({ "resourceType": "Parameters", "parameter": [{ "name": "subject", "valueBoolean": true }] }),
                "Parameters.parameter[0].valueBoolean",
            ),
            (
                json!({ "resourceType": "Parameters", "parameter": [{ "name": "subject", "valueString": "Patient" }] }),
                "Parameters.parameter[0].valueString",
            ),
            (
                json!({ "resourceType": "Parameters", "parameter": [{ "name": "subject" }] }),
                "Parameters.parameter[0].value[x]",
            ),
            (json!({ "resourceType": "Parameters", "parameter": [] }), "subject"),
        ] {
            assert_eq!(input_issue(from_parameters(&body)).1, expression, "{body}");
        }
    }

    fn plan() -> Value {
        json!({
            "resourceType": "PlanDefinition",
            "url": "http://example.org/PlanDefinition/p",
            "version": "2",
            "title": "Plan",
            "status": "active",
            "action": [
                { "id": "a", "title": "First", "definitionCanonical": "http://example.org/ActivityDefinition/call",
                  "timingDuration": { "value": 2, "code": "wk" } },
                { "title": "Group", "action": [
                    { "title": "At 14", "timingAge": { "value": 14, "code": "a" } },
                    { "title": "Monthly", "timingTiming": { "repeat": { "frequency": 1, "period": 1, "periodUnit": "mo" } } },
                ]},
                { "title": "After first", "relatedAction": [{ "actionId": "a", "relationship": "after-end",
                  "offsetRange": { "low": { "value": 3, "code": "mo" }, "high": { "value": 6, "code": "mo" } } }] },
            ]
        })
    }

    fn call() -> Value {
        json!({ "resourceType": "ActivityDefinition", "url": "http://example.org/ActivityDefinition/call", "status": "active",
                "title": "Call", "code": { "text": "Call the family" },
                "participant": [{ "type": "practitioner", "role": { "text": "Care coordinator" } }] })
    }

    fn run(plan: &Value, request: &ApplyRequest, definitions: &HashMap<String, Value>) -> Result<Expansion, Refusal> {
        let mut n = 0;
        let mut new_url = || {
            n += 1;
            format!("urn:uuid:{n}")
        };
        let setting = Setting {
            definitions,
            fallback_canonical: "http://base/PlanDefinition/1",
            today: date("2026-12-06"),
            new_url: &mut new_url,
        };
        expand(plan, request, setting)
    }

    fn request(born: Option<Born>) -> ApplyRequest {
        ApplyRequest { patient: "p1".into(), practitioner: Some("Practitioner/d1".into()), organization: None, born }
    }

    #[test]
    fn a_plan_expands_into_a_team_a_plan_and_one_task_per_leaf_action_with_due_dates() {
        let definitions = HashMap::from([("http://example.org/ActivityDefinition/call".to_owned(), call())]);
        assert_eq!(canonicals(&plan()), Ok(vec!["http://example.org/ActivityDefinition/call".to_owned()]));
        let out = run(&plan(), &request(Some(Born::On(date("2014-01-31")))), &definitions).expect("expands");
        assert_eq!(out.care_plan.resource["instantiatesCanonical"], json!(["http://example.org/PlanDefinition/p|2"]));
        assert_eq!(out.care_plan.resource["careTeam"], json!([{ "reference": out.care_team.full_url }]));
        assert_eq!(out.care_plan.resource["author"], json!({ "reference": "Practitioner/d1" }));
        assert_eq!(out.care_team.resource["participant"], json!([{ "role": [{ "text": "Care coordinator" }] }]));
        let summary: Vec<(String, Value)> = out
            .tasks
            .iter()
            .map(|t| {
                (
                    t.resource["description"].as_str().unwrap_or_default().to_owned(),
                    t.resource["restriction"]["period"].clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("First".to_owned(), json!({ "end": "2026-12-20" })),
                ("At 14".to_owned(), json!({ "end": "2028-01-31" })),
                ("Monthly".to_owned(), json!({ "end": "2027-01-06" })),
                ("After first".to_owned(), json!({ "start": "2027-03-20", "end": "2027-06-20" })),
            ]
        );
        let first = &out.tasks[0].resource;
        assert_eq!(first["code"], json!({ "text": "Call the family" }));
        assert_eq!(first["basedOn"], json!([{ "reference": out.care_plan.full_url }]));
        assert_eq!(first["for"], json!({ "reference": "Patient/p1" }));
        assert_eq!((first["status"].as_str(), first["intent"].as_str()), (Some("requested"), Some("order")));
        assert_eq!(first["performerType"], json!([{ "text": "Care coordinator" }]));
        let activity: Vec<&Value> = out.care_plan.resource["activity"].as_array().expect("activity").iter().collect();
        assert_eq!(activity.len(), 4);
        assert_eq!(activity[3]["reference"]["reference"], json!(out.tasks[3].full_url));
    }

    #[test]
    fn an_age_that_has_passed_is_due_on_the_apply_date_and_age_needs_a_birth_date() {
        let definitions = HashMap::from([("http://example.org/ActivityDefinition/call".to_owned(), call())]);
        let out = run(&plan(), &request(Some(Born::YearsAgo(16))), &definitions).expect("expands");
        assert_eq!(out.tasks[1].resource["restriction"]["period"], json!({ "end": "2026-12-06" }));
        let missing = run(&plan(), &request(None), &definitions).map(|_| ());
        assert!(
            matches!(&missing, Err(Refusal::Input(i)) if i[0].expression.as_deref() == Some("birthDate")),
            "{missing:?}"
        );
    }

    #[test]
    fn unresolvable_definitions_and_oversized_templates_are_refused() {
        let unresolved = run(&plan(), &request(Some(Born::YearsAgo(3))), &HashMap::new()).map(|_| ());
        assert!(
            matches!(&unresolved, Err(Refusal::Template(i)) if i[0].expression.as_deref() == Some("PlanDefinition.action[0].definitionCanonical")),
            "{unresolved:?}"
        );
        let many: Vec<Value> = (0..=MAX_ACTIONS).map(|i| json!({ "title": format!("step {i}") })).collect();
        let wide = json!({ "resourceType": "PlanDefinition", "status": "active", "action": many });
        assert!(matches!(canonicals(&wide), Err(Refusal::Template(i)) if i[0].code == IssueCode::TooCostly));
        let mut deep = json!({ "title": "leaf" });
        for _ in 0..MAX_ACTION_DEPTH {
            deep = json!({ "title": "group", "action": [deep] });
        }
        let deep = json!({ "resourceType": "PlanDefinition", "status": "active", "action": [deep] });
        assert!(matches!(canonicals(&deep), Err(Refusal::Template(i)) if i[0].code == IssueCode::TooCostly));
        let uri = json!({ "resourceType": "PlanDefinition", "action": [{ "definitionUri": "http://x" }] });
        assert!(matches!(canonicals(&uri), Err(Refusal::Template(_))));
    }

    #[test]
    fn months_keep_the_day_or_take_the_last_of_the_month() {
        assert_eq!(add_months(date("2026-01-31"), 1), Some(date("2026-02-28")));
        assert_eq!(add_months(date("2026-12-06"), -(16 * 12)), Some(date("2010-12-06")));
        assert_eq!(add_months(date("2024-02-29"), 12), Some(date("2025-02-28")));
    }
}
