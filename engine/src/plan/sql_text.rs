//! Physical expressions written back as the SQL they came from, for
//! `sluice explain`.
//!
//! DataFusion's own display of a physical expression is for its
//! developers: columns carry their index in the operator's input
//! (`auction@1`), literals their Arrow type (`Utf8("bid")`) and intervals
//! their struct (`IntervalMonthDayNano { months: 0, days: 0, nanoseconds:
//! 10000000000 }`). A user reads a plan against the job file, so here a
//! column is its name, a string is quoted, and an interval is written as
//! in Flink SQL:
//!
//! ```
//! use std::sync::Arc;
//! use datafusion::common::ScalarValue;
//! use datafusion::logical_expr::Operator;
//! use datafusion::physical_expr::PhysicalExpr;
//! use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
//! use arrow::datatypes::IntervalMonthDayNano;
//!
//! let ten_seconds = ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, 10_000_000_000)));
//! let expr = BinaryExpr::new(
//!     Arc::new(Column::new("window_end", 1)),
//!     Operator::Minus,
//!     Arc::new(Literal::new(ten_seconds)),
//! );
//! assert_eq!(sluice_engine::plan::sql_text::expr(&expr), "window_end - INTERVAL '10' SECOND");
//! ```
//!
//! Expressions of kinds not known here fall back to DataFusion's display.

use std::sync::Arc;

use arrow::datatypes::{DataType, IntervalMonthDayNano, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNotNullExpr, IsNullExpr, LikeExpr,
    Literal, NegativeExpr, NotExpr, TryCastExpr,
};

/// `e` as SQL.
pub fn expr(e: &dyn PhysicalExpr) -> String {
    if let Some(c) = e.downcast_ref::<Column>() {
        column_name(c.name())
    } else if let Some(l) = e.downcast_ref::<Literal>() {
        literal(l.value())
    } else if let Some(b) = e.downcast_ref::<BinaryExpr>() {
        let precedence = b.op().precedence();
        let left = operand(b.left(), precedence, false);
        let right = operand(b.right(), precedence, !is_associative(b.op()));
        format!("{left} {} {right}", b.op())
    } else if let Some(c) = e.downcast_ref::<CaseExpr>() {
        let mut text = String::from("CASE");
        if let Some(subject) = c.expr() {
            text.push_str(&format!(" {}", expr(subject.as_ref())));
        }
        for (when, then) in c.when_then_expr() {
            text.push_str(&format!(
                " WHEN {} THEN {}",
                expr(when.as_ref()),
                expr(then.as_ref())
            ));
        }
        if let Some(otherwise) = c.else_expr() {
            text.push_str(&format!(" ELSE {}", expr(otherwise.as_ref())));
        }
        text.push_str(" END");
        text
    } else if let Some(i) = e.downcast_ref::<InListExpr>() {
        format!(
            "{} {}IN ({})",
            expr(i.expr().as_ref()),
            if i.negated() { "NOT " } else { "" },
            list(i.list())
        )
    } else if let Some(n) = e.downcast_ref::<IsNullExpr>() {
        format!("{} IS NULL", expr(n.arg().as_ref()))
    } else if let Some(n) = e.downcast_ref::<IsNotNullExpr>() {
        format!("{} IS NOT NULL", expr(n.arg().as_ref()))
    } else if let Some(n) = e.downcast_ref::<NotExpr>() {
        format!("NOT {}", operand(n.arg(), u8::MAX, false))
    } else if let Some(n) = e.downcast_ref::<NegativeExpr>() {
        format!("-{}", operand(n.arg(), u8::MAX, false))
    } else if let Some(c) = e.downcast_ref::<CastExpr>() {
        format!(
            "CAST({} AS {})",
            expr(c.expr().as_ref()),
            sql_type(c.cast_type())
        )
    } else if let Some(c) = e.downcast_ref::<TryCastExpr>() {
        format!(
            "TRY_CAST({} AS {})",
            expr(c.expr().as_ref()),
            sql_type(c.cast_type())
        )
    } else if let Some(l) = e.downcast_ref::<LikeExpr>() {
        format!(
            "{} {}{} {}",
            expr(l.expr().as_ref()),
            if l.negated() { "NOT " } else { "" },
            if l.case_insensitive() {
                "ILIKE"
            } else {
                "LIKE"
            },
            expr(l.pattern().as_ref())
        )
    } else if let Some(f) = e.downcast_ref::<ScalarFunctionExpr>() {
        format!("{}({})", f.name(), list(f.args()))
    } else {
        e.to_string()
    }
}

