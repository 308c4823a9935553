//! The watermark each row proposes: a table's `WATERMARK FOR` expression.
//!
//! Almost every table declares `rowtime - INTERVAL '<n>' <unit>` (or the
//! rowtime itself) over a `TIMESTAMP(3)` column. DataFusion evaluates such a
//! subtraction through calendar dates, row by row, which took half of the
//! time of a simple filter over Parquet; as a fixed delay it is one integer
//! subtraction per row. Every other expression is evaluated as written.

use std::sync::Arc;

use arrow::array::TimestampMillisecondArray;
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};

use super::Millis;
use crate::error::{ExecContext, Result};
use crate::ops::aggregate::event_times;

const DAY: Millis = 86_400_000;

/// Milliseconds within which every time is a date chrono can represent
/// (about 250,000 years either side of 1970).
const DATES: Millis = 8_000_000_000_000_000;

/// A table's watermark expression, over the rows its source emits.
#[derive(Debug, Clone)]
pub struct RowtimeWatermark {
    expr: Arc<dyn PhysicalExpr>,
    /// The rowtime column's index in the rows.
    time_index: usize,
    /// When the expression is the rowtime minus a fixed duration, and the
    /// rowtime is in milliseconds without a time zone: that duration.
    delay: Option<Millis>,
}

impl RowtimeWatermark {
    /// The watermark `expr` over rows of `schema` whose rowtime is column
    /// `time_index`.
    pub fn new(
        expr: Arc<dyn PhysicalExpr>,
        time_index: usize,
        schema: &arrow::datatypes::Schema,
    ) -> Self {
        let millis = schema
            .fields()
            .get(time_index)
            .is_some_and(|f| f.data_type() == &DataType::Timestamp(TimeUnit::Millisecond, None));
        let delay = millis
            .then(|| fixed_delay(expr.as_ref(), time_index))
            .flatten();
        Self {
            expr,
            time_index,
            delay,
        }
    }

    pub fn time_index(&self) -> usize {
        self.time_index
    }

    /// The watermark a row at `time` proposes, when that needs no row: the
    /// expression is the rowtime minus a fixed delay.
    pub fn of_time(&self, time: Millis) -> Option<Millis> {
        self.delay.and_then(|delay| minus_delay(time, delay))
    }

    /// The rowtime of each row of `batch`, in milliseconds.
    pub fn times(&self, batch: &RecordBatch) -> Result<TimestampMillisecondArray> {
        event_times(batch.column(self.time_index))
    }

    /// The watermark each row of `batch` proposes; `times` are its rowtimes.
    pub fn values(
        &self,
        batch: &RecordBatch,
        times: &TimestampMillisecondArray,
    ) -> Result<TimestampMillisecondArray> {
        if let Some(delay) = self.delay {
            let fast = times
                .try_unary::<_, TimestampMillisecondType, ()>(|t| minus_delay(t, delay).ok_or(()));
            if let Ok(values) = fast {
                return Ok(values);
            }
        }
        let values = self
            .expr
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .exec_context(|| format!("evaluating the watermark {}", self.expr))?;
        event_times(&values)
    }
}

/// `time - delay` as integers, when both are dates DataFusion can represent
/// (beyond them, the expression is left to DataFusion, to fail as it does).
fn minus_delay(time: Millis, delay: Millis) -> Option<Millis> {
    time.checked_sub(delay)
        .filter(|w| time.abs() <= DATES && w.abs() <= DATES)
}

/// `Some(d)` when `expr` is column `time_index` minus a duration `d` of
/// whole milliseconds and days (no months, whose length varies), or the
/// column itself (`d = 0`).
fn fixed_delay(expr: &dyn PhysicalExpr, time_index: usize) -> Option<Millis> {
    let is_rowtime = |e: &dyn PhysicalExpr| {
        e.downcast_ref::<Column>()
            .is_some_and(|c| c.index() == time_index)
    };
    if is_rowtime(expr) {
        return Some(0);
    }
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    if *binary.op() != Operator::Minus || !is_rowtime(binary.left().as_ref()) {
        return None;
    }
    let literal = binary.right().downcast_ref::<Literal>()?;
    match literal.value() {
        ScalarValue::IntervalMonthDayNano(Some(v))
            if v.months == 0 && v.nanoseconds % 1_000_000 == 0 =>
        {
            Millis::from(v.days)
                .checked_mul(DAY)?
                .checked_add(v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => Millis::from(v.days)
            .checked_mul(DAY)?
            .checked_add(Millis::from(v.milliseconds)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;
    use arrow::datatypes::{Field, IntervalMonthDayNano, Schema};

    fn batch() -> RecordBatch {
        let times = TimestampMillisecondArray::from(vec![
            Some(0),
            Some(-5_000),
            None,
            Some(1_700_000_000_123),
            Some(86_399_999),
        ]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        RecordBatch::try_new(schema, vec![Arc::new(times)]).expect("batch")
    }

    fn minus(interval: ScalarValue) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(
            Arc::new(Column::new("ts", 0)),
            Operator::Minus,
            Arc::new(Literal::new(interval)),
        ))
    }

    /// The fast path gives what DataFusion's evaluation gives.
    fn same_as_evaluated(expr: Arc<dyn PhysicalExpr>, delay: Option<Millis>) {
        let batch = batch();
        let watermark = RowtimeWatermark::new(Arc::clone(&expr), 0, &batch.schema());
        assert_eq!(watermark.delay, delay, "{expr}");
        let times = watermark.times(&batch).expect("times");
        let fast = watermark.values(&batch, &times).expect("values");
        let evaluated = event_times(
            &expr
                .evaluate(&batch)
                .and_then(|v| v.into_array(batch.num_rows()))
                .expect("evaluate"),
        )
        .expect("times");
        assert_eq!(fast, evaluated, "{expr}");
    }

    #[test]
    fn fixed_delays_are_integer_subtractions() {
        let mdn = |months, days, nanos| {
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(months, days, nanos)))
        };
        same_as_evaluated(Arc::new(Column::new("ts", 0)), Some(0));
        same_as_evaluated(minus(mdn(0, 0, 4_000_000_000)), Some(4_000));
        same_as_evaluated(minus(mdn(0, 2, 1_500_000_000)), Some(2 * DAY + 1_500));
        same_as_evaluated(minus(mdn(0, 0, -3_000_000)), Some(-3));
        // Months vary in length, and sub-millisecond parts round: evaluated.
        same_as_evaluated(minus(mdn(1, 0, 0)), None);
        same_as_evaluated(minus(mdn(0, 0, 1_500)), None);
    }

    #[test]
    fn times_beyond_dates_fail_as_evaluated() {
        let times = TimestampMillisecondArray::from(vec![Some(0), Some(i64::MAX - 1)]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]));
        let batch =
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(times)]).expect("batch");
        let expr = minus(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 0, 4_000_000_000),
        )));
        let watermark = RowtimeWatermark::new(expr, 0, &schema);
        assert_eq!(watermark.delay, Some(4_000));
        let times = watermark.times(&batch).expect("times");
        assert!(
            watermark.values(&batch, &times).is_err(),
            "a time past chrono's dates is an error, as DataFusion makes it"
        );
    }

    #[test]
    fn other_rowtime_types_are_evaluated() {
        let schema = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        )]);
        let expr = minus(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 0, 4_000_000_000),
        )));
        assert_eq!(RowtimeWatermark::new(expr, 0, &schema).delay, None);
    }
}
