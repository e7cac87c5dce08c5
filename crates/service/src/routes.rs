//! The whole HTTP surface on one screen: one typed table of routes. Each resource type is one
//! line (`resource::<R>()`), each other route one entry. Read from this table: the actix
//! registration, what the authentication middleware lets through without a token, the audit
//! record's BALP action and subtype (and whether a request is audited at all), the telemetry
//! names (route pattern and resource type), which answers may be cached, and the OpenAPI
//! operations. `observe` looks each request's route up once (`Matched`, in the request
//! extensions); no middleware parses paths.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::Method as HttpMethod;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpMessage, HttpRequest};
use domain::audit::Action;
use domain::Interaction as I;
use domain::{CarePlan, CareTeam, Goal, Interaction, Provenance, Resource, Subscription, Task};

use crate::audit::trail;
use crate::auth::discovery;
use crate::interactions::{self as i, method_not_allowed, unknown_type};
use crate::subscriptions::operations as subscription;
use crate::{capabilities, docs, health, metrics, openapi, plan_summary, search, transaction};

/// The FHIR base: the scope every FHIR route is registered in.
pub(crate) const FHIR: &str = "/fhir";

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
        Route::new(Get, "/fhir/AuditEvent", "", Interaction(I::SearchType), |r| r.to(trail::search)),
        Route::new(Get, "/fhir/AuditEvent", "/{id}", Interaction(I::Read), |r| r.to(trail::read)),
        Route::new(Get, "/fhir/SearchParameter", "/{id}", Interaction(I::Read), |r| {
            r.to(capabilities::search_parameter)
        }),
    ];
    table.extend(resource::<CarePlan>());
    table.push(Route::new(Get, "/fhir/CarePlan", "/{id}/$summary", Operation, |r| r.to(plan_summary::summary)));
    table.extend(resource::<CareTeam>());
    table.extend(resource::<Goal>());
    table.extend(resource::<Task>());
    table.extend(resource::<Provenance>());
    table.extend(resource::<Subscription>());
    table.extend([
        Route::new(Get, "/fhir/Subscription", "/{id}/$status", Operation, |r| r.to(subscription::status)),
        Route::new(Get, "/fhir/Subscription", "/{id}/$events", Operation, |r| r.to(subscription::events)),
        Route::new(Get, "/fhir/SubscriptionTopic", "", Interaction(I::SearchType), |r| r.to(subscription::topics)),
        Route::new(Get, "/fhir/SubscriptionTopic", "/{id}", Interaction(I::Read), |r| r.to(subscription::topic)),
    ]);
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
    vec![
        route(Post, "", Interaction(I::Create), |r| r.to(i::create::<R>)),
        route(Get, "", Interaction(I::SearchType), |r| r.to(search::search_get::<R>)),
        route(Put, "", Conditional(I::Update), |r| r.to(i::update_conditional::<R>)),
        route(Patch, "", Conditional(I::Patch), |r| r.to(i::patch_conditional::<R>)),
        route(Delete, "", Conditional(I::Delete), |r| r.to(i::delete_conditional::<R>)),
        route(Post, "/_search", Interaction(I::SearchType), |r| r.to(search::search_post::<R>)),
        route(Get, "/_history", Interaction(I::HistoryType), |r| r.to(i::history_type::<R>)),
        route(Get, "/{id}", Interaction(I::Read), |r| r.to(i::read::<R>)),
        route(Put, "/{id}", Interaction(I::Update), |r| r.to(i::update::<R>)),
        route(Patch, "/{id}", Interaction(I::Patch), |r| r.to(i::patch::<R>)),
        route(Delete, "/{id}", Interaction(I::Delete), |r| r.to(i::delete::<R>)),
        route(Get, "/{id}/_history", Interaction(I::HistoryInstance), |r| r.to(i::history_instance::<R>)),
        route(Get, "/{id}/_history/{vid}", Interaction(I::Vread), |r| r.to(i::vread::<R>)),
    ]
}

// ---------------------------------------------------------------------------------------------
// The table's types.

