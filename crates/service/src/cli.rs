//! The command line: `careplan serve`, `migrate`, `reindex`, `openapi` and `templates load`, each flag mirroring a
//! `CAREPLAN_*` environment variable.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use persistence::{Store, StoreConfig};

use domain::workflow::WorkflowPolicy;

use crate::config::{
    AuditSettings, AuthSettings, ExportSettings, Hardening, RateLimit, Settings, SubscriptionSettings,
};
use crate::coordination::{RuleMode, Rules};
use crate::startup::Application;
use crate::telemetry;

#[derive(Parser, Debug)]
#[command(name = "careplan", version, about = "FHIR R4 shared care-plan service (CarePlan, CareTeam, Task)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the FHIR API (applies pending migrations first unless --no-migrate).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Rebuild the search index of every stored resource (after search-parameter definitions change).
    Reindex(DatabaseArgs),
    /// Print the OpenAPI description of the HTTP API as YAML (what openapi/openapi.yaml holds).
    Openapi,
    /// Plan templates (PlanDefinitions with their ActivityDefinitions).
    Templates(TemplatesArgs),
}

#[derive(Args, Debug)]
struct TemplatesArgs {
    #[command(subcommand)]
    action: TemplatesAction,
}

#[derive(Subcommand, Debug)]
enum TemplatesAction {
    /// Store the seed templates (templates/*.json: complex-care enrollment, transition to adult
    /// care) by conditional update on their canonical URLs: loading twice duplicates nothing.
    /// Takes the settings of `serve` (the database, the rules, Provenance).
    Load(Box<ServeArgs>),
}

#[derive(Args, Debug)]
struct DatabaseArgs {
    /// Database URL: sqlite://path/file.db (embedded) or postgres://user@host:port/db.
    #[arg(long, env = "CAREPLAN_DATABASE_URL", default_value = "sqlite://data/careplan.db")]
    database_url: String,
    /// PostgreSQL schema to hold the tables (created if missing).
    #[arg(long, env = "CAREPLAN_DATABASE_SCHEMA")]
    database_schema: Option<String>,
    /// Maximum pooled database connections.
    #[arg(long, env = "CAREPLAN_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    database_max_connections: u32,
    /// Seconds a request waits for a database connection.
    #[arg(long, env = "CAREPLAN_DATABASE_ACQUIRE_TIMEOUT_SECS", default_value_t = 5)]
    database_acquire_timeout_secs: u64,
    /// MiB each in-process resource cache may hold (0 disables them).
    #[arg(long, env = "CAREPLAN_CACHE_MIB", default_value_t = 16)]
    cache_mib: u64,
}

