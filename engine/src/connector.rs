//! What a connector implements: sources made of splits, and sinks.
//!
//! A [`Source`] plans its input into [`Split`]s (a Parquet row-group range, a
//! file, later a Kafka partition). The runtime assigns splits to source
//! subtasks in event-time order and reads each as a stream of record batches.
//! A [`Sink`] opens one [`SinkWriter`] per subtask.
//!
//! Connectors are found by name (`'connector' = 'filesystem'`) in a
//! [`ConnectorRegistry`], which `sluice-connectors` fills.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::{Result, SluiceError};
use crate::sql::{Mode, TableDef};
use crate::time::Millis;

/// What a source is asked to produce.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// The job's counters, for what a split skips or sets aside.
    pub metrics: Arc<crate::metrics::JobMetrics>,
    /// Indices of the table's columns to read, in the table's order.
    pub projection: Vec<usize>,
    /// The projected schema the batches must have; a source of changes
    /// appends the row-kind column ([`Source::changes`]).
    pub schema: SchemaRef,
    /// The rowtime column's name, so a source can order splits by it.
    pub time_column: Option<String>,
    /// Rows per batch the source should aim for.
    pub batch_size: usize,
}

/// How a source subtask reads the splits assigned to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// One after another, earliest first (files, row groups): the subtask's
    /// watermark waits below splits it has not opened.
    InOrder,
    /// All at once, each with its own watermark (Kafka partitions). With an
    /// idle timeout, a split that yields nothing for that long stops holding
    /// the watermark back until it yields again.
    Concurrent { idle_timeout: Option<Duration> },
}

/// A source created from a table's options.
pub trait Source: Send + Sync + Debug {
    /// Lists the splits to read (files, row groups, partitions), with what
    /// is known of their event time.
    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>>;

    fn reading(&self) -> Reading {
        Reading::InOrder
    }

    /// Whether the source ends by itself. An unbounded one runs until the
    /// job is stopped.
    fn is_bounded(&self) -> bool {
        true
    }

    /// What happens to a row whose event time is null or too far ahead
    /// (see [`crate::time::gate`]): the table's policy for bad records.
    fn bad_records(&self) -> BadRecordPolicy {
        BadRecordPolicy::Fail
    }

    /// What kinds of rows its splits give.
    fn changes(&self) -> SourceChanges {
        SourceChanges::InsertOnly
    }
}

/// The kinds of rows a source reads ([`crate::changelog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceChanges {
    /// Inserts only: batches of the requested schema.
    #[default]
    InsertOnly,
    /// A changelog in retract mode (Debezium's envelopes): batches of the
    /// requested schema with the row-kind column appended, every
    /// retraction a row sent before.
    Retract,
    /// A retract changelog as a multiset of changes in no particular order
    /// (the part files of several writers): a retraction may come before
    /// the row it takes back. It is read as the table it leaves, in both
    /// modes, once the input ended.
    Unordered,
    /// Upserts by the table's primary key (a compacted topic): batches
    /// with the row-kind column appended, `+U` for a key's new value and
    /// `-D` for its deletion, a row whose columns outside the key are null.
    /// The planner adds the normalisation into a retract changelog, keyed
    /// by the primary key, which the source must read.
    Upsert,
}

/// One independently readable piece of a source.
pub trait Split: Send + Sync + Debug {
    /// Names the split in messages, e.g. `file:///data/bid/part-0.parquet row groups 0..4`.
    fn describe(&self) -> String;

    /// Names the split across runs, for the positions a checkpoint keeps:
    /// it must not depend on when the job was planned or on parallelism.
    /// By default the description, then the [`Split::version`] if there is
    /// one (see [`SplitKey`]).
    fn key(&self) -> String {
        SplitKey::of(&self.describe(), self.version().as_deref())
    }

    /// Which version of its data the split reads, as its store reports it
    /// (a file's size and ETag or modification time), for a split whose
    /// data can change under the same name. A position in a rewritten file
    /// points into other rows, so a restore must tell the file it read
    /// from one put in its place. `None` for data that cannot change under
    /// its name (a generator, a log's offsets).
    fn version(&self) -> Option<String> {
        None
    }

    /// The position before the split's first row.
    fn start_position(&self) -> SplitPosition {
        SplitPosition::after_rows(0)
    }

