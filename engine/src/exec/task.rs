//! One subtask: its input, its chain of operators, and its exits.
//!
//! Messages go through the chain synchronously (operators are CPU-only);
//! what reaches an exit (an exchange or a sink) is buffered and then sent
//! or written, which is where a subtask waits. A source subtask reads its
//! splits (in order or all at once, as its source says) and tracks their
//! watermarks; any other subtask merges its input channels and forwards the
//! minimum of their watermarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::select_all;

use super::StopSignal;
use super::channel::{Receiver, Sender};
use super::exchange::hash_partition;
use std::collections::BTreeMap;

use futures::stream::BoxStream;

use super::exchange::key_groups_of;
use crate::checkpoint::protocol::{self, StateFile, SubtaskSnapshot};
use crate::checkpoint::{Arrival, BarrierAligner, CheckpointId, CheckpointStore, Restored, Step};
use crate::connector::{Reading, SinkWriter, Split, SplitPosition};
use crate::error::{ExecContext, Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::{Message, Operator, OperatorContext, Output, Port, RestoredState};
use crate::plan::{JobGraph, NodeKind, Partitioning, Stage};
use crate::time::{
    BEFORE_TIME, END_OF_TIME, EventTimeGate, InputWatermarks, Millis, RowtimeWatermark,
    SplitWatermarks,
};
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::{mpsc, watch};

/// The name the late-data output's staged files go under in checkpoints.
pub const LATE_DATA: &str = "sluice.late-data";

/// Words of the error a subtask raises when its downstream has gone away;
/// the downstream's own error is the one to report.
pub const STOPPED: &str = "stopped before this subtask finished";

pub enum Input {
    Source {
        splits: Vec<Arc<dyn Split>>,
        reading: Reading,
        /// Computed columns: the output columns as expressions over what
        /// the splits yield, and the output schema.
        compute: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
        /// The table's watermark expression.
        watermark: Option<RowtimeWatermark>,
        stop: StopSignal,
        /// Split positions of a restored checkpoint, by split name.
        restored: BTreeMap<String, protocol::SplitPosition>,
        /// Keeps the stage's subtasks reading in step, for splits read in
        /// order.
        pace: Option<SplitPace>,
        /// Refuses rows whose event time is null or too far ahead, when
        /// the table has a watermark.
        gate: Option<Arc<EventTimeGate>>,
    },
    /// Exchange channels, each with the port of the chain's root it feeds.
    Channels(Vec<(Port, Receiver)>),
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Node(usize),
    Exit(usize),
}

struct ChainNode {
    /// The operator's node in the job graph: what its state is filed under.
    id: usize,
    /// Its name, for messages.
    name: String,
    op: Box<dyn Operator>,
    outputs: Vec<Target>,
}

enum Exit {
    Exchange {
        partitioning: Partitioning,
        senders: Vec<Sender>,
        next: usize,
        hashes: Vec<u64>,
    },
    Sink {
        table: String,
        schema: SchemaRef,
        writer: Option<Box<dyn SinkWriter>>,
        metrics: Arc<JobMetrics>,
    },
}

pub struct Chain {
    nodes: Vec<ChainNode>,
    entry: Vec<Target>,
    exits: Vec<Exit>,
    pending: Vec<Vec<Message>>,
    /// Late rows set aside by operators, and where they go.
    late: Vec<RecordBatch>,
    late_writer: Option<Box<dyn SinkWriter>>,
    /// What the chain's sinks staged at the last barrier.
    staged: Vec<protocol::StagedOutput>,
    /// Rows the chain read, wrote and found late since the run started:
    /// what its checkpoint acknowledgements report.
    counts: protocol::RowCounts,
    context: OperatorContext,
}

impl Chain {
    /// Instantiates `stage` for the subtask in `context`, taking its exchange
    /// senders from `senders` (keyed by edge index and subtask).
    pub async fn build(
        graph: &JobGraph,
        stage: &Stage,
        context: &OperatorContext,
        senders: &mut BTreeMap<(usize, usize), Vec<Sender>>,
        late_data: Option<&dyn crate::connector::Sink>,
    ) -> Result<Self> {
        let mut nodes = Vec::new();
        let mut exits = Vec::new();
        let mut target_of = std::collections::HashMap::new();
        for &id in &stage.nodes {
            let node = graph.node(id);
            match &node.kind {
                NodeKind::Source(_) => {}
                NodeKind::Operator(factory) => {
                    target_of.insert(id, Target::Node(nodes.len()));
                    nodes.push(ChainNode {
                        id,
                        name: factory.name().to_string(),
                        op: factory.create(context)?,
                        outputs: Vec::new(),
                    });
                }
                NodeKind::Sink(sink) => {
                    target_of.insert(id, Target::Exit(exits.len()));
                    exits.push(Exit::Sink {
                        table: sink.table.name.clone(),
                        schema: Arc::clone(&sink.table.schema),
                        writer: Some(
                            sink.sink
                                .open_writer(context.subtask, context.parallelism)
                                .await?,
                        ),
                        metrics: Arc::clone(&context.metrics),
                    });
                }
            }
        }
        let mut entry = Vec::new();
        for &id in &stage.nodes {
            let mut outputs = Vec::new();
            for (e, edge) in graph.edges.iter().enumerate() {
                if edge.from != id {
                    continue;
                }
                if graph.is_chained(edge) {
                    outputs.push(target_of[&edge.to]);
                } else {
                    let senders = senders.remove(&(e, context.subtask)).unwrap_or_default();
                    outputs.push(Target::Exit(exits.len()));
                    exits.push(Exit::Exchange {
                        partitioning: edge.partitioning.clone(),
                        senders,
                        next: context.subtask,
                        hashes: Vec::new(),
                    });
                }
            }
            match target_of.get(&id) {
                Some(Target::Node(n)) => nodes[*n].outputs = outputs,
                // A source root feeds the chain's entry; a sink has no outputs.
                _ if id == stage.root => entry = outputs,
                _ => {}
            }
        }
        if let Some(root) = target_of.get(&stage.root) {
            entry = vec![*root];
        }
        let pending = exits.iter().map(|_| Vec::new()).collect();
        let late_writer = match late_data {
            Some(sink) => Some(
                sink.open_writer(context.subtask, context.parallelism)
                    .await?,
            ),
            None => None,
        };
        Ok(Self {
            nodes,
            entry,
            exits,
            pending,
            late: Vec::new(),
            late_writer,
            staged: Vec::new(),
            counts: protocol::RowCounts::default(),
            context: context.clone(),
        })
    }

    pub fn open(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.op.open(&self.context)?;
        }
        Ok(())
    }

    /// Gives every operator its state from a restored checkpoint: the
    /// files of the key groups this subtask owns.
    pub fn restore(&mut self, restored: &Restored) -> Result<()> {
        let key_groups = key_groups_of(self.context.subtask, self.context.parallelism);
        for node in &mut self.nodes {
            let files = protocol::state_for(&restored.manifest, node.id, &key_groups);
            if files.is_empty() {
                continue;
            }
            let mut batches = Vec::new();
            for file in &files {
                let state = restored.state.get(&file.path).ok_or_else(|| {
                    SluiceError::Runtime(format!(
                        "checkpoint {} lists state file {} but it was not read",
                        restored.manifest.id, file.path
                    ))
                })?;
                batches.extend(state.iter().cloned());
            }
            let watermark = files
                .iter()
                .map(|f| f.watermark)
                .min()
                .unwrap_or(BEFORE_TIME);
            node.op
                .restore(RestoredState {
                    batches,
                    watermark,
                    key_groups: key_groups.clone(),
                })
                .map_err(|e| {
                    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                    SluiceError::Config(format!(
                        "restoring {} (node {}) from checkpoint {} ({}): {e}",
                        node.name,
                        node.id,
                        restored.manifest.id,
                        paths.join(", ")
                    ))
                })?;
        }
        Ok(())
    }

    /// Takes every operator's state for checkpoint `id` and writes it to
    /// the checkpoint store, if there is one.
    async fn snapshot(
        &mut self,
        id: CheckpointId,
        link: &CheckpointLink,
    ) -> Result<Vec<StateFile>> {
        let key_groups = key_groups_of(self.context.subtask, self.context.parallelism);
        let mut files = Vec::new();
        for node in &mut self.nodes {
            let Some(state) = node.op.snapshot()? else {
                continue;
            };
            let Some(store) = &link.store else {
                continue;
            };
            let bytes = crate::checkpoint::state::encode(
                Arc::new(arrow::datatypes::Schema::empty()),
                &state.batches,
            )?;
            let path = format!("op-{}-{}.arrow", node.id, self.context.subtask);
            let size = bytes.len() as u64;
            store.write_state(id, &path, bytes).await?;
            files.push(StateFile {
                path,
                operator: node.id,
                key_groups: key_groups.clone(),
                keyed: state.keyed,
                watermark: state.watermark,
                bytes: size,
            });
        }
        Ok(files)
    }

    fn push(&mut self, message: Message) -> Result<()> {
        self.push_on(0, message)
    }

    /// Feeds `message` to the chain's entry as input `port` of its root.
    fn push_on(&mut self, port: Port, message: Message) -> Result<()> {
        let entry = self.entry.clone();
        if let Some((last, rest)) = entry.split_last() {
            for target in rest {
                self.deliver(*target, port, message.clone())?;
            }
            self.deliver(*last, port, message)?;
        }
        Ok(())
    }

    /// Tells the chain's root that its input `port` has ended.
    fn end_port(&mut self, port: Port) -> Result<()> {
        for target in self.entry.clone() {
            let Target::Node(n) = target else {
                continue;
            };
            let mut out = Output::default();
            self.nodes[n].op.on_input_end(port, &mut out)?;
            self.emit(n, out, false)?;
        }
        Ok(())
    }

    /// Within the chain a node has one input: every link feeds port 0.
    fn fan_out(&mut self, targets: &[Target], message: Message) -> Result<()> {
        if let Some((last, rest)) = targets.split_last() {
            for target in rest {
                self.deliver(*target, 0, message.clone())?;
            }
            self.deliver(*last, 0, message)?;
        }
        Ok(())
    }

    fn deliver(&mut self, target: Target, port: Port, message: Message) -> Result<()> {
        let n = match target {
            Target::Exit(i) => {
                self.pending[i].push(message);
                return Ok(());
            }
            Target::Node(n) => n,
        };
        crate::failpoint::hit("operator.busy");
        let mut out = Output::default();
        let node = &mut self.nodes[n];
        let end = matches!(message, Message::End);
        match message {
            Message::Data(batch) => node.op.on_batch(port, batch, &mut out)?,
            Message::Watermark(w) => node.op.on_watermark(w, &mut out)?,
            // Barriers pass straight through: the chain snapshots every
            // operator once the barrier has passed them all, before the
            // next message, which is the same.
            control @ (Message::Idle | Message::Barrier(_)) => {
                let outputs = node.outputs.clone();
                return self.fan_out(&outputs, control);
            }
            Message::End => node.op.close(&mut out)?,
        }
        self.emit(n, out, end)
    }

    /// Passes on what node `n` put in `out`, and the end after it.
    fn emit(&mut self, n: usize, mut out: Output, end: bool) -> Result<()> {
        let outputs = self.nodes[n].outputs.clone();
        for late in out.drain_late() {
            JobMetrics::add(&self.context.metrics.late_rows, late.num_rows() as u64);
            self.counts.late_rows += late.num_rows() as u64;
            self.late.push(late);
        }
        let mut produced: Vec<Message> = out.drain().collect();
        if end {
            produced.push(Message::End);
        }
        for message in produced {
            self.fan_out(&outputs, message)?;
        }
        Ok(())
    }

    /// Sends and writes what the chain produced.
    async fn flush(&mut self) -> Result<()> {
        // Late rows set aside so far came before any barrier now pending.
        match self.late_writer.as_mut() {
            Some(writer) => {
                for batch in self.late.drain(..) {
                    writer.write(batch).await?;
                }
            }
            None => self.late.clear(),
        }
        let mut barrier = None;
        for (exit, pending) in self.exits.iter_mut().zip(self.pending.iter_mut()) {
            for message in pending.drain(..) {
                // At a barrier, and at the end (for the checkpoint that
                // covers the finished subtask), a sink stages what it wrote.
                let checkpoint = match &message {
                    Message::Barrier(id) => Some(*id),
                    Message::End => Some(0),
                    _ => None,
                };
                barrier = barrier.or(checkpoint);
                if let (Some(id), Exit::Sink { table, writer, .. }) = (checkpoint, &mut *exit)
                    && let Some(writer) = writer.as_mut()
                {
                    let mut staged = writer.prepare_commit(id).await?;
                    for output in &mut staged {
                        output.sink = table.clone();
                    }
                    self.staged.extend(staged);
                }
                self.counts.rows_out += exit.send(message).await?;
            }
        }
        // The late-data output is committed with checkpoints too.
        if let (Some(id), Some(writer)) = (barrier, self.late_writer.as_mut()) {
            let mut staged = writer.prepare_commit(id).await?;
            for output in &mut staged {
                output.sink = LATE_DATA.to_string();
            }
            self.staged.extend(staged);
        }
        Ok(())
    }

    /// Closes the late-data output once the subtask is done.
    async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        match self.late_writer.take() {
            Some(writer) => writer.finish().await,
            None => Ok(()),
        }
    }
}

