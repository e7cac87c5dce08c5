//! The FHIRPath subset that FHIRPath Patch paths need (http://hl7.org/fhir/R4/fhirpatch.html),
//! evaluated over a preserving `serde_json::Value` (see `json_text`).
//!
//! Supported: the resource type as root (`Task`), element names (`Task.code.coding`, a choice
//! element by its base name: `Task.input.value`), indexers (`[0]`), `first()`, `last()` and
//! `where(a.b = literal)` with a string, number or boolean literal. Nothing else: in particular no
//! `resolve()`, which the spec forbids from crossing resources anyway.

use serde_json::Value;

use super::elements;
use crate::json_text;

/// One step of a parsed path, after the root.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    Member(String),
    Index(usize),
    First,
    Last,
    Where(Vec<String>, Literal),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Literal {
    String(String),
    Number(String),
    Boolean(bool),
}

/// One segment of a location in the resource tree: a member name or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// An element a path selected: where it is and which definition describes it.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) loc: Vec<Seg>,
    /// The type or element path its children are named under: `Annotation` for `Task.note`,
    /// `CarePlan.activity` for a backbone element.
    pub(super) ctx: String,
    /// For a choice element reached by its base name (`value`), that base name.
    pub(super) choice: Option<String>,
}

/// Parse `text`, which must start with `root` (the resource type).
pub(super) fn parse(text: &str, root: &str) -> Result<Vec<Step>, String> {
    let mut parser = Parser { text, pos: 0 };
    let first = parser.identifier().ok_or_else(|| format!("the path must start with '{root}'"))?;
    if first != root {
        return Err(format!("the path must start with '{root}', not '{first}'"));
    }
    let mut steps = Vec::new();
    while !parser.rest().trim().is_empty() {
        steps.push(parser.step()?);
    }
    Ok(steps)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        let found = self.rest().starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn skip_spaces(&mut self) {
        self.pos += self.rest().len() - self.rest().trim_start().len();
    }

    fn unsupported(&self) -> String {
        format!(
            "unsupported FHIRPath at '{}' (supported: element names, [n], first(), last(), where(a.b = literal))",
            self.rest()
        )
    }

    /// An identifier, plain or `delimited`.
    fn identifier(&mut self) -> Option<String> {
        self.skip_spaces();
        if let Some(rest) = self.rest().strip_prefix('`') {
            let len = rest.find('`')?;
            let name = rest[..len].to_string();
            self.pos += len + 2;
            return Some(name);
        }
        let len = self.rest().find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(self.rest().len());
        let name = &self.rest()[..len];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.pos += len;
        Some(name.to_string())
    }

    fn step(&mut self) -> Result<Step, String> {
        if self.eat("[") {
            let index = self.integer().ok_or_else(|| self.unsupported())?;
            return if self.eat("]") { Ok(Step::Index(index)) } else { Err(self.unsupported()) };
        }
        if !self.eat(".") {
            return Err(self.unsupported());
        }
        let name = self.identifier().ok_or_else(|| self.unsupported())?;
        if !self.eat("(") {
            return Ok(Step::Member(name));
        }
        let step = match name.as_str() {
            "first" => Step::First,
            "last" => Step::Last,
            "where" => self.criterion()?,
            _ => return Err(format!("unsupported FHIRPath function '{name}()'")),
        };
        if self.eat(")") {
            Ok(step)
        } else {
            Err(self.unsupported())
        }
    }

    fn integer(&mut self) -> Option<usize> {
        self.skip_spaces();
        let len = self.rest().find(|c: char| !c.is_ascii_digit()).unwrap_or(self.rest().len());
        let value = self.rest()[..len].parse().ok()?;
        self.pos += len;
        Some(value)
    }

    /// `a.b = literal`, inside `where(`.
    fn criterion(&mut self) -> Result<Step, String> {
        let mut members = vec![self.identifier().ok_or_else(|| self.unsupported())?];
        while self.eat(".") {
            members.push(self.identifier().ok_or_else(|| self.unsupported())?);
        }
        if !self.eat("=") {
            return Err(self.unsupported());
        }
        self.skip_spaces();
        let literal = self.literal().ok_or_else(|| self.unsupported())?;
        Ok(Step::Where(members, literal))
    }

    fn literal(&mut self) -> Option<Literal> {
        if self.rest().starts_with('\'') {
            return self.string().map(Literal::String);
        }
        for (word, value) in [("true", true), ("false", false)] {
            if self.rest().starts_with(word) {
                self.pos += word.len();
                return Some(Literal::Boolean(value));
            }
        }
        let len =
            self.rest().find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(self.rest().len());
        let number = &self.rest()[..len];
        if number.is_empty() || number.parse::<f64>().is_err() {
            return None;
        }
        self.pos += len;
        Some(Literal::Number(number.to_string()))
    }

    /// A single-quoted string with FHIRPath escapes (http://hl7.org/fhirpath/N1/#string).
    fn string(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.pos += i + 1;
                    return Some(out);
                }
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    out.push(match escaped {
                        'n' => '\n',
                        'r' => '\r',
                        't' => '\t',
                        'f' => '\u{c}',
                        'u' => {
                            let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, h)| h)).collect();
                            char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                        }
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        None
    }
}

