//! Which input of a join its subtasks read first.
//!
//! A regular join keeps each input's rows for the other input's rows to
//! find, until that other input ends; from then on the rows of the one
//! still running are matched and forgotten (`ops/join.rs`). So when one
//! input is read to its end first, only its rows are kept: a dimension
//! file joined with a topic keeps the file, not the endless topic, and a
//! batch join keeps its smaller side, as a hash join builds on it. The
//! result is the same in any order; only what is kept changes.
//!
//! The side read first is a bounded input against an unbounded one, or of
//! two bounded inputs the one with fewer rows as the splits estimate them
//! (Parquet row counts, Kafka offsets). Its channels are read before the
//! others' (`input_merge.rs`), whose senders meanwhile wait. That must not
//! wait on itself: the two inputs may share no upstream node (a self-join
//! of one source reads both sides from one subtask's output), and no
//! upstream node of a side read first may be on the side another join
//! reads later, so no two joins can each hold back what the other waits
//! for. A join that fits neither is read as its rows come.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::connector::Split;
use crate::ops::Port;
use crate::plan::{JobGraph, NodeId, NodeKind};

/// How many rows an input will give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Size {
    /// At most this many, by the estimates of its sources' splits.
    Rows(u64),
    /// Bounded, but some split has no estimate.
    Unknown,
    /// It never ends.
    Unbounded,
}

/// The port to read first, per join node that has one.
pub fn first_inputs(
    graph: &JobGraph,
    planned: &BTreeMap<NodeId, Vec<Arc<dyn Split>>>,
) -> BTreeMap<NodeId, Port> {
    let mut chosen = BTreeMap::new();
    // Upstream nodes of the sides read first, and of those read later.
    let (mut read_first, mut read_later) = (BTreeSet::new(), BTreeSet::new());
    for node in &graph.nodes {
        let NodeKind::Operator(op) = &node.kind else {
            continue;
        };
        if !op.prefers_an_input_first() {
            continue;
        }
        let sides: Vec<BTreeSet<NodeId>> = (0..2).map(|p| upstream(graph, node.id, p)).collect();
        if sides.iter().any(BTreeSet::is_empty) || !sides[0].is_disjoint(&sides[1]) {
            continue;
        }
        let sizes: Vec<Size> = sides.iter().map(|s| size(graph, s, planned)).collect();
        let first = match (sizes[0], sizes[1]) {
            (Size::Unbounded, Size::Unbounded) => continue,
            (_, Size::Unbounded) => 0,
            (Size::Unbounded, _) => 1,
            (Size::Rows(a), Size::Rows(b)) if a < b => 0,
            (Size::Rows(a), Size::Rows(b)) if b < a => 1,
            _ => continue,
        };
        let later = 1 - first;
        if !sides[first].is_disjoint(&read_later) || !sides[later].is_disjoint(&read_first) {
            continue;
        }
        read_first.extend(sides[first].iter().copied());
        read_later.extend(sides[later].iter().copied());
        tracing::debug!(
            node = node.id,
            first,
            ?sizes,
            "a join reads one input first"
        );
        chosen.insert(node.id, first);
    }
    chosen
}

/// Every node upstream of input `port` of `node`.
fn upstream(graph: &JobGraph, node: NodeId, port: Port) -> BTreeSet<NodeId> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<NodeId> = graph
        .inputs(node)
        .filter(|e| e.port == port)
        .map(|e| e.from)
        .collect();
    while let Some(n) = todo.pop() {
        if seen.insert(n) {
            todo.extend(graph.inputs(n).map(|e| e.from));
        }
    }
    seen
}

/// The rows the sources among `nodes` will give, together.
fn size(
    graph: &JobGraph,
    nodes: &BTreeSet<NodeId>,
    planned: &BTreeMap<NodeId, Vec<Arc<dyn Split>>>,
) -> Size {
    let mut rows = 0u64;
    let mut known = true;
    for &n in nodes {
        let NodeKind::Source(source) = &graph.node(n).kind else {
            continue;
        };
        if !source.source.is_bounded() {
            return Size::Unbounded;
        }
        for split in planned.get(&n).into_iter().flatten() {
            match split.estimated_rows() {
                Some(r) => rows = rows.saturating_add(r),
                None => known = false,
            }
        }
    }
    match known {
        true => Size::Rows(rows),
        false => Size::Unknown,
    }
}