/// An HTTP method the surface serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    /// The method of a request, if it is one the surface serves.
    fn of(method: &HttpMethod) -> Option<Method> {
        Some(match *method {
            HttpMethod::GET => Method::Get,
            HttpMethod::POST => Method::Post,
            HttpMethod::PUT => Method::Put,
            HttpMethod::PATCH => Method::Patch,
            HttpMethod::DELETE => Method::Delete,
            _ => return None,
        })
    }

    fn http(self) -> HttpMethod {
        match self {
            Method::Get => HttpMethod::GET,
            Method::Post => HttpMethod::POST,
            Method::Put => HttpMethod::PUT,
            Method::Patch => HttpMethod::PATCH,
            Method::Delete => HttpMethod::DELETE,
        }
    }

    /// The method's key in an OpenAPI Path Item Object.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Put => "put",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Does {
    /// A RESTful interaction on the route's resource type.
    Interaction(Interaction),
    /// The conditional form of one (update, patch, delete): the criteria are the query.
    Conditional(Interaction),
    /// `POST [base]`: a transaction or batch Bundle.
    Transaction,
    /// History of every resource.
    HistorySystem,
    /// A read-only FHIR operation on an instance (`$summary`, `$status`, `$events`).
    Operation,
    /// The CapabilityStatement (public, cacheable, not audited).
    Capabilities,
    /// SMART discovery (public, not audited).
    Discovery,
    /// Health probes and metrics (public, cacheable: no PHI by construction).
    Probe,
    /// The API description and its UI (public).
    Description,
}

/// One route: a method on a pattern, what it does and the handler it is registered with.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) method: Method,
    /// The pattern as actix matches it (`/fhir/Task/{id}`): the scope, then the path in it.
    pub(crate) pattern: String,
    /// Where the outer scope (`/fhir`, `/docs` or none) and the inner one (`/Task`) end.
    scopes: (usize, usize),
    pub(crate) does: Does,
    /// The resource type the route addresses (`Task`, `AuditEvent`), if any.
    pub(crate) resource_type: Option<String>,
    to: fn(actix_web::Route) -> actix_web::Route,
}

impl Route {
    fn new(method: Method, scope: &str, path: &str, does: Does, to: fn(actix_web::Route) -> actix_web::Route) -> Self {
        let outer = scope[1.min(scope.len())..].find('/').map_or(scope.len(), |at| at + 1);
        let resource_type = scope
            .strip_prefix(FHIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        Route { method, pattern: format!("{scope}{path}"), scopes: (outer, scope.len()), does, resource_type, to }
    }

    fn outer(&self) -> &str {
        &self.pattern[..self.scopes.0]
    }

    fn inner(&self) -> &str {
        &self.pattern[self.scopes.0..self.scopes.1]
    }

    fn path(&self) -> &str {
        &self.pattern[self.scopes.1..]
    }

    /// Served without a token: probes, discovery, the CapabilityStatement and the API
    /// description (none holds PHI).
    pub(crate) fn public(&self) -> bool {
        matches!(self.does, Does::Capabilities | Does::Discovery | Does::Probe | Does::Description)
    }

    /// Its answers may be cached (no `Cache-Control: no-store`).
    pub(crate) fn cacheable(&self) -> bool {
        matches!(self.does, Does::Capabilities | Does::Probe)
    }

    /// Recorded in the audit trail: every FHIR request but the public ones.
    pub(crate) fn audited(&self) -> bool {
        self.outer() == FHIR && !self.public()
    }

    /// The BALP action and restful-interaction subtype of its audit record.
    pub(crate) fn audit(&self) -> (Action, &'static str) {
        match self.does {
            Does::Interaction(interaction) | Does::Conditional(interaction) => match interaction {
                I::Create => (Action::Create, "create"),
                I::Update => (Action::Update, "update"),
                I::Patch => (Action::Update, "patch"),
                I::Delete => (Action::Delete, "delete"),
                I::SearchType => (Action::Execute, "search-type"),
                I::Read | I::Vread | I::HistoryInstance | I::HistoryType => (Action::Read, interaction.code()),
            },
            Does::Transaction => (Action::Execute, "transaction"),
            Does::HistorySystem => (Action::Read, "history-system"),
            Does::Operation | Does::Capabilities | Does::Discovery | Does::Probe | Does::Description => {
                (Action::Read, "read")
            }
        }
    }

    /// The resource type telemetry names (`fhir.resource_type`): the route's type, `Bundle`
    /// for the transaction endpoint, else `none`.
    pub(crate) fn telemetry_type(&self) -> &str {
        match self.does {
            Does::Transaction => "Bundle",
            _ => self.resource_type.as_deref().unwrap_or("none"),
        }
    }

    /// The path as OpenAPI writes it: the pattern without its regular expressions.
    pub(crate) fn documented_path(&self) -> String {
        let mut out = String::with_capacity(self.pattern.len());
        let mut in_regex = false;
        for c in self.pattern.chars() {
            match c {
                ':' if out.rfind('{') > out.rfind('}') => in_regex = true,
                '}' => {
                    in_regex = false;
                    out.push(c);
                }
                _ if in_regex => {}
                _ => out.push(c),
            }
        }
        out
    }
}

/// The table, built once.
static TABLE: LazyLock<Vec<Route>> = LazyLock::new(build);

/// Each pattern's routes (their indices in the table).
static BY_PATTERN: LazyLock<HashMap<&'static str, Vec<usize>>> = LazyLock::new(|| {
    let mut map: HashMap<&'static str, Vec<usize>> = HashMap::new();
    for (at, route) in TABLE.iter().enumerate() {
        map.entry(route.pattern.as_str()).or_default().push(at);
    }
    map
});

