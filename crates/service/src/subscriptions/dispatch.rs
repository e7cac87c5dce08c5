//! The dispatcher: each replica claims due subscriptions under a lease, sends each one
//! notification (a handshake, up to `max-count` events, or a heartbeat) by rest-hook, and
//! settles the outcome: delivered events are passed, failures back off (doubling, capped), too
//! many in a row move the subscription to `error`, and the next success makes it `active` again.
//!
//! Delivery is at least once: an event counts as delivered only after a 2xx, so a crash between
//! sending and settling sends it again once the lease expires; receivers tell repeats by
//! `event-number`. Logs carry the subscription id and status codes only: never the endpoint,
//! headers or payload.

use std::time::Duration;

use anyhow::Context as _;
use domain::subscriptions::notification::{Kind, Notification};
use domain::subscriptions::{Status, Topic};
use domain::{ingest_as, with_member, IngestMode, ResourceType};
use persistence::{Settlement, Store, StoreError, SubscriberState, SubscriptionEvent, NEVER};
use serde_json::Value;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::now_ms;
use crate::config::SubscriptionSettings;

/// Subscriptions one pass claims at most.
const CLAIM: i64 = 32;

/// Delivers notifications; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    client: reqwest::Client,
    settings: SubscriptionSettings,
    /// The FHIR base named in notifications.
    base: String,
    /// This replica's name on the leases it takes.
    owner: String,
    /// Notified when a local write put events in the outbox.
    wake: Arc<Notify>,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub claimed: usize,
    pub delivered: usize,
    pub failed: usize,
}

/// What one attempt sent.
enum Sent {
    Nothing,
    Delivered { through: i64 },
    Failed,
}

impl Dispatcher {
    pub(crate) fn new(
        store: Store,
        settings: SubscriptionSettings,
        base: String,
        wake: Arc<Notify>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .build()
            .context("cannot build the notification HTTP client")?;
        Ok(Self { store, client, settings, base, owner: uuid::Uuid::new_v4().simple().to_string(), wake })
    }

    /// A dispatcher with a lease name of its own, as another replica on the same database
    /// would have (tests of concurrent replicas and of expired leases).
    pub fn replica(&self) -> Self {
        Self { owner: uuid::Uuid::new_v4().simple().to_string(), ..self.clone() }
    }

    /// Claim what is due and deliver it, each subscription concurrently.
    pub async fn run_once(&self) -> anyhow::Result<Pass> {
        let now = now_ms();
        if !self.store.subscriptions_due(now).await? {
            return Ok(Pass::default());
        }
        let lease = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let owner = self.owner.clone();
        let claimed = self
            .store
            .transaction(Box::new(move |tx| Box::pin(async move { tx.claim(now, lease, &owner, CLAIM).await })))
            .await?;
        let mut pass = Pass { claimed: claimed.len(), ..Pass::default() };
        let outcomes = futures_util::future::join_all(claimed.into_iter().map(|s| self.deliver(s))).await;
        for outcome in outcomes {
            match outcome {
                Ok(Sent::Delivered { .. }) => pass.delivered += 1,
                Ok(Sent::Failed) => pass.failed += 1,
                Ok(Sent::Nothing) => {}
                Err(err) => {
                    pass.failed += 1;
                    tracing::warn!(error = format!("{err:#}"), "a notification could not be settled");
                }
            }
        }
        Ok(pass)
    }

