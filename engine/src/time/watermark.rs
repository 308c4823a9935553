//! Watermark bookkeeping, as plain types with no I/O.
//!
//! A source subtask reads its splits one after another in event-time order
//! (files), or all at once (Kafka partitions).
//! [`SplitWatermarks`] keeps its watermark at the minimum over the splits it
//! has not finished and that are not idle, counting splits it has not
//! *started* at just below their smallest event time (known from Parquet
//! statistics), at the watermark their first row will propose (JSON lines,
//! whose first line planning decodes), or at the beginning of time (when
//! nothing is known). So moving on to a file whose rows are older than what
//! was read before never turns those rows into late data.
//!
//! A split read concurrently that has yielded nothing for a while can be
//! marked idle: it stops holding the watermark back until it yields again,
//! and its rows may then be late (Flink's `scan.watermark.idle-timeout`).
//!
//! An operator with several input channels keeps the minimum over them with
//! [`InputWatermarks`].

use super::{BEFORE_TIME, END_OF_TIME, Millis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitState {
    /// Not opened yet; none of its rows is older than this bound.
    Pending {
        lower_bound: Millis,
    },
    /// Being read; its watermark so far.
    Active {
        watermark: Millis,
    },
    /// Being read but quiet: does not hold the watermark back.
    Idle {
        watermark: Millis,
    },
    Finished,
}

/// The watermark of one source subtask over the splits assigned to it.
#[derive(Debug, Clone)]
pub struct SplitWatermarks {
    splits: Vec<SplitState>,
    emitted: Millis,
}

impl SplitWatermarks {
    /// `min_event_times[i]` is split `i`'s smallest event time, when known.
    pub fn new(min_event_times: impl IntoIterator<Item = Option<Millis>>) -> Self {
        let splits = min_event_times
            .into_iter()
            .map(|min| SplitState::Pending {
                // A row at exactly `min` must stay on time, so hold the
                // watermark one millisecond below it.
                lower_bound: min.map_or(BEFORE_TIME, |m| m.saturating_sub(1)),
            })
            .collect();
        Self {
            splits,
            emitted: BEFORE_TIME,
        }
    }

    /// Raises the watermark a split not started yet holds the subtask at:
    /// to the one a checkpoint recorded for it (so a restored source does
    /// not move event time back), or to what its first row will propose.
    pub fn raise_pending(&mut self, split: usize, watermark: Millis) {
        if let SplitState::Pending { lower_bound } = &mut self.splits[split] {
            *lower_bound = (*lower_bound).max(watermark);
        }
    }

    pub fn start(&mut self, split: usize) {
        if let SplitState::Pending { lower_bound } = self.splits[split] {
            self.splits[split] = SplitState::Active {
                watermark: lower_bound,
            };
        }
    }

    /// Records a watermark candidate observed in `split` (the maximum of the
    /// table's watermark expression over a batch).
    pub fn observe(&mut self, split: usize, candidate: Millis) {
        if let SplitState::Active { watermark } = &mut self.splits[split] {
            *watermark = (*watermark).max(candidate);
        }
    }

    pub fn finish(&mut self, split: usize) {
        self.splits[split] = SplitState::Finished;
    }

    /// Marks an active split idle: it no longer holds the watermark back.
    pub fn idle(&mut self, split: usize) {
        if let SplitState::Active { watermark } = self.splits[split] {
            self.splits[split] = SplitState::Idle { watermark };
        }
    }

    /// Makes an idle split active again, at the watermark it had.
    pub fn resume(&mut self, split: usize) {
        if let SplitState::Idle { watermark } = self.splits[split] {
            self.splits[split] = SplitState::Active { watermark };
        }
    }

    pub fn is_idle(&self, split: usize) -> bool {
        matches!(self.splits[split], SplitState::Idle { .. })
    }

    /// Whether every split not finished is idle (and one is): the subtask's
    /// output should be marked idle downstream.
    pub fn all_idle(&self) -> bool {
        let mut idle = false;
        for state in &self.splits {
            match state {
                SplitState::Idle { .. } => idle = true,
                SplitState::Finished => {}
                _ => return false,
            }
        }
        idle
    }

    /// The subtask's watermark now: the minimum over unfinished splits that
    /// are not idle; [`END_OF_TIME`] when all are finished; unchanged when
    /// all that remain are idle (the input is quiet, not over).
    pub fn current(&self) -> Millis {
        let mut min = None::<Millis>;
        let mut idle = false;
        for state in &self.splits {
            match *state {
                SplitState::Pending {
                    lower_bound: watermark,
                }
                | SplitState::Active { watermark } => {
                    min = Some(min.map_or(watermark, |m| m.min(watermark)));
                }
                SplitState::Idle { .. } => idle = true,
                SplitState::Finished => {}
            }
        }
        match min {
            Some(min) => min,
            None if idle => self.emitted,
            None => END_OF_TIME,
        }
    }

    /// The subtask's watermark if `split` had reached `candidate`.
    pub fn current_with(&self, split: usize, candidate: Millis) -> Millis {
        let mut with = self.clone();
        with.observe(split, candidate);
        with.current()
    }

    /// The watermark of one split alone.
    pub fn split_watermark(&self, split: usize) -> Millis {
        match self.splits[split] {
            SplitState::Pending { lower_bound } => lower_bound,
            SplitState::Active { watermark } | SplitState::Idle { watermark } => watermark,
            SplitState::Finished => END_OF_TIME,
        }
    }

    /// The last watermark [`SplitWatermarks::advance`] returned.
    pub fn emitted(&self) -> Millis {
        self.emitted
    }

    /// Returns the watermark to emit, if it moved forward since the last call.
    /// Watermarks never go backwards.
    pub fn advance(&mut self) -> Option<Millis> {
        let now = self.current();
        (now > self.emitted).then(|| {
            self.emitted = now;
            now
        })
    }
}

/// The minimum watermark over an operator's input channels.
///
/// An input that ends keeps its last watermark: one that reached the end of
/// its data sent [`END_OF_TIME`] before ending, while one that was stopped
/// did not and so still holds the others back. A stopped job thus fires no
/// window that was not complete when it stopped. An input marked idle does
/// not count until its next message.
#[derive(Debug, Clone)]
pub struct InputWatermarks {
    inputs: Vec<Millis>,
    idle: Vec<bool>,
    current: Millis,
}

impl InputWatermarks {
    pub fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![BEFORE_TIME; inputs],
            idle: vec![false; inputs],
            current: if inputs == 0 {
                END_OF_TIME
            } else {
                BEFORE_TIME
            },
        }
    }

    /// Records input `i`'s watermark; returns the combined watermark if it advanced.
    pub fn update(&mut self, input: usize, watermark: Millis) -> Option<Millis> {
        self.idle[input] = false;
        let slot = &mut self.inputs[input];
        *slot = (*slot).max(watermark);
        self.combine()
    }

    /// Input `i` sent data: it counts again if it was idle.
    pub fn activate(&mut self, input: usize) {
        self.idle[input] = false;
    }

    /// Input `i` is idle; returns the combined watermark if that let it advance.
    pub fn idle(&mut self, input: usize) -> Option<Millis> {
        self.idle[input] = true;
        self.combine()
    }

    /// Whether every input is idle.
    pub fn all_idle(&self) -> bool {
        !self.idle.is_empty() && self.idle.iter().all(|i| *i)
    }

    fn combine(&mut self) -> Option<Millis> {
        let min = self
            .inputs
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !**idle)
            .map(|(w, _)| *w)
            .min()?;
        (min > self.current).then(|| {
            self.current = min;
            min
        })
    }

    pub fn current(&self) -> Millis {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_splits_hold_the_watermark_below_their_rows() {
        // Two time-ranged files read in order: [100, 200) and [200, 300).
        let mut w = SplitWatermarks::new([Some(100), Some(200)]);
        assert_eq!(w.advance(), Some(99));
        w.start(0);
        w.observe(0, 180);
        // The second file's rows start at 200, so the watermark may reach 180.
        assert_eq!(w.advance(), Some(180));
        w.observe(0, 250); // disorder inside the first file beyond the second's start
        assert_eq!(
            w.advance(),
            Some(199),
            "held below the unread file's first row"
        );
        w.finish(0);
        w.start(1);
        assert_eq!(w.advance(), None, "never goes backwards");
        w.observe(1, 290);
        assert_eq!(w.advance(), Some(290));
        w.finish(1);
        assert_eq!(w.advance(), Some(END_OF_TIME));
        assert_eq!(w.advance(), None);
    }

    #[test]
    fn unknown_statistics_hold_the_watermark_until_the_split_starts() {
        let mut w = SplitWatermarks::new([None, None]);
        assert_eq!(w.advance(), None);
        w.start(0);
        w.observe(0, 1_000);
        assert_eq!(w.advance(), None, "split 1 may still hold any time");
        w.finish(0);
        w.start(1);
        w.observe(1, 500);
        assert_eq!(w.advance(), Some(500));
    }

    #[test]
    fn no_splits_means_ended() {
        let mut w = SplitWatermarks::new([]);
        assert_eq!(w.advance(), Some(END_OF_TIME));
    }

    #[test]
    fn idle_splits_stop_holding_the_watermark_back() {
        let mut w = SplitWatermarks::new([None, None, None]);
        (0..3).for_each(|i| w.start(i));
        w.observe(0, 100);
        w.observe(1, 50);
        assert_eq!(w.advance(), None, "split 2 has shown nothing yet");
        w.idle(2);
        assert_eq!(w.advance(), Some(50));
        w.idle(1);
        assert_eq!(w.advance(), Some(100));
        w.idle(0);
        assert_eq!(w.advance(), None, "all idle: the input is quiet, not over");
        assert_eq!(w.current(), 100);
        w.resume(1);
        assert!(!w.is_idle(1));
        assert_eq!(w.advance(), None, "a resumed split never moves it back");
        w.observe(1, 120);
        assert_eq!(w.advance(), Some(120));
        w.finish(1);
        w.finish(0);
        assert_eq!(w.advance(), None, "split 2 is idle, not finished");
        w.resume(2);
        w.finish(2);
        assert_eq!(w.advance(), Some(END_OF_TIME));
    }

    #[test]
    fn idle_inputs_do_not_count_until_they_speak_again() {
        let mut w = InputWatermarks::new(3);
        assert_eq!(w.update(0, 10), None);
        assert_eq!(w.update(1, 20), None);
        assert_eq!(w.idle(2), Some(10));
        assert!(!w.all_idle());
        assert_eq!(w.idle(0), Some(20));
        assert_eq!(w.idle(1), None, "all idle: nothing moves");
        assert!(w.all_idle());
        w.activate(0);
        assert!(!w.all_idle());
        assert_eq!(w.update(0, 15), None, "never backwards");
        assert_eq!(w.update(0, 30), Some(30));
        assert_eq!(w.update(2, 5), None, "a resumed input holds back again");
        assert_eq!(w.update(0, 40), None);
        assert_eq!(w.update(2, 35), Some(35));
    }

    #[test]
    fn operator_watermark_is_the_minimum_over_inputs() {
        let mut w = InputWatermarks::new(3);
        assert_eq!(w.update(0, 10), None);
        assert_eq!(w.update(1, 20), None);
        assert_eq!(w.update(2, 5), Some(5));
        assert_eq!(w.update(2, 30), Some(10));
        assert_eq!(
            w.update(0, 8),
            None,
            "an input going backwards changes nothing"
        );
        assert_eq!(w.update(0, END_OF_TIME), Some(20));
        assert_eq!(w.update(1, END_OF_TIME), Some(30));
        assert_eq!(w.update(2, END_OF_TIME), Some(END_OF_TIME));
        assert_eq!(w.current(), END_OF_TIME);
    }
}
