//! The write engine: every create, update, patch and delete, whether it arrived as its own HTTP
//! request or as an entry of a transaction or batch Bundle, is an `EntryRequest` carried out
//! here (http://hl7.org/fhir/R4/http.html#transaction).
//!
//! A transaction runs in one database transaction in the order FHIR prescribes: targets are
//! resolved first (conditional criteria are locked and searched inside the transaction, so no
//! concurrent writer slips between the check and the write), then `fullUrl`s and conditional
//! references are rewritten in every body, then DELETE, POST, PUT/PATCH are written; GETs are
//! answered after the commit. Any failing entry fails the whole Bundle and nothing stands.

use std::collections::HashMap;

use domain::search::query::{self, SearchRequest};
use domain::search::Limits;
use domain::{ingest_as, references, IngestMode, Issue, IssueCode, Prepared, ResourceType};
use persistence::{DeleteOutcome, StoreError, StoredVersion, Tx};

use domain::provenance::Activity;

use crate::auth::Access;
use crate::coordination::{self, Context};
use crate::entry::encode;
pub(crate) use crate::entry::{Address, EntryFailure, EntryRequest, EntryResult, PatchFormat, Verb};
use crate::error::{named, ApiError};
use crate::state::AppState;

/// How an entry's target was resolved inside the transaction.
#[derive(Debug, Clone)]
enum Resolved {
    /// Write (or delete) this id.
    Id(String),
    /// A conditional create matched this resource: nothing to write.
    Existing(StoredVersion),
    /// A conditional delete matched nothing.
    Nothing,
}

/// An entry with its body prepared, or the text still to rewrite once ids are known.
enum Body {
    None,
    Ready(Prepared),
    Deferred(String),
}

/// Carry out `entries` as one transaction. Returns a result per entry, in entry order.
/// `access` is checked for every entry on its own (`auth::Access`).
pub(crate) async fn transaction(
    state: &AppState,
    ctx: &Context,
    mut entries: Vec<EntryRequest>,
) -> Result<Vec<EntryResult>, EntryFailure> {
    ctx.access.admit(&mut entries)?;
    let links = new_links(&entries);
    // Bodies that need no rewriting are checked before the transaction opens: bad input is
    // refused without taking a write slot, and the work is not serialised behind the writer.
    let mut bodies = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let fail = |error| EntryFailure { index, label: entry.label(), error };
        bodies.push(prepare_outside(entry, &links).map_err(fail)?);
    }
    let allow_multiple = state.settings.multiple_delete;
    let reads: Vec<(usize, EntryRequest)> =
        entries.iter().enumerate().filter(|(_, e)| e.verb == Verb::Get).map(|(i, e)| (i, e.clone())).collect();
    let inner = ctx.clone();
    let mut results: Vec<Option<EntryResult>> = if reads.len() == entries.len() {
        entries.iter().map(|_| None).collect()
    } else {
        state
            .store
            .transaction(Box::new(move |tx| {
                Box::pin(async move { run(tx, &inner, &entries, bodies, links, allow_multiple).await })
            }))
            .await?
    };
    for (index, entry) in reads {
        let fail = |error| EntryFailure { index, label: entry.label(), error };
        let result = read(state, &ctx.access, &ctx.base, &entry)
            .await
            .and_then(|r| ctx.access.check_result(&entry, &r).map(|()| r));
        results[index] = Some(result.map_err(fail)?);
    }
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| {
            result.ok_or_else(|| EntryFailure {
                index,
                label: String::new(),
                error: ApiError::Internal(anyhow::anyhow!("entry {index} produced no result")),
            })
        })
        .collect()
}

/// Carry out one entry in a transaction of its own: a plain interaction, or a batch entry.
pub(crate) async fn single(state: &AppState, ctx: &Context, entry: EntryRequest) -> Result<EntryResult, ApiError> {
    let mut results = transaction(state, ctx, vec![entry]).await.map_err(|failure| failure.error)?;
    results.pop().ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an entry produced no result")))
}