impl DatabaseArgs {
    fn store_config(&self) -> StoreConfig {
        StoreConfig {
            url: self.database_url.clone(),
            schema: self.database_schema.clone(),
            max_connections: self.database_max_connections,
            acquire_timeout: Duration::from_secs(self.database_acquire_timeout_secs),
            cache_bytes: self.cache_mib * 1024 * 1024,
            statement_timeout: None,
        }
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "CAREPLAN_ADDR", default_value = "127.0.0.1:8080")]
    addr: String,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "CAREPLAN_NO_MIGRATE")]
    no_migrate: bool,
    /// Largest accepted request body in bytes (larger ones get 413).
    #[arg(long, env = "CAREPLAN_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Public FHIR base URL used in Location headers and Bundle links (default: from the Host header).
    #[arg(long, env = "CAREPLAN_BASE_URL")]
    base_url: Option<String>,
    /// Default page size of history Bundles.
    #[arg(long, env = "CAREPLAN_DEFAULT_COUNT", default_value_t = 50)]
    default_count: u64,
    /// Largest page size a client may ask for with _count.
    #[arg(long, env = "CAREPLAN_MAX_COUNT", default_value_t = 1000)]
    max_count: u64,
    /// Plan and team consistency rules: enforce (422), warn, or off.
    #[arg(long, env = "CAREPLAN_REFERENCE_RULES", value_enum, default_value_t = RuleMode::Warn)]
    reference_rules: RuleMode,
    /// Let the requester reopen rejected, cancelled, failed or completed Tasks.
    #[arg(long, env = "CAREPLAN_REOPEN_TERMINAL_TASKS")]
    reopen_terminal_tasks: bool,
    /// Create Tasks only in requested, ready or draft (default: any status; transitions are
    /// always checked).
    #[arg(long, env = "CAREPLAN_STRICT_TASK_CREATE")]
    strict_task_create: bool,
    /// Header naming the acting Practitioner (`Practitioner/123`) for the Task role rules, for
    /// development and trusted gateways (e.g. x-careplan-actor). Unset: no identity.
    #[arg(long, env = "CAREPLAN_ACTOR_HEADER")]
    actor_header: Option<String>,
    /// Do not record a Provenance with every change (they are recorded by default).
    #[arg(long, env = "CAREPLAN_NO_PROVENANCE")]
    no_provenance: bool,
    /// Most entries a transaction or batch Bundle may hold.
    #[arg(long, env = "CAREPLAN_MAX_BUNDLE_ENTRIES", default_value_t = 1000)]
    max_bundle_entries: usize,
    /// Most operations one PATCH document (JSON Patch or FHIRPath Patch) may hold.
    #[arg(long, env = "CAREPLAN_MAX_PATCH_OPERATIONS", default_value_t = domain::patch::PatchLimits::DEFAULT_MAX_OPERATIONS)]
    max_patch_operations: usize,
    /// Let a conditional delete remove every match (otherwise several matches answer 412).
    #[arg(long, env = "CAREPLAN_MULTIPLE_DELETE")]
    multiple_delete: bool,
    /// Seconds one request may take before it is answered with 503.
    #[arg(long, env = "CAREPLAN_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// Milliseconds one database statement may run before the database stops it (default: 9/10
    /// of the request timeout).
    #[arg(long, env = "CAREPLAN_STATEMENT_TIMEOUT_MS")]
    statement_timeout_ms: Option<u64>,
    /// On SIGTERM, seconds requests in flight may take to finish before the server stops anyway.
    #[arg(long, env = "CAREPLAN_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
    #[command(flatten)]
    search_limits: SearchLimitArgs,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "CAREPLAN_WORKERS")]
    workers: Option<usize>,
    /// Seconds between runs of the job that marks newly overdue Tasks (0 disables it).
    #[arg(long, env = "CAREPLAN_OVERDUE_INTERVAL_SECS", default_value_t = 60)]
    overdue_interval_secs: u64,
    #[command(flatten)]
    auth: AuthArgs,
    /// Origins allowed to call the API from a browser, comma-separated (`*`: any). Default: none.
    #[arg(long, env = "CAREPLAN_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Largest total size of the request headers in bytes (larger get 431).
    #[arg(long, env = "CAREPLAN_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Requests per second allowed per client (token subject, else IP address); 0: no limit.
    #[arg(long, env = "CAREPLAN_RATE_LIMIT_PER_SECOND", default_value_t = 0)]
    rate_limit_per_second: u32,
    /// Requests a client may send at once above the rate (default: the rate).
    #[arg(long, env = "CAREPLAN_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// Also write every audit record to the log.
    #[arg(long, env = "CAREPLAN_AUDIT_LOG")]
    audit_log: bool,
    /// Audit records queued for the background writer before requests wait for it.
    #[arg(long, env = "CAREPLAN_AUDIT_QUEUE", default_value_t = 8192)]
    audit_queue: usize,
    /// Secret that keys the patient hash in audit log lines (HMAC-SHA-256); unset: no patient field.
    #[arg(long, env = "CAREPLAN_AUDIT_LOG_KEY", hide_env_values = true)]
    audit_log_key: Option<String>,
    /// Audit log lines name the resource id (valid FHIR ids of hosted types), not only its type.
    #[arg(long, env = "CAREPLAN_AUDIT_LOG_IDS")]
    audit_log_ids: bool,
    #[command(flatten)]
    subscriptions: SubscriptionArgs,
    #[command(flatten)]
    export: ExportArgs,
}

