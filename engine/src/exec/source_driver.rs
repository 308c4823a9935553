//! The driver of a source subtask: it reads its splits (in order, paced
//! with the stage's other subtasks, or all at once, as its source says),
//! gates their rows' event times, tracks each split's watermark, and
//! injects checkpoint barriers between batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::physical_expr::PhysicalExpr;
use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use tokio::sync::watch;

use super::StopSignal;
use super::chain::{Chain, processing_timer_due, wall_clock};
use super::checkpoint_link::CheckpointLink;

use crate::checkpoint::CheckpointId;
use crate::checkpoint::protocol;
use crate::connector::{Reading, Split, SplitPosition};
use crate::error::{ExecContext, Result};
use crate::metrics::JobMetrics;
use crate::ops::Message;
use crate::time::{EventTimeGate, Millis, RowtimeWatermark, SplitWatermarks};

/// What a source subtask reads: its splits, and how.
pub struct SourceInput {
    pub splits: Vec<Arc<dyn Split>>,
    pub reading: Reading,
    /// Computed columns: the output columns as expressions over what
    /// the splits yield, and the output schema.
    pub compute: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
    /// The table's watermark expression.
    pub watermark: Option<RowtimeWatermark>,
    pub stop: StopSignal,
    /// Split positions of a restored checkpoint, by split name.
    pub restored: BTreeMap<String, protocol::SplitPosition>,
    /// Keeps the stage's subtasks reading in step, for splits read in
    /// order.
    pub pace: Option<SplitPace>,
    /// Refuses rows whose event time is null or too far ahead, when
    /// the table has a watermark.
    pub gate: Option<Arc<EventTimeGate>>,
}

pub(super) async fn read(
    chain: &mut Chain,
    source: SourceInput,
    metrics: &JobMetrics,
    link: Option<CheckpointLink>,
) -> Result<(Vec<protocol::SplitPosition>, bool)> {
    let SourceInput {
        splits,
        reading,
        compute,
        watermark,
        stop,
        restored,
        pace,
        gate,
    } = source;
    {
        // Times known before reading bound the watermark only if the
        // gate would let their rows in.
        let now = chrono::Utc::now().timestamp_millis();
        let trusted = |time| EventTimeGate::trusted(gate.as_deref(), time, now);
        let mut watermarks =
            SplitWatermarks::new(splits.iter().map(|s| trusted(s.min_event_time())));
        for (i, split) in splits.iter().enumerate() {
            if let Some(w) = first_row_bound(split.as_ref(), watermark.as_ref(), trusted) {
                watermarks.raise_pending(i, w);
            }
            if let Some(w) = restored.get(&split.key()).and_then(|p| p.watermark) {
                watermarks.raise_pending(i, w);
            }
        }
        // A restored source starts where event time was, before any
        // row: operators chained to it judge lateness as they did.
        if !restored.is_empty()
            && let Some(w) = watermarks.advance()
        {
            chain.push(Message::Watermark(w))?;
        }
        let positions = splits
            .iter()
            .map(|s| {
                restored
                    .get(&s.key())
                    .map(|p| SplitPosition(p.position.clone()))
            })
            .collect();
        // Barriers go out for checkpoints after the one the coordinator
        // starts from.
        let injected = link.as_ref().map_or(0, |l| l.start);
        let mut reader = SplitReader {
            restored,
            watermarks,
            // Splits not reopened yet keep their restored positions in
            // the next checkpoints: their rows so far are in its state.
            positions,
            keys: splits.iter().map(|s| s.key()).collect(),
            names: splits.iter().map(|s| s.describe()).collect(),
            gate,
            link,
            injected,
            compute,
            watermark,
            metrics,
        };
        let finished = match reading {
            Reading::InOrder => reader.in_order(chain, splits, pace, &stop).await?,
            Reading::Concurrent { idle_timeout } => {
                reader
                    .concurrently(chain, splits, idle_timeout, &stop)
                    .await?
            }
        };
        // A stopped source sends no final watermark: what has not fired
        // stays unfired.
        if finished && let Some(w) = reader.watermarks.advance() {
            chain.push(Message::Watermark(w))?;
        }
        chain.push(Message::End)?;
        chain.flush().await?;
        Ok((reader.positions(), !finished))
    }
}

