//! Reading the audit trail: `GET /fhir/AuditEvent` (search by `date`, `patient`, `agent`,
//! `entity`, `_count`; newest first) and `GET /fhir/AuditEvent/{id}`. Only a token with an
//! AuditEvent scope (`user/` or `system/`, `r` to read, `s` to search) gets in. The records are
//! append-only: there is no write interaction.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::IssueCode;
use persistence::AuditQuery;

use crate::auth::Access;
use crate::bundle::{self, CURSOR};
use crate::error::ApiError;
use crate::extract::{query_pairs, Negotiation};
use crate::responder::{base_url, json_body};
use crate::state::AppState;

/// A search parameter of the trail: the CapabilityStatement and the OpenAPI document are
/// derived from `PARAMS`; `search` parses each.
pub(crate) struct TrailParam {
    pub(crate) name: &'static str,
    /// The FHIR search parameter type.
    pub(crate) kind: &'static str,
    pub(crate) description: &'static str,
}

/// The parameters `GET /fhir/AuditEvent` understands (besides `_count` and the paging cursor).
pub(crate) const PARAMS: [TrailParam; 4] = [
    TrailParam {
        name: "date",
        kind: "date",
        description: "When the request was recorded: a FHIR date, dateTime or instant, with an optional `eq`, `ge`, `gt`, `le` or `lt` prefix",
    },
    TrailParam {
        name: "patient",
        kind: "reference",
        description: "The patient the request concerned (`Patient/id` or `id`)",
    },
    TrailParam { name: "agent", kind: "reference", description: "Who made the request (the token's `fhirUser` or subject)" },
    TrailParam { name: "entity", kind: "reference", description: "What the request concerned (`Type/id`)" },
];

/// `GET /fhir/AuditEvent/{id}`.
pub(crate) async fn read(
    state: web::Data<AppState>,
    _authenticated: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match state.store.read_audit(&id).await? {
        Some(body) => Ok(json_body(HttpResponse::Ok(), body, neg)),
        None => Err(ApiError::NotFound(format!("AuditEvent/{id}"))),
    }
}

/// `GET /fhir/AuditEvent?…`.
pub(crate) async fn search(
    req: HttpRequest,
    state: web::Data<AppState>,
    _authenticated: Access,
    neg: Negotiation,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.settings;
    let mut query = AuditQuery { count: settings.default_count, ..AuditQuery::default() };
    let bad = |key: &str, why: String| ApiError::invalid(IssueCode::Value, key, why);
    for (key, value) in query_pairs(req.query_string()) {
        match key.as_str() {
            "date" => {
                let (prefix, rest) = match value.get(..2) {
                    Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let (low, high) = domain::search::dates::range(&rest.replace(' ', "+"))
                    .ok_or_else(|| bad("date", format!("'{value}' is not a FHIR date, dateTime or instant")))?;
                let (from, to) = match prefix {
                    "ge" => (Some(low), None),
                    "gt" => (Some(high.saturating_add(1)), None),
                    "le" => (None, Some(high)),
                    "lt" => (None, Some(low.saturating_sub(1))),
                    _ => (Some(low), Some(high)),
                };
                if let Some(from) = from {
                    query.from_ms = Some(query.from_ms.map_or(from, |f| f.max(from)));
                }
                if let Some(to) = to {
                    query.to_ms = Some(query.to_ms.map_or(to, |t| t.min(to)));
                }
            }
            "patient" => query.patient = Some(value.strip_prefix("Patient/").unwrap_or(&value).to_owned()),
            "agent" => query.agent = Some(value),
            "entity" => query.entity = Some(value),
            "_count" => {
                let count = value
                    .parse::<u64>()
                    .map_err(|_| bad("_count", format!("_count must be a number, not '{value}'")))?;
                query.count = count.min(settings.max_count);
            }
            CURSOR => {
                query.before_seq =
                    Some(value.parse().map_err(|_| bad(CURSOR, "the paging cursor is malformed".to_owned()))?);
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::invalid(
                    IssueCode::NotSupported,
                    other,
                    format!("AuditEvent is searched by date, patient, agent, entity and _count, not '{other}'"),
                ))
            }
        }
    }
    let mut entries = state.store.search_audit(&query).await?;
    let has_next = entries.len() as u64 > query.count;
    entries.truncate(usize::try_from(query.count).unwrap_or(usize::MAX));
    let base = base_url(&req, &state);
    let self_url = match req.query_string() {
        "" => format!("{base}/AuditEvent"),
        q => format!("{base}/AuditEvent?{q}"),
    };
    let mut links = vec![("self", self_url)];
    if let (true, Some(last)) = (has_next, entries.last()) {
        let kept: Vec<(String, String)> =
            query_pairs(req.query_string()).into_iter().filter(|(k, _)| k != CURSOR && k != "_count").collect();
        let mut next = form_urlencoded::Serializer::new(String::new());
        next.extend_pairs(kept)
            .append_pair("_count", &query.count.to_string())
            .append_pair(CURSOR, &last.seq.to_string());
        links.push(("next", format!("{base}/AuditEvent?{}", next.finish())));
    }
    let matches = entries
        .into_iter()
        .map(|e| {
            #[derive(serde::Deserialize)]
            struct Id<'a> {
                id: &'a str,
            }
            let id = serde_json::from_str::<Id<'_>>(&e.body).map(|i| i.id.to_owned()).unwrap_or_default();
            (format!("{base}/AuditEvent/{id}"), e.body)
        })
        .collect();
    Ok(bundle::matches(links, matches, neg))
}
