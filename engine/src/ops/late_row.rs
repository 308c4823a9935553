//! The whole row a late row is kept as.
//!
//! When a job keeps its late rows (`SET 'sluice.late-data.path'`), a source
//! that a window reads carries each row as it was read, its physical
//! columns before any computed one, in one more, last, struct column
//! ([`LATE_ROW`]). Projections and filters between the source and the window
//! pass it on; the window's keys, aggregates and state never hold it (a
//! session window, which keeps its open sessions' rows, drops it). A row
//! the window sets aside as late is written as that column's fields, so it
//! can be replayed through the same table; without the column, as the
//! columns the window reads.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Schema;

use crate::error::{Result, SluiceError};

/// The name of the column carrying the row as it was read.
pub const LATE_ROW: &str = "__sluice_late_row";

/// The index of the carried row in `schema`, if its rows carry one.
pub fn carried(schema: &Schema) -> Option<usize> {
    let last = schema.fields().len().checked_sub(1)?;
    (schema.field(last).name() == LATE_ROW).then_some(last)
}

/// Late rows as they are written: the rows they were read as when `column`
/// carries them, else `late` without a carried column.
pub fn as_written(late: RecordBatch, column: Option<usize>) -> Result<RecordBatch> {
    let Some(column) = column else {
        return Ok(late);
    };
    let carried = late.column(column).as_struct_opt().ok_or_else(|| {
        SluiceError::Runtime(format!(
            "column {column} of late rows is not the row they were read as"
        ))
    })?;
    if carried.null_count() > 0 {
        return Err(SluiceError::Runtime(
            "a late row carries no row it was read as".to_string(),
        ));
    }
    Ok(RecordBatch::from(carried.clone()))
}

/// The carried rows at column `column`, passed on by a projection.
pub fn column(column: usize) -> std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr> {
    std::sync::Arc::new(datafusion::physical_expr::expressions::Column::new(
        LATE_ROW, column,
    ))
}

/// `batch` without its carried rows, if it has them.
pub fn without(batch: RecordBatch) -> Result<RecordBatch> {
    match carried(&batch.schema()) {
        Some(column) => batch
            .project(&(0..column).collect::<Vec<_>>())
            .map_err(|e| SluiceError::Runtime(format!("dropping carried rows: {e}"))),
        None => Ok(batch),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;

    fn read() -> RecordBatch {
        RecordBatch::try_from_iter([
            ("auction", Arc::new(Int64Array::from(vec![1, 2])) as _),
            ("extra", Arc::new(StringArray::from(vec!["a", "b"])) as _),
        ])
        .expect("batch")
    }

    #[test]
    fn late_rows_are_written_as_they_were_read() {
        let row = StructArray::from(read());
        let late = RecordBatch::try_from_iter([
            ("auction", Arc::new(Int64Array::from(vec![1, 2])) as _),
            (LATE_ROW, Arc::new(row) as _),
        ])
        .expect("batch");
        assert_eq!(carried(&late.schema()), Some(1));
        assert_eq!(as_written(late, Some(1)).expect("written"), read());
    }

    #[test]
    fn rows_without_a_carried_row_are_written_as_they_are() {
        let schema = Schema::new(vec![Field::new("auction", DataType::Int64, false)]);
        assert_eq!(carried(&schema), None);
        assert_eq!(as_written(read(), None).expect("written"), read());
    }
}
