//! Subscription delivery state and the event outbox.
//!
//! Events are numbered and stored by `Tx::enqueue` inside the transaction of the change that
//! caused them, so a committed change always has its events and a rolled-back one never does.
//! Dispatchers (one per replica) `claim` due subscriptions under a lease: on PostgreSQL the
//! claim skips rows another replica holds (`FOR UPDATE SKIP LOCKED`) and the lease column keeps
//! them away until it expires, so a crashed replica's work is taken up again; SQLite has one
//! writer. Events leave the outbox only with their subscription: they are the `$events` log.

use domain::subscriptions::{Content, Status};
use domain::ResourceType;
use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult};

use crate::error::StoreError;
use crate::sql::Sql;
use crate::store::Store;
use crate::tx::Tx;

/// "Never", for `next_attempt`: a subscription with nothing to send and no heartbeat.
pub const NEVER: i64 = i64::MAX / 2;

/// What a Subscription asks for, as the dispatcher and the matcher need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberConfig {
    pub id: String,
    /// The topic's id (`task-change`).
    pub topic: String,
    /// Filter criteria as sent (`Task?owner=Practitioner/1`), ANDed.
    pub filters: Vec<String>,
    pub status: Status,
    pub endpoint: String,
    pub content: Content,
    pub headers: Vec<(String, String)>,
    pub heartbeat_ms: Option<i64>,
    pub timeout_ms: Option<i64>,
    pub max_count: i64,
    /// The Patient a patient-scoped subscriber is limited to.
    pub patient: Option<String>,
    /// The subscriber's scopes when it subscribed (`None`: authorization was off).
    pub scopes: Option<String>,
}

/// A Subscription's delivery state.
#[derive(Debug, Clone)]
pub struct SubscriberState {
    pub config: SubscriberConfig,
    /// The number of the latest event.
    pub events_since_start: i64,
    /// Every event up to this number was delivered.
    pub delivered_through: i64,
    /// Failed deliveries in a row.
    pub failures: i64,
    pub next_attempt_ms: i64,
    pub last_sent_ms: Option<i64>,
}

/// One numbered event of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionEvent {
    pub number: i64,
    pub recorded_ms: i64,
    pub focus_type: ResourceType,
    pub focus_id: String,
    pub focus_version: i64,
}

/// What a delivery attempt settled, written when the lease is given back.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The status the subscription had when claimed: if a client changed it meanwhile, the
    /// client's word stands and nothing is settled.
    pub from: Status,
    pub status: Status,
    pub delivered_through: i64,
    pub failures: i64,
    pub next_attempt_ms: i64,
    pub last_sent_ms: Option<i64>,
}

const STATE_COLUMNS: &str = "id, topic, filters, status, endpoint, content, headers, heartbeat_ms, timeout_ms, \
     max_count, patient, scopes, events_since_start, delivered_through, failures, next_attempt, last_sent";

fn state(row: &QueryResult) -> Result<SubscriberState, StoreError> {
    let text = |name: &str| row.try_get::<String>("", name);
    let filters: Vec<String> = serde_json::from_str(&text("filters")?).unwrap_or_default();
    let headers: Vec<(String, String)> = serde_json::from_str(&text("headers")?).unwrap_or_default();
    Ok(SubscriberState {
        config: SubscriberConfig {
            id: text("id")?,
            topic: text("topic")?,
            filters,
            status: Status::parse(&text("status")?).unwrap_or(Status::Off),
            endpoint: text("endpoint")?,
            content: Content::parse(&text("content")?).unwrap_or(Content::Empty),
            headers,
            heartbeat_ms: row.try_get("", "heartbeat_ms")?,
            timeout_ms: row.try_get("", "timeout_ms")?,
            max_count: row.try_get("", "max_count")?,
            patient: row.try_get("", "patient")?,
            scopes: row.try_get("", "scopes")?,
        },
        events_since_start: row.try_get("", "events_since_start")?,
        delivered_through: row.try_get("", "delivered_through")?,
        failures: row.try_get("", "failures")?,
        next_attempt_ms: row.try_get("", "next_attempt")?,
        last_sent_ms: row.try_get("", "last_sent")?,
    })
}

