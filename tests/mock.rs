//! Helpers for tests against librdkafka's in-process mock cluster.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// `n` bids as JSON records, dealt over `partitions`, one second apart.
pub async fn produce_bids(brokers: &str, topic: &str, partitions: i32, n: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for i in 0..n {
        let value = format!(
            r#"{{"auction": {}, "price": {i}, "ts": {}}}"#,
            i % 7,
            1_767_225_600_000_i64 + i as i64 * 1000
        );
        let record = FutureRecord::<(), str>::to(topic)
            .partition(i as i32 % partitions)
            .payload(&value);
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("send"),
        );
    }
    for d in deliveries {
        d.await
            .expect("delivered")
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
}

/// Every record of `topic` a `read_committed` consumer sees, sorted.
pub fn read_committed(brokers: &str, topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "exactly-once-test")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let mut idle_since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while idle_since.elapsed() < Duration::from_secs(3) && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
                idle_since = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    values.sort();
    values
}
