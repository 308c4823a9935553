//! Rows to a Kafka topic, one record per row: at least once by default,
//! exactly once in transactions committed with checkpoints
//! (`'sink.delivery-guarantee' = 'exactly-once'`, see [`super::transactions`]).
//!
//! Each subtask has its own producer. Records are handed to librdkafka as
//! fast as it queues them; their deliveries are awaited in the background
//! and all of them before the writer finishes or prepares a transaction, so
//! a failed delivery stops the job with an error rather than vanishing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use sluice_engine::changelog;
use sluice_engine::checkpoint::protocol::StagedOutput;
use sluice_engine::connector::{Sink, SinkWriter};
use sluice_engine::error::ExecContext;
use sluice_engine::sql::{Options, TableDef};
use sluice_engine::{Result, SluiceError};

use super::transactions::Transactions;
use super::{DEFAULT_CONNECT_TIMEOUT, Properties, RecordFormat, take_format};

/// Deliveries awaited at most at once before a writer waits for the oldest.
const IN_FLIGHT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitioner {
    /// Kafka's: by the murmur2 hash of the key, as Java clients and Flink
    /// place keys; spread when there is no key.
    Default,
    /// Subtask `i` writes partition `i % partitions`.
    Fixed,
    RoundRobin,
}

/// A Kafka sink: its settings, shared with its writers.
#[derive(Debug)]
pub struct KafkaSink(pub(super) Arc<Settings>);

#[derive(Debug)]
pub(super) struct Settings {
    pub(super) table: String,
    pub(super) topic: String,
    pub(super) schema: SchemaRef,
    pub(super) properties: Arc<Properties>,
    /// The values' format.
    pub(super) format: RecordFormat,
    pub(super) key_fields: Vec<usize>,
    /// The keys' format, and their fields' names in it.
    pub(super) key_format: RecordFormat,
    pub(super) key_schema: SchemaRef,
    /// The columns a value holds (all, or those outside the key).
    pub(super) value_fields: Vec<usize>,
    /// Rows are upserts of their key: `-U` rows are not written, `-D` rows
    /// are tombstones (the key, no value), as Flink's `upsert-kafka`.
    pub(super) upsert: bool,
    pub(super) partitioner: Partitioner,
    /// `sink.delivery-guarantee` = 'none': deliveries are not awaited.
    pub(super) fire_and_forget: bool,
    /// `sink.delivery-guarantee` = 'exactly-once'.
    pub(super) transactions: Option<Arc<Transactions>>,
}

