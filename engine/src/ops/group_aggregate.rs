//! GROUP BY without a window over a stream: a result per key, updated as
//! rows come.
//!
//! A stream never ends, so its groups never close: the operator keeps each
//! group's accumulators and, after every input batch, sends what changed,
//! as Flink's `GroupAggregate` does with mini-batches on. A key seen for the
//! first time gives `+I`; a key whose results changed gives `-U` with the
//! results sent before and `+U` with the new ones, adjacent; a key whose
//! rows were all taken back gives `-D`; a key whose results did not change
//! gives nothing. Its output is therefore a changelog
//! ([`crate::changelog`]) whose final state is the batch answer.
//!
//! Over an updating input, rows marked `-U` or `-D` are taken back from
//! their group's accumulators (`retract_batch`). Within a batch, each
//! group's additions are applied before its retractions, so a value is
//! never taken back before it was added. Only accumulators that can retract
//! are used there ([`Accumulation`]); the planner refuses others. (`SUM` and
//! `AVG` of FLOAT or DOUBLE values retract by subtraction, so their results
//! may differ from the batch answer by rounding.) A retraction of rows or
//! values a group does not hold is ignored, with a warning.
//!
//! The group keys are arrow-row encodings; each group owns one DataFusion
//! `Accumulator` per aggregate. Its state in a checkpoint is one keyed table,
//! `groups`: the key columns, the number of rows of the group, when a row
//! last touched it, and the accumulators' states, restored at any
//! parallelism.
//!
//! With a state TTL (`'table.exec.state.ttl'`, Flink's idle state
//! retention) a group no row touched for that long is forgotten, without
//! a retraction, as in Flink: a later row of its key starts it again with
//! `+I`. One processing-time timer per group checks it; a touch only moves
//! the group's expiry, and a timer that finds it moved sets the next.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt32Array};
use arrow::compute::{cast, filter, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::aggregate::{AggregateSpec, Results, Windows};
use super::value_counts::{Reduce, ValueCounts};
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
    StateTable,
};
use crate::changelog::{self, RowKind};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, END_OF_TIME, Millis};

/// How one aggregate accumulates, chosen at planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accumulation {
    /// DataFusion's accumulator: the input never takes a row back.
    Plain,
    /// DataFusion's retracting accumulator (`COUNT`, `SUM`, `AVG`), whose
    /// state holds all it needs to retract after a restore.
    Retracting,
    /// [`ValueCounts`] of the argument's type: `MIN`, `MAX`,
    /// `COUNT(DISTINCT)` over updates.
    Counts(Reduce, DataType),
}

impl Accumulation {
    /// How `aggregate` accumulates over an input (of `input` schema) that
    /// updates or not, or why it cannot take rows back.
    pub fn of(
        aggregate: &AggregateFunctionExpr,
        input: &Schema,
        input_updates: bool,
    ) -> std::result::Result<Self, String> {
        if !input_updates {
            return Ok(Self::Plain);
        }
        let counts = |reduce| match aggregate.expressions().as_slice() {
            [arg] => arg
                .data_type(input)
                .map(|t| Self::Counts(reduce, t))
                .map_err(|e| format!("{}: {e}", aggregate.name())),
            _ => Err(format!("{} takes one argument", aggregate.name())),
        };
        let name = aggregate.fun().name().to_ascii_lowercase();
        let distinct = aggregate.is_distinct();
        Ok(match (name.as_str(), distinct) {
            ("min", _) => counts(Reduce::Min)?,
            ("max", _) => counts(Reduce::Max)?,
            ("count", true) => counts(Reduce::CountDistinct)?,
            ("count" | "sum" | "avg", false) if aggregate.order_bys().is_empty() => {
                Self::Retracting
            }
            _ => {
                return Err(format!(
                    "{} over an updating input: Sluice cannot take rows back from it yet (COUNT, SUM, AVG, MIN, MAX and COUNT(DISTINCT) can)",
                    aggregate.name()
                ));
            }
        })
    }

    fn create(&self, aggregate: &AggregateFunctionExpr) -> Result<Box<dyn Accumulator>> {
        let made = match self {
            Self::Plain => aggregate.create_accumulator(),
            Self::Retracting => aggregate.create_sliding_accumulator(),
            Self::Counts(reduce, data_type) => {
                ValueCounts::new(*reduce, data_type).map(|v| Box::new(v) as Box<dyn Accumulator>)
            }
        };
        made.exec_context(|| format!("creating the accumulator of {}", aggregate.name()))
    }
}

/// The plan's description of a non-windowed aggregation over a stream.
#[derive(Debug)]
pub struct GroupAggregate {
    pub spec: Arc<AggregateSpec>,
    /// Per aggregate, in `spec.aggregates`' order.
    pub accumulations: Vec<Accumulation>,
    /// Whether input rows carry row kinds.
    pub input_updates: bool,
    /// How long a group no row touches is kept; `None`: forever.
    pub ttl: Option<Millis>,
}

