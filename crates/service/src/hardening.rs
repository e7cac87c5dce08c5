//! Hardening around every request: security headers on every response (errors included),
//! a limit on the total size of the request headers, CORS (closed unless origins are
//! configured) and a per-client rate limit (off unless configured). Body size limits and
//! timeouts are `extract.rs` and `timeout.rs`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::Access;
use crate::config::{Hardening, RateLimit};
use crate::error::ApiError;
use domain::IssueCode;

use crate::headers::secure;

/// Middleware (outermost): the security headers on every response. (An error that reaches
/// the server unrendered, a timeout, gets them from `ApiError`'s own rendering.)
pub(crate) async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut response = next.call(req).await?.map_into_boxed_body();
    // Cacheable: the route table's probes and CapabilityStatement.
    let public = crate::route::matched(response.request()).cacheable();
    secure(response.headers_mut(), public);
    Ok(response)
}

/// The configured header limit, as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderLimit(pub(crate) usize);

/// Middleware: refuse requests whose headers together exceed the limit (431; actix-web
/// already refuses more than 96 headers or 128 KiB of them, this is the configured bound), and
/// those whose path or query string decodes to control characters (400): no FHIR id, string or
/// search value may hold them, and a NUL would reach the database as text.
pub(crate) async fn header_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = req.app_data::<web::Data<HeaderLimit>>().map_or(16 * 1024, |l| l.0);
    let size: usize = req.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    if size > limit {
        let response = ApiError::HeadersTooLarge(limit).error_response();
        return Ok(req.into_response(response));
    }
    if let Some(error) = control_characters(req.path(), req.query_string()) {
        return Ok(req.into_response(error.error_response()));
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

/// A 400 naming where the URL holds a control character, if it does.
fn control_characters(path: &str, query: &str) -> Option<ApiError> {
    let refuse = |at: &str, c: char| {
        Some(ApiError::invalid(
            IssueCode::Value,
            at,
            format!("{at}: control characters ({}) are not allowed in the URL", domain::text::describe(c)),
        ))
    };
    let decoded_path = form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if let Some(c) = domain::text::forbidden_char(&decoded_path) {
        return refuse("path", c);
    }
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if let Some(c) = domain::text::forbidden_char(&key) {
            return refuse("search parameter", c);
        }
        if let Some(c) = domain::text::forbidden_char(&value) {
            return refuse(&key, c);
        }
    }
    None
}

/// CORS as configured: `None` (no CORS headers at all, so browsers keep other origins out)
/// unless origins are listed.
pub(crate) fn cors(settings: &Hardening) -> Option<Cors> {
    if settings.cors_origins.is_empty() {
        return None;
    }
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            HeaderName::from_static("if-none-exist"),
            HeaderName::from_static("prefer"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::ETAG, header::LOCATION, header::LAST_MODIFIED, header::CONTENT_LOCATION])
        .max_age(3600);
    for origin in &settings.cors_origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    Some(cors)
}

/// The per-client limiter shared by every worker.
pub(crate) struct Limiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Arc<Self> {
        let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
        let limiter = Arc::new(Self { limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)) });
        // Forget idle clients now and then, so the key table does not grow without bound.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limiter) => limiter.limiter.retain_recent(),
                    None => break,
                }
            }
        });
        limiter
    }
}

/// Middleware (inside authentication): count the request against its client, keyed by the
/// token's client or subject, else by the peer address (not `X-Forwarded-For`, which any
/// client can write). 429 with `Retry-After` past the limit.
pub(crate) async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(limiter) = req.app_data::<web::Data<Limiter>>().cloned() else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let key = {
        let extensions = req.extensions();
        match extensions.get::<Access>().and_then(Access::principal).and_then(|p| p.key()) {
            Some(key) => format!("token:{key}"),
            None => format!("ip:{}", req.peer_addr().map(|a| a.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))),
        }
    };
    if let Err(not_until) = limiter.limiter.check_key(&key) {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let response = ApiError::TooManyRequests(wait.as_secs().max(1)).error_response();
        return Ok(req.into_response(response));
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}
