//! The filesystem sink: one part file per subtask, visible on commit.
//!
//! A writer stages its rows under a hidden name (`.part-….inprogress`, which
//! readers skip). With checkpoints, a writer closes its part at every
//! barrier and starts the next; the parts a checkpoint covers are renamed
//! into place when it completes (two-phase commit), and a restore finishes
//! or drops what a crash interrupted. Without checkpoints, every part is
//! renamed into place only when the whole job has succeeded.
//!
//! How a reader knows a result is complete: `_SUCCESS` appears in the
//! directory once a job that read its input to the end has committed all
//! of its output (as Hadoop, Spark and Flink's partition commit mark it),
//! and every run removes it when it starts. The end-of-job commit is
//! atomic for that marker: the moves it will make are written first to a
//! hidden commit log (`.commit-<run>.json`), then made, then `_SUCCESS`,
//! then the log is removed. A run that dies in between leaves the log, and
//! the next run into the directory rolls the half-made commit back before
//! it writes: a run that did not succeed leaves nothing visible.
//!
//! `INSERT OVERWRITE` (batch mode, no checkpoints) replaces the files that
//! were in the directory when the run started, whatever they are. They are
//! moved aside (hidden, `.replaced-<run>-<name>`) only once every sink of
//! the job has its new files in place, as the commit log records, and
//! deleted only after the log is gone: until then the commit is undone like
//! any other, the old files moved back; a run that dies after it leaves
//! hidden files that the next run into the directory deletes. While the
//! log is there a reader listing the directory may see old and new files
//! together: wait for `_SUCCESS`, as Sluice's own filesystem source does
//! when it finds a commit under way.
//!
//! One job writes a directory at a time: a starting run drops every part
//! staged by earlier runs that it does not restore.

use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use sluice_engine::checkpoint::protocol::StagedOutput;
use sluice_engine::connector::{Sink, SinkReport, SinkWriter};
use sluice_engine::{Result, SluiceError};
use tokio::io::AsyncWriteExt;

use super::Format;
use crate::store::Location;

/// The marker of a directory whose output is complete.
pub const SUCCESS: &str = "_SUCCESS";

/// Hidden commit logs: the moves an end-of-job commit is making.
pub(crate) const COMMIT_LOG_PREFIX: &str = ".commit-";

/// A staged part: `.part-<run>-<subtask>-<n>.<ext>.inprogress`, with a
/// `#<n>` suffix while a multipart upload to the local disk is under way.
fn is_staged_part(name: &str) -> bool {
    name.starts_with(".part-") && name.contains(".inprogress")
}

/// What a commit log holds: staged files and their final names, and for
/// `INSERT OVERWRITE` the files they replace and where those are moved
/// aside.
#[derive(serde::Serialize, serde::Deserialize)]
struct CommitLog {
    moves: Vec<(String, String)>,
    #[serde(default)]
    replaces: Vec<(String, String)>,
}

/// Old files an `INSERT OVERWRITE` moved aside: `.replaced-<run>-<name>`.
const REPLACED_PREFIX: &str = ".replaced-";

#[derive(Debug)]
pub struct FileSink {
    location: Location,
    format: Format,
    schema: SchemaRef,
    /// Names this run's files apart from earlier runs' in the same directory.
    run: String,
    /// Staged files and their final names, filled as writers finish.
    staged: Arc<Mutex<Vec<(Path, Path)>>>,
    /// The files this run made visible, by name.
    committed: Mutex<Vec<String>>,
    /// `INSERT OVERWRITE`: the files in the directory when the run started
    /// go when its own are in place.
    overwrite: bool,
    replaces: Mutex<Vec<Path>>,
    /// How many files this run replaced, once it has.
    replaced: Mutex<Option<usize>>,
}

