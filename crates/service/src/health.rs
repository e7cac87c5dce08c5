//! Liveness and readiness for orchestrators: `/livez` answers while the process serves;
//! `/readyz` only when the database answers and every migration is applied.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// `GET /livez`.
pub(crate) async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`.
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await.is_ok();
    let pending = if database { state.store.pending_migrations().await.ok() } else { None };
    let ready = database && pending == Some(0);
    let body = json!({ "status": if ready { "ok" } else { "unavailable" }, "database": database, "pendingMigrations": pending });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
