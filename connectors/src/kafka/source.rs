//! Kafka topics as sources: one split per partition, read concurrently.
//!
//! Planning asks the cluster for the topics' partitions and offsets and
//! turns the startup and bounded modes into a start offset and (for a
//! bounded scan) a stop offset per partition. The splits of a scan share
//! one consumer (`consumer.rs`); each split assigns its partition to it (no
//! group rebalancing: Sluice's position belongs to Sluice), reads it from a
//! queue of its own and decodes the values it fetches in batches. With
//! `properties.group.id`, the positions read are committed to the group so
//! standard tools can show the lag; each partition then has a consumer of
//! its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, DefaultConsumerContext, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::connector::{
    ConnectorContext, Reading, ScanRequest, Source, SourceChanges, Split, SplitPosition,
    without_positions,
};
use sluice_engine::error::preview_bytes;
use sluice_engine::metrics::JobMetrics;
use sluice_engine::sql::{Mode, Options, TableDef};
use sluice_engine::{Result, SluiceError};

use super::consumer::{ConsumerSlot, SharedConsumer, is_fatal};
use super::decode::{BadRecord, RecordDecoder, RecordFormat, Records};
use super::upsert_decode::{Part, UpsertDecoder, UpsertRecords};
use super::{DEFAULT_CONNECT_TIMEOUT, Properties, take_format};

/// How long a reader waits for a record before it checks whether a bounded
/// partition is done (its last offsets may be transaction markers).
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
enum Topics {
    Names(Vec<String>),
    Pattern(regex::Regex),
}

/// Where reading starts (`scan.startup.mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    /// The group's committed offsets; where there are none, the reset
    /// policy, or the earliest offset when the mode was not asked for.
    GroupOffsets {
        explicit: bool,
    },
    Timestamp(i64),
    Specific(BTreeMap<i32, i64>),
}

/// Where a bounded scan stops (`scan.bounded.mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Bounded {
    Unbounded,
    Latest,
    Timestamp(i64),
    Specific(BTreeMap<i32, i64>),
}

/// What happens to a record that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BadRecords {
    /// The job stops with an error naming the record.
    Fail,
    /// Skipped, counted and logged (`json.ignore-parse-errors`).
    Skip,
    /// Sent unchanged to this topic, counted and logged (`dead-letter.topic`).
    DeadLetter(String),
}

#[derive(Debug, Clone)]
pub struct KafkaSource {
    table: String,
    table_schema: SchemaRef,
    /// Read as upserts by key (`upsert-kafka`).
    upsert: Option<UpsertKeys>,
    topics: Topics,
    properties: Arc<Properties>,
    format: RecordFormat,
    startup: Startup,
    bounded: Bounded,
    idle_timeout: Option<Duration>,
    bad_records: BadRecords,
    connect_timeout: Duration,
}

/// How an `upsert-kafka` table's records hold its rows.
#[derive(Debug, Clone)]
pub(super) struct UpsertKeys {
    pub format: RecordFormat,
    /// The key record's columns (without the table's key prefix).
    pub schema: SchemaRef,
    /// The key columns, by their names in the table.
    pub columns: Vec<String>,
    /// The columns the value holds, by their names in the table, in order.
    pub value_columns: Vec<String>,
}

impl KafkaSource {
    pub fn from_options(
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
    ) -> Result<Self> {
        let format = take_format(options)?;
        let ignore = match format {
            RecordFormat::Json => {
                options.take_parsed::<bool>("json.ignore-parse-errors", "'true' or 'false'")?
            }
            RecordFormat::Csv { .. } => {
                options.take_parsed::<bool>("csv.ignore-parse-errors", "'true' or 'false'")?
            }
            RecordFormat::DebeziumJson { .. } => options
                .take_parsed::<bool>("debezium-json.ignore-parse-errors", "'true' or 'false'")?,
            RecordFormat::Raw => None,
        }
        .unwrap_or(false);
        Self::with_format(table, options, context, format, ignore, None)
    }

