//! `exec` into a running container: a new process that joins the namespaces and the root of a
//! process started by [`crate::Sandbox::run_attached`].
//!
//! ```text
//! caller                         -- fork() --> joiner
//!   opens /proc/PID/ns/* and /proc/PID/root     | setns(user, when it differs), ipc, uts, net,
//!   (host paths, before any setns)              |   pid, mnt; fchdir(root); chroot(".")
//!   waitpid(joiner); reads the report pipe      | fork() --> process (in the container's pid ns)
//!                                               |   setsid; TIOCSCTTY (-t); caps; ids; chdir;
//!                                               |   execve(command)
//!                                               | waitpid(process); reports its wait status
//! ```
//!
//! The same fork-safety rule as `child.rs` holds: between `fork` and `execve` only raw syscalls
//! on data prepared before the fork. The user namespace is joined first (rootless: the caller
//! must *not* be in a sibling namespace of its own, it must be the namespace's owner), and
//! `setns(CLONE_NEWPID)` only applies to children, hence the second fork.

use crate::child::{self, FD_REPORT};
use crate::SandboxError;
use libc::{c_int, c_uint};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

/// What to run inside the container and how; the caller resolves the user to ids.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// argv; `argv[0]` without a `/` is searched in the `PATH` of `env`.
    pub args: Vec<String>,
    /// The environment, exactly.
    pub env: Vec<String>,
    /// Absolute working directory (must exist).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// stdin of the process (borrowed).
    pub stdin: RawFd,
    /// stdout of the process (borrowed).
    pub stdout: RawFd,
    /// stderr of the process (borrowed).
    pub stderr: RawFd,
    /// `stdin` is a pseudo-terminal slave to make the controlling terminal.
    pub tty: bool,
}

/// A started exec; [`ExecProcess::wait`] returns its exit status.
#[derive(Debug)]
pub struct ExecProcess {
    joiner: libc::pid_t,
    report: OwnedFd,
    program: String,
    waited: bool,
}

const STEP_SETNS: u32 = 1;
const STEP_ROOT: u32 = 2;
const STEP_FORK: u32 = 3;
const STEP_SETSID: u32 = 4;
const STEP_CTTY: u32 = 5;
const STEP_CAPS: u32 = 6;
const STEP_IDS: u32 = 7;
const STEP_CHDIR: u32 = 8;
const STEP_EXEC: u32 = 9;
const STEP_FDS: u32 = 10;

struct Plan {
    ns: Vec<(c_int, c_int)>,
    root: c_int,
    caps: Vec<c_int>,
    groups: Vec<libc::gid_t>,
    set_groups: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    cwd: CString,
    tty: bool,
    /// argv, envp and the paths to try; owns the strings the pointers point into.
    program: crate::run::Program,
}

fn cstr(what: &str, s: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::InvalidSpec(format!("{what} contains a NUL byte")))
}

fn open_fd(path: &str) -> Result<OwnedFd, SandboxError> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| SandboxError::io(format!("open {path}"), e))
}

/// Starts `spec.args` inside the namespaces and root of the running process `pid` (the
/// container's PID 1 as seen from the caller), with docker's default capabilities.
pub fn exec_in(pid: i32, spec: &ExecSpec) -> Result<ExecProcess, SandboxError> {
    let Some(program) = spec.args.first().cloned() else {
        return Err(SandboxError::InvalidSpec("exec needs a command".into()));
    };
    let ino = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let target_user = format!("/proc/{pid}/ns/user");
    let join_user = match (ino("/proc/self/ns/user"), ino(&target_user)) {
        (Ok(a), Ok(b)) => a != b,
        (_, Err(e)) => return Err(SandboxError::io(format!("stat {target_user}"), e)),
        (Err(e), _) => return Err(SandboxError::io("stat /proc/self/ns/user", e)),
    };
    let mut owned = Vec::new();
    let mut ns = Vec::new();
    let mut kinds = vec![
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("mnt", libc::CLONE_NEWNS),
    ];
    if join_user {
        kinds.insert(0, ("user", libc::CLONE_NEWUSER));
    }
    for (name, flag) in kinds {
        let path = format!("/proc/{pid}/ns/{name}");
        // Joining a namespace we already are in is refused for some kinds: skip those.
        if name != "user" && ino(&format!("/proc/self/ns/{name}")).ok() == ino(&path).ok() {
            continue;
        }
        let fd = open_fd(&path)?;
        ns.push((fd.as_raw_fd(), flag));
        owned.push(fd);
    }
    let root = open_fd(&format!("/proc/{pid}/root"))?;
    let userns = join_user || crate::userns::in_user_namespace();
    let plan = Plan {
        ns,
        root: root.as_raw_fd(),
        caps: crate::run::caps_to_drop(userns),
        groups: spec.additional_gids.clone(),
        set_groups: true,
        uid: spec.uid,
        gid: spec.gid,
        cwd: cstr("working directory", &spec.cwd)?,
        tty: spec.tty,
        program: crate::run::program_details(&spec.args, &spec.env, &program)?,
    };
    let (rep_r, rep_w) = crate::run::pipe()?;
    let fds = [spec.stdin, spec.stdout, spec.stderr, rep_w.as_raw_fd()];
    // SAFETY: the child only runs async-signal-safe code on `plan` and never returns.
    let joiner = unsafe { libc::fork() };
    if joiner < 0 {
        return Err(SandboxError::io(
            "fork the exec process",
            std::io::Error::last_os_error(),
        ));
    }
    if joiner == 0 {
        // SAFETY: freshly forked child.
        unsafe { joiner_main(&plan, &fds) }
    }
    drop(rep_w);
    drop(owned);
    drop(root);
    Ok(ExecProcess {
        joiner,
        report: rep_r,
        program,
        waited: false,
    })
}

