//! `Settings`: everything the server is configured with, from `CAREPLAN_*` environment variables
//! or the `--flags` that mirror them (see `cli.rs` and the README's table).

use std::time::Duration;

use persistence::StoreConfig;

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
    /// Longest time one request may take before it is answered with 503.
    pub request_timeout: Duration,
    /// HTTP worker threads; the number of CPU cores when unset.
    pub workers: Option<usize>,
}

impl Settings {
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
            },
            migrate: true,
            max_body_bytes: 10 * 1024 * 1024,
            base_url: None,
            default_count: 50,
            max_count: 1000,
            request_timeout: Duration::from_secs(30),
            workers: Some(2),
        }
    }
}
