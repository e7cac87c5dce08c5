//! FHIR Bulk Data export, v2.0 (http://hl7.org/fhir/uv/bulkdata/STU2/export.html): the
//! kick-off (`[base]/$export`, `[base]/[type]/$export`; GET with query parameters or POST with
//! a `Parameters` body; `Prefer: respond-async` required), the status URL (202 with
//! `X-Progress` while running, 200 with the manifest when done, `DELETE` to cancel) and the
//! NDJSON files, and the `Exporter` that writes them in the background.
//!
//! A job is a row (`persistence::export`): what to export is decided and checked at kick-off
//! and kept as a plan (each type's search, with `_typeFilter`, `_since` and the
//! `transactionTime` bound, and the scopes and patient the client asked with). A replica claims
//! a job under a lease and walks each type's resources page by page in id order (keyset), each
//! page appended to the job's file as one chunk in the transaction that renews the lease: memory
//! holds one page, whatever the size of the export. A job whose replica stopped is taken over
//! once its lease expires and written again from its start; a cancelled job (its row deleted)
//! stops at its next page. Files hold the stored text of each resource as it is.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use anyhow::Context as _;
use domain::search::query;
use domain::smart::Letter;
use domain::{Issue, IssueCode, Resource, ResourceType};
use persistence::{ExportChunk, ExportJob, ExportStatus, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::auth::Access;
use crate::config::ExportSettings;
use crate::error::ApiError;
use crate::extract::{query_pairs, FhirBody, Prefer};
use crate::responder::{base_url, http_date};
use crate::state::AppState;

/// Resources read (and appended as one chunk) per page.
const PAGE: u64 = 500;

/// The output formats accepted (`_outputFormat`); all mean NDJSON of FHIR JSON resources.
const FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// The content type of an output file.
const NDJSON: &str = "application/fhir+ndjson";

/// The canonical URL of the operation (CapabilityStatement, OpenAPI).
pub(crate) const DEFINITION: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";

/// What a job exports, decided at kick-off and kept with it.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    /// Each type, in CapabilityStatement order, with its search as a query string.
    parts: Vec<Part>,
    /// The scopes and patient context the client asked with (`None`: no authorization).
    scopes: Option<String>,
    patient: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    ty: String,
    query: String,
}

type Answer = Result<HttpResponse, ApiError>;

/// Search parameters as name and value pairs.
type Pairs = Vec<(String, String)>;

// ---------------------------------------------------------------------------------------------
// Kick-off.

/// `GET [base]/$export?…`.
pub(crate) async fn system_get(req: HttpRequest, state: web::Data<AppState>, access: Access, prefer: Prefer) -> Answer {
    let asked = from_query(req.query_string());
    kick_off(&req, &state, &access, prefer, None, asked).await
}

/// `POST [base]/$export` with a `Parameters` body.
pub(crate) async fn system_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let asked = from_parameters(&body.0)?;
    kick_off(&req, &state, &access, prefer, None, asked).await
}

/// `GET [base]/[type]/$export?…`.
pub(crate) async fn type_get<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    prefer: Prefer,
) -> Answer {
    let asked = from_query(req.query_string());
    kick_off(&req, &state, &access, prefer, Some(R::TYPE), asked).await
}

/// `POST [base]/[type]/$export` with a `Parameters` body.
pub(crate) async fn type_post<R: Resource>(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    prefer: Prefer,
    body: FhirBody,
) -> Answer {
    let asked = from_parameters(&body.0)?;
    kick_off(&req, &state, &access, prefer, Some(R::TYPE), asked).await
}

/// One kick-off parameter as the client sent it, with where it sits (the query parameter's
/// name, or `Parameters.parameter[i]`) for the OperationOutcome.
struct Asked {
    name: String,
    value: String,
    at: String,
}

fn from_query(query: &str) -> Vec<Asked> {
    query_pairs(query).into_iter().map(|(name, value)| Asked { at: name.clone(), name, value }).collect()
}

