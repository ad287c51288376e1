//! The per-context stat cache: which content digest a regular file had when
//! its `lstat` data looked exactly as it does now, so a rebuild hashes only
//! what changed.
//!
//! # Racy timestamps
//!
//! Like git's index (see git's "racy git" notes), an entry is only as good as
//! the timestamps it was recorded with: a file rewritten with the same size
//! within the same timestamp tick as it was hashed keeps identical stat data.
//! Every entry therefore stores the time it was recorded (whole seconds of
//! `CLOCK_REALTIME_COARSE`, the clock filesystems stamp inodes with, read
//! before the file was opened), and it is trusted only while the file's mtime
//! and ctime are strictly older than that second. A racily clean entry is
//! re-hashed on the next use and recorded again with a later time, after
//! which it is trusted. Whole seconds make the rule hold on filesystems that
//! only store seconds, at the price of one extra hash of files touched in the
//! second before a build.
//!
//! # File format
//!
//! Little-endian: `"RBSTATC\0"`, `u32` version (1), `u32` zero, `u64` entry
//! count, then per entry `u32` path length, the path (relative to the context,
//! raw bytes), `u64` dev, `u64` ino, `u64` size, `i64` mtime seconds, `u32`
//! mtime nanoseconds, `i64` ctime seconds, `u32` ctime nanoseconds, `u32`
//! st_mode, `i64` recorded-at seconds, 32-byte sha256 of the content; then the
//! sha256 of everything before it. A file that is short, long, of another
//! version or whose trailing sha256 does not match (a torn write after a
//! crash: the file is replaced by rename but not fsynced) is ignored whole.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"RBSTATC\0";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;
/// Bytes of an entry after its path.
const FIXED: usize = 8 * 3 + 12 + 12 + 4 + 8 + 32;
const TRAILER: usize = 32;
/// Temp files of a crashed writer older than this are removed by the next save.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// The `lstat` fields that must all match for a cached digest to be reused:
/// device and inode catch a file replaced by rename, ctime catches content
/// restored under an old mtime (`touch -r`, `tar`), mode a type change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_sec: i64,
    mtime_nsec: u32,
    ctime_sec: i64,
    ctime_nsec: u32,
    mode: u32,
}

