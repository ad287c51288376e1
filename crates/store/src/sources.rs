//! Blob-source records: which registry repositories are known to hold a blob.
//!
//! A push can ask the registry to *mount* a blob from another repository of the same registry
//! instead of uploading it again, but only if it knows a repository that has the blob. Pulls and
//! pushes record that here, keyed by the blob digest (the compressed form a registry serves):
//!
//! ```text
//! <root>/meta/sources/<blob hex>/<encoded source>   JSON {"source": "host:port/repo/name"}
//! ```
//!
//! One file per (blob, source), written by an atomic rename, so concurrent recorders never lose
//! each other's entries and a crash leaves either the whole record or none. The records are hints:
//! a stale one only costs a refused mount (the registry then opens a normal upload).

use std::fs;
use std::path::PathBuf;

use rbuild_digest::Digest;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, StoreError};
use crate::{fsutil, mkdir_all, names, Store};

/// On-disk form of one source record; the name is kept inside because file names are encoded.
#[derive(Serialize, Deserialize)]
struct SourceRecord {
    source: String,
}

impl Store {
    fn sources_root(&self) -> PathBuf {
        self.paths.root.join("meta").join("sources")
    }

    fn sources_dir(&self, blob: &Digest) -> PathBuf {
        self.sources_root().join(blob.hex())
    }

    /// Remembers that the repository `source` (a normalized `host[:port]/path` name, no tag) holds
    /// `blob`, so a later push to the same registry can mount it from there instead of uploading.
    /// Recording the same pair again is a cheap no-op.
    pub fn add_blob_source(&self, blob: &Digest, source: &str) -> Result<(), StoreError> {
        names::validate("blob source", source)?;
        let dir = self.sources_dir(blob);
        let path = dir.join(names::encode(source));
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        mkdir_all(&dir)?;
        let record = SourceRecord {
            source: source.to_string(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::CorruptRecord {
            path: path.clone(),
            source: e,
        })?;
        fsutil::atomic_write(&self.paths.ingest, &path, &json)
    }

    /// The repositories recorded for `blob` by [`Store::add_blob_source`], sorted; empty when none
    /// is known. Damaged records are skipped: they are hints, and a push must not fail over one.
    pub fn blob_sources(&self, blob: &Digest) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for entry in fsutil::entries(&self.sources_dir(blob))? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(Some(r)) = Self::read_record::<SourceRecord>(&entry.path()) {
                // A record whose name does not match its content was not written by us.
                if names::encode(&r.source) == name {
                    out.push(r.source);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Drops the source records of blobs no longer in the store (after a gc), so the records do
    /// not outgrow the blobs they describe; returns how many blobs' records went. Run it under
    /// the exclusive lock (as gc does) so a concurrent pull's fresh records are not raced.
    pub fn prune_blob_sources(&self) -> Result<usize, StoreError> {
        let root = self.sources_root();
        let mut removed = 0;
        for entry in fsutil::entries(&root)? {
            let keep = fsutil::digest_named(&entry).is_some_and(|d| self.contains(&d));
            if !keep {
                let path = entry.path();
                fsutil::remove_tree_force(&path).map_err(io_err("remove", &path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            fsutil::fsync_dir(&root)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use rbuild_digest::Digest;

    #[test]
    fn sources_are_recorded_listed_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let kept = store.put_bytes(b"layer").unwrap();
        let gone = Digest::of(b"not in the store");
        assert_eq!(store.blob_sources(&kept).unwrap(), Vec::<String>::new());

        store
            .add_blob_source(&kept, "localhost:5000/b/app")
            .unwrap();
        store
            .add_blob_source(&kept, "localhost:5000/a/base")
            .unwrap();
        store
            .add_blob_source(&kept, "localhost:5000/a/base")
            .unwrap();
        store.add_blob_source(&gone, "../../etc/passwd").unwrap();
        assert_eq!(
            store.blob_sources(&kept).unwrap(),
            ["localhost:5000/a/base", "localhost:5000/b/app"]
        );
        // Odd names stay inside the store and come back verbatim.
        assert_eq!(store.blob_sources(&gone).unwrap(), ["../../etc/passwd"]);
        assert!(!dir.path().join("etc").exists());
        assert!(store.add_blob_source(&kept, "").is_err());

        assert_eq!(store.prune_blob_sources().unwrap(), 1);
        assert!(store.blob_sources(&gone).unwrap().is_empty());
        assert_eq!(store.blob_sources(&kept).unwrap().len(), 2);
        assert_eq!(store.prune_blob_sources().unwrap(), 0);
    }

    #[test]
    fn damaged_or_foreign_records_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_bytes(b"x").unwrap();
        store.add_blob_source(&d, "h/ok").unwrap();
        let rdir = dir.path().join("meta/sources").join(d.hex());
        std::fs::write(rdir.join("garbage"), b"{not json").unwrap();
        std::fs::write(rdir.join("h%2Fother"), br#"{"source":"h/mismatch"}"#).unwrap();
        assert_eq!(store.blob_sources(&d).unwrap(), ["h/ok"]);
    }
}
