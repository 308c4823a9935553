//! The regular join of two streams on equality keys: INNER, LEFT, RIGHT and
//! FULL OUTER, over inputs that are insert-only or update.
//!
//! A row that comes on either input (port 0 the left, port 1 the right) is
//! joined at once with every row of the other side that has its key and
//! meets the residual condition (the non-equality part of `ON`), then kept
//! for the rows still to come on the other side: Flink's regular join. Both
//! sides are state tables (`left`, `right`), keyed by the join key, which is
//! what the hash exchanges before the join route by ([`Side`]). A row with
//! a NULL key matches nothing, as in SQL, unless the keys are compared with
//! `IS NOT DISTINCT FROM`.
//!
//! An input row that takes one back (`-U`, `-D`) takes back what it joined
//! (`-D` of each joined row) and is forgotten; one that takes back a row
//! never sent is ignored. Joined rows are sent as `+I` and taken back as
//! `-D`, as Flink's outer joins do (its inner join passes on the input's
//! `+U`/`-U`; consumers here treat `-U` and `-D` alike).
//!
//! Outer joins pad a row of a preserved side that joins nothing with NULLs.
//! In stream mode that padded row is sent at once and taken back (`-D`)
//! when the row's first match comes, then sent again when its last match is
//! taken back: the result updates. In batch mode a row waits for the other
//! input to end before it is padded, so the result is final rows only, as
//! a batch outer join's are; a row that comes after the other input ended
//! is padded at once.
//!
//! Once one input has ended, the other's rows are no longer kept (nothing
//! is left for them to meet), so a bounded table joined with an endless
//! stream holds only the table. In stream mode the state grows with both
//! inputs, as Flink's does without `'table.exec.state.ttl'`; with it, a
//! row is forgotten that long after it was kept, without a retraction, as
//! in Flink (one processing-time timer per side and key checks it).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int8Array, RecordBatch, UInt32Array};
use arrow::compute::{interleave, take};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::join_side::{self, RowAt, Side};
use super::{
    Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port, RestoredState,
    StateTable,
};
use crate::changelog::{self, RowKind};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, Millis};

/// Which sides are kept whole, padded with NULLs where they join nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

impl JoinKind {
    /// Whether rows of input `port` that join nothing are sent padded.
    pub fn preserves(self, port: Port) -> bool {
        matches!(
            (self, port),
            (Self::Full, _) | (Self::Left, 0) | (Self::Right, 1)
        )
    }

    /// The operator's name in the graph, as Flink names the join types.
    fn operator_name(self) -> &'static str {
        match self {
            Self::Inner => "InnerJoin",
            Self::Left => "LeftOuterJoin",
            Self::Right => "RightOuterJoin",
            Self::Full => "FullOuterJoin",
        }
    }
}

/// The join in the job graph: its keys on each side, the condition left
/// over, and the schema of the joined rows (left columns, then right; the
/// row kinds last when they update).
#[derive(Debug, Clone)]
pub struct RegularJoin {
    pub kind: JoinKind,
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// `IS NOT DISTINCT FROM`: a NULL key meets a NULL key.
    pub nulls_equal: bool,
    pub left_schema: SchemaRef,
    pub right_schema: SchemaRef,
    pub schema: SchemaRef,
    /// Which inputs carry row kinds.
    pub input_updates: [bool; 2],
    /// Pad rows only once the other input ended (batch mode): then the
    /// result never updates.
    pub pad_at_end: bool,
    /// How long a kept row is kept (`'table.exec.state.ttl'`); `None`:
    /// forever.
    pub ttl: Option<Millis>,
}

impl RegularJoin {
    /// Whether its rows can update: an input does, or an outer join pads
    /// rows before their matches come.
    pub fn updates(kind: JoinKind, input_updates: [bool; 2], pad_at_end: bool) -> bool {
        input_updates.iter().any(|&u| u) || (kind != JoinKind::Inner && !pad_at_end)
    }
}