impl Exit {
    /// Sends or writes one message; returns the rows it wrote to a sink.
    async fn send(&mut self, message: Message) -> Result<u64> {
        match self {
            Exit::Exchange {
                partitioning,
                senders,
                next,
                hashes,
            } => {
                let stopped = |_| SluiceError::Runtime(format!("a downstream subtask {STOPPED}"));
                match message {
                    Message::Data(batch) => match partitioning {
                        Partitioning::Hash(keys) => {
                            for (subtask, part) in
                                hash_partition(&batch, keys, senders.len(), hashes)?
                            {
                                senders[subtask]
                                    .send(Message::Data(part))
                                    .await
                                    .map_err(stopped)?;
                            }
                        }
                        Partitioning::Rebalance => {
                            *next = (*next + 1) % senders.len();
                            senders[*next]
                                .send(Message::Data(batch))
                                .await
                                .map_err(stopped)?;
                        }
                        Partitioning::Forward | Partitioning::Single => {
                            senders[0]
                                .send(Message::Data(batch))
                                .await
                                .map_err(stopped)?;
                        }
                    },
                    control => {
                        for sender in senders.iter() {
                            sender.send(control.clone()).await.map_err(stopped)?;
                        }
                    }
                }
            }
            Exit::Sink {
                table,
                schema,
                writer,
                metrics,
            } => match message {
                Message::Data(batch) => {
                    let rows = batch.num_rows() as u64;
                    let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
                        .map_err(|e| {
                            SluiceError::Data(format!(
                                "rows for table `{table}` do not fit it: {e}"
                            ))
                        })?;
                    if let Some(w) = writer.as_mut() {
                        w.write(batch).await?;
                    }
                    JobMetrics::add(&metrics.rows_out, rows);
                    return Ok(rows);
                }
                Message::Watermark(_) | Message::Idle | Message::Barrier(_) => {}
                Message::End => {
                    if let Some(w) = writer.take() {
                        w.finish().await?;
                    }
                }
            },
        }
        Ok(0)
    }
}

