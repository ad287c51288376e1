//! Path resolution confined to a root directory, as a chroot would do it.
//!
//! Every component is checked with `lstat`; symlinks are expanded by reading
//! their target and continuing the walk inside the root, so an absolute
//! target means "the root" and `..` can never climb above it. The result is a
//! path relative to the root whose existing components are real directories.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as Linux's MAXSYMLINKS.
const MAX_LINKS: usize = 40;

/// What to do when a path or a symlink tries to leave the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnEscape {
    /// Stay at the root, as the kernel does for `/..` inside a chroot.
    Clamp,
    /// Refuse: used for build contexts, whose links must not point outside.
    Fail,
}

/// Why resolution failed.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// The path (or a link in it) points outside the root.
    Escapes,
    /// Too many symlinks, most likely a loop.
    TooManyLinks,
    /// An I/O error other than "does not exist".
    Io(io::Error),
}

fn push_components(queue: &mut VecDeque<OsString>, path: &Path, front: bool) {
    let parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    if front {
        for p in parts.into_iter().rev() {
            queue.push_front(p);
        }
    } else {
        queue.extend(parts);
    }
}

/// Resolves `path` (absolute or relative, both taken from the root) inside
/// `root`. The final component is followed only if `follow_final`. Missing
/// components are kept lexically so callers can create them.
pub(crate) fn resolve(
    root: &Path,
    path: &Path,
    follow_final: bool,
    on_escape: OnEscape,
) -> Result<PathBuf, ResolveError> {
    let mut pending = VecDeque::new();
    push_components(&mut pending, path, false);
    let mut stack: Vec<OsString> = Vec::new();
    let mut missing_at: Option<usize> = None;
    let mut links = 0usize;
    while let Some(part) = pending.pop_front() {
        if part == OsStr::new("..") {
            if stack.pop().is_none() && on_escape == OnEscape::Fail {
                return Err(ResolveError::Escapes);
            }
            if matches!(missing_at, Some(idx) if stack.len() <= idx) {
                missing_at = None;
            }
            continue;
        }
        stack.push(part);
        if missing_at.is_some() {
            continue;
        }
        let host: PathBuf = std::iter::once(root.as_os_str())
            .chain(stack.iter().map(OsString::as_os_str))
            .collect();
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() && (follow_final || !pending.is_empty()) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ResolveError::TooManyLinks);
                }
                let target = std::fs::read_link(&host).map_err(ResolveError::Io)?;
                stack.pop();
                if target.is_absolute() {
                    if on_escape == OnEscape::Fail {
                        return Err(ResolveError::Escapes);
                    }
                    stack.clear();
                }
                push_components(&mut pending, &target, true);
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(libc_enotdir()) =>
            {
                missing_at = Some(stack.len().saturating_sub(1));
            }
            Err(e) => return Err(ResolveError::Io(e)),
        }
    }
    Ok(stack.iter().collect())
}

/// ENOTDIR without a libc dependency.
fn libc_enotdir() -> i32 {
    rustix::io::Errno::NOTDIR.raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/", root.join("toroot")).unwrap();
        symlink("../../..", root.join("real/up")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        let r = |p: &str| resolve(root, Path::new(p), true, OnEscape::Clamp).unwrap();
        assert_eq!(r("toroot/etc/passwd"), PathBuf::from("etc/passwd"));
        assert_eq!(r("real/up/x"), PathBuf::from("x"));
        assert_eq!(r("abs/sub"), PathBuf::from("real/sub"));
        assert_eq!(r("/../../real"), PathBuf::from("real"));
        assert_eq!(r("missing/../real"), PathBuf::from("real"));
        assert_eq!(
            resolve(root, Path::new("abs"), false, OnEscape::Clamp).unwrap(),
            PathBuf::from("abs")
        );
        assert!(matches!(
            resolve(root, Path::new("loop"), true, OnEscape::Clamp),
            Err(ResolveError::TooManyLinks)
        ));
        assert!(matches!(
            resolve(root, Path::new("toroot/x"), true, OnEscape::Fail),
            Err(ResolveError::Escapes)
        ));
        assert!(matches!(
            resolve(root, Path::new("real/up/x"), true, OnEscape::Fail),
            Err(ResolveError::Escapes)
        ));
    }
}
