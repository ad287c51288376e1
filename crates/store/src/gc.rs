//! Garbage collection: delete blobs no reference can reach.

use std::collections::HashSet;
use std::fs;
use std::io;

use rbuild_digest::Digest;
use serde_json::Value;

use crate::error::{io_err, StoreError};
use crate::{fsutil, Store};

/// JSON blobs larger than this are not parsed for children (registries cap manifests at 4 MiB).
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// What a gc run did, so `prune` can report reclaimed space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs deleted because nothing reachable references them.
    pub blobs_removed: usize,
    /// Bytes those blobs occupied.
    pub bytes_removed: u64,
    /// Blobs still in the store afterwards.
    pub blobs_kept: usize,
    /// Compressed-variant records dropped because their compressed blob is gone.
    pub variants_removed: usize,
    /// Deferred-blob records dropped because nothing reachable references them (their bytes,
    /// e.g. a snapshot tree, can then be deleted by whoever keeps them).
    pub deferred_removed: usize,
    /// Temp files and scratch directories of dead processes that were swept.
    pub stale_removed: usize,
}

/// Digests a blob references through the generic OCI fields: `config.digest`, `layers[].digest`
/// (image manifest) and `manifests[].digest` (index). Non-JSON and oversized blobs have none.
fn children(store: &Store, d: &Digest) -> Vec<Digest> {
    // Deferred blobs are layers, never JSON: do not produce them just to find out.
    if !store.is_written(d) {
        return Vec::new();
    }
    let size = match store.blob_size(d) {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    };
    if size > MAX_JSON {
        return Vec::new();
    }
    let Ok(bytes) = store.read_blob(d) else {
        return Vec::new();
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        return Vec::new();
    };
    let digest_of = |desc: &Value| {
        desc.get("digest")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Digest>().ok())
    };
    let mut out = Vec::new();
    if let Some(config) = value.get("config") {
        out.extend(digest_of(config));
    }
    for key in ["layers", "manifests"] {
        if let Some(list) = value.get(key).and_then(Value::as_array) {
            out.extend(list.iter().filter_map(digest_of));
        }
    }
    out
}

impl Store {
    /// Deletes every blob (and deferred-blob record) not reachable from a reference (following
    /// manifests, indexes and compressed-variant records), drops variant records whose compressed blob is gone, and sweeps
    /// leftovers of dead processes. Takes the exclusive lock itself, so it waits for running builds;
    /// do not call it while holding [`Store::lock_shared`] on the same thread. If any reference record
    /// is unreadable, nothing is deleted.
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let _lock = self.lock_exclusive()?;
        let mut stats = GcStats {
            stale_removed: self.sweep()?,
            ..GcStats::default()
        };

        let mut reachable: HashSet<Digest> = HashSet::new();
        let mut stack: Vec<Digest> = self
            .list_refs()?
            .into_iter()
            .map(|(_, t)| t.digest)
            .collect();
        while let Some(d) = stack.pop() {
            if !reachable.insert(d) {
                continue;
            }
            for (_, v) in self.list_variants(&d)? {
                stack.push(v.digest);
            }
            stack.extend(children(self, &d));
        }

        for d in self.list_blobs()? {
            if reachable.contains(&d) {
                stats.blobs_kept += 1;
                continue;
            }
            let path = self.blob_path(&d);
            let size = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&path) {
                Ok(()) => {
                    stats.blobs_removed += 1;
                    stats.bytes_removed += size;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", path)(e)),
            }
        }
        if stats.blobs_removed > 0 {
            fsutil::fsync_dir(&self.paths.blobs)?;
        }
        for d in self.list_deferred()? {
            if !reachable.contains(&d) && self.delete_deferred(&d)? {
                stats.deferred_removed += 1;
            }
        }
        stats.variants_removed = self.gc_variants()?;
        Ok(stats)
    }

    /// Removes variant records pointing at compressed blobs that no longer exist, and empty
    /// per-digest directories.
    fn gc_variants(&self) -> Result<usize, StoreError> {
        let root = &self.paths.variants;
        let mut removed = 0;
        for dir in fs::read_dir(root).map_err(io_err("list", root))? {
            let dir = dir.map_err(io_err("list", root))?.path();
            let Ok(records) = fs::read_dir(&dir) else {
                continue;
            };
            let mut left = 0;
            for rec in records {
                let rec = rec.map_err(io_err("list", &dir))?.path();
                let keep = match Self::read_record::<crate::VariantRecord>(&rec) {
                    Ok(Some(r)) => self.contains(&r.variant.digest),
                    Ok(None) => continue,
                    Err(StoreError::CorruptRecord { .. }) => false,
                    Err(e) => return Err(e),
                };
                if keep {
                    left += 1;
                } else if fs::remove_file(&rec).is_ok() {
                    removed += 1;
                }
            }
            if left == 0 {
                let _ = fs::remove_dir(&dir);
            }
        }
        Ok(removed)
    }
}
