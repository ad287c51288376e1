//! Small filesystem operations the engine does inside a stage's rootfs, always resolved inside it.

use std::fs::Permissions;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::BuildError;

/// Normalizes an absolute container path lexically (`/a/./b/../c` → `/a/c`), never climbing above `/`.
pub fn clean_abs(path: &str) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Joins a possibly relative container path onto the working directory, as WORKDIR and COPY do.
pub fn join_workdir(workdir: &str, path: &str) -> PathBuf {
    if path.starts_with('/') {
        clean_abs(path)
    } else {
        clean_abs(&format!(
            "{}/{}",
            if workdir.is_empty() { "/" } else { workdir },
            path
        ))
    }
}

/// Creates `abs` and its missing parents inside `rootfs` (symlinks resolved inside the root), owned by
/// `owner` when given, and returns the paths (relative to the root) it created, parents first.
pub fn mkdir_all_in_root(
    rootfs: &Path,
    abs: &Path,
    owner: Option<(u32, u32)>,
) -> Result<Vec<PathBuf>, BuildError> {
    let root = pathrs::Root::open(rootfs)
        .map_err(|e| BuildError::io(rootfs, std::io::Error::other(e.to_string())))?;
    let mut created = Vec::new();
    let mut prefix = PathBuf::from("/");
    for c in abs.components() {
        if let Component::Normal(n) = c {
            prefix.push(n);
            if root.resolve(&prefix).is_ok() {
                continue;
            }
            let handle = root
                .mkdir_all(&prefix, &Permissions::from_mode(0o755))
                .map_err(|e| BuildError::io(&prefix, std::io::Error::other(e.to_string())))?;
            if let Some((uid, gid)) = owner {
                let fd = handle.as_fd().as_raw_fd();
                // SAFETY: fchown on a valid fd we own; no memory is passed.
                let rc = unsafe { libc::fchown(fd, uid, gid) };
                if rc != 0 {
                    return Err(BuildError::io(&prefix, std::io::Error::last_os_error()));
                }
            }
            // The real location may differ from `prefix` when a parent was a symlink inside the root.
            let real = fd_path(&handle, &prefix)?;
            if let Ok(rel) = real.strip_prefix(rootfs) {
                created.push(rel.to_path_buf());
            }
        }
    }
    Ok(created)
}

/// The host path an open handle refers to (what the kernel resolved, symlinks included).
fn fd_path(handle: &pathrs::Handle, shown: &Path) -> Result<PathBuf, BuildError> {
    std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd()))
        .map_err(|e| BuildError::io(shown, e))
}

/// Access and modification times for `utimensat`/`futimens`, each as seconds and nanoseconds.
pub(crate) fn timestamps(atime: (i64, i64), mtime: (i64, i64)) -> rustix::fs::Timestamps {
    let ts = |(sec, nsec): (i64, i64)| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    rustix::fs::Timestamps {
        last_access: ts(atime),
        last_modification: ts(mtime),
    }
}

/// Whether this process is root, which decides ownership handling and the snapshotter.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Resolves `abs` inside `rootfs` and returns its real host path, for APIs that need a plain path
/// (the layer applier, which re-resolves safely itself).
pub fn real_path_in_root(rootfs: &Path, abs: &Path) -> Result<PathBuf, BuildError> {
    let root = pathrs::Root::open(rootfs)
        .map_err(|e| BuildError::io(rootfs, std::io::Error::other(e.to_string())))?;
    let handle = root
        .resolve(abs)
        .map_err(|e| BuildError::io(abs, std::io::Error::other(e.to_string())))?;
    let real = fd_path(&handle, abs)?;
    // The kernel's path of the handle is absolute and free of symlinks: compare it with the
    // root's own (the caller may give a relative or symlinked root, e.g. a context `ctx`).
    let real_root = std::fs::canonicalize(rootfs).map_err(|e| BuildError::io(rootfs, e))?;
    if !real.starts_with(&real_root) {
        return Err(BuildError::io(
            abs,
            std::io::Error::other("resolved outside the root filesystem"),
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_joins() {
        let cases = [
            ("/", "app", "/app"),
            ("/app", "sub", "/app/sub"),
            ("/app", "/abs", "/abs"),
            ("/app", "../..", "/"),
            ("", "x/./y/../z", "/x/z"),
        ];
        for (wd, p, want) in cases {
            assert_eq!(join_workdir(wd, p), PathBuf::from(want), "{wd} + {p}");
        }
    }

    #[test]
    fn mkdir_through_symlink_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("rel")).unwrap();
        let made = mkdir_all_in_root(&root, Path::new("/up/a/b"), None).unwrap();
        assert!(root.join("a/b").is_dir());
        assert_eq!(made, vec![PathBuf::from("a"), PathBuf::from("a/b")]);
        mkdir_all_in_root(&root, Path::new("/rel/c"), None).unwrap();
        assert!(root.join("c").is_dir());
        assert!(!dir.path().join("c").exists());
    }
}
