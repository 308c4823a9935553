//! Whole rows an operator keeps in arrow's row format, and their state
//! table.
//!
//! The operators that keep rows one by one, by key or by the whole row
//! (`UpsertNormalize`, `ChangelogMaterialize`, `UpsertMaterialize`), hold
//! each as its arrow-row encoding: compact, hashable and comparable as
//! bytes. In a checkpoint they are one keyed table of the rows' columns
//! and one BIGINT column beside each (a count, a position, a time),
//! restored at any parallelism by the hash exchange before the operator.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};

use super::{RestoredState, StateTable};
use crate::error::{ExecContext, Result};

/// Encodes rows of one schema, and writes and reads their state table.
pub struct KeptRows {
    schema: SchemaRef,
    /// The state table: the rows' columns, then the BIGINT column.
    state_schema: SchemaRef,
    converter: RowConverter,
}

impl KeptRows {
    /// Rows of `schema`, kept with a BIGINT named `number` beside each.
    pub fn new(schema: &SchemaRef, number: &str) -> Result<Self> {
        let converter = RowConverter::new(
            schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .exec_context(|| "encoding kept rows".to_string())?;
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(number, DataType::Int64, false)));
        Ok(Self {
            schema: Arc::clone(schema),
            state_schema: Arc::new(Schema::new(fields)),
            converter,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows of `columns` (of the schema), encoded.
    pub fn encode(&self, columns: &[ArrayRef]) -> Result<Rows> {
        self.converter
            .convert_columns(columns)
            .exec_context(|| "encoding kept rows".to_string())
    }

    /// Encoded rows as columns again.
    pub fn decode<'a>(&self, rows: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>> {
        let parser = self.converter.parser();
        self.converter
            .convert_rows(rows.into_iter().map(|r| parser.parse(r)))
            .exec_context(|| "decoding kept rows".to_string())
    }

    /// The keyed state table `name` of `rows`, each with its number; none
    /// when there are no rows.
    pub fn table<'a>(
        &self,
        name: &str,
        rows: impl IntoIterator<Item = (&'a [u8], i64)>,
    ) -> Result<Option<StateTable>> {
        let (rows, numbers): (Vec<&[u8]>, Vec<i64>) = rows.into_iter().unzip();
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = self.decode(rows)?;
        columns.push(Arc::new(Int64Array::from(numbers)));
        let batch = RecordBatch::try_new(Arc::clone(&self.state_schema), columns)
            .exec_context(|| format!("assembling the state table `{name}`"))?;
        Ok(Some(StateTable {
            name: name.to_string(),
            batches: vec![batch],
            keyed: true,
        }))
    }

    /// The rows of table `name` of `state` that this subtask owns, by the
    /// key columns `key` (indices into the schema): each batch's rows,
    /// encoded, and their numbers. `operator` names the operator if a
    /// batch is not of its table's layout.
    pub fn restored(
        &self,
        operator: &str,
        state: &RestoredState,
        name: &str,
        key: &[usize],
    ) -> Result<Vec<(RecordBatch, Rows, Int64Array)>> {
        let width = self.schema.fields().len();
        let mut restored = Vec::new();
        for batch in state.table(name) {
            RestoredState::check_layout(operator, batch, &self.state_schema)?;
            let keys: Vec<ArrayRef> = key.iter().map(|&k| Arc::clone(batch.column(k))).collect();
            let batch = state.owned(batch, &keys)?;
            let rows = self.encode(&batch.columns()[..width])?;
            let numbers = batch.column(width).as_primitive::<Int64Type>().clone();
            restored.push((batch, rows, numbers));
        }
        Ok(restored)
    }
}
