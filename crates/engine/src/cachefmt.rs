//! The exported build cache: the format `--cache-to` writes and `--cache-from` reads, the same
//! for a local layout directory and a registry.
//!
//! # The artifact
//! An OCI **image manifest** (`application/vnd.oci.image.manifest.v1+json`) whose config has
//! its own media type, [`CONFIG_MEDIA_TYPE`] (the artifact type, as OCI 1.1 defines artifacts),
//! and whose layers are the step results' layer blobs with the ordinary OCI layer media types
//! (gzip, zstd or plain tar, per `compression=`).
//!
//! Why a manifest and not an index of per-step manifests (the local format before this one) or
//! BuildKit's index-with-config-as-a-layer: every distribution registry accepts an image manifest
//! with an unknown config type and checks its blobs exist at PUT time, so a cache in a registry
//! is never a dangling reference; a single manifest is one request to resolve; and layer blobs
//! keep the same digests as the pushed image's layers, so pushing the cache next to the image
//! uploads nothing twice (HEAD finds them, or a cross-repository mount links them).
//!
//! # The config blob ([`CacheConfig`], canonical JSON)
//! ```json
//! {"schemaVersion":1,
//!  "layers":[{"diffId":"sha256:…","size":123}],          // layers[i] is manifest.layers[i]
//!  "records":[{"key":"sha256:…","layers":[0,1],"created":"2026-…"}]}
//! ```
//! A record maps a step's cache key (see `key`) to its result chain, by indexes into `layers`.
//! The diff id travels with each layer because the blob is compressed: an imported layer is
//! recorded as the compressed variant of its diff id, and is verified against that diff id when
//! it is first decoded.
//!
//! # Inline caches
//! With `--cache-to type=inline`, the same config JSON rides in the pushed image's manifest as
//! the annotation [`INLINE_ANNOTATION`], its `layers` being the image's own layers: the image id
//! (config digest) does not change, and `--cache-from type=registry,ref=IMAGE` reads it back.
//!
//! # Import
//! The manifest and config are checked against their digests and every index is bounds-checked
//! before any record is used. A record is written into the store only after each layer blob it
//! needs is there, verified (digest and size) on its way in. A local layout is imported whole
//! before the build; a registry cache record by record, when a step's lookup hits it (see
//! `cacheio`), so only the layers of reused steps are downloaded. A cache that cannot be read is
//! the caller's warning, never a failed build. Records already in the store are kept (a local
//! result wins over an imported one for the same key).

use std::collections::BTreeMap;

use rbuild_digest::Digest;
use rbuild_image::manifest::{
    Descriptor, Manifest, MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_LAYER_ZSTD, MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_image::LayerDesc;
use rbuild_store::{Store, Variant};
use serde::{Deserialize, Serialize};

use crate::cachespec::CacheMode;
use crate::chain::Chain;
use crate::BuildError;

/// The config media type that makes a manifest an rbuild cache.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The manifest annotation carrying an inline cache.
pub const INLINE_ANNOTATION: &str = "dev.rbuild.cache.v1";

/// One layer of the cache: which uncompressed tar the blob at the same index holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheLayer {
    /// The uncompressed digest.
    pub diff_id: Digest,
    /// The size recorded with the step result.
    pub size: u64,
}

/// One step result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// Its chain, base first, as indexes into [`CacheConfig::layers`].
    pub layers: Vec<usize>,
    /// When the step ran (kept for the image history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The cache config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CacheConfig {
    /// Always 1.
    pub schema_version: u32,
    /// Layers, in the manifest's order.
    pub layers: Vec<CacheLayer>,
    /// Step results.
    pub records: Vec<CacheRecord>,
}

impl CacheConfig {
    /// Canonical bytes (sorted keys), so the same records give the same digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let v = serde_json::to_value(self).unwrap_or_default();
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Parses and checks a config blob: known schema, every index in range.
    pub fn from_bytes(bytes: &[u8]) -> Result<CacheConfig, BuildError> {
        let c: CacheConfig = serde_json::from_slice(bytes)
            .map_err(|e| BuildError::Request(format!("cache config: {e}")))?;
        if c.schema_version != 1 {
            return Err(BuildError::Request(format!(
                "cache config schema {} is not supported (1 is)",
                c.schema_version
            )));
        }
        if c.records
            .iter()
            .flat_map(|r| &r.layers)
            .any(|&i| i >= c.layers.len())
        {
            return Err(BuildError::Request(
                "cache config: a record names a layer that is not listed".into(),
            ));
        }
        Ok(c)
    }

