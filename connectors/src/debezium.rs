//! The `debezium-json` format: a changelog as Debezium's JSON envelopes.
//!
//! Each row is one JSON object `{"before": ..., "after": ..., "op": ...}`,
//! written as Flink's `debezium-json` serializer writes it: an insert and
//! the row after an update are creates (`"op": "c"`, the row in `after`),
//! the row before an update and a delete are deletes (`"op": "d"`, the row
//! in `before`). An update is not one record but a delete and a create,
//! which is what Flink's format does too. Each writer's records of one row
//! are in order; across the part files of several writers there is no
//! order, so a reader takes the files as one multiset of changes (every
//! delete taking back one equal create), not as a sequence by key.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema};
use sluice_engine::changelog;
use sluice_engine::{Result, SluiceError};

/// `batch` (with row kinds, or insert-only without) as envelope lines.
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>> {
    let (data, kinds) = changelog::split(batch)?;
    let rows = data.num_rows();
    let creates: Vec<bool> = match &kinds {
        Some(kinds) => kinds
            .values()
            .iter()
            .map(|&b| !changelog::is_retraction_byte(b))
            .collect(),
        None => vec![true; rows],
    };
    let fields: Fields = data.schema().fields().clone();
    let image = |present: Vec<bool>| -> Result<ArrayRef> {
        let nulls = NullBuffer::from(present);
        StructArray::try_new(fields.clone(), data.columns().to_vec(), Some(nulls))
            .map(|s| Arc::new(s) as ArrayRef)
            .map_err(|e| SluiceError::Data(format!("building a Debezium envelope: {e}")))
    };
    let before = image(creates.iter().map(|c| !c).collect())?;
    let after = image(creates.clone())?;
    let op: ArrayRef = Arc::new(StringArray::from_iter_values(
        creates.iter().map(|&c| if c { "c" } else { "d" }),
    ));
    let row_type = DataType::Struct(fields.clone());
    let schema = Arc::new(Schema::new(vec![
        Field::new("before", row_type.clone(), true),
        Field::new("after", row_type, true),
        Field::new("op", DataType::Utf8, false),
    ]));
    let envelopes = RecordBatch::try_new(schema, vec![before, after, op])
        .map_err(|e| SluiceError::Data(format!("building Debezium envelopes: {e}")))?;
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(Vec::new());
    writer
        .write(&envelopes)
        .and_then(|_| writer.finish())
        .map_err(|e| SluiceError::Data(format!("encoding Debezium JSON: {e}")))?;
    Ok(writer.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int8Array, Int64Array};

    #[test]
    fn updates_are_written_as_deletes_and_creates() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            changelog::with_row_kind(&schema),
            vec![
                Arc::new(StringArray::from(vec!["a", "a", "a", "b"])),
                Arc::new(Int64Array::from(vec![Some(1), Some(1), Some(2), None])),
                Arc::new(Int8Array::from(vec![0, 1, 2, 3])),
            ],
        )
        .expect("batch");
        let text = String::from_utf8(encode(&batch).expect("encode")).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(
            lines,
            vec![
                serde_json::json!({"before": null, "after": {"k": "a", "n": 1}, "op": "c"}),
                serde_json::json!({"before": {"k": "a", "n": 1}, "after": null, "op": "d"}),
                serde_json::json!({"before": null, "after": {"k": "a", "n": 2}, "op": "c"}),
                serde_json::json!({"before": {"k": "b", "n": null}, "after": null, "op": "d"}),
            ]
        );
    }
}
