//! Changelogs read back: Debezium envelopes from files and from Kafka, and
//! `upsert-kafka` topics, in both modes, against the real test broker.
//! Each gives the table its changes leave, the same in batch and stream
//! mode, so jobs can chain through changelogs.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice::JobSpec;
use sluice_engine::sql::Mode;
use sluice_tests::kafka::{brokers, new_topic, produce, produce_keyed};
use sluice_tests::{changelog_rows, read_parquet_dir, sorted_rows};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn run(sql: &str, mode: Mode, parallelism: usize) -> Result<(), String> {
    runtime()
        .block_on(sluice::run(
            &JobSpec::from_text("changelog.sql", sql)
                .with_mode(mode)
                .with_parallelism(parallelism),
        ))
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn parquet_rows(dir: &Path) -> Vec<String> {
    sorted_rows(&read_parquet_dir(dir).expect("output")).expect("rows")
}

/// `(channel STRING, bids BIGINT)`, as the totals below are.
fn totals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("channel", DataType::Utf8, true),
        Field::new("bids", DataType::Int64, true),
    ]))
}

/// What a job over the changelog `source` (a `CREATE TABLE` of
/// `(channel STRING, bids BIGINT)`) computes: the rows, and the sum of
/// `bids` over all channels. In batch mode both are Parquet; in stream
/// mode the sum updates and is written as a Debezium changelog.
fn read_back(source: &str, mode: Mode, parallelism: usize) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rows, sum) = (dir.path().join("rows"), dir.path().join("sum"));
    let sum_format = match mode {
        Mode::Batch => "parquet",
        Mode::Stream => "debezium-json",
    };
    let sql = format!(
        "{source}
         CREATE TABLE copy (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = '{sum_format}');
         CREATE TABLE total (bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = '{sum_format}');
         INSERT INTO copy SELECT channel, bids FROM totals;
         INSERT INTO total SELECT SUM(bids) FROM totals;",
        rows.display(),
        sum.display()
    );
    run(&sql, mode, parallelism).unwrap_or_else(|e| panic!("{mode:?} p={parallelism}: {e}"));
    match mode {
        Mode::Batch => (parquet_rows(&rows), parquet_rows(&sum)),
        Mode::Stream => {
            let total = Arc::new(Schema::new(vec![Field::new("bids", DataType::Int64, true)]));
            (
                changelog_rows(&rows, &totals_schema()).expect("rows"),
                changelog_rows(&sum, &total).expect("sum"),
            )
        }
    }
}

/// Every mode and parallelism reads `source` as `rows`, summing to `sum`.
fn check_everywhere(source: &str, rows: &[&str], sum: &str) {
    for mode in [Mode::Batch, Mode::Stream] {
        for parallelism in [1, 2] {
            let (got, total) = read_back(source, mode, parallelism);
            assert_eq!(got, rows, "{mode:?} p={parallelism}");
            assert_eq!(total, [sum], "{mode:?} p={parallelism}");
        }
    }
}

fn envelope(op: &str, before: Option<(&str, i64)>, after: Option<(&str, i64)>) -> String {
    let image = |row: Option<(&str, i64)>| match row {
        Some((c, n)) => format!(r#"{{"channel": "{c}", "bids": {n}}}"#),
        None => "null".to_string(),
    };
    format!(
        r#"{{"before": {}, "after": {}, "op": "{op}", "ts_ms": 1767225600000}}"#,
        image(before),
        image(after)
    )
}

/// Debezium files are a multiset of changes: a delete in one file takes
/// back a create in another, whichever is read first, in both modes.
#[test]
fn debezium_files_are_read_as_the_table_their_changes_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = [
        vec![
            envelope("c", None, Some(("web", 1))),
            envelope("u", Some(("web", 1)), Some(("web", 2))),
            // Takes back the create of the next file.
            envelope("d", Some(("tv", 7)), None),
        ],
        vec![
            envelope("r", None, Some(("tv", 7))),
            envelope("c", None, Some(("app", 3))),
            envelope("u", Some(("app", 3)), Some(("app", 5))),
        ],
    ];
    for (i, lines) in files.iter().enumerate() {
        std::fs::write(dir.path().join(format!("part-{i}.json")), lines.join("\n")).expect("write");
    }
    let source = format!(
        "CREATE TABLE totals (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');",
        dir.path().display()
    );
    check_everywhere(&source, &["app, 5", "web, 2"], "7");
}

