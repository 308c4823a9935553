//! What checkpoints cost: a windowed stream job's throughput with and
//! without them, the duration and size of checkpoints of a job holding
//! about a million keys, and the time from a crash to the restored job's
//! first new output.
//!
//! ```text
//! cargo run --release -p sluice-benches --bin checkpoint-bench -- --runs 2
//! ```
//!
//! Input is the stream benchmark's JSON-lines and Parquet bids
//! (`stream-bench` writes them; this generates them if missing), read in
//! stream mode. Checkpoints go to a directory on local disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use sluice::JobSpec;
use sluice::generate::FileFormat;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::sql::Mode;

#[derive(Parser)]
struct Args {
    /// Nexmark events whose bids are read.
    #[arg(long, default_value_t = 10_869_566)]
    events: u64,
    /// Where the JSON-lines files are kept between runs.
    #[arg(long, default_value = "/tmp/sluice-stream-bench")]
    data: PathBuf,
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Runs of each configuration; the best is reported.
    #[arg(long, default_value_t = 2)]
    runs: usize,
}

const BID_COLUMNS: &str = "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
     date_time TIMESTAMP(3), extra STRING, \
     WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND";

fn source(dir: &Path, format: &str) -> String {
    format!(
        "CREATE TABLE bid ({BID_COLUMNS}) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}');\n",
        dir.join("bid").display()
    )
}

/// Bids per auction in 10-second windows: the stream targets' query.
const TUMBLE: &str =
    "CREATE TABLE out_rows (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
       WITH ('connector' = 'blackhole');
     INSERT INTO out_rows SELECT auction, window_start, COUNT(*), MAX(price)
     FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
     GROUP BY auction, window_start, window_end;";

/// Bids per (bidder, auction) over an hour: every pair is a key held until
/// the window fires, about a million of them.
fn many_keys(sink: &str) -> String {
    format!(
        "CREATE TABLE out_rows (bidder BIGINT, auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
           WITH ({sink});
         INSERT INTO out_rows SELECT bidder, auction, window_start, COUNT(*), MAX(price)
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' HOUR))
         GROUP BY bidder, auction, window_start, window_end;"
    )
}

struct Outcome {
    seconds: f64,
    rows_in: u64,
    rows_out: u64,
    checkpoints: Vec<sluice_engine::checkpoint::protocol::Manifest>,
}

