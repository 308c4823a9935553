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
