//! The kafka connector against the real test broker: partitions and their
//! watermarks, idleness, bad records in each mode, startup and bounded
//! modes, committed group offsets, the sink, and the errors a user meets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::JobSpec;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::sql::Mode;
use sluice_engine::{JobResult, StopSignal};
use sluice_tests::kafka::{brokers, new_topic, produce, produce_at, read_all};
use sluice_tests::{read_parquet_dir, sorted_rows};

const BASE: i64 = 1_767_225_600_000; // 2026-01-01 00:00:00 UTC

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `{"id": .., "ts": ..}` records, `ts` in seconds after `BASE`.
fn events(rows: &[(i64, i64)]) -> Vec<Vec<u8>> {
    rows.iter()
        .map(|(id, s)| format!(r#"{{"id": {id}, "ts": {}}}"#, BASE + s * 1000).into_bytes())
        .collect()
}

fn source_ddl(topic: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE ev (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts) WITH (
           'connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{}', 'format' = 'json'{extra});\n",
        brokers().expect("broker")
    )
}

/// A job counting `ev` rows per 10-second window into Parquet under `out`.
fn window_job(topic: &str, extra: &str, out: &std::path::Path) -> JobSpec {
    let sql = format!(
        "{}CREATE TABLE counts (window_start TIMESTAMP(3), n BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO counts SELECT window_start, COUNT(*)
           FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '10' SECOND))
           GROUP BY window_start, window_end;",
        source_ddl(topic, extra),
        out.display()
    );
    JobSpec::from_text("kafka.sql", &sql).with_mode(Mode::Stream)
}

/// A job copying `id` of every row into Parquet under `out`.
fn copy_job(topic: &str, extra: &str, out: &std::path::Path) -> JobSpec {
    let sql = format!(
        "{}CREATE TABLE ids (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO ids SELECT id FROM ev;",
        source_ddl(topic, extra),
        out.display()
    );
    JobSpec::from_text("kafka.sql", &sql).with_mode(Mode::Stream)
}

fn rows(dir: &std::path::Path) -> Vec<String> {
    sorted_rows(&read_parquet_dir(dir).expect("output")).expect("format")
}

fn ids(dir: &std::path::Path) -> Vec<i64> {
    let mut ids: Vec<i64> = rows(dir).iter().map(|r| r.parse().expect("id")).collect();
    ids.sort_unstable();
    ids
}

const BOUNDED: &str = ", 'scan.bounded.mode' = 'latest-offset'";

#[test]
fn a_partition_far_behind_holds_the_watermark_and_nothing_is_late() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("behind", 3)).expect("topic");
    rt.block_on(async {
        // Partitions 0 and 1 are minutes ahead of partition 2.
        produce(&topic, 0, &events(&[(1, 100), (2, 105), (3, 200)])).await?;
        produce(&topic, 1, &events(&[(4, 101), (5, 150), (6, 199)])).await?;
        produce(&topic, 2, &events(&[(7, 1), (8, 2), (9, 15)])).await
    })
    .expect("produce");
    for parallelism in [1, 2, 3] {
        let out = tempfile::tempdir().expect("tempdir");
        let job = window_job(&topic, BOUNDED, out.path()).with_parallelism(parallelism);
        let result = rt.block_on(sluice::run(&job)).expect("job");
        assert_eq!(result.rows_in, 9);
        assert_eq!(result.late_rows, 0, "parallelism {parallelism}");
        assert_eq!(
            rows(out.path()),
            vec![
                "2026-01-01T00:00:00, 2",
                "2026-01-01T00:00:10, 1",
                "2026-01-01T00:01:40, 3",
                "2026-01-01T00:02:30, 1",
                "2026-01-01T00:03:10, 1",
                "2026-01-01T00:03:20, 1",
            ],
            "parallelism {parallelism}"
        );
    }
}

/// Longer than anything these tests wait for takes: an event not seen by
/// then is taken not to come.
const EVENTUALLY: Duration = Duration::from_secs(60);

