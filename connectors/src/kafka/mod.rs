//! The `kafka` connector: topics as unbounded (or bounded) sources, and sinks.
//!
//! Source options, with Flink's names:
//! - `topic` (one, or several separated by `;`) or `topic-pattern` (a regex
//!   matched against the whole topic name);
//! - `properties.*`: passed to librdkafka (`properties.bootstrap.servers`,
//!   `properties.group.id`, security settings);
//! - `format`: `json`, `csv` or `raw` (`csv.field-delimiter`,
//!   `json.ignore-parse-errors`, `csv.ignore-parse-errors`), or
//!   `debezium-json`: a change data capture stream of Debezium's envelopes,
//!   read as a changelog ([`crate::debezium`]; `debezium-json.schema-include`,
//!   `debezium-json.ignore-parse-errors`), and written as one;
//! - `scan.startup.mode`: `group-offsets` (the default with a
//!   `properties.group.id`, as in Flink: where the group has no offset, the
//!   earliest), `earliest-offset` (the default without one), `latest-offset`,
//!   `group-offsets`, `timestamp` (`scan.startup.timestamp-millis`) or
//!   `specific-offsets` (`scan.startup.specific-offsets` =
//!   `'partition:0,offset:42;partition:1,offset:300'`);
//! - `scan.bounded.mode`: `unbounded` (default), `latest-offset`,
//!   `timestamp` (`scan.bounded.timestamp-millis`) or `specific-offsets`
//!   (`scan.bounded.specific-offsets`; partitions it does not name are not
//!   read): the source ends there, waiting for offsets not yet written;
//! - `scan.watermark.idle-timeout`: a partition quiet for this long stops
//!   holding the watermark back.
//!
//! Sluice's own source options: `dead-letter.topic` (records that cannot
//! be decoded go there, on the same cluster, unchanged, with headers naming
//! their topic, partition, offset and the reason) and `connect.timeout`
//! (how long planning waits for the cluster; default 10 s).
//!
//! Sink options: `topic`, `properties.*`, `format`, `key.fields` (columns
//! sent as the record key, a JSON object or CSV line), `sink.partitioner`
//! (`default`: by the murmur2 hash of the key, as Kafka's Java clients;
//! `fixed`: each subtask writes one partition; `round-robin`),
//! `sink.delivery-guarantee` (`at-least-once`, the default, or `none`).
//! JSON values write timestamps as Flink's JSON format does by default
//! (`yyyy-MM-dd HH:mm:ss.SSS`).

mod consumer;
mod dead_letters;
mod decode;
mod partition_reader;
mod sink;
mod source;
mod split;
mod transactions;
mod upsert;
mod upsert_decode;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use sluice_engine::connector::{
    ConnectorContext, OptionNames, Sink, SinkFactory, Source, SourceFactory,
};
use sluice_engine::sql::{Options, TableDef};
use sluice_engine::{Result, SluiceError};

pub use decode::RecordFormat;
pub use upsert::UpsertKafkaFactory;

/// How long planning waits for the cluster unless `connect.timeout` says.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The librdkafka settings of a table: its `properties.*` options.
#[derive(Debug, Clone)]
pub(crate) struct Properties {
    table: String,
    values: BTreeMap<String, String>,
}

impl Properties {
    fn take(table: &str, options: &mut Options) -> Result<Self> {
        let values = options.take_prefixed("properties.");
        if !values.contains_key("bootstrap.servers") {
            return Err(SluiceError::config(format!(
                "table `{table}`: option 'properties.bootstrap.servers' is required"
            )));
        }
        Ok(Self {
            table: table.to_string(),
            values,
        })
    }

    pub(crate) fn bootstrap(&self) -> &str {
        self.values
            .get("bootstrap.servers")
            .map_or("", String::as_str)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A librdkafka configuration: Sluice's defaults, then the table's
    /// properties, which win.
    pub(crate) fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.values {
            config.set(key, value);
        }
        config
    }

