//! Containers without a daemon: `run`, `exec`, `ps`, `start`, `stop`, `kill`, `rm`, `logs` and
//! `commit` over the same sandbox ([`rbuild_sandbox`]) and snapshotter ([`rbuild_snapshot`]) that
//! run a build's RUN steps, rootless as the build is.
//!
//! Use it from a command line (rbuild's) or any program that already has an image in a
//! [`rbuild_image::Images`] store and wants to run it the way `docker run` would.
//!
//! # Design: one monitor process per container (why)
//!
//! There is no daemon to own a detached container's PID 1, collect its exit status and write its
//! log, and the CLI that started it must be free to exit. So each start spawns a **monitor**, a
//! re-execution of the current program in its own session (like podman's conmon): it runs the
//! container with [`rbuild_sandbox::Sandbox::run_attached`], records the PID 1's pid when it
//! exists and its exit status when it ends, and with `--rm` removes the container. Its stdio is
//! the container's: the caller's terminal or pipes (`run` in the foreground), the slave side of a
//! pseudo-terminal (`-t`), or `/dev/null` plus the log file (`-d`). A re-exec (not a fork) because
//! the caller may be multi-threaded and the monitor runs ordinary Rust code for the container's
//! whole life; the program calls [`monitor_main_if_requested`] first thing in `main` for that.
//!
//! ```text
//! rbuild run -d ...   -- spawn(setsid) -->  monitor  -- Sandbox::run_attached -->  PID 1
//!   writes the record (created)              writes pid + start time (running)
//!   polls the record until running           waits; writes exit code (exited); --rm removes
//! rbuild stop/kill    -- signal --> PID 1    rbuild exec  -- setns(/proc/PID/ns/*) --> process
//! ```
//!
//! **Liveness** is never taken from the record alone: a container is running only while its
//! recorded monitor pid exists *with the recorded start time* (field 22 of `/proc/PID/stat`), so
//! after a reboot or a killed monitor it shows as exited, never as running, and a recycled pid is
//! never mistaken for it.
//!
//! **Crash safety**: a container is created in a temp directory and renamed into
//! `<store>/containers/<id>` complete; its record is replaced with temp + fsync + rename; a name
//! is reserved with a symlink `containers/names/<name> -> <id>` (creation is atomic, so two
//! concurrent `--name x` cannot both win). A store ref `@container/<id>` keeps the image's blobs
//! (and so its unpacked layers) from garbage collection while the container exists.
//!
//! The container's writable layer is an overlay upper directory of its own on the image's
//! unpacked layers (the same trees RUN steps use); `commit` writes it as one layer with the
//! build's layer writer ([`rbuild_snapshot::Snapshotter::commit_upper`]).
//!
//! # Example
//!
//! ```no_run
//! use rbuild_container::{Containers, CreateOptions, StartIo};
//! # fn main() -> Result<(), rbuild_container::ContainerError> {
//! let images = rbuild_image::Images::new(rbuild_store::Store::open("/var/lib/rbuild")?);
//! let containers = Containers::open(&images)?;
//! let image = images.resolve("debian:12")?;
//! let opts = CreateOptions { cmd: vec!["echo".into(), "hi".into()], ..Default::default() };
//! let rec = containers.create(&image, "debian:12", &opts)?;
//! let mut monitor = containers.start(&rec, StartIo::Inherit { stdin: false })?;
//! let code = containers.wait_monitor(&rec, &mut monitor)?;
//! assert_eq!(code, 0);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod commit;
mod error;
mod monitor;
mod names;
mod record;
mod spec;
pub mod tty;

pub use commit::CommitOptions;
pub use error::ContainerError;
pub use monitor::monitor_main_if_requested;
pub use record::{process_start, Host, Mount, Process, Record, State, Status};
pub use spec::{parse_size, CreateOptions};

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbuild_digest::Digest;
use rbuild_image::{Images, LocalImage};

/// Store ref prefix that keeps a container's image alive through gc.
const REF_PREFIX: &str = "@container/";
/// Log file of detached containers.
const LOG: &str = "container.log";

