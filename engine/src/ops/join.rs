//! The regular inner join of two append-only streams, on equality keys.
//!
//! A row that comes on either input (port 0 the left, port 1 the right) is
//! joined at once with every row of the other side that has its key, then
//! kept for the rows still to come on the other side: Flink's regular join,
//! whose output over insert-only inputs is insert-only too. Both sides are
//! state tables (`left`, `right`), keyed by the join key, which is what the
//! hash exchanges before the join route by; a row with a null key matches
//! nothing, as in SQL, unless the keys are compared with `IS NOT DISTINCT
//! FROM`. A residual condition (the non-equality part of `ON`) is applied
//! to the joined rows. Once one input has ended, the other's rows are no
//! longer kept (nothing is left for them to meet), so a bounded table
//! joined with an endless stream holds only the table.
//!
//! In batch mode the same operator runs over inputs that end; its result is
//! the inner join of the two tables. In stream mode its state grows with
//! both inputs, as Flink's does without `'table.exec.state.ttl'`.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{filter_record_batch, interleave, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
    StateTable,
};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, Millis};

/// The join in the job graph: its keys on each side, the condition left
/// over, and the schema of the joined rows (left columns, then right).
#[derive(Debug, Clone)]
pub struct InnerJoin {
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// `IS NOT DISTINCT FROM`: a NULL key meets a NULL key.
    pub nulls_equal: bool,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub schema: SchemaRef,
}

const SIDES: [&str; 2] = ["left", "right"];

impl OperatorFactory for InnerJoin {
    fn name(&self) -> &str {
        "InnerJoin"
    }

    fn describe(&self) -> String {
        let pairs: Vec<String> = self
            .left_keys
            .iter()
            .zip(&self.right_keys)
            .map(|(l, r)| {
                format!(
                    "{} = {}",
                    crate::plan::sql_text::expr(l.as_ref()),
                    crate::plan::sql_text::expr(r.as_ref())
                )
            })
            .collect();
        match &self.filter {
            Some(f) => format!(
                "on {} and {}",
                pairs.join(" and "),
                crate::plan::sql_text::expr(f.as_ref())
            ),
            None => format!("on {}", pairs.join(" and ")),
        }
    }

    fn fingerprint(&self) -> String {
        let keys = |k: &[Arc<dyn PhysicalExpr>]| {
            k.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "[{}] = [{}] {:?}",
            keys(&self.left_keys),
            keys(&self.right_keys),
            self.filter.as_ref().map(|f| f.to_string())
        )
    }

    fn keeps_event_time(&self) -> bool {
        false
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let types = self
            .left_keys
            .iter()
            .map(|k| k.data_type(&self.left_schema))
            .collect::<datafusion::error::Result<Vec<DataType>>>()
            .exec_context(|| "typing the join keys".to_string())?;
        let converter = RowConverter::new(types.into_iter().map(SortField::new).collect())
            .map_err(|e| SluiceError::Runtime(format!("encoding join keys: {e}")))?;
        Ok(Box::new(JoinState {
            plan: self.clone(),
            converter,
            sides: [Side::default(), Side::default()],
            ended: [false, false],
            watermark: BEFORE_TIME,
        }))
    }
}

/// The rows one side has seen, and where each key's rows are.
#[derive(Debug, Default)]
struct Side {
    batches: Vec<RecordBatch>,
    by_key: HashMap<Box<[u8]>, Vec<(usize, usize)>>,
}

struct JoinState {
    plan: InnerJoin,
    converter: RowConverter,
    sides: [Side; 2],
    /// Which inputs have ended.
    ended: [bool; 2],
    watermark: Millis,
}

