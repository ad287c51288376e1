//! OCI manifest, index and descriptor types, plus the media types rbuild reads and writes.
//!
//! Own types rather than `oci-spec`'s builders: they accept Docker schema2 media types on import
//! and carry only what rbuild needs, with the field names the OCI image spec fixes.

use std::collections::BTreeMap;

use rbuild_digest::Digest;
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// OCI image manifest.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed OCI layer: what rbuild keeps locally, because builds never pay to (de)compress it.
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip OCI layer.
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd OCI layer.
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest, accepted on import.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list, accepted on import.
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Annotation naming an image inside an OCI layout (a tag for skopeo/umoci, a full name for podman).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation with the full image name, written by containerd, BuildKit and docker 25+.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The platform an index entry is for: the one platform type all crates share.
pub use rbuild_platform::Platform;

/// A typed, sized pointer to a blob, so readers can verify what they fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its content digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Free-form metadata (image names in an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor without annotations or platform.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// An image manifest: one config and an ordered layer list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// OCI or Docker manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index: the entry point of an OCI layout and of multi-platform images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// OCI index media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Manifests (or nested indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: impl Into<String>,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
        what: what.into(),
        source,
    })
}

impl Manifest {
    /// Parses a manifest blob; `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: impl Into<String>) -> Result<Manifest, ImageError> {
        parse(bytes, what)
    }
    /// Canonical bytes, so equal manifests get equal digests.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        crate::config::canonical_json(self).unwrap_or_default()
    }
}

impl Index {
    /// Parses an index (or Docker manifest list); `what` names it in errors.
    pub fn from_json(bytes: &[u8], what: impl Into<String>) -> Result<Index, ImageError> {
        parse(bytes, what)
    }
    /// Canonical bytes.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        crate::config::canonical_json(self).unwrap_or_default()
    }
}
