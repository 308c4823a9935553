//! Channels between subtasks, bounded by bytes.
//!
//! A sender must hold permits for a message's size (an Arrow batch's memory
//! size, capped at the channel's capacity so one huge batch still passes)
//! before sending; the receiver gives them back when it takes the message.
//! A slow consumer therefore slows its producers instead of filling memory,
//! whether batches are 1 KB or 100 MB.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::ops::Message;

/// The sending half; the receiver went away if `send` fails.
#[derive(Debug, Clone)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Message>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Message>,
    budget: Arc<Semaphore>,
    capacity: usize,
}

/// The receiver is gone; the message is handed back, as tokio does.
#[derive(Debug)]
pub struct SendError(pub Message);

/// A channel holding at most `capacity` bytes in flight.
pub fn channel(capacity: usize) -> (Sender, Receiver) {
    let capacity = capacity.clamp(1, u32::MAX as usize);
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(capacity));
    (
        Sender {
            tx,
            budget: Arc::clone(&budget),
            capacity,
        },
        Receiver {
            rx,
            budget,
            capacity,
        },
    )
}

fn cost(message: &Message, capacity: usize) -> u32 {
    message.size().clamp(1, capacity) as u32
}

impl Sender {
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        let permits = cost(&message, self.capacity);
        match Arc::clone(&self.budget).acquire_many_owned(permits).await {
            // The receiver returns the permits when it takes the message.
            Ok(permit) => permit.forget(),
            Err(_) => return Err(SendError(message)),
        }
        self.tx.send(message).map_err(|e| SendError(e.0))
    }
}

impl Receiver {
    pub async fn recv(&mut self) -> Option<Message> {
        let message = self.rx.recv().await?;
        self.budget
            .add_permits(cost(&message, self.capacity) as usize);
        Some(message)
    }
}

impl Receiver {
    /// Polls for the next message (for merging inputs by hand).
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        self.rx.poll_recv(cx).map(|message| {
            if let Some(m) = &message {
                self.budget.add_permits(cost(m, self.capacity) as usize);
            }
            message
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Wake senders waiting for room: they will find the channel closed.
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::record_batch::RecordBatch;
    use std::time::Duration;

    fn batch(rows: usize) -> Message {
        let array = Int64Array::from_iter_values(0..rows as i64);
        Message::Data(
            RecordBatch::try_from_iter([("a", Arc::new(array) as _)]).expect("valid batch"),
        )
    }

    #[tokio::test]
    async fn a_full_channel_blocks_the_sender_until_the_receiver_takes() {
        let (tx, mut rx) = channel(10_000);
        tx.send(batch(1_000)).await.expect("fits");
        // 8 KB of data plus buffers is in flight; a second batch must wait.
        let second = tokio::time::timeout(Duration::from_millis(50), tx.send(batch(1_000))).await;
        assert!(
            second.is_err(),
            "sender should block while the channel is full"
        );
        assert!(matches!(rx.recv().await, Some(Message::Data(_))));
        tokio::time::timeout(Duration::from_secs(1), tx.send(batch(1_000)))
            .await
            .expect("room again")
            .expect("receiver alive");
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_capacity_still_passes() {
        let (tx, mut rx) = channel(100);
        tx.send(batch(10_000)).await.expect("capped cost");
        assert!(matches!(rx.recv().await, Some(Message::Data(_))));
    }

    #[tokio::test]
    async fn sending_to_a_dropped_receiver_hands_the_message_back() {
        let (tx, rx) = channel(100);
        drop(rx);
        let err = tx.send(Message::Watermark(7)).await.expect_err("closed");
        assert!(matches!(err.0, Message::Watermark(7)));
    }
}
