//! Crashes and restores: a job that dies at any checkpoint and resumes from
//! it commits exactly the rows an uninterrupted run commits, also when it
//! resumes at another parallelism.

use std::path::Path;
use std::time::Duration;

use sluice_tests::{read_parquet_dir, sorted_rows, staged_files};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `events` Nexmark events as `files` Parquet files per table, in a
/// directory that lives as long as the value.
fn parquet_bids(events: u64, files: usize) -> tempfile::TempDir {
    nexmark_files(events, files, sluice::generate::FileFormat::Parquet)
}

/// `events` Nexmark events as `files` files per table in `format`.
fn nexmark_files(
    events: u64,
    files: usize,
    format: sluice::generate::FileFormat,
) -> tempfile::TempDir {
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::nexmark::generate(data.path(), events, files, format).expect("generate");
    data
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn committed_rows(dir: &Path) -> Vec<String> {
    sorted_rows(&read_parquet_dir(dir).expect("read output")).expect("format")
}

/// The id of the newest complete checkpoint under `dir` (any job); 0 if none.
fn newest_checkpoint(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| p.strip_suffix("/_manifest.json"))
        .filter_map(|p| p.rsplit_once("/chk-"))
        .filter_map(|(_, id)| id.parse().ok())
        .max()
        .unwrap_or(0)
}

/// Whether the newest checkpoint under `dir` is one of a job's end (taken
/// once every subtask had ended), which restores only into the same graph.
fn newest_is_end(dir: &Path) -> bool {
    let newest = newest_checkpoint(dir);
    walk(dir)
        .iter()
        .find(|p| p.ends_with(&format!("/chk-{newest}/_manifest.json")))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|manifest| manifest["end"] == serde_json::Value::Bool(true))
}

fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Nexmark jobs over Parquet, each crashed (its run dropped mid-flight, as
/// a kill would) right after a checkpoint completes, then restored from the
/// latest checkpoint at another parallelism, repeatedly until it finishes:
/// the committed rows equal an uninterrupted run's.
#[test]
fn a_job_crashed_at_checkpoints_and_restored_commits_what_an_uninterrupted_run_does() {
    let main_runtime = runtime();
    let data = parquet_bids(400_000, 4);
    let queries = std::env::var("SLUICE_RECOVERY_QUERIES")
        .unwrap_or_else(|_| "tumble,hop,q11,q1,q8".to_string());
    for query in queries.split(',') {
        let job = |out: &Path, parallelism: usize| {
            sluice::JobSpec::from_file(&repo().join(format!("jobs/sql/nexmark/{query}.sql")))
                .expect("job file")
                .with_var("DATA", &data.path().display().to_string())
                .with_var("OUT", &out.display().to_string())
                .with_parallelism(parallelism)
        };
        crashes_change_nothing(&main_runtime, query, job);
    }
}

/// A regular join's two sides are state: crashed at its checkpoints and
/// restored at parallelism 1 and 3, it commits an uninterrupted run's rows
/// (each side's rows split by key group to the subtasks that own them).
#[test]
fn a_join_crashed_at_checkpoints_and_restored_commits_what_an_uninterrupted_run_does() {
    let main_runtime = runtime();
    let data = parquet_bids(200_000, 4);
    let text = format!(
        "CREATE TABLE auction (id BIGINT, item_name STRING, seller BIGINT, category BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{dir}/auction', 'format' = 'parquet');\n\
         CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{dir}/bid', 'format' = 'parquet');\n\
         CREATE TABLE joined (auction BIGINT, bidder BIGINT, price BIGINT, item_name STRING) \
           WITH ('connector' = 'filesystem', 'path' = '${{OUT}}/join', 'format' = 'parquet');\n\
         INSERT INTO joined SELECT B.auction, B.bidder, B.price, A.item_name \
           FROM bid B JOIN auction A ON B.auction = A.id WHERE A.category = 10;",
        dir = data.path().display()
    );
    let job = |out: &Path, parallelism: usize| {
        sluice::JobSpec::from_text("join.sql", &text)
            .with_var("OUT", &out.display().to_string())
            .with_parallelism(parallelism)
    };
    crashes_change_nothing(&main_runtime, "join", job);
}

/// An outer join's state holds each row's count of matches: crashed at
/// its checkpoints and restored at parallelism 1 and 3, a batch LEFT JOIN
/// pads exactly the auctions an uninterrupted run pads (those with no bid
/// above their reserve), once each.
#[test]
fn an_outer_join_crashed_and_restored_pads_what_an_uninterrupted_run_does() {
    let main_runtime = runtime();
    let data = parquet_bids(200_000, 4);
    let text = format!(
        "CREATE TABLE auction (id BIGINT, reserve BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{dir}/auction', 'format' = 'parquet');\n\
         CREATE TABLE bid (auction BIGINT, price BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{dir}/bid', 'format' = 'parquet');\n\
         CREATE TABLE padded (id BIGINT, price BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '${{OUT}}/left_join', 'format' = 'parquet');\n\
         INSERT INTO padded SELECT A.id, B.price \
           FROM auction A LEFT JOIN bid B ON A.id = B.auction AND B.price > A.reserve;",
        dir = data.path().display()
    );
    let job = |out: &Path, parallelism: usize| {
        // Small batches: checkpoints fall while bids still come, when
        // the auctions' match counts are what the state holds.
        sluice::JobSpec::from_text("left_join.sql", &text)
            .with_var("OUT", &out.display().to_string())
            .with_parallelism(parallelism)
            .with_batch_size(256)
    };
    crashes_change_nothing(&main_runtime, "left_join", job);
}

/// The same over JSON-lines files cut into many small splits, in stream
/// mode: a split's checkpointed byte offset resumes it at any parallelism,
/// and the watermarks taken from the splits' first lines and the subtasks
/// keeping in step hold across restores.
#[test]
fn a_stream_job_over_split_json_lines_crashed_and_restored_commits_exactly_once() {
    let main_runtime = runtime();
    let data = nexmark_files(200_000, 3, sluice::generate::FileFormat::Json);
    for query in ["hop", "q1"] {
        let path = repo().join(format!("jobs/sql/nexmark/{query}.sql"));
        let text = std::fs::read_to_string(&path).expect("job file");
        let text =
            sluice_tests::over_json_lines(&text, "bid", Some("256kb")).expect("the bid table");
        let job = |out: &Path, parallelism: usize| {
            sluice::JobSpec::from_text(query, &text)
                .with_var("DATA", &data.path().display().to_string())
                .with_var("OUT", &out.display().to_string())
                .with_mode(sluice_engine::sql::Mode::Stream)
                .with_parallelism(parallelism)
        };
        crashes_change_nothing(&main_runtime, query, job);
    }
}

/// A stream's GROUP BY without a window keeps its groups as state and
/// writes a changelog: crashed at its checkpoints and restored at
/// parallelism 1 and 3, the changelog it commits takes back only rows it
/// sent, and ends with an uninterrupted run's rows (the shipped q15 over
/// split JSON lines; its accumulators include COUNT(DISTINCT)s).
#[test]
fn an_updating_aggregate_crashed_and_restored_ends_with_an_uninterrupted_runs_rows() {
    let main_runtime = runtime();
    let data = nexmark_files(200_000, 3, sluice::generate::FileFormat::Json);
    let path = repo().join("jobs/sql/nexmark/q15.sql");
    let text = std::fs::read_to_string(&path).expect("job file");
    let text = sluice_tests::over_json_lines(&text, "bid", Some("256kb")).expect("the bid table");
    let job = |out: &Path, parallelism: usize| {
        sluice::JobSpec::from_text("q15", &text)
            .with_var("DATA", &data.path().display().to_string())
            .with_var("OUT", &out.display().to_string())
            .with_mode(sluice_engine::sql::Mode::Stream)
            .with_parallelism(parallelism)
    };
    let mut fields = vec![arrow::datatypes::Field::new(
        "day",
        arrow::datatypes::DataType::Utf8,
        true,
    )];
    for name in ["bids", "bidders", "auctions"] {
        for rank in ["total", "rank1", "rank2", "rank3"] {
            fields.push(arrow::datatypes::Field::new(
                format!("{rank}_{name}"),
                arrow::datatypes::DataType::Int64,
                true,
            ));
        }
    }
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(fields));
    crashes_leave_the_same_rows(&main_runtime, "q15", job, |dir| {
        sluice_tests::changelog_rows(dir, &schema).expect("changelog")
    });
}

