//! The `upsert-kafka` connector: an updating result as a compacted topic,
//! one record per change of a key, as Flink's `upsert-kafka` writes it.
//!
//! The table declares `PRIMARY KEY (...) NOT ENFORCED`: the key of every
//! record, written in `key.format`; the value, in `value.format`, is the
//! whole row (`'value.fields-include' = 'ALL'`, the default) or the columns
//! outside the key (`'EXCEPT_KEY'`). An insert and the row after an update
//! are written as the key's new value; the row before an update and a
//! delete are tombstones, the key with no value, as Flink writes them (a
//! `-U` whose `+U` follows is written over at once). Compaction drops them.
//! A NULL in a key column is an error: a primary key is NOT NULL. Records of a key go to one partition (the
//! murmur2 hash of the key, as Kafka's Java clients place them), from an
//! idempotent producer (a retry does not reorder them), and the sink's
//! input is hash-partitioned by the key so that each key's changes come
//! from one writer, in order: a reader that keeps the last value per key
//! (and forgets a key at its tombstone) has the table. That holds when all
//! changes of a key come from one upstream subtask, as with a GROUP BY on
//! the key; otherwise the planner puts an upsert materializer before the
//! sink, as Flink does (`engine/src/ops/upsert_materialize.rs`).
//!
//! Options, with Flink's names: `topic`, `properties.*`, `key.format`,
//! `value.format` (`json` or `csv`), `key.fields-prefix` (a prefix the key
//! columns carry in the table, not in the key record), `value.fields-include`,
//! `sink.delivery-guarantee` and `sink.transactional-id-prefix` (exactly
//! once in transactions, as the `kafka` sink).
//!
//! Read, the topic is a changelog again: the whole topic from its earliest
//! offset (a compacted topic is the table only read whole, so Flink's
//! upsert-kafka has no startup mode either), each record an upsert or a
//! tombstone of its key (`upsert_decode.rs`), normalised by key into `+I`,
//! `-U`/`+U` and `-D` by the operator the planner puts after the source.
//! `scan.bounded.mode` bounds it (batch mode needs it); bad records follow
//! `key.json.ignore-parse-errors`, `value.json.ignore-parse-errors` or
//! `dead-letter.topic`.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use sluice_engine::connector::{
    ConnectorContext, OptionNames, Sink, SinkFactory, Source, SourceFactory,
};
use sluice_engine::sql::{Options, TableDef};
use sluice_engine::{Result, SluiceError};

use super::sink::{KafkaSink, Partitioner, Settings, take_delivery};
use super::source::{KafkaSource, UpsertKeys};
use super::{Properties, RecordFormat};

/// Creates `upsert-kafka` sinks.
pub struct UpsertKafkaFactory;

const UPSERT_KAFKA_OPTIONS: OptionNames = &[
    "topic",
    "properties.",
    "key.format",
    "value.format",
    "key.fields-prefix",
    "value.fields-include",
    "key.csv.field-delimiter",
    "value.csv.field-delimiter",
    "sink.transactional-id-prefix",
    "sink.delivery-guarantee",
    "key.json.ignore-parse-errors",
    "value.json.ignore-parse-errors",
    "dead-letter.topic",
    "connect.timeout",
    "scan.bounded.mode",
    "scan.bounded.timestamp-millis",
    "scan.bounded.specific-offsets",
    "scan.watermark.idle-timeout",
];

impl SinkFactory for UpsertKafkaFactory {
    fn option_names(&self) -> OptionNames {
        UPSERT_KAFKA_OPTIONS
    }

    fn create_sink(
        &self,
        table: &TableDef,
        options: &mut Options,
        _context: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        let name = table.name.clone();
        let config = |m: String| SluiceError::config(format!("table `{name}`: {m}"));
        if table.primary_key.is_empty() {
            return Err(config(
                "the 'upsert-kafka' connector needs a PRIMARY KEY (...) NOT ENFORCED: every record is the newest value of its key".to_string(),
            ));
        }
        let topic = options.require("topic")?;
        if topic.contains(';') {
            return Err(config("an upsert-kafka sink writes one topic".to_string()));
        }
        let properties = Arc::new(Properties::take(&name, options)?);
        let Layout {
            key_format,
            format,
            key_fields,
            key_schema,
            value_fields,
        } = Layout::take(table, options)?;
        let (fire_and_forget, transactions) = take_delivery(&name, options, &properties)?;
        Ok(Arc::new(KafkaSink(Arc::new(Settings {
            table: name,
            topic,
            schema: Arc::clone(&table.schema),
            properties,
            format,
            key_fields,
            key_format,
            key_schema,
            value_fields,
            upsert: true,
            partitioner: Partitioner::Default,
            fire_and_forget,
            transactions,
        }))))
    }
}

impl SourceFactory for UpsertKafkaFactory {
    fn option_names(&self) -> OptionNames {
        UPSERT_KAFKA_OPTIONS
    }

