//! Content store: blobs by digest with crash-safe ingestion, image references, compressed-variant
//! records, cross-process locking and garbage collection.
//!
//! Every rbuild crate that produces or consumes image content (layers, configs, manifests) goes
//! through a [`Store`], so that a build killed at any moment leaves a store the next build can use,
//! and so that several builds (threads or processes) can share one store safely.
//!
//! # Ingestion lifecycle
//!
//! Modelled on containerd's content store:
//!
//! 1. [`Store::ingest`] opens an *ingestion*: a temp file `ingest/<pid>-<random>` that the writing
//!    process holds an exclusive `flock` on. Nobody else can see it as a blob.
//! 2. Bytes are written through the [`Ingest`] (`std::io::Write`); they are hashed as they pass.
//! 3. [`Ingest::commit`] flushes and fsyncs the file, checks the digest against the expected one
//!    (a mismatch is an error naming both digests, and the temp file is removed), makes it read-only,
//!    renames it to `blobs/sha256/<hex>` and fsyncs that directory. The rename is atomic, so a reader
//!    sees either no blob or the whole blob; never a partial one. If the blob already exists the
//!    temp file is simply dropped.
//! 4. Dropping an [`Ingest`] without committing discards it. If the process dies instead, the
//!    temp file stays behind, but its flock dies with the process: the next [`Store::open`] (or
//!    [`Store::gc`]) removes temp files whose lock is free and whose owner pid is dead (or that are
//!    older than an hour), so no half-written data ever becomes visible or lingers.
//!
//! # On-disk layout
//!
//! ```text
//! <root>/
//!   lock                       flock target: builds hold it shared, gc holds it exclusive
//!   blobs/sha256/<hex>         committed, read-only blobs, named by their sha256
//!   ingest/<pid>-<random>      in-flight blob writes and temp files of atomic record updates
//!   refs/<encoded name>        image references (tags): JSON {name, digest, mediaType, created}
//!   meta/variants/<hex>/<enc>  compressed-variant records keyed by uncompressed digest + compression
//!   meta/sources/<hex>/<enc>   registry repositories known to hold a blob (see [`Store::add_blob_source`])
//!   meta/deferred/<hex>        blobs kept as a recipe, streamed or written when read (see [`Deferred`])
//!   tmp/<pid>-<purpose>-<rnd>  scratch directories of running builds (see [`Store::temp_dir`])
//! ```
//!
//! Record names are percent-encoded into a single path component (see [`Store::set_ref`]), so a
//! reference such as `../../etc/passwd` can never escape `refs/`.
//!
//! # Locking
//!
//! A build takes [`Store::lock_shared`] for its whole duration; [`Store::gc`] takes the exclusive
//! lock, so it never deletes a blob a running build is about to reference. Reference and record
//! updates are atomic renames, so concurrent writers never corrupt them (the last writer wins).
//! Locks are `flock`s on separate open files: a thread that holds the shared lock must not call
//! `gc` (it would wait for itself).
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//! use rbuild_store::{RefTarget, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! let _build = store.lock_shared().unwrap();
//!
//! let mut ingest = store.ingest().unwrap();
//! ingest.write_all(b"{}").unwrap();
//! let (digest, size) = ingest.commit(None).unwrap();
//! assert_eq!(size, 2);
//! assert_eq!(store.read_blob(&digest).unwrap(), b"{}");
//!
//! let target = RefTarget {
//!     digest,
//!     media_type: "application/vnd.oci.image.manifest.v1+json".into(),
//!     created: None,
//! };
//! store.set_ref("docker.io/library/app:1.0", &target).unwrap();
//! assert_eq!(store.get_ref("docker.io/library/app:1.0").unwrap(), Some(target));
//! ```

mod deferred;
mod error;
mod fsutil;
mod gc;
mod ingest;
mod names;
mod sources;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_digest::Digest;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

