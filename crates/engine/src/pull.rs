//! Base images from registries: pulling into the local store and pushing results.
//!
//! Pulled layers arrive compressed and stay that way: the compressed blob is recorded as the
//! variant of its diff id and is decoded (and verified against the diff id) only when a snapshot
//! unpacks it or an export needs the uncompressed tar (`rbuild_image::layers::open_layer`). A pull is
//! therefore as fast as fetching the blobs, and a push or export reuses them without recompressing.
//! Until a layer is decoded its `LayerDesc::size` is the compressed size.
//! The config is kept byte for byte, so a pulled image has the same id as in the registry (and in
//! docker).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use rbuild_digest::Digest;
use rbuild_dockerfile::Platform;
use rbuild_image::export::ExportCompression;
use rbuild_image::manifest::{
    Descriptor, Manifest, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD, MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_image::reference::Reference;
use rbuild_image::{ImageError, Images, LayerDesc, LocalImage};
use rbuild_registry::{
    BlockingClient, ClientOptions, PullEvent, PushEvent, PushOptions, RegistryError,
};
use rbuild_store::{StoreError, Variant};

pub use crate::progress::{BlobState, Direction, RegistryEvent};
use crate::progress::{Event, ProgressSink};
use crate::BuildError;

/// How the builder reaches registries; no global state, so each builder can have its own.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// A `registries.conf` to use instead of the standard places.
    pub registries_conf: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
}

impl RegistryOptions {
    /// The registry client's options: the environment's defaults (`$RBUILD_REGISTRIES_CONF`,
    /// docker/podman credentials, `$SSL_CERT_FILE`) with this builder's overrides on top, so the
    /// CLI and embedders configure registries in one place.
    pub fn client_options(&self, env: &dyn Fn(&str) -> Option<String>) -> ClientOptions {
        let mut o = ClientOptions::from_env(env);
        if let Some(p) = &self.registries_conf {
            o.registries_conf = Some(p.clone());
        }
        o.insecure_registries
            .extend(self.insecure_registries.iter().cloned());
        o
    }

    /// A blocking client configured from the process environment and these options; one per
    /// pull or push, so nothing is shared between builders.
    pub fn client(&self) -> Result<BlockingClient, TransferError> {
        let env = |k: &str| std::env::var(k).ok();
        BlockingClient::new(self.client_options(&env)).map_err(|e| TransferError::Registry {
            reference: String::new(),
            source: Box::new(e),
        })
    }
}

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

fn emit(progress: &dyn ProgressSink, ev: RegistryEvent) {
    progress.event(Event::Registry(ev));
}

fn blob(progress: &dyn ProgressSink, direction: Direction, digest: &Digest, state: BlobState) {
    emit(
        progress,
        RegistryEvent::Blob {
            direction,
            digest: digest.to_string(),
            state,
        },
    );
}

pub(crate) fn pull_event(progress: &dyn ProgressSink, ev: PullEvent) {
    let d = Direction::Pull;
    match ev {
        PullEvent::Started { digest, size } => {
            blob(progress, d, &digest, BlobState::Started { size })
        }
        PullEvent::Progress { digest, done, size } => {
            blob(progress, d, &digest, BlobState::Progress { done, size })
        }
        PullEvent::Retrying {
            digest, attempt, ..
        } => blob(progress, d, &digest, BlobState::Retrying { attempt }),
        PullEvent::Done { digest } => blob(progress, d, &digest, BlobState::Done),
        PullEvent::Skipped { digest } => blob(progress, d, &digest, BlobState::Exists),
        _ => {}
    }
}

pub(crate) fn push_event(progress: &dyn ProgressSink, ev: PushEvent) {
    let d = Direction::Push;
    match ev {
        PushEvent::Started { digest, size } => {
            blob(progress, d, &digest, BlobState::Started { size })
        }
        PushEvent::Progress { digest, done, size } => {
            blob(progress, d, &digest, BlobState::Progress { done, size })
        }
        PushEvent::Done { digest } => blob(progress, d, &digest, BlobState::Done),
        PushEvent::Exists { digest } => blob(progress, d, &digest, BlobState::Exists),
        PushEvent::Mounted { digest, from } => {
            blob(progress, d, &digest, BlobState::Mounted { from })
        }
        _ => {}
    }
}

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
    Ok(pull_image(images, &client, &reference, platform, progress)?)
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
    emit(
        progress,
        RegistryEvent::Started {
            direction: Direction::Pull,
            reference: rname.clone(),
        },
    );
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
            .pull(&by_digest, platform, store, &|ev| pull_event(progress, ev))
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
    emit(
        progress,
        RegistryEvent::Finished {
            direction: Direction::Pull,
            reference: rname,
            digest: manifest_digest.to_string(),
            image_id: image.id.to_string(),
        },
    );
    Ok(image)
}

/// Most mount sources tried per blob: each is a request, and each repository widens the token.
const MAX_SOURCES_PER_BLOB: usize = 3;

/// Records that `reference`'s repository holds `blobs`, so a later push to the same registry
/// mounts them instead of uploading. The records are hints: failing to write one only warns.
pub(crate) fn record_sources<'a>(
    store: &rbuild_store::Store,
    blobs: impl Iterator<Item = &'a Digest>,
    reference: &Reference,
    progress: &dyn ProgressSink,
) {
    let name = reference.name();
    for d in blobs {
        if let Err(e) = store.add_blob_source(d, &name) {
            progress.event(Event::Warning {
                message: format!("cannot record that {name} holds {d}: {e}"),
            });
            return;
        }
    }
}