/// Runs `job` once uninterrupted, then again crashing it (at parallelism
/// 2, 1 and 3) each time a new checkpoint completes and restoring it,
/// until it ends; both must commit the same rows.
fn crashes_change_nothing(
    main_runtime: &tokio::runtime::Runtime,
    query: &str,
    job: impl Fn(&Path, usize) -> sluice::JobSpec,
) {
    crashes_leave_the_same_rows(main_runtime, query, job, committed_rows);
}

/// [`crashes_change_nothing`], with the committed rows in `dir` read by
/// `rows`.
fn crashes_leave_the_same_rows(
    main_runtime: &tokio::runtime::Runtime,
    query: &str,
    job: impl Fn(&Path, usize) -> sluice::JobSpec,
    rows: impl Fn(&Path) -> Vec<String>,
) {
    let reference = tempfile::tempdir().expect("tempdir");
    main_runtime
        .block_on(sluice::run(&job(reference.path(), 2)))
        .expect("uninterrupted run");
    let expected = rows(&reference.path().join(query));
    assert!(!expected.is_empty(), "{query}: no rows");

    // A job over little data may end before a checkpoint completes:
    // then the scenario runs again, until a crash has happened.
    let mut crashes = 0;
    let mut scenario = 0;
    let (out, checkpoints) = loop {
        scenario += 1;
        let out = tempfile::tempdir().expect("tempdir");
        let checkpoints = tempfile::tempdir().expect("tempdir");
        for (attempt, parallelism) in [2, 1, 3, 2].into_iter().enumerate() {
            let spec = job(out.path(), parallelism)
                .with_checkpoint_interval(Duration::from_millis(3))
                .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2)
                .with_restore(sluice::Restore::Latest);
            // Crash once a checkpoint newer than any so far completes;
            // the last attempt runs to the end.
            let newest = newest_checkpoint(checkpoints.path());
            let crash = attempt < 3;
            // A runtime of its own, shut down after a crash so that
            // nothing of the crashed run goes on, as with a killed process.
            let attempt_runtime = runtime();
            let outcome = attempt_runtime.block_on(async {
                tokio::select! {
                    result = sluice::run(&spec) => Some(result),
                    () = async {
                        while !crash || newest_checkpoint(checkpoints.path()) <= newest {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    } => None,
                }
            });
            match outcome {
                Some(result) => {
                    result.expect("run");
                    break;
                }
                None => {
                    crashes += 1;
                    attempt_runtime.shutdown_timeout(Duration::from_secs(30));
                }
            }
        }
        if crashes > 0 || scenario == 5 {
            break (out, checkpoints);
        }
    };
    assert!(crashes >= 1, "{query}: no crash happened before the end");
    let dir = out.path().join(query);
    assert!(
        staged_files(&dir).is_empty(),
        "{query}: uncommitted files left"
    );
    let actual = rows(&dir);
    assert_eq!(
        actual.len(),
        expected.len(),
        "{query}: row counts; output {:?}; checkpoints {:?}",
        walk(&dir),
        walk(checkpoints.path())
    );
    if actual != expected {
        let extra: Vec<_> = actual
            .iter()
            .filter(|r| !expected.contains(r))
            .take(5)
            .collect();
        let missing: Vec<_> = expected
            .iter()
            .filter(|r| !actual.contains(r))
            .take(5)
            .collect();
        panic!("{query}: rows differ; unexpected {extra:?}, missing {missing:?}");
    }
}