/// The newest checkpoint the coordinator asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trigger {
    pub id: CheckpointId,
    /// The job is stopping: this checkpoint is its last (a savepoint), and
    /// sources stop right after its barrier.
    pub last: bool,
}

/// What a subtask needs to take part in checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointLink {
    /// The subtask's stage, by its root node, and its index.
    pub node: usize,
    pub subtask: usize,
    /// The checkpoint before the coordinator's first (the newest already
    /// stored), and the newest it asked for (read by sources).
    pub start: CheckpointId,
    pub triggers: watch::Receiver<Trigger>,
    pub acks: mpsc::UnboundedSender<Ack>,
    /// Where state files go.
    pub store: Option<Arc<dyn CheckpointStore>>,
}

/// What a subtask tells the checkpoint coordinator.
#[derive(Debug)]
pub enum Ack {
    /// The subtask has passed barrier `id` on and snapshotted.
    Snapshot(CheckpointId, SubtaskSnapshot),
    /// The subtask ended; it takes part in no later checkpoint. A source
    /// says where its splits ended: later checkpoints keep that.
    Finished {
        node: usize,
        subtask: usize,
        positions: Vec<protocol::SplitPosition>,
        /// What its sinks wrote after its last barrier.
        staged: Vec<protocol::StagedOutput>,
        /// A source that was stopped rather than read to its end: the
        /// job's state is in the last checkpoint, not empty.
        stopped: bool,
        /// Its final counts.
        counts: protocol::RowCounts,
    },
}

impl CheckpointLink {
    /// Snapshots the chain's operators and tells the coordinator.
    async fn acknowledge(
        &self,
        chain: &mut Chain,
        id: CheckpointId,
        positions: Vec<protocol::SplitPosition>,
    ) -> Result<()> {
        let state = chain.snapshot(id, self).await?;
        // A coordinator that has gone has nothing left to complete.
        let _ = self.acks.send(Ack::Snapshot(
            id,
            SubtaskSnapshot {
                node: self.node,
                subtask: self.subtask,
                state,
                positions,
                staged: std::mem::take(&mut chain.staged),
                counts: chain.counts,
            },
        ));
        Ok(())
    }
}

