//! `RUN --mount=type=cache`: persistent directories shared by the builds of one store, with
//! BuildKit's options.
//!
//! A cache is identified as BuildKit identifies it: by its `id` (default: the target) and by the
//! snapshot it starts from. That base is empty, or `from=` (the stage or image, by content), or,
//! when `uid`/`gid`/`mode` are given without a `source`, a directory BuildKit makes with those
//! (which then replaces even `from`'s contents: BuildKit mounts that new directory). With a
//! `source`, BuildKit ignores `uid`/`gid`/`mode` and the cache starts as a writable, persistent
//! copy of that path (owners and modes kept). Unlike BuildKit, which keeps the whole of `from`
//! per cache and mounts the subpath, only `source` is copied, so it is part of the identity too.
//!
//! On disk, each identity is a family directory under `<store>/cache-mounts/` holding numbered
//! instances `N/` and, next to each, a lock file `N.lock`:
//!
//! - `shared` takes a shared `flock` on instance 0: any number of steps use it at once;
//! - `locked` takes an exclusive `flock` on instance 0: one step at a time, in any process or
//!   thread (each guard opens its own file, so even threads of one process exclude each other);
//!   it also waits for `shared` users, and they for it;
//! - `private` takes the first instance whose exclusive `flock` is free, making a new one when
//!   all are held: concurrent steps never share, later ones reuse what is free.
//!
//! The kernel releases a `flock` when its process dies, so a killed build never leaves a cache
//! locked. An instance is built under a temporary name (`.tmp-*`) and renamed into place only when
//! complete, under the family's `.create.lock`; whoever takes that lock next deletes temporaries
//! left by killed builds, so a half-made instance is never used.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rbuild_dockerfile::CacheSharing;
use rbuild_sandbox::{MountKind, MountSpec, Sandbox};
use rustix::fs::FlockOperation;

use crate::BuildError;

/// One cache mount as the step asks for it.
pub(crate) struct CacheMountSpec<'a> {
    /// Where the step sees it.
    pub target: &'a str,
    /// `id=`; the target when absent.
    pub id: Option<&'a str>,
    /// `ro`: mounted read-only (the cache is still created and locked as asked).
    pub read_only: bool,
    /// `sharing=`.
    pub sharing: CacheSharing,
    /// `mode=` of a new cache directory (default 0755); ignored with a `source`, where the copy
    /// keeps the seed's own.
    pub mode: Option<u32>,
    /// `uid=` of a new cache directory (default 0); ignored with a `source`.
    pub uid: Option<u32>,
    /// `gid=` of a new cache directory (default 0); ignored with a `source`.
    pub gid: Option<u32>,
    /// `from=` + `source=`: what a new cache starts as.
    pub seed: Option<CacheSeed<'a>>,
}

/// The contents a new cache starts from: a path of another stage or image.
pub(crate) struct CacheSeed<'a> {
    /// Which stage or image, stable across builds and processes (its layer chain).
    pub base: String,
    /// `source=`, as an absolute path in `base` (`/` by default).
    pub source: PathBuf,
    /// Opens the stage or image and returns the host path of `source` in it; called only when a
    /// new instance has to be made from it, since opening a snapshot may copy a whole tree.
    pub resolve: &'a mut dyn FnMut() -> Result<PathBuf, BuildError>,
}

impl CacheSeed<'_> {
    fn whole(&self) -> bool {
        self.source == Path::new("/")
    }
}

impl CacheMountSpec<'_> {
    /// Whether `uid`/`gid`/`mode` make the cache's directory (BuildKit ignores them with a
    /// `source`).
    fn sets_dir(&self) -> bool {
        (self.mode.is_some() || self.uid.is_some() || self.gid.is_some())
            && self.seed.as_ref().is_none_or(CacheSeed::whole)
    }

    /// Whether a new cache is a copy of the seed rather than a new directory.
    fn copies_seed(&self) -> bool {
        self.seed.is_some() && !self.sets_dir()
    }
}

