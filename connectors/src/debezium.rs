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
//!
//! Read back, as Flink's `debezium-json` deserializer reads Debezium's own
//! records: a create or a snapshot read (`"c"`, `"r"`) is `+I` of `after`;
//! an update (`"u"`) is `-U` of `before` then `+U` of `after`, and one
//! without `before` is refused (Debezium writes it only with the table's
//! full replica identity); a delete (`"d"`) is `-D` of `before`. With
//! `'debezium-json.schema-include' = 'true'` each record is Debezium's
//! `{"schema": ..., "payload": {...}}` and the envelope is the payload.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, RecordBatch, StringArray, StructArray, UInt32Array,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use sluice_engine::changelog::{self, RowKind};
use sluice_engine::{Result, SluiceError};

/// The schema of envelopes of rows of `row` columns, for a JSON decoder:
/// `before`, `after` and `op`, inside `payload` when the records include
/// Debezium's schema.
pub fn envelope_schema(row: &Schema, schema_include: bool) -> SchemaRef {
    let row_type = DataType::Struct(row.fields().clone());
    let envelope = Fields::from(vec![
        Field::new("before", row_type.clone(), true),
        Field::new("after", row_type, true),
        Field::new("op", DataType::Utf8, true),
    ]);
    match schema_include {
        false => Arc::new(Schema::new(envelope)),
        true => Arc::new(Schema::new(vec![Field::new(
            "payload",
            DataType::Struct(envelope),
            true,
        )])),
    }
}

/// A decoded envelope that is not a change, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEnvelope {
    /// Its row in the envelopes.
    pub row: usize,
    pub reason: String,
}

