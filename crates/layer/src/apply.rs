//! Applying a layer tar to a rootfs without ever leaving the root.
//!
//! Every entry is split into "parent directory" and "final name". The parent is opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the root fd, so symlinks in the
//! path are followed the way they would be inside a chroot of the root and never beyond it. All
//! changes are then made with `*at` calls on that directory fd and a single path component, with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, so the final component is never followed either.
//!
//! Creating inodes, not reading the tar, bounds how fast a base image is laid down, so small
//! regular files and symlinks are handed (with their already resolved parent directory fd) to
//! writer threads while the main thread reads on (see `files`). The main thread keeps the tar
//! order where it matters: an entry waits for queued work on its own path and the paths above it
//! (and a hardlink for its target), anything that removes waits for all of it, and the error and
//! warnings reported are those a one-thread apply would give.

mod files;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, CWD,
};
use rustix::io::Errno;

use crate::{LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// One contiguous range of a uid or gid map, in the same shape as `/proc/PID/uid_map`, so the
/// rootless engine can hand its user-namespace mapping straight through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container (as stored in the tar).
    pub container: u32,
    /// First id on the host it maps to.
    pub host: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// Translates the ids stored in a layer to the ids files get on disk, for rootless builds whose
/// rootfs lives in a user namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    /// uid ranges.
    pub uids: Vec<IdRange>,
    /// gid ranges.
    pub gids: Vec<IdRange>,
}

impl IdMap {
    /// A single shifted range, the common rootless case (`container 0..size` at `host..host+size`).
    pub fn shifted(host: u32, size: u32) -> Self {
        let r = IdRange {
            container: 0,
            host,
            size,
        };
        IdMap {
            uids: vec![r],
            gids: vec![r],
        }
    }

    fn map(ranges: &[IdRange], id: u64) -> Option<u32> {
        ranges.iter().find_map(|r| {
            let off = id.checked_sub(u64::from(r.container))?;
            if off < u64::from(r.size) {
                u32::try_from(u64::from(r.host) + off).ok()
            } else {
                None
            }
        })
    }

    /// Host uid for a container uid, `None` when it is not mapped.
    pub fn map_uid(&self, id: u64) -> Option<u32> {
        Self::map(&self.uids, id)
    }

    /// Host gid for a container gid, `None` when it is not mapped.
    pub fn map_gid(&self, id: u64) -> Option<u32> {
        Self::map(&self.gids, id)
    }

    fn unmap(ranges: &[IdRange], host: u32) -> Option<u32> {
        ranges.iter().find_map(|r| {
            let off = host.checked_sub(r.host)?;
            if off < r.size {
                r.container.checked_add(off)
            } else {
                None
            }
        })
    }

    /// Container uid for a host uid, `None` when no range covers it; lets a rootless writer record
    /// the ids a step saw inside its user namespace instead of the host's subordinate ids.
    pub fn to_container_uid(&self, host: u32) -> Option<u32> {
        Self::unmap(&self.uids, host)
    }

    /// Container gid for a host gid, `None` when no range covers it (see [`IdMap::to_container_uid`]).
    pub fn to_container_gid(&self, host: u32) -> Option<u32> {
        Self::unmap(&self.gids, host)
    }
}

/// How to lay a layer down; the defaults suit an unprivileged build that does not care about
/// ownership.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Chown entries to the uid/gid in the tar (after `id_map`); off by default because only root
    /// (or a user namespace) may do it.
    pub same_owner: bool,
    /// Optional container-to-host id translation for rootless operation.
    pub id_map: Option<IdMap>,
}

/// What applying a layer did, so callers can report progress and surface what had to be skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (including whiteouts).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Things skipped because this process may not do them (device nodes, privileged xattrs).
    pub warnings: Vec<String>,
    /// Character/block devices not created because this process may not (`mknod` refused, as in
    /// a user namespace); the rootfs still works for builds, which rarely need real devices.
    pub skipped_devices: u64,
    /// Entries whose owner could not be set because the id has no mapping in this user
    /// namespace; they keep the applying user as owner, as moby does in a user namespace.
    pub unmapped_owners: u64,
}

