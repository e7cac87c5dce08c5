//! `GET /openapi.json`: the OpenAPI 3.0 description of the HTTP surface, generated from the same
//! tables as the CapabilityStatement (`ResourceType::ALL`, `search::params::for_type`, the include
//! lists) and from `ApiError`'s status table, so it cannot drift from what the server answers.
//! `careplan openapi` prints it as YAML; `openapi/openapi.yaml` is that output, checked in and
//! kept equal by a test.
//!
//! The operations are the route table's (`routes.rs`): one per route, public when the route is.
//! Each is described by a few builder calls in `operations` or `type_operations`, found by its
//! method and path; a test fails while a route has no description or a description no route.
//! Every status an operation lists is one its handler, extractors or middleware really answer.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use base64::Engine as _;
use domain::search::{params, ParamType, SearchParam};
use domain::ResourceType;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::capabilities;
use crate::error::ApiError;
use crate::responder;
use crate::routes::{self, Method};

/// The version of the OpenAPI Specification the document follows: 3.0 rather than 3.1 because
/// most client generators still read only 3.0.
const OPENAPI: &str = "3.0.3";
/// The media type of every FHIR body this server sends.
const FHIR_JSON: &str = "application/fhir+json";
/// Media types a FHIR request body may be sent as (the server also takes the legacy
/// `application/json+fhir` and `text/json`, left out here).
const REQUEST_TYPES: [&str; 2] = ["application/fhir+json", "application/json"];
/// The FHIR `id` datatype, as `domain::id::is_valid` checks it.
const ID_PATTERN: &str = r"^[A-Za-z0-9\-\.]{1,64}$";
/// The id, time and base URL the examples use.
const EXAMPLE_ID: &str = "example";
const EXAMPLE_INSTANT: &str = "2026-11-24T10:00:00.000Z";
const EXAMPLE_HTTP_DATE: &str = "Tue, 24 Nov 2026 10:00:00 GMT";
const EXAMPLE_BASE: &str = "http://127.0.0.1:8080/fhir";

/// Tags beside one per resource type.
const SYSTEM: &str = "System";
const OPERATIONS: &str = "Operations";
const AUDIT: &str = "AuditEvent";
const EXPORT: &str = "Bulk export";

/// The whole document: one operation per route of the route table (`routes.rs`), public
/// when the route is, described by the entry of `operations` with its method and path.
pub fn document() -> Value {
    let mut described = described();
    let mut paths = Map::new();
    for route in routes::table() {
        let path = route.documented_path();
        let Some(mut operation) = described.remove(&(route.method, path.clone())) else { continue };
        if route.public() {
            operation = operation.public();
        }
        paths.entry(path).or_insert_with(|| json!({}))[route.method.key()] = operation.render();
    }
    json!({
        "openapi": OPENAPI,
        "info": {
            "title": "careplan: FHIR R4 shared care plans",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
            "license": { "name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0" },
        },
        "externalDocs": { "description": "FHIR R4 RESTful API", "url": "http://hl7.org/fhir/R4/http.html" },
        "servers": [{ "url": "/", "description": "This server (the FHIR base is /fhir)" }],
        "tags": tags(),
        "security": [{ "smart": [] }],
        "paths": paths,
        "components": components(),
    })
}

/// The document as JSON text, keys in reading order (what `GET /openapi.json` serves).
pub fn to_json() -> String {
    serde_json::to_string(&Ordered(&document(), Order::Document)).unwrap_or_default()
}

/// The document as YAML, keys in reading order (what `careplan openapi` prints and
/// `openapi/openapi.yaml` holds).
pub fn to_yaml() -> anyhow::Result<String> {
    Ok(quote_for_yaml_1_1(&serde_norway::to_string(&Ordered(&document(), Order::Document))?))
}

/// The document as JSON, built once (`prerender`, or the first request).
static JSON: LazyLock<String> = LazyLock::new(to_json);

/// Build the JSON document now (start-up calls this off the serving path).
pub(crate) fn prerender() {
    LazyLock::force(&JSON);
}

/// The handler for `GET /openapi.json`.
pub(crate) async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(JSON.as_str())
}

const DESCRIPTION: &str = "\
A FHIR R4 (4.0.1) server for **CarePlan, CareTeam and Task**: create, read, vread, update \
(and update-as-create), patch, logical delete, history and search, their conditional forms, and \
transaction and batch Bundles, in JSON.

- Every error is an `OperationOutcome` naming the element or parameter at fault.
- A method a path does not list is answered with 405; a path no operation lists with 404.
- Any request that touches the database may be answered with 503 when the database is \
unreachable or the request outlives the server's time limit.
- `Accept: application/json` and `_format=json` are accepted; responses are always \
`application/fhir+json`. XML is not spoken (406).
- Writes follow the care-coordination rules: the Task workflow (422, and 403 for the acting \
practitioner's role), plan and team consistency (422 when the deployment enforces it) and \
dependants that block deleting a plan or team (409). Each operation lists the ones that apply.
- Search parameters are listed per type; modifiers (`name:modifier`), chains (`ref.param`), \
reverse chains (`_has:Type:ref:param`) and `:iterate` are understood but not listed one by one.
- Every operation but the probes, discovery and this description needs a SMART bearer token \
(the `smart` scheme): 401 without a valid one, 403 when its scopes do not allow the interaction. \
A deployment may switch authorization off for local use (`CAREPLAN_AUTH_DISABLED`).";

fn tags() -> Vec<Value> {
    let mut tags: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|ty| {
            json!({
                "name": ty.as_str(),
                "description": type_description(ty),
                "externalDocs": { "url": format!("http://hl7.org/fhir/R4/{}.html", ty.as_str().to_lowercase()) },
            })
        })
        .collect();
    tags.push(json!({
        "name": SYSTEM,
        "description": "The CapabilityStatement, transaction and batch Bundles, and whole-system history",
    }));
    tags.push(json!({ "name": AUDIT, "description": "The audit trail: one AuditEvent per FHIR request (read-only)" }));
    tags.push(json!({
        "name": EXPORT,
        "description": "FHIR Bulk Data export v2.0: kick-off, status and NDJSON files",
        "externalDocs": { "url": "http://hl7.org/fhir/uv/bulkdata/STU2/export.html" },
    }));
    tags.push(json!({ "name": OPERATIONS, "description": "Health probes and this description" }));
    tags
}

/// The FHIR short definition of a type.
fn type_description(ty: ResourceType) -> &'static str {
    ty.descriptor().docs.description
}

// ---------------------------------------------------------------------------------------------
// Operations: the words for each route of the route table.

/// The description of each route, by method and path (a test holds it equal to the table).
fn described() -> HashMap<(Method, String), Operation> {
    operations().into_iter().map(|operation| ((operation.method, operation.path.clone()), operation)).collect()
}

/// The description of every route, in route-table order.
fn operations() -> Vec<Operation> {
    use StatusCode as S;
    let mut all = vec![
        bundle_operation("/fhir", "transaction", TRANSACTION.to_owned()),
        bundle_operation(
            "/fhir/",
            "transactionTrailingSlash",
            format!(
                "The same interaction as `POST /fhir`, for clients that write the base with a slash.\n\n{TRANSACTION}"
            ),
        ),
        Operation::new(Method::Get, "/fhir/metadata", "capabilities")
            .about(SYSTEM, "The CapabilityStatement")
            .description("What this server supports, derived from the same tables as this document.")
            .fhir()
            .answers(S::OK, fhir_response("The CapabilityStatement", schema_ref("CapabilityStatement"), None)),
        Operation::new(Method::Get, "/fhir/_history", "historySystem")
            .about(SYSTEM, "History of every resource")
            .description(HISTORY)
            .fhir()
            .params(history_params())
            .answers(S::OK, bundle_response("A history Bundle, newest first", history_example()))
            .fails(&[S::BAD_REQUEST])
            .stored(),
    ];
    for ty in ResourceType::ALL {
        all.extend(type_operations(ty));
    }
    all.extend(subscription_operations());
    all.extend(apply_operations());
    all.extend(export_operations());
    all.extend(other_fhir_operations());
    all.extend([
        Operation::new(Method::Get, "/livez", "livez")
            .about(OPERATIONS, "Liveness")
            .description("Answers while the process serves requests.")
            .answers(S::OK, plain_json("The process is alive", schema_ref("Liveness"))),
        Operation::new(Method::Get, "/readyz", "readyz")
            .about(OPERATIONS, "Readiness")
            .description("Ready when the database answers and every migration is applied.")
            .answers(S::OK, plain_json("Ready", schema_ref("Readiness")))
            .answers(S::SERVICE_UNAVAILABLE, plain_json("Not ready", schema_ref("Readiness"))),
        Operation::new(Method::Get, "/metrics", "metrics")
            .about(OPERATIONS, "Metrics")
            .description(
                "Prometheus text exposition: requests (`careplan_http_requests_total`, \
                 `http_server_request_duration_seconds`) by route pattern, method, resource type and \
                 status, and database pool connections (`db_client_connection_count`, \
                 `db_client_connection_max`). No authorization: labels are closed sets, never an id, \
                 a path, a query or a body.",
            )
            .answers(
                S::OK,
                json!({
                    "description": "Every metric, in the Prometheus text format 0.0.4",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }),
            ),
        Operation::new(Method::Get, "/openapi.json", "openapi")
            .about(OPERATIONS, "This OpenAPI description")
            .description("The document Swagger UI at /docs renders.")
            .answers(S::OK, plain_json("The OpenAPI document", json!({ "type": "object" }))),
        Operation::new(Method::Get, "/docs", "docs")
            .about(OPERATIONS, "Swagger UI")
            .description("Redirects to `/docs/`, the page that renders this description.")
            .answers(
                S::PERMANENT_REDIRECT,
                json!({
                    "description": "On to `/docs/`",
                    "headers": { "Location": { "schema": { "type": "string" }, "example": "docs/" } }
                }),
            ),
        Operation::new(Method::Get, "/docs/{file}", "docsAsset")
            .about(OPERATIONS, "Swagger UI's files")
            .description(
                "The page (the empty name) and the scripts and styles it loads, compiled into the server; \
                 304 when `If-None-Match` names the file's ETag.",
            )
            .param(json!({
                "name": "file",
                "in": "path",
                "required": true,
                "description": "The file's name; empty for the page",
                "schema": { "type": "string" },
                "example": "index.html",
            }))
            .param(header_param(
                "If-None-Match",
                "304 if this names the file's ETag",
                "\"3f2a9c41d07e5b68\"",
                json!({ "type": "string" }),
            ))
            .answers(
                S::OK,
                json!({
                    "description": "The file",
                    "content": {
                        "text/html": { "schema": { "type": "string" } },
                        "text/javascript": { "schema": { "type": "string" } },
                        "text/css": { "schema": { "type": "string" } }
                    }
                }),
            )
            .answers(S::NOT_MODIFIED, json!({ "description": "Not modified" }))
            .fails(&[S::NOT_FOUND]),
    ]);
    all
}

/// The operations beside the resource interactions: the plan summary, our SearchParameter
/// definitions, the audit trail and SMART discovery.
fn other_fhir_operations() -> Vec<Operation> {
    use StatusCode as S;
    let object = json!({ "type": "object", "required": ["resourceType"], "properties": { "resourceType": { "type": "string" } } });
    let audit_params = crate::audit::trail::PARAMS.map(|p| {
        let schema = match p.kind {
            "date" => json!({ "type": "string", "example": "ge2026-01-01" }),
            _ => json!({ "type": "string" }),
        };
        QueryParam::new(p.name, p.description, schema)
    });
    let discovery = |path: &str, id: &str| {
        Operation::new(Method::Get, path, id)
            .about(SYSTEM, "SMART configuration")
            .description("SMART App Launch discovery: the authorization endpoints, the scopes and the capabilities, from configuration; 404 when authorization is disabled.")
            .answers(S::OK, plain_json("The SMART configuration", json!({ "type": "object" })))
            .fails(&[S::NOT_FOUND])
    };
    vec![
        Operation::new(Method::Get, "/fhir/CarePlan/{id}/$summary", "summaryCarePlan")
            .about("CarePlan", "The shared plan of care as one Bundle")
            .description(
                "A `collection` Bundle: a generated Composition whose narrative names the team, the open and the \
                 overdue work and the recent changes; then the plan, its CareTeams, the Tasks based on it and their \
                 sub-Tasks, and the Provenance of each, as stored. What the token may not read is left out.",
            )
            .fhir()
            .param(component_param("id"))
            .answers(S::OK, fhir_response("A collection Bundle headed by a Composition", schema_ref("CollectionBundle"), None))
            .fails(&[S::NOT_FOUND, S::GONE])
            .stored(),
        Operation::new(Method::Get, "/fhir/SearchParameter/{id}", "readSearchParameter")
            .about(SYSTEM, "Read a SearchParameter this server defines")
            .description("The definitions of the search parameters the CapabilityStatement lists with this server's own URL (`{Type}-{name}`, e.g. `Task-overdue`).")
            .fhir()
            .param(component_param("id"))
            .answers(S::OK, fhir_response("The SearchParameter", object.clone(), None))
            .fails(&[S::NOT_FOUND]),
        Operation::new(Method::Get, "/fhir/AuditEvent", "searchAuditEvent")
            .about(AUDIT, "Search the audit trail")
            .description("AuditEvents newest first, one per FHIR request, paged with `_count` and the `next` link. Needs an audit scope (`user/AuditEvent.rs` or `system/AuditEvent.rs`).")
            .fhir()
            .params(audit_params.iter().map(QueryParam::parameter))
            .params(["_count", "_cursor"].into_iter().map(component_param))
            .answers(S::OK, fhir_response("A searchset Bundle of AuditEvents", schema_ref("AuditBundle"), None))
            .fails(&[S::BAD_REQUEST])
            .stored(),
        Operation::new(Method::Get, "/fhir/AuditEvent/{id}", "readAuditEvent")
            .about(AUDIT, "Read an AuditEvent")
            .description("One record of the audit trail. Needs an audit scope.")
            .fhir()
            .param(component_param("id"))
            .answers(S::OK, fhir_response("The AuditEvent", object, None))
            .fails(&[S::NOT_FOUND])
            .stored(),
        discovery("/.well-known/smart-configuration", "smartConfiguration"),
        discovery("/fhir/.well-known/smart-configuration", "smartConfigurationUnderBase"),
    ]
}

