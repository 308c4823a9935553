//! Kafka transactions for the exactly-once sink (two-phase commit).
//!
//! Each subtask writes inside a transaction of its own. At a checkpoint
//! barrier the writer flushes it and hands it over *prepared*: written, not
//! committed, invisible to `read_committed` consumers. Once the checkpoint
//! is complete the sink commits it; a job that ends commits what is left.
//! The next epoch's records go to a transaction under another id, so one
//! epoch can wait for its checkpoint while the next is written.
//!
//! Transactional ids are `{prefix}-{subtask}-{slot}`, with a few slots per
//! subtask, so a restarted job knows them all: initialising a producer with
//! an id fences the producer that had it before and aborts its open
//! transaction, which is how a restarted job clears a crashed run's
//! leftovers (Flink's `sink.transactional-id-prefix` works the same way).
//!
//! What librdkafka cannot do: resume a transaction another producer began
//! (Flink does it by reflection into the Java client). So a transaction
//! prepared for a checkpoint whose manifest was written, but not committed
//! before a crash (the few milliseconds between the two), is aborted when
//! the job restarts, and its records are lost. The README says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, Producer};
use sluice_engine::{Result, SluiceError};

use super::Properties;

/// Transactional ids per subtask: one being written, one waiting for its
/// checkpoint, and one spare for a checkpoint that failed.
pub(crate) const SLOTS: usize = 3;

