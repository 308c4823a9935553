//! Where a chain's output leaves it: an exchange to the next stage's
//! subtasks, or a sink writer.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use super::channel::Sender;
use super::exchange::hash_partition;
use super::task::STOPPED;
use crate::connector::SinkWriter;
use crate::error::{Result, SluiceError};
use crate::metrics::JobMetrics;
use crate::ops::Message;
use crate::plan::Partitioning;

pub(super) enum Exit {
    Exchange {
        partitioning: Partitioning,
        senders: Vec<Sender>,
        next: usize,
        hashes: Vec<u64>,
    },
    Sink {
        table: String,
        schema: SchemaRef,
        writer: Option<Box<dyn SinkWriter>>,
        metrics: Arc<JobMetrics>,
    },
}

impl Exit {
    /// Sends or writes one message; returns the rows it wrote to a sink.
    pub(super) async fn send(&mut self, message: Message) -> Result<u64> {
        match self {
            Exit::Exchange {
                partitioning,
                senders,
                next,
                hashes,
            } => {
                let stopped = |_| SluiceError::Runtime(format!("a downstream subtask {STOPPED}"));
                match message {
                    Message::Data(batch) => match partitioning {
                        Partitioning::Hash(keys) => {
                            for (subtask, part) in
                                hash_partition(&batch, keys, senders.len(), hashes)?
                            {
                                senders[subtask]
                                    .send(Message::Data(part))
                                    .await
                                    .map_err(stopped)?;
                            }
                        }
                        Partitioning::Rebalance => {
                            *next = (*next + 1) % senders.len();
                            senders[*next]
                                .send(Message::Data(batch))
                                .await
                                .map_err(stopped)?;
                        }
                        Partitioning::Forward | Partitioning::Single => {
                            senders[0]
                                .send(Message::Data(batch))
                                .await
                                .map_err(stopped)?;
                        }
                    },
                    control => {
                        for sender in senders.iter() {
                            sender.send(control.clone()).await.map_err(stopped)?;
                        }
                    }
                }
            }
            Exit::Sink {
                table,
                schema,
                writer,
                metrics,
            } => match message {
                Message::Data(batch) => {
                    let rows = batch.num_rows() as u64;
                    let batch = RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec())
                        .map_err(|e| {
                            SluiceError::Data(format!(
                                "rows for table `{table}` do not fit it: {e}"
                            ))
                        })?;
                    if let Some(w) = writer.as_mut() {
                        w.write(batch).await?;
                    }
                    JobMetrics::add(&metrics.rows_out, rows);
                    return Ok(rows);
                }
                Message::Watermark(_) | Message::Idle | Message::Barrier(_) => {}
                Message::End => {
                    if let Some(w) = writer.take() {
                        w.finish().await?;
                    }
                }
            },
        }
        Ok(0)
    }
}