/// Runs the subtask to its end; returns whether it was a source stopped
/// before its splits ended.
pub async fn run(
    chain: &mut Chain,
    input: Input,
    metrics: &JobMetrics,
    link: Option<CheckpointLink>,
) -> Result<bool> {
    let (positions, stopped) = run_input(chain, input, metrics, link.clone()).await?;
    chain.finish().await?;
    if let Some(link) = link {
        let _ = link.acks.send(Ack::Finished {
            node: link.node,
            subtask: link.subtask,
            positions,
            staged: std::mem::take(&mut chain.staged),
            stopped,
            counts: chain.counts,
        });
    }
    Ok(stopped)
}

/// Runs the subtask's input to its end; a source returns where its splits
/// ended, and whether it was stopped before their end.
async fn run_input(
    chain: &mut Chain,
    input: Input,
    metrics: &JobMetrics,
    link: Option<CheckpointLink>,
) -> Result<(Vec<protocol::SplitPosition>, bool)> {
    match input {
        Input::Source {
            splits,
            reading,
            compute,
            watermark,
            stop,
            restored,
            pace,
            gate,
        } => {
            // Times known before reading bound the watermark only if the
            // gate would let their rows in.
            let now = chrono::Utc::now().timestamp_millis();
            let trusted = |time| EventTimeGate::trusted(gate.as_deref(), time, now);
            let mut watermarks =
                SplitWatermarks::new(splits.iter().map(|s| trusted(s.min_event_time())));
            for (i, split) in splits.iter().enumerate() {
                if let Some(w) = first_row_bound(split.as_ref(), watermark.as_ref(), trusted) {
                    watermarks.raise_pending(i, w);
                }
                if let Some(w) = restored.get(&split.key()).and_then(|p| p.watermark) {
                    watermarks.raise_pending(i, w);
                }
            }
            // A restored source starts where event time was, before any
            // row: operators chained to it judge lateness as they did.
            if !restored.is_empty()
                && let Some(w) = watermarks.advance()
            {
                chain.push(Message::Watermark(w))?;
            }
            let positions = splits
                .iter()
                .map(|s| {
                    restored
                        .get(&s.key())
                        .map(|p| SplitPosition(p.position.clone()))
                })
                .collect();
            // Barriers go out for checkpoints after the one the coordinator
            // starts from.
            let injected = link.as_ref().map_or(0, |l| l.start);
            let mut reader = SplitReader {
                restored,
                watermarks,
                // Splits not reopened yet keep their restored positions in
                // the next checkpoints: their rows so far are in its state.
                positions,
                keys: splits.iter().map(|s| s.key()).collect(),
                names: splits.iter().map(|s| s.describe()).collect(),
                gate,
                link,
                injected,
                compute,
                watermark,
                metrics,
            };
            let finished = match reading {
                Reading::InOrder => reader.in_order(chain, splits, pace, &stop).await?,
                Reading::Concurrent { idle_timeout } => {
                    reader
                        .concurrently(chain, splits, idle_timeout, &stop)
                        .await?
                }
            };
            // A stopped source sends no final watermark: what has not fired
            // stays unfired.
            if finished && let Some(w) = reader.watermarks.advance() {
                chain.push(Message::Watermark(w))?;
            }
            chain.push(Message::End)?;
            chain.flush().await?;
            Ok((reader.positions(), !finished))
        }
        Input::Channels(receivers) => merge_channels(chain, receivers, link.as_ref())
            .await
            .map(|()| (Vec::new(), false)),
    }
}

/// Keeps the subtasks of a source stage that read splits in order within
/// about a split of each other: a subtask opens its `k`-th split only once
/// every other has opened its `k-1`-th (or has none left).
///
/// Splits are dealt round robin in event-time order, so without this a
/// subtask that reads faster runs ahead in event time, and everything
/// downstream keeps the windows between the slowest and the fastest open:
/// state that grows with the input, not with the keys and windows of the
/// job. Flink's file source gets the same effect by handing splits out as
/// readers ask; dealing them up front keeps each split's checkpointed
/// position with one subtask, and the wait is at most about a split.
pub struct SplitPace {
    /// How many splits each subtask has opened; `usize::MAX` once it has
    /// no more to open (finished, stopped or failed).
    opened: Arc<watch::Sender<Vec<usize>>>,
    changes: watch::Receiver<Vec<usize>>,
    subtask: usize,
}

impl SplitPace {
    /// One pace for each of a stage's `parallelism` subtasks.
    pub fn for_stage(parallelism: usize) -> Vec<Self> {
        let opened = Arc::new(watch::Sender::new(vec![0; parallelism]));
        (0..parallelism)
            .map(|subtask| Self {
                changes: opened.subscribe(),
                opened: Arc::clone(&opened),
                subtask,
            })
            .collect()
    }

    /// Waits until the subtask may open its split `k`.
    async fn turn(&mut self, k: usize) {
        let me = self.subtask;
        let ready =
            |opened: &Vec<usize>| opened.iter().enumerate().all(|(t, &n)| t == me || n >= k);
        if !ready(&self.changes.borrow()) {
            tracing::debug!(
                subtask = me,
                split = k,
                "waiting for the other source subtasks to catch up"
            );
        }
        // The sender lives as long as this pace: waiting cannot fail.
        let _ = self.changes.wait_for(ready).await;
    }

    /// Records that the subtask opened its split `k`.
    fn opened(&self, k: usize) {
        self.opened
            .send_modify(|opened| opened[self.subtask] = opened[self.subtask].max(k + 1));
    }
}

impl Drop for SplitPace {
    fn drop(&mut self) {
        self.opened
            .send_modify(|opened| opened[self.subtask] = usize::MAX);
    }
}

