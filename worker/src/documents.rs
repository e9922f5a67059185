//! The document store: signed PDFs and attachments, stored once by the sha256 of their bytes,
//! in object storage through the `object_store` crate — a local directory by default
//! (development, compose), an S3 bucket or S3-compatible server in production (every worker
//! replica then reads and writes the same documents, with no shared volume).
//!
//! An object is named `<prefix>/<2 hex>/<sha256>`. Content addressing makes a write idempotent
//! (the same name always holds the same bytes) and an object left behind by a rolled-back
//! transaction harmless. The local backend writes to a temporary file, fsyncs it and renames it
//! into place (then fsyncs the directory), so a document is either complete or absent and
//! survives a crash; S3 writes are atomic and durable by nature.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use countersign::config::DocumentsLocation;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

/// A stored document's bytes, streamed.
pub struct StoredContent {
    pub size: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

pub trait DocumentStore: Send + Sync {
    /// Stores `content` under its `sha256` (lower-case hex); a no-op if it is already there.
    fn put<'a>(&'a self, sha256: &'a str, content: &'a [u8]) -> BoxFuture<'a, io::Result<()>>;

    /// The content stored under `sha256`, if any.
    fn get<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, io::Result<Option<StoredContent>>>;
}

/// True for 64 lower-case hex digits: the only names the store accepts, so no path tricks.
/// A content's id in the store: its SHA-256, in lower-case hex.
pub fn sha256_hex(content: &[u8]) -> String {
    use sha2::Digest as _;
    countersign_providers::hex(&sha2::Sha256::digest(content))
}

pub fn is_sha256_hex(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Documents in an object store, under a prefix.
#[derive(Debug, Clone)]
pub struct ObjectDocuments {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectDocuments {
    /// The store a configuration names: a directory (created if missing), or an S3 bucket
    /// configured by the `AWS_*` environment variables (region, credentials, `AWS_ENDPOINT` for
    /// an S3-compatible server, `AWS_ALLOW_HTTP` for one without TLS).
    pub fn open(location: &DocumentsLocation) -> Result<Self, String> {
        match location {
            DocumentsLocation::Directory(directory) => {
                std::fs::create_dir_all(directory)
                    .map_err(|e| format!("{}: {e}", directory.display()))?;
                // fsync'd (the file and its directory) before put returns: the event that
                // names the document is committed after it, and must never point at nothing.
                let store = object_store::local::LocalFileSystem::new_with_prefix(directory)
                    .map_err(|e| format!("{}: {e}", directory.display()))?
                    .with_fsync(true);
                Ok(Self::new(Arc::new(store), Path::default()))
            }
            DocumentsLocation::S3 { url } => {
                // The S3 client's TLS is rustls with ring, the one crypto provider built in
                // (object_store's default would add aws-lc-rs); installed once per process.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url.as_str())
                    .build()
                    .map_err(|e| format!("{url}: {e}"))?;
                let prefix = url
                    .strip_prefix("s3://")
                    .and_then(|rest| rest.split_once('/'))
                    .map_or("", |(_, prefix)| prefix);
                Ok(Self::new(Arc::new(store), Path::from(prefix)))
            }
        }
    }

    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    fn path_of(&self, sha256: &str) -> Path {
        self.prefix.clone().join(&sha256[..2]).join(sha256)
    }
}

fn invalid_name() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a document id is 64 lower-case hex digits",
    )
}

fn io_error(error: object_store::Error) -> io::Error {
    io::Error::other(error)
}

impl DocumentStore for ObjectDocuments {
    fn put<'a>(&'a self, sha256: &'a str, content: &'a [u8]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if !is_sha256_hex(sha256) {
                return Err(invalid_name());
            }
            let path = self.path_of(sha256);
            match self.store.head(&path).await {
                Ok(meta) if meta.size == content.len() as u64 => return Ok(()),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(io_error(error)),
            }
            self.store
                .put(&path, Bytes::copy_from_slice(content).into())
                .await
                .map(|_| ())
                .map_err(io_error)
        })
    }

    fn get<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, io::Result<Option<StoredContent>>> {
        Box::pin(async move {
            if !is_sha256_hex(sha256) {
                return Ok(None);
            }
            let result = match self.store.get(&self.path_of(sha256)).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(io_error(error)),
            };
            let size = result.meta.size;
            let stream = result.into_stream().map_err(io_error).boxed();
            Ok(Some(StoredContent { size, stream }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_once_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            ObjectDocuments::open(&DocumentsLocation::Directory(dir.path().join("docs"))).unwrap();
        let id = "a".repeat(64);
        store.put(&id, b"%PDF-1.4").await.unwrap();
        store.put(&id, b"%PDF-1.4").await.unwrap();
        assert!(
            dir.path().join("docs/aa").join(&id).exists(),
            "<root>/<2 hex>/<sha256>"
        );
        let content = store.get(&id).await.unwrap().expect("stored");
        assert_eq!(content.size, 8);
        let bytes: Vec<Bytes> = content.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"%PDF-1.4");
        assert!(store.get(&"b".repeat(64)).await.unwrap().is_none());
        assert!(store.get("../../etc/passwd").await.unwrap().is_none());
        assert!(store.put("../x", b"x").await.is_err());
    }
}
