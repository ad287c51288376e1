//! COPY/ADD of local files (and `COPY --from`) into a stage rootfs, with
//! BuildKit's semantics and every path confined to its root.

use std::collections::HashMap;
use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::chmod::Chmod;
use crate::ignore::IgnoreMatcher;
use crate::pattern::{clean, has_wildcard, Glob};
use crate::resolve::{resolve, OnEscape, ResolveError};
use crate::ContextError;

/// One COPY/ADD of local files, as the engine sees it after parsing flags,
/// so a single call performs the whole instruction.
#[derive(Debug, Clone)]
pub struct CopyRequest<'a> {
    /// Root the sources are read from: the context dir or a stage rootfs.
    pub src_root: &'a Path,
    /// Ignore rules of the build context; `None` for `--from=stage`, which
    /// also switches symlink handling to chroot semantics (absolute targets
    /// mean the stage root) instead of refusing links that leave the root.
    pub ignore: Option<&'a IgnoreMatcher>,
    /// Sources as written (relative to `src_root`, may hold wildcards).
    pub sources: &'a [String],
    /// Destination as written; relative means relative to `workdir`.
    pub dest: &'a str,
    /// The stage's WORKDIR, for relative destinations.
    pub workdir: &'a str,
    /// The stage rootfs directory everything is written into.
    pub dest_root: &'a Path,
    /// `--chown` already resolved with [`crate::passwd::resolve_chown`].
    pub chown: Option<(u32, u32)>,
    /// `--chmod` as written (octal or symbolic).
    pub chmod: Option<&'a str>,
    /// `--parents`: keep each source's path (from the root or a `/./` pivot).
    pub parents: bool,
    /// `--exclude` patterns, relative to each source.
    pub exclude: &'a [String],
    /// Keep the source's uid/gid when no `--chown` is given (BuildKit does
    /// this for `--from`; context files become 0:0).
    pub keep_ownership: bool,
    /// Raised to stop the copy between entries ([`ContextError::Cancelled`]),
    /// so a cancelled build does not wait for a large COPY to finish.
    pub cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

/// What a copy wrote, so the engine can write a layer from exactly those
/// paths instead of diffing the whole rootfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOutcome {
    /// Written paths relative to `dest_root`, sorted so parents come first;
    /// nothing below a `recursive` entry is listed again. Ancestors that
    /// already existed are not listed.
    pub changed: Vec<Changed>,
    /// The owner every written entry was given (`--chown`, or 0:0 for the
    /// context), or `None` when source ownership was kept. Lets a rootless
    /// layer writer record ownership the filesystem could not store.
    pub owner: Option<(u32, u32)>,
}

/// One written path, telling the layer writer how much to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Path relative to `dest_root`.
    pub rel: PathBuf,
    /// A directory tree written whole (include everything below it).
    pub recursive: bool,
}

/// A source after wildcard expansion.
#[derive(Debug)]
pub(crate) struct Match {
    /// Cleaned components as named (link names kept, wildcards expanded).
    pub(crate) lexical: Vec<String>,
    /// Where `--parents` starts keeping components.
    pivot: usize,
    /// Resolved path relative to the source root, no symlinks.
    pub(crate) rel: PathBuf,
}

pub(crate) fn io_err(path: &Path, source: io::Error) -> ContextError {
    ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn resolve_source(
    root: &Path,
    rel: &Path,
    source: &str,
    escape: OnEscape,
) -> Result<PathBuf, ContextError> {
    resolve(root, rel, true, escape).map_err(|e| match e {
        ResolveError::Escapes => ContextError::SourceEscapes {
            src: source.to_string(),
        },
        ResolveError::TooManyLinks => ContextError::TooManyLinks {
            path: source.to_string(),
        },
        ResolveError::Io(e) => io_err(&root.join(rel), e),
    })
}

/// Splits a source into cleaned components and the `/./` pivot.
fn split_source(source: &str) -> Result<(Vec<String>, usize), ContextError> {
    let mut comps: Vec<String> = Vec::new();
    let mut pivot = 0;
    for (i, part) in source.split('/').enumerate() {
        match part {
            "" => {}
            "." => {
                if i > 0 {
                    pivot = comps.len();
                }
            }
            ".." => {
                if comps.pop().is_none() {
                    return Err(ContextError::SourceEscapes {
                        src: source.to_string(),
                    });
                }
                pivot = pivot.min(comps.len());
            }
            other => comps.push(other.to_string()),
        }
    }
    Ok((comps, pivot))
}

pub(crate) fn sorted_names(dir: &Path) -> Result<Option<Vec<std::ffi::OsString>>, ContextError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        names.push(entry.map_err(|e| io_err(dir, e))?.file_name());
    }
    names.sort();
    Ok(Some(names))
}

