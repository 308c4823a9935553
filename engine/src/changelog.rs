//! Updating results: row kinds and changelog modes.
//!
//! A stream whose rows can be taken back (a running total, a join's padded
//! row) is a *changelog*. Each row says what it does, with Flink's four
//! kinds and their byte values: `+I` insert (0), `-U` the row before an
//! update (1), `+U` the row after it (2), `-D` delete (3). An updating
//! aggregate sends each `-U` with its `+U`, adjacent in one batch; further
//! down they may part (a filter keeps one, an exchange routes them apart),
//! which retract mode allows: each row is a change on its own.
//!
//! The kind travels as one non-null `Int8` column, [`ROW_KIND`], last in the
//! schema, and only where the planner inferred that a stream can update:
//! insert-only plans keep their schemas and cost nothing. Being an ordinary
//! column, it survives projections and filters (which the planner makes
//! carry it), `take`, hash exchanges and Arrow IPC state files. What a
//! stream *can* hold is its [`ChangelogMode`], kept in the plan, not per
//! row.
//!
//! Sluice's updating operators always send the row before an update (`-U`)
//! with the row after it, Flink's "retract" mode: every consumer (a filter
//! over it, an aggregate of it, a sink) can then treat each row on its own.
//! What a row's retraction needs is to take the row's path: exchanges of
//! updating streams route by key or by the whole row, never round-robin.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int8Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int8Type, Schema, SchemaRef};

use crate::error::{ExecContext, Result, SluiceError};

/// The name of the row-kind column. Reserved: a table may not have a column
/// of this name.
pub const ROW_KIND: &str = "__row_kind";

/// What a row does to the result, with Flink's byte values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    Insert = 0,
    UpdateBefore = 1,
    UpdateAfter = 2,
    Delete = 3,
}

impl RowKind {
    pub const fn byte(self) -> i8 {
        self as i8
    }

    pub fn from_byte(byte: i8) -> Result<Self> {
        Ok(match byte {
            0 => Self::Insert,
            1 => Self::UpdateBefore,
            2 => Self::UpdateAfter,
            3 => Self::Delete,
            other => {
                return Err(SluiceError::Runtime(format!(
                    "row kind {other} is not one of Flink's (0 +I, 1 -U, 2 +U, 3 -D)"
                )));
            }
        })
    }

    /// Whether the row takes back one sent before (`-U`, `-D`).
    pub const fn is_retraction(self) -> bool {
        matches!(self, Self::UpdateBefore | Self::Delete)
    }

    /// As Flink prints it: `+I`, `-U`, `+U`, `-D`.
    pub const fn short(self) -> &'static str {
        match self {
            Self::Insert => "+I",
            Self::UpdateBefore => "-U",
            Self::UpdateAfter => "+U",
            Self::Delete => "-D",
        }
    }
}

/// Whether a byte of the row-kind column takes a row back.
pub fn is_retraction_byte(byte: i8) -> bool {
    byte == RowKind::UpdateBefore.byte() || byte == RowKind::Delete.byte()
}

/// What kinds of rows a stream can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangelogMode {
    /// Only inserts: no row-kind column.
    #[default]
    InsertOnly,
    /// Every kind, updates as `-U`/`+U` pairs: a row-kind column last.
    Retract,
}

impl ChangelogMode {
    pub const fn updates(self) -> bool {
        matches!(self, Self::Retract)
    }

    /// As `sluice explain` shows it, with Flink's letters.
    pub const fn explain(self) -> &'static str {
        match self {
            Self::InsertOnly => "[I]",
            Self::Retract => "[I,UB,UA,D]",
        }
    }

    /// The mode of a stream made of streams of these modes (a union).
    pub fn combine(modes: impl IntoIterator<Item = Self>) -> Self {
        if modes.into_iter().any(Self::updates) {
            Self::Retract
        } else {
            Self::InsertOnly
        }
    }
}

/// The row-kind column's field.
pub fn row_kind_field() -> Field {
    Field::new(ROW_KIND, DataType::Int8, false)
}

