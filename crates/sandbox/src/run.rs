//! The caller's side of [`crate::Sandbox::run`]: prepares the plan, forks the helper, writes
//! the id maps, pumps the step's stdio, and turns the report pipe into a result.

use crate::child::{self, ChildFds, ChildPlan, Op};
use crate::{IdMapping, MountKind, Network, RootfsSpec, RunResult, RunSpec, Sandbox};
use crate::{SandboxError, Stream};
use libc::c_int;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

mod chroot;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const DEFAULT_HOSTNAME: &str = "buildkitsandbox";
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(crate) fn cstr(what: &str, s: impl Into<Vec<u8>>) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

pub(crate) fn cpath(what: &str, p: &Path) -> Result<CString, SandboxError> {
    cstr(what, p.as_os_str().as_bytes())
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Splits an absolute in-rootfs path into its normal components, refusing `..` so that stub
/// bookkeeping (and cleanup) can never name anything outside the rootfs.
pub(crate) fn components(what: &str, p: &str) -> Result<Vec<String>, SandboxError> {
    if !p.starts_with('/') {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {p:?} must be an absolute path"
        )));
    }
    let mut out = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(SandboxError::InvalidSpec(format!(
                    "{what} {p:?} must not contain '..'"
                )))
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

/// Ops and their human descriptions, built in lockstep.
pub(crate) struct PlanBuilder {
    ops: Vec<Op>,
    descs: Vec<String>,
    /// For ops that may create a stub: the in-rootfs path.
    stub_paths: Vec<Option<String>>,
    /// Every stub mount point as (path, is_file), for the overlay stub layer.
    pub(crate) stub_layer: Vec<(String, bool)>,
    optional: Vec<bool>,
    slots: usize,
}

impl PlanBuilder {
    pub(crate) fn push(&mut self, op: Op, desc: String, stub: Option<String>) {
        self.optional.push(false);
        self.ops.push(op);
        self.descs.push(desc);
        self.stub_paths.push(stub);
    }
    /// Marks the last pushed op as optional (ENOENT tolerated).
    fn optional(&mut self) {
        if let Some(o) = self.optional.last_mut() {
            *o = true;
        }
    }
    pub(crate) fn slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }
    /// mkdir -p of `comps` (all stubs when `stub`), then the final entry as dir or file.
    pub(crate) fn ensure(
        &mut self,
        comps: &[String],
        file: bool,
        stub: bool,
    ) -> Result<String, SandboxError> {
        let mut path = String::new();
        for (i, c) in comps.iter().enumerate() {
            path.push('/');
            path.push_str(c);
            let cs = cstr("mount target", path.as_str())?;
            let last = i + 1 == comps.len();
            let stub_path = stub.then(|| path.clone());
            if stub {
                self.stub_layer.push((path.clone(), last && file));
            }
            if last && file {
                self.push(
                    Op::EnsureFile { path: cs, stub },
                    format!("create mount point file {path}"),
                    stub_path,
                );
            } else {
                self.push(
                    Op::EnsureDir { path: cs, stub },
                    format!("create mount point directory {path}"),
                    stub_path,
                );
            }
        }
        Ok(path)
    }
    pub(crate) fn attach(
        &mut self,
        slot: usize,
        target: &str,
        what: &str,
    ) -> Result<(), SandboxError> {
        self.push(
            Op::MoveSlot {
                slot,
                target: cstr("mount target", target)?,
            },
            format!("attach {what} at {target}"),
            None,
        );
        Ok(())
    }
}

/// Per-run host files (hosts, resolv.conf, hostname) and the rootfs mount point; removed on drop.
struct RunDir {
    dir: tempfile::TempDir,
}

