//! What a COPY/ADD (or a bind mount of the context) read: every path with its
//! type, mode, size and content digest, so two builds can be compared path by
//! path instead of through a single opaque digest.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The sources of one step as read from the context, in walk order: for each
/// source as written, each path it matched, then that path's tree in
/// pre-order with names sorted bytewise.
///
/// Built by [`crate::Context::source_manifest`]; [`SourceManifest::digest`] is
/// the step's cache-key input and [`SourceManifest::changes`] explains a
/// cache miss. Holds no file contents (about 100 bytes per path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceManifest {
    sources: Vec<SourceGroup>,
    matches: Vec<MatchGroup>,
    entries: Vec<ManifestEntry>,
}

/// A source as written and the range of `matches` it expanded to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceGroup {
    source: String,
    matches: std::ops::Range<usize>,
}

/// One path a source matched: its lexical name (what the hash sees, so a
/// renamed symlink changes the key) and its resolved root in the context.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MatchGroup {
    lexical: String,
    root: PathBuf,
    entries: std::ops::Range<usize>,
}

/// One file, directory, link or special file a step read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the context root (symlinks in the source resolved);
    /// the context root itself is the empty path.
    pub path: PathBuf,
    /// Permission bits (`mode & 0o7777`); ownership is not recorded because
    /// context files are always copied as 0:0 or `--chown`.
    pub mode: u32,
    /// Size in bytes for files, target length for links, 0 for directories
    /// (a directory's `st_size` depends on its history, not its content).
    pub size: u64,
    /// What kind of entry it is and what it holds.
    pub data: EntryData,
}

/// The type-specific part of a [`ManifestEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryData {
    /// A directory; its children follow it as separate entries.
    Directory,
    /// A regular file and the sha256 of its content.
    File {
        /// Raw sha256 of the file's bytes.
        digest: [u8; 32],
    },
    /// A symbolic link (never followed inside a source tree).
    Symlink {
        /// The link's target as stored.
        target: PathBuf,
    },
    /// A fifo, device or socket: only its mode and size are known.
    Other,
}

impl EntryData {
    fn kind_byte(&self) -> u8 {
        match self {
            EntryData::Directory => b'd',
            EntryData::File { .. } => b'f',
            EntryData::Symlink { .. } => b'l',
            EntryData::Other => b'o',
        }
    }
}

/// How a path differs between two manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// Only the newer manifest has the path.
    Added,
    /// Only the older manifest has the path.
    Removed,
    /// Both have it with a different type, mode, size, content or target.
    Modified,
}

/// One path that differs between two manifests (see [`SourceManifest::changes`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    /// Path relative to the context root (empty for the root itself).
    pub path: PathBuf,
    /// Added, removed or modified.
    pub kind: ChangeKind,
}

/// Why [`SourceManifest::from_bytes`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source manifest at byte {offset}: {reason}")]
pub struct ManifestDecodeError {
    /// Where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

/// First bytes of an encoded manifest; the version follows as a `u32`.
const MAGIC: &[u8; 8] = b"RBSRCMF\0";
/// Encoding version written by [`SourceManifest::to_bytes`].
const VERSION: u32 = 1;
/// Domain of [`SourceManifest::digest`]; bump it when the hashed fields change
/// so old cache keys cannot collide with new ones.
const DIGEST_DOMAIN: &[u8] = b"rbuild context sources v2\0";

/// Incremental construction in walk order, used by the context walker.
#[derive(Debug, Default)]
pub(crate) struct ManifestBuilder {
    m: SourceManifest,
}

impl ManifestBuilder {
    pub(crate) fn begin_source(&mut self, source: &str) {
        let at = self.m.matches.len();
        self.m.sources.push(SourceGroup {
            source: source.to_string(),
            matches: at..at,
        });
    }

    pub(crate) fn begin_match(&mut self, lexical: String, root: PathBuf) {
        let at = self.m.entries.len();
        self.m.matches.push(MatchGroup {
            lexical,
            root,
            entries: at..at,
        });
        if let Some(s) = self.m.sources.last_mut() {
            s.matches.end = self.m.matches.len();
        }
    }

    pub(crate) fn push(&mut self, entry: ManifestEntry) {
        self.m.entries.push(entry);
        if let Some(g) = self.m.matches.last_mut() {
            g.entries.end = self.m.entries.len();
        }
    }

    pub(crate) fn extend(&mut self, entries: Vec<ManifestEntry>) {
        self.m.entries.extend(entries);
        if let Some(g) = self.m.matches.last_mut() {
            g.entries.end = self.m.entries.len();
        }
    }

