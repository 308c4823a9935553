//! Nexmark and the game job side by side: Sluice and DataFusion on the same
//! files, each query in its own process so that peak memory is its own.
//!
//! ```text
//! cargo build --release -p sluice-benches --bin nexmark-bench
//! ./target/release/nexmark-bench --runs 3
//! ```
//!
//! Generates the data once (Nexmark bids and game events, each as Parquet
//! and as JSON lines, 8 files per table). Then, for each query, it runs the
//! shipped job file (`jobs/sql/nexmark/{query}.sql`, `jobs/sql/game_daily.sql`)
//! in batch mode over Parquet, in stream mode over the JSON lines, in stream
//! mode from the `nexmark` source (the job's `bid` table replaced by the
//! Flink benchmark's `datagen` table, which generates the same events), and
//! in stream mode from Kafka (the Nexmark jobs, unchanged: their `stream.`
//! options name the topic), and the equivalent DataFusion SQL
//! (`tests/reference.rs`) over the Parquet files. Kafka is librdkafka's
//! mock cluster, served by this process; it keeps about 5 MB per
//! partition, so the Kafka runs read fewer events (`--kafka-events`), and
//! DataFusion runs again over Parquet files of the same events.
//! Both engines write their results as snappy Parquet files and use the same
//! number of threads and partitions. Each run is a child process of this
//! one, which reports its wall time and peak resident memory (`VmHWM`).
//!
//! Every result is checked against DataFusion's (row count and an
//! order-independent checksum of every row), so a fast wrong answer cannot
//! pass.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clap::Parser;
use datafusion::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sluice::generate::FileFormat;
use sluice_engine::sql::Mode;
use sluice_tests::reference;

#[path = "mock_kafka.rs"]
mod mock_kafka;

#[derive(Parser)]
struct Args {
    /// Nexmark events to generate (10,869,566 events hold 10M bids).
    #[arg(long, default_value_t = 10_869_566)]
    events: u64,
    /// Game events to generate, over `--game-days` days.
    #[arg(long, default_value_t = 10_000_000)]
    game_events: u64,
    #[arg(long, default_value_t = 7)]
    game_days: u32,
    /// Where the generated files are kept between runs.
    #[arg(long, default_value = "/tmp/sluice-nexmark-bench")]
    data: PathBuf,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Queries: Nexmark job names, and `game` for the game daily job.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q0,q1,q2,tumble,hop,q5,game"
    )]
    queries: Vec<String>,
    /// Sluice's modes: `batch` (Parquet), `stream` (JSON lines), `nexmark`
    /// (stream mode from the `nexmark` source, which generates the same
    /// events) and `kafka` (stream mode from the mock cluster); the last two
    /// for Nexmark queries only.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "batch,stream,nexmark,kafka"
    )]
    modes: Vec<String>,
    /// Nexmark events whose bids go through Kafka.
    #[arg(long, default_value_t = 543_478)]
    kafka_events: u64,
    /// Partitions of each topic on the mock cluster.
    #[arg(long, default_value_t = 32)]
    kafka_partitions: i32,
    /// Internal: the mock cluster's bootstrap servers.
    #[arg(long, hide = true)]
    kafka: Option<String>,
    /// Runs of each engine per query and mode; the best time is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Internal: run one engine once and report (`sluice` or `datafusion`).
    #[arg(long, hide = true)]
    child: Option<String>,
    /// Internal: the child's output directory.
    #[arg(long, hide = true)]
    out: Option<PathBuf>,
}

/// What one child run reports.
#[derive(Debug, Clone, Copy)]
struct Measured {
    seconds: f64,
    rows_in: u64,
    peak_rss_kib: u64,
}

/// The best time of several runs, and the highest peak memory among them.
#[derive(Debug, Default, Clone, Copy)]
struct Best {
    seconds: Option<f64>,
    rows_in: u64,
    peak_rss_kib: u64,
}

