//! The one error type of the store.

use std::io;
use std::path::PathBuf;

use rbuild_digest::Digest;

/// Everything that can go wrong in the store; each variant names the path, digest or name the user
/// has to look at to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A filesystem operation failed; `action` says what the store was doing to `path`.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What the store was trying to do ("create", "rename", "read", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// A blob was asked for that the store does not hold.
    #[error("blob {digest} is not in the store at {}", root.display())]
    BlobNotFound {
        /// The missing blob.
        digest: Digest,
        /// The store root that was searched.
        root: PathBuf,
    },
    /// Written content did not hash to the digest the caller promised; nothing was stored.
    #[error("digest mismatch: expected {expected}, but the {size} bytes written hash to {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of what was actually written.
        actual: Digest,
        /// How many bytes were written.
        size: u64,
    },
    /// A reference or compression name cannot be stored (empty, NUL byte, too long).
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// "reference" or "compression".
        kind: &'static str,
        /// The offending name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A deferred blob (see [`crate::Deferred`]) could not be written from its recipe.
    #[error("cannot write blob {digest} from what it was recorded from: {reason}")]
    Produce {
        /// The blob that was asked for.
        digest: Digest,
        /// What went wrong, from the producer.
        reason: String,
    },
    /// A record file under `refs/` or `meta/` does not parse; it was not written by this store or
    /// was damaged.
    #[error("corrupt store record {}: {source}", path.display())]
    CorruptRecord {
        /// The damaged file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
}

/// Builds a closure that wraps an `io::Error` with the action and path, for `map_err`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
