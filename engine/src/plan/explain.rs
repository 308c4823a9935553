//! `sluice explain`: the job graph as text or Graphviz dot.

use std::fmt::Write;

use super::{JobGraph, NodeKind};
use crate::time::Millis;

/// The graph as text: one block per stage, each operator under the one it
/// is chained to, and the exchanges that leave the stage.
pub fn text(graph: &JobGraph) -> String {
    let mut out = String::new();
    let stages = graph.stages();
    let _ = writeln!(out, "Job `{}` ({} mode)", graph.name, graph.mode);
    for stage in &stages {
        let _ = writeln!(
            out,
            "Stage {} (parallelism {}):",
            stage.id, stage.parallelism
        );
        write_chain(graph, &stages, stage.root, 1, &mut out);
    }
    out
}

fn write_chain(
    graph: &JobGraph,
    stages: &[super::Stage],
    id: usize,
    depth: usize,
    out: &mut String,
) {
    let indent = "  ".repeat(depth);
    let _ = writeln!(out, "{indent}{}", describe_node(graph, id));
    for edge in graph.outputs(id) {
        if graph.is_chained(edge) {
            write_chain(graph, stages, edge.to, depth + 1, out);
        } else {
            let stage = stages
                .iter()
                .position(|s| s.nodes.contains(&edge.to))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{indent}  └─ {} ─> stage {stage} ({})",
                edge.partitioning.explain(),
                graph.node(edge.to).name()
            );
        }
    }
}

/// A node as one line; one whose rows update ends with its changelog mode
/// in Flink's letters (`changelog [I,UB,UA,D]`); the others are insert-only.
fn describe_node(graph: &JobGraph, id: usize) -> String {
    let node = graph.node(id);
    let mode = node.changelog();
    let described = describe_kind(node);
    // What a source of changes reads, in Flink's letters: upserts by key
    // are `[UA,D]` until they are normalised.
    if let NodeKind::Source(s) = &node.kind {
        use crate::connector::SourceChanges;
        let key = || {
            let names: Vec<&str> = s
                .table
                .primary_key
                .iter()
                .map(|&k| s.table.schema.field(k).name().as_str())
                .collect();
            names.join(", ")
        };
        match s.source.changes() {
            SourceChanges::Upsert => {
                return format!("{described} changelog [UA,D] upsert key [{}]", key());
            }
            SourceChanges::Unordered => {
                return format!("{described} changelog {} in no order", mode.explain());
            }
            SourceChanges::InsertOnly | SourceChanges::Retract => {}
        }
    }
    let key = match graph.upsert_key(id) {
        Some(key) => {
            let names: Vec<&str> = key
                .iter()
                .map(|&k| node.schema.field(k).name().as_str())
                .collect();
            format!(" upsert key [{}]", names.join(", "))
        }
        None => String::new(),
    };
    match mode.updates() {
        true => format!("{described} changelog {}{key}", mode.explain()),
        false => described,
    }
}

fn describe_kind(node: &super::Node) -> String {
    match &node.kind {
        NodeKind::Source(s) => {
            let columns: Vec<&str> = node
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|name| *name != crate::changelog::ROW_KIND)
                .collect();
            let watermark = s
                .table
                .watermark
                .as_ref()
                .map(|w| format!("; watermark {}", w.decl.expr))
                .unwrap_or_default();
            format!(
                "Source[{}] {} columns [{}]{watermark}",
                s.table.name,
                s.table.options.peek("connector").unwrap_or("?"),
                columns.join(", ")
            )
        }
        NodeKind::Operator(op) => format!("{}[{}]", op.name(), op.describe()),
        NodeKind::Sink(s) => format!("Sink[{}] {}", s.table.name, s.sink.describe()),
    }
}

/// The graph in Graphviz dot: one cluster per stage (chained operators).
pub fn dot(graph: &JobGraph) -> String {
    let mut out = String::from(
        "digraph sluice {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for stage in graph.stages() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{} {{\n    label=\"stage {} × {}\";",
            stage.id, stage.id, stage.parallelism
        );
        for id in &stage.nodes {
            let label = describe_node(graph, *id).replace('"', "\\\"");
            let _ = writeln!(out, "    n{id} [label=\"{label}\"];");
        }
        out.push_str("  }\n");
    }
    for edge in &graph.edges {
        let style = if graph.is_chained(edge) {
            " [style=dashed, label=\"chained\"]".to_string()
        } else {
            format!(
                " [label=\"{}\"]",
                edge.partitioning.explain().replace('"', "\\\"")
            )
        };
        let _ = writeln!(out, "  n{} -> n{}{style};", edge.from, edge.to);
    }
    out.push_str("}\n");
    out
}

/// Formats a duration of milliseconds the way a person would write it.
pub fn duration(ms: Millis) -> String {
    const UNITS: [(Millis, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if ms != 0 && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}
