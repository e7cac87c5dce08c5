//! `Subscription/{id}/$status`, `Subscription/{id}/$events` and the topics
//! (`SubscriptionTopic`, `SubscriptionTopic/{id}` in the R4B shape the Backport IG lets an R4
//! server publish). The Subscription itself is read through the generic pipeline first, so the
//! same scopes and compartment decide who may ask.

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::{web, HttpRequest, HttpResponse};
use domain::smart::Letter;
use domain::subscriptions::notification::{Kind, Notification};
use domain::subscriptions::{Content, Topic, TOPICS};
use domain::{IssueCode, ResourceType};
use serde_json::{json, Value};

use crate::auth::Access;
use crate::error::ApiError;
use crate::extract::{self, Negotiation};
use crate::responder::{base_url, json_body};
use crate::route::Does;
use crate::state::AppState;
use crate::visible::visible_current;

/// `$status` (Subscriptions Backport IG), as the route table declares it.
pub(crate) const STATUS: Does = Does::Operation {
    name: "status",
    definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
};

/// `$events` (Subscriptions Backport IG), as the route table declares it.
pub(crate) const EVENTS: Does = Does::Operation {
    name: "events",
    definition: "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
};

type Answer = Result<HttpResponse, ApiError>;

/// Most events one `$events` answer holds.
const MAX_EVENTS: i64 = 1000;

/// `GET [base]/Subscription/[id]/$status`: a searchset Bundle holding the status Parameters
/// (`query-status`).
pub(crate) async fn status(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    let id = path.into_inner();
    visible_current(&req, &state, &access, ResourceType::Subscription, &id).await?;
    let subscriber =
        state.store.subscriber(&id).await?.ok_or_else(|| ApiError::NotFound(format!("Subscription/{id}")))?;
    let base = base_url(&req, &state);
    let topic_url = Topic::by_id(&subscriber.config.topic).map(Topic::url).unwrap_or_default();
    let status = Notification {
        base: &base,
        subscription_id: &id,
        topic_url: &topic_url,
        status: subscriber.config.status,
        kind: Kind::QueryStatus,
        events_since_start: subscriber.events_since_start,
        content: Content::Empty,
        events: &[],
    }
    .status();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "link": [{"relation": "self", "url": format!("{base}/Subscription/{id}/$status")}],
        "entry": [{"fullUrl": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "resource": status,
                   "search": {"mode": "match"}}],
    });
    Ok(json_body(HttpResponse::Ok(), bundle.to_string(), neg))
}

/// `GET [base]/Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=`: the
/// stored events as a notification Bundle (`query-event`). Full resources are those the caller
/// may read now.
pub(crate) async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    access: Access,
    path: web::Path<String>,
    neg: Negotiation,
) -> Answer {
    let id = path.into_inner();
    visible_current(&req, &state, &access, ResourceType::Subscription, &id).await?;
    let subscriber =
        state.store.subscriber(&id).await?.ok_or_else(|| ApiError::NotFound(format!("Subscription/{id}")))?;
    let mut since = 1;
    let mut until = subscriber.events_since_start;
    let mut content = subscriber.config.content;
    for (key, value) in extract::query_pairs(req.query_string()) {
        let number = || {
            value.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    IssueCode::Value,
                    key.as_str(),
                    format!("{key} must be an event number, not '{value}'"),
                )
            })
        };
        match key.as_str() {
            "eventsSinceNumber" => since = number()?,
            "eventsUntilNumber" => until = number()?,
            "content" => {
                content = Content::parse(&value).ok_or_else(|| {
                    ApiError::invalid(
                        IssueCode::CodeInvalid,
                        "content",
                        "content must be empty, id-only or full-resource",
                    )
                })?;
            }
            _ => {}
        }
    }
    let stored = state.store.subscription_events(&id, since.max(1), until, MAX_EVENTS).await?;
    let mut texts: Vec<Option<String>> = Vec::with_capacity(stored.len());
    for event in &stored {
        let text = if content == Content::FullResource && access.require(event.focus_type, Letter::Read).is_ok() {
            match state.store.vread(event.focus_type, &event.focus_id, event.focus_version).await {
                Ok(version) if access.sees(&version) => version.body,
                _ => None,
            }
        } else {
            None
        };
        texts.push(text);
    }
    let events = super::numbered(&stored, &texts);
    let base = base_url(&req, &state);
    let topic_url = Topic::by_id(&subscriber.config.topic).map(Topic::url).unwrap_or_default();
    let bundle = Notification {
        base: &base,
        subscription_id: &id,
        topic_url: &topic_url,
        status: subscriber.config.status,
        kind: Kind::QueryEvent,
        events_since_start: subscriber.events_since_start,
        content,
        events: &events,
    }
    .bundle(&uuid::Uuid::new_v4().to_string(), super::now_ms());
    Ok(json_body(HttpResponse::Ok(), bundle, neg))
}

/// `GET [base]/SubscriptionTopic[?url=]`: the topics as a searchset Bundle.
pub(crate) async fn topics(req: HttpRequest, state: web::Data<AppState>, neg: Negotiation) -> Answer {
    let base = base_url(&req, &state);
    let url = extract::query_pairs(req.query_string()).into_iter().find(|(k, _)| k == "url").map(|(_, v)| v);
    let entries: Vec<Value> = TOPICS
        .iter()
        .filter(|t| url.as_deref().is_none_or(|u| t.url() == u))
        .map(|t| {
            json!({"fullUrl": format!("{base}/SubscriptionTopic/{}", t.id), "resource": TOPIC_RESOURCES[t.id].0,
                   "search": {"mode": "match"}})
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/SubscriptionTopic")}],
        "entry": entries,
    });
    Ok(json_body(HttpResponse::Ok(), bundle.to_string(), neg))
}

/// `GET [base]/SubscriptionTopic/[id]`.
pub(crate) async fn topic(path: web::Path<String>, neg: Negotiation) -> Answer {
    let id = path.into_inner();
    let topic = Topic::by_id(&id).ok_or_else(|| ApiError::NotFound(format!("SubscriptionTopic/{id}")))?;
    Ok(json_body(HttpResponse::Ok(), TOPIC_RESOURCES[topic.id].1.clone(), neg))
}

/// Render the topics now (start-up calls this off the serving path).
pub(crate) fn prerender() {
    LazyLock::force(&TOPIC_RESOURCES);
}

/// Each topic's resource and its text, by topic id, rendered once: they change only with the build.
static TOPIC_RESOURCES: LazyLock<HashMap<&'static str, (Value, String)>> = LazyLock::new(|| {
    TOPICS
        .iter()
        .map(|t| {
            let resource = t.resource();
            let text = resource.to_string();
            (t.id, (resource, text))
        })
        .collect()
});
