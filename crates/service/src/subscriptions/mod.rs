//! Topic-based Subscriptions (Subscriptions Backport IG 1.1.0) on the write path:
//! - a Subscription written by a client is checked (topic, filters, endpoint allow-list, the
//!   read scope its topic needs) and its status kept by the server (`before_write`), and its
//!   delivery state recorded in the same transaction (`after_write`);
//! - `Matcher`, the store's `Announcer`, numbers an event in the outbox for every subscription a
//!   committed change concerns, inside the transaction of that change (`announce`);
//! - `dispatch` delivers them; `operations` serves `$status`, `$events` and the topics.

pub mod dispatch;
pub(crate) mod operations;

use std::time::SystemTime;

use domain::search;
use domain::smart::{Facts, Grants, Letter, Policy};
use domain::subscriptions::{self, topics, Status, Topic, SUBSCRIBER_PATIENT_URL};
use domain::{ingest_as, with_member, IngestMode, Issue, IssueCode, Prepared, ResourceType, VersionMeta};
use futures_util::future::BoxFuture;
use persistence::{Announcer, Change, StoreError, StoredVersion, SubscriberConfig, SubscriberState, Tx};
use serde_json::Value;

use crate::coordination::Context;
use crate::error::ApiError;

pub(crate) fn now_ms() -> i64 {
    domain::instant::from_system_time(SystemTime::now())
}

/// Check a Subscription a client writes and set what the server owns: its status (a new or
/// changed subscription is `requested` until its handshake; `off` when the client says so;
/// otherwise what delivery made it) and the subscriber's patient (from the token).
pub(crate) fn before_write(
    ctx: &Context,
    id: &str,
    previous: Option<&str>,
    prepared: Prepared,
) -> Result<Prepared, ApiError> {
    let text = prepared.render(id, VersionMeta { version_id: 0, last_updated_ms: 0 });
    let value: Value = serde_json::from_str(&text).map_err(|err| ApiError::Internal(err.into()))?;
    let spec = subscriptions::spec(&value).map_err(ApiError::Unprocessable)?;
    if !ctx.subscription_endpoints.iter().any(|prefix| allowed(&spec.endpoint, prefix)) {
        return Err(ApiError::Unprocessable(vec![Issue::error(
            IssueCode::BusinessRule,
            "Subscription.channel.endpoint",
            "the endpoint is not one this server may deliver to (CAREPLAN_SUBSCRIPTION_ENDPOINTS)",
        )]));
    }
    // Subscribing is reading: the topic's type must be readable with the caller's token.
    let ty = spec.topic.resource;
    if ctx.access.require(ty, Letter::Read).is_err() && ctx.access.require(ty, Letter::Search).is_err() {
        return Err(ApiError::Forbidden(format!(
            "subscribing to {} needs a scope that allows reading {ty}",
            spec.topic.id
        )));
    }
    let before = previous.and_then(|p| serde_json::from_str::<Value>(p).ok());
    let before_spec = before.as_ref().and_then(|b| subscriptions::spec(b).ok());
    let before_status = before_spec.as_ref().map(|s| s.status);
    let unchanged = before_spec.as_ref().is_some_and(|b| same_delivery(b, &spec));
    let status = match (spec.status, before_status) {
        (Status::Off, _) => Status::Off,
        (_, Some(kept)) if unchanged && kept != Status::Off => kept,
        _ => Status::Requested,
    };
    let text = if status == spec.status {
        text
    } else {
        with_member(&text, "status", &Value::String(status.code().into())).map_err(|e| ApiError::Internal(e.into()))?
    };
    let patient = ctx.access.principal().and_then(|p| p.policy.patient()).map(str::to_owned);
    let prepared = ingest_as(ResourceType::Subscription, text.as_bytes(), IngestMode::Update { id })
        .map_err(ApiError::Invalid)?
        .with_meta_extension(
            SUBSCRIBER_PATIENT_URL,
            patient.as_deref().map(subscriptions::subscriber_patient_extension).as_ref(),
        )
        .map_err(|err| ApiError::Internal(err.into()))?;
    // The index must know the server's extension (the `patient` parameter reads only it).
    let rendered = prepared.render(id, VersionMeta { version_id: 0, last_updated_ms: 0 });
    let value: Value = serde_json::from_str(&rendered).map_err(|err| ApiError::Internal(err.into()))?;
    Ok(prepared.with_index(search::extract(ResourceType::Subscription, &value)))
}

