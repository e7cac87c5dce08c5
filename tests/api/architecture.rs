//! Architecture invariants checked by reading the source tree (ARCHITECTURE.md, "Invariants"):
//! which crate may depend on which, where the environment is read, that the store's public
//! methods are `db.<operation>` spans, what the domain may name, and how the service's modules
//! are layered. Test code (`#[cfg(test)]` items and modules, this package) is not looked at.
//!
//! Each list of exceptions is exact: a new violation fails, and so does an exception that no
//! longer occurs (remove its entry and comment), so the lists only shrink.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// (a) Dependencies between crates

/// The workspace members (directory, package) and the workspace packages each may depend on:
/// service → persistence → domain; tests → service.
const ARROWS: &[(&str, &str, &[&str])] = &[
    ("crates/domain", "careplan-domain", &[]),
    ("crates/persistence", "careplan-persistence", &["careplan-domain"]),
    ("crates/service", "careplan-service", &["careplan-domain", "careplan-persistence"]),
    ("tests", "careplan-tests", &["careplan-service"]),
];

/// Packages (by name prefix) a library crate must not depend on, in what it ships (normal and
/// build dependencies; dev-dependencies are its tests').
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The domain does no IO: no async runtime, no HTTP, no database.
    ("careplan-domain", &["actix", "sea-orm", "sea-query", "sqlx", "tokio", "reqwest", "hyper", "futures", "async-"]),
    // Only service knows HTTP.
    ("careplan-persistence", &["actix", "reqwest", "hyper"]),
    // Only persistence knows SQL and which backend is in use.
    ("careplan-service", &["sea-orm", "sea-query", "sqlx"]),
];

/// Dependencies `FORBIDDEN` names that a crate still has.
const FORBIDDEN_BUT_PRESENT: &[(&str, &str)] = &[];

#[test]
fn crates_depend_only_along_the_allowed_arrows() {
    let root = root();
    let members = workspace_members(&root);
    let listed: Vec<&str> = ARROWS.iter().map(|(dir, _, _)| *dir).collect();
    assert_eq!(members, listed, "every workspace member has its arrows in ARROWS, and only they");
    let aliases = workspace_aliases(&root);

    let mut wrong = Vec::new();
    for (dir, package, allowed) in ARROWS {
        let manifest = Manifest::read(&root.join(dir).join("Cargo.toml"), &aliases);
        assert_eq!(manifest.package, *package, "{dir}/Cargo.toml");
        for (table, dependency) in manifest.all() {
            if dependency.starts_with("careplan-") && !allowed.contains(&dependency.as_str()) {
                wrong.push(format!("{package} → {dependency} ([{table}])"));
            }
        }
    }
    assert!(wrong.is_empty(), "arrows between crates that ARCHITECTURE.md does not draw: {wrong:#?}");
}

#[test]
fn no_crate_depends_on_what_its_layer_must_not_know() {
    let root = root();
    let aliases = workspace_aliases(&root);
    let mut present = BTreeSet::new();
    for (dir, package, _) in ARROWS {
        let manifest = Manifest::read(&root.join(dir).join("Cargo.toml"), &aliases);
        let forbidden = FORBIDDEN.iter().find(|(p, _)| p == package).map_or(&[][..], |(_, f)| f);
        for dependency in manifest.shipped() {
            if forbidden.iter().any(|prefix| dependency.starts_with(prefix)) {
                present.insert((package.to_string(), dependency));
            }
        }
    }

    let known: BTreeSet<(String, String)> =
        FORBIDDEN_BUT_PRESENT.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect();
    let new: Vec<_> = present.difference(&known).collect();
    let gone: Vec<_> = known.difference(&present).collect();
    assert!(new.is_empty(), "dependencies this crate's layer must not have: {new:#?}");
    assert!(gone.is_empty(), "no longer there, remove them from FORBIDDEN_BUT_PRESENT: {gone:#?}");
}