/// The `sluice` binary next to this test's (cargo builds it for the
/// workspace's tests).
fn sluice_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let binary = dir.join("sluice");
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        binary.display()
    );
    binary
}

/// A small random number generator, seeded from the clock and printed, so
/// a failing sequence of kills can be replayed with SLUICE_CRASH_SEED.
struct Kills(u64);

impl Kills {
    fn new() -> Self {
        let seed = std::env::var("SLUICE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("kill times from SLUICE_CRASH_SEED={seed}");
        Self(seed)
    }

    /// A number in `range`.
    fn next(&mut self, range: std::ops::Range<u64>) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        range.start + (self.0 >> 33) % (range.end - range.start)
    }
}

/// How one `sluice run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Finished,
    /// Killed once checkpoint `after_checkpoint` had completed.
    Killed {
        after_checkpoint: u64,
    },
}

/// Runs `sluice run` with `args` until it exits; with `kill = (after,
/// checkpoints)`, kills it with SIGKILL once `after` has passed and a
/// checkpoint newer than those under `checkpoints` at its start has
/// completed, so that every kill has something to restore. Returns how it
/// ended and what it wrote to standard error (with `sluice=info` logs,
/// which say which checkpoint it resumed from).
fn run_or_kill(args: &[String], kill: Option<(Duration, &Path)>) -> (Attempt, String) {
    let newest_at_start = kill.map_or(0, |(_, checkpoints)| newest_checkpoint(checkpoints));
    let mut child = std::process::Command::new(sluice_binary())
        .arg("run")
        .args(args)
        .env("SLUICE_LOG", "sluice=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sluice");
    // Read standard error as it comes, so a full pipe never blocks the job.
    let mut pipe = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let stderr = stderr.join().expect("stderr reader");
            assert!(status.success(), "sluice run {args:?} failed: {stderr}");
            return (Attempt::Finished, stderr);
        }
        if let Some((after, checkpoints)) = kill
            && started.elapsed() >= after
        {
            let newest = newest_checkpoint(checkpoints);
            if newest > newest_at_start {
                child.kill().expect("SIGKILL");
                let _ = child.wait();
                let stderr = stderr.join().expect("stderr reader");
                return (
                    Attempt::Killed {
                        after_checkpoint: newest,
                    },
                    stderr,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The checkpoint a run's logs say it resumed from.
fn resumed_from(stderr: &str) -> Option<u64> {
    let (_, rest) = stderr.split_once("resuming from checkpoint ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Runs attempts of a job, each killed once a random time from a tenth to
/// a half of an uninterrupted run's `whole` milliseconds has passed and it
/// has completed a checkpoint (restored attempts start further on, so kills
/// spread over the whole job), until one runs to its end; after four kills
/// the next runs to its end. Every attempt after a kill must say it resumed
/// from the checkpoint the kill came after, or a later one. A scenario
/// whose first attempt ended before its kill (a race with the kill time)
/// starts again afresh, up to five times. `attempt(scenario, parallelism,
/// kill_after)` runs one attempt. Returns the last scenario and its kills.
fn kill_until_done(
    kills: &mut Kills,
    whole: u64,
    mut attempt: impl FnMut(usize, u64, Option<Duration>) -> (Attempt, String),
) -> (usize, usize) {
    for scenario in 0..5 {
        let mut killed = 0;
        let mut last_kill: Option<u64> = None;
        for n in 0.. {
            let parallelism = kills.next(1..4);
            let kill_after =
                (n < 4).then(|| Duration::from_millis(kills.next(whole / 10..whole / 2)));
            let (outcome, stderr) = attempt(scenario, parallelism, kill_after);
            if let Some(checkpoint) = last_kill {
                let resumed = resumed_from(&stderr);
                assert!(
                    resumed.is_some_and(|r| r >= checkpoint),
                    "killed after checkpoint {checkpoint}, the next run resumed from {resumed:?}: {stderr}"
                );
            }
            match outcome {
                Attempt::Finished => break,
                Attempt::Killed { after_checkpoint } => {
                    killed += 1;
                    last_kill = Some(after_checkpoint);
                }
            }
        }
        if killed > 0 {
            return (scenario, killed);
        }
    }
    panic!("in five scenarios, the job always ended before it was killed");
}

/// The binary killed with SIGKILL at random moments of a Parquet backfill
/// and of a stream job reading Kafka, restarted each time with
/// `--restore latest` at a random parallelism until it finishes, commits
/// exactly the rows of an uninterrupted run.
#[test]
fn the_binary_killed_at_random_moments_and_restored_commits_exactly_once() {
    let mut kills = Kills::new();
    let data = parquet_bids(400_000, 4);
    let brokers = sluice_tests::kafka::brokers().expect("a broker");
    let topic = sluice_tests::kafka::unique_topic("crash");
    sluice::generate::nexmark::generate_to(
        &sluice::generate::Destination::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            partitions: 3,
            rate: None,
        },
        100_000,
    )
    .expect("generate to Kafka");
    for (mode, query) in [("batch", "tumble"), ("batch", "hop"), ("stream", "tumble")] {
        let args = |out: &Path, parallelism: u64, extra: &[String]| -> Vec<String> {
            let mut args = vec![
                repo()
                    .join(format!("jobs/sql/nexmark/{query}.sql"))
                    .display()
                    .to_string(),
                "--mode".into(),
                mode.into(),
                "--parallelism".into(),
                parallelism.to_string(),
            ];
            for (name, value) in [
                ("DATA", data.path().display().to_string()),
                ("OUT", out.display().to_string()),
                ("KAFKA", brokers.clone()),
                ("TOPIC", topic.clone()),
                ("BOUNDED", "latest-offset".to_string()),
            ] {
                args.push("--set".into());
                args.push(format!("{name}={value}"));
            }
            args.extend_from_slice(extra);
            args
        };
        let reference = tempfile::tempdir().expect("tempdir");
        let reference_checkpoints = tempfile::tempdir().expect("tempdir");
        let started = std::time::Instant::now();
        let (reference_run, _) = run_or_kill(
            &args(
                reference.path(),
                2,
                &[
                    "--checkpoint-dir".into(),
                    reference_checkpoints.path().display().to_string(),
                ],
            ),
            None,
        );
        assert_eq!(reference_run, Attempt::Finished);
        // Kills land between a tenth and a half of an uninterrupted run's
        // time after each (re)start: in start-up or mid-work; restored
        // attempts start further on, so kills spread over the whole job.
        let whole = started.elapsed().as_millis() as u64;
        let expected = committed_rows(&reference.path().join(query));
        assert!(!expected.is_empty(), "{query}: no rows");

        let mut dirs: Vec<(tempfile::TempDir, tempfile::TempDir)> = Vec::new();
        let restarting = |checkpoints: &Path| {
            [
                "--checkpoint-dir".to_string(),
                checkpoints.display().to_string(),
                "--checkpoint-interval".into(),
                "20ms".into(),
                "--restore".into(),
                "latest".into(),
            ]
        };
        let (scenario, killed) =
            kill_until_done(&mut kills, whole, |scenario, parallelism, kill_after| {
                if dirs.len() <= scenario {
                    dirs.push((
                        tempfile::tempdir().expect("tempdir"),
                        tempfile::tempdir().expect("tempdir"),
                    ));
                }
                let (out, checkpoints) = &dirs[scenario];
                run_or_kill(
                    &args(out.path(), parallelism, &restarting(checkpoints.path())),
                    kill_after.map(|after| (after, checkpoints.path())),
                )
            });
        let (out, checkpoints) = &dirs[scenario];
        let restarting = restarting(checkpoints.path());
        let dir = out.path().join(query);
        assert!(
            staged_files(&dir).is_empty(),
            "{mode} {query}: uncommitted files left"
        );
        let actual = committed_rows(&dir);
        assert_eq!(
            actual.len(),
            expected.len(),
            "{mode} {query}: row counts after {killed} kills"
        );
        assert!(
            actual == expected,
            "{mode} {query}: rows after {killed} kills"
        );
        // A finished job restored again has nothing left to do.
        let (rerun, stderr) = run_or_kill(&args(out.path(), 2, &restarting), None);
        assert_eq!(rerun, Attempt::Finished);
        assert!(stderr.contains("had already finished"), "{stderr}");
        assert_eq!(committed_rows(&dir), expected, "{mode} {query}: rerun");
    }
}

/// A stream job stopped (SIGINT's path) takes a last checkpoint after its
/// sources stop: resumed from it, the job neither skips nor repeats a row.
#[test]
fn a_stopped_stream_job_resumes_from_its_last_checkpoint_without_gap_or_repeat() {
    let runtime = runtime();
    let brokers = sluice_tests::kafka::brokers().expect("a broker");
    let topic = sluice_tests::kafka::unique_topic("savepoint");
    sluice::generate::nexmark::generate_to(
        &sluice::generate::Destination::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            partitions: 3,
            rate: None,
        },
        60_000,
    )
    .expect("generate to Kafka");
    let job = |out: &Path, checkpoints: &Path, bounded: &str| {
        sluice::JobSpec::from_file(&repo().join("jobs/sql/nexmark/tumble.sql"))
            .expect("job file")
            .with_mode(sluice_engine::sql::Mode::Stream)
            .with_parallelism(2)
            .with_var("OUT", &out.display().to_string())
            .with_var("KAFKA", &brokers)
            .with_var("TOPIC", &topic)
            .with_var("BOUNDED", bounded)
            .with_checkpoint_interval(Duration::from_secs(3600))
            .with_checkpoint_dir(&checkpoints.display().to_string(), 2)
    };
    let reference = tempfile::tempdir().expect("tempdir");
    let reference_checkpoints = tempfile::tempdir().expect("tempdir");
    let whole = runtime
        .block_on(sluice::run(&job(
            reference.path(),
            reference_checkpoints.path(),
            "latest-offset",
        )))
        .expect("uninterrupted run");
    let expected = committed_rows(&reference.path().join("tumble"));

    let out = tempfile::tempdir().expect("tempdir");
    let checkpoints = tempfile::tempdir().expect("tempdir");
    // The topic never ends for this run: it stops once some rows are in.
    let metrics = std::sync::Arc::new(sluice_engine::metrics::JobMetrics::default());
    let stop = sluice_engine::StopSignal::default();
    let watcher = {
        let (metrics, stop) = (std::sync::Arc::clone(&metrics), stop.clone());
        runtime.spawn(async move {
            while sluice_engine::metrics::JobMetrics::get(&metrics.rows_in) < 20_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            stop.stop();
        })
    };
    let first = runtime
        .block_on(sluice::run_with(
            &job(out.path(), checkpoints.path(), "unbounded"),
            metrics,
            stop,
        ))
        .expect("first run");
    watcher.abort();
    assert!(first.stopped);
    assert!(
        first.rows_in < whole.rows_in,
        "stopped before the end ({} rows read)",
        first.rows_in
    );
    // The interval is an hour: the one checkpoint is the stop's.
    assert_eq!(first.checkpoints.len(), 1, "the last checkpoint");
    let second = runtime
        .block_on(sluice::run(
            &job(out.path(), checkpoints.path(), "latest-offset")
                .with_restore(sluice::Restore::Latest),
        ))
        .expect("resumed run");
    // The resumed run counts on from the checkpoint, which covers every
    // row the stopped run read: every record is read, and counted, once.
    assert_eq!(
        second.restored_from.map(|(_, counts)| counts.rows_in),
        Some(first.rows_in)
    );
    assert_eq!(second.rows_in, whole.rows_in, "every record read once");
    let dir = out.path().join("tumble");
    assert!(staged_files(&dir).is_empty(), "uncommitted files left");
    assert_eq!(committed_rows(&dir), expected);
}

/// Runs `spec` on a thread of its own; its metrics show how far it got.
fn run_in_background(
    spec: sluice::JobSpec,
) -> (
    std::sync::Arc<sluice_engine::metrics::JobMetrics>,
    std::thread::JoinHandle<sluice_engine::Result<sluice_engine::JobResult>>,
) {
    let metrics = std::sync::Arc::new(sluice_engine::metrics::JobMetrics::default());
    let running = {
        let metrics = std::sync::Arc::clone(&metrics);
        std::thread::spawn(move || {
            runtime().block_on(sluice::run_with(
                &spec,
                metrics,
                sluice_engine::StopSignal::default(),
            ))
        })
    };
    (metrics, running)
}

/// A broker of this test's own on another port, stopped when dropped.
struct PrivateBroker {
    port: u16,
}

impl PrivateBroker {
    fn script(&self, command: &str) -> String {
        let output = std::process::Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg(command)
            .env("SLUICE_KAFKA_PORT", self.port.to_string())
            .output()
            .expect("run scripts/broker.sh");
        assert!(
            output.status.success(),
            "broker.sh {command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(repo().join("scripts/broker.sh"))
            .arg("stop")
            .env("SLUICE_KAFKA_PORT", self.port.to_string())
            .output();
    }
}

/// The broker restarted in the middle of a stream job: the job stalls
/// while it is away, goes on when it is back, and its output is exact.
#[test]
fn a_broker_restart_mid_run_stalls_the_job_and_loses_nothing() {
    let main_runtime = runtime();
    let broker = PrivateBroker {
        port: 19092 + (std::process::id() % 500) as u16,
    };
    let brokers = broker.script("start");
    let topic = sluice_tests::kafka::unique_topic("restart");
    sluice::generate::nexmark::generate_to(
        &sluice::generate::Destination::Kafka {
            brokers: brokers.clone(),
            topic: topic.clone(),
            partitions: 2,
            rate: None,
        },
        40_000,
    )
    .expect("generate to Kafka");
    // The consumer fetches little at a time, so it needs the broker until
    // the end rather than holding every record before the restart.
    let text = std::fs::read_to_string(repo().join("jobs/sql/nexmark/tumble.sql"))
        .expect("job file")
        .replace(
            "'stream.format' = 'json',",
            "'stream.format' = 'json',\n  'stream.properties.queued.max.messages.kbytes' = '16',\n  'stream.properties.max.partition.fetch.bytes' = '16384',",
        );
    assert!(text.contains("queued.max.messages.kbytes"));
    let job = |out: &Path| {
        sluice::JobSpec::from_text("tumble.sql", &text)
            .with_mode(sluice_engine::sql::Mode::Stream)
            .with_parallelism(2)
            .with_var("OUT", &out.display().to_string())
            .with_var("KAFKA", &brokers)
            .with_var("TOPIC", &topic)
            .with_var("BOUNDED", "latest-offset")
    };
    let reference = tempfile::tempdir().expect("tempdir");
    let whole = main_runtime
        .block_on(sluice::run(&job(reference.path())))
        .expect("uninterrupted run");
    let expected = committed_rows(&reference.path().join("tumble"));

    let out = tempfile::tempdir().expect("tempdir");
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let spec = job(out.path())
        .with_checkpoint_interval(Duration::from_millis(50))
        .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2)
        .with_restarts(5, Duration::from_millis(500));
    let (metrics, running) = run_in_background(spec);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sluice_engine::metrics::JobMetrics::get(&metrics.rows_in) < 5_000 {
        assert!(std::time::Instant::now() < deadline, "the job read nothing");
        assert!(!running.is_finished(), "the job ended before the restart");
        std::thread::sleep(Duration::from_millis(1));
    }
    broker.script("restart");
    assert!(
        !running.is_finished(),
        "the job still had records to read when the broker came back"
    );
    let result = running.join().expect("job thread").expect("job");
    assert!(
        result.rows_in >= whole.rows_in,
        "read {} of {}",
        result.rows_in,
        whole.rows_in
    );
    let dir = out.path().join("tumble");
    assert!(staged_files(&dir).is_empty(), "uncommitted files left");
    assert_eq!(committed_rows(&dir), expected);
}

/// A checkpoint store that goes down once, when the first manifest of a
/// checkpoint taken mid-run is written: until it is brought back, every
/// write fails as a refused connection does (an outage that passes).
#[derive(Debug)]
struct FlakyStore {
    inner: sluice_connectors::checkpoints::ObjectCheckpoints,
    down: std::sync::atomic::AtomicBool,
    went_down: std::sync::atomic::AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> sluice_engine::Result<()> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(sluice_engine::SluiceError::io(
                "writing to the checkpoint store",
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        Ok(())
    }
}

impl sluice_engine::checkpoint::CheckpointStore for FlakyStore {
    fn list(
        &self,
    ) -> futures::future::BoxFuture<
        '_,
        sluice_engine::Result<sluice_engine::checkpoint::protocol::Listing>,
    > {
        self.inner.list()
    }

    fn write_state<'a>(
        &'a self,
        id: sluice_engine::checkpoint::CheckpointId,
        name: &'a str,
        bytes: Vec<u8>,
    ) -> futures::future::BoxFuture<'a, sluice_engine::Result<()>> {
        Box::pin(async move {
            self.check()?;
            self.inner.write_state(id, name, bytes).await
        })
    }

    fn read_state<'a>(
        &'a self,
        id: sluice_engine::checkpoint::CheckpointId,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, sluice_engine::Result<Vec<u8>>> {
        self.inner.read_state(id, name)
    }

    fn write_manifest<'a>(
        &'a self,
        manifest: &'a sluice_engine::checkpoint::protocol::Manifest,
    ) -> futures::future::BoxFuture<'a, sluice_engine::Result<()>> {
        Box::pin(async move {
            self.check()?;
            self.inner.write_manifest(manifest).await?;
            if !manifest.end
                && !self
                    .went_down
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                self.down.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        })
    }

    fn discard<'a>(
        &'a self,
        ids: &'a [sluice_engine::checkpoint::CheckpointId],
    ) -> futures::future::BoxFuture<'a, sluice_engine::Result<()>> {
        self.inner.discard(ids)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A transient failure (the checkpoint store down under a running job, as
/// a refused connection says) restarts the job in-process from its last
/// checkpoint, after the restart delay: the output is still exact, and the
/// rows read again after the restart are counted once.
#[test]
fn a_transient_failure_restarts_the_job_from_its_last_checkpoint() {
    let main_runtime = runtime();
    let data = parquet_bids(400_000, 16);
    let job = |out: &Path| {
        sluice::JobSpec::from_file(&repo().join("jobs/sql/nexmark/tumble.sql"))
            .expect("job file")
            .with_var("DATA", &data.path().display().to_string())
            .with_var("OUT", &out.display().to_string())
            .with_parallelism(2)
    };
    let reference = tempfile::tempdir().expect("tempdir");
    let uninterrupted = main_runtime
        .block_on(sluice::run(&job(reference.path())))
        .expect("uninterrupted run");
    let expected = committed_rows(&reference.path().join("tumble"));

    let out = tempfile::tempdir().expect("tempdir");
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(FlakyStore {
        inner: sluice_connectors::checkpoints::ObjectCheckpoints::new(
            &checkpoints.path().display().to_string(),
            "nexmark_tumble",
        )
        .expect("store"),
        down: std::sync::atomic::AtomicBool::new(false),
        went_down: std::sync::atomic::AtomicBool::new(false),
    });
    let spec = job(out.path())
        .with_checkpoint_interval(Duration::from_millis(3))
        .with_checkpoint_store(store.clone(), 2)
        .with_restarts(3, Duration::from_millis(400));
    let (metrics, running) = run_in_background(spec);
    // Once a checkpoint is complete, the store goes down: writing the next
    // state files or manifest (the end's, at the latest) fails. It comes
    // back before the restart delay is over.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sluice_engine::metrics::JobMetrics::get(&metrics.restarts) == 0
        && !running.is_finished()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    store.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let result = running.join().expect("job thread");
    let restarts = sluice_engine::metrics::JobMetrics::get(&metrics.restarts);
    let result = result.expect("the job recovers");
    assert!(restarts >= 1, "the job restarted ({restarts} restarts)");
    assert!(
        result.restored_from.is_some(),
        "the restart resumed from the completed checkpoint"
    );
    // Rows read again after the restart count once.
    assert_eq!(
        (result.rows_in, result.rows_out, result.late_rows),
        (
            uninterrupted.rows_in,
            uninterrupted.rows_out,
            uninterrupted.late_rows
        ),
        "counts after {restarts} restarts"
    );
    assert_eq!(
        sluice_engine::metrics::JobMetrics::get(&metrics.rows_in),
        uninterrupted.rows_in
    );
    let dir = out.path().join("tumble");
    assert!(staged_files(&dir).is_empty(), "uncommitted files left");
    assert_eq!(committed_rows(&dir), expected);
}

/// The binary killed at random moments of a stream job that reads Kafka,
/// aggregates windows and writes both a Parquet sink and an exactly-once
/// Kafka sink (on librdkafka's mock cluster, which this process serves):
/// after restores the Parquet output is exact and the Kafka output holds
/// every row (the mock cluster shows aborted records too, so "not twice"
/// cannot be checked on it).
#[test]
fn the_binary_killed_while_writing_parquet_and_kafka_exactly_once_loses_nothing() {
    let mut kills = Kills::new();
    let runtime = runtime();
    let cluster = rdkafka::mocking::MockCluster::new(3).expect("mock cluster");
    let brokers = cluster.bootstrap_servers();
    for topic in ["in", "reference"] {
        cluster.create_topic(topic, 2, 1).expect("topic");
    }
    runtime.block_on(sluice_tests::mock::produce_bids(&brokers, "in", 2, 20_000));
    let dir = tempfile::tempdir().expect("tempdir");
    let job = |out: &Path, topic: &str| {
        let path = dir.path().join(format!("{topic}.sql"));
        std::fs::write(
            &path,
            format!(
                "SET 'pipeline.name' = 'two_sinks';
                 CREATE TABLE bid (auction BIGINT, price BIGINT, ts TIMESTAMP(3),
                   WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
                 WITH ('connector' = 'kafka', 'topic' = 'in', 'properties.bootstrap.servers' = '{brokers}',
                       'format' = 'json', 'scan.bounded.mode' = 'latest-offset');
                 CREATE TABLE files (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
                 WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');
                 CREATE TABLE topic (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT)
                 WITH ('connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{brokers}',
                       'format' = 'json', 'sink.delivery-guarantee' = 'exactly-once',
                       'sink.transactional-id-prefix' = '{topic}');
                 CREATE VIEW counts AS SELECT auction, window_start, COUNT(*) AS bids, MAX(price) AS top
                 FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), INTERVAL '10' SECOND))
                 GROUP BY auction, window_start, window_end;
                 INSERT INTO files SELECT * FROM counts;
                 INSERT INTO topic SELECT * FROM counts;",
                out.display()
            ),
        )
        .expect("job file");
        path.display().to_string()
    };
    let args = |job: String, checkpoints: &Path, parallelism: u64| -> Vec<String> {
        vec![
            job,
            "--mode".into(),
            "stream".into(),
            "--parallelism".into(),
            parallelism.to_string(),
            "--checkpoint-dir".into(),
            checkpoints.display().to_string(),
            "--checkpoint-interval".into(),
            "20ms".into(),
            "--restore".into(),
            "latest".into(),
        ]
    };
    let reference = tempfile::tempdir().expect("tempdir");
    let reference_checkpoints = tempfile::tempdir().expect("tempdir");
    let started = std::time::Instant::now();
    let (reference_run, _) = run_or_kill(
        &args(
            job(reference.path(), "reference"),
            reference_checkpoints.path(),
            2,
        ),
        None,
    );
    assert_eq!(reference_run, Attempt::Finished);
    let whole = started.elapsed().as_millis() as u64;
    let expected_files = committed_rows(reference.path());
    let expected_records = sluice_tests::mock::read_committed(&brokers, "reference");
    assert!(!expected_files.is_empty() && !expected_records.is_empty());

    let mut dirs: Vec<(tempfile::TempDir, tempfile::TempDir)> = Vec::new();
    let (scenario, killed) =
        kill_until_done(&mut kills, whole, |scenario, parallelism, kill_after| {
            // Each scenario writes a topic of its own.
            let topic = format!("out{scenario}");
            if dirs.len() <= scenario {
                cluster.create_topic(&topic, 2, 1).expect("topic");
                dirs.push((
                    tempfile::tempdir().expect("tempdir"),
                    tempfile::tempdir().expect("tempdir"),
                ));
            }
            let (out, checkpoints) = &dirs[scenario];
            run_or_kill(
                &args(job(out.path(), &topic), checkpoints.path(), parallelism),
                kill_after.map(|after| (after, checkpoints.path())),
            )
        });
    let (out, _) = &dirs[scenario];
    assert!(
        staged_files(out.path()).is_empty(),
        "uncommitted files left"
    );
    assert_eq!(
        committed_rows(out.path()),
        expected_files,
        "after {killed} kills"
    );
    let records = sluice_tests::mock::read_committed(&brokers, &format!("out{scenario}"));
    for record in &expected_records {
        assert!(
            records.contains(record),
            "missing {record} after {killed} kills"
        );
    }
}