/// Bulk export jobs (`$export`).
#[derive(Args, Debug)]
struct ExportArgs {
    /// Milliseconds between looks for export jobs to run (0: this replica runs none).
    #[arg(long, env = "CAREPLAN_EXPORT_POLL_MS", default_value_t = 1000)]
    export_poll_ms: u64,
    /// Seconds a replica holds an export job before another may take it over.
    #[arg(long, env = "CAREPLAN_EXPORT_LEASE_SECS", default_value_t = 60)]
    export_lease_secs: u64,
    /// Seconds a finished export's files are kept (60 to 2592000).
    #[arg(long, env = "CAREPLAN_EXPORT_RETENTION_SECS", default_value_t = 3600)]
    export_retention_secs: u64,
    /// Most resources in one NDJSON file of an export (1 to 10000000).
    #[arg(long, env = "CAREPLAN_EXPORT_MAX_LINES_PER_FILE", default_value_t = 100_000)]
    export_max_lines_per_file: u64,
    /// Most export jobs one client may have running (1 to 100).
    #[arg(long, env = "CAREPLAN_EXPORT_MAX_JOBS_PER_CLIENT", default_value_t = 2)]
    export_max_jobs_per_client: u32,
}

impl ExportArgs {
    fn settings(&self) -> ExportSettings {
        ExportSettings {
            poll: Duration::from_millis(self.export_poll_ms),
            lease: Duration::from_secs(self.export_lease_secs),
            retention_secs: self.export_retention_secs,
            max_lines_per_file: self.export_max_lines_per_file,
            max_jobs_per_client: self.export_max_jobs_per_client,
        }
    }
}

/// How costly one search may be (`domain::search::Limits`); more is refused with 400 too-costly.
#[derive(Args, Debug)]
struct SearchLimitArgs {
    /// Most links of a chained search parameter (`part-of:Task.status` has 1); at most 8.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_CHAIN_DEPTH", default_value_t = 4)]
    search_max_chain_depth: usize,
    /// Most nested `_has` in one parameter; at most 8.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_HAS_DEPTH", default_value_t = 4)]
    search_max_has_depth: usize,
    /// Most rounds of `_include:iterate` / `_revinclude:iterate` after the first; at most 16.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_INCLUDE_DEPTH", default_value_t = 4)]
    search_max_include_depth: usize,
    /// Most parameters in one search; at most 256.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_PARAMS", default_value_t = 64)]
    search_max_params: usize,
    /// Most comma-separated values of one parameter; at most 500.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_VALUES_PER_PARAM", default_value_t = 100)]
    search_max_values_per_param: usize,
    /// Most values of all parameters together; at most 5000.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_VALUES", default_value_t = 1000)]
    search_max_values: usize,
    /// Most bytes of the decoded parameters of one search (query string or form body); at most 1 MiB.
    #[arg(long, env = "CAREPLAN_SEARCH_MAX_QUERY_BYTES", default_value_t = 16 * 1024)]
    search_max_query_bytes: usize,
}

impl SearchLimitArgs {
    fn limits(&self) -> domain::search::Limits {
        domain::search::Limits {
            max_chain_depth: self.search_max_chain_depth,
            max_has_depth: self.search_max_has_depth,
            max_include_depth: self.search_max_include_depth,
            max_params: self.search_max_params,
            max_values_per_param: self.search_max_values_per_param,
            max_values: self.search_max_values,
            max_query_bytes: self.search_max_query_bytes,
        }
        .capped()
    }
}

#[derive(Args, Debug)]
struct SubscriptionArgs {
    /// URL prefixes a Subscription's endpoint must start with, comma-separated. Default: none,
    /// so no Subscription can be created until some are configured.
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_ENDPOINTS", value_delimiter = ',')]
    subscription_endpoints: Vec<String>,
    /// Milliseconds between looks for due notifications (0 disables delivery on this replica).
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_POLL_MS", default_value_t = 1000)]
    subscription_poll_ms: u64,
    /// Seconds a replica holds a subscription it is delivering to before another may take it.
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_LEASE_SECS", default_value_t = 60)]
    subscription_lease_secs: u64,
    /// Seconds a delivery may take (a Subscription's backport-timeout may ask for less).
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_TIMEOUT_SECS", default_value_t = 10)]
    subscription_timeout_secs: u64,
    /// Failed deliveries in a row that move a subscription to error.
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_MAX_FAILURES", default_value_t = 5)]
    subscription_max_failures: u32,
    /// Seconds before the first retry; each further retry waits twice as long.
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_RETRY_SECS", default_value_t = 5)]
    subscription_retry_secs: u64,
    /// Longest wait between retries, in seconds.
    #[arg(long, env = "CAREPLAN_SUBSCRIPTION_RETRY_MAX_SECS", default_value_t = 600)]
    subscription_retry_max_secs: u64,
}

