//! Checkpoints on any object store: `<dir>/<job>/chk-<n>/`, each with its
//! state files and, written last, `_manifest.json`. A discarded checkpoint
//! goes whole: on a local disk its emptied directory too, which an object
//! store's delete leaves behind.

use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sluice_engine::checkpoint::protocol::{Listing, MANIFEST, Manifest};
use sluice_engine::checkpoint::{CheckpointId, CheckpointStore};
use sluice_engine::{Result, SluiceError};

use crate::store::Location;

#[derive(Debug)]
pub struct ObjectCheckpoints {
    /// `<dir>/<job>`.
    root: Location,
    job: String,
}

impl ObjectCheckpoints {
    /// The checkpoints of `job` under the directory or URL `dir`.
    pub fn new(dir: &str, job: &str) -> Result<Self> {
        let base = crate::store::resolve(dir, job, "checkpoint directory")?;
        let root = Location {
            path: base.path.clone().join(job),
            url: format!("{}/{job}", base.url.trim_end_matches('/')),
            store: base.store,
        };
        Ok(Self {
            root,
            job: job.to_string(),
        })
    }

    fn dir_of(&self, id: CheckpointId) -> Path {
        self.root.path.clone().join(format!("chk-{id}"))
    }

    fn error(&self, doing: &str, e: object_store::Error) -> SluiceError {
        SluiceError::io(format!("{doing} in {}", self.root.url), e)
    }
}

impl CheckpointStore for ObjectCheckpoints {
    fn list(&self) -> BoxFuture<'_, Result<Listing>> {
        Box::pin(async move {
            let listed = self
                .root
                .store
                .list_with_delimiter(Some(&self.root.path))
                .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(self.error("listing checkpoints", e)),
            };
            let mut listing = Vec::new();
            for prefix in listed.common_prefixes {
                let Some(id) = prefix
                    .filename()
                    .and_then(|name| name.strip_prefix("chk-"))
                    .and_then(|n| n.parse::<CheckpointId>().ok())
                else {
                    continue;
                };
                let manifest = match self.root.store.get(&prefix.clone().join(MANIFEST)).await {
                    Ok(found) => match found.bytes().await {
                        Ok(bytes) => Some(
                            std::str::from_utf8(&bytes)
                                .map_err(|e| format!("manifest is not UTF-8: {e}"))
                                .and_then(|text| Manifest::parse(text, &self.job))
                                .and_then(|m| {
                                    if m.id == id {
                                        Ok(m)
                                    } else {
                                        Err(format!("manifest of checkpoint {} in chk-{id}", m.id))
                                    }
                                }),
                        ),
                        Err(e) => Some(Err(format!("unreadable manifest: {e}"))),
                    },
                    Err(object_store::Error::NotFound { .. }) => {
                        // A discarded checkpoint leaves an empty directory
                        // on a local disk: nothing is there.
                        if self.root.store.list(Some(&prefix)).next().await.is_none() {
                            continue;
                        }
                        None
                    }
                    Err(e) => return Err(self.error("reading a manifest", e)),
                };
                listing.push((id, manifest));
            }
            listing.sort_by_key(|(id, _)| *id);
            Ok(listing)
        })
    }

    fn write_state<'a>(
        &'a self,
        id: CheckpointId,
        name: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.root
                .store
                .put(&self.dir_of(id).join(name), PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.error(&format!("writing state file chk-{id}/{name}"), e))
        })
    }

    fn read_state<'a>(&'a self, id: CheckpointId, name: &'a str) -> BoxFuture<'a, Result<Vec<u8>>> {
        Box::pin(async move {
            let doing = format!("reading state file chk-{id}/{name}");
            let found = self
                .root
                .store
                .get(&self.dir_of(id).join(name))
                .await
                .map_err(|e| self.error(&doing, e))?;
            let bytes = found.bytes().await.map_err(|e| self.error(&doing, e))?;
            Ok(bytes.to_vec())
        })
    }

    fn write_manifest<'a>(&'a self, manifest: &'a Manifest) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let path = self.dir_of(manifest.id).join(MANIFEST);
            self.root
                .store
                .put(&path, PutPayload::from(manifest.to_json().into_bytes()))
                .await
                .map(|_| ())
                .map_err(|e| self.error("writing a manifest", e))
        })
    }

    fn discard<'a>(&'a self, ids: &'a [CheckpointId]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for &id in ids {
                let dir = self.dir_of(id);
                let files: Vec<_> = self.root.store.list(Some(&dir)).collect().await;
                for file in files {
                    let file = file.map_err(|e| self.error("listing a checkpoint", e))?;
                    match self.root.store.delete(&file.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(self.error("deleting a checkpoint", e)),
                    }
                }
                if let Some(local) = self.root.local_path(&dir) {
                    tokio::task::spawn_blocking(move || remove_empty_tree(&local))
                        .await
                        .map_err(|e| SluiceError::Runtime(format!("deleting chk-{id}: {e}")))?
                        .map_err(|e| {
                            SluiceError::io(format!("deleting chk-{id} in {}", self.root.url), e)
                        })?;
                }
            }
            Ok(())
        })
    }

    fn describe(&self) -> String {
        self.root.url.clone()
    }
}

