//! Moving exported caches (see `cachefmt`) between the store and their homes: an OCI layout
//! directory (`type=local`) or a registry (`type=registry`, and inline caches in pushed images).
//!
//! Registry transfers use the builder's registry client, so they get its credentials,
//! `registries.conf` mirrors (for reads) and insecure-registry settings; a push HEADs every blob
//! first (blobs already in the repository are not uploaded again) and mounts blobs that a
//! recorded repository of the same registry holds. A registry import reads the manifest and the
//! records before the build and fetches a step's layer blobs (those the store lacks) when the
//! step's lookup hits; a local layout is copied in before the build. Every import error becomes
//! one warning, and the build goes on without that cache.

use std::collections::BTreeMap;

use rbuild_digest::Digest;
use rbuild_image::export::ExportCompression;
use rbuild_image::layout::{LayoutReader, LayoutWriter};
use rbuild_image::manifest::{Descriptor, Manifest, MEDIA_TYPE_OCI_MANIFEST};
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};
#[cfg(feature = "registry")]
use rbuild_registry::PushOptions;

use crate::cachefmt::{CacheConfig, CONFIG_MEDIA_TYPE, INLINE_ANNOTATION};
use crate::cachespec::{CacheExport, CacheImport, CacheMode};
use crate::progress::{Event, ProgressSink};
use crate::request::BuildRequest;
use crate::transfer::RegistryOptions;
use crate::BuildError;

/// The layer blobs of `cfg`, compressed with `c` (stored variants reused).
#[cfg_attr(not(feature = "registry"), allow(dead_code))]
fn layer_blobs(
    images: &Images,
    cfg: &CacheConfig,
    c: ExportCompression,
) -> Result<Vec<Descriptor>, BuildError> {
    cfg.layers
        .iter()
        .map(|l| Ok(rbuild_image::export::layer_variant(images, &l.diff_id, c)?))
        .collect()
}

/// Writes `cfg` as a cache layout in `dest`; `index.json` goes last.
pub(crate) fn export_local(
    images: &Images,
    dest: &std::path::Path,
    cfg: &CacheConfig,
    c: ExportCompression,
) -> Result<(), BuildError> {
    let mut w = LayoutWriter::create(dest)?;
    let mut layers = Vec::with_capacity(cfg.layers.len());
    for l in &cfg.layers {
        layers.push(w.add_layer(images, &l.diff_id, c)?);
    }
    let config = w.add_bytes(CONFIG_MEDIA_TYPE, &cfg.to_bytes())?;
    let manifest = CacheConfig::manifest(config, layers).to_canonical_json();
    let mut entry = w.add_bytes(MEDIA_TYPE_OCI_MANIFEST, &manifest)?;
    entry.annotations.insert(
        rbuild_image::manifest::ANNOTATION_REF_NAME.into(),
        "cache".into(),
    );
    w.finish(vec![entry], Default::default())?;
    Ok(())
}

/// Loads every cache manifest of the layout at `src` into the store; returns the record count.
pub(crate) fn import_local(images: &Images, src: &std::path::Path) -> Result<usize, BuildError> {
    let r = LayoutReader::open(src)?;
    let store = images.store();
    let mut count = 0;
    let mut found = false;
    for entry in r.index()?.manifests {
        if entry.media_type != MEDIA_TYPE_OCI_MANIFEST {
            continue;
        }
        let m = Manifest::from_json(&r.read_blob(&entry)?, format!("manifest {}", entry.digest))?;
        if m.config.media_type != CONFIG_MEDIA_TYPE {
            continue;
        }
        found = true;
        let cfg = CacheConfig::from_bytes(&r.read_blob(&m.config)?)?;
        cfg.check_blobs(&m.layers)?;
        count += cfg.import(store, &m.layers, None, &mut |missing| {
            for d in missing {
                r.import_blob(store, d)?;
            }
            Ok(())
        })?;
    }
    if !found {
        return Err(BuildError::Request(format!(
            "{} holds no rbuild cache manifest",
            r.path().display()
        )));
    }
    Ok(count)
}

