//! Moving the whole calling process into a user namespace, once, at the start of `main`.
//!
//! A rootless build must read, write and delete files owned by the caller's subordinate ids
//! (apt's 0700 `partial/` directory owned by `_apt`, base layers owned by `daemon`...). Only a
//! process inside a user namespace that maps those ids can do that, and the per-step namespaces
//! of [`crate::Sandbox::run`] end with their step. So a program that builds rootless calls
//! [`enter_user_namespace`] first thing in `main`, like buildah's and podman's re-exec into
//! their namespace: afterwards the process is uid 0 of a namespace where container 0 is the
//! caller and 1..=N are the `/etc/subuid` ranges, in a private mount namespace of its own, so
//! unpacking base layers keeps their owners, overlay mounts work (`userxattr`), and committing a
//! step reads every file. Every mount the build makes dies with the process.
//!
//! It must run while the process is single-threaded (the kernel refuses `unshare(CLONE_NEWUSER)`
//! otherwise), which is why it is a call for `main` and not something the builder does for
//! itself: a library cannot know whether its host program has started threads. Programs that
//! do not call it still build rootless through per-step namespaces, with the limits that
//! [`crate::probe`] reports.

use crate::subid::{self, IdRange};
use crate::SandboxError;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// What [`enter_user_namespace`] did, so the caller can say which rootless mode a build runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserNamespace {
    /// The caller already is uid 0 (real root, or root of a user namespace): nothing to do.
    AlreadyRoot,
    /// The process now runs as uid 0 of a new user namespace: container 0 is the caller's uid,
    /// container 1.. are these subordinate ranges, in order.
    Entered {
        /// The caller's uid outside the namespace (container uid 0).
        host_uid: u32,
        /// The `/etc/subuid` ranges mapped from container uid 1 on.
        uid_ranges: Vec<IdRange>,
        /// The `/etc/subgid` ranges mapped from container gid 1 on.
        gid_ranges: Vec<IdRange>,
    },
    /// This host cannot give the caller a mapped namespace (the reason says why and what to
    /// install); nothing was changed and builds use per-step namespaces.
    Unavailable(String),
}

/// Makes the calling process uid 0 of a new user namespace mapped with the caller's subordinate
/// id ranges (through `newuidmap`/`newgidmap`), with its own private mount namespace.
///
/// Call it at the very start of `main`, before any thread exists (an async runtime, a logger
/// thread...): with more than one thread it returns an error and changes nothing. An error after
/// the namespace was created (a refused `newuidmap`) leaves the process unusable for builds;
/// the caller should report it and exit.
pub fn enter_user_namespace() -> Result<UserNamespace, SandboxError> {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        return Ok(UserNamespace::AlreadyRoot);
    }
    let threads = thread_count()?;
    if threads != 1 {
        return Err(SandboxError::InvalidSpec(format!(
            "entering a user namespace needs a single-threaded process, this one has {threads} \
             threads: call rbuild_sandbox::enter_user_namespace at the start of main"
        )));
    }
    let name = subid::user_name(uid).unwrap_or_else(|| uid.to_string());
    let (uid_ranges, gid_ranges) = subid::subid_ranges(&name, uid)?;
    if uid_ranges.is_empty() || gid_ranges.is_empty() {
        return Ok(UserNamespace::Unavailable(format!(
            "no subordinate id ranges for user {name} in /etc/subuid and /etc/subgid"
        )));
    }
    let (Some(newuidmap), Some(newgidmap)) =
        (subid::find_tool("newuidmap"), subid::find_tool("newgidmap"))
    else {
        return Ok(UserNamespace::Unavailable(
            "newuidmap/newgidmap not found (install the uidmap package)".into(),
        ));
    };
    let maps = Maps {
        uid,
        gid,
        uid_ranges: &uid_ranges,
        gid_ranges: &gid_ranges,
        newuidmap,
        newgidmap,
    };
    if let Some(why) = maps.enter()? {
        return Ok(UserNamespace::Unavailable(why));
    }
    Ok(UserNamespace::Entered {
        host_uid: uid,
        uid_ranges,
        gid_ranges,
    })
}

