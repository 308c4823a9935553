//! Operator state in checkpoint files: Arrow IPC, one file per operator
//! subtask.

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;

use crate::error::{Result, SluiceError};

/// Encodes state batches (all of one schema; `schema` when there are none).
pub fn encode(schema: Arc<Schema>, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let schema = batches.first().map_or(schema, |b| b.schema());
    let fail = |e: arrow::error::ArrowError| SluiceError::Runtime(format!("encoding state: {e}"));
    let mut writer = FileWriter::try_new(Vec::new(), &schema).map_err(fail)?;
    for batch in batches {
        writer.write(batch).map_err(fail)?;
    }
    writer.finish().map_err(fail)?;
    writer.into_inner().map_err(fail)
}

/// Decodes a state file; `what` names it in errors.
pub fn decode(bytes: Vec<u8>, what: &str) -> Result<Vec<RecordBatch>> {
    let fail = |e: arrow::error::ArrowError| {
        SluiceError::Runtime(format!("state file {what} is damaged: {e}"))
    };
    FileReader::try_new(Cursor::new(bytes), None)
        .map_err(fail)?
        .map(|batch| batch.map_err(fail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn state_round_trips_and_damage_is_an_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]))],
        )
        .expect("batch");
        let bytes = encode(Arc::clone(&schema), &[batch.clone(), batch.clone()]).expect("encode");
        assert_eq!(
            decode(bytes.clone(), "s").expect("decode"),
            vec![batch.clone(), batch]
        );
        let empty = encode(schema, &[]).expect("encode nothing");
        assert!(decode(empty, "s").expect("decode").is_empty());
        let cut = bytes[..bytes.len() / 2].to_vec();
        let error = decode(cut, "chk-1/x.arrow").expect_err("truncated");
        assert!(error.to_string().contains("chk-1/x.arrow"), "{error}");
    }
}
