//! The code that runs between `fork` and `execve`.
//!
//! Everything here is async-signal-safe: raw syscalls through `libc`, no heap allocation, no
//! locks, no formatting, no panics. All strings and arrays are prepared by the parent in a
//! [`ChildPlan`] before it forks; the children only read it.

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::ffi::CString;

/// Fixed descriptor numbers inside the helper process (after [`arrange_fds`]).
pub(crate) const FD_SYNC_READ: c_int = 3;
pub(crate) const FD_SYNC_WRITE: c_int = 4;
pub(crate) const FD_REPORT: c_int = 5;

/// Report record kinds (12-byte records on the report pipe: kind, code, value).
pub(crate) const KIND_ERROR: u32 = 1;
pub(crate) const KIND_STUB: u32 = 2;
pub(crate) const KIND_STATUS: u32 = 3;
/// Followed by `code` bytes of kernel log text for the next error.
pub(crate) const KIND_MESSAGE: u32 = 4;

/// Fixed set-up step codes; plan operations use `OP_BASE + index`.
pub(crate) const STEP_UNSHARE: u32 = 1;
pub(crate) const STEP_SYNC: u32 = 2;
pub(crate) const STEP_FORK: u32 = 3;
pub(crate) const STEP_PRIVATE: u32 = 4;
pub(crate) const STEP_HOSTNAME: u32 = 5;
pub(crate) const STEP_LOOPBACK: u32 = 6;
pub(crate) const STEP_CWD_MKDIR: u32 = 7;
pub(crate) const STEP_SETGROUPS: u32 = 8;
pub(crate) const STEP_SETGID: u32 = 9;
pub(crate) const STEP_SETUID: u32 = 10;
pub(crate) const STEP_CHDIR: u32 = 11;
pub(crate) const STEP_EXEC: u32 = 12;
pub(crate) const STEP_FDS: u32 = 13;
pub(crate) const STEP_SETSID: u32 = 14;
pub(crate) const STEP_CAPS: u32 = 15;
pub(crate) const STEP_CTTY: u32 = 16;
pub(crate) const OP_BASE: u32 = 1000;

const OPEN_TREE_CLONE: c_uint = 1;
const AT_RECURSIVE: c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 4;
const FSOPEN_CLOEXEC: c_uint = 1;
const FSMOUNT_CLOEXEC: c_uint = 1;
const FSCONFIG_SET_FLAG: c_uint = 0;
const FSCONFIG_SET_STRING: c_uint = 1;
const FSCONFIG_CMD_CREATE: c_uint = 6;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 8;
const CLOSE_RANGE_CLOEXEC: c_uint = 4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One set-up operation of the step's process, run in order.
pub(crate) enum Op {
    /// Detached clone (`open_tree(OPEN_TREE_CLONE)`) of a host path, resolved in the host's view
    /// before `pivot_root`, stored in `slot`.
    CloneTree {
        source: CString,
        recursive: bool,
        readonly: bool,
        slot: usize,
    },
    /// A new detached filesystem (procfs for the step's pid namespace, sysfs for its network
    /// namespace); when `fallback` is set and the kernel refuses, a read-only recursive clone
    /// of that host path instead.
    NewFs {
        fstype: &'static std::ffi::CStr,
        attrs: u64,
        slot: usize,
        fallback: Option<CString>,
    },
    /// A detached overlay mount built with `fsconfig(lowerdir+)`, so paths need no escaping.
    Overlay {
        lowers: Vec<CString>,
        upper: CString,
        work: CString,
        userxattr: bool,
        volatile: bool,
        slot: usize,
    },
    /// Attach a detached mount at `target`.
    MoveSlot { slot: usize, target: CString },
    /// `pivot_root` into `new_root` and detach the old root.
    Pivot { new_root: CString },
    /// `mkdir`, tolerating an existing entry; `stub` reports a creation to the parent.
    EnsureDir { path: CString, stub: bool },
    /// Create an empty file if nothing exists at `path`; `stub` reports a creation.
    EnsureFile { path: CString, stub: bool },
    /// Classic `mount(2)` of a new filesystem.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: c_ulong,
        data: CString,
    },
    /// `symlink`, tolerating an existing entry.
    Symlink { target: CString, link: CString },
    /// Like `CloneTree`, with `MOUNT_ATTR_*` bits set on the clone (device mounts).
    CloneTreeAttrs {
        source: CString,
        recursive: bool,
        attrs: u64,
        slot: usize,
    },
    /// Stores this process's pid as the caller's procfs shows it in `slot` (for hook state).
    HostPid { slot: usize },
    /// Writes `prefix`, the pid stored in `slot`, `suffix` to the new file `path`.
    WriteWithPid {
        path: CString,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        slot: usize,
    },
    /// `pivot_root` into `new_root` keeping the old root at `put_old`, for hooks that need it.
    PivotKeep { new_root: CString, put_old: CString },
    /// Runs an OCI hook with the pid stored in `pid_slot` in its state.
    Hook {
        plan: Box<crate::devices::HookPlan>,
        pid_slot: usize,
    },
    /// Lazily unmounts `path`.
    Detach { path: CString },
    /// Chroot isolation: `chroot` into `path` (a host path) and `chdir("/")`.
    Chroot { path: CString },
    /// Chroot isolation: a device node where none exists; refused creation (no CAP_MKNOD) is
    /// tolerated; `stub` reports a creation.
    Mknod {
        path: CString,
        mode: libc::mode_t,
        dev: libc::dev_t,
        stub: bool,
    },
    /// Chroot isolation: a new file with `data`, `mode` and `owner` (what a bind mount would
    /// have shown); an existing entry is kept when `keep_existing`, else an error (EEXIST).
    WriteFile {
        path: CString,
        data: Vec<u8>,
        mode: libc::mode_t,
        owner: Option<(libc::uid_t, libc::gid_t)>,
        keep_existing: bool,
        stub: bool,
    },
}

