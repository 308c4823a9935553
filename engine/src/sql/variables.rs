//! Job-file variables: `${NAME}` and `${NAME:-default}`.
//!
//! A job names what changes between runs (input and output directories, a
//! broker, the table a view reads) as variables, given by `--set NAME=value`
//! or the environment. They may stand anywhere a token may, as in the Flink
//! Nexmark benchmark's `FROM ${NEXMARK_TABLE}`, whose runner replaces them in
//! the text. Positions in messages stay those of the file as written:
//!
//! - outside string literals, [`expand_outside_strings`] replaces them in the
//!   text and keeps the way back ([`Expanded::written`]): a token a variable
//!   produced is placed at the `${` it came from; comments are left alone;
//! - inside string literals, [`substitute`] replaces them in the tokens.
//!
//! [`expand`] is the rule for one piece of text; [`substitute`] also checks
//! what a literal's result means:
//!
//! - a reference must be closed (`${OUT/x` is an error, not a directory
//!   named `${OUT`), and a default is plain text (`${X:-${Y}}` is an error:
//!   nesting is not supported, rather than half-expanded);
//! - a path option (`path`, and any option named `*.path` such as
//!   `sluice.late-data.path`) whose written value starts with variables that
//!   are all empty, followed by `/`, would move the path to the filesystem
//!   root (`${OUT:-}/tumble` is `/tumble`): refused, naming the variable.

use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan};

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

/// A job's text with its variables outside string literals replaced.
#[derive(Debug, Clone)]
pub struct Expanded {
    pub text: String,
    /// Where each piece of `text` came from, in order; empty when nothing
    /// was replaced.
    pieces: Vec<Piece>,
    written_lines: Lines,
    expanded_lines: Lines,
}

/// A run of the expanded text: copied from the written text, or a
/// variable's value standing for the reference written at `written`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    expanded: usize,
    written: usize,
    replaced: bool,
}

/// Byte offsets of line starts, for turning offsets into sqlparser's
/// 1-based (line, column in characters) and back.
#[derive(Debug, Clone)]
struct Lines(Vec<usize>);

impl Lines {
    fn of(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        Self(starts)
    }

    fn offset(&self, text: &str, at: Location) -> Option<usize> {
        let start = *self.0.get(usize::try_from(at.line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let line = &text[start..];
        Some(match line.char_indices().nth(column) {
            Some((within, _)) => start + within,
            None => start + line.len(),
        })
    }

    fn location(&self, text: &str, offset: usize) -> Location {
        let line = self.0.partition_point(|&start| start <= offset).max(1);
        let start = self.0[line - 1];
        let column = text.get(start..offset).map_or(0, |s| s.chars().count());
        Location::new(line as u64, column as u64 + 1)
    }
}

impl Expanded {
    /// Where a position of the expanded text was written: the same spot in
    /// copied text, the reference's `${` inside a variable's value.
    pub fn written(&self, at: Location, written_text: &str) -> Location {
        if self.pieces.is_empty() || at.line == 0 {
            return at;
        }
        let Some(offset) = self.expanded_lines.offset(&self.text, at) else {
            return at;
        };
        let index = self.pieces.partition_point(|p| p.expanded <= offset).max(1);
        let piece = self.pieces[index - 1];
        let written = if piece.replaced {
            piece.written
        } else {
            piece.written + (offset - piece.expanded)
        };
        self.written_lines.location(written_text, written)
    }

    /// Moves the tokens' spans back to where they were written; says of
    /// each token whether a variable's value produced it.
    pub fn written_spans(
        &self,
        mut tokens: Vec<TokenWithSpan>,
        written_text: &str,
    ) -> (Vec<TokenWithSpan>, Vec<bool>) {
        if self.pieces.is_empty() {
            let produced = vec![false; tokens.len()];
            return (tokens, produced);
        }
        let mut produced = Vec::with_capacity(tokens.len());
        for token in &mut tokens {
            produced.push(self.is_produced(token.span.start));
            token.span = Span::new(
                self.written(token.span.start, written_text),
                self.written(token.span.end, written_text),
            );
        }
        (tokens, produced)
    }

    /// Whether the expanded text at `at` is part of a variable's value.
    fn is_produced(&self, at: Location) -> bool {
        let Some(offset) = self.expanded_lines.offset(&self.text, at) else {
            return false;
        };
        let index = self.pieces.partition_point(|p| p.expanded <= offset).max(1);
        self.pieces[index - 1].replaced
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` outside string literals and
/// comments, as the Flink Nexmark runner does in its job files. Inside
/// backquoted or double-quoted identifiers they are replaced too.
pub fn expand_outside_strings(
    source_name: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded> {
    let bytes = text.as_bytes();
    let written_lines = Lines::of(text);
    let mut out = String::new();
    let mut pieces = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    // Inside a backquoted or double-quoted identifier: its closing quote.
    let mut identifier: Option<u8> = None;
    while i < bytes.len() {
        match (identifier, bytes[i], bytes.get(i + 1)) {
            (_, b'$', Some(b'{')) => {
                let at = written_lines.location(text, i);
                let end = reference_end(&text[i..])
                    .map_err(|e| variable_error(source_name, at, line_of(&text[i..]), e))?;
                let reference = &text[i..i + end];
                let expansion = expand(reference, lookup)
                    .map_err(|e| variable_error(source_name, at, reference, e))?;
                pieces.push(Piece {
                    expanded: out.len(),
                    written: copied,
                    replaced: false,
                });
                out.push_str(&text[copied..i]);
                pieces.push(Piece {
                    expanded: out.len(),
                    written: i,
                    replaced: true,
                });
                out.push_str(&expansion.text);
                i += end;
                copied = i;
            }
            (Some(quote), b, next) if b == quote => {
                // A doubled quote stands for itself.
                if next == Some(&quote) {
                    i += 2;
                } else {
                    identifier = None;
                    i += 1;
                }
            }
            (Some(_), _, _) => i += 1,
            (None, b'`' | b'"', _) => {
                identifier = Some(bytes[i]);
                i += 1;
            }
            (None, b'\'', _) => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            (None, b'-', Some(b'-')) => {
                i = text[i..].find('\n').map_or(bytes.len(), |at| i + at + 1);
            }
            (None, b'/', Some(b'*')) => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |at| i + 2 + at + 2);
            }
            _ => i += 1,
        }
    }
    if pieces.is_empty() {
        return Ok(Expanded {
            text: text.to_string(),
            pieces,
            written_lines,
            expanded_lines: Lines(Vec::new()),
        });
    }
    pieces.push(Piece {
        expanded: out.len(),
        written: copied,
        replaced: false,
    });
    out.push_str(&text[copied..]);
    Ok(Expanded {
        written_lines,
        expanded_lines: Lines::of(&out),
        text: out,
        pieces,
    })
}

