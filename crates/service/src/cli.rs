//! The command line: `careplan serve` and `careplan migrate`, each flag mirroring a
//! `CAREPLAN_*` environment variable.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use persistence::{Store, StoreConfig};

use crate::config::Settings;
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
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Rebuild the search index of every stored resource (after search-parameter definitions change).
    Reindex(DatabaseArgs),
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
    /// Seconds one request may take before it is answered with 503.
    #[arg(long, env = "CAREPLAN_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "CAREPLAN_WORKERS")]
    workers: Option<usize>,
}

impl ServeArgs {
    fn settings(&self) -> Settings {
        Settings {
            addr: self.addr.clone(),
            database: self.database.store_config(),
            migrate: !self.no_migrate,
            max_body_bytes: self.max_body_bytes,
            base_url: self.base_url.clone(),
            default_count: self.default_count.max(1),
            max_count: self.max_count.max(1),
            request_timeout: Duration::from_secs(self.request_timeout_secs.max(1)),
            workers: self.workers,
        }
    }
}

/// Parse the command line, run the command, and turn failure into a message and exit code 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
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
                let app = Application::build(args.settings()).await?;
                app.run_until_stopped().await
            }
            Command::Migrate(args) => {
                let store = Store::connect(&args.store_config()).await?;
                store.migrate().await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            Command::Reindex(args) => {
                let store = Store::connect(&args.store_config()).await?;
                store.migrate().await?;
                let indexed = store.reindex().await?;
                tracing::info!(indexed, "search index rebuilt");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "careplan failed");
            ExitCode::FAILURE
        }
    }
}