    /// The smallest event time in the split, when statistics tell it.
    fn min_event_time(&self) -> Option<Millis> {
        None
    }

    /// The event time of the split's first row, when the source read it
    /// while planning (a text file has no statistics). Until the split is
    /// opened, its watermark stays at what that row will propose: the bound
    /// the split sets on itself with its first row, so waiting there makes
    /// none of its rows late that reading it would not. Without this, every
    /// split still to come held its subtask's watermark at the start of
    /// time, and windows fired only once the last split was open.
    fn first_event_time(&self) -> Option<Millis> {
        None
    }

    /// How many rows the split holds, when known (for progress and for
    /// balancing splits read concurrently).
    fn estimated_rows(&self) -> Option<u64> {
        None
    }

    /// Names row `row` of a batch of `rows` rows this split gave, read from
    /// position `before` (the split's start, a restored position, or the
    /// previous batch's) to `after`, as messages about one record name it: where it
    /// truly is in the file or partition, whatever run read it and from
    /// where. Called only on the way to an error, so it may read again.
    ///
    /// By default positions count rows from the split's start.
    fn locate_row<'a>(
        &'a self,
        before: &'a SplitPosition,
        _after: &'a SplitPosition,
        _rows: usize,
        row: usize,
    ) -> BoxFuture<'a, String> {
        let name = self.describe();
        Box::pin(async move {
            match before.rows() {
                Ok(read) => format!("row {} of {name}", read + row as u64 + 1),
                Err(_) => format!("row {} of a batch of {name}", row + 1),
            }
        })
    }

    /// Reads the split.
    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>>;

    /// Reads the split from `position` (one this split gave with an earlier
    /// batch; `None` for the start), giving with each batch the position
    /// just after it. Checkpoints keep these positions, so a restored job
    /// continues exactly where its snapshot was taken.
    ///
    /// By default a position counts the rows read, and resuming reads the
    /// split again and skips them: right for a split that yields the same
    /// rows in the same order every time it is read (files, generators).
    /// A split that does not (a Kafka partition) must override this.
    fn open_at(
        self: Arc<Self>,
        position: Option<SplitPosition>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        let skip = match SplitPosition::rows_to_skip(position.as_ref(), &self.describe()) {
            Ok(rows) => rows,
            Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
        };
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&read);
        let name = self.describe();
        // A split shorter than the position was changed since: say so
        // rather than yield nothing.
        let check = futures::stream::once(async move {
            let read = counted.load(std::sync::atomic::Ordering::Relaxed);
            (read < skip).then(|| {
                Err(SluiceError::Data(format!(
                    "{name}: resuming after row {skip}, but it has only {read} rows now"
                )))
            })
        });
        let batches = self.open();
        let batches = futures::StreamExt::filter_map(batches, move |batch| {
            let item = batch.map(|batch| {
                let rows = batch.num_rows() as u64;
                let before = read.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
                let read = before + rows;
                // Rows up to `skip` were read before the position.
                let from = skip.saturating_sub(before).min(rows);
                (from < rows).then(|| {
                    (
                        batch.slice(from as usize, (rows - from) as usize),
                        SplitPosition::after_rows(read),
                    )
                })
            });
            let item = match item {
                Ok(Some(item)) => Some(Ok(item)),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            };
            std::future::ready(item)
        });
        let check = futures::StreamExt::filter_map(check, std::future::ready);
        Box::pin(futures::StreamExt::chain(batches, check))
    }
}

/// A split's key taken apart: the split's name, and the version of its
/// data when the key has one (`<name> @ <version>`). A URL cannot hold
/// ` @ ` (a space is escaped), so the mark cannot be part of a file's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitKey<'a> {
    pub name: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> SplitKey<'a> {
    const MARK: &'static str = " @ ";

    /// The key of the split named `name` that reads `version` of its data.
    pub fn of(name: &str, version: Option<&str>) -> String {
        match version {
            Some(version) => format!("{name}{}{version}", Self::MARK),
            None => name.to_string(),
        }
    }

    pub fn parse(key: &'a str) -> Self {
        match key.rsplit_once(Self::MARK) {
            Some((name, version)) => Self {
                name,
                version: Some(version),
            },
            None => Self {
                name: key,
                version: None,
            },
        }
    }
}

