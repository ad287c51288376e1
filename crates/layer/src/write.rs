//! The deterministic layer tar writer.
//!
//! Headers are built field by field (ustar magic, numeric ids, empty user/group names, integer
//! mtimes) and written by hand, so nothing from the host (user names, sub-second times, atime,
//! sparse maps, walk order) leaks into the bytes. Anything ustar cannot hold goes into a PAX `x`
//! record written just before the entry.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rbuild_digest::Digest;
use tar::{EntryType, Header};

use crate::{IdMap, LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

mod hashpipe;
use hashpipe::PipedDigestWriter;

const BLOCK: usize = 512;
/// Largest value a 8-byte octal ustar field can carry.
const MAX_OCTAL_ID: u64 = 0o7777777;
/// Largest value the 12-byte octal size field can carry.
const MAX_OCTAL_SIZE: u64 = 0o77777777777;
/// The id the kernel shows for a host id that has no mapping in a user namespace
/// (`/proc/sys/kernel/overflowuid`), used for owners outside [`WriteOptions::id_map`].
pub const OVERFLOW_ID: u32 = 65534;

/// Knobs that change the bytes of a layer; kept tiny so equal options mean equal layers.
/// Construct with `..Default::default()` so new knobs do not break callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `SOURCE_DATE_EPOCH`: when set, every mtime later than it is clamped down to it, so a
    /// rebuild at another time gives the same diff id.
    pub source_date_epoch: Option<i64>,
    /// The user namespace's container-to-host map when the tree was written by a rootless step:
    /// owners found on disk are host ids and are translated back to the container ids the step
    /// saw (host ids outside every range become [`OVERFLOW_ID`], as the kernel shows them, and
    /// are counted in [`LayerInfo::unmapped`]). `None` writes the on-disk ids unchanged.
    pub id_map: Option<IdMap>,
    /// Owners (container ids) to record for paths whose on-disk owner is known to be wrong: a
    /// rootless `COPY --chown` cannot chown to a subordinate id from outside the namespace, so the
    /// engine says here what the owner should have been. Wins over `id_map`.
    pub owner_overrides: Vec<OwnerOverride>,
}

/// One entry of [`WriteOptions::owner_overrides`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerOverride {
    /// Path relative to the layer root, without `..`.
    pub rel: PathBuf,
    /// Also applies to everything below `rel`.
    pub recursive: bool,
    /// uid to record (container id).
    pub uid: u32,
    /// gid to record (container id).
    pub gid: u32,
}

/// Identity of an uncompressed layer, which is what image configs list as `rootfs.diff_ids`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Length of the uncompressed tar in bytes.
    pub size: u64,
    /// Entries whose host uid or gid was outside [`WriteOptions::id_map`] and was written as
    /// [`OVERFLOW_ID`]; non-zero means the caller should warn (the image has `nobody` files).
    pub unmapped: u64,
}

/// One path for [`write_paths`]: lets a diff say "this changed", "this and everything below it
/// changed" or "this was deleted".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    /// Path relative to the root, without `..`.
    pub rel: PathBuf,
    /// For a directory: also write everything below it.
    pub recursive: bool,
    /// The path was deleted: write a `.wh.` whiteout instead of the file.
    pub whiteout: bool,
}

/// An entry for [`LayerWriter::append_entry`]: what `append_path` would find on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Path relative to the layer root, without `..`.
    pub rel: PathBuf,
    /// What the entry is.
    pub kind: EntryMetaKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// uid to record.
    pub uid: u32,
    /// gid to record.
    pub gid: u32,
    /// Modification time in seconds (clamped to `SOURCE_DATE_EPOCH` like any entry).
    pub mtime: i64,
    /// Length of a regular file's data; 0 otherwise.
    pub size: u64,
    /// xattrs as [`LayerWriter::append_path`] would carry them, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The kinds of entry [`EntryMeta`] describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryMetaKind {
    /// A directory.
    Dir,
    /// A regular file (not a hard link to an earlier entry).
    File,
    /// A symbolic link to the target bytes.
    Symlink(Vec<u8>),
}

