//! The FHIR RESTful interactions (http://hl7.org/fhir/R4/http.html), written once and generic
//! over `domain::Resource`. Each handler only orchestrates: extract, check, store, respond.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::{IssueCode, Resource, ResourceType};
use persistence::{HistoryQuery, StoreError};

use crate::audit;
use crate::auth::Access;
use crate::bundle;
use crate::coordination::{self, Context};
use crate::engine::{self, Address, EntryRequest, EntryResult, PatchFormat, Verb};
use crate::error::ApiError;
use crate::extract::{self, FhirBody, Negotiation, PatchBody, Prefer};
use crate::responder::{self, base_url};
use crate::state::AppState;
use crate::visible::{hide, shown, visible_current};
use domain::smart::Letter;

type Data = web::Data<AppState>;
type Answer = Result<HttpResponse, ApiError>;

/// `POST [base]/[type]`: create with a server-assigned id; with `If-None-Exist`, only when no
/// resource matches those criteria (http://hl7.org/fhir/R4/http.html#ccreate).
pub(crate) async fn create<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let entry = entry(&req, Verb::Post, R::TYPE, Address::Type, Some(body.0), None)?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `PUT [base]/[type]/[id]`: update, or create with the client's id (update-as-create).
pub(crate) async fn update<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let entry = entry(&req, Verb::Put, R::TYPE, Address::Instance(path.into_inner()), Some(body.0), None)?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `PUT [base]/[type]?criteria`: conditional update (http://hl7.org/fhir/R4/http.html#cond-update).
pub(crate) async fn update_conditional<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let entry = entry(&req, Verb::Put, R::TYPE, criteria(&req)?, Some(body.0), None)?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `PATCH [base]/[type]/[id]` with a JSON Patch or FHIRPath Patch document.
pub(crate) async fn patch<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
    body: PatchBody,
) -> Answer {
    let address = Address::Instance(path.into_inner());
    let entry = entry(&req, Verb::Patch, R::TYPE, address, Some(body.body), Some(body.format))?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `PATCH [base]/[type]?criteria`: conditional patch.
pub(crate) async fn patch_conditional<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
    body: PatchBody,
) -> Answer {
    let entry = entry(&req, Verb::Patch, R::TYPE, criteria(&req)?, Some(body.body), Some(body.format))?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `DELETE [base]/[type]/[id]`: logical delete; history keeps every version.
pub(crate) async fn delete<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let entry = entry(&req, Verb::Delete, R::TYPE, Address::Instance(path.into_inner()), None, None)?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// `DELETE [base]/[type]?criteria`: conditional delete (http://hl7.org/fhir/R4/http.html#cdelete).
pub(crate) async fn delete_conditional<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let entry = entry(&req, Verb::Delete, R::TYPE, criteria(&req)?, None, None)?;
    respond(&req, &state, &access, entry, neg, prefer).await
}

/// The interaction a request asks for, with its preconditions from the headers (`If-Match`,
/// `If-None-Exist`) and `_cascade=delete` from the query.
fn entry(
    req: &HttpRequest,
    verb: Verb,
    ty: ResourceType,
    address: Address,
    body: Option<web::Bytes>,
    patch: Option<PatchFormat>,
) -> Result<EntryRequest, ApiError> {
    let if_none_exist = req
        .headers()
        .get("if-none-exist")
        .filter(|_| verb == Verb::Post)
        .map(|v| extract::query_pairs(v.to_str().unwrap_or_default().trim_start_matches('?')));
    let (cascade, _) = coordination::split_cascade(extract::query_pairs(req.query_string()));
    Ok(EntryRequest {
        verb,
        ty,
        address,
        full_url: None,
        body,
        patch,
        if_none_exist,
        if_match: extract::if_match(req)?,
        if_none_match: None,
        if_modified_since: None,
        cascade_delete: cascade && verb == Verb::Delete,
    })
}

/// The criteria of a conditional interaction: the query string without `_cascade`, which must
/// not be empty.
fn criteria(req: &HttpRequest) -> Result<Address, ApiError> {
    let (_, mut pairs) = coordination::split_cascade(extract::query_pairs(req.query_string()));
    // `_format` and `_pretty` say how to answer, not which resource: they are no criteria, and a
    // query of nothing else has none (`PUT Task?_format=json` must not update the only Task).
    pairs.retain(|(key, _)| !matches!(key.as_str(), "_format" | "_pretty"));
    if pairs.is_empty() {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} on a resource type needs search criteria ([type]?parameter=value)",
            req.method()
        )));
    }
    Ok(Address::Criteria(pairs))
}

/// Who is writing, from the token (`fhirUser`) or else the configured development header.
pub(crate) fn context(req: &HttpRequest, state: &AppState, access: &Access) -> Context {
    let from_token = access.principal().and_then(|p| p.fhir_user.clone()).map(domain::workflow::Actor::new);
    Context {
        actor: from_token.or_else(|| coordination::actor_from(req, state.settings.actor_header.as_deref())),
        access: access.clone(),
        rules: state.settings.rules,
        provenance: state.settings.provenance,
        base: base_url(req, state),
        subscription_endpoints: state.settings.subscriptions.endpoints.clone(),
        search_limits: state.settings.search_limits,
        patch_limits: domain::patch::PatchLimits {
            max_bytes: state.settings.max_body_bytes,
            max_operations: state.settings.max_patch_operations,
        },
    }
}

