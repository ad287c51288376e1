//! What this host lets the sandbox do.

use crate::subid::{self, IdRange};
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
    /// An overlay rootfs is expected to work in a user namespace on this kernel.
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

/// Inspects the host (uid, uidmap tools, subordinate ranges, user namespaces, kernel) without
/// creating anything.
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
    c.overlay_in_userns = c.kernel >= (6, 8);
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
    if !c.overlay_in_userns {
        c.notes.push(format!(
            "kernel {}.{} lacks overlay lowerdir+ (6.8+): overlay rootfs will fail",
            c.kernel.0, c.kernel.1
        ));
    }
    c
}
