//! A changelog read in batch mode, made into the table it describes.
//!
//! A retract changelog (Debezium's envelopes, in files or a bounded topic)
//! is a multiset of changes: every `-U` or `-D` takes back one row equal to
//! it that a `+I` or `+U` added. Batch operators take final rows only, so
//! a batch job reads such a source through this operator: it counts every
//! distinct row (its input is hash-partitioned by the whole row), and when
//! its input ends sends each row as many times as it stands, as inserts.
//! The order in which files, partitions or records came does not matter,
//! so the answer does not depend on the parallelism. A row taken back more
//! often than it was added is a changelog that does not add up: it is
//! counted as skipped and reported once, with the number of such rows.
//!
//! It sends when the watermark reaches the end of time, which only an input
//! that ended sends (a stopped job sends none, and so no partial table),
//! and holds back the watermark until then. State: one keyed table,
//! `rows`, of each row and its count.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::kept_rows::KeptRows;
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
};
use crate::changelog;
use crate::error::{ExecContext, Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::time::{BEFORE_TIME, END_OF_TIME, Millis};

const ROWS: &str = "rows";
const COUNT: &str = "__count";

/// Makes [`ChangelogMaterialize`] instances.
#[derive(Debug)]
pub struct ChangelogMaterialize {
    /// The table whose changelog it reads, for messages.
    table: String,
    /// The rows' columns, without the row kind.
    schema: SchemaRef,
}

impl ChangelogMaterialize {
    pub fn new(table: &str, schema: SchemaRef) -> Self {
        Self {
            table: table.to_string(),
            schema,
        }
    }
}

impl OperatorFactory for ChangelogMaterialize {
    fn name(&self) -> &str {
        "ChangelogMaterialize"
    }

    fn describe(&self) -> String {
        "emit at end".to_string()
    }

    fn fingerprint(&self) -> String {
        format!("of {}", self.schema)
    }

    fn create(&self, context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(ChangelogMaterializeOp {
            table: self.table.clone(),
            rows: KeptRows::new(&self.schema, COUNT)?,
            counts: HashMap::new(),
            watermark: BEFORE_TIME,
            sent: false,
            metrics: Arc::clone(&context.metrics),
        }))
    }
}

struct ChangelogMaterializeOp {
    table: String,
    rows: KeptRows,
    /// How many times each row stands: added less taken back.
    counts: HashMap<Box<[u8]>, i64>,
    watermark: Millis,
    sent: bool,
    metrics: Arc<JobMetrics>,
}

impl ChangelogMaterializeOp {
    /// Sends every row standing, once, at the end.
    fn send_table(&mut self, out: &mut Output) -> Result<()> {
        if std::mem::replace(&mut self.sent, true) {
            return Ok(());
        }
        let mut standing: Vec<&[u8]> = Vec::new();
        let mut unmatched = 0;
        for (row, &count) in &self.counts {
            match count {
                ..0 => unmatched += count.unsigned_abs(),
                _ => standing.extend(std::iter::repeat_n(&**row, count as usize)),
            }
        }
        if unmatched > 0 {
            JobMetrics::add(&self.metrics.records_skipped, unmatched);
            tracing::warn!(
                table = %self.table,
                "{unmatched} retractions of the changelog of `{}` take back rows it never added: skipped",
                self.table
            );
        }
        if standing.is_empty() {
            return Ok(());
        }
        let columns = self.rows.decode(standing)?;
        let batch = RecordBatch::try_new(Arc::clone(self.rows.schema()), columns)
            .exec_context(|| "assembling the changelog's table".to_string())?;
        out.batch(batch);
        Ok(())
    }
}