impl ExecProcess {
    /// Waits for the process; `Ok((code, signal))` when it ran (exactly one is set), `Err` when
    /// it could not be started (the error says which step failed, or [`SandboxError::Exec`]).
    pub fn wait(mut self) -> Result<(Option<i32>, Option<i32>), SandboxError> {
        let status = crate::run::wait_pid(self.joiner);
        self.waited = true;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: valid buffer.
            let n =
                unsafe { libc::read(self.report.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            bytes.extend_from_slice(buf.get(..n as usize).unwrap_or_default());
        }
        let mut ws = None;
        for rec in bytes.chunks_exact(12) {
            let word = |i: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(rec.get(i * 4..i * 4 + 4).unwrap_or(&[0; 4]));
                w
            };
            let kind = u32::from_ne_bytes(word(0));
            let code = u32::from_ne_bytes(word(1));
            let value = i32::from_ne_bytes(word(2));
            if kind == child::KIND_STATUS {
                ws = Some(value);
                continue;
            }
            let source = std::io::Error::from_raw_os_error(value);
            if code == STEP_EXEC {
                return Err(SandboxError::Exec {
                    program: self.program.clone(),
                    source,
                });
            }
            let step = match code {
                STEP_SETNS => "join the container's namespaces (setns)",
                STEP_ROOT => "enter the container's root",
                STEP_FORK => "fork into the container's pid namespace",
                STEP_SETSID => "setsid",
                STEP_CTTY => "make the terminal the controlling terminal (TIOCSCTTY)",
                STEP_CAPS => "drop capabilities",
                STEP_IDS => "set the user and groups",
                STEP_CHDIR => "change to the working directory",
                STEP_FDS => "arrange file descriptors",
                _ => "exec set-up",
            };
            return Err(SandboxError::Setup {
                step: step.into(),
                source,
            });
        }
        let Some(ws) = ws else {
            return Err(SandboxError::HelperDied(status.unwrap_or(-1)));
        };
        if libc::WIFEXITED(ws) {
            Ok((Some(libc::WEXITSTATUS(ws)), None))
        } else if libc::WIFSIGNALED(ws) {
            Ok((None, Some(libc::WTERMSIG(ws))))
        } else {
            Err(SandboxError::HelperDied(ws))
        }
    }

    /// The pid of the joining process (the exec'd process is its only child).
    pub fn pid(&self) -> i32 {
        self.joiner
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if !self.waited {
            crate::run::wait_pid(self.joiner);
        }
    }
}

unsafe fn fail(code: u32) -> ! {
    child::report(child::KIND_ERROR, code, child::errno());
    libc::_exit(127)
}

/// Joins the namespaces, then forks the process that execs. Never returns.
unsafe fn joiner_main(plan: &Plan, fds: &[c_int; 4]) -> ! {
    child::reset_signals();
    // stdio to 0..=2, the report pipe to FD_REPORT (5).
    if child::move_fds(fds, &[0, 1, 2, FD_REPORT]).is_err() {
        libc::_exit(126);
    }
    libc::fcntl(FD_REPORT, libc::F_SETFD, libc::FD_CLOEXEC);
    for &(fd, flag) in &plan.ns {
        if libc::setns(fd, flag) < 0 {
            fail(STEP_SETNS);
        }
    }
    if libc::fchdir(plan.root) < 0 || libc::chroot(c".".as_ptr()) < 0 {
        fail(STEP_ROOT);
    }
    if libc::chdir(c"/".as_ptr()) < 0 {
        fail(STEP_ROOT);
    }
    let pid = libc::fork();
    if pid < 0 {
        fail(STEP_FORK);
    }
    if pid == 0 {
        process_main(plan);
    }
    // Signals for the exec (e.g. the CLI's kill on Ctrl-C) go to its process.
    for fd in 0..=2 {
        libc::close(fd);
    }
    let mut status: c_int = 0;
    loop {
        let r = libc::waitpid(pid, &mut status, 0);
        if r == pid {
            break;
        }
        if r < 0 && child::errno() != libc::EINTR {
            libc::_exit(125);
        }
    }
    child::report(child::KIND_STATUS, 0, status);
    libc::_exit(0)
}

unsafe fn process_main(plan: &Plan) -> ! {
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::setsid() < 0 {
        fail(STEP_SETSID);
    }
    if plan.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
        fail(STEP_CTTY);
    }
    if child::drop_capabilities(&plan.caps).is_err() {
        fail(STEP_CAPS);
    }
    if plan.set_groups
        && libc::setgroups(plan.groups.len(), plan.groups.as_ptr()) < 0
        && child::errno() != libc::EPERM
    {
        fail(STEP_IDS);
    }
    if libc::setresgid(plan.gid, plan.gid, plan.gid) < 0
        || libc::setresuid(plan.uid, plan.uid, plan.uid) < 0
    {
        fail(STEP_IDS);
    }
    if libc::chdir(plan.cwd.as_ptr()) < 0 {
        fail(STEP_CHDIR);
    }
    libc::umask(0o022);
    libc::prctl(
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0,
        0,
        0,
    );
    if libc::syscall(libc::SYS_close_range, 3 as c_uint, c_uint::MAX, 4 as c_uint) < 0
        && child::errno() != libc::ENOSYS
    {
        fail(STEP_FDS);
    }
    let last = child::exec_first(
        &plan.program.exec_candidates,
        &plan.program.argv,
        &plan.program.envp,
    );
    child::report(child::KIND_ERROR, STEP_EXEC, last);
    libc::_exit(127)
}