/// The batches of a positioned split stream, for a split whose `open`
/// is its `open_at` from the start.
pub fn without_positions(
    stream: BoxStream<'static, Result<(RecordBatch, SplitPosition)>>,
) -> BoxStream<'static, Result<RecordBatch>> {
    Box::pin(futures::StreamExt::map(stream, |item| {
        item.map(|(batch, _)| batch)
    }))
}

/// Where a split had got to, in the split's own terms: rows read by
/// default, an offset for a Kafka partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPosition(pub String);

impl SplitPosition {
    pub fn after_rows(rows: u64) -> Self {
        Self(format!("rows:{rows}"))
    }

    /// A position in a log: the offset of the next record to read.
    pub fn at_offset(offset: i64) -> Self {
        Self(format!("offset:{offset}"))
    }

    /// The offset of an [`SplitPosition::at_offset`] position.
    pub fn offset(&self) -> Result<i64> {
        self.0
            .strip_prefix("offset:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| SluiceError::Runtime(format!("'{}' is not an offset position", self.0)))
    }

    /// The rows a default position counts.
    /// The rows to skip to resume `split` at `position` (none from the
    /// start); an error naming the split if it is not a row count.
    pub fn rows_to_skip(position: Option<&SplitPosition>, split: &str) -> Result<u64> {
        position.map_or(Ok(0), |p| {
            p.rows()
                .map_err(|e| SluiceError::Runtime(format!("{split}: {e}")))
        })
    }

    pub fn rows(&self) -> Result<u64> {
        self.0
            .strip_prefix("rows:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                SluiceError::Runtime(format!("'{}' is not a position of rows read", self.0))
            })
    }
}

/// What a source does with a record it cannot use.
#[derive(Debug, Clone)]
pub enum BadRecordPolicy {
    /// Stop the job with an error naming the record.
    Fail,
    /// Skip it, counted (`sluice_source_records_skipped_total`) and logged.
    Skip,
    /// Send it to a dead-letter output, counted
    /// (`sluice_source_records_dead_lettered_total`) and logged.
    DeadLetter(Arc<dyn DeadLetters>),
}

/// Where a table's bad rows go when it sets them aside (a dead-letter topic).
pub trait DeadLetters: Send + Sync + Debug {
    /// Sets `rows` aside, each with its reason; they were read from `split`.
    fn send<'a>(
        &'a self,
        split: &'a str,
        rows: RecordBatch,
        reasons: Vec<String>,
    ) -> BoxFuture<'a, Result<()>>;
}

/// A sink created from a table's options.
pub trait Sink: Send + Sync + Debug {
    /// Whether it takes rows that update and delete: then, when its input
    /// can update, its writers' batches carry the row-kind column last
    /// ([`crate::changelog`]). Others take inserts only, and a job that
    /// would send them updates is refused when it is planned.
    fn accepts_changes(&self) -> bool {
        false
    }

    /// Columns of its table (indices) by which its input is to be
    /// hash-partitioned, so that all changes of one key reach one writer,
    /// in order (an upsert sink's primary key). `None`: any writer.
    fn input_key(&self) -> Option<Vec<usize>> {
        None
    }

    /// Opens the writer of subtask `subtask` of `parallelism`.
    fn open_writer(
        &self,
        subtask: usize,
        parallelism: usize,
    ) -> BoxFuture<'_, Result<Box<dyn SinkWriter>>>;