#[cfg_attr(not(feature = "registry"), allow(dead_code))]
fn parse_ref(s: &str) -> Result<Reference, BuildError> {
    Reference::parse(s).map_err(|e| BuildError::Request(format!("cache reference {s:?}: {e}")))
}

#[cfg(feature = "registry")]
fn registry_err(reference: &str) -> impl Fn(rbuild_registry::RegistryError) -> BuildError + '_ {
    move |e| BuildError::Request(format!("{reference}: {e}"))
}

/// Without the `registry` feature a registry cache can be neither written nor read.
#[cfg(not(feature = "registry"))]
fn registry_disabled(reference: &str) -> BuildError {
    BuildError::Request(format!(
        "{reference}: registry caches are not compiled in (enable rbuild's `registry` feature)"
    ))
}

#[cfg(not(feature = "registry"))]
pub(crate) fn export_registry(
    _images: &Images,
    _opts: &RegistryOptions,
    reference: &str,
    _cfg: &CacheConfig,
    _c: ExportCompression,
    _progress: &dyn ProgressSink,
) -> Result<Digest, BuildError> {
    Err(registry_disabled(reference))
}

#[cfg(not(feature = "registry"))]
struct Remote {
    cfg: CacheConfig,
}

#[cfg(not(feature = "registry"))]
fn open_registry(
    _opts: &RegistryOptions,
    reference: &str,
    _platform: &rbuild_dockerfile::Platform,
) -> Result<Remote, BuildError> {
    Err(registry_disabled(reference))
}

/// Pushes `cfg` as a cache artifact to `reference`; returns the manifest digest.
#[cfg(feature = "registry")]
pub(crate) fn export_registry(
    images: &Images,
    opts: &RegistryOptions,
    reference: &str,
    cfg: &CacheConfig,
    c: ExportCompression,
    progress: &dyn ProgressSink,
) -> Result<Digest, BuildError> {
    let dest = parse_ref(reference)?;
    let store = images.store();
    let layers = layer_blobs(images, cfg, c)?;
    let config_bytes = cfg.to_bytes();
    let config_digest = store.put_bytes(&config_bytes)?;
    let config = Descriptor::new(CONFIG_MEDIA_TYPE, config_digest, config_bytes.len() as u64);
    let manifest = CacheConfig::manifest(config, layers).to_canonical_json();
    store.put_bytes(&manifest)?;
    let m = Manifest::from_json(&manifest, "cache manifest")?;
    let blobs = || std::iter::once(&m.config.digest).chain(m.layers.iter().map(|l| &l.digest));
    let push = PushOptions {
        mount_from: Vec::new(),
        blob_sources: crate::transfer::mount_sources(store, blobs(), &dest),
    };
    let client = opts.client()?;
    let digest = client
        .push_with(
            &crate::transfer::StoreContent(store),
            &manifest,
            MEDIA_TYPE_OCI_MANIFEST,
            &dest,
            &push,
            &|ev| crate::transfer::push_event(progress, ev),
        )
        .map_err(registry_err(reference))?;
    crate::transfer::record_sources(store, m.layers.iter().map(|l| &l.digest), &dest, progress);
    Ok(digest)
}

/// A registry cache opened for a build: its records are known, its layer blobs are fetched
/// only when a step's lookup hits a record (see [`Imported::hit`]), so a runner downloads the
/// layers of the steps it reuses, not those of every step the cache holds.
#[cfg(feature = "registry")]
struct Remote {
    name: String,
    reference: Reference,
    cfg: CacheConfig,
    /// The builder's registry options, whose client is shared.
    registry: RegistryOptions,
    resolved: rbuild_registry::Resolved,
    /// One fetch at a time per cache (the blocking client drives one runtime).
    fetching: std::sync::Mutex<()>,
    /// Set after a failed fetch (a corrupt or vanished blob): the cache is not used again.
    failed: std::sync::atomic::AtomicBool,
}

/// The registry caches of one build, consulted when a step's key is not in the store.
#[derive(Default)]
pub(crate) struct Imported {
    remotes: Vec<Remote>,
}

