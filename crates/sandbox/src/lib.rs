//! The build-step sandbox: runs one `RUN` step's command inside a root filesystem, isolated in
//! its own mount, pid, ipc and uts namespaces (plus user and network namespaces when asked),
//! with no daemon and no setuid helper beyond `newuidmap`/`newgidmap`.
//!
//! Use it from the build engine for every `RUN` instruction: give it the step's rootfs (a plain
//! directory or an overlay of layer directories that the sandbox mounts itself, inside its own
//! mount namespace, so nothing ever stays mounted on the host), argv, environment, user and
//! extra mounts; it streams the step's output to a callback and returns its exit status.
//! It works as root and as an ordinary user (container root is mapped to the caller, 1..=N to
//! the caller's `/etc/subuid` range), and it is safe to call from a multi-threaded program,
//! e.g. a tokio runtime: it never re-executes `/proc/self/exe` and never `unshare`s in the
//! calling process.
//!
//! # Process tree
//!
//! ```text
//! caller (any thread)              -- fork() --> helper
//!   | reads "unshared" on sync pipe                | unshare(NEWUSER? NS PID IPC UTS NET?)
//!   | runs newuidmap/newgidmap on helper            | writes "u", waits for "go"
//!   | writes "go"                                   | fork() --> init (PID 1 of the new pid ns)
//!   | reads init's pid                              |   mount ns private; build detached mounts
//!   | polls stdout/stderr, feeds stdin              |   (rootfs, proc, dev nodes, sys, files,
//!   | kills init+helper on timeout/cancel           |   binds); pivot_root; attach them; hostname,
//!   | waitpid(helper); reads report pipe            |   lo up; setgroups/setgid/setuid; chdir;
//!                                                   |   execve(step)  -- the step IS PID 1
//!                                                   | waitpid(init); reports its wait status
//! ```
//!
//! Between `fork` and `execve` the children only make async-signal-safe raw syscalls on data
//! the caller prepared beforehand. Set-up failures come back over a close-on-exec report pipe
//! as (step, errno), so the error reads `sandbox set-up failed: pivot_root into ...: EINVAL`.
//! When the step (PID 1) exits, the kernel kills everything else in its pid namespace, so no
//! background process outlives the step.
//!
//! # Mount stubs
//!
//! Mount points missing from the rootfs (`/proc`, `/dev`, `/sys`, `/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname`, `RUN --mount` targets and their parents) must exist
//! for the mounts to attach:
//!
//! - [`RootfsSpec::Overlay`]: they come from an extra bottom-most lower layer the sandbox
//!   builds in its private temp dir, so nothing is ever written to `upper` for them (unless a
//!   rootfs symlink redirects a mount point, see below).
//! - [`RootfsSpec::Dir`]: they are created as empty directories/files in the directory. After
//!   the step the sandbox removes those it created that are still empty (like BuildKit's
//!   mount-stub cleaner).
//!
//! Either way every stub created in the writable layer is listed in
//! [`RunResult::mount_stubs`], so the caller can also exclude them when diffing. Paths are
//! resolved inside the rootfs only (after `pivot_root`), so a symlinked `/etc` can never
//! make the sandbox create or mount anything on the host.
//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` are bind mounts of generated files, so
//! what the step writes to them never lands in the layer.
//!
//! # What the step gets (docker build parity)
//!
//! - `/proc` (new, for its pid namespace) with docker's masked paths (`/proc/kcore`,
//!   `/proc/keys`, `/proc/timer_list`, ... → `/dev/null` or an empty read-only tmpfs) and
//!   read-only paths (`/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus`,
//!   `/proc/fs`); `/sys` read-only (a fresh sysfs with `Network::None`, else the host's).
//! - `/dev` tmpfs with null, zero, full, random, urandom, tty bound from the host, a new
//!   devpts instance (`/dev/ptmx` → `pts/ptmx`), `/dev/shm` and the fd/stdin/stdout/stderr
//!   links.
//! - Docker's default capability set (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
//!   SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP) in
//!   its bounding set; MKNOD is dropped when running as real root without a user namespace,
//!   because docker relies on the device cgroup (which the sandbox does not set up) to keep a
//!   `mknod`ed host disk unusable.
//! - Hostname `buildkitsandbox` unless [`RunSpec::hostname`] says otherwise.
//! - Extra device nodes, device mounts and OCI hooks from [`RunSpec::devices`] (CDI devices,
//!   `--device`), applied as an OCI runtime applies them; see [`DeviceEdits`].
//! - The step is PID 1 of its pid namespace, as in `docker build`: signals it sends itself
//!   without a handler are ignored by the kernel (`kill -9 $$` does nothing).
//!
//! Not done (yet): seccomp, cgroup limits, `/dev/console`, `no_new_privs` (docker does not
//! set it either), bind-mount propagation options.
//!
//! # Example
//!
//! ```no_run
//! use rbuild_sandbox::{Sandbox, SandboxOptions, RunSpec, RootfsSpec, Stream};
//! let sb = Sandbox::new(SandboxOptions::default())?;
//! let spec = RunSpec {
//!     rootfs: RootfsSpec::Dir("/var/lib/rbuild/rootfs".into()),
//!     args: vec!["/bin/sh".into(), "-c".into(), "echo hello".into()],
//!     env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
//!     ..RunSpec::default()
//! };
//! let mut out = Vec::new();
//! let res = sb.run(&spec, &mut |s, b| if s == Stream::Stdout { out.extend_from_slice(b) })?;
//! assert_eq!(res.code, Some(0));
//! # Ok::<(), rbuild_sandbox::SandboxError>(())
//! ```

