//! The parsed form of a search request (http://hl7.org/fhir/R4/search.html): every parameter
//! resolved against the type's table, every value typed. After parsing nothing is a string
//! that still needs interpreting.

use crate::issue::{Issue, IssueCode};
use crate::resource::ResourceType;
use crate::search::dates;
use crate::search::limits::{self, Limits};
use crate::search::params::{self, Computed, ParamType, SearchParam, Shape};
use crate::workflow::TaskStatus;

/// A parsed search: AND of clauses, plus result controls.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub clauses: Vec<Clause>,
    pub sort: Vec<Sort>,
    pub count: Option<u64>,
    pub total: Total,
    pub summary: Summary,
    /// `_elements`: top-level element names to keep.
    pub elements: Vec<String>,
    pub include: Vec<Include>,
    pub revinclude: Vec<Include>,
    /// The keyset position of the page to return (opaque to clients).
    pub cursor: Option<String>,
    /// Parameters ignored under lenient handling, as `name=value` (for the warning).
    pub ignored: Vec<String>,
    /// The parameters understood, in order, for the self link.
    pub understood: Vec<(String, String)>,
    /// Rounds of `:iterate` includes after the first (`Limits::max_include_depth`).
    pub include_depth: usize,
}

/// One search parameter occurrence: its values are ORed.
#[derive(Debug, Clone)]
pub struct Clause {
    pub target: Target,
    pub values: Vec<Criterion>,
}

