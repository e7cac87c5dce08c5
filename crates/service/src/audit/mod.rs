//! The audit trail: one AuditEvent (IHE BALP style, rendered by `domain::audit`) for every FHIR
//! request, success or failure, recorded once the response status is known, and readable at
//! `/fhir/AuditEvent` with an audit scope (`trail.rs`).
//!
//! Durability trade-off: the middleware hands each record to a bounded queue and a background
//! task appends them in batches (multi-row INSERTs, one transaction per batch; on SQLite
//! through the audit file's own writer, beside the resource writes rather than among them), so
//! the response does not wait for the audit write. A record is therefore durable a few
//! milliseconds after its response left; a crash in that window loses the records still
//! queued. Records are never dropped otherwise: a full queue makes requests wait for room
//! (back-pressure), and on shutdown the queue is drained before the process exits.

pub(crate) mod trail;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use domain::audit::{self, Action, Agent, AuditRecord};
use persistence::{AuditRow, Store};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Access, Asker};
use crate::config::AuditSettings;
use crate::extract::query_pairs;
use crate::route::{self as routes, Matched, Route};

/// Most records per batch written.
const BATCH: usize = 4096;

/// How long the writer gathers records after the first of a batch before it writes them. Each
/// commit rewrites every index page its rows touched (the entity and patient indexes take
/// rows at random places), so fewer, larger batches cost far less I/O per record: at 20,000
/// reads a second, batches of ~500 rows made the audit writer half of the server's CPU. A
/// record thus reaches the disk within about this long after its response (plus the commit).
const GATHER: Duration = Duration::from_millis(50);

/// Hands audit records to the background writer.
pub(crate) struct Auditor {
    queue: mpsc::Sender<AuditRow>,
    /// How records are also written to the log, when they are.
    log: Option<LogLine>,
}

impl Auditor {
    /// Start the writer task; it ends once every `Auditor` clone is gone and the queue is
    /// drained. Await the returned handle to be sure the last records are stored.
    pub(crate) fn start(store: Store, settings: &AuditSettings) -> (Arc<Self>, Drain) {
        let (sender, receiver) = mpsc::channel(settings.queue);
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(write(store, receiver, stopped));
        let log = settings.log.then(|| LogLine {
            key: settings.log_key.as_ref().map(|key| key.as_bytes().to_vec()),
            ids: settings.log_ids,
        });
        (Arc::new(Self { queue: sender, log }), Drain { stop, handle })
    }
}