impl JoinState {
    fn keys_of(&self, port: Port, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let exprs = if port == 0 {
            &self.plan.left_keys
        } else {
            &self.plan.right_keys
        };
        exprs
            .iter()
            .map(|k| {
                k.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<datafusion::error::Result<_>>()
            .exec_context(|| format!("evaluating the {} join keys", SIDES[port]))
    }

    /// Joins `batch` (of side `port`) with what the other side holds, then
    /// keeps it.
    fn join_and_keep(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.keys_of(port, &batch)?;
        let rows = self
            .converter
            .convert_columns(&keys)
            .map_err(|e| SluiceError::Runtime(format!("encoding join keys: {e}")))?;
        let nulls_equal = self.plan.nulls_equal;
        let has_null = |i: usize| !nulls_equal && keys.iter().any(|k| k.is_null(i));
        let other = &self.sides[1 - port];
        let mut incoming: Vec<u32> = Vec::new();
        let mut stored: Vec<(usize, usize)> = Vec::new();
        for i in 0..batch.num_rows() {
            if has_null(i) {
                continue;
            }
            if let Some(matches) = other.by_key.get(rows.row(i).as_ref()) {
                for m in matches {
                    incoming.push(i as u32);
                    stored.push(*m);
                }
            }
        }
        if !incoming.is_empty() {
            let joined = self.joined(port, &batch, &incoming, &stored)?;
            let joined = match &self.plan.filter {
                Some(filter) => {
                    let mask = filter
                        .evaluate(&joined)
                        .and_then(|v| v.into_array(joined.num_rows()))
                        .exec_context(|| "evaluating the join condition".to_string())?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<arrow::array::BooleanArray>()
                        .ok_or_else(|| {
                            SluiceError::Runtime("the join condition is not BOOLEAN".into())
                        })?;
                    filter_record_batch(&joined, mask)
                        .exec_context(|| "filtering joined rows".to_string())?
                }
                None => joined,
            };
            out.batch(joined);
        }
        self.keep_keyed(port, batch, &keys, &rows);
        Ok(())
    }

    /// The joined rows: row `incoming[k]` of `batch` beside stored row
    /// `stored[k]` of the other side, left columns first.
    fn joined(
        &self,
        port: Port,
        batch: &RecordBatch,
        incoming: &[u32],
        stored: &[(usize, usize)],
    ) -> Result<RecordBatch> {
        let fail = |e: arrow::error::ArrowError| SluiceError::Runtime(format!("joining rows: {e}"));
        let indices = UInt32Array::from(incoming.to_vec());
        let these: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()
            .map_err(fail)?;
        let other = &self.sides[1 - port];
        let width = other.batches.first().map_or(0, RecordBatch::num_columns);
        let mut those = Vec::with_capacity(width);
        for c in 0..width {
            let arrays: Vec<&dyn Array> =
                other.batches.iter().map(|b| b.column(c).as_ref()).collect();
            those.push(interleave(&arrays, stored).map_err(fail)?);
        }
        let columns = if port == 0 {
            these.into_iter().chain(those).collect()
        } else {
            those.into_iter().chain(these).collect()
        };
        RecordBatch::try_new(Arc::clone(&self.plan.schema), columns).map_err(fail)
    }
}

impl Operator for JoinState {
    fn on_batch(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if port > 1 {
            return Err(SluiceError::Runtime(format!(
                "a join has two inputs, not a port {port}"
            )));
        }
        self.join_and_keep(port, batch, out)
    }

    fn on_input_end(&mut self, port: Port, _out: &mut Output) -> Result<()> {
        if let Some(ended) = self.ended.get_mut(port) {
            *ended = true;
            // The other side's rows waited for rows of this one.
            self.sides[1 - port] = Side::default();
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut tables = Vec::with_capacity(SIDES.len());
        for (port, name) in SIDES.iter().enumerate() {
            self.compact(port)?;
            tables.push(StateTable {
                name: name.to_string(),
                batches: self.sides[port].batches.clone(),
                keyed: true,
            });
        }
        Ok(Some(OperatorState {
            tables,
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        for (port, name) in SIDES.iter().enumerate() {
            for batch in state.table(name) {
                let keys = self.keys_of(port, batch)?;
                let owned = state.owned(batch, &keys)?;
                self.keep(port, owned)?;
            }
        }
        Ok(())
    }
}

impl JoinState {
    /// One batch of side `port`'s rows in place of many, so that a
    /// checkpoint writes (and a restore reads) one; its rows keep their
    /// order.
    fn compact(&mut self, port: Port) -> Result<()> {
        let side = &mut self.sides[port];
        if side.batches.len() <= 1 {
            return Ok(());
        }
        let schema = side.batches[0].schema();
        let all = arrow::compute::concat_batches(&schema, &side.batches)
            .exec_context(|| "gathering join state".to_string())?;
        self.sides[port] = Side::default();
        self.keep(port, all)
    }

    /// Keeps `batch` as side `port`'s rows, without joining it.
    fn keep(&mut self, port: Port, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.keys_of(port, &batch)?;
        let rows = self
            .converter
            .convert_columns(&keys)
            .map_err(|e| SluiceError::Runtime(format!("encoding join keys: {e}")))?;
        self.keep_keyed(port, batch, &keys, &rows);
        Ok(())
    }

    /// Keeps `batch` as side `port`'s rows, its keys already evaluated.
    fn keep_keyed(
        &mut self,
        port: Port,
        batch: RecordBatch,
        keys: &[ArrayRef],
        rows: &arrow::row::Rows,
    ) {
        // Once the other input has ended, no row is left to meet this one.
        if self.ended[1 - port] {
            return;
        }
        let nulls_equal = self.plan.nulls_equal;
        let side = &mut self.sides[port];
        let at = side.batches.len();
        for i in 0..batch.num_rows() {
            if nulls_equal || !keys.iter().any(|k| k.is_null(i)) {
                side.by_key
                    .entry(rows.row(i).as_ref().into())
                    .or_default()
                    .push((at, i));
            }
        }
        side.batches.push(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn sides() -> (SchemaRef, SchemaRef, SchemaRef) {
        let left = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("l", DataType::Utf8, false),
        ]));
        let right = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("r", DataType::Int64, false),
        ]));
        let joined = Arc::new(Schema::new(
            left.fields()
                .iter()
                .chain(right.fields().iter())
                .cloned()
                .collect::<Vec<_>>(),
        ));
        (left, right, joined)
    }

    fn join() -> InnerJoin {
        let (left_schema, right_schema, schema) = sides();
        InnerJoin {
            left_keys: vec![Arc::new(Column::new("k", 0))],
            right_keys: vec![Arc::new(Column::new("k", 0))],
            filter: None,
            nulls_equal: false,
            left_schema,
            right_schema,
            schema,
        }
    }

    fn context(subtask: usize, parallelism: usize) -> OperatorContext {
        OperatorContext {
            subtask,
            parallelism,
            parameters: Arc::default(),
            metrics: Arc::default(),
        }
    }

    fn left(keys: &[Option<i64>], names: &[&str]) -> RecordBatch {
        RecordBatch::try_new(
            sides().0,
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .expect("left")
    }

    fn right(keys: &[Option<i64>], values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            sides().1,
            vec![
                Arc::new(Int64Array::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .expect("right")
    }

    /// (left name, right value) of every joined row, sorted.
    fn pairs(out: &mut Output) -> Vec<(String, i64)> {
        let mut pairs = Vec::new();
        for message in out.drain() {
            if let super::super::Message::Data(batch) = message {
                let names = batch.column(1).as_string::<i32>();
                let values = batch.column(3).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    pairs.push((names.value(i).to_string(), values.value(i)));
                }
            }
        }
        pairs.sort();
        pairs
    }

    #[test]
    fn rows_join_what_came_before_and_after_on_either_side() {
        let mut op = join().create(&context(0, 1)).expect("join");
        let mut out = Output::default();
        op.on_batch(
            0,
            left(&[Some(1), Some(2), None], &["a", "b", "n"]),
            &mut out,
        )
        .expect("left");
        assert!(pairs(&mut out).is_empty());
        op.on_batch(
            1,
            right(&[Some(1), Some(1), None, Some(3)], &[10, 11, 99, 30]),
            &mut out,
        )
        .expect("right");
        assert_eq!(
            pairs(&mut out),
            vec![("a".to_string(), 10), ("a".to_string(), 11)],
            "a NULL key joins nothing"
        );
        op.on_batch(0, left(&[Some(3), Some(1)], &["c", "a2"]), &mut out)
            .expect("left");
        assert_eq!(
            pairs(&mut out),
            vec![
                ("a2".to_string(), 10),
                ("a2".to_string(), 11),
                ("c".to_string(), 30)
            ]
        );
    }

    /// Both sides' rows survive a checkpoint, and a restore at another
    /// parallelism gives each subtask the rows of its key groups only: the
    /// rows that come after join exactly as before.
    #[test]
    fn both_sides_restore_at_another_parallelism() {
        let mut op = join().create(&context(0, 1)).expect("join");
        let mut out = Output::default();
        let keys: Vec<Option<i64>> = (0..40).map(Some).collect();
        let names: Vec<String> = (0..40).map(|k| format!("l{k}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        op.on_batch(0, left(&keys, &names), &mut out).expect("left");
        op.on_batch(1, right(&keys[..20], &[7; 20]), &mut out)
            .expect("right");
        pairs(&mut out);
        let state = op.snapshot().expect("snapshot").expect("state");
        assert_eq!(state.tables.len(), 2);
        let mut joined = Vec::new();
        for subtask in 0..2 {
            let key_groups = crate::exec::exchange::key_groups_of(subtask, 2);
            let mut restored = join().create(&context(subtask, 2)).expect("join");
            restored
                .restore(RestoredState {
                    tables: state
                        .tables
                        .iter()
                        .map(|t| (t.name.clone(), t.batches.clone()))
                        .collect(),
                    watermark: state.watermark,
                    key_groups,
                })
                .expect("restore");
            let mut out = Output::default();
            // Each key once more on the right: it joins its left row where
            // that row's key group went.
            restored
                .on_batch(1, right(&keys, &[8; 40]), &mut out)
                .expect("right");
            joined.extend(pairs(&mut out));
        }
        joined.sort();
        let mut expected: Vec<(String, i64)> = (0..40).map(|k| (format!("l{k}"), 8)).collect();
        expected.sort();
        // One match per key, l{k} with 8, on the one subtask that holds
        // the left row of its key group.
        assert_eq!(joined, expected);
    }

    /// After the left input ends, right rows still join it but are not
    /// kept; the left rows stay for them.
    #[test]
    fn an_ended_input_lets_the_other_side_stop_keeping_rows() {
        let mut op = join().create(&context(0, 1)).expect("join");
        let mut out = Output::default();
        op.on_batch(0, left(&[Some(1)], &["a"]), &mut out)
            .expect("left");
        op.on_input_end(0, &mut out).expect("end");
        op.on_batch(1, right(&[Some(1), Some(2)], &[10, 20]), &mut out)
            .expect("right");
        assert_eq!(pairs(&mut out), vec![("a".to_string(), 10)]);
        let state = op.snapshot().expect("snapshot").expect("state");
        let rows = |name: &str| -> usize {
            state
                .tables
                .iter()
                .filter(|t| t.name == name)
                .flat_map(|t| &t.batches)
                .map(RecordBatch::num_rows)
                .sum()
        };
        assert_eq!((rows("left"), rows("right")), (1, 0));
    }
}
