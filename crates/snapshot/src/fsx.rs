//! Small filesystem helpers: directories, xattrs, overlay's xattr namespace.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use rustix::io::Errno;

use crate::error::{errno_err, io_err, SnapshotError};

pub(crate) fn mkdir_all(path: &Path) -> Result<(), SnapshotError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io_err("create directory", path))
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(io_err("create directory", path))?;
    // The umask may have taken bits away.
    chmod(path, mode)
}

pub(crate) fn chmod(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

fn unsupported(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::OPNOTSUPP
}

/// Names of the xattrs of `path` (not following symlinks).
pub(crate) fn list_xattrs(path: &Path) -> Result<Vec<Vec<u8>>, SnapshotError> {
    let mut buf = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) if buf.len() < (1 << 20) => {
                let len = buf.len() * 4;
                buf.resize(len, 0);
            }
            Err(e) if unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(errno_err("list xattrs of", path)(e)),
        }
    };
    Ok(buf
        .get(..n)
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// One xattr's value, `None` when it is not set.
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> Result<Option<Vec<u8>>, SnapshotError> {
    let mut value = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..]) {
            Ok(len) => {
                value.truncate(len);
                return Ok(Some(value));
            }
            Err(Errno::RANGE) if value.len() < (1 << 20) => {
                let len = value.len() * 4;
                value.resize(len, 0);
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(e) if unsupported(e) => return Ok(None),
            Err(e) => return Err(errno_err("read xattr of", path)(e)),
        }
    }
}

/// An xattr name and its value.
pub(crate) type Xattr = (Vec<u8>, Vec<u8>);

/// All xattrs with values, sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> Result<Vec<Xattr>, SnapshotError> {
    let mut out = Vec::new();
    for name in list_xattrs(path)? {
        if let Some(v) = get_xattr(path, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

/// overlayfs's own metadata: never part of an image layer.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Removes overlayfs's xattrs from `path` so the layer writer does not carry them.
pub(crate) fn strip_overlay_xattrs(path: &Path) -> Result<(), SnapshotError> {
    for name in list_xattrs(path)? {
        if is_overlay_xattr(&name) {
            match rustix::fs::lremovexattr(path, OsStr::from_bytes(&name)) {
                Ok(()) | Err(Errno::NODATA) => {}
                Err(e) => return Err(errno_err("remove overlay xattr from", path)(e)),
            }
        }
    }
    Ok(())
}

/// The xattr name overlay uses in this namespace (`trusted.overlay.X` or `user.overlay.X`).
pub(crate) fn overlay_xattr(userxattr: bool, suffix: &str) -> String {
    if userxattr {
        format!("user.overlay.{suffix}")
    } else {
        format!("trusted.overlay.{suffix}")
    }
}

/// Disk space a tree takes (allocated blocks; a file with several links counted once); entries
/// that cannot be read count as nothing, since this only feeds a report.
pub(crate) fn disk_usage(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.nlink() > 1 && !md.is_dir() && !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
