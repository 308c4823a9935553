//! MIN, MAX and COUNT(DISTINCT) that can take rows back.
//!
//! Over an updating input an aggregate must forget a row it was given: a
//! `-U` or `-D` of the value that is the current maximum makes the next
//! largest one the maximum. DataFusion's accumulators for window frames
//! retract only in the order rows came (a frame slides), and keep no count
//! per value in their state, so they cannot serve a changelog nor be
//! checkpointed faithfully. [`ValueCounts`] keeps, as Flink's
//! `MaxWithRetractAggFunction` does, every distinct value with how many
//! rows hold it, in value order: the minimum is the first, the maximum the
//! last, the distinct count their number. Values are kept in arrow-row's
//! byte-comparable encoding, so any orderable type works the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, UInt64Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, UInt64Type};
use arrow::row::{RowConverter, SortField};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::Accumulator;

/// What [`ValueCounts`] computes from its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Min,
    Max,
    CountDistinct,
}

/// Every distinct non-null value with its number of rows.
#[derive(Debug)]
pub struct ValueCounts {
    reduce: Reduce,
    data_type: DataType,
    converter: RowConverter,
    counts: BTreeMap<Box<[u8]>, u64>,
}

impl ValueCounts {
    /// Counts values of `data_type`.
    pub fn new(reduce: Reduce, data_type: &DataType) -> DfResult<Self> {
        Ok(Self {
            reduce,
            data_type: data_type.clone(),
            converter: RowConverter::new(vec![SortField::new(data_type.clone())])?,
            counts: BTreeMap::new(),
        })
    }

    /// Adds `count` rows of each valid value of `values` (`count` per row
    /// when given, else one).
    fn add(&mut self, values: &ArrayRef, counts: Option<&UInt64Array>) -> DfResult<()> {
        let rows = self.converter.convert_columns(&[Arc::clone(values)])?;
        for i in (0..values.len()).filter(|&i| values.is_valid(i)) {
            let n = counts.map_or(1, |c| c.value(i));
            *self.counts.entry(rows.row(i).as_ref().into()).or_default() += n;
        }
        Ok(())
    }

    /// The distinct values, in order, as one array.
    fn values(&self) -> DfResult<ArrayRef> {
        let parser = self.converter.parser();
        let rows = self.counts.keys().map(|bytes| parser.parse(bytes));
        let mut columns = self.converter.convert_rows(rows)?;
        Ok(columns.remove(0))
    }

    /// The value at one end of the order, or NULL when there is none.
    fn end(&self, last: bool) -> DfResult<ScalarValue> {
        let bytes = match last {
            true => self.counts.keys().next_back(),
            false => self.counts.keys().next(),
        };
        let Some(bytes) = bytes else {
            return ScalarValue::try_from(&self.data_type);
        };
        let parser = self.converter.parser();
        let column = self.converter.convert_rows([parser.parse(bytes)])?;
        ScalarValue::try_from_array(&column[0], 0)
    }
}

/// One list value holding `array`.
fn list_of(array: ArrayRef) -> ScalarValue {
    let field = Arc::new(Field::new_list_field(array.data_type().clone(), true));
    let offsets = OffsetBuffer::from_lengths([array.len()]);
    ScalarValue::List(Arc::new(ListArray::new(field, offsets, array, None)))
}

impl Accumulator for ValueCounts {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        self.add(&values[0], None)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let rows = self.converter.convert_columns(&[Arc::clone(&values[0])])?;
        for i in (0..values[0].len()).filter(|&i| values[0].is_valid(i)) {
            let key = rows.row(i);
            // A value never added is ignored, as Flink's retracting MAX
            // does with a retraction that found no state.
            if let Some(n) = self.counts.get_mut(key.as_ref()) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(key.as_ref());
                }
            }
        }
        Ok(())
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        match self.reduce {
            Reduce::Min => self.end(false),
            Reduce::Max => self.end(true),
            Reduce::CountDistinct => Ok(ScalarValue::Int64(Some(self.counts.len() as i64))),
        }
    }

    /// Two lists: the distinct values and how many rows hold each.
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        let counts: ArrayRef =
            Arc::new(UInt64Array::from_iter_values(self.counts.values().copied()));
        Ok(vec![list_of(self.values()?), list_of(counts)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (values, counts) = (states[0].as_list::<i32>(), states[1].as_list::<i32>());
        for i in 0..values.len() {
            let counts = counts.value(i);
            self.add(&values.value(i), Some(counts.as_primitive::<UInt64Type>()))?;
        }
        Ok(())
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self
                .counts
                .keys()
                .map(|k| k.len() + size_of::<u64>() + 32)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn ints(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    #[test]
    fn taking_back_the_maximum_makes_the_next_one_the_maximum() {
        let mut max = ValueCounts::new(Reduce::Max, &DataType::Int64).expect("max");
        assert_eq!(max.evaluate().expect("max"), ScalarValue::Int64(None));
        max.update_batch(&[ints(&[Some(5), Some(9), None, Some(9), Some(-3)])])
            .expect("add");
        assert_eq!(max.evaluate().expect("max"), ScalarValue::Int64(Some(9)));
        max.retract_batch(&[ints(&[Some(9)])]).expect("retract");
        assert_eq!(max.evaluate().expect("max"), ScalarValue::Int64(Some(9)));
        max.retract_batch(&[ints(&[Some(9), Some(7)])])
            .expect("retract");
        assert_eq!(max.evaluate().expect("max"), ScalarValue::Int64(Some(5)));
        let mut min = ValueCounts::new(Reduce::Min, &DataType::Int64).expect("min");
        min.update_batch(&[ints(&[Some(5), Some(-3)])])
            .expect("add");
        min.retract_batch(&[ints(&[Some(-3)])]).expect("retract");
        assert_eq!(min.evaluate().expect("min"), ScalarValue::Int64(Some(5)));
    }

    #[test]
    fn the_state_keeps_every_count_so_a_restore_retracts_as_before() {
        let strings = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let mut distinct = ValueCounts::new(Reduce::CountDistinct, &DataType::Utf8).expect("new");
        distinct
            .update_batch(&[strings(&["b", "a", "b", "c"])])
            .expect("add");
        let state: Vec<ArrayRef> = distinct
            .state()
            .expect("state")
            .iter()
            .map(|s| s.to_array().expect("array"))
            .collect();
        let mut restored = ValueCounts::new(Reduce::CountDistinct, &DataType::Utf8).expect("new");
        restored.merge_batch(&state).expect("merge");
        assert_eq!(restored.evaluate().expect("n"), ScalarValue::Int64(Some(3)));
        // "b" was there twice: one retraction leaves it counted.
        restored
            .retract_batch(&[strings(&["b", "c"])])
            .expect("retract");
        assert_eq!(restored.evaluate().expect("n"), ScalarValue::Int64(Some(2)));
    }
}