/// A column's name as SQL. DataFusion names a column it computed (an
/// aggregate's result, a key expression) after the expression in its own
/// notation: `count(Int64(1)) FILTER (WHERE valid_events.event =
/// Utf8("session_start"))`. Its literals are written as SQL here
/// (`count(*)`, `'session_start'`) and table qualifiers dropped, so the name
/// reads like the operator that computes it.
pub fn column_name(name: &str) -> String {
    use std::sync::LazyLock;
    static STRING: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r#"\b(?:Utf8|Utf8View|LargeUtf8)\("((?:[^"\\]|\\.)*)"\)"#)
            .expect("a valid pattern")
    });
    static COUNT_STAR: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\bcount\(Int64\(1\)\)").expect("a valid pattern"));
    static NUMBER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\b(?:U?Int(?:8|16|32|64)|Float(?:16|32|64)|Boolean)\(([^()]*)\)")
            .expect("a valid pattern")
    });
    static QUALIFIER: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\b[A-Za-z_][A-Za-z0-9_]*\.([A-Za-z_])").expect("a valid pattern")
    });
    if !name.contains('(') {
        return name.to_string();
    }
    let name = STRING.replace_all(name, |c: &regex::Captures<'_>| {
        format!("'{}'", c[1].replace('\'', "''"))
    });
    let name = COUNT_STAR.replace_all(&name, "count(*)");
    let name = NUMBER.replace_all(&name, "$1");
    // Qualifiers go outside string literals only ('yyyy.MM.dd' stays).
    name.split('\'')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 0 {
                QUALIFIER.replace_all(part, "$1").into_owned()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("'")
}

/// An aggregate call as SQL: `count(*)`, `count(DISTINCT player_id)`,
/// `first_value(auction ORDER BY bids DESC NULLS FIRST) FILTER (WHERE ...)`.
pub fn aggregate(a: &AggregateFunctionExpr, filter: Option<&Arc<dyn PhysicalExpr>>) -> String {
    let args = a.expressions();
    let star = a.fun().name() == "count"
        && !a.is_distinct()
        && matches!(args.as_slice(), [one] if one.downcast_ref::<Literal>().is_some());
    let mut text = format!(
        "{}({}",
        a.fun().name(),
        if a.is_distinct() { "DISTINCT " } else { "" }
    );
    if star {
        text.push('*');
    } else {
        text.push_str(&list(&args));
    }
    if !a.order_bys().is_empty() {
        let order: Vec<String> = a
            .order_bys()
            .iter()
            .map(|s| {
                format!(
                    "{} {} NULLS {}",
                    expr(s.expr.as_ref()),
                    if s.options.descending { "DESC" } else { "ASC" },
                    if s.options.nulls_first {
                        "FIRST"
                    } else {
                        "LAST"
                    }
                )
            })
            .collect();
        text.push_str(&format!(" ORDER BY {}", order.join(", ")));
    }
    text.push(')');
    if let Some(f) = filter {
        text.push_str(&format!(" FILTER (WHERE {})", expr(f.as_ref())));
    }
    text
}

