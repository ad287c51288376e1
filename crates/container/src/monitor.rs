//! The per-container monitor (see the crate docs): a re-execution of the current program that
//! owns the container's PID 1 for its whole life and records what happens to it.

use std::os::fd::{AsRawFd, OwnedFd};

use std::os::unix::process::CommandExt;
use std::path::Path;

use rbuild_sandbox::{ContainerIo, MountKind, MountSpec, Network, RootfsSpec, RunSpec};

use crate::record::{self, Mount, Record, Status};
use crate::{ContainerError, StartIo, EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND, EXIT_RBUILD_ERROR};

/// The environment variable that turns the program into a monitor: the container's directory.
const ENV: &str = "RBUILD_CONTAINER_MONITOR";

/// Spawns the monitor of the container in `dir` with `io` as the container's stdio.
pub(crate) fn spawn(
    dir: &Path,
    rec: &Record,
    io: StartIo,
    log: &Path,
) -> Result<std::process::Child, ContainerError> {
    let exe = std::env::current_exe()
        .map_err(|e| ContainerError::io("find the current program", "/proc/self/exe", e))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg0(format!("rbuild-monitor {}", rec.short_id()))
        .env(ENV, dir);
    let null = || std::process::Stdio::null();
    match io {
        StartIo::Detached => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map_err(|e| ContainerError::io("open", log, e))?;
            let f2 = f
                .try_clone()
                .map_err(|e| ContainerError::io("open", log, e))?;
            cmd.stdin(null()).stdout(f).stderr(f2);
        }
        StartIo::Inherit { stdin } => {
            if !stdin {
                cmd.stdin(null());
            }
        }
        StartIo::Pty(slave) => {
            let a: OwnedFd = slave
                .try_clone()
                .map_err(|e| ContainerError::io("duplicate", "the terminal", e))?;
            let b: OwnedFd = slave
                .try_clone()
                .map_err(|e| ContainerError::io("duplicate", "the terminal", e))?;
            cmd.stdin(std::process::Stdio::from(slave))
                .stdout(std::process::Stdio::from(a))
                .stderr(std::process::Stdio::from(b));
        }
    }
    // SAFETY: setsid is async-signal-safe; the monitor must outlive the caller's session (its
    // terminal's hangup, the caller's process group being killed).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| ContainerError::io("start the container monitor", exe, e))
}

/// Call first thing in `main`: when this process was started as a container's monitor, runs
/// the container to its end and returns the exit code `main` must exit with; otherwise `None`
/// and nothing happened.
pub fn monitor_main_if_requested() -> Option<i32> {
    let dir = std::env::var_os(ENV)?;
    std::env::remove_var(ENV);
    let dir = std::path::PathBuf::from(dir);
    Some(match run(&dir) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("rbuild: {msg}");
            code
        }
    })
}

fn sandbox_error_code(e: &rbuild_sandbox::SandboxError) -> i32 {
    match e {
        rbuild_sandbox::SandboxError::Exec { source, .. } => match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
            _ => EXIT_CANNOT_INVOKE,
        },
        _ => EXIT_RBUILD_ERROR,
    }
}

fn run(dir: &Path) -> Result<i32, (i32, String)> {
    let fail = |e: ContainerError| (EXIT_RBUILD_ERROR, e.to_string());
    let mut rec = record::read(dir).map_err(fail)?;
    let me = std::process::id() as i32;
    let me_start = record::process_start(me).unwrap_or(0);
    let result = run_container(dir, &mut rec, me, me_start);
    let (code, error) = match result {
        Ok(code) => (code, None),
        Err(e) => {
            let code = match &e {
                ContainerError::Sandbox(s) => sandbox_error_code(s),
                _ => EXIT_RBUILD_ERROR,
            };
            let msg = match &e {
                ContainerError::Sandbox(rbuild_sandbox::SandboxError::Exec { program, source }) => {
                    format!(
                        "failed to create task for container: exec: {program:?}: {}",
                        if code == EXIT_NOT_FOUND {
                            "executable file not found in $PATH".to_string()
                        } else {
                            source.to_string()
                        }
                    )
                }
                e => e.to_string(),
            };
            (code, Some(msg))
        }
    };
    // Reread: nothing else writes while we run, but keep whatever is there.
    let mut fin = record::read(dir).unwrap_or(rec);
    fin.state.status = Status::Exited;
    fin.state.exit_code = Some(code);
    fin.state.error = error.clone();
    fin.state.finished_at = Some(record::now());
    fin.state.monitor_pid = me;
    fin.state.monitor_start = me_start;
    if fin.host.auto_remove {
        if let Some(parent) = dir.parent() {
            if let Ok(store) = rbuild_store::Store::open(parent.parent().unwrap_or(parent)) {
                let _ = crate::remove_files(parent, &store, &fin);
            }
        }
    } else if let Err(e) = record::write(dir, &fin) {
        eprintln!("rbuild: {e}");
    }
    match error {
        Some(msg) => Err((code, msg)),
        None => Ok(code),
    }
}

