//! The filesystem sink: one part file per subtask, visible on commit.
//!
//! A writer stages its rows under a hidden name (`.part-….inprogress`, which
//! readers skip) and the sink renames every staged file into place only when
//! the whole job has succeeded, so a failed run leaves no half-written
//! results where readers look. (With checkpoints, the same rename happens per
//! completed checkpoint.)

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::connector::{Sink, SinkWriter};
use sluice_engine::{Result, SluiceError};
use tokio::io::AsyncWriteExt;

use super::Format;
use crate::store::Location;

#[derive(Debug)]
pub struct FileSink {
    location: Location,
    format: Format,
    schema: SchemaRef,
    /// Names this run's files apart from earlier runs' in the same directory.
    run: String,
    /// Staged files and their final names, filled as writers finish.
    staged: Arc<Mutex<Vec<(Path, Path)>>>,
}

impl FileSink {
    pub fn new(location: Location, format: Format, schema: SchemaRef) -> Self {
        Self {
            location,
            format,
            schema,
            run: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            staged: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl Sink for FileSink {
    fn open_writer(
        &self,
        subtask: usize,
        _parallelism: usize,
    ) -> BoxFuture<'_, Result<Box<dyn SinkWriter>>> {
        let name = format!("part-{}-{subtask}-0.{}", self.run, self.format.extension());
        let staged = self
            .location
            .path
            .clone()
            .join(format!(".{name}.inprogress"));
        let target = self.location.path.clone().join(name);
        let writer = FileWriter {
            sink_url: self.location.url.clone(),
            store: Arc::clone(&self.location.store),
            format: self.format,
            schema: Arc::clone(&self.schema),
            staged,
            target,
            output: None,
            registry: Arc::clone(&self.staged),
        };
        Box::pin(async move { Ok(Box::new(writer) as Box<dyn SinkWriter>) })
    }

    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let staged = std::mem::take(&mut *self.staged.lock().map_err(|_| {
                SluiceError::Runtime("a sink writer panicked while committing".into())
            })?);
            for (from, to) in staged {
                self.location.store.rename(&from, &to).await.map_err(|e| {
                    SluiceError::io(format!("committing {}", self.location.url_of(&to)), e)
                })?;
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!(
            "filesystem {} {}",
            self.format.extension(),
            self.location.url
        )
    }
}

enum Output {
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
    Json(Box<BufWriter>),
}

struct FileWriter {
    sink_url: String,
    store: Arc<dyn object_store::ObjectStore>,
    format: Format,
    schema: SchemaRef,
    staged: Path,
    target: Path,
    /// Created with the first row, so subtasks without rows leave no file.
    output: Option<Output>,
    registry: Arc<Mutex<Vec<(Path, Path)>>>,
}

impl FileWriter {
    fn error(&self, e: impl std::error::Error + Send + Sync + 'static) -> SluiceError {
        SluiceError::io(format!("writing to {}", self.sink_url), e)
    }

    fn create(&self) -> Result<Output> {
        Ok(match self.format {
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(1 << 20))
                    .build();
                Output::Parquet(Box::new(
                    AsyncArrowWriter::try_new(
                        BufWriter::new(Arc::clone(&self.store), self.staged.clone()),
                        Arc::clone(&self.schema),
                        Some(props),
                    )
                    .map_err(|e| self.error(e))?,
                ))
            }
            _ => Output::Json(Box::new(BufWriter::new(
                Arc::clone(&self.store),
                self.staged.clone(),
            ))),
        })
    }
}

impl SinkWriter for FileWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            if self.output.is_none() {
                self.output = Some(self.create()?);
            }
            match self.output.as_mut() {
                Some(Output::Parquet(w)) => w
                    .write(&batch)
                    .await
                    .map_err(|e| SluiceError::io(format!("writing to {}", self.sink_url), e)),
                Some(Output::Json(w)) => {
                    let mut encoded = arrow::json::LineDelimitedWriter::new(Vec::new());
                    encoded
                        .write(&batch)
                        .and_then(|_| encoded.finish())
                        .map_err(|e| {
                            SluiceError::io(format!("encoding JSON for {}", self.sink_url), e)
                        })?;
                    w.write_all(&encoded.into_inner())
                        .await
                        .map_err(|e| SluiceError::io(format!("writing to {}", self.sink_url), e))
                }
                None => Ok(()),
            }
        })
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            let FileWriter {
                sink_url,
                output,
                staged,
                target,
                registry,
                ..
            } = *self;
            let closed = match output {
                None => return Ok(()),
                Some(Output::Parquet(w)) => w
                    .close()
                    .await
                    .map(|_| ())
                    .map_err(|e| SluiceError::io(format!("closing a file in {sink_url}"), e)),
                Some(Output::Json(mut w)) => w
                    .shutdown()
                    .await
                    .map_err(|e| SluiceError::io(format!("closing a file in {sink_url}"), e)),
            };
            closed?;
            registry
                .lock()
                .map_err(|_| SluiceError::Runtime("a sink writer panicked".into()))?
                .push((staged, target));
            Ok(())
        })
    }
}
