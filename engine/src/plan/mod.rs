//! The job graph: operators, the exchanges between them, and their parallelism.
//!
//! [`translate()`] builds a [`JobGraph`] from a compiled job: one source node per
//! table however many `INSERT`s read it, stateless operators with forward
//! edges, a hash exchange on the group keys before every keyed aggregation,
//! and one sink node per `INSERT`. [`JobGraph::stages`] then chains every
//! node that has a single forward input of the same parallelism into its
//! upstream's subtask: no channel and no copy between them.

pub mod explain;
pub mod sql_text;
pub mod translate;

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::connector::{Sink, Source};
use crate::ops::OperatorFactory;
use crate::sql::{Mode, TableDef};

pub use translate::translate;

pub type NodeId = usize;

#[derive(Debug)]
pub struct JobGraph {
    pub name: String,
    pub mode: Mode,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// When this graph's sources carry rows for late data
    /// ([`crate::ops::late_row`]): the same job planned without them, which
    /// gives the operator ids and the plan's identity, so that a checkpoint
    /// of the job restores whether or not the run keeps late rows.
    pub identity_graph: Option<Box<JobGraph>>,
}

#[derive(Debug)]
pub struct Node {
    pub id: NodeId,
    pub kind: NodeKind,
    pub parallelism: usize,
    /// The schema of the rows this node emits, with the row-kind column
    /// last when they can update.
    pub schema: SchemaRef,
}

#[derive(Debug)]
pub enum NodeKind {
    Source(SourceNode),
    Operator(Arc<dyn OperatorFactory>),
    Sink(SinkNode),
}

#[derive(Debug)]
pub struct SourceNode {
    pub table: Arc<TableDef>,
    pub source: Arc<dyn Source>,
    /// The table's physical columns this source reads (for every consumer
    /// together), as indices into `table.physical`.
    pub projection: Vec<usize>,
    /// Their schema: what the source's splits yield.
    pub read_schema: SchemaRef,
    /// When the table has computed columns: the node's output columns as
    /// expressions over what was read.
    pub compute: Option<Vec<Arc<dyn PhysicalExpr>>>,
    /// The table's watermark expression over the node's output columns.
    pub watermark: Option<Arc<dyn PhysicalExpr>>,
}

#[derive(Debug)]
pub struct SinkNode {
    pub table: Arc<TableDef>,
    pub sink: Arc<dyn Sink>,
    /// Written by `INSERT OVERWRITE`.
    pub overwrite: bool,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    pub partitioning: Partitioning,
    /// Which input of `to` this is: its edges are numbered from 0 in the
    /// order they were added (a union's inputs, a join's left and right).
    pub port: crate::ops::Port,
}

/// How rows of one node's subtasks reach the next node's subtasks.
#[derive(Debug, Clone)]
pub enum Partitioning {
    /// Subtask i sends to subtask i (same parallelism); chained when possible.
    Forward,
    /// By hash of these expressions over the sender's rows, through key groups.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// Round-robin over the receivers.
    Rebalance,
    /// Everything to the one receiver.
    Single,
}

impl Partitioning {
    /// As `sluice explain` shows it: keys by name, as the operator that
    /// receives them names them.
    pub fn explain(&self) -> String {
        match self {
            Self::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| sql_text::expr(k.as_ref())).collect();
                format!("hash({})", keys.join(", "))
            }
            other => other.to_string(),
        }
    }
}

/// Exact, with column indices: what a checkpoint's plan fingerprint covers.
impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Forward => f.write_str("forward"),
            Self::Hash(keys) => {
                let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
                write!(f, "hash({})", keys.join(", "))
            }
            Self::Rebalance => f.write_str("rebalance"),
            Self::Single => f.write_str("single"),
        }
    }
}

/// A chain of nodes that run together in one subtask.
#[derive(Debug, Clone)]
pub struct Stage {
    pub id: usize,
    /// The chain's first node: a source or the receiver of exchanges.
    pub root: NodeId,
    /// All nodes of the chain, root first, each after its upstream.
    pub nodes: Vec<NodeId>,
    pub parallelism: usize,
}