fn run(
    runtime: &tokio::runtime::Runtime,
    sql: &str,
    parallelism: usize,
    interval: Option<Duration>,
) -> Result<Outcome> {
    let checkpoints = tempfile::tempdir()?;
    let mut job = JobSpec::from_text("checkpoint-bench", sql)
        .with_mode(Mode::Stream)
        .with_parallelism(parallelism);
    if let Some(interval) = interval {
        job = job
            .with_checkpoint_interval(interval)
            .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2);
    }
    let started = Instant::now();
    let result = runtime.block_on(sluice::run(&job)).context("running")?;
    Ok(Outcome {
        seconds: started.elapsed().as_secs_f64(),
        rows_in: result.rows_in,
        rows_out: result.rows_out,
        checkpoints: result.checkpoints,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.parallelism)
        .enable_all()
        .build()?;
    let json = args.data.join(format!("json-{}", args.events));
    if !json.join("bid").exists() {
        eprintln!("generating {} events into {}", args.events, json.display());
        sluice::generate::nexmark::generate(&json, args.events, 8, FileFormat::Json)?;
    }
    let input = source(&json, "json");
    // Files without statistics hold the watermark until each subtask opens
    // its last file; Parquet's let windows fire as the job goes, which is
    // what the time to a restored job's first output needs.
    let parquet = args.data.join(format!("parquet-{}", args.events));
    if !parquet.join("bid").exists() {
        eprintln!(
            "generating {} events into {}",
            args.events,
            parquet.display()
        );
        sluice::generate::nexmark::generate(&parquet, args.events, 8, FileFormat::Parquet)?;
    }

    // 1. Throughput with and without checkpoints, runs interleaved.
    let configs: [(&str, Option<Duration>); 3] = [
        ("none", None),
        ("every 10 s", Some(Duration::from_secs(10))),
        ("every 1 s", Some(Duration::from_secs(1))),
    ];
    let mut best: Vec<Option<Outcome>> = configs.iter().map(|_| None).collect();
    for _ in 0..args.runs.max(1) {
        for (i, (_, interval)) in configs.iter().enumerate() {
            let outcome = run(
                &runtime,
                &(input.clone() + TUMBLE),
                args.parallelism,
                *interval,
            )?;
            if best[i].as_ref().is_none_or(|b| outcome.seconds < b.seconds) {
                best[i] = Some(outcome);
            }
        }
    }
    println!(
        "| tumble from JSON lines, checkpoints | rows in | s | rows/s | checkpoints | cost | rows out |"
    );
    println!("|---|---|---|---|---|---|---|");
    let base = best[0].as_ref().map_or(1.0, |b| b.seconds);
    let rows_out = best[0].as_ref().map(|b| b.rows_out);
    for ((name, _), outcome) in configs.iter().zip(&best) {
        let Some(o) = outcome else { continue };
        println!(
            "| {name} | {} | {:.2} | {:.2}M | {} | {:+.1}% | {} |",
            o.rows_in,
            o.seconds,
            o.rows_in as f64 / o.seconds / 1e6,
            o.checkpoints.len(),
            (o.seconds / base - 1.0) * 100.0,
            o.rows_out
        );
        anyhow::ensure!(Some(o.rows_out) == rows_out, "{name}: rows out differ");
    }

    // 2. Checkpoints of a job with about a million keys.
    let large = run(
        &runtime,
        &(input.clone() + &many_keys("'connector' = 'blackhole'")),
        args.parallelism,
        Some(Duration::from_secs(2)),
    )?;
    println!(
        "\nmany keys: {} keys (rows out), {} rows in, {:.2} s, {} checkpoints",
        large.rows_out,
        large.rows_in,
        large.seconds,
        large.checkpoints.len()
    );
    println!("| checkpoint | state MiB | duration ms |");
    println!("|---|---|---|");
    for c in &large.checkpoints {
        println!(
            "| {} | {:.1} | {} |",
            c.id,
            c.state_bytes() as f64 / (1 << 20) as f64,
            c.duration_millis
        );
    }

    // 3. Recovery: crash the tumble job (over Parquet, checkpoints every
    // 100 ms) after 300 ms, restore it and time its first new output
    // (committed at the restored run's first checkpoint).
    let out = tempfile::tempdir()?;
    let checkpoints = tempfile::tempdir()?;
    let sink = format!(
        "'connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet'",
        out.path().display()
    );
    let tumble_to_files = TUMBLE.replace("'connector' = 'blackhole'", &sink);
    let job = JobSpec::from_text(
        "checkpoint-bench",
        &(source(&parquet, "parquet") + &tumble_to_files),
    )
    .with_mode(Mode::Stream)
    .with_parallelism(args.parallelism)
    .with_checkpoint_interval(Duration::from_millis(100))
    .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2)
    .with_restore(sluice::Restore::Latest);
    let crashed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.parallelism)
        .enable_all()
        .build()?;
    let running = {
        let job = job.clone();
        crashed.spawn(async move { sluice::run(&job).await })
    };
    std::thread::sleep(Duration::from_millis(300));
    anyhow::ensure!(!running.is_finished(), "the job ended before the crash");
    crashed.shutdown_background();
    let store = sluice_connectors::checkpoints::ObjectCheckpoints::new(
        &checkpoints.path().display().to_string(),
        "checkpoint-bench",
    )?;
    let state_bytes = runtime
        .block_on(sluice_engine::checkpoint::load(&store, None))?
        .map_or(0, |r| r.manifest.state_bytes());
    let visible = || {
        std::fs::read_dir(out.path()).map_or(0, |entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with(['.', '_']))
                .count()
        })
    };
    let before = visible();
    let metrics = Arc::new(JobMetrics::default());
    let stop = sluice_engine::StopSignal::default();
    let started = Instant::now();
    let (mut reading, mut output) = (None, None);
    runtime.block_on(async {
        let job_run = sluice::run_with(&job, Arc::clone(&metrics), stop.clone());
        tokio::pin!(job_run);
        loop {
            tokio::select! {
                result = &mut job_run => { result?; break; }
                () = tokio::time::sleep(Duration::from_millis(5)) => {
                    if reading.is_none() && JobMetrics::get(&metrics.rows_in) > 0 {
                        reading = Some(started.elapsed());
                    }
                    if output.is_none() && visible() > before {
                        output = Some(started.elapsed());
                        stop.stop();
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    println!(
        "\nrecovery from a checkpoint of {:.1} MiB: reading again after {:.0} ms, first new output after {:.0} ms",
        state_bytes as f64 / (1 << 20) as f64,
        reading.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        output.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
    );
    Ok(())
}
