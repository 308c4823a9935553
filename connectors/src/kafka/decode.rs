//! Kafka record values to Arrow batches, and what happens to bad ones.
//!
//! Values are gathered into one buffer and decoded together by arrow's JSON
//! or CSV decoder, with no per-record intermediate object. Only when that
//! fails are the records decoded one by one, to find which are bad; those
//! are then reported, skipped or dead-lettered as the table says.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use sluice_engine::error::{ExecContext, preview};
use sluice_engine::{Result, SluiceError};

/// How record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFormat {
    /// One JSON object per record.
    Json,
    /// One CSV line per record, columns by position.
    Csv { delimiter: u8 },
    /// The whole value as the table's one STRING or BYTES column.
    Raw,
    /// One Debezium change envelope per record (`'format' =
    /// 'debezium-json'`), with Debezium's schema around it or not.
    DebeziumJson { schema_include: bool },
}

impl RecordFormat {
    /// As messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::Csv { .. } => "CSV",
            Self::Raw => "raw",
            Self::DebeziumJson { .. } => "Debezium JSON",
        }
    }
}

/// Values of consecutive records of one partition, in one buffer.
#[derive(Debug, Default)]
pub struct Records {
    data: Vec<u8>,
    /// Each record's offset and where its value is in `data`.
    spans: Vec<(i64, Range<usize>)>,
}

impl Records {
    pub fn push(&mut self, offset: i64, value: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(value);
        self.spans.push((offset, start..self.data.len()));
        // Separates JSON values and ends CSV lines; not part of the span.
        self.data.push(b'\n');
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.spans.clear();
    }

    pub(super) fn offset(&self, i: usize) -> i64 {
        self.spans[i].0
    }

    pub(super) fn value(&self, i: usize) -> &[u8] {
        &self.data[self.spans[i].1.clone()]
    }

    /// A record's value with the newline after it.
    fn line(&self, i: usize) -> &[u8] {
        let span = &self.spans[i].1;
        &self.data[span.start..span.end + 1]
    }
}

/// A record that could not be decoded.
#[derive(Debug, Clone)]
pub struct BadRecord {
    pub offset: i64,
    pub value: Vec<u8>,
    pub reason: String,
}

/// Decodes records of one table into batches of its projected schema.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    format: RecordFormat,
    /// The columns to produce (with the row kinds, for a changelog).
    schema: SchemaRef,
    /// What a JSON decoder reads: the columns, or Debezium's envelopes.
    json: SchemaRef,
    /// The table's columns (CSV is positional), and which of them to keep.
    table_schema: SchemaRef,
    projection: Vec<usize>,
}

impl RecordDecoder {
    pub fn new(
        format: RecordFormat,
        schema: SchemaRef,
        table_schema: SchemaRef,
        projection: Vec<usize>,
    ) -> Result<Self> {
        if format == RecordFormat::Raw {
            let fits = table_schema.fields().len() == 1
                && matches!(
                    table_schema.field(0).data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
                );
            if !fits {
                return Err(SluiceError::config(
                    "format 'raw' needs a table of exactly one STRING or BYTES column",
                ));
            }
        }
        let json = match format {
            RecordFormat::DebeziumJson { schema_include } => {
                crate::debezium::envelope_schema(&schema, schema_include)
            }
            _ => Arc::clone(&schema),
        };
        Ok(Self {
            format,
            schema,
            json,
            table_schema,
            projection,
        })
    }

    /// Decodes every record; the bad ones are returned beside the batch of
    /// the good ones, in offset order.
    pub fn decode(&self, records: &Records) -> Result<(RecordBatch, Vec<BadRecord>)> {
        if self.format == RecordFormat::Raw {
            return self.decode_raw(records);
        }
        let all: Vec<&[u8]> = (0..records.len()).map(|i| records.line(i)).collect();
        let (batch, bad) = match self.decode_all(&all) {
            Ok(batch) => (batch, Vec::new()),
            Err(_) => self.decode_one_by_one(records)?,
        };
        match self.format {
            RecordFormat::DebeziumJson { schema_include } => {
                self.unpack(records, &batch, bad, schema_include)
            }
            _ => Ok((batch, bad)),
        }
    }