/// The `fullUrl` of every entry that creates or updates, mapped to where the entry will land.
/// Targets of creates get their server id here; conditional ones are settled in the
/// transaction.
fn new_links(entries: &[EntryRequest]) -> HashMap<String, String> {
    entries
        .iter()
        .filter_map(|e| {
            let full_url = e.full_url.clone()?;
            match (&e.address, e.verb) {
                (Address::Instance(id), Verb::Put | Verb::Patch) => Some((full_url, format!("{}/{id}", e.ty))),
                _ => None,
            }
        })
        .collect()
}

fn prepare_outside(entry: &EntryRequest, links: &HashMap<String, String>) -> Result<Body, ApiError> {
    if let Address::Instance(id) | Address::Version(id, _) = &entry.address {
        if !domain::id::is_valid(id) {
            return Err(ApiError::invalid(IssueCode::Value, format!("{}.id", entry.ty), invalid_id(id)));
        }
    }
    if !matches!(entry.verb, Verb::Post | Verb::Put) {
        return Ok(Body::None);
    }
    let Some(body) = &entry.body else {
        return Err(ApiError::invalid(IssueCode::Required, "resource", "a resource is required"));
    };
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::invalid(IssueCode::Structure, "resource", "not UTF-8"))?;
    let refers_to_bundle = references::mentions(text, links) || text.contains("urn:uuid:") || text.contains("urn:oid:");
    if refers_to_bundle {
        return Ok(Body::Deferred(text.to_owned()));
    }
    Ok(Body::Ready(ingest_entry(entry, body)?))
}

#[tracing::instrument(name = "domain.ingest", skip_all, fields(fhir.resource_type = %entry.ty))]
fn ingest_entry(entry: &EntryRequest, body: &[u8]) -> Result<Prepared, ApiError> {
    let mode = match (&entry.verb, &entry.address) {
        (Verb::Put, Address::Instance(id)) => IngestMode::Update { id },
        (Verb::Put, _) => IngestMode::Conditional,
        _ => IngestMode::Create,
    };
    ingest_as(entry.ty, body, mode).map_err(ApiError::Invalid)
}

/// Everything that happens inside the database transaction.
async fn run(
    tx: &Tx<'_>,
    ctx: &Context,
    entries: &[EntryRequest],
    mut bodies: Vec<Body>,
    mut links: HashMap<String, String>,
    allow_multiple: bool,
) -> Result<Vec<Option<EntryResult>>, EntryFailure> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].verb.rank());
    let failure = |index: usize, error: ApiError| EntryFailure { index, label: entries[index].label(), error };

    // 1. Resolve every target, conditional ones by searching under a lock on their criteria.
    let mut targets: Vec<Option<Resolved>> = vec![None; entries.len()];
    for &i in &order {
        let entry = &entries[i];
        let resolved = resolve(tx, ctx, entry, allow_multiple).await.map_err(|e| failure(i, e))?;
        if let (Some(full_url), Some(Resolved::Id(id) | Resolved::Existing(StoredVersion { id, .. }))) =
            (&entry.full_url, &resolved)
        {
            links.insert(full_url.clone(), format!("{}/{id}", entry.ty));
        }
        targets[i] = resolved;
    }
    distinct_targets(entries, &targets).map_err(|(i, e)| failure(i, e))?;

    // 2. Conditional references in the deferred bodies, then rewrite and check those bodies.
    for (i, body) in bodies.iter().enumerate() {
        if let Body::Deferred(text) = body {
            for reference in references::conditional(text) {
                if links.contains_key(&reference) {
                    continue;
                }
                let target = resolve_reference(tx, ctx, &reference).await.map_err(|e| failure(i, e))?;
                links.insert(reference, target);
            }
        }
    }
    for (i, body) in bodies.iter_mut().enumerate() {
        if let Body::Deferred(text) = body {
            let rewritten = references::rewrite(text, &links);
            if let Some(reference) = references::unresolved(&rewritten) {
                return Err(failure(i, unresolved(&reference)));
            }
            *body = Body::Ready(ingest_entry(&entries[i], rewritten.as_bytes()).map_err(|e| failure(i, e))?);
        }
    }

    // 3. Write in processing order.
    let mut results: Vec<Option<EntryResult>> = vec![None; entries.len()];
    for &i in &order {
        let entry = &entries[i];
        let body = std::mem::replace(&mut bodies[i], Body::None);
        if let Some(Resolved::Id(id)) = &targets[i] {
            ctx.access.check_current(tx, entry, id).await.map_err(|e| failure(i, e))?;
        }
        let result = write(tx, ctx, entry, targets[i].take(), body).await.map_err(|e| failure(i, e))?;
        if let Some(result) = &result {
            ctx.access.check_result(entry, result).map_err(|e| failure(i, e))?;
        }
        results[i] = result;
    }
    Ok(results)
}