    /// Called once before any writer opens: fails, naming the sink, if its
    /// output cannot be written (a directory not writable, a store not
    /// reachable), so a job finds out before the work rather than after.
    fn check_writable(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once after every writer has finished and the job read its
    /// input to the end: makes the output visible (e.g. moves staged files
    /// into place), keeping a record of what it did that lets the next run
    /// undo it until [`Sink::finish_commit`]. With checkpoints, what they
    /// staged is committed by them first; this then commits what is left.
    /// The end of a job commits in three rounds over all of its sinks
    /// (commit, [`Sink::mark_complete`], [`Sink::finish_commit`]), so a
    /// crash in the middle leaves every sink's commit undoable.
    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Marks the output complete for readers (a `_SUCCESS` file), once
    /// every sink of the job has committed.
    fn mark_complete(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Drops the record that lets a commit be undone, once every sink of
    /// the job is marked complete.
    fn finish_commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Called instead of [`Sink::commit`] when a job without checkpoints
    /// was stopped or failed: withdraws what this run staged. Returns
    /// false when output already went where it cannot be withdrawn from
    /// (records delivered to a topic outside a transaction).
    fn abort(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async { Ok(false) })
    }

    /// Makes visible what writers staged for a checkpoint that completed
    /// (two-phase commit). Must be idempotent: a restore commits again.
    fn commit_checkpoint<'a>(
        &'a self,
        _staged: &'a [crate::checkpoint::protocol::StagedOutput],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Before a job runs: commits what the restored checkpoint staged (its
    /// commit may not have happened before the crash), and drops anything
    /// else earlier runs staged or left half-committed, which this run
    /// writes again. A fresh start passes no staged output. `writers` is
    /// how many writers the checkpointed job had. Must be idempotent.
    fn recover<'a>(
        &'a self,
        _staged: &'a [crate::checkpoint::protocol::StagedOutput],
        _writers: usize,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// A short human description for `explain` and the summary.
    fn describe(&self) -> String;

    /// Whether two `INSERT` statements of one job may write this sink's
    /// table. A sink whose commit marks its output complete (a directory's
    /// `_SUCCESS`) cannot say which statement's output is complete.
    fn allows_several_inserts(&self) -> bool {
        true
    }

    /// What the job's end-of-job commit did, for its summary.
    fn report(&self) -> SinkReport {
        SinkReport {
            sink: self.describe(),
            files_added: None,
            files_replaced: None,
        }
    }
}

/// What a sink did in a run: where its output went and, for files, how
/// many it added and how many earlier ones it replaced (`INSERT OVERWRITE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    pub sink: String,
    pub files_added: Option<usize>,
    pub files_replaced: Option<usize>,
}

impl std::fmt::Display for SinkReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sink)?;
        match (self.files_added, self.files_replaced) {
            (Some(added), Some(replaced)) => write!(
                f,
                " ({added} file{} replacing {replaced})",
                if added == 1 { "" } else { "s" }
            ),
            (Some(added), None) => write!(
                f,
                " ({added} file{} added)",
                if added == 1 { "" } else { "s" }
            ),
            _ => Ok(()),
        }
    }
}

pub trait SinkWriter: Send {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>>;

    /// At a checkpoint barrier: seals what was written since the last one
    /// and says where it is staged, for [`Sink::commit_checkpoint`] once the
    /// checkpoint completes. Writing goes on into new output.
    fn prepare_commit(
        &mut self,
        _checkpoint: crate::checkpoint::CheckpointId,
    ) -> BoxFuture<'_, Result<Vec<crate::checkpoint::protocol::StagedOutput>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Flushes and closes; the output is staged until [`Sink::commit`].
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<()>>;
}

/// Everything a connector factory may use to build a source or sink.
#[derive(Debug, Clone)]
pub struct ConnectorContext {
    pub mode: Mode,
    pub parallelism: usize,
    /// A sink for `INSERT OVERWRITE`: what the job commits replaces what
    /// the sink held before (batch mode only).
    pub overwrite: bool,
}

/// The option names a connector knows, without the connector's own and
/// without mode prefixes. A name ending in `.` stands for every option
/// under it (`properties.` for Kafka's client properties).
pub type OptionNames = &'static [&'static str];

pub trait SourceFactory: Send + Sync {
    /// Every option [`SourceFactory::create_source`] may take.
    fn option_names(&self) -> OptionNames;

    /// Builds a source for `table`. Must take every option it understands
    /// from `options` and leave the rest, so unknown ones can be reported.
    fn create_source(
        &self,
        table: &TableDef,
        options: &mut crate::sql::Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>>;
}

pub trait SinkFactory: Send + Sync {
    /// Every option [`SinkFactory::create_sink`] may take.
    fn option_names(&self) -> OptionNames;

    /// Whether its sinks can replace what they hold, for `INSERT
    /// OVERWRITE` (Flink's `SupportsOverwrite`).
    fn supports_overwrite(&self) -> bool {
        false
    }

