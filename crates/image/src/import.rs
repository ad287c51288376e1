//! `rbuild load`: bringing images in from docker-archives (docker 20.10 and 25+, podman, skopeo)
//! and OCI layouts (directory or tar, possibly compressed as a whole).
//!
//! Archives are read by name (see the private `archive` module), never unpacked. Layers are
//! stored uncompressed and each is verified against its config diff_id; compressed blobs that came
//! with a digest (OCI layouts) are verified too and kept as the layer's compressed variant, so
//! re-exporting reproduces them without recompressing.

use std::io::{self, Cursor, Read};
use std::path::Path;

use rbuild_digest::Digest;
use rbuild_store::{StoreError, Variant};
use serde::Deserialize;

use crate::archive::{DirSource, Source, TarSource};
use crate::config::ImageConfig;
use crate::manifest::{
    Descriptor, Index, Manifest, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD,
};
use crate::{ImageError, Images, LayerDesc, LocalImage, Reference};

/// Largest JSON document (config, manifest, index) read from an archive.
const MAX_JSON: u64 = 16 << 20;

/// One image brought in by [`load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The stored image.
    pub image: LocalImage,
    /// The names it was tagged with (may be empty).
    pub names: Vec<Reference>,
}

impl Loaded {
    /// The lines `docker load` prints for this image.
    pub fn messages(&self) -> Vec<String> {
        if self.names.is_empty() {
            vec![format!("Loaded image ID: {}", self.image.id)]
        } else {
            self.names
                .iter()
                .map(|n| format!("Loaded image: {}", n.familiar()))
                .collect()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Loads every image of the archive at `path` (a tar, a compressed tar, or an OCI layout
/// directory), tags the names it carries, and returns what was loaded.
pub fn load(images: &Images, path: &Path) -> Result<Vec<Loaded>, ImageError> {
    load_shown(images, path, path)
}

/// Loads every image of an archive read from a stream (`docker load` from standard input),
/// named `shown` in errors. A tar is read by offset, so the stream is first copied into the
/// store's temporary area (removed afterwards, whatever happens).
pub fn load_reader<R: Read>(
    images: &Images,
    mut reader: R,
    shown: &Path,
) -> Result<Vec<Loaded>, ImageError> {
    let tmp = images.store().temp_dir("load")?;
    let spooled = tmp.path().join("stream");
    let mut out = std::fs::File::create(&spooled).map_err(|e| ImageError::io(&spooled, e))?;
    io::copy(&mut reader, &mut out).map_err(|e| ImageError::io(shown, e))?;
    drop(out);
    load_shown(images, &spooled, shown)
}

fn load_shown(images: &Images, path: &Path, shown: &Path) -> Result<Vec<Loaded>, ImageError> {
    // Layers stored early must survive until the image record that references them is written.
    let _lock = images.store().lock_shared()?;
    let meta = std::fs::metadata(path).map_err(|e| ImageError::io(path, e))?;
    if meta.is_dir() {
        return load_from(images, &DirSource::open(path)?);
    }
    let mut head = [0u8; 8];
    let n = {
        let mut f = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
        read_up_to(&mut f, &mut head).map_err(|e| ImageError::io(path, e))?
    };
    let codec = rbuild_layer::compress::detect(head.get(..n).unwrap_or(&[]));
    if matches!(codec, rbuild_layer::compress::Compression::None) {
        let src = TarSource::open(path)?;
        return load_from(images, &Renamed { inner: src, shown });
    }
    // A compressed archive cannot be read by offset: decompress it once into the store's temp area.
    let tmp = images.store().temp_dir("load")?;
    let plain = tmp.path().join("archive.tar");
    let f = std::fs::File::open(path).map_err(|e| ImageError::io(path, e))?;
    let mut r = rbuild_layer::compress::decompress(f).map_err(|e| ImageError::io(path, e))?;
    let mut out = std::fs::File::create(&plain).map_err(|e| ImageError::io(&plain, e))?;
    io::copy(&mut r, &mut out).map_err(|e| ImageError::io(path, e))?;
    drop(out);
    let src = TarSource::open(&plain)?;
    let src = Renamed { inner: src, shown };
    load_from(images, &src)
}

/// Presents a decompressed temp copy under the user's file name in errors.
struct Renamed<'a, S> {
    inner: S,
    shown: &'a Path,
}

impl<S: Source> Source for Renamed<'_, S> {
    fn archive(&self) -> &Path {
        self.shown
    }
    fn exists(&self, name: &str) -> bool {
        self.inner.exists(name)
    }
    fn open(&self, name: &str) -> Result<(crate::archive::FileReader, u64), ImageError> {
        self.inner.open(name).map_err(|e| match e {
            ImageError::MissingFile { file, .. } => ImageError::MissingFile {
                archive: self.shown.to_path_buf(),
                file,
            },
            other => other,
        })
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(buf.get_mut(n..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn bad(src: &dyn Source, reason: impl Into<String>) -> ImageError {
    ImageError::BadArchive {
        archive: src.archive().to_path_buf(),
        reason: reason.into(),
    }
}

fn load_from(images: &Images, src: &dyn Source) -> Result<Vec<Loaded>, ImageError> {
    if src.exists("manifest.json") {
        load_docker(images, src)
    } else if src.exists("index.json") {
        load_oci(images, src)
    } else {
        Err(bad(
            src,
            "neither manifest.json (docker-archive) nor index.json (OCI layout) found",
        ))
    }
}

fn json_err(src: &dyn Source, file: &str) -> impl FnOnce(serde_json::Error) -> ImageError {
    let what = format!("{file} in {}", src.archive().display());
    move |source| ImageError::Json { what, source }
}

fn load_docker(images: &Images, src: &dyn Source) -> Result<Vec<Loaded>, ImageError> {
    let bytes = src.read_all("manifest.json", MAX_JSON)?;
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&bytes).map_err(json_err(src, "manifest.json"))?;
    let mut out = Vec::new();
    for entry in entries {
        let expected_config = digest_from_name(&entry.config);
        // docker 25+ names layers `blobs/sha256/<hex>`: that digest is promised and verified.
        let layers: Vec<(String, Option<Descriptor>)> = entry
            .layers
            .into_iter()
            .map(|l| {
                let promised = l
                    .strip_prefix("blobs/sha256/")
                    .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                    .map(|d| Descriptor::new("", d, 0));
                (l, promised)
            })
            .collect();
        let image = load_image(
            images,
            src,
            &entry.config,
            expected_config.as_ref(),
            &layers,
        )?;
        let mut names = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            let r = Reference::parse(&t)?;
            images.tag(&image, &r)?;
            names.push(r);
        }
        out.push(Loaded { image, names });
    }
    Ok(out)
}

/// `<hex>.json`, `blobs/sha256/<hex>` or `<hex>`: the digest a docker-archive file name promises.
fn digest_from_name(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = base.strip_suffix(".json").unwrap_or(base);
    format!("sha256:{hex}").parse().ok()
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Names an index entry carries: the full containerd name, else a `ref.name` that is a full
/// reference. A bare tag (`1.0`) names no repository, so docker (and rbuild) leave it unnamed.
fn names_of(d: &Descriptor) -> Result<Vec<Reference>, ImageError> {
    if let Some(n) = d.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(vec![Reference::parse(n)?]);
    }
    match d.annotations.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains(':') || n.contains('/') => Ok(vec![Reference::parse(n)?]),
        _ => Ok(Vec::new()),
    }
}

fn read_verified(src: &dyn Source, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
    let name = blob_name(&d.digest);
    let bytes = src.read_all(&name, MAX_JSON)?;
    let actual = Digest::of(&bytes);
    if actual != d.digest {
        return Err(ImageError::BlobDigestMismatch {
            archive: src.archive().to_path_buf(),
            file: name,
            expected: d.digest,
            actual,
        });
    }
    Ok(bytes)
}

/// Picks the manifests of an index: all of them at the top level, the host platform's (or the
/// first real one) inside a nested multi-platform index.
fn collect_manifests(
    src: &dyn Source,
    index: &Index,
    nested: bool,
    inherited: &[Reference],
    depth: usize,
    out: &mut Vec<(Descriptor, Vec<Reference>)>,
) -> Result<(), ImageError> {
    if depth > 8 {
        return Err(bad(src, "index nesting deeper than 8"));
    }
    let mut candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect();
    if nested {
        let host_platform = rbuild_platform::Platform::host();
        let host = candidates
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| host_platform.matches(p))
            })
            .copied();
        candidates = host
            .or_else(|| candidates.first().copied())
            .into_iter()
            .collect();
    }
    for d in candidates {
        let mut names = names_of(d)?;
        if names.is_empty() {
            names = inherited.to_vec();
        }
        if is_index(&d.media_type) {
            let bytes = read_verified(src, d)?;
            let child = Index::from_json(
                &bytes,
                format!("index {} in {}", d.digest, src.archive().display()),
            )?;
            collect_manifests(src, &child, true, &names, depth + 1, out)?;
        } else {
            out.push((d.clone(), names));
        }
    }
    Ok(())
}

