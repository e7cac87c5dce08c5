//! Topic-based Subscriptions on R4, as the Subscriptions Backport IG v1.1.0 defines them
//! (http://hl7.org/fhir/uv/subscriptions-backport/STU1.1/): the Subscription resource and what
//! a valid one asks for (`Spec`), the built-in topics (`topics`), filters, and the notification
//! Bundles (`notification`). Pure: the service stores, matches under a transaction and delivers.

pub mod notification;
pub mod topics;

use serde_json::Value;
use validator::ValidateUrl;

use crate::issue::{Issue, IssueCode};
use crate::resource::{Descriptor, Docs, Rules};
use crate::search::index::{IndexEntry, IndexValue};
use crate::search::params::{self, ParamType};

pub use topics::{Topic, TOPICS};

crate::resource::hosted!(Subscription);

/// What the service knows of Subscription.
pub static DESCRIPTOR: Descriptor = Descriptor::of::<Subscription>(
    "Subscription",
    params::SUBSCRIPTION,
    &crate::elements::SUBSCRIPTION,
    &[],
    Docs {
        description: "Server push subscription criteria: here a topic-based subscription (Subscriptions Backport IG)",
        example: r#"{
            "resourceType": "Subscription",
            "meta": {
                "profile": [
                    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
                ]
            },
            "status": "requested",
            "reason": "Tell the EHR when a Task of its patient changes",
            "criteria": "http://careplan.example/fhir/SubscriptionTopic/task-change",
            "_criteria": {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                        "valueString": "Task?patient=Patient/example"
                    }
                ]
            },
            "channel": {
                "type": "rest-hook",
                "endpoint": "https://ehr.example/fhir-notifications",
                "payload": "application/fhir+json",
                "_payload": {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content",
                            "valueCode": "id-only"
                        }
                    ]
                },
                "header": [
                    "Authorization: Bearer example-token"
                ]
            }
        }"#,
        search_example: &[("status", "active,error")],
        json_patch: r#"[
            {
                "op": "replace",
                "path": "/status",
                "value": "off"
            }
        ]"#,
        fhirpath_patch: r#"{
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {
                            "name": "type",
                            "valueCode": "replace"
                        },
                        {
                            "name": "path",
                            "valueString": "Subscription.reason"
                        },
                        {
                            "name": "value",
                            "valueString": "Tell the EHR when any Task of its patient changes"
                        }
                    ]
                }
            ]
        }"#,
        write_rules: "A topic-based Subscription (Subscriptions Backport IG): `criteria` must be the canonical \
             URL of a topic (GET SubscriptionTopic), each `backport-filter-criteria` may use only \
             that topic's `canFilterBy` parameters, the channel must be `rest-hook` and its endpoint \
             must start with a prefix of `CAREPLAN_SUBSCRIPTION_ENDPOINTS` (none by default); \
             otherwise 422. Subscribing needs a scope that allows reading the topic's type (403). The \
             server owns `status`: a new or changed subscription is `requested` until its handshake \
             succeeds (then `active`, else `error`); `off` stops it.",
        delete_rules: "",
    },
)
.with_rules(Rules { provenance: false, subscription: true, ..Rules::RECORD });

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
/// The profile a topic-based R4 Subscription claims.
pub const PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
/// The profile of the Parameters resource that heads every notification Bundle.
pub const STATUS_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
/// The CapabilityStatement extension listing the topics a server offers.
pub const TOPIC_CANONICAL_EXTENSION: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical";
/// Server-owned `meta.extension` naming the Patient a patient-scoped subscriber is limited to.
pub const SUBSCRIBER_PATIENT_URL: &str = "http://careplan.example/fhir/StructureDefinition/subscriber-patient";

fn backport(name: &str) -> String {
    format!("{BACKPORT}/{name}")
}

/// The lifecycle of a Subscription (R4 `Subscription.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the handshake.
    Requested,
    Active,
    /// Delivery failed (the handshake, or too many notifications in a row); retried until it
    /// works again, which makes it active.
    Error,
    /// Switched off by the client: nothing is matched or delivered.
    Off,
}

impl Status {
    pub fn code(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Active => "active",
            Status::Error => "error",
            Status::Off => "off",
        }
    }

    pub fn parse(code: &str) -> Option<Status> {
        [Status::Requested, Status::Active, Status::Error, Status::Off].into_iter().find(|s| s.code() == code)
    }
}

/// How much of the focus a notification carries (`backport-payload-content`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Empty,
    IdOnly,
    FullResource,
}