/// Expands one source into the existing, non-ignored paths it names.
pub(crate) fn match_source(
    root: &Path,
    source: &str,
    ignore: Option<&IgnoreMatcher>,
    escape: OnEscape,
) -> Result<Vec<Match>, ContextError> {
    let (comps, pivot) = split_source(source)?;
    let mut cur: Vec<(Vec<String>, PathBuf)> = vec![(Vec::new(), PathBuf::new())];
    for comp in &comps {
        let mut next = Vec::new();
        if has_wildcard(comp) {
            let glob = Glob::compile(comp, false).map_err(|e| ContextError::InvalidSource {
                src: source.to_string(),
                reason: e.0.to_string(),
            })?;
            for (lex, rel) in cur {
                let Some(names) = sorted_names(&root.join(&rel))? else {
                    continue;
                };
                for name in names {
                    let Some(name) = name.to_str() else { continue };
                    if !glob.matches(name) {
                        continue;
                    }
                    let resolved = resolve_source(root, &rel.join(name), source, escape)?;
                    let mut lex = lex.clone();
                    lex.push(name.to_string());
                    next.push((lex, resolved));
                }
            }
        } else {
            for (mut lex, rel) in cur {
                let resolved = resolve_source(root, &rel.join(comp), source, escape)?;
                lex.push(comp.clone());
                next.push((lex, resolved));
            }
        }
        cur = next;
    }
    let mut out = Vec::new();
    for (lexical, rel) in cur {
        let Ok(md) = fs::symlink_metadata(root.join(&rel)) else {
            continue;
        };
        if let Some(ig) = ignore {
            // An excluded directory may still hold `!`-re-included files,
            // which Docker would have sent (with their parents).
            if ig.is_excluded(&rel, md.is_dir()) && !(md.is_dir() && ig.has_exceptions()) {
                continue;
            }
        }
        out.push(Match {
            lexical,
            pivot,
            rel,
        });
    }
    Ok(out)
}

/// One path a source names in the context (see [`crate::Context::expand_source`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMatch {
    /// The path as named, wildcards expanded, `/`-separated: usable as a
    /// source of its own.
    pub lexical: String,
    /// The resolved host path inside the context root.
    pub host: PathBuf,
}

pub(crate) fn expand_source(
    root: &Path,
    ignore: &IgnoreMatcher,
    source: &str,
) -> Result<Vec<SourceMatch>, ContextError> {
    Ok(match_source(root, source, Some(ignore), OnEscape::Fail)?
        .into_iter()
        .map(|m| SourceMatch {
            lexical: m.lexical.join("/"),
            host: root.join(&m.rel),
        })
        .collect())
}

/// Performs one COPY: matches sources, creates the destination and copies,
/// returning the paths it wrote.
pub fn copy(req: &CopyRequest) -> Result<CopyOutcome, ContextError> {
    copy_with(req, false)
}

/// Like [`copy`], but an entry replaces what is in its way, as docker's untar
/// does for ADD of a local archive: a file (or link) where the destination has
/// a directory removes that directory's whole tree, and a directory where it
/// has a non-directory removes that first. Removal stays inside `dest_root`
/// (the path is resolved there and nothing below it is followed).
pub fn copy_replacing(req: &CopyRequest) -> Result<CopyOutcome, ContextError> {
    copy_with(req, true)
}

