//! JSON as text: minifying and pretty-printing without ever turning a number or a string into
//! something else. serde_json's `Value` would rewrite decimals (`1.50` becomes `1.5`), so the
//! stored form of a resource is the client's own text with insignificant whitespace removed.
//!
//! `minify` and `pretty` expect syntactically valid JSON (callers parse first) and never fail.
//!
//! PATCH has to edit a resource as a tree and still write back the client's numbers, so this
//! module also has a *preserving* `Value` form: every number literal becomes a string holding a
//! marker and the literal's text (`1.50` becomes `"\u{E000}1.50"`), and writing the tree turns it
//! back into the bare literal. Object member order survives through serde_json's `preserve_order`.
//! serde_json's `arbitrary_precision` would do the same for numbers but breaks fhir-sdk, so it
//! stays off.

use serde_json::Value;

/// The marker that opens a string standing for a number literal in a preserving `Value`.
///
/// No client string can be mistaken for a number: a string value the client sent that itself
/// starts with the marker gets a second marker in front, which writing removes again. So a
/// preserving string is a number when it is one marker and a literal, client text otherwise.
const MARK: char = '\u{E000}';

/// The deepest nesting of objects and arrays this server takes in any JSON it is sent (a
/// resource, a Bundle, a patch document) or that a patch makes: the root object is level 1.
///
/// Code that walks JSON trees recursively (serde's derived models, `Value`'s own drop, the
/// walkers here and in `ingest`, `search::index`, `patch`) relies on it: every tree it sees was
/// checked by `check_depth` before parsing or built under a patch budget that checks it. FHIR
/// resources nest a few levels (extensions in extensions: a dozen); serde_json's own recursion
/// limit (128, never disabled here: no `unbounded_depth`) stays the backstop a Bundle fits under.
pub const MAX_DEPTH: usize = 100;

/// The deepest nesting of objects and arrays in JSON `text` (0 for a scalar), counted by one
/// pass over the bytes without parsing, so it can run before any parser sees the text. Text
/// that is not JSON is measured as far as it goes (the parser reports what is wrong with it).
pub fn depth(text: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = string_end(text, i);
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// Refuse JSON `text` nested deeper than `MAX_DEPTH`, naming the limit: the check every body
/// passes before it is parsed (see `MAX_DEPTH`).
pub fn check_depth(text: &[u8]) -> Result<(), String> {
    let found = depth(text);
    if found > MAX_DEPTH {
        Err(format!("the JSON nests {found} levels of objects and arrays; this server takes at most {MAX_DEPTH}"))
    } else {
        Ok(())
    }
}

/// The nesting depth of a `Value` (0 for a scalar), or `cap` as soon as it reaches `cap`.
/// Iterative, so it is safe on any tree.
pub fn value_depth(value: &Value, cap: usize) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, level)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(members) => Box::new(members.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        if deepest >= cap {
            return cap;
        }
        stack.extend(children.filter(|child| child.is_array() || child.is_object()).map(|child| (child, level + 1)));
    }
    deepest
}

/// The length of `from_value_preserving(value)`, or `cap` as soon as it reaches `cap`: what a
/// value adds to a document, measured before it is added. Iterative, so it is safe on any tree.
pub fn preserving_len(value: &Value, cap: usize) -> usize {
    let mut len = 0usize;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        len += match value {
            Value::Null => 4,
            Value::Bool(b) => 4 + usize::from(!*b),
            Value::Number(n) => n.to_string().len(),
            Value::String(_) => match (number_literal(value), string_text(value)) {
                (Some(literal), _) => literal.len(),
                (None, Some(text)) => 2 + text.chars().map(escaped_len).sum::<usize>(),
                (None, None) => 0,
            },
            Value::Array(items) => {
                stack.extend(items.iter());
                2 + items.len().saturating_sub(1)
            }
            Value::Object(members) => {
                stack.extend(members.values());
                let keys: usize = members.keys().map(|k| 1 + string_len(k)).sum();
                2 + members.len().saturating_sub(1) + keys
            }
        };
        if len >= cap {
            return cap;
        }
    }
    len
}

/// The length of `text` written as a JSON string literal (quotes included), as `push_string`
/// writes it.
pub fn string_len(text: &str) -> usize {
    2 + text.chars().map(escaped_len).sum::<usize>()
}

/// How many bytes `push_string` writes for `c`.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if c < ' ' => 6,
        c => c.len_utf8(),
    }
}