/// Decoded envelopes (of [`envelope_schema`]) as rows of `row` columns
/// with their row kinds, in order; the envelopes that are not changes are
/// left out and returned.
pub fn unpack(
    envelopes: &RecordBatch,
    row: &SchemaRef,
    schema_include: bool,
) -> Result<(RecordBatch, Vec<BadEnvelope>)> {
    let fail = |m: &str| SluiceError::Runtime(format!("reading Debezium envelopes: {m}"));
    // With Debezium's schema, the envelope is the payload, and a record
    // without one holds no change.
    let (envelope, payloads) = match schema_include {
        true => {
            let payload = envelopes.column(0).as_struct();
            (payload.clone(), payload.nulls().cloned())
        }
        false => (StructArray::from(envelopes.clone()), None),
    };
    let image = |name: &str| -> Result<&StructArray> {
        envelope
            .column_by_name(name)
            .and_then(|c| c.as_struct_opt())
            .ok_or_else(|| fail(&format!("no `{name}` image")))
    };
    let (before, after) = (image("before")?, image("after")?);
    let op = envelope
        .column_by_name("op")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| fail("no `op`"))?;
    let rows = envelopes.num_rows();
    // Rows are taken from `before` (0..rows) and `after` (rows..2 rows).
    let mut take = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    let mut bad = Vec::new();
    for i in 0..rows {
        let mut refuse = |reason: String| bad.push(BadEnvelope { row: i, reason });
        if payloads.as_ref().is_some_and(|n| n.is_null(i)) {
            refuse("the record has no `payload`".to_string());
            continue;
        }
        let has_before = before.is_valid(i);
        let has_after = after.is_valid(i);
        match op.is_valid(i).then(|| op.value(i)) {
            Some("c" | "r") if has_after => {
                take.push((rows + i) as u32);
                kinds.push(RowKind::Insert.byte());
            }
            Some("u") if has_before && has_after => {
                take.extend([i as u32, (rows + i) as u32]);
                kinds.extend([RowKind::UpdateBefore.byte(), RowKind::UpdateAfter.byte()]);
            }
            Some("u") if has_after => refuse(
                "an update (`\"op\": \"u\"`) without the row before it (`before` is null): Debezium writes it only for tables with full replica identity (PostgreSQL: ALTER TABLE ... REPLICA IDENTITY FULL)".to_string(),
            ),
            Some("d") if has_before => {
                take.push(i as u32);
                kinds.push(RowKind::Delete.byte());
            }
            Some(op @ ("c" | "r" | "u")) => {
                refuse(format!("`\"op\": \"{op}\"` without the row after it (`after` is null)"))
            }
            Some("d") => refuse("a delete (`\"op\": \"d\"`) without the row it deletes (`before` is null)".to_string()),
            Some(other) => refuse(format!(
                "`\"op\": \"{other}\"` is not one of Debezium's operations (c, r, u, d)"
            )),
            None => refuse("the envelope has no `op`".to_string()),
        }
    }
    let indices = UInt32Array::from(take);
    let columns = (0..row.fields().len())
        .map(|c| {
            let both =
                arrow::compute::concat(&[before.column(c).as_ref(), after.column(c).as_ref()])
                    .and_then(|both| arrow::compute::take(&both, &indices, None));
            both.map_err(|e| fail(&e.to_string()))
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let mut columns = columns;
    columns.push(Arc::new(Int8Array::from(kinds)));
    let batch = RecordBatch::try_new_with_options(
        changelog::with_row_kind(row),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len())),
    )
    .map_err(|e| fail(&e.to_string()))?;
    Ok((batch, bad))
}

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
    use arrow::datatypes::Int64Type;

    fn decode(schema: &SchemaRef, schema_include: bool, lines: &[&str]) -> RecordBatch {
        let text = lines.join("\n");
        let reader = arrow::json::ReaderBuilder::new(envelope_schema(schema, schema_include))
            .build(std::io::Cursor::new(text.into_bytes()))
            .expect("reader");
        let batches: Vec<RecordBatch> = reader.map(|b| b.expect("json")).collect();
        arrow::compute::concat_batches(&envelope_schema(schema, schema_include), &batches)
            .expect("concat")
    }

    #[test]
    fn debeziums_operations_become_row_kinds_and_the_rest_are_refused() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let envelopes = decode(
            &schema,
            false,
            &[
                r#"{"before": null, "after": {"k": "a", "n": 1}, "op": "c"}"#,
                r#"{"before": {"k": "a", "n": 1}, "after": {"k": "a", "n": 2}, "op": "u"}"#,
                r#"{"before": null, "after": {"k": "a", "n": 3}, "op": "u"}"#,
                r#"{"before": {"k": "a", "n": 2}, "after": null, "op": "d"}"#,
                r#"{"after": {"k": "b", "n": null}, "op": "r", "source": {"db": "x"}}"#,
                r#"{"before": null, "after": {"k": "c", "n": 1}, "op": "t"}"#,
                r#"{"before": null, "after": null, "op": "d"}"#,
            ],
        );
        let (rows, bad) = unpack(&envelopes, &schema, false).expect("unpack");
        let kinds: Vec<i8> = changelog::row_kinds(&rows)
            .expect("kinds")
            .values()
            .to_vec();
        assert_eq!(kinds, vec![0, 1, 2, 3, 0]);
        let n = rows.column(1).as_primitive::<Int64Type>();
        assert_eq!(
            (0..n.len())
                .map(|i| n.is_valid(i).then(|| n.value(i)))
                .collect::<Vec<_>>(),
            vec![Some(1), Some(1), Some(2), Some(2), None]
        );
        assert_eq!(bad.iter().map(|b| b.row).collect::<Vec<_>>(), vec![2, 5, 6]);
        assert!(
            bad[0].reason.contains("REPLICA IDENTITY FULL"),
            "{}",
            bad[0].reason
        );
        assert!(bad[1].reason.contains(r#""op": "t""#), "{}", bad[1].reason);

        // Debezium's own records, with their schema around the envelope.
        let envelopes = decode(
            &schema,
            true,
            &[
                r#"{"schema": {"type": "struct"}, "payload": {"before": null, "after": {"k": "z", "n": 9}, "op": "c"}}"#,
                r#"{"schema": {"type": "struct"}}"#,
            ],
        );
        let (rows, bad) = unpack(&envelopes, &schema, true).expect("unpack");
        assert_eq!(rows.num_rows(), 1);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].reason.contains("no `payload`"), "{}", bad[0].reason);
    }

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
