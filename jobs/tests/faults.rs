//! The `sluice` binary under faults a user meets: a signal mid-run, a
//! crash in the middle of the final commit, checkpoints that cannot be
//! read or belong to another input or job, and a job too busy to notice a
//! signal. Each run either gives the whole answer or says it did not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// `events` Nexmark events as Parquet under `dir`, in `files` files per table.
fn nexmark(dir: &Path, events: u64, files: usize) {
    let status = sluice()
        .args(["gen", "nexmark", "--events", &events.to_string()])
        .args(["--files", &files.to_string(), "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("sluice gen");
    assert!(status.success());
}

/// A job copying every bid from `data` to Parquet under `out`.
fn copy_job(dir: &Path, data: &Path, out: &Path, name: &str) -> PathBuf {
    let job = dir.join(format!("{name}.sql"));
    std::fs::write(
        &job,
        format!(
            "SET 'pipeline.name' = 'copy';\n\
             CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP(3),\n\
               WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)\n\
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
             CREATE TABLE copy (auction BIGINT, price BIGINT)\n\
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
             INSERT INTO copy SELECT auction, price FROM bid;",
            data.display(),
            out.display()
        ),
    )
    .expect("write job");
    job
}

/// The job `append` with `INSERT OVERWRITE` for its `INSERT INTO`.
fn overwrite_job(dir: &Path, append: &Path) -> PathBuf {
    let job = dir.join("overwrite.sql");
    let text = std::fs::read_to_string(append).expect("job");
    std::fs::write(
        &job,
        text.replace("INSERT INTO copy", "INSERT OVERWRITE copy"),
    )
    .expect("job");
    job
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// What readers see: names not starting with `.` or `_`.
fn visible(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with(['.', '_']))
        .collect()
}

/// Rows in the visible Parquet files of `dir`.
fn committed_rows(dir: &Path) -> usize {
    visible(dir)
        .iter()
        .map(|name| {
            let file = std::fs::File::open(dir.join(name)).expect("open");
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .metadata()
                .file_metadata()
                .num_rows() as usize
        })
        .sum()
}

fn run<A: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = A>) -> Output {
    sluice()
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("sluice run")
}

/// Starts `sluice run JOB --parallelism 2` with failpoints armed, its
/// standard error piped.
fn spawn_with_failpoints(job: &Path, failpoints: &str) -> Child {
    sluice()
        .arg("run")
        .arg(job)
        .args(["--parallelism", "2"])
        .env("SLUICE_FAILPOINTS", failpoints)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// SIGTERM in the middle of a batch run without checkpoints: the run says
/// it was stopped and that nothing is committed, exits non-zero, and leaves
/// no file behind, visible or staged.
#[test]
fn a_batch_run_stopped_without_checkpoints_commits_nothing_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 20_000, 4);
    let out = dir.path().join("out");
    let job = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    // Every batch is slowed down, and the first says so: the signal lands
    // after rows went through and before the end.
    let mut child = spawn_with_failpoints(&job, "operator.busy=sleep:300");
    let (heard, text) = read_stderr(&mut child, &["sleeping"]);
    heard
        .recv_timeout(Duration::from_secs(60))
        .expect("a batch on its way");
    signal(&child, "TERM");
    let output = wait_with_timeout(&mut child);
    let stderr = text.join().expect("reader");
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "copy.sql was stopped before its end; without checkpoints nothing of a stopped run is committed"
        ),
        "{stderr}"
    );
    assert!(names(&out).is_empty(), "left behind: {:?}", names(&out));
}

/// A crash (the process aborts, as `kill -9` would) after some of the
/// final commit's renames leaves no `_SUCCESS`; the next run rolls the
/// half-made commit back, so its output is there exactly once.
#[test]
fn a_crash_during_the_final_commit_leaves_no_partial_result_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 4);
    let out = dir.path().join("out");
    let job = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    let crashed = sluice()
        .arg("run")
        .arg(&job)
        .args(["--parallelism", "4"])
        .env("SLUICE_FAILPOINTS", "sink.commit.rename=3")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!crashed.status.success(), "the failpoint aborts the run");
    assert_eq!(
        visible(&out).len(),
        2,
        "two renames made: {:?}",
        names(&out)
    );
    assert!(!out.join("_SUCCESS").exists());
    assert!(
        names(&out).iter().any(|n| n.starts_with(".commit-")),
        "the commit log tells the next run what to undo: {:?}",
        names(&out)
    );

    let rerun = run([job.as_os_str(), "--parallelism".as_ref(), "4".as_ref()]);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(stderr.contains("4600 rows in, 4600 rows out"), "{stderr}");
    assert_eq!(committed_rows(&out), 4600, "once: {:?}", names(&out));
    assert!(out.join("_SUCCESS").exists());
    let hidden: Vec<String> = names(&out)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// Reads a child's standard error on a thread of its own, which sends on
