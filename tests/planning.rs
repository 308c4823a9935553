//! What the planner makes of queries whose plan shape is the point: the
//! operators chosen and their windows, read from the job graph.

use sluice::JobSpec;
use sluice_engine::plan::{JobGraph, NodeKind};
use sluice_engine::sql::Mode;

fn graph(query: &str) -> JobGraph {
    let sql = format!(
        "CREATE TABLE bid (auction BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts)
           WITH ('connector' = 'filesystem', 'path' = '/nonexistent', 'format' = 'json');
         CREATE TABLE o (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole');
         {query}"
    );
    JobSpec::from_text("plan.sql", &sql)
        .with_mode(Mode::Stream)
        .graph()
        .expect("plan")
}

/// Each operator as `name[details]`.
fn operators(graph: &JobGraph) -> Vec<String> {
    graph
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Operator(op) => Some(format!("{}[{}]", op.name(), op.describe())),
            _ => None,
        })
        .collect()
}

/// Nexmark q5's shape over HOP windows whose size is not a multiple of
/// their slide: the windows end 1 s into a 2 s slide, so the aggregate of
/// their results (grouped by their bounds) fires on 1 s buckets, never
/// after a window's end, and the join of the two is a window join.
#[test]
fn an_aggregate_of_misaligned_hop_windows_fires_at_their_ends_and_joins_by_window() {
    let graph = graph(
        "INSERT INTO o
         SELECT A.auction, A.num FROM (
           SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
           FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '5' SECOND))
           GROUP BY auction, window_start, window_end) A
         JOIN (
           SELECT MAX(num) AS maxn, starttime, endtime FROM (
             SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
             FROM TABLE(HOP(TABLE bid, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '5' SECOND))
             GROUP BY auction, window_start, window_end) C
           GROUP BY starttime, endtime) M
         ON A.starttime = M.starttime AND A.endtime = M.endtime AND A.num >= M.maxn;",
    );
    let ops = operators(&graph);
    assert!(
        ops.iter()
            .any(|o| o.starts_with("WindowAggregate[TUMBLE(size 1s) keys [starttime, endtime]")),
        "{ops:#?}"
    );
    assert!(ops.iter().any(|o| o.starts_with("WindowJoin[")), "{ops:#?}");
    assert!(
        !ops.iter().any(|o| o.starts_with("GroupAggregate[")),
        "nothing updates: {ops:#?}"
    );
}

