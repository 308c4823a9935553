//! `sluice`: run, explain and feed Sluice jobs.

mod demo;

use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice::generate::{self, Destination, FileFormat};
use sluice::{JobSpec, default_parallelism};
use sluice_engine::StopSignal;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::sql::Mode;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "One job file, batch or stream: a columnar engine on Apache Arrow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job file. Files named before it are read first, in order, as
    /// Flink's SQL client reads its initialization files: shared tables,
    /// views and settings (`sluice run ddl.sql views.sql q5.sql`).
    Run {
        #[arg(required = true, value_name = "JOB")]
        job: Vec<PathBuf>,
        #[command(flatten)]
        common: JobArgs,
    },
    /// Show the operator graph of a job: chaining, exchanges, parallelism.
    Explain {
        #[arg(required = true, value_name = "JOB")]
        job: Vec<PathBuf>,
        #[command(flatten)]
        common: JobArgs,
        /// Print Graphviz dot instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Generate a data set.
    Gen {
        #[arg(value_enum)]
        dataset: Dataset,
        /// How many events.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Directory to write into (one subdirectory per table).
        #[arg(long, required_unless_present = "kafka", conflicts_with = "kafka")]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = GenFormat::Parquet)]
        format: GenFormat,
        /// Part files per table.
        #[arg(long, default_value_t = 8)]
        files: usize,
        /// Days of event time (game only).
        #[arg(long, default_value_t = 3)]
        days: u32,
        /// Produce JSON records to Kafka at these bootstrap servers instead
        /// of writing files: table TABLE goes to topic `TOPIC.TABLE`.
        #[arg(long, value_name = "BROKERS")]
        kafka: Option<String>,
        /// Topic name prefix (with --kafka; default: the data set's name).
        #[arg(long, requires = "kafka")]
        topic: Option<String>,
        /// Partitions of topics that do not exist yet (with --kafka).
        #[arg(long, default_value_t = 4, requires = "kafka")]
        partitions: i32,
        /// Events per second to produce at most (with --kafka; default: as fast as possible).
        #[arg(long, value_name = "EPS", requires = "kafka")]
        rate: Option<f64>,
    },
    /// Run the game analytics demo end to end on a small generated data set.
    Demo {
        /// Where the generated input goes (made if missing).
        #[arg(long, default_value = "data/game")]
        data: PathBuf,
        /// Where the results go.
        #[arg(long, default_value = "out/game_daily")]
        out: PathBuf,
        /// How many events to generate when there is no data yet.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        #[arg(long, value_enum, default_value_t = ModeArg::Batch)]
        mode: ModeArg,
    },
}

#[derive(clap::Args)]
struct JobArgs {
    #[arg(long, value_enum, default_value_t = ModeArg::Batch)]
    mode: ModeArg,
    /// A job variable: `${NAME}` in the job file becomes VALUE.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Subtasks per operator (default: the number of cores).
    #[arg(long)]
    parallelism: Option<NonZeroUsize>,
    /// Where checkpoints go: a directory or object store URL; each job
    /// gets `<dir>/<job>/chk-<n>/` [default in stream mode: .sluice/checkpoints]
    #[arg(long, value_name = "URL")]
    checkpoint_dir: Option<String>,
    /// Take a checkpoint this often, e.g. 10s, 500ms, 1m [default in stream
    /// mode: 10s; batch mode checkpoints only when asked]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// Completed checkpoints to keep (the newest; at least one).
    #[arg(long, default_value = "2")]
    checkpoints_retained: NonZeroUsize,
    /// Resume from `latest` (the newest complete checkpoint of this job; a
    /// fresh start if there is none) or from a checkpoint directory
    /// `<dir>/<job>/chk-<n>`.
    #[arg(long, value_name = "latest|PATH")]
    restore: Option<String>,
    /// Restarts from the last checkpoint after a transient failure
    /// (storage or broker unavailable); errors in the job or data stop it.
    #[arg(long, default_value_t = 3)]
    restart_attempts: u32,
    /// Pause before the first restart; it doubles each time, up to a minute.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    restart_delay: Duration,
}

/// Parses `500ms`, `10s`, `2m`, `1h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 500ms, 10s or 1m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("'{text}': {e}"))
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Batch,
    Stream,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dataset {
    Nexmark,
    Game,
}

