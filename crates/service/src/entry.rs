//! The interactions the write engine carries out, as plain data: an `EntryRequest` (a plain
//! request or a Bundle entry), what it produced, and how it failed. The lowest layer of the
//! application: the engine, authorization, extractors and responders all speak these types.

use actix_web::web::Bytes;
use domain::{Issue, ResourceType};
use persistence::{StoreError, StoredVersion};

use crate::error::ApiError;

/// The HTTP verb of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Put => "PUT",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// Transaction processing order: DELETE, POST, PUT and PATCH, then GET.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Verb::Delete => 0,
            Verb::Post => 1,
            Verb::Put | Verb::Patch => 2,
            Verb::Get => 3,
        }
    }
}

/// What an entry's URL addresses.
#[derive(Debug, Clone)]
pub(crate) enum Address {
    /// `[type]` (create).
    Type,
    /// `[type]?params` of a GET: a search.
    Search(Vec<(String, String)>),
    /// `[type]/[id]`.
    Instance(String),
    /// `[type]/[id]/_history/[vid]`.
    Version(String, i64),
    /// `[type]?criteria` for a conditional update, patch or delete.
    Criteria(Vec<(String, String)>),
}

/// How a PATCH body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchFormat {
    /// RFC 6902, `application/json-patch+json`.
    Json,
    /// FHIRPath Patch, a `Parameters` resource.
    FhirPath,
}

/// One interaction to carry out.
#[derive(Debug, Clone)]
pub(crate) struct EntryRequest {
    pub(crate) verb: Verb,
    pub(crate) ty: ResourceType,
    pub(crate) address: Address,
    pub(crate) full_url: Option<String>,
    /// The resource (POST, PUT) or the patch document (PATCH).
    pub(crate) body: Option<Bytes>,
    pub(crate) patch: Option<PatchFormat>,
    /// `If-None-Exist` criteria of a conditional create.
    pub(crate) if_none_exist: Option<Vec<(String, String)>>,
    pub(crate) if_match: Option<i64>,
    /// A GET entry's `ifNoneMatch` version and `ifModifiedSince` instant (ms): 304 when met.
    pub(crate) if_none_match: Option<i64>,
    pub(crate) if_modified_since: Option<i64>,
    /// `_cascade=delete` on a delete: open Tasks depending on the plan or team go too.
    pub(crate) cascade_delete: bool,
}

impl EntryRequest {
    /// `POST Task`, `PUT Task/1`: how the entry is named in messages.
    pub(crate) fn label(&self) -> String {
        let target = match &self.address {
            Address::Type | Address::Search(_) => self.ty.to_string(),
            Address::Instance(id) => format!("{}/{id}", self.ty),
            Address::Version(id, vid) => format!("{}/{id}/_history/{vid}", self.ty),
            Address::Criteria(pairs) => format!("{}?{}", self.ty, encode(pairs)),
        };
        format!("{} {target}", self.verb.as_str())
    }
}

/// What carrying out an entry produced.
#[derive(Debug, Clone)]
pub(crate) enum EntryResult {
    /// A version was written: 201 when `created`, else 200; `warnings` from rules in warn mode.
    Written { version: StoredVersion, created: bool, warnings: Vec<Issue> },
    /// A conditional create found the resource already there: 200, nothing written.
    Existing(StoredVersion),
    /// A delete: 204 (`version` is the deletion, `None` when nothing matched).
    Deleted { version: Option<(i64, i64)>, message: String },
    /// A read answered after the commit: 200.
    Read(StoredVersion),
    /// A conditional read whose condition held: 304.
    NotModified(StoredVersion),
    /// A search answered after the commit: 200 with a searchset Bundle's text.
    Searched(String),
}

/// An entry that failed, with its position in the Bundle.
#[derive(Debug)]
pub(crate) struct EntryFailure {
    pub(crate) index: usize,
    pub(crate) label: String,
    pub(crate) error: ApiError,
}

impl EntryFailure {
    /// The failure as the whole request's error, naming the entry.
    pub(crate) fn into_api_error(self) -> ApiError {
        ApiError::InEntry { index: self.index, label: self.label, inner: Box::new(self.error) }
    }
}

impl From<StoreError> for EntryFailure {
    fn from(err: StoreError) -> Self {
        EntryFailure { index: 0, label: "the transaction".into(), error: err.into() }
    }
}

/// Criteria as a query string, for messages.
pub(crate) fn encode(pairs: &[(String, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    query.finish()
}