/// Runs `job` until `ready` says so, then stops it; fails the test if
/// `ready` is not true within [`EVENTUALLY`].
fn run_until(
    rt: &tokio::runtime::Runtime,
    job: &JobSpec,
    ready: impl Fn(&JobMetrics) -> bool + Send + 'static,
) -> JobResult {
    let metrics = Arc::new(JobMetrics::default());
    let stop = StopSignal::default();
    let watcher = {
        let metrics = Arc::clone(&metrics);
        let stop = stop.clone();
        rt.spawn(async move {
            let deadline = Instant::now() + EVENTUALLY;
            let mut reached = ready(&metrics);
            while !reached && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                reached = ready(&metrics);
            }
            stop.stop();
            reached
        })
    };
    let result = rt
        .block_on(sluice::run_with(job, metrics, stop))
        .expect("job");
    let reached = rt.block_on(watcher).expect("watcher");
    assert!(
        reached,
        "what the test waited for did not happen within {EVENTUALLY:?}"
    );
    result
}

/// Whether `rows` rows have been read and, since the first moment they
/// had, two checkpoints completed. Checkpoints go one at a time, so the
/// second was triggered after the rows were read; its barriers followed
/// them (and any watermark they moved) through every operator to the
/// sinks. Whatever those rows were going to make happen has happened.
fn read_and_checkpointed(rows: u64) -> impl Fn(&JobMetrics) -> bool + Send + 'static {
    let when_read = std::sync::OnceLock::new();
    move |m| {
        if JobMetrics::get(&m.rows_in) < rows {
            return false;
        }
        let checkpoints = JobMetrics::get(&m.checkpoints);
        checkpoints >= when_read.get_or_init(|| checkpoints) + 2
    }
}

#[test]
fn an_idle_partition_holds_the_watermark_until_the_idle_timeout() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("idle", 2)).expect("topic");
    // Partition 1 stays empty.
    rt.block_on(produce(&topic, 0, &events(&[(1, 1), (2, 12), (3, 25)])))
        .expect("produce");

    // At parallelism 1 both partitions are one subtask's splits; at 2 the
    // empty one is a whole subtask, whose idleness must reach downstream.
    for parallelism in [1, 2] {
        // Without an idle timeout the empty partition holds the watermark at
        // the beginning of time: nothing fires, and stopping fires nothing.
        let out = tempfile::tempdir().expect("tempdir");
        let job = window_job(&topic, "", out.path())
            .with_parallelism(parallelism)
            .with_checkpoint_interval(Duration::from_millis(50));
        // Stop once a checkpoint has passed behind every row: had the rows
        // moved the watermark, the windows would have fired by then.
        let held = run_until(&rt, &job, read_and_checkpointed(3));
        assert!(held.stopped);
        assert_eq!(held.rows_in, 3);
        assert_eq!(held.rows_out, 0, "parallelism {parallelism}");
        assert!(rows(out.path()).is_empty());

        // With one, the windows the data has passed fire while the job runs;
        // the last stays open, and stopping does not fire it. (Checkpoints
        // make a stopped job's output visible: without them a stopped run
        // commits nothing.)
        let out = tempfile::tempdir().expect("tempdir");
        let idle = ", 'scan.watermark.idle-timeout' = '300 ms'";
        let job = window_job(&topic, idle, out.path())
            .with_parallelism(parallelism)
            .with_checkpoint_interval(Duration::from_secs(3600));
        let fired = run_until(&rt, &job, |m| JobMetrics::get(&m.rows_out) >= 2);
        assert!(fired.stopped);
        assert_eq!(
            rows(out.path()),
            vec!["2026-01-01T00:00:00, 1", "2026-01-01T00:00:10, 1"],
            "parallelism {parallelism}"
        );
    }
}

fn bad_topic(rt: &tokio::runtime::Runtime) -> String {
    let topic = rt.block_on(new_topic("bad", 1)).expect("topic");
    let values: Vec<Vec<u8>> = [
        r#"{"id": 1, "ts": "2026-01-01 00:00:01"}"#,
        r#"{"id": 2, "ts": "2026-01-01T00:00:02"}"#,
        r#"{"id": "three", "ts": 1767225603000}"#,
        r#"{"id": 4, "ts": "#,
        r#"{"id": 5, "ts": 1767225605000}"#,
    ]
    .iter()
    .map(|v| v.as_bytes().to_vec())
    .collect();
    rt.block_on(produce(&topic, 0, &values)).expect("produce");
    topic
}

