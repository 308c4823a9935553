//! The test broker: where it is, fresh topics on it, and producing to them.
//!
//! Tests find the broker through `SLUICE_KAFKA_BROKERS` (scripts/test.sh
//! starts one with scripts/broker.sh and sets it). Without it, or when
//! nothing answers there, a Kafka test fails at once saying so, rather than
//! hanging or passing vacuously.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// The bootstrap address of the test broker, checked once per process.
pub fn brokers() -> Result<String, String> {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let brokers = std::env::var("SLUICE_KAFKA_BROKERS").map_err(|_| {
                "SLUICE_KAFKA_BROKERS is not set: start a broker with `scripts/broker.sh start` \
                 and export SLUICE_KAFKA_BROKERS=127.0.0.1:9092 (scripts/test.sh does both)"
                    .to_string()
            })?;
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .create()
                .map_err(|e| format!("Kafka client for {brokers}: {e}"))?;
            consumer
                .fetch_metadata(None, Duration::from_secs(5))
                .map_err(|e| {
                    format!("no Kafka broker answers at SLUICE_KAFKA_BROKERS={brokers}: {e}")
                })?;
            Ok(brokers)
        })
        .clone()
}

/// A topic name no other test (or earlier run) has used: the broker keeps
/// every topic, since deleting one on tansu's SQLite store deletes them all.
pub fn unique_topic(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh topic with `partitions` partitions and returns its name.
pub async fn new_topic(prefix: &str, partitions: i32) -> Result<String, String> {
    let brokers = brokers()?;
    let topic = unique_topic(prefix);
    sluice_connectors::kafka::create_topic(&brokers, &topic, partitions)
        .await
        .map_err(|e| e.to_string())?;
    Ok(topic)
}

/// Produces `values` to one partition of `topic` and waits until every one
/// is acknowledged.
pub async fn produce(topic: &str, partition: i32, values: &[Vec<u8>]) -> Result<(), String> {
    produce_at(topic, partition, values, None).await
}

/// Like [`produce`], with each record's timestamp (epoch milliseconds).
pub async fn produce_at(
    topic: &str,
    partition: i32,
    values: &[Vec<u8>],
    timestamps: Option<&[i64]>,
) -> Result<(), String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers()?)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let mut deliveries = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let mut record = FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(value.as_slice());
        if let Some(timestamps) = timestamps {
            record = record.timestamp(timestamps[i]);
        }
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| format!("producing to {topic}: {e}"))?,
        );
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(format!("producing to {topic}: {e}")),
            Err(_) => return Err(format!("producing to {topic}: producer gone")),
        }
    }
    Ok(())
}

/// Produces records with keys to one partition of `topic`, in order; a
/// record without a value is a tombstone.
pub async fn produce_keyed(
    topic: &str,
    partition: i32,
    records: &[(Option<&str>, Option<&str>)],
) -> Result<(), String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers()?)
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| e.to_string())?;
    for (key, value) in records {
        let mut record = FutureRecord::<str, str>::to(topic).partition(partition);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| format!("producing to {topic}: {e}"))?;
    }
    Ok(())
}

/// A record read back: partition, key, value.
pub type Record = (i32, Option<Vec<u8>>, Vec<u8>);

/// Reads every record of every partition of `topic`, up to the end at the
/// time of the call, in partition and offset order.
pub fn read_all(topic: &str) -> Result<Vec<Record>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers()?)
        .set("group.id", "sluice-tests")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len()) as i32;
    let mut out = Vec::new();
    for partition in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| e.to_string())?;
        if high <= low {
            continue;
        }
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition_offset(topic, partition, rdkafka::Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        consumer.assign(&list).map_err(|e| e.to_string())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut next = low;
        while next < high {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "reading {topic} partition {partition}: timed out at offset {next} of {high}"
                ));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    out.push((
                        partition,
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    ));
                }
                Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
                None => {}
            }
        }
    }
    Ok(out)
}
