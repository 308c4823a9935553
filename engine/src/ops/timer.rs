//! Timers: the moments an operator asks to be woken at.
//!
//! An operator sets a timer through its [`super::Output`], for a key and a
//! time in one of two domains: **event time**, fired when the operator's
//! watermark reaches it (a window's end, an interval join's horizon), and
//! **processing time**, fired when the wall clock does (state TTL, a cache
//! entry's expiry). The runtime keeps them ([`TimerService`]), one per
//! operator instance, fires them in time order through
//! [`super::Operator::on_timer`] (event timers before the watermark that
//! reached them is passed on), and takes them into checkpoints as a table
//! of their own, split by key group on restore like keyed state. A timer
//! is set once per domain, key and time: setting it again changes nothing.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int8Array, Int64Array, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema, UInt32Type};

use crate::error::{Result, SluiceError};
use crate::time::Millis;

/// Which clock a timer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Fired when the operator's watermark reaches the time.
    EventTime,
    /// Fired when the wall clock (milliseconds since the epoch) does.
    ProcessingTime,
}

/// One timer: a time in a domain, for a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    pub domain: TimeDomain,
    pub time: Millis,
    /// The operator's own encoding of the key (e.g. Arrow's row format).
    pub key: Arc<[u8]>,
    /// The key group of the key, as the hash exchange routes it: which
    /// subtask gets the timer when a checkpoint is restored at another
    /// parallelism.
    pub key_group: usize,
}

/// A change an operator asks of its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerChange {
    Set(Timer),
    Cancel(Timer),
}

/// A timer as kept: its time first, so a set is in time order; then its
/// key and key group.
type Entry = (Millis, Arc<[u8]>, usize);

/// The timers of one operator instance, in time order per domain.
#[derive(Debug, Default)]
pub struct TimerService {
    event: BTreeSet<Entry>,
    processing: BTreeSet<Entry>,
}

/// The name of the state table timers are checkpointed in.
pub const TIMERS_TABLE: &str = "__timers";

impl TimerService {
    fn set_of(&mut self, domain: TimeDomain) -> &mut BTreeSet<Entry> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    pub fn apply(&mut self, change: TimerChange) {
        match change {
            TimerChange::Set(t) => {
                self.set_of(t.domain).insert((t.time, t.key, t.key_group));
            }
            TimerChange::Cancel(t) => {
                self.set_of(t.domain).remove(&(t.time, t.key, t.key_group));
            }
        }
    }

    /// Takes the earliest timer of `domain` at or before `now`.
    pub fn pop_due(&mut self, domain: TimeDomain, now: Millis) -> Option<Timer> {
        let set = self.set_of(domain);
        let first = set.first()?;
        if first.0 > now {
            return None;
        }
        let (time, key, key_group) = set.pop_first()?;
        Some(Timer {
            domain,
            time,
            key,
            key_group,
        })
    }

    /// When the earliest processing-time timer is due.
    pub fn next_processing(&self) -> Option<Millis> {
        self.processing.first().map(|t| t.0)
    }

