//! The `sluice` command line's library: loading and running job files, the
//! data generators, and the Rust UDFs jobs can call.
//!
//! ```no_run
//! # async fn demo() -> sluice_engine::Result<()> {
//! let job = sluice::JobSpec::from_file("jobs/sql/nexmark/q1.sql".as_ref())?
//!     .with_var("DATA", "/tmp/nexmark");
//! let result = sluice::run(&job).await?;
//! println!("{} rows written", result.rows_out);
//! # Ok(()) }
//! ```

pub mod generate;
pub mod udf;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sluice_connectors::checkpoints::ObjectCheckpoints;
use sluice_engine::checkpoint::{CheckpointStore, Restored};
use sluice_engine::connector::ConnectorRegistry;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::plan::JobGraph;
use sluice_engine::sql::{CompiledJob, JobFile, JobStatement, Mode, compile, parse_job};
use sluice_engine::{JobResult, Result, RunOptions, SluiceError, StopSignal};
use udf::{FunctionContext, FunctionLibrary};

/// A job file and how to run it.
#[derive(Clone)]
pub struct JobSpec {
    /// How the file is named in messages.
    pub name: String,
    pub text: String,
    /// Files read before the job's own, in order, as Flink's SQL client
    /// runs its initialization files (`-i`): shared tables, views and
    /// settings. Each is `(name in messages, text)`.
    pub init_files: Vec<(String, String)>,
    pub mode: Mode,
    /// `--set` values; `${NAME}` falls back to the environment.
    pub vars: BTreeMap<String, String>,
    pub parallelism: usize,
    /// Function libraries opened for the job, [`udf::Builtins`] first.
    pub libraries: Vec<Arc<dyn FunctionLibrary>>,
    /// Take checkpoints this often (none when `None`).
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Where checkpoints go (a directory or object store URL), and how
    /// many completed ones to keep.
    pub checkpoint_dir: Option<String>,
    /// A checkpoint store of the embedding program's own, used instead of
    /// one on `checkpoint_dir`.
    pub checkpoint_store: Option<Arc<dyn CheckpointStore>>,
    pub checkpoints_retained: usize,
    /// What checkpoint to resume from.
    pub restore: Option<Restore>,
    /// Restarts from the last checkpoint after a transient failure, and
    /// the pause before the first (doubling each time, up to a minute).
    pub restart_attempts: u32,
    pub restart_delay: std::time::Duration,
    /// Rows per batch the sources aim for; `None`: the engine's default.
    /// One row per batch makes an updating result's changelog Flink's
    /// per-record one (an operator answers each batch once).
    pub batch_size: Option<usize>,
}