#![warn(missing_docs)]

mod child;
mod devices;
mod error;
mod exec;
mod isolation;
mod probe;
mod remove;
mod run;
mod subid;
mod userns;

pub use devices::{DeviceBind, DeviceEdits, DeviceHook, DeviceNodeBind, HookStage};
pub use error::SandboxError;
pub use exec::{exec_in, ExecProcess, ExecSpec};
pub use isolation::{no_userns_help, probe_namespaces, resolve, Isolation, Namespaces, Resolved};
pub use probe::{probe, Capabilities};
pub use subid::{parse_subid, subid_ranges, subid_ranges_from, IdRange};
pub use userns::{enter_user_namespace, in_user_namespace, UserNamespace};

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// How container ids map to host ids; lets the caller force the rootless code path (tests,
/// hardened hosts) or the degraded single-id map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IdMapMode {
    /// Root: no user namespace. Otherwise: a user namespace with the subuid/subgid ranges when
    /// the caller has them and `newuidmap`/`newgidmap` exist, else a single-id map.
    #[default]
    Auto,
    /// Always create a user namespace (as root: an identity map of all ids).
    ForceUserNs,
    /// Always a user namespace mapping only container 0 to the caller's uid/gid.
    Single,
}

/// Options fixed for the lifetime of a [`Sandbox`], resolved once in [`Sandbox::new`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// How ids are mapped; see [`IdMapMode`].
    pub id_map: IdMapMode,
    /// How steps are isolated; see [`Isolation`].
    pub isolation: Isolation,
}

/// How the step's root filesystem is given, so the engine can use a plain directory (simple,
/// root-only copy-based builds) or an overlay of its layer directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSpec {
    /// A directory used as `/` directly; the step's writes land in it. It is the step's
    /// writable layer: do not give the same directory to two runs at once.
    Dir(PathBuf),
    /// An overlay the sandbox mounts inside its own mount namespace (`userxattr` in a user
    /// namespace). Writes land in `upper`; `work` must be an empty dir on the same filesystem.
    Overlay {
        /// Read-only layers, top first.
        lowers: Vec<PathBuf>,
        /// Writable layer.
        upper: PathBuf,
        /// Overlay work directory.
        work: PathBuf,
        /// Mount with `volatile`: the kernel neither syncs the upper directory at unmount nor
        /// honours the step's own `fsync`s (dpkg issues thousands). For callers that make what
        /// they keep durable themselves, as the snapshotter's commit does (a sync, or a marker
        /// that has the tree checked after a reboot); the upper and work directories must then
        /// never be mounted again.
        volatile: bool,
    },
}