impl KafkaSink {
    pub fn from_options(table: &TableDef, options: &mut Options) -> Result<Self> {
        let name = table.name.clone();
        let config = |m: String| SluiceError::config(format!("table `{name}`: {m}"));
        let topic = options.require("topic")?;
        if topic.contains(';') {
            return Err(config("a Kafka sink writes one topic".to_string()));
        }
        let properties = Arc::new(Properties::take(&name, options)?);
        let format = take_format(options)?;
        if format
            == (RecordFormat::DebeziumJson {
                schema_include: true,
            })
        {
            return Err(config(
                "'debezium-json.schema-include' = 'true' is for reading Debezium's records; a sink writes envelopes without the schema, as Flink's does".to_string(),
            ));
        }
        if format == RecordFormat::Raw
            && (table.schema.fields().len() != 1
                || !matches!(
                    table.schema.field(0).data_type(),
                    arrow::datatypes::DataType::Utf8 | arrow::datatypes::DataType::Binary
                ))
        {
            return Err(config(
                "format 'raw' needs a table of exactly one STRING or BYTES column".to_string(),
            ));
        }
        let key_fields = match options.take("key.fields") {
            None => Vec::new(),
            Some(fields) => fields
                .split(';')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| {
                    table.schema.index_of(f).map_err(|_| {
                        config(format!(
                            "'key.fields' names column '{f}', which the table does not have"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        let partitioner = match options.take("sink.partitioner").as_deref() {
            None | Some("default") => Partitioner::Default,
            Some("fixed") => Partitioner::Fixed,
            Some("round-robin") => Partitioner::RoundRobin,
            Some(other) => {
                return Err(config(format!(
                    "option 'sink.partitioner' = '{other}' is not one of 'default', 'fixed', 'round-robin'"
                )));
            }
        };
        let (fire_and_forget, transactions) = take_delivery(&name, options, &properties)?;
        let key_schema = Arc::new(
            table
                .schema
                .project(&key_fields)
                .exec_context(|| format!("taking the key fields of table `{name}`"))?,
        );
        Ok(Self(Arc::new(Settings {
            table: name,
            topic,
            schema: Arc::clone(&table.schema),
            properties,
            format,
            key_format: format.key_format(),
            key_schema,
            value_fields: (0..table.schema.fields().len()).collect(),
            upsert: false,
            key_fields,
            partitioner,
            fire_and_forget,
            transactions,
        })))
    }
}

/// The sink's `sink.delivery-guarantee` (and `sink.transactional-id-prefix`):
/// whether deliveries go unawaited, and the transactions of exactly-once.
pub(super) fn take_delivery(
    name: &str,
    options: &mut Options,
    properties: &Arc<Properties>,
) -> Result<(bool, Option<Arc<Transactions>>)> {
    let config = |m: String| SluiceError::config(format!("table `{name}`: {m}"));
    let prefix = options.take("sink.transactional-id-prefix");
    Ok(match options.take("sink.delivery-guarantee").as_deref() {
        None | Some("at-least-once") => (false, None),
        Some("none") => (true, None),
        Some("exactly-once") => {
            let Some(prefix) = prefix.filter(|p| !p.trim().is_empty()) else {
                return Err(config(
                        "'sink.delivery-guarantee' = 'exactly-once' needs 'sink.transactional-id-prefix', unique to this sink among the jobs writing to the cluster".to_string(),
                    ));
            };
            (
                false,
                Some(Arc::new(Transactions::new(prefix, Arc::clone(properties)))),
            )
        }
        Some(other) => {
            return Err(config(format!(
                "option 'sink.delivery-guarantee' = '{other}' is not one of 'exactly-once', 'at-least-once', 'none'"
            )));
        }
    })
}

impl Sink for KafkaSink {
    fn open_writer(
        &self,
        subtask: usize,
        _parallelism: usize,
    ) -> BoxFuture<'_, Result<Box<dyn SinkWriter>>> {
        let settings = Arc::clone(&self.0);
        Box::pin(async move {
            let p = Arc::clone(&settings.properties);
            let topic = settings.topic.clone();
            let table = settings.table.clone();
            // The partition count, and a clear error for a missing topic.
            let partitions = tokio::task::spawn_blocking(move || -> Result<i32> {
                let consumer: BaseConsumer = p
                    .config(&[("group.id", "sluice-planner")])
                    .create()
                    .map_err(|e| p.error("creating a client", e))?;
                let metadata = consumer
                    .fetch_metadata(Some(&topic), DEFAULT_CONNECT_TIMEOUT)
                    .map_err(|e| p.error(format!("reading the metadata of topic '{topic}'"), e))?;
                let partitions = metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map_or(0, |t| t.partitions().len());
                if partitions == 0 {
                    return Err(SluiceError::config(format!(
                        "table `{table}`: topic '{topic}' does not exist at '{}' (Sluice does not create topics)",
                        p.bootstrap()
                    )));
                }
                Ok(partitions as i32)
            })
            .await
            .map_err(|e| SluiceError::Runtime(format!("opening a Kafka sink: {e}")))??;
            let producer = match &settings.transactions {
                // Fences this subtask's ids: what a crashed run left open
                // is aborted before anything new is written.
                Some(transactions) => {
                    transactions.abort_subtask(subtask).await?;
                    None
                }
                None => Some(
                    settings
                        .properties
                        // murmur2 of the key, as Kafka's Java clients (and Flink) do;
                        // an upsert's records of one key must not be reordered
                        // by a retry.
                        .config(&[
                            ("linger.ms", "20"),
                            ("partitioner", "murmur2_random"),
                            (
                                "enable.idempotence",
                                if settings.upsert { "true" } else { "false" },
                            ),
                        ])
                        .create()
                        .map_err(|e| settings.properties.error("creating a producer", e))?,
                ),
            };
            Ok(Box::new(KafkaWriter {
                settings,
                subtask,
                partitions,
                next_partition: subtask as i32 % partitions,
                fixed_partition: subtask as i32 % partitions,
                producer,
                transaction: None,
                in_flight: VecDeque::new(),
            }) as Box<dyn SinkWriter>)
        })
    }

    fn commit(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            match &self.0.transactions {
                Some(transactions) => transactions.commit_all().await,
                None => Ok(()),
            }
        })
    }

    /// Exactly-once output of a stopped run is aborted; at-least-once
    /// records were delivered as they were written and stay.
    fn abort(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            match &self.0.transactions {
                Some(transactions) => transactions.abort_all().await.map(|()| true),
                None => Ok(false),
            }
        })
    }

    fn commit_checkpoint<'a>(&'a self, staged: &'a [StagedOutput]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match &self.0.transactions {
                Some(transactions) => {
                    let ids: Vec<String> = staged.iter().map(|s| s.staged.clone()).collect();
                    transactions.commit(&ids).await
                }
                None => Ok(()),
            }
        })
    }

    fn recover<'a>(
        &'a self,
        staged: &'a [StagedOutput],
        writers: usize,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            match &self.0.transactions {
                Some(transactions) => {
                    let ids: Vec<String> = staged.iter().map(|s| s.staged.clone()).collect();
                    transactions.abort_lingering(&ids, writers).await
                }
                None => Ok(()),
            }
        })
    }

    fn describe(&self) -> String {
        match self.0.upsert {
            true => format!("upsert-kafka topic '{}'", self.0.topic),
            false => format!("kafka topic '{}'", self.0.topic),
        }
    }

    fn accepts_changes(&self) -> bool {
        self.0.upsert || matches!(self.0.format, RecordFormat::DebeziumJson { .. })
    }

    fn input_key(&self) -> Option<Vec<usize>> {
        self.0.upsert.then(|| self.0.key_fields.clone())
    }
}