#[test]
fn a_bad_record_stops_the_job_naming_where_it_is() {
    let rt = runtime();
    let topic = bad_topic(&rt);
    let out = tempfile::tempdir().expect("tempdir");
    let error = rt
        .block_on(sluice::run(&copy_job(&topic, BOUNDED, out.path())))
        .expect_err("must fail")
        .to_string();
    assert!(
        error.contains(&format!("topic '{topic}' partition 0 offset 2")),
        "{error}"
    );
    assert!(error.contains("json.ignore-parse-errors"), "{error}");
    assert!(error.contains("three"), "shows the value: {error}");
    assert!(ids(out.path()).is_empty(), "nothing committed");
}

/// Copies the ids of `topic` with the source options `extra`; returns the
/// ids written and the job's counters.
fn copy_counting(
    rt: &tokio::runtime::Runtime,
    topic: &str,
    extra: &str,
) -> (Vec<i64>, Arc<JobMetrics>) {
    let out = tempfile::tempdir().expect("tempdir");
    let metrics = Arc::new(JobMetrics::default());
    let job = copy_job(topic, &format!("{BOUNDED}, {extra}"), out.path());
    rt.block_on(sluice::run_with(
        &job,
        Arc::clone(&metrics),
        StopSignal::default(),
    ))
    .expect("job");
    (ids(out.path()), metrics)
}

#[test]
fn bad_records_can_be_skipped_and_are_counted() {
    let rt = runtime();
    let topic = bad_topic(&rt);
    let (ids, metrics) = copy_counting(&rt, &topic, "'json.ignore-parse-errors' = 'true'");
    assert_eq!(ids, vec![1, 2, 5]);
    assert_eq!(JobMetrics::get(&metrics.records_skipped), 2);
    assert!(
        metrics
            .render("t")
            .contains("sluice_source_records_skipped_total{job=\"t\"} 2")
    );
}

#[test]
fn bad_records_can_go_to_a_dead_letter_topic() {
    let rt = runtime();
    let topic = bad_topic(&rt);
    let dead = rt.block_on(new_topic("dead", 1)).expect("topic");
    let (ids, metrics) = copy_counting(&rt, &topic, &format!("'dead-letter.topic' = '{dead}'"));
    assert_eq!(ids, vec![1, 2, 5]);
    assert_eq!(JobMetrics::get(&metrics.records_dead_lettered), 2);
    let letters = read_all(&dead).expect("dead letters");
    let values: Vec<String> = letters
        .iter()
        .map(|(_, _, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    assert_eq!(
        values,
        vec![
            r#"{"id": "three", "ts": 1767225603000}"#.to_string(),
            r#"{"id": 4, "ts": "#.to_string()
        ]
    );
}

#[test]
fn startup_and_bounded_modes_choose_the_offsets() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("modes", 1)).expect("topic");
    let rows: Vec<(i64, i64)> = (0..10).map(|i| (i, i)).collect();
    let stamps: Vec<i64> = (0..10).map(|i| BASE + i * 1000).collect();
    rt.block_on(produce_at(&topic, 0, &events(&rows), Some(&stamps)))
        .expect("produce");
    let run = |extra: String| {
        let out = tempfile::tempdir().expect("tempdir");
        rt.block_on(sluice::run(&copy_job(&topic, &extra, out.path())))
            .expect("job");
        ids(out.path())
    };
    assert_eq!(run(BOUNDED.to_string()), (0..10).collect::<Vec<_>>());
    assert_eq!(
        run(", 'scan.startup.mode' = 'specific-offsets', 'scan.startup.specific-offsets' = 'partition:0,offset:3', \
             'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = 'partition:0,offset:7'"
            .to_string()),
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        run(format!(
            ", 'scan.startup.mode' = 'timestamp', 'scan.startup.timestamp-millis' = '{}', \
               'scan.bounded.mode' = 'timestamp', 'scan.bounded.timestamp-millis' = '{}'",
            BASE + 6000,
            BASE + 8000
        )),
        vec![6, 7]
    );
    assert_eq!(
        run(format!(", 'scan.startup.mode' = 'latest-offset'{BOUNDED}")),
        Vec::<i64>::new()
    );

    // A group's committed position is where the next run starts.
    let group = sluice_tests::kafka::unique_topic("group");
    let first = run(format!(
        ", 'properties.group.id' = '{group}', 'scan.bounded.mode' = 'specific-offsets', \
           'scan.bounded.specific-offsets' = 'partition:0,offset:4'"
    ));
    assert_eq!(first, vec![0, 1, 2, 3]);
    let second = run(format!(
        ", 'properties.group.id' = '{group}', 'scan.startup.mode' = 'group-offsets'{BOUNDED}"
    ));
    assert_eq!(second, vec![4, 5, 6, 7, 8, 9]);
}