pub use deferred::{Deferred, Producer};
pub use error::StoreError;
pub use gc::GcStats;
pub use ingest::Ingest;

use error::io_err;

/// What a reference (tag) points at, so an image can be found again by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefTarget {
    /// The manifest or index the name resolves to.
    pub digest: Digest,
    /// Media type of that blob, so readers know how to parse it without sniffing.
    pub media_type: String,
    /// RFC 3339 time the reference was set, if the caller cares (for `images` listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// A compressed form of an uncompressed layer, remembered so a second export does not compress
/// again.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Variant {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Its size in bytes, as a descriptor needs it.
    pub size: u64,
    /// Its media type (e.g. `application/vnd.oci.image.layer.v1.tar+gzip`).
    pub media_type: String,
}

/// On-disk form of a reference: the name is kept inside because file names are encoded (or hashed).
#[derive(Serialize, Deserialize)]
struct RefRecord {
    name: String,
    #[serde(flatten)]
    target: RefTarget,
}

/// On-disk form of a variant record.
#[derive(Serialize, Deserialize)]
struct VariantRecord {
    compression: String,
    #[serde(flatten)]
    variant: Variant,
}

#[derive(Debug)]
struct Paths {
    root: PathBuf,
    blobs: PathBuf,
    ingest: PathBuf,
    refs: PathBuf,
    variants: PathBuf,
    tmp: PathBuf,
    lock: PathBuf,
}

/// Handle on one store directory; cheap to clone (shared `Arc`), holds no open files, so it can be
/// passed freely between threads and components.
#[derive(Clone, Debug)]
pub struct Store {
    paths: Arc<Paths>,
    // How deferred blobs are written (see `deferred`); set once, shared by every clone.
    producer: Arc<std::sync::OnceLock<deferred::Registered>>,
}

/// Which flock a [`LockGuard`] holds, for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Held by builds; many at once.
    Shared,
    /// Held by gc/prune; excludes everyone.
    Exclusive,
}

/// Holds the store lock until dropped, so "a build is running" is visible to every process.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    mode: LockMode,
}

impl LockGuard {
    /// Which lock this guard holds, so callers can assert they have what they need.
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

/// A private scratch directory on the store's filesystem (renames into `blobs/` stay cheap); removed
/// with everything inside when dropped, and swept by the next [`Store::open`] if its process dies.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    // Declared after `path`; dropped after the tree is removed in `Drop`, so sweepers never race us.
    _lock: File,
}

impl ScratchDir {
    /// Where the scratch directory is, for building trees and temp files in it.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fsutil::remove_tree_force(&self.path);
    }
}

fn mkdir_all(path: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io_err("create directory", path))
}