/// Keeps the subtasks of a source stage that read splits in order within
/// about a split of each other: a subtask opens its `k`-th split only once
/// every other has opened its `k-1`-th (or has none left).
///
/// Splits are dealt round robin in event-time order, so without this a
/// subtask that reads faster runs ahead in event time, and everything
/// downstream keeps the windows between the slowest and the fastest open:
/// state that grows with the input, not with the keys and windows of the
/// job. Flink's file source gets the same effect by handing splits out as
/// readers ask; dealing them up front keeps each split's checkpointed
/// position with one subtask, and the wait is at most about a split.
pub struct SplitPace {
    /// How many splits each subtask has opened; `usize::MAX` once it has
    /// no more to open (finished, stopped or failed).
    opened: Arc<watch::Sender<Vec<usize>>>,
    changes: watch::Receiver<Vec<usize>>,
    subtask: usize,
}

impl SplitPace {
    /// One pace for each of a stage's `parallelism` subtasks.
    pub fn for_stage(parallelism: usize) -> Vec<Self> {
        let opened = Arc::new(watch::Sender::new(vec![0; parallelism]));
        (0..parallelism)
            .map(|subtask| Self {
                changes: opened.subscribe(),
                opened: Arc::clone(&opened),
                subtask,
            })
            .collect()
    }

    /// Waits until the subtask may open its split `k`.
    async fn turn(&mut self, k: usize) {
        let me = self.subtask;
        let ready =
            |opened: &Vec<usize>| opened.iter().enumerate().all(|(t, &n)| t == me || n >= k);
        if !ready(&self.changes.borrow()) {
            tracing::debug!(
                subtask = me,
                split = k,
                "waiting for the other source subtasks to catch up"
            );
        }
        // The sender lives as long as this pace: waiting cannot fail.
        let _ = self.changes.wait_for(ready).await;
    }

    /// Records that the subtask opened its split `k`.
    fn opened(&self, k: usize) {
        self.opened
            .send_modify(|opened| opened[self.subtask] = opened[self.subtask].max(k + 1));
    }
}

impl Drop for SplitPace {
    fn drop(&mut self) {
        self.opened
            .send_modify(|opened| opened[self.subtask] = usize::MAX);
    }
}

/// What a source subtask keeps while it reads its splits.
struct SplitReader<'a> {
    watermarks: SplitWatermarks,
    /// Where each split has got to (what a checkpoint keeps), and its name.
    positions: Vec<Option<SplitPosition>>,
    keys: Vec<String>,
    /// Each split as messages name it.
    names: Vec<String>,
    gate: Option<Arc<EventTimeGate>>,
    /// Where a restored checkpoint says splits had got to, by name.
    restored: BTreeMap<String, protocol::SplitPosition>,
    link: Option<CheckpointLink>,
    /// The newest barrier this source has sent.
    injected: CheckpointId,
    compute: Option<(Vec<Arc<dyn PhysicalExpr>>, SchemaRef)>,
    /// The table's watermark expression.
    watermark: Option<RowtimeWatermark>,
    metrics: &'a JobMetrics,
}

