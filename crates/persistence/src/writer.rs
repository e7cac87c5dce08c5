//! Group commit for SQLite: one writer task owns the single write connection and runs queued
//! writes together in one transaction, each inside its own savepoint (`Guard`), so one fsync
//! covers many acknowledged writes. A write is answered only after its transaction committed; a
//! write that fails rolls back to its savepoint without touching the others.
//!
//! PostgreSQL runs each write in a transaction of its own on the pool (it groups commits itself).

use futures_util::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::error::StoreError;

/// Most writes committed together.
const MAX_BATCH: usize = 128;

/// The savepoint a write sharing a batch's transaction runs in (`Guard::Savepoint`).
pub(crate) const SAVEPOINT: &str = "careplan_write";

/// How a write is kept apart from the others committed in the same transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// The write has the transaction to itself: when it fails, the transaction is rolled back.
    Alone,
    /// The write shares the transaction: it opens savepoint `SAVEPOINT` before its first
    /// write, and releases it (or rolls back to it) itself. A write that fails before it writes
    /// needs no savepoint at all, and the savepoint travels with the write's first statements
    /// and its release with its last, so it costs no round trip of its own.
    Savepoint,
}

/// How a queued write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    /// It failed and nothing of it stands; the transaction goes on.
    Failed,
    /// It failed and could not undo what it wrote: the whole transaction must roll back.
    Broken,
}

/// What a queued write reports once it ran: how it ended, and how to answer its caller once
/// the outcome of the commit is known.
type Ran = (Outcome, Box<dyn FnOnce(Result<(), String>) + Send>);

/// A queued write.
type Job = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction, Guard) -> BoxFuture<'a, Ran> + Send>;

/// A unit of work run inside a write transaction.
pub(crate) type Work<T, E> = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> BoxFuture<'a, Result<T, E>> + Send>;

/// A unit of work that keeps itself apart from the others in the transaction (`Guard`). It
/// returns its result and whether the transaction is still sound: `false` when it failed and
/// could not undo what it wrote.
pub(crate) type GuardedWork<T, E> =
    Box<dyn for<'a> FnOnce(&'a DatabaseTransaction, Guard) -> BoxFuture<'a, (Result<T, E>, bool)> + Send>;

/// Where writes go.
#[derive(Clone)]
pub(crate) enum Writer {
    /// Straight to the pool, one transaction each.
    Direct(DatabaseConnection),
    /// Through the group-commit queue.
    Queue(mpsc::Sender<Job>),
}

impl Writer {
    /// A queue served by a writer task on a thread of its own (`spin::block_on`, inside the
    /// current runtime's context for timers and spawns). A write makes several round trips to
    /// SQLite's connection thread in a row; on the shared runtime each answer waited behind
    /// request work and woke a parked thread, which made the writer, not SQLite, the bound on
    /// writes (measured: 1,059 creates/s with SQLite's thread 40 % busy). It ends once every
    /// sender is gone.
    pub(crate) fn queue(db: DatabaseConnection, thread: &str) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let _entered = runtime.enter();
                spin::block_on(serve(db, receiver));
            })
            .map_err(|err| StoreError::Database(DbErr::Custom(format!("cannot start the writer's thread: {err}"))))?;
        Ok(Writer::Queue(sender))
    }

    /// Run `work` in a write transaction and return its result once committed. When the
    /// transaction is shared, the work runs in a savepoint the writer opens and closes.
    pub(crate) async fn write<T, E>(&self, work: Work<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_guarded(Box::new(move |txn, guard| {
            Box::pin(async move {
                if guard == Guard::Alone {
                    return (work(txn).await, true);
                }
                let savepoint = match txn.begin().await {
                    Ok(savepoint) => savepoint,
                    Err(err) => return (Err(E::from(StoreError::from(err))), false),
                };
                let result = work(&savepoint).await;
                let closed = if result.is_ok() { savepoint.commit().await } else { savepoint.rollback().await };
                match closed {
                    Ok(()) => (result, true),
                    Err(err) => (result.and(Err(E::from(StoreError::from(err)))), false),
                }
            })
        }))
        .await
    }

    /// Run `work`, which keeps itself apart from the other writes of its transaction, and
    /// return its result once committed.
    pub(crate) async fn write_guarded<T, E>(&self, work: GuardedWork<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let database = |err: DbErr| E::from(StoreError::from(err));
        match self {
            Writer::Direct(db) => {
                let txn = db.begin().await.map_err(database)?;
                match work(&txn, Guard::Alone).await.0 {
                    Ok(value) => {
                        txn.commit().await.map_err(database)?;
                        Ok(value)
                    }
                    Err(err) => {
                        txn.rollback().await.map_err(database)?;
                        Err(err)
                    }
                }
            }
            Writer::Queue(sender) => {
                let (answer, answered) = oneshot::channel();
                // The work runs on the writer task: its spans belong to the caller's trace.
                let span = tracing::Span::current();
                let job: Job = Box::new(move |txn, guard| {
                    Box::pin(
                        async move {
                            let (result, sound) = work(txn, guard).await;
                            let outcome = match (result.is_ok(), sound) {
                                (true, _) => Outcome::Succeeded,
                                (false, true) => Outcome::Failed,
                                (false, false) => Outcome::Broken,
                            };
                            let reply: Box<dyn FnOnce(Result<(), String>) + Send> = Box::new(move |committed| {
                                let outcome = match committed {
                                    Ok(()) => result,
                                    Err(message) => Err(database(DbErr::Custom(message))),
                                };
                                // The caller may have gone (timeout); the write stands regardless.
                                let _ = answer.send(outcome);
                            });
                            (outcome, reply)
                        }
                        .instrument(span),
                    )
                });
                sender.send(job).await.map_err(|_| E::from(unavailable()))?;
                answered.await.map_err(|_| E::from(unavailable()))?
            }
        }
    }
}

