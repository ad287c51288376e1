//! Layer tars: the one place rbuild turns a directory into image-layer bytes and layer bytes back
//! into a directory.
//!
//! Use this crate whenever a build step's filesystem changes must become an OCI layer
//! ([`write_tree`], [`write_paths`], [`LayerWriter`]) or a pulled/base layer must be laid onto a
//! rootfs ([`apply_layer`]). The writer is deterministic (sorted entries, numeric ids, clamped
//! mtimes, PAX for anything ustar can't hold), so the same tree always yields the same diff id.
//! The applier follows the OCI image-spec "Applying changesets" rules and resolves every path
//! inside the root with `openat2(RESOLVE_IN_ROOT)`, so a hostile tar cannot touch anything outside
//! it. [`compress`] wraps the blob compressions a registry may hand us.
//!
//! ```
//! # fn main() -> Result<(), rbuild_layer::LayerError> {
//! let src = tempfile::tempdir().unwrap();
//! std::fs::write(src.path().join("hello.txt"), b"hi\n").unwrap();
//! let (tar_bytes, info) = rbuild_layer::write_tree(
//!     src.path(),
//!     Vec::new(),
//!     &rbuild_layer::WriteOptions { source_date_epoch: Some(0), ..Default::default() },
//! )?;
//! assert_eq!(info.size, tar_bytes.len() as u64);
//!
//! let dst = tempfile::tempdir().unwrap();
//! let stats = rbuild_layer::apply_layer(dst.path(), &tar_bytes[..], &rbuild_layer::ApplyOptions::default())?;
//! assert_eq!(stats.entries, 1);
//! assert_eq!(std::fs::read(dst.path().join("hello.txt")).unwrap(), b"hi\n");
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::io;
use std::path::PathBuf;

mod apply;
pub mod compress;
mod list;
mod write;

pub use apply::{apply_layer, ApplyOptions, ApplyStats, IdMap, IdRange};
pub use list::{list_layer, list_tree, EntryKind, TreeEntry};
pub use write::{
    layer_xattrs, write_paths, write_tree, EntryMeta, EntryMetaKind, LayerInfo, LayerWriter,
    OwnerOverride, PathEntry, WriteOptions, OVERFLOW_ID,
};

/// Prefix that marks a whiteout file in a layer (OCI / AUFS convention), exported so other crates
/// computing diffs agree on the spelling.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker, exported for the same reason as [`WHITEOUT_PREFIX`].
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a layer could not be written, read or applied; every variant names the path the user has
/// to look at (the entry inside the tar and, when applying, the root it was going to).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The entry's own path leaves the root once `..` is resolved; the whole layer is refused as
    /// Docker does, because a well-formed layer never contains one.
    #[error("layer entry {path:?} escapes the root {root}")]
    Breakout {
        /// Root the layer was being applied to.
        root: PathBuf,
        /// Entry path as written in the tar.
        path: String,
    },
    /// A hardlink entry points outside the root.
    #[error("layer entry {path:?} is a hardlink to {target:?}, which escapes the root {root}")]
    LinkBreakout {
        /// Root the layer was being applied to.
        root: PathBuf,
        /// Entry path as written in the tar.
        path: String,
        /// Link target as written in the tar.
        target: String,
    },
    /// The entry is well-formed tar but not a valid layer entry (bad whiteout name, unsupported
    /// type such as a sparse file, hardlink to nothing).
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidEntry {
        /// Entry path as written in the tar.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The tar stream itself is corrupt or ends early; `after` is the last entry read fine, to
    /// narrow down where the damage is.
    #[error("corrupt or truncated layer tar (after entry {after:?}): {source}")]
    Tar {
        /// Last entry that was read completely, if any.
        after: Option<String>,
        /// The underlying read/parse error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed while applying an entry.
    #[error("applying layer entry {path:?} under {root}: {source}")]
    Apply {
        /// Root the layer was being applied to.
        root: PathBuf,
        /// Entry path as written in the tar.
        path: String,
        /// The failing system call's error.
        #[source]
        source: io::Error,
    },
    /// A source file could not be read while writing a layer.
    #[error("reading {path} for the layer: {source}")]
    Read {
        /// Full path of the file on disk.
        path: PathBuf,
        /// The failing system call's error.
        #[source]
        source: io::Error,
    },
    /// The output writer failed (disk full, broken pipe).
    #[error("writing layer entry {path:?}: {source}")]
    Write {
        /// Path of the entry being written.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A path handed to the writer is not a clean relative path.
    #[error("path {path} cannot be put in a layer: {reason}")]
    BadSourcePath {
        /// The offending path as given.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A source file changed size while it was being copied into the layer.
    #[error("{path} changed while being written to the layer (expected {expected} bytes, read {actual})")]
    SourceChanged {
        /// Full path of the file on disk.
        path: PathBuf,
        /// Size from lstat.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
}