/// "If any resource identities (including resolved identities from conditional update/delete)
/// overlap in steps 1-3, then the transaction SHALL fail" (http://hl7.org/fhir/R4/http.html#trules):
/// two entries that write or delete one resource (two PUTs of `Task/1`, a PUT and a DELETE, a
/// conditional update that lands where another entry writes) are refused, naming the later
/// entry. A conditional create that found its resource counts too. GETs (step 4) may overlap.
fn distinct_targets(entries: &[EntryRequest], targets: &[Option<Resolved>]) -> Result<(), (usize, ApiError)> {
    let mut seen: HashMap<(ResourceType, &str), usize> = HashMap::new();
    for (i, (entry, target)) in entries.iter().zip(targets).enumerate() {
        let id = match target {
            Some(Resolved::Id(id) | Resolved::Existing(StoredVersion { id, .. })) => id.as_str(),
            Some(Resolved::Nothing) | None => continue,
        };
        if let Some(first) = seen.insert((entry.ty, id), i) {
            let message = format!(
                "{}/{id} is also the target of Bundle.entry[{first}]; a transaction may write or delete each resource once",
                entry.ty
            );
            return Err((i, ApiError::Invalid(vec![Issue::general(IssueCode::Invalid, message)])));
        }
    }
    Ok(())
}

/// A `urn:uuid:`/`urn:oid:` reference no entry's `fullUrl` defines.
fn unresolved(reference: &str) -> ApiError {
    ApiError::Invalid(vec![Issue::general(
        IssueCode::NotFound,
        format!(
            "the reference '{reference}' names no entry of the Bundle (no entry has it as fullUrl); such a reference cannot be stored"
        ),
    )])
}

/// Settle where an entry lands.
///
/// The criteria already carry the token's compartment and constraints (`Access::admit`); chains
/// in them are narrowed here.
async fn resolve(
    tx: &Tx<'_>,
    ctx: &Context,
    entry: &EntryRequest,
    allow_multiple: bool,
) -> Result<Option<Resolved>, ApiError> {
    let ty = entry.ty;
    let (access, limits) = (&ctx.access, &ctx.search_limits);
    match (entry.verb, &entry.address) {
        (Verb::Get, _) => Ok(None),
        (Verb::Post, _) => match &entry.if_none_exist {
            None => Ok(Some(Resolved::Id(uuid::Uuid::now_v7().to_string()))),
            Some(pairs) => {
                let found = find_locked(tx, access, limits, ty, pairs, 2, "If-None-Exist").await?;
                match found.as_slice() {
                    [] => Ok(Some(Resolved::Id(uuid::Uuid::now_v7().to_string()))),
                    [existing] => Ok(Some(Resolved::Existing(existing.clone()))),
                    _ => Err(multiple(ty, pairs, "If-None-Exist")),
                }
            }
        },
        (_, Address::Instance(id)) => {
            if !domain::id::is_valid(id) {
                return Err(ApiError::invalid(IssueCode::Value, format!("{ty}.id"), invalid_id(id)));
            }
            Ok(Some(Resolved::Id(id.clone())))
        }
        (Verb::Put | Verb::Patch, Address::Criteria(pairs)) => {
            let found = find_locked(tx, access, limits, ty, pairs, 2, "the criteria").await?;
            match found.as_slice() {
                [] if entry.verb == Verb::Put => {
                    // No match: create, under the body's id when it carries one.
                    let id = body_id(entry).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                    Ok(Some(Resolved::Id(id)))
                }
                [] => Err(ApiError::NotFound(format!("a {ty} matching {}", encode(pairs)))),
                [one] => Ok(Some(Resolved::Id(one.id.clone()))),
                _ => Err(multiple(ty, pairs, "the criteria")),
            }
        }
        (Verb::Delete, Address::Criteria(pairs)) => {
            let limit = if allow_multiple { 1000 } else { 2 };
            let found = find_locked(tx, access, limits, ty, pairs, limit, "the criteria").await?;
            match found.as_slice() {
                [] => Ok(Some(Resolved::Nothing)),
                [one] => Ok(Some(Resolved::Id(one.id.clone()))),
                many if allow_multiple => {
                    // Every match but the last is deleted here; the last one as the entry.
                    let (last, rest) = many.split_last().map(|(l, r)| (l.id.clone(), r)).unwrap_or_default();
                    for other in rest {
                        tx.delete(ty, &other.id, None).await?;
                    }
                    Ok(Some(Resolved::Id(last)))
                }
                _ => Err(multiple(ty, pairs, "the criteria")),
            }
        }
        (_, Address::Type | Address::Search(_) | Address::Version(..)) => {
            Err(ApiError::MethodNotAllowed(format!("{} is not supported on this URL", entry.verb.as_str())))
        }
    }
}

