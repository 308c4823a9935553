//! Job-file variables: `${NAME}` and `${NAME:-default}` inside string literals.
//!
//! A job names what changes between runs (input and output directories, a
//! broker) as variables, given by `--set NAME=value` or the environment.
//! They are replaced in the tokens before parsing, so positions in messages
//! stay true. [`expand`] is the rule for one piece of text; [`substitute`]
//! applies it to a job's string literals and checks what the result means:
//!
//! - a reference must be closed (`${OUT/x` is an error, not a directory
//!   named `${OUT`), and a default is plain text (`${X:-${Y}}` is an error:
//!   nesting is not supported, rather than half-expanded);
//! - a path option (`path`, and any option named `*.path` such as
//!   `sluice.late-data.path`) whose written value starts with variables that
//!   are all empty, followed by `/`, would move the path to the filesystem
//!   root (`${OUT:-}/tumble` is `/tumble`): refused, naming the variable.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::{Result, SluiceError};

/// Text with its variables replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub text: String,
    /// When the text starts with variables that were all empty, followed by
    /// written text that starts with `/`: the first of those variables. The
    /// text then starts at the filesystem root only because it was empty.
    pub rooted_by_empty: Option<String>,
}

/// Why a text's variables cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableError {
    /// `${NAME}` without a default, and `NAME` is not set.
    Unset(String),
    /// A `${` with no `}` after it.
    Unterminated,
    /// A `${` inside a reference, as in `${X:-${Y}}`.
    Nested,
}

/// Expands the variables in `text`.
pub fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expansion, VariableError> {
    let mut out = String::with_capacity(text.len());
    // The first variable that was empty while nothing had been written yet.
    let mut first_empty: Option<String> = None;
    let mut rooted_by_empty = None;
    let mut rest = text;
    loop {
        let (literal, reference) = match rest.find("${") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        if out.is_empty() && literal.starts_with('/') {
            rooted_by_empty = first_empty.clone();
        }
        out.push_str(literal);
        let Some(after) = reference else {
            break;
        };
        let Some(close) = after.find('}') else {
            return Err(VariableError::Unterminated);
        };
        let body = &after[..close];
        if body.contains("${") {
            return Err(VariableError::Nested);
        }
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        let value = lookup(name)
            .or_else(|| default.map(str::to_string))
            .ok_or_else(|| VariableError::Unset(name.to_string()))?;
        if value.is_empty() && out.is_empty() && first_empty.is_none() {
            first_empty = Some(name.to_string());
        }
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    Ok(Expansion {
        text: out,
        rooted_by_empty,
    })
}

/// Replaces the variables in a job's string literals; `source_name` names
/// the job file in messages.
pub fn substitute(
    source_name: &str,
    mut tokens: Vec<TokenWithSpan>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<TokenWithSpan>> {
    for i in 0..tokens.len() {
        let Token::SingleQuotedString(written) = &tokens[i].token else {
            continue;
        };
        if !written.contains("${") {
            continue;
        }
        let written = written.clone();
        let start = tokens[i].span.start;
        let at = format!("{source_name}:{}:{}", start.line, start.column);
        let expansion = expand(&written, lookup).map_err(|e| match e {
            VariableError::Unset(name) => SluiceError::Config(format!(
                "{at}: variable `{name}` is not set: pass `--set {name}=...`, set it in the environment, or write `${{{name}:-default}}`"
            )),
            VariableError::Unterminated => SluiceError::Parse(format!(
                "{at}: '{}' opens a variable with `${{` but never closes it with `}}`: write `${{NAME}}` or `${{NAME:-default}}`",
                preview(&written)
            )),
            VariableError::Nested => SluiceError::Parse(format!(
                "{at}: '{}' has a variable inside another; variables do not nest (a default is plain text, as in `${{NAME:-out}}`)",
                preview(&written)
            )),
        })?;
        if let Some(name) = &expansion.rooted_by_empty
            && let Some(key) = option_key(&tokens, i)
            && is_path_option(&key)
        {
            return Err(SluiceError::Config(format!(
                "{at}: option '{key}' = '{}' would be `{}`, at the filesystem root, because variable `{name}` is empty: give `{name}` a value (`--set {name}=...`) or a non-empty default",
                preview(&written),
                preview(&expansion.text)
            )));
        }
        tokens[i].token = Token::SingleQuotedString(expansion.text);
    }
    Ok(tokens)
}

/// The key of `'key' = 'value'` when the string token at `value` is such a
/// value (in `WITH (...)` or `SET`).
fn option_key(tokens: &[TokenWithSpan], value: usize) -> Option<String> {
    let mut before = tokens[..value]
        .iter()
        .rev()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)));
    match (
        before.next().map(|t| &t.token),
        before.next().map(|t| &t.token),
    ) {
        (Some(Token::Eq), Some(Token::SingleQuotedString(key))) => Some(key.clone()),
        _ => None,
    }
}

