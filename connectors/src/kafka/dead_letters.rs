//! Rows a Kafka table sets aside after decoding: those whose event time is
//! null or too far ahead (see `sluice_engine::time::gate`). They go to the
//! table's `dead-letter.topic`, as records that cannot be decoded do, but
//! as the decoded row (a JSON object, as Flink's JSON format writes it):
//! the original record is no longer at hand. Headers name the table, the
//! split and the reason (`sluice.table`, `sluice.split`, `sluice.error`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_engine::Result;
use sluice_engine::connector::DeadLetters;

use super::Properties;
use super::decode::RecordFormat;

/// The dead-letter topic of one table, with a producer made on first use.
pub(crate) struct RowDeadLetters {
    pub(crate) topic: String,
    pub(crate) properties: Arc<Properties>,
    producer: OnceLock<FutureProducer>,
}

impl std::fmt::Debug for RowDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowDeadLetters")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl RowDeadLetters {
    pub(crate) fn new(topic: &str, properties: Arc<Properties>) -> Self {
        Self {
            topic: topic.to_string(),
            properties,
            producer: OnceLock::new(),
        }
    }

    fn producer(&self) -> Result<&FutureProducer> {
        if let Some(producer) = self.producer.get() {
            return Ok(producer);
        }
        let producer = self
            .properties
            .config(&[])
            .create::<FutureProducer>()
            .map_err(|e| {
                self.properties
                    .error("creating the dead-letter producer", e)
            })?;
        Ok(self.producer.get_or_init(|| producer))
    }
}

impl DeadLetters for RowDeadLetters {
    fn send<'a>(
        &'a self,
        split: &'a str,
        rows: RecordBatch,
        reasons: Vec<String>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let producer = self.producer()?;
            let values = super::sink::encode(&rows, RecordFormat::Json, &rows.schema())?;
            let table = self.properties.table.as_str();
            for (value, reason) in values.iter().zip(&reasons) {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "sluice.table",
                        value: Some(table),
                    })
                    .insert(Header {
                        key: "sluice.split",
                        value: Some(split),
                    })
                    .insert(Header {
                        key: "sluice.error",
                        value: Some(reason.as_str()),
                    });
                let record = FutureRecord::<(), [u8]>::to(&self.topic)
                    .payload(value)
                    .headers(headers);
                if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
                    return Err(self.properties.error(
                        format!("dead-lettering a row of {split} to '{}'", self.topic),
                        e,
                    ));
                }
                tracing::warn!(
                    table,
                    split,
                    "dead-lettered to '{}': a row that {reason}",
                    self.topic
                );
            }
            Ok(())
        })
    }
}
