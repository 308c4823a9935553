//! Checkpoints: barriers, their alignment, and the protocol's decisions.
//!
//! The decisions (when an operator snapshots, which checkpoint is complete,
//! which to restore, what to commit) are plain functions over plain types,
//! tested without I/O; the runtime and storage call them.

pub mod barrier;
pub mod protocol;

pub use barrier::{Arrival, BarrierAligner, CheckpointId, Step};

use std::fmt::Debug;

use futures::future::BoxFuture;

use crate::error::Result;
use protocol::{Listing, Manifest};

/// Where a job's checkpoints live (`<dir>/<job>/chk-<n>/`), implemented on
/// object_store by the connectors crate.
pub trait CheckpointStore: Send + Sync + Debug {
    /// Every checkpoint found, with its manifest parsed (`None` when it has
    /// none, `Err` when it is damaged).
    fn list(&self) -> BoxFuture<'_, Result<Listing>>;

    /// Writes the manifest last, which makes the checkpoint exist.
    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<()>>;

    /// Deletes checkpoints and everything under them.
    fn discard<'a>(&'a self, ids: &'a [CheckpointId]) -> BoxFuture<'a, Result<()>>;

    /// Where the checkpoints are, for messages.
    fn describe(&self) -> String;
}