    pub(crate) fn finish(self) -> SourceManifest {
        self.m
    }
}

impl SourceManifest {
    /// Every entry in walk order; a path appears more than once when two
    /// sources overlap.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The sources as written, in order.
    pub fn sources(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| s.source.as_str())
    }

    /// The content digest of the sources, `sha256:<hex>`; what
    /// [`crate::Context::digest_sources`] returns.
    ///
    /// Covers each source as written, each match's lexical name and, per
    /// entry, its path below the match, type, mode, size and content digest or
    /// link target; not the resolved location in the context, owners or
    /// times, so moving a symlinked source's target keeps the key.
    ///
    /// The hashed stream ("v2"): `rbuild context sources v2\0`, then per
    /// source `S` source `\0`, per match `M` lexical name `\0`, per entry `E`
    /// path-below-match `\0` kind (`d` `f` `l` `o`) mode (`u32` LE) size
    /// (`u64` LE) and the file's raw sha256 or the link target's length
    /// (`u64` LE) and bytes. Hashing file digests instead of file bytes is
    /// what lets the stat cache stand in for reading a file; the "v1" value
    /// of earlier rbuild versions (bytes inline, directory `st_size`
    /// included) cannot be reproduced from cached digests, so the first
    /// build after the upgrade misses the cache of COPY steps once.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(DIGEST_DOMAIN);
        for s in &self.sources {
            h.update(b"S");
            h.update(s.source.as_bytes());
            h.update([0]);
            for m in self.matches.get(s.matches.clone()).unwrap_or_default() {
                h.update(b"M");
                h.update(m.lexical.as_bytes());
                h.update([0]);
                for e in self.entries.get(m.entries.clone()).unwrap_or_default() {
                    let rel = e.path.strip_prefix(&m.root).unwrap_or(&e.path);
                    h.update(b"E");
                    h.update(rel.as_os_str().as_bytes());
                    h.update([0, e.data.kind_byte()]);
                    h.update(e.mode.to_le_bytes());
                    h.update(e.size.to_le_bytes());
                    match &e.data {
                        EntryData::File { digest } => h.update(digest),
                        EntryData::Symlink { target } => {
                            let t = target.as_os_str().as_bytes();
                            h.update((t.len() as u64).to_le_bytes());
                            h.update(t);
                        }
                        EntryData::Directory | EntryData::Other => {}
                    }
                }
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Paths added, removed or modified since `older`, sorted by path; a
    /// path listed by several sources counts once.
    pub fn changes(&self, older: &SourceManifest) -> Vec<Change> {
        let new = index(self);
        let old = index(older);
        let mut out = Vec::new();
        let mut a = new.iter().peekable();
        let mut b = old.iter().peekable();
        loop {
            let (path, kind) = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some((p, _)), None) => {
                    let p = **p;
                    a.next();
                    (p, ChangeKind::Added)
                }
                (None, Some((p, _))) => {
                    let p = **p;
                    b.next();
                    (p, ChangeKind::Removed)
                }
                (Some((pa, ea)), Some((pb, eb))) => match pa.cmp(pb) {
                    std::cmp::Ordering::Less => {
                        let p = **pa;
                        a.next();
                        (p, ChangeKind::Added)
                    }
                    std::cmp::Ordering::Greater => {
                        let p = **pb;
                        b.next();
                        (p, ChangeKind::Removed)
                    }
                    std::cmp::Ordering::Equal => {
                        let (p, same) = (**pa, ea == eb);
                        a.next();
                        b.next();
                        if same {
                            continue;
                        }
                        (p, ChangeKind::Modified)
                    }
                },
            };
            out.push(Change {
                path: path.to_path_buf(),
                kind,
            });
        }
        out
    }