/// The parameters of a `Parameters` body; an element this server does not know is refused.
fn from_parameters(body: &[u8]) -> Result<Vec<Asked>, ApiError> {
    let bad = |at: String, why: &str| ApiError::invalid(IssueCode::Structure, at, why.to_owned());
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("Parameters".into(), "the body is not JSON"))?;
    let Some(object) = value.as_object().filter(|o| o.get("resourceType") == Some(&json!("Parameters"))) else {
        return Err(bad("Parameters".into(), "the body of a POST $export is a Parameters resource"));
    };
    if let Some(key) = object.keys().find(|k| !matches!(k.as_str(), "resourceType" | "id" | "meta" | "parameter")) {
        return Err(bad(format!("Parameters.{key}"), "unknown element"));
    }
    let list = match object.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("Parameters.parameter".into(), "parameter is a list")),
    };
    let mut asked = Vec::with_capacity(list.len());
    for (i, parameter) in list.iter().enumerate() {
        let at = format!("Parameters.parameter[{i}]");
        let Some(parameter) = parameter.as_object() else { return Err(bad(at, "a parameter is an object")) };
        let mut name = None;
        let mut value = None;
        for (key, item) in parameter {
            match (key.as_str(), item.as_str()) {
                ("name", Some(text)) => name = Some(text.to_owned()),
                (
                    "valueString" | "valueCode" | "valueInstant" | "valueUri" | "valueUrl" | "valueCanonical",
                    Some(text),
                ) if value.is_none() => value = Some(text.to_owned()),
                _ => return Err(bad(format!("{at}.{key}"), "unknown or repeated element, or not a string")),
            }
        }
        match (name, value) {
            (Some(name), Some(value)) => asked.push(Asked { name, value, at }),
            _ => return Err(bad(at, "a parameter needs a name and a string value")),
        }
    }
    Ok(asked)
}

/// Check what was asked, store the job and answer 202 with its status URL.
async fn kick_off(
    req: &HttpRequest,
    state: &AppState,
    access: &Access,
    prefer: Prefer,
    level: Option<ResourceType>,
    asked: Vec<Asked>,
) -> Answer {
    if !prefer.respond_async {
        return Err(ApiError::invalid(
            IssueCode::Required,
            "Prefer",
            "a bulk export answers asynchronously only: send `Prefer: respond-async`",
        ));
    }
    let plan = plan(state, access, level, &asked)?;
    let now = now_ms();
    let base = base_url(req, state);
    let inside = req.path().strip_prefix(crate::route::FHIR).unwrap_or(req.path());
    let request = match req.query_string() {
        "" => format!("{base}{inside}"),
        query => format!("{base}{inside}?{query}"),
    };
    let job = ExportJob {
        id: uuid::Uuid::new_v4().simple().to_string(),
        owner: owner(access),
        status: ExportStatus::Running,
        request,
        transaction_ms: now,
        plan: serde_json::to_string(&plan.with_bound(now)).context("the export plan").map_err(ApiError::Internal)?,
        created_ms: now,
        expires_ms: None,
        progress: 0,
        error: None,
    };
    let limit = state.settings.export.max_jobs_per_client;
    let stored = job.clone();
    let created = state
        .store
        .transaction(Box::new(move |tx| Box::pin(async move { tx.create_export(&stored, i64::from(limit)).await })))
        .await?;
    if !created {
        return Err(ApiError::TooManyJobs(limit));
    }
    state.exports.notify_one();
    Ok(HttpResponse::Accepted()
        .insert_header((header::CONTENT_LOCATION, format!("{base}/$export-status/{}", job.id)))
        .finish())
}

/// The plan before its `transactionTime` bound is added: each type with its search pairs.
struct Planned {
    parts: Vec<(ResourceType, Pairs)>,
    scopes: Option<String>,
    patient: Option<String>,
}

