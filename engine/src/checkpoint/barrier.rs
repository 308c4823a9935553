//! Barrier alignment: the decision an operator with several inputs makes
//! when checkpoint barriers arrive, as a plain type with no I/O.
//!
//! Every source injects barrier `n` into its output; an operator with
//! several inputs takes its snapshot `n` once barrier `n` has arrived on all
//! of them (an input that ended counts as having sent it). An input whose
//! barrier has arrived is *blocked*: what it sends next belongs after the
//! snapshot, so the runtime should stop reading it, and whatever arrives on
//! it anyway is held here and replayed once the snapshot is taken. Messages
//! of one input keep their order; the snapshot sees exactly the messages
//! that came before the barrier on every input (Flink's aligned checkpoints).

use std::collections::VecDeque;

use crate::error::{Result, SluiceError};

/// A checkpoint's number; they start at 1 and increase.
pub type CheckpointId = u64;

/// What arrives on one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival<T> {
    Message(T),
    Barrier(CheckpointId),
    /// The input sends nothing more.
    End,
}

/// What the operator does next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Process this message.
    Message(T),
    /// Snapshot state now, then forward the barrier.
    Snapshot(CheckpointId),
    /// Every input has ended.
    End,
}

#[derive(Debug)]
pub struct BarrierAligner<T> {
    ended: Vec<bool>,
    /// The checkpoint being aligned, and which inputs have sent its barrier.
    aligning: Option<(CheckpointId, Vec<bool>)>,
    /// What arrived on each input after its barrier, in order.
    held: Vec<VecDeque<Arrival<T>>>,
    finished: bool,
}

impl<T> BarrierAligner<T> {
    pub fn new(inputs: usize) -> Self {
        Self {
            ended: vec![false; inputs],
            aligning: None,
            held: (0..inputs).map(|_| VecDeque::new()).collect(),
            finished: false,
        }
    }

    /// Whether input `i` has sent the barrier being aligned: the runtime
    /// should not read it until the snapshot is taken.
    pub fn is_blocked(&self, input: usize) -> bool {
        self.aligning
            .as_ref()
            .is_some_and(|(_, arrived)| arrived[input])
    }

    /// Takes what arrived on `input` and appends the steps it allows.
    pub fn push(
        &mut self,
        input: usize,
        arrival: Arrival<T>,
        steps: &mut Vec<Step<T>>,
    ) -> Result<()> {
        if self.is_blocked(input) {
            self.held[input].push_back(arrival);
            return Ok(());
        }
        match arrival {
            Arrival::Message(message) => steps.push(Step::Message(message)),
            Arrival::Barrier(id) => {
                match &mut self.aligning {
                    None => {
                        let mut arrived = vec![false; self.ended.len()];
                        arrived[input] = true;
                        self.aligning = Some((id, arrived));
                    }
                    Some((current, arrived)) if *current == id => arrived[input] = true,
                    Some((current, _)) => {
                        return Err(SluiceError::Runtime(format!(
                            "checkpoint barrier {id} arrived on input {input} while aligning barrier {current}"
                        )));
                    }
                }
                self.complete(steps)?;
            }
            Arrival::End => {
                self.ended[input] = true;
                self.complete(steps)?;
            }
        }
        if !self.finished && self.aligning.is_none() && self.ended.iter().all(|e| *e) {
            self.finished = true;
            steps.push(Step::End);
        }
        Ok(())
    }