// ---------------------------------------------------------------------------------------------
// (b) Where the environment is read

/// What reads the process environment: `env::var` (also `var_os`, `vars`, `vars_os`), and
/// tracing-subscriber's `EnvFilter` constructors that read a variable of their own.
const ENV_READS: &[&str] = &["env::var", "from_env(", "try_from_env(", "from_default_env("];

/// Configuration is read in one place: clap's `env` in the settings and the command line.
const ENV_READERS: &[&str] = &["crates/service/src/config.rs", "crates/service/src/cli.rs"];

/// Files outside `ENV_READERS` that read the environment, and how many reads each holds.
const ENV_READ_ELSEWHERE: &[(&str, usize)] = &[];

#[test]
fn the_environment_is_read_only_where_configuration_is_parsed() {
    let root = root();
    let mut reads: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for krate in crate_names(&root) {
        for source in sources(&root, &krate) {
            if ENV_READERS.contains(&source.path.as_str()) {
                continue;
            }
            for pattern in ENV_READS {
                for at in occurrences(&source.code, pattern) {
                    reads.entry(source.path.clone()).or_default().push(source.line_at(at));
                }
            }
        }
    }

    let counted: BTreeMap<&str, usize> = reads.iter().map(|(path, lines)| (path.as_str(), lines.len())).collect();
    let allowed: BTreeMap<&str, usize> = ENV_READ_ELSEWHERE.iter().copied().collect();
    assert_eq!(
        counted, allowed,
        "the environment is read outside config.rs and cli.rs (take it from `Settings` instead, \
         or update ENV_READ_ELSEWHERE with a reason): {reads:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// (c) Every public store method is a span

/// The types whose public async methods are `db.<operation>` spans (ARCHITECTURE.md: "Each
/// public `Store`/`Tx` method is a `db.<operation>` span").
const SPANNED_TYPES: &[&str] = &["Store", "Tx"];

/// Public async methods of those types that are not spans of their own.
const NOT_SPANS: &[(&str, &str)] = &[
    // One-entry transactions: `db.transaction` and the Tx method's span (`db.create`, …) inside
    // it cover them; a span of their own would repeat the name one level up.
    ("Store", "create"),
    ("Store", "update"),
    ("Store", "delete"),
    // `includes_where` keeping everything: its `db.include` span covers it.
    ("Store", "includes"),
    // Asked by each replica's dispatcher every poll (a second by default) before it claims: a
    // span each time would be a trace a second per replica. The claim that follows is a span.
    ("Store", "subscriptions_due"),
];

#[test]
fn every_public_store_method_is_a_span() {
    let root = root();
    let mut bare = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for source in sources(&root, "persistence") {
        for block in impl_blocks(&source.code) {
            if !SPANNED_TYPES.contains(&block.self_type.as_str()) {
                continue;
            }
            for at in occurrences(block.body, "pub async fn ") {
                let name = identifier_at(block.body, at + "pub async fn ".len());
                seen.insert((block.self_type.clone(), name.clone()));
                if !attributes_before(block.body, at).contains("#[tracing::instrument") {
                    bare.insert((block.self_type.clone(), name));
                }
            }
        }
    }

    assert!(seen.len() > 20, "the scan found the store's methods: {seen:?}");
    let known: BTreeSet<(String, String)> = NOT_SPANS.iter().map(|(t, m)| (t.to_string(), m.to_string())).collect();
    let new: Vec<_> = bare.difference(&known).collect();
    let gone: Vec<_> = known.difference(&bare).collect();
    assert!(
        new.is_empty(),
        "public store methods without #[tracing::instrument(name = \"db.<operation>\", skip_all, …)]: {new:#?}"
    );
    assert!(gone.is_empty(), "spans now (or gone): remove them from NOT_SPANS: {gone:#?}");
}

// ---------------------------------------------------------------------------------------------
// (d) What the domain names

/// Crates and keywords the domain's code must not name: it does no IO, no async, no HTTP and no
/// SQL (ARCHITECTURE.md, "Invariants").
const NOT_IN_DOMAIN: &[&str] =
    &["actix", "actix_web", "sea_orm", "sea_query", "sqlx", "tokio", "reqwest", "hyper", "async"];

/// Standard-library modules that do IO.
const IO_IN_STD: &[&str] = &["std::fs", "std::net", "std::process", "std::env"];

#[test]
fn the_domain_names_no_runtime_no_http_no_sql_and_no_io() {
    let root = root();
    let mut found = Vec::new();
    for source in sources(&root, "domain") {
        for word in NOT_IN_DOMAIN {
            for at in words(&source.code, word) {
                found.push(format!("{}: {word}: {}", source.path, source.line_at(at)));
            }
        }
        for path in IO_IN_STD {
            for at in occurrences(&source.code, path) {
                found.push(format!("{}: {path}: {}", source.path, source.line_at(at)));
            }
        }
    }
    assert!(found.is_empty(), "the domain reaches for IO: {found:#?}");
}

// ---------------------------------------------------------------------------------------------
// (e) Layers inside the service

/// The service's top-level modules in layers, lowest first. A module may name modules of its
/// own layer or below; naming one above is an upward edge, allowed only as listed in `UPWARD`.
/// Within a layer, no cycle.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "settings, errors and their outcomes, interactions and routes as data",
        &["config", "error", "timeout", "outcome", "headers", "entry", "route"],
    ),
    ("instruments", &["metrics"]),
    ("the subscriber, the observe middleware", &["telemetry"]),
    ("what every handler shares", &["state"]),
    ("HTTP in and out: extractors, responders, Bundles", &["extract", "responder", "bundle"]),
    ("who is asking", &["auth"]),
    ("middleware", &["hardening", "audit"]),
    ("the write path", &["coordination", "search", "subscriptions", "engine", "visible"]),
    (
        "handlers and jobs",
        &[
            "interactions",
            "transaction",
            "plan_summary",
            "templates",
            "capabilities",
            "openapi",
            "docs",
            "health",
            "jobs",
            "export",
        ],
    ),
    ("assembly", &["routes", "startup", "cli"]),
];