const SIDES: [&str; 2] = ["left", "right"];

impl OperatorFactory for RegularJoin {
    fn name(&self) -> &str {
        self.kind.operator_name()
    }

    fn describe(&self) -> String {
        let pairs: Vec<String> = self
            .left_keys
            .iter()
            .zip(&self.right_keys)
            .map(|(l, r)| {
                format!(
                    "{} = {}",
                    crate::plan::sql_text::expr(l.as_ref()),
                    crate::plan::sql_text::expr(r.as_ref())
                )
            })
            .collect();
        let ttl = self
            .ttl
            .map(|t| format!(" ttl {}", crate::plan::explain::duration(t)))
            .unwrap_or_default();
        match &self.filter {
            Some(f) => format!(
                "on {} and {}{ttl}",
                pairs.join(" and "),
                crate::plan::sql_text::expr(f.as_ref())
            ),
            None => format!("on {}{ttl}", pairs.join(" and ")),
        }
    }

    fn fingerprint(&self) -> String {
        let keys = |k: &[Arc<dyn PhysicalExpr>]| {
            k.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        // An inner join of insert-only inputs keeps the fingerprint it had
        // before joins had kinds, so that its checkpoints restore.
        let how = match (self.kind, self.input_updates, self.pad_at_end) {
            (JoinKind::Inner, [false, false], _) => String::new(),
            (kind, updates, pad_at_end) => {
                format!(" {kind:?} updates {updates:?} pad at end {pad_at_end}")
            }
        };
        format!(
            "[{}] = [{}] {:?}{how}",
            keys(&self.left_keys),
            keys(&self.right_keys),
            self.filter.as_ref().map(|f| f.to_string())
        )
    }

    fn keeps_event_time(&self) -> bool {
        false
    }

    /// Once an input ended, the other's rows are matched and forgotten.
    fn prefers_an_input_first(&self) -> bool {
        true
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let types = self
            .left_keys
            .iter()
            .map(|k| k.data_type(&self.left_schema))
            .collect::<datafusion::error::Result<Vec<DataType>>>()
            .exec_context(|| "typing the join keys".to_string())?;
        let keys = RowConverter::new(types.into_iter().map(SortField::new).collect())
            .exec_context(|| "encoding join keys".to_string())?;
        let rows = [
            join_side::row_converter(&self.left_schema)?,
            join_side::row_converter(&self.right_schema)?,
        ];
        Ok(Box::new(JoinState {
            plan: self.clone(),
            keys,
            rows,
            sides: [Side::default(), Side::default()],
            ended: [false, false],
            watermark: BEFORE_TIME,
            timed: Default::default(),
            timers_to_set: false,
        }))
    }
}

struct JoinState {
    plan: RegularJoin,
    /// Encodes join keys.
    keys: RowConverter,
    /// Encodes whole rows of each side, to find one taken back.
    rows: [RowConverter; 2],
    sides: [Side; 2],
    /// Which inputs have ended.
    ended: [bool; 2],
    watermark: Millis,
    /// Per side, the keys with an expiry timer set (with a TTL).
    timed: [std::collections::HashSet<Box<[u8]>>; 2],
    /// After a restore: every key needs its expiry timer set again.
    timers_to_set: bool,
}

/// One output row: its kind and where each side's half comes from.
struct Emit {
    kind: RowKind,
    /// The row of the incoming batch, or none (the other side padded).
    incoming: Option<usize>,
    /// The kept row of the other side, or none (the incoming row padded).
    kept: Option<RowAt>,
}

impl JoinState {
    fn keys_of(&self, port: Port, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let exprs = match port {
            0 => &self.plan.left_keys,
            _ => &self.plan.right_keys,
        };
        exprs
            .iter()
            .map(|k| {
                k.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<datafusion::error::Result<_>>()
            .exec_context(|| format!("evaluating the {} join keys", SIDES[port]))
    }

    /// Each row's encoded key, or none when it joins nothing (a NULL key).
    fn encoded_keys(&self, port: Port, batch: &RecordBatch) -> Result<Vec<Option<Box<[u8]>>>> {
        let keys = self.keys_of(port, batch)?;
        let rows = self
            .keys
            .convert_columns(&keys)
            .exec_context(|| "encoding join keys".to_string())?;
        let nulls_equal = self.plan.nulls_equal;
        Ok((0..batch.num_rows())
            .map(|i| {
                let null = !nulls_equal && keys.iter().any(|k| k.is_null(i));
                (!null).then(|| rows.row(i).as_ref().into())
            })
            .collect())
    }

    /// For each incoming row, the kept rows of the other side it joins
    /// (key equal, residual condition true).
    fn partners(
        &self,
        port: Port,
        batch: &RecordBatch,
        keys: &[Option<Box<[u8]>>],
    ) -> Result<Vec<Vec<RowAt>>> {
        let other = &self.sides[1 - port];
        let mut pairs: Vec<(usize, RowAt)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                pairs.extend(other.rows_with(key).map(|at| (i, at)));
            }
        }
        let mut partners = vec![Vec::new(); batch.num_rows()];
        if pairs.is_empty() {
            return Ok(partners);
        }
        let pass = match &self.plan.filter {
            Some(filter) => {
                let emits: Vec<Emit> = pairs
                    .iter()
                    .map(|&(i, at)| Emit {
                        kind: RowKind::Insert,
                        incoming: Some(i),
                        kept: Some(at),
                    })
                    .collect();
                let joined = self.assemble(port, batch, &emits, false)?;
                let mask = filter
                    .evaluate(&joined)
                    .and_then(|v| v.into_array(joined.num_rows()))
                    .exec_context(|| "evaluating the join condition".to_string())?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        SluiceError::Runtime("the join condition is not BOOLEAN".into())
                    })?
                    .clone();
                Some(mask)
            }
            None => None,
        };
        for (k, (i, at)) in pairs.into_iter().enumerate() {
            if pass.as_ref().is_none_or(|m| m.is_valid(k) && m.value(k)) {
                partners[i].push(at);
            }
        }
        Ok(partners)
    }

    /// Joins `batch` (of side `port`) with what the other side holds, then
    /// keeps or forgets its rows.
    fn process(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let (batch, kinds) = match self.plan.input_updates[port] {
            true => changelog::split(&batch)?,
            false => (batch, None),
        };
        let mut keys = self.encoded_keys(port, &batch)?;
        let partners = self.partners(port, &batch, &keys)?;
        let kind = self.plan.kind;
        let (this_padded, other_padded) = (kind.preserves(port), kind.preserves(1 - port));
        // Padding waits for the other input to end, unless it has.
        let pad_now = |ended: bool| !self.plan.pad_at_end || ended;
        let pad_this = this_padded && pad_now(self.ended[1 - port]);
        let pad_other = other_padded && !self.plan.pad_at_end;
        let keep = !self.ended[1 - port];
        let mut emits = Vec::new();
        let mut kept_keys = Vec::with_capacity(batch.num_rows());
        let mut kept_matches = Vec::with_capacity(batch.num_rows());
        for (i, partners) in partners.iter().enumerate() {
            let retract = kinds
                .as_ref()
                .is_some_and(|k| changelog::is_retraction_byte(k.value(i)));
            let (joined, padded) = match retract {
                false => (RowKind::Insert, RowKind::Delete),
                true => (RowKind::Delete, RowKind::Insert),
            };
            // A row taken back is forgotten: kept before, or earlier in this
            // batch. While rows are kept (the other input has not ended),
            // one that was never kept was never sent, and is ignored;
            // unless a TTL may have forgotten it, when what it joined is
            // still taken back, as in Flink.
            if retract && let Some(k) = &keys[i] {
                let found = self.sides[port].take_back(k, &batch, i, &self.rows[port])?
                    || forget_pending(&mut kept_keys, k, &batch, i, &self.rows[port])?;
                if !found && keep && self.plan.ttl.is_none() {
                    tracing::warn!(
                        side = SIDES[port],
                        "a join input takes back a row it never sent; ignoring it"
                    );
                    kept_keys.push(None);
                    kept_matches.push(0);
                    continue;
                }
            }
            for &at in partners {
                // The other side's row stood padded while it joined nothing.
                let before = self.sides[1 - port].matches(at);
                let after = self.sides[1 - port].count_match(at, !retract);
                if pad_other && !retract && before == 0 {
                    emits.push(Emit {
                        kind: padded,
                        incoming: None,
                        kept: Some(at),
                    });
                }
                emits.push(Emit {
                    kind: joined,
                    incoming: Some(i),
                    kept: Some(at),
                });
                if pad_other && retract && after == 0 {
                    emits.push(Emit {
                        kind: padded,
                        incoming: None,
                        kept: Some(at),
                    });
                }
            }
            if partners.is_empty() && (pad_this || (this_padded && keys[i].is_none())) {
                emits.push(Emit {
                    kind: joined,
                    incoming: Some(i),
                    kept: None,
                });
            }
            // Kept: an added row with a key, while rows may still come to
            // meet it. A row taken back is forgotten.
            // (The row's key is not looked at again: it moves.)
            let key = match keep && !retract {
                true => keys[i].take(),
                false => None,
            };
            kept_keys.push(key);
            kept_matches.push(partners.len() as u32);
        }
        if !emits.is_empty() {
            out.batch(self.assemble(port, &batch, &emits, true)?);
        }
        if kept_keys.iter().any(Option::is_some) {
            let now = crate::time::wall_clock();
            if self.plan.ttl.is_some() {
                let groups =
                    crate::exec::exchange::key_groups_of_rows(&self.keys_of(port, &batch)?)?;
                for (key, group) in kept_keys.iter().zip(groups) {
                    if let Some(key) = key {
                        self.expire_later(port, key, group, now, out);
                    }
                }
            }
            let rows = batch.num_rows();
            self.sides[port].keep(batch, kept_keys, kept_matches, vec![now; rows]);
        }
        // Rows taken back are only marked: their memory goes when most of
        // the side is dead.
        if self.sides[port].mostly_dead() {
            self.compact(port)?;
        }
        Ok(())
    }

    /// With a TTL: sets the timer that forgets side `port`'s rows of `key`
    /// kept at or before `kept_at`, unless one is set for the key.
    fn expire_later(
        &mut self,
        port: Port,
        key: &[u8],
        key_group: usize,
        kept_at: Millis,
        out: &mut Output,
    ) {
        let Some(ttl) = self.plan.ttl else {
            return;
        };
        if self.timed[port].insert(key.into()) {
            let mut timer_key = Vec::with_capacity(key.len() + 1);
            timer_key.push(port as u8);
            timer_key.extend_from_slice(key);
            out.set_timer(super::timer::Timer {
                domain: super::timer::TimeDomain::ProcessingTime,
                time: kept_at.saturating_add(ttl),
                key: Arc::from(timer_key),
                key_group,
            });
        }
    }

    /// After a restore: the expiry timers of every key kept.
    fn set_restored_timers(&mut self, out: &mut Output) -> Result<()> {
        if !std::mem::take(&mut self.timers_to_set) {
            return Ok(());
        }
        for port in 0..SIDES.len() {
            let keys: Vec<(Box<[u8]>, Millis)> = self.sides[port]
                .keys()
                .map(|(k, t)| (Box::from(k), t))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let parser = self.keys.parser();
            let arrays = self
                .keys
                .convert_rows(keys.iter().map(|(k, _)| parser.parse(k)))
                .exec_context(|| "decoding join keys".to_string())?;
            let groups = crate::exec::exchange::key_groups_of_rows(&arrays)?;
            for ((key, oldest), group) in keys.iter().zip(groups) {
                self.expire_later(port, key, group, *oldest, out);
            }
        }
        Ok(())
    }

    /// The output rows `emits` describe, left columns first; with the row
    /// kinds when `kinds` and the join's rows update.
    fn assemble(
        &self,
        port: Port,
        batch: &RecordBatch,
        emits: &[Emit],
        kinds: bool,
    ) -> Result<RecordBatch> {
        let fail = |e: arrow::error::ArrowError| SluiceError::Runtime(format!("joining rows: {e}"));
        let other = &self.sides[1 - port];
        let other_schema = match port {
            0 => &self.plan.right_schema,
            _ => &self.plan.left_schema,
        };
        // Padding is row 0 of a batch of NULLs, after the real rows.
        let this: Vec<ArrayRef> = {
            let indices: UInt32Array = emits.iter().map(|e| e.incoming.map(|i| i as u32)).collect();
            batch
                .columns()
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<std::result::Result<_, _>>()
                .map_err(fail)?
        };
        let padding = other.batches.len();
        let indices: Vec<(usize, usize)> = emits
            .iter()
            .map(|e| e.kept.unwrap_or((padding, 0)))
            .collect();
        let mut those = Vec::with_capacity(other_schema.fields().len());
        for (c, field) in other_schema.fields().iter().enumerate() {
            let nulls = arrow::array::new_null_array(field.data_type(), 1);
            let arrays: Vec<&dyn Array> = other
                .batches
                .iter()
                .map(|b| b.column(c).as_ref())
                .chain([nulls.as_ref()])
                .collect();
            those.push(interleave(&arrays, &indices).map_err(fail)?);
        }
        let mut columns: Vec<ArrayRef> = match port {
            0 => this.into_iter().chain(those).collect(),
            _ => those.into_iter().chain(this).collect(),
        };
        let schema = match kinds && self.updates() {
            true => {
                columns.push(Arc::new(Int8Array::from_iter_values(
                    emits.iter().map(|e| e.kind.byte()),
                )));
                changelog::with_row_kind(&self.plan.schema)
            }
            false => Arc::clone(&self.plan.schema),
        };
        RecordBatch::try_new(schema, columns).map_err(fail)
    }

    fn updates(&self) -> bool {
        RegularJoin::updates(
            self.plan.kind,
            self.plan.input_updates,
            self.plan.pad_at_end,
        )
    }

    fn side_schema(&self, port: Port) -> &SchemaRef {
        match port {
            0 => &self.plan.left_schema,
            _ => &self.plan.right_schema,
        }
    }
}

