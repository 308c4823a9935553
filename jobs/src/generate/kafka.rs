//! Generated tables as JSON records on Kafka topics (`sluice gen ... --kafka`).
//!
//! Rows are spread over the topic's partitions one by one in turn, so each
//! partition keeps the generator's time order; a job reading the topic sees
//! the same disorder as one reading the files. Every delivery is confirmed
//! before the generator says it is done.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use sluice_engine::{Result, SluiceError};

/// Remembers the first failed delivery, so it cannot pass unnoticed.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.failed.lock()
        {
            failed.get_or_insert_with(|| e.clone());
        }
    }
}

/// One table's rows going to one topic.
pub struct KafkaTableWriter {
    brokers: String,
    topic: String,
    partitions: i32,
    producer: ThreadedProducer<Deliveries>,
    rows: u64,
    /// Rows per second to aim for, and since when.
    pace: Option<(f64, Instant)>,
}

impl KafkaTableWriter {
    /// Creates `topic` with `partitions` partitions unless it exists, and
    /// spreads rows over the partitions it has.
    pub fn new(brokers: &str, topic: &str, partitions: i32, rate: Option<f64>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SluiceError::io("starting a runtime", e))?;
        runtime.block_on(sluice_connectors::kafka::create_topic(
            brokers, topic, partitions,
        ))?;
        let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .create_with_context(Deliveries::default())
            .map_err(|e| SluiceError::io(format!("connecting to Kafka at '{brokers}'"), e))?;
        // The topic may have existed with another number of partitions.
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| SluiceError::io(format!("reading topic '{topic}' at '{brokers}'"), e))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(partitions, |t| t.partitions().len() as i32);
        Ok(Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            partitions: partitions.max(1),
            producer,
            rows: 0,
            pace: rate.filter(|r| *r > 0.0).map(|r| (r, Instant::now())),
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut buffer = Vec::new();
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buffer);
        writer
            .write(batch)
            .and_then(|()| writer.finish())
            .map_err(|e| SluiceError::Data(format!("encoding rows for '{}': {e}", self.topic)))?;
        drop(writer);
        for value in buffer.split(|b| *b == b'\n').take(batch.num_rows()) {
            let partition = (self.rows % self.partitions as u64) as i32;
            let mut record = BaseRecord::<(), [u8]>::to(&self.topic)
                .partition(partition)
                .payload(value);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(self.error(e)),
                }
            }
            self.rows += 1;
            self.check()?;
            if let Some((rate, since)) = self.pace {
                let due = Duration::from_secs_f64(self.rows as f64 / rate);
                if let Some(wait) = due.checked_sub(since.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let failed = self
            .producer
            .context()
            .failed
            .lock()
            .ok()
            .and_then(|f| f.clone());
        match failed {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }

    fn error(&self, e: KafkaError) -> SluiceError {
        SluiceError::io(
            format!("producing to topic '{}' at '{}'", self.topic, self.brokers),
            e,
        )
    }

    /// Waits until every record is acknowledged.
    pub fn finish(self) -> Result<u64> {
        self.producer
            .flush(Duration::from_secs(120))
            .map_err(|e| self.error(e))?;
        self.check()?;
        Ok(self.rows)
    }
}