impl Content {
    pub fn code(self) -> &'static str {
        match self {
            Content::Empty => "empty",
            Content::IdOnly => "id-only",
            Content::FullResource => "full-resource",
        }
    }

    pub fn parse(code: &str) -> Option<Content> {
        [Content::Empty, Content::IdOnly, Content::FullResource].into_iter().find(|c| c.code() == code)
    }
}

/// One filter: the focus must have one of `values` for the search parameter `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub param: &'static str,
    pub kind: ParamType,
    pub values: Vec<String>,
}

impl Filter {
    /// Whether a resource with these index entries passes, as an equality search would.
    pub fn matches(&self, index: &[IndexEntry]) -> bool {
        index.iter().filter(|e| e.param == self.param).any(|e| self.values.iter().any(|v| value_matches(v, &e.value)))
    }
}

fn value_matches(wanted: &str, value: &IndexValue) -> bool {
    match value {
        IndexValue::Token { system, code, .. } => match wanted.split_once('|') {
            None => code.as_deref() == Some(wanted),
            Some(("", c)) => system.is_none() && code.as_deref() == Some(c),
            Some((s, "")) => system.as_deref() == Some(s),
            Some((s, c)) => system.as_deref() == Some(s) && code.as_deref() == Some(c),
        },
        IndexValue::Reference { target_type, target_id, url, .. } => {
            if url.as_deref() == Some(wanted) {
                return true;
            }
            let mut parts = wanted.rsplit('/');
            match (parts.next(), parts.next()) {
                (Some(id), Some(ty)) => target_id.as_deref() == Some(id) && target_type.as_deref() == Some(ty),
                (Some(id), None) => target_id.as_deref() == Some(id),
                _ => false,
            }
        }
        IndexValue::String { value } => value.eq_ignore_ascii_case(wanted),
        IndexValue::Uri { value } => value == wanted,
        IndexValue::Date { .. } => false,
    }
}

/// What a valid topic-based Subscription asks for.
#[derive(Debug, Clone)]
pub struct Spec {
    pub topic: &'static Topic,
    /// Every filter must hold (the `backport-filter-criteria` extensions, ANDed).
    pub filters: Vec<Filter>,
    /// The filter criteria as sent, e.g. `Task?owner=Practitioner/1`.
    pub filter_text: Vec<String>,
    pub endpoint: String,
    pub content: Content,
    /// `channel.header` as (name, value).
    pub headers: Vec<(String, String)>,
    pub heartbeat_secs: Option<u32>,
    pub timeout_secs: Option<u32>,
    /// Most events in one notification.
    pub max_count: u32,
    pub status: Status,
}

/// Read and check a Subscription (already valid against the R4 model) as a topic-based one.
pub fn spec(subscription: &Value) -> Result<Spec, Vec<Issue>> {
    let mut issues = Vec::new();
    let criteria = subscription.get("criteria").and_then(Value::as_str).unwrap_or_default();
    let topic = Topic::by_url(criteria);
    if topic.is_none() {
        issues.push(Issue::error(
            IssueCode::NotSupported,
            "Subscription.criteria",
            format!(
                "'{criteria}' is not a topic this server offers; criteria must be a topic canonical URL (see GET \
                 SubscriptionTopic)"
            ),
        ));
    }
    let status_code = subscription.get("status").and_then(Value::as_str).unwrap_or("requested");
    let status = Status::parse(status_code).unwrap_or(Status::Requested);

    let mut filters = Vec::new();
    let mut filter_text = Vec::new();
    for (i, text) in extension_values(subscription.get("_criteria"), "backport-filter-criteria", "valueString")
        .into_iter()
        .enumerate()
    {
        let path = format!("Subscription.criteria.extension[{i}]");
        let Some(text) = text.as_str() else { continue };
        match topic.map(|t| parse_filter(t, text)) {
            Some(Ok(mut parsed)) => {
                filters.append(&mut parsed);
                filter_text.push(text.to_owned());
            }
            Some(Err(why)) => issues.push(Issue::error(IssueCode::Value, path, why)),
            None => {}
        }
    }

    let channel = subscription.get("channel").cloned().unwrap_or(Value::Null);
    let kind = channel.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind != "rest-hook" {
        issues.push(Issue::error(
            IssueCode::NotSupported,
            "Subscription.channel.type",
            format!("channel type '{kind}' is not supported; this server delivers by rest-hook only"),
        ));
    }
    let endpoint = channel.get("endpoint").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !((endpoint.starts_with("https://") || endpoint.starts_with("http://")) && endpoint.validate_url()) {
        issues.push(Issue::error(
            IssueCode::Required,
            "Subscription.channel.endpoint",
            "a rest-hook channel needs an http or https endpoint (an absolute URL)",
        ));
    }
    let content = match extension_values(channel.get("_payload"), "backport-payload-content", "valueCode").first() {
        None => Ok(Content::Empty),
        Some(code) => code.as_str().and_then(Content::parse).ok_or(()),
    };
    let content = content.unwrap_or_else(|()| {
        issues.push(Issue::error(
            IssueCode::CodeInvalid,
            "Subscription.channel.payload.extension",
            "backport-payload-content must be empty, id-only or full-resource",
        ));
        Content::Empty
    });
    if content != Content::Empty {
        let mime = channel.get("payload").and_then(Value::as_str).unwrap_or_default();
        if !mime.is_empty() && mime != "application/fhir+json" && mime != "application/json" {
            issues.push(Issue::error(
                IssueCode::NotSupported,
                "Subscription.channel.payload",
                format!("payload type '{mime}' is not supported; use application/fhir+json"),
            ));
        }
    }
    let mut headers = Vec::new();
    for (i, header) in channel.get("header").and_then(Value::as_array).into_iter().flatten().enumerate() {
        match header.as_str().and_then(|h| h.split_once(':')) {
            Some((name, value)) if is_header_name(name.trim()) && !reserved_header(name.trim()) => {
                headers.push((name.trim().to_owned(), value.trim().to_owned()))
            }
            _ => issues.push(Issue::error(
                IssueCode::Value,
                format!("Subscription.channel.header[{i}]"),
                "a header must read 'Name: value' and may not set Host, Content-Type or Content-Length",
            )),
        }
    }
    let number = |name: &str, kind: &str| {
        extension_values(Some(&channel), name, kind)
            .first()
            .and_then(|v| v.as_u64())
            .map(|n| n.min(u32::MAX.into()) as u32)
    };
    let heartbeat_secs = number("backport-heartbeat-period", "valueUnsignedInt").filter(|n| *n > 0);
    let timeout_secs = number("backport-timeout", "valueUnsignedInt").filter(|n| *n > 0);
    let max_count = number("backport-max-count", "valuePositiveInt").unwrap_or(1).max(1);

    match (topic, issues.is_empty()) {
        (Some(topic), true) => Ok(Spec {
            topic,
            filters,
            filter_text,
            endpoint,
            content,
            headers,
            heartbeat_secs,
            timeout_secs,
            max_count,
            status,
        }),
        _ => Err(issues),
    }
}

