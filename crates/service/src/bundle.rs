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
    #[serde(skip_serializing_if = "Vec::is_empty")]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Search>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Response<'a>>,
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
struct Response<'a> {
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a RawValue>,
}

/// Render one page of history; `entries` holds up to `query.count + 1` versions, the extra one
/// signalling that a next page exists. Entries whose `visible` flag is false (access control)
/// are left out of the page but still move the paging cursor, so a page may hold fewer.
pub(crate) fn history(
    req: &HttpRequest,
    state: &AppState,
    query: &HistoryQuery,
    mut entries: Vec<HistoryEntry>,
    visible: &[bool],
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
    let mut shown = visible.iter().copied().chain(std::iter::repeat(true));
    entries.retain(|_| shown.next().unwrap_or(true));
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
                full_url: Some(format!("{base}/{}/{}", v.resource_type, v.id)),
                resource: resource.as_deref(),
                search: None,
                request: Some(Request { method: e.method.as_str(), url }),
                response: Some(Response {
                    status: status.to_owned(),
                    location: None,
                    etag: Some(etag(v.version_id)),
                    last_modified: Some(domain::instant::to_fhir(v.last_updated_ms)),
                    outcome: None,
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
    base: &str,
    ty: ResourceType,
    request: &SearchRequest,
    count: u64,
    total: Option<u64>,
    mut entries: Vec<SearchEntry>,
    next: Option<String>,
    previous: Option<String>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in &request.understood {
        if key != "_count" {
            query.append_pair(key, value);
        }
    }
    query.append_pair("_count", &count.to_string());
    let query = query.finish();
    let mut link = vec![Link { relation: "self", url: format!("{base}/{ty}?{query}") }];
    for (relation, cursor) in [("next", next), ("previous", previous)] {
        if let Some(cursor) = cursor {
            let cursor: String = form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            link.push(Link { relation, url: format!("{base}/{ty}?{query}&{CURSOR}={cursor}") });
        }
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
            full_url: Some(format!("{base}/{}/{}", e.version.resource_type, e.version.id)),
            resource: resource.as_deref(),
            search: Some(Search { mode: if e.include { "include" } else { "match" } }),
            request: None,
            response: None,
        })
        .collect();
    if let Some(outcome) = &outcome_raw {
        entry.push(Entry {
            full_url: Some(format!("urn:uuid:{}", uuid::Uuid::new_v4())),
            resource: Some(outcome),
            search: Some(Search { mode: "outcome" }),
            request: None,
            response: None,
        });
    }
    render_text("searchset", total, link, entry)
}

/// Render a `collection` Bundle: `head` (a resource generated for this answer, under a fresh
/// `urn:uuid`) first, then `versions` as stored, each under its URL on this server.
pub(crate) fn collection(
    base: &str,
    head: String,
    head_url: String,
    mut versions: Vec<StoredVersion>,
    neg: Negotiation,
) -> HttpResponse {
    let head = RawValue::from_string(head).ok();
    let raw: Vec<Option<Box<RawValue>>> =
        versions.iter_mut().map(|v| v.body.take().and_then(|b| RawValue::from_string(b).ok())).collect();
    let entry = std::iter::once(Entry {
        full_url: Some(head_url),
        resource: head.as_deref(),
        search: None,
        request: None,
        response: None,
    })
    .chain(versions.iter().zip(&raw).map(|(v, resource)| Entry {
        full_url: Some(full_url(base, v)),
        resource: resource.as_deref(),
        search: None,
        request: None,
        response: None,
    }))
    .collect();
    render("collection", None, Vec::new(), entry, neg)
}

/// Render a `searchset` Bundle of `matches` (full URL, resource text) with `links` (relation,
/// URL), for resources kept outside the versioned store (the audit trail).
pub(crate) fn matches(
    links: Vec<(&'static str, String)>,
    matches: Vec<(String, String)>,
    neg: Negotiation,
) -> HttpResponse {
    let link = links.into_iter().map(|(relation, url)| Link { relation, url }).collect();
    let raw: Vec<(String, Option<Box<RawValue>>)> =
        matches.into_iter().map(|(url, text)| (url, RawValue::from_string(text).ok())).collect();
    let entry = raw
        .iter()
        .map(|(url, resource)| Entry {
            full_url: Some(url.clone()),
            resource: resource.as_deref(),
            search: Some(Search { mode: "match" }),
            request: None,
            response: None,
        })
        .collect();
    render("searchset", None, link, entry, neg)
}

/// `[base]/[type]/[id]`, the `fullUrl` of a stored resource.
pub(crate) fn full_url(base: &str, version: &StoredVersion) -> String {
    format!("{base}/{}/{}", version.resource_type, version.id)
}

/// One entry of a `transaction-response` or `batch-response` Bundle.
pub(crate) struct ResponseEntry {
    pub(crate) full_url: Option<String>,
    /// The resource text, when the client prefers it returned.
    pub(crate) resource: Option<String>,
    /// `201 Created`, `412 Precondition Failed`, ...
    pub(crate) status: String,
    pub(crate) location: Option<String>,
    /// `(versionId, lastUpdated ms)` of the version the entry produced or read.
    pub(crate) version: Option<(i64, i64)>,
    /// An OperationOutcome's text.
    pub(crate) outcome: Option<String>,
}

/// Render a `transaction-response` or `batch-response` Bundle.
pub(crate) fn response(type_: &'static str, entries: Vec<ResponseEntry>, neg: Negotiation) -> HttpResponse {
    let raw = |text: &Option<String>| text.clone().and_then(|t| RawValue::from_string(t).ok());
    type Raw = Option<Box<RawValue>>;
    let bodies: Vec<(Raw, Raw)> = entries.iter().map(|e| (raw(&e.resource), raw(&e.outcome))).collect();
    let entry = entries
        .into_iter()
        .zip(&bodies)
        .map(|(e, (resource, outcome))| Entry {
            full_url: e.full_url,
            resource: resource.as_deref(),
            search: None,
            request: None,
            response: Some(Response {
                status: e.status,
                location: e.location,
                etag: e.version.map(|(v, _)| etag(v)),
                last_modified: e.version.map(|(_, ms)| domain::instant::to_fhir(ms)),
                outcome: outcome.as_deref(),
            }),
        })
        .collect();
    render(type_, None, Vec::new(), entry, neg)
}

/// The Bundle envelope around `entry`: a fresh id, `meta.lastUpdated` now, rendered as negotiated.
fn render(
    type_: &'static str,
    total: Option<u64>,
    link: Vec<Link>,
    entry: Vec<Entry<'_>>,
    neg: Negotiation,
) -> HttpResponse {
    json_body(HttpResponse::Ok(), render_text(type_, total, link, entry), neg)
}

/// The Bundle envelope around `entry` as text.
fn render_text(type_: &'static str, total: Option<u64>, link: Vec<Link>, entry: Vec<Entry<'_>>) -> String {
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
    serde_json::to_string(&bundle).unwrap_or_default()
}