    /// An error from the cluster, naming the table and the brokers. Bad
    /// client settings, credentials the cluster refuses and features the
    /// broker lacks are configuration errors (a restart cannot cure them);
    /// the rest (an unreachable or restarting broker, a timeout) may pass.
    pub(crate) fn error(&self, doing: impl std::fmt::Display, e: KafkaError) -> SluiceError {
        let context = format!(
            "table `{}`: {doing} (Kafka at '{}')",
            self.table,
            self.bootstrap()
        );
        let permanent = matches!(
            e,
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
        ) || matches!(
            e.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::UnsupportedFeature
                    | RDKafkaErrorCode::UnsupportedVersion
                    | RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::InvalidTransactionTimeout
                    | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed
                    | RDKafkaErrorCode::SaslAuthenticationFailed
            )
        );
        if permanent {
            SluiceError::config(format!("{context}: {e}"))
        } else {
            SluiceError::io(context, e)
        }
    }
}

/// Reads `format` and its options.
fn take_format(options: &mut Options) -> Result<RecordFormat> {
    let name = options.require("format")?;
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(RecordFormat::Json),
        "raw" => Ok(RecordFormat::Raw),
        "debezium-json" => Ok(RecordFormat::DebeziumJson {
            schema_include: options
                .take_parsed::<bool>("debezium-json.schema-include", "'true' or 'false'")?
                .unwrap_or(false),
        }),
        "csv" => {
            let delimiter = crate::filesystem::take_csv_delimiter(options)?;
            Ok(RecordFormat::Csv { delimiter })
        }
        other => Err(SluiceError::config(format!(
            "table `{}`: option 'format' = '{other}' is not supported by the kafka connector (use 'json', 'csv', 'raw' or 'debezium-json')",
            options.table()
        ))),
    }
}

/// Creates Kafka sources and sinks.
pub struct KafkaFactory;

/// Every option of a Kafka table, read or written (one set, as in Flink:
/// a table both read and written names the options of both).
const KAFKA_OPTIONS: OptionNames = &[
    "topic",
    "topic-pattern",
    "properties.",
    "format",
    "csv.field-delimiter",
    "json.ignore-parse-errors",
    "csv.ignore-parse-errors",
    "debezium-json.schema-include",
    "debezium-json.ignore-parse-errors",
    "dead-letter.topic",
    "connect.timeout",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.startup.specific-offsets",
    "scan.bounded.mode",
    "scan.bounded.timestamp-millis",
    "scan.bounded.specific-offsets",
    "scan.watermark.idle-timeout",
    "key.fields",
    "sink.partitioner",
    "sink.transactional-id-prefix",
    "sink.delivery-guarantee",
];

impl SourceFactory for KafkaFactory {
    fn option_names(&self) -> OptionNames {
        KAFKA_OPTIONS
    }
    fn create_source(
        &self,
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>> {
        Ok(Arc::new(source::KafkaSource::from_options(
            table, options, context,
        )?))
    }
}

impl SinkFactory for KafkaFactory {
    fn option_names(&self) -> OptionNames {
        KAFKA_OPTIONS
    }
    fn create_sink(
        &self,
        table: &TableDef,
        options: &mut Options,
        _context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        Ok(Arc::new(sink::KafkaSink::from_options(table, options)?))
    }
}

/// Creates `topic` with `partitions` partitions (replication 1) unless it
/// exists. For generators and tests: Sluice jobs never create topics.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| SluiceError::io(format!("connecting to Kafka at '{brokers}'"), e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| SluiceError::io(format!("creating topic '{topic}' at '{brokers}'"), e))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(SluiceError::io(
                    format!("creating topic '{name}' at '{brokers}'"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_broker_may_pass_and_a_bad_setting_does_not() {
        let properties = Properties {
            table: "t".into(),
            values: BTreeMap::from([("bootstrap.servers".into(), "127.0.0.1:1".into())]),
        };
        for transient in [
            KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
            KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown),
            KafkaError::MessageProduction(RDKafkaErrorCode::RequestTimedOut),
        ] {
            let e = properties.error("reading", transient);
            assert!(e.is_retryable(), "{e}");
            assert!(
                e.to_string()
                    .starts_with("table `t`: reading (Kafka at '127.0.0.1:1')")
            );
        }
        for permanent in [
            KafkaError::ClientCreation("bad setting".into()),
            KafkaError::MessageConsumption(RDKafkaErrorCode::SaslAuthenticationFailed),
            KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed),
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnsupportedVersion),
        ] {
            let e = properties.error("reading", permanent);
            assert!(matches!(e, SluiceError::Config(_)), "{e:?}");
            assert!(!e.is_retryable(), "{e}");
        }
    }
}
