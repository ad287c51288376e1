//! Walks what COPY/ADD sources name in the context and builds their
//! [`SourceManifest`], hashing file contents unless the stat cache vouches
//! for them.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rustix::fs::{
    fstat, openat, readlinkat, statat, AtFlags, Dir, FileType, Mode, OFlags, Stat, CWD,
};
use rustix::io::Errno;

use sha2::{Digest, Sha256};

use crate::copy::{io_err, match_source};
use crate::ignore::IgnoreMatcher;
use crate::manifest::{EntryData, ManifestBuilder, ManifestEntry, SourceManifest};
use crate::resolve::OnEscape;
use crate::statcache::{StatCache, StatKey};
use crate::ContextError;

/// Work done by one context's digests, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) files_hashed: AtomicU64,
    pub(crate) bytes_hashed: AtomicU64,
    pub(crate) files_reused: AtomicU64,
}

pub(crate) fn source_manifest(
    root: &Path,
    ignore: &IgnoreMatcher,
    sources: &[String],
    cache: Option<&StatCache>,
    counters: &Counters,
) -> Result<SourceManifest, ContextError> {
    let w = Walk {
        root,
        ignore,
        cache,
        counters,
        // Before any file is opened: a write after this instant gets a
        // timestamp at or after it and so cannot be mistaken for clean.
        recorded: cache.map(StatCache::now).unwrap_or_default(),
        threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS)),
    };
    let mut out = ManifestBuilder::default();
    let walked = w.sources(sources, &mut out);
    if let Some(c) = cache {
        c.save_if_dirty();
    }
    walked.map(|()| out.finish())
}

/// More walkers than this only contend on the stat cache and the dcache.
const MAX_THREADS: usize = 4;
const BUF_SIZE: usize = 64 * 1024;

/// What every walker thread shares.
struct Walk<'a> {
    root: &'a Path,
    ignore: &'a IgnoreMatcher,
    cache: Option<&'a StatCache>,
    counters: &'a Counters,
    recorded: i64,
    threads: usize,
}

/// A directory child after the first pass: leaves are complete, directories
/// are walked in the second pass (when this directory's fd is closed again).
enum Child {
    Leaf(ManifestEntry),
    Dir { path: PathBuf, mode: u32 },
}

/// A subtree walked by a helper thread, or why it failed.
type Subtree = Option<Result<Vec<ManifestEntry>, ContextError>>;

