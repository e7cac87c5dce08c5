//! `Settings`: everything the server is configured with, from `CAREPLAN_*` environment variables
//! or the `--flags` that mirror them (see `cli.rs` and the README's table). Their ranges are the
//! `#[validate]` attributes, checked once at start-up by [`Settings::check`].

use std::path::PathBuf;
use std::time::Duration;

use persistence::StoreConfig;
use validator::{Validate, ValidationError, ValidationErrors, ValidationErrorsKind};

use domain::WorkflowPolicy;

/// The running server's configuration.
#[derive(Debug, Clone, Validate)]
// Struct-level checks run once the fields' own pass, and name the field they refuse by their
// `code`. `StoreConfig` is `persistence`'s, so its timeouts are checked from here.
#[validate(
    schema(function = "counts", code = "default_count"),
    schema(function = "acquire_timeout", code = "database.acquire_timeout"),
    schema(function = "statement_timeout", code = "database.statement_timeout")
)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port (tests).
    pub addr: String,
    pub database: StoreConfig,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
    /// Largest accepted request body; larger ones get 413.
    #[validate(range(min = 1024))]
    pub max_body_bytes: usize,
    /// The public FHIR base URL (e.g. `https://care.example.org/fhir`); derived from the
    /// request's Host when unset.
    pub base_url: Option<String>,
    /// Default and maximum page size of history Bundles.
    #[validate(range(min = 1))]
    pub default_count: u64,
    #[validate(range(min = 1, max = 10_000))]
    pub max_count: u64,
    /// Care-coordination rules: plan and team consistency, terminal-state reopening.
    pub rules: Rules,
    /// A request header naming the acting Practitioner/Organization (`Type/id`) for the Task
    /// role rules, for development until tokens carry `fhirUser`. Unset: no identity.
    pub actor_header: Option<String>,
    /// Record a Provenance with every change of a CarePlan, CareTeam or Task.
    pub provenance: bool,
    /// Most entries a transaction or batch Bundle may hold.
    #[validate(range(min = 1))]
    pub max_bundle_entries: usize,
    /// Most operations one PATCH document may hold (the patched resource is bounded by
    /// `max_body_bytes`).
    #[validate(range(min = 1))]
    pub max_patch_operations: usize,
    /// Whether a conditional delete may delete several matches (otherwise 412).
    pub multiple_delete: bool,
    /// Longest time one request may take before it is answered with 503. Each database
    /// statement is stopped a little earlier (`database.statement_timeout`; when unset, 9/10 of
    /// this), so that work ends with its request and frees its connection.
    #[validate(custom(function = "positive"))]
    pub request_timeout: Duration,
    /// How costly one search (or conditional criteria) may be; more is refused with 400.
    pub search_limits: domain::search::Limits,
    /// On SIGTERM, how long requests in flight may run on before the server stops anyway.
    pub shutdown_grace: Duration,
    /// HTTP worker threads; the number of CPU cores when unset.
    #[validate(range(min = 1, max = 1024))]
    pub workers: Option<usize>,
    /// How often the overdue job marks newly overdue Tasks (`jobs.rs`); zero disables it.
    pub overdue_interval: Duration,
    /// SMART on FHIR bearer-token authorization.
    #[validate(nested)]
    pub auth: AuthSettings,
    /// Request limits, CORS and the rate limit.
    #[validate(nested)]
    pub hardening: Hardening,
    /// The audit trail.
    #[validate(nested)]
    pub audit: AuditSettings,
    /// Topic-based subscriptions: where notifications may go and how they are delivered.
    #[validate(nested)]
    pub subscriptions: SubscriptionSettings,
    /// FHIR Bulk Data export (`export.rs`).
    #[validate(nested)]
    pub export: ExportSettings,
}

/// How bulk export jobs run and how long their files are kept (`export.rs`).
#[derive(Debug, Clone, Validate)]
pub struct ExportSettings {
    /// How often each replica looks for a job to run (and for expired ones to delete); a
    /// kick-off on this replica wakes it at once. Zero: this replica runs no export job.
    pub poll: Duration,
    /// How long a replica holds a job it is writing before another may take it over (the
    /// lease is renewed with every page written).
    #[validate(custom(function = "positive"))]
    pub lease: Duration,
    /// Seconds a finished job's files are kept, from when it finished (1 minute to 30 days).
    #[validate(range(min = 60, max = 2_592_000))]
    pub retention_secs: u64,
    /// Most resources (lines) in one NDJSON file; a type with more is split into several.
    #[validate(range(min = 1, max = 10_000_000))]
    pub max_lines_per_file: u64,
    /// Most export jobs one client may have running; one more kick-off is refused with 429.
    #[validate(range(min = 1, max = 100))]
    pub max_jobs_per_client: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            retention_secs: 3600,
            max_lines_per_file: 100_000,
            max_jobs_per_client: 2,
        }
    }
}

