//! The checkpoint protocol's decisions over plain types: when a checkpoint
//! is complete, which one to restore, which to delete, what to commit, and
//! which state files a subtask restores at a new parallelism.
//!
//! A checkpoint `n` of job `j` lives under `<dir>/<j>/chk-<n>/`: the state
//! files of every operator subtask, then `_manifest.json`, written last. A
//! checkpoint exists only once its manifest does.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::CheckpointId;
use crate::error::{Result, SluiceError};

/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// The file name that marks a checkpoint complete.
pub const MANIFEST: &str = "_manifest.json";

/// One state file of an operator subtask (Arrow IPC): the key groups it
/// covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    /// Relative to the checkpoint's directory.
    pub path: String,
    /// The operator's node in the job graph.
    pub operator: usize,
    /// The operator's state table it holds (empty in checkpoints taken
    /// before tables had names: the operator's only one).
    #[serde(default)]
    pub table: String,
    /// The key groups of the subtask that wrote it.
    pub key_groups: Range<usize>,
    /// Whether its rows are keyed: split by key group on restore. Other
    /// state goes whole to the subtask that owns its first key group.
    pub keyed: bool,
    /// The operator's watermark when the state was taken.
    pub watermark: i64,
    pub bytes: u64,
}

/// Where a source split had got to: opaque to the protocol, the
/// connector's own (a Kafka offset, a file's row position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPosition {
    pub split: String,
    pub position: String,
    /// The split's own watermark then, so a restored source does not move
    /// event time back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
}

/// Output a sink staged during the checkpoint's epoch, to be made visible
/// once the checkpoint is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedOutput {
    pub sink: String,
    pub staged: String,
    pub target: String,
}

/// What one subtask of one node put into a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    pub node: usize,
    pub subtask: usize,
    pub state: Vec<StateFile>,
    pub positions: Vec<SplitPosition>,
    pub staged: Vec<StagedOutput>,
    /// The rows the subtask had read, written and found late before the
    /// barrier, since its run started.
    #[serde(default)]
    pub counts: RowCounts,
}

/// Rows counted by a job: read by its sources, written by its sinks, and
/// behind the watermark. A checkpoint keeps the counts its state covers, so
/// a restored job counts on from there and every row is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, other: Self) {
        self.rows_in += other.rows_in;
        self.rows_out += other.rows_out;
        self.late_rows += other.late_rows;
    }
}

/// Which job graph took a checkpoint: a fingerprint of its operators,
/// schemas and exchanges (not its parallelism), and an outline of it for
/// messages. A checkpoint restores only into the same graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanIdentity {
    pub fingerprint: String,
    pub outline: String,
}

/// A node's stable id, and its name for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorId {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub job: String,
    pub id: CheckpointId,
    /// Subtasks per node when the checkpoint was taken.
    pub parallelism: BTreeMap<usize, usize>,
    pub taken_at_millis: i64,
    /// From the trigger to the last subtask's acknowledgement.
    #[serde(default)]
    pub duration_millis: u64,
    pub subtasks: Vec<SubtaskSnapshot>,
    /// Output staged for earlier checkpoints that failed (or whose commit
    /// did), committed with this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<StagedOutput>,
    /// Taken when every subtask had ended: the job was done.
    #[serde(default)]
    pub end: bool,
    /// The graph that took it (absent in manifests of older builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanIdentity>,
    /// Each node's stable id and name ([`crate::plan::JobGraph::operator_ids`]),
    /// by its node number then: a restore finds each node's state by id,
    /// in a job graph that has changed elsewhere (absent in manifests of
    /// older builds, which restore only into the same graph).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub operators: BTreeMap<usize, OperatorId>,
    /// Rows counted up to the checkpoint, over every run of the job.
    #[serde(default)]
    pub counts: RowCounts,
}

