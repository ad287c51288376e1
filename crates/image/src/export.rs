//! Writing images out: OCI image layouts (directory or tar), docker-archives as `docker save`
//! writes them, and flattened root filesystem tars.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use rbuild_store::Variant;

use crate::archive::{DirSink, Sink, TarSink};
use crate::manifest::{
    Descriptor, Index, Manifest, Platform, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
    MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::{ImageError, Images, LocalImage, Reference};

/// How layers are compressed on export; local layers are always stored uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportCompression {
    /// Plain tar (fastest, largest).
    None,
    /// gzip, the format every registry and runtime reads.
    #[default]
    Gzip,
    /// zstd: smaller and faster to unpack, needs containerd 1.5+ / podman.
    Zstd,
}

impl ExportCompression {
    /// The name compressed variants are remembered under in the store.
    pub fn variant_name(self) -> &'static str {
        match self {
            ExportCompression::None => "none",
            ExportCompression::Gzip => "gzip",
            ExportCompression::Zstd => "zstd",
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            ExportCompression::None => MEDIA_TYPE_OCI_LAYER,
            ExportCompression::Gzip => MEDIA_TYPE_OCI_LAYER_GZIP,
            ExportCompression::Zstd => MEDIA_TYPE_OCI_LAYER_ZSTD,
        }
    }

    fn codec(self) -> rbuild_layer::compress::Compression {
        match self {
            ExportCompression::None => rbuild_layer::compress::Compression::None,
            ExportCompression::Gzip => rbuild_layer::compress::Compression::Gzip,
            ExportCompression::Zstd => rbuild_layer::compress::Compression::Zstd,
        }
    }
}

/// Returns the descriptor of `diff_id` compressed with `c`, compressing into the store (and
/// remembering the variant) only the first time.
pub fn layer_variant(
    images: &Images,
    diff_id: &Digest,
    c: ExportCompression,
) -> Result<Descriptor, ImageError> {
    let store = images.store();
    if c == ExportCompression::None {
        return Ok(Descriptor::new(
            MEDIA_TYPE_OCI_LAYER,
            *diff_id,
            crate::layers::layer_size(store, diff_id)?,
        ));
    }
    if let Some(v) = store.get_variant(diff_id, c.variant_name())? {
        if store.contains(&v.digest) {
            return Ok(Descriptor::new(&v.media_type, v.digest, v.size));
        }
    }
    let mut src = images.open_layer(diff_id)?;
    let ingest = store.ingest()?;
    let what = format!("layer {diff_id}");
    let ingest = match rbuild_layer::compress::compress(&mut src, ingest, c.codec(), None) {
        Ok(i) => i,
        Err(e) => {
            // A corrupt variant surfaces here first; name it rather than the io wrapper.
            src.finish()?;
            return Err(ImageError::io(&what, e));
        }
    };
    src.finish()?;
    let (digest, size) = ingest.commit(None)?;
    let variant = Variant {
        digest,
        size,
        media_type: c.media_type().to_string(),
    };
    store.set_variant(diff_id, c.variant_name(), &variant)?;
    Ok(Descriptor::new(c.media_type(), digest, size))
}

pub(crate) fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

pub(crate) fn copy_blob(
    images: &Images,
    sink: &mut dyn Sink,
    name: &str,
    d: &Digest,
) -> Result<(), ImageError> {
    if sink.has(name) {
        return Ok(());
    }
    let size = images.store().blob_size(d)?;
    let mut f = images.store().open_blob(d)?;
    sink.add_file(name, size, &mut f)
}

/// Copies the uncompressed tar of layer `diff_id` into `sink` as `name`, decoding a compressed
/// variant when the uncompressed blob is not stored (twice: once for the size a tar header needs),
/// or streaming a deferred layer from its tree (its size is recorded), checked at the end.
pub(crate) fn copy_layer(
    images: &Images,
    sink: &mut dyn Sink,
    name: &str,
    diff_id: &Digest,
) -> Result<(), ImageError> {
    if sink.has(name) {
        return Ok(());
    }
    if images.store().is_written(diff_id) {
        return copy_blob(images, sink, name, diff_id);
    }
    let size = crate::layers::layer_size(images.store(), diff_id)?;
    let mut r = images.open_layer(diff_id)?;
    sink.add_file(name, size, &mut r)?;
    r.finish()?;
    Ok(())
}

fn platform_of(img: &LocalImage) -> Option<Platform> {
    img.config.platform()
}