/// What a source subtask keeps while it reads its splits.
struct SplitReader<'a> {
    watermarks: SplitWatermarks,
    /// Where each split has got to (what a checkpoint keeps), and its name.
    positions: Vec<Option<SplitPosition>>,
    keys: Vec<String>,
    /// Each split as messages name it.
    names: Vec<String>,
    gate: Option<Arc<EventTimeGate>>,
    /// Where a restored checkpoint says splits had got to, by name.
    restored: BTreeMap<String, protocol::SplitPosition>,
    link: Option<CheckpointLink>,
    /// The newest barrier this source has sent.
    injected: CheckpointId,
    compute: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
    /// The table's watermark expression.
    watermark: Option<RowtimeWatermark>,
    metrics: &'a JobMetrics,
}

impl SplitReader<'_> {
    /// Reads the splits one after another; returns false if stopped first.
    async fn in_order(
        &mut self,
        chain: &mut Chain,
        splits: Vec<Arc<dyn Split>>,
        mut pace: Option<SplitPace>,
        stop: &StopSignal,
    ) -> Result<bool> {
        for (i, split) in splits.into_iter().enumerate() {
            if let Some(pace) = pace.as_mut() {
                loop {
                    tokio::select! {
                        biased;
                        () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                        id = next_trigger(self.link.as_mut()) => {
                            self.inject_barriers(chain, id).await?;
                        }
                        () = pace.turn(i) => break,
                    }
                }
                pace.opened(i);
            }
            let mut batches = self.open(i, &split);
            loop {
                let batch = tokio::select! {
                    biased;
                    () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                    id = next_trigger(self.link.as_mut()) => {
                        self.inject_barriers(chain, id).await?;
                        continue;
                    }
                    batch = batches.next() => batch,
                };
                match batch {
                    Some(item) => {
                        let (batch, position) = item?;
                        let before = self.positions[i].replace(position);
                        self.push(chain, i, &split, before, batch).await?;
                    }
                    None => break,
                }
            }
            self.finish_split(chain, i).await?;
        }
        Ok(true)
    }

    /// Reads all splits at once, each with its own watermark; returns false
    /// if stopped first.
    async fn concurrently(
        &mut self,
        chain: &mut Chain,
        splits: Vec<Arc<dyn Split>>,
        idle_timeout: Option<Duration>,
        stop: &StopSignal,
    ) -> Result<bool> {
        let mut last_seen = vec![Instant::now(); splits.len()];
        let streams: Vec<_> = splits
            .iter()
            .enumerate()
            .map(|(i, split)| self.open(i, split))
            .collect();
        // Each split's stream, ending with a `None` that says it finished.
        let mut merged = select_all(streams.into_iter().enumerate().map(|(i, stream)| {
            stream
                .map(move |batch| (i, Some(batch)))
                .chain(futures::stream::once(async move { (i, None) }))
                .boxed()
        }));
        let mut idle_sent = false;
        let mut ticks = idle_timeout.map(|timeout| {
            let mut ticks = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (timeout, ticks)
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some((_, ticks)) => ticks.tick().await,
                    None => std::future::pending().await,
                }
            };
            // The idle check comes before data, so a split with a backlog
            // cannot keep an empty one from being marked idle.
            tokio::select! {
                biased;
                () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                id = next_trigger(self.link.as_mut()) => self.inject_barriers(chain, id).await?,
                _ = tick => {
                    let Some((timeout, _)) = ticks.as_ref() else { continue };
                    for (i, seen) in last_seen.iter().enumerate() {
                        if seen.elapsed() >= *timeout && !self.watermarks.is_idle(i) {
                            tracing::debug!(split = i, "split idle; it no longer holds the watermark back");
                            self.watermarks.idle(i);
                        }
                    }
                    if let Some(w) = self.watermarks.advance() {
                        chain.push(Message::Watermark(w))?;
                    }
                    if self.watermarks.all_idle() && !idle_sent {
                        // Let downstream stop waiting for this subtask.
                        chain.push(Message::Idle)?;
                        idle_sent = true;
                    }
                    chain.flush().await?;
                }
                next = merged.next() => match next {
                    Some((i, Some(item))) => {
                        let (batch, position) = item?;
                        let before = self.positions[i].replace(position);
                        last_seen[i] = Instant::now();
                        self.watermarks.resume(i);
                        idle_sent = false;
                        self.push(chain, i, &splits[i], before, batch).await?;
                    }
                    Some((i, None)) => self.finish_split(chain, i).await?,
                    None => return Ok(true),
                },
            }
        }
    }

    /// Stops reading. With checkpoints, first sends the barrier of the
    /// last checkpoint, which the coordinator triggers when the job is
    /// stopped: it covers everything read, so a restart from it neither
    /// skips nor repeats a row.
    async fn stop(&mut self, chain: &mut Chain) -> Result<()> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let last = match link.triggers.wait_for(|t| t.last).await {
            Ok(trigger) => trigger.id,
            // No coordinator: no checkpoint to finish.
            Err(_) => return Ok(()),
        };
        self.inject_barriers(chain, last).await
    }

    /// Sends every barrier up to `id` not sent yet (a trigger may have
    /// been missed), then tells the coordinator where the splits are.
    async fn inject_barriers(&mut self, chain: &mut Chain, id: CheckpointId) -> Result<()> {
        while self.injected < id {
            self.injected += 1;
            chain.push(Message::Barrier(self.injected))?;
            chain.flush().await?;
            if let Some(link) = &self.link {
                link.acknowledge(chain, self.injected, self.positions())
                    .await?;
            }
        }
        Ok(())
    }

    /// Where the splits opened so far have got to, by split key.
    fn positions(&self) -> Vec<protocol::SplitPosition> {
        self.positions
            .iter()
            .zip(&self.keys)
            .enumerate()
            .filter_map(|(i, (position, split))| {
                position.as_ref().map(|p| protocol::SplitPosition {
                    split: split.clone(),
                    position: p.0.clone(),
                    watermark: Some(self.watermarks.split_watermark(i)),
                })
            })
            .collect()
    }

    /// Starts split `i`: at its restored position, if it has one (with its
    /// watermark), else at its beginning.
    fn open(
        &mut self,
        i: usize,
        split: &Arc<dyn Split>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        self.watermarks.start(i);
        match self.restored.get(&self.keys[i]) {
            Some(restored) => {
                let position = SplitPosition(restored.position.clone());
                self.positions[i] = Some(position.clone());
                Arc::clone(split).open_at(Some(position))
            }
            None => {
                self.positions[i] = Some(split.start_position());
                Arc::clone(split).open_at(None)
            }
        }
    }

    /// Sends on a batch of split `split` (`source`), read from position
    /// `before` on to the split's current one.
    async fn push(
        &mut self,
        chain: &mut Chain,
        split: usize,
        source: &Arc<dyn Split>,
        before: Option<SplitPosition>,
        batch: RecordBatch,
    ) -> Result<()> {
        JobMetrics::add(&self.metrics.rows_in, batch.num_rows() as u64);
        chain.counts.rows_in += batch.num_rows() as u64;
        let batch = match &self.compute {
            Some((exprs, schema)) => computed_columns(&batch, exprs, schema)?,
            None => batch,
        };
        match &self.watermark {
            Some(watermark) => {
                let times = watermark.times(&batch)?;
                let (batch, times) = match &self.gate {
                    Some(gate) => {
                        let rows = batch.num_rows();
                        let admitted = match gate.admit(
                            batch,
                            times,
                            &self.names[split],
                            chrono::Utc::now().timestamp_millis(),
                            self.metrics,
                        )? {
                            Ok(admitted) => admitted,
                            Err(refused) => {
                                let start = source.start_position();
                                let before = before.unwrap_or(start);
                                let after = self.positions[split]
                                    .clone()
                                    .unwrap_or_else(|| before.clone());
                                let at =
                                    source.locate_row(&before, &after, rows, refused.row).await;
                                return Err(gate.refusal(&refused, &at));
                            }
                        };
                        if let (Some((rows, reasons)), Some(out)) =
                            (admitted.refused, gate.dead_letters())
                        {
                            let n = rows.num_rows() as u64;
                            out.send(&self.names[split], rows, reasons).await?;
                            JobMetrics::add(&self.metrics.records_dead_lettered, n);
                        }
                        (admitted.batch, admitted.times)
                    }
                    None => (batch, times),
                };
                push_with_watermarks(chain, &mut self.watermarks, split, batch, &times, watermark)?
            }
            None => chain.push(Message::Data(batch))?,
        }
        if let Some(w) = self.watermarks.advance() {
            chain.push(Message::Watermark(w))?;
        }
        chain.flush().await
    }

    async fn finish_split(&mut self, chain: &mut Chain, split: usize) -> Result<()> {
        self.watermarks.finish(split);
        JobMetrics::add(&self.metrics.splits_done, 1);
        if let Some(w) = self.watermarks.advance() {
            chain.push(Message::Watermark(w))?;
            chain.flush().await?;
        }
        Ok(())
    }
}

