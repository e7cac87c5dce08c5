//! PostgreSQL: reads by id that arrive while others are in flight share one statement.
//!
//! On PostgreSQL a read by id cannot be answered from this process's cache (another replica
//! may have written since), so each costs a round trip: the statement's fixed cost in the
//! server's backend, and the wake-ups on both sides of the socket, outweigh the index look-up
//! itself. A dispatcher takes reads from a queue and runs at most `IN_FLIGHT` statements at a
//! time; every read queued while those run goes into the next statement, up to `MAX_BATCH`
//! ids. Alone, a read is one statement as before, with no wait added; under load, one
//! statement answers many.
//!
//! A read is queued after its request arrived, and its statement starts after it was queued,
//! so it sees every write committed before the request: read-after-write holds as with a
//! statement of its own. If the shared statement fails, each of its reads is told to run its
//! own (`Loaded::Retry`), which reports its own error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use domain::ResourceType;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most ids in one statement.
const MAX_BATCH: usize = 64;
/// Most statements in flight at once (each holds a pooled connection).
const IN_FLIGHT: usize = 2;
/// Reads waiting for a statement; past this, a read waits to be queued.
const QUEUE: usize = 4096;

/// The current row of a resource, as a read needs it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) version_id: i64,
    pub(crate) last_updated: i64,
    pub(crate) deleted: bool,
    pub(crate) body: Option<String>,
}

/// What a queued read learns.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The row, or `None`: no such resource.
    Found(Option<Row>),
    /// The shared statement failed, or the loader is gone: read alone instead.
    Retry,
}

struct Want {
    ty: ResourceType,
    id: String,
    reply: oneshot::Sender<Option<Row>>,
}

/// The queue in front of the dispatcher. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Loader {
    queue: mpsc::Sender<Want>,
    #[cfg_attr(not(test), allow(dead_code))]
    statements: Arc<AtomicU64>,
}

/// How many ids one statement names: a batch takes the smallest that holds it, the rest
/// repeating its first id. A statement keeps its text whatever the batch, so PostgreSQL plans it
/// once (a generic plan) instead of for every batch, as it would for an array of ids.
const SLOTS: [usize; 4] = [1, 4, 16, MAX_BATCH];

/// The statement that reads `slots` ids of one type.
fn statement(slots: usize) -> String {
    let mut sql = String::from(
        "SELECT r.id, r.version_id, r.last_updated, r.deleted, r.body FROM resources r \
         WHERE r.resource_type = $1 AND r.id IN (",
    );
    for n in 0..slots {
        sql.push_str(if n == 0 { "$" } else { ", $" });
        sql.push_str(&(n + 2).to_string());
    }
    sql.push(')');
    sql
}

impl Loader {
    /// Start the dispatcher on the current runtime. It stops when the last `Loader` is dropped.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (queue, wants) = mpsc::channel(QUEUE);
        let statements = Arc::new(AtomicU64::new(0));
        tokio::spawn(dispatch(pool, wants, statements.clone()));
        Self { queue, statements }
    }

    /// The current row of `ty`/`id`.
    pub(crate) async fn load(&self, ty: ResourceType, id: &str) -> Loaded {
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Want { ty, id: id.to_owned(), reply }).await.is_err() {
            return Loaded::Retry;
        }
        match answer.await {
            Ok(row) => Loaded::Found(row),
            // Dropped unanswered: the statement failed.
            Err(_) => Loaded::Retry,
        }
    }

    /// Batches dispatched so far, each one statement per resource type in it (for tests).
    #[cfg(test)]
    pub(crate) fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }
}

async fn dispatch(pool: PgPool, mut wants: mpsc::Receiver<Want>, statements: Arc<AtomicU64>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = wants.recv().await {
        // While every slot is busy, reads pile up in the queue and go together into the next.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match wants.try_recv() {
                Ok(want) => batch.push(want),
                Err(_) => break,
            }
        }
        statements.fetch_add(1, Ordering::Relaxed);
        let pool = pool.clone();
        tokio::spawn(async move {
            answer(&pool, batch).await;
            drop(slot);
        });
    }
}

/// Where the row of one resource goes: every read that wanted it.
type Replies = Vec<oneshot::Sender<Option<Row>>>;

async fn answer(pool: &PgPool, batch: Vec<Want>) {
    // The same resource may be wanted more than once; a read whose request was abandoned
    // (a timeout) is not looked up.
    let mut wanted: HashMap<ResourceType, HashMap<String, Replies>> = HashMap::new();
    for want in batch.into_iter().filter(|w| !w.reply.is_closed()) {
        wanted.entry(want.ty).or_default().entry(want.id).or_default().push(want.reply);
    }
    // One statement per type (a batch seldom holds more than one).
    for (ty, mut wanted) in wanted {
        let slots = SLOTS.into_iter().find(|&n| n >= wanted.len()).unwrap_or(MAX_BATCH);
        let sql = statement(slots);
        let ids: Vec<&str> = wanted.keys().map(String::as_str).collect();
        let mut query = sqlx::query_as(&sql).bind(ty.as_str());
        for n in 0..slots {
            query = query.bind(ids.get(n).unwrap_or(&ids[0]).to_owned());
        }
        let rows: Vec<(String, i64, i64, bool, Option<String>)> = match query.fetch_all(pool).await {
            Ok(rows) => rows,
            // Dropping the replies tells each read to run its own statement.
            Err(_) => continue,
        };
        for (id, version_id, last_updated, deleted, body) in rows {
            let Some(mut replies) = wanted.remove(&id) else { continue };
            let row = Row { version_id, last_updated, deleted, body };
            let last = replies.pop();
            for reply in replies {
                let _ = reply.send(Some(row.clone()));
            }
            if let Some(reply) = last {
                let _ = reply.send(Some(row));
            }
        }
        // What no row answered does not exist.
        for reply in wanted.into_values().flatten() {
            let _ = reply.send(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    use super::*;

    /// When the shared statement fails, every read in it is told to read alone (and so gets its
    /// own error) rather than waiting for ever or being told "not found". PostgreSQL only: the
    /// loader exists only there.
    #[tokio::test]
    async fn a_failed_statement_sends_each_of_its_reads_to_read_alone() {
        let Ok(url) = std::env::var("TEST_DATABASE_URL") else { return };
        // A schema with no `resources` table: the statement fails.
        let schema = format!("loader_empty_{}", std::process::id());
        let options = PgConnectOptions::from_str(&url).expect("a URL").options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await.expect("a pool");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&pool).await.expect("dropped");
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.expect("created");
        let loader = Loader::start(pool);
        let reads = (0..20).map(|n| {
            let loader = loader.clone();
            async move { loader.load(ResourceType::Task, &format!("t{n}")).await }
        });
        let answers = tokio::time::timeout(std::time::Duration::from_secs(10), futures_util::future::join_all(reads))
            .await
            .expect("every read answered");
        assert!(answers.iter().all(|a| matches!(a, Loaded::Retry)), "{answers:?}");
        assert!(loader.statements() >= 1);
    }
}
