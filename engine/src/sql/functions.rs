//! Flink's scalar functions that DataFusion lacks or names differently.
//!
//! - `DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm')`: Java `SimpleDateFormat` patterns.
//! - `SPLIT_INDEX(s, sep, i)`: the `i`-th (0-based) piece of `s` split on `sep`, or NULL.
//! - `MOD(a, b)`: the remainder of integer division, NULL when `b` is 0.
//! - `REGEXP_EXTRACT(s, regex, group)`: the group's text of the first match, or NULL.
//! - `HOUR(ts)`, `MINUTE(ts)`, `SECOND(ts)`: parts of a timestamp as BIGINT.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, StringBuilder};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use chrono::DateTime;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

pub fn flink_functions() -> Vec<Arc<ScalarUDF>> {
    let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
    let mut out = vec![
        Arc::new(create_udf(
            "date_format",
            vec![ts.clone(), DataType::Utf8],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(date_format),
        )),
        Arc::new(create_udf(
            "split_index",
            vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(split_index),
        )),
        Arc::new(create_udf(
            "mod",
            vec![DataType::Int64, DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(modulo),
        )),
        Arc::new(create_udf(
            "regexp_extract",
            vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(regexp_extract),
        )),
    ];
    for (name, divisor, modulus) in [
        ("hour", 3_600_000, 24),
        ("minute", 60_000, 60),
        ("second", 1_000, 60),
    ] {
        out.push(Arc::new(create_udf(
            name,
            vec![ts.clone()],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| time_part(args, divisor, modulus)),
        )));
    }
    out
}

fn time_part(args: &[ColumnarValue], divisor: i64, modulus: i64) -> DfResult<ColumnarValue> {
    let [ts] = args else {
        return exec_err!("expects one TIMESTAMP argument");
    };
    let array = ts.to_array(1)?;
    let values = array.as_primitive::<TimestampMillisecondType>();
    let out: Int64Array = values
        .iter()
        .map(|v| v.map(|ms| ms.div_euclid(divisor).rem_euclid(modulus)))
        .collect();
    Ok(wrap(ts, Arc::new(out)))
}

fn wrap(like: &ColumnarValue, array: ArrayRef) -> ColumnarValue {
    match like {
        ColumnarValue::Scalar(_) => ScalarValue::try_from_array(&array, 0)
            .map(ColumnarValue::Scalar)
            .unwrap_or(ColumnarValue::Array(array)),
        ColumnarValue::Array(_) => ColumnarValue::Array(array),
    }
}

/// A scalar when every argument is one, else the array.
fn wrap_all(args: &[ColumnarValue], array: ArrayRef) -> ColumnarValue {
    match args.iter().find(|a| matches!(a, ColumnarValue::Array(_))) {
        Some(array_arg) => wrap(array_arg, array),
        None => wrap(&args[0], array),
    }
}

fn date_format(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let [ts, pattern] = args else {
        return exec_err!("DATE_FORMAT expects (timestamp, pattern)");
    };
    let ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern))) = pattern else {
        return exec_err!("DATE_FORMAT's pattern must be a string literal");
    };
    let format = java_to_chrono(pattern);
    let array = ts.to_array(1)?;
    let values = array.as_primitive::<TimestampMillisecondType>();
    let mut out = StringBuilder::with_capacity(values.len(), values.len() * pattern.len());
    for v in values.iter() {
        match v.and_then(DateTime::from_timestamp_millis) {
            Some(t) => out.append_value(t.naive_utc().format(&format).to_string()),
            None => out.append_null(),
        }
    }
    Ok(wrap(ts, Arc::new(out.finish())))
}