/// Network mode of a step, mirroring `RUN --network`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// Share the caller's network namespace (docker build's default).
    #[default]
    Host,
    /// A new network namespace with only loopback, up.
    None,
}

/// An extra mount for `RUN --mount`; the caller prepares sources (cache dirs, secret files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path inside the rootfs; missing directories are created as mount stubs.
    pub target: String,
    /// What to mount there.
    pub kind: MountKind,
}

/// The kinds of `RUN --mount` the sandbox implements itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// Bind a host file or directory (recursively); secrets should be `readonly: true`.
    Bind {
        /// Host path, resolved in the caller's view.
        source: PathBuf,
        /// Make the mount (and everything below it) read-only.
        readonly: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes (kernel default: half of RAM).
        size: Option<u64>,
    },
}

/// Which of the step's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

/// Everything about one step's execution; the caller resolves names (USER, PATH-less shell
/// form) to numbers and argv beforehand so the sandbox never parses image files.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Root filesystem of the step.
    pub rootfs: RootfsSpec,
    /// argv; `argv[0]` without a `/` is searched in the `PATH` of `env` (or the default PATH).
    pub args: Vec<String>,
    /// Environment as `KEY=value` strings, exactly what the step sees.
    pub env: Vec<String>,
    /// Absolute working directory, created (as root) if missing.
    pub cwd: String,
    /// User id the step runs as.
    pub uid: u32,
    /// Group id the step runs as.
    pub gid: u32,
    /// Supplementary groups (docker sets the user's groups from /etc/group).
    pub additional_gids: Vec<u32>,
    /// Hostname of the uts namespace, also written to /etc/hostname and /etc/hosts.
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// Extra mounts, applied in order after the standard ones.
    pub mounts: Vec<MountSpec>,
    /// Bytes fed on stdin (heredoc bodies); `None` gives an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Extra /etc/hosts entries as (hostname, address), like `--add-host`.
    pub hosts: Vec<(String, String)>,
    /// Kill the whole step after this long and return [`SandboxError::TimedOut`].
    pub timeout: Option<Duration>,
    /// Raise to kill the whole step; `run` then returns [`SandboxError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Device nodes, mounts and OCI hooks (CDI devices, `--device`); see [`DeviceEdits`].
    pub devices: DeviceEdits,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            rootfs: RootfsSpec::Dir(PathBuf::new()),
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: String::new(),
            network: Network::Host,
            mounts: Vec::new(),
            stdin: None,
            hosts: Vec::new(),
            timeout: None,
            cancel: None,
            devices: DeviceEdits::default(),
        }
    }
}

/// The descriptors a container's process gets as its stdin, stdout and stderr, for
/// [`Sandbox::run_attached`]: a terminal's slave side (`run -t`), pipes, a log file or
/// `/dev/null`, all owned by the caller and only borrowed for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerIo {
    /// Becomes fd 0.
    pub stdin: std::os::fd::RawFd,
    /// Becomes fd 1.
    pub stdout: std::os::fd::RawFd,
    /// Becomes fd 2.
    pub stderr: std::os::fd::RawFd,
    /// fd 0 is a pseudo-terminal slave that becomes the process's controlling terminal, so
    /// Ctrl-C typed into it reaches the foreground process group as SIGINT.
    pub tty: bool,
}

/// Outcome of a step that ran: exactly one of `code`/`signal` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunResult {
    /// Exit code, when the step exited.
    pub code: Option<i32>,
    /// Signal number, when the step was killed by a signal.
    pub signal: Option<i32>,
    /// Things the user should know (e.g. the single-id map and what it breaks).
    pub warnings: Vec<String>,
    /// Mount stubs the sandbox created in the rootfs (absolute paths inside it), in creation
    /// order; those still empty after the step were removed again. Exclude them from diffs.
    pub mount_stubs: Vec<String>,
}

/// One line of a user namespace's `uid_map`/`gid_map`, so callers that read what a step wrote
/// (the layer writer) can translate host owners back to the ids the step saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRange {
    /// First id inside the namespace (container).
    pub container: u32,
    /// First id on the host it maps to.
    pub host: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// The container-to-host id map steps run under; exposed so the engine records container ids in
