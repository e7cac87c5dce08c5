//! `GET [base]/metadata`: the CapabilityStatement, derived from the resource types and
//! interactions the code serves rather than written by hand.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::{Interaction, ResourceType};
use serde_json::{json, Value};

use std::sync::LazyLock;

use crate::error::ApiError;
use crate::extract::Negotiation;
use crate::responder::{base_url, json_body};
use crate::route::{Does, Route};
use crate::state::AppState;

/// When this build's CapabilityStatement content last changed (CapabilityStatement.date).
const DATE: &str = "2026-11-24";

/// The CapabilityStatement for a server reachable at `base`.
pub fn capability_statement(base: &str, multiple_delete: bool) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|ty| {
            let mut resource = json!({
                "type": ty.as_str(),
                "profile": ty.profile(),
                "interaction": interactions(ty.as_str()),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "full-support",
                "conditionalUpdate": true,
                "conditionalDelete": if multiple_delete { "multiple" } else { "single" },
                "searchInclude": search_includes(ty),
                "searchRevInclude": rev_includes(ty),
                "searchParam": domain::search::params::for_type(ty).iter().map(|p| json!({
                    "name": p.name,
                    "definition": p.definition(ty),
                    "type": p.kind.code(),
                    "documentation": p.description,
                })).chain([json!({
                    "name": "_has",
                    "type": "special",
                    "documentation": "Reverse chaining: _has:Type:reference:parameter=value",
                })]).collect::<Vec<_>>(),
            });
            let operations = operations(ty.as_str());
            if !operations.is_empty() {
                resource["operation"] = operations.into();
            }
            if ty.descriptor().rules.subscription {
                subscription_capabilities(&mut resource);
            }
            resource
        })
        .chain([audit_event_capabilities()])
        .collect();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": DATE,
        "publisher": "careplan",
        "kind": "instance",
        "software": { "name": "careplan", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "FHIR R4 shared care-plan service (CarePlan, CareTeam, Task)", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }, { "code": "history-system" }],
        }],
    });
    bulk_export(&mut statement);
    statement
}

/// FHIR Bulk Data export: where the route table serves a system-level `$export`, the statement
/// instantiates the IG's server CapabilityStatement and names the operation at system level (the
/// types' own entries come from their routes, `operations`).
fn bulk_export(statement: &mut Value) {
    let system = crate::route::table()
        .iter()
        .any(|route| matches!(route.does, Does::Export { .. }) && route.resource_type.is_none());
    if system {
        statement["instantiates"] = json!(["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]);
        statement["rest"][0]["operation"] = json!([{ "name": "export", "definition": crate::export::DEFINITION }]);
    }
}

/// The audit trail (`audit::trail`): AuditEvents are read and searched, never written by
/// clients; its search parameters are the trail's own table.
fn audit_event_capabilities() -> Value {
    let params: Vec<Value> = crate::audit::trail::PARAMS
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "definition": format!("http://hl7.org/fhir/SearchParameter/AuditEvent-{}", p.name),
                "type": p.kind,
                "documentation": p.description,
            })
        })
        .collect();
    json!({
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "documentation": "The audit trail: one AuditEvent per FHIR request, newest first; needs an audit scope (user/AuditEvent.rs or system/AuditEvent.rs).",
        "interaction": interactions("AuditEvent"),
        "versioning": "no-version",
        "readHistory": false,
        "updateCreate": false,
        "searchParam": params,
    })
}

/// What the Subscriptions Backport IG asks an R4 server to say: the topics it offers (their
/// canonical URLs), the profile and the `$status` and `$events` operations.
fn subscription_capabilities(resource: &mut Value) {
    use domain::subscriptions::{PROFILE, TOPICS, TOPIC_CANONICAL_EXTENSION};
    resource["extension"] = TOPICS
        .iter()
        .map(|t| json!({ "url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": t.url() }))
        .collect::<Vec<_>>()
        .into();
    resource["supportedProfile"] = json!([PROFILE]);
}

/// The routes of the type named `name` (the installed route table; `startup` installs it first).
fn routes_of(name: &str) -> impl Iterator<Item = &'static Route> + '_ {
    let table = crate::route::table();
    debug_assert!(!table.is_empty(), "the route table is installed before the CapabilityStatement is rendered");
    table.iter().filter(move |route| route.resource_type.as_deref() == Some(name))
}