/// How notifications are delivered (`subscriptions/dispatch.rs`).
#[derive(Debug, Clone, Validate)]
pub struct SubscriptionSettings {
    /// URL prefixes a Subscription's endpoint must start with; empty: none is allowed, so no
    /// subscription can be created (no delivery to arbitrary hosts).
    pub endpoints: std::sync::Arc<[String]>,
    /// How often each replica's dispatcher looks for due notifications; zero disables it.
    pub poll: Duration,
    /// How long a claimed subscription stays with one replica before another may take it.
    #[validate(custom(function = "positive"))]
    pub lease: Duration,
    /// Longest a delivery may take, unless the Subscription asks for less (`backport-timeout`).
    #[validate(custom(function = "positive"))]
    pub timeout: Duration,
    /// Failed deliveries in a row that move an active subscription to `error`.
    #[validate(range(min = 1))]
    pub max_failures: u32,
    /// The first retry waits `retry_base`, each further one twice as long, at most `retry_max`.
    #[validate(custom(function = "positive"))]
    pub retry_base: Duration,
    #[validate(custom(function = "positive"))]
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
#[derive(Debug, Clone, Validate)]
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
    #[validate(custom(function = "positive"))]
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
#[derive(Debug, Clone, Validate)]
pub struct Hardening {
    /// Origins allowed to call the API from a browser (`*` for any); empty: CORS closed.
    pub cors_origins: Vec<String>,
    /// Largest total size of the request headers; larger get 431.
    #[validate(range(min = 1024))]
    pub max_header_bytes: usize,
    /// Requests per second per client (token subject, else IP); `None`: no limit.
    #[validate(nested)]
    pub rate_limit: Option<RateLimit>,
}

/// A per-client token bucket.
#[derive(Debug, Clone, Copy, Validate)]
pub struct RateLimit {
    #[validate(range(min = 1))]
    pub per_second: u32,
    #[validate(range(min = 1))]
    pub burst: u32,
}

impl Default for Hardening {
    fn default() -> Self {
        Self { cors_origins: Vec::new(), max_header_bytes: 16 * 1024, rate_limit: None }
    }
}

/// Where audit records go besides the database.
#[derive(Debug, Clone, Validate)]
pub struct AuditSettings {
    /// Also write each record to the log (no bodies, names or identifiers: the record only).
    pub log: bool,
    /// Records waiting for the background writer; a full queue makes requests wait.
    #[validate(range(min = 1))]
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
    /// Every `#[validate]` range at once; the error names each bad setting by its `CAREPLAN_*`
    /// variable, on one line: `invalid configuration: CAREPLAN_WORKERS must be between 1 and
    /// 1024, not 0; …`.
    pub fn check(&self) -> anyhow::Result<()> {
        let Err(errors) = self.validate() else { return Ok(()) };
        let mut problems = Vec::new();
        describe(&errors, "", &mut problems);
        problems.sort();
        anyhow::bail!("invalid configuration: {}", problems.join("; "))
    }

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
            export: ExportSettings { poll: Duration::from_millis(50), ..ExportSettings::default() },
        }
    }
}

/// A duration that must not be zero (`range` takes numbers only).
fn positive(duration: &Duration) -> Result<(), ValidationError> {
    match duration.is_zero() {
        true => Err(ValidationError::new("positive").with_message("must be more than zero".into())),
        false => Ok(()),
    }
}

fn counts(settings: &Settings) -> Result<(), ValidationError> {
    if settings.default_count <= settings.max_count {
        return Ok(());
    }
    let mut err = ValidationError::new("counts")
        .with_message(format!("must be at most CAREPLAN_MAX_COUNT ({})", settings.max_count).into());
    err.add_param("value".into(), &settings.default_count);
    Err(err)
}

fn acquire_timeout(settings: &Settings) -> Result<(), ValidationError> {
    positive(&settings.database.acquire_timeout)
}

