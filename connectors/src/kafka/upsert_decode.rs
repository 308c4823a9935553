//! Records of a compacted topic as upserts: `upsert-kafka` read back.
//!
//! A record's key (in `key.format`) is the row's primary key; its value
//! (in `value.format`) is the key's new row, or, when there is none, a
//! tombstone: the key was deleted. Each record becomes one row with its
//! row kind, `+U` for a value and `-D` for a tombstone, in offset order;
//! the key columns come from the key, the others from the value (null in
//! a tombstone). The planner puts the normalisation by key after the
//! source (`UpsertNormalize`), which turns them into a changelog. A record
//! without a key, or whose key or value cannot be decoded, is a bad record.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int8Array, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use sluice_engine::changelog::{self, RowKind};
use sluice_engine::error::ExecContext;
use sluice_engine::{Result, SluiceError};

use super::decode::{BadRecord, RecordDecoder, Records};

/// Where an output column comes from: a column of the decoded keys or of
/// the decoded values.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    Key(usize),
    Value(usize),
}

/// Decodes the keys and values of upsert records into rows.
#[derive(Debug, Clone)]
pub struct UpsertDecoder {
    pub keys: RecordDecoder,
    /// `None` when no column outside the key is read.
    pub values: Option<RecordDecoder>,
    /// Per output column, in order.
    pub parts: Vec<Part>,
    /// The rows' columns, without the row kind.
    pub schema: SchemaRef,
}

/// Records gathered from a partition: every record's key, the values of
/// those that have one, and which do not.
#[derive(Debug, Default)]
pub struct UpsertRecords {
    pub keys: Records,
    pub values: Records,
    pub tombstones: Vec<bool>,
}

impl UpsertRecords {
    pub fn push(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) {
        self.keys.push(offset, key);
        self.tombstones.push(value.is_none());
        if let Some(value) = value {
            self.values.push(offset, value);
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
        self.tombstones.clear();
    }
}

impl UpsertDecoder {
    /// The rows of `records`, and the records that are bad, in offset order.
    pub fn decode(&self, records: &UpsertRecords) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let (keys, mut bad) = self.keys.decode(&records.keys)?;
        for b in &mut bad {
            b.reason = format!("its key: {}", b.reason);
        }
        let (values, bad_values) = match &self.values {
            Some(decoder) => {
                let (values, bad) = decoder.decode(&records.values)?;
                (Some(values), bad)
            }
            None => (None, Vec::new()),
        };
        // A record bad in its key is named once, by its key.
        let bad_keys: HashSet<i64> = bad.iter().map(|b| b.offset).collect();
        let bad_values_at: HashSet<i64> = bad_values.iter().map(|b| b.offset).collect();
        bad.extend(
            bad_values
                .into_iter()
                .filter(|b| !bad_keys.contains(&b.offset)),
        );
        bad.sort_by_key(|b| b.offset);
        // Rows of the decoded keys and values each good record has.
        let mut key_rows = Vec::new();
        let mut value_rows = Vec::new();
        let mut kinds = Vec::new();
        let (mut key_row, mut value_row) = (0u32, 0u32);
        let mut value_index = 0;
        for i in 0..records.len() {
            let offset = records.keys.offset(i);
            let tombstone = records.tombstones[i];
            let key_good = !bad_keys.contains(&offset);
            let value_good = tombstone || !bad_values_at.contains(&offset);
            // Decoded rows are those of good records, in order.
            let this_key = key_good.then(|| {
                key_row += 1;
                key_row - 1
            });
            let this_value = match tombstone {
                true => None,
                false => {
                    value_index += 1;
                    value_good.then(|| {
                        value_row += 1;
                        value_row - 1
                    })
                }
            };
            let Some(k) = this_key else { continue };
            if !value_good {
                continue;
            }
            key_rows.push(k);
            value_rows.push(this_value);
            kinds.push(match tombstone {
                true => RowKind::Delete.byte(),
                false => RowKind::UpdateAfter.byte(),
            });
        }
        debug_assert_eq!(value_index, records.values.len());
        let key_rows = UInt32Array::from(key_rows);
        let value_rows = UInt32Array::from(value_rows);
        let context = || "assembling upsert records".to_string();
        let mut columns: Vec<ArrayRef> = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Key(c) => arrow::compute::take(keys.column(*c), &key_rows, None),
                Part::Value(c) => match &values {
                    Some(values) => arrow::compute::take(values.column(*c), &value_rows, None),
                    None => Err(arrow::error::ArrowError::InvalidArgumentError(
                        "no values were decoded".to_string(),
                    )),
                },
            })
            .collect::<std::result::Result<_, _>>()
            .exec_context(context)?;
        columns.push(Arc::new(Int8Array::from(kinds)));
        let batch = RecordBatch::try_new_with_options(
            changelog::with_row_kind(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(key_rows.len())),
        )
        .map_err(|e| SluiceError::Data(format!("{}: {e}", context())))?;
        Ok((batch, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::decode::RecordFormat;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    /// `(k STRING, v BIGINT)`, the key `{"k": ..}`, the value the whole row.
    fn decoder() -> UpsertDecoder {
        let key = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, false)]));
        let value = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let rows = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        UpsertDecoder {
            keys: RecordDecoder::new(
                RecordFormat::Json,
                Arc::clone(&key),
                Arc::clone(&key),
                vec![0],
            )
            .expect("keys"),
            values: Some(
                RecordDecoder::new(RecordFormat::Json, value, Arc::clone(&rows), vec![1])
                    .expect("values"),
            ),
            parts: vec![Part::Key(0), Part::Value(0)],
            schema: rows,
        }
    }

    /// Each good record is one row, its key from the key and the rest from
    /// the value, whatever bad keys and values sit between them.
    #[test]
    fn keys_and_values_are_paired_around_bad_records_and_tombstones() {
        let mut records = UpsertRecords::default();
        let records_in = [
            (r#"{"k": "a"}"#, Some(r#"{"k": "a", "v": 1}"#)),
            (r#"{"k": 7}"#, Some(r#"{"k": "x", "v": 2}"#)),
            (r#"{"k": "b"}"#, Some(r#"{"v": "three"}"#)),
            (r#"{"k": "b"}"#, None),
            (r#"not json"#, None),
            (r#"{"k": "c"}"#, Some(r#"{"k": "c", "v": 5}"#)),
        ];
        for (i, (key, value)) in records_in.iter().enumerate() {
            records.push(10 + i as i64, key.as_bytes(), value.map(str::as_bytes));
        }
        let (batch, bad) = decoder().decode(&records).expect("decode");
        let offsets: Vec<i64> = bad.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, vec![11, 12, 14]);
        assert!(bad[0].reason.starts_with("its key: "), "{}", bad[0].reason);
        assert!(!bad[1].reason.starts_with("its key: "), "{}", bad[1].reason);
        let keys = batch.column(0).as_string::<i32>();
        let values = batch.column(1).as_primitive::<Int64Type>();
        let rows: Vec<(String, Option<i64>, i8)> = (0..batch.num_rows())
            .map(|i| {
                (
                    keys.value(i).to_string(),
                    values.is_valid(i).then(|| values.value(i)),
                    changelog::row_kinds(&batch).expect("kinds").value(i),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), Some(1), RowKind::UpdateAfter.byte()),
                ("b".to_string(), None, RowKind::Delete.byte()),
                ("c".to_string(), Some(5), RowKind::UpdateAfter.byte()),
            ]
        );
    }
}
