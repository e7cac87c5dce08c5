//! JSON as text: minifying and pretty-printing without ever turning a number or a string into
//! something else. serde_json's `Value` would rewrite decimals (`1.50` becomes `1.5`), so the
//! stored form of a resource is the client's own text with insignificant whitespace removed.
//!
//! Both functions expect syntactically valid JSON (callers parse first) and never fail.

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
}