/// Which checkpoint a job resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The newest complete one of this job in its checkpoint directory;
    /// a fresh start (said so) when there is none.
    Latest,
    /// One checkpoint's directory: `<dir>/<job>/chk-<n>`.
    Path(String),
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("vars", &self.vars)
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl JobSpec {
    pub fn from_text(name: &str, text: &str) -> Self {
        Self {
            name: name.to_string(),
            text: text.to_string(),
            init_files: Vec::new(),
            mode: Mode::Batch,
            vars: BTreeMap::new(),
            parallelism: default_parallelism(),
            libraries: vec![Arc::new(udf::Builtins)],
            checkpoint_interval: None,
            checkpoint_dir: None,
            checkpoint_store: None,
            checkpoints_retained: 1,
            restore: None,
            restart_attempts: 0,
            restart_delay: std::time::Duration::from_secs(1),
            batch_size: None,
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SluiceError::io(format!("reading job file {}", path.display()), e))?;
        Ok(Self::from_text(&path.display().to_string(), &text))
    }

    /// Reads `path` before the job's own file (see [`JobSpec::init_files`]).
    pub fn with_init_file(mut self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SluiceError::io(format!("reading job file {}", path.display()), e))?;
        self.init_files.push((path.display().to_string(), text));
        Ok(self)
    }

    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }

    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Takes a checkpoint every `interval`.
    pub fn with_checkpoint_interval(mut self, interval: std::time::Duration) -> Self {
        self.checkpoint_interval = Some(interval);
        self
    }

    /// Writes completed checkpoints under `dir` (`<dir>/<job>/chk-<n>/`),
    /// keeping the newest `retained`.
    pub fn with_checkpoint_dir(mut self, dir: &str, retained: usize) -> Self {
        self.checkpoint_dir = Some(dir.to_string());
        self.checkpoints_retained = retained.max(1);
        self
    }

    /// Keeps checkpoints in `store` (the job's own: `<dir>/<job>`),
    /// keeping the newest `retained`.
    pub fn with_checkpoint_store(
        mut self,
        store: Arc<dyn CheckpointStore>,
        retained: usize,
    ) -> Self {
        self.checkpoint_store = Some(store);
        self.checkpoints_retained = retained.max(1);
        self
    }

    /// Resumes from a checkpoint.
    pub fn with_restore(mut self, restore: Restore) -> Self {
        self.restore = Some(restore);
        self
    }

    /// Restarts from the last checkpoint up to `attempts` times after a
    /// transient failure (storage or network), waiting `delay` first.
    pub fn with_restarts(mut self, attempts: u32, delay: std::time::Duration) -> Self {
        self.restart_attempts = attempts;
        self.restart_delay = delay;
        self
    }

    /// Sources aim for `rows` rows per batch.
    pub fn with_batch_size(mut self, rows: usize) -> Self {
        self.batch_size = Some(rows.max(1));
        self
    }

    /// Adds a library of functions the job can call.
    pub fn with_library(mut self, library: Arc<dyn FunctionLibrary>) -> Self {
        self.libraries.push(library);
        self
    }

    fn parse(&self) -> Result<JobFile> {
        let vars = self.vars.clone();
        let lookup = move |name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok());
        let mut files = self
            .init_files
            .iter()
            .chain(std::iter::once(&(self.name.clone(), self.text.clone())))
            .map(|(name, text)| parse_job(name, text, &lookup))
            .collect::<Result<Vec<JobFile>>>()?
            .into_iter();
        let mut job = files
            .next()
            .ok_or_else(|| SluiceError::config("no job file"))?;
        for next in files {
            job.append(next);
        }
        Ok(job)
    }

    /// Job parameters for operators and functions: the job's `SET`
    /// statements, overridden by `--set` values.
    fn parameters(&self, job: &JobFile) -> BTreeMap<String, String> {
        let mut parameters: BTreeMap<String, String> = job
            .statements
            .iter()
            .filter_map(|s| match s {
                JobStatement::Set(set) => Some(set.item.clone()),
                _ => None,
            })
            .collect();
        parameters.extend(self.vars.clone());
        parameters
    }

    /// Parses the job, opens its function libraries and plans it; the
    /// libraries stay open until the returned guard is dropped.
    fn open(&self) -> Result<(CompiledJob, BTreeMap<String, String>, OpenLibraries)> {
        let job = self.parse()?;
        let parameters = self.parameters(&job);
        let context = FunctionContext {
            parameters: Arc::new(parameters.clone()),
        };
        let mut opened = OpenLibraries(Vec::new());
        let mut functions = Vec::new();
        for library in &self.libraries {
            functions.extend(library.open(&context)?);
            opened.0.push(Arc::clone(library));
        }
        let mut compiled = compile(&job, self.mode, &functions)?;
        // The run keeps late rows when the parameters say where; the plan
        // must know it too (its sources then carry whole rows).
        let late = sluice_connectors::filesystem::LATE_DATA_PATH;
        if let Some(path) = parameters.get(late) {
            compiled
                .settings
                .entry(late.to_string())
                .or_insert_with(|| path.clone());
        }
        Ok((compiled, parameters, opened))
    }

    /// Parses and plans the job for its mode.
    pub fn compile(&self) -> Result<CompiledJob> {
        self.open().map(|(compiled, _, _)| compiled)
    }

    /// The operator graph the job runs as.
    pub fn graph(&self) -> Result<JobGraph> {
        let job = self.compile()?;
        sluice_engine::plan::translate(&job, &connectors(), self.parallelism)
    }
}

/// Closes the libraries a job opened when the job is over, however it ends.
struct OpenLibraries(Vec<Arc<dyn FunctionLibrary>>);

impl Drop for OpenLibraries {
    fn drop(&mut self) {
        for library in self.0.iter().rev() {
            library.close();
        }
    }
}

/// Every connector Sluice ships.
pub fn connectors() -> ConnectorRegistry {
    sluice_connectors::registry()
}

