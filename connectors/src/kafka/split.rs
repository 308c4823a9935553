//! A Kafka split: one partition, from a start offset to a stop offset (or
//! forever), and how its records decode.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sluice_engine::connector::{Split, SplitPosition, without_positions};
use sluice_engine::metrics::JobMetrics;
use sluice_engine::{Result, SluiceError};

use super::Properties;
use super::consumer::ConsumerSlot;
use super::decode::{RecordDecoder, RecordFormat};
use super::partition_reader::PartitionReader;
use super::source::BadRecords;
use super::upsert_decode::UpsertDecoder;

/// One partition, from a start offset to a stop offset (or forever).
#[derive(Debug)]
pub(super) struct KafkaSplit {
    pub(super) table: String,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) start: i64,
    pub(super) stop: Option<i64>,
    /// The partition's end (high watermark) at planning.
    pub(super) end: i64,
    /// Records between the start and the stop (or the end at planning).
    pub(super) backlog: u64,
    pub(super) properties: Arc<Properties>,
    pub(super) decoder: Decoder,
    pub(super) format: RecordFormat,
    pub(super) bad_records: BadRecords,
    pub(super) batch_size: usize,
    pub(super) metrics: Arc<JobMetrics>,
    /// The consumer this scan's splits share.
    pub(super) consumers: Arc<ConsumerSlot>,
}

impl Split for KafkaSplit {
    fn describe(&self) -> String {
        match self.stop {
            Some(stop) => format!(
                "kafka topic '{}' partition {} offsets {}..{stop}",
                self.topic, self.partition, self.start
            ),
            None => format!(
                "kafka topic '{}' partition {} from offset {}",
                self.topic, self.partition, self.start
            ),
        }
    }

    fn estimated_rows(&self) -> Option<u64> {
        Some(self.backlog)
    }

    /// The record's offset, as decoding errors give it, when the batch's
    /// rows fill its offsets; else the range it is in (a batch skips
    /// records without a value, records set aside, transaction markers).
    fn locate_row<'a>(
        &'a self,
        before: &'a SplitPosition,
        after: &'a SplitPosition,
        rows: usize,
        row: usize,
    ) -> BoxFuture<'a, String> {
        let partition = format!("topic '{}' partition {}", self.topic, self.partition);
        let at = match (before.offset(), after.offset()) {
            // Offsets are dense unless a record was left out.
            (Ok(from), Ok(to)) if to - from == rows as i64 => {
                format!("{partition} offset {}", from + row as i64)
            }
            (Ok(from), Ok(to)) => format!(
                "{partition}: record {} of those with a value at offsets {from}..{to}",
                row + 1
            ),
            _ => format!("{partition}: record {} of a batch", row + 1),
        };
        Box::pin(std::future::ready(at))
    }

    /// The partition, whatever offsets this run planned.
    fn key(&self) -> String {
        format!("kafka:{}:{}", self.topic, self.partition)
    }

    fn start_position(&self) -> SplitPosition {
        SplitPosition::at_offset(self.start)
    }

    fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
        without_positions(self.open_at(None))
    }

    /// Positions are offsets: the next record to read.
    fn open_at(
        self: Arc<Self>,
        position: Option<SplitPosition>,
    ) -> BoxStream<'static, Result<(RecordBatch, SplitPosition)>> {
        let start = match position.as_ref().map(SplitPosition::offset) {
            None => self.start,
            // A log only grows, so a partition that ends before a position
            // it gave was deleted and created again (or emptied) since: its
            // offsets now number other records. Offsets of records deleted
            // by retention fail when read ("the records there are gone").
            Some(Ok(offset)) if offset > self.end => {
                let e = SluiceError::Data(format!(
                    "table `{}`: topic '{}' partition {} ends at offset {}, before offset {offset}, where the checkpoint being restored had read to: the topic was deleted and created again since, so its offsets name other records. Restore with the topic the checkpoint read, or start without --restore",
                    self.table, self.topic, self.partition, self.end
                ));
                return futures::stream::once(async { Err(e) }).boxed();
            }
            Some(Ok(offset)) => offset,
            Some(Err(e)) => {
                let e = SluiceError::Runtime(format!("{}: {e}", self.describe()));
                return futures::stream::once(async { Err(e) }).boxed();
            }
        };
        if self.stop.is_some_and(|stop| stop <= start) {
            return futures::stream::empty().boxed();
        }
        // The consumer is made when the stream is first polled, on the
        // runtime that reads it.
        futures::stream::once(async move { PartitionReader::open(self, start) })
            .map_ok(|reader| {
                futures::stream::try_unfold(reader, |mut reader| async move {
                    let batch = reader.next_batch().await?;
                    let position = SplitPosition::at_offset(reader.next_offset());
                    Ok(batch.map(|b| ((b, position), reader)))
                })
            })
            .try_flatten()
            .boxed()
    }
}

/// How a split decodes its records.
#[derive(Debug, Clone)]
pub(super) enum Decoder {
    /// Values only.
    Plain(RecordDecoder),
    /// Keys and values, as upserts.
    Upsert(Arc<UpsertDecoder>),
}
