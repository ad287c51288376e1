//! The build context of rbuild: which files a Dockerfile may see and how
//! `COPY`/`ADD` put them into a stage's root filesystem.
//!
//! Use [`Context::open`] once per build to read `.dockerignore` (or the
//! Dockerfile-specific `<name>.dockerignore`), then [`copy()`] for every
//! `COPY`/`ADD` of local files (and `COPY --from`, with `ignore: None`).
//! [`Context::digest_sources`] gives a content digest for cache keys,
//! [`Context::source_manifest`] the per-path record behind it (stored with a
//! cache entry, it names the files that changed since: [`SourceManifest::changes`]),
//! and [`passwd`] turns `--chown`/`USER` names into ids from the stage rootfs.
//!
//! # Stat cache
//!
//! Hashing every byte a COPY reads made a no-op rebuild of a large context
//! cost as much as the first build. [`Context::with_stat_cache`] keeps, per
//! context, each regular file's sha256 together with its `lstat` data
//! (device, inode, size, mtime and ctime in ns, mode) in one file in the
//! store; a file whose stat data is unchanged is not read again, so a no-op
//! rebuild costs one `lstat` per file and an edit re-hashes only that file.
//!
//! Racy timestamps: as in git's index, a file changed in the same timestamp
//! tick as it was hashed can keep identical stat data. Each entry records
//! the second (coarse wall clock, which filesystems stamp with) at which its
//! file was read, and is trusted only while the file's mtime and ctime are
//! strictly older than that second; a racily clean entry is re-hashed on its
//! next use. The cache is internally locked (one [`Context`] may digest from
//! many threads), replaced atomically by rename, and a torn or foreign file
//! (checked by a trailing sha256) is ignored: the cache only ever saves time.
//!
//! The digest hashes each file's sha256 rather than its bytes (what lets a
//! cached digest stand in for the file), so its value is not the one rbuild
//! computed before the stat cache existed; see [`SourceManifest::digest`].
//!
//! Every path is resolved inside its root the way a chroot would: symlinks
//! and `..` never lead outside the context or the destination rootfs.
//!
//! ```no_run
//! use std::path::Path;
//! use rbuild_context::{copy, Context, CopyRequest};
//!
//! # fn main() -> Result<(), rbuild_context::ContextError> {
//! let ctx = Context::open(Path::new("/src/app"), None)?;
//! let outcome = copy(&CopyRequest {
//!     src_root: ctx.root(),
//!     ignore: Some(ctx.ignore()),
//!     sources: &["src/".to_string(), "Cargo.toml".to_string()],
//!     dest: "/app/",
//!     workdir: "/",
//!     dest_root: Path::new("/var/lib/rbuild/rootfs"),
//!     chown: None,
//!     chmod: None,
//!     parents: false,
//!     exclude: &[],
//!     keep_ownership: false,
//!     cancel: None,
//! })?;
//! for change in &outcome.changed {
//!     println!("{} (whole tree: {})", change.rel.display(), change.recursive);
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sha2::{Digest, Sha256};

#[cfg(test)]
mod cache_tests;
pub mod chmod;
mod copy;
pub mod ignore;
mod manifest;
pub mod passwd;
mod pattern;
mod resolve;
mod sources;
mod statcache;

pub use copy::{copy, copy_replacing, Changed, CopyOutcome, CopyRequest, SourceMatch};
pub use ignore::IgnoreMatcher;
pub use manifest::{
    Change, ChangeKind, EntryData, ManifestDecodeError, ManifestEntry, SourceManifest,
};

