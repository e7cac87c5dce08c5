//! The stored form of a resource: the client's minified text, with `id` and `meta` set by the
//! server. Built once per write, so reads serve stored bytes without parsing them.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::instant;
use crate::resource::ResourceType;
use crate::search::IndexEntry;

/// What the server owns in `meta`: the version and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionMeta {
    pub version_id: i64,
    pub last_updated_ms: i64,
}

/// A checked resource waiting for its id and version: the top-level elements the client sent
/// (as raw JSON text, in the order sent) and the parts of `meta` the client owns
/// (profile, tag, security, source, extensions).
#[derive(Debug, Clone)]
pub struct Prepared {
    resource_type: ResourceType,
    /// The `id` the body carried, if any (the stored id is always the server's).
    body_id: Option<String>,
    elements: Vec<(String, Box<RawValue>)>,
    client_meta: Vec<(String, Box<RawValue>)>,
    /// The search index values of the resource, written with it.
    index: Vec<IndexEntry>,
}

impl Prepared {
    /// Split minified resource text into its elements.
    pub(crate) fn from_minified(resource_type: ResourceType, text: &str) -> Result<Self, serde_json::Error> {
        let Ordered(all) = serde_json::from_str(text)?;
        let mut elements = Vec::with_capacity(all.len());
        let mut client_meta = Vec::new();
        let mut body_id = None;
        for (key, value) in all {
            match key.as_str() {
                "resourceType" => {}
                "id" => body_id = serde_json::from_str::<String>(value.get()).ok(),
                "meta" => {
                    let Ordered(meta) = serde_json::from_str(value.get())?;
                    client_meta = meta.into_iter().filter(|(k, _)| k != "versionId" && k != "lastUpdated").collect();
                }
                _ => elements.push((key, value)),
            }
        }
        Ok(Self { resource_type, body_id, elements, client_meta, index: Vec::new() })
    }

    /// Attach the search index values of the resource.
    pub fn with_index(mut self, index: Vec<IndexEntry>) -> Self {
        self.index = index;
        self
    }

    /// The search index values to write with the resource.
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// The `id` the body carried, if any.
    pub fn body_id(&self) -> Option<&str> {
        self.body_id.as_deref()
    }

    /// Replace the `meta.extension` entries with `url` by `extension` (`None`: remove them),
    /// keeping every other meta element and extension as the client sent it, to the byte. For
    /// extensions the server owns, such as `workflow::RESUME_STATUS_URL`: a client copy never
    /// survives. Fails only if `meta.extension` is not an array, which `ingest` has refused.
    pub fn with_meta_extension(
        mut self,
        url: &str,
        extension: Option<&serde_json::Value>,
    ) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Url<'a> {
            #[serde(borrow)]
            url: Option<std::borrow::Cow<'a, str>>,
        }
        let at = self.client_meta.iter().position(|(key, _)| key == "extension");
        let mut items: Vec<Box<RawValue>> = match at {
            Some(i) => serde_json::from_str(self.client_meta[i].1.get())?,
            None => Vec::new(),
        };
        let mut kept = Vec::with_capacity(items.len() + 1);
        for item in items.drain(..) {
            let Url { url: item_url } = serde_json::from_str(item.get())?;
            if item_url.as_deref() != Some(url) {
                kept.push(item);
            }
        }
        if let Some(extension) = extension {
            kept.push(serde_json::value::to_raw_value(extension)?);
        }
        let value = (!kept.is_empty()).then(|| serde_json::value::to_raw_value(&kept)).transpose()?;
        match (at, value) {
            (Some(i), Some(value)) => self.client_meta[i].1 = value,
            (Some(i), None) => {
                self.client_meta.remove(i);
            }
            (None, Some(value)) => self.client_meta.push(("extension".into(), value)),
            (None, None) => {}
        }
        Ok(self)
    }

    /// The resource type this body holds.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    /// The stored text: `resourceType`, `id`, `meta` (server-owned fields first), then the
    /// client's elements exactly as sent.
    pub fn render(&self, id: &str, meta: VersionMeta) -> String {
        let size: usize = self.elements.iter().map(|(k, v)| k.len() + v.get().len() + 4).sum();
        let mut out = String::with_capacity(size + 160);
        out.push_str("{\"resourceType\":\"");
        out.push_str(self.resource_type.as_str());
        out.push_str("\",\"id\":");
        push_string(&mut out, id);
        out.push_str(",\"meta\":{\"versionId\":\"");
        out.push_str(&meta.version_id.to_string());
        out.push_str("\",\"lastUpdated\":\"");
        out.push_str(&instant::to_fhir(meta.last_updated_ms));
        out.push('"');
        for (key, value) in &self.client_meta {
            out.push(',');
            push_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        for (key, value) in &self.elements {
            out.push(',');
            push_string(&mut out, key);
            out.push(':');
            out.push_str(value.get());
        }
        out.push('}');
        out
    }
}

