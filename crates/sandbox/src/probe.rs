//! What this host lets the sandbox do.

use crate::subid::{self, IdRange};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A summary of the host's support for the sandbox, so a CLI can explain up front why rootless
/// builds will (or will not) work instead of failing in the middle of a build.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// Effective uid of the caller.
    pub euid: u32,
    /// The caller is root (no user namespace needed).
    pub is_root: bool,
    /// Path of `newuidmap`, if installed.
    pub newuidmap: Option<PathBuf>,
    /// Path of `newgidmap`, if installed.
    pub newgidmap: Option<PathBuf>,
    /// The caller's /etc/subuid ranges.
    pub subuid: Vec<IdRange>,
    /// The caller's /etc/subgid ranges.
    pub subgid: Vec<IdRange>,
    /// `/proc/sys/user/max_user_namespaces` is non-zero.
    pub user_namespaces: bool,
    /// Kernel version (major, minor); overlay in a user namespace needs 5.11+, `lowerdir+` 6.8+.
    pub kernel: (u32, u32),
    /// A real overlay mount (`lowerdir+`, `userxattr`) succeeded in a fresh user namespace.
    pub overlay_in_userns: bool,
    /// Human-readable problems found.
    pub notes: Vec<String>,
}

fn kernel_version() -> (u32, u32) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Tries an overlay mount in a throw-away user + mount namespace (in a forked child, so the
/// caller's namespaces are untouched); `Err` says which stage failed.
fn try_overlay_in_userns(euid: u32, egid: u32) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mk = |n: &str| -> Result<CString, String> {
        let p = tmp.path().join(n);
        std::fs::create_dir(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        CString::new(p.as_os_str().as_bytes()).map_err(|_| "NUL in temp path".to_string())
    };
    let (lower, upper, work) = (mk("lower")?, mk("upper")?, mk("work")?);
    let uid_map = CString::new(format!("0 {euid} 1\n")).map_err(|e| e.to_string())?;
    let gid_map = CString::new(format!("0 {egid} 1\n")).map_err(|e| e.to_string())?;
    // SAFETY: the child only runs async-signal-safe code on the strings prepared above.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: freshly forked child.
        unsafe { crate::child::probe_overlay_child(&lower, &upper, &work, &uid_map, &gid_map) }
    }
    let status = crate::run::wait_pid(pid).ok_or("waitpid failed")?;
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, 10) => Err("unshare(CLONE_NEWUSER) refused".into()),
        (true, 11) => Err("writing a single-id uid/gid map refused".into()),
        (true, 12) => Err("fsopen(overlay) failed: no overlay filesystem".into()),
        (true, 13) => {
            Err("overlay mount (lowerdir+, userxattr) refused in a user namespace".into())
        }
        _ => Err(format!("probe child ended with wait status {status:#x}")),
    }
}

/// Inspects the host (uid, uidmap tools, subordinate ranges, user namespaces, kernel) and tries
/// an overlay mount in a throw-away user namespace, so problems show before a build starts.
pub fn probe() -> Capabilities {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let mut c = Capabilities {
        euid,
        is_root: euid == 0,
        newuidmap: subid::find_tool("newuidmap"),
        newgidmap: subid::find_tool("newgidmap"),
        kernel: kernel_version(),
        ..Capabilities::default()
    };
    let name = subid::user_name(euid).unwrap_or_else(|| euid.to_string());
    match subid::subid_ranges(&name, euid) {
        Ok((u, g)) => {
            c.subuid = u;
            c.subgid = g;
        }
        Err(e) => c.notes.push(e.to_string()),
    }
    c.user_namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    // SAFETY: getegid cannot fail.
    let egid = unsafe { libc::getegid() };
    match try_overlay_in_userns(euid, egid) {
        Ok(()) => c.overlay_in_userns = true,
        Err(e) => c
            .notes
            .push(format!("overlay rootfs in a user namespace: {e}")),
    }
    if !c.is_root {
        if !c.user_namespaces {
            c.notes
                .push("user namespaces are disabled (user.max_user_namespaces = 0)".into());
        }
        if c.newuidmap.is_none() || c.newgidmap.is_none() {
            c.notes
                .push("newuidmap/newgidmap missing: install the uidmap package".into());
        }
        if c.subuid.is_empty() || c.subgid.is_empty() {
            c.notes.push(format!(
                "no /etc/subuid or /etc/subgid range for {name}: only a single-id map is possible"
            ));
        }
    }
    c
}
