//! Session windows: per key, rows closer than the gap form one session.
//!
//! As in Flink, a session window of a row at `t` is `[t, t + gap)` and two
//! sessions merge when their windows overlap or touch. The operator keeps the
//! rows of sessions that may still grow; when the watermark passes a
//! session's end it sorts the buffered rows by key and time, cuts them into
//! sessions, aggregates the closed ones (vectorised, one group per session)
//! and keeps the rest.
//!
//! A row that arrives behind the watermark still joins a session that has
//! not fired, as in Flink; it is late only if its session, once cut, holds
//! nothing but such rows.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray, UInt32Array,
};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::aggregate::{AggregateSpec, Groups, Windows, event_times};
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
    StateTable,
};
use crate::error::{ExecContext, Result};
use crate::time::{BEFORE_TIME, END_OF_TIME, Millis};

/// The state table of the rows of open sessions.
const SESSIONS: &str = "sessions";

#[derive(Debug, Clone)]
pub struct SessionAggregate {
    pub gap: Millis,
    pub time_index: usize,
    pub spec: Arc<AggregateSpec>,
}

impl OperatorFactory for SessionAggregate {
    fn name(&self) -> &str {
        "SessionWindowAggregate"
    }

    fn describe(&self) -> String {
        format!(
            "SESSION(gap {}) {}",
            crate::plan::explain::duration(self.gap),
            self.spec.describe()
        )
    }

    fn fingerprint(&self) -> String {
        let keys: Vec<String> = self.spec.keys.iter().map(|k| k.to_string()).collect();
        format!(
            "SESSION(gap {}) keys [{}]",
            crate::plan::explain::duration(self.gap),
            keys.join(", ")
        )
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Sessions {
            plan: self.clone(),
            buffer: Vec::new(),
            watermark: BEFORE_TIME,
            next_close: END_OF_TIME,
        }))
    }
}

struct Sessions {
    plan: SessionAggregate,
    /// Rows of sessions that have not closed, each with a last column that
    /// says whether it arrived behind the watermark.
    buffer: Vec<RecordBatch>,
    watermark: Millis,
    /// No buffered session can close before the watermark reaches this.
    next_close: Millis,
}

impl Sessions {
    fn close_sessions(&mut self, out: &mut Output) -> Result<()> {
        let Some(first) = self.buffer.first() else {
            return Ok(());
        };
        let schema = first.schema();
        let batch = concat_batches(&schema, &self.buffer)
            .exec_context(|| "gathering session rows".to_string())?;
        self.buffer.clear();
        let spec = &self.plan.spec;
        let evaluated = spec.evaluate(&batch)?;
        let times = event_times(batch.column(self.plan.time_index))?;
        let behind = batch.column(batch.num_columns() - 1).as_boolean().clone();
        let mut sort: Vec<SortColumn> = evaluated
            .keys
            .iter()
            .map(|k| SortColumn {
                values: Arc::clone(k),
                options: None,
            })
            .collect();
        sort.push(SortColumn {
            values: Arc::new(times.clone()),
            options: None,
        });
        let order =
            lexsort_to_indices(&sort, None).exec_context(|| "sorting sessions".to_string())?;
        // Keys as comparable rows, to see where one key's rows end.
        let key_rows = if evaluated.keys.is_empty() {
            None
        } else {
            let converter = RowConverter::new(
                evaluated
                    .keys
                    .iter()
                    .map(|k| SortField::new(k.data_type().clone()))
                    .collect(),
            )
            .exec_context(|| "comparing session keys".to_string())?;
            Some(
                converter
                    .convert_columns(&evaluated.keys)
                    .exec_context(|| "comparing session keys".to_string())?,
            )
        };
        // Walk rows in (key, time) order and cut sessions.
        let gap = self.plan.gap;
        let mut closed_rows: Vec<u32> = Vec::new();
        let mut closed_bounds: Vec<(Millis, Millis)> = Vec::new();
        let mut open_rows: Vec<u32> = Vec::new();
        let mut late_rows: Vec<u32> = Vec::new();
        let mut next_close = END_OF_TIME;
        let order = order.values();
        let mut i = 0;
        while i < order.len() {
            let first_row = order[i] as usize;
            let start = times.value(first_row);
            let mut last = start;
            let mut j = i + 1;
            while j < order.len() {
                let row = order[j] as usize;
                let same_key = key_rows
                    .as_ref()
                    .is_none_or(|k| k.row(row) == k.row(first_row));
                if !same_key || times.value(row) > last + gap {
                    break;
                }
                last = times.value(row);
                j += 1;
            }
            let end = last + gap;
            let session = &order[i..j];
            if session.iter().all(|&r| behind.value(r as usize)) {
                late_rows.extend_from_slice(session);
            } else if end - 1 <= self.watermark {
                closed_rows.extend_from_slice(&order[i..j]);
                closed_bounds.extend(std::iter::repeat_n((start, end), j - i));
            } else {
                open_rows.extend_from_slice(&order[i..j]);
                next_close = next_close.min(end - 1);
            }
            i = j;
        }
        self.next_close = next_close;
        if !late_rows.is_empty() {
            let late = take_record_batch(&batch, &UInt32Array::from(late_rows))
                .and_then(|b| b.project(&(0..b.num_columns() - 1).collect::<Vec<_>>()))
                .exec_context(|| "setting late rows aside".to_string())?;
            out.late(late);
        }
        if !open_rows.is_empty() {
            let open = take_record_batch(&batch, &UInt32Array::from(open_rows))
                .exec_context(|| "keeping open sessions".to_string())?;
            self.buffer.push(open);
        }
        if closed_rows.is_empty() {
            return Ok(());
        }
        // Aggregate closed sessions: the group key is (keys..., start, end).
        let indices = UInt32Array::from(closed_rows);
        let mut rows = evaluated.take(&indices)?;
        let starts: ArrayRef = Arc::new(TimestampMillisecondArray::from(
            closed_bounds.iter().map(|b| b.0).collect::<Vec<_>>(),
        ));
        let ends: ArrayRef = Arc::new(TimestampMillisecondArray::from(
            closed_bounds.iter().map(|b| b.1).collect::<Vec<_>>(),
        ));
        rows.keys.push(starts);
        rows.keys.push(ends);
        let mut fields: Vec<Field> = spec
            .key_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let ts = DataType::Timestamp(TimeUnit::Millisecond, None);
        fields.push(Field::new("session_start", ts.clone(), false));
        fields.push(Field::new("session_end", ts, false));
        let mut groups = Groups::new(&Arc::new(Schema::new(fields)), &spec.aggregates)?;
        groups.update(&rows)?;
        let mut results = groups.evaluate()?;
        let ends = results.keys.pop();
        let starts = results.keys.pop();
        let (Some(starts), Some(ends)) = (starts, ends) else {
            return Ok(());
        };
        let starts = starts.as_primitive::<TimestampMillisecondType>();
        let ends = ends.as_primitive::<TimestampMillisecondType>();
        let batch = spec.output_batch(results, Windows::PerRow(starts, ends))?;
        out.batch(batch);
        Ok(())
    }
}

