//! Search interactions: `GET [base]/[type]?…` and `POST [base]/[type]/_search`
//! (http://hl7.org/fhir/R4/search.html), answered with a `searchset` Bundle.

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use domain::search::query::{self, SearchRequest, Summary, Total};
use domain::smart::Letter;
use domain::{Resource, ResourceType};
use persistence::{SearchPage, StoredVersion};

use crate::auth::Access;
use crate::bundle::{self, SearchEntry};
use crate::error::ApiError;
use crate::extract::{query_pairs, FormBody, Negotiation, Prefer};
use crate::responder::{base_url, json_body};
use crate::state::AppState;

type Answer = Result<HttpResponse, ApiError>;

/// `GET [base]/[type]?params`.
pub(crate) async fn search_get<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let pairs = query_pairs(req.query_string());
    run(R::TYPE, &req, &state, &access, &pairs, neg, prefer).await
}

/// `POST [base]/[type]/_search` with `application/x-www-form-urlencoded` parameters (and any
/// in the query string).
pub(crate) async fn search_post<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
    body: FormBody,
) -> Answer {
    let mut pairs = query_pairs(req.query_string());
    pairs.extend(form_urlencoded::parse(&body.0).map(|(k, v)| (k.into_owned(), v.into_owned())));
    run(R::TYPE, &req, &state, &access, &pairs, neg, prefer).await
}

#[allow(clippy::too_many_arguments)] // two callers; the pieces are all different things
async fn run(
    ty: ResourceType,
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    pairs: &[(String, String)],
    neg: Negotiation,
    prefer: Prefer,
) -> Answer {
    let text = searchset(state, access, &base_url(req, state), ty, pairs, prefer.strict).await?;
    Ok(json_body(HttpResponse::Ok(), text, neg))
}

/// The searchset Bundle answering `pairs` on `ty` for `access`, as text.
pub(crate) async fn searchset(
    state: &AppState,
    access: &Access,
    base: &str,
    ty: ResourceType,
    pairs: &[(String, String)],
    strict: bool,
) -> Result<String, ApiError> {
    access.require(ty, Letter::Search)?;
    let mut request =
        query::parse_within(ty, pairs, strict, &state.settings.search_limits).map_err(ApiError::Invalid)?;
    // Narrowed after parsing: the self link shows what the client asked, the SQL what it may see.
    access.narrow(ty, &mut request)?;
    let settings = &state.settings;
    let count = request.count.unwrap_or(settings.default_count).min(settings.max_count);
    let only_count = request.summary == Summary::Count || count == 0;
    let page = if only_count {
        SearchPage { matches: Vec::new(), next: None, previous: None, total: None }
    } else {
        state.store.search(ty, &request, count).await?
    };
    // A page with no page before or after it holds every match: it is its own count, and the
    // count query is left out (most searches of one patient's resources fit on one page).
    let whole = !only_count && page.next.is_none() && page.previous.is_none();
    let total = if request.total == Total::None && !only_count {
        None
    } else if whole {
        Some(page.matches.len() as u64)
    } else if let Some(total) = page.total {
        Some(total)
    } else {
        Some(state.store.count(ty, &request).await?)
    };
    let included = state.store.includes_where(ty, &page.matches, &request, &|v| access.sees(v)).await?;
    let shape = |v: StoredVersion| shaped(v, &request);
    let entries: Vec<SearchEntry> = page
        .matches
        .into_iter()
        .map(|v| SearchEntry { version: shape(v), include: false })
        .chain(included.into_iter().map(|v| SearchEntry { version: shape(v), include: true }))
        .collect();
    Ok(bundle::searchset(base, ty, &request, count, total, entries, page.next, page.previous))
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