/// A job restored from the checkpoint of its end has nothing left to do,
/// even one whose aggregate has a row for no input (COUNT(*) of nothing).
#[test]
fn restoring_a_finished_job_does_nothing() {
    let runtime = runtime();
    let data = parquet_bids(2_000, 2);
    let out = tempfile::tempdir().expect("tempdir");
    let checkpoints = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "CREATE TABLE bid (auction BIGINT, price BIGINT) WITH ('connector' = 'filesystem',
           'path' = '{}', 'format' = 'parquet');
         CREATE TABLE total (bids BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}',
           'format' = 'parquet');
         INSERT INTO total SELECT COUNT(*) FROM bid;",
        data.path().join("bid").display(),
        out.path().display()
    );
    let spec = sluice::JobSpec::from_text("total", &text)
        .with_checkpoint_interval(Duration::from_millis(5))
        .with_checkpoint_dir(&checkpoints.path().display().to_string(), 2)
        .with_restore(sluice::Restore::Latest);
    let first = runtime.block_on(sluice::run(&spec)).expect("first run");
    assert!(first.rows_in > 0);
    let rows = committed_rows(out.path());
    assert_eq!(rows.len(), 1, "{rows:?}");
    let again = runtime.block_on(sluice::run(&spec)).expect("second run");
    assert!(again.already_finished);
    // It reports the job's counts, which the checkpoint of its end keeps.
    assert_eq!(
        (again.rows_in, again.rows_out),
        (first.rows_in, first.rows_out)
    );
    assert_eq!(committed_rows(out.path()), rows);
}