    /// Debezium envelopes (one per record not in `bad`) as a changelog;
    /// an envelope that is not a change is a bad record too.
    fn unpack(
        &self,
        records: &Records,
        envelopes: &RecordBatch,
        mut bad: Vec<BadRecord>,
        schema_include: bool,
    ) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let (rows, refused) = crate::debezium::unpack(envelopes, &self.schema, schema_include)?;
        if refused.is_empty() {
            return Ok((rows, bad));
        }
        let failed: std::collections::HashSet<i64> = bad.iter().map(|b| b.offset).collect();
        let decoded: Vec<usize> = (0..records.len())
            .filter(|&i| !failed.contains(&records.spans[i].0))
            .collect();
        for envelope in refused {
            let i = decoded.get(envelope.row).copied().ok_or_else(|| {
                SluiceError::Runtime("a Debezium envelope without its record".to_string())
            })?;
            bad.push(BadRecord {
                offset: records.spans[i].0,
                value: records.value(i).to_vec(),
                reason: envelope.reason,
            });
        }
        bad.sort_by_key(|b| b.offset);
        Ok((rows, bad))
    }

    fn decode_one_by_one(&self, records: &Records) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for i in 0..records.len() {
            match self.decode_all(&[records.line(i)]) {
                Ok(batch) => good.push(batch),
                // Arrow's reasons may quote the whole value.
                Err(reason) => bad.push(BadRecord {
                    offset: records.spans[i].0,
                    value: records.value(i).to_vec(),
                    reason: preview(&reason),
                }),
            }
        }
        let batch = arrow::compute::concat_batches(&self.json, &good)
            .exec_context(|| "gathering decoded records".to_string())?;
        Ok((batch, bad))
    }

    /// Decodes records (each a value and its newline) with one decoder;
    /// fails unless each gives exactly one row, so a record holding two
    /// values, none, or half of one can never pass for a good one.
    fn decode_all(&self, lines: &[&[u8]]) -> Result<RecordBatch, String> {
        let n = lines.len().max(1);
        let batch = match self.format {
            RecordFormat::Json | RecordFormat::DebeziumJson { .. } => {
                let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&self.json))
                    .with_batch_size(n)
                    .build_decoder()
                    .map_err(|e| e.to_string())?;
                for line in lines {
                    let before = decoder.len();
                    let read = decoder.decode(line).map_err(json_reason)?;
                    let rows = decoder.len() - before;
                    if read != line.len() || rows != 1 || decoder.has_partial_record() {
                        return Err(match rows {
                            0 => "not one complete JSON value".to_string(),
                            _ => format!("{rows} JSON values in one record"),
                        });
                    }
                }
                let batch = decoder.flush().map_err(json_reason)?;
                batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.json)))
            }
            RecordFormat::Csv { delimiter } => {
                let mut decoder = arrow::csv::ReaderBuilder::new(Arc::clone(&self.table_schema))
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(n)
                    .build_decoder();
                for line in lines {
                    let before = decoder.capacity();
                    let read = decoder.decode(line).map_err(|e| e.to_string())?;
                    let rows = before - decoder.capacity();
                    if read != line.len() || rows != 1 {
                        return Err(format!("{rows} CSV lines in one record"));
                    }
                }
                let batch = decoder.flush().map_err(|e| e.to_string())?;
                let batch =
                    batch.unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.table_schema)));
                batch.project(&self.projection).map_err(|e| e.to_string())?
            }
            RecordFormat::Raw => return Err("raw values are not parsed".to_string()),
        };
        if batch.num_rows() != lines.len() {
            return Err(format!(
                "expected one row per record, decoded {} from {}",
                batch.num_rows(),
                lines.len()
            ));
        }
        Ok(batch)
    }

    /// Raw values need no parsing; only a STRING column can reject one
    /// (when it is not UTF-8).
    fn decode_raw(&self, records: &Records) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let mut bad = Vec::new();
        let text = matches!(
            self.table_schema.field(0).data_type(),
            DataType::Utf8 | DataType::LargeUtf8
        );
        let column: ArrayRef = if text {
            let mut builder = StringBuilder::new();
            for (i, (offset, _)) in records.spans.iter().enumerate() {
                match std::str::from_utf8(records.value(i)) {
                    Ok(value) => builder.append_value(value),
                    Err(e) => bad.push(BadRecord {
                        offset: *offset,
                        value: records.value(i).to_vec(),
                        reason: format!("value is not UTF-8: {e}"),
                    }),
                }
            }
            Arc::new(builder.finish())
        } else {
            let mut builder = BinaryBuilder::new();
            for i in 0..records.len() {
                builder.append_value(records.value(i));
            }
            Arc::new(builder.finish())
        };
        let rows = column.len();
        let batch = arrow::compute::cast(&column, self.table_schema.field(0).data_type())
            .and_then(|column| {
                let columns = if self.projection.is_empty() {
                    Vec::new()
                } else {
                    vec![column]
                };
                RecordBatch::try_new_with_options(
                    Arc::clone(&self.schema),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(rows)),
                )
            })
            .exec_context(|| "building raw values".to_string())?;
        Ok((batch, bad))
    }
}