fn load_oci(images: &Images, src: &dyn Source) -> Result<Vec<Loaded>, ImageError> {
    let bytes = src.read_all("index.json", MAX_JSON)?;
    let index: Index = serde_json::from_slice(&bytes).map_err(json_err(src, "index.json"))?;
    let mut manifests = Vec::new();
    collect_manifests(src, &index, false, &[], 0, &mut manifests)?;
    let mut out: Vec<Loaded> = Vec::new();
    for (desc, names) in manifests {
        let bytes = read_verified(src, &desc)?;
        let manifest = Manifest::from_json(
            &bytes,
            format!("manifest {} in {}", desc.digest, src.archive().display()),
        )?;
        let layers: Vec<(String, Option<Descriptor>)> = manifest
            .layers
            .iter()
            .map(|l| (blob_name(&l.digest), Some(l.clone())))
            .collect();
        let config_name = blob_name(&manifest.config.digest);
        let image = load_image(
            images,
            src,
            &config_name,
            Some(&manifest.config.digest),
            &layers,
        )?;
        for r in &names {
            images.tag(&image, r)?;
        }
        // The same image under several names is one loaded image with several names.
        match out.iter_mut().find(|l| l.image.id == image.id) {
            Some(existing) => existing.names.extend(names),
            None => out.push(Loaded { image, names }),
        }
    }
    Ok(out)
}

