//! A COPY's layer computed from its sources before anything is written, so a COPY whose layer is
//! already in the store (a `--no-cache` rebuild, the same files copied by another build) writes
//! nothing. Without it such a COPY wrote every file into a fresh upper directory, hashed them
//! again at commit and then deleted them all, because the committed tree of that layer already
//! existed: on ext4 mounted with `discard` the deletion alone took most of the step (5,000 files,
//! 131 MB: about 10 of 12 s on the shared benchmark machine).
//!
//! The plan covers the plain case only and says `None` for everything else, which then takes
//! the copy-and-commit path: one context source naming a directory, no `--from`, heredoc, ADD,
//! `--parents`, `--exclude` or `--link`, no `!` exceptions in `.dockerignore`, the overlay
//! snapshotter as root without an id map, a destination whose directories are plain directories
//! without xattrs and that is empty in every lower layer, and sources without hard links or
//! device nodes. In that case the upper directory the copy would leave holds exactly: the
//! destination and its ancestors (copied up with the parent's mode and owner, or created 0755 with
//! the copy's owner; all stamped with the fixed directory time), and the source tree with the
//! owner, mode (after `--chmod`) and mtime the copy gives each entry. The entries are written
//! with [`rbuild_layer::LayerWriter::append_entry`], the same header code the commit uses, in
//! the commit's order (depth first, names sorted), so the tar and its diff id are the same bytes.
//! When the layer is not in the store, the same walk writes the copy ([`Plan::write`]): each
//! entry is created in the view and then hashed, so the commit adopts the upper directory as
//! the layer's tree without walking and reading it again.
//! `builder-cli/tests/copyplan.rs` checks that the plan finds, and the writer makes, exactly the
//! layer the copy-and-commit path makes.
//!
//! Hashing every source costs a read of the whole copy, wasted when the layer turns out to be
//! new. So the contents are hashed only when an index says they are worth it: after a plain
//! COPY commits, the engine notes its diff id under a digest of the planned entries' metadata
//! (`<store>/copyplan/<key>`, see [`Plan::index_key`]), and the next plain COPY of entries with
//! the same metadata hashes the contents if that layer is still in the store. The note is a hint
//! only (a stale or wrong one costs one extra read); the content hash decides.

use std::fs::{self, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rbuild_layer::{EntryMeta, EntryMetaKind, LayerInfo, LayerWriter, WriteOptions};

use crate::fsutil::timestamps;
use crate::BuildError;

/// What the plan needs to know about the COPY and the snapshot it would write into.
pub(crate) struct Plan<'a> {
    /// The build context.
    pub context: &'a rbuild_context::Context,
    /// The one source, as written.
    pub source: &'a str,
    /// The destination, absolute and cleaned.
    pub dest: &'a Path,
    /// `--chown`, resolved; the context's files are 0:0 otherwise.
    pub chown: Option<(u32, u32)>,
    /// `--chmod`, as written.
    pub chmod: Option<&'a str>,
    /// The merged view of the parent (mounted) and its lower directories, top first.
    pub merged: &'a Path,
    pub lowers: &'a [PathBuf],
    /// The time the destination's directories are stamped with.
    pub dir_time: i64,
    pub cancel: &'a AtomicBool,
}

/// Why a plan stopped: it does not apply (take the copy path), or it failed.
pub(crate) enum Stop {
    NotPlain,
    Failed(BuildError),
}