/// A checkpoint restores into a job file that changed elsewhere: here a
/// second INSERT over another table, written before the first, which
/// renumbers every node of the job graph. Each node's state is found by its
/// stable id, so the original crashed at a checkpoint and the changed file
/// restored from it at another parallelism commit an uninterrupted run's
/// rows.
#[test]
fn a_checkpoint_restores_into_a_job_file_changed_elsewhere() {
    let original =
        std::fs::read_to_string(repo().join("jobs/sql/nexmark/tumble.sql")).expect("job file");
    let at = original.find("INSERT INTO").expect("an INSERT");
    let changed = format!(
        "{}CREATE TABLE auction_ids (id BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '${{DATA}}/auction', 'format' = 'parquet');
         CREATE TABLE auction_copy (id BIGINT) WITH (
           'connector' = 'filesystem', 'path' = '${{OUT}}/auction_copy', 'format' = 'parquet');
         INSERT INTO auction_copy SELECT id FROM auction_ids;\n{}",
        &original[..at],
        &original[at..]
    );
    restores_into(&original, &changed);
}

/// A checkpoint taken without late rows kept restores into the same job
/// keeping them (its source then reads every column and carries each row
/// to the window), and commits an uninterrupted run's rows.
#[test]
fn a_checkpoint_restores_into_a_run_that_keeps_late_rows() {
    let original =
        std::fs::read_to_string(repo().join("jobs/sql/nexmark/tumble.sql")).expect("job file");
    let late = tempfile::tempdir().expect("tempdir");
    let at = original.find("CREATE TABLE").expect("a table");
    let changed = format!(
        "{}SET 'sluice.late-data.path' = '{}';\n{}",
        &original[..at],
        late.path().join("late").display(),
        &original[at..]
    );
    restores_into(&original, &changed);
}

