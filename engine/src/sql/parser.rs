//! The Flink SQL dialect of job files, as an extension of sqlparser.
//!
//! A job file is a list of statements separated by `;`:
//!
//! - `CREATE TABLE name (col TYPE, ..., WATERMARK FOR col AS expr) WITH ('k' = 'v', ...)`
//! - `CREATE [TEMPORARY] VIEW name AS query`
//! - `INSERT INTO table query`
//! - `SET 'key' = 'value'`
//! - `CREATE [TEMPORARY] FUNCTION name AS 'class.Name' [LANGUAGE JAVA]`, naming
//!   one of the functions Sluice has
//!
//! `CREATE TABLE` and `SET` are parsed here with the parser's own primitives
//! (identifiers, data types, expressions); the rest goes to sqlparser as is.
//! Inside queries, [`FlinkDialect`] teaches the expression parser Flink's
//! table arguments, so that `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL
//! '10' SECOND))` parses to a table function whose first argument is the call
//! `__sluice_table(bid)` (or `__sluice_table(bid, key...)` with `PARTITION BY`).
//!
//! `${NAME}` and `${NAME:-default}` inside string literals are replaced before
//! parsing, token by token, so positions in error messages stay true (see
//! [`super::variables`]).

use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, Query, Statement, StructBracketKind, StructField,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};

use std::sync::Arc;

use super::options::WrittenOption;
use super::variables::Unresolved;
use crate::error::{Result, SluiceError};

/// The name of the marker call that stands for `TABLE t [PARTITION BY ...]`.
pub const TABLE_ARG: &str = "__sluice_table";

/// A parsed job file.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// How the file is named in messages (its path, or `<inline>`).
    pub source_name: String,
    pub statements: Vec<JobStatement>,
}

/// One statement, the file it is in and the line it starts on.
#[derive(Debug, Clone)]
pub struct Located<T> {
    /// How the file is named in messages.
    pub file: Arc<str>,
    pub line: u64,
    pub column: u64,
    pub item: T,
}

#[derive(Debug, Clone)]
pub enum JobStatement {
    CreateTable(Box<Located<TableDecl>>),
    CreateView(Located<ViewDecl>),
    Insert(Located<Box<Statement>>),
    Set(Located<(String, String)>),
    CreateFunction(Located<FunctionDecl>),
}

/// `CREATE [TEMPORARY] FUNCTION name AS 'class.Name' [LANGUAGE JAVA]`: a
/// Flink job's name for one of its functions. Sluice's functions are Rust,
/// so the name must be one Sluice has; the class is not used.
#[derive(Debug, Clone)]
pub struct FunctionDecl {
    pub name: String,
    pub class: String,
    pub language: Option<String>,
}

impl JobFile {
    /// Appends the statements of a file that follows this one, as Flink's
    /// SQL client runs an initialization file before the job's own.
    pub fn append(&mut self, next: JobFile) {
        self.statements.extend(next.statements);
        self.source_name = next.source_name;
    }
}

#[derive(Debug, Clone)]
pub struct TableDecl {
    pub name: String,
    pub columns: Vec<ColumnDecl>,
    pub watermark: Option<WatermarkDecl>,
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (col, ...)`.
    pub partition_keys: Vec<String>,
    /// `WITH` options in the order written.
    pub options: Vec<WrittenOption>,
}

#[derive(Debug, Clone)]
pub struct ColumnDecl {
    pub name: String,
    /// `DataType::Unspecified` for a computed column.
    pub data_type: DataType,
    pub nullable: bool,
    /// `name AS expr`: computed from the other columns when read, as in
    /// Flink; not stored.
    pub computed: Option<Expr>,
}

#[derive(Debug, Clone)]
pub struct WatermarkDecl {
    pub column: String,
    pub expr: Expr,
}

#[derive(Debug, Clone)]
pub struct ViewDecl {
    pub name: String,
    pub query: Box<Query>,
}

/// Flink's SQL dialect: backtick-quoted identifiers, `=>` named arguments,
/// and `TABLE t` as a function argument.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_' || ch == '$'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`' || ch == '"'
    }

    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        true
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    /// `FOR SYSTEM_TIME AS OF t`, of Flink's lookup and temporal joins.
    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        if !parser.peek_keyword(Keyword::TABLE) {
            return None;
        }
        parser.next_token();
        Some(parse_table_argument(parser))
    }
}

