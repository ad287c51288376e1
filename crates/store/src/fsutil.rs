//! Small filesystem helpers: locked temp files, atomic replace, stale-ingest sweeping, forced tree
//! removal.

use rbuild_digest::Digest;
use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher as _};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;

use crate::error::{io_err, StoreError};

/// A temp entry whose writer is alive is never removed; one whose lock is free is removed when its
/// writer pid is dead, or regardless once it is this old (pid reuse, foreign pid namespace).
pub(crate) const STALE_AGE: Duration = Duration::from_secs(60 * 60);

/// A random 64-bit value as hex; `RandomState` is seeded from the OS per instance, so no RNG crate
/// and no global state is needed.
pub(crate) fn random_hex() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Name prefix of every temp entry: the owning pid, so sweepers can tell dead writers.
pub(crate) fn temp_name(extra: &str) -> String {
    let pid = std::process::id();
    if extra.is_empty() {
        format!("{pid}-{}", random_hex())
    } else {
        format!("{pid}-{extra}-{}", random_hex())
    }
}

/// Takes a flock, retrying when a signal interrupts the wait.
pub(crate) fn flock(file: &File, op: FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Creates a fresh file in `dir` that this process holds an exclusive flock on for as long as the
/// `File` is open, so sweepers in any process can see that it is in use.
pub(crate) fn create_locked_temp(dir: &Path) -> Result<(PathBuf, File), StoreError> {
    loop {
        let path = dir.join(temp_name(""));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
        {
            Ok(file) => {
                if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    let _ = fs::remove_file(&path);
                    return Err(io_err("lock", path)(e));
                }
                return Ok((path, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create", path)(e)),
        }
    }
}

/// Fsyncs a directory so a rename or unlink inside it survives a power loss.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Replaces `dest` with `bytes` atomically: readers see the old or the new content, never a mix.
/// The temp file lives in `tmp_dir` (same filesystem) so a crash leaves only a sweepable temp.
pub(crate) fn atomic_write(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let (tmp, mut file) = create_locked_temp(tmp_dir)?;
    let result = (|| {
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, dest).map_err(io_err("rename into place", dest))?;
        match dest.parent() {
            Some(parent) => fsync_dir(parent),
            None => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether the process that owns a temp entry (pid before the first `-`) is gone.
fn owner_is_dead(name: &str) -> bool {
    let pid = name
        .split('-')
        .next()
        .and_then(|p| p.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw);
    match pid {
        None => true,
        Some(pid) => matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
    }
}

/// Removes the entries of `dir` (files or directories) that no live writer holds: their flock is free
/// and their owner pid is dead, or they are older than [`STALE_AGE`]. Returns how many were removed.
/// Best effort: an entry that cannot be inspected is left for the next sweep.
pub(crate) fn sweep_stale(dir: &Path) -> Result<usize, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            // Nothing the store creates; it cannot be locked, so just drop it.
            if fs::remove_file(&path).is_ok() {
                removed += 1;
            }
            continue;
        }
        let Ok(handle) = OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(&path)
        else {
            continue;
        };
        if flock(&handle, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // a live writer holds it
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > STALE_AGE);
        if !(owner_is_dead(&name) || old) {
            continue;
        }
        let ok = if meta.is_dir() {
            remove_tree_force(&path).is_ok()
        } else {
            fs::remove_file(&path).is_ok()
        };
        if ok {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes a directory tree even when it contains read-only directories (unpacked layers often do,
/// and a rootless user cannot delete entries of a 0555 directory). Never follows symlinks.
pub(crate) fn remove_tree_force(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    make_dirs_writable(path);
    fs::remove_dir_all(path)
}

fn make_dirs_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// The entries of `dir`, none when it does not exist (record directories are created lazily).
pub(crate) fn entries(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    let iter = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    iter.map(|e| e.map_err(io_err("list", dir))).collect()
}

/// The digest a file named by its sha256 hex stands for; `None` for any other name.
pub(crate) fn digest_named(entry: &fs::DirEntry) -> Option<Digest> {
    let name = entry.file_name();
    format!("sha256:{}", name.to_str()?).parse().ok()
}

/// The digests named by the files of `dir` (none if it is missing), sorted.
pub(crate) fn digests_in(dir: &Path) -> Result<Vec<Digest>, StoreError> {
    let mut out: Vec<Digest> = entries(dir)?.iter().filter_map(digest_named).collect();
    out.sort();
    Ok(out)
}