impl Planned {
    /// The plan, each search bounded by `_lastUpdated` at most `transaction_ms`: what changes
    /// after `transactionTime` is left to the next export (`_since` = this `transactionTime`).
    fn with_bound(self, transaction_ms: i64) -> Plan {
        let bound = format!("le{}", domain::instant::to_fhir(transaction_ms));
        let parts = self
            .parts
            .into_iter()
            .map(|(ty, mut pairs)| {
                pairs.push(("_lastUpdated".into(), bound.clone()));
                let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                Part { ty: ty.as_str().to_owned(), query }
            })
            .collect();
        Plan { parts, scopes: self.scopes, patient: self.patient }
    }
}

/// Check the kick-off parameters and the token, and decide what to export.
fn plan(state: &AppState, access: &Access, level: Option<ResourceType>, asked: &[Asked]) -> Result<Planned, ApiError> {
    let invalid = |code, at: &str, why: String| ApiError::invalid(code, at.to_owned(), why);
    let mut types: Option<Vec<ResourceType>> = None;
    let mut since = None;
    // Each `_typeFilter`: its type, its search and where it was asked.
    let mut filters: Vec<(ResourceType, Pairs, &str)> = Vec::new();
    for a in asked {
        match a.name.as_str() {
            "_outputFormat" => {
                if !FORMATS.contains(&a.value.as_str()) {
                    return Err(invalid(
                        IssueCode::NotSupported,
                        &a.at,
                        format!("_outputFormat '{}' is not supported; ask for {}", a.value, FORMATS.join(", ")),
                    ));
                }
            }
            "_since" => {
                // An instant: a date and a time with its zone.
                let ms = domain::instant::parse(&a.value).filter(|_| a.value.contains('T')).ok_or_else(|| {
                    invalid(IssueCode::Value, &a.at, format!("_since '{}' is not a FHIR instant", a.value))
                })?;
                since = Some(ms);
            }
            "_type" => {
                let list = types.get_or_insert_with(Vec::new);
                for name in a.value.split(',').map(str::trim) {
                    let ty = exported(name).ok_or_else(|| {
                        invalid(
                            IssueCode::NotSupported,
                            &a.at,
                            format!("_type '{name}' is not a type this server exports"),
                        )
                    })?;
                    if !list.contains(&ty) {
                        list.push(ty);
                    }
                }
            }
            "_typeFilter" => {
                let (name, query) = a.value.split_once('?').unwrap_or((a.value.as_str(), ""));
                let ty = exported(name).ok_or_else(|| {
                    invalid(
                        IssueCode::NotSupported,
                        &a.at,
                        format!("_typeFilter names '{name}', not a type this server exports"),
                    )
                })?;
                if filters.iter().any(|(t, _, _)| *t == ty) {
                    return Err(invalid(
                        IssueCode::NotSupported,
                        &a.at,
                        format!("one _typeFilter per type is supported; {ty} has several"),
                    ));
                }
                filters.push((ty, query_pairs(query), a.at.as_str()));
            }
            other => {
                return Err(invalid(
                    IssueCode::NotSupported,
                    &a.at,
                    format!("'{other}' is not a $export parameter this server supports"),
                ))
            }
        }
    }
    if let Some(level) = level {
        if types.as_ref().is_some_and(|list| list.iter().any(|t| *t != level)) {
            let at = asked.iter().find(|a| a.name == "_type").map_or("_type", |a| a.at.as_str());
            return Err(invalid(IssueCode::Value, at, format!("a {level}/$export exports {level} only")));
        }
        types = Some(vec![level]);
    }
    let explicit = types.is_some();
    let types: Vec<ResourceType> = match types {
        Some(list) => list,
        None => ResourceType::ALL.into_iter().filter(|t| t.exportable() && access.may(*t, Letter::Search)).collect(),
    };
    if types.is_empty() {
        return Err(ApiError::Forbidden("the token's scopes allow searching none of the exported types".into()));
    }
    for (ty, _, at) in &filters {
        if !types.contains(ty) {
            return Err(invalid(IssueCode::Value, at, format!("_typeFilter names {ty}, which this export leaves out")));
        }
    }
    let mut parts = Vec::with_capacity(types.len());
    for ty in ResourceType::ALL.into_iter().filter(|t| types.contains(t)) {
        if explicit {
            access.require(ty, Letter::Search)?;
        }
        let mut pairs = filters.iter().find(|(t, _, _)| *t == ty).map(|(_, p, _)| p.clone()).unwrap_or_default();
        let at = filters.iter().find(|(t, _, _)| *t == ty).map_or("_typeFilter", |(_, _, at)| *at);
        let mut request = query::parse_within(ty, &pairs, true, &state.settings.search_limits).map_err(|issues| {
            let why = issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ");
            ApiError::Invalid(vec![Issue::error(IssueCode::Invalid, at, format!("_typeFilter on {ty}: {why}"))])
        })?;
        if shapes_results(&pairs) {
            return Err(invalid(
                IssueCode::NotSupported,
                at,
                format!("_typeFilter on {ty} may hold search criteria only (no _include, _sort, _count, _summary, _elements or _total)"),
            ));
        }
        // Refused now (403) rather than when the job runs, if the token's constraints cannot
        // be combined with the filter.
        access.narrow(ty, &mut request)?;
        if let Some(since) = since {
            pairs.push(("_lastUpdated".into(), format!("ge{}", domain::instant::to_fhir(since))));
        }
        parts.push((ty, pairs));
    }
    let (scopes, patient) = access.to_stored();
    Ok(Planned { parts, scopes, patient })
}