    /// A source of `format` records, which a table that ignores parse
    /// errors skips when bad; read as upserts when `upsert` says how.
    pub(super) fn with_format(
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
        format: RecordFormat,
        ignore: bool,
        upsert: Option<UpsertKeys>,
    ) -> Result<Self> {
        let name = table.name.clone();
        let config = |m: String| SluiceError::config(format!("table `{name}`: {m}"));
        let topics = match (options.take("topic"), options.take("topic-pattern")) {
            (Some(topics), None) => Topics::Names(
                topics
                    .split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            (None, Some(pattern)) => {
                Topics::Pattern(regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    config(format!(
                        "option 'topic-pattern' = '{pattern}' is not a regex: {e}"
                    ))
                })?)
            }
            (Some(_), Some(_)) => {
                return Err(config(
                    "give 'topic' or 'topic-pattern', not both".to_string(),
                ));
            }
            (None, None) => return Err(config("option 'topic' is required".to_string())),
        };
        if matches!(&topics, Topics::Names(names) if names.is_empty()) {
            return Err(config("option 'topic' names no topic".to_string()));
        }
        if upsert.is_some() && !matches!(&topics, Topics::Names(names) if names.len() == 1) {
            return Err(config(
                "an upsert-kafka table is one topic: its option 'topic' names one".to_string(),
            ));
        }
        let properties = Arc::new(Properties::take(&name, options)?);
        let startup = match options.take("scan.startup.mode").as_deref() {
            // A compacted topic is the table only when read whole.
            _ if upsert.is_some() => Startup::Earliest,
            // Flink's default is the group's offsets; without a group there are none.
            None if properties.get("group.id").is_some() => Startup::GroupOffsets {
                explicit: false,
            },
            None | Some("earliest-offset") => Startup::Earliest,
            Some("latest-offset") => Startup::Latest,
            Some("group-offsets") => {
                if properties.get("group.id").is_none() {
                    return Err(config(
                        "'scan.startup.mode' = 'group-offsets' needs 'properties.group.id'"
                            .to_string(),
                    ));
                }
                Startup::GroupOffsets { explicit: true }
            }
            Some("timestamp") => Startup::Timestamp(
                options
                    .take_parsed("scan.startup.timestamp-millis", "a number of milliseconds")?
                    .ok_or_else(|| {
                        config("'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis'".to_string())
                    })?,
            ),
            Some("specific-offsets") => Startup::Specific(specific_offsets(
                &name,
                "scan.startup.specific-offsets",
                options,
            )?),
            Some(other) => {
                return Err(config(format!(
                    "option 'scan.startup.mode' = '{other}' is not one of 'earliest-offset', 'latest-offset', 'group-offsets', 'timestamp', 'specific-offsets'"
                )));
            }
        };
        let bounded = match options.take("scan.bounded.mode").as_deref() {
            None | Some("unbounded") => Bounded::Unbounded,
            Some("latest-offset") => Bounded::Latest,
            Some("timestamp") => Bounded::Timestamp(
                options
                    .take_parsed("scan.bounded.timestamp-millis", "a number of milliseconds")?
                    .ok_or_else(|| {
                        config("'scan.bounded.mode' = 'timestamp' needs 'scan.bounded.timestamp-millis'".to_string())
                    })?,
            ),
            Some("specific-offsets") => Bounded::Specific(specific_offsets(
                &name,
                "scan.bounded.specific-offsets",
                options,
            )?),
            Some(other) => {
                return Err(config(format!(
                    "option 'scan.bounded.mode' = '{other}' is not one of 'unbounded', 'latest-offset', 'timestamp', 'specific-offsets'"
                )));
            }
        };
        if context.mode == Mode::Batch && bounded == Bounded::Unbounded {
            return Err(config(
                "a Kafka source in batch mode must be bounded: set 'scan.bounded.mode' (e.g. 'latest-offset'), or run with --mode stream".to_string(),
            ));
        }
        let idle_timeout = options
            .take_duration("scan.watermark.idle-timeout")?
            .filter(|d| !d.is_zero());
        let bad_records = match (ignore, options.take("dead-letter.topic")) {
            (false, None) => BadRecords::Fail,
            (true, None) => BadRecords::Skip,
            (false, Some(topic)) => BadRecords::DeadLetter(topic),
            (true, Some(_)) => {
                return Err(config(
                    "bad records are either ignored ('…ignore-parse-errors') or dead-lettered ('dead-letter.topic'), not both".to_string(),
                ));
            }
        };
        let connect_timeout = options
            .take_duration("connect.timeout")?
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Ok(Self {
            table: name,
            table_schema: Arc::clone(&table.physical),
            upsert,
            topics,
            properties,
            format,
            startup,
            bounded,
            idle_timeout,
            bad_records,
            connect_timeout,
        })
    }

    /// Asks the cluster for partitions and offsets (blocking calls).
    fn plan(&self, request: &ScanRequest) -> Result<Vec<Arc<dyn Split>>> {
        let p = &self.properties;
        let timeout = self.connect_timeout;
        let consumer: BaseConsumer = p
            .config(&[
                ("group.id", "sluice-planner"),
                ("enable.auto.commit", "false"),
            ])
            .create()
            .map_err(|e| p.error("creating a consumer", e))?;
        let metadata = consumer
            .fetch_metadata(None, timeout)
            .map_err(|e| p.error(format!("cannot reach the cluster within {timeout:?}"), e))?;
        let existing: BTreeMap<&str, usize> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name(), t.partitions().len()))
            .collect();
        let topics: Vec<String> = match &self.topics {
            Topics::Names(names) => {
                for name in names {
                    if existing.get(name.as_str()).is_none_or(|&n| n == 0) {
                        return Err(SluiceError::config(format!(
                            "table `{}`: topic '{name}' does not exist at '{}' (Sluice does not create topics)",
                            self.table,
                            p.bootstrap()
                        )));
                    }
                }
                names.clone()
            }
            Topics::Pattern(pattern) => {
                let matched: Vec<String> = existing
                    .keys()
                    .filter(|t| pattern.is_match(t))
                    .map(|t| t.to_string())
                    .collect();
                if matched.is_empty() {
                    return Err(SluiceError::config(format!(
                        "table `{}`: no topic at '{}' matches 'topic-pattern' {}",
                        self.table,
                        p.bootstrap(),
                        pattern.as_str()
                    )));
                }
                matched
            }
        };
        if let BadRecords::DeadLetter(topic) = &self.bad_records
            && !existing.contains_key(topic.as_str())
        {
            return Err(SluiceError::config(format!(
                "table `{}`: dead-letter topic '{topic}' does not exist at '{}'",
                self.table,
                p.bootstrap()
            )));
        }
        let decoder = self.decoder(request).map_err(|e| match e {
            SluiceError::Config(m) => SluiceError::config(format!("table `{}`: {m}", self.table)),
            other => other,
        })?;
        let consumers = Arc::new(ConsumerSlot::default());
        let mut splits: Vec<Arc<dyn Split>> = Vec::new();
        for topic in &topics {
            let partitions = existing.get(topic.as_str()).copied().unwrap_or(0) as i32;
            let mut ranges = Vec::new();
            for partition in 0..partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(|e| {
                        p.error(
                            format!("reading the offsets of topic '{topic}' partition {partition}"),
                            e,
                        )
                    })?;
                ranges.push((partition, low, high));
            }
            let start = self.start_offsets(&consumer, topic, &ranges)?;
            let stop = self.stop_offsets(&consumer, topic, &ranges)?;
            for (i, &(partition, low, high)) in ranges.iter().enumerate() {
                let start = start[i].clamp(low, high);
                // A stop beyond the current end is waited for, as in Flink.
                let stop = stop[i].map(|s| s.max(start));
                tracing::debug!(
                    table = %self.table,
                    topic,
                    partition,
                    low,
                    high,
                    start,
                    ?stop,
                    "planned a partition"
                );
                splits.push(Arc::new(KafkaSplit {
                    table: self.table.clone(),
                    topic: topic.clone(),
                    partition,
                    start,
                    stop,
                    end: high,
                    backlog: (stop.unwrap_or(high).min(high) - start).max(0) as u64,
                    properties: Arc::clone(&self.properties),
                    decoder: decoder.clone(),
                    format: self.format,
                    bad_records: self.bad_records.clone(),
                    batch_size: request.batch_size,
                    metrics: Arc::clone(&request.metrics),
                    consumers: Arc::clone(&consumers),
                }));
            }
        }
        Ok(splits)
    }

    /// How the splits decode what they read.
    fn decoder(&self, request: &ScanRequest) -> Result<Decoder> {
        let Some(upsert) = &self.upsert else {
            return Ok(Decoder::Plain(RecordDecoder::new(
                self.format,
                Arc::clone(&request.schema),
                Arc::clone(&self.table_schema),
                request.projection.clone(),
            )?));
        };
        let index = |name: &String| {
            self.table_schema.index_of(name).map_err(|_| {
                SluiceError::Runtime(format!("table `{}` has no column `{name}`", self.table))
            })
        };
        let value_fields: Vec<usize> = upsert
            .value_columns
            .iter()
            .map(index)
            .collect::<Result<_>>()?;
        let key_fields: Vec<usize> = upsert.columns.iter().map(index).collect::<Result<_>>()?;
        // The columns read: from the key where they are in it, else
        // from the value.
        let mut parts = Vec::new();
        let mut from_value = Vec::new();
        for &c in &request.projection {
            match key_fields.iter().position(|&k| k == c) {
                Some(k) => parts.push(Part::Key(k)),
                None => {
                    parts.push(Part::Value(from_value.len()));
                    from_value.push(c);
                }
            }
        }
        let keys = RecordDecoder::new(
            upsert.format,
            Arc::clone(&upsert.schema),
            Arc::clone(&upsert.schema),
            (0..upsert.schema.fields().len()).collect(),
        )?;
        let values = match from_value.is_empty() {
            true => None,
            false => {
                let value_schema = Arc::new(
                    self.table_schema
                        .project(&value_fields)
                        .map_err(|e| SluiceError::Runtime(e.to_string()))?,
                );
                let read = Arc::new(
                    self.table_schema
                        .project(&from_value)
                        .map_err(|e| SluiceError::Runtime(e.to_string()))?,
                );
                let positions = from_value
                    .iter()
                    .map(|c| {
                        value_fields.iter().position(|v| v == c).ok_or_else(|| {
                            SluiceError::Runtime(format!(
                                "table `{}`: column {c} is in neither the key nor the value",
                                self.table
                            ))
                        })
                    })
                    .collect::<Result<_>>()?;
                Some(RecordDecoder::new(
                    self.format,
                    read,
                    value_schema,
                    positions,
                )?)
            }
        };
        // A tombstone's columns outside the key are null.
        let key_names: Vec<&String> = upsert.columns.iter().collect();
        let schema = Arc::new(arrow::datatypes::Schema::new(
            request
                .schema
                .fields()
                .iter()
                .map(|f| match key_names.contains(&f.name()) {
                    true => f.as_ref().clone(),
                    false => f.as_ref().clone().with_nullable(true),
                })
                .collect::<Vec<_>>(),
        ));
        Ok(Decoder::Upsert(Arc::new(UpsertDecoder {
            keys,
            values,
            parts,
            schema,
        })))
    }

    fn start_offsets(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        ranges: &[(i32, i64, i64)],
    ) -> Result<Vec<i64>> {
        let p = &self.properties;
        Ok(match &self.startup {
            Startup::Earliest => ranges.iter().map(|r| r.1).collect(),
            Startup::Latest => ranges.iter().map(|r| r.2).collect(),
            Startup::Specific(offsets) => ranges
                .iter()
                .map(|&(partition, low, _)| offsets.get(&partition).copied().unwrap_or(low))
                .collect(),
            Startup::Timestamp(millis) => self.offsets_at(consumer, topic, ranges, *millis)?,
            Startup::GroupOffsets { explicit } => {
                let mut list = TopicPartitionList::new();
                for &(partition, ..) in ranges {
                    list.add_partition(topic, partition);
                }
                // The planning consumer is in the table's group.
                let committed = consumer
                    .committed_offsets(list, self.connect_timeout)
                    .map_err(|e| {
                        p.error(format!("reading the group's offsets of topic '{topic}'"), e)
                    })?;
                let reset = p.get("auto.offset.reset");
                ranges
                    .iter()
                    .map(|&(partition, low, high)| {
                        match committed.find_partition(topic, partition).map(|e| e.offset()) {
                            Some(Offset::Offset(n)) => Ok(n),
                            _ => match reset {
                                Some("earliest" | "smallest" | "beginning") => Ok(low),
                                Some("latest" | "largest" | "end") => Ok(high),
                                _ if !explicit => Ok(low),
                                _ => Err(SluiceError::config(format!(
                                    "table `{}`: group '{}' has no committed offset for topic '{topic}' partition {partition}; set 'properties.auto.offset.reset' to 'earliest' or 'latest'",
                                    self.table,
                                    p.get("group.id").unwrap_or_default()
                                ))),
                            },
                        }
                    })
                    .collect::<Result<_>>()?
            }
        })
    }

    fn stop_offsets(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        ranges: &[(i32, i64, i64)],
    ) -> Result<Vec<Option<i64>>> {
        Ok(match &self.bounded {
            Bounded::Unbounded => vec![None; ranges.len()],
            Bounded::Latest => ranges.iter().map(|r| Some(r.2)).collect(),
            // A partition the offsets do not name is not read (its stop is
            // clamped to its start).
            Bounded::Specific(offsets) => ranges
                .iter()
                .map(|&(partition, ..)| Some(offsets.get(&partition).copied().unwrap_or(0)))
                .collect(),
            Bounded::Timestamp(millis) => self
                .offsets_at(consumer, topic, ranges, *millis)?
                .into_iter()
                .map(Some)
                .collect(),
        })
    }

    /// The first offset of each partition whose record time is at or after
    /// `millis` (the end of the partition when none is).
    fn offsets_at(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        ranges: &[(i32, i64, i64)],
        millis: i64,
    ) -> Result<Vec<i64>> {
        let mut list = TopicPartitionList::new();
        for &(partition, ..) in ranges {
            list.add_partition_offset(topic, partition, Offset::Offset(millis))
                .map_err(|e| self.properties.error("listing partitions", e))?;
        }
        let found = consumer
            .offsets_for_times(list, self.connect_timeout)
            .map_err(|e| {
                self.properties.error(
                    format!("finding offsets at time {millis} in topic '{topic}'"),
                    e,
                )
            })?;
        Ok(ranges
            .iter()
            .map(|&(partition, _, high)| {
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(n)) => n,
                    _ => high,
                }
            })
            .collect())
    }
}