/// Keeps the cache instance's lock until the step has run; drop it after the sandbox returns.
#[must_use = "the cache is unlocked when the guard drops"]
pub(crate) struct CacheMountGuard {
    _lock: File,
}

/// The lock and bind mount for one cache mount of a step, creating the cache if needed. Blocks
/// while another holder has a `locked` cache (or a `shared` one, for `locked`).
pub(crate) fn prepare(
    store: &rbuild_store::Store,
    sandbox: &Sandbox,
    spec: CacheMountSpec<'_>,
) -> Result<(MountSpec, CacheMountGuard), BuildError> {
    let family = family_dir(store.root(), &spec);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&family)
        .map_err(|e| BuildError::io(&family, e))?;
    let (n, lock) = match spec.sharing {
        CacheSharing::Shared => (0, lock(&family, 0, FlockOperation::LockShared)?),
        CacheSharing::Locked => (0, lock(&family, 0, FlockOperation::LockExclusive)?),
        CacheSharing::Private => {
            let mut n = 0u32;
            loop {
                match try_lock(&family, n)? {
                    Some(l) => break (n, l),
                    None => n += 1,
                }
            }
        }
    };
    let dir = family.join(n.to_string());
    if !exists(&dir)? {
        let seed = if spec.copies_seed() { spec.seed } else { None };
        create_instance(sandbox, &family, &dir, spec.mode, spec.uid, spec.gid, seed)?;
    }
    Ok((
        MountSpec {
            target: spec.target.to_string(),
            kind: MountKind::Bind {
                source: dir,
                readonly: spec.read_only,
            },
        },
        CacheMountGuard { _lock: lock },
    ))
}

/// `<root>/cache-mounts/<readable id>-<digest of the identity>`.
fn family_dir(root: &Path, spec: &CacheMountSpec<'_>) -> PathBuf {
    let id = spec.id.unwrap_or(spec.target);
    let mut identity = format!("id={id}\n");
    if let Some(seed) = &spec.seed {
        identity.push_str(&format!("from={}\n", seed.base));
        if !seed.whole() {
            identity.push_str(&format!("source={}\n", seed.source.display()));
        }
    }
    if spec.sets_dir() {
        identity.push_str(&format!(
            "mode={:?} uid={:?} gid={:?}\n",
            spec.mode, spec.uid, spec.gid
        ));
    }
    let readable: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    root.join("cache-mounts").join(format!(
        "{readable}-{}",
        rbuild_digest::Digest::of(identity.as_bytes()).short()
    ))
}

fn open_lock(family: &Path, n: u32) -> Result<(PathBuf, File), BuildError> {
    let path = family.join(format!("{n}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| BuildError::io(&path, e))?;
    Ok((path, file))
}

/// Takes `op` on instance `n`'s lock file, waiting as long as it takes.
fn lock(family: &Path, n: u32, op: FlockOperation) -> Result<File, BuildError> {
    let (path, file) = open_lock(family, n)?;
    flock(&file, op).map_err(|e| BuildError::io(&path, e))?;
    Ok(file)
}

/// Instance `n`'s exclusive lock if nobody holds it now.
fn try_lock(family: &Path, n: u32) -> Result<Option<File>, BuildError> {
    let (path, file) = open_lock(family, n)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(BuildError::io(&path, e)),
    }
}

/// `flock`, retried when a signal interrupts the wait.
fn flock(file: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

fn exists(path: &Path) -> Result<bool, BuildError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(BuildError::io(path, e)),
    }
}

fn sandbox_err(path: &Path, e: rbuild_sandbox::SandboxError) -> BuildError {
    BuildError::io(path, io::Error::other(e.to_string()))
}

