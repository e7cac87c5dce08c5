//! Bundles: the `history` Bundle (http://hl7.org/fhir/R4/http.html#history), rendered around the
//! stored resource text without parsing it, with keyset paging (`_cursor`) that stays stable
//! while others write.

use actix_web::{HttpRequest, HttpResponse};
use domain::search::query::SearchRequest;
use domain::{Issue, IssueCode, ResourceType, Severity};
use persistence::{HistoryEntry, HistoryQuery, Method, StoredVersion};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::extract::Negotiation;
use crate::responder::{base_url, etag, json_body, operation_outcome};
use crate::state::AppState;

/// The query parameter carrying the keyset position of the next page.
pub(crate) const CURSOR: &str = "_cursor";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bundle<'a> {
    resource_type: &'static str,
    id: String,
    meta: Meta,
    #[serde(rename = "type")]
    type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: String,
}

#[derive(Serialize)]
struct Link {
    relation: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    full_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Search>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Response>,
}

#[derive(Serialize)]
struct Search {
    mode: &'static str,
}

#[derive(Serialize)]
struct Request {
    method: &'static str,
    url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    status: &'static str,
    etag: String,
    last_modified: String,
}

/// Render one page of history; `entries` holds up to `query.count + 1` versions, the extra one
/// signalling that a next page exists.
pub(crate) fn history(
    req: &HttpRequest,
    state: &AppState,
    query: &HistoryQuery,
    mut entries: Vec<HistoryEntry>,
    neg: Negotiation,
) -> HttpResponse {
    let base = base_url(req, state);
    let has_next = entries.len() as u64 > query.count;
    entries.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
    let path = req.path().trim_start_matches("/fhir");
    let self_url = if req.query_string().is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{}", req.query_string())
    };
    let mut link = vec![Link { relation: "self", url: self_url }];
    if let (true, Some(last)) = (has_next, entries.last()) {
        let mut next = format!("{base}{path}?_count={}", query.count);
        if let Some(since) = query.since_ms {
            next.push_str(&format!("&_since={}", domain::instant::to_fhir(since)));
        }
        next.push_str(&format!("&{CURSOR}={}", last.seq));
        link.push(Link { relation: "next", url: next });
    }
    let raw: Vec<Option<Box<RawValue>>> =
        entries.iter_mut().map(|e| e.version.body.take().and_then(|b| RawValue::from_string(b).ok())).collect();
    let entry = entries
        .iter()
        .zip(&raw)
        .map(|(e, resource)| {
            let v = &e.version;
            let (url, status) = match (e.method, v.version_id) {
                (Method::Post, _) => (v.resource_type.to_string(), "201 Created"),
                (Method::Put, 1) => (format!("{}/{}", v.resource_type, v.id), "201 Created"),
                (Method::Put, _) => (format!("{}/{}", v.resource_type, v.id), "200 OK"),
                (Method::Delete, _) => (format!("{}/{}", v.resource_type, v.id), "204 No Content"),
            };
            Entry {
                full_url: format!("{base}/{}/{}", v.resource_type, v.id),
                resource: resource.as_deref(),
                search: None,
                request: Some(Request { method: e.method.as_str(), url }),
                response: Some(Response {
                    status,
                    etag: etag(v.version_id),
                    last_modified: domain::instant::to_fhir(v.last_updated_ms),
                }),
            }
        })
        .collect();
    render("history", None, link, entry, neg)
}

/// One resource of a search result: a match, or one added by `_include`/`_revinclude`.
pub(crate) struct SearchEntry {
    pub(crate) version: StoredVersion,
    pub(crate) include: bool,
}

/// Render a `searchset` Bundle: matches then includes, self and next links built from the
/// parameters that were understood, and a warning entry naming any that were ignored.
#[allow(clippy::too_many_arguments)] // one call site; the pieces are all different things
pub(crate) fn searchset(
    req: &HttpRequest,
    state: &AppState,
    ty: ResourceType,
    request: &SearchRequest,
    count: u64,
    total: Option<u64>,
    mut entries: Vec<SearchEntry>,
    next: Option<String>,
    neg: Negotiation,
) -> HttpResponse {
    let base = base_url(req, state);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &request.understood {
        if key != "_count" {
            query.append_pair(key, value);
        }
    }
    query.append_pair("_count", &count.to_string());
    let query = query.finish();
    let mut link = vec![Link { relation: "self", url: format!("{base}/{ty}?{query}") }];
    if let Some(cursor) = next {
        let cursor: String = form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
        link.push(Link { relation: "next", url: format!("{base}/{ty}?{query}&{CURSOR}={cursor}") });
    }
    let outcome = (!request.ignored.is_empty()).then(|| {
        let issue = Issue {
            severity: Severity::Warning,
            code: IssueCode::NotSupported,
            expression: None,
            diagnostics: format!(
                "these parameters were not understood and were ignored: {}",
                request.ignored.join(", ")
            ),
        };
        operation_outcome(&[issue])
    });
    let raw: Vec<Option<Box<RawValue>>> =
        entries.iter_mut().map(|e| e.version.body.take().and_then(|b| RawValue::from_string(b).ok())).collect();
    let outcome_raw = outcome.and_then(|o| RawValue::from_string(o).ok());
    let mut entry: Vec<Entry<'_>> = entries
        .iter()
        .zip(&raw)
        .map(|(e, resource)| Entry {
            full_url: format!("{base}/{}/{}", e.version.resource_type, e.version.id),
            resource: resource.as_deref(),
            search: Some(Search { mode: if e.include { "include" } else { "match" } }),
            request: None,
            response: None,
        })
        .collect();
    if let Some(outcome) = &outcome_raw {
        entry.push(Entry {
            full_url: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            resource: Some(outcome),
            search: Some(Search { mode: "outcome" }),
            request: None,
            response: None,
        });
    }
    render("searchset", total, link, entry, neg)
}

/// The Bundle envelope around `entry`: a fresh id, `meta.lastUpdated` now, rendered as negotiated.
fn render(
    type_: &'static str,
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<Entry<'_>>,
    neg: Negotiation,
) -> HttpResponse {
    let now = domain::instant::from_system_time(std::time::SystemTime::now());
    let bundle = Bundle {
        resource_type: "Bundle",
        id: uuid::Uuid::new_v4().to_string(),
        meta: Meta { last_updated: domain::instant::to_fhir(now) },
        type_,
        total,
        link,
        entry,
    };
    json_body(HttpResponse::Ok(), serde_json::to_string(&bundle).unwrap_or_default(), neg)
}
