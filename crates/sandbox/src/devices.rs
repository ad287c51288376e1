//! Devices a run gets beyond the standard `/dev` (CDI container edits, `--device`): host
//! device nodes, extra bind mounts with their options, and OCI hooks at their lifecycle points.
//!
//! # How they are applied (as an OCI runtime would, rootless included)
//!
//! - Device nodes are bind mounts of the host node (a user namespace cannot `mknod`, and binding
//!   works the same as root). Under `/dev` they land in the run's `/dev` tmpfs; elsewhere their
//!   mount point is a stub (see the crate docs), so nothing of them reaches a layer. The node keeps
//!   the host's owner and mode (a CDI `fileMode`/`uid`/`gid` cannot be applied to a bind without
//!   changing the host's node). `permissions` are not enforced: that takes a device cgroup, which
//!   this sandbox does not set up; a node without `w` is bound read-only, which keeps the node
//!   itself from being changed (chmod, chown), not the device from being written.
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
//!   `create-symlinks`, `chmod`) are `createContainer` hooks. While such hooks run, the runtime's
//!   root is kept at `/.rbuild-hostroot` in the new root (a mount stub, empty once it is
//!   detached before the process starts).
//! - [`DeviceEdits::setup_only`] ends the run after the set-up hooks, so a caller can give them a
//!   writable layer of their own and run the process on top of it: the engine does that so what
//!   hooks write into the root (`/etc/ld.so.cache`) is seen by a RUN step but kept out of its
//!   layer. What they write into `/dev` (the run's tmpfs) does not carry over then.
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
    /// Apply the mounts and run the child's hooks, then end (exit code 0) without running the
    /// process: lets a caller collect what hooks write in a writable layer of its own (the
    /// engine keeps hook output out of a RUN step's layer this way).
    pub setup_only: bool,
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
    /// Bind read-only (no `w` in the CDI permissions): the node cannot be changed; the device
    /// can still be written, as no device cgroup is set up.
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

// ---------------------------------------------------------------------------------------------
// Plan (caller side, before fork)
// ---------------------------------------------------------------------------------------------

use crate::child::Op;
use crate::run::{components, cpath, cstr, PlanBuilder};
use crate::{RunSpec, SandboxError};
use libc::{c_char, c_int, c_long, c_uint};
use std::ffi::CString;
use std::path::Path;

/// Where the runtime's root stays reachable (inside the new root) while hooks that need it run;
/// detached before the process starts. Only exists when such hooks do.
const HOST_ROOT: &str = ".rbuild-hostroot";

/// A hook as the child runs it: everything prepared, pointers into owned strings.
pub(crate) struct HookPlan {
    path: CString,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    state_prefix: Vec<u8>,
    state_suffix: Vec<u8>,
    timeout_ms: c_int,
    /// Run with this (host) directory as root: the runtime's view.
    chroot: Option<CString>,
    _owned: Vec<CString>,
}

/// What [`before_pivot`] set up for [`after_mounts`].
pub(crate) struct DevicePlan {
    nodes: Vec<(usize, bool)>,
    mounts: Vec<(usize, bool)>,
    pid_slot: Option<usize>,
    keep_host_root: bool,
}

impl DevicePlan {
    /// Whether `pivot_root` must keep the old root at [`HOST_ROOT`].
    pub(crate) fn keep_host_root(&self) -> Option<CString> {
        self.keep_host_root
            .then(|| CString::new(HOST_ROOT).unwrap_or_default())
    }
}

