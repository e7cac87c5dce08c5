//! The route table's types and the table itself once installed: each `Route` is a method on a
//! pattern, what it does (`Does`) and its handler binding. The middleware reads what it needs
//! from the matched route (`Matched`, kept in the request extensions): authentication whether it
//! is public, the audit its BALP action and subtype, telemetry its name, the header middleware
//! whether it may be cached; the OpenAPI document lists the table. `routes.rs` builds the table
//! (it names the handlers) and registers it with actix; this module sits below every reader.

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::http::Method as HttpMethod;
use actix_web::{HttpMessage, HttpRequest};
use domain::audit::Action;
use domain::smart::Letter;
use domain::Interaction;
use domain::Interaction as I;

/// The FHIR base: the scope every FHIR route is registered in.
pub(crate) const FHIR: &str = "/fhir";

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
    pub(crate) fn of(method: &HttpMethod) -> Option<Method> {
        Some(match *method {
            HttpMethod::GET => Method::Get,
            HttpMethod::POST => Method::Post,
            HttpMethod::PUT => Method::Put,
            HttpMethod::PATCH => Method::Patch,
            HttpMethod::DELETE => Method::Delete,
            _ => return None,
        })
    }

    pub(crate) fn http(self) -> HttpMethod {
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
    /// A read-only FHIR operation on an instance (`$summary`, `$status`, `$events`): its name
    /// and the canonical URL of its OperationDefinition (the CapabilityStatement lists both).
    Operation { name: &'static str, definition: &'static str },
    /// A FHIR operation that creates resources (`PlanDefinition/[id]/$apply`: a CarePlan, its
    /// CareTeam and Tasks), audited as an execute; its writes are judged entry by entry.
    Execute { name: &'static str, definition: &'static str },
    /// A bulk export kick-off (`$export`, system or type level): it searches what it exports.
    Export { name: &'static str, definition: &'static str },
    /// A bulk export's status and files: a read, or a cancel by `DELETE` (only the client that
    /// kicked the export off may ask).
    ExportJob,
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
    pub(crate) scopes: (usize, usize),
    pub(crate) does: Does,
    /// The resource type the route addresses (`Task`, `AuditEvent`), if any.
    pub(crate) resource_type: Option<String>,
    pub(crate) to: fn(actix_web::Route) -> actix_web::Route,
}

impl Route {
    pub(crate) fn new(
        method: Method,
        scope: &str,
        path: &str,
        does: Does,
        to: fn(actix_web::Route) -> actix_web::Route,
    ) -> Self {
        let outer = scope[1.min(scope.len())..].find('/').map_or(scope.len(), |at| at + 1);
        let resource_type = scope
            .strip_prefix(FHIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|name| !name.is_empty())
            .map(str::to_owned);
        Route { method, pattern: format!("{scope}{path}"), scopes: (outer, scope.len()), does, resource_type, to }
    }

    pub(crate) fn outer(&self) -> &str {
        &self.pattern[..self.scopes.0]
    }

    pub(crate) fn inner(&self) -> &str {
        &self.pattern[self.scopes.0..self.scopes.1]
    }

    pub(crate) fn path(&self) -> &str {
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
            Does::Execute { .. } => (Action::Execute, "operation"),
            Does::HistorySystem => (Action::Read, "history-system"),
            Does::ExportJob if self.method == Method::Delete => (Action::Delete, "delete"),
            Does::Export { .. } => (Action::Execute, "operation"),
            Does::Operation { .. }
            | Does::ExportJob
            | Does::Capabilities
            | Does::Discovery
            | Does::Probe
            | Does::Description => (Action::Read, "read"),
        }
    }

    /// The SMART scope letter that allows what the route does, checked on its type before a
    /// handler runs (an operation reads). `None`: the route is judged otherwise (public, a
    /// Bundle judged entry by entry, the history of every type).
    pub(crate) fn letter(&self) -> Option<Letter> {
        match self.does {
            Does::Interaction(interaction) | Does::Conditional(interaction) => Some(match interaction {
                I::Read | I::Vread | I::HistoryInstance | I::HistoryType => Letter::Read,
                I::SearchType => Letter::Search,
                I::Create => Letter::Create,
                I::Update | I::Patch => Letter::Update,
                I::Delete => Letter::Delete,
            }),
            // An operation reads its instance; what an executed one writes is judged by the engine.
            Does::Operation { .. } | Does::Execute { .. } => Some(Letter::Read),
            // A type-level export searches its type (the handler checks each type of `_type`).
            Does::Export { .. } => Some(Letter::Search),
            Does::Transaction
            | Does::HistorySystem
            | Does::ExportJob
            | Does::Capabilities
            | Does::Discovery
            | Does::Probe
            | Does::Description => None,
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

/// The table, installed once by `routes::install` (which binds the handlers) before anything
/// reads it: the server's `configure`, the `openapi` command, the prerendering at start.
static TABLE: OnceLock<Table> = OnceLock::new();

struct Table {
    routes: Vec<Route>,
    /// Each pattern's routes (their indices in `routes`).
    by_pattern: HashMap<String, Vec<usize>>,
}

/// Install the table (the first call wins; later ones are no-ops).
pub(crate) fn install(build: impl FnOnce() -> Vec<Route>) {
    TABLE.get_or_init(|| {
        let routes = build();
        let mut by_pattern: HashMap<String, Vec<usize>> = HashMap::new();
        for (at, route) in routes.iter().enumerate() {
            by_pattern.entry(route.pattern.clone()).or_default().push(at);
        }
        Table { routes, by_pattern }
    });
}

/// Every route, in registration order; empty until installed.
pub(crate) fn table() -> &'static [Route] {
    TABLE.get().map_or(&[], |table| table.routes.as_slice())
}

/// Whether the table serves a resource type of this name (`Task`, `AuditEvent`).
pub(crate) fn serves_type(name: &str) -> bool {
    table().iter().any(|route| route.resource_type.as_deref() == Some(name))
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
        let Some(table) = TABLE.get() else { return Matched::default() };
        let Some(indices) = pattern.and_then(|p| table.by_pattern.get(p)) else { return Matched::default() };
        let method = Method::of(method);
        Matched {
            at: indices.first().map(|at| &table.routes[*at]),
            route: indices.iter().map(|at| &table.routes[*at]).find(|route| Some(route.method) == method),
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