/// the returned channel as each of `marks` appears in it, in order, and
/// returns all of it when the child has exited.
fn read_stderr(
    child: &mut Child,
    marks: &'static [&'static str],
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    let mut pipe = child.stderr.take().expect("stderr");
    let (said, heard) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buffer = [0u8; 4096];
        let mut announced = 0;
        loop {
            match std::io::Read::read(&mut pipe, &mut buffer) {
                Ok(0) | Err(_) => return text,
                Ok(n) => {
                    text.push_str(&String::from_utf8_lossy(&buffer[..n]));
                    while announced < marks.len() && text.contains(marks[announced]) {
                        announced += 1;
                        let _ = said.send(());
                    }
                }
            }
        }
    });
    (heard, reader)
}

/// Waits for a child to exit, killing it after a minute.
fn wait_with_timeout(child: &mut Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut pipe, &mut stderr);
    }
    Output {
        status: child.wait().expect("status"),
        stdout: Vec::new(),
        stderr,
    }
}

/// `--restore latest` with checkpoints that all completed but none of
/// which can be read stops and lists them, rather than start over and
/// write again what they committed. Without `--restore` the run is a
/// fresh start on purpose.
#[test]
fn restore_latest_refuses_when_no_completed_checkpoint_can_be_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let job = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    let checkpointing: Vec<std::ffi::OsString> = vec![
        job.clone().into(),
        "--checkpoint-dir".into(),
        checkpoints.clone().into(),
        "--checkpoint-interval".into(),
        "10ms".into(),
    ];
    let first = run(&checkpointing);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let mut damaged = 0;
    for chk in names(&checkpoints.join("copy")) {
        let manifest = checkpoints.join("copy").join(chk).join("_manifest.json");
        if manifest.exists() {
            std::fs::write(&manifest, "{ not a manifest").expect("damage");
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let mut restoring = checkpointing.clone();
    restoring.extend(["--restore".into(), "latest".into()]);
    let refused = run(&restoring);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{damaged} completed but cannot be read")),
        "{stderr}"
    );
    assert!(stderr.contains("unreadable manifest"), "{stderr}");
    assert!(stderr.contains("run without --restore"), "{stderr}");
    assert_eq!(committed_rows(&out), 4600, "nothing written again");
}

/// `--restore latest` of a job that ended: with the same input and job it
/// has nothing to do and says so; with more input, or with another job
/// under the same name, it refuses instead of doing nothing silently.
#[test]
fn restoring_an_end_checkpoint_checks_the_input_and_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let job = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    let args = |job: &Path| -> Vec<std::ffi::OsString> {
        vec![
            job.into(),
            "--checkpoint-dir".into(),
            checkpoints.clone().into(),
            "--restore".into(),
            "latest".into(),
        ]
    };
    let first = run(args(&job));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = run(args(&job));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("copy.sql had already finished: nothing to do (4600 rows in, 4600 rows out"),
        "{stderr}"
    );
    assert!(out.join("_SUCCESS").exists(), "still complete");

    // Another job under the same 'pipeline.name'.
    let other = dir.path().join("other.sql");
    let text = std::fs::read_to_string(&job).expect("job").replace(
        "SELECT auction, price FROM bid",
        "SELECT auction, price * 2 FROM bid",
    );
    std::fs::write(&other, text).expect("other job");
    let refused = run(args(&other));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("was taken by a different job graph"),
        "{stderr}"
    );

    // New input the finished job never read.
    let more = dir.path().join("more");
    nexmark(&more, 2_000, 1);
    std::fs::copy(
        more.join("bid/part-0000.parquet"),
        data.join("bid/part-0100.parquet"),
    )
    .expect("new file");
    let refused = run(args(&job));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("was taken when the job had read all of its input, and this run finds 1 split it did not read"),
        "{stderr}"
    );
    assert_eq!(committed_rows(&out), 4600);
}

