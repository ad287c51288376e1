//! Regular-file creation for the applier, inline or on writer threads.
//!
//! Creating inodes is what bounds unpacking a base image (the tar decode is a small part), and
//! `open(O_CREAT)` holds the parent directory's lock for the whole inode allocation, so two
//! threads creating files in one directory would just queue. Files are therefore made as
//! `O_TMPFILE` inodes in the (already resolved) parent directory, filled, and only then linked
//! under their name: the slow allocation runs outside the directory lock and writer threads
//! overlap. Filesystems without `O_TMPFILE` get the plain `O_CREAT | O_EXCL` path.
//!
//! Every job carries the parent directory as an fd resolved inside the root by the applier's main
//! thread, and a single name component; nothing here resolves a path, so the applier's
//! `RESOLVE_IN_ROOT` guarantees carry over unchanged.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, OFlags, Timestamps, Uid, XattrFlags, CWD};
use rustix::io::Errno;

use super::{errno_io, lossy};
use crate::LayerError;

/// Files up to this size are read into memory and handed to a writer thread; bigger ones are
/// streamed by the main thread. Bounds memory: at most `QUEUE` such bodies (16 MiB) wait.
pub(super) const POOLED_MAX: u64 = 256 * 1024;
/// Jobs queued for the writers before the main thread blocks.
pub(super) const QUEUE: usize = 64;

/// What a regular file needs besides its body.
pub(super) struct FileMeta {
    pub owner: Option<(Uid, Gid)>,
    pub mode: Mode,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub times: Timestamps,
}

/// Side results of applying one entry that must be merged into the layer's stats in tar order.
#[derive(Default)]
pub(super) struct Notes {
    pub warnings: Vec<String>,
    /// The ids (e.g. "uid 1000") that could not be given to this entry.
    pub unmapped: Option<String>,
}

/// What a job creates.
pub(super) enum Body {
    /// A regular file with this content.
    Bytes(Vec<u8>),
    /// A symlink to this target.
    Symlink(Vec<u8>),
}

/// A regular file or symlink for a writer thread.
pub(super) struct FileJob {
    pub seq: u64,
    pub key: Vec<u8>,
    pub path: String,
    pub dir: Arc<OwnedFd>,
    pub name: Vec<u8>,
    pub body: Body,
    pub meta: FileMeta,
}

/// Creates what `job` describes; used by the writers and by the main thread when it has none.
pub(super) fn run_job(
    root: &Path,
    job: &FileJob,
    tmpfile: &AtomicBool,
    notes: &mut Notes,
) -> Result<(), LayerError> {
    match &job.body {
        Body::Bytes(b) => write_regular(
            root,
            &job.path,
            &job.dir,
            &job.name,
            &mut &b[..],
            b.len() as u64,
            &job.meta,
            tmpfile,
            notes,
        )
        .map(|_| ()),
        Body::Symlink(target) => make_symlink(root, job, target, notes),
    }
}

/// Creates the symlink of `job` (its name in its directory, never followed) and its metadata.
fn make_symlink(
    root: &Path,
    job: &FileJob,
    target: &[u8],
    notes: &mut Notes,
) -> Result<(), LayerError> {
    let errno = |e: Errno| LayerError::Apply {
        root: root.to_path_buf(),
        path: job.path.clone(),
        source: errno_io(e),
    };
    let name = OsStr::from_bytes(&job.name);
    let dir = &*job.dir;
    rfs::symlinkat(OsStr::from_bytes(target), dir, name).map_err(errno)?;
    if let Some((u, g)) = job.meta.owner {
        notes.unmapped = chown_mapped(u, g, |u, g| {
            rfs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
        })
        .map_err(errno)?;
    }
    if !job.meta.xattrs.is_empty() {
        notes
            .warnings
            .push(format!("{}: xattrs on a symlink are not applied", job.path));
    }
    rfs::utimensat(dir, name, &job.meta.times, AtFlags::SYMLINK_NOFOLLOW).map_err(errno)
}

/// A finished [`FileJob`].
pub(super) struct Outcome {
    pub seq: u64,
    pub key: Vec<u8>,
    pub path: String,
    pub notes: Notes,
    pub result: Result<(), LayerError>,
}