/// Writes the blobs of each image into `sink` and returns the index entries.
fn write_layout_blobs(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    sink: &mut dyn Sink,
    c: ExportCompression,
) -> Result<Vec<Descriptor>, ImageError> {
    let mut entries = Vec::new();
    for (img, refs) in items {
        let base = write_image_blobs(images, img, sink, c)?;
        entries.extend(named_entries(&base, refs));
    }
    Ok(entries)
}

/// The index entries for `base` under each of `refs` (one unnamed entry when there is none).
fn named_entries(base: &Descriptor, refs: &[Reference]) -> Vec<Descriptor> {
    if refs.is_empty() {
        return vec![base.clone()];
    }
    refs.iter()
        .map(|r| {
            let mut d = base.clone();
            d.annotations
                .insert(ANNOTATION_CONTAINERD_NAME.into(), r.to_string());
            if let Some(t) = r.tag() {
                d.annotations
                    .insert(ANNOTATION_REF_NAME.into(), t.to_string());
            }
            d
        })
        .collect()
}

/// Writes one image's layers, config and manifest into `sink`; returns the manifest's
/// descriptor with the image's platform.
fn write_image_blobs(
    images: &Images,
    img: &LocalImage,
    sink: &mut dyn Sink,
    c: ExportCompression,
) -> Result<Descriptor, ImageError> {
    {
        let mut layers = Vec::with_capacity(img.layers.len());
        for l in &img.layers {
            let desc = layer_variant(images, &l.diff_id, c)?;
            if desc.digest == l.diff_id {
                copy_layer(images, sink, &blob_name(&desc.digest), &desc.digest)?;
            } else {
                copy_blob(images, sink, &blob_name(&desc.digest), &desc.digest)?;
            }
            layers.push(desc);
        }
        copy_blob(images, sink, &blob_name(&img.id), &img.id)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            config: Descriptor::new(
                MEDIA_TYPE_OCI_CONFIG,
                img.id,
                images.store().blob_size(&img.id)?,
            ),
            layers,
            annotations: BTreeMap::new(),
        };
        let bytes = manifest.to_canonical_json();
        let digest = Digest::of(&bytes);
        sink.add_bytes(&blob_name(&digest), &bytes)?;
        let mut base = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, digest, bytes.len() as u64);
        base.platform = platform_of(img);
        Ok(base)
    }
}

pub(crate) const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn index_bytes(manifests: Vec<Descriptor>) -> Vec<u8> {
    Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests,
        annotations: BTreeMap::new(),
    }
    .to_canonical_json()
}

/// Writes an OCI image layout that skopeo, umoci, podman and `docker load` (25+) read.
///
/// `dest` is a directory (created, or merged into when it already holds a layout: entries whose
/// names are re-exported are replaced) or, with `as_tar`, a tar file of one. Each reference becomes
/// an index entry annotated with `org.opencontainers.image.ref.name` (the tag) and
/// `io.containerd.image.name` (the full name). Layers are compressed with `c`; compressed variants
/// are kept in the store so exporting again does not recompress.
pub fn oci_layout(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    dest: &Path,
    as_tar: bool,
    c: ExportCompression,
) -> Result<(), ImageError> {
    write_layout(images, dest, as_tar, &mut |sink| {
        write_layout_blobs(images, items, sink, c)
    })
}

/// Writes a multi-platform image into an OCI layout, as BuildKit's OCI exporter does: one entry
/// in `index.json` per reference (annotated as [`oci_layout`] does), pointing at an image index
/// whose entries are each platform's manifest, with its platform.
pub fn oci_layout_index(
    images: &Images,
    platforms: &[LocalImage],
    refs: &[Reference],
    dest: &Path,
    as_tar: bool,
    c: ExportCompression,
) -> Result<(), ImageError> {
    write_layout(images, dest, as_tar, &mut |sink| {
        let mut manifests = Vec::with_capacity(platforms.len());
        for img in platforms {
            manifests.push(write_image_blobs(images, img, sink, c)?);
        }
        let bytes = index_bytes(manifests);
        let digest = Digest::of(&bytes);
        sink.add_bytes(&blob_name(&digest), &bytes)?;
        let base = Descriptor::new(MEDIA_TYPE_OCI_INDEX, digest, bytes.len() as u64);
        Ok(named_entries(&base, refs))
    })
}

type Entries<'a> = dyn FnMut(&mut dyn Sink) -> Result<Vec<Descriptor>, ImageError> + 'a;

