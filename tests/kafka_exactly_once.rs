//! The exactly-once Kafka sink, against librdkafka's in-process mock
//! cluster (the test broker, tansu 0.6, has no transactions).
//!
//! What the mock cluster can show: the transactional protocol runs (init,
//! begin, commit) with checkpoints listing the transactions they commit,
//! the output equals an at-least-once run's, and a restored job's output
//! holds every row. What it cannot: it writes no commit markers, does not
//! hide aborted records from `read_committed` consumers and does not
//! fence, so "nothing twice" is proven with the filesystem sink
//! (tests/recovery.rs), not here. The README says the same.

use std::time::Duration;

use rdkafka::mocking::MockCluster;
use sluice_engine::sql::Mode;
use sluice_tests::mock::{produce_bids, read_committed};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn job(brokers: &str, sink_options: &str) -> String {
    format!(
        "CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH ('connector' = 'kafka', 'topic' = 'in', 'properties.bootstrap.servers' = '{brokers}',
               'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
         CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
         WITH ('connector' = 'kafka', 'topic' = 'out', 'properties.bootstrap.servers' = '{brokers}',
               'format' = 'json' {sink_options});
         INSERT INTO counts SELECT auction, window_start, COUNT(*), MAX(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY auction, window_start, window_end;"
    )
}

/// A mock cluster with topics `in` (holding `bids` bids), `out` and
/// `reference`, and the rows the job writes at least once into
/// `reference`: what the exactly-once runs must write.
fn cluster_and_reference(
    runtime: &tokio::runtime::Runtime,
    bids: usize,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
    Vec<String>,
) {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for topic in ["in", "out", "reference"] {
        cluster.create_topic(topic, 2, 1).expect("topic");
    }
    runtime.block_on(produce_bids(&brokers, "in", 2, bids));
    let reference = job(&brokers, "").replace("'topic' = 'out'", "'topic' = 'reference'");
    runtime
        .block_on(sluice::run(
            &sluice::JobSpec::from_text("reference", &reference).with_mode(Mode::Stream),
        ))
        .expect("reference run");
    let expected = read_committed(&brokers, "reference");
    assert!(!expected.is_empty());
    (cluster, brokers, expected)
}

const EXACTLY_ONCE: &str = ", 'sink.delivery-guarantee' = 'exactly-once', \
     'sink.transactional-id-prefix' = 'sluice-test'";

/// Rows go out in transactions that checkpoints commit: the checkpoints
/// name them, and a `read_committed` consumer reads every row once.
#[test]
fn the_exactly_once_sink_writes_in_transactions_committed_by_checkpoints() {
    let runtime = runtime();
    let (_cluster, brokers, expected) = cluster_and_reference(&runtime, 20_000);

    let checkpoints = tempfile::tempdir().expect("tempdir");
    let spec = sluice::JobSpec::from_text("exactly-once", &job(&brokers, EXACTLY_ONCE))
        .with_mode(Mode::Stream)
        .with_parallelism(2)
        .with_checkpoint_interval(Duration::from_millis(5))
        .with_checkpoint_dir(&checkpoints.path().display().to_string(), 100);
    runtime.block_on(sluice::run(&spec)).expect("run");
    // The checkpoints (the last one, of the job's end, included) list the
    // transactions they committed.
    let mut transactions = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(checkpoints.path().join("exactly-once")).expect("checkpoints") {
        let manifest = entry.expect("entry").path().join("_manifest.json");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let manifest = sluice_engine::checkpoint::protocol::Manifest::parse(&text, "exactly-once")
            .expect("manifest");
        for staged in manifest.subtasks.iter().flat_map(|s| &s.staged) {
            assert_eq!(staged.target, "out");
            transactions.insert(staged.staged.clone());
        }
    }
    assert!(
        transactions.iter().all(|t| t.starts_with("sluice-test-")),
        "{transactions:?}"
    );
    assert!(!transactions.is_empty(), "checkpoints covered transactions");
    let actual = read_committed(&brokers, "out");
    assert_eq!(actual, expected);
}

/// A job crashed after a checkpoint and restored: its lingering
/// transactions are fenced and every row is in the output.
#[test]
fn a_restored_exactly_once_job_writes_every_row() {
    let runtime = runtime();
    let (_cluster, brokers, expected) = cluster_and_reference(&runtime, 20_000);

    let checkpoints = tempfile::tempdir().expect("tempdir");
    let spec = sluice::JobSpec::from_text("exactly-once", &job(&brokers, EXACTLY_ONCE))
        .with_mode(Mode::Stream)
        .with_parallelism(2)
        .with_checkpoint_interval(Duration::from_millis(5))
        .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2)
        .with_restore(sluice::Restore::Latest);
    let crashed = crate::runtime();
    let newest = || {
        std::fs::read_dir(checkpoints.path().join("exactly-once"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("_manifest.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    let running = {
        let spec = spec.clone();
        crashed.spawn(async move { sluice::run(&spec).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while newest() == 0 && !running.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The crash must come after a completed checkpoint and before the end,
    // or the restore below proves nothing.
    let completed = newest();
    assert!(
        completed > 0 && !running.is_finished(),
        "the job ended before its first checkpoint completed: nothing to restore"
    );
    crashed.shutdown_background();
    let restored = runtime.block_on(sluice::run(&spec)).expect("restored run");
    assert!(
        restored.restored_from.is_some() && !restored.already_finished,
        "the second run resumed the crashed one: {:?}",
        restored.restored_from
    );
    let actual = read_committed(&brokers, "out");
    // The mock cluster shows aborted records too, so only "nothing lost"
    // can be checked here.
    for row in &expected {
        assert!(actual.contains(row), "missing {row}");
    }
}

/// Exactly-once needs a transactional-id prefix, and says so.
#[test]
fn exactly_once_without_a_prefix_is_refused() {
    let runtime = runtime();
    let cluster = MockCluster::new(1).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).expect("topic");
    cluster.create_topic("out", 1, 1).expect("topic");
    let spec = sluice::JobSpec::from_text(
        "no-prefix",
        &job(&brokers, ", 'sink.delivery-guarantee' = 'exactly-once'"),
    )
    .with_mode(Mode::Stream);
    let error = runtime.block_on(sluice::run(&spec)).expect_err("refused");
    assert!(
        error.to_string().contains("sink.transactional-id-prefix"),
        "{error}"
    );
}