/// No registry caches (a build without `--cache-from type=registry`).
pub(crate) static NO_IMPORTS: Imported = Imported {
    remotes: Vec::new(),
};

impl Imported {
    /// The chain recorded for `key` by an opened registry cache, after fetching (verified) the
    /// layers the store lacks and recording it in the store; `None` when no cache has it. A
    /// cache whose blobs cannot be fetched is dropped with one warning: the step then runs.
    pub(crate) fn hit(
        &self,
        store: &rbuild_store::Store,
        key: &Digest,
        progress: &dyn ProgressSink,
    ) -> Option<crate::chain::Chain> {
        #[cfg(not(feature = "registry"))]
        {
            let _ = (store, key, progress, &self.remotes);
            None
        }
        #[cfg(feature = "registry")]
        self.hit_remote(store, key, progress)
    }

    #[cfg(feature = "registry")]
    fn hit_remote(
        &self,
        store: &rbuild_store::Store,
        key: &Digest,
        progress: &dyn ProgressSink,
    ) -> Option<crate::chain::Chain> {
        use std::sync::atomic::Ordering;
        for r in &self.remotes {
            if r.failed.load(Ordering::SeqCst) || !r.cfg.records.iter().any(|x| x.key == *key) {
                continue;
            }
            let _one = r.fetching.lock().unwrap_or_else(|p| p.into_inner());
            // Another step may have found the cache broken while this one waited.
            if r.failed.load(Ordering::SeqCst) {
                continue;
            }
            let result = r.cfg.import(
                store,
                &r.resolved.manifest.layers,
                Some(key),
                &mut |missing| {
                    r.registry
                        .client()?
                        .pull_blobs(
                            &r.resolved,
                            missing,
                            &crate::transfer::StoreContent(store),
                            &|ev| crate::transfer::pull_event(progress, ev),
                        )
                        .map_err(registry_err(&r.name))?;
                    crate::transfer::record_sources(
                        store,
                        missing.iter().map(|d| &d.digest),
                        &r.reference,
                        progress,
                    );
                    Ok(())
                },
            );
            match result {
                Ok(_) => {
                    if let Some(chain) = crate::cache::get(store, key) {
                        return Some(chain);
                    }
                }
                Err(e) => {
                    r.failed.store(true, Ordering::SeqCst);
                    progress.event(Event::Warning {
                        message: format!(
                            "cache import from {} failed (building without it): {e}",
                            r.name
                        ),
                    });
                }
            }
        }
        None
    }
}

/// Opens the cache at `reference`: a cache artifact, or an image whose manifest carries an
/// inline cache. Only the manifest and the config (the records) are read now.
#[cfg(feature = "registry")]
fn open_registry(
    opts: &RegistryOptions,
    reference: &str,
    platform: &rbuild_dockerfile::Platform,
) -> Result<Remote, BuildError> {
    let r = parse_ref(reference)?;
    let client = opts.client()?;
    // An image with an inline cache may be an index: its manifest for the build's platform
    // carries the records that apply.
    let resolved = client
        .resolve(&r, platform)
        .map_err(registry_err(reference))?;
    let m = &resolved.manifest;
    let cfg = if m.config.media_type == CONFIG_MEDIA_TYPE {
        CacheConfig::from_bytes(&resolved.config_bytes)?
    } else if let Some(inline) = m.annotations.get(INLINE_ANNOTATION) {
        CacheConfig::from_bytes(inline.as_bytes())?
    } else {
        return Err(BuildError::Request(format!(
            "{reference} is neither an rbuild cache nor an image pushed with --cache-to type=inline"
        )));
    };
    cfg.check_blobs(&m.layers)?;
    Ok(Remote {
        name: reference.to_string(),
        reference: r,
        cfg,
        registry: opts.clone(),
        resolved,
        fetching: std::sync::Mutex::new(()),
        failed: std::sync::atomic::AtomicBool::new(false),
    })
}

