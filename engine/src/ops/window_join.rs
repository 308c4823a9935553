//! The window join: two windowed inputs joined within each window, Flink's
//! window join.
//!
//! Both inputs carry the bounds of windows of one kind (a window TVF's
//! `window_start` and `window_end`, or a window aggregate's), and the join
//! condition equates them along with any keys. A row is kept with the
//! other rows of its window until the watermark passes the window's end;
//! then the window's rows of both sides are joined on the keys and the
//! residual condition, the rows of a preserved side that joined nothing
//! are padded with NULLs (LEFT, RIGHT, FULL), and the window's rows are
//! dropped. Every result is final: the output is insert-only, in both
//! modes, and its windows' bounds stay bounds a window after it can use.
//! A row whose window has already fired is late: it is set aside with the
//! other late rows. A semi join (`IN`, `EXISTS`) sends the rows of its
//! side that meet a row of the other in their window, once each; an anti
//! join (`NOT IN`, `NOT EXISTS`) those that meet none.
//!
//! The inputs are hash-partitioned by the keys and the window's end, so all
//! rows of a window and key meet in one subtask. State: each side's rows
//! not yet fired, one keyed table per side (`left`, `right`), restored at
//! any parallelism by the same hash.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::aggregate::event_times;
use super::join::JoinKind;
use super::{
    ColumnOrigin, Operator, OperatorContext, OperatorFactory, OperatorState, Output, Port,
    RestoredState, StateTable,
};
use crate::error::{ExecContext, Result, SluiceError};
use crate::time::{BEFORE_TIME, Millis, WindowKind};

/// The names of the sides' state tables.
const SIDES: [&str; 2] = ["left", "right"];

/// What a window join sends of the rows that meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowJoinKind {
    /// Joined rows, padded as the join kind says.
    Join(JoinKind),
    /// The rows of one side (0 the left, 1 the right) that meet a row of
    /// the other.
    Semi(Port),
    /// The rows of one side that meet none.
    Anti(Port),
}

/// Makes [`WindowJoin`] instances.
#[derive(Debug)]
pub struct WindowJoin {
    pub kind: WindowJoinKind,
    pub window: WindowKind,
    /// The equality keys besides the window's bounds, over each side.
    pub keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// What each side is hash-partitioned by: its keys and window end.
    pub partitioning: [Vec<Arc<dyn PhysicalExpr>>; 2],
    /// Each side's `window_end` column.
    pub ends: [usize; 2],
    /// The rest of `ON`, over the joined row.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    pub nulls_equal: bool,
    pub schemas: [SchemaRef; 2],
    /// The joined rows: the left's columns, then the right's (one side's
    /// for a semi or anti join).
    pub schema: SchemaRef,
    /// Each side's column carrying its rows as their source read them
    /// ([`crate::ops::late_row`]), never kept. Late rows are written as
    /// them for tumbling windows, where a row is in one window; a row of
    /// hopping or cumulating windows can be late for one window and join
    /// in another, so its late copies keep the columns the join reads,
    /// window bounds among them.
    pub carried: [Option<usize>; 2],
}

impl OperatorFactory for WindowJoin {
    fn name(&self) -> &str {
        match self.kind {
            WindowJoinKind::Join(JoinKind::Inner) => "WindowJoin",
            WindowJoinKind::Join(JoinKind::Left) => "WindowLeftJoin",
            WindowJoinKind::Join(JoinKind::Right) => "WindowRightJoin",
            WindowJoinKind::Join(JoinKind::Full) => "WindowFullJoin",
            WindowJoinKind::Semi(0) => "WindowLeftSemiJoin",
            WindowJoinKind::Semi(_) => "WindowRightSemiJoin",
            WindowJoinKind::Anti(0) => "WindowLeftAntiJoin",
            WindowJoinKind::Anti(_) => "WindowRightAntiJoin",
        }
    }

    fn describe(&self) -> String {
        use crate::plan::sql_text::expr;
        let mut on: Vec<String> = self.keys[0]
            .iter()
            .zip(&self.keys[1])
            .map(|(l, r)| format!("{} = {}", expr(l.as_ref()), expr(r.as_ref())))
            .collect();
        if let Some(filter) = &self.filter {
            on.push(expr(filter.as_ref()));
        }
        let on = match on.is_empty() {
            true => String::new(),
            false => format!(" on {}", on.join(" and ")),
        };
        format!("{}{on}", crate::sql::window_tvf::describe(&self.window))
    }