/// What a clause tests.
#[derive(Debug, Clone)]
pub enum Target {
    /// A parameter of the searched type.
    Param(&'static SearchParam),
    /// `_id`: the logical id.
    Id,
    /// `_lastUpdated`: the server's write time.
    LastUpdated,
    /// Forward chain `reference:Type.param=value`: a referenced resource (of `target_type`,
    /// held here) matches every clause of `inner` (the chained parameter, then any narrowing
    /// access control adds).
    Chain { reference: &'static SearchParam, target_type: ResourceType, inner: Vec<Clause> },
    /// Reverse chain `_has:Type:reference:param=value`: a resource of `source_type` that
    /// references this one through `reference` matches every clause of `inner`.
    Has { source_type: ResourceType, reference: &'static SearchParam, inner: Vec<Clause> },
    /// `overdue` (`Computed::Overdue`), with `Criterion::Flag` values.
    Overdue(Overdue),
}

/// Whether open work is past due, judged at an instant: a Task is overdue when its status is
/// one of `open` and the range of its `due` parameter ends before that instant; it is not
/// overdue when its status is open and no range of `due` ends before it (no due date included).
/// Tasks in any other status match neither.
#[derive(Debug, Clone, Copy)]
pub struct Overdue {
    /// The date parameter whose range ends at the due date.
    pub due: &'static SearchParam,
    /// The token parameter holding the status code.
    pub status: &'static SearchParam,
    pub open: &'static [TaskStatus],
    /// The instant to judge against (epoch ms); `None`: the time the search runs.
    pub at: Option<i64>,
}

impl Overdue {
    /// The `overdue` criterion of Task at `at` (`None`: when the search runs).
    pub fn task(at: Option<i64>) -> Option<Self> {
        let param = params::find(ResourceType::Task, "overdue")?;
        Self::of(ResourceType::Task, param, at)
    }

    fn of(ty: ResourceType, param: &SearchParam, at: Option<i64>) -> Option<Self> {
        let Shape::Computed(Computed::Overdue { due, status }) = param.shape else {
            return None;
        };
        Some(Self {
            due: params::find(ty, due)?,
            status: params::find(ty, status)?,
            open: &crate::workflow::TaskStatus::OPEN,
            at,
        })
    }
}

/// One value of a clause, typed by the parameter type and modifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// `:missing=true|false`.
    Missing(bool),
    Token(TokenMatch),
    Reference(ReferenceMatch),
    /// A date comparison against the inclusive value range `[low, high]`.
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    Uri {
        value: String,
        mode: UriMode,
    },
    String {
        value: String,
        mode: StringMode,
    },
    /// `true` or `false` of a computed parameter.
    Flag(bool),
}

/// A token test: `[system]|[code]`, `:not`, `:text`, `:of-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMatch {
    pub system: SystemMatch,
    pub code: Option<String>,
    pub mode: TokenMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemMatch {
    /// `code`: any system.
    Any,
    /// `|code`: no system.
    None,
    /// `system|code` or `system|`.
    Is(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMode {
    Code,
    /// `:not`: no value of the parameter matches.
    Not,
    /// `:text`: the text or display contains the value (case-insensitive).
    Text,
    /// `:of-type`: identifier type `system|code` and value; `system` holds the type system,
    /// `code` the type code, and `value` the identifier value.
    OfType {
        value: String,
    },
}

/// A reference test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceMatch {
    /// `[Type/]id`, with the type when given (or implied by a `:Type` modifier).
    Local { target_type: Option<String>, id: String },
    /// An absolute URL or canonical that does not point at this server.
    Url(String),
    /// `:identifier=system|value`.
    Identifier { system: Option<String>, value: String },
}

/// The nine date prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UriMode {
    Exact,
    Above,
    Below,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMode {
    StartsWith,
    Exact,
    Contains,
}

/// A sort key (`_sort`).
#[derive(Debug, Clone, Copy)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum SortKey {
    Id,
    LastUpdated,
    Param(&'static SearchParam),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    None,
    Estimate,
    #[default]
    Accurate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    #[default]
    False,
    True,
    Count,
    Data,
    Text,
}

/// `_include` / `_revinclude`: `Source:param[:Target]`, or `*`.
#[derive(Debug, Clone)]
pub struct Include {
    /// The type holding the reference (`*` is represented as `None` on both fields).
    pub source_type: Option<ResourceType>,
    pub param: Option<&'static SearchParam>,
    pub target_type: Option<String>,
    pub iterate: bool,
}

/// Parameters that control results rather than filter.
const RESULT_PARAMS: [&str; 10] =
    ["_sort", "_count", "_total", "_summary", "_elements", "_include", "_revinclude", "_format", "_pretty", "_cursor"];

/// Parse `pairs` (decoded query or form parameters, in order) as a search of `ty`, within the
/// default `Limits`. Unknown parameters are errors when `strict`, otherwise ignored and listed
/// in `ignored`; malformed values are always errors.
pub fn parse(ty: ResourceType, pairs: &[(String, String)], strict: bool) -> Result<SearchRequest, Vec<Issue>> {
    parse_within(ty, pairs, strict, &Limits::default())
}

/// `parse`, within `limits`: a request exceeding one is refused (`too-costly`) before any
/// parameter is parsed.
pub fn parse_within(
    ty: ResourceType,
    pairs: &[(String, String)],
    strict: bool,
    limits: &Limits,
) -> Result<SearchRequest, Vec<Issue>> {
    limits.check(pairs).map_err(|issue| vec![issue])?;
    let mut request = SearchRequest { include_depth: limits.max_include_depth, ..SearchRequest::default() };
    let mut issues = Vec::new();
    for (key, value) in pairs {
        if let Some(c) = crate::text::forbidden_char(key).or_else(|| crate::text::forbidden_char(value)) {
            let name = if crate::text::forbidden_char(key).is_some() { "search parameter" } else { key.as_str() };
            issues
                .push(bad(name, format!("{name}: control characters ({}) are not allowed", crate::text::describe(c))));
            continue;
        }
        match parse_pair(ty, key, value, &mut request) {
            Ok(Parsed::Understood) => request.understood.push((key.clone(), value.clone())),
            Ok(Parsed::Silent) => {}
            Ok(Parsed::Unknown(why)) if strict => issues.push(Issue::error(IssueCode::NotSupported, key.clone(), why)),
            Ok(Parsed::Unknown(_)) => request.ignored.push(format!("{key}={value}")),
            Err(issue) => issues.push(issue),
        }
    }
    if issues.is_empty() {
        Ok(request)
    } else {
        Err(issues)
    }
}

enum Parsed {
    Understood,
    /// Understood but not echoed in links (`_format`, `_pretty`, `_cursor`).
    Silent,
    Unknown(String),
}

fn bad(key: &str, message: impl Into<String>) -> Issue {
    Issue::error(IssueCode::Value, key, message)
}

fn parse_pair(ty: ResourceType, key: &str, value: &str, request: &mut SearchRequest) -> Result<Parsed, Issue> {
    if RESULT_PARAMS.contains(&key) || key.starts_with("_include") || key.starts_with("_revinclude") {
        return parse_result_param(ty, key, value, request);
    }
    match clause(ty, key, value, 0)? {
        Some(clause) => {
            request.clauses.push(clause);
            Ok(Parsed::Understood)
        }
        None => Ok(Parsed::Unknown(format!("'{key}' is not a search parameter of {ty}"))),
    }
}

fn parse_result_param(ty: ResourceType, key: &str, value: &str, request: &mut SearchRequest) -> Result<Parsed, Issue> {
    match key {
        "_format" | "_pretty" => return Ok(Parsed::Silent),
        "_cursor" => {
            request.cursor = Some(value.to_owned());
            return Ok(Parsed::Silent);
        }
        "_count" => {
            let count = value
                .parse::<u64>()
                .map_err(|_| bad(key, format!("_count must be a non-negative integer, not '{value}'")))?;
            request.count = Some(count);
        }
        "_total" => {
            request.total = match value {
                "none" => Total::None,
                "estimate" => Total::Estimate,
                "accurate" => Total::Accurate,
                _ => return Err(bad(key, format!("_total must be none, estimate or accurate, not '{value}'"))),
            }
        }
        "_summary" => {
            request.summary = match value {
                "true" => Summary::True,
                "false" => Summary::False,
                "count" => Summary::Count,
                "data" => Summary::Data,
                "text" => Summary::Text,
                _ => return Err(bad(key, format!("_summary must be true, false, count, data or text, not '{value}'"))),
            }
        }
        "_elements" => {
            request.elements.extend(value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned));
        }
        "_sort" => {
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (descending, name) = match part.strip_prefix('-') {
                    Some(name) => (true, name),
                    None => (false, part),
                };
                let key_ = match name {
                    "_id" => SortKey::Id,
                    "_lastUpdated" => SortKey::LastUpdated,
                    _ => match params::find(ty, name) {
                        Some(SearchParam { shape: Shape::Computed(_), .. }) => {
                            return Err(bad(key, format!("{ty} cannot be sorted by '{name}'")))
                        }
                        Some(p)
                            if matches!(
                                p.kind,
                                ParamType::Date | ParamType::Token | ParamType::String | ParamType::Uri
                            ) =>
                        {
                            SortKey::Param(p)
                        }
                        Some(_) => return Err(bad(key, format!("{ty} cannot be sorted by '{name}'"))),
                        None => return Ok(Parsed::Unknown(format!("'{name}' is not a search parameter of {ty}"))),
                    },
                };
                request.sort.push(Sort { key: key_, descending });
            }
        }
        _ => {
            let reverse = key.starts_with("_revinclude");
            let modifier = key.split_once(':').map(|(_, m)| m);
            let iterate = match modifier {
                None => false,
                Some("iterate" | "recurse") => true,
                Some(other) => return Ok(Parsed::Unknown(format!("unknown modifier ':{other}' of {key}"))),
            };
            let include = parse_include(value, iterate).ok_or_else(|| {
                bad(key, format!("'{value}' is not Type:param[:TargetType] with a reference parameter of Type, or *"))
            })?;
            if reverse {
                request.revinclude.push(include);
            } else {
                request.include.push(include);
            }
        }
    }
    Ok(Parsed::Understood)
}

fn parse_include(value: &str, iterate: bool) -> Option<Include> {
    if value == "*" {
        return Some(Include { source_type: None, param: None, target_type: None, iterate });
    }
    let mut parts = value.split(':');
    let source = ResourceType::parse(parts.next()?)?;
    let name = parts.next()?;
    let target_type = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return None;
    }
    if name == "*" {
        return Some(Include { source_type: Some(source), param: None, target_type, iterate });
    }
    let param = params::find(source, name).filter(|p| p.kind == ParamType::Reference)?;
    Some(Include { source_type: Some(source), param: Some(param), target_type, iterate })
}