fn event(row: &QueryResult) -> Result<Option<SubscriptionEvent>, StoreError> {
    let ty: String = row.try_get("", "focus_type")?;
    let Some(focus_type) = ResourceType::parse(&ty) else { return Ok(None) };
    Ok(Some(SubscriptionEvent {
        number: row.try_get("", "event_number")?,
        recorded_ms: row.try_get("", "recorded")?,
        focus_type,
        focus_id: row.try_get("", "focus_id")?,
        focus_version: row.try_get("", "focus_version")?,
    }))
}

impl Tx<'_> {
    /// Record what a Subscription asks for. A new one starts with no events; `restart` (a new
    /// or re-requested subscription) clears the failures and makes it due at once.
    #[tracing::instrument(name = "db.put_subscription", skip_all, fields(otel.kind = "client", db.operation.name = "put_subscription"))]
    pub async fn put_subscription(&self, config: &SubscriberConfig, now_ms: i64) -> Result<(), StoreError> {
        // Before the row exists, so no write after it skips the look-up (kept cleared even if
        // this transaction rolls back: the look-up is then merely asked again).
        self.no_subscribers.store(false, std::sync::atomic::Ordering::SeqCst);
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let filters = serde_json::to_string(&config.filters).unwrap_or_else(|_| "[]".into());
        let headers = serde_json::to_string(&config.headers).unwrap_or_else(|_| "[]".into());
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO subscription_state (id, topic, filters, status, endpoint, content, headers, heartbeat_ms, \
             timeout_ms, max_count, patient, scopes, next_attempt) VALUES (",
        )
        .bind(config.id.clone())
        .push(", ")
        .bind(config.topic.clone())
        .push(", ")
        .bind(filters)
        .push(", ")
        .bind(config.status.code())
        .push(", ")
        .bind(config.endpoint.clone())
        .push(", ")
        .bind(config.content.code())
        .push(", ")
        .bind(headers)
        .push(", ")
        .bind(config.heartbeat_ms)
        .push(", ")
        .bind(config.timeout_ms)
        .push(", ")
        .bind(config.max_count)
        .push(", ")
        .bind(config.patient.clone())
        .push(", ")
        .bind(config.scopes.clone())
        .push(", ")
        .bind(now_ms)
        .push(
            ") ON CONFLICT (id) DO UPDATE SET topic = excluded.topic, filters = excluded.filters, \
             status = excluded.status, endpoint = excluded.endpoint, content = excluded.content, \
             headers = excluded.headers, heartbeat_ms = excluded.heartbeat_ms, timeout_ms = excluded.timeout_ms, \
             max_count = excluded.max_count, patient = excluded.patient, scopes = excluded.scopes, \
             failures = 0, next_attempt = excluded.next_attempt",
        );
        txn.execute(sql.statement()).await?;
        self.note_due();
        Ok(())
    }

    /// Forget a deleted Subscription and its events.
    #[tracing::instrument(name = "db.remove_subscription", skip_all, fields(otel.kind = "client", db.operation.name = "remove_subscription"))]
    pub async fn remove_subscription(&self, id: &str) -> Result<(), StoreError> {
        let txn = self.conn().await?;
        for table in ["subscription_event WHERE subscription_id = ", "subscription_state WHERE id = "] {
            let mut sql = Sql::new(txn.get_database_backend());
            sql.push("DELETE FROM ").push(table).bind(id.to_owned());
            txn.execute(sql.statement()).await?;
        }
        Ok(())
    }

    /// The subscriptions (not switched off) to any of `topics`.
    #[tracing::instrument(name = "db.subscribers", skip_all, fields(otel.kind = "client", db.operation.name = "subscribers"))]
    pub async fn subscribers(&self, topics: &[&str]) -> Result<Vec<SubscriberState>, StoreError> {
        if topics.is_empty() || self.no_subscribers.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Vec::new());
        }
        // With the write's deferred statements: none of them writes `subscription_state`
        // (`put_subscription` and `enqueue` write it at once).
        let rows = self
            .query_after_writes(|sql| {
                sql.push("SELECT ")
                    .push(STATE_COLUMNS)
                    .push(" FROM subscription_state WHERE status <> 'off' AND topic IN (")
                    .bind_list(topics.iter().map(|t| (*t).to_owned()))
                    .push(") ORDER BY id");
            })
            .await?;
        rows.iter().map(state).collect()
    }

    /// Number and store the next event of subscription `id`, about `focus` (type, id, version),
    /// and make the subscription due unless it is backing off after failures. Returns the
    /// event's number. The state row is locked until the transaction ends, so numbers are
    /// gapless and in commit order per subscription.
    #[tracing::instrument(name = "db.enqueue", skip_all, fields(otel.kind = "client", db.operation.name = "enqueue"))]
    pub async fn enqueue(
        &self,
        id: &str,
        recorded_ms: i64,
        focus: (ResourceType, &str, i64),
    ) -> Result<i64, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut sql = Sql::new(backend);
        sql.push(
            "UPDATE subscription_state SET events_since_start = events_since_start + 1, \
             next_attempt = CASE WHEN failures = 0 AND next_attempt > ",
        )
        .bind(recorded_ms)
        .push(" THEN ")
        .bind(recorded_ms)
        .push(" ELSE next_attempt END WHERE id = ")
        .bind(id.to_owned())
        .push(" RETURNING events_since_start");
        let row = txn.query_one(sql.statement()).await?.ok_or(StoreError::NotFound)?;
        let number: i64 = row.try_get("", "events_since_start")?;
        let (ty, focus_id, version) = focus;
        let mut sql = Sql::new(backend);
        sql.push(
            "INSERT INTO subscription_event (subscription_id, event_number, recorded, focus_type, focus_id, \
             focus_version) VALUES (",
        )
        .bind(id.to_owned())
        .push(", ")
        .bind(number)
        .push(", ")
        .bind(recorded_ms)
        .push(", ")
        .bind(ty.as_str())
        .push(", ")
        .bind(focus_id.to_owned())
        .push(", ")
        .bind(version)
        .push(")");
        txn.execute(sql.statement()).await?;
        self.note_due();
        Ok(number)
    }

    /// Lease up to `limit` due subscriptions to `owner` until `now_ms + lease_ms`. Rows another
    /// replica is claiming are skipped (PostgreSQL), and rows under a live lease are not due.
    #[tracing::instrument(name = "db.claim", skip_all, fields(otel.kind = "client", db.operation.name = "claim"))]
    pub async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
        limit: i64,
    ) -> Result<Vec<SubscriberState>, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut sql = Sql::new(backend);
        sql.push("UPDATE subscription_state SET lease_until = ")
            .bind(now_ms.saturating_add(lease_ms))
            .push(", lease_owner = ")
            .bind(owner.to_owned())
            .push(" WHERE id IN (SELECT id FROM subscription_state WHERE status <> 'off' AND next_attempt <= ")
            .bind(now_ms)
            .push(" AND (lease_until IS NULL OR lease_until <= ")
            .bind(now_ms)
            .push(") ORDER BY next_attempt LIMIT ")
            .bind(limit);
        if backend == DatabaseBackend::Postgres {
            sql.push(" FOR UPDATE SKIP LOCKED");
        }
        sql.push(") RETURNING ").push(STATE_COLUMNS);
        txn.query_all(sql.statement()).await?.iter().map(state).collect()
    }

    /// Write what a delivery attempt settled and give the lease back, if `owner` still holds
    /// it. Returns whether it did (a lease that expired meanwhile may be someone else's now).
    #[tracing::instrument(name = "db.settle", skip_all, fields(otel.kind = "client", db.operation.name = "settle"))]
    pub async fn settle(&self, id: &str, owner: &str, settled: &Settlement) -> Result<bool, StoreError> {
        let txn = self.conn().await?;
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("UPDATE subscription_state SET status = ")
            .bind(settled.status.code())
            .push(", delivered_through = ")
            .bind(settled.delivered_through)
            .push(", failures = ")
            .bind(settled.failures)
            .push(", next_attempt = ");
        if settled.failures == 0 {
            // Events enqueued while this delivery was under way make it due again at once.
            sql.push("CASE WHEN events_since_start > ")
                .bind(settled.delivered_through)
                .push(" THEN 0 ELSE ")
                .bind(settled.next_attempt_ms)
                .push(" END");
        } else {
            sql.bind(settled.next_attempt_ms);
        }
        sql.push(", last_sent = ")
            .bind(settled.last_sent_ms)
            .push(", lease_until = NULL, lease_owner = NULL WHERE id = ")
            .bind(id.to_owned())
            .push(" AND lease_owner = ")
            .bind(owner.to_owned())
            .push(" AND status = ")
            .bind(settled.from.code());
        if txn.execute(sql.statement()).await?.rows_affected() == 1 {
            return Ok(true);
        }
        // Changed by its client meanwhile: settle nothing, but let it go.
        let mut sql = Sql::new(txn.get_database_backend());
        sql.push("UPDATE subscription_state SET lease_until = NULL, lease_owner = NULL WHERE id = ")
            .bind(id.to_owned())
            .push(" AND lease_owner = ")
            .bind(owner.to_owned());
        txn.execute(sql.statement()).await?;
        Ok(false)
    }

    /// The state of subscription `id`, locked until the transaction ends.
    #[tracing::instrument(name = "db.lock_subscriber", skip_all, fields(otel.kind = "client", db.operation.name = "lock_subscriber"))]
    pub async fn subscriber(&self, id: &str) -> Result<Option<SubscriberState>, StoreError> {
        let txn = self.conn().await?;
        let backend = txn.get_database_backend();
        let mut sql = Sql::new(backend);
        sql.push("SELECT ").push(STATE_COLUMNS).push(" FROM subscription_state WHERE id = ").bind(id.to_owned());
        if backend == DatabaseBackend::Postgres {
            sql.push(" FOR UPDATE");
        }
        txn.query_one(sql.statement()).await?.as_ref().map(state).transpose()
    }

    /// Events of `id` numbered above `after`, oldest first, at most `limit`.
    #[tracing::instrument(name = "db.pending_events", skip_all, fields(otel.kind = "client", db.operation.name = "pending_events"))]
    pub async fn pending_events(&self, id: &str, after: i64, limit: i64) -> Result<Vec<SubscriptionEvent>, StoreError> {
        events(self.conn().await?, id, after + 1, i64::MAX, limit).await
    }
}

