//! `GET [base]/metadata`: the CapabilityStatement, derived from the resource types and
//! interactions the code serves rather than written by hand.

use actix_web::{web, HttpRequest, HttpResponse};
use domain::{Interaction, ResourceType};
use serde_json::{json, Value};

use crate::extract::Negotiation;
use crate::responder::{base_url, json_body};
use crate::state::AppState;

/// When this build's CapabilityStatement content last changed (CapabilityStatement.date).
const DATE: &str = "2026-11-24";

/// The CapabilityStatement for a server reachable at `base`.
pub fn capability_statement(base: &str) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|ty| {
            json!({
                "type": ty.as_str(),
                "profile": ty.profile(),
                "interaction": Interaction::ALL.iter().map(|i| json!({ "code": i.code() })).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "full-support",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchInclude": search_includes(ty),
                "searchRevInclude": rev_includes(ty),
                "searchParam": domain::search::params::for_type(ty).iter().map(|p| json!({
                    "name": p.name,
                    "definition": definition(ty, p.name),
                    "type": p.kind.code(),
                    "documentation": p.description,
                })).chain([json!({
                    "name": "_has",
                    "type": "special",
                    "documentation": "Reverse chaining: _has:Type:reference:parameter=value",
                })]).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
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
            "interaction": [{ "code": "history-system" }],
        }],
    })
}

/// The canonical URL of a search parameter's definition.
fn definition(ty: ResourceType, name: &str) -> String {
    match name.strip_prefix('_') {
        Some(common) => format!("http://hl7.org/fhir/SearchParameter/Resource-{common}"),
        None => format!("http://hl7.org/fhir/SearchParameter/{ty}-{name}"),
    }
}

fn reference_params(ty: ResourceType) -> impl Iterator<Item = &'static domain::search::SearchParam> {
    domain::search::params::for_type(ty).iter().filter(|p| p.kind == domain::search::ParamType::Reference)
}

/// `_include` values a search of `ty` understands.
fn search_includes(ty: ResourceType) -> Vec<String> {
    std::iter::once("*".to_owned()).chain(reference_params(ty).map(|p| format!("{ty}:{}", p.name))).collect()
}

/// `_revinclude` values: every reference parameter of a held type that may point at `ty`.
fn rev_includes(ty: ResourceType) -> Vec<String> {
    ResourceType::ALL
        .into_iter()
        .flat_map(|source| {
            reference_params(source)
                .filter(move |p| p.targets.is_empty() || p.targets.contains(&ty.as_str()))
                .map(move |p| format!("{source}:{}", p.name))
        })
        .collect()
}

/// The handler for `GET [base]/metadata`.
pub(crate) async fn metadata(req: HttpRequest, state: web::Data<AppState>, neg: Negotiation) -> HttpResponse {
    let statement = capability_statement(&base_url(&req, &state));
    json_body(HttpResponse::Ok(), statement.to_string(), neg)
}
