//! Deferred blobs: content the store knows by digest and size but keeps as a recipe, written out
//! only when somebody reads it.
//!
//! A RUN step's layer already exists on disk as a directory tree (the committed overlay upper the
//! snapshotter keeps, as Docker's layer store keeps a diff directory plus tar-split). Writing its
//! tar as a blob at commit time would copy every byte the step wrote once more, although most
//! layers are never exported. So the snapshotter records the layer here instead:
//!
//! ```text
//! <root>/meta/deferred/<hex>   JSON {"size": N, "recipe": {...}}
//! ```
//!
//! and registers a [`Producer`] that knows how to turn a recipe back into the exact bytes. For
//! everybody else such a blob is simply *there*: [`Store::contains`] and [`Store::blob_size`] answer
//! from the record; [`Store::stream_blob`] (what exports use, through `rbuild_image::layers::open_layer`)
//! reads the bytes from the producer without storing them and fails at their end if they are not
//! the digest; [`Store::open_blob`] (and everything built on it) first produces the blob into the
//! store, committed with the expected digest. Either way a recipe that no longer gives the same
//! bytes fails loudly and never yields wrong content.
//!
//! Records are written by an atomic rename; [`Store::gc`] drops records no reference reaches,
//! exactly as it drops unreachable blobs, and [`Store::delete_blob`] removes both forms.

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_digest::Digest;
use serde::{Deserialize, Serialize};

use crate::error::{io_err, StoreError};
use crate::{fsutil, mkdir_all, Store};

/// What the store remembers about a deferred blob: enough to describe it in a manifest without
/// producing it, plus the producer's own instructions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Deferred {
    /// Length of the blob once produced, for descriptors and listings.
    pub size: u64,
    /// Opaque to the store; interpreted by the registered [`Producer`].
    pub recipe: serde_json::Value,
}

/// Knows how to write the deferred blobs of a store (the component that recorded them), so any
/// reader of the store can open them. Registered once per store handle with
/// [`Store::set_producer`].
pub trait Producer: Send + Sync {
    /// Whether what `record` is made from is still there and readable by this producer, so a
    /// layer whose source is gone counts as missing (a build then runs its step again) instead of
    /// failing whoever reads it later.
    fn available(&self, store: &Store, d: &Digest, record: &Deferred) -> bool;
    /// Writes `d` into the store (through [`Store::ingest`], committed with `d` as the expected
    /// digest, so different bytes are refused).
    fn produce(&self, store: &Store, d: &Digest, record: &Deferred) -> Result<(), StoreError>;
    /// The bytes of `d` without storing them, for readers that copy a layer elsewhere once (an
    /// export). The reader must end with an error instead of end-of-file when what it yielded is
    /// not `d`.
    fn stream(
        &self,
        store: &Store,
        d: &Digest,
        record: &Deferred,
    ) -> Result<Box<dyn io::Read + Send>, StoreError>;
}

/// The registered [`Producer`] behind a `Debug` impl, so [`Store`] stays `Debug`.
#[derive(Clone)]
pub(crate) struct Registered(pub(crate) Arc<dyn Producer>);

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Producer(..)")
    }
}

impl Store {
    fn deferred_root(&self) -> PathBuf {
        self.paths.root.join("meta").join("deferred")
    }

    fn deferred_path(&self, d: &Digest) -> PathBuf {
        self.deferred_root().join(d.hex())
    }

