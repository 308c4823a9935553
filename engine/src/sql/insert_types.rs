//! Which query column types an `INSERT INTO` may write into which sink
//! column types: Flink's implicit casts, checked when the job is planned.
//!
//! DataFusion casts every query column to its sink column's type whatever the
//! two are, so a count written into a `TIMESTAMP(3)` column became a time
//! in 1970, and a STRING into a BIGINT column failed only while running.
//! Flink instead allows at an `INSERT` only the casts that keep every value
//! (its `LogicalTypeCasts.supportsImplicitCast`), and so does Sluice:
//!
//! - identical types, and any change of nullability;
//! - the NULL literal into any column;
//! - integers into wider integers, into FLOAT and DOUBLE, and into a DECIMAL
//!   with room for all their digits; DECIMAL into a DECIMAL that holds it
//!   (no fewer integer digits, no fewer fraction digits), FLOAT and DOUBLE;
//!   FLOAT into DOUBLE;
//! - FLOAT and DOUBLE into DECIMAL, as Flink allows: a literal such as
//!   `0.908` is a DOUBLE here but a DECIMAL in Flink, so `price * 0.908`
//!   into a `DECIMAL(23, 3)` column (Nexmark q1) must plan. A value out of
//!   the DECIMAL's range stops the job with an error; it is never wrapped;
//! - one string type into another (CHAR, VARCHAR(n), STRING are one Arrow
//!   type), one binary type into another;
//! - a TIMESTAMP into a TIMESTAMP of another precision, a TIMESTAMP_LTZ into
//!   a TIMESTAMP_LTZ of another precision;
//! - a ROW into a ROW of as many fields, field by field under these rules.
//!
//! Everything else needs an explicit `CAST` in the query. Two of Flink's
//! implicit casts are refused because they lose values Sluice can see are at
//! risk: a DECIMAL or integer into a DECIMAL too small for it, and a
//! TIMESTAMP into a DATE (the time of day would vanish).

use arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};

use super::catalog::TableDef;

/// Checks the query of an `INSERT INTO sink` as DataFusion plans it: a
/// projection that casts each query column to its sink column's type.
/// Returns the message for the first column whose type may not be written.
pub fn check_insert(sink: &TableDef, query: &LogicalPlan) -> Result<(), String> {
    let LogicalPlan::Projection(projection) = query else {
        // Not DataFusion's casting projection: the query's own columns go
        // to the sink as they are.
        for (given, column) in query.schema().fields().iter().zip(sink.schema.fields()) {
            check_column(sink, column, given.data_type(), given.name())?;
        }
        return Ok(());
    };
    let input = projection.input.schema();
    for (expr, column) in projection.expr.iter().zip(sink.schema.fields()) {
        // DataFusion wraps the query column in one cast to the sink's type;
        // what is under it is what the query gives.
        let given = match unalias(expr) {
            Expr::Cast(cast) => cast.expr.as_ref(),
            other => other,
        };
        let given_type = given
            .get_type(input)
            .map_err(|e| format!("INSERT INTO {}: {}", sink.name, super::df_message(&e)))?;
        let name = match given {
            Expr::Column(c) => c.name.as_str(),
            _ => "",
        };
        check_column(sink, column, &given_type, name)?;
    }
    Ok(())
}

/// Whether the query's column `name` (empty for a literal), of type
/// `given`, may be written into the sink's `column`.
fn check_column(
    sink: &TableDef,
    column: &Field,
    given: &DataType,
    name: &str,
) -> Result<(), String> {
    if implicit_cast_allowed(given, column.data_type()) {
        return Ok(());
    }
    let named = if name.is_empty() {
        String::new()
    } else {
        format!(" (`{name}`)")
    };
    let target = sql_type_name(column.data_type());
    Err(format!(
        "INSERT INTO {}: column `{}` is {target} but the query gives {}{named}; cast it explicitly (CAST(... AS {target}))",
        sink.name,
        column.name(),
        sql_type_name(given),
    ))
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

/// Whether a value of type `from` may be written into a column of type `to`
/// without an explicit cast.
pub fn implicit_cast_allowed(from: &DataType, to: &DataType) -> bool {
    use DataType as T;
    if from == to || matches!(from, T::Null) {
        return true;
    }
    match (from, to) {
        (T::Struct(a), T::Struct(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| implicit_cast_allowed(x.data_type(), y.data_type()))
        }
        (T::Timestamp(_, a), T::Timestamp(_, b)) => a.is_some() == b.is_some(),
        _ if is_string(from) && is_string(to) => true,
        _ if is_binary(from) && is_binary(to) => true,
        (_, T::Int8 | T::Int16 | T::Int32 | T::Int64) => {
            match (integer_digits(from), integer_digits(to)) {
                (Some(f), Some(t)) => f <= t,
                _ => false,
            }
        }
        (_, T::Decimal128(p, s)) => {
            let room = i16::from(*p) - i16::from(*s);
            match from {
                T::Float32 | T::Float64 => true,
                T::Decimal128(fp, fs) => fs <= s && i16::from(*fp) - i16::from(*fs) <= room,
                _ => integer_digits(from).is_some_and(|d| i16::from(d) <= room),
            }
        }
        (_, T::Float32) => integer_digits(from).is_some() || matches!(from, T::Decimal128(..)),
        (_, T::Float64) => {
            integer_digits(from).is_some() || matches!(from, T::Float32 | T::Decimal128(..))
        }
        _ => false,
    }
}

/// Decimal digits an integer type needs for its largest value, the measure
/// by which one integer type holds another. DataFusion gives some counts as
/// unsigned (`approx_distinct` is a UInt64); those fit the signed type of
/// their width plus one, and a UInt64 fits BIGINT like the count it is: a
/// value past BIGINT's range would stop the job with a cast error, not wrap.
fn integer_digits(data_type: &DataType) -> Option<u8> {
    use DataType as T;
    Some(match data_type {
        T::Int8 => 3,
        T::UInt8 | T::Int16 => 5,
        T::UInt16 | T::Int32 => 10,
        T::UInt32 | T::Int64 | T::UInt64 => 19,
        _ => return None,
    })
}

fn is_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
    )
}