impl Best {
    fn add(&mut self, m: Measured) {
        self.seconds = Some(self.seconds.map_or(m.seconds, |s| s.min(m.seconds)));
        self.rows_in = m.rows_in;
        self.peak_rss_kib = self.peak_rss_kib.max(m.peak_rss_kib);
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.child.as_deref() {
        Some(engine) => child(&args, engine),
        None => parent(&args),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn is_game(query: &str) -> bool {
    query == "game"
}

/// The directory of one table's files in one format.
fn table_dir(args: &Args, query: &str, format: FileFormat) -> PathBuf {
    table_dir_of(args, query, format, args.events)
}

/// The directory of one table's files in one format, for `events` Nexmark
/// events.
fn table_dir_of(args: &Args, query: &str, format: FileFormat, events: u64) -> PathBuf {
    let format = match format {
        FileFormat::Parquet => "parquet",
        FileFormat::Json => "json",
    };
    match is_game(query) {
        true => args
            .data
            .join(format!("game-{}-{format}", args.game_events)),
        false => args.data.join(format!("nexmark-{events}-{format}")),
    }
}

/// The sink tables a query writes, by name, each with DataFusion's SQL.
fn outputs(query: &str) -> Result<Vec<(String, &'static str)>> {
    if is_game(query) {
        return Ok([
            ("daily_app_stats", reference::GAME_DAILY_APP_STATS),
            (
                "playtime_distribution",
                reference::GAME_PLAYTIME_DISTRIBUTION,
            ),
            ("bad_events", reference::GAME_BAD_EVENTS),
        ]
        .map(|(name, sql)| (name.to_string(), sql))
        .to_vec());
    }
    let sql = reference::nexmark(query)
        .with_context(|| format!("no DataFusion equivalent for `{query}`"))?;
    // The Nexmark job files name their sink after the query.
    Ok(vec![(query.to_string(), sql)])
}

fn generate(args: &Args) -> Result<()> {
    if args.modes.iter().any(|m| m == "kafka") {
        for format in [FileFormat::Parquet, FileFormat::Json] {
            let dir = table_dir_of(args, "q0", format, args.kafka_events);
            if !dir.join("bid").exists() {
                sluice::generate::nexmark::generate(&dir, args.kafka_events, 8, format)?;
            }
        }
    }
    for format in [FileFormat::Parquet, FileFormat::Json] {
        if args.queries.iter().any(|q| !is_game(q)) {
            let dir = table_dir(args, "q0", format);
            if !dir.join("bid").exists() {
                eprintln!(
                    "generating {} Nexmark events into {}",
                    args.events,
                    dir.display()
                );
                sluice::generate::nexmark::generate(&dir, args.events, 8, format)?;
            }
        }
        if args.queries.iter().any(|q| is_game(q)) {
            let dir = table_dir(args, "game", format);
            if !dir.join("events").exists() {
                eprintln!(
                    "generating {} game events into {}",
                    args.game_events,
                    dir.display()
                );
                sluice::generate::game::generate(
                    &dir,
                    args.game_events,
                    args.game_days,
                    8,
                    format,
                )?;
            }
        }
    }
    Ok(())
}

/// The topic prefix the Nexmark jobs read in stream mode (`${TOPIC}.bid`).
const TOPIC: &str = "bench";

/// Starts the mock cluster and fills `bench.bid` with the bids of
/// `--kafka-events` events: the bids the small Parquet files hold.
fn mock_cluster(args: &Args) -> Result<MockCluster<'static, DefaultProducerContext>> {
    let cluster = MockCluster::new(1)?;
    let bids = table_dir_of(args, "q0", FileFormat::Json, args.kafka_events).join("bid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let produced = runtime.block_on(mock_kafka::fill(
        &cluster,
        &format!("{TOPIC}.bid"),
        args.kafka_partitions,
        &bids,
    ))?;
    eprintln!("produced {produced} bids to the mock cluster");
    Ok(cluster)
}

fn parent(args: &Args) -> Result<()> {
    generate(args)?;
    let cluster = match args.modes.iter().any(|m| m == "kafka") {
        true => Some(mock_cluster(args)?),
        false => None,
    };
    let brokers = cluster.as_ref().map(|c| c.bootstrap_servers());
    let exe = std::env::current_exe()?;
    let scratch = args.data.join("out");
    println!(
        "| query | mode | input rows | Sluice s | Sluice rows/s | Sluice peak RSS MiB | DataFusion s | DataFusion peak RSS MiB | Sluice/DataFusion time | results |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for query in &args.queries {
        let outputs = outputs(query)?;
        let run = |engine: &str, mode: &str, events: u64| -> Result<(Best, (usize, u64))> {
            let out = scratch.join(format!("{engine}-{mode}-{query}-{events}"));
            let mut best = Best::default();
            for _ in 0..args.runs.max(1) {
                let _ = std::fs::remove_dir_all(&out);
                let child = Child {
                    engine,
                    mode,
                    query,
                    out: &out,
                    events,
                    kafka: brokers.as_deref(),
                };
                best.add(spawn(&exe, args, &child)?);
            }
            let print = fingerprint(&out, &outputs)?;
            Ok((best, print))
        };
        let mut references = BTreeMap::new();
        for mode in &args.modes {
            if (mode == "kafka" || mode == "nexmark") && is_game(query) {
                // The game job's table has no Kafka options, and its
                // events are not Nexmark's.
                continue;
            }
            let events = match mode.as_str() {
                "kafka" => args.kafka_events,
                _ => args.events,
            };
            let (datafusion, expected) = match references.entry(events) {
                std::collections::btree_map::Entry::Occupied(e) => *e.get(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    *e.insert(run("datafusion", "batch", events)?)
                }
            };
            let df_seconds = datafusion.seconds.context("no DataFusion run")?;
            let (sluice, actual) = run("sluice", mode, events)?;
            let seconds = sluice.seconds.context("no Sluice run")?;
            let verdict = if actual == expected {
                format!("same {} rows", actual.0)
            } else {
                let sluice_out = scratch.join(format!("sluice-{mode}-{query}-{events}"));
                let df_out = scratch.join(format!("datafusion-batch-{query}-{events}"));
                show_difference(&sluice_out, &df_out, &outputs)?;
                format!(
                    "DIFFER: Sluice {} rows, DataFusion {} rows",
                    actual.0, expected.0
                )
            };
            let input = match mode.as_str() {
                "batch" => "batch (Parquet)",
                "kafka" => "stream (Kafka, mock)",
                "nexmark" => "stream (nexmark source)",
                _ => "stream (JSON lines)",
            };
            println!(
                "| {query} | {input} | {} | {seconds:.3} | {:.2}M | {} | {df_seconds:.3} | {} | {:.2} | {verdict} |",
                sluice.rows_in,
                sluice.rows_in as f64 / seconds / 1e6,
                sluice.peak_rss_kib / 1024,
                datafusion.peak_rss_kib / 1024,
                seconds / df_seconds,
            );
        }
    }
    drop(cluster);
    Ok(())
}

/// One run of one engine.
struct Child<'a> {
    engine: &'a str,
    mode: &'a str,
    query: &'a str,
    out: &'a Path,
    /// Nexmark events of the input.
    events: u64,
    kafka: Option<&'a str>,
}