impl RunDir {
    fn new(spec: &RunSpec, hostname: &str) -> Result<RunDir, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-sandbox-")
            .tempdir()
            .map_err(|e| SandboxError::io("create the sandbox's temporary directory", e))?;
        let p = dir.path();
        let mut hosts =
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (name, addr) in &spec.hosts {
            if name.contains(char::is_whitespace) || addr.contains(char::is_whitespace) {
                return Err(SandboxError::InvalidSpec(format!(
                    "extra host {name:?} -> {addr:?} contains whitespace"
                )));
            }
            hosts.push_str(&format!("{addr}\t{name}\n"));
        }
        let resolv = match std::fs::read("/etc/resolv.conf") {
            Ok(b) => b,
            Err(_) => b"nameserver 8.8.8.8\nnameserver 8.8.4.4\n".to_vec(),
        };
        for (name, content) in [
            ("hosts", hosts.into_bytes()),
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n").into_bytes()),
        ] {
            let path = p.join(name);
            let mut f = std::fs::File::create(&path)
                .and_then(|mut f| f.write_all(&content).map(|()| f))
                .map_err(|e| SandboxError::io(format!("write {}", path.display()), e))?;
            f.flush()
                .map_err(|e| SandboxError::io(format!("write {}", path.display()), e))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(|e| SandboxError::io(format!("chmod {}", path.display()), e))?;
        }
        let root = p.join("root");
        std::fs::create_dir(&root)
            .map_err(|e| SandboxError::io(format!("mkdir {}", root.display()), e))?;
        Ok(RunDir { dir })
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

struct Prepared {
    plan: ChildPlan,
    descs: Vec<String>,
    stub_paths: Vec<Option<String>>,
    slots: usize,
    program: String,
    // Keep the strings argv/envp point into alive.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
}

fn prepare(
    sb: &Sandbox,
    spec: &RunSpec,
    rd: &RunDir,
    hostname: &str,
) -> Result<Prepared, SandboxError> {
    let userns = !matches!(sb.mapping, IdMapping::Host);
    let Some(program) = spec.args.first().cloned() else {
        return Err(SandboxError::InvalidSpec("args is empty".into()));
    };
    let mut b = PlanBuilder {
        ops: Vec::new(),
        descs: Vec::new(),
        stub_paths: Vec::new(),
        stub_layer: Vec::new(),
        optional: Vec::new(),
        slots: 0,
    };
    let root_mp = rd.path("root");
    let stub_dir = rd.path("stubs");
    let root_mp_s = root_mp.display().to_string();

    // --- before pivot_root: everything that names host paths ---
    let root_slot = b.slot();
    match &spec.rootfs {
        RootfsSpec::Dir(dir) => {
            if !dir.is_dir() {
                return Err(SandboxError::InvalidSpec(format!(
                    "rootfs {} is not a directory",
                    dir.display()
                )));
            }
            b.push(
                Op::CloneTree {
                    source: cpath("rootfs", dir)?,
                    recursive: true,
                    readonly: false,
                    slot: root_slot,
                },
                format!("bind rootfs {}", dir.display()),
                None,
            );
        }
        RootfsSpec::Overlay {
            lowers,
            upper,
            work,
            volatile,
        } => {
            if lowers.is_empty() {
                return Err(SandboxError::InvalidSpec(
                    "overlay rootfs needs at least one lower directory".into(),
                ));
            }
            let mut lowers_c = lowers
                .iter()
                .map(|l| cpath("overlay lower", l))
                .collect::<Result<Vec<_>, _>>()?;
            // Bottom-most layer of our own holding every mount point, so missing mount points
            // exist in the merged view without ever being written to `upper`.
            lowers_c.push(cpath("stub layer", &stub_dir)?);
            b.push(
                Op::Overlay {
                    lowers: lowers_c,
                    upper: cpath("overlay upper", upper)?,
                    work: cpath("overlay work", work)?,
                    userxattr: userns || sb.nested,
                    volatile: *volatile,
                    slot: root_slot,
                },
                format!(
                    "mount overlay (lower {}, upper {}, work {}{})",
                    lowers
                        .iter()
                        .map(|l| l.display().to_string())
                        .collect::<Vec<_>>()
                        .join(":"),
                    upper.display(),
                    work.display(),
                    if userns || sb.nested {
                        ", userxattr"
                    } else {
                        ""
                    }
                ),
                None,
            );
        }
    }
    b.attach(root_slot, &root_mp_s, "rootfs")?;

    let proc_slot = b.slot();
    b.push(
        Op::NewFs {
            fstype: c"proc",
            attrs: child::MOUNT_ATTR_NOSUID | child::MOUNT_ATTR_NODEV | child::MOUNT_ATTR_NOEXEC,
            slot: proc_slot,
            fallback: None,
        },
        "mount proc for the new pid namespace".into(),
        None,
    );
    let mut dev_slots = Vec::new();
    for n in DEV_NODES {
        let host = format!("/dev/{n}");
        if Path::new(&host).exists() {
            let slot = b.slot();
            b.push(
                Op::CloneTree {
                    source: cstr("dev node", host.as_str())?,
                    recursive: false,
                    readonly: false,
                    slot,
                },
                format!("bind host {host}"),
                None,
            );
            dev_slots.push((n, slot));
        }
    }
    let sys_slot = b.slot();
    if spec.network == Network::None {
        // Our own network namespace: a fresh sysfs shows its devices (just lo), not the host's.
        b.push(
            Op::NewFs {
                fstype: c"sysfs",
                attrs: child::MOUNT_ATTR_RDONLY
                    | child::MOUNT_ATTR_NOSUID
                    | child::MOUNT_ATTR_NODEV
                    | child::MOUNT_ATTR_NOEXEC,
                slot: sys_slot,
                fallback: Some(c"/sys".into()),
            },
            "mount sysfs read-only (or bind host /sys read-only)".into(),
            None,
        );
    } else {
        b.push(
            Op::CloneTree {
                source: c"/sys".into(),
                recursive: true,
                readonly: true,
                slot: sys_slot,
            },
            "bind host /sys read-only".into(),
            None,
        );
    }
    let mut etc_slots = Vec::new();
    for name in ["hosts", "resolv.conf", "hostname"] {
        let slot = b.slot();
        let src = rd.path(name);
        b.push(
            Op::CloneTree {
                source: cpath("generated file", &src)?,
                recursive: false,
                readonly: false,
                slot,
            },
            format!("bind generated {}", src.display()),
            None,
        );
        etc_slots.push((name, slot));
    }
    let mut user_slots = Vec::new();
    for m in &spec.mounts {
        let comps = components("mount target", &m.target)?;
        if comps.is_empty() {
            return Err(SandboxError::InvalidSpec(format!(
                "mount target {:?} is the root",
                m.target
            )));
        }
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                let meta = std::fs::metadata(source).map_err(|e| {
                    SandboxError::io(format!("bind mount source {}", source.display()), e)
                })?;
                let slot = b.slot();
                b.push(
                    Op::CloneTree {
                        source: cpath("bind source", source)?,
                        recursive: meta.is_dir(),
                        readonly: *readonly,
                        slot,
                    },
                    format!(
                        "bind {}{}",
                        source.display(),
                        if *readonly { " read-only" } else { "" }
                    ),
                    None,
                );
                user_slots.push(Some((slot, !meta.is_dir())));
            }
            MountKind::Tmpfs { .. } => user_slots.push(None),
        }
    }
    let dev_plan = crate::devices::before_pivot(&mut b, spec, rd.dir.path(), &root_mp)?;
    if let Some(put_old) = dev_plan.keep_host_root() {
        b.push(
            Op::PivotKeep {
                new_root: cpath("rootfs mount point", &root_mp)?,
                put_old,
            },
            format!("pivot_root into {root_mp_s} (keeping the runtime's root for hooks)"),
            None,
        );
    } else {
        b.push(
            Op::Pivot {
                new_root: cpath("rootfs mount point", &root_mp)?,
            },
            format!("pivot_root into {root_mp_s}"),
            None,
        );
    }

    // --- after pivot_root: every path is inside the rootfs ---
    b.ensure(&["proc".into()], false, true)?;
    b.attach(proc_slot, "/proc", "proc")?;
    b.ensure(&["dev".into()], false, true)?;
    b.push(
        Op::Mount {
            source: c"tmpfs".into(),
            target: c"/dev".into(),
            fstype: c"tmpfs".into(),
            flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
            data: c"mode=755,size=65536k".into(),
        },
        "mount tmpfs on /dev".into(),
        None,
    );
    for (n, slot) in dev_slots {
        b.ensure(&["dev".into(), n.into()], true, false)?;
        b.attach(slot, &format!("/dev/{n}"), &format!("host /dev/{n}"))?;
    }
    b.ensure(&["dev".into(), "pts".into()], false, false)?;
    let single = matches!(sb.mapping, IdMapping::Single { .. });
    let pts_data = if single {
        "newinstance,ptmxmode=0666,mode=0620"
    } else {
        "newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    b.push(
        Op::Mount {
            source: c"devpts".into(),
            target: c"/dev/pts".into(),
            fstype: c"devpts".into(),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            data: cstr("devpts options", pts_data)?,
        },
        "mount devpts on /dev/pts".into(),
        None,
    );
    for (target, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ] {
        b.push(
            Op::Symlink {
                target: cstr("symlink", target)?,
                link: cstr("symlink", link)?,
            },
            format!("symlink {link} -> {target}"),
            None,
        );
    }
    b.ensure(&["dev".into(), "shm".into()], false, false)?;
    b.push(
        Op::Mount {
            source: c"shm".into(),
            target: c"/dev/shm".into(),
            fstype: c"tmpfs".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: c"mode=1777,size=65536k".into(),
        },
        "mount tmpfs on /dev/shm".into(),
        None,
    );
    b.ensure(&["sys".into()], false, true)?;
    b.attach(sys_slot, "/sys", "read-only /sys")?;
    harden_proc_and_sys(&mut b)?;
    for (name, slot) in etc_slots {
        let target = b.ensure(&["etc".into(), name.into()], true, true)?;
        b.attach(slot, &target, &format!("generated {name}"))?;
    }
    for (m, us) in spec.mounts.iter().zip(user_slots) {
        let comps = components("mount target", &m.target)?;
        match (&m.kind, us) {
            (MountKind::Bind { .. }, Some((slot, is_file))) => {
                let target = b.ensure(&comps, is_file, true)?;
                b.attach(slot, &target, "bind mount")?;
            }
            (MountKind::Tmpfs { size }, _) => {
                let target = b.ensure(&comps, false, true)?;
                let data = match size {
                    Some(s) => format!("size={s}"),
                    None => String::new(),
                };
                b.push(
                    Op::Mount {
                        source: c"tmpfs".into(),
                        target: cstr("mount target", target.as_str())?,
                        fstype: c"tmpfs".into(),
                        flags: libc::MS_NOSUID | libc::MS_NODEV,
                        data: cstr("tmpfs options", data)?,
                    },
                    format!("mount tmpfs on {target}"),
                    None,
                );
            }
            (MountKind::Bind { .. }, None) => {
                return Err(SandboxError::InvalidSpec(
                    "internal: bind slot missing".into(),
                ))
            }
        }
    }

    crate::devices::after_mounts(&mut b, spec, &dev_plan, &run_id(rd), rd.dir.path())?;

    if matches!(spec.rootfs, RootfsSpec::Overlay { .. }) {
        populate_stub_layer(&stub_dir, &b.stub_layer)?;
    }

    // --- exec details ---
    let ExecDetails {
        cwd_prefixes,
        argv_c,
        envp_c,
        argv,
        envp,
        exec_candidates,
    } = exec_details(spec, &program)?;

    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if userns {
        flags |= libc::CLONE_NEWUSER;
    }
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    let slots = b.slots;
    Ok(Prepared {
        plan: ChildPlan {
            unshare_flags: flags,
            ops: b.ops,
            hostname: cstr("hostname", hostname)?,
            loopback_up: spec.network == Network::None,
            optional: b.optional,
            drop_caps: caps_to_drop(userns),
            cwd_prefixes,
            cwd: cstr("cwd", spec.cwd.as_str())?,
            set_groups: !single,
            groups: spec.additional_gids.clone(),
            uid: spec.uid,
            gid: spec.gid,
            exec_candidates,
            argv,
            envp,
            setup_only: spec.devices.setup_only,
            controlling_tty: false,
        },
        descs: b.descs,
        stub_paths: b.stub_paths,
        slots,
        program,
        _argv: argv_c,
        _envp: envp_c,
    })
}

