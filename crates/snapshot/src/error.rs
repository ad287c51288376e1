//! The one error type of the snapshotter.

use std::io;
use std::path::PathBuf;

use rbuild_digest::Digest;

/// Everything that can go wrong while unpacking, preparing or committing a snapshot; each variant
/// names the path, layer or snapshot the user has to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The content store failed (missing layer blob, ingest error); the store error names the
    /// digest or path.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// A layer's bytes could not be read: no uncompressed blob and no usable compressed variant,
    /// or a variant that does not decompress to the diff id (the error names both digests).
    #[error("reading layer {layer}: {source}")]
    Source {
        /// Diff id of the layer.
        layer: Digest,
        /// What the image database said.
        #[source]
        source: Box<rbuild_image::ImageError>,
    },
    /// A layer could not be unpacked; `layer` is its diff id.
    #[error("unpacking layer {layer}: {source}")]
    Unpack {
        /// Diff id of the layer being unpacked.
        layer: Digest,
        /// What the layer crate said (names the entry).
        #[source]
        source: rbuild_layer::LayerError,
    },
    /// A layer is well-formed tar but cannot be turned into an overlay lower directory.
    #[error("layer {layer}: entry {path:?} cannot be unpacked for overlay: {reason}")]
    InvalidLayer {
        /// Diff id of the layer.
        layer: Digest,
        /// Entry path as written in the tar.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// The layer of an active snapshot could not be written.
    #[error("writing the layer of snapshot {key}: {source}")]
    Write {
        /// The active snapshot's key.
        key: String,
        /// What the layer writer said (names the path).
        #[source]
        source: rbuild_layer::LayerError,
    },
    /// A filesystem operation failed; `action` says what was being done to `path`.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What the snapshotter was doing ("create directory", "copy", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// [`crate::Mode::Overlay`] was asked for but overlayfs cannot be mounted here.
    #[error("overlay snapshots are not available: {reason}")]
    OverlayUnavailable {
        /// What the probe found (the failing step and errno).
        reason: String,
    },
    /// An exclude path given to commit is not usable (contains `..`).
    #[error("exclude path {} is not a clean path inside the rootfs", path.display())]
    BadExclude {
        /// The offending path as given.
        path: PathBuf,
    },
}

/// Builds a closure that wraps an `io::Error` with the action and path, for `map_err`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> SnapshotError {
    let path = path.into();
    move |source| SnapshotError::Io {
        action,
        path,
        source,
    }
}

/// The same for rustix's errno.
pub(crate) fn errno_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(rustix::io::Errno) -> SnapshotError {
    let path = path.into();
    move |e| SnapshotError::Io {
        action,
        path,
        source: io::Error::from_raw_os_error(e.raw_os_error()),
    }
}