fn in_runtime_ns(stage: HookStage) -> bool {
    matches!(
        stage,
        HookStage::Prestart | HookStage::CreateRuntime | HookStage::CreateContainer
    )
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strs(v: &[String]) -> String {
    format!(
        "[{}]",
        v.iter().map(|s| json_str(s)).collect::<Vec<_>>().join(",")
    )
}

/// The OCI state a hook reads on stdin, split around the pid the child fills in.
pub(crate) fn state_parts(id: &str, stage: HookStage, bundle: &Path) -> (String, String) {
    (
        format!(
            "{{\"ociVersion\":\"1.0.2\",\"id\":{},\"status\":\"{}\",\"pid\":",
            json_str(id),
            stage.status()
        ),
        format!(
            ",\"bundle\":{},\"annotations\":{{}}}}",
            json_str(&bundle.display().to_string())
        ),
    )
}

/// Ops before `pivot_root`: clones of the host nodes and paths, and for hooks the pid and the
/// bundle's `config.json` (whose `root.path` names the container's root through the pid).
pub(crate) fn before_pivot(
    b: &mut PlanBuilder,
    spec: &RunSpec,
    bundle: &Path,
    root_mp: &Path,
) -> Result<DevicePlan, SandboxError> {
    let d = &spec.devices;
    let mut plan = DevicePlan {
        nodes: Vec::new(),
        mounts: Vec::new(),
        pid_slot: None,
        keep_host_root: false,
    };
    for n in &d.nodes {
        components("device path", &n.path)?;
        let meta = std::fs::metadata(&n.host_path).map_err(|e| {
            SandboxError::io(
                format!("device {}: host node {}", n.path, n.host_path.display()),
                e,
            )
        })?;
        let slot = b.slot();
        b.push(
            Op::CloneTree {
                source: cpath("device host path", &n.host_path)?,
                recursive: false,
                readonly: n.readonly,
                slot,
            },
            format!("bind host device {}", n.host_path.display()),
            None,
        );
        plan.nodes.push((slot, !meta.is_dir()));
    }
    for m in &d.mounts {
        components("device mount target", &m.container_path)?;
        let recursive = match m.kind.as_str() {
            "bind" | "" => m.recursive,
            "rbind" => true,
            other => {
                return Err(SandboxError::InvalidSpec(format!(
                    "device mount {} has type {other:?}; only bind mounts are supported",
                    m.container_path
                )))
            }
        };
        let meta = std::fs::metadata(&m.host_path).map_err(|e| {
            SandboxError::io(
                format!(
                    "device mount {}: host path {}",
                    m.container_path,
                    m.host_path.display()
                ),
                e,
            )
        })?;
        let mut attrs = 0;
        for (on, a) in [
            (m.readonly, crate::child::MOUNT_ATTR_RDONLY),
            (m.nosuid, crate::child::MOUNT_ATTR_NOSUID),
            (m.nodev, crate::child::MOUNT_ATTR_NODEV),
            (m.noexec, crate::child::MOUNT_ATTR_NOEXEC),
        ] {
            if on {
                attrs |= a;
            }
        }
        let slot = b.slot();
        b.push(
            Op::CloneTreeAttrs {
                source: cpath("device mount source", &m.host_path)?,
                recursive: recursive && meta.is_dir(),
                attrs,
                slot,
            },
            format!("bind {} for a device", m.host_path.display()),
            None,
        );
        plan.mounts.push((slot, !meta.is_dir()));
    }
    if d.hooks
        .iter()
        .any(|h| h.stage != HookStage::Poststart && h.stage != HookStage::Poststop)
    {
        let slot = b.slot();
        b.push(
            Op::HostPid { slot },
            "read the step's pid (/proc/self)".into(),
            None,
        );
        plan.pid_slot = Some(slot);
    }
    if d.hooks.iter().any(|h| in_runtime_ns(h.stage)) {
        plan.keep_host_root = true;
        let Some(slot) = plan.pid_slot else {
            return Err(SandboxError::InvalidSpec("internal: no pid slot".into()));
        };
        let config = bundle.join("config.json");
        let (prefix, suffix) = config_parts(spec, bundle);
        b.push(
            Op::WriteWithPid {
                path: cpath("bundle config", &config)?,
                prefix: prefix.into_bytes(),
                suffix: suffix.into_bytes(),
                slot,
            },
            format!("write {}", config.display()),
            None,
        );
        let stub = format!("/{HOST_ROOT}");
        b.stub_layer.push((stub.clone(), false));
        b.push(
            Op::EnsureDir {
                path: cpath("host root stub", &root_mp.join(HOST_ROOT))?,
                stub: true,
            },
            format!("create mount point directory {stub}"),
            Some(stub),
        );
    }
    Ok(plan)
}

/// The bundle's `config.json` around the pid: enough of an OCI config for hooks that look up
/// the container's root, process and environment (as `nvidia-ctk hook` does).
fn config_parts(spec: &RunSpec, _bundle: &Path) -> (String, String) {
    (
        "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"/proc/".to_string(),
        format!(
            "/root\"}},\"process\":{{\"args\":{},\"env\":{},\"cwd\":{},\"user\":{{\"uid\":{},\"gid\":{}}}}},\"hostname\":{}}}",
            json_strs(&spec.args),
            json_strs(&spec.env),
            json_str(&spec.cwd),
            spec.uid,
            spec.gid,
            json_str(&spec.hostname),
        ),
    )
}

fn hook_plan(
    h: &DeviceHook,
    id: &str,
    bundle: &Path,
    chroot: Option<CString>,
) -> Result<HookPlan, SandboxError> {
    let path = cpath("hook path", &h.path)?;
    let args: Vec<String> = if h.args.is_empty() {
        vec![h.path.display().to_string()]
    } else {
        h.args.clone()
    };
    let mut owned = Vec::new();
    for a in args.iter() {
        owned.push(cstr("hook argument", a.as_str())?);
    }
    let nargs = owned.len();
    for e in &h.env {
        owned.push(cstr("hook environment", e.as_str())?);
    }
    let mut argv: Vec<*const c_char> = owned[..nargs].iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const c_char> = owned[nargs..].iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let (prefix, suffix) = state_parts(id, h.stage, bundle);
    Ok(HookPlan {
        path,
        argv,
        envp,
        state_prefix: prefix.into_bytes(),
        state_suffix: suffix.into_bytes(),
        timeout_ms: h
            .timeout
            .map_or(-1, |t| t.as_millis().min(c_int::MAX as u128) as c_int),
        chroot,
        _owned: owned,
    })
}

/// Ops after every other mount: attach the nodes and mounts, run the hooks that run in the
/// child, detach the runtime's root.
pub(crate) fn after_mounts(
    b: &mut PlanBuilder,
    spec: &RunSpec,
    plan: &DevicePlan,
    id: &str,
    bundle: &Path,
) -> Result<(), SandboxError> {
    let d = &spec.devices;
    for (n, (slot, is_file)) in d.nodes.iter().zip(&plan.nodes) {
        let comps = components("device path", &n.path)?;
        // Under /dev the node lands in the run's tmpfs: no stub in the rootfs.
        let stub = !matches!(comps.first(), Some(c) if c == "dev");
        let target = b.ensure(&comps, *is_file, stub)?;
        b.attach(*slot, &target, &format!("device {}", n.host_path.display()))?;
    }
    for (m, (slot, is_file)) in d.mounts.iter().zip(&plan.mounts) {
        let comps = components("device mount target", &m.container_path)?;
        let stub = !matches!(comps.first(), Some(c) if c == "dev");
        let target = b.ensure(&comps, *is_file, stub)?;
        b.attach(
            *slot,
            &target,
            &format!("device mount {}", m.host_path.display()),
        )?;
    }
    let Some(pid_slot) = plan.pid_slot else {
        return Ok(());
    };
    let host_root = format!("/{HOST_ROOT}");
    let mut order: Vec<&DeviceHook> = d.hooks.iter().collect();
    // Stable: hooks of one stage keep the spec's order.
    order.sort_by_key(|h| h.stage);
    for h in order.iter().filter(|h| in_runtime_ns(h.stage)) {
        let hp = hook_plan(h, id, bundle, Some(cstr("host root", host_root.as_str())?))?;
        b.push(
            Op::Hook {
                plan: Box::new(hp),
                pid_slot,
            },
            format!("run {} hook {}", h.stage.name(), h.path.display()),
            None,
        );
    }
    if plan.keep_host_root {
        b.push(
            Op::Detach {
                path: cstr("host root", host_root.as_str())?,
            },
            format!("detach the runtime's root from {host_root}"),
            None,
        );
    }
    for h in order
        .iter()
        .filter(|h| h.stage == HookStage::StartContainer)
    {
        let hp = hook_plan(h, id, bundle, None)?;
        b.push(
            Op::Hook {
                plan: Box::new(hp),
                pid_slot,
            },
            format!("run {} hook {}", h.stage.name(), h.path.display()),
            None,
        );
    }
    Ok(())
}

/// Runs the caller-side hooks of `stage` (poststart, poststop) for the step whose init is
/// `pid`; failures are returned as warnings, as the OCI spec makes them.
pub(crate) fn run_caller_hooks(
    spec: &RunSpec,
    stage: HookStage,
    id: &str,
    bundle: &Path,
    pid: libc::pid_t,
) -> Vec<String> {
    use std::io::Write;
    let mut warnings = Vec::new();
    for h in spec.devices.hooks.iter().filter(|h| h.stage == stage) {
        let (prefix, suffix) = state_parts(id, stage, bundle);
        let state = format!("{prefix}{pid}{suffix}");
        let mut cmd = std::process::Command::new(&h.path);
        if let Some((first, rest)) = h.args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(first).args(rest);
        }
        cmd.env_clear()
            .envs(h.env.iter().filter_map(|e| e.split_once('=')))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let what = format!("{} hook {}", stage.name(), h.path.display());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                warnings.push(format!("{what}: {e}"));
                continue;
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(state.as_bytes());
        }
        let start = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if h.timeout.is_some_and(|t| start.elapsed() >= t) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        match status {
            Some(s) if s.success() => {}
            Some(s) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                warnings.push(format!("{what} failed ({s}): {}", err.trim()));
            }
            None => warnings.push(format!("{what} timed out")),
        }
    }
    warnings
}