    fn create_source(
        &self,
        table: &TableDef,
        options: &mut Options,
        context: &ConnectorContext,
    ) -> Result<Arc<dyn Source>> {
        let layout = Layout::take(table, options)?;
        let mut ignore = false;
        for side in ["key", "value"] {
            let option = format!("{side}.json.ignore-parse-errors");
            ignore |= options
                .take_parsed::<bool>(&option, "'true' or 'false'")?
                .unwrap_or(false);
        }
        // Computed columns are in neither the key nor the value.
        let names = |columns: &[usize]| -> Vec<String> {
            columns
                .iter()
                .map(|&c| table.schema.field(c).name().clone())
                .filter(|name| table.physical.index_of(name).is_ok())
                .collect()
        };
        let upsert = UpsertKeys {
            format: layout.key_format,
            schema: layout.key_schema,
            columns: names(&layout.key_fields),
            value_columns: names(&layout.value_fields),
        };
        Ok(Arc::new(KafkaSource::with_format(
            table,
            options,
            context,
            layout.format,
            ignore,
            Some(upsert),
        )?))
    }
}

/// How a table's rows are laid out in records: the primary key in the
/// key, in `key.format`; the whole row or the rest in the value.
struct Layout {
    key_format: RecordFormat,
    format: RecordFormat,
    /// The primary key's columns, and the key record's columns (their
    /// names without `key.fields-prefix`).
    key_fields: Vec<usize>,
    key_schema: SchemaRef,
    /// The columns in the value.
    value_fields: Vec<usize>,
}

impl Layout {
    fn take(table: &TableDef, options: &mut Options) -> Result<Self> {
        let name = table.name.clone();
        let config = |m: String| SluiceError::config(format!("table `{name}`: {m}"));
        if table.primary_key.is_empty() {
            return Err(config(
                "the 'upsert-kafka' connector needs a PRIMARY KEY (...) NOT ENFORCED: every record is the newest value of its key".to_string(),
            ));
        }
        let key_format = take_format(options, "key")?;
        let format = take_format(options, "value")?;
        let prefix = options.take("key.fields-prefix").unwrap_or_default();
        let key_fields = table.primary_key.clone();
        let key_schema = Arc::new(Schema::new(
            key_fields
                .iter()
                .map(|&c| {
                    let field = table.schema.field(c);
                    let name = field.name().strip_prefix(prefix.as_str()).ok_or_else(|| {
                        config(format!(
                            "key column `{}` does not start with 'key.fields-prefix' '{prefix}'",
                            field.name()
                        ))
                    })?;
                    Ok(Field::new(
                        name,
                        field.data_type().clone(),
                        field.is_nullable(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?,
        ));
        let value_fields: Vec<usize> = match options
            .take("value.fields-include")
            .map(|v| v.to_ascii_uppercase())
            .as_deref()
        {
            None | Some("ALL") => (0..table.schema.fields().len()).collect(),
            Some("EXCEPT_KEY") => {
                let fields: Vec<usize> = (0..table.schema.fields().len())
                    .filter(|c| !key_fields.contains(c))
                    .collect();
                if fields.is_empty() {
                    return Err(config(
                        "'value.fields-include' = 'EXCEPT_KEY' leaves no column for the value: every column is in the key".to_string(),
                    ));
                }
                fields
            }
            Some(other) => {
                return Err(config(format!(
                    "option 'value.fields-include' = '{other}' is not one of 'ALL', 'EXCEPT_KEY'"
                )));
            }
        };
        if !prefix.is_empty() && value_fields.len() == table.schema.fields().len() {
            return Err(config(
                "'key.fields-prefix' needs 'value.fields-include' = 'EXCEPT_KEY', as in Flink (the value would hold the prefixed key columns)".to_string(),
            ));
        }
        Ok(Self {
            key_format,
            format,
            key_fields,
            key_schema,
            value_fields,
        })
    }
}

/// `key.format` or `value.format` (`json` or `csv`, with its
/// `<side>.csv.field-delimiter`).
fn take_format(options: &mut Options, side: &str) -> Result<RecordFormat> {
    let key = format!("{side}.format");
    let name = options.require(&key)?;
    match name.to_ascii_lowercase().as_str() {
        "json" => Ok(RecordFormat::Json),
        "csv" => {
            let delimiter = match options.take(&format!("{side}.csv.field-delimiter")) {
                None => b',',
                Some(d) if d.len() == 1 => d.as_bytes()[0],
                Some(d) => {
                    return Err(SluiceError::config(format!(
                        "table `{}`: option '{side}.csv.field-delimiter' = '{d}' must be one character",
                        options.table()
                    )));
                }
            };
            Ok(RecordFormat::Csv { delimiter })
        }
        other => Err(SluiceError::config(format!(
            "table `{}`: option '{key}' = '{other}' is not supported by the upsert-kafka connector (use 'json' or 'csv')",
            options.table()
        ))),
    }
}