/// The interactions the route table serves on the type (`Interaction::ALL` order).
fn interactions(name: &str) -> Vec<Value> {
    Interaction::ALL
        .iter()
        .filter(|i| routes_of(name).any(|route| route.does == Does::Interaction(**i)))
        .map(|i| json!({ "code": i.code() }))
        .collect()
}

/// The FHIR operations the route table serves on the type.
fn operations(name: &str) -> Vec<Value> {
    let mut listed: Vec<Value> = Vec::new();
    for route in routes_of(name) {
        let named = match route.does {
            Does::Operation { name, definition }
            | Does::Execute { name, definition }
            | Does::Export { name, definition } => Some((name, definition)),
            _ => None,
        };
        if let Some((name, definition)) = named {
            let entry = json!({ "name": name, "definition": definition });
            if !listed.contains(&entry) {
                listed.push(entry);
            }
        }
    }
    listed
}

fn reference_params(ty: ResourceType) -> impl Iterator<Item = &'static domain::search::SearchParam> {
    domain::search::params::for_type(ty).iter().filter(|p| p.kind == domain::search::ParamType::Reference)
}

/// `_include` values a search of `ty` understands.
pub(crate) fn search_includes(ty: ResourceType) -> Vec<String> {
    std::iter::once("*".to_owned()).chain(reference_params(ty).map(|p| format!("{ty}:{}", p.name))).collect()
}

/// `_revinclude` values: every reference parameter of a held type that may point at `ty`.
pub(crate) fn rev_includes(ty: ResourceType) -> Vec<String> {
    ResourceType::ALL
        .into_iter()
        .flat_map(|source| {
            reference_params(source)
                .filter(move |p| p.targets.is_empty() || p.targets.contains(&ty.as_str()))
                .map(move |p| format!("{source}:{}", p.name))
        })
        .collect()
}

/// `GET [base]/SearchParameter/[Type]-[name]`: the definition of a search parameter this server
/// defines (the CapabilityStatement's `definition` of it); the specification's own are not served.
pub(crate) async fn search_parameter(path: web::Path<String>, neg: Negotiation) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let text = DEFINED_HERE
        .iter()
        .find(|(defined, _)| *defined == id)
        .map(|(_, text)| text.clone())
        .ok_or_else(|| ApiError::NotFound(format!("SearchParameter/{id}")))?;
    Ok(json_body(HttpResponse::Ok(), text, neg))
}

/// Render the SearchParameter resources now (start-up calls this off the serving path).
pub(crate) fn prerender() {
    LazyLock::force(&DEFINED_HERE);
}

/// The SearchParameter resources this server defines, by id, rendered once: they change only
/// with the build.
static DEFINED_HERE: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    ResourceType::ALL
        .into_iter()
        .flat_map(|ty| domain::search::params::for_type(ty).iter().map(move |param| (ty, param)))
        .filter_map(|(ty, param)| {
            // The domain says which ids are ours (`{Type}-{name}` of a parameter it defines).
            let id = format!("{ty}-{}", param.name);
            domain::search::params::defined_here(&id)?;
            Some((id, param.resource(ty)?.to_string()))
        })
        .collect()
});

/// The handler for `GET [base]/metadata`.
pub(crate) async fn metadata(req: HttpRequest, state: web::Data<AppState>, neg: Negotiation) -> HttpResponse {
    let text = rendered(&state, &base_url(&req, &state));
    json_body(HttpResponse::Ok(), text.to_string(), neg)
}

/// The CapabilityStatement for `base`, rendered once per base URL (`AppState::capabilities`):
/// it changes only with the build and the settings.
pub(crate) fn rendered(state: &AppState, base: &str) -> std::sync::Arc<str> {
    state.capabilities.get_or_render(base, || {
        let settings = &state.settings;
        let mut statement = capability_statement(base, settings.multiple_delete);
        let cors = !settings.hardening.cors_origins.is_empty();
        if let Some(security) = crate::auth::discovery::capability_security(&settings.auth, cors) {
            statement["rest"][0]["security"] = security;
        }
        statement.to_string()
    })
}