// ---------------------------------------------------------------------------------------------
// Child side: async-signal-safe, see child.rs
// ---------------------------------------------------------------------------------------------

const OPEN_TREE_CLONE: c_uint = 1;
const AT_RECURSIVE: c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_errno(v: c_int) {
    // SAFETY: writing this thread's errno.
    unsafe { *libc::__errno_location() = v };
}

/// Error value for a hook that exited with `status` (a wait status): negative, so the parent
/// tells it from an errno.
pub(crate) fn hook_status_value(status: c_int) -> c_int {
    -1 - (status & 0xffff)
}

/// Detached clone of `source` with mount attributes `attrs` (`MOUNT_ATTR_*`).
///
/// # Safety
/// Child-only: raw syscalls on prepared data.
pub(crate) unsafe fn clone_with_attrs(
    source: &std::ffi::CStr,
    recursive: bool,
    attrs: u64,
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
    if attrs != 0 {
        let attr = MountAttr {
            attr_set: attrs,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as c_uint | if recursive { AT_RECURSIVE } else { 0 }) as c_long,
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

/// This process's pid as the runtime (the caller's procfs) sees it; before `pivot_root`.
///
/// # Safety
/// Child-only.
pub(crate) unsafe fn host_pid() -> Result<c_int, ()> {
    let mut buf = [0u8; 24];
    let n = libc::readlink(c"/proc/self".as_ptr(), buf.as_mut_ptr().cast(), buf.len());
    if n <= 0 {
        return Err(());
    }
    let mut pid: c_int = 0;
    for &c in buf.iter().take(n as usize) {
        if !c.is_ascii_digit() {
            set_errno(libc::EINVAL);
            return Err(());
        }
        pid = pid.saturating_mul(10).saturating_add(c_int::from(c - b'0'));
    }
    Ok(pid)
}

fn digits(v: c_int, buf: &mut [u8; 12]) -> &[u8] {
    let mut v = v.max(0) as u32;
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(b) = buf.get_mut(i) {
            *b = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    buf.get(i..).unwrap_or_default()
}

unsafe fn write_all(fd: c_int, mut data: &[u8]) -> Result<(), ()> {
    while !data.is_empty() {
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        if n < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            return Err(());
        }
        data = data.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

/// Writes `prefix pid suffix` to the new file `path`.
///
/// # Safety
/// Child-only.
pub(crate) unsafe fn write_with_pid(
    path: &std::ffi::CStr,
    prefix: &[u8],
    suffix: &[u8],
    pid: c_int,
) -> Result<(), ()> {
    let fd = libc::open(
        path.as_ptr(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        0o644 as c_uint,
    );
    if fd < 0 {
        return Err(());
    }
    let mut buf = [0u8; 12];
    let r = write_all(fd, prefix)
        .and_then(|()| write_all(fd, digits(pid, &mut buf)))
        .and_then(|()| write_all(fd, suffix));
    libc::close(fd);
    r
}

/// `pivot_root` into `new_root`, keeping the old root at `put_old` (relative to the new root).
///
/// # Safety
/// Child-only.
pub(crate) unsafe fn pivot_keep(
    new_root: &std::ffi::CStr,
    put_old: &std::ffi::CStr,
) -> Result<(), ()> {
    if libc::chdir(new_root.as_ptr()) < 0 {
        return Err(());
    }
    if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), put_old.as_ptr()) < 0 {
        return Err(());
    }
    if libc::chdir(c"/".as_ptr()) < 0 {
        return Err(());
    }
    Ok(())
}

/// Lazily unmounts `path`.
///
/// # Safety
/// Child-only.
pub(crate) unsafe fn detach(path: &std::ffi::CStr) -> Result<(), ()> {
    if libc::umount2(path.as_ptr(), libc::MNT_DETACH) < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// Runs one hook: state on its stdin, its output on the step's, killed after its timeout.
/// A non-zero exit fails with a negative errno (see [`hook_status_value`]).
///
/// # Safety
/// Child-only (the step's init, before it drops privileges).
pub(crate) unsafe fn run_hook(h: &HookPlan, pid: c_int) -> Result<(), ()> {
    let mut fds = [0 as c_int; 2];
    if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
        return Err(());
    }
    let [r, w] = fds;
    let child = libc::fork();
    if child < 0 {
        libc::close(r);
        libc::close(w);
        return Err(());
    }
    if child == 0 {
        if libc::dup2(r, 0) < 0 {
            libc::_exit(126);
        }
        if let Some(root) = &h.chroot {
            if libc::chdir(root.as_ptr()) < 0
                || libc::chroot(c".".as_ptr()) < 0
                || libc::chdir(c"/".as_ptr()) < 0
            {
                libc::_exit(126);
            }
        }
        libc::execve(h.path.as_ptr(), h.argv.as_ptr(), h.envp.as_ptr());
        libc::_exit(127);
    }
    libc::close(r);
    // A hook that does not read its state must not kill us with SIGPIPE.
    libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    let mut buf = [0u8; 12];
    let _ = write_all(w, &h.state_prefix)
        .and_then(|()| write_all(w, digits(pid, &mut buf)))
        .and_then(|()| write_all(w, &h.state_suffix));
    libc::close(w);
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    let mut timed_out = false;
    if h.timeout_ms >= 0 {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, child as c_long, 0 as c_long);
        if pidfd >= 0 {
            let mut p = libc::pollfd {
                fd: pidfd as c_int,
                events: libc::POLLIN,
                revents: 0,
            };
            loop {
                let n = libc::poll(&mut p, 1, h.timeout_ms);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                if n == 0 {
                    libc::kill(child, libc::SIGKILL);
                    timed_out = true;
                }
                break;
            }
            libc::close(pidfd as c_int);
        }
    }
    let mut status: c_int = 0;
    loop {
        let r = libc::waitpid(child, &mut status, 0);
        if r == child {
            break;
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            return Err(());
        }
    }
    if timed_out {
        set_errno(libc::ETIMEDOUT);
        return Err(());
    }
    if status != 0 {
        set_errno(hook_status_value(status));
        return Err(());
    }
    Ok(())
}