/// Everything the two children need, prepared before `fork`.
pub(crate) struct ChildPlan {
    pub unshare_flags: c_int,
    pub ops: Vec<Op>,
    pub hostname: CString,
    pub loopback_up: bool,
    /// Per op: a failure with ENOENT (or a missing slot) is ignored (paths a kernel may lack).
    pub optional: Vec<bool>,
    /// Capabilities to remove from the bounding set before dropping to the step's user.
    pub drop_caps: Vec<c_int>,
    pub cwd_prefixes: Vec<CString>,
    pub cwd: CString,
    pub set_groups: bool,
    pub groups: Vec<libc::gid_t>,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<*const c_char>,
    /// End after the set-up ops (mounts, hooks) without running the process.
    pub setup_only: bool,
    pub envp: Vec<*const c_char>,
    /// Make fd 0 (a pseudo-terminal's slave) the step's controlling terminal (`run -t`).
    pub controlling_tty: bool,
}

/// Descriptors the helper receives, as numbers in the parent's table.
pub(crate) struct ChildFds {
    pub stdin: c_int,
    pub stdout: c_int,
    pub stderr: c_int,
    pub sync_read: c_int,
    pub sync_write: c_int,
    pub report: c_int,
}

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes one record (kind, code, value) to the report pipe at [`FD_REPORT`].
pub(crate) unsafe fn report(kind: u32, code: u32, value: i32) {
    let mut rec = [0u8; 12];
    let (a, rest) = rec.split_at_mut(4);
    let (b, c) = rest.split_at_mut(4);
    a.copy_from_slice(&kind.to_ne_bytes());
    b.copy_from_slice(&code.to_ne_bytes());
    c.copy_from_slice(&value.to_ne_bytes());
    libc::write(FD_REPORT, rec.as_ptr().cast(), rec.len());
}

unsafe fn fail(code: u32) -> ! {
    let e = errno();
    report(KIND_ERROR, code, e);
    libc::_exit(127)
}