impl SplitReader<'_> {
    /// Reads the splits one after another; returns false if stopped first.
    async fn in_order(
        &mut self,
        chain: &mut Chain,
        splits: Vec<Arc<dyn Split>>,
        mut pace: Option<SplitPace>,
        stop: &StopSignal,
    ) -> Result<bool> {
        for (i, split) in splits.into_iter().enumerate() {
            if let Some(pace) = pace.as_mut() {
                loop {
                    tokio::select! {
                        biased;
                        () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                        id = next_trigger(self.link.as_mut()) => {
                            self.inject_barriers(chain, id).await?;
                        }
                        () = processing_timer_due(chain.next_processing_timer()) => {
                            chain.fire_processing_timers(wall_clock())?;
                            chain.flush().await?;
                        }
                        () = pace.turn(i) => break,
                    }
                }
                pace.opened(i);
            }
            let mut batches = self.open(i, &split);
            loop {
                let batch = tokio::select! {
                    biased;
                    () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                    id = next_trigger(self.link.as_mut()) => {
                        self.inject_barriers(chain, id).await?;
                        continue;
                    }
                    () = processing_timer_due(chain.next_processing_timer()) => {
                        chain.fire_processing_timers(wall_clock())?;
                        chain.flush().await?;
                        continue;
                    }
                    batch = batches.next() => batch,
                };
                match batch {
                    Some(item) => {
                        let (batch, position) = item?;
                        let before = self.positions[i].replace(position);
                        self.push(chain, i, &split, before, batch).await?;
                    }
                    None => break,
                }
            }
            self.finish_split(chain, i).await?;
        }
        Ok(true)
    }

    /// Reads all splits at once, each with its own watermark; returns false
    /// if stopped first.
    async fn concurrently(
        &mut self,
        chain: &mut Chain,
        splits: Vec<Arc<dyn Split>>,
        idle_timeout: Option<Duration>,
        stop: &StopSignal,
    ) -> Result<bool> {
        let mut last_seen = vec![Instant::now(); splits.len()];
        let streams: Vec<_> = splits
            .iter()
            .enumerate()
            .map(|(i, split)| self.open(i, split))
            .collect();
        // Each split's stream, ending with a `None` that says it finished.
        let mut merged = select_all(streams.into_iter().enumerate().map(|(i, stream)| {
            stream
                .map(move |batch| (i, Some(batch)))
                .chain(futures::stream::once(async move { (i, None) }))
                .boxed()
        }));
        let mut idle_sent = false;
        let mut ticks = idle_timeout.map(|timeout| {
            let mut ticks = tokio::time::interval((timeout / 4).max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            (timeout, ticks)
        });
        loop {
            let tick = async {
                match ticks.as_mut() {
                    Some((_, ticks)) => ticks.tick().await,
                    None => std::future::pending().await,
                }
            };
            // The idle check comes before data, so a split with a backlog
            // cannot keep an empty one from being marked idle.
            tokio::select! {
                biased;
                () = stop.stopped() => return self.stop(chain).await.map(|()| false),
                id = next_trigger(self.link.as_mut()) => self.inject_barriers(chain, id).await?,
                () = processing_timer_due(chain.next_processing_timer()) => {
                    chain.fire_processing_timers(wall_clock())?;
                    chain.flush().await?;
                }
                _ = tick => {
                    let Some((timeout, _)) = ticks.as_ref() else { continue };
                    for (i, seen) in last_seen.iter().enumerate() {
                        if seen.elapsed() >= *timeout && !self.watermarks.is_idle(i) {
                            tracing::debug!(split = i, "split idle; it no longer holds the watermark back");
                            self.watermarks.idle(i);
                        }
                    }
                    if let Some(w) = self.watermarks.advance() {
                        chain.push(Message::Watermark(w))?;
                    }
                    if self.watermarks.all_idle() && !idle_sent {
                        // Let downstream stop waiting for this subtask.
                        chain.push(Message::Idle)?;
                        idle_sent = true;
                    }
                    chain.flush().await?;
                }
                next = merged.next() => match next {
                    Some((i, Some(item))) => {
                        let (batch, position) = item?;
                        let before = self.positions[i].replace(position);
                        last_seen[i] = Instant::now();
                        self.watermarks.resume(i);
                        idle_sent = false;
                        self.push(chain, i, &splits[i], before, batch).await?;
                    }
                    Some((i, None)) => self.finish_split(chain, i).await?,
                    None => return Ok(true),
                },
            }
        }
    }

    /// Stops reading. With checkpoints, first sends the barrier of the
    /// last checkpoint, which the coordinator triggers when the job is
    /// stopped: it covers everything read, so a restart from it neither
    /// skips nor repeats a row.
    async fn stop(&mut self, chain: &mut Chain) -> Result<()> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        let last = match link.triggers.wait_for(|t| t.last).await {
            Ok(trigger) => trigger.id,
            // No coordinator: no checkpoint to finish.
            Err(_) => return Ok(()),
        };
        self.inject_barriers(chain, last).await
    }

    /// Sends every barrier up to `id` not sent yet (a trigger may have
    /// been missed), then tells the coordinator where the splits are.
    async fn inject_barriers(&mut self, chain: &mut Chain, id: CheckpointId) -> Result<()> {
        while self.injected < id {
            self.injected += 1;
            chain.push(Message::Barrier(self.injected))?;
            chain.flush().await?;
            if let Some(link) = &self.link {
                link.acknowledge(chain, self.injected, self.positions())
                    .await?;
            }
        }
        Ok(())
    }

    /// Where the splits opened so far have got to, by split key.
    fn positions(&self) -> Vec<protocol::SplitPosition> {
        self.positions
            .iter()
            .zip(&self.keys)
            .enumerate()
            .filter_map(|(i, (position, split))| {
                position.as_ref().map(|p| protocol::SplitPosition {
                    split: split.clone(),
                    position: p.0.clone(),
                    watermark: Some(self.watermarks.split_watermark(i)),
                })
            })
            .collect()
    }

    /// Starts split `i`: at its restored position, if it has one (with its
    /// watermark), else at its beginning.
    fn open(
        &mut self,
        i: usize,
        split: &Arc<dyn Split>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        self.watermarks.start(i);
        match self.restored.get(&self.keys[i]) {
            Some(restored) => {
                let position = SplitPosition(restored.position.clone());
                self.positions[i] = Some(position.clone());
                Arc::clone(split).open_at(Some(position))
            }
            None => {
                self.positions[i] = Some(split.start_position());
                Arc::clone(split).open_at(None)
            }
        }
    }

    /// Sends on a batch of split `split` (`source`), read from position
    /// `before` on to the split's current one.
    async fn push(
        &mut self,
        chain: &mut Chain,
        split: usize,
        source: &Arc<dyn Split>,
        before: Option<SplitPosition>,
        batch: RecordBatch,
    ) -> Result<()> {
        JobMetrics::add(&self.metrics.rows_in, batch.num_rows() as u64);
        chain.counts.rows_in += batch.num_rows() as u64;
        let batch = match &self.compute {
            Some((exprs, schema)) => computed_columns(&batch, exprs, schema)?,
            None => batch,
        };
        match &self.watermark {
            Some(watermark) => {
                let times = watermark.times(&batch)?;
                let (batch, times) = match &self.gate {
                    Some(gate) => {
                        let rows = batch.num_rows();
                        let admitted = match gate.admit(
                            batch,
                            times,
                            &self.names[split],
                            chrono::Utc::now().timestamp_millis(),
                            self.metrics,
                        )? {
                            Ok(admitted) => admitted,
                            Err(refused) => {
                                let start = source.start_position();
                                let before = before.unwrap_or(start);
                                let after = self.positions[split]
                                    .clone()
                                    .unwrap_or_else(|| before.clone());
                                let at =
                                    source.locate_row(&before, &after, rows, refused.row).await;
                                return Err(gate.refusal(&refused, &at));
                            }
                        };
                        if let (Some((rows, reasons)), Some(out)) =
                            (admitted.refused, gate.dead_letters())
                        {
                            let n = rows.num_rows() as u64;
                            // The same with late rows kept or not.
                            let rows = crate::ops::late_row::without(rows)?;
                            out.send(&self.names[split], rows, reasons).await?;
                            JobMetrics::add(&self.metrics.records_dead_lettered, n);
                        }
                        (admitted.batch, admitted.times)
                    }
                    None => (batch, times),
                };
                push_with_watermarks(chain, &mut self.watermarks, split, batch, &times, watermark)?
            }
            None => chain.push(Message::Data(batch))?,
        }
        if let Some(w) = self.watermarks.advance() {
            chain.push(Message::Watermark(w))?;
        }
        chain.flush().await
    }

    async fn finish_split(&mut self, chain: &mut Chain, split: usize) -> Result<()> {
        self.watermarks.finish(split);
        JobMetrics::add(&self.metrics.splits_done, 1);
        if let Some(w) = self.watermarks.advance() {
            chain.push(Message::Watermark(w))?;
            chain.flush().await?;
        }
        Ok(())
    }
}