/// The id in a conditional update's body, if any.
fn body_id(entry: &EntryRequest) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<String>,
    }
    let body = entry.body.as_ref()?;
    serde_json::from_slice::<WithId>(body).ok()?.id.filter(|id| domain::id::is_valid(id))
}

/// Search `ty` with `pairs` inside the transaction, holding a lock on the criteria until the
/// transaction ends.
async fn find_locked(
    tx: &Tx<'_>,
    access: &Access,
    limits: &Limits,
    ty: ResourceType,
    pairs: &[(String, String)],
    limit: u64,
    what: &str,
) -> Result<Vec<StoredVersion>, ApiError> {
    let mut request = criteria(ty, pairs, limits, what)?;
    access.narrow_chains(&mut request.clauses)?;
    tx.lock(&format!("{ty}?{}", canonical(pairs))).await?;
    Ok(tx.find(ty, &request, limit).await?)
}

/// Parse conditional criteria strictly (an unknown parameter must not widen the match), within
/// the search limits.
fn criteria(
    ty: ResourceType,
    pairs: &[(String, String)],
    limits: &Limits,
    what: &str,
) -> Result<SearchRequest, ApiError> {
    if pairs.is_empty() {
        return Err(ApiError::invalid(IssueCode::Required, what, format!("{what} must name at least one parameter")));
    }
    let request = query::parse_within(ty, pairs, true, limits).map_err(ApiError::Invalid)?;
    // Result parameters alone (`_count`, `_sort`, ...) select nothing: they would match every
    // resource, and a conditional delete must never mean "all of them".
    if request.clauses.is_empty() {
        return Err(ApiError::invalid(
            IssueCode::Required,
            what,
            format!("{what} must name at least one search parameter that selects resources"),
        ));
    }
    Ok(request)
}

