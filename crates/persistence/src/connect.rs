//! Connecting: SQLite with a single writer connection and a pool of readers (WAL, fsync on
//! commit), or one PostgreSQL pool, optionally inside a named schema.
//!
//! On SQLite the audit trail has a file of its own beside the database (`audit_file`), with a
//! writer connection of its own, so an audit batch never waits behind resource writes nor they
//! behind it, and its commits leave the main file alone (a reader empties its page cache
//! whenever its file changed). The file is also attached to the main writer and the readers as
//! the schema `audit`: migration 8 moved the table there, and the trail is read through it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend, ProxyDatabaseConnector, SqlxPostgresConnector, SqlxSqliteConnector};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Connection;

use crate::error::StoreError;
use crate::readers::Readers;

/// Which database engine backs the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The OpenTelemetry `db.system.name` of the engine.
    pub fn system(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    /// PostgreSQL only: the schema that holds the tables (created if missing).
    pub schema: Option<String>,
    /// Upper bound of pooled connections: readers on SQLite; on PostgreSQL, shared by its two
    /// pools (writes and the read loader; other reads), at least one each.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing.
    pub acquire_timeout: Duration,
    /// Bytes each in-process cache may hold (see `cache.rs`); 0 disables caching.
    pub cache_bytes: u64,
    /// Longest one statement may run before the database stops it (`StoreError::TimedOut`):
    /// PostgreSQL's `statement_timeout` on every pooled connection; on SQLite a progress
    /// handler armed for each statement a reader connection runs (`readers.rs`). Migrations
    /// run without it. `None`: no limit (the command-line tools).
    pub statement_timeout: Option<Duration>,
}

impl StoreConfig {
    /// The URL without its password, for messages.
    pub fn redacted_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else { return self.url.clone() };
        match rest.split_once('@') {
            Some((user, host)) => {
                let user = user.split_once(':').map_or(user, |(name, _)| name);
                format!("{scheme}://{user}@{host}")
            }
            None => self.url.clone(),
        }
    }
}

pub(crate) struct Connections {
    pub(crate) backend: Backend,
    pub(crate) reader: DatabaseConnection,
    pub(crate) writer: DatabaseConnection,
    /// SQLite: the audit file's own writer connection.
    pub(crate) audit: Option<DatabaseConnection>,
    /// For migrations: without the statement timeout.
    pub(crate) schema: DatabaseConnection,
    pub(crate) pools: Pools,
}

/// The sqlx pools behind the connections, kept to report their usage (`Store::pool_usage`).
#[derive(Clone)]
pub(crate) enum Pools {
    Sqlite {
        reader: Readers,
        writer: SqlitePool,
        audit: SqlitePool,
    },
    /// `main` for writes and the read loader; `reader` for every other read.
    Postgres {
        main: PgPool,
        reader: PgPool,
    },
}

/// How busy one connection pool is, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// `reader`, `writer` or `audit` on SQLite; `main` (writes) or `reader` on PostgreSQL.
    pub name: &'static str,
    /// Open connections, idle or in use.
    pub size: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool may open.
    pub max: u32,
}

impl Pools {
    pub(crate) fn usage(&self) -> Vec<PoolUsage> {
        fn of<DB: sqlx::Database>(name: &'static str, pool: &sqlx::Pool<DB>) -> PoolUsage {
            PoolUsage {
                name,
                size: pool.size(),
                idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
                max: pool.options().get_max_connections(),
            }
        }
        match self {
            Pools::Sqlite { reader, writer, audit } => {
                let (size, idle, max) = reader.usage();
                vec![PoolUsage { name: "reader", size, idle, max }, of("writer", writer), of("audit", audit)]
            }
            Pools::Postgres { main, reader } => vec![of("main", main), of("reader", reader)],
        }
    }
}

pub(crate) async fn connect(config: &StoreConfig) -> Result<Connections, StoreError> {
    if config.url.starts_with("sqlite:") {
        connect_sqlite(config).await
    } else if config.url.starts_with("postgres://") || config.url.starts_with("postgresql://") {
        connect_postgres(config).await
    } else {
        Err(StoreError::Config("the database URL must start with sqlite: or postgres://".into()))
    }
}

/// How long a statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

