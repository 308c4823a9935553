//! Which rows a source lets into event time.
//!
//! One row's event time can decide the fate of every row after it: a
//! watermark only rises, so a single row stamped in the year 9999 moves the
//! watermark there and makes every later row late, and how many depends on
//! where that row sits and on the parallelism. A null event time has no
//! place in event time at all (Flink fails the job on one). So before a row
//! reaches the watermark, its time must be known and not beyond the wall
//! clock by more than `'sluice.watermark.max-future'` (a job parameter, one
//! day by default, `'none'` for no bound). A row that fails either goes
//! through the table's bad-record policy: by default the job stops with an
//! error naming the table, the split, the row and its time; a table that
//! skips bad records (`'json.ignore-parse-errors'`) skips it and counts it,
//! and one with a dead-letter output sends it there with the reason.
//!
//! The bound is on the wall clock, not on the data, because the first row
//! of a file is as likely as any to be the bad one. Rows in the past are
//! never refused: at worst they are late, which costs only themselves.

use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;

use super::Millis;
use crate::connector::BadRecordPolicy;
use crate::error::{ExecContext, Result, SluiceError};
use crate::metrics::JobMetrics;

/// The job parameter bounding how far ahead of the wall clock an event
/// time may be.
pub const MAX_FUTURE: &str = "sluice.watermark.max-future";

/// One day: far more than clocks drift or time zones differ, far less than
/// a typo in a year.
pub const DEFAULT_MAX_FUTURE: Millis = 86_400_000;

/// The rows a gate let through, and those a dead-letter output must take.
#[derive(Debug)]
pub struct Admitted {
    pub batch: RecordBatch,
    pub times: TimestampMillisecondArray,
    /// Rows refused, each with its reason, when the policy sets them aside.
    pub refused: Option<(RecordBatch, Vec<String>)>,
}

/// The first row of a batch that a failing gate refused: its index in the
/// batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub row: usize,
    pub reason: String,
}

/// A source's check of its rows' event times.
#[derive(Debug, Clone)]
pub struct EventTimeGate {
    table: String,
    column: String,
    /// How far ahead of the wall clock a time may be; `None`: any.
    max_future: Option<Millis>,
    /// Whether `-D` rows are an upsert source's tombstones, which carry
    /// their key only and so no time: they pass.
    tombstones: bool,
    policy: BadRecordPolicy,
}

impl EventTimeGate {
    /// The gate of table `table`, whose rowtime is `column`, with the job's
    /// parameters and the table's bad-record policy.
    pub fn new(
        table: &str,
        column: &str,
        parameters: &std::collections::BTreeMap<String, String>,
        policy: BadRecordPolicy,
    ) -> Result<Self> {
        let max_future = match parameters.get(MAX_FUTURE).map(|v| v.trim()) {
            None => Some(DEFAULT_MAX_FUTURE),
            Some(none) if none.eq_ignore_ascii_case("none") => None,
            Some(text) => {
                let duration = crate::sql::options::parse_duration(text).ok_or_else(|| {
                    SluiceError::config(format!(
                        "'{MAX_FUTURE}' = '{text}': expected a duration such as '1 d', '6 h' or '30 min', or 'none'"
                    ))
                })?;
                Some(Millis::try_from(duration.as_millis()).unwrap_or(Millis::MAX))
            }
        };
        Ok(Self {
            table: table.to_string(),
            column: column.to_string(),
            max_future,
            tombstones: false,
            policy,
        })
    }

    /// The latest event time admitted at wall-clock time `now`.
    /// A gate for an upsert source, whose `-D` rows (tombstones) pass
    /// without a time.
    pub fn with_tombstones(mut self) -> Self {
        self.tombstones = true;
        self
    }

    pub fn limit(&self, now: Millis) -> Option<Millis> {
        self.max_future.map(|ahead| now.saturating_add(ahead))
    }

    /// Whether a time known before reading (statistics, a first row) is one
    /// the gate would admit; one it would not must not bound a watermark.
    pub fn trusts(&self, time: Millis, now: Millis) -> bool {
        self.limit(now).is_none_or(|limit| time <= limit)
    }

    /// `time`, if `gate` (when there is one) trusts it at `now`.
    pub fn trusted(gate: Option<&Self>, time: Option<Millis>, now: Millis) -> Option<Millis> {
        time.filter(|&t| gate.is_none_or(|g| g.trusts(t, now)))
    }

    /// Where refused rows go, if the table sets them aside.
    pub fn dead_letters(&self) -> Option<&std::sync::Arc<dyn crate::connector::DeadLetters>> {
        match &self.policy {
            BadRecordPolicy::DeadLetter(out) => Some(out),
            _ => None,
        }
    }