/// Unblocks every signal and restores default dispositions: a forked thread inherits the
/// caller's mask and handlers, which the step's process must not.
pub(crate) unsafe fn reset_signals() {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Moves `fds[i]` to descriptor `targets[i]` for every `i`, through copies above 10 first so that
/// a source that is also another's target is not overwritten before it is moved.
pub(crate) unsafe fn move_fds<const N: usize>(
    fds: &[c_int; N],
    targets: &[c_int; N],
) -> Result<(), ()> {
    let mut high = [0 as c_int; N];
    for (h, &fd) in high.iter_mut().zip(fds.iter()) {
        let n = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
        if n < 0 {
            return Err(());
        }
        *h = n;
    }
    for (&h, &target) in high.iter().zip(targets.iter()) {
        if libc::dup2(h, target) < 0 {
            return Err(());
        }
    }
    Ok(())
}

/// Moves the six descriptors the helper needs to 0..=5 and closes everything else, so fds of
/// other threads' concurrent runs never leak into this step (they would hold their pipes open).
unsafe fn arrange_fds(fds: &ChildFds) -> Result<(), ()> {
    let wanted = [
        fds.stdin,
        fds.stdout,
        fds.stderr,
        fds.sync_read,
        fds.sync_write,
        fds.report,
    ];
    move_fds(&wanted, &[0, 1, 2, 3, 4, 5])?;
    for fd in [FD_SYNC_READ, FD_SYNC_WRITE, FD_REPORT] {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    if libc::syscall(libc::SYS_close_range, 6 as c_uint, c_uint::MAX, 0 as c_uint) < 0 {
        // Old kernels: close one by one up to a sane bound.
        for fd in 6..4096 {
            libc::close(fd);
        }
    }
    Ok(())
}

/// Execs the first of `candidates` that runs, searching like execvp: past missing entries,
/// remembering a permission problem. Returns only on failure, with the errno to report.
pub(crate) unsafe fn exec_first(
    candidates: &[CString],
    argv: &[*const c_char],
    envp: &[*const c_char],
) -> c_int {
    let mut last = libc::ENOENT;
    for cand in candidates {
        libc::execve(cand.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let e = errno();
        if e == libc::EACCES {
            last = e;
        } else if e != libc::ENOENT && e != libc::ENOTDIR {
            last = e;
            break;
        }
    }
    last
}

/// Body of the helper process (first fork). Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child of the caller.
pub(crate) unsafe fn helper_main(plan: &ChildPlan, fds: &ChildFds, slots: &mut [c_int]) -> ! {
    reset_signals();
    // Die with the thread that forked us, so a crashed caller leaves nothing behind.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
    if arrange_fds(fds).is_err() {
        // The report fd may not be in place; exit with a distinctive code.
        libc::_exit(126);
    }
    // Chroot isolation may have no namespace to create; seccomp then refuses even unshare(0).
    if plan.unshare_flags != 0 && libc::unshare(plan.unshare_flags) < 0 {
        fail(STEP_UNSHARE);
    }
    let b = [b'u'];
    if libc::write(FD_SYNC_WRITE, b.as_ptr().cast(), 1) != 1 {
        fail(STEP_SYNC);
    }
    let mut go = [0u8; 1];
    loop {
        let n = libc::read(FD_SYNC_READ, go.as_mut_ptr().cast(), 1);
        if n == 1 {
            break;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // The parent gave up (id map failed); it already knows why.
        libc::_exit(127);
    }
    let pid = libc::fork();
    if pid < 0 {
        fail(STEP_FORK);
    }
    if pid == 0 {
        init_main(plan, slots);
    }
    let bytes = pid.to_ne_bytes();
    libc::write(FD_SYNC_WRITE, bytes.as_ptr().cast(), bytes.len());
    for fd in 0..=FD_SYNC_WRITE {
        libc::close(fd);
    }
    let mut status: c_int = 0;
    loop {
        let r = libc::waitpid(pid, &mut status, 0);
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            libc::_exit(125);
        }
    }
    // Without a pid namespace (chroot isolation) the kernel does not end the step's other
    // processes with it: kill what is left of its process group (init called setsid).
    if plan.unshare_flags & libc::CLONE_NEWPID == 0 {
        libc::kill(-pid, libc::SIGKILL);
    }
    report(KIND_STATUS, 0, status);
    libc::_exit(0)
}

/// Runs one operation; `Ok(true)` means it created a mount stub the parent must know about.
unsafe fn run_op(op: &Op, slots: &mut [c_int]) -> Result<bool, ()> {
    let empty = c"".as_ptr();
    match op {
        Op::CloneTree {
            source,
            recursive,
            readonly,
            slot,
        } => clone_tree(source, *recursive, *readonly)
            .and_then(|fd| store(slots, *slot, fd))
            .map(|()| false),
        Op::NewFs {
            fstype,
            attrs,
            slot,
            fallback,
        } => match new_fs(fstype, *attrs) {
            Ok(m) => store(slots, *slot, m).map(|()| false),
            Err(()) => match fallback {
                Some(source) => clone_tree(source, true, true)
                    .and_then(|fd| store(slots, *slot, fd))
                    .map(|()| false),
                None => Err(()),
            },
        },
        Op::Overlay {
            lowers,
            upper,
            work,
            userxattr,
            volatile,
            slot,
        } => {
            let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC);
            if fs < 0 {
                return Err(());
            }
            let fs = fs as c_int;
            let mut ok = true;
            for l in lowers {
                ok =
                    ok && fsconfig(fs, FSCONFIG_SET_STRING, c"lowerdir+".as_ptr(), l.as_ptr()) >= 0;
            }
            ok = ok
                && fsconfig(
                    fs,
                    FSCONFIG_SET_STRING,
                    c"upperdir".as_ptr(),
                    upper.as_ptr(),
                ) >= 0
                && fsconfig(fs, FSCONFIG_SET_STRING, c"workdir".as_ptr(), work.as_ptr()) >= 0
                && (!*userxattr
                    || fsconfig(
                        fs,
                        FSCONFIG_SET_FLAG,
                        c"userxattr".as_ptr(),
                        std::ptr::null(),
                    ) >= 0)
                // The upper directory alone must describe the change (see the snapshot crate):
                // no index, no metadata-only copy-ups, no redirects, whatever the kernel's
                // defaults (`redirect_dir=off` is refused together with `userxattr`; `nofollow`
                // never creates redirects either).
                && fsconfig(fs, FSCONFIG_SET_STRING, c"index".as_ptr(), c"off".as_ptr()) >= 0
                && fsconfig(fs, FSCONFIG_SET_STRING, c"metacopy".as_ptr(), c"off".as_ptr()) >= 0
                && fsconfig(
                    fs,
                    FSCONFIG_SET_STRING,
                    c"redirect_dir".as_ptr(),
                    if *userxattr {
                        c"nofollow".as_ptr()
                    } else {
                        c"off".as_ptr()
                    },
                ) >= 0;
            // Best effort: kernels before 5.10 do not know it, and the mount works without.
            if ok && *volatile {
                fsconfig(
                    fs,
                    FSCONFIG_SET_FLAG,
                    c"volatile".as_ptr(),
                    std::ptr::null(),
                );
            }
            ok = ok && fsconfig(fs, FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null()) >= 0;
            if !ok {
                forward_fs_log(fs);
                return Err(());
            }
            let m = libc::syscall(
                libc::SYS_fsmount,
                fs,
                FSMOUNT_CLOEXEC as c_long,
                0 as c_long,
            );
            libc::close(fs);
            if m < 0 {
                return Err(());
            }
            store(slots, *slot, m as c_int).map(|()| false)
        }
        Op::MoveSlot { slot, target } => {
            let fd = slots.get(*slot).copied().unwrap_or(-1);
            let r = libc::syscall(
                libc::SYS_move_mount,
                fd as c_long,
                empty,
                libc::AT_FDCWD as c_long,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH as c_long,
            );
            if r < 0 {
                return Err(());
            }
            libc::close(fd);
            Ok(false)
        }
        Op::Pivot { new_root } => {
            if libc::chdir(new_root.as_ptr()) < 0 {
                return Err(());
            }
            let dot = c".".as_ptr();
            if libc::syscall(libc::SYS_pivot_root, dot, dot) < 0 {
                return Err(());
            }
            if libc::umount2(dot, libc::MNT_DETACH) < 0 {
                return Err(());
            }
            if libc::chdir(c"/".as_ptr()) < 0 {
                return Err(());
            }
            Ok(false)
        }
        Op::EnsureDir { path, stub } => {
            if libc::mkdir(path.as_ptr(), 0o755) == 0 {
                // mkdir honours the umask; mountpoints must be traversable.
                libc::chmod(path.as_ptr(), 0o755);
                return Ok(*stub);
            }
            if errno() == libc::EEXIST {
                Ok(false)
            } else {
                Err(())
            }
        }
        Op::EnsureFile { path, stub } => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644 as c_uint,
            );
            if fd >= 0 {
                libc::close(fd);
                return Ok(*stub);
            }
            if errno() == libc::EEXIST {
                Ok(false)
            } else {
                Err(())
            }
        }
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            let r = libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                *flags,
                data.as_ptr() as *const c_void,
            );
            if r < 0 {
                Err(())
            } else {
                Ok(false)
            }
        }
        Op::Symlink { target, link } => {
            if libc::symlink(target.as_ptr(), link.as_ptr()) == 0 || errno() == libc::EEXIST {
                Ok(false)
            } else {
                Err(())
            }
        }
        Op::CloneTreeAttrs {
            source,
            recursive,
            attrs,
            slot,
        } => crate::devices::clone_with_attrs(source, *recursive, *attrs)
            .and_then(|fd| store(slots, *slot, fd))
            .map(|()| false),
        Op::HostPid { slot } => crate::devices::host_pid()
            .and_then(|pid| store(slots, *slot, pid))
            .map(|()| false),
        Op::WriteWithPid {
            path,
            prefix,
            suffix,
            slot,
        } => {
            let pid = slots.get(*slot).copied().unwrap_or(0);
            crate::devices::write_with_pid(path, prefix, suffix, pid).map(|()| false)
        }
        Op::PivotKeep { new_root, put_old } => {
            crate::devices::pivot_keep(new_root, put_old).map(|()| false)
        }
        Op::Hook { plan, pid_slot } => {
            let pid = slots.get(*pid_slot).copied().unwrap_or(0);
            crate::devices::run_hook(plan, pid).map(|()| false)
        }
        Op::Detach { path } => crate::devices::detach(path).map(|()| false),
        Op::Chroot { path } => {
            if libc::chroot(path.as_ptr()) < 0 || libc::chdir(c"/".as_ptr()) < 0 {
                return Err(());
            }
            Ok(false)
        }
        Op::Mknod {
            path,
            mode,
            dev,
            stub,
        } => {
            if libc::mknod(path.as_ptr(), *mode, *dev) == 0 {
                // mknod honours the umask.
                libc::chmod(path.as_ptr(), *mode & 0o7777);
                return Ok(*stub);
            }
            match errno() {
                libc::EEXIST | libc::EPERM => Ok(false),
                _ => Err(()),
            }
        }
        Op::WriteFile {
            path,
            data,
            mode,
            owner,
            keep_existing,
            stub,
        } => {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o600 as c_uint,
            );
            if fd < 0 {
                return if errno() == libc::EEXIST && *keep_existing {
                    Ok(false)
                } else {
                    Err(())
                };
            }
            let mut done = 0usize;
            while done < data.len() {
                let rest = data.get(done..).unwrap_or_default();
                let n = libc::write(fd, rest.as_ptr().cast(), rest.len());
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    libc::close(fd);
                    return Err(());
                }
                done += n as usize;
            }
            if let Some((uid, gid)) = owner {
                if libc::fchown(fd, *uid, *gid) < 0 {
                    libc::close(fd);
                    return Err(());
                }
            }
            let ok = libc::fchmod(fd, *mode & 0o7777) == 0;
            libc::close(fd);
            if ok {
                Ok(*stub)
            } else {
                Err(())
            }
        }
    }
}