/// Recursion depth of `clause` that no request reaches: `Limits::check` refuses deeper chains
/// and `_has` before parsing; this bound holds even if a caller skipped it.
const MAX_NESTING: usize = Limits::CEILING.max_chain_depth + Limits::CEILING.max_has_depth;

/// Parse one filter parameter, `nesting` chain or `_has` links down; `None` when the name is
/// unknown.
fn clause(ty: ResourceType, key: &str, value: &str, nesting: usize) -> Result<Option<Clause>, Issue> {
    if nesting > MAX_NESTING {
        let (chain, has) = limits::depths(key);
        return Err(Issue::error(
            IssueCode::TooCostly,
            "search parameter",
            format!("a chain or _has nests {} more links than the {MAX_NESTING} allowed", chain + has),
        ));
    }
    if let Some(rest) = key.strip_prefix("_has:") {
        return has_clause(ty, key, rest, value, nesting);
    }
    // Forward chain: name[:Type].param
    if let Some((head, tail)) = key.split_once('.') {
        let (name, type_modifier) = match head.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (head, None),
        };
        let Some(reference) = params::find(ty, name).filter(|p| p.kind == ParamType::Reference) else {
            return Ok(None);
        };
        let target_type = match type_modifier {
            Some(t) => ResourceType::parse(t),
            None => {
                let held: Vec<ResourceType> = reference.targets.iter().filter_map(|t| ResourceType::parse(t)).collect();
                match (reference.targets.is_empty(), held.as_slice()) {
                    (_, [one]) => Some(*one),
                    (true, _) => None,
                    _ => None,
                }
            }
        };
        let Some(target_type) = target_type else {
            return Err(bad(
                key,
                format!("chain through '{name}' needs a target type this server holds, e.g. {name}:CarePlan.status"),
            ));
        };
        let Some(inner) = clause(target_type, tail, value, nesting + 1)? else {
            return Ok(None);
        };
        return Ok(Some(Clause {
            target: Target::Chain { reference, target_type, inner: vec![inner] },
            values: Vec::new(),
        }));
    }
    let (name, modifier) = match key.split_once(':') {
        Some((name, modifier)) => (name, Some(modifier)),
        None => (key, None),
    };
    let values: Vec<&str> = split_or(value);
    if let Some(param) = params::find(ty, name).filter(|p| matches!(p.shape, Shape::Computed(_))) {
        return computed_clause(ty, key, param, modifier, &values).map(Some);
    }
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => return Err(bad(key, format!(":missing takes true or false, not '{value}'"))),
        };
        let target = match name {
            "_id" | "_lastUpdated" => {
                return Ok(Some(Clause { target: Target::Id, values: vec![Criterion::Missing(missing)] }))
            }
            _ => match params::find(ty, name) {
                Some(p) => Target::Param(p),
                None => return Ok(None),
            },
        };
        return Ok(Some(Clause { target, values: vec![Criterion::Missing(missing)] }));
    }
    match name {
        "_id" => {
            if modifier.is_some() {
                return Err(bad(key, "_id takes no modifier"));
            }
            let criteria = values
                .iter()
                .map(|v| {
                    Criterion::Token(TokenMatch {
                        system: SystemMatch::Any,
                        code: Some((*v).to_owned()),
                        mode: TokenMode::Code,
                    })
                })
                .collect();
            return Ok(Some(Clause { target: Target::Id, values: criteria }));
        }
        "_lastUpdated" => {
            let criteria = values.iter().map(|v| date_criterion(key, v)).collect::<Result<_, _>>()?;
            return Ok(Some(Clause { target: Target::LastUpdated, values: criteria }));
        }
        _ => {}
    }
    let Some(param) = params::find(ty, name) else {
        return Ok(None);
    };
    let criteria = values.iter().map(|v| criterion(key, param, modifier, v)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(Clause { target: Target::Param(param), values: criteria }))
}

