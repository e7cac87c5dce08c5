//! Plan templates: `PlanDefinition/[id]/$apply`
//! (http://hl7.org/fhir/R4/plandefinition-operation-apply.html) and the seed templates that
//! `careplan templates load` stores.
//!
//! Unlike a pure `$apply`, ours PERSISTS what it produces: the handler reads the template and
//! the ActivityDefinitions its actions name (by canonical URL), `domain::plan_apply` expands them
//! for the patient and the date, and the write engine creates the CareTeam, the CarePlan and the
//! Tasks as ONE transaction (the same path as a transaction Bundle: the coordination rules,
//! Provenance, audit, subscriptions and the index all apply; on any failure nothing stands). The
//! answer is the created CarePlan (R4's `return`), 201 with its `Location`; it references the
//! CareTeam (`careTeam`) and every Task (`activity.reference`).

use std::collections::HashMap;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use anyhow::Context as _;
use domain::plan_apply::{self, ApplyRequest, Expansion, Planned, Refusal, Setting};
use domain::search::query;
use domain::smart::Letter;
use domain::{IssueCode, ResourceType};
use serde_json::Value;

use crate::audit;
use crate::auth::Access;
use crate::coordination::Context;
use crate::engine::{self, Address, EntryRequest, Verb};
use crate::error::ApiError;
use crate::extract::{query_pairs, FhirBody, Negotiation, Prefer};
use crate::interactions::context;
use crate::responder::{self, base_url};
use crate::route::Does;
use crate::state::AppState;
use crate::visible::visible_current;

/// `$apply` (R4), as the route table declares it.
pub(crate) const APPLY: Does =
    Does::Execute { name: "apply", definition: "http://hl7.org/fhir/OperationDefinition/PlanDefinition-apply" };

/// The seed templates (`templates/` at the repository root), each a transaction Bundle that
/// stores its ActivityDefinitions and its PlanDefinition by conditional update on `url`.
pub const SEEDS: [(&str, &str); 2] = [
    ("complex-care-enrollment", include_str!("../../../templates/complex-care-enrollment.json")),
    ("transition-to-adult-care", include_str!("../../../templates/transition-to-adult-care.json")),
];

/// `GET [base]/PlanDefinition/[id]/$apply?subject=Patient/[id]&...`.
pub(crate) async fn apply_get(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
) -> Result<HttpResponse, ApiError> {
    let request = plan_apply::from_query(&query_pairs(req.query_string())).map_err(refused)?;
    apply(&req, &state, &access, &path, request, neg, prefer).await
}

/// `POST [base]/PlanDefinition/[id]/$apply` with a `Parameters` body.
pub(crate) async fn apply_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let parameters: Value = serde_json::from_slice(&body.0).map_err(|_| {
        ApiError::invalid(IssueCode::Structure, "Parameters", "the body is not a JSON Parameters resource")
    })?;
    let request = plan_apply::from_parameters(&parameters).map_err(refused)?;
    apply(&req, &state, &access, &path, request, neg, prefer).await
}

async fn apply(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    id: &str,
    request: ApplyRequest,
    neg: Negotiation,
    prefer: Prefer,
) -> Result<HttpResponse, ApiError> {
    let plan = visible_current(req, state, access, ResourceType::PlanDefinition, id).await?;
    let plan: Value = plan
        .body
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a stored PlanDefinition is not JSON")))?;
    let canonicals = plan_apply::canonicals(&plan).map_err(refused)?;
    let definitions = resolve(state, access, &canonicals).await?;
    let base = base_url(req, state);
    let fallback = format!("{base}/PlanDefinition/{id}");
    let mut new_url = || format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let setting =
        Setting { definitions: &definitions, fallback_canonical: &fallback, today: today(), new_url: &mut new_url };
    let expansion = plan_apply::expand(&plan, &request, setting).map_err(refused)?;
    let ctx = context(req, state, access);
    let results = engine::transaction(state, &ctx, entries(expansion)).await.map_err(|f| f.into_api_error())?;
    audit::note_patient(req, Some(request.patient));
    // The CarePlan is the second entry (after the CareTeam it names).
    let plan =
        results.into_iter().nth(1).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("$apply wrote no CarePlan")))?;
    Ok(responder::entry_result(plan, &base, neg, prefer))
}