/// Sends the kernel's messages for a failed filesystem context (e.g. "overlayfs: failed to
/// resolve '/x': -2") to the parent as a `KIND_MESSAGE` record, keeping errno intact.
unsafe fn forward_fs_log(fs: c_int) {
    let saved = errno();
    let mut rec = [0u8; 12 + 512];
    let mut len = 0usize;
    let mut msg = [0u8; 256];
    for _ in 0..4 {
        let n = libc::read(fs, msg.as_mut_ptr().cast(), msg.len());
        if n <= 0 {
            break;
        }
        let n = n as usize;
        if let (Some(dst), Some(src)) = (rec.get_mut(12 + len..12 + len + n + 1), msg.get(..n)) {
            if let Some((sep, body)) = dst.split_first_mut() {
                *sep = b'\n';
                body.copy_from_slice(src);
                len += n + 1;
            }
        }
    }
    if len > 0 {
        let (hdr, _) = rec.split_at_mut(12);
        let (a, rest) = hdr.split_at_mut(4);
        let (b, c) = rest.split_at_mut(4);
        a.copy_from_slice(&KIND_MESSAGE.to_ne_bytes());
        b.copy_from_slice(&(len as u32).to_ne_bytes());
        c.copy_from_slice(&0i32.to_ne_bytes());
        libc::write(FD_REPORT, rec.as_ptr().cast(), 12 + len);
    }
    *libc::__errno_location() = saved;
}