/// `schema` with the row-kind column appended.
pub fn with_row_kind(schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(row_kind_field()));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` without the row-kind column, when it ends with one.
pub fn without_row_kind(schema: &Schema) -> SchemaRef {
    let fields = schema.fields();
    let keep = match fields.last() {
        Some(last) if last.name() == ROW_KIND => fields.len() - 1,
        _ => fields.len(),
    };
    Arc::new(Schema::new_with_metadata(
        fields[..keep].to_vec(),
        schema.metadata().clone(),
    ))
}

/// The row kinds of `batch`, when its last column is the row-kind column.
pub fn row_kinds(batch: &RecordBatch) -> Option<&Int8Array> {
    let schema = batch.schema_ref();
    let last = schema.fields().len().checked_sub(1)?;
    (schema.field(last).name() == ROW_KIND)
        .then(|| batch.column(last).as_primitive_opt::<Int8Type>())
        .flatten()
}

/// `batch` without its row-kind column, and the kinds (none: all inserts),
/// each checked to be one of Flink's.
pub fn split(batch: &RecordBatch) -> Result<(RecordBatch, Option<Int8Array>)> {
    match row_kinds(batch) {
        Some(kinds) => {
            check_kinds(kinds)?;
            let kinds = kinds.clone();
            let mut data = batch.clone();
            data.remove_column(batch.num_columns() - 1);
            Ok((data, Some(kinds)))
        }
        None => Ok((batch.clone(), None)),
    }
}

/// A row-kind column of `rows` rows, all `kind`.
pub fn kinds_of(kind: RowKind, rows: usize) -> ArrayRef {
    Arc::new(Int8Array::from_value(kind.byte(), rows))
}

/// `batch` (insert-only) with a row-kind column of inserts appended.
pub fn as_inserts(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = with_row_kind(batch.schema_ref());
    let mut columns = batch.columns().to_vec();
    columns.push(kinds_of(RowKind::Insert, batch.num_rows()));
    RecordBatch::try_new(schema, columns).exec_context(|| "marking rows as inserts".to_string())
}

/// Fails when `schema` holds a column of a reserved name: the row kinds'
/// or the carried rows of late data ([`crate::ops::late_row`]).
pub fn check_no_reserved_column(table: &str, schema: &Schema) -> Result<()> {
    match schema.fields().iter().find_map(|f| reserved(f.name())) {
        Some(why) => Err(SluiceError::plan(format!(
            "table `{table}` has a column {why}"
        ))),
        None => Ok(()),
    }
}

/// Why a column may not be named `name`, if it may not.
pub fn reserved(name: &str) -> Option<String> {
    let what = match name {
        ROW_KIND => "the row kinds of updating streams",
        crate::ops::late_row::LATE_ROW => "the rows a window's late data is written as",
        _ => return None,
    };
    Some(format!("`{name}`: that name is reserved for {what}"))
}

/// Whether every byte of `kinds` is a Flink row kind.
fn check_kinds(kinds: &Int8Array) -> Result<()> {
    if kinds.null_count() > 0 {
        return Err(SluiceError::Runtime(
            "a row kind is NULL: every row of an updating stream says what it does".into(),
        ));
    }
    match kinds.values().iter().find(|&&b| !(0..=3).contains(&b)) {
        Some(&bad) => RowKind::from_byte(bad).map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_flinks_bytes_and_letters() {
        for (kind, byte, short) in [
            (RowKind::Insert, 0, "+I"),
            (RowKind::UpdateBefore, 1, "-U"),
            (RowKind::UpdateAfter, 2, "+U"),
            (RowKind::Delete, 3, "-D"),
        ] {
            assert_eq!(kind.byte(), byte);
            assert_eq!(RowKind::from_byte(byte).expect("kind"), kind);
            assert_eq!(kind.short(), short);
            assert_eq!(kind.is_retraction(), is_retraction_byte(byte));
        }
        assert!(RowKind::from_byte(4).is_err());
        assert!(check_kinds(&Int8Array::from(vec![0, 1, 2, 3])).is_ok());
        assert!(check_kinds(&Int8Array::from(vec![0, 7])).is_err());
    }

    #[test]
    fn the_kind_column_is_split_off_and_put_back() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int64Array::from(vec![1, 2]))],
        )
        .expect("batch");
        assert!(row_kinds(&batch).is_none());
        let marked = as_inserts(&batch).expect("inserts");
        assert_eq!(marked.schema().field(1).name(), ROW_KIND);
        let (data, kinds) = split(&marked).expect("split");
        assert_eq!(data, batch);
        assert_eq!(kinds.expect("kinds").values().to_vec(), vec![0, 0]);
        // A byte that is no row kind is an error, not a row.
        let mut columns = marked.columns().to_vec();
        columns[1] = Arc::new(Int8Array::from(vec![0, 9]));
        let bad = RecordBatch::try_new(marked.schema(), columns).expect("batch");
        assert!(split(&bad).is_err());
    }
}
