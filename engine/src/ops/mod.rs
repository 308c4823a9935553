//! Operators: what runs inside a subtask between its input and its outputs.
//!
//! An operator is driven by messages: record batches, watermarks, and the
//! end of its input. It is synchronous and CPU-only; everything that waits
//! (channels, storage) happens at the edges of a subtask. Stateless
//! operators forward watermarks unchanged; window operators fire when one
//! passes a window's end and forward it after the windows it fired, so their
//! output rows are never behind the watermark that follows them.

pub mod aggregate;
pub mod session;
pub mod stateless;
pub mod window_aggregate;
pub mod window_assign;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

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

/// Where an operator puts what it emits.
#[derive(Debug, Default)]
pub struct Output {
    messages: Vec<Message>,
    late: Vec<RecordBatch>,
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

pub trait Operator: Send {
    /// Called once before the first message, on the subtask's thread.
    fn open(&mut self, _context: &OperatorContext) -> Result<()> {
        Ok(())
    }

    fn on_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<()>;

    fn on_watermark(&mut self, watermark: Millis, out: &mut Output) -> Result<()> {
        out.watermark(watermark);
        Ok(())
    }

    /// Called once at the end of input (after the final watermark) or at
    /// shutdown: release resources here.
    fn close(&mut self, _out: &mut Output) -> Result<()> {
        Ok(())
    }
}

/// Makes one operator instance per subtask; lives in the job graph.
pub trait OperatorFactory: Send + Sync + Debug {
    /// A short name for the graph, e.g. `Filter` or `WindowAggregate`.
    fn name(&self) -> &str;

    /// The details shown by `sluice explain`.
    fn describe(&self) -> String;

    fn create(&self, context: &OperatorContext) -> Result<Box<dyn Operator>>;
}
