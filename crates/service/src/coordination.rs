//! Care-coordination rules on the write path: the Task workflow, plan and team consistency,
//! dependants that block a delete, the hold/resume cascade and care-team membership that follows
//! the work. The decisions are the domain's (`domain::workflow`); this module finds what they
//! need inside the write transaction and writes what they derive, as new versions in the same
//! transaction as the change that caused them.

use domain::provenance::{self, Activity, Agent};
use domain::search::query;
use domain::workflow::{
    cascade, ends_work, follow_work, hold_memory, starts_work, Actor, MembershipEvent, ParentChange, ParentMove,
    TaskStatus, Work, RESUME_STATUS_URL,
};
use domain::{ingest_as, json_text, Change, IngestMode, Issue, IssueCode, Prepared, ResourceType, VersionMeta};
use persistence::{StoredVersion, Tx};
use serde_json::Value;

use crate::error::ApiError;

pub use crate::config::{RuleMode, Rules};

/// Who is writing, and what the request asked for beyond the interaction itself.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) actor: Option<Actor>,
    /// What the caller's token allows (unrestricted when authentication is off).
    pub(crate) access: crate::auth::Access,
    pub(crate) rules: Rules,
    /// Record a Provenance with every change of a CarePlan, CareTeam or Task.
    pub(crate) provenance: bool,
    /// The FHIR base URL the request reached, for Bundles built in answer.
    pub(crate) base: String,
    /// URL prefixes a Subscription's endpoint must start with.
    pub(crate) subscription_endpoints: std::sync::Arc<[String]>,
    /// How costly conditional criteria may be (the same limits as a search).
    pub(crate) search_limits: domain::search::Limits,
    /// How far a PATCH may go: the body limit for the patched resource, and the operation count.
    pub(crate) patch_limits: domain::patch::PatchLimits,
}

/// Check a new version of `ty/id` against its `previous` text and add what the server derives
/// (the on-hold memory). Returns the version to store and any warnings.
#[tracing::instrument(name = "domain.rules", skip_all, fields(fhir.resource_type = %prepared.resource_type()))]
pub(crate) async fn before_write(
    tx: &Tx<'_>,
    ctx: &Context,
    id: &str,
    previous: Option<&str>,
    prepared: Prepared,
) -> Result<(Prepared, Vec<Issue>), ApiError> {
    let ty = prepared.resource_type();
    let descriptor = ty.descriptor();
    let references_checked = ctx.rules.references != RuleMode::Off && !descriptor.references.is_empty();
    if descriptor.rules.change.is_none() && !references_checked {
        // No rule reads this version: do not render and parse it on the write path.
        return Ok((prepared, Vec::new()));
    }
    let next = as_value(&prepared.render(id, VersionMeta { version_id: 0, last_updated_ms: 0 }))?;
    let before = previous.map(as_value).transpose()?;
    let mut prepared = prepared;
    if let Some(rule) = descriptor.rules.change {
        let change =
            Change { previous: before.as_ref(), next: &next, actor: ctx.actor.as_ref(), policy: ctx.rules.policy };
        for (url, extension) in rule(&change).map_err(refusal)? {
            prepared =
                prepared.with_meta_extension(url, extension.as_ref()).map_err(|err| ApiError::Internal(err.into()))?;
        }
    }
    let warnings = match ctx.rules.references {
        RuleMode::Off => Vec::new(),
        mode => {
            let broken = check_references(tx, ty, &next, before.as_ref()).await?;
            if mode == RuleMode::Enforce && !broken.is_empty() {
                return Err(ApiError::Unprocessable(broken));
            }
            broken
                .into_iter()
                .map(|mut issue| {
                    issue.severity = domain::Severity::Warning;
                    issue
                })
                .collect()
        }
    };
    Ok((prepared, warnings))
}

