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
        "    LocalWindowAggregate[TUMBLE(size 10s) keys [auction@0]",
        "      └─ hash(auction@1) ─> stage 1 (WindowAggregate)",
        "Stage 1 (parallelism 3):",
        "  WindowAggregate[TUMBLE(size 10s) keys [auction@0]",
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
    assert!(dot.contains("[label=\"hash(auction@1)\"]"), "{dot}");
    assert!(dot.contains("[style=dashed, label=\"chained\"]"), "{dot}");
}

#[test]
fn the_demo_runs_end_to_end_on_generated_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--events", "20000"])
        .output()
        .expect("run sluice demo");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("generating 20000 game events"), "{stderr}");
    assert!(stderr.contains("20000 rows in"), "{stderr}");
    for table in [
        "daily_app_stats: 12 rows",
        "playtime_distribution:",
        "bad_events:",
    ] {
        assert!(stdout.contains(table), "missing `{table}` in:\n{stdout}");
    }
    assert!(stdout.contains("| app_id"), "rows are shown: {stdout}");
}
