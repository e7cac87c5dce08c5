//! Liveness and readiness for orchestrators: `/livez` answers while the process serves;
//! `/readyz` only when the database answers and every migration is applied. Readiness follows
//! the database: false while it is unreachable, true again once the pool reconnects.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

/// `GET /livez`.
pub(crate) async fn livez() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The longest a readiness check waits for the database: an unreachable database makes the
/// check fail in this time, not after the pool's acquire timeout (the manifests' probes wait 3 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`.
pub(crate) async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let check = async {
        state.store.ping().await?;
        state.store.pending_migrations().await
    };
    let (database, pending) = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(pending)) => (true, Some(pending)),
        Ok(Err(_)) | Err(_) => (false, None),
    };
    let ready = database && pending == Some(0);
    let body = json!({ "status": if ready { "ok" } else { "unavailable" }, "database": database, "pendingMigrations": pending });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