impl JobGraph {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn inputs(&self, id: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.to == id)
    }

    pub fn outputs(&self, id: NodeId) -> impl Iterator<Item = &Edge> {
        self.edges.iter().filter(move |e| e.from == id)
    }

    /// The columns by which the rows of an updating node update (Flink's
    /// upsert key): every change of one value of them comes from one
    /// subtask, in order. Known where an operator keys its output (a
    /// GROUP BY, an upsert source's normalisation) and followed through
    /// the operators that pass those columns on unchanged.
    pub fn upsert_key(&self, id: NodeId) -> Option<Vec<usize>> {
        let NodeKind::Operator(op) = &self.node(id).kind else {
            return None;
        };
        if let Some(key) = op.upsert_key() {
            return Some(key);
        }
        // Passed on when this node keeps the input's columns of it, from
        // the same subtask (an exchange by the whole row would split a
        // key's changes between subtasks).
        let input = self.inputs(id).find(|e| e.port == 0)?;
        if self.inputs(id).count() != 1
            || !matches!(
                input.partitioning,
                Partitioning::Forward | Partitioning::Single
            )
        {
            return None;
        }
        let upstream = self.upsert_key(input.from)?;
        let width = self.node(id).schema.fields().len();
        upstream
            .iter()
            .map(|&k| {
                (0..width).find(|&c| {
                    op.column_origin(c) == crate::ops::ColumnOrigin::Input { port: 0, column: k }
                })
            })
            .collect()
    }

    /// Whether `edge` is a chain link rather than an exchange.
    pub fn is_chained(&self, edge: &Edge) -> bool {
        matches!(edge.partitioning, Partitioning::Forward)
            && self.inputs(edge.to).count() == 1
            && self.node(edge.from).parallelism == self.node(edge.to).parallelism
    }

    /// Groups the nodes into chains.
    pub fn stages(&self) -> Vec<Stage> {
        let mut stages = Vec::new();
        for node in &self.nodes {
            let chained_input = self.inputs(node.id).any(|e| self.is_chained(e));
            if chained_input {
                continue;
            }
            let mut nodes = vec![node.id];
            let mut i = 0;
            while i < nodes.len() {
                let current = nodes[i];
                for edge in self.outputs(current) {
                    if self.is_chained(edge) {
                        nodes.push(edge.to);
                    }
                }
                i += 1;
            }
            stages.push(Stage {
                id: stages.len(),
                root: node.id,
                nodes,
                parallelism: node.parallelism,
            });
        }
        stages
    }
}

impl Node {
    /// What kinds of rows it emits: a node whose rows can update carries
    /// the row-kind column last ([`crate::changelog`]).
    pub fn changelog(&self) -> crate::changelog::ChangelogMode {
        match self.schema.fields().last() {
            Some(f) if f.name() == crate::changelog::ROW_KIND => {
                crate::changelog::ChangelogMode::Retract
            }
            _ => crate::changelog::ChangelogMode::InsertOnly,
        }
    }

    pub fn name(&self) -> String {
        match &self.kind {
            NodeKind::Source(s) => format!("Source[{}]", s.table.name),
            NodeKind::Operator(op) => op.name().to_string(),
            NodeKind::Sink(s) => format!("Sink[{}]", s.table.name),
        }
    }
}

impl JobGraph {
    /// What a checkpoint records of the graph that took it: a fingerprint
    /// of every node's operator, details and output schema, and of the
    /// edges between them, and a one-line outline for messages. Neither
    /// depends on parallelism (an exchange between stages of different
    /// parallelism is one pointwise edge), so a checkpoint restores at any
    /// parallelism but never into another graph.
    pub fn identity(&self) -> crate::checkpoint::protocol::PlanIdentity {
        if let Some(base) = &self.identity_graph {
            return base.identity();
        }
        let mut text = String::new();
        for node in &self.nodes {
            let details = match &node.kind {
                NodeKind::Operator(op) => op.fingerprint(),
                NodeKind::Source(_) | NodeKind::Sink(_) => String::new(),
            };
            text.push_str(&format!("{} {} {details} [", node.id, node.name()));
            for field in node.schema.fields() {
                text.push_str(&format!("{}: {}, ", field.name(), field.data_type()));
            }
            text.push_str("]\n");
        }
        for edge in &self.edges {
            let partitioning = match &edge.partitioning {
                hash @ Partitioning::Hash(_) => hash.to_string(),
                Partitioning::Forward | Partitioning::Rebalance | Partitioning::Single => {
                    "pointwise".to_string()
                }
            };
            // Port 0 is left out, so one-input graphs keep their fingerprints.
            let port = match edge.port {
                0 => String::new(),
                p => format!(" port {p}"),
            };
            text.push_str(&format!(
                "{} -> {}{port} {partitioning}\n",
                edge.from, edge.to
            ));
        }
        let outline: Vec<String> = self.nodes.iter().map(Node::name).collect();
        crate::checkpoint::protocol::PlanIdentity {
            fingerprint: format!("{:016x}", fnv1a(text.as_bytes())),
            outline: outline.join(", "),
        }
    }
}