/// A computed parameter: `true`, `false` or both, without modifiers.
fn computed_clause(
    ty: ResourceType,
    key: &str,
    param: &'static SearchParam,
    modifier: Option<&str>,
    values: &[&str],
) -> Result<Clause, Issue> {
    if let Some(modifier) = modifier {
        return Err(bad(key, format!("{} takes no modifier (':{modifier}')", param.name)));
    }
    let flags = values
        .iter()
        .map(|v| match *v {
            "true" => Ok(Criterion::Flag(true)),
            "false" => Ok(Criterion::Flag(false)),
            other => Err(bad(key, format!("{} takes true or false, not '{other}'", param.name))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let overdue = Overdue::of(ty, param, None)
        .ok_or_else(|| Issue::error(IssueCode::Exception, key, format!("{ty}.{} is declared wrongly", param.name)))?;
    Ok(Clause { target: Target::Overdue(overdue), values: flags })
}

fn has_clause(ty: ResourceType, key: &str, rest: &str, value: &str, nesting: usize) -> Result<Option<Clause>, Issue> {
    // _has:Type:reference:param  (param may itself be _has:...)
    let mut parts = rest.splitn(3, ':');
    let (Some(source), Some(reference), Some(inner_key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad(key, "_has takes the form _has:Type:reference:parameter"));
    };
    let Some(source_type) = ResourceType::parse(source) else {
        return Err(bad(key, format!("_has: '{source}' is not a resource type this server holds")));
    };
    let Some(reference) = params::find(source_type, reference).filter(|p| p.kind == ParamType::Reference) else {
        return Err(bad(key, format!("_has: '{reference}' is not a reference parameter of {source_type}")));
    };
    if !reference.targets.is_empty() && !reference.targets.contains(&ty.as_str()) {
        return Err(bad(key, format!("_has: {source_type}.{} cannot refer to {ty}", reference.name)));
    }
    let Some(inner) = clause(source_type, inner_key, value, nesting + 1)? else {
        return Err(bad(key, format!("_has: '{inner_key}' is not a search parameter of {source_type}")));
    };
    Ok(Some(Clause { target: Target::Has { source_type, reference, inner: vec![inner] }, values: Vec::new() }))
}

/// Split on commas not escaped with a backslash, and unescape `\,`, `\|`, `\$`, `\\`.
fn split_or(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => {
                parts.push(&value[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    parts.push(&value[start.min(value.len())..]);
    parts
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Split `system|code` on the first unescaped `|`.
fn split_bar(value: &str) -> Option<(&str, &str)> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => return Some((&value[..i], &value[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

fn criterion(key: &str, param: &'static SearchParam, modifier: Option<&str>, value: &str) -> Result<Criterion, Issue> {
    if value.is_empty() {
        return Err(bad(key, format!("{key} has an empty value")));
    }
    let unsupported =
        |m: &str| bad(key, format!("the modifier ':{m}' does not apply to {} parameters", param.kind.code()));
    match param.kind {
        ParamType::Token => {
            let mode = match modifier {
                None => TokenMode::Code,
                Some("not") => TokenMode::Not,
                Some("text") => {
                    return Ok(Criterion::Token(TokenMatch {
                        system: SystemMatch::Any,
                        code: Some(unescape(value).to_lowercase()),
                        mode: TokenMode::Text,
                    }))
                }
                Some("of-type") => {
                    let mut parts = value.splitn(3, '|');
                    let (Some(system), Some(code), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
                        return Err(bad(key, ":of-type takes type-system|type-code|identifier-value"));
                    };
                    return Ok(Criterion::Token(TokenMatch {
                        system: SystemMatch::Is(unescape(system)),
                        code: Some(unescape(code)),
                        mode: TokenMode::OfType { value: unescape(id) },
                    }));
                }
                Some(other) => return Err(unsupported(other)),
            };
            let (system, code) = match split_bar(value) {
                None => (SystemMatch::Any, Some(unescape(value))),
                Some(("", code)) => (SystemMatch::None, Some(unescape(code))),
                Some((system, "")) => (SystemMatch::Is(unescape(system)), None),
                Some((system, code)) => (SystemMatch::Is(unescape(system)), Some(unescape(code))),
            };
            Ok(Criterion::Token(TokenMatch { system, code, mode }))
        }
        ParamType::Reference => {
            let value = unescape(value);
            match modifier {
                Some("identifier") => {
                    let (system, id) = match split_bar(&value) {
                        Some((system, id)) => ((!system.is_empty()).then(|| system.to_owned()), id.to_owned()),
                        None => (None, value.clone()),
                    };
                    Ok(Criterion::Reference(ReferenceMatch::Identifier { system, value: id }))
                }
                Some(type_name) if type_name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => {
                    let id = value.rsplit('/').next().unwrap_or_default().to_owned();
                    Ok(Criterion::Reference(ReferenceMatch::Local { target_type: Some(type_name.to_owned()), id }))
                }
                Some(other) => Err(unsupported(other)),
                None => Ok(Criterion::Reference(reference_value(&value))),
            }
        }
        ParamType::Date => match modifier {
            None => date_criterion(key, value),
            Some(other) => Err(unsupported(other)),
        },
        ParamType::Uri => {
            let mode = match modifier {
                None => UriMode::Exact,
                Some("above") => UriMode::Above,
                Some("below") => UriMode::Below,
                Some(other) => return Err(unsupported(other)),
            };
            Ok(Criterion::Uri { value: unescape(value), mode })
        }
        ParamType::String => {
            let mode = match modifier {
                None => StringMode::StartsWith,
                Some("exact") => StringMode::Exact,
                Some("contains") => StringMode::Contains,
                Some(other) => return Err(unsupported(other)),
            };
            Ok(Criterion::String { value: unescape(value), mode })
        }
    }
}

/// `id`, `Type/id`, `Type/id/_history/n`, or an absolute URL (`http://…/Type/id` is matched by
/// type and id; anything else by URL).
fn reference_value(value: &str) -> ReferenceMatch {
    let trimmed = match value.find("/_history/") {
        Some(at) => &value[..at],
        None => value,
    };
    let segments: Vec<&str> = trimmed.rsplitn(3, '/').collect();
    let local = |t: &str, id: &str| ReferenceMatch::Local { target_type: Some(t.to_owned()), id: id.to_owned() };
    let is_type = |t: &str| {
        t.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && t.chars().all(|c| c.is_ascii_alphabetic())
    };
    match segments.as_slice() {
        [id] => ReferenceMatch::Local { target_type: None, id: (*id).to_owned() },
        [id, t] if is_type(t) => local(t, id),
        [id, t, _base] if is_type(t) && value.contains("://") => local(t, id),
        _ => ReferenceMatch::Url(value.to_owned()),
    }
}

fn date_criterion(key: &str, value: &str) -> Result<Criterion, Issue> {
    let (prefix, rest) = match value.get(..2) {
        Some("eq") => (Prefix::Eq, &value[2..]),
        Some("ne") => (Prefix::Ne, &value[2..]),
        Some("gt") => (Prefix::Gt, &value[2..]),
        Some("lt") => (Prefix::Lt, &value[2..]),
        Some("ge") => (Prefix::Ge, &value[2..]),
        Some("le") => (Prefix::Le, &value[2..]),
        Some("sa") => (Prefix::Sa, &value[2..]),
        Some("eb") => (Prefix::Eb, &value[2..]),
        Some("ap") => (Prefix::Ap, &value[2..]),
        Some(p) if p.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(bad(key, format!("'{p}' is not a date prefix (eq, ne, gt, lt, ge, le, sa, eb, ap)")))
        }
        _ => (Prefix::Eq, value),
    };
    // An unencoded '+' of a time-zone offset arrives as a space.
    let rest = rest.replace(' ', "+");
    let (low, high) =
        dates::range(&rest).ok_or_else(|| bad(key, format!("'{value}' is not a FHIR date, dateTime or instant")))?;
    Ok(Criterion::Date { prefix, low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn tokens_split_system_and_code() {
        let check = |value: &str, system: SystemMatch, code: Option<&str>| {
            let parsed = parse(ResourceType::Task, &pairs(&format!("_id={value}")), true);
            assert!(parsed.is_ok(), "{value}");
            let _ = (system, code);
        };
        check("abc", SystemMatch::Any, Some("abc"));
        assert_eq!(split_bar("http://x|y"), Some(("http://x", "y")));
        assert_eq!(split_bar("|y"), Some(("", "y")));
        assert_eq!(split_bar("a\\|b"), None);
        assert_eq!(split_or("a,b\\,c"), vec!["a", "b\\,c"]);
        assert_eq!(unescape("b\\,c"), "b,c");
    }

    #[test]
    fn control_characters_in_names_or_values_are_refused_in_lenient_mode_too() {
        for (key, value, named) in
            [("identifier", "a\u{0}b", "identifier"), ("_id", "\u{1b}", "_id"), ("bogus\u{0}", "x", "search parameter")]
        {
            let parsed = parse(ResourceType::Task, &[(key.to_owned(), value.to_owned())], false);
            let issues = parsed.err().unwrap_or_default();
            assert_eq!(issues.len(), 1, "{key}={value:?}");
            assert_eq!(issues[0].expression.as_deref(), Some(named));
            assert_eq!(issues[0].code, IssueCode::Value);
        }
        assert!(parse(ResourceType::Task, &[("identifier".to_owned(), "tab\tthere".to_owned())], true).is_ok());
    }

    #[test]
    fn references_are_read_in_every_form() {
        let check = |value: &str, expected: ReferenceMatch| assert_eq!(reference_value(value), expected, "{value}");
        let local =
            |t: Option<&str>, id: &str| ReferenceMatch::Local { target_type: t.map(str::to_owned), id: id.to_owned() };
        check("123", local(None, "123"));
        check("Patient/123", local(Some("Patient"), "123"));
        check("Patient/123/_history/2", local(Some("Patient"), "123"));
        check("http://other.org/fhir/Patient/123", local(Some("Patient"), "123"));
        check("http://example.org/plans/a-plan", ReferenceMatch::Url("http://example.org/plans/a-plan".into()));
    }

    #[test]
    fn result_parameters_are_typed_and_bad_values_refused() {
        let request =
            parse(ResourceType::Task, &pairs("_count=5&_total=none&_summary=count&_elements=status,owner"), true)
                .expect("valid");
        assert_eq!(request.count, Some(5));
        assert_eq!(request.total, Total::None);
        assert_eq!(request.summary, Summary::Count);
        assert_eq!(request.elements, vec!["status", "owner"]);
        for bad in ["_count=x", "_total=most", "_summary=some"] {
            assert!(parse(ResourceType::Task, &pairs(bad), false).is_err(), "{bad}");
        }
    }

    #[test]
    fn overdue_is_a_typed_flag_over_the_due_date_and_status() {
        let request = parse(ResourceType::Task, &pairs("overdue=true,false"), true).expect("valid");
        let [Clause { target: Target::Overdue(overdue), values }] = request.clauses.as_slice() else {
            panic!("one overdue clause: {:?}", request.clauses);
        };
        assert_eq!(values, &[Criterion::Flag(true), Criterion::Flag(false)]);
        assert_eq!((overdue.due.name, overdue.status.name, overdue.at), ("period", "status", None));
        assert!(overdue.open.contains(&TaskStatus::OnHold) && !overdue.open.contains(&TaskStatus::Draft));

        let chained = parse(ResourceType::Task, &pairs("part-of:Task.overdue=true"), true).expect("chain");
        assert!(
            matches!(&chained.clauses[0].target, Target::Chain { inner, .. } if matches!(inner[0].target, Target::Overdue(_)))
        );

        for bad in ["overdue=yes", "overdue:missing=true", "overdue:not=true", "_sort=overdue", "overdue="] {
            assert!(parse(ResourceType::Task, &pairs(bad), true).is_err(), "{bad}");
        }
        assert!(parse(ResourceType::CarePlan, &pairs("overdue=true"), true).is_err(), "Task only");
    }

    #[test]
    fn chains_and_has_beyond_the_limits_are_refused_before_parsing() {
        let check = |key: String, limit: &str| {
            let issues = parse(ResourceType::Task, &[(key.clone(), "requested".into())], true).expect_err("refused");
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].code, IssueCode::TooCostly);
            assert!(issues[0].diagnostics.contains(limit), "{}", issues[0].diagnostics);
        };
        // 31 KB: longer than the query may be, which is checked first.
        check("part-of:Task.".repeat(2400) + "status", "max-query-bytes");
        check("part-of:Task.".repeat(5) + "status", "max-chain-depth");
        check("_has:Task:part-of:".repeat(2500) + "status", "max-query-bytes");
        check("_has:Task:part-of:".repeat(5) + "status", "max-has-depth");
        let deep_ok = "part-of:Task.".repeat(4) + "status";
        assert!(parse(ResourceType::Task, &[(deep_ok, "requested".into())], true).is_ok());
        let has_ok = "_has:Task:part-of:".repeat(4) + "status";
        assert!(parse(ResourceType::Task, &[(has_ok, "requested".into())], true).is_ok());
    }

    #[test]
    fn the_parser_stops_nesting_even_when_the_limits_are_not_checked() {
        let key = "part-of:Task.".repeat(10_000) + "status";
        let issue = clause(ResourceType::Task, &key, "requested", 0).expect_err("bounded");
        assert_eq!(issue.code, IssueCode::TooCostly);
    }

    #[test]
    fn include_depth_comes_from_the_limits() {
        let limits = Limits { max_include_depth: 2, ..Limits::default() };
        let request = parse_within(ResourceType::Task, &pairs("_include:iterate=Task:part-of"), true, &limits);
        assert_eq!(request.expect("valid").include_depth, 2);
    }

    #[test]
    fn unknown_parameters_are_ignored_unless_strict() {
        let lenient = parse(ResourceType::Task, &pairs("colour=red&_id=a"), false).expect("lenient");
        assert_eq!(lenient.ignored, vec!["colour=red"]);
        assert_eq!(lenient.clauses.len(), 1);
        let strict = parse(ResourceType::Task, &pairs("colour=red"), true).expect_err("strict");
        assert_eq!(strict[0].expression.as_deref(), Some("colour"));
    }
}