/// Carry out one write and answer it.
async fn respond(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    entry: EntryRequest,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let result = engine::single(state, &context(req, state, access), entry).await?;
    if let EntryResult::Written { version, .. } | EntryResult::Existing(version) = &result {
        audit::note_patient(
            req,
            version.body.as_deref().and_then(|b| domain::smart::patient_of(version.resource_type, b)),
        );
    }
    Ok(responder::entry_result(result, &base_url(req, state), neg, prefer))
}

/// `GET [base]/[type]/[id]`: the current version; 410 once deleted; 304 when unchanged.
pub(crate) async fn read<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    read_current(R::TYPE, &req, &state, &access, &path, neg).await
}

async fn read_current(
    ty: ResourceType,
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    id: &str,
    neg: Negotiation,
) -> Answer {
    let version = visible_current(req, state, access, ty, id).await?;
    if extract::not_modified(req, version.version_id, version.last_updated_ms) {
        return Ok(responder::not_modified(version.version_id, version.last_updated_ms));
    }
    Ok(responder::read(version, neg))
}

/// `GET [base]/[type]/[id]/_history/[vid]`: one version.
pub(crate) async fn vread<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<(String, String)>,
    neg: Negotiation,
) -> Answer {
    let (id, vid) = path.into_inner();
    let ty = R::TYPE;
    let version_id = vid.parse::<i64>().map_err(|_| ApiError::NotFound(format!("{ty}/{id}/_history/{vid}")))?;
    let version = state.store.vread(ty, &id, version_id).await.map_err(|err| match err {
        StoreError::NotFound => ApiError::NotFound(format!("{ty}/{id}/_history/{vid}")),
        StoreError::Deleted { .. } => hide(&access, ApiError::Gone(format!("{ty}/{id}/_history/{vid}")), ty, &id),
        other => other.into(),
    })?;
    shown(&req, &access, &version)?;
    Ok(responder::read(version, neg))
}

/// `GET [base]/[type]/[id]/_history`.
pub(crate) async fn history_instance<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    let id = path.into_inner();
    let mut query = history_query(&req, &state)?;
    let fresh = query.since_ms.is_none() && query.before_seq.is_none();
    query.resource_type = Some(R::TYPE);
    query.id = Some(id.clone());
    let entries = state.store.history(&query).await?;
    let visible = access.visible_history(&state, &entries).await;
    if !visible.contains(&true) && fresh {
        return Err(ApiError::NotFound(format!("{}/{id}", R::TYPE)));
    }
    Ok(bundle::history(&req, &state, &query, entries, &visible, neg))
}

/// `GET [base]/[type]/_history`.
pub(crate) async fn history_type<R: Resource>(
    req: HttpRequest,
    state: Data,
    access: Access,
    neg: Negotiation,
) -> Answer {
    let mut query = history_query(&req, &state)?;
    query.resource_type = Some(R::TYPE);
    let entries = state.store.history(&query).await?;
    let visible = access.visible_history(&state, &entries).await;
    Ok(bundle::history(&req, &state, &query, entries, &visible, neg))
}

/// `GET [base]/_history`: entries of types the token may not read are left out.
pub(crate) async fn history_system(req: HttpRequest, state: Data, access: Access, neg: Negotiation) -> Answer {
    if ResourceType::ALL.iter().all(|ty| access.require(*ty, Letter::Read).is_err()) {
        return Err(ApiError::Forbidden("the token's scopes allow reading none of the types held here".into()));
    }
    let query = history_query(&req, &state)?;
    let entries = state.store.history(&query).await?;
    let visible = access.visible_history(&state, &entries).await;
    Ok(bundle::history(&req, &state, &query, entries, &visible, neg))
}

/// `_count`, `_since` and the paging cursor of a history request; malformed values are a 400.
fn history_query(req: &HttpRequest, state: &AppState) -> Result<HistoryQuery, ApiError> {
    let settings = &state.settings;
    let mut query = HistoryQuery { count: settings.default_count, ..HistoryQuery::default() };
    for (key, value) in extract::query_pairs(req.query_string()) {
        match key.as_str() {
            "_count" => {
                let count = value.parse::<u64>().map_err(|_| {
                    ApiError::invalid(
                        IssueCode::Value,
                        "_count",
                        format!("_count must be a non-negative integer, not '{value}'"),
                    )
                })?;
                query.count = count.min(settings.max_count);
            }
            "_since" => {
                // An unencoded '+' of a time-zone offset arrives as a space.
                let since = value.replace(' ', "+");
                query.since_ms = Some(domain::instant::parse(&since).ok_or_else(|| {
                    ApiError::invalid(IssueCode::Value, "_since", format!("_since must be an instant, not '{value}'"))
                })?);
            }
            bundle::CURSOR => {
                query.before_seq = Some(value.parse::<i64>().map_err(|_| {
                    ApiError::invalid(IssueCode::Value, bundle::CURSOR, "the paging cursor is malformed")
                })?);
            }
            _ => {}
        }
    }
    Ok(query)
}

/// Any path that names no resource type this server holds, or no interaction of one it does.
pub(crate) async fn unknown_type(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let name = req.path().strip_prefix("/fhir/").and_then(|rest| rest.split('/').next()).unwrap_or_default();
    Err(match ResourceType::parse(name) {
        None if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphabetic()) => {
            ApiError::NotFound(format!("Resource type '{name}' (this server holds CarePlan, CareTeam and Task)"))
        }
        _ => ApiError::NotFound(format!("The path {}", req.path())),
    })
}

/// A known path used with a method it does not support.
pub(crate) async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!("{} is not supported on this path", req.method())))
}
