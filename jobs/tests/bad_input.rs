//! Bad input through the `sluice` binary: damaged files, files that are not
//! files, and huge bad values. Each must end the run at once with a short
//! message naming the culprit, never a retry as if the trouble could pass,
//! and never a hang.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::Int64Array;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

/// Longer than any of these runs takes; a run past it is a hang.
const HANG: Duration = Duration::from_secs(60);

/// What a run of `sluice run <job>` left: its exit status and stderr.
struct Run {
    status: ExitStatus,
    stderr: String,
}

/// Runs `job` (with restarts allowed, so a wrong retry would show) and
/// waits for it, killing it if it outlives [`HANG`].
fn run(dir: &Path, job: &str) -> Run {
    let file = dir.join(format!("job-{}.sql", job.len()));
    std::fs::write(&file, job).expect("write job");
    let stderr_path = dir.join("stderr.txt");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .arg(&file)
        .args(["--restart-attempts", "3", "--restart-delay", "10ms"])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start sluice run");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the job ran for more than {HANG:?}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read(&stderr_path).expect("read stderr");
    Run {
        status,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A job reading table `t` (one BIGINT `n`) from `path` into a blackhole.
fn job(path: &Path, format: &str) -> String {
    format!(
        "CREATE TABLE t (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}');\n\
         CREATE TABLE o (n BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO o SELECT n FROM t;",
        path.display()
    )
}

/// The bytes of a Parquet file of BIGINTs `0..rows` in column `n`.
fn parquet_bytes(rows: i64) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int64Array::from_iter_values(0..rows))],
    )
    .expect("batch");
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    bytes
}

/// A damaged page fails the job at once as a data error naming the file:
/// no restart, which could only fail the same way again.
#[test]
fn a_damaged_parquet_file_fails_the_job_at_once_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("t");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("a.parquet"), parquet_bytes(1000)).expect("write");
    let mut damaged = parquet_bytes(1000);
    // The first page header follows the 4-byte magic number.
    damaged[4..36].fill(0xff);
    let file = data.join("b.parquet");
    std::fs::write(&file, damaged).expect("write");
    let run = run(dir.path(), &job(&data, "parquet"));
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "file://{} row group 0: damaged Parquet data",
            file.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("restarting"), "{}", run.stderr);
}

/// A table directory that cannot be listed (here a path through a file,
/// as an unreadable directory is for any user but root) fails the job at
/// once: listing it again gives the same answer.
#[test]
fn an_unlistable_table_directory_fails_the_job_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.json");
    std::fs::write(&file, "{\"n\": 1}\n").expect("write");
    let run = run(dir.path(), &job(&file.join("sub/*.json"), "json"));
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("listing file://{}/sub", file.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Not a directory"), "{}", run.stderr);
    assert!(!run.stderr.contains("restarting"), "{}", run.stderr);
}

/// A sink that cannot be written (its directory would be inside a file)
/// fails the job at once: no restart can make a file a directory.
#[test]
fn an_unwritable_sink_fails_the_job_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("t.json");
    std::fs::write(&input, "{\"n\": 1}\n").expect("write");
    let sink = input.join("out");
    let job = format!(
        "CREATE TABLE t (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         CREATE TABLE o (n BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         INSERT INTO o SELECT n FROM t;",
        input.display(),
        sink.display()
    );
    let run = run(dir.path(), &job);
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("file://{}", sink.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Not a directory"), "{}", run.stderr);
    assert!(!run.stderr.contains("restarting"), "{}", run.stderr);
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A FIFO named like a data file would block its reader for ever: in a
/// table's directory it is skipped with a warning, and a table whose
/// `path` names it is refused.
#[test]
fn a_fifo_is_skipped_in_a_directory_and_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("t");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::write(data.join("a.parquet"), parquet_bytes(10)).expect("write");
    let fifo = data.join("b.parquet");
    mkfifo(&fifo);

    let listed = run(dir.path(), &job(&data, "parquet"));
    assert!(listed.status.success(), "{}", listed.stderr);
    assert!(listed.stderr.contains("10 rows in"), "{}", listed.stderr);
    assert!(
        listed.stderr.contains(&format!(
            "skipping file://{}: it is a FIFO, not a regular file",
            fifo.display()
        )),
        "{}",
        listed.stderr
    );

    let named = run(dir.path(), &job(&fifo, "parquet"));
    assert!(!named.status.success(), "{}", named.stderr);
    assert!(
        named
            .stderr
            .contains(&format!("{} is a FIFO, not a regular file", fifo.display())),
        "{}",
        named.stderr
    );
    assert!(!named.stderr.contains("restarting"), "{}", named.stderr);
}

/// A bad value of 20 MB gives a message of a few hundred bytes that names
/// the file and the byte offset of the bad record.
#[test]
fn a_huge_bad_json_line_gives_a_short_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.json");
    let good: String = (0..100).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    let bad = format!("{{\"n\": \"{}\"}}\n", "x".repeat(20 << 20));
    std::fs::write(&file, format!("{good}{bad}{good}")).expect("write");
    let run = run(dir.path(), &job(&file, "json"));
    assert!(!run.status.success());
    assert!(
        run.stderr.len() < 4096,
        "{} bytes of messages: {}…",
        run.stderr.len(),
        &run.stderr[..run.stderr.len().min(2000)]
    );
    assert!(
        run.stderr.contains(&format!(
            "file://{}: the record at byte {} cannot be decoded",
            file.display(),
            good.len()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("bytes)"), "{}", run.stderr);
    assert!(!run.stderr.contains("restarting"), "{}", run.stderr);
}