#[test]
fn a_missing_topic_or_an_unbounded_batch_source_is_a_clear_error() {
    let rt = runtime();
    let out = tempfile::tempdir().expect("tempdir");
    let missing = sluice_tests::kafka::unique_topic("missing");
    let error = rt
        .block_on(sluice::run(&copy_job(&missing, BOUNDED, out.path())))
        .expect_err("must fail")
        .to_string();
    assert!(
        error.contains(&format!("topic '{missing}' does not exist")),
        "{error}"
    );

    let topic = rt.block_on(new_topic("batch", 1)).expect("topic");
    let error = rt
        .block_on(sluice::run(
            &copy_job(&topic, "", out.path()).with_mode(Mode::Batch),
        ))
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("'scan.bounded.mode'"), "{error}");
}

/// An aggregate with no window over a topic that never ends is no error,
/// as it was before streams carried updates: its results update, into a
/// sink that takes a changelog.
#[test]
fn an_aggregate_without_a_window_over_an_endless_topic_updates_its_results() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("endless", 1)).expect("topic");
    let sql = format!(
        "{}CREATE TABLE total (n BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO total SELECT COUNT(*) FROM ev;",
        source_ddl(&topic, "")
    );
    let graph = JobSpec::from_text("total.sql", &sql)
        .with_mode(Mode::Stream)
        .graph()
        .expect("an updating aggregate over an endless topic plans");
    let sink = graph
        .nodes
        .iter()
        .find(|n| matches!(n.kind, sluice_engine::plan::NodeKind::Sink(_)))
        .expect("a sink");
    assert!(sink.changelog().updates(), "the sink takes updates");
}

#[test]
fn an_unreachable_broker_fails_within_the_connect_timeout() {
    let rt = runtime();
    let out = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 1.
    let sql = format!(
        "CREATE TABLE ev (id BIGINT) WITH ('connector' = 'kafka', 'topic' = 't',
           'properties.bootstrap.servers' = '127.0.0.1:1', 'format' = 'json',
           'connect.timeout' = '1 s'{BOUNDED});
         CREATE TABLE ids (id BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO ids SELECT id FROM ev;",
        out.path().display()
    );
    let started = Instant::now();
    let error = rt
        .block_on(sluice::run(
            &JobSpec::from_text("kafka.sql", &sql).with_mode(Mode::Stream),
        ))
        .expect_err("must fail");
    // Not a timing target: a bound that tells a clear error from a hang.
    assert!(started.elapsed() < Duration::from_secs(15));
    let message = error.to_string();
    assert!(message.contains("cannot reach the cluster"), "{message}");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(error.is_retryable(), "a broker outage may pass");
}

#[test]
fn the_sink_writes_keys_and_spreads_partitions() {
    let rt = runtime();
    let input = rt.block_on(new_topic("sink-in", 1)).expect("topic");
    let output = rt.block_on(new_topic("sink-out", 2)).expect("topic");
    let rows: Vec<(i64, i64)> = (0..6).map(|i| (i, i)).collect();
    rt.block_on(produce(&input, 0, &events(&rows)))
        .expect("produce");
    let sql = format!(
        "{}CREATE TABLE out_topic (id BIGINT, ts TIMESTAMP(3)) WITH (
           'connector' = 'kafka', 'topic' = '{output}',
           'properties.bootstrap.servers' = '{}', 'format' = 'json',
           'key.fields' = 'id', 'sink.partitioner' = 'round-robin');
         INSERT INTO out_topic SELECT id, ts FROM ev;",
        source_ddl(&input, BOUNDED),
        brokers().expect("broker")
    );
    let result = rt
        .block_on(sluice::run(
            &JobSpec::from_text("sink.sql", &sql)
                .with_mode(Mode::Stream)
                .with_parallelism(1),
        ))
        .expect("job");
    assert_eq!(result.rows_out, 6);
    let records = read_all(&output).expect("read");
    assert_eq!(records.len(), 6);
    let per_partition = |p| records.iter().filter(|r| r.0 == p).count();
    assert_eq!((per_partition(0), per_partition(1)), (3, 3));
    let mut written: Vec<String> = records
        .iter()
        .map(|(_, key, value)| {
            format!(
                "{} {}",
                String::from_utf8_lossy(key.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(value)
            )
        })
        .collect();
    written.sort();
    assert_eq!(
        written[0],
        r#"{"id":0} {"id":0,"ts":"2026-01-01 00:00:00"}"#
    );

    // What the sink wrote reads back through the source unchanged.
    let out = tempfile::tempdir().expect("tempdir");
    rt.block_on(sluice::run(&copy_job(&output, BOUNDED, out.path())))
        .expect("read back");
    assert_eq!(ids(out.path()), (0..6).collect::<Vec<_>>());
}

