//! Choosing how RUN steps are isolated when the host does not allow everything.
//!
//! The namespace sandbox needs either root with `CAP_SYS_ADMIN` (mount, pid, ipc and uts
//! namespaces) or a user namespace. Containers started with docker's default seccomp profile and
//! locked-down Kubernetes pods allow neither, even to their root user, so there rbuild falls back
//! to *chroot isolation*, as buildah (`--isolation chroot`) and kaniko do: the step is chrooted
//! into its root filesystem with whatever namespaces can still be created, each probed on its
//! own. What that leaves unisolated is said once, in one warning. A non-root caller has no such
//! fallback (chroot needs root), so there the answer is an error that says what to change.

use crate::SandboxError;
use std::str::FromStr;

/// How RUN steps are isolated, as `rbuild build --isolation` chooses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces when the host allows them, else chroot (root only).
    #[default]
    Auto,
    /// The namespace sandbox: mount, pid, ipc and uts namespaces (and a user namespace when not
    /// root); never falls back.
    UserNs,
    /// `chroot` into the step's root with the namespaces that can still be created; root only.
    Chroot,
}

impl Isolation {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Auto => "auto",
            Isolation::UserNs => "userns",
            Isolation::Chroot => "chroot",
        }
    }
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Isolation::Auto),
            "userns" => Ok(Isolation::UserNs),
            "chroot" => Ok(Isolation::Chroot),
            other => Err(format!(
                "unknown isolation {other:?}: use auto, userns or chroot"
            )),
        }
    }
}

/// Which namespaces this process may create: each one tried in a throw-away child, because
/// seccomp profiles and LSMs refuse them one by one, not all or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `unshare(CLONE_NEWUSER)`: `None` when allowed, else the error.
    pub user: Option<String>,
    /// `unshare(CLONE_NEWNS)` (mounts).
    pub mount: Option<String>,
    /// `unshare(CLONE_NEWPID)`.
    pub pid: Option<String>,
    /// `unshare(CLONE_NEWIPC)`.
    pub ipc: Option<String>,
    /// `unshare(CLONE_NEWUTS)` (hostname).
    pub uts: Option<String>,
    /// `unshare(CLONE_NEWNET)`.
    pub net: Option<String>,
}

impl Namespaces {
    /// The namespaces as (name, clone flag, error if refused), in a fixed order.
    pub fn list(&self) -> [(&'static str, libc::c_int, &Option<String>); 6] {
        [
            ("user", libc::CLONE_NEWUSER, &self.user),
            ("mount", libc::CLONE_NEWNS, &self.mount),
            ("pid", libc::CLONE_NEWPID, &self.pid),
            ("ipc", libc::CLONE_NEWIPC, &self.ipc),
            ("uts", libc::CLONE_NEWUTS, &self.uts),
            ("network", libc::CLONE_NEWNET, &self.net),
        ]
    }

    /// Everything the namespace sandbox needs as root without a user namespace.
    fn root_sandbox_ok(&self) -> bool {
        self.mount.is_none() && self.pid.is_none() && self.ipc.is_none() && self.uts.is_none()
    }
}

/// Tries to create each namespace, each in its own forked child so the caller is untouched.
pub fn probe_namespaces() -> Namespaces {
    Namespaces {
        user: try_unshare(libc::CLONE_NEWUSER).err(),
        mount: try_unshare(libc::CLONE_NEWNS).err(),
        pid: try_unshare(libc::CLONE_NEWPID).err(),
        ipc: try_unshare(libc::CLONE_NEWIPC).err(),
        uts: try_unshare(libc::CLONE_NEWUTS).err(),
        net: try_unshare(libc::CLONE_NEWNET).err(),
    }
}

fn try_unshare(flag: libc::c_int) -> Result<(), String> {
    // SAFETY: the child only calls unshare and _exit (async-signal-safe) before exiting.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: freshly forked child; raw syscalls only.
        unsafe {
            let code = if libc::unshare(flag) == 0 {
                0
            } else {
                (*libc::__errno_location()).clamp(1, 255)
            };
            libc::_exit(code)
        }
    }
    match crate::run::wait_pid(pid) {
        Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(()),
        Some(s) if libc::WIFEXITED(s) => {
            Err(std::io::Error::from_raw_os_error(libc::WEXITSTATUS(s)).to_string())
        }
        other => Err(format!("probe child ended with wait status {other:?}")),
    }
}

/// What [`resolve`] decided for a requested [`Isolation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// [`Isolation::UserNs`] or [`Isolation::Chroot`], never `Auto`.
    pub isolation: Isolation,
    /// Root whose own namespaces are refused but who may create a user namespace: the namespace
    /// sandbox then runs in one (an identity map of all ids).
    pub root_in_userns: bool,
    /// What was probed.
    pub namespaces: Namespaces,
    /// For chroot isolation: the one warning saying what steps are not isolated from.
    pub warning: Option<String>,
}