impl Operator for Sessions {
    /// The rows of sessions still open, as buffered.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        if self.buffer.len() > 1 {
            let schema = self.buffer[0].schema();
            let all = concat_batches(&schema, &self.buffer)
                .exec_context(|| "gathering session rows".to_string())?;
            self.buffer = vec![all];
        }
        Ok(Some(OperatorState {
            tables: vec![StateTable {
                name: SESSIONS.to_string(),
                batches: self.buffer.clone(),
                keyed: !self.plan.spec.keys.is_empty(),
            }],
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        for batch in state.table(SESSIONS) {
            let fits = batch.num_columns() > self.plan.time_index + 1
                && batch
                    .schema()
                    .fields()
                    .last()
                    .is_some_and(|f| f.name() == "__behind");
            if !fits {
                return Err(crate::SluiceError::Config(format!(
                    "the checkpoint's session state does not fit the job's: columns {} (was the query changed?)",
                    batch.schema()
                )));
            }
            let keys = self.plan.spec.evaluate(batch)?.keys;
            let batch = state.owned(batch, &keys)?;
            if batch.num_rows() == 0 {
                continue;
            }
            let times = event_times(batch.column(self.plan.time_index))?;
            if let Some(min) = arrow::compute::min(&times) {
                self.next_close = self.next_close.min(min + self.plan.gap - 1);
            }
            self.buffer.push(batch);
        }
        Ok(())
    }

    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        // Open sessions keep their rows, so rows carried for late data
        // would be kept twice, and a checkpoint's state would depend on
        // whether the job keeps late rows: a session's late rows are its
        // columns ([`crate::ops::late_row`]).
        let batch = crate::ops::late_row::without(batch)?;
        let times = event_times(batch.column(self.plan.time_index))?;
        // Rows without a time belong to no session.
        let batch = if times.null_count() > 0 {
            let has_time = arrow::compute::is_not_null(&times)
                .exec_context(|| "checking event times".to_string())?;
            let untimed = arrow::compute::not(&has_time)
                .and_then(|m| arrow::compute::filter_record_batch(&batch, &m))
                .exec_context(|| "setting rows without a time aside".to_string())?;
            out.late(untimed);
            arrow::compute::filter_record_batch(&batch, &has_time)
                .exec_context(|| "setting rows without a time aside".to_string())?
        } else {
            batch
        };
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let times = event_times(batch.column(self.plan.time_index))?;
        let gap = self.plan.gap;
        let watermark = self.watermark;
        // Whether the row's own session would already have fired.
        let behind: BooleanArray = times
            .values()
            .iter()
            .map(|t| Some(t + gap - 1 <= watermark))
            .collect();
        if let Some(min) = arrow::compute::min(&times) {
            self.next_close = self.next_close.min(min + gap - 1);
        }
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(behind));
        let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new("__behind", DataType::Boolean, false)));
        self.buffer.push(
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
                .exec_context(|| "buffering session rows".to_string())?,
        );
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if self.watermark >= self.next_close {
            self.close_sessions(out)?;
        }
        out.watermark(self.watermark);
        Ok(())
    }
}