impl FileSink {
    pub fn new(location: Location, format: Format, schema: SchemaRef) -> Self {
        Self {
            location,
            format,
            schema,
            run: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            staged: Arc::new(Mutex::new(Vec::new())),
            committed: Mutex::new(Vec::new()),
            overwrite: false,
            replaces: Mutex::new(Vec::new()),
            replaced: Mutex::new(None),
        }
    }

    /// Makes the sink replace what its directory holds (`INSERT OVERWRITE`).
    pub fn replacing(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }
}

/// A file of the output proper: not hidden (staged parts, commit logs) and
/// not a marker (`_SUCCESS`).
fn is_output_file(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

fn poisoned() -> SluiceError {
    SluiceError::Runtime("a sink writer panicked".into())
}

impl FileSink {
    /// Renames a staged part into place; one whose target is there already
    /// was committed before (by an earlier attempt, or before a crash).
    async fn move_into_place(&self, from: &Path, to: &Path) -> Result<()> {
        let store = &self.location.store;
        match store.rename(from, to).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) if store.head(to).await.is_ok() => Ok(()),
            Err(e) => Err(self.io("committing", to, e)),
        }
    }

    /// Remembers a file this run made visible, for the `_SUCCESS` marker.
    fn record_committed(&self, to: &Path) -> Result<()> {
        let mut committed = self.committed.lock().map_err(|_| poisoned())?;
        if let Some(name) = to.filename()
            && !committed.iter().any(|c| c == name)
        {
            committed.push(name.to_string());
        }
        Ok(())
    }

    async fn write_log(&self, entries: &CommitLog) -> Result<()> {
        let log = self.commit_log();
        let text = serde_json::to_vec(entries)
            .map_err(|e| SluiceError::Runtime(format!("encoding the commit log: {e}")))?;
        self.location
            .store
            .put(&log, PutPayload::from(text))
            .await
            .map_err(|e| self.io("writing the commit log", &log, e))
            .map(|_| ())
    }

    /// Writes `_SUCCESS`, listing the files this run made visible.
    async fn write_success(&self) -> Result<()> {
        let files = self.committed.lock().map_err(|_| poisoned())?.clone();
        let success = self.location.path.clone().join(SUCCESS);
        let marker = serde_json::json!({
            "run": self.run,
            "committed_at": chrono::Utc::now().to_rfc3339(),
            "files": files,
        });
        sluice_engine::failpoint::hit("sink.commit.mark");
        self.location
            .store
            .put(&success, PutPayload::from(marker.to_string().into_bytes()))
            .await
            .map_err(|e| self.io("marking the output complete", &success, e))
            .map(|_| ())
    }

    /// Where an `INSERT OVERWRITE` moves an old file aside.
    fn aside(&self, old: &Path) -> Path {
        self.location.path.clone().join(format!(
            "{REPLACED_PREFIX}{}-{}",
            self.run,
            old.filename().unwrap_or_default()
        ))
    }

    fn commit_log(&self) -> Path {
        self.location
            .path
            .clone()
            .join(format!("{COMMIT_LOG_PREFIX}{}.json", self.run))
    }

    fn io(&self, doing: &str, path: &Path, e: object_store::Error) -> SluiceError {
        SluiceError::io(format!("{doing} {}", self.location.url_of(path)), e)
    }

    /// Every file in the sink's directory (not below it).
    async fn list(&self) -> Result<Vec<Path>> {
        let store = &self.location.store;
        let mut listed = store.list(Some(&self.location.path));
        let depth = self.location.path.parts().count();
        let mut paths = Vec::new();
        while let Some(item) = listed.next().await {
            match item {
                // Files below it belong to other directories.
                Ok(meta) if meta.location.parts().count() == depth + 1 => {
                    paths.push(meta.location);
                }
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(SluiceError::io(format!("listing {}", self.location.url), e)),
            }
        }
        Ok(paths)
    }

    /// Undoes the end-of-job commit that `log` records: its moved files and
    /// those still staged go, but for those a restored checkpoint commits.
    async fn roll_back(&self, log: &Path, restored: &[&str]) -> Result<()> {
        let store = self.location.store.as_ref();
        let bytes = store
            .get(log)
            .await
            .map_err(|e| self.io("reading the commit log", log, e))?
            .bytes()
            .await
            .map_err(|e| self.io("reading the commit log", log, e))?;
        let entries: CommitLog = serde_json::from_slice(&bytes).map_err(|e| {
            SluiceError::Data(format!(
                "the commit log {} is damaged ({e}); remove it and the files it names",
                self.location.url_of(log)
            ))
        })?;
        let mut dropped = 0;
        for (from, to) in &entries.moves {
            if restored.contains(&from.as_str()) {
                continue;
            }
            for path in [Path::from(to.as_str()), Path::from(from.as_str())] {
                delete_if_there(store, &path)
                    .await
                    .map_err(|e| self.io("rolling back", &path, e))?;
            }
            dropped += 1;
        }
        // The files an INSERT OVERWRITE had moved aside come back.
        for (old, aside) in &entries.replaces {
            let (old, aside) = (Path::from(old.as_str()), Path::from(aside.as_str()));
            match store.rename(&aside, &old).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.io("putting back", &old, e)),
            }
        }
        tracing::warn!(
            "{}: a run died while committing its output; rolled back its {dropped} files",
            self.location.url
        );
        delete_if_there(store, log)
            .await
            .map_err(|e| self.io("removing the commit log", log, e))
    }
}