/// After a Task version is written: cascade holds and resumes to sub-Tasks, and keep the plan's
/// care team in step with who is working on it.
#[tracing::instrument(name = "domain.derive", skip_all, fields(fhir.resource_type = %written.resource_type))]
pub(crate) async fn after_write(tx: &Tx<'_>, previous: Option<&str>, written: &StoredVersion) -> Result<(), ApiError> {
    if !written.resource_type.descriptor().rules.work {
        return Ok(());
    }
    let Some(text) = written.body.as_deref() else { return Ok(()) };
    let next = as_value(text)?;
    let before = previous.map(as_value).transpose()?;
    let (from, to) = (before.as_ref().and_then(status), status(&next));
    let Some(to) = to else { return Ok(()) };
    let at = domain::instant::to_fhir(written.last_updated_ms);
    if let Some(movement) = from.and_then(|from| ParentMove::between(from, to)) {
        cascade_to_children(tx, &written.id, movement, &at).await?;
    }
    follow_the_work(tx, before.as_ref(), &next, from, to, &written.id, &at).await
}

/// Refuse deleting a plan or team that open Tasks depend on, unless a cascade was asked for,
/// in which case those Tasks are deleted in the same transaction.
#[tracing::instrument(name = "domain.rules", skip_all, fields(fhir.resource_type = %ty))]
pub(crate) async fn before_delete(
    tx: &Tx<'_>,
    ctx: &Context,
    ty: ResourceType,
    id: &str,
    cascade_delete: bool,
) -> Result<(), ApiError> {
    let mut dependants: Vec<StoredVersion> = Vec::new();
    for param in ty.descriptor().rules.dependants {
        let criteria = vec![((*param).to_owned(), format!("{ty}/{id}"))];
        for task in find(tx, ResourceType::Task, criteria, true).await? {
            if !dependants.iter().any(|d| d.id == task.id) {
                dependants.push(task);
            }
        }
    }
    if dependants.is_empty() || ctx.rules.references == RuleMode::Off {
        return Ok(());
    }
    if cascade_delete {
        for task in &dependants {
            tx.delete(ResourceType::Task, &task.id, None).await?;
        }
        return Ok(());
    }
    let listed: Vec<String> = dependants.iter().take(20).map(|t| format!("Task/{}", t.id)).collect();
    Err(ApiError::Conflict(vec![Issue::general(
        IssueCode::Conflict,
        format!(
            "{ty}/{id} cannot be deleted: {} open Task(s) depend on it ({}{}); delete with _cascade=delete to delete them too",
            dependants.len(),
            listed.join(", "),
            if dependants.len() > listed.len() { ", ..." } else { "" }
        ),
    )]))
}

/// Record who changed `ty/id` to `version` and how, as a Provenance in the same transaction.
pub(crate) async fn record(
    tx: &Tx<'_>,
    ctx: &Context,
    ty: ResourceType,
    id: &str,
    version: (i64, i64),
    activity: Activity,
) -> Result<(), ApiError> {
    if !ctx.provenance || !ty.descriptor().rules.provenance {
        return Ok(());
    }
    let who = ctx.actor.as_ref().map(|a| a.reference.as_str());
    record_by(tx, ty, id, version, activity, Agent::from(who)).await
}

/// Record a Provenance of `ty/id` at `version` (id, last updated) by `agent`, in `tx`.
pub(crate) async fn record_by(
    tx: &Tx<'_>,
    ty: ResourceType,
    id: &str,
    version: (i64, i64),
    activity: Activity,
    agent: Agent<'_>,
) -> Result<(), ApiError> {
    let (version_id, last_updated_ms) = version;
    let target = format!("{ty}/{id}/_history/{version_id}");
    let recorded = domain::instant::to_fhir(last_updated_ms);
    let prepared =
        provenance::prepared(&target, &recorded, activity, agent).map_err(|err| ApiError::Internal(err.into()))?;
    tx.create(&prepared, &uuid::Uuid::now_v7().to_string()).await?;
    Ok(())
}

/// 403 when the actor may not make the change, 422 when no one may.
fn refusal(issues: Vec<Issue>) -> ApiError {
    if issues.iter().any(|i| i.code == IssueCode::Forbidden) {
        ApiError::NotPermitted(issues)
    } else {
        ApiError::Unprocessable(issues)
    }
}

fn as_value(text: &str) -> Result<Value, ApiError> {
    json_text::to_value_preserving(text).map_err(|err| ApiError::Internal(err.into()))
}

