//! Bounded-time fuzzing of the parsers and walkers that take client text (issue 13): the JSON
//! text walkers (`json_text`, `references`), `ingest`, both patch formats (the FHIRPath Patch
//! path parser included) and the search-parameter parser (`search::query::parse`, through its
//! public entry only). Each target gets random and mutated input from a seeded generator and must
//! not panic, and what it returns must stay within the documented bounds.
//!
//! cargo-fuzz needs a nightly toolchain, which the build machines do not have, so this is an
//! ordinary test with a case budget: `FUZZ_CASES` cases per target (default 300: a few seconds
//! in the normal suite), from seed `FUZZ_SEED` (default: fixed, so a failure reproduces; the seed
//! of a failing case is printed). `make fuzz` runs a long round with a random seed.

use std::collections::HashMap;

use serde_json::Value;

use crate::patch::PatchLimits;
use crate::{ingest, json_text, references, IngestMode, ResourceType, Task};

/// SplitMix64: small, fast and good enough to drive generators.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Run `target` on `FUZZ_CASES` cases, each with its own seed, naming the seed of a failure.
fn fuzz(name: &str, target: impl Fn(&mut Rng)) {
    let cases = env("FUZZ_CASES").unwrap_or(300);
    let seed = env("FUZZ_SEED").unwrap_or(0x5EED);
    for case in 0..cases {
        let case_seed = seed.wrapping_mul(1_000_003).wrapping_add(case);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(&mut Rng(case_seed))));
        if let Err(panic) = outcome {
            panic!("fuzz target {name} failed on case {case} (FUZZ_SEED={seed}): {panic:?}");
        }
    }
}

const WORDS: [&str; 24] = [
    "resourceType",
    "Task",
    "status",
    "intent",
    "requested",
    "order",
    "identifier",
    "system",
    "value",
    "reference",
    "note",
    "text",
    "div",
    "input",
    "type",
    "valueString",
    "extension",
    "url",
    "meta",
    "id",
    "urn:uuid:1",
    "urn:oid:1.2",
    "Task?identifier=a|b",
    "\u{E000}1.5",
];

/// A random JSON string literal: words, escapes, control characters, non-ASCII, the marker.
fn string(rng: &mut Rng) -> String {
    let mut out = String::from("\"");
    for _ in 0..rng.below(4) {
        match rng.below(8) {
            0 => out.push_str("\\\""),
            1 => out.push_str("\\\\"),
            2 => out.push_str("\\u00e9"),
            3 => out.push_str("\\ue000"),
            4 => out.push_str("é漢"),
            5 => out.push_str("\\n"),
            _ => out.push_str(rng.pick::<&str>(&WORDS)),
        }
    }
    out.push('"');
    out
}

/// A random number literal, with the forms JSON allows.
fn number(rng: &mut Rng) -> String {
    let sign = if rng.chance(3) { "-" } else { "" };
    let int = rng.pick(&["0", "1", "42", "100000000000000000000000"]);
    let frac = rng.pick(&["", ".5", ".50", ".000"]);
    let exp = rng.pick(&["", "e3", "E-2", "e+10"]);
    format!("{sign}{int}{frac}{exp}")
}

