//! `Limits`: how costly one search may be (issue 13: no single request may crash, starve or
//! exhaust the service). `check` judges the raw parameters before anything is parsed, so that
//! nothing recurses, allocates or compiles SQL in proportion to unbounded input: chains and
//! `_has` are counted in the key's text (one pass, no recursion) before the parser follows them.
//!
//! Each refusal is a `too-costly` issue naming the limit (`max-chain-depth`, …) and, where one
//! parameter is at fault, that parameter in `expression`.

use crate::issue::{Issue, IssueCode};

/// The bounds of one search request. The defaults are safe for a public endpoint; the service
/// makes each configurable (`CAREPLAN_SEARCH_*`) within `Limits::CEILING`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Links of a forward chain (`part-of:Task.part-of:Task.status` has 2).
    pub max_chain_depth: usize,
    /// Nested `_has` (`_has:Task:part-of:_has:Task:part-of:status` has 2).
    pub max_has_depth: usize,
    /// Rounds of `_include:iterate` / `_revinclude:iterate` after the first (a bound, not a
    /// refusal: the client names no depth, so the rounds simply stop there).
    pub max_include_depth: usize,
    /// Parameters in one request, result parameters (`_count`, `_include`, …) included.
    pub max_params: usize,
    /// Comma-separated values of one parameter (its OR list).
    pub max_values_per_param: usize,
    /// Values of all parameters together.
    pub max_values: usize,
    /// Bytes of all names and values together (the decoded query or form body).
    pub max_query_bytes: usize,
}

impl Default for Limits {
    /// Chains and `_has` of 4 links: HAPI FHIR allows a handful of chain links, and every
    /// search this service's clients make needs at most 2 (a Task's plan's subject). 64
    /// parameters of at most 100 values, 1,000 values and 16 KiB in all: each value is one or
    /// two bound SQL arguments and one term of an `OR`, far under SQLite's expression depth
    /// (1,000) and argument count (32,766) and PostgreSQL's 65,535 arguments.
    fn default() -> Self {
        Self {
            max_chain_depth: 4,
            max_has_depth: 4,
            max_include_depth: 4,
            max_params: 64,
            max_values_per_param: 100,
            max_values: 1000,
            max_query_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    /// The most any setting may allow: past these, the compiled SQL itself fails on SQLite
    /// ("Expression tree is too large", "too many SQL variables").
    pub const CEILING: Limits = Limits {
        max_chain_depth: 8,
        max_has_depth: 8,
        max_include_depth: 16,
        max_params: 256,
        max_values_per_param: 500,
        max_values: 5000,
        max_query_bytes: 1024 * 1024,
    };

    /// These limits, each brought within `CEILING` (and at least 1, except the depths).
    pub fn capped(self) -> Self {
        let c = Self::CEILING;
        Self {
            max_chain_depth: self.max_chain_depth.min(c.max_chain_depth),
            max_has_depth: self.max_has_depth.min(c.max_has_depth),
            max_include_depth: self.max_include_depth.min(c.max_include_depth),
            max_params: self.max_params.clamp(1, c.max_params),
            max_values_per_param: self.max_values_per_param.clamp(1, c.max_values_per_param),
            max_values: self.max_values.clamp(1, c.max_values),
            max_query_bytes: self.max_query_bytes.clamp(256, c.max_query_bytes),
        }
    }

    /// Refuse `pairs` when they exceed a limit: the request as a whole first (count, bytes),
    /// then each parameter (values, chain and `_has` depth). One issue: the first exceeded.
    pub fn check(&self, pairs: &[(String, String)]) -> Result<(), Issue> {
        if pairs.len() > self.max_params {
            return Err(Issue::general(
                IssueCode::TooCostly,
                format!("the search has {} parameters; the limit max-params is {}", pairs.len(), self.max_params),
            ));
        }
        let bytes: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        if bytes > self.max_query_bytes {
            return Err(Issue::general(
                IssueCode::TooCostly,
                format!("the search is {bytes} bytes long; the limit max-query-bytes is {}", self.max_query_bytes),
            ));
        }
        let mut total = 0usize;
        for (key, value) in pairs {
            let name = shown(key);
            let values = value_count(value);
            if values > self.max_values_per_param {
                return Err(too_costly(
                    &name,
                    format!(
                        "{name} has {values} values; the limit max-values-per-param is {}",
                        self.max_values_per_param
                    ),
                ));
            }
            total += values;
            if total > self.max_values {
                return Err(too_costly(
                    &name,
                    format!(
                        "the search has more than {} values; the limit max-values is reached at {name}",
                        self.max_values
                    ),
                ));
            }
            let (chain, has) = depths(key);
            if chain > self.max_chain_depth {
                return Err(too_costly(
                    &name,
                    format!("{name} chains {chain} references; the limit max-chain-depth is {}", self.max_chain_depth),
                ));
            }
            if has > self.max_has_depth {
                return Err(too_costly(
                    &name,
                    format!("{name} nests _has {has} deep; the limit max-has-depth is {}", self.max_has_depth),
                ));
            }
        }
        Ok(())
    }
}

fn too_costly(name: &str, diagnostics: String) -> Issue {
    Issue::error(IssueCode::TooCostly, name, diagnostics)
}

/// A parameter name as an issue shows it: at most 64 characters (a refused key may be 30 KB).
fn shown(key: &str) -> String {
    match key.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &key[..at]),
        None => key.to_owned(),
    }
}

