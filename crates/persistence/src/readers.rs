//! SQLite's read connections: rusqlite connections, each on a thread of its own, behind
//! sea-orm's proxy connection, so every read path keeps its sea-orm code and SQL.
//!
//! Why not sqlx's pool, as the writer uses: sqlx also gives each SQLite connection a thread,
//! but talks to it over channels row by row, which costs a thread hand-off per row and two more
//! each time a connection is handed out (to arm the statement watchdog). On a two-core machine
//! that was more than the SQL of a ten-row search. Here a statement costs one hand-off to a
//! reader thread and one back: the thread arms the watchdog, runs the statement and sends all
//! its rows at once. (deadpool-sqlite would ping each connection it hands out through a blocking
//! thread, the round trip this removes; tokio's blocking pool would grow threads per runtime.)
//!
//! Each statement runs under `limit`: a progress handler stops it past its deadline
//! (SQLITE_INTERRUPT, `StoreError::TimedOut`), and if the caller stops waiting (its request
//! timed out), the statement is interrupted at once. A statement that waited in the queue
//! longer than `acquire_timeout` is not run (`StoreError::Unavailable`, as a pool timeout).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, OpenFlags};
use sea_orm::{DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, RuntimeErr, Statement, Value};
use tokio::sync::oneshot;

/// VM instructions between two looks at the clock (a few tens of microseconds of work).
const WATCH_EVERY_OPS: i32 = 1000;
/// Prepared statements kept per connection (searches of one shape share one).
const STATEMENT_CACHE: usize = 128;

type Rows = Result<Vec<ProxyRow>, DbErr>;

/// One statement for a reader thread.
struct Job {
    statement: Statement,
    queued: Instant,
    /// Where the thread puts the running statement's interrupt handle, for the caller.
    interrupt: Arc<Mutex<Option<InterruptHandle>>>,
    reply: oneshot::Sender<Rows>,
}

/// A fixed set of reader threads, each with its read-only connection to one SQLite file
/// (clones share them; the threads end when the last clone is dropped).
#[derive(Clone)]
pub(crate) struct Readers {
    jobs: mpsc::Sender<Job>,
    max: u32,
    /// Threads with an open connection, and those waiting for work.
    open: Arc<AtomicU32>,
    idle: Arc<AtomicU32>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("max", &self.max).finish_non_exhaustive()
    }
}

/// What every reader thread knows.
struct Setting {
    path: PathBuf,
    /// Other files attached to each connection, by schema name (read-only too).
    attached: Vec<(&'static str, PathBuf)>,
    limit: Option<Duration>,
    acquire_timeout: Duration,
    busy_timeout: Duration,
}

impl Readers {
    pub(crate) fn new(
        path: PathBuf,
        attached: Vec<(&'static str, PathBuf)>,
        max: u32,
        limit: Option<Duration>,
        acquire_timeout: Duration,
        busy_timeout: Duration,
    ) -> Self {
        let max = max.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let setting = Arc::new(Setting { path, attached, limit, acquire_timeout, busy_timeout });
        let open = Arc::new(AtomicU32::new(0));
        let idle = Arc::new(AtomicU32::new(0));
        for n in 0..max {
            let (queue, setting, open, idle) = (queue.clone(), setting.clone(), open.clone(), idle.clone());
            // A thread that cannot be started leaves the others to do the work.
            let _ = std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || serve(&queue, &setting, &open, &idle));
        }
        Self { jobs, max, open, idle }
    }

    /// (connections open, threads waiting for work, the most there may be), for the metrics.
    pub(crate) fn usage(&self) -> (u32, u32, u32) {
        (self.open.load(Ordering::Relaxed), self.idle.load(Ordering::Relaxed), self.max)
    }

    /// Run `statement` on the next free reader thread.
    async fn run(&self, statement: Statement) -> Rows {
        let (reply, answer) = oneshot::channel();
        let interrupt = Arc::new(Mutex::new(None));
        let job = Job { statement, queued: Instant::now(), interrupt: interrupt.clone(), reply };
        self.jobs.send(job).map_err(|_| DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::PoolClosed)))?;
        let guard = InterruptOnDrop(Some(interrupt));
        let rows = answer.await;
        guard.disarm();
        rows.map_err(|_| DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::WorkerCrashed)))?
    }
}