fn statement_timeout(settings: &Settings) -> Result<(), ValidationError> {
    settings.database.statement_timeout.as_ref().map_or(Ok(()), positive)
}

/// `errors` as `VARIABLE must …`, each into `out`; `prefix` is the path of the struct they are in.
fn describe(errors: &ValidationErrors, prefix: &str, out: &mut Vec<String>) {
    for (field, kind) in errors.errors() {
        let path = format!("{prefix}{field}");
        match kind {
            ValidationErrorsKind::Field(errs) => out.extend(errs.iter().map(|err| {
                let path = if field == "__all__" { format!("{prefix}{}", err.code) } else { path.clone() };
                let param = |name| err.params.get(name).map(ToString::to_string);
                let rule = match (&err.message, param("min"), param("max")) {
                    (Some(message), ..) => message.to_string(),
                    (None, Some(min), Some(max)) => format!("must be between {min} and {max}"),
                    (None, Some(min), None) => format!("must be at least {min}"),
                    (None, None, Some(max)) => format!("must be at most {max}"),
                    (None, None, None) => format!("is invalid ({})", err.code),
                };
                let value = err.params.get("value").filter(|v| v.is_number()).map(|v| format!(", not {v}"));
                format!("{} {rule}{}", variable(&path), value.unwrap_or_default())
            })),
            ValidationErrorsKind::Struct(inner) => describe(inner, &format!("{path}."), out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    describe(inner, &format!("{path}[{index}]."), out);
                }
            }
        }
    }
}

/// The `CAREPLAN_*` variable (and so `--flag`, see `cli.rs`) a checked field is read from; the
/// field's path for any other.
fn variable(field: &str) -> &str {
    match field {
        "max_body_bytes" => "CAREPLAN_MAX_BODY_BYTES",
        "default_count" => "CAREPLAN_DEFAULT_COUNT",
        "max_count" => "CAREPLAN_MAX_COUNT",
        "max_bundle_entries" => "CAREPLAN_MAX_BUNDLE_ENTRIES",
        "max_patch_operations" => "CAREPLAN_MAX_PATCH_OPERATIONS",
        "request_timeout" => "CAREPLAN_REQUEST_TIMEOUT_SECS",
        "workers" => "CAREPLAN_WORKERS",
        "database.acquire_timeout" => "CAREPLAN_DATABASE_ACQUIRE_TIMEOUT_SECS",
        "database.statement_timeout" => "CAREPLAN_STATEMENT_TIMEOUT_MS",
        "auth.jwks_max_age" => "CAREPLAN_AUTH_JWKS_MAX_AGE_SECS",
        "hardening.max_header_bytes" => "CAREPLAN_MAX_HEADER_BYTES",
        "hardening.rate_limit.per_second" => "CAREPLAN_RATE_LIMIT_PER_SECOND",
        "hardening.rate_limit.burst" => "CAREPLAN_RATE_LIMIT_BURST",
        "audit.queue" => "CAREPLAN_AUDIT_QUEUE",
        "subscriptions.lease" => "CAREPLAN_SUBSCRIPTION_LEASE_SECS",
        "subscriptions.timeout" => "CAREPLAN_SUBSCRIPTION_TIMEOUT_SECS",
        "subscriptions.max_failures" => "CAREPLAN_SUBSCRIPTION_MAX_FAILURES",
        "subscriptions.retry_base" => "CAREPLAN_SUBSCRIPTION_RETRY_SECS",
        "subscriptions.retry_max" => "CAREPLAN_SUBSCRIPTION_RETRY_MAX_SECS",
        "export.lease" => "CAREPLAN_EXPORT_LEASE_SECS",
        "export.retention_secs" => "CAREPLAN_EXPORT_RETENTION_SECS",
        "export.max_lines_per_file" => "CAREPLAN_EXPORT_MAX_LINES_PER_FILE",
        "export.max_jobs_per_client" => "CAREPLAN_EXPORT_MAX_JOBS_PER_CLIENT",
        other => other,
    }
}

/// How the plan and team consistency rules apply (`CAREPLAN_REFERENCE_RULES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RuleMode {
    /// A write that breaks a rule is refused (422).
    Enforce,
    /// The write is stored; the broken rules are reported as warnings. The default: EHRs
    /// reference plans and teams that another server holds (the official examples do).
    #[default]
    Warn,
    /// Not checked.
    Off,
}