/// Everything that can go wrong reading a context or copying from it; each
/// variant names the path, source or pattern the user has to fix.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The copy was stopped through [`CopyRequest::cancel`].
    #[error("copy cancelled")]
    Cancelled,
    /// A filesystem operation failed on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The context root is missing or not a directory.
    #[error("build context {0} is not a directory")]
    NotADirectory(PathBuf),
    /// A `.dockerignore` or `--exclude` pattern is malformed.
    #[error("{}line {line}: invalid pattern {pattern:?}: {reason}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default())]
    IgnorePattern {
        /// The ignore file, if the pattern came from one.
        file: Option<PathBuf>,
        /// 1-based line (or position in the pattern list).
        line: usize,
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A COPY/ADD source matched nothing (or only ignored files).
    #[error("{src:?}: not found")]
    SourceNotFound {
        /// The source as written in the Dockerfile.
        src: String,
    },
    /// A COPY/ADD source is a malformed wildcard.
    #[error("invalid source {src:?}: {reason}")]
    InvalidSource {
        /// The source as written.
        src: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source leads outside the build context via `..` or a symlink.
    #[error("forbidden path outside the build context: {src:?}")]
    SourceEscapes {
        /// The source as written.
        src: String,
    },
    /// Symlink loop while resolving a path.
    #[error("{path}: too many levels of symbolic links")]
    TooManyLinks {
        /// The path being resolved.
        path: String,
    },
    /// Several sources (or a wildcard matching several) need a `/` destination.
    #[error("When using COPY with more than one source file, the destination must be a directory and end with a /")]
    MultipleSourcesNeedDirectory {
        /// The destination as written.
        dest: String,
    },
    /// Something in the destination path exists and is not a directory.
    #[error("cannot copy to {path}: a parent is not a directory")]
    DestNotDirectory {
        /// The destination path inside the rootfs.
        path: PathBuf,
    },
    /// A directory would have to be replaced by a file or vice versa.
    #[error("cannot copy {src:?} to {path}: {reason}")]
    TypeConflict {
        /// The source being copied.
        src: String,
        /// The destination path inside the rootfs.
        path: PathBuf,
        /// Which conflict it is.
        reason: &'static str,
    },
    /// The `--chmod` value cannot be parsed.
    #[error("invalid --chmod value {spec:?}: {reason}")]
    InvalidChmod {
        /// The value as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--chown`/`USER` value cannot be parsed.
    #[error("invalid user spec {spec:?}: {reason}")]
    InvalidChown {
        /// The value as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A user name is not in the stage's /etc/passwd.
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser {
        /// The missing user name.
        user: String,
    },
    /// A user or group name must be looked up but the image has no such file;
    /// worded as docker words it.
    #[error("unable to find user or group {name}: open {file}: no such file or directory")]
    NoIdFile {
        /// The name that needed the file.
        name: String,
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
    },
    /// A group name is not in the stage's /etc/group.
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup {
        /// The missing group name.
        group: String,
    },
}

/// An opened build context: its root and the ignore rules that decide which
/// files COPY may read, read once per build.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: IgnoreMatcher,
    ignore_file: Option<PathBuf>,
    cache: Option<Arc<statcache::StatCache>>,
    counters: Arc<sources::Counters>,
}

/// How much content the digests of one [`Context`] (and its clones) read,
/// so a build can show what the stat cache saved and tests can prove it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Regular files whose content was read and hashed.
    pub files_hashed: u64,
    /// Bytes read for those files.
    pub bytes_hashed: u64,
    /// Regular files whose digest came from the stat cache.
    pub files_reused: u64,
    /// Why the last save of the stat cache failed, if it did; the build
    /// goes on (the cache only saves time), but the user may want to know.
    pub cache_save_error: Option<String>,
}

impl Context {
    /// Opens the context dir and reads `<dockerfile>.dockerignore` (next to
    /// the Dockerfile) or else the context's `.dockerignore`.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        let md = std::fs::metadata(root).map_err(|e| ContextError::Io {
            path: root.to_path_buf(),
            source: e,
        })?;
        if !md.is_dir() {
            return Err(ContextError::NotADirectory(root.to_path_buf()));
        }
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            if let Some(name) = df.file_name() {
                let mut specific = name.to_os_string();
                specific.push(".dockerignore");
                candidates.push(df.with_file_name(specific));
            }
        }
        // The context's own ignore file is read through in-root resolution so
        // a `.dockerignore` symlink cannot make us read a host file.
        let in_root = resolve::resolve(
            root,
            Path::new(".dockerignore"),
            true,
            resolve::OnEscape::Clamp,
        )
        .map_err(|e| ContextError::Io {
            path: root.join(".dockerignore"),
            source: match e {
                resolve::ResolveError::Io(e) => e,
                _ => io::Error::other("symlink loop or escape"),
            },
        })?;
        candidates.push(root.join(in_root));
        for candidate in candidates {
            match std::fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let ignore = IgnoreMatcher::parse_file(&text, Some(&candidate))?;
                    return Ok(Context {
                        root: root.to_path_buf(),
                        ignore,
                        ignore_file: Some(candidate),
                        cache: None,
                        counters: Arc::default(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ContextError::Io {
                        path: candidate,
                        source: e,
                    })
                }
            }
        }
        Ok(Context {
            root: root.to_path_buf(),
            ignore: IgnoreMatcher::default(),
            ignore_file: None,
            cache: None,
            counters: Arc::default(),
        })
    }

    /// Remembers file digests across builds in the file at `path` (see the
    /// crate docs), so [`Context::digest_sources`] only reads files whose
    /// stat data changed. The file is read on first use and rewritten
    /// atomically after any digest that hashed something; a missing, damaged
    /// or unwritable file only costs time.
    pub fn with_stat_cache(mut self, path: PathBuf) -> Context {
        self.cache = Some(Arc::new(statcache::StatCache::new(self.root.clone(), path)));
        self
    }

    /// [`Context::with_stat_cache`] with the clock that stamps entries
    /// injected, so tests can make entries racy or trusted at will.
    #[cfg(test)]
    pub(crate) fn with_stat_cache_clock(mut self, path: PathBuf, now: fn() -> i64) -> Context {
        self.cache = Some(Arc::new(statcache::StatCache::with_clock(
            self.root.clone(),
            path,
            now,
        )));
        self
    }

    /// [`Context::with_stat_cache`] at `<dir>/<Context::stat_cache_name>`,
    /// so every build of the same directory shares one cache.
    pub fn with_stat_cache_in(self, dir: &Path) -> Context {
        let path = dir.join(self.stat_cache_name());
        self.with_stat_cache(path)
    }

    /// The hex sha256 of the context's canonical path (the path as given if
    /// it cannot be canonicalised): a file name that is the same for every
    /// spelling of the directory and reveals nothing about it.
    pub fn stat_cache_name(&self) -> String {
        let canonical = self
            .root
            .canonicalize()
            .unwrap_or_else(|_| self.root.clone());
        hex::encode(Sha256::digest(canonical.as_os_str().as_bytes()))
    }

    /// Where the stat cache lives, if one is enabled.
    pub fn stat_cache_path(&self) -> Option<&Path> {
        self.cache.as_deref().map(statcache::StatCache::path)
    }

    /// Content read so far by this context's digests and manifests.
    pub fn hash_stats(&self) -> HashStats {
        HashStats {
            files_hashed: self.counters.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: self.counters.bytes_hashed.load(Ordering::Relaxed),
            files_reused: self.counters.files_reused.load(Ordering::Relaxed),
            cache_save_error: self
                .cache
                .as_deref()
                .and_then(statcache::StatCache::last_save_error),
        }
    }

    /// The context directory, for building [`CopyRequest`]s.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The context paths a COPY/ADD source names after wildcard expansion and
    /// `.dockerignore`, in order, so ADD can treat each matched archive as
    /// docker does (empty when nothing matches). Symlinks are resolved inside
    /// the context; one that leaves it is an error.
    pub fn expand_source(&self, source: &str) -> Result<Vec<SourceMatch>, ContextError> {
        copy::expand_source(&self.root, &self.ignore, source)
    }

    /// The ignore rules in force, for building [`CopyRequest`]s.
    pub fn ignore(&self) -> &IgnoreMatcher {
        &self.ignore
    }

    /// Which ignore file was used, so the CLI can tell the user.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// A content digest of the matched sources (paths, modes, sizes,
    /// contents, link targets) for cache keys; `sha256:<hex>`. The same as
    /// [`SourceManifest::digest`] of [`Context::source_manifest`].
    pub fn digest_sources(&self, sources: &[String]) -> Result<String, ContextError> {
        Ok(self.source_manifest(sources)?.digest())
    }

    /// Every path the sources name, with type, mode, size and content digest
    /// or link target, in walk order; store it with a step's cache entry to
    /// tell the user which files made the next build miss. Safe to call from
    /// several threads at once.
    pub fn source_manifest(&self, sources: &[String]) -> Result<SourceManifest, ContextError> {
        sources::source_manifest(
            &self.root,
            &self.ignore,
            sources,
            self.cache.as_deref(),
            &self.counters,
        )
    }
}