#[test]
fn a_record_the_broker_refuses_fails_the_job() {
    let rt = runtime();
    let input = rt.block_on(new_topic("refuse-in", 1)).expect("topic");
    let output = rt.block_on(new_topic("refuse-out", 1)).expect("topic");
    rt.block_on(produce(&input, 0, &events(&[(1, 1)])))
        .expect("produce");
    let sql = format!(
        "{}CREATE TABLE out_topic (id BIGINT, padding STRING) WITH (
           'connector' = 'kafka', 'topic' = '{output}',
           'properties.bootstrap.servers' = '{}', 'format' = 'json',
           'properties.message.max.bytes' = '1000');
         INSERT INTO out_topic SELECT id, REPEAT('x', 5000) FROM ev;",
        source_ddl(&input, BOUNDED),
        brokers().expect("broker")
    );
    let error = rt
        .block_on(sluice::run(
            &JobSpec::from_text("refuse.sql", &sql).with_mode(Mode::Stream),
        ))
        .expect_err("a record over the size limit cannot be delivered")
        .to_string();
    assert!(
        error.contains(&format!("delivering a record to topic '{output}'")),
        "{error}"
    );
}

#[test]
fn a_bounded_scan_waits_for_its_stop_offset_and_skips_unnamed_partitions() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("stop", 2)).expect("topic");
    rt.block_on(async {
        produce(&topic, 0, &events(&[(0, 0), (1, 1), (2, 2)])).await?;
        produce(&topic, 1, &events(&[(100, 0)])).await
    })
    .expect("produce");
    let out = tempfile::tempdir().expect("tempdir");
    let job = copy_job(
        &topic,
        ", 'scan.bounded.mode' = 'specific-offsets', 'scan.bounded.specific-offsets' = 'partition:0,offset:5'",
        out.path(),
    );
    let metrics = Arc::new(JobMetrics::default());
    let running = {
        let (job, metrics) = (job.clone(), Arc::clone(&metrics));
        rt.spawn(async move { sluice::run_with(&job, metrics, StopSignal::default()).await })
    };
    // Offsets 3 and 4 do not exist yet: the job must wait for them. Once
    // it has read all there is, the rest is written; that it reads them
    // (below) shows it was still waiting.
    let deadline = Instant::now() + EVENTUALLY;
    while JobMetrics::get(&metrics.rows_in) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(JobMetrics::get(&metrics.rows_in), 3, "read what there is");
    assert!(!running.is_finished(), "stopped before its stop offset");
    rt.block_on(produce(&topic, 0, &events(&[(3, 3), (4, 4), (5, 5)])))
        .expect("produce more");
    let result = rt
        .block_on(async { tokio::time::timeout(EVENTUALLY, running).await })
        .expect("ends once the stop offset is reached")
        .expect("task")
        .expect("job");
    assert_eq!(result.rows_in, 5);
    // Partition 1 is not named, so not read; offset 5 is past the stop.
    assert_eq!(ids(out.path()), vec![0, 1, 2, 3, 4]);
}

