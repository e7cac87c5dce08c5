//! The whole HTTP surface on one screen: one typed table of routes. Each resource type is one
//! line (`resource::<R>()`), each other route one entry. Read from this table: the actix
//! registration, what the authentication middleware lets through without a token, the audit
//! record's BALP action and subtype (and whether a request is audited at all), the telemetry
//! names (route pattern and resource type), which answers may be cached, and the OpenAPI
//! operations. `observe` looks each request's route up once (`Matched`, in the request
//! extensions); no middleware parses paths.

use actix_web::web::{self, ServiceConfig};
use domain::Interaction as I;
use domain::{ActivityDefinition, CarePlan, CareTeam, Goal, PlanDefinition, Provenance, Resource, Subscription, Task};

pub(crate) use crate::route::{Does, Method, Route, FHIR};

use crate::audit::trail;
use crate::auth::discovery;
use crate::interactions::{self as i, method_not_allowed, unknown_type};
use crate::subscriptions::operations as subscription;
use crate::{capabilities, docs, export, health, metrics, openapi, plan_summary, search, templates, transaction};

/// The bulk export kick-off, system or type level.
const EXPORT: Does = Does::Export { name: "export", definition: export::DEFINITION };

/// Every route, in registration order (actix tries them in this order).
fn build() -> Vec<Route> {
    use Does::*;
    use Method::{Get, Post};
    let mut table = vec![
        Route::new(Get, "", "/livez", Probe, |r| r.to(health::livez)),
        Route::new(Get, "", "/readyz", Probe, |r| r.to(health::readyz)),
        Route::new(Get, "", "/metrics", Probe, |r| r.to(metrics::serve)),
        Route::new(Get, "", "/openapi.json", Description, |r| r.to(openapi::serve)),
        Route::new(Get, "", "/docs", Description, |r| r.to(docs::redirect)),
        Route::new(Get, "/docs", "/{file:[^/]*}", Description, |r| r.to(docs::asset)),
        Route::new(Get, "", "/.well-known/smart-configuration", Discovery, |r| r.to(discovery::well_known)),
        Route::new(Post, FHIR, "", Transaction, |r| r.to(transaction::bundle)),
        Route::new(Post, FHIR, "/", Transaction, |r| r.to(transaction::bundle)),
        Route::new(Get, FHIR, "/metadata", Capabilities, |r| r.to(capabilities::metadata)),
        Route::new(Get, FHIR, "/_history", HistorySystem, |r| r.to(i::history_system)),
        Route::new(Get, FHIR, "/.well-known/smart-configuration", Discovery, |r| r.to(discovery::well_known)),
        Route::new(Get, FHIR, "/$export", EXPORT, |r| r.to(export::system_get)),
        Route::new(Post, FHIR, "/$export", EXPORT, |r| r.to(export::system_post)),
        Route::new(Get, FHIR, "/$export-status/{id}", ExportJob, |r| r.to(export::status)),
        Route::new(Method::Delete, FHIR, "/$export-status/{id}", ExportJob, |r| r.to(export::cancel)),
        Route::new(Get, FHIR, "/$export-file/{id}/{file}", ExportJob, |r| r.to(export::file)),
        Route::new(Get, "/fhir/AuditEvent", "", Interaction(I::SearchType), |r| r.to(trail::search)),
        Route::new(Get, "/fhir/AuditEvent", "/{id}", Interaction(I::Read), |r| r.to(trail::read)),
        Route::new(Get, "/fhir/SearchParameter", "/{id}", Interaction(I::Read), |r| {
            r.to(capabilities::search_parameter)
        }),
    ];
    table.extend(resource::<CarePlan>());
    let summary = Operation { name: "summary", definition: plan_summary::DEFINITION };
    table.push(Route::new(Get, "/fhir/CarePlan", "/{id}/$summary", summary, |r| r.to(plan_summary::summary)));
    table.extend(resource::<CareTeam>());
    table.extend(resource::<Goal>());
    table.extend(resource::<Task>());
    table.extend(resource::<Provenance>());
    table.extend(resource::<Subscription>());
    table.extend([
        Route::new(Get, "/fhir/Subscription", "/{id}/$status", subscription::STATUS, |r| r.to(subscription::status)),
        Route::new(Get, "/fhir/Subscription", "/{id}/$events", subscription::EVENTS, |r| r.to(subscription::events)),
        Route::new(Get, "/fhir/SubscriptionTopic", "", Interaction(I::SearchType), |r| r.to(subscription::topics)),
        Route::new(Get, "/fhir/SubscriptionTopic", "/{id}", Interaction(I::Read), |r| r.to(subscription::topic)),
    ]);
    table.extend(resource::<PlanDefinition>());
    table.extend([
        Route::new(Get, "/fhir/PlanDefinition", "/{id}/$apply", templates::APPLY, |r| r.to(templates::apply_get)),
        Route::new(Post, "/fhir/PlanDefinition", "/{id}/$apply", templates::APPLY, |r| r.to(templates::apply_post)),
    ]);
    table.extend(resource::<ActivityDefinition>());
    table
}