/// layers built rootless instead of the host's subordinate ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    /// uid ranges, as written to `/proc/PID/uid_map`.
    pub uids: Vec<MapRange>,
    /// gid ranges, as written to `/proc/PID/gid_map`.
    pub gids: Vec<MapRange>,
}

/// How this sandbox maps ids, decided once in [`Sandbox::new`].
#[derive(Debug, Clone)]
pub(crate) enum IdMapping {
    /// Root without a user namespace.
    Host,
    /// Container 0 -> caller only.
    Single { uid: u32, gid: u32 },
    /// Root in a user namespace: all ids to themselves.
    Identity,
    /// Container 0 -> caller, 1..=N -> subordinate ranges, written by newuidmap/newgidmap.
    Ranges {
        uid: u32,
        gid: u32,
        uid_ranges: Vec<IdRange>,
        gid_ranges: Vec<IdRange>,
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
}

/// A configured sandbox; cheap to share between threads, each [`Sandbox::run`] is independent.
#[derive(Debug, Clone)]
pub struct Sandbox {
    mapping: IdMapping,
    /// The caller itself runs in a (non-initial) user namespace, so overlays need `userxattr`
    /// even when the sandbox adds no namespace of its own.
    nested: bool,
    warnings: Vec<String>,
    /// Chroot isolation (see [`isolation`]): steps are chrooted, not pivoted, into their root.
    chroot: Option<Arc<Resolved>>,
    /// The chroot warning went out with a run already (it is said once per sandbox).
    warned: Arc<AtomicBool>,
}

impl Sandbox {
    /// Decides the id mapping (reading /etc/subuid and /etc/subgid when not root) so that every
    /// run of the build uses the same one and the warnings are computed once.
    pub fn new(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let resolved = isolation::resolve(opts.isolation)?;
        let id_map = match opts.id_map {
            IdMapMode::Auto if resolved.root_in_userns => IdMapMode::ForceUserNs,
            m => m,
        };
        let chroot = (resolved.isolation == Isolation::Chroot).then(|| Arc::new(resolved));
        let mut warnings = Vec::new();
        let single_warning = |why: &str| {
            format!(
                "{why}: only container uid/gid 0 is mapped (to host {uid}:{gid}); chown to other \
                 ids, USER other than root, supplementary groups, apt's _apt sandbox user and \
                 files owned by other ids in the image will fail"
            )
        };
        let mapping = match (id_map, uid == 0) {
            _ if chroot.is_some() => IdMapping::Host,
            (IdMapMode::Auto, true) => IdMapping::Host,
            (IdMapMode::ForceUserNs, true) => IdMapping::Identity,
            (IdMapMode::Single, _) => {
                warnings.push(single_warning("single-id map requested"));
                IdMapping::Single { uid, gid }
            }
            (IdMapMode::Auto | IdMapMode::ForceUserNs, false) => {
                let name = subid::user_name(uid).unwrap_or_else(|| uid.to_string());
                let (uid_ranges, gid_ranges) = subid_ranges(&name, uid)?;
                let tools = (subid::find_tool("newuidmap"), subid::find_tool("newgidmap"));
                match tools {
                    (Some(newuidmap), Some(newgidmap))
                        if !uid_ranges.is_empty() && !gid_ranges.is_empty() =>
                    {
                        IdMapping::Ranges {
                            uid,
                            gid,
                            uid_ranges,
                            gid_ranges,
                            newuidmap,
                            newgidmap,
                        }
                    }
                    (Some(_), Some(_)) => {
                        warnings.push(single_warning(&format!(
                            "no subordinate id ranges for user {name} in /etc/subuid and /etc/subgid"
                        )));
                        IdMapping::Single { uid, gid }
                    }
                    _ => {
                        warnings.push(single_warning(
                            "newuidmap/newgidmap not found (install the uidmap package)",
                        ));
                        IdMapping::Single { uid, gid }
                    }
                }
            }
        };
        Ok(Sandbox {
            mapping,
            nested: userns::in_user_namespace(),
            warnings,
            chroot,
            warned: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The isolation steps get ([`Isolation::UserNs`] for the namespace sandbox, also as root
    /// without a user namespace, or [`Isolation::Chroot`]).
    pub fn isolation(&self) -> Isolation {
        if self.chroot.is_some() {
            Isolation::Chroot
        } else {
            Isolation::UserNs
        }
    }

    /// What chroot isolation does not isolate, for callers that show it before the first run
    /// (it also comes with the first [`RunResult`]).
    pub fn isolation_warning(&self) -> Option<&str> {
        self.chroot.as_ref().and_then(|c| c.warning.as_deref())
    }

    /// The chroot warning, for the first run only.
    pub(crate) fn isolation_warning_once(&self) -> Option<String> {
        let w = self.isolation_warning()?;
        (!self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)).then(|| w.to_string())
    }

    /// Warnings that apply to every run of this sandbox (also copied into each [`RunResult`]).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether steps run in a user namespace, so callers can explain ownership on the host.
    pub fn uses_user_namespace(&self) -> bool {
        !matches!(self.mapping, IdMapping::Host)
    }

    /// The container-to-host id map of every step's user namespace, exactly as written to
    /// `uid_map`/`gid_map`; `None` without a user namespace (root), where on-disk ids already are
    /// the container's.
    pub fn id_map(&self) -> Option<IdMaps> {
        let one = |id: u32| MapRange {
            container: 0,
            host: id,
            size: 1,
        };
        match &self.mapping {
            IdMapping::Host => None,
            IdMapping::Identity => {
                let all = vec![MapRange {
                    container: 0,
                    host: 0,
                    size: u32::MAX,
                }];
                Some(IdMaps {
                    uids: all.clone(),
                    gids: all,
                })
            }
            IdMapping::Single { uid, gid } => Some(IdMaps {
                uids: vec![one(*uid)],
                gids: vec![one(*gid)],
            }),
            IdMapping::Ranges {
                uid,
                gid,
                uid_ranges,
                gid_ranges,
                ..
            } => {
                // Same layout as run::run_map_tool: 0 -> caller, then the ranges back to back.
                let ranges = |own: u32, sub: &[IdRange]| {
                    let mut out = vec![one(own)];
                    let mut next: u32 = 1;
                    for r in sub {
                        out.push(MapRange {
                            container: next,
                            host: r.start,
                            size: r.count,
                        });
                        match next.checked_add(r.count) {
                            Some(n) => next = n,
                            None => break,
                        }
                    }
                    out
                };
                Some(IdMaps {
                    uids: ranges(*uid, uid_ranges),
                    gids: ranges(*gid, gid_ranges),
                })
            }
        }
    }

    /// Deletes a tree that steps wrote (e.g. a copy-mode rootfs), from root of a user namespace
    /// with this sandbox's map when there is one: rootless, the caller alone cannot remove files
    /// a step chowned to subordinate ids. Missing `path` is not an error.
    pub fn remove_tree(&self, path: &std::path::Path) -> Result<(), SandboxError> {
        remove::remove_tree(self, path)
    }

    /// Gives `path` the owner `uid:gid` and/or the permission bits `mode` as steps see them, with
    /// the privileges steps have: rootless (without [`enter_user_namespace`]) only root of a user
    /// namespace with this sandbox's map may give a file a subordinate id or change a file that
    /// belongs to one (a cache mount's `uid=`, a secret's `uid=`). The owner is set first, since
    /// a chown clears a file's set-id bits.
    pub fn set_owner_mode(
        &self,
        path: &std::path::Path,
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
    ) -> Result<(), SandboxError> {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid cannot fail.
        if matches!(self.mapping, IdMapping::Host) || unsafe { libc::geteuid() } == 0 {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| {
                    SandboxError::io(format!("chown {uid}:{gid} {}", path.display()), e)
                })?;
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(
                    |e| SandboxError::io(format!("chmod {mode:o} {}", path.display()), e),
                )?;
            }
            return Ok(());
        }
        if let Some((uid, gid)) = owner {
            let owner = format!("{uid}:{gid}");
            remove::run_tool(
                self,
                "chown",
                &[
                    "-h".as_ref(),
                    owner.as_ref(),
                    "--".as_ref(),
                    path.as_os_str(),
                ],
                &format!(
                    "chown {owner} {} in the build's user namespace",
                    path.display()
                ),
            )?;
        }
        if let Some(mode) = mode {
            // A file that is still the caller's (no new owner) needs no namespace.
            if owner.is_none()
                && std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).is_ok()
            {
                return Ok(());
            }
            let bits = format!("{mode:o}");
            remove::run_tool(
                self,
                "chmod",
                &[bits.as_ref(), "--".as_ref(), path.as_os_str()],
                &format!(
                    "chmod {bits} {} in the build's user namespace",
                    path.display()
                ),
            )?;
        }
        Ok(())
    }