/// A partition reopened at a position a batch gave continues with exactly
/// the records after it: what restoring a checkpoint relies on.
#[test]
fn a_partition_resumes_exactly_after_a_position() {
    use futures::StreamExt;
    use sluice_engine::connector::{ConnectorContext, ScanRequest, SplitPosition};
    let rt = runtime();
    let topic = rt.block_on(new_topic("resume", 1)).expect("topic");
    let rows: Vec<(i64, i64)> = (0..10).map(|i| (i, i)).collect();
    rt.block_on(produce(&topic, 0, &events(&rows)))
        .expect("produce");
    let out = tempfile::tempdir().expect("tempdir");
    let job = copy_job(&topic, BOUNDED, out.path())
        .compile()
        .expect("compile");
    let table = job.tables.get("ev").expect("table ev");
    let source = sluice::connectors()
        .create_source(
            table,
            &ConnectorContext {
                mode: Mode::Stream,
                parallelism: 1,
                overwrite: false,
            },
        )
        .expect("source");
    let request = ScanRequest {
        metrics: Arc::new(JobMetrics::default()),
        projection: vec![0],
        schema: Arc::new(table.physical.project(&[0]).expect("project")),
        time_column: None,
        batch_size: 3,
    };
    let splits = rt.block_on(source.plan_splits(request)).expect("splits");
    let read = |position: Option<SplitPosition>| -> Vec<(Vec<i64>, SplitPosition)> {
        rt.block_on(
            Arc::clone(&splits[0])
                .open_at(position)
                .map(|item| {
                    let (batch, position) = item.expect("batch");
                    let ids = arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
                        batch.column(0),
                    )
                    .values()
                    .to_vec();
                    (ids, position)
                })
                .collect::<Vec<_>>(),
        )
    };
    let all = read(None);
    assert_eq!(
        all.iter().flat_map(|a| a.0.clone()).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    for (ids, position) in &all {
        let after = ids.last().copied().unwrap_or(-1) + 1;
        let rest: Vec<i64> = read(Some(position.clone()))
            .into_iter()
            .flat_map(|r| r.0)
            .collect();
        assert_eq!(rest, (after..10).collect::<Vec<_>>(), "after {position:?}");
    }
    // A position past the partition's end was given by another partition
    // of that name: the topic was deleted and created again.
    let mut recreated = Arc::clone(&splits[0]).open_at(Some(SplitPosition::at_offset(25)));
    let err = rt
        .block_on(recreated.next())
        .expect("an item")
        .expect_err("a position past the end")
        .to_string();
    assert!(
        err.contains(&format!(
            "topic '{topic}' partition 0 ends at offset 10, before offset 25, where the checkpoint being restored had read to"
        )),
        "{err}"
    );
}

/// Checkpoints flow through a running stream job: every subtask of every
/// stage acknowledges each one, and the sources record where each partition
/// had got to.
#[test]
fn checkpoints_cover_every_subtask_and_record_partition_offsets() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("checkpoint", 2)).expect("topic");
    rt.block_on(async {
        produce(&topic, 0, &events(&[(1, 1), (2, 12), (3, 25)])).await?;
        produce(&topic, 1, &events(&[(4, 2), (5, 13)])).await
    })
    .expect("produce");
    let out = tempfile::tempdir().expect("tempdir");
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let job = window_job(&topic, "", out.path())
        .with_parallelism(2)
        .with_checkpoint_interval(Duration::from_millis(50))
        .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2);
    let read_all = read_and_checkpointed(5);
    let result = run_until(&rt, &job, move |m| {
        read_all(m) && JobMetrics::get(&m.checkpoints) >= 3
    });
    assert!(result.stopped);
    assert!(
        result.checkpoints.len() >= 3,
        "{} checkpoints",
        result.checkpoints.len()
    );
    let ids: Vec<u64> = result.checkpoints.iter().map(|c| c.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Every checkpoint has both partitions' offsets (from the start, before
    // a partition has yielded anything), never going backwards.
    let offsets = |c: &sluice_engine::checkpoint::protocol::Manifest| -> Vec<i64> {
        let mut positions: Vec<(String, i64)> = c
            .subtasks
            .iter()
            .flat_map(|s| &s.positions)
            .map(|p| {
                let offset = p
                    .position
                    .strip_prefix("offset:")
                    .and_then(|o| o.parse().ok());
                (p.split.clone(), offset.expect("an offset"))
            })
            .collect();
        positions.sort();
        let keys: Vec<&str> = positions.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            keys,
            vec![format!("kafka:{topic}:0"), format!("kafka:{topic}:1")]
        );
        positions.into_iter().map(|p| p.1).collect()
    };
    let mut previous = vec![0, 0];
    for checkpoint in &result.checkpoints {
        let now = offsets(checkpoint);
        assert!(
            now.iter().zip(&previous).all(|(n, p)| n >= p),
            "{previous:?} then {now:?}"
        );
        previous = now;
    }
    assert_eq!(
        previous,
        vec![3, 2],
        "the last checkpoint has read everything"
    );
    let last = result.checkpoints.last().expect("a checkpoint");

    // The manifests were written, the newest two kept, and the newest is
    // what a restore would take.
    use sluice_engine::checkpoint::CheckpointStore;
    let store = sluice_connectors::checkpoints::ObjectCheckpoints::new(
        &checkpoints.path().display().to_string(),
        "kafka",
    )
    .expect("store");
    let listing = rt.block_on(store.list()).expect("list");
    let kept: Vec<u64> = listing.iter().map(|l| l.0).collect();
    assert_eq!(kept, ids[ids.len() - 2..].to_vec());
    let choice = sluice_engine::checkpoint::protocol::choose_restore(listing);
    assert_eq!(choice.checkpoint.as_ref(), Some(last));
}

