//! Which source subtask reads which split, and whether a restored
//! checkpoint's splits are the ones this run finds.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::checkpoint::protocol::Manifest;
use crate::connector::{Reading, Split};
use crate::error::{Result, SluiceError};
use crate::time::Millis;

/// Fails if a checkpoint of a job's end is restored into a run that finds
/// splits the job did not read: the job is done, and those rows would be
/// neither read nor reported.
pub(super) fn check_no_new_splits(
    table: &str,
    splits: &[Arc<dyn Split>],
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
    manifest: &Manifest,
) -> Result<()> {
    let new: Vec<String> = splits
        .iter()
        .map(|s| s.key())
        .filter(|key| !restored.contains_key(key))
        .collect();
    match new.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(SluiceError::config(format!(
            "table `{table}`: checkpoint {} was taken when the job had read all of its input, and this run finds {} split{} it did not read, such as `{first}`: the input is not the one the job finished. To process this input, start without --restore",
            manifest.id,
            new.len(),
            if new.len() == 1 { "" } else { "s" },
        ))),
    }
}

/// Deals splits to `parallelism` subtasks. Splits read in order go round
/// robin, earliest first, so subtasks move through event time together.
/// Splits read concurrently go largest first to the least loaded subtask,
/// so a topic with one busy partition and many quiet ones still spreads
/// its work as evenly as partitions allow.
pub(super) fn assign_splits(
    mut splits: Vec<Arc<dyn Split>>,
    parallelism: usize,
    reading: Reading,
    trusted: impl Fn(Option<Millis>) -> Option<Millis>,
) -> Vec<Vec<Arc<dyn Split>>> {
    let mut assigned: Vec<Vec<Arc<dyn Split>>> = vec![Vec::new(); parallelism];
    match reading {
        Reading::InOrder => {
            // Among splits of the same (or unknown) time, planning's order
            // (files by name, each from its start) stands.
            let mut splits: Vec<(usize, Arc<dyn Split>)> = splits.into_iter().enumerate().collect();
            splits.sort_by_cached_key(|(planned, s)| {
                let time = trusted(s.min_event_time()).or_else(|| trusted(s.first_event_time()));
                (time.unwrap_or(i64::MIN), *planned)
            });
            for (i, (_, split)) in splits.into_iter().enumerate() {
                assigned[i % parallelism].push(split);
            }
        }
        Reading::Concurrent { .. } => {
            splits.sort_by_cached_key(|s| {
                (
                    std::cmp::Reverse(s.estimated_rows().unwrap_or(0)),
                    s.describe(),
                )
            });
            let mut load = vec![(0u64, 0usize); parallelism];
            for split in splits {
                let Some(subtask) = (0..parallelism).min_by_key(|&i| (load[i], i)) else {
                    break;
                };
                load[subtask].0 += split.estimated_rows().unwrap_or(0);
                load[subtask].1 += 1;
                assigned[subtask].push(split);
            }
        }
    }
    assigned
}

/// Fails if the checkpoint being restored has positions for splits this run
/// did not plan (a file removed or rewritten, a changed split size): their
/// rows so far are in the restored state, and reading on without them
/// would lose what they had left, or read again what was read.
pub(super) fn check_restored_splits(
    table: &str,
    splits: &[Arc<dyn Split>],
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
) -> Result<()> {
    if restored.is_empty() {
        return Ok(());
    }
    let planned: std::collections::BTreeSet<String> = splits.iter().map(|s| s.key()).collect();
    let missing: Vec<&str> = restored
        .keys()
        .filter(|key| !planned.contains(*key))
        .map(String::as_str)
        .collect();
    if let Some(e) = changed_split(table, &missing, &planned, restored) {
        return Err(e);
    }
    match missing.as_slice() {
        [] => Ok(()),
        [first, ..] => Err(SluiceError::config(format!(
            "table `{table}`: the checkpoint being restored read {} split{} this run does not find, such as `{first}`; were files removed or rewritten, or the table's options or the job's parallelism changed (nexmark splits follow it)? Restore with the input and options as they were, or start without the checkpoint",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
        ))),
    }
}