impl StatKey {
    // `from`/`try_from` rather than `as` or nothing: the field types differ
    // per architecture (`c_ulong` vs `u64`...), and this compiles on all.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn of(st: &rustix::fs::Stat) -> StatKey {
        StatKey {
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_sec: i64::from(st.st_mtime),
            mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            ctime_sec: i64::from(st.st_ctime),
            ctime_nsec: u32::try_from(st.st_ctime_nsec).unwrap_or(0),
            mode: u32::from(st.st_mode),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: StatKey,
    /// Coarse wall-clock second at which the content was read.
    recorded: i64,
    digest: [u8; 32],
    /// Looked up or recorded by this process; unseen entries are checked for
    /// deleted files before a save.
    seen: bool,
}

impl Entry {
    /// Racily clean: the file may have changed within the tick it was hashed
    /// in without its stat data showing it.
    fn racy(&self) -> bool {
        self.key.mtime_sec >= self.recorded || self.key.ctime_sec >= self.recorded
    }
}

/// Context paths hashed a word at a time: SipHash's DoS resistance buys
/// nothing for keys read from the user's own tree, and hashing was a tenth of
/// a warm walk. Each word (the last one zero-padded, the length mixed in
/// first) is multiplied and folded (`x ^ x >> 32`) before the next: FxHash's
/// plain multiply, with the tail fed a byte at a time, gave 100,000 paths like
/// `d042/f0123.txt` only 75,710 distinct hashes, so a quarter of the files of
/// such a context lost their entry and were read again by every no-op rebuild.
#[derive(Default, Clone, Copy)]
struct PathHasher(u64);

impl Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mix = |x: u64| {
            let x = x.wrapping_mul(K);
            x ^ (x >> 32)
        };
        let mut h = self.0 ^ (bytes.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = mix(h ^ u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(rest) {
                *d = *s;
            }
            h = mix(h ^ u64::from_le_bytes(w));
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        // murmur3's finaliser: every input bit reaches the high bits the
        // table uses for its control bytes.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

fn path_hash(path: &[u8]) -> u64 {
    let mut h = PathHasher::default();
    h.write(path);
    h.finish()
}

/// Passes through keys that are already [`path_hash`]es.
#[derive(Default, Clone, Copy)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = PathHasher(self.0);
        h.write(bytes);
        self.0 = h.finish();
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Entries by context path, built for loading 100k of them in a few ms: all
/// paths live in one buffer (no allocation per entry) and the index maps a
/// path's hash to its entry. Two paths with the same 64-bit hash cost the
/// older one its entry (a re-hash), never a wrong digest: every lookup
/// compares the path bytes.
#[derive(Debug, Default)]
struct Table {
    paths: Vec<u8>,
    entries: Vec<(usize, u32, Entry)>,
    index: HashMap<u64, u32, BuildHasherDefault<PreHashed>>,
}

impl Table {
    fn with_capacity(n: usize, path_bytes: usize) -> Table {
        Table {
            paths: Vec::with_capacity(path_bytes),
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity_and_hasher(n, Default::default()),
        }
    }

    fn path(&self, start: usize, len: u32) -> &[u8] {
        self.paths
            .get(start..start + len as usize)
            .unwrap_or_default()
    }

    fn slot(&self, path: &[u8]) -> Option<usize> {
        let i = *self.index.get(&path_hash(path))? as usize;
        let (start, len, _) = self.entries.get(i)?;
        (self.path(*start, *len) == path).then_some(i)
    }

    fn get(&self, path: &[u8]) -> Option<&Entry> {
        let i = self.slot(path)?;
        self.entries.get(i).map(|(_, _, e)| e)
    }

    fn get_mut(&mut self, path: &[u8]) -> Option<&mut Entry> {
        let i = self.slot(path)?;
        self.entries.get_mut(i).map(|(_, _, e)| e)
    }

    fn insert(&mut self, path: &[u8], entry: Entry) {
        if let Some(e) = self.get_mut(path) {
            *e = entry;
            return;
        }
        self.push(path, entry);
    }

    /// Adds an entry for a path not in the table (a loaded file has no
    /// duplicates), skipping the lookup that dominated loading.
    fn push(&mut self, path: &[u8], entry: Entry) {
        let (Ok(len), Ok(i)) = (u32::try_from(path.len()), u32::try_from(self.entries.len()))
        else {
            return; // not cached, only re-hashed next time
        };
        let start = self.paths.len();
        self.paths.extend_from_slice(path);
        self.entries.push((start, len, entry));
        self.index.insert(path_hash(path), i);
    }

    /// Unlinks the entry; its bytes stay until the table is rebuilt by the
    /// next load, which only a save's prune makes worth it.
    fn remove(&mut self, path: &[u8]) {
        if self.slot(path).is_some() {
            self.index.remove(&path_hash(path));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// Live entries in insertion order (load order, then new ones).
    fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        let mut live: Vec<u32> = self.index.values().copied().collect();
        live.sort_unstable();
        live.into_iter().filter_map(move |i| {
            let (start, len, e) = self.entries.get(i as usize)?;
            Some((self.path(*start, *len), e))
        })
    }
}

#[derive(Debug, Default)]
struct State {
    loaded: bool,
    entries: Table,
    dirty: bool,
    pruned: bool,
    last_save_error: Option<String>,
}

/// A context's stat cache, shared by every thread of a build.
#[derive(Debug)]
pub(crate) struct StatCache {
    root: PathBuf,
    path: PathBuf,
    state: Mutex<State>,
    /// Serialises snapshot + rename so this process never replaces a newer
    /// snapshot with an older one.
    save: Mutex<()>,
    seq: AtomicU64,
    now: fn() -> i64,
}

fn coarse_now() -> i64 {
    rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec
}

impl StatCache {
    pub(crate) fn new(root: PathBuf, path: PathBuf) -> StatCache {
        Self::with_clock(root, path, coarse_now)
    }

    pub(crate) fn with_clock(root: PathBuf, path: PathBuf, now: fn() -> i64) -> StatCache {
        StatCache {
            root,
            path,
            state: Mutex::new(State::default()),
            save: Mutex::new(()),
            seq: AtomicU64::new(0),
            now,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The record time for files about to be read; take it before opening.
    pub(crate) fn now(&self) -> i64 {
        (self.now)()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a map that is still
        // consistent (every update is a single insert), so keep using it.
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !s.loaded {
            s.entries = load(&self.path).unwrap_or_default();
            s.loaded = true;
        }
        s
    }

    /// The cached digest of `rel` if its stat data is unchanged and was not
    /// racily clean when recorded.
    pub(crate) fn lookup(&self, rel: &[u8], key: &StatKey) -> Option<[u8; 32]> {
        let mut s = self.state();
        let e = s.entries.get_mut(rel)?;
        e.seen = true;
        (e.key == *key && !e.racy()).then_some(e.digest)
    }

    pub(crate) fn record(&self, rel: &[u8], key: StatKey, recorded: i64, digest: [u8; 32]) {
        let mut s = self.state();
        s.entries.insert(
            rel,
            Entry {
                key,
                recorded,
                digest,
                seen: true,
            },
        );
        s.dirty = true;
    }

    pub(crate) fn last_save_error(&self) -> Option<String> {
        self.state().last_save_error.clone()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().entries.len()
    }

    /// Writes the cache if anything was recorded since the last save. A
    /// failure is kept for [`crate::Context::hash_stats`] rather than failing
    /// the build: the cache only saves time.
    pub(crate) fn save_if_dirty(&self) {
        let _order = self.save.lock().unwrap_or_else(|e| e.into_inner());
        let missing = {
            let s = self.state();
            if !s.dirty {
                return;
            }
            if s.pruned {
                Vec::new()
            } else {
                s.entries
                    .iter()
                    .filter(|(_, e)| !e.seen)
                    .map(|(k, _)| k.to_vec())
                    .collect()
            }
        };
        // Files deleted since the last save would otherwise stay forever;
        // checked once per process, outside the lock.
        let missing: Vec<Vec<u8>> = missing
            .into_iter()
            .filter(|k| {
                let p = self.root.join(OsStr::from_bytes(k));
                matches!(fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound)
            })
            .collect();
        let bytes = {
            let mut s = self.state();
            for k in &missing {
                if s.entries.get(k).is_some_and(|e| !e.seen) {
                    s.entries.remove(k);
                }
            }
            s.pruned = true;
            s.dirty = false;
            encode(&s.entries)
        };
        let result = self.write(&bytes);
        let mut s = self.state();
        match result {
            Ok(()) => s.last_save_error = None,
            Err(e) => {
                s.dirty = true;
                s.last_save_error = Some(e.to_string());
            }
        }
    }

    fn write(&self, bytes: &[u8]) -> Result<(), crate::ContextError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| crate::ContextError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::create_dir_all(dir).map_err(err(dir))?;
        sweep_temps(dir, &name);
        let tmp = dir.join(format!(
            "{name}.tmp-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let written = fs::File::create_new(&tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(err(&tmp))
            .and_then(|()| fs::rename(&tmp, &self.path).map_err(err(&self.path)));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

impl Drop for StatCache {
    fn drop(&mut self) {
        // Entries recorded by a call that then failed are still worth keeping.
        self.save_if_dirty();
    }
}

/// Removes temp files a crashed writer of this cache left behind.
fn sweep_temps(dir: &Path, name: &str) {
    let prefix = format!("{name}.tmp-");
    let Ok(rd) = fs::read_dir(dir) else { return };
    let cutoff = SystemTime::now()
        .checked_sub(STALE_TEMP)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for e in rd.flatten() {
        if !e.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        if e.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff)
        {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn encode(table: &Table) -> Vec<u8> {
    let entries: Vec<(&[u8], &Entry)> = table.iter().collect();
    let paths: usize = entries.iter().map(|(k, _)| k.len()).sum();
    let mut out = Vec::with_capacity(HEADER + entries.len() * (4 + FIXED) + paths + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (path, e) in entries {
        // Paths are at most PATH_MAX long, far below u32::MAX.
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(path);
        let k = &e.key;
        out.extend_from_slice(&k.dev.to_le_bytes());
        out.extend_from_slice(&k.ino.to_le_bytes());
        out.extend_from_slice(&k.size.to_le_bytes());
        out.extend_from_slice(&k.mtime_sec.to_le_bytes());
        out.extend_from_slice(&k.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&k.ctime_sec.to_le_bytes());
        out.extend_from_slice(&k.ctime_nsec.to_le_bytes());
        out.extend_from_slice(&k.mode.to_le_bytes());
        out.extend_from_slice(&e.recorded.to_le_bytes());
        out.extend_from_slice(&e.digest);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Reads a cache file; `None` when it is missing, unreadable or damaged, all
/// of which just mean "hash everything".
fn load(path: &Path) -> Option<Table> {
    let bytes = fs::read(path).ok()?;
    decode(&bytes)
}

fn decode(bytes: &[u8]) -> Option<Table> {
    let body_len = bytes.len().checked_sub(TRAILER)?;
    let (body, sum) = bytes.split_at(body_len);
    if body.len() < HEADER || Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Cursor { b: body };
    if r.take(8)? != MAGIC || r.u32()? != VERSION || r.u32()? != 0 {
        return None;
    }
    let count = usize::try_from(r.u64()?).ok()?;
    if count > r.b.len() / (4 + FIXED) {
        return None;
    }
    let mut entries = Table::with_capacity(count, r.b.len() - count * (4 + FIXED));
    for _ in 0..count {
        let n = r.u32()? as usize;
        let path = r.take(n)?;
        let key = StatKey {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_sec: r.i64()?,
            mtime_nsec: r.u32()?,
            ctime_sec: r.i64()?,
            ctime_nsec: r.u32()?,
            mode: r.u32()?,
        };
        let recorded = r.i64()?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(r.take(32)?);
        entries.push(
            path,
            Entry {
                key,
                recorded,
                digest,
                seen: false,
            },
        );
    }
    r.b.is_empty().then_some(entries)
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.b.len() {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod hash_tests {
    use super::path_hash;

    /// Every path of the shapes benchmarks and real trees have gets its own hash, so no entry
    /// of a large context is lost to a collision (each one costs a re-read on every build).
    #[test]
    fn context_paths_do_not_collide() {
        let shapes: [Vec<String>; 3] = [
            (0..100_000)
                .map(|i| format!("d{:03}/f{:04}.txt", i / 1000, i % 1000))
                .collect(),
            (0..5_000)
                .map(|i| format!("src/pkg{:02}/file{i:05}.txt", i % 50))
                .collect(),
            (0..200_000).map(|i| format!("x{i}")).collect(),
        ];
        for paths in shapes {
            let hashes: std::collections::HashSet<u64> =
                paths.iter().map(|p| path_hash(p.as_bytes())).collect();
            assert_eq!(hashes.len(), paths.len(), "{:?}", paths.first());
        }
    }
}