async fn connect_sqlite(config: &StoreConfig) -> Result<Connections, StoreError> {
    let options = SqliteConnectOptions::from_str(&config.url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before it is acknowledged.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        // Savepoint journals and the sorts of large statements stay in memory rather than in
        // temporary files (each job of a group commit runs in a savepoint).
        .pragma("temp_store", "memory")
        .foreign_keys(true);
    if let Some(parent) = options.get_filename().parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|err| StoreError::Config(format!("cannot create {}: {err}", parent.display())))?;
        }
    }
    let audit_path = audit_file(options.get_filename());
    let attach = audit_path
        .to_str()
        .ok_or_else(|| StoreError::Config(format!("the database path is not UTF-8: {}", audit_path.display())))?
        .to_owned();
    // SQLite allows one writer at a time; one writer connection serialises writes in-process
    // instead of failing them with SQLITE_BUSY.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(config.acquire_timeout)
        .after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                // The file is created if missing; WAL and FULL as for the main file (the
                // connection's own settings apply to `main` only).
                sqlx::query("ATTACH DATABASE ?1 AS audit").bind(attach).execute(&mut *conn).await?;
                sqlx::query("PRAGMA audit.journal_mode = WAL").execute(&mut *conn).await?;
                sqlx::query("PRAGMA audit.synchronous = FULL").execute(&mut *conn).await?;
                Ok(())
            })
        })
        .connect_with(options.clone())
        .await?;
    let audit = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(config.acquire_timeout)
        // Each batch's INSERTs are a few statements of up to 500 rows, whose text varies with
        // the batch's size: sqlx's default cache of 100 prepared statements would keep dozens of
        // those large programs alive for nothing.
        .connect_with(options.clone().filename(&audit_path).statement_cache_capacity(4))
        .await?;
    // Readers rarely wait on SQLite (no network, caches in front): more than two per core only
    // costs memory, as each connection keeps its own page cache.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
    let readers = Readers::new(
        options.get_filename().to_path_buf(),
        vec![("audit", audit_path)],
        config.max_connections.clamp(1, 2 * cores),
        config.statement_timeout,
        config.acquire_timeout,
        BUSY_TIMEOUT,
    );
    let reader = ProxyDatabaseConnector::connect(DbBackend::Sqlite, Arc::new(Box::new(readers.clone())))?;
    // One reader now, so that a file that cannot be read fails start-up.
    reader.ping().await?;
    let writes = SqlxSqliteConnector::from_sqlx_sqlite_pool(writer.clone());
    Ok(Connections {
        backend: Backend::Sqlite,
        pools: Pools::Sqlite { reader: readers, writer, audit: audit.clone() },
        audit: Some(SqlxSqliteConnector::from_sqlx_sqlite_pool(audit)),
        reader,
        schema: writes.clone(),
        writer: writes,
    })
}

/// The audit trail's SQLite file for the database at `path`: `careplan.db` keeps its trail in
/// `careplan-audit.db`, in the same directory.
pub(crate) fn audit_file(path: &Path) -> PathBuf {
    let stem = path.file_stem().map_or_else(|| "careplan".into(), |stem| stem.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(extension) => format!("{stem}-audit.{}", extension.to_string_lossy()),
        None => format!("{stem}-audit"),
    };
    path.with_file_name(name)
}

/// Whether the server is on this host (a loopback address or a Unix socket) and neither the URL
/// (`sslmode=`) nor `PGSSLMODE` chose whether to use TLS. Left alone, sqlx would use libpq's
/// default, `prefer`, and encrypt traffic that never leaves the machine: about a tenth of a
/// read's CPU on the benchmark machine.
fn loopback_without_ssl_choice(url: &str, options: &PgConnectOptions) -> bool {
    let chosen =
        url.contains("sslmode=") || url.contains("ssl-mode=") || !matches!(options.get_ssl_mode(), PgSslMode::Prefer);
    let host = options.get_host();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    !chosen && local
}