/// With every worker thread stuck in an operator, the first signal cannot
/// be acted on, but the second ends the process at once.
#[test]
fn a_second_signal_exits_at_once_however_busy_the_job_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let job = copy_job(
        dir.path(),
        &data.join("bid"),
        &dir.path().join("out"),
        "copy",
    );
    let mut child = spawn_with_failpoints(&job, "operator.busy=spin");
    // The failpoint and the signal handler announce themselves on
    // standard error.
    let (heard, reader) = read_stderr(&mut child, &["spinning", "stopping (signal received"]);
    heard
        .recv_timeout(Duration::from_secs(60))
        .expect("the operator spins");
    signal(&child, "TERM");
    // The first signal is heard, though the job cannot act on it.
    heard
        .recv_timeout(Duration::from_secs(60))
        .expect("the first signal is heard");
    signal(&child, "TERM");
    let output = wait_with_timeout(&mut child);
    let stderr = reader.join().expect("reader");
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopping now (second signal)"), "{stderr}");
}

#[test]
fn zero_parallelism_and_zero_retained_checkpoints_are_refused() {
    for flags in [["--parallelism", "0"], ["--checkpoints-retained", "0"]] {
        let output = run(["job.sql", flags[0], flags[1]]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains(&format!("invalid value '0' for '{}", flags[0])),
            "{stderr}"
        );
    }
}

/// A crash after one of a job's two sinks is marked complete, before the
/// other is: the next run rolls back both, so neither holds its rows twice.
#[test]
fn a_crash_between_two_sinks_commits_rolls_both_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let job = dir.path().join("two.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE bid (auction BIGINT, price BIGINT) \
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
             CREATE TABLE first (auction BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
             CREATE TABLE second (price BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'parquet');\n\
             INSERT INTO first SELECT auction FROM bid;\n\
             INSERT INTO second SELECT price FROM bid;",
            data.join("bid").display(),
            first.display(),
            second.display()
        ),
    )
    .expect("job");
    let crashed = sluice()
        .arg("run")
        .arg(&job)
        .env("SLUICE_FAILPOINTS", "sink.commit.mark=2")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!crashed.status.success(), "the failpoint aborts the run");
    let marked = [&first, &second]
        .iter()
        .filter(|d| d.join("_SUCCESS").exists())
        .count();
    assert_eq!(marked, 1, "one sink marked before the crash");
    let rerun = run([job.as_os_str()]);
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    for out in [&first, &second] {
        assert_eq!(
            committed_rows(out),
            4600,
            "{}: {:?}",
            out.display(),
            names(out)
        );
        assert!(out.join("_SUCCESS").exists());
    }
}

/// A rerun of `INSERT INTO` adds to the output and says so; `INSERT
/// OVERWRITE` replaces it; both name where the output went. In stream
/// mode, or with checkpoints, `INSERT OVERWRITE` is refused.
#[test]
fn reruns_append_or_replace_and_say_where_the_output_went() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let append = copy_job(dir.path(), &data.join("bid"), &out, "append");
    let overwrite = overwrite_job(dir.path(), &append);
    let location = format!("copy → file://{}", out.display());
    for runs in 1..=2 {
        let appended = run([append.as_os_str(), "--parallelism".as_ref(), "2".as_ref()]);
        let stderr = String::from_utf8_lossy(&appended.stderr);
        assert!(appended.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("; output: {location} (2 files added)")),
            "{stderr}"
        );
        assert_eq!(committed_rows(&out), runs * 4600, "{:?}", names(&out));
    }
    let replaced = run([
        overwrite.as_os_str(),
        "--parallelism".as_ref(),
        "1".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&replaced.stderr);
    assert!(replaced.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("; output: {location} (1 file replacing 4)")),
        "{stderr}"
    );
    assert_eq!(committed_rows(&out), 4600, "{:?}", names(&out));
    assert_eq!(visible(&out).len(), 1);

    let refused = run([overwrite.as_os_str(), "--mode".as_ref(), "stream".as_ref()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("INSERT OVERWRITE is for batch mode: a stream job never ends"),
        "{stderr}"
    );
    let refused = run([
        overwrite.as_os_str(),
        "--checkpoint-interval".as_ref(),
        "1s".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("with checkpoints output is committed as the job goes"),
        "{stderr}"
    );
    assert_eq!(committed_rows(&out), 4600, "refused runs change nothing");
}

/// A crash while an overwrite moves the old files aside, its new files in
/// place: the next run into the directory undoes the commit, putting the
/// old files back, before it writes its own.
#[test]
fn a_crash_while_replacing_puts_the_old_files_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let append = copy_job(dir.path(), &data.join("bid"), &out, "append");
    let overwrite = overwrite_job(dir.path(), &append);
    let first = run([append.as_os_str(), "--parallelism".as_ref(), "2".as_ref()]);
    assert!(first.status.success());
    let before = visible(&out);
    assert_eq!(before.len(), 2);
    // Moving the second old file aside aborts the process.
    let crashed = sluice()
        .arg("run")
        .arg(&overwrite)
        .args(["--parallelism", "1"])
        .env("SLUICE_FAILPOINTS", "sink.commit.replace=2")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!crashed.status.success(), "the failpoint aborts the run");
    let during = visible(&out);
    assert_eq!(during.len(), 2, "the new file and one old one: {during:?}");
    assert!(
        names(&out).iter().any(|n| n.starts_with(".commit-")),
        "{:?}",
        names(&out)
    );
    // The next run, appending, first undoes the replacement.
    let rerun = run([append.as_os_str(), "--parallelism".as_ref(), "1".as_ref()]);
    let stderr = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    let after = visible(&out);
    assert!(
        before.iter().all(|old| after.contains(old)),
        "the old files are back: {after:?}"
    );
    assert_eq!(after.len(), 3, "and the rerun's one: {:?}", names(&out));
    assert_eq!(committed_rows(&out), 2 * 4600);
    assert!(
        !names(&out).iter().any(|n| n.starts_with('.')),
        "nothing hidden is left: {:?}",
        names(&out)
    );
}