impl From<BuildError> for Stop {
    fn from(e: BuildError) -> Stop {
        Stop::Failed(e)
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Stop + '_ {
    move |e| Stop::Failed(BuildError::io(path, e))
}

fn layer_err(e: rbuild_layer::LayerError) -> Stop {
    Stop::Failed(BuildError::Task(format!("copy: {e}")))
}

/// What a lower directory holds at a path, looked up without following any symlink: a layer's
/// symlink (say `/app -> /etc`, hidden by a directory of a higher layer) must not make the plan
/// look at the host's files.
#[derive(PartialEq, Eq)]
enum Lower {
    Missing,
    EmptyDir,
    /// Anything else, including a path through a symlink or a non-directory.
    Other,
}

fn probe_lower(lower: &Path, rel: &Path) -> Lower {
    use rustix::fs::{openat, statat, AtFlags, FileType, Mode, OFlags, CWD};
    let walk = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(mut dir) = openat(CWD, lower, walk, Mode::empty()) else {
        return Lower::Other;
    };
    let comps: Vec<_> = rel.components().collect();
    let Some((last, parents)) = comps.split_last() else {
        return Lower::Other;
    };
    for c in parents {
        match openat(&dir, c.as_os_str(), walk, Mode::empty()) {
            Ok(fd) => dir = fd,
            Err(rustix::io::Errno::NOENT) => return Lower::Missing,
            Err(_) => return Lower::Other,
        }
    }
    let st = match statat(&dir, last.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Lower::Missing,
        Err(_) => return Lower::Other,
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Lower::Other;
    }
    let read = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = openat(&dir, last.as_os_str(), read, Mode::empty()) else {
        return Lower::Other;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&fd) else {
        return Lower::Other;
    };
    for e in entries {
        match e {
            Ok(e) if matches!(e.file_name().to_bytes(), b"." | b"..") => {}
            _ => return Lower::Other,
        }
    }
    Lower::EmptyDir
}

/// Whether `path` exists in any lower directory (a whiteout or opaque directory there would make
/// the copy's directory opaque, which the plan does not model).
fn in_any_lower(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers.iter().any(|l| probe_lower(l, rel) != Lower::Missing)
}

/// Whether `rel` is missing or an empty directory in every lower directory.
fn empty_in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    lowers
        .iter()
        .all(|l| matches!(probe_lower(l, rel), Lower::Missing | Lower::EmptyDir))
}

impl<'a> Plan<'a> {
    /// The layer the copy would commit, hashed without storing it; `NotPlain` when the COPY is
    /// not the plain case described in the module docs.
    pub(crate) fn layer(&self, opts: &WriteOptions) -> Result<LayerInfo, Stop> {
        let w = LayerWriter::new(std::io::sink(), opts.clone());
        let w = self.walk(opts, w)?.w;
        w.finish().map(|(_, info)| info).map_err(layer_err)
    }

    /// Writes the copy into the view (`merged`) and computes its layer in the same walk, for a
    /// COPY whose layer is not in the store. The copy-and-commit path walks twice: the copy,
    /// then the commit, which lists the upper directory, compares it with the lowers and opens
    /// and reads every file again to hash the layer. Here each entry is created through an open
    /// handle on its parent (never a path resolved again), its data moved by the kernel
    /// (`copy_file_range`) and hashed from the page cache through the same handle. The result is
    /// the upper directory the copy-and-commit path leaves, which the caller commits as the tree
    /// of the returned layer without reading it again
    /// ([`rbuild_snapshot::Snapshotter::commit_written`]).
    pub(crate) fn write(&self, opts: &WriteOptions) -> Result<LayerInfo, Stop> {
        use rustix::fs::{Mode, OFlags};
        let root = rustix::fs::open(
            self.merged,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(self.merged))?;
        let w = Writer {
            layer: LayerWriter::new(std::io::sink(), opts.clone()),
            root: self.merged,
            // The copy stamps the view's root as it stamps the destination's ancestors.
            dirs: vec![(root, timestamps((self.dir_time, 0), (self.dir_time, 0)))],
        };
        self.walk(opts, w)?.w.finish()
    }

    /// A digest of the planned entries' metadata (names, kinds, modes, owners, mtimes, sizes),
    /// read without opening a file: the key under which the engine remembers the layer a copy of
    /// these entries made. A remembered layer still in the store is only a hint that hashing the
    /// contents ([`Plan::layer`]) is worth it; what decides is that hash. Without the hint, a COPY
    /// of new content would read and hash every source once more for nothing.
    pub(crate) fn index_key(&self, opts: &WriteOptions) -> Result<rbuild_digest::Digest, Stop> {
        let mut h = rbuild_digest::Hasher::new();
        h.update(b"rbuild copyplan index v1\0");
        h.update(&opts.source_date_epoch.unwrap_or(i64::MIN).to_le_bytes());
        h.update(&self.dir_time.to_le_bytes());
        Ok(self.walk(opts, h)?.w.finish())
    }