fn load_image(
    images: &Images,
    src: &dyn Source,
    config_name: &str,
    expected_config: Option<&Digest>,
    layers: &[(String, Option<Descriptor>)],
) -> Result<LocalImage, ImageError> {
    let config_bytes = src.read_all(config_name, MAX_JSON)?;
    let id = Digest::of(&config_bytes);
    if let Some(expected) = expected_config {
        if *expected != id {
            return Err(ImageError::BlobDigestMismatch {
                archive: src.archive().to_path_buf(),
                file: config_name.to_string(),
                expected: *expected,
                actual: id,
            });
        }
    }
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(json_err(src, config_name))?;
    if config.rootfs.diff_ids.len() != layers.len() {
        return Err(bad(
            src,
            format!(
                "config {config_name} lists {} diff_ids but the image has {} layers",
                config.rootfs.diff_ids.len(),
                layers.len()
            ),
        ));
    }
    let mut descs = Vec::with_capacity(layers.len());
    for ((file, desc), diff_id) in layers.iter().zip(&config.rootfs.diff_ids) {
        let size = import_layer(images, src, file, desc.as_ref(), diff_id)?;
        descs.push(LayerDesc {
            diff_id: *diff_id,
            size,
        });
    }
    images.commit_raw(&config_bytes, config, &descs)
}

/// Stores one layer uncompressed (verified against `diff_id`) and returns its uncompressed size.
fn import_layer(
    images: &Images,
    src: &dyn Source,
    file: &str,
    desc: Option<&Descriptor>,
    diff_id: &Digest,
) -> Result<u64, ImageError> {
    let store = images.store();
    if store.contains(diff_id) {
        return Ok(store.blob_size(diff_id)?);
    }
    let (raw, _) = src.open(file)?;
    let mut raw: crate::archive::FileReader = raw;
    let mut head = [0u8; 8];
    let n = read_up_to(&mut raw, &mut head).map_err(|e| ImageError::io(src.archive(), e))?;
    let head = head.get(..n).unwrap_or(&[]).to_vec();
    let codec = rbuild_layer::compress::detect(&head);
    let rejoined: crate::archive::FileReader = Box::new(Cursor::new(head).chain(raw));
    let compressed = !matches!(codec, rbuild_layer::compress::Compression::None);

    // A compressed blob with a known digest is stored (verified) first and kept as the variant.
    let mut variant = None;
    let plain_source: crate::archive::FileReader = match (desc, compressed) {
        (Some(d), true) => {
            let mut ingest = store.ingest()?;
            let mut r = rejoined;
            io::copy(&mut r, &mut ingest).map_err(|e| ImageError::io(src.archive(), e))?;
            let (digest, size) = ingest
                .commit(Some(&d.digest))
                .map_err(|e| mismatch(e, src, file, true))?;
            let name = match codec {
                rbuild_layer::compress::Compression::Gzip => {
                    Some(("gzip", MEDIA_TYPE_OCI_LAYER_GZIP))
                }
                rbuild_layer::compress::Compression::Zstd => {
                    Some(("zstd", MEDIA_TYPE_OCI_LAYER_ZSTD))
                }
                _ => None,
            };
            variant = name.map(|(n, mt)| {
                (
                    n,
                    Variant {
                        digest,
                        size,
                        media_type: mt.to_string(),
                    },
                )
            });
            Box::new(store.open_blob(&digest)?)
        }
        _ => rejoined,
    };
    let mut plain = rbuild_layer::compress::decompress(plain_source)
        .map_err(|e| bad(src, format!("layer {file}: {e}")))?;
    let mut ingest = store.ingest()?;
    io::copy(&mut plain, &mut ingest).map_err(|e| bad(src, format!("layer {file}: {e}")))?;
    let (digest, size) = ingest
        .commit(Some(diff_id))
        .map_err(|e| mismatch(e, src, file, false))?;
    if let (Some(d), false) = (desc, compressed) {
        if d.digest != digest {
            return Err(ImageError::BlobDigestMismatch {
                archive: src.archive().to_path_buf(),
                file: file.to_string(),
                expected: d.digest,
                actual: digest,
            });
        }
    }
    if let Some((name, v)) = variant {
        store.set_variant(&digest, name, &v)?;
    }
    Ok(size)
}

fn mismatch(e: StoreError, src: &dyn Source, file: &str, blob: bool) -> ImageError {
    match e {
        StoreError::DigestMismatch {
            expected, actual, ..
        } if blob => ImageError::BlobDigestMismatch {
            archive: src.archive().to_path_buf(),
            file: file.to_string(),
            expected,
            actual,
        },
        StoreError::DigestMismatch {
            expected, actual, ..
        } => ImageError::DiffIdMismatch {
            archive: src.archive().to_path_buf(),
            file: file.to_string(),
            expected,
            actual,
        },
        other => ImageError::Store(other),
    }
}