    fn fingerprint(&self) -> String {
        format!(
            "{} {:?} keys {:?} {:?} ends {:?} filter {:?} nulls_equal {}",
            self.name(),
            self.window,
            self.keys[0],
            self.keys[1],
            self.ends,
            self.filter,
            self.nulls_equal
        )
    }

    fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
        let fields = self.keys[0]
            .iter()
            .map(|k| {
                k.data_type(&self.schemas[0])
                    .map(SortField::new)
                    .exec_context(|| "typing the join keys".to_string())
            })
            .collect::<Result<Vec<_>>>()?;
        let converter =
            RowConverter::new(fields).exec_context(|| "encoding the join keys".to_string())?;
        let pairs_schema = Arc::new(arrow::datatypes::Schema::new(
            self.schemas[0]
                .fields()
                .iter()
                .chain(self.schemas[1].fields())
                .cloned()
                .collect::<Vec<_>>(),
        ));
        Ok(Box::new(WindowJoinOp {
            pairs_schema,
            plan: WindowJoinPlan {
                kind: self.kind,
                keys: self.keys.clone(),
                partitioning: self.partitioning.clone(),
                ends: self.ends,
                filter: self.filter.clone(),
                nulls_equal: self.nulls_equal,
                schemas: self.schemas.clone(),
                schema: Arc::clone(&self.schema),
                carried: self.carried,
                window: self.window,
            },
            converter,
            windows: [BTreeMap::new(), BTreeMap::new()],
            watermark: BEFORE_TIME,
        }))
    }

    /// The left's columns, then the right's (or one side's), unchanged:
    /// the windows' bounds among them are still bounds, except on a side
    /// an outer join pads with NULLs.
    fn column_origin(&self, column: usize) -> ColumnOrigin {
        let kind = match self.kind {
            // One side's columns.
            WindowJoinKind::Semi(port) | WindowJoinKind::Anti(port) => {
                return ColumnOrigin::Input { port, column };
            }
            WindowJoinKind::Join(kind) => kind,
        };
        let (port, column) = match column.checked_sub(self.schemas[0].fields().len()) {
            None => (0, column),
            Some(column) => (1, column),
        };
        // A side is padded where the other is preserved.
        match kind.preserves(1 - port) {
            true => ColumnOrigin::Computed,
            false => ColumnOrigin::Input { port, column },
        }
    }

    /// Its rows are sent when their window closes, later than their own
    /// times: a window over them is refused, as after a regular join.
    fn keeps_event_time(&self) -> bool {
        false
    }
}

/// What an instance needs of its factory.
struct WindowJoinPlan {
    kind: WindowJoinKind,
    keys: [Vec<Arc<dyn PhysicalExpr>>; 2],
    partitioning: [Vec<Arc<dyn PhysicalExpr>>; 2],
    ends: [usize; 2],
    filter: Option<Arc<dyn PhysicalExpr>>,
    nulls_equal: bool,
    schemas: [SchemaRef; 2],
    schema: SchemaRef,
    carried: [Option<usize>; 2],
    window: WindowKind,
}

struct WindowJoinOp {
    plan: WindowJoinPlan,
    /// Pairs of rows that meet: the left's columns, then the right's, as
    /// the condition reads them.
    pairs_schema: SchemaRef,
    converter: RowConverter,
    /// Per side, the rows of each window not yet fired, by window end.
    windows: [BTreeMap<Millis, Vec<RecordBatch>>; 2],
    watermark: Millis,
}

/// Whether the window ending at `end` has fired at `watermark`.
fn fired(end: Millis, watermark: Millis) -> bool {
    end.saturating_sub(1) <= watermark
}

impl WindowJoinOp {
    /// Keeps the rows of `batch` (of side `port`) with their windows; gives
    /// back those whose window has fired.
    fn keep(&mut self, port: Port, batch: &RecordBatch) -> Result<Vec<u32>> {
        let ends = event_times(batch.column(self.plan.ends[port]))?;
        let mut by_end: BTreeMap<Millis, Vec<u32>> = BTreeMap::new();
        let mut late = Vec::new();
        for (row, end) in ends.iter().enumerate() {
            match end {
                Some(end) if !fired(end, self.watermark) => {
                    by_end.entry(end).or_default().push(row as u32)
                }
                _ => late.push(row as u32),
            }
        }
        for (end, rows) in by_end {
            let rows = match rows.len() == batch.num_rows() {
                true => batch.clone(),
                false => take_rows(batch, &UInt32Array::from(rows))?,
            };
            self.windows[port].entry(end).or_default().push(rows);
        }
        Ok(late)
    }