/// A type as a job file writes it (Flink's names), for messages.
pub fn sql_type_name(data_type: &DataType) -> String {
    use DataType as T;
    let precision = |unit: &TimeUnit| match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    };
    match data_type {
        T::Null => "NULL".to_string(),
        T::Boolean => "BOOLEAN".to_string(),
        T::Int8 => "TINYINT".to_string(),
        T::Int16 => "SMALLINT".to_string(),
        T::Int32 => "INT".to_string(),
        T::Int64 => "BIGINT".to_string(),
        T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 => {
            format!("{data_type} (an unsigned integer)")
        }
        T::Float32 => "FLOAT".to_string(),
        T::Float64 => "DOUBLE".to_string(),
        T::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        T::Utf8 | T::LargeUtf8 | T::Utf8View => "STRING".to_string(),
        T::Binary | T::LargeBinary | T::BinaryView | T::FixedSizeBinary(_) => "BYTES".to_string(),
        T::Date32 | T::Date64 => "DATE".to_string(),
        T::Timestamp(unit, None) => format!("TIMESTAMP({})", precision(unit)),
        T::Timestamp(unit, Some(_)) => format!("TIMESTAMP_LTZ({})", precision(unit)),
        T::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), sql_type_name(f.data_type())))
                .collect();
            format!("ROW<{}>", fields.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const TS3: DataType = DataType::Timestamp(TimeUnit::Millisecond, None);

    #[test]
    fn widening_numbers_is_implicit() {
        use DataType as T;
        for (from, to) in [
            (T::Int8, T::Int16),
            (T::Int16, T::Int32),
            (T::Int32, T::Int64),
            (T::Int64, T::Decimal128(19, 0)),
            (T::Int32, T::Decimal128(12, 2)),
            (T::Int64, T::Float32),
            (T::Int64, T::Float64),
            (T::Float32, T::Float64),
            (T::Decimal128(10, 2), T::Decimal128(12, 3)),
            (T::Decimal128(10, 2), T::Float64),
            (T::Float64, T::Decimal128(23, 3)),
            (T::UInt64, T::Int64),
            (T::Null, TS3),
        ] {
            assert!(implicit_cast_allowed(&from, &to), "{from} into {to}");
        }
    }

    #[test]
    fn narrowing_and_reinterpreting_need_a_cast() {
        use DataType as T;
        for (from, to) in [
            (T::Int64, TS3),
            (T::Utf8, T::Int64),
            (T::Int64, T::Int32),
            (T::Float64, T::Float32),
            (T::Float64, T::Int64),
            (T::Int64, T::Utf8),
            (T::Boolean, T::Int32),
            (T::Int64, T::Decimal128(10, 2)),
            (T::Decimal128(20, 2), T::Decimal128(10, 2)),
            (T::Decimal128(10, 3), T::Decimal128(10, 2)),
            (TS3, T::Date32),
            (TS3, T::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))),
            (T::Date32, TS3),
            (T::Utf8, T::Binary),
        ] {
            assert!(!implicit_cast_allowed(&from, &to), "{from} into {to}");
        }
    }

    #[test]
    fn strings_timestamps_and_rows_convert_among_their_kind() {
        use DataType as T;
        assert!(implicit_cast_allowed(&T::Utf8View, &T::Utf8));
        assert!(implicit_cast_allowed(
            &T::Timestamp(TimeUnit::Microsecond, None),
            &TS3
        ));
        let row = |a: DataType| {
            T::Struct(
                vec![
                    Arc::new(Field::new("a", a, true)),
                    Arc::new(Field::new("b", T::Utf8, true)),
                ]
                .into(),
            )
        };
        assert!(implicit_cast_allowed(&row(T::Int32), &row(T::Int64)));
        assert!(!implicit_cast_allowed(&row(T::Int64), &row(T::Int32)));
    }

    #[test]
    fn types_are_named_as_job_files_write_them() {
        assert_eq!(sql_type_name(&TS3), "TIMESTAMP(3)");
        assert_eq!(sql_type_name(&DataType::Int64), "BIGINT");
        assert_eq!(
            sql_type_name(&DataType::Decimal128(23, 3)),
            "DECIMAL(23, 3)"
        );
        assert_eq!(
            sql_type_name(&DataType::Timestamp(
                TimeUnit::Millisecond,
                Some("UTC".into())
            )),
            "TIMESTAMP_LTZ(3)"
        );
    }
}
