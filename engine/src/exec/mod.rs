//! The runtime: every stage's subtasks as tokio tasks, joined by channels.
//!
//! [`run`] plans the sources' splits, assigns them to source subtasks (in
//! event-time order for files, balanced by size for partitions read
//! concurrently), creates a byte-bounded channel for every pair of
//! subtasks an exchange connects, spawns one task per subtask and waits for
//! all of them. The first error stops the job; sinks commit only when every
//! subtask has finished.
//!
//! A [`StopSignal`] stops a job from outside (SIGINT): sources stop reading
//! and end their output without a final watermark, so operators close with
//! incomplete windows unfired, and sinks commit what was written.

mod chain;
pub mod channel;
mod checkpoint_link;
pub mod exchange;
mod exit;
mod input_merge;
mod input_order;
mod operator_state;
mod source_driver;
mod task;
pub use task::LATE_DATA;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::checkpoint::protocol::{
    Manifest, PendingCheckpoint, PlanIdentity, RowCounts, SubtaskSnapshot, to_discard,
};
use crate::checkpoint::protocol::{commits_of, positions_for};
use crate::checkpoint::{CheckpointId, CheckpointStore, Restored};
use crate::connector::{Reading, ScanRequest, SourceChanges, Split};
use crate::error::{Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::OperatorContext;
use crate::plan::{JobGraph, NodeKind};
use crate::time::{EventTimeGate, Millis, RowtimeWatermark};
use channel::{Receiver, Sender};

/// How a job runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Job parameters (the job's `SET` statements and `--set` values),
    /// reachable from operators and UDFs through their context.
    pub parameters: BTreeMap<String, String>,
    /// Bytes in flight per channel before a sender waits.
    pub channel_capacity: usize,
    /// Rows per batch sources aim for.
    pub batch_size: usize,
    /// Where rows that arrived behind the watermark are written, if anywhere
    /// (`SET 'sluice.late-data.path'`); they are counted either way.
    pub late_data: Option<Arc<dyn crate::connector::Sink>>,
    /// Stops the job from outside.
    pub stop: StopSignal,
    /// Take a checkpoint this often (barriers through the graph; each
    /// subtask acknowledges, the coordinator completes the manifest).
    pub checkpoint_interval: Option<Duration>,
    /// Where completed checkpoints' manifests are written, if anywhere.
    pub checkpoint_store: Option<Arc<dyn CheckpointStore>>,
    /// Completed checkpoints to keep there (at least one).
    pub checkpoints_retained: usize,
    /// A checkpoint to resume from: sources continue at its positions,
    /// operators from its state, and sinks commit what it covered. Without
    /// one, output that earlier runs staged is dropped.
    pub restore: Option<Arc<Restored>>,
}