/// The watermark a split without statistics holds its subtask at until it
/// is opened, when planning read its first row: what that row will propose,
/// and below the row itself (a row at the watermark is late).
fn first_row_bound(
    split: &dyn Split,
    watermark: Option<&RowtimeWatermark>,
    trusted: impl Fn(Option<Millis>) -> Option<Millis>,
) -> Option<Millis> {
    if trusted(split.min_event_time()).is_some() {
        return None;
    }
    let first = trusted(split.first_event_time())?;
    let proposed = watermark?.of_time(first)?;
    Some(proposed.min(first.saturating_sub(1)))
}

/// The next checkpoint the coordinator asks for; never, without one.
async fn next_trigger(link: Option<&mut CheckpointLink>) -> CheckpointId {
    match link {
        Some(link) => match link.triggers.changed().await {
            Ok(()) => link.triggers.borrow_and_update().id,
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Evaluates a table's columns, computed ones included, over what was read.
fn computed_columns(
    batch: &RecordBatch,
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .map(|e| {
            e.evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
        })
        .collect::<datafusion::error::Result<Vec<_>>>()
        .exec_context(|| "computing the table's computed columns".to_string())?;
    RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .exec_context(|| "computing the table's computed columns".to_string())
}

/// Pushes a batch read from split `split`, with watermarks as if one were
/// emitted after every row.
///
/// A watermark is emitted after each batch. Should a row be at or behind
/// the watermark the rows before it in the same batch would have raised
/// (data out of order by more than the watermark allows), the batch is cut
/// there and that watermark emitted first, so the row meets the same
/// watermark whatever the batch size. Data within the watermark's bound is
/// never cut. As in Flink SQL, `WATERMARK FOR ts AS ts` declares strictly
/// ascending times: a row with the same time as an earlier one is behind it.
fn push_with_watermarks(
    chain: &mut Chain,
    watermarks: &mut SplitWatermarks,
    split: usize,
    batch: RecordBatch,
    times: &arrow::array::TimestampMillisecondArray,
    watermark: &RowtimeWatermark,
) -> Result<()> {
    if batch.num_rows() == 0 {
        return Ok(());
    }
    let values = watermark.values(&batch, times)?;
    let mut running = watermarks.split_watermark(split);
    let mut start = 0;
    for row in 0..batch.num_rows() {
        // Cheap test first: only a row behind its split's running watermark
        // may need one emitted before it.
        if row > start && times.is_valid(row) && times.value(row) <= running && {
            let would_emit = watermarks.current_with(split, running);
            would_emit > watermarks.emitted() && times.value(row) <= would_emit
        } {
            chain.push(Message::Data(batch.slice(start, row - start)))?;
            watermarks.observe(split, running);
            if let Some(w) = watermarks.advance() {
                chain.push(Message::Watermark(w))?;
            }
            start = row;
        }
        if values.is_valid(row) {
            running = running.max(values.value(row));
        }
    }
    chain.push(Message::Data(batch.slice(start, batch.num_rows() - start)))?;
    watermarks.observe(split, running);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// A subtask opens its split `k` only once every other has opened its
    /// split `k - 1`, and one that has gone holds nobody back.
    #[tokio::test]
    async fn paced_subtasks_open_splits_in_step() {
        let mut paces = SplitPace::for_stage(3);
        let mut third = paces.pop().expect("three");
        let mut second = paces.pop().expect("three");
        let mut first = paces.pop().expect("three");
        first
            .turn(0)
            .now_or_never()
            .expect("the first split is free");
        first.opened(0);
        assert!(
            first.turn(1).now_or_never().is_none(),
            "the others have not started"
        );
        second.turn(0).now_or_never().expect("free");
        second.opened(0);
        assert!(
            first.turn(1).now_or_never().is_none(),
            "the third has not started"
        );
        third.turn(0).now_or_never().expect("free");
        third.opened(0);
        first
            .turn(1)
            .now_or_never()
            .expect("everyone has opened split 0");
        first.opened(1);
        assert!(
            first.turn(2).now_or_never().is_none(),
            "split 1 waits for the others"
        );
        // One waiting wakes when the last of the others catches up.
        let waiting = tokio::spawn(async move {
            first.turn(2).await;
            first
        });
        second
            .turn(1)
            .now_or_never()
            .expect("first is ahead; third opened 0");
        second.opened(1);
        drop(third);
        let first = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("joined");
        assert!(
            first.changes.borrow()[2] == usize::MAX,
            "a subtask gone holds nobody back"
        );
        assert!(
            second.turn(7).now_or_never().is_none(),
            "first has opened only 2"
        );
    }

    #[derive(Debug)]
    struct Planned {
        min: Option<Millis>,
        first: Option<Millis>,
    }

    impl Split for Planned {
        fn describe(&self) -> String {
            "planned".into()
        }
        fn min_event_time(&self) -> Option<Millis> {
            self.min
        }
        fn first_event_time(&self) -> Option<Millis> {
            self.first
        }
        fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
            futures::stream::empty().boxed()
        }
    }

    /// A split known only by its first row holds the watermark where that
    /// row will put it, and below the row; statistics, when there, decide.
    #[test]
    fn first_rows_bound_the_watermark_where_they_will_put_it() {
        use arrow::datatypes::{DataType, Field, IntervalDayTime, Schema, TimeUnit};
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::Operator;
        use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
        let schema = Schema::new(vec![Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        )]);
        let ts: Arc<dyn PhysicalExpr> = Arc::new(Column::new("ts", 0));
        let minus = |ms: i32| -> Arc<dyn PhysicalExpr> {
            Arc::new(BinaryExpr::new(
                Arc::clone(&ts),
                Operator::Minus,
                Arc::new(Literal::new(ScalarValue::IntervalDayTime(Some(
                    IntervalDayTime::new(0, ms),
                )))),
            ))
        };
        let plus: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::clone(&ts),
            Operator::Plus,
            Arc::new(Literal::new(ScalarValue::IntervalDayTime(Some(
                IntervalDayTime::new(0, 5),
            )))),
        ));
        let bound = |min, first, expr: Option<Arc<dyn PhysicalExpr>>| {
            let watermark = expr.map(|e| RowtimeWatermark::new(e, 0, &schema));
            first_row_bound(&Planned { min, first }, watermark.as_ref(), |t| t)
        };
        assert_eq!(bound(None, Some(10_000), Some(minus(2_000))), Some(8_000));
        assert_eq!(
            bound(None, Some(10_000), Some(Arc::clone(&ts))),
            Some(9_999)
        );
        assert_eq!(bound(Some(9_000), Some(10_000), Some(minus(2_000))), None);
        assert_eq!(bound(None, None, Some(minus(2_000))), None);
        assert_eq!(bound(None, Some(10_000), None), None);
        assert_eq!(
            bound(None, Some(10_000), Some(plus)),
            None,
            "not a fixed delay"
        );
    }
}