fn copy_with(req: &CopyRequest, replace: bool) -> Result<CopyOutcome, ContextError> {
    let chmod = req.chmod.map(crate::chmod::parse).transpose()?;
    let exclude = IgnoreMatcher::new(req.exclude)?;
    let escape = if req.ignore.is_some() {
        OnEscape::Fail
    } else {
        OnEscape::Clamp
    };
    let dest_is_dir = req.dest.is_empty()
        || req.dest == "."
        || req.dest.ends_with('/')
        || req.dest.ends_with("/.");
    let joined = if req.dest.starts_with('/') {
        req.dest.to_string()
    } else {
        format!("/{}/{}", req.workdir, req.dest)
    };
    let dest_clean = clean(&joined);

    if req.sources.is_empty() {
        return Err(ContextError::InvalidSource {
            src: String::new(),
            reason: "no source files were specified".to_string(),
        });
    }
    let mut matches = Vec::new();
    for source in req.sources {
        let found = match_source(req.src_root, source, req.ignore, escape)?;
        if found.is_empty() {
            return Err(ContextError::SourceNotFound {
                src: source.clone(),
            });
        }
        matches.extend(found.into_iter().map(|m| (source.as_str(), m)));
    }
    if (req.sources.len() > 1 || matches.len() > 1) && !dest_is_dir {
        return Err(ContextError::MultipleSourcesNeedDirectory {
            dest: req.dest.to_string(),
        });
    }
    let owner = match (req.chown, req.keep_ownership) {
        (Some(o), _) => Some(o),
        (None, true) => None,
        (None, false) => Some((0, 0)),
    };
    let mut w = Writer {
        req,
        chmod,
        exclude,
        owner,
        links: HashMap::new(),
        changed: Vec::new(),
        is_root: rustix::process::geteuid().is_root(),
        replace,
    };
    if dest_is_dir {
        // BuildKit creates a slash-terminated destination up front (0755,
        // --chown owner), so a directory source does not lend it its metadata.
        w.mkdir_all(Path::new(&dest_clean))?;
    }
    for (source, m) in &matches {
        // Hard links are kept within one source's tree only, as BuildKit copies each separately.
        w.links.clear();
        w.copy_match(source, m, &dest_clean, dest_is_dir)?;
    }
    Ok(CopyOutcome {
        changed: finalize(std::mem::take(&mut w.changed)),
        owner,
    })
}

fn finalize(mut v: Vec<Changed>) -> Vec<Changed> {
    v.sort_by(|a, b| a.rel.cmp(&b.rel));
    let mut out: Vec<Changed> = Vec::new();
    let mut covering: Option<PathBuf> = None;
    for c in v {
        if let Some(last) = out.last_mut() {
            if last.rel == c.rel {
                last.recursive |= c.recursive;
                continue;
            }
        }
        if let Some(cov) = &covering {
            if c.rel.starts_with(cov) {
                continue;
            }
        }
        covering = c.recursive.then(|| c.rel.clone());
        out.push(c);
    }
    out
}

struct Writer<'a, 'b> {
    req: &'b CopyRequest<'a>,
    chmod: Option<Chmod>,
    exclude: IgnoreMatcher,
    owner: Option<(u32, u32)>,
    links: HashMap<(u64, u64), PathBuf>,
    changed: Vec<Changed>,
    is_root: bool,
    /// Replace conflicting entries instead of failing (see [`copy_replacing`]).
    replace: bool,
}

impl Writer<'_, '_> {
    fn dest_resolve(&self, path: &Path) -> Result<PathBuf, ContextError> {
        resolve(self.req.dest_root, path, true, OnEscape::Clamp).map_err(|e| match e {
            ResolveError::Io(e) => io_err(&self.req.dest_root.join(path), e),
            _ => ContextError::TooManyLinks {
                path: path.display().to_string(),
            },
        })
    }

    /// Creates missing directories of `rel` (0755, owned as BuildKit does).
    fn mkdir_all(&mut self, rel: &Path) -> Result<(), ContextError> {
        let resolved = self.dest_resolve(rel)?;
        let mut cur = PathBuf::new();
        for comp in resolved.components() {
            cur.push(comp);
            let host = self.req.dest_root.join(&cur);
            match fs::symlink_metadata(&host) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => {
                    return Err(ContextError::DestNotDirectory {
                        path: Path::new("/").join(&cur),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&host).map_err(|e| io_err(&host, e))?;
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    self.chown(&host, uid, gid)?;
                    fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
                        .map_err(|e| io_err(&host, e))?;
                    self.changed.push(Changed {
                        rel: cur.clone(),
                        recursive: false,
                    });
                }
                Err(e) => return Err(io_err(&host, e)),
            }
        }
        Ok(())
    }