/// The `meta.tag` FHIR requires on a resource returned with only some of its elements
/// (http://hl7.org/fhir/R4/search.html#elements).
const SUBSETTED: &str = r#"{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}"#;

/// Stored resource text reduced to `resourceType`, `id`, `meta` and the top-level elements
/// `keep` accepts, with the SUBSETTED tag added to `meta`. `None` if `text` is not an object.
pub fn subset(text: &str, keep: impl Fn(&str) -> bool) -> Option<String> {
    let Ordered(members) = serde_json::from_str(text).ok()?;
    let mut out = String::with_capacity(text.len());
    out.push('{');
    let mut first = true;
    for (key, value) in &members {
        let kept = matches!(key.as_str(), "resourceType" | "id") || keep(key);
        if !kept && key != "meta" {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        push_string(&mut out, key);
        out.push(':');
        if key == "meta" {
            out.push_str(&tagged_meta(value.get())?);
        } else {
            out.push_str(value.get());
        }
    }
    out.push('}');
    Some(out)
}

/// The JSON object `text` with its member `key` set to `value`: replaced where it stands, or
/// added last. Every other member is kept as raw text, byte for byte (number literals, escapes
/// the client chose, order). For the few elements the server itself sets on a stored resource.
pub fn with_member(text: &str, key: &str, value: &serde_json::Value) -> Result<String, serde_json::Error> {
    let Ordered(mut members) = serde_json::from_str(text)?;
    let value = serde_json::value::to_raw_value(value)?;
    match members.iter_mut().find(|(k, _)| k == key) {
        Some((_, existing)) => *existing = value,
        None => members.push((key.to_owned(), value)),
    }
    let mut out = String::with_capacity(text.len() + 64);
    out.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, key);
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    Ok(out)
}

fn tagged_meta(meta: &str) -> Option<String> {
    let Ordered(members) = serde_json::from_str(meta).ok()?;
    let mut out = String::from("{");
    let mut tagged = false;
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(&mut out, key);
        out.push(':');
        if key == "tag" {
            let mut tags: Vec<Box<RawValue>> = serde_json::from_str(value.get()).ok()?;
            tags.push(RawValue::from_string(SUBSETTED.to_owned()).ok()?);
            out.push_str(&serde_json::to_string(&tags).ok()?);
            tagged = true;
        } else {
            out.push_str(value.get());
        }
    }
    if !tagged {
        if members.is_empty() {
            out.push_str("\"tag\":[");
        } else {
            out.push_str(",\"tag\":[");
        }
        out.push_str(SUBSETTED);
        out.push(']');
    }
    out.push('}');
    Some(out)
}

