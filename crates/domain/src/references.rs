//! References inside resource text: finding the ones a transaction must resolve and rewriting
//! them without touching anything else (http://hl7.org/fhir/R4/http.html#trules).
//!
//! A transaction's entries point at each other through their `fullUrl`s (`urn:uuid:…`,
//! `urn:oid:…`) and at existing resources through conditional references (`Task?identifier=…`).
//! The server replaces every such link "whether found in resource ids, resource references,
//! elements of type uri, url, oid, uuid, and <a href="" & <img src="" in the narrative". Working
//! on the text token by token keeps the client's numbers and member order exactly as sent.

use std::collections::HashMap;

/// Conditional references (`Type?criteria`) held in `reference` elements of `text`.
pub fn conditional(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    visit(text, |member, value| {
        if member == Some("reference") && is_conditional(value) && !found.iter().any(|f| f == value) {
            found.push(value.to_owned());
        }
        None
    });
    found
}

/// Whether `text` holds any string equal to a key of `links`, or any conditional reference:
/// whether `rewrite` has anything to do.
pub fn mentions(text: &str, links: &HashMap<String, String>) -> bool {
    let mut any = false;
    visit(text, |member, value| {
        any |= links.contains_key(value)
            || (member == Some("reference") && is_conditional(value))
            || (member == Some("div") && quoted_links(value, links).is_some());
        None
    });
    any
}

/// `text` with every string value equal to a key of `links` replaced by its value, and each
/// `"key"` inside a narrative `div` replaced likewise. Everything else is kept byte for byte.
pub fn rewrite(text: &str, links: &HashMap<String, String>) -> String {
    visit(text, |member, value| {
        if let Some(target) = links.get(value) {
            return Some(target.clone());
        }
        if member == Some("div") {
            return quoted_links(value, links);
        }
        None
    })
}

/// The first `reference` element of `text` that names a Bundle entry (`urn:uuid:…`, `urn:oid:…`)
/// and is still there after `rewrite`: no entry of the Bundle has that `fullUrl`. Such a reference
/// means nothing outside the Bundle, so it is refused rather than stored as written
/// (http://hl7.org/fhir/R4/bundle.html#references: these URNs resolve only within the Bundle).
pub fn unresolved(text: &str) -> Option<String> {
    let mut found = None;
    visit(text, |member, value| {
        if found.is_none() && member == Some("reference") && is_bundle_local(value) {
            found = Some(value.to_owned());
        }
        None
    });
    found
}

/// `urn:uuid:…` or `urn:oid:…`: an identity that only a Bundle entry's `fullUrl` can give.
pub fn is_bundle_local(value: &str) -> bool {
    value.starts_with("urn:uuid:") || value.starts_with("urn:oid:")
}