/// Whether an option names a file or directory: `path` (of a filesystem
/// table, in either mode) or any `*.path` such as `sluice.late-data.path`.
fn is_path_option(key: &str) -> bool {
    let key = key
        .strip_prefix("batch.")
        .or_else(|| key.strip_prefix("stream."))
        .unwrap_or(key);
    key == "path" || key.ends_with(".path")
}

/// The start of a long value, for messages.
fn preview(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/data".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn text(t: &str) -> Result<String, VariableError> {
        expand(t, &vars).map(|e| e.text)
    }

    #[test]
    fn unterminated_and_nested_references_are_errors() {
        assert_eq!(text("${OUT/tumble"), Err(VariableError::Unterminated));
        assert_eq!(text("a/${DATA}/${b"), Err(VariableError::Unterminated));
        assert_eq!(text("${X:-${DATA}}"), Err(VariableError::Nested));
        assert_eq!(text("${X:-a}${b"), Err(VariableError::Unterminated));
    }

    #[test]
    fn an_empty_variable_before_a_slash_is_noticed() {
        let rooted = |t: &str| expand(t, &vars).map(|e| e.rooted_by_empty);
        assert_eq!(rooted("${NOPE:-}/tumble"), Ok(Some("NOPE".to_string())));
        assert_eq!(rooted("${EMPTY}${NOPE:-}/x"), Ok(Some("EMPTY".to_string())));
        assert_eq!(text("${NOPE:-}/tumble").as_deref(), Ok("/tumble"));
        // An absolute directory given as the value, or written, is meant.
        assert_eq!(rooted("${DATA}/bid"), Ok(None));
        assert_eq!(rooted("${EMPTY}${DATA}/bid"), Ok(None));
        assert_eq!(rooted("/abs/${EMPTY}x"), Ok(None));
        // Empty, but not at the root.
        assert_eq!(rooted("${EMPTY}out/x"), Ok(None));
        assert_eq!(rooted("${EMPTY}"), Ok(None));
    }

    fn substituted(sql: &str) -> Result<Vec<String>> {
        use datafusion::sql::sqlparser::tokenizer::Tokenizer;
        let dialect = super::super::parser::FlinkDialect;
        let tokens = Tokenizer::new(&dialect, sql)
            .tokenize_with_location()
            .map_err(|e| SluiceError::Parse(e.to_string()))?;
        Ok(substitute("job.sql", tokens, &vars)?
            .into_iter()
            .filter_map(|t| match t.token {
                Token::SingleQuotedString(s) => Some(s),
                _ => None,
            })
            .collect())
    }

    #[test]
    fn errors_name_the_file_position_and_text() {
        let err =
            substituted("SET 'x' = 'a';\nCREATE TABLE t (a INT) WITH ('path' = '${OUT/tumble')")
                .expect_err("unterminated");
        assert!(
            err.to_string().starts_with(
                "job.sql:2:39: '${OUT/tumble' opens a variable with `${` but never closes it"
            ),
            "{err}"
        );
        let err = substituted("SET 'k' = '${X:-${DATA}}'").expect_err("nested");
        assert!(
            err.to_string()
                .starts_with("job.sql:1:11: '${X:-${DATA}}' has a variable inside another"),
            "{err}"
        );
    }

    #[test]
    fn a_path_left_at_the_root_by_an_empty_variable_is_refused() {
        for sql in [
            "WITH ('connector' = 'filesystem', 'path' = '${NOPE:-}/tumble')",
            "WITH ('stream.path' = '${EMPTY}/tumble')",
            "SET 'sluice.late-data.path' = '${NOPE:-}/late'",
        ] {
            let err = substituted(sql).expect_err(sql);
            let message = err.to_string();
            assert!(message.contains("at the filesystem root"), "{message}");
            assert!(message.contains("because variable `"), "{message}");
        }
        let err = substituted("SET 'sluice.late-data.path' = '${NOPE:-}/late'").expect_err("late");
        assert_eq!(
            err.to_string(),
            "job.sql:1:31: option 'sluice.late-data.path' = '${NOPE:-}/late' would be `/late`, at the filesystem root, because variable `NOPE` is empty: give `NOPE` a value (`--set NOPE=...`) or a non-empty default"
        );
        // Not a path: left alone. A path from a non-empty variable: meant.
        assert_eq!(
            substituted("WITH ('topic' = '${EMPTY}/x', 'path' = '${DATA}/bid')").expect("ok"),
            vec!["topic", "/x", "path", "/data/bid"]
        );
    }
}
