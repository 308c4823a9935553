//! One librdkafka consumer for every partition a Kafka table reads in this
//! process; each partition has a queue of its own.
//!
//! A consumer per partition costs threads and connections per partition.
//! With 32 partitions on librdkafka's mock cluster, some partitions then
//! went without fetches for about a second at a time. One consumer fetches
//! for all its assigned partitions together, and split partition queues
//! keep each split's records apart, so every split still reads at its own
//! pace and position. A table that commits to a group keeps a consumer per
//! partition (see `PartitionReader::open`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sluice_engine::{Result, SluiceError};

use super::Properties;

/// How long the main queue is waited on before the poller checks whether
/// the consumer is still in use.
const MAIN_POLL: Duration = Duration::from_millis(200);

/// Where the splits of one scan find the consumer they share.
#[derive(Debug, Default)]
pub(super) struct ConsumerSlot(Mutex<Weak<SharedConsumer>>);

impl ConsumerSlot {
    /// The consumer the scan's readers share, made by `create` if none is
    /// alive. Must be called on a tokio runtime (the main queue is served
    /// by a task).
    pub fn get_or_create(
        &self,
        create: impl FnOnce() -> Result<StreamConsumer>,
    ) -> Result<Arc<SharedConsumer>> {
        let mut slot = self
            .0
            .lock()
            .map_err(|_| SluiceError::Runtime("a Kafka reader panicked".into()))?;
        if let Some(shared) = slot.upgrade() {
            return Ok(shared);
        }
        let consumer = Arc::new(create()?);
        let failed = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        tokio::spawn(serve_main_queue(
            Arc::downgrade(&consumer),
            Arc::clone(&failed),
            Arc::clone(&closing),
        ));
        let shared = Arc::new(SharedConsumer {
            consumer: Some(consumer),
            failed,
            closing,
        });
        *slot = Arc::downgrade(&shared);
        Ok(shared)
    }
}

/// A consumer shared by the readers of one scan.
pub(super) struct SharedConsumer {
    /// Present until dropped.
    consumer: Option<Arc<StreamConsumer>>,
    /// A fatal error the consumer reported outside any partition.
    failed: Arc<Mutex<Option<KafkaError>>>,
    /// Tells the main queue's poller to let go of the consumer and end.
    closing: Arc<AtomicBool>,
}

impl std::fmt::Debug for SharedConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConsumer").finish_non_exhaustive()
    }
}

impl SharedConsumer {
    pub fn consumer(&self) -> Result<&Arc<StreamConsumer>> {
        self.consumer
            .as_ref()
            .ok_or_else(|| SluiceError::Runtime("a Kafka consumer was used after closing".into()))
    }

    /// Assigns `partition` of `topic` from `start` and returns its queue.
    pub fn assign(
        &self,
        properties: &Properties,
        topic: &str,
        partition: i32,
        start: i64,
    ) -> Result<StreamPartitionQueue<DefaultConsumerContext>> {
        let consumer = self.consumer()?;
        let doing = format!("assigning topic '{topic}' partition {partition}");
        // The queue is split off before the assignment, so that no record of
        // the partition reaches the main queue.
        let queue = consumer
            .split_partition_queue(topic, partition)
            .ok_or_else(|| SluiceError::Runtime(format!("{doing}: librdkafka gave no queue")))?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .and_then(|()| consumer.incremental_assign(&assignment))
            .map_err(|e| properties.error(doing, e))?;
        Ok(queue)
    }

    /// Stops fetching `partition` of `topic`.
    pub fn unassign(&self, topic: &str, partition: i32) {
        let Ok(consumer) = self.consumer() else {
            return;
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition(topic, partition);
        if let Err(e) = consumer.incremental_unassign(&assignment) {
            tracing::debug!(topic, partition, "unassigning a partition: {e}");
        }
    }

    /// The fatal error the consumer reported outside any partition, if any.
    pub fn failure(&self) -> Option<KafkaError> {
        self.failed.lock().ok().and_then(|f| f.clone())
    }
}

impl Drop for SharedConsumer {
    /// Closing a consumer waits on the network (leaving the group,
    /// committing): it is done off the runtime's threads.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let close = move || {
            // The poller holds the consumer for at most one more wait of
            // MAIN_POLL, then ends; the last reference is dropped here.
            let deadline = std::time::Instant::now() + 10 * MAIN_POLL;
            while Arc::strong_count(&consumer) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(consumer);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}

/// Serves the consumer's main queue, as librdkafka requires once partition
/// queues are split off: errors that concern no partition arrive here.
async fn serve_main_queue(
    consumer: Weak<StreamConsumer>,
    failed: Arc<Mutex<Option<KafkaError>>>,
    closing: Arc<AtomicBool>,
) {
    loop {
        if closing.load(Ordering::Acquire) {
            return;
        }
        let Some(c) = consumer.upgrade() else {
            return;
        };
        match tokio::time::timeout(MAIN_POLL, c.recv()).await {
            Err(_) => {}
            Ok(Ok(message)) => tracing::debug!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "a record of an unassigned partition reached the main queue"
            ),
            Ok(Err(e)) if is_fatal(&e) => {
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert(e);
                }
            }
            Ok(Err(e)) => tracing::warn!("Kafka consumer: {e} (retrying)"),
        }
    }
}

/// Errors librdkafka does not retry by itself: the job stops on them.
pub(super) fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::OffsetOutOfRange
                | RDKafkaErrorCode::AutoOffsetReset
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Fatal
        )
    )
}
