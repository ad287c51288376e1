//! Registry access when the `registry` feature is off: the same names as with it, so the rest of
//! the engine and embedders compile unchanged, and every transfer fails with an error that says
//! which feature brings it back. Base images must then already be in the store.

use rbuild_digest::Digest;
use rbuild_dockerfile::Platform;
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};

use super::{PushSettings, RegistryOptions};
use crate::progress::ProgressSink;
use crate::BuildError;

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