/// Remove whitespace outside strings.
pub fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// Indent minified JSON with two spaces per level, the way `_pretty=true` asks for.
pub fn pretty(minified: &str) -> String {
    let bytes = minified.as_bytes();
    let mut out = String::with_capacity(minified.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    for (i, c) in minified.char_indices() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let empty = matches!(bytes.get(i + 1), Some(b'}' | b']'));
                if !empty {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                let empty = i > 0 && matches!(bytes[i - 1], b'{' | b'[');
                if !empty {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

/// Parse JSON text into a preserving `Value` (see the module comment).
///
/// Syntax errors are those of plain parsing, with the positions of `text`.
pub fn to_value_preserving(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    serde_json::from_str(&mark_numbers(text))
}

/// Write a preserving `Value` as minified JSON text, numbers exactly as they were sent.
///
/// String values are written with serde_json's escaping, so an escape the client chose that JSON
/// does not require (`\u00e9`, `\/`) comes back as the plain character: the same string.
pub fn from_value_preserving(value: &Value) -> String {
    let mut out = String::new();
    write_preserving(value, &mut out);
    out
}

/// The number literal a preserving `Value` stands for, if it is a number.
pub fn number_literal(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => s.strip_prefix(MARK).filter(|rest| !rest.starts_with(MARK)),
        _ => None,
    }
}

/// The client's string a preserving `Value` holds, if it is a string (and not a number).
pub fn string_text(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => match s.strip_prefix(MARK) {
            Some(rest) => rest.strip_prefix(MARK).map(|_| rest),
            None => Some(s),
        },
        _ => None,
    }
}

/// A preserving string `Value` holding `text` as a client string.
pub fn preserving_string(text: &str) -> Value {
    if text.starts_with(MARK) {
        Value::String(format!("{MARK}{text}"))
    } else {
        Value::String(text.to_string())
    }
}

/// Whether two preserving values are equal as JSON values: numbers by value (`1.50` equals `1.5`
/// and `15e-1`), objects whatever their member order (RFC 6902 section 4.6).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_value(a, b)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same_value(v, w)))
        }
        _ => match (number_literal(a), number_literal(b)) {
            (Some(a), Some(b)) => same_number(a, b),
            (None, None) => a == b,
            _ => false,
        },
    }
}

/// Whether two JSON number literals have the same value, compared exactly (no floating point).
pub fn same_number(a: &str, b: &str) -> bool {
    match (Decimal::parse(a), Decimal::parse(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A number literal in a canonical form: sign, significant digits without leading or trailing
/// zeros, and the power of ten of the last digit. Zero is always positive.
#[derive(PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: String,
    exponent: i64,
}

impl Decimal {
    fn parse(literal: &str) -> Option<Self> {
        let (negative, unsigned) = match literal.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, literal),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.strip_prefix('+').unwrap_or(e).parse::<i64>().ok()?),
            None => (unsigned, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{int}{frac}");
        let significant = all.trim_start_matches('0');
        let digits = significant.trim_end_matches('0');
        if digits.is_empty() {
            return Some(Self { negative: false, digits: String::new(), exponent: 0 });
        }
        let trailing = (significant.len() - digits.len()) as i64;
        let exponent = exponent.checked_sub(frac.len() as i64)?.checked_add(trailing)?;
        Some(Self { negative, digits: digits.to_string(), exponent })
    }
}

/// Replace every number literal outside strings by a marked string, and mark client strings that
/// start with the marker (object keys are never numbers, so they are left alone).
fn mark_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let end = string_end(bytes, i);
                out.push('"');
                if starts_with_mark(&text[i + 1..end]) && !is_key(bytes, end) {
                    out.push(MARK);
                }
                out.push_str(&text[i + 1..end]);
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let len = bytes[i..].iter().take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
                let end = i + len.count();
                out.push('"');
                out.push(MARK);
                out.push_str(&text[i..end]);
                out.push('"');
                i = end;
            }
            _ => {
                // Outside strings valid JSON is ASCII, so any byte boundary here is a char boundary.
                let len = bytes[i..].iter().take_while(|b| !matches!(b, b'"' | b'-' | b'0'..=b'9')).count();
                out.push_str(&text[i..i + len]);
                i += len;
            }
        }
    }
    out
}

/// The index just past the string literal opening at `start` (a `"`).
pub(crate) fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Whether the string literal (with its closing quote) decodes to text starting with the marker.
fn starts_with_mark(literal: &str) -> bool {
    literal.starts_with(MARK) || literal.get(..6).is_some_and(|escape| escape.eq_ignore_ascii_case("\\ue000"))
}

/// Whether the string literal ending at `end` is an object key.
fn is_key(bytes: &[u8], end: usize) -> bool {
    bytes[end..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
}

fn write_preserving(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(_) => match (number_literal(value), string_text(value)) {
            (Some(literal), _) => out.push_str(literal),
            (None, Some(text)) => push_string(out, text),
            (None, None) => {}
        },
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_preserving(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(out, key);
                out.push(':');
                write_preserving(item, out);
            }
            out.push('}');
        }
    }
}