/// The watermark a split without statistics holds its subtask at until it
/// is opened, when planning read its first row: what that row will propose,
/// and below the row itself (a row at the watermark is late).
fn first_row_bound(
    split: &dyn Split,
    watermark: Option<&RowtimeWatermark>,
    trusted: impl Fn(Option<Millis>) -> Option<Millis>,
) -> Option<Millis> {
    if trusted(split.min_event_time()).is_some() {
        return None;
    }
    let first = trusted(split.first_event_time())?;
    let proposed = watermark?.of_time(first)?;
    Some(proposed.min(first.saturating_sub(1)))
}

/// The next checkpoint the coordinator asks for; never, without one.
async fn next_trigger(link: Option<&mut CheckpointLink>) -> CheckpointId {
    match link {
        Some(link) => match link.triggers.changed().await {
            Ok(()) => link.triggers.borrow_and_update().id,
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Evaluates a table's columns, computed ones included, over what was read.
fn computed_columns(
    batch: &RecordBatch,
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .map(|e| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .exec_context(|| "computing the table's computed columns".to_string())?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .exec_context(|| "computing the table's computed columns".to_string())
}

/// Pushes a batch read from split `split`, with watermarks as if one were
/// emitted after every row.
///
/// A watermark is emitted after each batch. Should a row be at or behind
/// the watermark the rows before it in the same batch would have raised
/// (data out of order by more than the watermark allows), the batch is cut
/// there and that watermark emitted first, so the row meets the same
/// watermark whatever the batch size. Data within the watermark's bound is
/// never cut. As in Flink SQL, `WATERMARK FOR ts AS ts` declares strictly
/// ascending times: a row with the same time as an earlier one is behind it.
fn push_with_watermarks(
    chain: &mut Chain,
    watermarks: &mut SplitWatermarks,
    split: usize,
    batch: RecordBatch,
    times: &arrow::array::TimestampMillisecondArray,
    watermark: &RowtimeWatermark,
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let values = watermark.values(&batch, times)?;
    let mut running = watermarks.split_watermark(split);
    let mut start = 0;
    for row in 0..batch.num_rows() {
        // Cheap test first: only a row behind its split's running watermark
        // may need one emitted before it.
        if row > start && times.is_valid(row) && times.value(row) <= running && {
            let would_emit = watermarks.current_with(split, running);
            would_emit > watermarks.emitted() && times.value(row) <= would_emit
        } {
            chain.push(Message::Data(batch.slice(start, row - start)))?;
            watermarks.observe(split, running);
            if let Some(w) = watermarks.advance() {
                chain.push(Message::Watermark(w))?;
            }
            start = row;
        }
        if values.is_valid(row) {
            running = running.max(values.value(row));
        }
    }
    chain.push(Message::Data(batch.slice(start, batch.num_rows() - start)))?;
    watermarks.observe(split, running);
    Ok(())
}

/// Merges a subtask's input channels: data in arrival order, watermarks
/// as their minimum, barriers aligned (a channel whose barrier has arrived
/// is not read until every channel's has).
async fn merge_channels(
    chain: &mut Chain,
    receivers: Vec<(Port, Receiver)>,
    link: Option<&CheckpointLink>,
) -> Result<()> {
    let (ports, mut receivers): (Vec<Port>, Vec<Receiver>) = receivers.into_iter().unzip();
    // Channels still open per port: a port ends with its last channel.
    let mut open_per_port: BTreeMap<Port, usize> = BTreeMap::new();
    for port in &ports {
        *open_per_port.entry(*port).or_default() += 1;
    }
    let inputs = receivers.len();
    if inputs == 0 {
        chain.push(Message::Watermark(END_OF_TIME))?;
        chain.push(Message::End)?;
        return chain.flush().await;
    }
    let mut watermarks = InputWatermarks::new(inputs);
    let mut aligner = BarrierAligner::new(inputs);
    let mut closed = vec![false; inputs];
    let mut next = 0;
    let mut steps = Vec::new();
    loop {
        let received = std::future::poll_fn(|cx| {
            let mut open = false;
            for k in 0..inputs {
                let i = (next + k) % inputs;
                if closed[i] || aligner.is_blocked(i) {
                    open |= !closed[i];
                    continue;
                }
                open = true;
                if let std::task::Poll::Ready(message) = receivers[i].poll_recv(cx) {
                    // Start with the next channel next time: no input starves.
                    next = (i + 1) % inputs;
                    return std::task::Poll::Ready(Some((i, message)));
                }
            }
            if open {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(None)
            }
        })
        .await;
        let Some((i, Some(message))) = received else {
            return Err(SluiceError::Runtime(format!(
                "an upstream subtask {STOPPED}"
            )));
        };
        let mut port_ended = None;
        let arrival = match message {
            Message::Barrier(id) => Arrival::Barrier(id),
            Message::End => {
                closed[i] = true;
                let open = open_per_port.entry(ports[i]).or_default();
                *open = open.saturating_sub(1);
                if *open == 0 {
                    port_ended = Some(ports[i]);
                }
                Arrival::End
            }
            other => Arrival::Message((i, other)),
        };
        aligner.push(i, arrival, &mut steps)?;
        for step in steps.drain(..) {
            match step {
                Step::Message((i, message)) => match message {
                    Message::Data(batch) => {
                        watermarks.activate(i);
                        chain.push_on(ports[i], Message::Data(batch))?;
                    }
                    Message::Watermark(w) => {
                        if let Some(w) = watermarks.update(i, w) {
                            chain.push(Message::Watermark(w))?;
                        }
                    }
                    Message::Idle => {
                        if let Some(w) = watermarks.idle(i) {
                            chain.push(Message::Watermark(w))?;
                        }
                        if watermarks.all_idle() {
                            chain.push(Message::Idle)?;
                        }
                    }
                    Message::Barrier(_) | Message::End => {}
                },
                Step::Snapshot(id) => {
                    chain.push(Message::Barrier(id))?;
                    chain.flush().await?;
                    if let Some(link) = link {
                        link.acknowledge(chain, id, Vec::new()).await?;
                    }
                }
                // An input that ended keeps its last watermark (see InputWatermarks).
                Step::End => {
                    if let Some(port) = port_ended.take() {
                        chain.end_port(port)?;
                    }
                    chain.push(Message::End)?;
                    return chain.flush().await;
                }
            }
        }
        if let Some(port) = port_ended {
            chain.end_port(port)?;
        }
        chain.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// What a probe operator was told, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Heard {
        Rows(Port, usize),
        Watermark(Millis),
        PortEnd(Port),
        Close,
    }

    #[derive(Debug, Default)]
    struct Probe(Arc<std::sync::Mutex<Vec<Heard>>>);

    impl Probe {
        fn hear(&self, heard: Heard) {
            self.0.lock().expect("lock").push(heard);
        }
    }

    impl Operator for Probe {
        fn on_batch(&mut self, port: Port, batch: RecordBatch, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Rows(port, batch.num_rows()));
            Ok(())
        }

        fn on_watermark(&mut self, watermark: Millis, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Watermark(watermark));
            Ok(())
        }

        fn on_input_end(&mut self, port: Port, _out: &mut Output) -> Result<()> {
            self.hear(Heard::PortEnd(port));
            Ok(())
        }

        fn close(&mut self, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Close);
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct ProbeFactory(Arc<std::sync::Mutex<Vec<Heard>>>);

    impl crate::ops::OperatorFactory for ProbeFactory {
        fn name(&self) -> &str {
            "Probe"
        }

        fn describe(&self) -> String {
            String::new()
        }

        fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
            Ok(Box::new(Probe(Arc::clone(&self.0))))
        }
    }

    fn rows(n: i64) -> Message {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        Message::Data(
            RecordBatch::try_new(
                schema,
                vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..n))],
            )
            .expect("batch"),
        )
    }

    /// A two-input operator at a stage's root hears which port each batch
    /// came on, that a port ended once all of its channels did, and one
    /// watermark: the minimum over every channel of every port.
    #[tokio::test]
    async fn a_root_with_two_ports_hears_each_port_apart() {
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let graph = JobGraph {
            name: "ports".into(),
            mode: crate::sql::Mode::Stream,
            nodes: vec![crate::plan::Node {
                id: 0,
                kind: NodeKind::Operator(Arc::new(ProbeFactory(Arc::clone(&heard)))),
                parallelism: 1,
                schema: Arc::new(arrow::datatypes::Schema::empty()),
            }],
            edges: Vec::new(),
        };
        let stage = graph.stages().remove(0);
        let context = OperatorContext {
            subtask: 0,
            parallelism: 1,
            parameters: Arc::default(),
            metrics: Arc::default(),
        };
        let mut chain = Chain::build(&graph, &stage, &context, &mut BTreeMap::new(), None)
            .await
            .expect("chain");
        let (left, left_rx) = super::super::channel::channel(1 << 20);
        let (right_a, right_a_rx) = super::super::channel::channel(1 << 20);
        let (right_b, right_b_rx) = super::super::channel::channel(1 << 20);
        for (sender, messages) in [
            (&left, vec![rows(3), Message::Watermark(50), Message::End]),
            (
                &right_a,
                vec![rows(2), Message::Watermark(10), Message::End],
            ),
            (&right_b, vec![Message::Watermark(40), rows(1)]),
        ] {
            for message in messages {
                sender.send(message).await.expect("send");
            }
        }
        let merged = tokio::spawn(async move {
            merge_channels(
                &mut chain,
                vec![(0, left_rx), (1, right_a_rx), (1, right_b_rx)],
                None,
            )
            .await
        });
        // Port 1 is still open on its second channel: wait for what came.
        let wait_for = |n: usize| {
            let heard = Arc::clone(&heard);
            async move {
                for _ in 0..500 {
                    if heard.lock().expect("lock").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        wait_for(5).await;
        let so_far = heard.lock().expect("lock").clone();
        let mut data: Vec<&Heard> = so_far
            .iter()
            .filter(|h| matches!(h, Heard::Rows(..)))
            .collect();
        data.sort_by_key(|h| format!("{h:?}"));
        assert_eq!(
            data,
            vec![&Heard::Rows(0, 3), &Heard::Rows(1, 1), &Heard::Rows(1, 2)]
        );
        assert!(so_far.contains(&Heard::PortEnd(0)), "{so_far:?}");
        assert!(
            !so_far.contains(&Heard::PortEnd(1)),
            "port 1 has a channel open: {so_far:?}"
        );
        assert!(
            so_far
                .iter()
                .all(|h| !matches!(h, Heard::Watermark(w) if *w > 10)),
            "the watermark is the least of all channels: {so_far:?}"
        );
        right_b.send(Message::Watermark(60)).await.expect("send");
        right_b.send(Message::End).await.expect("send");
        merged.await.expect("join").expect("merge");
        let all = heard.lock().expect("lock").clone();
        let tail = &all[all.len() - 2..];
        assert_eq!(tail, &[Heard::PortEnd(1), Heard::Close], "{all:?}");
        assert!(all.contains(&Heard::Watermark(10)), "{all:?}");
    }

    /// A subtask opens its split `k` only once every other has opened its
    /// split `k - 1`, and one that has gone holds nobody back.
    #[tokio::test]
    async fn paced_subtasks_open_splits_in_step() {
        let mut paces = SplitPace::for_stage(3);
        let mut third = paces.pop().expect("three");
        let mut second = paces.pop().expect("three");
        let mut first = paces.pop().expect("three");
        first
            .turn(0)
            .now_or_never()
            .expect("the first split is free");
        first.opened(0);
        assert!(
            first.turn(1).now_or_never().is_none(),
            "the others have not started"
        );
        second.turn(0).now_or_never().expect("free");
        second.opened(0);
        assert!(
            first.turn(1).now_or_never().is_none(),
            "the third has not started"
        );
        third.turn(0).now_or_never().expect("free");
        third.opened(0);
        first
            .turn(1)
            .now_or_never()
            .expect("everyone has opened split 0");
        first.opened(1);
        assert!(
            first.turn(2).now_or_never().is_none(),
            "split 1 waits for the others"
        );
        // One waiting wakes when the last of the others catches up.
        let waiting = tokio::spawn(async move {
            first.turn(2).await;
            first
        });
        second
            .turn(1)
            .now_or_never()
            .expect("first is ahead; third opened 0");
        second.opened(1);
        drop(third);
        let first = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("joined");
        assert!(
            first.changes.borrow()[2] == usize::MAX,
            "a subtask gone holds nobody back"
        );
        assert!(
            second.turn(7).now_or_never().is_none(),
            "first has opened only 2"
        );
    }

    #[derive(Debug)]
    struct Planned {
        min: Option<Millis>,
        first: Option<Millis>,
    }

    impl Split for Planned {
        fn describe(&self) -> String {
            "planned".into()
        }
        fn min_event_time(&self) -> Option<Millis> {
            self.min
        }
        fn first_event_time(&self) -> Option<Millis> {
            self.first
        }
        fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
            futures::stream::empty().boxed()
        }
    }

    /// A split known only by its first row holds the watermark where that
    /// row will put it, and below the row; statistics, when there, decide.
    #[test]
    fn first_rows_bound_the_watermark_where_they_will_put_it() {
        use arrow::datatypes::{DataType, Field, IntervalDayTime, Schema, TimeUnit};
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
        let schema = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]);
        let ts: Arc<dyn PhysicalExpr> = Arc::new(Column::new("ts", 0));
        let minus = |ms: i32| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(
                Arc::clone(&ts),
                Operator::Minus,
                Arc::new(Literal::new(ScalarValue::IntervalDayTime(Some(
                    IntervalDayTime::new(0, ms),
                )))),
            ))
        };
        let plus: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::clone(&ts),
            Operator::Plus,
            Arc::new(Literal::new(ScalarValue::IntervalDayTime(Some(
                IntervalDayTime::new(0, 5),
            )))),
        ));
        let bound = |min, first, expr: Option<Arc<dyn PhysicalExpr>>| {
            let watermark = expr.map(|e| RowtimeWatermark::new(e, 0, &schema));
            first_row_bound(&Planned { min, first }, watermark.as_ref(), |t| t)
        };
        assert_eq!(bound(None, Some(10_000), Some(minus(2_000))), Some(8_000));
        assert_eq!(
            bound(None, Some(10_000), Some(Arc::clone(&ts))),
            Some(9_999)
        );
        assert_eq!(bound(Some(9_000), Some(10_000), Some(minus(2_000))), None);
        assert_eq!(bound(None, None, Some(minus(2_000))), None);
        assert_eq!(bound(None, Some(10_000), None), None);
        assert_eq!(
            bound(None, Some(10_000), Some(plus)),
            None,
            "not a fixed delay"
        );
    }
}