    fn walk<'p, S: Sink>(&'p self, opts: &WriteOptions, mut w: S) -> Result<Walk<'p, 'a, S>, Stop> {
        if opts.id_map.is_some() || !opts.owner_overrides.is_empty() {
            return Err(Stop::NotPlain);
        }
        if self.context.ignore().has_exceptions() {
            return Err(Stop::NotPlain);
        }
        let chmod = match self.chmod {
            Some(s) => Some(rbuild_context::chmod::parse(s).map_err(|_| Stop::NotPlain)?),
            None => None,
        };
        let matches = self
            .context
            .expand_source(self.source)
            .map_err(|_| Stop::NotPlain)?;
        let [m] = matches.as_slice() else {
            return Err(Stop::NotPlain);
        };
        let src_md = fs::symlink_metadata(&m.host).map_err(|_| Stop::NotPlain)?;
        if !src_md.is_dir() {
            return Err(Stop::NotPlain);
        }
        let ctx_rel = m
            .host
            .strip_prefix(self.context.root())
            .map_err(|_| Stop::NotPlain)?
            .to_path_buf();
        let (uid, gid) = self.chown.unwrap_or((0, 0));

        // The destination and its ancestors, stamped.
        let mut rel = PathBuf::new();
        let mut created = false;
        let comps: Vec<&std::ffi::OsStr> = self
            .dest
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        if comps.is_empty()
            || self
                .dest
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(Stop::NotPlain);
        }
        for n in comps {
            rel.push(n);
            let meta = if created {
                None
            } else {
                match fs::symlink_metadata(self.merged.join(&rel)) {
                    Ok(md) if md.is_dir() => Some(md),
                    Ok(_) => return Err(Stop::NotPlain),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(io(&self.merged.join(&rel))(e)),
                }
            };
            let entry = match meta {
                Some(md) => {
                    let xattrs = rbuild_layer::layer_xattrs(&self.merged.join(&rel))
                        .map_err(io(&self.merged.join(&rel)))?;
                    if !xattrs.is_empty() {
                        return Err(Stop::NotPlain);
                    }
                    EntryMeta {
                        rel: rel.clone(),
                        kind: EntryMetaKind::Dir,
                        mode: md.mode() & 0o7777,
                        uid: md.uid(),
                        gid: md.gid(),
                        mtime: self.dir_time,
                        size: 0,
                        xattrs: Vec::new(),
                    }
                }
                None => {
                    if !created && in_any_lower(self.lowers, &rel) {
                        return Err(Stop::NotPlain);
                    }
                    created = true;
                    EntryMeta {
                        rel: rel.clone(),
                        kind: EntryMetaKind::Dir,
                        mode: 0o755,
                        uid,
                        gid,
                        mtime: self.dir_time,
                        size: 0,
                        xattrs: Vec::new(),
                    }
                }
            };
            w.entry(&entry, None)?;
        }
        if !created && !empty_in_lowers(self.lowers, &rel) {
            return Err(Stop::NotPlain);
        }
        let mut walk = Walk {
            plan: self,
            chmod,
            uid,
            gid,
            w,
        };
        walk.dir(&m.host, &ctx_rel, &rel)?;
        Ok(walk)
    }
}

/// Where the planned entries go: the layer writer (the diff id), or a hash of their metadata
/// alone (the index key, see [`Plan::index_key`]).
trait Sink {
    /// One entry, with where it comes from in the context (`None` for the destination and its
    /// ancestors, which the copy creates or stamps).
    fn entry(&mut self, meta: &EntryMeta, src: Option<Src<'_>>) -> Result<(), Stop>;
}

/// A planned entry's source: its path in the context (a file's data) and its metadata (the
/// times the copy keeps).
#[derive(Clone, Copy)]
struct Src<'s> {
    path: &'s Path,
    md: &'s fs::Metadata,
}

impl Sink for LayerWriter<std::io::Sink> {
    fn entry(&mut self, meta: &EntryMeta, src: Option<Src<'_>>) -> Result<(), Stop> {
        let data = src
            .filter(|_| matches!(meta.kind, EntryMetaKind::File))
            .map(|s| s.path);
        let file = match data {
            Some(p) => Some((
                p,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(p)
                    .map_err(io(p))?,
            )),
            None => None,
        };
        self.append_entry(meta, file).map_err(layer_err)
    }
}