    fn copy_match(
        &mut self,
        source: &str,
        m: &Match,
        dest_clean: &str,
        dest_is_dir: bool,
    ) -> Result<(), ContextError> {
        let src_host = self.req.src_root.join(&m.rel);
        let md = fs::symlink_metadata(&src_host).map_err(|e| io_err(&src_host, e))?;
        let base = m.lexical.last().cloned();
        if let Some(name) = &base {
            if self.exclude.is_excluded(Path::new(name), md.is_dir()) {
                return Ok(());
            }
        }
        let mut target = PathBuf::from(dest_clean);
        if self.req.parents {
            for comp in m.lexical.iter().skip(m.pivot) {
                target.push(comp);
            }
        } else if !md.is_dir() {
            let into_dir = dest_is_dir || {
                let resolved = self.dest_resolve(&target)?;
                fs::metadata(self.req.dest_root.join(resolved)).is_ok_and(|d| d.is_dir())
            };
            if into_dir {
                if let Some(name) = &base {
                    target.push(name);
                }
            }
        }
        let final_rel = self.dest_resolve(&target)?;
        if let Some(parent) = final_rel.parent() {
            self.mkdir_all(parent)?;
        }
        self.copy_entry(
            source,
            &src_host,
            &m.rel,
            Path::new(""),
            &final_rel,
            &md,
            true,
            false,
        )?;
        Ok(())
    }

    fn ignored(&self, ctx_rel: &Path, ex_rel: &Path, is_dir: bool) -> bool {
        self.req
            .ignore
            .is_some_and(|i| i.is_excluded(ctx_rel, is_dir))
            || self.exclude.is_excluded(ex_rel, is_dir)
    }

    fn may_reinclude(&self) -> bool {
        self.req.ignore.is_some_and(IgnoreMatcher::has_exceptions) || self.exclude.has_exceptions()
    }