/// The criteria in a stable form, for the lock key.
fn canonical(pairs: &[(String, String)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort();
    encode(&sorted)
}

fn multiple(ty: ResourceType, pairs: &[(String, String)], what: &str) -> ApiError {
    ApiError::PreconditionFailed(format!("{what} ({ty}?{}) matched more than one resource", encode(pairs)))
}

/// `Type?criteria` → `Type/id` of the one resource it matches among those `access` may search.
async fn resolve_reference(tx: &Tx<'_>, ctx: &Context, reference: &str) -> Result<String, ApiError> {
    let access = &ctx.access;
    let (name, query) = reference.split_once('?').unwrap_or((reference, ""));
    let Some(ty) = ResourceType::parse(name) else {
        return Err(ApiError::invalid(
            IssueCode::NotSupported,
            "reference",
            format!("the conditional reference '{reference}' names a type this server does not hold"),
        ));
    };
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let mut request = criteria(ty, &pairs, &ctx.search_limits, "the conditional reference")?;
    access.narrow(ty, &mut request)?;
    let found = tx.find(ty, &request, 2).await?;
    match found.as_slice() {
        [one] => Ok(format!("{ty}/{}", one.id)),
        [] => Err(ApiError::NotFound(format!("a {ty} matching the conditional reference '{reference}'"))),
        _ => Err(ApiError::PreconditionFailed(format!(
            "the conditional reference '{reference}' matched more than one resource"
        ))),
    }
}

/// Carry out a resolved entry.
async fn write(
    tx: &Tx<'_>,
    ctx: &Context,
    entry: &EntryRequest,
    target: Option<Resolved>,
    body: Body,
) -> Result<Option<EntryResult>, ApiError> {
    let ty = entry.ty;
    let Some(target) = target else { return Ok(None) };
    let id = match target {
        Resolved::Existing(version) => return Ok(Some(EntryResult::Existing(version))),
        Resolved::Nothing => {
            let message = format!("no {ty} matched; nothing was deleted");
            return Ok(Some(EntryResult::Deleted { version: None, message }));
        }
        Resolved::Id(id) => id,
    };
    let prepared = match body {
        Body::Ready(prepared) => Some(prepared),
        Body::None | Body::Deferred(_) => None,
    };
    match (entry.verb, prepared) {
        (Verb::Post, Some(prepared)) => store(tx, ctx, &id, None, prepared, None).await.map(Some),
        (Verb::Put, Some(prepared)) => {
            if let (Address::Criteria(_), Some(body_id)) = (&entry.address, prepared.body_id()) {
                if body_id != id {
                    return Err(ApiError::invalid(
                        IssueCode::Invalid,
                        format!("{ty}.id"),
                        format!(
                            "the id in the body ('{body_id}') differs from the resource the criteria matched ('{id}')"
                        ),
                    ));
                }
            }
            let current = tx.current(ty, &id).await?;
            let previous = current.as_ref().and_then(|c| c.body.clone());
            let expected = current.map(|c| c.version_id);
            check_if_match(entry.if_match, expected)?;
            store(tx, ctx, &id, previous.as_deref(), prepared, Some(expected)).await.map(Some)
        }
        (Verb::Patch, _) => patch(tx, ctx, entry, &id).await.map(Some),
        (Verb::Delete, _) => {
            coordination::before_delete(tx, ctx, ty, &id, entry.cascade_delete).await?;
            let outcome = tx.delete(ty, &id, entry.if_match).await.map_err(|e| named(e, ty, &id))?;
            let (version, message) = match outcome {
                DeleteOutcome::Deleted { version_id, last_updated_ms } => {
                    coordination::record(tx, ctx, ty, &id, (version_id, last_updated_ms), Activity::Delete).await?;
                    (Some((version_id, last_updated_ms)), format!("Deleted {ty}/{id} (version {version_id})"))
                }
                DeleteOutcome::AlreadyDeleted { version_id, last_updated_ms } => {
                    (Some((version_id, last_updated_ms)), format!("{ty}/{id} was already deleted; nothing changed"))
                }
            };
            Ok(Some(EntryResult::Deleted { version, message }))
        }
        _ => Err(ApiError::invalid(IssueCode::Required, "resource", "a resource is required")),
    }
}

/// The If-Match check against the version found under lock (`None`: no resource).
fn check_if_match(if_match: Option<i64>, current: Option<i64>) -> Result<(), ApiError> {
    match (if_match, current) {
        (Some(expected), current) if current != Some(expected) => {
            Err(StoreError::VersionConflict { expected, current }.into())
        }
        _ => Ok(()),
    }
}

/// Write a version after the care-coordination checks, then what the change derives.
/// `expected`: `None` for a create; `Some(current version or None)` for an update.
async fn store(
    tx: &Tx<'_>,
    ctx: &Context,
    id: &str,
    previous: Option<&str>,
    prepared: Prepared,
    expected: Option<Option<i64>>,
) -> Result<EntryResult, ApiError> {
    let rules = prepared.resource_type().descriptor().rules;
    let prepared =
        if rules.subscription { crate::subscriptions::before_write(ctx, id, previous, prepared)? } else { prepared };
    let (prepared, warnings) = coordination::before_write(tx, ctx, id, previous, prepared).await?;
    let (version, created) = match expected {
        None => (tx.create(&prepared, id).await?, true),
        Some(current) => {
            let outcome =
                tx.update(&prepared, id, current).await.map_err(|e| named(e, prepared.resource_type(), id))?;
            (outcome.version, outcome.created)
        }
    };
    coordination::after_write(tx, previous, &version).await?;
    if rules.subscription {
        crate::subscriptions::after_write(tx, ctx, &version).await?;
    }
    let activity = if created { Activity::Create } else { Activity::Update };
    let ty = version.resource_type;
    coordination::record(tx, ctx, ty, &version.id, (version.version_id, version.last_updated_ms), activity).await?;
    Ok(EntryResult::Written { version, created, warnings })
}

/// Apply a patch to the current version, held locked, and store the result as any update.
async fn patch(tx: &Tx<'_>, ctx: &Context, entry: &EntryRequest, id: &str) -> Result<EntryResult, ApiError> {
    let limits = ctx.patch_limits;
    let ty = entry.ty;
    let current = tx.current(ty, id).await?.ok_or_else(|| ApiError::NotFound(format!("{ty}/{id}")))?;
    check_if_match(entry.if_match, Some(current.version_id))?;
    let Some(text) = current.body.as_deref() else {
        return Err(ApiError::Gone(format!("{ty}/{id}")));
    };
    let document = entry.body.as_deref().unwrap_or_default();
    let prepared = tracing::info_span!("domain.patch", fhir.resource_type = %ty).in_scope(|| {
        let patched = match entry.patch.unwrap_or(PatchFormat::Json) {
            PatchFormat::Json => domain::patch::json_patch(text, document, limits),
            PatchFormat::FhirPath => domain::patch::fhirpath_patch(text, document, ty, limits),
        }
        .map_err(patch_error)?;
        ingest_as(ty, patched.as_bytes(), IngestMode::Update { id }).map_err(ApiError::Invalid)
    })?;
    store(tx, ctx, id, Some(text), prepared, Some(Some(current.version_id))).await
}

/// A patch that cannot be applied to this resource, or one that goes past the limits (too many
/// operations, a result too large or too deep), is 422; a malformed patch document is 400.
fn patch_error(issues: Vec<Issue>) -> ApiError {
    if issues.iter().any(|i| matches!(i.code, IssueCode::Processing | IssueCode::TooCostly)) {
        ApiError::Unprocessable(issues)
    } else {
        ApiError::Invalid(issues)
    }
}

/// A GET entry, answered after the commit.
async fn read(
    state: &AppState,
    access: &crate::auth::Access,
    base: &str,
    entry: &EntryRequest,
) -> Result<EntryResult, ApiError> {
    let ty = entry.ty;
    let version = match &entry.address {
        Address::Instance(id) => state.store.read(ty, id).await.map_err(|e| named(e, ty, id))?,
        Address::Version(id, vid) => {
            state.store.vread(ty, id, *vid).await.map_err(|e| named(e, ty, &format!("{id}/_history/{vid}")))?
        }
        Address::Search(pairs) => {
            return Ok(EntryResult::Searched(crate::search::searchset(state, access, base, ty, pairs, false).await?));
        }
        _ => {
            return Err(ApiError::MethodNotAllowed(
                "a GET entry must read a resource, a version or search ([type]?params)".into(),
            ))
        }
    };
    let unchanged = entry.if_none_match == Some(version.version_id)
        || (entry.if_none_match.is_none()
            && entry.if_modified_since.is_some_and(|since| version.last_updated_ms / 1000 <= since / 1000));
    Ok(if unchanged { EntryResult::NotModified(version) } else { EntryResult::Read(version) })
}

pub(crate) fn invalid_id(id: &str) -> String {
    format!("'{id}' is not a valid id: 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'")
}