impl Sink for rbuild_digest::Hasher {
    fn entry(&mut self, meta: &EntryMeta, _src: Option<Src<'_>>) -> Result<(), Stop> {
        let rel = meta.rel.as_os_str().as_bytes();
        let link: &[u8] = match &meta.kind {
            EntryMetaKind::Symlink(t) => t,
            _ => b"",
        };
        let kind = match meta.kind {
            EntryMetaKind::Dir => b'd',
            EntryMetaKind::File => b'f',
            EntryMetaKind::Symlink(_) => b'l',
        };
        self.update(&(rel.len() as u64).to_le_bytes());
        self.update(rel);
        self.update(&[kind]);
        self.update(&(link.len() as u64).to_le_bytes());
        self.update(link);
        for n in [
            u64::from(meta.mode),
            u64::from(meta.uid),
            u64::from(meta.gid),
            meta.mtime as u64,
            meta.size,
        ] {
            self.update(&n.to_le_bytes());
        }
        Ok(())
    }
}

fn errno(path: &Path) -> impl Fn(rustix::io::Errno) -> Stop + '_ {
    move |e| Stop::Failed(BuildError::io(path, e.into()))
}

/// The sink of [`Plan::write`]: each entry created in the view, then hashed into the layer.
/// Owners and modes are what the plan says (the copy's, after `--chown` and `--chmod`), times
/// the source's (to the nanosecond, as the copy keeps them); the destination and its ancestors
/// are created 0755 with the copy's owner where missing and, like the view's root, stamped with
/// the plan's directory time.
struct Writer<'r> {
    layer: LayerWriter<std::io::Sink>,
    root: &'r Path,
    /// The open directories along the current path, the view's root first, each with the times
    /// it gets once its last entry is written (an entry written into it changes its mtime).
    dirs: Vec<(rustix::fd::OwnedFd, rustix::fs::Timestamps)>,
}

