//! Walks what COPY/ADD sources name in the context and builds their
//! [`SourceManifest`], hashing file contents unless the stat cache vouches
//! for them.

use std::fs::{self, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::copy::{io_err, match_source, sorted_names};
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
    let mut w = Walk {
        root,
        ignore,
        cache,
        counters,
        // Before any file is opened: a write after this instant gets a
        // timestamp at or after it and so cannot be mistaken for clean.
        recorded: cache.map(StatCache::now).unwrap_or_default(),
        buf: vec![0u8; 64 * 1024],
        out: ManifestBuilder::default(),
    };
    let walked = w.sources(sources);
    if let Some(c) = cache {
        c.save_if_dirty();
    }
    walked.map(|()| w.out.finish())
}

struct Walk<'a> {
    root: &'a Path,
    ignore: &'a IgnoreMatcher,
    cache: Option<&'a StatCache>,
    counters: &'a Counters,
    recorded: i64,
    buf: Vec<u8>,
    out: ManifestBuilder,
}

impl Walk<'_> {
    fn sources(&mut self, sources: &[String]) -> Result<(), ContextError> {
        for source in sources {
            let found = match_source(self.root, source, Some(self.ignore), OnEscape::Fail)?;
            if found.is_empty() {
                return Err(ContextError::SourceNotFound {
                    src: source.clone(),
                });
            }
            self.out.begin_source(source);
            for m in found {
                self.out.begin_match(m.lexical.join("/"), m.rel.clone());
                let host = self.root.join(&m.rel);
                let md = fs::symlink_metadata(&host).map_err(|e| io_err(&host, e))?;
                self.tree(&m.rel, &md)?;
            }
        }
        Ok(())
    }

    /// Adds `ctx_rel` (already `lstat`ed as `md`) and, for a directory, every
    /// non-ignored entry below it in sorted order.
    fn tree(&mut self, ctx_rel: &Path, md: &Metadata) -> Result<(), ContextError> {
        let ft = md.file_type();
        let mode = md.mode() & 0o7777;
        if ft.is_file() {
            let entry = self.file(ctx_rel, md)?;
            self.out.push(entry);
        } else if ft.is_symlink() {
            let host = self.root.join(ctx_rel);
            let target = fs::read_link(&host).map_err(|e| io_err(&host, e))?;
            self.out.push(ManifestEntry {
                path: ctx_rel.to_path_buf(),
                mode,
                size: md.len(),
                data: EntryData::Symlink { target },
            });
        } else if ft.is_dir() {
            self.out.push(ManifestEntry {
                path: ctx_rel.to_path_buf(),
                mode,
                size: 0,
                data: EntryData::Directory,
            });
            let host = self.root.join(ctx_rel);
            for name in sorted_names(&host)?.unwrap_or_default() {
                let child = ctx_rel.join(&name);
                let child_host = host.join(&name);
                let cmd = match fs::symlink_metadata(&child_host) {
                    Ok(m) => m,
                    // Vanished since the listing: only an error if the build
                    // would have needed it.
                    Err(_) if self.ignore.is_excluded(&child, false) => continue,
                    Err(e) => return Err(io_err(&child_host, e)),
                };
                let is_dir = cmd.is_dir();
                // An excluded directory may hold `!`-re-included files.
                if self.ignore.is_excluded(&child, is_dir)
                    && !(is_dir && self.ignore.has_exceptions())
                {
                    continue;
                }
                self.tree(&child, &cmd)?;
            }
        } else {
            self.out.push(ManifestEntry {
                path: ctx_rel.to_path_buf(),
                mode,
                size: md.len(),
                data: EntryData::Other,
            });
        }
        Ok(())
    }

    fn file(&mut self, ctx_rel: &Path, md: &Metadata) -> Result<ManifestEntry, ContextError> {
        let rel = ctx_rel.as_os_str().as_bytes();
        if let Some(cache) = self.cache {
            if let Some(digest) = cache.lookup(rel, &StatKey::of(md)) {
                self.counters.files_reused.fetch_add(1, Ordering::Relaxed);
                return Ok(ManifestEntry {
                    path: ctx_rel.to_path_buf(),
                    mode: md.mode() & 0o7777,
                    size: md.len(),
                    data: EntryData::File { digest },
                });
            }
        }
        let host = self.root.join(ctx_rel);
        let err = |e| io_err(&host, e);
        // O_NOFOLLOW: a file swapped for a link since the lstat must not make
        // us read outside the context; O_NONBLOCK: nor a fifo hang the build.
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(flags.bits() as i32)
            .open(&host)
            .map_err(err)?;
        // The key is what was actually opened, not the earlier lstat.
        let st = f.metadata().map_err(err)?;
        if !st.is_file() {
            return Err(err(io::Error::other(
                "replaced by a non-regular file while the context was read",
            )));
        }
        let mut h = Sha256::new();
        let mut total = 0u64;
        loop {
            let n = match f.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err(e)),
            };
            h.update(self.buf.get(..n).unwrap_or_default());
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
        Ok(ManifestEntry {
            path: ctx_rel.to_path_buf(),
            mode: st.mode() & 0o7777,
            size: st.len(),
            data: EntryData::File { digest },
        })
    }
}
