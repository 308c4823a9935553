//! Stream mode: the same queries over the same Nexmark bids read as a stream
//! from JSON-lines files, from the `nexmark` source, and from Kafka, next to
//! the batch run over Parquet.
//!
//! ```text
//! cargo run --release -p sluice-benches --bin stream-bench -- \
//!     --events 10869566 --kafka-events 1086957 --parallelism 2
//! ```
//!
//! Kafka is librdkafka's in-process mock cluster: the test broker (tansu) is
//! a correctness broker, far slower than Sluice, so it would measure itself.
//! The mock cluster keeps only about 5 MB per partition, so the Kafka run
//! uses fewer events over many partitions, and checks that none was dropped.
//! Every run of a query must write as many rows as the batch run over
//! Parquet (the sinks count them), so a fast wrong answer cannot pass.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rdkafka::mocking::MockCluster;
use sluice::JobSpec;
use sluice::generate::{Destination, FileFormat};
use sluice_engine::sql::Mode;

#[path = "mock_kafka.rs"]
mod mock_kafka;

#[derive(Parser)]
struct Args {
    /// Nexmark events for the files and the nexmark source.
    #[arg(long, default_value_t = 10_869_566)]
    events: u64,
    /// Nexmark events whose bids go through Kafka (the mock cluster keeps
    /// about 5 MB, some 16,000 bids, per partition).
    #[arg(long, default_value_t = 543_478)]
    kafka_events: u64,
    /// Partitions of the mock cluster's topic.
    #[arg(long, default_value_t = 32)]
    kafka_partitions: i32,
    /// Where the Parquet and JSON-lines files are kept between runs.
    #[arg(long, default_value = "/tmp/sluice-stream-bench")]
    data: PathBuf,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Runs of each; the best is reported.
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Sources to run: parquet, json, nexmark, kafka.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "parquet,json,nexmark,kafka"
    )]
    sources: Vec<String>,
}

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
     date_time TIMESTAMP(3), extra STRING, \
     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND";

/// The queries, over a table or view named `bid` with Nexmark's bid columns
/// (`date_time`, or `dateTime` for the Flink DDL), into a blackhole.
fn queries(time: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "passthrough",
            "CREATE TABLE out_rows (auction BIGINT, price BIGINT) WITH ('connector' = 'blackhole');
             INSERT INTO out_rows SELECT auction, price FROM bid;"
                .to_string(),
        ),
        (
            "tumble",
            format!(
                "CREATE TABLE out_rows (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
                   WITH ('connector' = 'blackhole');
                 INSERT INTO out_rows SELECT auction, window_start, COUNT(*), MAX(price)
                 FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR({time}), INTERVAL '10' SECOND))
                 GROUP BY auction, window_start, window_end;"
            ),
        ),
        (
            "hop",
            format!(
                "CREATE TABLE out_rows (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT)
                   WITH ('connector' = 'blackhole');
                 INSERT INTO out_rows SELECT auction, window_start, COUNT(*)
                 FROM TABLE(HOP(TABLE bid, DESCRIPTOR({time}), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                 GROUP BY auction, window_start, window_end;"
            ),
        ),
    ]
}

fn datagen_ddl(events: u64) -> String {
    let job = include_str!("../jobs/sql/nexmark/datagen.sql");
    // The DDL and views of the shipped job, without its INSERTs.
    let ddl = job
        .split("-- Nexmark q1")
        .next()
        .unwrap_or_default()
        .to_string();
    ddl.replace("${EVENTS:-1000000}", &events.to_string())
}

struct Outcome {
    seconds: f64,
    rows_in: u64,
    rows_out: u64,
}

