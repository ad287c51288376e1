//! Applying a layer tar to a rootfs without ever leaving the root.
//!
//! Every entry is split into "parent directory" and "final name". The parent is opened with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the root fd, so symlinks in the
//! path are followed the way they would be inside a chroot of the root and never beyond it. All
//! changes are then made with `*at` calls on that directory fd and a single path component, with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`, so the final component is never followed either.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags, CWD,
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
        self.stats.warnings.push(msg);
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

    /// Sets the owner through `chown` (an fd- or name-based chown of the current entry). An id
    /// the current user namespace has no mapping for (`EINVAL`) is left as the applying user's,
    /// as moby does in a user namespace: uid and gid are then tried one at a time so the mapped
    /// one still lands. Warns once per layer; every such entry is counted.
    fn chown(
        &mut self,
        uid: Uid,
        gid: Gid,
        chown: impl Fn(Option<Uid>, Option<Gid>) -> Result<(), Errno>,
    ) -> Result<(), LayerError> {
        match chown(Some(uid), Some(gid)) {
            Ok(()) => return Ok(()),
            Err(Errno::INVAL) => {}
            Err(e) => return Err(self.errno(e)),
        }
        let mut unmapped = Vec::new();
        for (r, what) in [
            (chown(Some(uid), None), format!("uid {}", uid.as_raw())),
            (chown(None, Some(gid)), format!("gid {}", gid.as_raw())),
        ] {
            match r {
                Ok(()) => {}
                Err(Errno::INVAL) => unmapped.push(what),
                Err(e) => return Err(self.errno(e)),
            }
        }
        self.stats.unmapped_owners += 1;
        if self.stats.unmapped_owners == 1 {
            let ids = unmapped.join(", ");
            tracing::warn!(
                path = %self.cur,
                ids = %ids,
                "id not mapped in this user namespace; owner left as the applying user \
                 (further entries of this layer are counted, not logged)"
            );
            let msg = format!(
                "{}: {ids} not mapped in this user namespace; owner left as the applying user",
                self.cur
            );
            self.warn(msg);
        }
        Ok(())
    }

    fn set_xattrs(
        &mut self,
        fd: &OwnedFd,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), LayerError> {
        for (name, value) in xattrs {
            match rfs::fsetxattr(fd, OsStr::from_bytes(name), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::OPNOTSUPP | Errno::ACCESS)) => {
                    let msg = format!("{}: xattr {} not set: {e}", self.cur, lossy(name));
                    self.warn(msg);
                }
                Err(e) => return Err(self.errno(e)),
            }
        }
        Ok(())
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

/// Applies the layer tar `layer` onto the directory `root` following the OCI changeset rules
/// (whiteouts delete, opaque markers hide lower content), without ever touching anything outside
/// `root`. This is what makes a base image's layers into a rootfs for RUN steps.
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
    let mut ctx = Ctx {
        root,
        root_fd,
        opts,
        stats: ApplyStats::default(),
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        cur: String::new(),
    };
    let mut archive = tar::Archive::new(layer);
    let mut last: Option<String> = None;
    let tar_err = |last: &Option<String>, e: io::Error| LayerError::Tar {
        after: last.clone(),
        source: e,
    };
    let entries = archive.entries().map_err(|e| tar_err(&last, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_err(&last, e))?;
        let raw = entry.path_bytes().into_owned();
        ctx.cur = lossy(&raw);
        apply_entry(&mut ctx, &mut entry, &raw).map_err(|e| match e {
            // Short reads of the entry body are tar damage, not a filesystem problem.
            LayerError::Apply { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => {
                tar_err(&last, source)
            }
            other => other,
        })?;
        last = Some(ctx.cur.clone());
    }
    // Children are all in place now; directory mtimes set earlier would have been bumped.
    let dir_times = std::mem::take(&mut ctx.dir_times);
    for (comps, mode, times) in dir_times.iter().rev() {
        ctx.cur = lossy(&join(comps));
        if let Some(fd) = ctx.open_dir(comps, false, OFlags::RDONLY)? {
            rfs::fchmod(&fd, *mode).map_err(|e| ctx.errno(e))?;
            rfs::futimens(&fd, times).map_err(|e| ctx.errno(e))?;
        }
    }
    Ok(ctx.stats)
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
        if let Some(dir) = ctx.open_dir(parent, false, OFlags::PATH)? {
            remove_all(&dir, OsStr::from_bytes(victim)).map_err(|e| ctx.errno(e))?;
        }
        return Ok(());
    }

    let dir = ctx
        .open_dir(parent, true, OFlags::PATH)?
        .ok_or_else(|| ctx.invalid("parent directory could not be created"))?;
    let name = OsStr::from_bytes(base);
    let is_dir = kind == tar::EntryType::Directory;
    match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir && FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Ok(_) => remove_all(&dir, name).map_err(|e| ctx.errno(e))?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(ctx.errno(e)),
    }
    let owner = ctx.owner(meta.uid, meta.gid);
    let mode = Mode::from_raw_mode(meta.mode);

    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let fd = rfs::openat(
                &dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| ctx.errno(e))?;
            let mut file = File::from(fd);
            let want = entry.size();
            let got = io::copy(entry, &mut file).map_err(|e| ctx.err(e))?;
            if got != want {
                return Err(ctx.err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("entry body has {got} of {want} bytes"),
                )));
            }
            ctx.stats.bytes += got;
            let fd = OwnedFd::from(file);
            finish_fd(ctx, &fd, owner, mode, &meta)?;
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
            rfs::symlinkat(OsStr::from_bytes(&target), &dir, name).map_err(|e| ctx.errno(e))?;
            if let Some((u, g)) = owner {
                ctx.chown(u, g, |u, g| {
                    rfs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
                })?;
            }
            if !meta.xattrs.is_empty() {
                let msg = format!("{}: xattrs on a symlink are not applied", ctx.cur);
                ctx.warn(msg);
            }
            rfs::utimensat(&dir, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| ctx.errno(e))?;
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

/// Ownership, mode, xattrs and times on an open regular file, in that order: chown clears the
/// setuid bits and `security.capability`, so both must come after it, and times come last.
fn finish_fd(
    ctx: &mut Ctx<'_>,
    fd: &OwnedFd,
    owner: Option<(Uid, Gid)>,
    mode: Mode,
    meta: &Meta,
) -> Result<(), LayerError> {
    if let Some((u, g)) = owner {
        ctx.chown(u, g, |u, g| rfs::fchown(fd, u, g))?;
    }
    rfs::fchmod(fd, mode).map_err(|e| ctx.errno(e))?;
    ctx.set_xattrs(fd, &meta.xattrs)?;
    rfs::futimens(fd, &meta.times).map_err(|e| ctx.errno(e))?;
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