/// Sets the owner with `chown`; an id the current user namespace cannot represent (`EINVAL`) is
/// left as the applying user's, as moby does in a user namespace, trying uid and gid one at a
/// time so the mapped one still lands. Returns the ids that could not be set.
pub(super) fn chown_mapped(
    uid: Uid,
    gid: Gid,
    chown: impl Fn(Option<Uid>, Option<Gid>) -> Result<(), Errno>,
) -> Result<Option<String>, Errno> {
    match chown(Some(uid), Some(gid)) {
        Ok(()) => return Ok(None),
        Err(Errno::INVAL) => {}
        Err(e) => return Err(e),
    }
    let mut unmapped = Vec::new();
    for (r, what) in [
        (chown(Some(uid), None), format!("uid {}", uid.as_raw())),
        (chown(None, Some(gid)), format!("gid {}", gid.as_raw())),
    ] {
        match r {
            Ok(()) => {}
            Err(Errno::INVAL) => unmapped.push(what),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(unmapped.join(", ")))
}

/// Sets xattrs on `fd`; the ones this process may not set become warnings.
pub(super) fn set_xattrs(
    fd: &OwnedFd,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    path: &str,
    notes: &mut Notes,
) -> Result<(), Errno> {
    for (name, value) in xattrs {
        match rfs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(e @ (Errno::PERM | Errno::OPNOTSUPP | Errno::ACCESS)) => {
                notes
                    .warnings
                    .push(format!("{path}: xattr {} not set: {e}", lossy(name)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates the regular file `name` in `dir` with `want` bytes from `body` and its metadata.
/// `tmpfile` remembers (per layer) whether the filesystem supports `O_TMPFILE`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_regular(
    root: &Path,
    path: &str,
    dir: &OwnedFd,
    name: &[u8],
    body: &mut dyn Read,
    want: u64,
    meta: &FileMeta,
    tmpfile: &AtomicBool,
    notes: &mut Notes,
) -> Result<u64, LayerError> {
    let err = |e: io::Error| LayerError::Apply {
        root: root.to_path_buf(),
        path: path.to_string(),
        source: e,
    };
    let errno = |e: Errno| err(errno_io(e));
    let name = OsStr::from_bytes(name);
    let private = Mode::from_raw_mode(0o600);
    let mut anon = None;
    if tmpfile.load(Ordering::Relaxed) {
        match rfs::openat(
            dir,
            ".",
            // Readable too, so the content can be copied out if it cannot be linked.
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            private,
        ) {
            Ok(fd) => anon = Some(fd),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {
                tmpfile.store(false, Ordering::Relaxed);
            }
            Err(e) => return Err(errno(e)),
        }
    }
    let named = anon.is_none();
    let create = || {
        rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            private,
        )
    };
    let fd = match anon {
        Some(fd) => fd,
        None => create().map_err(errno)?,
    };
    let mut file = File::from(fd);
    let got = copy(body, &mut file, want).map_err(err)?;
    if got != want {
        return Err(err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("entry body has {got} of {want} bytes"),
        )));
    }
    let mut fd = OwnedFd::from(file);
    if !named {
        match link_anon(&fd, dir, name) {
            Ok(()) => {}
            Err(Errno::EXIST) => return Err(errno(Errno::EXIST)),
            // No way to name it here (no /proc, say): stop using O_TMPFILE for this layer and
            // copy what was written into a file created under its name.
            Err(_) => {
                tmpfile.store(false, Ordering::Relaxed);
                let mut anon = File::from(fd);
                let mut out = File::from(create().map_err(errno)?);
                anon.seek(io::SeekFrom::Start(0)).map_err(err)?;
                io::copy(&mut anon, &mut out).map_err(err)?;
                fd = OwnedFd::from(out);
            }
        }
    }
    // Owner first: chown clears setuid bits and `security.capability`; times last.
    let mut mode = meta.mode;
    if let Some((u, g)) = meta.owner {
        notes.unmapped = chown_mapped(u, g, |u, g| rfs::fchown(&fd, u, g)).map_err(errno)?;
        if let Some(ids) = &mut notes.unmapped {
            // The file stays the applying user's (container root): its setuid/setgid bits
            // would grant that user's privileges, which the layer never gave.
            if mode.as_raw_mode() & 0o6000 != 0 {
                mode = Mode::from_raw_mode(mode.as_raw_mode() & !0o6000);
                ids.push_str(" (setuid/setgid bits cleared)");
            }
        }
    }
    rfs::fchmod(&fd, mode).map_err(errno)?;
    set_xattrs(&fd, &meta.xattrs, path, notes).map_err(errno)?;
    rfs::futimens(&fd, &meta.times).map_err(errno)?;
    Ok(got)
}

/// Gives the `O_TMPFILE` inode `fd` the name `name` in `dir` (never replacing anything).
fn link_anon(fd: &OwnedFd, dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    match rfs::linkat(fd, "", dir, name, AtFlags::EMPTY_PATH) {
        // Without CAP_DAC_READ_SEARCH older kernels refuse AT_EMPTY_PATH; the /proc link of an
        // fd we hold is the documented way round.
        Err(Errno::NOENT | Errno::PERM) => {
            let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
            rfs::linkat(CWD, proc.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
        }
        other => other,
    }
}

/// `io::copy` with a larger buffer and an upper bound, so a file body is moved in few syscalls.
fn copy(from: &mut dyn Read, to: &mut File, want: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; usize::try_from(want.min(256 * 1024)).unwrap_or(256 * 1024)];
    let mut done = 0u64;
    while done < want {
        let room = usize::try_from((want - done).min(buf.len() as u64)).unwrap_or(buf.len());
        let Some(chunk) = buf.get_mut(..room) else {
            break;
        };
        let n = match from.read(chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(chunk.get(..n).unwrap_or_default())?;
        done += n as u64;
    }
    Ok(done)
}

/// Runs jobs until the queue is closed.
pub(super) fn worker(
    root: &Path,
    jobs: &Mutex<Receiver<FileJob>>,
    done: &std::sync::mpsc::Sender<Outcome>,
    tmpfile: &AtomicBool,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut notes = Notes::default();
        // A bug that panics here must become this entry's error: the main thread waits for
        // every job it queued, and a silently dead writer would leave it waiting forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_job(root, &job, tmpfile, &mut notes)
        }))
        .unwrap_or_else(|_| {
            Err(LayerError::Apply {
                root: root.to_path_buf(),
                path: job.path.clone(),
                source: io::Error::other("writer thread panicked"),
            })
        });
        let out = Outcome {
            seq: job.seq,
            key: job.key,
            path: job.path,
            notes,
            result,
        };
        if done.send(out).is_err() {
            return;
        }
    }
}

