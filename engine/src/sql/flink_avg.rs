//! Flink's `AVG`: the average of integers is an integer.
//!
//! Flink (after Calcite) types `AVG` of a `BIGINT` column as `BIGINT`, the
//! sum divided by the count and truncated toward zero, as Java's long
//! division does; DataFusion's gives a `DOUBLE`. Job files from Flink write
//! such averages into `BIGINT` columns (Nexmark q4 and q17 do), so Sluice
//! follows Flink. For every other type (floats, decimals, durations) this is
//! DataFusion's own `AVG`.
//!
//! The integer average sums exactly in 128 bits (any integer type, unsigned
//! 64-bit ones included); its partial state is the sum (`DECIMAL(38, 0)`)
//! and the count, so windows merge and checkpoints restore it like any
//! other accumulator's. `AVG(DISTINCT x)` keeps the distinct values.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Decimal128Type, Field, FieldRef, UInt64Type};
use datafusion::common::{ScalarValue, exec_err, plan_err};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, GroupsAccumulator, Signature, Volatility,
};

/// `AVG` (and its alias `MEAN`) with Flink's result types.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FlinkAvg {
    signature: Signature,
    aliases: Vec<String>,
}

impl FlinkAvg {
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec!["mean".to_string()],
        }
    }

    pub fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Self::new()))
    }
}

impl Default for FlinkAvg {
    fn default() -> Self {
        Self::new()
    }
}

/// DataFusion's `AVG`, for the types whose average is not an integer.
fn datafusion_avg() -> Arc<AggregateUDF> {
    datafusion::functions_aggregate::average::avg_udaf()
}

impl AggregateUDFImpl for FlinkAvg {
    fn name(&self) -> &str {
        "avg"
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let [arg] = arg_types else {
            return plan_err!("AVG takes one argument, not {}", arg_types.len());
        };
        Ok(vec![match arg {
            t if t.is_integer() => t.clone(),
            DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
            | DataType::Duration(_) => arg.clone(),
            DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Null => {
                DataType::Float64
            }
            other => return plan_err!("AVG is not defined for {other}: it needs a number"),
        }])
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types {
            [t] if t.is_integer() => Ok(t.clone()),
            _ => datafusion_avg().return_type(arg_types),
        }
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        let input = args.expr_fields[0].data_type();
        if !input.is_integer() {
            return datafusion_avg().accumulator(args);
        }
        if args.is_distinct {
            return Ok(Box::new(DistinctIntegerAvg {
                values: std::collections::HashSet::new(),
                result: args.return_field.data_type().clone(),
            }));
        }
        Ok(Box::new(IntegerAvg {
            sum: 0,
            count: 0,
            result: args.return_field.data_type().clone(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        if !args.input_fields[0].data_type().is_integer() {
            return datafusion_avg().inner().state_fields(args);
        }
        if args.is_distinct {
            return Ok(vec![Arc::new(Field::new_list(
                format!("{}[distinct]", args.name),
                Field::new_list_field(DataType::Decimal128(38, 0), true),
                true,
            ))]);
        }
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[sum]", args.name),
                DataType::Decimal128(38, 0),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[count]", args.name),
                DataType::UInt64,
                true,
            )),
        ])
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        !args.expr_fields[0].data_type().is_integer()
            && datafusion_avg().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> DfResult<Box<dyn GroupsAccumulator>> {
        datafusion_avg().create_groups_accumulator(args)
    }
}

/// The average of integers: an exact sum and a count.
#[derive(Debug)]
struct IntegerAvg {
    sum: i128,
    count: u64,
    result: DataType,
}

impl Accumulator for IntegerAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = exact(&values[0])?;
        let values = values.as_primitive::<Decimal128Type>();
        self.count += (values.len() - values.null_count()) as u64;
        self.sum += values.iter().flatten().sum::<i128>();
        Ok(())
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = exact(&values[0])?;
        let values = values.as_primitive::<Decimal128Type>();
        self.count -= (values.len() - values.null_count()) as u64;
        self.sum -= values.iter().flatten().sum::<i128>();
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let [sums, counts] = states else {
            return exec_err!("AVG's state has two columns, not {}", states.len());
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let counts = counts.as_primitive::<UInt64Type>();
        self.sum += sums.iter().flatten().sum::<i128>();
        self.count += counts.iter().flatten().sum::<u64>();
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Decimal128(Some(self.sum), 38, 0),
            ScalarValue::UInt64(Some(self.count)),
        ])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        integer_average(self.sum, self.count, &self.result)
    }

    fn size(&self) -> usize {
        size_of_val(self)
    }
}

/// Integers of any type as `DECIMAL(38, 0)`, which holds each exactly.
fn exact(values: &ArrayRef) -> DfResult<ArrayRef> {
    Ok(arrow::compute::cast(values, &DataType::Decimal128(38, 0))?)
}

/// `sum / count` truncated toward zero, in the input's type: between the
/// smallest and the largest value averaged, so it fits.
fn integer_average(sum: i128, count: u64, result: &DataType) -> DfResult<ScalarValue> {
    if count == 0 {
        return ScalarValue::try_from(result);
    }
    ScalarValue::Decimal128(Some(sum / i128::from(count)), 38, 0).cast_to(result)
}