/// With checkpoints, a running stream job's file output becomes visible as
/// each checkpoint completes, not only when the job ends.
#[test]
fn file_output_becomes_visible_at_each_checkpoint() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("visible", 1)).expect("topic");
    rt.block_on(produce(&topic, 0, &events(&[(1, 1), (2, 12), (3, 25)])))
        .expect("produce");
    let out = tempfile::tempdir().expect("tempdir");
    let visible = {
        let dir = out.path().to_path_buf();
        move || {
            std::fs::read_dir(&dir)
                .map(|entries| {
                    entries.filter_map(|e| e.ok()).any(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        !name.starts_with('.') && !name.starts_with('_')
                    })
                })
                .unwrap_or(false)
        }
    };
    let job = window_job(&topic, "", out.path())
        .with_parallelism(1)
        .with_checkpoint_interval(Duration::from_millis(100));
    // The topic stays open: only a checkpoint can make the fired windows
    // (the watermark passed 00:00:10 and 00:00:20) visible, and the job
    // is stopped only once they are.
    let watched = visible.clone();
    let result = run_until(&rt, &job, move |_| watched());
    assert!(result.stopped);
    assert!(
        result
            .checkpoints
            .iter()
            .any(|c| !c.subtasks.iter().all(|s| s.staged.is_empty())),
        "some checkpoint covered staged output"
    );
    assert!(visible());
    assert!(sluice_tests::staged_files(out.path()).is_empty());
    assert_eq!(
        rows(out.path()),
        vec!["2026-01-01T00:00:00, 1", "2026-01-01T00:00:10, 1"]
    );
}