/// The exported type named `name`.
fn exported(name: &str) -> Option<ResourceType> {
    ResourceType::parse(name).filter(|t| t.exportable())
}

/// The result parameters a `_typeFilter` may not hold: an export holds each match once, as
/// stored, in id order.
const RESULT_PARAMS: [&str; 8] =
    ["_include", "_revinclude", "_sort", "_count", "_summary", "_elements", "_total", "_cursor"];

/// Whether search pairs ask for more than criteria.
fn shapes_results(pairs: &[(String, String)]) -> bool {
    pairs.iter().any(|(name, _)| RESULT_PARAMS.contains(&name.split(':').next().unwrap_or_default()))
}

/// Who owns a job: the token's client (else subject); empty without authorization.
fn owner(access: &Access) -> String {
    access.principal().and_then(|p| p.key()).unwrap_or_default().to_owned()
}

fn now_ms() -> i64 {
    domain::instant::from_system_time(std::time::SystemTime::now())
}

// ---------------------------------------------------------------------------------------------
// Status, cancel and files.

/// The job `id`, if it exists and `access` kicked it off (another client's is not revealed).
async fn job_of(state: &AppState, access: &Access, id: &str) -> Result<ExportJob, ApiError> {
    match state.store.export_job(id).await? {
        Some(job) if job.owner == owner(access) => Ok(job),
        _ => Err(ApiError::NotFound("the export job".into())),
    }
}