/// Parses Flink's `partition:0,offset:42;partition:1,offset:300`.
fn specific_offsets(table: &str, key: &str, options: &mut Options) -> Result<BTreeMap<i32, i64>> {
    let text = options.take(key).ok_or_else(|| {
        SluiceError::config(format!(
            "table `{table}`: option '{key}' is required for this mode"
        ))
    })?;
    let bad = || {
        SluiceError::config(format!(
            "table `{table}`: option '{key}' = '{text}' is not like 'partition:0,offset:42;partition:1,offset:300'"
        ))
    };
    let mut offsets = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (partition, offset) = entry.split_once(',').ok_or_else(bad)?;
        let partition = partition
            .trim()
            .strip_prefix("partition:")
            .ok_or_else(bad)?;
        let offset = offset.trim().strip_prefix("offset:").ok_or_else(bad)?;
        offsets.insert(
            partition.trim().parse().map_err(|_| bad())?,
            offset.trim().parse().map_err(|_| bad())?,
        );
    }
    Ok(offsets)
}

impl Source for KafkaSource {
    fn plan_splits(&self, request: ScanRequest) -> BoxFuture<'_, Result<Vec<Arc<dyn Split>>>> {
        let source = self.clone();
        Box::pin(async move {
            // librdkafka's metadata calls block: keep them off the runtime's threads.
            tokio::task::spawn_blocking(move || source.plan(&request))
                .await
                .map_err(|e| SluiceError::Runtime(format!("planning a Kafka source: {e}")))?
        })
    }

    fn bad_records(&self) -> sluice_engine::connector::BadRecordPolicy {
        use sluice_engine::connector::BadRecordPolicy;
        match &self.bad_records {
            BadRecords::Fail => BadRecordPolicy::Fail,
            BadRecords::Skip => BadRecordPolicy::Skip,
            BadRecords::DeadLetter(topic) => BadRecordPolicy::DeadLetter(Arc::new(
                super::dead_letters::RowDeadLetters::new(topic, Arc::clone(&self.properties)),
            )),
        }
    }

    fn reading(&self) -> Reading {
        Reading::Concurrent {
            idle_timeout: self.idle_timeout,
        }
    }

    fn is_bounded(&self) -> bool {
        self.bounded != Bounded::Unbounded
    }

    fn changes(&self) -> SourceChanges {
        match (self.format, &self.upsert) {
            (_, Some(_)) => SourceChanges::Upsert,
            (RecordFormat::DebeziumJson { .. }, None) => SourceChanges::Retract,
            _ => SourceChanges::InsertOnly,
        }
    }
}

/// One partition, from a start offset to a stop offset (or forever).
#[derive(Debug)]
struct KafkaSplit {
    table: String,
    topic: String,
    partition: i32,
    start: i64,
    stop: Option<i64>,
    /// The partition's end (high watermark) at planning.
    end: i64,
    /// Records between the start and the stop (or the end at planning).
    backlog: u64,
    properties: Arc<Properties>,
    decoder: Decoder,
    format: RecordFormat,
    bad_records: BadRecords,
    batch_size: usize,
    metrics: Arc<JobMetrics>,
    /// The consumer this scan's splits share.
    consumers: Arc<ConsumerSlot>,
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
                    let position = SplitPosition::at_offset(reader.gathered.next);
                    Ok(batch.map(|b| ((b, position), reader)))
                })
            })
            .try_flatten()
            .boxed()
    }
}

/// How a split decodes its records.
#[derive(Debug, Clone)]
enum Decoder {
    /// Values only.
    Plain(RecordDecoder),
    /// Keys and values, as upserts.
    Upsert(Arc<UpsertDecoder>),
}

/// Records read from a partition and not yet decoded.
struct Gathered {
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
struct PartitionReader {
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
    fn open(split: Arc<KafkaSplit>, start: i64) -> Result<Self> {
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
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
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
