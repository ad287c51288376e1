//! Why a transfer failed.

use rbuild_digest::Digest;
use rbuild_image::ImageError;
use rbuild_registry::RegistryError;
use rbuild_store::StoreError;

use crate::BuildError;

/// Why a pull or push failed; each variant names the image, and the digest when one blob is at
/// fault, so the user knows what to retry or report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The image reference cannot be parsed.
    #[error("invalid image reference {input:?}: {source}")]
    Reference {
        /// What was given.
        input: String,
        /// Why it is invalid.
        source: Box<ImageError>,
    },
    /// The registry (or the network) failed.
    #[error("{}{source}", prefix(reference))]
    Registry {
        /// The image being transferred (empty while the client is being set up).
        reference: String,
        /// What the client said; it names URLs and digests.
        source: Box<RegistryError>,
    },
    /// The manifest and the config of a pulled image disagree on the number of layers.
    #[error("{reference}: manifest has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCount {
        /// The image.
        reference: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// A pulled layer does not decompress to the diff_id its config promises; nothing was kept.
    #[error("{reference}: layer {layer} decompresses to {actual}, but the config says {expected}; the image is corrupt")]
    DiffIdMismatch {
        /// The image.
        reference: String,
        /// The compressed blob.
        layer: Digest,
        /// The diff_id in the config.
        expected: Digest,
        /// What the blob decompressed to.
        actual: Digest,
    },
    /// A pulled layer is not a readable compressed tar.
    #[error("{reference}: cannot decompress layer {layer}: {source}")]
    Decompress {
        /// The image.
        reference: String,
        /// The compressed blob.
        layer: Digest,
        /// The decoder's error.
        source: std::io::Error,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// The local image database failed.
    #[error(transparent)]
    Image(Box<ImageError>),
}

impl From<StoreError> for TransferError {
    fn from(e: StoreError) -> Self {
        TransferError::Store(Box::new(e))
    }
}

impl From<ImageError> for TransferError {
    fn from(e: ImageError) -> Self {
        TransferError::Image(Box::new(e))
    }
}

fn prefix(reference: &str) -> String {
    if reference.is_empty() {
        String::new()
    } else {
        format!("{reference}: ")
    }
}

impl From<TransferError> for BuildError {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::Store(s) => BuildError::Store(*s),
            TransferError::Image(i) => BuildError::Image(*i),
            other => BuildError::Request(other.to_string()),
        }
    }
}
