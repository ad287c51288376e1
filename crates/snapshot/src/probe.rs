//! Deciding whether overlay snapshots work here, by trying exactly what a build will do.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rbuild_store::Store;
use rustix::fs::{FileType, Mode};

use crate::fsx;

/// What [`probe`] found, with the reason when overlay is not usable so the engine can say why it
/// fell back to copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// overlayfs can be mounted over trees in this store (rootless: with `userxattr`).
    Overlay {
        /// Mounts need `userxattr` (we are not root and mount inside a user namespace).
        userxattr: bool,
    },
    /// Overlay is not usable; the copy snapshotter must be used.
    Unavailable {
        /// The step that failed and its error.
        reason: String,
    },
}

/// Tries everything an overlay snapshot needs, in a scratch directory of `store` (so on the same
/// filesystem the snapshots will live on): creating a whiteout device 0/0, setting the opaque
/// xattr, and mounting overlay with the options a build uses, in a throw-away child process (as
/// root in a new mount namespace; otherwise in a new user + mount namespace with `userxattr`).
/// Nothing is mounted in the caller's namespace. Call it once and keep the answer
/// ([`crate::Snapshotter::new`] does).
pub fn probe(store: &Store) -> ProbeResult {
    match try_probe(store) {
        Ok(userxattr) => ProbeResult::Overlay { userxattr },
        Err(reason) => ProbeResult::Unavailable { reason },
    }
}

/// Root in the initial namespace uses `trusted.overlay.*`; root inside a user namespace (an engine
/// started under `unshare -Ur`) cannot, and falls back to `userxattr` in its own namespace; any
/// other user needs a new user namespace for the mount.
fn try_probe(store: &Store) -> Result<bool, String> {
    if rustix::process::geteuid().is_root() {
        match try_form(store, false, false) {
            Ok(()) => Ok(false),
            Err(root_err) => try_form(store, true, false)
                .map(|()| true)
                .map_err(|e| format!("{root_err}; with userxattr: {e}")),
        }
    } else {
        try_form(store, true, true).map(|()| true)
    }
}

fn try_form(store: &Store, userxattr: bool, userns: bool) -> Result<(), String> {
    let scratch = store
        .temp_dir("overlay-probe")
        .map_err(|e| format!("creating a probe directory: {e}"))?;
    let dir = scratch.path();
    let (lower, upper, work, merged) = (
        dir.join("lower"),
        dir.join("upper"),
        dir.join("work"),
        dir.join("merged"),
    );
    for d in [&lower, &upper, &work, &merged] {
        fsx::mkdir(d, 0o755).map_err(|e| e.to_string())?;
    }
    rustix::fs::mknodat(
        rustix::fs::CWD,
        lower.join("wh"),
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(|e| {
        format!(
            "creating an overlay whiteout (char 0/0) in {}: {e}",
            dir.display()
        )
    })?;
    let opaque = fsx::overlay_xattr(userxattr, "opaque");
    let opq_dir = lower.join("opq");
    fsx::mkdir(&opq_dir, 0o755).map_err(|e| e.to_string())?;
    rustix::fs::setxattr(
        &opq_dir,
        opaque.as_str(),
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| format!("setting {opaque} in {}: {e}", dir.display()))?;

    let options = format!(
        "lowerdir={},upperdir={},workdir={},{}",
        crate::escape_overlay_path(&lower.to_string_lossy()),
        crate::escape_overlay_path(&upper.to_string_lossy()),
        crate::escape_overlay_path(&work.to_string_lossy()),
        crate::Kind::Overlay { userxattr }.overlay_options()
    );
    mount_in_child(&merged, &options, userns)
        .map_err(|e| format!("mounting overlay ({options}): {e}"))
}

fn cstr(s: impl Into<Vec<u8>>) -> Result<CString, String> {
    CString::new(s).map_err(|_| "path contains a NUL byte".to_string())
}

/// Writes `data` to `path` with raw syscalls only (safe between fork and exit).
///
/// # Safety
/// Only async-signal-safe calls; `path` and `data` are prepared before the fork.
unsafe fn write_file(path: &CString, data: &[u8]) -> bool {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    n == data.len() as isize
}

/// Forks a child that enters new namespaces and mounts overlay at `target`; the child exits with
/// 0 on success or with an errno. Everything the child touches is allocated before the fork, and
/// the child only makes raw system calls, so forking a multi-threaded process is safe.
fn mount_in_child(target: &Path, options: &str, userns: bool) -> Result<(), String> {
    let target = cstr(target.as_os_str().as_bytes())?;
    let data = cstr(options)?;
    let fstype = cstr("overlay")?;
    let root = cstr("/")?;
    let setgroups = cstr("/proc/self/setgroups")?;
    let uid_map_path = cstr("/proc/self/uid_map")?;
    let gid_map_path = cstr("/proc/self/gid_map")?;
    let uid_map = format!("0 {} 1\n", rustix::process::geteuid().as_raw()).into_bytes();
    let gid_map = format!("0 {} 1\n", rustix::process::getegid().as_raw()).into_bytes();

    // SAFETY: after fork the child only calls async-signal-safe functions (unshare, open, write,
    // close, mount, _exit) on data allocated before the fork, and always ends in _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let errno = || *libc::__errno_location();
            let flags = if userns {
                libc::CLONE_NEWUSER | libc::CLONE_NEWNS
            } else {
                libc::CLONE_NEWNS
            };
            if libc::unshare(flags) != 0 {
                libc::_exit(100);
            }
            if userns
                && !(write_file(&setgroups, b"deny")
                    && write_file(&uid_map_path, &uid_map)
                    && write_file(&gid_map_path, &gid_map))
            {
                libc::_exit(101);
            }
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                libc::_exit(102);
            }
            if libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                data.as_ptr().cast(),
            ) != 0
            {
                let e = errno();
                libc::_exit(if (1..100).contains(&e) { e } else { 99 });
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid: {}", std::io::Error::last_os_error()));
        }
    }
    if !libc::WIFEXITED(status) {
        return Err("probe child was killed".to_string());
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        100 => Err("unshare of the namespaces is not permitted".to_string()),
        101 => Err("cannot write the user namespace id maps".to_string()),
        102 => Err("cannot make the mount namespace private".to_string()),
        e => Err(std::io::Error::from_raw_os_error(e).to_string()),
    }
}