/// `open_tree(OPEN_TREE_CLONE)` of `source`, optionally made read-only (recursively).
unsafe fn clone_tree(
    source: &std::ffi::CStr,
    recursive: bool,
    readonly: bool,
) -> Result<c_int, ()> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    let fd = libc::syscall(
        libc::SYS_open_tree,
        libc::AT_FDCWD as c_long,
        source.as_ptr(),
        flags as c_long,
    );
    if fd < 0 {
        return Err(());
    }
    let fd = fd as c_int;
    if readonly {
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as c_uint | AT_RECURSIVE) as c_long,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if r < 0 {
            libc::close(fd);
            return Err(());
        }
    }
    Ok(fd)
}

/// A detached mount of a fresh `fstype` superblock with mount attributes `attrs`.
unsafe fn new_fs(fstype: &std::ffi::CStr, attrs: u64) -> Result<c_int, ()> {
    let fs = libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC as c_long);
    if fs < 0 {
        return Err(());
    }
    let fs = fs as c_int;
    if fsconfig(fs, FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null()) < 0 {
        libc::close(fs);
        return Err(());
    }
    let m = libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC as c_long, attrs);
    libc::close(fs);
    if m < 0 {
        return Err(());
    }
    Ok(m as c_int)
}

unsafe fn fsconfig(fd: c_int, cmd: c_uint, key: *const c_char, value: *const c_char) -> c_long {
    libc::syscall(
        libc::SYS_fsconfig,
        fd as c_long,
        cmd as c_long,
        key,
        value,
        0 as c_long,
    )
}