impl SubscriptionArgs {
    fn settings(&self) -> SubscriptionSettings {
        let endpoints: Vec<String> =
            self.subscription_endpoints.iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
        SubscriptionSettings {
            endpoints: endpoints.into(),
            poll: Duration::from_millis(self.subscription_poll_ms),
            lease: Duration::from_secs(self.subscription_lease_secs),
            timeout: Duration::from_secs(self.subscription_timeout_secs),
            max_failures: self.subscription_max_failures,
            retry_base: Duration::from_secs(self.subscription_retry_secs),
            retry_max: Duration::from_secs(self.subscription_retry_max_secs),
        }
    }
}

#[derive(Args, Debug)]
struct AuthArgs {
    /// Turn authorization off: every request may do everything. Local use only.
    #[arg(long, env = "CAREPLAN_AUTH_DISABLED")]
    auth_disabled: bool,
    /// The token issuer (`iss`) to accept: the authorization server.
    #[arg(long, env = "CAREPLAN_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// The audience (`aud`) tokens must name: this server.
    #[arg(long, env = "CAREPLAN_AUTH_AUDIENCE")]
    auth_audience: Option<String>,
    /// The authorization server's JWKS URL.
    #[arg(long, env = "CAREPLAN_AUTH_JWKS_URL")]
    auth_jwks_url: Option<String>,
    /// PEM files with public keys (RSA or EC), comma-separated.
    #[arg(long, env = "CAREPLAN_AUTH_PUBLIC_KEYS", value_delimiter = ',')]
    auth_public_keys: Vec<std::path::PathBuf>,
    /// Accepted signing algorithms, comma-separated (a subset of RS256, RS384, ES256, ES384).
    #[arg(long, env = "CAREPLAN_AUTH_ALGORITHMS", value_delimiter = ',', default_value = "RS256,RS384,ES256,ES384")]
    auth_algorithms: Vec<String>,
    /// Seconds of clock skew allowed on exp and nbf.
    #[arg(long, env = "CAREPLAN_AUTH_LEEWAY_SECS", default_value_t = 60)]
    auth_leeway_secs: u64,
    /// Least seconds between JWKS fetches caused by unknown key ids.
    #[arg(long, env = "CAREPLAN_AUTH_JWKS_MIN_REFRESH_SECS", default_value_t = 30)]
    auth_jwks_min_refresh_secs: u64,
    /// Seconds after which cached JWKS keys are fetched again.
    #[arg(long, env = "CAREPLAN_AUTH_JWKS_MAX_AGE_SECS", default_value_t = 3600)]
    auth_jwks_max_age_secs: u64,
    /// The authorization server's authorize endpoint (published in the SMART configuration).
    #[arg(long, env = "CAREPLAN_AUTH_AUTHORIZE_URL")]
    auth_authorize_url: Option<String>,
    /// The authorization server's token endpoint (published in the SMART configuration).
    #[arg(long, env = "CAREPLAN_AUTH_TOKEN_URL")]
    auth_token_url: Option<String>,
}

