//! `ApiError`: every way a request can fail, and the single table that maps each to an HTTP
//! status and an `OperationOutcome` (http://hl7.org/fhir/R4/operationoutcome.html).
//! Internal errors log their cause chain once and tell the client only `exception`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use domain::{Issue, IssueCode};
use persistence::StoreError;

use crate::responder;

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
    #[error("payload too large: limit {0} bytes")]
    PayloadTooLarge(usize),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 naming one element (FHIRPath) or request parameter.
    pub fn invalid(code: IssueCode, expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        ApiError::Invalid(vec![Issue::error(code, expression, diagnostics)])
    }

    fn issues(&self) -> Vec<Issue> {
        let general = |code, text: String| vec![Issue::general(code, text)];
        match self {
            ApiError::Invalid(issues) => issues.clone(),
            ApiError::NotFound(what) => general(IssueCode::NotFound, format!("{what} is not known")),
            ApiError::Gone(what) => general(IssueCode::Deleted, format!("{what} has been deleted")),
            ApiError::MethodNotAllowed(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::NotAcceptable(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::PreconditionFailed(what) => general(IssueCode::Conflict, what.clone()),
            ApiError::PayloadTooLarge(limit) => {
                general(IssueCode::TooLong, format!("the request body exceeds the limit of {limit} bytes"))
            }
            ApiError::UnsupportedMediaType(what) => general(IssueCode::NotSupported, what.clone()),
            ApiError::Unavailable(what) => general(IssueCode::Timeout, what.clone()),
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
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(responder::FHIR_JSON)));
        if matches!(self, ApiError::PayloadTooLarge(_)) {
            response.insert_header((header::CONNECTION, HeaderValue::from_static("close")));
        }
        response.body(responder::operation_outcome(&self.issues()))
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
            StoreError::Database(sea_orm::DbErr::ConnectionAcquire(_)) => {
                ApiError::Unavailable("the database is busy or unreachable; retry later".into())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}