/// `original` crashed once a checkpoint completed (again if it ended
/// first), then `changed` restored from it at another parallelism, commits
/// the rows of an uninterrupted run of `original`.
fn restores_into(original: &str, changed: &str) {
    let main_runtime = runtime();
    let data = parquet_bids(400_000, 4);
    let spec = |text: &str, out: &Path, checkpoints: &Path, parallelism: usize| {
        sluice::JobSpec::from_text("tumble.sql", text)
            .with_var("DATA", &data.path().display().to_string())
            .with_var("OUT", &out.display().to_string())
            .with_parallelism(parallelism)
            .with_checkpoint_interval(Duration::from_millis(3))
            .with_checkpoint_dir(&checkpoints.display().to_string(), 2)
            .with_restore(sluice::Restore::Latest)
    };
    let reference = tempfile::tempdir().expect("tempdir");
    let unused = tempfile::tempdir().expect("tempdir");
    main_runtime
        .block_on(sluice::run(&spec(
            original,
            reference.path(),
            unused.path(),
            2,
        )))
        .expect("uninterrupted run");
    let expected = committed_rows(&reference.path().join("tumble"));
    for scenario in 1.. {
        let out = tempfile::tempdir().expect("tempdir");
        let checkpoints = tempfile::tempdir().expect("tempdir");
        let first = spec(original, out.path(), checkpoints.path(), 2);
        let crashed = runtime();
        let ended = crashed.block_on(async {
            tokio::select! {
                result = sluice::run(&first) => Some(result),
                () = async {
                    while newest_checkpoint(checkpoints.path()) == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                } => None,
            }
        });
        crashed.shutdown_timeout(Duration::from_secs(30));
        // A busy machine can finish reading before the first checkpoint,
        // which is then the job's end: crash it again.
        if ended.is_some() || newest_is_end(checkpoints.path()) {
            assert!(scenario < 5, "the job always ended before a checkpoint");
            continue;
        }
        let result = main_runtime
            .block_on(sluice::run(&spec(
                changed,
                out.path(),
                checkpoints.path(),
                3,
            )))
            .expect("the changed file restores");
        assert!(result.restored_from.is_some(), "it restored a checkpoint");
        assert_eq!(committed_rows(&out.path().join("tumble")), expected);
        break;
    }
}

