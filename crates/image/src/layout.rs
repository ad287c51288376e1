//! Typed OCI image layouts for content that is not one image: build caches (`--cache-to
//! type=local`) and anything else rbuild keeps as `blobs/` + `index.json`.
//!
//! Lifecycle of a write: every blob goes to a temp name and is renamed under its digest, and
//! `index.json` is written last (also through a rename), so a reader never sees an index entry
//! whose blobs are missing, and a killed export leaves the previous index intact. Reading never
//! trusts the layout: names are resolved inside its root, and every blob is checked against the
//! size and digest its descriptor promises before it is used or enters the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use rbuild_store::Store;

use crate::archive::{DirSink, DirSource, Sink, Source};
use crate::export::{blob_name, copy_blob, copy_layer, ExportCompression, OCI_LAYOUT};
use crate::manifest::{Descriptor, Index, MEDIA_TYPE_OCI_INDEX};
use crate::{ImageError, Images};

/// Largest JSON document (index, manifest, cache config) read from a layout.
pub const MAX_JSON: u64 = 16 << 20;

/// Writes blobs and then an index into a layout directory (created if missing; blobs already
/// present with the right size are kept).
pub struct LayoutWriter {
    sink: DirSink,
    root: PathBuf,
}

impl LayoutWriter {
    /// Opens (creating) the layout directory `root`.
    pub fn create(root: &Path) -> Result<LayoutWriter, ImageError> {
        Ok(LayoutWriter {
            sink: DirSink::new(root)?,
            root: root.to_path_buf(),
        })
    }

    /// Adds a small blob from memory and returns its descriptor.
    pub fn add_bytes(&mut self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, ImageError> {
        let digest = Digest::of(bytes);
        self.sink.add_bytes(&blob_name(&digest), bytes)?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Adds layer `diff_id` of the store compressed with `c` (reusing or creating the stored
    /// compressed variant) and returns its descriptor.
    pub fn add_layer(
        &mut self,
        images: &Images,
        diff_id: &Digest,
        c: ExportCompression,
    ) -> Result<Descriptor, ImageError> {
        let desc = crate::export::layer_variant(images, diff_id, c)?;
        let name = blob_name(&desc.digest);
        if desc.digest == *diff_id {
            copy_layer(images, &mut self.sink, &name, diff_id)?;
        } else {
            copy_blob(images, &mut self.sink, &name, &desc.digest)?;
        }
        Ok(desc)
    }

    /// Writes `oci-layout` and then `index.json` listing `manifests`, completing the layout.
    pub fn finish(
        mut self,
        manifests: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
    ) -> Result<(), ImageError> {
        self.sink.add_bytes("oci-layout", OCI_LAYOUT)?;
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
            manifests,
            annotations,
        };
        let path = self.root.join("index.json");
        let tmp = self.root.join("index.json.rbuild-tmp");
        std::fs::write(&tmp, index.to_canonical_json()).map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))
    }
}

/// Reads an OCI layout directory, verifying what it hands out.
pub struct LayoutReader {
    src: DirSource,
}

impl LayoutReader {
    /// Opens the layout at `root`.
    pub fn open(root: &Path) -> Result<LayoutReader, ImageError> {
        Ok(LayoutReader {
            src: DirSource::open(root)?,
        })
    }

    /// The layout's directory (canonical), for messages.
    pub fn path(&self) -> &Path {
        self.src.archive()
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<Index, ImageError> {
        let bytes = self.src.read_all("index.json", MAX_JSON)?;
        Index::from_json(
            &bytes,
            format!("{}", self.path().join("index.json").display()),
        )
    }

    /// A small blob (manifest, config) read whole, checked against `desc`'s size and digest.
    pub fn read_blob(&self, desc: &Descriptor) -> Result<Vec<u8>, ImageError> {
        if desc.size > MAX_JSON {
            return Err(self.bad(format!(
                "blob {} is {} bytes, more than the {MAX_JSON} expected for metadata",
                desc.digest, desc.size
            )));
        }
        let bytes = self.src.read_all(&blob_name(&desc.digest), MAX_JSON)?;
        self.check(desc, bytes.len() as u64, &Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Copies a blob into `store` unless it is there already, checked against `desc`'s size
    /// and digest; a blob that does not match never enters the store.
    pub fn import_blob(&self, store: &Store, desc: &Descriptor) -> Result<(), ImageError> {
        if store.contains(&desc.digest) {
            return Ok(());
        }
        let name = blob_name(&desc.digest);
        let (r, size) = self.src.open(&name)?;
        if size != desc.size {
            return Err(self.bad(format!(
                "blob {} is {size} bytes, its descriptor says {}",
                desc.digest, desc.size
            )));
        }
        let mut ingest = store.ingest()?;
        std::io::copy(&mut r.take(size), &mut ingest)
            .map_err(|e| ImageError::io(self.path().join(&name), e))?;
        match ingest.commit(Some(&desc.digest)) {
            Ok(_) => Ok(()),
            Err(rbuild_store::StoreError::DigestMismatch { actual, .. }) => {
                Err(ImageError::BlobDigestMismatch {
                    archive: self.path().to_path_buf(),
                    file: name,
                    expected: desc.digest,
                    actual,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    fn check(&self, desc: &Descriptor, size: u64, digest: &Digest) -> Result<(), ImageError> {
        if size != desc.size {
            return Err(self.bad(format!(
                "blob {} is {size} bytes, its descriptor says {}",
                desc.digest, desc.size
            )));
        }
        if *digest != desc.digest {
            return Err(ImageError::BlobDigestMismatch {
                archive: self.path().to_path_buf(),
                file: blob_name(&desc.digest),
                expected: desc.digest,
                actual: *digest,
            });
        }
        Ok(())
    }

    fn bad(&self, reason: String) -> ImageError {
        ImageError::BadArchive {
            archive: self.path().to_path_buf(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::MEDIA_TYPE_OCI_MANIFEST;

    #[test]
    fn round_trip_and_verification() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("l");
        let mut w = LayoutWriter::create(&layout).unwrap();
        let d = w.add_bytes("application/x-test", b"hello").unwrap();
        w.finish(vec![d.clone()], BTreeMap::new()).unwrap();
        let r = LayoutReader::open(&layout).unwrap();
        assert_eq!(r.index().unwrap().manifests, vec![d.clone()]);
        assert_eq!(r.read_blob(&d).unwrap(), b"hello");
        let store = Store::open(dir.path().join("store")).unwrap();
        r.import_blob(&store, &d).unwrap();
        assert!(store.contains(&d.digest));

        // A blob whose bytes changed is refused, by size and by digest.
        std::fs::write(layout.join(blob_name(&d.digest)), b"hellO").unwrap();
        assert!(matches!(
            r.read_blob(&d),
            Err(ImageError::BlobDigestMismatch { .. })
        ));
        let store2 = Store::open(dir.path().join("store2")).unwrap();
        assert!(r.import_blob(&store2, &d).is_err());
        assert!(!store2.contains(&d.digest));
        std::fs::write(layout.join(blob_name(&d.digest)), b"hello!").unwrap();
        assert!(r.read_blob(&d).is_err());
        let missing = Descriptor::new(MEDIA_TYPE_OCI_MANIFEST, Digest::of(b"nope"), 4);
        assert!(r.read_blob(&missing).is_err());
    }
}
