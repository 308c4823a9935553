//! The runtime: every stage's subtasks as tokio tasks, joined by channels.
//!
//! [`run`] plans the sources' splits, assigns them to source subtasks in
//! event-time order, creates a byte-bounded channel for every pair of
//! subtasks an exchange connects, spawns one task per subtask and waits for
//! all of them. The first error stops the job; sinks commit only when every
//! subtask has finished.

pub mod channel;
pub mod exchange;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::connector::{ScanRequest, Split};
use crate::error::{Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::OperatorContext;
use crate::plan::{JobGraph, NodeKind};
use channel::{Receiver, Sender};

/// How a job runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Job parameters (the job's `SET` statements and `--set` values),
    /// reachable from operators and UDFs through their context.
    pub parameters: BTreeMap<String, String>,
    /// Bytes in flight per channel before a sender waits.
    pub channel_capacity: usize,
    /// Rows per batch sources aim for.
    pub batch_size: usize,
    /// Where rows that arrived behind the watermark are written, if anywhere
    /// (`SET 'sluice.late-data.path'`); they are counted either way.
    pub late_data: Option<Arc<dyn crate::connector::Sink>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parameters: BTreeMap::new(),
            channel_capacity: 16 << 20,
            batch_size: 8192,
            late_data: None,
        }
    }
}

/// What a finished job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    pub rows_in: u64,
    pub rows_out: u64,
    pub late_rows: u64,
    pub elapsed: Duration,
}

/// Runs `graph` to completion (for bounded sources) and commits its sinks.
pub async fn run(
    graph: &JobGraph,
    options: &RunOptions,
    metrics: Arc<JobMetrics>,
) -> Result<JobResult> {
    let started = Instant::now();
    let stages = graph.stages();
    let parameters = Arc::new(options.parameters.clone());

    // Channels for every edge that is an exchange, receivers by (stage, subtask).
    let mut senders: BTreeMap<(usize, usize), Vec<Sender>> = BTreeMap::new();
    let mut receivers: BTreeMap<(usize, usize), Vec<Receiver>> = BTreeMap::new();
    for (e, edge) in graph.edges.iter().enumerate() {
        if graph.is_chained(edge) {
            continue;
        }
        let from = graph.node(edge.from).parallelism;
        let to = graph.node(edge.to).parallelism;
        let pointwise = matches!(edge.partitioning, crate::plan::Partitioning::Forward);
        for i in 0..from {
            let targets: Vec<usize> = if pointwise {
                vec![i % to]
            } else {
                (0..to).collect()
            };
            let mut out = Vec::with_capacity(targets.len());
            for j in targets {
                let (tx, rx) = channel::channel(options.channel_capacity);
                out.push(tx);
                receivers.entry((edge.to, j)).or_default().push(rx);
            }
            senders.insert((e, i), out);
        }
    }

    let mut tasks = JoinSet::new();
    for stage in &stages {
        let root = graph.node(stage.root);
        let mut assigned: Vec<Vec<Arc<dyn Split>>> = vec![Vec::new(); stage.parallelism];
        let mut watermark = None;
        if let NodeKind::Source(source) = &root.kind {
            let request = ScanRequest {
                projection: source.projection.clone(),
                schema: Arc::clone(&root.schema),
                time_column: source.table.watermark.as_ref().map(|w| w.column.clone()),
                batch_size: options.batch_size,
            };
            let mut splits = source.source.plan_splits(request).await?;
            // Earliest first, so subtasks move through event time together.
            splits.sort_by_cached_key(|s| (s.min_event_time().unwrap_or(i64::MIN), s.describe()));
            let expected: u64 = splits.iter().filter_map(|s| s.estimated_rows()).sum();
            JobMetrics::add(&metrics.rows_expected, expected);
            for (i, split) in splits.into_iter().enumerate() {
                assigned[i % stage.parallelism].push(split);
            }
            watermark = match (&source.watermark, &source.table.watermark) {
                (Some(expr), Some(decl)) => root
                    .schema
                    .index_of(&decl.column)
                    .ok()
                    .map(|i| (Arc::clone(expr), i)),
                _ => None,
            };
        }
        for (subtask, splits) in assigned.into_iter().enumerate() {
            let context = OperatorContext {
                subtask,
                parallelism: stage.parallelism,
                parameters: Arc::clone(&parameters),
                metrics: Arc::clone(&metrics),
            };
            let mut chain = task::Chain::build(
                graph,
                stage,
                &context,
                &mut senders,
                options.late_data.as_deref(),
            )
            .await?;
            let input = match &root.kind {
                NodeKind::Source(_) => task::Input::Source {
                    splits,
                    watermark: watermark.clone(),
                },
                _ => task::Input::Channels(
                    receivers.remove(&(stage.root, subtask)).unwrap_or_default(),
                ),
            };
            let metrics = Arc::clone(&metrics);
            tasks.spawn(async move {
                chain.open()?;
                task::run(&mut chain, input, &metrics).await
            });
        }
    }

    let mut failure: Option<SluiceError> = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|e| {
            Err(SluiceError::Runtime(if e.is_panic() {
                format!("a subtask panicked: {e}")
            } else {
                format!("a subtask was cancelled: {e}")
            }))
        });
        if let Err(e) = result {
            // Keep the cause, not the "downstream stopped" echoes it caused.
            if failure
                .as_ref()
                .is_none_or(|f| is_secondary(f) && !is_secondary(&e))
            {
                failure = Some(e);
            }
            tasks.abort_all();
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    for node in &graph.nodes {
        if let NodeKind::Sink(sink) = &node.kind {
            sink.sink.commit().await?;
        }
    }
    let late = JobMetrics::get(&metrics.late_rows);
    match &options.late_data {
        Some(sink) => sink.commit().await?,
        None if late > 0 => tracing::warn!(
            late,
            "rows arrived behind the watermark after their windows fired; set 'sluice.late-data.path' to keep them"
        ),
        None => {}
    }
    Ok(JobResult {
        rows_in: JobMetrics::get(&metrics.rows_in),
        rows_out: JobMetrics::get(&metrics.rows_out),
        late_rows: JobMetrics::get(&metrics.late_rows),
        elapsed: started.elapsed(),
    })
}

fn is_secondary(e: &SluiceError) -> bool {
    matches!(e, SluiceError::Runtime(m) if m.contains(task::STOPPED))
}
