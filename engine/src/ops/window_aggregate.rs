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
//!
//! Before a keyed exchange the aggregation runs in two phases, as Flink's
//! local-global aggregation and DataFusion's partial/final aggregation do:
//! a [`Phase::Local`] operator in each upstream subtask aggregates its rows
//! per slice and key and, once the watermark passes a slice's end, sends the
//! slice's partial states on; the [`Phase::Merge`] operator after the
//! exchange merges them and fires windows. Far fewer rows cross the exchange.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use arrow::record_batch::RecordBatchOptions;

use super::aggregate::{AggregateSpec, Evaluated, GroupState, Groups, Windows, event_times};
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
    StateTable,
};
use crate::error::{ExecContext, Result};
use crate::sql::window_tvf::describe;
use crate::time::{Millis, WindowColumn, WindowKind};

/// The state table of the slices' partial aggregates.
const SLICES: &str = "slices";

/// The plan of a window aggregation; creates one operator per subtask.
#[derive(Debug, Clone)]
pub struct WindowAggregate {
    pub kind: WindowKind,
    /// Group keys that are an earlier window's bounds (a window aggregate
    /// over a window aggregate's results, grouped by their bounds): their
    /// output columns, and which bound of which windows each is.
    pub key_bounds: Vec<(usize, WindowColumn, WindowKind)>,
    /// The input column holding event time (`None` for a global aggregate);
    /// in the merge phase, the slice column of the partial states.
    pub time_index: Option<usize>,
    pub spec: Arc<AggregateSpec>,
    pub phase: Phase,
    /// The input column carrying each row as its source read it, which late
    /// rows are written as ([`crate::ops::late_row`]).
    pub late_row: Option<usize>,
}

/// Which part of a (possibly two-phase) aggregation an operator does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Rows in, partial states per slice and key out (see [`state_schema`]).
    Local,
    /// Partial states in, results out.
    Merge,
}