fn write_layout(
    images: &Images,
    dest: &Path,
    as_tar: bool,
    entries_of: &mut Entries<'_>,
) -> Result<(), ImageError> {
    let _lock = images.store().lock_shared()?;
    if as_tar {
        let tmp = tmp_sibling(dest);
        let file = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let result = (|| {
            let mut sink = TarSink::new(BufWriter::new(file), dest);
            sink.add_bytes("oci-layout", OCI_LAYOUT)?;
            let entries = entries_of(&mut sink)?;
            sink.add_bytes("index.json", &index_bytes(entries))?;
            let w = sink.finish()?;
            let f = w
                .into_inner()
                .map_err(|e| ImageError::io(dest, e.into_error()))?;
            f.sync_all().map_err(|e| ImageError::io(dest, e))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        return std::fs::rename(&tmp, dest).map_err(|e| ImageError::io(dest, e));
    }
    let mut sink = DirSink::new(dest)?;
    let index_path = dest.join("index.json");
    let mut existing = match std::fs::read(&index_path) {
        Ok(b) => Index::from_json(&b, format!("{}", index_path.display()))?.manifests,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ImageError::io(&index_path, e)),
    };
    sink.add_bytes("oci-layout", OCI_LAYOUT)?;
    let entries = entries_of(&mut sink)?;
    let new_names: Vec<&String> = entries
        .iter()
        .filter_map(|d| d.annotations.get(ANNOTATION_REF_NAME))
        .collect();
    existing.retain(|d| match d.annotations.get(ANNOTATION_REF_NAME) {
        Some(n) => !new_names.contains(&n),
        None => !entries.iter().any(|e| e.digest == d.digest),
    });
    existing.extend(entries);
    // index.json is rewritten, never appended to, so it is always a whole document.
    let tmp = dest.join("index.json.rbuild-tmp");
    std::fs::write(&tmp, index_bytes(existing)).map_err(|e| ImageError::io(&tmp, e))?;
    std::fs::rename(&tmp, &index_path).map_err(|e| ImageError::io(&index_path, e))
}

/// The tar formats an image can be written as, to a file or a stream; `docker save`'s
/// `--format` and the tar outputs of a build (`-o type=docker|oci|tar`) share this one switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A docker-archive (`docker save`, `docker load`).
    Docker,
    /// A tar of an OCI image layout (skopeo's `oci-archive:`, docker 25+ `load`).
    Oci,
    /// The image's flattened root filesystem (`-o type=tar`); one image only.
    Rootfs,
}

impl ArchiveFormat {
    /// Parses a format name as `save --format` and skopeo spell them: `docker` /
    /// `docker-archive`, `oci` / `oci-archive`, `tar` / `rootfs`.
    pub fn parse(name: &str) -> Option<ArchiveFormat> {
        match name {
            "docker" | "docker-archive" => Some(ArchiveFormat::Docker),
            "oci" | "oci-archive" => Some(ArchiveFormat::Oci),
            "tar" | "rootfs" => Some(ArchiveFormat::Rootfs),
            _ => None,
        }
    }
}

/// Streams an OCI image layout as one tar into `out` (see [`oci_layout`] for its content).
pub fn oci_archive<W: Write>(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    out: W,
    c: ExportCompression,
) -> Result<W, ImageError> {
    let _lock = images.store().lock_shared()?;
    let mut sink = TarSink::new(out, "oci-archive");
    sink.add_bytes("oci-layout", OCI_LAYOUT)?;
    let entries = write_layout_blobs(images, items, &mut sink, c)?;
    sink.add_bytes("index.json", &index_bytes(entries))?;
    sink.finish()
}

/// Writes `items` as one archive of `format` into a stream (a pipe, standard output, a
/// socket). `c` compresses the layers of OCI archives; docker-archives keep them plain, as
/// `docker save` does.
pub fn write_archive<W: Write>(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    format: ArchiveFormat,
    c: ExportCompression,
    out: W,
) -> Result<W, ImageError> {
    match format {
        ArchiveFormat::Docker => docker_archive(images, items, out),
        ArchiveFormat::Oci => oci_archive(images, items, out, c),
        ArchiveFormat::Rootfs => match items {
            [(image, _)] => rootfs_tar(images, image, out),
            _ => Err(ImageError::InvalidImage(format!(
                "a root filesystem tar holds one image, not {}",
                items.len()
            ))),
        },
    }
}

/// [`write_archive`] into the file `dest`, which appears only once complete: the archive is
/// written to a temporary file beside it, flushed to disk, then renamed into place.
pub fn write_archive_file(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    format: ArchiveFormat,
    c: ExportCompression,
    dest: &Path,
) -> Result<(), ImageError> {
    let tmp = tmp_sibling(dest);
    let file = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
    let result = (|| {
        let w = write_archive(images, items, format, c, BufWriter::new(file))?;
        let f = w
            .into_inner()
            .map_err(|e| ImageError::io(dest, e.into_error()))?;
        f.sync_all().map_err(|e| ImageError::io(dest, e))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dest).map_err(|e| ImageError::io(dest, e))
}

fn tmp_sibling(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".rbuild-tmp");
    dest.with_file_name(name)
}