impl Writer<'_> {
    /// Stamps and closes the open directories but the first `keep` (the root, then one per
    /// level: an entry at depth `n` keeps `n`, its parent last).
    fn close_to(&mut self, keep: usize) -> Result<(), Stop> {
        while self.dirs.len() > keep {
            if let Some((fd, times)) = self.dirs.pop() {
                rustix::fs::futimens(&fd, &times).map_err(errno(self.root))?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<LayerInfo, Stop> {
        self.close_to(0)?;
        self.layer.finish().map(|(_, info)| info).map_err(layer_err)
    }
}

impl Sink for Writer<'_> {
    fn entry(&mut self, meta: &EntryMeta, src: Option<Src<'_>>) -> Result<(), Stop> {
        use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
        use std::io::{Seek, SeekFrom};
        let depth = meta.rel.components().count();
        let name = meta.rel.file_name().ok_or(Stop::NotPlain)?.to_os_string();
        self.close_to(depth)?;
        let full = self.root.join(&meta.rel);
        let e = errno(&full);
        let Some((parent, _)) = self.dirs.last().filter(|_| self.dirs.len() == depth) else {
            return Err(Stop::NotPlain);
        };
        let owner = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        let mode = Mode::from_raw_mode(meta.mode);
        let times = match src {
            Some(s) => timestamps(
                (s.md.atime(), s.md.atime_nsec()),
                (s.md.mtime(), s.md.mtime_nsec()),
            ),
            None => timestamps((meta.mtime, 0), (meta.mtime, 0)),
        };
        let open_dir = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match &meta.kind {
            EntryMetaKind::Dir => {
                // The destination's ancestors that exist are kept as they are (the plan read
                // their owner and mode); everything else is new.
                let existing = match src {
                    Some(_) => None,
                    None => match rustix::fs::openat(parent, &name, open_dir, Mode::empty()) {
                        Ok(fd) => Some(fd),
                        Err(rustix::io::Errno::NOENT) => None,
                        Err(err) => return Err(e(err)),
                    },
                };
                let fd = match existing {
                    Some(fd) => fd,
                    None => {
                        rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o700))
                            .map_err(&e)?;
                        let fd = rustix::fs::openat(parent, &name, open_dir, Mode::empty())
                            .map_err(&e)?;
                        rustix::fs::fchown(&fd, owner.0, owner.1).map_err(&e)?;
                        rustix::fs::fchmod(&fd, mode).map_err(&e)?;
                        fd
                    }
                };
                self.layer.append_entry(meta, None).map_err(layer_err)?;
                self.dirs.push((fd, times));
            }
            EntryMetaKind::File => {
                let s = src.ok_or(Stop::NotPlain)?;
                let mut input = OpenOptions::new()
                    .read(true)
                    .custom_flags(OFlags::NOFOLLOW.bits() as i32)
                    .open(s.path)
                    .map_err(io(s.path))?;
                let fd = rustix::fs::openat(
                    parent,
                    &name,
                    OFlags::RDWR
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(&e)?;
                let mut out = fs::File::from(fd);
                let copied = std::io::copy(&mut input, &mut out).map_err(io(&full))?;
                if copied != meta.size {
                    // The layer would list the size the plan saw and the tree hold another.
                    return Err(Stop::Failed(BuildError::Task(format!(
                        "copy: {} changed while it was copied",
                        s.path.display()
                    ))));
                }
                // Owner first: a chown clears the setuid and setgid bits the mode may set.
                rustix::fs::fchown(&out, owner.0, owner.1).map_err(&e)?;
                rustix::fs::fchmod(&out, mode).map_err(&e)?;
                rustix::fs::futimens(&out, &times).map_err(&e)?;
                out.seek(SeekFrom::Start(0)).map_err(io(&full))?;
                self.layer
                    .append_entry(meta, Some((&full, out)))
                    .map_err(layer_err)?;
            }
            EntryMetaKind::Symlink(target) => {
                let target = std::ffi::OsStr::from_bytes(target);
                rustix::fs::symlinkat(target, parent, &name).map_err(&e)?;
                rustix::fs::chownat(parent, &name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(&e)?;
                rustix::fs::utimensat(parent, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(&e)?;
                self.layer.append_entry(meta, None).map_err(layer_err)?;
            }
        }
        Ok(())
    }
}

struct Walk<'p, 'a, S> {
    plan: &'p Plan<'a>,
    chmod: Option<rbuild_context::chmod::Chmod>,
    uid: u32,
    gid: u32,
    w: S,
}

impl<S: Sink> Walk<'_, '_, S> {
    /// The entries below the source directory `src` (`ctx` relative to the context root), named
    /// `dst` in the layer, in the order the copy and the commit walk them.
    fn dir(&mut self, src: &Path, ctx: &Path, dst: &Path) -> Result<(), Stop> {
        let mut names = Vec::new();
        for ent in fs::read_dir(src).map_err(io(src))? {
            names.push(ent.map_err(io(src))?.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            if self.plan.cancel.load(Ordering::Relaxed) {
                return Err(Stop::Failed(BuildError::Cancelled));
            }
            let child = src.join(&name);
            let md = fs::symlink_metadata(&child).map_err(io(&child))?;
            let child_ctx = ctx.join(&name);
            let ft = md.file_type();
            if self
                .plan
                .context
                .ignore()
                .is_excluded(&child_ctx, ft.is_dir())
            {
                continue;
            }
            let rel = dst.join(&name);
            let src = Src {
                path: &child,
                md: &md,
            };
            let mut entry = EntryMeta {
                rel: rel.clone(),
                kind: EntryMetaKind::File,
                mode: md.mode() & 0o7777,
                uid: self.uid,
                gid: self.gid,
                mtime: md.mtime(),
                size: 0,
                xattrs: Vec::new(),
            };
            if ft.is_dir() {
                entry.kind = EntryMetaKind::Dir;
                if let Some(c) = &self.chmod {
                    entry.mode = c.apply(entry.mode, true);
                }
                self.w.entry(&entry, Some(src))?;
                self.dir(&child, &child_ctx, &rel)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    return Err(Stop::NotPlain);
                }
                if let Some(c) = &self.chmod {
                    entry.mode = c.apply(entry.mode, false);
                }
                entry.size = md.len();
                self.w.entry(&entry, Some(src))?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&child).map_err(io(&child))?;
                entry.kind = EntryMetaKind::Symlink(target.into_os_string().into_encoded_bytes());
                // A new symlink's mode; --chmod is not applied to links.
                entry.mode = 0o777;
                self.w.entry(&entry, Some(src))?;
            } else if ft.is_fifo_or_socket() {
                // The copy leaves out a context's fifos and sockets.
                continue;
            } else {
                return Err(Stop::NotPlain);
            }
        }
        Ok(())
    }
}

trait FifoOrSocket {
    fn is_fifo_or_socket(&self) -> bool;
}

impl FifoOrSocket for fs::FileType {
    fn is_fifo_or_socket(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo() || self.is_socket()
    }
}
