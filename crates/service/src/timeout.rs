//! The per-request time limit: a request still running after `Settings::request_timeout` is
//! answered with 503 and its work dropped (an open transaction rolls back).

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::error::ApiError;

/// The configured limit, as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit(pub(crate) Duration);

/// Middleware: bound the time one request may take.
pub(crate) async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = req.app_data::<web::Data<Limit>>().map_or(Duration::from_secs(30), |l| l.0);
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(result) => result.map(ServiceResponse::map_into_boxed_body),
        // Returned as an error: actix renders it through ApiError's ResponseError impl.
        Err(_) => Err(ApiError::Unavailable(format!("the request took longer than {} s", limit.as_secs())).into()),
    }
}
