//! The FHIR RESTful interactions (http://hl7.org/fhir/R4/http.html), written once and generic
//! over `domain::Resource`. Each handler only orchestrates: extract, check, store, respond.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{ingest, IngestMode, IssueCode, Resource, ResourceType};
use persistence::{DeleteOutcome, HistoryQuery, StoreError};

use crate::bundle;
use crate::error::ApiError;
use crate::extract::{self, FhirBody, Negotiation, Prefer};
use crate::responder::{self, base_url};
use crate::state::AppState;

type Data = web::Data<AppState>;
type Answer = Result<HttpResponse, ApiError>;

/// `POST [base]/[type]`: create with a server-assigned id.
pub(crate) async fn create<R: Resource>(
    req: HttpRequest,
    state: Data,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let prepared = ingest::<R>(&body.0, IngestMode::Create).map_err(ApiError::Invalid)?;
    let id = uuid::Uuid::now_v7().to_string();
    let version = state.store.create(prepared, id).await?;
    Ok(responder::written(StatusCode::CREATED, version, &base_url(&req, &state), neg, prefer))
}

/// `PUT [base]/[type]/[id]`: update, or create with the client's id (update-as-create).
pub(crate) async fn update<R: Resource>(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let id = path.into_inner();
    if !domain::id::is_valid(&id) {
        return Err(ApiError::invalid(IssueCode::Value, format!("{}.id", R::TYPE), invalid_id(&id)));
    }
    let if_match = extract::if_match(&req)?;
    let prepared = ingest::<R>(&body.0, IngestMode::Update { id: &id }).map_err(ApiError::Invalid)?;
    let outcome = state.store.update(prepared, id, if_match).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(responder::written(status, outcome.version, &base_url(&req, &state), neg, prefer))
}

/// `GET [base]/[type]/[id]`: the current version; 410 once deleted; 304 when unchanged.
pub(crate) async fn read<R: Resource>(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    read_current(R::TYPE, &req, &state, &path, neg).await
}

async fn read_current(ty: ResourceType, req: &HttpRequest, state: &AppState, id: &str, neg: Negotiation) -> Answer {
    let version = state.store.read(ty, id).await.map_err(|err| named(err, ty, id))?;
    if extract::not_modified(req, version.version_id, version.last_updated_ms) {
        return Ok(responder::not_modified(version.version_id, version.last_updated_ms));
    }
    Ok(responder::read(version, neg))
}

/// `GET [base]/[type]/[id]/_history/[vid]`: one version.
pub(crate) async fn vread<R: Resource>(state: Data, path: web::Path<(String, String)>, neg: Negotiation) -> Answer {
    let (id, vid) = path.into_inner();
    let ty = R::TYPE;
    let version_id = vid.parse::<i64>().map_err(|_| ApiError::NotFound(format!("{ty}/{id}/_history/{vid}")))?;
    let version = state.store.vread(ty, &id, version_id).await.map_err(|err| match err {
        StoreError::NotFound => ApiError::NotFound(format!("{ty}/{id}/_history/{vid}")),
        StoreError::Deleted { .. } => ApiError::Gone(format!("{ty}/{id}/_history/{vid}")),
        other => other.into(),
    })?;
    Ok(responder::read(version, neg))
}

/// `DELETE [base]/[type]/[id]`: logical delete; history keeps every version.
pub(crate) async fn delete<R: Resource>(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let ty = R::TYPE;
    let id = path.into_inner();
    let if_match = extract::if_match(&req)?;
    let outcome = state.store.delete(ty, &id, if_match).await.map_err(|err| named(err, ty, &id))?;
    let (version_id, last_updated_ms, message) = match outcome {
        DeleteOutcome::Deleted { version_id, last_updated_ms } => {
            (version_id, last_updated_ms, format!("Deleted {ty}/{id} (version {version_id})"))
        }
        DeleteOutcome::AlreadyDeleted { version_id, last_updated_ms } => {
            (version_id, last_updated_ms, format!("{ty}/{id} was already deleted; nothing changed"))
        }
    };
    Ok(responder::deleted(version_id, last_updated_ms, message, neg, prefer))
}

/// `GET [base]/[type]/[id]/_history`.
pub(crate) async fn history_instance<R: Resource>(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    let id = path.into_inner();
    let mut query = history_query(&req, &state)?;
    let fresh = query.since_ms.is_none() && query.before_seq.is_none();
    query.resource_type = Some(R::TYPE);
    query.id = Some(id.clone());
    let entries = state.store.history(&query).await?;
    if entries.is_empty() && fresh {
        return Err(ApiError::NotFound(format!("{}/{id}", R::TYPE)));
    }
    Ok(bundle::history(&req, &state, &query, entries, neg))
}

/// `GET [base]/[type]/_history`.
pub(crate) async fn history_type<R: Resource>(req: HttpRequest, state: Data, neg: Negotiation) -> Answer {
    let mut query = history_query(&req, &state)?;
    query.resource_type = Some(R::TYPE);
    let entries = state.store.history(&query).await?;
    Ok(bundle::history(&req, &state, &query, entries, neg))
}

/// `GET [base]/_history`.
pub(crate) async fn history_system(req: HttpRequest, state: Data, neg: Negotiation) -> Answer {
    let query = history_query(&req, &state)?;
    let entries = state.store.history(&query).await?;
    Ok(bundle::history(&req, &state, &query, entries, neg))
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

/// Name the resource in not-found and gone answers.
fn named(err: StoreError, ty: ResourceType, id: &str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::NotFound(format!("{ty}/{id}")),
        StoreError::Deleted { .. } => ApiError::Gone(format!("{ty}/{id}")),
        other => other.into(),
    }
}

fn invalid_id(id: &str) -> String {
    format!("'{id}' is not a valid id: 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'")
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