/// Lexically cleans a tar path into its components; `Ok(None)` means it would leave the root.
/// Leading `/` and `./` are dropped (a tar's absolute paths are relative to the root, as Docker
/// treats them).
pub(crate) fn clean_components(raw: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Everything the per-entry code needs, bundled so helpers stay small.
struct Ctx<'a> {
    root: &'a Path,
    root_fd: OwnedFd,
    opts: &'a ApplyOptions,
    stats: ApplyStats,
    /// Paths (joined, cleaned) created or touched by this layer; opaque markers keep these.
    unpacked: HashSet<Vec<u8>>,
    /// Directories whose mode and mtime are set once all their children exist (a read-only
    /// directory must not block its own children; adding children bumps mtime).
    dir_times: Vec<(Vec<Vec<u8>>, Mode, Timestamps)>,
    /// Entry currently being applied, for error messages.
    cur: String,
    /// Position of the current entry in the tar, to merge notes and pick the first error in tar
    /// order when writer threads are involved.
    seq: u64,
    /// Warnings with the entry position they belong to.
    warnings: Vec<(u64, String)>,
    /// Entries whose owner could not be set: position, path, the ids.
    unmapped: Vec<(u64, String, String)>,
    /// The last parent directory opened, by joined path; consecutive entries of one directory
    /// reuse it. Dropped whenever anything is removed, the only way a resolved directory can stop
    /// being what its path names.
    parent: Option<(Vec<u8>, Arc<OwnedFd>)>,
    /// Writer threads for regular files, when they could be started.
    pool: Option<files::Pool>,
    /// Whether the filesystem takes `O_TMPFILE` (cleared on the first refusal).
    tmpfile: &'a AtomicBool,
}