    /// Run a pass every `poll`, and at once when a local write enqueued events, until aborted;
    /// `None` when `poll` is zero (delivery disabled).
    pub(crate) fn spawn(&self) -> Option<JoinHandle<()>> {
        if self.settings.poll.is_zero() {
            return None;
        }
        let dispatcher = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(dispatcher.settings.poll);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = dispatcher.wake.notified() => {}
                }
                if let Err(err) = dispatcher.run_once().await {
                    tracing::warn!(error = format!("{err:#}"), "the notification dispatcher failed");
                }
            }
        }))
    }

    async fn deliver(&self, state: SubscriberState) -> anyhow::Result<Sent> {
        let now = now_ms();
        let config = &state.config;
        let Some(topic) = Topic::by_id(&config.topic) else {
            self.settle(&state, config.status, state.delivered_through, state.failures, NEVER, state.last_sent_ms)
                .await?;
            return Ok(Sent::Nothing);
        };
        let pending = if state.events_since_start > state.delivered_through {
            self.store.subscription_events(&config.id, state.delivered_through + 1, i64::MAX, config.max_count).await?
        } else {
            Vec::new()
        };
        let heartbeat_due = |hb: i64| state.last_sent_ms.is_none_or(|last| last.saturating_add(hb) <= now);
        let kind = match config.status {
            Status::Requested => Some(Kind::Handshake),
            _ if !pending.is_empty() => Some(Kind::EventNotification),
            Status::Error => Some(Kind::Handshake),
            _ if config.heartbeat_ms.is_some_and(heartbeat_due) => Some(Kind::Heartbeat),
            _ => None,
        };
        let Some(kind) = kind else {
            let next = self.heartbeat_after(&state, state.last_sent_ms.unwrap_or(now));
            self.settle(&state, config.status, state.delivered_through, 0, next, state.last_sent_ms).await?;
            return Ok(Sent::Nothing);
        };
        let events = if kind == Kind::EventNotification { pending } else { Vec::new() };
        let mut sent = self.send(&state, topic, kind, &events).await;
        let mut through = state.delivered_through;
        let mut succeeded = false;
        // A backlog is sent on while half the lease lasts, then settled once; a crash before that
        // sends it again (at least once).
        let budget = i64::try_from(self.settings.lease.as_millis() / 2).unwrap_or(i64::MAX);
        while let Sent::Delivered { through: delivered } = sent {
            through = through.max(delivered);
            succeeded = true;
            if kind != Kind::EventNotification || now_ms() - now > budget {
                break;
            }
            let more = self.store.subscription_events(&config.id, through + 1, i64::MAX, config.max_count).await?;
            if more.is_empty() {
                break;
            }
            let current = SubscriberState { delivered_through: through, ..state.clone() };
            sent = self.send(&current, topic, kind, &more).await;
        }
        match sent {
            Sent::Delivered { .. } => {
                let next = self.heartbeat_after(&state, now_ms());
                self.settle(&state, Status::Active, through, 0, next, Some(now_ms())).await?;
            }
            Sent::Failed => {
                // Events delivered before the failure count; the subscription is then working.
                let (status, failures) =
                    if succeeded { (Status::Active, 1) } else { (config.status, state.failures + 1) };
                let status = if status == Status::Requested || failures >= i64::from(self.settings.max_failures) {
                    Status::Error
                } else {
                    status
                };
                let next = now_ms().saturating_add(self.backoff(failures));
                let last_sent = if succeeded { Some(now_ms()) } else { state.last_sent_ms };
                self.settle(&state, status, through, failures, next, last_sent).await?;
            }
            Sent::Nothing => {}
        }
        Ok(sent)
    }

    /// Build and POST one notification; `Delivered` only on a 2xx.
    async fn send(&self, state: &SubscriberState, topic: &Topic, kind: Kind, events: &[SubscriptionEvent]) -> Sent {
        let config = &state.config;
        let mut texts: Vec<Option<String>> = Vec::with_capacity(events.len());
        for event in events {
            let text = if config.content == domain::subscriptions::Content::FullResource {
                self.store.vread(event.focus_type, &event.focus_id, event.focus_version).await.ok().and_then(|v| v.body)
            } else {
                None
            };
            texts.push(text);
        }
        let numbered = super::numbered(events, &texts);
        let through = events.last().map_or(state.delivered_through, |e| e.number);
        let topic_url = topic.url();
        let notification = Notification {
            base: &self.base,
            subscription_id: &config.id,
            topic_url: &topic_url,
            status: if kind == Kind::Handshake { config.status } else { Status::Active },
            kind,
            events_since_start: if kind == Kind::EventNotification { through } else { state.events_since_start },
            content: config.content,
            events: &numbered,
        };
        let body = notification.bundle(&uuid::Uuid::new_v4().to_string(), now_ms());
        let mut request = self.client.post(&config.endpoint).header("content-type", "application/fhir+json");
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(ms) = config.timeout_ms {
            request = request.timeout(Duration::from_millis(ms.unsigned_abs()).min(self.settings.timeout));
        }
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(subscription = %config.id, kind = kind.code(), status = response.status().as_u16(), "notification delivered");
                Sent::Delivered { through }
            }
            Ok(response) => {
                tracing::info!(subscription = %config.id, kind = kind.code(), status = response.status().as_u16(), "notification refused");
                Sent::Failed
            }
            Err(err) => {
                let why = if err.is_timeout() {
                    "timeout"
                } else if err.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                tracing::info!(subscription = %config.id, kind = kind.code(), error = why, "notification not delivered");
                Sent::Failed
            }
        }
    }

    /// When the next heartbeat is due after a notification sent at `sent`.
    fn heartbeat_after(&self, state: &SubscriberState, sent: i64) -> i64 {
        state.config.heartbeat_ms.map_or(NEVER, |hb| sent.saturating_add(hb))
    }

    fn backoff(&self, failures: i64) -> i64 {
        let base = i64::try_from(self.settings.retry_base.as_millis()).unwrap_or(i64::MAX);
        let max = i64::try_from(self.settings.retry_max.as_millis()).unwrap_or(i64::MAX);
        let shift = u32::try_from((failures - 1).clamp(0, 30)).unwrap_or(30);
        base.saturating_mul(1i64 << shift).min(max)
    }

    /// Record the outcome and give the lease back; a status change is also a new version of the
    /// Subscription resource, written in the same transaction.
    async fn settle(
        &self,
        state: &SubscriberState,
        status: Status,
        delivered_through: i64,
        failures: i64,
        next_attempt_ms: i64,
        last_sent_ms: Option<i64>,
    ) -> anyhow::Result<()> {
        let id = state.config.id.clone();
        let owner = self.owner.clone();
        let from = state.config.status;
        let settlement = Settlement { from, status, delivered_through, failures, next_attempt_ms, last_sent_ms };
        self.store
            .transaction(Box::new(move |tx| {
                Box::pin(async move {
                    let held = tx.settle(&id, &owner, &settlement).await?;
                    if !held || status == from {
                        return Ok(());
                    }
                    if status != Status::Active || from != Status::Active {
                        tracing::info!(subscription = %id, from = from.code(), to = status.code(), "subscription status changed");
                    }
                    let Some(current) = tx.current(ResourceType::Subscription, &id).await? else { return Ok(()) };
                    let Some(text) = current.body else { return Ok(()) };
                    let text = with_member(&text, "status", &Value::String(status.code().into()))
                        .map_err(|err| StoreError::Aborted(err.to_string()))?;
                    let prepared = ingest_as(ResourceType::Subscription, text.as_bytes(), IngestMode::Update { id: &id })
                        .map_err(|issues| {
                            StoreError::Aborted(format!(
                                "the Subscription fails {} check(s) after a status change",
                                issues.len()
                            ))
                        })?;
                    tx.update(&prepared, &id, Some(current.version_id)).await?;
                    Ok::<_, StoreError>(())
                })
            }))
            .await?;
        Ok(())
    }
}