/// Stops the writer once the server has stopped, after it stored what is queued.
pub(crate) struct Drain {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drain {
    /// Close the queue and wait (at most `limit`) for the records in it to be stored.
    pub(crate) async fn finish(self, limit: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(limit, self.handle).await.is_err() {
            tracing::error!("the audit queue could not be drained in time; queued records were lost");
        }
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<AuditRow>, mut stop: oneshot::Receiver<()>) {
    let mut rows = Vec::with_capacity(BATCH);
    let mut stopping = false;
    loop {
        tokio::select! {
            n = receiver.recv_many(&mut rows, BATCH) => {
                if n == 0 {
                    break;
                }
                if !stopping && rows.len() < BATCH {
                    // Let the batch grow for a moment (the stop signal cuts it short).
                    let _ = tokio::time::timeout(GATHER, &mut stop).await.map(|_| {
                        receiver.close();
                        stopping = true;
                    });
                    while rows.len() < BATCH {
                        match receiver.try_recv() {
                            Ok(row) => rows.push(row),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = &mut stop, if !stopping => {
                // No new records; the ones queued are still received, then recv_many gives 0.
                receiver.close();
                stopping = true;
                continue;
            }
        }
        // Shared, not copied, with the retry.
        let batch: Arc<[AuditRow]> = std::mem::replace(&mut rows, Vec::with_capacity(BATCH)).into();
        let n = batch.len();
        // One retry after a pause: a busy or restarting database should not cost records.
        let mut result = store.append_audit(Arc::clone(&batch)).await;
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            result = store.append_audit(batch).await;
        }
        if let Err(err) = result {
            tracing::error!(error = format!("{err:#}"), records = n, "audit records could not be stored");
        }
    }
}

/// What the request's handlers learned that its audit record should carry. Shared through
/// the request extensions as an `Rc` slot: the middleware must not hold the request itself
/// while it is routed (actix needs it unshared), and a request that ends in an error (a
/// timeout) comes back without it.
#[derive(Debug, Clone, Default)]
struct Note {
    patient: Option<String>,
    subtype: Option<&'static str>,
}

#[derive(Clone, Default)]
struct Slot(Rc<RefCell<Note>>);

/// What the record learned while the request was served: the handlers' note, and who asked.
struct Heard {
    note: Note,
    access: Option<Access>,
}

fn with_note(req: &HttpRequest, change: impl FnOnce(&mut Note)) {
    if let Some(slot) = req.extensions().get::<Slot>() {
        change(&mut slot.0.borrow_mut());
    }
}

/// Record the patient a request concerned (a handler found it in the resource).
pub(crate) fn note_patient(req: &HttpRequest, patient: Option<String>) {
    if patient.is_some() {
        with_note(req, |note| note.patient = patient);
    }
}

/// Record the interaction when the route alone does not tell it (`batch` vs `transaction`).
pub(crate) fn note_subtype(req: &HttpRequest, subtype: &'static str) {
    with_note(req, |note| note.subtype = Some(subtype));
}

/// What the middleware keeps of the request while it is served.
struct Asked {
    method: Method,
    path: String,
    query: String,
    address: Option<String>,
    request_id: Option<String>,
}

/// Middleware: record every request to the FHIR API, once its status is known.
pub(crate) async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // What is audited is the route table's; a path no route matches is audited when it is
    // under the FHIR base.
    let matched = routes::matched(req.request());
    let audited = match matched.at {
        Some(route) => route.audited(),
        None => req.path().strip_prefix(routes::FHIR).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
    };
    let Some(auditor) = req.app_data::<web::Data<Auditor>>().cloned().filter(|_| audited) else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    // The client's request id, if it sent a usable one; otherwise the record's own id serves.
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned);
    let asked = Asked {
        method: req.method().clone(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        address: req.peer_addr().map(|a| a.ip().to_string()),
        request_id,
    };
    let slot = Slot::default();
    let asker = Asker::default();
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(asker.clone());
    let result = next.call(req).await;
    let note = slot.0.borrow().clone();
    let access = asker.0.borrow().clone();
    let (status, target) = match &result {
        Ok(response) => {
            let location = response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let target = Target { id: response.request().match_info().get("id").map(str::to_owned), location };
            (response.status().as_u16(), target)
        }
        Err(err) => (err.as_response_error().status_code().as_u16(), Target::default()),
    };
    // Refused before routing (401, 429, 431) or failed (timeout): the pattern is known (actix
    // matches it on demand) but not its parameters, so the id is read off the path.
    let target = match target.id {
        None => Target { id: id_of_path(&asked.path, matched), ..target },
        Some(_) => target,
    };
    let record = describe(&asked, matched, target, Heard { note, access }, status);
    if let Some(line) = &auditor.log {
        line.write(&record);
    }
    if auditor.queue.send(AuditRow::of(&record)).await.is_err() {
        tracing::error!("the audit writer has stopped; a record was lost");
    }
    let mut response = result?.map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(record.request_id.as_deref().unwrap_or(&record.id)) {
        response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// What the request addressed beside its route: the id, and where a create put its resource.
#[derive(Default)]
struct Target {
    id: Option<String>,
    location: Option<String>,
}

/// The id a path names where its route's pattern has `{id}`; for a path no route matched,
/// the segment after a type the table serves (`/fhir/Task/1/x` → `1`). Only valid ids.
fn id_of_path(path: &str, matched: Matched) -> Option<String> {
    let segments: Vec<&str> = path.split('/').collect();
    let at = match matched.at {
        Some(route) => route.pattern.split('/').position(|s| s == "{id}")?,
        None => segments.iter().position(|s| routes::serves_type(s)).filter(|at| *at == 2)? + 1,
    };
    segments.get(at).filter(|s| !s.starts_with('_') && domain::id::is_valid(s)).map(|s| (*s).to_owned())
}

/// The resource type a request addressed: its route's; for a path no route matched, the
/// first segment under the FHIR base if the table serves that type.
fn type_of(path: &str, matched: Matched) -> Option<String> {
    match matched.at {
        Some(route) => route.resource_type.clone(),
        None => path
            .strip_prefix(routes::FHIR)
            .and_then(|rest| rest.split('/').find(|s| !s.is_empty()))
            .filter(|s| routes::serves_type(s))
            .map(str::to_owned),
    }
}

/// The audit record of a request that was answered with `status`.
fn describe(asked: &Asked, matched: Matched, target: Target, heard: Heard, status: u16) -> AuditRecord {
    let Heard { note, access } = heard;
    let (action, subtype) = matched.route.map_or_else(|| by_method(&asked.method), Route::audit);
    let ty = type_of(&asked.path, matched);
    let mut agent = Agent { address: asked.address.clone(), ..Agent::default() };
    let mut patient = note.patient;
    if let Some(principal) = access.as_ref().and_then(Access::principal) {
        agent.fhir_user = principal.fhir_user.clone();
        agent.subject = principal.subject.clone();
        agent.issuer = principal.issuer.clone();
        agent.client_id = principal.client_id.clone();
        patient = patient.or_else(|| principal.policy.patient().map(str::to_owned));
    }
    let pairs = query_pairs(&asked.query);
    if patient.is_none() {
        patient = pairs.iter().find_map(|(k, v)| patient_parameter(k, v));
    }
    let mut names: Vec<String> = pairs.into_iter().map(|(k, _)| k).collect();
    names.dedup();
    let entity = match (ty, target.id, target.location) {
        (Some(ty), Some(id), _) => Some(format!("{ty}/{id}")),
        (Some(_), None, Some(location)) if action == Action::Create => created(&location),
        (Some(ty), None, _) => Some(ty),
        _ => None,
    };
    let id = uuid::Uuid::now_v7().to_string();
    AuditRecord {
        request_id: Some(asked.request_id.clone().unwrap_or_else(|| id.clone())),
        id,
        recorded_ms: domain::instant::from_system_time(std::time::SystemTime::now()),
        action,
        subtype: note.subtype.unwrap_or(subtype),
        status,
        agent,
        entity,
        parameters: if action == Action::Execute { names } else { Vec::new() },
        patient,
    }
}

/// The action and subtype of a request no route serves (an unknown path, or a method its path
/// does not serve), by its method alone.
fn by_method(method: &Method) -> (Action, &'static str) {
    match *method {
        Method::POST => (Action::Create, "create"),
        Method::PUT => (Action::Update, "update"),
        Method::PATCH => (Action::Update, "patch"),
        Method::DELETE => (Action::Delete, "delete"),
        _ => (Action::Read, "read"),
    }
}

/// `Type/id` of a created resource, from its `Location` (`…/Type/id/_history/n`).
fn created(location: &str) -> Option<String> {
    let path = location.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let ty = parts.next()?;
    Some(format!("{ty}/{id}"))
}

/// A Patient id named by a search parameter (`patient=123`, `subject=Patient/123`).
fn patient_parameter(key: &str, value: &str) -> Option<String> {
    let name = key.split(':').next().unwrap_or(key);
    if !matches!(name, "patient" | "subject" | "for") {
        return None;
    }
    let value = value.split(',').next()?;
    match value.rsplit_once('/') {
        Some((head, id)) if head.ends_with("Patient") => Some(id.to_owned()),
        None if name == "patient" && domain::id::is_valid(value) => Some(value.to_owned()),
        _ => None,
    }
}

/// How a record is written to the log: no body, name or identifier. The patient appears only
/// as a keyed hash (HMAC-SHA-256 under `CAREPLAN_AUDIT_LOG_KEY`; without a key, not at all), and
/// the entity as its type, with its id only when `CAREPLAN_AUDIT_LOG_IDS` asks for it and the
/// id is a valid FHIR id of a type this server hosts.
struct LogLine {
    key: Option<Vec<u8>>,
    ids: bool,
}

impl LogLine {
    fn write(&self, record: &AuditRecord) {
        let patient = match (&self.key, &record.patient) {
            (Some(key), Some(patient)) => keyed_hash(key, patient),
            _ => String::new(),
        };
        tracing::info!(
            target: "careplan::audit",
            audit_id = %record.id,
            action = record.action.code(),
            subtype = record.subtype,
            status = record.status,
            outcome = audit::outcome(record.status),
            entity = %self.entity(record.entity.as_deref()),
            client = record.agent.client_id.as_deref().unwrap_or(""),
            patient_hash = %patient,
            request_id = record.request_id.as_deref().unwrap_or(""),
            "audit"
        );
    }

    /// What the log says of the entity: its type; `Type/id` only when asked to and both are ours.
    fn entity(&self, entity: Option<&str>) -> String {
        let Some(entity) = entity else { return String::new() };
        let (ty, id) = entity.split_once('/').map_or((entity, None), |(ty, id)| (ty, Some(id)));
        let hosted = domain::ResourceType::parse(ty).is_some() || ty == "AuditEvent";
        match id {
            _ if !hosted => String::new(),
            Some(id) if self.ids && domain::id::is_valid(id) => format!("{ty}/{id}"),
            _ => ty.to_owned(),
        }
    }
}

/// HMAC-SHA-256 of a patient id under the configured key, hex: stable for correlating lines,
/// not reversible without the key.
fn keyed_hash(key: &[u8], text: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else { return String::new() };
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_no_route_serves_are_classified_by_method_and_path() {
        crate::routes::install();
        let none = Matched::default();
        assert_eq!(by_method(&Method::POST), (Action::Create, "create"));
        assert_eq!(by_method(&Method::GET), (Action::Read, "read"));
        assert_eq!(type_of("/fhir/Task/1/x", none).as_deref(), Some("Task"));
        assert_eq!(type_of("/fhir/Patient/1", none), None);
        assert_eq!(id_of_path("/fhir/Task/t-1/x", none).as_deref(), Some("t-1"));
        assert_eq!(id_of_path("/fhir/Task/_search/x", none), None);
        assert_eq!(id_of_path("/fhir/x/Task/t-1", none), None);
        let vread = Matched::lookup(&Method::GET, Some("/fhir/Task/{id}/_history/{vid}"));
        assert_eq!(id_of_path("/fhir/Task/t-2/_history/3", vread).as_deref(), Some("t-2"));
        assert_eq!(type_of("/fhir/Task/t-2/_history/3", vread).as_deref(), Some("Task"));
        let transaction = Matched::lookup(&Method::POST, Some("/fhir"));
        assert_eq!((id_of_path("/fhir", transaction), type_of("/fhir", transaction)), (None, None));
    }

    #[test]
    fn log_lines_hash_patients_under_the_key_and_name_ids_only_when_asked() {
        let key = b"a secret of the deployment".to_vec();
        let hashed = keyed_hash(&key, "MRN-884421907");
        assert_eq!(hashed.len(), 64);
        assert_eq!(hashed, keyed_hash(&key, "MRN-884421907"), "stable");
        assert_ne!(hashed, keyed_hash(b"another key", "MRN-884421907"), "keyed");
        assert!(!hashed.contains("884421907"));

        let plain = LogLine { key: None, ids: false };
        assert_eq!(plain.entity(Some("Task/MRN-884421907")), "Task");
        assert_eq!(plain.entity(Some("Task")), "Task");
        assert_eq!(plain.entity(Some("Patient/MRN-884421907")), "");
        let with_ids = LogLine { key: None, ids: true };
        assert_eq!(with_ids.entity(Some("Task/t-1")), "Task/t-1");
        assert_eq!(with_ids.entity(Some("Task/not an id")), "Task");
        assert_eq!(with_ids.entity(None), "");
    }

    #[test]
    fn patients_are_read_from_search_parameters_and_locations_name_created_resources() {
        assert_eq!(patient_parameter("patient", "p1").as_deref(), Some("p1"));
        assert_eq!(patient_parameter("patient", "Patient/p1").as_deref(), Some("p1"));
        assert_eq!(patient_parameter("subject:Patient", "Patient/p2,Patient/p3").as_deref(), Some("p2"));
        assert_eq!(patient_parameter("subject", "Group/g"), None);
        assert_eq!(patient_parameter("status", "Patient/p1"), None);
        assert_eq!(created("http://h/fhir/Task/t1/_history/1").as_deref(), Some("Task/t1"));
    }
}
