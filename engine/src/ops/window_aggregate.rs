//! Window aggregation over slices: tumbling, hopping, cumulating and global windows.
//!
//! Each row is added to the one slice that holds its event time (see
//! [`crate::time::window`]). When the watermark passes a window's end, the
//! window fires: a tumbling window evaluates its single slice directly; a
//! window made of several slices merges their partial states. So a 10 s / 2 s
//! hop adds each row once and merges five small per-key states per window,
//! instead of copying each row into five windows.
//!
//! A row whose every window has already fired is late: it is counted and
//! handed to the late-data output, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;

use super::aggregate::{AggregateSpec, Evaluated, GroupState, Groups, Windows, event_times};
use super::{Operator, OperatorContext, OperatorFactory, Output};
use crate::error::{ExecContext, Result};
use crate::sql::window_tvf::describe;
use crate::time::{Millis, WindowKind};

/// The plan of a window aggregation; creates one operator per subtask.
#[derive(Debug, Clone)]
pub struct WindowAggregate {
    pub kind: WindowKind,
    /// The input column holding event time (`None` for a global aggregate).
    pub time_index: Option<usize>,
    pub spec: Arc<AggregateSpec>,
}

impl OperatorFactory for WindowAggregate {
    fn name(&self) -> &str {
        if self.kind == WindowKind::Global {
            "GroupAggregate"
        } else {
            "WindowAggregate"
        }
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self.spec.keys.iter().map(|k| k.to_string()).collect();
        let aggs: Vec<String> = self
            .spec
            .aggregates
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        let window = match self.kind {
            WindowKind::Global => String::new(),
            kind => format!("{} ", describe(&kind)),
        };
        format!(
            "{window}keys [{}] aggs [{}]",
            keys.join(", "),
            aggs.join(", ")
        )
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        Ok(Box::new(SlicedWindows {
            plan: self.clone(),
            slices: BTreeMap::new(),
            pending: BTreeSet::new(),
            watermark: crate::time::BEFORE_TIME,
        }))
    }
}

/// The accumulated rows of one slice.
struct Slice {
    /// Rows added since the slice's state was last taken.
    live: Option<Groups>,
    /// Partial states taken when a window containing the slice fired while
    /// later windows still need it.
    frozen: Vec<GroupState>,
}

struct SlicedWindows {
    plan: WindowAggregate,
    slices: BTreeMap<Millis, Slice>,
    /// Windows `(end, start)` that hold rows and have not fired, in firing order.
    pending: BTreeSet<(Millis, Millis)>,
    watermark: Millis,
}

impl SlicedWindows {
    fn kind(&self) -> WindowKind {
        self.plan.kind
    }

    fn is_fired(&self, window_end: Millis) -> bool {
        window_end.saturating_sub(1) <= self.watermark
    }

    fn add(&mut self, slice: Millis, rows: &Evaluated) -> Result<()> {
        if !self.slices.contains_key(&slice) {
            for (start, end) in self.kind().windows_of_slice(slice) {
                if !self.is_fired(end) {
                    self.pending.insert((end, start));
                }
            }
            self.slices.insert(
                slice,
                Slice {
                    live: None,
                    frozen: Vec::new(),
                },
            );
        }
        let spec = &self.plan.spec;
        let entry = self.slices.get_mut(&slice).expect("inserted above");
        let groups = match &mut entry.live {
            Some(g) => g,
            None => entry
                .live
                .insert(Groups::new(&spec.key_schema, &spec.aggregates)?),
        };
        groups.update(rows)
    }

    fn fire(&mut self, start: Millis, end: Millis, out: &mut Output) -> Result<()> {
        let kind = self.kind();
        let slice_starts = kind.slices_of_window(start, end);
        let window = if kind == WindowKind::Global {
            Windows::None
        } else {
            Windows::One(start, end)
        };
        // A window of one slice that no later window needs: evaluate in place.
        if let [only] = slice_starts.as_slice()
            && kind.last_window_end(*only) == end
            && let Some(slice) = self.slices.get_mut(only)
            && slice.frozen.is_empty()
        {
            if let Some(mut groups) = slice.live.take() {
                let (keys, values) = groups.evaluate()?;
                out.batch(self.plan.spec.output_batch(keys, values, window)?);
            }
            self.slices.remove(only);
            return Ok(());
        }
        let mut merged = Groups::new(&self.plan.spec.key_schema, &self.plan.spec.aggregates)?;
        for s in slice_starts {
            let Some(slice) = self.slices.get_mut(&s) else {
                continue;
            };
            if let Some(mut live) = slice.live.take() {
                slice.frozen.push(live.take_state()?);
            }
            for state in &slice.frozen {
                merged.merge(state)?;
            }
        }
        if !merged.is_empty() {
            let (keys, values) = merged.evaluate()?;
            out.batch(self.plan.spec.output_batch(keys, values, window)?);
        }
        Ok(())
    }
}

impl Operator for SlicedWindows {
    fn on_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let rows = self.plan.spec.evaluate(&batch)?;
        let Some(time_index) = self.plan.time_index else {
            return self.add(0, &rows);
        };
        let times = event_times(batch.column(time_index))?;
        let kind = self.kind();
        // The slice of each row; `None` for late rows and rows without a time.
        // Consecutive rows mostly share a slice, so its lateness is cached.
        let mut cached: Option<(Millis, bool)> = None;
        let slices: Vec<Option<Millis>> = times
            .iter()
            .map(|ts| {
                let slice = kind.slice_start(ts?);
                let late = match cached {
                    Some((c, late)) if c == slice => late,
                    _ => {
                        let late = self.is_fired(kind.last_window_end(slice));
                        cached = Some((slice, late));
                        late
                    }
                };
                (!late).then_some(slice)
            })
            .collect();
        if let Some(Some(first)) = slices.first()
            && slices.iter().all(|s| *s == Some(*first))
        {
            return self.add(*first, &rows);
        }
        let mut late: Vec<u32> = Vec::new();
        let mut by_slice: Vec<(Millis, Vec<u32>)> = Vec::new();
        for (row, slice) in slices.iter().enumerate() {
            match slice {
                None => late.push(row as u32),
                Some(s) => match by_slice.iter_mut().rev().find(|(k, _)| k == s) {
                    Some((_, indices)) => indices.push(row as u32),
                    None => by_slice.push((*s, vec![row as u32])),
                },
            }
        }
        if !late.is_empty() {
            out.late(
                take_record_batch(&batch, &UInt32Array::from(late))
                    .exec_context(|| "setting late rows aside".to_string())?,
            );
        }
        for (slice, indices) in by_slice {
            let subset = rows.take(&UInt32Array::from(indices))?;
            self.add(slice, &subset)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        while let Some(&(end, start)) = self.pending.first() {
            if !self.is_fired(end) {
                break;
            }
            self.pending.pop_first();
            self.fire(start, end, out)?;
        }
        let kind = self.kind();
        let watermark = self.watermark;
        self.slices
            .retain(|s, _| kind.last_window_end(*s).saturating_sub(1) > watermark);
        out.watermark(watermark);
        Ok(())
    }
}
