//! The build context as `RUN --mount=type=bind` without `from=` shows it.
//!
//! BuildKit never binds the user's directory: the step sees the context BuildKit received, which
//! is the directory *as filtered by `.dockerignore`* (`!` exceptions included), and a `rw` mount
//! writes into a scratch copy whose changes are discarded. Binding the real directory would show
//! ignored files (`.env`, `.git`) to the step, and let `RUN --mount=type=bind,rw,… rm -rf /src/*`
//! delete the user's sources. So the engine materializes the filtered context (or only the part
//! `source=` names) into a directory of its own and binds that.
//!
//! The copy is made by [`rbuild_context::copy`], the code COPY uses, so the filter, the resolution of
//! `source=` (symlinks followed inside the context, never out of it) and "not found" for an
//! excluded or missing source are exactly COPY's and the cache key's
//! ([`rbuild_context::Context::digest_sources`]). File data goes through `copy_file_range`, which shares
//! extents (a reflink) where the filesystem can; elsewhere (ext4) it is an in-kernel copy.
//!
//! What the step sees, as docker 20.10 (BuildKit) shows it: every entry owned by 0:0 (the docker
//! CLI resets the context's owners before sending it), modes, symlinks, hard links and mtimes as
//! on the host; the mount's root directory is 0755 when it is the context root, whatever the
//! host directory's mode (BuildKit's context snapshot root is 0755), and keeps its own mode when
//! `source=` names a subdirectory. Where ownership cannot be stored (rootless without a user
//! namespace) the files belong to the caller, which is container root in the step's namespace,
//! so the step still sees 0:0.
//!
//! Cost: one copy of the mounted part per mount of each step that runs (a cached step copies
//! nothing; `source=go.mod` copies one file), as much as `cp -a` of it: creating the inodes
//! dominates (measured on ext4 here, 35 µs to 0.7 ms per small file depending on how recently
//! the filesystem freed inodes; a 256 MiB file in under 0.1 s). Read-only copies are not shared
//! between steps: that needs an owner that lives as long as the build (the stage runner), and a
//! shared copy would have to be checked against the live context, which each step's cache key
//! digests again.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_context::{Context, ContextError, CopyRequest};

use crate::fsutil::real_path_in_root;
use crate::BuildError;

/// The name of the materialized tree inside the directory the caller provides.
const TREE: &str = "context";

/// Characters COPY's source matching would take as a wildcard; a bind `source=` is a literal path.
const WILDCARDS: [char; 3] = ['*', '?', '['];

/// Copies the part of the filtered context that `source` names (a path relative to the context
/// root, `/` for all of it) into `dir`, which must be an empty directory the caller owns and
/// removes, and returns the host path to bind: a directory or a single file.
pub(crate) fn materialize(ctx: &Context, source: &str, dir: &Path) -> Result<PathBuf, BuildError> {
    let source = if source.is_empty() { "/" } else { source };
    let tree = dir.join(TREE);
    if source.contains(WILDCARDS) {
        // COPY would expand these: copy the whole filtered context and look the name up
        // literally in it, as BuildKit does in its context snapshot.
        copy_filtered(ctx, "/", dir)?;
        set_mode(&tree, 0o755)?;
        return real_path_in_root(&tree, Path::new(source)).map_err(|_| not_found(source));
    }
    copy_filtered(ctx, source, dir)?;
    let real = real_path_in_root(ctx.root(), Path::new(source))?;
    let root = std::fs::canonicalize(ctx.root()).map_err(|e| BuildError::io(ctx.root(), e))?;
    match real.strip_prefix(&root) {
        Ok(rel) if rel.as_os_str().is_empty() => set_mode(&tree, 0o755)?,
        // An excluded directory is walked when `!` exceptions exist; BuildKit only received it
        // if something below it was re-included.
        Ok(rel) if ctx.ignore().is_excluded(rel, true) && is_empty_dir(&tree)? => {
            return Err(not_found(source))
        }
        // COPY gives the directory it copies contents into 0755; the mount shows the source's.
        _ => {
            if let (Ok(src), Ok(dst)) = (std::fs::metadata(&real), std::fs::symlink_metadata(&tree))
            {
                if src.is_dir() && dst.is_dir() {
                    set_mode(&tree, src.permissions().mode() & 0o7777)?;
                }
            }
        }
    }
    // COPY skips what it cannot copy (sockets) without an error.
    if std::fs::symlink_metadata(&tree).is_err() {
        return Err(not_found(source));
    }
    Ok(tree)
}

/// COPY of `source` from the context, `.dockerignore` applied, to `dir/context`, owned by 0:0.
fn copy_filtered(ctx: &Context, source: &str, dir: &Path) -> Result<(), BuildError> {
    rbuild_context::copy(&CopyRequest {
        src_root: ctx.root(),
        ignore: Some(ctx.ignore()),
        sources: &[source.to_string()],
        dest: &format!("/{TREE}"),
        workdir: "/",
        dest_root: dir,
        chown: None,
        chmod: None,
        parents: false,
        exclude: &[],
        keep_ownership: false,
        cancel: None,
    })?;
    Ok(())
}