/// `GET [base]/$export-status/{id}`: 202 while running, the manifest when done.
pub(crate) async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    id: web::Path<String>,
) -> Answer {
    let job = job_of(&state, &access, &id).await?;
    match job.status {
        ExportStatus::Running => Ok(HttpResponse::Accepted()
            .insert_header(("X-Progress", format!("{} resources exported", job.progress)))
            .insert_header((header::RETRY_AFTER, "1"))
            .finish()),
        ExportStatus::Failed => Err(ApiError::Internal(anyhow::anyhow!(
            "export job failed: {}",
            job.error.as_deref().unwrap_or("no cause recorded")
        ))),
        ExportStatus::Done => {
            let base = base_url(&req, &state);
            let files = state.store.export_files(&job.id).await?;
            let output: Vec<Value> = files
                .iter()
                .map(|f| {
                    json!({
                        "type": f.resource_type,
                        "url": format!("{base}/$export-file/{}/{}", job.id, f.file_no),
                        "count": f.count,
                    })
                })
                .collect();
            let manifest = json!({
                "transactionTime": domain::instant::to_fhir(job.transaction_ms),
                "request": job.request,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            let mut answer = HttpResponse::Ok();
            answer.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
            if let Some(expires) = job.expires_ms {
                answer.insert_header((header::EXPIRES, http_date(expires)));
            }
            Ok(answer.body(manifest.to_string()))
        }
    }
}

/// `DELETE [base]/$export-status/{id}`: cancel the job (or forget a finished one) and delete
/// its files; 202.
pub(crate) async fn cancel(state: web::Data<AppState>, access: Access, id: web::Path<String>) -> Answer {
    let job = job_of(&state, &access, &id).await?;
    let id = job.id;
    let deleted =
        state.store.transaction(Box::new(move |tx| Box::pin(async move { tx.delete_export(&id).await }))).await?;
    if !deleted {
        return Err(ApiError::NotFound("the export job".into()));
    }
    Ok(HttpResponse::Accepted().finish())
}

/// `GET [base]/$export-file/{id}/{file}`: one NDJSON file of a finished job, streamed from the
/// database one chunk (one page of resources) at a time.
pub(crate) async fn file(state: web::Data<AppState>, access: Access, path: web::Path<(String, String)>) -> Answer {
    let (id, file) = path.into_inner();
    let job = job_of(&state, &access, &id).await?;
    let missing = || ApiError::NotFound("the export file".into());
    let file_no: i64 = file.parse().map_err(|_| missing())?;
    if job.status != ExportStatus::Done
        || !state.store.export_files(&job.id).await?.iter().any(|f| f.file_no == file_no)
    {
        return Err(missing());
    }
    let store = state.store.clone();
    let chunks = futures_util::stream::try_unfold(0i64, move |after| {
        let store = store.clone();
        let id = job.id.clone();
        async move {
            match store.export_chunk(&id, file_no, after).await {
                Ok(Some((number, body))) => Ok(Some((Bytes::from(body), number))),
                Ok(None) => Ok(None),
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "an export file could not be read to its end");
                    Err(actix_web::error::ErrorServiceUnavailable("the export file could not be read"))
                }
            }
        }
    });
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, HeaderValue::from_static(NDJSON))).streaming(chunks))
}

// ---------------------------------------------------------------------------------------------
// The exporter.

/// Runs export jobs; cheap to clone.
#[derive(Clone)]
pub struct Exporter {
    store: Store,
    settings: ExportSettings,
    limits: domain::search::Limits,
    /// This replica's name on the leases it takes.
    owner: String,
    /// Told when a kick-off on this replica stored a job.
    wake: Arc<Notify>,
}

/// What one run of the exporter did with the job it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub job: String,
    /// Where the job stands now: `Done`, `Failed`, or `Running` when it was cancelled or taken
    /// over while this replica wrote it.
    pub status: ExportStatus,
    pub resources: u64,
}

impl Exporter {
    pub(crate) fn new(
        store: Store,
        settings: ExportSettings,
        limits: domain::search::Limits,
        wake: Arc<Notify>,
    ) -> Self {
        Self { store, settings, limits, owner: uuid::Uuid::new_v4().simple().to_string(), wake }
    }

    /// An exporter with a lease name of its own, as another replica on the same database would
    /// have (tests of a job taken over).
    pub fn replica(&self) -> Self {
        Self { owner: uuid::Uuid::new_v4().simple().to_string(), ..self.clone() }
    }

