//! `POST [base]` with a `transaction` or `batch` Bundle (http://hl7.org/fhir/R4/http.html#transaction):
//! the Bundle is read into `EntryRequest`s, carried out by the engine, and answered with a
//! `transaction-response` or `batch-response` Bundle.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use domain::{Issue, IssueCode, ResourceType};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::audit;
use crate::auth::Access;
use crate::bundle::{self, ResponseEntry};
use crate::engine::{self, Address, EntryRequest, EntryResult, PatchFormat, Verb};
use crate::error::ApiError;
use crate::extract::{query_pairs, FhirBody, Negotiation, Prefer, Return};
use crate::responder::{base_url, operation_outcome, write_outcome};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` elements are valid FHIR the server accepts and does not use
struct BundleIn {
    resource_type: String,
    #[serde(rename = "type")]
    type_: String,
    #[serde(default)]
    entry: Vec<EntryIn>,
    id: Option<IgnoredAny>,
    meta: Option<IgnoredAny>,
    implicit_rules: Option<IgnoredAny>,
    language: Option<IgnoredAny>,
    identifier: Option<IgnoredAny>,
    timestamp: Option<IgnoredAny>,
    total: Option<IgnoredAny>,
    link: Option<IgnoredAny>,
    signature: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` elements are valid FHIR the server accepts and does not use
struct EntryIn {
    full_url: Option<String>,
    resource: Option<Box<RawValue>>,
    request: Option<RequestIn>,
    id: Option<IgnoredAny>,
    extension: Option<IgnoredAny>,
    modifier_extension: Option<IgnoredAny>,
    link: Option<IgnoredAny>,
    search: Option<IgnoredAny>,
    response: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // the `IgnoredAny` elements are valid FHIR the server accepts and does not use
struct RequestIn {
    method: String,
    url: String,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    if_match: Option<String>,
    if_none_exist: Option<String>,
    id: Option<IgnoredAny>,
    extension: Option<IgnoredAny>,
    modifier_extension: Option<IgnoredAny>,
}

/// A Binary holding a JSON Patch, as a PATCH entry carries it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BinaryIn {
    content_type: Option<String>,
    data: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transaction,
    Batch,
}

/// `POST [base]`.
pub(crate) async fn bundle(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    neg: Negotiation,
    prefer: Prefer,
    body: FhirBody,
) -> Result<HttpResponse, ApiError> {
    let (kind, entries) = read_bundle(&body.0, &base_url(&req, &state), state.settings.max_bundle_entries)?;
    let base = base_url(&req, &state);
    let ctx = crate::interactions::context(&req, &state, &access);
    match kind {
        Kind::Transaction => {
            let mut requests = Vec::with_capacity(entries.len());
            for (index, entry) in entries.into_iter().enumerate() {
                requests.push(entry.map_err(|error| in_entry(index, error))?);
            }
            let results = engine::transaction(&state, &ctx, requests).await.map_err(|f| f.into_api_error())?;
            let entries = results.into_iter().map(|r| success(r, &base, prefer)).collect();
            Ok(bundle::response("transaction-response", entries, neg))
        }
        Kind::Batch => {
            audit::note_subtype(&req, "batch");
            let mut responses = Vec::with_capacity(entries.len());
            for (index, entry) in entries.into_iter().enumerate() {
                let result = match entry {
                    Ok(request) => engine::single(&state, &ctx, request).await,
                    Err(error) => Err(error),
                };
                responses.push(match result {
                    Ok(result) => success(result, &base, prefer),
                    Err(error) => failure(&in_entry(index, error)),
                });
            }
            Ok(bundle::response("batch-response", responses, neg))
        }
    }
}

/// The entries of a `transaction` Bundle, as the engine runs them (the seed templates).
pub(crate) fn transaction_entries(body: &Bytes, base: &str) -> Result<Vec<EntryRequest>, ApiError> {
    let (kind, entries) = read_bundle(body, base, usize::MAX)?;
    if kind != Kind::Transaction {
        return Err(ApiError::invalid(IssueCode::Value, "Bundle.type", "a transaction Bundle is expected"));
    }
    entries.into_iter().enumerate().map(|(index, entry)| entry.map_err(|error| in_entry(index, error))).collect()
}

fn in_entry(index: usize, error: ApiError) -> ApiError {
    ApiError::InEntry { index, label: String::new(), inner: Box::new(error) }
}

