//! Flat, comparable listings of a layer tar and of a directory tree, so tests (and debugging
//! tools) can check "this layer describes exactly this tree" with one `assert_eq!`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rbuild_digest::{Digest, Hasher};

use crate::apply::clean_components;
use crate::write::{read_xattrs, walk};
use crate::{LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// Kind of a listed entry; whiteouts are their own kinds so a diff can be asserted directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (`link` holds the target).
    Symlink,
    /// Second or later name of a file (`link` holds the first name).
    Hardlink,
    /// Named pipe.
    Fifo,
    /// Character device (`dev` holds major/minor).
    CharDevice,
    /// Block device (`dev` holds major/minor).
    BlockDevice,
    /// `.wh.NAME` deletion marker.
    Whiteout,
    /// `.wh..wh..opq` opaque-directory marker.
    Opaque,
}

/// One entry of a layer or tree in a host-independent form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated, no leading `./`, no trailing `/`.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Content length (0 for everything but regular files).
    pub size: u64,
    /// Modification time in whole seconds.
    pub mtime: i64,
    /// sha256 of the content, for regular files.
    pub sha256: Option<Digest>,
    /// Symlink target or hardlink's first name.
    pub link: Option<String>,
    /// Device major/minor for device nodes.
    pub dev: Option<(u32, u32)>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
        n_total += n as u64;
    }
    Ok((h.finish(), n_total))
}

fn clean_string(raw: &[u8]) -> String {
    match clean_components(raw) {
        Some(c) => String::from_utf8_lossy(&c.join(&b'/')).into_owned(),
        // Escaping paths are listed verbatim so a test can see them.
        None => String::from_utf8_lossy(raw).into_owned(),
    }
}

/// Every entry of a layer as (path, type, mode, uid, gid, size, sha256 of content, link target), for
/// tests that compare file trees.
pub fn list_layer<R: Read>(r: R) -> Result<Vec<TreeEntry>, LayerError> {
    let mut archive = tar::Archive::new(r);
    let mut out: Vec<TreeEntry> = Vec::new();
    let terr = |out: &Vec<TreeEntry>, e| LayerError::Tar {
        after: out.last().map(|t: &TreeEntry| t.path.clone()),
        source: e,
    };
    for entry in archive.entries().map_err(|e| terr(&out, e))? {
        let mut entry = entry.map_err(|e| terr(&out, e))?;
        let h = entry.header().clone();
        let et = h.entry_type();
        if et.is_pax_global_extensions() {
            continue;
        }
        let path = clean_string(&entry.path_bytes());
        let base = path.rsplit('/').next().unwrap_or_default().to_string();
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| terr(&out, e))? {
            for ext in pax {
                let ext = ext.map_err(|e| terr(&out, e))?;
                if let Some(n) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((
                        String::from_utf8_lossy(n).into_owned(),
                        ext.value_bytes().to_vec(),
                    ));
                }
            }
        }
        xattrs.sort();
        let kind = match et {
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            tar::EntryType::Fifo => EntryKind::Fifo,
            tar::EntryType::Char => EntryKind::CharDevice,
            tar::EntryType::Block => EntryKind::BlockDevice,
            _ if base == OPAQUE_MARKER => EntryKind::Opaque,
            _ if base.starts_with(WHITEOUT_PREFIX) => EntryKind::Whiteout,
            _ => EntryKind::File,
        };
        let (sha256, size) = if kind == EntryKind::File {
            let want = entry.size();
            let (d, n) = hash_reader(&mut entry).map_err(|e| terr(&out, e))?;
            if n != want {
                return Err(terr(
                    &out,
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{path}: body has {n} of {want} bytes"),
                    ),
                ));
            }
            (Some(d), n)
        } else {
            (None, 0)
        };
        let link = match kind {
            EntryKind::Symlink => entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned()),
            EntryKind::Hardlink => entry.link_name_bytes().map(|l| clean_string(&l)),
            _ => None,
        };
        let dev = match kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => Some((
                h.device_major().map_err(|e| terr(&out, e))?.unwrap_or(0),
                h.device_minor().map_err(|e| terr(&out, e))?.unwrap_or(0),
            )),
            _ => None,
        };
        out.push(TreeEntry {
            path,
            kind,
            mode: h.mode().map_err(|e| terr(&out, e))? & 0o7777,
            uid: h.uid().map_err(|e| terr(&out, e))?,
            gid: h.gid().map_err(|e| terr(&out, e))?,
            size,
            mtime: i64::try_from(h.mtime().map_err(|e| terr(&out, e))?).unwrap_or(i64::MAX),
            sha256,
            link,
            dev,
            xattrs,
        });
    }
    Ok(out)
}

/// The same listing for a directory tree (root itself excluded), sorted by path bytes; a file with
/// several names is listed as a file under its first name and as hardlinks under the others,
/// exactly as [`crate::write_tree`] would write it.
pub fn list_tree(root: &Path) -> Result<Vec<TreeEntry>, LayerError> {
    let mut paths = Vec::new();
    walk(root, Path::new(""), &mut paths)?;
    paths.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    let mut seen: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = Vec::with_capacity(paths.len());
    for rel in paths {
        let full = root.join(&rel);
        let rerr = |e| LayerError::Read {
            path: full.clone(),
            source: e,
        };
        let md = fs::symlink_metadata(&full).map_err(rerr)?;
        let ft = md.file_type();
        let path = String::from_utf8_lossy(rel.as_os_str().as_encoded_bytes()).into_owned();
        let mut e = TreeEntry {
            path: path.clone(),
            kind: EntryKind::File,
            mode: md.mode() & 0o7777,
            uid: u64::from(md.uid()),
            gid: u64::from(md.gid()),
            size: 0,
            mtime: md.mtime(),
            sha256: None,
            link: None,
            dev: None,
            xattrs: read_xattrs(&full)
                .map_err(rerr)?
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect(),
        };
        if ft.is_dir() {
            e.kind = EntryKind::Dir;
        } else if ft.is_symlink() {
            e.kind = EntryKind::Symlink;
            e.link = Some(
                String::from_utf8_lossy(
                    fs::read_link(&full)
                        .map_err(rerr)?
                        .as_os_str()
                        .as_encoded_bytes(),
                )
                .into_owned(),
            );
        } else if ft.is_file() {
            let first = if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                let f = seen.get(&key).cloned();
                if f.is_none() {
                    seen.insert(key, path.clone());
                }
                f
            } else {
                None
            };
            if let Some(first) = first {
                e.kind = EntryKind::Hardlink;
                e.link = Some(first);
            } else {
                let (d, n) = hash_reader(File::open(&full).map_err(rerr)?).map_err(rerr)?;
                e.sha256 = Some(d);
                e.size = n;
            }
        } else if ft.is_fifo() {
            e.kind = EntryKind::Fifo;
        } else if ft.is_char_device() || ft.is_block_device() {
            e.kind = if ft.is_char_device() {
                EntryKind::CharDevice
            } else {
                EntryKind::BlockDevice
            };
            e.dev = Some((rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())));
        } else {
            continue;
        }
        out.push(e);
    }
    Ok(out)
}
