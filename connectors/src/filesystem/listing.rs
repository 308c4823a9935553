//! Which files a `path` option names: one file, a directory, or a glob.

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
}

impl FileSet {
    pub fn parse(path: &str, table: &str) -> Result<Self> {
        let (prefix, pattern) = split_glob(path);
        let root = resolve(prefix, table, "path")?;
        Ok(Self {
            root,
            pattern: pattern.map(str::to_string),
            written: path.to_string(),
        })
    }

    /// Lists the files, sorted by path; an error if there are none.
    pub async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let store = &self.root.store;
        if self.pattern.is_none()
            && let Ok(meta) = store.head(&self.root.path).await
        {
            return Ok(vec![meta]);
        }
        let prefix = &self.root.path;
        let mut files: Vec<ObjectMeta> = store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| SluiceError::io(format!("listing {}", self.root.url), e))?;
        files.retain(|f| {
            let relative = relative(prefix, &f.location);
            !relative
                .split('/')
                .any(|part| part.starts_with('.') || part.starts_with('_'))
                && self
                    .pattern
                    .as_deref()
                    .is_none_or(|p| glob_match(p, &relative))
        });
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
}