fn status(task: &Value) -> Option<TaskStatus> {
    task.get("status")?.as_str().and_then(TaskStatus::parse)
}

/// `Type/id` of a relative reference to a type this server holds.
fn local(reference: &Value) -> Option<(ResourceType, String)> {
    let text = reference.get("reference")?.as_str()?;
    let (ty, id) = text.split_once('/')?;
    (domain::id::is_valid(id)).then_some(())?;
    Some((ResourceType::parse(ty)?, id.to_owned()))
}

/// The patient a resource concerns: the element its `patient` search parameter reads
/// (`subject`, or `for` on Task).
fn patient_of(resource: &Value) -> Option<&str> {
    let ty = ResourceType::parse(resource.get("resourceType")?.as_str()?)?;
    resource.get(ty.descriptor().patient_element()?)?.get("reference")?.as_str()
}

/// Every local reference of `next` that is new since `before` must name a resource that
/// exists here (not deleted) and concerns the same patient (where: the type's descriptor).
async fn check_references(
    tx: &Tx<'_>,
    ty: ResourceType,
    next: &Value,
    before: Option<&Value>,
) -> Result<Vec<Issue>, ApiError> {
    let mut issues = Vec::new();
    let patient = patient_of(next);
    for (link, target_type) in ty.descriptor().references {
        let old: Vec<&Value> =
            before.map(|b| link.find(ty, b).into_iter().map(|(_, r)| r).collect()).unwrap_or_default();
        for (path, reference) in link.find(ty, next) {
            if old.contains(&reference) {
                continue;
            }
            let Some((found_type, id)) = local(reference) else { continue };
            if found_type != *target_type {
                continue;
            }
            let target = tx.current(found_type, &id).await?;
            let Some(text) = target.as_ref().and_then(|t| t.body.as_deref()) else {
                issues.push(Issue::error(
                    IssueCode::BusinessRule,
                    path,
                    format!("{found_type}/{id} does not exist on this server (or was deleted)"),
                ));
                continue;
            };
            let target = as_value(text)?;
            if let (Some(ours), Some(theirs)) = (patient, patient_of(&target)) {
                if ours != theirs {
                    issues.push(Issue::error(
                        IssueCode::BusinessRule,
                        path,
                        format!("{found_type}/{id} concerns another patient than this {ty}"),
                    ));
                }
            }
        }
    }
    Ok(issues)
}

/// Current resources of `ty` matching `pairs`; with `open`, only Tasks whose work is unfinished
/// (`TaskStatus::unfinished`: draft included).
async fn find(
    tx: &Tx<'_>,
    ty: ResourceType,
    mut pairs: Vec<(String, String)>,
    open: bool,
) -> Result<Vec<StoredVersion>, ApiError> {
    if open {
        let unfinished: Vec<&str> = domain::TaskStatus::unfinished().map(domain::TaskStatus::as_str).collect();
        pairs.push(("status".into(), unfinished.join(",")));
    }
    let request = query::parse(ty, &pairs, true).map_err(ApiError::Invalid)?;
    Ok(tx.find(ty, &request, 1000).await?)
}

