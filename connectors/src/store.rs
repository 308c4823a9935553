//! Object store URLs: local paths and `file://`, `s3://`, `gs://`, `az://`.
//!
//! Cloud stores read their credentials and endpoints from the environment
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`), as their command-line tools do.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use sluice_engine::SluiceError;
use url::Url;

/// A location in an object store.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// The path inside the store (no leading slash).
    pub path: Path,
    /// The URL as the user should see it.
    pub url: String,
}

impl Location {
    /// The URL of `path` in the same store.
    pub fn url_of(&self, path: &Path) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) if scheme != "file" => {
                let bucket = rest.split('/').next().unwrap_or_default();
                format!("{scheme}://{bucket}/{path}")
            }
            _ => format!("file:///{path}"),
        }
    }

    /// Where `path` of this store is on this machine's disk, if the store
    /// is the local file system.
    pub fn local_path(&self, path: &Path) -> Option<std::path::PathBuf> {
        if !self.url.starts_with("file://") {
            return None;
        }
        LocalFileSystem::new().path_to_filesystem(path).ok()
    }
}

/// Resolves a path or URL for table `table`'s option `option`.
pub fn resolve(text: &str, table: &str, option: &str) -> Result<Location, SluiceError> {
    let bad = |e: &dyn std::fmt::Display| {
        SluiceError::config(format!(
            "table `{table}`: option '{option}' = '{text}': {e}"
        ))
    };
    if let Some((scheme, _)) = text.split_once("://")
        && scheme != "file"
    {
        let url = Url::parse(text).map_err(|e| bad(&e))?;
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| bad(&e))?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| bad(&e))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| bad(&e))?,
            ),
            other => {
                return Err(bad(&format!(
                    "unknown scheme `{other}://` (use a local path, file://, s3://, gs:// or az://)"
                )));
            }
        };
        let path = Path::from_url_path(url.path()).map_err(|e| bad(&e))?;
        return Ok(Location {
            store,
            path,
            url: text.to_string(),
        });
    }
    let local = text.strip_prefix("file://").unwrap_or(text);
    let absolute = std::path::absolute(local).map_err(|e| bad(&e))?;
    let path = Path::from_absolute_path(&absolute).map_err(|e| bad(&e))?;
    Ok(Location {
        store: Arc::new(LocalFileSystem::new()),
        path,
        url: format!("file://{}", absolute.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_become_absolute_file_urls() {
        let l = resolve("/tmp/x/y", "t", "path").expect("resolves");
        assert_eq!(l.path.as_ref(), "tmp/x/y");
        assert_eq!(l.url, "file:///tmp/x/y");
        assert_eq!(
            l.url_of(&Path::from("tmp/x/y/z.parquet")),
            "file:///tmp/x/y/z.parquet"
        );
        assert_eq!(
            l.local_path(&Path::from("tmp/x/y/z.parquet")),
            Some(std::path::PathBuf::from("/tmp/x/y/z.parquet"))
        );
    }

    #[test]
    fn cloud_urls_resolve_without_network() {
        let l = resolve("s3://bucket/events/day=1", "t", "path").expect("resolves");
        assert_eq!(l.path.as_ref(), "events/day=1");
        assert_eq!(
            l.url_of(&Path::from("events/a.parquet")),
            "s3://bucket/events/a.parquet"
        );
        assert_eq!(l.local_path(&l.path), None);
        let err = resolve("ftp://x/y", "t", "path")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("unknown scheme `ftp://`"), "{err}");
    }
}
