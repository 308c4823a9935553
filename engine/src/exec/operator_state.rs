//! A checkpoint's state matched to this run's job graph by stable ids.
//!
//! A checkpoint names each node's state by the node's number in the graph
//! that took it, and records every node's stable id
//! ([`JobGraph::operator_ids`]). A job file that changed elsewhere (another
//! INSERT, another sink, a different order of statements) numbers its
//! nodes otherwise, so before anything is restored the checkpoint is
//! renumbered: each node's state, split positions and subtask count go to
//! the node of this graph with the same id. A node of the checkpoint that
//! holds state or positions and has no node here is an error naming it:
//! its state would be lost (Flink refuses the same, unless told to drop
//! it). Nodes new here start empty. Output a sink staged is committed by
//! the sink's table name, whatever its node.

use std::collections::BTreeMap;

use crate::checkpoint::Restored;
use crate::error::{Result, SluiceError};
use crate::plan::JobGraph;

/// `restored`, with its nodes numbered as `graph` numbers them.
pub(super) fn renumbered(restored: &Restored, graph: &JobGraph) -> Result<Restored> {
    let manifest = &restored.manifest;
    let here: BTreeMap<String, usize> = graph
        .operator_ids()
        .into_iter()
        .enumerate()
        .map(|(n, id)| (id, n))
        .collect();
    // Nodes of the checkpoint without a node here keep numbers past this
    // graph's, so their staged output is still committed.
    let mut unmatched = graph.nodes.len();
    let mut number: BTreeMap<usize, usize> = BTreeMap::new();
    for (&node, operator) in &manifest.operators {
        let to = match here.get(&operator.id) {
            Some(&to) => to,
            None => {
                // State files name their operator; positions, their
                // source's stage.
                let holds_state = manifest.subtasks.iter().any(|s| {
                    s.state.iter().any(|f| f.operator == node)
                        || (s.node == node && !s.positions.is_empty())
                });
                if holds_state {
                    let ours: Vec<String> = graph.nodes.iter().map(|n| n.name()).collect();
                    return Err(SluiceError::config(format!(
                        "checkpoint {} of job `{}` holds the state of its node {node}, {} (id {}), and this job graph has no node with that id: that operator, or one before it, changed. This job's nodes: {}. Restore with the job file it was taken with, or start without --restore (give a changed job its own 'pipeline.name' to keep both)",
                        manifest.id,
                        manifest.job,
                        operator.name,
                        operator.id,
                        ours.join(", ")
                    )));
                }
                unmatched += 1;
                unmatched
            }
        };
        number.insert(node, to);
    }
    let renumber = |node: usize| -> Result<usize> {
        number.get(&node).copied().ok_or_else(|| {
            SluiceError::Runtime(format!(
                "checkpoint {} lists node {node}, which its manifest does not name",
                manifest.id
            ))
        })
    };
    let mut manifest = manifest.clone();
    for subtask in &mut manifest.subtasks {
        subtask.node = renumber(subtask.node)?;
        for file in &mut subtask.state {
            file.operator = renumber(file.operator)?;
        }
    }
    manifest.parallelism = manifest
        .parallelism
        .iter()
        .map(|(&node, &p)| renumber(node).map(|n| (n, p)))
        .collect::<Result<_>>()?;
    manifest.operators = manifest
        .operators
        .iter()
        .map(|(&node, id)| renumber(node).map(|n| (n, id.clone())))
        .collect::<Result<_>>()?;
    Ok(Restored {
        manifest,
        state: restored.state.clone(),
    })
}
