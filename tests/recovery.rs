//! Crashes and restores: a job that dies at any checkpoint and resumes from
//! it commits exactly the rows an uninterrupted run commits, also when it
//! resumes at another parallelism.

use std::path::Path;
use std::time::Duration;

use sluice_tests::{read_parquet_dir, sorted_rows, staged_files};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
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
    let data = tempfile::tempdir().expect("tempdir");
    sluice::generate::nexmark::generate(
        data.path(),
        400_000,
        4,
        sluice::generate::FileFormat::Parquet,
    )
    .expect("generate");
    let queries = std::env::var("SLUICE_RECOVERY_QUERIES")
        .unwrap_or_else(|_| "tumble,hop,q11,q1".to_string());
    for query in queries.split(',') {
        let job = |out: &Path, parallelism: usize| {
            sluice::JobSpec::from_file(&repo().join(format!("jobs/sql/nexmark/{query}.sql")))
                .expect("job file")
                .with_var("DATA", &data.path().display().to_string())
                .with_var("OUT", &out.display().to_string())
                .with_parallelism(parallelism)
        };
        let reference = tempfile::tempdir().expect("tempdir");
        main_runtime
            .block_on(sluice::run(&job(reference.path(), 2)))
            .expect("uninterrupted run");
        let expected = committed_rows(&reference.path().join(query));
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
        let actual = committed_rows(&dir);
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
}
