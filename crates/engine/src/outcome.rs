//! What a build returns.

use rbuild_image::LocalImage;

/// The result of a successful build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOutcome {
    /// The image (config digest as id, manifest, layers).
    pub image: LocalImage,
    /// Normalized tags that were applied in the store.
    pub tags: Vec<String>,
    /// Every reference the image was pushed to, with the manifest digest the registry holds
    /// (the registry's manifest has compressed layers, so it differs from the local one).
    pub pushed: Vec<Pushed>,
    /// Every step that ran or came from the cache, in step order.
    pub steps: Vec<crate::progress::StepResult>,
    /// A multi-platform build (`--platform a,b`): each platform's image, in the order asked
    /// (`image` is the first); empty for a single-platform build.
    pub platforms: Vec<LocalImage>,
    /// A multi-platform build: the digest of the OCI index the tags point at.
    pub index: Option<rbuild_digest::Digest>,
}

impl BuildOutcome {
    /// The image id (config digest), as `docker build` prints it.
    pub fn image_id(&self) -> rbuild_digest::Digest {
        self.image.id
    }

    /// The digest of the image's manifest in the local store (uncompressed layers); see
    /// [`BuildOutcome::pushed`] for the digests registries hold.
    pub fn manifest_digest(&self) -> rbuild_digest::Digest {
        self.image.manifest_digest
    }
}

/// One push of a build's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Pushed {
    /// The normalized reference pushed to.
    pub name: String,
    /// The manifest digest in that registry (`sha256:…`).
    pub digest: rbuild_digest::Digest,
}
