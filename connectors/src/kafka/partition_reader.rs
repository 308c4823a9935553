//! Reading one partition: its queue of the scan's shared consumer, the
//! records gathered from it, and their decoding into batches, with bad
//! records failed, skipped or set aside.

use std::sync::Arc;
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::FutureExt;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::error::preview_bytes;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::{Result, SluiceError};

use super::consumer::{ConsumerSlot, SharedConsumer, is_fatal};
use super::decode::{BadRecord, RecordFormat, Records};
use super::source::{BadRecords, POLL};
use super::split::{Decoder, KafkaSplit};
use super::upsert_decode::UpsertRecords;

/// Records read from a partition and not yet decoded.
pub(super) struct Gathered {
    /// The offset of the next record to read.
    next: i64,
    records: Records,
    upserts: UpsertRecords,
    /// Records found bad before decoding (an upsert without a key).
    bad: Vec<BadRecord>,
}

impl Gathered {
    fn done(&self, split: &KafkaSplit) -> bool {
        split.stop.is_some_and(|stop| self.next >= stop)
    }

    fn len(&self) -> usize {
        self.records.len() + self.upserts.len() + self.bad.len()
    }

    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.upserts.is_empty() && self.bad.is_empty()
    }

    /// Decodes what was gathered and starts gathering again.
    fn decode(&mut self, decoder: &Decoder) -> Result<(RecordBatch, Vec<BadRecord>)> {
        let (batch, mut bad) = match decoder {
            Decoder::Plain(decoder) => decoder.decode(&self.records)?,
            Decoder::Upsert(decoder) => decoder.decode(&self.upserts)?,
        };
        if !self.bad.is_empty() {
            bad.append(&mut self.bad);
            bad.sort_by_key(|b| b.offset);
        }
        self.records.clear();
        self.upserts.clear();
        Ok((batch, bad))
    }

    /// Adds a received record to the batch being gathered.
    fn add(
        &mut self,
        split: &KafkaSplit,
        received: std::result::Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
    ) -> Result<()> {
        let message = match received {
            Ok(message) => message,
            Err(e) => return self.consumer_error(split, e),
        };
        let offset = message.offset();
        if split.stop.is_some_and(|stop| offset >= stop) {
            self.next = split.stop.unwrap_or(offset);
            return Ok(());
        }
        self.next = offset + 1;
        if matches!(split.decoder, Decoder::Upsert(_)) {
            match message.key() {
                Some(key) => self.upserts.push(offset, key, message.payload()),
                None => self.bad.push(BadRecord {
                    offset,
                    value: message.payload().unwrap_or_default().to_vec(),
                    reason: "the record has no key: an upsert-kafka table's records are keyed by its primary key".to_string(),
                }),
            }
            return Ok(());
        }
        match message.payload() {
            Some(value) => self.records.push(offset, value),
            None => {
                // A tombstone (null value): nothing to decode; Flink skips them too.
                JobMetrics::add(&split.metrics.records_skipped, 1);
                tracing::debug!(
                    topic = %split.topic,
                    partition = split.partition,
                    offset,
                    "skipped a record with no value"
                );
            }
        }
        Ok(())
    }

    /// Errors librdkafka retries by itself are logged; others stop the job.
    fn consumer_error(&self, split: &KafkaSplit, e: KafkaError) -> Result<()> {
        let fatal = is_fatal(&e);
        let doing = format!(
            "reading topic '{}' partition {} at offset {}",
            split.topic, split.partition, self.next
        );
        if fatal {
            let doing = match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => {
                    format!("{doing}: the records there are gone (deleted by retention?)")
                }
                _ => doing,
            };
            return Err(split.properties.error(doing, e));
        }
        tracing::warn!(table = %split.table, "{doing}: {e} (retrying)");
        Ok(())
    }
}

/// One partition's queue of the shared consumer, and what it has gathered.
pub(super) struct PartitionReader {
    split: Arc<KafkaSplit>,
    /// Dropped before `shared`, which may close the consumer.
    queue: StreamPartitionQueue<DefaultConsumerContext>,
    shared: Arc<SharedConsumer>,
    /// Read to the stop offset, its position committed and unassigned.
    finished: bool,
    gathered: Gathered,
    /// Commit positions to the group (only when the table names one).
    commit: bool,
    dead_letters: Option<FutureProducer>,
}

impl Drop for PartitionReader {
    /// A reader dropped before its stop (an unbounded partition, a stopped
    /// or failed job) hands its partition back, so the shared consumer
    /// stops fetching it.
    fn drop(&mut self) {
        if !self.finished {
            self.shared
                .unassign(&self.split.topic, self.split.partition);
        }
    }
}

