//! The `sluice` binary as a user runs it.

use std::path::Path;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_binary_runs_a_job_and_reports_bad_input_clearly() {
    let data = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let gen_status = std::process::Command::new(sluice)
        .args([
            "gen", "nexmark", "--events", "5000", "--files", "1", "--out",
        ])
        .arg(data.path())
        .status()
        .expect("run sluice gen");
    assert!(gen_status.success());
    let run = std::process::Command::new(sluice)
        .arg("run")
        .arg(repo().join("jobs/sql/nexmark/tumble.sql"))
        .arg("--set")
        .arg(format!("DATA={}", data.path().display()))
        .arg("--set")
        .arg(format!("OUT={}", out.path().display()))
        .output()
        .expect("run sluice run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("4600 rows in"), "summary line: {stderr}");
    // A table whose declared column the files do not have.
    let job = data.path().join("bad.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE bid (auction BIGINT, colour STRING) WITH ('connector' = 'filesystem', 'path' = '{}/bid', 'format' = 'parquet');\n\
             CREATE TABLE o (auction BIGINT, colour STRING) WITH ('connector' = 'blackhole');\n\
             INSERT INTO o SELECT * FROM bid;",
            data.path().display()
        ),
    )
    .expect("write job");
    let run = std::process::Command::new(sluice)
        .arg("run")
        .arg(&job)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("part-0000.parquet: no column `colour`, which table `bid` declares"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn explain_shows_chaining_exchanges_and_parallelism() {
    let sluice = env!("CARGO_BIN_EXE_sluice");
    let job = repo().join("jobs/sql/nexmark/tumble.sql");
    let run = std::process::Command::new(sluice)
        .arg("explain")
        .arg(&job)
        .args(["--parallelism", "3"])
        .output()
        .expect("run sluice explain");
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let expected = [
        "Stage 0 (parallelism 3):",
        "  Source[bid] filesystem columns [auction, price, date_time]; watermark date_time - INTERVAL '4' SECOND",
        "    LocalWindowAggregate[TUMBLE(size 10s) keys [auction]",
        "      └─ hash(auction) ─> stage 1 (WindowAggregate)",
        "Stage 1 (parallelism 3):",
        "  WindowAggregate[TUMBLE(size 10s) keys [auction]",
        "      Sink[tumble] filesystem parquet",
    ];
    for line in expected {
        assert!(text.contains(line), "missing `{line}` in:\n{text}");
    }
    let dot = std::process::Command::new(sluice)
        .arg("explain")
        .arg(&job)
        .arg("--dot")
        .output()
        .expect("run sluice explain --dot");
    let dot = String::from_utf8_lossy(&dot.stdout);
    assert!(dot.starts_with("digraph sluice {"), "{dot}");
    assert!(dot.contains("[label=\"hash(auction)\"]"), "{dot}");
    assert!(dot.contains("[style=dashed, label=\"chained\"]"), "{dot}");
}

/// `explain` writes what the job file says, as SQL: intervals as
/// `INTERVAL '10' SECOND`, strings quoted, columns by the names the job
/// gives them, and an exchange's keys as the operator it feeds names them.
#[test]
fn explain_prints_expressions_as_sql() {
    let explain = |job: &str| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("explain")
            .arg(repo().join(job))
            .args(["--set", "DATA=/data", "--set", "OUT=/out"])
            .output()
            .expect("run sluice explain");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        String::from_utf8_lossy(&run.stdout).into_owned()
    };
    let q5 = explain("jobs/sql/nexmark/q5.sql");
    assert!(
        q5.contains("Project[window_end - INTERVAL '10' SECOND AS window_start, window_end,"),
        "{q5}"
    );
    assert!(q5.contains("aggs [count(*)]"), "{q5}");
    let game = explain("jobs/sql/game_daily.sql");
    for expected in [
        "event NOT IN ('session_start', 'level_up', 'purchase', 'session_end')",
        "count(*) FILTER (WHERE event = 'session_start')",
        "ELSE '60+ min' END AS bucket]",
        "LocalWindowAggregate[TUMBLE(size 1d) keys [app_id, bucket] aggs [count(*)]]",
        "└─ hash(app_id, bucket) ─> stage 3 (WindowAggregate)",
        "  WindowAggregate[TUMBLE(size 1d) keys [app_id, bucket] aggs [count(*)]]",
        // The Project after an aggregate names its columns as it computes them.
        "count(*) FILTER (WHERE event = 'session_start') AS sessions",
        "count(*) AS players]",
    ] {
        assert!(game.contains(expected), "missing `{expected}` in:\n{game}");
    }
    for text in [&q5, &game] {
        for internal in ["IntervalMonthDayNano", "__sluice", "@", "Utf8(", "Int64(1)"] {
            assert!(!text.contains(internal), "`{internal}` in:\n{text}");
        }
    }
}

/// A stream job on an unbounded topic runs until SIGINT, then stops
/// cleanly: exit code 0 and a summary line that says it stopped.
#[test]
fn a_stream_job_stops_cleanly_on_sigint() {
    use std::io::BufRead;
    let Ok(brokers) = std::env::var("SLUICE_KAFKA_BROKERS") else {
        panic!(
            "SLUICE_KAFKA_BROKERS is not set: start a broker with scripts/broker.sh (scripts/test.sh does)"
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("cli-{}-{nanos}", std::process::id());
    let gen_status = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["gen", "nexmark", "--events", "1000", "--partitions", "2"])
        .args(["--kafka", &brokers, "--topic", &prefix])
        .status()
        .expect("run sluice gen");
    assert!(gen_status.success());
    let job = dir.path().join("tail.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE bid (auction BIGINT, price BIGINT) WITH ('connector' = 'kafka',
               'topic' = '{prefix}.bid', 'properties.bootstrap.servers' = '{brokers}', 'format' = 'json');
             CREATE TABLE shown (auction BIGINT, price BIGINT) WITH ('connector' = 'print');
             INSERT INTO shown SELECT auction, price FROM bid;"
        ),
    )
    .expect("write job");
    // Stream mode checkpoints by default, into .sluice/checkpoints under
    // the working directory.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .arg("run")
        .arg(&job)
        .args(["--mode", "stream"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sluice run");
    // Read what it prints until every bid has come through.
    let stdout = child.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        let mut seen = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l.contains("+I[")) {
                seen += 1;
                if seen == 920 {
                    break;
                }
            }
        }
        seen
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if !lines.is_finished() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("wait");
        panic!(
            "the 920 bids did not come through in 30 s: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(lines.join().expect("reader"), 920);
    assert!(
        child.try_wait().expect("poll").is_none(),
        "an unbounded job keeps running"
    );
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit code: {stderr}");
    assert!(
        stderr.contains("tail.sql stopped; committed up to checkpoint ")
            && stderr.contains(": 920 rows in, 920 rows out"),
        "{stderr}"
    );
    // The stop took a last checkpoint in the default directory.
    let checkpoints: Vec<_> = std::fs::read_dir(dir.path().join(".sluice/checkpoints/tail"))
        .expect("the default checkpoint directory")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_manifest.json").exists())
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint: {stderr}");
}

/// A `SET` whose key Sluice does not read is most likely a typo: the run
/// warns, naming the key, its line and the closest known one. A job's own
/// parameter, read with `job_param`, is not warned of.
#[test]
fn an_unknown_setting_is_warned_of_with_the_closest_known_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let job = dir.path().join("typo.sql");
    std::fs::write(
        &job,
        "SET 'pipeline.nmae' = 'typo';\n\
         SET 'app.threshold' = '3';\n\
         CREATE TABLE gen (event_type INT) WITH ('connector' = 'nexmark', 'events.num' = '10');\n\
         CREATE TABLE o (t STRING) WITH ('connector' = 'blackhole');\n\
         INSERT INTO o SELECT job_param('app.threshold') FROM gen;",
    )
    .expect("job");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&job)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "typo.sql:1:1: SET 'pipeline.nmae': Sluice does not use this setting; did you mean 'pipeline.name'?"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("'app.threshold'"), "{stderr}");
}

/// Files named before the job are read first, as Flink's SQL client reads
/// its initialization files: a table declared in one is queried in the next.
#[test]
fn files_before_the_job_are_read_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ddl = dir.path().join("ddl.sql");
    std::fs::write(
        &ddl,
        "CREATE TABLE gen (event_type INT) WITH ('connector' = 'nexmark', 'events.num' = '${EVENTS}');",
    )
    .expect("ddl");
    let job = dir.path().join("count.sql");
    std::fs::write(
        &job,
        "CREATE TABLE o (t INT) WITH ('connector' = 'blackhole');\nINSERT INTO o SELECT event_type FROM gen;",
    )
    .expect("job");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .args([&ddl, &job])
        .args(["--set", "EVENTS=100"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("count.sql finished: 100 rows in"),
        "{stderr}"
    );
    // Messages name the file a statement is in.
    std::fs::write(&job, "INSERT INTO nowhere SELECT event_type FROM gen;").expect("job");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .args([&ddl, &job])
        .args(["--set", "EVENTS=100"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains(&format!("{}:1:", job.display())),
        "{stderr}"
    );
}