/// Writes a docker-archive (`docker save` format) holding several images, for `docker load`.
///
/// Layout as docker 20.10 writes it: `<v1id>/layer.tar` (uncompressed) with the legacy `VERSION`
/// and `json` beside it, `<config hex>.json`, `manifest.json` (`Config`, `RepoTags`, `Layers`) and
/// `repositories`. Layer directory ids are the layer chain ids, so shared base layers are written once.
pub fn docker_archive<W: Write>(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    out: W,
) -> Result<W, ImageError> {
    let _lock = images.store().lock_shared()?;
    let mut sink = TarSink::new(out, "docker-archive");
    let mut manifest: Vec<serde_json::Value> = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (img, refs) in items {
        let mut layer_paths = Vec::new();
        let mut parent: Option<String> = None;
        let mut diff_ids = Vec::new();
        for l in &img.layers {
            diff_ids.push(l.diff_id);
            let v1 = rbuild_digest::chain_id(&diff_ids)
                .unwrap_or(l.diff_id)
                .hex();
            let path = format!("{v1}/layer.tar");
            if !sink.has(&path) {
                sink.add_bytes(&format!("{v1}/VERSION"), b"1.0")?;
                let mut json = serde_json::Map::new();
                json.insert("id".into(), v1.clone().into());
                if let Some(p) = &parent {
                    json.insert("parent".into(), p.clone().into());
                }
                json.insert("created".into(), "1970-01-01T00:00:00Z".into());
                let json = crate::config::canonical_json(&json).unwrap_or_default();
                sink.add_bytes(&format!("{v1}/json"), &json)?;
                copy_layer(images, &mut sink, &path, &l.diff_id)?;
            }
            layer_paths.push(path);
            parent = Some(v1);
        }
        let config_name = format!("{}.json", img.id.hex());
        copy_blob(images, &mut sink, &config_name, &img.id)?;
        let mut repo_tags = Vec::new();
        for r in refs {
            if let Some(t) = r.tag() {
                repo_tags.push(format!("{}:{t}", r.familiar_name()));
                if let Some(top) = &parent {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(t.to_string(), top.clone());
                }
            }
        }
        // `docker save a:1 a:2` lists one image with both tags, not the image twice.
        let existing = manifest
            .iter_mut()
            .find(|m| m.get("Config").and_then(|c| c.as_str()) == Some(config_name.as_str()));
        match existing
            .and_then(|m| m.get_mut("RepoTags"))
            .and_then(|t| t.as_array_mut())
        {
            Some(tags) => {
                for t in repo_tags {
                    if !tags.iter().any(|x| x.as_str() == Some(t.as_str())) {
                        tags.push(t.into());
                    }
                }
            }
            None => manifest.push(serde_json::json!({
                "Config": config_name,
                "RepoTags": repo_tags,
                "Layers": layer_paths,
            })),
        }
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Json {
        what: "manifest.json".into(),
        source,
    })?;
    sink.add_bytes("manifest.json", &manifest_bytes)?;
    if !repositories.is_empty() {
        let bytes = serde_json::to_vec(&repositories).map_err(|source| ImageError::Json {
            what: "repositories".into(),
            source,
        })?;
        sink.add_bytes("repositories", &bytes)?;
    }
    sink.finish()
}

/// Writes the image's merged root filesystem as one tar (`-o type=tar`).
///
/// The layers are stream-merged (whiteouts and opaque directories honoured, upper paths shadowing
/// lower ones) rather than unpacked, so ownership, modes and xattrs are kept exactly, even rootless.
pub fn rootfs_tar<W: Write>(images: &Images, image: &LocalImage, out: W) -> Result<W, ImageError> {
    let _lock = images.store().lock_shared()?;
    crate::flatten::flatten(images, image, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_format_names() {
        let cases = [
            ("docker", Some(ArchiveFormat::Docker)),
            ("docker-archive", Some(ArchiveFormat::Docker)),
            ("oci", Some(ArchiveFormat::Oci)),
            ("oci-archive", Some(ArchiveFormat::Oci)),
            ("tar", Some(ArchiveFormat::Rootfs)),
            ("zip", None),
        ];
        for (name, want) in cases {
            assert_eq!(ArchiveFormat::parse(name), want, "{name}");
        }
    }
}
