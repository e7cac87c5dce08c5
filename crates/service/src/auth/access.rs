//! `Access`: what the request's principal may do, as an extractor, and the checks that the
//! interactions and the write engine make with it. The decisions are the domain's
//! (`domain::smart::Policy`); this file applies them to requests, stored versions and entries.
//!
//! Answers: an interaction the scopes never allow on a type is 403; a resource outside what
//! they allow is 404 to a read (its existence is not revealed) and 403 to a write; searches,
//! includes and histories are narrowed or filtered silently.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use domain::search::query::{self, Clause, SearchRequest, Target};
use domain::smart::{Facts, Letter, Narrowing, Policy};
use domain::ResourceType;
use persistence::{HistoryEntry, StoredVersion, Tx};

use crate::auth::token::Principal;
use crate::entry::{Address, EntryFailure, EntryRequest, EntryResult, Verb};
use crate::error::ApiError;
use crate::route::Route;
use crate::state::AppState;

/// The audit trail's type: served, not hosted (`audit::trail`).
const AUDIT_EVENT: &str = "AuditEvent";

/// The request's access: `None` inside when authorization is disabled (everything allowed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Access(Option<Arc<Principal>>);

impl FromRequest for Access {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The authentication middleware leaves an `Access` on every request it lets through to
        // a protected route; none means the route was not protected, and that fails closed.
        ready(
            req.extensions()
                .get::<Access>()
                .cloned()
                .ok_or_else(|| ApiError::Unauthorized { why: "a bearer token is required".into(), invalid: false }),
        )
    }
}

fn name(letter: Letter) -> &'static str {
    match letter {
        Letter::Create => "create (c)",
        Letter::Read => "read (r)",
        Letter::Update => "update (u)",
        Letter::Delete => "delete (d)",
        Letter::Search => "search (s)",
    }
}

impl Access {
    /// Everything allowed: authorization is disabled.
    pub(crate) fn unrestricted() -> Self {
        Access(None)
    }

    pub(crate) fn of(principal: Arc<Principal>) -> Self {
        Access(Some(principal))
    }

    /// The access a background job has on behalf of its client: what `scope` (and the patient
    /// context) allow, or everything when it was asked without authorization (`None`).
    pub(crate) fn stored(scope: Option<&str>, patient: Option<String>) -> Self {
        Access(scope.map(|scope| Arc::new(Principal::stored(scope, patient))))
    }

    /// What a background job needs to act as this access again: its scopes and patient
    /// (`None` scopes: authorization is disabled).
    pub(crate) fn to_stored(&self) -> (Option<String>, Option<String>) {
        match self.principal() {
            Some(p) => (Some(p.scope.clone()), p.policy.patient().map(str::to_owned)),
            None => (None, None),
        }
    }