/// Translates a Java `SimpleDateFormat` pattern to chrono's `strftime` syntax.
fn java_to_chrono(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        match c {
            '\'' => {
                // Quoted literal text.
                let mut j = i + 1;
                while j < chars.len() && chars[j] != '\'' {
                    out.push(chars[j]);
                    j += 1;
                }
                i = j + 1;
                continue;
            }
            'y' if run == 2 => out.push_str("%y"),
            'y' => out.push_str("%Y"),
            'M' => out.push_str("%m"),
            'd' => out.push_str("%d"),
            'H' => out.push_str("%H"),
            'm' => out.push_str("%M"),
            's' => out.push_str("%S"),
            'S' => out.push_str("%3f"),
            'E' => out.push_str("%a"),
            '%' => out.push_str("%%"),
            other => (0..run).for_each(|_| out.push(other)),
        }
        i += run;
    }
    out
}

fn modulo(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let [a, b] = args else {
        return exec_err!("MOD expects (a, b)");
    };
    let len = [a, b]
        .iter()
        .find_map(|v| match v {
            ColumnarValue::Array(x) => Some(x.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let (x, y) = (a.to_array(len)?, b.to_array(len)?);
    let (x, y) = (
        x.as_primitive::<arrow::datatypes::Int64Type>(),
        y.as_primitive::<arrow::datatypes::Int64Type>(),
    );
    let out: Int64Array = x
        .iter()
        .zip(y.iter())
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if y != 0 => Some(x.wrapping_rem(y)),
            _ => None,
        })
        .collect();
    Ok(wrap_all(args, Arc::new(out)))
}

fn regexp_extract(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let [text, pattern, group] = args else {
        return exec_err!("REGEXP_EXTRACT expects (string, regex, group)");
    };
    let ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern))) = pattern else {
        return exec_err!("REGEXP_EXTRACT's regex must be a string literal");
    };
    let ColumnarValue::Scalar(ScalarValue::Int64(Some(group))) = group else {
        return exec_err!("REGEXP_EXTRACT's group must be an integer literal");
    };
    let regex = match regex::Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => return exec_err!("REGEXP_EXTRACT: bad regex '{pattern}': {e}"),
    };
    let group = usize::try_from(*group).unwrap_or(usize::MAX);
    let array = text.to_array(1)?;
    let values = array.as_string::<i32>();
    let mut out = StringBuilder::with_capacity(values.len(), 0);
    for v in values.iter() {
        out.append_option(
            v.and_then(|s| regex.captures(s))
                .and_then(|c| c.get(group))
                .map(|m| m.as_str()),
        );
    }
    Ok(wrap(text, Arc::new(out.finish())))
}

fn split_index(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let [text, separator, index] = args else {
        return exec_err!("SPLIT_INDEX expects (string, separator, index)");
    };
    let len = [text, separator, index]
        .iter()
        .find_map(|a| match a {
            ColumnarValue::Array(a) => Some(a.len()),
            ColumnarValue::Scalar(_) => None,
        })
        .unwrap_or(1);
    let (text, separator, index) = (
        text.to_array(len)?,
        separator.to_array(len)?,
        index.to_array(len)?,
    );
    let (text, separator) = (text.as_string::<i32>(), separator.as_string::<i32>());
    let index = index.as_primitive::<arrow::datatypes::Int64Type>();
    let mut out = StringBuilder::with_capacity(len, 0);
    for row in 0..len {
        if text.is_null(row) || separator.is_null(row) || index.is_null(row) {
            out.append_null();
            continue;
        }
        let piece = usize::try_from(index.value(row))
            .ok()
            .and_then(|i| text.value(row).split(separator.value(row)).nth(i));
        out.append_option(piece);
    }
    Ok(wrap_all(args, Arc::new(out.finish())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_translate() {
        assert_eq!(java_to_chrono("yyyy-MM-dd"), "%Y-%m-%d");
        assert_eq!(
            java_to_chrono("yyyy-MM-dd HH:mm:ss.SSS"),
            "%Y-%m-%d %H:%M:%S.%3f"
        );
        assert_eq!(java_to_chrono("yyyy-MM-dd'T'HH"), "%Y-%m-%dT%H");
    }
}