/// The interactions of one resource type, in route-table order.
fn type_operations(ty: ResourceType) -> Vec<Operation> {
    use StatusCode as S;
    let tag = ty.as_str();
    let base = format!("/fhir/{ty}");
    let instance = format!("{base}/{{id}}");
    let search = search_params(ty);
    let (store_rules, delete_rules) = (rule_statuses(ty, Write::Store), rule_statuses(ty, Write::Delete));
    let patch_rules = rule_statuses(ty, Write::Patch);
    vec![
        Operation::new(Method::Post, &base, format!("create{ty}"))
            .about(tag, format!("Create a {ty}"))
            .description(format!(
                "The server assigns the id (an id in the body is ignored). {CONDITIONAL_CREATE} {} {}{WRITE}",
                checked_by(ty),
                rules_note(ty, Write::Store),
            ))
            .fhir()
            .params([component_param("If-None-Exist"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .body(resource_body(ty, None))
            .answers(S::CREATED, written(ty, "Created"))
            .answers(
                S::OK,
                written(ty, "`If-None-Exist` matched one resource: nothing was written, that resource is the answer"),
            )
            .fails(&[S::BAD_REQUEST, S::PRECONDITION_FAILED, S::PAYLOAD_TOO_LARGE, S::UNSUPPORTED_MEDIA_TYPE])
            .fails(&store_rules)
            .stored(),
        Operation::new(Method::Get, &base, format!("search{ty}"))
            .about(tag, format!("Search {ty}s"))
            .description(SEARCH)
            .fhir()
            .param(component_param("Prefer-handling"))
            .params(search.iter().map(QueryParam::parameter))
            .answers(S::OK, bundle_response("A searchset Bundle: matches, then includes", search_example(ty)))
            .fails(&[S::BAD_REQUEST])
            .stored(),
        Operation::new(Method::Put, &base, format!("conditionalUpdate{ty}"))
            .about(tag, format!("Update the {ty} the criteria match (conditional update)"))
            .description(format!(
                "{} No match: the body is created, under its id if it carries one (201). One match: that {ty} \
                 is updated (200); an id in the body must be the match's (400). Several matches: 412. With \
                 `If-Match`, the write happens only if that is still the current version. {} {}{WRITE}",
                criteria_note(ty),
                checked_by(ty),
                rules_note(ty, Write::Store),
            ))
            .fhir()
            .params(criteria_params(ty))
            .params([component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .body(conditional_body(ty))
            .answers(S::OK, written(ty, "The match, updated"))
            .answers(S::CREATED, written(ty, "Nothing matched: created"))
            .fails(&[
                S::BAD_REQUEST,
                S::METHOD_NOT_ALLOWED,
                S::PRECONDITION_FAILED,
                S::PAYLOAD_TOO_LARGE,
                S::UNSUPPORTED_MEDIA_TYPE,
            ])
            .fails(&store_rules)
            .stored(),
        Operation::new(Method::Patch, &base, format!("conditionalPatch{ty}"))
            .about(tag, format!("Patch the {ty} the criteria match (conditional patch)"))
            .description(format!(
                "{} No match: 404; several: 412. {PATCH} {}{WRITE}",
                criteria_note(ty),
                rules_note(ty, Write::Patch),
            ))
            .fhir()
            .params(criteria_params(ty))
            .params([component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .body(patch_body(ty))
            .answers(S::OK, written(ty, "The match, patched"))
            .fails(&[
                S::BAD_REQUEST,
                S::NOT_FOUND,
                S::METHOD_NOT_ALLOWED,
                S::PRECONDITION_FAILED,
                S::PAYLOAD_TOO_LARGE,
                S::UNSUPPORTED_MEDIA_TYPE,
            ])
            .fails(&patch_rules)
            .stored(),
        Operation::new(Method::Delete, &base, format!("conditionalDelete{ty}"))
            .about(tag, format!("Delete the {ty} the criteria match (conditional delete)"))
            .description(format!(
                "{} Logical delete of the one match; nothing matched is a success that deletes nothing \
                 (204, without version headers). Several matches: 412, unless the deployment sets \
                 `CAREPLAN_MULTIPLE_DELETE`, in which case every match is deleted. {}",
                criteria_note(ty),
                rules_note(ty, Write::Delete),
            ))
            .fhir()
            .params(criteria_params(ty))
            .params(cascade_param(ty))
            .params([component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .answers(S::OK, deleted_outcome(ty, false))
            .answers(
                S::NO_CONTENT,
                json!({ "description": "Deleted, or nothing matched", "headers": deletion_headers(false) }),
            )
            .fails(&[S::BAD_REQUEST, S::METHOD_NOT_ALLOWED, S::PRECONDITION_FAILED])
            .fails(&delete_rules)
            .stored(),
        Operation::new(Method::Post, format!("{base}/_search"), format!("search{ty}Post"))
            .about(tag, format!("Search {ty}s (form)"))
            .description(format!("{SEARCH}\n\nThe parameters come as a form body (and any in the query string)."))
            .fhir()
            .param(component_param("Prefer-handling"))
            .body(form_body(ty, &search))
            .answers(S::OK, bundle_response("A searchset Bundle: matches, then includes", search_example(ty)))
            .fails(&[S::BAD_REQUEST, S::PAYLOAD_TOO_LARGE, S::UNSUPPORTED_MEDIA_TYPE])
            .stored(),
        Operation::new(Method::Get, format!("{base}/_history"), format!("history{ty}"))
            .about(tag, format!("History of every {ty}"))
            .description(HISTORY)
            .fhir()
            .params(history_params())
            .answers(S::OK, bundle_response("A history Bundle, newest first", history_example()))
            .fails(&[S::BAD_REQUEST])
            .stored(),
        Operation::new(Method::Get, &instance, format!("read{ty}"))
            .about(tag, format!("Read a {ty}"))
            .description(
                "The current version. 304 when `If-None-Match` names it or nothing changed since `If-Modified-Since`.",
            )
            .fhir()
            .params([component_param("id"), component_param("If-None-Match"), component_param("If-Modified-Since")])
            .answers(S::OK, resource_response(ty, "The current version"))
            .answers(S::NOT_MODIFIED, json!({ "description": "Not modified", "headers": version_headers(false) }))
            .fails(&[S::NOT_FOUND, S::GONE])
            .stored(),
        Operation::new(Method::Put, &instance, format!("update{ty}"))
            .about(tag, format!("Update a {ty}"))
            .description(format!(
                "Update, or create with the client's id (update-as-create). The body must carry the id of \
                 the URL. With `If-Match`, the write happens only if that is still the current version. {} {}{WRITE}",
                checked_by(ty),
                rules_note(ty, Write::Store),
            ))
            .fhir()
            .params([component_param("id"), component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .body(resource_body(ty, Some(EXAMPLE_ID)))
            .answers(S::OK, written(ty, "Updated"))
            .answers(S::CREATED, written(ty, "Created with the client's id"))
            .fails(&[S::BAD_REQUEST, S::PRECONDITION_FAILED, S::PAYLOAD_TOO_LARGE, S::UNSUPPORTED_MEDIA_TYPE])
            .fails(&store_rules)
            .stored(),
        Operation::new(Method::Patch, &instance, format!("patch{ty}"))
            .about(tag, format!("Patch a {ty}"))
            .description(format!(
                "{PATCH} With `If-Match`, the patch applies only if that is still the current version. {}{WRITE}",
                rules_note(ty, Write::Patch),
            ))
            .fhir()
            .params([component_param("id"), component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .body(patch_body(ty))
            .answers(S::OK, written(ty, "Patched"))
            .fails(&[
                S::BAD_REQUEST,
                S::NOT_FOUND,
                S::GONE,
                S::PRECONDITION_FAILED,
                S::PAYLOAD_TOO_LARGE,
                S::UNSUPPORTED_MEDIA_TYPE,
            ])
            .fails(&patch_rules)
            .stored(),
        Operation::new(Method::Delete, &instance, format!("delete{ty}"))
            .about(tag, format!("Delete a {ty}"))
            .description(format!(
                "Logical delete: history keeps every version and a read answers 410. Deleting a deleted \
                 resource changes nothing. With `If-Match`, only if that is still the current version. {}",
                rules_note(ty, Write::Delete),
            ))
            .fhir()
            .params([component_param("id")])
            .params(cascade_param(ty))
            .params([component_param("If-Match"), component_param("Prefer-return")])
            .params(actor_param(ty))
            .answers(S::OK, deleted_outcome(ty, true))
            .answers(S::NO_CONTENT, json!({ "description": "Deleted", "headers": deletion_headers(true) }))
            .fails(&[S::BAD_REQUEST, S::NOT_FOUND, S::PRECONDITION_FAILED])
            .fails(&delete_rules)
            .stored(),
        Operation::new(Method::Get, format!("{instance}/_history"), format!("history{ty}Instance"))
            .about(tag, format!("History of a {ty}"))
            .description(HISTORY)
            .fhir()
            .param(component_param("id"))
            .params(history_params())
            .answers(S::OK, bundle_response("A history Bundle, newest first", history_example()))
            .fails(&[S::BAD_REQUEST, S::NOT_FOUND])
            .stored(),
        Operation::new(Method::Get, format!("{instance}/_history/{{vid}}"), format!("vread{ty}"))
            .about(tag, format!("Read one version of a {ty}"))
            .description("410 when that version is a deletion.")
            .fhir()
            .params([component_param("id"), component_param("vid")])
            .answers(S::OK, resource_response(ty, "That version"))
            .fails(&[S::NOT_FOUND, S::GONE])
            .stored(),
    ]
}

/// `PlanDefinition/[id]/$apply` (http://hl7.org/fhir/R4/plandefinition-operation-apply.html),
/// by GET with query parameters and by POST with a `Parameters` body.
fn apply_operations() -> Vec<Operation> {
    use StatusCode as S;
    let tag = ResourceType::PlanDefinition.as_str();
    let path = "/fhir/PlanDefinition/{id}/$apply";
    let description = format!(
        "Apply a plan template for one patient and STORE the result, in one transaction through the write engine \
         (the coordination rules, Provenance, audit and subscriptions apply; on any failure nothing is created): a \
         CareTeam skeleton (the roles of the template's participants, no members yet), an active CarePlan \
         (`instantiatesCanonical` = the template's `url|version`, `careTeam` = the new CareTeam, `activity.reference` \
         = each new Task) and one Task per action (leaf actions: groups are walked; code, performer types and timing \
         from the ActivityDefinition each `definitionCanonical` names, found by its `url`; `for` the patient, \
         `basedOn` the plan, status `requested`, intent `order`, due date `restriction.period.end`). The answer is \
         the created CarePlan (201, `Location`). Due dates count from today: `timingDuration`, the first period of \
         `timingTiming`, a `relatedAction` offset from an earlier action; `timingAge` and `timingRange` (ages) count \
         from the patient's birth date (`birthDate` or `age`; an age already passed is due today). Limits: at most \
         {} actions, nested at most {} levels (422 too-costly past them). 404: no such template; 400: a missing or \
         malformed parameter (the OperationOutcome's `expression` names it); 422: an action whose definition is \
         stored nowhere here, or a template that cannot be applied. Needs read on PlanDefinition and \
         ActivityDefinition and create on CareTeam, CarePlan and Task; a patient token only for its own patient.",
        domain::plan_apply::MAX_ACTIONS,
        domain::plan_apply::MAX_ACTION_DEPTH,
    );
    let query = |name: &str, required: bool, description: &str, example: &str| {
        json!({ "name": name, "in": "query", "required": required, "description": description,
                "schema": { "type": "string" }, "example": example })
    };
    let parameters_body = json!({
        "required": true,
        "content": { FHIR_JSON: {
            "schema": { "type": "object", "required": ["resourceType"], "properties": {
                "resourceType": { "type": "string", "enum": ["Parameters"] },
                "parameter": { "type": "array", "items": { "type": "object", "required": ["name"] } },
            }},
            "example": {
                "resourceType": "Parameters",
                "parameter": [
                    { "name": "subject", "valueString": "Patient/example" },
                    { "name": "practitioner", "valueString": "Practitioner/example" },
                    { "name": "birthDate", "valueDate": "2011-04-02" },
                ],
            },
        }},
    });
    let created =
        || written(ResourceType::CarePlan, "The created CarePlan, which references the CareTeam and the Tasks");
    vec![
        Operation::new(Method::Get, path, "applyPlanDefinition")
            .about(tag, "Apply a plan template for a patient ($apply)")
            .description(description.clone())
            .fhir()
            .param(component_param("id"))
            .params([
                query("subject", true, "The patient: `Patient/[id]` (exactly one)", "Patient/example"),
                query("practitioner", false, "Who applies it (`Practitioner/[id]` or `PractitionerRole/[id]`): the Tasks' requester and the plan's author", "Practitioner/example"),
                query("organization", false, "`Organization/[id]`: the team's managing organization (and requester without a practitioner)", "Organization/example"),
                query("birthDate", false, "This server's own: the patient's birth date, for steps timed by age", "2011-04-02"),
                query("age", false, "This server's own: the patient's age in whole years (instead of birthDate)", "15"),
            ])
            .param(component_param("Prefer-return"))
            .answers(S::CREATED, created())
            .fails(&[S::BAD_REQUEST, S::NOT_FOUND, S::GONE, S::UNPROCESSABLE_ENTITY])
            .stored(),
        Operation::new(Method::Post, path, "applyPlanDefinitionPost")
            .about(tag, "Apply a plan template for a patient ($apply, Parameters)")
            .description(format!(
                "{description} The parameters as a `Parameters` resource: `subject`, `practitioner`, `organization` \
                 (valueString or valueReference), `birthDate` (valueDate), `age` (valueInteger)."
            ))
            .fhir()
            .param(component_param("id"))
            .param(component_param("Prefer-return"))
            .body(parameters_body)
            .answers(S::CREATED, created())
            .fails(&[
                S::BAD_REQUEST,
                S::NOT_FOUND,
                S::GONE,
                S::UNPROCESSABLE_ENTITY,
                S::PAYLOAD_TOO_LARGE,
                S::UNSUPPORTED_MEDIA_TYPE,
            ])
            .stored(),
    ]
}

/// `$status`, `$events` and the topics (Subscriptions Backport IG 1.1.0).
fn subscription_operations() -> Vec<Operation> {
    use StatusCode as S;
    let tag = ResourceType::Subscription.as_str();
    let bundle = |kind: &str| json!({ "type": "object", "required": ["resourceType", "type"], "description": kind });
    let example_status = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{ "resource": {
            "resourceType": "Parameters",
            "meta": { "profile": [domain::subscriptions::STATUS_PROFILE] },
            "parameter": [
                { "name": "subscription", "valueReference": { "reference": format!("{EXAMPLE_BASE}/Subscription/{EXAMPLE_ID}") } },
                { "name": "topic", "valueCanonical": "http://careplan.example/fhir/SubscriptionTopic/task-change" },
                { "name": "status", "valueCode": "active" },
                { "name": "type", "valueCode": "query-status" },
                { "name": "events-since-subscription-start", "valueString": "3" },
            ],
        }}],
    });
    let topic = domain::subscriptions::Topic::by_id("task-change").map(|t| t.resource()).unwrap_or_default();
    vec![
        Operation::new(Method::Get, "/fhir/Subscription/{id}/$status", "subscriptionStatus")
            .about(tag, "The status of a Subscription ($status)")
            .description(
                "A searchset Bundle holding one `Parameters` (backport-subscription-status-r4, type `query-status`): \
                 the status and `events-since-subscription-start`. The Subscription must be readable with the token.",
            )
            .fhir()
            .param(component_param("id"))
            .answers(
                S::OK,
                fhir_response("The status", bundle("A searchset Bundle of status Parameters"), Some(example_status)),
            )
            .fails(&[S::NOT_FOUND, S::GONE])
            .stored(),
        Operation::new(Method::Get, "/fhir/Subscription/{id}/$events", "subscriptionEvents")
            .about(tag, "Past events of a Subscription ($events)")
            .description(
                "The events numbered `eventsSinceNumber` to `eventsUntilNumber` (default: all, at most 1000) as a \
                 notification Bundle (type `history`, headed by the status Parameters of type `query-event`). \
                 `content` asks for `empty`, `id-only` or `full-resource`; full resources are only those the \
                 token may read.",
            )
            .fhir()
            .param(component_param("id"))
            .params(
                [
                    QueryParam::new(
                        "eventsSinceNumber",
                        "The first event number (inclusive)",
                        json!({ "type": "string" }),
                    ),
                    QueryParam::new(
                        "eventsUntilNumber",
                        "The last event number (inclusive)",
                        json!({ "type": "string" }),
                    ),
                    QueryParam::new(
                        "content",
                        "How much of each focus to include",
                        code(&["empty", "id-only", "full-resource"]),
                    ),
                ]
                .iter()
                .map(QueryParam::parameter),
            )
            .answers(
                S::OK,
                fhir_response("The events", bundle("A history Bundle: status Parameters, then focus entries"), None),
            )
            .fails(&[S::BAD_REQUEST, S::NOT_FOUND, S::GONE])
            .stored(),
        Operation::new(Method::Get, "/fhir/SubscriptionTopic", "searchSubscriptionTopic")
            .about(tag, "The topics one may subscribe to")
            .description(
                "The built-in topics, in the R4B SubscriptionTopic shape: what fires each and the parameters it \
                 can be filtered by (`canFilterBy`). `url` selects one by its canonical URL.",
            )
            .fhir()
            .params([QueryParam::new("url", "The topic's canonical URL", json!({ "type": "string" })).parameter()])
            .answers(S::OK, fhir_response("The topics", bundle("A searchset Bundle of SubscriptionTopics"), None)),
        Operation::new(Method::Get, "/fhir/SubscriptionTopic/{id}", "readSubscriptionTopic")
            .about(tag, "Read a topic")
            .description("One built-in topic in the R4B SubscriptionTopic shape.")
            .fhir()
            .param(component_param("id"))
            .answers(S::OK, fhir_response("The topic", json!({ "type": "object" }), Some(topic)))
            .fails(&[S::NOT_FOUND]),
    ]
}

/// Bulk export (FHIR Bulk Data Access v2.0): the kick-off at system level and for each
/// exported type, the status URL and the files.
fn export_operations() -> Vec<Operation> {
    use StatusCode as S;
    let params = [
        QueryParam::new(
            "_outputFormat",
            "The format of the files: NDJSON (the default; `application/fhir+ndjson`, `application/ndjson` or `ndjson`)",
            code(&["application/fhir+ndjson", "application/ndjson", "ndjson"]),
        ),
        QueryParam::new(
            "_type",
            "The types to export, comma-separated (default: every exported type the token may search)",
            json!({ "type": "string", "example": "CarePlan,Task" }),
        ),
        QueryParam::new(
            "_since",
            "Only resources last updated at or after this FHIR instant",
            json!({ "type": "string", "format": "date-time", "example": EXAMPLE_INSTANT }),
        ),
        QueryParam::new(
            "_typeFilter",
            "`Type?search`: only the resources of that type matching the search (criteria only; one per type)",
            json!({ "type": "string", "example": "Task?status=requested" }),
        ),
    ];
    let prefer = header_param(
        "Prefer",
        "Must be `respond-async`: the export runs in the background",
        "respond-async",
        json!({ "type": "string", "enum": ["respond-async"] }),
    );
    let accepted = json!({
        "description": "Kicked off: poll the status URL in `Content-Location`",
        "headers": { "Content-Location": { "schema": { "type": "string" }, "example": format!("{EXAMPLE_BASE}/$export-status/0f3a") } },
    });
    let body = |types: &str| {
        json!({
            "required": true,
            "content": { FHIR_JSON: {
                "schema": { "type": "object", "description": "A Parameters resource with the kick-off parameters (valueString, valueCode or valueInstant)" },
                "example": { "resourceType": "Parameters", "parameter": [{ "name": "_type", "valueString": types }] },
            } },
        })
    };
    let description = format!(
        "FHIR Bulk Data export v2.0 ({}). Needs `Prefer: respond-async`; answers 202 with the status URL. The files \
         hold each resource's stored text, one per line, up to `CAREPLAN_EXPORT_MAX_LINES_PER_FILE` lines per file, \
         kept `CAREPLAN_EXPORT_RETENTION_SECS` after the job finishes. A patient token exports its compartment only; \
         a client may run `CAREPLAN_EXPORT_MAX_JOBS_PER_CLIENT` jobs at once (429 past it). Parameters: {}.",
        crate::export::DEFINITION,
        params.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ")
    );
    let kick_off = |method: Method, path: &str, id: String, tag: &str, summary: String, types: &str| {
        let operation = Operation::new(method, path, id)
            .about(tag, summary)
            .description(description.clone())
            .param(prefer.clone())
            .answers(S::ACCEPTED, accepted.clone())
            .fails(&[S::BAD_REQUEST, S::TOO_MANY_REQUESTS])
            .stored();
        match method {
            Method::Post => operation.body(body(types)).fails(&[S::PAYLOAD_TOO_LARGE, S::UNSUPPORTED_MEDIA_TYPE]),
            _ => operation.params(params.iter().map(QueryParam::parameter)),
        }
    };
    let mut all = vec![
        kick_off(Method::Get, "/fhir/$export", "export".into(), EXPORT, "Kick off a system-level export".into(), ""),
        kick_off(
            Method::Post,
            "/fhir/$export",
            "exportPost".into(),
            EXPORT,
            "Kick off a system-level export (Parameters)".into(),
            "CarePlan,Task",
        ),
    ];
    for ty in ResourceType::ALL.into_iter().filter(|t| t.exportable()) {
        let path = format!("/fhir/{ty}/$export");
        all.push(kick_off(
            Method::Get,
            &path,
            format!("export{ty}"),
            ty.as_str(),
            format!("Kick off an export of every {ty}"),
            "",
        ));
        all.push(kick_off(
            Method::Post,
            &path,
            format!("export{ty}Post"),
            ty.as_str(),
            format!("Kick off an export of every {ty} (Parameters)"),
            ty.as_str(),
        ));
    }
    let job = json!({ "name": "id", "in": "path", "required": true, "description": "The export job", "schema": { "type": "string" } });
    let manifest = json!({
        "type": "object",
        "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
        "properties": {
            "transactionTime": { "type": "string", "format": "date-time" },
            "request": { "type": "string" },
            "requiresAccessToken": { "type": "boolean" },
            "output": { "type": "array", "items": { "type": "object", "properties": {
                "type": { "type": "string" }, "url": { "type": "string" }, "count": { "type": "integer" } } } },
            "error": { "type": "array", "items": { "type": "object" } },
        },
    });
    all.extend([
        Operation::new(Method::Get, "/fhir/$export-status/{id}", "exportStatus")
            .about(EXPORT, "The status of an export")
            .description("202 with `X-Progress` and `Retry-After` while the job runs; 200 with the manifest (the files' URLs and counts) when done; 500 with an OperationOutcome if it failed. Only the client that kicked it off sees it (404 to any other).")
            .param(job.clone())
            .answers(S::ACCEPTED, json!({ "description": "Still running", "headers": {
                "X-Progress": { "schema": { "type": "string" }, "example": "1500 resources exported" },
                "Retry-After": { "schema": { "type": "integer" }, "example": 1 } } }))
            .answers(S::OK, json!({ "description": "The manifest", "content": { "application/json": { "schema": manifest } } }))
            .fails(&[S::NOT_FOUND])
            .stored(),
        Operation::new(Method::Delete, "/fhir/$export-status/{id}", "exportCancel")
            .about(EXPORT, "Cancel an export")
            .description("Stops the job (it writes nothing more) and deletes its files; the status URL is 404 after.")
            .param(job.clone())
            .answers(S::ACCEPTED, json!({ "description": "Cancelled and deleted" }))
            .fails(&[S::NOT_FOUND])
            .stored(),
        Operation::new(Method::Get, "/fhir/$export-file/{id}/{file}", "exportFile")
            .about(EXPORT, "One file of a finished export")
            .description("NDJSON: one resource per line, as stored. Needs the token of the client that kicked the export off.")
            .param(job)
            .param(json!({ "name": "file", "in": "path", "required": true, "description": "The file's number, as the manifest names it", "schema": { "type": "string" } }))
            .answers(S::OK, json!({ "description": "The file", "content": { "application/fhir+ndjson": { "schema": { "type": "string" } } } }))
            .fails(&[S::NOT_FOUND])
            .stored(),
    ]);
    all
}

/// `POST [base]` (and `[base]/`): a transaction or batch Bundle.
fn bundle_operation(path: &str, operation_id: &str, description: String) -> Operation {
    use StatusCode as S;
    Operation::new(Method::Post, path, operation_id)
        .about(SYSTEM, "Transaction or batch Bundle")
        .description(description)
        .fhir()
        .params([component_param("Prefer-return"), component_param("X-Careplan-Actor")])
        .body(transaction_body())
        .answers(S::OK, transaction_response())
        .fails(&[
            S::BAD_REQUEST,
            S::FORBIDDEN,
            S::NOT_FOUND,
            S::CONFLICT,
            S::GONE,
            S::PRECONDITION_FAILED,
            S::PAYLOAD_TOO_LARGE,
            S::UNSUPPORTED_MEDIA_TYPE,
            S::UNPROCESSABLE_ENTITY,
        ])
        .stored()
}

const TRANSACTION: &str = "A `transaction` Bundle is all or nothing: its entries are carried out in one database \
transaction, in the order FHIR prescribes (DELETE, POST, PUT and PATCH, then GET). `urn:uuid:` and `urn:oid:` \
fullUrls, and conditional references such as `CareTeam?identifier=system|value`, are rewritten to the resources \
they land on, in every entry. `request.ifNoneExist`, `ifMatch`, `ifNoneMatch` and `ifModifiedSince` are honoured; \
conditional entries are decided inside the transaction, under a lock on their criteria. **A failing entry fails \
the whole Bundle**: nothing is written, and the answer has that entry's status (400, 403, 404, 409, 410, 412 or \
422) and an OperationOutcome naming `Bundle.entry[i]`.\n\n\
A `batch` Bundle carries out each entry on its own: the answer is 200, with each entry's status in \
`response.status` and a failed entry's OperationOutcome in `response.outcome`.\n\n\
A PATCH entry carries a `Parameters` resource (FHIRPath Patch) or a `Binary` whose `contentType` is \
`application/json-patch+json` and whose `data` is the JSON Patch in base64. A GET entry reads, vreads or searches \
(`Task?status=requested`). Every write follows the same rules as on its own (the Task workflow, consistency, \
dependants). A Bundle holds at most `CAREPLAN_MAX_BUNDLE_ENTRIES` entries (default 1000; more: 400 \
`too-costly`); elements Bundle does not define are refused (400). `Prefer: return=minimal` and \
`return=OperationOutcome` leave the resources out of the response entries; the latter adds an OperationOutcome to \
delete entries. Consistency warnings (`CAREPLAN_REFERENCE_RULES=warn`) come in `response.outcome`.";

const CONDITIONAL_CREATE: &str = "With `If-None-Exist`, a conditional create: when one resource matches those \
criteria it is the answer (200) and nothing is written; when several do, 412.";

const PATCH: &str = "The body is a JSON Patch (RFC 6902, `application/json-patch+json`) or a FHIRPath Patch \
`Parameters` resource (`application/fhir+json`). A patch document that is malformed, or that would change `id`, \
`resourceType` or `meta.versionId`/`meta.lastUpdated`, is refused with 400, as is a patch whose result is not a \
valid resource; a well-formed patch that does not apply to this resource (a path that matches nothing, a failed \
`test`) with 422.";

const WRITE: &str = "`Prefer: return=minimal` answers with no body, `return=OperationOutcome` with an \
OperationOutcome; the default is the stored resource.";

const HISTORY: &str = "Newest first, paged with `_count` and the `next` link (`_cursor`).";

const SEARCH: &str = "Parameters combine with AND; comma-separated values of one parameter with OR. \
Unknown parameters are ignored and named in an OperationOutcome entry of the Bundle, or refused \
with 400 under `Prefer: handling=strict`. Paging follows the `next` link (`_cursor`). A search \
costlier than the deployment's limits (by default: chains and `_has` of more than 4 links, more \
than 64 parameters, 100 values in one or 1,000 in all, 16 KiB of parameters) is refused with 400 \
`too-costly` naming the limit; one that runs past the statement timeout answers 503.";

/// What a write does, as far as the care-coordination rules are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// Create or update (PUT, POST).
    Store,
    /// PATCH: an update whose patch may also not apply (422).
    Patch,
    Delete,
}

/// The statuses the care-coordination rules (`coordination.rs`) can answer a write of `ty` with,
/// from the type's descriptor.
fn rule_statuses(ty: ResourceType, write: Write) -> Vec<StatusCode> {
    use StatusCode as S;
    let descriptor = ty.descriptor();
    let rules = descriptor.rules;
    match write {
        // A change rule (the Task workflow): 422 for a change no one may make, 403 for one the
        // actor may not. A Subscription's topic needs a read scope (403); topic, filters,
        // channel and endpoint (422).
        Write::Store if rules.change.is_some() || rules.subscription => vec![S::FORBIDDEN, S::UNPROCESSABLE_ENTITY],
        Write::Patch if rules.change.is_some() => vec![S::FORBIDDEN, S::UNPROCESSABLE_ENTITY],
        // Plan consistency (the type's descriptor names its checked references), when enforced;
        // and any patch that does not apply.
        Write::Store if !descriptor.references.is_empty() => vec![S::UNPROCESSABLE_ENTITY],
        Write::Patch => vec![S::UNPROCESSABLE_ENTITY],
        // Open Tasks depend on plans and teams.
        Write::Delete if !rules.dependants.is_empty() => vec![S::CONFLICT],
        _ => Vec::new(),
    }
}

/// The rules behind `rule_statuses`, in words (ends with a space when not empty): the type's
/// own (`Docs::write_rules`, `Docs::delete_rules`).
fn rules_note(ty: ResourceType, write: Write) -> String {
    let docs = &ty.descriptor().docs;
    let note = if write == Write::Delete { docs.delete_rules } else { docs.write_rules };
    if note.is_empty() {
        String::new()
    } else {
        format!("{note} ")
    }
}

/// How the criteria of a conditional interaction are given.
fn criteria_note(ty: ResourceType) -> String {
    format!(
        "The criteria are {ty} search parameters in the query string, as in a search; **at least one is \
         required** (without criteria the answer is 405; `_format` and `_pretty` are not criteria). They \
         are read strictly: a parameter {ty} does not have is refused (400), never ignored."
    )
}

fn checked_by(ty: ResourceType) -> String {
    format!(
        "The body is checked against the FHIR R4 {ty} structure and codes; an element the server does not \
         know is refused (400), never dropped."
    )
}

/// One operation of the route table, built up call by call.
struct Operation {
    method: Method,
    path: String,
    /// Served without a token (probes, discovery, this description).
    public: bool,
    object: Map<String, Value>,
    parameters: Vec<Value>,
    responses: Map<String, Value>,
}

impl Operation {
    fn new(method: Method, path: impl Into<String>, operation_id: impl Into<String>) -> Self {
        let mut object = Map::new();
        object.insert("operationId".into(), Value::String(operation_id.into()));
        Self { method, path: path.into(), public: false, object, parameters: Vec::new(), responses: Map::new() }
    }

    /// Served without a token.
    fn public(mut self) -> Self {
        self.public = true;
        self.object.insert("security".into(), json!([]));
        self
    }

    /// The group it is listed under and what it does, in a few words.
    fn about(mut self, tag: &str, summary: impl Into<String>) -> Self {
        self.object.insert("tags".into(), json!([tag]));
        self.object.insert("summary".into(), Value::String(summary.into()));
        self
    }

    fn description(mut self, text: impl Into<String>) -> Self {
        self.object.insert("description".into(), Value::String(text.into()));
        self
    }

    fn param(mut self, parameter: Value) -> Self {
        self.parameters.push(parameter);
        self
    }

    fn params(mut self, parameters: impl IntoIterator<Item = Value>) -> Self {
        self.parameters.extend(parameters);
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.object.insert("requestBody".into(), body);
        self
    }

    fn answers(mut self, status: StatusCode, response: Value) -> Self {
        self.responses.insert(status.as_str().to_owned(), response);
        self
    }

    /// Error answers, each a shared response of `components/responses`.
    fn fails(mut self, statuses: &[StatusCode]) -> Self {
        for status in statuses {
            self.responses.insert(status.as_str().to_owned(), component_ref("responses", &error_name(*status)));
        }
        self
    }

    /// A FHIR interaction: `_format` and `_pretty`, and 406 for a format the server does not speak.
    fn fhir(self) -> Self {
        self.params([component_param("_format"), component_param("_pretty")]).fails(&[StatusCode::NOT_ACCEPTABLE])
    }

    /// Reaches the database: 500 when it fails, 503 when it is unreachable or the request outlives
    /// the time limit.
    fn stored(self) -> Self {
        self.fails(&[StatusCode::INTERNAL_SERVER_ERROR, StatusCode::SERVICE_UNAVAILABLE])
    }

    fn render(mut self) -> Value {
        // Every request passes the URL check (no control characters: 400), the header limit and
        // the rate limit (when configured); every protected one, the token check.
        let mut statuses =
            vec![StatusCode::BAD_REQUEST, StatusCode::TOO_MANY_REQUESTS, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE];
        if !self.public {
            statuses.extend([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]);
        }
        for status in statuses {
            self.responses
                .entry(status.as_str().to_owned())
                .or_insert_with(|| component_ref("responses", &error_name(status)));
        }
        if !self.parameters.is_empty() {
            self.object.insert("parameters".into(), Value::Array(self.parameters));
        }
        self.object.insert("responses".into(), Value::Object(self.responses));
        Value::Object(self.object)
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters.

/// A query parameter: a Parameter Object of a GET, or a property of the form body of
/// `POST [type]/_search`.
struct QueryParam {
    name: String,
    description: String,
    schema: Value,
}

impl QueryParam {
    fn new(name: impl Into<String>, description: impl Into<String>, schema: Value) -> Self {
        Self { name: name.into(), description: description.into(), schema }
    }

    fn parameter(&self) -> Value {
        json!({ "name": self.name, "in": "query", "description": self.description, "schema": self.schema })
    }

    fn property(&self) -> Value {
        let mut property = self.schema.clone();
        property["description"] = Value::String(self.description.clone());
        property
    }
}

/// The parameters shared by many operations, kept once under `components/parameters`.
fn shared_params() -> Vec<(&'static str, Value)> {
    let mut shared: Vec<(&'static str, Value)> = vec![
        (
            "id",
            json!({
                "name": "id", "in": "path", "required": true,
                "description": "Logical id: 1 to 64 of A-Z, a-z, 0-9, '-' and '.'",
                "schema": { "type": "string", "pattern": ID_PATTERN },
                "example": EXAMPLE_ID,
            }),
        ),
        (
            "vid",
            json!({
                "name": "vid", "in": "path", "required": true,
                "description": "Version id, as in `meta.versionId` and the ETag",
                "schema": { "type": "integer", "minimum": 1 },
                "example": 1,
            }),
        ),
        (
            "If-Match",
            header_param(
                "If-Match",
                "Write only if this is the current version (`W/\"n\"`, `\"n\"` or `n`); 412 otherwise, 400 if malformed",
                "W/\"1\"",
                json!({ "type": "string" }),
            ),
        ),
        (
            "If-None-Match",
            header_param(
                "If-None-Match",
                "304 if this (or `*`) names the current version",
                "W/\"1\"",
                json!({ "type": "string" }),
            ),
        ),
        (
            "If-Modified-Since",
            header_param(
                "If-Modified-Since",
                "304 if the resource has not changed since (ignored with If-None-Match)",
                EXAMPLE_HTTP_DATE,
                json!({ "type": "string" }),
            ),
        ),
        (
            "If-None-Exist",
            header_param(
                "If-None-Exist",
                "Conditional create: search criteria (a query string without `?`, at least one search parameter of \
                 the type, read strictly). One match: it is the answer (200) and nothing is written; several: 412; \
                 none: the body is created",
                "identifier=http://ehr.example/task|T-1",
                json!({ "type": "string" }),
            ),
        ),
        (
            "X-Careplan-Actor",
            header_param(
                "X-Careplan-Actor",
                "Development only, and only when the deployment names this header in `CAREPLAN_ACTOR_HEADER` \
                 (otherwise it is ignored): the acting practitioner (`Practitioner/[id]`) for the Task role rules \
                 (403) and as the agent of the Provenance recorded for the change. Until SMART tokens carry \
                 `fhirUser`; trusted gateways only",
                "Practitioner/example",
                json!({ "type": "string" }),
            ),
        ),
        (
            "Prefer-return",
            header_param(
                "Prefer",
                "What a write answers with: the resource (default), nothing, or an OperationOutcome",
                "return=representation",
                json!({ "type": "string", "enum": ["return=representation", "return=minimal", "return=OperationOutcome"] }),
            ),
        ),
        (
            "Prefer-handling",
            header_param(
                "Prefer",
                "`handling=strict` refuses unknown search parameters (400); the default is lenient",
                "handling=strict",
                json!({ "type": "string", "enum": ["handling=lenient", "handling=strict"] }),
            ),
        ),
    ];
    shared.extend(result_params().into_iter().map(|(key, p)| (key, p.parameter())));
    shared
}

fn header_param(name: &str, description: &str, example: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "header", "description": description, "schema": schema, "example": example })
}

/// Result and rendering parameters common to every type (http://hl7.org/fhir/R4/search.html#Summary).
fn result_params() -> Vec<(&'static str, QueryParam)> {
    vec![
        (
            "_format",
            QueryParam::new(
                "_format",
                "Response format; anything but JSON is refused with 406. Overrides Accept.",
                json!({ "type": "string", "enum": ["json", "application/json", "application/fhir+json"] }),
            ),
        ),
        ("_pretty", QueryParam::new("_pretty", "Indent the JSON", json!({ "type": "boolean" }))),
        (
            "_count",
            QueryParam::new(
                "_count",
                "Page size (the server's default and cap apply; 0 answers only the total)",
                json!({ "type": "integer", "minimum": 0 }),
            ),
        ),
        (
            "_since",
            QueryParam::new(
                "_since",
                "Only versions written after this instant",
                json!({ "type": "string", "example": "2026-01-01T00:00:00Z" }),
            ),
        ),
        (
            "_cursor",
            QueryParam::new(
                "_cursor",
                "Opaque paging position: follow the Bundle's `next` link rather than building it",
                json!({ "type": "string" }),
            ),
        ),
        (
            "_total",
            QueryParam::new(
                "_total",
                "Whether Bundle.total is given (default accurate)",
                json!({ "type": "string", "enum": ["none", "estimate", "accurate"] }),
            ),
        ),
        (
            "_summary",
            QueryParam::new(
                "_summary",
                "Return only the summary elements (`true`), no text (`data`), only text (`text`) or only the count",
                json!({ "type": "string", "enum": ["true", "false", "count", "data", "text"] }),
            ),
        ),
        (
            "_elements",
            QueryParam::new(
                "_elements",
                "Comma-separated top-level elements to return (the resources are tagged SUBSETTED)",
                json!({ "type": "string" }),
            ),
        ),
    ]
}

fn component_param(name: &str) -> Value {
    component_ref("parameters", name)
}

fn history_params() -> Vec<Value> {
    ["_count", "_since", "_cursor"].into_iter().map(component_param).collect()
}

/// Every search parameter of `ty` (from its table) and the result parameters, in the order the
/// GET lists them and the form body holds them.
fn search_params(ty: ResourceType) -> Vec<QueryParam> {
    let filters = params::for_type(ty)
        .iter()
        .map(|p| QueryParam::new(p.name, filter_description(ty, p), json!({ "type": "string" })));
    let results = result_params()
        .into_iter()
        .filter(|(key, _)| !matches!(*key, "_format" | "_pretty" | "_since"))
        .map(|(_, p)| p);
    let sortable: Vec<&str> = ["_id", "_lastUpdated"]
        .into_iter()
        .chain(
            params::for_type(ty)
                .iter()
                .filter(|p| p.kind != ParamType::Reference && !matches!(p.name, "_id" | "_lastUpdated"))
                .map(|p| p.name),
        )
        .collect();
    let sort = QueryParam::new(
        "_sort",
        format!("Comma-separated sort keys, each optionally prefixed with `-` for descending: {}", sortable.join(", ")),
        json!({ "type": "string" }),
    );
    let include = QueryParam::new(
        "_include",
        "Also return the resources these references point at (`Type:param[:Target]`, or `*`)",
        json!({ "type": "array", "items": { "type": "string", "enum": capabilities::search_includes(ty) } }),
    );
    let revinclude = QueryParam::new(
        "_revinclude",
        format!("Also return the resources that point at the matches (`Type:param`) whose references can name a {ty}"),
        json!({ "type": "array", "items": { "type": "string", "enum": capabilities::rev_includes(ty) } }),
    );
    filters.chain(results).chain([sort, include, revinclude]).collect()
}

/// The criteria of a conditional update, patch or delete: the filter parameters of `ty`, from the
/// same table as its search (the result parameters select nothing and are not criteria). One
/// carries an example that matches the conditional body's example.
fn criteria_params(ty: ResourceType) -> Vec<Value> {
    let (example_name, example_value) = criteria_example(ty);
    params::for_type(ty)
        .iter()
        .map(|p| {
            let mut parameter =
                QueryParam::new(p.name, filter_description(ty, p), json!({ "type": "string" })).parameter();
            if p.name == example_name {
                parameter["example"] = json!(example_value);
            }
            parameter
        })
        .collect()
}

/// The criteria the examples of the conditional interactions use.
fn criteria_example(ty: ResourceType) -> (&'static str, String) {
    if has_identifier(ty) {
        ("identifier", format!("{}|{}", example_identifier_system(ty), CONDITIONAL_VALUE))
    } else {
        ("_id", EXAMPLE_ID.to_owned())
    }
}

/// Whether the type is searched by `identifier` (business identifiers make the criteria of
/// the conditional examples; the others use `_id`).
fn has_identifier(ty: ResourceType) -> bool {
    ty.descriptor().params.iter().any(|p| p.name == "identifier")
}

const CONDITIONAL_VALUE: &str = "C-1";

fn example_identifier_system(ty: ResourceType) -> String {
    format!("http://ehr.example/{}", ty.as_str().to_lowercase())
}

/// `_cascade=delete` on deletes of the types open Tasks depend on.
fn cascade_param(ty: ResourceType) -> Vec<Value> {
    if ty.descriptor().rules.dependants.is_empty() {
        return Vec::new();
    }
    let parameter = QueryParam::new(
        "_cascade",
        format!(
            "`delete`: also delete the open Tasks that depend on this {ty}, in the same transaction (without it, \
             such a delete is refused with 409)"
        ),
        json!({ "type": "string", "enum": ["delete"] }),
    );
    vec![parameter.parameter()]
}

/// The development actor header, on writes of the types whose changes it can affect (the Task
/// role rules; the agent of the Provenance recorded for a CarePlan, CareTeam or Task).
fn actor_param(ty: ResourceType) -> Vec<Value> {
    let rules = ty.descriptor().rules;
    if rules.provenance || rules.change.is_some() {
        vec![component_param("X-Careplan-Actor")]
    } else {
        Vec::new()
    }
}

/// What a filter parameter matches and how its values are written.
fn filter_description(ty: ResourceType, p: &SearchParam) -> String {
    let syntax = match p.kind {
        _ if p.name == "_id" => "one or more ids".to_owned(),
        _ if matches!(p.shape, domain::search::Shape::Computed(_)) => {
            "`true` or `false`, computed when the search runs; no modifiers".to_owned()
        }
        ParamType::Token => "token: `[system]|[code]`, `|[code]` or `[system]|`; modifiers `:not`, `:text`, \
                             `:of-type` (identifiers) and `:missing`"
            .to_owned(),
        ParamType::Reference => {
            let targets = if p.targets.is_empty() { "any type".to_owned() } else { p.targets.join(", ") };
            let chainable: Vec<&str> = ResourceType::ALL
                .into_iter()
                .filter(|t| p.targets.is_empty() || p.targets.contains(&t.as_str()))
                .map(ResourceType::as_str)
                .collect();
            let chain = match chainable.as_slice() {
                [] => String::new(),
                [one] => format!("; chain with `{}.[param]` ({one})", p.name),
                _ => format!("; chain with `{}:[Type].[param]` ({})", p.name, chainable.join(", ")),
            };
            format!(
                "reference to {targets}: `[Type/]id` or an absolute URL; modifiers `:[Type]`, `:identifier` \
                 (`system|value`) and `:missing`{chain}"
            )
        }
        ParamType::Date => "date: a FHIR date, dateTime or instant, optionally prefixed with eq, ne, gt, lt, ge, \
                            le, sa, eb or ap; modifier `:missing`"
            .to_owned(),
        ParamType::String => {
            "string: values starting with the text; modifiers `:exact`, `:contains` and `:missing`".to_owned()
        }
        ParamType::Uri => "uri: the exact URI; modifiers `:above`, `:below` and `:missing`".to_owned(),
    };
    let expression = p.expression.replace("Resource.", &format!("{ty}."));
    format!("{}. Matches `{expression}`; {syntax}.", p.description)
}

// ---------------------------------------------------------------------------------------------
// Bodies and responses.

fn resource_body(ty: ResourceType, id: Option<&str>) -> Value {
    let mut example = example_resource(ty);
    if let Some(id) = id {
        example["id"] = json!(id);
    }
    let media = json!({ "schema": schema_ref(ty.as_str()), "example": example });
    let content: Map<String, Value> = REQUEST_TYPES.iter().map(|t| ((*t).to_owned(), media.clone())).collect();
    json!({ "required": true, "description": format!("A {ty} in FHIR JSON"), "content": content })
}

/// The body of a conditional update: the example, carrying the identifier its criteria look for.
fn conditional_body(ty: ResourceType) -> Value {
    let mut body = resource_body(ty, None);
    let example = conditional_example(ty);
    for media in body["content"].as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
        media["example"] = example.clone();
    }
    body
}

fn conditional_example(ty: ResourceType) -> Value {
    let mut example = example_resource(ty);
    if has_identifier(ty) {
        example["identifier"] = json!([{ "system": example_identifier_system(ty), "value": CONDITIONAL_VALUE }]);
    } else {
        example["id"] = json!(EXAMPLE_ID);
    }
    example
}

/// A PATCH body: a JSON Patch or a FHIRPath Patch.
fn patch_body(ty: ResourceType) -> Value {
    let (json_patch, fhirpath_patch) = patch_examples(ty);
    json!({
        "required": true,
        "description": format!("A JSON Patch, or a FHIRPath Patch Parameters resource, to apply to the {ty}"),
        "content": {
            "application/json-patch+json": { "schema": schema_ref("JsonPatch"), "example": json_patch },
            FHIR_JSON: { "schema": schema_ref("FhirPathPatch"), "example": fhirpath_patch },
        },
    })
}

/// The body of `POST [base]`.
fn transaction_body() -> Value {
    let media = json!({
        "schema": schema_ref("TransactionBundle"),
        "examples": {
            "transaction": {
                "summary": "A transaction: a care team, a plan for it and a Task based on the plan",
                "value": transaction_example(),
            },
            "batch": {
                "summary": "A batch: a search, a conditional update and two patches",
                "value": batch_example(),
            },
        },
    });
    let content: Map<String, Value> = REQUEST_TYPES.iter().map(|t| ((*t).to_owned(), media.clone())).collect();
    json!({ "required": true, "description": "A transaction or batch Bundle", "content": content })
}

fn transaction_response() -> Value {
    json!({
        "description": "A transaction-response (every entry succeeded) or a batch-response (each entry's own status) Bundle",
        "content": {
            FHIR_JSON: {
                "schema": schema_ref("TransactionResponseBundle"),
                "examples": {
                    "transaction": {
                        "summary": "The answer to the transaction example",
                        "value": transaction_response_example(),
                    },
                    "batch": {
                        "summary": "The answer to the batch example when Task/example does not exist",
                        "value": batch_response_example(),
                    },
                },
            },
        },
    })
}

fn form_body(ty: ResourceType, search: &[QueryParam]) -> Value {
    let properties: Map<String, Value> = search.iter().map(|p| (p.name.clone(), p.property())).collect();
    let mut example = Map::new();
    for (name, value) in search_example_params(ty) {
        let value =
            if name.starts_with("_include") || name.starts_with("_revinclude") { json!([value]) } else { json!(value) };
        example.insert((*name).to_owned(), value);
    }
    json!({
        "required": false,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": { "type": "object", "properties": properties },
                "example": example,
            },
        },
    })
}

/// A search of each type a care-plan client makes, as name and value pairs.
fn search_example_params(ty: ResourceType) -> &'static [(&'static str, &'static str)] {
    ty.descriptor().docs.search_example
}

/// A FHIR JSON response.
fn fhir_response(description: &str, schema: Value, example: Option<Value>) -> Value {
    let mut media = json!({ "schema": schema });
    if let Some(example) = example {
        media["example"] = example;
    }
    let mut content = Map::new();
    content.insert(FHIR_JSON.to_owned(), media);
    json!({ "description": description, "content": content })
}

/// A plain JSON response of the operational endpoints.
fn plain_json(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn resource_response(ty: ResourceType, description: &str) -> Value {
    let mut response = fhir_response(description, schema_ref(ty.as_str()), Some(stored_example(ty)));
    response["headers"] = version_headers(false);
    response
}

/// The answer to a create or update: the resource, an OperationOutcome, or nothing (`Prefer`).
fn written(ty: ResourceType, description: &str) -> Value {
    let schema = json!({ "oneOf": [schema_ref(ty.as_str()), schema_ref("OperationOutcome")] });
    let mut response = fhir_response(
        &format!("{description}; the body is as `Prefer: return=` asks (none for `minimal`)"),
        schema,
        Some(stored_example(ty)),
    );
    response["headers"] = version_headers(true);
    response
}

/// 200 to a delete asked for an OperationOutcome; `instance`: a delete by id, which always has
/// the deletion's version headers (a conditional delete that matched nothing has none).
fn deleted_outcome(ty: ResourceType, instance: bool) -> Value {
    let message = format!("Deleted {ty}/{EXAMPLE_ID} (version 2)");
    let mut response = fhir_response(
        "Deleted (or, conditionally, nothing matched), with an OperationOutcome (`Prefer: return=OperationOutcome`)",
        schema_ref("OperationOutcome"),
        Some(outcome_example(&[domain::Issue::information(message)])),
    );
    if instance {
        response["description"] = json!("Deleted, with an OperationOutcome (`Prefer: return=OperationOutcome`)");
    }
    response["headers"] = deletion_headers(instance);
    response
}

/// The version headers of a deletion: always there for a delete by id; absent when a
/// conditional delete matched nothing.
fn deletion_headers(always: bool) -> Value {
    if always {
        return version_headers(false);
    }
    let optional = |description: &str, example: &str| json!({ "description": description, "required": false, "schema": { "type": "string" }, "example": example });
    json!({
        "ETag": optional("The deletion's version (absent when nothing matched)", "W/\"2\""),
        "Last-Modified": optional("When the deletion was written (absent when nothing matched)", EXAMPLE_HTTP_DATE),
    })
}

fn bundle_response(description: &str, example: Value) -> Value {
    fhir_response(description, schema_ref("Bundle"), Some(example))
}

fn version_headers(location: bool) -> Value {
    let mut headers = json!({
        "ETag": component_ref("headers", "ETag"),
        "Last-Modified": component_ref("headers", "Last-Modified"),
    });
    if location {
        headers["Location"] = component_ref("headers", "Location");
    }
    headers
}

// ---------------------------------------------------------------------------------------------
// Errors: one shared response per `ApiError` status.

/// The name of the shared response for an error status.
fn error_name(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").replace([' ', '-'], "")
}

/// A representative of each `ApiError` status, rendered by the real renderer as the example.
fn error_samples() -> Vec<ApiError> {
    let invalid = domain::ingest::<domain::Task>(
        br#"{"resourceType":"Task","status":"bogus","intent":"order"}"#,
        domain::IngestMode::Create,
    )
    .err()
    .unwrap_or_default();
    vec![
        ApiError::Invalid(invalid),
        ApiError::NotFound("Task/example".into()),
        ApiError::MethodNotAllowed("PATCH is not supported on this path".into()),
        ApiError::NotAcceptable("_format 'xml' is not supported; this server speaks application/fhir+json".into()),
        ApiError::Gone("Task/example".into()),
        persistence::StoreError::VersionConflict { expected: 1, current: Some(2) }.into(),
        ApiError::PayloadTooLarge(10 * 1024 * 1024),
        ApiError::UnsupportedMediaType(
            "Content-Type 'application/xml' is not supported; send application/fhir+json".into(),
        ),
        ApiError::Internal(anyhow::anyhow!("the cause is logged, never sent")),
        ApiError::Unavailable("the database is busy or unreachable; retry later".into()),
        ApiError::Unprocessable(vec![domain::Issue::error(
            domain::IssueCode::BusinessRule,
            "Task.status",
            "completed → in-progress is not allowed: the Task workflow has no such transition",
        )]),
        ApiError::NotPermitted(vec![domain::Issue::error(
            domain::IssueCode::Forbidden,
            "Task.description",
            "the owner may not change Task.description",
        )]),
        ApiError::Conflict(vec![domain::Issue::general(
            domain::IssueCode::Conflict,
            "CarePlan/example cannot be deleted: 1 open Task(s) depend on it (Task/t1)",
        )]),
        ApiError::Unauthorized { why: "the token has expired".into(), invalid: true },
        ApiError::TooManyRequests(1),
        ApiError::HeadersTooLarge(16 * 1024),
    ]
}

/// What each error status means here.
fn error_description(err: &ApiError) -> &'static str {
    // Exhaustive on purpose: a new ApiError variant is documented here before this compiles.
    match err {
        ApiError::Invalid(_) => {
            "The request or its body is invalid; every issue found is listed with the element or parameter at fault"
        }
        ApiError::NotFound(_) => {
            "No such resource or version, or nothing matched the criteria of a conditional patch or a conditional \
             reference"
        }
        ApiError::Gone(_) => "The resource (or this version of it) is deleted",
        ApiError::MethodNotAllowed(_) => {
            "The path does not support this method, or a conditional update, patch or delete came without criteria"
        }
        ApiError::NotAcceptable(_) => "Neither `_format` nor `Accept` allows JSON",
        ApiError::PreconditionFailed(_) => {
            "`If-Match` does not name the current version, or the criteria of a conditional interaction \
             (`If-None-Exist`, `[type]?criteria`, a conditional reference) matched more than one resource"
        }
        ApiError::PayloadTooLarge(_) => "The body exceeds the configured limit",
        ApiError::UnsupportedMediaType(_) => "The body is not FHIR JSON",
        ApiError::Unavailable(_) => {
            "The database is unreachable or its connections are busy, or the request outlived the time limit"
        }
        ApiError::Internal(_) => "An internal error; the cause is logged, not sent",
        ApiError::Unprocessable(_) => {
            "The request is well-formed but cannot be carried out: a patch that does not apply, or a Task \
             workflow or care-plan consistency rule (business-rule)"
        }
        ApiError::NotPermitted(_) => {
            "The token's scopes do not allow this interaction on this resource (`insufficient_scope`), or the \
             acting practitioner may not make this change (the Task workflow roles)"
        }
        ApiError::Conflict(_) => {
            "Open Tasks depend on the plan or team; delete with `_cascade=delete` to delete them too"
        }
        ApiError::InEntry { inner, .. } => error_description(inner),
        ApiError::Unauthorized { .. } => "No bearer token, or one that is not valid (`WWW-Authenticate: Bearer`)",
        ApiError::Forbidden(_) => "The token's scopes do not allow this interaction (`insufficient_scope`)",
        ApiError::HeadersTooLarge(_) => "The request headers exceed the configured limit",
        ApiError::TooManyRequests(_) => "The client exceeded its rate limit; retry after `Retry-After` seconds",
        ApiError::TooManyJobs(_) => {
            "The client already runs as many bulk export jobs as it may; retry after `Retry-After` seconds"
        }
    }
}

fn error_responses() -> Map<String, Value> {
    error_samples()
        .iter()
        .map(|err| {
            let example = serde_json::from_str(&responder::operation_outcome(&err.issues())).unwrap_or(Value::Null);
            let response = fhir_response(error_description(err), schema_ref("OperationOutcome"), Some(example));
            (error_name(err.status_code()), response)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Components.

fn components() -> Value {
    let parameters: Map<String, Value> = shared_params().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut schemas = Map::new();
    for ty in ResourceType::ALL {
        schemas.insert(ty.as_str().to_owned(), resource_schema(ty));
    }
    schemas.extend(datatype_schemas());
    schemas.extend(other_bundle_schemas());
    json!({
        "schemas": schemas,
        "parameters": parameters,
        "headers": {
            "ETag": {
                "description": "The version, as a weak ETag",
                "required": true,
                "schema": { "type": "string", "pattern": "^W/\"[0-9]+\"$" },
                "example": "W/\"1\"",
            },
            "Last-Modified": {
                "description": "When this version was written (HTTP date)",
                "required": true,
                "schema": { "type": "string" },
                "example": EXAMPLE_HTTP_DATE,
            },
            "Location": {
                "description": "The version written: `[base]/[type]/[id]/_history/[vid]`",
                "required": true,
                "schema": { "type": "string", "format": "uri" },
                "example": format!("{EXAMPLE_BASE}/Task/{EXAMPLE_ID}/_history/1"),
            },
        },
        "responses": error_responses(),
        "securitySchemes": {
            "smart": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "SMART on FHIR: an OAuth 2.0 access token (JWT, RS256/RS384/ES256/ES384) \
                    carrying SMART scopes such as `patient/CarePlan.rs`, `user/Task.cru` or `system/*.read` \
                    (see `/.well-known/smart-configuration`).",
            },
        },
    })
}

/// The Bundles of the plan summary and the audit trail, and the open resource they carry.
fn other_bundle_schemas() -> Map<String, Value> {
    let string = || json!({ "type": "string" });
    let schemas = json!({
        "CollectionBundle": {
            "type": "object",
            "description": "The `$summary` of a CarePlan: a `collection` Bundle headed by a generated Composition, \
                then the plan, its CareTeams, its Tasks and their sub-Tasks, and their Provenance",
            "required": ["resourceType", "type", "entry"],
            "properties": {
                "resourceType": code(&["Bundle"]),
                "id": schema_ref("Id"),
                "meta": schema_ref("Meta"),
                "type": code(&["collection"]),
                "timestamp": string(),
                "entry": array_of(json!({
                    "type": "object",
                    "required": ["fullUrl", "resource"],
                    "properties": { "fullUrl": string(), "resource": schema_ref("AnyResource") },
                })),
            },
            "additionalProperties": true,
        },
        "AnyResource": {
            "type": "object",
            "description": "A FHIR resource of any type (a Composition, an AuditEvent, ...)",
            "required": ["resourceType"],
            "properties": { "resourceType": string(), "id": schema_ref("Id") },
            "additionalProperties": true,
        },
        "AuditBundle": {
            "type": "object",
            "description": "A searchset Bundle of AuditEvents, newest first",
            "required": ["resourceType", "type"],
            "properties": {
                "resourceType": code(&["Bundle"]),
                "id": schema_ref("Id"),
                "meta": schema_ref("Meta"),
                "type": code(&["searchset"]),
                "link": array_of(json!({
                    "type": "object",
                    "required": ["relation", "url"],
                    "properties": { "relation": code(&["self", "next"]), "url": string() },
                })),
                "entry": array_of(json!({
                    "type": "object",
                    "required": ["fullUrl", "resource"],
                    "properties": { "fullUrl": string(), "resource": schema_ref("AnyResource") },
                })),
            },
            "additionalProperties": true,
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn schema_ref(name: &str) -> Value {
    component_ref("schemas", name)
}

fn component_ref(kind: &str, name: &str) -> Value {
    json!({ "$ref": format!("#/components/{kind}/{name}") })
}

fn code(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

fn array_of(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// The structure of each type, from its R4 StructureDefinition (`domain::elements`): every
/// top-level element with its datatype and cardinality, the codes of required bindings, and the
/// mandatory elements; open to extensions and primitives' `_name` companions (the server checks
/// the rest against the FHIR model).
fn resource_schema(ty: ResourceType) -> Value {
    let elements = ty.descriptor().elements;
    let mut properties = Map::new();
    for element in elements.all.iter().filter(|e| !matches!(e.key, "id" | "meta")) {
        let one = match element.datatype {
            "code" if !element.codes.is_empty() => code(element.codes),
            "boolean" => json!({ "type": "boolean" }),
            "integer" | "positiveInt" | "unsignedInt" => json!({ "type": "integer" }),
            "decimal" => json!({ "type": "number" }),
            "Reference" | "CodeableConcept" | "Identifier" | "Period" | "Coding" => schema_ref(element.datatype),
            primitive if primitive.starts_with(|c: char| c.is_ascii_lowercase()) => json!({ "type": "string" }),
            _ => json!({ "type": "object", "additionalProperties": true }),
        };
        properties.insert(element.key.to_owned(), if element.repeats { array_of(one) } else { one });
    }
    let required = elements.mandatory;
    let mut all_properties = json!({
        "resourceType": code(&[ty.as_str()]),
        "id": schema_ref("Id"),
        "meta": schema_ref("Meta"),
    });
    if let Some(all) = all_properties.as_object_mut() {
        all.extend(properties);
    }
    let required: Vec<&str> = std::iter::once("resourceType").chain(required.iter().copied()).collect();
    json!({
        "type": "object",
        "description": format!("FHIR R4 {ty}: {} (http://hl7.org/fhir/R4/{}.html)", type_description(ty), ty.as_str().to_lowercase()),
        "required": required,
        "properties": all_properties,
        "additionalProperties": true,
        "example": example_resource(ty),
    })
}

/// The datatypes the resource schemas use, the Bundle, the OperationOutcome and the bodies of the
/// operational endpoints.
fn datatype_schemas() -> Map<String, Value> {
    let string = || json!({ "type": "string" });
    let any_resource: Vec<&str> =
        ResourceType::ALL.into_iter().map(ResourceType::as_str).chain(["OperationOutcome"]).collect();
    let schemas = json!({
        "Id": { "type": "string", "pattern": ID_PATTERN, "description": "A logical id (FHIR `id`)" },
        "Meta": {
            "type": "object",
            "description": "`versionId` and `lastUpdated` belong to the server; tags, profiles, security labels and source are kept as sent",
            "properties": {
                "versionId": string(),
                "lastUpdated": { "type": "string", "format": "date-time" },
                "source": string(),
                "profile": array_of(string()),
                "security": array_of(schema_ref("Coding")),
                "tag": array_of(schema_ref("Coding")),
            },
            "additionalProperties": true,
        },
        "Coding": {
            "type": "object",
            "properties": { "system": string(), "version": string(), "code": string(), "display": string() },
            "additionalProperties": true,
        },
        "CodeableConcept": {
            "type": "object",
            "properties": { "coding": array_of(schema_ref("Coding")), "text": string() },
            "additionalProperties": true,
        },
        "Identifier": {
            "type": "object",
            "properties": { "use": string(), "type": schema_ref("CodeableConcept"), "system": string(), "value": string() },
            "additionalProperties": true,
        },
        "Period": {
            "type": "object",
            "properties": { "start": string(), "end": string() },
            "additionalProperties": true,
        },
        "Reference": {
            "type": "object",
            "properties": { "reference": string(), "type": string(), "identifier": schema_ref("Identifier"), "display": string() },
            "additionalProperties": true,
        },
        "Resource": {
            "type": "object",
            "description": "Any resource of a Bundle entry; with `_elements` or `_summary` only some of its elements",
            "required": ["resourceType"],
            "properties": { "resourceType": code(&any_resource), "id": schema_ref("Id"), "meta": schema_ref("Meta") },
            "additionalProperties": true,
        },
        "Bundle": {
            "type": "object",
            "description": "A searchset or history Bundle (http://hl7.org/fhir/R4/bundle.html)",
            "required": ["resourceType", "type", "link"],
            "properties": {
                "resourceType": code(&["Bundle"]),
                "id": schema_ref("Id"),
                "meta": schema_ref("Meta"),
                "type": code(&["searchset", "history"]),
                "total": { "type": "integer", "minimum": 0 },
                "link": array_of(json!({
                    "type": "object",
                    "required": ["relation", "url"],
                    "properties": { "relation": code(&["self", "next", "previous"]), "url": string() },
                })),
                "entry": array_of(json!({
                    "type": "object",
                    "required": ["fullUrl"],
                    "properties": {
                        "fullUrl": string(),
                        "resource": schema_ref("Resource"),
                        "search": {
                            "type": "object",
                            "properties": { "mode": code(&["match", "include", "outcome"]) },
                        },
                        "request": {
                            "type": "object",
                            "required": ["method", "url"],
                            "properties": { "method": code(&["POST", "PUT", "DELETE"]), "url": string() },
                        },
                        "response": {
                            "type": "object",
                            "required": ["status"],
                            "properties": { "status": string(), "etag": string(), "lastModified": string() },
                        },
                    },
                })),
            },
            "additionalProperties": true,
        },
        "TransactionBundle": {
            "type": "object",
            "description": "A transaction or batch Bundle (http://hl7.org/fhir/R4/http.html#transaction). Elements \
                Bundle does not define are refused (400); `id`, `meta`, `identifier`, `timestamp` and the other \
                Bundle elements are accepted and not used",
            "required": ["resourceType", "type"],
            "properties": {
                "resourceType": code(&["Bundle"]),
                "type": code(&["transaction", "batch"]),
                "entry": array_of(json!({
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "fullUrl": {
                            "type": "string",
                            "description": "How other entries refer to this one: `urn:uuid:...`, `urn:oid:...` or the \
                                resource's URL; rewritten to where the entry lands",
                        },
                        "resource": schema_ref("EntryResource"),
                        "request": {
                            "type": "object",
                            "required": ["method", "url"],
                            "properties": {
                                "method": code(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
                                "url": {
                                    "type": "string",
                                    "description": "Relative to the base: `[type]` (POST), `[type]/[id]`, \
                                        `[type]/[id]/_history/[vid]` (GET), `[type]?params` (a GET searches; a PUT, \
                                        PATCH or DELETE is conditional; `_cascade=delete` on a DELETE)",
                                },
                                "ifNoneExist": { "type": "string", "description": "Conditional create criteria (a POST)" },
                                "ifMatch": { "type": "string", "description": "The version the write expects, e.g. `W/\"1\"`" },
                                "ifNoneMatch": { "type": "string", "description": "A GET answers 304 if this is the current version" },
                                "ifModifiedSince": { "type": "string", "description": "A GET answers 304 if not changed since this instant" },
                                "id": string(),
                                "extension": array_of(json!({ "type": "object" })),
                                "modifierExtension": array_of(json!({ "type": "object" })),
                            },
                            "additionalProperties": false,
                        },
                        "id": string(),
                        "extension": array_of(json!({ "type": "object" })),
                        "modifierExtension": array_of(json!({ "type": "object" })),
                        "link": array_of(json!({ "type": "object" })),
                        "search": { "type": "object" },
                        "response": { "type": "object" },
                    },
                    "additionalProperties": false,
                })),
                "id": string(),
                "meta": schema_ref("Meta"),
                "implicitRules": string(),
                "language": string(),
                "identifier": schema_ref("Identifier"),
                "timestamp": string(),
                "total": { "type": "integer", "minimum": 0 },
                "link": array_of(json!({ "type": "object" })),
                "signature": { "type": "object" },
            },
            "additionalProperties": false,
        },
        "EntryResource": {
            "type": "object",
            "description": "The resource of a POST or PUT entry; for a PATCH entry a `Parameters` (FHIRPath Patch) \
                or a `Binary` with `contentType` `application/json-patch+json` and the JSON Patch, base64, in `data`",
            "required": ["resourceType"],
            "properties": {
                "resourceType": code(&["CarePlan", "CareTeam", "Task", "Provenance", "Parameters", "Binary"]),
                "id": schema_ref("Id"),
                "meta": schema_ref("Meta"),
                "contentType": { "type": "string", "description": "A Binary's media type" },
                "data": { "type": "string", "description": "A Binary's content, base64" },
            },
            "additionalProperties": true,
        },
        "TransactionResponseBundle": {
            "type": "object",
            "description": "The answer to a transaction or batch Bundle: one entry per request entry, in order",
            "required": ["resourceType", "id", "meta", "type"],
            "properties": {
                "resourceType": code(&["Bundle"]),
                "id": schema_ref("Id"),
                "meta": schema_ref("Meta"),
                "type": code(&["transaction-response", "batch-response"]),
                "entry": array_of(json!({
                    "type": "object",
                    "required": ["response"],
                    "properties": {
                        "fullUrl": string(),
                        "resource": {
                            "type": "object",
                            "description": "The resource written or read (not with `Prefer: return=minimal` or \
                                `return=OperationOutcome`), or the searchset Bundle of a GET that searched",
                            "required": ["resourceType"],
                            "properties": { "resourceType": string() },
                            "additionalProperties": true,
                        },
                        "response": {
                            "type": "object",
                            "required": ["status"],
                            "properties": {
                                "status": { "type": "string", "description": "The entry's HTTP status, e.g. `201 Created`" },
                                "location": { "type": "string", "description": "`[type]/[id]/_history/[vid]` of a write" },
                                "etag": string(),
                                "lastModified": string(),
                                "outcome": schema_ref("OperationOutcome"),
                            },
                        },
                    },
                })),
            },
            "additionalProperties": true,
        },
        "JsonPatch": {
            "type": "array",
            "description": "A JSON Patch (RFC 6902): operations applied in order, all or none",
            "items": {
                "type": "object",
                "required": ["op", "path"],
                "properties": {
                    "op": code(&["add", "remove", "replace", "move", "copy", "test"]),
                    "path": { "type": "string", "description": "A JSON Pointer, e.g. `/status` or `/note/-`" },
                    "value": { "description": "The value of add, replace and test" },
                    "from": { "type": "string", "description": "The source of move and copy" },
                },
            },
        },
        "FhirPathPatch": {
            "type": "object",
            "description": "A FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html): a Parameters resource whose \
                `operation` parameters each have the parts `type` (add, insert, delete, replace, move), `path`, and \
                as the type needs `name`, `value[x]`, `index`, `source`, `destination`",
            "required": ["resourceType"],
            "properties": {
                "resourceType": code(&["Parameters"]),
                "parameter": array_of(json!({
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": code(&["operation"]),
                        "part": array_of(json!({
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": code(&["type", "path", "name", "value", "index", "source", "destination"]),
                                "valueCode": string(),
                                "valueString": string(),
                                "valueInteger": { "type": "integer" },
                            },
                            "additionalProperties": true,
                        })),
                    },
                })),
            },
            "additionalProperties": true,
        },
        "OperationOutcome": {
            "type": "object",
            "description": "Every error, and informational answers (http://hl7.org/fhir/R4/operationoutcome.html)",
            "required": ["resourceType", "issue"],
            "properties": {
                "resourceType": code(&["OperationOutcome"]),
                "issue": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["severity", "code"],
                        "properties": {
                            "severity": code(&["fatal", "error", "warning", "information"]),
                            "code": { "type": "string", "description": "A FHIR IssueType code" },
                            "diagnostics": string(),
                            "expression": array_of(string()),
                        },
                    },
                },
            },
            "additionalProperties": true,
        },
        "CapabilityStatement": {
            "type": "object",
            "required": ["resourceType", "status", "kind", "fhirVersion", "format"],
            "properties": {
                "resourceType": code(&["CapabilityStatement"]),
                "status": string(),
                "kind": string(),
                "fhirVersion": code(&["4.0.1"]),
                "format": array_of(string()),
                "rest": array_of(json!({ "type": "object", "additionalProperties": true })),
            },
            "additionalProperties": true,
        },
        "Liveness": {
            "type": "object",
            "required": ["status"],
            "properties": { "status": code(&["ok"]) },
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "database", "pendingMigrations"],
            "properties": {
                "status": code(&["ok", "unavailable"]),
                "database": { "type": "boolean", "description": "Whether the database answers" },
                "pendingMigrations": { "type": "integer", "nullable": true, "description": "Unknown (null) while the database does not answer" },
            },
        },
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Examples: bodies the server accepts (a unit test sends each through `domain::ingest`).

/// A minimal valid body of `ty`, as a client sends it to create one.
fn example_resource(ty: ResourceType) -> Value {
    serde_json::from_str(ty.descriptor().docs.example).unwrap_or_default()
}

/// The example as the server stores and serves it: with its id and server `meta`.
fn stored_example(ty: ResourceType) -> Value {
    let mut resource = example_resource(ty);
    resource["id"] = json!(EXAMPLE_ID);
    resource["meta"] = json!({ "versionId": "1", "lastUpdated": EXAMPLE_INSTANT });
    resource
}

fn search_example(ty: ResourceType) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8a90",
        "meta": { "lastUpdated": EXAMPLE_INSTANT },
        "type": "searchset",
        "total": 1,
        "link": [{ "relation": "self", "url": format!("{EXAMPLE_BASE}/{ty}?_id={EXAMPLE_ID}&_count=50") }],
        "entry": [{
            "fullUrl": format!("{EXAMPLE_BASE}/{ty}/{EXAMPLE_ID}"),
            "resource": stored_example(ty),
            "search": { "mode": "match" },
        }],
    })
}

fn history_example() -> Value {
    json!({
        "resourceType": "Bundle",
        "id": "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8a91",
        "meta": { "lastUpdated": EXAMPLE_INSTANT },
        "type": "history",
        "link": [{ "relation": "self", "url": format!("{EXAMPLE_BASE}/Task/{EXAMPLE_ID}/_history") }],
        "entry": [{
            "fullUrl": format!("{EXAMPLE_BASE}/Task/{EXAMPLE_ID}"),
            "resource": stored_example(ResourceType::Task),
            "request": { "method": "PUT", "url": format!("Task/{EXAMPLE_ID}") },
            "response": { "status": "201 Created", "etag": "W/\"1\"", "lastModified": EXAMPLE_INSTANT },
        }],
    })
}

/// A JSON Patch and a FHIRPath Patch of `ty`, each applicable to its example.
fn patch_examples(ty: ResourceType) -> (Value, Value) {
    let docs = &ty.descriptor().docs;
    (
        serde_json::from_str(docs.json_patch).unwrap_or_default(),
        serde_json::from_str(docs.fhirpath_patch).unwrap_or_default(),
    )
}

/// The `urn:uuid:` fullUrls of the transaction example, and the ids the server gives them in the
/// example answer.
const TRANSACTION_URNS: [&str; 3] = [
    "urn:uuid:6f1c2a3b-4d5e-4f60-8a71-9b2c3d4e5f01",
    "urn:uuid:6f1c2a3b-4d5e-4f60-8a71-9b2c3d4e5f02",
    "urn:uuid:6f1c2a3b-4d5e-4f60-8a71-9b2c3d4e5f03",
];
const TRANSACTION_IDS: [&str; 4] = [
    "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8aa1",
    "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8aa2",
    "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8aa3",
    "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8aa4",
];
const TEAM_IDENTIFIER: (&str, &str) = ("http://clinic.example/careteam", "CT-1");

/// The care team, the plan for it and the Task based on the plan, referring to each other as
/// `team` and `plan`.
fn shared_plan(team: &str, plan: &str) -> [(ResourceType, Value); 3] {
    let mut care_team = example_resource(ResourceType::CareTeam);
    care_team["identifier"] = json!([{ "system": TEAM_IDENTIFIER.0, "value": TEAM_IDENTIFIER.1 }]);
    let mut care_plan = example_resource(ResourceType::CarePlan);
    care_plan["careTeam"] = json!([{ "reference": team }]);
    let mut task = example_resource(ResourceType::Task);
    task["basedOn"] = json!([{ "reference": plan }]);
    [(ResourceType::CareTeam, care_team), (ResourceType::CarePlan, care_plan), (ResourceType::Task, task)]
}

fn transaction_example() -> Value {
    let entries: Vec<Value> = shared_plan(TRANSACTION_URNS[0], TRANSACTION_URNS[1])
        .into_iter()
        .zip(TRANSACTION_URNS)
        .map(|((ty, resource), urn)| {
            let mut request = json!({ "method": "POST", "url": ty.as_str() });
            if ty == ResourceType::CareTeam {
                // Run again, the transaction finds the team instead of making a second one.
                request["ifNoneExist"] = json!(format!("identifier={}|{}", TEAM_IDENTIFIER.0, TEAM_IDENTIFIER.1));
            }
            json!({ "fullUrl": urn, "resource": resource, "request": request })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

fn transaction_response_example() -> Value {
    let team = format!("CareTeam/{}", TRANSACTION_IDS[0]);
    let plan = format!("CarePlan/{}", TRANSACTION_IDS[1]);
    let entries: Vec<Value> = shared_plan(&team, &plan)
        .into_iter()
        .zip(TRANSACTION_IDS)
        .map(|((ty, resource), id)| written_entry(ty, id, 1, "201 Created", resource))
        .collect();
    response_bundle("transaction-response", entries)
}

/// A response entry of a write.
fn written_entry(ty: ResourceType, id: &str, version: u32, status: &str, mut resource: Value) -> Value {
    resource["id"] = json!(id);
    resource["meta"] = json!({ "versionId": version.to_string(), "lastUpdated": EXAMPLE_INSTANT });
    json!({
        "fullUrl": format!("{EXAMPLE_BASE}/{ty}/{id}"),
        "resource": resource,
        "response": {
            "status": status,
            "location": format!("{ty}/{id}/_history/{version}"),
            "etag": format!("W/\"{version}\""),
            "lastModified": EXAMPLE_INSTANT,
        },
    })
}

fn response_bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8a92",
        "meta": { "lastUpdated": EXAMPLE_INSTANT },
        "type": kind,
        "entry": entries,
    })
}

/// The search of the batch example.
const BATCH_SEARCH: &str = "Task?owner=Practitioner/example&status=requested,accepted,in-progress";

fn batch_example() -> Value {
    let (task_patch, _) = patch_examples(ResourceType::Task);
    let (_, plan_patch) = patch_examples(ResourceType::CarePlan);
    let (name, value) = criteria_example(ResourceType::Task);
    let binary = json!({
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64::engine::general_purpose::STANDARD.encode(task_patch.to_string()),
    });
    json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            { "request": { "method": "GET", "url": BATCH_SEARCH } },
            {
                "resource": conditional_example(ResourceType::Task),
                "request": { "method": "PUT", "url": format!("Task?{name}={value}") },
            },
            { "resource": plan_patch, "request": { "method": "PATCH", "url": format!("CarePlan/{EXAMPLE_ID}") } },
            { "resource": binary, "request": { "method": "PATCH", "url": format!("Task/{EXAMPLE_ID}") } },
        ],
    })
}

fn batch_response_example() -> Value {
    let searchset = json!({
        "resourceType": "Bundle",
        "id": "0199a3c2-5b7e-7c3a-9f61-2f0e4d1b8a93",
        "meta": { "lastUpdated": EXAMPLE_INSTANT },
        "type": "searchset",
        "total": 0,
        "link": [{ "relation": "self", "url": format!("{EXAMPLE_BASE}/{BATCH_SEARCH}") }],
    });
    let mut plan = example_resource(ResourceType::CarePlan);
    plan["title"] = json!("Shared care plan (revised)");
    let missing = ApiError::InEntry {
        index: 3,
        label: String::new(),
        inner: Box::new(ApiError::NotFound(format!("Task/{EXAMPLE_ID}"))),
    };
    response_bundle(
        "batch-response",
        vec![
            json!({ "resource": searchset, "response": { "status": "200 OK" } }),
            written_entry(
                ResourceType::Task,
                TRANSACTION_IDS[3],
                1,
                "201 Created",
                conditional_example(ResourceType::Task),
            ),
            written_entry(ResourceType::CarePlan, EXAMPLE_ID, 2, "200 OK", plan),
            json!({ "response": { "status": "404 Not Found", "outcome": outcome_example(&missing.issues()) } }),
        ],
    )
}

fn outcome_example(issues: &[domain::Issue]) -> Value {
    serde_json::from_str(&responder::operation_outcome(issues)).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Output order.

/// Keys that come first in an object of the document, in this order; the rest follow
/// alphabetically (serde_json keeps objects sorted, which would put `components` before `openapi`).
const DOCUMENT_FIRST: &[&str] = &[
    "openapi",
    "info",
    "title",
    "version",
    "servers",
    "tags",
    "paths",
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "operationId",
    "name",
    "in",
    "summary",
    "description",
    "parameters",
    "requestBody",
    "responses",
];

/// Keys that come first in an example, as FHIR resources, Bundles and OperationOutcomes are
/// usually written.
const RESOURCE_FIRST: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "versionId",
    "lastUpdated",
    "type",
    "total",
    "link",
    "relation",
    "method",
    "url",
    "entry",
    "fullUrl",
    "resource",
    "search",
    "request",
    "response",
    "status",
    "intent",
    "severity",
    "code",
];

#[derive(Debug, Clone, Copy)]
enum Order {
    Document,
    Resource,
    /// The named Example Objects of `examples`: each one's `value` is written as a resource.
    Examples,
}

/// A JSON value that serializes with its object keys in reading order.
struct Ordered<'a>(&'a Value, Order);

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Ordered(value, order) = *self;
        match value {
            Value::Object(map) => {
                let first = match order {
                    Order::Document | Order::Examples => DOCUMENT_FIRST,
                    Order::Resource => RESOURCE_FIRST,
                };
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by_key(|k| (first.iter().position(|f| f == k).unwrap_or(first.len()), k.as_str()));
                let mut out = serializer.serialize_map(Some(keys.len()))?;
                for key in keys {
                    let inner = match (order, key.as_str()) {
                        (Order::Resource, _) | (_, "example") | (Order::Examples, "value") => Order::Resource,
                        (Order::Document, "examples") => Order::Examples,
                        _ => order,
                    };
                    out.serialize_entry(key, &Ordered(&map[key], inner))?;
                }
                out.end()
            }
            Value::Array(items) => serializer.collect_seq(items.iter().map(|item| Ordered(item, order))),
            other => other.serialize(serializer),
        }
    }
}

/// Quote the plain scalars that YAML 1.1 readers (PyYAML, js-yaml's default schema) would take
/// for timestamps or booleans (`off`, `yes`, ...): serde_norway writes YAML 1.2, where they are
/// strings, and leaves them plain.
fn quote_for_yaml_1_1(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 256);
    // The indentation of the line that opened a block scalar (`|-`): deeper lines are its text.
    let mut block: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if block.is_some_and(|open| indent > open || line.trim().is_empty()) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        block = None;
        let at = line.find(": ").map(|i| i + 2).or_else(|| line.trim_start().starts_with("- ").then_some(indent + 2));
        let (head, value) = line.split_at(at.unwrap_or(0));
        if value.starts_with('|') || value.starts_with('>') {
            block = Some(indent);
        }
        if is_timestamp(value) || is_yaml_1_1_boolean(value) {
            out.push_str(&format!("{head}'{value}'\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The plain scalars other than `true` and `false` that YAML 1.1 resolves as booleans.
fn is_yaml_1_1_boolean(value: &str) -> bool {
    ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"].contains(&value)
}

/// `YYYY-MM-DD`, alone or followed by a time: what YAML 1.1 resolves as a timestamp.
fn is_timestamp(value: &str) -> bool {
    let b = value.as_bytes();
    let digits = |range: std::ops::Range<usize>| b.get(range).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && matches!(b.get(10), None | Some(b'T' | b't' | b' '))
        && !value.contains('\'')
}

#[cfg(test)]
mod tests {
    use domain::search::query;
    use domain::IngestMode;

    use super::*;

    fn accepts(ty: ResourceType, body: &Value) -> Result<(), Vec<domain::Issue>> {
        let text = body.to_string();
        let mode = match body["id"].as_str() {
            Some(id) => IngestMode::Update { id },
            None => IngestMode::Create,
        };
        let ingested = domain::ingest_as(ty, text.as_bytes(), mode).map(drop);
        if ty.descriptor().rules.subscription {
            ingested.and_then(|()| domain::subscriptions::spec(body).map(drop))
        } else {
            ingested
        }
    }

    #[test]
    fn every_example_body_is_one_the_server_accepts() {
        for ty in ResourceType::ALL {
            let body = example_resource(ty);
            assert_eq!(accepts(ty, &body), Ok(()), "{ty}");
            let mut update = body.clone();
            update["id"] = json!(EXAMPLE_ID);
            assert_eq!(accepts(ty, &update), Ok(()), "{ty} update");
        }
    }

    #[test]
    fn every_conditional_example_is_accepted_and_its_criteria_understood() {
        for ty in ResourceType::ALL {
            assert_eq!(accepts(ty, &conditional_example(ty)), Ok(()), "{ty}");
            let (name, value) = criteria_example(ty);
            let parsed = query::parse(ty, &[(name.to_owned(), value)], true);
            assert!(parsed.is_ok_and(|request| !request.clauses.is_empty()), "{ty}?{name}");
            let documented = criteria_params(ty);
            assert!(documented.iter().any(|p| p["name"] == name && p.get("example").is_some()), "{ty}");
        }
    }

    /// Both patch examples of each type apply to its example and leave a valid resource.
    #[test]
    fn every_patch_example_applies_to_the_example() {
        const LIMITS: domain::patch::PatchLimits =
            domain::patch::PatchLimits { max_bytes: 1 << 20, max_operations: 1000 };
        for ty in ResourceType::ALL {
            let current = stored_example(ty).to_string();
            let (json_patch, fhirpath_patch) = patch_examples(ty);
            for (format, patched) in [
                ("JSON Patch", domain::patch::json_patch(&current, json_patch.to_string().as_bytes(), LIMITS)),
                (
                    "FHIRPath Patch",
                    domain::patch::fhirpath_patch(&current, fhirpath_patch.to_string().as_bytes(), ty, LIMITS),
                ),
            ] {
                let patched: Value = serde_json::from_str(&patched.unwrap_or_else(|e| panic!("{ty} {format}: {e:?}")))
                    .unwrap_or_else(|e| panic!("{ty} {format}: {e}"));
                assert_ne!(patched, stored_example(ty), "{ty} {format} changes something");
                let mut body = patched.clone();
                body.as_object_mut().map(|o| o.remove("meta"));
                assert_eq!(accepts(ty, &body), Ok(()), "{ty} {format}: {patched}");
            }
        }
    }

    /// The transaction example's resources are valid once the server has rewritten the urn:uuid
    /// references; the batch example's Binary carries the Task's JSON Patch.
    #[test]
    fn the_bundle_examples_carry_valid_resources() {
        let example = transaction_example();
        for (entry, (ty, rewritten)) in
            example["entry"].as_array().into_iter().flatten().zip(shared_plan("CareTeam/t", "CarePlan/p"))
        {
            assert_eq!(entry["request"]["url"], ty.as_str());
            assert_eq!(accepts(ty, &rewritten), Ok(()), "{ty}");
        }
        let batch = batch_example();
        let data = batch["entry"][3]["resource"]["data"].as_str().unwrap_or_default();
        let decoded = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
        assert_eq!(serde_json::from_slice::<Value>(&decoded).ok(), Some(patch_examples(ResourceType::Task).0));
    }

    #[test]
    fn every_search_example_is_understood() {
        for ty in ResourceType::ALL {
            let pairs: Vec<(String, String)> =
                search_example_params(ty).iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            let parsed = query::parse(ty, &pairs, true);
            assert!(parsed.is_ok(), "{ty}: {parsed:?}");
        }
    }

    #[test]
    fn every_code_a_schema_lists_is_accepted() {
        for ty in ResourceType::ALL {
            let schema = resource_schema(ty);
            for element in ["status", "intent", "priority"] {
                let Some(codes) = schema["properties"][element]["enum"].as_array() else { continue };
                for code in codes {
                    let mut body = example_resource(ty);
                    body[element] = code.clone();
                    assert_eq!(accepts(ty, &body), Ok(()), "{ty}.{element} = {code}");
                }
            }
        }
    }

    #[test]
    fn every_required_element_is_required_by_the_server() {
        for ty in ResourceType::ALL {
            let schema = resource_schema(ty);
            for element in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                let mut body = example_resource(ty);
                body.as_object_mut().map(|o| o.remove(element));
                assert!(accepts(ty, &body).is_err(), "{ty} without {element} is refused");
            }
        }
    }

    /// Every modifier a filter's description names is one the parser takes.
    #[test]
    fn the_modifiers_each_description_names_are_understood() {
        let sample = |kind: ParamType, modifier: &str| match (kind, modifier) {
            (_, "missing") => "true",
            (ParamType::Token, "of-type") => "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123",
            (ParamType::Date, _) => "ge2026-01-01",
            (ParamType::Uri, _) => "http://example.org/fhir",
            _ => "value",
        };
        for ty in ResourceType::ALL {
            for p in params::for_type(ty) {
                let description = filter_description(ty, p);
                for modifier in description.split('`').filter_map(|s| s.strip_prefix(':')) {
                    let modifier = if modifier == "[Type]" { "Patient" } else { modifier };
                    let pairs = [(format!("{}:{modifier}", p.name), sample(p.kind, modifier).to_owned())];
                    let parsed = query::parse(ty, &pairs, true);
                    assert!(parsed.is_ok(), "{ty}?{}:{modifier}: {parsed:?}", p.name);
                }
            }
        }
    }

    #[test]
    fn every_error_response_has_the_status_of_its_name() {
        for (name, response) in error_responses() {
            let status = error_samples().iter().map(ResponseError::status_code).find(|s| error_name(*s) == name);
            assert!(status.is_some(), "{name}");
            assert!(response["content"][FHIR_JSON]["example"]["issue"][0]["code"].is_string(), "{name}");
        }
    }

    #[test]
    fn every_referenced_component_exists() {
        let document = document();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/").skip(1).filter_map(|rest| rest.split('"').next()) {
            let pointer = format!("/{reference}");
            assert!(document.pointer(&pointer).is_some(), "{reference}");
        }
    }

    #[test]
    fn timestamps_and_yaml_1_1_booleans_are_quoted_outside_block_text() {
        let yaml =
            "a: 2026-11-24T10:00:00.000Z\nb:\n- 2026-01-01\nc: |-\n  2026-01-01 in text\n  off\nd: 2026-11-24x\n\
                    e: off\nf:\n- off\ng: true\nh: offline\n";
        let expected = "a: '2026-11-24T10:00:00.000Z'\nb:\n- '2026-01-01'\nc: |-\n  2026-01-01 in text\n  off\n\
                        d: 2026-11-24x\ne: 'off'\nf:\n- 'off'\ng: true\nh: offline\n";
        assert_eq!(quote_for_yaml_1_1(yaml), expected);
    }

    #[test]
    fn yaml_output_starts_with_the_version() {
        let yaml = to_yaml().expect("YAML");
        assert!(yaml.starts_with("openapi: 3.0.3\ninfo:\n"), "{}", &yaml[..80]);
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let mut described = described();
        let undescribed: Vec<String> = routes::table()
            .iter()
            .filter(|route| described.remove(&(route.method, route.documented_path())).is_none())
            .map(|route| format!("{} {}", route.method.key(), route.pattern))
            .collect();
        assert!(undescribed.is_empty(), "routes without a description in operations(): {undescribed:?}");
        let unserved: Vec<String> = described.keys().map(|(method, path)| format!("{} {path}", method.key())).collect();
        assert!(unserved.is_empty(), "descriptions of routes the table does not hold: {unserved:?}");
        assert_eq!(operations().len(), routes::table().len(), "one description per route");
    }

    #[test]
    fn every_operation_id_is_unique() {
        let mut ids: Vec<String> = operations()
            .into_iter()
            .filter_map(|o| o.object.get("operationId").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
    }
}
