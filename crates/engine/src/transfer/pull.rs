//! Pulling base images into the store.
//!
//! Pulled layers arrive compressed and stay that way: the compressed blob is recorded as the
//! variant of its diff id and is decoded (and verified against the diff id) only when a snapshot
//! unpacks it or an export needs the uncompressed tar (`rbuild_image::layers::open_layer`). A pull is
//! therefore as fast as fetching the blobs, and a push or export reuses them without recompressing.
//! Until a layer is decoded its `LayerDesc::size` is the compressed size.
//! The config is kept byte for byte, so a pulled image has the same id as in the registry (and in
//! docker).

use std::io::Write;

use rbuild_digest::Digest;
use rbuild_dockerfile::Platform;
use rbuild_image::manifest::{Descriptor, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_ZSTD};
use rbuild_image::reference::Reference;
use rbuild_image::{ImageError, Images, LayerDesc, LocalImage};
use rbuild_registry::BlockingClient;
use rbuild_store::{StoreError, Variant};

use super::content::{record_sources, StoreContent};
use super::events::{blob, finished, pull_event, started};
use super::{RegistryOptions, TransferError};
use crate::progress::{BlobState, Direction, ProgressSink};
use crate::BuildError;

fn parse_ref(name: &str) -> Result<Reference, TransferError> {
    Reference::parse(name).map_err(|e| TransferError::Reference {
        input: name.to_string(),
        source: Box::new(e),
    })
}

/// Pulls `name` for `platform` into the store and returns the local image.
pub fn pull_base(
    images: &Images,
    opts: &RegistryOptions,
    name: &str,
    platform: &Platform,
    progress: &dyn ProgressSink,
) -> Result<LocalImage, BuildError> {
    let reference = parse_ref(name)?;
    let client = opts.client()?;
    Ok(pull_image(images, client, &reference, platform, progress)?)
}