fn store(slots: &mut [c_int], slot: usize, fd: c_int) -> Result<(), ()> {
    match slots.get_mut(slot) {
        Some(s) => {
            *s = fd;
            Ok(())
        }
        None => Err(()),
    }
}

/// Body of the step's process (second fork): PID 1 of the new pid namespace. Sets up the
/// mounts, drops to the step's credentials and execs. Never returns.
unsafe fn init_main(plan: &ChildPlan, slots: &mut [c_int]) -> ! {
    libc::close(FD_SYNC_READ);
    libc::close(FD_SYNC_WRITE);
    // Die with the helper: it is the one the parent can kill on timeout.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
    if libc::setsid() < 0 {
        fail(STEP_SETSID);
    }
    if plan.controlling_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
        fail(STEP_CTTY);
    }
    // Chroot isolation may have no mount namespace: then there is nothing of ours to keep private.
    if plan.unshare_flags & libc::CLONE_NEWNS != 0
        && libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) < 0
    {
        fail(STEP_PRIVATE);
    }
    for (i, (op, optional)) in plan.ops.iter().zip(plan.optional.iter()).enumerate() {
        match run_op(op, slots) {
            Ok(true) => report(KIND_STUB, OP_BASE + i as u32, 0),
            Ok(false) => {}
            Err(()) if *optional && matches!(errno(), libc::ENOENT | libc::EBADF) => {}
            Err(()) => fail(OP_BASE + i as u32),
        }
    }
    if plan.setup_only {
        libc::_exit(0);
    }
    let hn = plan.hostname.as_bytes();
    if !hn.is_empty() && libc::sethostname(plan.hostname.as_ptr(), hn.len()) < 0 {
        fail(STEP_HOSTNAME);
    }
    if plan.loopback_up && loopback_up().is_err() {
        fail(STEP_LOOPBACK);
    }
    for dir in &plan.cwd_prefixes {
        if libc::mkdir(dir.as_ptr(), 0o755) < 0 && errno() != libc::EEXIST {
            fail(STEP_CWD_MKDIR);
        }
    }
    if drop_capabilities(&plan.drop_caps).is_err() {
        fail(STEP_CAPS);
    }
    if plan.set_groups && libc::setgroups(plan.groups.len(), plan.groups.as_ptr()) < 0 {
        fail(STEP_SETGROUPS);
    }
    if libc::setresgid(plan.gid, plan.gid, plan.gid) < 0 {
        fail(STEP_SETGID);
    }
    if libc::setresuid(plan.uid, plan.uid, plan.uid) < 0 {
        fail(STEP_SETUID);
    }
    if libc::chdir(plan.cwd.as_ptr()) < 0 {
        fail(STEP_CHDIR);
    }
    // Docker's umask, whatever the embedding program uses.
    libc::umask(0o022);
    // Credential changes clear the parent-death signal; set it again for the exec'd step.
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0);
    if libc::syscall(
        libc::SYS_close_range,
        3 as c_uint,
        c_uint::MAX,
        CLOSE_RANGE_CLOEXEC,
    ) < 0
        && errno() != libc::ENOSYS
    {
        fail(STEP_FDS);
    }
    let last = exec_first(&plan.exec_candidates, &plan.argv, &plan.envp);
    report(KIND_ERROR, STEP_EXEC, last);
    libc::_exit(127)
}