/// `TABLE name [PARTITION BY key | PARTITION BY (key, ...)]`, after `TABLE`.
fn parse_table_argument(parser: &mut Parser) -> Result<Expr, ParserError> {
    let name = parser.parse_object_name(false)?;
    let mut args = vec![Expr::CompoundIdentifier(
        name.0
            .iter()
            .filter_map(|part| part.as_ident().cloned())
            .collect(),
    )];
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        if parser.consume_token(&Token::LParen) {
            args.extend(parser.parse_comma_separated(Parser::parse_expr)?);
            parser.expect_token(&Token::RParen)?;
        } else {
            args.push(parser.parse_expr()?);
        }
    }
    Ok(call(TABLE_ARG, args))
}

fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|e| FunctionArg::Unnamed(FunctionArgExpr::Expr(e)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Parses a job file. `lookup` resolves `${NAME}` variables.
pub fn parse_job(
    source_name: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<JobFile> {
    let dialect = FlinkDialect;
    let expanded = super::variables::expand_outside_strings(source_name, text, lookup)?;
    let tokens = Tokenizer::new(&dialect, &expanded.text)
        .tokenize_with_location()
        .map_err(|e| {
            let at = expanded.written(e.location, text);
            SluiceError::Parse(format!(
                "{source_name}:{}:{}: {}",
                at.line, at.column, e.message
            ))
        })?;
    let (tokens, produced) = expanded.written_spans(tokens, text);
    let (tokens, mut unresolved) =
        super::variables::substitute(source_name, tokens, &produced, lookup)?;
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let file: Arc<str> = Arc::from(source_name);
    let mut statements = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token_ref().token == Token::EOF {
            break;
        }
        let start = parser.peek_token_ref().span.start;
        let statement = parse_statement(&mut parser, &file, start, &mut unresolved)
            .map_err(|e| parse_error(source_name, start, e))?;
        statements.push(statement);
        let next = parser.peek_token();
        if next.token != Token::SemiColon && next.token != Token::EOF {
            return Err(SluiceError::Parse(format!(
                "{source_name}:{}:{}: expected `;` after the statement, found `{}`",
                next.span.start.line, next.span.start.column, next.token
            )));
        }
    }
    // Only a table option's value may wait for the mode to need it.
    if let Some(error) = unresolved.into_values().next() {
        return Err(error);
    }
    Ok(JobFile {
        source_name: source_name.to_string(),
        statements,
    })
}

fn parse_error(source_name: &str, start: Location, error: ParserError) -> SluiceError {
    let message = match error {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "the statement nests too deeply".to_string(),
    };
    // sqlparser puts the position at the end ("... at Line: 3, Column: 14");
    // lead with it instead, as compilers do.
    if let Some((text, position)) = message.rsplit_once(" at Line: ")
        && let Some((line, column)) = position.split_once(", Column: ")
    {
        return SluiceError::Parse(format!("{source_name}:{line}:{column}: {text}"));
    }
    SluiceError::Parse(format!(
        "{source_name}:{}:{}: {message}",
        start.line, start.column
    ))
}

fn parse_statement(
    parser: &mut Parser,
    file: &Arc<str>,
    start: Location,
    unresolved: &mut Unresolved,
) -> Result<JobStatement, ParserError> {
    fn located<T>(file: &Arc<str>, start: Location, item: T) -> Located<T> {
        Located {
            file: Arc::clone(file),
            line: start.line,
            column: start.column,
            item,
        }
    }
    if parser.parse_keywords(&[Keyword::CREATE, Keyword::TABLE]) {
        let table = parse_create_table(parser, file, unresolved)?;
        return Ok(JobStatement::CreateTable(Box::new(located(
            file, start, table,
        ))));
    }
    if parser.peek_keyword(Keyword::CREATE) {
        // CREATE [TEMPORARY] [SYSTEM] VIEW | FUNCTION: look past the
        // modifiers before consuming anything, so that other statements
        // reach sqlparser whole.
        let [_, second, third, fourth] = parser.peek_tokens::<4>();
        let words: Vec<String> = [second, third, fourth]
            .into_iter()
            .map(|t| match t {
                Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
                _ => String::new(),
            })
            .collect();
        let kind = words
            .iter()
            .find(|w| !matches!(w.as_str(), "TEMPORARY" | "SYSTEM"))
            .cloned()
            .unwrap_or_default();
        if kind == "VIEW" || kind == "FUNCTION" {
            parser.next_token();
            let _temporary = parser.parse_keyword(Keyword::TEMPORARY);
            let _system = parse_word(parser, "SYSTEM");
            if kind == "VIEW" {
                parser.expect_keyword(Keyword::VIEW)?;
                let name = parser.parse_object_name(false)?;
                parser.expect_keyword(Keyword::AS)?;
                let query = parser.parse_query()?;
                return Ok(JobStatement::CreateView(located(
                    file,
                    start,
                    ViewDecl {
                        name: object_name(&name),
                        query,
                    },
                )));
            }
            parser.expect_keyword(Keyword::FUNCTION)?;
            let _if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = parser.parse_object_name(false)?;
            parser.expect_keyword(Keyword::AS)?;
            let class = parse_string(parser)?;
            let language = if parser.parse_keyword(Keyword::LANGUAGE) {
                Some(parser.parse_identifier()?.value.to_ascii_uppercase())
            } else {
                None
            };
            return Ok(JobStatement::CreateFunction(located(
                file,
                start,
                FunctionDecl {
                    name: object_name(&name),
                    class,
                    language,
                },
            )));
        }
    }
    if parser.parse_keyword(Keyword::SET) {
        let key = parse_string(parser)?;
        parser.expect_token(&Token::Eq)?;
        let value = parse_string(parser)?;
        return Ok(JobStatement::Set(located(file, start, (key, value))));
    }
    let statement = parser.parse_statement()?;
    match statement {
        Statement::Insert(_) => Ok(JobStatement::Insert(located(
            file,
            start,
            Box::new(statement),
        ))),
        other => Err(ParserError::ParserError(format!(
            "a job file holds CREATE TABLE, CREATE VIEW, CREATE FUNCTION, INSERT INTO and SET statements, not `{}`",
            first_words(&other.to_string())
        ))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The rest of `CREATE TABLE` after the keywords. A value whose variables
/// are unset takes its error from `unresolved`, for the mode that uses it.
fn parse_create_table(
    parser: &mut Parser,
    file: &str,
    unresolved: &mut Unresolved,
) -> Result<TableDecl, ParserError> {
    let _if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = object_name(&parser.parse_object_name(false)?);
    parser.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    let mut primary_key = Vec::new();
    loop {
        if parse_word(parser, "WATERMARK") {
            parser.expect_keyword(Keyword::FOR)?;
            let column = parser.parse_identifier()?.value;
            parser.expect_keyword(Keyword::AS)?;
            let expr = parser.parse_expr()?;
            watermark = Some(WatermarkDecl { column, expr });
        } else if parser.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY]) {
            primary_key = parser
                .parse_parenthesized_column_list(
                    datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                    false,
                )?
                .into_iter()
                .map(|i| i.value)
                .collect();
            if parser.parse_keyword(Keyword::NOT) {
                parser.expect_keyword(Keyword::ENFORCED)?;
            }
        } else {
            let column = parser.parse_identifier()?.value;
            if parser.parse_keyword(Keyword::AS) {
                let expr = parser.parse_expr()?;
                if parser.parse_keyword(Keyword::COMMENT) {
                    parse_string(parser)?;
                }
                columns.push(ColumnDecl {
                    name: column,
                    data_type: DataType::Unspecified,
                    nullable: true,
                    computed: Some(expr),
                });
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
                continue;
            }
            let data_type = parse_column_type(parser)?;
            let mut nullable = true;
            loop {
                if parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                    nullable = false;
                } else if parser.parse_keyword(Keyword::NULL) {
                    nullable = true;
                } else if parser.parse_keyword(Keyword::COMMENT) {
                    parse_string(parser)?;
                } else {
                    break;
                }
            }
            columns.push(ColumnDecl {
                name: column,
                data_type,
                nullable,
                computed: None,
            });
        }
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&Token::RParen)?;
    if parser.parse_keyword(Keyword::COMMENT) {
        parse_string(parser)?;
    }
    let mut partition_keys = Vec::new();
    if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
        partition_keys = parser
            .parse_parenthesized_column_list(
                datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                false,
            )?
            .into_iter()
            .map(|i| i.value)
            .collect();
    }
    let mut options = Vec::new();
    if parser.parse_keyword(Keyword::WITH) {
        parser.expect_token(&Token::LParen)?;
        if !parser.consume_token(&Token::RParen) {
            loop {
                let key_at = parser.peek_token_ref().span.start;
                let key = parse_string(parser)?;
                parser.expect_token(&Token::Eq)?;
                let value = parse_string(parser)?;
                let value_index = parser.get_current_index();
                options.push(WrittenOption {
                    key,
                    value,
                    at: format!("{file}:{}:{}", key_at.line, key_at.column),
                    unresolved: unresolved.remove(&value_index).map(|e| e.to_string()),
                });
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen)?;
        }
    }
    Ok(TableDecl {
        name,
        columns,
        watermark,
        primary_key,
        partition_keys,
        options,
    })
}

