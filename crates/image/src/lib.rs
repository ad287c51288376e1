//! Images: the config, manifest and reference types of OCI/Docker images, the local image database
//! ([`Images`]) over the content store, and the archive formats images enter and leave by
//! (OCI layout, docker-archive, flattened rootfs tar).
//!
//! Everything over the store is behind the default `store` feature; without it the crate is the
//! types and references alone, which is all a registry client (`rbuild-registry`) needs.
//!
//! Use it after a build has produced layer blobs in a [`rbuild_store::Store`]: commit them with a config to
//! get an image id, tag it, then list/remove/export it, or load images that docker, podman or
//! skopeo saved.
//!
//! ```no_run
//! use rbuild_image::{config::ImageConfig, reference::Reference, Images, LayerDesc};
//! # fn main() -> Result<(), rbuild_image::ImageError> {
//! let images = Images::new(rbuild_store::Store::open("/var/lib/rbuild")?);
//! let mut config = ImageConfig::empty("linux", "amd64", None);
//! config.set_env("PATH", "/usr/bin:/bin");
//! let img = images.commit(&config, &[])?;
//! images.tag(&img, &Reference::parse("detection:1.0")?)?;
//! assert_eq!(images.resolve("detection:1.0")?.id, img.id);
//! # Ok(()) }
//! ```

#[cfg(feature = "store")]
mod archive;
pub mod config;
mod error;
#[cfg(feature = "store")]
pub mod export;
#[cfg(feature = "store")]
mod flatten;
#[cfg(feature = "store")]
mod human;
#[cfg(feature = "store")]
mod images;
#[cfg(feature = "store")]
pub mod import;
#[cfg(feature = "store")]
pub mod layers;
#[cfg(feature = "store")]
pub mod layout;
pub mod manifest;
pub mod reference;

pub use error::ImageError;
#[cfg(feature = "store")]
pub use images::{
    HistoryRow, ImageInspect, ImageSummary, Images, InspectRootFs, LayerDesc, LocalImage,
    PruneStats,
};
pub use reference::Reference;
