//! Before an upsert sink whose primary key is not the key its input updates
//! by: Flink's `SinkUpsertMaterializer`.
//!
//! An upsert sink writes each row as the new value of its primary key and
//! each retraction as a tombstone. That is right when all changes of a key
//! come from one upstream subtask, in order (a GROUP BY on the key). When
//! they do not (a join's rows written by another key, an aggregate keyed
//! by other columns), the row that replaces a key's value and the
//! retraction of its old one may arrive in either order, and a tombstone
//! written last would delete a row that stands.
//!
//! So the operator, hash-partitioned by the primary key, keeps every row
//! standing for each key, in arrival order. A row added becomes the key's
//! value (`+I` or `+U`). A retraction removes the first row equal to it;
//! if that row was the key's value, the row before it becomes the value
//! (`+U`), or the key is deleted (`-D`) when none is left; otherwise
//! nothing changes downstream. It never sends `-U`, which the sink would
//! write as a tombstone. A retraction of a row the key does not hold is
//! ignored, as in Flink.
//!
//! State: one keyed table, `rows`, of each key's rows with their order.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int8Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use super::kept_rows::KeptRows;
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
};
use crate::changelog::{self, RowKind};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, Millis};

/// The state table, and its column of each row's place among its key's.
const ROWS: &str = "rows";
const POSITION: &str = "__position";

/// A row in arrow's row format.
type Row = Box<[u8]>;

/// Makes [`UpsertMaterialize`] instances.
#[derive(Debug)]
pub struct UpsertMaterialize {
    /// The rows' columns, without the row kind.
    pub schema: SchemaRef,
    /// The sink's primary key.
    pub key: Vec<usize>,
}

impl OperatorFactory for UpsertMaterialize {
    fn name(&self) -> &str {
        "UpsertMaterialize"
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self
            .key
            .iter()
            .map(|&k| self.schema.field(k).name().as_str())
            .collect();
        format!("key [{}]", names.join(", "))
    }

    fn fingerprint(&self) -> String {
        format!("key {:?} of {}", self.key, self.schema)
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let keys = RowConverter::new(
            self.key
                .iter()
                .map(|&k| SortField::new(self.schema.field(k).data_type().clone()))
                .collect(),
        )
        .exec_context(|| "encoding primary keys".to_string())?;
        Ok(Box::new(UpsertMaterializeOp {
            schema: Arc::clone(&self.schema),
            key: self.key.clone(),
            keys,
            rows: KeptRows::new(&self.schema, POSITION)?,
            standing: HashMap::new(),
            watermark: BEFORE_TIME,
        }))
    }

    fn upsert_key(&self) -> Option<Vec<usize>> {
        Some(self.key.clone())
    }
}

struct UpsertMaterializeOp {
    schema: SchemaRef,
    key: Vec<usize>,
    keys: RowConverter,
    rows: KeptRows,
    /// Each key's rows standing, oldest first; the last is its value.
    standing: HashMap<Row, Vec<Row>>,
    watermark: Millis,
}

impl UpsertMaterializeOp {
    fn key_columns(&self, batch: &RecordBatch) -> Vec<ArrayRef> {
        self.key
            .iter()
            .map(|&k| Arc::clone(batch.column(k)))
            .collect()
    }
}