/// `AVG(DISTINCT x)` of integers: the distinct values, exactly.
#[derive(Debug)]
struct DistinctIntegerAvg {
    values: std::collections::HashSet<i128>,
    result: DataType,
}

impl Accumulator for DistinctIntegerAvg {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let values = exact(&values[0])?;
        self.values
            .extend(values.as_primitive::<Decimal128Type>().iter().flatten());
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let [lists] = states else {
            return exec_err!("AVG(DISTINCT)'s state has one column, not {}", states.len());
        };
        for list in lists.as_list::<i32>().iter().flatten() {
            self.values
                .extend(list.as_primitive::<Decimal128Type>().iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let values: Vec<ScalarValue> = self
            .values
            .iter()
            .map(|v| ScalarValue::Decimal128(Some(*v), 38, 0))
            .collect();
        Ok(vec![ScalarValue::List(ScalarValue::new_list_nullable(
            &values,
            &DataType::Decimal128(38, 0),
        ))])
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        integer_average(
            self.values.iter().sum::<i128>(),
            self.values.len() as u64,
            &self.result,
        )
    }

    fn size(&self) -> usize {
        size_of_val(self) + self.values.capacity() * size_of::<i128>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Int32Array, Int64Array, UInt64Array};

    fn average(result: DataType, batches: &[ArrayRef]) -> ScalarValue {
        let mut avg = IntegerAvg {
            sum: 0,
            count: 0,
            result,
        };
        for batch in batches {
            avg.update_batch(std::slice::from_ref(batch))
                .expect("update");
        }
        avg.evaluate().expect("evaluate")
    }

    #[test]
    fn truncates_toward_zero_like_java_long_division() {
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)]));
        assert_eq!(
            average(DataType::Int64, &[values]),
            ScalarValue::Int64(Some(2))
        );
        let negative: ArrayRef = Arc::new(Int64Array::from(vec![-1, -2, -4]));
        assert_eq!(
            average(DataType::Int64, &[negative]),
            ScalarValue::Int64(Some(-2))
        );
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![7, 8]));
        assert_eq!(
            average(DataType::Int32, &[ints]),
            ScalarValue::Int32(Some(7))
        );
    }

    #[test]
    fn sums_exactly_beyond_64_bits_and_merges_states() {
        let big: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, i64::MAX, i64::MAX]));
        assert_eq!(
            average(DataType::Int64, &[big]),
            ScalarValue::Int64(Some(i64::MAX))
        );
        let mut merged = IntegerAvg {
            sum: 0,
            count: 0,
            result: DataType::Int64,
        };
        let sums: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(10), Some(21)])
                .with_precision_and_scale(38, 0)
                .expect("decimal"),
        );
        let counts: ArrayRef = Arc::new(UInt64Array::from(vec![2, 3]));
        merged.merge_batch(&[sums, counts]).expect("merge");
        assert_eq!(
            merged.evaluate().expect("evaluate"),
            ScalarValue::Int64(Some(6))
        );
    }

    #[test]
    fn unsigned_values_beyond_bigint_average_exactly() {
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, u64::MAX - 2]));
        assert_eq!(
            average(DataType::UInt64, &[big]),
            ScalarValue::UInt64(Some(u64::MAX - 1))
        );
    }

    #[test]
    fn distinct_averages_count_each_value_once_and_merge() {
        let mut avg = DistinctIntegerAvg {
            values: std::collections::HashSet::new(),
            result: DataType::Int64,
        };
        let values: ArrayRef = Arc::new(Int64Array::from(vec![1, 1, 2, 2, 6]));
        avg.update_batch(&[values]).expect("update");
        let state = avg.state().expect("state");
        let mut merged = DistinctIntegerAvg {
            values: std::collections::HashSet::new(),
            result: DataType::Int64,
        };
        let more: ArrayRef = Arc::new(Int64Array::from(vec![6, 7]));
        merged.update_batch(&[more]).expect("update");
        let state: Vec<ArrayRef> = state.iter().map(|s| s.to_array().expect("array")).collect();
        merged.merge_batch(&state).expect("merge");
        // {1, 2, 6} and {6, 7}: (1 + 2 + 6 + 7) / 4 = 4.
        assert_eq!(merged.evaluate().expect("avg"), ScalarValue::Int64(Some(4)));
        assert_eq!(avg.evaluate().expect("avg"), ScalarValue::Int64(Some(3)));
    }

    #[test]
    fn no_rows_average_to_null_and_other_types_keep_datafusion_types() {
        assert_eq!(average(DataType::Int64, &[]), ScalarValue::Int64(None));
        let avg = FlinkAvg::new();
        assert_eq!(
            avg.return_type(&[DataType::Int64]).expect("type"),
            DataType::Int64
        );
        assert_eq!(
            avg.return_type(&[DataType::Float64]).expect("type"),
            DataType::Float64
        );
        assert_eq!(
            avg.coerce_types(&[DataType::Float32]).expect("coerce"),
            vec![DataType::Float64]
        );
        assert!(avg.coerce_types(&[DataType::Utf8]).is_err());
    }
}