/// The interactions of one resource type, in a scope of its own: a path is matched against
/// its type's routes only (actix matches each `{id}` pattern with a regex, two passes per
/// request), and the type's operations join the scope.
fn resource<R: Resource>() -> Vec<Route> {
    use Does::{Conditional, Interaction};
    use Method::*;
    let scope = format!("{FHIR}/{}", R::TYPE);
    let route = |method, path, does, to| Route::new(method, &scope, path, does, to);
    let mut routes = vec![
        route(Post, "", Interaction(I::Create), |r| r.to(i::create::<R>)),
        route(Get, "", Interaction(I::SearchType), |r| r.to(search::search_get::<R>)),
        route(Put, "", Conditional(I::Update), |r| r.to(i::update_conditional::<R>)),
        route(Patch, "", Conditional(I::Patch), |r| r.to(i::patch_conditional::<R>)),
        route(Delete, "", Conditional(I::Delete), |r| r.to(i::delete_conditional::<R>)),
        route(Post, "/_search", Interaction(I::SearchType), |r| r.to(search::search_post::<R>)),
        route(Get, "/_history", Interaction(I::HistoryType), |r| r.to(i::history_type::<R>)),
    ];
    if R::TYPE.exportable() {
        routes.push(route(Get, "/$export", EXPORT, |r| r.to(export::type_get::<R>)));
        routes.push(route(Post, "/$export", EXPORT, |r| r.to(export::type_post::<R>)));
    }
    routes.extend([
        route(Get, "/{id}", Interaction(I::Read), |r| r.to(i::read::<R>)),
        route(Put, "/{id}", Interaction(I::Update), |r| r.to(i::update::<R>)),
        route(Patch, "/{id}", Interaction(I::Patch), |r| r.to(i::patch::<R>)),
        route(Delete, "/{id}", Interaction(I::Delete), |r| r.to(i::delete::<R>)),
        route(Get, "/{id}/_history", Interaction(I::HistoryInstance), |r| r.to(i::history_instance::<R>)),
        route(Get, "/{id}/_history/{vid}", Interaction(I::Vread), |r| r.to(i::vread::<R>)),
    ]);
    routes
}

/// Install the table for every reader (`route::table`); idempotent.
pub(crate) fn install() {
    crate::route::install(build);
}

/// Every route, in registration order (installed first if need be: the OpenAPI document is
/// rendered without a server by `careplan openapi` and the tests).
pub(crate) fn table() -> &'static [Route] {
    install();
    crate::route::table()
}

// ---------------------------------------------------------------------------------------------
// Registration.

