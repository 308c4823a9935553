//! Which files a `path` option names: one file, a directory, or a glob.
//!
//! Only regular files are read. On a local disk a FIFO, socket or device
//! would block a reader or never end, so one named by `path` itself is an
//! error, and one found in a directory is skipped with a warning.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use sluice_engine::{Result, SluiceError};

use crate::store::{Location, resolve};

/// The files of a source, found when the job starts.
#[derive(Debug, Clone)]
pub struct FileSet {
    /// Where to look (the part of the path before any glob).
    pub root: Location,
    /// A glob over the path below `root`, if the option had one.
    pattern: Option<String>,
    /// The option as written, for messages.
    pub written: String,
    /// The table whose option this is, for messages.
    table: String,
}

impl FileSet {
    pub fn parse(path: &str, table: &str) -> Result<Self> {
        let (prefix, pattern) = split_glob(path);
        let root = resolve(prefix, table, "path")?;
        Ok(Self {
            root,
            pattern: pattern.map(str::to_string),
            written: path.to_string(),
            table: table.to_string(),
        })
    }

    /// Lists the files, sorted by path; an error if there are none.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let store = &self.root.store;
        let local = self.root.local_path(&self.root.path);
        if self.pattern.is_none() {
            if let Some(local) = &local
                && let Ok(meta) = std::fs::metadata(local)
                && let Some(kind) = special_kind(&meta.file_type())
            {
                return Err(SluiceError::config(format!(
                    "table `{}`: option 'path' = '{}': {} is {kind}, not a regular file",
                    self.table,
                    self.written,
                    local.display()
                )));
            }
            if let Ok(meta) = store.head(&self.root.path).await {
                return Ok(vec![meta]);
            }
        }
        let prefix = &self.root.path;
        // The local store's listing leaves special files out silently.
        let special = match local {
            Some(dir) => tokio::task::spawn_blocking(move || special_files(&dir))
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut files: Vec<ObjectMeta> = store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| SluiceError::io(format!("listing {}", self.root.url), e))?;
        // A commit under way (or cut short) leaves old and new files side
        // by side until it is finished or undone: reading them now would
        // count rows twice or half.
        if let Some(log) = files.iter().find(|f| {
            f.location.filename().is_some_and(|n| {
                n.starts_with(super::sink::COMMIT_LOG_PREFIX) && n.ends_with(".json")
            })
        }) {
            return Err(SluiceError::Data(format!(
                "table `{}`: {} holds a commit in progress ({}): a job is writing its output there, or died while it did; wait for its `_SUCCESS`, or run that job again, which finishes or undoes the commit",
                self.table,
                self.root.url,
                log.location.filename().unwrap_or_default()
            )));
        }
        files.retain(|f| self.wanted(&relative(prefix, &f.location)));
        for (relative, kind) in special {
            if self.wanted(&relative) {
                tracing::warn!(
                    "table `{}`: skipping {}/{relative}: it is {kind}, not a regular file",
                    self.table,
                    self.root.url.trim_end_matches('/')
                );
            }
        }
        files.sort_by(|a, b| a.location.cmp(&b.location));
        tracing::debug!(path = %self.root.url, files = files.len(), "listed input files");
        if files.is_empty() {
            return Err(SluiceError::Data(format!(
                "no files found at '{}' ({})",
                self.written, self.root.url
            )));
        }
        Ok(files)
    }

    pub fn url_of(&self, path: &Path) -> String {
        self.root.url_of(path)
    }

    /// The version of a file of the set, for its splits' keys.
    pub fn version_of(&self, meta: &ObjectMeta) -> String {
        super::version::file_version(meta, self.is_local())
    }

    /// Whether the files are on this machine's disk.
    pub fn is_local(&self) -> bool {
        self.root.url.starts_with("file://")
    }

    /// Whether a file at `relative` (to `root`) is one of the set: not
    /// hidden or staged, and matching the glob if there is one.
    fn wanted(&self, relative: &str) -> bool {
        !relative
            .split('/')
            .any(|part| part.starts_with('.') || part.starts_with('_'))
            && self
                .pattern
                .as_deref()
                .is_none_or(|p| glob_match(p, relative))
    }
}

/// The files under the local directory `dir` that are neither regular
/// files nor directories, by path relative to `dir`, with what they are.
/// Symbolic links are followed to what they name, but not into
/// directories (which could loop); unreadable directories are passed
/// over, for the store's listing to report.
fn special_files(dir: &std::path::Path) -> Vec<(String, &'static str)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(mut kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                pending.push(entry.path());
                continue;
            }
            if kind.is_symlink() {
                match std::fs::metadata(entry.path()) {
                    Ok(meta) => kind = meta.file_type(),
                    Err(_) => continue,
                }
            }
            let path = entry.path();
            if let (Some(what), Ok(relative)) = (special_kind(&kind), path.strip_prefix(dir)) {
                found.push((relative.to_string_lossy().into_owned(), what));
            }
        }
    }
    found
}