#[derive(Clone, Copy, ValueEnum)]
enum GenFormat {
    Parquet,
    Json,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Batch => Mode::Batch,
            ModeArg::Stream => Mode::Stream,
        }
    }
}

impl JobArgs {
    /// The job of the last file in `files`, read after the others.
    fn spec(&self, files: &[PathBuf]) -> Result<JobSpec> {
        let (path, init) = files.split_last().context("no job file given")?;
        let mut spec = JobSpec::from_file(path)?;
        for file in init {
            spec = spec.with_init_file(file)?;
        }
        let mut spec = spec.with_mode(self.mode.into()).with_parallelism(
            self.parallelism
                .map_or_else(default_parallelism, NonZeroUsize::get),
        );
        for pair in &self.set {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--set {pair}: expected NAME=VALUE"))?;
            spec = spec.with_var(name.trim(), value);
        }
        // Stream jobs checkpoint by default; batch jobs when any
        // checkpoint option is given.
        let checkpointing = matches!(self.mode, ModeArg::Stream)
            || self.checkpoint_interval.is_some()
            || self.checkpoint_dir.is_some()
            || self.restore.is_some();
        if checkpointing {
            let interval = self.checkpoint_interval.unwrap_or(Duration::from_secs(10));
            if interval.is_zero() {
                bail!("--checkpoint-interval must be more than zero");
            }
            let dir = self
                .checkpoint_dir
                .as_deref()
                .unwrap_or(".sluice/checkpoints");
            spec = spec
                .with_checkpoint_interval(interval)
                .with_checkpoint_dir(dir, self.checkpoints_retained.get());
        }
        match self.restore.as_deref() {
            None => {}
            Some("latest") => spec = spec.with_restore(sluice::Restore::Latest),
            Some(path) => spec = spec.with_restore(sluice::Restore::Path(path.to_string())),
        }
        spec = spec.with_restarts(self.restart_attempts, self.restart_delay);
        Ok(spec)
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    sluice::limit_malloc_arenas(default_parallelism());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(default_parallelism())
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Run { job, common } => {
            let spec = common.spec(&job)?;
            runtime.block_on(run_job(&spec))?;
        }
        Command::Explain { job, common, dot } => {
            let graph = common.spec(&job)?.graph()?;
            if dot {
                print!("{}", sluice_engine::plan::explain::dot(&graph));
            } else {
                print!("{}", sluice_engine::plan::explain::text(&graph));
            }
        }
        Command::Gen {
            dataset,
            events,
            out,
            format,
            files,
            days,
            kafka,
            topic,
            partitions,
            rate,
        } => {
            let destination = match (kafka, out) {
                (Some(brokers), _) => Destination::Kafka {
                    brokers,
                    topic: topic.unwrap_or_else(|| {
                        match dataset {
                            Dataset::Nexmark => "nexmark",
                            Dataset::Game => "game",
                        }
                        .to_string()
                    }),
                    partitions,
                    rate,
                },
                (None, Some(dir)) => Destination::Files {
                    dir,
                    files,
                    format: match format {
                        GenFormat::Parquet => FileFormat::Parquet,
                        GenFormat::Json => FileFormat::Json,
                    },
                },
                (None, None) => bail!("give --out DIR or --kafka BROKERS"),
            };
            match dataset {
                Dataset::Nexmark => {
                    let counts = generate::nexmark::generate_to(&destination, events)?;
                    println!(
                        "wrote {} bids to {}, {} auctions to {}, {} persons to {}",
                        counts.bids,
                        destination.describe("bid"),
                        counts.auctions,
                        destination.describe("auction"),
                        counts.persons,
                        destination.describe("person"),
                    );
                }
                Dataset::Game => {
                    let n = generate::game::generate_to(&destination, events, days)?;
                    println!(
                        "wrote {n} game events over {days} days to {}",
                        destination.describe("events")
                    );
                }
            }
        }
        Command::Demo {
            data,
            out,
            events,
            mode,
        } => runtime.block_on(demo::run(&data, &out, events, mode.into()))?,
    }
    Ok(())
}

