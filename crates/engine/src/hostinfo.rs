//! What this host offers a build and what the builder will use there, so a failing host explains
//! itself (`rbuild info`) before a build fails halfway: namespaces, subordinate ids, overlay,
//! the snapshotter and isolation that will be chosen, the store, and the registry configuration
//! files that will be read.

use std::path::{Path, PathBuf};

use rbuild_sandbox::{IdRange, Isolation, Namespaces};

use crate::Builder;

/// The host as the builder sees it; every probe is the one a build makes.
#[derive(Debug, Clone)]
pub struct HostInfo {
    /// Effective uid of this process (0 inside rbuild's rootless user namespace too).
    pub euid: u32,
    /// This process's `uid_map` when it runs in a user namespace (rootless rbuild does).
    pub uid_map: Option<String>,
    /// Kernel version (major, minor).
    pub kernel: (u32, u32),
    /// Which namespaces this process may create.
    pub namespaces: Namespaces,
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// `kernel.unprivileged_userns_clone` (Debian/Ubuntu kernels only).
    pub unprivileged_userns_clone: Option<u64>,
    /// `newuidmap`, if installed.
    pub newuidmap: Option<PathBuf>,
    /// `newgidmap`, if installed.
    pub newgidmap: Option<PathBuf>,
    /// Name of the invoking user (outside any user namespace rbuild entered).
    pub user: String,
    /// The user's `/etc/subuid` ranges.
    pub subuid: Vec<IdRange>,
    /// The user's `/etc/subgid` ranges.
    pub subgid: Vec<IdRange>,
    /// Overlay in this store: `Ok(userxattr)` when it mounts, else why not.
    pub overlay: Result<bool, String>,
    /// The snapshotter builds will use (`overlayfs`, `overlayfs (rootless, userxattr)`, `copy`).
    pub snapshotter: String,
    /// The isolation RUN steps will get, or why they cannot run at all.
    pub isolation: Result<rbuild_sandbox::Resolved, String>,
    /// The store directory.
    pub store: PathBuf,
    /// Bytes the store occupies on disk (hard links counted once).
    pub store_bytes: u64,
    /// The registries.conf that will be read, if any.
    pub registries_conf: Option<PathBuf>,
    /// Credential files looked at (docker's config.json, podman's auth.json) and whether each
    /// exists.
    pub credential_files: Vec<(PathBuf, bool)>,
}

fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Disk usage of a tree, without following symlinks or crossing into other filesystems.
fn disk_usage(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(root) else {
        return 0;
    };
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != top.dev() {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total + top.blocks() * 512
}

impl Builder {
    /// Probes the host as a build with `isolation` would (namespaces, subordinate ids, an
    /// overlay mount in this store) and says what the build would use.
    pub fn host_info(&self, isolation: Isolation) -> HostInfo {
        let caps = rbuild_sandbox::probe();
        let euid = caps.euid;
        let uid_map = rbuild_sandbox::in_user_namespace()
            .then(|| std::fs::read_to_string("/proc/self/uid_map").ok())
            .flatten()
            .map(|m| {
                m.lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        let store = self.images().store();
        let overlay = match rbuild_snapshot::probe(store) {
            rbuild_snapshot::ProbeResult::Overlay { userxattr } => Ok(userxattr),
            rbuild_snapshot::ProbeResult::Unavailable { reason } => Err(reason),
        };
        let resolved = rbuild_sandbox::resolve(isolation).map_err(|e| e.to_string());
        let chroot = resolved
            .as_ref()
            .is_ok_and(|r| r.isolation == Isolation::Chroot);
        // As Builder::snapshotter decides.
        let kind = match (&overlay, euid == 0 && !chroot) {
            (Ok(userxattr), true) => rbuild_snapshot::Kind::Overlay {
                userxattr: *userxattr,
            },
            _ => rbuild_snapshot::Kind::Copy,
        };
        let (credential_files, registries_conf) = registry_files();
        // The invoking user: outside rbuild's namespace, uid 0 is the user whose map this is.
        let host_uid = uid_map
            .as_deref()
            .and_then(|m| m.split(' ').nth(1))
            .and_then(|u| u.parse::<u32>().ok())
            .unwrap_or(euid);
        let (user, subuid, subgid) = if host_uid == euid {
            (String::new(), caps.subuid, caps.subgid)
        } else {
            let name = user_name(host_uid).unwrap_or_else(|| host_uid.to_string());
            let (u, g) = rbuild_sandbox::subid_ranges(&name, host_uid).unwrap_or_default();
            (name, u, g)
        };
        let user = if user.is_empty() {
            user_name(euid).unwrap_or_else(|| euid.to_string())
        } else {
            user
        };
        HostInfo {
            euid,
            uid_map,
            kernel: caps.kernel,
            namespaces: resolved
                .as_ref()
                .map(|r| r.namespaces.clone())
                .unwrap_or_else(|_| rbuild_sandbox::probe_namespaces()),
            max_user_namespaces: sysctl("user/max_user_namespaces"),
            unprivileged_userns_clone: sysctl("kernel/unprivileged_userns_clone"),
            newuidmap: caps.newuidmap,
            newgidmap: caps.newgidmap,
            user,
            subuid,
            subgid,
            overlay,
            snapshotter: kind.name().to_string(),
            isolation: resolved,
            store: store.root().to_path_buf(),
            store_bytes: disk_usage(store.root()),
            registries_conf,
            credential_files,
        }
    }
}

/// The name of `uid` in /etc/passwd, read directly (no NSS: the static binary has none).
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)? == uid.to_string()).then(|| name.to_string())
    })
}

/// The credential files (with whether each exists) and the registries.conf the registry client
/// would read; none without the `registry` feature, which has no client.
#[cfg(feature = "registry")]
fn registry_files() -> (Vec<(std::path::PathBuf, bool)>, Option<std::path::PathBuf>) {
    let env = |k: &str| std::env::var(k).ok();
    let auth = rbuild_registry::AuthSource::from_env(&env);
    let files = [auth.docker_config, auth.podman_auth_file]
        .into_iter()
        .flatten()
        .map(|p| {
            let exists = p.is_file();
            (p, exists)
        })
        .collect();
    let conf = rbuild_registry::RegistriesConf::discover_path(
        &env,
        Path::new(rbuild_registry::config::SYSTEM_REGISTRIES_CONF),
    );
    (files, conf)
}

#[cfg(not(feature = "registry"))]
fn registry_files() -> (Vec<(std::path::PathBuf, bool)>, Option<std::path::PathBuf>) {
    (Vec::new(), None)
}