fn run_container(
    dir: &Path,
    rec: &mut Record,
    me: i32,
    me_start: u64,
) -> Result<i32, ContainerError> {
    let upper = dir.join("upper");
    let work = dir.join("work");
    // A restart mounts the same upper directory: overlay wants an empty work directory.
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir(&work).map_err(|e| ContainerError::io("create", &work, e))?;
    let (uid, gid, groups, home) =
        crate::spec::resolve_user(&upper, &rec.lowers, &rec.process.user)?;
    let mut env = rec.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    let mut mounts = Vec::new();
    for m in &rec.host.mounts {
        mounts.push(match m {
            Mount::Bind {
                source,
                target,
                readonly,
            } => MountSpec {
                target: target.clone(),
                kind: MountKind::Bind {
                    source: source.clone(),
                    readonly: *readonly,
                },
            },
            Mount::Tmpfs { target, size } => MountSpec {
                target: target.clone(),
                kind: MountKind::Tmpfs { size: *size },
            },
        });
    }
    if let Some(size) = rec.host.shm_size {
        mounts.push(MountSpec {
            target: "/dev/shm".into(),
            kind: MountKind::Tmpfs { size: Some(size) },
        });
    }
    for &(res, soft, hard) in &rec.host.ulimits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit for our own process; the container inherits it.
        if unsafe { libc::setrlimit(res as _, &lim) } < 0 {
            return Err(ContainerError::io(
                format!("set ulimit {res}"),
                "setrlimit",
                std::io::Error::last_os_error(),
            ));
        }
    }
    let devices =
        crate::spec::resolve_devices(&rec.host.gpus, &rec.host.devices, &rec.host.cdi_spec_dirs)?;
    let mut spec = RunSpec {
        rootfs: RootfsSpec::Overlay {
            lowers: rec.lowers.clone(),
            upper,
            work,
            volatile: false,
        },
        args: rec.process.args.clone(),
        env,
        cwd: rec.process.cwd.clone(),
        uid,
        gid,
        additional_gids: groups,
        hostname: rec.host.hostname.clone(),
        network: if rec.host.network == "none" {
            Network::None
        } else {
            Network::Host
        },
        mounts,
        hosts: rec.host.extra_hosts.clone(),
        ..RunSpec::default()
    };
    rbuild_cdi::apply(&devices, &mut spec);
    let sandbox = rbuild_sandbox::Sandbox::new(rbuild_sandbox::SandboxOptions::default())?;
    // `-t` without a terminal to attach (`run -dit`, `start` of a -t container): the monitor
    // holds a pseudo-terminal of its own and copies what the container writes to it into the
    // log, keeping the master open so an interactive shell waits for input as under docker.
    let stdin_is_tty = rustix::termios::isatty(std::io::stdin());
    let own_pty = if rec.process.tty && !stdin_is_tty {
        let ws = rustix::termios::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = crate::tty::open_pty(Some(ws))
            .map_err(|e| ContainerError::io("open a pseudo-terminal for", dir, e))?;
        let reader = pty
            .master
            .try_clone()
            .map_err(|e| ContainerError::io("duplicate the terminal of", dir, e))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut out = std::io::stdout();
            loop {
                match rustix::io::read(&reader, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        use std::io::Write;
                        if out.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                            break;
                        }
                        let _ = out.flush();
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
            }
        });
        Some(pty)
    } else {
        None
    };
    let io = match &own_pty {
        Some(p) => ContainerIo {
            stdin: p.slave.as_raw_fd(),
            stdout: p.slave.as_raw_fd(),
            stderr: p.slave.as_raw_fd(),
            tty: true,
        },
        None => ContainerIo {
            stdin: std::io::stdin().as_raw_fd(),
            stdout: std::io::stdout().as_raw_fd(),
            stderr: std::io::stderr().as_raw_fd(),
            tty: rec.process.tty,
        },
    };
    let mut write_err = None;
    let mut on_start = |pid: i32| {
        rec.state.status = Status::Running;
        rec.state.pid = pid;
        rec.state.pid_start = record::process_start(pid).unwrap_or(0);
        rec.state.monitor_pid = me;
        rec.state.monitor_start = me_start;
        rec.state.exit_code = None;
        rec.state.error = None;
        rec.state.started_at = Some(record::now());
        if let Err(e) = record::write(dir, rec) {
            write_err = Some(e);
        }
    };
    let res = sandbox.run_attached(&spec, &io, &mut on_start);
    drop(own_pty);
    let res = res?;
    if let Some(e) = write_err {
        eprintln!("rbuild: {e}");
    }
    Ok(match (res.code, res.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => EXIT_RBUILD_ERROR,
    })
}