/// The ActivityDefinition of each canonical (`url` or `url|version`), found by search; a
/// canonical that matches none is left out (the expansion refuses it, naming the action), one
/// that matches several versions is refused here.
async fn resolve(state: &AppState, access: &Access, canonicals: &[String]) -> Result<HashMap<String, Value>, ApiError> {
    let ty = ResourceType::ActivityDefinition;
    let mut found = HashMap::with_capacity(canonicals.len());
    if canonicals.is_empty() {
        return Ok(found);
    }
    access.require(ty, Letter::Read)?;
    for canonical in canonicals {
        let (url, version) = match canonical.split_once('|') {
            Some((url, version)) => (url, Some(version)),
            None => (canonical.as_str(), None),
        };
        let mut pairs = vec![("url".to_owned(), url.to_owned())];
        pairs.extend(version.map(|v| ("version".to_owned(), v.to_owned())));
        let Ok(search) = query::parse(ty, &pairs, true) else { continue };
        let page = state.store.search(ty, &search, 2).await?;
        let visible: Vec<_> = page.matches.iter().filter(|v| access.sees(v)).collect();
        match visible.as_slice() {
            [] => {}
            [one] => {
                if let Some(resource) = one.body.as_deref().and_then(|text| serde_json::from_str(text).ok()) {
                    found.insert(canonical.clone(), resource);
                }
            }
            _ => {
                return Err(ApiError::Unprocessable(vec![domain::Issue::error(
                    IssueCode::MultipleMatches,
                    "PlanDefinition.action.definitionCanonical",
                    format!(
                    "several ActivityDefinitions have the canonical URL '{canonical}'; name the version (url|version)"
                ),
                )]))
            }
        }
    }
    Ok(found)
}

/// The expansion as creates, in writing order: the CareTeam, the CarePlan, the Tasks.
fn entries(expansion: Expansion) -> Vec<EntryRequest> {
    let Expansion { care_team, care_plan, tasks } = expansion;
    let create = |ty: ResourceType, planned: Planned| EntryRequest {
        verb: Verb::Post,
        ty,
        address: Address::Type,
        full_url: Some(planned.full_url),
        body: Some(Bytes::from(planned.resource.to_string())),
        patch: None,
        if_none_exist: None,
        if_match: None,
        if_none_match: None,
        if_modified_since: None,
        cascade_delete: false,
    };
    let mut out = Vec::with_capacity(tasks.len() + 2);
    out.push(create(ResourceType::CareTeam, care_team));
    out.push(create(ResourceType::CarePlan, care_plan));
    out.extend(tasks.into_iter().map(|task| create(ResourceType::Task, task)));
    out
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::Input(issues) => ApiError::Invalid(issues),
        Refusal::Template(issues) => ApiError::Unprocessable(issues),
    }
}

/// Today's date in UTC: the apply date.
fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// `careplan templates load`: store every seed template (its ActivityDefinitions, then its
/// PlanDefinition), each Bundle as one transaction through the write engine, by conditional
/// update on `url`: loading again updates them in place and never duplicates them. Returns how
/// many resources were written.
pub async fn load(settings: crate::Settings) -> anyhow::Result<usize> {
    let store = persistence::Store::connect(&settings.database)
        .await
        .with_context(|| format!("cannot connect to the database {}", settings.database.redacted_url()))?;
    if settings.migrate {
        store.migrate().await.context("cannot apply database migrations")?;
    }
    let base = settings.base_url.clone().unwrap_or_else(|| "http://localhost/fhir".to_owned());
    let state = AppState { store, settings, capabilities: Default::default(), exports: Default::default() };
    let ctx = Context {
        actor: None,
        access: Access::unrestricted(),
        rules: state.settings.rules,
        provenance: state.settings.provenance,
        base: base.clone(),
        subscription_endpoints: state.settings.subscriptions.endpoints.clone(),
        search_limits: state.settings.search_limits,
        patch_limits: domain::patch::PatchLimits {
            max_bytes: state.settings.max_body_bytes,
            max_operations: state.settings.max_patch_operations,
        },
    };
    let mut written = 0;
    for (name, text) in SEEDS {
        let entries = crate::transaction::transaction_entries(&Bytes::from_static(text.as_bytes()), &base)
            .map_err(|err| anyhow::anyhow!("the seed template {name} is not a transaction Bundle: {err}"))?;
        let results = engine::transaction(&state, &ctx, entries).await.map_err(|failure| {
            anyhow::anyhow!("cannot store the seed template {name}: {}", failure.into_api_error())
        })?;
        written += results.len();
        tracing::info!(template = name, resources = results.len(), "template stored");
    }
    Ok(written)
}
