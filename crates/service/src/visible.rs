//! What a token may see of one stored resource: the current version behind a read or an
//! operation on an instance, 404 (not 403) for what the token may not see, so that other
//! patients' ids are not confirmed. The type-level scope was checked before the handler ran
//! (`Access::require_route`).

use actix_web::HttpRequest;
use domain::ResourceType;

use crate::audit;
use crate::auth::Access;
use crate::error::{named, ApiError};
use crate::state::AppState;

/// The current version of `ty/id` if the caller may read it: 404 (not 403) for what its token
/// may not see, so that other patients' ids are not confirmed.
pub(crate) async fn visible_current(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    ty: ResourceType,
    id: &str,
) -> Result<persistence::StoredVersion, ApiError> {
    let version = state.store.read(ty, id).await.map_err(|err| hide(access, named(err, ty, id), ty, id))?;
    shown(req, access, &version)?;
    Ok(version)
}

/// A version the token may not see answers 404, as if it did not exist; one it may see is
/// noted for the audit record with its patient.
pub(crate) fn shown(req: &HttpRequest, access: &Access, version: &persistence::StoredVersion) -> Result<(), ApiError> {
    if !access.sees(version) {
        return Err(access.hidden(version.resource_type, &version.id));
    }
    let patient = version.body.as_deref().and_then(|b| domain::smart::patient_of(version.resource_type, b));
    audit::note_patient(req, patient);
    Ok(())
}

/// A deletion is not revealed (410) to a token restricted to part of the type: 404.
pub(crate) fn hide(access: &Access, err: ApiError, ty: ResourceType, id: &str) -> ApiError {
    match err {
        ApiError::Gone(_) if !access.reveals_deletions(ty) => access.hidden(ty, id),
        other => other,
    }
}