/// Limits the step to docker's default capability set: drops the rest from the bounding set
/// (what an exec'd root process gets), and clears the inheritable and ambient sets the caller
/// may have had, which would otherwise survive `execve`.
pub(crate) unsafe fn drop_capabilities(caps: &[c_int]) -> Result<(), ()> {
    for &cap in caps {
        if libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) < 0
            && errno() != libc::EINVAL
        {
            return Err(());
        }
    }
    libc::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
        0,
        0,
        0,
    );
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    if libc::syscall(libc::SYS_capget, &mut hdr as *mut Header, data.as_mut_ptr()) < 0 {
        return Err(());
    }
    for d in data.iter_mut() {
        d.inheritable = 0;
    }
    if libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) < 0 {
        return Err(());
    }
    Ok(())
}

/// Brings `lo` up in a fresh network namespace (SIOCSIFFLAGS on a datagram socket).
unsafe fn loopback_up() -> Result<(), ()> {
    let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if sock < 0 {
        return Err(());
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0".iter()) {
        *dst = *src as c_char;
    }
    if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
        libc::close(sock);
        return Err(());
    }
    req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    let r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &mut req);
    libc::close(sock);
    if r < 0 {
        Err(())
    } else {
        Ok(())
    }
}

unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> bool {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    n == data.len() as isize
}

/// Body of [`crate::probe`]'s test child: a user + mount namespace mapping only the caller,
/// then a real overlay mount (`lowerdir+`, `userxattr`). Exit code 0 means it worked; 10-13
/// name the failed stage. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child.
pub(crate) unsafe fn probe_overlay_child(
    lower: &std::ffi::CStr,
    upper: &std::ffi::CStr,
    work: &std::ffi::CStr,
    uid_map: &std::ffi::CStr,
    gid_map: &std::ffi::CStr,
) -> ! {
    if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) < 0 {
        libc::_exit(10);
    }
    write_file(c"/proc/self/setgroups", b"deny");
    if !write_file(c"/proc/self/uid_map", uid_map.to_bytes())
        || !write_file(c"/proc/self/gid_map", gid_map.to_bytes())
    {
        libc::_exit(11);
    }
    let fs = libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC);
    if fs < 0 {
        libc::_exit(12);
    }
    let fs = fs as c_int;
    if fsconfig(
        fs,
        FSCONFIG_SET_STRING,
        c"lowerdir+".as_ptr(),
        lower.as_ptr(),
    ) < 0
        || fsconfig(
            fs,
            FSCONFIG_SET_STRING,
            c"upperdir".as_ptr(),
            upper.as_ptr(),
        ) < 0
        || fsconfig(fs, FSCONFIG_SET_STRING, c"workdir".as_ptr(), work.as_ptr()) < 0
        || fsconfig(
            fs,
            FSCONFIG_SET_FLAG,
            c"userxattr".as_ptr(),
            std::ptr::null(),
        ) < 0
        || fsconfig(fs, FSCONFIG_CMD_CREATE, std::ptr::null(), std::ptr::null()) < 0
    {
        libc::_exit(13);
    }
    let m = libc::syscall(
        libc::SYS_fsmount,
        fs,
        FSMOUNT_CLOEXEC as c_long,
        0 as c_long,
    );
    if m < 0 {
        libc::_exit(13);
    }
    libc::_exit(0)
}