/// The root of the resource: the start of every evaluation.
pub(super) fn root(resource_type: &str) -> Node {
    Node { loc: Vec::new(), ctx: resource_type.to_string(), choice: None }
}

/// Evaluate `steps` from `start`: every element they select, in document order.
pub(super) fn evaluate(doc: &Value, start: Node, steps: &[Step]) -> Vec<Node> {
    let mut nodes = vec![start];
    for step in steps {
        nodes = match step {
            Step::Member(name) => nodes.iter().flat_map(|node| children(doc, node, name)).collect(),
            Step::Index(i) => nodes.into_iter().nth(*i).into_iter().collect(),
            Step::First => nodes.into_iter().next().into_iter().collect(),
            Step::Last => nodes.into_iter().last().into_iter().collect(),
            Step::Where(members, literal) => {
                nodes.into_iter().filter(|node| matches_literal(doc, node, members, literal)).collect()
            }
        };
    }
    nodes
}

/// The elements named `name` under `node`: one per list item for a repeating element.
fn children(doc: &Value, node: &Node, name: &str) -> Vec<Node> {
    let Some(Value::Object(members)) = get(doc, &node.loc) else {
        return Vec::new();
    };
    let (key, choice) = match members.get(name) {
        Some(_) => (name.to_string(), None),
        None if is_choice(&node.ctx, name) => match members.keys().find(|k| is_choice_key(k, name)) {
            Some(key) => (key.clone(), Some(name.to_string())),
            None => return Vec::new(),
        },
        None => return Vec::new(),
    };
    let ctx = child_ctx(&node.ctx, &key);
    let mut loc = node.loc.clone();
    loc.push(Seg::Key(key.clone()));
    match &members[&key] {
        Value::Array(items) => (0..items.len())
            .map(|i| {
                let mut item = loc.clone();
                item.push(Seg::Index(i));
                Node { loc: item, ctx: ctx.clone(), choice: None }
            })
            .collect(),
        _ => vec![Node { loc, ctx, choice }],
    }
}

/// FHIRPath `=`: the members must select exactly one value, equal to the literal.
fn matches_literal(doc: &Value, node: &Node, members: &[String], literal: &Literal) -> bool {
    let steps: Vec<Step> = members.iter().cloned().map(Step::Member).collect();
    let found = evaluate(doc, node.clone(), &steps);
    let [only] = found.as_slice() else {
        return false;
    };
    let Some(value) = get(doc, &only.loc) else {
        return false;
    };
    match literal {
        Literal::String(s) => json_text::string_text(value) == Some(s.as_str()),
        Literal::Number(n) => json_text::number_literal(value).is_some_and(|v| json_text::same_number(v, n)),
        Literal::Boolean(b) => value == &Value::Bool(*b),
    }
}

/// `valueString` is a choice key of `value`: the base name and a type name starting uppercase.
pub(super) fn is_choice_key(key: &str, base: &str) -> bool {
    key.strip_prefix(base).is_some_and(|ty| ty.starts_with(|c: char| c.is_ascii_uppercase()))
}

/// The context children of element `key` under `ctx` are named in: its datatype, or for a
/// backbone element (or primitive) its own path.
pub(super) fn child_ctx(ctx: &str, key: &str) -> String {
    let path = format!("{ctx}.{key}");
    elements::element_type(&path).map(str::to_string).unwrap_or(path)
}

/// Whether element `name` under `ctx` repeats (max = "*").
pub(super) fn is_repeating(ctx: &str, name: &str) -> bool {
    elements::is_repeating(&format!("{ctx}.{name}"))
}

/// Whether `name` under `ctx` is a choice element (`value[x]`) named by its base name.
pub(super) fn is_choice(ctx: &str, name: &str) -> bool {
    elements::is_choice(&format!("{ctx}.{name}"))
}

pub(super) fn get<'a>(doc: &'a Value, loc: &[Seg]) -> Option<&'a Value> {
    loc.iter().try_fold(doc, |value, seg| match seg {
        Seg::Key(key) => value.get(key),
        Seg::Index(i) => value.get(i),
    })
}