/// A column type, with Flink's `ROW<name type, ...>` and `ROW(name type, ...)`.
fn parse_column_type(parser: &mut Parser) -> Result<DataType, ParserError> {
    if !parse_word(parser, "ROW") {
        return parser.parse_data_type();
    }
    let (close, bracket) = if parser.consume_token(&Token::Lt) {
        (Token::Gt, StructBracketKind::AngleBrackets)
    } else {
        parser.expect_token(&Token::LParen)?;
        (Token::RParen, StructBracketKind::Parentheses)
    };
    let mut fields = Vec::new();
    loop {
        let name = parser.parse_identifier()?;
        let field_type = parse_column_type(parser)?;
        // Field nullability is accepted and ignored: nested fields are nullable.
        let _ = parser.parse_keywords(&[Keyword::NOT, Keyword::NULL])
            || parser.parse_keyword(Keyword::NULL);
        fields.push(StructField {
            field_name: Some(name),
            field_type,
            options: None,
        });
        if !parser.consume_token(&Token::Comma) {
            break;
        }
    }
    parser.expect_token(&close)?;
    Ok(DataType::Struct(fields, bracket))
}

/// Consumes the next token if it is the (non-reserved) word `word`.
fn parse_word(parser: &mut Parser, word: &str) -> bool {
    match &parser.peek_token_ref().token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => {
            parser.next_token();
            true
        }
        _ => false,
    }
}