/// Runs one engine once in a child process and reads its report.
fn spawn(exe: &Path, args: &Args, child: &Child<'_>) -> Result<Measured> {
    let Child {
        engine,
        mode,
        query,
        out,
        events,
        kafka,
    } = *child;
    let mut command = Command::new(exe);
    if let Some(brokers) = kafka {
        command.args(["--kafka", brokers]);
    }
    let output = command
        .args(["--child", engine, "--modes", mode, "--queries", query])
        .arg("--out")
        .arg(out)
        .arg("--data")
        .arg(&args.data)
        .args(["--events", &events.to_string()])
        .args(["--game-events", &args.game_events.to_string()])
        .args(["--game-days", &args.game_days.to_string()])
        .args(["--parallelism", &args.parallelism.to_string()])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !output.status.success() {
        bail!(
            "{engine} {mode} {query} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report = String::from_utf8(output.stdout)?;
    let fields: Vec<&str> = report.split_whitespace().collect();
    let [seconds, rows_in, peak_rss_kib] = fields[..] else {
        bail!("{engine} {mode} {query}: unexpected report `{report}`");
    };
    Ok(Measured {
        seconds: seconds.parse()?,
        rows_in: rows_in.parse()?,
        peak_rss_kib: peak_rss_kib.parse()?,
    })
}

/// The child: one run of one engine, reported as `seconds rows_in peak_kib`.
fn child(args: &Args, engine: &str) -> Result<()> {
    let (Some(query), Some(mode), Some(out)) =
        (args.queries.first(), args.modes.first(), args.out.as_ref())
    else {
        bail!("a child run needs --queries, --modes and --out");
    };
    // As the `sluice` program does; DataFusion runs under the same setting.
    sluice::limit_malloc_arenas(args.parallelism);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.parallelism)
        .enable_all()
        .build()?;
    let (seconds, rows_in) = match engine {
        "sluice" => runtime.block_on(run_sluice(args, query, mode, out))?,
        "datafusion" => runtime.block_on(run_datafusion(args, query, out))?,
        other => bail!("unknown engine `{other}`"),
    };
    println!("{seconds} {rows_in} {}", peak_rss_kib()?);
    Ok(())
}

/// Runs the job once: its wall time in seconds, and the rows it read.
async fn run_sluice(args: &Args, query: &str, mode: &str, out: &Path) -> Result<(f64, u64)> {
    let (job, table) = match is_game(query) {
        true => (repo().join("jobs/sql/game_daily.sql"), "events"),
        false => (repo().join(format!("jobs/sql/nexmark/{query}.sql")), "bid"),
    };
    let text = std::fs::read_to_string(&job).with_context(|| job.display().to_string())?;
    let (text, mode, format) = match mode {
        "batch" => (text, Mode::Batch, FileFormat::Parquet),
        "stream" => (
            sluice_tests::over_json_lines(&text, table, None).map_err(anyhow::Error::msg)?,
            Mode::Stream,
            FileFormat::Json,
        ),
        "kafka" => (text, Mode::Stream, FileFormat::Json),
        "nexmark" => (
            nexmark_source(&text, args.events)?,
            Mode::Stream,
            FileFormat::Json,
        ),
        other => bail!("unknown mode `{other}`: batch, stream, nexmark or kafka"),
    };
    let mut spec = sluice::JobSpec::from_text(query, &text);
    if let Some(brokers) = &args.kafka {
        spec = spec
            .with_var("KAFKA", brokers)
            .with_var("TOPIC", TOPIC)
            .with_var("BOUNDED", "latest-offset");
    }
    let spec = spec
        .with_var(
            "DATA",
            &table_dir(args, query, format).display().to_string(),
        )
        .with_var("OUT", &out.display().to_string())
        .with_mode(mode)
        .with_parallelism(args.parallelism);
    let started = Instant::now();
    let rows_in = sluice::run(&spec).await?.rows_in;
    Ok((started.elapsed().as_secs_f64(), rows_in))
}

/// The job with its Nexmark tables (`bid`, and the `person` and `auction`
/// of the join queries) replaced by the `nexmark` source: the Flink
/// benchmark's `datagen` table (`jobs/sql/nexmark/datagen.sql`) for
/// `events` events, which are those the files hold, and a view of each
/// table under the job's column names.
fn nexmark_source(job: &str, events: u64) -> Result<String> {
    let datagen = include_str!("../jobs/sql/nexmark/datagen.sql");
    let ddl = datagen
        .find("CREATE TABLE datagen")
        .zip(datagen.find("CREATE VIEW"))
        .map(|(from, to)| &datagen[from..to])
        .context("datagen.sql has no `CREATE TABLE datagen` before its views")?
        .replace("${EVENTS:-1000000}", &events.to_string());
    let views = [
        (
            "person",
            "CREATE VIEW person AS
SELECT person.id AS id, person.name AS name, person.emailAddress AS email_address,
       person.creditCard AS credit_card, person.city AS city, person.state AS state,
       dateTime AS date_time, person.extra AS extra
FROM datagen WHERE event_type = 0;",
        ),
        (
            "auction",
            "CREATE VIEW auction AS
SELECT auction.id AS id, auction.itemName AS item_name, auction.description AS description,
       auction.initialBid AS initial_bid, auction.reserve AS reserve, dateTime AS date_time,
       auction.expires AS expires, auction.seller AS seller, auction.category AS category,
       auction.extra AS extra
FROM datagen WHERE event_type = 1;",
        ),
        (
            "bid",
            "CREATE VIEW bid AS
SELECT bid.auction AS auction, bid.bidder AS bidder, bid.price AS price,
       bid.channel AS channel, bid.url AS url, dateTime AS date_time, bid.extra AS extra
FROM datagen WHERE event_type = 2;",
        ),
    ];
    // The tables in the order the job declares them: the datagen table goes
    // where the first one was, before every view of it.
    let mut present: Vec<(usize, &str, &str)> = views
        .iter()
        .filter_map(|&(table, view)| {
            sluice_tests::table_block(job, table)
                .ok()
                .map(|(start, _)| (start, table, view))
        })
        .collect();
    present.sort();
    if present.is_empty() {
        bail!("the job declares none of the Nexmark tables person, auction, bid");
    }
    let mut text = job.to_string();
    for (i, (_, table, view)) in present.iter().enumerate() {
        let (start, end) = sluice_tests::table_block(&text, table).map_err(anyhow::Error::msg)?;
        let ddl = if i == 0 { ddl.as_str() } else { "" };
        text = format!(
            "{}{ddl}{view}{}",
            &text[..start],
            &text[end + "\n);".len()..]
        );
    }
    Ok(text)
}

/// Runs the query's SQL once: its wall time in seconds (from the session's
/// start to the last file written), and the rows of the input table,
/// counted after the clock stops.
async fn run_datafusion(args: &Args, query: &str, out: &Path) -> Result<(f64, u64)> {
    let started = Instant::now();
    let config = SessionConfig::new().with_target_partitions(args.parallelism);
    let ctx = SessionContext::new_with_config(config);
    let table = if is_game(query) { "events" } else { "bid" };
    let dir = table_dir(args, query, FileFormat::Parquet);
    let tables: &[&str] = match is_game(query) {
        true => &["events"],
        false => &["bid", "auction", "person"],
    };
    for name in tables {
        ctx.register_parquet(
            *name,
            dir.join(name).to_str().context("path")?,
            ParquetReadOptions::default(),
        )
        .await?;
    }
    // Sluice's file sink writes snappy; DataFusion's default is zstd.
    let mut parquet = TableParquetOptions::default();
    parquet.global.compression = Some("snappy".to_string());
    for (name, sql) in outputs(query)? {
        let dir = format!("{}/", out.join(name).display());
        ctx.sql(sql)
            .await?
            .write_parquet(&dir, DataFrameWriteOptions::new(), Some(parquet.clone()))
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rows = ctx
        .sql(&format!("SELECT count(*) FROM {table}"))
        .await?
        .collect()
        .await?;
    let count = rows
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
        })
        .map(|c| c.value(0))
        .context("count")?;
    Ok((seconds, count as u64))
}