/// The number of comma-separated values (an escaped `\,` does not separate).
fn value_count(value: &str) -> usize {
    let mut count = 1;
    let mut escaped = false;
    for b in value.bytes() {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b',') => count += 1,
            _ => {}
        }
    }
    count
}

/// Chain links (`.`) and `_has:` prefixes in a parameter name, counted without parsing it.
pub(crate) fn depths(key: &str) -> (usize, usize) {
    (key.bytes().filter(|b| *b == b'.').count(), key.matches("_has:").count())
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

    /// `query` is refused with a too-costly issue whose diagnostics name `limit` and whose
    /// expression is `expression`; `None` as the limit: accepted.
    fn check(query: &str, expect: Option<(&str, Option<&str>)>) {
        let small = Limits {
            max_chain_depth: 2,
            max_has_depth: 1,
            max_include_depth: 1,
            max_params: 4,
            max_values_per_param: 3,
            max_values: 5,
            max_query_bytes: 300,
        };
        let got = small.check(&pairs(query));
        match (got, expect) {
            (Ok(()), None) => {}
            (Err(issue), Some((limit, expression))) => {
                assert_eq!(issue.code, IssueCode::TooCostly, "{query}");
                assert!(issue.diagnostics.contains(limit), "{query}: {}", issue.diagnostics);
                assert_eq!(issue.expression.as_deref(), expression, "{query}");
            }
            (got, expect) => panic!("{query}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn each_limit_refuses_what_exceeds_it_and_names_itself() {
        check("status=a,b,c&_id=x", None);
        check("part-of:Task.part-of:Task.status=x", None);
        check(
            "part-of:Task.part-of:Task.part-of:Task.status=x",
            Some(("max-chain-depth", Some("part-of:Task.part-of:Task.part-of:Task.status"))),
        );
        check("_has:Task:part-of:status=x", None);
        check(
            "_has:Task:part-of:_has:Task:part-of:status=x",
            Some(("max-has-depth", Some("_has:Task:part-of:_has:Task:part-of:status"))),
        );
        check("status=a,b,c,d", Some(("max-values-per-param", Some("status"))));
        check("status=a\\,b\\,c\\,d", None);
        check("status=a,b,c&_id=d,e,f", Some(("max-values", Some("_id"))));
        check("a=1&b=2&c=3&d=4&e=5", Some(("max-params", None)));
        check(&format!("_id={}", "x".repeat(400)), Some(("max-query-bytes", None)));
    }

    #[test]
    fn a_huge_key_is_judged_in_one_pass_and_shown_shortened() {
        let key = "part-of:Task.".repeat(2400) + "status";
        let limits = Limits { max_query_bytes: Limits::CEILING.max_query_bytes, ..Limits::default() };
        let issue = limits.check(&[(key, "requested".into())]).expect_err("too deep");
        assert!(issue.diagnostics.contains("chains 2400 references"), "{}", issue.diagnostics);
        assert!(issue.expression.is_some_and(|e| e.chars().count() == 65));
    }

    #[test]
    fn settings_are_capped_at_the_ceiling() {
        let wild = Limits {
            max_chain_depth: 10_000,
            max_has_depth: 10_000,
            max_include_depth: 10_000,
            max_params: 0,
            max_values_per_param: usize::MAX,
            max_values: 0,
            max_query_bytes: 0,
        };
        let capped = wild.capped();
        assert_eq!(capped.max_chain_depth, Limits::CEILING.max_chain_depth);
        assert_eq!(capped.max_params, 1);
        assert_eq!(capped.max_values_per_param, Limits::CEILING.max_values_per_param);
        assert_eq!(Limits::default().capped(), Limits::default());
    }
}
