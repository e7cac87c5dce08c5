//! Search interactions: `GET [base]/[type]?…` and `POST [base]/[type]/_search`
//! (http://hl7.org/fhir/R4/search.html), answered with a `searchset` Bundle.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use domain::search::query::{self, SearchRequest, Summary, Total};
use domain::{Resource, ResourceType};
use persistence::{SearchPage, StoredVersion};

use crate::bundle::{self, SearchEntry};
use crate::error::ApiError;
use crate::extract::{query_pairs, Negotiation, Prefer};
use crate::state::AppState;

type Answer = Result<HttpResponse, ApiError>;

/// `GET [base]/[type]?params`.
pub(crate) async fn search_get<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let pairs = query_pairs(req.query_string());
    run(R::TYPE, &req, &state, &pairs, neg, prefer).await
}

/// `POST [base]/[type]/_search` with `application/x-www-form-urlencoded` parameters (and any
/// in the query string).
pub(crate) async fn search_post<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    neg: Negotiation,
    prefer: Prefer,
    body: Bytes,
) -> Answer {
    let mut pairs = query_pairs(req.query_string());
    pairs.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    run(R::TYPE, &req, &state, &pairs, neg, prefer).await
}

async fn run(
    ty: ResourceType,
    req: &HttpRequest,
    state: &AppState,
    pairs: &[(String, String)],
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let request = query::parse(ty, pairs, prefer.strict).map_err(ApiError::Invalid)?;
    let settings = &state.settings;
    let count = request.count.unwrap_or(settings.default_count).min(settings.max_count);
    let only_count = request.summary == Summary::Count || count == 0;
    let total =
        if request.total != Total::None || only_count { Some(state.store.count(ty, &request).await?) } else { None };
    let page = if only_count {
        SearchPage { matches: Vec::new(), next: None }
    } else {
        state.store.search(ty, &request, count).await?
    };
    let included = state.store.includes(ty, &page.matches, &request).await?;
    let shape = |v: StoredVersion| shaped(v, &request);
    let entries: Vec<SearchEntry> = page
        .matches
        .into_iter()
        .map(|v| SearchEntry { version: shape(v), include: false })
        .chain(included.into_iter().map(|v| SearchEntry { version: shape(v), include: true }))
        .collect();
    Ok(bundle::searchset(req, state, ty, &request, count, total, entries, page.next, neg))
}

/// Apply `_elements` and `_summary` to one resource.
fn shaped(mut version: StoredVersion, request: &SearchRequest) -> StoredVersion {
    let ty = version.resource_type;
    let Some(body) = version.body.as_deref() else { return version };
    let subset = if !request.elements.is_empty() {
        domain::subset(body, |k| request.elements.iter().any(|e| e == k.trim_start_matches('_')))
    } else {
        match request.summary {
            Summary::True => domain::subset(body, |k| domain::summary::is_summary_element(ty, k)),
            Summary::Data => domain::subset(body, |k| k != "text"),
            Summary::Text => domain::subset(body, |k| k == "text" || domain::summary::is_mandatory_element(ty, k)),
            Summary::False | Summary::Count => None,
        }
    };
    if let Some(subset) = subset {
        version.body = Some(subset);
    }
    version
}