/// Runs a job with a progress bar on a terminal, then prints one summary line.
async fn run_job(spec: &JobSpec) -> Result<sluice_engine::JobResult> {
    let metrics = Arc::new(JobMetrics::default());
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({rate}, ETA {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} rows/s", state.per_sec());
        }),
    );
    let watcher = {
        let metrics = Arc::clone(&metrics);
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_length(JobMetrics::get(&metrics.rows_expected));
                bar.set_position(JobMetrics::get(&metrics.rows_in));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let stop = StopSignal::default();
    watch_signals(stop.clone());
    let result = sluice::run_with(spec, Arc::clone(&metrics), stop).await;
    watcher.abort();
    bar.finish_and_clear();
    let result = result?;
    let seconds = result.elapsed.as_secs_f64();
    let restored_rows = result.restored_from.map_or(0, |(_, counts)| counts.rows_in);
    let counts = format!(
        "{} rows in, {} rows out, {} late rows",
        result.rows_in, result.rows_out, result.late_rows
    );
    let mut notes = String::new();
    if let Some((id, _)) = result.restored_from {
        notes.push_str(&format!(", restored from checkpoint {id}"));
    }
    let restarts = JobMetrics::get(&metrics.restarts);
    if restarts > 0 {
        notes.push_str(&format!(
            ", {restarts} restart{}",
            if restarts == 1 { "" } else { "s" }
        ));
    }
    if result.already_finished {
        eprintln!(
            "sluice: {} had already finished: nothing to do ({counts}{notes})",
            spec.name
        );
        return Ok(result);
    }
    if result.stopped && !result.committed && spec.checkpoint_interval.is_some() {
        // Checkpointed runs commit when stopped, unless stopped still planning.
        bail!(
            "job {} was stopped while it was planning: nothing was read or written ({counts}{notes})",
            spec.name
        );
    }
    if result.stopped && !result.committed {
        let mut message = format!(
            "job {} was stopped before its end; without checkpoints nothing of a stopped run is committed, so its output was dropped ({counts}{notes})",
            spec.name
        );
        for sink in &result.left_behind {
            message.push_str(&format!(
                "; {sink} had already received output, which stays there"
            ));
        }
        message.push_str(
            ". Run with --checkpoint-dir DIR to stop with a savepoint and resume with --restore latest",
        );
        bail!(message);
    }
    let ending = if result.stopped {
        match result.checkpoints.last() {
            Some(last) => format!(
                "stopped; committed up to checkpoint {} (resume with --restore latest)",
                last.id
            ),
            None => "stopped".to_string(),
        }
    } else {
        "finished".to_string()
    };
    eprintln!(
        "sluice: {} {ending}: {counts}, {seconds:.2} s, {:.0} events/s{notes}{}",
        spec.name,
        result.rows_in.saturating_sub(restored_rows) as f64 / seconds.max(1e-9),
        outputs(&result)
    );
    Ok(result)
}

/// Where a finished run's output went: `; output: table → location (N
/// files added)` for each sink, the late-data output only if it got rows.
fn outputs(result: &sluice_engine::JobResult) -> String {
    let shown: Vec<String> = result
        .outputs
        .iter()
        .filter(|(table, report)| {
            table != sluice_engine::exec::LATE_DATA || report.files_added.unwrap_or(1) > 0
        })
        .map(|(table, report)| format!("{table} → {report}"))
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!("; output: {}", shown.join(", "))
    }
}

/// Listens for SIGINT and SIGTERM on a thread of its own, so that a
/// signal is heard however busy the job's worker threads are.
fn watch_signals(stop: StopSignal) {
    let spawned = std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(stop_on_signal(stop)),
                Err(e) => tracing::warn!("cannot listen for signals: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot listen for signals: {e}");
    }
}

/// Stops the job on SIGINT or SIGTERM: sources stop reading, windows not
/// yet complete stay unfired; with checkpoints a last one commits what was
/// done, without them nothing is committed. A second signal exits at once
/// (code 130), for when stopping hangs.
async fn stop_on_signal(stop: StopSignal) {
    #[cfg(unix)]
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                None
            }
        };
    for signals in 0.. {
        #[cfg(unix)]
        let terminated = async {
            match terminate.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
        if signals > 0 {
            let _ = writeln!(std::io::stderr(), "sluice: stopping now (second signal)");
            std::process::exit(130);
        }
        stop.stop();
        // Not eprintln!: with standard error gone, it would panic and the
        // job would not stop.
        let _ = writeln!(
            std::io::stderr(),
            "sluice: stopping (signal received; again to exit at once)"
        );
    }
}