impl JobGraph {
    /// Each node's stable id, by node number: a hash of what it does (its
    /// name, its exact fingerprint, its schema; a source's table and
    /// columns, a sink's table), and of the ids of its inputs with how they
    /// reach it. It does not depend on the node's number, on parallelism
    /// or on nodes that are not upstream of it, so a job file that changes
    /// elsewhere (another INSERT, another sink) keeps the ids of what did
    /// not change, and a checkpoint restores each node's state by id.
    /// Nodes that would have one id (two INSERTs of the same query) are
    /// told apart by the tables they end in, and only where those are the
    /// same too (a union of two equal branches) by their order.
    pub fn operator_ids(&self) -> Vec<String> {
        let own = self.structural_ids();
        let Some(base) = &self.identity_graph else {
            return own;
        };
        // Carrying rows adds or widens projections only: every other node
        // is the next one of the graph planned without them.
        let projection = |n: &Node| n.name() == crate::ops::stateless::PROJECT;
        let mut others = base
            .nodes
            .iter()
            .zip(base.structural_ids())
            .filter(|(n, _)| !projection(n));
        self.nodes
            .iter()
            .zip(own)
            .map(|(node, own)| {
                if projection(node) {
                    return own;
                }
                // `translate` checked that the two pair up.
                others.next().map_or(own, |(_, id)| id)
            })
            .collect()
    }

    /// [`Self::operator_ids`] of this graph's own structure.
    fn structural_ids(&self) -> Vec<String> {
        // What each node is, by what it does and what is upstream.
        let mut base: Vec<Option<String>> = vec![None; self.nodes.len()];
        for node in &self.nodes {
            let hash = self.structural_id(node.id, &mut base);
            base[node.id] = Some(hash);
        }
        let base: Vec<String> = base.into_iter().map(Option::unwrap_or_default).collect();
        let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for hash in &base {
            *count.entry(hash).or_default() += 1;
        }
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        self.nodes
            .iter()
            .map(|node| {
                let hash = &base[node.id];
                let id = match count[hash.as_str()] {
                    1 => hash.clone(),
                    _ => format!("{hash}@{}", self.sinks_after(node.id).join(",")),
                };
                let n = seen.entry(id.clone()).or_default();
                *n += 1;
                match *n {
                    1 => id,
                    n => format!("{id}-{n}"),
                }
            })
            .collect()
    }

    /// The tables of the sinks downstream of `id`, sorted.
    fn sinks_after(&self, id: NodeId) -> Vec<String> {
        let mut tables = std::collections::BTreeSet::new();
        let mut todo = vec![id];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(n) = todo.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let NodeKind::Sink(s) = &self.node(n).kind {
                tables.insert(s.table.name.clone());
            }
            todo.extend(self.outputs(n).map(|e| e.to));
        }
        tables.into_iter().collect()
    }

    fn structural_id(&self, id: NodeId, ids: &mut Vec<Option<String>>) -> String {
        let node = self.node(id);
        let mut text = format!("{} ", node.name());
        match &node.kind {
            NodeKind::Operator(op) => text.push_str(&op.fingerprint()),
            NodeKind::Source(s) => text.push_str(&format!("{:?}", s.projection)),
            NodeKind::Sink(_) => {}
        }
        text.push_str(" [");
        for field in node.schema.fields() {
            text.push_str(&format!("{}: {}, ", field.name(), field.data_type()));
        }
        text.push(']');
        let mut inputs: Vec<&Edge> = self.inputs(id).collect();
        inputs.sort_by_key(|e| e.port);
        for edge in inputs {
            let from = match ids[edge.from].clone() {
                Some(from) => from,
                None => self.structural_id(edge.from, ids),
            };
            let partitioning = match &edge.partitioning {
                hash @ Partitioning::Hash(_) => hash.to_string(),
                _ => "pointwise".to_string(),
            };
            text.push_str(&format!(" <- {from} port {} {partitioning}", edge.port));
        }
        format!("{:016x}", fnv1a(text.as_bytes()))
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build and release,
/// unlike the standard library's.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
