//! A subtask's line to the checkpoint coordinator: the checkpoints it is
//! asked for, and what it tells back (its snapshots, and that it ended).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::chain::Chain;

use crate::checkpoint::protocol::{self, SubtaskSnapshot};
use crate::checkpoint::{CheckpointId, CheckpointStore};
use crate::error::Result;

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
    pub(super) async fn acknowledge(
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