impl Manifest {
    pub fn to_json(&self) -> String {
        // Plain data: serialising cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest, refusing one of another job or format.
    pub fn parse(text: &str, job: &str) -> std::result::Result<Self, String> {
        let manifest: Manifest =
            serde_json::from_str(text).map_err(|e| format!("unreadable manifest: {e}"))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} (this build reads {MANIFEST_VERSION})",
                manifest.version
            ));
        }
        if manifest.job != job {
            return Err(format!("a checkpoint of job '{}'", manifest.job));
        }
        Ok(manifest)
    }

    /// Bytes of state in all.
    pub fn state_bytes(&self) -> u64 {
        self.subtasks
            .iter()
            .flat_map(|s| &s.state)
            .map(|f| f.bytes)
            .sum()
    }
}

/// A checkpoint whose subtasks are still reporting.
#[derive(Debug)]
pub struct PendingCheckpoint {
    id: CheckpointId,
    expected: BTreeSet<(usize, usize)>,
    received: BTreeMap<(usize, usize), SubtaskSnapshot>,
}

impl PendingCheckpoint {
    /// `parallelism` gives the subtasks of every node that must report.
    pub fn new(id: CheckpointId, parallelism: &BTreeMap<usize, usize>) -> Self {
        Self {
            id,
            expected: parallelism
                .iter()
                .flat_map(|(&node, &n)| (0..n).map(move |s| (node, s)))
                .collect(),
            received: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> CheckpointId {
        self.id
    }

    /// Whether subtask `subtask` of `node` has reported.
    pub fn has(&self, node: usize, subtask: usize) -> bool {
        self.received.contains_key(&(node, subtask))
    }

    /// Records one subtask's snapshot; once every subtask has reported,
    /// returns the manifest to write.
    pub fn acknowledge(
        &mut self,
        snapshot: SubtaskSnapshot,
        job: &str,
        taken_at_millis: i64,
    ) -> Result<Option<Manifest>> {
        let key = (snapshot.node, snapshot.subtask);
        if !self.expected.contains(&key) {
            return Err(SluiceError::Runtime(format!(
                "checkpoint {}: no subtask {} of node {} was expected to report",
                self.id, key.1, key.0
            )));
        }
        if self.received.contains_key(&key) {
            return Err(SluiceError::Runtime(format!(
                "checkpoint {}: subtask {} of node {} reported twice",
                self.id, key.1, key.0
            )));
        }
        self.received.insert(key, snapshot);
        if self.received.len() < self.expected.len() {
            return Ok(None);
        }
        let mut parallelism = BTreeMap::new();
        for &(node, _) in &self.expected {
            *parallelism.entry(node).or_insert(0) += 1;
        }
        let subtasks: Vec<SubtaskSnapshot> =
            std::mem::take(&mut self.received).into_values().collect();
        let mut counts = RowCounts::default();
        for subtask in &subtasks {
            counts += subtask.counts;
        }
        Ok(Some(Manifest {
            version: MANIFEST_VERSION,
            job: job.to_string(),
            id: self.id,
            parallelism,
            taken_at_millis,
            duration_millis: 0,
            subtasks,
            carried: Vec::new(),
            end: false,
            plan: None,
            operators: BTreeMap::new(),
            counts,
        }))
    }
}

/// What is found under a job's checkpoint directory: each checkpoint's id
/// and its manifest (`None` when there is none, `Err` when it is damaged).
pub type Listing = Vec<(CheckpointId, Option<std::result::Result<Manifest, String>>)>;

/// The checkpoint to restore and why newer ones were passed over.
#[derive(Debug, PartialEq, Eq)]
pub struct RestoreChoice {
    pub checkpoint: Option<Manifest>,
    /// Newer checkpoints skipped, with the reason to warn about.
    pub skipped: Vec<(CheckpointId, String)>,
}

/// The newest complete, readable checkpoint; incomplete or damaged newer
/// ones are skipped with a reason (a crash while writing leaves them).
pub fn choose_restore(mut listing: Listing) -> RestoreChoice {
    listing.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    let mut skipped = Vec::new();
    for (id, manifest) in listing {
        match manifest {
            Some(Ok(manifest)) => {
                return RestoreChoice {
                    checkpoint: Some(manifest),
                    skipped,
                };
            }
            Some(Err(reason)) => skipped.push((id, reason)),
            None => skipped.push((
                id,
                "no manifest: the checkpoint never completed".to_string(),
            )),
        }
    }
    RestoreChoice {
        checkpoint: None,
        skipped,
    }
}

/// Checkpoints to delete so that the newest `retained` complete ones stay,
/// with everything newer than the oldest of those (incomplete ones may be
/// in progress).
pub fn to_discard(
    complete: &[CheckpointId],
    all: &[CheckpointId],
    retained: usize,
) -> Vec<CheckpointId> {
    let mut kept: Vec<CheckpointId> = complete.to_vec();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    kept.truncate(retained.max(1));
    let Some(&oldest_kept) = kept.last() else {
        return Vec::new();
    };
    let mut discard: Vec<CheckpointId> =
        all.iter().copied().filter(|id| *id < oldest_kept).collect();
    discard.sort_unstable();
    discard
}

/// The staged outputs a restored checkpoint covers: committing them again
/// is how a crash between "manifest written" and "outputs committed" is
/// finished (commits are idempotent moves).
pub fn commits_of(manifest: &Manifest) -> Vec<StagedOutput> {
    manifest
        .carried
        .iter()
        .cloned()
        .chain(
            manifest
                .subtasks
                .iter()
                .flat_map(|s| s.staged.iter().cloned()),
        )
        .collect()
}

/// The state files a subtask that now owns `key_groups` restores for
/// `operator`: keyed files whose key groups meet its own (it keeps only its
/// rows of them), and other files whose first key group is its own (each
/// goes whole to exactly one subtask).
pub fn state_for(
    manifest: &Manifest,
    operator: usize,
    key_groups: &Range<usize>,
) -> Vec<StateFile> {
    manifest
        .subtasks
        .iter()
        .flat_map(|s| &s.state)
        .filter(|f| f.operator == operator)
        .filter(|f| {
            if f.keyed {
                f.key_groups.start < key_groups.end && key_groups.start < f.key_groups.end
            } else {
                key_groups.contains(&f.key_groups.start)
            }
        })
        .cloned()
        .collect()
}

/// The positions recorded for `node`'s splits, by split name, whatever
/// subtask read them (splits are reassigned on restore).
pub fn positions_for(manifest: &Manifest, node: usize) -> BTreeMap<String, SplitPosition> {
    manifest
        .subtasks
        .iter()
        .filter(|s| s.node == node)
        .flat_map(|s| &s.positions)
        .map(|p| (p.split.clone(), p.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::exchange::{MAX_PARALLELISM, key_groups_of};

    fn snapshot(node: usize, subtask: usize, parallelism: usize) -> SubtaskSnapshot {
        SubtaskSnapshot {
            node,
            subtask,
            state: vec![
                StateFile {
                    path: format!("n{node}-s{subtask}.arrow"),
                    operator: 7,
                    table: "slices".into(),
                    key_groups: key_groups_of(subtask, parallelism),
                    keyed: true,
                    watermark: 0,
                    bytes: 60,
                },
                StateFile {
                    path: format!("n{node}-s{subtask}-local.arrow"),
                    operator: 8,
                    table: "slices".into(),
                    key_groups: key_groups_of(subtask, parallelism),
                    keyed: false,
                    watermark: 0,
                    bytes: 40,
                },
            ],
            positions: vec![SplitPosition {
                split: format!("p{subtask}"),
                position: format!("{}", 10 * subtask),
                watermark: None,
            }],
            staged: vec![StagedOutput {
                sink: "out".into(),
                staged: format!(".part-{subtask}.inprogress"),
                target: format!("part-{subtask}.parquet"),
            }],
            counts: RowCounts {
                rows_in: 10,
                rows_out: 2,
                late_rows: 1,
            },
        }
    }

    fn manifest(id: CheckpointId, parallelism: usize) -> Manifest {
        let mut pending = PendingCheckpoint::new(id, &BTreeMap::from([(0, parallelism)]));
        let mut done = None;
        for s in 0..parallelism {
            done = pending
                .acknowledge(snapshot(0, s, parallelism), "job", 7)
                .expect("ack");
        }
        done.expect("complete")
    }

    #[test]
    fn a_checkpoint_completes_when_every_subtask_reported_once() {
        let parallelism = BTreeMap::from([(0, 2), (3, 1)]);
        let mut pending = PendingCheckpoint::new(5, &parallelism);
        assert_eq!(
            pending
                .acknowledge(snapshot(0, 1, 2), "job", 1)
                .expect("ack"),
            None
        );
        let mut again = snapshot(0, 1, 2);
        again.positions.clear();
        assert!(pending.acknowledge(again, "job", 1).is_err(), "twice");
        assert!(pending.has(0, 1) && !pending.has(0, 0));
        assert!(
            pending.acknowledge(snapshot(1, 0, 2), "job", 1).is_err(),
            "unknown node"
        );
        assert_eq!(
            pending
                .acknowledge(snapshot(3, 0, 1), "job", 1)
                .expect("ack"),
            None
        );
        let manifest = pending
            .acknowledge(snapshot(0, 0, 2), "job", 1)
            .expect("ack")
            .expect("complete");
        assert_eq!(manifest.id, 5);
        assert_eq!(manifest.parallelism, parallelism);
        assert_eq!(manifest.subtasks.len(), 3);
        assert!(
            manifest.subtasks.iter().all(|s| !s.positions.is_empty()),
            "a second report never replaces the first"
        );
        assert_eq!(manifest.state_bytes(), 300);
        assert_eq!(
            manifest.counts,
            RowCounts {
                rows_in: 30,
                rows_out: 6,
                late_rows: 3
            },
            "the subtasks' counts add up"
        );
        assert_eq!(
            Manifest::parse(&manifest.to_json(), "job"),
            Ok(manifest.clone())
        );
        assert!(Manifest::parse(&manifest.to_json(), "other").is_err());
        assert!(Manifest::parse("{ not json", "job").is_err());
    }

    #[test]
    fn restore_takes_the_newest_complete_readable_checkpoint() {
        let choice = choose_restore(vec![
            (3, Some(Ok(manifest(3, 1)))),
            (5, None),
            (4, Some(Err("unreadable manifest".into()))),
            (2, Some(Ok(manifest(2, 1)))),
        ]);
        assert_eq!(choice.checkpoint.map(|m| m.id), Some(3));
        assert_eq!(
            choice.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![5, 4]
        );
        let none = choose_restore(vec![(1, None)]);
        assert_eq!(none.checkpoint, None);
        assert_eq!(none.skipped.len(), 1);
        assert_eq!(choose_restore(Vec::new()).checkpoint, None);
    }

    #[test]
    fn retention_keeps_the_newest_complete_and_anything_newer() {
        // 6 is in progress; 4 never completed.
        assert_eq!(
            to_discard(&[1, 2, 3, 5], &[1, 2, 3, 4, 5, 6], 2),
            vec![1, 2]
        );
        assert_eq!(
            to_discard(&[1, 2], &[1, 2, 3], 0),
            vec![1],
            "keeps at least one"
        );
        assert!(
            to_discard(&[], &[1, 2], 3).is_empty(),
            "nothing complete: keep all"
        );
    }

    #[test]
    fn state_is_redistributed_by_key_groups_at_a_new_parallelism() {
        let old = manifest(1, 4);
        for new in [1, 2, 3, 4, 8] {
            let mut covered = vec![0; MAX_PARALLELISM];
            let mut unkeyed = Vec::new();
            for subtask in 0..new {
                let owned = key_groups_of(subtask, new);
                for file in state_for(&old, 7, &owned) {
                    for g in file.key_groups.clone() {
                        if owned.contains(&g) {
                            covered[g] += 1;
                        }
                    }
                }
                unkeyed.extend(state_for(&old, 8, &owned).into_iter().map(|f| f.path));
            }
            assert!(
                covered.iter().all(|c| *c == 1),
                "parallelism {new}: {covered:?}"
            );
            unkeyed.sort();
            assert_eq!(
                unkeyed.len(),
                4,
                "each unkeyed file restored once: {unkeyed:?}"
            );
            unkeyed.dedup();
            assert_eq!(unkeyed.len(), 4, "each unkeyed file restored once");
        }
        assert_eq!(positions_for(&old, 0).len(), 4);
        assert_eq!(commits_of(&old).len(), 4);
    }
}