impl PartitionReader {
    pub(super) fn open(split: Arc<KafkaSplit>, start: i64) -> Result<Self> {
        let p = &split.properties;
        let commit = p.get("group.id").is_some();
        let group = format!("sluice-{}", split.table);
        let mut defaults = vec![
            ("group.id", group.as_str()),
            ("enable.partition.eof", "false"),
            // Records deleted before they were read are an error, never a
            // silent jump to the end of the partition.
            ("auto.offset.reset", "error"),
            // Bounds what librdkafka prefetches per partition (default 64 MiB).
            ("queued.max.messages.kbytes", "16384"),
        ];
        if commit {
            defaults.extend([
                ("enable.auto.commit", "true"),
                ("enable.auto.offset.store", "false"),
            ]);
        } else {
            defaults.push(("enable.auto.commit", "false"));
        }
        let dead_letters = match &split.bad_records {
            BadRecords::DeadLetter(_) => Some(
                p.config(&[])
                    .create::<FutureProducer>()
                    .map_err(|e| p.error("creating the dead-letter producer", e))?,
            ),
            _ => None,
        };
        // With a group to commit to, each partition keeps a consumer of its
        // own: librdkafka starts fetching a newly assigned partition only
        // once the consumer's commits in flight are done, so a slow group
        // coordinator would hold back every partition opened after it.
        let own;
        let slot = match commit {
            true => {
                own = ConsumerSlot::default();
                &own
            }
            false => split.consumers.as_ref(),
        };
        let shared = slot.get_or_create(|| {
            p.config(&defaults)
                .create::<StreamConsumer>()
                .map_err(|e| p.error("creating a consumer", e))
        })?;
        // Assigned last: nothing after it may fail and leave the partition
        // fetching into a queue nobody reads.
        let queue = shared.assign(p, &split.topic, split.partition, start)?;
        Ok(Self {
            gathered: Gathered {
                next: start,
                records: Records::default(),
                upserts: UpsertRecords::default(),
                bad: Vec::new(),
            },
            split,
            queue,
            shared,
            finished: false,
            commit,
            dead_letters,
        })
    }

    fn done(&self) -> bool {
        self.gathered.done(&self.split)
    }

    /// Reads until it has a non-empty batch, or the partition's stop offset.
    /// The offset of the next record to read.
    pub(super) fn next_offset(&self) -> i64 {
        self.gathered.next
    }