/// Caps glibc's malloc at one arena per worker thread, unless the
/// environment sets the number itself. Call it first thing in `main`,
/// before any thread starts.
///
/// glibc gives threads up to eight arenas per core and keeps memory freed
/// into an arena for that arena. Files are read on tokio's blocking
/// threads, which come and go, so read buffers ended up spread over many
/// arenas: a stream job over 10M JSON rows peaked at 186–188 MiB of RSS
/// with 35 MB of live heap, and at 97–105 MiB with one arena per worker, in
/// times within each other's noise (`benches/RESULTS.md`). jemalloc and
/// mimalloc, tried as the global allocator, kept 177–200 MiB.
pub fn limit_malloc_arenas(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set_by_environment = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !set_by_environment {
            let arenas = libc::c_int::try_from(threads.max(1)).unwrap_or(libc::c_int::MAX);
            // SAFETY: mallopt sets one of the allocator's tuning parameters;
            // it takes no pointers and may be called at any time.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, arenas);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}

pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs a job until its sources end.
pub async fn run(job: &JobSpec) -> Result<JobResult> {
    run_with(job, Arc::new(JobMetrics::default()), StopSignal::default()).await
}

/// Runs a job, counting into `metrics` (for progress reporting), until its
/// sources end or `stop` is signalled. A transient failure restarts it
/// from its last checkpoint, as often as the job allows.
pub async fn run_with(
    job: &JobSpec,
    metrics: Arc<JobMetrics>,
    stop: StopSignal,
) -> Result<JobResult> {
    let (compiled, parameters, _libraries) = job.open()?;
    let store: Option<Arc<dyn CheckpointStore>> = match (&job.checkpoint_store, &job.checkpoint_dir)
    {
        (Some(store), _) => Some(Arc::clone(store)),
        (None, Some(dir)) => Some(Arc::new(ObjectCheckpoints::new(dir, &compiled.name)?)),
        (None, None) => None,
    };
    let mut restore = job.restore.clone();
    let mut delay = job.restart_delay;
    // A retry resumes from the newest checkpoint if the failed attempt
    // completed one (which must then be found), else from where that
    // attempt started.
    let mut must_find = false;
    for attempt in 0.. {
        let checkpoints_before = JobMetrics::get(&metrics.checkpoints);
        type Attempt = std::result::Result<JobResult, SluiceError>;
        let result: Result<Attempt> = async {
            // Sinks and sources are made afresh for every attempt: nothing
            // a failed attempt staged is committed by the next.
            let graph =
                sluice_engine::plan::translate(&compiled, &connectors(), job.parallelism)?;
            let late_data = match parameters.get(sluice_connectors::filesystem::LATE_DATA_PATH) {
                Some(path) => Some(sluice_connectors::filesystem::late_data_sink(path)?),
                None => None,
            };
            let restored = match &restore {
                None => None,
                Some(which) => {
                    let found = restore_point(which, store.as_deref(), &compiled.name).await?;
                    if found.is_none() && must_find {
                        return Err(SluiceError::io(
                            format!("restarting job {}", compiled.name),
                            std::io::Error::other(
                                "its checkpoints are not there, though one was completed: is the checkpoint store unavailable?",
                            ),
                        ));
                    }
                    found
                }
            };
            let options = RunOptions {
                parameters: parameters.clone(),
                late_data,
                stop: stop.clone(),
                checkpoint_interval: job.checkpoint_interval,
                checkpoint_store: store.clone(),
                checkpoints_retained: job.checkpoints_retained,
                restore: restored.map(Arc::new),
                ..RunOptions::default()
            };
            let options = RunOptions {
                batch_size: job.batch_size.unwrap_or(options.batch_size),
                ..options
            };
            Ok(sluice_engine::exec::run(&graph, &options, Arc::clone(&metrics)).await)
        }
        .await;
        let e = match result {
            Ok(Ok(result)) => return Ok(result),
            Ok(Err(e)) | Err(e) => e,
        };
        // Without a store, checkpoints committed output that a restart
        // could not resume after: it would write it again.
        let committed_unrecoverably =
            store.is_none() && JobMetrics::get(&metrics.checkpoints) > checkpoints_before;
        let retry = e.is_retryable()
            && attempt < job.restart_attempts
            && !stop.is_stopped()
            && !committed_unrecoverably;
        if !retry {
            return Err(e);
        }
        tracing::warn!(
            "job {} failed ({e}); restarting from its last checkpoint in {delay:?} (restart {} of {})",
            compiled.name,
            attempt + 1,
            job.restart_attempts
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.stopped() => return Err(e),
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(60));
        if store.is_some() && JobMetrics::get(&metrics.checkpoints) > checkpoints_before {
            restore = Some(Restore::Latest);
            must_find = true;
        }
        metrics.reset_progress();
        JobMetrics::add(&metrics.restarts, 1);
    }
    unreachable!("the restart loop returns")
}

/// Reads the checkpoint to resume from.
async fn restore_point(
    which: &Restore,
    store: Option<&dyn CheckpointStore>,
    job: &str,
) -> Result<Option<Restored>> {
    match which {
        Restore::Latest => {
            let Some(store) = store else {
                return Err(SluiceError::config(
                    "restoring the latest checkpoint needs a checkpoint directory",
                ));
            };
            let restored = sluice_engine::checkpoint::load(store, None).await?;
            match &restored {
                Some(r) => tracing::info!(
                    "job {job}: resuming from checkpoint {} in {}",
                    r.manifest.id,
                    store.describe()
                ),
                None => tracing::warn!(
                    "job {job}: no complete checkpoint in {}; starting from the beginning",
                    store.describe()
                ),
            }
            Ok(restored)
        }
        Restore::Path(path) => {
            let trimmed = path.trim_end_matches('/');
            let parse = || {
                let (job_dir, chk) = trimmed.rsplit_once('/')?;
                let id = chk.strip_prefix("chk-")?.parse().ok()?;
                let (dir, job) = job_dir.rsplit_once('/').unwrap_or((".", job_dir));
                Some((dir, job, id))
            };
            let (dir, owner, id) = parse().ok_or_else(|| {
                SluiceError::config(format!(
                    "--restore {path}: expected a checkpoint directory, <dir>/<job>/chk-<n>"
                ))
            })?;
            let store = ObjectCheckpoints::new(if dir.is_empty() { "/" } else { dir }, owner)?;
            sluice_engine::checkpoint::load(&store, Some(id)).await
        }
    }
}
