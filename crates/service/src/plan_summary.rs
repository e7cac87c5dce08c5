//! `GET [base]/CarePlan/[id]/$summary` (reference §5.4; issue 5 item 6): the shared plan of care
//! as one `collection` Bundle — a generated Composition with the narrative summary
//! (`domain::plan_summary`), then the plan, its CareTeams, the Tasks based on it and their
//! sub-tasks, and the Provenance of each, as stored. 404 for an unknown plan, 410 for a deleted one.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::plan_summary::{Entry, PlanSummary};
use domain::search::query::{self, SearchRequest};
use domain::ResourceType;
use persistence::StoredVersion;
use serde_json::Value;

use crate::auth::Access;
use crate::bundle;
use crate::error::ApiError;
use crate::extract::Negotiation;
use crate::responder::base_url;
use crate::state::AppState;
use crate::visible::visible_current;

/// The canonical URL of the `$summary` OperationDefinition (defined by this server).
pub(crate) const DEFINITION: &str = "http://careplan.example/fhir/OperationDefinition/CarePlan-summary";

/// What the summary gathers around the plan, as `_include`/`_revinclude` of a CarePlan search:
/// its CareTeams and Goals, the Tasks based on it, (iterating) the Tasks that are part of those,
/// and the Provenance of all of them.
const RELATED: [(&str, &str); 5] = [
    ("_include", "CarePlan:care-team"),
    ("_include", "CarePlan:goal"),
    ("_revinclude", "Task:based-on"),
    ("_revinclude:iterate", "Task:part-of"),
    ("_revinclude:iterate", "Provenance:target"),
];

/// The handler.
pub(crate) async fn summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Result<HttpResponse, ApiError> {
    let ty = ResourceType::CarePlan;
    let id = path.into_inner();
    // The same rule as a read of the plan, and as a search's includes for what joins it.
    let plan = visible_current(&req, &state, &access, ty, &id).await?;
    let related = state.store.includes_where(ty, std::slice::from_ref(&plan), &related()?, &|v| access.sees(v)).await?;
    let base = base_url(&req, &state);
    let now = domain::instant::from_system_time(std::time::SystemTime::now());

    let mut versions = vec![plan];
    versions.extend(related.iter().filter(|v| v.resource_type == ResourceType::CareTeam).cloned());
    versions.extend(related.iter().filter(|v| v.resource_type != ResourceType::CareTeam).cloned());
    let urls: Vec<String> = versions.iter().map(|v| bundle::full_url(&base, v)).collect();
    let parsed: Vec<Value> = versions.iter().map(json).collect();
    let of_type = |ty: ResourceType| -> Vec<Entry<'_>> {
        versions
            .iter()
            .zip(urls.iter().zip(&parsed))
            .skip(1)
            .filter(|(v, _)| v.resource_type == ty)
            .map(|(_, (full_url, resource))| Entry { full_url, resource })
            .collect()
    };
    let summary = PlanSummary {
        plan: Entry { full_url: &urls[0], resource: &parsed[0] },
        teams: of_type(ResourceType::CareTeam),
        goals: of_type(ResourceType::Goal),
        tasks: of_type(ResourceType::Task),
        provenance: of_type(ResourceType::Provenance),
        now,
    };
    let composition = summary.composition().to_string();
    let head_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    Ok(bundle::collection(&base, composition, head_url, versions, neg))
}

fn related() -> Result<SearchRequest, ApiError> {
    let pairs: Vec<(String, String)> = RELATED.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    query::parse(ResourceType::CarePlan, &pairs, true)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the $summary includes do not parse")))
}

/// A stored resource as JSON, for the narrative (the Bundle carries the stored text itself).
fn json(version: &StoredVersion) -> Value {
    version.body.as_deref().and_then(|body| serde_json::from_str(body).ok()).unwrap_or(Value::Null)
}