/// Asks a running job to stop (SIGINT, SIGTERM). Clones share one signal.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl StopSignal {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`StopSignal::stop`] has been called.
    pub async fn stopped(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`, so this only ends by a stop.
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parameters: BTreeMap::new(),
            channel_capacity: 16 << 20,
            batch_size: 8192,
            late_data: None,
            stop: StopSignal::default(),
            checkpoint_interval: None,
            checkpoint_store: None,
            checkpoints_retained: 1,
            restore: None,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// Rows read, written and late, over every run of the job since its
    /// start from nothing: a restored job counts on from its checkpoint.
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub elapsed: Duration,
    /// Whether the job was stopped before its sources ended.
    pub stopped: bool,
    /// Whether its output is committed: always, unless it was stopped
    /// without checkpoints (then nothing of it is, or see `left_behind`).
    pub committed: bool,
    /// Sinks that had already delivered output of a stopped run where it
    /// cannot be withdrawn (a topic written outside transactions).
    pub left_behind: Vec<String>,
    /// The checkpoint the run resumed from, and the counts it started at.
    pub restored_from: Option<(CheckpointId, RowCounts)>,
    /// The restored checkpoint was taken at the job's end: nothing was
    /// left to do.
    pub already_finished: bool,
    /// The checkpoints that completed, oldest first.
    pub checkpoints: Vec<Manifest>,
    /// Where the output went, by table (the late-data output last, if
    /// the job has one).
    pub outputs: Vec<(String, crate::connector::SinkReport)>,
}

/// Runs `graph` until its sources end or `options.stop` is signalled, and
/// commits its sinks.
pub async fn run(
    graph: &JobGraph,
    options: &RunOptions,
    metrics: Arc<JobMetrics>,
) -> Result<JobResult> {
    let started = Instant::now();
    let stages = graph.stages();
    let parameters = Arc::new(options.parameters.clone());

    // Channels for every edge that is an exchange, receivers by (stage, subtask).
    let mut senders: BTreeMap<(usize, usize), Vec<Sender>> = BTreeMap::new();
    let mut receivers: BTreeMap<(usize, usize), Vec<(crate::ops::Port, Receiver)>> =
        BTreeMap::new();
    for (e, edge) in graph.edges.iter().enumerate() {
        if graph.is_chained(edge) {
            continue;
        }
        let from = graph.node(edge.from).parallelism;
        let to = graph.node(edge.to).parallelism;
        let pointwise = matches!(edge.partitioning, crate::plan::Partitioning::Forward);
        for i in 0..from {
            let targets: Vec<usize> = if pointwise {
                vec![i % to]
            } else {
                (0..to).collect()
            };
            let mut out = Vec::with_capacity(targets.len());
            for j in targets {
                let (tx, rx) = channel::channel(options.channel_capacity);
                out.push(tx);
                receivers
                    .entry((edge.to, j))
                    .or_default()
                    .push((edge.port, rx));
            }
            senders.insert((e, i), out);
        }
    }

    if options.checkpoint_interval.is_some() || options.restore.is_some() {
        check_no_overwrite(graph)?;
    }

    // Counting starts where the restored checkpoint's counts are.
    let plan = graph.identity();
    let restored_from = options
        .restore
        .as_ref()
        .map(|r| (r.manifest.id, r.manifest.counts));
    metrics.start_counting_from(restored_from.map(|(_, c)| c).unwrap_or_default());
    // A checkpoint's state goes to the nodes of this graph with its
    // nodes' ids; one from an older build, only into the same graph.
    // A checkpoint of a job's end restores only into the same graph: a
    // changed job has work the finished one did not do.
    let restore = match &options.restore {
        Some(restored) if restored.manifest.operators.is_empty() || restored.manifest.end => {
            check_restored_plan(&restored.manifest, &plan, &graph.name)?;
            match restored.manifest.operators.is_empty() {
                true => Some(Arc::clone(restored)),
                false => Some(Arc::new(operator_state::renumbered(restored, graph)?)),
            }
        }
        Some(restored) => Some(Arc::new(operator_state::renumbered(restored, graph)?)),
        None => None,
    };

    // Every source's splits, planned before any output is touched, so a
    // restore that does not fit this run's input fails first. Planning
    // reads files (footers, first lines) and can be stopped.
    let mut planned: BTreeMap<usize, Vec<Arc<dyn Split>>> = BTreeMap::new();
    for stage in &stages {
        let root = graph.node(stage.root);
        let NodeKind::Source(source) = &root.kind else {
            continue;
        };
        let request = ScanRequest {
            metrics: Arc::clone(&metrics),
            projection: source.projection.clone(),
            schema: Arc::clone(&source.read_schema),
            time_column: source.table.watermark.as_ref().map(|w| w.column.clone()),
            batch_size: options.batch_size,
        };
        let splits = tokio::select! {
            splits = source.source.plan_splits(request) => splits?,
            () = options.stop.stopped() => {
                return Ok(JobResult::stopped_at_start(started, restored_from));
            }
        };
        if let Some(restored) = &restore {
            let positions = positions_for(&restored.manifest, stage.root);
            check_restored_splits(&source.table.name, &splits, &positions)?;
            if restored.manifest.end {
                check_no_new_splits(&source.table.name, &splits, &positions, &restored.manifest)?;
            }
        }
        planned.insert(stage.root, splits);
    }

    // Joins read their bounded or smaller input first.
    let first_inputs = input_order::first_inputs(graph, &planned);

    // Every sink, the late-data output among them, by the name its
    // staged output goes under in checkpoints.
    let sinks: Vec<(String, Arc<dyn crate::connector::Sink>)> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Sink(sink) => Some((sink.table.name.clone(), Arc::clone(&sink.sink))),
            _ => None,
        })
        .chain(
            options
                .late_data
                .iter()
                .map(|sink| (LATE_DATA.to_string(), Arc::clone(sink))),
        )
        .collect();
    for (_, sink) in &sinks {
        sink.check_writable().await?;
    }
    // A restore first finishes what the checkpoint covered: its staged
    // output is committed, and output staged after it is dropped. A fresh
    // start drops everything earlier runs staged.
    let staged = restore
        .as_ref()
        .map(|r| commits_of(&r.manifest))
        .unwrap_or_default();
    // Output the checkpoint covered must be committed: a sink it staged
    // for that this job has not would lose it.
    if let (Some(restored), Some(lost)) = (
        &restore,
        staged
            .iter()
            .find(|s| !sinks.iter().any(|(name, _)| *name == s.sink)),
    ) {
        return Err(SluiceError::config(format!(
            "checkpoint {} of job `{}` holds output staged for table `{}`, which this job does not write: it would never be committed. Restore with a job that writes `{}`, or start without --restore",
            restored.manifest.id, graph.name, lost.sink, lost.sink
        )));
    }
    for (name, sink) in &sinks {
        let mine: Vec<_> = staged.iter().filter(|s| &s.sink == name).cloned().collect();
        // The sink's writers then: its stage's subtasks.
        let writers = restore
            .as_ref()
            .and_then(|restored| {
                let id = graph
                    .nodes
                    .iter()
                    .position(|n| matches!(&n.kind, NodeKind::Sink(s) if &s.table.name == name))?;
                let stage = stages.iter().find(|s| s.nodes.contains(&id))?;
                // A stage new here: any subtask count the checkpoint had.
                restored
                    .manifest
                    .parallelism
                    .get(&stage.root)
                    .or_else(|| restored.manifest.parallelism.values().max())
                    .copied()
            })
            .unwrap_or(0);
        sink.recover(&mine, writers).await?;
    }
    if let Some(restored) = &restore {
        if restored.manifest.end {
            // Its commit may not have finished: the output is complete.
            commit_all(&sinks).await?;
            tracing::info!(
                "checkpoint {} was taken when the job had ended: there is nothing left to do",
                restored.manifest.id
            );
            let counts = restored.manifest.counts;
            return Ok(JobResult {
                rows_in: counts.rows_in,
                rows_out: counts.rows_out,
                late_rows: counts.late_rows,
                elapsed: started.elapsed(),
                stopped: false,
                committed: true,
                left_behind: Vec::new(),
                restored_from,
                already_finished: true,
                checkpoints: Vec::new(),
                outputs: reports(&sinks),
            });
        }
        tracing::info!(
            checkpoint = restored.manifest.id,
            state_bytes = restored.manifest.state_bytes(),
            "restoring from checkpoint {}",
            restored.manifest.id
        );
    }

    // Checkpoints: a coordinator that triggers them and collects acks.
    let (coordinator, link) = match options.checkpoint_interval {
        Some(interval) => {
            // Number on from the checkpoints already there (an earlier
            // run's, or the one restored), so none is overwritten: sources
            // send barriers only after the id they start from.
            let known = match &options.checkpoint_store {
                Some(store) => Known::list(store.as_ref()).await?,
                None => Known::default(),
            };
            let start = known.all.iter().max().copied().unwrap_or(0);
            let (triggers, trigger_rx) = tokio::sync::watch::channel(task::Trigger {
                id: start,
                last: false,
            });
            let (acks, ack_rx) = tokio::sync::mpsc::unbounded_channel();
            let expected = stages.iter().map(|s| (s.root, s.parallelism)).collect();
            let source_roots: std::collections::BTreeSet<usize> = stages
                .iter()
                .filter(|s| matches!(graph.node(s.root).kind, NodeKind::Source(_)))
                .map(|s| s.root)
                .collect();
            let sources = stages
                .iter()
                .filter(|s| source_roots.contains(&s.root))
                .map(|s| s.parallelism)
                .sum();
            let coordinator = Coordinator {
                job: graph.name.clone(),
                interval,
                expected,
                source_roots,
                sources,
                sinks: sinks.iter().cloned().collect(),
                plan: plan.clone(),
                operators: graph
                    .operator_ids()
                    .into_iter()
                    .enumerate()
                    .map(|(n, id)| {
                        let name = graph.node(n).name();
                        (n, crate::checkpoint::protocol::OperatorId { id, name })
                    })
                    .collect(),
                base: restored_from.map(|(_, c)| c).unwrap_or_default(),
                store: options.checkpoint_store.clone(),
                retained: options.checkpoints_retained,
                stop: options.stop.clone(),
                known: Some(known),
                metrics: Arc::clone(&metrics),
            };
            let store = options.checkpoint_store.clone();
            (
                Some(AbortOnDrop(tokio::spawn(coordinator.run(triggers, ack_rx)))),
                Some((trigger_rx, acks, store, start)),
            )
        }
        None => (None, None),
    };
    let mut tasks = JoinSet::new();
    for stage in &stages {
        let root = graph.node(stage.root);
        let mut assigned: Vec<Vec<Arc<dyn Split>>> = vec![Vec::new(); stage.parallelism];
        let mut watermark = None;
        let mut reading = Reading::InOrder;
        let mut compute = None;
        let mut gate = None;
        let restored_positions = match &restore {
            Some(restored) => positions_for(&restored.manifest, stage.root),
            None => BTreeMap::new(),
        };
        if let NodeKind::Source(source) = &root.kind {
            let splits = planned.remove(&stage.root).unwrap_or_default();
            let expected: u64 = splits.iter().filter_map(|s| s.estimated_rows()).sum();
            JobMetrics::add(&metrics.rows_expected, expected);
            reading = source.source.reading();
            compute = source
                .compute
                .clone()
                .map(|exprs| (exprs, Arc::clone(&root.schema)));
            if let Some(decl) = &source.table.watermark {
                let new = EventTimeGate::new(
                    &source.table.name,
                    &decl.column,
                    &options.parameters,
                    source.source.bad_records(),
                )?;
                gate = Some(Arc::new(match source.source.changes() {
                    SourceChanges::Upsert => new.with_tombstones(),
                    _ => new,
                }));
            }
            let now = chrono::Utc::now().timestamp_millis();
            let trusted = |time| EventTimeGate::trusted(gate.as_deref(), time, now);
            assigned = assign_splits(splits, stage.parallelism, reading, trusted);
            watermark = match (&source.watermark, &source.table.watermark) {
                (Some(expr), Some(decl)) => root
                    .schema
                    .index_of(&decl.column)
                    .ok()
                    .map(|i| RowtimeWatermark::new(Arc::clone(expr), i, &root.schema)),
                _ => None,
            };
        }
        // Subtasks reading time-ordered splits keep in step, so the windows
        // open downstream span about a split of event time, however long
        // the input (see `SplitPace`).
        let mut paces = match (&root.kind, reading, &watermark) {
            (NodeKind::Source(_), Reading::InOrder, Some(_)) if stage.parallelism > 1 => {
                task::SplitPace::for_stage(stage.parallelism)
                    .into_iter()
                    .map(Some)
                    .collect()
            }
            _ => Vec::new(),
        };
        for (subtask, splits) in assigned.into_iter().enumerate() {
            let context = OperatorContext {
                subtask,
                parallelism: stage.parallelism,
                parameters: Arc::clone(&parameters),
                metrics: Arc::clone(&metrics),
            };
            let mut chain = task::Chain::build(
                graph,
                stage,
                &context,
                &mut senders,
                options.late_data.as_deref(),
            )
            .await?;
            let input = match &root.kind {
                NodeKind::Source(_) => task::Input::Source(task::SourceInput {
                    splits,
                    reading,
                    compute: compute.clone(),
                    watermark: watermark.clone(),
                    stop: options.stop.clone(),
                    restored: restored_positions.clone(),
                    pace: paces.get_mut(subtask).and_then(Option::take),
                    gate: gate.clone(),
                }),
                _ => task::Input::Channels(
                    receivers.remove(&(stage.root, subtask)).unwrap_or_default(),
                    first_inputs.get(&stage.root).copied(),
                ),
            };
            let metrics = Arc::clone(&metrics);
            let link = link
                .as_ref()
                .map(|(triggers, acks, store, start)| task::CheckpointLink {
                    node: stage.root,
                    subtask,
                    start: *start,
                    triggers: triggers.clone(),
                    acks: acks.clone(),
                    store: store.clone(),
                });
            let restore = restore.clone();
            tasks.spawn(async move {
                if let Some(restored) = &restore {
                    chain.restore(restored)?;
                }
                chain.open()?;
                task::run(&mut chain, input, &metrics, link).await
            });
        }
    }

    // Only the subtasks' copies keep the coordinator's inputs open.
    drop(link);
    let mut failure: Option<SluiceError> = None;
    let mut stopped = false;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(SluiceError::Runtime(if e.is_panic() {
                format!("a subtask panicked: {e}")
            } else {
                format!("a subtask was cancelled: {e}")
            }))
        });
        match result {
            Ok(source_stopped) => stopped |= source_stopped,
            Err(e) => {
                // Keep the cause, not the "downstream stopped" echoes it caused.
                if failure
                    .as_ref()
                    .is_none_or(|f| is_secondary(f) && !is_secondary(&e))
                {
                    failure = Some(e);
                }
                tasks.abort_all();
            }
        }
    }
    // With checkpoints in a store, every output is committed by the
    // checkpoint that covers it (the end's, or a stopped job's last), and
    // output no completed checkpoint covers is left to a restore, which
    // writes it again. Committing it otherwise would repeat it after a
    // restore.
    let checkpointing = coordinator.is_some();
    let checkpointed = checkpointing && options.checkpoint_store.is_some();
    if let Some(e) = failure {
        // Nothing of a failed run may write to the store once it returns:
        // a restart lists the store next.
        if let Some(mut coordinator) = coordinator {
            coordinator.0.abort();
            let _ = (&mut coordinator.0).await;
        }
        if !checkpointed {
            // A retry, or the next run, starts over: what this one staged goes.
            let _ = withdraw(&sinks).await;
        }
        return Err(e);
    }
    let coordinated = match coordinator {
        Some(mut coordinator) => (&mut coordinator.0)
            .await
            .map_err(|e| SluiceError::Runtime(format!("the checkpoint coordinator failed: {e}")))?,
        None => Coordinated::default(),
    };
    let mut left_behind = Vec::new();
    let committed = if stopped {
        // A stopped job's last checkpoint commits what it did; without
        // checkpoints, nothing of a stopped run is committed.
        if checkpointing {
            if coordinated.last == Some(false) {
                return Err(SluiceError::io(
                    format!("stopping job {}", graph.name),
                    std::io::Error::other(
                        "its last checkpoint could not be completed, so what it did since the one before is not committed; resume it with --restore latest",
                    ),
                ));
            }
            true
        } else {
            left_behind = withdraw(&sinks).await?;
            false
        }
    } else {
        if checkpointed && coordinated.end != Some(true) {
            return Err(SluiceError::io(
                format!("finishing job {}", graph.name),
                std::io::Error::other(
                    "it read its input to the end, but the checkpoint of its end could not be written, so its last output is not committed; run it again with --restore latest",
                ),
            ));
        }
        commit_all(&sinks).await?;
        true
    };
    let late = JobMetrics::get(&metrics.late_rows);
    if late > 0 && options.late_data.is_none() {
        tracing::warn!(
            late,
            "rows arrived behind the watermark after their windows fired; set 'sluice.late-data.path' to keep them"
        );
    }
    Ok(JobResult {
        rows_in: JobMetrics::get(&metrics.rows_in),
        rows_out: JobMetrics::get(&metrics.rows_out),
        late_rows: late,
        elapsed: started.elapsed(),
        stopped,
        committed,
        left_behind,
        restored_from,
        already_finished: false,
        checkpoints: coordinated.completed,
        outputs: if committed {
            reports(&sinks)
        } else {
            Vec::new()
        },
    })
}

/// What each sink did, by table.
fn reports(
    sinks: &[(String, Arc<dyn crate::connector::Sink>)],
) -> Vec<(String, crate::connector::SinkReport)> {
    sinks
        .iter()
        .map(|(name, sink)| (name.clone(), sink.report()))
        .collect()
}

/// `INSERT OVERWRITE` replaces a sink's contents when the job ends; with
/// checkpoints, output is committed as the job goes, so old and new files
/// would be visible together, and a restored run could not know which
/// files were the old ones.
fn check_no_overwrite(graph: &JobGraph) -> Result<()> {
    for node in &graph.nodes {
        if let NodeKind::Sink(sink) = &node.kind
            && sink.overwrite
        {
            return Err(SluiceError::config(format!(
                "{}: INSERT OVERWRITE into `{}` replaces its output when the job ends, but with checkpoints output is committed as the job goes: run it without checkpoint options, or write INSERT INTO",
                sink.table.declared_at, sink.table.name
            )));
        }
    }
    Ok(())
}

impl JobResult {
    /// A job stopped while it was still planning: nothing was read or
    /// written.
    fn stopped_at_start(
        started: Instant,
        restored_from: Option<(CheckpointId, RowCounts)>,
    ) -> Self {
        let counts = restored_from.map(|(_, c)| c).unwrap_or_default();
        Self {
            rows_in: counts.rows_in,
            rows_out: counts.rows_out,
            late_rows: counts.late_rows,
            elapsed: started.elapsed(),
            stopped: true,
            committed: false,
            left_behind: Vec::new(),
            restored_from,
            already_finished: false,
            checkpoints: Vec::new(),
            outputs: Vec::new(),
        }
    }
}

/// Commits every sink at the end of a job, in rounds: all commit (their
/// new output in place, undoably), then all are marked complete (a file
/// sink replacing its files marks its commit to be finished rather than
/// undone), then all finish (delete what they replace, drop the record
/// that would undo them). A crash before the second round leaves every
/// sink's commit undoable by the next run, and one after it every sink's
/// to be finished; only a crash between two sinks' marks or two sinks'
/// last steps leaves one committed beside one rolled back.
async fn commit_all(sinks: &[(String, Arc<dyn crate::connector::Sink>)]) -> Result<()> {
    for (_, sink) in sinks {
        sink.commit().await?;
    }
    for (_, sink) in sinks {
        sink.mark_complete().await?;
    }
    for (_, sink) in sinks {
        sink.finish_commit().await?;
    }
    Ok(())
}

/// Withdraws what a run without checkpoints staged; returns the sinks that
/// had already delivered output where it cannot be withdrawn from.
async fn withdraw(sinks: &[(String, Arc<dyn crate::connector::Sink>)]) -> Result<Vec<String>> {
    let mut left_behind = Vec::new();
    for (_, sink) in sinks {
        if !sink.abort().await? {
            left_behind.push(sink.describe());
        }
    }
    Ok(left_behind)
}

/// Fails if `manifest` was taken by another graph than `plan`'s: its state
/// would be restored into the wrong operators.
fn check_restored_plan(manifest: &Manifest, plan: &PlanIdentity, job: &str) -> Result<()> {
    match &manifest.plan {
        Some(taken) if taken.fingerprint != plan.fingerprint => Err(SluiceError::config(format!(
            "checkpoint {} of job `{job}` was taken by a different job graph, so its state cannot be restored into this one:\n  the checkpoint's: {}\n  this job's:       {}\nRestore it with the job file and options it was taken with, or start without --restore (give a changed job its own 'pipeline.name' to keep both)",
            manifest.id, taken.outline, plan.outline
        ))),
        _ => Ok(()),
    }
}

/// Fails if a checkpoint of a job's end is restored into a run that finds
/// splits the job did not read: the job is done, and those rows would be
/// neither read nor reported.
fn check_no_new_splits(
    table: &str,
    splits: &[Arc<dyn Split>],
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
    manifest: &Manifest,
) -> Result<()> {
    let new: Vec<String> = splits
        .iter()
        .map(|s| s.key())
        .filter(|key| !restored.contains_key(key))
        .collect();
    match new.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(SluiceError::config(format!(
            "table `{table}`: checkpoint {} was taken when the job had read all of its input, and this run finds {} split{} it did not read, such as `{first}`: the input is not the one the job finished. To process this input, start without --restore",
            manifest.id,
            new.len(),
            if new.len() == 1 { "" } else { "s" },
        ))),
    }
}

/// A spawned task that is aborted when dropped: a job dropped or failed
/// leaves no coordinator behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Triggers a checkpoint every `interval` and completes each once every
/// subtask has acknowledged it (a finished subtask counts as having done
/// so). Returns the completed checkpoints when every subtask has ended.
struct Coordinator {
    job: String,
    interval: Duration,
    /// Subtasks per stage root that must acknowledge each checkpoint.
    expected: BTreeMap<usize, usize>,
    /// Source stages, and their subtasks in all: once all have ended, no
    /// barrier flows any more.
    source_roots: std::collections::BTreeSet<usize>,
    sources: usize,
    /// The job's sinks by table name, to commit what checkpoints staged.
    sinks: BTreeMap<String, Arc<dyn crate::connector::Sink>>,
    /// The graph, recorded in every manifest, and its nodes' stable ids.
    plan: PlanIdentity,
    operators: BTreeMap<usize, crate::checkpoint::protocol::OperatorId>,
    /// The counts of the checkpoint the run restored: manifests count on.
    base: RowCounts,
    store: Option<Arc<dyn CheckpointStore>>,
    retained: usize,
    /// When the job is stopped, one last checkpoint is taken.
    stop: StopSignal,
    /// The checkpoints already in the store.
    known: Option<Known>,
    metrics: Arc<JobMetrics>,
}

/// The checkpoints in the store: complete ones, and all (incomplete ones
/// are left by crashes, or in progress).
#[derive(Debug, Default)]
struct Known {
    complete: Vec<CheckpointId>,
    all: Vec<CheckpointId>,
    /// Staged output whose checkpoint failed or whose commit did: the next
    /// checkpoint carries it.
    uncommitted: Vec<crate::checkpoint::protocol::StagedOutput>,
}

impl Known {
    async fn list(store: &dyn CheckpointStore) -> Result<Self> {
        let mut known = Known::default();
        for (id, manifest) in store.list().await? {
            if matches!(manifest, Some(Ok(_))) {
                known.complete.push(id);
            }
            known.all.push(id);
        }
        Ok(known)
    }
}

impl Coordinator {
    /// Writes a completed checkpoint's manifest, then drops checkpoints
    /// past retention. A checkpoint whose manifest cannot be written did
    /// not happen: the job goes on, and says so.
    async fn complete(&self, manifest: &mut Manifest, known: &mut Known) -> bool {
        // Output of earlier checkpoints that failed, or whose commit did,
        // is committed by this one.
        manifest.carried.append(&mut known.uncommitted);
        manifest.plan = Some(self.plan.clone());
        manifest.operators = self.operators.clone();
        manifest.counts += self.base;
        if let Some(store) = &self.store
            && let Err(e) = store.write_manifest(manifest).await
        {
            tracing::warn!("checkpoint {} failed: {e}", manifest.id);
            known.uncommitted = commits_of(manifest);
            return false;
        }
        JobMetrics::add(&self.metrics.checkpoints, 1);
        // The checkpoint exists: what its sinks staged becomes visible. A
        // failure here is finished by the commit at the end of the job, or
        // by a restore.
        let staged = commits_of(manifest);
        for (table, sink) in &self.sinks {
            let mine: Vec<_> = staged
                .iter()
                .filter(|s| &s.sink == table)
                .cloned()
                .collect();
            if !mine.is_empty()
                && let Err(e) = sink.commit_checkpoint(&mine).await
            {
                tracing::warn!("committing checkpoint {} of `{table}`: {e}", manifest.id);
                known.uncommitted.extend(mine);
            }
        }
        let Some(store) = &self.store else {
            return true;
        };
        known.complete.push(manifest.id);
        let discard: Vec<CheckpointId> = to_discard(&known.complete, &known.all, self.retained);
        match store.discard(&discard).await {
            Ok(()) => {
                known.complete.retain(|id| !discard.contains(id));
                known.all.retain(|id| !discard.contains(id));
            }
            Err(e) => tracing::warn!("discarding old checkpoints in {}: {e}", store.describe()),
        }
        true
    }

    async fn run(
        self,
        triggers: tokio::sync::watch::Sender<task::Trigger>,
        acks: tokio::sync::mpsc::UnboundedReceiver<task::Ack>,
    ) -> Coordinated {
        let mut coordinator = self;
        coordinate(&mut coordinator, triggers, acks).await
    }
}

/// What the coordinator saw of a run's checkpoints.
#[derive(Debug, Default)]
struct Coordinated {
    /// The checkpoints completed while the job ran, oldest first.
    completed: Vec<Manifest>,
    /// Whether the checkpoint of the job's end completed, if one was taken.
    end: Option<bool>,
    /// Whether the last checkpoint of a stopped job completed, if it was
    /// stopped while its sources ran.
    last: Option<bool>,
}

async fn coordinate(
    coordinator: &mut Coordinator,
    triggers: tokio::sync::watch::Sender<task::Trigger>,
    mut acks: tokio::sync::mpsc::UnboundedReceiver<task::Ack>,
) -> Coordinated {
    let (job, expected) = (&coordinator.job, &coordinator.expected);
    let mut ticks = tokio::time::interval(coordinator.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut known = coordinator.known.take().unwrap_or_default();
    let mut next: CheckpointId = known.all.iter().max().map_or(1, |id| id + 1);
    let mut pending: BTreeMap<CheckpointId, (PendingCheckpoint, Instant)> = BTreeMap::new();
    // Subtasks that ended, with their final snapshot (a source's positions).
    let mut finished: BTreeMap<(usize, usize), SubtaskSnapshot> = BTreeMap::new();
    let mut finished_sources = 0;
    let mut completed = Vec::new();
    let mut end_completed = None;
    // The stopped job's last checkpoint, and whether it completed.
    let mut last_checkpoint: Option<(CheckpointId, bool)> = None;
    let mut stopping = false;
    // Whether a source ended because the job was stopped.
    let mut any_stopped = false;
    let now_ms = || chrono::Utc::now().timestamp_millis();
    loop {
        // (checkpoint, subtask's snapshot) acknowledgements to record.
        let mut received: Vec<(CheckpointId, SubtaskSnapshot)> = Vec::new();
        // A checkpoint to trigger, and whether it is the last.
        let mut trigger = None;
        tokio::select! {
            // One checkpoint at a time, and none once no source runs: no
            // barrier would flow.
            _ = ticks.tick(), if pending.is_empty() && finished_sources < coordinator.sources && !stopping => {
                trigger = Some(false);
            }
            // Stopped: one last checkpoint at once, whatever is in flight.
            () = coordinator.stop.stopped(), if !stopping => {
                stopping = true;
                trigger = (finished_sources < coordinator.sources).then_some(true);
            }
            ack = acks.recv() => match ack {
                None => {
                    // Every subtask ended. If every source read to its end
                    // (none was stopped, which leaves state in the last
                    // checkpoint), a checkpoint of the end commits the last
                    // output, and a restore from it finds the job done
                    // rather than doing it again.
                    if !any_stopped && !finished.is_empty() {
                        let mut end = PendingCheckpoint::new(next, expected);
                        let mut done = None;
                        for snapshot in finished.values() {
                            done = end.acknowledge(snapshot.clone(), job, now_ms()).ok().flatten();
                        }
                        // Not among the checkpoints the job reports: it was
                        // taken after the run, not during it.
                        end_completed = Some(match done.map(|m| Manifest { end: true, ..m }) {
                            Some(mut manifest) => coordinator.complete(&mut manifest, &mut known).await,
                            None => false,
                        });
                    }
                    return Coordinated {
                        completed,
                        end: end_completed,
                        last: last_checkpoint.map(|(_, done)| done),
                    };
                }
                Some(task::Ack::Snapshot(id, snapshot)) => {
                    tracing::debug!(checkpoint = id, node = snapshot.node, subtask = snapshot.subtask, "subtask snapshotted");
                    received.push((id, snapshot));
                }
                Some(task::Ack::Finished { node, subtask, positions, staged, stopped, counts }) => {
                    any_stopped |= stopped;
                    // Its input ended: its operators fired and emptied.
                    let snapshot = SubtaskSnapshot {
                        node,
                        subtask,
                        state: Vec::new(),
                        positions,
                        staged,
                        counts,
                    };
                    if coordinator.source_roots.contains(&node) {
                        finished_sources += 1;
                    }
                    // It counts for the checkpoints it has not acknowledged:
                    // what it sent for the others stands.
                    received.extend(
                        pending
                            .iter()
                            .filter(|(_, (c, _))| !c.has(node, subtask))
                            .map(|(&id, _)| (id, snapshot.clone())),
                    );
                    finished.insert((node, subtask), snapshot);
                }
            },
        }
        if let Some(last) = trigger {
            let mut checkpoint = PendingCheckpoint::new(next, expected);
            let mut done = None;
            for snapshot in finished.values() {
                done = checkpoint
                    .acknowledge(snapshot.clone(), job, now_ms())
                    .ok()
                    .flatten();
            }
            known.all.push(next);
            if last {
                last_checkpoint = Some((next, false));
            }
            if let Some(mut manifest) = done {
                if coordinator.complete(&mut manifest, &mut known).await {
                    if last {
                        last_checkpoint = Some((next, true));
                    }
                    completed.push(manifest);
                }
            } else {
                pending.insert(next, (checkpoint, Instant::now()));
            }
            tracing::debug!(checkpoint = next, last, "checkpoint triggered");
            // Sources wait for the last trigger even when it needs no barrier.
            triggers.send_replace(task::Trigger { id: next, last });
            next += 1;
        }
        for (id, snapshot) in received {
            let Some((checkpoint, started)) = pending.get_mut(&id) else {
                continue;
            };
            let started = *started;
            match checkpoint.acknowledge(snapshot, job, now_ms()) {
                Ok(Some(mut manifest)) => {
                    pending.remove(&id);
                    manifest.duration_millis = started.elapsed().as_millis() as u64;
                    if !coordinator.complete(&mut manifest, &mut known).await {
                        continue;
                    }
                    if let Some((last, done)) = last_checkpoint.as_mut()
                        && *last == id
                    {
                        *done = true;
                    }
                    tracing::info!(
                        checkpoint = id,
                        millis = started.elapsed().as_millis() as u64,
                        state_bytes = manifest.state_bytes(),
                        "checkpoint complete"
                    );
                    completed.push(manifest);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("checkpoint {id}: {e}"),
            }
        }
    }
}

/// Deals splits to `parallelism` subtasks. Splits read in order go round
/// robin, earliest first, so subtasks move through event time together.
/// Splits read concurrently go largest first to the least loaded subtask,
/// so a topic with one busy partition and many quiet ones still spreads
/// its work as evenly as partitions allow.
fn assign_splits(
    mut splits: Vec<Arc<dyn Split>>,
    parallelism: usize,
    reading: Reading,
    trusted: impl Fn(Option<Millis>) -> Option<Millis>,
) -> Vec<Vec<Arc<dyn Split>>> {
    let mut assigned: Vec<Vec<Arc<dyn Split>>> = vec![Vec::new(); parallelism];
    match reading {
        Reading::InOrder => {
            // Among splits of the same (or unknown) time, planning's order
            // (files by name, each from its start) stands.
            let mut splits: Vec<(usize, Arc<dyn Split>)> = splits.into_iter().enumerate().collect();
            splits.sort_by_cached_key(|(planned, s)| {
                let time = trusted(s.min_event_time()).or_else(|| trusted(s.first_event_time()));
                (time.unwrap_or(i64::MIN), *planned)
            });
            for (i, (_, split)) in splits.into_iter().enumerate() {
                assigned[i % parallelism].push(split);
            }
        }
        Reading::Concurrent { .. } => {
            splits.sort_by_cached_key(|s| {
                (
                    std::cmp::Reverse(s.estimated_rows().unwrap_or(0)),
                    s.describe(),
                )
            });
            let mut load = vec![(0u64, 0usize); parallelism];
            for split in splits {
                let Some(subtask) = (0..parallelism).min_by_key(|&i| (load[i], i)) else {
                    break;
                };
                load[subtask].0 += split.estimated_rows().unwrap_or(0);
                load[subtask].1 += 1;
                assigned[subtask].push(split);
            }
        }
    }
    assigned
}

/// Fails if the checkpoint being restored has positions for splits this run
/// did not plan (a file removed or rewritten, a changed split size): their
/// rows so far are in the restored state, and reading on without them
/// would lose what they had left, or read again what was read.
fn check_restored_splits(
    table: &str,
    splits: &[Arc<dyn Split>],
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
) -> Result<()> {
    if restored.is_empty() {
        return Ok(());
    }
    let planned: std::collections::BTreeSet<String> = splits.iter().map(|s| s.key()).collect();
    let missing: Vec<&str> = restored
        .keys()
        .filter(|key| !planned.contains(*key))
        .map(String::as_str)
        .collect();
    if let Some(e) = changed_split(table, &missing, &planned, restored) {
        return Err(e);
    }
    match missing.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(SluiceError::config(format!(
            "table `{table}`: the checkpoint being restored read {} split{} this run does not find, such as `{first}`; were files removed or rewritten, or the table's options or the job's parallelism changed (nexmark splits follow it)? Restore with the input and options as they were, or start without the checkpoint",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
        ))),
    }
}

/// An error for the first split in `missing` (keys the checkpoint has and
/// this run did not plan) that this run planned under the same name with
/// another version of its data: a file rewritten since the checkpoint.
fn changed_split(
    table: &str,
    missing: &[&str],
    planned: &std::collections::BTreeSet<String>,
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
) -> Option<SluiceError> {
    use crate::connector::SplitKey;
    missing.iter().find_map(|key| {
        let then = SplitKey::parse(key);
        let now = planned
            .iter()
            .map(|k| SplitKey::parse(k))
            .find(|k| k.name == then.name)?;
        let position = restored.get(*key).map_or("", |p| p.position.as_str());
        Some(SluiceError::config(format!(
            "table `{table}`: {} has changed since the checkpoint being restored read it (then: {}; now: {}), so its position there ({position}) would resume in other data. Restore with the input the checkpoint read, or start without --restore",
            then.name,
            then.version.unwrap_or("version not recorded"),
            now.version.unwrap_or("version not known"),
        )))
    })
}

fn is_secondary(e: &SluiceError) -> bool {
    matches!(e, SluiceError::Runtime(m) if m.contains(task::STOPPED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::record_batch::RecordBatch;
    use futures::stream::BoxStream;

    #[derive(Debug)]
    struct Sized {
        name: &'static str,
        rows: u64,
        min_time: i64,
    }

    impl Split for Sized {
        fn describe(&self) -> String {
            self.name.to_string()
        }
        fn min_event_time(&self) -> Option<i64> {
            Some(self.min_time)
        }
        fn estimated_rows(&self) -> Option<u64> {
            Some(self.rows)
        }
        fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
            Box::pin(futures::stream::empty())
        }
    }

    fn splits(sizes: &[(&'static str, u64, i64)]) -> Vec<Arc<dyn Split>> {
        sizes
            .iter()
            .map(|&(name, rows, min_time)| {
                Arc::new(Sized {
                    name,
                    rows,
                    min_time,
                }) as Arc<dyn Split>
            })
            .collect()
    }

    fn names(assigned: &[Vec<Arc<dyn Split>>]) -> Vec<Vec<String>> {
        assigned
            .iter()
            .map(|s| s.iter().map(|s| s.describe()).collect())
            .collect()
    }

    #[test]
    fn a_restore_must_find_every_split_it_names() {
        let position = |split: &str| crate::checkpoint::protocol::SplitPosition {
            split: split.into(),
            position: "rows:1".into(),
            watermark: None,
        };
        let planned = splits(&[("a", 1, 10), ("b", 1, 20)]);
        let restored = |names: &[&str]| -> BTreeMap<_, _> {
            names.iter().map(|n| (n.to_string(), position(n))).collect()
        };
        assert!(check_restored_splits("t", &planned, &restored(&[])).is_ok());
        assert!(
            check_restored_splits("t", &planned, &restored(&["a"])).is_ok(),
            "splits new to this run start from their beginning"
        );
        let err = check_restored_splits("t", &planned, &restored(&["a", "x", "y"]))
            .expect_err("x and y are gone")
            .to_string();
        assert!(
            err.starts_with("table `t`: the checkpoint being restored read 2 splits this run does not find, such as `x`"),
            "{err}"
        );
    }

    /// A file the checkpoint read, found again under its name but with
    /// other contents, fails the restore naming the file and both versions.
    #[test]
    fn a_restore_refuses_a_split_whose_data_changed() {
        #[derive(Debug)]
        struct Versioned(&'static str);
        impl Split for Versioned {
            fn describe(&self) -> String {
                "file:///d/a.json".into()
            }
            fn version(&self) -> Option<String> {
                Some(self.0.into())
            }
            fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
                Box::pin(futures::stream::empty())
            }
        }
        let then = Versioned("size 10, modified 2026-01-01T00:00:00Z");
        let restored: BTreeMap<_, _> = [(
            then.key(),
            crate::checkpoint::protocol::SplitPosition {
                split: then.key(),
                position: "bytes:4".into(),
                watermark: None,
            },
        )]
        .into();
        let same: Vec<Arc<dyn Split>> = vec![Arc::new(Versioned(then.0))];
        assert!(check_restored_splits("t", &same, &restored).is_ok());
        let rewritten: Vec<Arc<dyn Split>> = vec![Arc::new(Versioned(
            "size 12, modified 2026-01-02T00:00:00Z",
        ))];
        let err = check_restored_splits("t", &rewritten, &restored)
            .expect_err("another file under the same name")
            .to_string();
        assert_eq!(
            err,
            "table `t`: file:///d/a.json has changed since the checkpoint being restored read it (then: size 10, modified 2026-01-01T00:00:00Z; now: size 12, modified 2026-01-02T00:00:00Z), so its position there (bytes:4) would resume in other data. Restore with the input the checkpoint read, or start without --restore"
        );
        // A checkpoint from before keys had versions.
        let old: BTreeMap<_, _> = [(
            "file:///d/a.json".to_string(),
            crate::checkpoint::protocol::SplitPosition {
                split: "file:///d/a.json".into(),
                position: "bytes:4".into(),
                watermark: None,
            },
        )]
        .into();
        let err = check_restored_splits("t", &same, &old)
            .expect_err("its version cannot be checked")
            .to_string();
        assert!(
            err.contains("(then: version not recorded; now: size 10,"),
            "{err}"
        );
    }

    /// Splits of unknown or equal times keep planning's order, which for
    /// ranges of one file is their order in the file (names would sort
    /// `bytes 100..` before `bytes 20..`).
    #[test]
    fn ordered_splits_of_equal_time_keep_the_planned_order() {
        let assigned = assign_splits(
            splits(&[
                ("f bytes 0..20", 1, 5),
                ("f bytes 20..100", 1, 5),
                ("f bytes 100..120", 1, 5),
            ]),
            1,
            Reading::InOrder,
            |t| t,
        );
        assert_eq!(
            names(&assigned),
            vec![vec!["f bytes 0..20", "f bytes 20..100", "f bytes 100..120"]]
        );
    }

    #[test]
    fn ordered_splits_go_round_robin_earliest_first() {
        let assigned = assign_splits(
            splits(&[("c", 1, 30), ("a", 1, 10), ("b", 1, 20)]),
            2,
            Reading::InOrder,
            |t| t,
        );
        assert_eq!(names(&assigned), vec![vec!["a", "c"], vec!["b"]]);
    }

    #[test]
    fn concurrent_splits_balance_a_skewed_topic() {
        // One hot partition and five quiet ones: the hot one gets a subtask
        // of its own rather than sharing with the next in line.
        let assigned = assign_splits(
            splits(&[
                ("p0", 10, 0),
                ("p1", 1000, 0),
                ("p2", 10, 0),
                ("p3", 10, 0),
                ("p4", 10, 0),
                ("p5", 10, 0),
            ]),
            2,
            Reading::Concurrent { idle_timeout: None },
            |t| t,
        );
        assert_eq!(
            names(&assigned),
            vec![vec!["p1"], vec!["p0", "p2", "p3", "p4", "p5"]]
        );
        // Equal partitions spread evenly.
        let even = assign_splits(
            splits(&[("a", 5, 0), ("b", 5, 0), ("c", 5, 0), ("d", 5, 0)]),
            2,
            Reading::Concurrent { idle_timeout: None },
            |t| t,
        );
        assert!(even.iter().all(|s| s.len() == 2), "{:?}", names(&even));
    }
}
