//! Job metrics, named as Prometheus names them (`sluice_…`).
//!
//! Counters are plain atomics shared by every subtask; [`JobMetrics::render`]
//! writes them in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct JobMetrics {
    /// Rows read by all sources.
    pub rows_in: AtomicU64,
    /// Rows written to all sinks.
    pub rows_out: AtomicU64,
    /// Rows that arrived behind the watermark, counted at window operators.
    pub late_rows: AtomicU64,
    /// Rows the sources expect to read in all (0 when unknown).
    pub rows_expected: AtomicU64,
    /// Splits finished by all sources.
    pub splits_done: AtomicU64,
    /// Input records that could not be decoded and were skipped, as the
    /// table's options allow (`'json.ignore-parse-errors'`).
    pub records_skipped: AtomicU64,
    /// Input records that could not be decoded and went to a dead-letter output.
    pub records_dead_lettered: AtomicU64,
    /// Checkpoints completed.
    pub checkpoints: AtomicU64,
    /// Restarts from the last checkpoint after a transient failure.
    pub restarts: AtomicU64,
}

impl JobMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Forgets the rows a run expected, before a restarted run plans its
    /// splits again.
    pub fn reset_progress(&self) {
        self.rows_expected.store(0, Ordering::Relaxed);
    }

    /// Sets the row counters to what a run starts from: zero, or the counts
    /// of the checkpoint it restores, so that rows a failed attempt read
    /// after its last checkpoint, and reads again, count once.
    pub fn start_counting_from(&self, counts: crate::checkpoint::protocol::RowCounts) {
        self.rows_in.store(counts.rows_in, Ordering::Relaxed);
        self.rows_out.store(counts.rows_out, Ordering::Relaxed);
        self.late_rows.store(counts.late_rows, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn render(&self, job: &str) -> String {
        let mut out = String::new();
        for (name, help, counter) in [
            (
                "sluice_source_rows_total",
                "Rows read by sources.",
                &self.rows_in,
            ),
            (
                "sluice_sink_rows_total",
                "Rows written by sinks.",
                &self.rows_out,
            ),
            (
                "sluice_late_rows_total",
                "Rows behind the watermark, sent to the late-data output.",
                &self.late_rows,
            ),
            (
                "sluice_source_records_skipped_total",
                "Input records that could not be decoded and were skipped.",
                &self.records_skipped,
            ),
            (
                "sluice_source_records_dead_lettered_total",
                "Input records that could not be decoded and went to the dead-letter output.",
                &self.records_dead_lettered,
            ),
            (
                "sluice_source_splits_done_total",
                "Source splits finished.",
                &self.splits_done,
            ),
            (
                "sluice_checkpoints_completed_total",
                "Checkpoints completed.",
                &self.checkpoints,
            ),
            (
                "sluice_job_restarts_total",
                "Restarts from the last checkpoint after a transient failure.",
                &self.restarts,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name}{{job=\"{job}\"}} {}", Self::get(counter));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = JobMetrics::default();
        JobMetrics::add(&metrics.rows_in, 7);
        JobMetrics::add(&metrics.late_rows, 2);
        let text = metrics.render("q1");
        assert!(text.contains(
            "# TYPE sluice_source_rows_total counter\nsluice_source_rows_total{job=\"q1\"} 7\n"
        ));
        assert!(text.contains("sluice_late_rows_total{job=\"q1\"} 2\n"));
        assert!(text.contains("sluice_sink_rows_total{job=\"q1\"} 0\n"));
    }
}