/// The rows a [`Phase::Local`] operator emits: the slice's start, the keys,
/// then each aggregate's state columns.
pub fn state_schema(spec: &AggregateSpec) -> Result<SchemaRef> {
    let mut fields = vec![Field::new(
        "__slice",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        false,
    )];
    fields.extend(spec.key_schema.fields().iter().map(|f| f.as_ref().clone()));
    for (j, states) in spec.state_fields()?.iter().enumerate() {
        for f in states {
            fields.push(
                f.as_ref()
                    .clone()
                    .with_name(format!("__agg{j}_{}", f.name()))
                    .with_nullable(true),
            );
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

impl OperatorFactory for WindowAggregate {
    fn name(&self) -> &str {
        match (self.kind, self.phase) {
            (WindowKind::Global, Phase::Local) => "LocalGroupAggregate",
            (WindowKind::Global, _) => "GroupAggregate",
            (_, Phase::Local) => "LocalWindowAggregate",
            _ => "WindowAggregate",
        }
    }

    fn describe(&self) -> String {
        let window = match self.kind {
            WindowKind::Global => String::new(),
            kind => format!("{} ", describe(&kind)),
        };
        format!("{window}{}", self.spec.describe())
    }

    /// A window's bounds, in the results of its final phase.
    fn column_origin(&self, column: usize) -> super::ColumnOrigin {
        if self.phase == Phase::Merge
            && let Some(&(_, bound, kind)) = self.key_bounds.iter().find(|b| b.0 == column)
        {
            return super::ColumnOrigin::Window(bound, kind);
        }
        match (self.phase, self.kind, self.spec.output.get(column)) {
            (Phase::Merge, kind, Some(super::aggregate::OutputColumn::Window(w)))
                if kind != WindowKind::Global =>
            {
                super::ColumnOrigin::Window(*w, kind)
            }
            _ => super::ColumnOrigin::Computed,
        }
    }

    fn fingerprint(&self) -> String {
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
        let state_widths = self.spec.state_fields()?.iter().map(Vec::len).collect();
        Ok(Box::new(SlicedWindows {
            plan: self.clone(),
            state_schema: state_schema(&self.spec)?,
            state_widths,
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
    /// Partial states per slice and key: what the local phase emits and
    /// what a checkpoint keeps.
    state_schema: SchemaRef,
    /// How many state columns each aggregate has.
    state_widths: Vec<usize>,
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

    /// The groups collecting rows of `slice`, created when needed.
    fn groups(&mut self, slice: Millis) -> Result<&mut Groups> {
        if !self.slices.contains_key(&slice) {
            // A local phase fires no windows, so it keeps no list of them.
            if self.plan.phase != Phase::Local {
                for (start, end) in self.kind().windows_of_slice(slice) {
                    if !self.is_fired(end) {
                        self.pending.insert((end, start));
                    }
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
        let entry = self
            .slices
            .get_mut(&slice)
            .ok_or_else(|| crate::SluiceError::Runtime("a slice vanished while in use".into()))?;
        if entry.live.is_none() {
            entry.live = Some(Groups::new(&spec.key_schema, &spec.aggregates)?);
        }
        entry
            .live
            .as_mut()
            .ok_or_else(|| crate::SluiceError::Runtime("a slice lost its groups".into()))
    }

    /// Emits the partial state of every slice the watermark has passed.
    fn emit_ended_slices(&mut self, out: &mut Output) -> Result<()> {
        let kind = self.kind();
        let len = kind.slice_len();
        let watermark = self.watermark;
        let ended: Vec<Millis> = self
            .slices
            .keys()
            .copied()
            .take_while(|s| {
                let end = len.map_or(crate::time::END_OF_TIME, |l| s.saturating_add(l));
                end.saturating_sub(1) <= watermark
            })
            .collect();
        for s in ended {
            let Some(slice) = self.slices.remove(&s) else {
                continue;
            };
            if let Some(state) = self.compact(slice)? {
                out.batch(self.state_batch(s, state)?);
            }
        }
        Ok(())
    }

    /// A slice's partial states as one: its frozen parts and live rows
    /// merged (frozen parts exist once a checkpoint or a fired window has
    /// taken the slice's state).
    fn compact(&self, slice: Slice) -> Result<Option<GroupState>> {
        let Slice { live, mut frozen } = slice;
        let live = match live {
            Some(mut live) if !live.is_empty() => Some(live.take_state()?),
            _ => None,
        };
        Ok(match (frozen.len(), live) {
            (0, live) => live,
            (1, None) => frozen.pop(),
            (_, live) => {
                let spec = &self.plan.spec;
                let mut merged = Groups::new(&spec.key_schema, &spec.aggregates)?;
                for part in frozen.iter().chain(live.as_ref()) {
                    merged.merge(part)?;
                }
                Some(merged.take_state()?)
            }
        })
    }

    /// Partial states of `slice` as rows of [`state_schema`].
    fn state_batch(&self, slice: Millis, state: GroupState) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(
            arrow::array::TimestampMillisecondArray::from_value(slice, state.rows),
        )];
        columns.extend(state.keys);
        columns.extend(state.states.into_iter().flatten());
        RecordBatch::try_new_with_options(
            Arc::clone(&self.state_schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(state.rows)),
        )
        .exec_context(|| "assembling partial aggregates".to_string())
    }

    /// Adds partial-state rows (of [`state_schema`]) to their slices.
    fn add_states(&mut self, batch: &RecordBatch) -> Result<()> {
        let slices = event_times(batch.column(0))?;
        let mut by_slice: BTreeMap<Millis, Vec<u32>> = BTreeMap::new();
        for (row, slice) in slices.values().iter().enumerate() {
            by_slice.entry(*slice).or_default().push(row as u32);
        }
        for (slice, rows) in by_slice {
            let rows = if rows.len() == batch.num_rows() {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows))
                    .exec_context(|| "restoring slices".to_string())?
            };
            let states = self.partial_states(&rows);
            self.groups(slice)?.merge(&states)?;
        }
        Ok(())
    }

    /// Splits partial-state rows into keys and per-aggregate states.
    fn partial_states(&self, batch: &RecordBatch) -> GroupState {
        let keys = self.plan.spec.key_schema.fields().len();
        let columns = batch.columns();
        let mut next = 1 + keys;
        let states = self
            .state_widths
            .iter()
            .map(|w| {
                let state = columns[next..next + w].to_vec();
                next += w;
                state
            })
            .collect();
        GroupState {
            keys: columns[1..1 + keys].to_vec(),
            states,
            rows: batch.num_rows(),
        }
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
                out.batch(self.plan.spec.output_batch(groups.evaluate()?, window)?);
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
            out.batch(self.plan.spec.output_batch(merged.evaluate()?, window)?);
        }
        Ok(())
    }
}

impl Operator for SlicedWindows {
    /// Every slice's partial states, one row per key. Each slice's state is
    /// compacted to one frozen part (rows added later go to a new live
    /// part), so what is kept between checkpoints does not pile up.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let spec = Arc::clone(&self.plan.spec);
        let starts: Vec<Millis> = self.slices.keys().copied().collect();
        let mut taken = Vec::with_capacity(starts.len());
        for start in starts {
            let Some(slice) = self.slices.remove(&start) else {
                continue;
            };
            let state = self.compact(slice)?;
            let frozen = state.iter().cloned().collect();
            self.slices.insert(start, Slice { live: None, frozen });
            if let Some(state) = state {
                taken.push((start, state));
            }
        }
        let batches = taken
            .into_iter()
            .map(|(start, state)| self.state_batch(start, state))
            .collect::<Result<_>>()?;
        Ok(Some(OperatorState {
            tables: vec![StateTable {
                name: SLICES.to_string(),
                batches,
                // Only the merge phase sits behind a hash exchange; partial
                // states before it can be merged anywhere.
                keyed: self.plan.phase == Phase::Merge && !spec.keys.is_empty(),
            }],
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        // Behind an exchange every subtask saw the same watermarks before
        // the barrier, so the restored one holds for all keys. A local
        // phase takes its watermark from the source it is chained to,
        // which may now read other splits than the one that snapshotted.
        if self.plan.phase == Phase::Merge {
            self.watermark = self.watermark.max(state.watermark);
        }
        let keys = self.plan.spec.key_schema.fields().len();
        for batch in state.table(SLICES) {
            RestoredState::check_layout(
                OperatorFactory::name(&self.plan),
                batch,
                &self.state_schema,
            )?;
            let batch = if self.plan.phase == Phase::Merge {
                state.owned(batch, &batch.columns()[1..1 + keys])?
            } else {
                batch.clone()
            };
            if batch.num_rows() > 0 {
                self.add_states(&batch)?;
            }
        }
        Ok(())
    }

    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let input = match self.plan.phase {
            Phase::Merge => Input::States(self.partial_states(&batch)),
            Phase::Local => Input::Rows(self.plan.spec.evaluate(&batch)?),
        };
        let Some(time_index) = self.plan.time_index else {
            return input.add_to(self.groups(0)?);
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
            return input.add_to(self.groups(*first)?);
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
            let late = take_record_batch(&batch, &UInt32Array::from(late))
                .exec_context(|| "setting late rows aside".to_string())?;
            out.late(crate::ops::late_row::as_written(late, self.plan.late_row)?);
        }
        for (slice, indices) in by_slice {
            let subset = input.take(&UInt32Array::from(indices))?;
            subset.add_to(self.groups(slice)?)?;
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        if self.plan.phase == Phase::Local {
            self.emit_ended_slices(out)?;
            out.watermark(self.watermark);
            return Ok(());
        }
        // `SELECT COUNT(*) FROM t` over no rows still has its one row.
        if self.kind() == WindowKind::Global
            && self.plan.spec.keys.is_empty()
            && self.watermark == crate::time::END_OF_TIME
            && self.slices.is_empty()
        {
            let results = self.plan.spec.results_of_nothing()?;
            out.batch(self.plan.spec.output_batch(results, Windows::None)?);
        }
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

/// What one batch adds to a slice: rows, or partial states from a local phase.
enum Input {
    Rows(Evaluated),
    States(GroupState),
}

impl Input {
    fn add_to(&self, groups: &mut Groups) -> Result<()> {
        match self {
            Self::Rows(rows) => groups.update(rows),
            Self::States(states) => groups.merge(states),
        }
    }

    fn take(&self, indices: &UInt32Array) -> Result<Self> {
        Ok(match self {
            Self::Rows(rows) => Self::Rows(rows.take(indices)?),
            Self::States(states) => Self::States(states.take(indices)?),
        })
    }
}