/// Today's upward edges (from, to), each with what it is for. New ones fail; a removed one
/// fails until its entry goes too.
const UPWARD: &[(&str, &str)] = &[
    // The OpenAPI document describes exactly the table's routes (`routes::table`), and
    // `routes.rs` binds its handler like every other: it installs the table when asked.
    ("openapi", "routes"),
];

#[test]
fn service_modules_name_only_their_own_layer_or_below_except_the_known_upward_edges() {
    let root = root();
    let graph = service_module_graph(&root);
    let layer_of: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, (_, modules))| modules.iter().map(move |m| (*m, i))).collect();
    let modules: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    let layered: BTreeSet<&str> = layer_of.keys().copied().collect();
    assert_eq!(modules, layered, "every top-level module of the service is in one layer of LAYERS, and only they");

    let mut upward = BTreeSet::new();
    for (from, tos) in &graph {
        for to in tos {
            if layer_of[to.as_str()] > layer_of[from.as_str()] {
                upward.insert((from.clone(), to.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = UPWARD.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
    let new: BTreeSet<_> = upward.difference(&known).cloned().collect();
    let gone: Vec<_> = known.difference(&upward).collect();
    // Shown with `--no-capture` (or when a test fails): the cycles the upward edges close.
    eprintln!("service module edges upward, and the cycle each closes:{}", explain(&graph, &upward));
    assert!(new.is_empty(), "new upward edges between service modules:{}", explain(&graph, &new));
    assert!(gone.is_empty(), "upward edges that are gone: remove them from UPWARD: {gone:#?}");

    let mut level = graph.clone();
    for (from, to) in &upward {
        if let Some(tos) = level.get_mut(from) {
            tos.remove(to);
        }
    }
    let within = describe_cycles(&level);
    assert!(strongly_connected(&level).is_empty(), "cycles within a layer: {within}");
}

/// Each top-level module of the service and the top-level modules it names.
fn service_module_graph(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let src = root.join("crates/service/src");
    let lib = strip_test_items(&code_only(&read(&src.join("lib.rs")))).0;
    let modules: BTreeSet<String> =
        words(&lib, "mod").into_iter().map(|at| identifier_at(&lib, at + "mod".len())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for source in sources(root, "service") {
        let relative = source.path.trim_start_matches("crates/service/src/");
        let Some(module) = relative.split('/').next().map(|m| m.trim_end_matches(".rs")) else { continue };
        if !modules.contains(module) {
            continue; // lib.rs, main.rs
        }
        // How deep the file's module is: `engine.rs` and `audit/mod.rs` 1, `audit/trail.rs` 2.
        let depth = relative.split('/').count() - usize::from(relative.ends_with("/mod.rs"));
        for named in named_modules(&source.code, depth) {
            if named != module && modules.contains(&named) {
                graph.entry(module.to_owned()).or_default().insert(named);
            }
        }
    }
    graph
}

/// The top-level modules `code` names through `crate::` paths (`use crate::x`, `use
/// crate::{x, y::z}`, `crate::x::f()`) and through `super::` chains that reach the crate root
/// from a file `depth` modules deep.
fn named_modules(code: &str, depth: usize) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut heads = |rest: &str| {
        let rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            named.extend(group_heads(group));
        } else {
            named.insert(identifier_at(rest, 0));
        }
    };
    for at in words(code, "crate") {
        if code[..at].ends_with('$') {
            continue; // `$crate` in a macro
        }
        if let Some(rest) = code[at + "crate".len()..].strip_prefix("::") {
            heads(rest);
        }
    }
    for at in words(code, "super") {
        if code[..at].ends_with("::") {
            continue; // counted with the chain it ends
        }
        let mut rest = &code[at..];
        let mut up = 0;
        while let Some(next) = rest.strip_prefix("super::") {
            up += 1;
            rest = next;
        }
        if up >= depth && up > 0 {
            heads(rest);
        }
    }
    named.retain(|m| !m.is_empty() && m != "self");
    named
}

/// The first identifier of each item of a `use` group, `group` starting after its `{`.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let (mut depth, mut expecting) = (1, true);
    let bytes = group.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => expecting = true,
            c if depth == 1 && expecting && is_ident_start(c) => {
                let head = identifier_at(group, i);
                i += head.len();
                heads.push(head);
                expecting = false;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    heads
}

/// Each of `edges` on a line, with the shortest cycle it closes in `graph`, if any.
fn explain(graph: &BTreeMap<String, BTreeSet<String>>, edges: &BTreeSet<(String, String)>) -> String {
    edges
        .iter()
        .map(|(from, to)| match path(graph, to, from) {
            Some(back) => format!("\n  {from} → {to}: closes {from} → {}", back.join(" → ")),
            None => format!("\n  {from} → {to}: no cycle"),
        })
        .collect()
}

/// The shortest path of edges from `from` to `to` (both included), breadth first.
fn path(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        if at == to {
            let mut path = vec![to.to_owned()];
            let mut step = to;
            while step != from {
                step = came_from[step];
                path.push(step.to_owned());
            }
            path.reverse();
            return Some(path);
        }
        for next in graph.get(at).into_iter().flatten() {
            if next != from && !came_from.contains_key(next.as_str()) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

/// The strongly connected components of more than one module (Tarjan).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), found: Vec::new() };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.found
}

/// Each cycle's modules and the edges between them, or "none".
fn describe_cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let components = strongly_connected(graph);
    if components.is_empty() {
        return "none".into();
    }
    components
        .iter()
        .map(|component| {
            let edges: Vec<String> = component
                .iter()
                .flat_map(|from| {
                    graph[from].iter().filter(|to| component.contains(to)).map(move |to| format!("{from} → {to}"))
                })
                .collect();
            format!("\n  {} modules: {}", component.len(), edges.join(", "))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading the tree

/// The workspace root (this package is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The crates under `crates/`.
fn crate_names(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    names
}

/// One source file: its path from the workspace root, its text, and its code (`code_only`
/// without `#[cfg(test)]` items), byte for byte aligned with the text.
struct Source {
    path: String,
    text: String,
    code: String,
}

impl Source {
    /// The line holding byte `at`, as `line N: text`.
    fn line_at(&self, at: usize) -> String {
        let number = self.text[..at].matches('\n').count() + 1;
        let line = self.text.lines().nth(number - 1).unwrap_or_default().trim();
        format!("line {number}: {line}")
    }
}

/// Every `.rs` file of `crates/{krate}/src` that is compiled outside tests: files of modules
/// declared `#[cfg(test)] mod name;` are left out.
fn sources(root: &Path, krate: &str) -> Vec<Source> {
    let src = root.join("crates").join(krate).join("src");
    let mut files = Vec::new();
    collect_rs(&src, &mut files);
    files.sort();
    let mut sources = Vec::new();
    let mut test_only: Vec<PathBuf> = Vec::new();
    for file in files {
        let text = read(&file);
        let (code, test_modules) = strip_test_items(&code_only(&text));
        // A file's child modules live beside it (`lib.rs`, `main.rs`, `mod.rs`) or in the
        // directory named after it.
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let parent = file.parent().expect("a directory").to_owned();
        let children = if matches!(stem, "lib" | "main" | "mod") { parent } else { parent.join(stem) };
        for name in test_modules {
            test_only.push(children.join(format!("{name}.rs")));
            test_only.push(children.join(name));
        }
        let path = file.strip_prefix(root).expect("under the root").to_string_lossy().replace('\\', "/");
        sources.push((file, Source { path, text, code }));
    }
    assert!(!sources.is_empty(), "no sources in {}", src.display());
    sources.into_iter().filter(|(file, _)| !test_only.iter().any(|t| file.starts_with(t))).map(|(_, s)| s).collect()
}

fn collect_rs(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rs(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Rust source with comments and the contents of string and character literals blanked
/// (newlines kept, every other byte of them a space), so what is left is code at the same
/// offsets: a search finds only code, and braces balance.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for byte in &mut out[from..to] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j.min(b.len()));
                i = j + 1;
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{..}', '\''), or a lifetime or label ('a).
                let end = if b.get(i + 1) == Some(&b'\\') {
                    b[i + 3..].iter().position(|&c| c == b'\'').map(|n| i + 3 + n)
                } else {
                    let width = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    (b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 1 + width)
                };
                match end {
                    Some(end) => {
                        blank(&mut out, i + 1, end);
                        i = end + 1;
                    }
                    None => i += 1,
                }
            }
            c if is_ident_start(c) => {
                let word = identifier_at(text, i);
                let after = i + word.len();
                // Raw strings: r"…", r#"…"#, br"…", cr#"…"#.
                let hashes = b[after..].iter().take_while(|&&c| c == b'#').count();
                if matches!(word.as_str(), "r" | "br" | "cr") && b.get(after + hashes) == Some(&b'"') {
                    let open = after + hashes + 1;
                    let close = format!("\"{}", "#".repeat(hashes));
                    let end = text[open..].find(&close).map_or(b.len(), |n| open + n);
                    blank(&mut out, open, end);
                    i = end + close.len();
                } else {
                    i = after;
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, by spaces")
}

/// `code` without the items marked `#[cfg(test)]` (blanked), and the names of the modules so
/// declared in a file of their own (`#[cfg(test)] mod fuzz;`).
fn strip_test_items(code: &str) -> (String, Vec<String>) {
    let mut out = code.as_bytes().to_vec();
    let mut modules = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        let end = item_end(code, start);
        let item = code[start + "#[cfg(test)]".len()..end].trim();
        if let Some(name) = item.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) {
            modules.push(name.trim().to_owned());
        }
        for byte in &mut out[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        from = end;
    }
    (String::from_utf8(out).expect("only ASCII bytes were replaced, by spaces"), modules)
}

/// Where the item whose attributes start at `start` ends: after its first `;` outside
/// brackets, or after the braces of its body, whichever comes first.
fn item_end(code: &str, start: usize) -> usize {
    let b = code.as_bytes();
    let mut nesting = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' => nesting += 1,
            b')' | b']' => nesting = nesting.saturating_sub(1),
            b';' if nesting == 0 => return i + 1,
            b'{' if nesting == 0 => return matching_brace(code, i) + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// The `}` that closes the `{` at `open`.
fn matching_brace(code: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, c) in code.bytes().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// An inherent `impl` block: the type it is for and its body (between the braces).
struct ImplBlock<'a> {
    self_type: String,
    body: &'a str,
}

/// The inherent `impl` blocks of `code` (`impl Store {`, `impl<'a> Tx<'a> {`); trait impls are
/// left out.
fn impl_blocks(code: &str) -> Vec<ImplBlock<'_>> {
    let mut blocks = Vec::new();
    for at in words(code, "impl") {
        let Some(open) = code[at..].find('{').map(|n| at + n) else { continue };
        let header = code[at + "impl".len()..open].trim();
        if header.contains(" for ") || header.contains(';') {
            continue;
        }
        // Past the impl's own generics: `<'a> Tx<'a>` → `Tx<'a>`.
        let header = if header.starts_with('<') { header[generics_end(header)..].trim_start() } else { header };
        let self_type = identifier_at(header, 0);
        if self_type.is_empty() {
            continue;
        }
        blocks.push(ImplBlock { self_type, body: &code[open + 1..matching_brace(code, open)] });
    }
    blocks
}

/// Just past the `>` that closes the `<` starting `header`.
fn generics_end(header: &str) -> usize {
    let mut depth = 0usize;
    for (i, c) in header.bytes().enumerate() {
        match c {
            b'<' => depth += 1,
            b'>' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    header.len()
}

/// The attributes (and blanked doc comments) right before the item at `at`: back to the end of
/// the previous item or the start of the block.
fn attributes_before(body: &str, at: usize) -> &str {
    let b = body.as_bytes();
    let mut nesting = 0usize;
    let mut i = at;
    while i > 0 {
        match b[i - 1] {
            b']' | b')' => nesting += 1,
            b'[' | b'(' => nesting = nesting.saturating_sub(1),
            b';' | b'{' | b'}' if nesting == 0 => break,
            _ => {}
        }
        i -= 1;
    }
    &body[i..at]
}

/// Byte offsets of `pattern` in `code` not preceded by an identifier character.
fn occurrences(code: &str, pattern: &str) -> Vec<usize> {
    code.match_indices(pattern)
        .map(|(at, _)| at)
        .filter(|&at| !code[..at].bytes().next_back().is_some_and(is_ident_char))
        .collect()
}

/// Byte offsets of `word` in `code` as a whole identifier.
fn words(code: &str, word: &str) -> Vec<usize> {
    occurrences(code, word)
        .into_iter()
        .filter(|&at| !code.as_bytes().get(at + word.len()).copied().is_some_and(is_ident_char))
        .collect()
}

/// The identifier starting at `at` (after any whitespace), or "".
fn identifier_at(code: &str, at: usize) -> String {
    let rest = code[at..].trim_start();
    rest.bytes().take_while(|&c| is_ident_char(c)).map(char::from).collect()
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

// ---------------------------------------------------------------------------------------------
// Reading the manifests (no TOML parser in this package: the manifests are simple)

/// `members = [...]` of the workspace manifest.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = read(&root.join("Cargo.toml"));
    let line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("workspace members");
    line.split('"').skip(1).step_by(2).map(str::to_owned).collect()
}

/// `[workspace.dependencies]`: each key and the package it names (`package = "…"` or the key).
fn workspace_aliases(root: &Path) -> BTreeMap<String, String> {
    let manifest = read(&root.join("Cargo.toml"));
    let mut aliases = BTreeMap::new();
    let mut inside = false;
    for line in manifest.lines().map(without_comment) {
        if line.starts_with('[') {
            inside = line == "[workspace.dependencies]";
        } else if inside {
            if let Some((key, value)) = line.split_once('=') {
                let key = key.trim().trim_matches('"').to_owned();
                aliases.insert(key.clone(), package_in(value).unwrap_or(key));
            }
        }
    }
    aliases
}

/// A member manifest: its package name and its dependencies by table.
struct Manifest {
    package: String,
    /// (table, package): tables `dependencies`, `dev-dependencies`, `build-dependencies`, also
    /// under `[target.….…]`.
    dependencies: Vec<(String, String)>,
}

impl Manifest {
    fn read(path: &Path, aliases: &BTreeMap<String, String>) -> Self {
        let mut package = String::new();
        let mut dependencies = Vec::new();
        let mut section = String::new();
        // `[dependencies.foo]`: the dependency whose keys follow.
        let mut table_of: Option<(String, String)> = None;
        for line in read(path).lines().map(without_comment) {
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = header.trim().to_owned();
                table_of = None;
                if let Some((table, key)) = dependency_table(&section) {
                    let name = aliases.get(&key).cloned().unwrap_or_else(|| key.clone());
                    dependencies.push((table.clone(), name));
                    table_of = Some((table, key));
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let key = key.trim().trim_matches('"');
            if section == "package" && key == "name" {
                package = value.trim().trim_matches('"').to_owned();
            } else if let Some((table, _)) = &table_of {
                if key == "package" {
                    let renamed = value.trim().trim_matches('"').to_owned();
                    dependencies.pop();
                    dependencies.push((table.clone(), renamed));
                }
            } else if let Some(table) = dependencies_kind(&section) {
                // `foo = "1"`, `foo = { … }`, `foo.workspace = true`
                let name = key.split('.').next().unwrap_or(key).trim_matches('"').to_owned();
                let name = package_in(value).or_else(|| aliases.get(&name).cloned()).unwrap_or(name);
                dependencies.push((table, name));
            }
        }
        assert!(!package.is_empty(), "{}: no package name", path.display());
        Self { package, dependencies }
    }

    /// Every dependency with its table.
    fn all(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.dependencies.iter().map(|(table, name)| (table.as_str(), name.clone()))
    }

    /// What the crate ships with: normal and build dependencies.
    fn shipped(&self) -> impl Iterator<Item = String> + '_ {
        self.dependencies.iter().filter(|(table, _)| table != "dev-dependencies").map(|(_, name)| name.clone())
    }
}

/// The kind of a dependency table header (`dependencies`, `target.'cfg(unix)'.dev-dependencies`),
/// or `None` for other sections.
fn dependencies_kind(section: &str) -> Option<String> {
    let last = section.rsplit('.').next().unwrap_or(section);
    matches!(last, "dependencies" | "dev-dependencies" | "build-dependencies").then(|| last.to_owned())
}

/// `[dependencies.foo]` (or under a target): the table kind and the key `foo`.
fn dependency_table(section: &str) -> Option<(String, String)> {
    let (table, key) = section.rsplit_once('.')?;
    let kind = dependencies_kind(table)?;
    Some((kind, key.trim_matches('"').to_owned()))
}

/// `package = "…"` inside an inline table.
fn package_in(value: &str) -> Option<String> {
    let at = value.find("package")?;
    let rest = value[at + "package".len()..].trim_start().strip_prefix('=')?;
    Some(rest.trim_start().strip_prefix('"')?.split('"').next()?.to_owned())
}

/// A manifest line without its comment, trimmed.
fn without_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return line[..i].trim(),
            _ => {}
        }
    }
    line.trim()
}
