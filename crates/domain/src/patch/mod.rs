//! PATCH (http://hl7.org/fhir/R4/http.html#patch): the two patch formats as pure functions from
//! the stored resource text and a patch document to the new resource text.
//!
//! - JSON Patch (RFC 6902, `application/json-patch+json`): [`json_patch`].
//! - FHIRPath Patch (a `Parameters` body, http://hl7.org/fhir/R4/fhirpatch.html): [`fhirpath_patch`].
//!
//! Both edit a preserving `serde_json::Value` (`json_text::to_value_preserving`), so numbers keep
//! the client's text (`1.50` stays `1.50`) and object members keep their order, in the untouched
//! parts and in the values the patch brings. The result is only a candidate: the caller checks it
//! with `ingest` like any update, so a patch that makes an invalid resource is refused as one.
//!
//! Failures are `Issue`s with two codes: `invalid` when the patch document itself is wrong (not
//! JSON, wrong shape, unknown operation, unsupported path syntax, a change to `id`,
//! `resourceType`, `meta.versionId` or `meta.lastUpdated`): 400 Bad Request; `processing` when a
//! well-formed patch cannot be applied to this resource (a path that matches nothing or too much,
//! an index out of range, a failed `test`): 422 Unprocessable Entity, as the spec and HAPI answer.

mod elements;
mod fhirpath;
mod json;
mod path;

pub use fhirpath::fhirpath_patch;
pub use json::json_patch;

use crate::issue::{Issue, IssueCode};
use crate::json_text;

/// Why a change to a protected element is refused (see `is_protected`).
const PROTECTED: &str = "id, resourceType, meta.versionId and meta.lastUpdated cannot be changed by a patch";

/// Whether a change at the location named by these member names (from the root; list indexes
/// may follow) is refused: the whole resource, its identity, or the version data the server owns.
fn is_protected<'a>(mut keys: impl Iterator<Item = &'a str>) -> bool {
    match keys.next() {
        None | Some("id" | "resourceType") => true,
        Some("meta") => matches!(keys.next(), Some("versionId" | "lastUpdated")),
        Some(_) => false,
    }
}

/// The stored text did not parse: a server fault, never the client's.
fn stored_text_error(err: &serde_json::Error) -> Vec<Issue> {
    vec![Issue::general(IssueCode::Exception, format!("the stored resource cannot be read: {err}"))]
}

/// Parse the stored resource text, which is always a JSON object.
fn parse_current(current: &str) -> Result<serde_json::Value, Vec<Issue>> {
    json_text::to_value_preserving(current).map_err(|err| stored_text_error(&err))
}
