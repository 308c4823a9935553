//! The filesystem sink: one part file per subtask, visible on commit.
//!
//! A writer stages its rows under a hidden name (`.part-….inprogress`, which
//! readers skip) and the sink renames every staged file into place only when
//! the whole job has succeeded, so a failed run leaves no half-written
//! results where readers look. With checkpoints, a writer closes its part
//! at every barrier and starts the next; the parts a checkpoint covers are
//! renamed into place when it completes (two-phase commit), and the rest
//! when the job ends.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::checkpoint::protocol::StagedOutput;
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
        let mut writer = FileWriter {
            sink_url: self.location.url.clone(),
            store: Arc::clone(&self.location.store),
            format: self.format,
            schema: Arc::clone(&self.schema),
            dir: self.location.path.clone(),
            name: format!("part-{}-{subtask}", self.run),
            part: 0,
            staged: Path::default(),
            target: Path::default(),
            output: None,
            registry: Arc::clone(&self.staged),
        };
        writer.name_part();
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

    fn commit_checkpoint<'a>(&'a self, staged: &'a [StagedOutput]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Only what is still staged: committing twice is committing once.
            let moves: Vec<(Path, Path)> = {
                let mut registry = self.staged.lock().map_err(|_| {
                    SluiceError::Runtime("a sink writer panicked while committing".into())
                })?;
                let wanted: Vec<(Path, Path)> = staged
                    .iter()
                    .map(|s| (Path::from(s.staged.as_str()), Path::from(s.target.as_str())))
                    .collect();
                let (mine, rest): (Vec<_>, Vec<_>) =
                    registry.drain(..).partition(|entry| wanted.contains(entry));
                *registry = rest;
                mine
            };
            for (from, to) in moves {
                self.location.store.rename(&from, &to).await.map_err(|e| {
                    SluiceError::io(format!("committing {}", self.location.url_of(&to)), e)
                })?;
            }
            Ok(())
        })
    }

    fn recover<'a>(
        &'a self,
        staged: &'a [StagedOutput],
        _writers: usize,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let store = &self.location.store;
            for s in staged {
                let (from, to) = (Path::from(s.staged.as_str()), Path::from(s.target.as_str()));
                match store.rename(&from, &to).await {
                    Ok(()) => {}
                    // Committed before the crash: the target is there.
                    Err(object_store::Error::NotFound { .. }) if store.head(&to).await.is_ok() => {}
                    Err(e) => {
                        return Err(SluiceError::io(
                            format!("committing restored output {}", self.location.url_of(&to)),
                            e,
                        ));
                    }
                }
            }
            // Parts staged after the checkpoint (or by a run that never
            // checkpointed): the restored job writes their rows again.
            let listed: Vec<_> = store
                .list(Some(&self.location.path))
                .collect::<Vec<_>>()
                .await;
            for item in listed {
                let meta = match item {
                    Ok(meta) => meta,
                    Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => {
                        return Err(SluiceError::io(format!("listing {}", self.location.url), e));
                    }
                };
                let stale = meta
                    .location
                    .filename()
                    .is_some_and(|n| n.starts_with(".part-") && n.ends_with(".inprogress"));
                if stale {
                    match store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            return Err(SluiceError::io(
                                format!("dropping {}", self.location.url_of(&meta.location)),
                                e,
                            ));
                        }
                    }
                }
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
    /// The sink's directory, this writer's part name, and which part it is
    /// writing (a new one after every checkpoint).
    dir: Path,
    name: String,
    part: usize,
    staged: Path,
    target: Path,
    /// Created with the first row, so subtasks without rows leave no file.
    output: Option<Output>,
    registry: Arc<Mutex<Vec<(Path, Path)>>>,
}

impl FileWriter {
    /// Names the staged and final files of the current part.
    fn name_part(&mut self) {
        let name = format!("{}-{}.{}", self.name, self.part, self.format.extension());
        self.staged = self.dir.clone().join(format!(".{name}.inprogress"));
        self.target = self.dir.clone().join(name);
    }

    /// Closes the current part, if one was started, and records it staged.
    async fn close_part(&mut self) -> Result<Option<(Path, Path)>> {
        let closed = match self.output.take() {
            None => return Ok(None),
            Some(Output::Parquet(w)) => w.close().await.map(|_| ()).map_err(|e| e.to_string()),
            Some(Output::Json(mut w)) => w.shutdown().await.map_err(|e| e.to_string()),
        };
        closed
            .map_err(|e| SluiceError::Data(format!("closing a file in {}: {e}", self.sink_url)))?;
        let entry = (self.staged.clone(), self.target.clone());
        self.registry
            .lock()
            .map_err(|_| SluiceError::Runtime("a sink writer panicked".into()))?
            .push(entry.clone());
        Ok(Some(entry))
    }

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

    fn prepare_commit(
        &mut self,
        _checkpoint: sluice_engine::checkpoint::CheckpointId,
    ) -> BoxFuture<'_, Result<Vec<StagedOutput>>> {
        Box::pin(async move {
            let Some((staged, target)) = self.close_part().await? else {
                return Ok(Vec::new());
            };
            self.part += 1;
            self.name_part();
            Ok(vec![StagedOutput {
                sink: String::new(),
                staged: staged.to_string(),
                target: target.to_string(),
            }])
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move { self.close_part().await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn visible(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|e| {
                e.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[tokio::test]
    async fn parts_staged_at_a_checkpoint_are_committed_once_and_the_rest_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location =
            crate::store::resolve(&dir.path().display().to_string(), "t", "path").expect("path");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let sink = FileSink::new(location, Format::Json, Arc::clone(&schema));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))])
            .expect("batch");
        let mut writer = sink.open_writer(0, 1).await.expect("writer");
        assert!(
            writer.prepare_commit(1).await.expect("empty").is_empty(),
            "nothing written"
        );
        writer.write(batch.clone()).await.expect("write");
        let staged = writer.prepare_commit(2).await.expect("prepare");
        assert_eq!(staged.len(), 1);
        assert!(visible(dir.path()).is_empty(), "staged, not visible");
        sink.commit_checkpoint(&staged).await.expect("commit");
        sink.commit_checkpoint(&staged).await.expect("again: no-op");
        assert_eq!(visible(dir.path()).len(), 1);
        writer.write(batch).await.expect("write");
        writer.finish().await.expect("finish");
        sink.commit().await.expect("commit the rest");
        let names = visible(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names[0].ends_with("-0-0.json") && names[1].ends_with("-0-1.json"),
            "{names:?}"
        );
    }
}