/// Where the reference at the start of `text` (`${NAME}` or
/// `${NAME:-default}`) ends, past its `}`. Outside a string a reference is
/// a name of letters, digits and `_`, and a default, on one line: a `${`
/// not closed so is an error, not a "variable" of several lines of SQL.
fn reference_end(text: &str) -> Result<usize, VariableError> {
    let body = &text[2..];
    let name = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let rest = &body[name..];
    let close = if name == 0 {
        None
    } else if rest.starts_with('}') {
        Some(0)
    } else if let Some(default) = rest.strip_prefix(":-") {
        default
            .find(['}', '\n'])
            .filter(|&at| default[at..].starts_with('}'))
            .map(|at| at + 2)
    } else {
        None
    };
    match close {
        Some(at) if rest[..at].contains("${") => Err(VariableError::Nested),
        Some(at) => Ok(2 + name + at + 1),
        None => Err(VariableError::Unterminated),
    }
}

/// The rest of the line `text` starts on, for messages.
fn line_of(text: &str) -> &str {
    text.split('\n').next().unwrap_or(text)
}

/// The message for a variable that cannot be replaced, at `at` in the file.
fn variable_error(
    source_name: &str,
    at: Location,
    written: &str,
    error: VariableError,
) -> SluiceError {
    let at = format!("{source_name}:{}:{}", at.line, at.column);
    match error {
        VariableError::Unset(name) => SluiceError::Config(format!(
            "{at}: variable `{name}` is not set: pass `--set {name}=...`, set it in the environment, or write `${{{name}:-default}}`"
        )),
        VariableError::Unterminated => SluiceError::Parse(format!(
            "{at}: '{}' opens a variable with `${{` but never closes it with `}}`: write `${{NAME}}` or `${{NAME:-default}}`",
            preview(written)
        )),
        VariableError::Nested => SluiceError::Parse(format!(
            "{at}: '{}' has a variable inside another; variables do not nest (a default is plain text, as in `${{NAME:-out}}`)",
            preview(written)
        )),
    }
}

/// Replaces the variables in a job's string literals; `source_name` names
/// the job file in messages.
///
/// A literal with an unset variable is left as written, and its error is
/// returned by position instead of raised: the parser raises it unless the
/// literal is the value of a table option, which needs its variables only
/// in the mode that uses it (see [`super::options::WrittenOption`]).
///
/// A literal that a variable's value produced was replaced once already:
/// one holding `${` is an error, as variables do not nest.
pub fn substitute(
    source_name: &str,
    mut tokens: Vec<TokenWithSpan>,
    produced: &[bool],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<TokenWithSpan>, Unresolved)> {
    let mut unresolved = Unresolved::new();
    for i in 0..tokens.len() {
        let Token::SingleQuotedString(written) = &tokens[i].token else {
            continue;
        };
        if produced.get(i).copied().unwrap_or(false) {
            if written.contains("${") {
                let start = tokens[i].span.start;
                return Err(SluiceError::Parse(format!(
                    "{source_name}:{}:{}: the value of this variable holds '{}', a variable inside another; variables do not nest",
                    start.line,
                    start.column,
                    preview(written)
                )));
            }
            continue;
        }
        if !written.contains("${") {
            continue;
        }
        let written = written.clone();
        let start = tokens[i].span.start;
        let at = format!("{source_name}:{}:{}", start.line, start.column);
        let expansion = match expand(&written, lookup) {
            Ok(expansion) => expansion,
            Err(e @ VariableError::Unset(_)) => {
                unresolved.insert(i, variable_error(source_name, start, &written, e));
                continue;
            }
            Err(e) => return Err(variable_error(source_name, start, &written, e)),
        };
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
    Ok((tokens, unresolved))
}

/// String literals whose variables are unset, by their index among the
/// tokens, with the error each raises where it is needed.
pub type Unresolved = std::collections::BTreeMap<usize, SluiceError>;

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
        let produced = vec![false; tokens.len()];
        let (tokens, unresolved) = substitute("job.sql", tokens, &produced, &vars)?;
        if let Some(error) = unresolved.into_values().next() {
            return Err(error);
        }
        Ok(tokens
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
