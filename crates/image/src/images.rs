//! [`Images`]: the local image database on top of the content store.
//!
//! An image is a manifest blob (pointing at a config blob and uncompressed layer blobs). Every
//! committed image gets a private record ref `@image/<config hex>` so untagged (`<none>`) images are
//! still listed and kept; tags are refs named by the normalised reference string
//! (`docker.io/library/x:1.0`). A tag of a multi-platform build points at an OCI index of such
//! manifests (each platform's image keeps its own record); looking it up picks the manifest for
//! the platform asked for ([`Images::resolve_for`]), or the host's. Neither kind of name can be mistaken for the other, because a
//! normalised reference never starts with `@`.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_digest::Digest;
use rbuild_store::{RefTarget, Store};

use crate::config::ImageConfig;
use crate::manifest::{
    Descriptor, Index, Manifest, Platform, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_MANIFEST,
};
use crate::reference::Reference;
use crate::ImageError;

const RECORD_PREFIX: &str = "@image/";

/// One layer of an image as committed: its uncompressed blob, already in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDesc {
    /// Digest of the uncompressed tar, which is both the blob name in the store and the diff_id.
    pub diff_id: Digest,
    /// Size of the uncompressed tar in bytes, or, for a pulled layer whose uncompressed blob was
    /// never written (pulls keep only the registry's compressed blob), the compressed size: the
    /// exact size costs a full decompression, and listings only need an estimate.
    pub size: u64,
}

/// A local image with everything callers need to run, export or show it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalImage {
    /// The image id: the config digest, as docker defines it.
    pub id: Digest,
    /// Digest of the local (uncompressed-layer) OCI manifest.
    pub manifest_digest: Digest,
    /// The parsed config.
    pub config: ImageConfig,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Layers bottom first, paired from manifest sizes and config diff_ids.
    pub layers: Vec<LayerDesc>,
}

impl LocalImage {
    /// Total uncompressed size, the SIZE column of `docker images`.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// One row of `docker images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// Familiar repository name, or `<none>` for an untagged image.
    pub repository: String,
    /// Tag, or `<none>`.
    pub tag: String,
    /// The image id (show `id.short()`).
    pub id: Digest,
    /// Creation time as docker shows it (`3 days ago`), `N/A` when the image records none.
    pub created: String,
    /// Config `created` time (RFC 3339), for sorting and `--format`.
    pub created_at: Option<String>,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// The full reference behind the row, `None` for untagged images.
    pub reference: Option<Reference>,
}

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Short image id on the top row, `<missing>` on the others (as docker prints).
    pub id: String,
    /// The image id on the top row, for `--no-trunc`.
    pub image_id: Option<Digest>,
    /// When the step ran, as docker shows it (`2 hours ago`).
    pub created: String,
    /// RFC 3339 time of the step.
    pub created_at: Option<String>,
    /// The instruction.
    pub created_by: String,
    /// Size of the layer this step produced (0 for metadata-only steps).
    pub size: u64,
    /// The step's comment.
    pub comment: String,
    /// True for metadata-only steps.
    pub empty_layer: bool,
}

/// `docker image inspect` output for one image, serialised with docker's field names.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// `sha256:<config digest>`.
    pub id: String,
    /// Familiar `name:tag` of every tag.
    pub repo_tags: Vec<String>,
    /// Registry digests (empty until rbuild pushes).
    pub repo_digests: Vec<String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Author.
    pub author: String,
    /// Runtime config.
    pub config: crate::config::ContainerConfig,
    /// GOARCH.
    pub architecture: String,
    /// Architecture variant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// GOOS.
    pub os: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Layer diff_ids.
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    /// The local manifest, as docker 25+ (containerd store) shows it.
    pub descriptor: Descriptor,
}

/// The `RootFS` object of [`ImageInspect`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    /// Always `layers`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// diff_ids, bottom first.
    pub layers: Vec<String>,
}

/// What `prune` did.
#[derive(Debug)]
pub struct PruneStats {
    /// Ids of dangling (untagged) images that were removed.
    pub images_deleted: Vec<Digest>,
    /// Bytes of blobs deleted ("Total reclaimed space").
    pub bytes_freed: u64,
    /// What the store's garbage collection reclaimed.
    pub gc: rbuild_store::GcStats,
}

/// Handle for image operations over one content store; cheap to pass around, holds no global state.
#[derive(Clone, Debug)]
pub struct Images {
    store: Store,
}

