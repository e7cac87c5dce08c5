//! Notification Bundles (http://hl7.org/fhir/uv/subscriptions-backport/STU1.1/notifications.html):
//! a `history` Bundle whose first entry is a `Parameters` of the
//! `backport-subscription-status-r4` profile, then the focus of each event (id-only: the entry
//! names it; full-resource: it carries the stored text, untouched).

use serde_json::{json, Value};

use super::{Content, Status, STATUS_PROFILE};
use crate::instant;
use crate::resource::ResourceType;

/// What a notification is for (`SubscriptionStatus.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handshake,
    Heartbeat,
    EventNotification,
    QueryStatus,
    QueryEvent,
}

impl Kind {
    pub fn code(self) -> &'static str {
        match self {
            Kind::Handshake => "handshake",
            Kind::Heartbeat => "heartbeat",
            Kind::EventNotification => "event-notification",
            Kind::QueryStatus => "query-status",
            Kind::QueryEvent => "query-event",
        }
    }
}

/// The resource an event is about, at the version that caused it.
#[derive(Debug, Clone)]
pub struct Focus<'a> {
    pub ty: ResourceType,
    pub id: &'a str,
    pub version: i64,
    /// The stored text of that version; `None` for a deletion (or when not at hand).
    pub text: Option<&'a str>,
}

/// One numbered event.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub number: i64,
    pub recorded_ms: i64,
    pub focus: Focus<'a>,
}

/// Everything a notification says.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    /// The FHIR base, for `fullUrl`s and the subscription reference.
    pub base: &'a str,
    pub subscription_id: &'a str,
    pub topic_url: &'a str,
    pub status: Status,
    pub kind: Kind,
    pub events_since_start: i64,
    pub content: Content,
    pub events: &'a [Event<'a>],
}

impl Notification<'_> {
    /// The `Parameters` (subscription-status-r4) describing the subscription and the events.
    pub fn status(&self) -> Value {
        let mut parameter = vec![
            json!({"name": "subscription", "valueReference": {
                "reference": format!("{}/Subscription/{}", self.base, self.subscription_id)}}),
            json!({"name": "topic", "valueCanonical": self.topic_url}),
            json!({"name": "status", "valueCode": self.status.code()}),
            json!({"name": "type", "valueCode": self.kind.code()}),
            json!({"name": "events-since-subscription-start", "valueString": self.events_since_start.to_string()}),
        ];
        for event in self.events {
            let mut part = vec![
                json!({"name": "event-number", "valueString": event.number.to_string()}),
                json!({"name": "timestamp", "valueInstant": instant::to_fhir(event.recorded_ms)}),
            ];
            if self.content != Content::Empty {
                part.push(json!({"name": "focus", "valueReference": {"reference": self.focus_url(&event.focus)}}));
            }
            parameter.push(json!({"name": "notification-event", "part": part}));
        }
        json!({
            "resourceType": "Parameters",
            "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameter,
        })
    }

    fn focus_url(&self, focus: &Focus<'_>) -> String {
        format!("{}/{}/{}", self.base, focus.ty, focus.id)
    }

    /// The notification Bundle's text; `bundle_id` and `now_ms` make it unique and dated.
    pub fn bundle(&self, bundle_id: &str, now_ms: i64) -> String {
        let status_entry = json!({
            "fullUrl": format!("urn:uuid:{bundle_id}-status"),
            "resource": self.status(),
            "request": {"method": "GET", "url": format!("Subscription/{}/$status", self.subscription_id)},
            "response": {"status": "200"},
        });
        let mut entries = vec![status_entry.to_string()];
        if self.content != Content::Empty {
            for event in self.events {
                entries.push(self.focus_entry(&event.focus));
            }
        }
        let head = json!({
            "resourceType": "Bundle",
            "id": bundle_id,
            "type": "history",
            "timestamp": instant::to_fhir(now_ms),
        })
        .to_string();
        // `head` is a JSON object: replace its closing brace by the entries.
        let open = head.strip_suffix('}').unwrap_or(&head);
        format!("{open},\"entry\":[{}]}}", entries.join(","))
    }

    fn focus_entry(&self, focus: &Focus<'_>) -> String {
        let (method, url, status) = match (focus.text, focus.version) {
            (None, _) => ("DELETE", format!("{}/{}", focus.ty, focus.id), "204"),
            (Some(_), 1) => ("POST", focus.ty.to_string(), "201"),
            (Some(_), _) => ("PUT", format!("{}/{}", focus.ty, focus.id), "200"),
        };
        let mut entry = json!({
            "fullUrl": self.focus_url(focus),
            "request": {"method": method, "url": url},
            "response": {
                "status": status,
                "etag": format!("W/\"{}\"", focus.version),
            },
        })
        .to_string();
        if let (Content::FullResource, Some(text)) = (self.content, focus.text) {
            // The stored text goes in as is (it is valid JSON): no model re-serialises it.
            let open = entry.strip_suffix('}').unwrap_or(&entry).to_owned();
            entry = format!("{open},\"resource\":{text}}}");
        }
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(content: Content, expect_focus: bool, expect_resource: bool) {
        let text = r#"{"resourceType":"Task","id":"t1","status":"requested","intent":"order","input":[{"type":{"text":"d"},"valueDecimal":1.50}]}"#;
        let events = [Event {
            number: 3,
            recorded_ms: 0,
            focus: Focus { ty: ResourceType::Task, id: "t1", version: 2, text: Some(text) },
        }];
        let n = Notification {
            base: "http://x/fhir",
            subscription_id: "s1",
            topic_url: "http://careplan.example/fhir/SubscriptionTopic/task-change",
            status: Status::Active,
            kind: Kind::EventNotification,
            events_since_start: 3,
            content,
            events: &events,
        };
        let bundle = n.bundle("b1", 0);
        let value: Value = serde_json::from_str(&bundle).expect("the bundle is JSON");
        assert_eq!(value["type"], "history");
        let status = &value["entry"][0]["resource"];
        assert_eq!(status["parameter"][4]["valueString"], "3");
        assert_eq!(status["parameter"][5]["part"][0]["valueString"], "3");
        assert_eq!(status["parameter"][5]["part"].as_array().map(Vec::len), Some(if expect_focus { 3 } else { 2 }));
        assert_eq!(value["entry"].as_array().map(Vec::len), Some(if expect_focus { 2 } else { 1 }));
        assert_eq!(bundle.contains("1.50"), expect_resource, "{bundle}");
    }

    #[test]
    fn payloads_carry_what_the_content_says() {
        check(Content::Empty, false, false);
        check(Content::IdOnly, true, false);
        check(Content::FullResource, true, true);
    }
}
