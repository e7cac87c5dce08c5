//! `Settings`: everything the server is configured with, from `CAREPLAN_*` environment variables
//! or the `--flags` that mirror them (see `cli.rs` and the README's table).

use std::path::PathBuf;
use std::time::Duration;

use persistence::StoreConfig;

use crate::coordination::Rules;

/// The running server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub addr: String,
    pub database: StoreConfig,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// The public FHIR base URL (e.g. `https://care.example.org/fhir`); derived from the
    /// request's Host when unset.
    pub base_url: Option<String>,
    /// Default and maximum page size of history Bundles.
    pub default_count: u64,
    pub max_count: u64,
    /// Care-coordination rules: plan and team consistency, terminal-state reopening.
    pub rules: Rules,
    /// A request header naming the acting Practitioner/Organization (`Type/id`) for the Task
    /// role rules, for development until tokens carry `fhirUser`. Unset: no identity.
    pub actor_header: Option<String>,
    /// Record a Provenance with every change of a CarePlan, CareTeam or Task.
    pub provenance: bool,
    /// Most entries a transaction or batch Bundle may hold.
    pub max_bundle_entries: usize,
    /// Most operations one PATCH document may hold (the patched resource is bounded by
    /// `max_body_bytes`).
    pub max_patch_operations: usize,
    /// Whether a conditional delete may delete several matches (otherwise 412).
    pub multiple_delete: bool,
    /// Longest time one request may take before it is answered with 503. Each database
    /// statement is stopped a little earlier (`database.statement_timeout`; when unset, 9/10 of
    /// this), so that work ends with its request and frees its connection.
    pub request_timeout: Duration,
    /// How costly one search (or conditional criteria) may be; more is refused with 400.
    pub search_limits: domain::search::Limits,
    /// On SIGTERM, how long requests in flight may run on before the server stops anyway.
    pub shutdown_grace: Duration,
    /// HTTP worker threads; the number of CPU cores when unset.
    pub workers: Option<usize>,
    /// How often the overdue job marks newly overdue Tasks (`jobs.rs`); zero disables it.
    pub overdue_interval: Duration,
    /// SMART on FHIR bearer-token authorization.
    pub auth: AuthSettings,
    /// Request limits, CORS and the rate limit.
    pub hardening: Hardening,
    /// The audit trail.
    pub audit: AuditSettings,
    /// Topic-based subscriptions: where notifications may go and how they are delivered.
    pub subscriptions: SubscriptionSettings,
}

/// How notifications are delivered (`subscriptions/dispatch.rs`).
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    /// URL prefixes a Subscription's endpoint must start with; empty: none is allowed, so no
    /// subscription can be created (no delivery to arbitrary hosts).
    pub endpoints: std::sync::Arc<[String]>,
    /// How often each replica's dispatcher looks for due notifications; zero disables it.
    pub poll: Duration,
    /// How long a claimed subscription stays with one replica before another may take it.
    pub lease: Duration,
    /// Longest a delivery may take, unless the Subscription asks for less (`backport-timeout`).
    pub timeout: Duration,
    /// Failed deliveries in a row that move an active subscription to `error`.
    pub max_failures: u32,
    /// The first retry waits `retry_base`, each further one twice as long, at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        Self {
            endpoints: std::sync::Arc::from(Vec::new()),
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            max_failures: 5,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
        }
    }
}

/// How bearer tokens are checked (see `auth/`). On unless `disabled`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// No authorization at all: every request may do everything. For local use only.
    pub disabled: bool,
    /// The `iss` every token must carry (the authorization server).
    pub issuer: Option<String>,
    /// The `aud` every token must carry (this server).
    pub audience: Option<String>,
    /// Where the authorization server publishes its signing keys (JWKS).
    pub jwks_url: Option<String>,
    /// PEM files holding public keys (RSA or EC), instead of or besides the JWKS.
    pub public_key_files: Vec<PathBuf>,
    /// The accepted signing algorithms, a subset of RS256, RS384, ES256, ES384.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Least time between two JWKS fetches caused by unknown key ids.
    pub jwks_min_refresh: Duration,
    /// Keys older than this are fetched again on the next request that needs them.
    pub jwks_max_age: Duration,
    /// The authorization server's endpoints, published in the SMART configuration.
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
}