fn record_name(id: &Digest) -> String {
    format!("{RECORD_PREFIX}{}", id.hex())
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Images {
    /// Wraps a store; all image state lives in it.
    pub fn new(store: Store) -> Self {
        Images { store }
    }

    /// The underlying store, for callers that ingest layers before committing.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the uncompressed tar of a layer, whether it is stored uncompressed or only as a
    /// compressed variant (verified against the diff id while streaming); the one way exporters
    /// and the snapshotter read layers.
    pub fn open_layer(&self, diff_id: &Digest) -> Result<crate::layers::LayerReader, ImageError> {
        crate::layers::open_layer(&self.store, diff_id)
    }

    /// Records an image built from `config` and layer blobs already in the store, and returns it.
    ///
    /// `config.rootfs.diff_ids` is set from `layers` (the layer list is the truth), and the config is
    /// written as canonical JSON, so the same build yields the same image id.
    pub fn commit(
        &self,
        config: &ImageConfig,
        layers: &[LayerDesc],
    ) -> Result<LocalImage, ImageError> {
        let mut config = config.clone();
        config.rootfs.kind = "layers".into();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id).collect();
        let bytes = config.to_canonical_json();
        self.commit_raw(&bytes, config, layers)
    }

    /// Records an image whose config bytes must stay exactly as a registry served them (the image
    /// id is their digest, so a pulled image keeps the id it has in the registry and in docker),
    /// over layers already in the store. Like [`Images::commit`], it gets its own `@image/` record,
    /// so when its tag later moves to another image it is still listed (as `<none>`) and kept.
    pub fn commit_exact_config(
        &self,
        config_bytes: &[u8],
        layers: &[LayerDesc],
    ) -> Result<LocalImage, ImageError> {
        let config = ImageConfig::from_json(config_bytes)?;
        self.commit_raw(config_bytes, config, layers)
    }

    /// Commits a config whose exact bytes must be kept (imports keep docker's image id).
    pub(crate) fn commit_raw(
        &self,
        config_bytes: &[u8],
        config: ImageConfig,
        layers: &[LayerDesc],
    ) -> Result<LocalImage, ImageError> {
        if config.rootfs.diff_ids.len() != layers.len()
            || config
                .rootfs
                .diff_ids
                .iter()
                .zip(layers)
                .any(|(d, l)| *d != l.diff_id)
        {
            return Err(ImageError::InvalidImage(format!(
                "config lists {} diff_ids but {} layers were given, or they differ",
                config.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        // gc must not run between writing the blobs and the record that keeps them alive.
        let _lock = self.store.lock_shared()?;
        let mut descs = Vec::with_capacity(layers.len());
        let mut checked = Vec::with_capacity(layers.len());
        for l in layers {
            // A lazily pulled layer has only its compressed variant; it keeps the size it was
            // given (the compressed size, see `LayerDesc::size`) until it is stored uncompressed.
            let size = if self.store.contains(&l.diff_id) {
                self.store.blob_size(&l.diff_id)?
            } else if crate::layers::layer_available(&self.store, &l.diff_id)? {
                l.size
            } else {
                return Err(ImageError::MissingBlob(l.diff_id));
            };
            descs.push(Descriptor::new(MEDIA_TYPE_OCI_LAYER, l.diff_id, size));
            checked.push(LayerDesc {
                diff_id: l.diff_id,
                size,
            });
        }
        let id = self.store.put_bytes(config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            config: Descriptor::new(MEDIA_TYPE_OCI_CONFIG, id, config_bytes.len() as u64),
            layers: descs,
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = manifest.to_canonical_json();
        let manifest_digest = self.store.put_bytes(&manifest_bytes)?;
        self.store.set_ref(
            &record_name(&id),
            &RefTarget {
                digest: manifest_digest,
                media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
                created: config.created.clone(),
            },
        )?;
        Ok(LocalImage {
            id,
            manifest_digest,
            config,
            manifest,
            layers: checked,
        })
    }

    /// Points `reference` at `image`, moving the tag if it pointed elsewhere (as `docker tag`).
    pub fn tag(&self, image: &LocalImage, reference: &Reference) -> Result<(), ImageError> {
        self.store.set_ref(
            &reference.to_string(),
            &RefTarget {
                digest: image.manifest_digest,
                media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
                created: image.config.created.clone(),
            },
        )?;
        Ok(())
    }

    /// Writes an OCI index of `images` (one entry per image, with the platform its config names)
    /// and returns its digest and bytes; the images must have been committed.
    pub fn commit_index(&self, images: &[LocalImage]) -> Result<(Digest, Vec<u8>), ImageError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
            manifests: images
                .iter()
                .map(|img| {
                    let bytes = img.manifest.to_canonical_json();
                    Descriptor {
                        platform: img.config.platform(),
                        ..Descriptor::new(
                            MEDIA_TYPE_OCI_MANIFEST,
                            img.manifest_digest,
                            bytes.len() as u64,
                        )
                    }
                })
                .collect(),
            annotations: BTreeMap::new(),
        };
        let bytes = index.to_canonical_json();
        let digest = self.store.put_bytes(&bytes)?;
        Ok((digest, bytes))
    }

    /// Points `reference` at the index `index_digest` (see [`Images::commit_index`]), as a
    /// multi-platform build tags its result.
    pub fn tag_index(
        &self,
        index_digest: &Digest,
        reference: &Reference,
        created: Option<String>,
    ) -> Result<(), ImageError> {
        self.store.set_ref(
            &reference.to_string(),
            &RefTarget {
                digest: *index_digest,
                media_type: MEDIA_TYPE_OCI_INDEX.into(),
                created,
            },
        )?;
        Ok(())
    }

    /// The index a tag points at, when it points at one (a multi-platform image).
    pub fn index_of(&self, reference: &Reference) -> Result<Option<(Digest, Index)>, ImageError> {
        match self.store.get_ref(&reference.to_string())? {
            Some(t) if t.media_type == MEDIA_TYPE_OCI_INDEX => {
                let bytes = self.store.read_blob(&t.digest)?;
                let index = Index::from_json(&bytes, format!("index {}", t.digest))?;
                Ok(Some((t.digest, index)))
            }
            _ => Ok(None),
        }
    }

    /// The manifest of `index` for `platform` that the store holds, else (so the caller can say
    /// which platform it found) the first one it holds.
    fn pick_manifest(&self, index: &Index, platform: &Platform) -> Option<Digest> {
        let held = || {
            index
                .manifests
                .iter()
                .filter(|d| self.store.contains(&d.digest))
        };
        held()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .or_else(|| held().next())
            .map(|d| d.digest)
    }

    /// As [`Images::resolve`], but a tag pointing at a multi-platform index gives the image for
    /// `platform` (or, when the index has none stored, another one: callers check the config's
    /// platform and never use it silently).
    pub fn resolve_for(
        &self,
        name_or_id: &str,
        platform: &Platform,
    ) -> Result<LocalImage, ImageError> {
        if let Ok(r) = Reference::parse(name_or_id.trim()) {
            if let Some((digest, index)) = self.index_of(&r)? {
                let m = self.pick_manifest(&index, platform).ok_or_else(|| {
                    ImageError::InvalidImage(format!(
                        "{name_or_id}: index {digest} lists no manifest this store holds"
                    ))
                })?;
                return self.load_manifest(&m);
            }
        }
        self.resolve(name_or_id)
    }

    /// Removes a tag without touching the image; returns whether it existed.
    pub fn untag(&self, reference: &Reference) -> Result<bool, ImageError> {
        Ok(self.store.delete_ref(&reference.to_string())?)
    }

    /// Reads an image from its manifest digest.
    pub fn load_manifest(&self, manifest_digest: &Digest) -> Result<LocalImage, ImageError> {
        let bytes = self.store.read_blob(manifest_digest)?;
        let manifest = Manifest::from_json(&bytes, format!("manifest {manifest_digest}"))?;
        let id = manifest.config.digest;
        let config_bytes = self.store.read_blob(&id)?;
        let config = ImageConfig::from_json(&config_bytes).map_err(|e| match e {
            ImageError::Json { source, .. } => ImageError::Json {
                what: format!("image config {id}"),
                source,
            },
            other => other,
        })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::InvalidImage(format!(
                "manifest {manifest_digest} has {} layers but config {id} lists {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let layers = config
            .rootfs
            .diff_ids
            .iter()
            .zip(&manifest.layers)
            .map(|(d, l)| LayerDesc {
                diff_id: *d,
                size: l.size,
            })
            .collect();
        Ok(LocalImage {
            id,
            manifest_digest: *manifest_digest,
            config,
            manifest,
            layers,
        })
    }

    /// All tag refs: (reference, manifest digest). Refs that are not normalised references
    /// (records, other crates' refs) are skipped.
    fn tag_refs(&self) -> Result<Vec<(Reference, Digest)>, ImageError> {
        let mut out = Vec::new();
        for (name, target) in self.store.list_refs()? {
            if name.starts_with(RECORD_PREFIX) {
                continue;
            }
            // A multi-platform tag is listed with the image for this host, as docker does.
            let manifest = match target.media_type.as_str() {
                MEDIA_TYPE_OCI_MANIFEST => target.digest,
                MEDIA_TYPE_OCI_INDEX => {
                    let Ok(bytes) = self.store.read_blob(&target.digest) else {
                        continue;
                    };
                    let Ok(index) = Index::from_json(&bytes, "index") else {
                        continue;
                    };
                    match self.pick_manifest(&index, &Platform::host()) {
                        Some(m) => m,
                        None => continue,
                    }
                }
                _ => continue,
            };
            if let Ok(r) = Reference::parse(&name) {
                if r.to_string() == name {
                    out.push((r, manifest));
                }
            }
        }
        Ok(out)
    }

    /// Every image: id -> (manifest digest, tags). Records and tags both contribute.
    fn all_images(&self) -> Result<BTreeMap<Digest, (Digest, Vec<Reference>)>, ImageError> {
        let mut images: BTreeMap<Digest, (Digest, Vec<Reference>)> = BTreeMap::new();
        let mut manifest_to_id: BTreeMap<Digest, Digest> = BTreeMap::new();
        for (name, target) in self.store.list_refs()? {
            let Some(hex) = name.strip_prefix(RECORD_PREFIX) else {
                continue;
            };
            let Ok(id) = format!("sha256:{hex}").parse::<Digest>() else {
                continue;
            };
            manifest_to_id.insert(target.digest, id);
            images.entry(id).or_insert((target.digest, Vec::new()));
        }
        for (r, m) in self.tag_refs()? {
            let id = match manifest_to_id.get(&m) {
                Some(id) => *id,
                None => {
                    let Ok(bytes) = self.store.read_blob(&m) else {
                        continue;
                    };
                    let Ok(manifest) = Manifest::from_json(&bytes, "manifest") else {
                        continue;
                    };
                    manifest_to_id.insert(m, manifest.config.digest);
                    manifest.config.digest
                }
            };
            images.entry(id).or_insert((m, Vec::new())).1.push(r);
        }
        Ok(images)
    }

    /// Tags that point at the image with this id.
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>, ImageError> {
        Ok(self
            .all_images()?
            .remove(id)
            .map(|(_, t)| t)
            .unwrap_or_default())
    }

    /// Finds an image by `name`, `name:tag`, `name@digest`, `sha256:<id>`, or an id prefix of at least
    /// 4 hex digits, in docker's order (full id, then reference, then id prefix).
    pub fn resolve(&self, name_or_id: &str) -> Result<LocalImage, ImageError> {
        let s = name_or_id.trim();
        let not_found = || ImageError::NotFound(name_or_id.to_string());
        let id_part = s.strip_prefix("sha256:");
        if let Some(hex) = id_part {
            if !is_hex(hex) {
                return Err(not_found());
            }
        } else if let Ok(r) = Reference::parse(s) {
            if let Some(t) = self.store.get_ref(&r.to_string())? {
                if t.media_type == MEDIA_TYPE_OCI_INDEX {
                    return self.resolve_for(s, &Platform::host());
                }
                return self.load_manifest(&t.digest);
            }
            if let Some(d) = r.digest() {
                for (_, (m, _)) in self.all_images()? {
                    if &m == d {
                        return self.load_manifest(&m);
                    }
                }
            }
        }
        let hex = id_part.unwrap_or(s);
        if hex.len() < 4 || hex.len() > 64 || !is_hex(hex) {
            return Err(not_found());
        }
        let matches: Vec<(Digest, Digest)> = self
            .all_images()?
            .into_iter()
            .filter(|(id, _)| id.hex().starts_with(hex))
            .map(|(id, (m, _))| (id, m))
            .collect();
        match matches.as_slice() {
            [] => Err(not_found()),
            [(_, m)] => self.load_manifest(m),
            many => Err(ImageError::Ambiguous {
                input: name_or_id.to_string(),
                matches: many.iter().map(|(id, _)| id.to_string()).collect(),
            }),
        }
    }

    /// Rows of `docker images`, newest first; an untagged image shows as `<none>`.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let mut rows = Vec::new();
        let now = std::time::SystemTime::now();
        for (id, (m, tags)) in self.all_images()? {
            let Ok(img) = self.load_manifest(&m) else {
                continue;
            };
            let created_at = img.config.created.clone();
            let created = crate::human::since(created_at.as_deref(), now);
            let size = img.size();
            if tags.is_empty() {
                rows.push(ImageSummary {
                    repository: "<none>".into(),
                    tag: "<none>".into(),
                    id,
                    created: created.clone(),
                    created_at: created_at.clone(),
                    size,
                    reference: None,
                });
            }
            for r in tags {
                rows.push(ImageSummary {
                    repository: r.familiar_name(),
                    tag: r.tag().unwrap_or("<none>").to_string(),
                    id,
                    created: created.clone(),
                    created_at: created_at.clone(),
                    size,
                    reference: Some(r),
                });
            }
        }
        rows.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.repository.cmp(&b.repository))
                .then_with(|| a.tag.cmp(&b.tag))
        });
        Ok(rows)
    }

    /// `docker rmi`: by name, untags it and deletes the image if no tag is left; by id, untags all and
    /// deletes, refusing (unless `force`) when tags from several repositories still use it.
    /// Returns docker's lines (`Untagged: x:1`, `Deleted: sha256:...`). Blobs are reclaimed by
    /// [`Images::prune`].
    pub fn remove(&self, name_or_id: &str, force: bool) -> Result<Vec<String>, ImageError> {
        let image = self.resolve(name_or_id)?;
        let tags = self.tags_of(&image.id)?;
        let mut out = Vec::new();
        let by_ref = Reference::parse(name_or_id.trim())
            .ok()
            .filter(|r| tags.contains(r));
        let remaining = match by_ref {
            Some(r) => {
                self.untag(&r)?;
                out.push(format!("Untagged: {}", r.familiar()));
                tags.into_iter().filter(|t| *t != r).collect::<Vec<_>>()
            }
            None => {
                let repos: BTreeSet<String> = tags.iter().map(|t| t.name()).collect();
                if repos.len() > 1 && !force {
                    return Err(ImageError::Conflict {
                        id: image.id.short(),
                        tags: tags.iter().map(|t| t.familiar()).collect(),
                    });
                }
                for t in &tags {
                    self.untag(t)?;
                    out.push(format!("Untagged: {}", t.familiar()));
                }
                Vec::new()
            }
        };
        if remaining.is_empty() {
            self.store.delete_ref(&record_name(&image.id))?;
            out.push(format!("Deleted: {}", image.id));
        }
        Ok(out)
    }

    /// Rows of `docker history`, newest first; layers are matched to non-empty history entries.
    pub fn history(&self, name_or_id: &str) -> Result<Vec<HistoryRow>, ImageError> {
        let image = self.resolve(name_or_id)?;
        let now = std::time::SystemTime::now();
        let row = |created_at: Option<String>,
                   created_by: String,
                   size: u64,
                   comment: String,
                   empty_layer: bool| {
            HistoryRow {
                id: "<missing>".into(),
                image_id: None,
                created: crate::human::since(created_at.as_deref(), now),
                created_at,
                created_by,
                size,
                comment,
                empty_layer,
            }
        };
        let mut layers = image.layers.iter();
        let mut rows: Vec<HistoryRow> = Vec::new();
        if image.config.history.is_empty() {
            for l in layers {
                rows.push(row(
                    image.config.created.clone(),
                    String::new(),
                    l.size,
                    String::new(),
                    false,
                ));
            }
        } else {
            for h in &image.config.history {
                let size = if h.is_empty_layer() {
                    0
                } else {
                    layers.next().map(|l| l.size).unwrap_or(0)
                };
                rows.push(row(
                    h.created.clone(),
                    h.created_by.clone().unwrap_or_default(),
                    size,
                    h.comment.clone().unwrap_or_default(),
                    h.is_empty_layer(),
                ));
            }
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = image.id.short();
            top.image_id = Some(image.id);
        }
        Ok(rows)
    }

    /// `docker image inspect` of a resolved image.
    pub fn inspect(&self, image: &LocalImage) -> Result<ImageInspect, ImageError> {
        let tags = self.tags_of(&image.id)?;
        let manifest_size = self.store.blob_size(&image.manifest_digest)?;
        Ok(ImageInspect {
            id: image.id.to_string(),
            repo_tags: tags
                .iter()
                .filter(|t| t.tag().is_some())
                .map(|t| t.familiar())
                .collect(),
            repo_digests: Vec::new(),
            created: image.config.created.clone().unwrap_or_default(),
            author: image.config.author.clone().unwrap_or_default(),
            config: image.config.config.clone(),
            architecture: image.config.architecture.clone(),
            variant: image.config.variant.clone(),
            os: image.config.os.clone(),
            size: image.size(),
            root_fs: InspectRootFs {
                kind: image.config.rootfs.kind.clone(),
                layers: image
                    .config
                    .rootfs
                    .diff_ids
                    .iter()
                    .map(|d| d.to_string())
                    .collect(),
            },
            descriptor: Descriptor::new(
                MEDIA_TYPE_OCI_MANIFEST,
                image.manifest_digest,
                manifest_size,
            ),
        })
    }

    /// The exact stored manifest and config bytes, for `inspect --raw`-style output.
    pub fn raw_json(&self, image: &LocalImage) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
        Ok((
            self.store.read_blob(&image.manifest_digest)?,
            self.store.read_blob(&image.id)?,
        ))
    }

    /// `docker image prune`: forgets untagged images, then lets the store collect unreferenced blobs.
    pub fn prune(&self) -> Result<PruneStats, ImageError> {
        self.prune_keeping(&std::collections::HashSet::new())
    }

    /// [`Images::prune`], keeping the untagged images in `keep` (e.g. those containers use, as
    /// docker's prune keeps them).
    pub fn prune_keeping(
        &self,
        keep: &std::collections::HashSet<Digest>,
    ) -> Result<PruneStats, ImageError> {
        let mut images_deleted = Vec::new();
        for (id, (_, tags)) in self.all_images()? {
            if tags.is_empty() && !keep.contains(&id) && self.store.delete_ref(&record_name(&id))? {
                images_deleted.push(id);
            }
        }
        let gc = self.store.gc()?;
        {
            // Mount hints of blobs gc just removed are useless; drop them under gc's lock. They
            // are only hints: failing to drop some must not turn a done prune into an error.
            let _lock = self.store.lock_exclusive()?;
            // Hints only; the next prune tries again.
            let _ = self.store.prune_blob_sources();
        }
        Ok(PruneStats {
            images_deleted,
            bytes_freed: gc.bytes_removed,
            gc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(diff_id: &Digest, created: &str) -> Vec<u8> {
        // Deliberately not canonical (spacing, key order): the bytes must be kept as given.
        format!(
            "{{ \"rootfs\": {{\"type\": \"layers\", \"diff_ids\": [\"{diff_id}\"]}}, \"os\": \"linux\", \"architecture\": \"amd64\", \"created\": \"{created}\", \"config\": {{}} }}"
        )
        .into_bytes()
    }

    #[test]
    fn exact_config_image_keeps_its_id_and_stays_listed_when_its_tag_moves() {
        let dir = tempfile::tempdir().unwrap();
        let images = Images::new(Store::open(dir.path()).unwrap());
        let layer = images.store().put_bytes(b"not really a tar").unwrap();
        let layers = [LayerDesc {
            diff_id: layer,
            size: 0,
        }];
        let first_bytes = config_json(&layer, "2024-01-01T00:00:00Z");
        let first = images.commit_exact_config(&first_bytes, &layers).unwrap();
        assert_eq!(first.id, Digest::of(&first_bytes));
        assert_eq!(first.layers[0].size, 16);
        let r = Reference::parse("localhost:5000/a/base:1").unwrap();
        images.tag(&first, &r).unwrap();

        let second_bytes = config_json(&layer, "2025-01-01T00:00:00Z");
        let second = images.commit_exact_config(&second_bytes, &layers).unwrap();
        images.tag(&second, &r).unwrap();

        let rows = images.list().unwrap();
        let row = |id: &Digest| rows.iter().find(|row| row.id == *id).cloned();
        let old = row(&first.id).expect("the image the tag left is still listed");
        assert_eq!(
            (old.repository.as_str(), old.tag.as_str()),
            ("<none>", "<none>")
        );
        let new = row(&second.id).expect("the tagged image is listed");
        assert_eq!(new.tag, "1");
        assert_eq!(images.resolve(&first.id.to_string()).unwrap().id, first.id);

        // Broken config bytes are an error, not a panic.
        assert!(images.commit_exact_config(b"{", &layers).is_err());
        // Layers must match the config's diff_ids.
        let other = Digest::of(b"other");
        assert!(images
            .commit_exact_config(
                &first_bytes,
                &[LayerDesc {
                    diff_id: other,
                    size: 1
                }]
            )
            .is_err());
    }
}