fn push_string(out: &mut String, s: &str) {
    // Serializing a &str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A JSON object's members in document order, values kept as raw text.
struct Ordered(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(member);
                }
                Ok(Ordered(members))
            }
        }
        deserializer.deserialize_map(OrderedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_extension_in_meta_replaces_any_client_copy_and_keeps_the_rest_exact() {
        let url = "http://careplan.example/x";
        let text = r#"{"resourceType":"Task","meta":{"tag":[{"code":"t"}],"extension":[{"url":"http://careplan.example/x","valueCode":"forged"},{"url":"o","valueDecimal":1.50}]},"status":"on-hold"}"#;
        let meta = VersionMeta { version_id: 1, last_updated_ms: 0 };
        let render = |ext: Option<serde_json::Value>| {
            let prepared = Prepared::from_minified(ResourceType::Task, text).expect("valid JSON");
            prepared.with_meta_extension(url, ext.as_ref()).expect("array of extensions").render("a", meta)
        };
        assert_eq!(
            render(Some(serde_json::json!({"url": url, "valueCode": "ready"}))),
            r#"{"resourceType":"Task","id":"a","meta":{"versionId":"1","lastUpdated":"1970-01-01T00:00:00.000Z","tag":[{"code":"t"}],"extension":[{"url":"o","valueDecimal":1.50},{"url":"http://careplan.example/x","valueCode":"ready"}]},"status":"on-hold"}"#
        );
        assert_eq!(
            render(None),
            r#"{"resourceType":"Task","id":"a","meta":{"versionId":"1","lastUpdated":"1970-01-01T00:00:00.000Z","tag":[{"code":"t"}],"extension":[{"url":"o","valueDecimal":1.50}]},"status":"on-hold"}"#
        );
        let bare = Prepared::from_minified(
            ResourceType::Task,
            r#"{"meta":{"extension":[{"url":"http://careplan.example/x"}]}}"#,
        )
        .and_then(|p| p.with_meta_extension(url, None))
        .expect("valid JSON");
        assert!(bare.client_meta.is_empty());
    }

    #[test]
    fn a_member_is_replaced_in_place_or_added_last_and_nothing_else_changes() {
        let text = r#"{"a":"\u00e9","b":{"x":1},"c":[1.50,2e3]}"#;
        let value = serde_json::json!({"y": "z"});
        assert_eq!(with_member(text, "b", &value).expect("object"), r#"{"a":"\u00e9","b":{"y":"z"},"c":[1.50,2e3]}"#);
        assert_eq!(
            with_member(text, "d", &value).expect("object"),
            r#"{"a":"\u00e9","b":{"x":1},"c":[1.50,2e3],"d":{"y":"z"}}"#
        );
        assert!(with_member("[1]", "d", &value).is_err());
    }

    #[test]
    fn subsets_keep_the_mandatory_parts_and_say_so() {
        let text =
            r#"{"resourceType":"Task","id":"a","meta":{"versionId":"1"},"status":"draft","note":[{"text":"x"}]}"#;
        let out = subset(text, |k| k == "status").expect("object");
        assert_eq!(
            out,
            r#"{"resourceType":"Task","id":"a","meta":{"versionId":"1","tag":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}]},"status":"draft"}"#
        );
    }

    #[test]
    fn server_meta_replaces_the_clients_and_the_rest_is_kept_in_order() {
        let text = r#"{"status":"draft","resourceType":"Task","id":"old","meta":{"versionId":"9","tag":[{"code":"x"}],"lastUpdated":"2000-01-01T00:00:00Z"},"intent":"order","input":[{"valueDecimal":1.0}]}"#;
        let prepared = Prepared::from_minified(ResourceType::Task, text).expect("valid JSON");
        let out = prepared.render("new", VersionMeta { version_id: 2, last_updated_ms: 1_000 });
        assert_eq!(
            out,
            r#"{"resourceType":"Task","id":"new","meta":{"versionId":"2","lastUpdated":"1970-01-01T00:00:01.000Z","tag":[{"code":"x"}]},"status":"draft","intent":"order","input":[{"valueDecimal":1.0}]}"#
        );
    }
}