/// The xattrs [`LayerWriter::append_path`] records for `path` (not followed), sorted; for
/// callers building an [`EntryMeta`].
pub fn layer_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    read_xattrs(path)
}

/// One tar writer; hashes while writing so the diff id is known at finish.
pub struct LayerWriter<W: Write> {
    out: PipedDigestWriter<W>,
    /// Reused for file contents (large reads: a 300 MB file in 8 KiB pieces costs 38,000 calls).
    copy_buf: Vec<u8>,
    opts: WriteOptions,
    /// (dev, ino) of multiply-linked files already written, to the tar name they were written as.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// `opts.owner_overrides` by tar name (no trailing `/`): (recursive, uid, gid).
    overrides: HashMap<Vec<u8>, (bool, u32, u32)>,
    /// Names of entries written with [`OVERFLOW_ID`] because their owner was not mapped.
    unmapped: Vec<String>,
}

/// Size of [`LayerWriter`]'s buffer for file contents.
const COPY_BUF: usize = 1 << 20;

/// Which side of a file copy failed, so the error names the source path or the output.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Everything that goes into one header, gathered before any byte is written.
struct Item {
    name: Vec<u8>,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    link: Option<Vec<u8>>,
    dev: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Checks that `rel` is a plain relative path and returns its bytes joined with `/`.
pub(crate) fn rel_bytes(rel: &Path) -> Result<Vec<u8>, LayerError> {
    let bad = |reason| LayerError::BadSourcePath {
        path: rel.to_path_buf(),
        reason,
    };
    let mut out: Vec<u8> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(n.as_bytes());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("is absolute")),
        }
    }
    if out.is_empty() {
        return Err(bad("is empty (the root itself is never an entry)"));
    }
    Ok(out)
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    // "LEN KEY=VALUE\n" where LEN counts its own digits.
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut rec = format!("{len} ").into_bytes();
    rec.extend_from_slice(key);
    rec.push(b'=');
    rec.extend_from_slice(value);
    rec.push(b'\n');
    rec
}

fn fits_ustar_str(b: &[u8], max: usize) -> bool {
    b.len() <= max && b.is_ascii() && !b.contains(&0)
}