/// A job whose query calls `NOW()` and `CURRENT_TIMESTAMP` plans the same
/// graph on every run, so its checkpoints restore: the wall clock is read
/// as the job runs, not frozen into the plan (which made every run's plan
/// fingerprint differ, and every restore fail as "a different job graph").
#[test]
fn a_job_that_reads_the_wall_clock_restores_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let copy = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    let job = dir.path().join("clock.sql");
    let text = std::fs::read_to_string(&copy).expect("job").replace(
        "SELECT auction, price FROM bid",
        "SELECT auction, price FROM bid\n  WHERE date_time < NOW() + INTERVAL '2' DAY AND date_time < CURRENT_TIMESTAMP + INTERVAL '2' DAY",
    );
    std::fs::write(&job, text).expect("clock job");
    let args: Vec<std::ffi::OsString> = vec![
        job.clone().into(),
        "--checkpoint-dir".into(),
        checkpoints.clone().into(),
        "--restore".into(),
        "latest".into(),
    ];
    let first = run(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(committed_rows(&out), 4600, "every bid is before now + 2 d");
    let again = run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("clock.sql had already finished: nothing to do (4600 rows in, 4600 rows out"),
        "{stderr}"
    );
    assert_eq!(committed_rows(&out), 4600);
}

/// A checkpoint names the version of each file it read (size and
/// modification time on a local disk). The same bytes copied back in
/// place under a new inode restore as before; a file rewritten under the
/// same name since fails the restore, naming the file and both versions,
/// where it used to restore as if nothing had changed.
#[test]
fn a_restore_refuses_a_file_rewritten_since_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    nexmark(&data, 5_000, 2);
    let out = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let job = copy_job(dir.path(), &data.join("bid"), &out, "copy");
    let args: Vec<std::ffi::OsString> = vec![
        job.clone().into(),
        "--checkpoint-dir".into(),
        checkpoints.clone().into(),
        "--restore".into(),
        "latest".into(),
    ];
    let first = run(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let file = data.join("bid/part-0000.parquet");
    let moved = dir.path().join("moved.parquet");
    std::fs::rename(&file, &moved).expect("move away");
    let copied = Command::new("cp")
        .arg("-p")
        .arg(&moved)
        .arg(&file)
        .status()
        .expect("cp");
    assert!(copied.success());
    let again = run(&args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(
        stderr.contains("had already finished: nothing to do"),
        "{stderr}"
    );

    let other = dir.path().join("other");
    nexmark(&other, 3_000, 2);
    std::fs::copy(other.join("bid/part-0000.parquet"), &file).expect("rewrite");
    let refused = run(&args);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    let url = format!("file://{}", file.display());
    assert!(
        stderr.contains(&format!(
            "table `bid`: {url} row group 0 has changed since the checkpoint being restored read it (then: size "
        )),
        "{stderr}"
    );
    assert!(stderr.contains(", modified "), "{stderr}");
    assert!(
        stderr.contains("Restore with the input the checkpoint read, or start without --restore"),
        "{stderr}"
    );
    assert_eq!(committed_rows(&out), 4600, "nothing written again");
}