    /// Takes the snapshot once every input has sent the barrier or ended,
    /// then replays what the blocked inputs held.
    fn complete(&mut self, steps: &mut Vec<Step<T>>) -> Result<()> {
        let Some((id, arrived)) = &self.aligning else {
            return Ok(());
        };
        if !arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e) {
            return Ok(());
        }
        steps.push(Step::Snapshot(*id));
        self.aligning = None;
        for input in 0..self.held.len() {
            let held: Vec<Arrival<T>> = self.held[input].drain(..).collect();
            for arrival in held {
                // A later barrier blocks the input again; the rest is held anew.
                self.push(input, arrival, steps)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One input's arrivals: messages are (input, sequence number).
    type Script = Vec<Arrival<(usize, u32)>>;

    /// Every interleaving of the inputs' arrivals, delivered with and without
    /// the runtime honouring `is_blocked`: every message is processed once,
    /// in its input's order, on the right side of every snapshot; snapshots
    /// come once each, in order; `End` comes last.
    #[test]
    fn every_interleaving_aligns() {
        use Arrival::{Barrier as B, End as E, Message as M};
        let cases: Vec<Vec<Script>> = vec![
            vec![
                vec![M((0, 0)), B(1), M((0, 1)), B(2), M((0, 2)), E],
                vec![M((1, 0)), M((1, 1)), B(1), B(2), E],
            ],
            vec![
                vec![B(1), M((0, 0)), B(2), E],
                vec![M((1, 0)), B(1), M((1, 1)), E],
                vec![B(1), B(2), M((2, 0)), E],
            ],
            // An input that ends before the barrier counts as having sent it.
            vec![vec![M((0, 0)), E], vec![M((1, 0)), B(1), M((1, 1)), E]],
        ];
        for inputs in cases {
            for honour_blocking in [false, true] {
                let mut count = 0;
                interleave(
                    &inputs,
                    &mut vec![0; inputs.len()],
                    &mut Vec::new(),
                    &mut |order| {
                        count += 1;
                        check(&inputs, order, honour_blocking);
                    },
                );
                assert!(count > 10, "{count} interleavings");
            }
        }
    }

    /// Calls `visit` with every order of taking the inputs' next arrivals.
    fn interleave(
        inputs: &[Script],
        next: &mut Vec<usize>,
        order: &mut Vec<usize>,
        visit: &mut dyn FnMut(&[usize]),
    ) {
        let mut any = false;
        for i in 0..inputs.len() {
            if next[i] < inputs[i].len() {
                any = true;
                next[i] += 1;
                order.push(i);
                interleave(inputs, next, order, visit);
                order.pop();
                next[i] -= 1;
            }
        }
        if !any {
            visit(order);
        }
    }

    fn check(inputs: &[Script], order: &[usize], honour_blocking: bool) {
        let mut aligner = BarrierAligner::new(inputs.len());
        let mut steps = Vec::new();
        let mut queues: Vec<VecDeque<Arrival<(usize, u32)>>> =
            inputs.iter().map(|i| i.iter().cloned().collect()).collect();
        let mut pending: VecDeque<usize> = order.iter().copied().collect();
        // With blocking honoured, an arrival from a blocked input waits and
        // the next unblocked one in the order goes first.
        while let Some(position) = pending
            .iter()
            .position(|&i| !honour_blocking || !aligner.is_blocked(i))
        {
            let Some(input) = pending.remove(position) else {
                break;
            };
            let Some(arrival) = queues[input].pop_front() else {
                break;
            };
            aligner.push(input, arrival, &mut steps).expect("aligned");
        }
        assert!(pending.is_empty(), "stuck with {pending:?} for {order:?}");
        assert_eq!(steps.last(), Some(&Step::End), "{order:?}: {steps:?}");
        let snapshots: Vec<CheckpointId> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Snapshot(id) => Some(*id),
                _ => None,
            })
            .collect();
        let barriers = inputs
            .iter()
            .flat_map(|i| i.iter())
            .filter_map(|a| match a {
                Arrival::Barrier(id) => Some(*id),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        assert_eq!(snapshots, (1..=barriers).collect::<Vec<_>>(), "{order:?}");
        for (i, input) in inputs.iter().enumerate() {
            // Which checkpoint each of this input's messages must follow.
            let mut after = 0;
            let mut last_position = None;
            for arrival in input {
                match arrival {
                    Arrival::Barrier(id) => after = *id,
                    Arrival::Message(m) => {
                        let position = steps
                            .iter()
                            .position(|s| s == &Step::Message(*m))
                            .unwrap_or_else(|| panic!("{m:?} lost in {order:?}"));
                        assert_eq!(
                            steps.iter().filter(|s| *s == &Step::Message(*m)).count(),
                            1,
                            "{m:?} twice"
                        );
                        let snapshot_at = |id| steps.iter().position(|s| s == &Step::Snapshot(id));
                        if after > 0 {
                            assert!(
                                snapshot_at(after) < Some(position),
                                "{m:?} before snapshot {after} in {order:?}: {steps:?}"
                            );
                        }
                        if let Some(next) = snapshot_at(after + 1) {
                            assert!(
                                position < next,
                                "{m:?} after snapshot {} in {order:?}: {steps:?}",
                                after + 1
                            );
                        }
                        assert!(last_position < Some(position), "input {i} out of order");
                        last_position = Some(position);
                    }
                    Arrival::End => {}
                }
            }
        }
    }

    #[test]
    fn a_barrier_out_of_turn_is_an_error() {
        let mut aligner = BarrierAligner::<u32>::new(2);
        let mut steps = Vec::new();
        aligner
            .push(0, Arrival::Barrier(1), &mut steps)
            .expect("first");
        assert!(aligner.is_blocked(0));
        assert!(aligner.push(1, Arrival::Barrier(2), &mut steps).is_err());
    }
}