/// Read the Bundle: its kind and each entry as a request (or what is wrong with it).
#[allow(clippy::type_complexity)] // one caller; a named type would say no more
fn read_bundle(
    body: &Bytes,
    base: &str,
    max_entries: usize,
) -> Result<(Kind, Vec<Result<EntryRequest, ApiError>>), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let bundle: BundleIn = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.inner().to_string();
        let message = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
        let expression = if path == "." { "Bundle".to_owned() } else { format!("Bundle.{path}") };
        ApiError::invalid(IssueCode::Structure, expression.clone(), format!("{expression}: {message}"))
    })?;
    if bundle.resource_type != "Bundle" {
        return Err(ApiError::invalid(
            IssueCode::Invalid,
            "resourceType",
            format!("POST to the base takes a Bundle, not a {}", bundle.resource_type),
        ));
    }
    let kind = match bundle.type_.as_str() {
        "transaction" => Kind::Transaction,
        "batch" => Kind::Batch,
        other => {
            return Err(ApiError::invalid(
                IssueCode::Value,
                "Bundle.type",
                format!("Bundle.type must be transaction or batch, not '{other}'"),
            ))
        }
    };
    if bundle.entry.len() > max_entries {
        return Err(ApiError::Invalid(vec![Issue::error(
            IssueCode::TooCostly,
            "Bundle.entry",
            format!("the Bundle holds {} entries; this server takes at most {max_entries}", bundle.entry.len()),
        )]));
    }
    unique_full_urls(&bundle.entry)?;
    let entries = bundle.entry.into_iter().map(|entry| read_entry(entry, base)).collect();
    Ok((kind, entries))
}

/// A `fullUrl` names one entry: a Bundle in which two entries share one is invalid (bdl-7,
/// http://hl7.org/fhir/R4/bundle.html#invs; the exception for different `meta.versionId`s is for
/// history Bundles, not requests), whatever its type. Refused as a whole, naming the later entry.
fn unique_full_urls(entries: &[EntryIn]) -> Result<(), ApiError> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(full_url) = entry.full_url.as_deref() else { continue };
        if let Some(first) = seen.insert(full_url, index) {
            let inner = ApiError::invalid(
                IssueCode::Duplicate,
                "Bundle.entry.fullUrl",
                format!(
                    "the fullUrl '{full_url}' is also the fullUrl of Bundle.entry[{first}]; each entry needs its own"
                ),
            );
            return Err(in_entry(index, inner));
        }
    }
    Ok(())
}

fn read_entry(entry: EntryIn, base: &str) -> Result<EntryRequest, ApiError> {
    let Some(request) = entry.request else {
        return Err(ApiError::invalid(IssueCode::Required, "Bundle.entry.request", "each entry needs a request"));
    };
    let verb = match request.method.as_str() {
        "GET" | "HEAD" => Verb::Get,
        "POST" => Verb::Post,
        "PUT" => Verb::Put,
        "PATCH" => Verb::Patch,
        "DELETE" => Verb::Delete,
        other => {
            return Err(ApiError::invalid(
                IssueCode::Value,
                "Bundle.entry.request.method",
                format!("'{other}' is not an HTTP verb FHIR uses"),
            ))
        }
    };
    let (ty, address, cascade_delete) = parse_url(&request.url, base, verb)?;
    let if_match = match &request.if_match {
        Some(text) => Some(crate::extract::parse_etag(text).ok_or_else(|| {
            ApiError::invalid(
                IssueCode::Value,
                "Bundle.entry.request.ifMatch",
                format!("ifMatch '{text}' is not a version ETag such as W/\"1\""),
            )
        })?),
        None => None,
    };
    let if_none_exist = request.if_none_exist.as_deref().map(|q| query_pairs(q.trim_start_matches('?')));
    let (body, patch) = match verb {
        Verb::Patch => {
            let (body, format) = patch_document(entry.resource.as_deref())?;
            (Some(body), Some(format))
        }
        Verb::Post | Verb::Put => (entry.resource.map(|r| Bytes::from(r.get().to_owned())), None),
        Verb::Get | Verb::Delete => (None, None),
    };
    let unchanged_since = match &request.if_modified_since {
        Some(text) => Some(domain::instant::parse(text).ok_or_else(|| {
            ApiError::invalid(
                IssueCode::Value,
                "Bundle.entry.request.ifModifiedSince",
                format!("ifModifiedSince '{text}' is not an instant"),
            )
        })?),
        None => None,
    };
    let if_none_match = request.if_none_match.as_deref().and_then(crate::extract::parse_etag);
    Ok(EntryRequest {
        verb,
        ty,
        address,
        full_url: entry.full_url,
        body,
        patch,
        if_none_exist,
        if_match,
        if_none_match,
        if_modified_since: unchanged_since,
        cascade_delete,
    })
}