/// Where a started container's stdio goes.
#[derive(Debug)]
pub enum StartIo {
    /// `-d`: stdin `/dev/null`, stdout and stderr appended to the container's log.
    Detached,
    /// Foreground without a terminal: the caller's own stdout/stderr; stdin too with `-i`
    /// (else `/dev/null`).
    Inherit {
        /// Pass the caller's stdin (`-i`).
        stdin: bool,
    },
    /// `-t`: the slave side of a pseudo-terminal the caller reads and writes the master of.
    Pty(OwnedFd),
}

/// The containers of one store.
#[derive(Debug, Clone)]
pub struct Containers {
    images: Images,
    dir: PathBuf,
}

/// Exit code docker uses for its own errors.
pub const EXIT_RBUILD_ERROR: i32 = 125;
/// Exit code for a command that exists but cannot be invoked.
pub const EXIT_CANNOT_INVOKE: i32 = 126;
/// Exit code for a command that is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

impl Containers {
    /// Opens (creating if needed) the container directory of `images`' store.
    pub fn open(images: &Images) -> Result<Containers, ContainerError> {
        let dir = images.store().root().join("containers");
        let names = dir.join("names");
        std::fs::create_dir_all(&names).map_err(|e| ContainerError::io("create", &names, e))?;
        Ok(Containers {
            images: images.clone(),
            dir,
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The container's directory (record, upper and work directories, log).
    pub fn dir_of(&self, rec: &Record) -> PathBuf {
        self.path(&rec.id)
    }

    /// The log file of a detached container.
    pub fn log_path(&self, rec: &Record) -> PathBuf {
        self.path(&rec.id).join(LOG)
    }

    fn snapshotter(&self) -> Result<rbuild_snapshot::Snapshotter, ContainerError> {
        Ok(rbuild_snapshot::Snapshotter::new(
            self.images.store(),
            rbuild_snapshot::Mode::Auto,
        )?)
    }

    /// Creates a container of `image` (named `image_name` as the user wrote it) without starting
    /// it. Nothing is left behind when it fails: bad options are refused before anything is
    /// written, and the container appears complete or not at all.
    pub fn create(
        &self,
        image: &LocalImage,
        image_name: &str,
        opts: &CreateOptions,
    ) -> Result<Record, ContainerError> {
        let id = names::new_id();
        let (process, host) = spec::resolve(image, opts, &id)?;
        let snap = self.snapshotter()?;
        let diff_ids: Vec<Digest> = image.config.rootfs.diff_ids.clone();
        snap.ensure_unpacked(&diff_ids)?;
        let Some(mut lowers) = snap.overlay_lowers(&diff_ids) else {
            return Err(ContainerError::Invalid(
                "containers need overlayfs, which cannot be mounted here (the copy snapshotter \
                 is not supported for containers yet)"
                    .into(),
            ));
        };
        let name = self.reserve_name(opts.name.as_deref(), &id)?;
        let tmp = self.dir.join(format!(".create-{id}"));
        let result = (|| {
            let mk = |p: &Path, mode: u32| {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(mode)
                    .create(p)
                    .map_err(|e| ContainerError::io("create", p, e))
            };
            mk(&tmp, 0o755)?;
            mk(&tmp.join("upper"), 0o755)?;
            mk(&tmp.join("work"), 0o700)?;
            if lowers.is_empty() {
                let empty = self.path(&id).join("empty");
                mk(&tmp.join("empty"), 0o755)?;
                lowers.push(empty);
            }
            let rec = Record {
                id: id.clone(),
                name: name.clone(),
                image: image_name.to_string(),
                image_id: image.id.to_string(),
                diff_ids: diff_ids.iter().map(|d| d.to_string()).collect(),
                lowers,
                created: record::now(),
                created_nanos: record::now_nanos(),
                process,
                host,
                state: State::default(),
            };
            record::write(&tmp, &rec)?;
            self.images.store().set_ref(
                &format!("{REF_PREFIX}{id}"),
                &rbuild_store::RefTarget {
                    digest: image.manifest_digest,
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    created: None,
                },
            )?;
            let dest = self.path(&id);
            std::fs::rename(&tmp, &dest).map_err(|e| ContainerError::io("rename", &dest, e))?;
            Ok(rec)
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_file(self.dir.join("names").join(&name));
            let _ = self.images.store().delete_ref(&format!("{REF_PREFIX}{id}"));
        }
        result
    }

    /// Reserves `name` (or a generated one) for `id` with an atomic symlink.
    fn reserve_name(&self, name: Option<&str>, id: &str) -> Result<String, ContainerError> {
        let names = self.dir.join("names");
        for attempt in 0..100 {
            let n = match name {
                Some(n) => {
                    let n = n.trim_start_matches('/');
                    if !names::valid(n) {
                        return Err(ContainerError::InvalidName(n.to_string()));
                    }
                    n.to_string()
                }
                None => names::generate(attempt),
            };
            let link = names.join(&n);
            match std::os::unix::fs::symlink(id, &link) {
                Ok(()) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_link(&link)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let exists = self.path(&holder).exists()
                        || self.dir.join(format!(".create-{holder}")).exists();
                    if !exists {
                        // Left by a create that was killed before its container existed.
                        let _ = std::fs::remove_file(&link);
                        continue;
                    }
                    if name.is_some() {
                        return Err(ContainerError::NameInUse {
                            name: n,
                            id: holder,
                        });
                    }
                }
                Err(e) => return Err(ContainerError::io("create", &link, e)),
            }
        }
        Err(ContainerError::Invalid(
            "could not generate a free container name".into(),
        ))
    }

    /// Every container, newest first.
    pub fn list(&self) -> Result<Vec<Record>, ContainerError> {
        let mut out = Vec::new();
        let rd =
            std::fs::read_dir(&self.dir).map_err(|e| ContainerError::io("list", &self.dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match record::read(&ent.path()) {
                Ok(r) => out.push(r),
                // Removed while we listed it.
                Err(ContainerError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            (b.created, b.created_nanos, &b.id).cmp(&(a.created, a.created_nanos, &a.id))
        });
        Ok(out)
    }

    /// Finds a container by name, full id or unique id prefix, as docker does.
    pub fn get(&self, name_or_id: &str) -> Result<Record, ContainerError> {
        let key = name_or_id.trim_start_matches('/');
        if key.is_empty() {
            return Err(ContainerError::NotFound(name_or_id.into()));
        }
        let all = self.list()?;
        if let Some(r) = all.iter().find(|r| r.id == key || r.name == key) {
            return Ok(r.clone());
        }
        let mut hits = all.iter().filter(|r| r.id.starts_with(key));
        match (hits.next(), hits.next()) {
            (Some(r), None) => Ok(r.clone()),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(key.into())),
            _ => Err(ContainerError::NotFound(name_or_id.into())),
        }
    }

    /// Reads the record again (after a start, stop...).
    pub fn reload(&self, rec: &Record) -> Result<Record, ContainerError> {
        record::read(&self.path(&rec.id))
    }

    /// The container's status as it really is: `Running` only while its monitor lives.
    pub fn status(rec: &Record) -> Status {
        match rec.state.status {
            Status::Running if record::alive(rec.state.monitor_pid, rec.state.monitor_start) => {
                Status::Running
            }
            Status::Running => Status::Exited,
            s => s,
        }
    }

    /// The exit code `ps` shows for an exited container (255 when its monitor died with it,
    /// e.g. a reboot, as docker shows for containers it lost).
    pub fn exit_code(rec: &Record) -> i32 {
        rec.state.exit_code.unwrap_or(255)
    }

    /// Starts the container's process under a new monitor and returns the monitor. The caller
    /// waits for it ([`Containers::wait_monitor`]) in the foreground, or
    /// [`Containers::wait_started`] for `-d`.
    pub fn start(&self, rec: &Record, io: StartIo) -> Result<std::process::Child, ContainerError> {
        if Self::status(rec) == Status::Running {
            return Err(ContainerError::Running(format!(
                "container {} is already running",
                rec.name
            )));
        }
        // A spec removed since `create` fails here, in the caller's terminal, not in the monitor.
        spec::resolve_devices(&rec.host.gpus, &rec.host.devices, &rec.host.cdi_spec_dirs)?;
        monitor::spawn(&self.path(&rec.id), rec, io, &self.log_path(rec))
    }

    /// Waits for a foreground container's monitor and returns the container's exit code (the
    /// command's own, or 125/126/127 when it could not start, as docker).
    pub fn wait_monitor(
        &self,
        rec: &Record,
        child: &mut std::process::Child,
    ) -> Result<i32, ContainerError> {
        let st = child
            .wait()
            .map_err(|e| ContainerError::io("wait for the monitor of", self.path(&rec.id), e))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
    }

    /// After a detached start: waits until the container runs (or already ended) and returns
    /// its record; an error when it could not start (the record says why).
    pub fn wait_started(
        &self,
        rec: &Record,
        child: &mut std::process::Child,
    ) -> Result<Record, ContainerError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.reload(rec);
            let exited = child.try_wait().ok().flatten().is_some();
            match now {
                Ok(r)
                    if r.state.status == Status::Running
                        && r.state.started_at >= rec.state.started_at
                        && r.state.monitor_pid == child.id() as i32 =>
                {
                    return Ok(r)
                }
                Ok(r) if exited => {
                    if let Some(e) = &r.state.error {
                        return Err(ContainerError::Invalid(e.clone()));
                    }
                    return Ok(r);
                }
                Err(_) if exited => {
                    // --rm removed it already.
                    return Ok(rec.clone());
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(ContainerError::Invalid(format!(
                    "container {} did not start within 60 s",
                    rec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the container's PID 1.
    pub fn kill(&self, rec: &Record, signal: i32) -> Result<(), ContainerError> {
        if Self::status(rec) != Status::Running {
            return Err(ContainerError::NotRunning(rec.name.clone()));
        }
        if record::process_start(rec.state.pid) != Some(rec.state.pid_start) {
            return Err(ContainerError::NotRunning(rec.name.clone()));
        }
        // SAFETY: kill has no memory-safety preconditions.
        if unsafe { libc::kill(rec.state.pid, signal) } < 0 {
            return Err(ContainerError::io(
                format!("send signal {signal} to"),
                format!("/proc/{}", rec.state.pid),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Waits until the container's monitor is gone (or `timeout` passes); `true` if it is.
    pub fn wait_stopped(&self, rec: &Record, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !record::alive(rec.state.monitor_pid, rec.state.monitor_start) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `docker stop`: the stop signal (the image's `STOPSIGNAL`, else SIGTERM), then SIGKILL
    /// after `timeout`. A container that is not running is left as it is.
    pub fn stop(&self, rec: &Record, timeout: Duration) -> Result<(), ContainerError> {
        if Self::status(rec) != Status::Running {
            return Ok(());
        }
        let sig = rec
            .host
            .stop_signal
            .as_deref()
            .map(parse_signal)
            .transpose()?
            .unwrap_or(libc::SIGTERM);
        let _ = self.kill(rec, sig);
        if self.wait_stopped(rec, timeout) {
            return Ok(());
        }
        let _ = self.kill(rec, libc::SIGKILL);
        if self.wait_stopped(rec, Duration::from_secs(30)) {
            Ok(())
        } else {
            Err(ContainerError::Running(format!(
                "container {} did not stop after SIGKILL",
                rec.name
            )))
        }
    }

    /// `docker rm`: refuses a running container unless `force` (which kills it first).
    pub fn remove(&self, rec: &Record, force: bool) -> Result<(), ContainerError> {
        if Self::status(rec) == Status::Running {
            if !force {
                return Err(ContainerError::Running(format!(
                    "You cannot remove a running container {}. Stop the container before \
                     attempting removal or force remove",
                    rec.id
                )));
            }
            let _ = self.kill(rec, libc::SIGKILL);
            if !self.wait_stopped(rec, Duration::from_secs(30)) {
                return Err(ContainerError::Running(format!(
                    "container {} did not stop after SIGKILL",
                    rec.name
                )));
            }
        }
        remove_files(&self.dir, self.images.store(), rec)
    }

    /// Ids of the images containers use, so `rmi` and `prune` can keep them.
    pub fn images_in_use(&self) -> Result<HashSet<Digest>, ContainerError> {
        Ok(self
            .list()?
            .iter()
            .filter_map(|r| r.image_id.parse().ok())
            .collect())
    }

    /// Starts `opts` inside the running container; the caller waits on the result.
    pub fn exec(
        &self,
        rec: &Record,
        opts: &ExecOptions,
    ) -> Result<rbuild_sandbox::ExecProcess, ContainerError> {
        if Self::status(rec) != Status::Running
            || record::process_start(rec.state.pid) != Some(rec.state.pid_start)
        {
            return Err(ContainerError::NotRunning(rec.name.clone()));
        }
        if opts.args.is_empty() {
            return Err(ContainerError::Invalid("exec needs a command".into()));
        }
        let user = opts
            .user
            .clone()
            .unwrap_or_else(|| rec.process.user.clone());
        let upper = self.path(&rec.id).join("upper");
        let (uid, gid, groups, home) = spec::resolve_user(&upper, &rec.lowers, &user)?;
        let mut env = rec.process.env.clone();
        for e in &opts.env {
            spec::set_env(&mut env, e);
        }
        if opts.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={home}"));
        }
        let spec = rbuild_sandbox::ExecSpec {
            args: opts.args.clone(),
            env,
            cwd: opts
                .workdir
                .clone()
                .unwrap_or_else(|| rec.process.cwd.clone()),
            uid,
            gid,
            additional_gids: groups,
            stdin: opts.stdin.as_raw_fd(),
            stdout: opts.stdout.as_raw_fd(),
            stderr: opts.stderr.as_raw_fd(),
            tty: opts.tty,
        };
        Ok(rbuild_sandbox::exec_in(rec.state.pid, &spec)?)
    }

    /// Writes the container's changes as a new image (see [`CommitOptions`]); `edit` applies
    /// `--change` lines to the new config (e.g. with `rbuild_engine::apply_change`).
    pub fn commit(
        &self,
        rec: &Record,
        opts: &CommitOptions,
        edit: &dyn Fn(&mut rbuild_image::config::ImageConfig) -> Result<(), String>,
    ) -> Result<LocalImage, ContainerError> {
        commit::commit(self, rec, opts, edit)
    }

    pub(crate) fn images(&self) -> &Images {
        &self.images
    }
}

/// What `exec` runs and with which stdio (borrowed for the start).
#[derive(Debug)]
pub struct ExecOptions {
    /// The command.
    pub args: Vec<String>,
    /// `-e` entries (`KEY=value`, or `KEY` to take it from the caller's environment).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-t`: `stdin` is a pseudo-terminal slave.
    pub tty: bool,
    /// stdin of the process.
    pub stdin: OwnedFd,
    /// stdout.
    pub stdout: OwnedFd,
    /// stderr.
    pub stderr: OwnedFd,
}

/// Removes a container's name, ref and directory (renamed away first, so it vanishes at once).
pub(crate) fn remove_files(
    dir: &Path,
    store: &rbuild_store::Store,
    rec: &Record,
) -> Result<(), ContainerError> {
    let cdir = dir.join(&rec.id);
    let trash = dir.join(format!(".remove-{}", rec.id));
    match std::fs::rename(&cdir, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContainerError::io("remove", &cdir, e)),
    }
    let link = dir.join("names").join(&rec.name);
    if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == rec.id.as_str()) {
        let _ = std::fs::remove_file(&link);
    }
    let _ = store.delete_ref(&format!("{REF_PREFIX}{}", rec.id));
    std::fs::remove_dir_all(&trash).map_err(|e| ContainerError::io("remove", &trash, e))
}

/// A signal by name (`SIGTERM`, `TERM`, `term`) or number, as `docker kill -s` takes it.
pub fn parse_signal(s: &str) -> Result<i32, ContainerError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        _ => return Err(ContainerError::Invalid(format!("invalid signal: {s}"))),
    };
    Ok(n)
}
