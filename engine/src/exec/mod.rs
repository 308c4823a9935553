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
mod coordinator;
pub mod exchange;
mod exit;
mod input_merge;
mod input_order;
mod operator_state;
mod source_driver;
mod split_assignment;
mod task;
pub use task::LATE_DATA;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::checkpoint::protocol::{Manifest, PlanIdentity, RowCounts};
use crate::checkpoint::protocol::{commits_of, positions_for};
use crate::checkpoint::{CheckpointId, CheckpointStore, Restored};
use crate::connector::{Reading, ScanRequest, SourceChanges, Split};
use crate::error::{Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::OperatorContext;
use crate::plan::{JobGraph, NodeKind};
use crate::time::{EventTimeGate, RowtimeWatermark};
use channel::{Receiver, Sender};
use coordinator::{Coordinated, Coordinator, Known};
use split_assignment::{assign_splits, check_no_new_splits, check_restored_splits};

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

/// A spawned task that is aborted when dropped: a job dropped or failed
/// leaves no coordinator behind.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_secondary(e: &SluiceError) -> bool {
    matches!(e, SluiceError::Runtime(m) if m.contains(task::STOPPED))
}