/// `Task`, `Task/1`, `Task/1/_history/2`, `Task?criteria`, relative or under our base.
fn parse_url(url: &str, base: &str, verb: Verb) -> Result<(ResourceType, Address, bool), ApiError> {
    let bad = |why: String| ApiError::invalid(IssueCode::Value, "Bundle.entry.request.url", why);
    let relative = url.strip_prefix(base).map(|r| r.trim_start_matches('/')).unwrap_or(url);
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    // Only the path says where the entry goes: criteria often hold URLs (`identifier=http://...|1`).
    if path.contains("://") {
        return Err(bad(format!("'{url}' is not on this server; use a URL relative to the base")));
    }
    let (cascade_delete, pairs) = crate::coordination::split_cascade(query_pairs(query));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ty = ResourceType::parse(segments[0])
        .ok_or_else(|| bad(format!("'{}' is not a resource type this server holds", segments[0])))?;
    let address = match (segments.as_slice(), verb) {
        ([_], Verb::Post) => Address::Type,
        ([_], Verb::Get) => Address::Search(pairs),
        ([_], _) if !pairs.is_empty() => Address::Criteria(pairs),
        ([_, id], _) => Address::Instance((*id).to_owned()),
        ([_, id, "_history", vid], Verb::Get) => {
            Address::Version((*id).to_owned(), vid.parse().map_err(|_| bad(format!("'{vid}' is not a version")))?)
        }
        _ => return Err(bad(format!("'{url}' is not a URL a {} entry can use", verb.as_str()))),
    };
    Ok((ty, address, cascade_delete && verb == Verb::Delete))
}

/// A PATCH entry's document: a Binary holding a JSON Patch, or a Parameters (FHIRPath Patch).
fn patch_document(resource: Option<&RawValue>) -> Result<(Bytes, PatchFormat), ApiError> {
    let bad = |why: &str| ApiError::invalid(IssueCode::Invalid, "Bundle.entry.resource", why.to_owned());
    let resource = resource.ok_or_else(|| bad("a PATCH entry needs a Binary (JSON Patch) or Parameters resource"))?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Typed {
        resource_type: String,
    }
    let typed: Typed = serde_json::from_str(resource.get()).map_err(|_| bad("the resource has no resourceType"))?;
    match typed.resource_type.as_str() {
        "Parameters" => Ok((Bytes::from(resource.get().to_owned()), PatchFormat::FhirPath)),
        "Binary" => {
            let binary: BinaryIn = serde_json::from_str(resource.get()).map_err(|_| bad("malformed Binary"))?;
            if binary.content_type.as_deref() != Some("application/json-patch+json") {
                return Err(bad("a Binary patch must have contentType application/json-patch+json"));
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(binary.data.unwrap_or_default())
                .map_err(|_| bad("Binary.data is not base64"))?;
            Ok((Bytes::from(data), PatchFormat::Json))
        }
        other => Err(bad(&format!("a PATCH entry cannot carry a {other}"))),
    }
}

/// A carried-out entry as a response entry.
fn success(result: EntryResult, base: &str, prefer: Prefer) -> ResponseEntry {
    let with_resource = prefer.return_ == Return::Representation;
    let written = |version: persistence::StoredVersion, status: StatusCode| ResponseEntry {
        full_url: Some(format!("{base}/{}/{}", version.resource_type, version.id)),
        location: Some(format!("{}/{}/_history/{}", version.resource_type, version.id, version.version_id)),
        status: status_line(status),
        version: Some((version.version_id, version.last_updated_ms)),
        resource: if with_resource { version.body } else { None },
        outcome: None,
    };
    match result {
        EntryResult::Written { version, created, warnings } => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            let outcome = if prefer.return_ == Return::OperationOutcome {
                Some(write_outcome(created, &version, &warnings))
            } else {
                (!warnings.is_empty()).then(|| operation_outcome(&warnings))
            };
            ResponseEntry { outcome, ..written(version, status) }
        }
        EntryResult::Existing(version) => written(version, StatusCode::OK),
        EntryResult::NotModified(version) => {
            ResponseEntry { location: None, resource: None, ..written(version, StatusCode::NOT_MODIFIED) }
        }
        EntryResult::Read(version) => {
            ResponseEntry { location: None, resource: version.body.clone(), ..written(version, StatusCode::OK) }
        }
        EntryResult::Searched(bundle) => ResponseEntry {
            full_url: None,
            resource: Some(bundle),
            status: status_line(StatusCode::OK),
            location: None,
            version: None,
            outcome: None,
        },
        EntryResult::Deleted { version, message } => ResponseEntry {
            full_url: None,
            resource: None,
            status: status_line(StatusCode::NO_CONTENT),
            location: None,
            version,
            outcome: (prefer.return_ == Return::OperationOutcome)
                .then(|| operation_outcome(&[Issue::information(message)])),
        },
    }
}

/// A failed batch entry: its status and OperationOutcome.
fn failure(error: &ApiError) -> ResponseEntry {
    use actix_web::ResponseError as _;
    ResponseEntry {
        full_url: None,
        resource: None,
        status: status_line(error.status_code()),
        location: None,
        version: None,
        outcome: Some(operation_outcome(&error.issues())),
    }
}

fn status_line(status: StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default())
}
