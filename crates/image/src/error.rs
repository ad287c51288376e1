//! The one error type of the crate.

use std::path::PathBuf;

use rbuild_digest::Digest;

/// Everything that can go wrong with images; each variant carries what the user needs to act on it
/// (the offending name, digest or file inside an archive).
/// `#[non_exhaustive]`: the `store` feature adds the variants of store and layer failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A user-typed image reference does not follow docker's grammar.
    #[error("invalid reference format {input:?}: {reason}")]
    InvalidReference {
        /// What the user typed.
        input: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// No local image matches a name, tag or id prefix.
    #[error("No such image: {0}")]
    NotFound(String),
    /// An id prefix matches more than one image, so acting on it would be a guess.
    #[error("image id prefix {input:?} is ambiguous: matches {matches:?}")]
    Ambiguous {
        /// The prefix the user typed.
        input: String,
        /// Image ids it matches.
        matches: Vec<String>,
    },
    /// `rmi` by id of an image several names still point to; docker refuses without `--force`.
    #[error("conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories: {tags:?}")]
    Conflict {
        /// Short image id.
        id: String,
        /// Names that still reference it.
        tags: Vec<String>,
    },
    /// A JSON document (config, manifest, index, manifest.json) could not be read or is malformed.
    #[error("invalid {what}: {source}")]
    Json {
        /// Which document, e.g. `image config sha256:...` or `manifest.json in x.tar`.
        what: String,
        /// The parser's complaint (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A layer's uncompressed content does not hash to the diff_id its config promises.
    #[error("layer {file} in {archive}: uncompressed digest {actual} does not match config diff_id {expected}")]
    DiffIdMismatch {
        /// The archive being loaded.
        archive: PathBuf,
        /// The file inside the archive.
        file: String,
        /// diff_id from the config.
        expected: Digest,
        /// What the content actually hashes to.
        actual: Digest,
    },
    /// A blob's bytes do not hash to the digest that names it.
    #[error("blob {file} in {archive}: content digest {actual} does not match {expected}")]
    BlobDigestMismatch {
        /// The archive being loaded.
        archive: PathBuf,
        /// The file inside the archive.
        file: String,
        /// The digest the descriptor or file name promises.
        expected: Digest,
        /// What the content actually hashes to.
        actual: Digest,
    },
    /// An archive is not in any format `load` understands, or is internally inconsistent.
    #[error("{archive}: {reason}")]
    BadArchive {
        /// The archive being loaded.
        archive: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file an archive's index points to is missing from it (or escapes it).
    #[error("{archive}: missing file {file:?}")]
    MissingFile {
        /// The archive being loaded.
        archive: PathBuf,
        /// The name inside the archive.
        file: String,
    },
    /// An image's parts do not fit together (layer count versus diff_ids, ...).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A blob an image needs is not in the store.
    #[error("blob {0} is not in the store")]
    MissingBlob(Digest),
    /// The content store failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Applying or writing a layer failed.
    #[cfg(feature = "store")]
    #[error(transparent)]
    Layer(#[from] rbuild_layer::LayerError),
    /// A stored compressed variant does not decompress to its layer's diff id.
    #[cfg(feature = "store")]
    #[error(transparent)]
    CorruptVariant(#[from] crate::layers::CorruptVariant),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or archive involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// Wraps an io error with the path it concerns.
    #[cfg(feature = "store")]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}
