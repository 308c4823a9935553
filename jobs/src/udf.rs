//! Rust functions that job files can call, registered with every job.
//!
//! `count_char(s, c)` counts how often the character `c` occurs in `s`; the
//! Flink Nexmark benchmark's q14 defines it as a Java UDF, here it is Rust.
//! To add a function, write it with DataFusion's `create_udf` (or implement
//! `ScalarUDFImpl`) and add it to [`functions`].

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// The functions registered with every job.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![Arc::new(create_udf(
        "count_char",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(count_char),
    ))]
}

fn count_char(args: &[ColumnarValue]) -> DfResult<ColumnarValue> {
    let [text, needle] = args else {
        return exec_err!("count_char expects (string, character)");
    };
    let ColumnarValue::Scalar(ScalarValue::Utf8(Some(needle))) = needle else {
        return exec_err!("count_char's second argument must be a string literal");
    };
    let Some(c) = needle.chars().next() else {
        return exec_err!("count_char's second argument must not be empty");
    };
    let text = text.to_array(1)?;
    let text = text.as_string::<i32>();
    let counts: Int64Array = (0..text.len())
        .map(|i| (!text.is_null(i)).then(|| text.value(i).matches(c).count() as i64))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(counts)))
}