/// A checkpoint whose operator changed (here the window's size) is refused,
/// naming the node whose state would be lost.
#[test]
fn a_checkpoint_of_a_changed_operator_is_refused_naming_it() {
    let data = parquet_bids(400_000, 4);
    let original =
        std::fs::read_to_string(repo().join("jobs/sql/nexmark/tumble.sql")).expect("job file");
    let spec = |text: &str, out: &Path, checkpoints: &Path| {
        sluice::JobSpec::from_text("tumble.sql", text)
            .with_var("DATA", &data.path().display().to_string())
            .with_var("OUT", &out.display().to_string())
            .with_checkpoint_interval(Duration::from_millis(3))
            .with_checkpoint_dir(&checkpoints.display().to_string(), 2)
            .with_restore(sluice::Restore::Latest)
    };
    // Crashed once a checkpoint has completed, before the end (again when
    // the job ended first, or its first checkpoint was its end's).
    let (out, checkpoints) = (1..)
        .find_map(|scenario| {
            let out = tempfile::tempdir().expect("tempdir");
            let checkpoints = tempfile::tempdir().expect("tempdir");
            let first = spec(&original, out.path(), checkpoints.path());
            let crashed = runtime();
            let ended = crashed.block_on(async {
                tokio::select! {
                    result = sluice::run(&first) => Some(result),
                    () = async {
                        while newest_checkpoint(checkpoints.path()) == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    } => None,
                }
            });
            crashed.shutdown_timeout(Duration::from_secs(30));
            let mid_run = ended.is_none() && !newest_is_end(checkpoints.path());
            assert!(
                mid_run || scenario < 5,
                "the job always ended before a checkpoint"
            );
            mid_run.then_some((out, checkpoints))
        })
        .expect("a crash mid-run");
    let changed = original.replace("INTERVAL '10' SECOND", "INTERVAL '20' SECOND");
    assert_ne!(changed, original, "the window's size is in the file");
    let error = runtime()
        .block_on(sluice::run(&spec(&changed, out.path(), checkpoints.path())))
        .expect_err("refused")
        .to_string();
    assert!(
        error.contains("and this job graph has no node with that id")
            && error.contains("WindowAggregate"),
        "{error}"
    );
}