/// What a file that is neither a regular file nor a directory is.
fn special_kind(kind: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() || kind.is_dir() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else {
        Some("a special file")
    }
}

fn relative(prefix: &Path, path: &Path) -> String {
    let p = path.as_ref();
    p.strip_prefix(prefix.as_ref())
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(p)
        .to_string()
}

/// Splits `a/b/*.parquet` into `a/b` and `*.parquet`.
fn split_glob(path: &str) -> (&str, Option<&str>) {
    let Some(first) = path.find(['*', '?', '[']) else {
        return (path, None);
    };
    match path[..first].rfind('/') {
        Some(slash) => (&path[..slash.max(1)], Some(&path[slash + 1..])),
        None => (".", Some(path)),
    }
}

/// Glob matching: `*` within a path segment, `**` across segments, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => {
                let rest = p[2..].strip_prefix(b"/").unwrap_or(&p[2..]);
                (0..=t.len()).any(|i| go(rest, &t[i..]))
            }
            Some(b'*') => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(&p[1..], &t[i..])),
            Some(b'?') => !t.is_empty() && t[0] != b'/' && go(&p[1..], &t[1..]),
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.parquet", "a.parquet"));
        assert!(!glob_match("*.parquet", "d/a.parquet"));
        assert!(glob_match("**/*.parquet", "d/e/a.parquet"));
        assert!(glob_match("**/*.parquet", "a.parquet"));
        assert!(glob_match("part-?.json", "part-1.json"));
        assert!(!glob_match("part-?.json", "part-12.json"));
    }

    #[test]
    fn glob_prefix_is_split_off() {
        assert_eq!(
            split_glob("/data/bid/*.parquet"),
            ("/data/bid", Some("*.parquet"))
        );
        assert_eq!(split_glob("/data/bid"), ("/data/bid", None));
        assert_eq!(split_glob("*.json"), (".", Some("*.json")));
    }

    #[tokio::test]
    async fn lists_directories_skipping_hidden_and_staged_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "b.json",
            "a.json",
            ".part-x.inprogress",
            "_SUCCESS",
            "sub/c.json",
        ] {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, "{}").expect("write");
        }
        let root = dir.path().to_str().expect("utf-8");
        let files = FileSet::parse(root, "t")
            .expect("parse")
            .list()
            .await
            .expect("list");
        let names: Vec<String> = files
            .iter()
            .map(|f| f.location.filename().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["a.json", "b.json", "c.json"]);
        let glob = format!("{root}/*.json");
        assert_eq!(
            FileSet::parse(&glob, "t")
                .expect("parse")
                .list()
                .await
                .expect("list")
                .len(),
            2
        );
        let err = FileSet::parse(&format!("{root}/nothing/*.json"), "t")
            .expect("parse")
            .list()
            .await
            .expect_err("must fail");
        assert!(err.to_string().contains("no files found"), "{err}");
    }

    fn mkfifo(path: &std::path::Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", path.display());
    }

    /// A FIFO would block its reader for ever: named by `path` it is an
    /// error, found in a directory or by a glob it is left out.
    #[tokio::test]
    async fn fifos_are_never_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.parquet"), "x").expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        mkfifo(&dir.path().join("b.parquet"));
        mkfifo(&dir.path().join("sub/c.parquet"));
        let root = dir.path().to_str().expect("utf-8");
        for path in [
            root.to_string(),
            format!("{root}/*.parquet"),
            format!("{root}/**/*.parquet"),
        ] {
            let files = FileSet::parse(&path, "t")
                .expect("parse")
                .list()
                .await
                .expect("list");
            let names: Vec<&str> = files.iter().filter_map(|f| f.location.filename()).collect();
            assert_eq!(names, ["a.parquet"], "{path}");
        }
        let fifo = dir.path().join("b.parquet");
        let err = FileSet::parse(fifo.to_str().expect("utf-8"), "t")
            .expect("parse")
            .list()
            .await
            .expect_err("a FIFO is not a table's file");
        assert!(matches!(err, SluiceError::Config(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "table `t`: option 'path' = '{}': {} is a FIFO, not a regular file",
                fifo.display(),
                fifo.display()
            )
        );
        let found = special_files(dir.path());
        let mut found: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        found.sort_unstable();
        assert_eq!(found, ["b.parquet", "sub/c.parquet"]);
    }
}
