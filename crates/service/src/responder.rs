//! Responders: turn stored versions, Bundles and OperationOutcomes into HTTP responses with the
//! headers FHIR asks for (`ETag: W/"n"`, `Last-Modified`, `Location`, http://hl7.org/fhir/R4/http.html).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use domain::{json_text, Issue, ResourceType};
use persistence::StoredVersion;

use crate::entry::EntryResult;
use crate::extract::{Negotiation, Prefer, Return};
use crate::state::AppState;

pub(crate) use crate::outcome::{operation_outcome, write_outcome, FHIR_JSON};

/// The FHIR base URL (`http://host/fhir`) as configured, or as the request reached us.
pub(crate) fn base_url(req: &HttpRequest, state: &AppState) -> String {
    if let Some(base) = &state.settings.base_url {
        return base.trim_end_matches('/').to_owned();
    }
    let info = req.connection_info();
    format!("{}://{}/fhir", info.scheme(), info.host())
}

/// `W/"n"`, the weak ETag FHIR uses for version n.
pub(crate) fn etag(version_id: i64) -> String {
    format!("W/\"{version_id}\"")
}

/// An HTTP date for `Last-Modified`.
pub(crate) fn http_date(ms: i64) -> String {
    httpdate::fmt_http_date(domain::instant::to_system_time(ms))
}

fn version_headers(builder: &mut HttpResponseBuilder, version_id: i64, last_updated_ms: i64) {
    builder.insert_header((header::ETAG, etag(version_id)));
    builder.insert_header((header::LAST_MODIFIED, http_date(last_updated_ms)));
}

/// A JSON body rendered as negotiated (`_pretty`).
pub(crate) fn json_body(mut builder: HttpResponseBuilder, text: String, negotiation: Negotiation) -> HttpResponse {
    builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON)));
    if negotiation.pretty {
        builder.body(json_text::pretty(&text))
    } else {
        builder.body(text)
    }
}

/// A read or vread answer: the stored text with its version headers.
pub(crate) fn read(version: StoredVersion, negotiation: Negotiation) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    version_headers(&mut builder, version.version_id, version.last_updated_ms);
    json_body(builder, version.body.unwrap_or_default(), negotiation)
}

/// 304 Not Modified, still carrying the validators.
pub(crate) fn not_modified(version_id: i64, last_updated_ms: i64) -> HttpResponse {
    let mut builder = HttpResponse::NotModified();
    version_headers(&mut builder, version_id, last_updated_ms);
    builder.finish()
}

/// The answer to a create or update: status, `Location`, version headers, and the body the
/// client asked for with `Prefer: return=` (`OperationOutcome` carries the rules' warnings, as
/// R4 has it: "hints and warnings about the operation rather than the full resource").
fn written(
    status: StatusCode,
    version: StoredVersion,
    warnings: &[Issue],
    base: &str,
    negotiation: Negotiation,
    prefer: Prefer,
) -> HttpResponse {
    let ty = version.resource_type;
    let mut builder = HttpResponse::build(status);
    version_headers(&mut builder, version.version_id, version.last_updated_ms);
    builder.insert_header((header::LOCATION, location(base, ty, &version.id, version.version_id)));
    match prefer.return_ {
        Return::Minimal => builder.finish(),
        Return::Representation => json_body(builder, version.body.unwrap_or_default(), negotiation),
        Return::OperationOutcome => {
            let outcome = write_outcome(status == StatusCode::CREATED, &version, warnings);
            json_body(builder, outcome, negotiation)
        }
    }
}

/// The answer to a delete: 204, or 200 with an OperationOutcome when asked for. `version` is
/// the deletion's (version, lastUpdated), `None` when a conditional delete matched nothing.
pub(crate) fn deleted(
    version: Option<(i64, i64)>,
    message: String,
    negotiation: Negotiation,
    prefer: Prefer,
) -> HttpResponse {
    let mut builder =
        if prefer.return_ == Return::OperationOutcome { HttpResponse::Ok() } else { HttpResponse::NoContent() };
    if let Some((version_id, last_updated_ms)) = version {
        version_headers(&mut builder, version_id, last_updated_ms);
    }
    if prefer.return_ == Return::OperationOutcome {
        return json_body(builder, operation_outcome(&[Issue::information(message)]), negotiation);
    }
    builder.finish()
}

/// The HTTP answer to one carried-out interaction.
pub(crate) fn entry_result(result: EntryResult, base: &str, negotiation: Negotiation, prefer: Prefer) -> HttpResponse {
    match result {
        EntryResult::Written { version, created, warnings } => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            written(status, version, &warnings, base, negotiation, prefer)
        }
        EntryResult::Existing(version) => written(StatusCode::OK, version, &[], base, negotiation, prefer),
        EntryResult::Deleted { version, message } => deleted(version, message, negotiation, prefer),
        EntryResult::Read(version) => read(version, negotiation),
        EntryResult::NotModified(version) => not_modified(version.version_id, version.last_updated_ms),
        EntryResult::Searched(bundle) => json_body(HttpResponse::Ok(), bundle, negotiation),
    }
}

/// `[base]/[type]/[id]/_history/[vid]`.
pub(crate) fn location(base: &str, ty: ResourceType, id: &str, version_id: i64) -> String {
    format!("{base}/{ty}/{id}/_history/{version_id}")
}
