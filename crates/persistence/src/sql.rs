//! A small SQL text builder with bound values: `bind` appends `?` (SQLite) or `$n` (PostgreSQL)
//! and keeps the value, so every value reaches the database as a parameter, never as text.

use sea_orm::{DbBackend, Statement, Value};

pub(crate) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
    /// Where each statement after the first begins (`then`).
    breaks: Vec<usize>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self { backend, text: String::with_capacity(256), values: Vec::new(), breaks: Vec::new() }
    }

    /// Begin another statement that runs in the same round trip as the ones before: on SQLite
    /// the statements are sent together (`;`-separated, placeholders bound in order), on
    /// PostgreSQL all but the last become data-modifying CTEs of the last. Their order of
    /// effect is then unspecified on PostgreSQL (one snapshot): only statements that do not
    /// read each other's rows belong in one script.
    pub(crate) fn then(&mut self) -> &mut Self {
        if !self.text.is_empty() && self.breaks.last() != Some(&self.text.len()) {
            self.breaks.push(self.text.len());
        }
        self
    }

    /// The backend the text is written for.
    pub(crate) fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Whether nothing was written yet.
    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Append SQL text (never a value).
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder bound to `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.values.len().to_string());
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// Append placeholders for `values`, comma-separated.
    pub(crate) fn bind_list<V: Into<Value>>(&mut self, values: impl IntoIterator<Item = V>) -> &mut Self {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self
    }

    pub(crate) fn statement(self) -> Statement {
        let text = if self.breaks.is_empty() { self.text } else { joined(self.backend, &self.text, &self.breaks) };
        Statement::from_sql_and_values(self.backend, text, self.values)
    }
}

/// Several statements as one (see `Sql::then`).
fn joined(backend: DbBackend, text: &str, breaks: &[usize]) -> String {
    let mut pieces = Vec::with_capacity(breaks.len() + 1);
    let mut start = 0;
    for &end in breaks {
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces.push(&text[start..]);
    match backend {
        DbBackend::Postgres => {
            let (last, first) = pieces.split_last().unwrap_or((&"", &[]));
            let mut out = String::with_capacity(text.len() + 16 * pieces.len());
            for (i, piece) in first.iter().enumerate() {
                out.push_str(if i == 0 { "WITH " } else { ", " });
                out.push_str(&format!("s{i} AS ({piece})"));
            }
            out.push(' ');
            out.push_str(last);
            out
        }
        _ => pieces.join("; "),
    }
}

/// Escape `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn like_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 4);
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_joined_by_then_run_as_one() {
        let script = |backend| {
            let mut sql = Sql::new(backend);
            sql.push("DELETE FROM a WHERE x = ").bind(1).then();
            sql.then().push("INSERT INTO b VALUES (").bind(2).push(")").then();
            sql.push("INSERT INTO c VALUES (").bind(3).push(")");
            sql.statement().to_string()
        };
        assert_eq!(
            script(DbBackend::Sqlite),
            "DELETE FROM a WHERE x = 1; INSERT INTO b VALUES (2); INSERT INTO c VALUES (3)"
        );
        assert_eq!(
            script(DbBackend::Postgres),
            "WITH s0 AS (DELETE FROM a WHERE x = 1), s1 AS (INSERT INTO b VALUES (2)) INSERT INTO c VALUES (3)"
        );
    }
}
