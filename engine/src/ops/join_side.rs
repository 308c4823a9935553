//! What one side of a regular join keeps: its rows by join key, each with
//! the number of rows of the other side it joins.
//!
//! Rows are kept as the batches they came in. A row taken back (`-U`, `-D`)
//! is marked dead rather than removed, and the side is compacted when a
//! checkpoint takes it. The count of matches is what an outer join needs:
//! a row of the side that is padded with NULLs stands alone while it joins
//! nothing, so the first match takes its padded row back and the last
//! match taken back sends it again (Flink's "associations").

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt32Type};
use arrow::row::{RowConverter, SortField};

use crate::error::{ExecContext, Result, SluiceError};
use crate::time::Millis;

/// Where a kept row is: its batch and its row in it.
pub type RowAt = (usize, usize);

/// The columns of a side's state table holding each row's match count and
/// when it was kept.
pub const MATCHES: &str = "__matches";
pub const KEPT_AT: &str = "__kept_at";

/// The rows one side of a join keeps.
#[derive(Debug, Default)]
pub struct Side {
    pub batches: Vec<RecordBatch>,
    alive: Vec<Vec<bool>>,
    matches: Vec<Vec<u32>>,
    /// When each row was kept (processing time), for the state TTL.
    kept_at: Vec<Vec<Millis>>,
    /// Rows kept, and of those, marked dead.
    rows: usize,
    dead: usize,
    by_key: HashMap<Box<[u8]>, Vec<RowAt>>,
}

impl Side {
    /// The live rows with `key`.
    pub fn rows_with(&self, key: &[u8]) -> impl Iterator<Item = RowAt> + '_ {
        self.by_key
            .get(key)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&(b, r)| self.alive[b][r])
    }

    pub fn matches(&self, (b, r): RowAt) -> u32 {
        self.matches[b][r]
    }

    /// Counts one more (`up`) or one fewer match of a kept row; returns the
    /// count after.
    pub fn count_match(&mut self, (b, r): RowAt, up: bool) -> u32 {
        let count = &mut self.matches[b][r];
        *count = match up {
            true => count.saturating_add(1),
            false => count.saturating_sub(1),
        };
        *count
    }

    /// Keeps the rows of `batch` whose `keys` are given (`None`: a row that
    /// joins nothing, not kept), with their match counts and the times they
    /// were first kept.
    pub fn keep(
        &mut self,
        batch: RecordBatch,
        keys: Vec<Option<Box<[u8]>>>,
        matches: Vec<u32>,
        kept_at: Vec<Millis>,
    ) {
        let at = self.batches.len();
        let mut alive = vec![false; batch.num_rows()];
        for (i, key) in keys.into_iter().enumerate() {
            if let Some(key) = key {
                // A key seen before costs no allocation.
                match self.by_key.get_mut(&key) {
                    Some(rows) => rows.push((at, i)),
                    None => {
                        self.by_key.insert(key, vec![(at, i)]);
                    }
                }
                alive[i] = true;
            }
        }
        self.rows += alive.iter().filter(|&&a| a).count();
        self.batches.push(batch);
        self.alive.push(alive);
        self.matches.push(matches);
        self.kept_at.push(kept_at);
    }

    /// Forgets the rows with `key` kept at or before `horizon`; when the
    /// oldest of those left was kept, if any is.
    pub fn expire(&mut self, key: &[u8], horizon: Millis) -> Option<Millis> {
        let rows = self.by_key.get_mut(key)?;
        let (alive, kept_at, dead) = (&mut self.alive, &self.kept_at, &mut self.dead);
        rows.retain(|&(b, r)| {
            let keep = alive[b][r] && kept_at[b][r] > horizon;
            if !keep && alive[b][r] {
                alive[b][r] = false;
                *dead += 1;
            }
            keep
        });
        let oldest = rows.iter().map(|&(b, r)| kept_at[b][r]).min();
        if oldest.is_none() {
            self.by_key.remove(key);
        }
        oldest
    }

    /// Whether most rows kept are dead (and enough to be worth compacting).
    pub fn mostly_dead(&self) -> bool {
        self.dead > 4096 && self.dead * 2 > self.rows
    }

    /// Every key with a live row, and when its oldest live row was kept.
    pub fn keys(&self) -> impl Iterator<Item = (&[u8], Millis)> + '_ {
        self.by_key.iter().filter_map(|(key, rows)| {
            rows.iter()
                .filter(|&&(b, r)| self.alive[b][r])
                .map(|&(b, r)| self.kept_at[b][r])
                .min()
                .map(|oldest| (key.as_ref(), oldest))
        })
    }

    /// Marks dead one live row with `key` equal to row `row` of `batch`
    /// (every column compared); false when none is kept.
    pub fn take_back(
        &mut self,
        key: &[u8],
        batch: &RecordBatch,
        row: usize,
        rows: &RowConverter,
    ) -> Result<bool> {
        let wanted = encode_row(rows, batch, row)?;
        let Some(candidates) = self.by_key.get_mut(key) else {
            return Ok(false);
        };
        for k in 0..candidates.len() {
            let (b, r) = candidates[k];
            if self.alive[b][r] && encode_row(rows, &self.batches[b], r)? == wanted {
                self.alive[b][r] = false;
                self.dead += 1;
                candidates.swap_remove(k);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The live rows with their match counts as one batch (`schema`'s
    /// columns, then [`MATCHES`]), for a checkpoint; the side is compacted
    /// to it.
    pub fn snapshot(&mut self, schema: &SchemaRef) -> Result<Option<RecordBatch>> {
        let mut parts = Vec::new();
        let mut counts = Vec::new();
        let mut times = Vec::new();
        for (b, batch) in self.batches.iter().enumerate() {
            let keep: arrow::array::BooleanArray = self.alive[b].iter().map(|&a| Some(a)).collect();
            parts.push(
                arrow::compute::filter_record_batch(batch, &keep)
                    .exec_context(|| "selecting live join rows".to_string())?,
            );
            counts.extend(
                self.alive[b]
                    .iter()
                    .zip(&self.matches[b])
                    .filter(|(a, _)| **a)
                    .map(|(_, m)| *m),
            );
            times.extend(
                self.alive[b]
                    .iter()
                    .zip(&self.kept_at[b])
                    .filter(|(a, _)| **a)
                    .map(|(_, t)| *t),
            );
        }
        if counts.is_empty() {
            return Ok(None);
        }
        let rows = arrow::compute::concat_batches(schema, &parts)
            .exec_context(|| "gathering join state".to_string())?;
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(times)) as ArrayRef);
        columns.push(Arc::new(UInt32Array::from(counts)) as ArrayRef);
        let with_counts = with_matches(schema);
        RecordBatch::try_new(with_counts, columns)
            .exec_context(|| "attaching match counts".to_string())
            .map(Some)
    }
}

/// `schema` with the kept-at and match-count columns.
pub fn with_matches(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(KEPT_AT, DataType::Int64, false)));
    fields.push(Arc::new(Field::new(MATCHES, DataType::UInt32, false)));
    Arc::new(Schema::new(fields))
}