struct KafkaWriter {
    settings: Arc<Settings>,
    subtask: usize,
    partitions: i32,
    next_partition: i32,
    fixed_partition: i32,
    /// The producer records go to: the sink's own, or the current
    /// transaction's (begun with the epoch's first record).
    producer: Option<FutureProducer>,
    /// The current transaction's id, when one is open.
    transaction: Option<String>,
    in_flight: VecDeque<DeliveryFuture>,
}

impl KafkaWriter {
    fn partition(&mut self) -> Option<i32> {
        match self.settings.partitioner {
            Partitioner::Default => None,
            Partitioner::Fixed => Some(self.fixed_partition),
            Partitioner::RoundRobin => {
                let p = self.next_partition;
                self.next_partition = (p + 1) % self.partitions;
                Some(p)
            }
        }
    }

    /// Waits for the oldest delivery; its failure is the job's.
    async fn await_oldest(&mut self) -> Result<()> {
        let Some(delivery) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.delivery_error(e)),
            Err(_) => Err(SluiceError::Runtime(format!(
                "table `{}`: the producer of topic '{}' went away before confirming a delivery",
                self.settings.table, self.settings.topic
            ))),
        }
    }

    fn delivery_error(&self, e: KafkaError) -> SluiceError {
        self.settings.properties.error(
            format!("delivering a record to topic '{}'", self.settings.topic),
            e,
        )
    }

    /// Begins the epoch's transaction on a free id, if none is open.
    async fn ensure_transaction(&mut self) -> Result<()> {
        let Some(transactions) = self.settings.transactions.clone() else {
            return Ok(());
        };
        if self.transaction.is_none() {
            let id = transactions.id(self.subtask, transactions.free_slot(self.subtask)?);
            self.producer = Some(transactions.begin(&id).await?);
            self.transaction = Some(id);
        }
        Ok(())
    }

    /// Waits for every delivery, then for librdkafka's queue to drain.
    async fn flush(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.await_oldest().await?;
        }
        let Some(producer) = self.producer.clone() else {
            return Ok(());
        };
        let flushed = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(60)))
            .await
            .map_err(|e| SluiceError::Runtime(format!("flushing a producer: {e}")))?;
        flushed.map_err(|e| self.delivery_error(e))
    }

    async fn write_batch(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.ensure_transaction().await?;
        let Some(producer) = self.producer.clone() else {
            return Err(SluiceError::Runtime(format!(
                "table `{}`: the Kafka sink has no producer",
                self.settings.table
            )));
        };
        let settings = Arc::clone(&self.settings);
        // An upsert sink writes the row after an update and a tombstone for
        // a delete; the row before an update is replaced by its `+U`.
        let (batch, deletes) = match settings.upsert {
            true => upserts(&batch)?,
            false => (batch, Vec::new()),
        };
        let value_schema = Arc::new(
            settings
                .schema
                .project(&settings.value_fields)
                .exec_context(|| format!("the value fields of table `{}`", settings.table))?,
        );
        let values = batch
            .project(&settings.value_fields)
            .exec_context(|| format!("taking the value fields of table `{}`", settings.table))?;
        let values = match settings.format {
            // Debezium's envelopes say what each row does.
            RecordFormat::DebeziumJson { .. } => {
                let kinds = changelog::row_kinds(&batch).cloned();
                debezium_values(&values, &value_schema, kinds)?
            }
            format => encode(&values, format, &value_schema)?,
        };
        let keys = if settings.key_fields.is_empty() {
            None
        } else {
            let keys = batch
                .project(&settings.key_fields)
                .exec_context(|| format!("taking the key fields of table `{}`", settings.table))?;
            // A primary key is NOT NULL, as Flink enforces for its sinks.
            if settings.upsert
                && let Some(c) = keys.columns().iter().position(|c| c.null_count() > 0)
            {
                return Err(SluiceError::Data(format!(
                    "table `{}`: a row's primary key column `{}` is NULL; an upsert's key identifies its row",
                    settings.table,
                    keys.schema().field(c).name()
                )));
            }
            Some(encode(&keys, settings.key_format, &settings.key_schema)?)
        };
        let topic = settings.topic.clone();
        for (row, value) in values.iter().enumerate() {
            let partition = self.partition();
            let mut record = FutureRecord::<[u8], [u8]>::to(&topic);
            if !deletes.get(row).copied().unwrap_or(false) {
                record = record.payload(value.as_slice());
            }
            if let Some(keys) = &keys {
                record = record.key(keys[row].as_slice());
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        if !self.settings.fire_and_forget {
                            self.in_flight.push_back(delivery);
                        }
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        if self.in_flight.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
                            self.await_oldest().await?;
                        }
                    }
                    Err((e, _)) => return Err(self.delivery_error(e)),
                }
            }
            while self.in_flight.len() > IN_FLIGHT {
                self.await_oldest().await?;
            }
        }
        Ok(())
    }
}