    /// A stable, versioned encoding for storing the manifest beside a cache
    /// entry; later builds decode it with [`SourceManifest::from_bytes`].
    ///
    /// Layout (integers little-endian, `bytes` = `u32` length + raw bytes):
    /// `"RBSRCMF\0"`, `u32` version (1), `u32` source count; per source:
    /// `bytes` source, `u32` match count; per match: `bytes` lexical name,
    /// `bytes` root path, `u32` entry count; per entry: `bytes` path, `u8`
    /// kind (`d` `f` `l` `o`), `u32` mode, `u64` size, then for `f` the 32-byte
    /// sha256 and for `l` the `bytes` target.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.entries.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        put_len(&mut out, self.sources.len());
        for s in &self.sources {
            put_bytes(&mut out, s.source.as_bytes());
            let matches = self.matches.get(s.matches.clone()).unwrap_or_default();
            put_len(&mut out, matches.len());
            for m in matches {
                put_bytes(&mut out, m.lexical.as_bytes());
                put_bytes(&mut out, m.root.as_os_str().as_bytes());
                let entries = self.entries.get(m.entries.clone()).unwrap_or_default();
                put_len(&mut out, entries.len());
                for e in entries {
                    put_bytes(&mut out, e.path.as_os_str().as_bytes());
                    out.push(e.data.kind_byte());
                    out.extend_from_slice(&e.mode.to_le_bytes());
                    out.extend_from_slice(&e.size.to_le_bytes());
                    match &e.data {
                        EntryData::File { digest } => out.extend_from_slice(digest),
                        EntryData::Symlink { target } => {
                            put_bytes(&mut out, target.as_os_str().as_bytes())
                        }
                        EntryData::Directory | EntryData::Other => {}
                    }
                }
            }
        }
        out
    }

    /// Decodes [`SourceManifest::to_bytes`] output, rejecting anything
    /// truncated, trailing, of another version, or whose entries lie outside
    /// their match's root.
    pub fn from_bytes(bytes: &[u8]) -> Result<SourceManifest, ManifestDecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(r.err_at(0, "not a source manifest"));
        }
        if r.u32()? != VERSION {
            return Err(r.err_at(8, "unsupported version"));
        }
        let mut b = ManifestBuilder::default();
        for _ in 0..r.count()? {
            let source = r.string()?;
            b.begin_source(&source);
            for _ in 0..r.count()? {
                let lexical = r.string()?;
                let root = r.path()?;
                b.begin_match(lexical, root.clone());
                for _ in 0..r.count()? {
                    let at = r.pos;
                    let path = r.path()?;
                    if !path.starts_with(&root) {
                        return Err(r.err_at(at, "entry outside its match"));
                    }
                    let kind = r.u8()?;
                    let mode = r.u32()?;
                    let size = r.u64()?;
                    let data = match kind {
                        b'd' => EntryData::Directory,
                        b'f' => {
                            let mut digest = [0u8; 32];
                            digest.copy_from_slice(r.take(32)?);
                            EntryData::File { digest }
                        }
                        b'l' => EntryData::Symlink { target: r.path()? },
                        b'o' => EntryData::Other,
                        _ => return Err(r.err_at(at, "unknown entry kind")),
                    };
                    b.push(ManifestEntry {
                        path,
                        mode,
                        size,
                        data,
                    });
                }
            }
        }
        if r.pos != bytes.len() {
            return Err(r.err_at(r.pos, "trailing bytes"));
        }
        Ok(b.finish())
    }
}

/// Entries by path, first occurrence winning (later ones are the same file
/// reached through an overlapping source).
fn index(m: &SourceManifest) -> BTreeMap<&Path, &ManifestEntry> {
    let mut map = BTreeMap::new();
    for e in &m.entries {
        map.entry(e.path.as_path()).or_insert(e);
    }
    map
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Counts and lengths above u32::MAX cannot come from a real context
    // (paths are at most PATH_MAX); saturating keeps this panic-free and
    // makes such an encoding fail to decode instead of aliasing.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err_at(&self, offset: usize, reason: &'static str) -> ManifestDecodeError {
        ManifestDecodeError { offset, reason }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestDecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(ManifestDecodeError {
                offset: self.pos,
                reason: "truncated",
            })?;
        let s = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ManifestDecodeError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    fn u32(&mut self) -> Result<u32, ManifestDecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, ManifestDecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    /// A count of following items; each takes at least one byte, so a count
    /// larger than what is left is rejected before anything is allocated.
    fn count(&mut self) -> Result<u32, ManifestDecodeError> {
        let at = self.pos;
        let n = self.u32()?;
        if n as usize > self.bytes.len() - self.pos {
            return Err(self.err_at(at, "count exceeds input"));
        }
        Ok(n)
    }

    fn raw(&mut self) -> Result<&'a [u8], ManifestDecodeError> {
        let n = self.u32()?;
        self.take(n as usize)
    }

    fn string(&mut self) -> Result<String, ManifestDecodeError> {
        let at = self.pos;
        let b = self.raw()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err_at(at, "source is not UTF-8"))
    }

    fn path(&mut self) -> Result<PathBuf, ManifestDecodeError> {
        let at = self.pos;
        let b = self.raw()?;
        if b.contains(&0) {
            return Err(self.err_at(at, "NUL in a path"));
        }
        Ok(PathBuf::from(OsStr::from_bytes(b)))
    }
}
