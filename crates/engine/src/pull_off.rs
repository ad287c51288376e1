//! Registry access when the `registry` feature is off: the same names as `pull.rs`, so the rest of
//! the engine and embedders compile unchanged, and every transfer fails with an error that says
//! which feature brings it back. Base images must then already be in the store.

use std::path::PathBuf;

use rbuild_digest::Digest;
use rbuild_dockerfile::Platform;
use rbuild_image::export::ExportCompression;
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};

use crate::progress::ProgressSink;
pub use crate::progress::{BlobState, Direction, RegistryEvent};
use crate::BuildError;

/// How the builder would reach registries; kept so options are written the same way with or
/// without the feature.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// A `registries.conf` to use instead of the standard places.
    pub registries_conf: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
}

/// Why a pull or push failed: here always because registry support was not compiled in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// rbuild was built without its `registry` feature.
    #[error(
        "{reference}: registry access is not compiled in (enable rbuild's `registry` feature)"
    )]
    Disabled {
        /// The image that needed a registry.
        reference: String,
    },
}

impl From<TransferError> for BuildError {
    fn from(e: TransferError) -> Self {
        BuildError::Request(e.to_string())
    }
}

/// How a push compresses layers and where it may mount them from.
#[derive(Debug, Clone, Default)]
pub struct PushSettings {
    /// Layer compression.
    pub compression: ExportCompression,
    /// Repositories that may already hold the layers.
    pub mount_from: Vec<Reference>,
    /// Annotations of the pushed manifest.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Fails: without the `registry` feature a base image must already be in the store.
pub fn pull_base(
    _images: &Images,
    _opts: &RegistryOptions,
    name: &str,
    _platform: &Platform,
    _progress: &dyn ProgressSink,
) -> Result<LocalImage, BuildError> {
    Err(TransferError::Disabled {
        reference: name.to_string(),
    }
    .into())
}

/// Fails: pushing needs the `registry` feature.
pub fn push_all(
    _images: &Images,
    _opts: &RegistryOptions,
    _image: &LocalImage,
    dests: &[Reference],
    _settings: &PushSettings,
    _progress: &dyn ProgressSink,
) -> Result<Vec<Digest>, TransferError> {
    Err(TransferError::Disabled {
        reference: dests.first().map(|d| d.to_string()).unwrap_or_default(),
    })
}

/// Fails: pushing needs the `registry` feature.
pub fn push_index(
    _images: &Images,
    _opts: &RegistryOptions,
    _platforms: &[LocalImage],
    dests: &[Reference],
    _settings: &PushSettings,
    _progress: &dyn ProgressSink,
) -> Result<Vec<Digest>, TransferError> {
    Err(TransferError::Disabled {
        reference: dests.first().map(|d| d.to_string()).unwrap_or_default(),
    })
}