/// `v` as a SQL literal.
pub fn literal(v: &ScalarValue) -> String {
    if v.is_null() {
        return "NULL".to_string();
    }
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        ScalarValue::Boolean(Some(b)) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        ScalarValue::IntervalMonthDayNano(Some(i)) => interval(*i),
        ScalarValue::IntervalDayTime(Some(i)) => interval(IntervalMonthDayNano::new(
            0,
            i.days,
            i64::from(i.milliseconds) * 1_000_000,
        )),
        ScalarValue::IntervalYearMonth(Some(months)) => {
            interval(IntervalMonthDayNano::new(*months, 0, 0))
        }
        ScalarValue::TimestampSecond(..)
        | ScalarValue::TimestampMillisecond(..)
        | ScalarValue::TimestampMicrosecond(..)
        | ScalarValue::TimestampNanosecond(..) => {
            format!("TIMESTAMP '{}'", v.to_string().replace('T', " "))
        }
        ScalarValue::Date32(_) | ScalarValue::Date64(_) => format!("DATE '{v}'"),
        _ => v.to_string(),
    }
}

/// An interval as Flink writes one: `INTERVAL '10' SECOND`, or a sum of
/// such when it mixes months, days and time.
fn interval(i: IntervalMonthDayNano) -> String {
    const NANOS: [(i64, &str); 3] = [
        (3_600_000_000_000, "HOUR"),
        (60_000_000_000, "MINUTE"),
        (1_000_000_000, "SECOND"),
    ];
    let mut parts = Vec::new();
    if i.months != 0 {
        parts.push(match i.months % 12 {
            0 => format!("INTERVAL '{}' YEAR", i.months / 12),
            _ => format!("INTERVAL '{}' MONTH", i.months),
        });
    }
    if i.days != 0 {
        parts.push(format!("INTERVAL '{}' DAY", i.days));
    }
    if i.nanoseconds != 0 {
        let part = NANOS
            .iter()
            .find(|(size, _)| i.nanoseconds % size == 0)
            .map(|(size, unit)| format!("INTERVAL '{}' {unit}", i.nanoseconds / size))
            .unwrap_or_else(|| {
                let seconds = format!("{:.9}", i.nanoseconds as f64 / 1e9);
                let seconds = seconds.trim_end_matches('0');
                format!("INTERVAL '{seconds}' SECOND")
            });
        parts.push(part);
    }
    if parts.is_empty() {
        return "INTERVAL '0' SECOND".to_string();
    }
    parts.join(" + ")
}

/// A SQL type name for an Arrow type, as a job file would declare it.
fn sql_type(t: &DataType) -> String {
    match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Timestamp(unit, zone) => {
            let precision = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            match zone {
                None => format!("TIMESTAMP({precision})"),
                Some(_) => format!("TIMESTAMP_LTZ({precision})"),
            }
        }
        other => other.to_string(),
    }
}