    /// Copies `src` (a file or a directory tree) to the new path `dest`, keeping owners, modes,
    /// links and times, with the privileges steps have: rootless, files a step gave subordinate
    /// ids (or made unreadable) can only be read and recreated from inside the namespace.
    pub fn copy_tree(
        &self,
        src: &std::path::Path,
        dest: &std::path::Path,
    ) -> Result<(), SandboxError> {
        remove::run_tool(
            self,
            "cp",
            &[
                "-a".as_ref(),
                "-T".as_ref(),
                "--".as_ref(),
                src.as_os_str(),
                dest.as_os_str(),
            ],
            &format!("copy {} to {}", src.display(), dest.display()),
        )
    }

    /// Runs one step to completion, streaming its output to `output` as it arrives.
    ///
    /// Returns `Ok` whenever the step's command ran, whatever its exit status; `Err` when the
    /// sandbox could not be set up, the command could not be executed, or the step was killed
    /// on timeout/cancel.
    pub fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<RunResult, SandboxError> {
        run::run(self, spec, output)
    }

    /// Runs a container's process like [`Sandbox::run`] but with `io` as its stdio (nothing is
    /// captured), calling `on_start` with the host pid of its PID 1 as soon as that exists (so
    /// a container runtime can record it for `stop`, `kill` and `exec`), and returns when it
    /// exits. `spec.stdin`, `spec.timeout` and `spec.cancel` are ignored: the caller signals the
    /// pid itself.
    pub fn run_attached(
        &self,
        spec: &RunSpec,
        io: &ContainerIo,
        on_start: &mut dyn FnMut(i32),
    ) -> Result<RunResult, SandboxError> {
        run::run_io(self, spec, run::Io::Attached { io, on_start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(mapping: IdMapping) -> Sandbox {
        Sandbox {
            mapping,
            nested: false,
            warnings: Vec::new(),
            chroot: None,
            warned: Arc::new(AtomicBool::new(false)),
        }
    }

    fn r(container: u32, host: u32, size: u32) -> MapRange {
        MapRange {
            container,
            host,
            size,
        }
    }

    #[test]
    fn id_map_matches_what_is_written_to_the_namespace() {
        assert_eq!(sandbox(IdMapping::Host).id_map(), None);
        assert_eq!(
            sandbox(IdMapping::Identity).id_map(),
            Some(IdMaps {
                uids: vec![r(0, 0, u32::MAX)],
                gids: vec![r(0, 0, u32::MAX)],
            })
        );
        assert_eq!(
            sandbox(IdMapping::Single {
                uid: 1001,
                gid: 1002
            })
            .id_map(),
            Some(IdMaps {
                uids: vec![r(0, 1001, 1)],
                gids: vec![r(0, 1002, 1)],
            })
        );
        let ranges = sandbox(IdMapping::Ranges {
            uid: 1001,
            gid: 1001,
            uid_ranges: vec![
                IdRange {
                    start: 100_000,
                    count: 65_536,
                },
                IdRange {
                    start: 300_000,
                    count: 10,
                },
            ],
            gid_ranges: vec![IdRange {
                start: 200_000,
                count: 1000,
            }],
            newuidmap: PathBuf::from("/usr/bin/newuidmap"),
            newgidmap: PathBuf::from("/usr/bin/newgidmap"),
        });
        assert_eq!(
            ranges.id_map(),
            Some(IdMaps {
                uids: vec![r(0, 1001, 1), r(1, 100_000, 65_536), r(65_537, 300_000, 10)],
                gids: vec![r(0, 1001, 1), r(1, 200_000, 1000)],
            })
        );
    }
}