/// What a state table holds for each row beside its columns.
pub struct RowState {
    pub matches: Vec<u32>,
    /// When each row was kept; `None` in checkpoints taken before joins
    /// had a TTL.
    pub kept_at: Option<Vec<Millis>>,
}

/// A state table's rows, and their match counts and times: checkpoints
/// taken before joins counted matches have neither column (an inner join
/// needs no count).
pub fn split_matches(batch: &RecordBatch) -> Result<(RecordBatch, RowState)> {
    let mut rows = batch.clone();
    let mut take = |name: &str| -> Option<ArrayRef> {
        let last = rows.num_columns().checked_sub(1)?;
        (rows.schema().field(last).name() == name).then(|| rows.remove_column(last))
    };
    let matches = match take(MATCHES) {
        Some(counts) => counts
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| SluiceError::Runtime(format!("`{MATCHES}` is not UINT32")))?
            .values()
            .to_vec(),
        None => vec![0; batch.num_rows()],
    };
    let kept_at = take(KEPT_AT)
        .map(|times| {
            times
                .as_primitive_opt::<Int64Type>()
                .map(|t| t.values().to_vec())
                .ok_or_else(|| SluiceError::Runtime(format!("`{KEPT_AT}` is not BIGINT")))
        })
        .transpose()?;
    Ok((rows, RowState { matches, kept_at }))
}

/// A converter that encodes whole rows of `schema`, to find a row taken
/// back among those kept.
pub fn row_converter(schema: &Schema) -> Result<RowConverter> {
    RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .exec_context(|| "encoding join rows".to_string())
}

/// Row `row` of `batch`, every column, in arrow-row's encoding.
pub fn encode_row(rows: &RowConverter, batch: &RecordBatch, row: usize) -> Result<Vec<u8>> {
    let columns: Vec<ArrayRef> = batch.columns().iter().map(|c| c.slice(row, 1)).collect();
    let encoded = rows
        .convert_columns(&columns)
        .exec_context(|| "encoding a join row".to_string())?;
    Ok(encoded.row(0).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
            .expect("batch")
    }

    #[test]
    fn a_row_taken_back_is_one_equal_copy_and_the_rest_are_kept() {
        let mut side = Side::default();
        let key: Box<[u8]> = Box::from(&b"k"[..]);
        let kept = batch(&[1, 2, 1]);
        side.keep(
            kept.clone(),
            vec![Some(key.clone()), Some(key.clone()), None],
            vec![0, 3, 0],
            vec![5, 6, 7],
        );
        // The third row has no key: it is not kept.
        assert_eq!(side.rows_with(&key).count(), 2);
        let converter = row_converter(&kept.schema()).expect("converter");
        assert!(
            side.take_back(&key, &batch(&[1]), 0, &converter)
                .expect("take back")
        );
        assert!(
            !side
                .take_back(&key, &batch(&[1]), 0, &converter)
                .expect("take back")
        );
        let left: Vec<RowAt> = side.rows_with(&key).collect();
        assert_eq!(left, vec![(0, 1)]);
        assert_eq!(side.count_match((0, 1), false), 2);
        let snapshot = side
            .snapshot(&kept.schema())
            .expect("snapshot")
            .expect("rows");
        let (rows, state) = split_matches(&snapshot).expect("split");
        assert_eq!(rows, batch(&[2]));
        assert_eq!(state.matches, vec![2]);
        assert_eq!(state.kept_at, Some(vec![6]));
        // A table without counts (an older checkpoint) counts none.
        let old = split_matches(&batch(&[5])).expect("split").1;
        assert_eq!((old.matches, old.kept_at), (vec![0], None));
        // The TTL forgets rows kept at or before a horizon.
        assert_eq!(side.expire(&key, 6), None);
        assert_eq!(side.rows_with(&key).count(), 0);
    }
}