/// Put the sub-Tasks of `parent` on hold, or resume them, and theirs in turn.
async fn cascade_to_children(tx: &Tx<'_>, parent: &str, movement: ParentMove, at: &str) -> Result<(), ApiError> {
    let mut parents = vec![parent.to_owned()];
    let mut rounds = 0;
    while let Some(parent) = parents.pop() {
        rounds += 1;
        if rounds > 1000 {
            break;
        }
        let children = find(tx, ResourceType::Task, vec![("part-of".into(), format!("Task/{parent}"))], false).await?;
        let texts: Vec<Value> =
            children.iter().filter_map(|c| c.body.as_deref()).map(as_value).collect::<Result<_, _>>()?;
        let change = ParentChange { parent_id: &parent, movement, at };
        for changed in cascade(&change, &texts) {
            let Some(id) = changed.get("id").and_then(Value::as_str).map(str::to_owned) else { continue };
            let previous = children.iter().find(|c| c.id == id).and_then(|c| c.body.clone());
            let text = json_text::from_value_preserving(&changed);
            let prepared = ingest_as(ResourceType::Task, text.as_bytes(), IngestMode::Update { id: &id })
                .map_err(ApiError::Invalid)?;
            let before = previous.as_deref().map(as_value).transpose()?;
            let memory =
                hold_memory(before.as_ref(), &changed).map_err(|issue| ApiError::Unprocessable(vec![issue]))?;
            let prepared = prepared
                .with_meta_extension(RESUME_STATUS_URL, memory.extension().as_ref())
                .map_err(|err| ApiError::Internal(err.into()))?;
            let written = tx.update(&prepared, &id, None).await?;
            follow_the_work(
                tx,
                before.as_ref(),
                &changed,
                before.as_ref().and_then(status),
                status(&changed).unwrap_or(TaskStatus::OnHold),
                &written.version.id,
                at,
            )
            .await?;
            parents.push(id);
        }
    }
    Ok(())
}

/// When an owner starts work on a plan they join its care team; when their last open Task on
/// the plan ends, their participation ends (reference §5.1).
async fn follow_the_work(
    tx: &Tx<'_>,
    before: Option<&Value>,
    next: &Value,
    from: Option<TaskStatus>,
    to: TaskStatus,
    task_id: &str,
    at: &str,
) -> Result<(), ApiError> {
    let event = if starts_work(from, to) {
        MembershipEvent::OwnerStartedWork
    } else if ends_work(from, to) {
        MembershipEvent::OwnerFinishedLastTask
    } else {
        return Ok(());
    };
    let task = if event == MembershipEvent::OwnerFinishedLastTask { before.unwrap_or(next) } else { next };
    let Some(work) = Work::of_task(task, at) else { return Ok(()) };
    let plans: Vec<String> = next
        .get("basedOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(local)
        .filter(|(ty, _)| *ty == ResourceType::CarePlan)
        .map(|(_, id)| id)
        .collect();
    for plan in plans {
        if event == MembershipEvent::OwnerFinishedLastTask {
            let still_open = find(
                tx,
                ResourceType::Task,
                vec![("based-on".into(), format!("CarePlan/{plan}")), ("owner".into(), work.owner.to_owned())],
                true,
            )
            .await?;
            if still_open.iter().any(|t| t.id != task_id) {
                continue;
            }
        }
        let Some(plan_text) = tx.current(ResourceType::CarePlan, &plan).await?.and_then(|c| c.body) else { continue };
        let plan_value = as_value(&plan_text)?;
        let teams: Vec<String> = plan_value
            .get("careTeam")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(local)
            .filter(|(ty, _)| *ty == ResourceType::CareTeam)
            .map(|(_, id)| id)
            .collect();
        for team in teams {
            let Some(team_text) = tx.current(ResourceType::CareTeam, &team).await?.and_then(|c| c.body) else {
                continue;
            };
            if let Some(updated) = follow_work(&as_value(&team_text)?, &work, event) {
                let text = json_text::from_value_preserving(&updated);
                let prepared = ingest_as(ResourceType::CareTeam, text.as_bytes(), IngestMode::Update { id: &team })
                    .map_err(ApiError::Invalid)?;
                tx.update(&prepared, &team, None).await?;
            }
        }
    }
    Ok(())
}

/// The actor of a request from the configured development header, e.g. `X-Careplan-Actor:
/// Practitioner/123` (until the token's `fhirUser` claim provides it).
pub(crate) fn actor_from(req: &actix_web::HttpRequest, header: Option<&str>) -> Option<Actor> {
    let value = req.headers().get(header?)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| Actor::new(value))
}

/// Whether a (conditional) delete asked for a cascade, and its criteria without `_cascade`.
pub(crate) fn split_cascade(pairs: Vec<(String, String)>) -> (bool, Vec<(String, String)>) {
    let cascade = pairs.iter().any(|(k, v)| k == "_cascade" && v == "delete");
    (cascade, pairs.into_iter().filter(|(k, _)| k != "_cascade").collect())
}
