//! Extractors: what an HTTP request says, parsed into types before a handler runs.
//! `Negotiation` (_format, _pretty, Accept; 406), `Prefer`, `FhirBody` and `FormBody` (Content-Type,
//! size; 415 and 413) and the version preconditions (`If-Match`, `If-None-Match`, `If-Modified-Since`).

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use domain::IssueCode;
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

use crate::entry::PatchFormat;
use crate::error::ApiError;
use crate::state::AppState;

/// Media types that mean FHIR JSON (`application/json+fhir` is the DSTU2 name, still sent by old clients).
const JSON_TYPES: [&str; 4] = ["application/fhir+json", "application/json", "application/json+fhir", "text/json"];

/// How the response is to be rendered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Negotiation {
    pub(crate) pretty: bool,
}

impl FromRequest for Negotiation {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(negotiate(req))
    }
}

fn negotiate(req: &HttpRequest) -> Result<Negotiation, ApiError> {
    let mut pretty = false;
    let mut format = None;
    for (key, value) in query_pairs(req.query_string()) {
        match key.as_str() {
            "_pretty" => pretty = value == "true",
            // An unencoded '+' in the query string arrives as a space.
            "_format" => format = Some(value.replace(' ', "+")),
            _ => {}
        }
    }
    if let Some(format) = format {
        let wanted = format.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if wanted != "json" && !JSON_TYPES.contains(&wanted.as_str()) {
            return Err(ApiError::NotAcceptable(format!(
                "_format '{format}' is not supported; this server speaks application/fhir+json"
            )));
        }
    } else if let Some(accept) = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let acceptable = accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            media.is_empty() || media == "*/*" || media == "application/*" || JSON_TYPES.contains(&media.as_str())
        });
        if !acceptable {
            return Err(ApiError::NotAcceptable(format!(
                "none of the media types in Accept ('{accept}') is supported; use application/fhir+json"
            )));
        }
    }
    Ok(Negotiation { pretty })
}

/// The query string decoded into pairs, in order.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(query).map(|q| q.into_inner()).unwrap_or_default()
}

/// What the client prefers to get back from a write (`Prefer: return=...`, http://hl7.org/fhir/R4/http.html#ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Return {
    Minimal,
    #[default]
    Representation,
    OperationOutcome,
}

/// The parsed `Prefer` header.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prefer {
    pub(crate) return_: Return,
    /// `handling=strict`: unknown search parameters are errors (the default is lenient).
    pub(crate) strict: bool,
    /// `respond-async`: the client takes a 202 and a status URL (bulk export requires it).
    pub(crate) respond_async: bool,
}

impl FromRequest for Prefer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut prefer = Prefer::default();
        for value in req.headers().get_all("prefer").filter_map(|v| v.to_str().ok()) {
            for token in value.split([',', ';']) {
                match token.trim().replace(' ', "").as_str() {
                    "return=minimal" => prefer.return_ = Return::Minimal,
                    "return=representation" => prefer.return_ = Return::Representation,
                    "return=OperationOutcome" => prefer.return_ = Return::OperationOutcome,
                    "handling=strict" => prefer.strict = true,
                    "handling=lenient" => prefer.strict = false,
                    "respond-async" => prefer.respond_async = true,
                    _ => {}
                }
            }
        }
        ready(Ok(prefer))
    }
}

/// A request body that is FHIR JSON and within the configured size limit.
pub(crate) struct FhirBody(pub(crate) Bytes);

impl FromRequest for FhirBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_body(req, payload, &JSON_TYPES, "application/fhir+json");
        Box::pin(async move { body.await.and_then(shallow).map(FhirBody) })
    }
}

/// A PATCH body: a JSON Patch (`application/json-patch+json`) or a FHIRPath Patch
/// `Parameters` resource (`application/fhir+json`), within the size limit.
pub(crate) struct PatchBody {
    pub(crate) format: PatchFormat,
    pub(crate) body: Bytes,
}