fn list(exprs: &[Arc<dyn PhysicalExpr>]) -> String {
    exprs
        .iter()
        .map(|e| expr(e.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An operand of an operator of `precedence`, in parentheses when it binds
/// less tightly (or as tightly, on the right of `a - b`).
fn operand(e: &Arc<dyn PhysicalExpr>, precedence: u8, right_of_strict: bool) -> String {
    let text = expr(e.as_ref());
    let inner = e.downcast_ref::<BinaryExpr>().map(|b| b.op().precedence());
    match inner {
        Some(p) if p < precedence || (right_of_strict && p == precedence) => format!("({text})"),
        _ => text,
    }
}

fn is_associative(op: &Operator) -> bool {
    matches!(
        op,
        Operator::And | Operator::Or | Operator::Plus | Operator::Multiply
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, index: usize) -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new(name, index))
    }

    fn lit(v: ScalarValue) -> Arc<dyn PhysicalExpr> {
        Arc::new(Literal::new(v))
    }

    fn nanos(n: i64) -> ScalarValue {
        ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(0, 0, n)))
    }

    #[test]
    fn datafusion_column_names_are_written_as_sql() {
        assert_eq!(
            column_name(
                "count(Int64(1)) FILTER (WHERE valid_events.event = Utf8(\"session_start\"))"
            ),
            "count(*) FILTER (WHERE event = 'session_start')"
        );
        assert_eq!(
            column_name("date_format(bid.date_time,Utf8(\"yyyy-MM-dd\"))"),
            "date_format(date_time,'yyyy-MM-dd')"
        );
        assert_eq!(column_name("sum(t.x) + Float64(1.5)"), "sum(x) + 1.5");
        assert_eq!(
            column_name("date_format(bid.ts,Utf8(\"yyyy.MM.dd\"))"),
            "date_format(ts,'yyyy.MM.dd')"
        );
        assert_eq!(column_name("plain_name"), "plain_name");
    }

    #[test]
    fn intervals_are_written_as_in_flink_sql() {
        assert_eq!(literal(&nanos(10_000_000_000)), "INTERVAL '10' SECOND");
        assert_eq!(literal(&nanos(2 * 3_600_000_000_000)), "INTERVAL '2' HOUR");
        assert_eq!(literal(&nanos(90_000_000_000)), "INTERVAL '90' SECOND");
        assert_eq!(literal(&nanos(5 * 60_000_000_000)), "INTERVAL '5' MINUTE");
        assert_eq!(literal(&nanos(1_500_000_000)), "INTERVAL '1.5' SECOND");
        assert_eq!(
            literal(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(0, 1, 0)
            ))),
            "INTERVAL '1' DAY"
        );
        assert_eq!(
            literal(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(14, 2, 0)
            ))),
            "INTERVAL '14' MONTH + INTERVAL '2' DAY"
        );
        assert_eq!(
            literal(&ScalarValue::IntervalYearMonth(Some(24))),
            "INTERVAL '2' YEAR"
        );
    }

    #[test]
    fn literals_are_sql_literals() {
        assert_eq!(literal(&ScalarValue::from("it's")), "'it''s'");
        assert_eq!(literal(&ScalarValue::Utf8View(Some("a".into()))), "'a'");
        assert_eq!(literal(&ScalarValue::Int64(Some(7))), "7");
        assert_eq!(literal(&ScalarValue::Boolean(Some(true))), "TRUE");
        assert_eq!(literal(&ScalarValue::Int64(None)), "NULL");
    }

    #[test]
    fn columns_are_their_names_and_operators_keep_their_grouping() {
        let minus =
            |l, r| Arc::new(BinaryExpr::new(l, Operator::Minus, r)) as Arc<dyn PhysicalExpr>;
        let a_minus_b = minus(column("a", 0), column("b", 3));
        assert_eq!(expr(a_minus_b.as_ref()), "a - b");
        assert_eq!(
            expr(minus(column("c", 1), Arc::clone(&a_minus_b)).as_ref()),
            "c - (a - b)"
        );
        assert_eq!(
            expr(minus(Arc::clone(&a_minus_b), column("c", 1)).as_ref()),
            "a - b - c"
        );
        let times = BinaryExpr::new(
            a_minus_b,
            Operator::Multiply,
            lit(ScalarValue::Int64(Some(2))),
        );
        assert_eq!(expr(&times), "(a - b) * 2");
    }

    #[test]
    fn case_and_in_lists_quote_their_strings() {
        let bucket = CaseExpr::try_new(
            None,
            vec![(
                Arc::new(BinaryExpr::new(
                    column("play_time_s", 2),
                    Operator::Lt,
                    lit(ScalarValue::Float64(Some(600.0))),
                )) as Arc<dyn PhysicalExpr>,
                lit(ScalarValue::from("0-10 min")),
            )],
            Some(lit(ScalarValue::from("60+ min"))),
        )
        .expect("case");
        assert_eq!(
            expr(&bucket),
            "CASE WHEN play_time_s < 600 THEN '0-10 min' ELSE '60+ min' END"
        );
        let schema = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "event",
            DataType::Utf8,
            true,
        )]);
        let in_list = datafusion::physical_expr::expressions::in_list(
            column("event", 0),
            vec![
                lit(ScalarValue::from("purchase")),
                lit(ScalarValue::from("level_up")),
            ],
            &true,
            &schema,
        )
        .expect("in list");
        assert_eq!(
            expr(in_list.as_ref()),
            "event NOT IN ('purchase', 'level_up')"
        );
    }
}