impl Store {
    /// Whether any subscription is due at `now_ms` (a cheap read before a claim, which writes).
    pub async fn subscriptions_due(&self, now_ms: i64) -> Result<bool, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT id FROM subscription_state WHERE status <> 'off' AND next_attempt <= ")
            .bind(now_ms)
            .push(" AND (lease_until IS NULL OR lease_until <= ")
            .bind(now_ms)
            .push(") LIMIT 1");
        Ok(self.reader.query_one(sql.statement()).await?.is_some())
    }

    /// The delivery state of subscription `id`.
    #[tracing::instrument(name = "db.subscriber", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "subscriber"))]
    pub async fn subscriber(&self, id: &str) -> Result<Option<SubscriberState>, StoreError> {
        let mut sql = Sql::new(self.reader.get_database_backend());
        sql.push("SELECT ").push(STATE_COLUMNS).push(" FROM subscription_state WHERE id = ").bind(id.to_owned());
        self.reader.query_one(sql.statement()).await?.as_ref().map(state).transpose()
    }

    /// Events of `id` numbered `from..=to`, oldest first, at most `limit`.
    #[tracing::instrument(name = "db.subscription_events", skip_all, fields(otel.kind = "client", db.system.name = self.backend.system(), db.operation.name = "subscription_events"))]
    pub async fn subscription_events(
        &self,
        id: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<SubscriptionEvent>, StoreError> {
        events(&self.reader, id, from, to, limit).await
    }
}

async fn events(
    db: &impl ConnectionTrait,
    id: &str,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<SubscriptionEvent>, StoreError> {
    let mut sql = Sql::new(db.get_database_backend());
    sql.push(
        "SELECT event_number, recorded, focus_type, focus_id, focus_version FROM subscription_event \
         WHERE subscription_id = ",
    )
    .bind(id.to_owned())
    .push(" AND event_number >= ")
    .bind(from)
    .push(" AND event_number <= ")
    .bind(to)
    .push(" ORDER BY event_number LIMIT ")
    .bind(limit);
    let rows = db.query_all(sql.statement()).await?;
    Ok(rows.iter().map(event).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}