/// Makes instance `dir` complete under a temporary name, then renames it into place: a copy of
/// `seed`, or a new directory with `mode`/`uid`/`gid`.
fn create_instance(
    sandbox: &Sandbox,
    family: &Path,
    dir: &Path,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    seed: Option<CacheSeed<'_>>,
) -> Result<(), BuildError> {
    // Instances are only ever made under this lock, so every temporary seen while holding it
    // belongs to a build that died.
    let create = family.join(".create.lock");
    let guard = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&create)
        .map_err(|e| BuildError::io(&create, e))?;
    flock(&guard, FlockOperation::LockExclusive).map_err(|e| BuildError::io(&create, e))?;
    if exists(dir)? {
        return Ok(()); // a shared user made it while we waited
    }
    for entry in std::fs::read_dir(family).map_err(|e| BuildError::io(family, e))? {
        let entry = entry.map_err(|e| BuildError::io(family, e))?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            let stale = entry.path();
            // What a seed copy or a chown left may belong to subordinate ids.
            sandbox
                .remove_tree(&stale)
                .map_err(|e| sandbox_err(&stale, e))?;
        }
    }
    let tmp = family.join(format!(".tmp-{}", std::process::id()));
    let (owner, mode) = match seed {
        None => {
            std::fs::create_dir(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
            // Created by us, the directory already is container root's (0:0).
            let owner = (uid.unwrap_or(0), gid.unwrap_or(0));
            (
                (owner != (0, 0)).then_some(owner),
                Some(mode.unwrap_or(0o755)),
            )
        }
        Some(seed) => {
            let src = (seed.resolve)()?;
            sandbox
                .copy_tree(&src, &tmp)
                .map_err(|e| sandbox_err(&tmp, e))?;
            (None, None)
        }
    };
    if owner.is_some() || mode.is_some() {
        sandbox
            .set_owner_mode(&tmp, owner, mode)
            .map_err(|e| sandbox_err(&tmp, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| BuildError::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: Option<&str>) -> CacheMountSpec<'_> {
        CacheMountSpec {
            target: "/cache",
            id,
            read_only: false,
            sharing: CacheSharing::Shared,
            mode: None,
            uid: None,
            gid: None,
            seed: None,
        }
    }

    #[test]
    fn identity_is_the_id_and_what_a_new_cache_starts_as() {
        let root = Path::new("/s");
        let plain = family_dir(root, &spec(None));
        // The id defaults to the target; sharing and ro are not part of the identity.
        assert_eq!(plain, family_dir(root, &spec(Some("/cache"))));
        let mut locked = spec(None);
        locked.sharing = CacheSharing::Locked;
        locked.read_only = true;
        assert_eq!(plain, family_dir(root, &locked));
        assert_ne!(plain, family_dir(root, &spec(Some("other"))));
        let mut owned = spec(None);
        owned.uid = Some(1000);
        assert_ne!(plain, family_dir(root, &owned));
        let mut resolve = || -> Result<PathBuf, BuildError> { Ok(PathBuf::new()) };
        let mut seeded = spec(None);
        seeded.seed = Some(CacheSeed {
            base: "chain-a".into(),
            source: "/src".into(),
            resolve: &mut resolve,
        });
        let from_src = family_dir(root, &seeded);
        assert_ne!(plain, from_src);
        assert!(seeded.copies_seed());
        // With a source, BuildKit ignores uid/gid/mode: same cache, still the copy.
        seeded.uid = Some(7);
        assert_eq!(from_src, family_dir(root, &seeded));
        assert!(seeded.copies_seed());
        // Without one, they make a new directory instead of the copy: another cache.
        let mut resolve = || -> Result<PathBuf, BuildError> { Ok(PathBuf::new()) };
        let mut whole = spec(None);
        whole.seed = Some(CacheSeed {
            base: "chain-a".into(),
            source: "/".into(),
            resolve: &mut resolve,
        });
        let from_root = family_dir(root, &whole);
        assert!(whole.copies_seed());
        whole.mode = Some(0o711);
        assert!(!whole.copies_seed());
        assert_ne!(from_root, family_dir(root, &whole));
        assert_ne!(from_root, from_src);
        assert!(plain.starts_with("/s/cache-mounts"));
        assert!(plain
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("_cache-"));
    }
}