/// What a PATCH body may be.
const PATCH_TYPES: [&str; 4] =
    ["application/json-patch+json", "application/fhir+json", "application/json", "application/json+fhir"];

impl FromRequest for PatchBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let text = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let format = if media == "application/json-patch+json" { PatchFormat::Json } else { PatchFormat::FhirPath };
        let body = read_body(req, payload, &PATCH_TYPES, "application/json-patch+json or application/fhir+json");
        Box::pin(async move { Ok(PatchBody { format, body: shallow(body.await?)? }) })
    }
}

/// Refuse (400 `too-costly`) a JSON body nested deeper than `json_text::MAX_DEPTH`, before
/// anything parses it: every recursive walk over client JSON relies on this bound.
fn shallow(body: Bytes) -> Result<Bytes, ApiError> {
    match domain::json_text::check_depth(&body) {
        Ok(()) => Ok(body),
        Err(why) => Err(ApiError::invalid(IssueCode::TooCostly, "body", why)),
    }
}

/// The body of `POST [type]/_search`: `application/x-www-form-urlencoded` (or no Content-Type)
/// within the size limit.
pub(crate) struct FormBody(pub(crate) Bytes);

impl FromRequest for FormBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        const FORM: &str = "application/x-www-form-urlencoded";
        let body = read_body(req, payload, &[FORM], FORM);
        Box::pin(async move { body.await.map(FormBody) })
    }
}

/// Read the whole body, refusing (415) a Content-Type not in `accepted` and (413) a body larger
/// than the configured limit, whether declared by Content-Length or found while reading.
fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    accepted: &'static [&'static str],
    wanted: &'static str,
) -> LocalBoxFuture<'static, Result<Bytes, ApiError>> {
    let limit = req.app_data::<web::Data<AppState>>().map_or(10 * 1024 * 1024, |s| s.settings.max_body_bytes);
    let checked = check_content_type(req.headers(), accepted, wanted).and_then(|()| {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match declared {
            Some(length) if length > limit => Err(ApiError::PayloadTooLarge(limit)),
            _ => Ok(()),
        }
    });
    let mut payload = payload.take();
    Box::pin(async move {
        checked?;
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|err| {
                ApiError::invalid(IssueCode::Structure, "body", format!("the request body could not be read: {err}"))
            })?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    })
}

fn check_content_type(headers: &HeaderMap, accepted: &[&str], wanted: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // Many clients omit it on small bodies; there is one kind of body we take, so assume it.
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let media = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if accepted.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!("Content-Type '{text}' is not supported; send {wanted}")))
    }
}

/// The version an `If-Match` header asks for (`W/"3"`, `"3"` or `3`); a malformed one is a 400.
pub(crate) fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    parse_etag(text).map(Some).ok_or_else(|| {
        ApiError::invalid(
            IssueCode::Value,
            "If-Match",
            format!("If-Match '{text}' is not a version ETag such as W/\"1\""),
        )
    })
}

/// Whether a read may answer 304: the client's `If-None-Match` names the current version, or
/// (without `If-None-Match`) nothing changed since `If-Modified-Since` (RFC 9110 §13.2.2).
pub(crate) fn not_modified(req: &HttpRequest, version_id: i64, last_updated_ms: i64) -> bool {
    if let Some(value) = req.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return value.split(',').any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version_id));
    }
    let since = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    since.is_some_and(|since| last_updated_ms / 1000 <= domain::instant::from_system_time(since) / 1000)
}

pub(crate) fn parse_etag(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(text);
    text.parse::<i64>().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::parse_etag;

    #[test]
    fn etags_are_read_in_every_form_clients_send() {
        for (text, expected) in [
            ("W/\"3\"", Some(3)),
            ("\"3\"", Some(3)),
            ("3", Some(3)),
            (" W/\"12\" ", Some(12)),
            ("W/\"x\"", None),
            ("W/\"0\"", None),
            ("", None),
        ] {
            assert_eq!(parse_etag(text), expected, "{text:?}");
        }
    }
}