impl Operator for ChangelogMaterializeOp {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, _out: &mut Output) -> Result<()> {
        let (data, kinds) = changelog::split(&batch)?;
        let kinds = kinds.ok_or_else(|| {
            SluiceError::Runtime("a changelog came without its row kinds".to_string())
        })?;
        let encoded = self.rows.encode(data.columns())?;
        for (i, &kind) in kinds.values().iter().enumerate() {
            let step = match changelog::is_retraction_byte(kind) {
                true => -1,
                false => 1,
            };
            let row = encoded.row(i);
            match self.counts.get_mut(row.as_ref()) {
                Some(count) => *count += step,
                None => {
                    self.counts.insert(row.as_ref().into(), step);
                }
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        if watermark < END_OF_TIME {
            return Ok(());
        }
        self.send_table(out)?;
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let kept = self
            .counts
            .iter()
            .filter(|(_, c)| **c != 0)
            .map(|(r, c)| (&**r, *c));
        Ok(Some(OperatorState {
            tables: self.rows.table(ROWS, kept)?.into_iter().collect(),
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        // Keyed by the whole row.
        let all: Vec<usize> = (0..self.rows.schema().fields().len()).collect();
        for (_, rows, counts) in self
            .rows
            .restored("ChangelogMaterialize", &state, ROWS, &all)?
        {
            for (i, count) in counts.values().iter().enumerate() {
                *self.counts.entry(rows.row(i).as_ref().into()).or_default() += count;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog::RowKind;
    use arrow::array::{AsArray, Int8Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::collections::BTreeMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn changes(rows: &[(RowKind, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            changelog::with_row_kind(&schema()),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.0.byte()))),
            ],
        )
        .expect("test input")
    }

    fn operator() -> (Box<dyn Operator>, Arc<JobMetrics>) {
        let metrics = Arc::new(JobMetrics::default());
        let context = OperatorContext {
            subtask: 0,
            parallelism: 1,
            parameters: Arc::new(BTreeMap::new()),
            metrics: Arc::clone(&metrics),
        };
        let op = ChangelogMaterialize::new("t", schema())
            .create(&context)
            .expect("operator");
        (op, metrics)
    }

    fn table(out: &mut Output) -> Vec<String> {
        let mut rows = Vec::new();
        for message in out.drain() {
            if let crate::ops::Message::Data(batch) = message {
                assert!(changelog::row_kinds(&batch).is_none(), "inserts only");
                let k = batch.column(0).as_string::<i32>();
                let v = batch.column(1).as_primitive::<Int64Type>();
                rows.extend(
                    (0..batch.num_rows()).map(|i| format!("{}={}", k.value(i), v.value(i))),
                );
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn the_rows_left_standing_are_sent_once_at_the_end_in_any_order_of_changes() {
        use RowKind::*;
        let (mut op, metrics) = operator();
        let mut out = Output::default();
        // A delete that comes before the create it takes back still
        // takes it back; a row added twice stands twice.
        op.on_batch(
            0,
            changes(&[(Delete, "a", 1), (Insert, "b", 2), (Insert, "b", 2)]),
            &mut out,
        )
        .expect("batch");
        op.on_batch(
            0,
            changes(&[
                (Insert, "a", 1),
                (UpdateBefore, "b", 2),
                (UpdateAfter, "b", 3),
            ]),
            &mut out,
        )
        .expect("batch");
        op.on_watermark(5, &mut out).expect("watermark");
        assert!(table(&mut out).is_empty());
        op.close(&mut out).expect("close");
        assert!(table(&mut out).is_empty(), "nothing when stopped");
        op.on_watermark(END_OF_TIME, &mut out).expect("watermark");
        assert_eq!(table(&mut out), ["b=2", "b=3"]);
        assert_eq!(JobMetrics::get(&metrics.records_skipped), 0);
    }

    #[test]
    fn retractions_of_rows_never_added_are_counted_and_the_state_restores() {
        use RowKind::*;
        let (mut op, _) = operator();
        let mut out = Output::default();
        op.on_batch(0, changes(&[(Insert, "a", 1), (Delete, "z", 9)]), &mut out)
            .expect("batch");
        let state = op.snapshot().expect("snapshot").expect("state");
        let (mut restored, metrics) = operator();
        restored
            .restore(RestoredState {
                tables: state
                    .tables
                    .iter()
                    .map(|t| (t.name.clone(), t.batches.clone()))
                    .collect(),
                watermark: state.watermark,
                key_groups: 0..crate::exec::exchange::MAX_PARALLELISM,
            })
            .expect("restore");
        restored
            .on_watermark(END_OF_TIME, &mut out)
            .expect("watermark");
        assert_eq!(table(&mut out), ["a=1"]);
        assert_eq!(JobMetrics::get(&metrics.records_skipped), 1);
    }
}
