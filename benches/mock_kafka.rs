//! Filling librdkafka's mock cluster with bids, for the benchmarks that read
//! Kafka.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Creates `topic` on `cluster` and produces the bids of `dir` (JSON lines)
/// to it, dealt over its partitions. Fails if the cluster dropped any: it
/// keeps only about 5 MB per partition.
pub async fn fill<C: rdkafka::producer::ProducerContext>(
    cluster: &MockCluster<'_, C>,
    topic: &str,
    partitions: i32,
    dir: &Path,
) -> Result<u64> {
    cluster.create_topic(topic, partitions, 1)?;
    let brokers = cluster.bootstrap_servers();
    let produced = produce_bids(&brokers, topic, partitions, dir).await?;
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    for partition in 0..partitions {
        let (low, _) = probe.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if low > 0 {
            bail!(
                "the mock cluster dropped {low} records of partition {partition}: use fewer events or more partitions"
            );
        }
    }
    Ok(produced)
}

/// Produces the bids of `dir` (JSON lines) to `topic`, dealt over its partitions.
async fn produce_bids(brokers: &str, topic: &str, partitions: i32, dir: &Path) -> Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "50")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut sent = 0u64;
    let mut pending = std::collections::VecDeque::new();
    for file in files {
        let text = std::fs::read(&file)?;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record = FutureRecord::<(), [u8]>::to(topic)
                .partition((sent % partitions as u64) as i32)
                .payload(line);
            pending.push_back(producer.send_result(record).map_err(|(e, _)| e)?);
            sent += 1;
            if pending.len() > 200_000
                && let Some(delivery) = pending.pop_front()
            {
                delivery.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for delivery in pending {
        delivery.await?.map_err(|(e, _)| e)?;
    }
    Ok(sent)
}