/// Append `text` as a JSON string literal, escaping as serde_json does.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, minified: &str) {
        assert_eq!(minify(input), minified);
        let pretty = pretty(minified);
        assert_eq!(minify(&pretty), minified, "pretty output must minify back");
        let a: serde_json::Value = serde_json::from_str(input).expect("test input is JSON");
        let b: serde_json::Value = serde_json::from_str(&pretty).expect("pretty output is JSON");
        assert_eq!(a, b);
    }

    #[test]
    fn whitespace_outside_strings_goes_and_everything_else_stays() {
        check(" { \"a\" : 1.50 ,\n \"b\": [ 1 , 2.0e3 ] } ", r#"{"a":1.50,"b":[1,2.0e3]}"#);
        check(
            r#"{"s":"keep  this \" and \\ this ","t":"\u00e9 x"}"#,
            r#"{"s":"keep  this \" and \\ this ","t":"\u00e9 x"}"#,
        );
        check("{\"e\":{},\"f\":[],\"g\":[{}]}", r#"{"e":{},"f":[],"g":[{}]}"#);
        check("{\"ü\": \"ß  ✓\"}", "{\"ü\":\"ß  ✓\"}");
    }

    #[test]
    fn pretty_printing_indents_two_spaces() {
        assert_eq!(
            pretty(r#"{"a":[1,{"b":"x,y"}],"c":{}}"#),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x,y\"\n    }\n  ],\n  \"c\": {}\n}"
        );
    }

    /// Round trip through the preserving form: `input` parses, writes back as `minified`.
    fn check_preserving(input: &str, minified: &str) {
        let value = to_value_preserving(input).expect("test input is JSON");
        assert_eq!(from_value_preserving(&value), minified, "{input}");
        let plain: Value = serde_json::from_str(input).expect("test input is JSON");
        let back: Value = serde_json::from_str(minified).expect("output is JSON");
        assert_eq!(plain, back, "same JSON value");
    }

    #[test]
    fn numbers_and_member_order_survive_the_preserving_form() {
        check_preserving(r#"{"a": 1.50, "b": 1e3, "c": -0.0}"#, r#"{"a":1.50,"b":1e3,"c":-0.0}"#);
        check_preserving(
            "[100000000000000000000000001, 1E+2, 2.5e-3, 0, -7]",
            "[100000000000000000000000001,1E+2,2.5e-3,0,-7]",
        );
        check_preserving(
            r#"{"z":1,"a":{"y":[1.0,[2.00,{"x":3.000}]],"b":2},"m":null}"#,
            r#"{"z":1,"a":{"y":[1.0,[2.00,{"x":3.000}]],"b":2},"m":null}"#,
        );
        check_preserving(r#"{"t":true,"f":false,"e":[],"o":{}}"#, r#"{"t":true,"f":false,"e":[],"o":{}}"#);
        check_preserving(
            r#"{"s":"1.50","n":"-1","q":"a \"1\" \\ b\n"}"#,
            r#"{"s":"1.50","n":"-1","q":"a \"1\" \\ b\n"}"#,
        );
        check_preserving(r#"{"u":"\u00e9\/"}"#, r#"{"u":"é/"}"#);
    }

    #[test]
    fn client_strings_starting_with_the_marker_are_never_numbers() {
        let input = "{\"a\":\"\u{E000}1.5\",\"b\":\"\\ue0002\",\"\u{E000}k\":1,\"c\":\"\\uE000\"}";
        let value = to_value_preserving(input).expect("JSON");
        assert_eq!(string_text(&value["a"]), Some("\u{E000}1.5"));
        assert_eq!(number_literal(&value["a"]), None);
        assert_eq!(string_text(&value["b"]), Some("\u{E000}2"));
        assert_eq!(number_literal(&value["\u{E000}k"]), Some("1"));
        assert_eq!(string_text(&value["c"]), Some("\u{E000}"));
        assert_eq!(
            from_value_preserving(&value),
            "{\"a\":\"\u{E000}1.5\",\"b\":\"\u{E000}2\",\"\u{E000}k\":1,\"c\":\"\u{E000}\"}"
        );
        assert_eq!(string_text(&preserving_string("\u{E000}x")), Some("\u{E000}x"));
    }

    #[test]
    fn malformed_text_fails_with_the_plain_parse_error() {
        let err = to_value_preserving("{\"a\": 1.5,}").expect_err("trailing comma");
        assert_eq!(err.to_string(), "key must be a string at line 1 column 11");
        assert!(to_value_preserving("01").is_err());
    }

    #[test]
    fn numbers_compare_by_value() {
        let same = [("1.50", "1.5"), ("15e-1", "1.5"), ("-0.0", "0"), ("100", "1E2"), ("1e400", "10e399")];
        for (a, b) in same {
            assert!(same_number(a, b), "{a} = {b}");
        }
        for (a, b) in [("1.5", "1.05"), ("-1", "1"), ("10", "1"), ("0.1", "1")] {
            assert!(!same_number(a, b), "{a} != {b}");
        }
        let a = to_value_preserving(r#"{"x":[1.50,{"p":1,"q":2}]}"#).expect("JSON");
        let b = to_value_preserving(r#"{"x":[1.5,{"q":2,"p":1.0}]}"#).expect("JSON");
        assert!(same_value(&a, &b));
        assert!(!same_value(&a, &to_value_preserving(r#"{"x":[1.5,{"q":2}]}"#).expect("JSON")));
    }
}