    /// Whether some scope allows `letter` on `ty`.
    pub(crate) fn may(&self, ty: ResourceType, letter: Letter) -> bool {
        self.policy().is_none_or(|policy| policy.may(ty, letter))
    }

    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.0.as_deref()
    }

    fn policy(&self) -> Option<&Policy> {
        self.0.as_deref().map(|p| &p.policy)
    }

    /// 403 unless some scope allows `letter` on `ty`.
    pub(crate) fn require(&self, ty: ResourceType, letter: Letter) -> Result<(), ApiError> {
        match self.policy() {
            Some(policy) if !policy.may(ty, letter) => {
                Err(ApiError::Forbidden(format!("the token's scopes do not allow {} on {ty}", name(letter))))
            }
            _ => Ok(()),
        }
    }

    /// 403 unless the scopes allow what `route` does on its type (`Route::letter`): the
    /// type-level check, made by the authentication middleware before any handler runs. The
    /// resource-level checks (compartments, constraints) and, for a write, what each entry
    /// turns out to be (an update that creates needs `c` too) follow in the handlers and the
    /// engine.
    pub(crate) fn require_route(&self, route: &Route) -> Result<(), ApiError> {
        let Some(letter) = route.letter() else { return Ok(()) };
        match route.resource_type.as_deref() {
            Some(AUDIT_EVENT) => self.require_audit(letter),
            Some(name) => ResourceType::parse(name).map_or(Ok(()), |ty| self.require(ty, letter)),
            None => Ok(()),
        }
    }

    /// 403 unless the audit trail is open to `letter`.
    pub(crate) fn require_audit(&self, letter: Letter) -> Result<(), ApiError> {
        match self.policy() {
            Some(policy) if !policy.may_audit(letter) => Err(ApiError::Forbidden(format!(
                "the audit trail needs a user/ or system/ AuditEvent scope allowing {}",
                name(letter)
            ))),
            _ => Ok(()),
        }
    }

    /// Whether single resources of `ty` need checking for `letter` (a compartment or a
    /// constraint applies).
    fn restricted(&self, ty: ResourceType, letter: Letter) -> bool {
        self.policy().is_some_and(|policy| !policy.unrestricted(ty, letter))
    }

    /// Whether `letter` is allowed on a resource of `ty` with this stored text.
    fn allows_text(&self, ty: ResourceType, letter: Letter, text: &str) -> bool {
        match self.policy() {
            None => true,
            Some(policy) if policy.unrestricted(ty, letter) => true,
            Some(policy) => policy.allows(ty, letter, &Facts::of_text(ty, text, policy.needs_index(ty))),
        }
    }

    /// Whether a version read from the store may be shown (read, or search for what a search
    /// brought along). A deletion shows nothing and is decided by the caller.
    pub(crate) fn sees(&self, version: &StoredVersion) -> bool {
        let Some(text) = version.body.as_deref() else { return !self.restricted(version.resource_type, Letter::Read) };
        let ty = version.resource_type;
        self.allows_text(ty, Letter::Read, text) || self.allows_text(ty, Letter::Search, text)
    }

    /// A read of a resource the token may not see answers as if it did not exist.
    pub(crate) fn hidden(&self, ty: ResourceType, id: &str) -> ApiError {
        ApiError::NotFound(format!("{ty}/{id}"))
    }

    /// Whether a deleted resource's existence may be revealed (410) rather than hidden (404).
    pub(crate) fn reveals_deletions(&self, ty: ResourceType) -> bool {
        !self.restricted(ty, Letter::Read)
    }

    /// Add to a search what the scopes require: the patient compartment, constraints; and the
    /// same inside every chain and `_has`, so that a search cannot test what the token may not
    /// see through the resources it can.
    pub(crate) fn narrow(&self, ty: ResourceType, request: &mut SearchRequest) -> Result<(), ApiError> {
        if self.policy().is_none() {
            return Ok(());
        }
        self.narrow_chains(&mut request.clauses)?;
        request.clauses.extend(self.restriction(ty)?);
        Ok(())
    }

    /// Narrow the chained resources of `clauses` (forward chains and `_has`, at every depth).
    pub(crate) fn narrow_chains(&self, clauses: &mut [Clause]) -> Result<(), ApiError> {
        if self.policy().is_none() {
            return Ok(());
        }
        for clause in clauses {
            if let Target::Chain { target_type: ty, inner, .. } | Target::Has { source_type: ty, inner, .. } =
                &mut clause.target
            {
                self.narrow_chains(inner)?;
                inner.extend(self.restriction(*ty)?);
            }
        }
        Ok(())
    }

    /// The clauses a search of `ty` must carry for this token (none when it may search all).
    fn restriction(&self, ty: ResourceType) -> Result<Vec<Clause>, ApiError> {
        let Some(policy) = self.policy() else { return Ok(Vec::new()) };
        match policy.narrowing(ty, Letter::Search) {
            Narrowing::None => Ok(Vec::new()),
            Narrowing::Denied => self.require(ty, Letter::Search).map(|()| Vec::new()),
            Narrowing::Inexpressible => Err(ApiError::Forbidden(format!(
                "the token's scopes allow searching {ty} only under constraints that cannot be combined into one search"
            ))),
            Narrowing::Filter(pairs) => query::parse(ty, &pairs, true)
                .map(|extra| extra.clauses)
                .map_err(|_| ApiError::Forbidden(format!("the token's scope constraints on {ty} cannot be applied"))),
        }
    }

    /// For each history entry, whether it may be shown. A deletion is judged by the version
    /// it deleted.
    pub(crate) async fn visible_history(&self, state: &AppState, entries: &[HistoryEntry]) -> Vec<bool> {
        let mut visible = Vec::with_capacity(entries.len());
        for entry in entries {
            let v = &entry.version;
            let shown = if !self.restricted(v.resource_type, Letter::Read) {
                self.policy().is_none_or(|p| p.may(v.resource_type, Letter::Read))
            } else if v.body.is_some() {
                self.sees(v)
            } else {
                match state.store.vread(v.resource_type, &v.id, v.version_id - 1).await {
                    Ok(previous) => self.sees(&previous),
                    Err(_) => false,
                }
            };
            visible.push(shown);
        }
        visible
    }

    /// Before a transaction or batch entry runs: its interaction must be allowed on its type,
    /// and conditional criteria are narrowed like searches, so that they cannot match (and so
    /// reveal or touch) what the token may not see.
    pub(crate) fn admit(&self, entries: &mut [EntryRequest]) -> Result<(), EntryFailure> {
        if self.0.is_none() {
            return Ok(());
        }
        for (index, entry) in entries.iter_mut().enumerate() {
            let fail = |error| EntryFailure { index, label: entry.label(), error };
            let letter = letter(entry.verb);
            self.require(entry.ty, letter).map_err(fail)?;
            let conditional = matches!(entry.address, Address::Criteria(_)) || entry.if_none_exist.is_some();
            let filter = match self.policy().map(|p| p.narrowing(entry.ty, letter)) {
                Some(Narrowing::Filter(pairs)) => pairs,
                Some(Narrowing::Inexpressible) if conditional => {
                    return Err(fail(ApiError::Forbidden(format!(
                        "the token's scopes allow this on {} only under constraints that cannot be combined into \
                         the conditional criteria",
                        entry.ty
                    ))))
                }
                _ => continue,
            };
            if let Address::Criteria(pairs) = &mut entry.address {
                pairs.extend(filter.iter().cloned());
            }
            if let Some(pairs) = &mut entry.if_none_exist {
                pairs.extend(filter.iter().cloned());
            }
        }
        Ok(())
    }

    /// Inside the transaction, before an entry replaces or deletes `id`: the version there now
    /// must be one the token may change (a resource may not be taken from another patient).
    pub(crate) async fn check_current(&self, tx: &Tx<'_>, entry: &EntryRequest, id: &str) -> Result<(), ApiError> {
        let letter = letter(entry.verb);
        if entry.verb == Verb::Post || !self.restricted(entry.ty, letter) {
            return Ok(());
        }
        let current = tx.current(entry.ty, id).await?;
        match current.and_then(|c| c.body) {
            Some(text) if !self.allows_text(entry.ty, letter, &text) => Err(ApiError::Forbidden(format!(
                "the token's scopes do not allow {} on {}/{id}",
                name(letter),
                entry.ty
            ))),
            _ => Ok(()),
        }
    }

    /// After an entry ran: what it wrote must be inside what the token may write (no resource
    /// created in or moved to another patient's compartment), and what it shows must be
    /// readable. Writes are checked inside the transaction, so a refusal undoes them.
    pub(crate) fn check_result(&self, entry: &EntryRequest, result: &EntryResult) -> Result<(), ApiError> {
        if self.0.is_none() {
            return Ok(());
        }
        let ty = entry.ty;
        match result {
            EntryResult::Written { version, created, .. } => {
                let letter = if *created && entry.verb == Verb::Put { Letter::Create } else { letter(entry.verb) };
                self.require(ty, letter)?;
                match &version.body {
                    Some(text) if !self.allows_text(ty, letter, text) => Err(ApiError::Forbidden(format!(
                        "the token's scopes do not allow this {}: the resource would be outside what it may write \
                         (another patient's compartment, or a constrained category or status)",
                        name(letter)
                    ))),
                    _ => Ok(()),
                }
            }
            EntryResult::Existing(version) => {
                if self.sees(version) {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden(format!("the token's scopes do not allow reading {ty}/{}", version.id)))
                }
            }
            EntryResult::Read(version) | EntryResult::NotModified(version) => {
                if self.sees(version) {
                    Ok(())
                } else {
                    Err(self.hidden(ty, &version.id))
                }
            }
            // A search entry was narrowed to what the token may see when it ran.
            EntryResult::Deleted { .. } | EntryResult::Searched(_) => Ok(()),
        }
    }
}

/// The letter an entry's verb needs.
fn letter(verb: Verb) -> Letter {
    match verb {
        Verb::Get => Letter::Read,
        Verb::Post => Letter::Create,
        Verb::Put | Verb::Patch => Letter::Update,
        Verb::Delete => Letter::Delete,
    }
}