/// A stream job's updating result, written as Debezium files, is read by a
/// batch job as the stream's final table.
#[test]
fn a_stream_jobs_changelog_files_feed_a_batch_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bids.json");
    let bids = ["web", "app", "web", "tv", "web", "app"];
    let lines: Vec<String> = bids
        .iter()
        .map(|c| format!(r#"{{"channel": "{c}"}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("input");
    let changelog = dir.path().join("totals");
    let sql = format!(
        "CREATE TABLE bid (channel STRING) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE totals (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');
         INSERT INTO totals SELECT channel, COUNT(*) FROM bid GROUP BY channel;",
        input.display(),
        changelog.display()
    );
    runtime()
        .block_on(sluice::run(
            &JobSpec::from_text("totals.sql", &sql)
                .with_mode(Mode::Stream)
                .with_parallelism(2)
                .with_batch_size(1),
        ))
        .expect("stream job");
    let source = format!(
        "CREATE TABLE totals (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');",
        changelog.display()
    );
    let (rows, sum) = read_back(&source, Mode::Batch, 2);
    assert_eq!(rows, ["app, 2", "tv, 1", "web, 3"]);
    assert_eq!(sum, ["6"]);
}

/// Debezium's records on a topic (one partition per key, as Debezium
/// keys them) are a changelog in order: an aggregate over them retracts.
#[test]
fn debezium_json_records_from_kafka_are_a_changelog() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("cdc", 2)).expect("topic");
    let partitions = [
        vec![
            envelope("r", None, Some(("web", 1))),
            envelope("u", Some(("web", 1)), Some(("web", 4))),
            envelope("u", Some(("web", 4)), Some(("web", 6))),
        ],
        vec![
            envelope("c", None, Some(("tv", 2))),
            envelope("d", Some(("tv", 2)), None),
            envelope("c", None, Some(("app", 3))),
        ],
    ];
    for (p, values) in partitions.iter().enumerate() {
        let values: Vec<Vec<u8>> = values.iter().map(|v| v.clone().into_bytes()).collect();
        rt.block_on(produce(&topic, p as i32, &values))
            .expect("produce");
    }
    let source = format!(
        "CREATE TABLE totals (channel STRING, bids BIGINT) WITH (
           'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
           'format' = 'debezium-json', 'scan.bounded.mode' = 'latest-offset');",
        brokers().expect("broker")
    );
    check_everywhere(&source, &["app, 3", "web, 6"], "9");
}

/// An envelope that is not a change stops the job, naming its record, or
/// is skipped when the table says so.
#[test]
fn a_bad_debezium_record_is_named_or_skipped() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("cdc-bad", 1)).expect("topic");
    let values = [
        envelope("c", None, Some(("web", 1))),
        // An update without its row before: no full replica identity.
        envelope("u", None, Some(("web", 2))),
        envelope("c", None, Some(("tv", 5))),
    ];
    let values: Vec<Vec<u8>> = values.iter().map(|v| v.clone().into_bytes()).collect();
    rt.block_on(produce(&topic, 0, &values)).expect("produce");
    let source = |extra: &str| {
        format!(
            "CREATE TABLE totals (channel STRING, bids BIGINT) WITH (
               'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
               'format' = 'debezium-json', 'scan.bounded.mode' = 'latest-offset'{extra});",
            brokers().expect("broker")
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = format!(
        "{}CREATE TABLE out (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO out SELECT * FROM totals;",
        source(""),
        dir.path().join("out").display()
    );
    let error = run(&sql, Mode::Batch, 1).expect_err("a bad record");
    assert!(
        error.contains(&format!("topic '{topic}' partition 0 offset 1"))
            && error.contains("REPLICA IDENTITY FULL")
            && error.contains("debezium-json.ignore-parse-errors"),
        "{error}"
    );
    let (rows, sum) = read_back(
        &source(", 'debezium-json.ignore-parse-errors' = 'true'"),
        Mode::Batch,
        1,
    );
    assert_eq!(rows, ["tv, 5", "web, 1"]);
    assert_eq!(sum, ["6"]);
}

/// Records of an `upsert-kafka` table: the key and the row after it, or
/// no value at all. (A computed column is in neither.)
fn upsert_source(topic: &str, extra: &str) -> String {
    format!(
        "CREATE TABLE totals (channel STRING, bids BIGINT, doubled AS bids * 2,
           PRIMARY KEY (channel) NOT ENFORCED) WITH (
           'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
           'key.format' = 'json', 'value.format' = 'json',
           'scan.bounded.mode' = 'latest-offset'{extra});",
        brokers().expect("broker")
    )
}