/// A reader thread: take the next job, run it, answer; open the connection when first needed
/// (again after a failure to open).
fn serve(queue: &Mutex<mpsc::Receiver<Job>>, setting: &Setting, open: &AtomicU32, idle: &AtomicU32) {
    let mut conn: Option<Connection> = None;
    loop {
        idle.fetch_add(1, Ordering::Relaxed);
        let job = queue.lock().map_err(drop).and_then(|queue| queue.recv().map_err(drop));
        idle.fetch_sub(1, Ordering::Relaxed);
        let Ok(job) = job else { break };
        if job.reply.is_closed() {
            continue;
        }
        if job.queued.elapsed() > setting.acquire_timeout {
            let _ = job.reply.send(Err(DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::PoolTimedOut))));
            continue;
        }
        if conn.is_none() {
            match open_reader(setting) {
                Ok(opened) => {
                    open.fetch_add(1, Ordering::Relaxed);
                    conn = Some(opened);
                }
                Err(err) => {
                    let _ = job.reply.send(Err(unreachable(&err)));
                    continue;
                }
            }
        }
        let Some(conn) = conn.as_ref() else { continue };
        if let Ok(mut slot) = job.interrupt.lock() {
            *slot = Some(conn.get_interrupt_handle());
        }
        match setting.limit {
            Some(limit) => {
                let deadline = Instant::now() + limit;
                conn.progress_handler(WATCH_EVERY_OPS, Some(move || Instant::now() >= deadline));
            }
            None => conn.progress_handler(WATCH_EVERY_OPS, None::<fn() -> bool>),
        }
        let rows = query(conn, &job.statement).map_err(|err| failure(&err));
        if let Ok(mut slot) = job.interrupt.lock() {
            *slot = None;
        }
        let _ = job.reply.send(rows);
    }
    if conn.is_some() {
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Interrupts the statement in flight if the caller stops waiting for it.
struct InterruptOnDrop(Option<Arc<Mutex<Option<InterruptHandle>>>>);

impl InterruptOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            if let Ok(slot) = slot.lock() {
                if let Some(handle) = slot.as_ref() {
                    handle.interrupt();
                }
            }
        }
    }
}

