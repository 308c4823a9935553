//! Checkpoints: barriers, their alignment, and the protocol's decisions.
//!
//! The decisions (when an operator snapshots, which checkpoint is complete,
//! which to restore, what to commit) are plain functions over plain types,
//! tested without I/O; the runtime and storage call them.

pub mod barrier;
pub mod protocol;

pub use barrier::{Arrival, BarrierAligner, CheckpointId, Step};
