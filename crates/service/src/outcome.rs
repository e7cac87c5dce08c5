//! OperationOutcomes (http://hl7.org/fhir/R4/operationoutcome.html): the one rendering of
//! issues, for errors (`ApiError`), plain writes and Bundle entries alike. The lowest layer of
//! the service's transport: it knows the domain's `Issue` and nothing of requests.

use domain::Issue;
use persistence::StoredVersion;
use serde::Serialize;

/// The content type of every body this server sends.
pub(crate) const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// An OperationOutcome holding `issues`, as minified JSON text.
pub(crate) fn operation_outcome(issues: &[Issue]) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Outcome<'a> {
        resource_type: &'static str,
        issue: Vec<OutcomeIssue<'a>>,
    }
    #[derive(Serialize)]
    struct OutcomeIssue<'a> {
        severity: domain::Severity,
        code: domain::IssueCode,
        diagnostics: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        expression: Option<[&'a str; 1]>,
    }
    let outcome = Outcome {
        resource_type: "OperationOutcome",
        issue: issues
            .iter()
            .map(|i| OutcomeIssue {
                severity: i.severity,
                code: i.code,
                diagnostics: &i.diagnostics,
                expression: i.expression.as_deref().map(|e| [e]),
            })
            .collect(),
    };
    serde_json::to_string(&outcome).unwrap_or_default()
}

/// The OperationOutcome of a write, for plain requests and Bundle entries alike: what was
/// written, then the warnings of the rules in warn mode (`CAREPLAN_REFERENCE_RULES=warn`).
pub(crate) fn write_outcome(created: bool, version: &StoredVersion, warnings: &[Issue]) -> String {
    let verb = if created { "Created" } else { "Updated" };
    let message = format!("{verb} {}/{} at version {}", version.resource_type, version.id, version.version_id);
    let issues: Vec<Issue> = std::iter::once(Issue::information(message)).chain(warnings.iter().cloned()).collect();
    operation_outcome(&issues)
}