fn not_found(source: &str) -> BuildError {
    BuildError::Context(ContextError::SourceNotFound {
        src: source.to_string(),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io(path, e))
}

fn is_empty_dir(path: &Path) -> Result<bool, BuildError> {
    let md = std::fs::symlink_metadata(path).map_err(|e| BuildError::io(path, e))?;
    if !md.is_dir() {
        return Ok(false);
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| BuildError::io(path, e))?;
    Ok(entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A context with ignored files, an excluded directory with one re-included file, a 0700
    /// root, a 0750 subdirectory and a symlink.
    fn fixture() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(
            p.join(".dockerignore"),
            "secret.txt\nlogs/\n!logs/keep.log\n.git\n",
        )
        .unwrap();
        std::fs::write(p.join("a.txt"), "a").unwrap();
        std::fs::write(p.join("secret.txt"), "s").unwrap();
        std::fs::create_dir_all(p.join("logs")).unwrap();
        std::fs::write(p.join("logs/keep.log"), "k").unwrap();
        std::fs::write(p.join("logs/other.log"), "o").unwrap();
        std::fs::create_dir_all(p.join(".git/objects")).unwrap();
        std::fs::write(p.join(".git/config"), "c").unwrap();
        std::fs::create_dir_all(p.join("sub/deep")).unwrap();
        std::fs::write(p.join("sub/deep/f"), "f").unwrap();
        std::fs::write(p.join("odd[1].txt"), "odd").unwrap();
        std::os::unix::fs::symlink("sub", p.join("tosub")).unwrap();
        std::os::unix::fs::symlink("secret.txt", p.join("tosecret")).unwrap();
        std::fs::set_permissions(p.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for e in std::fs::read_dir(root.join(&rel)).unwrap() {
                let e = e.unwrap();
                let r = rel.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    stack.push(r.clone());
                }
                out.push(r.display().to_string());
            }
        }
        out.sort();
        out
    }

    fn open(d: &tempfile::TempDir) -> Context {
        Context::open(d.path(), None).unwrap()
    }

    #[test]
    fn whole_context_is_filtered_with_exceptions() {
        let d = fixture();
        let out = tempfile::tempdir().unwrap();
        let tree = materialize(&open(&d), "/", out.path()).unwrap();
        assert_eq!(
            listing(&tree),
            [
                ".dockerignore",
                "a.txt",
                "logs",
                "logs/keep.log",
                "odd[1].txt",
                "sub",
                "sub/deep",
                "sub/deep/f",
                "tosecret",
                "tosub",
            ]
        );
        let root = std::fs::metadata(&tree).unwrap();
        assert_eq!(
            root.mode() & 0o7777,
            0o755,
            "the context root shows as 0755"
        );
        let sub = std::fs::metadata(tree.join("sub")).unwrap();
        assert_eq!(sub.mode() & 0o7777, 0o750);
        if rustix::process::geteuid().is_root() {
            for p in ["", "a.txt", "sub/deep/f", "tosub"] {
                let md = std::fs::symlink_metadata(tree.join(p)).unwrap();
                assert_eq!((md.uid(), md.gid()), (0, 0), "{p}");
            }
        }
    }

    #[test]
    fn source_resolves_inside_the_filtered_context() {
        let d = fixture();
        let ctx = open(&d);
        for (source, want) in [
            ("sub", vec!["deep", "deep/f"]),
            ("tosub/deep", vec!["f"]),
            ("logs", vec!["keep.log"]),
        ] {
            let out = tempfile::tempdir().unwrap();
            let tree = materialize(&ctx, source, out.path()).unwrap();
            assert_eq!(listing(&tree), want, "{source}");
        }
        let out = tempfile::tempdir().unwrap();
        let tree = materialize(&ctx, "tosub", out.path()).unwrap();
        let md = std::fs::metadata(&tree).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o750, "a subdirectory keeps its mode");
        let out = tempfile::tempdir().unwrap();
        let file = materialize(&ctx, "logs/keep.log", out.path()).unwrap();
        assert_eq!(std::fs::read(file).unwrap(), b"k");
        let out = tempfile::tempdir().unwrap();
        let odd = materialize(&ctx, "odd[1].txt", out.path()).unwrap();
        assert_eq!(
            std::fs::read(odd).unwrap(),
            b"odd",
            "wildcard characters are literal"
        );
    }

    #[test]
    fn excluded_or_missing_sources_are_not_found() {
        let d = fixture();
        let _sock = std::os::unix::net::UnixListener::bind(d.path().join("sock")).unwrap();
        let ctx = open(&d);
        for source in [
            "sock",
            "secret.txt",
            "tosecret",
            "logs/other.log",
            ".git",
            ".git/config",
            "missing",
            "sub/missing",
            "a[.txt",
            "*.txt",
        ] {
            let out = tempfile::tempdir().unwrap();
            let err = materialize(&ctx, source, out.path())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{source:?}: not found")),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn escaping_sources_are_refused() {
        let d = fixture();
        std::os::unix::fs::symlink("/etc", d.path().join("out")).unwrap();
        let ctx = open(&d);
        let out = tempfile::tempdir().unwrap();
        let err = materialize(&ctx, "out/passwd", out.path()).unwrap_err();
        assert!(
            err.to_string().contains("out/passwd"),
            "the error names the source: {err}"
        );
        assert!(!out.path().join(TREE).exists());
    }
}
