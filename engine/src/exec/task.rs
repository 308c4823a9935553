//! One subtask: its input, its chain of operators, and its exits.
//!
//! A subtask runs its input to the end through its chain
//! ([`super::chain`]): a source subtask drives its splits
//! ([`super::source_driver`]), any other merges its exchange channels
//! ([`super::input_merge`]). It tells the checkpoint coordinator what it
//! snapshots and when it ends ([`super::checkpoint_link`]).

use super::channel::Receiver;

use crate::checkpoint::protocol;
use crate::error::Result;
use crate::metrics::JobMetrics;
use crate::ops::Port;

pub use super::chain::Chain;
pub use super::checkpoint_link::{Ack, CheckpointLink, Trigger};
pub use super::source_driver::{SourceInput, SplitPace};

/// The name the late-data output's staged files go under in checkpoints.
pub const LATE_DATA: &str = "sluice.late-data";

/// Words of the error a subtask raises when its downstream has gone away;
/// the downstream's own error is the one to report.
pub const STOPPED: &str = "stopped before this subtask finished";

pub enum Input {
    /// The splits of a source, read by this subtask.
    Source(SourceInput),
    /// Exchange channels, each with the port of the chain's root it feeds,
    /// and the port to read to its end before the others, if any.
    Channels(Vec<(Port, Receiver)>, Option<Port>),
}

/// Runs the subtask to its end; returns whether it was a source stopped
/// before its splits ended.
pub async fn run(
    chain: &mut Chain,
    input: Input,
    metrics: &JobMetrics,
    link: Option<CheckpointLink>,
) -> Result<bool> {
    let (positions, stopped) = run_input(chain, input, metrics, link.clone()).await?;
    chain.finish().await?;
    if let Some(link) = link {
        let _ = link.acks.send(Ack::Finished {
            node: link.node,
            subtask: link.subtask,
            positions,
            staged: std::mem::take(&mut chain.staged),
            stopped,
            counts: chain.counts,
        });
    }
    Ok(stopped)
}

/// Runs the subtask's input to its end; a source returns where its splits
/// ended, and whether it was stopped before their end.
async fn run_input(
    chain: &mut Chain,
    input: Input,
    metrics: &JobMetrics,
    link: Option<CheckpointLink>,
) -> Result<(Vec<protocol::SplitPosition>, bool)> {
    match input {
        Input::Source(source) => super::source_driver::read(chain, source, metrics, link).await,
        Input::Channels(receivers, first) => {
            super::input_merge::merge(chain, receivers, link.as_ref(), first)
                .await
                .map(|()| (Vec::new(), false))
        }
    }
}
