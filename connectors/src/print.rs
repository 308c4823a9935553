//! The `print` and `blackhole` sinks.
//!
//! `print` writes each row as Flink does, `+I[v1, v2, ...]` (or `-U`, `+U`,
//! `-D` for the rows of an updating result), prefixed with
//! the subtask number (`2> `) when the sink runs in parallel and with
//! `'print-identifier'` when set; `'standard-error' = 'true'` writes to stderr.

use std::io::Write;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::future::BoxFuture;
use sluice_engine::changelog::{self, RowKind};
use sluice_engine::connector::{ConnectorContext, OptionNames, Sink, SinkFactory, SinkWriter};
use sluice_engine::sql::{Options, TableDef};
use sluice_engine::{Result, SluiceError};

pub struct PrintFactory;

impl SinkFactory for PrintFactory {
    fn option_names(&self) -> OptionNames {
        &["print-identifier", "standard-error"]
    }
    fn create_sink(
        &self,
        _table: &TableDef,
        options: &mut Options,
        _context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(PrintSink {
            identifier: options.take("print-identifier"),
            stderr: options
                .take_parsed::<bool>("standard-error", "'true' or 'false'")?
                .unwrap_or(false),
        }))
    }
}

#[derive(Debug)]
struct PrintSink {
    identifier: Option<String>,
    stderr: bool,
}

impl Sink for PrintSink {
    fn accepts_changes(&self) -> bool {
        true
    }

    /// Printed rows cannot be taken back.
    fn abort(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    fn open_writer(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> BoxFuture<'_, Result<Box<dyn SinkWriter>>> {
        let prefix = match (&self.identifier, parallelism > 1) {
            (Some(id), true) => format!("{id}:{}> ", subtask + 1),
            (Some(id), false) => format!("{id}> "),
            (None, true) => format!("{}> ", subtask + 1),
            (None, false) => String::new(),
        };
        let stderr = self.stderr;
        Box::pin(async move { Ok(Box::new(PrintWriter { prefix, stderr }) as Box<dyn SinkWriter>) })
    }

    fn describe(&self) -> String {
        "print".to_string()
    }
}

struct PrintWriter {
    prefix: String,
    stderr: bool,
}

/// Formats rows the way Flink's print sink does, each with its row kind
/// (`+I[...]`, `-U[...]`, `+U[...]`, `-D[...]`).
pub fn format_rows(batch: &RecordBatch, prefix: &str) -> Result<String> {
    let (batch, kinds) = changelog::split(batch)?;
    let options = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SluiceError::Data(format!("formatting rows: {e}")))?;
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        let kind = match &kinds {
            Some(kinds) => RowKind::from_byte(kinds.value(row))?,
            None => RowKind::Insert,
        };
        out.push_str(kind.short());
        out.push('[');
        for (i, f) in formatters.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&f.value(row).to_string());
        }
        out.push_str("]\n");
    }
    Ok(out)
}

impl SinkWriter for PrintWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let text = format_rows(&batch, &self.prefix)?;
            let written = if self.stderr {
                std::io::stderr().lock().write_all(text.as_bytes())
            } else {
                std::io::stdout().lock().write_all(text.as_bytes())
            };
            written.map_err(|e| SluiceError::io("printing rows", e))
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

pub struct BlackholeFactory;

impl SinkFactory for BlackholeFactory {
    fn option_names(&self) -> OptionNames {
        &[]
    }

    /// It holds nothing, so replacing it is writing to it.
    fn supports_overwrite(&self) -> bool {
        true
    }
    fn create_sink(
        &self,
        _table: &TableDef,
        _options: &mut Options,
        _context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(Blackhole))
    }
}

#[derive(Debug)]
struct Blackhole;

impl Sink for Blackhole {
    fn accepts_changes(&self) -> bool {
        true
    }

    /// Nothing went anywhere.
    fn abort(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async { Ok(true) })
    }

    fn open_writer(&self, _: usize, _: usize) -> BoxFuture<'_, Result<Box<dyn SinkWriter>>> {
        Box::pin(async { Ok(Box::new(Blackhole) as Box<dyn SinkWriter>) })
    }

    fn describe(&self) -> String {
        "blackhole".to_string()
    }
}

impl SinkWriter for Blackhole {
    fn write(&mut self, _batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}