impl OperatorFactory for GroupAggregate {
    fn name(&self) -> &str {
        "GroupAggregate"
    }

    fn describe(&self) -> String {
        match self.ttl {
            Some(ttl) => format!(
                "{} ttl {}",
                self.spec.describe(),
                crate::plan::explain::duration(ttl)
            ),
            None => self.spec.describe(),
        }
    }

    /// The TTL may change between runs: state restores either way.
    fn fingerprint(&self) -> String {
        self.spec.describe()
    }

    /// Its groups: the output columns of its keys (a keyless aggregate's
    /// one row has the empty key).
    fn upsert_key(&self) -> Option<Vec<usize>> {
        let keys = self.spec.keys.len();
        let at: Vec<usize> = (0..keys)
            .filter_map(|k| {
                self.spec
                    .output
                    .iter()
                    .position(|o| *o == super::aggregate::OutputColumn::Key(k))
            })
            .collect();
        (at.len() == keys).then_some(at)
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let key_fields: Vec<SortField> = self
            .spec
            .key_schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter =
            RowConverter::new(key_fields).exec_context(|| "creating the group keys".to_string())?;
        let mut op = GroupAggregateOp {
            spec: Arc::clone(&self.spec),
            accumulations: self.accumulations.clone(),
            input_updates: self.input_updates,
            ttl: self.ttl,
            timers_to_set: false,
            converter,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            state_schema: Arc::new(Schema::empty()),
            state_widths: Vec::new(),
            watermark: BEFORE_TIME,
            ended_empty: false,
        };
        (op.state_schema, op.state_widths) = op.state_layout()?;
        Ok(Box::new(op))
    }

    /// A group's result is as old as any of its rows.
    fn keeps_event_time(&self) -> bool {
        false
    }
}

/// One group: its key, how many rows it holds, its accumulators and the
/// results last sent for it.
struct Group {
    key: Box<[u8]>,
    rows: i64,
    accumulators: Vec<Box<dyn Accumulator>>,
    /// Per aggregate, the rows it holds whose first argument is not NULL:
    /// a retraction of more than that (an input that takes back what it
    /// never sent) would corrupt DataFusion's accumulators, and is ignored.
    held: Vec<i64>,
    sent: Option<Vec<ScalarValue>>,
    /// When a row last touched the group (processing time; kept with or
    /// without a TTL, so that one set on a restore counts from there), the
    /// key group of its key, and whether an expiry timer is set for it.
    touched: Millis,
    key_group: usize,
    timer_set: bool,
}

struct GroupAggregateOp {
    spec: Arc<AggregateSpec>,
    accumulations: Vec<Accumulation>,
    input_updates: bool,
    ttl: Option<Millis>,
    /// After a restore: every group needs its expiry timer set again.
    timers_to_set: bool,
    converter: RowConverter,
    /// Group key to slot.
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Group>>,
    /// Slots of deleted groups, for reuse.
    free: Vec<usize>,
    /// The `groups` table: keys, row count, accumulator states.
    state_schema: SchemaRef,
    /// How many state columns each aggregate has.
    state_widths: Vec<usize>,
    watermark: Millis,
    /// Whether the one row of an aggregate without keys over no input was
    /// sent at the end.
    ended_empty: bool,
}

/// The name of the state table, of its row-count column and of the time
/// of the groups' last touch.
const GROUPS: &str = "groups";
const ROWS: &str = "__rows";
const TOUCHED: &str = "__touched";

/// Changes to send, in order: a kind, a key and results per row.
#[derive(Default)]
struct Changes {
    kinds: Vec<i8>,
    keys: Vec<Box<[u8]>>,
    values: Vec<Vec<ScalarValue>>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, key: &[u8], values: Vec<ScalarValue>) {
        self.kinds.push(kind.byte());
        self.keys.push(key.into());
        self.values.push(values);
    }
}

impl GroupAggregateOp {
    fn keyed(&self) -> bool {
        !self.spec.keys.is_empty()
    }

    fn new_accumulators(&self) -> Result<Vec<Box<dyn Accumulator>>> {
        self.spec
            .aggregates
            .iter()
            .zip(&self.accumulations)
            .map(|(a, how)| how.create(a))
            .collect()
    }

