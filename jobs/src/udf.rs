//! Rust functions that job files can call.
//!
//! Functions come in [`FunctionLibrary`]s. A library is opened once when a
//! job starts, with the job's parameters (its `SET` statements and `--set`
//! values) in a [`FunctionContext`], so a function can be configured, or
//! create a client or load reference data once, without globals; it is closed
//! when the job ends, however it ends.
//!
//! [`Builtins`] holds:
//! - `count_char(s, c)`: how often the character `c` occurs in `s` (the Flink
//!   Nexmark benchmark's q14 defines it as a Java UDF; here it is Rust);
//! - `job_param(name)`: the job parameter `name` as a string, or NULL.
//!
//! To add functions, implement [`FunctionLibrary`] (with DataFusion's
//! `create_udf` or `ScalarUDFImpl`) and pass it to
//! [`crate::JobSpec::with_library`].

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use sluice_engine::Result;

/// What a library is opened with.
#[derive(Debug, Clone)]
pub struct FunctionContext {
    /// The job's `SET` statements, overridden by `--set` values.
    pub parameters: Arc<BTreeMap<String, String>>,
}

/// A set of functions with a lifecycle.
pub trait FunctionLibrary: Send + Sync {
    /// Creates the library's functions for one job run.
    fn open(&self, context: &FunctionContext) -> Result<Vec<Arc<ScalarUDF>>>;

    /// Releases what `open` acquired; called once when the job ends.
    fn close(&self) {}
}

/// The functions every job has.
#[derive(Debug, Default)]
pub struct Builtins;

impl FunctionLibrary for Builtins {
    fn open(&self, context: &FunctionContext) -> Result<Vec<Arc<ScalarUDF>>> {
        let parameters = Arc::clone(&context.parameters);
        Ok(vec![
            Arc::new(create_udf(
                "count_char",
                vec![DataType::Utf8, DataType::Utf8],
                DataType::Int64,
                Volatility::Immutable,
                Arc::new(count_char),
            )),
            Arc::new(create_udf(
                "job_param",
                vec![DataType::Utf8],
                DataType::Utf8,
                Volatility::Immutable,
                Arc::new(move |args: &[ColumnarValue]| job_param(&parameters, args)),
            )),
        ])
    }
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

fn job_param(
    parameters: &BTreeMap<String, String>,
    args: &[ColumnarValue],
) -> DfResult<ColumnarValue> {
    let [ColumnarValue::Scalar(ScalarValue::Utf8(name))] = args else {
        return exec_err!("job_param expects one string literal, the parameter's name");
    };
    let value = name.as_ref().and_then(|n| parameters.get(n)).cloned();
    Ok(ColumnarValue::Scalar(ScalarValue::Utf8(value)))
}