/// `div` with each `"key"` of `links` (left to right, not overlapping) replaced by `"value"`, or
/// `None` if it holds none. One pass over the quotes of the narrative and a map look-up for each
/// quoted stretch: replacing each link in turn was a pass per link (a 1000-entry transaction
/// with a large narrative: seconds of CPU).
fn quoted_links(div: &str, links: &HashMap<String, String>) -> Option<String> {
    let quotes: Vec<usize> = div.match_indices('"').map(|(i, _)| i).collect();
    let mut out = String::new();
    let mut copied = 0;
    let mut q = 0;
    while q + 1 < quotes.len() {
        let (open, close) = (quotes[q], quotes[q + 1]);
        match links.get(&div[open + 1..close]) {
            Some(to) => {
                out.push_str(&div[copied..=open]);
                out.push_str(to);
                copied = close;
                q += 2; // the closing quote is used: the next link starts after it
            }
            None => q += 1,
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&div[copied..]);
    Some(out)
}

/// `Type?criteria`: a conditional reference (http://hl7.org/fhir/R4/http.html#trules).
pub fn is_conditional(value: &str) -> bool {
    match value.split_once('?') {
        Some((ty, _)) => !ty.is_empty() && ty.bytes().all(|b| b.is_ascii_alphabetic()),
        None => false,
    }
}

/// Walk the string values of valid JSON `text`, calling `f(member, value)` with the name of
/// the member holding each (for array items, the array's member); where `f` returns a
/// replacement, the string is replaced. Returns the resulting text.
fn visit(text: &str, mut f: impl FnMut(Option<&str>, &str) -> Option<String>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    // For each open container: whether it is an object, and the member it is held by.
    let mut stack: Vec<(bool, Option<String>)> = Vec::new();
    let mut key: Option<String> = None;
    let mut expect_key = false;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = crate::json_text::string_end(bytes, i);
                let token = &text[i..end];
                let decoded: String = serde_json::from_str(token).unwrap_or_default();
                if expect_key {
                    key = Some(decoded);
                    expect_key = false;
                } else {
                    let member = match stack.last() {
                        Some((true, _)) => key.as_deref(),
                        Some((false, held_by)) => held_by.as_deref(),
                        None => None,
                    };
                    if let Some(replacement) = f(member, &decoded) {
                        out.push_str(&text[copied..i]);
                        out.push_str(&serde_json::to_string(&replacement).unwrap_or_default());
                        copied = end;
                    }
                }
                i = end;
                continue;
            }
            b'{' => {
                let held_by = member_of(&stack, &key);
                stack.push((true, held_by));
                expect_key = true;
            }
            b'[' => {
                let held_by = member_of(&stack, &key);
                stack.push((false, held_by));
            }
            b'}' | b']' => {
                stack.pop();
            }
            b',' => expect_key = matches!(stack.last(), Some((true, _))),
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// The member a container opening now is held by.
fn member_of(stack: &[(bool, Option<String>)], key: &Option<String>) -> Option<String> {
    match stack.last() {
        Some((true, _)) => key.clone(),
        Some((false, held_by)) => held_by.clone(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> HashMap<String, String> {
        HashMap::from([
            ("urn:uuid:team".to_owned(), "CareTeam/t1".to_owned()),
            ("urn:uuid:plan".to_owned(), "CarePlan/p1".to_owned()),
        ])
    }

    fn check(input: &str, expected: &str) {
        assert_eq!(rewrite(input, &links()), expected, "{input}");
    }

    #[test]
    fn links_are_replaced_wherever_they_occur_and_nothing_else_changes() {
        check(
            r#"{"careTeam":[{"reference":"urn:uuid:team"}],"n":1.50,"x":"urn:uuid:teams"}"#,
            r#"{"careTeam":[{"reference":"CareTeam/t1"}],"n":1.50,"x":"urn:uuid:teams"}"#,
        );
        check(
            r#"{"activity":[{"reference":{"reference":"urn:uuid:plan"}}],"instantiatesUri":["urn:uuid:plan"]}"#,
            r#"{"activity":[{"reference":{"reference":"CarePlan/p1"}}],"instantiatesUri":["CarePlan/p1"]}"#,
        );
        check(
            r#"{"text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"urn:uuid:team\">team</a></div>"}}"#,
            r#"{"text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href=\"CareTeam/t1\">team</a></div>"}}"#,
        );
        check(r#"{"urn:uuid:team":"kept as a key"}"#, r#"{"urn:uuid:team":"kept as a key"}"#);
        check(
            r#"{"div":"<div>5\" <a href=\"urn:uuid:team\"/><a href=\"urn:uuid:plan\"/>\"urn:uuid:team</div>"}"#,
            r#"{"div":"<div>5\" <a href=\"CareTeam/t1\"/><a href=\"CarePlan/p1\"/>\"urn:uuid:team</div>"}"#,
        );
        check(r#"{"a":"\"quoted\" \u00e9"}"#, r#"{"a":"\"quoted\" \u00e9"}"#);
    }

    #[test]
    fn conditional_references_are_found_only_in_reference_elements() {
        let text = r#"{"basedOn":[{"reference":"CarePlan?identifier=http://x|1"}],"note":[{"text":"Task?status=x"}],"for":{"reference":"Patient/1"}}"#;
        assert_eq!(conditional(text), ["CarePlan?identifier=http://x|1"]);
        assert!(mentions(text, &HashMap::new()));
        assert!(!mentions(r#"{"for":{"reference":"Patient/1"}}"#, &links()));
        assert!(mentions(r#"{"for":{"reference":"urn:uuid:plan"}}"#, &links()));
    }

    #[test]
    fn bundle_local_references_left_after_rewriting_are_found() {
        let rewritten = rewrite(
            r#"{"basedOn":[{"reference":"urn:uuid:plan"},{"reference":"urn:oid:1.2.3"}],"identifier":[{"system":"urn:oid:9"}]}"#,
            &links(),
        );
        assert_eq!(unresolved(&rewritten).as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(unresolved(r#"{"identifier":[{"system":"urn:oid:9","value":"urn:uuid:x"}]}"#), None);
        assert_eq!(unresolved(r#"{"for":{"reference":"Patient/1"}}"#), None);
    }
}