/// The recorded repositories of `dest`'s registry (other than `dest` itself) holding each blob,
/// for cross-repository mounts; unreadable records are skipped (they are hints).
pub(crate) fn mount_sources<'a>(
    store: &rbuild_store::Store,
    blobs: impl Iterator<Item = &'a Digest>,
    dest: &Reference,
) -> HashMap<Digest, Vec<Reference>> {
    let mut out = HashMap::new();
    for d in blobs {
        let refs: Vec<Reference> = store
            .blob_sources(d)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Reference::parse(s).ok())
            .filter(|r| r.registry() == dest.registry() && r.repository() != dest.repository())
            .take(MAX_SOURCES_PER_BLOB)
            .collect();
        if !refs.is_empty() {
            out.insert(*d, refs);
        }
    }
    out
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

/// How a push compresses layers and where it may mount them from.
#[derive(Debug, Clone, Default)]
pub struct PushSettings {
    /// Layer compression (gzip by default; stored variants are reused).
    pub compression: ExportCompression,
    /// Repositories on the destination registry that may already hold the layers, so the registry
    /// links them instead of receiving them again. Sources recorded in the store (by earlier pulls
    /// and pushes) are used per blob without being listed here.
    pub mount_from: Vec<Reference>,
    /// Annotations of the pushed manifest (an inline build cache, see `cachefmt`).
    pub annotations: BTreeMap<String, String>,
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
    let rname = dest.to_string();
    emit(
        progress,
        RegistryEvent::Started {
            direction: Direction::Push,
            reference: rname.clone(),
        },
    );
    let store = images.store();
    let _lock = store.lock_shared()?;
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
        annotations: settings.annotations.clone(),
    };
    let bytes = manifest.to_canonical_json();
    store.put_bytes(&bytes)?;
    let blobs = || {
        std::iter::once(&manifest.config.digest).chain(manifest.layers.iter().map(|l| &l.digest))
    };
    let opts = PushOptions {
        mount_from: settings.mount_from.clone(),
        blob_sources: mount_sources(store, blobs(), dest),
    };
    let digest = client
        .push_with(store, &bytes, MEDIA_TYPE_OCI_MANIFEST, dest, &opts, &|ev| {
            push_event(progress, ev)
        })
        .map_err(|e| TransferError::Registry {
            reference: rname.clone(),
            source: Box::new(e),
        })?;
    record_sources(store, blobs(), dest, progress);
    emit(
        progress,
        RegistryEvent::Finished {
            direction: Direction::Push,
            reference: rname,
            digest: digest.to_string(),
            image_id: image.id.to_string(),
        },
    );
    Ok(digest)
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
    dests
        .iter()
        .map(|d| push_image(images, &client, image, d, settings, progress))
        .collect()
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
    let store = images.store();
    let _lock = store.lock_shared()?;
    let mut entries = Vec::with_capacity(platforms.len());
    let mut blobs = Vec::new();
    for image in platforms {
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
            annotations: BTreeMap::new(),
        };
        blobs.push(manifest.config.digest);
        blobs.extend(manifest.layers.iter().map(|l| l.digest));
        let bytes = manifest.to_canonical_json();
        // The registry client reads an index's children from the store.
        let digest = store.put_bytes(&bytes)?;
        entries.push(Descriptor {
            platform: image.config.platform(),
            ..Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, digest, bytes.len() as u64)
        });
    }
    let index = rbuild_image::manifest::Index {
        schema_version: 2,
        media_type: Some(rbuild_image::manifest::MEDIA_TYPE_OCI_INDEX.into()),
        manifests: entries,
        annotations: BTreeMap::new(),
    };
    let bytes = index.to_canonical_json();
    store.put_bytes(&bytes)?;
    let mut pushed = Vec::with_capacity(dests.len());
    for dest in dests {
        let rname = dest.to_string();
        emit(
            progress,
            RegistryEvent::Started {
                direction: Direction::Push,
                reference: rname.clone(),
            },
        );
        let opts = PushOptions {
            mount_from: settings.mount_from.clone(),
            blob_sources: mount_sources(store, blobs.iter(), dest),
        };
        let digest = client
            .push_with(
                store,
                &bytes,
                rbuild_image::manifest::MEDIA_TYPE_OCI_INDEX,
                dest,
                &opts,
                &|ev| push_event(progress, ev),
            )
            .map_err(|e| TransferError::Registry {
                reference: rname.clone(),
                source: Box::new(e),
            })?;
        record_sources(store, blobs.iter(), dest, progress);
        emit(
            progress,
            RegistryEvent::Finished {
                direction: Direction::Push,
                reference: rname,
                digest: digest.to_string(),
                image_id: digest.to_string(),
            },
        );
        pushed.push(digest);
    }
    Ok(pushed)
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
    fn options_override_environment() {
        let env = |k: &str| match k {
            "RBUILD_REGISTRIES_CONF" => Some("/env/registries.conf".to_string()),
            _ => None,
        };
        let from_env = RegistryOptions::default().client_options(&env);
        assert_eq!(
            from_env.registries_conf,
            Some(PathBuf::from("/env/registries.conf"))
        );
        let opts = RegistryOptions {
            registries_conf: Some("/mine.conf".into()),
            insecure_registries: vec!["127.0.0.1:5000".into()],
        };
        let o = opts.client_options(&env);
        assert_eq!(o.registries_conf, Some(PathBuf::from("/mine.conf")));
        assert_eq!(o.insecure_registries, vec!["127.0.0.1:5000".to_string()]);
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
