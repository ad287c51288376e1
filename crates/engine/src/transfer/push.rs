//! Pushing results from the store: one image (its manifest) or a multi-platform image (a manifest
//! per platform and an index), to one or more destinations with one client and its token cache.

use std::collections::BTreeMap;

use rbuild_digest::Digest;
use rbuild_image::manifest::{
    Descriptor, Index, Manifest, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};
use rbuild_registry::{BlockingClient, PushOptions};

use super::content::{mount_sources, record_sources, StoreContent};
use super::events::{finished, push_event, started};
use super::{PushSettings, RegistryOptions, TransferError};
use crate::progress::{Direction, ProgressSink};

/// A manifest or index in the store, ready to push to any number of destinations.
struct Prepared {
    bytes: Vec<u8>,
    media_type: &'static str,
    /// Every config and layer it needs (mount hints are looked up and recorded for these).
    blobs: Vec<Digest>,
    /// The local image id the `Finished` event reports; `None` for an index (its own digest).
    image_id: Option<Digest>,
}

/// The OCI manifest of `image`, layers compressed per `settings` (stored variants reused), put in
/// the store so the registry client can read it (an index's children are read from there).
fn manifest_of(
    images: &Images,
    image: &LocalImage,
    settings: &PushSettings,
    annotations: BTreeMap<String, String>,
) -> Result<(Manifest, Vec<u8>), TransferError> {
    let store = images.store();
    let mut layers = Vec::with_capacity(image.layers.len());
    for l in &image.layers {
        layers.push(rbuild_image::export::layer_variant(
            images,
            &l.diff_id,
            settings.compression,
        )?);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
        config: Descriptor::new(MEDIA_TYPE_OCI_CONFIG, image.id, store.blob_size(&image.id)?),
        layers,
        annotations,
    };
    let bytes = manifest.to_canonical_json();
    store.put_bytes(&bytes)?;
    Ok((manifest, bytes))
}

fn blobs_of(m: &Manifest) -> impl Iterator<Item = Digest> + '_ {
    std::iter::once(m.config.digest).chain(m.layers.iter().map(|l| l.digest))
}

fn prepare_image(
    images: &Images,
    image: &LocalImage,
    settings: &PushSettings,
) -> Result<Prepared, TransferError> {
    let (manifest, bytes) = manifest_of(images, image, settings, settings.annotations.clone())?;
    Ok(Prepared {
        blobs: blobs_of(&manifest).collect(),
        bytes,
        media_type: MEDIA_TYPE_OCI_MANIFEST,
        image_id: Some(image.id),
    })
}

fn prepare_index(
    images: &Images,
    platforms: &[LocalImage],
    settings: &PushSettings,
) -> Result<Prepared, TransferError> {
    let mut entries = Vec::with_capacity(platforms.len());
    let mut blobs = Vec::new();
    for image in platforms {
        let (manifest, bytes) = manifest_of(images, image, settings, BTreeMap::new())?;
        blobs.extend(blobs_of(&manifest));
        entries.push(Descriptor {
            platform: image.config.platform(),
            ..Descriptor::new(
                MEDIA_TYPE_OCI_MANIFEST,
                Digest::of(&bytes),
                bytes.len() as u64,
            )
        });
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: entries,
        annotations: BTreeMap::new(),
    };
    let bytes = index.to_canonical_json();
    images.store().put_bytes(&bytes)?;
    Ok(Prepared {
        bytes,
        media_type: MEDIA_TYPE_OCI_INDEX,
        blobs,
        image_id: None,
    })
}

/// Pushes `p` to each of `dests` in turn (stopping at the first failure), mounting blobs from
/// repositories known to hold them, and records the destinations as sources of its blobs.
fn push_prepared(
    images: &Images,
    client: &BlockingClient,
    p: &Prepared,
    dests: &[Reference],
    settings: &PushSettings,
    progress: &dyn ProgressSink,
) -> Result<Vec<Digest>, TransferError> {
    let store = images.store();
    let mut pushed = Vec::with_capacity(dests.len());
    for dest in dests {
        let rname = dest.to_string();
        started(progress, Direction::Push, &rname);
        let opts = PushOptions {
            mount_from: settings.mount_from.clone(),
            blob_sources: mount_sources(store, p.blobs.iter(), dest),
        };
        let digest = client
            .push_with(
                &StoreContent(store),
                &p.bytes,
                p.media_type,
                dest,
                &opts,
                &|ev| push_event(progress, ev),
            )
            .map_err(|e| TransferError::Registry {
                reference: rname.clone(),
                source: Box::new(e),
            })?;
        record_sources(store, p.blobs.iter(), dest, progress);
        let image_id = p.image_id.unwrap_or(digest);
        finished(progress, Direction::Push, rname, &digest, &image_id);
        pushed.push(digest);
    }
    Ok(pushed)
}

/// Pushes `image` to `dest` with layers compressed per `settings` (reusing stored variants, such as
/// the blobs a pull brought) and an OCI manifest, and returns the manifest digest.
pub fn push_image(
    images: &Images,
    client: &BlockingClient,
    image: &LocalImage,
    dest: &Reference,
    settings: &PushSettings,
    progress: &dyn ProgressSink,
) -> Result<Digest, TransferError> {
    // gc must not remove the manifest or a variant between writing it and pushing it.
    let _lock = images.store().lock_shared()?;
    let p = prepare_image(images, image, settings)?;
    let pushed = push_prepared(
        images,
        client,
        &p,
        std::slice::from_ref(dest),
        settings,
        progress,
    )?;
    Ok(pushed.first().copied().unwrap_or(Digest::of(&p.bytes)))
}

/// Pushes `image` to every reference in `dests` with one client (one token cache), as
/// `docker build --push -t a -t b` does; stops at the first failure.
pub fn push_all(
    images: &Images,
    opts: &RegistryOptions,
    image: &LocalImage,
    dests: &[Reference],
    settings: &PushSettings,
    progress: &dyn ProgressSink,
) -> Result<Vec<Digest>, TransferError> {
    let client = opts.client()?;
    let _lock = images.store().lock_shared()?;
    let p = prepare_image(images, image, settings)?;
    push_prepared(images, client, &p, dests, settings, progress)
}

/// Pushes a multi-platform image to every reference in `dests`: each platform's manifest (layers
/// compressed per `settings`) by digest, then one OCI index listing them with their platforms
/// under the tag, as `docker buildx build --platform a,b --push` does. Returns the index digest
/// pushed to each destination.
pub fn push_index(
    images: &Images,
    opts: &RegistryOptions,
    platforms: &[LocalImage],
    dests: &[Reference],
    settings: &PushSettings,
    progress: &dyn ProgressSink,
) -> Result<Vec<Digest>, TransferError> {
    let client = opts.client()?;
    let _lock = images.store().lock_shared()?;
    let p = prepare_index(images, platforms, settings)?;
    push_prepared(images, client, &p, dests, settings, progress)
}