impl Ctx<'_> {
    fn err(&self, e: impl Into<io::Error>) -> LayerError {
        LayerError::Apply {
            root: self.root.to_path_buf(),
            path: self.cur.clone(),
            source: e.into(),
        }
    }

    fn errno(&self, e: Errno) -> LayerError {
        self.err(errno_io(e))
    }

    fn invalid(&self, reason: impl Into<String>) -> LayerError {
        LayerError::InvalidEntry {
            path: self.cur.clone(),
            reason: reason.into(),
        }
    }

    /// Opens `comps` (resolved inside the root) as a directory. With `create`, missing components
    /// are made (0755, like Docker) one by one, each inside the already-resolved parent.
    /// Returns `Ok(None)` when the directory does not exist and `create` is false.
    fn open_dir(
        &self,
        comps: &[Vec<u8>],
        create: bool,
        flags: OFlags,
    ) -> Result<Option<OwnedFd>, LayerError> {
        match self.resolve(comps, flags) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.errno(e)),
        }
        if !create {
            return Ok(None);
        }
        let mut cur = self.resolve(&[], OFlags::PATH).map_err(|e| self.errno(e))?;
        for (i, name) in comps.iter().enumerate() {
            let prefix = &comps[..=i];
            match self.resolve(prefix, OFlags::PATH) {
                Ok(fd) => cur = fd,
                Err(Errno::NOENT) => {
                    match rfs::mkdirat(&cur, OsStr::from_bytes(name), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(self.errno(e)),
                    }
                    cur = self
                        .resolve(prefix, OFlags::PATH)
                        .map_err(|e| self.errno(e))?;
                }
                Err(e) => return Err(self.errno(e)),
            }
        }
        if flags.contains(OFlags::PATH) {
            Ok(Some(cur))
        } else {
            self.resolve(comps, flags)
                .map(Some)
                .map_err(|e| self.errno(e))
        }
    }

    /// The one place paths are resolved: always relative to the root fd, never beyond it.
    fn resolve(&self, comps: &[Vec<u8>], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(comps)
        };
        let mut tries = 0;
        loop {
            let r = rfs::openat2(
                &self.root_fd,
                OsStr::from_bytes(&path),
                flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            );
            match r {
                // The kernel asks for a retry when a rename raced with the lookup.
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    fn warn(&mut self, msg: String) {
        self.warnings.push((self.seq, msg));
    }

    fn note(&mut self, seq: u64, path: &str, notes: files::Notes) {
        for w in notes.warnings {
            self.warnings.push((seq, w));
        }
        if let Some(ids) = notes.unmapped {
            self.unmapped.push((seq, path.to_string(), ids));
        }
    }

    /// Waits for writer jobs on `comps` or any of its prefixes, so this entry sees them on disk.
    fn wait_for_prefixes(&mut self, comps: &[Vec<u8>]) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        for i in 1..=comps.len() {
            if pool.pending.is_empty() {
                return;
            }
            pool.wait_for(&join(comps.get(..i).unwrap_or_default()));
        }
    }

    /// Waits for every writer job; needed before anything is removed.
    fn barrier(&mut self) {
        self.parent = None;
        if let Some(pool) = self.pool.as_mut() {
            pool.drain();
        }
    }

    /// Hands `job` to a writer thread, or runs it here when there are none (left).
    fn dispatch(&mut self, job: files::FileJob) -> Result<(), LayerError> {
        let job = match self.pool.as_mut() {
            Some(pool) => match pool.jobs.as_ref() {
                Some(jobs) => {
                    pool.pending
                        .insert(job.key.clone(), (job.seq, job.path.clone()));
                    match jobs.send(job) {
                        Ok(()) => return Ok(()),
                        Err(std::sync::mpsc::SendError(job)) => {
                            pool.pending.remove(&job.key);
                            pool.jobs = None;
                            job
                        }
                    }
                }
                None => job,
            },
            None => job,
        };
        let mut notes = files::Notes::default();
        files::run_job(self.root, &job, self.tmpfile, &mut notes)?;
        self.note(job.seq, &job.path, notes);
        Ok(())
    }

    /// The parent directory `comps` (created if missing), from the one-entry cache when possible.
    fn parent_dir(&mut self, comps: &[Vec<u8>]) -> Result<Arc<OwnedFd>, LayerError> {
        let key = join(comps);
        if let Some((k, fd)) = &self.parent {
            if *k == key {
                return Ok(fd.clone());
            }
        }
        if !comps.is_empty() && self.pool.as_ref().is_some_and(|p| !p.pending.is_empty()) {
            // A parent reached through a symlink (`l/x` with `l -> d`) may alias a path the
            // writer threads are still filling (`d/x`); wait for them, so this entry meets the
            // tree a sequential apply would and errors do not depend on timing.
            let through_symlink = matches!(
                rfs::openat2(
                    &self.root_fd,
                    OsStr::from_bytes(&key),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
                ),
                Err(Errno::LOOP)
            );
            if through_symlink {
                self.barrier();
            }
        }
        let fd = self
            .open_dir(comps, true, OFlags::PATH)?
            .ok_or_else(|| self.invalid("parent directory could not be created"))?;
        let fd = Arc::new(fd);
        self.parent = Some((key, fd.clone()));
        Ok(fd)
    }

    fn mark_unpacked(&mut self, comps: &[Vec<u8>]) {
        for i in 1..=comps.len() {
            self.unpacked.insert(join(&comps[..i]));
        }
    }

    fn owner(&mut self, uid: u64, gid: u64) -> Option<(Uid, Gid)> {
        if !self.opts.same_owner {
            return None;
        }
        let (u, g) = match &self.opts.id_map {
            Some(m) => match (m.map_uid(uid), m.map_gid(gid)) {
                (Some(u), Some(g)) => (u, g),
                _ => {
                    let msg = format!(
                        "{}: uid {uid}/gid {gid} not in the id map; ownership left as is",
                        self.cur
                    );
                    self.warn(msg);
                    return None;
                }
            },
            None => match (u32::try_from(uid), u32::try_from(gid)) {
                (Ok(u), Ok(g)) => (u, g),
                _ => {
                    let msg = format!(
                        "{}: uid {uid}/gid {gid} out of range; ownership left as is",
                        self.cur
                    );
                    self.warn(msg);
                    return None;
                }
            },
        };
        // SAFETY-free: from_raw only wraps the integer.
        Some((Uid::from_raw(u), Gid::from_raw(g)))
    }

    /// Sets the owner through `chown` (fd- or name-based); ids this user namespace cannot
    /// represent are left as the applying user's and noted (see [`files::chown_mapped`]).
    fn chown(
        &mut self,
        uid: Uid,
        gid: Gid,
        chown: impl Fn(Option<Uid>, Option<Gid>) -> Result<(), Errno>,
    ) -> Result<(), LayerError> {
        if let Some(ids) = files::chown_mapped(uid, gid, chown).map_err(|e| self.errno(e))? {
            self.unmapped.push((self.seq, self.cur.clone(), ids));
        }
        Ok(())
    }

    fn set_xattrs(
        &mut self,
        fd: &OwnedFd,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), LayerError> {
        let mut notes = files::Notes::default();
        let r = files::set_xattrs(fd, xattrs, &self.cur, &mut notes);
        let (seq, cur) = (self.seq, self.cur.clone());
        self.note(seq, &cur, notes);
        r.map_err(|e| self.errno(e))
    }
}