/// A compacted topic read back: the last value of each key, a tombstone
/// deleting its key, a value equal to the last one changing nothing. In
/// stream mode the aggregate over it takes back each key's old row.
#[test]
fn upsert_kafka_is_read_as_the_last_row_of_each_key() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("upserts", 2)).expect("topic");
    let key = |c: &str| format!(r#"{{"channel": "{c}"}}"#);
    let row = |c: &str, n: i64| format!(r#"{{"channel": "{c}", "bids": {n}}}"#);
    let (web, tv, app) = (key("web"), key("tv"), key("app"));
    let (web1, web4, tv2, app3, app9) = (
        row("web", 1),
        row("web", 4),
        row("tv", 2),
        row("app", 3),
        row("app", 9),
    );
    rt.block_on(produce_keyed(
        &topic,
        0,
        &[
            (Some(&web), Some(&web1)),
            (Some(&tv), Some(&tv2)),
            (Some(&web), Some(&web4)),
            (Some(&web), Some(&web4)),
            (Some(&tv), None),
            // A tombstone of a key never seen changes nothing.
            (Some(&key("radio")), None),
        ],
    ))
    .expect("produce");
    rt.block_on(produce_keyed(
        &topic,
        1,
        &[(Some(&app), Some(&app3)), (Some(&app), Some(&app9))],
    ))
    .expect("produce");
    check_everywhere(&upsert_source(&topic, ""), &["app, 9", "web, 4"], "13");
}

/// A job's upserts are read back by another job: the chain through a
/// compacted topic gives the first job's final table.
#[test]
fn upsert_kafka_round_trips_between_jobs() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("upsert-chain", 2)).expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("bids.json");
    let bids = ["web", "app", "web", "tv", "web", "app", "radio"];
    let lines: Vec<String> = bids
        .iter()
        .map(|c| format!(r#"{{"channel": "{c}"}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("input");
    let sql = format!(
        "CREATE TABLE bid (channel STRING) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE totals (channel STRING, bids BIGINT, PRIMARY KEY (channel) NOT ENFORCED) WITH (
           'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
           'key.format' = 'json', 'value.format' = 'json');
         INSERT INTO totals SELECT channel, COUNT(*) FROM bid GROUP BY channel;",
        input.display(),
        brokers().expect("broker")
    );
    rt.block_on(sluice::run(
        &JobSpec::from_text("totals.sql", &sql)
            .with_mode(Mode::Stream)
            .with_parallelism(2)
            .with_batch_size(1),
    ))
    .expect("writing job");
    check_everywhere(
        &upsert_source(&topic, ""),
        &["app, 2", "radio, 1", "tv, 1", "web, 3"],
        "7",
    );
}

