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
//!
//! A patch is bounded (issue 13: one request may not exhaust the service): a document holds at
//! most `PatchLimits::max_operations` operations and nests at most `json_text::MAX_DEPTH` levels,
//! and the patched resource may not grow past `PatchLimits::max_bytes` nor nest deeper than
//! `json_text::MAX_DEPTH`. Each is a `too-costly` issue, which the service answers with 422 like
//! a patch that does not apply. Growth is measured *before* each operation applies (`Budget`), so
//! a patch that doubles the resource with `copy` stops at the limit without ever building the
//! oversized document.

mod elements;
mod fhirpath;
mod json;
mod path;

pub use fhirpath::fhirpath_patch;
pub use json::json_patch;

/// Whether PATCH knows the element at `path` repeats (generated per hosted type; a test checks
/// that every hosted type is covered).
#[cfg(test)]
pub(crate) fn is_repeating_element(path: &str) -> bool {
    elements::is_repeating(path)
}

use serde_json::Value;

use crate::issue::{Issue, IssueCode};
use crate::json_text;

/// How far one patch may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchLimits {
    /// The largest patched resource, in bytes of minified JSON: the request body limit
    /// (`CAREPLAN_MAX_BODY_BYTES`), since no client could have sent a larger resource.
    pub max_bytes: usize,
    /// The most operations one patch document may hold.
    pub max_operations: usize,
}

impl PatchLimits {
    /// The default of `CAREPLAN_MAX_PATCH_OPERATIONS`.
    pub const DEFAULT_MAX_OPERATIONS: usize = 1000;
}

/// The size of the document under patch, kept up to date operation by operation: each operation
/// asks `admit` before it applies, with what it would add and remove.
struct Budget {
    limits: PatchLimits,
    /// The length of the document's minified text (an estimate: escapes a client chose and
    /// serde_json's differ by a few bytes).
    size: usize,
}

impl Budget {
    fn new(limits: PatchLimits, current: &str) -> Self {
        Self { limits, size: current.len() }
    }

    /// How many bytes a value may add without overrunning the limit, plus one: the cap for
    /// measuring it (`json_text::preserving_len`), so a huge value is never measured in full.
    fn cap(&self, removed: usize) -> usize {
        self.limits.max_bytes.saturating_add(removed).saturating_sub(self.size).saturating_add(1)
    }

    /// Admit `value`, placed under a parent `parent_level` levels deep (the root object is level
    /// 1, so the parent level is the number of steps of the path) with `overhead` bytes of member
    /// name and separators, replacing `removed` bytes.
    fn admit(&mut self, value: &Value, parent_level: usize, overhead: usize, removed: usize) -> Result<(), Failure> {
        self.check_depth(value, parent_level)?;
        let added = json_text::preserving_len(value, self.cap(removed)) + overhead;
        self.grow(added, removed)
    }

    /// Refuse `value` under a parent `parent_level` deep if the document would then nest deeper
    /// than `json_text::MAX_DEPTH`.
    fn check_depth(&self, value: &Value, parent_level: usize) -> Result<(), Failure> {
        let depth = parent_level.saturating_add(json_text::value_depth(value, json_text::MAX_DEPTH + 1));
        if depth > json_text::MAX_DEPTH {
            return Err(too_costly(format!(
                "the patched resource would nest {depth} levels deep; this server takes at most {}",
                json_text::MAX_DEPTH
            )));
        }
        Ok(())
    }

    /// Refuse a change of `added` and `removed` bytes that would take the document past the limit.
    fn grow(&mut self, added: usize, removed: usize) -> Result<(), Failure> {
        let size = self.size.saturating_add(added).saturating_sub(removed);
        if size > self.limits.max_bytes {
            return Err(too_costly(format!(
                "the patched resource would exceed {} bytes, the request body limit (CAREPLAN_MAX_BODY_BYTES)",
                self.limits.max_bytes
            )));
        }
        self.size = size;
        Ok(())
    }

    /// Account for `removed` bytes leaving the document.
    fn release(&mut self, removed: usize) {
        self.size = self.size.saturating_sub(removed);
    }

    /// Refuse a document of more than `max_operations` operations.
    fn check_count(&self, count: usize) -> Result<(), Vec<Issue>> {
        let max = self.limits.max_operations;
        if count > max {
            return Err(vec![Issue::general(
                IssueCode::TooCostly,
                format!(
                    "the patch holds {count} operations; this server takes at most {max} (CAREPLAN_MAX_PATCH_OPERATIONS)"
                ),
            )]);
        }
        Ok(())
    }
}

/// The bytes a member named `key` adds to an object beside its value: the name, colon, comma.
/// (Removing a member may leave its comma behind when it was the only one: `release` is given
/// one byte less, so the estimate never falls below the real size.)
fn member_overhead(key: &str) -> usize {
    json_text::string_len(key) + 2
}

/// An operation's failure: the issue code (`Processing`, `Invalid`, `TooCostly`) and why.
type Failure = (IssueCode, String);

fn too_costly(message: String) -> Failure {
    (IssueCode::TooCostly, message)
}

/// Refuse a patch document nested deeper than `json_text::MAX_DEPTH` before parsing it.
fn check_document_depth(document: &[u8], what: &str) -> Result<(), Vec<Issue>> {
    json_text::check_depth(document).map_err(|why| vec![Issue::general(IssueCode::TooCostly, format!("{what}: {why}"))])
}

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

/// Limits for the unit tests: small enough to reach in a test.
#[cfg(test)]
const TEST_LIMITS: PatchLimits = PatchLimits { max_bytes: 64 * 1024, max_operations: 100 };