    /// Lets through the rows of `batch` whose event time (`times`) is known
    /// and within the bound at `now`; the rest follow the bad-record
    /// policy. `split` names where the batch came from, for messages. When
    /// the policy is to fail, gives the first refused row instead, for the
    /// caller to locate in its split (see [`EventTimeGate::refusal`]).
    pub fn admit(
        &self,
        batch: RecordBatch,
        times: TimestampMillisecondArray,
        split: &str,
        now: Millis,
        metrics: &JobMetrics,
    ) -> Result<std::result::Result<Admitted, Refused>> {
        let limit = self.limit(now);
        let beyond = |t: Millis| limit.is_some_and(|limit| t > limit);
        let latest = arrow::compute::max(&times);
        if times.null_count() == 0 && !latest.is_some_and(beyond) {
            return Ok(Ok(Admitted {
                batch,
                times,
                refused: None,
            }));
        }
        // A tombstone of an upsert source carries its key only: no time.
        let tombstones = crate::changelog::row_kinds(&batch).filter(|_| self.tombstones);
        let tombstone = |i: usize| {
            tombstones.is_some_and(|k| k.value(i) == crate::changelog::RowKind::Delete.byte())
        };
        let admitted: BooleanArray = times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Some(match t {
                    Some(t) => !beyond(t),
                    None => tombstone(i),
                })
            })
            .collect();
        if admitted.true_count() == admitted.len() {
            return Ok(Ok(Admitted {
                batch,
                times,
                refused: None,
            }));
        }
        let refused_rows: Vec<usize> = (0..times.len()).filter(|&i| !admitted.value(i)).collect();
        let context = || format!("setting aside rows of `{}`", self.table);
        let refused = match &self.policy {
            BadRecordPolicy::Fail => {
                let row = refused_rows[0];
                return Ok(Err(Refused {
                    row,
                    reason: self.reason(&times, row),
                }));
            }
            BadRecordPolicy::Skip => {
                JobMetrics::add(&metrics.records_skipped, refused_rows.len() as u64);
                tracing::warn!(
                    table = %self.table,
                    split,
                    "skipped {} rows whose event time `{}` is null or more than {} ahead of the wall clock",
                    refused_rows.len(),
                    self.column,
                    self.describe_bound()
                );
                None
            }
            BadRecordPolicy::DeadLetter(_) => {
                let not = arrow::compute::not(&admitted).exec_context(context)?;
                let rows = filter_record_batch(&batch, &not).exec_context(context)?;
                let reasons = refused_rows
                    .iter()
                    .map(|&row| self.reason(&times, row))
                    .collect();
                Some((rows, reasons))
            }
        };
        let kept = filter_record_batch(&batch, &admitted).exec_context(context)?;
        let kept_times = arrow::compute::filter(&times, &admitted).exec_context(context)?;
        let kept_times = kept_times
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .cloned()
            .ok_or_else(|| SluiceError::Runtime("filtered event times changed type".into()))?;
        Ok(Ok(Admitted {
            batch: kept,
            times: kept_times,
            refused,
        }))
    }

    fn describe_bound(&self) -> String {
        match self.max_future {
            Some(ms) if ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
            Some(ms) if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
            Some(ms) => format!("{ms} ms"),
            None => "any time".to_string(),
        }
    }

    /// The error that stops the job for a refused row, at `location` (as
    /// its split names it: `row 12 of file:///d/a.parquet`, `topic 'bid'
    /// partition 3 offset 42`).
    pub fn refusal(&self, refused: &Refused, location: &str) -> SluiceError {
        let (table, what) = (&self.table, &refused.reason);
        SluiceError::Data(format!(
            "table `{table}`: {location} {what}. Mend the data, set '{MAX_FUTURE}' (a duration, or 'none'), or let the table skip bad records (e.g. 'json.ignore-parse-errors' = 'true' for JSON from Kafka)"
        ))
    }

    /// Why row `row` is refused, as a phrase after where it is.
    fn reason(&self, times: &TimestampMillisecondArray, row: usize) -> String {
        let column = &self.column;
        if times.is_null(row) {
            return format!(
                "has no event time (`{column}` is null); Flink stops on a null rowtime too"
            );
        }
        let time = times.value(row);
        let shown = chrono::DateTime::from_timestamp_millis(time).map_or_else(
            || format!("{time} ms"),
            |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        );
        format!(
            "has `{column}` = {shown}, more than {} ahead of the wall clock ('{MAX_FUTURE}'): a watermark moved there would make every later row late",
            self.describe_bound()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    const NOW: Millis = 1_800_000_000_000;

    fn batch(times: &[Option<Millis>]) -> (RecordBatch, TimestampMillisecondArray) {
        let times = TimestampMillisecondArray::from(times.to_vec());
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let ids = Int64Array::from_iter_values(0..times.len() as i64);
        let batch = RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(times.clone())])
            .expect("batch");
        (batch, times)
    }

    fn gate(max_future: Option<&str>, policy: BadRecordPolicy) -> EventTimeGate {
        let mut parameters = BTreeMap::new();
        if let Some(m) = max_future {
            parameters.insert(MAX_FUTURE.to_string(), m.to_string());
        }
        EventTimeGate::new("bid", "ts", &parameters, policy).expect("gate")
    }

    #[test]
    fn good_rows_pass_untouched() {
        let (b, t) = batch(&[Some(NOW - 5), Some(NOW + 1000), Some(0)]);
        let metrics = JobMetrics::default();
        let admitted = gate(None, BadRecordPolicy::Fail)
            .admit(b.clone(), t.clone(), "f", NOW, &metrics)
            .expect("checked")
            .expect("admitted");
        assert_eq!((admitted.batch, admitted.times), (b, t));
        assert!(admitted.refused.is_none());
    }

    /// A refused row is given back by its index in the batch, for the
    /// source to say where it is; the message leads with that place.
    #[test]
    fn a_time_far_ahead_fails_the_job_naming_the_row() {
        let (b, t) = batch(&[Some(NOW), Some(253_402_300_799_000), Some(NOW)]);
        let g = gate(None, BadRecordPolicy::Fail);
        let refused = g
            .admit(b, t, "f", NOW, &JobMetrics::default())
            .expect("checked")
            .expect_err("refused");
        assert_eq!(refused.row, 1);
        let err = g
            .refusal(&refused, "row 12 of file:///d/a.parquet")
            .to_string();
        assert!(
            err.starts_with("table `bid`: row 12 of file:///d/a.parquet has `ts` = 9999-12-31 23:59:59.000, more than 1 d ahead"),
            "{err}"
        );
    }

    #[test]
    fn a_null_time_fails_the_job() {
        let (b, t) = batch(&[Some(NOW), None]);
        let refused = gate(None, BadRecordPolicy::Fail)
            .admit(b, t, "s", NOW, &JobMetrics::default())
            .expect("checked")
            .expect_err("refused");
        assert_eq!(refused.row, 1);
        assert!(
            refused
                .reason
                .starts_with("has no event time (`ts` is null)"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_table_that_skips_bad_records_skips_and_counts_them() {
        let (b, t) = batch(&[
            None,
            Some(NOW),
            Some(NOW + 3_600_001),
            Some(NOW + 3_600_000),
        ]);
        let metrics = JobMetrics::default();
        let admitted = gate(Some("1 h"), BadRecordPolicy::Skip)
            .admit(b, t, "s", NOW, &metrics)
            .expect("checked")
            .expect("skipped");
        assert!(admitted.refused.is_none());
        let times = admitted.times;
        let ids = admitted
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids");
        assert_eq!(ids.values(), &[1, 3]);
        assert_eq!(times.values(), &[NOW, NOW + 3_600_000]);
        assert_eq!(JobMetrics::get(&metrics.records_skipped), 2);
    }

    #[derive(Debug)]
    struct Nowhere;

    impl crate::connector::DeadLetters for Nowhere {
        fn send<'a>(
            &'a self,
            _split: &'a str,
            _rows: RecordBatch,
            _reasons: Vec<String>,
        ) -> futures::future::BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn a_table_with_dead_letters_hands_the_bad_rows_over_with_reasons() {
        let (b, t) = batch(&[Some(NOW), None, Some(NOW + 2 * DEFAULT_MAX_FUTURE)]);
        let admitted = gate(None, BadRecordPolicy::DeadLetter(Arc::new(Nowhere)))
            .admit(b, t, "s", NOW, &JobMetrics::default())
            .expect("checked")
            .expect("set aside");
        assert_eq!(admitted.batch.num_rows(), 1);
        let (rows, reasons) = admitted.refused.expect("refused rows");
        let ids = rows
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ids");
        assert_eq!(ids.values(), &[1, 2]);
        assert!(reasons[0].contains("is null"), "{reasons:?}");
        assert!(reasons[1].contains("more than 1 d ahead"), "{reasons:?}");
    }

    #[test]
    fn no_bound_admits_any_known_time() {
        let g = gate(Some("none"), BadRecordPolicy::Fail);
        assert!(g.trusts(Millis::MAX - 1, NOW));
        let (b, t) = batch(&[Some(253_402_300_799_000)]);
        assert!(matches!(
            g.admit(b, t, "s", NOW, &JobMetrics::default()),
            Ok(Ok(_))
        ));
        let (b, t) = batch(&[None]);
        assert!(
            matches!(g.admit(b, t, "s", NOW, &JobMetrics::default()), Ok(Err(_))),
            "null is never a time"
        );
        assert!(
            EventTimeGate::new(
                "bid",
                "ts",
                &BTreeMap::from([(MAX_FUTURE.to_string(), "soon".to_string())]),
                BadRecordPolicy::Fail
            )
            .is_err()
        );
    }
}