/// Records an upsert table cannot use are named: one without a key, one
/// whose value is not its row.
#[test]
fn upsert_records_without_a_key_or_with_a_bad_value_are_named() {
    let rt = runtime();
    let topic = rt.block_on(new_topic("upsert-bad", 1)).expect("topic");
    let web = r#"{"channel": "web"}"#;
    rt.block_on(produce_keyed(
        &topic,
        0,
        &[
            (Some(web), Some(r#"{"channel": "web", "bids": 1}"#)),
            (None, Some(r#"{"channel": "tv", "bids": 2}"#)),
            (Some(web), Some(r#"{"channel": "web", "bids": "many"}"#)),
        ],
    ))
    .expect("produce");
    let dir = tempfile::tempdir().expect("tempdir");
    let sql = format!(
        "{}CREATE TABLE out (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO out SELECT channel, bids FROM totals;",
        upsert_source(&topic, ""),
        dir.path().join("out").display()
    );
    let error = run(&sql, Mode::Batch, 1).expect_err("no key");
    assert!(
        error.contains(&format!("topic '{topic}' partition 0 offset 1"))
            && error.contains("has no key"),
        "{error}"
    );
    let (rows, _) = read_back(
        &upsert_source(&topic, ", 'value.json.ignore-parse-errors' = 'true'"),
        Mode::Batch,
        1,
    );
    assert_eq!(rows, ["web, 1"]);

    // A value that is not the table's row is named too.
    let topic = rt
        .block_on(new_topic("upsert-bad-value", 1))
        .expect("topic");
    rt.block_on(produce_keyed(
        &topic,
        0,
        &[(Some(web), Some(r#"{"channel": "web", "bids": "many"}"#))],
    ))
    .expect("produce");
    let sql = format!(
        "{}CREATE TABLE out (channel STRING, bids BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
         INSERT INTO out SELECT channel, bids FROM totals;",
        upsert_source(&topic, ""),
        dir.path().join("out2").display()
    );
    let error = run(&sql, Mode::Batch, 1).expect_err("a bad value");
    assert!(
        error.contains(&format!("topic '{topic}' partition 0 offset 0"))
            && error.contains("cannot decode the record as JSON")
            && error.contains("value.json.ignore-parse-errors"),
        "{error}"
    );
}

/// An updating result whose changes of one primary key can come from
/// several subtasks (here a join's, keyed by the auction, written by the
/// bidder) goes through an upsert materializer before the upsert sink, so
/// a late retraction never deletes the row that replaced it; a result
/// keyed by the sink's key does not need one. The topic, read back, holds
/// the final table either way.
#[test]
fn an_upsert_sink_keyed_otherwise_than_its_input_takes_a_materializer() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (auctions, bids) = (
        dir.path().join("auctions.json"),
        dir.path().join("bids.json"),
    );
    let lines = |rows: &[String]| rows.join("\n");
    std::fs::write(
        &auctions,
        lines(
            &(1..=4)
                .map(|a| format!(r#"{{"id": {a}, "seller": {}}}"#, a * 10))
                .collect::<Vec<_>>(),
        ),
    )
    .expect("auctions");
    // Bidder b bids on auctions b and b + 1: its best seller changes.
    std::fs::write(
        &bids,
        lines(
            &(1..=3)
                .flat_map(|b| [(b, b), (b, b + 1)])
                .map(|(bidder, auction)| format!(r#"{{"bidder": {bidder}, "auction": {auction}}}"#))
                .collect::<Vec<_>>(),
        ),
    )
    .expect("bids");
    let job = |topic: &str, query: &str| {
        format!(
            "CREATE TABLE auction (id BIGINT, seller BIGINT) WITH (
               'connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE bid (bidder BIGINT, auction BIGINT) WITH (
               'connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
             CREATE TABLE best (bidder BIGINT, seller BIGINT, PRIMARY KEY (bidder) NOT ENFORCED) WITH (
               'connector' = 'upsert-kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{}',
               'key.format' = 'json', 'value.format' = 'json');
             INSERT INTO best {query};",
            auctions.display(),
            bids.display(),
            brokers().expect("broker")
        )
    };
    let by_join = "SELECT B.bidder, A.seller FROM bid B JOIN (
                     SELECT bidder, MAX(auction) AS auction FROM bid GROUP BY bidder) M
                   ON B.bidder = M.bidder AND B.auction = M.auction
                   JOIN auction A ON A.id = B.auction";
    let by_key = "SELECT bidder, MAX(auction) * 10 FROM bid GROUP BY bidder";
    for (query, materialized) in [(by_join, true), (by_key, false)] {
        let topic = rt.block_on(new_topic("best", 2)).expect("topic");
        let spec = JobSpec::from_text("best.sql", &job(&topic, query))
            .with_mode(Mode::Stream)
            .with_parallelism(2)
            .with_batch_size(1);
        let graph = spec.graph().expect("plan");
        let names: Vec<String> = graph.nodes.iter().map(|n| n.name()).collect();
        assert_eq!(
            names.iter().any(|n| n == "UpsertMaterialize"),
            materialized,
            "{names:?}"
        );
        rt.block_on(sluice::run(&spec)).expect("job");
        let records = sluice_tests::kafka::read_all(&topic).expect("read");
        let mut table = std::collections::BTreeMap::new();
        for (_, key, value) in &records {
            let key = String::from_utf8(key.clone().expect("a key")).expect("utf-8");
            match value.is_empty() {
                true => table.remove(&key),
                false => table.insert(key, String::from_utf8_lossy(value).to_string()),
            };
        }
        let table: Vec<String> = table.into_values().collect();
        assert_eq!(
            table,
            [
                r#"{"bidder":1,"seller":20}"#,
                r#"{"bidder":2,"seller":30}"#,
                r#"{"bidder":3,"seller":40}"#
            ],
            "{query}: {records:?}"
        );
    }
}