async fn connect_postgres(config: &StoreConfig) -> Result<Connections, StoreError> {
    let mut options = PgConnectOptions::from_str(&config.url)?.application_name("careplan");
    if loopback_without_ssl_choice(&config.url, &options) {
        options = options.ssl_mode(PgSslMode::Disable);
    }
    if let Some(schema) = &config.schema {
        if schema.is_empty() || !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(StoreError::Config("the schema name may hold only a-z, 0-9 and _".into()));
        }
        options = options.options([("search_path", schema.as_str())]);
    }
    // Migrations may build indexes over large tables: they run on a connection of their own,
    // opened when needed, without the statement timeout.
    let unlimited = options.clone();
    if let Some(limit) = config.statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", limit.as_millis().max(1)))]);
    }
    // One connection first, so that an unreachable server fails start-up with its own reason
    // ("connection refused") rather than the pool's "timed out".
    match tokio::time::timeout(config.acquire_timeout, PgConnection::connect_with(&options)).await {
        Ok(Ok(connection)) => drop(connection.close().await),
        Ok(Err(err)) => return Err(err.into()),
        Err(_) => return Err(sqlx::Error::PoolTimedOut.into()),
    }
    // The two pools below share `max_connections` (at least one each), so that replicas ×
    // `max_connections` still bounds what PostgreSQL sees.
    let pool_options = |share: u32| {
        PgPoolOptions::new()
            .max_connections(share.max(1))
            .min_connections(1)
            // No ping each time a connection is handed out (sqlx's default): it doubled the
            // round trips of a read. A connection the server closed fails its next statement
            // and sqlx drops it; connections are retired after sqlx's idle timeout and lifetime.
            .test_before_acquire(false)
            .acquire_timeout(config.acquire_timeout)
    };
    // Reads (searches above all) plan each statement for its values. A prepared statement
    // otherwise gets PostgreSQL's generic plan after five runs, made for an average value: for
    // a patient with 6,000 CarePlans among patients with 10, the generic plan of a page took
    // 58 ms where the plan for that patient takes 0.14 ms, and under load such pages took up to
    // a second. Writes and the read loader keep generic plans on the main pool: their plans
    // do not depend on the values, and planning each would cost CPU on every write.
    let reads = options.clone().options([("plan_cache_mode", "force_custom_plan")]);
    let pool = pool_options(config.max_connections.div_ceil(2)).connect_with(options).await?;
    if let Some(schema) = &config.schema {
        // The name was checked above to be a plain lower-case identifier.
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).execute(&pool).await?;
    }
    let reader = pool_options(config.max_connections / 2).connect_with(reads).await?;
    let pools = Pools::Postgres { main: pool.clone(), reader: reader.clone() };
    let reader = SqlxPostgresConnector::from_sqlx_postgres_pool(reader);
    let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    let schema = if config.statement_timeout.is_some() {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(Duration::from_secs(60))
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(unlimited);
        SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
    } else {
        db.clone()
    };
    Ok(Connections { backend: Backend::Postgres, reader, writer: db, audit: None, schema, pools })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(url: &str) -> bool {
        loopback_without_ssl_choice(url, &PgConnectOptions::from_str(url).expect("a valid URL"))
    }

    #[test]
    fn the_audit_file_sits_beside_the_database() {
        assert_eq!(audit_file(Path::new("data/careplan.db")), PathBuf::from("data/careplan-audit.db"));
        assert_eq!(audit_file(Path::new("/var/lib/store")), PathBuf::from("/var/lib/store-audit"));
        assert_eq!(audit_file(Path::new("t.sqlite3")), PathBuf::from("t-audit.sqlite3"));
    }

    #[test]
    fn tls_is_left_out_only_for_this_host_when_nothing_chose() {
        assert!(plain("postgres://postgres@127.0.0.1:5432/db"));
        assert!(plain("postgres://postgres@localhost/db"));
        assert!(plain("postgres://postgres@[::1]:5432/db"));
        assert!(plain("postgres:///db?host=/var/run/postgresql"));
        assert!(!plain("postgres://postgres@db.internal:5432/db"));
        assert!(!plain("postgres://postgres@10.0.0.5/db"));
        assert!(!plain("postgres://postgres@127.0.0.1/db?sslmode=require"));
        assert!(!plain("postgres://postgres@127.0.0.1/db?sslmode=prefer"));
        assert!(!plain("postgres://postgres@localhost/db?ssl-mode=verify-full"));
    }
}