/// Forgets the latest row before `row` of `batch`, still to be kept, that
/// has `key` and equals `row`; whether there was one.
fn forget_pending(
    kept_keys: &mut [Option<Box<[u8]>>],
    key: &[u8],
    batch: &RecordBatch,
    row: usize,
    rows: &RowConverter,
) -> Result<bool> {
    let wanted = join_side::encode_row(rows, batch, row)?;
    for j in (0..row.min(kept_keys.len())).rev() {
        if kept_keys[j].as_deref() == Some(key) && join_side::encode_row(rows, batch, j)? == wanted
        {
            kept_keys[j] = None;
            return Ok(true);
        }
    }
    Ok(false)
}

impl Operator for JoinState {
    fn on_batch(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if port > 1 {
            return Err(SluiceError::Runtime(format!(
                "a join has two inputs, not a port {port}"
            )));
        }
        self.set_restored_timers(out)?;
        self.process(port, batch, out)
    }

    /// A key's expiry timer: its rows kept a TTL ago or earlier are
    /// forgotten, without a retraction (as Flink's state TTL); the next
    /// timer is set for the oldest row left.
    fn on_timer(&mut self, timer: &super::timer::Timer, out: &mut Output) -> Result<()> {
        let (Some(ttl), Some((&side, key))) = (self.plan.ttl, timer.key.split_first()) else {
            return Ok(());
        };
        let port = usize::from(side).min(1);
        self.timed[port].remove(key);
        if let Some(oldest) = self.sides[port].expire(key, timer.time.saturating_sub(ttl)) {
            self.expire_later(port, key, timer.key_group, oldest, out);
        }
        // Forgotten rows are only marked: their memory goes when most of
        // the side is dead.
        if self.sides[port].mostly_dead() {
            self.compact(port)?;
        }
        Ok(())
    }