/// Loads every `--cache-from` source: local layouts into the store now (a disk copy, every blob
/// verified), registry caches opened for lookups during the build. One that cannot be read
/// costs only speed, so it is one warning, never a failed build (as with BuildKit's imports).
pub(crate) fn import_all(
    images: &Images,
    opts: &RegistryOptions,
    req: &BuildRequest,
    progress: &dyn ProgressSink,
) -> Imported {
    let platform = req
        .platform
        .as_deref()
        .and_then(|p| rbuild_dockerfile::Platform::parse(p).ok())
        .unwrap_or_else(rbuild_dockerfile::Platform::host);
    let mut imported = Imported::default();
    for src in &req.cache_from {
        let (name, result) = match src {
            CacheImport::Local { src } => (src.display().to_string(), import_local(images, src)),
            CacheImport::Registry { reference } => (
                reference.clone(),
                open_registry(opts, reference, &platform).map(|r| {
                    let n = r.cfg.records.len();
                    imported.remotes.push(r);
                    n
                }),
            ),
        };
        match result {
            Ok(records) => progress.event(Event::CacheImported {
                source: name,
                records,
            }),
            Err(e) => progress.event(Event::Warning {
                message: format!("cache import from {name} failed (building without it): {e}"),
            }),
        }
    }
    imported
}

/// Writes every `--cache-to` destination but `inline` (which rides in the push, see
/// [`inline_annotations`]).
pub(crate) fn export_all(
    images: &Images,
    opts: &RegistryOptions,
    req: &BuildRequest,
    keys: &[Digest],
    image: &LocalImage,
    progress: &dyn ProgressSink,
) -> Result<(), BuildError> {
    for dest in &req.cache_to {
        let (mode, compression, ignore_error) = match dest {
            CacheExport::Local {
                mode,
                compression,
                ignore_error,
                ..
            }
            | CacheExport::Registry {
                mode,
                compression,
                ignore_error,
                ..
            } => (*mode, *compression, *ignore_error),
            CacheExport::Inline => continue,
        };
        let cfg = CacheConfig::collect(images.store(), keys, mode, &image.layers, false);
        let records = cfg.records.len();
        let (name, result) = match dest {
            CacheExport::Local { dest, .. } => (
                dest.display().to_string(),
                export_local(images, dest, &cfg, compression).map(|()| None),
            ),
            CacheExport::Registry { reference, .. } => (
                reference.clone(),
                export_registry(images, opts, reference, &cfg, compression, progress).map(Some),
            ),
            CacheExport::Inline => continue,
        };
        match result {
            Ok(digest) => progress.event(Event::Exported {
                kind: format!("cache ({records} records)"),
                dest: match digest {
                    Some(d) => format!("{name}@{d}"),
                    None => name,
                },
            }),
            // As buildx: the image is built and exported; only the cache is missing.
            Err(e) if ignore_error => progress.event(Event::Warning {
                message: format!("cache export to {name} failed (ignore-error=true): {e}"),
            }),
            Err(e) => {
                return Err(BuildError::Request(format!(
                    "cache export to {name} failed: {e} (the image was built; add \
                     ignore-error=true to --cache-to to make this a warning)"
                )))
            }
        }
    }
    Ok(())
}

/// The manifest annotations that carry an inline cache (`--cache-to type=inline`) of the final
/// image's steps; empty without one.
pub(crate) fn inline_annotations(
    store: &rbuild_store::Store,
    req: &BuildRequest,
    keys: &[Digest],
    image: &LocalImage,
    progress: &dyn ProgressSink,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let inline = req
        .cache_to
        .iter()
        .any(|c| matches!(c, CacheExport::Inline));
    let pushes = req.push
        || req
            .outputs
            .iter()
            .any(|o| matches!(o, crate::request::Output::Registry { .. }));
    if inline && !pushes {
        progress.event(Event::Warning {
            message: "--cache-to type=inline is carried by a pushed image; nothing is pushed \
                      (add --push), so no cache is exported"
                .into(),
        });
    }
    if inline && pushes {
        let cfg = CacheConfig::collect(store, keys, CacheMode::Min, &image.layers, true);
        let text = String::from_utf8(cfg.to_bytes()).unwrap_or_default();
        out.insert(INLINE_ANNOTATION.to_string(), text);
    }
    out
}
