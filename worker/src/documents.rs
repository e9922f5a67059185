//! The document store: signed PDFs and attachments, stored once by the sha256 of their bytes.
//!
//! [`DocumentStore`] is the seam for other backends (S3 through `object_store` can follow);
//! [`LocalDirectory`] keeps `<root>/<2 hex>/<sha256>`, written to a temporary file, synced and
//! renamed into place, so a document is either complete or absent. Content addressing makes a
//! write idempotent, and a file left behind by a rolled-back transaction harmless.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

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
pub fn is_sha256_hex(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Documents in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDirectory {
    root: PathBuf,
}

impl LocalDirectory {
    /// Uses (and creates) `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn path_of(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(sha256)
    }
}

fn invalid_name() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a document id is 64 lower-case hex digits",
    )
}

impl DocumentStore for LocalDirectory {
    fn put<'a>(&'a self, sha256: &'a str, content: &'a [u8]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            if !is_sha256_hex(sha256) {
                return Err(invalid_name());
            }
            let path = self.path_of(sha256);
            if tokio::fs::metadata(&path)
                .await
                .is_ok_and(|m| m.len() == content.len() as u64)
            {
                return Ok(());
            }
            let directory = path.parent().expect("has a parent");
            tokio::fs::create_dir_all(directory).await?;
            let temporary =
                directory.join(format!(".{sha256}.{}.tmp", uuid::Uuid::new_v4().simple()));
            let mut file = tokio::fs::File::create(&temporary).await?;
            let written = async {
                file.write_all(content).await?;
                file.sync_all().await
            }
            .await;
            if let Err(error) = written {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(error);
            }
            tokio::fs::rename(&temporary, &path).await
        })
    }

    fn get<'a>(&'a self, sha256: &'a str) -> BoxFuture<'a, io::Result<Option<StoredContent>>> {
        Box::pin(async move {
            if !is_sha256_hex(sha256) {
                return Ok(None);
            }
            let file = match tokio::fs::File::open(self.path_of(sha256)).await {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(error),
            };
            let size = file.metadata().await?.len();
            let stream = tokio_util::io::ReaderStream::new(file)
                .map_ok(Bytes::from)
                .boxed();
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
        let store = LocalDirectory::open(dir.path()).unwrap();
        let id = "a".repeat(64);
        store.put(&id, b"%PDF-1.4").await.unwrap();
        store.put(&id, b"%PDF-1.4").await.unwrap();
        let content = store.get(&id).await.unwrap().expect("stored");
        assert_eq!(content.size, 8);
        let bytes: Vec<Bytes> = content.stream.try_collect().await.unwrap();
        assert_eq!(bytes.concat(), b"%PDF-1.4");
        assert!(store.get(&"b".repeat(64)).await.unwrap().is_none());
        assert!(store.get("../../etc/passwd").await.unwrap().is_none());
        assert!(store.put("../x", b"x").await.is_err());
    }
}