    /// The records of `keys` (the steps one build keyed) found in the store. With
    /// [`CacheMode::Min`] only steps whose chain is a prefix of `final_layers` (the steps the
    /// final image is made of) are kept; with `Max`, all. `fixed`, when given, is the layer list
    /// to index into (an inline cache indexes the image's own layers), and records whose layers
    /// are not in it are left out.
    pub(crate) fn collect(
        store: &Store,
        keys: &[Digest],
        mode: CacheMode,
        final_layers: &[LayerDesc],
        fixed: bool,
    ) -> CacheConfig {
        let mut cfg = CacheConfig {
            schema_version: 1,
            ..Default::default()
        };
        let mut index: BTreeMap<Digest, usize> = BTreeMap::new();
        if fixed {
            for l in final_layers {
                index.entry(l.diff_id).or_insert(cfg.layers.len());
                cfg.layers.push(CacheLayer {
                    diff_id: l.diff_id,
                    size: l.size,
                });
            }
        }
        let final_ids: Vec<Digest> = final_layers.iter().map(|l| l.diff_id).collect();
        let mut seen = std::collections::BTreeSet::new();
        for key in keys {
            if !seen.insert(*key) {
                continue;
            }
            let Some(chain) = crate::cache::get(store, key) else {
                continue;
            };
            let ids = chain.diff_ids();
            if mode == CacheMode::Min && !final_ids.starts_with(&ids) {
                continue;
            }
            let mut layers = Vec::with_capacity(ids.len());
            for l in &chain.layers {
                let i = match index.get(&l.diff_id) {
                    Some(&i) => i,
                    None if fixed => break,
                    None => {
                        let i = cfg.layers.len();
                        cfg.layers.push(CacheLayer {
                            diff_id: l.diff_id,
                            size: l.size,
                        });
                        index.insert(l.diff_id, i);
                        i
                    }
                };
                layers.push(i);
            }
            if layers.len() != chain.layers.len() {
                continue;
            }
            cfg.records.push(CacheRecord {
                key: *key,
                layers,
                created: chain.created.clone(),
            });
        }
        cfg
    }

