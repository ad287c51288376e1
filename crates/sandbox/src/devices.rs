//! Devices a run gets beyond the standard `/dev` (CDI container edits, `--device`): host
//! device nodes, extra bind mounts with their options, and OCI hooks at their lifecycle points.
//!
//! # How they are applied (as an OCI runtime would, rootless included)
//!
//! - Device nodes are bind mounts of the host node (a user namespace cannot `mknod`, and binding
//!   works the same as root). Under `/dev` they land in the run's `/dev` tmpfs; elsewhere their
//!   mount point is a stub (see the crate docs), so nothing of them reaches a layer. The node keeps
//!   the host's owner and mode (a CDI `fileMode`/`uid`/`gid` cannot be applied to a bind without
//!   changing the host's node); `permissions` without `w` makes the bind read-only (there is no
//!   device cgroup to enforce `r`/`m`).
//! - Mounts are bind mounts (recursive with `rbind`) with `ro`, `nosuid`, `nodev`, `noexec`
//!   applied as mount attributes, attached after the standard mounts and `RUN --mount`s.
//! - Hooks get the OCI state JSON on stdin and are killed after their timeout:
//!   `prestart`, `createRuntime` and `createContainer` run once every mount is in place, before
//!   the process's credentials are set, with the runtime's root as their root (their path and the
//!   bundle's `config.json` are host paths; `root.path` there is `/proc/PID/root`, the
//!   container's root as the runtime sees it). They run in the container's mount and pid
//!   namespaces: `prestart`/`createRuntime` should run in the runtime's, which this daemonless
//!   sandbox only approximates (their file system view is the runtime's). `startContainer` runs
//!   inside the container right before the process. `poststart` runs in the caller once the
//!   process exists, `poststop` after it ended; their failures are warnings, as the OCI spec says.
//!   The hooks that device specs use in practice (`nvidia-ctk hook update-ldcache`,
//!   `create-symlinks`, `chmod`) are `createContainer` hooks.
//!
//! Between `fork` and `execve` this follows `child.rs`'s rule: the hook's argv, environment and
//! state are prepared by the caller; the child only forks, pipes, execs and waits.

use std::path::PathBuf;
use std::time::Duration;

/// Device nodes, mounts and hooks of one run; empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceEdits {
    /// Host device nodes to bind.
    pub nodes: Vec<DeviceNodeBind>,
    /// Host paths to bind.
    pub mounts: Vec<DeviceBind>,
    /// OCI hooks.
    pub hooks: Vec<DeviceHook>,
}

impl DeviceEdits {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.mounts.is_empty() && self.hooks.is_empty()
    }
}

/// A host device node bound into the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNodeBind {
    /// Absolute path in the run.
    pub path: String,
    /// The node on the host.
    pub host_path: PathBuf,
    /// Bind read-only (no `w` in the CDI permissions).
    pub readonly: bool,
}

/// A host path bound into the run with mount options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceBind {
    /// Host file or directory.
    pub host_path: PathBuf,
    /// Absolute path in the run.
    pub container_path: String,
    /// Mount type as the spec gives it; only `bind` (or `rbind`) is supported.
    pub kind: String,
    /// `ro`.
    pub readonly: bool,
    /// `rbind`: submounts too.
    pub recursive: bool,
    /// `nosuid`.
    pub nosuid: bool,
    /// `nodev`.
    pub nodev: bool,
    /// `noexec`.
    pub noexec: bool,
}

/// The OCI lifecycle point of a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookStage {
    /// Deprecated alias of `createRuntime` in the OCI spec, run just before it.
    Prestart,
    /// After the container is created, before `pivot_root`.
    CreateRuntime,
    /// After the mounts, before `pivot_root`, in the container's namespaces.
    CreateContainer,
    /// In the container, before the process.
    StartContainer,
    /// After the process started.
    Poststart,
    /// After the process ended.
    Poststop,
}

impl HookStage {
    /// The OCI name.
    pub fn name(self) -> &'static str {
        match self {
            HookStage::Prestart => "prestart",
            HookStage::CreateRuntime => "createRuntime",
            HookStage::CreateContainer => "createContainer",
            HookStage::StartContainer => "startContainer",
            HookStage::Poststart => "poststart",
            HookStage::Poststop => "poststop",
        }
    }

    /// The container status the OCI spec gives the hook in its state.
    pub(crate) fn status(self) -> &'static str {
        match self {
            HookStage::Prestart | HookStage::CreateRuntime | HookStage::CreateContainer => {
                "creating"
            }
            HookStage::StartContainer => "created",
            HookStage::Poststart => "running",
            HookStage::Poststop => "stopped",
        }
    }
}

/// One OCI hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHook {
    /// When it runs.
    pub stage: HookStage,
    /// Absolute path of the program (a host path, inside the container for `startContainer`).
    pub path: PathBuf,
    /// Its argv, argv\[0\] included.
    pub args: Vec<String>,
    /// Its whole environment.
    pub env: Vec<String>,
    /// Killed after this long; `None` waits for it.
    pub timeout: Option<Duration>,
}