    /// Delete the jobs whose files expired, then claim one job (if one waits) and write it to
    /// its end.
    pub async fn run_once(&self) -> anyhow::Result<Option<Ran>> {
        let now = now_ms();
        if !self.store.export_due(now).await? {
            return Ok(None);
        }
        let expired =
            self.store.transaction(Box::new(move |tx| Box::pin(async move { tx.expire_exports(now).await }))).await?;
        if expired > 0 {
            tracing::info!(expired, "expired export jobs deleted");
        }
        let (until, owner) = (self.lease_until(), self.owner.clone());
        let claimed = self
            .store
            .transaction(Box::new(move |tx| Box::pin(async move { tx.claim_export(now, until, &owner).await })))
            .await?;
        let Some(job) = claimed else { return Ok(None) };
        let id = job.id.clone();
        let (status, resources, error) = match self.write(&job).await {
            Ok(Some(resources)) => (ExportStatus::Done, resources, None),
            Ok(None) => return Ok(Some(Ran { job: id, status: ExportStatus::Running, resources: 0 })),
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "an export job failed");
                (ExportStatus::Failed, 0, Some("the export failed on the server; kick it off again".to_owned()))
            }
        };
        let expires = now_ms().saturating_add(i64::try_from(self.settings.retention_secs * 1000).unwrap_or(i64::MAX));
        let owner = self.owner.clone();
        let job_id = id.clone();
        let settled = self
            .store
            .transaction(Box::new(move |tx| {
                Box::pin(async move { tx.finish_export(&job_id, &owner, status, expires, error).await })
            }))
            .await?;
        let status = if settled { status } else { ExportStatus::Running };
        tracing::info!(resources, status = status.code(), "export job ran");
        Ok(Some(Ran { job: id, status, resources }))
    }

    fn lease_until(&self) -> i64 {
        now_ms().saturating_add(i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX))
    }

    /// Write every file of `job`; the number of resources written, or `None` when the job was
    /// cancelled (or taken over) meanwhile.
    async fn write(&self, job: &ExportJob) -> anyhow::Result<Option<u64>> {
        let plan: Plan = serde_json::from_str(&job.plan).context("the job's plan")?;
        let access = Access::stored(plan.scopes.as_deref(), plan.patient);
        let max_lines = self.settings.max_lines_per_file;
        let mut file_no = 0i64;
        let mut written = 0u64;
        for part in &plan.parts {
            let ty = ResourceType::parse(&part.ty).context("the plan names a type no longer held")?;
            let pairs = query_pairs(&part.query);
            let mut request = query::parse_within(ty, &pairs, true, &self.limits)
                .map_err(|issues| anyhow::anyhow!("the plan's search no longer parses ({} issues)", issues.len()))?;
            access.narrow(ty, &mut request).map_err(|err| anyhow::anyhow!("the plan's scopes: {err}"))?;
            let mut after: Option<String> = None;
            // Lines in the current file; at `max_lines` the next page starts a new file.
            let mut in_file = max_lines;
            loop {
                let room = if in_file >= max_lines { max_lines } else { max_lines - in_file };
                let count = room.min(PAGE);
                let page = self.store.export_page(ty, &request, after.as_deref(), count).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                if in_file >= max_lines {
                    file_no += 1;
                    in_file = 0;
                }
                let mut lines =
                    String::with_capacity(page.iter().map(|v| v.body.as_ref().map_or(0, String::len) + 1).sum());
                for version in &page {
                    if let Some(body) = &version.body {
                        lines.push_str(body);
                        lines.push('\n');
                    }
                }
                let n = page.len() as u64;
                let chunk = ExportChunk {
                    job_id: job.id.clone(),
                    lease_owner: self.owner.clone(),
                    lease_until_ms: self.lease_until(),
                    file_no,
                    resource_type: ty,
                    lines,
                    count: i64::try_from(n).unwrap_or(i64::MAX),
                };
                drop(page);
                let appended = self
                    .store
                    .transaction(Box::new(move |tx| Box::pin(async move { tx.append_export(&chunk).await })))
                    .await?;
                if !appended {
                    return Ok(None);
                }
                in_file += n;
                written += n;
                if n < count {
                    break;
                }
            }
        }
        Ok(Some(written))
    }

    /// Run every `poll`, and at once when a kick-off here stored a job, until aborted; `None`
    /// when `poll` is zero (this replica runs no export job).
    pub(crate) fn spawn(&self) -> Option<JoinHandle<()>> {
        if self.settings.poll.is_zero() {
            return None;
        }
        let exporter = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(exporter.settings.poll);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = exporter.wake.notified() => {}
                }
                // One job after another while some wait.
                loop {
                    match exporter.run_once().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(error = format!("{err:#}"), "the exporter failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            break;
                        }
                    }
                }
            }
        }))
    }
}