/// Decides the isolation RUN steps get here: probes the namespaces and falls back as
/// [`Isolation::Auto`] allows. Errors say what is missing and what to change.
pub fn resolve(requested: Isolation) -> Result<Resolved, SandboxError> {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let root = uid == 0;
    let ns = probe_namespaces();
    let namespaces = |root_in_userns| Resolved {
        isolation: Isolation::UserNs,
        root_in_userns,
        namespaces: ns.clone(),
        warning: None,
    };
    match (requested, root) {
        (Isolation::Chroot, false) => Err(SandboxError::Unsupported(format!(
            "--isolation chroot needs root (chroot(2) and the step's user switch need it); \
             uid {uid} can only use --isolation userns{}",
            ns.user
                .as_ref()
                .map(|e| format!(", and {}", no_userns_help(uid, e)))
                .unwrap_or_default()
        ))),
        (Isolation::Chroot, true) => Ok(chroot(ns)),
        (Isolation::UserNs | Isolation::Auto, false) => match &ns.user {
            None => Ok(namespaces(false)),
            Some(e) => Err(SandboxError::Unsupported(no_userns_help(uid, e))),
        },
        (Isolation::UserNs, true) => Ok(namespaces(false)),
        (Isolation::Auto, true) => {
            if ns.root_sandbox_ok() {
                Ok(namespaces(false))
            } else if ns.user.is_none() {
                Ok(namespaces(true))
            } else {
                Ok(chroot(ns))
            }
        }
    }
}

fn chroot(ns: Namespaces) -> Resolved {
    let have: Vec<&str> = ns
        .list()
        .iter()
        .filter(|(n, _, e)| e.is_none() && *n != "user")
        .map(|(n, _, _)| {
            if *n == "network" {
                "network (--network=none)"
            } else {
                n
            }
        })
        .collect();
    let mut missing = Vec::new();
    if ns.mount.is_some() {
        missing.push(
            "mounts (no /proc, /sys or /dev/pts in steps; device nodes, /etc/hosts and \
             /etc/resolv.conf are created for the step and removed after it; RUN --mount can \
             only add files such as secrets; the copy snapshotter is used)",
        );
    }
    if ns.pid.is_some() {
        missing.push(
            "processes (steps see this container's processes; a step's leftover processes are \
             killed with its process group)",
        );
    }
    if ns.net.is_some() {
        missing.push("network (RUN --network=none is refused)");
    }
    if ns.uts.is_some() {
        missing.push("hostname (steps see this container's)");
    }
    if ns.ipc.is_some() {
        missing.push("IPC");
    }
    let why = match (&ns.user, &ns.mount) {
        (Some(u), Some(m)) => format!(
            "this host refuses user namespaces ({u}) and mount namespaces ({m}), so RUN steps \
             run"
        ),
        _ => "as asked (--isolation chroot), RUN steps run".to_string(),
    };
    let warning = format!(
        "chroot isolation: {why} chrooted into their root filesystem, as buildah's chroot \
         isolation does, with {} namespaces. Not isolated: {}. A root step can leave a chroot: \
         build only trusted Dockerfiles this way",
        if have.is_empty() {
            "no".to_string()
        } else {
            have.join(", ")
        },
        if missing.is_empty() {
            "nothing else".to_string()
        } else {
            missing.join("; ")
        }
    );
    Resolved {
        isolation: Isolation::Chroot,
        root_in_userns: false,
        namespaces: ns,
        warning: Some(warning),
    }
}

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The error for a non-root caller without user namespaces: what is refused and each way out.
pub fn no_userns_help(uid: u32, why: &str) -> String {
    let name = crate::subid::user_name(uid).unwrap_or_else(|| uid.to_string());
    let who = if name == uid.to_string() {
        format!("uid {uid}")
    } else {
        format!("user {name} (uid {uid})")
    };
    let mut fixes = Vec::new();
    if sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        fixes.push(
            "allow user namespaces: sysctl -w user.max_user_namespaces=15000 (it is 0)".to_string(),
        );
    }
    if sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        fixes.push(
            "allow unprivileged ones: sysctl -w kernel.unprivileged_userns_clone=1 (it is 0)"
                .into(),
        );
    }
    if sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        fixes.push(
            "lift AppArmor's restriction: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
                .into(),
        );
    }
    fixes.push(
        "in a container, allow unshare in its seccomp profile (docker run --security-opt \
         seccomp=unconfined; Kubernetes: securityContext.seccompProfile.type: Unconfined)"
            .into(),
    );
    fixes.push(
        "or run rbuild as root in the container: it then falls back to chroot isolation".into(),
    );
    let mut msg = format!(
        "RUN steps cannot be isolated: {who} is not root and this host refuses user namespaces \
         (unshare(CLONE_NEWUSER): {why}). To fix it: {}",
        fixes.join("; ")
    );
    if let Ok((u, g)) = crate::subid::subid_ranges(&name, uid) {
        if u.is_empty() || g.is_empty() {
            msg.push_str(&format!(
                ". Also give {name} subordinate ids for images with several owners: usermod \
                 --add-subuids 100000-165535 --add-subgids 100000-165535 {name}"
            ));
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in [Isolation::Auto, Isolation::UserNs, Isolation::Chroot] {
            assert_eq!(i.name().parse::<Isolation>(), Ok(i));
        }
        assert!("docker".parse::<Isolation>().unwrap_err().contains("auto"));
    }

    #[test]
    fn chroot_warning_names_what_is_missing() {
        let refused = Some("Operation not permitted (os error 1)".to_string());
        let r = chroot(Namespaces {
            user: refused.clone(),
            mount: refused.clone(),
            pid: refused.clone(),
            ipc: None,
            uts: refused.clone(),
            net: refused,
        });
        let w = r.warning.unwrap();
        assert!(w.contains("with ipc namespaces"), "{w}");
        assert!(w.contains("no /proc"), "{w}");
        assert!(w.contains("--network=none is refused"), "{w}");
        assert!(!w.contains("IPC"), "{w}");
    }
}