fn json_reason(e: ArrowError) -> String {
    match e {
        ArrowError::JsonError(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Field, Int64Type, Schema, TimeUnit, TimestampMillisecondType};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    fn records(values: &[&str]) -> Records {
        let mut records = Records::default();
        for (i, v) in values.iter().enumerate() {
            records.push(100 + i as i64, v.as_bytes());
        }
        records
    }

    #[test]
    fn json_timestamps_in_flink_iso_and_epoch_forms() {
        let decoder = RecordDecoder::new(RecordFormat::Json, schema(), schema(), vec![0, 1])
            .expect("test input");
        let (batch, bad) = decoder
            .decode(&records(&[
                r#"{"id": 1, "ts": "2026-01-01 00:00:01.250"}"#,
                r#"{"id": 2, "ts": "2026-01-01T00:00:02"}"#,
                r#"{"id": 3, "ts": 1767225603000, "extra": [1, 2]}"#,
            ]))
            .expect("test input");
        assert!(bad.is_empty(), "{bad:?}");
        let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.values(), &[1767225601250, 1767225602000, 1767225603000]);
    }

    #[test]
    fn bad_records_are_found_by_offset_and_the_rest_kept() {
        let decoder = RecordDecoder::new(RecordFormat::Json, schema(), schema(), vec![0, 1])
            .expect("test input");
        let (batch, bad) = decoder
            .decode(&records(&[
                r#"{"id": 1}"#,
                r#"{"id": "one"}"#,
                r#"{"id": 3"#,
                r#"{"id": 4} {"id": 5}"#,
                r#"{"id": 6}"#,
            ]))
            .expect("test input");
        let ids = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.values(), &[1, 6]);
        let offsets: Vec<i64> = bad.iter().map(|b| b.offset).collect();
        assert_eq!(offsets, vec![101, 102, 103]);
        assert!(bad.iter().all(|b| !b.reason.is_empty()));
        assert_eq!(bad[0].value, br#"{"id": "one"}"#);

        // Two values in one record and none in another add up to the right
        // count, but neither is a good record.
        let (batch, bad) = decoder
            .decode(&records(&[r#"{"id": 1}"#, r#"{"id": 4} {"id": 5}"#, " "]))
            .expect("test input");
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().values(), &[1]);
        assert_eq!(
            bad.iter().map(|b| b.offset).collect::<Vec<_>>(),
            vec![101, 102]
        );
    }

    /// A reason quotes at most a preview of a huge value.
    #[test]
    fn a_huge_bad_value_gives_a_short_reason() {
        let decoder = RecordDecoder::new(RecordFormat::Json, schema(), schema(), vec![0, 1])
            .expect("test input");
        let huge = format!(r#"{{"id": "{}"}}"#, "x".repeat(1 << 20));
        let (_, bad) = decoder
            .decode(&records(&[r#"{"id": 1}"#, &huge]))
            .expect("test input");
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 101);
        assert!(bad[0].reason.len() < 400, "{}", bad[0].reason.len());
        assert!(bad[0].reason.contains("bytes)"), "{}", bad[0].reason);
        assert_eq!(
            bad[0].value.len(),
            huge.len(),
            "the value itself is kept whole"
        );
    }

    #[test]
    fn csv_is_positional_and_projected() {
        let decoder = RecordDecoder::new(
            RecordFormat::Csv { delimiter: b',' },
            Arc::new(schema().project(&[1]).expect("test input")),
            schema(),
            vec![1],
        )
        .expect("test input");
        let (batch, bad) = decoder
            .decode(&records(&["1,2026-01-01 00:00:01", "x,y"]))
            .expect("test input");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.num_columns(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 101);
    }

    #[test]
    fn raw_values_are_one_column() {
        let table = Arc::new(Schema::new(vec![Field::new("line", DataType::Utf8, true)]));
        let decoder = RecordDecoder::new(
            RecordFormat::Raw,
            Arc::clone(&table),
            Arc::clone(&table),
            vec![0],
        )
        .expect("test input");
        let (batch, bad) = decoder
            .decode(&records(&["a b", "", "c\nd"]))
            .expect("test input");
        assert!(bad.is_empty());
        let lines = batch.column(0).as_string::<i32>();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.value(2), "c\nd");
        assert!(RecordDecoder::new(RecordFormat::Raw, schema(), schema(), vec![0]).is_err());
    }
}