    /// The manifest of the artifact, given the config blob's descriptor and the layer blobs'
    /// descriptors in `layers` order.
    pub fn manifest(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    /// Checks that `blobs` can hold this cache's layers (one blob per layer, each of a media
    /// type that decodes to its diff id), so a bad cache is refused before any record is used.
    pub(crate) fn check_blobs(&self, blobs: &[Descriptor]) -> Result<(), BuildError> {
        self.variant_kinds(blobs).map(drop)
    }

    fn variant_kinds(&self, blobs: &[Descriptor]) -> Result<Vec<Option<&'static str>>, BuildError> {
        if blobs.len() != self.layers.len() {
            return Err(BuildError::Request(format!(
                "cache lists {} layers but its manifest has {} blobs",
                self.layers.len(),
                blobs.len()
            )));
        }
        let mut kinds = Vec::with_capacity(blobs.len());
        for (l, d) in self.layers.iter().zip(blobs) {
            let kind = match d.media_type.as_str() {
                MEDIA_TYPE_OCI_LAYER_GZIP | "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                    Some("gzip")
                }
                MEDIA_TYPE_OCI_LAYER_ZSTD => Some("zstd"),
                MEDIA_TYPE_OCI_LAYER | "application/vnd.docker.image.rootfs.diff.tar"
                    if d.digest == l.diff_id =>
                {
                    None
                }
                other => {
                    return Err(BuildError::Request(format!(
                        "cache layer {} has media type {other:?}, which does not hold diff id {}",
                        d.digest, l.diff_id
                    )))
                }
            };
            kinds.push(kind);
        }
        Ok(kinds)
    }

    /// Writes this cache's records (all, or only the one of key `only`) into `store`, with
    /// `blobs[i]` holding `layers[i]`. `fetch` is called once with the blobs the store lacks and
    /// must put each one there verified (or fail). Returns how many records were written; keys
    /// the store already has are kept.
    pub(crate) fn import(
        &self,
        store: &Store,
        blobs: &[Descriptor],
        only: Option<&Digest>,
        fetch: &mut dyn FnMut(&[Descriptor]) -> Result<(), BuildError>,
    ) -> Result<usize, BuildError> {
        let kinds = self.variant_kinds(blobs)?;
        let records: Vec<&CacheRecord> = self
            .records
            .iter()
            .filter(|r| only.is_none_or(|k| r.key == *k))
            .collect();
        let wanted: Vec<usize> = {
            let mut w: Vec<usize> = records.iter().flat_map(|r| r.layers.clone()).collect();
            w.sort_unstable();
            w.dedup();
            w
        };
        let mut missing = Vec::new();
        for &i in &wanted {
            let (l, d) = (&self.layers[i], &blobs[i]);
            if !rbuild_image::layers::layer_available(store, &l.diff_id)?
                && !store.contains(&d.digest)
                && !missing.iter().any(|m: &Descriptor| m.digest == d.digest)
            {
                missing.push(d.clone());
            }
        }
        if !missing.is_empty() {
            fetch(&missing)?;
        }
        for &i in &wanted {
            let (l, d) = (&self.layers[i], &blobs[i]);
            if let Some(name) = kinds[i] {
                if !store.contains(&l.diff_id) && store.contains(&d.digest) {
                    let v = Variant {
                        digest: d.digest,
                        size: d.size,
                        media_type: d.media_type.clone(),
                    };
                    if store.get_variant(&l.diff_id, name)?.as_ref() != Some(&v) {
                        store.set_variant(&l.diff_id, name, &v)?;
                    }
                }
            }
        }
        let mut count = 0;
        for r in records {
            if crate::cache::get(store, &r.key).is_some() {
                count += 1;
                continue;
            }
            let chain = Chain {
                layers: r
                    .layers
                    .iter()
                    .map(|&i| LayerDesc {
                        diff_id: self.layers[i].diff_id,
                        size: self.layers[i].size,
                    })
                    .collect(),
                created: r.created.clone(),
            };
            crate::cache::put(store, &r.key, &chain)?;
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn config_round_trip_and_checks() {
        let c = CacheConfig {
            schema_version: 1,
            layers: vec![CacheLayer {
                diff_id: d("a"),
                size: 3,
            }],
            records: vec![CacheRecord {
                key: d("k"),
                layers: vec![0],
                created: None,
            }],
        };
        let bytes = c.to_bytes();
        assert_eq!(CacheConfig::from_bytes(&bytes).unwrap(), c);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"layers":[{"diffId":"sha256:"#),
            "{text}"
        );
        let mut bad = c.clone();
        bad.records[0].layers = vec![1];
        assert!(CacheConfig::from_bytes(&bad.to_bytes()).is_err());
        bad = c.clone();
        bad.schema_version = 2;
        assert!(CacheConfig::from_bytes(&bad.to_bytes()).is_err());
        assert!(CacheConfig::from_bytes(b"{not json").is_err());
    }

    #[test]
    fn collect_min_keeps_only_final_prefixes_and_import_restores_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s")).unwrap();
        let layer = |s: &str| {
            let digest = store.put_bytes(s.as_bytes()).unwrap();
            LayerDesc {
                diff_id: digest,
                size: s.len() as u64,
            }
        };
        let (a, b, c) = (layer("base"), layer("final-step"), layer("other-stage"));
        let chain = |ls: &[&LayerDesc]| Chain {
            layers: ls.iter().map(|l| **l).collect(),
            created: Some("2026-01-01T00:00:00Z".into()),
        };
        crate::cache::put(&store, &d("k1"), &chain(&[&a, &b])).unwrap();
        crate::cache::put(&store, &d("k2"), &chain(&[&a, &c])).unwrap();
        let keys = [d("k1"), d("k2"), d("k1"), d("absent")];
        let final_layers = [a, b];
        let min = CacheConfig::collect(&store, &keys, CacheMode::Min, &final_layers, false);
        assert_eq!(min.records.len(), 1);
        assert_eq!(min.records[0].key, d("k1"));
        let max = CacheConfig::collect(&store, &keys, CacheMode::Max, &final_layers, false);
        assert_eq!(max.records.len(), 2);
        assert_eq!(max.layers.len(), 3);
        let inline = CacheConfig::collect(&store, &keys, CacheMode::Min, &final_layers, true);
        assert_eq!(inline.layers.len(), 2);
        assert_eq!(inline.records[0].layers, vec![0, 1]);

        // Into a fresh store: the blobs are fetched (here: copied), records written.
        let other = Store::open(dir.path().join("t")).unwrap();
        let blobs: Vec<Descriptor> = max
            .layers
            .iter()
            .map(|l| Descriptor::new(MEDIA_TYPE_OCI_LAYER, l.diff_id, l.size))
            .collect();
        let mut asked = Vec::new();
        let n = max
            .import(&other, &blobs, None, &mut |missing| {
                for m in missing {
                    other
                        .put_bytes(&store.read_blob(&m.digest).unwrap())
                        .unwrap();
                    asked.push(m.digest);
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(asked.len(), 3);
        assert_eq!(
            crate::cache::get(&other, &d("k2")).unwrap().diff_ids(),
            vec![a.diff_id, c.diff_id]
        );
        // One record alone fetches only its own layers.
        let single = Store::open(dir.path().join("v")).unwrap();
        let mut asked = Vec::new();
        max.import(&single, &blobs, Some(&d("k1")), &mut |missing| {
            for m in missing {
                single
                    .put_bytes(&store.read_blob(&m.digest).unwrap())
                    .unwrap();
                asked.push(m.digest);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(asked, vec![a.diff_id, b.diff_id]);
        assert!(crate::cache::get(&single, &d("k2")).is_none());
        // A blob list that does not match the config is refused before anything is written.
        let third = Store::open(dir.path().join("u")).unwrap();
        assert!(max
            .import(&third, &blobs[..1], None, &mut |_| Ok(()))
            .is_err());
        assert!(crate::cache::get(&third, &d("k1")).is_none());
    }
}