impl Store {
    /// Opens (creating if missing) the store at `root`, and sweeps temp files and scratch
    /// directories left by dead processes, so a crashed build never affects the next one.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        let paths = Paths {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
            refs: root.join("refs"),
            variants: root.join("meta").join("variants"),
            tmp: root.join("tmp"),
            lock: root.join("lock"),
            root,
        };
        for dir in [
            &paths.blobs,
            &paths.ingest,
            &paths.refs,
            &paths.variants,
            &paths.tmp,
        ] {
            mkdir_all(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&paths.lock)
            .map_err(io_err("create", &paths.lock))?;
        let store = Store {
            paths: Arc::new(paths),
            producer: Arc::default(),
        };
        store.sweep()?;
        Ok(store)
    }

    /// Removes leftovers of dead processes; returns how many entries went.
    fn sweep(&self) -> Result<usize, StoreError> {
        Ok(fsutil::sweep_stale(&self.paths.ingest)? + fsutil::sweep_stale(&self.paths.tmp)?)
    }

    /// The store location when the user did not give one, read from the real environment and uid.
    pub fn default_root() -> PathBuf {
        Self::default_root_from(
            |k| std::env::var(k).ok(),
            rustix::process::getuid().as_raw(),
        )
    }

    /// [`Store::default_root`] with the environment and uid injected, so the rule is testable:
    /// `$RBUILD_ROOT`, else `$XDG_DATA_HOME/rbuild`, else `/var/lib/rbuild` for root, else
    /// `$HOME/.local/share/rbuild`, else `/tmp/rbuild-<uid>`. Empty or relative values of the XDG and
    /// HOME variables are ignored, as the XDG spec says.
    pub fn default_root_from(env: impl Fn(&str) -> Option<String>, uid: u32) -> PathBuf {
        if let Some(root) = env("RBUILD_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(root);
        }
        let absolute = |v: &String| v.starts_with('/');
        if let Some(xdg) = env("XDG_DATA_HOME").filter(absolute) {
            return PathBuf::from(xdg).join("rbuild");
        }
        if uid == 0 {
            return PathBuf::from("/var/lib/rbuild");
        }
        if let Some(home) = env("HOME").filter(absolute) {
            return PathBuf::from(home).join(".local/share/rbuild");
        }
        PathBuf::from(format!("/tmp/rbuild-{uid}"))
    }

    /// The store directory, for messages and for placing related files.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// Starts a blob write; see the crate docs for the lifecycle.
    pub fn ingest(&self) -> Result<Ingest, StoreError> {
        let (path, file) = fsutil::create_locked_temp(&self.paths.ingest)?;
        Ok(Ingest::new(self.clone(), path, file))
    }

    /// Stores a small in-memory blob (config, manifest); a no-op if it is already there.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut ingest = self.ingest()?;
        io::Write::write_all(&mut ingest, bytes).map_err(io_err("write", ingest.path()))?;
        ingest.commit(Some(&digest)).map(|(d, _)| d)
    }

    /// Copies a file into the store (the source may live anywhere and is left alone). With an
    /// `expected` digest that is already stored, nothing is read at all.
    pub fn put_file(
        &self,
        path: &Path,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some(d) = expected {
            if self.contains(d) {
                return Ok((*d, self.blob_size(d)?));
            }
        }
        let mut src = File::open(path).map_err(io_err("open", path))?;
        let mut ingest = self.ingest()?;
        io::copy(&mut src, &mut ingest).map_err(io_err("copy into the store", path))?;
        ingest.commit(expected)
    }

    /// Whether the blob is committed (or deferred: see [`Deferred`]), so callers can skip
    /// producing it again.
    pub fn contains(&self, d: &Digest) -> bool {
        // The record stays after the blob is produced, so a concurrent production between the
        // two checks still answers true.
        self.is_written(d) || self.is_producible(d)
    }

    /// Where a blob lives, for readers that want mmap, sendfile or reflinks. The file is read-only;
    /// never write to it.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.paths.blobs.join(d.hex())
    }

    fn not_found(&self, d: &Digest) -> StoreError {
        StoreError::BlobNotFound {
            digest: *d,
            root: self.paths.root.clone(),
        }
    }

    /// Opens a blob for streaming (a deferred blob is produced first); a missing blob is
    /// [`StoreError::BlobNotFound`].
    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(d);
        // Blobs are always regular files written by the store; never follow a planted symlink.
        let open = || {
            OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
        };
        match open() {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.produce(d)? {
                    return Err(self.not_found(d));
                }
                open().map_err(io_err("open", &path))
            }
            Err(e) => Err(io_err("open", path)(e)),
        }
    }

    /// Reads a whole blob; meant for small JSON blobs.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut file = self.open_blob(d)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(io_err("read", self.blob_path(d)))?;
        Ok(buf)
    }

    /// Size of a blob (a deferred one's from its record), for descriptors.
    pub fn blob_size(&self, d: &Digest) -> Result<u64, StoreError> {
        let path = self.blob_path(d);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.get_deferred(d)? {
                Some(rec) => Ok(rec.size),
                None => Err(self.not_found(d)),
            },
            Err(e) => Err(io_err("stat", path)(e)),
        }
    }

    /// Re-hashes a stored blob and reports whether it still matches its name, for `fsck`-style
    /// checks after disk trouble (normal reads trust the name, since commits are verified).
    pub fn verify_blob(&self, d: &Digest) -> Result<bool, StoreError> {
        let mut reader = rbuild_digest::DigestReader::new(self.open_blob(d)?);
        io::copy(&mut reader, &mut io::sink()).map_err(io_err("read", self.blob_path(d)))?;
        let (_, actual, _) = reader.finish();
        Ok(actual == *d)
    }

    /// Deletes one blob and its deferred record (prune tools); a missing blob is
    /// [`StoreError::BlobNotFound`]. Callers should hold the exclusive lock so no build is using it.
    pub fn delete_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let path = self.blob_path(d);
        let had_record = self.delete_deferred(d)?;
        match fs::remove_file(&path) {
            Ok(()) => fsutil::fsync_dir(&self.paths.blobs),
            Err(e) if e.kind() == io::ErrorKind::NotFound && had_record => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(d)),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// Every committed blob whose bytes are on disk, sorted (deferred ones: [`Store::list_deferred`]);
    /// files that are not valid digests are ignored.
    pub fn list_blobs(&self) -> Result<Vec<Digest>, StoreError> {
        fsutil::digests_in(&self.paths.blobs)
    }

    fn ref_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        names::validate("reference", name)?;
        Ok(self.paths.refs.join(names::encode(name)))
    }

    /// Points a name (already normalized, e.g. `docker.io/library/app:1.0`) at a blob, replacing any
    /// previous target atomically. Any name is stored safely: it is percent-encoded into one file
    /// name, so `/`, `..` and `:` cannot escape `refs/`.
    pub fn set_ref(&self, name: &str, target: &RefTarget) -> Result<(), StoreError> {
        let path = self.ref_path(name)?;
        let record = RefRecord {
            name: name.to_string(),
            target: target.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| StoreError::CorruptRecord {
            path: path.clone(),
            source: e,
        })?;
        fsutil::atomic_write(&self.paths.ingest, &path, &json)
    }

    fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StoreError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::CorruptRecord {
                path: path.to_path_buf(),
                source,
            })
    }

    /// What a name points at, or `None` if it is not set.
    pub fn get_ref(&self, name: &str) -> Result<Option<RefTarget>, StoreError> {
        let path = self.ref_path(name)?;
        Ok(Self::read_record::<RefRecord>(&path)?
            .filter(|r| r.name == name)
            .map(|r| r.target))
    }

    /// Removes a name; returns whether it existed. The blobs stay until [`Store::gc`].
    pub fn delete_ref(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.ref_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                fsutil::fsync_dir(&self.paths.refs)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    /// Every reference with its target, sorted by name; a damaged record is an error (naming the
    /// file) rather than silently skipped, because gc relies on this list.
    pub fn list_refs(&self) -> Result<Vec<(String, RefTarget)>, StoreError> {
        let dir = &self.paths.refs;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
            let entry = entry.map_err(io_err("list", dir))?;
            if let Some(rec) = Self::read_record::<RefRecord>(&entry.path())? {
                out.push((rec.name, rec.target));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn variant_dir(&self, uncompressed: &Digest) -> PathBuf {
        self.paths.variants.join(uncompressed.hex())
    }

    fn variant_path(
        &self,
        uncompressed: &Digest,
        compression: &str,
    ) -> Result<PathBuf, StoreError> {
        names::validate("compression", compression)?;
        Ok(self
            .variant_dir(uncompressed)
            .join(names::encode(compression)))
    }

    /// Records that `uncompressed` compressed with `compression` (e.g. `gzip`, `zstd`) is `v`, so
    /// the next export reuses it instead of compressing again.
    pub fn set_variant(
        &self,
        uncompressed: &Digest,
        compression: &str,
        v: &Variant,
    ) -> Result<(), StoreError> {
        let path = self.variant_path(uncompressed, compression)?;
        mkdir_all(&self.variant_dir(uncompressed))?;
        let record = VariantRecord {
            compression: compression.to_string(),
            variant: v.clone(),
        };
        let json = serde_json::to_vec(&record).map_err(|e| StoreError::CorruptRecord {
            path: path.clone(),
            source: e,
        })?;
        fsutil::atomic_write(&self.paths.ingest, &path, &json)
    }

    /// The recorded compressed variant, or `None`. Callers should still check
    /// [`Store::contains`] on its digest before reusing it.
    pub fn get_variant(
        &self,
        uncompressed: &Digest,
        compression: &str,
    ) -> Result<Option<Variant>, StoreError> {
        let path = self.variant_path(uncompressed, compression)?;
        Ok(Self::read_record::<VariantRecord>(&path)?
            .filter(|r| r.compression == compression)
            .map(|r| r.variant))
    }

    /// All recorded variants of one uncompressed blob as (compression, variant), sorted; used by gc
    /// and by exporters that accept any compression.
    pub fn list_variants(
        &self,
        uncompressed: &Digest,
    ) -> Result<Vec<(String, Variant)>, StoreError> {
        let mut out = Vec::new();
        for entry in fsutil::entries(&self.variant_dir(uncompressed))? {
            if let Some(r) = Self::read_record::<VariantRecord>(&entry.path())? {
                out.push((r.compression, r.variant));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn lock(&self, op: FlockOperation, mode: LockMode) -> Result<Option<LockGuard>, StoreError> {
        let path = &self.paths.lock;
        let file = OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(io_err("open", path))?;
        match fsutil::flock(&file, op) {
            Ok(()) => Ok(Some(LockGuard { _file: file, mode })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_err("lock", path)(e)),
        }
    }

    /// Marks "a build is using this store" until the guard drops; blocks while gc runs.
    pub fn lock_shared(&self) -> Result<LockGuard, StoreError> {
        self.lock(FlockOperation::LockShared, LockMode::Shared)?
            .ok_or_else(|| self.lock_would_block())
    }

    /// Excludes every build until the guard drops; for prune/gc. Blocks while builds run.
    pub fn lock_exclusive(&self) -> Result<LockGuard, StoreError> {
        self.lock(FlockOperation::LockExclusive, LockMode::Exclusive)?
            .ok_or_else(|| self.lock_would_block())
    }

    /// The exclusive lock if nobody holds any lock right now, so prune can skip instead of waiting.
    pub fn try_lock_exclusive(&self) -> Result<Option<LockGuard>, StoreError> {
        self.lock(
            FlockOperation::NonBlockingLockExclusive,
            LockMode::Exclusive,
        )
    }

    fn lock_would_block(&self) -> StoreError {
        io_err("lock", &self.paths.lock)(io::Error::from(io::ErrorKind::WouldBlock))
    }

    /// A private scratch directory (`tmp/<pid>-<purpose>-<random>`) on the store's filesystem, removed
    /// on drop; for unpacked rootfs trees and temporary layer files of a build. `purpose` only
    /// labels the directory (it is sanitized) to make leftovers recognisable.
    pub fn temp_dir(&self, purpose: &str) -> Result<ScratchDir, StoreError> {
        let label: String = purpose
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(32)
            .collect();
        loop {
            let path = self.paths.tmp.join(fsutil::temp_name(&label));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create directory", path)(e)),
            }
            let lock = File::open(&path)
                .and_then(|f| {
                    fsutil::flock(&f, FlockOperation::NonBlockingLockExclusive)?;
                    Ok(f)
                })
                .map_err(io_err("lock", &path));
            match lock {
                Ok(lock) => return Ok(ScratchDir { path, _lock: lock }),
                Err(e) => {
                    let _ = fs::remove_dir(&path);
                    return Err(e);
                }
            }
        }
    }
}