/// Every route, in registration order.
pub(crate) fn table() -> &'static [Route] {
    &TABLE
}

/// Whether the table serves a resource type of this name (`Task`, `AuditEvent`).
pub(crate) fn serves_type(name: &str) -> bool {
    TABLE.iter().any(|route| route.resource_type.as_deref() == Some(name))
}

// ---------------------------------------------------------------------------------------------
// Registration.

/// Register every route of the table: the root routes, then each scope (`/docs`, `/fhir`)
/// with its nested scopes (one per resource type), grouped in table order. Under the FHIR base
/// a method a path does not serve is 405 and a path no route serves 404 (an OperationOutcome).
pub(crate) fn configure(cfg: &mut ServiceConfig) {
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

// ---------------------------------------------------------------------------------------------
// The route of a request.

/// What the router matched for a request: the routes of its pattern, and the one of its
/// method. Looked up once (by the outermost observing middleware) and kept in the request
/// extensions; the authentication, audit and header middleware read it from there.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Matched {
    /// A route of the matched pattern (every route of a pattern agrees on what is public,
    /// audited and cacheable, and on the resource type); `None` when no pattern matched.
    pub(crate) at: Option<&'static Route>,
    /// The route of the request's method there; `None` for a method the path does not serve.
    pub(crate) route: Option<&'static Route>,
}

impl Matched {
    /// Look a request up in the table: actix matches its path (regex work), once.
    pub(crate) fn of(req: &HttpRequest) -> Matched {
        Matched::lookup(req.method(), req.match_pattern().as_deref())
    }

    /// The routes of `pattern` and the one of `method`.
    pub(crate) fn lookup(method: &HttpMethod, pattern: Option<&str>) -> Matched {
        let Some(indices) = pattern.and_then(|p| BY_PATTERN.get(p)) else { return Matched::default() };
        let method = Method::of(method);
        Matched {
            at: indices.first().map(|at| &TABLE[*at]),
            route: indices.iter().map(|at| &TABLE[*at]).find(|route| Some(route.method) == method),
        }
    }

    /// The route pattern that names the request in telemetry, or `unmatched`.
    pub(crate) fn name(&self) -> &'static str {
        self.at.map_or("unmatched", |route| route.pattern.as_str())
    }

    pub(crate) fn public(&self) -> bool {
        self.at.is_some_and(Route::public)
    }

    pub(crate) fn cacheable(&self) -> bool {
        self.at.is_some_and(Route::cacheable)
    }
}

/// The route a request matched: as the observing middleware left it, or looked up now.
pub(crate) fn matched(req: &HttpRequest) -> Matched {
    if let Some(matched) = req.extensions().get::<Matched>() {
        return *matched;
    }
    Matched::of(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(method: HttpMethod, pattern: &str) -> Matched {
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
