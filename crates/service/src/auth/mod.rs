//! SMART on FHIR authorization for the resource server: bearer tokens checked on every request
//! to a protected route (`token.rs`, with keys from a JWKS or PEM files, `keys.rs`), the
//! principal's `Access` handed to handlers (`access.rs`), and the discovery document
//! (`discovery.rs`). This server issues no tokens: the authorization server does.
//!
//! Public routes are those the route table (`routes.rs`) marks public: `/livez`, `/readyz`,
//! `/metrics` (no PHI by construction: see `metrics.rs`), `/fhir/metadata`, the SMART
//! configuration, `/openapi.json` and `/docs`. Everything else, an unmatched path included,
//! needs a valid token unless authorization is disabled.

mod access;
pub(crate) mod discovery;
mod keys;
mod token;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

pub(crate) use access::Access;
use token::Validator;

use crate::config::AuthSettings;
use crate::error::ApiError;

/// How requests are authenticated: not at all (disabled), or by validating bearer tokens.
pub(crate) struct Authenticator {
    validator: Option<Validator>,
}

impl Authenticator {
    /// Build from settings: fails start-up when authorization is on but cannot work.
    pub(crate) async fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        if settings.disabled {
            tracing::warn!(
                "AUTHORIZATION IS DISABLED (CAREPLAN_AUTH_DISABLED=true): every request may read and write \
                 every resource. Never run like this with real patient data."
            );
            return Ok(Self { validator: None });
        }
        Ok(Self { validator: Some(Validator::new(settings).await?) })
    }
}

/// Middleware: authenticate the request and leave its `Access` in the request extensions; a
/// protected route without a valid token is answered 401 here, before any handler runs.
pub(crate) async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let authenticator = req.app_data::<web::Data<Authenticator>>().cloned();
    let validator = match authenticator.as_ref().map(|data| data.get_ref()) {
        Some(Authenticator { validator: Some(validator) }) => validator,
        Some(Authenticator { validator: None }) => {
            note(&req, &Access::unrestricted());
            req.extensions_mut().insert(Access::unrestricted());
            return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
        }
        // Not configured at all: fail closed.
        None => return Ok(refuse(req, "authorization is not configured", true)),
    };
    // Public routes (probes, discovery, the API description) are the route table's.
    if crate::route::matched(req.request()).public() {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(refuse(req, "a bearer token is required", false));
    };
    let text = value.to_str().unwrap_or_default();
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ => return Ok(refuse(req, "the Authorization header must be 'Bearer <token>'", true)),
    };
    match validator.validate(token).await {
        Ok(principal) => {
            let access = Access::of(principal);
            note(&req, &access);
            // The type-level scope check, from the route table (`Route::letters`).
            if let Some(route) = crate::route::matched(req.request()).route {
                if let Err(refused) = access.require_route(route) {
                    return Ok(req.into_response(refused.error_response()));
                }
            }
            req.extensions_mut().insert(access);
            next.call(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        Err(why) => Ok(refuse(req, &why, true)),
    }
}

/// Where an outer middleware (the audit) learns who asked: it puts a slot in the request
/// extensions, and authentication fills it. Shared, so it is read even when the request then
/// fails without a response (a timeout) and the extensions do not come back.
#[derive(Clone, Default)]
pub(crate) struct Asker(pub(crate) std::rc::Rc<std::cell::RefCell<Option<Access>>>);

fn note(req: &ServiceRequest, access: &Access) {
    if let Some(asker) = req.extensions().get::<Asker>() {
        *asker.0.borrow_mut() = Some(access.clone());
    }
}

fn refuse(req: ServiceRequest, why: &str, invalid: bool) -> ServiceResponse<BoxBody> {
    let error = ApiError::Unauthorized { why: why.to_owned(), invalid };
    req.into_response(error.error_response())
}
