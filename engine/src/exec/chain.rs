//! A subtask's chain of operators, from its entry to its exits.
//!
//! Messages go through the chain synchronously (operators are CPU-only):
//! the entry feeds the root's port, each node's output feeds the nodes
//! chained to it, and what reaches an exit (an exchange or a sink) waits in
//! a buffer until [`Chain::flush`] sends or writes it, which is where a
//! subtask waits. At a barrier the chain snapshots every operator and its
//! sinks stage what they wrote.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use super::channel::Sender;
use super::checkpoint_link::CheckpointLink;
use super::exchange::key_groups_of;
use super::exit::Exit;
use super::task::LATE_DATA;
use crate::checkpoint::protocol::{self, StateFile};
use crate::checkpoint::{CheckpointId, Restored};
use crate::connector::SinkWriter;
use crate::error::{Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::{Message, Operator, OperatorContext, Output, Port, RestoredState};
use crate::plan::{JobGraph, NodeKind, Stage};
use crate::time::BEFORE_TIME;

#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Node(usize),
    Exit(usize),
}

pub(super) struct ChainNode {
    /// The operator's node in the job graph: what its state is filed under.
    id: usize,
    /// Its name, for messages.
    name: String,
    op: Box<dyn Operator>,
    outputs: Vec<Target>,
}

pub struct Chain {
    pub(super) nodes: Vec<ChainNode>,
    pub(super) entry: Vec<Target>,
    pub(super) exits: Vec<Exit>,
    pub(super) pending: Vec<Vec<Message>>,
    /// Late rows set aside by operators, and where they go.
    pub(super) late: Vec<RecordBatch>,
    pub(super) late_writer: Option<Box<dyn SinkWriter>>,
    /// What the chain's sinks staged at the last barrier.
    pub(super) staged: Vec<protocol::StagedOutput>,
    /// Rows the chain read, wrote and found late since the run started:
    /// what its checkpoint acknowledgements report.
    pub(super) counts: protocol::RowCounts,
    pub(super) context: OperatorContext,
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
    pub(super) async fn snapshot(
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

    pub(super) fn push(&mut self, message: Message) -> Result<()> {
        self.push_on(0, message)
    }

    /// Feeds `message` to the chain's entry as input `port` of its root.
    pub(super) fn push_on(&mut self, port: Port, message: Message) -> Result<()> {
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
    pub(super) fn end_port(&mut self, port: Port) -> Result<()> {
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
    pub(super) fn fan_out(&mut self, targets: &[Target], message: Message) -> Result<()> {
        if let Some((last, rest)) = targets.split_last() {
            for target in rest {
                self.deliver(*target, 0, message.clone())?;
            }
            self.deliver(*last, 0, message)?;
        }
        Ok(())
    }

    pub(super) fn deliver(&mut self, target: Target, port: Port, message: Message) -> Result<()> {
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
    pub(super) fn emit(&mut self, n: usize, mut out: Output, end: bool) -> Result<()> {
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
    pub(super) async fn flush(&mut self) -> Result<()> {
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
    pub(super) async fn finish(&mut self) -> Result<()> {
        self.flush().await?;
        match self.late_writer.take() {
            Some(writer) => writer.finish().await,
            None => Ok(()),
        }
    }
}
