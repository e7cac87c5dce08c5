//! The security headers every response carries, errors included: set by the outermost
//! middleware (`hardening::headers`) and by `ApiError`'s own rendering, for an error that
//! reaches the server unrendered.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The headers every response carries.
const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("content-security-policy", "default-src 'none'; frame-ancestors 'none'"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Set the security headers, and `Cache-Control: no-store` unless `public` or already set:
/// answers can hold PHI, and no cache may keep them (clients still revalidate with ETags). A
/// Content-Security-Policy a handler set stays (the `/docs` page's admits its own scripts).
pub(crate) fn secure(headers: &mut HeaderMap, public: bool) {
    for (name, value) in SECURITY_HEADERS {
        let name = HeaderName::from_static(name);
        if name == header::CONTENT_SECURITY_POLICY && headers.contains_key(&name) {
            continue;
        }
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !public && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
