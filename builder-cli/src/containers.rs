//! The container verbs (`run`, `ps`, `start`, `stop`, `kill`, `rm`, `logs`, `exec`, `commit`):
//! docker's flags parsed here, the work done by `rbuild_container`. Exit codes follow docker:
//! the command's own, 125 when rbuild itself fails (`run`), 126/127 when the command cannot be
//! invoked or is not found, 1 for the management verbs' errors.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args};
use rbuild_container::{
    tty, CommitOptions, ContainerError, Containers, CreateOptions, ExecOptions, Record, StartIo,
    Status,
};

use crate::render::{Renderer, Style};

/// `rbuild run [OPTIONS] IMAGE [COMMAND [ARG...]]`.
#[derive(Args, Debug)]
// `-h` is docker's --hostname here, so help is only `--help`.
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run container in background and print container ID
    #[arg(short, long)]
    detach: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Bind mount a volume (HOST:CONTAINER[:ro])
    #[arg(short, long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|tmpfs,...)
    #[arg(long = "mount")]
    mount: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Set environment variables
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network mode: host (default) or none
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Size of /dev/shm (e.g. 64m)
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    ulimit: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    init: bool,
    /// GPU devices to add to the container ('all' to pass all GPUs)
    #[arg(long)]
    gpus: Option<String>,
    /// Add a device to the container (CDI name vendor/class=name, or /dev path)
    #[arg(long)]
    device: Vec<String>,
    /// Read CDI specs from this directory instead of /etc/cdi and /var/run/cdi (repeatable)
    #[arg(long = "cdi-spec-dir", value_name = "DIR")]
    cdi_spec_dir: Vec<PathBuf>,
    /// The image to run
    image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `rbuild ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

/// `rbuild start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR
    #[arg(short, long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    interactive: bool,
    /// Containers to start
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rbuild stop`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait for stop before killing it
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    /// Containers to stop
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rbuild kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers to kill
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rbuild rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    force: bool,
    /// Containers to remove
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rbuild logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// The container
    container: String,
}

/// `rbuild exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Detached mode: run command in the background
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    user: Option<String>,
    /// The container
    container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `rbuild commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    message: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    author: Option<String>,
    /// Pause container during commit
    #[arg(short, long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true,
          default_missing_value = "true")]
    pause: bool,
    /// The container
    container: String,
    /// Name of the new image
    reference: Option<String>,
}

fn err(e: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(code)
}

fn open(
    root: &Option<PathBuf>,
    insecure: &[String],
) -> Result<(rbuild_engine::Builder, Containers), String> {
    let builder = crate::registry::builder_with(root, insecure).map_err(|e| e.to_string())?;
    let cs = Containers::open(builder.images()).map_err(|e| e.to_string())?;
    Ok((builder, cs))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Copies stdio through a pseudo-terminal while the monitor (or exec) `pid` lives, with the
/// caller's terminal in raw mode; signals the caller gets are passed on with `forward`.
fn attach_pty(master: &OwnedFd, stdin: bool, pid: i32, forward: &dyn Fn(i32)) {
    let stdin_h = std::io::stdin();
    let raw = tty::RawMode::enter(stdin_h.as_fd());
    let watch = tty::pidfd(pid);
    while let Ok(tty::Detached::Signal(s)) = tty::attach(master, stdin, watch.as_ref()) {
        forward(s);
    }
    drop(raw);
}

/// `rbuild run`.
pub fn run(root: &Option<PathBuf>, insecure: &[String], a: RunArgs) -> ExitCode {
    match run_inner(root, insecure, a) {
        Ok(code) => code,
        Err(e) => err(e, 125),
    }
}

fn run_inner(root: &Option<PathBuf>, insecure: &[String], a: RunArgs) -> Result<ExitCode, String> {
    if a.detach && a.rm && a.tty && a.interactive {
        // Allowed by docker; nothing special here.
    }
    let shm_size = match &a.shm_size {
        Some(s) => Some(
            rbuild_container::parse_size(s).ok_or_else(|| format!("invalid --shm-size {s:?}"))?,
        ),
        None => None,
    };
    let (builder, cs) = open(root, insecure)?;
    let images = builder.images();
    let image = match images.resolve(&a.image) {
        Ok(i) => i,
        Err(rbuild_engine::image::ImageError::NotFound(_)) => {
            eprintln!("Unable to find image '{}' locally", a.image);
            let renderer = Renderer::new(Style::Plain);
            let img = rbuild_engine::pull::pull_base(
                images,
                builder.registry_options(),
                &a.image,
                &rbuild_engine::host_platform(),
                &renderer,
            )
            .map_err(|e| e.to_string())?;
            renderer.finish();
            img
        }
        Err(e) => return Err(e.to_string()),
    };
    let opts = CreateOptions {
        name: a.name.clone(),
        cmd: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: a.tty,
        stdin_open: a.interactive,
        auto_remove: a.rm,
        volumes: a.volume.clone(),
        mounts: a.mount.clone(),
        network: a.network.clone(),
        hostname: a.hostname.clone(),
        add_hosts: a.add_host.clone(),
        shm_size,
        ulimits: a.ulimit.clone(),
        devices: a.device.clone(),
        gpus: a.gpus.clone(),
        cdi_spec_dirs: a.cdi_spec_dir.clone(),
        init: a.init,
    };
    let rec = cs
        .create(&image, &a.image, &opts)
        .map_err(|e| e.to_string())?;
    if a.detach {
        let mut child = cs
            .start(&rec, StartIo::Detached)
            .map_err(|e| e.to_string())?;
        cs.wait_started(&rec, &mut child)
            .map_err(|e| e.to_string())?;
        println!("{}", rec.id);
        return Ok(ExitCode::SUCCESS);
    }
    Ok(exit(foreground(&cs, &rec, a.interactive)?))
}

/// Runs a created (or stopped) container attached to the caller; its exit code.
fn foreground(cs: &Containers, rec: &Record, stdin: bool) -> Result<i32, String> {
    if rec.process.tty {
        let size = tty::window_size(std::io::stdin().as_fd())
            .or_else(|| tty::window_size(std::io::stdout().as_fd()));
        let pty = tty::open_pty(size).map_err(|e| format!("open a pseudo-terminal: {e}"))?;
        let mut child = cs
            .start(rec, StartIo::Pty(pty.slave))
            .map_err(|e| e.to_string())?;
        let forward = |sig: i32| {
            if let Ok(r) = cs.reload(rec) {
                let _ = cs.kill(&r, sig);
            }
        };
        attach_pty(&pty.master, stdin, child.id() as i32, &forward);
        return cs.wait_monitor(rec, &mut child).map_err(|e| e.to_string());
    }
    let mut child = cs
        .start(rec, StartIo::Inherit { stdin })
        .map_err(|e| e.to_string())?;
    cs.wait_monitor(rec, &mut child).map_err(|e| e.to_string())
}

/// go-units' HumanDuration, as docker's `ps` shows ages.
fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    if secs < 1 {
        "Less than a second".into()
    } else if secs == 1 {
        "1 second".into()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Docker's STATUS column.
pub fn status_text(r: &Record, now: i64) -> String {
    match Containers::status(r) {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            human_duration(now - r.state.started_at.unwrap_or(now))
        ),
        Status::Exited => {
            let at = r
                .state
                .finished_at
                .or(r.state.started_at)
                .unwrap_or(r.created);
            format!(
                "Exited ({}) {} ago",
                Containers::exit_code(r),
                human_duration(now - at)
            )
        }
    }
}

/// `rbuild ps`.
pub fn ps(root: &Option<PathBuf>, a: PsArgs) -> ExitCode {
    let (_b, cs) = match open(root, &[]) {
        Ok(x) => x,
        Err(e) => return err(e, 1),
    };
    let list = match cs.list() {
        Ok(l) => l,
        Err(e) => return err(e, 1),
    };
    let now = now();
    let shown: Vec<&Record> = list
        .iter()
        .filter(|r| a.all || Containers::status(r) == Status::Running)
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in shown {
            let _ = writeln!(out, "{}", if a.no_trunc { &r.id } else { r.short_id() });
        }
        return ExitCode::SUCCESS;
    }
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "PORTS".into(),
        "NAMES".into(),
    ]];
    for r in shown {
        let mut cmd = r.process.args.join(" ");
        if !a.no_trunc && cmd.chars().count() > 20 {
            cmd = cmd.chars().take(19).collect::<String>() + "…";
        }
        rows.push([
            if a.no_trunc {
                r.id.clone()
            } else {
                r.short_id().to_string()
            },
            r.image.clone(),
            format!("\"{cmd}\""),
            format!("{} ago", human_duration(now - r.created)),
            status_text(r, now),
            String::new(),
            r.name.clone(),
        ]);
    }
    // Docker's tabwriter: each column as wide as its widest cell, three spaces apart.
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths.iter()).enumerate() {
            if i == 6 {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(w - c.chars().count() + 3));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    ExitCode::SUCCESS
}

/// Applies `f` to each named container, printing the name as docker does; 1 if any failed.
fn each(
    root: &Option<PathBuf>,
    names: &[String],
    f: &dyn Fn(&Containers, &Record) -> Result<(), ContainerError>,
) -> ExitCode {
    let (_b, cs) = match open(root, &[]) {
        Ok(x) => x,
        Err(e) => return err(e, 1),
    };
    let mut failed = false;
    for n in names {
        match cs.get(n).and_then(|r| f(&cs, &r)) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `rbuild start`.
pub fn start(root: &Option<PathBuf>, a: StartArgs) -> ExitCode {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return err("you cannot start and attach multiple containers at once", 1);
        }
        let (_b, cs) = match open(root, &[]) {
            Ok(x) => x,
            Err(e) => return err(e, 1),
        };
        let rec = match cs.get(&a.containers[0]) {
            Ok(r) => r,
            Err(e) => return err(e, 1),
        };
        return match foreground(&cs, &rec, a.interactive) {
            Ok(code) => exit(code),
            Err(e) => err(e, 1),
        };
    }
    each(root, &a.containers, &|cs, r| {
        if Containers::status(r) == Status::Running {
            return Ok(());
        }
        let mut child = cs.start(r, StartIo::Detached)?;
        cs.wait_started(r, &mut child).map(drop)
    })
}

/// `rbuild stop`.
pub fn stop(root: &Option<PathBuf>, a: StopArgs) -> ExitCode {
    let t = Duration::from_secs(a.time);
    each(root, &a.containers, &|cs, r| cs.stop(r, t))
}

/// `rbuild kill`.
pub fn kill(root: &Option<PathBuf>, a: KillArgs) -> ExitCode {
    let sig = match rbuild_container::parse_signal(&a.signal) {
        Ok(s) => s,
        Err(e) => return err(e, 1),
    };
    each(root, &a.containers, &|cs, r| cs.kill(r, sig))
}

/// `rbuild rm`.
pub fn rm(root: &Option<PathBuf>, a: RmArgs) -> ExitCode {
    let force = a.force;
    each(root, &a.containers, &|cs, r| cs.remove(r, force))
}

/// `rbuild logs`.
pub fn logs(root: &Option<PathBuf>, a: LogsArgs) -> ExitCode {
    let (_b, cs) = match open(root, &[]) {
        Ok(x) => x,
        Err(e) => return err(e, 1),
    };
    let rec = match cs.get(&a.container) {
        Ok(r) => r,
        Err(e) => return err(e, 1),
    };
    let path = cs.log_path(&rec);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return err(format!("{}: {e}", path.display()), 1),
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 65536];
    loop {
        let mut got = 0;
        if let Some(f) = f.as_mut() {
            loop {
                match std::io::Read::read(f, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        got += n;
                        if out.write_all(buf.get(..n).unwrap_or_default()).is_err() {
                            return ExitCode::SUCCESS;
                        }
                    }
                }
            }
        }
        let _ = out.flush();
        if !a.follow {
            return ExitCode::SUCCESS;
        }
        if got == 0 {
            let running = cs
                .reload(&rec)
                .map(|r| Containers::status(&r) == Status::Running)
                .unwrap_or(false);
            if !running {
                // Whatever the last write before the exit left.
                if let Some(f) = f.as_mut() {
                    let _ = std::io::copy(f, &mut out);
                }
                return ExitCode::SUCCESS;
            }
            if f.is_none() {
                f = std::fs::File::open(&path).ok();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn dup(fd: std::os::fd::BorrowedFd<'_>) -> Result<OwnedFd, String> {
    fd.try_clone_to_owned()
        .map_err(|e| format!("duplicate stdio: {e}"))
}

/// `rbuild exec`.
pub fn exec(root: &Option<PathBuf>, a: ExecArgs) -> ExitCode {
    match exec_inner(root, a) {
        Ok(code) => exit(code),
        Err((msg, code)) => err(msg, code),
    }
}

fn exec_inner(root: &Option<PathBuf>, a: ExecArgs) -> Result<i32, (String, u8)> {
    let (_b, cs) = open(root, &[]).map_err(|e| (e, 1))?;
    let rec = cs.get(&a.container).map_err(|e| (e.to_string(), 1))?;
    let null = || {
        std::fs::File::open("/dev/null")
            .map(OwnedFd::from)
            .map_err(|e| (format!("open /dev/null: {e}"), 1u8))
    };
    let mut pty = None;
    let (stdin, stdout, stderr) = if a.tty && !a.detach {
        let size = tty::window_size(std::io::stdin().as_fd())
            .or_else(|| tty::window_size(std::io::stdout().as_fd()));
        // On the container's own devpts, so `tty` inside it names its terminal; a host one
        // if that cannot be opened.
        let ptmx = PathBuf::from(format!("/proc/{}/root/dev/ptmx", rec.state.pid));
        let p = tty::open_pty_in(&ptmx, size)
            .or_else(|_| tty::open_pty(size))
            .map_err(|e| (format!("open a pseudo-terminal: {e}"), 1))?;
        let fds = (
            p.slave.try_clone().map_err(|e| (e.to_string(), 1))?,
            p.slave.try_clone().map_err(|e| (e.to_string(), 1))?,
            p.slave.try_clone().map_err(|e| (e.to_string(), 1))?,
        );
        pty = Some(p);
        fds
    } else if a.detach {
        (null()?, null()?, null()?)
    } else {
        let stdin = if a.interactive {
            dup(std::io::stdin().as_fd()).map_err(|e| (e, 1))?
        } else {
            null()?
        };
        (
            stdin,
            dup(std::io::stdout().as_fd()).map_err(|e| (e, 1))?,
            dup(std::io::stderr().as_fd()).map_err(|e| (e, 1))?,
        )
    };
    let opts = ExecOptions {
        args: a.command.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: pty.is_some(),
        stdin,
        stdout,
        stderr,
    };
    let proc = cs.exec(&rec, &opts).map_err(|e| {
        let code = match &e {
            ContainerError::NotRunning(_) => 1,
            _ => 126,
        };
        (e.to_string(), code)
    })?;
    drop(opts);
    if a.detach {
        // The process lives on; its joiner is reaped by init once we exit.
        std::mem::forget(proc);
        return Ok(0);
    }
    if let Some(p) = pty {
        drop(p.slave);
        let pid = proc.pid();
        let forward = |sig: i32| {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        };
        attach_pty(&p.master, a.interactive, pid, &forward);
    }
    match proc.wait() {
        Ok((Some(c), _)) => Ok(c),
        Ok((None, Some(s))) => Ok(128 + s),
        Ok(_) => Ok(125),
        Err(rbuild_engine::sandbox::SandboxError::Exec { program, source }) => {
            let not_found = matches!(
                source.raw_os_error(),
                Some(libc::ENOENT) | Some(libc::ENOTDIR)
            );
            let code = if not_found { 127 } else { 126 };
            Err((
                format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: \
                     exec: {program:?}: {}",
                    if not_found {
                        "executable file not found in $PATH".to_string()
                    } else {
                        source.to_string()
                    }
                ),
                code,
            ))
        }
        Err(e) => Err((e.to_string(), 126)),
    }
}

/// `rbuild commit`.
pub fn commit(root: &Option<PathBuf>, a: CommitArgs) -> ExitCode {
    let (_b, cs) = match open(root, &[]) {
        Ok(x) => x,
        Err(e) => return err(e, 1),
    };
    let rec = match cs.get(&a.container) {
        Ok(r) => r,
        Err(e) => return err(e, 1),
    };
    let opts = CommitOptions {
        reference: a.reference.clone(),
        message: a.message.clone(),
        author: a.author.clone(),
        pause: a.pause,
    };
    let changes = a.change.clone();
    let edit = move |c: &mut rbuild_engine::image::config::ImageConfig| -> Result<(), String> {
        for ch in &changes {
            rbuild_engine::apply_change(c, ch)?;
        }
        Ok(())
    };
    match cs.commit(&rec, &opts, &edit) {
        Ok(img) => {
            println!("{}", img.id);
            ExitCode::SUCCESS
        }
        Err(e) => err(e, 1),
    }
}

/// The error `rmi` gives for an image a container uses, as docker's.
pub fn rmi_conflict(images: &rbuild_engine::image::Images, name: &str) -> Option<String> {
    let img = images.resolve(name).ok()?;
    let cs = Containers::open(images).ok()?;
    let user = cs
        .list()
        .ok()?
        .into_iter()
        .find(|r| r.image_id == img.id.to_string())?;
    Some(format!(
        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} \
         is using its referenced image {}",
        user.short_id(),
        img.id.short()
    ))
}