/// Creates the overlay stub layer in our private temp dir: directories 0755, empty files 0644.
/// Conflicts (a file target below another file) are left for the child to report.
fn populate_stub_layer(dir: &Path, stubs: &[(String, bool)]) -> Result<(), SandboxError> {
    std::fs::create_dir(dir)
        .map_err(|e| SandboxError::io(format!("mkdir {}", dir.display()), e))?;
    for (path, is_file) in stubs {
        let p = dir.join(path.trim_start_matches('/'));
        let _ = if *is_file {
            std::fs::File::create(&p).map(drop)
        } else {
            std::fs::create_dir(&p)
        };
    }
    Ok(())
}

/// Docker's default capability set for containers and build steps (moby/containerd defaults):
/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE,
/// NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: [libc::c_int; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
const CAP_MKNOD: libc::c_int = 27;

/// Every capability outside [`DEFAULT_CAPS`]. Without a user namespace MKNOD is dropped too:
/// docker relies on the device cgroup to stop a root step from opening a host disk it
/// `mknod`s, and the sandbox has no cgroup.
pub(crate) fn caps_to_drop(userns: bool) -> Vec<libc::c_int> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<libc::c_int>().ok())
        .unwrap_or(63);
    (0..=last)
        .filter(|c| !DEFAULT_CAPS.contains(c) || (*c == CAP_MKNOD && !userns))
        .collect()
}