fn copy_field(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

impl<W: Write> LayerWriter<W> {
    /// Starts an empty layer on `out`.
    pub fn new(out: W, opts: WriteOptions) -> Self {
        // An override whose path is not a clean relative path can never match an entry.
        let overrides = opts
            .owner_overrides
            .iter()
            .filter_map(|o| Some((rel_bytes(&o.rel).ok()?, (o.recursive, o.uid, o.gid))))
            .collect();
        LayerWriter {
            out: PipedDigestWriter::new(out),
            copy_buf: Vec::new(),
            opts,
            links: HashMap::new(),
            overrides,
            unmapped: Vec::new(),
        }
    }

    /// Tar names of the entries so far whose host owner was outside the id map (written as
    /// [`OVERFLOW_ID`]), so callers can name them in a warning before [`LayerWriter::finish`].
    pub fn unmapped_paths(&self) -> &[String] {
        &self.unmapped
    }

    /// The (uid, gid) to record for `name` (no trailing `/`) owned by host `uid`/`gid` on disk.
    fn owner_for(&mut self, name: &[u8], uid: u32, gid: u32) -> (u64, u64) {
        if !self.overrides.is_empty() {
            // The entry itself, then each ancestor whose override is recursive.
            if let Some(&(_, u, g)) = self.overrides.get(name) {
                return (u64::from(u), u64::from(g));
            }
            let mut end = name.len();
            while let Some(i) = name
                .get(..end)
                .and_then(|n| n.iter().rposition(|b| *b == b'/'))
            {
                if let Some(&(true, u, g)) = name.get(..i).and_then(|p| self.overrides.get(p)) {
                    return (u64::from(u), u64::from(g));
                }
                end = i;
            }
        }
        let Some(map) = &self.opts.id_map else {
            return (u64::from(uid), u64::from(gid));
        };
        let (u, g) = (map.to_container_uid(uid), map.to_container_gid(gid));
        if u.is_none() || g.is_none() {
            self.unmapped
                .push(String::from_utf8_lossy(name).into_owned());
        }
        (
            u64::from(u.unwrap_or(OVERFLOW_ID)),
            u64::from(g.unwrap_or(OVERFLOW_ID)),
        )
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.opts.source_date_epoch {
            Some(e) => mtime.min(e),
            None => mtime,
        }
    }

    fn werr(name: &[u8], e: io::Error) -> LayerError {
        LayerError::Write {
            path: String::from_utf8_lossy(name).into_owned(),
            source: e,
        }
    }

    /// Writes one header (plus PAX record if needed) and, for regular files, `data`.
    fn write_item(&mut self, item: &Item, data: Option<(&Path, File)>) -> Result<(), LayerError> {
        let mut pax: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut h = Header::new_ustar();
        let werr = |e| Self::werr(&item.name, e);

        if fits_ustar_str(&item.name, 100) {
            copy_field(&mut h.as_old_mut().name, &item.name);
        } else {
            pax.insert(b"path".to_vec(), item.name.clone());
            copy_field(&mut h.as_old_mut().name, &item.name);
        }
        if let Some(link) = &item.link {
            if !fits_ustar_str(link, 100) {
                pax.insert(b"linkpath".to_vec(), link.clone());
            }
            copy_field(&mut h.as_old_mut().linkname, link);
        }
        h.set_entry_type(item.kind);
        h.set_mode(item.mode & 0o7777);
        for (key, id, is_uid) in [
            (&b"uid"[..], item.uid, true),
            (&b"gid"[..], item.gid, false),
        ] {
            let v = if id > MAX_OCTAL_ID {
                pax.insert(key.to_vec(), id.to_string().into_bytes());
                0
            } else {
                id
            };
            if is_uid {
                h.set_uid(v);
            } else {
                h.set_gid(v);
            }
        }
        let mtime = self.clamp(item.mtime);
        if mtime < 0 || mtime as u64 > MAX_OCTAL_SIZE {
            pax.insert(b"mtime".to_vec(), mtime.to_string().into_bytes());
            h.set_mtime(0);
        } else {
            h.set_mtime(mtime as u64);
        }
        if item.size > MAX_OCTAL_SIZE {
            pax.insert(b"size".to_vec(), item.size.to_string().into_bytes());
            h.set_size(0);
        } else {
            h.set_size(item.size);
        }
        let (major, minor) = item.dev.unwrap_or((0, 0));
        h.set_device_major(major).map_err(werr)?;
        h.set_device_minor(minor).map_err(werr)?;
        for (k, v) in &item.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.insert(key, v.clone());
        }
        h.set_cksum();

        if !pax.is_empty() {
            let body: Vec<u8> = pax.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
            let mut ph = Header::new_ustar();
            // Named like Go's archive/tar does: DIR/PaxHeaders.0/BASE.
            let trimmed = item.name.strip_suffix(b"/").unwrap_or(&item.name);
            let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
                Some(i) => (
                    trimmed.get(..=i).unwrap_or_default(),
                    trimmed.get(i + 1..).unwrap_or_default(),
                ),
                None => (&b""[..], trimmed),
            };
            let mut pname = dir.to_vec();
            pname.extend_from_slice(b"PaxHeaders.0/");
            pname.extend_from_slice(base);
            copy_field(&mut ph.as_old_mut().name, &pname);
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_uid(0);
            ph.set_gid(0);
            ph.set_mtime(0);
            ph.set_size(body.len() as u64);
            ph.set_device_major(0).map_err(werr)?;
            ph.set_device_minor(0).map_err(werr)?;
            ph.set_cksum();
            self.out.write_all(ph.as_bytes()).map_err(werr)?;
            self.out.write_all(&body).map_err(werr)?;
            self.pad(body.len() as u64).map_err(werr)?;
        }

        self.out.write_all(h.as_bytes()).map_err(werr)?;
        if let Some((path, file)) = data {
            let got = self.copy_data(file.take(item.size)).map_err(|e| match e {
                CopyError::Read(source) => LayerError::Read {
                    path: path.to_path_buf(),
                    source,
                },
                CopyError::Write(e) => werr(e),
            })?;
            if got != item.size {
                return Err(LayerError::SourceChanged {
                    path: path.to_path_buf(),
                    expected: item.size,
                    actual: got,
                });
            }
            self.pad(item.size).map_err(werr)?;
        }
        Ok(())
    }

    /// Copies a file's bytes into the tar through the reused buffer; returns how many there were.
    fn copy_data(&mut self, mut src: impl Read) -> Result<u64, CopyError> {
        if self.copy_buf.is_empty() {
            self.copy_buf = vec![0u8; COPY_BUF];
        }
        let mut total = 0u64;
        loop {
            let n = match src.read(&mut self.copy_buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            let chunk = self.copy_buf.get(..n).unwrap_or_default();
            self.out.write_all(chunk).map_err(CopyError::Write)?;
            total += n as u64;
        }
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][rem..])?;
        }
        Ok(())
    }

    /// Adds the file at root/rel (lstat'ed, not followed) as one entry; rel is relative, no `..`.
    /// Sockets are skipped, as Docker does. A file whose (dev, ino) was already written becomes a
    /// hardlink entry to the first name.
    pub fn append_path(&mut self, root: &Path, rel: &Path) -> Result<(), LayerError> {
        let mut name = rel_bytes(rel)?;
        let full = root.join(rel);
        let rerr = |e| LayerError::Read {
            path: full.clone(),
            source: e,
        };
        let md = fs::symlink_metadata(&full).map_err(rerr)?;
        let ft = md.file_type();
        let (uid, gid) = self.owner_for(&name, md.uid(), md.gid());
        let mut item = Item {
            name: Vec::new(),
            kind: EntryType::Regular,
            mode: md.mode() & 0o7777,
            uid,
            gid,
            mtime: md.mtime(),
            size: 0,
            link: None,
            dev: None,
            xattrs: read_xattrs(&full).map_err(rerr)?,
        };
        let mut data = None;
        if ft.is_dir() {
            item.kind = EntryType::Directory;
            name.push(b'/');
        } else if ft.is_symlink() {
            item.kind = EntryType::Symlink;
            item.link = Some(
                fs::read_link(&full)
                    .map_err(rerr)?
                    .into_os_string()
                    .into_encoded_bytes(),
            );
        } else if ft.is_file() {
            let first = if md.nlink() > 1 {
                match self.links.get(&(md.dev(), md.ino())) {
                    Some(first) => Some(first.clone()),
                    None => {
                        self.links.insert((md.dev(), md.ino()), name.clone());
                        None
                    }
                }
            } else {
                None
            };
            if let Some(first) = first {
                item.kind = EntryType::Link;
                item.link = Some(first);
            } else {
                item.size = md.len();
                data = Some((full.as_path(), File::open(&full).map_err(rerr)?));
            }
        } else if ft.is_fifo() {
            item.kind = EntryType::Fifo;
        } else if ft.is_char_device() || ft.is_block_device() {
            item.kind = if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            };
            let rdev = md.rdev();
            item.dev = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
        } else {
            // Sockets cannot be archived meaningfully.
            return Ok(());
        }
        item.name = name;
        self.write_item(&item, data)
    }

    /// Adds one entry described by the caller instead of read from a tree, with exactly the
    /// bytes [`LayerWriter::append_path`] writes for a path with that metadata (owner overrides and
    /// the id map do not apply: `meta` carries the ids to record). Lets a copy compute the layer
    /// of what it is about to write from its sources, without writing and walking it first.
    /// `data` is read for a regular file and must hold `meta.size` bytes.
    pub fn append_entry(
        &mut self,
        meta: &EntryMeta,
        data: Option<(&Path, File)>,
    ) -> Result<(), LayerError> {
        let mut name = rel_bytes(&meta.rel)?;
        let mut item = Item {
            name: Vec::new(),
            kind: EntryType::Regular,
            mode: meta.mode & 0o7777,
            uid: u64::from(meta.uid),
            gid: u64::from(meta.gid),
            mtime: meta.mtime,
            size: 0,
            link: None,
            dev: None,
            xattrs: meta.xattrs.clone(),
        };
        let mut data = data;
        match &meta.kind {
            EntryMetaKind::Dir => {
                item.kind = EntryType::Directory;
                name.push(b'/');
                data = None;
            }
            EntryMetaKind::Symlink(target) => {
                item.kind = EntryType::Symlink;
                item.link = Some(target.clone());
                data = None;
            }
            EntryMetaKind::File => {
                item.size = meta.size;
                if data.is_none() && meta.size != 0 {
                    return Err(LayerError::Write {
                        path: String::from_utf8_lossy(&name).into_owned(),
                        source: io::Error::other("a file entry without its data"),
                    });
                }
            }
        }
        item.name = name;
        self.write_item(&item, data)
    }

    fn marker(&mut self, name: Vec<u8>) -> Result<(), LayerError> {
        let item = Item {
            name,
            kind: EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: None,
            dev: None,
            xattrs: Vec::new(),
        };
        self.write_item(&item, None)
    }

    /// Records that `rel` was deleted, as an empty `.wh.NAME` file next to where it was.
    pub fn append_whiteout(&mut self, rel: &Path) -> Result<(), LayerError> {
        self.marker(whiteout_name(&rel_bytes(rel)?))
    }

    /// Records that everything the lower layers had in `dir_rel` is hidden (`DIR/.wh..wh..opq`).
    pub fn append_opaque(&mut self, dir_rel: &Path) -> Result<(), LayerError> {
        let mut name = rel_bytes(dir_rel)?;
        name.push(b'/');
        name.extend_from_slice(OPAQUE_MARKER.as_bytes());
        self.marker(name)
    }

    /// Writes the two zero blocks that end a tar and returns the output with the layer's diff id.
    pub fn finish(mut self) -> Result<(W, LayerInfo), LayerError> {
        let werr = |e| LayerError::Write {
            path: String::from("<end of archive>"),
            source: e,
        };
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(werr)?;
        self.out.flush().map_err(werr)?;
        let unmapped = self.unmapped.len() as u64;
        let (w, diff_id, size) = self.out.finish().map_err(werr)?;
        Ok((
            w,
            LayerInfo {
                diff_id,
                size,
                unmapped,
            },
        ))
    }
}

fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let (dir, base) = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (
            rel.get(..=i).unwrap_or_default(),
            rel.get(i + 1..).unwrap_or_default(),
        ),
        None => (&b""[..], rel),
    };
    let mut name = dir.to_vec();
    name.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    name.extend_from_slice(base);
    name
}

/// xattrs worth carrying in a layer, sorted by name. `security.selinux` is host policy, not image
/// content, so it is left out (as Docker does); so are overlayfs's own `trusted.overlay.*` and
/// `user.overlay.*` (opaque markers, redirects, origins): they describe how a tree sits in an
/// overlay stack, which a layer says with whiteout entries, and unpacking strips them anyway.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let unsupported = |e: rustix::io::Errno| e == rustix::io::Errno::OPNOTSUPP;
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < (1 << 20) => {
                let len = names.len() * 4;
                names.resize(len, 0);
            }
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
        }
    };
    let mut out = Vec::new();
    for name in names.get(..n).unwrap_or_default().split(|b| *b == 0) {
        if name.is_empty()
            || name == b"security.selinux"
            || name.starts_with(b"trusted.overlay.")
            || name.starts_with(b"user.overlay.")
        {
            continue;
        }
        let mut value = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) if value.len() < (1 << 20) => {
                    let len = value.len() * 4;
                    value.resize(len, 0);
                }
                // Removed between list and get: nothing to record.
                Err(rustix::io::Errno::NODATA) => break None,
                Err(e) => return Err(io::Error::from_raw_os_error(e.raw_os_error())),
            }
        };
        if let Some(len) = len {
            value.truncate(len);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Every path below `root/rel` (relative to root), unsorted; symlinks to directories are not
/// followed. Iterative, since a RUN step can leave arbitrarily deep trees.
pub(crate) fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), LayerError> {
    let mut todo = vec![rel.to_path_buf()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let rerr = |e| LayerError::Read {
            path: dir.clone(),
            source: e,
        };
        for ent in fs::read_dir(&dir).map_err(rerr)? {
            let ent = ent.map_err(rerr)?;
            let child = rel.join(ent.file_name());
            if ent.file_type().map_err(rerr)?.is_dir() {
                todo.push(child.clone());
            }
            out.push(child);
        }
    }
    Ok(())
}

