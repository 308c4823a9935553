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