impl AuthSettings {
    /// Authorization switched off (tests of other concerns; `make run`).
    pub fn disabled() -> Self {
        Self {
            disabled: true,
            issuer: None,
            audience: None,
            jwks_url: None,
            public_key_files: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.iter().map(|a| (*a).to_owned()).collect(),
            leeway: Duration::from_secs(60),
            jwks_min_refresh: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            authorize_url: None,
            token_url: None,
        }
    }
}

/// The signing algorithms accepted unless configured otherwise: never `none`, never HMAC.
pub const DEFAULT_ALGORITHMS: [&str; 4] = ["RS256", "RS384", "ES256", "ES384"];

/// Limits and browser-facing policy.
#[derive(Debug, Clone)]
pub struct Hardening {
    /// Origins allowed to call the API from a browser (`*` for any); empty: CORS closed.
    pub cors_origins: Vec<String>,
    /// Largest total size of the request headers; larger get 431.
    pub max_header_bytes: usize,
    /// Requests per second per client (token subject, else IP); `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// A per-client token bucket.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for Hardening {
    fn default() -> Self {
        Self { cors_origins: Vec::new(), max_header_bytes: 16 * 1024, rate_limit: None }
    }
}

/// Where audit records go besides the database.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Also write each record to the log (no bodies, names or identifiers: the record only).
    pub log: bool,
    /// Records waiting for the background writer; a full queue makes requests wait.
    pub queue: usize,
    /// The secret the log's patient hash is keyed with (HMAC-SHA-256); without one the log
    /// line carries no patient field.
    pub log_key: Option<String>,
    /// Log lines name the resource id (`Type/id`, valid FHIR ids only), not just its type.
    pub log_ids: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self { log: false, queue: 8192, log_key: None, log_ids: false }
    }
}

impl Settings {
    /// The statement timeout in force: the configured one, else 9/10 of the request timeout
    /// (at least 100 ms), so a statement is stopped before its request is given up.
    pub fn statement_timeout(&self) -> Duration {
        self.database
            .statement_timeout
            .unwrap_or_else(|| (self.request_timeout * 9 / 10).max(Duration::from_millis(100)))
    }

    /// Defaults suitable for tests: the given database, a random port, migrations applied.
    pub fn for_tests(database_url: &str, schema: Option<String>) -> Self {
        Self {
            addr: "127.0.0.1:0".into(),
            database: StoreConfig {
                url: database_url.into(),
                schema,
                max_connections: 8,
                acquire_timeout: Duration::from_secs(10),
                cache_bytes: 8 * 1024 * 1024,
                statement_timeout: None,
            },
            migrate: true,
            max_body_bytes: 10 * 1024 * 1024,
            base_url: None,
            default_count: 50,
            max_count: 1000,
            rules: Rules::default(),
            actor_header: Some("x-careplan-actor".into()),
            provenance: true,
            max_bundle_entries: 1000,
            max_patch_operations: domain::patch::PatchLimits::DEFAULT_MAX_OPERATIONS,
            multiple_delete: false,
            request_timeout: Duration::from_secs(30),
            search_limits: domain::search::Limits::default(),
            shutdown_grace: Duration::from_secs(30),
            workers: Some(2),
            // Tests run the job themselves (`Application::jobs`), when they choose.
            overdue_interval: Duration::ZERO,
            auth: AuthSettings::disabled(),
            hardening: Hardening::default(),
            audit: AuditSettings::default(),
            subscriptions: SubscriptionSettings {
                poll: Duration::from_millis(50),
                lease: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
                max_failures: 3,
                retry_base: Duration::from_millis(100),
                retry_max: Duration::from_millis(400),
                ..SubscriptionSettings::default()
            },
        }
    }
}