fn sort_key(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

/// Whole tree below root (not including root itself), sorted.
pub fn write_tree<W: Write>(
    root: &Path,
    out: W,
    opts: &WriteOptions,
) -> Result<(W, LayerInfo), LayerError> {
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths)?;
    paths.sort_by_key(|p| sort_key(p));
    let mut w = LayerWriter::new(out, opts.clone());
    for p in &paths {
        w.append_path(root, p)?;
    }
    w.finish()
}

enum Planned {
    Path(PathBuf),
    Whiteout(PathBuf),
}

/// Only the listed paths (relative to root) plus each one's parent directories, deduplicated and sorted;
/// a listed directory is written as the directory entry alone unless `recursive` is set for it.
pub fn write_paths<W: Write>(
    root: &Path,
    paths: &[PathEntry],
    out: W,
    opts: &WriteOptions,
) -> Result<(W, LayerInfo), LayerError> {
    let mut plan: BTreeMap<Vec<u8>, Planned> = BTreeMap::new();
    for pe in paths {
        let rel_b = rel_bytes(&pe.rel)?;
        let rel = PathBuf::from(OsStr::from_bytes(&rel_b));
        let mut parent = rel.parent();
        while let Some(p) = parent {
            if p.as_os_str().is_empty() {
                break;
            }
            // A deleted path's parents may be gone too; only existing ones can be written.
            if !pe.whiteout || fs::symlink_metadata(root.join(p)).is_ok() {
                plan.insert(sort_key(p), Planned::Path(p.to_path_buf()));
            }
            parent = p.parent();
        }
        if pe.whiteout {
            plan.insert(whiteout_name(&rel_b), Planned::Whiteout(rel));
            continue;
        }
        let full = root.join(&rel);
        let is_dir = fs::symlink_metadata(&full)
            .map_err(|e| LayerError::Read {
                path: full.clone(),
                source: e,
            })?
            .is_dir();
        if pe.recursive && is_dir {
            let mut below = Vec::new();
            walk(root, &rel, &mut below)?;
            for p in below {
                plan.insert(sort_key(&p), Planned::Path(p));
            }
        }
        plan.insert(rel_b, Planned::Path(rel));
    }
    let mut w = LayerWriter::new(out, opts.clone());
    for item in plan.values() {
        match item {
            Planned::Path(p) => w.append_path(root, p)?,
            Planned::Whiteout(p) => w.append_whiteout(p)?,
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for (k, v) in [
            ("path", "a".repeat(5)),
            ("path", "b".repeat(93)),
            ("x", "y".repeat(994)),
        ] {
            let rec = pax_record(k.as_bytes(), v.as_bytes());
            let s = String::from_utf8(rec.clone()).unwrap();
            let (len, _) = s.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), rec.len(), "{s:?}");
        }
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a/b/c"), b"a/b/.wh.c");
        assert_eq!(whiteout_name(b"top"), b".wh.top");
    }

    /// Writes the tree and returns (name, uid, gid) per entry plus the layer info.
    fn owners(root: &Path, opts: &WriteOptions) -> (Vec<(String, u64, u64)>, LayerInfo) {
        let (tar, info) = write_tree(root, Vec::new(), opts).unwrap();
        let mut ar = tar::Archive::new(&tar[..]);
        let got = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                )
            })
            .collect();
        (got, info)
    }

    fn owned_tree() -> (tempfile::TempDir, u32, u32) {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("d/sub")).unwrap();
        fs::write(t.path().join("d/sub/f"), b"x").unwrap();
        fs::write(t.path().join("top"), b"y").unwrap();
        std::os::unix::fs::symlink("top", t.path().join("link")).unwrap();
        let md = fs::metadata(t.path().join("top")).unwrap();
        (t, md.uid(), md.gid())
    }

    fn range(container: u32, host: u32, size: u32) -> crate::IdRange {
        crate::IdRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn id_map_writes_container_ids() {
        let (t, uid, gid) = owned_tree();
        // Table: (uid ranges, gid ranges, expected uid, expected gid, expected unmapped count).
        let cases = [
            // The caller is container root: files it wrote are 0:0 in the layer.
            (vec![range(0, uid, 1)], vec![range(0, gid, 1)], 0, 0, 0),
            // The owner is inside a second, subordinate-style range (after an unrelated one).
            (
                vec![range(0, uid.wrapping_add(1), 1), range(5, uid, 10)],
                vec![range(0, gid.wrapping_add(1), 1), range(5, gid, 10)],
                5,
                5,
                0,
            ),
            // Not mapped at all: the overflow id, as the kernel shows it, and counted.
            (
                vec![range(0, uid.wrapping_add(1), 1)],
                vec![range(0, gid, 1)],
                u64::from(OVERFLOW_ID),
                0,
                5,
            ),
        ];
        for (uids, gids, want_u, want_g, want_unmapped) in cases {
            let opts = WriteOptions {
                id_map: Some(IdMap { uids, gids }),
                ..Default::default()
            };
            let (got, info) = owners(t.path(), &opts);
            assert_eq!(got.len(), 5);
            for (name, u, g) in &got {
                assert_eq!((*u, *g), (want_u, want_g), "{name}");
            }
            assert_eq!(info.unmapped, want_unmapped);
        }
        // Without a map the on-disk ids are written unchanged.
        let (got, info) = owners(t.path(), &WriteOptions::default());
        assert!(got
            .iter()
            .all(|(_, u, g)| (*u, *g) == (u64::from(uid), u64::from(gid))));
        assert_eq!(info.unmapped, 0);
    }

    #[test]
    fn owner_overrides_win_over_the_map() {
        let (t, uid, gid) = owned_tree();
        let opts = WriteOptions {
            id_map: Some(IdMap {
                uids: vec![range(0, uid, 1)],
                gids: vec![range(0, gid, 1)],
            }),
            owner_overrides: vec![
                OwnerOverride {
                    rel: PathBuf::from("d/sub"),
                    recursive: true,
                    uid: 5,
                    gid: 6,
                },
                OwnerOverride {
                    rel: PathBuf::from("top"),
                    recursive: false,
                    uid: 7,
                    gid: 8,
                },
                // Not recursive: nothing below "d" is affected by it.
                OwnerOverride {
                    rel: PathBuf::from("d"),
                    recursive: false,
                    uid: 9,
                    gid: 9,
                },
                // Never matches anything, never panics.
                OwnerOverride {
                    rel: PathBuf::from("../escape"),
                    recursive: true,
                    uid: 1,
                    gid: 1,
                },
            ],
            ..Default::default()
        };
        let (got, info) = owners(t.path(), &opts);
        let want = vec![
            ("d/".to_string(), 9, 9),
            ("d/sub/".to_string(), 5, 6),
            ("d/sub/f".to_string(), 5, 6),
            ("link".to_string(), 0, 0),
            ("top".to_string(), 7, 8),
        ];
        assert_eq!(got, want);
        assert_eq!(info.unmapped, 0);
    }

    #[test]
    fn rel_bytes_rejects_escapes() {
        assert!(rel_bytes(Path::new("../x")).is_err());
        assert!(rel_bytes(Path::new("/x")).is_err());
        assert!(rel_bytes(Path::new("")).is_err());
        assert_eq!(rel_bytes(Path::new("./a/b")).unwrap(), b"a/b");
    }
}
