//! The build context of rbuild: which files a Dockerfile may see and how
//! `COPY`/`ADD` put them into a stage's root filesystem.
//!
//! Use [`Context::open`] once per build to read `.dockerignore` (or the
//! Dockerfile-specific `<name>.dockerignore`), then [`copy()`] for every
//! `COPY`/`ADD` of local files (and `COPY --from`, with `ignore: None`).
//! [`Context::digest_sources`] gives a content digest for cache keys, and
//! [`passwd`] turns `--chown`/`USER` names into ids from the stage rootfs.
//!
//! Every path is resolved inside its root the way a chroot would: symlinks
//! and `..` never lead outside the context or the destination rootfs.
//!
//! ```no_run
//! use std::path::Path;
//! use context::{copy, Context, CopyRequest};
//!
//! # fn main() -> Result<(), context::ContextError> {
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
//! })?;
//! for change in &outcome.changed {
//!     println!("{} (whole tree: {})", change.rel.display(), change.recursive);
//! }
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

use std::io;
use std::path::{Path, PathBuf};

pub mod chmod;
mod copy;
pub mod ignore;
pub mod passwd;
mod pattern;
mod resolve;

pub use copy::{copy, copy_replacing, Changed, CopyOutcome, CopyRequest, SourceMatch};
pub use ignore::IgnoreMatcher;

/// Everything that can go wrong reading a context or copying from it; each
/// variant names the path, source or pattern the user has to fix.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
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
        })
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
    /// contents, link targets) for cache keys; `sha256:<hex>`.
    pub fn digest_sources(&self, sources: &[String]) -> Result<String, ContextError> {
        copy::digest_sources(&self.root, &self.ignore, sources)
    }
}
