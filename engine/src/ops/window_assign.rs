//! A window table-valued function whose rows are selected as they are, without
//! aggregation: each row gets `window_start`, `window_end` and `window_time`,
//! once per window it belongs to (so a hopping window repeats rows, as Flink's does).

use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMillisecondArray, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::aggregate::event_times;
use super::{Operator, OperatorContext, OperatorFactory, Output, Port};
use crate::error::{ExecContext, Result};
use crate::time::{WindowColumn, WindowKind};

#[derive(Debug, Clone)]
pub struct WindowAssign {
    pub kind: WindowKind,
    pub time_index: usize,
    /// The input's columns followed by the three window columns.
    pub schema: SchemaRef,
}

impl OperatorFactory for WindowAssign {
    fn name(&self) -> &str {
        "WindowAssign"
    }

    fn describe(&self) -> String {
        crate::sql::window_tvf::describe(&self.kind)
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(self.clone()))
    }

    /// The input's columns, then the three window columns.
    fn column_origin(&self, column: usize) -> super::ColumnOrigin {
        let inputs = self.schema.fields().len() - WindowColumn::ALL.len();
        match column.checked_sub(inputs) {
            Some(w) => match WindowColumn::ALL.get(w) {
                Some(&w) => super::ColumnOrigin::Window(w, self.kind),
                None => super::ColumnOrigin::Computed,
            },
            None => super::ColumnOrigin::Input { port: 0, column },
        }
    }
}

impl Operator for WindowAssign {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let times = event_times(batch.column(self.time_index))?;
        let mut rows = Vec::with_capacity(batch.num_rows());
        let mut starts = Vec::with_capacity(batch.num_rows());
        let mut ends = Vec::with_capacity(batch.num_rows());
        for (row, ts) in times.iter().enumerate() {
            let Some(ts) = ts else { continue };
            for (start, end) in self.kind.windows_of_slice(self.kind.slice_start(ts)) {
                rows.push(row as u32);
                starts.push(start);
                ends.push(end);
            }
        }
        let indices = UInt32Array::from(rows);
        let mut columns = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<Result<Vec<ArrayRef>, _>>()
            .exec_context(|| "repeating rows per window".to_string())?;
        for column in WindowColumn::ALL {
            let values: TimestampMillisecondArray = starts
                .iter()
                .zip(&ends)
                .map(|(s, e)| Some(column.value(*s, *e)))
                .collect();
            columns.push(Arc::new(values));
        }
        out.batch(
            RecordBatch::try_new(Arc::clone(&self.schema), columns)
                .exec_context(|| "adding window columns".to_string())?,
        );
        Ok(())
    }
}