/// The deployment's care-coordination settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules {
    pub references: RuleMode,
    pub policy: WorkflowPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `check` says of the test settings once `change` is made to them.
    fn check(change: impl FnOnce(&mut Settings)) -> String {
        let mut settings = Settings::for_tests("sqlite::memory:", None);
        change(&mut settings);
        settings.check().err().map_or_else(|| "valid".into(), |err| err.to_string())
    }

    #[test]
    fn the_test_settings_are_valid() {
        assert_eq!(check(|_| ()), "valid");
    }

    #[test]
    fn a_bad_value_is_refused_by_its_variable() {
        let refused = |change: fn(&mut Settings)| check(change).replace("invalid configuration: ", "");
        assert_eq!(refused(|s| s.max_body_bytes = 0), "CAREPLAN_MAX_BODY_BYTES must be at least 1024, not 0");
        assert_eq!(refused(|s| s.workers = Some(0)), "CAREPLAN_WORKERS must be between 1 and 1024, not 0");
        assert_eq!(refused(|s| s.max_count = 20_000), "CAREPLAN_MAX_COUNT must be between 1 and 10000, not 20000");
        assert_eq!(
            refused(|s| s.default_count = 5000),
            "CAREPLAN_DEFAULT_COUNT must be at most CAREPLAN_MAX_COUNT (1000), not 5000"
        );
        assert_eq!(
            refused(|s| s.request_timeout = Duration::ZERO),
            "CAREPLAN_REQUEST_TIMEOUT_SECS must be more than zero"
        );
        assert_eq!(
            refused(|s| s.database.statement_timeout = Some(Duration::ZERO)),
            "CAREPLAN_STATEMENT_TIMEOUT_MS must be more than zero"
        );
        assert_eq!(
            refused(|s| s.hardening.rate_limit = Some(RateLimit { per_second: 10, burst: 0 })),
            "CAREPLAN_RATE_LIMIT_BURST must be at least 1, not 0"
        );
        assert_eq!(
            refused(|s| s.export.retention_secs = 10),
            "CAREPLAN_EXPORT_RETENTION_SECS must be between 60 and 2592000, not 10"
        );
        assert_eq!(
            refused(|s| s.export.max_jobs_per_client = 0),
            "CAREPLAN_EXPORT_MAX_JOBS_PER_CLIENT must be between 1 and 100, not 0"
        );
    }

    #[test]
    fn every_bad_value_is_named_on_one_line() {
        let refusal = check(|s| {
            s.audit.queue = 0;
            s.subscriptions.retry_max = Duration::ZERO;
            s.hardening.max_header_bytes = 10;
        });
        assert_eq!(
            refusal,
            "invalid configuration: CAREPLAN_AUDIT_QUEUE must be at least 1, not 0; CAREPLAN_MAX_HEADER_BYTES must be at \
             least 1024, not 10; CAREPLAN_SUBSCRIPTION_RETRY_MAX_SECS must be more than zero"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Telemetry: the log filter and format, and the OpenTelemetry SDK's standard variables, read
// here with the rest of the configuration (the subscriber and the exporters are built from
// them in `telemetry` and `metrics`).

/// `CAREPLAN_LOG`: tracing-subscriber filter directives (`info` when unset or malformed).
pub(crate) fn log_directives() -> Option<String> {
    std::env::var("CAREPLAN_LOG").ok()
}

/// `CAREPLAN_LOG_FORMAT=text`: plain log lines instead of JSON.
pub(crate) fn log_as_text() -> bool {
    std::env::var("CAREPLAN_LOG_FORMAT").is_ok_and(|f| f == "text")
}

/// Whether `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name the service (else it is
/// `careplan`).
pub(crate) fn otel_service_named() -> bool {
    std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="))
}

/// A kind of telemetry exported over OTLP.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

/// Whether the standard variables ask for OTLP export of `signal`: an endpoint is set
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` or the signal's own), the SDK is not disabled
/// (`OTEL_SDK_DISABLED`) and the signal's exporter is not `none` (`OTEL_TRACES_EXPORTER`,
/// `OTEL_METRICS_EXPORTER`).
pub(crate) fn otlp_configured(signal: Signal) -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let (endpoint, exporter) = match signal {
        Signal::Traces => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"),
        Signal::Metrics => ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRICS_EXPORTER"),
    };
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var(exporter).is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set(endpoint))
}