/// Removes the local directory `dir` and the directories in it, which
/// must hold no files any more; nothing if it is not there.
fn remove_empty_tree(dir: &std::path::Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_empty_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::checkpoint::protocol::{MANIFEST_VERSION, choose_restore};
    use std::collections::BTreeMap;

    fn manifest(id: CheckpointId, job: &str) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            job: job.to_string(),
            id,
            parallelism: BTreeMap::from([(0, 1)]),
            taken_at_millis: 0,
            duration_millis: 0,
            subtasks: Vec::new(),
            carried: Vec::new(),
            end: false,
            plan: None,
            operators: BTreeMap::new(),
            counts: Default::default(),
        }
    }

    #[tokio::test]
    async fn listing_finds_complete_damaged_and_unfinished_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ObjectCheckpoints::new(&dir.path().display().to_string(), "job").expect("store");
        assert!(
            store.list().await.expect("empty").is_empty(),
            "no directory yet"
        );
        for id in [1, 2] {
            store
                .write_manifest(&manifest(id, "job"))
                .await
                .expect("write");
        }
        let root = dir.path().join("job");
        std::fs::create_dir_all(root.join("chk-3")).expect("dir");
        std::fs::write(root.join("chk-3").join(MANIFEST), "{ damaged").expect("write");
        std::fs::create_dir_all(root.join("chk-4")).expect("dir");
        std::fs::write(root.join("chk-4").join("state-0.arrow"), "x").expect("write");
        let listing = store.list().await.expect("list");
        assert_eq!(
            listing.iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        let choice = choose_restore(listing);
        assert_eq!(choice.checkpoint.map(|m| m.id), Some(2));
        assert_eq!(
            choice.skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![4, 3]
        );
        store.discard(&[1, 4]).await.expect("discard");
        let left: Vec<CheckpointId> = store
            .list()
            .await
            .expect("list")
            .iter()
            .map(|l| l.0)
            .collect();
        assert_eq!(left, vec![2, 3]);
    }

    /// Retention leaves exactly the retained checkpoints' directories on
    /// a local disk: a discarded one goes with its directory, state files,
    /// nested directories and all.
    #[tokio::test]
    async fn retention_leaves_only_the_retained_directories() {
        use sluice_engine::checkpoint::protocol::to_discard;

        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ObjectCheckpoints::new(&dir.path().display().to_string(), "job").expect("store");
        let ids: Vec<CheckpointId> = (1..=5).collect();
        for &id in &ids {
            store
                .write_state(id, "op-1-0.arrow", vec![1, 2, 3])
                .await
                .expect("state");
            store
                .write_state(id, "nested/op-2-0.arrow", vec![4])
                .await
                .expect("state");
            store
                .write_manifest(&manifest(id, "job"))
                .await
                .expect("manifest");
        }
        let discard = to_discard(&ids, &ids, 2);
        assert_eq!(discard, [1, 2, 3]);
        store.discard(&discard).await.expect("discard");
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("job"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort_unstable();
        assert_eq!(left, ["chk-4", "chk-5"]);
        assert_eq!(
            store
                .list()
                .await
                .expect("list")
                .iter()
                .map(|l| l.0)
                .collect::<Vec<_>>(),
            [4, 5]
        );
        store
            .discard(&[1])
            .await
            .expect("discarding again does nothing");
    }

    fn with_state(id: CheckpointId, file: &str, bytes: u64) -> Manifest {
        let mut m = manifest(id, "job");
        m.subtasks
            .push(sluice_engine::checkpoint::protocol::SubtaskSnapshot {
                node: 0,
                subtask: 0,
                state: vec![sluice_engine::checkpoint::protocol::StateFile {
                    path: file.to_string(),
                    operator: 1,
                    table: "slices".into(),
                    key_groups: 0..128,
                    keyed: true,
                    watermark: 0,
                    bytes,
                }],
                positions: Vec::new(),
                staged: Vec::new(),
                counts: Default::default(),
            });
        m
    }

    /// A newest checkpoint whose state file is damaged or missing stops
    /// the restore, listed: the one before would write again what it
    /// committed. An older one named explicitly restores; newer ones that
    /// never completed are passed over.
    #[tokio::test]
    async fn a_damaged_newest_checkpoint_stops_the_restore() {
        use arrow::array::Int64Array;
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        use sluice_engine::checkpoint::{load, state};

        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ObjectCheckpoints::new(&dir.path().display().to_string(), "job").expect("store");
        let schema = std::sync::Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Int64Array::from(vec![1, 2, 3]))],
        )
        .expect("batch");
        let bytes = state::encode(schema, std::slice::from_ref(&batch)).expect("encode");
        for id in [1, 2, 3] {
            store
                .write_state(id, "op-1-0.arrow", bytes.clone())
                .await
                .expect("state");
            store
                .write_manifest(&with_state(id, "op-1-0.arrow", bytes.len() as u64))
                .await
                .expect("manifest");
        }
        let root = dir.path().join("job");
        // 3's state file is cut short; 2's is gone.
        std::fs::write(root.join("chk-3/op-1-0.arrow"), &bytes[..bytes.len() / 2]).expect("cut");
        std::fs::remove_file(root.join("chk-2/op-1-0.arrow")).expect("remove");
        let refused = load(&store, None)
            .await
            .expect_err("the newest cannot be read")
            .to_string();
        assert!(
            refused.contains("chk-3: ")
                && refused.contains("chk-3/op-1-0.arrow")
                && refused.contains("run without --restore"),
            "{refused}"
        );
        let named = load(&store, Some(1))
            .await
            .expect("named explicitly")
            .expect("checkpoint 1");
        assert_eq!(named.state["op-1-0.arrow"], vec![batch]);
        let damaged = load(&store, Some(3)).await.expect_err("damaged");
        assert!(
            damaged.to_string().contains("chk-3/op-1-0.arrow"),
            "{damaged}"
        );
        assert!(load(&store, Some(9)).await.is_err(), "no such checkpoint");
        // A damaged manifest stops it too, naming the checkpoint.
        std::fs::write(root.join("chk-3/_manifest.json"), "{ not json").expect("damage");
        let refused = load(&store, None)
            .await
            .expect_err("damaged manifest")
            .to_string();
        assert!(refused.contains("chk-3: unreadable manifest"), "{refused}");

        // Checkpoints that never completed are passed over; none at all
        // leaves nothing to lose: a fresh start.
        let other = tempfile::tempdir().expect("tempdir");
        let unfinished =
            ObjectCheckpoints::new(&other.path().display().to_string(), "job").expect("store");
        unfinished
            .write_state(2, "op-1-0.arrow", bytes.clone())
            .await
            .expect("state");
        assert!(
            load(&unfinished, None).await.expect("load").is_none(),
            "no manifest: a fresh start"
        );
        unfinished
            .write_state(1, "op-1-0.arrow", bytes.clone())
            .await
            .expect("state");
        unfinished
            .write_manifest(&with_state(1, "op-1-0.arrow", bytes.len() as u64))
            .await
            .expect("manifest");
        let restored = load(&unfinished, None)
            .await
            .expect("load")
            .expect("checkpoint 1");
        assert_eq!(restored.manifest.id, 1, "2 never completed");
    }
}