impl SinkWriter for KafkaWriter {
    fn write(&mut self, batch: RecordBatch) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write_batch(batch))
    }

    /// In exactly-once mode, flushes the epoch's transaction and hands it
    /// over prepared; it is committed once the checkpoint completes.
    fn prepare_commit(
        &mut self,
        _checkpoint: sluice_engine::checkpoint::CheckpointId,
    ) -> BoxFuture<'_, Result<Vec<StagedOutput>>> {
        Box::pin(async move {
            let (Some(transactions), Some(id)) =
                (self.settings.transactions.clone(), self.transaction.take())
            else {
                return Ok(Vec::new());
            };
            self.flush().await?;
            let Some(producer) = self.producer.take() else {
                return Ok(Vec::new());
            };
            transactions.prepare(id.clone(), producer)?;
            Ok(vec![StagedOutput {
                sink: String::new(),
                staged: id,
                target: self.settings.topic.clone(),
            }])
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<()>> {
        Box::pin(async move {
            self.flush().await?;
            // The input's end prepared the last transaction; one opened
            // after that waits for the job's commit like the others.
            if let (Some(transactions), Some(id)) =
                (self.settings.transactions.clone(), self.transaction.take())
                && let Some(producer) = self.producer.take()
            {
                transactions.prepare(id, producer)?;
            }
            Ok(())
        })
    }
}

impl RecordFormat {
    /// Keys are written as JSON objects unless the values are CSV.
    pub(super) fn key_format(self) -> RecordFormat {
        match self {
            RecordFormat::Csv { .. } => self,
            _ => RecordFormat::Json,
        }
    }
}

/// An updating batch as an upsert sink writes it, without row kinds, and
/// which rows are tombstones: as Flink's upsert-kafka, a `-U` is one as
/// well as a `-D`, since its `+U` may not follow (a filter can keep the
/// one and drop the other), and the `+U` that does follow writes the key
/// again.
fn upserts(batch: &RecordBatch) -> Result<(RecordBatch, Vec<bool>)> {
    let (data, kinds) = changelog::split(batch)?;
    let Some(kinds) = kinds else {
        let rows = data.num_rows();
        return Ok((data, vec![false; rows]));
    };
    let tombstones = kinds
        .values()
        .iter()
        .map(|&k| changelog::is_retraction_byte(k))
        .collect();
    Ok((data, tombstones))
}

/// One Debezium envelope per row of `values`, a create unless its row
/// kind (`kinds`, for an updating input) takes a row back.
fn debezium_values(
    values: &RecordBatch,
    schema: &SchemaRef,
    kinds: Option<arrow::array::Int8Array>,
) -> Result<Vec<Vec<u8>>> {
    let mut columns = values.columns().to_vec();
    let schema = match kinds {
        Some(kinds) => {
            columns.push(Arc::new(kinds));
            changelog::with_row_kind(schema)
        }
        None => Arc::clone(schema),
    };
    let batch = RecordBatch::try_new(schema, columns)
        .exec_context(|| "rows for a Kafka sink".to_string())?;
    let lines = crate::debezium::encode(&batch)?;
    Ok(lines
        .split(|b| *b == b'\n')
        .take(batch.num_rows())
        .map(<[u8]>::to_vec)
        .collect())
}

/// One encoded value per row.
pub(super) fn encode(
    batch: &RecordBatch,
    format: RecordFormat,
    schema: &SchemaRef,
) -> Result<Vec<Vec<u8>>> {
    let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
        .exec_context(|| "rows for a Kafka sink".to_string())?;
    match format {
        RecordFormat::Json => {
            let mut buffer = Vec::new();
            // Flink's JSON format writes timestamps in SQL style by default.
            let mut writer = arrow::json::WriterBuilder::new()
                .with_timestamp_format("%Y-%m-%d %H:%M:%S%.f".to_string())
                .with_timestamp_tz_format("%Y-%m-%d %H:%M:%S%.fZ".to_string())
                .build::<_, arrow::json::writer::LineDelimited>(&mut buffer);
            writer
                .write(&batch)
                .and_then(|()| writer.finish())
                .exec_context(|| "encoding rows as JSON".to_string())?;
            drop(writer);
            // JSON escapes newlines inside strings: each line is one row.
            Ok(buffer
                .split(|b| *b == b'\n')
                .take(batch.num_rows())
                .map(<[u8]>::to_vec)
                .collect())
        }
        RecordFormat::Csv { delimiter } => (0..batch.num_rows())
            .map(|row| {
                let mut buffer = Vec::new();
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .build(&mut buffer);
                writer
                    .write(&batch.slice(row, 1))
                    .exec_context(|| "encoding a row as CSV".to_string())?;
                drop(writer);
                if buffer.last() == Some(&b'\n') {
                    buffer.pop();
                }
                Ok(buffer)
            })
            .collect(),
        RecordFormat::DebeziumJson { .. } => debezium_values(&batch, schema, None),
        RecordFormat::Raw => {
            let column = batch.column(0);
            let bytes = arrow::compute::cast(column, &arrow::datatypes::DataType::Binary)
                .exec_context(|| "taking raw values".to_string())?;
            let bytes = arrow::array::AsArray::as_binary::<i32>(&bytes);
            Ok((0..arrow::array::Array::len(bytes))
                .map(|i| {
                    if arrow::array::Array::is_null(bytes, i) {
                        Vec::new()
                    } else {
                        bytes.value(i).to_vec()
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("note", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec!["two\nlines, and a comma", "plain"])),
            ],
        )
        .expect("batch")
    }

    fn text(values: Vec<Vec<u8>>) -> Vec<String> {
        values
            .into_iter()
            .map(|v| String::from_utf8(v).expect("utf-8"))
            .collect()
    }

    #[test]
    fn json_gives_one_object_per_row_newlines_escaped() {
        let b = batch();
        let values = encode(&b, RecordFormat::Json, &b.schema()).expect("encode");
        assert_eq!(
            text(values),
            vec![
                r#"{"id":1,"note":"two\nlines, and a comma"}"#,
                r#"{"note":"plain"}"#
            ]
        );
    }

    #[test]
    fn csv_gives_one_line_per_row_quoted_where_needed() {
        let b = batch();
        let values =
            encode(&b, RecordFormat::Csv { delimiter: b',' }, &b.schema()).expect("encode");
        assert_eq!(
            text(values),
            vec!["1,\"two\nlines, and a comma\"", ",plain"]
        );
    }

    #[test]
    fn raw_gives_the_bytes_of_the_one_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Binary, true)]));
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(BinaryArray::from(vec![&b"\x00\x01"[..], b"abc"]))],
        )
        .expect("batch");
        let values = encode(&b, RecordFormat::Raw, &schema).expect("encode");
        assert_eq!(values, vec![vec![0, 1], b"abc".to_vec()]);
    }
}
