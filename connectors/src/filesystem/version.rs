//! Which version of a file a split reads.
//!
//! A checkpoint keeps a position in each file it read: a row of a Parquet
//! row group, a byte of a JSON or CSV file. In another file put in its
//! place under the same name, that position points into other rows, and a
//! restore that read on from it would publish a wrong answer without a
//! word. So a file split's key (see `Split::version`) holds the version of
//! the file as the store reports it, and a restore compares it.
//!
//! What names a version depends on the store, and is chosen so that an
//! unchanged file keeps its version across runs and machines:
//! - **a local disk**: the size and the modification time, to the
//!   nanosecond, as `make` and `rsync` judge a file. object_store's local
//!   ETag is not used: it holds the inode, which changes when the same
//!   bytes are copied to another disk or machine (`cp -a`, `rsync -a` and
//!   backups keep the time), and would refuse restores that are right.
//! - **an object store**: the size and the ETag. S3's ETag is derived from
//!   the content (the MD5 of a single upload), so the same bytes uploaded
//!   again are the same version though their time changed; a store whose
//!   ETag changes with every write (GCS, Azure) errs on the side of
//!   refusing. Without an ETag, the modification time.

use object_store::ObjectMeta;

/// The version of the file `meta` describes; `local` when it is on this
/// machine's disk.
pub fn file_version(meta: &ObjectMeta, local: bool) -> String {
    let modified = || {
        meta.last_modified
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    match (&meta.e_tag, local) {
        (Some(e_tag), false) => format!("size {}, ETag {e_tag}", meta.size),
        _ => format!("size {}, modified {}", meta.size, modified()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn meta(size: u64, nanos: u32, e_tag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            location: "d/a.json".into(),
            last_modified: chrono::Utc
                .timestamp_opt(1_800_000_000, nanos)
                .single()
                .expect("a time"),
            size,
            e_tag: e_tag.map(str::to_string),
            version: None,
        }
    }

    /// On a local disk the inode-derived ETag is left out, and the time
    /// counts to the nanosecond; in an object store the ETag stands for the
    /// content, and the time of an upload of the same bytes does not count.
    #[test]
    fn a_version_is_size_and_time_on_disk_size_and_etag_in_a_store() {
        let local = file_version(&meta(10, 5, Some("1f-abc-a")), true);
        assert_eq!(local, "size 10, modified 2027-01-15T08:00:00.000000005Z");
        assert_eq!(local, file_version(&meta(10, 5, Some("2e-abc-a")), true));
        assert_ne!(local, file_version(&meta(10, 6, Some("1f-abc-a")), true));
        assert_ne!(local, file_version(&meta(11, 5, Some("1f-abc-a")), true));

        let remote = file_version(&meta(10, 5, Some("\"9b2cf5\"")), false);
        assert_eq!(remote, "size 10, ETag \"9b2cf5\"");
        assert_eq!(
            remote,
            file_version(&meta(10, 999, Some("\"9b2cf5\"")), false)
        );
        assert_ne!(
            remote,
            file_version(&meta(10, 5, Some("\"77aa01\"")), false)
        );
        assert_eq!(
            file_version(&meta(10, 0, None), false),
            "size 10, modified 2027-01-15T08:00:00Z"
        );
    }
}