/// How long a librdkafka transaction call may take.
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Transactions {
    prefix: String,
    properties: Arc<Properties>,
    /// Prepared transactions, by transactional id, waiting for a commit.
    prepared: Mutex<BTreeMap<String, FutureProducer>>,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Transactions {
    pub(crate) fn new(prefix: String, properties: Arc<Properties>) -> Self {
        Self {
            prefix,
            properties,
            prepared: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn id(&self, subtask: usize, slot: usize) -> String {
        format!("{}-{subtask}-{slot}", self.prefix)
    }

    /// The subtask of one of this sink's transactional ids.
    fn subtask_of(&self, id: &str) -> Option<usize> {
        let rest = id.strip_prefix(&self.prefix)?.strip_prefix('-')?;
        rest.split('-').next()?.parse().ok()
    }

    fn prepared(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, FutureProducer>>> {
        self.prepared
            .lock()
            .map_err(|_| SluiceError::Runtime("a Kafka sink writer panicked".into()))
    }

    /// A slot of `subtask` whose id has no prepared transaction.
    pub(crate) fn free_slot(&self, subtask: usize) -> Result<usize> {
        let prepared = self.prepared()?;
        (0..SLOTS)
            .find(|&slot| !prepared.contains_key(&self.id(subtask, slot)))
            .ok_or_else(|| {
                SluiceError::Runtime(format!(
                    "subtask {subtask} of the Kafka sink has {SLOTS} transactions waiting for checkpoints that did not complete"
                ))
            })
    }

    /// A producer with transactional id `id`, its transaction begun. Any
    /// earlier producer with that id is fenced and its transaction aborted.
    pub(crate) async fn begin(&self, id: &str) -> Result<FutureProducer> {
        let producer = self.producer(id)?;
        let properties = Arc::clone(&self.properties);
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            producer
                .init_transactions(TIMEOUT)
                .and_then(|()| producer.begin_transaction())
                .map_err(|e| properties.error(format!("beginning transaction '{id}'"), e))?;
            Ok(producer)
        })
        .await
        .map_err(|e| SluiceError::Runtime(format!("beginning a Kafka transaction: {e}")))?
    }

    fn producer(&self, id: &str) -> Result<FutureProducer> {
        self.properties
            .config(&[
                ("linger.ms", "20"),
                ("partitioner", "murmur2_random"),
                // As long as Kafka brokers allow by default: a transaction
                // lives for a checkpoint interval, and longer under load.
                ("transaction.timeout.ms", "900000"),
            ])
            .set("transactional.id", id)
            .create()
            .map_err(|e| {
                self.properties
                    .error(format!("creating a producer for transaction '{id}'"), e)
            })
    }

    /// Hands over a flushed transaction to wait for its checkpoint.
    pub(crate) fn prepare(&self, id: String, producer: FutureProducer) -> Result<()> {
        self.prepared()?.insert(id, producer);
        Ok(())
    }

    /// Commits the prepared transactions among `ids`; ids not prepared here
    /// (committed already, or an earlier run's) are skipped.
    pub(crate) async fn commit(&self, ids: &[String]) -> Result<()> {
        let producers: Vec<(String, FutureProducer)> = {
            let mut prepared = self.prepared()?;
            ids.iter()
                .filter_map(|id| prepared.remove(id).map(|p| (id.clone(), p)))
                .collect()
        };
        self.commit_all_of(producers).await
    }

    /// Commits every prepared transaction (the job ended).
    pub(crate) async fn commit_all(&self) -> Result<()> {
        let producers: Vec<(String, FutureProducer)> =
            std::mem::take(&mut *self.prepared()?).into_iter().collect();
        self.commit_all_of(producers).await
    }

    /// Aborts every prepared transaction: the job was stopped, or failed,
    /// without checkpoints, so none of its output may become visible.
    pub(crate) async fn abort_all(&self) -> Result<()> {
        let producers: Vec<(String, FutureProducer)> =
            std::mem::take(&mut *self.prepared()?).into_iter().collect();
        if producers.is_empty() {
            return Ok(());
        }
        let properties = Arc::clone(&self.properties);
        tokio::task::spawn_blocking(move || {
            for (id, producer) in producers {
                producer
                    .abort_transaction(TIMEOUT)
                    .map_err(|e| properties.error(format!("aborting transaction '{id}'"), e))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| SluiceError::Runtime(format!("aborting Kafka transactions: {e}")))?
    }

    /// Commits in turn; on a failure the transaction and those after it
    /// stay prepared, for the next checkpoint (or restore) to commit.
    async fn commit_all_of(&self, producers: Vec<(String, FutureProducer)>) -> Result<()> {
        if producers.is_empty() {
            return Ok(());
        }
        let properties = Arc::clone(&self.properties);
        let (left, failure) = tokio::task::spawn_blocking(move || {
            let mut producers = producers.into_iter();
            while let Some((id, producer)) = producers.next() {
                if let Err(e) = producer.commit_transaction(TIMEOUT) {
                    let error = properties.error(format!("committing transaction '{id}'"), e);
                    let left: Vec<_> = std::iter::once((id, producer)).chain(producers).collect();
                    return (left, Some(error));
                }
            }
            (Vec::new(), None)
        })
        .await
        .map_err(|e| SluiceError::Runtime(format!("committing Kafka transactions: {e}")))?;
        self.prepared()?.extend(left);
        failure.map_or(Ok(()), Err)
    }

    /// Aborts whatever an earlier run left open under the ids of its
    /// `writers` subtasks and of those in `ids` (a restored checkpoint's
    /// transactions). Writers fence their own subtask's ids when they open,
    /// so this matters for subtasks a job restored at a lower parallelism
    /// no longer has.
    pub(crate) async fn abort_lingering(&self, ids: &[String], writers: usize) -> Result<()> {
        let subtasks: std::collections::BTreeSet<usize> = ids
            .iter()
            .filter_map(|id| self.subtask_of(id))
            .chain(0..writers)
            .collect();
        for subtask in subtasks {
            self.abort_subtask(subtask).await?;
        }
        Ok(())
    }

    /// Fences every id of `subtask`: its open transactions are aborted.
    pub(crate) async fn abort_subtask(&self, subtask: usize) -> Result<()> {
        for slot in 0..SLOTS {
            let id = self.id(subtask, slot);
            let producer = self.producer(&id)?;
            let properties = Arc::clone(&self.properties);
            tokio::task::spawn_blocking(move || {
                producer
                    .init_transactions(TIMEOUT)
                    .map_err(|e| properties.error(format!("fencing transaction '{id}'"), e))
            })
            .await
            .map_err(|e| SluiceError::Runtime(format!("fencing Kafka transactions: {e}")))??;
        }
        Ok(())
    }
}