/// This process's peak resident memory in KiB.
fn peak_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

/// Prints a few rows that only one engine wrote, to standard error.
fn show_difference(sluice: &Path, datafusion: &Path, outputs: &[(String, &str)]) -> Result<()> {
    for (name, _) in outputs {
        let rows = |dir: &Path| -> Result<std::collections::BTreeSet<String>> {
            let batches =
                sluice_tests::read_parquet_dir(&dir.join(name)).map_err(anyhow::Error::msg)?;
            Ok(sluice_tests::sorted_rows(&batches)
                .map_err(anyhow::Error::msg)?
                .into_iter()
                .collect())
        };
        let (s, d) = (rows(sluice)?, rows(datafusion)?);
        for row in s.difference(&d).take(3) {
            eprintln!("{name}: only Sluice wrote   {row}");
        }
        for row in d.difference(&s).take(3) {
            eprintln!("{name}: only DataFusion wrote {row}");
        }
    }
    Ok(())
}

/// Row count and an order-independent checksum of every formatted row of
/// every output, each output's rows hashed with its name; floating-point
/// values to 12 significant digits.
fn fingerprint(out: &Path, outputs: &[(String, &str)]) -> Result<(usize, u64)> {
    let options = FormatOptions::default().with_null("NULL");
    let (mut rows, mut sum) = (0usize, 0u64);
    for (name, _) in outputs {
        let batches =
            sluice_tests::read_parquet_dir(&out.join(name)).map_err(anyhow::Error::msg)?;
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            // Sums of floating-point numbers depend on the order they are
            // added in, which differs between engines and runs: compare
            // them to 12 significant digits.
            let floats: Vec<Option<arrow::array::Float64Array>> = batch
                .columns()
                .iter()
                .map(|c| {
                    c.data_type().is_floating().then(|| {
                        arrow::compute::cast(c, &arrow::datatypes::DataType::Float64).map(|a| {
                            a.as_any()
                                .downcast_ref::<arrow::array::Float64Array>()
                                .cloned()
                        })
                    })
                })
                .map(|c| c.transpose().map(Option::flatten))
                .collect::<Result<_, _>>()?;
            let mut line = String::new();
            for row in 0..batch.num_rows() {
                line.clear();
                for (f, float) in formatters.iter().zip(&floats) {
                    use std::fmt::Write;
                    match float {
                        Some(a) if arrow::array::Array::is_valid(a, row) => {
                            write!(line, "{:.11e}|", a.value(row))?
                        }
                        _ => write!(line, "{}|", f.value(row))?,
                    }
                }
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (name, &line).hash(&mut h);
                sum = sum.wrapping_add(h.finish());
            }
            rows += batch.num_rows();
        }
    }
    Ok((rows, sum))
}