pub(super) fn get_mut<'a>(doc: &'a mut Value, loc: &[Seg]) -> Option<&'a mut Value> {
    loc.iter().try_fold(doc, |value, seg| match seg {
        Seg::Key(key) => value.get_mut(key),
        Seg::Index(i) => value.get_mut(i),
    })
}

/// A location as a FHIRPath-like string for diagnostics: `note[1].text`.
pub(super) fn display(loc: &[Seg]) -> String {
    let mut out = String::new();
    for seg in loc {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluate `path` on `doc` and render the selected locations, or the parse error.
    fn check(doc: &str, path: &str, expect: &str) {
        let doc = json_text::to_value_preserving(doc).expect("test doc is JSON");
        let root_name = doc["resourceType"].as_str().unwrap_or_default().to_string();
        let got = match parse(path, &root_name) {
            Ok(steps) => {
                let nodes = evaluate(&doc, root(&root_name), &steps);
                nodes.iter().map(|n| format!("{} ({})", display(&n.loc), n.ctx)).collect::<Vec<_>>().join(", ")
            }
            Err(err) => format!("error: {err}"),
        };
        assert_eq!(got, expect, "{path}");
    }

    const TASK: &str = r#"{"resourceType":"Task","status":"requested",
        "identifier":[{"system":"http://x","value":"1"},{"system":"http://y","value":"2"}],
        "code":{"coding":[{"system":"s","code":"a"},{"system":"s","code":"b"}]},
        "note":[{"text":"one"},{"text":"two","authorString":"me"}],
        "input":[{"type":{"text":"dose"},"valueDecimal":1.50},{"type":{"text":"flag"},"valueBoolean":true}],
        "restriction":{"period":{"start":"2026-01-01"}}}"#;

    #[test]
    fn paths_select_elements() {
        check(TASK, "Task", " (Task)");
        check(TASK, "Task.status", "status (Task.status)");
        check(TASK, "Task.note", "note[0] (Annotation), note[1] (Annotation)");
        check(TASK, "Task.note[1].text", "note[1].text (Annotation.text)");
        check(TASK, "Task.note.text", "note[0].text (Annotation.text), note[1].text (Annotation.text)");
        check(TASK, "Task.note.first()", "note[0] (Annotation)");
        check(TASK, "Task.note.last().author", "note[1].authorString (Annotation.authorString)");
        check(TASK, "Task.note[2]", "");
        check(TASK, "Task.code.coding[1].code", "code.coding[1].code (Coding.code)");
        check(TASK, "Task.restriction.period.start", "restriction.period.start (Period.start)");
        check(TASK, "Task.owner", "");
        check(TASK, "Task.`status`", "status (Task.status)");
        check(TASK, " Task . note [ 0 ] ", "note[0] (Annotation)");
    }

    #[test]
    fn where_selects_by_value() {
        check(TASK, "Task.identifier.where(system='http://y')", "identifier[1] (Identifier)");
        check(TASK, "Task.identifier.where(system = 'http://y').value", "identifier[1].value (Identifier.value)");
        check(TASK, "Task.identifier.where(system='http://z')", "");
        check(TASK, "Task.input.where(type.text='dose').value", "input[0].valueDecimal (Task.input.valueDecimal)");
        check(TASK, "Task.input.where(value=1.5)", "input[0] (Task.input)");
        check(TASK, "Task.input.where(value=true)", "input[1] (Task.input)");
        check(TASK, "Task.code.where(coding.code='a')", "");
        check(TASK, "Task.note.where(text='it\\'s')", "");
    }

    #[test]
    fn unsupported_paths_are_errors() {
        check(TASK, "CarePlan.status", "error: the path must start with 'Task', not 'CarePlan'");
        check(TASK, ".status", "error: the path must start with 'Task'");
        check(TASK, "Task.owner.resolve()", "error: unsupported FHIRPath function 'resolve()'");
        check(
            TASK,
            "Task.note | Task.input",
            "error: unsupported FHIRPath at '| Task.input' (supported: element names, [n], first(), last(), where(a.b = literal))",
        );
        check(
            TASK,
            "Task.note.where(text != 'x')",
            "error: unsupported FHIRPath at '!= 'x')' (supported: element names, [n], first(), last(), where(a.b = literal))",
        );
        check(
            TASK,
            "Task.note[x]",
            "error: unsupported FHIRPath at 'x]' (supported: element names, [n], first(), last(), where(a.b = literal))",
        );
    }
}