/// Parse filter criteria (`Task?owner=Practitioner/1&status=completed`) against a topic.
pub fn parse_filter(topic: &Topic, text: &str) -> Result<Vec<Filter>, String> {
    let ty = topic.resource.as_str();
    let query = match text.split_once('?') {
        Some((name, query)) if name == ty => query,
        Some((name, _)) => return Err(format!("filter criteria name {name}, but the topic is about {ty}")),
        None => text,
    };
    let mut filters = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not name=value"))?;
        let param =
            topic.filters.iter().find(|f| **f == name).and_then(|f| params::find(topic.resource, f)).ok_or_else(
                || format!("the topic cannot be filtered by '{name}' (it can by {})", topic.filters.join(", ")),
            )?;
        let values: Vec<String> = value.split(',').map(decode).filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            return Err(format!("the filter '{name}' has no value"));
        }
        filters.push(Filter { param: param.name, kind: param.kind, values });
    }
    if filters.is_empty() {
        return Err("filter criteria must name at least one parameter".into());
    }
    Ok(filters)
}

/// `%XX` escapes and `+` of a query value.
fn decode(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
}

fn reserved_header(name: &str) -> bool {
    ["host", "content-type", "content-length", "transfer-encoding", "connection"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}

/// The `value` members of the Backport extension `name` among `element.extension`.
fn extension_values<'a>(element: Option<&'a Value>, name: &str, value: &str) -> Vec<&'a Value> {
    let url = backport(name);
    element
        .and_then(|e| e.get("extension"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) == Some(url.as_str()))
        .filter_map(|e| e.get(value))
        .collect()
}

/// The Patient id a stored Subscription's subscriber is limited to (server-owned meta extension).
pub fn subscriber_patient(subscription: &Value) -> Option<String> {
    subscription
        .get("meta")?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(SUBSCRIBER_PATIENT_URL))?
        .get("valueReference")?
        .get("reference")?
        .as_str()?
        .strip_prefix("Patient/")
        .map(str::to_owned)
}