/// The main thread's end of the writer threads: what is in flight and what came back.
pub(super) struct Pool {
    pub jobs: Option<SyncSender<FileJob>>,
    pub done: Receiver<Outcome>,
    /// Files handed out and not yet reported back: key (joined cleaned path) to (seq, path).
    pub pending: HashMap<Vec<u8>, (u64, String)>,
    /// Outcomes received, merged into the stats in tar order at the end.
    pub finished: Vec<Outcome>,
    /// Where errors say the layer was going.
    pub root: std::path::PathBuf,
    /// Whether any outcome in `finished` is an error (checked once per entry, so kept, not
    /// searched for).
    pub any_failed: bool,
}

impl Pool {
    fn take(&mut self, o: Outcome) {
        self.pending.remove(&o.key);
        self.any_failed |= o.result.is_err();
        self.finished.push(o);
    }

    /// Waits for one outcome; if every writer is gone, the jobs still in flight fail.
    fn recv_one(&mut self) {
        match self.done.recv() {
            Ok(o) => self.take(o),
            Err(_) => {
                for (key, (seq, path)) in std::mem::take(&mut self.pending) {
                    self.any_failed = true;
                    let source = io::Error::other("the file writer thread stopped");
                    self.finished.push(Outcome {
                        seq,
                        key,
                        path: path.clone(),
                        notes: Notes::default(),
                        result: Err(LayerError::Apply {
                            root: self.root.clone(),
                            path,
                            source,
                        }),
                    });
                }
            }
        }
    }

    /// Collects whatever has finished without blocking; true when a job has failed (the applier
    /// then stops handing out work and reports the first failure in tar order).
    pub fn poll(&mut self) -> bool {
        while let Ok(o) = self.done.try_recv() {
            self.take(o);
        }
        self.failed()
    }

    /// True once any job has failed.
    pub fn failed(&self) -> bool {
        self.any_failed
    }

    /// Waits until no job for `key` is in flight.
    pub fn wait_for(&mut self, key: &[u8]) {
        while self.pending.contains_key(key) {
            self.recv_one();
        }
    }

    /// Waits until every job handed out has finished.
    pub fn drain(&mut self) {
        while !self.pending.is_empty() {
            self.recv_one();
        }
    }
}