    /// Encoded keys of `batch` (side `port`), `None` for a row whose key
    /// has a NULL (it matches nothing unless NULLs are equal).
    fn keys_of(&self, port: Port, batch: &RecordBatch) -> Result<Vec<Option<Box<[u8]>>>> {
        // Without keys, every row of a window meets every other.
        if self.plan.keys[port].is_empty() {
            return Ok(vec![Some(Box::default()); batch.num_rows()]);
        }
        let keys = self.plan.keys[port]
            .iter()
            .map(|k| {
                k.evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .exec_context(|| "evaluating the join keys".to_string())?;
        let rows = self
            .converter
            .convert_columns(&keys)
            .exec_context(|| "encoding the join keys".to_string())?;
        Ok((0..batch.num_rows())
            .map(|i| {
                let null = !self.plan.nulls_equal && keys.iter().any(|k| k.is_null(i));
                (!null).then(|| rows.row(i).as_ref().into())
            })
            .collect())
    }

    /// The joined rows of one window's sides.
    fn join_window(&self, sides: [Vec<RecordBatch>; 2]) -> Result<Option<RecordBatch>> {
        let [left, right] = sides;
        let left = concat_batches(&self.plan.schemas[0], &left)
            .exec_context(|| "gathering a window's left rows".to_string())?;
        let right = concat_batches(&self.plan.schemas[1], &right)
            .exec_context(|| "gathering a window's right rows".to_string())?;
        let mut pairs: (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
        if left.num_rows() > 0 && right.num_rows() > 0 {
            let right_keys = self.keys_of(1, &right)?;
            let mut by_key: HashMap<&[u8], Vec<u32>> = HashMap::new();
            for (r, key) in right_keys.iter().enumerate() {
                if let Some(key) = key {
                    by_key.entry(key).or_default().push(r as u32);
                }
            }
            for (l, key) in self.keys_of(0, &left)?.iter().enumerate() {
                let Some(matches) = key.as_deref().and_then(|k| by_key.get(k)) else {
                    continue;
                };
                pairs.0.extend(std::iter::repeat_n(l as u32, matches.len()));
                pairs.1.extend(matches);
            }
        }
        let (left_rows, right_rows) = (
            UInt32Array::from(pairs.0.clone()),
            UInt32Array::from(pairs.1.clone()),
        );
        let joined = self.assemble(&left, &right, &left_rows, &right_rows, &self.pairs_schema)?;
        let joined = match &self.plan.filter {
            None => joined,
            Some(filter) => {
                let keep = filter
                    .evaluate(&joined)
                    .and_then(|v| v.into_array(joined.num_rows()))
                    .exec_context(|| "evaluating the join condition".to_string())?;
                let keep = keep
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| {
                        SluiceError::Runtime("the join condition is not a boolean".to_string())
                    })?;
                // NULL is not true: the pair does not join.
                let keep = match keep.null_count() {
                    0 => keep.clone(),
                    _ => arrow::compute::prep_null_mask_filter(keep),
                };
                let mut kept = (Vec::new(), Vec::new());
                for (i, k) in keep.values().iter().enumerate() {
                    if k {
                        kept.0.push(pairs.0[i]);
                        kept.1.push(pairs.1[i]);
                    }
                }
                pairs = kept;
                filter_record_batch(&joined, &keep)
                    .exec_context(|| "keeping the rows that join".to_string())?
            }
        };
        // Which rows of each side met a row of the other.
        let met = |rows: usize, matched: &[u32]| -> Vec<bool> {
            let mut hit = vec![false; rows];
            for &m in matched {
                hit[m as usize] = true;
            }
            hit
        };
        let rows_where = |hit: &[bool], wanted: bool| -> UInt32Array {
            (0..hit.len() as u32)
                .filter(|&r| hit[r as usize] == wanted)
                .collect()
        };
        let sides = [&left, &right];
        let (kind, parts) = match self.plan.kind {
            WindowJoinKind::Semi(port) | WindowJoinKind::Anti(port) => {
                let side = sides[port];
                let matched = match port {
                    0 => &pairs.0,
                    _ => &pairs.1,
                };
                let hit = met(side.num_rows(), matched);
                let wanted = matches!(self.plan.kind, WindowJoinKind::Semi(_));
                let rows = take_rows(side, &rows_where(&hit, wanted))?;
                let rows =
                    RecordBatch::try_new(Arc::clone(&self.plan.schema), rows.columns().to_vec())
                        .exec_context(|| "sending a window's rows".to_string())?;
                return Ok((rows.num_rows() > 0).then_some(rows));
            }
            WindowJoinKind::Join(kind) => (kind, vec![joined]),
        };
        // The rows of a preserved side that joined nothing, padded.
        let mut parts = parts;
        if matches!(kind, JoinKind::Left | JoinKind::Full) {
            let alone = rows_where(&met(left.num_rows(), &pairs.0), false);
            let nulls = UInt32Array::new_null(alone.len());
            parts.push(self.assemble(&left, &right, &alone, &nulls, &self.plan.schema)?);
        }
        if matches!(kind, JoinKind::Right | JoinKind::Full) {
            let alone = rows_where(&met(right.num_rows(), &pairs.1), false);
            let nulls = UInt32Array::new_null(alone.len());
            parts.push(self.assemble(&left, &right, &nulls, &alone, &self.plan.schema)?);
        }
        let rows = concat_batches(&self.plan.schema, &parts)
            .exec_context(|| "gathering a window's joined rows".to_string())?;
        Ok((rows.num_rows() > 0).then_some(rows))
    }

    /// Joined rows of `schema`: the left's rows at `left_rows` beside the
    /// right's at `right_rows` (a null index: NULLs).
    fn assemble(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
        left_rows: &UInt32Array,
        right_rows: &UInt32Array,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let columns = left
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), left_rows, None))
            .chain(
                right
                    .columns()
                    .iter()
                    .map(|c| take(c.as_ref(), right_rows, None)),
            )
            .collect::<Result<Vec<ArrayRef>, _>>()
            .exec_context(|| "assembling joined rows".to_string())?;
        RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(left_rows.len())),
        )
        .exec_context(|| "assembling joined rows".to_string())
    }
}

