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

use sluice_engine::connector::ConnectorRegistry;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::plan::JobGraph;
use sluice_engine::sql::{CompiledJob, Mode, compile, parse_job};
use sluice_engine::{JobResult, Result, RunOptions, SluiceError};

/// A job file and how to run it.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// How the file is named in messages.
    pub name: String,
    pub text: String,
    pub mode: Mode,
    /// `--set` values; `${NAME}` falls back to the environment.
    pub vars: BTreeMap<String, String>,
    pub parallelism: usize,
}

impl JobSpec {
    pub fn from_text(name: &str, text: &str) -> Self {
        Self {
            name: name.to_string(),
            text: text.to_string(),
            mode: Mode::Batch,
            vars: BTreeMap::new(),
            parallelism: default_parallelism(),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SluiceError::io(format!("reading job file {}", path.display()), e))?;
        Ok(Self::from_text(&path.display().to_string(), &text))
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

    /// Parses and plans the job for its mode.
    pub fn compile(&self) -> Result<CompiledJob> {
        let vars = self.vars.clone();
        let lookup = move |name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok());
        let job = parse_job(&self.name, &self.text, &lookup)?;
        compile(&job, self.mode, &udf::functions())
    }

    /// The operator graph the job runs as.
    pub fn graph(&self) -> Result<JobGraph> {
        let job = self.compile()?;
        sluice_engine::plan::translate(&job, &connectors(), self.parallelism)
    }

    /// Job parameters for operators and UDFs: the job's `SET` statements,
    /// overridden by `--set` values.
    pub fn parameters(&self, job: &CompiledJob) -> BTreeMap<String, String> {
        let mut parameters = job.settings.clone();
        parameters.extend(self.vars.clone());
        parameters
    }
}

/// Every connector Sluice ships.
pub fn connectors() -> ConnectorRegistry {
    sluice_connectors::registry()
}

pub fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs a job to completion.
pub async fn run(job: &JobSpec) -> Result<JobResult> {
    run_with_metrics(job, Arc::new(JobMetrics::default())).await
}

/// Runs a job, counting into `metrics` (for progress reporting).
pub async fn run_with_metrics(job: &JobSpec, metrics: Arc<JobMetrics>) -> Result<JobResult> {
    let compiled = job.compile()?;
    let graph = sluice_engine::plan::translate(&compiled, &connectors(), job.parallelism)?;
    let parameters = job.parameters(&compiled);
    let late_data = match parameters.get(sluice_connectors::filesystem::LATE_DATA_PATH) {
        Some(path) => Some(sluice_connectors::filesystem::late_data_sink(path)?),
        None => None,
    };
    let options = RunOptions {
        parameters,
        late_data,
        ..RunOptions::default()
    };
    sluice_engine::exec::run(&graph, &options, metrics).await
}