fn open_reader(setting: &Setting) -> rusqlite::Result<Connection> {
    let conn =
        Connection::open_with_flags(&setting.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(setting.busy_timeout)?;
    for (schema, path) in &setting.attached {
        // Attached with the connection's flags: read-only. The schema names are the store's own.
        let path = path.to_str().ok_or_else(|| rusqlite::Error::InvalidPath(path.clone()))?;
        conn.execute(&format!("ATTACH DATABASE ?1 AS {schema}"), [path])?;
    }
    // As on the writer (connect.rs): the sorts of large statements stay in memory rather than
    // in temporary files.
    conn.pragma_update(None, "temp_store", "memory")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// One statement's rows, each column typed by its declared type, as sea-orm's decoders want
/// (`boolean` columns as `Bool`, a NULL as the type its column declares).
fn query(conn: &Connection, statement: &Statement) -> rusqlite::Result<Vec<ProxyRow>> {
    let mut stmt = conn.prepare_cached(&statement.sql)?;
    let columns: Vec<(String, Kind)> =
        stmt.columns().iter().map(|column| (column.name().to_owned(), Kind::of(column.decl_type()))).collect();
    let values = statement.values.as_ref().map_or(&[][..], |values| &values.0[..]);
    let params = values.iter().map(param).collect::<rusqlite::Result<Vec<_>>>()?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut values = BTreeMap::new();
        for (i, (name, kind)) in columns.iter().enumerate() {
            values.insert(name.clone(), kind.value(row.get_ref(i)?));
        }
        out.push(ProxyRow::new(values));
    }
    Ok(out)
}

/// What a column declares itself to hold.
#[derive(Clone, Copy)]
enum Kind {
    Boolean,
    Integer,
    Real,
    Text,
    Blob,
    /// An expression: typed by its value.
    Any,
}

impl Kind {
    fn of(decl: Option<&str>) -> Self {
        let Some(decl) = decl else { return Kind::Any };
        let decl = decl.to_ascii_lowercase();
        if decl.starts_with("bool") {
            Kind::Boolean
        } else if decl.contains("int") {
            Kind::Integer
        } else if decl.contains("char") || decl.contains("text") || decl.contains("clob") {
            Kind::Text
        } else if decl.contains("real") || decl.contains("floa") || decl.contains("doub") {
            Kind::Real
        } else if decl.contains("blob") {
            Kind::Blob
        } else {
            Kind::Any
        }
    }

    fn value(self, value: ValueRef<'_>) -> Value {
        match (self, value) {
            (Kind::Boolean, ValueRef::Integer(n)) => Value::Bool(Some(n != 0)),
            (Kind::Boolean, ValueRef::Null) => Value::Bool(None),
            (Kind::Integer, ValueRef::Null) => Value::BigInt(None),
            (Kind::Real, ValueRef::Null) => Value::Double(None),
            (Kind::Blob, ValueRef::Null) => Value::Bytes(None),
            (Kind::Text | Kind::Any, ValueRef::Null) => Value::String(None),
            (_, ValueRef::Integer(n)) => Value::BigInt(Some(n)),
            (_, ValueRef::Real(x)) => Value::Double(Some(x)),
            (_, ValueRef::Text(text)) => Value::String(Some(Box::new(String::from_utf8_lossy(text).into_owned()))),
            (_, ValueRef::Blob(bytes)) => Value::Bytes(Some(Box::new(bytes.to_vec()))),
        }
    }
}

/// A bound value as SQLite takes it (as sqlx binds it: booleans as 0/1, JSON as its text).
fn param(value: &Value) -> rusqlite::Result<rusqlite::types::Value> {
    use rusqlite::types::Value as V;
    Ok(match value {
        Value::Bool(v) => v.map_or(V::Null, |b| V::Integer(i64::from(b))),
        Value::TinyInt(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::SmallInt(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::Int(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::BigInt(v) => v.map_or(V::Null, V::Integer),
        Value::TinyUnsigned(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::SmallUnsigned(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::Unsigned(v) => v.map_or(V::Null, |n| V::Integer(n.into())),
        Value::BigUnsigned(v) => match v {
            None => V::Null,
            Some(n) => {
                V::Integer(i64::try_from(*n).map_err(|err| rusqlite::Error::ToSqlConversionFailure(err.into()))?)
            }
        },
        Value::Float(v) => v.map_or(V::Null, |x| V::Real(x.into())),
        Value::Double(v) => v.map_or(V::Null, V::Real),
        Value::String(v) => v.as_ref().map_or(V::Null, |s| V::Text(s.as_ref().clone())),
        Value::Char(v) => v.map_or(V::Null, |c| V::Text(c.to_string())),
        Value::Bytes(v) => v.as_ref().map_or(V::Null, |b| V::Blob(b.as_ref().clone())),
        Value::Json(v) => v.as_ref().map_or(V::Null, |json| V::Text(json.to_string())),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("a value of this type is not bound on SQLite readers: {other:?}").into(),
            ))
        }
    })
}

/// A rusqlite error as the sqlx error the rest of the crate classifies (`StoreError::from`):
/// SQLite's extended result code as the database error's code.
fn failure(err: &rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(sql_error(err)))
}

/// A connection that cannot be opened: "no database right now".
fn unreachable(err: &rusqlite::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(sql_error(err)))
}

fn sql_error(err: &rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(code, message) => sqlx::Error::Database(Box::new(SqliteFailure {
            code: code.extended_code,
            message: message.clone().unwrap_or_else(|| code.to_string()),
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// SQLite's answer to a failed statement, in sqlx's shape.
#[derive(Debug)]
struct SqliteFailure {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for Readers {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.run(statement).await
    }

    async fn execute(&self, _statement: Statement) -> Result<ProxyExecResult, DbErr> {
        Err(DbErr::Custom("the SQLite read connections do not write".into()))
    }

    async fn ping(&self) -> Result<(), DbErr> {
        let backend = sea_orm::DbBackend::Sqlite;
        self.run(Statement::from_string(backend, "SELECT 1")).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StoreError;

    /// A database file with one table of each declared type the store uses.
    fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("readers.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE t (id varchar(64) NOT NULL, n bigint NOT NULL, gone boolean NOT NULL, body text NULL);
             INSERT INTO t VALUES ('a', 7, 1, '{\"x\":1}'), ('b', 8, 0, NULL);",
        )
        .expect("schema");
        (dir, path)
    }

    fn open(path: PathBuf, max: u32, limit: Option<Duration>) -> Readers {
        Readers::new(path, vec![], max, limit, Duration::from_secs(3), Duration::from_secs(1))
    }

    fn statement(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(sea_orm::DbBackend::Sqlite, sql, values)
    }

    /// A statement that runs for minutes unless it is stopped.
    const ENDLESS: &str =
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 10000000000) SELECT max(n) AS n FROM c";

    #[tokio::test]
    async fn rows_are_typed_by_their_declared_columns_and_values_are_bound() {
        let (_dir, path) = database();
        let readers = open(path, 2, Some(Duration::from_secs(5)));
        let rows = readers
            .run(statement(
                "SELECT id, n, gone, body, n + 1 AS k FROM t WHERE n >= ? AND gone IN (?, ?) ORDER BY id",
                vec![Value::BigUnsigned(Some(7)), Value::Bool(Some(true)), Value::Bool(Some(false))],
            ))
            .await
            .expect("rows");
        let rows: Vec<BTreeMap<String, Value>> = rows.into_iter().map(BTreeMap::from).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["id"], Value::String(Some(Box::new("a".into()))));
        assert_eq!(rows[0]["n"], Value::BigInt(Some(7)));
        assert_eq!(rows[0]["gone"], Value::Bool(Some(true)));
        assert_eq!(rows[0]["body"], Value::String(Some(Box::new("{\"x\":1}".into()))));
        assert_eq!(rows[0]["k"], Value::BigInt(Some(8)), "an expression is typed by its value");
        assert_eq!(rows[1]["gone"], Value::Bool(Some(false)));
        assert_eq!(rows[1]["body"], Value::String(None), "a NULL text is a text NULL: Option<String> decodes it");
    }

    #[tokio::test]
    async fn a_statement_past_its_limit_is_stopped_as_a_timeout() {
        let (_dir, path) = database();
        let readers = open(path, 1, Some(Duration::from_millis(200)));
        let started = Instant::now();
        let err = readers.run(statement(ENDLESS, vec![])).await.expect_err("stopped");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert!(matches!(StoreError::from(err), StoreError::TimedOut(_)));
        // The connection is free and works.
        let rows = readers.run(statement("SELECT count(*) AS n FROM t", vec![])).await.expect("a read after");
        assert_eq!(BTreeMap::from(rows[0].clone())["n"], Value::BigInt(Some(2)));
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_interrupts_its_statement() {
        let (_dir, path) = database();
        // One connection and no statement limit: only the interrupt can free it.
        let readers = open(path, 1, None);
        let endless = readers.run(statement(ENDLESS, vec![]));
        assert!(tokio::time::timeout(Duration::from_millis(200), endless).await.is_err(), "still running");
        let started = Instant::now();
        let rows =
            readers.run(statement("SELECT count(*) AS n FROM t", vec![])).await.expect("the connection came back");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(rows.len(), 1);
        assert_eq!((readers.usage().0, readers.usage().2), (1, 1), "one connection, still open");
    }

    #[tokio::test]
    async fn attached_files_are_read_by_their_schema_name_and_never_written() {
        let (dir, path) = database();
        let other = dir.path().join("other.db");
        Connection::open(&other)
            .expect("open")
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE u (k text NOT NULL); INSERT INTO u VALUES ('x');")
            .expect("schema");
        let readers =
            Readers::new(path, vec![("other", other)], 1, None, Duration::from_secs(3), Duration::from_secs(1));
        // Unqualified names find a table in the attached file too.
        for sql in ["SELECT k FROM other.u", "SELECT k FROM u"] {
            let rows = readers.run(statement(sql, vec![])).await.expect("rows");
            assert_eq!(BTreeMap::from(rows[0].clone())["k"], Value::String(Some(Box::new("x".into()))), "{sql}");
        }
        let err = readers.run(statement("INSERT INTO other.u VALUES ('y')", vec![])).await.expect_err("read-only");
        assert!(matches!(StoreError::from(err), StoreError::Database(_)));
    }

    #[tokio::test]
    async fn a_missing_file_is_an_unreachable_database_and_readers_never_write() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let readers = open(dir.path().join("absent.db"), 1, None);
        let err = readers.run(statement("SELECT 1", vec![])).await.expect_err("no file");
        assert!(matches!(StoreError::from(err), StoreError::Unavailable(_)));

        let (_dir, path) = database();
        let readers = open(path, 1, None);
        let err = readers.run(statement("DELETE FROM t", vec![])).await.expect_err("read-only");
        assert!(matches!(StoreError::from(err), StoreError::Database(_)));
    }
}
