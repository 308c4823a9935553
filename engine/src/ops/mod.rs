//! Operators: what runs inside a subtask between its input and its outputs.
//!
//! An operator is driven by messages: record batches, watermarks, and the
//! end of its input. It is synchronous and CPU-only; everything that waits
//! (channels, storage) happens at the edges of a subtask. Stateless
//! operators forward watermarks unchanged; window operators fire when one
//! passes a window's end and forward it after the windows it fired, so their
//! output rows are never behind the watermark that follows them.
//!
//! An operator has one input or several, its **ports**, numbered in the
//! order of the graph's edges into it (a union's inputs, a join's left and
//! right). It is told the port each batch came on and when a port ends. Its
//! watermark is the minimum over all of its inputs, combined by the
//! runtime, so an operator sees one event time whatever its ports; barriers
//! are aligned over every input channel before they reach it.

pub mod aggregate;
pub mod changelog_materialize;
pub mod group_aggregate;
pub mod join;
pub mod join_side;
pub mod kept_rows;
pub mod late_row;
pub mod session;
pub mod stateless;
pub mod timer;
pub mod upsert_materialize;
pub mod upsert_normalize;
pub mod value_counts;
pub mod window_aggregate;
pub mod window_assign;
pub mod window_join;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::Result;
use crate::metrics::JobMetrics;
use crate::time::Millis;

/// What flows between operators and subtasks.
#[derive(Debug, Clone)]
pub enum Message {
    Data(RecordBatch),
    /// Event time has advanced to here on this channel.
    Watermark(Millis),
    /// Checkpoint barrier: everything before it on this channel belongs to
    /// checkpoint `n`, everything after to the next.
    Barrier(crate::checkpoint::CheckpointId),
    /// This channel is quiet (its source's partitions are idle): it stops
    /// holding back the watermark downstream until its next message.
    Idle,
    /// This input sends nothing more. It says nothing of event time: an
    /// input that reached the end of its data sends the watermark
    /// [`crate::time::END_OF_TIME`] first; a stopped job sends none, so
    /// windows still open stay unfired.
    End,
}

impl Message {
    /// The bytes this message holds, for channel budgets.
    pub fn size(&self) -> usize {
        match self {
            Self::Data(batch) => batch.get_array_memory_size(),
            _ => 64,
        }
    }
}

/// Where an operator puts what it emits, and the timers it sets.
#[derive(Debug, Default)]
pub struct Output {
    messages: Vec<Message>,
    late: Vec<RecordBatch>,
    timers: Vec<timer::TimerChange>,
}

impl Output {
    pub fn batch(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.messages.push(Message::Data(batch));
        }
    }

    pub fn watermark(&mut self, watermark: Millis) {
        self.messages.push(Message::Watermark(watermark));
    }

    /// Sets aside rows that arrived behind the watermark: the subtask counts
    /// them and writes them to the late-data output when the job has one.
    pub fn late(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.late.push(batch);
        }
    }

    /// Asks to be woken at `timer` ([`Operator::on_timer`]).
    pub fn set_timer(&mut self, timer: timer::Timer) {
        self.timers.push(timer::TimerChange::Set(timer));
    }

    /// Withdraws a timer set before; one not set (or fired) is no matter.
    pub fn cancel_timer(&mut self, timer: timer::Timer) {
        self.timers.push(timer::TimerChange::Cancel(timer));
    }

    pub fn drain_timers(&mut self) -> std::vec::Drain<'_, timer::TimerChange> {
        self.timers.drain(..)
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, Message> {
        self.messages.drain(..)
    }

    pub fn drain_late(&mut self) -> std::vec::Drain<'_, RecordBatch> {
        self.late.drain(..)
    }
}

/// What an operator instance knows of where it runs.
#[derive(Debug, Clone)]
pub struct OperatorContext {
    pub subtask: usize,
    pub parallelism: usize,
    /// Job parameters: the job file's `SET` statements and `--set` values.
    pub parameters: Arc<BTreeMap<String, String>>,
    pub metrics: Arc<JobMetrics>,
}

/// An operator's input: 0 for the first (or only) one.
pub type Port = usize;