fn run_best(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    sql: &str,
    mode: Mode,
    parallelism: usize,
    runs: usize,
) -> Result<Outcome> {
    let mut best: Option<Outcome> = None;
    for _ in 0..runs.max(1) {
        let job = JobSpec::from_text(name, sql)
            .with_mode(mode)
            .with_parallelism(parallelism);
        let started = Instant::now();
        let result = runtime
            .block_on(sluice::run(&job))
            .with_context(|| format!("running {name}"))?;
        let outcome = Outcome {
            seconds: started.elapsed().as_secs_f64(),
            rows_in: result.rows_in,
            rows_out: result.rows_out,
        };
        if best.as_ref().is_none_or(|b| outcome.seconds < b.seconds) {
            best = Some(outcome);
        }
    }
    best.context("no run")
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    sluice::limit_malloc_arenas(args.parallelism);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.parallelism)
        .enable_all()
        .build()?;
    let parquet = args.data.join(format!("parquet-{}", args.events));
    let json = args.data.join(format!("json-{}", args.events));
    let small_json = args.data.join(format!("json-{}", args.kafka_events));
    for (dir, events, format) in [
        (&parquet, args.events, FileFormat::Parquet),
        (&json, args.events, FileFormat::Json),
        (&small_json, args.kafka_events, FileFormat::Json),
    ] {
        if !dir.join("bid").exists() {
            eprintln!("generating {events} Nexmark events into {}", dir.display());
            sluice::generate::nexmark::generate_to(
                &Destination::Files {
                    dir: dir.clone(),
                    files: 8,
                    format,
                },
                events,
            )?;
        }
    }

    let cluster = MockCluster::new(1)?;
    let brokers = cluster.bootstrap_servers();
    let topic = "bench.bid";
    let started = Instant::now();
    let produced = runtime.block_on(mock_kafka::fill(
        &cluster,
        topic,
        args.kafka_partitions,
        &small_json.join("bid"),
    ))?;
    eprintln!(
        "produced {produced} bids to the mock cluster in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let files = |dir: &Path, format: &str| {
        format!(
            "CREATE TABLE bid ({BID_COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}');\n",
            dir.join("bid").display()
        )
    };
    let kafka = format!(
        "CREATE TABLE bid ({BID_COLUMNS}) WITH ('connector' = 'kafka', 'topic' = '{topic}',
           'properties.bootstrap.servers' = '{brokers}', 'format' = 'json',
           'scan.bounded.mode' = 'latest-offset');\n"
    );
    println!(
        "| query | source | mode | source rows | Sluice s | source rows/s | rows out | same rows as batch |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, body) in queries("date_time") {
        let flink_body = queries("dateTime")
            .into_iter()
            .find(|q| q.0 == name)
            .map(|q| q.1)
            .unwrap_or_default();
        let runs: [(&str, &str, Mode, String); 4] = [
            (
                "parquet",
                "parquet files",
                Mode::Batch,
                files(&parquet, "parquet") + &body,
            ),
            (
                "json",
                "json-lines files",
                Mode::Stream,
                files(&json, "json") + &body,
            ),
            (
                "nexmark",
                "nexmark source",
                Mode::Stream,
                datagen_ddl(args.events) + &flink_body,
            ),
            ("kafka", "kafka (mock)", Mode::Stream, kafka.clone() + &body),
        ];
        let mut reference = None;
        let mut small_reference = None;
        for (key, source, mode, sql) in runs {
            if !args.sources.iter().any(|s| s == key) {
                continue;
            }
            let outcome = run_best(&runtime, name, &sql, mode, args.parallelism, args.runs)?;
            // The Kafka run has fewer events: compare it with a batch run of its own size.
            let expected = if source == "kafka (mock)" {
                if small_reference.is_none() {
                    let small = files(&small_json, "json") + &body;
                    small_reference = Some(
                        run_best(&runtime, name, &small, Mode::Batch, args.parallelism, 1)?
                            .rows_out,
                    );
                }
                small_reference
            } else {
                if reference.is_none() {
                    let batch = files(&parquet, "parquet") + &body;
                    reference = Some(match key {
                        "parquet" => outcome.rows_out,
                        _ => {
                            run_best(&runtime, name, &batch, Mode::Batch, args.parallelism, 1)?
                                .rows_out
                        }
                    });
                }
                reference
            };
            let same = Some(outcome.rows_out) == expected;
            println!(
                "| {name} | {source} | {mode} | {} | {:.3} | {:.2}M | {} | {} |",
                outcome.rows_in,
                outcome.seconds,
                outcome.rows_in as f64 / outcome.seconds / 1e6,
                outcome.rows_out,
                if same { "yes" } else { "NO" }
            );
            if !same {
                bail!(
                    "{name} from {source} wrote {} rows, expected {expected:?}",
                    outcome.rows_out
                );
            }
        }
    }
    if let Some(rss) = peak_rss_mib() {
        println!("\npeak RSS of the whole run: {rss:.0} MiB");
    }
    drop(cluster);
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}