/// Whether `endpoint` is under the allow-list entry `prefix`, on a URL boundary: the prefix
/// `https://ehr.example.org` admits `https://ehr.example.org/hooks`, not
/// `https://ehr.example.org.evil.example/`.
fn allowed(endpoint: &str, prefix: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix(prefix) else { return false };
    !prefix.is_empty()
        && (prefix.ends_with('/') || rest.is_empty() || rest.starts_with(['/', '?', '#']))
        && !endpoint.contains(['@', '\\'])
}

/// Whether two subscriptions deliver the same events to the same place the same way.
fn same_delivery(a: &subscriptions::Spec, b: &subscriptions::Spec) -> bool {
    a.topic.id == b.topic.id
        && a.filter_text == b.filter_text
        && a.endpoint == b.endpoint
        && a.content == b.content
        && a.headers == b.headers
}

/// After a Subscription version is written: record what delivery needs, in the same
/// transaction, with the subscriber's patient and scopes to judge each event by.
pub(crate) async fn after_write(tx: &Tx<'_>, ctx: &Context, written: &StoredVersion) -> Result<(), ApiError> {
    let Some(text) = written.body.as_deref() else { return Ok(()) };
    let value: Value = serde_json::from_str(text).map_err(|err| ApiError::Internal(err.into()))?;
    let spec = subscriptions::spec(&value).map_err(ApiError::Unprocessable)?;
    let principal = ctx.access.principal();
    let config = SubscriberConfig {
        id: written.id.clone(),
        topic: spec.topic.id.to_owned(),
        filters: spec.filter_text,
        status: spec.status,
        endpoint: spec.endpoint,
        content: spec.content,
        headers: spec.headers,
        heartbeat_ms: spec.heartbeat_secs.map(|s| i64::from(s) * 1000),
        timeout_ms: spec.timeout_secs.map(|s| i64::from(s) * 1000),
        max_count: i64::from(spec.max_count),
        patient: subscriptions::subscriber_patient(&value),
        scopes: principal.map(|p| p.scope.clone()),
    };
    tx.put_subscription(&config, now_ms()).await?;
    Ok(())
}

/// The store's announcer: events for the subscriptions each committed change concerns. After
/// a commit it wakes this replica's dispatcher, which otherwise looks every poll interval.
#[derive(Default)]
pub(crate) struct Matcher {
    pub(crate) committed: std::sync::Arc<tokio::sync::Notify>,
}

impl Announcer for Matcher {
    fn announce<'a>(&'a self, tx: &'a Tx<'a>, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(announce(tx, changes))
    }

    fn committed(&self) {
        self.committed.notify_one();
    }
}