pub trait Operator: Send {
    /// Called once before the first message, on the subtask's thread.
    fn open(&mut self, _context: &OperatorContext) -> Result<()> {
        Ok(())
    }

    /// Rows that came on input `port`.
    fn on_batch(&mut self, port: Port, batch: RecordBatch, out: &mut Output) -> Result<()>;

    /// Input `port` sends nothing more; others may still. Called before
    /// [`Operator::close`] for every port of a multi-input operator (a
    /// join's side that ended can stop buffering for probes).
    fn on_input_end(&mut self, _port: Port, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        out.watermark(watermark);
        Ok(())
    }

    /// A timer it set is due: an event-time one when its watermark reached
    /// the time (before [`Operator::on_watermark`] of that watermark), a
    /// processing-time one when the wall clock did.
    fn on_timer(&mut self, _timer: &timer::Timer, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// Called once at the end of input (after the final watermark) or at
    /// shutdown: release resources here.
    fn close(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }

    /// The state a checkpoint keeps, taken when a barrier passes (between
    /// two messages); `None` for an operator that keeps none. Taking it
    /// must not change what the operator emits later.
    fn snapshot(&mut self) -> Result<Option<OperatorState>> {
        Ok(None)
    }

    /// Restores what [`Operator::snapshot`] took, before the first message.
    /// Keyed state may come from several earlier subtasks (the parallelism
    /// changed): keep only the rows of the key groups this subtask owns.
    fn restore(&mut self, state: RestoredState) -> Result<()> {
        if !state.is_empty() {
            return Err(crate::SluiceError::Runtime(
                "a checkpoint holds state for an operator that keeps none: was the job changed?"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// An operator's state in a checkpoint: named tables of Arrow rows (a
/// window operator's slices; a join's left and right sides), each written
/// to its own file per subtask and restored by name.
#[derive(Debug, Clone)]
pub struct OperatorState {
    pub tables: Vec<StateTable>,
    /// The operator's watermark when the state was taken.
    pub watermark: Millis,
}

/// One named table of an operator's state: batches of one schema.
#[derive(Debug, Clone)]
pub struct StateTable {
    /// Unique within the operator, of letters, digits, `-` and `_`: its
    /// files are named after it. Names starting with `__` are the
    /// runtime's (timers).
    pub name: String,
    pub batches: Vec<RecordBatch>,
    /// Whether rows belong to keys (routed by a hash exchange), so that a
    /// restore at another parallelism splits them by key group. Other
    /// state (e.g. partial aggregates before an exchange) goes whole to one
    /// subtask.
    pub keyed: bool,
}

/// State handed back to an operator on restore.
#[derive(Debug, Clone)]
pub struct RestoredState {
    /// Each table's batches, from every subtask whose state this one
    /// restores.
    pub tables: BTreeMap<String, Vec<RecordBatch>>,
    /// The lowest watermark among the snapshots restored.
    pub watermark: Millis,
    /// The key groups the restoring subtask owns.
    pub key_groups: std::ops::Range<usize>,
}

/// The name checkpoints gave an operator's one table before tables had
/// names.
const UNNAMED_TABLE: &str = "";

impl RestoredState {
    /// The batches of table `name`. A checkpoint taken before tables had
    /// names holds one unnamed table, which is the operator's only one.
    pub fn table(&self, name: &str) -> &[RecordBatch] {
        self.tables
            .get(name)
            .or_else(|| match self.tables.len() {
                1 => self.tables.get(UNNAMED_TABLE),
                _ => None,
            })
            .map_or(&[], Vec::as_slice)
    }

    /// Whether no table holds a row.
    pub fn is_empty(&self) -> bool {
        self.tables
            .values()
            .flatten()
            .all(|batch| batch.num_rows() == 0)
    }

    /// Checks that a restored batch of an operator's table has the columns
    /// the operator keeps (`expected`, by type and order); the error names
    /// the operator and both layouts.
    pub fn check_layout(operator: &str, batch: &RecordBatch, expected: &SchemaRef) -> Result<()> {
        let fits = batch.num_columns() == expected.fields().len()
            && batch
                .schema()
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| a.data_type() == b.data_type());
        match fits {
            true => Ok(()),
            false => Err(crate::SluiceError::Config(format!(
                "the checkpoint's state of {operator} does not fit the job's: columns {} where the job has {} (was the query changed?)",
                batch.schema(),
                expected
            ))),
        }
    }

    /// The rows of `batch` whose keys (`keys`, evaluated over it) fall in
    /// this subtask's key groups.
    pub fn owned(
        &self,
        batch: &RecordBatch,
        keys: &[arrow::array::ArrayRef],
    ) -> Result<RecordBatch> {
        if keys.is_empty() || self.key_groups == (0..crate::exec::exchange::MAX_PARALLELISM) {
            return Ok(batch.clone());
        }
        let groups = crate::exec::exchange::key_groups_of_rows(keys)?;
        let mask: arrow::array::BooleanArray = groups
            .iter()
            .map(|g| Some(self.key_groups.contains(g)))
            .collect();
        arrow::compute::filter_record_batch(batch, &mask).map_err(|e| {
            crate::SluiceError::Runtime(format!("selecting restored state by key group: {e}"))
        })
    }
}

/// Makes one operator instance per subtask; lives in the job graph.
pub trait OperatorFactory: Send + Sync + Debug {
    /// A short name for the graph, e.g. `Filter` or `WindowAggregate`.
    fn name(&self) -> &str;

    /// The details shown by `sluice explain`, written as SQL.
    fn describe(&self) -> String;

    /// The details a checkpoint's plan fingerprint covers: exact where
    /// [`describe`](Self::describe) is readable (column indices, literal
    /// types), so that two different operators never look alike.
    fn fingerprint(&self) -> String {
        self.describe()
    }

    fn create(&self, context: &OperatorContext) -> Result<Box<dyn Operator>>;

    /// Whether its rows keep their input's event time, for a watermark to
    /// hold. A regular join's do not (a joined row is as old as either of
    /// its rows), so a window over them is refused, as in Flink.
    fn keeps_event_time(&self) -> bool {
        true
    }

    /// Whether it keeps less when one of its two inputs is read to its end
    /// before the other (a regular join): the runtime then reads the
    /// bounded or smaller one first (`exec/input_order.rs`).
    fn prefers_an_input_first(&self) -> bool {
        false
    }

    /// Where its output column `column` comes from, so the planner can
    /// follow a window's bounds through projections and filters to the
    /// window that made them (a window join needs both inputs' windows).
    fn column_origin(&self, _column: usize) -> ColumnOrigin {
        ColumnOrigin::Computed
    }

    /// For an operator whose output updates by key (a GROUP BY's groups,
    /// an upsert source's primary key): the output columns of that key.
    /// Every change of one key value comes from one subtask, in order.
    fn upsert_key(&self) -> Option<Vec<usize>> {
        None
    }
}

/// Where an operator's output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnOrigin {
    /// Column `column` of input `port`, unchanged.
    Input { port: Port, column: usize },
    /// A bound of the windows of this kind, which the operator assigned.
    Window(crate::time::WindowColumn, crate::time::WindowKind),
    /// Anything else.
    Computed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(arrow::array::Int64Array::from_iter_values(
                0..rows,
            ))],
        )
        .expect("batch")
    }

    fn restored(tables: &[(&str, i64)]) -> RestoredState {
        RestoredState {
            tables: tables
                .iter()
                .map(|(name, rows)| (name.to_string(), vec![batch(*rows)]))
                .collect(),
            watermark: 0,
            key_groups: 0..128,
        }
    }

    #[test]
    fn tables_are_found_by_name_and_an_unnamed_one_is_the_only_one() {
        let named = restored(&[("left", 2), ("right", 3)]);
        assert_eq!(named.table("right")[0].num_rows(), 3);
        assert!(named.table("slices").is_empty());
        // A checkpoint from before tables had names.
        let legacy = restored(&[("", 4)]);
        assert_eq!(legacy.table("slices")[0].num_rows(), 4);
        assert!(restored(&[("left", 0)]).is_empty());
        assert!(!legacy.is_empty());
    }
}