/// A random valid JSON value at most `depth` levels deep (with, now and then, a long chain).
fn json(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 {
        return match rng.below(5) {
            0 => number(rng),
            1 => rng.pick(&["true", "false", "null"]).to_string(),
            _ => string(rng),
        };
    }
    match rng.below(6) {
        0 | 1 => {
            let members: Vec<String> = (0..rng.below(4))
                .map(|i| format!("\"{}{i}\" : {}", rng.pick(&WORDS).replace('\u{E000}', ""), json(rng, depth - 1)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        2 => {
            let items: Vec<String> = (0..rng.below(4)).map(|_| json(rng, depth - 1)).collect();
            format!("[ {} ]", items.join(", "))
        }
        3 if rng.chance(8) => {
            let levels = 90 + rng.below(40);
            format!("{}{}{}", "[".repeat(levels), json(rng, 0), "]".repeat(levels))
        }
        _ => json(rng, 0),
    }
}

/// `text` with a few random bytes inserted, removed or replaced by JSON-significant ones.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        let byte = *rng.pick(b"{}[]\",:\\ 0-.eu\xE2\x80");
        match rng.below(3) {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => drop(bytes.remove(at)),
            _ if at < bytes.len() => bytes[at] = byte,
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Random text for the JSON walkers: valid JSON, or JSON with a few bytes changed.
fn text(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(6);
    let valid = json(rng, depth);
    if rng.chance(2) {
        mutate(rng, &valid)
    } else {
        valid
    }
}

#[test]
fn json_text_walkers_never_panic_and_round_trip_valid_json() {
    fuzz("json_text", |rng| {
        let text = text(rng);
        let depth = json_text::depth(text.as_bytes());
        assert_eq!(json_text::check_depth(text.as_bytes()).is_ok(), depth <= json_text::MAX_DEPTH);
        let minified = json_text::minify(&text);
        assert!(minified.len() <= text.len());
        let parsed = serde_json::from_str::<Value>(&text);
        let Ok(plain) = parsed else {
            let _ = json_text::to_value_preserving(&text);
            return;
        };
        assert_eq!(json_text::minify(&json_text::pretty(&minified)), minified);
        let value = json_text::to_value_preserving(&text).expect("valid JSON parses");
        assert_eq!(json_text::value_depth(&value, usize::MAX), depth, "{text}");
        let written = json_text::from_value_preserving(&value);
        assert_eq!(json_text::preserving_len(&value, usize::MAX), written.len(), "{text}");
        let cap = rng.below(written.len() + 2);
        assert_eq!(json_text::preserving_len(&value, cap), written.len().min(cap));
        let again: Value = serde_json::from_str(&written).expect("written text is JSON");
        assert!(same_json(&plain, &again), "{text} became {written}");
    });
}

/// Equal as JSON, numbers compared as written values (`1.50` and `1.5` are the same number).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => json_text::same_number(&x.to_string(), &y.to_string()) || x == y,
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn reference_walkers_never_panic_and_leave_no_link_behind() {
    let links = HashMap::from([("urn:uuid:1".to_owned(), "Task/a".to_owned())]);
    fuzz("references", |rng| {
        let text = text(rng);
        let _ = references::conditional(&text);
        let _ = references::mentions(&text, &links);
        let rewritten = references::rewrite(&text, &links);
        if serde_json::from_str::<Value>(&text).is_ok() {
            assert!(serde_json::from_str::<Value>(&rewritten).is_ok(), "{text} became {rewritten}");
        }
        let _ = references::unresolved(&rewritten);
    });
}

const TASK: &str = r#"{"resourceType":"Task","id":"t1","meta":{"versionId":"1"},"status":"requested","intent":"order","input":[{"type":{"text":"dose"},"valueDecimal":1.50}],"note":[{"text":"one"}],"identifier":[{"system":"s","value":"v"}]}"#;

#[test]
fn ingest_never_panics() {
    fuzz("ingest", |rng| {
        let body = match rng.below(3) {
            0 => text(rng),
            1 => mutate(rng, TASK),
            _ => {
                let member = format!(r#""{}":{}"#, rng.pick(&WORDS), json(rng, 3));
                TASK.replacen(r#""status""#, &format!(r#"{member},"status""#), 1)
            }
        };
        if let Ok(prepared) = ingest::<Task>(body.as_bytes(), IngestMode::Create) {
            assert!(json_text::depth(body.as_bytes()) <= json_text::MAX_DEPTH);
            let _ = prepared.render("x", crate::VersionMeta { version_id: 1, last_updated_ms: 0 });
        }
    });
}

const POINTERS: [&str; 12] = [
    "/status",
    "/note",
    "/note/0",
    "/note/-",
    "/note/0/text",
    "/input",
    "/input/0",
    "/input/-",
    "/a",
    "/a/b",
    "/identifier/0/value",
    "/meta/tag",
];

#[test]
fn json_patch_never_panics_and_never_outgrows_its_limits() {
    fuzz("json_patch", |rng| {
        let limits = PatchLimits { max_bytes: 512 + rng.below(4096), max_operations: 1 + rng.below(20) };
        let operations: Vec<String> = (0..rng.below(24))
            .map(|_| {
                let op = rng.pick(&["add", "remove", "replace", "move", "copy", "test"]);
                let path = rng.pick(&POINTERS);
                let from = rng.pick(&POINTERS);
                format!(r#"{{"op":"{op}","path":"{path}","from":"{from}","value":{}}}"#, json(rng, 3))
            })
            .collect();
        let mut patch = format!("[{}]", operations.join(","));
        if rng.chance(4) {
            patch = mutate(rng, &patch);
        }
        if let Ok(text) = crate::json_patch(TASK, patch.as_bytes(), limits) {
            assert!(text.len() <= limits.max_bytes, "{} > {}: {patch}", text.len(), limits.max_bytes);
            assert!(json_text::depth(text.as_bytes()) <= json_text::MAX_DEPTH);
        }
    });
}

const PATHS: [&str; 12] = [
    "Task",
    "Task.note",
    "Task.note[0]",
    "Task.note.first()",
    "Task.note.last().text",
    "Task.input.value",
    "Task.identifier.where(system = 's')",
    "Task.identifier.where(value = 1.5)",
    "Task.`status`",
    "Task.note[",
    "Task.where(",
    "Task.note.text.where(a.b = 'x\\u00e9')",
];

#[test]
fn fhirpath_patch_never_panics_and_never_outgrows_its_limits() {
    fuzz("fhirpath_patch", |rng| {
        let limits = PatchLimits { max_bytes: 512 + rng.below(4096), max_operations: 1 + rng.below(20) };
        let operations: Vec<String> = (0..rng.below(12))
            .map(|_| {
                let kind = rng.pick(&["add", "insert", "delete", "replace", "move", "bogus"]);
                let mut parts = vec![
                    format!(r#"{{"name":"type","valueCode":"{kind}"}}"#),
                    format!(r#"{{"name":"path","valueString":{}}}"#, serde_json::json!(rng.pick(&PATHS))),
                    format!(r#"{{"name":"name","valueString":"{}"}}"#, rng.pick(&["note", "text", "status", "x"])),
                    format!(r#"{{"name":"index","valueInteger":{}}}"#, rng.below(3)),
                    format!(r#"{{"name":"source","valueInteger":{}}}"#, rng.below(3)),
                    format!(r#"{{"name":"destination","valueInteger":{}}}"#, rng.below(3)),
                ];
                parts.push(match rng.below(3) {
                    0 => format!(r#"{{"name":"value","valueString":{}}}"#, string(rng)),
                    1 => format!(r#"{{"name":"value","part":[{{"name":"text","valueString":{}}}]}}"#, string(rng)),
                    _ => format!(r#"{{"name":"value","valueCodeableConcept":{}}}"#, json(rng, 3)),
                });
                parts.retain(|_| !rng.chance(5));
                format!(r#"{{"name":"operation","part":[{}]}}"#, parts.join(","))
            })
            .collect();
        let mut body = format!(r#"{{"resourceType":"Parameters","parameter":[{}]}}"#, operations.join(","));
        if rng.chance(4) {
            body = mutate(rng, &body);
        }
        if let Ok(text) = crate::fhirpath_patch(TASK, body.as_bytes(), ResourceType::Task, limits) {
            assert!(text.len() <= limits.max_bytes, "{} > {}: {body}", text.len(), limits.max_bytes);
            assert!(json_text::depth(text.as_bytes()) <= json_text::MAX_DEPTH);
        }
    });
}

const PARAMETERS: [&str; 16] = [
    "status",
    "status:not",
    "identifier",
    "patient",
    "subject:CarePlan.subject",
    "_id",
    "_lastUpdated",
    "period",
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "code:text",
    "owner:Practitioner.name",
    "_has:Task:for:status",
    "bogus",
];

const VALUES: [&str; 12] =
    ["requested", "a|b", "|b", "a|", "ge2026-01-01", "lt2026", "-period", "10", "Task:patient", "x,y,z", "", "%zz"];

#[test]
fn the_search_parser_never_panics() {
    fuzz("search::query::parse", |rng| {
        let ty = *rng.pick(&ResourceType::ALL);
        let pairs: Vec<(String, String)> = (0..rng.below(6))
            .map(|_| {
                let mut name = rng.pick(&PARAMETERS).to_string();
                let mut value = rng.pick(&VALUES).to_string();
                if rng.chance(3) {
                    name = mutate(rng, &name);
                }
                if rng.chance(3) {
                    value = mutate(rng, &value).repeat(1 + rng.below(3));
                }
                (name, value)
            })
            .collect();
        let _ = crate::search::query::parse(ty, &pairs, rng.chance(2));
    });
}
