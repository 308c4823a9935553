//! The shipped jobs on generated data, each result checked against the same
//! computation in DataFusion over the same files.

use std::path::Path;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use sluice_engine::sql::Mode;
use sluice_tests::{read_parquet_dir, reference, sorted_rows, staged_files};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `sql` in DataFusion over `table` registered from `dir` (and, for
/// Nexmark's `bid`, the `person` and `auction` tables beside it).
fn datafusion_rows(
    runtime: &tokio::runtime::Runtime,
    table: &str,
    dir: &Path,
    sql: &str,
) -> Vec<String> {
    let ctx = SessionContext::new();
    runtime.block_on(async {
        ctx.register_parquet(
            table,
            dir.to_str().expect("utf-8 path"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register");
        if let (Some(parent), "bid") = (dir.parent(), table) {
            for other in ["person", "auction"] {
                let path = parent.join(other);
                if path.exists() {
                    ctx.register_parquet(
                        other,
                        path.to_str().expect("utf-8 path"),
                        ParquetReadOptions::default(),
                    )
                    .await
                    .expect("register");
                }
            }
        }
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        sorted_rows(&batches).expect("format")
    })
}

fn sluice_rows(dir: &Path) -> Vec<String> {
    assert!(
        staged_files(dir).is_empty(),
        "uncommitted files in {}",
        dir.display()
    );
    sorted_rows(&read_parquet_dir(dir).expect("read output")).expect("format")
}

/// Every shipped Nexmark job, in batch mode over Parquet files and in
/// stream mode over Kafka topics holding the same events, gives the rows
/// DataFusion computes from the files.
#[test]
fn nexmark_jobs_match_datafusion_from_files_and_topics() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::nexmark::generate(
        data.path(),
        30_000,
        3,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let brokers = sluice_tests::kafka::brokers().expect("a broker");
    let topic = sluice_tests::kafka::unique_topic("nexmark");
    sluice::generate::nexmark::generate_to(
        &sluice::generate::Destination::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            partitions: 3,
            rate: None,
        },
        30_000,
    )
    .expect("generate to Kafka");
    let runs = [(Mode::Batch, 1), (Mode::Batch, 2), (Mode::Stream, 2)];
    let mut schemas = std::collections::HashMap::new();
    for query in [
        "q0",
        "q1",
        "q2",
        "q3",
        "q5",
        "q5_upstream",
        "q7",
        "q8",
        "q11",
        "q14",
        "q15",
        "q16",
        "q20",
        "q21",
        "q22",
        "q23",
        "tumble",
        "hop",
    ] {
        for (mode, parallelism) in runs {
            let out = tempfile::tempdir().expect("tempdir");
            let job =
                sluice::JobSpec::from_file(&repo().join(format!("jobs/sql/nexmark/{query}.sql")))
                    .expect("job file")
                    .with_var("DATA", &data.path().display().to_string())
                    .with_var("OUT", &out.path().display().to_string())
                    .with_var("KAFKA", &brokers)
                    .with_var("TOPIC", &topic)
                    .with_var("BOUNDED", "latest-offset")
                    .with_mode(mode)
                    .with_parallelism(parallelism)
                    // Checkpoints in both modes must leave the results alone.
                    .with_checkpoint_interval(std::time::Duration::from_millis(5));
            let result = runtime.block_on(sluice::run(&job)).expect("sluice run");
            assert_eq!(result.late_rows, 0, "{query}: generated data is in order");
            // A batch run may end before its first checkpoint; reading
            // topics takes long enough for some.
            assert!(
                mode == Mode::Batch || !result.checkpoints.is_empty(),
                "{query} {mode}: checkpoints were taken"
            );
            let output = out.path().join(query);
            // q15 and q16 update their results in stream mode, written as a
            // changelog.
            let actual = match (mode, query) {
                (Mode::Stream, "q15" | "q16") => {
                    let schema = schemas.get(query).expect("the batch run's schema");
                    sluice_tests::changelog_rows(&output, schema).expect("changelog")
                }
                _ => {
                    if let Some(file) = std::fs::read_dir(&output)
                        .expect("output")
                        .filter_map(|e| e.ok())
                        .find(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                    {
                        let reader =
                            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                                std::fs::File::open(file.path()).expect("open"),
                            )
                            .expect("parquet");
                        schemas.insert(query, std::sync::Arc::clone(reader.schema()));
                    }
                    sluice_rows(&output)
                }
            };
            let expected = datafusion_rows(
                &runtime,
                "bid",
                &data.path().join("bid"),
                reference::nexmark(query).expect("reference query"),
            );
            assert!(!expected.is_empty(), "{query}: the reference has no rows");
            assert_eq!(
                actual.len(),
                expected.len(),
                "{query} {mode} at parallelism {parallelism}: row counts"
            );
            assert!(
                actual == expected,
                "{query} {mode} at parallelism {parallelism}: rows differ"
            );
        }
    }
}

/// The windowed Nexmark jobs in stream mode over JSON-lines files cut into
/// many small splits (two subtasks keeping in step, each split's watermark
/// bound taken from its first line) give the rows DataFusion computes from
/// Parquet files of the same events, with no row late: the generator's
/// disorder stays within the watermark bound across split boundaries too.
#[test]
fn nexmark_windows_over_split_json_lines_match_datafusion() {
    let runtime = runtime();
    let parquet = tempfile::tempdir().expect("tempdir");
    let json = tempfile::tempdir().expect("tempdir");
    let events = 30_000;
    for (dir, format) in [
        (&parquet, sluice::generate::FileFormat::Parquet),
        (&json, sluice::generate::FileFormat::Json),
    ] {
        sluice::generate::nexmark::generate(dir.path(), events, 3, format).expect("generate");
    }
    for query in ["tumble", "hop", "q5"] {
        let path = repo().join(format!("jobs/sql/nexmark/{query}.sql"));
        let text = std::fs::read_to_string(&path).expect("job file");
        let text =
            sluice_tests::over_json_lines(&text, "bid", Some("64kb")).expect("the bid table");
        let out = tempfile::tempdir().expect("tempdir");
        let job = sluice::JobSpec::from_text(query, &text)
            .with_var("DATA", &json.path().display().to_string())
            .with_var("OUT", &out.path().display().to_string())
            .with_mode(Mode::Stream)
            .with_parallelism(2)
            .with_checkpoint_interval(std::time::Duration::from_millis(5));
        let result = runtime.block_on(sluice::run(&job)).expect("sluice run");
        assert_eq!(result.late_rows, 0, "{query}: no row is late");
        let expected = datafusion_rows(
            &runtime,
            "bid",
            &parquet.path().join("bid"),
            reference::nexmark(query).expect("reference query"),
        );
        let bids = datafusion_rows(
            &runtime,
            "bid",
            &parquet.path().join("bid"),
            "SELECT COUNT(*) FROM bid",
        );
        assert_eq!(
            vec![result.rows_in.to_string()],
            bids,
            "{query}: every bid read once"
        );
        let actual = sluice_rows(&out.path().join(query));
        assert!(!expected.is_empty(), "{query}: the reference has no rows");
        assert!(actual == expected, "{query}: rows differ from DataFusion's");
    }
}

/// A JSON-lines file has no statistics, but its splits' first lines tell
/// the watermark where they start: while the earlier file is read, event
/// time moves on, so a row there out of order by more than the watermark's
/// delay is late, in both modes, as it is over Parquet files with
/// statistics. (Before, every split still to come held the watermark at the
/// start of time and no window fired until the last file was open.)
#[test]
fn json_lines_move_event_time_before_the_last_file() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("tempdir");
    let row = |auction: i64, second: u32| {
        format!("{{\"auction\": {auction}, \"ts\": \"2026-01-01T00:00:{second:02}\"}}\n")
    };
    // The first file ends with a row 25 s behind its predecessor.
    let first: String = [row(1, 10), row(1, 20), row(1, 30), row(1, 5)].concat();
    let second: String = [row(2, 40), row(2, 50)].concat();
    std::fs::write(data.path().join("part-0.json"), first).expect("write");
    std::fs::write(data.path().join("part-1.json"), second).expect("write");
    let job = format!(
        "CREATE TABLE bid (auction BIGINT, ts TIMESTAMP(3),
           WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
         CREATE TABLE counts (window_start TIMESTAMP(3), bids BIGINT)
         WITH ('connector' = 'filesystem', 'path' = '${{OUT}}', 'format' = 'parquet');
         INSERT INTO counts
         SELECT window_start, COUNT(*)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
         GROUP BY window_start, window_end;",
        data.path().display()
    );
    for mode in [Mode::Stream, Mode::Batch] {
        let out = tempfile::tempdir().expect("tempdir");
        let spec = sluice::JobSpec::from_text("late_json", &job)
            .with_var("OUT", &out.path().display().to_string())
            .with_mode(mode)
            .with_parallelism(1);
        let result = runtime.block_on(sluice::run(&spec)).expect("sluice run");
        assert_eq!(result.rows_in, 6, "{mode}");
        assert_eq!(result.late_rows, 1, "{mode}: the row at 00:05 is late");
        let rows = sluice_rows(out.path());
        let starts: Vec<&str> = rows.iter().filter_map(|r| r.split(", ").next()).collect();
        assert_eq!(
            starts,
            ["10", "20", "30", "40", "50"].map(|s| format!("2026-01-01T00:00:{s}")),
            "{mode}: one row per window but the late row's"
        );
    }
}

/// The Flink Nexmark benchmark's DDL and views over the `nexmark` source
/// give, in both modes, what the same queries give over files that
/// `sluice gen nexmark` wrote for the same number of events.
#[test]
fn flink_nexmark_ddl_over_the_nexmark_source_matches_generated_files() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::nexmark::generate(
        data.path(),
        30_000,
        2,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let bids = data.path().join("bid");
    let expected_q1 = datafusion_rows(
        &runtime,
        "bid",
        &bids,
        reference::nexmark("q1").expect("q1"),
    );
    let expected_tumble = datafusion_rows(
        &runtime,
        "bid",
        &bids,
        reference::nexmark("tumble").expect("tumble"),
    );
    for (mode, parallelism) in [(Mode::Batch, 2), (Mode::Stream, 1), (Mode::Stream, 2)] {
        let out = tempfile::tempdir().expect("tempdir");
        let job = sluice::JobSpec::from_file(&repo().join("jobs/sql/nexmark/datagen.sql"))
            .expect("job file")
            .with_var("EVENTS", "30000")
            .with_var("OUT", &out.path().display().to_string())
            .with_mode(mode)
            .with_parallelism(parallelism);
        let result = runtime.block_on(sluice::run(&job)).expect("sluice run");
        assert_eq!(result.rows_in, 30_000);
        assert_eq!(result.late_rows, 0);
        let context = format!("{mode} at parallelism {parallelism}");
        assert!(
            sluice_rows(&out.path().join("datagen_q1")) == expected_q1,
            "q1 {context}"
        );
        assert!(
            sluice_rows(&out.path().join("datagen_tumble")) == expected_tumble,
            "tumble {context}"
        );
        let persons: u64 = sluice_rows(&out.path().join("datagen_arrivals"))
            .iter()
            .map(|r| {
                r.rsplit(", ")
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("count")
            })
            .sum();
        assert_eq!(persons, 600, "{context}: one event in 50 is a person");
    }
}

#[test]
fn game_daily_matches_datafusion_in_both_modes() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::game::generate(
        data.path(),
        40_000,
        3,
        3,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let events = data.path().join("events");
    let expected_stats =
        datafusion_rows(&runtime, "events", &events, reference::GAME_DAILY_APP_STATS);
    let expected_bad = datafusion_rows(&runtime, "events", &events, reference::GAME_BAD_EVENTS);
    let expected_distribution = datafusion_rows(
        &runtime,
        "events",
        &events,
        reference::GAME_PLAYTIME_DISTRIBUTION,
    );
    assert_eq!(expected_stats.len(), 12, "4 apps over 3 days");
    assert!(
        !expected_bad.is_empty(),
        "the generator writes malformed events"
    );
    let mut distributions = Vec::new();
    for mode in [Mode::Batch, Mode::Stream] {
        let out = tempfile::tempdir().expect("tempdir");
        let job = sluice::JobSpec::from_file(&repo().join("jobs/sql/game_daily.sql"))
            .expect("job file")
            .with_var("DATA", &data.path().display().to_string())
            .with_var("OUT", &out.path().display().to_string())
            .with_mode(mode);
        let result = runtime.block_on(sluice::run(&job)).expect("sluice run");
        assert_eq!(result.rows_in, 40_000);
        assert_eq!(result.late_rows, 0, "jitter is within the watermark bound");
        assert_eq!(
            sluice_rows(&out.path().join("daily_app_stats")),
            expected_stats,
            "{mode}"
        );
        assert_eq!(
            sluice_rows(&out.path().join("bad_events")),
            expected_bad,
            "{mode}"
        );
        let distribution = sluice_rows(&out.path().join("playtime_distribution"));
        assert_eq!(distribution, expected_distribution, "{mode}");
        // Every active player of an app and day lands in exactly one bucket.
        let players: u64 = distribution
            .iter()
            .map(|r| {
                r.rsplit(", ")
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("count")
            })
            .sum();
        let active: u64 = expected_stats
            .iter()
            .map(|r| {
                r.split(", ")
                    .nth(3)
                    .and_then(|n| n.parse::<u64>().ok())
                    .expect("count")
            })
            .sum();
        assert_eq!(players, active, "{mode}: buckets cover every active player");
        distributions.push(distribution);
    }
    assert_eq!(distributions[0], distributions[1], "batch and stream agree");
}

/// Regular inner joins (Nexmark q3's and q20's shapes, and a three-way
/// one like q23's) over the files `sluice gen nexmark` writes give, at
/// parallelism 1 and 2, what DataFusion's own join gives over the same
/// files.
#[test]
fn inner_joins_match_datafusion() {
    let runtime = runtime();
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::nexmark::generate(
        data.path(),
        30_000,
        3,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let queries = [
        (
            "q3",
            "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P ON A.seller = P.id \
             WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')",
            "name STRING, city STRING, state STRING, id BIGINT",
        ),
        (
            "q20",
            "SELECT B.auction, B.bidder, B.price, A.item_name, A.category FROM bid AS B INNER JOIN auction AS A ON B.auction = A.id \
             WHERE A.category = 10",
            "auction BIGINT, bidder BIGINT, price BIGINT, item_name STRING, category BIGINT",
        ),
        (
            "three_way",
            "SELECT B.auction, B.price, P.name FROM bid AS B JOIN auction AS A ON B.auction = A.id \
             JOIN person AS P ON A.seller = P.id WHERE B.price > 10000000",
            "auction BIGINT, price BIGINT, name STRING",
        ),
    ];
    let expected: Vec<Vec<String>> = runtime.block_on(async {
        let ctx = SessionContext::new();
        sluice_tests::register_nexmark_files(&ctx, data.path())
            .await
            .expect("register");
        let mut expected = Vec::new();
        for (_, sql, _) in &queries {
            let batches = ctx
                .sql(sql)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            expected.push(sorted_rows(&batches).expect("format"));
        }
        expected
    });
    assert!(
        expected.iter().all(|rows| !rows.is_empty()),
        "every query has rows to compare"
    );
    for parallelism in [1, 2] {
        let out = tempfile::tempdir().expect("tempdir");
        let mut job = String::new();
        for (table, columns) in [
            (
                "person",
                "id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, state STRING, date_time TIMESTAMP(3), extra STRING",
            ),
            (
                "auction",
                "id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, date_time TIMESTAMP(3), expires TIMESTAMP(3), seller BIGINT, category BIGINT, extra STRING",
            ),
            (
                "bid",
                "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time TIMESTAMP(3), extra STRING",
            ),
        ] {
            job.push_str(&format!(
                "CREATE TABLE {table} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n",
                data.path().join(table).display()
            ));
        }
        for (name, sql, columns) in &queries {
            job.push_str(&format!(
                "CREATE TABLE out_{name} ({columns}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\nINSERT INTO out_{name} {sql};\n",
                out.path().join(name).display()
            ));
        }
        let spec = sluice::JobSpec::from_text("joins.sql", &job).with_parallelism(parallelism);
        runtime.block_on(sluice::run(&spec)).expect("sluice run");
        for ((name, _, _), expected) in queries.iter().zip(&expected) {
            assert!(
                sluice_rows(&out.path().join(name)) == *expected,
                "{name} at parallelism {parallelism}"
            );
        }
    }
}