/// Pulls `reference` with `client` (for callers that pull several images with one client and its
/// token cache) and tags the result with the reference. Layers whose uncompressed form is already
/// in the store are not downloaded.
pub fn pull_image(
    images: &Images,
    client: &BlockingClient,
    reference: &Reference,
    platform: &rbuild_registry::Platform,
    progress: &dyn ProgressSink,
) -> Result<LocalImage, TransferError> {
    let rname = reference.to_string();
    let reg_err = |e| TransferError::Registry {
        reference: rname.clone(),
        source: Box::new(e),
    };
    started(progress, Direction::Pull, &rname);
    let store = images.store();
    // gc must not run between writing blobs and the tag that keeps them alive.
    let _lock = store.lock_shared()?;
    let resolved = client.resolve(reference, platform).map_err(reg_err)?;
    let diff_ids = diff_ids_of(&resolved.config_bytes, &rname)?;
    let mut all_local = true;
    for d in &diff_ids {
        all_local &= rbuild_image::layers::layer_available(store, d)?;
    }
    let (manifest, manifest_digest, config_bytes) = if all_local {
        for l in &resolved.manifest.layers {
            blob(progress, Direction::Pull, &l.digest, BlobState::Exists);
        }
        (
            resolved.manifest,
            resolved.manifest_digest,
            resolved.config_bytes,
        )
    } else {
        // Pull exactly what was resolved, even if the tag moves meanwhile.
        let by_digest = pinned(reference, &resolved.manifest_digest)?;
        let pulled = client
            .pull(&by_digest, platform, &StoreContent(store), &|ev| {
                pull_event(progress, ev)
            })
            .map_err(reg_err)?;
        (
            pulled.resolved.manifest,
            pulled.resolved.manifest_digest,
            pulled.resolved.config_bytes,
        )
    };
    let diff_ids = diff_ids_of(&config_bytes, &rname)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(TransferError::LayerCount {
            reference: rname,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (desc, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let (size, decoded) = record_layer(images, desc, diff_id, &rname)?;
        if decoded {
            blob(
                progress,
                Direction::Pull,
                &desc.digest,
                BlobState::Extracted,
            );
        }
        layers.push(LayerDesc {
            diff_id: *diff_id,
            size,
        });
    }
    let image = commit_keeping_config(images, &config_bytes, &layers)?;
    images.tag(&image, reference)?;
    let blobs =
        std::iter::once(&manifest.config.digest).chain(manifest.layers.iter().map(|l| &l.digest));
    record_sources(store, blobs, reference, progress);
    finished(
        progress,
        Direction::Pull,
        rname,
        &manifest_digest,
        &image.id,
    );
    Ok(image)
}

/// `reference` pinned to `digest` (keeping the repository), for a pull that cannot race a tag.
fn pinned(reference: &Reference, digest: &Digest) -> Result<Reference, TransferError> {
    let s = format!("{}@{digest}", reference.name());
    parse_ref(&s)
}

fn diff_ids_of(config: &[u8], reference: &str) -> Result<Vec<Digest>, TransferError> {
    let cfg = rbuild_image::config::ImageConfig::from_json(config).map_err(|e| match e {
        ImageError::Json { source, .. } => ImageError::Json {
            what: format!("image config of {reference}"),
            source,
        },
        other => other,
    })?;
    Ok(cfg.rootfs.diff_ids)
}

/// The store-variant name and OCI media type for a pulled layer's media type, or `None` when the
/// layer is not compressed (its blob is already the uncompressed form).
fn variant_kind(media_type: &str) -> Option<(&'static str, &'static str)> {
    match rbuild_layer::compress::Compression::from_media_type(media_type) {
        rbuild_layer::compress::Compression::Gzip => Some(("gzip", MEDIA_TYPE_OCI_LAYER_GZIP)),
        rbuild_layer::compress::Compression::Zstd => Some(("zstd", MEDIA_TYPE_OCI_LAYER_ZSTD)),
        _ => None,
    }
}

/// Records a pulled layer: a compressed blob becomes the variant of its diff id (decoded later, on
/// first use); only a blob in a format we cannot keep as a variant is decompressed now. Returns the
/// layer's size (compressed while it has not been decoded) and whether it was decompressed here.
fn record_layer(
    images: &Images,
    desc: &Descriptor,
    diff_id: &Digest,
    reference: &str,
) -> Result<(u64, bool), TransferError> {
    let store = images.store();
    let kind = variant_kind(&desc.media_type).filter(|_| desc.digest != *diff_id);
    if let Some((name, media_type)) = kind {
        if store.contains(diff_id) {
            // Already decoded earlier (or built locally): keep the uncompressed size.
            remember_variant(store, desc, diff_id, name, media_type)?;
            return Ok((store.blob_size(diff_id)?, false));
        }
        if store.contains(&desc.digest) {
            remember_variant(store, desc, diff_id, name, media_type)?;
            return Ok((desc.size, false));
        }
        // Neither form is here but the layer is available through another variant (all_local).
        if rbuild_image::layers::layer_available(store, diff_id)? {
            return Ok((desc.size, false));
        }
    }
    let decoded = !store.contains(diff_id);
    Ok((decode_layer(images, desc, diff_id, reference)?, decoded))
}

fn remember_variant(
    store: &rbuild_store::Store,
    desc: &Descriptor,
    diff_id: &Digest,
    name: &str,
    media_type: &str,
) -> Result<(), TransferError> {
    let v = Variant {
        digest: desc.digest,
        size: desc.size,
        media_type: media_type.to_string(),
    };
    if store.get_variant(diff_id, name)?.as_ref() != Some(&v) {
        store.set_variant(diff_id, name, &v)?;
    }
    Ok(())
}

/// Makes sure the uncompressed form of a pulled layer is in the store (verified against its
/// diff_id), for blobs that cannot be kept as a variant. Returns the uncompressed size.
fn decode_layer(
    images: &Images,
    desc: &Descriptor,
    diff_id: &Digest,
    reference: &str,
) -> Result<u64, TransferError> {
    let store = images.store();
    if !store.contains(diff_id) {
        let src = store.open_blob(&desc.digest)?;
        let dec_err = |source| TransferError::Decompress {
            reference: reference.to_string(),
            layer: desc.digest,
            source,
        };
        let mut r =
            rbuild_layer::compress::decompress(std::io::BufReader::with_capacity(1 << 20, src))
                .map_err(dec_err)?;
        let mut ingest = store.ingest()?;
        std::io::copy(&mut r, &mut ingest).map_err(dec_err)?;
        ingest.flush().map_err(dec_err)?;
        match ingest.commit(Some(diff_id)) {
            Ok(_) => {}
            Err(StoreError::DigestMismatch {
                expected, actual, ..
            }) => {
                return Err(TransferError::DiffIdMismatch {
                    reference: reference.to_string(),
                    layer: desc.digest,
                    expected,
                    actual,
                })
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(store.blob_size(diff_id)?)
}

/// Records an image whose config bytes must stay exactly as served (the image id is their digest),
/// with its own image record, so it stays listed (as `<none>`) when its tag moves elsewhere.
fn commit_keeping_config(
    images: &Images,
    config_bytes: &[u8],
    layers: &[LayerDesc],
) -> Result<LocalImage, TransferError> {
    images
        .commit_exact_config(config_bytes, layers)
        .map_err(|e| match e {
            ImageError::Json { source, .. } => ImageError::Json {
                what: format!("image config {}", Digest::of(config_bytes)),
                source,
            },
            other => other,
        })
        .map_err(TransferError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_image::manifest::MEDIA_TYPE_OCI_LAYER;

    #[test]
    fn variant_kinds_follow_media_types() {
        let cases = [
            (MEDIA_TYPE_OCI_LAYER_GZIP, Some("gzip")),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some("gzip"),
            ),
            (MEDIA_TYPE_OCI_LAYER_ZSTD, Some("zstd")),
            (MEDIA_TYPE_OCI_LAYER, None),
        ];
        for (mt, want) in cases {
            assert_eq!(variant_kind(mt).map(|v| v.0), want, "{mt}");
        }
    }

    #[test]
    fn pinned_keeps_repository() {
        let r = Reference::parse("127.0.0.1:5000/base/busybox:1").unwrap();
        let d = Digest::of(b"x");
        let p = pinned(&r, &d).unwrap();
        assert_eq!(p.repository(), r.repository());
        assert_eq!(p.registry(), r.registry());
        assert_eq!(p.digest(), Some(&d));
    }
}