fn take_rows(batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch> {
    arrow::compute::take_record_batch(batch, rows)
        .exec_context(|| "keeping a window's rows".to_string())
}

impl Operator for WindowJoinOp {
    fn on_batch(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if port > 1 {
            return Err(SluiceError::Runtime(format!(
                "a window join has two inputs, not a port {port}"
            )));
        }
        let carried = self.plan.carried[port];
        let rows = match carried {
            Some(row) => batch
                .project(&(0..row).collect::<Vec<_>>())
                .exec_context(|| "setting carried rows aside".to_string())?,
            None => batch.clone(),
        };
        let late = self.keep(port, &rows)?;
        if !late.is_empty() {
            let late = UInt32Array::from(late);
            match self.plan.window {
                WindowKind::Tumble { .. } => out.late(crate::ops::late_row::as_written(
                    take_rows(&batch, &late)?,
                    carried,
                )?),
                _ => out.late(take_rows(&rows, &late)?),
            }
        }
        Ok(())
    }

    /// Joins every window the watermark passed, in order of their ends.
    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        self.watermark = self.watermark.max(watermark);
        let mut ends: Vec<Millis> = self
            .windows
            .iter()
            .flat_map(|w| w.keys().copied())
            .filter(|&end| fired(end, self.watermark))
            .collect();
        ends.sort_unstable();
        ends.dedup();
        for end in ends {
            let sides = [
                self.windows[0].remove(&end).unwrap_or_default(),
                self.windows[1].remove(&end).unwrap_or_default(),
            ];
            if let Some(rows) = self.join_window(sides)? {
                out.batch(rows);
            }
        }
        out.watermark(watermark);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        let mut tables = Vec::new();
        for (port, name) in SIDES.iter().enumerate() {
            let batches: Vec<RecordBatch> =
                self.windows[port].values().flatten().cloned().collect();
            if !batches.is_empty() {
                tables.push(StateTable {
                    name: name.to_string(),
                    batches,
                    keyed: true,
                });
            }
        }
        Ok(Some(OperatorState {
            tables,
            watermark: self.watermark,
        }))
    }

    fn restore(&mut self, state: RestoredState) -> Result<()> {
        self.watermark = self.watermark.max(state.watermark);
        for (port, name) in SIDES.iter().enumerate() {
            for batch in state.table(name) {
                RestoredState::check_layout("WindowJoin", batch, &self.plan.schemas[port])?;
                let keys = self.plan.partitioning[port]
                    .iter()
                    .map(|k| {
                        k.evaluate(batch)
                            .and_then(|v| v.into_array(batch.num_rows()))
                    })
                    .collect::<Result<Vec<ArrayRef>, _>>()
                    .exec_context(|| "evaluating restored join keys".to_string())?;
                let owned = state.owned(batch, &keys)?;
                // Rows kept before the checkpoint were on time then.
                let watermark = std::mem::replace(&mut self.watermark, BEFORE_TIME);
                let late = self.keep(port, &owned);
                self.watermark = watermark;
                late?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
