//! Checkpoints: barriers, their alignment, and the protocol's decisions.
//!
//! The decisions (when an operator snapshots, which checkpoint is complete,
//! which to restore, what to commit) are plain functions over plain types,
//! tested without I/O; the runtime and storage call them.

pub mod barrier;
pub mod protocol;
pub mod state;

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

    /// Writes a state file of checkpoint `id` (`name` is relative to its
    /// directory).
    fn write_state<'a>(
        &'a self,
        id: CheckpointId,
        name: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<()>>;

    /// Reads a state file of checkpoint `id`.
    fn read_state<'a>(&'a self, id: CheckpointId, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>>>;

    /// Writes the manifest last, which makes the checkpoint exist.
    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<()>>;

    /// Deletes checkpoints and everything under them.
    fn discard<'a>(&'a self, ids: &'a [CheckpointId]) -> BoxFuture<'a, Result<()>>;

    /// Where the checkpoints are, for messages.
    fn describe(&self) -> String;
}

/// A checkpoint read back for a restore: its manifest and every state file,
/// decoded, by path.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    pub state: std::collections::BTreeMap<String, Vec<arrow::record_batch::RecordBatch>>,
}

/// Reads checkpoint `id` of `store`, or the newest complete one when `id`
/// is `None`: newer ones that never completed (no manifest) are passed
/// over with a warning. `Ok(None)`: no checkpoint ever completed. When the
/// newest that completed cannot be read (its manifest or a state file is
/// damaged), that is an error listing it: an older one, or a fresh start,
/// would write again what it committed.
pub async fn load(
    store: &dyn CheckpointStore,
    id: Option<CheckpointId>,
) -> Result<Option<Restored>> {
    let listing = store.list().await?;
    if let Some(id) = id {
        let manifest = match listing.into_iter().find(|(found, _)| *found == id) {
            Some((_, Some(Ok(manifest)))) => manifest,
            Some((_, Some(Err(reason)))) => {
                return Err(crate::SluiceError::Config(format!(
                    "checkpoint {id} in {} cannot be restored: {reason}",
                    store.describe()
                )));
            }
            Some((_, None)) => {
                return Err(crate::SluiceError::Config(format!(
                    "checkpoint {id} in {} never completed (it has no manifest)",
                    store.describe()
                )));
            }
            None => {
                return Err(crate::SluiceError::Config(format!(
                    "there is no checkpoint {id} in {}",
                    store.describe()
                )));
            }
        };
        return read_state(store, manifest).await.map(Some);
    }
    // The newest checkpoint that completed (it has a manifest) is the one
    // to restore: an older one would write again what the newer one
    // committed. So one that cannot be read stops the restore, listed.
    let choice = protocol::choose_restore(listing.clone());
    let mut damaged: Vec<(CheckpointId, String)> = listing
        .iter()
        .filter_map(|(id, manifest)| match manifest {
            Some(Err(reason)) => Some((*id, reason.clone())),
            _ => None,
        })
        .filter(|(id, _)| choice.checkpoint.as_ref().is_none_or(|m| *id > m.id))
        .collect();
    for (id, reason) in &choice.skipped {
        tracing::warn!("skipping checkpoint {id} in {}: {reason}", store.describe());
    }
    if damaged.is_empty() {
        let Some(manifest) = choice.checkpoint else {
            return Ok(None);
        };
        let id = manifest.id;
        match read_state(store, manifest).await {
            Ok(restored) => return Ok(Some(restored)),
            Err(e) => damaged.push((id, e.to_string())),
        }
    }
    damaged.sort_by_key(|(id, _)| *id);
    let list: Vec<String> = damaged
        .iter()
        .map(|(id, reason)| format!("  chk-{id}: {reason}"))
        .collect();
    Err(crate::SluiceError::Config(format!(
        "the newest checkpoint in {} cannot be restored, and restoring an older one would write again what the newer ones committed; {} completed but cannot be read:\n{}\nMend them, or run without --restore to start from the beginning on purpose",
        store.describe(),
        damaged.len(),
        list.join("\n")
    )))
}

async fn read_state(store: &dyn CheckpointStore, manifest: Manifest) -> Result<Restored> {
    let mut state = std::collections::BTreeMap::new();
    for file in manifest.subtasks.iter().flat_map(|s| &s.state) {
        let bytes = store.read_state(manifest.id, &file.path).await?;
        let what = format!("chk-{}/{}", manifest.id, file.path);
        state.insert(file.path.clone(), state::decode(bytes, &what)?);
    }
    Ok(Restored { manifest, state })
}
