//! Base images from registries: pulling into the local store and pushing results.
//!
//! Pulled layers arrive compressed; the store keeps layers uncompressed (the form builds use) and
//! remembers the compressed blobs as variants, so a later push or export does not compress again.

use std::path::PathBuf;

use dockerfile::Platform;
use image::{Images, LocalImage};

use crate::progress::ProgressSink;
use crate::BuildError;

/// How the builder reaches registries; no global state, so each builder can have its own.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// A `registries.conf` to use instead of the standard places.
    pub registries_conf: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
}

/// Pulls `name` for `platform` into the store and returns the local image.
pub fn pull_base(
    images: &Images,
    opts: &RegistryOptions,
    name: &str,
    platform: &Platform,
    progress: &dyn ProgressSink,
) -> Result<LocalImage, BuildError> {
    let _ = (images, opts, platform, progress);
    Err(BuildError::Request(format!(
        "image {name:?} is not in the local store, and pulling from registries is not available yet \
         (load it with `rbuild load`)"
    )))
}
