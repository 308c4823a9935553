//! Kafka topics as sources: one split per partition, read concurrently.
//!
//! Planning asks the cluster for the topics' partitions and offsets and
//! turns the startup and bounded modes into a start offset and (for a
//! bounded scan) a stop offset per partition. The splits of a scan share
//! one consumer (`consumer.rs`); each split (`split.rs`) assigns its
//! partition to it (no group rebalancing: Sluice's position belongs to
//! Sluice), reads it from a queue of its own and decodes the values it
//! fetches in batches (`partition_reader.rs`). With
//! `properties.group.id`, the positions read are committed to the group so
//! standard tools can show the lag; each partition then has a consumer of
//! its own.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::connector::{
    ConnectorContext, Reading, ScanRequest, Source, SourceChanges, Split,
};
use sluice_engine::sql::{Mode, Options, TableDef};
use sluice_engine::{Result, SluiceError};

use super::consumer::ConsumerSlot;
use super::decode::{RecordDecoder, RecordFormat};
use super::split::{Decoder, KafkaSplit};
use super::upsert_decode::{Part, UpsertDecoder};
use super::{DEFAULT_CONNECT_TIMEOUT, Properties, take_format};

/// How long a reader waits for a record before it checks whether a bounded
/// partition is done (its last offsets may be transaction markers).
pub(super) const POLL: Duration = Duration::from_millis(200);

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
pub(super) enum BadRecords {
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