    pub(super) async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.done() {
                tracing::debug!(
                    topic = %self.split.topic,
                    partition = self.split.partition,
                    next = self.gathered.next,
                    "partition read to its stop offset"
                );
                self.commit_final().await?;
                return Ok(None);
            }
            match tokio::time::timeout(POLL, self.queue.recv()).await {
                Err(_) => {
                    self.check_failure()?;
                    self.check_position()?;
                    continue;
                }
                Ok(received) => self.gathered.add(&self.split, received)?,
            }
            // Take whatever else is already fetched, without waiting.
            while self.gathered.len() < self.split.batch_size && !self.done() {
                match self.queue.recv().now_or_never() {
                    Some(received) => self.gathered.add(&self.split, received)?,
                    None => break,
                }
            }
            if self.gathered.is_empty() {
                continue;
            }
            let (batch, bad) = self.gathered.decode(&self.split.decoder)?;
            if !bad.is_empty() {
                self.set_aside(bad).await?;
            }
            if self.commit {
                self.shared
                    .consumer()?
                    .store_offset(
                        &self.split.topic,
                        self.split.partition,
                        self.gathered.next - 1,
                    )
                    .map_err(|e| self.split.properties.error("storing the position", e))?;
            }
            if batch.num_rows() > 0 {
                return Ok(Some(batch));
            }
        }
    }

    /// Commits the end position of a finished bounded partition to the
    /// group and closes the consumer, off the runtime's threads (both wait
    /// on the network), before the split reports that it is done.
    async fn commit_final(&mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let split = Arc::clone(&self.split);
        let shared = Arc::clone(&self.shared);
        let (commit, next) = (self.commit, self.gathered.next);
        tokio::task::spawn_blocking(move || {
            shared.unassign(&split.topic, split.partition);
            if !commit {
                return Ok(());
            }
            let consumer = shared.consumer()?;
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&split.topic, split.partition, Offset::Offset(next))
                .and_then(|()| consumer.commit(&list, CommitMode::Sync))
                .map_err(|e| {
                    split.properties.error(
                        format!(
                            "committing the position of topic '{}' partition {}",
                            split.topic, split.partition
                        ),
                        e,
                    )
                })
        })
        .await
        .map_err(|e| SluiceError::Runtime(format!("closing a Kafka consumer: {e}")))?
    }

    /// A bounded partition whose last offsets hold no records (transaction
    /// markers, compacted records) is done once its position reaches the stop.
    fn check_position(&mut self) -> Result<()> {
        let Some(stop) = self.split.stop else {
            return Ok(());
        };
        let position = self
            .shared
            .consumer()?
            .position()
            .map_err(|e| self.split.properties.error("reading the position", e))?;
        if let Some(Offset::Offset(at)) = position
            .find_partition(&self.split.topic, self.split.partition)
            .map(|e| e.offset())
            && at >= stop
        {
            self.gathered.next = self.gathered.next.max(at);
        }
        Ok(())
    }

    /// Fails with the error the shared consumer reported, if any.
    fn check_failure(&self) -> Result<()> {
        match self.shared.failure() {
            Some(e) => Err(self.split.properties.error(
                format!(
                    "reading topic '{}' partition {}",
                    self.split.topic, self.split.partition
                ),
                e,
            )),
            None => Ok(()),
        }
    }

    /// Reports, skips or dead-letters records that could not be decoded.
    async fn set_aside(&self, bad: Vec<BadRecord>) -> Result<()> {
        let split = &self.split;
        let format = split.format.describe();
        let describe = |record: &BadRecord| {
            format!(
                "topic '{}' partition {} offset {}: cannot decode the record as {format}: {} (value: {})",
                split.topic,
                split.partition,
                record.offset,
                record.reason,
                preview_bytes(&record.value)
            )
        };
        match &split.bad_records {
            BadRecords::Fail => {
                let Some(first) = bad.first() else {
                    return Ok(());
                };
                let advice = match (&split.decoder, split.format) {
                    (Decoder::Upsert(_), _) => {
                        "set 'key.json.ignore-parse-errors' or 'value.json.ignore-parse-errors' = 'true' to skip such records (either skips any bad record of the table), or 'dead-letter.topic' to set them aside"
                    }
                    (_, format) => match format {
                        RecordFormat::Csv { .. } => {
                            "set 'csv.ignore-parse-errors' = 'true' to skip such records, or 'dead-letter.topic' to set them aside"
                        }
                        RecordFormat::Json => {
                            "set 'json.ignore-parse-errors' = 'true' to skip such records, or 'dead-letter.topic' to set them aside"
                        }
                        RecordFormat::DebeziumJson { .. } => {
                            "set 'debezium-json.ignore-parse-errors' = 'true' to skip such records, or 'dead-letter.topic' to set them aside"
                        }
                        RecordFormat::Raw => {
                            "declare the column BYTES, or set 'dead-letter.topic' to set such records aside"
                        }
                    },
                };
                Err(SluiceError::Data(format!(
                    "table `{}`: {}; {advice}",
                    split.table,
                    describe(first)
                )))
            }
            BadRecords::Skip => {
                for record in &bad {
                    tracing::warn!(table = %split.table, "skipped: {}", describe(record));
                }
                JobMetrics::add(&split.metrics.records_skipped, bad.len() as u64);
                Ok(())
            }
            BadRecords::DeadLetter(topic) => {
                let Some(producer) = &self.dead_letters else {
                    return Ok(());
                };
                for record in &bad {
                    let partition = split.partition.to_string();
                    let offset = record.offset.to_string();
                    let headers = OwnedHeaders::new()
                        .insert(Header {
                            key: "sluice.topic",
                            value: Some(split.topic.as_str()),
                        })
                        .insert(Header {
                            key: "sluice.partition",
                            value: Some(partition.as_str()),
                        })
                        .insert(Header {
                            key: "sluice.offset",
                            value: Some(offset.as_str()),
                        })
                        .insert(Header {
                            key: "sluice.error",
                            value: Some(record.reason.as_str()),
                        });
                    let sent = producer
                        .send(
                            FutureRecord::<(), [u8]>::to(topic)
                                .payload(&record.value)
                                .headers(headers),
                            Duration::from_secs(30),
                        )
                        .await;
                    if let Err((e, _)) = sent {
                        return Err(split.properties.error(
                            format!(
                                "dead-lettering topic '{}' partition {} offset {} to '{topic}'",
                                split.topic, split.partition, record.offset
                            ),
                            e,
                        ));
                    }
                    tracing::warn!(table = %split.table, "dead-lettered to '{topic}': {}", describe(record));
                }
                JobMetrics::add(&split.metrics.records_dead_lettered, bad.len() as u64);
                Ok(())
            }
        }
    }
}
