//! Routing rows to the subtasks of the next stage.
//!
//! A hash exchange hashes the key columns (foldhash with a fixed seed, the
//! same on every machine), maps the hash to one of [`MAX_PARALLELISM`] key
//! groups, and key groups to subtasks in contiguous ranges, as Flink does.
//! State snapshots per key-group range can then be restored at another
//! parallelism by reassigning ranges, without rewriting data.

use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;

use crate::error::{ExecContext, Result};

/// The number of key groups; the most subtasks a keyed operator can have.
pub const MAX_PARALLELISM: usize = 128;

const HASH_SEED: RandomState = RandomState::with_seed(0x51u64 << 56 | 0x1ce);

/// The key group of a key hash.
pub fn key_group(hash: u64) -> usize {
    // Mix high bits in: the low bits of some hashes vary little.
    ((hash ^ (hash >> 32)) % MAX_PARALLELISM as u64) as usize
}

/// The subtask that owns `key_group` among `parallelism` subtasks.
pub fn subtask_of(key_group: usize, parallelism: usize) -> usize {
    key_group * parallelism / MAX_PARALLELISM
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn key_groups_of(subtask: usize, parallelism: usize) -> std::ops::Range<usize> {
    let start = (subtask * MAX_PARALLELISM).div_ceil(parallelism);
    let end = ((subtask + 1) * MAX_PARALLELISM).div_ceil(parallelism);
    start..end
}

/// The key group of each row of `keys`, hashed as the exchange hashes them.
pub fn key_groups_of_rows(keys: &[ArrayRef]) -> Result<Vec<usize>> {
    let mut hashes = vec![0; keys.first().map_or(0, |k| k.len())];
    create_hashes(keys, &HASH_SEED, &mut hashes).exec_context(|| "hashing keys".to_string())?;
    Ok(hashes.into_iter().map(key_group).collect())
}

/// Splits `batch` by the subtask each row's key belongs to.
pub fn hash_partition(
    batch: &RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    parallelism: usize,
    hashes: &mut Vec<u64>,
) -> Result<Vec<(usize, RecordBatch)>> {
    let rows = batch.num_rows();
    let arrays = keys
        .iter()
        .map(|k| k.evaluate(batch).and_then(|v| v.into_array(rows)))
        .collect::<Result<Vec<_>, _>>()
        .exec_context(|| "evaluating exchange keys".to_string())?;
    hashes.clear();
    hashes.resize(rows, 0);
    create_hashes(&arrays, &HASH_SEED, hashes).exec_context(|| "hashing keys".to_string())?;
    let mut targets: Vec<Vec<u32>> = vec![Vec::new(); parallelism];
    for (row, hash) in hashes.iter().enumerate() {
        targets[subtask_of(key_group(*hash), parallelism)].push(row as u32);
    }
    let mut out = Vec::new();
    for (subtask, rows_of) in targets.into_iter().enumerate() {
        if rows_of.is_empty() {
            continue;
        }
        let part = if rows_of.len() == rows {
            batch.clone()
        } else {
            take_record_batch(batch, &UInt32Array::from(rows_of))
                .exec_context(|| "routing rows".to_string())?
        };
        out.push((subtask, part));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_cover_every_subtask_contiguously() {
        for parallelism in 1..=MAX_PARALLELISM {
            let mut next = 0;
            for subtask in 0..parallelism {
                let range = key_groups_of(subtask, parallelism);
                assert_eq!(range.start, next, "contiguous at p={parallelism}");
                for kg in range.clone() {
                    assert_eq!(subtask_of(kg, parallelism), subtask);
                }
                next = range.end;
            }
            assert_eq!(next, MAX_PARALLELISM);
        }
    }

    #[test]
    fn hashing_is_stable_and_spreads_keys() {
        use arrow::array::Int64Array;
        use datafusion::physical_expr::expressions::Column;
        let batch = RecordBatch::try_from_iter([(
            "k",
            Arc::new(Int64Array::from_iter_values(0..10_000)) as _,
        )])
        .expect("batch");
        let keys: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Column::new("k", 0))];
        let mut hashes = Vec::new();
        let parts = hash_partition(&batch, &keys, 4, &mut hashes).expect("partition");
        assert_eq!(parts.len(), 4);
        let sizes: Vec<usize> = parts.iter().map(|(_, b)| b.num_rows()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 10_000);
        assert!(sizes.iter().all(|s| *s > 2_000), "unbalanced: {sizes:?}");
        let again = hash_partition(&batch, &keys, 4, &mut hashes).expect("partition");
        assert_eq!(
            parts
                .iter()
                .map(|(s, b)| (*s, b.num_rows()))
                .collect::<Vec<_>>(),
            again
                .iter()
                .map(|(s, b)| (*s, b.num_rows()))
                .collect::<Vec<_>>()
        );
    }
}