/// An error for the first split in `missing` (keys the checkpoint has and
/// this run did not plan) that this run planned under the same name with
/// another version of its data: a file rewritten since the checkpoint.
fn changed_split(
    table: &str,
    missing: &[&str],
    planned: &std::collections::BTreeSet<String>,
    restored: &BTreeMap<String, crate::checkpoint::protocol::SplitPosition>,
) -> Option<SluiceError> {
    use crate::connector::SplitKey;
    missing.iter().find_map(|key| {
        let then = SplitKey::parse(key);
        let now = planned
            .iter()
            .map(|k| SplitKey::parse(k))
            .find(|k| k.name == then.name)?;
        let position = restored.get(*key).map_or("", |p| p.position.as_str());
        Some(SluiceError::config(format!(
            "table `{table}`: {} has changed since the checkpoint being restored read it (then: {}; now: {}), so its position there ({position}) would resume in other data. Restore with the input the checkpoint read, or start without --restore",
            then.name,
            then.version.unwrap_or("version not recorded"),
            now.version.unwrap_or("version not known"),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::record_batch::RecordBatch;
    use futures::stream::BoxStream;

    #[derive(Debug)]
    struct Sized {
        name: &'static str,
        rows: u64,
        min_time: i64,
    }

    impl Split for Sized {
        fn describe(&self) -> String {
            self.name.to_string()
        }
        fn min_event_time(&self) -> Option<i64> {
            Some(self.min_time)
        }
        fn estimated_rows(&self) -> Option<u64> {
            Some(self.rows)
        }
        fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
            Box::pin(futures::stream::empty())
        }
    }

    fn splits(sizes: &[(&'static str, u64, i64)]) -> Vec<Arc<dyn Split>> {
        sizes
            .iter()
            .map(|&(name, rows, min_time)| {
                Arc::new(Sized {
                    name,
                    rows,
                    min_time,
                }) as Arc<dyn Split>
            })
            .collect()
    }

    fn names(assigned: &[Vec<Arc<dyn Split>>]) -> Vec<Vec<String>> {
        assigned
            .iter()
            .map(|s| s.iter().map(|s| s.describe()).collect())
            .collect()
    }

    #[test]
    fn a_restore_must_find_every_split_it_names() {
        let position = |split: &str| crate::checkpoint::protocol::SplitPosition {
            split: split.into(),
            position: "rows:1".into(),
            watermark: None,
        };
        let planned = splits(&[("a", 1, 10), ("b", 1, 20)]);
        let restored = |names: &[&str]| -> BTreeMap<_, _> {
            names.iter().map(|n| (n.to_string(), position(n))).collect()
        };
        assert!(check_restored_splits("t", &planned, &restored(&[])).is_ok());
        assert!(
            check_restored_splits("t", &planned, &restored(&["a"])).is_ok(),
            "splits new to this run start from their beginning"
        );
        let err = check_restored_splits("t", &planned, &restored(&["a", "x", "y"]))
            .expect_err("x and y are gone")
            .to_string();
        assert!(
            err.starts_with("table `t`: the checkpoint being restored read 2 splits this run does not find, such as `x`"),
            "{err}"
        );
    }

    /// A file the checkpoint read, found again under its name but with
    /// other contents, fails the restore naming the file and both versions.
    #[test]
    fn a_restore_refuses_a_split_whose_data_changed() {
        #[derive(Debug)]
        struct Versioned(&'static str);
        impl Split for Versioned {
            fn describe(&self) -> String {
                "file:///d/a.json".into()
            }
            fn version(&self) -> Option<String> {
                Some(self.0.into())
            }
            fn open(self: Arc<Self>) -> BoxStream<'static, Result<RecordBatch>> {
                Box::pin(futures::stream::empty())
            }
        }
        let then = Versioned("size 10, modified 2026-01-01T00:00:00Z");
        let restored: BTreeMap<_, _> = [(
            then.key(),
            crate::checkpoint::protocol::SplitPosition {
                split: then.key(),
                position: "bytes:4".into(),
                watermark: None,
            },
        )]
        .into();
        let same: Vec<Arc<dyn Split>> = vec![Arc::new(Versioned(then.0))];
        assert!(check_restored_splits("t", &same, &restored).is_ok());
        let rewritten: Vec<Arc<dyn Split>> = vec![Arc::new(Versioned(
            "size 12, modified 2026-01-02T00:00:00Z",
        ))];
        let err = check_restored_splits("t", &rewritten, &restored)
            .expect_err("another file under the same name")
            .to_string();
        assert_eq!(
            err,
            "table `t`: file:///d/a.json has changed since the checkpoint being restored read it (then: size 10, modified 2026-01-01T00:00:00Z; now: size 12, modified 2026-01-02T00:00:00Z), so its position there (bytes:4) would resume in other data. Restore with the input the checkpoint read, or start without --restore"
        );
        // A checkpoint from before keys had versions.
        let old: BTreeMap<_, _> = [(
            "file:///d/a.json".to_string(),
            crate::checkpoint::protocol::SplitPosition {
                split: "file:///d/a.json".into(),
                position: "bytes:4".into(),
                watermark: None,
            },
        )]
        .into();
        let err = check_restored_splits("t", &same, &old)
            .expect_err("its version cannot be checked")
            .to_string();
        assert!(
            err.contains("(then: version not recorded; now: size 10,"),
            "{err}"
        );
    }

    /// Splits of unknown or equal times keep planning's order, which for
    /// ranges of one file is their order in the file (names would sort
    /// `bytes 100..` before `bytes 20..`).
    #[test]
    fn ordered_splits_of_equal_time_keep_the_planned_order() {
        let assigned = assign_splits(
            splits(&[
                ("f bytes 0..20", 1, 5),
                ("f bytes 20..100", 1, 5),
                ("f bytes 100..120", 1, 5),
            ]),
            1,
            Reading::InOrder,
            |t| t,
        );
        assert_eq!(
            names(&assigned),
            vec![vec!["f bytes 0..20", "f bytes 20..100", "f bytes 100..120"]]
        );
    }

    #[test]
    fn ordered_splits_go_round_robin_earliest_first() {
        let assigned = assign_splits(
            splits(&[("c", 1, 30), ("a", 1, 10), ("b", 1, 20)]),
            2,
            Reading::InOrder,
            |t| t,
        );
        assert_eq!(names(&assigned), vec![vec!["a", "c"], vec!["b"]]);
    }

    #[test]
    fn concurrent_splits_balance_a_skewed_topic() {
        // One hot partition and five quiet ones: the hot one gets a subtask
        // of its own rather than sharing with the next in line.
        let assigned = assign_splits(
            splits(&[
                ("p0", 10, 0),
                ("p1", 1000, 0),
                ("p2", 10, 0),
                ("p3", 10, 0),
                ("p4", 10, 0),
                ("p5", 10, 0),
            ]),
            2,
            Reading::Concurrent { idle_timeout: None },
            |t| t,
        );
        assert_eq!(
            names(&assigned),
            vec![vec!["p1"], vec!["p0", "p2", "p3", "p4", "p5"]]
        );
        // Equal partitions spread evenly.
        let even = assign_splits(
            splits(&[("a", 5, 0), ("b", 5, 0), ("c", 5, 0), ("d", 5, 0)]),
            2,
            Reading::Concurrent { idle_timeout: None },
            |t| t,
        );
        assert!(even.iter().all(|s| s.len() == 2), "{:?}", names(&even));
    }
}