    /// Whether the blob's bytes are really on disk (not just promised by a deferred record), for
    /// callers that must not rely on a recipe.
    pub fn is_written(&self, d: &Digest) -> bool {
        fs::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file())
    }

    /// Whether `d` has a deferred record that can be produced here: with no producer registered,
    /// the record is taken at its word (opening it will then say what is missing).
    pub(crate) fn is_producible(&self, d: &Digest) -> bool {
        let Ok(Some(record)) = self.get_deferred(d) else {
            return false;
        };
        match self.producer.get() {
            Some(Registered(p)) => p.available(self, d, &record),
            None => true,
        }
    }

    /// Records that `d` can be produced from `record.recipe`, so the caller does not have to write
    /// the bytes now. A no-op when the blob itself is already stored.
    pub fn set_deferred(&self, d: &Digest, record: &Deferred) -> Result<(), StoreError> {
        if self.is_written(d) {
            return Ok(());
        }
        let path = self.deferred_path(d);
        mkdir_all(&self.deferred_root())?;
        let json = serde_json::to_vec(record).map_err(|source| StoreError::CorruptRecord {
            path: path.clone(),
            source,
        })?;
        fsutil::atomic_write(&self.paths.ingest, &path, &json)
    }

    /// The deferred record of `d`, or `None`; present even after the blob has been produced.
    pub fn get_deferred(&self, d: &Digest) -> Result<Option<Deferred>, StoreError> {
        Self::read_record(&self.deferred_path(d))
    }

    /// Whether `d` exists only as a recipe: whoever keeps what the recipe reads (the snapshotter's
    /// trees) must not delete it while this holds.
    pub fn is_deferred_only(&self, d: &Digest) -> bool {
        !self.is_written(d) && fs::symlink_metadata(self.deferred_path(d)).is_ok()
    }

    /// Every digest with a deferred record, sorted.
    pub fn list_deferred(&self) -> Result<Vec<Digest>, StoreError> {
        fsutil::digests_in(&self.deferred_root())
    }

    /// Removes the deferred record of `d`; returns whether there was one.
    pub(crate) fn delete_deferred(&self, d: &Digest) -> Result<bool, StoreError> {
        let path = self.deferred_path(d);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// Registers how deferred blobs of this store are produced; shared by every clone of this
    /// handle. The first registration wins (all producers of one program are the same).
    pub fn set_producer(&self, producer: Arc<dyn Producer>) {
        let _ = self.producer.set(Registered(producer));
    }

    /// Reads a blob without writing a deferred one into the store: the file when it is there,
    /// else the producer's stream, which fails at its end if the bytes were not `d`. For exports,
    /// which copy a layer once, so a freshly built image saved right away is read once and the
    /// store does not grow by its size. Read to the end before trusting what was read.
    pub fn stream_blob(&self, d: &Digest) -> Result<Box<dyn io::Read + Send>, StoreError> {
        if !self.is_written(d) {
            if let (Some(record), Some(Registered(producer))) =
                (self.get_deferred(d)?, self.producer.get())
            {
                return producer.stream(self, d, &record);
            }
        }
        Ok(Box::new(self.open_blob(d)?))
    }

    /// Produces `d` from its deferred record if it has one and its bytes are not on disk; returns
    /// whether there was a record. The producer must commit exactly `d`.
    pub(crate) fn produce(&self, d: &Digest) -> Result<bool, StoreError> {
        let Some(record) = self.get_deferred(d)? else {
            return Ok(false);
        };
        if self.is_written(d) {
            return Ok(true);
        }
        let Some(Registered(producer)) = self.producer.get() else {
            return Err(StoreError::Produce {
                digest: *d,
                reason: "it is kept as a snapshot tree, and this program registered no way to \
                         write it (open the store through the engine or the snapshotter)"
                    .into(),
            });
        };
        producer.produce(self, d, &record)?;
        if !self.is_written(d) {
            return Err(StoreError::Produce {
                digest: *d,
                reason: "the producer returned without storing it".into(),
            });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(size: u64) -> Deferred {
        Deferred {
            size,
            recipe: serde_json::json!({"bytes": "hello"}),
        }
    }

    /// Writes the recipe's `bytes`; available unless the recipe says `"gone": true`.
    struct Echo;

    impl Producer for Echo {
        fn available(&self, _: &Store, _: &Digest, rec: &Deferred) -> bool {
            rec.recipe.get("gone").is_none()
        }
        fn produce(&self, store: &Store, d: &Digest, rec: &Deferred) -> Result<(), StoreError> {
            let bytes = rec.recipe["bytes"].as_str().unwrap_or_default().as_bytes();
            let mut ingest = store.ingest()?;
            ingest
                .write_all(bytes)
                .map_err(io_err("write", ingest.path()))?;
            ingest.commit(Some(d)).map(|_| ())
        }
        fn stream(
            &self,
            _: &Store,
            _: &Digest,
            rec: &Deferred,
        ) -> Result<Box<dyn io::Read + Send>, StoreError> {
            let bytes = rec.recipe["bytes"].as_str().unwrap_or_default().to_string();
            Ok(Box::new(io::Cursor::new(bytes.into_bytes())))
        }
    }

    fn producer() -> Arc<dyn Producer> {
        Arc::new(Echo)
    }

    #[test]
    fn a_deferred_blob_is_listed_sized_and_produced_on_first_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        store.set_deferred(&d, &record(5)).unwrap();
        assert!(store.contains(&d));
        assert!(store.is_deferred_only(&d));
        assert_eq!(store.blob_size(&d).unwrap(), 5);
        // Without a producer the error names the digest.
        let err = store.read_blob(&d).unwrap_err().to_string();
        assert!(err.contains(&d.to_string()), "{err}");
        store.set_producer(producer());
        // A stream reads it without storing it; a plain read stores it.
        let mut streamed = Vec::new();
        io::Read::read_to_end(&mut store.stream_blob(&d).unwrap(), &mut streamed).unwrap();
        assert_eq!(streamed, b"hello");
        assert!(store.is_deferred_only(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        assert!(!store.is_deferred_only(&d));
        assert_eq!(store.list_deferred().unwrap(), vec![d]);
    }

    #[test]
    fn a_record_the_producer_cannot_make_is_not_contained() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_producer(producer());
        let d = Digest::of(b"hello");
        let gone = Deferred {
            size: 5,
            recipe: serde_json::json!({"bytes": "hello", "gone": true}),
        };
        store.set_deferred(&d, &gone).unwrap();
        assert!(!store.contains(&d));
        assert!(store.is_deferred_only(&d), "still protected from deletion");
        store.set_deferred(&d, &record(5)).unwrap();
        assert!(store.contains(&d));
    }

    #[test]
    fn a_recipe_that_gives_other_bytes_fails_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_producer(producer());
        let d = Digest::of(b"something else");
        store.set_deferred(&d, &record(14)).unwrap();
        let err = store.open_blob(&d).unwrap_err();
        assert!(
            matches!(err, StoreError::DigestMismatch { expected, .. } if expected == d),
            "{err}"
        );
        assert!(store.is_deferred_only(&d));
        assert!(store.list_blobs().unwrap().is_empty());
    }

    #[test]
    fn delete_blob_removes_the_record_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        store.set_deferred(&d, &record(5)).unwrap();
        store.delete_blob(&d).unwrap();
        assert!(!store.contains(&d));
        assert!(store.delete_blob(&d).is_err());
    }

    #[test]
    fn gc_keeps_reachable_records_without_producing_them_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        struct Counting(Arc<std::sync::atomic::AtomicUsize>);
        impl Producer for Counting {
            fn available(&self, _: &Store, _: &Digest, _: &Deferred) -> bool {
                true
            }
            fn produce(&self, _: &Store, _: &Digest, _: &Deferred) -> Result<(), StoreError> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }
            fn stream(
                &self,
                _: &Store,
                _: &Digest,
                _: &Deferred,
            ) -> Result<Box<dyn io::Read + Send>, StoreError> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Box::new(io::empty()))
            }
        }
        let produced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        store.set_producer(Arc::new(Counting(produced.clone())));
        let kept = Digest::of(b"kept layer");
        let dropped = Digest::of(b"dropped layer");
        store.set_deferred(&kept, &record(10)).unwrap();
        store.set_deferred(&dropped, &record(13)).unwrap();
        let manifest = format!(r#"{{"layers":[{{"digest":"{kept}","size":10}}]}}"#);
        let m = store.put_bytes(manifest.as_bytes()).unwrap();
        let target = crate::RefTarget {
            digest: m,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            created: None,
        };
        store.set_ref("app:1", &target).unwrap();
        let stats = store.gc().unwrap();
        assert_eq!(stats.deferred_removed, 1);
        assert_eq!(store.list_deferred().unwrap(), vec![kept]);
        assert!(store.contains(&kept));
        assert!(!store.contains(&dropped));
        assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