/// Rows whose event time is null or centuries ahead never reach the
/// watermark: they stop the job, naming where they are, or follow the
/// table's bad-record policy, skipped and counted, or dead-lettered as the
/// decoded row with the reason.
#[test]
fn rows_with_bad_event_times_follow_the_tables_bad_record_policy() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("badtime", 1)).expect("topic");
    let values: Vec<Vec<u8>> = [
        r#"{"id": 1, "ts": "2026-01-01 00:00:01"}"#,
        r#"{"id": 2, "ts": null}"#,
        r#"{"id": 3, "ts": "2999-01-01 00:00:00"}"#,
        r#"{"id": 4, "ts": "2026-01-01 00:00:04"}"#,
    ]
    .iter()
    .map(|v| v.as_bytes().to_vec())
    .collect();
    rt.block_on(produce(&topic, 0, &values)).expect("produce");

    let out = tempfile::tempdir().expect("tempdir");
    let error = rt
        .block_on(sluice::run(&copy_job(&topic, BOUNDED, out.path())))
        .expect_err("a null event time stops the job")
        .to_string();
    assert!(
        error.contains(&format!(
            "table `ev`: topic '{topic}' partition 0 offset 1 has no event time"
        )),
        "{error}"
    );

    let (ids, metrics) = copy_counting(&rt, &topic, "'json.ignore-parse-errors' = 'true'");
    assert_eq!(ids, vec![1, 4]);
    assert_eq!(JobMetrics::get(&metrics.records_skipped), 2);

    let dead = rt.block_on(new_topic("badtime-dead", 1)).expect("topic");
    let (ids, metrics) = copy_counting(&rt, &topic, &format!("'dead-letter.topic' = '{dead}'"));
    assert_eq!(ids, vec![1, 4]);
    assert_eq!(JobMetrics::get(&metrics.records_dead_lettered), 2);
    let letters: Vec<String> = read_all(&dead)
        .expect("dead letters")
        .iter()
        .map(|(_, _, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    assert_eq!(
        letters,
        vec![
            r#"{"id":2}"#.to_string(),
            r#"{"id":3,"ts":"2999-01-01 00:00:00"}"#.to_string()
        ]
    );
}

/// An updating result into `upsert-kafka`: each change of a key is one
/// record keyed by the primary key: `+I` and `+U` the new row, `-U` and
/// `-D` tombstones (as Flink writes them: a `-U` whose `+U` follows is
/// written over at once), so a key whose row was deleted ends with one. Read with Kafka's
/// keep-last-per-key rule (what compaction keeps), the topic holds the
/// batch answer. One row per batch makes the changelog Flink's
/// per-record one, so the tombstone is certain.
#[test]
fn upsert_kafka_writes_the_newest_row_of_each_key_and_tombstones_deletes() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("upsert", 2)).expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bids.json");
    let channels = ["web", "web", "app", "app", "tv"];
    let lines: Vec<String> = channels
        .iter()
        .map(|c| format!("{{\"channel\": \"{c}\"}}"))
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("input");
    let sql = format!(
        "CREATE TABLE bid (channel STRING) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE by_bids (bids BIGINT, channels BIGINT, PRIMARY KEY (bids) NOT ENFORCED) WITH (
           'connector' = 'upsert-kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{}',
           'key.format' = 'json', 'value.format' = 'json');
         CREATE VIEW per_channel AS SELECT channel, COUNT(*) AS bids FROM bid GROUP BY channel;
         INSERT INTO by_bids SELECT bids, COUNT(*) FROM per_channel GROUP BY bids;",
        input.display(),
        brokers().expect("broker")
    );
    rt.block_on(sluice::run(
        &JobSpec::from_text("upsert.sql", &sql)
            .with_mode(Mode::Stream)
            .with_parallelism(1)
            .with_batch_size(1),
    ))
    .expect("job");
    let records = read_all(&topic).expect("read");
    let mut table = std::collections::BTreeMap::new();
    let mut tombstones = 0;
    for (_, key, value) in &records {
        let key = String::from_utf8(key.clone().expect("every record has a key")).expect("utf-8");
        match value.is_empty() {
            true => {
                tombstones += 1;
                table.remove(&key);
            }
            false => {
                table.insert(key, String::from_utf8_lossy(value).to_string());
            }
        }
    }
    // web 2, app 2, tv 1: two channels with 2 bids, one with 1. Bucket 1
    // held web, then app, and lost each (two `-D`); bucket 2 went from one
    // channel to two (a `-U`, then its `+U`).
    assert_eq!(
        table.into_iter().collect::<Vec<_>>(),
        vec![
            (
                r#"{"bids":1}"#.to_string(),
                r#"{"bids":1,"channels":1}"#.to_string()
            ),
            (
                r#"{"bids":2}"#.to_string(),
                r#"{"bids":2,"channels":2}"#.to_string()
            ),
        ]
    );
    assert_eq!(tombstones, 3, "{records:?}");
    // Every change of a key went to one partition.
    for key in [r#"{"bids":1}"#, r#"{"bids":2}"#] {
        let partitions: std::collections::BTreeSet<i32> = records
            .iter()
            .filter(|r| r.1.as_deref() == Some(key.as_bytes()))
            .map(|r| r.0)
            .collect();
        assert_eq!(partitions.len(), 1, "{key}: {partitions:?}");
    }
}

/// The connector needs the primary key its records are keyed by.
#[test]
fn upsert_kafka_without_a_primary_key_is_refused() {
    let sql = "CREATE TABLE src (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '/nonexistent', 'format' = 'json');
         CREATE TABLE t (n BIGINT) WITH ('connector' = 'upsert-kafka', 'topic' = 't',
           'properties.bootstrap.servers' = '127.0.0.1:1', 'key.format' = 'json', 'value.format' = 'json');
         INSERT INTO t SELECT n FROM src;";
    let error = JobSpec::from_text("pk.sql", sql)
        .with_mode(Mode::Stream)
        .graph()
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("needs a PRIMARY KEY (...) NOT ENFORCED"),
        "{error}"
    );
}
