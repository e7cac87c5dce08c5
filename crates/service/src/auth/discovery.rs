//! Discovery: `GET /.well-known/smart-configuration` (and under the FHIR base), and the
//! `security` element of the CapabilityStatement, both from configuration
//! (http://hl7.org/fhir/smart-app-launch/conformance.html). This server is a resource server:
//! the endpoints named are the authorization server's.

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::state::AppState;

/// What this resource server understands, as SMART capability codes.
const CAPABILITIES: [&str; 7] = [
    "permission-v1",
    "permission-v2",
    "permission-patient",
    "permission-user",
    "context-ehr-patient",
    "context-standalone-patient",
    "client-confidential-asymmetric",
];

/// The SMART configuration document, or `None` when authorization is disabled.
pub(crate) fn smart_configuration(auth: &AuthSettings) -> Option<Value> {
    if auth.disabled {
        return None;
    }
    let mut document = json!({
        "capabilities": CAPABILITIES,
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": auth.algorithms,
        "scopes_supported": [
            "openid", "fhirUser", "launch", "launch/patient", "offline_access",
            "patient/*.cruds", "user/*.cruds", "system/*.cruds",
            "patient/*.read", "user/*.read", "system/*.read",
            "user/AuditEvent.rs", "system/AuditEvent.rs",
        ],
        "response_types_supported": ["code"],
    });
    for (key, value) in [
        ("issuer", &auth.issuer),
        ("jwks_uri", &auth.jwks_url),
        ("authorization_endpoint", &auth.authorize_url),
        ("token_endpoint", &auth.token_url),
    ] {
        if let Some(value) = value {
            document[key] = json!(value);
        }
    }
    Some(document)
}

/// `rest[0].security` of the CapabilityStatement.
pub(crate) fn capability_security(auth: &AuthSettings, cors: bool) -> Option<Value> {
    if auth.disabled {
        return None;
    }
    let mut uris = Vec::new();
    if let Some(url) = &auth.authorize_url {
        uris.push(json!({ "url": "authorize", "valueUri": url }));
    }
    if let Some(url) = &auth.token_url {
        uris.push(json!({ "url": "token", "valueUri": url }));
    }
    let mut security = json!({
        "cors": cors,
        "service": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }], "text": "OAuth2 using SMART-on-FHIR profile (see /.well-known/smart-configuration)" }],
        "description": "Bearer tokens (JWT, RS256/RS384/ES256/ES384) from the configured issuer; SMART v1 and v2 scopes; \
                        patient/ scopes restrict access to the patient's compartment; the audit trail needs an \
                        AuditEvent scope.",
    });
    if !uris.is_empty() {
        security["extension"] = json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": uris,
        }]);
    }
    Some(security)
}

/// `GET /.well-known/smart-configuration`.
pub(crate) async fn well_known(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match smart_configuration(&state.settings.auth) {
        Some(document) => Ok(HttpResponse::Ok().content_type("application/json").body(document.to_string())),
        None => Err(ApiError::NotFound("the SMART configuration (authorization is disabled)".into())),
    }
}