fn unavailable() -> StoreError {
    StoreError::Database(DbErr::Custom("the writer is not running".into()))
}

async fn serve(db: DatabaseConnection, mut receiver: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        if let Err(err) = run_batch(&db, batch).await {
            tracing::error!(error = %err, "a write transaction could not be started");
        }
    }
}

/// Run a batch in one transaction. Dropped jobs (when the transaction cannot start) answer
/// their callers with an error through the closed channel.
async fn run_batch(db: &DatabaseConnection, batch: Vec<Job>) -> Result<(), DbErr> {
    let txn = db.begin().await?;
    let guard = if batch.len() == 1 { Guard::Alone } else { Guard::Savepoint };
    let mut replies = Vec::with_capacity(batch.len());
    let mut failed = None;
    for job in batch {
        let (outcome, reply) = job(&txn, guard).await;
        replies.push(reply);
        match outcome {
            Outcome::Succeeded => {}
            // Nothing of a failed write may stand: alone, it takes the transaction with it.
            Outcome::Failed if guard == Guard::Alone => {
                txn.rollback().await?;
                replies.into_iter().for_each(|reply| reply(Ok(())));
                return Ok(());
            }
            Outcome::Failed => {}
            Outcome::Broken => {
                failed = Some("a write could not be undone; its transaction was rolled back".to_owned());
                break;
            }
        }
    }
    let committed = match failed {
        Some(message) => {
            let _ = txn.rollback().await;
            Err(message)
        }
        None => txn.commit().await.map_err(|err| err.to_string()),
    };
    for reply in replies {
        reply(committed.clone());
    }
    Ok(())
}

/// A single-future executor that yields its CPU for a moment before it sleeps. The writer's
/// round trips to SQLite's connection thread answer within tens of microseconds; parking the
/// thread each time (and waking an idle virtual CPU with an interrupt) cost more than the
/// statements did.
mod spin {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// How long to keep yielding before parking.
    const SPIN: Duration = Duration::from_micros(100);

    struct Signal {
        woken: AtomicBool,
        thread: Thread,
    }

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            if !self.woken.swap(true, Ordering::Release) {
                self.thread.unpark();
            }
        }
    }

    pub(super) fn block_on<F: Future>(future: F) -> F::Output {
        let signal = Arc::new(Signal { woken: AtomicBool::new(false), thread: std::thread::current() });
        let waker = Waker::from(Arc::clone(&signal));
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            let started = Instant::now();
            while !signal.woken.swap(false, Ordering::Acquire) {
                if started.elapsed() < SPIN {
                    std::thread::yield_now();
                } else {
                    std::thread::park();
                }
            }
        }
    }
}
