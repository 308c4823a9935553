//! The input of a subtask that is not a source: its exchange channels,
//! merged. Data goes on in arrival order, each batch on the port of the
//! edge it came by; watermarks as the minimum over every channel; barriers
//! aligned (a channel whose barrier has arrived is not read until every
//! channel's has); a port ends when its last channel does.
//!
//! A join may ask for one of its inputs to be read first (the bounded or
//! smaller side, see `input_order.rs`): the other ports' channels are not
//! read while that port is open, so what they send waits upstream, held
//! back by the channels' budgets. Only when every open channel of the
//! first port waits for a barrier the others must send are they read, up
//! to that barrier, so a checkpoint never waits on itself.

use std::collections::BTreeMap;

use super::chain::{Chain, processing_timer_due, wall_clock};
use super::channel::Receiver;
use super::checkpoint_link::CheckpointLink;

use super::task::STOPPED;
use crate::checkpoint::{Arrival, BarrierAligner, Step};
use crate::error::{Result, SluiceError};
use crate::ops::{Message, Port};
use crate::time::{END_OF_TIME, InputWatermarks};

/// Merges a subtask's input channels: data in arrival order, watermarks
/// as their minimum, barriers aligned (a channel whose barrier has arrived
/// is not read until every channel's has).
pub(super) async fn merge(
    chain: &mut Chain,
    receivers: Vec<(Port, Receiver)>,
    link: Option<&CheckpointLink>,
    first: Option<Port>,
) -> Result<()> {
    let (ports, mut receivers): (Vec<Port>, Vec<Receiver>) = receivers.into_iter().unzip();
    // Channels still open per port: a port ends with its last channel.
    let mut open_per_port: BTreeMap<Port, usize> = BTreeMap::new();
    for port in &ports {
        *open_per_port.entry(*port).or_default() += 1;
    }
    let inputs = receivers.len();
    if inputs == 0 {
        chain.push(Message::Watermark(END_OF_TIME))?;
        chain.push(Message::End)?;
        return chain.flush().await;
    }
    let mut watermarks = InputWatermarks::new(inputs);
    let mut aligner = BarrierAligner::new(inputs);
    let mut closed = vec![false; inputs];
    let mut next = 0;
    let mut steps = Vec::new();
    loop {
        let deadline = chain.next_processing_timer();
        let received = tokio::select! {
            received = std::future::poll_fn(|cx| {
                // While the first port is open and one of its channels can
                // be read, the other ports wait.
                let waiting = first.filter(|&f| {
                    (0..inputs).any(|i| ports[i] == f && !closed[i] && !aligner.is_blocked(i))
                });
                let mut open = false;
                for k in 0..inputs {
                    let i = (next + k) % inputs;
                    if closed[i] || aligner.is_blocked(i) {
                        open |= !closed[i];
                        continue;
                    }
                    if waiting.is_some_and(|f| ports[i] != f) {
                        open = true;
                        continue;
                    }
                    open = true;
                    if let std::task::Poll::Ready(message) = receivers[i].poll_recv(cx) {
                        // Start with the next channel next time: no input starves.
                        next = (i + 1) % inputs;
                        return std::task::Poll::Ready(Some((i, message)));
                    }
                }
                if open {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(None)
                }
            }) => received,
            () = processing_timer_due(deadline) => {
                chain.fire_processing_timers(wall_clock())?;
                chain.flush().await?;
                continue;
            }
        };
        let Some((i, Some(message))) = received else {
            return Err(SluiceError::Runtime(format!(
                "an upstream subtask {STOPPED}"
            )));
        };
        let mut port_ended = None;
        let arrival = match message {
            Message::Barrier(id) => Arrival::Barrier(id),
            Message::End => {
                closed[i] = true;
                let open = open_per_port.entry(ports[i]).or_default();
                *open = open.saturating_sub(1);
                if *open == 0 {
                    port_ended = Some(ports[i]);
                }
                Arrival::End
            }
            other => Arrival::Message((i, other)),
        };
        aligner.push(i, arrival, &mut steps)?;
        for step in steps.drain(..) {
            match step {
                Step::Message((i, message)) => match message {
                    Message::Data(batch) => {
                        watermarks.activate(i);
                        chain.push_on(ports[i], Message::Data(batch))?;
                    }
                    Message::Watermark(w) => {
                        if let Some(w) = watermarks.update(i, w) {
                            chain.push(Message::Watermark(w))?;
                        }
                    }
                    Message::Idle => {
                        if let Some(w) = watermarks.idle(i) {
                            chain.push(Message::Watermark(w))?;
                        }
                        if watermarks.all_idle() {
                            chain.push(Message::Idle)?;
                        }
                    }
                    Message::Barrier(_) | Message::End => {}
                },
                Step::Snapshot(id) => {
                    chain.push(Message::Barrier(id))?;
                    chain.flush().await?;
                    if let Some(link) = link {
                        link.acknowledge(chain, id, Vec::new()).await?;
                    }
                }
                // An input that ended keeps its last watermark (see InputWatermarks).
                Step::End => {
                    if let Some(port) = port_ended.take() {
                        chain.end_port(port)?;
                    }
                    chain.push(Message::End)?;
                    return chain.flush().await;
                }
            }
        }
        if let Some(port) = port_ended {
            chain.end_port(port)?;
        }
        chain.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use arrow::record_batch::RecordBatch;

    use crate::ops::{Operator, OperatorContext, Output};
    use crate::plan::{JobGraph, NodeKind};
    use crate::time::Millis;

    /// What a probe operator was told, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Heard {
        Rows(Port, usize),
        Watermark(Millis),
        PortEnd(Port),
        Close,
    }

    #[derive(Debug, Default)]
    struct Probe(Arc<std::sync::Mutex<Vec<Heard>>>);

    impl Probe {
        fn hear(&self, heard: Heard) {
            self.0.lock().expect("lock").push(heard);
        }
    }

    impl Operator for Probe {
        fn on_batch(&mut self, port: Port, batch: RecordBatch, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Rows(port, batch.num_rows()));
            Ok(())
        }

        fn on_watermark(&mut self, watermark: Millis, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Watermark(watermark));
            Ok(())
        }

        fn on_input_end(&mut self, port: Port, _out: &mut Output) -> Result<()> {
            self.hear(Heard::PortEnd(port));
            Ok(())
        }

        fn close(&mut self, _out: &mut Output) -> Result<()> {
            self.hear(Heard::Close);
            Ok(())
        }
    }

    #[derive(Debug, Default)]
    struct ProbeFactory(Arc<std::sync::Mutex<Vec<Heard>>>);

    impl crate::ops::OperatorFactory for ProbeFactory {
        fn name(&self) -> &str {
            "Probe"
        }

        fn describe(&self) -> String {
            String::new()
        }

        fn create(&self, _context: &OperatorContext) -> Result<Box<dyn Operator>> {
            Ok(Box::new(Probe(Arc::clone(&self.0))))
        }
    }

    /// A chain of one probe operator, which notes what it hears in `heard`.
    async fn probe_chain(heard: &Arc<std::sync::Mutex<Vec<Heard>>>) -> Chain {
        let graph = JobGraph {
            name: "probe".into(),
            mode: crate::sql::Mode::Stream,
            nodes: vec![crate::plan::Node {
                id: 0,
                kind: NodeKind::Operator(Arc::new(ProbeFactory(Arc::clone(heard)))),
                parallelism: 1,
                schema: Arc::new(arrow::datatypes::Schema::empty()),
            }],
            edges: Vec::new(),
            identity_graph: None,
        };
        let stage = graph.stages().remove(0);
        let context = OperatorContext {
            subtask: 0,
            parallelism: 1,
            parameters: Arc::default(),
            metrics: Arc::default(),
        };
        Chain::build(&graph, &stage, &context, &mut BTreeMap::new(), None)
            .await
            .expect("chain")
    }

    fn rows(n: i64) -> Message {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("n", arrow::datatypes::DataType::Int64, false),
        ]));
        Message::Data(
            RecordBatch::try_new(
                schema,
                vec![Arc::new(arrow::array::Int64Array::from_iter_values(0..n))],
            )
            .expect("batch"),
        )
    }

    /// A two-input operator at a stage's root hears which port each batch
    /// came on, that a port ended once all of its channels did, and one
    /// watermark: the minimum over every channel of every port.
    #[tokio::test]
    async fn a_root_with_two_ports_hears_each_port_apart() {
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut chain = probe_chain(&heard).await;
        let (left, left_rx) = super::super::channel::channel(1 << 20);
        let (right_a, right_a_rx) = super::super::channel::channel(1 << 20);
        let (right_b, right_b_rx) = super::super::channel::channel(1 << 20);
        for (sender, messages) in [
            (&left, vec![rows(3), Message::Watermark(50), Message::End]),
            (
                &right_a,
                vec![rows(2), Message::Watermark(10), Message::End],
            ),
            (&right_b, vec![Message::Watermark(40), rows(1)]),
        ] {
            for message in messages {
                sender.send(message).await.expect("send");
            }
        }
        let merged = tokio::spawn(async move {
            merge(
                &mut chain,
                vec![(0, left_rx), (1, right_a_rx), (1, right_b_rx)],
                None,
                None,
            )
            .await
        });
        // Port 1 is still open on its second channel: wait for what came.
        let wait_for = |n: usize| {
            let heard = Arc::clone(&heard);
            async move {
                for _ in 0..500 {
                    if heard.lock().expect("lock").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        wait_for(5).await;
        let so_far = heard.lock().expect("lock").clone();
        let mut data: Vec<&Heard> = so_far
            .iter()
            .filter(|h| matches!(h, Heard::Rows(..)))
            .collect();
        data.sort_by_key(|h| format!("{h:?}"));
        assert_eq!(
            data,
            vec![&Heard::Rows(0, 3), &Heard::Rows(1, 1), &Heard::Rows(1, 2)]
        );
        assert!(so_far.contains(&Heard::PortEnd(0)), "{so_far:?}");
        assert!(
            !so_far.contains(&Heard::PortEnd(1)),
            "port 1 has a channel open: {so_far:?}"
        );
        assert!(
            so_far
                .iter()
                .all(|h| !matches!(h, Heard::Watermark(w) if *w > 10)),
            "the watermark is the least of all channels: {so_far:?}"
        );
        right_b.send(Message::Watermark(60)).await.expect("send");
        right_b.send(Message::End).await.expect("send");
        merged.await.expect("join").expect("merge");
        let all = heard.lock().expect("lock").clone();
        let tail = &all[all.len() - 2..];
        assert_eq!(tail, &[Heard::PortEnd(1), Heard::Close], "{all:?}");
        assert!(all.contains(&Heard::Watermark(10)), "{all:?}");
    }

    /// The messages a probe at a stage's root hears when `inputs` (a
    /// port and its channel's messages each) are merged, reading `first`
    /// before the others.
    async fn merged(inputs: Vec<(Port, Vec<Message>)>, first: Option<Port>) -> Vec<Heard> {
        let heard = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut chain = probe_chain(&heard).await;
        let mut receivers = Vec::new();
        for (port, messages) in inputs {
            let (sender, receiver) = super::super::channel::channel(1 << 20);
            for message in messages {
                sender.send(message).await.expect("send");
            }
            receivers.push((port, receiver));
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            merge(&mut chain, receivers, None, first),
        )
        .await
        .expect("the merge ends: it does not wait on itself")
        .expect("merge");
        let heard = heard.lock().expect("lock").clone();
        heard
            .into_iter()
            .filter(|h| matches!(h, Heard::Rows(..) | Heard::PortEnd(_)))
            .collect()
    }

    /// A join's bounded or smaller input is read to its end before the
    /// other's rows, whatever came first.
    #[tokio::test]
    async fn the_input_read_first_ends_before_the_others_rows_come() {
        let left = (0, vec![rows(3), rows(4), Message::End]);
        let right = (1, vec![rows(2), rows(1), Message::End]);
        assert_eq!(
            merged(vec![left, right], Some(1)).await,
            vec![
                Heard::Rows(1, 2),
                Heard::Rows(1, 1),
                Heard::PortEnd(1),
                Heard::Rows(0, 3),
                Heard::Rows(0, 4),
                Heard::PortEnd(0),
            ]
        );
    }

    /// A barrier on the input read first waits for the others' barriers:
    /// they are read up to theirs, so the checkpoint is taken, and then the
    /// first input again.
    #[tokio::test]
    async fn a_barrier_on_the_input_read_first_lets_the_others_reach_theirs() {
        let barrier = || Message::Barrier(1);
        let left = (0, vec![rows(3), barrier(), rows(4), Message::End]);
        let right = (1, vec![rows(2), barrier(), rows(1), Message::End]);
        assert_eq!(
            merged(vec![left, right], Some(1)).await,
            vec![
                Heard::Rows(1, 2),
                Heard::Rows(0, 3),
                Heard::Rows(1, 1),
                Heard::PortEnd(1),
                Heard::Rows(0, 4),
                Heard::PortEnd(0),
            ]
        );
    }
}