/// A node's stable id depends on what it does and on what is upstream of
/// it, not on its number: another INSERT written first renumbers the graph
/// and keeps every id, and a changed window changes the ids of the nodes
/// from the window on, not of the source before it.
#[test]
fn operator_ids_survive_changes_elsewhere_and_follow_changes_upstream() {
    let windowed = |size: &str| {
        format!(
            "INSERT INTO o SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '{size}' SECOND))
             GROUP BY auction, window_start, window_end;"
        )
    };
    let ids = |graph: &JobGraph| -> Vec<(String, String)> {
        let ids = graph.operator_ids();
        graph
            .nodes
            .iter()
            .map(|n| (n.name(), ids[n.id].clone()))
            .collect()
    };
    let one = ids(&graph(&windowed("10")));
    let with_another = ids(&graph(&format!(
        "CREATE TABLE a (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '/nonexistent', 'format' = 'json');
         CREATE TABLE a_copy (id BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO a_copy SELECT id FROM a;
         {}",
        windowed("10")
    )));
    assert_ne!(
        one.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        with_another
            .iter()
            .map(|(n, _)| n)
            .take(one.len())
            .collect::<Vec<_>>(),
        "the nodes are numbered otherwise"
    );
    for node in &one {
        assert!(
            with_another.contains(node),
            "{node:?} kept its id: {with_another:?}"
        );
    }
    let wider = ids(&graph(&windowed("20")));
    let source = |ids: &[(String, String)]| ids.iter().find(|(n, _)| n == "Source[bid]").cloned();
    assert_eq!(source(&one), source(&wider), "the source did not change");
    let aggregates = |ids: &[(String, String)]| -> Vec<String> {
        ids.iter()
            .filter(|(n, _)| n.ends_with("WindowAggregate"))
            .map(|(_, id)| id.clone())
            .collect()
    };
    assert!(
        aggregates(&one)
            .iter()
            .all(|id| !aggregates(&wider).contains(id)),
        "the window changed"
    );
}

/// Two INSERTs of the same query have nodes that do the same with the same
/// upstream: they are told apart by the tables they end in, so writing the
/// second one first does not swap their ids (and so their state).
#[test]
fn twin_queries_keep_their_ids_by_the_tables_they_write() {
    let insert = |table: &str| {
        format!(
            "INSERT INTO {table} SELECT auction, COUNT(*) FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY auction, window_start, window_end;"
        )
    };
    let second = "CREATE TABLE p (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole');";
    let ids_by_sink = |graph: &JobGraph| -> Vec<(String, String)> {
        let ids = graph.operator_ids();
        let mut found: Vec<(String, String)> = graph
            .nodes
            .iter()
            .filter(|n| n.name() == "WindowAggregate")
            .map(|n| {
                let sink = graph
                    .outputs(n.id)
                    .flat_map(|e| graph.outputs(e.to))
                    .map(|e| graph.node(e.to).name())
                    .next()
                    .unwrap_or_default();
                (sink, ids[n.id].clone())
            })
            .collect();
        found.sort();
        found
    };
    let o_first = graph(&format!("{second} {} {}", insert("o"), insert("p")));
    let p_first = graph(&format!("{second} {} {}", insert("p"), insert("o")));
    assert_eq!(ids_by_sink(&o_first), ids_by_sink(&p_first));
    let ids = ids_by_sink(&o_first);
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0].1, ids[1].1, "{ids:?}");
}

/// Keeping late rows makes a windowed job's source read every column and
/// carry each row to the window, but leaves the ids of its operators and
/// the plan's identity alone, so that a checkpoint restores whether or not
/// the run keeps late rows (`tests/recovery.rs` restores one).
#[test]
fn keeping_late_rows_leaves_operator_ids_alone() {
    let job = |late: &str| {
        let sql = format!(
            "CREATE TABLE bid (auction BIGINT, bidder BIGINT, extra STRING, ts TIMESTAMP(3),
               WATERMARK FOR ts AS ts)
               WITH ('connector' = 'filesystem', 'path' = '/nonexistent', 'format' = 'json');
             CREATE TABLE o (auction BIGINT, num BIGINT) WITH ('connector' = 'blackhole');
             CREATE TABLE auctions (auction BIGINT) WITH ('connector' = 'blackhole');
             {late}
             INSERT INTO o
             SELECT auction, COUNT(*)
             FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             WHERE bidder > 0
             GROUP BY auction, window_start, window_end;
             INSERT INTO auctions SELECT auction FROM bid;"
        );
        JobSpec::from_text("plan.sql", &sql)
            .with_mode(Mode::Stream)
            .graph()
            .expect("plan")
    };
    let plain = job("");
    let keeping = job("SET 'sluice.late-data.path' = '/nonexistent/late';");
    let carries = |graph: &JobGraph| {
        graph.nodes.iter().any(|n| {
            matches!(n.kind, NodeKind::Source(_))
                && n.schema
                    .fields()
                    .iter()
                    .any(|f| f.name() == sluice_engine::ops::late_row::LATE_ROW)
        })
    };
    assert!(
        carries(&keeping) && !carries(&plain),
        "only one source carries rows"
    );
    // Projections hold no state; every other node keeps its id.
    let ids = |graph: &JobGraph| {
        graph
            .nodes
            .iter()
            .zip(graph.operator_ids())
            .filter(|(n, _)| n.name() != "Project")
            .map(|(n, id)| format!("{} {id}", n.name()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&keeping), ids(&plain));
    assert!(
        ids(&plain)
            .iter()
            .any(|n| n.starts_with("WindowAggregate "))
    );
    assert_eq!(keeping.identity().fingerprint, plain.identity().fingerprint);
}