/// Docker's masked and read-only paths: kernel interfaces a build step must not write (or
/// read, for kcore/keys...). Paths this kernel lacks are skipped.
fn harden_proc_and_sys(b: &mut PlanBuilder) -> Result<(), SandboxError> {
    const MASKED: [&str; 12] = [
        "/proc/asound",
        "/proc/acpi",
        "/proc/interrupts",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ];
    const READONLY: [&str; 5] = [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ];
    for p in READONLY {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        let slot = b.slot();
        let c = cstr("path", p)?;
        b.push(
            Op::CloneTree {
                source: c.clone(),
                recursive: true,
                readonly: true,
                slot,
            },
            format!("clone {p} read-only"),
            None,
        );
        b.optional();
        b.attach(slot, p, &format!("read-only {p}"))?;
        b.optional();
    }
    for p in MASKED {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let c = cstr("path", p)?;
        if meta.is_dir() {
            b.push(
                Op::Mount {
                    source: c"tmpfs".into(),
                    target: c,
                    fstype: c"tmpfs".into(),
                    flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    data: c"size=0".into(),
                },
                format!("mask {p} with an empty read-only tmpfs"),
                None,
            );
            b.optional();
        } else {
            let slot = b.slot();
            b.push(
                Op::CloneTree {
                    source: c"/dev/null".into(),
                    recursive: false,
                    readonly: true,
                    slot,
                },
                "clone /dev/null".into(),
                None,
            );
            b.attach(slot, p, &format!("mask {p} with /dev/null"))?;
            b.optional();
        }
    }
    Ok(())
}

/// A close-on-exec pipe (read end, write end).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: fds is a valid 2-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(SandboxError::io("pipe2", last_err()));
    }
    // SAFETY: pipe2 returned two fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_err();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn read_full(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or_default();
        let n = read_some(fd, rest)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Waits for our child `pid`, retrying on EINTR; `None` if it cannot be waited for.
pub(crate) fn wait_pid(pid: libc::pid_t) -> Option<c_int> {
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Some(status);
        }
        if r < 0 && last_err().kind() != std::io::ErrorKind::Interrupted {
            return None;
        }
    }
}

fn kill(pid: libc::pid_t) {
    if pid > 0 {
        // SAFETY: sending a signal has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

fn write_id_maps(sb: &Sandbox, pid: libc::pid_t) -> Result<(), SandboxError> {
    let write = |which: &'static str, file: &str, data: &str| -> Result<(), SandboxError> {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, data).map_err(|e| SandboxError::IdMap {
            which,
            detail: format!("write {data:?} to {path}: {e}"),
        })
    };
    match &sb.mapping {
        IdMapping::Host => Ok(()),
        IdMapping::Identity => {
            write("uid", "uid_map", "0 0 4294967295\n")?;
            write("gid", "gid_map", "0 0 4294967295\n")
        }
        IdMapping::Single { uid, gid } => {
            write("gid", "setgroups", "deny")?;
            write("uid", "uid_map", &format!("0 {uid} 1\n"))?;
            write("gid", "gid_map", &format!("0 {gid} 1\n"))
        }
        IdMapping::Ranges {
            uid,
            gid,
            uid_ranges,
            gid_ranges,
            newuidmap,
            newgidmap,
        } => {
            run_map_tool("uid", newuidmap, pid, *uid, uid_ranges)?;
            run_map_tool("gid", newgidmap, pid, *gid, gid_ranges)
        }
    }
}