fn parse_string(parser: &mut Parser) -> Result<String, ParserError> {
    let token = parser.next_token();
    match token.token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(ParserError::ParserError(format!(
            "expected a quoted string, found `{other}` at Line: {}, Column: {}",
            token.span.start.line, token.span.start.column
        ))),
    }
}

pub(crate) fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/data".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_with_defaults() {
        use crate::sql::variables::{VariableError, expand};
        let text = |t: &str| expand(t, &vars).map(|e| e.text);
        assert_eq!(text("${DATA}/bid").as_deref(), Ok("/data/bid"));
        assert_eq!(text("${OUT:-/tmp/o}").as_deref(), Ok("/tmp/o"));
        assert_eq!(text("${OUT}"), Err(VariableError::Unset("OUT".to_string())));
        // An unclosed `${` used to pass as plain text, into directory names.
        assert_eq!(text("a${b"), Err(VariableError::Unterminated));
    }

    #[test]
    fn parses_flink_create_table_with_watermark_and_options() {
        let job = parse_job(
            "job.sql",
            "CREATE TABLE bid (\n  auction BIGINT, price BIGINT NOT NULL, date_time TIMESTAMP(3),\n  WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND\n) WITH ('connector' = 'filesystem', 'batch.path' = '${DATA}/bid');",
            &vars,
        )
        .expect("parses");
        let JobStatement::CreateTable(t) = &job.statements[0] else {
            panic!("not a table: {:?}", job.statements[0]);
        };
        assert_eq!(t.item.name, "bid");
        assert_eq!(t.item.columns.len(), 3);
        assert!(!t.item.columns[1].nullable);
        let wm = t.item.watermark.as_ref().expect("watermark");
        assert_eq!(wm.column, "date_time");
        assert_eq!(wm.expr.to_string(), "date_time - INTERVAL '4' SECOND");
        assert_eq!(
            t.item.options,
            vec![
                WrittenOption::new("connector", "filesystem", "job.sql:4:9"),
                WrittenOption::new("batch.path", "/data/bid", "job.sql:4:37")
            ]
        );
    }

    #[test]
    fn parses_window_tvfs_with_table_arguments() {
        let job = parse_job(
            "job.sql",
            "INSERT INTO o SELECT * FROM TABLE(SESSION(TABLE bid PARTITION BY auction, DESCRIPTOR(date_time), INTERVAL '10' SECOND));\n\
             INSERT INTO o SELECT * FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))",
            &vars,
        )
        .expect("parses");
        assert_eq!(job.statements.len(), 2);
        let JobStatement::Insert(i) = &job.statements[0] else {
            panic!("not an insert");
        };
        assert!(i.item.to_string().contains("__sluice_table(bid, auction)"));
    }

    #[test]
    fn unset_variable_is_named_with_its_position() {
        let err = parse_job("job.sql", "SET 'a' = '${NOPE}'", &vars).expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("job.sql:1:11: variable `NOPE` is not set"),
            "{err}"
        );
    }

    fn vars_anywhere(name: &str) -> Option<String> {
        match name {
            "TABLE" => Some("datagen".into()),
            "LONG" => Some("a_much_longer_table_name".into()),
            "COLS" => Some("a,\n b".into()),
            _ => None,
        }
    }

    #[test]
    fn variables_stand_anywhere_a_token_may() {
        let job = parse_job(
            "job.sql",
            "-- reads ${NOT_SET}, in a comment\nCREATE VIEW v AS SELECT ${COLS} FROM ${TABLE} WHERE s = '${TABLE}';",
            &vars_anywhere,
        )
        .expect("parses");
        let JobStatement::CreateView(v) = &job.statements[0] else {
            panic!("not a view");
        };
        assert_eq!(
            v.item.query.to_string(),
            "SELECT a, b FROM datagen WHERE s = 'datagen'"
        );
        assert_eq!((v.line, v.column), (2, 1));
    }

    #[test]
    fn positions_after_a_variable_stay_those_written() {
        // The value is longer than the reference and spans lines: the error
        // is still at the written line and column of `)`.
        for text in [
            "INSERT INTO o SELECT x FROM ${LONG} WHERE )",
            "INSERT INTO o SELECT ${COLS} FROM t WHERE )",
        ] {
            let err = parse_job("job.sql", text, &vars_anywhere).expect_err(text);
            let column = text.find(')').expect("paren") + 1;
            assert!(
                err.to_string()
                    .starts_with(&format!("job.sql:1:{column}: ")),
                "{text}: {err}"
            );
        }
        // A token a variable produced is placed at its `${`.
        let err = parse_job(
            "job.sql",
            "SET 'a' = 'b';\n  INSERT INTO ${LONG}",
            &vars_anywhere,
        )
        .expect_err("no query");
        assert!(err.to_string().starts_with("job.sql:2:"), "{err}");
        let err = parse_job(
            "job.sql",
            "SELECT 1;\nSELECT x FROM ${NOPE}",
            &vars_anywhere,
        )
        .expect_err("unset");
        assert!(
            err.to_string()
                .starts_with("job.sql:2:15: variable `NOPE` is not set"),
            "{err}"
        );
        let err = parse_job(
            "job.sql",
            "SET 'a' = 'b';\nSELECT ${LONG} \"x",
            &vars_anywhere,
        )
        .expect_err("unterminated identifier");
        assert!(err.to_string().starts_with("job.sql:2:"), "{err}");
    }

    #[test]
    fn quoted_identifiers_neither_open_strings_nor_comments_and_take_variables() {
        for (text, query) in [
            (
                "CREATE VIEW v AS SELECT \"it's\" FROM ${TABLE}",
                "SELECT \"it's\" FROM datagen",
            ),
            (
                "CREATE VIEW v AS SELECT `a--b` FROM ${TABLE}",
                "SELECT `a--b` FROM datagen",
            ),
            (
                "CREATE VIEW v AS SELECT `${TABLE}_id` FROM t",
                "SELECT `datagen_id` FROM t",
            ),
        ] {
            let job = parse_job("job.sql", text, &vars_anywhere).expect(text);
            let JobStatement::CreateView(v) = &job.statements[0] else {
                panic!("not a view");
            };
            assert_eq!(v.item.query.to_string(), query);
        }
    }

    #[test]
    fn a_reference_outside_strings_is_a_name_closed_on_its_line() {
        let err = parse_job(
            "job.sql",
            "SELECT ${X FROM t;\nSET 'a' = '}'",
            &vars_anywhere,
        )
        .expect_err("unclosed");
        assert_eq!(
            err.to_string(),
            "job.sql:1:8: '${X FROM t;' opens a variable with `${` but never closes it with `}`: write `${NAME}` or `${NAME:-default}`"
        );
        let err =
            parse_job("job.sql", "SELECT ${X:-${Y}} FROM t", &vars_anywhere).expect_err("nested");
        assert!(err.to_string().contains("variables do not nest"), "{err}");
    }

    #[test]
    fn an_unset_variable_stays_with_its_own_option() {
        let vars = |name: &str| match name {
            "REST" => Some(", 'batch.path' = '/out'".to_string()),
            "NESTED" => Some(", 'batch.path' = '${Y}'".to_string()),
            _ => None,
        };
        let job = parse_job(
            "job.sql",
            "CREATE TABLE t (a INT) WITH ('connector' = 'blackhole', 'stream.topic' = '${T}'${REST})",
            &vars,
        )
        .expect("parses");
        let JobStatement::CreateTable(t) = &job.statements[0] else {
            panic!("not a table");
        };
        let option = |key: &str| {
            t.item
                .options
                .iter()
                .find(|o| o.key == key)
                .unwrap_or_else(|| panic!("no {key}"))
                .clone()
        };
        assert!(
            option("stream.topic")
                .unresolved
                .is_some_and(|e| e.contains("variable `T` is not set"))
        );
        assert_eq!(option("batch.path").value, "/out");
        assert_eq!(option("batch.path").unresolved, None);
        let err = parse_job(
            "job.sql",
            "CREATE TABLE t (a INT) WITH ('connector' = 'blackhole'${NESTED})",
            &vars,
        )
        .expect_err("a variable in a value");
        assert!(err.to_string().contains("variables do not nest"), "{err}");
    }

    #[test]
    fn create_function_names_a_function() {
        let job = parse_job(
            "job.sql",
            "CREATE TEMPORARY FUNCTION count_char AS 'com.github.nexmark.flink.udf.CountChar' LANGUAGE JAVA;\nCREATE FUNCTION f AS 'x.F'",
            &vars,
        )
        .expect("parses");
        let JobStatement::CreateFunction(f) = &job.statements[0] else {
            panic!("not a function: {:?}", job.statements[0]);
        };
        assert_eq!(f.item.name, "count_char");
        assert_eq!(f.item.class, "com.github.nexmark.flink.udf.CountChar");
        assert_eq!(f.item.language.as_deref(), Some("JAVA"));
        let JobStatement::CreateFunction(f) = &job.statements[1] else {
            panic!("not a function");
        };
        assert_eq!((f.item.name.as_str(), f.line), ("f", 2));
    }

    #[test]
    fn parse_errors_lead_with_file_line_and_column() {
        let err = parse_job(
            "job.sql",
            "CREATE TABLE t (a BIGINT,\n  b BIGINT NOT 3)",
            &vars,
        )
        .expect_err("must fail");
        assert!(err.to_string().starts_with("job.sql:2:"), "{err}");
        let err = parse_job("job.sql", "DROP TABLE t", &vars).expect_err("must fail");
        assert!(err.to_string().contains("not `DROP TABLE t`"), "{err}");
    }
}