/// Metadata of one entry, pulled out of the tar header and its PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    times: Timestamps,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = match s.split_once('.') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let tv_sec: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let mut tv_nsec: i64 = digits.parse().ok()?;
    if secs.starts_with('-') && tv_nsec != 0 {
        tv_nsec = 1_000_000_000 - tv_nsec;
        return Some(Timespec {
            tv_sec: tv_sec - 1,
            tv_nsec,
        });
    }
    Some(Timespec { tv_sec, tv_nsec })
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, io::Error> {
    let h = entry.header();
    let mode = h.mode()? & 0o7777;
    let uid = h.uid()?;
    let gid = h.gid()?;
    let mtime = i64::try_from(h.mtime()?).unwrap_or(i64::MAX);
    let mut mtime = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let mut atime = mtime;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    mtime = t;
                }
            } else if key == b"atime" {
                if let Some(t) = parse_pax_time(ext.value_bytes()) {
                    atime = t;
                }
            }
        }
    }
    if atime.tv_sec == 0 && atime.tv_nsec == 0 {
        atime = mtime;
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        times: Timestamps {
            last_access: atime,
            last_modification: mtime,
        },
        xattrs,
    })
}

/// Removes `name` in `dir` whatever it is, descending into directories through fds only (never
/// following a symlink). Iterative, so a hostile deeply nested tree cannot overflow the stack; it
/// runs out of fds (a clean error) first.
fn remove_all(dir: &impl AsFd, name: &OsStr) -> Result<(), Errno> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return ignore_noent(rfs::unlinkat(dir, name, AtFlags::empty()));
    }
    let open = |parent: BorrowedFd<'_>, n: &OsStr| {
        rfs::openat(
            parent,
            n,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let top = open(dir.as_fd(), name)?;
    let names = list_names(&top)?;
    // Each level: the open directory, the children still to remove, and its own name.
    let mut stack: Vec<(OwnedFd, Vec<Vec<u8>>, Vec<u8>)> =
        vec![(top, names, name.as_bytes().to_vec())];
    while let Some((fd, names, _)) = stack.last_mut() {
        if let Some(child) = names.pop() {
            let child = OsStr::from_bytes(&child);
            match rfs::statat(&*fd, child, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    let cfd = open(fd.as_fd(), child)?;
                    let cnames = list_names(&cfd)?;
                    stack.push((cfd, cnames, child.as_bytes().to_vec()));
                }
                Ok(_) => ignore_noent(rfs::unlinkat(&*fd, child, AtFlags::empty()))?,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
        } else if let Some((_, _, own)) = stack.pop() {
            let own = OsStr::from_bytes(&own);
            match stack.last() {
                Some((parent, ..)) => ignore_noent(rfs::unlinkat(parent, own, AtFlags::REMOVEDIR))?,
                None => ignore_noent(rfs::unlinkat(dir, own, AtFlags::REMOVEDIR))?,
            }
        }
    }
    Ok(())
}

fn ignore_noent(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::NOENT) => Ok(()),
        other => other,
    }
}

/// Names in a directory opened for reading, without `.` and `..`.
fn list_names(fd: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let mut dir = rfs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    Ok(names)
}