    fn create_sink(
        &self,
        table: &TableDef,
        options: &mut crate::sql::Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>>;
}

/// Connectors by name.
#[derive(Default, Clone)]
pub struct ConnectorRegistry {
    sources: BTreeMap<String, Arc<dyn SourceFactory>>,
    sinks: BTreeMap<String, Arc<dyn SinkFactory>>,
}

impl ConnectorRegistry {
    pub fn register_source(&mut self, name: &str, factory: Arc<dyn SourceFactory>) {
        self.sources.insert(name.to_string(), factory);
    }

    pub fn register_sink(&mut self, name: &str, factory: Arc<dyn SinkFactory>) {
        self.sinks.insert(name.to_string(), factory);
    }

    pub fn create_source(
        &self,
        table: &TableDef,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>> {
        let mut options = table.options.clone();
        let name = connector_name(table, &mut options)?;
        let factory = self.sources.get(&name).ok_or_else(|| {
            SluiceError::config(format!(
                "{}: table `{}`: no source connector '{name}' (sources: {})",
                table.declared_at,
                table.name,
                self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        self.check_names(table, context.mode)?;
        let source = factory
            .create_source(table, &mut options, context)
            .map_err(|e| locate(table, e))?;
        options.finish(&name, crate::sql::options::Role::Source)?;
        Ok(source)
    }

    pub fn create_sink(
        &self,
        table: &TableDef,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        let mut options = table.options.clone();
        let name = connector_name(table, &mut options)?;
        let factory = self.sinks.get(&name).ok_or_else(|| {
            SluiceError::config(format!(
                "{}: table `{}`: no sink connector '{name}' (sinks: {})",
                table.declared_at,
                table.name,
                self.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        self.check_names(table, context.mode)?;
        if context.overwrite && !factory.supports_overwrite() {
            return Err(SluiceError::config(format!(
                "{}: table `{}`: INSERT OVERWRITE needs a sink that can replace what it holds, and the '{name}' connector only adds to it: write INSERT INTO",
                table.declared_at, table.name
            )));
        }
        let sink = factory
            .create_sink(table, &mut options, context)
            .map_err(|e| locate(table, e))?;
        options.finish(&name, crate::sql::options::Role::Sink)?;
        Ok(sink)
    }

    /// Checks the option names of `table` in both modes, before anything is
    /// built: a misspelled `stream.` option fails a batch run too. A table
    /// with no connector in a mode is an error only where it is used.
    pub fn check_options(&self, table: &TableDef) -> Result<()> {
        self.check_names(table, Mode::Batch)?;
        self.check_names(table, Mode::Stream)?;
        // With a connector of each mode's own, unprefixed options apply in
        // neither: one written so is a mistake, not a shared option.
        let used: Vec<&crate::sql::WrittenOption> = [Mode::Batch, Mode::Stream]
            .into_iter()
            .flat_map(|mode| crate::sql::Options::used(&table.written_options, mode))
            .map(|(_, w)| w)
            .collect();
        if let Some(unused) = table
            .written_options
            .iter()
            .find(|w| !used.iter().any(|u| std::ptr::eq(*u, *w)))
        {
            return Err(SluiceError::config(format!(
                "{}: table `{}`: option '{}' applies in neither mode: 'batch.connector' and 'stream.connector' each bring only the options prefixed for their mode; write it as 'batch.{}' or 'stream.{}'",
                unused.at, table.name, unused.key, unused.key, unused.key
            )));
        }
        Ok(())
    }

    /// The connectors by name, and the option names each knows (as a
    /// source and as a sink: a table's options are one set, as in Flink).
    fn known_options(&self, connector: &str) -> Option<Vec<&'static str>> {
        let source = self.sources.get(connector).map(|f| f.option_names());
        let sink = self.sinks.get(connector).map(|f| f.option_names());
        if source.is_none() && sink.is_none() {
            return None;
        }
        let mut names: Vec<&'static str> = source
            .into_iter()
            .chain(sink)
            .flat_map(|n| n.iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        Some(names)
    }

    fn check_names(&self, table: &TableDef, mode: Mode) -> Result<()> {
        let used = crate::sql::Options::used(&table.written_options, mode);
        let Some((_, connector)) = used.iter().find(|(key, _)| key == "connector") else {
            return Ok(());
        };
        // A connector named by an unset variable is an error where the
        // mode runs, not here.
        if connector.unresolved.is_some() {
            return Ok(());
        }
        let Some(known) = self.known_options(&connector.value) else {
            let mut names: Vec<&str> = self
                .sources
                .keys()
                .chain(self.sinks.keys())
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            names.dedup();
            let hint = crate::suggest::closest(&connector.value, names.iter().copied())
                .map(|c| format!("; did you mean '{c}'?"))
                .unwrap_or_default();
            return Err(SluiceError::config(format!(
                "{}: table `{}`: no connector '{}' (connectors: {}){hint}",
                connector.at,
                table.name,
                connector.value,
                names.join(", ")
            )));
        };
        let knows = |key: &str| {
            known
                .iter()
                .any(|k| *k == key || (k.ends_with('.') && key.starts_with(k)))
        };
        for (key, written) in &used {
            if key == "connector" || knows(key) {
                continue;
            }
            let prefix = &written.key[..written.key.len() - key.len()];
            let hint =
                crate::suggest::closest(key, known.iter().copied().filter(|k| !k.ends_with('.')))
                    .map(|k| format!("; did you mean '{prefix}{k}'?"))
                    .unwrap_or_else(|| {
                        if known.is_empty() {
                            return "; it takes no options".to_string();
                        }
                        format!(
                            "; it knows {}",
                            known
                                .iter()
                                .map(|k| format!("'{k}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    });
            return Err(SluiceError::config(format!(
                "{}: table `{}`: unknown option '{}' for connector '{}'{hint}",
                written.at, table.name, written.key, connector.value
            )));
        }
        Ok(())
    }
}

fn connector_name(table: &TableDef, options: &mut crate::sql::Options) -> Result<String> {
    options.take("connector").ok_or_else(|| {
        SluiceError::config(format!(
            "{}: table `{}` has no 'connector' option",
            table.declared_at, table.name
        ))
    })
}

fn locate(table: &TableDef, e: SluiceError) -> SluiceError {
    match e {
        SluiceError::Config(m) => SluiceError::Config(format!("{}: {m}", table.declared_at)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use futures::StreamExt;

    /// Ten rows, 0..10, in batches of four.
    #[derive(Debug)]
    struct Counting;

    impl Split for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            let batches: Vec<Result<RecordBatch>> = [0..4i64, 4..8, 8..10]
                .into_iter()
                .map(|r| {
                    RecordBatch::try_new(
                        Arc::clone(&schema),
                        vec![Arc::new(Int64Array::from_iter_values(r))],
                    )
                    .map_err(|e| SluiceError::Data(e.to_string()))
                })
                .collect();
            Box::pin(futures::stream::iter(batches))
        }
    }

    async fn read(position: Option<SplitPosition>) -> Vec<(Vec<i64>, SplitPosition)> {
        Arc::new(Counting)
            .open_at(position)
            .map(|item| {
                let (batch, position) = item.expect("batch");
                let values = batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec();
                (values, position)
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn resuming_at_a_position_yields_exactly_the_rows_after_it() {
        let all = read(None).await;
        assert_eq!(
            all.last().map(|a| a.1.clone()),
            Some(SplitPosition::after_rows(10))
        );
        for (_, position) in &all {
            let rest: Vec<i64> = read(Some(position.clone()))
                .await
                .into_iter()
                .flat_map(|r| r.0)
                .collect();
            let done = position.rows().expect("rows") as i64;
            assert_eq!(rest, (done..10).collect::<Vec<_>>(), "after {position:?}");
        }
        // A position inside a batch (a checkpoint cannot make one, but a
        // split that batches differently on a re-read can).
        let rest: Vec<i64> = read(Some(SplitPosition::after_rows(6)))
            .await
            .into_iter()
            .flat_map(|r| r.0)
            .collect();
        assert_eq!(rest, vec![6, 7, 8, 9]);
        assert!(
            Arc::new(Counting)
                .open_at(Some(SplitPosition("offset:3".into())))
                .next()
                .await
                .is_some_and(|r| r.is_err())
        );
        let past_end: Vec<_> = Arc::new(Counting)
            .open_at(Some(SplitPosition::after_rows(12)))
            .collect()
            .await;
        assert!(matches!(past_end.as_slice(), [Err(_)]), "{past_end:?}");
    }
}