    /// Key columns, the row count, then per aggregate the non-NULL rows it
    /// holds and its state fields, typed as a fresh accumulator's state;
    /// and how many state fields each has.
    fn state_layout(&self) -> Result<(SchemaRef, Vec<usize>)> {
        let mut widths = Vec::new();
        let mut fields: Vec<Field> = self
            .spec
            .key_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(ROWS, DataType::Int64, false));
        fields.push(Field::new(TOUCHED, DataType::Int64, false));
        for (j, mut acc) in self.new_accumulators()?.into_iter().enumerate() {
            fields.push(Field::new(format!("a{j}_held"), DataType::Int64, false));
            let state = acc
                .state()
                .exec_context(|| format!("state of {}", self.spec.aggregates[j].name()))?;
            for (k, value) in state.iter().enumerate() {
                fields.push(Field::new(format!("a{j}_{k}"), value.data_type(), true));
            }
            widths.push(state.len());
        }
        Ok((Arc::new(Schema::new(fields)), widths))
    }

    /// The slot of the group with `key`, created when new.
    fn slot_of(&mut self, key: &[u8]) -> Result<usize> {
        if let Some(&slot) = self.index.get(key) {
            return Ok(slot);
        }
        let group = Group {
            key: key.into(),
            rows: 0,
            accumulators: self.new_accumulators()?,
            held: vec![0; self.spec.aggregates.len()],
            sent: None,
            touched: 0,
            key_group: 0,
            timer_set: false,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(group);
                slot
            }
            None => {
                self.slots.push(Some(group));
                self.slots.len() - 1
            }
        };
        self.index.insert(key.into(), slot);
        Ok(slot)
    }

    fn remove(&mut self, slot: usize) {
        if let Some(group) = self.slots[slot].take() {
            self.index.remove(&group.key);
            self.free.push(slot);
        }
    }

    /// Each row's group key.
    fn keys_of(&self, keys: &[ArrayRef], rows: usize) -> Result<Vec<Box<[u8]>>> {
        if !self.keyed() {
            return Ok(vec![Box::default(); rows]);
        }
        let encoded = self
            .converter
            .convert_columns(keys)
            .exec_context(|| "encoding group keys".to_string())?;
        Ok((0..rows).map(|i| encoded.row(i).as_ref().into()).collect())
    }

    /// Notes that rows touched these groups (those still held) now; with a
    /// TTL, sets an expiry timer for each that has none.
    fn touch(&mut self, touched: &[usize], out: &mut Output) {
        let now = crate::time::wall_clock();
        let ttl = self.ttl;
        if ttl.is_some() {
            self.set_restored_timers(out);
        }
        for &slot in touched {
            if let Some(group) = self.slots[slot].as_mut() {
                group.touched = now;
                if let Some(ttl) = ttl
                    && !group.timer_set
                {
                    group.timer_set = true;
                    out.set_timer(expiry_timer(group, ttl));
                }
            }
        }
    }

    /// After a restore, a timer for every group (their timers restored
    /// with the checkpoint belong to whichever subtask owns them now; one
    /// more per group is no matter, as each checks the expiry).
    fn set_restored_timers(&mut self, out: &mut Output) {
        if !std::mem::take(&mut self.timers_to_set) {
            return;
        }
        let Some(ttl) = self.ttl else {
            return;
        };
        for group in self.slots.iter_mut().flatten() {
            group.timer_set = true;
            out.set_timer(expiry_timer(group, ttl));
        }
    }

    /// Sends what `touched` groups' results became.
    fn send_changes(&mut self, touched: &[usize], out: &mut Output) -> Result<()> {
        let mut changes = Changes::default();
        for &slot in touched {
            let Some(group) = self.slots[slot].as_mut() else {
                continue;
            };
            if group.rows <= 0 {
                if let Some(sent) = group.sent.take() {
                    changes.push(RowKind::Delete, &group.key, sent);
                }
                self.remove(slot);
                continue;
            }
            let now = group
                .accumulators
                .iter_mut()
                .map(|a| a.evaluate())
                .collect::<Result<Vec<_>, _>>()
                .exec_context(|| "evaluating aggregates".to_string())?;
            match group.sent.replace(now.clone()) {
                None => changes.push(RowKind::Insert, &group.key, now),
                Some(before) if before != now => {
                    changes.push(RowKind::UpdateBefore, &group.key, before);
                    changes.push(RowKind::UpdateAfter, &group.key, now);
                }
                Some(_) => {}
            }
        }
        if !changes.kinds.is_empty() {
            out.batch(self.output(changes)?);
        }
        Ok(())
    }

    /// The output rows of `changes`, with their row kinds.
    fn output(&self, changes: Changes) -> Result<RecordBatch> {
        let Changes {
            kinds,
            keys,
            values,
        } = changes;
        let rows = kinds.len();
        let keys = self.key_columns(&keys)?;
        let values = (0..self.spec.aggregates.len())
            .map(|j| {
                ScalarValue::iter_to_array(values.iter().map(|v| v[j].clone()))
                    .exec_context(|| format!("collecting {}", self.spec.aggregates[j].name()))
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = self
            .spec
            .output_batch(Results { keys, values, rows }, Windows::None)?;
        let mut columns = batch.columns().to_vec();
        columns.push(Arc::new(arrow::array::Int8Array::from(kinds)));
        RecordBatch::try_new(changelog::with_row_kind(batch.schema_ref()), columns)
            .exec_context(|| "attaching row kinds".to_string())
    }

    /// The key columns of encoded keys.
    fn key_columns(&self, keys: &[Box<[u8]>]) -> Result<Vec<ArrayRef>> {
        if !self.keyed() {
            return Ok(Vec::new());
        }
        let parser = self.converter.parser();
        self.converter
            .convert_rows(keys.iter().map(|k| parser.parse(k)))
            .exec_context(|| "decoding group keys".to_string())
    }
}

/// The processing-time timer that checks whether `group` expired, a `ttl`
/// after its last touch.
fn expiry_timer(group: &Group, ttl: Millis) -> super::timer::Timer {
    super::timer::Timer {
        domain: super::timer::TimeDomain::ProcessingTime,
        time: group.touched.saturating_add(ttl),
        key: Arc::from(&*group.key),
        key_group: group.key_group,
    }
}

impl Operator for GroupAggregateOp {
    fn on_batch(&mut self, _port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        let (data, kinds) = match self.input_updates {
            true => changelog::split(&batch)?,
            false => (batch, None),
        };
        let evaluated = self.spec.evaluate(&data)?;
        let n = evaluated.rows;
        let keys = self.keys_of(&evaluated.keys, n)?;
        let slots = keys
            .iter()
            .map(|k| self.slot_of(k))
            .collect::<Result<Vec<_>>>()?;
        let key_groups = match (self.ttl, self.keyed()) {
            (Some(_), true) => Some(crate::exec::exchange::key_groups_of_rows(&evaluated.keys)?),
            _ => None,
        };
        let retracts = |i: usize| {
            kinds
                .as_ref()
                .is_some_and(|k| changelog::is_retraction_byte(k.value(i)))
        };
        // Each group's rows together, additions before retractions.
        let mut order: Vec<u32> = (0..n as u32).collect();
        // Stable: within a group rows keep their order (FIRST_VALUE, ARRAY_AGG).
        order.sort_by_key(|&i| (slots[i as usize], retracts(i as usize)));
        let indices = UInt32Array::from(order.clone());
        let gather = |a: &ArrayRef| {
            take(a.as_ref(), &indices, None).exec_context(|| "grouping rows".to_string())
        };
        let args = evaluated
            .args
            .iter()
            .map(|args| args.iter().map(gather).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        let filters = evaluated
            .filters
            .iter()
            .map(|f| {
                f.as_ref()
                    .map(|f| gather(&(Arc::new(f.clone()) as ArrayRef)))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let mut touched = Vec::new();
        let mut start = 0;
        while start < n {
            let first = order[start] as usize;
            let (slot, retract) = (slots[first], retracts(first));
            let mut end = start + 1;
            while end < n
                && (slots[order[end] as usize], retracts(order[end] as usize)) == (slot, retract)
            {
                end += 1;
            }
            if touched.last() != Some(&slot) {
                touched.push(slot);
                if let Some(groups) = &key_groups
                    && let Some(group) = self.slots[slot].as_mut()
                {
                    group.key_group = groups[first];
                }
            }
            let group = self.slots[slot]
                .as_mut()
                .ok_or_else(|| SluiceError::Runtime("a group's slot is empty".into()))?;
            let len = end - start;
            // Rows taken back that the group does not hold (its state
            // expired, or the input is not a changelog of one stream) are
            // ignored, as Flink ignores a retraction that finds no state.
            if retract && len as i64 > group.rows {
                tracing::warn!(
                    rows = len,
                    held = group.rows,
                    "an updating input takes back more rows of a group than it holds; ignoring them"
                );
                start = end;
                continue;
            }
            group.rows += if retract { -(len as i64) } else { len as i64 };
            for (j, accumulator) in group.accumulators.iter_mut().enumerate() {
                let mut values: Vec<ArrayRef> =
                    args[j].iter().map(|a| a.slice(start, len)).collect();
                if let Some(mask) = &filters[j] {
                    let mask = mask.slice(start, len);
                    let mask = mask.as_boolean();
                    values = values
                        .iter()
                        .map(|v| filter(v.as_ref(), mask))
                        .collect::<Result<_, _>>()
                        .exec_context(|| "applying an aggregate's FILTER".to_string())?;
                }
                let non_null = values
                    .first()
                    .map_or(0, |v| (v.len() - v.logical_null_count()) as i64);
                if retract && non_null > group.held[j] {
                    tracing::warn!(
                        aggregate = self.spec.aggregates[j].name(),
                        values = non_null,
                        held = group.held[j],
                        "an updating input takes back values an aggregate does not hold; ignoring them"
                    );
                    continue;
                }
                group.held[j] += if retract { -non_null } else { non_null };
                let applied = match retract {
                    true => accumulator.retract_batch(&values),
                    false => accumulator.update_batch(&values),
                };
                applied
                    .exec_context(|| format!("accumulating {}", self.spec.aggregates[j].name()))?;
            }
            start = end;
        }
        self.send_changes(&touched, out)?;
        self.touch(&touched, out);
        Ok(())
    }

    /// A group's expiry timer: the group is forgotten if no row touched it
    /// since; else the next check is set at its new expiry.
    fn on_timer(&mut self, timer: &super::timer::Timer, out: &mut Output) -> Result<()> {
        // A timer restored from a run with a TTL, in one without, is moot.
        let Some(ttl) = self.ttl else {
            return Ok(());
        };
        let Some(&slot) = self.index.get(&*timer.key) else {
            return Ok(());
        };
        let Some(group) = self.slots[slot].as_mut() else {
            return Ok(());
        };
        if group.touched.saturating_add(ttl) <= timer.time {
            self.remove(slot);
        } else {
            out.set_timer(expiry_timer(group, ttl));
        }
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.set_restored_timers(out);
        self.watermark = watermark;
        // As batch SQL has it, an aggregate without keys over an input that
        // ended with no row gives one row (`COUNT(*)` is 0), so that both
        // modes give the same final table. With a TTL the group may have
        // expired instead: then nothing is sent.
        if watermark == END_OF_TIME
            && !self.keyed()
            && self.index.is_empty()
            && self.ttl.is_none()
            && !self.ended_empty
        {
            self.ended_empty = true;
            let results = self.spec.results_of_nothing()?;
            let batch = self.spec.output_batch(results, Windows::None)?;
            out.batch(changelog::as_inserts(&batch)?);
        }
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let groups: Vec<&mut Group> = self.slots.iter_mut().flatten().collect();
        if groups.is_empty() {
            return Ok(Some(OperatorState {
                tables: Vec::new(),
                watermark: self.watermark,
            }));
        }
        let key_bytes: Vec<Box<[u8]>> = groups.iter().map(|g| g.key.clone()).collect();
        let rows: Vec<i64> = groups.iter().map(|g| g.rows).collect();
        let touched: Vec<i64> = groups.iter().map(|g| g.touched).collect();
        let mut states: Vec<Vec<ScalarValue>> = Vec::new();
        for group in groups {
            let mut state = Vec::new();
            for (j, accumulator) in group.accumulators.iter_mut().enumerate() {
                state.push(ScalarValue::Int64(Some(group.held[j])));
                let taken = accumulator
                    .state()
                    .exec_context(|| "taking an accumulator's state".to_string())?;
                // Some of DataFusion's accumulators give their values away
                // with their state (MEDIAN, STRING_AGG): the group goes on
                // with a fresh one holding what was taken.
                let mut fresh = self.accumulations[j].create(&self.spec.aggregates[j])?;
                let arrays = taken
                    .iter()
                    .map(ScalarValue::to_array)
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|a| fresh.merge_batch(&a))
                    .exec_context(|| "keeping an accumulator's state".to_string());
                arrays?;
                *accumulator = fresh;
                state.extend(taken);
            }
            states.push(state);
        }
        let mut columns = self.key_columns(&key_bytes)?;
        columns.push(Arc::new(Int64Array::from(rows)));
        columns.push(Arc::new(Int64Array::from(touched)));
        let first_state = columns.len();
        for k in 0..self.state_schema.fields().len() - first_state {
            let field = self.state_schema.field(first_state + k);
            let array = ScalarValue::iter_to_array(states.iter().map(|s| s[k].clone()))
                .exec_context(|| format!("collecting state column {}", field.name()))?;
            let array = match array.data_type() == field.data_type() {
                true => array,
                false => cast(&array, field.data_type())
                    .exec_context(|| format!("typing state column {}", field.name()))?,
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.state_schema), columns)
            .exec_context(|| "assembling the groups' state".to_string())?;
        Ok(Some(OperatorState {
            tables: vec![StateTable {
                name: GROUPS.to_string(),
                batches: vec![batch],
                keyed: self.keyed(),
            }],
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        // Timers can only be set with an output: at the next message.
        self.timers_to_set = self.ttl.is_some();
        let key_count = self.spec.keys.len();
        for batch in state.table(GROUPS) {
            let fits = batch.schema().fields().len() == self.state_schema.fields().len()
                && (key_count..key_count + 2)
                    .all(|c| batch.column(c).as_primitive_opt::<Int64Type>().is_some());
            if !fits {
                return Err(SluiceError::Runtime(format!(
                    "a checkpoint's groups ({}) are not what this aggregate keeps ({}): was the job changed?",
                    batch.schema(),
                    self.state_schema
                )));
            }
            let keys: Vec<ArrayRef> = batch.columns()[..key_count].to_vec();
            let batch = state.owned(batch, &keys)?;
            let keys = self.keys_of(&batch.columns()[..key_count], batch.num_rows())?;
            let rows = batch.column(key_count).as_primitive::<Int64Type>().clone();
            let touched = batch
                .column(key_count + 1)
                .as_primitive::<Int64Type>()
                .clone();
            let key_groups = match self.keyed() {
                true => crate::exec::exchange::key_groups_of_rows(&batch.columns()[..key_count])?,
                false => vec![0; batch.num_rows()],
            };
            for (i, key) in keys.iter().enumerate() {
                let slot = self.slot_of(key)?;
                let mut column = key_count + 2;
                let group = self.slots[slot]
                    .as_mut()
                    .ok_or_else(|| SluiceError::Runtime("a group's slot is empty".into()))?;
                group.rows += rows.value(i);
                group.touched = group.touched.max(touched.value(i));
                group.key_group = key_groups[i];
                for (j, (accumulator, &width)) in group
                    .accumulators
                    .iter_mut()
                    .zip(&self.state_widths)
                    .enumerate()
                {
                    let held = batch
                        .column(column)
                        .as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| {
                            SluiceError::Runtime(format!(
                                "a checkpoint's `a{j}_held` column is not BIGINT"
                            ))
                        })?;
                    group.held[j] += held.value(i);
                    column += 1;
                    let states: Vec<ArrayRef> = batch.columns()[column..column + width]
                        .iter()
                        .map(|c| c.slice(i, 1))
                        .collect();
                    accumulator
                        .merge_batch(&states)
                        .exec_context(|| "restoring an accumulator".to_string())?;
                    column += width;
                }
                let sent = group
                    .accumulators
                    .iter_mut()
                    .map(|a| a.evaluate())
                    .collect::<Result<Vec<_>, _>>()
                    .exec_context(|| "evaluating restored aggregates".to_string())?;
                group.sent = Some(sent);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::aggregate::{OutputColumn, key_schema};
    use arrow::array::{Int8Array, StringArray};
    use datafusion::functions_aggregate::{count::count_udaf, min_max::max_udaf, sum::sum_udaf};
    use datafusion::physical_expr::PhysicalExpr;
    use datafusion::physical_expr::aggregate::AggregateExprBuilder;
    use datafusion::physical_expr::expressions::Column;

    /// `SELECT k, SUM(v), MAX(v) FROM input GROUP BY k`, or without `k`.
    fn factory(keyed: bool, input_updates: bool) -> GroupAggregate {
        let aggregates = match keyed {
            true => vec![(sum_udaf(), "s"), (max_udaf(), "m")],
            false => vec![(count_udaf(), "n")],
        };
        factory_of(aggregates, keyed, input_updates)
    }

    /// `SELECT [k,] f(v), ... FROM input [GROUP BY k]`.
    fn factory_of(
        functions: Vec<(Arc<datafusion::logical_expr::AggregateUDF>, &str)>,
        keyed: bool,
        input_updates: bool,
    ) -> GroupAggregate {
        let input = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 1));
        let aggregate = |fun, name: &str| {
            Arc::new(
                AggregateExprBuilder::new(fun, vec![Arc::clone(&v)])
                    .schema(Arc::clone(&input))
                    .alias(name)
                    .build()
                    .expect("aggregate"),
            )
        };
        let aggregates: Vec<_> = functions
            .into_iter()
            .map(|(fun, name)| aggregate(fun, name))
            .collect();
        let keys: Vec<Arc<dyn PhysicalExpr>> = match keyed {
            true => vec![Arc::new(Column::new("k", 0))],
            false => Vec::new(),
        };
        let mut output: Vec<OutputColumn> = (0..keys.len()).map(OutputColumn::Key).collect();
        output.extend((0..aggregates.len()).map(OutputColumn::Aggregate));
        let mut fields: Vec<Field> = Vec::new();
        if keyed {
            fields.push(Field::new("k", DataType::Utf8, true));
        }
        for a in &aggregates {
            fields.push(a.field().as_ref().clone());
        }
        let accumulations = aggregates
            .iter()
            .map(|a| Accumulation::of(a, &input, input_updates).expect("accumulation"))
            .collect();
        let names: Vec<String> = (0..keys.len()).map(|_| "k".to_string()).collect();
        GroupAggregate {
            spec: Arc::new(AggregateSpec {
                key_schema: key_schema(&keys, &names, &input).expect("keys"),
                keys,
                filters: vec![None; aggregates.len()],
                aggregates,
                output,
                output_schema: Arc::new(Schema::new(fields)),
            }),
            accumulations,
            input_updates,
            ttl: None,
        }
    }

    fn context(subtask: usize, parallelism: usize) -> OperatorContext {
        OperatorContext {
            subtask,
            parallelism,
            parameters: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Rows `(kind, key, value)` of an updating input.
    fn changes(rows: &[(RowKind, &str, Option<i64>)]) -> RecordBatch {
        let schema = changelog::with_row_kind(&Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.2))),
                Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.0.byte()))),
            ],
        )
        .expect("batch")
    }

    /// The rows sent, as Flink prints them.
    fn printed(out: &mut Output) -> Vec<String> {
        let mut lines = Vec::new();
        for message in out.drain() {
            let super::super::Message::Data(batch) = message else {
                continue;
            };
            let (data, kinds) = changelog::split(&batch).expect("split");
            let kinds = kinds.expect("row kinds");
            for row in 0..data.num_rows() {
                let values: Vec<String> = data
                    .columns()
                    .iter()
                    .map(|c| {
                        let options =
                            arrow::util::display::FormatOptions::default().with_null("NULL");
                        arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options)
                            .expect("formatter")
                            .value(row)
                            .to_string()
                    })
                    .collect();
                let kind = RowKind::from_byte(kinds.value(row)).expect("kind");
                lines.push(format!("{}[{}]", kind.short(), values.join(", ")));
            }
        }
        lines
    }

    #[test]
    fn a_key_is_inserted_updated_and_deleted_as_its_rows_come_and_go() {
        let mut op = factory(true, true).create(&context(0, 1)).expect("op");
        let mut out = Output::default();
        let batch = changes(&[
            (RowKind::Insert, "a", Some(1)),
            (RowKind::Insert, "b", Some(2)),
            (RowKind::Insert, "a", Some(5)),
        ]);
        op.on_batch(0, batch, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 6, 5]", "+I[b, 2, 2]"]);
        // Taking back a's maximum; b's results do not change.
        let batch = changes(&[
            (RowKind::UpdateBefore, "a", Some(5)),
            (RowKind::Insert, "b", Some(0)),
            (RowKind::UpdateAfter, "a", Some(4)),
        ]);
        op.on_batch(0, batch, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["-U[a, 6, 5]", "+U[a, 5, 4]"]);
        let batch = changes(&[
            (RowKind::Delete, "a", Some(1)),
            (RowKind::Delete, "a", Some(4)),
        ]);
        op.on_batch(0, batch, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["-D[a, 5, 4]"]);
        // A key that comes back is new again.
        op.on_batch(0, changes(&[(RowKind::Insert, "a", None)]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, NULL, NULL]"]);
    }

    #[test]
    fn groups_restore_at_another_parallelism_and_retract_as_before() {
        let factory = factory(true, true);
        let mut op = factory.create(&context(0, 1)).expect("op");
        let mut out = Output::default();
        let keys = ["a", "b", "c", "d", "e", "f"];
        let rows: Vec<(RowKind, &str, Option<i64>)> = keys
            .iter()
            .flat_map(|k| {
                [
                    (RowKind::Insert, *k, Some(3)),
                    (RowKind::Insert, *k, Some(9)),
                ]
            })
            .collect();
        op.on_batch(0, changes(&rows), &mut out).expect("batch");
        out.drain().for_each(drop);
        let state = op.snapshot().expect("snapshot").expect("state");
        let mut restored_keys = Vec::new();
        for subtask in 0..2 {
            let key_groups = crate::exec::exchange::key_groups_of(subtask, 2);
            let mut op = factory.create(&context(subtask, 2)).expect("op");
            op.restore(RestoredState {
                tables: state
                    .tables
                    .iter()
                    .map(|t| (t.name.clone(), t.batches.clone()))
                    .collect(),
                watermark: state.watermark,
                key_groups,
            })
            .expect("restore");
            // Each takes back every key's 9; only its own keys answer, and
            // with the 3 that was kept, which a MAX without counts would
            // not know.
            let retract: Vec<_> = keys
                .iter()
                .map(|k| (RowKind::Delete, *k, Some(9)))
                .collect();
            op.on_batch(0, changes(&retract), &mut out).expect("batch");
            let lines = printed(&mut out);
            for pair in lines.chunks(2) {
                let key = &pair[0][3..4];
                assert_eq!(
                    pair,
                    [format!("-U[{key}, 12, 9]"), format!("+U[{key}, 3, 3]")]
                );
                restored_keys.push(key.to_string());
            }
        }
        restored_keys.sort();
        assert_eq!(restored_keys, keys);
    }

    /// DataFusion's MEDIAN gives its values away with its state: taking a
    /// checkpoint must not make later results forget them.
    #[test]
    fn a_checkpoint_leaves_the_groups_results_as_they_were() {
        let median = datafusion::functions_aggregate::median::median_udaf();
        let mut op = factory_of(vec![(median, "med")], true, false)
            .create(&context(0, 1))
            .expect("op");
        let mut out = Output::default();
        let batch = changes(&[
            (RowKind::Insert, "a", Some(1)),
            (RowKind::Insert, "a", Some(3)),
        ]);
        let (data, _) = changelog::split(&batch).expect("split");
        op.on_batch(0, data, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 2]"]);
        op.snapshot().expect("snapshot");
        let batch = changes(&[(RowKind::Insert, "a", Some(5))]);
        let (data, _) = changelog::split(&batch).expect("split");
        op.on_batch(0, data, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["-U[a, 2]", "+U[a, 3]"]);
    }

    /// A retraction of values a group does not hold (an input that takes
    /// back what it never sent) is ignored, not fed to the accumulators.
    #[test]
    fn values_a_group_does_not_hold_are_not_taken_back() {
        let mut op = factory(true, true).create(&context(0, 1)).expect("op");
        let mut out = Output::default();
        let batch = changes(&[(RowKind::Insert, "a", None), (RowKind::Insert, "a", None)]);
        op.on_batch(0, batch, &mut out).expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, NULL, NULL]"]);
        op.on_batch(0, changes(&[(RowKind::Delete, "a", Some(7))]), &mut out)
            .expect("a retraction of a value never added");
        assert!(printed(&mut out).is_empty(), "nothing changed");
    }

    /// The expiry timers an operator set.
    fn timers(out: &mut Output) -> Vec<crate::ops::timer::Timer> {
        out.drain_timers()
            .filter_map(|c| match c {
                crate::ops::timer::TimerChange::Set(t) => Some(t),
                crate::ops::timer::TimerChange::Cancel(_) => None,
            })
            .collect()
    }

    /// With a TTL a group no row touched for that long is forgotten, with
    /// no retraction: its key starts again with `+I`. A touch in between
    /// moves the expiry, and the timer that finds it moved sets the next.
    #[test]
    fn a_group_left_alone_for_its_ttl_is_forgotten() {
        let mut factory = factory(true, true);
        factory.ttl = Some(60_000);
        let mut op = factory.create(&context(0, 1)).expect("op");
        let mut out = Output::default();
        op.on_batch(0, changes(&[(RowKind::Insert, "a", Some(1))]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 1, 1]"]);
        let first = timers(&mut out);
        assert_eq!(first.len(), 1, "one timer per group");
        std::thread::sleep(std::time::Duration::from_millis(5));
        op.on_batch(0, changes(&[(RowKind::Insert, "a", Some(2))]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["-U[a, 1, 1]", "+U[a, 3, 2]"]);
        assert!(timers(&mut out).is_empty(), "its timer is already set");
        // The first timer fires: the group was touched since, so it stays
        // and the next check is set.
        op.on_timer(&first[0], &mut out).expect("timer");
        let next = timers(&mut out);
        assert_eq!(next.len(), 1);
        assert!(next[0].time > first[0].time);
        // That one finds it untouched: forgotten.
        op.on_timer(&next[0], &mut out).expect("timer");
        assert!(printed(&mut out).is_empty(), "expiry sends nothing");
        op.on_batch(0, changes(&[(RowKind::Insert, "a", Some(7))]), &mut out)
            .expect("batch");
        assert_eq!(printed(&mut out), ["+I[a, 7, 7]"]);
    }

    #[test]
    fn an_aggregate_without_keys_over_no_rows_gives_batch_sqls_one_row() {
        let mut op = factory(false, false).create(&context(0, 1)).expect("op");
        let mut out = Output::default();
        op.on_watermark(1_000, &mut out).expect("watermark");
        assert!(printed(&mut out).is_empty());
        op.on_watermark(END_OF_TIME, &mut out).expect("end");
        assert_eq!(printed(&mut out), ["+I[0]"]);
    }

    #[test]
    fn aggregates_that_cannot_take_rows_back_are_named() {
        let input = Schema::new(vec![Field::new("v", DataType::Utf8, true)]);
        let v: Arc<dyn PhysicalExpr> = Arc::new(Column::new("v", 0));
        let agg = AggregateExprBuilder::new(
            datafusion::functions_aggregate::string_agg::string_agg_udaf(),
            vec![
                Arc::clone(&v),
                Arc::new(datafusion::physical_expr::expressions::Literal::new(
                    ScalarValue::Utf8(Some(",".into())),
                )),
            ],
        )
        .schema(Arc::new(input.clone()))
        .alias("joined")
        .build()
        .expect("aggregate");
        assert_eq!(
            Accumulation::of(&agg, &input, false),
            Ok(Accumulation::Plain)
        );
        let refused = Accumulation::of(&agg, &input, true).expect_err("refused");
        assert!(
            refused.contains("joined over an updating input"),
            "{refused}"
        );
    }
}