/// Register every route of the table: the root routes, then each scope (`/docs`, `/fhir`)
/// with its nested scopes (one per resource type), grouped in table order. Under the FHIR base
/// a method a path does not serve is 405 and a path no route serves 404 (an OperationOutcome).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
    install();
    for outer in runs(table(), Route::outer) {
        let prefix = outer[0].outer();
        if prefix.is_empty() {
            for resource in resources(outer) {
                cfg.service(resource);
            }
            continue;
        }
        let mut scope = web::scope(prefix);
        for inner in runs(outer, Route::inner) {
            match inner[0].inner() {
                "" => {
                    for resource in resources(inner) {
                        scope = scope.service(resource);
                    }
                }
                name => scope = scope.service(resources(inner).fold(web::scope(name), |s, r| s.service(r))),
            }
        }
        if prefix == FHIR {
            scope = scope.default_service(web::to(unknown_type));
        }
        cfg.service(scope);
    }
    cfg.default_service(web::to(unknown_type));
}

/// The routes in runs of equal `key`.
fn runs<'a>(routes: &'a [Route], key: fn(&Route) -> &str) -> impl Iterator<Item = &'a [Route]> + 'a {
    routes.chunk_by(move |a, b| key(a) == key(b))
}

/// One actix resource per path of `routes`, each with its methods.
fn resources(routes: &[Route]) -> impl Iterator<Item = actix_web::Resource> + '_ {
    runs(routes, Route::path).map(|same| {
        let mut resource = web::resource(same[0].path());
        for route in same {
            resource = resource.route((route.to)(web::method(route.method.http())));
        }
        if same[0].outer() == FHIR {
            resource = resource.default_service(web::to(method_not_allowed));
        }
        resource
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method as HttpMethod;

    use domain::audit::Action;

    use super::*;
    use crate::route::Matched;

    fn at(method: HttpMethod, pattern: &str) -> Matched {
        install();
        Matched::lookup(&method, Some(pattern))
    }

    #[test]
    fn each_pattern_is_one_run_with_one_route_per_method_and_agreeing_flags() {
        let mut seen = std::collections::HashSet::new();
        for same in runs(table(), |r| r.pattern.as_str()) {
            assert!(seen.insert(same[0].pattern.as_str()), "{} is registered in two places", same[0].pattern);
            let first = &same[0];
            let mut methods = std::collections::HashSet::new();
            for route in same {
                assert!(methods.insert(route.method), "{:?} {} twice", route.method, route.pattern);
                assert_eq!(
                    (route.public(), route.cacheable(), route.audited(), &route.resource_type),
                    (first.public(), first.cacheable(), first.audited(), &first.resource_type),
                    "{}",
                    route.pattern
                );
            }
        }
        let mut scopes = std::collections::HashSet::new();
        for scope in runs(table(), |r| &r.pattern[..r.scopes.1]) {
            let key = &scope[0].pattern[..scope[0].scopes.1];
            assert!(key.is_empty() || scopes.insert(key), "the scope {key} is split");
        }
    }

    #[test]
    fn routes_map_to_balp_actions_and_subtypes() {
        let check = |method: HttpMethod, pattern: &str, action: Action, subtype: &str, ty: Option<&str>| {
            let matched = at(method.clone(), pattern);
            let route = matched.route.unwrap_or_else(|| panic!("{method} {pattern} is served"));
            assert_eq!((route.audit(), route.resource_type.as_deref()), ((action, subtype), ty), "{method} {pattern}");
            assert!(route.audited(), "{method} {pattern}");
        };
        check(HttpMethod::GET, "/fhir/Task/{id}", Action::Read, "read", Some("Task"));
        check(HttpMethod::GET, "/fhir/Task/{id}/_history/{vid}", Action::Read, "vread", Some("Task"));
        check(HttpMethod::GET, "/fhir/Task/{id}/_history", Action::Read, "history-instance", Some("Task"));
        check(HttpMethod::GET, "/fhir/Task/_history", Action::Read, "history-type", Some("Task"));
        check(HttpMethod::GET, "/fhir/_history", Action::Read, "history-system", None);
        check(HttpMethod::GET, "/fhir/Task", Action::Execute, "search-type", Some("Task"));
        check(HttpMethod::POST, "/fhir/Task/_search", Action::Execute, "search-type", Some("Task"));
        check(HttpMethod::POST, "/fhir/Task", Action::Create, "create", Some("Task"));
        check(HttpMethod::PUT, "/fhir/Task", Action::Update, "update", Some("Task"));
        check(HttpMethod::PUT, "/fhir/Task/{id}", Action::Update, "update", Some("Task"));
        check(HttpMethod::PATCH, "/fhir/Task/{id}", Action::Update, "patch", Some("Task"));
        check(HttpMethod::DELETE, "/fhir/Task", Action::Delete, "delete", Some("Task"));
        check(HttpMethod::POST, "/fhir", Action::Execute, "transaction", None);
        check(HttpMethod::POST, "/fhir/", Action::Execute, "transaction", None);
        check(HttpMethod::GET, "/fhir/CarePlan/{id}/$summary", Action::Read, "read", Some("CarePlan"));
        check(HttpMethod::GET, "/fhir/AuditEvent", Action::Execute, "search-type", Some("AuditEvent"));
        check(HttpMethod::GET, "/fhir/SubscriptionTopic/{id}", Action::Read, "read", Some("SubscriptionTopic"));
        assert!(at(HttpMethod::GET, "/fhir/Task/_search").route.is_none(), "a method the path does not serve");
        assert!(at(HttpMethod::GET, "/fhir/Task/_search").at.is_some_and(Route::audited));
    }

    #[test]
    fn public_cacheable_and_unaudited_routes_are_the_probes_discovery_and_descriptions() {
        let public: Vec<&str> = table().iter().filter(|r| r.public()).map(|r| r.pattern.as_str()).collect();
        assert_eq!(
            public,
            [
                "/livez",
                "/readyz",
                "/metrics",
                "/openapi.json",
                "/docs",
                "/docs/{file:[^/]*}",
                "/.well-known/smart-configuration",
                "/fhir/metadata",
                "/fhir/.well-known/smart-configuration",
            ]
        );
        let cacheable: Vec<&str> = table().iter().filter(|r| r.cacheable()).map(|r| r.pattern.as_str()).collect();
        assert_eq!(cacheable, ["/livez", "/readyz", "/metrics", "/fhir/metadata"]);
        for route in table() {
            assert_eq!(route.audited(), route.pattern.starts_with("/fhir") && !route.public(), "{}", route.pattern);
        }
        assert!(!Matched::default().public() && Matched::default().name() == "unmatched");
    }

    #[test]
    fn the_telemetry_type_comes_from_the_route() {
        for (pattern, expected) in [
            ("/fhir/Task/{id}", "Task"),
            ("/fhir/CarePlan/{id}/$summary", "CarePlan"),
            ("/fhir/Task", "Task"),
            ("/fhir", "Bundle"),
            ("/fhir/", "Bundle"),
            ("/fhir/metadata", "none"),
            ("/fhir/_history", "none"),
            ("/livez", "none"),
        ] {
            let route = at(HttpMethod::GET, pattern).at.unwrap_or_else(|| panic!("{pattern}"));
            assert_eq!(route.telemetry_type(), expected, "{pattern}");
        }
    }

    #[test]
    fn documented_paths_drop_regular_expressions() {
        let docs = at(HttpMethod::GET, "/docs/{file:[^/]*}").at.expect("docs");
        assert_eq!(docs.documented_path(), "/docs/{file}");
        let vread = at(HttpMethod::GET, "/fhir/Task/{id}/_history/{vid}").at.expect("vread");
        assert_eq!(vread.documented_path(), "/fhir/Task/{id}/_history/{vid}");
    }
}
