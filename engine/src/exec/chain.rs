//! A subtask's chain of operators, from its entry to its exits.
//!
//! Messages go through the chain synchronously (operators are CPU-only):
//! the entry feeds the root's port, each node's output feeds the nodes
//! chained to it, and what reaches an exit (an exchange or a sink) waits in
//! a buffer until [`Chain::flush`] sends or writes it, which is where a
//! subtask waits. Each operator's timers are kept here: event-time ones fire
//! as its watermark reaches them, processing-time ones when the subtask's
//! loop finds them due ([`Chain::next_processing_timer`]). At a barrier the
//! chain snapshots every operator, a file per state table and its timers,
//! and its sinks stage what they wrote.

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
use crate::ops::timer::{TIMERS_TABLE, TimeDomain, TimerService};
use crate::ops::{Message, Operator, OperatorContext, Output, Port, RestoredState, StateTable};
use crate::plan::{JobGraph, NodeKind, Stage};
use crate::time::{BEFORE_TIME, Millis};

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
    /// The timers the operator set.
    timers: TimerService,
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
                        timers: TimerService::default(),
                    });
                }
                NodeKind::Sink(sink) => {
                    target_of.insert(id, Target::Exit(exits.len()));
                    exits.push(Exit::Sink {
                        table: sink.table.name.clone(),
                        // The table's, with the row kinds of an updating input.
                        schema: Arc::clone(&graph.node(id).schema),
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
        // Every subtask of every stage writes late rows of its own: the
        // stages before this one take the first writer numbers.
        let late_writer = match late_data {
            Some(sink) => {
                let before: usize = graph
                    .stages()
                    .iter()
                    .filter(|s| s.id < stage.id)
                    .map(|s| s.parallelism)
                    .sum();
                let writers: usize = graph.stages().iter().map(|s| s.parallelism).sum();
                Some(sink.open_writer(before + context.subtask, writers).await?)
            }
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
            let mut tables: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
            for file in &files {
                let state = restored.state.get(&file.path).ok_or_else(|| {
                    SluiceError::Runtime(format!(
                        "checkpoint {} lists state file {} but it was not read",
                        restored.manifest.id, file.path
                    ))
                })?;
                tables
                    .entry(file.table.clone())
                    .or_default()
                    .extend(state.iter().cloned());
            }
            if let Some(timers) = tables.remove(TIMERS_TABLE) {
                // Keyed timers by key group; the others all here, as the
                // state they go with.
                let keyed = files.iter().any(|f| f.table == TIMERS_TABLE && f.keyed);
                let groups = if keyed {
                    key_groups.clone()
                } else {
                    0..super::exchange::MAX_PARALLELISM
                };
                node.timers.restore(&timers, &groups)?;
            }
            if tables.is_empty() {
                continue;
            }
            let watermark = files
                .iter()
                .map(|f| f.watermark)
                .min()
                .unwrap_or(BEFORE_TIME);
            node.op
                .restore(RestoredState {
                    tables,
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
            let state = node.op.snapshot()?;
            let timers = node.timers.snapshot()?;
            let Some(store) = &link.store else {
                continue;
            };
            let (mut tables, watermark) = match state {
                Some(state) => (state.tables, state.watermark),
                None => (Vec::new(), BEFORE_TIME),
            };
            if let Some(timers) = timers {
                // Split by key group like the operator's keyed state, or
                // whole to one subtask like its other state.
                let keyed = tables.is_empty() || tables.iter().any(|t| t.keyed);
                tables.push(StateTable {
                    name: TIMERS_TABLE.to_string(),
                    batches: vec![timers],
                    keyed,
                });
            }
            for table in tables {
                let bytes = crate::checkpoint::state::encode(
                    Arc::new(arrow::datatypes::Schema::empty()),
                    &table.batches,
                )?;
                let path = format!(
                    "op-{}-{}-{}.arrow",
                    node.id, table.name, self.context.subtask
                );
                let size = bytes.len() as u64;
                store.write_state(id, &path, bytes).await?;
                files.push(StateFile {
                    path,
                    operator: node.id,
                    table: table.name,
                    key_groups: key_groups.clone(),
                    keyed: table.keyed,
                    watermark,
                    bytes: size,
                });
            }
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
            Message::Watermark(w) => {
                // The timers the watermark reached fire first, in time
                // order, with those they set in turn.
                apply_timers(&mut node.timers, &mut out);
                while let Some(timer) = node.timers.pop_due(TimeDomain::EventTime, w) {
                    node.op.on_timer(&timer, &mut out)?;
                    apply_timers(&mut node.timers, &mut out);
                }
                node.op.on_watermark(w, &mut out)?;
            }
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

    /// Fires the processing-time timers due at `now` (milliseconds since
    /// the epoch), in time order; what they emit is passed on.
    pub(super) fn fire_processing_timers(&mut self, now: Millis) -> Result<()> {
        for n in 0..self.nodes.len() {
            let mut out = Output::default();
            let node = &mut self.nodes[n];
            while let Some(timer) = node.timers.pop_due(TimeDomain::ProcessingTime, now) {
                node.op.on_timer(&timer, &mut out)?;
                apply_timers(&mut node.timers, &mut out);
            }
            self.emit(n, out, false)?;
        }
        Ok(())
    }

    /// When the chain's earliest processing-time timer is due.
    pub(super) fn next_processing_timer(&self) -> Option<Millis> {
        self.nodes
            .iter()
            .filter_map(|n| n.timers.next_processing())
            .min()
    }

    /// Passes on what node `n` put in `out`, and the end after it.
    pub(super) fn emit(&mut self, n: usize, mut out: Output, end: bool) -> Result<()> {
        apply_timers(&mut self.nodes[n].timers, &mut out);
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

/// Waits until the wall clock reaches `deadline` (milliseconds since the
/// epoch), or forever when there is none: a subtask's loop waits on it
/// beside its input, then fires [`Chain::fire_processing_timers`].
pub(super) async fn processing_timer_due(deadline: Option<Millis>) {
    let Some(at) = deadline else {
        return std::future::pending().await;
    };
    let wait = at.saturating_sub(wall_clock());
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait.unsigned_abs())).await;
    }
}

/// The wall clock, in milliseconds since the epoch: processing time.
pub(super) fn wall_clock() -> Millis {
    crate::time::wall_clock()
}

/// Takes in the timer changes an operator put in `out`.
fn apply_timers(timers: &mut TimerService, out: &mut Output) {
    for change in out.drain_timers() {
        timers.apply(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use futures::future::BoxFuture;

    use crate::checkpoint::CheckpointStore;
    use crate::checkpoint::protocol::{Listing, Manifest, SubtaskSnapshot};
    use crate::ops::OperatorFactory;
    use crate::ops::timer::Timer;

    /// What the probe heard, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Heard {
        Fired(TimeDomain, Millis),
        Watermark(Millis),
    }

    type Log = Arc<Mutex<Vec<Heard>>>;

    /// Sets an event-time timer at each row's value (its key group the
    /// value), and a processing-time one for a row of 100 (due at once) or
    /// 101 (due in 50 ms).
    #[derive(Debug)]
    struct TimerProbe(Log);

    impl Operator for TimerProbe {
        fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
            for v in batch.column(0).as_primitive::<Int64Type>().values() {
                let (domain, time) = match v {
                    100 => (TimeDomain::ProcessingTime, wall_clock() - 1),
                    101 => (TimeDomain::ProcessingTime, wall_clock() + 50),
                    v => (TimeDomain::EventTime, *v),
                };
                out.set_timer(Timer {
                    domain,
                    time,
                    key: Arc::from(v.to_le_bytes().as_slice()),
                    key_group: usize::try_from(*v).unwrap_or(0) % 128,
                });
            }
            Ok(())
        }

        fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
            self.0
                .lock()
                .expect("log")
                .push(Heard::Watermark(watermark));
            out.watermark(watermark);
            Ok(())
        }

        fn on_timer(&mut self, timer: &Timer, _out: &mut Output) -> Result<()> {
            let time = match timer.domain {
                TimeDomain::EventTime => timer.time,
                TimeDomain::ProcessingTime => 0,
            };
            self.0
                .lock()
                .expect("log")
                .push(Heard::Fired(timer.domain, time));
            Ok(())
        }
    }

    #[derive(Debug)]
    struct TimerProbeFactory(Log);

    impl OperatorFactory for TimerProbeFactory {
        fn name(&self) -> &str {
            "TimerProbe"
        }

        fn describe(&self) -> String {
            String::new()
        }

        fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
            Ok(Box::new(TimerProbe(Arc::clone(&self.0))))
        }
    }

    /// State files in memory.
    #[derive(Debug, Default)]
    struct MemoryStore(Mutex<BTreeMap<String, Vec<u8>>>);

    impl CheckpointStore for MemoryStore {
        fn list(&self) -> BoxFuture<'_, Result<Listing>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn write_state<'a>(
            &'a self,
            _id: CheckpointId,
            name: &'a str,
            bytes: Vec<u8>,
        ) -> BoxFuture<'a, Result<()>> {
            self.0
                .lock()
                .expect("files")
                .insert(name.to_string(), bytes);
            Box::pin(async { Ok(()) })
        }

        fn read_state<'a>(
            &'a self,
            _id: CheckpointId,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Vec<u8>>> {
            let bytes = self.0.lock().expect("files").get(name).cloned();
            Box::pin(async move {
                bytes.ok_or_else(|| SluiceError::Runtime(format!("no state file {name}")))
            })
        }

        fn write_manifest<'a>(&'a self, _manifest: &'a Manifest) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn discard<'a>(&'a self, _ids: &'a [CheckpointId]) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    async fn probe_chain(log: &Log, subtask: usize, parallelism: usize) -> Chain {
        let graph = JobGraph {
            name: "timers".into(),
            mode: crate::sql::Mode::Stream,
            nodes: vec![crate::plan::Node {
                id: 0,
                kind: NodeKind::Operator(Arc::new(TimerProbeFactory(Arc::clone(log)))),
                parallelism,
                schema: Arc::new(Schema::empty()),
            }],
            edges: Vec::new(),
            identity_graph: None,
        };
        let stage = graph.stages().remove(0);
        let context = OperatorContext {
            subtask,
            parallelism,
            parameters: Arc::default(),
            metrics: Arc::default(),
        };
        Chain::build(&graph, &stage, &context, &mut BTreeMap::new(), None)
            .await
            .expect("chain")
    }

    fn rows(values: &[i64]) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        Message::Data(
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))])
                .expect("batch"),
        )
    }

    fn heard(log: &Log) -> Vec<Heard> {
        std::mem::take(&mut *log.lock().expect("log"))
    }

    /// Event timers fire in time order when the watermark reaches them,
    /// before the watermark is passed on; processing timers when due.
    #[tokio::test]
    async fn timers_fire_in_order_before_the_watermark_that_reached_them() {
        let log = Log::default();
        let mut chain = probe_chain(&log, 0, 1).await;
        chain.push(rows(&[5, 1, 3, 100])).expect("rows");
        chain.push(Message::Watermark(3)).expect("watermark");
        assert_eq!(
            heard(&log),
            vec![
                Heard::Fired(TimeDomain::EventTime, 1),
                Heard::Fired(TimeDomain::EventTime, 3),
                Heard::Watermark(3),
            ]
        );
        chain.push(Message::Watermark(3)).expect("watermark");
        assert_eq!(heard(&log), vec![Heard::Watermark(3)], "each fires once");
        assert!(
            chain
                .next_processing_timer()
                .is_some_and(|t| t <= wall_clock())
        );
        chain.fire_processing_timers(wall_clock()).expect("fire");
        assert_eq!(
            heard(&log),
            vec![Heard::Fired(TimeDomain::ProcessingTime, 0)]
        );
        assert_eq!(chain.next_processing_timer(), None);
        chain.push(Message::Watermark(10)).expect("watermark");
        assert_eq!(
            heard(&log),
            vec![Heard::Fired(TimeDomain::EventTime, 5), Heard::Watermark(10)]
        );
    }

    /// A checkpoint keeps the timers not yet fired, as a state table of
    /// their own; a restore at another parallelism gives each subtask the
    /// timers of its key groups.
    #[tokio::test]
    async fn timers_are_checkpointed_and_split_by_key_group_on_restore() {
        let log = Log::default();
        let mut chain = probe_chain(&log, 0, 1).await;
        // Key groups 10 and 20 (subtask 0 of 2), 70 and 90 (subtask 1).
        chain.push(rows(&[10, 20, 70, 90])).expect("rows");
        let store = Arc::new(MemoryStore::default());
        let (acks, _acks_rx) = tokio::sync::mpsc::unbounded_channel();
        let (_triggers_tx, triggers) = tokio::sync::watch::channel(Default::default());
        let link = CheckpointLink {
            node: 0,
            subtask: 0,
            start: 0,
            triggers,
            acks,
            store: Some(Arc::clone(&store) as Arc<dyn CheckpointStore>),
        };
        let files = chain.snapshot(1, &link).await.expect("snapshot");
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].table, TIMERS_TABLE);
        let mut state = BTreeMap::new();
        for file in &files {
            let bytes = store.0.lock().expect("files")[&file.path].clone();
            state.insert(
                file.path.clone(),
                crate::checkpoint::state::decode(bytes, &file.path).expect("decode"),
            );
        }
        let restored = Restored {
            manifest: Manifest {
                version: 1,
                job: "timers".into(),
                id: 1,
                parallelism: BTreeMap::from([(0, 1)]),
                taken_at_millis: 0,
                duration_millis: 0,
                subtasks: vec![SubtaskSnapshot {
                    node: 0,
                    subtask: 0,
                    state: files,
                    positions: Vec::new(),
                    staged: Vec::new(),
                    counts: Default::default(),
                }],
                carried: Vec::new(),
                end: false,
                plan: None,
                operators: Default::default(),
                counts: Default::default(),
            },
            state,
        };
        for (subtask, expected) in [(0, [10, 20]), (1, [70, 90])] {
            let mut restored_chain = probe_chain(&log, subtask, 2).await;
            restored_chain.restore(&restored).expect("restore");
            restored_chain
                .push(Message::Watermark(1_000))
                .expect("watermark");
            assert_eq!(
                heard(&log),
                vec![
                    Heard::Fired(TimeDomain::EventTime, expected[0]),
                    Heard::Fired(TimeDomain::EventTime, expected[1]),
                    Heard::Watermark(1_000),
                ],
                "subtask {subtask}"
            );
        }
    }

    /// A subtask waiting for input fires a processing-time timer when it
    /// is due, with no message to wake it.
    #[tokio::test]
    async fn a_waiting_subtask_fires_its_processing_timers() {
        let log = Log::default();
        let mut chain = probe_chain(&log, 0, 1).await;
        let (tx, rx) = super::super::channel::channel(1 << 20);
        let merged = tokio::spawn(async move {
            super::super::input_merge::merge(&mut chain, vec![(0, rx)], None, None).await
        });
        tx.send(rows(&[101])).await.expect("send");
        let mut fired = false;
        for _ in 0..250 {
            tokio::time::sleep(std::time::Duration::from_millis(4)).await;
            if heard(&log).contains(&Heard::Fired(TimeDomain::ProcessingTime, 0)) {
                fired = true;
                break;
            }
        }
        assert!(fired, "the timer fired while the channel was quiet");
        tx.send(Message::End).await.expect("send");
        merged.await.expect("join").expect("merge");
    }
}