    pub fn is_empty(&self) -> bool {
        self.event.is_empty() && self.processing.is_empty()
    }

    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("domain", DataType::Int8, false),
            Field::new("time", DataType::Int64, false),
            Field::new("key", DataType::Binary, false),
            Field::new("key_group", DataType::UInt32, false),
        ]))
    }

    /// Every timer as one batch, for a checkpoint; `None` when there is none.
    pub fn snapshot(&self) -> Result<Option<RecordBatch>> {
        if self.is_empty() {
            return Ok(None);
        }
        let all: Vec<(i8, &Entry)> = self
            .event
            .iter()
            .map(|t| (0, t))
            .chain(self.processing.iter().map(|t| (1, t)))
            .collect();
        let domains = Int8Array::from_iter_values(all.iter().map(|(d, _)| *d));
        let times = Int64Array::from_iter_values(all.iter().map(|(_, t)| t.0));
        let keys = BinaryArray::from_iter_values(all.iter().map(|(_, t)| t.1.as_ref()));
        let groups = all
            .iter()
            .map(|(_, t)| {
                u32::try_from(t.2).map_err(|_| {
                    SluiceError::Runtime(format!("timer key group {} out of range", t.2))
                })
            })
            .collect::<Result<UInt32Array>>()?;
        RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(domains),
                Arc::new(times),
                Arc::new(keys),
                Arc::new(groups),
            ],
        )
        .map(Some)
        .map_err(|e| SluiceError::Runtime(format!("encoding timers: {e}")))
    }

    /// Takes back the timers of `batches` whose key groups are in
    /// `key_groups` (this subtask's).
    pub fn restore(&mut self, batches: &[RecordBatch], key_groups: &Range<usize>) -> Result<()> {
        for batch in batches {
            if batch.schema().fields() != Self::schema().fields() {
                return Err(SluiceError::Config(format!(
                    "the checkpoint's timers are not as this version of Sluice writes them: {}",
                    batch.schema()
                )));
            }
            let domains = batch.column(0).as_primitive::<Int8Type>();
            let times = batch.column(1).as_primitive::<Int64Type>();
            let keys = batch.column(2).as_binary::<i32>();
            let groups = batch.column(3).as_primitive::<UInt32Type>();
            for i in 0..batch.num_rows() {
                let group = groups.value(i) as usize;
                if !key_groups.contains(&group) {
                    continue;
                }
                let domain = match domains.value(i) {
                    0 => TimeDomain::EventTime,
                    1 => TimeDomain::ProcessingTime,
                    other => {
                        return Err(SluiceError::Config(format!(
                            "the checkpoint holds a timer of unknown domain {other}"
                        )));
                    }
                };
                debug_assert!(!keys.is_null(i));
                self.apply(TimerChange::Set(Timer {
                    domain,
                    time: times.value(i),
                    key: Arc::from(keys.value(i)),
                    key_group: group,
                }));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(domain: TimeDomain, time: Millis, key: &[u8], key_group: usize) -> Timer {
        Timer {
            domain,
            time,
            key: Arc::from(key),
            key_group,
        }
    }

    #[test]
    fn timers_fire_in_time_order_once_each() {
        let mut timers = TimerService::default();
        for t in [30, 10, 20, 10] {
            timers.apply(TimerChange::Set(timer(TimeDomain::EventTime, t, b"k", 0)));
        }
        timers.apply(TimerChange::Set(timer(
            TimeDomain::ProcessingTime,
            5,
            b"k",
            0,
        )));
        assert_eq!(timers.len(), 4, "the repeated timer is one");
        let due: Vec<Millis> = std::iter::from_fn(|| timers.pop_due(TimeDomain::EventTime, 20))
            .map(|t| t.time)
            .collect();
        assert_eq!(due, vec![10, 20]);
        assert_eq!(timers.next_processing(), Some(5));
        timers.apply(TimerChange::Cancel(timer(
            TimeDomain::EventTime,
            30,
            b"k",
            0,
        )));
        assert_eq!(timers.pop_due(TimeDomain::EventTime, 100), None);
        assert!(timers.pop_due(TimeDomain::ProcessingTime, 5).is_some());
        assert!(timers.is_empty());
    }

    #[test]
    fn a_restore_keeps_the_timers_of_its_key_groups() {
        let mut timers = TimerService::default();
        timers.apply(TimerChange::Set(timer(TimeDomain::EventTime, 10, b"a", 3)));
        timers.apply(TimerChange::Set(timer(
            TimeDomain::ProcessingTime,
            99,
            b"b",
            70,
        )));
        let batch = timers.snapshot().expect("snapshot").expect("timers");
        let mut low = TimerService::default();
        low.restore(std::slice::from_ref(&batch), &(0..64))
            .expect("restore");
        let mut high = TimerService::default();
        high.restore(std::slice::from_ref(&batch), &(64..128))
            .expect("restore");
        assert_eq!(
            low.pop_due(TimeDomain::EventTime, 10),
            Some(timer(TimeDomain::EventTime, 10, b"a", 3))
        );
        assert!(low.is_empty());
        assert_eq!(high.next_processing(), Some(99));
        assert_eq!(high.len(), 1);
        assert_eq!(TimerService::default().snapshot().expect("none"), None);
    }
}