pub(crate) fn run_map_tool(
    which: &'static str,
    tool: &Path,
    pid: libc::pid_t,
    own: u32,
    ranges: &[crate::IdRange],
) -> Result<(), SandboxError> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut next: u64 = 1;
    for r in ranges {
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += u64::from(r.count);
    }
    let out = std::process::Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| SandboxError::IdMap {
            which,
            detail: format!("run {}: {e}", tool.display()),
        })?;
    if !out.status.success() {
        return Err(SandboxError::IdMap {
            which,
            detail: format!(
                "{} {} exited with {}: {}",
                tool.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Names a fixed set-up step with the values it used, for [`SandboxError::Setup`].
fn step_desc(code: u32, spec: &RunSpec, hostname: &str) -> String {
    match code {
        child::STEP_UNSHARE => "unshare namespaces".into(),
        child::STEP_SYNC => "synchronise with the caller".into(),
        child::STEP_FORK => "fork the step's init".into(),
        child::STEP_PRIVATE => "make the mount namespace private".into(),
        child::STEP_HOSTNAME => format!("sethostname({hostname})"),
        child::STEP_LOOPBACK => "bring up loopback (SIOCSIFFLAGS lo)".into(),
        child::STEP_CWD_MKDIR => format!("create working directory {}", spec.cwd),
        child::STEP_CTTY => "make the terminal the controlling terminal (TIOCSCTTY)".into(),
        child::STEP_SETGROUPS => format!("setgroups({:?})", spec.additional_gids),
        child::STEP_SETGID => format!("setgid({}) (is gid {} mapped?)", spec.gid, spec.gid),
        child::STEP_SETUID => format!("setuid({}) (is uid {} mapped?)", spec.uid, spec.uid),
        child::STEP_CHDIR => format!("chdir({})", spec.cwd),
        child::STEP_FDS => "mark descriptors close-on-exec".into(),
        child::STEP_SETSID => "setsid".into(),
        child::STEP_CAPS => "drop capabilities to docker's default set".into(),
        other => format!("set-up step {other}"),
    }
}

/// Removes the stubs the child created that are still empty, deepest first; see [`visit_stubs`]
/// for how the paths are resolved.
fn remove_stubs(root: &Path, stubs: &[String]) {
    visit_stubs(root, stubs.iter().rev(), |dir, name, st| {
        let fmt = st.st_mode & libc::S_IFMT;
        let flag = if fmt == libc::S_IFDIR {
            libc::AT_REMOVEDIR
        } else if fmt == libc::S_IFREG && st.st_size == 0 {
            0
        } else {
            return;
        };
        // SAFETY: valid fd and C string; failure (e.g. ENOTEMPTY) just keeps the entry.
        unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flag) };
    });
}

/// Calls `f` with the parent directory, name and `lstat` of each of `stubs` that exists under
/// `root`. Every parent is opened with `openat2(RESOLVE_IN_ROOT)`, so symlinks in the layer (which
/// the step controls) resolve inside it, as the child saw them, and can never reach a host path;
/// the final component is never followed.
pub(super) fn visit_stubs<'a>(
    root: &Path,
    stubs: impl Iterator<Item = &'a String>,
    mut f: impl FnMut(std::os::fd::BorrowedFd<'_>, &std::ffi::CStr, &libc::stat),
) {
    use std::os::fd::AsFd;
    let Ok(root_c) = CString::new(root.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: valid C string; the fd is owned below.
    let rfd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if rfd < 0 {
        return;
    }
    // SAFETY: fresh descriptor.
    let rfd = unsafe { OwnedFd::from_raw_fd(rfd) };
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    for stub in stubs {
        let rel = stub.trim_start_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or((".", rel));
        let (Ok(parent_c), Ok(name_c)) = (CString::new(parent), CString::new(name)) else {
            continue;
        };
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: valid pointers and size for openat2.
        let pfd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                rfd.as_raw_fd(),
                parent_c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if pfd < 0 {
            continue;
        }
        // SAFETY: fresh descriptor.
        let pfd = unsafe { OwnedFd::from_raw_fd(pfd as c_int) };
        // SAFETY: zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd, C string and out-pointer.
        if unsafe {
            libc::fstatat(
                pfd.as_raw_fd(),
                name_c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } < 0
        {
            continue;
        }
        f(pfd.as_fd(), &name_c, &st);
    }
}

pub(crate) fn run(
    sb: &Sandbox,
    spec: &RunSpec,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunResult, SandboxError> {
    run_io(sb, spec, Io::Captured(output))
}

/// Where the step's stdio goes: captured through pipes (RUN steps) or the caller's own
/// descriptors passed straight through (containers, see [`crate::Sandbox::run_attached`]).
pub(crate) enum Io<'a> {
    Captured(&'a mut dyn FnMut(Stream, &[u8])),
    Attached {
        io: &'a crate::ContainerIo,
        on_start: &'a mut dyn FnMut(libc::pid_t),
    },
}

/// What the init process needs to `chdir` and `execve` the step, as C strings prepared before
/// `fork` (the pointer arrays point into `argv_c`/`envp_c`, which must outlive the child).
pub(crate) struct ExecDetails {
    pub(crate) cwd_prefixes: Vec<CString>,
    pub(crate) argv_c: Vec<CString>,
    pub(crate) envp_c: Vec<CString>,
    pub(crate) argv: Vec<*const libc::c_char>,
    pub(crate) envp: Vec<*const libc::c_char>,
    /// `program` itself when it has a `/`, else each `PATH` entry joined with it.
    pub(crate) exec_candidates: Vec<CString>,
}

pub(crate) fn exec_details(spec: &RunSpec, program: &str) -> Result<ExecDetails, SandboxError> {
    let cwd_comps = components("cwd", &spec.cwd)?;
    let mut cwd_prefixes = Vec::new();
    let mut acc = String::new();
    for c in &cwd_comps {
        acc.push('/');
        acc.push_str(c);
        cwd_prefixes.push(cstr("cwd", acc.as_str())?);
    }
    let p = program_details(&spec.args, &spec.env, program)?;
    Ok(ExecDetails {
        cwd_prefixes,
        argv_c: p.argv_c,
        envp_c: p.envp_c,
        argv: p.argv,
        envp: p.envp,
        exec_candidates: p.exec_candidates,
    })
}

/// What `execve` needs for `program`, also for `exec` into a running container.
pub(crate) struct Program {
    pub(crate) argv_c: Vec<CString>,
    pub(crate) envp_c: Vec<CString>,
    pub(crate) argv: Vec<*const libc::c_char>,
    pub(crate) envp: Vec<*const libc::c_char>,
    /// `program` itself when it has a `/`, else each `PATH` entry of `env` joined with it (an
    /// empty entry is the working directory, as execvp has it).
    pub(crate) exec_candidates: Vec<CString>,
}

pub(crate) fn program_details(
    args: &[String],
    env: &[String],
    program: &str,
) -> Result<Program, SandboxError> {
    let argv_c = args
        .iter()
        .map(|a| cstr("argument", a.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp_c = env
        .iter()
        .map(|e| cstr("environment entry", e.as_str()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = envp_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let exec_candidates = if program.contains('/') {
        vec![cstr("argv[0]", program)?]
    } else if program.is_empty() {
        return Err(SandboxError::InvalidSpec("argv[0] is empty".into()));
    } else {
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|d| {
                let d = if d.is_empty() { "." } else { d };
                cstr(
                    "PATH entry",
                    format!("{}/{}", d.trim_end_matches('/'), program),
                )
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    Ok(Program {
        argv_c,
        envp_c,
        argv,
        envp,
        exec_candidates,
    })
}

pub(crate) fn run_io(sb: &Sandbox, spec: &RunSpec, io: Io<'_>) -> Result<RunResult, SandboxError> {
    let hostname = if spec.hostname.is_empty() {
        DEFAULT_HOSTNAME
    } else {
        spec.hostname.as_str()
    };
    if hostname.len() > 64 || hostname.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(SandboxError::InvalidSpec(format!(
            "hostname {hostname:?} is not a valid host name"
        )));
    }
    let mut warnings = sb.warnings.clone();
    warnings.extend(sb.isolation_warning_once());
    if matches!(sb.mapping, IdMapping::Single { .. }) && !spec.additional_gids.is_empty() {
        warnings.push(format!(
            "supplementary groups {:?} ignored: setgroups is denied with a single-id map",
            spec.additional_gids
        ));
    }
    let rd = RunDir::new(spec, hostname)?;
    let mut prep = match &sb.chroot {
        Some(mode) => chroot::prepare(mode, spec, &rd, hostname)?,
        None => prepare(sb, spec, &rd, hostname)?,
    };
    if let Io::Attached { io, .. } = &io {
        prep.plan.controlling_tty = io.tty;
    }
    let mut slots: Vec<c_int> = vec![-1; prep.slots];

    let (stdin_r, stdin_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (up_r, up_w) = pipe()?; // helper -> caller
    let (down_r, down_w) = pipe()?; // caller -> helper
    let (rep_r, rep_w) = pipe()?;
    let (stdin, stdout, stderr) = match &io {
        Io::Captured(_) => (stdin_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()),
        Io::Attached { io, .. } => (io.stdin, io.stdout, io.stderr),
    };
    let fds = ChildFds {
        stdin,
        stdout,
        stderr,
        sync_read: down_r.as_raw_fd(),
        sync_write: up_w.as_raw_fd(),
        report: rep_w.as_raw_fd(),
    };

    // SAFETY: the child branch only runs async-signal-safe code on pre-built data and never
    // returns (helper_main ends in _exit or exec).
    let helper = unsafe { libc::fork() };
    if helper < 0 {
        return Err(SandboxError::io("fork the sandbox helper", last_err()));
    }
    if helper == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe { child::helper_main(&prep.plan, &fds, &mut slots) }
    }
    drop((stdin_r, out_w, err_w, up_w, down_r, rep_w));

    let mut guard = HelperGuard {
        helper,
        init: 0,
        reaped: None,
    };
    let mut byte = [0u8; 1];
    let unshared = read_full(up_r.as_raw_fd(), &mut byte)
        .map_err(|e| SandboxError::io("read from the sandbox helper", e))?
        == 1;
    let mut map_error = None;
    let mut down = std::fs::File::from(down_w);
    if unshared {
        match write_id_maps(sb, helper) {
            Ok(()) => {
                // A failed write means the helper died; its report says why.
                let _ = down.write_all(b"g");
            }
            Err(e) => map_error = Some(e),
        }
    }
    drop(down);
    if let Some(e) = map_error {
        guard.kill_all();
        return Err(e);
    }
    let mut pidb = [0u8; 4];
    if read_full(up_r.as_raw_fd(), &mut pidb).unwrap_or(0) == 4 {
        guard.init = libc::pid_t::from_ne_bytes(pidb);
    }
    drop(up_r);
    warnings.extend(crate::devices::run_caller_hooks(
        spec,
        crate::HookStage::Poststart,
        &run_id(&rd),
        rd.dir.path(),
        guard.init,
    ));

    let outcome = match io {
        Io::Captured(output) => pump(spec, &mut guard, stdin_w, out_r, err_r, output)?,
        Io::Attached { on_start, .. } => {
            drop((stdin_w, out_r, err_r));
            if guard.init > 0 {
                on_start(guard.init);
            }
            Outcome::Finished
        }
    };
    let status = guard.reap();
    warnings.extend(crate::devices::run_caller_hooks(
        spec,
        crate::HookStage::Poststop,
        &run_id(&rd),
        rd.dir.path(),
        guard.init,
    ));

    let mut rec_bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = read_some(rep_r.as_raw_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        rec_bytes.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let mut step_status = None;
    let mut error = None;
    let mut stubs = Vec::new();
    let mut kernel_log = String::new();
    let mut rest: &[u8] = &rec_bytes;
    while rest.len() >= 12 {
        let (rec, tail) = rest.split_at(12);
        rest = tail;
        let word = |i: usize| -> [u8; 4] {
            let mut w = [0u8; 4];
            if let Some(s) = rec.get(i * 4..i * 4 + 4) {
                w.copy_from_slice(s);
            }
            w
        };
        let kind = u32::from_ne_bytes(word(0));
        let code = u32::from_ne_bytes(word(1));
        let value = i32::from_ne_bytes(word(2));
        if kind == child::KIND_MESSAGE {
            let n = (code as usize).min(rest.len());
            let (text, tail) = rest.split_at(n);
            rest = tail;
            kernel_log.push_str(String::from_utf8_lossy(text).trim());
            continue;
        }
        match kind {
            child::KIND_STATUS => step_status = Some(value),
            child::KIND_STUB => {
                let idx = code.wrapping_sub(child::OP_BASE) as usize;
                if let Some(Some(p)) = prep.stub_paths.get(idx) {
                    stubs.push(p.clone());
                }
            }
            child::KIND_ERROR if error.is_none() => {
                let source = if value < 0 {
                    // A hook's own failure (see devices::hook_status_value).
                    let ws = -1 - value;
                    std::io::Error::other(if libc::WIFSIGNALED(ws) {
                        format!("killed by signal {}", libc::WTERMSIG(ws))
                    } else {
                        format!("exited with status {}", libc::WEXITSTATUS(ws))
                    })
                } else {
                    std::io::Error::from_raw_os_error(value)
                };
                error = Some(if code == child::STEP_EXEC {
                    SandboxError::Exec {
                        program: prep.program.clone(),
                        source,
                    }
                } else if code >= child::OP_BASE {
                    let idx = (code - child::OP_BASE) as usize;
                    let mut step = prep
                        .descs
                        .get(idx)
                        .cloned()
                        .unwrap_or_else(|| format!("operation {idx}"));
                    if !kernel_log.is_empty() {
                        step.push_str(&format!(" (kernel: {})", kernel_log.replace('\n', "; ")));
                    } else if step.starts_with("mount overlay") && value == libc::EINVAL {
                        step.push_str(" (overlayfs explains EINVAL in the kernel log: dmesg)");
                    }
                    SandboxError::Setup { step, source }
                } else {
                    SandboxError::Setup {
                        step: step_desc(code, spec, hostname),
                        source,
                    }
                });
            }
            _ => {}
        }
    }
    let writable = match &spec.rootfs {
        RootfsSpec::Dir(d) => d.as_path(),
        RootfsSpec::Overlay { upper, .. } => upper.as_path(),
    };
    if sb.chroot.is_some() {
        chroot::remove_files(writable, &stubs);
    }
    remove_stubs(writable, &stubs);
    drop(rd);

    match outcome {
        Outcome::TimedOut(d) => return Err(SandboxError::TimedOut(d)),
        Outcome::Cancelled => return Err(SandboxError::Cancelled),
        Outcome::Finished => {}
    }
    if let Some(e) = error {
        return Err(e);
    }
    let Some(ws) = step_status else {
        return Err(SandboxError::HelperDied(status.unwrap_or(-1)));
    };
    let (code, signal) = if libc::WIFEXITED(ws) {
        (Some(libc::WEXITSTATUS(ws)), None)
    } else if libc::WIFSIGNALED(ws) {
        (None, Some(libc::WTERMSIG(ws)))
    } else {
        return Err(SandboxError::HelperDied(ws));
    };
    Ok(RunResult {
        code,
        signal,
        warnings,
        mount_stubs: stubs,
    })
}

/// Kills and reaps the helper if `run` leaves early, so no step outlives an error or panic.
struct HelperGuard {
    helper: libc::pid_t,
    init: libc::pid_t,
    reaped: Option<Option<c_int>>,
}

impl HelperGuard {
    /// Kills the step's init when known: the kernel then kills its whole pid namespace, and
    /// the helper reaps init only once all of it is gone, so reaping the helper afterwards
    /// proves nothing of the step is left. Before init exists, kills the helper instead.
    fn kill_all(&mut self) {
        if self.reaped.is_none() {
            if self.init > 0 {
                kill(self.init);
            } else {
                kill(self.helper);
            }
        }
    }
    fn reap(&mut self) -> Option<c_int> {
        if let Some(s) = self.reaped {
            return s;
        }
        let s = wait_pid(self.helper);
        self.reaped = Some(s);
        s
    }
}

impl Drop for HelperGuard {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            self.kill_all();
            self.reap();
        }
    }
}

enum Outcome {
    Finished,
    TimedOut(std::time::Duration),
    Cancelled,
}

fn pump(
    spec: &RunSpec,
    guard: &mut HelperGuard,
    stdin_w: OwnedFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let start = Instant::now();
    let input: &[u8] = spec.stdin.as_deref().unwrap_or_default();
    let mut written = 0usize;
    let mut stdin_w = if input.is_empty() {
        drop(stdin_w); // EOF right away
        None
    } else {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(stdin_w.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(stdin_w.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Some(stdin_w)
    };
    let sigpipe = SigpipeBlock::new();
    let mut outs: [Option<(OwnedFd, Stream)>; 2] =
        [Some((out_r, Stream::Stdout)), Some((err_r, Stream::Stderr))];
    let mut buf = vec![0u8; 65536];
    let mut outcome = Outcome::Finished;
    let mut killed = false;
    while outs.iter().any(Option::is_some) {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for (fd, _) in outs.iter().flatten() {
            pfds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(w) = &stdin_w {
            pfds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
        }
        let mut wait_ms: c_int = -1;
        if !killed {
            if let Some(t) = spec.timeout {
                let left = t.saturating_sub(start.elapsed());
                if left.is_zero() {
                    guard.kill_all();
                    killed = true;
                    outcome = Outcome::TimedOut(t);
                    continue;
                }
                wait_ms = left.as_millis().min(c_int::MAX as u128) as c_int + 1;
            }
            if let Some(c) = &spec.cancel {
                if c.load(Ordering::SeqCst) {
                    guard.kill_all();
                    killed = true;
                    outcome = Outcome::Cancelled;
                    continue;
                }
                // The flag has no descriptor to poll; re-check it at least every 50ms.
                wait_ms = if wait_ms < 0 { 50 } else { wait_ms.min(50) };
            }
        }
        // SAFETY: pfds is a valid array of pollfd.
        let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait_ms) };
        if r < 0 {
            let e = last_err();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SandboxError::io("poll the step's output", e));
        }
        for p in &pfds {
            if p.revents == 0 {
                continue;
            }
            if let Some(w) = &stdin_w {
                if p.fd == w.as_raw_fd() {
                    let rest = input.get(written..).unwrap_or_default();
                    // SAFETY: rest is a valid buffer; the fd is non-blocking.
                    let n = unsafe { libc::write(p.fd, rest.as_ptr().cast(), rest.len()) };
                    let err = (n < 0).then(last_err);
                    if n > 0 {
                        written += n as usize;
                    }
                    if let Some(e) = &err {
                        if e.raw_os_error() == Some(libc::EPIPE) {
                            sigpipe.consume();
                        }
                    }
                    let fatal = err.is_some_and(|e| {
                        e.kind() != std::io::ErrorKind::WouldBlock
                            && e.kind() != std::io::ErrorKind::Interrupted
                    });
                    if fatal || written >= input.len() {
                        stdin_w = None; // close: the step sees EOF
                    }
                    continue;
                }
            }
            for slot in outs.iter_mut() {
                let Some((fd, stream)) = slot else { continue };
                if fd.as_raw_fd() != p.fd {
                    continue;
                }
                let n = read_some(p.fd, &mut buf).unwrap_or(0);
                if n == 0 {
                    *slot = None;
                } else {
                    output(*stream, buf.get(..n).unwrap_or_default());
                }
            }
        }
    }
    Ok(outcome)
}

/// Blocks SIGPIPE in the calling thread while stdin is written, so a step that exits without
/// reading its stdin cannot kill an embedding program that did not ignore SIGPIPE. A write to
/// a pipe raises SIGPIPE on the writing thread only, so this never touches other threads.
struct SigpipeBlock {
    old: libc::sigset_t,
}

impl SigpipeBlock {
    fn new() -> SigpipeBlock {
        // SAFETY: sigset manipulation on local values; pthread_sigmask affects this thread.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            SigpipeBlock { old }
        }
    }

    /// Discards the SIGPIPE our failed write just made pending on this thread.
    fn consume(&self) {
        // SAFETY: as above; a zero timeout never blocks.
        unsafe {
            if libc::sigismember(&self.old, libc::SIGPIPE) == 1 {
                return; // it was blocked before us: not ours to discard
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGPIPE);
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
        }
    }
}

impl Drop for SigpipeBlock {
    fn drop(&mut self) {
        // SAFETY: restores this thread's previous mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// The run's id in OCI hook state: its private directory's name, unique while it runs.
fn run_id(rd: &RunDir) -> String {
    rd.dir
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rbuild-sandbox".into())
}