impl Walk<'_> {
    fn sources(&self, sources: &[String], out: &mut ManifestBuilder) -> Result<(), ContextError> {
        let mut buf = vec![0u8; BUF_SIZE];
        for source in sources {
            let found = match_source(self.root, source, Some(self.ignore), OnEscape::Fail)?;
            if found.is_empty() {
                return Err(ContextError::SourceNotFound {
                    src: source.clone(),
                });
            }
            out.begin_source(source);
            for m in found {
                out.begin_match(m.lexical.join("/"), m.rel.clone());
                let host = self.root.join(&m.rel);
                let st = statat(CWD, &host, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err(&host, e.into()))?;
                let mut entries = Vec::new();
                match self.entry(CWD, &host, m.rel, &st, &mut buf)? {
                    Child::Leaf(e) => entries.push(e),
                    Child::Dir { path, mode } => {
                        self.dir(path, mode, &mut entries, &mut buf, self.threads > 1)?
                    }
                }
                out.extend(entries);
            }
        }
        Ok(())
    }

    /// Appends the directory `ctx_rel` and everything non-ignored below it
    /// to `out` in pre-order, names sorted bytewise.
    ///
    /// Children are `stat`ed, read and hashed relative to the directory's fd
    /// (one path component per lookup instead of the whole path, which is
    /// most of the cost of a warm walk), and that fd is closed before the
    /// subdirectories are walked, so depth never runs out of descriptors.
    /// The first directory with several subdirectories hands them to helper
    /// threads: a warm walk is all `stat` calls, which scale with cores.
    fn dir(
        &self,
        ctx_rel: PathBuf,
        mode: u32,
        out: &mut Vec<ManifestEntry>,
        buf: &mut [u8],
        parallel: bool,
    ) -> Result<(), ContextError> {
        let host = self.root.join(&ctx_rel);
        let children = self.children(&host, &ctx_rel, buf)?;
        out.push(ManifestEntry {
            path: ctx_rel,
            mode,
            size: 0,
            data: EntryData::Directory,
        });
        let subdirs = children
            .iter()
            .filter(|c| matches!(c, Child::Dir { .. }))
            .count();
        if !parallel || subdirs < 2 {
            for child in children {
                match child {
                    Child::Leaf(e) => out.push(e),
                    Child::Dir { path, mode } => self.dir(path, mode, out, buf, parallel)?,
                }
            }
            return Ok(());
        }
        let mut dirs = Vec::with_capacity(subdirs);
        let mut order = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Child::Leaf(e) => order.push(Some(e)),
                Child::Dir { path, mode } => {
                    dirs.push((path, mode));
                    order.push(None);
                }
            }
        }
        let results: Vec<Mutex<Subtree>> = dirs.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let work = |buf: &mut [u8]| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (Some((path, mode)), Some(slot)) = (dirs.get(i), results.get(i)) else {
                break;
            };
            let mut v = Vec::new();
            let r = self
                .dir(path.clone(), *mode, &mut v, buf, false)
                .map(|()| v);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        };
        std::thread::scope(|s| {
            for _ in 1..self.threads.min(subdirs) {
                s.spawn(|| work(&mut vec![0u8; BUF_SIZE]));
            }
            work(buf);
        });
        let mut results = results.into_iter();
        for leaf in order {
            match leaf {
                Some(e) => out.push(e),
                None => {
                    let sub = results
                        .next()
                        .and_then(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()));
                    match sub {
                        Some(r) => out.extend(r?),
                        // Unreachable: every index below `dirs.len()` is taken.
                        None => return Err(io_err(&host, io::Error::other("subtree not walked"))),
                    }
                }
            }
        }
        Ok(())
    }

    /// First pass over a directory: every non-ignored child, `lstat`ed and,
    /// unless it is a directory, complete.
    fn children(
        &self,
        host: &Path,
        ctx_rel: &Path,
        buf: &mut [u8],
    ) -> Result<Vec<Child>, ContextError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match openat(CWD, host, flags, Mode::empty()) {
            Ok(fd) => fd,
            // Replaced since its lstat: as before, it reads as empty.
            Err(e) if e == Errno::NOENT || e == Errno::NOTDIR || e == Errno::LOOP => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(io_err(host, e.into())),
        };
        let mut names = Vec::new();
        let mut dir = Dir::read_from(&fd).map_err(|e| io_err(host, e.into()))?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| io_err(host, e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        }
        drop(dir);
        names.sort();
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child = ctx_rel.join(&name);
            let st = match statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Vanished since the listing: only an error if the build
                // would have needed it.
                Err(_) if self.ignore.is_excluded(&child, false) => continue,
                Err(e) => return Err(io_err(&host.join(&name), e.into())),
            };
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            // An excluded directory may hold `!`-re-included files.
            if self.ignore.is_excluded(&child, is_dir) && !(is_dir && self.ignore.has_exceptions())
            {
                continue;
            }
            children.push(self.entry(fd.as_fd(), Path::new(&name), child, &st, buf)?);
        }
        Ok(children)
    }

    /// The entry for `ctx_rel`, named `at` relative to `dirfd` and `lstat`ed
    /// as `st`; directories are left for [`Walk::dir`].
    fn entry(
        &self,
        dirfd: BorrowedFd<'_>,
        at: &Path,
        ctx_rel: PathBuf,
        st: &Stat,
        buf: &mut [u8],
    ) -> Result<Child, ContextError> {
        let mode = st.st_mode & 0o7777;
        let size = u64::try_from(st.st_size).unwrap_or(0);
        let data = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                return Ok(Child::Dir {
                    path: ctx_rel,
                    mode,
                })
            }
            FileType::RegularFile => {
                return self.file(dirfd, at, ctx_rel, st, buf).map(Child::Leaf)
            }
            FileType::Symlink => {
                let target = readlinkat(dirfd, at, Vec::new())
                    .map_err(|e| io_err(&self.root.join(&ctx_rel), e.into()))?;
                EntryData::Symlink {
                    target: PathBuf::from(OsString::from_vec(target.into_bytes())),
                }
            }
            _ => EntryData::Other,
        };
        Ok(Child::Leaf(ManifestEntry {
            path: ctx_rel,
            mode,
            size,
            data,
        }))
    }

    fn file(
        &self,
        dirfd: BorrowedFd<'_>,
        at: &Path,
        ctx_rel: PathBuf,
        st: &Stat,
        buf: &mut [u8],
    ) -> Result<ManifestEntry, ContextError> {
        let rel = ctx_rel.as_os_str().as_bytes();
        if let Some(cache) = self.cache {
            if let Some(digest) = cache.lookup(rel, &StatKey::of(st)) {
                self.counters.files_reused.fetch_add(1, Ordering::Relaxed);
                return Ok(file_entry(ctx_rel, st, digest));
            }
        }
        let host = self.root.join(&ctx_rel);
        let err = |e: io::Error| io_err(&host, e);
        // NOFOLLOW: a file swapped for a link since the lstat must not make
        // us read outside the context; NONBLOCK: nor a fifo hang the build.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = openat(dirfd, at, flags, Mode::empty()).map_err(|e| err(e.into()))?;
        // The key is what was actually opened, not the earlier lstat.
        let st = fstat(&fd).map_err(|e| err(e.into()))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(err(io::Error::other(
                "replaced by a non-regular file while the context was read",
            )));
        }
        let mut f = File::from(fd);
        let mut h = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = match f.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            h.update(buf.get(..n).unwrap_or_default());
            total += n as u64;
        }
        let digest: [u8; 32] = h.finalize().into();
        self.counters.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_hashed
            .fetch_add(total, Ordering::Relaxed);
        if let Some(cache) = self.cache {
            cache.record(rel, StatKey::of(&st), self.recorded, digest);
        }
        Ok(file_entry(ctx_rel, &st, digest))
    }
}

fn file_entry(ctx_rel: PathBuf, st: &Stat, digest: [u8; 32]) -> ManifestEntry {
    ManifestEntry {
        path: ctx_rel,
        mode: st.st_mode & 0o7777,
        size: u64::try_from(st.st_size).unwrap_or(0),
        data: EntryData::File { digest },
    }
}
