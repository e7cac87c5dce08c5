//! Background jobs. The overdue job (reference §5.2; issue 5 item 5) marks open Tasks that
//! passed their due date with the overdue `businessStatus`, as a new version, once per Task.
//!
//! Safe with several replicas running it at once: every Task is marked in its own transaction
//! that first locks the Task's current row (`Tx::current`: `FOR UPDATE` on PostgreSQL; SQLite has
//! one writer) and decides again on the locked text, so a Task another run marked meanwhile is
//! skipped and each Task gains exactly one version.

use std::time::{Duration, SystemTime};

use anyhow::Context;
use domain::provenance::{Activity, Agent};
use domain::{ingest_as, worklist, IngestMode, ResourceType};
use persistence::Store;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::coordination;

/// Candidates read per page.
const BATCH: u64 = 100;

/// The jobs of one application, to run on a timer (`spawn`) or on demand (tests, operations).
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    /// Record a Provenance with every mark (`Settings::provenance`).
    provenance: bool,
}

/// What one run of the overdue job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marked {
    /// Tasks the search found overdue and not yet marked.
    pub candidates: u64,
    /// Tasks this run marked (a new version each).
    pub marked: u64,
    /// Candidates whose marking failed; the next run tries them again.
    pub failed: u64,
}

impl Jobs {
    pub(crate) fn new(store: Store, provenance: bool) -> Self {
        Self { store, provenance }
    }

    /// Mark every open Task past its due date that is not marked yet, judged at the current time.
    pub async fn mark_overdue_once(&self) -> anyhow::Result<Marked> {
        let now = domain::instant::from_system_time(SystemTime::now());
        let mut request = worklist::candidates(now).context("Task.overdue is not declared")?;
        let mut report = Marked::default();
        loop {
            let page = self.store.search(ResourceType::Task, &request, BATCH).await?;
            for candidate in &page.matches {
                report.candidates += 1;
                match self.mark(&candidate.id, now).await {
                    Ok(true) => report.marked += 1,
                    Ok(false) => {}
                    Err(err) => {
                        report.failed += 1;
                        tracing::warn!(error = format!("{err:#}"), "an overdue Task could not be marked");
                    }
                }
            }
            // The keyset cursor resumes after the last id seen, whatever was marked meanwhile.
            match page.next {
                Some(next) => request.cursor = Some(next),
                None => break,
            }
        }
        Ok(report)
    }

    /// Mark one Task if, under the lock on its current row, it still needs it, with a Provenance
    /// naming this service's overdue job as the agent (unless Provenance is off).
    async fn mark(&self, id: &str, now: i64) -> anyhow::Result<bool> {
        let id = id.to_owned();
        let provenance = self.provenance;
        self.store
            .transaction(Box::new(move |tx| {
                Box::pin(async move {
                    let Some(current) = tx.current(ResourceType::Task, &id).await? else {
                        return Ok(false);
                    };
                    let Some(stored) = current.body.as_deref() else {
                        return Ok(false); // deleted since the search
                    };
                    let Some(next) = worklist::mark_overdue(stored, now)? else {
                        return Ok(false); // marked, closed or due later since the search
                    };
                    let prepared = ingest_as(ResourceType::Task, next.as_bytes(), IngestMode::Update { id: &id })
                        .map_err(|issues| anyhow::anyhow!("the marked Task fails {} ingest check(s)", issues.len()))?;
                    let written = tx.update(&prepared, &id, Some(current.version_id)).await?.version;
                    if provenance {
                        let version = (written.version_id, written.last_updated_ms);
                        let agent = Agent::Service("overdue job");
                        coordination::record_by(tx, ResourceType::Task, &id, version, Activity::Update, agent)
                            .await
                            .map_err(|err| anyhow::anyhow!("the Provenance of an overdue mark: {err}"))?;
                    }
                    Ok::<_, anyhow::Error>(true)
                })
            }))
            .await
    }

    /// Run the overdue job every `interval` (the first run at once) until the runtime stops or
    /// the handle is aborted; `None` when `interval` is zero (disabled).
    pub(crate) fn spawn(&self, interval: Duration) -> Option<JoinHandle<()>> {
        if interval.is_zero() {
            return None;
        }
        let jobs = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match jobs.mark_overdue_once().await {
                    Ok(Marked { candidates, marked, failed }) if candidates > 0 => {
                        tracing::info!(candidates, marked, failed, "overdue job ran");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = format!("{err:#}"), "overdue job failed"),
                }
            }
        }))
    }
}