impl AuthArgs {
    fn settings(&self) -> AuthSettings {
        AuthSettings {
            disabled: self.auth_disabled,
            issuer: self.auth_issuer.clone(),
            audience: self.auth_audience.clone(),
            jwks_url: self.auth_jwks_url.clone(),
            public_key_files: self.auth_public_keys.clone(),
            algorithms: self.auth_algorithms.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
            leeway: Duration::from_secs(self.auth_leeway_secs),
            jwks_min_refresh: Duration::from_secs(self.auth_jwks_min_refresh_secs),
            jwks_max_age: Duration::from_secs(self.auth_jwks_max_age_secs),
            authorize_url: self.auth_authorize_url.clone(),
            token_url: self.auth_token_url.clone(),
        }
    }
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            addr: self.addr.clone(),
            database: StoreConfig {
                statement_timeout: self.statement_timeout_ms.map(Duration::from_millis),
                ..self.database.store_config()
            },
            migrate: !self.no_migrate,
            max_body_bytes: self.max_body_bytes,
            base_url: self.base_url.clone(),
            default_count: self.default_count,
            max_count: self.max_count,
            rules: Rules {
                references: self.reference_rules,
                policy: WorkflowPolicy {
                    allow_reopen_terminal: self.reopen_terminal_tasks,
                    strict_create: self.strict_task_create,
                },
            },
            actor_header: self.actor_header.clone(),
            provenance: !self.no_provenance,
            max_bundle_entries: self.max_bundle_entries,
            max_patch_operations: self.max_patch_operations,
            multiple_delete: self.multiple_delete,
            request_timeout: Duration::from_secs(self.request_timeout_secs),
            search_limits: self.search_limits.limits(),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            workers: self.workers,
            overdue_interval: Duration::from_secs(self.overdue_interval_secs),
            auth: self.auth.settings(),
            hardening: Hardening {
                cors_origins: self.cors_origins.iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect(),
                max_header_bytes: self.max_header_bytes,
                rate_limit: (self.rate_limit_per_second > 0).then(|| RateLimit {
                    per_second: self.rate_limit_per_second,
                    burst: self.rate_limit_burst.unwrap_or(self.rate_limit_per_second),
                }),
            },
            audit: AuditSettings {
                log: self.audit_log,
                queue: self.audit_queue,
                log_key: self.audit_log_key.clone().filter(|key| !key.is_empty()),
                log_ids: self.audit_log_ids,
            },
            subscriptions: self.subscriptions.settings(),
            export: self.export.settings(),
        }
    }
}

/// Parse the command line, run the command, and turn failure into a message and exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        return print_openapi();
    }
    let telemetry = telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let settings = args.settings();
                settings.check()?;
                let app = Application::build(settings).await?;
                app.run_until_stopped().await
            }
            Command::Migrate(args) => {
                let config = args.store_config();
                let store = Store::connect(&config)
                    .await
                    .with_context(|| format!("cannot connect to the database {}", config.redacted_url()))?;
                store.migrate().await.context("cannot apply database migrations")?;
                tracing::info!("migrations applied");
                Ok(())
            }
            // Answered above, before a runtime starts.
            Command::Openapi => Ok(()),
            Command::Templates(TemplatesArgs { action: TemplatesAction::Load(args) }) => {
                let settings = args.settings();
                settings.check()?;
                let written = crate::templates::load(settings).await?;
                tracing::info!(written, "templates loaded");
                Ok(())
            }
            Command::Reindex(args) => {
                let config = args.store_config();
                let store = Store::connect(&config)
                    .await
                    .with_context(|| format!("cannot connect to the database {}", config.redacted_url()))?;
                store.migrate().await?;
                let indexed = store.reindex().await?;
                tracing::info!(indexed, "search index rebuilt");
                Ok(())
            }
        }
    });
    // Tasks still running (an idle pool's reconnects) are dropped; then the last spans leave.
    runtime.shutdown_timeout(Duration::from_secs(5));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line, cause chain included: "cannot connect to the database: the database is
            // unreachable: ...".
            tracing::error!(error = one_line(&err), "careplan failed");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

/// The error and its causes on one line, each said once (sea-orm repeats its source's text).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// `careplan openapi`: the document on stdout; no runtime, no database, no telemetry (errors
/// go to stderr as plain text).
fn print_openapi() -> ExitCode {
    let written = crate::openapi::to_yaml().and_then(|yaml| Ok(std::io::stdout().lock().write_all(yaml.as_bytes())?));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("careplan: cannot print the OpenAPI description: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_settings_are_valid() {
        let Ok(Cli { command: Command::Serve(args) }) = Cli::try_parse_from(["careplan", "serve"]) else {
            panic!("`careplan serve` does not parse")
        };
        assert_eq!(args.settings().check().map_err(|err| err.to_string()), Ok(()));
    }
}
