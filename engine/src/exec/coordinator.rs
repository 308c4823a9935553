//! The checkpoint coordinator: it triggers a checkpoint every interval,
//! collects every subtask's acknowledgement, writes the manifest and
//! commits what the checkpoint staged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{StopSignal, task};
use crate::checkpoint::protocol::commits_of;
use crate::checkpoint::protocol::{
    Manifest, PendingCheckpoint, PlanIdentity, RowCounts, SubtaskSnapshot, to_discard,
};
use crate::checkpoint::{CheckpointId, CheckpointStore};
use crate::error::Result;
use crate::metrics::JobMetrics;

/// Triggers a checkpoint every `interval` and completes each once every
/// subtask has acknowledged it (a finished subtask counts as having done
/// so). Returns the completed checkpoints when every subtask has ended.
pub(super) struct Coordinator {
    pub(super) job: String,
    pub(super) interval: Duration,
    /// Subtasks per stage root that must acknowledge each checkpoint.
    pub(super) expected: BTreeMap<usize, usize>,
    /// Source stages, and their subtasks in all: once all have ended, no
    /// barrier flows any more.
    pub(super) source_roots: std::collections::BTreeSet<usize>,
    pub(super) sources: usize,
    /// The job's sinks by table name, to commit what checkpoints staged.
    pub(super) sinks: BTreeMap<String, Arc<dyn crate::connector::Sink>>,
    /// The graph, recorded in every manifest, and its nodes' stable ids.
    pub(super) plan: PlanIdentity,
    pub(super) operators: BTreeMap<usize, crate::checkpoint::protocol::OperatorId>,
    /// The counts of the checkpoint the run restored: manifests count on.
    pub(super) base: RowCounts,
    pub(super) store: Option<Arc<dyn CheckpointStore>>,
    pub(super) retained: usize,
    /// When the job is stopped, one last checkpoint is taken.
    pub(super) stop: StopSignal,
    /// The checkpoints already in the store.
    pub(super) known: Option<Known>,
    pub(super) metrics: Arc<JobMetrics>,
}

/// The checkpoints in the store: complete ones, and all (incomplete ones
/// are left by crashes, or in progress).
#[derive(Debug, Default)]
pub(super) struct Known {
    pub(super) complete: Vec<CheckpointId>,
    pub(super) all: Vec<CheckpointId>,
    /// Staged output whose checkpoint failed or whose commit did: the next
    /// checkpoint carries it.
    pub(super) uncommitted: Vec<crate::checkpoint::protocol::StagedOutput>,
}

impl Known {
    pub(super) async fn list(store: &dyn CheckpointStore) -> Result<Self> {
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

    pub(super) async fn run(
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
pub(super) struct Coordinated {
    /// The checkpoints completed while the job ran, oldest first.
    pub(super) completed: Vec<Manifest>,
    /// Whether the checkpoint of the job's end completed, if one was taken.
    pub(super) end: Option<bool>,
    /// Whether the last checkpoint of a stopped job completed, if it was
    /// stopped while its sources ran.
    pub(super) last: Option<bool>,
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