impl FileSink {
    /// Drops what a multipart upload to the local disk cut short left
    /// (`.part-….inprogress#1`): object_store's listing hides such files.
    async fn drop_cut_uploads(&self) -> Result<()> {
        let url = &self.location.url;
        let Some(dir) = self.location.local_path(&self.location.path) else {
            return Ok(());
        };
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SluiceError::io(format!("listing {url}"), e)),
        };
        loop {
            let entry = match entries.next_entry().await {
                Ok(Some(entry)) => entry,
                Ok(None) => return Ok(()),
                Err(e) => return Err(SluiceError::io(format!("listing {url}"), e)),
            };
            let name = entry.file_name().to_string_lossy().to_string();
            if is_staged_part(&name) && name.contains('#') {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(SluiceError::io(
                            format!("dropping {}", entry.path().display()),
                            e,
                        ));
                    }
                }
            }
        }
    }
}

async fn delete_if_there(store: &dyn ObjectStore, path: &Path) -> object_store::Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

impl Sink for FileSink {
    /// A changelog format writes updates and deletes; the others hold
    /// final rows only.
    fn accepts_changes(&self) -> bool {
        self.format == Format::DebeziumJson
    }

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

    fn check_writable(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let probe = self
                .location
                .path
                .clone()
                .join(format!(".sluice-probe-{}", self.run));
            let store = &self.location.store;
            let written = store.put(&probe, PutPayload::from_static(b"")).await;
            let removed = match written {
                Ok(_) => store.delete(&probe).await,
                Err(e) => Err(e),
            };
            removed.map_err(|e| {
                SluiceError::io(format!("the sink cannot write to {}", self.location.url), e)
            })
        })
    }

    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let moves = std::mem::take(&mut *self.staged.lock().map_err(|_| {
                SluiceError::Runtime("a sink writer panicked while committing".into())
            })?);
            let replaces = self.replaces.lock().map_err(|_| poisoned())?.clone();
            if moves.is_empty() && replaces.is_empty() {
                return Ok(());
            }
            let entries = CommitLog {
                moves: moves
                    .iter()
                    .map(|(from, to)| (from.to_string(), to.to_string()))
                    .collect(),
                replaces: replaces
                    .iter()
                    .map(|old| (old.to_string(), self.aside(old).to_string()))
                    .collect(),
            };
            self.write_log(&entries).await?;
            for (from, to) in &moves {
                sluice_engine::failpoint::hit("sink.commit.rename");
                self.move_into_place(from, to).await?;
                self.record_committed(to)?;
            }
            Ok(())
        })
    }

    fn mark_complete(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            // Every sink of the job has its new files in place: the old
            // ones step aside, where an undo can still put them back.
            let replaces = self.replaces.lock().map_err(|_| poisoned())?.clone();
            for old in &replaces {
                sluice_engine::failpoint::hit("sink.commit.replace");
                match self.location.store.rename(old, &self.aside(old)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.io("moving aside", old, e)),
                }
            }
            self.write_success().await
        })
    }

    fn finish_commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let store = self.location.store.as_ref();
            let log = self.commit_log();
            delete_if_there(store, &log)
                .await
                .map_err(|e| self.io("removing the commit log", &log, e))?;
            // Committed: what was replaced goes for good.
            let replaces = std::mem::take(&mut *self.replaces.lock().map_err(|_| poisoned())?);
            for old in &replaces {
                let aside = self.aside(old);
                delete_if_there(store, &aside)
                    .await
                    .map_err(|e| self.io("removing replaced", &aside, e))?;
            }
            if self.overwrite {
                *self.replaced.lock().map_err(|_| poisoned())? = Some(replaces.len());
            }
            Ok(())
        })
    }

    fn abort(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            let staged = std::mem::take(&mut *self.staged.lock().map_err(|_| {
                SluiceError::Runtime("a sink writer panicked while aborting".into())
            })?);
            for (from, _) in staged {
                delete_if_there(self.location.store.as_ref(), &from)
                    .await
                    .map_err(|e| self.io("dropping", &from, e))?;
            }
            Ok(true)
        })
    }

    fn commit_checkpoint<'a>(&'a self, staged: &'a [StagedOutput]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // From the checkpoint's own list, so output an earlier
            // checkpoint failed to commit (carried into this one) is found
            // too; a part is forgotten as staged only once it is in place,
            // and one already in place counts as committed.
            for s in staged {
                let (from, to) = (Path::from(s.staged.as_str()), Path::from(s.target.as_str()));
                self.move_into_place(&from, &to).await?;
                self.record_committed(&to)?;
                self.staged
                    .lock()
                    .map_err(|_| {
                        SluiceError::Runtime("a sink writer panicked while committing".into())
                    })?
                    .retain(|entry| entry != &(from.clone(), to.clone()));
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
            let store = self.location.store.as_ref();
            // This run is not complete until it commits.
            let success = self.location.path.clone().join(SUCCESS);
            delete_if_there(store, &success)
                .await
                .map_err(|e| self.io("removing", &success, e))?;
            let listed = self.list().await?;
            // End-of-job commits that a crash interrupted: their run did not
            // succeed, so what they made visible goes, except what the
            // restored checkpoint covers.
            let restored: Vec<&str> = staged.iter().map(|s| s.staged.as_str()).collect();
            for log in listed.iter().filter(|p| {
                p.filename()
                    .is_some_and(|n| n.starts_with(COMMIT_LOG_PREFIX))
            }) {
                self.roll_back(log, &restored).await?;
            }
            // Files a committed INSERT OVERWRITE replaced, left by a run that
            // died before it deleted them (those of undone commits are back).
            for path in listed
                .iter()
                .filter(|p| p.filename().is_some_and(|n| n.starts_with(REPLACED_PREFIX)))
            {
                delete_if_there(store, path)
                    .await
                    .map_err(|e| self.io("removing replaced", path, e))?;
            }
            for s in staged {
                let (from, to) = (Path::from(s.staged.as_str()), Path::from(s.target.as_str()));
                self.move_into_place(&from, &to).await?;
            }
            // Parts staged after the checkpoint (or by a run that never
            // checkpointed, or half-written when it died): the restored job
            // writes their rows again.
            for path in listed
                .iter()
                .filter(|p| p.filename().is_some_and(is_staged_part))
            {
                delete_if_there(store, path)
                    .await
                    .map_err(|e| self.io("dropping", path, e))?;
            }
            self.drop_cut_uploads().await?;
            if self.overwrite {
                // What the directory holds now is what the run replaces.
                let old: Vec<Path> = self
                    .list()
                    .await?
                    .into_iter()
                    .filter(|p| p.filename().is_some_and(is_output_file))
                    .collect();
                *self.replaces.lock().map_err(|_| poisoned())? = old;
            }
            Ok(())
        })
    }

    fn allows_several_inserts(&self) -> bool {
        false
    }

    fn report(&self) -> SinkReport {
        let added = self.committed.lock().map(|c| c.len()).ok();
        let replaced = if self.overwrite {
            Some(self.replaced.lock().ok().and_then(|r| *r).unwrap_or(0))
        } else {
            None
        };
        SinkReport {
            sink: self.location.url.to_string(),
            files_added: added,
            files_replaced: replaced,
        }
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
    store: Arc<dyn ObjectStore>,
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
        // Classified by cause: a store that failed while the part was
        // flushed may come back, a full disk will not.
        let context = || format!("closing a file in {}", self.sink_url);
        match self.output.take() {
            None => return Ok(None),
            Some(Output::Parquet(w)) => {
                w.close().await.map_err(|e| SluiceError::io(context(), e))?;
            }
            Some(Output::Json(mut w)) => {
                w.shutdown()
                    .await
                    .map_err(|e| SluiceError::io(context(), e))?;
            }
        }
        let entry = (self.staged.clone(), self.target.clone());
        self.registry
            .lock()
            .map_err(|_| poisoned())?
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
                    let encoded = match self.format {
                        Format::DebeziumJson => crate::debezium::encode(&batch)?,
                        _ => {
                            let mut encoded = arrow::json::LineDelimitedWriter::new(Vec::new());
                            encoded
                                .write(&batch)
                                .and_then(|_| encoded.finish())
                                .map_err(|e| {
                                    SluiceError::io(
                                        format!("encoding JSON for {}", self.sink_url),
                                        e,
                                    )
                                })?;
                            encoded.into_inner()
                        }
                    };
                    w.write_all(&encoded)
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
                    .filter(|n| !n.starts_with(['.', '_']))
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
        assert!(!dir.path().join(SUCCESS).exists(), "not marked yet");
        sink.mark_complete().await.expect("mark");
        sink.finish_commit().await.expect("finish");
        let marker: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(SUCCESS)).expect("marked complete"),
        )
        .expect("json");
        assert_eq!(
            marker["files"],
            serde_json::json!(names),
            "the marker lists every file the run committed, at checkpoints too"
        );
        let hidden: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "no commit log left: {hidden:?}");
    }

    fn sink_in(dir: &std::path::Path) -> (FileSink, RecordBatch) {
        let location =
            crate::store::resolve(&dir.display().to_string(), "t", "path").expect("path");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .expect("batch");
        (FileSink::new(location, Format::Json, schema), batch)
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    /// A run that dies between its first and last rename leaves a commit
    /// log and no `_SUCCESS`; the next run into the directory rolls the
    /// half-made commit back, and leaves what it restores alone.
    #[tokio::test]
    async fn a_commit_cut_short_is_rolled_back_by_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sink, batch) = sink_in(dir.path());
        let mut moves = Vec::new();
        for subtask in 0..3 {
            let mut writer = sink.open_writer(subtask, 3).await.expect("writer");
            writer.write(batch.clone()).await.expect("write");
            writer.finish().await.expect("finish");
        }
        for (from, to) in sink.staged.lock().expect("lock").iter() {
            moves.push((from.to_string(), to.to_string()));
        }
        // What the commit does until its second rename, then the crash.
        let log = CommitLog {
            moves: moves.clone(),
            replaces: Vec::new(),
        };
        std::fs::write(
            dir.path().join(format!(".commit-{}.json", sink.run)),
            serde_json::to_vec(&log).expect("json"),
        )
        .expect("log");
        for (from, to) in &moves[..2] {
            sink.location
                .store
                .rename(&Path::from(from.as_str()), &Path::from(to.as_str()))
                .await
                .expect("rename");
        }
        assert_eq!(visible(dir.path()).len(), 2, "half committed");
        assert!(!dir.path().join(SUCCESS).exists());

        let (next, _) = sink_in(dir.path());
        next.recover(&[], 0).await.expect("recover");
        assert!(
            names(dir.path()).is_empty(),
            "rolled back: {:?}",
            names(dir.path())
        );

        // A restore keeps what its checkpoint covers, even if a commit log
        // names it too.
        std::fs::write(
            dir.path()
                .join(&moves[0].0[moves[0].0.rfind('/').map_or(0, |i| i + 1)..]),
            b"{}\n",
        )
        .expect("staged");
        std::fs::write(
            dir.path().join(".commit-x.json"),
            serde_json::to_vec(&log).expect("json"),
        )
        .expect("log");
        let covered = StagedOutput {
            sink: "t".into(),
            staged: moves[0].0.clone(),
            target: moves[0].1.clone(),
        };
        next.recover(std::slice::from_ref(&covered), 1)
            .await
            .expect("recover");
        assert_eq!(visible(dir.path()).len(), 1, "{:?}", names(dir.path()));
    }

    /// One run of `sink` to its commit: recover, write a part, commit.
    async fn write_and_commit(sink: &FileSink, batch: &RecordBatch) {
        sink.recover(&[], 0).await.expect("recover");
        let mut writer = sink.open_writer(0, 1).await.expect("writer");
        writer.write(batch.clone()).await.expect("write");
        writer.finish().await.expect("finish");
        sink.commit().await.expect("commit");
    }

    #[tokio::test]
    async fn an_overwrite_replaces_the_old_files_only_once_the_new_are_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        for old in ["part-old-0.json", "part-old-1.json", SUCCESS] {
            std::fs::write(dir.path().join(old), b"{\"n\":0}\n").expect("old file");
        }
        let (sink, batch) = sink_in(dir.path());
        let sink = sink.replacing(true);
        write_and_commit(&sink, &batch).await;
        assert_eq!(
            visible(dir.path()).len(),
            3,
            "the new file is in place, the old ones still there: {:?}",
            names(dir.path())
        );

        // A crash here, before every sink's files were in place: the next
        // run rolls the commit back, and the old files stay.
        let (next, _) = sink_in(dir.path());
        next.recover(&[], 0).await.expect("recover");
        assert_eq!(
            visible(dir.path()),
            vec!["part-old-0.json", "part-old-1.json"],
            "{:?}",
            names(dir.path())
        );

        let (sink, _) = sink_in(dir.path());
        let sink = sink.replacing(true);
        write_and_commit(&sink, &batch).await;
        sink.mark_complete().await.expect("mark");
        sink.finish_commit().await.expect("finish");
        let new = visible(dir.path());
        assert_eq!(new.len(), 1, "{:?}", names(dir.path()));
        assert!(new[0].starts_with(&format!("part-{}", sink.run)), "{new:?}");
        assert!(dir.path().join(SUCCESS).exists());
        assert_eq!(
            sink.report(),
            SinkReport {
                sink: sink.location.url.to_string(),
                files_added: Some(1),
                files_replaced: Some(2),
            }
        );
    }

    /// A crash while the old files are being moved aside: the next run
    /// undoes the commit and puts them back. A crash after the commit log
    /// is gone: the next run deletes what was moved aside.
    #[tokio::test]
    async fn a_replacement_cut_short_is_undone_before_its_log_goes_and_finished_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = ["part-old-0.json", "part-old-1.json"];
        for name in old {
            std::fs::write(dir.path().join(name), b"{\"n\":0}\n").expect("old file");
        }
        let (sink, batch) = sink_in(dir.path());
        let sink = sink.replacing(true);
        write_and_commit(&sink, &batch).await;
        // What mark_complete does until it has moved one old file aside.
        let first = sink.location.path.clone().join(old[0]);
        sink.location
            .store
            .rename(&first, &sink.aside(&first))
            .await
            .expect("aside");
        let (next, _) = sink_in(dir.path());
        next.recover(&[], 0).await.expect("recover");
        assert_eq!(visible(dir.path()), old.to_vec(), "{:?}", names(dir.path()));
        assert_eq!(names(dir.path()), old.to_vec(), "nothing hidden is left");

        // Now up to the commit log's removal, then the crash.
        let (sink, batch) = sink_in(dir.path());
        let sink = sink.replacing(true);
        write_and_commit(&sink, &batch).await;
        sink.mark_complete().await.expect("mark");
        std::fs::remove_file(dir.path().join(format!(".commit-{}.json", sink.run))).expect("log");
        assert!(
            names(dir.path())
                .iter()
                .any(|n| n.starts_with(REPLACED_PREFIX)),
            "{:?}",
            names(dir.path())
        );
        let (next, _) = sink_in(dir.path());
        next.recover(&[], 0).await.expect("recover");
        let left = names(dir.path());
        assert_eq!(left.len(), 1, "only the new file: {left:?}");
        assert!(
            left[0].starts_with(&format!("part-{}", sink.run)),
            "{left:?}"
        );
    }

    /// An overwrite with nothing to write empties the directory, as the
    /// result of the query is empty, and says so in `_SUCCESS`.
    #[tokio::test]
    async fn an_empty_overwrite_leaves_an_empty_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["part-old-0.json", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"x\n").expect("old file");
        }
        let (sink, _) = sink_in(dir.path());
        let sink = sink.replacing(true);
        sink.recover(&[], 0).await.expect("recover");
        sink.commit().await.expect("commit");
        sink.mark_complete().await.expect("mark");
        sink.finish_commit().await.expect("finish");
        assert_eq!(names(dir.path()), vec![SUCCESS.to_string()]);
        let marker = std::fs::read_to_string(dir.path().join(SUCCESS)).expect("marker");
        assert!(marker.contains("\"files\":[]"), "{marker}");
        assert_eq!(sink.report().files_replaced, Some(2));
    }

    /// Parts staged by earlier runs, including a multipart upload cut short
    /// (`#1`), go when a run starts; so does an old `_SUCCESS`.
    #[tokio::test]
    async fn a_start_drops_what_earlier_runs_staged() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            ".part-a-0-0.json.inprogress",
            ".part-a-1-0.parquet.inprogress#1",
            SUCCESS,
            "part-b-0-0.json",
        ] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        let (sink, _) = sink_in(dir.path());
        sink.recover(&[], 0).await.expect("recover");
        assert_eq!(names(dir.path()), vec!["part-b-0-0.json"]);
    }

    /// An aborted run withdraws its staged parts and marks nothing.
    #[tokio::test]
    async fn an_abort_withdraws_the_staged_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sink, batch) = sink_in(dir.path());
        let mut writer = sink.open_writer(0, 1).await.expect("writer");
        writer.write(batch).await.expect("write");
        writer.finish().await.expect("finish");
        assert_eq!(names(dir.path()).len(), 1, "staged");
        assert!(sink.abort().await.expect("abort"));
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    }

    /// A directory that cannot be made (its parent is a file: root can
    /// write anywhere else) fails the check that runs before the work.
    #[tokio::test]
    async fn a_sink_that_cannot_write_says_so_before_the_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("file"), b"").expect("file");
        let (sink, _) = sink_in(&dir.path().join("file").join("out"));
        let err = sink.check_writable().await.expect_err("not a directory");
        assert!(
            err.to_string()
                .contains("the sink cannot write to file:///"),
            "{err}"
        );
        let (writable, _) = sink_in(&dir.path().join("out"));
        writable.check_writable().await.expect("writable");
        assert!(
            names(&dir.path().join("out")).is_empty(),
            "the probe is gone"
        );
    }
}