/// The meta extension recording that a subscriber is limited to `patient`.
pub fn subscriber_patient_extension(patient: &str) -> Value {
    serde_json::json!({ "url": SUBSCRIBER_PATIENT_URL, "valueReference": { "reference": format!("Patient/{patient}") } })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resource::ResourceType;

    fn subscription(criteria: &str, filters: &[&str], content: Option<&str>) -> Value {
        let mut s = json!({
            "resourceType": "Subscription", "status": "requested", "reason": "r",
            "criteria": criteria,
            "_criteria": {"extension": filters.iter().map(|f| json!({"url": backport("backport-filter-criteria"), "valueString": f})).collect::<Vec<_>>()},
            "channel": {"type": "rest-hook", "endpoint": "https://ehr.example/hook", "payload": "application/fhir+json",
                        "header": ["Authorization: Bearer x"],
                        "extension": [{"url": backport("backport-heartbeat-period"), "valueUnsignedInt": 60},
                                      {"url": backport("backport-max-count"), "valuePositiveInt": 5}]}
        });
        if let Some(content) = content {
            s["channel"]["_payload"] =
                json!({"extension": [{"url": backport("backport-payload-content"), "valueCode": content}]});
        }
        s
    }

    fn check(s: Value, expected: Result<(), &[&str]>) {
        match (spec(&s), expected) {
            (Ok(_), Ok(())) => {}
            (Err(issues), Err(paths)) => {
                let got: Vec<String> = issues.into_iter().map(|i| i.expression.unwrap_or_default()).collect();
                assert_eq!(got, paths, "{s}");
            }
            (got, expected) => panic!("{s}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn subscriptions_are_checked() {
        let topic = "http://careplan.example/fhir/SubscriptionTopic/task-change";
        check(subscription(topic, &["Task?owner=Practitioner/a&status=completed,failed"], Some("id-only")), Ok(()));
        check(subscription(topic, &["patient=Patient/1"], None), Ok(()));
        check(subscription("Task?status=active", &[], None), Err(&["Subscription.criteria"]));
        check(subscription(topic, &["Task?colour=red"], None), Err(&["Subscription.criteria.extension[0]"]));
        check(subscription(topic, &["CarePlan?status=active"], None), Err(&["Subscription.criteria.extension[0]"]));
        check(subscription(topic, &[], Some("everything")), Err(&["Subscription.channel.payload.extension"]));
        let mut no_endpoint = subscription(topic, &[], None);
        no_endpoint["channel"]["endpoint"] = json!("ftp://x");
        check(no_endpoint, Err(&["Subscription.channel.endpoint"]));
        let mut bad_header = subscription(topic, &[], None);
        bad_header["channel"]["header"] = json!(["Host: evil"]);
        check(bad_header, Err(&["Subscription.channel.header[0]"]));
    }

    #[test]
    fn the_endpoint_is_an_absolute_http_url() {
        let topic = "http://careplan.example/fhir/SubscriptionTopic/task-change";
        for endpoint in ["https://ehr.example/hook", "http://10.0.0.5:8080/fhir/notify?x=1"] {
            let mut s = subscription(topic, &[], None);
            s["channel"]["endpoint"] = json!(endpoint);
            check(s, Ok(()));
        }
        for endpoint in ["http://", "https://", "https:// ehr.example/hook", "ftp://ehr.example/hook", "ehr.example"] {
            let mut s = subscription(topic, &[], None);
            s["channel"]["endpoint"] = json!(endpoint);
            check(s, Err(&["Subscription.channel.endpoint"]));
        }
    }

    #[test]
    fn the_spec_holds_what_was_asked() {
        let s = subscription(
            "http://careplan.example/fhir/SubscriptionTopic/task-change",
            &["Task?owner=Practitioner/a"],
            Some("full-resource"),
        );
        let spec = spec(&s).expect("valid");
        assert_eq!(spec.content, Content::FullResource);
        assert_eq!(spec.heartbeat_secs, Some(60));
        assert_eq!(spec.max_count, 5);
        assert_eq!(spec.headers, vec![("Authorization".to_owned(), "Bearer x".to_owned())]);
        assert_eq!(spec.filters[0].values, ["Practitioner/a"]);
    }

    #[test]
    fn filters_match_like_equality_searches() {
        let task = json!({"resourceType": "Task", "status": "completed", "intent": "order",
            "for": {"reference": "Patient/p1"}, "owner": {"reference": "Practitioner/a"},
            "code": {"coding": [{"system": "http://s", "code": "call"}]}});
        let index = crate::search::extract(ResourceType::Task, &task);
        let topic = Topic::by_id("task-change").expect("topic");
        let passes = |text: &str| parse_filter(topic, text).expect("filter").iter().all(|f| f.matches(&index));
        assert!(passes("Task?patient=Patient/p1"));
        assert!(passes("Task?patient=p1&status=failed,completed"));
        assert!(passes("Task?owner=Practitioner/a&code=http://s|call"));
        assert!(!passes("Task?patient=Patient/p2"));
        assert!(!passes("Task?status=requested"));
        assert!(!passes("Task?code=http://other|call"));
    }
}
