//! Logs: JSON lines on stderr, one per request, carrying the interaction's route pattern,
//! status and duration. Never a body, a query string or a concrete path: those can hold PHI.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing_subscriber::EnvFilter;

/// Install the global subscriber (once; later calls are ignored). The filter comes from
/// `CAREPLAN_LOG` (default `info`), the format from `CAREPLAN_LOG_FORMAT` (`json` or `text`).
pub fn init() {
    let filter = EnvFilter::try_from_env("CAREPLAN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = if std::env::var("CAREPLAN_LOG_FORMAT").is_ok_and(|f| f == "text") {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    // Already installed (tests start many servers in one process): keep the first.
    drop(result);
}

/// Middleware: log one line per request without PHI.
pub(crate) async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let response = next.call(req).await?;
    let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    tracing::info!(
        target: "careplan::http",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    Ok(response)
}