/// Writer threads for small regular files (see the `files` module for why they help).
const WRITERS: usize = 2;

/// Applies the layer tar `layer` onto the directory `root` following the OCI changeset rules
/// (whiteouts delete, opaque markers hide lower content), without ever touching anything outside
/// `root`. This is what makes a base image's layers into a rootfs for RUN steps.
///
/// Small regular files are created by writer threads while the tar is read on; anything that
/// depends on one of them (same path, a path below it, a hardlink to it, a removal) waits for it,
/// and the error reported is always the one a sequential apply would have hit first.
pub fn apply_layer<R: Read>(
    root: &Path,
    layer: R,
    opts: &ApplyOptions,
) -> Result<ApplyStats, LayerError> {
    let root_fd = rfs::openat(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Apply {
        root: root.to_path_buf(),
        path: String::new(),
        source: errno_io(e),
    })?;
    let tmpfile = AtomicBool::new(true);
    let (job_tx, job_rx) = sync_channel::<files::FileJob>(files::QUEUE);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<files::Outcome>();
    std::thread::scope(|s| {
        let mut started = 0;
        for i in 0..WRITERS {
            let (jobs, done, tmpfile) = (&job_rx, done_tx.clone(), &tmpfile);
            let spawned = std::thread::Builder::new()
                .name(format!("layer-writer-{i}"))
                .spawn_scoped(s, move || files::worker(root, jobs, &done, tmpfile));
            started += usize::from(spawned.is_ok());
        }
        drop(done_tx);
        let pool = (started > 0).then(|| files::Pool {
            jobs: Some(job_tx),
            done: done_rx,
            pending: HashMap::new(),
            finished: Vec::new(),
            root: root.to_path_buf(),
            any_failed: false,
        });
        let mut ctx = Ctx {
            root,
            root_fd,
            opts,
            stats: ApplyStats::default(),
            unpacked: HashSet::new(),
            dir_times: Vec::new(),
            cur: String::new(),
            seq: 0,
            warnings: Vec::new(),
            unmapped: Vec::new(),
            parent: None,
            pool,
            tmpfile: &tmpfile,
        };
        let applied = apply_entries(&mut ctx, layer);
        finish(ctx, applied)
        // `ctx` (and with it the job queue) is gone here, so the writers end and the scope joins.
    })
}

/// Merges the writers' outcomes and picks the error a sequential apply would have reported.
fn finish(mut ctx: Ctx<'_>, applied: Result<(), LayerError>) -> Result<ApplyStats, LayerError> {
    let main_seq = ctx.seq;
    ctx.barrier();
    let mut outcomes = ctx.pool.take().map(|p| p.finished).unwrap_or_default();
    outcomes.sort_by_key(|o| o.seq);
    let mut worker_err = None;
    for o in outcomes {
        match o.result {
            Err(e) => {
                if worker_err.is_none() {
                    worker_err = Some((o.seq, e));
                }
            }
            Ok(()) => ctx.note(o.seq, &o.path, o.notes),
        }
    }
    match (applied, worker_err) {
        (Err(e), Some((seq, we))) => return Err(if seq < main_seq { we } else { e }),
        (Err(e), None) | (Ok(()), Some((_, e))) => return Err(e),
        (Ok(()), None) => {}
    }
    ctx.unmapped.sort_by_key(|u| u.0);
    ctx.stats.unmapped_owners = ctx.unmapped.len() as u64;
    if let Some((seq, path, ids)) = ctx.unmapped.first() {
        tracing::warn!(
            path = %path,
            ids = %ids,
            count = ctx.unmapped.len(),
            "id not mapped in this user namespace; owner left as the applying user \
             (further entries of this layer are counted, not logged)"
        );
        let msg = format!(
            "{path}: {ids} not mapped in this user namespace; owner left as the applying user"
        );
        ctx.warnings.push((*seq, msg));
    }
    ctx.warnings.sort_by_key(|w| w.0);
    ctx.stats.warnings = ctx.warnings.into_iter().map(|w| w.1).collect();
    Ok(ctx.stats)
}