async fn announce(tx: &Tx<'_>, changes: &[Change]) -> Result<(), StoreError> {
    for change in changes.iter().filter(|c| c.version.resource_type == ResourceType::Subscription) {
        if change.version.body.is_none() {
            tx.remove_subscription(&change.version.id).await?;
        }
    }
    // One indexed look-up before any parsing: without subscribers to these types' topics (the
    // common case) a write pays nothing more.
    let mut candidates: Vec<&str> = topics::TOPICS
        .iter()
        .filter(|t| changes.iter().any(|c| c.version.resource_type == t.resource))
        .map(|t| t.id)
        .collect();
    candidates.dedup();
    let subscribers = tx.subscribers(&candidates).await?;
    if subscribers.is_empty() {
        return Ok(());
    }
    // (subscriber, change) in change order; enqueued by subscriber id below, so that every
    // transaction locks subscription rows in the same order (no deadlock between writers).
    let mut heard: Vec<(&SubscriberState, &Change)> = Vec::new();
    for change in changes {
        let ty = change.version.resource_type;
        if !subscribers.iter().any(|s| Topic::by_id(&s.config.topic).is_some_and(|t| t.resource == ty)) {
            continue;
        }
        let parse = |text: Option<&str>| text.and_then(|t| serde_json::from_str::<Value>(t).ok());
        let before = parse(change.previous.as_deref());
        let after = parse(change.version.body.as_deref());
        let fired = topics::fired(ty, before.as_ref(), after.as_ref());
        // A deletion is judged by the version it deleted.
        let Some(focus) = after.as_ref().or(before.as_ref()) else { continue };
        if fired.is_empty() {
            continue;
        }
        let index = search::extract(ty, focus);
        for topic in fired {
            for subscriber in subscribers.iter().filter(|s| s.config.topic == topic.id) {
                if hears(subscriber, topic, ty, &index) {
                    heard.push((subscriber, change));
                }
            }
        }
    }
    heard.sort_by(|a, b| a.0.config.id.cmp(&b.0.config.id));
    for (subscriber, change) in heard {
        let version = &change.version;
        let focus = (version.resource_type, version.id.as_str(), version.version_id);
        tx.enqueue(&subscriber.config.id, version.last_updated_ms, focus).await?;
    }
    Ok(())
}

/// Whether a subscriber hears of a resource with these index entries: every filter holds, and
/// the scopes it subscribed with let it read the resource (its patient, its constraints).
fn hears(subscriber: &SubscriberState, topic: &Topic, ty: ResourceType, index: &[search::IndexEntry]) -> bool {
    let filters_hold = subscriber.config.filters.iter().all(|text| {
        subscriptions::parse_filter(topic, text).is_ok_and(|filters| filters.iter().all(|f| f.matches(index)))
    });
    if !filters_hold {
        return false;
    }
    match &subscriber.config.scopes {
        None => true,
        Some(scopes) => {
            let policy = Policy::new(Grants::parse(scopes), subscriber.config.patient.clone());
            let facts = Facts::of_index(index);
            policy.allows(ty, Letter::Read, &facts) || policy.allows(ty, Letter::Search, &facts)
        }
    }
}

/// Stored events as the numbered events of a notification Bundle; `texts[i]` is the focus's
/// stored text for a full-resource payload (`None`: reference only).
fn numbered<'a>(
    events: &'a [persistence::SubscriptionEvent],
    texts: &'a [Option<String>],
) -> Vec<domain::subscriptions::notification::Event<'a>> {
    use domain::subscriptions::notification::{Event, Focus};
    events
        .iter()
        .zip(texts)
        .map(|(event, text)| Event {
            number: event.number,
            recorded_ms: event.recorded_ms,
            focus: Focus {
                ty: event.focus_type,
                id: &event.focus_id,
                version: event.focus_version,
                text: text.as_deref(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::allowed;

    #[test]
    fn endpoints_are_allowed_only_under_a_prefix_on_a_url_boundary() {
        for (endpoint, prefix, expected) in [
            ("https://ehr.example.org/hooks/1", "https://ehr.example.org/hooks/", true),
            ("https://ehr.example.org/hooks/1", "https://ehr.example.org", true),
            ("https://ehr.example.org", "https://ehr.example.org", true),
            ("https://ehr.example.org.evil.example/", "https://ehr.example.org", false),
            ("https://ehr.example.org:8443/", "https://ehr.example.org", false),
            ("https://ehr.example.org@evil.example/", "https://ehr.example.org", false),
            ("https://other.example/", "https://ehr.example.org/", false),
            ("https://ehr.example.org/", "", false),
        ] {
            assert_eq!(allowed(endpoint, prefix), expected, "{endpoint} under {prefix}");
        }
    }
}