    fn on_input_end(&mut self, port: Port, out: &mut Output) -> Result<()> {
        let Some(ended) = self.ended.get_mut(port) else {
            return Ok(());
        };
        *ended = true;
        let other = 1 - port;
        // In batch mode the other side's preserved rows that joined nothing
        // are padded now: nothing is left to join them.
        if self.plan.pad_at_end && self.plan.kind.preserves(other) {
            let schema = Arc::clone(self.side_schema(other));
            if let Some(rows) = self.sides[other].snapshot(&schema)? {
                let (rows, state) = join_side::split_matches(&rows)?;
                let alone: BooleanArray = state.matches.iter().map(|&m| Some(m == 0)).collect();
                let alone = arrow::compute::filter_record_batch(&rows, &alone)
                    .exec_context(|| "selecting rows that joined nothing".to_string())?;
                let emits: Vec<Emit> = (0..alone.num_rows())
                    .map(|i| Emit {
                        kind: RowKind::Insert,
                        incoming: Some(i),
                        kept: None,
                    })
                    .collect();
                if !emits.is_empty() {
                    // Padded as if they came now on their own port, with
                    // this side holding nothing.
                    let kept = std::mem::take(&mut self.sides[port]);
                    let padded = self.assemble(other, &alone, &emits, true);
                    self.sides[port] = kept;
                    out.batch(padded?);
                }
            }
        }
        // The other side's rows waited for rows of this one.
        self.sides[other] = Side::default();
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.set_restored_timers(out)?;
        self.watermark = watermark;
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut tables = Vec::with_capacity(SIDES.len());
        for (port, name) in SIDES.iter().enumerate() {
            let schema = Arc::clone(self.side_schema(port));
            let rows = self.sides[port].snapshot(&schema)?;
            // The side, compacted to the one batch the checkpoint keeps.
            self.sides[port] = Side::default();
            if let Some(rows) = &rows {
                self.keep_restored(port, rows)?;
            }
            tables.push(StateTable {
                name: name.to_string(),
                batches: rows.into_iter().collect(),
                keyed: true,
            });
        }
        Ok(Some(OperatorState {
            tables,
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        self.timers_to_set = self.plan.ttl.is_some();
        for (port, name) in SIDES.iter().enumerate() {
            for batch in state.table(name) {
                let (rows, _) = join_side::split_matches(batch)?;
                let keys = self.keys_of(port, &rows)?;
                let owned = state.owned(batch, &keys)?;
                self.keep_restored(port, &owned)?;
            }
        }
        Ok(())
    }
}

impl JoinState {
    /// Side `port`'s live rows in one batch, the dead ones dropped.
    fn compact(&mut self, port: Port) -> Result<()> {
        let schema = Arc::clone(self.side_schema(port));
        let rows = self.sides[port].snapshot(&schema)?;
        self.sides[port] = Side::default();
        match rows {
            Some(rows) => self.keep_restored(port, &rows),
            None => Ok(()),
        }
    }

    /// Keeps rows of a state table (rows and match counts) as side `port`'s.
    fn keep_restored(&mut self, port: Port, table: &RecordBatch) -> Result<()> {
        let (rows, state) = join_side::split_matches(table)?;
        if rows.num_rows() == 0 {
            return Ok(());
        }
        let keys = self.encoded_keys(port, &rows)?;
        // Rows from before joins had a TTL count as kept now.
        let kept_at = state
            .kept_at
            .unwrap_or_else(|| vec![crate::time::wall_clock(); rows.num_rows()]);
        self.sides[port].keep(rows, keys, state.matches, kept_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
