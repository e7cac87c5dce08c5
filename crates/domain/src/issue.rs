//! `Issue`: one finding about a request, the domain's half of an OperationOutcome.
//!
//! Validation collects issues rather than failing on the first, so a client learns everything
//! wrong with a resource in one round trip.

use serde::Serialize;

/// FHIR `IssueSeverity` (http://hl7.org/fhir/R4/valueset-issue-severity.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// The FHIR `IssueType` codes this service emits (http://hl7.org/fhir/R4/valueset-issue-type.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    CodeInvalid,
    NotSupported,
    NotFound,
    Deleted,
    Conflict,
    TooLong,
    TooCostly,
    Processing,
    BusinessRule,
    Exception,
    Informational,
    Security,
    Login,
    Forbidden,
    Throttled,
    Timeout,
    Duplicate,
    MultipleMatches,
}

/// One entry of an OperationOutcome: what is wrong (`diagnostics`) and where (`expression`, FHIRPath).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    /// An error-severity issue at a FHIRPath location.
    pub fn error(code: IssueCode, expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, expression: Some(expression.into()), diagnostics: diagnostics.into() }
    }

    /// An error-severity issue that concerns the request as a whole, not one element.
    pub fn general(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Self { severity: Severity::Error, code, expression: None, diagnostics: diagnostics.into() }
    }

    /// An informational issue, used for `Prefer: return=OperationOutcome`.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Information,
            code: IssueCode::Informational,
            expression: None,
            diagnostics: diagnostics.into(),
        }
    }
}