impl Operator for UpsertMaterializeOp {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (data, kinds) = changelog::split(&batch)?;
        let keys = self
            .keys
            .convert_columns(&self.key_columns(&data))
            .exec_context(|| "encoding primary keys".to_string())?;
        let rows = self.rows.encode(data.columns())?;
        let mut sent: Vec<(i8, Box<[u8]>)> = Vec::new();
        for i in 0..data.num_rows() {
            let key = keys.row(i);
            let row = rows.row(i);
            let retraction = kinds
                .as_ref()
                .is_some_and(|k| changelog::is_retraction_byte(k.value(i)));
            if !retraction {
                let standing = self.standing.entry(key.as_ref().into()).or_default();
                let kind = match standing.is_empty() {
                    true => RowKind::Insert,
                    false => RowKind::UpdateAfter,
                };
                standing.push(row.as_ref().into());
                sent.push((kind.byte(), row.as_ref().into()));
                continue;
            }
            let Some(standing) = self.standing.get_mut(key.as_ref()) else {
                continue;
            };
            // As Flink's, the first row equal to it goes.
            let Some(at) = standing.iter().position(|r| **r == *row.as_ref()) else {
                continue;
            };
            let was_value = at + 1 == standing.len();
            let removed = standing.remove(at);
            match (was_value, standing.last()) {
                (false, _) => {}
                (true, Some(value)) => sent.push((RowKind::UpdateAfter.byte(), value.clone())),
                (true, None) => {
                    sent.push((RowKind::Delete.byte(), removed));
                    self.standing.remove(key.as_ref());
                }
            }
        }
        if sent.is_empty() {
            return Ok(());
        }
        let mut columns = self.rows.decode(sent.iter().map(|(_, r)| &**r))?;
        columns.push(Arc::new(Int8Array::from_iter_values(
            sent.iter().map(|(k, _)| *k),
        )));
        let batch = RecordBatch::try_new(changelog::with_row_kind(&self.schema), columns)
            .exec_context(|| "assembling the keys' values".to_string())?;
        out.batch(batch);
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = watermark;
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let rows = self.standing.values().flat_map(|standing| {
            standing
                .iter()
                .enumerate()
                .map(|(p, row)| (&**row, p as i64))
        });
        Ok(Some(OperatorState {
            tables: self.rows.table(ROWS, rows)?.into_iter().collect(),
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        let mut restored: HashMap<Row, Vec<(i64, Row)>> = HashMap::new();
        for (batch, rows, positions) in
            self.rows
                .restored("UpsertMaterialize", &state, ROWS, &self.key)?
        {
            let keys = self
                .keys
                .convert_columns(&self.key_columns(&batch))
                .exec_context(|| "encoding restored keys".to_string())?;
            for (i, &position) in positions.values().iter().enumerate() {
                restored
                    .entry(keys.row(i).as_ref().into())
                    .or_default()
                    .push((position, rows.row(i).as_ref().into()));
            }
        }
        for (key, mut rows) in restored {
            rows.sort_by_key(|(p, _)| *p);
            let standing = self.standing.entry(key).or_default();
            if !standing.is_empty() {
                return Err(SluiceError::Runtime(
                    "a key's rows were restored twice".to_string(),
                ));
            }
            standing.extend(rows.into_iter().map(|(_, r)| r));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::collections::BTreeMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]))
    }

    fn operator() -> Box<dyn Operator> {
        UpsertMaterialize {
            schema: schema(),
            key: vec![0],
        }
        .create(&OperatorContext {
            subtask: 0,
            parallelism: 1,
            parameters: Arc::new(BTreeMap::new()),
            metrics: Arc::default(),
        })
        .expect("operator")
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

    fn printed(out: &mut Output) -> Vec<String> {
        let mut lines = Vec::new();
        for message in out.drain() {
            let crate::ops::Message::Data(batch) = message else {
                continue;
            };
            let k = batch.column(0).as_string::<i32>();
            let v = batch.column(1).as_primitive::<Int64Type>();
            let kinds = changelog::row_kinds(&batch).expect("kinds");
            for i in 0..batch.num_rows() {
                let kind = RowKind::from_byte(kinds.value(i)).expect("kind").short();
                lines.push(format!("{kind}[{}, {}]", k.value(i), v.value(i)));
            }
        }
        lines
    }

    /// The new row of a key arrives before the retraction of its old one
    /// (they came by different paths): the key keeps the new row, where a
    /// tombstone written last would have deleted it.
    #[test]
    fn a_retraction_that_comes_late_does_not_delete_the_row_that_replaced_it() {
        use RowKind::*;
        let mut op = operator();
        let mut out = Output::default();
        op.on_batch(0, changes(&[(Insert, "a", 1)]), &mut out)
            .expect("batch");
        op.on_batch(
            0,
            changes(&[(UpdateAfter, "a", 2), (UpdateBefore, "a", 1)]),
            &mut out,
        )
        .expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 1]", "+U[a, 2]"]);
        // The value taken back: the row before it is the value again.
        op.on_batch(0, changes(&[(Insert, "a", 3), (Delete, "a", 3)]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+U[a, 3]", "+U[a, 2]"]);
        // The last row gone: the key is deleted, once; a retraction of a
        // row it does not hold changes nothing.
        op.on_batch(0, changes(&[(Delete, "a", 2), (Delete, "a", 9)]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["-D[a, 2]"]);
    }

    #[test]
    fn the_rows_standing_restore_in_their_order() {
        use RowKind::*;
        let mut op = operator();
        let mut out = Output::default();
        op.on_batch(
            0,
            changes(&[(Insert, "a", 1), (Insert, "a", 2), (Insert, "b", 5)]),
            &mut out,
        )
        .expect("batch");
        let state = op.snapshot().expect("snapshot").expect("state");
        let mut restored = operator();
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
        let mut out = Output::default();
        restored
            .on_batch(0, changes(&[(Delete, "a", 2), (Delete, "b", 5)]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+U[a, 1]", "-D[b, 5]"]);
    }
}
