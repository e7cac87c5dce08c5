//! `ApiError`: every way a request can fail, and the single table that maps each to an HTTP
//! status and an `OperationOutcome` (http://hl7.org/fhir/R4/operationoutcome.html).
//! Internal errors log their cause chain once and tell the client only `exception`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{Issue, IssueCode};
use persistence::StoreError;

use crate::outcome;

/// A request that cannot be answered with success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request or its body is wrong; every issue found is reported.
    #[error("invalid request")]
    Invalid(Vec<Issue>),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("gone: {0}")]
    Gone(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The request is well-formed but cannot be carried out on this resource (a patch whose
    /// operation does not apply; a business rule).
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    /// The acting practitioner may not make this change (a Task workflow role rule).
    #[error("not permitted")]
    NotPermitted(Vec<Issue>),
    /// The change conflicts with the state of other resources (dependants block a delete).
    #[error("conflict")]
    Conflict(Vec<Issue>),
    /// A Bundle entry failed: the entry's own error, named by its position.
    #[error("entry {index} ({label}) failed: {inner}")]
    InEntry { index: usize, label: String, inner: Box<ApiError> },
    #[error("payload too large: limit {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// No bearer token, or one that is not valid (RFC 6750 §3): 401 with `WWW-Authenticate`.
    /// `invalid` is false when no token was sent at all (then no error code is named).
    #[error("unauthorized: {why}")]
    Unauthorized { why: String, invalid: bool },
    /// A valid token whose scopes do not allow the interaction: 403 (`insufficient_scope`).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request headers together exceed the configured limit: 431.
    #[error("request headers too large: limit {0} bytes")]
    HeadersTooLarge(usize),
    /// The client exceeded its rate limit: 429 with `Retry-After` (seconds).
    #[error("too many requests")]
    TooManyRequests(u64),
    /// The client already runs as many bulk export jobs as it may (the limit): 429.
    #[error("too many export jobs: limit {0}")]
    TooManyJobs(u32),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 naming one element (FHIRPath) or request parameter.
    pub fn invalid(code: IssueCode, expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        ApiError::Invalid(vec![Issue::error(code, expression, diagnostics)])
    }

    /// The cause of an internal error, however deeply it is wrapped.
    fn internal_cause(&self) -> Option<&anyhow::Error> {
        match self {
            ApiError::Internal(cause) => Some(cause),
            ApiError::InEntry { inner, .. } => inner.internal_cause(),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 §3), with the reason as
    /// `error_description` (quotes and backslashes dropped: it is a quoted-string).
    fn challenge(&self) -> Option<String> {
        let (error, why) = match self {
            ApiError::Unauthorized { invalid: false, .. } => return Some("Bearer realm=\"careplan\"".into()),
            ApiError::Unauthorized { why, invalid: true } => ("invalid_token", why),
            ApiError::Forbidden(why) => ("insufficient_scope", why),
            ApiError::InEntry { inner, .. } => return inner.challenge(),
            _ => return None,
        };
        let description: String = why.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect();
        Some(format!("Bearer realm=\"careplan\", error=\"{error}\", error_description=\"{description}\""))
    }

    /// The issues of the OperationOutcome this error answers with.
    pub(crate) fn issues(&self) -> Vec<Issue> {
        let general = |code, text: String| vec![Issue::general(code, text)];
        match self {
            ApiError::Invalid(issues) => issues.clone(),
            ApiError::NotFound(what) => general(IssueCode::NotFound, format!("{what} is not known")),
            ApiError::Gone(what) => general(IssueCode::Deleted, format!("{what} has been deleted")),
            ApiError::MethodNotAllowed(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::NotAcceptable(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::PreconditionFailed(what) => general(IssueCode::Conflict, what.clone()),
            ApiError::Unprocessable(issues) | ApiError::NotPermitted(issues) | ApiError::Conflict(issues) => {
                issues.clone()
            }
            ApiError::InEntry { index, label, inner } => inner
                .issues()
                .into_iter()
                .map(|mut issue| {
                    let named = if label.is_empty() { String::new() } else { format!(" ({label})") };
                    issue.diagnostics = format!("Bundle.entry[{index}]{named}: {}", issue.diagnostics);
                    issue.expression = Some(match issue.expression.take() {
                        Some(path) if path.starts_with("Bundle.entry.") => {
                            path.replacen("Bundle.entry.", &format!("Bundle.entry[{index}]."), 1)
                        }
                        // `Task.status` within entry 3 is `Bundle.entry[3].resource.status`.
                        Some(path) => match path.split_once('.') {
                            Some((head, rest)) if head.bytes().all(|b| b.is_ascii_alphabetic()) => {
                                format!("Bundle.entry[{index}].resource.{rest}")
                            }
                            _ => format!("Bundle.entry[{index}].{path}"),
                        },
                        None => format!("Bundle.entry[{index}]"),
                    });
                    issue
                })
                .collect(),
            ApiError::PayloadTooLarge(limit) => {
                general(IssueCode::TooLong, format!("the request body exceeds the limit of {limit} bytes"))
            }
            ApiError::UnsupportedMediaType(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::Unavailable(what) => general(IssueCode::Timeout, what.clone()),
            ApiError::Unauthorized { why, .. } => general(IssueCode::Login, why.clone()),
            ApiError::Forbidden(why) => general(IssueCode::Forbidden, why.clone()),
            ApiError::HeadersTooLarge(limit) => {
                general(IssueCode::TooLong, format!("the request headers exceed the limit of {limit} bytes"))
            }
            ApiError::TooManyRequests(after) => {
                general(IssueCode::Throttled, format!("too many requests from this client; retry in {after} s"))
            }
            ApiError::TooManyJobs(limit) => general(
                IssueCode::Throttled,
                format!(
                    "this client already has {limit} export job(s) running, the most it may; wait for one to finish \
                     or cancel one (DELETE its status URL)"
                ),
            ),
            ApiError::Internal(_) => general(IssueCode::Exception, "an internal error occurred".into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotPermitted(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InEntry { inner, .. } => inner.status_code(),
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::TooManyRequests(_) | ApiError::TooManyJobs(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = self.internal_cause() {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(outcome::FHIR_JSON)));
        if matches!(self, ApiError::PayloadTooLarge(_) | ApiError::HeadersTooLarge(_)) {
            response.insert_header((header::CONNECTION, HeaderValue::from_static("close")));
        }
        if let Some(challenge) = self.challenge() {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let ApiError::TooManyRequests(after) = self {
            response.insert_header((header::RETRY_AFTER, after.to_string()));
        }
        if let ApiError::TooManyJobs(_) = self {
            response.insert_header((header::RETRY_AFTER, "60"));
        }
        let mut response = response.body(outcome::operation_outcome(&self.issues()));
        crate::headers::secure(response.headers_mut(), false);
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("the resource".into()),
            StoreError::Deleted { .. } => ApiError::Gone("the resource".into()),
            StoreError::VersionConflict { expected, current: Some(current) } => ApiError::PreconditionFailed(format!(
                "If-Match asked for version {expected} but the current version is {current}"
            )),
            StoreError::VersionConflict { expected, current: None } => ApiError::PreconditionFailed(format!(
                "If-Match asked for version {expected} but the resource does not exist"
            )),
            StoreError::BadCursor => ApiError::invalid(
                IssueCode::Value,
                "_cursor",
                "the paging cursor is malformed or belongs to another search",
            ),
            // No connection in time, or the one in use broke (a database restart): retryable.
            StoreError::Unavailable(_) => {
                ApiError::Unavailable("the database is busy or unreachable; retry later".into())
            }
            // Stopped by the statement timeout: its connection is free again.
            StoreError::TimedOut(_) => {
                ApiError::Unavailable("the request took longer than the statement timeout allows".into())
            }
            StoreError::TooComplex(_) => ApiError::Invalid(vec![Issue::general(
                IssueCode::TooCostly,
                "the search is too complex for the database; use fewer parameters, values or chain links",
            )]),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Name the resource in not-found and gone answers.
pub(crate) fn named(err: StoreError, ty: domain::ResourceType, id: &str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::NotFound(format!("{ty}/{id}")),
        StoreError::Deleted { .. } => ApiError::Gone(format!("{ty}/{id}")),
        other => other.into(),
    }
}
