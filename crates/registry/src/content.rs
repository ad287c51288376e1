//! The narrow interface between the transport and wherever blobs live, modelled on containerd's
//! content ingester and provider: the client never knows what a store is, so an embedder can
//! pull into its own storage (an OCI layout, a database, memory) and rbuild's store is one
//! implementation among others.
//!
//! A pull asks the [`Ingester`] whether it already [has](Ingester::contains) each blob, and
//! streams the ones it lacks into a [`ContentWriter`]; a push reads blobs from a [`Provider`].
//! The transport checks sizes while it streams; the writer owns the digest check, because only
//! it can make "verified" and "visible" one atomic step.

use std::io::{self, Read, Write};

use rbuild_digest::Digest;

/// Why the content side of a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The written bytes do not hash to the digest they were written for; nothing was kept.
    #[error("content does not match its digest: expected {expected}, got {actual} ({size} bytes)")]
    DigestMismatch {
        /// The digest the writer was begun with.
        expected: Digest,
        /// The digest of what was written.
        actual: Digest,
        /// How many bytes were written.
        size: u64,
    },
    /// A push needs a blob the provider does not have.
    #[error("blob {digest} is not in the content store")]
    NotFound {
        /// The missing blob.
        digest: Digest,
    },
    /// Anything else the implementation reports (disk full, permissions); its message should name
    /// the file or object involved.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl From<io::Error> for ContentError {
    fn from(e: io::Error) -> Self {
        ContentError::Other(Box::new(e))
    }
}

/// Where pulled blobs go (containerd's `content.Ingester`).
pub trait Ingester: Send + Sync {
    /// Whether the complete, verified blob is already there; a pull does not fetch it then.
    fn contains(&self, digest: &Digest) -> bool;

    /// Begins writing the blob that must hash to `digest` (`size` bytes per its descriptor).
    /// Nothing is visible until [`ContentWriter::commit`]; dropping the writer aborts it and must
    /// leave nothing behind.
    fn begin(&self, digest: &Digest, size: u64) -> Result<Box<dyn ContentWriter>, ContentError>;
}

/// One blob being written (containerd's `content.Writer`). Writes go to a private place (a
/// temporary file) so that a crash at any moment leaves either nothing or the whole blob.
pub trait ContentWriter: Write + Send {
    /// Bytes written so far: where a resumed download continues.
    fn written(&self) -> u64;

    /// Checks that the bytes hash to the digest the writer was begun with and, only then, makes
    /// the blob visible in one atomic step (rename). On a mismatch nothing is kept and
    /// [`ContentError::DigestMismatch`] is returned. Committing a blob that appeared meanwhile
    /// (another process pulled it) succeeds.
    fn commit(self: Box<Self>) -> Result<(), ContentError>;
}

/// Where pushed blobs come from (containerd's `content.Provider`).
pub trait Provider: Send + Sync {
    /// The size of a blob, for the upload's `Content-Length` and progress.
    fn size(&self, digest: &Digest) -> Result<u64, ContentError>;

    /// Opens a blob for reading from its start.
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, ContentError>;
}

/// Writes small bytes already verified in memory (a config, manifest or index) through `sink`,
/// unless it has them.
pub(crate) fn put_bytes(
    sink: &dyn Ingester,
    digest: &Digest,
    bytes: &[u8],
) -> Result<(), ContentError> {
    if sink.contains(digest) {
        return Ok(());
    }
    let mut w = sink.begin(digest, bytes.len() as u64)?;
    w.write_all(bytes)?;
    w.commit()
}

/// Reads a whole blob of at most `limit` bytes (an index's child manifest) from `source`.
pub(crate) fn read_limited(
    source: &dyn Provider,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>, ContentError> {
    let mut out = Vec::new();
    source.open(digest)?.take(limit + 1).read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(ContentError::Other(
            format!("blob {digest} is larger than {limit} bytes").into(),
        ));
    }
    Ok(out)
}