/// Whether this process runs in a user namespace other than the host's (for example after
/// [`enter_user_namespace`]): there, overlay metadata must live in `user.overlay.*` xattrs
/// (`userxattr`), because `trusted.*` xattrs need the host's CAP_SYS_ADMIN.
pub fn in_user_namespace() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let full: Vec<&str> = map.split_whitespace().collect();
    full != ["0", "0", "4294967295"]
}

fn thread_count() -> Result<usize, SandboxError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| SandboxError::io("read /proc/self/status", e))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

struct Maps<'a> {
    uid: u32,
    gid: u32,
    uid_ranges: &'a [IdRange],
    gid_ranges: &'a [IdRange],
    newuidmap: PathBuf,
    newgidmap: PathBuf,
}

impl Maps<'_> {
    /// The process cannot map itself (newuidmap must run outside the namespace), so a forked
    /// helper waits until this process has unshared, maps it, and reports failures as text.
    /// `Ok(Some(why))`: the kernel refused the namespace and nothing changed.
    fn enter(&self) -> Result<Option<String>, SandboxError> {
        let (go_read, go_write) = crate::run::pipe()?;
        let (err_read, err_write) = crate::run::pipe()?;
        // SAFETY: getpid cannot fail.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the process is single-threaded (checked by the caller), so the child may run
        // ordinary Rust code, including spawning the map tools.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(SandboxError::io("fork", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            drop(go_write);
            drop(err_read);
            self.helper(parent, go_read, err_write);
        }
        drop(go_read);
        drop(err_write);
        // SAFETY: unshare has no memory-safety preconditions.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) };
        let unshare_err = std::io::Error::last_os_error();
        let mut go = std::fs::File::from(go_write);
        if rc == 0 {
            let _ = go.write_all(b"g");
        }
        drop(go);
        let mut detail = String::new();
        let _ = std::fs::File::from(err_read).read_to_string(&mut detail);
        let status = crate::run::wait_pid(pid);
        if rc != 0 {
            // Nothing changed yet: user namespaces are disabled or refused here (sysctl,
            // seccomp in a container, LSM policy). Builds fall back to per-step namespaces and
            // every other command works as before.
            return Ok(Some(format!(
                "unshare(CLONE_NEWUSER | CLONE_NEWNS) refused: {unshare_err}"
            )));
        }
        // No status means the helper could not be waited for (SIGCHLD ignored by whoever
        // started us): then the map itself says whether it worked.
        let mapped =
            std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| !m.trim().is_empty());
        if status.is_some_and(|s| s != 0) || !detail.is_empty() || !mapped {
            return Err(SandboxError::IdMap {
                which: "uid/gid",
                detail: if detail.is_empty() {
                    format!(
                        "map helper ended with wait status {:#x}",
                        status.unwrap_or(-1)
                    )
                } else {
                    detail
                },
            });
        }
        // Mounts made from now on need not propagate anywhere. A mount namespace created with a
        // user namespace is less privileged than the host's, so the kernel already keeps its
        // mounts from propagating back; a refusal (some LSM policies) is therefore harmless.
        // The caller's supplementary groups are kept: they still grant access to group-shared
        // contexts, secrets and output directories (they only show as `nogroup`).
        // SAFETY: constant, NUL-terminated arguments.
        unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        Ok(None)
    }

    fn helper(&self, parent: libc::pid_t, go: OwnedFd, err: OwnedFd) -> ! {
        let mut byte = [0u8; 1];
        let started = matches!(std::fs::File::from(go).read(&mut byte), Ok(1));
        if !started {
            // SAFETY: leaving the forked child without running the parent's exit handlers.
            unsafe { libc::_exit(1) };
        }
        let result =
            crate::run::run_map_tool("uid", &self.newuidmap, parent, self.uid, self.uid_ranges)
                .and_then(|()| {
                    crate::run::run_map_tool(
                        "gid",
                        &self.newgidmap,
                        parent,
                        self.gid,
                        self.gid_ranges,
                    )
                });
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                let _ = std::fs::File::from(err).write_all(e.to_string().as_bytes());
                1
            }
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) }
    }
}