    /// Copies one entry; returns whether anything was written.
    #[allow(clippy::too_many_arguments)]
    fn copy_entry(
        &mut self,
        source: &str,
        src_host: &Path,
        ctx_rel: &Path,
        ex_rel: &Path,
        dst_rel: &Path,
        md: &Metadata,
        top: bool,
        excluded: bool,
    ) -> Result<bool, ContextError> {
        if self
            .req
            .cancel
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            return Err(ContextError::Cancelled);
        }
        let dst_host = self.req.dest_root.join(dst_rel);
        let ft = md.file_type();
        let existing = match fs::symlink_metadata(&dst_host) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&dst_host, e)),
        };
        let conflict = |reason| ContextError::TypeConflict {
            src: source.to_string(),
            path: Path::new("/").join(dst_rel),
            reason,
        };
        if ft.is_dir() {
            let created = match &existing {
                Some(d) if d.is_dir() => false,
                Some(d) if d.file_type().is_symlink() || self.replace => {
                    fs::remove_file(&dst_host).map_err(|e| io_err(&dst_host, e))?;
                    true
                }
                Some(_) => {
                    return Err(conflict(
                        "cannot overwrite a non-directory with a directory",
                    ))
                }
                None => true,
            };
            if created {
                fs::create_dir(&dst_host).map_err(|e| io_err(&dst_host, e))?;
            }
            let mark = self.changed.len();
            if created || !top {
                self.changed.push(Changed {
                    rel: dst_rel.to_path_buf(),
                    recursive: created,
                });
            }
            let mut wrote = false;
            let names = sorted_names(src_host)?.unwrap_or_default();
            for name in names {
                let child_src = src_host.join(&name);
                let cmd = fs::symlink_metadata(&child_src).map_err(|e| io_err(&child_src, e))?;
                let child_ctx = ctx_rel.join(&name);
                let child_ex = ex_rel.join(&name);
                let is_dir = cmd.is_dir();
                let child_ignored = self.ignored(&child_ctx, &child_ex, is_dir);
                if child_ignored && !(is_dir && self.may_reinclude()) {
                    continue;
                }
                wrote |= self.copy_entry(
                    source,
                    &child_src,
                    &child_ctx,
                    &child_ex,
                    &dst_rel.join(&name),
                    &cmd,
                    false,
                    child_ignored,
                )?;
            }
            let kept = self
                .req
                .ignore
                .is_some_and(|i| i.on_exception_path(ctx_rel));
            if excluded && !wrote && !kept {
                if created {
                    fs::remove_dir(&dst_host).map_err(|e| io_err(&dst_host, e))?;
                }
                self.changed.truncate(mark);
                return Ok(false);
            }
            if created && top {
                // BuildKit creates the directory a directory's contents go into itself (0755,
                // owned per --chown, else root) instead of giving it the source directory's
                // metadata, and leaves --chmod off it.
                let (uid, gid) = self.owner.unwrap_or((0, 0));
                self.chown(&dst_host, uid, gid)?;
                fs::set_permissions(&dst_host, fs::Permissions::from_mode(0o755))
                    .map_err(|e| io_err(&dst_host, e))?;
                self.set_times(&dst_host, md)?;
            } else if !top {
                self.apply_meta(&dst_host, md, true, false)?;
            }
            return Ok(true);
        }
        if existing.as_ref().is_some_and(Metadata::is_dir) {
            if !self.replace {
                return Err(conflict(
                    "cannot overwrite a directory with a non-directory",
                ));
            }
            // `dst_host` is `dest_root` joined with a path resolved inside it, and
            // `remove_dir_all` does not follow the links below it.
            fs::remove_dir_all(&dst_host).map_err(|e| io_err(&dst_host, e))?;
        } else if existing.is_some() {
            fs::remove_file(&dst_host).map_err(|e| io_err(&dst_host, e))?;
        }
        let key = (md.dev(), md.ino());
        if ft.is_file() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&key) {
                let first_host = self.req.dest_root.join(first);
                fs::hard_link(&first_host, &dst_host).map_err(|e| io_err(&dst_host, e))?;
                self.push_leaf(dst_rel);
                return Ok(true);
            }
        }
        if ft.is_file() {
            let mut input = OpenOptions::new()
                .read(true)
                .custom_flags(libc_o_nofollow())
                .open(src_host)
                .map_err(|e| io_err(src_host, e))?;
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc_o_nofollow())
                .open(&dst_host)
                .map_err(|e| io_err(&dst_host, e))?;
            io::copy(&mut input, &mut out).map_err(|e| io_err(&dst_host, e))?;
            drop(out);
            self.apply_meta(&dst_host, md, false, false)?;
            if md.nlink() > 1 {
                self.links.insert(key, dst_rel.to_path_buf());
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(src_host).map_err(|e| io_err(src_host, e))?;
            std::os::unix::fs::symlink(&target, &dst_host).map_err(|e| io_err(&dst_host, e))?;
            let (uid, gid) = self.owner.unwrap_or((md.uid(), md.gid()));
            self.chown(&dst_host, uid, gid)?;
            self.set_times(&dst_host, md)?;
        } else if ft.is_fifo() && self.req.ignore.is_some() {
            // Docker's context transfer does not send fifos, so no build sees them.
            return Ok(false);
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &dst_host,
                rustix::fs::FileType::from_raw_mode(md.mode()),
                rustix::fs::Mode::from_raw_mode(0o600),
                md.rdev(),
            )
            .map_err(|e| io_err(&dst_host, e.into()))?;
            self.apply_meta(&dst_host, md, false, false)?;
        } else {
            // Sockets cannot be copied; Docker skips them as well.
            return Ok(false);
        }
        self.push_leaf(dst_rel);
        Ok(true)
    }

    fn push_leaf(&mut self, rel: &Path) {
        self.changed.push(Changed {
            rel: rel.to_path_buf(),
            recursive: false,
        });
    }

    fn chown(&self, host: &Path, uid: u32, gid: u32) -> Result<(), ContextError> {
        match std::os::unix::fs::lchown(host, Some(uid), Some(gid)) {
            Ok(()) => Ok(()),
            // Without privileges (rootless, no user namespace) ownership
            // cannot be stored; `CopyOutcome::owner` carries it instead.
            Err(e) if !self.is_root && e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
            Err(e) => Err(io_err(host, e)),
        }
    }

    fn apply_meta(
        &self,
        host: &Path,
        md: &Metadata,
        is_dir: bool,
        top_dir: bool,
    ) -> Result<(), ContextError> {
        let (uid, gid) = self.owner.unwrap_or((md.uid(), md.gid()));
        self.chown(host, uid, gid)?;
        let mut mode = md.mode() & 0o7777;
        if let Some(c) = self.chmod.as_ref().filter(|_| !top_dir) {
            mode = c.apply(mode, is_dir);
        }
        fs::set_permissions(host, fs::Permissions::from_mode(mode)).map_err(|e| io_err(host, e))?;
        self.set_times(host, md)
    }

    fn set_times(&self, host: &Path, md: &Metadata) -> Result<(), ContextError> {
        let ts = |sec: i64, nsec: i64| rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        let times = rustix::fs::Timestamps {
            last_access: ts(md.atime(), md.atime_nsec()),
            last_modification: ts(md.mtime(), md.mtime_nsec()),
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            host,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io_err(host, e.into()))
    }
}

fn libc_o_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}