fn apply_entries<R: Read>(ctx: &mut Ctx<'_>, layer: R) -> Result<(), LayerError> {
    let mut archive = tar::Archive::new(layer);
    let mut last: Option<String> = None;
    let tar_err = |last: &Option<String>, e: io::Error| LayerError::Tar {
        after: last.clone(),
        source: e,
    };
    let entries = archive.entries().map_err(|e| tar_err(&last, e))?;
    for entry in entries {
        if ctx.pool.as_mut().is_some_and(|p| p.poll()) {
            // A writer failed earlier in the tar; `finish` reports it.
            return Ok(());
        }
        ctx.seq += 1;
        let mut entry = entry.map_err(|e| tar_err(&last, e))?;
        let raw = entry.path_bytes().into_owned();
        ctx.cur = lossy(&raw);
        apply_entry(ctx, &mut entry, &raw).map_err(|e| match e {
            // Short reads of the entry body are tar damage, not a filesystem problem.
            LayerError::Apply { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => {
                tar_err(&last, source)
            }
            other => other,
        })?;
        last = Some(ctx.cur.clone());
    }
    ctx.barrier();
    if ctx.pool.as_ref().is_some_and(|p| p.failed()) {
        return Ok(());
    }
    ctx.seq = u64::MAX;
    // Children are all in place now; directory mtimes set earlier would have been bumped.
    let dir_times = std::mem::take(&mut ctx.dir_times);
    for (comps, mode, times) in dir_times.iter().rev() {
        ctx.cur = lossy(&join(comps));
        if let Some(fd) = ctx.open_dir(comps, false, OFlags::RDONLY)? {
            rfs::fchmod(&fd, *mode).map_err(|e| ctx.errno(e))?;
            rfs::futimens(&fd, times).map_err(|e| ctx.errno(e))?;
        }
    }
    Ok(())
}

fn apply_entry<R: Read>(
    ctx: &mut Ctx<'_>,
    entry: &mut tar::Entry<'_, R>,
    raw: &[u8],
) -> Result<(), LayerError> {
    let kind = entry.header().entry_type();
    if kind.is_pax_global_extensions() {
        return Ok(());
    }
    ctx.stats.entries += 1;
    let comps = clean_components(raw).ok_or_else(|| LayerError::Breakout {
        root: ctx.root.to_path_buf(),
        path: ctx.cur.clone(),
    })?;
    let Some((base, parent)) = comps.split_last() else {
        // The root itself ("./"): its metadata belongs to whoever created the root.
        return Ok(());
    };
    let meta = read_meta(entry).map_err(|e| ctx.err(e))?;

    if base.as_slice() == OPAQUE_MARKER.as_bytes() {
        ctx.barrier();
        let dir = ctx
            .open_dir(parent, true, OFlags::RDONLY)?
            .ok_or_else(|| ctx.invalid("opaque marker's directory could not be opened"))?;
        let prefix = join(parent);
        for child in list_names(&dir).map_err(|e| ctx.errno(e))? {
            let mut p = prefix.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&child);
            if !ctx.unpacked.contains(&p) {
                remove_all(&dir, OsStr::from_bytes(&child)).map_err(|e| ctx.errno(e))?;
            }
        }
        ctx.mark_unpacked(parent);
        return Ok(());
    }
    if let Some(victim) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(ctx.invalid("whiteout does not name a file"));
        }
        ctx.barrier();
        if let Some(dir) = ctx.open_dir(parent, false, OFlags::PATH)? {
            remove_all(&dir, OsStr::from_bytes(victim)).map_err(|e| ctx.errno(e))?;
        }
        return Ok(());
    }

    // Whatever a writer thread is still creating at this path or above it must exist first.
    ctx.wait_for_prefixes(&comps);
    let dir = ctx.parent_dir(parent)?;
    let name = OsStr::from_bytes(base);
    let is_dir = kind == tar::EntryType::Directory;
    match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Ok(_) => {
            // A directory being replaced may hold files still being written.
            ctx.barrier();
            remove_all(&dir, name).map_err(|e| ctx.errno(e))?
        }
        Err(Errno::NOENT) => {}
        Err(e) => return Err(ctx.errno(e)),
    }
    let owner = ctx.owner(meta.uid, meta.gid);
    let mode = Mode::from_raw_mode(meta.mode);

    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let want = entry.size();
            let fmeta = files::FileMeta {
                owner,
                mode,
                xattrs: meta.xattrs,
                times: meta.times,
            };
            let (seq, cur) = (ctx.seq, ctx.cur.clone());
            let pooled = ctx.pool.as_ref().is_some_and(|p| p.jobs.is_some());
            if pooled && want <= files::POOLED_MAX {
                let mut body = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
                let got = (&mut *entry)
                    .take(want)
                    .read_to_end(&mut body)
                    .map_err(|e| ctx.err(e))?;
                if got as u64 != want {
                    return Err(ctx.err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry body has {got} of {want} bytes"),
                    )));
                }
                ctx.stats.bytes += want;
                ctx.dispatch(files::FileJob {
                    seq,
                    key: join(&comps),
                    path: cur,
                    dir,
                    name: base.to_vec(),
                    body: files::Body::Bytes(body),
                    meta: fmeta,
                })?;
            } else {
                let mut notes = files::Notes::default();
                let got = files::write_regular(
                    ctx.root,
                    &cur,
                    &dir,
                    base,
                    entry,
                    want,
                    &fmeta,
                    ctx.tmpfile,
                    &mut notes,
                )?;
                ctx.stats.bytes += got;
                ctx.note(seq, &cur, notes);
            }
        }
        tar::EntryType::Directory => {
            match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(ctx.errno(e)),
            }
            let fd = rfs::openat(
                &dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ctx.errno(e))?;
            if let Some((u, g)) = owner {
                ctx.chown(u, g, |u, g| rfs::fchown(&fd, u, g))?;
            }
            ctx.set_xattrs(&fd, &meta.xattrs)?;
            ctx.dir_times.push((comps.clone(), mode, meta.times));
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| ctx.invalid("symlink without a target"))?
                .into_owned();
            ctx.dispatch(files::FileJob {
                seq: ctx.seq,
                key: join(&comps),
                path: ctx.cur.clone(),
                dir,
                name: base.to_vec(),
                body: files::Body::Symlink(target),
                meta: files::FileMeta {
                    owner,
                    mode,
                    xattrs: meta.xattrs,
                    times: meta.times,
                },
            })?;
        }
        tar::EntryType::Link => {
            let target_raw = entry
                .link_name_bytes()
                .ok_or_else(|| ctx.invalid("hardlink without a target"))?
                .into_owned();
            let breakout = || LayerError::LinkBreakout {
                root: ctx.root.to_path_buf(),
                path: ctx.cur.clone(),
                target: lossy(&target_raw),
            };
            let tcomps = clean_components(&target_raw).ok_or_else(breakout)?;
            ctx.wait_for_prefixes(&tcomps);
            let Some((tbase, tparent)) = tcomps.split_last() else {
                return Err(ctx.invalid("hardlink to the root directory"));
            };
            let tdir = ctx.open_dir(tparent, false, OFlags::PATH)?.ok_or_else(|| {
                ctx.invalid(format!(
                    "hardlink target {:?} does not exist",
                    lossy(&target_raw)
                ))
            })?;
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target.
            rfs::linkat(
                &tdir,
                OsStr::from_bytes(tbase),
                &dir,
                name,
                AtFlags::empty(),
            )
            .map_err(|e| ctx.errno(e))?;
        }
        tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
            let (ft, dev) = match kind {
                tar::EntryType::Fifo => (FileType::Fifo, 0),
                t => {
                    let h = entry.header();
                    let major = h.device_major().map_err(|e| ctx.err(e))?.unwrap_or(0);
                    let minor = h.device_minor().map_err(|e| ctx.err(e))?.unwrap_or(0);
                    let ft = if t == tar::EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rfs::makedev(major, minor))
                }
            };
            match rfs::mknodat(&dir, name, ft, mode, dev) {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::ACCESS | Errno::OPNOTSUPP)) => {
                    // As moby in a user namespace: a rootfs without the node still builds.
                    if ft != FileType::Fifo {
                        ctx.stats.skipped_devices += 1;
                    }
                    tracing::warn!(path = %ctx.cur, error = %e, "device node not created");
                    let msg = format!("{}: device/fifo not created: {e}", ctx.cur);
                    ctx.warn(msg);
                    return Ok(());
                }
                Err(e) => return Err(ctx.errno(e)),
            }
            if let Some((u, g)) = owner {
                ctx.chown(u, g, |u, g| {
                    rfs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                })?;
            }
            // Just created by us as a non-symlink, so following is harmless; fchmodat cannot
            // take AT_SYMLINK_NOFOLLOW on Linux.
            rfs::chmodat(&dir, name, mode, AtFlags::empty()).map_err(|e| ctx.errno(e))?;
            if !meta.xattrs.is_empty() {
                let msg = format!("{}: xattrs on a device node are not applied", ctx.cur);
                ctx.warn(msg);
            }
            rfs::utimensat(&dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ctx.errno(e))?;
        }
        other => {
            return Err(ctx.invalid(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            )));
        }
    }
    ctx.mark_unpacked(&comps);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_components_table() {
        let cases: &[(&[u8], Option<&[&str]>)] = &[
            (b"a/b", Some(&["a", "b"])),
            (b"./a/./b/", Some(&["a", "b"])),
            (b"/abs/x", Some(&["abs", "x"])),
            (b"a/../b", Some(&["b"])),
            (b"../x", None),
            (b"a/../../x", None),
            (b"/../x", None),
            (b"./", Some(&[])),
        ];
        for (raw, want) in cases {
            let got = clean_components(raw);
            let want: Option<Vec<Vec<u8>>> =
                want.map(|w| w.iter().map(|s| s.as_bytes().to_vec()).collect());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn pax_time_parses_fractions_and_negatives() {
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Timespec {
                tv_sec: 12,
                tv_nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"7"),
            Some(Timespec {
                tv_sec: 7,
                tv_nsec: 0
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Timespec {
                tv_sec: -2,
                tv_nsec: 750_000_000
            })
        );
        assert_eq!(parse_pax_time(b"x"), None);
    }

    #[test]
    fn id_map_translates_ranges() {
        let m = IdMap::shifted(100_000, 65_536);
        assert_eq!(m.map_uid(0), Some(100_000));
        assert_eq!(m.map_gid(1000), Some(101_000));
        assert_eq!(m.map_uid(65_536), None);
    }

    #[test]
    fn id_map_reverse_lookups() {
        // Rootless shape: container 0 -> caller 1001, 1..=65536 -> 100000..
        let m = IdMap {
            uids: vec![
                IdRange {
                    container: 0,
                    host: 1001,
                    size: 1,
                },
                IdRange {
                    container: 1,
                    host: 100_000,
                    size: 65_536,
                },
            ],
            gids: vec![IdRange {
                container: 0,
                host: 1002,
                size: 1,
            }],
        };
        for (host, want) in [
            (1001, Some(0)),
            (100_000, Some(1)),
            (100_004, Some(5)),
            (165_535, Some(65_536)),
            (165_536, None),
            (0, None),
            (1000, None),
            (99_999, None),
            (u32::MAX, None),
        ] {
            assert_eq!(m.to_container_uid(host), want, "uid {host}");
        }
        assert_eq!(m.to_container_gid(1002), Some(0));
        assert_eq!(m.to_container_gid(1001), None);
        // Forward and reverse agree on every mapped id at the range edges.
        for c in [0u32, 1, 2, 65_535, 65_536] {
            let h = m.map_uid(u64::from(c)).unwrap();
            assert_eq!(m.to_container_uid(h), Some(c));
        }
        // A range whose container end would overflow u32 yields None rather than wrapping.
        let big = IdMap {
            uids: vec![IdRange {
                container: u32::MAX,
                host: 10,
                size: 5,
            }],
            gids: Vec::new(),
        };
        assert_eq!(big.to_container_uid(10), Some(u32::MAX));
        assert_eq!(big.to_container_uid(11), None);
    }
}
