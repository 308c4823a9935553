//! Projection and filtering with DataFusion physical expressions.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;

use super::{Operator, OperatorContext, OperatorFactory, Output, Port};
use crate::error::{ExecContext, Result, SluiceError};

/// Computes new columns from each batch.
#[derive(Debug, Clone)]
pub struct Project {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
    /// When every expression is a plain column, the indices to keep.
    columns: Option<Vec<usize>>,
}

impl Project {
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        let columns = exprs
            .iter()
            .map(|e| e.downcast_ref::<Column>().map(Column::index))
            .collect();
        Self {
            exprs,
            schema,
            columns,
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if let Some(columns) = &self.columns {
            let arrays = columns
                .iter()
                .map(|i| Arc::clone(batch.column(*i)))
                .collect();
            return RecordBatch::try_new_with_options(
                Arc::clone(&self.schema),
                arrays,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
            .exec_context(|| "projecting columns".to_string());
        }
        let arrays = self
            .exprs
            .iter()
            .map(|e| {
                e.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<Result<Vec<_>, _>>()
            .exec_context(|| "evaluating the SELECT list".to_string())?;
        RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .exec_context(|| "building the projected batch".to_string())
    }
}

/// The name a [`Project`] is shown and known by.
pub const PROJECT: &str = "Project";

impl OperatorFactory for Project {
    fn name(&self) -> &str {
        PROJECT
    }

    fn column_origin(&self, column: usize) -> super::ColumnOrigin {
        match self
            .exprs
            .get(column)
            .and_then(|e| e.downcast_ref::<Column>())
        {
            Some(c) => super::ColumnOrigin::Input {
                port: 0,
                column: c.index(),
            },
            None => super::ColumnOrigin::Computed,
        }
    }

    /// The SELECT list; the row kinds an updating stream carries through
    /// are left to the changelog mode `explain` shows.
    fn describe(&self) -> String {
        self.exprs
            .iter()
            .zip(self.schema.fields())
            .filter(|(_, f)| f.name() != crate::changelog::ROW_KIND)
            .map(|(e, f)| {
                let e = crate::plan::sql_text::expr(e.as_ref());
                if e == *f.name() {
                    e
                } else {
                    format!("{e} AS {}", f.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn fingerprint(&self) -> String {
        self.exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(e, f)| {
                let e = e.to_string();
                let plain = e.split('@').next().unwrap_or(&e);
                if plain == f.name() {
                    plain.to_string()
                } else {
                    format!("{e} AS {}", f.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(self.clone()))
    }
}

impl Operator for Project {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.batch(self.apply(&batch)?);
        Ok(())
    }
}

/// Keeps the rows for which a predicate is true.
#[derive(Debug, Clone)]
pub struct Filter {
    predicate: Arc<dyn PhysicalExpr>,
}

impl Filter {
    pub fn new(predicate: Arc<dyn PhysicalExpr>) -> Self {
        Self { predicate }
    }
}

impl OperatorFactory for Filter {
    fn name(&self) -> &str {
        "Filter"
    }

    fn column_origin(&self, column: usize) -> super::ColumnOrigin {
        super::ColumnOrigin::Input { port: 0, column }
    }

    fn describe(&self) -> String {
        crate::plan::sql_text::expr(self.predicate.as_ref())
    }

    fn fingerprint(&self) -> String {
        self.predicate.to_string()
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(self.clone()))
    }
}

impl Operator for Filter {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let mask = self
            .predicate
            .evaluate(&batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .exec_context(|| "evaluating the WHERE clause".to_string())?;
        if mask.data_type() != &DataType::Boolean {
            return Err(SluiceError::Runtime(format!(
                "filter predicate {} is {}, not BOOLEAN",
                self.predicate,
                mask.data_type()
            )));
        }
        let mask = mask.as_boolean();
        if mask.true_count() == batch.num_rows() {
            out.batch(batch);
        } else {
            out.batch(
                filter_record_batch(&batch, mask).exec_context(|| "filtering rows".to_string())?,
            );
        }
        Ok(())
    }
}

/// The meeting point of a `UNION ALL`: one port per input, whose rows it
/// passes on as they come; its watermark, the minimum over its ports, is
/// the runtime's.
#[derive(Debug, Clone)]
pub struct Union;

impl OperatorFactory for Union {
    fn name(&self) -> &str {
        "Union"
    }

    fn describe(&self) -> String {
        String::new()
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(Self))
    }
}

impl Operator for Union {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        out.batch(batch);
        Ok(())
    }
}
